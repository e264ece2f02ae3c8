//! The loop's side of the events: a [`Watcher`] that feeds every frame's score to the
//! [`Detector`], turns its changes into [`Event`]s and hands them, with the canvas of an
//! event's start, to the events' thread over a bounded queue (full: dropped and counted).
//! It runs on the display thread, so it only compares numbers, and clones a canvas once per
//! event.

use image::RgbImage;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::detector::{Change, Detector, Peak};
use super::dispatch::Job;
use super::event::{self, Event, Phase};
use super::sink::Reading;
use super::status::Totals;
use crate::pipeline::feed::Watcher;
use crate::pipeline::telemetry::Telemetry;

/// How often the score of the moment is passed on (and whenever an event starts or ends).
pub const READING_EVERY: Duration = Duration::from_secs(1);

/// The watcher's state (behind one lock: the loop calls it from the display thread, the run
/// ends it from another).
struct State {
    detector: Detector,
    /// The event under way: its id and threshold.
    current: Option<(String, f32)>,
    /// A start waiting for its picture (the next composed canvas).
    pending: Option<Event>,
    /// The events' queue; none once finished.
    jobs: Option<SyncSender<Job>>,
    last_reading: Option<(f64, bool)>,
}

/// Watches the loop's scores and makes events.
pub(super) struct EventsWatcher {
    state: Mutex<State>,
    t0: Instant,
    wall0: SystemTime,
    model: String,
    /// Whether starts wait for a picture to snapshot.
    snapshots: bool,
    totals: Arc<Totals>,
}

impl EventsWatcher {
    pub fn new(
        detector: Detector,
        jobs: SyncSender<Job>,
        model: String,
        snapshots: bool,
        totals: Arc<Totals>,
    ) -> Self {
        EventsWatcher {
            state: Mutex::new(State {
                detector,
                current: None,
                pending: None,
                jobs: Some(jobs),
                last_reading: None,
            }),
            t0: Instant::now(),
            wall0: SystemTime::now(),
            model,
            snapshots,
            totals,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The wall-clock time of `t` (the feed's seconds).
    fn wall(&self, t: f64) -> SystemTime {
        self.wall0 + Duration::from_secs_f64(t.max(0.0))
    }

    /// End the event under way (the run stops), send what waits, and let go of the queue.
    pub fn finish(&self) {
        let mut s = self.lock();
        let t = self.t0.elapsed().as_secs_f64();
        if let Some(change) = s.detector.finish(t) {
            self.change(&mut s, change, 0.0);
        }
        if let Some(ev) = s.pending.take() {
            self.send(
                &s,
                Job::Phase {
                    event: ev,
                    canvas: None,
                },
            );
        }
        s.jobs = None;
    }

    /// Hand `job` over without waiting: counted when there is no room.
    fn send(&self, s: &State, job: Job) {
        let Some(tx) = &s.jobs else { return };
        if tx.try_send(job).is_err() {
            Totals::add(&self.totals.overflow);
            log::debug!("events: the events queue is full; dropped");
        }
    }

    fn event(
        &self,
        id: &str,
        phase: Phase,
        start: f64,
        end: Option<f64>,
        peak: Peak,
        threshold: f32,
    ) -> Event {
        Event {
            id: id.to_string(),
            phase,
            start: event::rfc3339(self.wall(start)),
            end: end.map(|e| event::rfc3339(self.wall(e))),
            peak_score: peak.score,
            threshold,
            peak: peak.at.map(|(x, y)| [x, y]),
            model: self.model.clone(),
            snapshot: None,
        }
    }

    /// Turn a detector change into an event phase (`threshold`: the frame's; an end reports
    /// the one its start had).
    fn change(&self, s: &mut State, change: Change, threshold: f32) {
        match change {
            Change::Started { start, peak } => {
                let id = event::new_id(self.wall(start));
                let ev = self.event(&id, Phase::Start, start, None, peak, threshold);
                s.current = Some((id, threshold));
                Totals::add(&self.totals.started);
                self.totals.active.store(true, Ordering::Relaxed);
                log::info!("event {} started (score {:.3})", ev.id, peak.score);
                if self.snapshots {
                    s.pending = Some(ev);
                } else {
                    self.send(
                        s,
                        Job::Phase {
                            event: ev,
                            canvas: None,
                        },
                    );
                }
            }
            Change::Ended { start, end, peak } => {
                let Some((id, threshold)) = s.current.take() else {
                    return;
                };
                // a start still waiting for its picture goes first, without one
                if let Some(ev) = s.pending.take() {
                    self.send(
                        s,
                        Job::Phase {
                            event: ev,
                            canvas: None,
                        },
                    );
                }
                let ev = self.event(&id, Phase::End, start, Some(end), peak, threshold);
                Totals::add(&self.totals.ended);
                self.totals.active.store(false, Ordering::Relaxed);
                log::info!("event {id} ended (peak {:.3})", peak.score);
                self.send(
                    s,
                    Job::Phase {
                        event: ev,
                        canvas: None,
                    },
                );
            }
        }
    }

    /// Pass the score of the moment on, once a [`READING_EVERY`] and on a change.
    fn reading(&self, s: &mut State, t: f64, score: f32, threshold: f32) {
        let active = s.detector.active();
        let due = s
            .last_reading
            .is_none_or(|(at, was)| was != active || t - at >= READING_EVERY.as_secs_f64());
        if due {
            s.last_reading = Some((t, active));
            let r = Reading {
                time: event::rfc3339(self.wall(t)),
                score,
                threshold,
                active,
            };
            self.send(s, Job::Reading(r));
        }
    }
}

impl Watcher for EventsWatcher {
    /// A picture while the score is rising (so that the frame an event starts on is
    /// composed) and while a start waits for one.
    fn wants_picture(&self) -> bool {
        let s = self.lock();
        self.snapshots && (s.pending.is_some() || s.detector.rising())
    }

    fn picture(&self, canvas: &RgbImage, _seq: u64) {
        let mut s = self.lock();
        if let Some(ev) = s.pending.take() {
            let job = Job::Phase {
                event: ev,
                canvas: Some(Box::new(canvas.clone())),
            };
            self.send(&s, job);
        }
    }

    fn telemetry(&self, now: &Telemetry) {
        let (Some(score), Some(threshold)) = (now.anomaly_score, now.anomaly_threshold) else {
            return;
        };
        let mut s = self.lock();
        if s.jobs.is_none() {
            return;
        }
        let t = self.t0.elapsed().as_secs_f64();
        if let Some(change) = s.detector.feed(t, score, threshold, now.anomaly_peak) {
            self.change(&mut s, change, threshold);
        }
        self.reading(&mut s, t, score, threshold);
    }
}
