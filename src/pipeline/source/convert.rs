//! Camera pixel formats → RGB: YUYV (4:2:2), I420 (4:2:0 planar) and MJPEG (JPEG frames,
//! often without Huffman tables).

use anyhow::{bail, Context, Result};
use image::{Rgb, RgbImage};

/// BT.601 limited-range YCbCr → RGB.
#[inline]
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (y as f32 - 16.0) * 1.164;
    let d = u as f32 - 128.0;
    let e = v as f32 - 128.0;
    let cl = |x: f32| x.round().clamp(0.0, 255.0) as u8;
    [
        cl(c + 1.596 * e),
        cl(c - 0.392 * d - 0.813 * e),
        cl(c + 2.017 * d),
    ]
}

/// Packed YUYV (Y0 U Y1 V per two pixels) with `stride` bytes per row → RGB.
///
/// ```
/// use ign_edge::pipeline::source::convert::yuyv_to_rgb;
/// // two pixels: video white (Y 235) and video black (Y 16), no colour (U = V = 128)
/// let img = yuyv_to_rgb(&[235, 128, 16, 128], 2, 1, 4).unwrap();
/// assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
/// assert_eq!(img.get_pixel(1, 0).0, [0, 0, 0]);
/// ```
pub fn yuyv_to_rgb(buf: &[u8], w: u32, h: u32, stride: usize) -> Result<RgbImage> {
    let (wu, hu) = (w as usize, h as usize);
    let stride = stride.max(wu * 2);
    if buf.len() < stride * (hu - 1) + wu * 2 {
        bail!("YUYV frame of {} bytes is too short for {w}x{h}", buf.len());
    }
    let mut img = RgbImage::new(w, h);
    for (y, out_row) in img.chunks_exact_mut(wu * 3).enumerate() {
        let row = &buf[y * stride..y * stride + wu * 2];
        for (x, px) in out_row.chunks_exact_mut(3).enumerate() {
            let pair = &row[(x / 2) * 4..(x / 2) * 4 + 4];
            let yy = if x % 2 == 0 { pair[0] } else { pair[2] };
            px.copy_from_slice(&yuv_to_rgb(yy, pair[1], pair[3]));
        }
    }
    Ok(img)
}

/// Planar I420 (Y plane, then U and V at half resolution) → RGB.
pub fn i420_to_rgb(buf: &[u8], w: usize, h: usize) -> Result<RgbImage> {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let plane = w * h;
    if buf.len() < plane + 2 * cw * ch {
        bail!("I420 frame of {} bytes is too short for {w}x{h}", buf.len());
    }
    let cp = cw * ch;
    Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        let i = (y / 2) * cw + x / 2;
        Rgb(yuv_to_rgb(
            buf[y * w + x],
            buf[plane + i],
            buf[plane + cp + i],
        ))
    }))
}

/// The standard Huffman tables (JPEG Annex K.3) as one DHT segment: MJPEG cameras leave them
/// out of their frames.
fn default_dht() -> Vec<u8> {
    const DC_BITS: [[u8; 16]; 2] = [
        [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    ];
    const AC_BITS: [[u8; 16]; 2] = [
        [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d],
        [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
    ];
    const AC_LUMA: [u8; 162] = [
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52,
        0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6,
        0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3,
        0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8,
        0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ];
    const AC_CHROMA: [u8; 162] = [
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33,
        0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18,
        0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4,
        0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
        0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
        0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ];
    let dc_vals: Vec<u8> = (0..12).collect();
    let mut body = Vec::new();
    for (class_id, bits, vals) in [
        (0x00u8, &DC_BITS[0], &dc_vals[..]),
        (0x10, &AC_BITS[0], &AC_LUMA[..]),
        (0x01, &DC_BITS[1], &dc_vals[..]),
        (0x11, &AC_BITS[1], &AC_CHROMA[..]),
    ] {
        body.push(class_id);
        body.extend_from_slice(bits);
        body.extend_from_slice(vals);
    }
    let len = (body.len() + 2) as u16;
    let mut seg = vec![0xFF, 0xC4];
    seg.extend_from_slice(&len.to_be_bytes());
    seg.extend(body);
    seg
}

/// Whether a JPEG stream defines Huffman tables before its first scan.
fn has_dht(jpeg: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return false;
        }
        let marker = jpeg[i + 1];
        match marker {
            0xC4 => return true,
            0xDA => return false,
            0xD0..=0xD9 | 0x01 => i += 2,
            _ => i += 2 + u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize,
        }
    }
    false
}

/// Decode one MJPEG frame, adding the standard Huffman tables when the frame has none.
pub fn mjpeg_to_rgb(jpeg: &[u8]) -> Result<RgbImage> {
    if jpeg.len() < 4 || jpeg[0] != 0xFF || jpeg[1] != 0xD8 {
        bail!(
            "not a JPEG frame ({} bytes without the FFD8 start marker)",
            jpeg.len()
        );
    }
    let fixed;
    let data = if has_dht(jpeg) {
        jpeg
    } else {
        let mut v = Vec::with_capacity(jpeg.len() + 432);
        v.extend_from_slice(&jpeg[..2]);
        v.extend(default_dht());
        v.extend_from_slice(&jpeg[2..]);
        fixed = v;
        &fixed
    };
    let img = crate::imaging::decode_image(
        data,
        Some(image::ImageFormat::Jpeg),
        crate::limits::frame_limits(),
    )
    .context("corrupt MJPEG frame")?;
    Ok(img.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_known_pixels_and_stride() {
        // 2x2 with 8-byte rows (4 bytes of padding): red-ish and blue-ish pairs
        let (r, b) = ([81u8, 90, 240], [41u8, 240, 110]); // BT.601 Y, U, V of pure red and blue
        let buf = [
            r[0], r[1], r[0], r[2], 0, 0, 0, 0, //
            b[0], b[1], b[0], b[2], 0, 0, 0, 0,
        ];
        let img = yuyv_to_rgb(&buf, 2, 2, 8).unwrap();
        let red = img.get_pixel(1, 0).0;
        let blue = img.get_pixel(0, 1).0;
        assert!(red[0] > 250 && red[1] < 5 && red[2] < 5, "{red:?}");
        assert!(blue[2] > 250 && blue[0] < 5 && blue[1] < 5, "{blue:?}");
        assert!(yuyv_to_rgb(&buf[..10], 2, 2, 8).is_err());
    }

    #[test]
    fn i420_grey_and_colour() {
        // 2x2 Y of 16/235, one U and V sample
        let img = i420_to_rgb(&[16, 235, 235, 16, 128, 128], 2, 2).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 255]);
    }

    /// Remove every DHT segment from a JPEG, as MJPEG cameras send them.
    fn strip_dht(jpeg: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        let mut i = 2;
        while i + 4 <= jpeg.len() {
            let marker = jpeg[i + 1];
            if marker == 0xDA {
                out.extend_from_slice(&jpeg[i..]);
                break;
            }
            let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
            if marker != 0xC4 {
                out.extend_from_slice(&jpeg[i..i + 2 + len]);
            }
            i += 2 + len;
        }
        out
    }

    #[test]
    fn mjpeg_without_huffman_tables_decodes_like_the_full_jpeg() {
        let src = RgbImage::from_fn(32, 16, |x, y| Rgb([(x * 8) as u8, (y * 16) as u8, 128]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode_image(&src)
            .unwrap();
        let stripped = strip_dht(&jpeg);
        assert!(!has_dht(&stripped) && has_dht(&jpeg));
        let a = mjpeg_to_rgb(&jpeg).unwrap();
        let b = mjpeg_to_rgb(&stripped).unwrap();
        assert_eq!(a.as_raw(), b.as_raw());
        // and close to the source picture
        let err = a
            .as_raw()
            .iter()
            .zip(src.as_raw())
            .map(|(p, q)| (*p as i32 - *q as i32).abs())
            .max()
            .unwrap();
        assert!(err < 24, "{err}");
        assert!(mjpeg_to_rgb(&[0, 1, 2, 3]).is_err());
    }
}
