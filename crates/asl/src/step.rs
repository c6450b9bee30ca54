//! What one state does with its input, as pure functions: [`enter`] says what the engine must do (move on,
//! fail, wait, run a task, fork branches, map items) and [`finish`] turns the effect's result into the
//! state's output and next state, applying Retry-free Catch and the input/output processing order.

use crate::definition::{
    Count, Percentage, Processing, QueryLanguage, Resource, Seconds, State, StateKind, Test, Text, Wait,
};
use crate::intrinsic::{Entropy, Scope};
use crate::jsonata::{self, Env, Expr, Shape};
use crate::path::{kind, Docs, Path};
use crate::retry::find_catcher;
use crate::template::Payload;
use crate::{errors, Failure};
use serde_json::{json, Map, Value};
use stoke_core::time::parse_rfc3339;

/// The context object's fields the engine knows.
#[derive(Debug, Clone)]
pub struct Context {
    pub execution_id: String,
    pub execution_name: String,
    pub execution_input: Value,
    pub execution_start_time: String,
    /// The state machine's IAM role (empty when it was given none).
    pub role_arn: String,
    pub state_machine_id: String,
    pub state_machine_name: String,
    pub state_name: String,
    pub state_entered_time: String,
    /// Of the states that retry (Task, Parallel, Map): the attempt, from 0. Other states have none.
    pub retry_count: Option<u32>,
    /// `$$.Map.Item` inside a Map's ItemSelector: (index, value).
    pub map_item: Option<(usize, Value)>,
}

impl Context {
    /// The `$$` document, with the fields Step Functions gives (recorded against AWS): `RedriveCount` 0 (an
    /// execution is never redriven here), `State.RetryCount` only in the states that retry, no `Task` (it
    /// carries a task token, which no state here waits for).
    pub fn to_value(&self) -> Value {
        let mut v = json!({
            "Execution": {"Id": self.execution_id, "Input": self.execution_input, "StartTime": self.execution_start_time,
                          "Name": self.execution_name, "RoleArn": self.role_arn, "RedriveCount": 0},
            "StateMachine": {"Id": self.state_machine_id, "Name": self.state_machine_name},
            "State": {"Name": self.state_name, "EnteredTime": self.state_entered_time},
        });
        if let Some(n) = self.retry_count {
            v["State"]["RetryCount"] = json!(n);
        }
        if let Some((index, value)) = &self.map_item {
            v["Map"] = json!({"Item": {"Index": index, "Value": value}});
        }
        v
    }
}

/// What entering a state asks of the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// Pass, Choice, Succeed: the output, the next state (`None` ends the machine) and the variables the
    /// state assigns.
    Done { output: Value, next: Option<String>, assigned: Option<Vars> },
    /// Fail, or a processing error before any effect (these go through Catch only for states that
    /// have catchers — see [`fail`]).
    Failed(Failure),
    /// Wait until a moment (nanoseconds since the epoch), then `Done`.
    WaitUntil { until_ns: i128, output: Value, next: Option<String>, assigned: Option<Vars> },
    /// Invoke a function with this payload, within `timeout_seconds` (`States.Timeout`). A function sends
    /// no heartbeats, so a `heartbeat_seconds` below the timeout ends the task then (`States.HeartbeatTimeout`).
    Invoke {
        function: String,
        qualifier: Option<String>,
        payload: Value,
        timeout_seconds: u64,
        /// The definition gives the timeout (else it is the default): history records it only then.
        timeout_given: bool,
        heartbeat_seconds: Option<u64>,
        wrap: bool,
        /// Of `lambda:invoke`: its evaluated Parameters (what Step Functions records as scheduled).
        parameters: Option<Value>,
    },
    /// Run every branch with this input; the results array goes to [`finish`].
    Parallel { input: Value },
    /// Run the item processor once per item (inputs already shaped by ItemSelector), or, batched (a
    /// distributed Map with an `ItemBatcher`), once per batch: `batches` holds how many items each input
    /// carries (empty: one each).
    Map {
        items: Vec<Value>,
        max_concurrency: usize,
        tolerated_failures: Option<usize>,
        batches: Vec<usize>,
        tolerance: Tolerance,
        /// A distributed Map's `ItemReader`: the items are its function's answer, not the input's.
        reader: Option<Box<Reader>>,
        /// A distributed Map's `ResultWriter`: the function its results go to.
        writer: Option<Box<Invocation>>,
    },
}

/// A function a distributed Map calls, with its payload evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub function: String,
    pub qualifier: Option<String>,
    pub payload: Value,
}

/// A distributed Map's reader: the call, `MaxItems` (0: all; a negative one, read through a path, fails the
/// map run), and the state's effective input, which `ItemSelector` reads once the items are in.
#[derive(Debug, Clone, PartialEq)]
pub struct Reader {
    pub call: Invocation,
    pub max_items: i64,
    pub input: Value,
}

/// A Map's failure tolerance as the definition gives it (absent: none), for a map run's description.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tolerance {
    pub count: Option<usize>,
    pub percentage: Option<f64>,
}

impl Tolerance {
    /// The failed items tolerated among `total`: the whole ones within the percentage (10 items at 15%: 1),
    /// and no more than the count; `None` when neither is given (any failure fails the state). With both,
    /// exceeding either fails it (the States Language's rule).
    pub fn tolerated(&self, total: usize) -> Option<usize> {
        let from_pct = self.percentage.map(|p| stoke_core::num::saturate_usize((total as f64 * p / 100.0).floor()));
        match (self.count, from_pct) {
            (None, None) => None,
            (Some(c), None) => Some(c),
            (None, Some(p)) => Some(p),
            (Some(c), Some(p)) => Some(c.min(p)),
        }
    }
}

/// The end of a state.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The output, the next state and the variables assigned (by the state, or by the catcher taken).
    Next {
        output: Value,
        next: Option<String>,
        assigned: Option<Vars>,
    },
    Failed(Failure),
}

fn runtime(cause: String) -> Failure {
    Failure::new(errors::RUNTIME, cause)
}

/// The variables in scope: a name (without `$`) to its value.
pub type Vars = Map<String, Value>;

/// What a state's fields read besides its input: the context object, the variables in scope (as they were
/// when the state was entered) and the entropy; for JSONata, the `$states` environment of the current phase.
struct Io<'a> {
    context: &'a Context,
    ctx: Value,
    vars: &'a Vars,
    entropy: &'a mut dyn Entropy,
    jsonata: bool,
    env: Option<Env>,
}

impl<'a> Io<'a> {
    fn new(state: &State, context: &'a Context, vars: &'a Vars, entropy: &'a mut dyn Entropy) -> Io<'a> {
        let jsonata = state.language == QueryLanguage::Jsonata;
        Io { context, ctx: context.to_value(), vars, entropy, jsonata, env: None }
    }

    /// What a JSONPath field reads: `input` as `$`, the context object as `$$`, the variables as `$name`.
    fn docs<'b>(&'b self, input: &'b Value) -> Docs<'b> {
        Docs { input, context: &self.ctx, vars: self.vars }
    }

    /// What a JSONPath template or intrinsic reads (as [`Io::docs`]) and draws its randomness from.
    fn scope<'b>(&'b mut self, input: &'b Value) -> Scope<'b> {
        Scope { docs: Docs { input, context: &self.ctx, vars: self.vars }, entropy: &mut *self.entropy }
    }

    /// Sets `$states` for what follows (JSONata only): the state's input, and its result or error output.
    fn at(&mut self, input: &Value, result: Option<&Value>, error: Option<&Value>) {
        if self.jsonata {
            let now_ms = parse_rfc3339(&self.context.state_entered_time)
                .map_or(0, |ns| i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX));
            let states = jsonata::states(input, &self.ctx, result, error);
            self.env = Some(Env::new(states, self.vars, self.entropy.next_u64(), now_ms));
        }
    }

    /// The environment `at` set. Only JSONata states have expressions, and each phase of one sets it first;
    /// an empty one stands in otherwise.
    fn env(&mut self) -> &Env {
        self.env.get_or_insert_with(|| Env::new(Value::Null, &Vars::new(), 0, 0))
    }

    fn expr(&mut self, e: &Expr, field: &str) -> Result<Value, Failure> {
        e.eval(self.env(), field)
    }

    fn shape(&mut self, s: &Shape, field: &str) -> Result<Value, Failure> {
        s.eval(self.env(), field)
    }

    /// A payload: a JSONPath template reads `input`; a JSONata shape reads `$states`.
    fn payload(&mut self, p: &Payload, input: &Value, field: &str) -> Result<Value, Failure> {
        match p {
            Payload::Paths(t) => t.eval(&mut self.scope(input)),
            Payload::Jsonata(s) => self.shape(s, field),
        }
    }

    /// What an `Assign` sets: a JSONPath template reads `input` (the state's result, or its input where it
    /// has none); a JSONata one reads `$states`.
    fn assign(&mut self, assign: &Option<Payload>, input: &Value) -> Result<Option<Vars>, Failure> {
        let Some(a) = assign else { return Ok(None) };
        match self.payload(a, input, "Assign")? {
            Value::Object(assigned) => {
                check_variable_sizes(self.vars, &assigned)?;
                Ok(Some(assigned))
            }
            other => Err(runtime(format!("Assign gives a {}, not an object of variables", kind(&other)))),
        }
    }

    /// JSONata's `Output`, or `default` without one.
    fn output(&mut self, output: &Option<Shape>, default: &Value) -> Result<Value, Failure> {
        match output {
            Some(s) => self.shape(s, "Output"),
            None => Ok(default.clone()),
        }
    }
}

/// What one `Assign` may set: 256 KiB of variables, each counted as its JSON text.
pub const MAX_ASSIGN_BYTES: usize = 256 * 1024;
/// What the variables of one scope may hold together once an `Assign` is applied: 10 MiB.
pub const MAX_VARIABLES_BYTES: usize = 10 * 1024 * 1024;

/// Step Functions' quotas on variables (a variable and an `Assign` at most 256 KiB, all of an execution's at
/// most 10 MiB), checked before `assigned` replaces what `vars` holds; past them the state fails with
/// `States.DataLimitExceeded`.
fn check_variable_sizes(vars: &Vars, assigned: &Vars) -> Result<(), Failure> {
    let limit = |cause: String| Err(Failure::new(errors::DATA_LIMIT_EXCEEDED, cause));
    let mut set = 0;
    for (name, value) in assigned {
        let size = json_size(value);
        if size > MAX_ASSIGN_BYTES {
            return limit(format!(
                "The value assigned to the variable '{name}' is {size} bytes; a variable holds at most {MAX_ASSIGN_BYTES} \
                 bytes (256 KiB)"
            ));
        }
        set += size;
    }
    if set > MAX_ASSIGN_BYTES {
        return limit(format!(
            "The variables this Assign sets are {set} bytes together; an Assign sets at most {MAX_ASSIGN_BYTES} bytes \
             (256 KiB)"
        ));
    }
    let kept: usize = vars.iter().filter(|(name, _)| !assigned.contains_key(*name)).map(|(_, v)| json_size(v)).sum();
    if kept + set > MAX_VARIABLES_BYTES {
        return limit(format!(
            "The variables would hold {} bytes after this Assign; an execution's variables hold at most \
             {MAX_VARIABLES_BYTES} bytes (10 MiB)",
            kept + set
        ));
    }
    Ok(())
}

/// The length of a value's JSON text, counted without building it.
fn json_size(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

/// An expression's value that must be of one type: Step Functions' cause when it is not.
fn expect(v: Value, e: &Expr, field: &str, expected: &str, ok: bool) -> Result<Value, Failure> {
    if ok {
        return Ok(v);
    }
    Err(Failure::new(
        errors::QUERY_EVALUATION_ERROR,
        format!(
            "The JSONata expression '{}' specified for the field '{field}' returned an unexpected result type. \
             Expected '{expected}', but was '{}' for value: {v}",
            e.source(),
            kind(&v)
        ),
    )
    .at(field))
}

/// A JSONata whole number of at least `min` (`TimeoutSeconds`, `MaxConcurrency`, …).
fn whole_expr(io: &mut Io<'_>, e: &Expr, field: &str, min: u64) -> Result<u64, Failure> {
    let v = io.expr(e, field)?;
    let n =
        v.as_u64().or_else(|| v.as_f64().filter(|x| x.fract() == 0.0 && *x >= 0.0).map(stoke_core::num::saturate_u64));
    let ok = n.is_some_and(|n| n >= min);
    let what = if min > 0 { "positive integer" } else { "non-negative integer" };
    expect(v, e, field, what, ok)?;
    Ok(n.unwrap_or(min))
}

fn input_path(state: &State, raw: &Value, io: &Io<'_>) -> Result<Value, Failure> {
    match &state.input_path {
        None => Ok(json!({})),
        Some(p) => p.get(&io.docs(raw)).map_err(|e| runtime(format!("InputPath of \"{}\": {}", state.name, e.0))),
    }
}

fn output_path(state: &State, v: &Value, io: &Io<'_>) -> Result<Value, Failure> {
    match &state.output_path {
        None => Ok(json!({})),
        Some(p) => p.get(&io.docs(v)).map_err(|e| runtime(format!("OutputPath of \"{}\": {}", state.name, e.0))),
    }
}

fn result_path(path: &Option<Path>, state: &str, raw: &Value, result: Value) -> Result<Value, Failure> {
    match path {
        None => Ok(raw.clone()),
        Some(p) => p.set(raw.clone(), result).map_err(|e| {
            Failure::new(errors::RESULT_PATH_MATCH_FAILURE, format!("ResultPath of \"{state}\": {}", e.0))
        }),
    }
}

fn text(t: &Option<Text>, raw: &Value, io: &mut Io<'_>, field: &str) -> Result<Option<String>, Failure> {
    let (value, what) = match t {
        None => return Ok(None),
        Some(Text::Literal(s)) => return Ok(Some(s.clone())),
        Some(Text::Path(p)) => (p.get(&io.docs(raw)).map_err(|e| runtime(e.0))?, p.path.as_str()),
        Some(Text::Call(c)) => {
            let v = c.eval(&mut io.scope(raw)).map_err(|e| Failure::new(errors::INTRINSIC_FAILURE, e))?;
            (v, "the intrinsic call")
        }
        Some(Text::Expr(e)) => {
            let v = io.expr(e, field)?;
            let ok = v.is_string();
            return Ok(expect(v, e, field, "string", ok)?.as_str().map(str::to_string));
        }
    };
    match value {
        Value::String(s) => Ok(Some(s)),
        other => Err(runtime(format!("{what} selects a {}, not a string", kind(&other)))),
    }
}

/// A value as Step Functions quotes it in a cause: a string's text, anything else as JSON.
fn quoted(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// A Map's count (`MaxConcurrency`, `ToleratedFailureCount`); a path's value must be a non-negative
/// integer. The causes are Step Functions' sentences (recorded against AWS).
fn count(c: &Count, input: &Value, io: &mut Io<'_>, field: &str) -> Result<usize, Failure> {
    let p = match c {
        Count::Fixed(n) => return Ok(usize::try_from(*n).unwrap_or(usize::MAX)),
        Count::Expr(e) => return whole_expr(io, e, field, 0).map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        Count::Path(p) => p,
    };
    let v = p.get(&io.docs(input)).map_err(|e| runtime(e.0))?;
    match (v.as_u64(), v.as_i64()) {
        (Some(n), _) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        (None, Some(_)) => Err(runtime(format!("{field} cannot be negative."))),
        _ => Err(runtime(format!(
            "The {field}Path field refers to value \"{}\" which is not a valid integer: {}",
            quoted(&v),
            p.path
        ))),
    }
}

/// `MaxItemsPerBatch` / `MaxInputBytesPerBatch`: a positive integer, which a path may give as a number or a
/// string of digits (recorded on Step Functions: `"2"` through `MaxItemsPerBatchPath` batches by two).
fn batch_limit(c: &Count, input: &Value, io: &mut Io<'_>, field: &str) -> Result<usize, Failure> {
    let p = match c {
        Count::Fixed(n) => return Ok(usize::try_from(*n).unwrap_or(usize::MAX)),
        Count::Expr(e) => return whole_expr(io, e, field, 1).map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        Count::Path(p) => p,
    };
    let v = p.get(&io.docs(input)).map_err(|e| runtime(e.0))?;
    let n = v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse::<u64>().ok()));
    match n {
        Some(n) if n > 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => Err(runtime(format!(
            "The {field}Path field refers to value \"{}\" which is not a valid positive integer: {}",
            quoted(&v),
            p.path
        ))),
    }
}

/// Groups `items` in order into batches of at most `max_items` items and at most `max_bytes` bytes of
/// JSON each (an item larger than the byte limit goes alone), each one a child's input `{"BatchInput": …,
/// "Items": […]}` (no `BatchInput` when none is given). Returns the inputs and how many items each holds.
pub fn batch(
    items: Vec<Value>,
    max_items: Option<usize>,
    max_bytes: Option<usize>,
    batch_input: Option<Value>,
) -> (Vec<Value>, Vec<usize>) {
    let mut batches: Vec<Vec<Value>> = Vec::new();
    let mut bytes = 0usize;
    for item in items {
        let size = item.to_string().len();
        let fits = batches
            .last()
            .is_some_and(|b| max_items.is_none_or(|m| b.len() < m) && max_bytes.is_none_or(|m| bytes + size <= m));
        if fits {
            bytes += size;
            if let Some(b) = batches.last_mut() {
                b.push(item);
            }
        } else {
            bytes = size;
            batches.push(vec![item]);
        }
    }
    let sizes = batches.iter().map(Vec::len).collect();
    let inputs = batches
        .into_iter()
        .map(|items| match &batch_input {
            Some(b) => json!({"BatchInput": b, "Items": items}),
            None => json!({"Items": items}),
        })
        .collect();
    (inputs, sizes)
}

/// `ToleratedFailurePercentage`: from 0 to 100, fractions allowed.
fn percentage(c: &Percentage, input: &Value, io: &mut Io<'_>) -> Result<f64, Failure> {
    const FIELD: &str = "ToleratedFailurePercentage";
    let p = match c {
        Percentage::Fixed(x) => return Ok(*x),
        Percentage::Expr(e) => {
            let v = io.expr(e, FIELD)?;
            let x = v.as_f64().filter(|x| (0.0..=100.0).contains(x));
            let ok = x.is_some();
            expect(v, e, FIELD, "number from 0 to 100", ok)?;
            return Ok(x.unwrap_or(0.0));
        }
        Percentage::Path(p) => p,
    };
    let v = p.get(&io.docs(input)).map_err(|e| runtime(e.0))?;
    match v.as_f64() {
        Some(x) if (0.0..=100.0).contains(&x) => Ok(x),
        Some(_) => Err(runtime("ToleratedFailurePercentage must be between 0 and 100.".into())),
        None => Err(runtime(format!(
            "The ToleratedFailurePercentagePath field refers to value \"{}\" which is not a valid float: {}",
            quoted(&v),
            p.path
        ))),
    }
}

/// The longest delay a Wait state may have: 2^31 seconds, past which Step Functions fails the state with
/// `States.Runtime` "Wait state delay is too long." (recorded: 24,855 days waits, 24,856 days fails).
pub const MAX_WAIT_NS: i128 = (1i128 << 31) * 1_000_000_000;

/// Enters `state` with its raw input and the variables in scope. `now_ns` is the engine's clock, for Wait.
pub fn enter(
    state: &State,
    raw: &Value,
    context: &Context,
    vars: &Vars,
    entropy: &mut dyn Entropy,
    now_ns: i128,
) -> Entry {
    let mut io = Io::new(state, context, vars, entropy);
    io.at(raw, None, None);
    match enter_inner(state, raw, &mut io, now_ns) {
        Ok(e) => e,
        Err(f) => Entry::Failed(f),
    }
}

/// The state's effective input: JSONPath's `InputPath` then `Parameters`, or JSONata's `Arguments`.
fn effective(state: &State, p: &Processing, raw: &Value, io: &mut Io<'_>) -> Result<Value, Failure> {
    let input = input_path(state, raw, io)?;
    match &p.parameters {
        Some(payload) => io.payload(payload, &input, "Arguments"),
        None => Ok(input),
    }
}

fn enter_inner(state: &State, raw: &Value, io: &mut Io<'_>, now_ns: i128) -> Result<Entry, Failure> {
    match &state.kind {
        StateKind::Fail(f) => {
            let error = text(&f.error, raw, io, "Error")?.unwrap_or_default();
            let cause = text(&f.cause, raw, io, "Cause")?.unwrap_or_default();
            Ok(Entry::Failed(Failure::new(error, cause)))
        }
        StateKind::Succeed => {
            let input = input_path(state, raw, io)?;
            let output = io.output(&state.output, &input)?;
            Ok(Entry::Done { output: output_path(state, &output, io)?, next: None, assigned: None })
        }
        StateKind::Pass(p) => {
            let input = input_path(state, raw, io)?;
            let effective = match &p.parameters {
                Some(t) => t.eval(&mut io.scope(&input))?,
                None => input,
            };
            let result = p.result.clone().unwrap_or(effective);
            let assigned = io.assign(&state.assign, &result)?;
            let output = match io.jsonata {
                true => io.output(&state.output, raw)?,
                false => output_path(state, &result_path(&p.result_path, &state.name, raw, result)?, io)?,
            };
            Ok(Entry::Done { output, next: state.next.clone(), assigned })
        }
        StateKind::Choice(c) => {
            let input = input_path(state, raw, io)?;
            let mut chosen = None;
            for rule in &c.choices {
                let matched = match &rule.test {
                    Test::Rule(r) => r.eval(&io.docs(&input)),
                    Test::Condition(Shape::Literal(v)) => v.as_bool() == Some(true),
                    Test::Condition(Shape::Expr(e)) => {
                        let v = io.expr(e, "Condition")?;
                        let ok = v.is_boolean();
                        expect(v, e, "Condition", "boolean", ok)?.as_bool() == Some(true)
                    }
                    // The definition allows only those two.
                    Test::Condition(_) => false,
                };
                if matched {
                    chosen = Some(rule);
                    break;
                }
            }
            let (next, assign, output) = match chosen {
                Some(r) => (r.next.clone(), &r.assign, r.output.as_ref().or(state.output.as_ref())),
                None => match &c.default {
                    Some(d) => (d.clone(), &state.assign, state.output.as_ref()),
                    None => {
                        return Err(Failure::new(
                            errors::NO_CHOICE_MATCHED,
                            format!("no Choice rule of \"{}\" matched and it has no Default", state.name),
                        ))
                    }
                },
            };
            let assigned = io.assign(assign, &input)?;
            let output = io.output(&output.cloned(), &input)?;
            Ok(Entry::Done { output: output_path(state, &output, io)?, next: Some(next), assigned })
        }
        StateKind::Wait(w) => {
            let input = input_path(state, raw, io)?;
            // The causes are Step Functions' own sentences (recorded against AWS), so that a search finds
            // its documentation.
            let until_ns = match w {
                Wait::Seconds(s) => now_ns + i128::from(*s) * 1_000_000_000,
                Wait::SecondsExpr(e) => now_ns + i128::from(whole_expr(io, e, "Seconds", 0)?) * 1_000_000_000,
                Wait::SecondsPath(p) => {
                    let v = p.get(&io.docs(&input)).map_err(|_| {
                        runtime(format!("The SecondsPath parameter does not reference an input value: {}", p.path))
                    })?;
                    let s = match (v.as_i64(), v.as_u64()) {
                        (_, Some(s)) => s,
                        (Some(_), None) => {
                            return Err(runtime(format!(
                                "The SecondsPath parameter references a negative value: {} == {v}",
                                p.path
                            )))
                        }
                        _ => {
                            return Err(runtime(format!(
                                "The SecondsPath parameter cannot be parsed as a long value: {} == {v}",
                                p.path
                            )))
                        }
                    };
                    now_ns + i128::from(s) * 1_000_000_000
                }
                Wait::Timestamp(t) => parse_rfc3339(t).unwrap_or(now_ns),
                Wait::TimestampExpr(e) => {
                    let v = io.expr(e, "Timestamp")?;
                    let at = v.as_str().and_then(parse_rfc3339);
                    let ok = at.is_some();
                    expect(v, e, "Timestamp", "ISO-8601 timestamp string", ok)?;
                    at.unwrap_or(now_ns)
                }
                Wait::TimestampPath(p) => {
                    let v = p.get(&io.docs(&input)).map_err(|e| runtime(e.0))?;
                    v.as_str().and_then(parse_rfc3339).ok_or_else(|| {
                        let shown = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                        runtime(format!(
                            "The TimestampPath parameter does not reference a valid ISO-8601 extended offset \
                             date-time format string: {} == {shown}",
                            p.path
                        ))
                    })?
                }
            };
            if until_ns - now_ns > MAX_WAIT_NS {
                return Err(runtime("Wait state delay is too long.".into()));
            }
            let assigned = io.assign(&state.assign, &input)?;
            let output = io.output(&state.output, &input)?;
            Ok(Entry::WaitUntil {
                until_ns,
                output: output_path(state, &output, io)?,
                next: state.next.clone(),
                assigned,
            })
        }
        StateKind::Task(t) => {
            let input = input_path(state, raw, io)?;
            let effective = effective(state, &t.processing, raw, io)?;
            let mut seconds = |s: &Seconds, field: &str| match s {
                Seconds::Fixed(s) => Ok(*s),
                Seconds::Expr(e) => whole_expr(io, e, field, 1),
                Seconds::Path(p) => {
                    p.get(&io.docs(&input)).ok().and_then(|v| v.as_u64()).filter(|s| *s > 0).ok_or_else(|| {
                        runtime(format!("{field}Path {} does not select a positive integer", p.path.as_str()))
                    })
                }
            };
            let timeout_seconds = seconds(&t.timeout, "TimeoutSeconds")?;
            let heartbeat_seconds = t.heartbeat.as_ref().map(|h| seconds(h, "HeartbeatSeconds")).transpose()?;
            match &t.resource {
                Resource::Function(r) => Ok(Entry::Invoke {
                    function: r.clone(),
                    qualifier: None,
                    payload: effective,
                    timeout_seconds,
                    timeout_given: t.timeout_given,
                    heartbeat_seconds,
                    wrap: false,
                    parameters: None,
                }),
                Resource::LambdaInvoke => {
                    let function = effective.get("FunctionName").and_then(Value::as_str).ok_or_else(|| {
                        let field = if io.jsonata { "Arguments" } else { "Parameters" };
                        runtime(format!("the lambda:invoke {field} of \"{}\" give no FunctionName string", state.name))
                    })?;
                    let qualifier = effective.get("Qualifier").and_then(Value::as_str).map(String::from);
                    Ok(Entry::Invoke {
                        function: function.to_string(),
                        qualifier,
                        payload: lambda_invoke_payload(&effective),
                        timeout_seconds,
                        timeout_given: t.timeout_given,
                        heartbeat_seconds,
                        wrap: true,
                        parameters: Some(effective),
                    })
                }
            }
        }
        StateKind::Parallel(p) => Ok(Entry::Parallel { input: effective(state, &p.processing, raw, io)? }),
        StateKind::Map(m) => {
            let input = input_path(state, raw, io)?;
            // With a reader, the items come from it later (Step Functions ignores ItemsPath then).
            let reads = m.distributed.as_ref().is_some_and(|d| d.reader.is_some());
            let items = if reads {
                Vec::new()
            } else if io.jsonata {
                map_items(m, &input, io)?
            } else {
                match m.items_path.get(&io.docs(&input)) {
                    Ok(Value::Array(items)) => items,
                    Ok(other) => {
                        return Err(runtime(format!(
                            "ItemsPath {} of \"{}\" selects a {}, not an array",
                            m.items_path.path,
                            state.name,
                            kind(&other)
                        )))
                    }
                    Err(e) => return Err(runtime(format!("ItemsPath of \"{}\": {}", state.name, e.0))),
                }
            };
            let dist = m.distributed.as_ref();
            let reader = match dist.and_then(|d| d.reader.as_ref()) {
                None => None,
                Some(r) => {
                    let max_items = match &r.max_items {
                        None => 0,
                        Some(Count::Fixed(n)) => i64::try_from(*n).unwrap_or(i64::MAX),
                        Some(Count::Expr(e)) => i64::try_from(whole_expr(io, e, "MaxItems", 0)?).unwrap_or(i64::MAX),
                        Some(Count::Path(p)) => {
                            let v = p.get(&io.docs(&input)).map_err(|e| runtime(e.0))?;
                            v.as_i64().ok_or_else(|| {
                                runtime(format!(
                                    "The MaxItemsPath field refers to value \"{}\" which is not a valid integer: {}",
                                    quoted(&v),
                                    p.path
                                ))
                            })?
                        }
                    };
                    Some(Box::new(Reader { call: invocation(&r.call, &input, io)?, max_items, input: input.clone() }))
                }
            };
            let writer = match dist.and_then(|d| d.writer.as_ref()) {
                None => None,
                Some(w) => Some(Box::new(invocation(w, &input, io)?)),
            };
            let (items, batches) = shape_items(m, items, &input, io)?;
            let max_concurrency = count(&m.max_concurrency, &input, io, "MaxConcurrency")?;
            let by_count = m.tolerated_failure_count.as_ref().map(|c| count(c, &input, io, "ToleratedFailureCount"));
            let by_pct = m.tolerated_failure_percentage.as_ref().map(|c| percentage(c, &input, io));
            let tolerance = Tolerance { count: by_count.transpose()?, percentage: by_pct.transpose()? };
            let total = if batches.is_empty() { items.len() } else { batches.iter().sum() };
            let tolerated = tolerance.tolerated(total);
            Ok(Entry::Map { items, max_concurrency, tolerated_failures: tolerated, batches, tolerance, reader, writer })
        }
    }
}

/// A JSONata Map's items: `Items` (an array, or an expression giving one), else the state's input, which
/// must then be an array.
fn map_items(m: &crate::definition::MapState, input: &Value, io: &mut Io<'_>) -> Result<Vec<Value>, Failure> {
    let v = match &m.items {
        Some(Shape::Expr(e)) => {
            let v = io.expr(e, "Items")?;
            let ok = v.is_array();
            expect(v, e, "Items", "array", ok)?
        }
        Some(s) => io.shape(s, "Items")?,
        None => input.clone(),
    };
    match v {
        Value::Array(items) => Ok(items),
        other => Err(runtime(format!(
            "the Map's input is a {}, not an array: give Items (an array, or an expression giving one)",
            kind(&other)
        ))),
    }
}

/// A Map's child inputs from its items: each through `ItemSelector` (with `$$.Map.Item`, or in JSONata
/// `$states.context.Map.Item`), then, for a distributed Map with an `ItemBatcher`, grouped into batches.
/// Returns the inputs and the items each holds (empty: one each). `input` is the state's effective input;
/// `vars` the variables in the state's scope.
pub fn map_inputs(
    state: &State,
    items: Vec<Value>,
    input: &Value,
    context: &Context,
    vars: &Vars,
    entropy: &mut dyn Entropy,
) -> Result<(Vec<Value>, Vec<usize>), Failure> {
    let StateKind::Map(m) = &state.kind else { return Ok((items, Vec::new())) };
    let mut io = Io::new(state, context, vars, entropy);
    io.at(input, None, None);
    shape_items(m, items, input, &mut io)
}

fn shape_items(
    m: &crate::definition::MapState,
    items: Vec<Value>,
    input: &Value,
    io: &mut Io<'_>,
) -> Result<(Vec<Value>, Vec<usize>), Failure> {
    let mut shaped = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        shaped.push(match &m.item_selector {
            Some(selector) => {
                let mut item_ctx = io.context.clone();
                item_ctx.map_item = Some((i, item));
                let item_ctx = item_ctx.to_value();
                match selector {
                    Payload::Paths(t) => t.eval(&mut Scope {
                        docs: Docs { input, context: &item_ctx, vars: io.vars },
                        entropy: &mut *io.entropy,
                    })?,
                    Payload::Jsonata(shape) => {
                        let states = jsonata::states(input, &item_ctx, None, None);
                        let now_ms = parse_rfc3339(&io.context.state_entered_time)
                            .map_or(0, |ns| i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX));
                        let env = Env::new(states, io.vars, io.entropy.next_u64(), now_ms);
                        shape.eval(&env, "ItemSelector")?
                    }
                }
            }
            None => item,
        });
    }
    let Some(b) = m.distributed.as_ref().and_then(|d| d.batcher.as_ref()) else { return Ok((shaped, Vec::new())) };
    let max_items = b.max_items.as_ref().map(|c| batch_limit(c, input, io, "MaxItemsPerBatch"));
    let max_bytes = b.max_bytes.as_ref().map(|c| batch_limit(c, input, io, "MaxInputBytesPerBatch"));
    let batch_input = match &b.batch_input {
        Some(p) => Some(io.payload(p, input, "ItemBatcher/BatchInput")?),
        None => None,
    };
    Ok(batch(shaped, max_items.transpose()?, max_bytes.transpose()?, batch_input))
}

/// A distributed Map's reader or writer call, its `Parameters` (JSONata: `Arguments`) evaluated against the
/// state's input: for `lambda:invoke` the function is their `FunctionName` (and `Qualifier`) and the payload
/// their `Payload`; for a function resource the payload is the evaluated Parameters (or the input).
fn invocation(call: &crate::definition::Call, input: &Value, io: &mut Io<'_>) -> Result<Invocation, Failure> {
    let effective = match &call.parameters {
        Some(p) => io.payload(p, input, "Arguments")?,
        None => input.clone(),
    };
    match &call.resource {
        Resource::Function(r) => Ok(Invocation { function: r.clone(), qualifier: None, payload: effective }),
        Resource::LambdaInvoke => {
            let function = effective
                .get("FunctionName")
                .and_then(Value::as_str)
                .ok_or_else(|| runtime("the lambda:invoke Parameters give no FunctionName string".into()))?;
            Ok(Invocation {
                function: function.to_string(),
                qualifier: effective.get("Qualifier").and_then(Value::as_str).map(String::from),
                payload: lambda_invoke_payload(&effective),
            })
        }
    }
}

/// What a `lambda:invoke` with these Parameters sends its function, as Step Functions does (recorded): a
/// `Payload` string is the request's body as it is, so one holding JSON text arrives as that JSON value
/// (`"0"` is the number 0, `"\"Hi\""` the string Hi); a `Payload` that is null or missing sends `{}`.
/// A string that is not JSON text is sent as a JSON string.
pub fn lambda_invoke_payload(parameters: &Value) -> Value {
    match parameters.get("Payload") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        Some(other) => other.clone(),
    }
}

/// The `lambda:invoke` integration's result document, with the response's metadata as Step Functions
/// gives it (recorded): the function's decoded JSON as `Payload`, the Lambda response's headers, its
/// request id. `body_len` is the length of the function's response in bytes.
pub fn lambda_invoke_result(payload: Value, executed_version: &str, request_id: &str, body_len: usize) -> Value {
    let headers = [
        ("Content-Length", body_len.to_string()),
        ("Content-Type", "application/json".to_string()),
        ("X-Amz-Executed-Version", executed_version.to_string()),
        ("x-amzn-RequestId", request_id.to_string()),
    ];
    let one: serde_json::Map<String, Value> = headers.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let all: serde_json::Map<String, Value> = headers.iter().map(|(k, v)| (k.to_string(), json!([v]))).collect();
    json!({
        "ExecutedVersion": executed_version,
        "Payload": payload,
        "SdkHttpMetadata": {"AllHttpHeaders": all, "HttpHeaders": one, "HttpStatusCode": 200},
        "SdkResponseMetadata": {"RequestId": request_id},
        "StatusCode": 200,
    })
}

/// Finishes a Task, Parallel or Map whose effect produced `result` (retries are the engine's, before this).
pub fn finish(
    state: &State,
    raw: &Value,
    result: Result<Value, Failure>,
    context: &Context,
    vars: &Vars,
    entropy: &mut dyn Entropy,
) -> Outcome {
    match process_result(state, raw, result, context, vars, entropy) {
        Ok((output, assigned)) => Outcome::Next { output, next: state.next.clone(), assigned },
        Err(f) => fail(state, raw, f, context, vars, entropy),
    }
}

/// What [`finish`] does before Catch: the effect's result through the state's Assign and output processing
/// (`Output`, or ResultSelector, ResultPath and OutputPath): the output and the variables assigned. A failure
/// (the effect's, or the processing's) is returned for the engine to locate and hand to [`fail`].
pub fn process_result(
    state: &State,
    raw: &Value,
    result: Result<Value, Failure>,
    context: &Context,
    vars: &Vars,
    entropy: &mut dyn Entropy,
) -> Result<(Value, Option<Vars>), Failure> {
    let processing = match &state.kind {
        StateKind::Task(t) => &t.processing,
        StateKind::Parallel(p) => &p.processing,
        StateKind::Map(m) => &m.processing,
        _ => return Err(runtime(format!("\"{}\" has no effect to finish", state.name))),
    };
    let mut io = Io::new(state, context, vars, entropy);
    result.and_then(|r| {
        io.at(raw, Some(&r), None);
        let assigned = io.assign(&state.assign, &r)?;
        if io.jsonata {
            return Ok((io.output(&state.output, &r)?, assigned));
        }
        let selected = match &processing.result_selector {
            Some(t) => t.eval(&mut io.scope(&r))?,
            None => r,
        };
        let combined = result_path(&processing.result_path, &state.name, raw, selected)?;
        Ok((output_path(state, &combined, &io)?, assigned))
    })
}

/// A failure in `state`: the first matching catcher's target, with `{Error, Cause}` at its ResultPath (in
/// JSONata: its `Output`, by default that document) and its `Assign`, or the failure itself.
pub fn fail(
    state: &State,
    raw: &Value,
    failure: Failure,
    context: &Context,
    vars: &Vars,
    entropy: &mut dyn Entropy,
) -> Outcome {
    let catchers = match &state.kind {
        StateKind::Task(t) => &t.processing.catch,
        StateKind::Parallel(p) => &p.processing.catch,
        StateKind::Map(m) => &m.processing.catch,
        _ => return Outcome::Failed(failure),
    };
    let Some(c) = find_catcher(catchers, &failure.error) else { return Outcome::Failed(failure) };
    let error_output = failure.to_value();
    let mut io = Io::new(state, context, vars, entropy);
    io.at(raw, None, Some(&error_output));
    let caught = io.assign(&c.assign, &error_output).and_then(|assigned| {
        let output = match io.jsonata {
            true => io.output(&c.output, &error_output)?,
            false => result_path(&c.result_path, &state.name, raw, error_output.clone())?,
        };
        Ok((output, assigned))
    });
    match caught {
        Ok((output, assigned)) => Outcome::Next { output, next: Some(c.next.clone()), assigned },
        Err(f) => Outcome::Failed(f),
    }
}

/// The retriers of a state that has them.
pub fn retriers(state: &State) -> &[crate::retry::Retrier] {
    match &state.kind {
        StateKind::Task(t) => &t.processing.retry,
        StateKind::Parallel(p) => &p.processing.retry,
        StateKind::Map(m) => &m.processing.retry,
        _ => &[],
    }
}

/// Turns a function's error response into the ASL failure: `errorType` is the error name, the whole
/// error document the cause (as Step Functions reports Lambda errors).
pub fn function_error(payload: &Value) -> Failure {
    let error = payload.get("errorType").and_then(Value::as_str).unwrap_or("Lambda.Unknown").to_string();
    let cause = match payload {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Failure::new(error, cause)
}

/// The result of a Map whose iterations ended with `results` (in item order); failed iterations beyond
/// the tolerated number fail the state.
pub fn map_result(results: Vec<Result<Value, Failure>>, tolerated: Option<usize>) -> Result<Value, Failure> {
    let failed = results.iter().filter(|r| r.is_err()).count();
    if failed == 0 {
        return Ok(Value::Array(results.into_iter().map(|r| r.unwrap_or_default()).collect()));
    }
    match tolerated {
        Some(t) if failed <= t => {
            Ok(Value::Array(results.into_iter().map(|r| r.unwrap_or_else(|f| f.to_value())).collect()))
        }
        Some(t) => Err(Failure::new(
            errors::EXCEED_TOLERATED_FAILURE_THRESHOLD,
            format!("{failed} of the items failed; {t} may fail"),
        )),
        None => {
            Err(results.into_iter().find_map(|r| r.err()).unwrap_or_else(|| runtime("a Map iteration failed".into())))
        }
    }
}

#[cfg(test)]
mod tests;
