//! The events' own thread: it takes each event phase from the watcher (with the canvas of an
//! event's start), encodes and writes the snapshot, and offers the phase to every output's
//! queue; it also passes the score of the moment on. Everything slow that an event needs
//! happens here, never on the loop's display thread.

use image::RgbImage;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use super::event::Event;
use super::outlet::{Delivery, Outlet};
use super::sink::Reading;
use super::snapshots::{self, Folder, SnapshotFormat};
use super::status::Totals;

/// What the watcher hands over.
pub(super) enum Job {
    /// An event phase, with the picture to snapshot (a start's).
    Phase {
        event: Event,
        canvas: Option<Box<RgbImage>>,
    },
    /// The score of the moment.
    Reading(Reading),
}

/// The thread's state.
pub(super) struct Dispatch {
    pub format: SnapshotFormat,
    pub folder: Option<Folder>,
    pub outlets: Arc<Mutex<Vec<Outlet>>>,
    pub totals: Arc<Totals>,
    /// Whether the last snapshot write failed (logged once per outage).
    pub disk_failing: bool,
}

impl Dispatch {
    /// Until the watcher lets go of its end of `jobs`.
    pub fn run(mut self, jobs: Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            match job {
                Job::Phase { event, canvas } => self.phase(event, canvas.as_deref()),
                Job::Reading(r) => {
                    for o in self
                        .outlets
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                    {
                        o.offer_reading(r.clone());
                    }
                }
            }
        }
    }

    fn phase(&mut self, mut event: Event, canvas: Option<&RgbImage>) {
        let snapshot = canvas.and_then(|c| {
            snapshots::encode(c, self.format, &event.id)
                .inspect_err(|e| {
                    Totals::add(&self.totals.snapshot_errors);
                    log::warn!("events: {}: no snapshot: {e:#}", event.id);
                })
                .ok()
                .flatten()
        });
        if let (Some(folder), Some(s)) = (&self.folder, &snapshot) {
            match folder.write(s) {
                Ok(()) => {
                    Totals::add(&self.totals.snapshots);
                    event.snapshot = Some(s.file_name.clone());
                    if std::mem::take(&mut self.disk_failing) {
                        log::info!("events: snapshots are written again");
                    }
                }
                Err(e) => {
                    Totals::add(&self.totals.snapshot_errors);
                    if !std::mem::replace(&mut self.disk_failing, true) {
                        log::warn!("events: snapshot not written (counted; the events go on without it): {e:#}");
                    }
                }
            }
        }
        let d = Arc::new(Delivery { event, snapshot });
        for o in self
            .outlets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            o.offer(d.clone());
        }
    }
}
