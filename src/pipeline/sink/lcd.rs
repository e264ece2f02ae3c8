//! `lcd:/dev/spidevB.C[,option=value...]`: small SPI TFT displays (ST7789, ILI9341) driven
//! with mipidsi over linux-embedded-hal (spidev + GPIO character device), feature `lcd`.
//!
//! Options (defaults fit the common 2" ST7789 and 2.8" ILI9341 Pi HATs):
//! `model=st7789|ili9341`, `dc=25` and `rst=27` (BCM line numbers), `chip=/dev/gpiochip0`
//! (`/dev/gpiochip4` on a Pi 5), `hz=32000000`, `rotate=90` (landscape; 0, 90, 180, 270),
//! `invert=1` (ST7789 panels show inverted colours without it; 0 for ILI9341).
//!
//! ```
//! use ign_edge::pipeline::sink::lcd::LcdSpec;
//! let s: LcdSpec = "/dev/spidev0.0,model=ili9341,dc=24,rotate=270".parse().unwrap();
//! assert_eq!((s.dc, s.rotate, s.size()), (24, 270, (320, 240)));
//! ```

use anyhow::{anyhow, bail, Result};
use std::path::PathBuf;
use std::str::FromStr;

/// The panel's controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LcdModel {
    St7789,
    Ili9341,
}

/// A parsed `lcd:` spec.
#[derive(Clone, Debug, PartialEq)]
pub struct LcdSpec {
    pub spidev: PathBuf,
    pub model: LcdModel,
    pub dc: u32,
    pub rst: Option<u32>,
    pub chip: PathBuf,
    pub hz: u32,
    pub rotate: u32,
    pub invert: bool,
}

impl LcdSpec {
    /// The visible size in the chosen rotation (both models are 240x320 panels).
    pub fn size(&self) -> (u32, u32) {
        if self.rotate % 180 == 90 {
            (320, 240)
        } else {
            (240, 320)
        }
    }
}

impl FromStr for LcdSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut parts = s.split(',');
        let dev = parts.next().unwrap_or("").trim();
        let mut spec = LcdSpec {
            spidev: PathBuf::from(if dev.is_empty() {
                "/dev/spidev0.0"
            } else {
                dev
            }),
            model: LcdModel::St7789,
            dc: 25,
            rst: Some(27),
            chip: PathBuf::from("/dev/gpiochip0"),
            hz: 32_000_000,
            rotate: 90,
            invert: true,
        };
        let mut invert_given = false;
        for p in parts {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| anyhow!("lcd:{s}: options are key=value ({p})"))?;
            let num = |v: &str| -> Result<u32> {
                v.trim()
                    .parse()
                    .map_err(|_| anyhow!("lcd:{s}: {k}={v} is not a number"))
            };
            match k.trim() {
                "model" => {
                    spec.model = match v.trim().to_ascii_lowercase().as_str() {
                        "st7789" => LcdModel::St7789,
                        "ili9341" => LcdModel::Ili9341,
                        m => bail!("lcd:{s}: model {m} is not supported (st7789 or ili9341)"),
                    }
                }
                "dc" => spec.dc = num(v)?,
                "rst" => {
                    spec.rst = if v.trim() == "none" {
                        None
                    } else {
                        Some(num(v)?)
                    }
                }
                "chip" => spec.chip = PathBuf::from(v.trim()),
                "hz" => spec.hz = num(v)?,
                "rotate" => {
                    spec.rotate = num(v)?;
                    if ![0, 90, 180, 270].contains(&spec.rotate) {
                        bail!("lcd:{s}: rotate is 0, 90, 180 or 270");
                    }
                }
                "invert" => {
                    spec.invert = num(v)? != 0;
                    invert_given = true;
                }
                other => bail!(
                    "lcd:{s}: unknown option {other} (model, dc, rst, chip, hz, rotate, invert)"
                ),
            }
        }
        if !invert_given && spec.model == LcdModel::Ili9341 {
            spec.invert = false;
        }
        Ok(spec)
    }
}

#[cfg(all(feature = "lcd", target_os = "linux"))]
pub use device::LcdSink;

#[cfg(all(feature = "lcd", target_os = "linux"))]
mod device {
    use super::*;
    use crate::pipeline::sink::Sink;
    use anyhow::Context;
    use embedded_graphics::pixelcolor::{Rgb565, Rgb888};
    use image::RgbImage;
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    use linux_embedded_hal::spidev::{SpiModeFlags, SpidevOptions};
    use linux_embedded_hal::{CdevPin, Delay, SpidevDevice};
    use mipidsi::interface::SpiInterface;
    use mipidsi::models::{ILI9341Rgb565, ST7789};
    use mipidsi::options::{ColorInversion, Orientation, Rotation};
    use mipidsi::{Builder, Display, NoResetPin};

    type Di = SpiInterface<'static, SpidevDevice, CdevPin>;

    enum Panel {
        St7789(Display<Di, ST7789, CdevPin>),
        Ili9341(Display<Di, ILI9341Rgb565, CdevPin>),
        St7789NoReset(Display<Di, ST7789, NoResetPin>),
        Ili9341NoReset(Display<Di, ILI9341Rgb565, NoResetPin>),
    }

    /// Shows frames on an SPI LCD.
    pub struct LcdSink {
        spec: LcdSpec,
        panel: Panel,
        pixels: Vec<Rgb565>,
    }

    fn output_line(chip: &mut Chip, line: u32, what: &str, spec: &LcdSpec) -> Result<CdevPin> {
        let handle = chip
            .get_line(line)
            .and_then(|l| l.request(LineRequestFlags::OUTPUT, 0, "ign-edge"))
            .with_context(|| {
                format!(
                    "{}: cannot claim GPIO line {line} for {what} (set {what}= to your display's pin)",
                    spec.chip.display()
                )
            })?;
        CdevPin::new(handle).map_err(|e| anyhow!("GPIO line {line}: {e}"))
    }

    impl LcdSink {
        /// Open the SPI device and GPIO lines and initialise the panel.
        pub fn open(spec: LcdSpec) -> Result<Self> {
            let fix = "enable SPI (dtparam=spi=on in config.txt) and add the user to the spi and gpio groups";
            let mut spi = SpidevDevice::open(&spec.spidev).with_context(|| {
                format!(
                    "{}: cannot open the SPI device ({fix})",
                    spec.spidev.display()
                )
            })?;
            spi.0
                .configure(
                    &SpidevOptions::new()
                        .bits_per_word(8)
                        .max_speed_hz(spec.hz)
                        .mode(SpiModeFlags::SPI_MODE_0)
                        .build(),
                )
                .with_context(|| format!("{}: cannot configure SPI", spec.spidev.display()))?;
            let mut chip = Chip::new(&spec.chip).with_context(|| {
                format!("{}: cannot open the GPIO chip ({fix})", spec.chip.display())
            })?;
            let dc = output_line(&mut chip, spec.dc, "dc", &spec)?;
            // the SPI interface keeps a transfer buffer for the display's lifetime
            let buffer: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
            let di = SpiInterface::new(spi, dc, buffer);
            let rotation = match spec.rotate {
                0 => Rotation::Deg0,
                90 => Rotation::Deg90,
                180 => Rotation::Deg180,
                _ => Rotation::Deg270,
            };
            let orientation = Orientation::new().rotate(rotation);
            let invert = if spec.invert {
                ColorInversion::Inverted
            } else {
                ColorInversion::Normal
            };
            let mut delay = Delay;
            let err = |e: &dyn std::fmt::Debug| {
                anyhow!(
                    "{}: the display did not initialise ({e:?}); check model=, dc= and rst=",
                    spec.spidev.display()
                )
            };
            // the options both panels share, then the reset line if there is one
            macro_rules! build {
                ($model:expr, $with_reset:ident, $without:ident) => {{
                    let b = Builder::new($model, di)
                        .display_size(240, 320)
                        .orientation(orientation)
                        .invert_colors(invert);
                    match spec.rst {
                        Some(r) => Panel::$with_reset(
                            b.reset_pin(output_line(&mut chip, r, "rst", &spec)?)
                                .init(&mut delay)
                                .map_err(|e| err(&e))?,
                        ),
                        None => Panel::$without(b.init(&mut delay).map_err(|e| err(&e))?),
                    }
                }};
            }
            let panel = match spec.model {
                LcdModel::St7789 => build!(ST7789, St7789, St7789NoReset),
                LcdModel::Ili9341 => build!(ILI9341Rgb565, Ili9341, Ili9341NoReset),
            };
            let (w, h) = spec.size();
            Ok(LcdSink {
                spec,
                panel,
                pixels: Vec::with_capacity((w * h) as usize),
            })
        }
    }

    impl Sink for LcdSink {
        fn describe(&self) -> String {
            let (w, h) = self.spec.size();
            format!(
                "lcd {} {:?} {w}x{h} at {} MHz",
                self.spec.spidev.display(),
                self.spec.model,
                self.spec.hz / 1_000_000
            )
        }

        fn size(&self) -> (u32, u32) {
            self.spec.size()
        }

        fn show(&mut self, canvas: &RgbImage, _seq: u64) -> Result<()> {
            let (w, h) = self.spec.size();
            self.pixels.clear();
            for y in 0..h {
                for x in 0..w {
                    let p = if x < canvas.width() && y < canvas.height() {
                        canvas.get_pixel(x, y).0
                    } else {
                        [0, 0, 0]
                    };
                    self.pixels.push(Rgb888::new(p[0], p[1], p[2]).into());
                }
            }
            let (ex, ey) = ((w - 1) as u16, (h - 1) as u16);
            let px = self.pixels.iter().copied();
            let r = match &mut self.panel {
                Panel::St7789(d) => d.set_pixels(0, 0, ex, ey, px).map_err(|e| format!("{e:?}")),
                Panel::Ili9341(d) => d.set_pixels(0, 0, ex, ey, px).map_err(|e| format!("{e:?}")),
                Panel::St7789NoReset(d) => {
                    d.set_pixels(0, 0, ex, ey, px).map_err(|e| format!("{e:?}"))
                }
                Panel::Ili9341NoReset(d) => {
                    d.set_pixels(0, 0, ex, ey, px).map_err(|e| format!("{e:?}"))
                }
            };
            r.map_err(|e| anyhow!("{}: SPI write failed: {e}", self.spec.spidev.display()))
        }
    }
}

/// `lcd:/dev/spidevB.C[,option=value...]`: the spec parsed here, the panel opened with the
/// `lcd` feature (a build without it says how to get it).
pub fn open_spec(arg: &str, _opts: &super::SinkOptions) -> Result<Box<dyn super::Sink>> {
    let spec: LcdSpec = arg.parse()?;
    #[cfg(all(feature = "lcd", target_os = "linux"))]
    {
        Ok(Box::new(LcdSink::open(spec)?))
    }
    #[cfg(not(all(feature = "lcd", target_os = "linux")))]
    {
        let _ = spec;
        bail!(
            "lcd:{arg}: this ign-edge was built without SPI LCD support; build it with \
             `cargo build --release --features lcd`"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_the_common_pi_hats() {
        let s: LcdSpec = "".parse().unwrap();
        assert_eq!(s.spidev, PathBuf::from("/dev/spidev0.0"));
        assert_eq!(
            (s.model, s.dc, s.rst, s.rotate, s.invert),
            (LcdModel::St7789, 25, Some(27), 90, true)
        );
        assert_eq!(s.size(), (320, 240));
        let s: LcdSpec = "/dev/spidev0.1,model=ili9341,rst=none,rotate=0,chip=/dev/gpiochip4"
            .parse()
            .unwrap();
        assert_eq!(
            (s.model, s.rst, s.invert, s.size()),
            (LcdModel::Ili9341, None, false, (240, 320))
        );
        assert_eq!(s.chip, PathBuf::from("/dev/gpiochip4"));
    }

    #[test]
    fn bad_options_say_what_is_allowed() {
        for (spec, needle) in [
            ("/dev/spidev0.0,model=ssd1306", "st7789 or ili9341"),
            ("/dev/spidev0.0,rotate=45", "0, 90, 180 or 270"),
            ("/dev/spidev0.0,dc=x", "not a number"),
            ("/dev/spidev0.0,speed=1", "unknown option"),
            ("/dev/spidev0.0,dc", "key=value"),
        ] {
            let e = spec.parse::<LcdSpec>().unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }
}
