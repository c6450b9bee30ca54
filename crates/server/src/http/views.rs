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
        }
    }
}

/// `POST /v1/functions`: a name, configuration fields, and the code archive.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateFunctionRequest {
    /// 1-64 letters, digits, '-' or '_'.
    pub name: String,
    #[serde(flatten)]
    pub config: ConfigPatch,
    /// The code archive (zip or tar.gz), base64-encoded.
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
    pub version: String,
    pub additional_version: Option<String>,
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
    /// What the node's instances hold and what it has done since it started (every account's): shown to
    /// administrators only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<stoke_core::memory::NodeStatus>,
}
