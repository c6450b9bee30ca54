//! JSONPath as the Amazon States Language uses it.
//!
//! A [`Path`] selects values from a document: `$`, `$.a.b`, `$['a b']`, `$.items[0]`, `$.items[-1]`,
//! `$.items[*].id`, `$.items[1:3]`, `$.items[0,2]`, `$..id`, `$.items[?(@.price < 10)]`. A path with none
//! of the wildcard, slice, union, descent or filter forms is *definite*: it selects exactly one value and
//! missing data is an error. An indefinite path always yields an array of what it matched.
//!
//! A *reference path* (ResultPath, ItemsPath, `Variable`) is definite and uses only names and indexes;
//! [`Path::set`] writes through one, creating missing objects on the way.

use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::fmt;

/// A parsed JSONPath.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Child(Vec<Selector>),
    Descendants(Vec<Selector>),
}

#[derive(Debug, Clone, PartialEq)]
enum Selector {
    Name(String),
    Index(i64),
    Wildcard,
    Slice { start: Option<i64>, end: Option<i64>, step: i64 },
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Or(Vec<Filter>),
    And(Vec<Filter>),
    Exists(Vec<Selector>),
    Compare { left: Operand, op: CompareOp, right: Operand },
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Current(Vec<Selector>),
    Literal(Value),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Why a path could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid JSONPath {path:?}: {reason}")]
pub struct PathSyntaxError {
    pub path: String,
    pub reason: String,
}

/// Why a path selected nothing, or could not be written through.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PathMiss(pub String);

impl Path {
    /// Parses a path that starts with `$`.
    pub fn parse(text: &str) -> Result<Path, PathSyntaxError> {
        let fail = |reason: String| PathSyntaxError { path: text.to_string(), reason };
        let mut p = Parser { s: text.as_bytes(), i: 0 };
        if !p.eat(b'$') {
            return Err(fail("a path starts with '$'".into()));
        }
        let mut segments = Vec::new();
        while p.i < p.s.len() {
            segments.push(p.segment().map_err(fail)?);
        }
        Ok(Path { text: text.to_string(), segments })
    }

    /// Parses a reference path: names and indexes only.
    pub fn parse_reference(text: &str) -> Result<Path, PathSyntaxError> {
        let path = Path::parse(text)?;
        if !path.is_reference() {
            return Err(PathSyntaxError {
                path: text.to_string(),
                reason: "a reference path may use only field names and array indexes (no *, .., slices, \
                         unions or filters)"
                    .into(),
            });
        }
        Ok(path)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the path can select at most one value.
    pub fn is_definite(&self) -> bool {
        self.segments.iter().all(|s| match s {
            Segment::Child(sel) => sel.len() == 1 && matches!(sel[0], Selector::Name(_) | Selector::Index(_)),
            Segment::Descendants(_) => false,
        })
    }

    fn is_reference(&self) -> bool {
        self.is_definite()
    }

    /// Every value the path selects, in document order.
    pub fn select<'a>(&self, doc: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![doc];
        for segment in &self.segments {
            let mut next = Vec::new();
            match segment {
                Segment::Child(selectors) => {
                    for v in current {
                        for s in selectors {
                            apply_selector(s, v, &mut next);
                        }
                    }
                }
                Segment::Descendants(selectors) => {
                    for v in current {
                        let mut all = Vec::new();
                        descendants(v, &mut all);
                        for d in all {
                            for s in selectors {
                                apply_selector(s, d, &mut next);
                            }
                        }
                    }
                }
            }
            current = next;
        }
        current
    }

    /// The value the path selects: the value itself for a definite path (missing data is an error), an
    /// array of all matches for an indefinite one.
    pub fn get(&self, doc: &Value) -> Result<Value, PathMiss> {
        let found = self.select(doc);
        if self.is_definite() {
            match found.first() {
                Some(v) => Ok((*v).clone()),
                None => Err(PathMiss(format!("the JSONPath '{}' could not be found in the input", self.text))),
            }
        } else {
            Ok(Value::Array(found.into_iter().cloned().collect()))
        }
    }

    /// Like [`Path::get`] but `None` where a definite path finds nothing (for `IsPresent`).
    pub fn find(&self, doc: &Value) -> Option<Value> {
        self.get(doc).ok()
    }

    /// Writes `value` at this reference path inside `doc`, creating missing objects. `$` replaces `doc`.
    pub fn set(&self, doc: Value, value: Value) -> Result<Value, PathMiss> {
        let mut keys = Vec::new();
        for segment in &self.segments {
            match segment {
                Segment::Child(sel) if sel.len() == 1 => match &sel[0] {
                    Selector::Name(n) => keys.push(Key::Name(n)),
                    Selector::Index(i) => keys.push(Key::Index(*i)),
                    _ => return Err(self.not_reference()),
                },
                _ => return Err(self.not_reference()),
            }
        }
        let mut doc = doc;
        set_in(&mut doc, &keys, value).map_err(|why| PathMiss(format!("cannot write at '{}': {why}", self.text)))?;
        Ok(doc)
    }

    fn not_reference(&self) -> PathMiss {
        PathMiss(format!("'{}' is not a reference path", self.text))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a [`DataPath`] reads: the state's input (`$…`), the context object (`$$…`) or a workflow variable
/// (`$name…`, Step Functions' variables in JSONPath).
#[derive(Debug, Clone, PartialEq)]
pub enum Root {
    Input,
    Context,
    Variable(String),
}

/// A path on a state's input, the context object or a variable.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPath {
    pub root: Root,
    pub path: Path,
}

/// The documents a [`DataPath`] can read: the state's input (or what the field reads as `$`), the context
/// object and the variables in scope.
#[derive(Debug, Clone, Copy)]
pub struct Docs<'a> {
    pub input: &'a Value,
    pub context: &'a Value,
    pub vars: &'a Map<String, Value>,
}

impl DataPath {
    pub fn parse(text: &str) -> Result<DataPath, PathSyntaxError> {
        let Some(rest) = text.strip_prefix('$') else {
            return Ok(DataPath { root: Root::Input, path: Path::parse(text)? });
        };
        let (root, tail) = if let Some(tail) = rest.strip_prefix('$') {
            (Root::Context, tail)
        } else if rest.starts_with(|c: char| c.is_alphabetic() || c == '_') {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let name = &rest[..end];
            if !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(PathSyntaxError {
                    path: text.to_string(),
                    reason: format!("'${name}' is not a variable: a name has only letters, digits and '_'"),
                });
            }
            (Root::Variable(name.to_string()), &rest[end..])
        } else {
            return Ok(DataPath { root: Root::Input, path: Path::parse(text)? });
        };
        let mut path = Path::parse(&format!("${tail}")).map_err(|e| PathSyntaxError { path: text.to_string(), ..e })?;
        path.text = text.to_string();
        Ok(DataPath { root, path })
    }

    /// The document the path starts from; `None` for a variable not in scope.
    fn document<'a>(&self, docs: &Docs<'a>) -> Option<&'a Value> {
        match &self.root {
            Root::Input => Some(docs.input),
            Root::Context => Some(docs.context),
            Root::Variable(name) => docs.vars.get(name),
        }
    }

    pub fn get(&self, docs: &Docs<'_>) -> Result<Value, PathMiss> {
        match self.document(docs) {
            Some(doc) => self.path.get(doc),
            None => Err(self.undefined()),
        }
    }

    pub fn find(&self, docs: &Docs<'_>) -> Option<Value> {
        self.path.find(self.document(docs)?)
    }

    fn undefined(&self) -> PathMiss {
        let name = match &self.root {
            Root::Variable(name) => name.as_str(),
            _ => "",
        };
        PathMiss(format!(
            "the JSONPath '{}' reads the variable '{name}', which no state has assigned in this scope",
            self.path.text
        ))
    }

    /// The variable the path reads, if it reads one.
    pub fn variable(&self) -> Option<&str> {
        match &self.root {
            Root::Variable(name) => Some(name),
            _ => None,
        }
    }
}

enum Key<'a> {
    Name(&'a str),
    Index(i64),
}

fn set_in(target: &mut Value, keys: &[Key<'_>], value: Value) -> Result<(), String> {
    let Some((first, rest)) = keys.split_first() else {
        *target = value;
        return Ok(());
    };
    match first {
        Key::Name(name) => {
            if target.is_null() && !rest.is_empty() {
                *target = Value::Object(Map::new());
            }
            let Value::Object(map) = target else {
                return Err(format!("the field '{name}' cannot be set on a {}", kind(target)));
            };
            let slot = map.entry(name.to_string()).or_insert(Value::Null);
            if rest.is_empty() {
                *slot = value;
                Ok(())
            } else {
                if slot.is_null() {
                    *slot = Value::Object(Map::new());
                }
                set_in(slot, rest, value)
            }
        }
        Key::Index(i) => {
            let Value::Array(items) = target else {
                return Err(format!("index [{i}] cannot be set on a {}", kind(target)));
            };
            let len = items.len();
            let Some(at) = index(len, *i) else {
                return Err(format!("index [{i}] is outside an array of {len}"));
            };
            set_in(&mut items[at], rest, value)
        }
    }
}

/// Where index `i` falls in an array of `len`, counting from the end when negative; `None` outside it.
fn index(len: usize, i: i64) -> Option<usize> {
    let at = if i < 0 { len.checked_sub(usize::try_from(i.unsigned_abs()).ok()?)? } else { usize::try_from(i).ok()? };
    (at < len).then_some(at)
}

/// The JSON type name of a value, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn descendants<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Array(items) => items.iter().for_each(|c| descendants(c, out)),
        Value::Object(map) => map.values().for_each(|c| descendants(c, out)),
        _ => {}
    }
}

fn apply_selector<'a>(selector: &Selector, v: &'a Value, out: &mut Vec<&'a Value>) {
    match selector {
        Selector::Name(name) => {
            if let Some(c) = v.as_object().and_then(|m| m.get(name)) {
                out.push(c);
            }
        }
        Selector::Index(i) => {
            if let Some(items) = v.as_array() {
                if let Some(at) = index(items.len(), *i) {
                    out.push(&items[at]);
                }
            }
        }
        Selector::Wildcard => match v {
            Value::Array(items) => out.extend(items.iter()),
            Value::Object(map) => out.extend(map.values()),
            _ => {}
        },
        Selector::Slice { start, end, step } => {
            if let Some(items) = v.as_array() {
                let len = items.len() as i64;
                let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
                if *step > 0 {
                    let (mut i, e) = (norm(start.unwrap_or(0)), norm(end.unwrap_or(len)));
                    while i < e {
                        // 0 <= i < e <= len.
                        out.extend(usize::try_from(i).ok().and_then(|i| items.get(i)));
                        i += step;
                    }
                } else {
                    let mut i = start.map(norm).unwrap_or(len).min(len - 1);
                    let e = end.map(norm).unwrap_or(-1);
                    while i > e && i >= 0 {
                        // 0 <= i < len.
                        out.extend(usize::try_from(i).ok().and_then(|i| items.get(i)));
                        i += step;
                    }
                }
            }
        }
        Selector::Filter(filter) => {
            let candidates: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                Value::Object(map) => map.values().collect(),
                _ => Vec::new(),
            };
            out.extend(candidates.into_iter().filter(|c| filter.test(c)));
        }
    }
}

fn relative<'a>(selectors: &[Selector], v: &'a Value) -> Option<&'a Value> {
    let mut cur = v;
    for s in selectors {
        let mut out = Vec::new();
        apply_selector(s, cur, &mut out);
        cur = out.first()?;
    }
    Some(cur)
}

impl Filter {
    fn test(&self, v: &Value) -> bool {
        match self {
            Filter::Or(fs) => fs.iter().any(|f| f.test(v)),
            Filter::And(fs) => fs.iter().all(|f| f.test(v)),
            Filter::Exists(sel) => relative(sel, v).is_some(),
            Filter::Compare { left, op, right } => {
                let resolve = |o: &Operand| match o {
                    Operand::Current(sel) => relative(sel, v).cloned(),
                    Operand::Literal(l) => Some(l.clone()),
                };
                let (Some(a), Some(b)) = (resolve(left), resolve(right)) else { return false };
                let ord = match (&a, &b) {
                    (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()),
                    (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
                    _ => None,
                };
                match op {
                    CompareOp::Eq => numbers_equal(&a, &b) || a == b,
                    CompareOp::Ne => !(numbers_equal(&a, &b) || a == b),
                    CompareOp::Lt => ord == Some(Ordering::Less),
                    CompareOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                    CompareOp::Gt => ord == Some(Ordering::Greater),
                    CompareOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                }
            }
        }
    }
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn segment(&mut self) -> Result<Segment, String> {
        if self.eat(b'.') {
            let descend = self.eat(b'.');
            let selectors = if self.peek() == Some(b'[') {
                if !descend {
                    return Err(format!("unexpected '[' after '.' at offset {}", self.i));
                }
                self.i += 1;
                self.bracket()?
            } else if self.eat(b'*') {
                vec![Selector::Wildcard]
            } else {
                vec![Selector::Name(self.name()?)]
            };
            Ok(if descend { Segment::Descendants(selectors) } else { Segment::Child(selectors) })
        } else if self.eat(b'[') {
            Ok(Segment::Child(self.bracket()?))
        } else {
            Err(format!("expected '.' or '[' at offset {}", self.i))
        }
    }

    fn name(&mut self) -> Result<String, String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if matches!(c, b'.' | b'[' | b']' | b'(' | b')' | b' ' | b',' | b'=' | b'<' | b'>' | b'!' | b'&' | b'|') {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return Err(format!("expected a field name at offset {start}"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// After `[`: a comma-separated list of selectors up to `]`.
    fn bracket(&mut self) -> Result<Vec<Selector>, String> {
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            out.push(self.selector()?);
            self.skip_ws();
            if self.eat(b']') {
                break;
            }
            if !self.eat(b',') {
                return Err(format!("expected ',' or ']' at offset {}", self.i));
            }
        }
        if out.len() > 1 && out.iter().any(|s| matches!(s, Selector::Filter(_) | Selector::Slice { .. })) {
            return Err("a filter or slice cannot be part of a union".into());
        }
        Ok(out)
    }

    fn selector(&mut self) -> Result<Selector, String> {
        match self.peek() {
            Some(b'*') => {
                self.i += 1;
                Ok(Selector::Wildcard)
            }
            Some(b'\'' | b'"') => Ok(Selector::Name(self.quoted()?)),
            Some(b'?') => {
                self.i += 1;
                if !self.eat(b'(') {
                    return Err("a filter is written [?(...)]".into());
                }
                let f = self.filter_or()?;
                self.skip_ws();
                if !self.eat(b')') {
                    return Err(format!("expected ')' closing the filter at offset {}", self.i));
                }
                Ok(Selector::Filter(f))
            }
            _ => {
                let start = self.int()?;
                if self.eat(b':') {
                    let end = self.int()?;
                    let step = if self.eat(b':') { self.int()?.unwrap_or(1) } else { 1 };
                    if step == 0 {
                        return Err("a slice step cannot be 0".into());
                    }
                    Ok(Selector::Slice { start, end, step })
                } else {
                    start.map(Selector::Index).ok_or_else(|| format!("expected an index at offset {}", self.i))
                }
            }
        }
    }

    fn int(&mut self) -> Result<Option<i64>, String> {
        self.skip_ws();
        let start = self.i;
        self.eat(b'-');
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default();
        self.skip_ws();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| format!("'{text}' is not an integer"))
    }

    fn quoted(&mut self) -> Result<String, String> {
        let q = self.s[self.i];
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated quoted name".into()),
                // A backslash escapes the quote that encloses the name, or a backslash; before anything
                // else it is itself (Step Functions reads `$['Test\""Name"']` as the key `Test\""Name"`).
                Some(b'\\') => match self.s.get(self.i + 1).copied() {
                    Some(c) if c == q || c == b'\\' => {
                        self.i += 1;
                        out.push(c);
                    }
                    Some(_) => out.push(b'\\'),
                    None => return Err("unterminated quoted name".into()),
                },
                Some(c) if c == q => {
                    self.i += 1;
                    break;
                }
                Some(c) => out.push(c),
            }
            self.i += 1;
        }
        String::from_utf8(out).map_err(|_| "quoted name is not UTF-8".into())
    }

    fn filter_or(&mut self) -> Result<Filter, String> {
        let mut parts = vec![self.filter_and()?];
        loop {
            self.skip_ws();
            if self.s[self.i..].starts_with(b"||") {
                self.i += 2;
                parts.push(self.filter_and()?);
            } else {
                break;
            }
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::Or(parts) })
    }

    fn filter_and(&mut self) -> Result<Filter, String> {
        let mut parts = vec![self.filter_atom()?];
        loop {
            self.skip_ws();
            if self.s[self.i..].starts_with(b"&&") {
                self.i += 2;
                parts.push(self.filter_atom()?);
            } else {
                break;
            }
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::And(parts) })
    }

    fn filter_atom(&mut self) -> Result<Filter, String> {
        self.skip_ws();
        if self.eat(b'(') {
            let f = self.filter_or()?;
            self.skip_ws();
            if !self.eat(b')') {
                return Err(format!("expected ')' at offset {}", self.i));
            }
            return Ok(f);
        }
        let left = self.operand()?;
        self.skip_ws();
        let op = [("==", CompareOp::Eq), ("!=", CompareOp::Ne), ("<=", CompareOp::Le), (">=", CompareOp::Ge)]
            .into_iter()
            .chain([("<", CompareOp::Lt), (">", CompareOp::Gt)])
            .find(|(t, _)| self.s[self.i..].starts_with(t.as_bytes()));
        match (op, left) {
            (Some((t, op)), left) => {
                self.i += t.len();
                self.skip_ws();
                let right = self.operand()?;
                Ok(Filter::Compare { left, op, right })
            }
            (None, Operand::Current(sel)) => Ok(Filter::Exists(sel)),
            (None, Operand::Literal(_)) => Err("a filter needs a comparison or an @ path".into()),
        }
    }

    fn operand(&mut self) -> Result<Operand, String> {
        self.skip_ws();
        match self.peek() {
            Some(b'@') => {
                self.i += 1;
                let mut sel = Vec::new();
                while matches!(self.peek(), Some(b'.' | b'[')) {
                    match self.segment()? {
                        Segment::Child(mut s) if s.len() == 1 => sel.push(s.remove(0)),
                        _ => return Err("filter paths use names and indexes only".into()),
                    }
                }
                Ok(Operand::Current(sel))
            }
            Some(b'\'' | b'"') => Ok(Operand::Literal(Value::String(self.quoted()?))),
            _ => {
                let start = self.i;
                while let Some(c) = self.peek() {
                    if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.') {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default();
                serde_json::from_str::<Value>(text)
                    .ok()
                    .filter(|v| !v.is_array() && !v.is_object())
                    .map(Operand::Literal)
                    .ok_or_else(|| format!("'{text}' is not a literal in a filter"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(path: &str, doc: &Value) -> Result<Value, PathMiss> {
        Path::parse(path).unwrap().get(doc)
    }

    fn store() -> Value {
        json!({"store": {"book": [
            {"category": "reference", "author": "Nigel Rees", "title": "Sayings", "price": 8.95},
            {"category": "fiction", "author": "Evelyn Waugh", "title": "Sword", "price": 12.99},
            {"category": "fiction", "author": "Herman Melville", "title": "Moby Dick", "isbn": "0-553", "price": 8.99}
        ], "bicycle": {"color": "red", "price": 19.95}}, "a b": 1, "n": null})
    }

    #[test]
    fn definite_paths_select_one_value() {
        let d = store();
        assert_eq!(get("$", &d).unwrap(), d);
        assert_eq!(get("$.store.bicycle.color", &d).unwrap(), json!("red"));
        assert_eq!(get("$['a b']", &d).unwrap(), json!(1));
        assert_eq!(get("$.store.book[1].author", &d).unwrap(), json!("Evelyn Waugh"));
        assert_eq!(get("$.store.book[-1].title", &d).unwrap(), json!("Moby Dick"));
        assert_eq!(get("$.n", &d).unwrap(), Value::Null);
        assert!(get("$.store.missing", &d).is_err());
        assert!(get("$.store.book[7]", &d).is_err());
        assert!(get("$.store.book[-4]", &d).is_err());
    }

    #[test]
    fn indefinite_paths_yield_arrays() {
        let d = store();
        assert_eq!(get("$.store.book[*].price", &d).unwrap(), json!([8.95, 12.99, 8.99]));
        assert_eq!(get("$.store.book[0,2].price", &d).unwrap(), json!([8.95, 8.99]));
        assert_eq!(get("$.store.book[1:].price", &d).unwrap(), json!([12.99, 8.99]));
        assert_eq!(get("$.store.book[:2].price", &d).unwrap(), json!([8.95, 12.99]));
        assert_eq!(get("$.store.book[::-1].price", &d).unwrap(), json!([8.99, 12.99, 8.95]));
        assert_eq!(get("$..isbn", &d).unwrap(), json!(["0-553"]));
        assert_eq!(get("$.store.book[?(@.price < 9)].title", &d).unwrap(), json!(["Sayings", "Moby Dick"]));
        assert_eq!(get("$.store.book[?(@.isbn)].author", &d).unwrap(), json!(["Herman Melville"]));
        assert_eq!(
            get("$.store.book[?(@.category == 'fiction' && @.price > 10)].title", &d).unwrap(),
            json!(["Sword"])
        );
        assert_eq!(get("$.nothing[*]", &d).unwrap(), json!([]));
    }

    /// Recorded on Step Functions (localstack's snapshot `test_escape_sequence_parsing`): in a quoted name a
    /// backslash escapes the enclosing quote (or a backslash) only; before anything else it is itself.
    #[test]
    fn a_backslash_in_a_quoted_name_escapes_only_its_quote() {
        let d = json!({"Test\\\"\"Name\"": "Value", "it's": 1, "a\\b": 2});
        assert_eq!(get(r#"$['Test\""Name"']"#, &d).unwrap(), json!("Value"));
        assert_eq!(get(r"$['it\'s']", &d).unwrap(), json!(1));
        assert_eq!(get(r"$['a\\b']", &d).unwrap(), json!(2));
        assert_eq!(get(r"$['a\b']", &d).unwrap(), json!(2), "a backslash before another character is itself");
    }

    #[test]
    fn syntax_errors_are_reported() {
        for bad in ["", "a.b", "$.", "$[", "$['x'", "$[1:2:0]", "$.a[?(@.x <)]", "$.a[?(1)]", "$x"] {
            assert!(Path::parse(bad).is_err(), "{bad} should not parse");
        }
        assert!(Path::parse_reference("$.a[*]").is_err());
        assert!(Path::parse_reference("$..a").is_err());
        assert!(Path::parse_reference("$.a[0].b").is_ok());
    }

    #[test]
    fn set_creates_objects_and_replaces_at_root() {
        let p = Path::parse_reference("$.result.inner").unwrap();
        assert_eq!(p.set(json!({"a": 1}), json!(5)).unwrap(), json!({"a": 1, "result": {"inner": 5}}));
        assert_eq!(Path::parse_reference("$").unwrap().set(json!({"a": 1}), json!(2)).unwrap(), json!(2));
        let p = Path::parse_reference("$.list[1]").unwrap();
        assert_eq!(p.set(json!({"list": [0, 0]}), json!(9)).unwrap(), json!({"list": [0, 9]}));
        assert!(p.set(json!({"list": [0]}), json!(9)).is_err());
        assert!(Path::parse_reference("$.a.b").unwrap().set(json!({"a": "text"}), json!(1)).is_err());
        assert!(Path::parse_reference("$.a").unwrap().set(json!("text"), json!(1)).is_err());
    }

    /// Property: for every value reachable in a document, the definite path built from its location
    /// selects exactly it, and writing a fresh value there then reading it back returns the fresh value.
    #[test]
    fn property_locations_round_trip() {
        fn walk(v: &Value, path: String, out: &mut Vec<(String, Value)>) {
            out.push((path.clone(), v.clone()));
            match v {
                Value::Object(m) => m.iter().for_each(|(k, c)| walk(c, format!("{path}['{k}']"), out)),
                Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| walk(c, format!("{path}[{i}]"), out)),
                _ => {}
            }
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        fn gen(depth: u32, next: &mut dyn FnMut() -> u64) -> Value {
            match next() % if depth == 0 { 3 } else { 5 } {
                0 => json!(next() % 100),
                1 => json!(format!("s{}", next() % 10)),
                2 => Value::Null,
                3 => Value::Array((0..next() % 4).map(|_| gen(depth - 1, next)).collect()),
                _ => Value::Object((0..next() % 4).map(|i| (format!("k{i}"), gen(depth - 1, next))).collect()),
            }
        }
        for _ in 0..200 {
            let doc = gen(4, &mut next);
            let mut locations = Vec::new();
            walk(&doc, "$".into(), &mut locations);
            for (loc, value) in locations {
                let path = Path::parse_reference(&loc).unwrap();
                assert_eq!(path.get(&doc).unwrap(), value, "{loc}");
                let written = path.set(doc.clone(), json!("fresh")).unwrap();
                assert_eq!(path.get(&written).unwrap(), json!("fresh"), "{loc}");
            }
        }
    }

    #[test]
    fn data_paths_read_the_input_the_context_or_a_variable() {
        let (input, context) = (json!({"a": 1}), json!({"State": {"Name": "S"}}));
        let vars = json!({"x": {"y": [5, 6]}, "_n2": 3});
        let docs = Docs { input: &input, context: &context, vars: vars.as_object().unwrap() };
        let read = |text: &str| DataPath::parse(text).unwrap().get(&docs);
        assert_eq!(read("$.a"), Ok(json!(1)));
        assert_eq!(read("$$.State.Name"), Ok(json!("S")));
        assert_eq!(read("$x"), Ok(json!({"y": [5, 6]})));
        assert_eq!(read("$x.y[1]"), Ok(json!(6)));
        assert_eq!(read("$x['y'][0]"), Ok(json!(5)));
        assert_eq!(read("$_n2"), Ok(json!(3)));
        assert_eq!(DataPath::parse("$x.y").unwrap().path.as_str(), "$x.y", "messages quote the path as written");
        assert_eq!(DataPath::parse("$x").unwrap().variable(), Some("x"));
        assert_eq!(DataPath::parse("$.x").unwrap().variable(), None);
        let missing = read("$nope.y").unwrap_err().0;
        assert!(missing.contains("'$nope.y'") && missing.contains("'nope'"), "{missing}");
        assert_eq!(DataPath::parse("$nope").unwrap().find(&docs), None);
        assert!(read("$x.z").unwrap_err().0.contains("could not be found"));
        let bad = DataPath::parse("$x-y").unwrap_err();
        assert!(bad.reason.contains("not a variable"), "{bad}");
        assert!(DataPath::parse("$x..").is_err());
    }
}
