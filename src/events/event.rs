//! What an output is given: an [`Event`] (one phase of one event, as JSON) and, with its
//! start, a [`Snapshot`] (the composed picture camera | f | heatmap, encoded).

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which moment of an event a message reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The score stayed above the threshold for the minimum duration (`end` is unset).
    Start,
    /// The score stayed below the clear level for the clear duration, or the run stopped.
    End,
}

/// One phase of one event, as every output receives it (and `jsonl:` writes it, one line
/// each). Times are RFC 3339 in UTC with milliseconds (`2026-12-07T11:34:48.123Z`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Unique in a run and across runs: the start time in ms since 1970 and a counter
    /// (`evt-1796643288123-1`); the start and end of one event share it.
    pub id: String,
    pub phase: Phase,
    /// When the score first went above the threshold (before the minimum duration passed).
    pub start: String,
    /// When the score first went below the clear level for good (`end` phase only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// The highest score so far (at the end: of the whole event).
    pub peak_score: f32,
    pub threshold: f32,
    /// Where the heatmap peaked at the peak score, `[x, y]` in the model's pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak: Option<[u32; 2]>,
    /// The model's name (its file stem).
    pub model: String,
    /// The snapshot's file name in the events folder (`--events-dir`), when one was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// An encoded picture of an event: camera | f | heatmap as the loop composed it.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// `<event id>.jpg` or `.png` (the name in the events folder, when it is written).
    pub file_name: String,
    /// `image/jpeg` or `image/png`.
    pub mime: &'static str,
    pub bytes: Vec<u8>,
}

/// A new event id for an event that started at `start` (see [`Event::id`]).
pub fn new_id(start: SystemTime) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let ms = start
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    format!("evt-{ms}-{}", COUNTER.fetch_add(1, Ordering::Relaxed) + 1)
}

/// `t` as RFC 3339 in UTC with milliseconds, e.g. `2026-12-07T11:34:48.123Z` (times before
/// 1970 read as 1970).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_millis(s * 1000 + ms);
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(at(1_796_643_288, 123)), "2026-12-07T11:34:48.123Z");
        assert_eq!(rfc3339(at(4_102_444_799, 999)), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn ids_are_unique_even_at_the_same_instant() {
        let t = UNIX_EPOCH + Duration::from_secs(5);
        let (a, b) = (new_id(t), new_id(t));
        assert_ne!(a, b);
        assert!(a.starts_with("evt-5000-"), "{a}");
    }

    #[test]
    fn an_event_serializes_without_unset_fields() {
        let e = Event {
            id: "evt-1-1".into(),
            phase: Phase::Start,
            start: "1970-01-01T00:00:00.001Z".into(),
            end: None,
            peak_score: 0.5,
            threshold: 0.25,
            peak: Some([3, 4]),
            model: "m".into(),
            snapshot: None,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["phase"], "start");
        assert_eq!(v["peak"], serde_json::json!([3, 4]));
        assert!(v.get("end").is_none() && v.get("snapshot").is_none());
    }
}
