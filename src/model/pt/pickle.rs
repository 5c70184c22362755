//! A pickle reader that never executes anything: protocols 2 to 5, as `torch.save` writes them.
//!
//! Globals (`GLOBAL`, `STACK_GLOBAL`) stay names. Calling one (`REDUCE`, `NEWOBJ`) yields an opaque
//! [`Object`] holding the name and its arguments, and `BUILD` stores the state on it, so a pickled
//! `nn.Module` comes out as an object whose state is its `__dict__` (`_modules`, `_parameters`, ...).
//! A few callables are understood because checkpoints are made of them: `collections.OrderedDict` and
//! `builtins.dict` (a dict), `builtins.set` / `frozenset`, `_codecs.encode` (bytes), and torch's
//! `_rebuild_tensor_v2` / `_rebuild_parameter` (a [`TensorRef`] into a storage named by `BINPERSID`).
//! Containers are shared (`Rc<RefCell>`), as in Python: an object memoised before its `BUILD` or
//! `SETITEMS` is seen complete through every later `GET`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};

/// The element type of a torch storage, from its class name (`torch.HalfStorage`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDtype {
    /// `torch.float64` (`DoubleStorage`).
    F64,
    /// `torch.float32` (`FloatStorage`).
    F32,
    /// `torch.float16` (`HalfStorage`).
    F16,
    /// `torch.bfloat16` (`BFloat16Storage`).
    BF16,
    /// `torch.int64` (`LongStorage`).
    I64,
    /// `torch.int32` (`IntStorage`).
    I32,
    /// `torch.int16` (`ShortStorage`).
    I16,
    /// `torch.int8` (`CharStorage`).
    I8,
    /// `torch.uint8` (`ByteStorage`; also an `UntypedStorage`, whose tensor then names its own dtype).
    U8,
    /// `torch.bool` (`BoolStorage`), one byte per element.
    Bool,
    /// float8 e4m3fn (torch.float8_e4m3fn), stored through an untyped storage.
    F8E4M3,
}

impl StorageDtype {
    /// From a storage class name without its module (`HalfStorage`); `None` for a storage type ember cannot read.
    pub fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Self::F64,
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            // Bytes; the tensor names its dtype (`_rebuild_tensor_v3`).
            "UntypedStorage" => Self::U8,
            _ => return None,
        })
    }

    /// From a dtype global (`torch.float16`), as `_rebuild_tensor_v3` passes it.
    pub fn from_torch_dtype(name: &str) -> Option<Self> {
        Some(match name.strip_prefix("torch.")? {
            "float64" | "double" => Self::F64,
            "float32" | "float" => Self::F32,
            "float16" | "half" => Self::F16,
            "bfloat16" => Self::BF16,
            "int64" | "long" => Self::I64,
            "int32" | "int" => Self::I32,
            "int16" | "short" => Self::I16,
            "int8" => Self::I8,
            "uint8" => Self::U8,
            "bool" => Self::Bool,
            "float8_e4m3fn" => Self::F8E4M3,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool | Self::F8E4M3 => 1,
        }
    }

    /// Whether the type holds floating-point values (read as weights; integer tensors are only listed by key).
    pub fn is_float(self) -> bool {
        matches!(self, Self::F64 | Self::F32 | Self::F16 | Self::BF16 | Self::F8E4M3)
    }
}

/// A storage named by a persistent id: its entry `data/<key>` in the archive holds `numel` elements.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// The storage's name in the archive: its bytes are entry `data/<key>`.
    pub key: String,
    /// Element type of the storage class (`U8` for an untyped storage).
    pub dtype: StorageDtype,
    /// Number of elements the persistent id declares (not checked against the entry's length).
    pub numel: usize,
}

/// A tensor as `_rebuild_tensor_v2` / `_v3` describes it: a strided view of a storage, in elements of `dtype`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage the view reads from.
    pub storage: StorageRef,
    /// The storage's type, or the dtype `_rebuild_tensor_v3` names for an untyped storage.
    pub dtype: StorageDtype,
    /// Storage offset of the first element, in elements of `dtype` (not bytes).
    pub offset: usize,
    /// Size of each dimension, outermost first.
    pub shape: Vec<usize>,
    /// Step per dimension, in elements of `dtype`; same length as `shape`.
    pub stride: Vec<usize>,
}

/// The result of calling a global that is not understood: nothing runs, the call is recorded.
#[derive(Debug, Default)]
pub struct Object {
    /// `module.name` of the class or function.
    pub class: String,
    /// The positional arguments of the call (`REDUCE`'s tuple, or `NEWOBJ`'s `cls.__new__` arguments).
    pub args: Vec<Value>,
    /// What `BUILD` gave (an instance's `__dict__` for plain Python classes).
    pub state: Option<Value>,
    /// Items a `SETITEMS` / `APPENDS` added to it (dict and list subclasses).
    pub items: Vec<(Value, Value)>,
}

/// A pickled value.
#[derive(Debug, Clone)]
pub enum Value {
    /// Python `None`.
    None,
    /// Python `bool`.
    Bool(bool),
    /// Python `int`; integers that do not fit 64 bits are an unpickling error.
    Int(i64),
    /// Python `float`.
    Float(f64),
    /// Python `str`.
    Str(String),
    /// Python `bytes` / `bytearray` (and protocol-2 byte strings, Python 2's `str`).
    Bytes(Vec<u8>),
    /// Python `tuple` (immutable, so not in a `RefCell`).
    Tuple(Rc<Vec<Value>>),
    /// Python `list`, shared and mutable as later opcodes (`APPENDS`) fill it.
    List(Rc<RefCell<Vec<Value>>>),
    /// Keys of any type, in insertion order.
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// Python `set` / `frozenset`, items in insertion order (no deduplication).
    Set(Rc<RefCell<Vec<Value>>>),
    /// A global, never resolved: `module.name`.
    Global(String),
    /// The recorded call of a global that is not understood (a pickled class instance, e.g. an `nn.Module`).
    Object(Rc<RefCell<Object>>),
    /// A torch storage from a persistent id (`BINPERSID`), before a `_rebuild_tensor` call views it.
    Storage(StorageRef),
    /// A tensor (or `nn.Parameter`) as a view of a storage; the data stays in the archive.
    Tensor(Rc<TensorRef>),
}

impl Value {
    /// The string of a `Str`; `None` for any other kind.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer of an `Int`, or 0/1 for a `Bool` (as Python treats `bool`); `None` for any other kind.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// The value under string key `key` of a dict.
    pub fn get(&self, key: &str) -> Option<Value> {
        match self {
            Value::Dict(d) => d.borrow().iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v.clone()),
            _ => None,
        }
    }

    /// What the value is, for error messages.
    pub fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::List(_) => "list".into(),
            Value::Dict(_) => "dict".into(),
            Value::Set(_) => "set".into(),
            Value::Global(g) => format!("global {g}"),
            Value::Object(o) => o.borrow().class.clone(),
            Value::Storage(_) => "storage".into(),
            Value::Tensor(_) => "tensor".into(),
        }
    }
}

/// How a persistent id (`BINPERSID`) is turned into a value.
fn persistent_load(pid: Value) -> Result<Value> {
    let Value::Tuple(parts) = &pid else { bail!("persistent id is a {}, not a tuple", pid.kind()) };
    match parts.as_slice() {
        [Value::Str(tag), Value::Global(class), key, _location, numel] if tag == "storage" => {
            let short = class.rsplit('.').next().unwrap_or(class);
            let dtype = StorageDtype::from_class(short).ok_or_else(|| anyhow!("unsupported storage type {class}"))?;
            let key = match key {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                other => bail!("storage key is a {}", other.kind()),
            };
            let numel = numel.as_int().filter(|n| *n >= 0).ok_or_else(|| anyhow!("bad storage size"))?;
            Ok(Value::Storage(StorageRef { key, dtype, numel: numel as usize }))
        }
        _ => bail!("unsupported persistent id (not a torch storage)"),
    }
}

fn usize_list(v: &Value, what: &str) -> Result<Vec<usize>> {
    let items: Vec<Value> = match v {
        Value::Tuple(t) => t.as_ref().clone(),
        Value::List(l) => l.borrow().clone(),
        other => bail!("{what} is a {}, not a tuple", other.kind()),
    };
    items
        .iter()
        .map(|i| i.as_int().filter(|n| *n >= 0).map(|n| n as usize).ok_or_else(|| anyhow!("bad {what}")))
        .collect()
}

fn tuple_items(v: &Value) -> Result<Vec<Value>> {
    match v {
        Value::Tuple(t) => Ok(t.as_ref().clone()),
        other => bail!("call arguments are a {}, not a tuple", other.kind()),
    }
}

/// `REDUCE`: the callables a checkpoint is made of get their meaning, everything else an opaque object.
fn call(class: &str, args: Vec<Value>) -> Result<Value> {
    Ok(match class {
        "collections.OrderedDict" | "builtins.dict" if args.is_empty() => Value::Dict(Default::default()),
        "builtins.set" | "builtins.frozenset" => {
            let items = match args.first() {
                None => Vec::new(),
                Some(Value::List(l)) => l.borrow().clone(),
                Some(Value::Tuple(t)) => t.as_ref().clone(),
                Some(Value::Set(s)) => s.borrow().clone(),
                Some(other) => bail!("{class} of a {}", other.kind()),
            };
            Value::Set(Rc::new(RefCell::new(items)))
        }
        // How protocol 2 pickles bytes: `_codecs.encode(text, 'latin1')`.
        "_codecs.encode" => match args.as_slice() {
            [Value::Str(s), ..] => Value::Bytes(s.chars().map(|c| c as u32 as u8).collect()),
            _ => bail!("_codecs.encode with unexpected arguments"),
        },
        "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" | "torch._utils._rebuild_tensor_v3" => {
            match args.as_slice() {
                [Value::Storage(storage), offset, shape, stride, rest @ ..] => {
                    // v3: (storage, offset, size, stride, requires_grad, hooks, dtype, metadata).
                    let dtype = match rest.get(2) {
                        Some(Value::Global(name)) if class.ends_with("_v3") => StorageDtype::from_torch_dtype(name)
                            .ok_or_else(|| anyhow!("unsupported tensor dtype {name}"))?,
                        _ => storage.dtype,
                    };
                    let t = TensorRef {
                        storage: storage.clone(),
                        dtype,
                        offset: offset.as_int().filter(|o| *o >= 0).ok_or_else(|| anyhow!("bad storage offset"))?
                            as usize,
                        shape: usize_list(shape, "tensor shape")?,
                        stride: usize_list(stride, "tensor stride")?,
                    };
                    if t.shape.len() != t.stride.len() {
                        bail!("tensor shape {:?} and stride {:?} differ in rank", t.shape, t.stride);
                    }
                    Value::Tensor(Rc::new(t))
                }
                _ => bail!("{class} without a storage"),
            }
        }
        // nn.Parameter(data): the tensor itself is what matters.
        "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => match args.first() {
            Some(t @ Value::Tensor(_)) => t.clone(),
            _ => bail!("{class} of something that is not a tensor"),
        },
        _ => Value::Object(Rc::new(RefCell::new(Object { class: class.to_string(), args, ..Default::default() }))),
    })
}

/// `BUILD`: set an object's state (merged into a dict when it is one).
fn build(target: &Value, state: Value) -> Result<()> {
    match target {
        Value::Object(o) => {
            let mut o = o.borrow_mut();
            let merged = match (&o.state, &state) {
                (Some(Value::Dict(old)), Value::Dict(new)) if !Rc::ptr_eq(old, new) => {
                    let new = new.borrow().clone();
                    old.borrow_mut().extend(new);
                    true
                }
                _ => false,
            };
            if !merged {
                o.state = Some(state);
            }
        }
        Value::Dict(d) => {
            if let Value::Dict(new) = &state {
                if Rc::ptr_eq(d, new) {
                    return Ok(());
                }
                let new = new.borrow().clone();
                d.borrow_mut().extend(new);
            }
        }
        // A tensor's state (backward hooks, Python attributes) is of no use to weights.
        Value::Tensor(_) => {}
        other => bail!("BUILD on a {}", other.kind()),
    }
    Ok(())
}

fn set_items(target: &Value, pairs: Vec<(Value, Value)>) -> Result<()> {
    match target {
        Value::Dict(d) => {
            let mut d = d.borrow_mut();
            for (k, v) in pairs {
                // Python replaces an existing key; strings and ints are the keys that repeat in practice.
                let same = |a: &Value| match (a, &k) {
                    (Value::Str(x), Value::Str(y)) => x == y,
                    (Value::Int(x), Value::Int(y)) => x == y,
                    _ => false,
                };
                match d.iter_mut().find(|(old, _)| same(old)) {
                    Some(slot) => slot.1 = v,
                    None => d.push((k, v)),
                }
            }
        }
        Value::Object(o) => o.borrow_mut().items.extend(pairs),
        other => bail!("SETITEM on a {}", other.kind()),
    }
    Ok(())
}

fn append_items(target: &Value, items: Vec<Value>) -> Result<()> {
    match target {
        Value::List(l) => l.borrow_mut().extend(items),
        Value::Set(s) => s.borrow_mut().extend(items),
        Value::Object(o) => o.borrow_mut().items.extend(items.into_iter().map(|v| (Value::None, v))),
        other => bail!("APPEND on a {}", other.kind()),
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| anyhow!("pickle ends early (wanted {n} bytes at offset {})", self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
    fn len(&mut self, n: u64) -> Result<usize> {
        usize::try_from(n).ok().filter(|&n| n <= self.bytes.len()).ok_or_else(|| anyhow!("length {n} too large"))
    }
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.bytes[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| anyhow!("pickle ends inside a text line"))?;
        self.pos += n + 1;
        std::str::from_utf8(&rest[..n]).context("text line is not UTF-8")
    }
    /// The length prefix of a sized text or bytes opcode (1, 4 or 8 bytes, little-endian).
    fn sized(&mut self, op: OpCode) -> Result<usize> {
        use OpCode::*;
        let n = match op {
            ShortBinUnicode | ShortBinBytes | ShortBinString => self.u8()? as u64,
            BinUnicode | BinBytes | BinString => self.u32()? as u64,
            _ => self.u64()?,
        };
        self.len(n)
    }

    fn utf8(&mut self, n: usize) -> Result<Value> {
        Ok(Value::Str(String::from_utf8(self.take(n)?.to_vec()).context("string is not UTF-8")?))
    }
}

/// Two's-complement little-endian integer (`LONG1`, `LONG4`); only 64-bit values are kept.
fn long_value(bytes: &[u8]) -> Result<Value> {
    if bytes.is_empty() {
        return Ok(Value::Int(0));
    }
    if bytes.len() > 8 {
        bail!("integer of {} bytes is too large", bytes.len());
    }
    let fill = if bytes[bytes.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
    let mut buf = [fill; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    Ok(Value::Int(i64::from_le_bytes(buf)))
}

/// The pickle opcodes ember reads, named as in CPython's `pickletools` (protocols 0 to 5; `EXT1..4`, `INST`, `OBJ`,
/// `PERSID` text ids and out-of-band buffers are refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpCode {
    Proto,
    Frame,
    Stop,
    Mark,
    Pop,
    PopMark,
    Dup,
    None,
    NewTrue,
    NewFalse,
    Int,
    Long,
    BinInt,
    BinInt1,
    BinInt2,
    Long1,
    Long4,
    Float,
    BinFloat,
    BinUnicode,
    ShortBinUnicode,
    BinUnicode8,
    Unicode,
    BinBytes,
    BinString,
    ShortBinBytes,
    ShortBinString,
    BinBytes8,
    ByteArray8,
    String,
    EmptyTuple,
    Tuple,
    Tuple1,
    Tuple2,
    Tuple3,
    EmptyList,
    List,
    Append,
    Appends,
    EmptyDict,
    Dict,
    SetItem,
    SetItems,
    EmptySet,
    AddItems,
    FrozenSet,
    Global,
    StackGlobal,
    Reduce,
    NewObj,
    NewObjEx,
    Build,
    Put,
    BinPut,
    LongBinPut,
    Memoize,
    Get,
    BinGet,
    LongBinGet,
    BinPersId,
    PersId,
}

impl OpCode {
    fn from_byte(b: u8) -> Option<OpCode> {
        use OpCode::*;
        Some(match b {
            0x80 => Proto,
            0x95 => Frame,
            b'.' => Stop,
            b'(' => Mark,
            b'0' => Pop,
            b'1' => PopMark,
            b'2' => Dup,
            b'N' => None,
            0x88 => NewTrue,
            0x89 => NewFalse,
            b'I' => Int,
            b'L' => Long,
            b'J' => BinInt,
            b'K' => BinInt1,
            b'M' => BinInt2,
            0x8a => Long1,
            0x8b => Long4,
            b'F' => Float,
            b'G' => BinFloat,
            b'X' => BinUnicode,
            0x8c => ShortBinUnicode,
            0x8d => BinUnicode8,
            b'V' => Unicode,
            b'B' => BinBytes,
            b'T' => BinString,
            b'C' => ShortBinBytes,
            b'U' => ShortBinString,
            0x8e => BinBytes8,
            0x96 => ByteArray8,
            b'S' => String,
            b')' => EmptyTuple,
            b't' => Tuple,
            0x85 => Tuple1,
            0x86 => Tuple2,
            0x87 => Tuple3,
            b']' => EmptyList,
            b'l' => List,
            b'a' => Append,
            b'e' => Appends,
            b'}' => EmptyDict,
            b'd' => Dict,
            b's' => SetItem,
            b'u' => SetItems,
            0x8f => EmptySet,
            0x90 => AddItems,
            0x91 => FrozenSet,
            b'c' => Global,
            0x93 => StackGlobal,
            b'R' => Reduce,
            0x81 => NewObj,
            0x92 => NewObjEx,
            b'b' => Build,
            b'p' => Put,
            b'q' => BinPut,
            b'r' => LongBinPut,
            0x94 => Memoize,
            b'g' => Get,
            b'h' => BinGet,
            b'j' => LongBinGet,
            b'Q' => BinPersId,
            b'P' => PersId,
            _ => return Option::None,
        })
    }
}

/// The unpickling machine: the input, the stack with its marks, and the memo.
struct Machine<'a> {
    r: Reader<'a>,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl Machine<'_> {
    fn pop(&mut self) -> Result<Value> {
        self.stack.pop().ok_or_else(|| anyhow!("pickle stack underflow"))
    }

    /// Everything above the last MARK.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| anyhow!("no MARK on the stack"))?;
        if m > self.stack.len() {
            bail!("MARK above the stack top");
        }
        Ok(self.stack.split_off(m))
    }

    fn top(&self, op: OpCode) -> Result<&Value> {
        self.stack.last().ok_or_else(|| anyhow!("{op:?} on an empty stack"))
    }

    /// Runs one opcode; `Some` is the unpickled value, at `STOP`.
    fn step(&mut self, op: OpCode) -> Result<Option<Value>> {
        use OpCode::*;
        match op {
            Proto => {
                let proto = self.r.u8()?;
                if proto > 5 {
                    bail!("pickle protocol {proto} is not supported");
                }
            }
            Frame => {
                self.r.u64()?; // a length hint only
            }
            Stop => return self.pop().context("STOP with an empty stack").map(Some),
            Mark => self.marks.push(self.stack.len()),
            Pop => {
                self.pop()?;
            }
            PopMark => {
                self.pop_mark()?;
            }
            Dup => {
                let top = self.top(op)?.clone();
                self.stack.push(top);
            }
            EmptyTuple | Tuple | Tuple1 | Tuple2 | Tuple3 => self.tuple(op)?,
            EmptyList | List | Append | Appends | EmptySet | AddItems | FrozenSet => self.sequence(op)?,
            EmptyDict | Dict | SetItem | SetItems => self.dict(op)?,
            Global | StackGlobal | Reduce | NewObj | NewObjEx | Build | BinPersId | PersId => self.object(op)?,
            Put | BinPut | LongBinPut | Memoize | Get | BinGet | LongBinGet => self.memo_op(op)?,
            _ => {
                let v = self.scalar(op)?;
                self.stack.push(v);
            }
        }
        Ok(Option::None)
    }

    /// The opcodes that push one value read from the input: none, booleans, numbers, text and bytes.
    fn scalar(&mut self, op: OpCode) -> Result<Value> {
        use OpCode::*;
        let r = &mut self.r;
        Ok(match op {
            None => Value::None,
            NewTrue => Value::Bool(true),
            NewFalse => Value::Bool(false),
            Int => match r.line()? {
                "01" => Value::Bool(true),
                "00" => Value::Bool(false),
                line => Value::Int(line.parse().with_context(|| format!("INT {line:?}"))?),
            },
            Long => {
                let line = r.line()?;
                Value::Int(line.trim_end_matches('L').parse().with_context(|| format!("LONG {line:?}"))?)
            }
            BinInt => Value::Int(r.u32()? as i32 as i64),
            BinInt1 => Value::Int(r.u8()? as i64),
            BinInt2 => Value::Int(r.u16()? as i64),
            Long1 => {
                let n = r.u8()? as usize;
                long_value(r.take(n)?)?
            }
            Long4 => {
                let n = r.u32()? as u64;
                let n = r.len(n)?;
                long_value(r.take(n)?)?
            }
            Float => {
                let line = r.line()?;
                Value::Float(line.parse().with_context(|| format!("FLOAT {line:?}"))?)
            }
            BinFloat => Value::Float(f64::from_be_bytes(r.take(8)?.try_into()?)),
            BinUnicode | ShortBinUnicode | BinUnicode8 => {
                let n = r.sized(op)?;
                r.utf8(n)?
            }
            Unicode => Value::Str(r.line()?.to_string()),
            String => Value::Str(r.line()?.trim_matches(|c| c == '\'' || c == '"').to_string()),
            BinBytes | BinString | ShortBinBytes | ShortBinString | BinBytes8 | ByteArray8 => {
                let n = r.sized(op)?;
                Value::Bytes(r.take(n)?.to_vec())
            }
            other => bail!("{other:?} is not a value opcode"),
        })
    }

    fn tuple(&mut self, op: OpCode) -> Result<()> {
        let items = match op {
            OpCode::EmptyTuple => Vec::new(),
            OpCode::Tuple => self.pop_mark()?,
            _ => {
                let n = [OpCode::Tuple1, OpCode::Tuple2, OpCode::Tuple3].iter().position(|&t| t == op).unwrap_or(0) + 1;
                if self.stack.len() < n {
                    bail!("pickle stack underflow");
                }
                self.stack.split_off(self.stack.len() - n)
            }
        };
        self.stack.push(Value::Tuple(Rc::new(items)));
        Ok(())
    }

    /// Lists and sets, and what adds to them.
    fn sequence(&mut self, op: OpCode) -> Result<()> {
        use OpCode::*;
        match op {
            EmptyList => self.stack.push(Value::List(Default::default())),
            List => {
                let items = self.pop_mark()?;
                self.stack.push(Value::List(Rc::new(RefCell::new(items))));
            }
            Append => {
                let v = self.pop()?;
                append_items(self.top(op)?, vec![v])?;
            }
            Appends | AddItems => {
                let items = self.pop_mark()?;
                append_items(self.top(op)?, items)?;
            }
            EmptySet => self.stack.push(Value::Set(Default::default())),
            FrozenSet => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Set(Rc::new(RefCell::new(items))));
            }
            other => bail!("{other:?} is not a sequence opcode"),
        }
        Ok(())
    }

    fn dict(&mut self, op: OpCode) -> Result<()> {
        match op {
            OpCode::EmptyDict => self.stack.push(Value::Dict(Default::default())),
            OpCode::Dict => {
                let items = pairs(self.pop_mark()?)?;
                self.stack.push(Value::Dict(Rc::new(RefCell::new(items))));
            }
            OpCode::SetItem => {
                let v = self.pop()?;
                let k = self.pop()?;
                set_items(self.top(op)?, vec![(k, v)])?;
            }
            _ => {
                let items = pairs(self.pop_mark()?)?;
                set_items(self.top(op)?, items)?;
            }
        }
        Ok(())
    }

    /// Globals, calls, object state and persistent ids: nothing is executed (see the module doc).
    fn object(&mut self, op: OpCode) -> Result<()> {
        use OpCode::*;
        let value = match op {
            Global => {
                let module = self.r.line()?;
                // Protocol 2 names Python 3's `builtins` as Python 2's `__builtin__`.
                let module = if module == "__builtin__" { "builtins" } else { module };
                let name = self.r.line()?;
                Value::Global(format!("{module}.{name}"))
            }
            StackGlobal => match (self.pop()?, self.pop()?) {
                (Value::Str(n), Value::Str(m)) => Value::Global(format!("{m}.{n}")),
                _ => bail!("STACK_GLOBAL without two strings"),
            },
            Reduce => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let Value::Global(class) = &callable else { bail!("REDUCE on a {}", callable.kind()) };
                call(class, tuple_items(&args)?).with_context(|| format!("calling {class}"))?
            }
            NewObj | NewObjEx => {
                if op == NewObjEx {
                    let _kwargs = self.pop()?;
                }
                let args = self.pop()?;
                let cls = self.pop()?;
                let Value::Global(class) = &cls else { bail!("{op:?} on a {}", cls.kind()) };
                let object = Object { class: class.clone(), args: tuple_items(&args)?, ..Default::default() };
                Value::Object(Rc::new(RefCell::new(object)))
            }
            Build => {
                let state = self.pop()?;
                return build(self.top(op)?, state);
            }
            BinPersId => {
                let pid = self.pop()?;
                persistent_load(pid)?
            }
            _ => bail!("text persistent ids (protocol 0) are not supported"),
        };
        self.stack.push(value);
        Ok(())
    }

    fn memo_op(&mut self, op: OpCode) -> Result<()> {
        use OpCode::*;
        let index = match op {
            Put | Get => self.r.line()?.parse().with_context(|| format!("{op:?} index"))?,
            BinPut | BinGet => self.r.u8()? as u32,
            LongBinPut | LongBinGet => self.r.u32()?,
            _ => self.memo.len() as u32, // MEMOIZE
        };
        if matches!(op, Get | BinGet | LongBinGet) {
            let v = self.memo.get(&index).cloned().ok_or_else(|| anyhow!("GET of memo {index}, never stored"))?;
            self.stack.push(v);
        } else {
            let top = self.top(op)?.clone();
            self.memo.insert(index, top);
        }
        Ok(())
    }
}

/// Pairs of a flat `key, value, key, value, ...` list.
fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        bail!("odd number of items for a dict");
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// Unpickle `bytes`. Persistent ids must be torch storages.
pub fn unpickle(bytes: &[u8]) -> Result<Value> {
    let mut machine =
        Machine { r: Reader { bytes, pos: 0 }, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() };
    loop {
        let at = machine.r.pos;
        let byte = machine.r.u8()?;
        let op =
            OpCode::from_byte(byte).ok_or_else(|| anyhow!("unsupported pickle opcode 0x{byte:02x} at offset {at}"))?;
        if let Some(value) = machine.step(op)? {
            return Ok(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn integer_keys_sets_and_ordered_dicts() {
        // pickle.dumps({0: 'item', 'ord': OrderedDict(a=1), 's': {3}, 'b': b'\x00\xff'}, protocol=2), CPython 3.
        let bytes: &[u8] = b"\x80\x02}q\x00(K\x00X\x04\x00\x00\x00itemq\x01X\x03\x00\x00\x00ordq\x02ccollections\n\
OrderedDict\nq\x03)Rq\x04X\x01\x00\x00\x00aq\x05K\x01sX\x01\x00\x00\x00sq\x06c__builtin__\nset\nq\x07]q\x08K\x03a\
\x85q\tRq\nX\x01\x00\x00\x00bq\x0bc_codecs\nencode\nq\x0cX\x03\x00\x00\x00\x00\xc3\xbfq\rX\x06\x00\x00\x00latin1q\x0e\
\x86q\x0fRq\x10u.";
        let v = unpickle(bytes).unwrap();
        let Value::Dict(d) = &v else { panic!("not a dict: {}", v.kind()) };
        let d = d.borrow();
        assert_eq!(d[0].0.as_int(), Some(0));
        assert_eq!(d[0].1.as_str(), Some("item"));
        assert_eq!(v.get("ord").and_then(|o| o.get("a")).and_then(|a| a.as_int()), Some(1));
        match v.get("s") {
            Some(Value::Set(s)) => assert_eq!(s.borrow()[0].as_int(), Some(3)),
            other => panic!("set read as {other:?}"),
        }
        match v.get("b") {
            Some(Value::Bytes(b)) => assert_eq!(b, vec![0u8, 0xff]),
            other => panic!("bytes read as {other:?}"),
        }
    }

    /// `data.pkl` of the trainer-checkpoint fixture (written by Ultralytics 8.4.190).
    fn fixture_pickle() -> Vec<u8> {
        use std::io::Read;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pt/yolo26n_coco.pt");
        let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
        let name = zip.file_names().find(|n| n.ends_with("/data.pkl")).unwrap().to_string();
        let mut out = Vec::new();
        zip.by_name(&name).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn damaged_pickles_give_errors_never_panics() {
        let good = fixture_pickle();
        assert!(matches!(unpickle(&good).unwrap(), Value::Dict(_)));
        // Every cut point in the first KiB, then every 997th: an error each time.
        for n in (0..good.len() - 1).filter(|n| *n < 1024 || n % 997 == 0) {
            assert!(unpickle(&good[..n]).is_err(), "cut at {n} accepted");
        }
        // Flipped bytes: whatever comes out, it must come out without a panic.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..300 {
            let mut bad = good.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % bad.len() as u64) as usize;
                bad[at] = (state >> 32) as u8;
            }
            let _ = unpickle(&bad);
        }
    }

    #[test]
    fn calls_are_recorded_never_made() {
        // pickle.dumps({'model': Evil()}) where Evil.__reduce__ returns (os.system, ('touch /tmp/ember_pwned',)).
        let bytes: &[u8] = b"\x80\x02}q\x00X\x05\x00\x00\x00modelq\x01cposix\nsystem\nq\x02X\x16\x00\x00\x00\
touch /tmp/ember_pwnedq\x03\x85q\x04Rq\x05s.";
        let _ = std::fs::remove_file("/tmp/ember_pwned");
        let v = unpickle(bytes).unwrap();
        let Some(Value::Object(o)) = v.get("model") else { panic!("not an object: {v:?}") };
        assert_eq!(o.borrow().class, "posix.system");
        assert_eq!(o.borrow().args[0].as_str(), Some("touch /tmp/ember_pwned"));
        assert!(!Path::new("/tmp/ember_pwned").exists());
    }

    #[test]
    fn truncated_and_foreign_input_is_an_error() {
        assert!(unpickle(b"\x80\x02}q\x00(K\x00").is_err());
        assert!(unpickle(b"PK\x03\x04").is_err());
        assert!(unpickle(b"").is_err());
    }
}
