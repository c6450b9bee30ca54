//! JSONata in state machines (`"QueryLanguage": "JSONata"`): expressions written as `"{% … %}"` strings in
//! `Arguments`, `Output`, `Assign`, `Items`, `ItemSelector`, a Choice rule's `Condition` and the scalar fields
//! that take one, evaluated by the `jlens-core` engine with `$states` and the workflow's variables bound, and
//! Step Functions' own functions (`$partition`, `$range`, `$hash`, `$random`, `$uuid`, `$parse`) added.
//!
//! Failures are `States.QueryEvaluationError` with Step Functions' sentences: the expression, the field it
//! was given for (`Arguments/FunctionName` inside an object), and the JSONata error code and message, or that
//! it returned nothing.

use crate::intrinsic::{Entropy, SeededEntropy};
use crate::Failure;
use jlens_core::{Bindings, Expression, HostFunction, Options};
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};

/// The error name of a JSONata expression that fails or gives nothing.
pub const QUERY_EVALUATION_ERROR: &str = "States.QueryEvaluationError";

/// The most items `$range` makes (a state's payload is at most 256 KiB anyway).
pub const MAX_RANGE_ITEMS: usize = 100_000;

/// The text between `{%` and `%}` when `s` is a JSONata expression string (Step Functions' rule: the string
/// starts with `{%` and ends with `%}`, nothing around them); any other string is a literal.
pub fn expression_text(s: &str) -> Option<&str> {
    s.strip_prefix("{%")?.strip_suffix("%}")
}

/// One compiled expression and the text it came from.
#[derive(Clone)]
pub struct Expr {
    source: String,
    compiled: Expression,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{%{}%}}", self.source)
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Expr {
    /// Compiles the text inside `{% … %}`; a syntax error is its JSONata code and message.
    pub fn parse(source: &str) -> Result<Expr, String> {
        if source.trim().is_empty() {
            return Err("the JSONata expression is empty: write one between {% and %}".into());
        }
        let compiled = Expression::compile(source).map_err(|e| {
            format!("the JSONata expression '{}' is not valid: {}: {}", source.trim(), e.code(), e.message())
        })?;
        // Causes quote the expression without the spaces around it, as Step Functions does.
        Ok(Expr { source: source.trim().to_string(), compiled })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression for `field` (as Step Functions names it in causes, e.g. `Arguments/Payload`).
    /// Nothing (JSONata's undefined) is a failure.
    pub fn eval(&self, env: &Env, field: &str) -> Result<Value, Failure> {
        let src = &self.source;
        let failed = |what: String| {
            Failure::new(
                QUERY_EVALUATION_ERROR,
                format!("The JSONata expression '{src}' specified for the field '{field}' {what}"),
            )
            .at(field)
        };
        let run = std::panic::AssertUnwindSafe(|| self.compiled.evaluate_with(None, &env.bindings, &env.options));
        match std::panic::catch_unwind(run) {
            Ok(Ok(Some(v))) => Ok(v),
            Ok(Ok(None)) => Err(failed("returned nothing (undefined).".into())),
            Ok(Err(e)) => Err(failed(format!("threw an error during evaluation. {}: {}", e.code(), e.message()))),
            Err(_) => Err(failed("threw an error during evaluation: the evaluator failed on it".into())),
        }
    }
}

/// A JSON value whose strings may be expressions: each `"{% … %}"` is evaluated, everything else is kept.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Literal(Value),
    Expr(Expr),
    Object(Vec<(String, Shape)>),
    Array(Vec<Shape>),
}

impl Shape {
    /// Compiles a value; an error is (where inside it, as `/Key/0`, and what is wrong).
    pub fn compile(v: &Value) -> Result<Shape, (String, String)> {
        Self::compile_at(v, "")
    }

    fn compile_at(v: &Value, at: &str) -> Result<Shape, (String, String)> {
        match v {
            Value::String(s) => match expression_text(s) {
                Some(text) => Expr::parse(text).map(Shape::Expr).map_err(|e| (at.to_string(), e)),
                None => Ok(Shape::Literal(v.clone())),
            },
            Value::Object(map) => {
                let mut fields = Vec::with_capacity(map.len());
                for (k, item) in map {
                    fields.push((k.clone(), Self::compile_at(item, &format!("{at}/{k}"))?));
                }
                if fields.iter().all(|(_, s)| matches!(s, Shape::Literal(_))) {
                    return Ok(Shape::Literal(v.clone()));
                }
                Ok(Shape::Object(fields))
            }
            Value::Array(items) => {
                let shapes = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Self::compile_at(item, &format!("{at}/{i}")))
                    .collect::<Result<Vec<_>, _>>()?;
                if shapes.iter().all(|s| matches!(s, Shape::Literal(_))) {
                    return Ok(Shape::Literal(v.clone()));
                }
                Ok(Shape::Array(shapes))
            }
            other => Ok(Shape::Literal(other.clone())),
        }
    }

    /// The value, every expression evaluated; `field` names where it is (`Output`, `Arguments`, …).
    pub fn eval(&self, env: &Env, field: &str) -> Result<Value, Failure> {
        match self {
            Shape::Literal(v) => Ok(v.clone()),
            Shape::Expr(e) => e.eval(env, field),
            Shape::Object(fields) => {
                let mut out = Map::with_capacity(fields.len());
                for (k, s) in fields {
                    out.insert(k.clone(), s.eval(env, &format!("{field}/{k}"))?);
                }
                Ok(Value::Object(out))
            }
            Shape::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, s) in items.iter().enumerate() {
                    out.push(s.eval(env, &format!("{field}/{i}"))?);
                }
                Ok(Value::Array(out))
            }
        }
    }

    /// The keys of an object shape (an `Arguments` naming `FunctionName`, an `Assign`'s variables).
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Shape::Object(fields) => fields.iter().map(|(k, _)| k.as_str()).collect(),
            Shape::Literal(Value::Object(m)) => m.keys().map(String::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// One field of an object shape, unevaluated.
    pub fn field(&self, name: &str) -> Option<Shape> {
        match self {
            Shape::Object(fields) => fields.iter().find(|(k, _)| k == name).map(|(_, s)| s.clone()),
            Shape::Literal(Value::Object(m)) => m.get(name).cloned().map(Shape::Literal),
            _ => None,
        }
    }
}

/// What an expression sees: `$states` (`input`, `context`, and `result` or `errorOutput` where the state has
/// them), the variables in scope, and Step Functions' functions. `seed` drives `$random()`, `$uuid()` and
/// `$shuffle()`; `now_ms` is `$now()` and `$millis()`.
pub struct Env {
    bindings: Bindings,
    options: Options,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").finish_non_exhaustive()
    }
}

/// The most nested evaluation an expression may reach (a deep recursion fails with JSONata's D1011).
const MAX_DEPTH: usize = 2_000;
/// The longest one evaluation may run (JSONata's D1012 past it): a state's expressions are short work.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The largest string, array and result an evaluation may build: Step Functions' state payload limit is
/// 256 KiB, so these leave room without letting an expression take the node's memory.
const MAX_BUILT_BYTES: usize = 16 << 20;
const MAX_BUILT_ITEMS: usize = 1 << 20;

impl Env {
    pub fn new(states: Value, vars: &Map<String, Value>, seed: u64, now_ms: i64) -> Env {
        let mut bindings = Bindings::new();
        for (name, v) in vars {
            bindings = bindings.var(name.clone(), v.clone());
        }
        bindings = bindings.var("states", states);
        // Step Functions has no `$eval` (it offers `$parse`); calling it fails as calling any non-function.
        bindings = bindings.var("eval", Value::Null);
        for (name, f) in functions(seed) {
            bindings = bindings.function(name, f);
        }
        let options = Options::new()
            .now(now_ms)
            .seed(seed)
            .max_depth(MAX_DEPTH)
            .timeout(TIME_LIMIT)
            .max_string_length(MAX_BUILT_BYTES)
            .max_array_length(MAX_BUILT_ITEMS)
            .max_result_size(MAX_BUILT_BYTES);
        Env { bindings, options }
    }
}

/// The `$states` document: `input` and `context` always, `result` of a Task, Parallel or Map that
/// succeeded, `errorOutput` (`{"Error", "Cause"}`) in a catcher.
pub fn states(input: &Value, context: &Value, result: Option<&Value>, error_output: Option<&Value>) -> Value {
    let mut s = json!({"input": input, "context": context});
    if let Some(r) = result {
        s["result"] = r.clone();
    }
    if let Some(e) = error_output {
        s["errorOutput"] = e.clone();
    }
    s
}

fn fail(message: impl Into<String>) -> jlens_core::Error {
    // D3137 is the code of JSONata's own `$error(message)`: its message is the text given.
    jlens_core::Error::new("D3137").with("message", message.into())
}

fn number(v: &Option<Value>, what: &str) -> jlens_core::Result<f64> {
    v.as_ref().and_then(Value::as_f64).ok_or_else(|| fail(format!("{what} must be a number")))
}

/// A whole number that an f64 holds exactly, or an error naming `what`.
fn whole(x: f64, what: &str) -> jlens_core::Result<i64> {
    if x.fract() != 0.0 || !x.is_finite() || x.abs() > 9_007_199_254_740_992.0 {
        return Err(fail(format!("{what} must be an integer, got {x}")));
    }
    #[allow(clippy::cast_possible_truncation)]
    Ok(x as i64)
}

/// Step Functions' additions to JSONata (the "Functions provided by Step Functions" of its documentation).
fn functions(seed: u64) -> Vec<(&'static str, HostFunction)> {
    let entropy = Arc::new(Mutex::new(SeededEntropy::new(seed)));
    let mut out = Vec::new();
    out.push((
        "partition",
        HostFunction::new(2, |args, _| {
            let items = match args.first().cloned().flatten() {
                Some(Value::Array(a)) => a,
                Some(other) => vec![other],
                None => return Ok(None),
            };
            let size = whole(number(&args.get(1).cloned().flatten(), "$partition's size")?, "$partition's size")?;
            let size = usize::try_from(size)
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| fail(format!("$partition's size must be a positive integer, got {size}")))?;
            Ok(Some(Value::Array(items.chunks(size).map(|c| Value::Array(c.to_vec())).collect())))
        })
        .without_input(),
    ));
    out.push((
        "range",
        HostFunction::new(3, |args, _| {
            let arg = |i: usize, what: &str| whole(number(&args.get(i).cloned().flatten(), what)?, what);
            let (start, end, step) = (arg(0, "$range's start")?, arg(1, "$range's end")?, arg(2, "$range's step")?);
            if step == 0 {
                return Err(fail("$range's step cannot be 0"));
            }
            let span = (i128::from(end) - i128::from(start)) / i128::from(step);
            if span < 0 {
                return Ok(Some(Value::Array(Vec::new())));
            }
            if span >= MAX_RANGE_ITEMS as i128 {
                return Err(fail(format!("$range would make more than {MAX_RANGE_ITEMS} numbers")));
            }
            let items: Vec<Value> =
                (0..=span).map(|i| json!(i128::from(start) + i * i128::from(step))).collect::<Vec<_>>();
            // A sequence of one is that one value, as JSONata gives it (recorded on Step Functions:
            // `$range(1, 9, 9)` is 1).
            Ok(Some(if items.len() == 1 { items[0].clone() } else { Value::Array(items) }))
        })
        .without_input(),
    ));
    out.push((
        "hash",
        HostFunction::new(2, |args, _| {
            let data = match args.first().cloned().flatten() {
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => return Ok(None),
            };
            let algorithm = args.get(1).cloned().flatten();
            let algorithm = algorithm.as_ref().and_then(Value::as_str).unwrap_or("");
            crate::intrinsic::hash(algorithm, data.as_bytes()).map(|h| Some(Value::String(h))).map_err(fail)
        })
        .without_input(),
    ));
    let e = entropy.clone();
    out.push((
        "random",
        HostFunction::new(1, move |args, _| {
            let next = match args.first().cloned().flatten() {
                Some(seed) => {
                    let s = whole(number(&Some(seed), "$random's seed")?, "$random's seed")?;
                    SeededEntropy::new(s.cast_unsigned()).next_u64()
                }
                None => e.lock().map_err(|_| fail("the random source is unavailable"))?.next_u64(),
            };
            Ok(Some(json!((next >> 11) as f64 / (1u64 << 53) as f64)))
        })
        .without_input(),
    ));
    let e = entropy;
    out.push((
        "uuid",
        HostFunction::new(0, move |_, _| {
            let mut e = e.lock().map_err(|_| fail("the random source is unavailable"))?;
            Ok(Some(Value::String(crate::intrinsic::random_uuid(&mut *e))))
        })
        .without_input(),
    ));
    out.push((
        "parse",
        HostFunction::new(1, |args, _| match args.first().cloned().flatten() {
            Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
                // `-0` is the number 0 (recorded on Step Functions); JSON would keep the zero's sign.
                Ok(Value::Number(n)) if n.as_f64() == Some(0.0) && !s.contains(['.', 'e', 'E']) => Ok(Some(json!(0))),
                Ok(v) => Ok(Some(v)),
                Err(e) => Err(fail(format!("$parse was given text that is not JSON: {e}"))),
            },
            Some(other) => Err(fail(format!("$parse takes a string of JSON text, got {other}"))),
            None => Ok(None),
        })
        .without_input(),
    ));
    out
}

#[cfg(test)]
mod tests;
