//! Frame sources, one file each, chosen by a spec string (`--source SPEC`):
//! `test`, `file:<image|folder|video.y4m>`, `y4m:-` (stdin) or `y4m:<path>`.

pub mod file;
pub mod test_pattern;
pub mod y4m;

use anyhow::{bail, Result};

use super::frame::Frame;

/// Something that produces frames.
pub trait Source: Send {
    /// What it is, for the summary.
    fn describe(&self) -> String;
    /// The next frame; `Ok(None)` at the end of a finite stream.
    fn next_frame(&mut self) -> Result<Option<Frame>>;
    /// A live source (a camera) runs at its own pace and the loop drops stale frames; a
    /// recorded one (files) is read at the loop's pace, so nothing is dropped.
    fn live(&self) -> bool {
        false
    }
}

/// Options shared by sources.
#[derive(Clone, Debug, Default)]
pub struct SourceOptions {
    /// Start again at the end of a file or folder.
    pub looping: bool,
    /// Frame rate of the synthetic `test` source (0: as fast as possible).
    pub fps: f64,
}

/// Open a source from its spec.
pub fn open(spec: &str, opts: &SourceOptions) -> Result<Box<dyn Source>> {
    let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
    match kind {
        "test" => Ok(Box::new(test_pattern::TestPattern::new(160, 120, opts.fps))),
        "file" if !arg.is_empty() => file::open(std::path::Path::new(arg), opts),
        "y4m" if arg == "-" => Ok(Box::new(y4m::Y4mSource::new(
            Box::new(std::io::BufReader::new(std::io::stdin())),
            "stdin".into(),
        )?)),
        "y4m" if !arg.is_empty() => file::open(std::path::Path::new(arg), opts),
        _ => bail!(
            "{spec}: unknown source; use test, file:<image|folder|video.y4m>, or y4m:- (stdin)"
        ),
    }
}
