//! The subset of `onnx.proto` the exporters write, as hand-written prost messages.
//!
//! Tag numbers are those of the official `onnx/onnx.proto`. Fields the exporters never set
//! are left out (unknown fields are skipped by readers, so this subset decodes real models
//! too). The singular value fields of `AttributeProto` are `optional` (proto2 presence):
//! ONNX Runtime checks `has_i()` / `has_f()`, and proto3 would drop an attribute value of 0.

/// `onnx.ModelProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "4")]
    pub domain: String,
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `onnx.StringStringEntryProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `onnx.OperatorSetIdProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `onnx.GraphProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(string, tag = "10")]
    pub doc_string: String,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "16")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `onnx.NodeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(string, tag = "7")]
    pub domain: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "6")]
    pub doc_string: String,
}

/// `onnx.AttributeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "21")]
    pub ref_attr_name: String,
    #[prost(string, tag = "13")]
    pub doc_string: String,
    #[prost(enumeration = "attribute_proto::AttributeType", tag = "20")]
    pub r#type: i32,
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(message, optional, tag = "6")]
    pub g: Option<GraphProto>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub graphs: Vec<GraphProto>,
}

pub mod attribute_proto {
    /// `onnx.AttributeProto.AttributeType`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum AttributeType {
        Undefined = 0,
        Float = 1,
        Int = 2,
        String = 3,
        Tensor = 4,
        Graph = 5,
        SparseTensor = 11,
        TypeProto = 13,
        Floats = 6,
        Ints = 7,
        Strings = 8,
        Tensors = 9,
        Graphs = 10,
        SparseTensors = 12,
        TypeProtos = 14,
    }
}

/// `onnx.ValueInfoProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    #[prost(string, tag = "3")]
    pub doc_string: String,
}

/// `onnx.TypeProto` (tensor types only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    #[prost(oneof = "type_proto::Value", tags = "1")]
    pub value: Option<type_proto::Value>,
    #[prost(string, tag = "6")]
    pub denotation: String,
}

pub mod type_proto {
    /// `onnx.TypeProto.Tensor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<super::TensorShapeProto>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(message, tag = "1")]
        TensorType(Tensor),
    }
}

/// `onnx.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

pub mod tensor_shape_proto {
    /// `onnx.TensorShapeProto.Dimension`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
        #[prost(string, tag = "3")]
        pub denotation: String,
    }

    pub mod dimension {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(int64, tag = "1")]
            DimValue(i64),
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

/// `onnx.TensorProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(string, tag = "12")]
    pub doc_string: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
}

pub mod tensor_proto {
    /// `onnx.TensorProto.DataType`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DataType {
        Undefined = 0,
        Float = 1,
        Uint8 = 2,
        Int8 = 3,
        Uint16 = 4,
        Int16 = 5,
        Int32 = 6,
        Int64 = 7,
        String = 8,
        Bool = 9,
        Float16 = 10,
        Double = 11,
        Uint32 = 12,
        Uint64 = 13,
        Complex64 = 14,
        Complex128 = 15,
        Bfloat16 = 16,
    }
}

impl AttributeProto {
    pub fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_proto::AttributeType::Int as i32,
            i: Some(v),
            ..Default::default()
        }
    }

    pub fn float(name: &str, v: f32) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_proto::AttributeType::Float as i32,
            f: Some(v),
            ..Default::default()
        }
    }

    pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_proto::AttributeType::Ints as i32,
            ints: v.to_vec(),
            ..Default::default()
        }
    }

    pub fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_proto::AttributeType::String as i32,
            s: Some(v.as_bytes().to_vec()),
            ..Default::default()
        }
    }

    pub fn tensor(name: &str, t: TensorProto) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_proto::AttributeType::Tensor as i32,
            t: Some(t),
            ..Default::default()
        }
    }

    /// A subgraph (an `If` node's branches).
    pub fn graph(name: &str, g: GraphProto) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_proto::AttributeType::Graph as i32,
            g: Some(g),
            ..Default::default()
        }
    }
}

impl TensorProto {
    /// A float32 tensor stored little-endian in `raw_data`.
    pub fn from_f32(
        name: &str,
        dims: &[usize],
        data: impl IntoIterator<Item = f32>,
    ) -> TensorProto {
        let raw_data: Vec<u8> = data.into_iter().flat_map(f32::to_le_bytes).collect();
        TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: tensor_proto::DataType::Float as i32,
            raw_data,
            ..Default::default()
        }
    }

    /// An int64 tensor (shapes, axes), stored in `int64_data`.
    pub fn from_i64(name: &str, dims: &[usize], data: &[i64]) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: tensor_proto::DataType::Int64 as i32,
            int64_data: data.to_vec(),
            ..Default::default()
        }
    }
}

impl ValueInfoProto {
    /// A tensor value of element type `elem` whose dims are fixed (`Ok`) or symbolic (`Err`).
    pub fn tensor(name: &str, elem: tensor_proto::DataType, dims: &[Result<i64, String>]) -> Self {
        use tensor_shape_proto::{Dimension, dimension::Value};
        let dim = dims
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Ok(v) => Value::DimValue(*v),
                    Err(p) => Value::DimParam(p.clone()),
                }),
                denotation: String::new(),
            })
            .collect();
        Self::typed(name, elem, Some(TensorShapeProto { dim }))
    }

    /// A tensor value of element type `elem` whose shape is not declared (a subgraph output
    /// whose branches may differ in shape).
    pub fn unshaped(name: &str, elem: tensor_proto::DataType) -> Self {
        Self::typed(name, elem, None)
    }

    fn typed(name: &str, elem: tensor_proto::DataType, shape: Option<TensorShapeProto>) -> Self {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: elem as i32,
                    shape,
                })),
                denotation: String::new(),
            }),
            doc_string: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Hand-encoded bytes pin the tag numbers (field key = tag << 3 | wire type).
    #[test]
    fn tags_match_onnx_proto() {
        let a = AttributeProto::int("k", 0);
        // name(1, len) "k"; i(3, varint) 0 kept thanks to presence; type(20, varint) INT=2.
        assert_eq!(
            a.encode_to_vec(),
            vec![0x0a, 1, b'k', 0x18, 0, 0xa0, 0x01, 2]
        );

        let op = OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        };
        assert_eq!(op.encode_to_vec(), vec![0x10, 17]);

        let m = ModelProto {
            ir_version: 8,
            opset_import: vec![op],
            graph: Some(GraphProto::default()),
            ..Default::default()
        };
        // ir_version(1) ; graph(7, len 0) ; opset_import(8, len 2)
        assert_eq!(m.encode_to_vec(), vec![0x08, 8, 0x3a, 0, 0x42, 2, 0x10, 17]);

        let t = TensorProto::from_i64("t", &[2], &[1, 0]);
        // dims(1, packed) ; data_type(2) INT64=7 ; int64_data(7, packed) ; name(8)
        assert_eq!(
            t.encode_to_vec(),
            vec![0x0a, 1, 2, 0x10, 7, 0x3a, 2, 1, 0, 0x42, 1, b't']
        );

        let v = ValueInfoProto::tensor(
            "x",
            tensor_proto::DataType::Float,
            &[Err("b".into()), Ok(0)],
        );
        // name(1) ; type(2){ tensor_type(1){ elem_type(1)=1 ; shape(2){ dim(1){param(2)} dim(1){value(1)=0} } } }
        assert_eq!(
            v.encode_to_vec(),
            vec![
                0x0a, 1, b'x', 0x12, 15, 0x0a, 13, 0x08, 1, 0x12, 9, 0x0a, 3, 0x12, 1, b'b', 0x0a,
                2, 0x08, 0
            ]
        );

        let n = NodeProto {
            input: vec!["a".into()],
            output: vec!["b".into()],
            name: "n".into(),
            op_type: "Relu".into(),
            domain: String::new(),
            attribute: vec![AttributeProto::ints("p", &[1])],
            doc_string: String::new(),
        };
        // input(1) output(2) name(3) op_type(4) attribute(5){name(1) ints(8, packed) type(20)=INTS 7}
        assert_eq!(
            n.encode_to_vec(),
            vec![
                0x0a, 1, b'a', 0x12, 1, b'b', 0x1a, 1, b'n', 0x22, 4, b'R', b'e', b'l', b'u', 0x2a,
                9, 0x0a, 1, b'p', 0x42, 1, 1, 0xa0, 0x01, 7
            ]
        );
        let round = NodeProto::decode(n.encode_to_vec().as_slice()).unwrap();
        assert_eq!(round, n);
    }
}
