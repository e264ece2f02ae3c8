//! File output that never leaves a half-written file behind.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` atomically: write a temporary file beside it, fsync, rename over
/// the target, fsync the folder. A crash or a full disk leaves the old file intact.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("out.bin");
/// ign_core::fsio::atomic_write(&p, b"hello").unwrap();
/// assert_eq!(std::fs::read(&p).unwrap(), b"hello");
/// ```
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = write_temp(path, bytes)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| {
            format!(
                "{}: cannot replace (read-only folder?); the previous file, if any, is untouched",
                path.display()
            )
        });
    }
    sync_parent(path);
    Ok(())
}

/// Write several files as one: every new file is written and synced to a temporary name
/// first; only when all are there do they replace the old ones, and if a replacement fails
/// the ones already replaced are put back. A model and its noise variant never end up from
/// two different exports.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let (a, b) = (dir.path().join("m.onnx"), dir.path().join("m.noise.onnx"));
/// ign_core::fsio::atomic_write_all(&[(&a, b"one"), (&b, b"two")]).unwrap();
/// assert_eq!(std::fs::read(&b).unwrap(), b"two");
/// ```
pub fn atomic_write_all(files: &[(&Path, &[u8])]) -> Result<()> {
    write_all_with(files, |from, to| std::fs::rename(from, to))
}

/// [`atomic_write_all`] with the rename step given (tests inject failures through it).
fn write_all_with(
    files: &[(&Path, &[u8])],
    rename: impl Fn(&Path, &Path) -> std::io::Result<()>,
) -> Result<()> {
    let mut temps = Vec::new();
    let cleanup = |temps: &[std::path::PathBuf]| {
        for t in temps {
            let _ = std::fs::remove_file(t);
        }
    };
    for (path, bytes) in files {
        match write_temp(path, bytes) {
            Ok(t) => temps.push(t),
            Err(e) => {
                cleanup(&temps);
                return Err(e);
            }
        }
    }
    // replace in order, each old file kept under a second name (a hard link) until all are
    // done: a rename replaces its target atomically, so a failed one leaves it as it was
    let mut done: Vec<(&Path, Option<std::path::PathBuf>)> = Vec::new();
    let mut failure = None;
    for ((path, _), tmp) in files.iter().zip(&temps) {
        let backup = if path.exists() {
            match sibling(path, "bak").and_then(|b| std::fs::hard_link(path, &b).map(|_| b)) {
                Ok(b) => Some(b),
                Err(e) => {
                    failure = Some((path, e));
                    break;
                }
            }
        } else {
            None
        };
        if let Err(e) = rename(tmp, path) {
            if let Some(b) = &backup {
                let _ = std::fs::remove_file(b);
            }
            failure = Some((path, e));
            break;
        }
        done.push((path, backup));
    }
    if let Some((path, e)) = failure {
        for (p, backup) in done.iter().rev() {
            match backup {
                Some(b) => {
                    let _ = rename(b, p);
                }
                None => {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        cleanup(&temps);
        return Err(e).with_context(|| {
            format!(
                "{}: cannot replace (disk full or read-only?); the previous files are untouched",
                path.display()
            )
        });
    }
    for (_, backup) in done {
        if let Some(b) = backup {
            let _ = std::fs::remove_file(b);
        }
    }
    sync_parent(files[0].0);
    Ok(())
}

/// A unique, not yet existing name beside `path`: `.NAME.KIND-PID-N`.
fn sibling(path: &Path, kind: &str) -> std::io::Result<std::path::PathBuf> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    Ok(parent(path).join(format!(".{name}.{kind}-{}-{n}", std::process::id())))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn sync_parent(path: &Path) {
    if let Ok(d) = std::fs::File::open(parent(path)) {
        let _ = d.sync_all();
    }
}

/// Write `bytes` to a new temporary file beside `path` (created exclusively) and sync it.
fn write_temp(path: &Path, bytes: &[u8]) -> Result<std::path::PathBuf> {
    let dir = parent(path);
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    }
    let tmp = sibling(path, "tmp")?;
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| {
            format!(
                "{}: cannot write {} bytes (disk full or read-only?); the previous file, if any, is untouched",
                path.display(),
                bytes.len()
            )
        });
    }
    Ok(tmp)
}

/// Whether `a` and `b` name the same existing file (`models/m.onnx` and `./models/../models/m.onnx`,
/// or a link to it).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// An RGB image encoded as PNG.
pub fn png_bytes(img: &image::RgbImage) -> Result<Vec<u8>> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)?;
    Ok(buf.into_inner())
}

/// Encode an RGB image as PNG and write it atomically.
pub fn save_png(path: &Path, img: &image::RgbImage) -> Result<()> {
    let bytes = png_bytes(img).with_context(|| format!("{}: cannot encode PNG", path.display()))?;
    atomic_write(path, &bytes)
}

/// Encode RGB frames as an endlessly looping animated GIF (`delay_ms` per frame) and write it
/// atomically.
pub fn save_gif(path: &Path, frames: &[image::RgbImage], delay_ms: u32) -> Result<()> {
    use image::codecs::gif::{GifEncoder, Repeat};
    let mut buf = Vec::new();
    {
        let mut enc = GifEncoder::new_with_speed(&mut buf, 10);
        enc.set_repeat(Repeat::Infinite)?;
        for f in frames {
            let rgba = image::DynamicImage::ImageRgb8(f.clone()).to_rgba8();
            let delay = image::Delay::from_numer_denom_ms(delay_ms.max(20), 1);
            enc.encode_frame(image::Frame::from_parts(rgba, 0, 0, delay))
                .with_context(|| format!("{}: cannot encode GIF", path.display()))?;
        }
    }
    atomic_write(path, &buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_between_the_two_files_of_a_pair_leaves_the_old_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("m.onnx"), dir.path().join("m.noise.onnx"));
        atomic_write_all(&[(&a, b"old a"), (&b, b"old b")]).unwrap();
        // the second file's replacement fails: the first is put back
        let calls = std::cell::Cell::new(0);
        let failing = |from: &Path, to: &Path| {
            calls.set(calls.get() + 1);
            if to == b {
                Err(std::io::Error::other("injected"))
            } else {
                std::fs::rename(from, to)
            }
        };
        let e = write_all_with(&[(&a, b"new a"), (&b, b"new b")], failing).unwrap_err();
        assert!(format!("{e:#}").contains("m.noise.onnx"), "{e:#}");
        assert!(calls.get() >= 3);
        assert_eq!(std::fs::read(&a).unwrap(), b"old a");
        assert_eq!(std::fs::read(&b).unwrap(), b"old b");
        // and no temporary or backup file is left behind
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // without the failure both are replaced
        atomic_write_all(&[(&a, b"new a"), (&b, b"new b")]).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"new a");
        assert_eq!(std::fs::read(&b).unwrap(), b"new b");
    }
}

/// Longest file a secret (a token, a password) is read from: it is one line.
pub const MAX_SECRET_FILE: u64 = 64 << 10;

/// A secret read from a file or the environment (`what`: "http token", "mqtt password";
/// `noun`: "token", "password"), for messages.
#[derive(Clone, Copy, Debug)]
pub struct SecretKind {
    pub what: &'static str,
    pub noun: &'static str,
}

/// The secret on the first line of `path` (trimmed), for [`SecretKind`] `kind`: refused when the
/// file is larger than [`MAX_SECRET_FILE`] or the line is empty, with a warning when every user
/// may read it.
pub fn secret_from_file(path: &Path, kind: SecretKind) -> Result<String> {
    let p = path.display();
    let SecretKind { what, noun } = kind;
    let meta =
        std::fs::metadata(path).with_context(|| format!("{p}: cannot read the {what} file"))?;
    if meta.len() > MAX_SECRET_FILE {
        anyhow::bail!(
            "{p}: {} bytes, not a {what} file (the {noun} is its first line)",
            meta.len()
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o004 != 0 {
            log::warn!("{p} is readable by every user; chmod o-r it");
        }
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{p}: cannot read the {what} file"))?;
    let secret = text.lines().next().unwrap_or_default().trim();
    if secret.is_empty() {
        anyhow::bail!(
            "{p}: the first line is empty; the {what} file holds the {noun} on its first line"
        );
    }
    Ok(secret.to_string())
}

/// The secret in the environment variable `name` (its value `v`): refused when empty or not
/// UTF-8.
pub fn secret_from_env(v: std::ffi::OsString, name: &str, kind: SecretKind) -> Result<String> {
    let v = v
        .into_string()
        .map_err(|_| anyhow::anyhow!("{name} is not valid UTF-8"))?;
    if v.is_empty() {
        anyhow::bail!("{name} is set but empty: give a {}, or unset it", kind.noun);
    }
    Ok(v)
}
