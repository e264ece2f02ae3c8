//! `file:<path>`: one image (repeated), a folder of images (in order), or a `.y4m` video;
//! `--loop` starts again at the end.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{y4m::Y4mSource, Source, SourceOptions};
use crate::imaging;
use crate::pipeline::frame::Frame;

/// Images from files.
pub struct FileSource {
    files: Vec<PathBuf>,
    next: usize,
    looping: bool,
    seq: u64,
    label: String,
}

/// A `.y4m` file that can loop.
struct LoopingY4m {
    path: PathBuf,
    inner: Y4mSource,
    looping: bool,
    seq: u64,
}

impl Source for LoopingY4m {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        let mut next = self.inner.next_frame()?;
        if next.is_none() && self.looping {
            self.inner = open_y4m(&self.path)?;
            next = self.inner.next_frame()?;
        }
        // numbered across loops, so the loop sees one continuous stream
        Ok(next.map(|mut f| {
            f.seq = self.seq;
            self.seq += 1;
            f
        }))
    }
}

fn open_y4m(path: &Path) -> Result<Y4mSource> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("{}: cannot open video", path.display()))?;
    Y4mSource::new(
        Box::new(std::io::BufReader::new(f)),
        path.display().to_string(),
    )
}

/// Open `path` as a source.
pub fn open(path: &Path, opts: &SourceOptions) -> Result<Box<dyn Source>> {
    if !path.exists() {
        bail!(
            "{}: no such file or folder (file: takes an image, a folder of images or a .y4m video)",
            path.display()
        );
    }
    if path
        .extension()
        .map(|e| e.eq_ignore_ascii_case("y4m"))
        .unwrap_or(false)
    {
        return Ok(Box::new(LoopingY4m {
            path: path.to_path_buf(),
            inner: open_y4m(path)?,
            looping: opts.looping,
            seq: 0,
        }));
    }
    let (files, looping) = if path.is_dir() {
        let f = imaging::list_images(path)?;
        if f.is_empty() {
            bail!("{}: no PNG or JPEG image in this folder", path.display());
        }
        (f, opts.looping)
    } else {
        // a single image repeats: a still camera
        (vec![path.to_path_buf()], true)
    };
    Ok(Box::new(FileSource {
        files,
        next: 0,
        looping,
        seq: 0,
        label: path.display().to_string(),
    }))
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!("file {} ({} image(s))", self.label, self.files.len())
    }

    fn next_frame(&mut self) -> Result<Option<Frame>> {
        if self.next >= self.files.len() {
            if !self.looping {
                return Ok(None);
            }
            self.next = 0;
        }
        let t0 = Instant::now();
        let img = imaging::open_image(&self.files[self.next])?;
        self.next += 1;
        let f = Frame::ready(img.to_rgb8(), self.seq, t0);
        self.seq += 1;
        Ok(Some(f))
    }
}

/// `file:<image|folder|video.y4m>`: a recorded source, read at the loop's pace.
pub fn open_spec(arg: &str, opts: &SourceOptions) -> Result<Box<dyn Source>> {
    if arg.is_empty() {
        anyhow::bail!(
            "file: give an image, a folder or a .y4m video, e.g. --source file:drawings/"
        );
    }
    open(Path::new(arg), opts)
}
