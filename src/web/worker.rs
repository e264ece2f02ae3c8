//! The pad's inference: one thread that owns the pad's CPU backends, fed through a bounded queue
//! (full: 503), so the connection tasks never compute and never wait for a lock. Uploaded images
//! are checked against [`MAX_IMAGE_SIDE`] and [`MAX_IMAGE_ALLOC`] before they are decoded; a
//! panic in a job becomes a 500, and the worker goes on.

use anyhow::{Context, Result};
use axum::http::StatusCode;
use bytes::Bytes;
use image::{DynamicImage, RgbImage};
use std::io::Cursor;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use tokio::sync::oneshot;

use super::{MAX_IMAGE_ALLOC, MAX_IMAGE_SIDE, PAD_QUEUE, PAD_TIMEOUT};
use crate::backend::{cpu::CpuBackend, Projector};
use crate::latent::LatentSplit;
use crate::model::{Model, ModelInfo};
use crate::tensor::ImageBatch;

/// What a pad request asks for.
pub(super) enum Task {
    /// f and f∘f of an uploaded image.
    Project(Bytes),
    /// f and f∘f of a noise image from this seed.
    Noise(u64),
    /// 8 points between the latents of two uploaded images.
    Interpolate(Bytes),
}

/// A PNG, or a status and a message.
pub(super) type Reply = std::result::Result<Vec<u8>, (StatusCode, String)>;

struct Job {
    task: Task,
    reply: oneshot::Sender<Reply>,
}

/// The queue to the pad's thread.
pub(super) struct Worker {
    jobs: SyncSender<Job>,
}

impl Worker {
    /// Load the pad's backends and start its thread (it ends when the [`Worker`] is dropped).
    pub(super) fn start(model: &Model, noise: Option<&Model>) -> Result<Worker> {
        let mut pad = Pad {
            split: LatentSplit::new(model).ok(),
            info: model.info.clone(),
            f: Projector::cpu_with(model, noise, Some(1))?,
        };
        Worker::with_runner(move |task| pad.run(task))
    }

    /// A thread that answers each task with `run`, behind a queue of [`PAD_QUEUE`].
    fn with_runner(mut run: impl FnMut(Task) -> Reply + Send + 'static) -> Result<Worker> {
        let (jobs, queue) = sync_channel::<Job>(PAD_QUEUE);
        std::thread::Builder::new()
            .name("http-pad".into())
            .spawn(move || {
                for job in queue {
                    if job.reply.is_closed() {
                        continue; // the client left (or gave up) while it waited
                    }
                    let reply = guarded(|| run(job.task));
                    let _ = job.reply.send(reply);
                }
            })
            .context("cannot start the pad's thread")?;
        Ok(Worker { jobs })
    }

    /// Queue `task` and wait for its answer; 503 at once when the queue is full, and after
    /// [`PAD_TIMEOUT`] without an answer.
    pub(super) async fn run(&self, task: Task) -> Reply {
        let (reply, answer) = oneshot::channel();
        match self.jobs.try_send(Job { task, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the pad is busy; try again in a moment".into(),
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the pad has stopped".into(),
                ))
            }
        }
        match tokio::time::timeout(PAD_TIMEOUT, answer).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "the pad dropped the request".into(),
            )),
            Err(_) => Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "the pad is too slow right now; try again later".into(),
            )),
        }
    }
}

/// Run one job; a panic becomes a 500 instead of ending the thread.
fn guarded(job: impl FnOnce() -> Reply) -> Reply {
    std::panic::catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the pad failed: {what}"),
        ))
    })
}

/// What the pad's thread owns.
struct Pad {
    /// The model and its noise variant.
    f: Projector<CpuBackend>,
    split: Option<LatentSplit>,
    info: ModelInfo,
}

fn internal(e: anyhow::Error) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

impl Pad {
    fn run(&mut self, task: Task) -> Reply {
        match task {
            Task::Project(body) => {
                let x = drawing(&body, &self.info)?;
                let ys = self.f.project(&x, 2).map_err(internal)?;
                strip_png(ys.iter().flat_map(crate::imaging::batch_tiles).collect())
            }
            Task::Noise(seed) => {
                let z = crate::inputs::noise_batch(&self.info, 1, seed);
                let ys = self.f.project_noise(&z, 2).map_err(internal)?;
                strip_png(ys.iter().flat_map(crate::imaging::batch_tiles).collect())
            }
            Task::Interpolate(body) => match self.split.as_mut() {
                None => Err((
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{}: the model has no ign.latent metadata, so it cannot interpolate",
                        self.info.path.display()
                    ),
                )),
                Some(split) => interpolation_png(split, &self.info, &body),
            },
        }
    }
}

/// Tiles side by side at their own size, as PNG bytes.
fn strip_png(tiles: Vec<RgbImage>) -> Reply {
    crate::imaging::grid(&[tiles], 1, 0)
        .and_then(|g| crate::fsio::png_bytes(&g))
        .map_err(internal)
}

/// Decode an upload, after checking the size it declares: 413 beyond [`MAX_IMAGE_SIDE`] on a
/// side or [`MAX_IMAGE_ALLOC`] bytes, 400 if it is not an image.
pub(super) fn decode_upload(
    bytes: &[u8],
) -> std::result::Result<DynamicImage, (StatusCode, String)> {
    let not_image =
        |e: &dyn std::fmt::Display| (StatusCode::BAD_REQUEST, format!("not an image: {e}"));
    let reader = || {
        image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| not_image(&e))
    };
    let (w, h) = reader()?.into_dimensions().map_err(|e| not_image(&e))?;
    let too_large = |what: String| (StatusCode::PAYLOAD_TOO_LARGE, what);
    if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE {
        return Err(too_large(format!(
            "image {w}x{h} is larger than {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}"
        )));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_ALLOC);
    let mut r = reader()?;
    r.limits(limits);
    r.decode().map_err(|e| match e {
        image::ImageError::Limits(e) => too_large(format!(
            "image {w}x{h} needs more than {} MiB to decode ({e})",
            MAX_IMAGE_ALLOC >> 20
        )),
        e => not_image(&e),
    })
}

/// A drawing decoded and shaped for the model.
fn drawing(
    bytes: &[u8],
    info: &ModelInfo,
) -> std::result::Result<ImageBatch, (StatusCode, String)> {
    let img = decode_upload(bytes)?;
    let x = crate::imaging::image_to_chw(&img, info.channels, info.height, info.width);
    ImageBatch::new(x, [1, info.channels, info.height, info.width])
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))
}

/// 8 points between the latents of two drawings, as one PNG strip.
fn interpolation_png(split: &mut LatentSplit, info: &ModelInfo, body: &[u8]) -> Reply {
    let bad = || {
        (
            StatusCode::BAD_REQUEST,
            "expected a 4-byte big-endian length, the first image, then the second".to_string(),
        )
    };
    let (len, rest) = body.split_first_chunk::<4>().ok_or_else(bad)?;
    let n = u32::from_be_bytes(*len) as usize;
    if rest.len() < n {
        return Err(bad());
    }
    let (a, b) = (drawing(&rest[..n], info)?, drawing(&rest[n..], info)?);
    // eight points, ends included, on the great circle (as `latent interpolate --slerp`)
    let ys = crate::latent::interpolate(split, &a, &b, 8, crate::latent::Path2::Slerp)
        .map_err(internal)?;
    strip_png(crate::imaging::batch_tiles(&ys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_size_is_checked_before_decoding() {
        let (code, msg) = decode_upload(&crate::imaging::png_declaring(30000, 30000)).unwrap_err();
        assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{msg}");
        let (code, msg) = decode_upload(&crate::imaging::png_declaring(4096, 4096)).unwrap_err();
        // within the sides but truncated data: refused while decoding, without 16 MiB per row
        assert!(code.is_client_error(), "{msg}");
        let (code, _) = decode_upload(b"not an image").unwrap_err();
        assert_eq!(code, StatusCode::BAD_REQUEST);
        let mut ok = Vec::new();
        RgbImage::new(28, 28)
            .write_to(&mut Cursor::new(&mut ok), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(decode_upload(&ok).unwrap().width(), 28);
    }

    #[test]
    fn a_full_queue_is_a_503_and_a_panic_a_500() {
        let (started, began) = std::sync::mpsc::channel::<()>();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let worker = std::sync::Arc::new(
            Worker::with_runner(move |task| {
                let _ = started.send(());
                let _ = gate.recv_timeout(std::time::Duration::from_secs(30));
                match task {
                    Task::Noise(0) => panic!("boom"),
                    _ => Ok(vec![1]),
                }
            })
            .unwrap(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let run = |seed| {
                let w = worker.clone();
                tokio::spawn(async move { w.run(Task::Noise(seed)).await })
            };
            let first = run(1);
            tokio::task::yield_now().await;
            began
                .recv_timeout(std::time::Duration::from_secs(30))
                .unwrap(); // the thread is busy with the first task
            let queued: Vec<_> = (0..PAD_QUEUE as u64).map(|i| run(2 + i)).collect();
            for _ in 0..10 {
                tokio::task::yield_now().await; // they all get to the queue
            }
            let (code, _) = worker.run(Task::Noise(99)).await.unwrap_err();
            assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
            for _ in 0..=PAD_QUEUE {
                release.send(()).unwrap();
            }
            assert!(first.await.unwrap().is_ok());
            for q in queued {
                assert!(q.await.unwrap().is_ok());
            }
            // a panicking job answers 500, and the thread goes on
            release.send(()).unwrap();
            let (code, msg) = worker.run(Task::Noise(0)).await.unwrap_err();
            assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
            assert!(msg.contains("boom"), "{msg}");
            release.send(()).unwrap();
            assert!(worker.run(Task::Noise(5)).await.is_ok());
        });
    }

    #[test]
    fn a_panicking_job_is_a_500() {
        let r = guarded(|| panic!("boom"));
        let (code, msg) = r.unwrap_err();
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(msg.contains("boom"), "{msg}");
    }
}
