//! Renders the Mandelbrot set on every core and writes it as a PNG file:
//! the pool's `imap`.
//!
//! The image is cut into bands of rows. `pool.imap(render, bands)` renders
//! them in the workers and yields them back in order as they are ready, so
//! this process lays each band into the image (and moves the progress bar)
//! while the workers render the next ones.
//!
//! ```text
//! cargo run --release -p examples --bin mandelbrot -- --output set.png
//! cargo run --release -p examples --bin mandelbrot -- --center=-0.743643,0.131825 --span 0.0002 --max-iter 5000
//! ```

#![deny(unsafe_code)]

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use examples::cli::{exit_code, start_pool, timed, Common, Report};
use examples::mandelbrot::{render, render_band, write_png, View};
use examples::progress;

/// Render the Mandelbrot set in bands of rows across worker processes and
/// write it as a PNG image.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Where to write the image
    #[arg(long, short, default_value = "mandelbrot.png")]
    output: PathBuf,

    /// Image width in pixels
    #[arg(long, default_value_t = 1600, value_parser = clap::value_parser!(u32).range(1..=8192))]
    width: u32,

    /// Image height in pixels
    #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u32).range(1..=8192))]
    height: u32,

    /// The point at the centre of the image, as RE,IM
    #[arg(long, default_value = "-0.75,0", value_parser = parse_point, allow_hyphen_values = true)]
    center: (f64, f64),

    /// Width of the image in the complex plane (smaller zooms in)
    #[arg(long, default_value_t = 3.5, value_parser = parse_span)]
    span: f64,

    /// Iterations before a point counts as inside the set
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_iter: u32,

    /// Rows per band: one band is one task
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=8192))]
    rows_per_band: u32,

    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    // In a worker process this runs the worker loop and never returns.
    pool::init();
    let args = Args::parse();
    exit_code("mandelbrot", run(&args))
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let view = View {
        width: args.width,
        height: args.height,
        center_re: args.center.0,
        center_im: args.center.1,
        span: args.span,
        max_iter: args.max_iter,
    };
    let bands = view.bands(args.height.div_ceil(args.rows_per_band));
    let workers = args.common.workers();
    let builder = args.common.pool_builder()?;

    let bar = progress::bar(bands.len() as u64, "bands", args.common.quiet);
    let mut remote = 0;
    let (image, parallel) = timed(|| -> Result<Vec<u8>, pool::Error> {
        let pool = start_pool(builder)?;
        let mut image = Vec::with_capacity(view.width as usize * view.height as usize * 3);
        for band in pool.imap(render, bands.clone()) {
            image.extend_from_slice(&band?);
            bar.inc(1);
        }
        remote = pool.remote_workers_joined();
        Ok(image)
    });
    bar.finish_and_clear();
    let image = image?;
    write_png(&args.output, view.width, view.height, &image)?;
    println!(
        "wrote {} ({}x{} pixels)",
        args.output.display(),
        view.width,
        view.height
    );

    let serial = if args.common.no_serial {
        None
    } else {
        let spinner = progress::spinner("serial run, for comparison", args.common.quiet);
        let (serial_image, serial) =
            timed(|| bands.into_iter().flat_map(render_band).collect::<Vec<u8>>());
        spinner.finish_and_clear();
        if serial_image != image {
            return Err("the serial rendering differs from the pool's".into());
        }
        Some(serial)
    };
    println!(
        "{}",
        Report::new(workers, parallel, serial).with_remote(remote)
    );
    Ok(())
}

/// Parses `RE,IM`, two finite numbers.
fn parse_point(text: &str) -> Result<(f64, f64), String> {
    let parse = |part: &str| part.trim().parse::<f64>().ok().filter(|x| x.is_finite());
    match text.split_once(',').map(|(re, im)| (parse(re), parse(im))) {
        Some((Some(re), Some(im))) => Ok((re, im)),
        _ => Err("expected two numbers RE,IM such as -0.75,0".to_string()),
    }
}

/// Parses a positive, finite span.
fn parse_span(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(span) if span.is_finite() && span > 0.0 => Ok(span),
        _ => Err("expected a positive number such as 3.5".to_string()),
    }
}
