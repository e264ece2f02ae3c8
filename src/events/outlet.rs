//! The runner of one output ([`Outlet`]): its own thread, a bounded queue the loop's side
//! offers to without ever waiting ([`Outlet::offer`]: a full queue drops the newest, counted),
//! retries with exponential backoff, and counters ([`OutletReport`]) that `/stats.json` and
//! `/metrics` show. Stopping is bounded ([`Outlet::stop`]): what is queued gets one more try
//! each until the deadline, and a thread stuck in a call past it is left behind, not joined.

use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::event::{Event, Snapshot};
use super::sink::{EventSink, Reading};

/// Longest an idle output waits between [`EventSink::tick`]s (and the runner notices a stop).
pub const TICK: Duration = Duration::from_millis(100);

/// How an output's runner queues and retries.
#[derive(Clone, Debug)]
pub struct OutletOptions {
    /// Deliveries waiting at most; more are dropped (counted).
    pub queue: usize,
    /// Tries per delivery (the first included); then it is abandoned (counted as failed).
    pub max_tries: u32,
    /// The wait after the first failure; doubled after each next one, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for OutletOptions {
    fn default() -> Self {
        OutletOptions {
            queue: 32,
            max_tries: 6,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// One phase of an event on its way to the outputs (shared by all of them).
#[derive(Debug)]
pub struct Delivery {
    pub event: Event,
    pub snapshot: Option<Snapshot>,
}

/// An output's counters, as `/stats.json` shows them (`/metrics`:
/// `ign_edge_events_<counter>{output="..."}`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct OutletReport {
    /// The output's name ([`EventSink::name`]).
    pub output: String,
    /// Deliveries accepted into its queue so far.
    pub queued: u64,
    /// Deliveries in its queue now.
    pub pending: u64,
    /// Deliveries delivered.
    pub sent: u64,
    /// Deliveries dropped because its queue was full.
    pub dropped: u64,
    /// Tries after a failure.
    pub retried: u64,
    /// Deliveries abandoned after `max_tries`, for a full queue, or at shutdown.
    pub failed: u64,
    /// The last error, until a delivery succeeds.
    pub last_error: Option<String>,
    /// For outputs with a connection: whether it is up.
    pub connected: Option<bool>,
}

/// The counters, shared between the output's thread and whoever reports them.
#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    pending: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    /// 0: no connection, 1: down, 2: up.
    connected: AtomicU8,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }
}

/// What the output's thread and its handle share.
struct Shared {
    counters: Counters,
    stop: AtomicBool,
    /// The newest reading not yet handed to the output.
    reading: Mutex<Option<Reading>>,
}

/// One output on its own thread behind a bounded queue.
pub struct Outlet {
    name: String,
    tx: Option<SyncSender<Arc<Delivery>>>,
    shared: Arc<Shared>,
    /// Says when the thread has ended (it may be left behind, so it is never joined blindly).
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Outlet {
    /// Start `sink` on a thread of its own.
    pub fn start(sink: Box<dyn EventSink>, opts: &OutletOptions) -> std::io::Result<Outlet> {
        let name = sink.name();
        let (tx, rx) = mpsc::sync_channel(opts.queue.max(1));
        let (done_tx, done) = mpsc::channel();
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            reading: Mutex::new(None),
        });
        let runner = Runner {
            sink,
            rx,
            shared: shared.clone(),
            opts: opts.clone(),
            failing: false,
        };
        let thread = std::thread::Builder::new()
            .name(format!("events {name}"))
            .spawn(move || {
                runner.run();
                let _ = done_tx.send(());
            })?;
        Ok(Outlet {
            name,
            tx: Some(tx),
            shared,
            done,
            thread: Some(thread),
        })
    }

    /// The output's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queue `d` without waiting: false (and counted as dropped) when the queue is full or
    /// the output has stopped.
    pub fn offer(&self, d: Arc<Delivery>) -> bool {
        let c = &self.shared.counters;
        // counted first: the thread may take it before try_send returns
        c.pending.fetch_add(1, Ordering::Relaxed);
        let ok = match self.tx.as_ref().map(|tx| tx.try_send(d)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => false,
        };
        if ok {
            c.queued.fetch_add(1, Ordering::Relaxed);
        } else {
            c.pending.fetch_sub(1, Ordering::Relaxed);
            c.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Hand the output the score of the moment (replaces one not yet taken).
    pub fn offer_reading(&self, r: Reading) {
        *self
            .shared
            .reading
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(r);
    }

    /// Its counters now.
    pub fn report(&self) -> OutletReport {
        report(&self.name, &self.shared.counters)
    }

    /// A handle that reads its counters (for the web page), valid after the outlet is gone.
    pub fn counters(&self) -> impl Fn() -> OutletReport + Send + Sync + 'static {
        let (name, shared) = (self.name.clone(), self.shared.clone());
        move || report(&name, &shared.counters)
    }

    /// Ask the output to stop (no more retries; the queue ends once drained) without waiting
    /// for it: several outputs stop side by side this way.
    pub fn begin_stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.tx = None;
    }

    /// Stop: what is queued gets one try each, then the output closes; waits until
    /// `deadline` at most. False when the thread was still busy then (it is left behind).
    pub fn stop(&mut self, deadline: Instant) -> bool {
        self.begin_stop();
        let Some(thread) = self.thread.take() else {
            return true;
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.done.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
                true
            }
            Err(RecvTimeoutError::Timeout) => {
                log::warn!(
                    "events: {} did not finish within the shutdown grace; left behind",
                    self.name
                );
                false
            }
        }
    }
}

impl Drop for Outlet {
    fn drop(&mut self) {
        self.stop(Instant::now() + Duration::from_millis(500));
    }
}

fn report(name: &str, c: &Counters) -> OutletReport {
    let connected = match c.connected.load(Ordering::Relaxed) {
        0 => None,
        v => Some(v == 2),
    };
    OutletReport {
        output: name.to_string(),
        queued: c.queued.load(Ordering::Relaxed),
        pending: c.pending.load(Ordering::Relaxed),
        sent: c.sent.load(Ordering::Relaxed),
        dropped: c.dropped.load(Ordering::Relaxed),
        retried: c.retried.load(Ordering::Relaxed),
        failed: c.failed.load(Ordering::Relaxed),
        last_error: c
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        connected,
    }
}

/// The output's thread.
struct Runner {
    sink: Box<dyn EventSink>,
    rx: Receiver<Arc<Delivery>>,
    shared: Arc<Shared>,
    opts: OutletOptions,
    /// Whether the last try failed (errors are logged once per outage).
    failing: bool,
}

impl Runner {
    fn run(mut self) {
        loop {
            match self.rx.recv_timeout(TICK) {
                Ok(d) => {
                    self.shared.counters.pending.fetch_sub(1, Ordering::Relaxed);
                    self.deliver(&d);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.idle();
        }
        self.sink.close(Duration::from_millis(500));
    }

    /// Between deliveries: the output's tick, its connection state, the newest reading.
    fn idle(&mut self) {
        self.sink.tick();
        let c = &self.shared.counters;
        let state = match self.sink.connected() {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        };
        c.connected.store(state, Ordering::Relaxed);
        let reading = self
            .shared
            .reading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = reading {
            if let Err(e) = self.sink.reading(&r) {
                c.set_error(Some(format!("{e:#}")));
            }
        }
    }

    /// Try `d` until it is delivered, tried `max_tries` times, the queue needs room or the
    /// output is stopping (one try then).
    fn deliver(&mut self, d: &Delivery) {
        let shared = self.shared.clone();
        let c = &shared.counters;
        let mut wait = self.opts.backoff;
        for attempt in 1.. {
            if attempt > 1 {
                c.retried.fetch_add(1, Ordering::Relaxed);
            }
            match self.sink.deliver(&d.event, d.snapshot.as_ref()) {
                Ok(()) => {
                    c.sent.fetch_add(1, Ordering::Relaxed);
                    c.set_error(None);
                    if std::mem::take(&mut self.failing) {
                        log::info!("events: {} delivers again", self.sink.name());
                    }
                    return;
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    if !std::mem::replace(&mut self.failing, true) {
                        log::warn!(
                            "events: {}: {msg} (retrying with backoff)",
                            self.sink.name()
                        );
                    } else {
                        log::debug!("events: {}: {msg}", self.sink.name());
                    }
                    c.set_error(Some(msg));
                }
            }
            let full = c.pending.load(Ordering::Relaxed) >= self.opts.queue as u64;
            if attempt >= self.opts.max_tries || full || self.stopping() || !self.sleep(wait) {
                break;
            }
            wait = (wait * 2).min(self.opts.max_backoff);
        }
        c.failed.fetch_add(1, Ordering::Relaxed);
        log::debug!("events: {}: gave up on {}", self.sink.name(), d.event.id);
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// Sleep `d` (ticking the output) unless a stop comes first: false then.
    fn sleep(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stopping() {
                return false;
            }
            std::thread::sleep(
                until
                    .saturating_duration_since(Instant::now())
                    .min(TICK / 2),
            );
            self.idle();
        }
        !self.stopping()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::event::Phase;

    /// A sink that fails its first `fail` deliveries, sleeps `hang` in each, and records what
    /// it delivered.
    struct Fake {
        fail: u32,
        hang: Duration,
        got: Arc<Mutex<Vec<String>>>,
    }

    impl EventSink for Fake {
        fn name(&self) -> String {
            "fake".into()
        }
        fn deliver(&mut self, ev: &Event, _: Option<&Snapshot>) -> anyhow::Result<()> {
            std::thread::sleep(self.hang);
            if self.fail > 0 {
                self.fail -= 1;
                anyhow::bail!("down");
            }
            self.got.lock().unwrap().push(ev.id.clone());
            Ok(())
        }
    }

    fn delivery(id: &str) -> Arc<Delivery> {
        Arc::new(Delivery {
            event: Event {
                id: id.into(),
                phase: Phase::Start,
                start: String::new(),
                end: None,
                peak_score: 1.0,
                threshold: 0.5,
                peak: None,
                model: "m".into(),
                snapshot: None,
            },
            snapshot: None,
        })
    }

    fn fast() -> OutletOptions {
        OutletOptions {
            queue: 2,
            max_tries: 4,
            backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        }
    }

    fn wait_for(mut ok: impl FnMut() -> bool) {
        let t = Instant::now();
        while !ok() {
            assert!(t.elapsed() < Duration::from_secs(5), "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn failures_are_retried_with_backoff_and_counted() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Fake {
            fail: 2,
            hang: Duration::ZERO,
            got: got.clone(),
        };
        let mut o = Outlet::start(Box::new(sink), &fast()).unwrap();
        assert!(o.offer(delivery("a")));
        wait_for(|| o.report().sent == 1);
        let r = o.report();
        assert_eq!((r.queued, r.retried, r.failed, r.pending), (1, 2, 0, 0));
        assert_eq!(r.last_error, None, "cleared by the success");
        assert!(o.stop(Instant::now() + Duration::from_secs(1)));
        assert_eq!(*got.lock().unwrap(), ["a"]);
    }

    #[test]
    fn a_full_queue_drops_without_waiting_and_a_hung_output_is_left_behind() {
        let sink = Fake {
            fail: 0,
            hang: Duration::from_secs(3),
            got: Default::default(),
        };
        let mut o = Outlet::start(Box::new(sink), &fast()).unwrap();
        let t = Instant::now();
        let accepted = (0..10)
            .filter(|i| o.offer(delivery(&i.to_string())))
            .count();
        assert!(t.elapsed() < Duration::from_millis(50), "offer waited");
        // one in the output's hands (maybe), two in the queue
        assert!((2..=3).contains(&accepted), "{accepted}");
        assert_eq!(o.report().dropped, 10 - accepted as u64);
        let t = Instant::now();
        assert!(!o.stop(Instant::now() + Duration::from_millis(300)));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }

    #[test]
    fn a_delivery_is_abandoned_after_max_tries() {
        let sink = Fake {
            fail: u32::MAX,
            hang: Duration::ZERO,
            got: Default::default(),
        };
        let mut o = Outlet::start(Box::new(sink), &fast()).unwrap();
        o.offer(delivery("x"));
        wait_for(|| o.report().failed == 1);
        let r = o.report();
        assert_eq!((r.retried, r.sent), (3, 0));
        assert_eq!(r.last_error.as_deref(), Some("down"));
        assert!(o.stop(Instant::now() + Duration::from_secs(1)));
    }
}
