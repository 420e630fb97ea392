//! Blurring a grayscale image in tiles: the kernel behind the `blur`
//! program, whose work is data (megabytes of pixels each way) rather than
//! a few numbers.
//!
//! An image is cut into tiles of whole rows ([`Image::tiles`]); each tile
//! carries the rows it blurs plus a halo of `radius` rows on each side, so
//! that it can be blurred on its own ([`blur_rows`]), in any process, and
//! the blurred tiles laid end to end are the blurred image. The filter is a
//! separable tent (triangle) filter in integers, so every way of cutting
//! the image gives the same bytes.
//!
//! The pixels travel as `serde_bytes` byte buffers ([`Tile`], [`blur`]):
//! serde's fast path for bytes, encoded as one block rather than byte by
//! byte. [`PlainTile`] and [`blur_plain`] are the same with a plain
//! `Vec<u8>`, for comparison.

use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::rng::SplitMix64;

/// The largest blur radius: a pixel's weighted sum (up to `255 * (r +
/// 1)^4`) must fit in a `u32`.
pub const MAX_RADIUS: u32 = 60;

/// A grayscale image, one byte per pixel, row after row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// `width * height` bytes.
    pub pixels: Vec<u8>,
}

/// Where a tile lies in its image and how it is blurred: everything but
/// its pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileSpec {
    /// Pixels per row.
    pub width: u32,
    /// Rows of the whole image (for the clamping at its edges).
    pub image_height: u32,
    /// The first row of the tile's pixels, halo included, in the image.
    pub first_row: u32,
    /// The rows the tile blurs: `output_start..output_end` of the image.
    pub output_start: u32,
    /// One past the last row the tile blurs.
    pub output_end: u32,
    /// The blur radius, in pixels.
    pub radius: u32,
}

/// A tile whose pixels travel as one byte block (`serde_bytes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tile {
    /// Its place and filter.
    pub spec: TileSpec,
    /// Its rows, halo included.
    pub pixels: ByteBuf,
}

/// [`Tile`] with a plain `Vec<u8>`, which serde encodes byte by byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlainTile {
    /// Its place and filter.
    pub spec: TileSpec,
    /// Its rows, halo included.
    pub pixels: Vec<u8>,
}

impl Image {
    /// A `width` x `height` test picture fixed by `seed`: smooth gradients,
    /// rings and noise, so that a blur has edges to soften.
    ///
    /// # Examples
    ///
    /// ```
    /// let image = examples::blur::Image::generate(5, 3, 7);
    /// assert_eq!(image.pixels.len(), 15);
    /// assert_eq!(image, examples::blur::Image::generate(5, 3, 7));
    /// ```
    pub fn generate(width: u32, height: u32, seed: u64) -> Image {
        let mut rng = SplitMix64::new(seed);
        let mut pixels = Vec::with_capacity(width as usize * height as usize);
        for y in 0..u64::from(height) {
            for x in 0..u64::from(width) {
                let ring = ((x * x + y * y) / 97) % 256;
                let noise = rng.next_u64() % 32;
                pixels.push(((ring + (x + 3 * y) % 64 + noise) % 256) as u8);
            }
        }
        Image {
            width,
            height,
            pixels,
        }
    }

    /// Cuts the image into `count` tiles of consecutive rows of nearly
    /// equal height (fewer if there are fewer rows), each with `radius`
    /// rows of halo on either side where the image has them.
    ///
    /// # Examples
    ///
    /// ```
    /// let image = examples::blur::Image::generate(4, 10, 1);
    /// let tiles = image.tiles(3, 1);
    /// let rows: Vec<_> = tiles.iter().map(|t| (t.spec.output_start, t.spec.output_end)).collect();
    /// assert_eq!(rows, [(0, 3), (3, 6), (6, 10)]);
    /// // Halo: rows 2..7 travel for the tile that blurs 3..6.
    /// assert_eq!((tiles[1].spec.first_row, tiles[1].pixels.len()), (2, 5 * 4));
    /// ```
    pub fn tiles(&self, count: u32, radius: u32) -> Vec<Tile> {
        let count = count.clamp(1, self.height.max(1));
        let width = self.width as usize;
        (0..count)
            .map(|i| {
                let start = (u64::from(self.height) * u64::from(i) / u64::from(count)) as u32;
                let end = (u64::from(self.height) * u64::from(i + 1) / u64::from(count)) as u32;
                let first_row = start.saturating_sub(radius);
                let last_row = end.saturating_add(radius).min(self.height);
                let pixels = &self.pixels[first_row as usize * width..last_row as usize * width];
                Tile {
                    spec: TileSpec {
                        width: self.width,
                        image_height: self.height,
                        first_row,
                        output_start: start,
                        output_end: end,
                        radius,
                    },
                    pixels: ByteBuf::from(pixels.to_vec()),
                }
            })
            .collect()
    }

    /// The whole image blurred in this process: one tile of every row.
    pub fn blur_serial(&self, radius: u32) -> Result<Vec<u8>, String> {
        let spec = TileSpec {
            width: self.width,
            image_height: self.height,
            first_row: 0,
            output_start: 0,
            output_end: self.height,
            radius,
        };
        blur_rows(&spec, &self.pixels)
    }
}

impl Tile {
    /// The same tile with its pixels in a plain `Vec<u8>`.
    pub fn to_plain(&self) -> PlainTile {
        PlainTile {
            spec: self.spec,
            pixels: self.pixels.to_vec(),
        }
    }
}

/// The tent filter's weights for `radius`: `1, 2, .., r + 1, .., 2, 1`.
fn weights(radius: u32) -> Vec<u32> {
    let r = radius as i64;
    (-r..=r).map(|k| (r + 1 - k.abs()) as u32).collect()
}

/// Blurs the output rows of a tile from its `pixels` (halo included): a
/// tent filter of the spec's radius across, then down, clamping at the
/// image's edges, rounded to the nearest byte. A spec that does not agree
/// with the pixels (a tile from a buggy or hostile sender) is an error.
///
/// # Examples
///
/// ```
/// use examples::blur::Image;
///
/// // A flat image stays flat.
/// let flat = Image { width: 6, height: 4, pixels: vec![90; 24] };
/// assert_eq!(flat.blur_serial(2).unwrap(), vec![90; 24]);
/// ```
pub fn blur_rows(spec: &TileSpec, pixels: &[u8]) -> Result<Vec<u8>, String> {
    let width = spec.width as usize;
    let rows = check(spec, pixels.len())?;
    let radius = spec.radius as usize;
    let weights = weights(spec.radius);
    // At most 255 * 61^4, under 2^32 (see MAX_RADIUS).
    let total = (spec.radius + 1).pow(4);
    // Across: each row of the tile, halo included, padded with copies of
    // its end pixels so that the inner loops run without clamping (and
    // vectorize).
    let mut across = vec![0u32; rows * width];
    let mut padded = vec![0u32; width + 2 * radius];
    for (row, sums) in pixels.chunks(width).zip(across.chunks_mut(width)) {
        let (first, last) = (row[0], row[width - 1]);
        padded[..radius].fill(u32::from(first));
        padded[radius + width..].fill(u32::from(last));
        for (slot, &pixel) in padded[radius..radius + width].iter_mut().zip(row) {
            *slot = u32::from(pixel);
        }
        for (offset, &weight) in weights.iter().enumerate() {
            for (sum, &pixel) in sums.iter_mut().zip(&padded[offset..offset + width]) {
                *sum += weight * pixel;
            }
        }
    }
    // Down: each output row from the rows around it, clamped to the image
    // (the halo holds them).
    let last_row = i64::from(spec.image_height) - 1;
    let first = i64::from(spec.first_row);
    let mut output = Vec::with_capacity((spec.output_end - spec.output_start) as usize * width);
    let mut sums = vec![0u32; width];
    for y in i64::from(spec.output_start)..i64::from(spec.output_end) {
        sums.fill(0);
        for (k, &weight) in (-(radius as i64)..).zip(&weights) {
            let source = ((y + k).clamp(0, last_row) - first) as usize;
            let row = &across[source * width..(source + 1) * width];
            for (sum, &value) in sums.iter_mut().zip(row) {
                *sum += weight * value;
            }
        }
        output.extend(sums.iter().map(|&sum| ((sum + total / 2) / total) as u8));
    }
    Ok(output)
}

/// Checks that a spec describes `len` bytes of pixels with the halo its
/// output rows need; returns the number of rows.
fn check(spec: &TileSpec, len: usize) -> Result<usize, String> {
    let width = spec.width as usize;
    if spec.radius > MAX_RADIUS {
        return Err(format!("radius {} is over {MAX_RADIUS}", spec.radius));
    }
    if width == 0 || len % width != 0 {
        return Err(format!("{len} bytes are not whole rows of {width} pixels"));
    }
    let rows = len / width;
    let needed_from = spec.output_start.saturating_sub(spec.radius);
    let needed_to = spec
        .output_end
        .saturating_add(spec.radius)
        .min(spec.image_height);
    let has_to = spec.first_row as usize + rows;
    if spec.output_start > spec.output_end
        || spec.output_end > spec.image_height
        || spec.first_row > needed_from
        || has_to < needed_to as usize
    {
        return Err(format!(
            "rows {}..{has_to} cannot blur rows {}..{} of {} with radius {}",
            spec.first_row, spec.output_start, spec.output_end, spec.image_height, spec.radius
        ));
    }
    Ok(rows)
}

pool::task! {
    /// Blurs one tile ([`blur_rows`]); its pixels travel as byte blocks
    /// both ways.
    pub fn blur(tile: Tile) -> Result<ByteBuf, String> {
        blur_rows(&tile.spec, &tile.pixels).map(ByteBuf::from)
    }
}

pool::task! {
    /// [`blur`] with plain `Vec<u8>` pixels, encoded byte by byte.
    pub fn blur_plain(tile: PlainTile) -> Result<Vec<u8>, String> {
        blur_rows(&tile.spec, &tile.pixels)
    }
}

/// The largest image [`read_pgm`] accepts, in pixels.
pub const MAX_PIXELS: u64 = 1 << 30;

/// Reads a binary PGM (`P5`) file of 8-bit pixels (maximum value 255),
/// as [`write_pgm`] writes them and most image tools can: a clear error for
/// anything else, including a header that promises more than the file
/// holds or more than [`MAX_PIXELS`].
///
/// # Examples
///
/// ```
/// let image = examples::blur::parse_pgm(b"P5\n# two by one\n2 1\n255\n\x10\x20").unwrap();
/// assert_eq!((image.width, image.height, image.pixels), (2, 1, vec![16, 32]));
/// assert!(examples::blur::parse_pgm(b"P5 2 1 255 \x10").is_err());
/// ```
pub fn parse_pgm(data: &[u8]) -> Result<Image, String> {
    let mut at = 0;
    let mut fields = [0u64; 3];
    if !data.starts_with(b"P5") {
        return Err("not a binary PGM file (it does not start with P5)".into());
    }
    at += 2;
    for field in &mut fields {
        // Whitespace and comments, then decimal digits.
        loop {
            match data.get(at) {
                Some(b) if b.is_ascii_whitespace() => at += 1,
                Some(b'#') => {
                    while data.get(at).is_some_and(|&b| b != b'\n') {
                        at += 1;
                    }
                }
                _ => break,
            }
        }
        let digits = data[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        let text = std::str::from_utf8(&data[at..at + digits]).unwrap_or_default();
        *field = match text.parse::<u64>() {
            Ok(value) if digits <= 9 => value,
            _ => return Err(format!("a malformed PGM header at byte {at}")),
        };
        at += digits;
    }
    let [width, height, maxval] = fields;
    if maxval != 255 {
        return Err(format!(
            "PGM maximum value {maxval}: only 8-bit (255) images are read"
        ));
    }
    if width == 0 || height == 0 || width * height > MAX_PIXELS {
        return Err(format!(
            "a {width}x{height} image is empty or over {MAX_PIXELS} pixels"
        ));
    }
    // One whitespace byte ends the header.
    if !data.get(at).is_some_and(u8::is_ascii_whitespace) {
        return Err(format!("a malformed PGM header at byte {at}"));
    }
    let pixels = &data[at + 1..];
    if pixels.len() as u64 != width * height {
        return Err(format!(
            "{} bytes of pixels where a {width}x{height} image has {}",
            pixels.len(),
            width * height
        ));
    }
    Ok(Image {
        width: width as u32,
        height: height as u32,
        pixels: pixels.to_vec(),
    })
}

/// Reads a PGM file with [`parse_pgm`].
pub fn read_pgm(path: &Path) -> Result<Image, String> {
    let data = std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
    parse_pgm(&data).map_err(|err| format!("{}: {err}", path.display()))
}

/// Writes a binary PGM (`P5`) file: the simplest grayscale image format,
/// which most image viewers open.
pub fn write_pgm(path: &Path, width: u32, height: u32, pixels: &[u8]) -> io::Result<()> {
    let mut file = io::BufWriter::new(std::fs::File::create(path)?);
    write!(file, "P5\n{width} {height}\n255\n")?;
    file.write_all(pixels)?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blur_tiled(image: &Image, count: u32, radius: u32) -> Vec<u8> {
        image
            .tiles(count, radius)
            .iter()
            .flat_map(|tile| blur_rows(&tile.spec, &tile.pixels).unwrap())
            .collect()
    }

    #[test]
    fn tiles_give_the_bytes_of_the_whole_image() {
        let image = Image::generate(23, 31, 5);
        for radius in [0, 1, 3, 9] {
            let whole = image.blur_serial(radius).unwrap();
            assert_eq!(whole.len(), image.pixels.len());
            for count in [1, 2, 7, 31, 100] {
                assert_eq!(blur_tiled(&image, count, radius), whole, "{count} {radius}");
            }
        }
    }

    #[test]
    fn radius_zero_is_the_identity_and_a_blur_smooths() {
        let image = Image::generate(16, 16, 9);
        assert_eq!(image.blur_serial(0).unwrap(), image.pixels);
        let spread = |p: &[u8]| p.iter().max().unwrap() - p.iter().min().unwrap();
        let blurred = image.blur_serial(4).unwrap();
        assert!(spread(&blurred) < spread(&image.pixels));
    }

    #[test]
    fn a_spike_spreads_as_a_tent() {
        let mut pixels = vec![0u8; 7 * 7];
        pixels[3 * 7 + 3] = 255;
        let image = Image {
            width: 7,
            height: 7,
            pixels,
        };
        let blurred = image.blur_serial(1).unwrap();
        // Weights 1 2 1 each way, over 16: 255 * 4 / 16 at the centre.
        assert_eq!(blurred[3 * 7 + 3], 64);
        assert_eq!(blurred[3 * 7 + 2], 32);
        assert_eq!(blurred[2 * 7 + 2], 16);
        assert_eq!(blurred[0], 0);
    }

    #[test]
    fn pgm_files_round_trip_and_bad_ones_are_refused() {
        let image = Image::generate(9, 4, 3);
        let dir = crate::tempdir::TempDir::new("blur-pgm").unwrap();
        let path = dir.path().join("image.pgm");
        write_pgm(&path, image.width, image.height, &image.pixels).unwrap();
        assert_eq!(read_pgm(&path).unwrap(), image);
        for bad in [
            &b""[..],
            b"P6\n1 1\n255\n\0",
            b"P5\n1 1\n65535\n\0\0",
            b"P5\n0 1\n255\n",
            b"P5\n2 2\n255\n\0",
            b"P5\n1 1\n255\n\0\0",
            b"P5\n99999999999 99999999999\n255\n",
            b"P5\n1 1\n255",
            b"P5\n# only a comment",
        ] {
            assert!(
                parse_pgm(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_tile_that_does_not_match_its_spec_is_an_error() {
        let image = Image::generate(8, 8, 2);
        let mut tile = image.tiles(2, 2).remove(1);
        let spec = tile.spec;
        for bad in [
            TileSpec { width: 0, ..spec },
            TileSpec { width: 5, ..spec },
            TileSpec {
                radius: MAX_RADIUS + 1,
                ..spec
            },
            TileSpec {
                first_row: spec.first_row + 1,
                ..spec
            },
            TileSpec {
                output_end: 9,
                ..spec
            },
            TileSpec {
                output_start: 7,
                output_end: 5,
                ..spec
            },
        ] {
            assert!(blur_rows(&bad, &tile.pixels).is_err(), "{bad:?}");
        }
        tile.pixels.truncate(8);
        assert!(blur_rows(&tile.spec, &tile.pixels).is_err());
    }
}
