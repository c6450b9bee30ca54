//! The records the store keeps.

use stoke_core::{AccountId, AliasName, AliasRouting, FunctionConfig, FunctionName, LifecycleState};

/// A tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRecord {
    pub id: AccountId,
    pub name: String,
    pub is_admin: bool,
    pub created_ms: i64,
}

/// An account's credentials as stored: the API key only as its sha256; the AWS-style secret in full,
/// because SigV4 verification needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountKeys {
    pub api_key_sha256: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// A stored code archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRef {
    pub sha256: String,
    pub size: u64,
}

/// A function and its editable `$LATEST`.
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    pub account: AccountId,
    pub function: FunctionName,
    pub version: u64,
    pub config: FunctionConfig,
    pub code: CodeRef,
    pub description: String,
    pub created_ms: i64,
}

/// A named pointer at a version.
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub id: String,
    pub account: AccountId,
    /// The function reference as the caller gave it.
    pub reference: String,
    pub payload: Vec<u8>,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub state: EventState,
    pub error_type: Option<String>,
    /// The function's output (or error body) of the last attempt.
    pub result: Option<Vec<u8>>,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
}

/// What kind of HTTP trigger a record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerKind {
    /// A function URL: `/u/<id>/…`, any method and sub-path.
    Url,
    /// A route of the account's gateway, with its key (`GET /pets/{id}`) and shape (unique per account).
    Route { key: String, shape: String },
}

/// An HTTP trigger: a function URL or a route, pointing at a function (optionally at a qualifier).
#[derive(Debug, Clone, PartialEq)]
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
