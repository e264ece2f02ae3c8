//! Small line plots rendered to an RGB image (loss curves, convergence of f^k, latency CDFs),
//! drawn with embedded-graphics so that no font or system library is needed.

use crate::draw::ImageTarget;
use embedded_graphics::mono_font::{ascii::FONT_6X10, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Line, PrimitiveStyle, Rectangle};
use embedded_graphics::text::Text;
use image::RgbImage;

/// One named series of `(x, y)` points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Distinct colours for up to eight series (then they repeat).
pub const PALETTE: [Rgb888; 8] = [
    Rgb888::new(31, 119, 180),
    Rgb888::new(255, 127, 14),
    Rgb888::new(44, 160, 44),
    Rgb888::new(214, 39, 40),
    Rgb888::new(148, 103, 189),
    Rgb888::new(140, 86, 75),
    Rgb888::new(227, 119, 194),
    Rgb888::new(127, 127, 127),
];

fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e4).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Render `series` as a line plot of `w×h` pixels with axes, min/max tick labels, a title
/// and a legend. Non-finite points are skipped.
pub fn line_plot(title: &str, x_label: &str, series: &[Series], w: u32, h: u32) -> RgbImage {
    let mut img = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let mut t = ImageTarget(&mut img);
    let text = MonoTextStyle::new(&FONT_6X10, Rgb888::BLACK);
    let (l, r, top, bottom) = (60i32, 10i32, 20i32, 30i32);
    let (pw, ph) = (w as i32 - l - r, h as i32 - top - bottom);
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.0.is_finite() && p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 == x0 {
        x1 = x0 + 1.0;
    }
    if y1 == y0 {
        y1 = y0 + 1.0;
    }
    let px = |x: f64| l + ((x - x0) / (x1 - x0) * pw as f64).round() as i32;
    let py = |y: f64| top + ph - ((y - y0) / (y1 - y0) * ph as f64).round() as i32;
    let _ = Text::new(title, Point::new(l, 12), text).draw(&mut t);
    let axis = PrimitiveStyle::with_stroke(Rgb888::BLACK, 1);
    let _ = Rectangle::new(Point::new(l, top), Size::new(pw as u32, ph as u32))
        .into_styled(axis)
        .draw(&mut t);
    let _ = Text::new(&fmt_tick(y1), Point::new(2, top + 8), text).draw(&mut t);
    let _ = Text::new(&fmt_tick(y0), Point::new(2, top + ph), text).draw(&mut t);
    let _ = Text::new(&fmt_tick(x0), Point::new(l, top + ph + 12), text).draw(&mut t);
    let xs = fmt_tick(x1);
    let _ = Text::new(
        &xs,
        Point::new(l + pw - 6 * xs.len() as i32, top + ph + 12),
        text,
    )
    .draw(&mut t);
    let _ = Text::new(
        x_label,
        Point::new(l + pw / 2 - 3 * x_label.len() as i32, top + ph + 24),
        text,
    )
    .draw(&mut t);
    let name_w = 6 * series.iter().map(|s| s.name.len()).max().unwrap_or(0) as i32;
    let lx = (l + pw - 30 - name_w).max(l + 4);
    for (i, s) in series.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let style = PrimitiveStyle::with_stroke(c, 1);
        let mut prev: Option<Point> = None;
        for &(x, y) in s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
        {
            let p = Point::new(px(x), py(y));
            if let Some(q) = prev {
                let _ = Line::new(q, p).into_styled(style).draw(&mut t);
            } else if s.points.len() == 1 {
                let _ = Rectangle::new(p - Point::new(1, 1), Size::new(3, 3))
                    .into_styled(PrimitiveStyle::with_fill(c))
                    .draw(&mut t);
            }
            prev = Some(p);
        }
        let ly = top + 12 + 12 * i as i32;
        let _ = Line::new(Point::new(lx, ly - 3), Point::new(lx + 15, ly - 3))
            .into_styled(PrimitiveStyle::with_stroke(c, 2))
            .draw(&mut t);
        let _ = Text::new(&s.name, Point::new(lx + 20, ly), text).draw(&mut t);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_series_in_its_colour_inside_the_frame() {
        let s = Series {
            name: "a".into(),
            points: vec![(0.0, 0.0), (1.0, 1.0)],
        };
        let img = line_plot("t", "x", &[s], 200, 150);
        let c = PALETTE[0];
        let n = img
            .pixels()
            .filter(|p| p.0 == [c.r(), c.g(), c.b()])
            .count();
        // the diagonal spans the plot (130 px wide, 100 px high) plus the legend swatch
        assert!(n > 100, "{n}");
        // bottom-left corner of the plot area is on the line
        assert_eq!(img.get_pixel(60, 120).0, [c.r(), c.g(), c.b()]);
    }
}
