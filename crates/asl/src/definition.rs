//! State machine definitions: parsed from JSON into typed states, validated with messages that name the
//! state and field, and asked what can come next (for the pre-warmer's look-ahead).

use crate::choice::Rule;
use crate::jsonata::{expression_text, Expr, Shape};
use crate::path::{DataPath, Path};
use crate::retry::{Catcher, Retrier};
use crate::template::{Payload, Template};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A validated definition: the top-level machine and its own fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub machine: Machine,
    pub comment: Option<String>,
    pub timeout_seconds: Option<u64>,
}

/// A set of states with a start: the top level, a Parallel branch or a Map's item processor.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub start_at: String,
    pub states: BTreeMap<String, State>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub name: String,
    pub kind: StateKind,
    /// `None` is `"InputPath": null` (the state sees `{}`). It may read a variable (`$name`).
    pub input_path: Option<DataPath>,
    /// `None` is `"OutputPath": null` (the state passes `{}` on). It may read a variable (`$name`).
    pub output_path: Option<DataPath>,
    /// The next state; `None` for End states and the Choice, Succeed and Fail types.
    pub next: Option<String>,
    /// The language of the state's fields: its own `QueryLanguage`, else its machine's.
    pub language: QueryLanguage,
    /// `Assign`: the variables the state sets, seen by the states after it.
    pub assign: Option<Payload>,
    /// JSONata's `Output`: the state's output (absent: its result, or for states without one its input).
    pub output: Option<Shape>,
}

/// The language a state's fields are written in (`QueryLanguage`; JSONPath unless a definition says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueryLanguage {
    #[default]
    JsonPath,
    Jsonata,
}

/// The longest variable name Step Functions accepts.
pub const MAX_VARIABLE_NAME: usize = 80;

/// Fields only JSONPath states have, with what a JSONata state uses instead.
const JSONPATH_ONLY: [(&str, &str); 17] = [
    ("InputPath", "Arguments (or $states.input in an expression)"),
    ("OutputPath", "Output"),
    ("Parameters", "Arguments (ItemSelector in a Map)"),
    ("ResultSelector", "Output"),
    ("ResultPath", "Output"),
    ("Result", "Output"),
    ("ItemsPath", "Items"),
    ("SecondsPath", "Seconds with an expression"),
    ("TimestampPath", "Timestamp with an expression"),
    ("TimeoutSecondsPath", "TimeoutSeconds with an expression"),
    ("HeartbeatSecondsPath", "HeartbeatSeconds with an expression"),
    ("MaxConcurrencyPath", "MaxConcurrency with an expression"),
    ("ToleratedFailureCountPath", "ToleratedFailureCount with an expression"),
    ("ToleratedFailurePercentagePath", "ToleratedFailurePercentage with an expression"),
    ("ErrorPath", "Error with an expression"),
    ("CausePath", "Cause with an expression"),
    ("Variable", "Condition"),
];

#[derive(Debug, Clone, PartialEq)]
pub enum StateKind {
    Task(Box<Task>),
    Pass(Pass),
    Choice(Choice),
    Wait(Wait),
    Succeed,
    Fail(Fail),
    Parallel(Box<Parallel>),
    Map(Box<MapState>),
}

/// What a Task runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// A function reference: `name`, `name:qualifier` or a Lambda function ARN.
    Function(String),
    /// `arn:aws:states:::lambda:invoke`: the effective input names `FunctionName` and carries `Payload`.
    LambdaInvoke,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Seconds {
    Fixed(u64),
    Path(DataPath),
    Expr(Expr),
}

/// Fields Task, Parallel and Map share.
#[derive(Debug, Clone, PartialEq)]
pub struct Processing {
    /// `Parameters` (JSONPath) or `Arguments` (JSONata): the effective input.
    pub parameters: Option<Payload>,
    pub result_selector: Option<Template>,
    /// `None` is `"ResultPath": null` (discard the result).
    pub result_path: Option<Path>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub resource: Resource,
    pub processing: Processing,
    pub timeout: Seconds,
    /// Whether the definition gives the timeout (`TimeoutSeconds` or `TimeoutSecondsPath`): Step Functions
    /// records `timeoutInSeconds` only then.
    pub timeout_given: bool,
    pub heartbeat: Option<Seconds>,
}

/// A Task's timeout when the definition gives none.
pub const DEFAULT_TASK_TIMEOUT_SECONDS: u64 = 60;

#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    pub result: Option<Value>,
    pub parameters: Option<Template>,
    pub result_path: Option<Path>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub choices: Vec<ChoiceRule>,
    pub default: Option<String>,
}

/// One of a Choice's top-level rules: its test, where it goes, and (when it matches) what it assigns and,
/// in JSONata, outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceRule {
    pub test: Test,
    pub next: String,
    pub assign: Option<Payload>,
    pub output: Option<Shape>,
}

/// A Choice rule's test: JSONPath's comparison operators, or JSONata's `Condition` (true, false or an
/// expression giving one of them).
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Rule(Rule),
    Condition(Shape),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Wait {
    Seconds(u64),
    SecondsPath(DataPath),
    Timestamp(String),
    TimestampPath(DataPath),
    SecondsExpr(Expr),
    TimestampExpr(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    Literal(String),
    Path(DataPath),
    /// An intrinsic call in `ErrorPath`/`CausePath` (Step Functions allows them there).
    Call(crate::intrinsic::Call),
    /// A JSONata `Error`/`Cause`.
    Expr(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fail {
    pub error: Option<Text>,
    pub cause: Option<Text>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parallel {
    pub branches: Vec<Machine>,
    pub processing: Processing,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Count {
    Fixed(u64),
    Path(DataPath),
    Expr(Expr),
}

/// `ToleratedFailurePercentage`: a number from 0 to 100, fractions allowed, or a path to one.
#[derive(Debug, Clone, PartialEq)]
pub enum Percentage {
    Fixed(f64),
    Path(DataPath),
    Expr(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MapState {
    pub processor: Machine,
    pub items_path: DataPath,
    /// JSONata's `Items`: an array, or an expression giving one (absent: the state's input).
    pub items: Option<Shape>,
    pub item_selector: Option<Payload>,
    /// 0 is unlimited.
    pub max_concurrency: Count,
    pub tolerated_failure_count: Option<Count>,
    pub tolerated_failure_percentage: Option<Percentage>,
    pub processing: Processing,
    /// `ProcessorConfig.Mode: DISTRIBUTED`: each item (or batch) runs as a child execution of its own.
    pub distributed: Option<Distributed>,
}

/// What a distributed Map adds: a map run whose child executions run the item processor.
#[derive(Debug, Clone, PartialEq)]
pub struct Distributed {
    /// Names the map run and its children (`<machine>/<label>`); the state's name when absent.
    pub label: Option<String>,
    /// `STANDARD` (the default) or `EXPRESS`; both run as executions with their own history here.
    pub execution_type: String,
    pub batcher: Option<ItemBatcher>,
    /// Where the items come from instead of the input: a function that returns them.
    pub reader: Option<ItemReader>,
    /// Where the results go: a function given them, whose answer the state's output carries.
    pub writer: Option<Call>,
    /// The item processor as a definition of its own (`StartAt`, `States`, `QueryLanguage`): what each child
    /// execution runs.
    pub definition: Value,
}

/// A function a distributed Map calls: `Resource` (`lambda:invoke`, or a function name or ARN) and the
/// `Parameters` its payload is made from (for `lambda:invoke`: `FunctionName`, `Payload`, `Qualifier`).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub resource: Resource,
    pub parameters: Option<Payload>,
}

/// `ItemReader`: the function whose answer (a JSON array) is the items, and `ReaderConfig.MaxItems[Path]`
/// (0: all of them).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemReader {
    pub call: Call,
    pub max_items: Option<Count>,
}

/// `ItemBatcher`: items grouped into batches, each a child's input `{"BatchInput": …, "Items": […]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemBatcher {
    pub max_items: Option<Count>,
    pub max_bytes: Option<Count>,
    pub batch_input: Option<Payload>,
}

/// The characters a Map `Label` may not hold (besides white space and control characters).
pub const LABEL_FORBIDDEN: &str = "?*<>{}[]:;,\\|^~$#%&`\"";
/// The longest `Label`.
pub const MAX_LABEL_LEN: usize = 40;

/// Why `label` cannot name a map run, if it cannot.
pub fn label_problem(label: &str) -> Option<String> {
    if label.is_empty() {
        return Some("Label cannot be empty".into());
    }
    if label.chars().count() > MAX_LABEL_LEN {
        return Some(format!("Label cannot exceed {MAX_LABEL_LEN} characters, got {}", label.chars().count()));
    }
    let bad = label.chars().find(|c| {
        c.is_whitespace()
            || LABEL_FORBIDDEN.contains(*c)
            || ('\u{0}'..='\u{1f}').contains(c)
            || ('\u{7f}'..='\u{9f}').contains(c)
    });
    bad.map(|c| format!("Label cannot contain {c:?}: use letters, digits, '-', '_', '.' and the like"))
}

/// One thing wrong with a definition: a machine-readable code, where (`States.Name.Field`) and what.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Problem {
    pub code: &'static str,
    pub location: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}: {}", self.code, self.location, self.message)
    }
}

pub mod codes {
    pub const SCHEMA: &str = "SCHEMA_VALIDATION_FAILED";
    pub const MISSING_TRANSITION_TARGET: &str = "MISSING_TRANSITION_TARGET";
    pub const UNREACHABLE_STATE: &str = "UNREACHABLE_STATE";
    pub const BRANCH_OUTBOUND: &str = "BRANCH_OUTBOUND_TRANSITION_TARGET";
    pub const MAP_OUTBOUND: &str = "MAP_OUTBOUND_TRANSITION_TARGET";
    pub const DUPLICATE_STATE_NAMES: &str = "DUPLICATE_STATE_NAMES";
    pub const MISSING_TERMINAL_STATE: &str = "MISSING_TERMINAL_STATE";
    pub const DUPLICATE_FIELD_NAME: &str = "DUPLICATE_FIELD_NAME";
    pub const INVALID_PATH: &str = "INVALID_JSON_PATH";
    pub const UNSUPPORTED: &str = "UNSUPPORTED_FEATURE";
    pub const INVALID_RESOURCE: &str = "INVALID_RESOURCE";
}

/// The longest state name asl-validator accepts.
pub const MAX_STATE_NAME: usize = 80;

const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";

impl Definition {
    /// Parses and validates a definition given as JSON text.
    pub fn parse_str(text: &str) -> Result<Definition, Vec<Problem>> {
        let v: Value = serde_json::from_str(text).map_err(|e| {
            vec![Problem {
                code: codes::SCHEMA,
                location: "$".into(),
                message: format!("the definition is not JSON: {e}"),
            }]
        })?;
        Definition::parse(&v)
    }

    /// Parses and validates a definition; every problem found is reported, sorted by location.
    pub fn parse(v: &Value) -> Result<Definition, Vec<Problem>> {
        let mut cx = Cx::default();
        let Some(map) = v.as_object() else {
            return Err(vec![Problem {
                code: codes::SCHEMA,
                location: "$".into(),
                message: "a definition is a JSON object with StartAt and States".into(),
            }]);
        };
        let mut f = Fields::new(map, String::new(), &mut cx);
        let comment = f.string("Comment");
        if let Some(version) = f.string("Version") {
            if version != "1.0" {
                f.problem(codes::SCHEMA, "Version", format!("Version must be \"1.0\", got \"{version}\""));
            }
        }
        let timeout_seconds = f.positive("TimeoutSeconds");
        let language = f.query_language().unwrap_or_default();
        f.cx.top = language;
        f.cx.machine = language;
        let machine = f.machine();
        f.finish();
        if let Some(m) = &machine {
            let mut owner = HashMap::new();
            collect_owners(m, "", &mut owner);
            check_graph(m, "", None, &owner, &mut cx);
            check_variable_scopes(m, "", &BTreeSet::new(), &mut cx);
        }
        match (machine, cx.problems.is_empty()) {
            (Some(machine), true) => Ok(Definition { machine, comment, timeout_seconds }),
            _ => {
                cx.problems.sort();
                cx.problems.dedup();
                Err(cx.problems)
            }
        }
    }
}

impl Machine {
    pub fn state(&self, name: &str) -> Option<&State> {
        self.states.get(name)
    }

    /// The states that can follow `name` in this machine: Next, every Choice target and Default,
    /// and every catcher's Next. This is the look-ahead the pre-warmer plans from.
    pub fn successors(&self, name: &str) -> Vec<&str> {
        let Some(state) = self.states.get(name) else { return Vec::new() };
        let mut out: Vec<&str> = state.next.iter().map(String::as_str).collect();
        match &state.kind {
            StateKind::Choice(c) => {
                out.extend(c.choices.iter().map(|r| r.next.as_str()));
                out.extend(c.default.as_deref());
            }
            StateKind::Task(t) => out.extend(t.processing.catch.iter().map(|c| c.next.as_str())),
            StateKind::Parallel(p) => out.extend(p.processing.catch.iter().map(|c| c.next.as_str())),
            StateKind::Map(m) => out.extend(m.processing.catch.iter().map(|c| c.next.as_str())),
            _ => {}
        }
        let mut seen = BTreeSet::new();
        out.retain(|n| seen.insert(*n));
        out
    }
}

impl State {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            StateKind::Task(_) => "Task",
            StateKind::Pass(_) => "Pass",
            StateKind::Choice(_) => "Choice",
            StateKind::Wait(_) => "Wait",
            StateKind::Succeed => "Succeed",
            StateKind::Fail(_) => "Fail",
            StateKind::Parallel(_) => "Parallel",
            StateKind::Map(_) => "Map",
        }
    }

    /// Ends its machine (End, Succeed or Fail).
    pub fn is_terminal(&self) -> bool {
        match self.kind {
            StateKind::Succeed | StateKind::Fail(_) => true,
            StateKind::Choice(_) => false,
            _ => self.next.is_none(),
        }
    }
}

#[derive(Default)]
struct Cx {
    problems: Vec<Problem>,
    names: BTreeMap<String, usize>,
    /// The definition's `QueryLanguage`, the default of the machine being read (a branch or item processor
    /// may set its own), and the language of the state being read.
    top: QueryLanguage,
    machine: QueryLanguage,
    state: QueryLanguage,
}

impl Cx {
    fn jsonata(&self) -> bool {
        self.state == QueryLanguage::Jsonata
    }
}

/// Reads the fields of one JSON object, recording problems and which fields were used.
struct Fields<'a, 'c> {
    map: &'a Map<String, Value>,
    at: String,
    used: BTreeSet<&'a str>,
    cx: &'c mut Cx,
}

impl<'a, 'c> Fields<'a, 'c> {
    fn new(map: &'a Map<String, Value>, at: String, cx: &'c mut Cx) -> Self {
        Fields { map, at, used: BTreeSet::new(), cx }
    }

    fn loc(&self, field: &str) -> String {
        if self.at.is_empty() {
            field.to_string()
        } else if field.is_empty() {
            self.at.clone()
        } else {
            format!("{}.{field}", self.at)
        }
    }

    fn problem(&mut self, code: &'static str, field: &str, message: String) {
        let location = self.loc(field);
        self.cx.problems.push(Problem { code, location, message });
    }

    fn get(&mut self, field: &'a str) -> Option<&'a Value> {
        let v = self.map.get(field)?;
        self.used.insert(field);
        Some(v)
    }

    fn has(&self, field: &str) -> bool {
        self.map.contains_key(field)
    }

    fn string(&mut self, field: &'a str) -> Option<String> {
        match self.get(field)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.problem(codes::SCHEMA, field, format!("{field} must be a string, got {other}"));
                None
            }
        }
    }

    fn integer(&mut self, field: &'a str, min: u64) -> Option<u64> {
        let v = self.get(field)?;
        match v.as_u64() {
            Some(n) if n >= min => Some(n),
            _ => {
                self.problem(codes::SCHEMA, field, format!("{field} must be an integer of at least {min}, got {v}"));
                None
            }
        }
    }

    fn positive(&mut self, field: &'a str) -> Option<u64> {
        self.integer(field, 1)
    }

    /// `ResultPath`: a reference path into the state's input, or null (the result is dropped).
    fn result_path(&mut self) -> Option<Option<Path>> {
        const FIELD: &str = "ResultPath";
        let Some(s) = self.path_text(FIELD, "write")? else { return Some(None) };
        if DataPath::parse(&s).is_ok_and(|p| p.variable().is_some()) {
            let message =
                format!("ResultPath writes into the state's output and cannot set the variable in '{s}': use Assign");
            self.problem(codes::INVALID_PATH, FIELD, message);
            return None;
        }
        self.parsed(FIELD, Path::parse_reference(&s))
    }

    /// `InputPath` / `OutputPath`: a path on the state's input (or output) or on a variable, or null.
    fn io_path(&mut self, field: &'a str) -> Option<Option<DataPath>> {
        let Some(s) = self.path_text(field, "read")? else { return Some(None) };
        self.parsed(field, DataPath::parse(&s))
    }

    /// A path field's text, `Some(None)` for null; `None` (with a problem) for anything else, and for a path
    /// on the context object, which these fields cannot `verb`.
    fn path_text(&mut self, field: &'a str, verb: &str) -> Option<Option<String>> {
        match self.get(field)? {
            Value::Null => Some(None),
            Value::String(s) if s.starts_with("$$") => {
                self.problem(codes::INVALID_PATH, field, format!("{field} cannot {verb} the context object ($$)"));
                None
            }
            Value::String(s) => Some(Some(s.clone())),
            other => {
                self.problem(codes::SCHEMA, field, format!("{field} must be a path string or null, got {other}"));
                None
            }
        }
    }

    /// A parsed path, or a problem saying why it does not parse.
    fn parsed<T>(&mut self, field: &str, parsed: Result<T, crate::path::PathSyntaxError>) -> Option<Option<T>> {
        match parsed {
            Ok(p) => Some(Some(p)),
            Err(e) => {
                self.problem(codes::INVALID_PATH, field, e.to_string());
                None
            }
        }
    }

    fn data_path(&mut self, field: &'a str) -> Option<DataPath> {
        let s = self.string(field)?;
        self.parsed(field, DataPath::parse(&s)).flatten()
    }

    fn template(&mut self, field: &'a str) -> Option<Template> {
        let v = self.get(field)?;
        match Template::compile(v) {
            Ok(t) => Some(t),
            Err((inner, message)) => {
                let code = if message.contains("appears twice") { codes::DUPLICATE_FIELD_NAME } else { codes::SCHEMA };
                self.problem(code, &format!("{field}{inner}"), message);
                None
            }
        }
    }

    fn exclusive(&mut self, a: &str, b: &str) -> bool {
        if self.has(a) && self.has(b) {
            self.problem(codes::SCHEMA, b, format!("{a} and {b} cannot both be set; keep one"));
            return false;
        }
        true
    }

    /// `QueryLanguage` of this object, if it gives one. JSONPath under a definition written in JSONata is
    /// refused (Step Functions' rule and words).
    fn query_language(&mut self) -> Option<QueryLanguage> {
        let q = self.string("QueryLanguage")?;
        let language = match q.as_str() {
            "JSONPath" => QueryLanguage::JsonPath,
            "JSONata" => QueryLanguage::Jsonata,
            other => {
                self.problem(
                    codes::SCHEMA,
                    "QueryLanguage",
                    format!("QueryLanguage must be JSONPath or JSONata, got \"{other}\""),
                );
                return None;
            }
        };
        if language == QueryLanguage::JsonPath && self.cx.top == QueryLanguage::Jsonata && !self.at.is_empty() {
            self.problem(
                codes::SCHEMA,
                "QueryLanguage",
                "'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine".into(),
            );
        }
        Some(language)
    }

    /// A JSONata shape (`Output`, `Items`, a rule's `Condition`).
    fn shape(&mut self, field: &'a str) -> Option<Shape> {
        let v = self.get(field)?;
        match Shape::compile(v) {
            Ok(s) => Some(s),
            Err((inner, message)) => {
                self.problem(codes::SCHEMA, &format!("{field}{}", inner.replace('/', ".")), message);
                None
            }
        }
    }

    /// A payload in the state's language: a JSONata shape, or a JSONPath template.
    fn payload(&mut self, field: &'a str) -> Option<Payload> {
        if self.cx.jsonata() {
            self.shape(field).map(Payload::Jsonata)
        } else {
            self.template(field).map(Payload::Paths)
        }
    }

    /// `Some` when, in a JSONata state, `field` holds an expression string: the compiled expression, or
    /// `None` with the problem recorded. `None` when the field is absent or not an expression.
    fn expression(&mut self, field: &'a str) -> Option<Option<Expr>> {
        if !self.cx.jsonata() {
            return None;
        }
        let text = self.map.get(field).and_then(Value::as_str).and_then(expression_text)?;
        self.used.insert(field);
        match Expr::parse(text) {
            Ok(e) => Some(Some(e)),
            Err(message) => {
                self.problem(codes::SCHEMA, field, message);
                Some(None)
            }
        }
    }

    /// `Assign`: an object of variables, each name 1–80 characters of letters, digits and `_` that does not
    /// start with a digit (a JSONPath state's `"name.$"` fields take their values from paths), and not
    /// `states`, which JSONata reserves.
    fn assign(&mut self) -> Option<Payload> {
        let v = self.map.get("Assign")?;
        let Some(map) = v.as_object() else {
            self.get("Assign");
            self.problem(codes::SCHEMA, "Assign", format!("Assign must be an object of variables, got {v}"));
            return None;
        };
        let jsonata = self.cx.jsonata();
        for key in map.keys() {
            let name = if jsonata { key.as_str() } else { key.strip_suffix(".$").unwrap_or(key) };
            if let Some(why) = variable_name_problem(name) {
                self.problem(codes::SCHEMA, &format!("Assign.{key}"), why);
            }
        }
        self.payload("Assign")
    }

    /// Reports every field not read.
    fn finish(self) {
        let unknown: Vec<String> = self.map.keys().filter(|k| !self.used.contains(k.as_str())).cloned().collect();
        let at = self.at.clone();
        let jsonata = self.cx.jsonata();
        for k in unknown {
            let path_field = JSONPATH_ONLY.iter().find(|(f, _)| *f == k);
            let (code, message) = match k.as_str() {
                _ if jsonata && path_field.is_some() => {
                    let instead = path_field.map_or("", |(_, i)| *i);
                    (codes::SCHEMA, format!("{k} is a JSONPath field; a state in JSONata uses {instead}"))
                }
                "Arguments" | "Output" | "Items" | "Condition" if !jsonata => (
                    codes::SCHEMA,
                    format!(
                        "{k} is a JSONata field: set \"QueryLanguage\": \"JSONata\" on the state or the state machine"
                    ),
                ),
                "ItemReader" | "ItemBatcher" | "ResultWriter" | "Credentials" => {
                    (codes::UNSUPPORTED, format!("{k} is not supported yet"))
                }
                _ => (codes::SCHEMA, format!("unknown field '{k}'")),
            };
            let location = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
            self.cx.problems.push(Problem { code, location, message });
        }
    }

    /// `StartAt` and `States` of this object.
    fn machine(&mut self) -> Option<Machine> {
        let start_at = self.string("StartAt");
        if start_at.is_none() && !self.has("StartAt") {
            self.problem(codes::SCHEMA, "StartAt", "StartAt is required: name the first state".into());
        }
        let states_v = self.get("States");
        let Some(states_map) = states_v.and_then(Value::as_object) else {
            let message =
                if states_v.is_some() { "States must be an object of named states" } else { "States is required" };
            self.problem(codes::SCHEMA, "States", message.into());
            return None;
        };
        if states_map.is_empty() {
            self.problem(codes::SCHEMA, "States", "States must name at least one state".into());
        }
        let mut states = BTreeMap::new();
        for (name, sv) in states_map {
            let at = self.loc(&format!("States.{name}"));
            *self.cx.names.entry(name.clone()).or_default() += 1;
            if name.is_empty() || name.chars().count() > MAX_STATE_NAME {
                self.cx.problems.push(Problem {
                    code: codes::SCHEMA,
                    location: at.clone(),
                    message: format!("a state name has 1 to {MAX_STATE_NAME} characters"),
                });
            }
            if let Some(state) = parse_state(name, sv, at, self.cx) {
                states.insert(name.clone(), state);
            }
        }
        if let Some(start) = &start_at {
            if !states_map.contains_key(start) {
                self.problem(
                    codes::MISSING_TRANSITION_TARGET,
                    "StartAt",
                    format!("StartAt names \"{start}\", which is not a state here"),
                );
            }
        }
        Some(Machine { start_at: start_at?, states })
    }
}

fn parse_state(name: &str, v: &Value, at: String, cx: &mut Cx) -> Option<State> {
    let Some(map) = v.as_object() else {
        cx.problems.push(Problem { code: codes::SCHEMA, location: at, message: "a state must be an object".into() });
        return None;
    };
    let saved = cx.state;
    let mut f = Fields::new(map, at, cx);
    let type_name = f.string("Type");
    f.string("Comment");
    let language = f.query_language().unwrap_or(f.cx.machine);
    f.cx.state = language;
    let jsonata = language == QueryLanguage::Jsonata;
    let Some(type_name) = type_name else {
        if !f.has("Type") {
            f.problem(
                codes::SCHEMA,
                "Type",
                "Type is required: Task, Pass, Choice, Wait, Succeed, Fail, Parallel or Map".into(),
            );
        }
        f.finish();
        cx.state = saved;
        return None;
    };
    let io = type_name != "Fail" && !jsonata;
    let output = if jsonata && type_name != "Fail" { f.shape("Output") } else { None };
    let assign = if matches!(type_name.as_str(), "Succeed" | "Fail") { None } else { f.assign() };
    let input_path = if io { f.io_path("InputPath").unwrap_or_else(data_root) } else { data_root() };
    let output_path = if io { f.io_path("OutputPath").unwrap_or_else(data_root) } else { data_root() };
    let transitions = matches!(type_name.as_str(), "Task" | "Pass" | "Wait" | "Parallel" | "Map");
    let mut next = None;
    if transitions {
        next = f.string("Next");
        let end = f.get("End");
        match (f.has("Next"), end) {
            (true, Some(Value::Bool(true))) => {
                f.problem(codes::SCHEMA, "End", "a state has either Next or End: true, not both".into())
            }
            (false, Some(Value::Bool(true))) => {}
            (false, _) => f.problem(codes::SCHEMA, "Next", "a state needs Next or End: true".into()),
            (true, Some(other)) if other != &Value::Bool(false) => {
                f.problem(codes::SCHEMA, "End", format!("End must be true or false, got {other}"))
            }
            (true, _) => {}
        }
    }
    let kind = match type_name.as_str() {
        "Task" => task(&mut f).map(|t| StateKind::Task(Box::new(t))),
        "Pass" if jsonata => Some(StateKind::Pass(Pass { result: None, parameters: None, result_path: root() })),
        "Pass" => Some(StateKind::Pass(Pass {
            result: f.get("Result").cloned(),
            parameters: f.template("Parameters"),
            result_path: f.result_path().unwrap_or_else(root),
        })),
        "Choice" => choice(&mut f).map(StateKind::Choice),
        "Wait" => wait(&mut f).map(StateKind::Wait),
        "Succeed" => Some(StateKind::Succeed),
        "Fail" => {
            let error = text(&mut f, "Error", "ErrorPath");
            let cause = text(&mut f, "Cause", "CausePath");
            Some(StateKind::Fail(Fail { error, cause }))
        }
        "Parallel" => parallel(&mut f).map(|p| StateKind::Parallel(Box::new(p))),
        "Map" => map_state(&mut f).map(|m| StateKind::Map(Box::new(m))),
        other => {
            f.problem(
                codes::SCHEMA,
                "Type",
                format!("unknown Type \"{other}\"; use Task, Pass, Choice, Wait, Succeed, Fail, Parallel or Map"),
            );
            None
        }
    };
    f.finish();
    cx.state = saved;
    Some(State { name: name.to_string(), kind: kind?, input_path, output_path, next, language, assign, output })
}

/// Why `name` cannot name a variable, if it cannot.
pub fn variable_name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_');
    if !first_ok || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Some(format!(
            "'{name}' is not a variable name: use letters, digits and '_', not starting with a digit (a whole \
             variable, never a part of one such as x.y or x[0])"
        ));
    }
    if name.chars().count() > MAX_VARIABLE_NAME {
        return Some(format!("a variable name has at most {MAX_VARIABLE_NAME} characters; '{name}' has more"));
    }
    if name == "states" {
        return Some("'states' is reserved: $states is the state's input, result and context".into());
    }
    None
}

fn root() -> Option<Path> {
    Path::parse("$").ok()
}

fn data_root() -> Option<DataPath> {
    DataPath::parse("$").ok()
}

fn processing(f: &mut Fields<'_, '_>, parameters_field: Option<&'static str>) -> Processing {
    if f.cx.jsonata() {
        return Processing {
            parameters: parameters_field.and_then(|_| f.payload("Arguments")),
            result_selector: None,
            result_path: root(),
            retry: retriers(f),
            catch: catchers(f),
        };
    }
    Processing {
        parameters: parameters_field.and_then(|p| f.payload(p)),
        result_selector: f.template("ResultSelector"),
        result_path: f.result_path().unwrap_or_else(root),
        retry: retriers(f),
        catch: catchers(f),
    }
}

/// A Task's (or a distributed Map reader's or writer's) `Resource`: `lambda:invoke` (whose Parameters name
/// the FunctionName), or a function's name or ARN.
fn resource(f: &mut Fields<'_, '_>, text: Option<&str>, parameters: &Option<Payload>) -> Option<Resource> {
    match text {
        None => None,
        Some(LAMBDA_INVOKE) => {
            let names_function = parameters.as_ref().is_some_and(|p| p.names("FunctionName"));
            let field = if f.cx.jsonata() { "Arguments" } else { "Parameters" };
            if !names_function && !f.cx.problems.iter().any(|p| p.location.contains(field)) {
                let usual =
                    if f.cx.jsonata() { "\"Payload\": \"{% $states.input %}\"" } else { "\"Payload.$\": \"$\"" };
                f.problem(
                    codes::SCHEMA,
                    field,
                    format!("{LAMBDA_INVOKE} needs {field} with FunctionName (and usually {usual})"),
                );
            }
            Some(Resource::LambdaInvoke)
        }
        Some(r) if r.starts_with("arn:aws:states:::") => {
            f.problem(
                codes::UNSUPPORTED,
                "Resource",
                format!("the integration \"{r}\" is not supported; use {LAMBDA_INVOKE} or a function ARN or name"),
            );
            None
        }
        Some(r) => match stoke_core::FunctionRef::parse(r) {
            Ok(_) => Some(Resource::Function(r.to_string())),
            Err(e) => {
                f.problem(codes::INVALID_RESOURCE, "Resource", e.0);
                None
            }
        },
    }
}

fn task(f: &mut Fields<'_, '_>) -> Option<Task> {
    let resource_text = f.string("Resource");
    if resource_text.is_none() && !f.has("Resource") {
        f.problem(codes::SCHEMA, "Resource", "Resource is required: a function name or ARN".into());
    }
    let processing = processing(f, Some("Parameters"));
    f.exclusive("TimeoutSeconds", "TimeoutSecondsPath");
    f.exclusive("HeartbeatSeconds", "HeartbeatSecondsPath");
    let timeout = seconds(f, "TimeoutSeconds", "TimeoutSecondsPath");
    let heartbeat = seconds(f, "HeartbeatSeconds", "HeartbeatSecondsPath");
    if let (Some(Seconds::Fixed(t)), Some(Seconds::Fixed(h))) = (&timeout, &heartbeat) {
        if h >= t {
            f.problem(
                codes::SCHEMA,
                "HeartbeatSeconds",
                format!("HeartbeatSeconds ({h}) must be smaller than TimeoutSeconds ({t})"),
            );
        }
    }
    let resource = resource(f, resource_text.as_deref(), &processing.parameters);
    Some(Task {
        resource: resource?,
        processing,
        timeout_given: timeout.is_some(),
        timeout: timeout.unwrap_or(Seconds::Fixed(DEFAULT_TASK_TIMEOUT_SECONDS)),
        heartbeat,
    })
}

fn seconds(f: &mut Fields<'_, '_>, fixed: &'static str, path: &'static str) -> Option<Seconds> {
    if let Some(e) = f.expression(fixed) {
        return e.map(Seconds::Expr);
    }
    if f.has(fixed) {
        f.positive(fixed).map(Seconds::Fixed)
    } else if f.has(path) {
        f.data_path(path).map(Seconds::Path)
    } else {
        None
    }
}

fn text(f: &mut Fields<'_, '_>, literal: &'static str, path: &'static str) -> Option<Text> {
    if !f.exclusive(literal, path) {
        f.get(path);
    }
    if let Some(e) = f.expression(literal) {
        return e.map(Text::Expr);
    }
    if f.has(literal) {
        f.string(literal).map(Text::Literal)
    } else if f.has(path) {
        match f.get(path).and_then(Value::as_str).filter(|s| crate::intrinsic::looks_like_call(s)) {
            Some(call) => match crate::intrinsic::Call::parse(call) {
                Ok(c) => Some(Text::Call(c)),
                Err(e) => {
                    f.problem(codes::INVALID_PATH, path, e);
                    None
                }
            },
            None => f.data_path(path).map(Text::Path),
        }
    } else {
        None
    }
}

fn wait(f: &mut Fields<'_, '_>) -> Option<Wait> {
    let given: Vec<&str> =
        ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"].into_iter().filter(|k| f.has(k)).collect();
    if given.len() != 1 {
        f.problem(
            codes::SCHEMA,
            "",
            format!(
                "a Wait state needs exactly one of Seconds, SecondsPath, Timestamp or TimestampPath; it has {}",
                given.len()
            ),
        );
        for k in given {
            f.get(k);
        }
        return None;
    }
    if let Some(e) = f.expression(given[0]) {
        return e.map(if given[0] == "Seconds" { Wait::SecondsExpr } else { Wait::TimestampExpr });
    }
    match given[0] {
        "Seconds" => f.integer("Seconds", 0).map(Wait::Seconds),
        "SecondsPath" => f.data_path("SecondsPath").map(Wait::SecondsPath),
        "Timestamp" => {
            let t = f.string("Timestamp")?;
            if stoke_core::time::parse_rfc3339(&t).is_none() {
                f.problem(
                    codes::SCHEMA,
                    "Timestamp",
                    format!("\"{t}\" is not an RFC 3339 timestamp such as 2024-01-01T00:00:00Z"),
                );
                return None;
            }
            Some(Wait::Timestamp(t))
        }
        _ => f.data_path("TimestampPath").map(Wait::TimestampPath),
    }
}

fn choice(f: &mut Fields<'_, '_>) -> Option<Choice> {
    let default = f.string("Default");
    let Some(items) = f.get("Choices").and_then(Value::as_array).filter(|a| !a.is_empty()) else {
        f.problem(codes::SCHEMA, "Choices", "Choices must be a non-empty array of rules".into());
        return None;
    };
    let mut choices = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("Choices[{i}]");
        let Some(map) = item.as_object() else {
            f.problem(codes::SCHEMA, &field, "a Choice rule must be an object".into());
            continue;
        };
        let mut rf = Fields::new(map, f.loc(&field), f.cx);
        let assign = rf.assign();
        let next = rf.string("Next");
        if next.is_none() && !rf.has("Next") {
            rf.problem(codes::SCHEMA, "", "each Choice rule needs Next".into());
        }
        let test = if rf.cx.jsonata() {
            let output = rf.shape("Output");
            rf.string("Comment");
            let condition = rf.shape("Condition");
            if !rf.has("Condition") {
                rf.problem(codes::SCHEMA, "Condition", "a JSONata Choice rule needs a Condition".into());
            }
            let shown = match &condition {
                Some(Shape::Literal(v)) if !v.is_boolean() => Some(v.to_string()),
                Some(Shape::Object(_) | Shape::Array(_)) => rf.map.get("Condition").map(Value::to_string),
                _ => None,
            };
            if let Some(v) = shown {
                rf.problem(
                    codes::SCHEMA,
                    "Condition",
                    format!("Condition is true, false or an expression {{% … %}} giving one, got {v}"),
                );
            }
            rf.finish();
            condition.map(|c| (Test::Condition(c), output))
        } else {
            // The comparison operators are the rule's own fields: Rule::parse reads them all.
            let jsonata_field = ["Condition", "Output"].into_iter().find(|k| rf.has(k));
            if let Some(k) = jsonata_field {
                rf.problem(
                    codes::SCHEMA,
                    k,
                    format!(
                        "{k} is a JSONata field: set \"QueryLanguage\": \"JSONata\" on the state or the state machine"
                    ),
                );
                return None;
            }
            match Rule::parse(item, true) {
                Ok(rule) => Some((Test::Rule(rule), None)),
                Err(e) => {
                    rf.problem(codes::SCHEMA, "", e);
                    None
                }
            }
        };
        if let (Some((test, output)), Some(next)) = (test, next) {
            choices.push(ChoiceRule { test, next, assign, output });
        }
    }
    (choices.len() == items.len()).then_some(Choice { choices, default })
}

fn parallel(f: &mut Fields<'_, '_>) -> Option<Parallel> {
    let processing = processing(f, Some("Parameters"));
    let Some(items) = f.get("Branches").and_then(Value::as_array).filter(|a| !a.is_empty()) else {
        f.problem(codes::SCHEMA, "Branches", "Branches must be a non-empty array of {StartAt, States}".into());
        return None;
    };
    let mut branches = Vec::new();
    for (i, b) in items.iter().enumerate() {
        let at = f.loc(&format!("Branches[{i}]"));
        let Some(map) = b.as_object() else {
            f.problem(codes::SCHEMA, &format!("Branches[{i}]"), "a branch is an object with StartAt and States".into());
            continue;
        };
        let mut bf = Fields::new(map, at, f.cx);
        bf.string("Comment");
        let language = bf.query_language();
        let saved = bf.cx.machine;
        bf.cx.machine = language.unwrap_or(saved);
        let m = bf.machine();
        bf.cx.machine = saved;
        bf.finish();
        branches.extend(m);
    }
    (branches.len() == items.len()).then_some(Parallel { branches, processing })
}

fn map_state(f: &mut Fields<'_, '_>) -> Option<MapState> {
    f.exclusive("ItemProcessor", "Iterator");
    f.exclusive("ItemSelector", "Parameters");
    f.exclusive("MaxConcurrency", "MaxConcurrencyPath");
    f.exclusive("ToleratedFailureCount", "ToleratedFailureCountPath");
    f.exclusive("ToleratedFailurePercentage", "ToleratedFailurePercentagePath");
    let jsonata = f.cx.jsonata();
    let selector_field = if f.has("Parameters") && !jsonata { "Parameters" } else { "ItemSelector" };
    let item_selector = f.payload(selector_field);
    let items = if jsonata { f.shape("Items") } else { None };
    if let Some(Shape::Literal(v)) = &items {
        if !v.is_array() {
            f.problem(
                codes::SCHEMA,
                "Items",
                format!("Items is an array or an expression {{% … %}} giving one, got {v}"),
            );
        }
    }
    let processing = processing(f, None);
    let label = f.string("Label");
    if let Some(problem) = label.as_deref().and_then(label_problem) {
        f.problem(codes::SCHEMA, "Label", problem);
    }
    let batcher = f.get("ItemBatcher").cloned();
    let reader = f.get("ItemReader").cloned();
    let writer = f.get("ResultWriter").cloned();
    let items_path = if f.has("ItemsPath") && !jsonata { f.data_path("ItemsPath") } else { DataPath::parse("$").ok() };
    let count = |f: &mut Fields<'_, '_>, fixed: &'static str, path: &'static str| {
        if let Some(e) = f.expression(fixed) {
            e.map(Count::Expr)
        } else if f.has(path) && !f.cx.jsonata() {
            f.data_path(path).map(Count::Path)
        } else {
            f.integer(fixed, 0).map(Count::Fixed)
        }
    };
    let max_concurrency = count(f, "MaxConcurrency", "MaxConcurrencyPath").unwrap_or(Count::Fixed(0));
    let tolerated_failure_count = count(f, "ToleratedFailureCount", "ToleratedFailureCountPath");
    let tolerated_failure_percentage = if let Some(e) = f.expression("ToleratedFailurePercentage") {
        e.map(Percentage::Expr)
    } else if f.has("ToleratedFailurePercentagePath") && !jsonata {
        f.data_path("ToleratedFailurePercentagePath").map(Percentage::Path)
    } else {
        match f.get("ToleratedFailurePercentage").cloned() {
            None => None,
            Some(v) => match v.as_f64().filter(|p| (0.0..=100.0).contains(p)) {
                Some(p) => Some(Percentage::Fixed(p)),
                None => {
                    f.problem(
                        codes::SCHEMA,
                        "ToleratedFailurePercentage",
                        format!("ToleratedFailurePercentage is a number from 0 to 100 (fractions allowed), got {v}"),
                    );
                    None
                }
            },
        }
    };
    let processor_field = if f.has("Iterator") { "Iterator" } else { "ItemProcessor" };
    let Some(map) = f.get(processor_field).and_then(Value::as_object) else {
        f.problem(
            codes::SCHEMA,
            "ItemProcessor",
            "a Map state needs ItemProcessor (or the older Iterator) with StartAt and States".into(),
        );
        return None;
    };
    let at = f.loc(processor_field);
    let mut pf = Fields::new(map, at, f.cx);
    pf.string("Comment");
    let saved_machine = pf.cx.machine;
    let processor_language = pf.query_language().unwrap_or(saved_machine);
    pf.cx.machine = processor_language;
    let mut distributed = false;
    let mut execution_type = "STANDARD".to_string();
    if let Some(config) = pf.get("ProcessorConfig") {
        if let Some(mode) = config.get("Mode").and_then(Value::as_str) {
            match mode {
                "INLINE" => {}
                "DISTRIBUTED" => distributed = true,
                _ => pf.problem(
                    codes::SCHEMA,
                    "ProcessorConfig.Mode",
                    format!("Mode is INLINE or DISTRIBUTED, got \"{mode}\""),
                ),
            }
        }
        if let Some(t) = config.get("ExecutionType") {
            match t.as_str() {
                Some(t @ ("STANDARD" | "EXPRESS")) => execution_type = t.to_string(),
                _ => pf.problem(
                    codes::SCHEMA,
                    "ProcessorConfig.ExecutionType",
                    format!("ExecutionType is STANDARD or EXPRESS, got {t}"),
                ),
            }
        }
    }
    let processor = pf.machine();
    pf.cx.machine = saved_machine;
    pf.finish();
    let batcher = match batcher {
        None => None,
        Some(_) if !distributed => {
            f.problem(
                codes::SCHEMA,
                "ItemBatcher",
                "ItemBatcher needs a distributed Map: set ItemProcessor.ProcessorConfig.Mode to DISTRIBUTED".into(),
            );
            None
        }
        Some(b) => item_batcher(f, &b),
    };
    let needs_distributed = |f: &mut Fields<'_, '_>, field: &str| {
        f.problem(
            codes::SCHEMA,
            field,
            format!("{field} needs a distributed Map: set ItemProcessor.ProcessorConfig.Mode to DISTRIBUTED"),
        );
    };
    let reader = match reader {
        None => None,
        Some(_) if !distributed => {
            needs_distributed(f, "ItemReader");
            None
        }
        Some(r) => item_reader(f, &r),
    };
    let writer = match writer {
        None => None,
        Some(_) if !distributed => {
            needs_distributed(f, "ResultWriter");
            None
        }
        Some(w) => call(f, "ResultWriter", &w, &[]),
    };
    let distributed = distributed.then(|| {
        let mut definition: Map<String, Value> = map.clone();
        definition.remove("ProcessorConfig");
        // A child execution runs the processor as a definition of its own: in the language it had here.
        if processor_language == QueryLanguage::Jsonata {
            definition.insert("QueryLanguage".into(), Value::String("JSONata".into()));
        }
        Distributed { label, execution_type, batcher, reader, writer, definition: Value::Object(definition) }
    });
    Some(MapState {
        processor: processor?,
        items_path: items_path?,
        items,
        item_selector,
        max_concurrency,
        tolerated_failure_count,
        tolerated_failure_percentage,
        processing,
        distributed,
    })
}

/// `ItemReader`: a function (`Resource`, `Parameters`) and `ReaderConfig.MaxItems[Path]`. Step Functions
/// reads from S3, which stoke has not: those resources are refused with what to use instead.
fn item_reader(f: &mut Fields<'_, '_>, r: &Value) -> Option<ItemReader> {
    let config = r.get("ReaderConfig").cloned();
    let call = call(f, "ItemReader", r, &["ReaderConfig"])?;
    let max_items = match config {
        None => None,
        Some(c) => {
            let Some(map) = c.as_object() else {
                f.problem(codes::SCHEMA, "ItemReader.ReaderConfig", format!("ReaderConfig must be an object, got {c}"));
                return None;
            };
            let mut cf = Fields::new(map, f.loc("ItemReader.ReaderConfig"), f.cx);
            cf.exclusive("MaxItems", "MaxItemsPath");
            let max = if let Some(e) = cf.expression("MaxItems") {
                e.map(Count::Expr)
            } else if cf.has("MaxItemsPath") && !cf.cx.jsonata() {
                cf.data_path("MaxItemsPath").map(Count::Path)
            } else if cf.has("MaxItems") {
                cf.integer("MaxItems", 0).map(Count::Fixed)
            } else {
                None
            };
            cf.finish();
            max
        }
    };
    Some(ItemReader { call, max_items })
}

/// A distributed Map's `ItemReader` or `ResultWriter` call: `Resource` and `Parameters` (and the `extra`
/// fields its caller reads).
fn call(f: &mut Fields<'_, '_>, field: &'static str, v: &Value, extra: &[&'static str]) -> Option<Call> {
    let Some(map) = v.as_object() else {
        f.problem(codes::SCHEMA, field, format!("{field} must be an object, got {v}"));
        return None;
    };
    let mut cf = Fields::new(map, f.loc(field), f.cx);
    for e in extra {
        cf.get(e);
    }
    let text = cf.string("Resource");
    if text.is_none() && !cf.has("Resource") {
        cf.problem(
            codes::SCHEMA,
            "Resource",
            format!("{field} needs a Resource: {LAMBDA_INVOKE} (with Parameters naming FunctionName) or a function"),
        );
    }
    if let Some(t) = text.as_deref().filter(|t| t.starts_with("arn:aws:states:::s3:")) {
        cf.problem(
            codes::UNSUPPORTED,
            "Resource",
            format!(
                "{field} from S3 (\"{t}\") is not supported: stoke has no S3. Use a function instead: Resource \
                 {LAMBDA_INVOKE} with Parameters naming its FunctionName"
            ),
        );
        cf.get("Parameters");
        cf.get("WriterConfig");
        cf.finish();
        return None;
    }
    let parameters = cf.payload(if cf.cx.jsonata() { "Arguments" } else { "Parameters" });
    let resource = resource(&mut cf, text.as_deref(), &parameters);
    cf.finish();
    Some(Call { resource: resource?, parameters })
}

/// `ItemBatcher`: at least one of `MaxItemsPerBatch`, `MaxInputBytesPerBatch` (or their `…Path` forms),
/// each a positive integer; `BatchInput` a payload template.
fn item_batcher(f: &mut Fields<'_, '_>, b: &Value) -> Option<ItemBatcher> {
    let Some(map) = b.as_object() else {
        f.problem(codes::SCHEMA, "ItemBatcher", format!("ItemBatcher must be an object, got {b}"));
        return None;
    };
    let mut bf = Fields::new(map, f.loc("ItemBatcher"), f.cx);
    let count = |bf: &mut Fields<'_, '_>, fixed: &'static str, path: &'static str| {
        bf.exclusive(fixed, path);
        if let Some(e) = bf.expression(fixed) {
            e.map(Count::Expr)
        } else if bf.has(path) && !bf.cx.jsonata() {
            bf.data_path(path).map(Count::Path)
        } else if bf.has(fixed) {
            bf.positive(fixed).map(Count::Fixed)
        } else {
            None
        }
    };
    let max_items = count(&mut bf, "MaxItemsPerBatch", "MaxItemsPerBatchPath");
    let max_bytes = count(&mut bf, "MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath");
    let batch_input = bf.payload("BatchInput");
    let limited = ["MaxItemsPerBatch", "MaxItemsPerBatchPath", "MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath"]
        .iter()
        .any(|k| bf.has(k));
    if !limited {
        bf.problem(
            codes::SCHEMA,
            "",
            "ItemBatcher needs MaxItemsPerBatch or MaxInputBytesPerBatch (or their Path forms)".into(),
        );
    }
    bf.finish();
    Some(ItemBatcher { max_items, max_bytes, batch_input })
}

fn error_list(f: &mut Fields<'_, '_>, item: &Map<String, Value>, field: &str, last: bool) -> Option<Vec<String>> {
    let list = item.get("ErrorEquals").and_then(Value::as_array).filter(|a| !a.is_empty());
    let Some(list) = list else {
        f.problem(
            codes::SCHEMA,
            &format!("{field}.ErrorEquals"),
            "ErrorEquals must be a non-empty array of error names".into(),
        );
        return None;
    };
    let names: Vec<String> = list.iter().filter_map(|e| e.as_str().map(String::from)).collect();
    if names.len() != list.len() {
        f.problem(codes::SCHEMA, &format!("{field}.ErrorEquals"), "error names are strings".into());
        return None;
    }
    if names.iter().any(|n| n == crate::errors::ALL) && (names.len() > 1 || !last) {
        f.problem(
            codes::SCHEMA,
            &format!("{field}.ErrorEquals"),
            "States.ALL must stand alone in its ErrorEquals and be in the last retrier or catcher".into(),
        );
    }
    Some(names)
}

/// The objects of a Retry or Catch array: each needs ErrorEquals (`States.ALL` alone and last); `build`
/// reads the rest of one object's fields.
fn error_handlers<T>(
    f: &mut Fields<'_, '_>,
    field: &'static str,
    what: &str,
    mut build: impl FnMut(&mut Fields<'_, '_>, Vec<String>) -> Option<T>,
) -> Vec<T> {
    let Some(v) = f.get(field) else { return Vec::new() };
    let Some(items) = v.as_array() else {
        f.problem(codes::SCHEMA, field, format!("{field} must be an array of {what}s"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Some(map) = item.as_object() else {
            f.problem(codes::SCHEMA, &at, format!("a {what} is an object"));
            continue;
        };
        let Some(errors) = error_list(f, map, &at, i + 1 == items.len()) else { continue };
        let mut hf = Fields::new(map, f.loc(&at), f.cx);
        hf.get("ErrorEquals");
        hf.string("Comment");
        let built = build(&mut hf, errors);
        hf.finish();
        out.extend(built);
    }
    out
}

fn retriers(f: &mut Fields<'_, '_>) -> Vec<Retrier> {
    error_handlers(f, "Retry", "retrier", |rf, errors| {
        let interval_seconds = rf.positive("IntervalSeconds").unwrap_or(Retrier::DEFAULT_INTERVAL_SECONDS);
        let max_attempts = rf.integer("MaxAttempts", 0).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let backoff = rf.get("BackoffRate").map(|v| v.as_f64().filter(|b| *b >= 1.0));
        if let Some(None) = backoff {
            rf.problem(codes::SCHEMA, "BackoffRate", "BackoffRate must be a number of at least 1.0".into());
        }
        let max_delay_seconds = rf.positive("MaxDelaySeconds");
        let full_jitter = match rf.string("JitterStrategy").as_deref() {
            None | Some("NONE") => false,
            Some("FULL") => true,
            Some(other) => {
                rf.problem(codes::SCHEMA, "JitterStrategy", format!("JitterStrategy is FULL or NONE, got \"{other}\""));
                false
            }
        };
        Some(Retrier {
            errors,
            interval_seconds,
            max_attempts: max_attempts.unwrap_or(Retrier::DEFAULT_MAX_ATTEMPTS),
            backoff_rate: backoff.flatten().unwrap_or(Retrier::DEFAULT_BACKOFF_RATE),
            max_delay_seconds,
            full_jitter,
        })
    })
}

fn catchers(f: &mut Fields<'_, '_>) -> Vec<Catcher> {
    error_handlers(f, "Catch", "catcher", |cf, errors| {
        let next = cf.string("Next");
        if next.is_none() && !cf.has("Next") {
            cf.problem(codes::SCHEMA, "Next", "a catcher needs Next".into());
        }
        let assign = cf.assign();
        let (result_path, output) =
            if cf.cx.jsonata() { (root(), cf.shape("Output")) } else { (cf.result_path().unwrap_or_else(root), None) };
        next.map(|next| Catcher { errors, next, result_path, output, assign })
    })
}

/// Which machine (by location) owns every state name, for telling outbound transitions apart.
fn collect_owners(m: &Machine, at: &str, owner: &mut HashMap<String, String>) {
    for (name, s) in &m.states {
        owner.entry(name.clone()).or_insert_with(|| at.to_string());
        let here = format!("{}States.{name}", prefix(at));
        match &s.kind {
            StateKind::Parallel(p) => {
                for (i, b) in p.branches.iter().enumerate() {
                    collect_owners(b, &format!("{here}.Branches[{i}]"), owner);
                }
            }
            StateKind::Map(mp) => collect_owners(&mp.processor, &format!("{here}.ItemProcessor"), owner),
            _ => {}
        }
    }
}

fn prefix(at: &str) -> String {
    if at.is_empty() {
        String::new()
    } else {
        format!("{at}.")
    }
}

/// Transition targets, reachability and terminal states of one machine, then of its nested ones.
/// `inside` is "Parallel" or "Map" for nested machines.
fn check_graph(m: &Machine, at: &str, inside: Option<&str>, owner: &HashMap<String, String>, cx: &mut Cx) {
    let p = prefix(at);
    for (name, count) in cx.names.clone() {
        if count > 1 && at.is_empty() {
            cx.problems.push(Problem {
                code: codes::DUPLICATE_STATE_NAMES,
                location: "States".into(),
                message: format!(
                    "the state name \"{name}\" is used {count} times; names are unique across the whole machine"
                ),
            });
        }
    }
    let mut targets: Vec<(String, &str)> = Vec::new();
    for (name, s) in &m.states {
        let here = format!("{p}States.{name}");
        if let Some(n) = &s.next {
            targets.push((format!("{here}.Next"), n));
        }
        match &s.kind {
            StateKind::Choice(c) => {
                for (i, r) in c.choices.iter().enumerate() {
                    targets.push((format!("{here}.Choices[{i}].Next"), &r.next));
                }
                if let Some(d) = &c.default {
                    targets.push((format!("{here}.Default"), d));
                }
            }
            StateKind::Task(t) => catch_targets(&t.processing, &here, &mut targets),
            StateKind::Parallel(pa) => {
                catch_targets(&pa.processing, &here, &mut targets);
                for (i, b) in pa.branches.iter().enumerate() {
                    check_graph(b, &format!("{here}.Branches[{i}]"), Some("Parallel"), owner, cx);
                }
            }
            StateKind::Map(mp) => {
                catch_targets(&mp.processing, &here, &mut targets);
                check_graph(&mp.processor, &format!("{here}.ItemProcessor"), Some("Map"), owner, cx);
            }
            _ => {}
        }
    }
    for (location, target) in &targets {
        // A target that exists but failed to parse has its own problem already.
        if m.states.contains_key(*target) || (!owner.contains_key(*target) && cx.names.contains_key(*target)) {
            continue;
        }
        let (code, message) = match (owner.get(*target), inside) {
            (Some(_), Some("Map")) => (
                codes::MAP_OUTBOUND,
                format!("\"{target}\" is outside this Map's item processor; a transition cannot leave it"),
            ),
            (Some(_), Some(_)) => (
                codes::BRANCH_OUTBOUND,
                format!("\"{target}\" is outside this Parallel branch; a transition cannot leave it"),
            ),
            (Some(_), None) => (
                codes::MISSING_TRANSITION_TARGET,
                format!("\"{target}\" is inside a Parallel branch or Map; a transition cannot enter it"),
            ),
            (None, _) => (codes::MISSING_TRANSITION_TARGET, format!("there is no state named \"{target}\"")),
        };
        cx.problems.push(Problem { code, location: location.clone(), message });
    }
    // Reachability from StartAt.
    let mut seen = BTreeSet::new();
    let mut stack = vec![m.start_at.as_str()];
    while let Some(n) = stack.pop() {
        if m.states.contains_key(n) && seen.insert(n) {
            stack.extend(m.successors(n));
        }
    }
    for name in m.states.keys() {
        if !seen.contains(name.as_str()) && m.states.contains_key(&m.start_at) {
            cx.problems.push(Problem {
                code: codes::UNREACHABLE_STATE,
                location: format!("{p}States.{name}"),
                message: format!("no transition reaches \"{name}\" from StartAt \"{}\"", m.start_at),
            });
        }
    }
    if !m.states.values().any(State::is_terminal) && !m.states.is_empty() {
        cx.problems.push(Problem {
            code: codes::MISSING_TERMINAL_STATE,
            location: format!("{p}States"),
            message: "no state ends the machine: give one End: true, or add a Succeed or Fail state".into(),
        });
    }
}

/// The variables a machine's own states assign (its states', Choice rules' and catchers' `Assign`, not its
/// branches' or item processors'), each with where it is assigned.
fn assignments(m: &Machine, at: &str) -> Vec<(String, String)> {
    let p = prefix(at);
    let mut out = Vec::new();
    let mut add = |assign: &Option<Payload>, here: String| {
        for name in assign.iter().flat_map(Payload::keys) {
            out.push((name.to_string(), format!("{here}.Assign.{name}")));
        }
    };
    for (name, s) in &m.states {
        let here = format!("{p}States.{name}");
        add(&s.assign, here.clone());
        let catch = match &s.kind {
            StateKind::Choice(c) => {
                for (i, r) in c.choices.iter().enumerate() {
                    add(&r.assign, format!("{here}.Choices[{i}]"));
                }
                continue;
            }
            StateKind::Task(t) => &t.processing.catch,
            StateKind::Parallel(pa) => &pa.processing.catch,
            StateKind::Map(mp) => &mp.processing.catch,
            _ => continue,
        };
        for (i, c) in catch.iter().enumerate() {
            add(&c.assign, format!("{here}.Catch[{i}]"));
        }
    }
    out
}

/// Variable scopes: a Parallel branch or an inline Map's item processor reads the variables of the scopes
/// around it but cannot assign them, and a name is not reused inside (Step Functions' rule: data leaves an
/// inner scope only through its output). `outer` holds the names the enclosing scopes assign. A distributed
/// Map's children start with no variables, so its processor is a scope of its own.
fn check_variable_scopes(m: &Machine, at: &str, outer: &BTreeSet<String>, cx: &mut Cx) {
    let own = assignments(m, at);
    for (name, location) in &own {
        if outer.contains(name) {
            cx.problems.push(Problem {
                code: codes::SCHEMA,
                location: location.clone(),
                message: format!(
                    "the variable '{name}' belongs to an enclosing scope: a Parallel branch or Map iteration can read \
                     it but not assign it; give this variable another name, or return the value in the output"
                ),
            });
        }
    }
    let mut visible = outer.clone();
    visible.extend(own.into_iter().map(|(name, _)| name));
    let p = prefix(at);
    for (name, s) in &m.states {
        let here = format!("{p}States.{name}");
        match &s.kind {
            StateKind::Parallel(pa) => {
                for (i, b) in pa.branches.iter().enumerate() {
                    check_variable_scopes(b, &format!("{here}.Branches[{i}]"), &visible, cx);
                }
            }
            StateKind::Map(mp) => {
                let around = if mp.distributed.is_some() { BTreeSet::new() } else { visible.clone() };
                check_variable_scopes(&mp.processor, &format!("{here}.ItemProcessor"), &around, cx);
            }
            _ => {}
        }
    }
}

fn catch_targets<'a>(p: &'a Processing, here: &str, targets: &mut Vec<(String, &'a str)>) {
    for (i, c) in p.catch.iter().enumerate() {
        targets.push((format!("{here}.Catch[{i}].Next"), &c.next));
    }
}

#[cfg(test)]
mod tests;
