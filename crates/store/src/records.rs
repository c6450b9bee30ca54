//! The records the store keeps.

use serde::{Deserialize, Serialize};
use stoke_core::{AccountId, AliasName, AliasRouting, FunctionConfig, FunctionName, LayerName, LifecycleState};

/// A tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub id: AccountId,
    pub name: String,
    pub is_admin: bool,
    pub created_ms: i64,
}

/// An account's credentials as stored: the API key only as its sha256; the AWS-style secret in full,
/// because SigV4 verification needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountKeys {
    pub api_key_sha256: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// A stored code archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRef {
    pub sha256: String,
    pub size: u64,
}

/// A function and its editable `$LATEST`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionRecord {
    pub account: AccountId,
    pub name: FunctionName,
    pub config: FunctionConfig,
    pub state: LifecycleState,
    /// `$LATEST`'s code; absent only if creation never completed.
    pub code: Option<CodeRef>,
    /// Bumped on every change; guards concurrent updates.
    pub revision: u64,
    /// The published version identical to `$LATEST`, if `$LATEST` has not changed since.
    pub latest_published: Option<u64>,
    /// Number of the newest published version (0 if none).
    pub last_version: u64,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// An immutable published version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub account: AccountId,
    pub function: FunctionName,
    pub version: u64,
    pub config: FunctionConfig,
    pub code: CodeRef,
    pub description: String,
    pub created_ms: i64,
}

/// How a function's Event invocations of one qualifier are delivered (Lambda's event invoke config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventConfigRecord {
    pub account: AccountId,
    pub function: FunctionName,
    /// `$LATEST`, a version number or an alias name.
    pub qualifier: String,
    /// Retries after a failed attempt, 0 to 2; `None`: Lambda's default, 2.
    pub max_retries: Option<u32>,
    /// How old an event may get before it is given up, in seconds (60 to 21,600); `None`: 6 hours.
    pub max_age_s: Option<u32>,
    /// Where a success goes (a function or state machine ARN); `None`: nowhere.
    #[serde(default)]
    pub on_success: Option<String>,
    /// Where a failure goes besides the failed-event store (a function or state machine ARN).
    #[serde(default)]
    pub on_failure: Option<String>,
    pub modified_ms: i64,
}

/// A named pointer at a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub account: AccountId,
    pub function: FunctionName,
    pub name: AliasName,
    pub routing: AliasRouting,
    pub description: String,
    pub revision: u64,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// Where an asynchronous (Event) invocation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl EventState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed].into_iter().find(|e| e.as_str() == s)
    }
}

/// An asynchronous invocation, persisted before it is acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: String,
    pub account: AccountId,
    /// The function reference as the caller gave it.
    pub reference: String,
    #[serde(with = "base64_bytes")]
    pub payload: Vec<u8>,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub state: EventState,
    pub error_type: Option<String>,
    /// The function's output (or error body) of the last attempt.
    #[serde(with = "base64_option")]
    pub result: Option<Vec<u8>>,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    /// The version the last attempt ran (`$LATEST` or a number), once one has run.
    #[serde(default)]
    pub executed_version: Option<String>,
    /// The event's own retry rule (a schedule's fire carries its schedule's), over its function's event
    /// invoke config: retries after a failed attempt, and the age past which it is given up.
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub max_age_s: Option<u32>,
}

impl EventRecord {
    /// A new Event invocation of `reference`, queued and due at `now_ms`, with its function's retry rule.
    pub fn queued(id: String, account: AccountId, reference: String, payload: Vec<u8>, now_ms: i64) -> Self {
        Self {
            id,
            account,
            reference,
            payload,
            attempts: 0,
            next_attempt_ms: now_ms,
            state: EventState::Queued,
            error_type: None,
            result: None,
            created_ms: now_ms,
            finished_ms: None,
            executed_version: None,
            max_retries: None,
            max_age_s: None,
        }
    }
}

/// A schedule (EventBridge Scheduler's): when it fires, what it runs, and what became of its fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub account: AccountId,
    /// Its schedule group (`default`).
    pub group: String,
    pub name: String,
    /// `rate(…)`, `cron(…)` or `at(…)`.
    pub expression: String,
    /// An IANA time zone name.
    pub timezone: String,
    pub description: String,
    pub enabled: bool,
    /// Nothing fires before it (rates count from it), nor after `end_ms`.
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// A flexible window: each fire is delivered within this many minutes after its time (0: off).
    pub window_min: u32,
    /// The target: a function or state machine ARN.
    pub target: String,
    /// The payload (context attributes replaced at each fire); none: Scheduler's scheduled event.
    pub input: Option<String>,
    /// Retries of a fire's failed invocation (0–185) and the age past which it is given up (60–86,400 s).
    pub max_retries: u32,
    pub max_age_s: u32,
    /// Deleted once it will not fire again (Scheduler's `ActionAfterCompletion: DELETE`).
    pub delete_after_completion: bool,
    pub created_ms: i64,
    pub modified_ms: i64,
    /// When it fires next (its scheduled time); none when disabled or done.
    pub next_fire_ms: Option<i64>,
    /// Its last fire: when it was scheduled, when it was delivered, and the invocation it queued.
    pub last_fire_ms: Option<i64>,
    pub last_fired_at_ms: Option<i64>,
    pub last_event: Option<String>,
    /// Fires delivered, and fires missed (due while the server was down, past the maximum age).
    pub fires: u64,
    pub missed: u64,
    /// Bumped by every write, for compare-and-set.
    pub revision: u64,
}

/// What kind of HTTP trigger a record is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TriggerKind {
    /// A function URL: `/u/<id>/…`, any method and sub-path.
    Url,
    /// A route of the account's gateway, with its key (`GET /pets/{id}`) and shape (unique per account).
    Route { key: String, shape: String },
}

/// An HTTP trigger: a function URL or a route, pointing at a function (optionally at a qualifier).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerRecord {
    pub id: String,
    pub account: AccountId,
    pub kind: TriggerKind,
    pub function: FunctionName,
    pub qualifier: Option<String>,
    pub auth: stoke_core::gateway::TriggerAuth,
    pub cors: Option<stoke_core::gateway::Cors>,
    pub created_ms: i64,
}

impl TriggerRecord {
    pub fn is_route(&self) -> bool {
        matches!(self.kind, TriggerKind::Route { .. })
    }

    /// The function reference invocations use: `name` or `name:qualifier`.
    pub fn reference(&self) -> String {
        match &self.qualifier {
            Some(q) => format!("{}:{q}", self.function),
            None => self.function.to_string(),
        }
    }
}

/// A workflow: a named state machine definition (Amazon States Language JSON, kept as given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    pub account: AccountId,
    pub name: String,
    pub definition: String,
    /// Bumped by every update; updates name the revision they read.
    pub revision: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The pre-warm policy of its executions (`off`, `eager`, `jit`); `None`: the server's default.
    pub prewarm: Option<String>,
    /// The IAM role it was created with (Step Functions' `roleArn`), kept as given; `None`: none given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

/// Learned statistics, opaque to the store: `kind` says what they are about, `key` of what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatRecord {
    pub kind: String,
    pub key: String,
    pub data: String,
    pub updated_ms: i64,
}

/// Where an execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl ExecutionStatus {
    /// The Step Functions spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Aborted => "ABORTED",
        }
    }

    /// Every status, in the order an execution may pass through them.
    pub const ALL: [Self; 5] = [Self::Running, Self::Succeeded, Self::Failed, Self::TimedOut, Self::Aborted];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One run of a workflow. It keeps the definition it started with, so updating the workflow never
/// changes a running execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    pub id: String,
    pub account: AccountId,
    pub workflow: String,
    /// Unique per workflow (Step Functions' execution name).
    pub name: String,
    pub definition: String,
    pub status: ExecutionStatus,
    pub input: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub started_ms: i64,
    pub stopped_ms: Option<i64>,
}

/// A distributed Map's run: the child executions one attempt of a Map state started. `children` is the
/// workflow name its children run under (`<machine>/<label>`, Step Functions' form); `details` is the
/// server's JSON (limits, tolerance, counts), opaque to the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapRunRecord {
    pub id: String,
    pub account: AccountId,
    /// The execution whose Map state started it.
    pub execution_id: String,
    pub children: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED` or `ABORTED`.
    pub status: String,
    pub started_ms: i64,
    pub stopped_ms: Option<i64>,
    pub details: String,
}

/// One stored entry of an execution's history. The server's typed `workflows::history::HistoryEvent` is
/// kept as its Step Functions event type name (`kind`) and a JSON object of details; `scope`, `step` and
/// `attempt` place it in the run (a branch or Map iteration, the n-th state of that scope, the n-th try)
/// so a restarted engine can tell what already happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub seq: u64,
    pub timestamp_ms: i64,
    pub kind: String,
    pub scope: String,
    pub step: u32,
    pub attempt: u32,
    /// JSON object with the event's details.
    pub details: String,
}

/// A Lambda durable execution: where to find it (its id is its ARN's last segment), its state for listing,
/// and its head (`stoke_core::durable::DurableHead` as JSON, opaque to the store). Its operations and events
/// are rows of their own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurableRecord {
    pub id: String,
    pub account: AccountId,
    pub function: FunctionName,
    /// The version it runs: `$LATEST` or a number.
    pub version: String,
    /// Unique per function.
    pub name: String,
    pub arn: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT` or `STOPPED`.
    pub status: String,
    /// Of its input: the same name with another input is another execution, refused.
    pub input_sha256: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    /// When a timer of it next fires.
    pub next_deadline_ms: Option<i64>,
    /// Bumped at every write; a write names the revision it read.
    pub revision: u64,
    pub head: String,
    /// Days it is kept once it has ended (its function's retention when it started).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// When, having ended, it is deleted.
    #[serde(default)]
    pub expires_ms: Option<i64>,
}

fn default_retention_days() -> u32 {
    14
}

/// One operation of a durable execution: its place in start order, its id and its state as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurableOpRow {
    pub seq: u32,
    pub op_id: String,
    pub data: String,
}

/// One history event of a durable execution (ids 1, 2, 3, … in order), its details as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurableEventRow {
    pub event_id: u64,
    pub timestamp_ms: i64,
    pub kind: String,
    pub data: String,
}

/// A `stoke tune` run: what was asked (JSON), where it stands, and what it found (JSON), both opaque to the
/// store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TuneRecord {
    pub id: String,
    pub account: AccountId,
    pub function: FunctionName,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    pub request: String,
    pub result: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
}

/// A published layer version: an archive of libraries, unpacked once into a shared read-only directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub account: AccountId,
    pub name: LayerName,
    /// Assigned by the store at publish: one more than the layer's highest version ever.
    pub version: u64,
    pub description: String,
    pub compatible_runtimes: Vec<String>,
    pub code: CodeRef,
    pub created_ms: i64,
    /// Deleted, but kept because functions still list it: they keep running, new ones cannot list it.
    pub deleted_ms: Option<i64>,
}

/// A root file system imported with `stoke image import`, for functions to run on (`base_image`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub name: String,
    /// sha256 of the imported tarball, and its size.
    pub code: CodeRef,
    /// Bytes of the unpacked file system.
    pub unpacked_bytes: u64,
    pub created_ms: i64,
}

/// Bytes in a JSON value as base64 (a quarter larger, not four times as a list of numbers would be).
mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

mod base64_option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => super::base64_bytes::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(t).map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}
