//! When the score makes an event: a pure state machine fed one frame at a time
//! ([`Detector::feed`]: time, score, threshold, where the heatmap peaks).
//!
//! - An event **starts** when the score has stayed above the threshold for
//!   [`DetectorSettings::min_duration`] (a frame at or below it before then resets: a
//!   flicker or a one-frame spike is no event). Its start time is when the score first went
//!   above.
//! - It **ends** when the score has stayed below the clear level, `threshold × (1 −
//!   hysteresis)`, for [`DetectorSettings::clear_duration`] (a frame at or above the clear
//!   level resets that wait: a score that flickers around the threshold keeps one event).
//!   Its end time is when the score last went below the clear level.
//! - The peak score, its time and where the heatmap peaked then are kept from the first
//!   frame above the threshold.

/// How long a score must stay up, and how far and how long down.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectorSettings {
    /// Seconds above the threshold before an event starts.
    pub min_duration: f64,
    /// Seconds below the clear level before it ends.
    pub clear_duration: f64,
    /// The clear level is `threshold × (1 − hysteresis)`.
    pub hysteresis: f32,
}

impl Default for DetectorSettings {
    /// Half a second up (15 frames of a 30 fps camera, longer than a flicker or a bad
    /// frame), 20 % down for two seconds (a person standing still dips a little).
    fn default() -> Self {
        DetectorSettings {
            min_duration: 0.5,
            clear_duration: 2.0,
            hysteresis: 0.2,
        }
    }
}

/// The highest score of an event so far.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peak {
    pub score: f32,
    /// When, in the feed's seconds.
    pub t: f64,
    /// Where the heatmap peaked then, `(x, y)` in the model's pixels.
    pub at: Option<(u32, u32)>,
}

/// What a frame changed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Change {
    /// An event started at `start` (the feed's seconds).
    Started { start: f64, peak: Peak },
    /// The event that started at `start` ended at `end`.
    Ended { start: f64, end: f64, peak: Peak },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Idle,
    /// Above the threshold since `since`, not long enough yet.
    Rising {
        since: f64,
    },
    /// An event since `start`; below the clear level since `low_since`, if it is.
    Active {
        start: f64,
        low_since: Option<f64>,
    },
}

/// The event detector of one run.
#[derive(Clone, Debug)]
pub struct Detector {
    settings: DetectorSettings,
    state: State,
    peak: Peak,
}

impl Detector {
    pub fn new(settings: DetectorSettings) -> Self {
        Detector {
            settings,
            state: State::Idle,
            peak: Peak {
                score: f32::MIN,
                t: 0.0,
                at: None,
            },
        }
    }

    /// Whether an event is under way.
    pub fn active(&self) -> bool {
        matches!(self.state, State::Active { .. })
    }

    /// Whether the score is above the threshold but the event has not started yet.
    pub fn rising(&self) -> bool {
        matches!(self.state, State::Rising { .. })
    }

    /// The peak of the event under way (or rising).
    pub fn peak(&self) -> Option<Peak> {
        (self.state != State::Idle).then_some(self.peak)
    }

    /// One frame at `t` seconds (non-decreasing) with its `score` against `threshold`, the
    /// heatmap peaking at `at`.
    pub fn feed(
        &mut self,
        t: f64,
        score: f32,
        threshold: f32,
        at: Option<(u32, u32)>,
    ) -> Option<Change> {
        let s = self.settings;
        let clear = threshold * (1.0 - s.hysteresis);
        match self.state {
            State::Idle if score > threshold => {
                self.peak = Peak { score, t, at };
                self.state = State::Rising { since: t };
                self.rise_done(t)
            }
            State::Idle => None,
            State::Rising { .. } if score <= threshold => {
                self.state = State::Idle;
                None
            }
            State::Rising { .. } => {
                self.track(t, score, at);
                self.rise_done(t)
            }
            State::Active { start, low_since } => {
                self.track(t, score, at);
                if score >= clear {
                    self.state = State::Active {
                        start,
                        low_since: None,
                    };
                    return None;
                }
                let low = low_since.unwrap_or(t);
                if t - low >= s.clear_duration {
                    self.state = State::Idle;
                    return Some(Change::Ended {
                        start,
                        end: low,
                        peak: self.peak,
                    });
                }
                self.state = State::Active {
                    start,
                    low_since: Some(low),
                };
                None
            }
        }
    }

    /// End the event under way now (the run stops); a rising one is forgotten.
    pub fn finish(&mut self, t: f64) -> Option<Change> {
        let state = std::mem::replace(&mut self.state, State::Idle);
        match state {
            State::Active { start, low_since } => Some(Change::Ended {
                start,
                end: low_since.unwrap_or(t),
                peak: self.peak,
            }),
            _ => None,
        }
    }

    fn track(&mut self, t: f64, score: f32, at: Option<(u32, u32)>) {
        if score > self.peak.score {
            self.peak = Peak { score, t, at };
        }
    }

    /// A rising score that has lasted long enough starts an event.
    fn rise_done(&mut self, t: f64) -> Option<Change> {
        let State::Rising { since } = self.state else {
            return None;
        };
        if t - since < self.settings.min_duration {
            return None;
        }
        self.state = State::Active {
            start: since,
            low_since: None,
        };
        Some(Change::Started {
            start: since,
            peak: self.peak,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FPS: f64 = 10.0;

    /// Feed `scores` at 10 frames a second against a threshold of 1, the heatmap peaking at
    /// `(frame, 0)`; every change with its frame.
    fn run(scores: &[f32]) -> Vec<(usize, Change)> {
        let mut d = Detector::new(DetectorSettings::default());
        scores
            .iter()
            .enumerate()
            .filter_map(|(i, &s)| {
                d.feed(i as f64 / FPS, s, 1.0, Some((i as u32, 0)))
                    .map(|c| (i, c))
            })
            .collect()
    }

    fn repeat(v: f32, n: usize) -> Vec<f32> {
        vec![v; n]
    }

    #[test]
    fn a_steady_rise_starts_after_the_minimum_and_ends_after_the_clear_time() {
        let mut scores = repeat(0.2, 10); // frames 0..10
        scores.extend(repeat(1.5, 20)); // 10..30: up (peak at 20)
        scores[20] = 3.0;
        scores.extend(repeat(0.2, 40)); // 30..70: down
        let changes = run(&scores);
        assert_eq!(changes.len(), 2, "{changes:?}");
        let (i, Change::Started { start, peak }) = changes[0] else {
            panic!("{changes:?}")
        };
        // started 0.5 s after the first frame above (frame 10 at 1.0 s)
        assert_eq!((i, start), (15, 1.0));
        assert_eq!(peak.score, 1.5);
        let (i, Change::Ended { start, end, peak }) = changes[1] else {
            panic!("{changes:?}")
        };
        // ended 2 s after the first frame below the clear level (frame 30 at 3.0 s)
        assert_eq!((i, start, end), (50, 1.0, 3.0));
        assert_eq!((peak.score, peak.t, peak.at), (3.0, 2.0, Some((20, 0))));
    }

    #[test]
    fn a_flickering_score_is_one_event() {
        // up for a second, then around the threshold for 6 s: above, just under it (above
        // the clear level 0.8), and now and then well under it, never for 2 s
        let scores: Vec<f32> = repeat(1.2, 10)
            .into_iter()
            .chain((0..60).map(|i| match i % 7 {
                0..=3 => 1.2,
                4 | 5 => 0.9,
                _ => 0.1,
            }))
            .chain(repeat(0.1, 30))
            .collect();
        let changes = run(&scores);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(matches!(changes[0].1, Change::Started { start, .. } if start == 0.0));
        assert!(matches!(changes[1].1, Change::Ended { .. }));
    }

    #[test]
    fn a_spike_or_a_flicker_below_the_minimum_is_no_event() {
        let mut spike = repeat(0.1, 30);
        spike[12] = 50.0;
        assert_eq!(run(&spike), []);
        // up for 0.4 s, down a frame, up 0.4 s: never 0.5 s in a row
        let flicker: Vec<f32> = (0..60)
            .map(|i| if i % 5 == 4 { 0.5 } else { 2.0 })
            .collect();
        assert_eq!(run(&flicker), []);
    }

    #[test]
    fn finishing_ends_the_event_under_way() {
        let mut d = Detector::new(DetectorSettings::default());
        for i in 0..10 {
            d.feed(i as f64 / FPS, 2.0, 1.0, None);
        }
        assert!(d.active());
        let Some(Change::Ended { start, end, .. }) = d.finish(1.5) else {
            panic!()
        };
        assert_eq!((start, end), (0.0, 1.5));
        assert_eq!(d.finish(2.0), None);
    }
}
