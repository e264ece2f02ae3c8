//! `ign-edge capture`: frames from the test source and from a y4m file into PNGs at the
//! model's size with a manifest; near-duplicates skipped; Ctrl-C leaves a complete folder; an
//! existing capture is refused unless appended to.

use ign_edge::app::capture::{read_manifest, Manifest};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn ign_edge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ign-edge"))
        .args(args)
        .output()
        .unwrap()
}

/// Every PNG of `dir` is in the manifest and every manifest entry is a decodable PNG of the
/// capture's size; no temporary file is left.
fn assert_complete(dir: &Path, m: &Manifest) {
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "manifest.json")
        .collect();
    on_disk.sort();
    let listed: Vec<String> = m.frames.iter().map(|f| f.file.clone()).collect();
    assert_eq!(on_disk, listed, "files on disk and in the manifest differ");
    for f in &m.frames {
        let img = image::open(dir.join(&f.file)).unwrap().to_rgb8();
        assert_eq!(
            img.dimensions(),
            (m.size as u32, m.size as u32),
            "{}",
            f.file
        );
    }
}

#[test]
fn captures_the_test_source_at_the_asked_size_with_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scene");
    // the test scene at full speed into 32x32 frames, every frame kept
    let capture = |frames: &str, extra: &[&str]| {
        let out = out.to_str().unwrap();
        let mut a = vec!["capture", "--source", "test", "--fps", "0", "--out", out];
        a.extend(["--frames", frames, "--size", "32", "--min-change", "0"]);
        a.extend(extra);
        ign_edge(&a)
    };
    let o = capture("5", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = read_manifest(&out).unwrap();
    assert_eq!(m.frames.len(), 5);
    assert_eq!(
        (m.size, m.channels, m.stopped_by.as_str()),
        (32, 3, "frames")
    );
    assert!(m.source.contains("test"), "{}", m.source);
    assert!(m.started_unix > 1.6e9, "{}", m.started_unix);
    // each frame after the first records how much it differs from the one before
    assert!(m.frames[0].change.is_none() && m.frames[1..].iter().all(|f| f.change.is_some()));
    assert_complete(&out, &m);
    // a second capture into the same folder is refused, then appended with --append
    let again = |extra: &[&str]| capture("2", extra);
    let o = again(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--append") && err.lines().count() == 1,
        "{err}"
    );
    let o = again(&["--append"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = read_manifest(&out).unwrap();
    assert_eq!(m.frames.len(), 7);
    assert_eq!(m.frames[6].file, "frame-000006.png");
    assert_complete(&out, &m);
}

/// A 4:2:0 YUV4MPEG2 stream of `w`×`h` frames, each a flat grey of the given luma.
fn y4m(w: usize, h: usize, lumas: &[u8]) -> Vec<u8> {
    let mut v = format!("YUV4MPEG2 W{w} H{h} F30:1 C420jpeg\n").into_bytes();
    for &y in lumas {
        v.extend(b"FRAME\n");
        v.extend(std::iter::repeat_n(y, w * h));
        v.extend(std::iter::repeat_n(128u8, 2 * (w / 2) * (h / 2)));
    }
    v
}

#[test]
fn repeated_frames_of_a_y4m_file_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.y4m");
    // 3 distinct frames, two of them repeated
    std::fs::write(&clip, y4m(64, 48, &[40, 40, 120, 120, 120, 200])).unwrap();
    let out = dir.path().join("scene");
    let o = ign_edge(&[
        "capture",
        "--source",
        &format!("file:{}", clip.display()),
        "--out",
        out.to_str().unwrap(),
        "--frames",
        "10",
        "--gray",
        "--size",
        "16",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = read_manifest(&out).unwrap();
    // 40, 120, 200 kept; the repeated 40 and the two repeated 120s skipped
    assert_eq!(m.frames.len(), 3, "{:?}", m.frames);
    assert_eq!((m.skipped_similar, m.stopped_by.as_str()), (3, "end"));
    assert_eq!(m.channels, 1);
    let seqs: Vec<u64> = m.frames.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, vec![0, 2, 5]);
    assert_complete(&out, &m);
}

#[test]
fn ctrl_c_leaves_a_complete_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scene");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ign-edge"))
        .args([
            "capture", "--source", "test", "--fps", "20", "--frames", "100000",
        ])
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // until a few frames are on disk
    let t0 = Instant::now();
    while std::fs::read_dir(&out).map_or(0, |d| d.count()) < 4 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no frames after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: sending a signal to our own child process by its pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let t1 = Instant::now();
    let status = child.wait().unwrap();
    assert!(t1.elapsed() < Duration::from_secs(5), "{:?}", t1.elapsed());
    assert!(status.success(), "{status:?}");
    let m = read_manifest(&out).unwrap();
    assert_eq!(m.stopped_by, "signal");
    assert!(m.frames.len() >= 3, "{:?}", m.frames);
    assert_complete(&out, &m);
}

#[test]
fn bad_arguments_give_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    for (args, needle) in [
        (vec!["--source", "nosuch:thing"], "unknown source"),
        (vec!["--source", "test", "--size", "3"], "size of 8 to 4096"),
        (vec!["--source", "test", "--every=-1"], "--every"),
    ] {
        let mut a = vec!["capture", "--out", out.to_str().unwrap()];
        a.extend(args);
        let o = ign_edge(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(needle) && err.trim().lines().count() == 1,
            "{err}"
        );
    }
}
