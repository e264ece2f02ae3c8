//! What runs beside the loop and watches it (the web page): a [`Watcher`] sees the figures of
//! every frame shown and, when it asks, the composed picture. The loop knows watchers only
//! through this trait; they are not sinks (they show nothing of their own accord and do not
//! set the canvas size), and what they own (the web page's server, its pad and model) is
//! theirs.

use image::RgbImage;
use std::sync::Arc;

use super::telemetry::Telemetry;

/// Something that watches the running loop (called on the display thread: keep it short).
pub trait Watcher: Send + Sync {
    /// Whether the next composed picture is wanted (the loop composes one for it even when
    /// no sink wants one).
    fn wants_picture(&self) -> bool;
    /// The picture just shown, `seq` its frame's sequence number.
    fn picture(&self, canvas: &RgbImage, seq: u64);
    /// The figures of the frame just shown (once per frame).
    fn telemetry(&self, now: &Telemetry);
}

/// The watchers of one run.
pub type Watchers = Vec<Arc<dyn Watcher>>;

/// Whether any of `watchers` wants the next picture.
pub fn any_wants_picture(watchers: &[Arc<dyn Watcher>]) -> bool {
    watchers.iter().any(|w| w.wants_picture())
}
