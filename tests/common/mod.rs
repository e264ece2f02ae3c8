//! What the integration tests that start `ign-edge run --sink http:` share.
#![allow(dead_code)] // each test file uses its own part

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Start `cmd` (an `ign-edge run ... --sink http:127.0.0.1:0`) with stderr piped, and wait (at
/// most 60 s) for the line that says where it serves: the child and that `host:port`.
pub fn spawn_http(mut cmd: Command) -> (Child, String) {
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("http://").nth(1) {
                let _ = tx.send(rest.split('/').next().unwrap().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server says where it listens");
    (child, addr)
}
