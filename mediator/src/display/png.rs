//! PNG export of a decoded framebuffer ([`super::fb::Image`]).

use std::io::Write;

use thiserror::Error;

use super::fb::Image;

/// Why an image could not be written as PNG.
#[derive(Debug, Error)]
pub enum PngExportError {
    /// The pixel buffer does not match the dimensions.
    #[error("image is {width}x{height} but holds {len} bytes")]
    BadBuffer { width: u32, height: u32, len: usize },
    /// The encoder failed (including I/O errors of the writer).
    #[error("PNG encoding failed")]
    Encode(#[source] ::png::EncodingError),
}

/// Writes `image` as an 8-bit RGBA PNG to `out`.
pub fn write_png<W: Write>(image: &Image, out: W) -> Result<(), PngExportError> {
    let bad = || PngExportError::BadBuffer {
        width: image.width,
        height: image.height,
        len: image.rgba.len(),
    };
    let want = u64::from(image.width) * u64::from(image.height) * 4;
    if image.width == 0 || image.height == 0 || u64::try_from(image.rgba.len()).ok() != Some(want) {
        return Err(bad());
    }
    let mut enc = ::png::Encoder::new(out, image.width, image.height);
    enc.set_color(::png::ColorType::Rgba);
    enc.set_depth(::png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(PngExportError::Encode)?;
    w.write_image_data(&image.rgba)
        .map_err(PngExportError::Encode)?;
    w.finish().map_err(PngExportError::Encode)
}

/// Encodes `image` as an 8-bit RGBA PNG in memory.
pub fn encode_png(image: &Image) -> Result<Vec<u8>, PngExportError> {
    let mut buf = Vec::new();
    write_png(image, &mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_png_decoder() {
        let rgba: Vec<u8> = (0..2 * 3 * 4).map(|i| (i * 11) as u8).collect();
        let img = Image {
            width: 2,
            height: 3,
            rgba: rgba.clone(),
        };
        let bytes = encode_png(&img).unwrap();
        let dec = ::png::Decoder::new(bytes.as_slice());
        let mut reader = dec.read_info().unwrap();
        let mut out = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut out).unwrap();
        assert_eq!((info.width, info.height), (2, 3));
        assert_eq!(&out[..info.buffer_size()], rgba.as_slice());
        let bad = Image {
            width: 5,
            height: 5,
            rgba,
        };
        assert!(matches!(
            encode_png(&bad),
            Err(PngExportError::BadBuffer { .. })
        ));
    }
}
