//! The `mqtt://` event output against a real mosquitto (Debian's `mosquitto`, which each test
//! starts on a loopback port of its own and kills at the end): the discovery messages and
//! their payloads, an event's messages in order, the last will when the process is killed,
//! the reconnect after the broker restarts, and a loop that never waits on a broker that is
//! down or hung. Skipped with a notice where mosquitto is missing, unless `CI` is set.
//!
//! The outputs are driven through the library (`events::sink::open` and the `Outlet`); the
//! last will needs a process to kill: this test binary again, running [`helper_process`].

use ign_edge::events::{
    sink, Delivery, Event, Outlet, OutletOptions, OutputOptions, Phase, Reading, Snapshot,
};
use rumqttc::{Client, Event as MqttEvent, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
/// The spec [`helper_process`] opens (set only in the process the last-will test starts).
const HELPER_ENV: &str = "IGN_EDGE_MQTT_TEST_HELPER";
const WAIT: Duration = Duration::from_secs(5);

/// Whether mosquitto is there; without it the test is skipped, except in CI.
fn have_mosquitto() -> bool {
    if Path::new(MOSQUITTO).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{MOSQUITTO} is missing: .ci/run installs the Debian package mosquitto"
    );
    eprintln!("note: skipped: {MOSQUITTO} is missing (apt install mosquitto)");
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A mosquitto of this test's own, on a loopback port, killed when dropped.
struct Broker {
    port: u16,
    dir: tempfile::TempDir,
    /// The listener's settings after its line (anonymous by default).
    settings: String,
    child: Option<Child>,
}

impl Broker {
    fn start() -> Broker {
        Broker::with("allow_anonymous true\n")
    }

    /// With `settings` for its listener (`user root` keeps a broker started by root able to
    /// read the test's files).
    fn with(settings: &str) -> Broker {
        let mut b = Broker {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            settings: settings.to_string(),
            child: None,
        };
        b.spawn();
        b
    }

    /// Start mosquitto on `self.port` and wait until it accepts connections.
    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user root\npersistence false\nlog_dest stderr\nlog_type error\n\
                 log_type warning\nlistener {} 127.0.0.1\n{}",
                self.port, self.settings
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).unwrap();
        let mut child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(self.dir.path().join("mosquitto.log"));
                panic!("mosquitto exited ({status}): {}", log.unwrap_or_default());
            }
            assert!(t.elapsed() < WAIT, "mosquitto did not listen in time");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spec(&self, prefix: &str) -> String {
        format!("mqtt://127.0.0.1:{}/{prefix}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A subscriber: every message it gets, as (topic, payload, retained).
struct Sub {
    _client: Client,
    rx: Receiver<(String, Vec<u8>, bool)>,
}

impl Sub {
    /// Subscribed to `filters` once this returns. A connection error before the SUBACK (a
    /// broker slow to take its first client on a loaded machine) is retried until [`WAIT`]:
    /// rumqttc reconnects when its event loop is polled again and resends what was pending.
    fn new(port: u16, filters: &[&str]) -> Sub {
        let mut o = MqttOptions::new(format!("sub-{}", free_port()), "127.0.0.1", port);
        o.set_max_packet_size(8 << 20, 64 << 10);
        let (client, mut connection) = Client::new(o, 16);
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).unwrap();
        }
        let (tx, rx) = mpsc::channel();
        let (acked_tx, acked) = mpsc::channel();
        let mut left = filters.len();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut errors = Vec::new();
            for e in connection.iter() {
                match e {
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        let m = (p.topic.clone(), p.payload.to_vec(), p.retain);
                        if tx.send(m).is_err() {
                            break;
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                        left -= 1;
                        if left == 0 {
                            let _ = acked_tx.send(Ok(()));
                        }
                    }
                    Ok(_) => {}
                    Err(e) if left > 0 && start.elapsed() < WAIT => {
                        errors.push(e.to_string());
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => {
                        errors.push(e.to_string());
                        if left > 0 {
                            let _ = acked_tx.send(Err(errors.join("; ")));
                        }
                        break;
                    }
                }
            }
        });
        match acked.recv_timeout(WAIT + WAIT) {
            Ok(Ok(())) => {}
            Ok(Err(errors)) => panic!("no SUBACK from mosquitto on port {port}: {errors}"),
            Err(e) => panic!("no SUBACK from mosquitto on port {port}: {e}"),
        }
        Sub {
            _client: client,
            rx,
        }
    }

    fn next(&self) -> (String, Vec<u8>, bool) {
        self.rx.recv_timeout(WAIT).expect("no message in time")
    }

    /// The next message on `topic` (others skipped).
    fn on(&self, topic: &str) -> Vec<u8> {
        let t = Instant::now();
        loop {
            assert!(t.elapsed() < WAIT, "nothing on {topic}");
            let (got, payload, _) = self.next();
            if got == topic {
                return payload;
            }
        }
    }

    /// The next messages whose topics start with `prefix`, `n` of them (others skipped).
    fn under(&self, prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        while out.len() < n {
            let (topic, payload, _) = self.next();
            if topic.starts_with(prefix) {
                out.push((topic, payload));
            }
        }
        out
    }
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

fn delivery(id: &str, phase: Phase, snapshot: Option<Snapshot>) -> Arc<Delivery> {
    Arc::new(Delivery {
        event: Event {
            id: id.into(),
            phase,
            start: "2026-12-07T11:34:48.123Z".into(),
            end: (phase == Phase::End).then(|| "2026-12-07T11:34:50.000Z".into()),
            peak_score: 0.9,
            threshold: 0.5,
            peak: Some([3, 4]),
            model: "scene".into(),
            snapshot: snapshot.as_ref().map(|s| s.file_name.clone()),
        },
        snapshot,
    })
}

fn fast() -> OutletOptions {
    OutletOptions {
        queue: 4,
        max_tries: 3,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
    }
}

fn outlet(spec: &str) -> Outlet {
    let opts = OutputOptions {
        timeout: Duration::from_secs(2),
        model: "scene".into(),
    };
    Outlet::start(sink::open(spec, &opts).unwrap(), &fast()).unwrap()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn discovery_and_an_events_messages_in_order() {
    if !have_mosquitto() {
        return;
    }
    let broker = Broker::start();
    let sub = Sub::new(broker.port, &["homeassistant/#", "t1/cam/#"]);
    let mut out = outlet(&format!("{}?device=Cam%201", broker.spec("t1/cam")));
    assert_eq!(
        out.name(),
        format!("mqtt://127.0.0.1:{}/t1/cam", broker.port)
    );

    // on connect: online, the three discovery messages, the state (no event under way)
    let first = sub.under("", 5);
    assert_eq!(first[0], ("t1/cam/status".into(), b"online".to_vec()));
    assert_eq!(first[4], ("t1/cam/state".into(), b"OFF".to_vec()));
    let config = |component: &str, object: &str| {
        let topic = format!("homeassistant/{component}/cam_1/{object}/config");
        let (_, p) = first.iter().find(|(t, _)| *t == topic).expect(&topic);
        json(p)
    };
    let (binary, score, image) = (
        config("binary_sensor", "anomaly"),
        config("sensor", "score"),
        config("image", "snapshot"),
    );
    for c in [&binary, &score, &image] {
        assert_eq!(c["availability_topic"], "t1/cam/status");
        assert_eq!(c["device"]["identifiers"][0], "ign-edge_cam_1");
        assert_eq!(c["device"]["model"], "ign-edge");
        assert_eq!(c["device"]["sw_version"], env!("CARGO_PKG_VERSION"));
        assert!(c["unique_id"]
            .as_str()
            .unwrap()
            .starts_with("ign-edge_cam_1_"));
        assert!(c["name"].is_string());
    }
    assert_eq!(binary["state_topic"], "t1/cam/state");
    assert_eq!(binary["device_class"], "problem");
    assert_eq!(binary["json_attributes_topic"], "t1/cam/attributes");
    assert_eq!(score["state_topic"], "t1/cam/score");
    assert_eq!(score["state_class"], "measurement");
    assert_eq!(image["image_topic"], "t1/cam/snapshot");
    assert_eq!(image["content_type"], "image/jpeg");
    wait_for("connected", || out.report().connected == Some(true));

    // a start with a PNG snapshot: the image's type announced again, then the event in order
    let png = Snapshot {
        file_name: "evt-1.png".into(),
        mime: "image/png",
        bytes: b"\x89PNG not really".to_vec(),
    };
    assert!(out.offer(delivery("evt-1", Phase::Start, Some(png.clone()))));
    let config = json(&sub.on("homeassistant/image/cam_1/snapshot/config"));
    assert_eq!(config["content_type"], "image/png");
    let start = sub.under("t1/cam/", 4);
    let topics: Vec<&str> = start.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [
            "t1/cam/state",
            "t1/cam/attributes",
            "t1/cam/snapshot",
            "t1/cam/event"
        ]
    );
    assert_eq!(text(&start[0].1), "ON");
    let attributes = json(&start[1].1);
    assert_eq!(attributes["id"], "evt-1");
    assert_eq!(attributes["peak"], serde_json::json!([3, 4]));
    assert_eq!(attributes["threshold"], 0.5);
    assert_eq!(start[2].1, png.bytes);
    assert_eq!(json(&start[3].1)["phase"], "start");

    // the end: OFF, the attributes with the end time, the event
    assert!(out.offer(delivery("evt-1", Phase::End, None)));
    let end = sub.under("t1/cam/", 3);
    assert_eq!(end[0], ("t1/cam/state".into(), b"OFF".to_vec()));
    assert_eq!(json(&end[1].1)["end"], "2026-12-07T11:34:50.000Z");
    assert_eq!(json(&end[2].1)["phase"], "end");

    // the score
    out.offer_reading(Reading {
        time: "2026-12-07T11:34:51.000Z".into(),
        score: 0.75,
        threshold: 0.5,
        active: false,
    });
    assert_eq!(text(&sub.on("t1/cam/score")), "0.7500");
    wait_for("both sent", || out.report().sent == 2);
    let r = out.report();
    assert_eq!((r.failed, r.dropped, r.last_error), (0, 0, None));

    // a clean stop says offline
    assert!(out.stop(Instant::now() + Duration::from_secs(2)));
    assert_eq!(text(&sub.on("t1/cam/status")), "offline");
}

/// Not a test by itself: the process the last-will test starts and kills (it holds a
/// connection until then). Returns at once without [`HELPER_ENV`].
#[test]
fn helper_process() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let _out = outlet(&spec);
    std::thread::sleep(Duration::from_secs(20));
}

#[test]
fn the_last_will_says_offline_when_the_process_is_killed() {
    if !have_mosquitto() {
        return;
    }
    let broker = Broker::start();
    let sub = Sub::new(broker.port, &["t2/status"]);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["helper_process", "--exact", "--nocapture"])
        .env(HELPER_ENV, broker.spec("t2"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(text(&sub.on("t2/status")), "online");
    child.kill().unwrap(); // SIGKILL: no goodbye, the broker sends the will
    child.wait().unwrap();
    let t = Instant::now();
    assert_eq!(text(&sub.on("t2/status")), "offline");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn reconnects_after_the_broker_restarts() {
    if !have_mosquitto() {
        return;
    }
    let mut broker = Broker::start();
    let mut out = outlet(&broker.spec("t3"));
    wait_for("connected", || out.report().connected == Some(true));

    broker.kill();
    wait_for("the link down", || out.report().connected == Some(false));
    // while it is down, a delivery fails fast: retried, then counted as failed
    let t = Instant::now();
    assert!(out.offer(delivery("evt-lost", Phase::Start, None)));
    wait_for("the failure counted", || out.report().failed == 1);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let r = out.report();
    assert_eq!((r.sent, r.retried), (0, 2));
    assert!(r.last_error.unwrap().contains("not connected"));

    // the same port again (no persistence: what is retained there is the output's doing)
    broker.restart();
    wait_for("connected again", || out.report().connected == Some(true));
    let sub = Sub::new(broker.port, &["homeassistant/#", "t3/#"]);
    let retained = sub.under("", 5);
    let topic = |t: &str| retained.iter().find(|(got, _)| got == t).map(|m| &m.1);
    assert_eq!(topic("t3/status").map(|p| text(p)), Some("online"));
    assert_eq!(
        topic("t3/state").map(|p| text(p)),
        Some("ON"),
        "re-asserted"
    );
    let host = retained
        .iter()
        .filter(|(t, _)| t.starts_with("homeassistant/"))
        .count();
    assert_eq!(host, 3, "discovery sent again: {retained:?}");

    assert!(out.offer(delivery("evt-2", Phase::Start, None)));
    let event = json(&sub.on("t3/event"));
    assert_eq!(event["id"], "evt-2");
    wait_for("sent", || out.report().sent == 1);
    assert!(out.stop(Instant::now() + Duration::from_secs(2)));
}

/// A loop of `frames` frames at 5 ms each that offers an event every 10th frame and the score
/// every frame; returns the frames it showed in its time and its longest offer.
fn paced_loop(out: Option<&Outlet>, frames: u32) -> (u32, Duration) {
    let frame = Duration::from_millis(5);
    let start = Instant::now();
    let (mut shown, mut longest) = (0, Duration::ZERO);
    for i in 0..frames {
        let due = start + frame * i;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        if let Some(out) = out {
            let t = Instant::now();
            if i % 10 == 0 {
                out.offer(delivery(&format!("evt-{i}"), Phase::Start, None));
            }
            out.offer_reading(Reading {
                time: String::new(),
                score: 0.1,
                threshold: 0.5,
                active: false,
            });
            longest = longest.max(t.elapsed());
        }
        if start.elapsed() < frame * frames {
            shown += 1;
        }
    }
    (shown, longest)
}

/// Longer than an offer takes on a loaded machine, far shorter than a connect or a backoff.
const NEVER_WAITS: Duration = Duration::from_millis(50);

/// The soak's verdict: a frame count within 10% of the loop's alone.
fn within_10_percent(frames: u32, alone: u32) -> bool {
    frames * 10 >= alone * 9
}

#[test]
fn the_loop_never_waits_on_a_broker_that_is_down_or_hung() {
    if !have_mosquitto() {
        return;
    }
    let (alone, _) = paced_loop(None, 200);
    // down: killed after the output connected
    let mut broker = Broker::start();
    let mut down = outlet(&broker.spec("t4"));
    wait_for("connected", || down.report().connected == Some(true));
    broker.kill();
    wait_for("the link down", || down.report().connected == Some(false));
    let (with_down, longest) = paced_loop(Some(&down), 200);
    assert!(
        within_10_percent(with_down, alone),
        "{with_down} frames, {alone} alone"
    );
    assert!(longest < NEVER_WAITS, "an offer took {longest:?}");
    let r = down.report();
    assert_eq!(r.sent, 0);
    assert_eq!(r.queued + r.dropped, 20, "every event accounted for: {r:?}");

    // hung: a listener that never answers CONNECT; the output still stops within its grace
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hung.local_addr().unwrap().port();
    let mut stuck = outlet(&format!("mqtt://127.0.0.1:{port}/t4"));
    let (with_hung, longest) = paced_loop(Some(&stuck), 200);
    assert!(
        within_10_percent(with_hung, alone),
        "{with_hung} frames, {alone} alone"
    );
    assert!(longest < NEVER_WAITS, "an offer took {longest:?}");
    assert_eq!(stuck.report().connected, Some(false));
    for o in [&mut down, &mut stuck] {
        let t = Instant::now();
        o.stop(Instant::now() + Duration::from_secs(2));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}

/// Waits out the first connection attempt, then offers one event: the error it failed with.
fn first_error(out: &Outlet) -> String {
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(out.report().connected, Some(false));
    assert!(out.offer(delivery("evt-refused", Phase::Start, None)));
    wait_for("the failure", || out.report().failed == 1);
    out.report().last_error.unwrap()
}

#[test]
fn a_user_and_a_password_file_log_in_and_a_wrong_password_is_refused() {
    if !have_mosquitto() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let made = Command::new("/usr/bin/mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwd)
        .args(["cam", "s3cret"])
        .status()
        .unwrap();
    assert!(made.success());
    let broker = Broker::with(&format!(
        "allow_anonymous false\npassword_file {}\n",
        passwd.display()
    ));
    let (good, bad) = (dir.path().join("good"), dir.path().join("bad"));
    std::fs::write(&good, "s3cret\n").unwrap();
    std::fs::write(&bad, "guess\n").unwrap();
    let spec = |f: &Path| {
        format!(
            "{}?user=cam&password-file={}",
            broker.spec("t5"),
            f.display()
        )
    };

    let mut out = outlet(&spec(&good));
    wait_for("logged in", || out.report().connected == Some(true));
    assert!(out.offer(delivery("evt-1", Phase::Start, None)));
    wait_for("acknowledged", || out.report().sent == 1);
    out.stop(Instant::now() + Duration::from_secs(2));

    let mut refused = outlet(&spec(&bad));
    let e = first_error(&refused);
    assert!(e.contains("refused"), "{e}");
    assert!(!e.contains("guess"), "{e}");
    refused.stop(Instant::now() + Duration::from_secs(2));
}

#[test]
fn mqtts_checks_the_broker_against_the_ca_file() {
    if !have_mosquitto() {
        return;
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mqtt");
    let f = |name: &str| fixtures.join(name).display().to_string();
    let broker = Broker::with(&format!(
        "allow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\n",
        f("ca.pem"),
        f("server.pem"),
        f("server.key")
    ));
    let tls = |ca: &str| format!("mqtts://127.0.0.1:{}/t6?ca={}", broker.port, f(ca));

    let mut out = outlet(&tls("ca.pem"));
    assert_eq!(out.name(), format!("mqtts://127.0.0.1:{}/t6", broker.port));
    wait_for("connected over TLS", || {
        out.report().connected == Some(true)
    });
    assert!(out.offer(delivery("evt-1", Phase::Start, None)));
    wait_for("acknowledged", || out.report().sent == 1);
    out.stop(Instant::now() + Duration::from_secs(2));

    // a broker whose certificate does not chain to the CA given is not talked to
    let mut stranger = outlet(&tls("server.pem"));
    let e = first_error(&stranger);
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    stranger.stop(Instant::now() + Duration::from_secs(2));
}
