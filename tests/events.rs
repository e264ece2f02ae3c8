//! `ign-edge run --anomaly --events ...` end to end: the test source pastes a foreign square
//! on a window of frames (`test:patch=A..B`), which the bundled ign-mnist model scores far
//! above the clean scene (clean frames stay under 0.47, patched ones over 0.88: threshold
//! 0.65). One event must come out on a JSON-lines file and on a webhook served here, which
//! first stalls (no answer: the output's 3 s timeout), then answers 500, then 200, and stalls
//! again for the event's end. Meanwhile the loop keeps its frame rate, `/stats.json` and
//! `/metrics` count the retries, and SIGTERM ends the run within 2 s although the webhook
//! still hangs.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the test's webhook does with its n-th request.
#[derive(Clone, Copy)]
enum Answer {
    /// Read it, never answer (the connection is held for a minute).
    Stall,
    Status(u16),
}

/// One request the webhook got: its head and body.
#[derive(Clone)]
struct Got {
    head: String,
    body: Vec<u8>,
}

/// A webhook on a loopback port that answers its requests as `script` says.
struct Hook {
    addr: std::net::SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Hook {
    fn start(script: fn(usize) -> Answer) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let list = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let list = list.clone();
                std::thread::spawn(move || serve(conn, &list, script));
            }
        });
        Hook { addr, got }
    }

    fn requests(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

/// Read one request from `s`, note it, answer as `script` says for its place.
fn serve(mut s: TcpStream, list: &Mutex<Vec<Got>>, script: fn(usize) -> Answer) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while raw.len() < head_end + length {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let body = raw[head_end..head_end + length].to_vec();
    let n = {
        let mut l = list.lock().unwrap();
        l.push(Got { head, body });
        l.len() - 1
    };
    match script(n) {
        Answer::Stall => std::thread::sleep(Duration::from_secs(60)),
        Answer::Status(code) => {
            let _ = write!(
                s,
                "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    }
}

/// GET `path` from the run's web page: the body.
fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    body.to_string()
}

fn stats(addr: &str) -> serde_json::Value {
    serde_json::from_str(&get(addr, "/stats.json")).unwrap()
}

/// The JSON lines of `path` so far.
fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Wait (at most `secs`) until `ok`.
fn wait_until(secs: u64, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The counters of the output whose name starts with `prefix`.
fn output<'a>(s: &'a serde_json::Value, prefix: &str) -> &'a serde_json::Value {
    s["events"]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["output"].as_str().unwrap().starts_with(prefix))
        .unwrap()
}

#[test]
fn an_event_reaches_a_stalling_failing_webhook_without_slowing_the_loop() {
    let hook = Hook::start(|n| match n {
        0 => Answer::Stall,
        1 => Answer::Status(500),
        2 => Answer::Status(200),
        _ => Answer::Stall,
    });
    let dir = tempfile::tempdir().unwrap();
    let (jsonl, snaps) = (dir.path().join("events.jsonl"), dir.path().join("snaps"));
    let mut cmd = common::ign_edge();
    cmd.args(["run", "--source", "test:patch=45..150", "--fps", "30"])
        .args([
            "--sink",
            "http:127.0.0.1:0",
            "--anomaly",
            "--threshold",
            "0.65",
        ])
        .arg(format!("--events=jsonl:{}", jsonl.display()))
        .arg(format!(
            "--events=webhook:http://{}/hook?token=s3cret",
            hook.addr
        ))
        .arg(format!("--events-dir={}", snaps.display()))
        .args(["--events-timeout", "3", "--event-clear-seconds", "1"]);
    let (mut child, addr) = common::spawn_http(cmd);

    // the start: on the file at once, while the webhook stalls on it
    wait_until(20, "the start on the file", || !lines(&jsonl).is_empty());
    let start = lines(&jsonl)[0].clone();
    assert_eq!(start["phase"], "start", "{start}");
    assert_eq!(start["threshold"], 0.65);
    assert!(start["peak_score"].as_f64().unwrap() > 0.65, "{start}");
    // the heatmap peaks on the square (2..8, 20..26), widened by the smoothing
    let (px, py) = (
        start["peak"][0].as_u64().unwrap(),
        start["peak"][1].as_u64().unwrap(),
    );
    assert!(px <= 10 && (18..28).contains(&py), "{start}");
    let snapshot = start["snapshot"]
        .as_str()
        .expect("a snapshot name")
        .to_string();
    let jpeg = std::fs::read(snaps.join(&snapshot)).unwrap();
    assert_eq!(&jpeg[..2], [0xff, 0xd8], "a JPEG");

    // while the webhook stalls, the loop keeps its pace
    wait_until(10, "the webhook's first request", || {
        hook.requests().len() == 1
    });
    let f0 = stats(&addr)["frames"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let s = stats(&addr);
    let shown = s["frames"].as_u64().unwrap() - f0;
    assert!(
        shown >= 20,
        "{shown} frames in a second of a 30 fps source while the webhook stalls"
    );
    assert_eq!(hook.requests().len(), 1, "still stalled");
    assert_eq!(s["events"]["started"], 1);

    // timeout, 500, then 200: the same event each time, with its snapshot
    wait_until(20, "the retries", || hook.requests().len() >= 3);
    let got = hook.requests();
    for g in &got[..3] {
        assert!(
            g.head.starts_with("POST /hook?token=s3cret HTTP/1.1"),
            "{}",
            g.head
        );
        assert!(g
            .head
            .to_ascii_lowercase()
            .contains("content-type: multipart/form-data; boundary="));
        let body = String::from_utf8_lossy(&g.body);
        assert!(body.contains(&format!("\"id\":\"{}\"", start["id"].as_str().unwrap())));
        assert!(body.contains(&format!("name=\"snapshot\"; filename=\"{snapshot}\"")));
        let at = g.body.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        assert!(g.body.len() > at + jpeg.len(), "the picture is in the body");
    }

    // the end: on the file, and the webhook stalls on it
    wait_until(20, "the end on the file", || lines(&jsonl).len() == 2);
    let end = lines(&jsonl)[1].clone();
    assert_eq!((&end["phase"], &end["id"]), (&"end".into(), &start["id"]));
    assert!(end["end"].as_str().unwrap() > start["start"].as_str().unwrap());
    wait_until(10, "the end on the webhook", || hook.requests().len() == 4);
    let end_req = &hook.requests()[3];
    assert!(end_req
        .head
        .to_ascii_lowercase()
        .contains("content-type: application/json"));

    let s = stats(&addr);
    let web = output(&s, "webhook:");
    assert_eq!(
        web["output"],
        format!("webhook:http://{}/hook", hook.addr),
        "no query in the name"
    );
    assert_eq!(
        (&web["sent"], &web["retried"], &web["queued"]),
        (&1.into(), &2.into(), &2.into())
    );
    assert_eq!(output(&s, "jsonl:")["sent"], 2);
    assert_eq!(
        (&s["events"]["ended"], &s["events"]["snapshots"]),
        (&1.into(), &1.into())
    );
    let metrics = get(&addr, "/metrics");
    let series = format!(
        "ign_edge_events_retried_total{{output=\"webhook:http://{}/hook\"}} 2",
        hook.addr
    );
    assert!(metrics.contains(&series), "{metrics}");
    assert!(!metrics.contains("s3cret"));

    // SIGTERM while the webhook hangs on the end: out within 2 s
    let t = Instant::now();
    // SAFETY: sending a signal to our own child process by its pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("still running 10 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = t.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took < Duration::from_secs(2),
        "stopped in {took:?} with the webhook hanging"
    );
}
