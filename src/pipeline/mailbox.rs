//! A one-slot "latest frame" mailbox: the producer never blocks, a stale frame that nobody took
//! is replaced (and counted as dropped), so memory stays bounded whatever the speed mismatch.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

struct Slot<T> {
    item: Option<T>,
    closed: bool,
    dropped: u64,
}

/// A single-slot mailbox shared between one producer and one consumer.
pub struct Mailbox<T> {
    slot: Mutex<Slot<T>>,
    ready: Condvar,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox {
            slot: Mutex::new(Slot {
                item: None,
                closed: false,
                dropped: 0,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> Mailbox<T> {
    /// Put `item`, replacing (and counting) one that was not taken yet.
    ///
    /// ```
    /// let m = ign_edge::pipeline::mailbox::Mailbox::default();
    /// m.put(1);
    /// m.put(2);
    /// assert_eq!(m.take(), Some(2));
    /// assert_eq!(m.dropped(), 1);
    /// ```
    pub fn put(&self, item: T) {
        let mut s = self.slot.lock().unwrap();
        if s.item.replace(item).is_some() {
            s.dropped += 1;
        }
        self.ready.notify_one();
    }

    /// Wait for an item; `None` once the mailbox is closed and empty.
    pub fn take(&self) -> Option<T> {
        let mut s = self.slot.lock().unwrap();
        loop {
            if let Some(item) = s.item.take() {
                return Some(item);
            }
            if s.closed {
                return None;
            }
            s = self.ready.wait(s).unwrap();
        }
    }

    /// Wait at most `timeout` for an item.
    pub fn take_timeout(&self, timeout: Duration) -> Option<T> {
        let s = self.slot.lock().unwrap();
        let (mut s, _) = self
            .ready
            .wait_timeout_while(s, timeout, |s| s.item.is_none() && !s.closed)
            .unwrap();
        s.item.take()
    }

    /// No more items will come; wakes the consumer.
    pub fn close(&self) {
        self.slot.lock().unwrap().closed = true;
        self.ready.notify_all();
    }

    /// True while an item waits to be taken.
    pub fn peek_full(&self) -> bool {
        self.slot.lock().unwrap().item.is_some()
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.slot.lock().unwrap().closed
    }

    /// Items replaced before being taken.
    pub fn dropped(&self) -> u64 {
        self.slot.lock().unwrap().dropped
    }
}
