//! Criterion benchmarks of the live loop's stages: preprocessing a camera frame, inference per
//! precision at batch 1, and composing the picture with its overlay.
//!
//! `cargo bench --bench stages` (the shipped models must be in models/; int8/fp16 variants are
//! benchmarked when their files exist).

use criterion::{criterion_group, criterion_main, Criterion};
use ign_edge::backend::{cpu::CpuBackend, Backend};
use ign_edge::model::{Model, Precision};
use ign_edge::pipeline::{compose, overlay::Hud, preprocess::Preprocess};
use image::{Rgb, RgbImage};
use std::hint::black_box;
use std::path::Path;

fn camera_frame() -> RgbImage {
    RgbImage::from_fn(640, 480, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    })
}

fn preprocess(c: &mut Criterion) {
    let frame = camera_frame();
    let mut out = vec![0f32; 28 * 28];
    for paper in [false, true] {
        let pre = Preprocess {
            channels: 1,
            height: 28,
            width: 28,
            roi: None,
            paper,
        };
        c.bench_function(
            &format!("preprocess 640x480 -> 1x28x28 paper={paper}"),
            |b| b.iter(|| pre.run(black_box(&frame), &mut out)),
        );
    }
}

fn inference(c: &mut Criterion) {
    let base = Path::new("models/ign-mnist.onnx");
    for p in [Precision::Fp32, Precision::Int8, Precision::Fp16] {
        let path = if p == Precision::Fp32 {
            base.to_path_buf()
        } else {
            ign_edge::quantize::variant_path(base, p)
        };
        let Ok(model) = Model::load(&path) else {
            continue;
        };
        let mut backend = CpuBackend::new(&model, Some(1)).unwrap();
        let x = ign_edge::inputs::noise_batch(&model.info, 1, 1);
        c.bench_function(
            &format!("inference ign-mnist {p} ({}) batch 1", backend.arithmetic()),
            |b| b.iter(|| backend.run(black_box(&x)).unwrap()),
        );
    }
}

/// What `--anomaly` adds per frame: the score and heatmap of a 64×64 RGB frame (a scene
/// model's size) against its projection.
fn anomaly_score(c: &mut Criterion) {
    let n = 3 * 64 * 64;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0)
        .collect();
    let fx: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, v)| v * 0.9 + (i % 13) as f32 * 0.01)
        .collect();
    for kind in [
        ign_edge::anomaly::ScoreKind::SmoothMax,
        ign_edge::anomaly::ScoreKind::Mean,
    ] {
        c.bench_function(&format!("anomaly score {kind:?} 3x64x64"), |b| {
            b.iter(|| {
                ign_edge::anomaly::score(kind, black_box(&x), black_box(&fx), None, (3, 64, 64))
                    .unwrap()
            })
        });
    }
}

fn compose_and_overlay(c: &mut Criterion) {
    let frame = camera_frame();
    let layout = compose::Layout::new(480, 200, 3).unwrap();
    let mut canvas = RgbImage::new(480, 200);
    let y = vec![0.25f32; 28 * 28];
    let hud = Hud {
        model: "ign-mnist".into(),
        precision: "fp32".into(),
        steps: 2,
        fps: 30.0,
        ..Default::default()
    };
    let pre = Preprocess {
        channels: 1,
        height: 28,
        width: 28,
        roi: None,
        paper: false,
    };
    let crop = pre.crop(640, 480);
    c.bench_function("compose 3 panels + overlay, 480x200", |b| {
        b.iter(|| {
            compose::clear(&mut canvas);
            compose::draw_frame_panel(&mut canvas, &frame, crop, layout.panels[0], layout.cell);
            compose::draw_chw_panel(&mut canvas, &y, (1, 28, 28), layout.panels[1], layout.cell);
            compose::draw_chw_panel(&mut canvas, &y, (1, 28, 28), layout.panels[2], layout.cell);
            hud.draw(&mut canvas, layout.hud_y);
            black_box(&canvas);
        })
    });
}

fn compose_parts(c: &mut Criterion) {
    let frame = camera_frame();
    let layout = compose::Layout::new(480, 200, 3).unwrap();
    let mut canvas = RgbImage::new(480, 200);
    let pre = Preprocess {
        channels: 1,
        height: 28,
        width: 28,
        roi: None,
        paper: false,
    };
    let crop = pre.crop(640, 480);
    let y = vec![0.25f32; 28 * 28];
    let hud = Hud::default();
    c.bench_function("compose: clear", |b| {
        b.iter(|| compose::clear(black_box(&mut canvas)))
    });
    c.bench_function("compose: camera panel", |b| {
        b.iter(|| {
            compose::draw_frame_panel(&mut canvas, &frame, crop, layout.panels[0], layout.cell)
        })
    });
    c.bench_function("compose: model panel", |b| {
        b.iter(|| {
            compose::draw_chw_panel(
                &mut canvas,
                black_box(&y),
                (1, 28, 28),
                layout.panels[1],
                layout.cell,
            )
        })
    });
    c.bench_function("compose: overlay", |b| {
        b.iter(|| hud.draw(&mut canvas, layout.hud_y))
    });
}

criterion_group!(
    benches,
    preprocess,
    inference,
    anomaly_score,
    compose_and_overlay,
    compose_parts
);
criterion_main!(benches);
