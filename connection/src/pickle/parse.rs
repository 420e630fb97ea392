//! The opcode machine: a pickle's bytes become a flat arena of plain-data
//! nodes. Nothing is ever called or constructed; the few globals that
//! CPython needs for `bytes`, `bytearray`, `set` and `frozenset` in older
//! protocols are recognised by name (see `builtins.rs`) and every other one
//! is refused.
//!
//! The machine never recurses and never allocates a length it was told:
//! a length is checked against the bytes left before anything is read. A
//! node is made only by an opcode (at least one byte), so the arena, the
//! stack and the memo all grow with the message and never beyond it.

use std::collections::HashMap;

use super::builtins::{self, Built};
use super::error::{PickleError, PickleResult};
use super::node::{describe, Arena, Id, Node};
use super::opcodes::{self as op, name};

/// Runs the opcodes of `data`, which must be exactly one pickle.
pub(super) fn parse(data: &[u8]) -> PickleResult<Arena> {
    let mut machine = Machine {
        input: Input { data, pos: 0 },
        nodes: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        built_by_reduce: 0,
    };
    let root = machine.run()?;
    if machine.input.pos != data.len() {
        return Err(PickleError(format!(
            "{} bytes left over after the pickle's STOP",
            data.len() - machine.input.pos
        )));
    }
    Ok(Arena {
        nodes: machine.nodes,
        root,
    })
}

/// The bytes of the message and how far the machine has read.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// The next `len` bytes, refused before anything is set aside if the
    /// message does not hold that many.
    fn take(&mut self, len: u64, what: &str) -> PickleResult<&'a [u8]> {
        if len > self.remaining() as u64 {
            return Err(PickleError(format!(
                "{what} claims {len} bytes but the message has only {} left (truncated?)",
                self.remaining()
            )));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.data[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &str) -> PickleResult<[u8; N]> {
        let bytes = self.take(N as u64, what)?;
        Ok(bytes.try_into().expect("take returns exactly N bytes"))
    }

    fn byte(&mut self, what: &str) -> PickleResult<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A newline-terminated argument (the names of `GLOBAL`).
    fn line(&mut self, what: &str) -> PickleResult<&'a str> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| PickleError(format!("{what} has no end of line (truncated?)")))?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end])
            .map_err(|_| PickleError(format!("{what} is not valid UTF-8")))
    }
}

struct Machine<'a> {
    input: Input<'a>,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    /// Stack heights at each `MARK`, innermost last.
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
    /// Bytes and items copied by `REDUCE` of the whitelisted builtins. The
    /// memo could hand one long argument to many of them, so the total is
    /// held to the message's size, which CPython's own pickles never pass.
    built_by_reduce: usize,
}

impl Machine<'_> {
    /// Runs opcodes until `STOP` and returns the value it pops.
    fn run(&mut self) -> PickleResult<Id> {
        loop {
            let at = self.input.pos;
            let opcode = self.input.byte("the pickle")?;
            if opcode == op::STOP {
                return self.pop(opcode);
            }
            self.step(opcode)
                .map_err(|err| PickleError(format!("at byte {at}: {err}")))?;
        }
    }

    fn step(&mut self, opcode: u8) -> PickleResult<()> {
        let what = name(opcode).unwrap_or("?");
        match opcode {
            op::PROTO => {
                let protocol = self.input.byte(what)?;
                if protocol > 5 {
                    return Err(PickleError(format!(
                        "pickle protocol {protocol} is newer than 5, the newest known"
                    )));
                }
            }
            op::FRAME => {
                // Frames only group opcodes for buffered readers; the whole
                // message is in memory, so only the claim is checked.
                let len = u64::from_le_bytes(self.input.array(what)?);
                if len > self.input.remaining() as u64 {
                    return Err(PickleError(format!(
                        "FRAME claims {len} bytes but the message has only {} left (truncated?)",
                        self.input.remaining()
                    )));
                }
            }
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                if self.stack.len() > self.frame_floor() {
                    self.stack.pop();
                } else {
                    self.pop_mark(opcode)?;
                }
            }
            op::POP_MARK => drop(self.pop_mark(opcode)?),
            op::DUP => {
                let top = self.top(opcode)?;
                self.stack.push(top);
            }
            op::BINPUT => {
                let index = self.input.byte(what)?;
                self.memo_put(opcode, index.into())?;
            }
            op::LONG_BINPUT => {
                let index = u32::from_le_bytes(self.input.array(what)?);
                self.memo_put(opcode, index)?;
            }
            op::MEMOIZE => {
                let index = u32::try_from(self.memo.len())
                    .map_err(|_| PickleError("the memo is full".into()))?;
                self.memo_put(opcode, index)?;
            }
            op::BINGET => {
                let index = self.input.byte(what)?;
                self.memo_get(index.into())?;
            }
            op::LONG_BINGET => {
                let index = u32::from_le_bytes(self.input.array(what)?);
                self.memo_get(index)?;
            }
            op::NONE => self.push(Node::None)?,
            op::NEWTRUE => self.push(Node::Bool(true))?,
            op::NEWFALSE => self.push(Node::Bool(false))?,
            op::BININT => {
                let n = i32::from_le_bytes(self.input.array(what)?);
                self.push(Node::Int(n.into()))?;
            }
            op::BININT1 => {
                let n = self.input.byte(what)?;
                self.push(Node::Int(n.into()))?;
            }
            op::BININT2 => {
                let n = u16::from_le_bytes(self.input.array(what)?);
                self.push(Node::Int(n.into()))?;
            }
            op::LONG1 => {
                let len = self.input.byte(what)?;
                let bytes = self.input.take(len.into(), what)?;
                self.push(long_from_le(bytes))?;
            }
            op::LONG4 => {
                let len = i32::from_le_bytes(self.input.array(what)?);
                let len = u64::try_from(len)
                    .map_err(|_| PickleError(format!("LONG4 has a negative length {len}")))?;
                let bytes = self.input.take(len, what)?;
                self.push(long_from_le(bytes))?;
            }
            op::BINFLOAT => {
                let x = f64::from_be_bytes(self.input.array(what)?);
                self.push(Node::Float(x))?;
            }
            op::SHORT_BINUNICODE | op::BINUNICODE | op::BINUNICODE8 => {
                let len = self.length_argument(opcode)?;
                let bytes = self.input.take(len, what)?;
                let text = std::str::from_utf8(bytes).map_err(|_| {
                    PickleError(format!(
                        "{what} is not valid UTF-8 (Python strings with lone surrogates have no Rust form)"
                    ))
                })?;
                self.push(Node::Str(text.to_owned()))?;
            }
            op::SHORT_BINBYTES | op::BINBYTES | op::BINBYTES8 | op::BYTEARRAY8 => {
                let len = self.length_argument(opcode)?;
                let bytes = self.input.take(len, what)?.to_vec();
                self.push(match opcode {
                    op::BYTEARRAY8 => Node::ByteArray(bytes),
                    _ => Node::Bytes(bytes),
                })?;
            }
            op::EMPTY_TUPLE => self.push(Node::Tuple(Vec::new()))?,
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let count = usize::from(opcode - op::TUPLE1 + 1);
                let floor = self.frame_floor();
                if self.stack.len() < floor + count {
                    return Err(underflow(opcode));
                }
                let items = self.stack.split_off(self.stack.len() - count);
                self.push(Node::Tuple(items))?;
            }
            op::TUPLE => {
                let items = self.pop_mark(opcode)?;
                self.push(Node::Tuple(items))?;
            }
            op::EMPTY_LIST => self.push(Node::List(Vec::new()))?,
            op::LIST => {
                let items = self.pop_mark(opcode)?;
                self.push(Node::List(items))?;
            }
            op::APPEND => {
                let item = self.pop(opcode)?;
                self.extend_top(opcode, vec![item])?;
            }
            op::APPENDS => {
                let items = self.pop_mark(opcode)?;
                self.extend_top(opcode, items)?;
            }
            op::EMPTY_DICT => self.push(Node::Dict(Vec::new()))?,
            op::DICT => {
                let items = self.pop_mark(opcode)?;
                let pairs = pairs(opcode, items)?;
                self.push(Node::Dict(pairs))?;
            }
            op::SETITEM => {
                let value = self.pop(opcode)?;
                let key = self.pop(opcode)?;
                self.extend_top(opcode, vec![key, value])?;
            }
            op::SETITEMS => {
                let items = self.pop_mark(opcode)?;
                self.extend_top(opcode, items)?;
            }
            op::EMPTY_SET => self.push(Node::Set(Vec::new()))?,
            op::ADDITEMS => {
                let items = self.pop_mark(opcode)?;
                self.extend_top(opcode, items)?;
            }
            op::FROZENSET => {
                let items = self.pop_mark(opcode)?;
                self.push(Node::FrozenSet(items))?;
            }
            op::GLOBAL => {
                let module = self.input.line(what)?;
                let global = self.input.line(what)?;
                let builtin = builtins::lookup(what, module, global)?;
                self.push(Node::Builtin(builtin))?;
            }
            op::STACK_GLOBAL => {
                let global = self.pop(opcode)?;
                let module = self.pop(opcode)?;
                let (Node::Str(module), Node::Str(global)) = (self.node(module), self.node(global))
                else {
                    return Err(PickleError(
                        "STACK_GLOBAL needs a module name and a global name".into(),
                    ));
                };
                let builtin = builtins::lookup(what, module, global)?;
                self.push(Node::Builtin(builtin))?;
            }
            op::REDUCE => {
                let args = self.pop(opcode)?;
                let callable = self.pop(opcode)?;
                let result = self.reduce(callable, args)?;
                self.stack.push(result);
            }
            other => return Err(refusal(other)),
        }
        Ok(())
    }

    /// The length argument of the string and bytes opcodes: 1, 4 or 8
    /// bytes depending on the opcode.
    fn length_argument(&mut self, opcode: u8) -> PickleResult<u64> {
        let what = name(opcode).unwrap_or("?");
        Ok(match opcode {
            op::SHORT_BINUNICODE | op::SHORT_BINBYTES => self.input.byte(what)?.into(),
            op::BINUNICODE | op::BINBYTES => u32::from_le_bytes(self.input.array(what)?).into(),
            _ => u64::from_le_bytes(self.input.array(what)?),
        })
    }

    fn node(&self, id: Id) -> &Node {
        &self.nodes[id as usize]
    }

    fn push(&mut self, node: Node) -> PickleResult<()> {
        let id = Id::try_from(self.nodes.len())
            .map_err(|_| PickleError("more than 2^32 values in one pickle".into()))?;
        self.nodes.push(node);
        self.stack.push(id);
        Ok(())
    }

    /// The height below which the innermost `MARK` hides the stack.
    fn frame_floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn top(&self, opcode: u8) -> PickleResult<Id> {
        if self.stack.len() > self.frame_floor() {
            Ok(*self.stack.last().expect("above the floor"))
        } else {
            Err(underflow(opcode))
        }
    }

    fn pop(&mut self, opcode: u8) -> PickleResult<Id> {
        let top = self.top(opcode)?;
        self.stack.pop();
        Ok(top)
    }

    /// Everything pushed since the innermost `MARK`, which is removed.
    fn pop_mark(&mut self, opcode: u8) -> PickleResult<Vec<Id>> {
        let mark = self.marks.pop().ok_or_else(|| {
            PickleError(format!("{} without a MARK", name(opcode).unwrap_or("?")))
        })?;
        Ok(self.stack.split_off(mark))
    }

    fn memo_put(&mut self, opcode: u8, index: u32) -> PickleResult<()> {
        let top = self.top(opcode)?;
        self.memo.insert(index, top);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> PickleResult<()> {
        let id = *self
            .memo
            .get(&index)
            .ok_or_else(|| PickleError(format!("memo entry {index} was never stored")))?;
        self.stack.push(id);
        Ok(())
    }

    /// Adds `items` to the list, dict (as key, value, key, value...) or set
    /// on top of the stack.
    fn extend_top(&mut self, opcode: u8, items: Vec<Id>) -> PickleResult<()> {
        let what = name(opcode).unwrap_or("?");
        let target = self.top(opcode)?;
        match &mut self.nodes[target as usize] {
            Node::List(list) if opcode == op::APPEND || opcode == op::APPENDS => list.extend(items),
            Node::Set(set) if opcode == op::ADDITEMS => set.extend(items),
            Node::Dict(dict) if opcode == op::SETITEM || opcode == op::SETITEMS => {
                dict.extend(pairs(opcode, items)?)
            }
            other => {
                return Err(PickleError(format!(
                    "{what} applied to {}",
                    describe(other)
                )))
            }
        }
        Ok(())
    }

    /// `REDUCE`: the callable must be one of the whitelisted builtins and
    /// the arguments a tuple.
    fn reduce(&mut self, callable: Id, args: Id) -> PickleResult<Id> {
        let Node::Builtin(builtin) = *self.node(callable) else {
            return Err(PickleError(format!(
                "REDUCE of {}, which is not a callable",
                describe(self.node(callable))
            )));
        };
        let Node::Tuple(arg_ids) = self.node(args) else {
            return Err(PickleError(format!(
                "REDUCE of {} with {} instead of an argument tuple",
                builtin.python_name(),
                describe(self.node(args))
            )));
        };
        // None of the builtins takes more than two arguments; checking
        // first keeps a long memoized tuple from being walked again.
        if arg_ids.len() > 2 {
            return Err(PickleError(format!(
                "REDUCE of {} with {} arguments",
                builtin.python_name(),
                arg_ids.len()
            )));
        }
        let arg_nodes: Vec<&Node> = arg_ids.iter().map(|&id| self.node(id)).collect();
        let node = match builtins::call(builtin, &arg_nodes)? {
            // bytearray(b) is b again: the node is shared, not copied.
            Built::Argument(index) => return Ok(arg_ids[index]),
            Built::Node(node) => node,
        };
        self.built_by_reduce += weight(&node);
        if self.built_by_reduce > self.input.data.len() {
            return Err(PickleError(format!(
                "REDUCE of {} copies more than the message holds (memo reuse?)",
                builtin.python_name()
            )));
        }
        let id = Id::try_from(self.nodes.len())
            .map_err(|_| PickleError("more than 2^32 values in one pickle".into()))?;
        self.nodes.push(node);
        Ok(id)
    }
}

/// How much a node built by `REDUCE` copied.
fn weight(node: &Node) -> usize {
    match node {
        Node::Bytes(bytes) | Node::ByteArray(bytes) => bytes.len(),
        Node::Set(items) | Node::FrozenSet(items) => items.len(),
        _ => 0,
    }
}

/// Pairs up keys and values for `DICT` and `SETITEMS`.
fn pairs(opcode: u8, items: Vec<Id>) -> PickleResult<Vec<(Id, Id)>> {
    if items.len() % 2 != 0 {
        return Err(PickleError(format!(
            "{} with an odd number of items ({})",
            name(opcode).unwrap_or("?"),
            items.len()
        )));
    }
    Ok(items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
}

/// A Python `int` from its little-endian two's complement bytes.
fn long_from_le(bytes: &[u8]) -> Node {
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    if bytes.len() > 16 {
        // Python writes the shortest form: 17 bytes for u128s above
        // i128::MAX, and any form may be padded with sign bytes.
        let (low, high) = bytes.split_at(16);
        let sign = if negative { 0xff } else { 0 };
        if high.iter().any(|&b| b != sign) {
            return Node::BigInt(bytes.to_vec());
        }
        let low: [u8; 16] = low.try_into().expect("split at 16");
        if negative == (low[15] & 0x80 != 0) {
            return Node::Int(i128::from_le_bytes(low));
        }
        return match negative {
            false => Node::U128(u128::from_le_bytes(low)),
            true => Node::BigInt(bytes.to_vec()),
        };
    }
    let mut buf = if negative { [0xff; 16] } else { [0; 16] };
    buf[..bytes.len()].copy_from_slice(bytes);
    Node::Int(i128::from_le_bytes(buf))
}

fn underflow(opcode: u8) -> PickleError {
    PickleError(format!(
        "{} finds too few values on the stack",
        name(opcode).unwrap_or("?")
    ))
}

/// The error for an opcode that is not decoded: those that build objects
/// of classes (which would run their code in Python) are named as such.
fn refusal(opcode: u8) -> PickleError {
    let message = match name(opcode) {
        Some(
            what @ ("BUILD" | "INST" | "OBJ" | "NEWOBJ" | "NEWOBJ_EX" | "EXT1" | "EXT2" | "EXT4"
            | "PERSID" | "BINPERSID"),
        ) => format!(
            "refused {what}: it builds an object of a class, and only plain data is decoded"
        ),
        Some(what @ ("NEXT_BUFFER" | "READONLY_BUFFER")) => {
            format!("refused {what}: out-of-band buffers are not supported")
        }
        Some(what) => format!(
            "opcode {what} (a protocol 0 or 1 form) is not supported: send with protocol 2 or later"
        ),
        None => format!("byte 0x{opcode:02x} is not a pickle opcode"),
    };
    PickleError(message)
}
