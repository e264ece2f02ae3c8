#![no_main]
//! IDX files, raw and gzipped.
use ign_edge::idx::{parse_idx, read_idx_from, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_idx(data, IDX_IMAGES_MAGIC);
    let _ = parse_idx(data, IDX_LABELS_MAGIC);
    let _ = read_idx_from(flate2::read::GzDecoder::new(data), IDX_IMAGES_MAGIC, None);
});
