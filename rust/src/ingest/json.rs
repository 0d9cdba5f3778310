//! Step 2: our own RFC 8259 JSON parser, built for this hot path.
//!
//! Why not serde_json: it refuses lone UTF-16 surrogates (one bad client
//! string would fail a whole batch), and we want the limits (depth, string
//! length) checked while parsing, numbers kept as their original text, and no
//! allocation per string.
//!
//! The parser validates the whole body and produces a flat *tape* of
//! [`Node`]s in document order (a container node records where it ends), so
//! everything after it — validation, COPY encoding — is a linear walk with no
//! recursion needed and no tree of boxes.
//!
//! Strings:
//! - a string without escapes is a slice of the input (no copy);
//! - a string with escapes is decoded once into one shared arena;
//! - `\u0000` and lone surrogates (`\ud800` without its pair, a lone
//!   `\udc00`) decode to U+FFFD, because PostgreSQL can store neither (in
//!   `text` nor `jsonb`); a valid surrogate pair decodes to its code point.
//!
//! So every decoded string is valid UTF-8 without NUL, and a string that had
//! no escapes contains no `"`, `\` or control character either (those must
//! be escaped in JSON), which lets the encoder copy it verbatim.
//!
//! Grammar details: the whole input must be valid UTF-8 (checked first, so
//! the offset of the first bad byte is reported); a leading UTF-8 byte-order
//! mark is skipped (RFC 8259 §8.1 allows it); numbers follow the RFC grammar
//! exactly (no leading zeros, no `+`, no `.5`, no `1.`, no NaN/Infinity);
//! whitespace is space, tab, LF, CR; nothing but whitespace may follow the
//! value. Duplicate keys are kept on the tape; readers take the last one.

use std::fmt;

/// Limits applied while parsing.
#[derive(Clone, Copy, Debug)]
pub struct JsonLimits {
    /// Maximum nesting of containers; the outermost container is depth 1.
    pub max_depth: usize,
    /// Maximum length of one decoded string (keys too), in UTF-8 bytes.
    pub max_string_bytes: usize,
}

/// What kind of failure, for the error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonErrorKind {
    Syntax,
    TooDeep,
    StringTooLong,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    pub kind: JsonErrorKind,
    /// Byte offset in the (decompressed) body where the problem was found.
    pub offset: usize,
    /// What went wrong and where, for humans.
    pub message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// One value on the tape. Offsets are `u32`: bodies are capped well below
/// 4 GiB (see `Limits`), and the arena is never larger than the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    Null,
    Bool(bool),
    /// The number's original text: `input[start..end]`.
    Number {
        start: u32,
        end: u32,
    },
    /// `arena[start..end]` when `escaped`, else `input[start..end]`.
    Str {
        start: u32,
        end: u32,
        escaped: bool,
    },
    /// Members follow as (key `Str`, value) pairs; `end` is the index of
    /// the first node after the object, `len` its number of members.
    Object {
        end: u32,
        len: u32,
    },
    /// Elements follow; `end` as for objects.
    Array {
        end: u32,
        len: u32,
    },
}

impl Node {
    /// The JSON type name, for error messages.
    pub fn kind(self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "boolean",
            Node::Number { .. } => "number",
            Node::Str { .. } => "string",
            Node::Object { .. } => "object",
            Node::Array { .. } => "array",
        }
    }
}

/// A parsed JSON text. The root value is node 0.
#[derive(Debug)]
pub struct Document<'a> {
    input: &'a [u8],
    arena: Vec<u8>,
    nodes: Vec<Node>,
}

impl<'a> Document<'a> {
    pub const ROOT: usize = 0;

    #[inline]
    pub fn node(&self, i: usize) -> Node {
        self.nodes[i]
    }

    /// The index of the node after value `i` (skipping its children).
    #[inline]
    pub fn next(&self, i: usize) -> usize {
        match self.nodes[i] {
            Node::Object { end, .. } | Node::Array { end, .. } => end as usize,
            _ => i + 1,
        }
    }

    /// The decoded bytes of a `Str` node (valid UTF-8, no NUL); empty for
    /// other nodes.
    #[inline]
    pub fn str_bytes(&self, i: usize) -> &[u8] {
        match self.nodes[i] {
            Node::Str {
                start,
                end,
                escaped,
            } => {
                let src: &[u8] = if escaped { &self.arena } else { self.input };
                &src[start as usize..end as usize]
            }
            _ => &[],
        }
    }

    /// [`Self::str_bytes`] as `&str`.
    #[inline]
    pub fn str(&self, i: usize) -> &str {
        // Cannot fail: the input was validated as UTF-8 and the arena only
        // receives whole characters.
        std::str::from_utf8(self.str_bytes(i)).unwrap_or_default()
    }

    /// Whether a `Str` node had escapes (so it may contain characters that
    /// need escaping on output).
    #[inline]
    pub fn str_escaped(&self, i: usize) -> bool {
        matches!(self.nodes[i], Node::Str { escaped: true, .. })
    }

    /// The original text of a `Number` node (ASCII); empty for other nodes.
    #[inline]
    pub fn number_text(&self, i: usize) -> &str {
        match self.nodes[i] {
            Node::Number { start, end } => {
                std::str::from_utf8(&self.input[start as usize..end as usize]).unwrap_or_default()
            }
            _ => "",
        }
    }

    /// (key index, value index) of each member of the object at `obj`, in
    /// document order (duplicates included).
    pub fn members(&self, obj: usize) -> Members<'_, 'a> {
        let end = match self.nodes[obj] {
            Node::Object { end, .. } => end as usize,
            _ => obj + 1,
        };
        Members {
            doc: self,
            i: obj + 1,
            end,
        }
    }

    /// Index of each element of the array at `arr`.
    pub fn elements(&self, arr: usize) -> Elements<'_, 'a> {
        let end = match self.nodes[arr] {
            Node::Array { end, .. } => end as usize,
            _ => arr + 1,
        };
        Elements {
            doc: self,
            i: arr + 1,
            end,
        }
    }
}

pub struct Members<'d, 'a> {
    doc: &'d Document<'a>,
    i: usize,
    end: usize,
}

impl Iterator for Members<'_, '_> {
    type Item = (usize, usize);
    #[inline]
    fn next(&mut self) -> Option<(usize, usize)> {
        if self.i >= self.end {
            return None;
        }
        let key = self.i;
        let value = key + 1;
        self.i = self.doc.next(value);
        Some((key, value))
    }
}

pub struct Elements<'d, 'a> {
    doc: &'d Document<'a>,
    i: usize,
    end: usize,
}

impl Iterator for Elements<'_, '_> {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.i >= self.end {
            return None;
        }
        let v = self.i;
        self.i = self.doc.next(v);
        Some(v)
    }
}

/// Parse one JSON text.
pub fn parse(input: &[u8], limits: JsonLimits) -> Result<Document<'_>, JsonError> {
    if input.len() > u32::MAX as usize {
        return Err(syntax(0, "body too large to parse".to_string()));
    }
    if let Err(e) = std::str::from_utf8(input) {
        let at = e.valid_up_to();
        return Err(syntax(at, format!("invalid UTF-8 at byte {at}")));
    }
    let mut p = Parser {
        input,
        pos: 0,
        nodes: Vec::with_capacity((input.len() / 6).clamp(4, 4096)),
        arena: Vec::new(),
        limits,
    };
    if input.starts_with(b"\xEF\xBB\xBF") {
        p.pos = 3;
    }
    p.skip_ws();
    if p.pos == input.len() {
        return Err(syntax(
            p.pos,
            "empty body: expected a JSON object or array".to_string(),
        ));
    }
    p.parse_value_tree()?;
    p.skip_ws();
    if p.pos != input.len() {
        let at = p.pos;
        return Err(syntax(
            at,
            format!(
                "trailing data after the JSON value at byte {at} ({})",
                describe(input, at)
            ),
        ));
    }
    Ok(Document {
        input,
        arena: p.arena,
        nodes: p.nodes,
    })
}

fn syntax(offset: usize, message: String) -> JsonError {
    JsonError {
        kind: JsonErrorKind::Syntax,
        offset,
        message,
    }
}

/// A short description of the byte at `at`, for messages.
fn describe(input: &[u8], at: usize) -> String {
    match input.get(at) {
        None => "end of input".to_string(),
        Some(&b) if b.is_ascii_graphic() => format!("found '{}'", b as char),
        Some(&b) => {
            // A whole character when it is one (input is valid UTF-8).
            let s = std::str::from_utf8(&input[at..])
                .ok()
                .and_then(|s| s.chars().next());
            match s {
                Some(c) if !c.is_control() && c != ' ' && !c.is_ascii() => format!("found '{c}'"),
                _ => format!("found byte 0x{b:02x}"),
            }
        }
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
    arena: Vec<u8>,
    limits: JsonLimits,
}

impl Parser<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.input.get(self.pos) {
            self.pos += 1;
        }
    }

    fn unexpected(&self, expected: &str) -> JsonError {
        let at = self.pos;
        syntax(
            at,
            format!(
                "expected {expected} at byte {at}, {}",
                describe(self.input, at)
            ),
        )
    }

    /// Parse the root value and everything in it, iteratively, so that no
    /// input can overflow the stack. Open containers are linked through
    /// their own placeholder nodes (no separate stack to allocate): while a
    /// container is open its `end` holds its parent's index + 1 (0: none)
    /// and its `len` the members seen so far.
    fn parse_value_tree(&mut self) -> Result<(), JsonError> {
        let mut open: Option<usize> = None;
        let mut depth = 0usize;
        'value: loop {
            self.skip_ws();
            match self.peek() {
                Some(b @ (b'{' | b'[')) => {
                    let object = b == b'{';
                    if depth >= self.limits.max_depth {
                        let at = self.pos;
                        return Err(JsonError {
                            kind: JsonErrorKind::TooDeep,
                            offset: at,
                            message: format!(
                                "JSON nested deeper than {} levels at byte {at}",
                                self.limits.max_depth
                            ),
                        });
                    }
                    depth += 1;
                    self.pos += 1;
                    let idx = self.nodes.len();
                    let parent = open.map_or(0, |p| p as u32 + 1);
                    self.nodes.push(if object {
                        Node::Object {
                            end: parent,
                            len: 0,
                        }
                    } else {
                        Node::Array {
                            end: parent,
                            len: 0,
                        }
                    });
                    open = Some(idx);
                    self.skip_ws();
                    let close = if object { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        open = self.close(idx);
                        depth -= 1;
                    } else {
                        if object {
                            self.parse_key()?;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') => self.parse_string()?,
                Some(b't') => self.parse_literal(b"true", Node::Bool(true))?,
                Some(b'f') => self.parse_literal(b"false", Node::Bool(false))?,
                Some(b'n') => self.parse_literal(b"null", Node::Null)?,
                Some(b'-' | b'0'..=b'9') => self.parse_number()?,
                _ => return Err(self.unexpected("a JSON value")),
            }
            // A value is complete: continue (or close) the enclosing containers.
            loop {
                let Some(top) = open else {
                    return Ok(());
                };
                let object = match &mut self.nodes[top] {
                    Node::Object { len, .. } => {
                        *len += 1;
                        true
                    }
                    Node::Array { len, .. } => {
                        *len += 1;
                        false
                    }
                    _ => unreachable!("open containers are objects or arrays"),
                };
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if object {
                            self.skip_ws();
                            self.parse_key()?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if object => {}
                    Some(b']') if !object => {}
                    _ => {
                        return Err(self.unexpected(if object {
                            "',' or '}'"
                        } else {
                            "',' or ']'"
                        }))
                    }
                }
                self.pos += 1;
                open = self.close(top);
                depth -= 1;
            }
        }
    }

    /// Close the container at `idx` (set its `end`); returns its parent.
    fn close(&mut self, idx: usize) -> Option<usize> {
        let end_now = self.nodes.len() as u32;
        match &mut self.nodes[idx] {
            Node::Object { end, .. } | Node::Array { end, .. } => {
                let parent = std::mem::replace(end, end_now);
                parent.checked_sub(1).map(|p| p as usize)
            }
            _ => unreachable!("open containers are objects or arrays"),
        }
    }

    /// A member's key and the ':' after it.
    fn parse_key(&mut self) -> Result<(), JsonError> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a string key"));
        }
        self.parse_string()?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(self.unexpected("':' after the key"));
        }
        self.pos += 1;
        Ok(())
    }

    fn parse_literal(&mut self, word: &'static [u8], node: Node) -> Result<(), JsonError> {
        if self.input[self.pos..].starts_with(word) {
            self.pos += word.len();
            self.nodes.push(node);
            Ok(())
        } else {
            Err(self.unexpected("a JSON value"))
        }
    }

    fn parse_number(&mut self) -> Result<(), JsonError> {
        let s = self.input;
        let start = self.pos;
        let mut i = start;
        let digit = |i: usize| matches!(s.get(i), Some(b'0'..=b'9'));
        let bad = |i: usize, what: &str| {
            syntax(
                i,
                format!(
                    "invalid number at byte {start}: {what} at byte {i}, {}",
                    describe(s, i)
                ),
            )
        };
        if s[i] == b'-' {
            i += 1;
        }
        match s.get(i) {
            Some(b'0') => {
                i += 1;
                if digit(i) {
                    return Err(bad(i, "leading zero"));
                }
            }
            Some(b'1'..=b'9') => {
                i += 1;
                while digit(i) {
                    i += 1;
                }
            }
            _ => return Err(bad(i, "expected a digit")),
        }
        if s.get(i) == Some(&b'.') {
            i += 1;
            if !digit(i) {
                return Err(bad(i, "expected a digit after the decimal point"));
            }
            while digit(i) {
                i += 1;
            }
        }
        if let Some(b'e' | b'E') = s.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = s.get(i) {
                i += 1;
            }
            if !digit(i) {
                return Err(bad(i, "expected a digit in the exponent"));
            }
            while digit(i) {
                i += 1;
            }
        }
        self.nodes.push(Node::Number {
            start: start as u32,
            end: i as u32,
        });
        self.pos = i;
        Ok(())
    }

    fn string_too_long(&self, open: usize) -> JsonError {
        JsonError {
            kind: JsonErrorKind::StringTooLong,
            offset: open,
            message: format!(
                "string starting at byte {open} is longer than {} bytes",
                self.limits.max_string_bytes
            ),
        }
    }

    fn unterminated(&self, open: usize) -> JsonError {
        syntax(
            self.input.len(),
            format!("unterminated string starting at byte {open}"),
        )
    }

    fn control_char(&self, at: usize) -> JsonError {
        syntax(
            at,
            format!(
                "unescaped control character 0x{:02x} in a string at byte {at}",
                self.input[at]
            ),
        )
    }

    /// `self.pos` is at the opening quote.
    fn parse_string(&mut self) -> Result<(), JsonError> {
        let s = self.input;
        let open = self.pos;
        let start = open + 1;
        let mut i = find_special(s, start);
        match s.get(i) {
            None => return Err(self.unterminated(open)),
            Some(b'"') => {
                if i - start > self.limits.max_string_bytes {
                    return Err(self.string_too_long(open));
                }
                self.nodes.push(Node::Str {
                    start: start as u32,
                    end: i as u32,
                    escaped: false,
                });
                self.pos = i + 1;
                return Ok(());
            }
            Some(b'\\') => {}
            Some(_) => return Err(self.control_char(i)),
        }
        // Slow path: decode into the arena.
        let astart = self.arena.len();
        self.arena.extend_from_slice(&s[start..i]);
        loop {
            match s[i] {
                b'"' => break,
                b'\\' => i = self.parse_escape(i, open)?,
                _ => return Err(self.control_char(i)),
            }
            let j = find_special(s, i);
            if j >= s.len() {
                return Err(self.unterminated(open));
            }
            self.arena.extend_from_slice(&s[i..j]);
            i = j;
            if self.arena.len() - astart > self.limits.max_string_bytes {
                return Err(self.string_too_long(open));
            }
        }
        if self.arena.len() - astart > self.limits.max_string_bytes {
            return Err(self.string_too_long(open));
        }
        self.nodes.push(Node::Str {
            start: astart as u32,
            end: self.arena.len() as u32,
            escaped: true,
        });
        self.pos = i + 1;
        Ok(())
    }

    /// Decode the escape at `i` (a backslash) into the arena; returns the
    /// index after it.
    fn parse_escape(&mut self, i: usize, open: usize) -> Result<usize, JsonError> {
        let s = self.input;
        let b = match s.get(i + 1) {
            None => return Err(self.unterminated(open)),
            Some(&b) => b,
        };
        let simple = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => 0,
            _ => {
                return Err(syntax(
                    i,
                    format!(
                        "invalid escape at byte {i}: '\\' followed by {}",
                        describe(s, i + 1).trim_start_matches("found ")
                    ),
                ))
            }
        };
        if b != b'u' {
            self.arena.push(simple);
            return Ok(i + 2);
        }
        let cp = hex4(s, i + 2).ok_or_else(|| {
            syntax(
                i,
                format!("invalid \\u escape at byte {i}: expected 4 hex digits"),
            )
        })?;
        let mut next = i + 6;
        let c = match cp {
            0xD800..=0xDBFF => {
                // A high surrogate: valid only with a low one right after.
                let low = if s.get(next..next + 2) == Some(b"\\u") {
                    hex4(s, next + 2).filter(|lo| (0xDC00..=0xDFFF).contains(lo))
                } else {
                    None
                };
                match low {
                    Some(lo) => {
                        next += 6;
                        char::from_u32(0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00))
                    }
                    None => None,
                }
            }
            0 => None,
            _ => char::from_u32(cp), // None for a lone low surrogate
        }
        .unwrap_or(char::REPLACEMENT_CHARACTER);
        let mut buf = [0u8; 4];
        self.arena
            .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        Ok(next)
    }
}

#[inline]
fn hex4(s: &[u8], i: usize) -> Option<u32> {
    let h = s.get(i..i + 4)?;
    let mut v = 0u32;
    for &b in h {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u32::from(d);
    }
    Some(v)
}

/// Index of the first `"`, `\` or control byte (< 0x20) at or after `i`,
/// or `s.len()`. Eight bytes at a time (SWAR): for each test the lowest
/// flagged byte is exact, which is all we need.
#[inline]
fn find_special(s: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = s.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
        let m = zero_byte(quote) | zero_byte(backslash) | control;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = s.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return i;
        }
        i += 1;
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: JsonLimits = JsonLimits {
        max_depth: 32,
        max_string_bytes: 65_536,
    };

    fn ok(s: &str) -> Document<'_> {
        parse(s.as_bytes(), LIMITS).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &[u8]) -> JsonError {
        match parse(s, LIMITS) {
            Ok(d) => panic!("{:?} parsed: {:?}", String::from_utf8_lossy(s), d.nodes),
            Err(e) => e,
        }
    }

    fn root_str(s: &str) -> String {
        let d = ok(s);
        assert!(matches!(d.node(0), Node::Str { .. }), "{s}");
        d.str(0).to_string()
    }

    /// Re-serialise a document (plain JSON, no COPY escaping) for tests.
    fn dump(d: &Document<'_>, i: usize, out: &mut String) {
        match d.node(i) {
            Node::Null => out.push_str("null"),
            Node::Bool(b) => out.push_str(if b { "true" } else { "false" }),
            Node::Number { .. } => out.push_str(d.number_text(i)),
            Node::Str { .. } => out.push_str(&format!("{:?}", d.str(i))),
            Node::Object { .. } => {
                out.push('{');
                for (n, (k, v)) in d.members(i).enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!("{:?}:", d.str(k)));
                    dump(d, v, out);
                }
                out.push('}');
            }
            Node::Array { .. } => {
                out.push('[');
                for (n, e) in d.elements(i).enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    dump(d, e, out);
                }
                out.push(']');
            }
        }
    }

    fn roundtrip(s: &str) -> String {
        let d = ok(s);
        let mut out = String::new();
        dump(&d, 0, &mut out);
        out
    }

    #[test]
    fn scalars_and_containers() {
        assert_eq!(roundtrip("null"), "null");
        assert_eq!(roundtrip(" true "), "true");
        assert_eq!(roundtrip("false"), "false");
        assert_eq!(roundtrip("{}"), "{}");
        assert_eq!(roundtrip("[]"), "[]");
        assert_eq!(roundtrip("[ ]"), "[]");
        assert_eq!(roundtrip("{ }"), "{}");
        assert_eq!(
            roundtrip(" { \"a\" : [1, {\"b\":null}, [], {}] , \"c\":\"d\"}\r\n\t"),
            r#"{"a":[1,{"b":null},[],{}],"c":"d"}"#
        );
        assert_eq!(roundtrip("[[[[]]]]"), "[[[[]]]]");
    }

    #[test]
    fn container_lengths_and_ends() {
        let d = ok(r#"[{"a":1,"b":[1,2,3]},2,[]]"#);
        assert_eq!(d.node(0), Node::Array { end: 11, len: 3 });
        let elems: Vec<usize> = d.elements(0).collect();
        assert_eq!(elems, vec![1, 9, 10]);
        assert_eq!(d.node(1), Node::Object { end: 9, len: 2 });
        let members: Vec<(usize, usize)> = d.members(1).collect();
        assert_eq!(members, vec![(2, 3), (4, 5)]);
        assert_eq!(d.node(5), Node::Array { end: 9, len: 3 });
    }

    #[test]
    fn duplicate_keys_are_all_on_the_tape() {
        let d = ok(r#"{"a":1,"a":2}"#);
        let vals: Vec<&str> = d.members(0).map(|(_, v)| d.number_text(v)).collect();
        assert_eq!(vals, vec!["1", "2"]);
    }

    #[test]
    fn numbers_keep_their_text() {
        for n in [
            "0",
            "-0",
            "1",
            "-1",
            "10",
            "1.5",
            "-0.0",
            "1e5",
            "1E+5",
            "1e-5",
            "123456789012345678901234567890",
            "1.000000000000000000001",
            "0.1e-999",
            "1e400",
            "-9007199254740993",
        ] {
            let d = ok(n);
            assert!(matches!(d.node(0), Node::Number { .. }));
            assert_eq!(d.number_text(0), n);
            assert_eq!(roundtrip(&format!("[{n}]")), format!("[{n}]"));
        }
    }

    #[test]
    fn bad_numbers() {
        for n in [
            "01",
            "-01",
            "00",
            "+1",
            ".5",
            "1.",
            "1.e5",
            "1e",
            "1e+",
            "-",
            "--1",
            "0x10",
            "NaN",
            "Infinity",
            "-Infinity",
            "1_000",
            "[1.]",
            "[-]",
            "1.5.5",
        ] {
            let e = err(n.as_bytes());
            assert_eq!(e.kind, JsonErrorKind::Syntax, "{n}");
        }
        assert!(err(b"01").message.contains("leading zero"));
        assert!(err(b"1.").message.contains("after the decimal point"));
    }

    #[test]
    fn simple_escapes() {
        assert_eq!(
            root_str(r#""a\"b\\c\/d\be\ff\ng\rh\ti""#),
            "a\"b\\c/d\u{8}e\u{c}f\ng\rh\ti"
        );
        assert_eq!(root_str(r#""\u0041\u00e9\u20AC""#), "Aé€");
    }

    #[test]
    fn surrogate_pairs_decode() {
        assert_eq!(root_str(r#""\ud83d\ude00""#), "😀");
        assert_eq!(root_str(r#""x\uD834\uDD1Ey""#), "x𝄞y");
    }

    #[test]
    fn lone_surrogates_and_nul_become_replacement_char() {
        let r = "\u{FFFD}";
        assert_eq!(root_str(r#""\ud800""#), r);
        assert_eq!(root_str(r#""\udc00""#), r);
        assert_eq!(root_str(r#""a\ud800b""#), format!("a{r}b"));
        // High surrogate followed by a non-surrogate escape: both kept apart.
        assert_eq!(root_str(r#""\ud800\u0041""#), format!("{r}A"));
        // Two high surrogates: two replacements.
        assert_eq!(root_str(r#""\ud800\ud800""#), format!("{r}{r}"));
        // Low then high (reversed pair): two replacements.
        assert_eq!(root_str(r#""\udc00\ud800""#), format!("{r}{r}"));
        // High surrogate followed by a broken escape: the escape is an error.
        assert_eq!(err(br#""\ud800\uZZZZ""#).kind, JsonErrorKind::Syntax);
        assert_eq!(root_str(r#""\u0000""#), r);
        assert_eq!(root_str(r#""a\u0000b\u0000""#), format!("a{r}b{r}"));
        // Keys too.
        let d = ok(r#"{"k\u0000":1}"#);
        assert_eq!(d.str(1), format!("k{r}"));
    }

    #[test]
    fn bad_escapes() {
        for s in [
            r#""\x""#,
            r#""\u12""#,
            r#""\u12G4""#,
            r#""\U0041""#,
            r#""\'""#,
            r#""\"#,
        ] {
            assert_eq!(err(s.as_bytes()).kind, JsonErrorKind::Syntax, "{s}");
        }
    }

    #[test]
    fn raw_control_characters_are_refused() {
        for c in [0u8, 1, b'\n', b'\t', b'\r', 0x1f] {
            let body = [b'"', b'a', c, b'"'];
            let e = err(&body);
            assert!(e.message.contains("control character"), "{}", e.message);
            assert_eq!(e.offset, 2);
        }
        // DEL and non-ASCII are fine raw.
        assert_eq!(root_str("\"\u{7f}é😀\""), "\u{7f}é😀");
    }

    #[test]
    fn strings_without_escapes_borrow_the_input() {
        let d = ok(r#"["plain", "esc\n"]"#);
        assert!(!d.str_escaped(1));
        assert!(d.str_escaped(2));
        assert!(d.arena.len() == 4);
    }

    #[test]
    fn find_special_matches_bytewise() {
        let mut data: Vec<u8> = (0u8..=255).collect();
        data.extend(b"plain ascii text and more plain text \xc3\xa9\xe2\x82\xac");
        for start in 0..data.len() {
            for end in start..data.len().min(start + 40) {
                let s = &data[start..end];
                let want = s
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                    .unwrap_or(s.len());
                assert_eq!(find_special(s, 0), want);
            }
        }
    }

    #[test]
    fn long_strings_with_specials_at_every_position() {
        for at in 0..40 {
            let mut s = "x".repeat(40);
            s.replace_range(at..at + 1, "\\n");
            let json = format!("\"{s}\"");
            let want = s.replace("\\n", "\n");
            assert_eq!(root_str(&json), want, "{at}");
        }
    }

    #[test]
    fn trailing_data_is_refused() {
        for s in [
            "{} {}",
            "{}x",
            "[1] ,",
            "1 2",
            "\"a\"\"b\"",
            "nullx",
            "truefalse",
        ] {
            let e = err(s.as_bytes());
            assert_eq!(e.kind, JsonErrorKind::Syntax, "{s}");
        }
        let e = err(b"{\"a\":1} x");
        assert!(e.message.contains("trailing data"), "{}", e.message);
        assert_eq!(e.offset, 8);
    }

    #[test]
    fn structural_errors() {
        for s in [
            "{",
            "[",
            "[1,",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\"}",
            "{\"a\" 1}",
            "{a:1}",
            "{1:1}",
            "[1 2]",
            "}",
            "]",
            "{\"a\":1]",
            "[1}",
            ",",
            "tru",
            "nul",
            "\"abc",
            "{\"a\":}",
            "[,1]",
            "'a'",
        ] {
            assert_eq!(err(s.as_bytes()).kind, JsonErrorKind::Syntax, "{s}");
        }
        let e = err(b"{\"a\":1 \"b\":2}");
        assert!(
            e.message.contains("expected ',' or '}' at byte 7"),
            "{}",
            e.message
        );
    }

    #[test]
    fn empty_and_whitespace_bodies() {
        for s in ["", "  ", "\n\t\r "] {
            let e = err(s.as_bytes());
            assert!(e.message.contains("empty body"), "{}", e.message);
        }
    }

    #[test]
    fn bom_is_skipped() {
        let d = parse(b"\xEF\xBB\xBF{\"a\":1}", LIMITS).unwrap();
        assert!(matches!(d.node(0), Node::Object { len: 1, .. }));
    }

    #[test]
    fn invalid_utf8_reports_the_offset() {
        let e = err(b"{\"a\":\"x\xff\"}");
        assert_eq!(e.kind, JsonErrorKind::Syntax);
        assert_eq!(e.offset, 7);
        assert!(
            e.message.contains("invalid UTF-8 at byte 7"),
            "{}",
            e.message
        );
        // Overlong encoding, encoded surrogate, truncated sequence.
        for bad in [
            &b"\"\xc0\xaf\""[..],
            b"\"\xed\xa0\x80\"",
            b"\"\xe2\x82\"",
            b"\"\xf8\x88\x80\x80\x80\"",
        ] {
            assert!(err(bad).message.contains("invalid UTF-8"));
        }
    }

    #[test]
    fn depth_limit() {
        let lim = JsonLimits {
            max_depth: 3,
            max_string_bytes: 100,
        };
        assert!(parse(b"[[[1]]]", lim).is_ok());
        assert!(parse(b"[{\"a\":[1]}]", lim).is_ok());
        let e = parse(b"[[[[1]]]]", lim).unwrap_err();
        assert_eq!(e.kind, JsonErrorKind::TooDeep);
        assert_eq!(e.offset, 3);
        assert!(e.message.contains("deeper than 3"), "{}", e.message);
        // Scalars do not count as a level.
        assert!(parse(
            b"1",
            JsonLimits {
                max_depth: 1,
                ..lim
            }
        )
        .is_ok());
    }

    #[test]
    fn very_deep_input_does_not_overflow_the_stack() {
        let lim = JsonLimits {
            max_depth: usize::MAX,
            max_string_bytes: 100,
        };
        let n = 1_000_000;
        let mut s = "[".repeat(n);
        s.push_str(&"]".repeat(n));
        assert!(parse(s.as_bytes(), lim).is_ok());
    }

    #[test]
    fn string_length_limit_counts_decoded_bytes() {
        let lim = JsonLimits {
            max_depth: 8,
            max_string_bytes: 4,
        };
        assert!(parse(b"\"abcd\"", lim).is_ok());
        assert_eq!(
            parse(b"\"abcde\"", lim).unwrap_err().kind,
            JsonErrorKind::StringTooLong
        );
        // 4 escapes decode to 4 bytes: fine.
        assert!(parse(br#""\n\n\n\n""#, lim).is_ok());
        assert_eq!(
            parse(br#""\n\n\n\n\n""#, lim).unwrap_err().kind,
            JsonErrorKind::StringTooLong
        );
        // Keys count too.
        assert_eq!(
            parse(br#"{"abcde":1}"#, lim).unwrap_err().kind,
            JsonErrorKind::StringTooLong
        );
        // A surrogate pair is 12 bytes of input but 4 decoded.
        assert!(parse(br#""\ud83d\ude00""#, lim).is_ok());
    }

    #[test]
    fn huge_string() {
        let big = "x".repeat(1 << 20);
        let json = format!("[\"{big}\", \"{big}\\t\"]");
        let lim = JsonLimits {
            max_depth: 8,
            max_string_bytes: 2 << 20,
        };
        let d = parse(json.as_bytes(), lim).unwrap();
        assert_eq!(d.str_bytes(1).len(), 1 << 20);
        assert_eq!(d.str_bytes(2).len(), (1 << 20) + 1);
        let e = parse(json.as_bytes(), LIMITS).unwrap_err();
        assert_eq!(e.kind, JsonErrorKind::StringTooLong);
        assert_eq!(e.offset, 1);
    }

    #[test]
    fn messages_name_the_offset() {
        let e = err(b"[1, @]");
        assert_eq!(e.offset, 4);
        assert_eq!(e.message, "expected a JSON value at byte 4, found '@'");
        let e = err(b"[1,");
        assert_eq!(e.message, "expected a JSON value at byte 3, end of input");
    }
}
