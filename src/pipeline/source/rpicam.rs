//! `rpicam[:<extra args>]`: Raspberry Pi camera modules, by running `rpicam-vid` (rpicam-apps,
//! Raspberry Pi OS Bookworm) and reading raw I420 frames from its standard output.
//!
//! The program can be overridden with the `IGN_EDGE_RPICAM_VID` environment variable (another
//! install path, or `libcamera-vid` on older systems).

use anyhow::{anyhow, bail, Result};
use std::io::Read;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::convert::i420_to_rgb;
use super::{Source, SourceOptions};
use crate::pipeline::frame::Frame;

/// Frames from a running `rpicam-vid`.
pub struct RpicamSource {
    child: Child,
    out: ChildStdout,
    program: String,
    w: usize,
    h: usize,
    buf: Vec<u8>,
    seq: u64,
    log: Arc<Mutex<Vec<String>>>,
}

impl RpicamSource {
    /// Start `rpicam-vid` for the options' size and rate; `extra` is passed on (e.g. `--camera 1`).
    pub fn spawn(extra: &str, opts: &SourceOptions) -> Result<RpicamSource> {
        let program = std::env::var("IGN_EDGE_RPICAM_VID").unwrap_or_else(|_| "rpicam-vid".into());
        let (w, h) = opts.camera_size.unwrap_or((640, 480));
        if w % 64 != 0 {
            bail!("--camera-size {w}x{h}: rpicam-vid pads rows to 64 pixels; pick a width that is a multiple of 64 (640, 1280...)");
        }
        let fps = if opts.camera_fps > 0.0 {
            opts.camera_fps
        } else {
            30.0
        };
        let mut cmd = Command::new(&program);
        cmd.args(["-t", "0", "-n", "--codec", "yuv420", "--flush", "-o", "-"])
            .args(["--width", &w.to_string(), "--height", &h.to_string()])
            .args(["--framerate", &format!("{fps}")])
            .args(extra.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow!("{program} not found: install rpicam-apps (`sudo apt install rpicam-apps` on Raspberry Pi OS Bookworm), or use --source v4l2:/dev/video0 for a USB webcam")
            } else {
                anyhow!("cannot start {program}: {e}")
            }
        })?;
        let out = child.stdout.take().expect("piped");
        // Keep the last lines of its log for the error message; they are noisy otherwise.
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        if let Some(mut err) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = err.read_to_string(&mut s);
                let mut l = log.lock().unwrap();
                l.extend(s.lines().rev().take(3).map(str::to_string));
                l.reverse();
            });
        }
        let size =
            w as usize * h as usize + 2 * (w as usize).div_ceil(2) * (h as usize).div_ceil(2);
        Ok(RpicamSource {
            child,
            out,
            program,
            w: w as usize,
            h: h as usize,
            buf: vec![0; size],
            seq: 0,
            log,
        })
    }

    fn failure(&mut self, what: &str) -> anyhow::Error {
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let log = self.log.lock().unwrap().join(" | ");
        anyhow!(
            "{} {what} after {} frames ({status}){}",
            self.program,
            self.seq,
            if log.is_empty() {
                String::new()
            } else {
                format!(": {log}")
            }
        )
    }
}

impl Source for RpicamSource {
    fn describe(&self) -> String {
        format!("rpicam {}x{} via {}", self.w, self.h, self.program)
    }

    fn live(&self) -> bool {
        true
    }

    fn next_frame(&mut self) -> Result<Option<Frame>> {
        let t0 = Instant::now();
        let mut got = 0;
        while got < self.buf.len() {
            match self.out.read(&mut self.buf[got..]) {
                Ok(0) if got == 0 => {
                    // The camera program ended: cleanly (a timed run) or not.
                    let ok = self.child.wait().map(|s| s.success()).unwrap_or(false);
                    return if ok {
                        Ok(None)
                    } else {
                        Err(self.failure("stopped"))
                    };
                }
                Ok(0) => return Err(self.failure("ended in the middle of a frame")),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(anyhow!("reading {}: {e}", self.program)),
            }
        }
        let rgb = i420_to_rgb(&self.buf, self.w, self.h)?;
        let f = Frame::ready(rgb, self.seq, t0);
        self.seq += 1;
        Ok(Some(f))
    }
}

impl Drop for RpicamSource {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rpicam[:<extra rpicam-vid arguments>]`: a Raspberry Pi camera module.
pub fn open_spec(arg: &str, opts: &super::SourceOptions) -> Result<Box<dyn super::Source>> {
    Ok(Box::new(RpicamSource::spawn(arg, opts)?))
}
