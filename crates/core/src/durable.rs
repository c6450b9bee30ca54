//! Lambda's durable executions (API version 2025-12-01), as pure rules: the operations a durable function
//! checkpoints (steps, waits, child contexts, callbacks, chained invokes), what each update may do to them, the
//! timers that move them on their own (a wait ending, a retry coming due, a callback timing out), the single-use
//! checkpoint tokens, and the history AWS records, event by event, in AWS's order. No I/O: the server keeps a
//! [`DurableExecution`] in its store, invokes the function with its [`envelope`](DurableExecution::envelope),
//! and feeds checkpoints, timers and invocation outcomes through it.
//!
//! Sources: botocore's Lambda model (the shapes and their names), the durable SDKs (what they send and read),
//! AWS's local runner and conformance suite (the order of history events); docs/durable.md says which rule
//! came from where.

use std::collections::HashMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// An operation's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationType {
    Execution,
    Context,
    Step,
    Wait,
    Callback,
    ChainedInvoke,
}

impl OperationType {
    fn event_prefix(self) -> &'static str {
        match self {
            OperationType::Execution => "Execution",
            OperationType::Context => "Context",
            OperationType::Step => "Step",
            OperationType::Wait => "Wait",
            OperationType::Callback => "Callback",
            OperationType::ChainedInvoke => "ChainedInvoke",
        }
    }
}

/// What an update asks of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationAction {
    Start,
    Succeed,
    Fail,
    Retry,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationStatus {
    Started,
    Pending,
    Ready,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    Stopped,
}

impl OperationStatus {
    pub fn is_done(self) -> bool {
        matches!(
            self,
            OperationStatus::Succeeded
                | OperationStatus::Failed
                | OperationStatus::Cancelled
                | OperationStatus::TimedOut
                | OperationStatus::Stopped
        )
    }
}

/// A durable execution's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Stopped,
}

/// An error as the API carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorObject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_trace: Option<Vec<String>>,
}

impl ErrorObject {
    pub fn new(error_type: &str, message: &str) -> Self {
        ErrorObject {
            error_type: Some(error_type.to_string()),
            error_message: Some(message.to_string()),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContextOptions {
    #[serde(default)]
    pub replay_children: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StepOptions {
    #[serde(default)]
    pub next_attempt_delay_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitOptions {
    #[serde(default)]
    pub wait_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CallbackOptions {
    /// 0 or absent: no limit.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub heartbeat_timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainedInvokeOptions {
    pub function_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

/// One change a checkpoint asks for (botocore's `OperationUpdate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OperationUpdate {
    pub id: String,
    #[serde(default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "Type")]
    pub kind: OperationType,
    #[serde(default)]
    pub sub_type: Option<String>,
    pub action: OperationAction,
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub error: Option<ErrorObject>,
    #[serde(default)]
    pub context_options: Option<ContextOptions>,
    #[serde(default)]
    pub step_options: Option<StepOptions>,
    #[serde(default)]
    pub wait_options: Option<WaitOptions>,
    #[serde(default)]
    pub callback_options: Option<CallbackOptions>,
    #[serde(default)]
    pub chained_invoke_options: Option<ChainedInvokeOptions>,
}

impl OperationUpdate {
    /// An update with only its id, type and action.
    pub fn new(id: &str, kind: OperationType, action: OperationAction) -> Self {
        OperationUpdate {
            id: id.to_string(),
            parent_id: None,
            name: None,
            kind,
            sub_type: None,
            action,
            payload: None,
            error: None,
            context_options: None,
            step_options: None,
            wait_options: None,
            callback_options: None,
            chained_invoke_options: None,
        }
    }
}

/// One operation of an execution, as the service keeps it. Times are ms since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    pub parent_id: Option<String>,
    pub name: Option<String>,
    pub kind: OperationType,
    pub sub_type: Option<String>,
    pub status: OperationStatus,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    /// EXECUTION: the invocation's payload.
    pub input: Option<String>,
    pub result: Option<String>,
    pub error: Option<ErrorObject>,
    /// CONTEXT: its children's state comes back on replay.
    pub replay_children: bool,
    /// STEP: retries so far (the SDK's attempt number is this + 1), and when the next may start.
    pub attempt: u32,
    pub next_attempt_ms: Option<i64>,
    /// WAIT: when it ends, and for how long it was asked to wait.
    pub scheduled_end_ms: Option<i64>,
    pub wait_seconds: Option<u64>,
    /// CALLBACK: its id and when it times out (whole, and without a heartbeat).
    pub callback_id: Option<String>,
    pub timeout_at_ms: Option<i64>,
    pub heartbeat_timeout_s: Option<u64>,
    pub heartbeat_at_ms: Option<i64>,
    /// CHAINED_INVOKE: the function it calls, and the payload it sends.
    pub function_name: Option<String>,
    /// The change counter's value at its last change (what a checkpoint answer sends is what changed since
    /// the invocation last looked).
    pub changed: u64,
}

impl Operation {
    fn new(u: &OperationUpdate, status: OperationStatus, now_ms: i64) -> Self {
        Operation {
            id: u.id.clone(),
            parent_id: u.parent_id.clone(),
            name: u.name.clone(),
            kind: u.kind,
            sub_type: u.sub_type.clone(),
            status,
            start_ms: now_ms,
            end_ms: None,
            input: None,
            result: None,
            error: None,
            replay_children: false,
            attempt: 0,
            next_attempt_ms: None,
            scheduled_end_ms: None,
            wait_seconds: None,
            callback_id: None,
            timeout_at_ms: None,
            heartbeat_timeout_s: None,
            heartbeat_at_ms: None,
            function_name: None,
            changed: 0,
        }
    }

    /// The API's `Operation`: timestamps in ms (the invocation envelope) or in seconds (API answers).
    pub fn to_wire(&self, millis: bool) -> Value {
        let time = |ms: i64| if millis { json!(ms) } else { json!(ms as f64 / 1000.0) };
        let mut o = Map::new();
        o.insert("Id".into(), json!(self.id));
        if let Some(p) = &self.parent_id {
            o.insert("ParentId".into(), json!(p));
        }
        if let Some(n) = &self.name {
            o.insert("Name".into(), json!(n));
        }
        o.insert("Type".into(), json!(self.kind));
        if let Some(s) = &self.sub_type {
            o.insert("SubType".into(), json!(s));
        }
        o.insert("StartTimestamp".into(), time(self.start_ms));
        if let Some(end) = self.end_ms {
            o.insert("EndTimestamp".into(), time(end));
        }
        o.insert("Status".into(), json!(self.status));
        let mut details = Map::new();
        let outcome = |d: &mut Map<String, Value>| {
            if let Some(r) = &self.result {
                d.insert("Result".into(), json!(r));
            }
            if let Some(e) = &self.error {
                d.insert("Error".into(), json!(e));
            }
        };
        let key = match self.kind {
            OperationType::Execution => {
                details.insert("InputPayload".into(), json!(self.input.clone().unwrap_or_default()));
                "ExecutionDetails"
            }
            OperationType::Context => {
                details.insert("ReplayChildren".into(), json!(self.replay_children));
                outcome(&mut details);
                "ContextDetails"
            }
            OperationType::Step => {
                details.insert("Attempt".into(), json!(self.attempt));
                if let Some(t) = self.next_attempt_ms {
                    details.insert("NextAttemptTimestamp".into(), time(t));
                }
                outcome(&mut details);
                "StepDetails"
            }
            OperationType::Wait => {
                if let Some(t) = self.scheduled_end_ms {
                    details.insert("ScheduledEndTimestamp".into(), time(t));
                }
                "WaitDetails"
            }
            OperationType::Callback => {
                if let Some(c) = &self.callback_id {
                    details.insert("CallbackId".into(), json!(c));
                }
                outcome(&mut details);
                "CallbackDetails"
            }
            OperationType::ChainedInvoke => {
                outcome(&mut details);
                "ChainedInvokeDetails"
            }
        };
        o.insert(key.into(), Value::Object(details));
        Value::Object(o)
    }
}

/// When an execution that ended at `ended_ms` is deleted, kept `retention_days` days (Lambda's
/// `RetentionPeriodInDays`).
pub fn expires_at(ended_ms: i64, retention_days: u32) -> i64 {
    ended_ms.saturating_add(i64::from(retention_days) * 86_400_000)
}

/// One event of an execution's history (`GetDurableExecutionHistory`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// 1, 2, 3, … in the order they happened.
    pub id: u64,
    /// `StepStarted`, `WaitSucceeded`, `InvocationCompleted`, …
    pub kind: String,
    pub sub_type: Option<String>,
    /// The operation's id (the execution's for execution events).
    pub op_id: Option<String>,
    pub name: Option<String>,
    pub parent_id: Option<String>,
    pub at_ms: i64,
    /// The event's `<EventType>Details` block, timestamps in seconds as the API answers.
    pub details: Value,
    /// stoke's own record of what an invocation used and where its time went (an `InvocationCompleted`'s
    /// instance, cold start, billed time), for the execution's timeline and bill; not in the API's event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
}

impl Event {
    /// The API's `Event`; without `include_data`, payloads are left out.
    pub fn to_wire(&self, include_data: bool) -> Value {
        let mut o = Map::new();
        o.insert("EventType".into(), json!(self.kind));
        if let Some(s) = &self.sub_type {
            o.insert("SubType".into(), json!(s));
        }
        o.insert("EventId".into(), json!(self.id));
        if let Some(i) = &self.op_id {
            o.insert("Id".into(), json!(i));
        }
        if let Some(n) = &self.name {
            o.insert("Name".into(), json!(n));
        }
        o.insert("EventTimestamp".into(), json!(self.at_ms as f64 / 1000.0));
        if let Some(p) = &self.parent_id {
            o.insert("ParentId".into(), json!(p));
        }
        let mut details = self.details.clone();
        if !include_data {
            for key in ["Result", "Input"] {
                if let Some(Value::Object(block)) = details.get_mut(key) {
                    block.remove("Payload");
                }
            }
        }
        o.insert(format!("{}Details", self.kind), details);
        Value::Object(o)
    }
}

/// Why a checkpoint (or a callback's answer) was refused: the API's `InvalidParameterValueException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurableError {
    /// The token is not the execution's current one, or no invocation is running. The message starts with
    /// "Invalid checkpoint token": the SDKs retry exactly that.
    #[error("Invalid checkpoint token: {0}")]
    InvalidToken(String),
    #[error("{0}")]
    Invalid(String),
    /// A callback that ended or timed out (the API's `CallbackTimeoutException`).
    #[error("{0}")]
    CallbackClosed(String),
    #[error("{0}")]
    NotFound(String),
}

/// How an invocation of the function ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvocationOutput {
    /// `{"Status":"SUCCEEDED","Result":…}` (an empty result: the one an EXECUTION checkpoint carried).
    Succeeded(Option<String>),
    /// `{"Status":"FAILED","Error":…}`.
    Failed(Option<ErrorObject>),
    /// `{"Status":"PENDING"}`: suspended until something it waits for happens.
    Pending,
    /// The invocation itself failed (the function raised outside the SDK, crashed, timed out, or answered
    /// something that is not an output): tried again, up to [`MAX_INVOCATION_FAILURES`] in a row.
    Error(ErrorObject),
}

/// What the service does after an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The execution ended.
    Done,
    /// Invoke again now: something it waits for happened meanwhile.
    Invoke,
    /// Invoke again once this time comes (ms since the epoch), or when a callback or chained invoke ends
    /// (`None`: only then).
    WaitUntil(Option<i64>),
}

/// What of an execution's operations an invocation's event carries at most (an invocation's payload is at
/// most 6 MB; the rest of the event and the SDK's own margin take the remainder).
pub const ENVELOPE_BYTES: usize = 5 * 1024 * 1024;

/// Invocation failures in a row after which the execution fails.
pub const MAX_INVOCATION_FAILURES: u32 = 5;
/// How long after a failed invocation the next one starts.
pub const INVOCATION_RETRY_MS: i64 = 1_000;

/// Everything of an execution but its operations and events: small, and stored whole at each change (the
/// operations and events are stored one by one, as [`DurableExecution::take_delta`] hands them out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurableHead {
    pub arn: String,
    pub name: String,
    pub status: ExecutionStatus,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    /// The whole execution's limit (`DurableConfig.ExecutionTimeout`), in seconds.
    pub timeout_s: u64,
    pub result: Option<String>,
    pub error: Option<ErrorObject>,
    /// When the running invocation started (what a server that restarts records it as having ended at).
    pub invocation_started_ms: Option<i64>,
    /// Bumped at every change of an operation.
    changes: u64,
    /// What the running invocation (or the last one) has been sent; what it had before that.
    seen: u64,
    seen_before: u64,
    /// The running invocation's number, its token's random part, and its current token's sequence.
    invocation: Option<u64>,
    nonce: u64,
    invocations: u64,
    token_seq: u64,
    failures: u32,
}

/// What changed since the last [`DurableExecution::take_delta`]: operations (by their place in start order)
/// to write, events to append.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    pub operations: Vec<(usize, Operation)>,
    pub events: Vec<Event>,
}

/// One durable execution: its operations, history and the state of its current invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct DurableExecution {
    head: DurableHead,
    /// Operations in the order they started; the EXECUTION operation first.
    pub operations: Vec<Operation>,
    pub events: Vec<Event>,
    /// Operations changed and events added since the last delta was taken.
    dirty: std::collections::BTreeSet<usize>,
    stored_events: usize,
    /// The last checkpoint: (its client token, the token it came with) and what it was answered. Kept only
    /// while its invocation runs (a restart ends that invocation anyway).
    last_checkpoint: Option<(String, String, Value)>,
    /// A result or error an EXECUTION checkpoint carried (a result too large to return).
    checkpointed_outcome: Option<(Option<String>, Option<ErrorObject>)>,
}

impl DurableHead {
    /// When the execution times out (`None`: never).
    pub fn timeout_at(&self) -> Option<i64> {
        (self.timeout_s > 0).then(|| self.started_ms + i64::try_from(self.timeout_s).unwrap_or(i64::MAX / 2_000) * 1000)
    }
}

impl std::ops::Deref for DurableExecution {
    type Target = DurableHead;

    fn deref(&self) -> &DurableHead {
        &self.head
    }
}

/// The parts of a durable execution's ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableArn {
    pub region: String,
    pub account: String,
    pub function: String,
    /// `$LATEST`, `$LATEST.PUBLISHED` or a version number.
    pub version: String,
    pub name: String,
    pub id: String,
}

/// Reads a durable execution's ARN as botocore's pattern has it:
/// `arn:<partition>:lambda:<region>:<account>:function:<name>:<version>/durable-execution/<name>/<id>`.
pub fn parse_arn(arn: &str) -> Option<DurableArn> {
    let word =
        |s: &str, extra: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    let (function_arn, rest) = arn.split_once("/durable-execution/")?;
    let (name, id) = rest.split_once('/')?;
    let parts: Vec<&str> = function_arn.split(':').collect();
    let [arn_word, partition, service, region, account, kind, function, version] = parts.as_slice() else {
        return None;
    };
    let version_ok = *version == "$LATEST"
        || *version == "$LATEST.PUBLISHED"
        || (!version.is_empty() && version.chars().all(|c| c.is_ascii_digit()));
    let ok = *arn_word == "arn"
        && word(partition, "-")
        && *service == "lambda"
        && word(region, "-")
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && *kind == "function"
        && word(function, "-_")
        && version_ok
        && word(name, "-_")
        && word(id, "-_");
    ok.then(|| DurableArn {
        region: region.to_string(),
        account: account.to_string(),
        function: function.to_string(),
        version: version.to_string(),
        name: name.to_string(),
        id: id.to_string(),
    })
}

/// The execution id: the last segment of its ARN, also its EXECUTION operation's id.
pub fn execution_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// A durable execution's ARN: the qualified function ARN, then `/durable-execution/<name>/<id>`.
pub fn execution_arn(function_arn: &str, name: &str, id: &str) -> String {
    format!("{function_arn}/durable-execution/{name}/{id}")
}

/// A callback's id: which execution and operation it answers, base64 (the API's pattern for it).
pub fn callback_id(execution: &str, op: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{execution}\n{op}"))
}

/// The execution id and operation id a callback id names.
pub fn parse_callback_id(id: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(id).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (execution, op) = text.split_once('\n')?;
    Some((execution.to_string(), op.to_string()))
}

fn payload(p: &Option<String>) -> Value {
    json!({ "Payload": p.clone().unwrap_or_default(), "Truncated": false })
}

fn error_block(e: &Option<ErrorObject>) -> Value {
    json!({ "Payload": e.clone().unwrap_or_default(), "Truncated": false })
}

impl DurableExecution {
    /// A new execution of `input` (the invocation's payload), started at `now_ms`: its EXECUTION operation
    /// and the `ExecutionStarted` event.
    pub fn start(arn: &str, name: &str, input: &str, timeout_s: u64, now_ms: i64) -> Self {
        let id = execution_id(arn).to_string();
        let head = DurableHead {
            arn: arn.to_string(),
            name: name.to_string(),
            status: ExecutionStatus::Running,
            started_ms: now_ms,
            ended_ms: None,
            timeout_s,
            result: None,
            error: None,
            invocation_started_ms: None,
            changes: 0,
            seen: 0,
            seen_before: 0,
            invocation: None,
            nonce: 0,
            invocations: 0,
            token_seq: 0,
            failures: 0,
        };
        let mut x = DurableExecution::from_parts(head, Vec::new(), Vec::new());
        let update = OperationUpdate {
            name: Some(name.to_string()),
            ..OperationUpdate::new(&id, OperationType::Execution, OperationAction::Start)
        };
        let mut op = Operation::new(&update, OperationStatus::Started, now_ms);
        op.input = Some(input.to_string());
        x.head.changes += 1;
        op.changed = x.head.changes;
        x.operations.push(op);
        x.dirty.insert(0);
        x.event(
            "ExecutionStarted",
            None,
            now_ms,
            json!({ "Input": { "Payload": input, "Truncated": false }, "ExecutionTimeout": timeout_s }),
        );
        x
    }

    /// An execution read back from the store.
    pub fn from_parts(head: DurableHead, operations: Vec<Operation>, events: Vec<Event>) -> Self {
        let stored_events = events.len();
        DurableExecution {
            head,
            operations,
            events,
            dirty: std::collections::BTreeSet::new(),
            stored_events,
            last_checkpoint: None,
            checkpointed_outcome: None,
        }
    }

    pub fn head(&self) -> &DurableHead {
        &self.head
    }

    /// The operations changed and the events added since the last call: what to write.
    pub fn take_delta(&mut self) -> Delta {
        let operations = std::mem::take(&mut self.dirty).into_iter().map(|i| (i, self.operations[i].clone())).collect();
        let events = self.events[self.stored_events..].to_vec();
        self.stored_events = self.events.len();
        Delta { operations, events }
    }

    pub fn is_running(&self) -> bool {
        self.status == ExecutionStatus::Running
    }

    pub fn invocation_running(&self) -> bool {
        self.invocation.is_some()
    }

    /// Something the function waits for happened since an invocation last saw the execution (a callback
    /// answered, a timer fired), and none runs: it is to be invoked.
    pub fn wants_invocation(&self) -> bool {
        self.is_running() && self.invocation.is_none() && self.operations.iter().any(|o| o.changed > self.seen)
    }

    fn index(&self) -> HashMap<&str, usize> {
        self.operations.iter().enumerate().map(|(i, o)| (o.id.as_str(), i)).collect()
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.operations.iter().position(|o| o.id == id)
    }

    fn event(&mut self, kind: &str, op: Option<usize>, at_ms: i64, details: Value) {
        let (op_id, name, sub_type, parent_id) = match op {
            Some(i) => {
                let o = &self.operations[i];
                (Some(o.id.clone()), o.name.clone(), o.sub_type.clone(), o.parent_id.clone())
            }
            None => (None, None, None, None),
        };
        let id = self.events.len() as u64 + 1;
        let kind = kind.to_string();
        self.events.push(Event { id, kind, sub_type, op_id, name, parent_id, at_ms, details, usage: None });
    }

    fn touch(&mut self, i: usize) {
        self.head.changes += 1;
        self.operations[i].changed = self.head.changes;
        self.dirty.insert(i);
    }

    /// The current token: the invocation's random part, its number and the sequence, in hex (which the API's
    /// base64 pattern admits). Nobody can make one up: the random part is known only to the invocation.
    fn token(&self) -> String {
        format!("{:016x}{:08x}{:08x}", self.nonce, self.invocations, self.token_seq)
    }

    /// Starts an invocation at `now_ms`, `nonce` being a random number of the caller's: its token, and the
    /// event the function is invoked with (every operation, ms timestamps, the operations changed since the
    /// last invocation looked).
    pub fn begin_invocation(&mut self, nonce: u64, now_ms: i64) -> (u64, Value) {
        let h = &mut self.head;
        h.invocations += 1;
        h.token_seq = 0;
        h.nonce = nonce;
        h.invocation = Some(h.invocations);
        h.invocation_started_ms = Some(now_ms);
        let token = self.token();
        let updated: Vec<&str> = self
            .operations
            .iter()
            .filter(|o| o.changed > self.seen && o.kind != OperationType::Execution)
            .map(|o| o.id.as_str())
            .collect();
        // As many operations as fit in an invocation's payload; the SDK reads the rest with
        // GetDurableExecutionState from `NextMarker` on, before it runs the handler.
        let mut operations = Vec::new();
        let mut bytes = 0;
        for o in &self.operations {
            let wire = o.to_wire(true);
            let size = serde_json::to_string(&wire).map_or(0, |t| t.len());
            if !operations.is_empty() && bytes + size > ENVELOPE_BYTES {
                break;
            }
            bytes += size;
            operations.push(wire);
        }
        let next_marker =
            if operations.len() < self.operations.len() { operations.len().to_string() } else { String::new() };
        let envelope = json!({
            "DurableExecutionArn": self.arn,
            "CheckpointToken": token,
            "InitialExecutionState": { "Operations": operations, "NextMarker": next_marker },
            "UpdatedOperationIds": updated,
        });
        self.head.seen_before = self.head.seen;
        self.head.seen = self.head.changes;
        (self.invocations, envelope)
    }

    /// The invocation begun never reached the function (refused for room, a platform fault): no event, not
    /// counted as a failure, its token dead, and what it would have been sent still unseen.
    pub fn abandon_invocation(&mut self) {
        let h = &mut self.head;
        h.invocation = None;
        h.invocation_started_ms = None;
        h.seen = h.seen_before;
        self.last_checkpoint = None;
    }

    fn check_token(&self, token: &str) -> Result<(), DurableError> {
        if !self.is_running() {
            return Err(DurableError::InvalidToken("the execution has ended".into()));
        }
        if self.invocation.is_none() {
            return Err(DurableError::InvalidToken("no invocation of this execution is running".into()));
        }
        if token != self.token() {
            return Err(DurableError::InvalidToken(
                "it is not this execution's current token (tokens are single-use: send the last one received)".into(),
            ));
        }
        Ok(())
    }

    /// The operations, `max` from `marker` on, for `GetDurableExecutionState` (paging does not use up the
    /// token). Returns the page and the next marker.
    pub fn state_page(
        &self,
        token: &str,
        marker: usize,
        max: usize,
    ) -> Result<(Vec<Value>, Option<usize>), DurableError> {
        self.check_token(token)?;
        let end = (marker + max.max(1)).min(self.operations.len());
        let page = self.operations.get(marker..end).unwrap_or_default().iter().map(|o| o.to_wire(false)).collect();
        Ok((page, (end < self.operations.len()).then_some(end)))
    }

    /// Applies one checkpoint: checks its token (a repeat of the last checkpoint, same client token and same
    /// inbound token, gets the same answer), applies the updates in order, moves on whatever timer is due,
    /// and answers the new token (none once an EXECUTION update ended the execution) and the operations
    /// changed since the invocation last looked.
    pub fn checkpoint(
        &mut self,
        token: &str,
        client_token: Option<&str>,
        updates: &[OperationUpdate],
        now_ms: i64,
    ) -> Result<Value, DurableError> {
        if let (Some(ct), Some((last_ct, last_token, answer))) = (client_token, &self.last_checkpoint) {
            if ct == last_ct && token == last_token {
                return Ok(answer.clone());
            }
        }
        self.check_token(token)?;
        self.validate(updates)?;
        let mut ended = false;
        for u in updates {
            ended |= self.apply(u, now_ms)?;
        }
        self.fire_due(now_ms);
        let changed: Vec<Value> =
            self.operations.iter().filter(|o| o.changed > self.seen).map(|o| o.to_wire(false)).collect();
        self.head.seen = self.head.changes;
        let mut answer = json!({ "NewExecutionState": { "Operations": changed } });
        if !ended {
            self.head.token_seq += 1;
            answer["CheckpointToken"] = json!(self.token());
        }
        if let Some(ct) = client_token {
            self.last_checkpoint = Some((ct.to_string(), token.to_string(), answer.clone()));
        }
        Ok(answer)
    }

    /// Checks a batch before applying any of it, so a refused checkpoint changes nothing.
    fn validate(&self, updates: &[OperationUpdate]) -> Result<(), DurableError> {
        let index = self.index();
        let mut batch: HashMap<&str, (OperationType, OperationStatus)> = HashMap::new();
        for (n, u) in updates.iter().enumerate() {
            let bad = |why: String| Err(DurableError::Invalid(format!("update {n} (operation {}): {why}", u.id)));
            if u.id.is_empty() || u.id.len() > 64 {
                return bad("an operation id is 1 to 64 characters".into());
            }
            if let Some(parent) = &u.parent_id {
                let known = index
                    .get(parent.as_str())
                    .map(|i| self.operations[*i].kind)
                    .or(batch.get(parent.as_str()).map(|b| b.0));
                if known != Some(OperationType::Context) {
                    return bad(format!("its parent {parent} is not a context of this execution"));
                }
            }
            let current = batch
                .get(u.id.as_str())
                .copied()
                .or_else(|| index.get(u.id.as_str()).map(|i| (self.operations[*i].kind, self.operations[*i].status)));
            if let Some((kind, _)) = current {
                if kind != u.kind {
                    return bad(format!("it is a {kind:?} operation, not {:?}", u.kind));
                }
            }
            let status = current.map(|c| c.1);
            use OperationAction as A;
            use OperationStatus as S;
            use OperationType as T;
            let next = match (u.kind, u.action, status) {
                (T::Execution, A::Succeed | A::Fail, _) => {
                    if n + 1 != updates.len() {
                        return bad("an EXECUTION update must be the checkpoint's last".into());
                    }
                    S::Succeeded
                }
                (T::Step, A::Start, None | Some(S::Ready)) => S::Started,
                (T::Step, A::Succeed | A::Fail, Some(S::Started | S::Ready)) => S::Succeeded,
                (T::Step, A::Retry, Some(S::Started | S::Ready)) => {
                    if u.step_options.as_ref().and_then(|o| o.next_attempt_delay_seconds).is_none() {
                        return bad("a RETRY needs StepOptions.NextAttemptDelaySeconds".into());
                    }
                    if u.error.is_some() && u.payload.is_some() {
                        return bad("a RETRY carries an Error or a Payload, not both".into());
                    }
                    S::Pending
                }
                (T::Wait, A::Start, None) => {
                    if u.wait_options.as_ref().and_then(|o| o.wait_seconds).is_none_or(|s| s == 0) {
                        return bad("a WAIT needs WaitOptions.WaitSeconds of 1 or more".into());
                    }
                    S::Started
                }
                (T::Wait, A::Cancel, Some(S::Started)) => S::Cancelled,
                (T::Context, A::Start, None) => S::Started,
                (T::Context, A::Succeed | A::Fail, Some(S::Started)) => S::Succeeded,
                (T::Callback, A::Start, None) => S::Started,
                (T::ChainedInvoke, A::Start, None) => {
                    if u.chained_invoke_options.as_ref().is_none_or(|o| o.function_name.is_empty()) {
                        return bad("a CHAINED_INVOKE needs ChainedInvokeOptions.FunctionName".into());
                    }
                    S::Started
                }
                (kind, action, status) => {
                    return bad(format!("{action:?} is not allowed on a {kind:?} operation that is {status:?}"));
                }
            };
            batch.insert(u.id.as_str(), (u.kind, next));
        }
        Ok(())
    }

    /// Applies one validated update; true when it ended the execution (an EXECUTION update).
    fn apply(&mut self, u: &OperationUpdate, now_ms: i64) -> Result<bool, DurableError> {
        use OperationAction as A;
        use OperationStatus as S;
        use OperationType as T;
        let existing = self.find(&u.id);
        match (u.kind, u.action) {
            (T::Execution, _) => {
                self.checkpointed_outcome = Some((u.payload.clone(), u.error.clone()));
                return Ok(true);
            }
            (_, A::Start) => {
                let i = match existing {
                    Some(i) => {
                        self.operations[i].status = S::Started;
                        i
                    }
                    None => {
                        self.operations.push(Operation::new(u, S::Started, now_ms));
                        self.operations.len() - 1
                    }
                };
                let op = &mut self.operations[i];
                op.next_attempt_ms = None;
                let details = match u.kind {
                    T::Wait => {
                        let secs = u.wait_options.as_ref().and_then(|o| o.wait_seconds).unwrap_or(1);
                        let end = now_ms + i64::try_from(secs).unwrap_or(i64::MAX / 2_000) * 1000;
                        op.scheduled_end_ms = Some(end);
                        op.wait_seconds = Some(secs);
                        json!({ "Duration": secs, "ScheduledEndTimestamp": end as f64 / 1000.0 })
                    }
                    T::Callback => {
                        let id = callback_id(execution_id(&self.head.arn), &u.id);
                        let options = u.callback_options.clone().unwrap_or_default();
                        let mut d = json!({ "CallbackId": id });
                        if let Some(t) = options.timeout_seconds.filter(|t| *t > 0) {
                            op.timeout_at_ms = Some(now_ms + i64::try_from(t).unwrap_or(i64::MAX / 2_000) * 1000);
                            d["Timeout"] = json!(t);
                        }
                        if let Some(h) = options.heartbeat_timeout_seconds.filter(|h| *h > 0) {
                            op.heartbeat_timeout_s = Some(h);
                            op.heartbeat_at_ms = Some(now_ms + i64::try_from(h).unwrap_or(i64::MAX / 2_000) * 1000);
                            d["HeartbeatTimeout"] = json!(h);
                        }
                        op.callback_id = Some(id);
                        d
                    }
                    T::ChainedInvoke => {
                        let options = u.chained_invoke_options.clone().unwrap_or_default();
                        op.function_name = Some(options.function_name.clone());
                        op.input = u.payload.clone();
                        let mut d = json!({ "FunctionName": options.function_name, "Input": payload(&u.payload) });
                        if let Some(tenant) = &options.tenant_id {
                            d["TenantId"] = json!(tenant);
                        }
                        d
                    }
                    _ => json!({}),
                };
                let kind = format!("{}Started", u.kind.event_prefix());
                self.touch(i);
                self.event(&kind, Some(i), now_ms, details);
            }
            (_, action) => {
                let Some(i) = existing else { return Err(DurableError::Invalid(format!("no operation {}", u.id))) };
                let op = &mut self.operations[i];
                let attempt_ended = op.attempt + 1;
                let (status, kind, details) = match (u.kind, action) {
                    (T::Step, A::Retry) => {
                        let delay = u.step_options.as_ref().and_then(|o| o.next_attempt_delay_seconds).unwrap_or(1);
                        op.attempt += 1;
                        op.next_attempt_ms = Some(now_ms + i64::try_from(delay).unwrap_or(i64::MAX / 2_000) * 1000);
                        op.result = u.payload.clone();
                        op.error = u.error.clone();
                        let retry = json!({ "CurrentAttempt": attempt_ended, "NextAttemptDelaySeconds": delay });
                        match &u.error {
                            Some(_) => (
                                S::Pending,
                                "StepFailed",
                                json!({ "Error": error_block(&u.error), "RetryDetails": retry }),
                            ),
                            None => (
                                S::Pending,
                                "StepSucceeded",
                                json!({ "Result": payload(&u.payload), "RetryDetails": retry }),
                            ),
                        }
                    }
                    (T::Step, A::Succeed) => {
                        op.result = u.payload.clone();
                        let retry = json!({ "CurrentAttempt": attempt_ended });
                        (S::Succeeded, "StepSucceeded", json!({ "Result": payload(&u.payload), "RetryDetails": retry }))
                    }
                    (T::Step, A::Fail) => {
                        op.error = u.error.clone();
                        let retry = json!({ "CurrentAttempt": attempt_ended });
                        (S::Failed, "StepFailed", json!({ "Error": error_block(&u.error), "RetryDetails": retry }))
                    }
                    (T::Context, A::Succeed) => {
                        op.result = u.payload.clone();
                        op.replay_children = u.context_options.as_ref().is_some_and(|o| o.replay_children);
                        (S::Succeeded, "ContextSucceeded", json!({ "Result": payload(&u.payload) }))
                    }
                    (T::Context, A::Fail) => {
                        op.error = u.error.clone();
                        (S::Failed, "ContextFailed", json!({ "Error": error_block(&u.error) }))
                    }
                    (T::Wait, A::Cancel) => (S::Cancelled, "WaitCancelled", json!({ "Error": error_block(&u.error) })),
                    (kind, action) => {
                        return Err(DurableError::Invalid(format!(
                            "{action:?} is not allowed on a {kind:?} operation"
                        )));
                    }
                };
                op.status = status;
                if status.is_done() {
                    op.end_ms = Some(now_ms);
                    op.next_attempt_ms = None;
                }
                self.touch(i);
                self.event(kind, Some(i), now_ms, details);
            }
        }
        Ok(false)
    }

    /// Moves on what time has made due by `now_ms`: waits that ended, retries that came due, callbacks that
    /// timed out, the execution's own limit. True when something changed.
    pub fn fire_due(&mut self, now_ms: i64) -> bool {
        if !self.is_running() {
            return false;
        }
        if self.timeout_at().is_some_and(|t| now_ms >= t) {
            let e = ErrorObject::new("Execution.TimedOut", "the durable execution ran past its ExecutionTimeout");
            self.end(ExecutionStatus::TimedOut, None, Some(e), now_ms);
            return true;
        }
        let mut changed = false;
        for i in 0..self.operations.len() {
            let op = &mut self.operations[i];
            let fired = match (op.kind, op.status) {
                (OperationType::Wait, OperationStatus::Started) if op.scheduled_end_ms.is_some_and(|t| t <= now_ms) => {
                    op.status = OperationStatus::Succeeded;
                    op.end_ms = Some(now_ms);
                    Some(("WaitSucceeded", json!({ "Duration": op.wait_seconds.unwrap_or(0) })))
                }
                (OperationType::Step, OperationStatus::Pending) if op.next_attempt_ms.is_some_and(|t| t <= now_ms) => {
                    // Due again: no event (AWS records the next StepStarted).
                    op.status = OperationStatus::Ready;
                    op.next_attempt_ms = None;
                    Some(("", Value::Null))
                }
                (OperationType::Callback, OperationStatus::Started) => {
                    let whole = op.timeout_at_ms.is_some_and(|t| t <= now_ms);
                    let beat = op.heartbeat_at_ms.is_some_and(|t| t <= now_ms);
                    if whole || beat {
                        let e = if whole {
                            ErrorObject::new("Callback.Timeout", "Callback timed out")
                        } else {
                            ErrorObject::new("Callback.Heartbeat", "Callback timed out on heartbeat")
                        };
                        op.status = OperationStatus::TimedOut;
                        op.end_ms = Some(now_ms);
                        op.error = Some(e.clone());
                        Some(("CallbackTimedOut", json!({ "Error": { "Payload": e, "Truncated": false } })))
                    } else {
                        None
                    }
                }
                _ => None,
            };
            if let Some((kind, details)) = fired {
                changed = true;
                self.touch(i);
                if !kind.is_empty() {
                    self.event(kind, Some(i), now_ms, details);
                }
            }
        }
        changed
    }

    /// When the timers that resume the function fire: waits' ends and steps' retries.
    fn resume_timers(&self) -> impl Iterator<Item = i64> + '_ {
        self.operations.iter().filter_map(|o| match (o.kind, o.status) {
            (OperationType::Wait, OperationStatus::Started) => o.scheduled_end_ms,
            (OperationType::Step, OperationStatus::Pending) => o.next_attempt_ms,
            _ => None,
        })
    }

    /// When a timer next moves something on its own (ms since the epoch), if any.
    pub fn next_deadline(&self) -> Option<i64> {
        if !self.is_running() {
            return None;
        }
        let callbacks = self.operations.iter().filter_map(|o| match (o.kind, o.status) {
            (OperationType::Callback, OperationStatus::Started) => match (o.timeout_at_ms, o.heartbeat_at_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            _ => None,
        });
        self.resume_timers().chain(callbacks).chain(self.timeout_at()).min()
    }

    /// When a timer will next resume the function (a wait's end, a step's retry), while no invocation runs
    /// and before the execution's timeout: what the pre-warmer starts an instance for. A callback's or a
    /// chained invoke's end is not known ahead, and a timeout resumes only to fail.
    pub fn next_resume(&self) -> Option<i64> {
        if !self.is_running() || self.invocation_running() {
            return None;
        }
        let limit = self.timeout_at();
        self.resume_timers().min().filter(|at| limit.is_none_or(|l| *at < l))
    }

    /// A callback answered through the API: `Ok` with its result, `Err` with its error, or a heartbeat
    /// (`None`). True when the execution should be invoked (nothing is running to learn of it).
    pub fn answer_callback(
        &mut self,
        op_id: &str,
        answer: Option<Result<String, ErrorObject>>,
        now_ms: i64,
    ) -> Result<bool, DurableError> {
        self.fire_due(now_ms);
        let Some(i) = self.find(op_id).filter(|i| self.operations[*i].kind == OperationType::Callback) else {
            return Err(DurableError::NotFound(format!("no callback {op_id} in this execution")));
        };
        if !self.is_running() || self.operations[i].status != OperationStatus::Started {
            return Err(DurableError::CallbackClosed(
                "the callback has already been completed or has timed out".into(),
            ));
        }
        let op = &mut self.operations[i];
        let Some(answer) = answer else {
            if let Some(h) = op.heartbeat_timeout_s {
                op.heartbeat_at_ms = Some(now_ms + i64::try_from(h).unwrap_or(i64::MAX / 2_000) * 1000);
                self.dirty.insert(i);
            }
            return Ok(false);
        };
        op.end_ms = Some(now_ms);
        let (kind, details) = match answer {
            Ok(result) => {
                op.status = OperationStatus::Succeeded;
                op.result = Some(result.clone());
                ("CallbackSucceeded", json!({ "Result": { "Payload": result, "Truncated": false } }))
            }
            Err(e) => {
                op.status = OperationStatus::Failed;
                op.error = Some(e.clone());
                ("CallbackFailed", json!({ "Error": { "Payload": e, "Truncated": false } }))
            }
        };
        self.touch(i);
        self.event(kind, Some(i), now_ms, details);
        // A running invocation learns of it from its next checkpoint's answer, or is followed by another.
        Ok(self.invocation.is_none())
    }

    /// The running invocation ended with `output`: records `InvocationCompleted`, then ends the execution,
    /// or says when to invoke it again.
    pub fn end_invocation(
        &mut self,
        request_id: &str,
        started_ms: i64,
        output: InvocationOutput,
        now_ms: i64,
        usage: Option<Value>,
    ) -> Next {
        self.head.invocation = None;
        self.head.invocation_started_ms = None;
        self.last_checkpoint = None;
        let mut details = json!({
            "StartTimestamp": started_ms as f64 / 1000.0,
            "EndTimestamp": now_ms as f64 / 1000.0,
            "RequestId": request_id,
        });
        if let InvocationOutput::Error(e) = &output {
            details["Error"] = json!({ "Payload": e, "Truncated": false });
        }
        self.event("InvocationCompleted", None, now_ms, details);
        if let Some(e) = self.events.last_mut() {
            e.usage = usage;
        }
        if !self.is_running() {
            return Next::Done;
        }
        let checkpointed = self.checkpointed_outcome.take();
        match output {
            InvocationOutput::Succeeded(result) => {
                let result = result.filter(|r| !r.is_empty()).or_else(|| checkpointed.and_then(|c| c.0));
                self.end(ExecutionStatus::Succeeded, result, None, now_ms);
                Next::Done
            }
            InvocationOutput::Failed(error) => {
                let error = error.or_else(|| checkpointed.and_then(|c| c.1));
                self.end(ExecutionStatus::Failed, None, error, now_ms);
                Next::Done
            }
            InvocationOutput::Pending => {
                self.head.failures = 0;
                self.fire_due(now_ms);
                // Something it waits for happened after it last looked (its last checkpoint's answer).
                let unseen = self.operations.iter().any(|o| o.changed > self.seen);
                if unseen {
                    Next::Invoke
                } else {
                    Next::WaitUntil(self.next_deadline())
                }
            }
            InvocationOutput::Error(e) => {
                self.head.failures += 1;
                if self.failures >= MAX_INVOCATION_FAILURES {
                    self.end(ExecutionStatus::Failed, None, Some(e), now_ms);
                    Next::Done
                } else {
                    Next::WaitUntil(Some(now_ms + INVOCATION_RETRY_MS))
                }
            }
        }
    }

    /// The chained invokes started and not yet ended: (operation id, function, payload).
    pub fn chained_invokes(&self) -> Vec<(String, String, Option<String>)> {
        self.operations
            .iter()
            .filter(|o| o.kind == OperationType::ChainedInvoke && o.status == OperationStatus::Started)
            .map(|o| (o.id.clone(), o.function_name.clone().unwrap_or_default(), o.input.clone()))
            .collect()
    }

    /// Adds what the service learned when it took chained invoke `op_id` on to its `ChainedInvokeStarted`
    /// event: the version it runs, and the execution it started when the function is durable (before the
    /// event is stored).
    pub fn describe_chained_invoke(&mut self, op_id: &str, executed_version: &str, execution_arn: Option<&str>) {
        let started = self.events[self.stored_events..]
            .iter_mut()
            .rev()
            .find(|e| e.kind == "ChainedInvokeStarted" && e.op_id.as_deref() == Some(op_id));
        if let Some(Value::Object(d)) = started.map(|e| &mut e.details) {
            d.insert("ExecutedVersion".into(), json!(executed_version));
            if let Some(arn) = execution_arn {
                d.insert("DurableExecutionArn".into(), json!(arn));
            }
        }
    }

    /// Whether the end of chained invoke `op_id`, known now, is to wait: the invocation that started it still
    /// runs and nothing else has changed in the execution since (it has not checkpointed again). AWS records a
    /// chained invoke's end after the invocation that started it suspends; an invoked function that answers
    /// before its caller has returned `PENDING` waits for that, or for the caller's next change, whichever
    /// comes first, so the history keeps AWS's order whatever the two functions' speeds.
    pub fn holds_chained_end(&self, op_id: &str) -> bool {
        let (Some(started), Some(i)) = (self.invocation_started_ms, self.find(op_id)) else {
            return false;
        };
        let op = &self.operations[i];
        self.is_running()
            && op.kind == OperationType::ChainedInvoke
            && op.status == OperationStatus::Started
            && op.start_ms >= started
            && op.changed == self.head.changes
    }

    /// Chained invoke `op_id` ended with the invoked function's result, or its error. True when the execution
    /// should be invoked (nothing is running to learn of it).
    pub fn end_chained_invoke(
        &mut self,
        op_id: &str,
        outcome: Result<Option<String>, ErrorObject>,
        now_ms: i64,
    ) -> Result<bool, DurableError> {
        let Some(i) = self.find(op_id).filter(|i| self.operations[*i].kind == OperationType::ChainedInvoke) else {
            return Err(DurableError::NotFound(format!("no chained invoke {op_id} in this execution")));
        };
        if !self.is_running() || self.operations[i].status != OperationStatus::Started {
            return Ok(false); // ended already (told twice, or the execution ended): nothing changes
        }
        let op = &mut self.operations[i];
        op.end_ms = Some(now_ms);
        let (kind, details) = match outcome {
            Ok(result) => {
                op.status = OperationStatus::Succeeded;
                op.result = result.clone();
                ("ChainedInvokeSucceeded", json!({ "Result": payload(&result) }))
            }
            Err(e) => {
                op.status = OperationStatus::Failed;
                op.error = Some(e.clone());
                ("ChainedInvokeFailed", json!({ "Error": { "Payload": e, "Truncated": false } }))
            }
        };
        self.touch(i);
        self.event(kind, Some(i), now_ms, details);
        Ok(self.invocation.is_none())
    }

    /// Stops the execution (`StopDurableExecution`).
    pub fn stop(&mut self, error: Option<ErrorObject>, now_ms: i64) -> Result<(), DurableError> {
        if !self.is_running() {
            return Err(DurableError::Invalid("the execution has already ended".into()));
        }
        self.end(ExecutionStatus::Stopped, None, error, now_ms);
        Ok(())
    }

    fn end(&mut self, status: ExecutionStatus, result: Option<String>, error: Option<ErrorObject>, now_ms: i64) {
        self.head.status = status;
        self.head.ended_ms = Some(now_ms);
        self.head.invocation = None;
        self.head.invocation_started_ms = None;
        let op_status = match status {
            ExecutionStatus::Succeeded => OperationStatus::Succeeded,
            ExecutionStatus::TimedOut => OperationStatus::TimedOut,
            ExecutionStatus::Stopped => OperationStatus::Stopped,
            _ => OperationStatus::Failed,
        };
        if let Some(op) = self.operations.first_mut() {
            op.status = op_status;
            op.end_ms = Some(now_ms);
            self.dirty.insert(0);
        }
        let (kind, details) = match status {
            ExecutionStatus::Succeeded => ("ExecutionSucceeded", json!({ "Result": payload(&result) })),
            ExecutionStatus::TimedOut => ("ExecutionTimedOut", json!({ "Error": error_block(&error) })),
            ExecutionStatus::Stopped => ("ExecutionStopped", json!({ "Error": error_block(&error) })),
            _ => ("ExecutionFailed", json!({ "Error": error_block(&error) })),
        };
        self.head.result = result;
        self.head.error = error;
        self.event(kind, None, now_ms, details);
    }
}

#[cfg(test)]
mod tests;
