//! Ctrl-C and SIGTERM for long-running commands: the first asks for a clean stop (the loop
//! finishes its frame, restores the display and prints its summary), a second one exits at
//! once with status 130, for a stop that hangs.

use anyhow::{Context, Result};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Set `stop` on the first SIGINT or SIGTERM; exit with status 130 on the next one.
pub fn stop_on_signals(stop: &Arc<AtomicBool>) -> Result<()> {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // registered first, so it sees the flag as the previous signal left it
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(stop))
            .context("cannot install the signal handler")?;
        signal_hook::flag::register(sig, Arc::clone(stop))
            .context("cannot install the signal handler")?;
    }
    Ok(())
}
