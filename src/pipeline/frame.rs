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
