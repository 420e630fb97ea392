//! Rendering the Mandelbrot set: the kernel behind the `mandelbrot` program.
//!
//! An image is cut into bands of whole rows ([`View::bands`]); each band is
//! rendered on its own ([`render_band`]) into RGB bytes, and the bands laid
//! end to end in order are the image, ready for [`write_png`]. [`render`]
//! is the kernel as a pool task.

use std::fs::File;
use std::io::{self, BufWriter};
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What to render: the image size, the part of the complex plane it shows,
/// and how hard to look at each point.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct View {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Real part of the point at the centre of the image.
    pub center_re: f64,
    /// Imaginary part of the point at the centre of the image.
    pub center_im: f64,
    /// Width of the image in the complex plane (the height follows from the
    /// aspect ratio, pixels being square).
    pub span: f64,
    /// Iterations after which a point counts as inside the set.
    pub max_iter: u32,
}

impl View {
    /// The whole set, framed for a `width` x `height` image.
    pub fn whole_set(width: u32, height: u32, max_iter: u32) -> View {
        View {
            width,
            height,
            center_re: -0.75,
            center_im: 0.0,
            span: 3.5,
            max_iter,
        }
    }

    /// Cuts the image into `count` bands of consecutive rows, top to bottom,
    /// of nearly equal height (fewer bands if there are fewer rows).
    ///
    /// # Examples
    ///
    /// ```
    /// use examples::mandelbrot::View;
    ///
    /// let bands = View::whole_set(8, 10, 50).bands(4);
    /// let rows: Vec<_> = bands.iter().map(|b| b.rows.clone()).collect();
    /// assert_eq!(rows, [0..3, 3..6, 6..8, 8..10]);
    /// ```
    pub fn bands(&self, count: u32) -> Vec<Band> {
        let count = count.clamp(1, self.height.max(1));
        let (size, extra) = (self.height / count, self.height % count);
        let mut start = 0;
        (0..count)
            .map(|i| {
                let end = start + size + u32::from(i < extra);
                let band = Band {
                    view: *self,
                    rows: start..end,
                };
                start = end;
                band
            })
            .collect()
    }

    /// The complex number at the centre of pixel (`x`, `y`).
    fn point(&self, x: u32, y: u32) -> (f64, f64) {
        let step = self.span / f64::from(self.width);
        let re = self.center_re + (f64::from(x) + 0.5 - f64::from(self.width) / 2.0) * step;
        let im = self.center_im - (f64::from(y) + 0.5 - f64::from(self.height) / 2.0) * step;
        (re, im)
    }
}

/// A band of whole rows of a [`View`]: one unit of work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// The image the band belongs to.
    pub view: View,
    /// Its rows, top to bottom.
    pub rows: Range<u32>,
}

/// Renders a band into RGB bytes: three per pixel, row after row.
///
/// # Examples
///
/// ```
/// use examples::mandelbrot::{render_band, View};
///
/// let view = View::whole_set(40, 30, 100);
/// let whole: Vec<u8> = view.bands(1).into_iter().flat_map(render_band).collect();
/// let banded: Vec<u8> = view.bands(7).into_iter().flat_map(render_band).collect();
/// assert_eq!(whole.len(), 40 * 30 * 3);
/// assert_eq!(whole, banded);
/// ```
pub fn render_band(band: Band) -> Vec<u8> {
    let view = band.view;
    let rows = band.rows.end.saturating_sub(band.rows.start);
    let mut rgb = Vec::with_capacity(rows as usize * view.width as usize * 3);
    for y in band.rows {
        for x in 0..view.width {
            let (re, im) = view.point(x, y);
            rgb.extend_from_slice(&colour(escape_time(re, im, view.max_iter), view.max_iter));
        }
    }
    rgb
}

pool::task! {
    /// [`render_band`] as a pool task: `pool.imap(render, bands)`.
    pub fn render(band: Band) -> Vec<u8> {
        render_band(band)
    }
}

/// The smooth (fractional) iteration count at which `c = re + im i`
/// escapes, or `None` if it stays bounded for `max_iter` iterations.
fn escape_time(re: f64, im: f64, max_iter: u32) -> Option<f64> {
    // Escaping at |z| > 256 rather than 2 makes the smoothing formula below
    // accurate, so bands of colour blend without visible steps.
    const ESCAPE_SQUARED: f64 = 256.0 * 256.0;
    let (mut zr, mut zi) = (0.0f64, 0.0f64);
    for n in 0..max_iter {
        let (zr2, zi2) = (zr * zr, zi * zi);
        if zr2 + zi2 > ESCAPE_SQUARED {
            let log_modulus = (zr2 + zi2).ln() / 2.0;
            return Some(f64::from(n) + 1.0 - (log_modulus / std::f64::consts::LN_2).log2());
        }
        zi = 2.0 * zr * zi + im;
        zr = zr2 - zi2 + re;
    }
    None
}

/// The colour of a pixel: black inside the set, and outside a cosine
/// palette (after Inigo Quilez) cycling with the logarithm of the escape
/// time, so that colour bands stay visible however deep the zoom.
fn colour(escape: Option<f64>, max_iter: u32) -> [u8; 3] {
    let Some(n) = escape else {
        return [0, 0, 0];
    };
    let t = (n.max(1.0).ln() / f64::from(max_iter.max(2)).ln()).clamp(0.0, 1.0);
    let channel = |phase: f64| {
        let value = 0.5 + 0.5 * (std::f64::consts::TAU * (3.0 * t + phase)).cos();
        // Fade the darkest, fastest-escaping points into the background.
        (255.0 * value * t.sqrt()).round() as u8
    };
    [channel(0.5), channel(0.6), channel(0.75)]
}

/// Writes `rgb` (three bytes per pixel, row after row) as an 8-bit RGB PNG
/// file of `width` x `height` pixels.
pub fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> io::Result<()> {
    let in_context =
        |err: png::EncodingError| io::Error::other(format!("{}: {err}", path.display()));
    let file = File::create(path)
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(in_context)?;
    writer.write_image_data(rgb).map_err(in_context)?;
    writer.finish().map_err(in_context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_points_inside_and_outside() {
        assert_eq!(escape_time(0.0, 0.0, 500), None);
        assert_eq!(escape_time(-1.0, 0.0, 500), None);
        assert_eq!(escape_time(-0.1226, 0.7449, 500), None);
        assert!(escape_time(1.0, 1.0, 500).is_some());
        assert!(escape_time(0.3, 0.6, 500).is_some());
    }

    #[test]
    fn pixel_centres_are_symmetric_about_the_view_centre() {
        let view = View::whole_set(4, 2, 10);
        let (left, top) = view.point(0, 0);
        let (right, bottom) = view.point(3, 1);
        assert!((left + right - 2.0 * view.center_re).abs() < 1e-12);
        assert!((top + bottom).abs() < 1e-12);
        assert!(top > 0.0, "row 0 is the top of the image");
    }

    #[test]
    fn png_round_trips() {
        let dir = crate::tempdir::TempDir::new("mandelbrot-test").unwrap();
        let path = dir.path().join("m.png");
        let view = View::whole_set(31, 17, 60);
        let rgb: Vec<u8> = view.bands(3).into_iter().flat_map(render_band).collect();
        write_png(&path, 31, 17, &rgb).unwrap();

        let decoder = png::Decoder::new(io::BufReader::new(File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!((info.width, info.height), (31, 17));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(&pixels[..info.buffer_size()], &rgb[..]);
    }

    #[test]
    fn png_to_a_missing_directory_is_an_error_naming_it() {
        let err = write_png(Path::new("/surely/not/here/m.png"), 1, 1, &[0, 0, 0]).unwrap_err();
        assert!(err.to_string().contains("/surely/not/here"), "{err}");
    }
}
