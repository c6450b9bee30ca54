//! An execution's history as typed events: the engine writes them, replays them after a restart, the Step
//! Functions adapter renders them with AWS's names and detail keys, and the timeline reads them.
//!
//! The store keeps each event as a [`HistoryRow`]: its Step Functions event type name and a JSON object of
//! details. This module is the only place that knows those names and keys; everything else matches on
//! [`HistoryEvent`]. An event of a kind this server does not know (written by a newer one) is kept as
//! [`HistoryEvent::Other`], shown as it is and ignored by replay.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stoke_store::HistoryRow;

/// One recorded event with its place in the run: the scope is the top level (`""`) or a Parallel branch /
/// Map iteration, the step counts states entered in that scope, the attempt counts tries of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub seq: u64,
    pub timestamp_ms: i64,
    pub scope: String,
    pub step: u32,
    pub attempt: u32,
    pub event: HistoryEvent,
}

impl Recorded {
    /// Reads a stored row. Details that are not what the event's kind calls for make an `Other`.
    pub fn from_row(row: &HistoryRow) -> Recorded {
        Recorded {
            seq: row.seq,
            timestamp_ms: row.timestamp_ms,
            scope: row.scope.clone(),
            step: row.step,
            attempt: row.attempt,
            event: HistoryEvent::parse(&row.kind, &row.details),
        }
    }

    pub fn to_row(&self) -> HistoryRow {
        HistoryRow {
            seq: self.seq,
            timestamp_ms: self.timestamp_ms,
            kind: self.event.kind().into_owned(),
            scope: self.scope.clone(),
            step: self.step,
            attempt: self.attempt,
            details: self.event.details().to_string(),
        }
    }
}

/// How a Task state called its function, which decides the family of its events' names: a Lambda
/// function ARN as the resource (`LambdaFunction…`) or the `arn:aws:states:::lambda:invoke` integration
/// (`Task…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integration {
    Lambda,
    LambdaInvoke,
}

impl Integration {
    fn prefix(self) -> &'static str {
        match self {
            Integration::Lambda => "LambdaFunction",
            Integration::LambdaInvoke => "Task",
        }
    }
}

/// What happened. The variants' names follow Step Functions' event types.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryEvent {
    ExecutionStarted(ExecutionStarted),
    ExecutionSucceeded(Output),
    ExecutionFailed(ErrorCause),
    ExecutionAborted(ErrorCause),
    ExecutionTimedOut(ErrorCause),
    /// `<Type>StateEntered`.
    StateEntered(StateEntered),
    /// `<Type>StateExited`.
    StateExited(StateExited),
    /// An attempt of a task, recorded before it runs.
    TaskScheduled(Integration, TaskScheduled),
    /// The attempt's invocation was handed to the function (`LambdaFunctionStarted` / `TaskStarted`).
    TaskStarted(Integration),
    TaskSucceeded(Integration, TaskSucceeded),
    TaskFailed(Integration, TaskFailure),
    /// The attempt ran past `TimeoutSeconds` or `HeartbeatSeconds`.
    TaskTimedOut(Integration, TaskFailure),
    ParallelStateStarted,
    ParallelStateSucceeded,
    ParallelStateFailed,
    MapStateStarted(MapStarted),
    MapIterationStarted(MapIteration),
    MapIterationSucceeded(MapIteration),
    MapIterationFailed(MapIteration),
    MapStateSucceeded,
    MapStateFailed,
    /// A distributed Map's attempt started its map run (its children are executions of their own).
    MapRunStarted(MapRunStarted),
    MapRunSucceeded,
    MapRunFailed(ErrorCause),
    /// A JSONata expression of a state failed (before the state's failure is handled).
    EvaluationFailed(EvaluationFailed),
    /// A kind this server does not know, or details it cannot read: kept as stored.
    Other {
        kind: String,
        details: Value,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecutionStarted {
    pub input: Value,
    /// The pre-warm policy the execution runs with (`Policy::as_str`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prewarm: Option<String>,
    /// The execution has a scratch directory its steps share.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub scratch: bool,
    /// The state machine's role when it started (`$$.Execution.RoleArn`, the event's `roleArn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

/// `MapRunStarted`: the map run's id (its ARN is made from it and the execution).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MapRunStarted {
    pub map_run: String,
    /// The workflow name its children run under (`<machine>/<label>`).
    pub children: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Output {
    pub output: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorCause {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// `EvaluationFailed`: the error and cause, the field whose expression failed and the state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvaluationFailed {
    pub error: String,
    pub cause: String,
    pub location: String,
    pub state: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateEntered {
    /// The state's type (`Task`, `Wait`, …): part of the event's name, not of its details.
    #[serde(skip)]
    pub state_type: String,
    pub name: String,
    pub input: Value,
    /// A Wait state's deadline, fixed when it was entered so that a restart resumes the same wait.
    #[serde(rename = "waitUntilMs", skip_serializing_if = "Option::is_none")]
    pub wait_until_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateExited {
    #[serde(skip)]
    pub state_type: String,
    pub name: String,
    pub output: Value,
    /// The state that follows; absent where the scope ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The variables the state (or the catcher taken) assigned: replay sets them again.
    #[serde(rename = "assignedVariables", skip_serializing_if = "Option::is_none")]
    pub assigned: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskScheduled {
    /// The function reference invoked (name, ARN, with its qualifier).
    pub resource: String,
    /// The payload; a resumed attempt runs again with it.
    pub input: Value,
    #[serde(rename = "timeoutInSeconds", skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskSucceeded {
    pub output: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskFailure {
    pub error: String,
    pub cause: String,
    /// Absent when the function never ran (missing, throttled, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MapStarted {
    pub length: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MapIteration {
    pub index: u64,
}

/// What an invocation used and where its time went, kept for cost and timelines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Usage {
    pub billed_ms: u64,
    pub memory_mb: u32,
    pub duration_ms: f64,
    pub queued_ms: f64,
    /// The instance's initialisation, billed, when this was its first invocation.
    pub init_ms: u64,
    pub instance: u64,
    /// Present when the invocation waited for (or ran on) a cold start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_start_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_ms: Option<f64>,
    /// Ran on an instance an earlier step prepared: held from its preparation until the step came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_ms: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub prepared: bool,
    /// In a cluster: the node whose instance ran it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

const STATE_ENTERED: &str = "StateEntered";
const STATE_EXITED: &str = "StateExited";

impl HistoryEvent {
    /// The Step Functions event type.
    pub fn kind(&self) -> Cow<'static, str> {
        use HistoryEvent as E;
        let task = |i: Integration, what: &str| Cow::Owned(format!("{}{what}", i.prefix()));
        Cow::Borrowed(match self {
            E::ExecutionStarted(_) => "ExecutionStarted",
            E::ExecutionSucceeded(_) => "ExecutionSucceeded",
            E::ExecutionFailed(_) => "ExecutionFailed",
            E::ExecutionAborted(_) => "ExecutionAborted",
            E::ExecutionTimedOut(_) => "ExecutionTimedOut",
            E::StateEntered(s) => return Cow::Owned(format!("{}{STATE_ENTERED}", s.state_type)),
            E::StateExited(s) => return Cow::Owned(format!("{}{STATE_EXITED}", s.state_type)),
            E::TaskScheduled(i, _) => return task(*i, "Scheduled"),
            E::TaskStarted(i) => return task(*i, "Started"),
            E::TaskSucceeded(i, _) => return task(*i, "Succeeded"),
            E::TaskFailed(i, _) => return task(*i, "Failed"),
            E::TaskTimedOut(i, _) => return task(*i, "TimedOut"),
            E::ParallelStateStarted => "ParallelStateStarted",
            E::ParallelStateSucceeded => "ParallelStateSucceeded",
            E::ParallelStateFailed => "ParallelStateFailed",
            E::MapStateStarted(_) => "MapStateStarted",
            E::MapIterationStarted(_) => "MapIterationStarted",
            E::MapIterationSucceeded(_) => "MapIterationSucceeded",
            E::MapIterationFailed(_) => "MapIterationFailed",
            E::MapStateSucceeded => "MapStateSucceeded",
            E::MapStateFailed => "MapStateFailed",
            E::MapRunStarted(_) => "MapRunStarted",
            E::MapRunSucceeded => "MapRunSucceeded",
            E::MapRunFailed(_) => "MapRunFailed",
            E::EvaluationFailed(_) => "EvaluationFailed",
            E::Other { kind, .. } => return Cow::Owned(kind.clone()),
        })
    }

    /// The details as stored (and as the native API shows them).
    pub fn details(&self) -> Value {
        use HistoryEvent as E;
        let to = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
        match self {
            E::ExecutionStarted(d) => to(serde_json::to_value(d)),
            E::ExecutionSucceeded(d) => to(serde_json::to_value(d)),
            E::ExecutionFailed(d) | E::ExecutionAborted(d) | E::ExecutionTimedOut(d) => to(serde_json::to_value(d)),
            E::StateEntered(d) => to(serde_json::to_value(d)),
            E::StateExited(d) => to(serde_json::to_value(d)),
            E::TaskScheduled(_, d) => to(serde_json::to_value(d)),
            E::TaskSucceeded(_, d) => to(serde_json::to_value(d)),
            E::TaskFailed(_, d) | E::TaskTimedOut(_, d) => to(serde_json::to_value(d)),
            E::MapStateStarted(d) => to(serde_json::to_value(d)),
            E::MapRunStarted(d) => to(serde_json::to_value(d)),
            E::MapRunFailed(d) => to(serde_json::to_value(d)),
            E::EvaluationFailed(d) => to(serde_json::to_value(d)),
            E::MapIterationStarted(d) | E::MapIterationSucceeded(d) | E::MapIterationFailed(d) => {
                to(serde_json::to_value(d))
            }
            E::TaskStarted(_)
            | E::ParallelStateStarted
            | E::ParallelStateSucceeded
            | E::ParallelStateFailed
            | E::MapStateSucceeded
            | E::MapStateFailed
            | E::MapRunSucceeded => Value::Object(Default::default()),
            E::Other { details, .. } => details.clone(),
        }
    }

    /// Reads an event from its stored name and details.
    pub fn parse(kind: &str, details: &str) -> HistoryEvent {
        let value: Value = serde_json::from_str(details).unwrap_or(Value::Null);
        Self::read(kind, &value).unwrap_or_else(|| HistoryEvent::Other { kind: kind.to_string(), details: value })
    }

    fn read(kind: &str, d: &Value) -> Option<HistoryEvent> {
        use HistoryEvent as E;
        use Integration::{Lambda, LambdaInvoke};
        Some(match kind {
            "ExecutionStarted" => E::ExecutionStarted(de(d)?),
            "ExecutionSucceeded" => E::ExecutionSucceeded(de(d)?),
            "ExecutionFailed" => E::ExecutionFailed(de(d)?),
            "ExecutionAborted" => E::ExecutionAborted(de(d)?),
            "ExecutionTimedOut" => E::ExecutionTimedOut(de(d)?),
            "LambdaFunctionScheduled" => E::TaskScheduled(Lambda, de(d)?),
            "LambdaFunctionStarted" => E::TaskStarted(Lambda),
            "TaskStarted" => E::TaskStarted(LambdaInvoke),
            "LambdaFunctionSucceeded" => E::TaskSucceeded(Lambda, de(d)?),
            "LambdaFunctionFailed" => E::TaskFailed(Lambda, de(d)?),
            "LambdaFunctionTimedOut" => E::TaskTimedOut(Lambda, de(d)?),
            "TaskScheduled" => E::TaskScheduled(LambdaInvoke, de(d)?),
            "TaskSucceeded" => E::TaskSucceeded(LambdaInvoke, de(d)?),
            "TaskFailed" => E::TaskFailed(LambdaInvoke, de(d)?),
            "TaskTimedOut" => E::TaskTimedOut(LambdaInvoke, de(d)?),
            "ParallelStateStarted" => E::ParallelStateStarted,
            "ParallelStateSucceeded" => E::ParallelStateSucceeded,
            "ParallelStateFailed" => E::ParallelStateFailed,
            "MapStateStarted" => E::MapStateStarted(de(d)?),
            "MapIterationStarted" => E::MapIterationStarted(de(d)?),
            "MapIterationSucceeded" => E::MapIterationSucceeded(de(d)?),
            "MapIterationFailed" => E::MapIterationFailed(de(d)?),
            "MapStateSucceeded" => E::MapStateSucceeded,
            "MapStateFailed" => E::MapStateFailed,
            "MapRunStarted" => E::MapRunStarted(de(d)?),
            "MapRunSucceeded" => E::MapRunSucceeded,
            "MapRunFailed" => E::MapRunFailed(de(d)?),
            "EvaluationFailed" => E::EvaluationFailed(de(d)?),
            _ => {
                if let Some(t) = kind.strip_suffix(STATE_ENTERED).filter(|t| is_state_type(t)) {
                    E::StateEntered(StateEntered { state_type: t.to_string(), ..de(d)? })
                } else if let Some(t) = kind.strip_suffix(STATE_EXITED).filter(|t| is_state_type(t)) {
                    E::StateExited(StateExited { state_type: t.to_string(), ..de(d)? })
                } else {
                    return None;
                }
            }
        })
    }
}

/// A state type as the ASL names it (and as the `<Type>StateEntered` events carry it).
fn is_state_type(t: &str) -> bool {
    matches!(t, "Task" | "Pass" | "Choice" | "Wait" | "Succeed" | "Fail" | "Parallel" | "Map")
}

/// Details into their struct; missing keys take their defaults, and a row written without details reads as
/// an empty object.
fn de<T: DeserializeOwned>(d: &Value) -> Option<T> {
    match d {
        Value::Null => serde_json::from_value(Value::Object(Default::default())).ok(),
        other => T::deserialize(other).ok(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(kind: &str, details: Value) -> HistoryRow {
        HistoryRow {
            seq: 3,
            timestamp_ms: 1_000,
            kind: kind.into(),
            scope: "/0:b1".into(),
            step: 2,
            attempt: 1,
            details: details.to_string(),
        }
    }

    /// Every kind the engine writes reads back as itself, with the same name and details.
    #[test]
    fn every_event_survives_the_store() {
        let usage = Usage {
            billed_ms: 12,
            memory_mb: 128,
            duration_ms: 11.5,
            cold_start_ms: Some(80.0),
            sandbox_ms: Some(5.0),
            ..Usage::default()
        };
        let cause = |e: &str| ErrorCause { error: Some(e.into()), cause: Some("why".into()) };
        let failure = TaskFailure { error: "E".into(), cause: "c".into(), usage: Some(usage.clone()) };
        let events = [
            HistoryEvent::ExecutionStarted(ExecutionStarted {
                input: json!({"a": 1}),
                prewarm: Some("prepare".into()),
                scratch: true,
                role_arn: Some("arn:aws:iam::123456789012:role/flows".into()),
            }),
            HistoryEvent::ExecutionSucceeded(Output { output: json!([1]) }),
            HistoryEvent::ExecutionFailed(cause("States.TaskFailed")),
            HistoryEvent::ExecutionAborted(ErrorCause::default()),
            HistoryEvent::ExecutionTimedOut(cause("States.Timeout")),
            HistoryEvent::StateEntered(StateEntered {
                state_type: "Wait".into(),
                name: "W".into(),
                input: json!(7),
                wait_until_ms: Some(99),
            }),
            HistoryEvent::StateExited(StateExited {
                state_type: "Task".into(),
                name: "T".into(),
                output: json!(7),
                next: Some("W".into()),
                assigned: Some(json!({"x": [1]}).as_object().cloned().unwrap_or_default()),
            }),
            HistoryEvent::TaskScheduled(
                Integration::Lambda,
                TaskScheduled { resource: "f:1".into(), input: json!({}), timeout_seconds: Some(60) },
            ),
            HistoryEvent::TaskSucceeded(
                Integration::LambdaInvoke,
                TaskSucceeded { output: json!("ok"), usage: Some(usage) },
            ),
            HistoryEvent::TaskFailed(Integration::Lambda, failure.clone()),
            HistoryEvent::TaskTimedOut(Integration::LambdaInvoke, failure),
            HistoryEvent::ParallelStateStarted,
            HistoryEvent::ParallelStateSucceeded,
            HistoryEvent::ParallelStateFailed,
            HistoryEvent::MapStateStarted(MapStarted { length: 3 }),
            HistoryEvent::MapIterationStarted(MapIteration { index: 0 }),
            HistoryEvent::MapIterationSucceeded(MapIteration { index: 1 }),
            HistoryEvent::MapIterationFailed(MapIteration { index: 2 }),
            HistoryEvent::MapStateSucceeded,
            HistoryEvent::MapStateFailed,
            HistoryEvent::MapRunStarted(MapRunStarted { map_run: "m1".into(), children: "flow/Orders".into() }),
            HistoryEvent::MapRunSucceeded,
            HistoryEvent::MapRunFailed(ErrorCause { error: Some("E".into()), cause: Some("c".into()) }),
            HistoryEvent::EvaluationFailed(EvaluationFailed {
                error: "States.QueryEvaluationError".into(),
                cause: "c".into(),
                location: "Output/result".into(),
                state: "S".into(),
            }),
        ];
        let mut names = std::collections::HashSet::new();
        for event in events {
            let recorded = Recorded { seq: 3, timestamp_ms: 1_000, scope: "/0:b1".into(), step: 2, attempt: 1, event };
            let stored = recorded.to_row();
            assert!(names.insert(stored.kind.clone()), "{} named twice", stored.kind);
            assert_eq!(Recorded::from_row(&stored), recorded, "{}", stored.kind);
        }
        assert_eq!(names.len(), 24);
    }

    /// Rows as servers before the typed history wrote them read as the events they meant.
    #[test]
    fn rows_of_earlier_servers_read_as_typed_events() {
        let scheduled = Recorded::from_row(&row(
            "TaskScheduled",
            json!({"resource": "f", "input": {"a": 1}, "timeoutInSeconds": 60}),
        ));
        assert_eq!(
            scheduled.event,
            HistoryEvent::TaskScheduled(
                Integration::LambdaInvoke,
                TaskScheduled { resource: "f".into(), input: json!({"a": 1}), timeout_seconds: Some(60) }
            )
        );
        assert_eq!((scheduled.scope.as_str(), scheduled.step, scheduled.attempt), ("/0:b1", 2, 1));
        let aborted = HistoryEvent::parse("ExecutionAborted", r#"{"error":null,"cause":null}"#);
        assert_eq!(aborted, HistoryEvent::ExecutionAborted(ErrorCause::default()));
        let exited = HistoryEvent::parse("PassStateExited", r#"{"name":"P","output":1}"#);
        let HistoryEvent::StateExited(e) = exited else { panic!("{exited:?}") };
        assert_eq!((e.state_type.as_str(), e.name.as_str(), e.next), ("Pass", "P", None));
        // No details at all reads as an empty object.
        assert_eq!(HistoryEvent::parse("MapStateStarted", ""), HistoryEvent::MapStateStarted(MapStarted { length: 0 }));
    }

    #[test]
    fn unknown_kinds_and_unreadable_details_are_kept_as_they_are() {
        let unknown = HistoryEvent::parse("WaitForCallbackStarted", r#"{"x":1}"#);
        assert_eq!(unknown, HistoryEvent::Other { kind: "WaitForCallbackStarted".into(), details: json!({"x": 1}) });
        assert_eq!(unknown.kind(), "WaitForCallbackStarted");
        assert_eq!(unknown.details(), json!({"x": 1}));
        // A suffix alone does not make a state event.
        assert!(matches!(HistoryEvent::parse("BogusStateEntered", "{}"), HistoryEvent::Other { .. }));
        // The wrong type for a field keeps the row rather than inventing values.
        let odd = HistoryEvent::parse("MapIterationStarted", r#"{"index":"three"}"#);
        assert!(matches!(odd, HistoryEvent::Other { .. }), "{odd:?}");
    }
}
