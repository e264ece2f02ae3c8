//! `mqtt://HOST[:PORT]/PREFIX[?OPTIONS]` (and `mqtts://` over TLS): events to an MQTT broker,
//! with Home Assistant's discovery (issue #30), through rumqttc.
//!
//! Topics under PREFIX (e.g. `ign-edge/pi5`):
//!
//! | topic | payload | retained |
//! |---|---|---|
//! | `status` | `online`, `offline` (also the last will, when the process dies) | yes |
//! | `state` | `ON` while an event is under way, `OFF` after | yes |
//! | `score` | the anomaly score, at most once a second | no |
//! | `attributes` | the last event's JSON ([`Event`]) | yes |
//! | `snapshot` | the start's snapshot, the image's bytes | yes |
//! | `event` | every phase of every event as JSON | no |
//!
//! Discovery (`discovery=PREFIX`, default `homeassistant`; `off` for none), retained and sent
//! again on every connect: `<discovery>/binary_sensor/<device>/anomaly/config` (device class
//! `problem`, the state topic, the attributes), `.../sensor/<device>/score/config` (state
//! class `measurement`) and `.../image/<device>/snapshot/config` (the snapshot topic and its
//! `content_type`). `<device>` is `device=ID` or the hostname, sanitised to `[a-z0-9_-]`.
//!
//! Options in the query: `user=NAME`, `password-file=FILE` (else the environment variable
//! [`spec::PASSWORD_ENV`]; a `password=` in the spec is refused, it would show in `ps`),
//! `ca=FILE` (PEM, for `mqtts://`; else the system's roots), `device=ID`, `discovery=PREFIX|off`.
//!
//! It never makes the loop wait: a delivery publishes at QoS 1 and waits for the broker's
//! acknowledgements at most [`OutputOptions::timeout`]; with the broker down it fails at once
//! (the runner counts, retries and drops), and the link reconnects with backoff by itself.

mod discovery;
mod link;
pub mod spec;

use anyhow::{Context, Result};
use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use std::time::{Duration, Instant};

use super::{EventSink, OutputOptions, Reading};
use crate::events::event::{Event, Phase, Snapshot};
use discovery::{Discovery, Message, Topics, OFFLINE, ONLINE};
use link::Link;
pub use spec::{parse, MqttSpec, DEFAULT_PORT, PASSWORD_ENV};

/// Largest snapshot published (a bigger one is left out, with a warning).
pub const MAX_SNAPSHOT: usize = 4 << 20;
/// The score is published at most this often (and whenever an event starts or ends).
pub const SCORE_EVERY: Duration = Duration::from_secs(1);
/// How often the client pings an idle broker (a dead link is noticed within 1.5 times it).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Events to an MQTT broker.
pub struct Mqtt {
    name: String,
    topics: Topics,
    discovery: Option<Discovery>,
    link: Link,
    timeout: Duration,
    /// The snapshots' MIME type, as the image entity's discovery announces it.
    content_type: &'static str,
    /// Whether an event is under way, as last published (re-published on every connect).
    state: Option<bool>,
    /// When the score was last published, and `active` then.
    last_score: Option<(Instant, bool)>,
}

impl Mqtt {
    /// Connect to the broker `spec` names (in the background: this does not wait).
    pub fn open(spec: &MqttSpec, opts: &OutputOptions) -> Result<Mqtt> {
        let password = spec::resolve_password(
            spec.password_file.as_deref(),
            std::env::var_os(PASSWORD_ENV),
        )?;
        let device = spec::device_id(spec.device.as_deref());
        let topics = Topics::new(&spec.prefix);
        // an IPv6 address without its brackets, as the socket wants it
        let host = spec.host.trim_start_matches('[').trim_end_matches(']');
        let mut options = MqttOptions::new(format!("ign-edge-{device}"), host, spec.port);
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(true)
            .set_max_packet_size(64 << 10, MAX_SNAPSHOT + (64 << 10))
            .set_last_will(LastWill::new(
                &topics.status,
                OFFLINE,
                QoS::AtLeastOnce,
                true,
            ));
        match (spec.user.as_deref(), password) {
            (Some(user), password) => {
                options.set_credentials(user, password.unwrap_or_default());
            }
            (None, Some(_)) => anyhow::bail!(
                "{}: a password (password-file= or {PASSWORD_ENV}) without user=NAME: add user= \
                 to the spec",
                spec.name()
            ),
            (None, None) => {}
        }
        if spec.tls {
            let config = spec::tls_config(spec.ca.as_deref())?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        }
        let name = spec.name();
        let discovery = spec
            .discovery
            .clone()
            .map(|prefix| Discovery { prefix, device });
        let content_type = "image/jpeg";
        // a new run has no event under way (a killed one may have left ON retained)
        let state = Some(false);
        let first = on_connect(&topics, discovery.as_ref(), content_type, state);
        let link = Link::start(options, opts.timeout, first, &name)
            .context("cannot start the mqtt thread")?;
        Ok(Mqtt {
            name,
            topics,
            discovery,
            link,
            timeout: opts.timeout,
            content_type,
            state,
            last_score: None,
        })
    }

    fn update_on_connect(&mut self) {
        let m = on_connect(
            &self.topics,
            self.discovery.as_ref(),
            self.content_type,
            self.state,
        );
        self.link.set_on_connect(m);
    }

    /// The messages of one phase, in order: the image's discovery if the snapshots' type
    /// changed, the state, the attributes, the snapshot, the event.
    fn messages(&mut self, ev: &Event, snapshot: Option<&Snapshot>) -> Result<Vec<Message>> {
        let json = serde_json::to_vec(ev)?;
        let mut m = Vec::with_capacity(5);
        if let Some(s) = snapshot.filter(|s| s.mime != self.content_type) {
            self.content_type = s.mime;
            if let Some(d) = &self.discovery {
                m.push(d.message("snapshot", &self.topics, s.mime));
            }
        }
        m.push(state_message(&self.topics, ev.phase == Phase::Start));
        m.push(Message::retained(&self.topics.attributes, json.clone()));
        match snapshot {
            Some(s) if s.bytes.len() > MAX_SNAPSHOT => log::warn!(
                "events: {}: snapshot {} is {} bytes, over {MAX_SNAPSHOT}; not published",
                self.name,
                s.file_name,
                s.bytes.len()
            ),
            Some(s) => m.push(Message::retained(&self.topics.snapshot, s.bytes.clone())),
            None => {}
        }
        m.push(Message::once(&self.topics.event, json));
        Ok(m)
    }
}

/// What every connect publishes: `online`, discovery, the state (`state`: whether an event
/// is under way, when known).
fn on_connect(
    topics: &Topics,
    discovery: Option<&Discovery>,
    content_type: &str,
    state: Option<bool>,
) -> Vec<Message> {
    let mut m = vec![Message::retained(&topics.status, ONLINE)];
    if let Some(d) = discovery {
        m.extend(d.messages(topics, content_type));
    }
    if let Some(on) = state {
        m.push(state_message(topics, on));
    }
    m
}

fn state_message(topics: &Topics, on: bool) -> Message {
    Message::retained(&topics.state, if on { "ON" } else { "OFF" })
}

impl EventSink for Mqtt {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn deliver(&mut self, ev: &Event, snapshot: Option<&Snapshot>) -> Result<()> {
        let messages = self.messages(ev, snapshot)?;
        // what a reconnect re-asserts follows the events, delivered or not
        self.state = Some(ev.phase == Phase::Start);
        self.update_on_connect();
        let wait = self.link.publish(&messages, false)?;
        self.link
            .wait_acked(wait, Instant::now() + self.timeout)
            .with_context(|| format!("{} of {}", phase_name(ev.phase), ev.id))
    }

    fn connected(&self) -> Option<bool> {
        Some(self.link.connected())
    }

    fn reading(&mut self, now: &Reading) -> Result<()> {
        let due = match self.last_score {
            None => true,
            Some((at, active)) => at.elapsed() >= SCORE_EVERY || active != now.active,
        };
        if !due {
            return Ok(());
        }
        self.last_score = Some((Instant::now(), now.active));
        let payload = format!("{:.4}", now.score);
        self.link
            .publish(&[Message::once(&self.topics.score, payload)], true)?;
        Ok(())
    }

    fn close(&mut self, within: Duration) {
        let goodbye = self
            .link
            .connected()
            .then(|| Message::retained(&self.topics.status, OFFLINE));
        self.link.close(goodbye, within);
    }
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Start => "the start",
        Phase::End => "the end",
    }
}

/// `mqtt://<host>[:<port>]/<prefix>[?options]`.
pub fn open_spec(arg: &str, opts: &OutputOptions) -> Result<Box<dyn EventSink>> {
    Ok(Box::new(Mqtt::open(&parse(arg, false)?, opts)?))
}

/// `mqtts://<host>[:<port>]/<prefix>[?options]`: the same over TLS.
pub fn open_tls_spec(arg: &str, opts: &OutputOptions) -> Result<Box<dyn EventSink>> {
    Ok(Box::new(Mqtt::open(&parse(arg, true)?, opts)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_broker_fails_deliveries_at_once() {
        // a port nothing listens on: connection refused, the link stays down
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spec = parse(&format!("//127.0.0.1:{port}/t?device=x"), false).unwrap();
        let mut m = Mqtt::open(&spec, &OutputOptions::default()).unwrap();
        assert_eq!(m.name(), format!("mqtt://127.0.0.1:{port}/t"));
        let ev = Event {
            id: "evt-1-1".into(),
            phase: Phase::Start,
            start: "1970-01-01T00:00:00.001Z".into(),
            end: None,
            peak_score: 0.5,
            threshold: 0.25,
            peak: None,
            model: "m".into(),
            snapshot: None,
        };
        let t = Instant::now();
        let e = m.deliver(&ev, None).unwrap_err().to_string();
        assert!(e.contains("not connected"), "{e}");
        // at once, not after the output's 5 s timeout (a margin for emulated CI runs)
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(m.connected(), Some(false));
        let t = Instant::now();
        m.close(Duration::from_millis(500));
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn a_password_needs_a_user() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "pw\n").unwrap();
        let spec = parse(
            &format!("//127.0.0.1/t?password-file={}", f.display()),
            false,
        )
        .unwrap();
        let e = Mqtt::open(&spec, &OutputOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("user="), "{e}");
    }
}
