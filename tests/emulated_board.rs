//! The emulated board (boards/qemu-virt): Debian's arm64 kernel in qemu-system-aarch64 with the
//! vivid virtual camera and a virtio-gpu framebuffer runs the aarch64 `ign-edge run --source
//! v4l2:/dev/video0 --sink fb:/dev/fb0 --frames 30`; the host checks the run's summary and the
//! framebuffer it left. Needs qemu-system-aarch64 (installed by the script), network access to
//! Debian once (cached under target/qemu-virt) and an aarch64 build, so it is ignored by default:
//! `.ci/run` runs it with `IGN_EDGE_AARCH64_BIN=... cargo test --test emulated_board -- --ignored`.

use ign_edge::pipeline::compose::Layout;
use std::path::{Path, PathBuf};
use std::process::Command;

fn luma(p: [u8; 3]) -> f64 {
    0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64
}

#[test]
#[ignore = "boots an emulated arm64 board (about 1 min); run by .ci/run"]
fn emulated_board_projects_the_v4l2_camera_onto_the_framebuffer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = std::env::var_os("IGN_EDGE_AARCH64_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/aarch64-unknown-linux-gnu/release/ign-edge"));
    assert!(
        bin.exists(),
        "{}: build it first (boards/cross-build.sh or cargo build --release --target aarch64-unknown-linux-gnu)",
        bin.display()
    );
    let out = Command::new(root.join("boards/qemu-virt/run.sh"))
        .arg(&bin)
        .arg("30")
        .output()
        .expect("run boards/qemu-virt/run.sh");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");

    let work = root.join("target/qemu-virt");
    let console = std::fs::read_to_string(work.join("console.log")).unwrap();
    assert!(
        console.contains("IGN-BOARD: exit 0"),
        "ign-edge failed on the board:\n{console}"
    );
    assert!(
        console.contains("30 frames in"),
        "summary of 30 projected frames expected:\n{console}"
    );

    // the KMS sink on virtio-gpu's CRTC
    assert!(
        console.contains("IGN-BOARD: drm exit 0") && console.contains("10 frames in"),
        "the drm sink run failed:\n{console}"
    );

    // the framebuffer as the guest left it: XRGB8888, geometry from sysfs
    let geo = std::fs::read_to_string(work.join("fb.txt")).unwrap();
    let nums: Vec<u32> = geo
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    let (w, h, bpp, stride) = (nums[0], nums[1], nums[2], nums[3]);
    assert_eq!(bpp, 32, "virtio-gpu's framebuffer is 32 bpp: {geo}");
    let raw = std::fs::read(work.join("fb.raw")).unwrap();
    assert!(raw.len() >= (stride * h) as usize);
    let px = |x: u32, y: u32| {
        let i = (y * stride + x * 4) as usize;
        [raw[i + 2], raw[i + 1], raw[i]]
    };
    let layout = Layout::new(w, h, 2).unwrap();
    let stats = |panel: usize| {
        let (x0, y0) = layout.panels[panel];
        let v: Vec<f64> = (y0..y0 + layout.cell)
            .flat_map(|y| (x0..x0 + layout.cell).map(move |x| (x, y)))
            .map(|(x, y)| luma(px(x, y)))
            .collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let sd = (v.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        let dark = v.iter().filter(|&&l| l < 64.0).count() as f64 / v.len() as f64;
        let bright = v.iter().filter(|&&l| l > 128.0).count() as f64 / v.len() as f64;
        (mean, sd, dark, bright)
    };
    let camera = stats(0);
    assert!(camera.1 > 20.0, "camera panel is blank: {camera:?}");
    // f(frame): an MNIST-like picture, mostly dark background with bright strokes
    let proj = stats(1);
    assert!(
        proj.1 > 20.0 && proj.2 > 0.3 && proj.3 > 0.02,
        "projection panel is blank or not a projection (mean, sd, dark, bright): {proj:?}"
    );
    // the overlay's text
    let green = (layout.hud_y..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| px(x, y) == [120, 255, 120])
        .count();
    assert!(green > 200, "overlay text pixels: {green}");
}
