//! Ctrl-C and SIGTERM for long-running commands: the first asks for a clean stop (the loop
//! finishes its frame, restores the display and prints its summary); a second one, for a stop
//! that hangs, runs what [`restore_on_forced_exit`] registered (the display's mode, within
//! [`RESTORE_TIME`]) and then ends the process as the signal's default action does (a shell
//! shows status 130 for Ctrl-C).

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest a second signal waits for the registered restores before the process ends.
pub const RESTORE_TIME: Duration = Duration::from_secs(1);

type Hook = Box<dyn FnOnce() + Send>;

/// What to undo before a forced exit, by registration number.
static RESTORES: Mutex<Vec<(u64, Hook)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A registered restore; dropping it (the clean path did the restoring) unregisters it.
#[must_use = "the restore is unregistered when this is dropped"]
pub struct Restore(u64);

impl Drop for Restore {
    fn drop(&mut self) {
        let mut hooks = RESTORES.lock().unwrap_or_else(|e| e.into_inner());
        hooks.retain(|(id, _)| *id != self.0);
    }
}

/// Register `undo` to run if a second signal ends the process before the clean stop does (a
/// display sink puts the console back). It must be quick and must not wait on the loop.
pub fn restore_on_forced_exit(undo: impl FnOnce() + Send + 'static) -> Restore {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut hooks = RESTORES.lock().unwrap_or_else(|e| e.into_inner());
    hooks.push((id, Box::new(undo)));
    Restore(id)
}

/// Run (and unregister) every registered restore on a thread of their own, waiting at most
/// `limit` for them; how many finished in time.
pub fn run_restores(limit: Duration) -> usize {
    let hooks: Vec<(u64, Hook)> = {
        let mut guard = match RESTORES.try_lock() {
            Ok(g) => g,
            // poisoned or held: a forced exit cannot wait for a registration in progress
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return 0,
        };
        std::mem::take(&mut *guard)
    };
    let (done, finished) = std::sync::mpsc::channel();
    let n = hooks.len();
    let spawned = std::thread::Builder::new()
        .name("restore".into())
        .spawn(move || {
            for (_, undo) in hooks {
                undo();
                let _ = done.send(());
            }
        });
    if spawned.is_err() {
        return 0;
    }
    let deadline = std::time::Instant::now() + limit;
    (0..n)
        .take_while(|_| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            finished.recv_timeout(left).is_ok()
        })
        .count()
}

/// Set `stop` on the first SIGINT or SIGTERM; on the next one, run the registered restores and
/// end the process as the signal would have.
pub fn stop_on_signals(stop: &Arc<AtomicBool>) -> Result<()> {
    // the flag is set in the handler itself, so a first signal stops the loop even if the
    // thread below never runs
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(stop))
            .context("cannot install the signal handler")?;
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install the signal handler")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut first = true;
            for sig in signals.forever() {
                if std::mem::take(&mut first) {
                    continue;
                }
                let restored = run_restores(RESTORE_TIME);
                log::debug!("second signal: {restored} restore(s) ran; ending now");
                let _ = signal_hook::low_level::emulate_default_handler(sig);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_run_once_and_a_dropped_one_not_at_all_and_a_hanging_one_is_not_waited_for() {
        let ran = Arc::new(AtomicU64::new(0));
        let r = ran.clone();
        let kept = restore_on_forced_exit(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let r = ran.clone();
        let dropped = restore_on_forced_exit(move || {
            r.fetch_add(100, Ordering::SeqCst);
        });
        drop(dropped);
        let hang = restore_on_forced_exit(|| std::thread::sleep(Duration::from_secs(30)));
        let t = std::time::Instant::now();
        let finished = run_restores(Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        // the first ran; the hanging one was given up on
        assert_eq!(finished, 1);
        // nothing left to run a second time
        assert_eq!(run_restores(Duration::from_millis(50)), 0);
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        drop((kept, hang));
    }
}
