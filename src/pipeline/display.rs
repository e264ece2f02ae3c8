//! The display stage: a thread that composes each projected frame (input, f, f^k and the
//! overlay) on one reused canvas and hands it to the sink, measuring end-to-end latency.

use anyhow::Result;
use image::RgbImage;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::compose::{self, Layout};
use super::feed::{any_wants_picture, Watchers};
use super::frame::Frame;
use super::mailbox::Mailbox;
use super::overlay::Hud;
use super::preprocess::Preprocess;
use super::sink::Sink;
use crate::tensor::ImageBatch;

/// A projected frame on its way to the display thread, which composes and shows it.
pub(super) struct Picture {
    pub frame: Frame,
    /// f(x), and f^k(x) when a third panel is shown.
    pub outs: Vec<ImageBatch>,
    pub hud: Hud,
    /// With `--anomaly`: the frame's heatmap (`H×W`), shown as the third panel.
    pub heat: Option<Vec<f32>>,
}

/// What the display thread measured.
#[derive(Default)]
pub(super) struct DisplayStats {
    pub shown: u64,
    pub last_seq: Option<u64>,
    pub e2e: Vec<f64>,
    pub compose_secs: f64,
    pub composed: u64,
    pub display_secs: f64,
    /// Pictures the display mailbox replaced, when the display thread ended.
    pub dropped: u64,
    pub error: Option<anyhow::Error>,
}

/// How the display thread draws and when it stops.
pub(super) struct DisplayPlan {
    pub layout: Layout,
    /// The preprocessing, for the input panel's crop.
    pub pre: Preprocess,
    /// Stop after this many pictures shown.
    pub target: u64,
    /// What watches the loop beside the sink (the web page).
    pub watchers: Watchers,
}

/// Start the display thread. It ends when the mailbox closes, the sink fails or `target`
/// pictures were shown; then it closes the mailbox, sets `done` and finishes the sink.
pub(super) fn spawn(
    mut sink: Box<dyn Sink>,
    plan: DisplayPlan,
    pictures: Arc<Mailbox<Picture>>,
    stats: Arc<Mutex<DisplayStats>>,
    done: Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    let thread = std::thread::Builder::new()
        .name("display".into())
        .spawn(move || {
            // One canvas, reused: composing (and the sink) run beside the inference.
            let mut canvas = RgbImage::new(plan.layout.canvas.0, plan.layout.canvas.1);
            while let Some(p) = pictures.take() {
                let t = Instant::now();
                let watched = any_wants_picture(&plan.watchers);
                let composing = sink.wants_picture() || watched;
                if composing {
                    draw(&mut canvas, &p, &plan);
                }
                sink.status(&p.hud);
                let t_shown = Instant::now();
                let r = sink.show(&canvas, p.frame.seq);
                for w in &plan.watchers {
                    w.telemetry(&p.hud);
                    if watched && w.wants_picture() {
                        w.picture(&canvas, p.frame.seq);
                    }
                }
                let now = Instant::now();
                let mut s = stats.lock().unwrap();
                if composing {
                    s.compose_secs += (t_shown - t).as_secs_f64();
                    s.composed += 1;
                }
                s.display_secs += (now - t_shown).as_secs_f64();
                if let Err(e) = r {
                    s.error = Some(e);
                    break;
                }
                s.e2e.push((now - p.frame.captured).as_secs_f64());
                s.shown += 1;
                s.last_seq = Some(p.frame.seq);
                // `--frames N`: N pictures shown, then the sink is closed
                if s.shown >= plan.target {
                    break;
                }
            }
            // nothing more is taken: a producer waiting to hand a picture over returns
            pictures.close();
            stats.lock().unwrap().dropped = pictures.dropped();
            done.store(true, Ordering::Relaxed);
            let r = sink.finish();
            if let Err(e) = r {
                stats.lock().unwrap().error.get_or_insert(e);
            }
        })?;
    Ok(thread)
}

/// The input panel, one panel per output and the overlay, on a cleared canvas.
fn draw(canvas: &mut RgbImage, p: &Picture, plan: &DisplayPlan) {
    let (layout, pre) = (&plan.layout, &plan.pre);
    let shape = (pre.channels, pre.height, pre.width);
    compose::clear(canvas);
    let rgb = &p.frame.rgb;
    let crop = pre.crop(rgb.width(), rgb.height());
    compose::draw_frame_panel(canvas, rgb, crop, layout.panels[0], layout.cell);
    for (i, out) in p.outs.iter().enumerate() {
        compose::draw_chw_panel(canvas, &out.data, shape, layout.panels[1 + i], layout.cell);
    }
    if let (Some(map), Some(&at)) = (&p.heat, layout.panels.get(1 + p.outs.len())) {
        let rgb = heat_colours(map, p.hud.anomaly_threshold);
        compose::draw_chw_panel(canvas, &rgb, (3, pre.height, pre.width), at, layout.cell);
    }
    p.hud.draw(canvas, layout.hud_y);
}

/// A heatmap (`H×W`, values in [0, 2]) as a 3-channel `C×H×W` picture in [-1, 1]: black
/// through red to yellow, full scale at twice the threshold (at 0.5 without one).
fn heat_colours(map: &[f32], threshold: Option<f32>) -> Vec<f32> {
    let full = threshold.map_or(0.5, |t| 2.0 * t);
    let n = map.len();
    let mut out = vec![-1.0f32; 3 * n];
    for (i, &v) in map.iter().enumerate() {
        let [r, g] = crate::anomaly::heat_colour(v, full);
        out[i] = r * 2.0 - 1.0;
        out[n + i] = g * 2.0 - 1.0;
    }
    out
}
