//! The live loop end to end: what reaches the display is the projection of the frame, the
//! overlay is drawn, slow stages drop frames instead of queueing, SIGTERM stops it cleanly.

use ign_edge::backend::{cpu::CpuBackend, Backend};
use ign_edge::model::Model;
use ign_edge::pipeline::compose::{self, Layout};
use ign_edge::pipeline::frame::Frame;
use ign_edge::pipeline::preprocess::Preprocess;
use ign_edge::pipeline::source::test_pattern::TestPattern;
use ign_edge::pipeline::{run_loop, sink, source, LoopOptions};
use ign_edge::tensor::ImageBatch;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn opts(frames: u64, steps: usize) -> LoopOptions {
    LoopOptions {
        frames: Some(frames),
        steps,
        stop: Arc::new(AtomicBool::new(false)),
        model_name: "tiny28".into(),
        precision: "fp32".into(),
        controls: None,
        watchers: Vec::new(),
        anomaly: None,
    }
}

fn pre(m: &Model) -> Preprocess {
    Preprocess {
        channels: m.info.channels,
        height: m.info.height,
        width: m.info.width,
        roi: None,
        paper: false,
    }
}

#[test]
fn framebuffer_file_shows_the_projection_of_the_last_frame_and_the_overlay() {
    let model = Model::load(&fixture("tiny28.onnx")).unwrap();
    let mut backend = CpuBackend::new(&model, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fb = dir.path().join("fb.raw");
    let sopts = sink::SinkOptions {
        fb_geometry: Some((320, 120, 32)),
        ..Default::default()
    };
    let snk = sink::open(&format!("fb:{}", fb.display()), &sopts).unwrap();
    let src = source::open(
        "test",
        &source::SourceOptions {
            looping: false,
            fps: 60.0,
            ..Default::default()
        },
    )
    .unwrap();
    let p = pre(&model);
    let summary = run_loop(src, &mut backend, &p, snk, &opts(8, 2)).unwrap();
    assert_eq!(summary.frames, 8);
    let seq = summary.last_seq.unwrap();

    // what the display must show for that frame
    let frame = TestPattern::new(160, 120, 0.0).render(seq);
    let mut x = ImageBatch {
        data: vec![0.0; 28 * 28],
        shape: [1, 1, 28, 28],
    };
    p.run(&frame, &mut x.data);
    let outs = backend.project(&x, 2).unwrap();
    let layout = Layout::new(320, 120, 3).unwrap();
    let mut want = image::RgbImage::new(320, 120);
    compose::draw_chw_panel(
        &mut want,
        &outs[0].data,
        (1, 28, 28),
        layout.panels[1],
        layout.cell,
    );
    compose::draw_chw_panel(
        &mut want,
        &outs[1].data,
        (1, 28, 28),
        layout.panels[2],
        layout.cell,
    );

    let raw = std::fs::read(&fb).unwrap();
    assert_eq!(raw.len(), 320 * 120 * 4);
    let px = |x: u32, y: u32| {
        let i = ((y * 320 + x) * 4) as usize;
        [raw[i + 2], raw[i + 1], raw[i]] // XRGB8888 little-endian: B, G, R, X
    };
    let mut differing = 0;
    for panel in [1, 2] {
        let (x0, y0) = layout.panels[panel];
        for y in y0..y0 + layout.cell {
            for x in x0..x0 + layout.cell {
                if px(x, y) != want.get_pixel(x, y).0 {
                    differing += 1;
                }
            }
        }
    }
    assert_eq!(
        differing, 0,
        "projection panels differ from f(frame) in {differing} pixels"
    );
    // the overlay bar holds bright green text pixels
    let green = (layout.hud_y..120)
        .flat_map(|y| (0..320).map(move |x| (x, y)))
        .filter(|&(x, y)| px(x, y) == [120, 255, 120])
        .count();
    assert!(green > 200, "overlay text pixels: {green}");
}

/// A backend that sleeps before each application of f: a slow board.
struct Slow(CpuBackend, std::time::Duration);

impl Backend for Slow {
    fn name(&self) -> String {
        "slow".into()
    }
    fn run(&mut self, input: &ImageBatch) -> anyhow::Result<ImageBatch> {
        std::thread::sleep(self.1);
        self.0.run(input)
    }
}

/// Waits (at most 10 s) until `counter` reaches `at_least`: tests pace one stage by another's
/// progress instead of by time, so they hold under any schedule.
fn wait_for(counter: &AtomicU64, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter.load(Ordering::SeqCst) < at_least && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A live source (a camera) that counts the frames it made.
struct CountingCamera {
    pattern: TestPattern,
    seq: u64,
    made: Arc<AtomicU64>,
}

impl source::Source for CountingCamera {
    fn describe(&self) -> String {
        "counting camera".into()
    }
    fn live(&self) -> bool {
        true
    }
    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        std::thread::sleep(Duration::from_millis(1));
        let t = Instant::now();
        let f = Frame::ready(self.pattern.render(self.seq), self.seq, t);
        self.seq += 1;
        self.made.store(self.seq, Ordering::SeqCst);
        Ok(Some(f))
    }
}

/// A slow model: each application of f lasts until the camera made `k` more frames.
struct SlowerThanTheCamera {
    inner: CpuBackend,
    made: Arc<AtomicU64>,
    k: u64,
}

impl Backend for SlowerThanTheCamera {
    fn name(&self) -> String {
        "slower than the camera".into()
    }
    fn run(&mut self, input: &ImageBatch) -> anyhow::Result<ImageBatch> {
        wait_for(&self.made, self.made.load(Ordering::SeqCst) + self.k);
        self.inner.run(input)
    }
}

#[test]
fn a_slow_stage_drops_stale_frames_instead_of_queueing() {
    let model = Model::load(&fixture("tiny28.onnx")).unwrap();
    let made = Arc::new(AtomicU64::new(0));
    let mut slow = SlowerThanTheCamera {
        inner: CpuBackend::new(&model, None).unwrap(),
        made: made.clone(),
        k: 6,
    };
    let src = Box::new(CountingCamera {
        pattern: TestPattern::new(160, 120, 0.0),
        seq: 0,
        made,
    });
    let snk = sink::open("null", &sink::SinkOptions::default()).unwrap();
    let s = run_loop(src, &mut slow, &pre(&model), snk, &opts(10, 1)).unwrap();
    assert_eq!(s.frames, 10);
    // while f runs the camera makes 6 frames, at least 5 reach the one-slot mailbox and at
    // least 4 of them are replaced there: most frames are dropped, not queued
    assert!(s.dropped_capture >= 20, "{s:?}");
    // frames shown are fresh: the last one is far along the camera's sequence
    assert!(s.last_seq.unwrap() >= 30, "{s:?}");
}

#[test]
fn recorded_sources_drop_nothing() {
    let model = Model::load(&fixture("tiny28.onnx")).unwrap();
    let mut slow = Slow(
        CpuBackend::new(&model, None).unwrap(),
        std::time::Duration::from_millis(5),
    );
    let dir = tempfile::tempdir().unwrap();
    for i in 0..6u8 {
        image::GrayImage::from_pixel(20, 20, image::Luma([i * 40]))
            .save(dir.path().join(format!("{i}.png")))
            .unwrap();
    }
    let src = source::open(
        &format!("file:{}", dir.path().display()),
        &source::SourceOptions::default(),
    )
    .unwrap();
    let snk = sink::open("null", &sink::SinkOptions::default()).unwrap();
    let mut o = opts(100, 1);
    o.frames = None;
    let s = run_loop(src, &mut slow, &pre(&model), snk, &o).unwrap();
    assert_eq!((s.frames, s.dropped_capture), (6, 0));
    assert_eq!(s.last_seq, Some(5));
}

#[test]
fn sigterm_stops_the_binary_cleanly_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ign-edge"))
        .args(["run", "--source", "test", "--sink", "null", "-m"])
        .arg(fixture("tiny28.onnx"))
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // the signal goes once the loop says it runs, not after a guess at how long that takes
    let reader = wait_for_running(&mut child);
    // SAFETY: sending a signal to our own child process by its pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("frames in") && err.contains("fps"), "{err}");
}

/// Read `child`'s stderr on a thread until it says "running" (at most 60 s); the thread
/// returns everything it printed once it ends.
fn wait_for_running(child: &mut std::process::Child) -> std::thread::JoinHandle<String> {
    use std::io::BufRead;
    let err = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if line.starts_with("running") {
                let _ = tx.send(());
            }
            all += &line;
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the loop says it runs");
    reader
}

fn ign_edge(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ign-edge"));
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn rpicam_source_reads_i420_frames_from_rpicam_vid() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // 3 frames of 64x48 I420: Y ramps, neutral chroma; a stand-in rpicam-vid prints them.
    let (w, h) = (64usize, 48usize);
    let mut frames = Vec::new();
    for k in 0..3u8 {
        frames.extend((0..w * h).map(|i| 16 + (i % w) as u8 * 3 + k));
        frames.extend(std::iter::repeat_n(128u8, 2 * (w / 2) * (h / 2)));
    }
    std::fs::write(dir.path().join("frames.bin"), &frames).unwrap();
    let fake = dir.path().join("rpicam-vid");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncat '{}'\n",
            dir.path().join("frames.bin").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = ign_edge(
        &[
            "run",
            "--source",
            "rpicam",
            "--camera-size",
            "64x48",
            "--sink",
            "null",
            "--json",
            &dir.path().join("s.json").display().to_string(),
        ],
        &[("IGN_EDGE_RPICAM_VID", fake.to_str().unwrap())],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("rpicam 64x48"), "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("s.json")).unwrap()).unwrap();
    let shown = v["frames"].as_u64().unwrap();
    assert!((1..=3).contains(&shown), "{v}");

    // missing program and missing camera: one clear line each
    let out = ign_edge(
        &["run", "--source", "rpicam", "--frames", "1"],
        &[("IGN_EDGE_RPICAM_VID", "/nonexistent/rpicam-vid")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not found") && err.contains("rpicam-apps"),
        "{err}"
    );
    let out = ign_edge(
        &["run", "--source", "v4l2:/dev/video99", "--frames", "1"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("/dev/video99") && err.contains("plugged in"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn gst_source_runs_the_loop_or_names_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("s.json");
    let out = ign_edge(
        &[
            "run",
            "--source",
            "gst:videotestsrc num-buffers=6 pattern=ball ! video/x-raw,width=96,height=64",
            "--sink",
            &format!("png:{}", dir.path().display()),
            "--json",
            json.to_str().unwrap(),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    if cfg!(feature = "gstreamer") {
        assert!(out.status.success(), "{err}");
        assert!(err.contains("gstreamer videotestsrc"), "{err}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        // A file-like pipeline is read at the loop's pace: nothing dropped at capture.
        assert_eq!(v["dropped_capture"].as_u64(), Some(0), "{v}");
        assert!(v["frames"].as_u64().unwrap() >= 1, "{v}");
        let pngs = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("png".as_ref()))
            .count();
        assert!(pngs >= 1);
    } else {
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("--features gstreamer") && err.lines().count() == 1,
            "{err}"
        );
    }
}

/// A model that counts its runs.
struct Counted {
    inner: CpuBackend,
    runs: Arc<AtomicU64>,
}

impl Backend for Counted {
    fn name(&self) -> String {
        "counted".into()
    }
    fn run(&mut self, input: &ImageBatch) -> anyhow::Result<ImageBatch> {
        let y = self.inner.run(input);
        self.runs.fetch_add(1, Ordering::SeqCst);
        y
    }
}

/// A display slower than the model: each picture is shown once the model ran 3 more times,
/// so at least two new pictures reach the display's one-slot mailbox per picture shown.
struct SlowSink {
    inner: Box<dyn sink::Sink>,
    runs: Arc<AtomicU64>,
}

impl sink::Sink for SlowSink {
    fn describe(&self) -> String {
        "slow".into()
    }
    fn size(&self) -> (u32, u32) {
        self.inner.size()
    }
    fn show(&mut self, canvas: &image::RgbImage, seq: u64) -> anyhow::Result<()> {
        wait_for(&self.runs, self.runs.load(Ordering::SeqCst) + 3);
        self.inner.show(canvas, seq)
    }
}

#[test]
fn frames_counts_pictures_shown_even_when_the_display_drops() {
    // the model is fast and the display slow: pictures are dropped at the display, and
    // `--frames 8` still shows 8
    let model = Model::load(&fixture("tiny28.onnx")).unwrap();
    let runs = Arc::new(AtomicU64::new(0));
    let mut backend = Counted {
        inner: CpuBackend::new(&model, None).unwrap(),
        runs: runs.clone(),
    };
    let src = source::open(
        "test",
        &source::SourceOptions {
            fps: 400.0,
            ..Default::default()
        },
    )
    .unwrap();
    let snk = Box::new(SlowSink {
        inner: sink::open("null", &sink::SinkOptions::default()).unwrap(),
        runs,
    });
    let s = run_loop(src, &mut backend, &pre(&model), snk, &opts(8, 1)).unwrap();
    assert_eq!(s.frames, 8, "{s:?}");
    assert!(s.dropped_display > 0, "{s:?}");
}

/// A display that counts what it shows.
struct Recording {
    inner: Box<dyn sink::Sink>,
    shown: Arc<std::sync::Mutex<Vec<u64>>>,
}

impl sink::Sink for Recording {
    fn describe(&self) -> String {
        "recording".into()
    }
    fn size(&self) -> (u32, u32) {
        self.inner.size()
    }
    fn show(&mut self, canvas: &image::RgbImage, seq: u64) -> anyhow::Result<()> {
        std::thread::sleep(Duration::from_millis(2));
        self.shown.lock().unwrap().push(seq);
        self.inner.show(canvas, seq)
    }
}

#[test]
fn a_recorded_source_shows_every_frame_in_order_even_with_a_slow_display() {
    // the test pattern at fps 0 is a recording: back-pressure through both mailboxes, so a
    // slow display drops nothing and `--frames 12` shows frames 0..12
    let model = Model::load(&fixture("tiny28.onnx")).unwrap();
    let mut backend = CpuBackend::new(&model, None).unwrap();
    let src = source::open("test", &source::SourceOptions::default()).unwrap();
    let shown = Arc::new(std::sync::Mutex::new(Vec::new()));
    let snk = Box::new(Recording {
        inner: sink::open("null", &sink::SinkOptions::default()).unwrap(),
        shown: shown.clone(),
    });
    let s = run_loop(src, &mut backend, &pre(&model), snk, &opts(12, 1)).unwrap();
    assert_eq!((s.frames, s.dropped_capture, s.dropped_display), (12, 0, 0));
    assert_eq!(*shown.lock().unwrap(), (0..12).collect::<Vec<u64>>());
}

#[test]
fn sigterm_ends_the_loop_within_2_s_when_the_source_sends_nothing() {
    use std::io::Write;
    // a y4m pipe that sends its header and then nothing: the capture thread is stuck in a read
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ign-edge"))
        .args(["run", "--source", "y4m:-", "--sink", "null", "-m"])
        .arg(fixture("tiny28.onnx"))
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"YUV4MPEG2 W64 H48 F30:1 C420jpeg\n")
        .unwrap();
    stdin.flush().unwrap();
    let reader = wait_for_running(&mut child);
    let t0 = Instant::now();
    // SAFETY: sending a signal to our own child process by its pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let deadline = t0 + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = t0.elapsed();
    if status.is_none() {
        let _ = child.kill();
    }
    drop(stdin); // kept open until here: the source never sees the end of its stream
    let err = reader.join().unwrap();
    let status = status.expect("ign-edge run did not stop within 10 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    assert!(err.contains("0 frames in"), "{err}");
}

/// A sink that keeps the figures of every picture and the last picture.
struct Figures {
    figures: Arc<std::sync::Mutex<Vec<ign_edge::pipeline::telemetry::Telemetry>>>,
    last: Arc<std::sync::Mutex<Option<image::RgbImage>>>,
}

impl sink::Sink for Figures {
    fn describe(&self) -> String {
        "figures".into()
    }
    fn size(&self) -> (u32, u32) {
        (320, 120)
    }
    fn status(&mut self, now: &ign_edge::pipeline::telemetry::Telemetry) {
        self.figures.lock().unwrap().push(now.clone());
    }
    fn show(&mut self, canvas: &image::RgbImage, _seq: u64) -> anyhow::Result<()> {
        *self.last.lock().unwrap() = Some(canvas.clone());
        Ok(())
    }
}

#[test]
fn anomaly_scores_every_frame_and_shows_the_heatmap_as_the_third_panel() {
    use ign_edge::anomaly::ScoreKind;
    let model = Model::load(&fixture("tiny28.onnx")).unwrap();
    let mut backend = CpuBackend::new(&model, None).unwrap();
    let run = |anomaly: Option<ign_edge::pipeline::AnomalySettings>, backend: &mut CpuBackend| {
        let src = source::open("test", &source::SourceOptions::default()).unwrap();
        let (figures, last) = (Arc::default(), Arc::default());
        let snk = Box::new(Figures {
            figures: Arc::clone(&figures),
            last: Arc::clone(&last),
        });
        let mut o = opts(6, 1);
        o.anomaly = anomaly;
        let s = run_loop(src, backend, &pre(&model), snk, &o).unwrap();
        assert_eq!(s.frames, 6);
        let figures = Arc::try_unwrap(figures).unwrap().into_inner().unwrap();
        let last: Option<image::RgbImage> = Arc::try_unwrap(last).unwrap().into_inner().unwrap();
        (figures, last.unwrap())
    };
    let settings = ign_edge::pipeline::AnomalySettings {
        kind: ScoreKind::SmoothMax,
        threshold: Some(0.0),
    };
    let (figures, with) = run(Some(settings), &mut backend);
    assert_eq!(figures.len(), 6);
    for f in &figures {
        let s = f.anomaly_score.expect("a score per frame");
        // tiny28 is an untrained f: it moves every frame, so each is above a threshold of 0
        assert!(s.is_finite() && s > 0.0, "{s}");
        assert_eq!((f.anomaly_threshold, f.anomalous), (Some(0.0), Some(true)));
    }
    // without --anomaly: no score
    let (plain, _) = run(None, &mut backend);
    assert!(plain
        .iter()
        .all(|f| f.anomaly_score.is_none() && f.anomalous.is_none()));
    // the third panel is the heatmap, in colour (black through red to yellow: no blue), where
    // the gray model's panels are gray
    let layout = ign_edge::pipeline::compose::Layout::new(320, 120, 3).unwrap();
    let (x0, y0) = layout.panels[2];
    let panel: Vec<_> = (0..layout.cell)
        .flat_map(|dy| (0..layout.cell).map(move |dx| (x0 + dx, y0 + dy)))
        .map(|(x, y)| *with.get_pixel(x, y))
        .collect();
    assert!(panel.iter().all(|p| p[2] == 0), "blue in the heatmap");
    assert!(
        panel.iter().any(|p| p[0] > 0 && p[0] != p[2]),
        "no heat shown"
    );
    let (fx, fy) = layout.panels[1];
    let f_px = with.get_pixel(fx + layout.cell / 2, fy + layout.cell / 2);
    assert!(
        f_px[0] == f_px[1] && f_px[1] == f_px[2],
        "f's panel is gray: {f_px:?}"
    );
}

/// The page can ask for one application of f; a score that compares f(x) with f(f(x)) keeps
/// its second, and every frame still gets a score (not the last one's, repeated).
#[test]
fn a_score_that_needs_f_twice_keeps_two_applications_when_the_page_asks_for_one() {
    use ign_edge::anomaly::ScoreKind;
    use ign_edge::pipeline::controls::Controls;
    let model = Model::load(&fixture("tiny28.onnx")).unwrap();
    let mut backend = CpuBackend::new(&model, None).unwrap();
    let src = source::open("test", &source::SourceOptions::default()).unwrap();
    let figures = Arc::default();
    let snk = Box::new(Figures {
        figures: Arc::clone(&figures),
        last: Arc::default(),
    });
    let controls = Controls::new(2, false, vec![ign_edge::model::Precision::Fp32]);
    controls.steps.store(1, Ordering::Relaxed);
    let mut o = opts(5, 2);
    o.controls = Some(controls);
    o.anomaly = Some(ign_edge::pipeline::AnomalySettings {
        kind: ScoreKind::Sum,
        threshold: None,
    });
    let s = run_loop(src, &mut backend, &pre(&model), snk, &o).unwrap();
    assert_eq!(s.frames, 5);
    let figures = Arc::try_unwrap(figures).unwrap().into_inner().unwrap();
    assert_eq!(figures.len(), 5);
    for f in &figures {
        assert_eq!(f.steps, 2);
        let score = f.anomaly_score.expect("a score per frame");
        assert!(score.is_finite() && score > 0.0, "{score}");
    }
}
