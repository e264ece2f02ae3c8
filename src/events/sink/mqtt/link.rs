//! The connection to the broker: rumqttc's event loop on a thread of its own, which
//! reconnects with backoff by itself and, on every connect, publishes what must be there
//! again (`online`, discovery, the state); publishing that never waits for the network
//! (a down link refuses at once); waiting for the broker's acknowledgements, bounded.

use anyhow::{bail, Result};
use rumqttc::{Client, ConnectionError, Event, MqttOptions, Outgoing, Packet, QoS};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::discovery::Message;

/// The first wait before reconnecting; doubled after each failure, up to [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Requests waiting for the event loop at most (publishing more fails at once).
const REQUESTS: usize = 64;

/// What the sink's thread and the connection's share, under one lock.
#[derive(Default)]
struct State {
    connected: bool,
    /// Counts connections; a wait for acknowledgements fails when it changes.
    epoch: u64,
    /// QoS 1 publishes handed to the event loop, and those the broker acknowledged (reset to
    /// `requested` on a new connection: what the last one lost is forgotten).
    requested: u64,
    acked: u64,
    /// Why the last connection attempt failed or the connection dropped.
    error: Option<String>,
    /// `close` was called: do not reconnect.
    stopping: bool,
    /// Published on every connect, in order.
    on_connect: Vec<Message>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection to one broker, kept up by a thread of its own.
pub struct Link {
    client: Client,
    shared: Arc<Shared>,
    /// Dropped to wake the thread from its backoff.
    wake: Option<Sender<()>>,
    /// Says when the thread has ended (it may be left behind in a connect).
    done: Receiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Link {
    /// Start connecting with `options`, each attempt bounded by `timeout` (whole seconds, one
    /// at least), publishing `on_connect` on every connect; `name` names the thread.
    pub fn start(
        options: MqttOptions,
        timeout: Duration,
        on_connect: Vec<Message>,
        name: &str,
    ) -> Result<Link> {
        let will = options.last_will().map(|w| Message {
            topic: w.topic,
            payload: w.message.to_vec(),
            retain: w.retain,
        });
        let (client, mut connection) = Client::new(options, REQUESTS);
        let mut network = connection.eventloop.network_options();
        network.set_connection_timeout(timeout.as_secs().max(1));
        connection.eventloop.set_network_options(network);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                on_connect,
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let (wake, sleep) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let runner = Runner {
            client: client.clone(),
            shared: shared.clone(),
            sleep,
            name: name.to_string(),
            will,
        };
        let thread = std::thread::Builder::new()
            .name(format!("mqtt {name}"))
            .spawn(move || {
                runner.run(connection);
                let _ = done_tx.send(());
            })?;
        Ok(Link {
            client,
            shared,
            wake: Some(wake),
            done,
            thread: Some(thread),
        })
    }

    pub fn connected(&self) -> bool {
        self.shared.lock().connected
    }

    /// What is published on every (re)connect from now on.
    pub fn set_on_connect(&self, messages: Vec<Message>) {
        self.shared.lock().on_connect = messages;
    }

    /// Hand `messages` to the event loop without waiting, at QoS 1 (`qos0`: at most once);
    /// an error when the link is down or its queue full. Returns what
    /// [`Link::wait_acked`] waits for.
    pub fn publish(&self, messages: &[Message], qos0: bool) -> Result<(u64, u64)> {
        let mut s = self.shared.lock();
        if !s.connected {
            match &s.error {
                Some(e) => bail!("not connected to the broker: {e}"),
                None => bail!("not connected to the broker yet"),
            }
        }
        for m in messages {
            send(&self.client, &mut s, m, qos0)?;
        }
        Ok((s.epoch, s.requested))
    }

    /// Wait until the broker has acknowledged every QoS 1 publish up to `target` of
    /// connection `epoch`, until `deadline` at most.
    pub fn wait_acked(&self, (epoch, target): (u64, u64), deadline: Instant) -> Result<()> {
        let mut s = self.shared.lock();
        while s.epoch == epoch && s.connected && s.acked < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("the broker did not acknowledge within the timeout");
            }
            s = self
                .shared
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if s.epoch != epoch || !s.connected {
            bail!("the connection to the broker dropped before it acknowledged");
        }
        Ok(())
    }

    /// Publish `last` (the `offline` status) if connected, disconnect, and stop the thread,
    /// within `within`; a thread still in a connect attempt then is left behind.
    pub fn close(&mut self, last: Option<Message>, within: Duration) {
        let deadline = Instant::now() + within;
        if let Some(m) = last {
            // half the time for the goodbye, the rest for the disconnect
            let half = Instant::now() + within / 2;
            if let Ok(wait) = self.publish(&[m], false) {
                let _ = self.wait_acked(wait, half);
            }
        }
        self.shared.lock().stopping = true;
        let _ = self.client.try_disconnect();
        self.wake = None;
        let Some(thread) = self.thread.take() else {
            return;
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.done.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
            }
            Err(RecvTimeoutError::Timeout) => {
                log::debug!("mqtt: the connection thread is still connecting; left behind");
            }
        }
        self.shared.lock().connected = false;
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.close(None, Duration::ZERO);
        }
    }
}

/// Hand one message to the event loop (counted when it is QoS 1).
fn send(client: &Client, s: &mut State, m: &Message, qos0: bool) -> Result<()> {
    let qos = if qos0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    if let Err(e) = client.try_publish(m.topic.as_str(), qos, m.retain, m.payload.clone()) {
        bail!("cannot queue a publish to {}: {e}", m.topic);
    }
    if !qos0 {
        s.requested += 1;
    }
    Ok(())
}

/// The connection's thread.
struct Runner {
    client: Client,
    shared: Arc<Shared>,
    /// Its backoff sleeps end early when the sender is dropped (`close`).
    sleep: Receiver<()>,
    name: String,
    /// The last will, as a message: what a connect during `close` publishes instead.
    will: Option<Message>,
}

impl Runner {
    fn run(self, mut connection: rumqttc::Connection) {
        let mut backoff = BACKOFF;
        // errors are logged once per outage
        let mut failing = false;
        loop {
            {
                let s = self.shared.lock();
                if s.stopping && !s.connected {
                    break;
                }
            }
            let event = match connection.recv() {
                Ok(e) => e,
                Err(_) => break, // every client is gone
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = BACKOFF;
                    if std::mem::take(&mut failing) {
                        log::info!("events: {} connected again", self.name);
                    } else {
                        log::info!("events: {} connected", self.name);
                    }
                    self.connected();
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    self.shared.lock().acked += 1;
                    self.shared.changed.notify_all();
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    let msg = describe(&e);
                    if !std::mem::replace(&mut failing, true) {
                        log::warn!("events: {}: {msg} (reconnecting with backoff)", self.name);
                    } else {
                        log::debug!("events: {}: {msg}", self.name);
                    }
                    {
                        let mut s = self.shared.lock();
                        s.connected = false;
                        s.error = Some(msg);
                        if s.stopping {
                            break;
                        }
                    }
                    self.shared.changed.notify_all();
                    match self.sleep.recv_timeout(backoff) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        let mut s = self.shared.lock();
        s.connected = false;
        drop(s);
        self.shared.changed.notify_all();
    }

    /// A new connection: a new epoch, and what must be published on every connect.
    fn connected(&self) {
        let mut s = self.shared.lock();
        s.connected = true;
        s.error = None;
        s.epoch += 1;
        s.acked = s.requested;
        // connected while closing: say goodbye (the disconnect request follows)
        let messages = match (&s.stopping, &self.will) {
            (false, _) => s.on_connect.clone(),
            (true, Some(will)) => vec![will.clone()],
            (true, None) => Vec::new(),
        };
        for m in &messages {
            if let Err(e) = send(&self.client, &mut s, m, false) {
                log::warn!("events: {}: {e:#}", self.name);
            }
        }
        drop(s);
        self.shared.changed.notify_all();
    }
}

/// A connection error in a few words (rumqttc's I/O errors say little by themselves).
fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection ({code:?}): check user= and the password")
        }
        ConnectionError::Io(io) => format!("{io}"),
        other => other.to_string(),
    }
}
