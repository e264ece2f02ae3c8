//! ONNX external data: the weights of a model kept in a file beside it (`model.onnx.data`), as
//! PyTorch's default exporter writes them since 2.9. They are read into the graph at load, so
//! that everything after it (the BatchNorm fold, the quantizer, the writers) sees one
//! self-contained model, and a quantized copy is one file.
//!
//! The files are hostile input like the model: a location must name a file inside the model's
//! folder (no absolute path, no `..`, no link out of it), and every offset and length is
//! checked against the file's size and against the tensor's own size before anything is read.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use tract_onnx::pb;

/// `TensorProto.data_location` of a tensor whose bytes are in another file.
const EXTERNAL: i32 = 1;

/// Whether any initializer of `model` keeps its bytes in another file.
pub fn has_external(model: &pb::ModelProto) -> bool {
    model
        .graph
        .as_ref()
        .is_some_and(|g| g.initializer.iter().any(is_external))
}

fn is_external(t: &pb::TensorProto) -> bool {
    t.data_location == Some(EXTERNAL)
}

/// Read every external initializer of `model` (loaded from `path`) into its `raw_data`;
/// returns the bytes read.
pub fn inline(path: &Path, model: &mut pb::ModelProto) -> Result<u64> {
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    let mut files: HashMap<String, (File, u64)> = HashMap::new();
    let mut total = 0u64;
    let Some(graph) = model.graph.as_mut() else {
        return Ok(0);
    };
    for t in graph.initializer.iter_mut().filter(|t| is_external(t)) {
        let entry = |key: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.clone())
        };
        let location = entry("location").with_context(|| {
            format!("initializer '{}': external data without a location", t.name)
        })?;
        let number = |key: &str| -> Result<Option<u64>> {
            entry(key)
                .map(|v| {
                    v.parse::<u64>().with_context(|| {
                        format!(
                            "initializer '{}': external {key} '{v}' is not a number",
                            t.name
                        )
                    })
                })
                .transpose()
        };
        let offset = number("offset")?.unwrap_or(0);
        let length = number("length")?;
        if !files.contains_key(&location) {
            let file_path =
                resolve(dir, &location).with_context(|| format!("initializer '{}'", t.name))?;
            let f = File::open(&file_path).with_context(|| {
                format!(
                    "{}: cannot open the external data of initializer '{}'; keep it beside the model",
                    file_path.display(),
                    t.name
                )
            })?;
            let size = f.metadata()?.len();
            files.insert(location.clone(), (f, size));
        }
        let (file, size) = files.get_mut(&location).expect("inserted above");
        let length = length.unwrap_or_else(|| size.saturating_sub(offset));
        if offset.checked_add(length).is_none_or(|end| end > *size) {
            bail!(
                "initializer '{}': external data at offset {offset}, length {length} runs past the end of {location} ({size} bytes); the model and its data file do not match",
                t.name
            );
        }
        if let Some(want) = tensor_bytes(t) {
            if want != length {
                bail!(
                    "initializer '{}': its shape {:?} needs {want} bytes, the external data gives {length}",
                    t.name,
                    t.dims
                );
            }
        }
        if total.saturating_add(length) > crate::limits::MAX_EXTERNAL_DATA {
            bail!(
                "initializer '{}': the external data would pass {} GiB, more than this runtime reads for one model",
                t.name,
                crate::limits::MAX_EXTERNAL_DATA >> 30
            );
        }
        let mut buf = vec![0u8; length as usize];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut buf)
            .with_context(|| format!("reading the external data of '{}'", t.name))?;
        t.raw_data = buf;
        t.data_location = None;
        t.external_data.clear();
        total += length;
    }
    Ok(total)
}

/// The file that `location` names, which must lie inside `dir`.
fn resolve(dir: &Path, location: &str) -> Result<PathBuf> {
    let rel = Path::new(location);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        bail!("external data location '{location}' must be a file inside the model's folder");
    }
    let joined = dir.join(rel);
    let (real_dir, real) = (dir.canonicalize(), joined.canonicalize());
    match (real_dir, real) {
        (Ok(d), Ok(f)) if f.starts_with(&d) => Ok(f),
        (Ok(_), Ok(_)) => {
            bail!("external data location '{location}' leads out of the model's folder (a link?)")
        }
        _ => bail!(
            "{}: no such external data file; keep it beside the model",
            joined.display()
        ),
    }
}

/// The bytes of `t`'s data by its type and shape (`None` for types of no fixed width).
fn tensor_bytes(t: &pb::TensorProto) -> Option<u64> {
    use pb::tensor_proto::DataType as D;
    let width = match D::try_from(t.data_type).ok()? {
        D::Float | D::Int32 | D::Uint32 => 4,
        D::Double | D::Int64 | D::Uint64 => 8,
        D::Float16 | D::Bfloat16 | D::Int16 | D::Uint16 => 2,
        D::Int8 | D::Uint8 | D::Bool => 1,
        _ => return None,
    };
    t.dims
        .iter()
        .try_fold(width, |n: u64, &d| n.checked_mul(u64::try_from(d).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(
        name: &str,
        dims: &[i64],
        location: &str,
        offset: u64,
        length: u64,
    ) -> pb::TensorProto {
        let kv = |k: &str, v: String| pb::StringStringEntryProto {
            key: k.into(),
            value: v,
        };
        pb::TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            data_location: Some(EXTERNAL),
            external_data: vec![
                kv("location", location.into()),
                kv("offset", offset.to_string()),
                kv("length", length.to_string()),
            ],
            ..Default::default()
        }
    }

    fn model(ts: Vec<pb::TensorProto>) -> pb::ModelProto {
        pb::ModelProto {
            graph: Some(pb::GraphProto {
                initializer: ts,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn external_tensors_are_read_in_and_bad_locations_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..64u8).collect();
        std::fs::write(dir.path().join("m.onnx.data"), &data).unwrap();
        let path = dir.path().join("m.onnx");
        let mut m = model(vec![
            tensor("a", &[2, 2], "m.onnx.data", 0, 16),
            tensor("b", &[3], "m.onnx.data", 16, 12),
        ]);
        assert!(has_external(&m));
        assert_eq!(inline(&path, &mut m).unwrap(), 28);
        assert!(!has_external(&m));
        let g = m.graph.unwrap();
        assert_eq!(g.initializer[0].raw_data, data[..16]);
        assert_eq!(g.initializer[1].raw_data, data[16..28]);
        assert!(g.initializer[1].external_data.is_empty());

        let err =
            |t: pb::TensorProto| format!("{:#}", inline(&path, &mut model(vec![t])).unwrap_err());
        assert!(err(tensor("c", &[16], "m.onnx.data", 8, 64)).contains("runs past the end"));
        assert!(err(tensor("d", &[16], "m.onnx.data", 0, 60)).contains("needs 64 bytes"));
        assert!(
            err(tensor("e", &[1], "../m.onnx.data", 0, 4)).contains("inside the model's folder")
        );
        assert!(err(tensor("f", &[1], "/etc/passwd", 0, 4)).contains("inside the model's folder"));
        assert!(err(tensor("g", &[1], "gone.data", 0, 4)).contains("no such external data file"));
        assert!(err(tensor("h", &[1], "m.onnx.data", u64::MAX, 4)).contains("runs past the end"));
        // a 5 GiB data file (sparse: no disk used) is refused before anything is allocated
        let big = std::fs::File::create(dir.path().join("big.data")).unwrap();
        big.set_len(5 << 30).unwrap();
        let huge = tensor("j", &[5 << 28], "big.data", 0, 5 << 30);
        assert!(err(huge).contains("would pass 4 GiB"));
        #[cfg(unix)]
        {
            let outside = tempfile::tempdir().unwrap();
            std::fs::write(outside.path().join("x.data"), [0u8; 4]).unwrap();
            std::os::unix::fs::symlink(outside.path().join("x.data"), dir.path().join("link.data"))
                .unwrap();
            assert!(err(tensor("i", &[1], "link.data", 0, 4)).contains("out of the model's folder"));
        }
    }
}
