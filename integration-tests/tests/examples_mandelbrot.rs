//! `mandelbrot` renders row bands in workers with `imap` and writes a PNG;
//! check the file's structure and size, and that how the image is cut into
//! bands and workers does not change a single byte.

mod examples_support;

use std::path::Path;

use examples_support::{assert_clean_failure, run_example, run_ok, scratch_dir};

/// The CRC-32 of PNG chunks (ISO-HDLC polynomial), bit by bit: slow, but
/// independent of the encoder under test.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Checks that `path` is a well-formed PNG (signature, every chunk's CRC,
/// IHDR first, IDAT present, IEND last) and returns the IHDR fields
/// (width, height, bit depth, colour type).
fn png_header(path: &Path) -> (u32, u32, u8, u8) {
    let data = std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    assert_eq!(&data[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let be32 = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
    let mut chunks = Vec::new();
    let mut at = 8;
    while at < data.len() {
        let len = be32(at) as usize;
        let kind = String::from_utf8_lossy(&data[at + 4..at + 8]).into_owned();
        let body_end = at + 8 + len;
        assert!(body_end + 4 <= data.len(), "chunk {kind} runs past the end");
        assert_eq!(
            crc32(&data[at + 4..body_end]),
            be32(body_end),
            "CRC of {kind}"
        );
        chunks.push((kind, at + 8));
        at = body_end + 4;
    }
    assert_eq!(chunks.first().map(|c| c.0.as_str()), Some("IHDR"));
    assert_eq!(chunks.last().map(|c| c.0.as_str()), Some("IEND"));
    assert!(chunks.iter().any(|c| c.0 == "IDAT"), "no image data");
    let ihdr = chunks[0].1;
    (be32(ihdr), be32(ihdr + 4), data[ihdr + 8], data[ihdr + 9])
}

#[test]
fn writes_a_png_of_the_requested_size() {
    let dir = scratch_dir("mandelbrot-size");
    let output = dir.join("set.png");
    let out = run_ok(
        "mandelbrot",
        &[
            "--width",
            "96",
            "--height",
            "40",
            "--max-iter",
            "150",
            "-w",
            "2",
            "-o",
            output.to_str().unwrap(),
        ],
    );
    assert!(
        out.starts_with(&format!("wrote {} (96x40 pixels)\n", output.display())),
        "{out}"
    );
    // 8-bit RGB: bit depth 8, colour type 2.
    assert_eq!(png_header(&output), (96, 40, 8, 2));
}

#[test]
fn bands_and_workers_do_not_change_the_image() {
    let dir = scratch_dir("mandelbrot-bands");
    let render = |name: &str, extra: &[&str]| {
        let path = dir.join(name);
        let mut args = vec!["--width", "61", "--height", "47", "--max-iter", "300"];
        args.extend(["--center=-0.7435,0.1314", "--span", "0.01", "-o"]);
        args.push(path.to_str().unwrap());
        args.extend(extra);
        run_ok("mandelbrot", &args);
        std::fs::read(&path).unwrap()
    };
    // One worker and one band is the serial rendering; the program also
    // compares each run with its own serial rendering and fails on a
    // difference.
    let serial = render("serial.png", &["-w", "1", "--rows-per-band", "47"]);
    let banded = render("banded.png", &["-w", "3", "--rows-per-band", "4"]);
    assert_eq!(serial, banded);
    assert_eq!(png_header(&dir.join("banded.png")), (61, 47, 8, 2));
}

#[test]
fn an_unwritable_output_is_a_clear_error() {
    let dir = scratch_dir("mandelbrot-missing");
    let output = dir.join("no/such/dir/set.png");
    let run = run_example(
        "mandelbrot",
        &[
            "--width",
            "8",
            "--height",
            "8",
            "-w",
            "1",
            "-o",
            output.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(run.code, Some(1));
    assert_clean_failure(&run, "no/such/dir/set.png");
}

#[test]
fn bad_arguments_are_clap_errors_not_panics() {
    for args in [
        &["--width", "0"][..],
        &["--height", "100000"],
        &["--span", "-1"],
        &["--span", "NaN"],
        &["--center", "1"],
        &["--center=1,inf"],
        &["--max-iter", "0"],
    ] {
        let run = run_example("mandelbrot", args, &[]);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert_clean_failure(&run, "error:");
    }
}
