//! The 18 intrinsic functions (`States.Format('{}', $.x)` …), parsed once and evaluated against an input,
//! the context object and a caller-supplied source of randomness.

use crate::path::{kind, DataPath, Docs};
use base64::Engine as _;
use serde_json::{json, Value};
use stoke_core::num::saturate_i64;

/// Where `States.UUID` and an unseeded `States.MathRandom` get their randomness; the engine supplies it
/// so evaluation stays a pure function of its arguments.
pub trait Entropy {
    fn next_u64(&mut self) -> u64;
}

/// A deterministic generator (xorshift64*) for seeded `States.MathRandom` and for tests.
#[derive(Debug, Clone)]
pub struct SeededEntropy(u64);

impl SeededEntropy {
    pub fn new(seed: u64) -> Self {
        SeededEntropy(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }
}

impl Entropy for SeededEntropy {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Everything an intrinsic or a payload template reads.
pub struct Scope<'a> {
    /// The input (what `$` reads), the context object and the variables.
    pub docs: Docs<'a>,
    pub entropy: &'a mut dyn Entropy,
}

/// A parsed intrinsic call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    name: Function,
    args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Literal(Value),
    Path(DataPath),
    Call(Call),
}

macro_rules! functions {
    ($($variant:ident = $name:literal ($min:expr, $max:expr)),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq)]
        enum Function { $($variant),* }

        impl Function {
            fn from_name(name: &str) -> Option<Function> {
                match name { $($name => Some(Function::$variant),)* _ => None }
            }
            fn name(self) -> &'static str {
                match self { $(Function::$variant => $name),* }
            }
            fn arity(self) -> (usize, usize) {
                match self { $(Function::$variant => ($min, $max)),* }
            }
        }

        /// The names of every intrinsic function.
        pub const FUNCTIONS: &[&str] = &[$($name),*];
    };
}

functions! {
    Format = "States.Format" (1, usize::MAX),
    StringToJson = "States.StringToJson" (1, 1),
    JsonToString = "States.JsonToString" (1, 1),
    Array = "States.Array" (0, usize::MAX),
    ArrayPartition = "States.ArrayPartition" (2, 2),
    ArrayContains = "States.ArrayContains" (2, 2),
    ArrayRange = "States.ArrayRange" (3, 3),
    ArrayGetItem = "States.ArrayGetItem" (2, 2),
    ArrayLength = "States.ArrayLength" (1, 1),
    ArrayUnique = "States.ArrayUnique" (1, 1),
    Base64Encode = "States.Base64Encode" (1, 1),
    Base64Decode = "States.Base64Decode" (1, 1),
    Hash = "States.Hash" (2, 2),
    JsonMerge = "States.JsonMerge" (3, 3),
    MathRandom = "States.MathRandom" (2, 3),
    MathAdd = "States.MathAdd" (2, 2),
    StringSplit = "States.StringSplit" (2, 2),
    Uuid = "States.UUID" (0, 0),
}

/// The most calls one field may nest.
pub const MAX_NESTING: usize = 10;
const MAX_RANGE: usize = 1000;
const MAX_BASE64_INPUT: usize = 10_000;

/// True when a `.$` value is an intrinsic call rather than a path.
pub fn looks_like_call(text: &str) -> bool {
    text.starts_with("States.")
}

impl Call {
    /// Parses `States.Name(args…)`.
    pub fn parse(text: &str) -> Result<Call, String> {
        let mut p = Parser { s: text, i: 0, depth: 0 };
        let call = p.call()?;
        p.ws();
        if p.i != text.len() {
            return Err(format!("unexpected text after the call at offset {}: '{}'", p.i, &text[p.i..]));
        }
        Ok(call)
    }

    /// Evaluates the call; the error message becomes the `Cause` of `States.IntrinsicFailure`.
    pub fn eval(&self, scope: &mut Scope<'_>) -> Result<Value, String> {
        let mut args = Vec::with_capacity(self.args.len());
        for a in &self.args {
            args.push(match a {
                Arg::Literal(v) => v.clone(),
                Arg::Path(p) => p.get(&scope.docs).map_err(|e| e.0)?,
                Arg::Call(c) => c.eval(scope)?,
            });
        }
        let f = self.name;
        let name = f.name();
        let int = |v: &Value, what: &str| -> Result<i64, String> {
            v.as_i64()
                .or_else(|| v.as_f64().filter(|x| x.fract() == 0.0).map(saturate_i64))
                .ok_or_else(|| format!("{name}: {what} must be an integer, got {}", show(v)))
        };
        // MathAdd's and MathRandom's numbers: a non-integer is rounded to the nearest integer, halves up
        // (towards +∞), each on its own, as Step Functions does (recorded: 1.5 + 1.51 is 4, -0.5 + 0 is 0).
        let rounded = |v: &Value, what: &str| -> Result<i64, String> {
            v.as_i64()
                .or_else(|| v.as_f64().filter(|x| x.is_finite()).map(|x| saturate_i64((x + 0.5).floor())))
                .ok_or_else(|| format!("{name}: {what} must be a number, got {}", show(v)))
        };
        let string = |v: &Value, what: &str| -> Result<String, String> {
            v.as_str().map(str::to_string).ok_or_else(|| format!("{name}: {what} must be a string, got {}", show(v)))
        };
        let array = |v: &Value, what: &str| -> Result<Vec<Value>, String> {
            v.as_array().cloned().ok_or_else(|| format!("{name}: {what} must be an array, got {}", show(v)))
        };
        Ok(match f {
            Function::Format => {
                let template = string(&args[0], "the template")?;
                format(&template, &args[1..]).map_err(|e| format!("{name}: {e}"))?
            }
            Function::StringToJson => {
                let s = string(&args[0], "the argument")?;
                // Step Functions reads an empty (or blank) string as null rather than failing.
                if s.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&s).map_err(|e| format!("{name}: the string is not JSON: {e}"))?
                }
            }
            Function::JsonToString => Value::String(args[0].to_string()),
            Function::Array => Value::Array(args),
            Function::ArrayPartition => {
                let items = array(&args[0], "the first argument")?;
                let size = int(&args[1], "the chunk size")?;
                if size <= 0 {
                    return Err(format!("{name}: the chunk size must be greater than 0, got {size}"));
                }
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                Value::Array(items.chunks(size).map(|c| Value::Array(c.to_vec())).collect())
            }
            Function::ArrayContains => Value::Bool(array(&args[0], "the first argument")?.contains(&args[1])),
            Function::ArrayRange => {
                let (start, end, step) = (int(&args[0], "start")?, int(&args[1], "end")?, int(&args[2], "step")?);
                if step == 0 {
                    return Err(format!("{name}: step cannot be 0"));
                }
                let mut out = Vec::new();
                let mut x = start;
                while (step > 0 && x <= end) || (step < 0 && x >= end) {
                    if out.len() == MAX_RANGE {
                        return Err(format!("{name}: the range has more than {MAX_RANGE} items"));
                    }
                    out.push(json!(x));
                    x += step;
                }
                Value::Array(out)
            }
            Function::ArrayGetItem => {
                let items = array(&args[0], "the first argument")?;
                let i = int(&args[1], "the index")?;
                usize::try_from(i)
                    .ok()
                    .and_then(|i| items.get(i).cloned())
                    .ok_or_else(|| format!("{name}: index {i} is outside an array of {}", items.len()))?
            }
            Function::ArrayLength => json!(array(&args[0], "the argument")?.len()),
            Function::ArrayUnique => {
                let mut out: Vec<Value> = Vec::new();
                for v in array(&args[0], "the argument")? {
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
                Value::Array(out)
            }
            Function::Base64Encode => {
                let s = string(&args[0], "the argument")?;
                if s.chars().count() > MAX_BASE64_INPUT {
                    return Err(format!("{name}: the input is longer than {MAX_BASE64_INPUT} characters"));
                }
                Value::String(base64::engine::general_purpose::STANDARD.encode(s))
            }
            Function::Base64Decode => {
                let s = string(&args[0], "the argument")?;
                if s.chars().count() > MAX_BASE64_INPUT {
                    return Err(format!("{name}: the input is longer than {MAX_BASE64_INPUT} characters"));
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .map_err(|e| format!("{name}: not valid base64: {e}"))?;
                Value::String(String::from_utf8(bytes).map_err(|_| format!("{name}: the decoded bytes are not UTF-8"))?)
            }
            Function::Hash => {
                let data = match &args[0] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let algorithm = string(&args[1], "the algorithm")?;
                Value::String(hash(&algorithm, data.as_bytes()).map_err(|e| format!("{name}: {e}"))?)
            }
            Function::JsonMerge => {
                let (Value::Object(_), Value::Object(_)) = (&args[0], &args[1]) else {
                    return Err(format!("{name}: both arguments must be objects"));
                };
                let deep = args[2].as_bool().ok_or_else(|| format!("{name}: the third argument must be a boolean"))?;
                merge(args[0].clone(), args[1].clone(), deep)
            }
            Function::MathRandom => {
                let (start, end) = (rounded(&args[0], "start")?, rounded(&args[1], "end")?);
                if end <= start {
                    return Err(format!("{name}: end ({end}) must be greater than start ({start})"));
                }
                let span = end.abs_diff(start);
                let r = match args.get(2) {
                    // The seed's bits, whatever its sign.
                    Some(seed) => SeededEntropy::new(int(seed, "the seed")?.cast_unsigned()).next_u64(),
                    None => scope.entropy.next_u64(),
                };
                // Below `end`, so it never wraps.
                json!(start.wrapping_add_unsigned(r % span))
            }
            Function::MathAdd => {
                let (a, b) = (rounded(&args[0], "the first argument")?, rounded(&args[1], "the second argument")?);
                json!(a.checked_add(b).ok_or_else(|| format!("{name}: the sum overflows"))?)
            }
            Function::StringSplit => {
                let s = string(&args[0], "the string")?;
                let delims = string(&args[1], "the delimiters")?;
                Value::Array(s.split(|c| delims.contains(c)).filter(|p| !p.is_empty()).map(|p| json!(p)).collect())
            }
            Function::Uuid => Value::String(random_uuid(scope.entropy)),
        })
    }
}

/// A version-4 UUID drawn from `entropy` (`States.UUID`'s).
pub fn random_uuid(entropy: &mut dyn Entropy) -> String {
    let (a, b) = (entropy.next_u64(), entropy.next_u64());
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    uuid_v4(bytes)
}

/// A version-4 UUID (`xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`) from 16 random bytes.
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h = stoke_core::hex::encode(&bytes);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn show(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 60 {
        format!("a {}", kind(v))
    } else {
        format!("{text} ({})", kind(v))
    }
}

fn format(template: &str, args: &[Value]) -> Result<Value, String> {
    let mut out = String::new();
    let mut used = 0;
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                let arg = args.get(used).ok_or_else(|| {
                    format!("the template has more {{}} placeholders than the {} arguments given", args.len())
                })?;
                render(arg, &mut out);
                used += 1;
            }
            c => out.push(c),
        }
    }
    if used != args.len() {
        return Err(format!("the template has {used} placeholders but {} arguments were given", args.len()));
    }
    Ok(Value::String(out))
}

/// An argument of `States.Format` as Step Functions writes it: a string as it is, an object as
/// `{key=value, …}` and an array as `[a, b]` (recorded: `{Arg1=1, Arg2=[]}`), values inside them the same way;
/// numbers, booleans and null as JSON.
fn render(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Object(m) => {
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push('=');
                render(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn merge(base: Value, over: Value, deep: bool) -> Value {
    match (base, over) {
        (Value::Object(mut a), Value::Object(b)) => {
            for (k, v) in b {
                let merged = match a.remove(&k) {
                    Some(old) if deep && old.is_object() && v.is_object() => merge(old, v, true),
                    _ => v,
                };
                a.insert(k, merged);
            }
            Value::Object(a)
        }
        (_, over) => over,
    }
}

pub(crate) fn hash(algorithm: &str, data: &[u8]) -> Result<String, String> {
    use sha2::Digest;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    Ok(match algorithm {
        "MD5" => hex(&md5::Md5::digest(data)),
        "SHA-1" => hex(&sha1::Sha1::digest(data)),
        "SHA-256" => hex(&sha2::Sha256::digest(data)),
        "SHA-384" => hex(&sha2::Sha384::digest(data)),
        "SHA-512" => hex(&sha2::Sha512::digest(data)),
        other => return Err(format!("unknown algorithm '{other}'; use MD5, SHA-1, SHA-256, SHA-384 or SHA-512")),
    })
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.i..]
    }

    fn ws(&mut self) {
        while self.rest().starts_with([' ', '\t']) {
            self.i += 1;
        }
    }

    fn call(&mut self) -> Result<Call, String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!("intrinsic calls nest at most {MAX_NESTING} deep"));
        }
        self.ws();
        let open = self.rest().find('(').ok_or_else(|| format!("'{}' is not a call: missing '('", self.rest()))?;
        let fname = self.rest()[..open].trim();
        let name = Function::from_name(fname).ok_or_else(|| {
            format!("unknown intrinsic function '{fname}'; the functions are {}", FUNCTIONS.join(", "))
        })?;
        self.i += open + 1;
        let mut args = Vec::new();
        self.ws();
        if self.rest().starts_with(')') {
            self.i += 1;
        } else {
            loop {
                args.push(self.arg(name == Function::Format && args.is_empty())?);
                self.ws();
                if self.rest().starts_with(')') {
                    self.i += 1;
                    break;
                }
                if !self.rest().starts_with(',') {
                    return Err(format!("expected ',' or ')' in {} at offset {}", name.name(), self.i));
                }
                self.i += 1;
            }
        }
        let (min, max) = name.arity();
        if args.len() < min || args.len() > max {
            let wanted = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(format!("{} takes {wanted} arguments, got {}", name.name(), args.len()));
        }
        self.depth -= 1;
        Ok(Call { name, args })
    }

    /// One argument; in a `States.Format` template (`template`), `\{` and `\}` stay escaped so the
    /// formatter can tell them from placeholders.
    fn arg(&mut self, template: bool) -> Result<Arg, String> {
        self.ws();
        let s = self.s;
        let rest = &s[self.i..];
        if rest.starts_with('\'') {
            let mut out = String::new();
            let mut chars = rest.char_indices().skip(1);
            while let Some((at, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, e @ ('{' | '}'))) if template => {
                            out.push('\\');
                            out.push(e);
                        }
                        Some((_, e)) => out.push(e),
                        None => break,
                    },
                    '\'' => {
                        self.i += at + 1;
                        return Ok(Arg::Literal(Value::String(out)));
                    }
                    c => out.push(c),
                }
            }
            return Err("unterminated string argument".into());
        }
        if rest.starts_with("States.") {
            return Ok(Arg::Call(self.call()?));
        }
        // A path or a literal runs to the next ',' or ')' outside brackets and quotes.
        let mut depth = 0i32;
        let mut quote = None;
        let mut end = rest.len();
        for (at, c) in rest.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '[' | '(') => depth += 1,
                (None, ']') => depth -= 1,
                (None, ')') if depth > 0 => depth -= 1,
                (None, ',' | ')') if depth == 0 => {
                    end = at;
                    break;
                }
                _ => {}
            }
        }
        let token = rest[..end].trim();
        self.i += end;
        if token.is_empty() {
            return Err("an argument is empty".into());
        }
        if token.starts_with('$') {
            return Ok(Arg::Path(DataPath::parse(token).map_err(|e| e.to_string())?));
        }
        match serde_json::from_str::<Value>(token) {
            // `-0` is the number 0, as Step Functions reads it (JSON keeps a negative zero's sign).
            Ok(Value::Number(n)) if n.as_f64() == Some(0.0) => {
                let fraction = token.contains(['.', 'e', 'E']);
                Ok(Arg::Literal(if fraction { json!(0.0) } else { json!(0) }))
            }
            Ok(v @ (Value::Number(_) | Value::Null | Value::Bool(_))) => Ok(Arg::Literal(v)),
            _ => Err(format!("'{token}' is not an argument: use 'quoted text', a number, null, a path or a call")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str, input: Value) -> Result<Value, String> {
        let mut entropy = SeededEntropy::new(7);
        let ctx = json!({"Execution": {"Id": "exec-1"}});
        let vars = serde_json::Map::new();
        let docs = Docs { input: &input, context: &ctx, vars: &vars };
        Call::parse(text)?.eval(&mut Scope { docs, entropy: &mut entropy })
    }

    /// Edge cases recorded against real Step Functions (issue 28): an empty string is JSON `null` to
    /// `States.StringToJson`, and a literal `-0` is the number 0.
    #[test]
    fn edges_match_what_step_functions_answers() {
        assert_eq!(eval("States.StringToJson('')", json!({})), Ok(Value::Null));
        assert_eq!(eval("States.StringToJson($.s)", json!({"s": "  "})), Ok(Value::Null));
        assert!(eval("States.StringToJson('{')", json!({})).is_err());
        let zero = eval("States.Array(-0)", json!({})).unwrap();
        assert_eq!(zero.to_string(), "[0]");
        assert_eq!(eval("States.MathAdd(-0, 2)", json!({})), Ok(json!(2)));
        assert_eq!(eval("States.JsonToString(States.Array(-0))", json!({})), Ok(json!("[0]")));
    }

    /// Recorded on Step Functions (localstack's snapshot `test_math_add`): each argument is rounded to the
    /// nearest integer, halves towards +∞, then the two are added.
    #[test]
    fn math_add_rounds_each_number_as_step_functions_does() {
        let cases = [
            (1.49, 1.5, 3),
            (1.5, 1.51, 4),
            (-1.49, -1.5, -2),
            (-1.5, -1.51, -3),
            (1.49, -1.49, 0),
            (-1.5, 0.0, -1),
            (-1.51, 0.0, -2),
            (0.5, 0.0, 1),
            (2.5, 0.0, 3),
            (-2.5, 0.0, -2),
            (-0.5, 0.5, 1),
            (-0.5, 0.0, 0),
        ];
        for (a, b, sum) in cases {
            let got = eval("States.MathAdd($.a, $.b)", json!({"a": a, "b": b}));
            assert_eq!(got, Ok(json!(sum)), "{a} + {b}");
        }
        assert!(eval("States.MathAdd('1', 2)", json!({})).is_err(), "a string is no number");
        let r = eval("States.MathRandom(12.5, 14.49)", json!({})).unwrap().as_i64().unwrap();
        assert!((13..14).contains(&r), "rounded to [13, 14): {r}");
    }

    /// Recorded on Step Functions (localstack's snapshot `test_format_1`): an object argument is written
    /// `{Arg1=1, Arg2=[]}`, not as JSON.
    #[test]
    fn format_writes_objects_and_arrays_as_step_functions_does() {
        let i = json!({"o": {"Arg1": 1, "Arg2": []}, "a": ["x", 2, true, null, {"k": "v"}], "n": null, "f": 1.1});
        let cases = [
            ("States.Format('fst={} and snd={}.', $.o, $.o)", "fst={Arg1=1, Arg2=[]} and snd={Arg1=1, Arg2=[]}."),
            ("States.Format('{}', $.a)", "[x, 2, true, null, {k=v}]"),
            ("States.Format('{} {}', $.n, $.f)", "null 1.1"),
        ];
        for (expr, want) in cases {
            assert_eq!(eval(expr, i.clone()), Ok(json!(want)), "{expr}");
        }
    }

    #[test]
    fn every_function_evaluates() {
        let i = json!({"name": "Ada", "n": 3, "list": [1, 2, 2, 3], "s": "a,b,,c", "obj": {"a": {"x": 1}}});
        let cases = [
            ("States.Format('Hello, {}! {}', $.name, $.n)", json!("Hello, Ada! 3")),
            ("States.Format('in \\{braces\\} {}', $$.Execution.Id)", json!("in {braces} exec-1")),
            ("States.StringToJson('{\"a\":1}')", json!({"a": 1})),
            ("States.JsonToString($.list)", json!("[1,2,2,3]")),
            ("States.Array($.name, 1, null)", json!(["Ada", 1, null])),
            ("States.ArrayPartition($.list, 3)", json!([[1, 2, 2], [3]])),
            ("States.ArrayContains($.list, 3)", json!(true)),
            ("States.ArrayRange(1, 9, 3)", json!([1, 4, 7])),
            ("States.ArrayRange(3, 1, -1)", json!([3, 2, 1])),
            ("States.ArrayGetItem($.list, 3)", json!(3)),
            ("States.ArrayLength($.list)", json!(4)),
            ("States.ArrayUnique($.list)", json!([1, 2, 3])),
            ("States.Base64Encode('Data to encode')", json!("RGF0YSB0byBlbmNvZGU=")),
            ("States.Base64Decode('RGF0YSB0byBlbmNvZGU=')", json!("Data to encode")),
            ("States.Hash('input data', 'SHA-1')", json!("aaff4a450a104cd177d28d18d74485e8cae074b7")),
            ("States.Hash('abc', 'MD5')", json!("900150983cd24fb0d6963f7d28e17f72")),
            (
                "States.Hash('abc', 'SHA-256')",
                json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ),
            ("States.JsonMerge($.obj, States.StringToJson('{\"a\":{\"y\":2}}'), false)", json!({"a": {"y": 2}})),
            ("States.JsonMerge($.obj, States.StringToJson('{\"a\":{\"y\":2}}'), true)", json!({"a": {"x": 1, "y": 2}})),
            ("States.MathAdd($.n, -5)", json!(-2)),
            ("States.StringSplit($.s, ',')", json!(["a", "b", "c"])),
            ("States.ArrayLength(States.StringSplit('1 2 3', ' '))", json!(3)),
        ];
        for (text, want) in cases {
            assert_eq!(eval(text, i.clone()).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn randomness_is_shaped_and_seedable() {
        let r = eval("States.MathRandom(10, 20)", json!({})).unwrap().as_i64().unwrap();
        assert!((10..20).contains(&r));
        let wide = "States.MathRandom(-9223372036854775808, 9223372036854775807, 3)";
        assert!(eval(wide, json!({})).unwrap().as_i64().is_some(), "a span wider than i64::MAX");
        assert_eq!(
            eval("States.MathRandom(0, 1000, 42)", json!({})),
            eval("States.MathRandom(0, 1000, 42)", json!({}))
        );
        let u = eval("States.UUID()", json!({})).unwrap();
        let u = u.as_str().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn parse_errors_name_the_problem() {
        for (text, needle) in [
            ("States.Nope(1)", "unknown intrinsic function 'States.Nope'"),
            ("States.ArrayLength()", "takes 1 arguments, got 0"),
            ("States.Format('x", "unterminated"),
            ("States.Array(foo)", "'foo' is not an argument"),
            ("States.UUID() extra", "unexpected text"),
            ("States.Array($.[)", "invalid JSONPath"),
        ] {
            let err = Call::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let deep = (0..11).fold("1".to_string(), |acc, _| format!("States.Array({acc})"));
        assert!(Call::parse(&deep).unwrap_err().contains("nest at most"));
    }

    #[test]
    fn runtime_errors_name_the_function() {
        for (text, needle) in [
            ("States.ArrayPartition($.list, 0)", "chunk size must be greater than 0"),
            ("States.ArrayGetItem($.list, 9)", "outside an array of 2"),
            ("States.ArrayRange(0, 5000, 1)", "more than 1000"),
            ("States.StringToJson('{')", "not JSON"),
            ("States.Format('{} {}', 1)", "placeholders"),
            ("States.Hash('a', 'CRC32')", "unknown algorithm"),
            ("States.MathRandom(5, 5)", "greater than start"),
            ("States.ArrayLength($.missing)", "could not be found"),
            ("States.ArrayLength($.name)", "must be an array"),
        ] {
            let err = eval(text, json!({"list": [1, 2], "name": "x"})).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
