//! `ign-edge score`: a frame with something pasted in scores above the same frame without it,
//! the heatmap peaks inside what was pasted, the verdict follows the threshold, and the
//! scores are the same run after run. The model is the shipped digit model: a held-out digit
//! is its "scene", a bright square in an empty corner what does not belong.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled held-out digit, and the same digit with a white 6x6 square at (2..8, 20..26)
/// of its 28x28 (an empty corner of the digit).
fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let digit = image::open(root().join("models/demo/digit.png"))
        .unwrap()
        .to_luma8();
    let digit = image::imageops::resize(&digit, 28, 28, image::imageops::FilterType::Triangle);
    let clean = dir.join("clean.png");
    digit.save(&clean).unwrap();
    let mut patched = digit.clone();
    for y in 20..26 {
        for x in 2..8 {
            patched.put_pixel(x, y, image::Luma([255]));
        }
    }
    let p = dir.join("patched.png");
    patched.save(&p).unwrap();
    (clean, p)
}

fn score(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("s.json");
    let o = Command::new(env!("CARGO_BIN_EXE_ign-edge"))
        .arg("score")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}

#[test]
fn a_pasted_square_scores_above_the_clean_frame_and_the_heatmap_peaks_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, patched) = inputs(dir.path());
    let heat = dir.path().join("heat");
    let (c, p) = (clean.to_str().unwrap(), patched.to_str().unwrap());
    let r = score(&[c, p, "--heatmaps", heat.to_str().unwrap()]);
    let res = r["results"].as_array().unwrap();
    let (sc, sp) = (
        res[0]["score"].as_f64().unwrap(),
        res[1]["score"].as_f64().unwrap(),
    );
    assert!(sp > 1.5 * sc, "patched {sp} vs clean {sc}");
    // the peak lies on the square (widened by the 5x5 smoothing window)
    let peak: Vec<u64> = res[1]["peak"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(
        (0..10).contains(&peak[0]) && (18..28).contains(&peak[1]),
        "{peak:?}"
    );
    // the shipped model has no calibrated threshold: nothing is flagged, and JSON says so
    assert!(
        r["threshold"].is_null() && r["threshold_from"] == "none",
        "{r}"
    );
    assert!(res.iter().all(|s| s["anomalous"] == false));
    // a heatmap picture per input: three 28x28 panels at 4x with 2 px gaps
    let pics: Vec<_> = std::fs::read_dir(&heat).unwrap().collect();
    assert_eq!(pics.len(), 2);
    // a threshold between the two flags the patched frame only, and the run repeats exactly
    let t = format!("{}", (sc + sp) / 2.0);
    let a = score(&[c, p, "--threshold", &t]);
    let flags: Vec<bool> = a["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["anomalous"].as_bool().unwrap())
        .collect();
    assert_eq!(flags, vec![false, true]);
    assert_eq!(a["threshold_from"], "option");
    assert_eq!(score(&[c, p, "--threshold", &t])["results"], a["results"]);
    assert_eq!(a["results"][1]["score"], r["results"][1]["score"]);
}

#[test]
fn bad_thresholds_and_scores_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, _) = inputs(dir.path());
    for (args, needle) in [
        (vec!["--threshold=-1"], "--threshold"),
        (vec!["--score", "nope"], "nope"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_ign-edge"))
            .arg("score")
            .arg(&clean)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "{err}");
    }
}
