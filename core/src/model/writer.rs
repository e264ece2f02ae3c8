//! A small ONNX graph writer (prost types from `tract_onnx::pb`; no protoc, no Python).
//!
//! Used by `ign-train export` and by `ign-edge quantize` to write standard ONNX files.
//!
//! ```
//! use ign_core::model::writer::{OnnxWriter, Dim, attr_float};
//! let mut w = OnnxWriter::new("double");
//! w.input_f32("x", &[Dim::param("N"), Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(2)]);
//! let two = w.initializer_f32("two", &[1], &[2.0]);
//! w.node("Mul", &["x", &two], &["y"], vec![]);
//! w.output_f32("y", &[Dim::param("N"), Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(2)]);
//! w.metadata("ign.precision", "fp32");
//! let bytes = w.to_bytes();
//! assert!(bytes.len() > 20);
//! ```

use prost::Message;
use tract_onnx::pb;

/// One dimension of an input or output: a fixed size or a named symbol (a dynamic axis).
#[derive(Clone, Debug)]
pub enum Dim {
    Fixed(usize),
    Param(String),
}

impl Dim {
    /// A named dynamic dimension.
    pub fn param(name: &str) -> Dim {
        Dim::Param(name.to_string())
    }
}

/// The opset we write (Conv, ConvTranspose, QLinearConv, DepthToSpace... all stable there).
pub const OPSET: i64 = 13;

/// Builds a `ModelProto` node by node.
pub struct OnnxWriter {
    graph: pb::GraphProto,
    metadata: Vec<pb::StringStringEntryProto>,
    producer: String,
}

fn value_info(name: &str, elem: pb::tensor_proto::DataType, dims: &[Dim]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: String::new(),
            value: Some(match d {
                Dim::Fixed(n) => Value::DimValue(*n as i64),
                Dim::Param(p) => Value::DimParam(p.clone()),
            }),
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

impl OnnxWriter {
    /// An empty graph named `name`.
    pub fn new(name: &str) -> Self {
        OnnxWriter {
            graph: pb::GraphProto {
                name: name.to_string(),
                ..Default::default()
            },
            metadata: Vec::new(),
            producer: "ign-edge".into(),
        }
    }

    /// Set the producer name written in the file.
    pub fn producer(&mut self, name: &str) -> &mut Self {
        self.producer = name.to_string();
        self
    }

    /// Declare a float32 graph input.
    pub fn input_f32(&mut self, name: &str, dims: &[Dim]) {
        self.graph
            .input
            .push(value_info(name, pb::tensor_proto::DataType::Float, dims));
    }

    /// Declare a float32 graph output.
    pub fn output_f32(&mut self, name: &str, dims: &[Dim]) {
        self.graph
            .output
            .push(value_info(name, pb::tensor_proto::DataType::Float, dims));
    }

    /// Declare a float32 graph output whose shape the reader infers.
    pub fn output_f32_any_shape(&mut self, name: &str) {
        let mut v = value_info(name, pb::tensor_proto::DataType::Float, &[]);
        if let Some(pb::type_proto::Value::TensorType(t)) =
            v.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.shape = None;
        }
        self.graph.output.push(v);
    }

    fn push_init(&mut self, t: pb::TensorProto) -> String {
        let name = t.name.clone();
        self.graph.initializer.push(t);
        name
    }

    /// Add a float32 constant; returns its name.
    pub fn initializer_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        assert_eq!(dims.iter().product::<usize>(), data.len(), "{name}: size");
        self.push_init(pb::TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        })
    }

    /// Add a float16 constant (bits as `u16`); returns its name.
    pub fn initializer_f16(&mut self, name: &str, dims: &[usize], bits: &[u16]) -> String {
        assert_eq!(dims.iter().product::<usize>(), bits.len(), "{name}: size");
        self.push_init(pb::TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Float16 as i32,
            raw_data: bits.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        })
    }

    /// Add an int8 constant; returns its name.
    pub fn initializer_i8(&mut self, name: &str, dims: &[usize], data: &[i8]) -> String {
        assert_eq!(dims.iter().product::<usize>(), data.len(), "{name}: size");
        self.push_init(pb::TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Int8 as i32,
            raw_data: data.iter().map(|&v| v as u8).collect(),
            ..Default::default()
        })
    }

    /// Add a uint8 constant; returns its name.
    pub fn initializer_u8(&mut self, name: &str, dims: &[usize], data: &[u8]) -> String {
        self.push_init(pb::TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Uint8 as i32,
            raw_data: data.to_vec(),
            ..Default::default()
        })
    }

    /// Add an int32 constant; returns its name.
    pub fn initializer_i32(&mut self, name: &str, dims: &[usize], data: &[i32]) -> String {
        self.push_init(pb::TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Int32 as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        })
    }

    /// Add an int64 constant; returns its name.
    pub fn initializer_i64(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        self.push_init(pb::TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Int64 as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        })
    }

    /// Add a node.
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        outputs: &[&str],
        attribute: Vec<pb::AttributeProto>,
    ) {
        let name = format!("{}_{}", op_type, self.graph.node.len());
        self.graph.node.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name,
            op_type: op_type.into(),
            attribute,
            ..Default::default()
        });
    }

    /// Add a `metadata_props` entry.
    pub fn metadata(&mut self, key: &str, value: &str) {
        self.metadata.push(pb::StringStringEntryProto {
            key: key.into(),
            value: value.into(),
        });
    }

    /// The finished model.
    pub fn into_model(self) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: self.producer,
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(self.graph),
            metadata_props: self.metadata,
            ..Default::default()
        }
    }

    /// The serialized ONNX bytes.
    pub fn to_bytes(self) -> Vec<u8> {
        self.into_model().encode_to_vec()
    }
}

/// An integer attribute.
pub fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

/// A list-of-integers attribute.
pub fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

/// A float attribute.
pub fn attr_float(name: &str, f: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

/// A string attribute.
pub fn attr_string(name: &str, s: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}
