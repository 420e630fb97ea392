//! Blurs a generated grayscale image in tiles on every core: a `map` whose
//! work is data, megabytes of pixels each way.
//!
//! The image is cut into tiles of rows, each with the halo of rows its blur
//! needs. `pool.map(blur, tiles)` blurs them in the workers, the tiles'
//! pixels travelling as `serde_bytes` byte buffers (one block each, not
//! byte by byte); the program then does the same with plain `Vec<u8>`
//! pixels and serially, checks that all three agree to the byte, and prints
//! the throughput of each beside the speed-up.
//!
//! ```text
//! cargo run --release -p examples --bin blur
//! cargo run --release -p examples --bin blur -- --width 8192 --height 8192 --radius 4 --output blurred.pgm
//! cargo run --release -p examples --bin blur -- --input photo.pgm --radius 10 --output soft.pgm
//! ```

#![deny(unsafe_code)]

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use examples::blur::{blur, blur_plain, read_pgm, write_pgm, Image, MAX_RADIUS};
use examples::cli::{exit_code, start_pool, timed, Common, Report};
use examples::progress;

/// Blur a generated grayscale image in tiles across worker processes.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Image width in pixels
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=16384))]
    width: u32,

    /// Image height in pixels
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=16384))]
    height: u32,

    /// Blur radius in pixels (a tent filter)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=MAX_RADIUS as i64))]
    radius: u32,

    /// Tiles the image is cut into: one tile is one task
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=16384))]
    tiles: u32,

    /// The seed of the generated image
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Blur this binary PGM (P5, 8-bit) image instead of a generated one
    #[arg(long, short, conflicts_with_all = ["width", "height", "seed"])]
    input: Option<PathBuf>,

    /// Write the blurred image here, as a binary PGM file
    #[arg(long, short)]
    output: Option<PathBuf>,

    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    // In a worker process this runs the worker loop and never returns.
    pool::init();
    let args = Args::parse();
    exit_code("blur", run(&args))
}

/// MiB of pixels per second: the image in, the blurred image out.
fn throughput(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / time.as_secs_f64()
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let image = match &args.input {
        Some(path) => read_pgm(path)?,
        None => Image::generate(args.width, args.height, args.seed),
    };
    let tiles = image.tiles(args.tiles, args.radius);
    let tiles_used = tiles.len();
    let plain_tiles: Vec<_> = tiles.iter().map(|tile| tile.to_plain()).collect();
    let workers = args.common.workers();
    let builder = args.common.pool_builder()?;
    let pool = start_pool(builder)?;

    let bar = progress::bar(tiles.len() as u64, "tiles", args.common.quiet);
    let (blurred, parallel) = timed(|| {
        pool.map_with(blur, tiles)
            .progress(|p| p.update_bar(&bar))
            .run()
            .map(|tiles| {
                tiles
                    .into_iter()
                    .flat_map(|tile| tile.into_vec())
                    .collect::<Vec<u8>>()
            })
    });
    bar.finish_and_clear();
    let blurred = blurred?;
    let spinner = progress::spinner("plain Vec<u8> tiles, for comparison", args.common.quiet);
    let (plain, plain_time) = timed(|| pool.map(blur_plain, plain_tiles));
    spinner.finish_and_clear();
    if plain?.concat() != blurred {
        return Err("the Vec<u8> tiles' blur differs from the ByteBuf tiles'".into());
    }
    if let Some(output) = &args.output {
        write_pgm(output, image.width, image.height, &blurred)?;
        println!("wrote {}", output.display());
    }
    let bytes = image.pixels.len();
    println!(
        "blurred {}x{} pixels ({:.1} MiB) in {} tiles, radius {}",
        image.width,
        image.height,
        bytes as f64 / (1 << 20) as f64,
        tiles_used,
        args.radius
    );
    println!(
        "ByteBuf tiles: {:.1} MiB/s; plain Vec<u8> tiles: {:.1} MiB/s ({:.2}x)",
        throughput(bytes, parallel),
        throughput(bytes, plain_time),
        plain_time.as_secs_f64() / parallel.as_secs_f64()
    );

    let serial = if args.common.no_serial {
        None
    } else {
        let spinner = progress::spinner("serial run, for comparison", args.common.quiet);
        let (serial_image, serial) = timed(|| image.blur_serial(args.radius));
        spinner.finish_and_clear();
        if serial_image? != blurred {
            return Err("the serial blur differs from the pool's".into());
        }
        Some(serial)
    };
    println!("{}", Report::new(workers, parallel, serial));
    Ok(())
}
