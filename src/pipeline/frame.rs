//! The frame that flows through the live loop: pixels plus capture time and sequence number,
//! so that latency and drops are measured where the user sees them.

use image::RgbImage;
use std::time::Instant;

/// One captured picture.
#[derive(Clone, Debug)]
pub struct Frame {
    pub rgb: RgbImage,
    /// Sequence number assigned by the source, from 0; gaps at the consumer are drops.
    pub seq: u64,
    /// When the source had the pixels.
    pub captured: Instant,
    /// Time the source spent producing this frame (decode, conversion).
    pub capture_secs: f64,
}

impl Frame {
    /// A frame whose pixels are ready now; the source started producing it at `started`.
    pub fn ready(rgb: RgbImage, seq: u64, started: Instant) -> Frame {
        let captured = Instant::now();
        Frame {
            rgb,
            seq,
            captured,
            capture_secs: (captured - started).as_secs_f64(),
        }
    }
}
