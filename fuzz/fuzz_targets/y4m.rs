#![no_main]
//! YUV4MPEG2 streams: header and a few frames.
use ign_edge::pipeline::source::{y4m::Y4mSource, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let r = Box::new(std::io::Cursor::new(data.to_vec()));
    if let Ok(mut s) = Y4mSource::new(r, "fuzz".into()) {
        for _ in 0..4 {
            if !matches!(s.next_frame(), Ok(Some(_))) {
                break;
            }
        }
    }
});
