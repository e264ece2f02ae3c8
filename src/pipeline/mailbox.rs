//! A one-slot "latest frame" mailbox: the producer never blocks, a stale frame that nobody took
//! is replaced (and counted as dropped), so memory stays bounded whatever the speed mismatch.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// What [`Mailbox::take_timeout`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken<T> {
    /// An item.
    Item(T),
    /// The mailbox is closed and empty: no item will come.
    Closed,
    /// Nothing arrived in time; the mailbox is still open.
    TimedOut,
}

struct Slot<T> {
    item: Option<T>,
    closed: bool,
    dropped: u64,
    /// Threads blocked on `ready`: a put or take with nobody waiting skips the wake-up
    /// (a system call per frame on each side otherwise).
    waiting: u32,
}

impl<T> Slot<T> {
    fn wake(&self, ready: &Condvar) {
        if self.waiting > 0 {
            ready.notify_all();
        }
    }
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
                waiting: 0,
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
        s.wake(&self.ready);
    }

    /// Wait for an item; `None` once the mailbox is closed and empty.
    pub fn take(&self) -> Option<T> {
        let mut s = self.slot.lock().unwrap();
        loop {
            if let Some(item) = s.item.take() {
                s.wake(&self.ready);
                return Some(item);
            }
            if s.closed {
                return None;
            }
            s.waiting += 1;
            s = self.ready.wait(s).unwrap();
            s.waiting -= 1;
        }
    }

    /// Wait at most `timeout` for an item, so that a caller can check a stop flag between
    /// waits instead of blocking forever on a source that stopped delivering.
    ///
    /// ```
    /// use ign_edge::pipeline::mailbox::{Mailbox, Taken};
    /// use std::time::Duration;
    /// let m = Mailbox::default();
    /// assert_eq!(m.take_timeout(Duration::from_millis(1)), Taken::TimedOut);
    /// m.put(7);
    /// assert_eq!(m.take_timeout(Duration::from_millis(1)), Taken::Item(7));
    /// m.close();
    /// assert_eq!(m.take_timeout(Duration::from_millis(1)), Taken::<i32>::Closed);
    /// ```
    pub fn take_timeout(&self, timeout: Duration) -> Taken<T> {
        let deadline = Instant::now() + timeout;
        let mut s = self.slot.lock().unwrap();
        loop {
            if let Some(item) = s.item.take() {
                s.wake(&self.ready);
                return Taken::Item(item);
            }
            if s.closed {
                return Taken::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Taken::TimedOut;
            }
            s.waiting += 1;
            s = self.ready.wait_timeout(s, deadline - now).unwrap().0;
            s.waiting -= 1;
        }
    }

    /// The item if one is waiting now, without blocking.
    pub fn try_take(&self) -> Option<T> {
        let mut s = self.slot.lock().unwrap();
        let item = s.item.take();
        if item.is_some() {
            s.wake(&self.ready);
        }
        item
    }

    /// Put `item` once the previous one was taken (back-pressure for recorded sources, which
    /// must not drop frames). Returns at once, dropping nothing, if the mailbox is closed.
    ///
    /// ```
    /// let m = std::sync::Arc::new(ign_edge::pipeline::mailbox::Mailbox::default());
    /// m.put_when_empty(1);
    /// let m2 = m.clone();
    /// let producer = std::thread::spawn(move || m2.put_when_empty(2));
    /// assert_eq!(m.take(), Some(1));
    /// producer.join().unwrap();
    /// assert_eq!(m.take(), Some(2));
    /// assert_eq!(m.dropped(), 0);
    /// ```
    pub fn put_when_empty(&self, item: T) {
        let mut s = self.slot.lock().unwrap();
        while s.item.is_some() && !s.closed {
            s.waiting += 1;
            s = self.ready.wait(s).unwrap();
            s.waiting -= 1;
        }
        if !s.closed {
            s.item = Some(item);
            s.wake(&self.ready);
        }
    }

    /// No more items will come; wakes the consumer and a waiting producer.
    pub fn close(&self) {
        let mut s = self.slot.lock().unwrap();
        s.closed = true;
        s.wake(&self.ready);
    }

    /// Items replaced before being taken.
    pub fn dropped(&self) -> u64 {
        self.slot.lock().unwrap().dropped
    }
}
