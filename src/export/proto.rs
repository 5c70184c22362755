//! The subset of the ONNX protobuf schema (`onnx.proto`, IR version 8) that ember writes, as hand-written
//! prost messages. Field numbers are those of the official schema; `oneof` members are written as optional
//! fields, which encode identically on the wire.

/// A whole `.onnx` file: the graph, the opsets it imports, and metadata.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// ONNX IR version the file follows (ember writes 8).
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    /// Tool that wrote the file (`ember`).
    #[prost(string, optional, tag = "2")]
    pub producer_name: Option<String>,
    /// Version of that tool (ember's crate version).
    #[prost(string, optional, tag = "3")]
    pub producer_version: Option<String>,
    /// Reverse-DNS namespace of the model; ember leaves it unset.
    #[prost(string, optional, tag = "4")]
    pub domain: Option<String>,
    /// Version of the model itself; ember leaves it unset.
    #[prost(int64, optional, tag = "5")]
    pub model_version: Option<i64>,
    /// Human-readable description of the model.
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// The computation graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Operator sets the graph uses; ember imports only the default domain at the chosen opset.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Free-form key/value metadata (Ultralytics' `names`, `stride`, `imgsz`, ..., as Python literals).
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// One operator set a model imports.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// Operator domain; the empty string is the default `ai.onnx` domain.
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    /// Opset version imported from that domain.
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// One key/value pair of [`ModelProto::metadata_props`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// Property name.
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// Property value.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// A computation graph: nodes, constant tensors, and typed inputs and outputs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// Operator nodes in topological order.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Graph name (ember writes `ember_<model name>`).
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    /// Constant tensors (weights and constants), referenced by name from node inputs.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Human-readable description of the graph.
    #[prost(string, optional, tag = "10")]
    pub doc_string: Option<String>,
    /// Graph inputs with their element types and shapes (initializers are not listed here).
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs with their element types and shapes.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// One operator invocation in a graph.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// Names of the values consumed, in the operator's input order; `""` marks an omitted optional input.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Names of the values produced; each name is assigned exactly once in a graph.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name, for diagnostics only (ember writes `/` and the first output name).
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    /// Operator name within `domain`, e.g. `Conv`.
    #[prost(string, optional, tag = "4")]
    pub op_type: Option<String>,
    /// The operator's attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Operator domain; `None` or empty is the default `ai.onnx` domain.
    #[prost(string, optional, tag = "7")]
    pub domain: Option<String>,
}

/// `AttributeProto.AttributeType`.
pub mod attribute_type {
    /// A single float, in [`AttributeProto::f`].
    pub const FLOAT: i32 = 1;
    /// A single 64-bit integer, in [`AttributeProto::i`].
    pub const INT: i32 = 2;
    /// A byte string, in [`AttributeProto::s`].
    pub const STRING: i32 = 3;
    /// A list of 64-bit integers, in [`AttributeProto::ints`].
    pub const INTS: i32 = 7;
}

/// A named operator attribute; `type` says which one of the value fields holds the value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// Attribute name as the operator defines it, e.g. `kernel_shape`.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The value of a `FLOAT` attribute.
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    /// The value of an `INT` attribute.
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// The value of a `STRING` attribute, as UTF-8 bytes.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    /// The value of an `INTS` attribute.
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    /// Which value field is set: one of the [`attribute_type`] constants.
    #[prost(int32, optional, tag = "20")]
    pub r#type: Option<i32>,
}

/// `TensorProto.DataType`.
pub mod data_type {
    /// 32-bit IEEE float.
    pub const FLOAT: i32 = 1;
    /// Signed 64-bit integer.
    pub const INT64: i32 = 7;
    /// 16-bit IEEE half-precision float.
    pub const FLOAT16: i32 = 10;
}

/// A constant tensor (a graph initializer), stored as raw little-endian bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// Shape, outermost axis first; empty for a scalar.
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// Element type: one of the [`data_type`] constants.
    #[prost(int32, optional, tag = "2")]
    pub data_type: Option<i32>,
    /// Name by which nodes refer to the tensor.
    #[prost(string, optional, tag = "8")]
    pub name: Option<String>,
    /// The elements, row-major, each in little-endian byte order.
    #[prost(bytes = "vec", optional, tag = "9")]
    pub raw_data: Option<Vec<u8>>,
}

/// Name and type of a graph input or output.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// Value name, as nodes refer to it.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The value's type (a tensor type, for ember).
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// The type of a value; ember writes only tensor types.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// The `tensor_type` member of the `value` oneof.
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeProtoTensor>,
}

/// `TypeProto.Tensor`: a tensor's element type and shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProtoTensor {
    /// Element type: one of the [`data_type`] constants.
    #[prost(int32, optional, tag = "1")]
    pub elem_type: Option<i32>,
    /// Shape; fixed or symbolic per axis.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// A tensor shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// One entry per axis, outermost first.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `TensorShapeProto.Dimension`: exactly one of `dim_value` and `dim_param` is set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dimension {
    /// Fixed size of the axis.
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    /// Symbolic name of a dynamic axis (e.g. `batch`, `height`).
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}
