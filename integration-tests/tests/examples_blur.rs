//! `blur` blurs an image in tiles with the pool's `map`, its pixels
//! travelling as byte buffers; check its output against a plain 2-D
//! convolution done here, that the tiling and the workers change no byte,
//! and its handling of bad input.

mod examples_support;

use std::path::Path;

use examples_support::{assert_clean_failure, field, run_example, run_ok, scratch_dir};

fn write_pgm(path: &Path, width: usize, height: usize, pixels: &[u8]) {
    let mut data = format!("P5\n{width} {height}\n255\n").into_bytes();
    data.extend_from_slice(pixels);
    std::fs::write(path, data).unwrap();
}

/// The pixels of a PGM file the program wrote, after checking its header.
fn read_pgm(path: &Path, width: usize, height: usize) -> Vec<u8> {
    let data = std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let header = format!("P5\n{width} {height}\n255\n");
    assert!(
        data.starts_with(header.as_bytes()),
        "header of {}",
        path.display()
    );
    data[header.len()..].to_vec()
}

/// The tent blur by its definition: every output pixel a weighted sum over
/// the (2r+1)^2 square around it, weights (r+1-|dx|)(r+1-|dy|), edges
/// clamped, rounded to nearest. An independent check on the separable,
/// tiled kernel the workers run.
fn tent_blur(width: usize, height: usize, pixels: &[u8], radius: i64) -> Vec<u8> {
    let weight = |d: i64| (radius + 1 - d.abs()) as u64;
    let total = ((radius + 1) as u64).pow(4);
    let mut out = Vec::with_capacity(pixels.len());
    for y in 0..height as i64 {
        for x in 0..width as i64 {
            let mut sum = 0;
            for dy in -radius..=radius {
                for dx in -radius..=radius {
                    let sy = (y + dy).clamp(0, height as i64 - 1) as usize;
                    let sx = (x + dx).clamp(0, width as i64 - 1) as usize;
                    sum += weight(dx) * weight(dy) * u64::from(pixels[sy * width + sx]);
                }
            }
            out.push(((sum + total / 2) / total) as u8);
        }
    }
    out
}

#[test]
fn the_blur_of_a_given_image_is_the_tent_convolution() {
    let dir = scratch_dir("blur-given");
    let (width, height) = (37, 29);
    let pixels: Vec<u8> = (0..width * height)
        .map(|i| ((i * 97 + (i / width) * 31) % 256) as u8)
        .collect();
    let input = dir.join("in.pgm");
    let output = dir.join("out.pgm");
    write_pgm(&input, width, height, &pixels);
    let out = run_ok(
        "blur",
        &[
            "--input",
            input.to_str().unwrap(),
            "--radius",
            "3",
            "--tiles",
            "5",
            "-w",
            "2",
            "-o",
            output.to_str().unwrap(),
        ],
    );
    assert_eq!(
        read_pgm(&output, width, height),
        tent_blur(width, height, &pixels, 3)
    );
    assert!(
        out.contains("blurred 37x29 pixels (0.0 MiB) in 5 tiles, radius 3\n"),
        "{out}"
    );
    // The program compared its ByteBuf tiles with the Vec<u8> ones and with
    // a serial run (it fails if they differ), and reports the throughputs.
    assert!(
        field(&out, "ByteBuf tiles:").is_some_and(|v| v.contains("plain Vec<u8> tiles:")),
        "{out}"
    );
    assert!(
        field(&out, "parallel:").is_some_and(|v| v.ends_with("with 2 workers")),
        "{out}"
    );
    assert!(field(&out, "speed-up:").is_some(), "{out}");
}

#[test]
fn tiles_and_workers_do_not_change_the_image() {
    let dir = scratch_dir("blur-tiles");
    let blur = |name: &str, extra: &[&str]| {
        let path = dir.join(name);
        let mut args = vec!["--width", "64", "--height", "50", "--radius", "5"];
        args.extend(["--seed", "9", "--no-serial", "-o", path.to_str().unwrap()]);
        args.extend(extra);
        run_ok("blur", &args);
        read_pgm(&path, 64, 50)
    };
    let whole = blur("whole.pgm", &["-w", "1", "--tiles", "1"]);
    // More tiles than rows, thinner than the radius, on more workers.
    let tiled = blur("tiled.pgm", &["-w", "3", "--tiles", "200"]);
    assert_eq!(whole, tiled);
}

#[test]
fn a_malformed_image_is_a_clear_error() {
    let dir = scratch_dir("blur-bad-input");
    let input = dir.join("short.pgm");
    std::fs::write(&input, b"P5\n4 4\n255\n\x00\x01").unwrap();
    let run = run_example(
        "blur",
        &["--input", input.to_str().unwrap(), "-w", "1"],
        &[],
    );
    assert_eq!(run.code, Some(1));
    assert_clean_failure(&run, "2 bytes of pixels where a 4x4 image has 16");
    let missing = dir.join("missing.pgm");
    let run = run_example(
        "blur",
        &["--input", missing.to_str().unwrap(), "-w", "1"],
        &[],
    );
    assert_eq!(run.code, Some(1));
    assert_clean_failure(&run, "missing.pgm");
}

#[test]
fn bad_arguments_are_clap_errors_not_panics() {
    for args in [
        &["--width", "0"][..],
        &["--height", "100000"],
        &["--radius", "61"],
        &["--tiles", "0"],
        &["--input", "x.pgm", "--width", "5"],
    ] {
        let run = run_example("blur", args, &[]);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert_clean_failure(&run, "error:");
    }
}
