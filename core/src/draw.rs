//! An `embedded-graphics` [`DrawTarget`] over an in-memory RGB image, so that the same drawing
//! code (overlays, plots) renders to PNG files, framebuffers and LCDs.
//!
//! ```
//! use embedded_graphics::{pixelcolor::Rgb888, prelude::*, primitives::{Line, PrimitiveStyle}};
//! let mut img = image::RgbImage::new(4, 4);
//! Line::new(Point::new(0, 0), Point::new(3, 0))
//!     .into_styled(PrimitiveStyle::with_stroke(Rgb888::WHITE, 1))
//!     .draw(&mut ign_core::draw::ImageTarget(&mut img))
//!     .unwrap();
//! assert_eq!(img.get_pixel(3, 0).0, [255, 255, 255]);
//! assert_eq!(img.get_pixel(3, 1).0, [0, 0, 0]);
//! ```

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use image::RgbImage;

/// Draw into an [`RgbImage`]; pixels outside it are clipped.
pub struct ImageTarget<'a>(pub &'a mut RgbImage);

impl OriginDimensions for ImageTarget<'_> {
    fn size(&self) -> Size {
        Size::new(self.0.width(), self.0.height())
    }
}

impl DrawTarget for ImageTarget<'_> {
    type Color = Rgb888;
    type Error = core::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        let (w, h) = (self.0.width() as i32, self.0.height() as i32);
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 && p.x < w && p.y < h {
                self.0
                    .put_pixel(p.x as u32, p.y as u32, image::Rgb([c.r(), c.g(), c.b()]));
            }
        }
        Ok(())
    }

    /// Rectangles (backgrounds, bars) are filled row by row on the raw buffer.
    fn fill_solid(
        &mut self,
        area: &embedded_graphics::primitives::Rectangle,
        color: Self::Color,
    ) -> Result<(), Self::Error> {
        let area = area.intersection(&self.bounding_box());
        let Some(br) = area.bottom_right() else {
            return Ok(());
        };
        let w = self.0.width() as usize;
        let (x0, x1) = (area.top_left.x as usize, br.x as usize + 1);
        let rgb = [color.r(), color.g(), color.b()];
        let raw: &mut [u8] = self.0.as_mut();
        for y in area.top_left.y as usize..=br.y as usize {
            for p in raw[(y * w + x0) * 3..(y * w + x1) * 3].chunks_exact_mut(3) {
                p.copy_from_slice(&rgb);
            }
        }
        Ok(())
    }
}
