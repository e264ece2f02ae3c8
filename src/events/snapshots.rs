//! Snapshots: the composed picture (camera | f | heatmap) of an event's start, encoded
//! ([`SnapshotFormat`]: JPEG by default, PNG) and, with `--events-dir`, written atomically
//! into a folder kept under a size cap ([`Folder`]): the oldest snapshots are deleted first.
//! All of it runs on the events' own thread, never on the loop's.

use anyhow::{bail, Context, Result};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::event::Snapshot;

/// How snapshots are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotFormat {
    /// JPEG, quality 85 (a 480×200 canvas: some 20 to 40 kB).
    #[default]
    #[serde(alias = "jpg")]
    Jpeg,
    /// PNG: lossless, several times larger.
    Png,
    /// No snapshots.
    None,
}

impl SnapshotFormat {
    pub const NAMES: &'static [&'static str] = &["jpeg", "png", "none"];

    /// Its name, as `--events-snapshot` takes it.
    pub fn name(self) -> &'static str {
        match self {
            SnapshotFormat::Jpeg => "jpeg",
            SnapshotFormat::Png => "png",
            SnapshotFormat::None => "none",
        }
    }

    /// The file extension and MIME type (none for [`SnapshotFormat::None`]).
    fn kind(self) -> Option<(&'static str, &'static str)> {
        match self {
            SnapshotFormat::Jpeg => Some(("jpg", "image/jpeg")),
            SnapshotFormat::Png => Some(("png", "image/png")),
            SnapshotFormat::None => None,
        }
    }
}

impl std::str::FromStr for SnapshotFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "jpeg" | "jpg" => SnapshotFormat::Jpeg,
            "png" => SnapshotFormat::Png,
            "none" => SnapshotFormat::None,
            _ => bail!("{s}: unknown snapshot format; use jpeg, png or none"),
        })
    }
}

/// `canvas` encoded as `format`, named after the event `id` (none for no snapshots).
pub fn encode(canvas: &RgbImage, format: SnapshotFormat, id: &str) -> Result<Option<Snapshot>> {
    let Some((ext, mime)) = format.kind() else {
        return Ok(None);
    };
    let mut bytes = Vec::with_capacity(64 << 10);
    match format {
        SnapshotFormat::Png => {
            bytes = ign_core::fsio::png_bytes(canvas)?;
        }
        _ => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85)
            .encode_image(canvas)
            .context("encoding a snapshot")?,
    }
    Ok(Some(Snapshot {
        file_name: format!("{id}.{ext}"),
        mime,
        bytes,
    }))
}

/// The events folder: snapshots written atomically, their total kept under `max_bytes`.
#[derive(Clone, Debug)]
pub struct Folder {
    dir: PathBuf,
    max_bytes: u64,
}

impl Folder {
    /// The folder `dir` (created if missing), holding at most `max_bytes` of snapshots.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Folder> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--events-dir {}: cannot create the folder", dir.display()))?;
        Ok(Folder {
            dir: dir.to_path_buf(),
            max_bytes,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write `snap` as its file name, deleting the oldest snapshots first to make room.
    pub fn write(&self, snap: &Snapshot) -> Result<()> {
        let size = snap.bytes.len() as u64;
        if size > self.max_bytes {
            bail!(
                "{}: {size} bytes is more than the whole folder may hold (--events-max-mb)",
                snap.file_name
            );
        }
        self.make_room(size)?;
        ign_core::fsio::atomic_write(&self.dir.join(&snap.file_name), &snap.bytes)
    }

    /// Delete the oldest snapshots (by modification time, then name) until `room` more bytes
    /// fit under the cap; the files deleted, oldest first. Only snapshots (`evt-*.jpg`,
    /// `evt-*.png`) count and are deleted: anything else in the folder is left alone.
    pub fn make_room(&self, room: u64) -> Result<Vec<PathBuf>> {
        let mut files = self.snapshots()?;
        let mut total: u64 = files.iter().map(|f| f.2).sum();
        files.sort();
        let mut deleted = Vec::new();
        for (_, path, size) in files {
            if total + room <= self.max_bytes {
                break;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => total -= size,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => total -= size,
                Err(e) => {
                    return Err(e).with_context(|| format!("{}: cannot delete", path.display()))
                }
            }
            deleted.push(path);
        }
        Ok(deleted)
    }

    /// Every snapshot in the folder: modification time, path, size.
    fn snapshots(&self) -> Result<Vec<(SystemTime, PathBuf, u64)>> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir)
            .with_context(|| format!("{}: cannot list", self.dir.display()))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours =
                name.starts_with("evt-") && (name.ends_with(".jpg") || name.ends_with(".png"));
            let Ok(meta) = e.metadata() else { continue };
            if ours && meta.is_file() {
                let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                out.push((mtime, e.path(), meta.len()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn snap(name: &str, n: usize) -> Snapshot {
        Snapshot {
            file_name: name.into(),
            mime: "image/jpeg",
            bytes: vec![7; n],
        }
    }

    /// Set `path`'s modification time to `secs` after 1970.
    fn age(path: &Path, secs: u64) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn the_cap_deletes_the_oldest_snapshots_first_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let folder = Folder::open(&dir.path().join("events"), 1000).unwrap();
        let d = folder.dir().to_path_buf();
        std::fs::write(d.join("notes.txt"), vec![0; 5000]).unwrap();
        // written in one order, aged in another: age decides, not the name
        for (name, secs) in [("evt-a.jpg", 300), ("evt-b.jpg", 100), ("evt-c.png", 200)] {
            folder.write(&snap(name, 300)).unwrap();
            age(&d.join(name), secs);
        }
        // 900 of 1000 bytes: another 300 needs the oldest (b) gone
        folder.write(&snap("evt-d.jpg", 300)).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["evt-a.jpg", "evt-c.png", "evt-d.jpg", "notes.txt"]);
        // 700 bytes more: c (200) then a (300) go, d (newest) stays
        age(&d.join("evt-d.jpg"), 400);
        let gone = folder.make_room(700).unwrap();
        assert_eq!(gone, [d.join("evt-c.png"), d.join("evt-a.jpg")]);
        assert!(folder.write(&snap("evt-huge.jpg", 1001)).is_err());
    }

    #[test]
    fn jpeg_and_png_snapshots_decode_to_the_canvas_size() {
        let canvas = RgbImage::from_fn(48, 20, |x, y| image::Rgb([x as u8 * 5, y as u8 * 9, 0]));
        for (format, ext) in [(SnapshotFormat::Jpeg, "jpg"), (SnapshotFormat::Png, "png")] {
            let s = encode(&canvas, format, "evt-1-1").unwrap().unwrap();
            assert_eq!(s.file_name, format!("evt-1-1.{ext}"));
            let back = image::load_from_memory(&s.bytes).unwrap();
            assert_eq!((back.width(), back.height()), (48, 20));
        }
        assert!(encode(&canvas, SnapshotFormat::None, "x")
            .unwrap()
            .is_none());
    }
}
