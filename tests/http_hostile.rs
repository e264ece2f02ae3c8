//! Hostile clients against `ign-edge run --sink http:` on loopback: a `Content-Length` bomb,
//! a trickled body, a 1 MB header line, 500 idle connections, stream clients that never read,
//! a PNG that declares 30000×30000 pixels, a cross-origin POST, tokens with reserved characters.
//! After each case the process is alive, another client is answered within 1 s, the loop's
//! frame count still rises, and the peak RSS stays under [`RSS_BOUND_MIB`].
//!
//! Every loop here is bounded in count and time; one server runs at a time.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Peak resident memory allowed to the server process (VmHWM), MiB: about twice what these
/// cases were measured to take (69–72 MiB on x86_64, debug build with optimized dependencies).
const RSS_BOUND_MIB: u64 = 150;
/// How soon another client must be answered after each case.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// A never-reading stream client must free its slot within this time.
const STREAM_SLOT_FREED_WITHIN: Duration = Duration::from_secs(10);
const TOKEN_ENV: &str = "IGN_EDGE_HTTP_TOKEN";

/// One server at a time: the cases measure latency and memory.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Server {
    child: Child,
    addr: SocketAddr,
    /// `token=...` (percent-encoded) for every request, or empty.
    query: String,
}

impl Server {
    fn start(extra: &[&str], env: &[(&str, &str)], query: &str) -> Server {
        let mut cmd = common::http_run(extra);
        cmd.envs(env.iter().copied());
        let (child, addr) = common::spawn_http(cmd);
        Server {
            child,
            addr: addr.parse().unwrap(),
            query: query.to_string(),
        }
    }

    /// `path` with the token added.
    fn path(&self, path: &str) -> String {
        match (self.query.is_empty(), path.contains('?')) {
            (true, _) => path.to_string(),
            (false, true) => format!("{path}&{}", self.query),
            (false, false) => format!("{path}?{}", self.query),
        }
    }

    fn get(&self, path: &str) -> (u16, Vec<u8>) {
        request(self.addr, "GET", &self.path(path), &[], b"")
    }

    fn stats(&self) -> serde_json::Value {
        let (code, body) = self.get("/stats.json");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// Peak resident memory so far, MiB.
    fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kb / 1024
    }

    fn alive(&mut self, case: &str) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "{case}: the server process ended"
        );
    }

    /// The checks after every case.
    fn healthy(&mut self, case: &str) {
        self.alive(case);
        let t = Instant::now();
        let (code, body) = self.get("/metrics");
        let took = t.elapsed();
        assert_eq!(code, 200, "{case}: /metrics answered {code}");
        assert!(String::from_utf8_lossy(&body).contains("ign_edge_frames"));
        assert!(
            took < ANSWER_WITHIN,
            "{case}: another client waited {took:?}"
        );
        let before = self.stats()["frames"].as_u64().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.stats()["frames"].as_u64().unwrap() <= before {
            assert!(
                Instant::now() < deadline,
                "{case}: the loop stopped showing frames"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let rss = self.peak_rss_mib();
        eprintln!("{case}: alive, answered in {took:?}, frames rising, peak RSS {rss} MiB");
        assert!(
            rss < RSS_BOUND_MIB,
            "{case}: peak RSS {rss} MiB over {RSS_BOUND_MIB}"
        );
        self.alive(case);
    }

    fn stop(mut self) -> i32 {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the server did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// The status code of a raw response (0 when the server closed without one).
fn status_of(raw: &[u8]) -> u16 {
    String::from_utf8_lossy(raw)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Read until the server closes (or the read timeout); whatever came.
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    raw
}

/// One HTTP/1.1 exchange with extra header lines: (status, body).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = connect(addr);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        head += h;
        head += "\r\n";
    }
    head += "\r\n";
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body); // the server may refuse before reading it
    let raw = read_all(&mut s);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(raw.len());
    (status_of(&raw), raw[split..].to_vec())
}

/// Send a raw request head (no body) and read the answer's status.
fn raw_status(addr: SocketAddr, head: &str) -> u16 {
    let mut s = connect(addr);
    s.write_all(head.as_bytes()).unwrap();
    status_of(&read_all(&mut s))
}

/// Mode 0600, as a token file should be (else `run` warns).
fn private(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn content_length_bomb(srv: &mut Server, case: &str) {
    for head in [
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nContent-Length: 900000000000\r\n\r\n",
            srv.path("/"),
            srv.addr
        ),
        format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nContent-Length: 900000000000\r\n\r\n",
            srv.addr
        ),
        format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: 900000000000\r\n\r\n",
            srv.path("/api/project"),
            srv.addr
        ),
    ] {
        assert_eq!(raw_status(srv.addr, &head), 413, "{case}: {head}");
    }
    srv.healthy(case);
}

#[test]
fn hostile_clients_never_take_the_server_down() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut srv = Server::start(&[], &[], "");
    let addr = srv.addr;
    srv.healthy("start");

    content_length_bomb(&mut srv, "Content-Length bomb");

    // A POST body trickled at 1 byte / 200 ms: every other route keeps answering.
    let trickle = std::thread::spawn(move || {
        let mut s = connect(addr);
        let head =
            format!("POST /api/project HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1000\r\n\r\n");
        s.write_all(head.as_bytes()).unwrap();
        for _ in 0..20 {
            if s.write_all(b"x").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let t = Instant::now();
        let (code, _) = srv.get("/metrics");
        assert_eq!(code, 200);
        assert!(
            t.elapsed() < ANSWER_WITHIN,
            "/metrics waited {:?} behind a trickled body",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(400));
    }
    trickle.join().unwrap();
    srv.healthy("trickled body");

    // A chunked body (no Content-Length) over 1 MB: refused while reading.
    {
        let mut s = connect(addr);
        let head = format!(
            "POST /api/project HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..20 {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if s.write_all(&framed).is_err() {
                break; // refused before the end
            }
        }
        let _ = s.write_all(b"0\r\n\r\n");
        assert_eq!(status_of(&read_all(&mut s)), 413, "chunked body over 1 MB");
    }
    srv.healthy("chunked body over 1 MB");

    // A 1 MB header line: refused (431) or cut off, never buffered.
    {
        let mut s = connect(addr);
        let mut head = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nX-Big: ").into_bytes();
        head.resize(head.len() + (1 << 20), b'a');
        head.extend_from_slice(b"\r\n\r\n");
        let _ = s.write_all(&head); // the server closes before taking it all
        let code = status_of(&read_all(&mut s));
        assert!(code == 431 || code == 0, "1 MB header line: {code}");
    }
    srv.healthy("1 MB header line");

    // 500 idle connections: over the cap they are closed at once, the rest after the
    // header-read timeout (10 s); then everyone is served again.
    {
        let t = Instant::now();
        let mut idle: Vec<TcpStream> = (0..500)
            .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok())
            .collect();
        srv.alive("500 idle connections");
        let opened = idle.len();
        assert!(opened > 128, "only {opened} of 500 connections opened");
        for s in &idle {
            s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        }
        // Over the cap they are closed at once (as soon as the server has accepted them).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Ok(_): closed by the server; a timeout: still open
            idle.retain_mut(|s| {
                matches!(s.read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut)
            });
            if idle.len() <= 128 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the server holds {} idle connections",
                idle.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "500 idle connections: {opened} opened, {} closed at once, {} held",
            opened - idle.len(),
            idle.len()
        );
        let rss = srv.peak_rss_mib();
        assert!(rss < RSS_BOUND_MIB, "500 idle connections: {rss} MiB");
        // the held ones are closed by the server within its header-read timeout
        let deadline = Instant::now() + Duration::from_secs(30);
        for s in &mut idle {
            let left = deadline.saturating_duration_since(Instant::now());
            s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let r = s.read(&mut [0u8; 1]);
            assert!(
                !matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut),
                "an idle connection was still open after {:?}",
                t.elapsed()
            );
        }
        eprintln!(
            "500 idle connections: all closed by the server after {:?}",
            t.elapsed()
        );
    }
    srv.healthy("500 idle connections");

    // 9 stream clients that never read: the 9th is refused, the others' slots come back.
    {
        let t = Instant::now();
        let mut held = Vec::new();
        for _ in 0..9 {
            let mut s = connect(addr);
            write!(s, "GET /stream.mjpg HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
            held.push(s);
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut most = 0;
        loop {
            let clients = srv.stats()["clients"].as_u64().unwrap();
            most = most.max(clients);
            if most == 8 && clients == 0 {
                break;
            }
            assert!(
                t.elapsed() < STREAM_SLOT_FREED_WITHIN + Duration::from_secs(2),
                "never-reading stream clients still hold {clients} slots after {:?}",
                t.elapsed()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "9 never-reading stream clients: slots free after {:?}",
            t.elapsed()
        );
        drop(held);
        // a reading client is served again
        let mut s = connect(addr);
        write!(s, "GET /stream.mjpg HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 16 << 10];
        while got.windows(15).filter(|w| w == b"Content-Length:").count() < 2 {
            assert!(Instant::now() < deadline, "no frames on a new stream");
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the stream ended");
            got.extend_from_slice(&buf[..n]);
        }
    }
    srv.healthy("9 never-reading stream clients");

    // A PNG that declares 30000×30000 pixels in a few hundred bytes.
    {
        let bomb = ign_edge::imaging::png_declaring(30000, 30000);
        assert!(bomb.len() < 1 << 20);
        let (code, body) = request(addr, "POST", "/api/project", &[], &bomb);
        assert!(
            code == 413 || code == 400,
            "/api/project: {code} {}",
            String::from_utf8_lossy(&body)
        );
        let mut two = (bomb.len() as u32).to_be_bytes().to_vec();
        two.extend(&bomb);
        two.extend(&bomb);
        let (code, body) = request(addr, "POST", "/api/interpolate", &[], &two);
        assert!(
            code == 413 || code == 400,
            "/api/interpolate: {code} {}",
            String::from_utf8_lossy(&body)
        );
    }
    srv.healthy("30000x30000 PNG");

    // A cross-origin POST changes nothing.
    {
        let steps = srv.stats()["steps"].as_u64().unwrap();
        let (code, _) = request(
            addr,
            "POST",
            "/api/control?steps=5",
            &["Origin: http://evil.example"],
            b"",
        );
        assert_eq!(code, 403);
        assert_eq!(srv.stats()["steps"].as_u64().unwrap(), steps);
        let same = format!("Origin: http://{addr}");
        let (code, _) = request(addr, "POST", "/api/control?steps=2", &[&same], b"");
        assert_eq!(code, 200);
        assert_eq!(srv.stats()["steps"].as_u64().unwrap(), 2);
    }
    srv.healthy("cross-origin POST");

    // The pad's queue: a burst is answered 200 or 503, never left hanging.
    {
        let burst: Vec<_> = (0..12)
            .map(|i| {
                std::thread::spawn(move || {
                    request(addr, "GET", &format!("/api/noise?seed={i}"), &[], b"").0
                })
            })
            .collect();
        let codes: Vec<u16> = burst.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(codes.iter().all(|c| *c == 200 || *c == 503), "{codes:?}");
        assert!(codes.contains(&200), "{codes:?}");
    }
    srv.healthy("pad burst");

    assert_eq!(srv.stop(), 0);
}

#[test]
fn tokens_with_reserved_characters() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());

    // from the environment
    let mut srv = Server::start(&[], &[(TOKEN_ENV, "p@ss")], "token=p%40ss");
    let addr = srv.addr;
    assert_eq!(request(addr, "GET", "/", &[], b"").0, 401);
    assert_eq!(request(addr, "GET", "/?token=wrong", &[], b"").0, 401);
    assert_eq!(request(addr, "GET", "/?token=p%40ss", &[], b"").0, 200);
    assert_eq!(request(addr, "GET", "/?token=p@ss", &[], b"").0, 200);
    assert_eq!(
        request(
            addr,
            "GET",
            "/stats.json",
            &["Authorization: Bearer p@ss"],
            b""
        )
        .0,
        200
    );
    content_length_bomb(&mut srv, "Content-Length bomb, token p@ss");
    assert_eq!(srv.stop(), 0);

    // from a file
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "a+b\n").unwrap();
    private(&file);
    let mut srv = Server::start(
        &["--http-token-file", file.to_str().unwrap()],
        &[(TOKEN_ENV, "ignored")],
        "token=a%2Bb",
    );
    let addr = srv.addr;
    assert_eq!(request(addr, "GET", "/?token=a%2Bb", &[], b"").0, 200);
    // a raw '+' is a space, as the page's URLSearchParams reads it
    assert_eq!(request(addr, "GET", "/?token=a+b", &[], b"").0, 401);
    assert_eq!(request(addr, "GET", "/?token=ignored", &[], b"").0, 401);
    let (code, body) = request(addr, "POST", "/api/control?steps=3&token=a%2Bb", &[], b"");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    srv.healthy("token a+b from a file");
    assert_eq!(srv.stop(), 0);
}

#[test]
fn an_empty_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("token");
    std::fs::write(&empty, "\n").unwrap();
    private(&empty);
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: [Case; 3] = [
        (&["--http-token", ""], &[]),
        (&[], &[(TOKEN_ENV, "")]),
        (&["--http-token-file", empty.to_str().unwrap()], &[]),
    ];
    for (args, env) in cases {
        let out = common::ign_edge()
            .args(["run", "--source", "test", "--frames", "1"])
            .args(["--sink", "http:127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("empty"), "{err}");
    }
}
