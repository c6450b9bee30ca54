//! `/v1/functions/...`: functions, code, versions, aliases, lifecycle actions.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use stoke_core::lifecycle::LifecycleEvent;
use stoke_core::{AliasRouting, ConfigPatch};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{from_value, parse_json, ApiJson, ApiQuery, Body};
use super::views::{
    AliasList, AliasPath, AliasView, CreateFunctionRequest, EventConfigList, EventConfigRequest, EventConfigView,
    FunctionList, FunctionPath, FunctionRefPath, FunctionView, PublishRequest, PutAliasRequest, QualifierPath,
    VersionList, VersionPath, VersionView,
};
use super::{blocking, AppState};
use crate::accounts::Caller;
use crate::registry::FunctionIf;

/// Page size when the request gives none.
const DEFAULT_PAGE: usize = 50;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Items per page, 1-1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of a function's versions: as [`ListQuery`], with a cursor that is a version number.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionListQuery {
    /// Items per page, 1-1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page (a version number).
    #[param(pattern = r"^\+?0*[0-9]{1,19}$")]
    cursor: Option<String>,
}

/// Splits a create request into name, configuration and archive bytes. Done by hand because the
/// configuration fields sit beside `name` and `code_base64`, and unknown fields must still be refused.
fn parse_create(body: &[u8]) -> ApiResult<(String, ConfigPatch, Vec<u8>)> {
    let mut fields: serde_json::Map<String, serde_json::Value> = parse_json(body)?;
    let mut take_string = |key: &str, hint: &str| -> ApiResult<String> {
        match fields.remove(key) {
            Some(serde_json::Value::String(s)) => Ok(s),
            Some(other) => {
                Err(ApiError::bad_request("invalid_parameter", format!("{key} must be a string, not {other}"))
                    .with_field(key))
            }
            None => {
                Err(ApiError::bad_request("invalid_parameter", format!("{key} is required: {hint}")).with_field(key))
            }
        }
    };
    let name = take_string("name", "the function's name")?;
    let code = take_string("code_base64", "the code archive (zip or tar.gz), base64-encoded")?;
    let code = base64::engine::general_purpose::STANDARD.decode(code.trim()).map_err(|e| {
        ApiError::bad_request("invalid_parameter", format!("code_base64 is not valid base64: {e}"))
            .with_field("code_base64")
    })?;
    let patch: ConfigPatch = from_value(serde_json::Value::Object(fields))?;
    Ok((name, patch, code))
}

/// Creates a function from configuration and a code archive.
#[utoipa::path(post, path = "/v1/functions", tag = "functions", request_body = CreateFunctionRequest,
    responses((status = 201, body = FunctionView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<FunctionView>)> {
    let (name, patch, code) = parse_create(&body)?;
    let registry = s.registry.clone();
    let record =
        blocking(move || Ok(registry.create_function(&caller.account.id, &name, patch, &code, false)?.0)).await?;
    Ok((StatusCode::CREATED, Json(FunctionView::from_function(&record, &s.region))))
}

/// Lists the account's functions, a page at a time.
#[utoipa::path(get, path = "/v1/functions", tag = "functions", params(ListQuery),
    responses((status = 200, body = FunctionList), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<FunctionList>> {
    let registry = s.registry.clone();
    let account = caller.account.id.clone();
    let (page, next) = blocking(move || {
        Ok(registry.list_functions(&caller.account.id, q.cursor.as_deref(), q.limit.unwrap_or(DEFAULT_PAGE))?)
    })
    .await?;
    let activity = s.invoker.scheduler().activity(&account);
    Ok(Json(FunctionList {
        functions: page
            .iter()
            .map(|f| FunctionView {
                activity: activity.get(f.name.as_str()).copied(),
                ..FunctionView::from_function(f, &s.region)
            })
            .collect(),
        next_cursor: next,
    }))
}

/// A function by reference: `name`, `name:version`, `name:alias`, or an ARN.
#[utoipa::path(get, path = "/v1/functions/{function}", tag = "functions",
    params(FunctionRefPath),
    responses((status = 200, body = FunctionView), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
) -> ApiResult<Json<FunctionView>> {
    let (registry, tuner) = (s.registry.clone(), s.tuner.clone());
    let account = caller.account.id.clone();
    let (resolved, last_tune) = blocking(move || {
        let resolved = registry.resolve(&caller.account.id, &function)?;
        let tune = tuner.latest(&caller.account.id, &resolved.function.name);
        Ok((resolved, tune))
    })
    .await?;
    let activity = s.invoker.scheduler().activity(&account).get(resolved.function.name.as_str()).copied();
    Ok(Json(FunctionView { last_tune, activity, ..FunctionView::from_resolved(&resolved, &s.region) }))
}

/// Changes `$LATEST`'s configuration; absent fields keep their value.
#[utoipa::path(patch, path = "/v1/functions/{function}", tag = "functions", request_body = ConfigPatch,
    params(FunctionPath),
    responses((status = 200, body = FunctionView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_config(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
    ApiJson(patch): ApiJson<ConfigPatch>,
) -> ApiResult<Json<FunctionView>> {
    let registry = s.registry.clone();
    let record = blocking(move || {
        let name = registry.parse_function_name(&caller.account.id, &function)?;
        Ok(registry.update_config(&caller.account.id, &name, patch)?)
    })
    .await?;
    Ok(Json(FunctionView::from_function(&record, &s.region)))
}

/// Deletes a function with all its versions, aliases and archives.
#[utoipa::path(delete, path = "/v1/functions/{function}", tag = "functions",
    params(FunctionPath),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(State(s): State<AppState>, caller: Caller, Path(function): Path<String>) -> ApiResult<StatusCode> {
    let registry = s.registry.clone();
    blocking(move || {
        let name = registry.parse_function_name(&caller.account.id, &function)?;
        Ok(registry.delete_function(&caller.account.id, &name)?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces `$LATEST`'s code with the request body (a zip or tar.gz archive).
#[utoipa::path(put, path = "/v1/functions/{function}/code", tag = "functions",
    request_body(content = Vec<u8>, content_type = "application/zip", description = "zip or tar.gz archive"),
    params(FunctionPath),
    responses((status = 200, body = FunctionView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn update_code(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<FunctionView>> {
    let registry = s.registry.clone();
    let record = blocking(move || {
        let name = registry.parse_function_name(&caller.account.id, &function)?;
        Ok(registry.update_code(&caller.account.id, &name, &body, false)?.0)
    })
    .await?;
    Ok(Json(FunctionView::from_function(&record, &s.region)))
}

/// Downloads the code archive of a reference (always a zip).
#[utoipa::path(get, path = "/v1/functions/{function}/code", tag = "functions",
    params(FunctionRefPath),
    responses((status = 200, content_type = "application/zip", body = Vec<u8>), (status = 404, body = ErrorBody)))]
pub async fn download_code(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let registry = s.registry.clone();
    let (resolved, bytes) = blocking(move || Ok(registry.read_code(&caller.account.id, &function)?)).await?;
    let sha = resolved.code_sha256();
    Ok((
        [(header::CONTENT_TYPE, "application/zip".to_string()), (header::ETAG, format!("\"{sha}\""))],
        Bytes::from(bytes),
    ))
}

/// Publishes `$LATEST` as a new immutable version (or returns the version it already equals).
#[utoipa::path(post, path = "/v1/functions/{function}/versions", tag = "versions", request_body = PublishRequest,
    params(FunctionPath),
    responses((status = 201, body = VersionView), (status = 409, body = ErrorBody)))]
pub async fn publish(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
    ApiJson(req): ApiJson<PublishRequest>,
) -> ApiResult<(StatusCode, Json<VersionView>)> {
    let registry = s.registry.clone();
    let version = blocking(move || {
        let name = registry.parse_function_name(&caller.account.id, &function)?;
        Ok(registry.publish(&caller.account.id, &name, req.description, &FunctionIf::default())?.version)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(VersionView::from_record(&version, &s.region))))
}

/// Deletes a published version and its archive; refused (409) while an alias routes to it.
#[utoipa::path(delete, path = "/v1/functions/{function}/versions/{version}", tag = "versions",
    params(FunctionPath, VersionPath),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn delete_version(
    State(s): State<AppState>,
    caller: Caller,
    Path((function, version)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let number = version.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_parameter",
            format!("version {version:?} is not a version number (1 or more); $LATEST goes only with the function"),
        )
        .with_field("version")
    })?;
    let registry = s.registry.clone();
    blocking(move || {
        let name = registry.parse_function_name(&caller.account.id, &function)?;
        Ok(registry.delete_version(&caller.account.id, &name, number)?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A function's event invoke configs (how its Event invocations of each qualifier are retried).
#[utoipa::path(get, path = "/v1/functions/{function}/event-configs", tag = "events", params(FunctionPath),
    responses((status = 200, body = EventConfigList), (status = 404, body = ErrorBody)))]
pub async fn list_event_configs(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
) -> ApiResult<Json<EventConfigList>> {
    let registry = s.registry.clone();
    let configs = blocking(move || {
        let name = registry.parse_function_name(&caller.account.id, &function)?;
        Ok(registry.list_event_configs(&caller.account.id, &name)?)
    })
    .await?;
    Ok(Json(EventConfigList { configs: configs.iter().map(EventConfigView::from_record).collect() }))
}

/// Sets the event invoke config of one qualifier (which must exist); fields left out take Lambda's defaults.
#[utoipa::path(put, path = "/v1/functions/{function}/event-configs/{qualifier}", tag = "events",
    request_body = EventConfigRequest, params(FunctionPath, QualifierPath),
    responses((status = 200, body = EventConfigView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_event_config(
    State(s): State<AppState>,
    caller: Caller,
    Path((function, qualifier)): Path<(String, String)>,
    ApiJson(req): ApiJson<EventConfigRequest>,
) -> ApiResult<Json<EventConfigView>> {
    let fields = stoke_core::event::EventPolicy::validate(req.max_retries, req.max_age_s).map_err(|(which, why)| {
        let field = match which {
            stoke_core::event::EventConfigField::MaxRetries => "max_retries",
            stoke_core::event::EventConfigField::MaxAge => "max_age_s",
        };
        ApiError::bad_request("invalid_parameter", why).with_field(field)
    })?;
    let registry = s.registry.clone();
    let config = blocking(move || {
        let name = registry.parse_function_name(&caller.account.id, &function)?;
        let destinations = Some((req.on_success, req.on_failure));
        Ok(registry.put_event_config(&caller.account.id, &name, &qualifier, fields, destinations, false)?)
    })
    .await?;
    Ok(Json(EventConfigView::from_record(&config)))
}

/// Removes the event invoke config of one qualifier (its Event invocations follow Lambda's defaults again).
#[utoipa::path(delete, path = "/v1/functions/{function}/event-configs/{qualifier}", tag = "events",
    params(FunctionPath, QualifierPath), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_event_config(
    State(s): State<AppState>,
    caller: Caller,
    Path((function, qualifier)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let registry = s.registry.clone();
    blocking(move || {
        let name = registry.parse_function_name(&caller.account.id, &function)?;
        Ok(registry.delete_event_config(&caller.account.id, &name, &qualifier)?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists published versions, oldest first.
#[utoipa::path(get, path = "/v1/functions/{function}/versions", tag = "versions", params(FunctionPath, VersionListQuery),
    responses((status = 200, body = VersionList), (status = 404, body = ErrorBody)))]
pub async fn list_versions(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
    ApiQuery(q): ApiQuery<VersionListQuery>,
) -> ApiResult<Json<VersionList>> {
    let after = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(c.parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("cursor {c:?} is not valid here: pass the next_cursor of the previous page"),
            )
        })?),
    };
    let registry = s.registry.clone();
    let (page, next) = blocking(move || {
        let name = registry.parse_function_name(&caller.account.id, &function)?;
        Ok(registry.list_versions(&caller.account.id, &name, after, q.limit.unwrap_or(DEFAULT_PAGE))?)
    })
    .await?;
    Ok(Json(VersionList {
        versions: page.iter().map(|v| VersionView::from_record(v, &s.region)).collect(),
        next_cursor: next.map(|n| n.to_string()),
    }))
}

/// Lists a function's aliases.
#[utoipa::path(get, path = "/v1/functions/{function}/aliases", tag = "aliases",
    params(FunctionPath),
    responses((status = 200, body = AliasList), (status = 404, body = ErrorBody)))]
pub async fn list_aliases(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
) -> ApiResult<Json<AliasList>> {
    let registry = s.registry.clone();
    let aliases = blocking(move || {
        let name = registry.parse_function_name(&caller.account.id, &function)?;
        Ok(registry.list_aliases(&caller.account.id, &name)?)
    })
    .await?;
    Ok(Json(AliasList { aliases: aliases.iter().map(|a| AliasView::from_record(a, &s.region)).collect() }))
}

/// An alias.
#[utoipa::path(get, path = "/v1/functions/{function}/aliases/{alias}", tag = "aliases",
    params(FunctionPath, AliasPath),
    responses((status = 200, body = AliasView), (status = 404, body = ErrorBody)))]
pub async fn get_alias(
    State(s): State<AppState>,
    caller: Caller,
    Path((function, alias)): Path<(String, String)>,
) -> ApiResult<Json<AliasView>> {
    let registry = s.registry.clone();
    let record = blocking(move || {
        let name = registry.parse_function_name(&caller.account.id, &function)?;
        Ok(registry.get_alias(&caller.account.id, &name, &alias)?)
    })
    .await?;
    Ok(Json(AliasView::from_record(&record, &s.region)))
}

/// Creates an alias or moves it to another version.
#[utoipa::path(put, path = "/v1/functions/{function}/aliases/{alias}", tag = "aliases", request_body = PutAliasRequest,
    params(FunctionPath, AliasPath),
    responses((status = 200, body = AliasView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub async fn put_alias(
    State(s): State<AppState>,
    caller: Caller,
    Path((function, alias)): Path<(String, String)>,
    ApiJson(req): ApiJson<PutAliasRequest>,
) -> ApiResult<Json<AliasView>> {
    let registry = s.registry.clone();
    let record = blocking(move || {
        let name = registry.parse_function_name(&caller.account.id, &function)?;
        let routing = AliasRouting {
            version: req.version,
            additional_version: req.additional_version,
            additional_weight: req.additional_weight,
        };
        let only = req.revision.map_or(crate::registry::AliasIf::Any, crate::registry::AliasIf::Revision);
        Ok(registry.put_alias(&caller.account.id, &name, &alias, routing, req.description, only)?)
    })
    .await?;
    Ok(Json(AliasView::from_record(&record, &s.region)))
}

/// Deletes an alias.
#[utoipa::path(delete, path = "/v1/functions/{function}/aliases/{alias}", tag = "aliases",
    params(FunctionPath, AliasPath),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_alias(
    State(s): State<AppState>,
    caller: Caller,
    Path((function, alias)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let registry = s.registry.clone();
    blocking(move || {
        let name = registry.parse_function_name(&caller.account.id, &function)?;
        Ok(registry.delete_alias(&caller.account.id, &name, &alias)?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn lifecycle(
    s: AppState,
    caller: Caller,
    function: String,
    event: LifecycleEvent,
) -> ApiResult<Json<FunctionView>> {
    let registry = s.registry.clone();
    let record = blocking(move || {
        let name = registry.parse_function_name(&caller.account.id, &function)?;
        Ok(registry.lifecycle(&caller.account.id, &name, event)?)
    })
    .await?;
    Ok(Json(FunctionView::from_function(&record, &s.region)))
}

/// Blocks a function: invocations are refused until it is unblocked.
#[utoipa::path(post, path = "/v1/functions/{function}/block", tag = "lifecycle",
    params(FunctionPath),
    responses((status = 200, body = FunctionView), (status = 409, body = ErrorBody)))]
pub async fn block(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
) -> ApiResult<Json<FunctionView>> {
    lifecycle(s, caller, function, LifecycleEvent::Block).await
}

/// Unblocks a blocked function.
#[utoipa::path(post, path = "/v1/functions/{function}/unblock", tag = "lifecycle",
    params(FunctionPath),
    responses((status = 200, body = FunctionView), (status = 409, body = ErrorBody)))]
pub async fn unblock(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
) -> ApiResult<Json<FunctionView>> {
    lifecycle(s, caller, function, LifecycleEvent::Unblock).await
}

/// Retires a function: it refuses everything and is deleted once in-flight work drains.
#[utoipa::path(post, path = "/v1/functions/{function}/retire", tag = "lifecycle",
    params(FunctionPath),
    responses((status = 200, body = FunctionView), (status = 409, body = ErrorBody)))]
pub async fn retire(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
) -> ApiResult<Json<FunctionView>> {
    lifecycle(s, caller, function, LifecycleEvent::Retire).await
}
