//! What the `/v1` API returns and accepts: plain data, converted from the store's records.

use serde::{Deserialize, Serialize};
use stoke_core::lifecycle::{allowed_events, LifecycleContext};
use stoke_core::reference::function_arn;
use stoke_core::time::format_rfc3339;
use stoke_core::{AliasRouting, ConfigPatch, FunctionConfig, LifecycleState, NodeLimits};
use stoke_store::{AccountRecord, AliasRecord, FunctionRecord, VersionRecord};
use utoipa::ToSchema;

use crate::accounts::Credentials;
use crate::registry::Resolved;

/// A function, or one version of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FunctionView {
    pub name: String,
    pub account_id: String,
    /// The qualified ARN of what was asked for.
    pub arn: String,
    /// `$LATEST` or the version number.
    pub version: String,
    /// The alias the reference went through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The function's lifecycle state.
    pub state: LifecycleState,
    /// Lifecycle actions allowed from this state.
    pub allowed_actions: Vec<String>,
    #[serde(flatten)]
    pub config: FunctionConfig,
    pub code_sha256: String,
    pub code_size: u64,
    pub revision: u64,
    /// The newest published version number (0 if none).
    pub last_version: u64,
    /// The published version `$LATEST` is identical to, if any.
    pub latest_published: Option<u64>,
    pub created: String,
    pub modified: String,
    /// The function's most recent memory tune (`stoke tune`), shown by `GET` of the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tune: Option<crate::tune::TuneView>,
    /// What its invocations did on this node since the node started (every version and alias): count,
    /// errors, last call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<stoke_core::stats::Activity>,
}

impl FunctionView {
    pub fn from_function(f: &FunctionRecord, region: &str) -> Self {
        Self::build(f, None, None, region)
    }

    pub fn from_resolved(r: &Resolved, region: &str) -> Self {
        Self::build(&r.function, r.version.as_ref(), r.alias.as_ref(), region)
    }

    fn build(f: &FunctionRecord, v: Option<&VersionRecord>, alias: Option<&AliasRecord>, region: &str) -> Self {
        let version = v.map_or_else(|| "$LATEST".to_string(), |v| v.version.to_string());
        let qualifier = alias.map(|a| a.name.to_string()).unwrap_or_else(|| version.clone());
        let code = v
            .map(|v| v.code.clone())
            .or_else(|| f.code.clone())
            .unwrap_or(stoke_store::CodeRef { sha256: String::new(), size: 0 });
        let ctx = LifecycleContext { latest_is_published: f.latest_published.is_some() };
        Self {
            name: f.name.to_string(),
            account_id: f.account.to_string(),
            arn: function_arn(region, &f.account, &f.name, Some(&qualifier)),
            version,
            alias: alias.map(|a| a.name.to_string()),
            state: f.state,
            allowed_actions: allowed_events(f.state, ctx).iter().map(|e| e.as_str().to_string()).collect(),
            config: v.map_or_else(|| f.config.clone(), |v| v.config.clone()),
            code_sha256: code.sha256,
            code_size: code.size,
            revision: f.revision,
            last_version: f.last_version,
            latest_published: f.latest_published,
            created: format_rfc3339(f.created_ms),
            modified: format_rfc3339(v.map_or(f.modified_ms, |v| v.created_ms)),
            last_tune: None,
            activity: None,
        }
    }
}

/// `POST /v1/functions`: a name, configuration fields, and the code archive.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateFunctionRequest {
    /// 1-64 letters, digits, '-' or '_'.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub name: String,
    #[serde(flatten)]
    pub config: ConfigPatch,
    /// The code archive (zip or tar.gz), base64-encoded.
    #[schema(min_length = 1, content_encoding = "base64")]
    pub code_base64: String,
}

/// A page of functions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FunctionList {
    pub functions: Vec<FunctionView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A published version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    pub function: String,
    pub version: u64,
    pub arn: String,
    pub description: String,
    pub code_sha256: String,
    pub code_size: u64,
    /// The configuration frozen into this version.
    pub config: FunctionConfig,
    pub created: String,
}

impl VersionView {
    pub fn from_record(v: &VersionRecord, region: &str) -> Self {
        Self {
            function: v.function.to_string(),
            version: v.version,
            arn: function_arn(region, &v.account, &v.function, Some(&v.version.to_string())),
            description: v.description.clone(),
            code_sha256: v.code.sha256.clone(),
            code_size: v.code.size,
            config: v.config.clone(),
            created: format_rfc3339(v.created_ms),
        }
    }
}

/// A page of versions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    pub versions: Vec<VersionView>,
    pub next_cursor: Option<String>,
}

/// `POST /v1/functions/{function}/versions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub description: Option<String>,
}

/// How a function's Event invocations of one qualifier are delivered (its event invoke config).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventConfigView {
    /// `$LATEST`, a version number or an alias name.
    pub qualifier: String,
    /// Retries after a failed attempt (0-2); absent: 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// How old an event may get before it is given up, in seconds (60-21600); absent: 21600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_s: Option<u32>,
    /// Where a success's invocation record goes (a function or state machine ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    /// Where a failure's invocation record goes (a function or state machine ARN); the failed event is
    /// kept in the failed-event store either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
    pub modified_at: String,
}

impl EventConfigView {
    pub fn from_record(c: &stoke_store::EventConfigRecord) -> Self {
        EventConfigView {
            qualifier: c.qualifier.clone(),
            max_retries: c.max_retries,
            max_age_s: c.max_age_s,
            on_success: c.on_success.clone(),
            on_failure: c.on_failure.clone(),
            modified_at: stoke_core::time::format_rfc3339(c.modified_ms),
        }
    }
}

/// A function's event invoke configs, by qualifier.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventConfigList {
    pub configs: Vec<EventConfigView>,
}

/// `PUT /v1/functions/{function}/event-configs/{qualifier}`: the fields left out take Lambda's defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventConfigRequest {
    /// 0 to 2.
    #[schema(minimum = 0, maximum = 2)]
    pub max_retries: Option<i64>,
    /// 60 to 21600 seconds.
    #[schema(minimum = 60, maximum = 21600)]
    pub max_age_s: Option<i64>,
    /// Where a success's invocation record goes: a function of yours
    /// (`arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`, invoked asynchronously with the
    /// record as its event) or a state machine (`arn:aws:states:<region>:<account>:stateMachine:<name>`,
    /// started with the record as its input). It must exist, and not be the function itself.
    #[schema(max_length = 350, pattern = r"^arn:aws[a-zA-Z0-9-]*:(lambda|states):[a-z0-9-]*:[0-9]{12}:.+$")]
    pub on_success: Option<String>,
    /// Where a failure's invocation record goes (as `on_success`), after its last attempt or past its
    /// maximum age. The failed event stays in the failed-event store either way.
    #[schema(max_length = 350, pattern = r"^arn:aws[a-zA-Z0-9-]*:(lambda|states):[a-z0-9-]*:[0-9]{12}:.+$")]
    pub on_failure: Option<String>,
}

/// An alias.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AliasView {
    pub function: String,
    pub name: String,
    pub arn: String,
    #[serde(flatten)]
    pub routing: AliasRouting,
    pub description: String,
    pub revision: u64,
    pub created: String,
    pub modified: String,
}

impl AliasView {
    pub fn from_record(a: &AliasRecord, region: &str) -> Self {
        Self {
            function: a.function.to_string(),
            name: a.name.to_string(),
            arn: function_arn(region, &a.account, &a.function, Some(a.name.as_str())),
            routing: a.routing.clone(),
            description: a.description.clone(),
            revision: a.revision,
            created: format_rfc3339(a.created_ms),
            modified: format_rfc3339(a.modified_ms),
        }
    }
}

/// `PUT /v1/functions/{function}/aliases/{alias}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutAliasRequest {
    /// `$LATEST` or a published version number.
    #[schema(pattern = r"^(?:\$LATEST|\+?0*[1-9][0-9]{0,18})$")]
    pub version: String,
    /// A second published version (a number, not `version`) that receives `additional_weight` of the
    /// invocations; give both or neither.
    #[schema(pattern = r"^\+?0*[1-9][0-9]{0,18}$")]
    pub additional_version: Option<String>,
    /// The share of invocations that go to `additional_version`, between 0 and 1 (exclusive).
    #[schema(exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub additional_weight: Option<f64>,
    pub description: Option<String>,
    /// Move the alias only if it is still at this revision (the `revision` you read); otherwise 412
    /// `precondition_failed`, and nothing changes.
    pub revision: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AliasList {
    pub aliases: Vec<AliasView>,
}

/// An account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub id: String,
    pub name: String,
    pub is_admin: bool,
    pub created: String,
}

impl From<&AccountRecord> for AccountView {
    fn from(a: &AccountRecord) -> Self {
        Self { id: a.id.to_string(), name: a.name.clone(), is_admin: a.is_admin, created: format_rfc3339(a.created_ms) }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<AccountView>,
}

/// `POST /v1/accounts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccountRequest {
    /// 1-63 lowercase letters, digits or '-', starting with a letter or digit.
    #[schema(pattern = r"^[a-z0-9][a-z0-9-]{0,62}$")]
    pub name: String,
    #[serde(default)]
    pub is_admin: bool,
}

/// A new account and its credentials; the API key is shown only here.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedAccount {
    pub account: AccountView,
    pub credentials: Credentials,
}

/// What this node offers functions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    pub limits: NodeLimits,
    pub max_archive_bytes: u64,
    pub region: String,
    pub version: String,
    /// Threads serving the API and the instances' Runtime API (`stoke server --worker-threads`).
    #[serde(default)]
    pub serving_threads: usize,
    /// What the node's instances hold and what it has done since it started (every account's): shown to
    /// administrators only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<stoke_core::memory::NodeStatus>,
    /// The node's GPUs and what instances hold of each.
    #[serde(default)]
    pub gpus: Vec<GpuView>,
    /// Whether GPU shares (`gpu_memory_mb`, `gpu_percentage`) are enforced (an MPS daemon per GPU), or only
    /// placed.
    #[serde(default)]
    pub gpu_shares_enforced: bool,
}

/// One GPU of the node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GpuView {
    pub index: u32,
    /// `GPU-…` (empty where the node read only its device nodes).
    pub uuid: String,
    pub name: String,
    /// Its memory in MB (0: unknown, read without NVML).
    pub memory_mb: u64,
    /// The minor number of its `/dev/nvidiaN`.
    pub minor: u32,
    /// GPU memory and percent of its compute that instances hold now.
    pub reserved_mb: u64,
    pub reserved_percentage: u32,
    /// Instances holding it whole, and holding a share of it.
    pub whole_instances: usize,
    pub share_instances: usize,
}

impl From<stoke_store::NodeGpu> for GpuView {
    fn from(g: stoke_store::NodeGpu) -> GpuView {
        GpuView {
            index: g.index,
            uuid: g.uuid,
            name: g.name,
            memory_mb: g.memory_mb,
            minor: g.minor,
            reserved_mb: g.reserved_mb,
            reserved_percentage: g.reserved_percentage,
            whole_instances: g.whole_instances,
            share_instances: g.share_instances,
        }
    }
}

/// The node's recent past, for charts.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeHistory {
    /// Each point's span, in seconds.
    pub slot_s: u64,
    /// Up to an hour of points, oldest first; a node that started less than a slot ago has none.
    pub points: Vec<stoke_core::history::HistoryPoint>,
}

/// `{function}` of an operation on a function as a whole: its name or its ARN, without a qualifier.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct FunctionPath {
    /// The function's name (1-64 letters, digits, '-' or '_') or its unqualified ARN
    /// (`arn:aws:lambda:<region>:<account>:function:<name>`).
    #[param(
        max_length = 256,
        pattern = r"^(?:[0-9]{12}:function:|arn:aws[^:]*:lambda:[^:]*:[0-9]{12}:function:)?[A-Za-z0-9_-]{1,64}$"
    )]
    pub function: String,
}

/// `{function}` of an operation on what a reference names: `name`, `name:version`, `name:alias`,
/// `name:$LATEST`, or an ARN (qualified or not).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct FunctionRefPath {
    /// name, name:qualifier, or ARN (the qualifier: `$LATEST`, a version number, or an alias name of 1-128
    /// letters, digits, '-' or '_', not all digits).
    #[param(
        max_length = 256,
        pattern = r"^(?:[0-9]{12}:function:|arn:aws[^:]*:lambda:[^:]*:[0-9]{12}:function:)?[A-Za-z0-9_-]{1,64}(?::(?:\$LATEST|0*[1-9][0-9]{0,18}|[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*))?$"
    )]
    pub function: String,
}

/// `{version}` of a function's published version.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VersionPath {
    /// The version number (from 1).
    #[param(minimum = 1)]
    pub version: u64,
}

/// `{qualifier}` of a function's event invoke config.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct QualifierPath {
    /// `$LATEST`, a version number (from 1) or an alias name (1-128 letters, digits, '-' or '_', not all digits).
    #[param(
        min_length = 1,
        max_length = 128,
        pattern = r"^(?:\$LATEST|0*[1-9][0-9]{0,18}|[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*)$"
    )]
    pub qualifier: String,
}

/// `{alias}` of a function's alias.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AliasPath {
    /// The alias name: 1-128 letters, digits, '-' or '_', not all digits (that would read as a version).
    #[param(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*$")]
    pub alias: String,
}
