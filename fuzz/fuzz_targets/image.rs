#![no_main]
//! Pictures from files, cameras (MJPEG) and clients, within their decoder limits.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ign_edge::imaging::decode_image(data, None, ign_edge::limits::frame_limits());
    let _ = ign_edge::pipeline::source::convert::mjpeg_to_rgb(data);
});
