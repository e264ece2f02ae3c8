#![no_main]
//! `.npy` arrays: the header check and the reader behind it.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ign_edge::npy::read_f32(data);
});
