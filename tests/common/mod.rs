//! What the integration tests that start `ign-edge run --sink http:` share.
#![allow(dead_code)] // each test file uses its own part

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `ign-edge` run from the package folder, without a token from the environment.
pub fn ign_edge() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ign-edge"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("IGN_EDGE_HTTP_TOKEN");
    c
}

/// `ign-edge run` of the test pattern at 30 fps into the http sink on an ephemeral loopback
/// port, with `extra` arguments.
pub fn http_run(extra: &[&str]) -> Command {
    let mut c = ign_edge();
    c.args([
        "run",
        "--source",
        "test",
        "--fps",
        "30",
        "--sink",
        "http:127.0.0.1:0",
    ])
    .args(extra);
    c
}

/// Start `cmd` (an `ign-edge run ... --sink http:127.0.0.1:0`) with stderr piped, and wait (at
/// most 60 s) for the line that says where it serves: the child and that `host:port`.
pub fn spawn_http(mut cmd: Command) -> (Child, String) {
    // The server goes with the test: SIGTERM when the thread that started it ends, so a test
    // that panics before it stops the server does not leave `ign-edge run` behind at 30 fps.
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
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
