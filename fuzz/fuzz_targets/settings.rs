#![no_main]
//! board.toml profiles and the service's config.toml.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = ign_edge::board::parse(&text);
    let _ = toml::from_str::<ign_edge::app::service::ServiceConfig>(&text);
});
