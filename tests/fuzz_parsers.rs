//! Every file parser against random and mutated inputs: at least 10,000 per parser, from a
//! seed corpus of valid files (`fuzz/corpus/` holds the same seeds for the cargo-fuzz targets,
//! which run the same parsers for as long as one likes on nightly). No input may panic, abort
//! or make a parser allocate more than a bound: a counting allocator records the largest
//! single allocation each parser asked for.
//!
//! Deterministic (fixed seeds), bounded in count and time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Cursor;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The allocator of this test binary: records, per thread while armed, the largest single
/// allocation (or reallocation) asked for.
struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    let _ = ARMED.try_with(|a| {
        if a.get() {
            let _ = PEAK.try_with(|p| p.set(p.get().max(size)));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Inputs per parser.
const CASES: usize = 10_000;

/// One mutation of `seed`: bit flips, interesting values written over header fields,
/// truncation, insertion, long digit runs for text formats, or plain random bytes.
fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    let rounds = rng.random_range(1..=4);
    for _ in 0..rounds {
        let len = v.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] = [0, 1, 0x7f, 0x80, 0xff][rng.random_range(0..5)];
            }
            2 if len >= 4 => {
                // a size field: big values, both byte orders, near the front where headers are
                let i = rng.random_range(0..len.min(64) - 3);
                let x: u32 =
                    [u32::MAX, 0x7fff_ffff, 0x1000_0000, 100_000, 0][rng.random_range(0..5)];
                let b = if rng.random() {
                    x.to_be_bytes()
                } else {
                    x.to_le_bytes()
                };
                v[i..i + 4].copy_from_slice(&b);
            }
            3 => v.truncate(rng.random_range(0..=len)),
            4 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                v.splice(i..i, bytes);
            }
            5 => {
                // text formats: a huge number where a small one was
                let i = rng.random_range(0..=len.min(128));
                let digits =
                    ["99999", "4294967296", "100000000000", "-1", "0"][rng.random_range(0..5)];
                v.splice(i..i, digits.bytes());
            }
            6 if len > 8 => {
                // repeat a chunk
                let a = rng.random_range(0..len - 4);
                let b = rng.random_range(a..len.min(a + 64));
                let chunk = v[a..b].to_vec();
                v.splice(b..b, chunk);
            }
            _ => {
                let n = rng.random_range(0..256);
                v = (0..n).map(|_| rng.random()).collect();
            }
        }
    }
    v
}

/// Feed `CASES` inputs mutated from `seeds` to `parse`; assert no panic and a largest single
/// allocation under `max_alloc` bytes.
fn fuzz(name: &str, seeds: &[Vec<u8>], max_alloc: usize, parse: impl Fn(&[u8])) {
    let mut rng = StdRng::seed_from_u64(0x16e_d9e);
    let mut ok_seeds = 0;
    for s in seeds {
        // the seeds themselves parse (the corpus is valid)
        parse(s);
        ok_seeds += 1;
    }
    assert!(ok_seeds > 0, "{name}: no seed");
    let started = std::time::Instant::now();
    for case in 0..CASES {
        let seed = &seeds[case % seeds.len()];
        let input = mutate(&mut rng, seed);
        PEAK.with(|p| p.set(0));
        ARMED.with(|a| a.set(true));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(&input)));
        ARMED.with(|a| a.set(false));
        let peak = PEAK.with(|p| p.get());
        let head: Vec<String> = input.iter().take(48).map(|b| format!("{b:02x}")).collect();
        assert!(
            r.is_ok(),
            "{name}: case {case} panicked on {} bytes starting {}",
            input.len(),
            head.join("")
        );
        assert!(
            peak <= max_alloc,
            "{name}: case {case} allocated {peak} bytes at once (bound {max_alloc}) for {} bytes of input starting {}",
            input.len(),
            head.join("")
        );
    }
    eprintln!(
        "{name}: {CASES} inputs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

const MIB: usize = 1 << 20;

fn idx_images() -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5];
    v.extend((0..60u8).map(|i| i * 4));
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_parser_survives_hostile_files() {
    use ign_edge::idx::{parse_idx, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC};
    let labels = vec![0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 4];
    fuzz("idx", &[idx_images(), labels], MIB, |b| {
        let _ = parse_idx(b, IDX_IMAGES_MAGIC);
        let _ = parse_idx(b, IDX_LABELS_MAGIC);
    });
}

#[test]
fn gzipped_idx_parser_survives_hostile_files() {
    use ign_edge::idx::{read_idx_from, IDX_IMAGES_MAGIC};
    // a gzip bomb's worth of zeros behind a header that declares 1 GiB is read only as far
    // as the stream goes, growing with it
    fuzz("idx.gz", &[gzip(&idx_images())], MIB, |b| {
        let _ = read_idx_from(flate2::read::GzDecoder::new(b), IDX_IMAGES_MAGIC, None);
    });
}

fn model_info() -> ign_edge::model::ModelInfo {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    ign_edge::model::Model::load(&root.join("tests/fixtures/tiny28.onnx"))
        .unwrap()
        .info
}

#[test]
fn npy_parser_survives_hostile_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let info = model_info();
    let seeds = ["x28.npy", "y28_k1.npy", "bad_dtype.npy", "bad_shape.npy"]
        .map(|f| std::fs::read(root.join("tests/fixtures").join(f)).unwrap());
    fuzz("npy", &seeds, MIB, |b| {
        let _ = ign_edge::inputs::parse_npy(b, &info);
    });
}

fn y4m_stream() -> Vec<u8> {
    let mut v = b"YUV4MPEG2 W4 H2 F30:1 Ip A1:1 C420jpeg XYSCSS=420JPEG\n".to_vec();
    for f in 0..2u8 {
        v.extend(b"FRAME\n");
        v.extend([16, 235, 16 + f, 100, 16, 235, 128, 128, 128, 128, 128, 240]);
    }
    v
}

#[test]
fn y4m_parser_survives_hostile_streams() {
    use ign_edge::pipeline::source::{y4m::Y4mSource, Source};
    let mono = b"YUV4MPEG2 W3 H3 Cmono\nFRAME\n123456789".to_vec();
    let c444 = b"YUV4MPEG2 W2 H1 C444\nFRAME\n123456".to_vec();
    fuzz("y4m", &[y4m_stream(), mono, c444], MIB, |b| {
        if let Ok(mut s) = Y4mSource::new(Box::new(Cursor::new(b.to_vec())), "fuzz".into()) {
            for _ in 0..4 {
                if !matches!(s.next_frame(), Ok(Some(_))) {
                    break;
                }
            }
        }
    });
}

fn small_image() -> image::RgbImage {
    image::RgbImage::from_fn(12, 9, |x, y| image::Rgb([x as u8 * 20, y as u8 * 25, 128]))
}

#[test]
fn image_decoder_survives_hostile_files() {
    let png = ign_edge::fsio::png_bytes(&small_image()).unwrap();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode_image(&small_image())
        .unwrap();
    // the bounds for pictures from cameras and clients: 4096x4096 and 64 MiB
    let limits = ign_edge::limits::frame_limits();
    fuzz("image", &[png, jpeg.clone()], 65 * MIB, |b| {
        let _ = ign_edge::imaging::decode_image(b, None, limits.clone());
    });
    fuzz("mjpeg", &[jpeg], 65 * MIB, |b| {
        let _ = ign_edge::pipeline::source::convert::mjpeg_to_rgb(b);
    });
}

#[test]
fn settings_parsers_survive_hostile_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let boards: Vec<Vec<u8>> = ["rpi4", "rpi5", "rk3588"]
        .iter()
        .map(|b| std::fs::read(root.join("boards").join(b).join("board.toml")).unwrap())
        .collect();
    fuzz("board.toml", &boards, MIB, |b| {
        let _ = ign_edge::board::parse(&String::from_utf8_lossy(b));
    });
    let config = std::fs::read(root.join("boards/package/config.toml")).unwrap();
    fuzz("config.toml", &[config], MIB, |b| {
        let _ =
            toml::from_str::<ign_edge::app::service::ServiceConfig>(&String::from_utf8_lossy(b));
    });
}
