//! The Lambda-compatible API (`/2015-03-31/...`): Invoke and a control-plane subset, so boto3 and the aws
//! cli pointed at `--endpoint-url` deploy and invoke unchanged. A thin adapter over the same services as
//! `/v1`; requests are authenticated with SigV4 against the account's secret key.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use stoke_core::error::ErrorKind;
use stoke_core::reference::function_arn;
use stoke_core::time::format_lambda_timestamp;
use stoke_core::{AliasRouting, ConfigPatch, LifecycleState};
use stoke_scheduler::{InvokeRequest, Outcome};
use stoke_store::{AliasRecord, FunctionRecord, VersionRecord};

use super::{blocking, AppState};
use crate::accounts::Caller;
use crate::error::Classified;
use crate::registry::{AliasIf, FunctionIf, RegistryError, Resolved};
use crate::sigv4;

/// A Lambda-style error: `x-amzn-ErrorType` names the exception; the body carries the message.
#[derive(Debug)]
pub struct LambdaError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl LambdaError {
    pub(super) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into(), retry_after: None }
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidParameterValueException", message)
    }

    /// A request that breaks a constraint of Lambda's API model (a name's pattern, an enum, a length): AWS
    /// answers these with `ValidationException` before any business rule.
    pub(super) fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationException", message)
    }
}

/// The region an ARN names, when `name` is one (`arn:<partition>:lambda:<region>:…`).
fn arn_region(name: &str) -> Option<&str> {
    let mut parts = name.strip_prefix("arn:")?.splitn(4, ':');
    let (_partition, service, region) = (parts.next()?, parts.next()?, parts.next()?);
    (service == "lambda").then_some(region)
}

/// A function or layer named by an ARN of another region does not exist here, as on AWS: 404 before
/// anything else reads the request.
pub(super) async fn other_regions_are_not_found(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    let named = [("/functions/", "Function"), ("/layers/", "Layer")].iter().find_map(|(prefix, what)| {
        let rest = &path[path.find(prefix)? + prefix.len()..];
        Some((*what, stoke_core::percent::decode_str(rest.split('/').next()?)))
    });
    if let Some((what, name)) = named {
        if arn_region(&name).is_some_and(|region| region != s.region) {
            return LambdaError::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                format!("{what} not found: {name} (this server's region is {})", s.region),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// An IAM role's ARN, as Lambda's `Role` pattern takes it: `arn:<partition>:iam::<12 digits>:role/<path and name>`.
fn is_role_arn(role: &str) -> bool {
    let Some(rest) = role.strip_prefix("arn:") else { return false };
    let Some((partition, rest)) = rest.split_once(':') else { return false };
    let Some(rest) = rest.strip_prefix("iam::") else { return false };
    let Some((account, name)) = rest.split_once(":role/") else { return false };
    partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@-_/".contains(&b))
}

/// `Architectures`: one of `x86_64` or `arm64`, as Lambda's model allows.
fn check_architectures(architectures: Option<&[String]>) -> LambdaResult<()> {
    match architectures {
        None => Ok(()),
        Some([one]) if one == "x86_64" || one == "arm64" => Ok(()),
        Some(other) => Err(LambdaError::validation(format!(
            "1 validation error detected: Value {other:?} at 'architectures' failed to satisfy constraint: Member \
             must have length less than or equal to 1, and each member must be x86_64 or arm64"
        ))),
    }
}

impl LambdaError {
    /// Its status, exception and sentence (for the other AWS APIs that share SigV4 with Lambda's).
    pub(super) fn parts(self) -> (StatusCode, &'static str, String) {
        (self.status, self.kind, self.message)
    }
}

impl IntoResponse for LambdaError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({ "Type": "User", "message": self.message }))).into_response();
        if let Ok(v) = HeaderValue::from_str(self.kind) {
            resp.headers_mut().insert(HeaderName::from_static("x-amzn-errortype"), v);
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Every service error becomes Lambda's from its class: the exception its kind names, Lambda's wording
/// where clients match on it.
impl<E: Classified> From<E> for LambdaError {
    fn from(e: E) -> Self {
        let class = e.class();
        let (status, kind) = class.for_lambda().lambda();
        let kind = class.lambda_code.unwrap_or(kind);
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            kind,
            message: class.lambda_message.clone().unwrap_or_else(|| crate::error::message(&class, &e)),
            retry_after: class.retry_after_s,
        }
    }
}

impl From<super::error::ApiError> for LambdaError {
    fn from(e: super::error::ApiError) -> Self {
        let kind = e.lambda_code.unwrap_or_else(|| ErrorKind::from_status(e.status.as_u16()).lambda().1);
        Self { status: e.status, kind, message: e.message, retry_after: e.retry_after }
    }
}

pub(super) type LambdaResult<T> = Result<T, LambdaError>;

/// A SigV4-verified request: who signed it, with which key's scope, and its body.
pub struct ScopedSigned {
    pub(crate) caller: Caller,
    pub(crate) scope: crate::accounts::Scope,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl FromRequest<AppState> for ScopedSigned {
    type Rejection = LambdaError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, LambdaError> {
        let (parts, body) = req.into_parts();
        let limit = crate::invoke::MAX_PAYLOAD_BYTES * 2
            + usize::try_from(state.registry.archive_limits().max_archive_bytes).unwrap_or(usize::MAX) / 3 * 4;
        let body = axum::body::to_bytes(body, limit).await.map_err(|e| {
            if crate::transport::is_body_timeout(&*e.into_inner()) {
                LambdaError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "RequestTimeoutException",
                    "the request body did not arrive in time",
                )
            } else {
                LambdaError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestTooLargeException",
                    "the request body is too large",
                )
            }
        })?;
        let headers: Vec<(&str, &str)> =
            parts.headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))).collect();
        // Nested routers see the path without its prefix; the client signed the whole path.
        let uri = parts.extensions.get::<axum::extract::OriginalUri>().map_or(&parts.uri, |o| &o.0);
        let signed = sigv4::SignedRequest {
            method: parts.method.as_str(),
            raw_path: uri.path(),
            raw_query: uri.query(),
            headers,
            body: &body,
        };
        let now = crate::registry::now_ms() / 1000;
        let key =
            sigv4::verify(&signed, now, |k| state.accounts.scoped_secret_for(k).map(|(_, _, s)| s)).map_err(|e| {
                let kind = match e {
                    sigv4::SigError::Missing => "MissingAuthenticationTokenException",
                    sigv4::SigError::UnknownKey(_) => "UnrecognizedClientException",
                    _ => "InvalidSignatureException",
                };
                LambdaError::new(StatusCode::FORBIDDEN, kind, e.to_string())
            })?;
        let (account, scope, _) = state
            .accounts
            .scoped_secret_for(&key)
            .ok_or_else(|| LambdaError::new(StatusCode::FORBIDDEN, "UnrecognizedClientException", "unknown key"))?;
        Ok(Self { caller: Caller { account }, scope, headers: parts.headers, body })
    }
}

/// A request signed with an account's own key: a durable function's key is refused (it may only checkpoint
/// its function's executions, through [`ScopedSigned`]).
pub struct Signed {
    pub(crate) caller: Caller,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl FromRequest<AppState> for Signed {
    type Rejection = LambdaError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, LambdaError> {
        let ScopedSigned { caller, scope, headers, body } = ScopedSigned::from_request(req, state).await?;
        if scope != crate::accounts::Scope::Account {
            return Err(LambdaError::new(
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                "this key belongs to a durable function: it may only checkpoint and read the state of that \
                 function's durable executions",
            ));
        }
        Ok(Self { caller, headers, body })
    }
}

impl ScopedSigned {
    pub(super) fn json<T: serde::de::DeserializeOwned>(&self) -> LambdaResult<T> {
        parse_json(&self.body)
    }
}

impl Signed {
    pub(super) fn json<T: serde::de::DeserializeOwned>(&self) -> LambdaResult<T> {
        parse_json(&self.body)
    }
}

/// A request's JSON body (a blank one reads as `{}`).
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> LambdaResult<T> {
    let body = if stoke_core::json::is_blank(body) { &b"{}"[..] } else { body };
    serde_json::from_slice(body).map_err(|e| {
        LambdaError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            format!("could not parse request body: {e}"),
        )
    })
}

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/functions", get(list_functions).post(create_function))
        .route("/functions/", get(list_functions).post(create_function))
        .route("/functions/{name}", get(get_function).delete(delete_function))
        .route("/functions/{name}/configuration", get(get_configuration).put(update_configuration))
        .route("/functions/{name}/code", axum::routing::put(update_code))
        .route("/functions/{name}/versions", get(list_versions).post(publish_version))
        .route("/functions/{name}/aliases", get(list_aliases).post(create_alias))
        .route("/functions/{name}/aliases/{alias}", get(get_alias).put(update_alias).delete(delete_alias))
        .route("/functions/{name}/invocations", post(invoke))
        .layer(axum::middleware::from_fn_with_state(state, other_regions_are_not_found))
}

/// Lambda's event invoke config operations (`2019-09-25`): how a function's Event invocations of one
/// qualifier are retried and how old they may get.
pub fn event_config_routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/functions/{name}/event-invoke-config",
            get(get_event_config).put(put_event_config).post(update_event_config).delete(delete_event_config),
        )
        .route("/functions/{name}/event-invoke-config/list", get(list_event_configs))
        .layer(axum::middleware::from_fn_with_state(state, other_regions_are_not_found))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EventConfigIn {
    maximum_retry_attempts: Option<i64>,
    maximum_event_age_in_seconds: Option<i64>,
    destination_config: Option<Value>,
}

/// Lambda's `FunctionEventInvokeConfig`.
fn event_config_doc(c: &stoke_store::EventConfigRecord, region: &str) -> Value {
    let mut v = json!({
        "LastModified": c.modified_ms as f64 / 1000.0,
        "FunctionArn": function_arn(region, &c.account, &c.function, Some(&c.qualifier)),
        "DestinationConfig": {
            "OnSuccess": destination_doc(c.on_success.as_deref()),
            "OnFailure": destination_doc(c.on_failure.as_deref()),
        },
    });
    if let Some(n) = c.max_retries {
        v["MaximumRetryAttempts"] = json!(n);
    }
    if let Some(n) = c.max_age_s {
        v["MaximumEventAgeInSeconds"] = json!(n);
    }
    v
}

/// A destination as Lambda shows it: `{"Destination": arn}`, or `{}` when none.
fn destination_doc(arn: Option<&str>) -> Value {
    arn.map_or_else(|| json!({}), |a| json!({ "Destination": a }))
}

/// The destinations a `DestinationConfig` names (on success, on failure); an empty `Destination` is none.
fn destinations_in(config: &Value) -> LambdaResult<(Option<String>, Option<String>)> {
    let side = |key: &str| -> LambdaResult<Option<String>> {
        match config.get(key).and_then(|d| d.get("Destination")) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(LambdaError::validation(format!(
                "1 validation error detected: Value {other} at 'destinationConfig.{}.destination' failed to satisfy \
                 constraint: Member must be a string (an ARN)",
                if key == "OnSuccess" { "onSuccess" } else { "onFailure" }
            ))),
        }
    };
    Ok((side("OnSuccess")?, side("OnFailure")?))
}

/// The function and qualifier an event invoke config operation names (`$LATEST` when none).
fn config_target(name: &str, uri: &axum::http::Uri) -> LambdaResult<(String, String)> {
    let q: ListQuery = query(uri)?;
    let (unqualified, qualifier) = split_qualified(name, q.qualifier.as_deref())?;
    Ok((unqualified, qualifier.unwrap_or(stoke_core::Qualifier::Latest).to_string()))
}

async fn write_event_config(
    s: AppState,
    name: String,
    uri: axum::http::Uri,
    req: Signed,
    merge: bool,
) -> LambdaResult<Json<Value>> {
    let input: EventConfigIn = req.json()?;
    if input.maximum_retry_attempts.is_none()
        && input.maximum_event_age_in_seconds.is_none()
        && input.destination_config.is_none()
    {
        return Err(LambdaError::invalid("You must specify at least one of error handling or destination setting."));
    }
    let destinations = input.destination_config.as_ref().map(destinations_in).transpose()?;
    let fields =
        stoke_core::event::EventPolicy::validate(input.maximum_retry_attempts, input.maximum_event_age_in_seconds)
            .map_err(|(_, why)| LambdaError::validation(why))?;
    let (unqualified, qualifier) = config_target(&name, &uri)?;
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let out = blocking(move || {
        let name = registry.parse_function_name(&account, &unqualified)?;
        let config = registry.put_event_config(&account, &name, &qualifier, fields, destinations, merge)?;
        Ok(event_config_doc(&config, &region))
    })
    .await?;
    Ok(Json(out))
}

async fn put_event_config(
    State(s): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    req: Signed,
) -> LambdaResult<Json<Value>> {
    write_event_config(s, name, uri, req, false).await
}

async fn update_event_config(
    State(s): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    req: Signed,
) -> LambdaResult<Json<Value>> {
    write_event_config(s, name, uri, req, true).await
}

async fn get_event_config(
    State(s): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    req: Signed,
) -> LambdaResult<Json<Value>> {
    let (unqualified, qualifier) = config_target(&name, &uri)?;
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let out = blocking(move || {
        let name = registry.parse_function_name(&account, &unqualified)?;
        Ok(event_config_doc(&registry.get_event_config(&account, &name, &qualifier)?, &region))
    })
    .await?;
    Ok(Json(out))
}

async fn delete_event_config(
    State(s): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    req: Signed,
) -> LambdaResult<StatusCode> {
    let (unqualified, qualifier) = config_target(&name, &uri)?;
    let (registry, account) = (s.registry.clone(), req.caller.account.id);
    blocking(move || {
        let name = registry.parse_function_name(&account, &unqualified)?;
        Ok(registry.delete_event_config(&account, &name, &qualifier)?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_event_configs(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Signed,
) -> LambdaResult<Json<Value>> {
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let out = blocking(move || {
        let name = registry.parse_function_name(&account, &name)?;
        let configs: Vec<Value> =
            registry.list_event_configs(&account, &name)?.iter().map(|c| event_config_doc(c, &region)).collect();
        Ok(json!({ "FunctionEventInvokeConfigs": configs }))
    })
    .await?;
    Ok(Json(out))
}

/// Lambda's base64 `CodeSha256` as stoke's hex; what is not base64 stays as it is (and matches nothing).
fn sha_hex(b64: &str) -> String {
    match base64::engine::general_purpose::STANDARD.decode(b64) {
        Ok(bytes) => stoke_core::hex::encode(&bytes),
        Err(_) => b64.to_string(),
    }
}

pub(super) fn sha_base64(hex: &str) -> String {
    let bytes: Vec<u8> =
        (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Lambda's `FunctionConfiguration` for `$LATEST` or a version.
fn configuration(f: &FunctionRecord, v: Option<&VersionRecord>, region: &str) -> Value {
    let (config, code, version, modified, revision) = match v {
        Some(v) => (&v.config, v.code.clone(), v.version.to_string(), v.created_ms, format!("v{}", v.version)),
        None => (
            &f.config,
            f.code.clone().unwrap_or(stoke_store::CodeRef { sha256: String::new(), size: 0 }),
            "$LATEST".to_string(),
            f.modified_ms,
            f.revision.to_string(),
        ),
    };
    let arn = match v {
        Some(v) => function_arn(region, &f.account, &f.name, Some(&v.version.to_string())),
        None => function_arn(region, &f.account, &f.name, None),
    };
    let state = if f.state == LifecycleState::Blocked { "Inactive" } else { "Active" };
    let layers: Vec<Value> = config
        .layers
        .iter()
        .map(|l| {
            let arn = stoke_core::LayerRef::parse(l).map_or_else(
                |_| l.clone(),
                |r| stoke_core::layer::layer_arn(region, &f.account, &r.name, Some(r.version)),
            );
            json!({ "Arn": arn, "CodeSize": 0 })
        })
        .collect();
    let mut out = json!({
        "FunctionName": f.name.as_str(),
        "FunctionArn": arn,
        "Runtime": config.runtime,
        "Role": format!("arn:aws:iam::{}:role/stoke-function", f.account),
        "Handler": config.handler,
        "CodeSize": code.size,
        "CodeSha256": sha_base64(&code.sha256),
        "Description": config.description,
        "Timeout": config.timeout_s,
        "MemorySize": config.memory_mb,
        "EphemeralStorage": { "Size": config.ephemeral_storage_mb },
        "LastModified": format_lambda_timestamp(modified),
        "Version": version,
        "RevisionId": format!("{:08x}-0000-4000-8000-{:012x}", f.revision & 0xffff_ffff, revision.len() as u64 + f.revision),
        "Environment": { "Variables": config.environment },
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "State": state,
        "LastUpdateStatus": "Successful",
        "Layers": layers,
        "TracingConfig": { "Mode": "PassThrough" },
        "LoggingConfig": logging_config(&config.logging, f.name.as_str()),
    });
    if let Some(d) = config.durable {
        out["DurableConfig"] =
            json!({ "ExecutionTimeout": d.execution_timeout_s, "RetentionPeriodInDays": d.retention_days });
    }
    out
}

/// Lambda's `LoggingConfig` of a function (its levels only with JSON, as Lambda answers).
fn logging_config(l: &stoke_core::config::LoggingConfig, function: &str) -> Value {
    use stoke_core::config::LogFormat;
    let mut out = json!({ "LogGroup": l.group_of(function) });
    match l.format {
        LogFormat::Text => out["LogFormat"] = json!("Text"),
        LogFormat::Json => {
            out["LogFormat"] = json!("JSON");
            out["ApplicationLogLevel"] = json!(l.application_level.as_deref().unwrap_or("INFO"));
            out["SystemLogLevel"] = json!(l.system_level.as_deref().unwrap_or("INFO"));
        }
    }
    out
}

fn alias_configuration(a: &AliasRecord, region: &str) -> Value {
    let mut weights = serde_json::Map::new();
    if let (Some(v), Some(w)) = (&a.routing.additional_version, a.routing.additional_weight) {
        weights.insert(v.clone(), json!(w));
    }
    json!({
        "AliasArn": function_arn(region, &a.account, &a.function, Some(a.name.as_str())),
        "Name": a.name.as_str(),
        "FunctionVersion": a.routing.version,
        "Description": a.description,
        "RoutingConfig": { "AdditionalVersionWeights": weights },
        "RevisionId": format!("{:08x}-0000-4000-8000-000000000000", a.revision),
    })
}

fn configuration_of(r: &Resolved, region: &str) -> Value {
    configuration(&r.function, r.version.as_ref(), region)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnvironmentIn {
    variables: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EphemeralStorageIn {
    size: u32,
}

/// Lambda's `LoggingConfig` as a request gives it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LoggingConfigIn {
    log_format: Option<String>,
    application_log_level: Option<String>,
    system_log_level: Option<String>,
    log_group: Option<String>,
}

impl LoggingConfigIn {
    fn into_config(self) -> LambdaResult<stoke_core::config::LoggingConfig> {
        use stoke_core::config::LogFormat;
        let format = match self.log_format.as_deref() {
            None | Some("Text") => LogFormat::Text,
            Some("JSON") => LogFormat::Json,
            Some(other) => {
                return Err(LambdaError::validation(format!(
                    "1 validation error detected: Value '{other}' at 'loggingConfig.logFormat' failed to satisfy \
                     constraint: Member must satisfy enum value set: [JSON, Text]"
                )))
            }
        };
        Ok(stoke_core::config::LoggingConfig {
            format,
            application_level: self.application_log_level,
            system_level: self.system_log_level,
            log_group: self.log_group,
        })
    }
}

/// Lambda's `DurableConfig` as a request gives it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DurableConfigIn {
    execution_timeout: Option<u32>,
    retention_period_in_days: Option<u32>,
    #[serde(rename = "KMSKeyArn")]
    kms_key_arn: Option<String>,
}

impl DurableConfigIn {
    fn into_patch(self) -> LambdaResult<stoke_core::config::DurableConfigPatch> {
        use stoke_core::config::{MAX_DURABLE_EXECUTION_TIMEOUT_S, MAX_DURABLE_RETENTION_DAYS};
        if self.kms_key_arn.as_deref().is_some_and(|k| !k.is_empty()) {
            return Err(LambdaError::invalid(
                "DurableConfig.KMSKeyArn is not supported: stoke keeps durable state in its own store; leave \
                 KMSKeyArn out",
            ));
        }
        if let Some(timeout) = self.execution_timeout {
            check_range(timeout, "durableConfig.executionTimeout", 1, MAX_DURABLE_EXECUTION_TIMEOUT_S)?;
        }
        if let Some(days) = self.retention_period_in_days {
            check_range(days, "durableConfig.retentionPeriodInDays", 1, MAX_DURABLE_RETENTION_DAYS)?;
        }
        Ok(stoke_core::config::DurableConfigPatch {
            execution_timeout_s: self.execution_timeout,
            retention_days: self.retention_period_in_days,
        })
    }
}

/// A member out of its model range `min..=max`, in Lambda's own words (the API model's constraint on it).
fn check_range(value: u32, member: &str, min: u32, max: u32) -> LambdaResult<()> {
    let broken = if value < min {
        format!("greater than or equal to {min}")
    } else if value > max {
        format!("less than or equal to {max}")
    } else {
        return Ok(());
    };
    Err(LambdaError::validation(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must have \
         value {broken}"
    )))
}

/// The configuration fields Lambda's create and update requests share.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConfigIn {
    runtime: Option<String>,
    handler: Option<String>,
    memory_size: Option<u32>,
    timeout: Option<u32>,
    environment: Option<EnvironmentIn>,
    description: Option<String>,
    layers: Option<Vec<String>>,
    package_type: Option<String>,
    architectures: Option<Vec<String>>,
    role: Option<String>,
    ephemeral_storage: Option<EphemeralStorageIn>,
    durable_config: Option<DurableConfigIn>,
    logging_config: Option<LoggingConfigIn>,
    /// Update only if the function is still at this revision (UpdateFunctionConfiguration).
    revision_id: Option<String>,
}

impl ConfigIn {
    fn into_patch(self) -> LambdaResult<ConfigPatch> {
        check_architectures(self.architectures.as_deref())?;
        if let Some(role) = self.role.as_deref().filter(|r| !is_role_arn(r)) {
            return Err(LambdaError::validation(format!(
                "1 validation error detected: Value '{role}' at 'role' failed to satisfy constraint: Member must \
                 satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{{12}}:role/?[a-zA-Z_0-9+=,.@\\-_/]+"
            )));
        }
        if let Some(size) = self.ephemeral_storage.as_ref().map(|e| e.size) {
            use stoke_core::config::{MAX_EPHEMERAL_STORAGE_MB as MAX, MIN_EPHEMERAL_STORAGE_MB as MIN};
            check_range(size, "ephemeralStorage.size", MIN, MAX)?;
        }
        if self.package_type.as_deref().is_some_and(|p| p != "Zip") {
            return Err(LambdaError::invalid("PackageType Image is not supported: upload a zip (Code.ZipFile)"));
        }
        let durable = self.durable_config.map(DurableConfigIn::into_patch).transpose()?;
        let logging = self.logging_config.map(LoggingConfigIn::into_config).transpose()?;
        Ok(ConfigPatch {
            runtime: self.runtime,
            handler: self.handler,
            memory_mb: self.memory_size,
            timeout_s: self.timeout,
            environment: self.environment.map(|e| e.variables.unwrap_or_default()),
            description: self.description,
            layers: self.layers,
            ephemeral_storage_mb: self.ephemeral_storage.map(|e| e.size),
            durable,
            logging,
            ..Default::default()
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CodeIn {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
    image_uri: Option<String>,
}

pub(super) fn zip_bytes(zip: Option<&str>, what: &str) -> LambdaResult<Vec<u8>> {
    let zip = zip.ok_or_else(|| LambdaError::invalid(format!("{what} is required: the zip, base64-encoded")))?;
    base64::engine::general_purpose::STANDARD
        .decode(zip)
        .map_err(|e| LambdaError::invalid(format!("{what} is not valid base64: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateIn {
    function_name: String,
    code: CodeIn,
    publish: Option<bool>,
    #[serde(flatten)]
    config: ConfigIn,
}

async fn create_function(State(s): State<AppState>, req: Signed) -> LambdaResult<(StatusCode, Json<Value>)> {
    let input: CreateIn = req.json()?;
    if input.code.s3_bucket.is_some() || input.code.image_uri.is_some() {
        return Err(LambdaError::invalid(
            "stoke takes code as Code.ZipFile; S3 locations and images are not supported",
        ));
    }
    let code = zip_bytes(input.code.zip_file.as_deref(), "Code.ZipFile")?;
    let patch = input.config.into_patch()?;
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let publish = input.publish.unwrap_or(false);
    let out = blocking(move || {
        let name = registry.parse_function_name(&account, &input.function_name)?;
        let (f, version) = registry.create_function(&account, name.as_str(), patch, &code, publish)?;
        Ok(configuration(&f, version.as_ref(), &region))
    })
    .await
    .map_err(LambdaError::from)?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ListQuery {
    marker: Option<String>,
    max_items: Option<usize>,
    qualifier: Option<String>,
}

/// A Lambda operation's query parameters.
pub(super) fn query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> LambdaResult<T> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| LambdaError::invalid(format!("bad query string: {}", e.body_text())))
}

async fn list_functions(State(s): State<AppState>, uri: axum::http::Uri, req: Signed) -> LambdaResult<Json<Value>> {
    let q: ListQuery = query(&uri)?;
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let out = blocking(move || {
        let (page, next) =
            registry.list_functions(&account, q.marker.as_deref(), q.max_items.unwrap_or(50).clamp(1, 1000))?;
        Ok(json!({
            "Functions": page.iter().map(|f| configuration(f, None, &region)).collect::<Vec<_>>(),
            "NextMarker": next,
        }))
    })
    .await?;
    Ok(Json(out))
}

/// A function name (or ARN) that may carry a qualifier, plus the `Qualifier` parameter: the name without
/// the qualifier, and the qualifier they name together (as [`reference`] checks them).
fn split_qualified(name: &str, qualifier: Option<&str>) -> LambdaResult<(String, Option<stoke_core::Qualifier>)> {
    let wanted = reference(name, qualifier)?;
    let qualifier = stoke_core::FunctionRef::parse(&wanted).map_err(|e| LambdaError::validation(e.0))?.qualifier;
    let carries = stoke_core::FunctionRef::parse(name).is_ok_and(|r| r.qualifier.is_some());
    let unqualified = if carries { name.rsplit_once(':').map_or(name, |(n, _)| n) } else { name };
    Ok((unqualified.to_string(), qualifier))
}

/// `name` plus the `Qualifier` query parameter, as one reference.
/// A name or ARN that does not parse breaks the `FunctionName` pattern: `ValidationException`, as on AWS. A
/// qualified name with the same `Qualifier` is the same reference; a different one is refused.
fn reference(name: &str, qualifier: Option<&str>) -> LambdaResult<String> {
    let already = stoke_core::FunctionRef::parse(name).map_err(|e| LambdaError::validation(e.0))?.qualifier;
    match (qualifier, already) {
        (None | Some(""), _) => Ok(name.to_string()),
        (Some(q), Some(existing)) if existing.to_string() == q => Ok(name.to_string()),
        (Some(q), Some(existing)) => Err(LambdaError::invalid(format!(
            "The derived qualifier from the function name does not match the specified qualifier: {name} is \
             qualified with {existing}, the Qualifier parameter is {q}"
        ))),
        (Some(q), None) => Ok(format!("{name}:{q}")),
    }
}

async fn get_function(
    State(s): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    req: Signed,
) -> LambdaResult<Json<Value>> {
    let q: ListQuery = query(&uri)?;
    let r = reference(&name, q.qualifier.as_deref())?;
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let out = blocking(move || {
        let resolved = registry.resolve(&account, &r)?;
        let mut out = json!({
            "Configuration": configuration_of(&resolved, &region),
            "Code": { "RepositoryType": "S3", "Location": format!("/v1/functions/{}/code", resolved.function.name) },
            "Tags": {},
        });
        if let Some(limit) = resolved.config().concurrency_limit {
            out["Concurrency"] = json!({ "ReservedConcurrentExecutions": limit });
        }
        Ok(out)
    })
    .await?;
    Ok(Json(out))
}

async fn get_configuration(
    State(s): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    req: Signed,
) -> LambdaResult<Json<Value>> {
    let q: ListQuery = query(&uri)?;
    let r = reference(&name, q.qualifier.as_deref())?;
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let out = blocking(move || Ok(configuration_of(&registry.resolve(&account, &r)?, &region))).await?;
    Ok(Json(out))
}

async fn update_configuration(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Signed,
) -> LambdaResult<Json<Value>> {
    let input = req.json::<ConfigIn>()?;
    let cond = FunctionIf { revision: function_revision(input.revision_id.as_deref())?, ..Default::default() };
    let patch = input.into_patch()?;
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let out = blocking(move || {
        let name = registry.parse_function_name(&account, &name)?;
        Ok(configuration(&registry.update_config_if(&account, &name, patch, &cond)?, None, &region))
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateCodeIn {
    zip_file: Option<String>,
    publish: Option<bool>,
    architectures: Option<Vec<String>>,
    /// Update only if the function is still at this revision.
    revision_id: Option<String>,
}

async fn update_code(State(s): State<AppState>, Path(name): Path<String>, req: Signed) -> LambdaResult<Json<Value>> {
    let input: UpdateCodeIn = req.json()?;
    check_architectures(input.architectures.as_deref())?;
    let code = zip_bytes(input.zip_file.as_deref(), "ZipFile")?;
    let cond = FunctionIf { revision: function_revision(input.revision_id.as_deref())?, ..Default::default() };
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let out = blocking(move || {
        let name = registry.parse_function_name(&account, &name)?;
        let publish = input.publish.unwrap_or(false);
        let (f, version) = registry.update_code_if(&account, &name, &code, publish, &cond)?;
        Ok(configuration(&f, version.as_ref(), &region))
    })
    .await?;
    Ok(Json(out))
}

async fn delete_function(
    State(s): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    req: Signed,
) -> LambdaResult<StatusCode> {
    let q: ListQuery = query(&uri)?;
    // A qualified name (or ARN) and the Qualifier parameter name one version, as on AWS.
    let (unqualified, qualifier) = split_qualified(&name, q.qualifier.as_deref())?;
    let version = match qualifier {
        None => None,
        Some(stoke_core::Qualifier::Version(n)) => Some(n),
        Some(stoke_core::Qualifier::Latest) => {
            return Err(LambdaError::invalid("$LATEST version cannot be deleted without deleting the function."))
        }
        Some(stoke_core::Qualifier::Alias(a)) => {
            return Err(LambdaError::invalid(format!(
                "{a} is an alias: DeleteFunction deletes a function or one of its versions; delete an alias with \
                 DeleteAlias"
            )))
        }
    };
    let (registry, account) = (s.registry.clone(), req.caller.account.id);
    blocking(move || {
        let name = registry.parse_function_name(&account, &unqualified)?;
        match version {
            Some(n) => Ok(registry.delete_version(&account, &name, n)?),
            None => Ok(registry.delete_function(&account, &name)?),
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct PublishIn {
    code_sha256: Option<String>,
    description: Option<String>,
    /// Publish only if the function is still at this revision.
    revision_id: Option<String>,
}

async fn publish_version(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Signed,
) -> LambdaResult<(StatusCode, Json<Value>)> {
    let input: PublishIn = req.json()?;
    let cond = FunctionIf {
        code_sha256: input.code_sha256.as_deref().map(sha_hex),
        revision: function_revision(input.revision_id.as_deref())?,
    };
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let out = blocking(move || {
        let name = registry.parse_function_name(&account, &name)?;
        let p = registry.publish(&account, &name, input.description, &cond)?;
        Ok(configuration(&p.function, Some(&p.version), &region))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

async fn list_versions(
    State(s): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    req: Signed,
) -> LambdaResult<Json<Value>> {
    let q: ListQuery = query(&uri)?;
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let out = blocking(move || {
        let name = registry.parse_function_name(&account, &name)?;
        let f = registry.get_function(&account, &name)?;
        let after = q.marker.as_deref().and_then(|m| m.parse::<u64>().ok());
        let (page, next) = registry.list_versions(&account, &name, after, q.max_items.unwrap_or(50).clamp(1, 1000))?;
        let mut versions = Vec::new();
        if after.is_none() {
            versions.push(configuration(&f, None, &region));
        }
        versions.extend(page.iter().map(|v| configuration(&f, Some(v), &region)));
        Ok(json!({ "Versions": versions, "NextMarker": next.map(|n| n.to_string()) }))
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoutingIn {
    additional_version_weights: Option<BTreeMap<String, f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasIn {
    name: Option<String>,
    function_version: Option<String>,
    description: Option<String>,
    routing_config: Option<RoutingIn>,
    /// Update only if the alias is still at this revision (the `RevisionId` read).
    revision_id: Option<String>,
}

/// The function revision a `RevisionId` stoke gave out names (the low 32 bits, its first 8 hex digits).
fn function_revision(id: Option<&str>) -> LambdaResult<Option<u32>> {
    id.map(alias_revision).transpose().map(|r| r.map(|r| u32::try_from(r).unwrap_or(u32::MAX)))
}

/// The alias revision a `RevisionId` stoke gave out names (its first 8 hex digits).
fn alias_revision(id: &str) -> LambdaResult<u64> {
    id.split('-')
        .next()
        .filter(|h| h.len() == 8)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| LambdaError::invalid(format!("RevisionId {id:?} is not one this server gave out")))
}

fn routing(version: String, r: Option<RoutingIn>) -> LambdaResult<AliasRouting> {
    let weights = r.and_then(|r| r.additional_version_weights).unwrap_or_default();
    if weights.len() > 1 {
        return Err(LambdaError::invalid("RoutingConfig takes at most one additional version"));
    }
    let (extra, weight) = weights.into_iter().next().map_or((None, None), |(v, w)| (Some(v), Some(w)));
    Ok(AliasRouting { version, additional_version: extra, additional_weight: weight })
}

async fn create_alias(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Signed,
) -> LambdaResult<(StatusCode, Json<Value>)> {
    let input: AliasIn = req.json()?;
    let alias = input.name.ok_or_else(|| LambdaError::invalid("Name is required"))?;
    if !alias.is_empty() && alias.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LambdaError::validation(format!(
            "1 validation error detected: Value '{alias}' at 'name' failed to satisfy constraint: Member must \
             satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+) (a name of digits only would read as a version)"
        )));
    }
    let version = input.function_version.ok_or_else(|| LambdaError::invalid("FunctionVersion is required"))?;
    let routing = routing(version, input.routing_config)?;
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let out = blocking(move || {
        let name = registry.parse_function_name(&account, &name)?;
        Ok(alias_configuration(
            &registry.put_alias(&account, &name, &alias, routing, input.description, AliasIf::Absent)?,
            &region,
        ))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

async fn update_alias(
    State(s): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
    req: Signed,
) -> LambdaResult<Json<Value>> {
    let input: AliasIn = req.json()?;
    let only = input.revision_id.as_deref().map(alias_revision).transpose()?.map_or(AliasIf::Any, AliasIf::Revision);
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let out = blocking(move || {
        let name = registry.parse_function_name(&account, &name)?;
        let current = registry.get_alias(&account, &name, &alias)?;
        let version = input.function_version.unwrap_or(current.routing.version.clone());
        let routing = match input.routing_config {
            Some(r) => routing(version, Some(r))
                .map_err(|e| RegistryError::Validation(stoke_core::ValidationError::new("RoutingConfig", e.message)))?,
            None => AliasRouting { version, ..current.routing },
        };
        Ok(alias_configuration(
            &registry.put_alias(&account, &name, &alias, routing, input.description, only)?,
            &region,
        ))
    })
    .await?;
    Ok(Json(out))
}

async fn get_alias(
    State(s): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
    req: Signed,
) -> LambdaResult<Json<Value>> {
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let out = blocking(move || {
        let name = registry.parse_function_name(&account, &name)?;
        Ok(alias_configuration(&registry.get_alias(&account, &name, &alias)?, &region))
    })
    .await?;
    Ok(Json(out))
}

async fn list_aliases(State(s): State<AppState>, Path(name): Path<String>, req: Signed) -> LambdaResult<Json<Value>> {
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let out = blocking(move || {
        let name = registry.parse_function_name(&account, &name)?;
        let aliases = registry.list_aliases(&account, &name)?;
        Ok(json!({ "Aliases": aliases.iter().map(|a| alias_configuration(a, &region)).collect::<Vec<_>>(), "NextMarker": null }))
    })
    .await?;
    Ok(Json(out))
}

async fn delete_alias(
    State(s): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
    req: Signed,
) -> LambdaResult<StatusCode> {
    let (registry, account) = (s.registry.clone(), req.caller.account.id);
    blocking(move || {
        let name = registry.parse_function_name(&account, &name)?;
        Ok(registry.delete_alias(&account, &name, &alias)?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn invoke(
    State(s): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    req: Signed,
) -> LambdaResult<Response> {
    let q: ListQuery = query(&uri)?;
    let reference = reference(&name, q.qualifier.as_deref())?;
    let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
    let invocation_type = header("x-amz-invocation-type").unwrap_or("RequestResponse");
    let tail = header("x-amz-log-type") == Some("Tail");
    let client_context = match header("x-amz-client-context") {
        None => None,
        Some(b64) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| LambdaError::invalid("X-Amz-Client-Context must be base64-encoded JSON"))?;
            Some(String::from_utf8(raw).map_err(|_| LambdaError::invalid("X-Amz-Client-Context must be UTF-8 JSON"))?)
        }
    };
    let payload = crate::invoke::Invoker::payload(req.body.clone())?;
    let account = req.caller.account.id.clone();
    let target = s.invoker.check(&account, &reference).await?;
    if target.config.durable.is_some() {
        return invoke_durable(&s, &target, invocation_type, &req.headers, &payload).await;
    }
    match invocation_type {
        "RequestResponse" => {}
        "DryRun" => return Ok(StatusCode::NO_CONTENT.into_response()),
        "Event" => {
            let id = s.invoker.enqueue_event(&account, &reference, payload).await?;
            let mut resp = StatusCode::ACCEPTED.into_response();
            if let Ok(v) = HeaderValue::from_str(&id) {
                resp.headers_mut().insert(HeaderName::from_static("x-amzn-requestid"), v);
            }
            return Ok(resp);
        }
        other => {
            return Err(LambdaError::invalid(format!(
                "X-Amz-Invocation-Type {other:?} is not valid: use RequestResponse, Event or DryRun"
            )))
        }
    }
    let req = InvokeRequest { payload, client_context, want_log: tail, request_id: None, ..Default::default() };
    let (result, version) = s.invoker.invoke(&account, &reference, req).await?;
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set("x-amzn-requestid", result.request_id.clone());
    set("x-amz-executed-version", version);
    set("content-type", "application/json".into());
    if tail {
        let text = result.log.join("\n") + "\n";
        let tail = &text.as_bytes()[text.len().saturating_sub(4096)..];
        set("x-amz-log-result", base64::engine::general_purpose::STANDARD.encode(tail));
    }
    let body = match result.outcome {
        Outcome::Success(b) => b,
        Outcome::FunctionError { body, .. } => {
            set("x-amz-function-error", "Unhandled".into());
            body
        }
    };
    Ok((StatusCode::OK, headers, body).into_response())
}

/// Invoking a durable function starts an execution (Lambda's Invoke on a function with `DurableConfig`):
/// `Event` answers 202 at once, `RequestResponse` once it ends (at most 15 minutes), both with its ARN in
/// `X-Amz-Durable-Execution-Arn`.
async fn invoke_durable(
    s: &AppState,
    target: &std::sync::Arc<stoke_scheduler::InvokeTarget>,
    invocation_type: &str,
    headers: &HeaderMap,
    payload: &Bytes,
) -> LambdaResult<Response> {
    let name = headers.get("x-amz-durable-execution-name").and_then(|v| v.to_str().ok());
    let request_id = crate::workflows::uuid();
    match invocation_type {
        "DryRun" => return Ok(StatusCode::NO_CONTENT.into_response()),
        "Event" | "RequestResponse" => {}
        other => {
            return Err(LambdaError::invalid(format!(
                "X-Amz-Invocation-Type {other:?} is not valid: use RequestResponse, Event or DryRun"
            )))
        }
    }
    let started = s.durable.start(target, name, payload).await?;
    if invocation_type == "Event" {
        let resp = durable_header(StatusCode::ACCEPTED.into_response(), "x-amz-durable-execution-arn", &started.arn);
        return Ok(durable_header(resp, "x-amzn-requestid", &request_id));
    }
    let answer = s.durable.answer_sync(&target.account, &started, target).await?;
    let mut resp =
        (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, "application/json")], answer.body).into_response();
    if answer.error_type.is_some() {
        resp = durable_header(resp, "x-amz-function-error", "Unhandled");
    }
    let resp = durable_header(resp, "x-amz-durable-execution-arn", &started.arn);
    let resp = durable_header(resp, "x-amz-executed-version", &answer.version);
    Ok(durable_header(resp, "x-amzn-requestid", &request_id))
}

fn durable_header(mut resp: Response, name: &'static str, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(HeaderName::from_static(name), v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::{alias_revision, arn_region, check_architectures, is_role_arn, reference};

    #[test]
    fn an_alias_revision_id_reads_back_as_the_revision_it_was_made_from() {
        let id = format!("{:08x}-0000-4000-8000-000000000000", 42u64);
        assert_eq!(alias_revision(&id).unwrap(), 42);
        for bad in ["", "nothex00-0000", "123-0000-4000", "zzzzzzzz"] {
            assert!(alias_revision(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn qualifier_parameter_joins_names_and_arns() {
        assert_eq!(reference("f", Some("prod")).unwrap(), "f:prod");
        assert_eq!(reference("f", None).unwrap(), "f");
        assert_eq!(reference("123456789012:function:f", Some("2")).unwrap(), "123456789012:function:f:2");
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:f";
        assert_eq!(reference(arn, Some("prod")).unwrap(), format!("{arn}:prod"));
        assert!(reference("f:1", Some("prod")).is_err());
        assert!(reference(&format!("{arn}:1"), Some("prod")).is_err());
        // The same qualifier twice is one reference, as on AWS.
        assert_eq!(reference(&format!("{arn}:prod"), Some("prod")).unwrap(), format!("{arn}:prod"));
        assert_eq!(reference("f:$LATEST", Some("$LATEST")).unwrap(), "f:$LATEST");
        // A name that breaks FunctionName's pattern is a ValidationException.
        assert_eq!(reference("arn:aws:lambda:us-east-1:x:function", None).unwrap_err().kind, "ValidationException");
    }

    #[test]
    fn model_constraints_are_validation_exceptions() {
        for good in ["arn:aws:iam::123456789012:role/x", "arn:aws-cn:iam::123456789012:role/path/my-role_1"] {
            assert!(is_role_arn(good), "{good}");
        }
        for bad in [
            "",
            "role",
            "arn:aws:iam::123:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::123456789012:role/",
        ] {
            assert!(!is_role_arn(bad), "{bad}");
        }
        assert!(check_architectures(None).is_ok());
        assert!(check_architectures(Some(&["arm64".to_string()])).is_ok());
        for bad in [vec!["x86_64".to_string(), "arm64".to_string()], vec!["sparc".to_string()], vec![]] {
            assert_eq!(check_architectures(Some(&bad)).unwrap_err().kind, "ValidationException", "{bad:?}");
        }
        assert_eq!(arn_region("arn:aws:lambda:eu-west-1:123456789012:function:f"), Some("eu-west-1"));
        assert_eq!(arn_region("arn:aws:lambda:eu-west-1:123456789012:layer:l:1"), Some("eu-west-1"));
        assert_eq!(arn_region("f"), None);
        assert_eq!(arn_region("arn:aws:iam::1:role/x"), None);
    }
}
