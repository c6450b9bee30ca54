//! HTTP triggers: `/v1/urls` and `/v1/routes` manage them; `/u/{id}/…` and `/gw/{account}/…` serve them.
//! The serving handlers translate between HTTP and the pure gateway rules (`stoke_core::gateway`) and call
//! the same invoke service as every other invocation.

use std::net::SocketAddr;

use axum::body::Body as HttpBody;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use stoke_core::gateway::{Cors, TriggerAuth, MAX_BODY_BYTES};
use stoke_core::AccountId;
use stoke_store::{TriggerKind, TriggerRecord};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::ApiJson;
use super::{blocking, AppState};
use crate::accounts::Caller;
use crate::triggers::{Matched, NewTrigger, TriggerPatch, TriggerReply, TriggerRequest};

/// A function URL or a route.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerView {
    pub id: String,
    /// `url` or `route`.
    pub kind: String,
    /// Where to send requests: the URL itself, or the gateway base the route's path is appended to.
    pub url: String,
    /// The route key (`GET /pets/{id}`); routes only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The function reference requests invoke.
    pub function: String,
    pub auth: TriggerAuth,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    pub created_at: String,
}

impl TriggerView {
    fn new(t: &TriggerRecord, base: &str) -> Self {
        let (kind, url, route) = match &t.kind {
            TriggerKind::Url => ("url", format!("{base}/u/{}/", t.id), None),
            TriggerKind::Route { key, .. } => ("route", format!("{base}/gw/{}", t.account), Some(key.clone())),
        };
        TriggerView {
            id: t.id.clone(),
            kind: kind.into(),
            url,
            route,
            function: t.reference(),
            auth: t.auth,
            cors: t.cors.clone(),
            created_at: stoke_core::time::format_rfc3339(t.created_ms),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerList {
    pub triggers: Vec<TriggerView>,
}

/// A function URL to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUrlRequest {
    /// `name`, `name:alias`, `name:version` or a function ARN, of a function (and qualifier) that exists.
    #[schema(
        max_length = 256,
        pattern = r"^(?:[0-9]{12}:function:|arn:aws[^:]*:lambda:[^:]*:[0-9]{12}:function:)?[A-Za-z0-9_-]{1,64}(?::(?:\$LATEST|0*[1-9][0-9]{0,18}|[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*))?$"
    )]
    function: String,
    /// `key` (default): callers send the account's API key; `none`: public.
    #[serde(default)]
    auth: TriggerAuth,
    #[serde(default)]
    cors: Option<Cors>,
}

/// A route to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRouteRequest {
    /// `METHOD /path`, METHOD one of GET POST PUT PATCH DELETE HEAD OPTIONS ANY (in any case); `{param}`
    /// matches one segment, a final `{name+}` the rest of the path. Each parameter name once, the path at
    /// most 512 bytes, without a trailing `/`.
    #[schema(
        pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:[Aa][Nn][Yy]|[Gg][Ee][Tt]|[Pp][Oo][Ss][Tt]|[Pp][Uu][Tt]|[Pp][Aa][Tt][Cc][Hh]|[Dd][Ee][Ll][Ee][Tt][Ee]|[Hh][Ee][Aa][Dd]|[Oo][Pp][Tt][Ii][Oo][Nn][Ss])[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/(?:(?:(?:\{[A-Za-z0-9_-]+\}|[^/{}?# \x00-\x1f\x7f-\x9f\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+)/)*(?:(?:\{[A-Za-z0-9_-]+\}|[^/{}?# \x00-\x1f\x7f-\x9f\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+)|\{[A-Za-z0-9_-]+\+\}))?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    route: String,
    /// `name`, `name:alias`, `name:version` or a function ARN, of a function (and qualifier) that exists.
    #[schema(
        max_length = 256,
        pattern = r"^(?:[0-9]{12}:function:|arn:aws[^:]*:lambda:[^:]*:[0-9]{12}:function:)?[A-Za-z0-9_-]{1,64}(?::(?:\$LATEST|0*[1-9][0-9]{0,18}|[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*))?$"
    )]
    function: String,
    #[serde(default)]
    auth: TriggerAuth,
    #[serde(default)]
    cors: Option<Cors>,
}

/// Settings to change; absent fields stay as they are, `"cors": null` removes the CORS settings.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTriggerRequest {
    #[serde(default)]
    auth: Option<TriggerAuth>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Cors>)]
    cors: Option<Option<Cors>>,
}

/// A field that is present (even as `null`) becomes `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `http://host` as the client addressed the server.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// Creates a function URL.
#[utoipa::path(post, path = "/v1/urls", tag = "triggers", request_body = CreateUrlRequest,
    responses((status = 201, body = TriggerView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_url(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateUrlRequest>,
) -> ApiResult<(StatusCode, Json<TriggerView>)> {
    let new = NewTrigger { function: req.function, route: None, auth: req.auth, cors: req.cors };
    create(s, caller, headers, new).await
}

/// Creates a route of the account's gateway.
#[utoipa::path(post, path = "/v1/routes", tag = "triggers", request_body = CreateRouteRequest,
    responses((status = 201, body = TriggerView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_route(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateRouteRequest>,
) -> ApiResult<(StatusCode, Json<TriggerView>)> {
    let new = NewTrigger { function: req.function, route: Some(req.route), auth: req.auth, cors: req.cors };
    create(s, caller, headers, new).await
}

async fn create(
    s: AppState,
    caller: Caller,
    headers: HeaderMap,
    new: NewTrigger,
) -> ApiResult<(StatusCode, Json<TriggerView>)> {
    let registry = s.registry.clone();
    let record = blocking(move || Ok(registry.create_trigger(&caller.account.id, new)?)).await?;
    Ok((StatusCode::CREATED, Json(TriggerView::new(&record, &base_url(&headers)))))
}

async fn list(s: AppState, caller: Caller, headers: HeaderMap, routes: bool) -> ApiResult<Json<TriggerList>> {
    let registry = s.registry.clone();
    let records = blocking(move || Ok(registry.list_triggers(&caller.account.id, routes)?)).await?;
    let base = base_url(&headers);
    Ok(Json(TriggerList { triggers: records.iter().map(|t| TriggerView::new(t, &base)).collect() }))
}

/// The account's function URLs.
#[utoipa::path(get, path = "/v1/urls", tag = "triggers", responses((status = 200, body = TriggerList)))]
pub async fn list_urls(State(s): State<AppState>, caller: Caller, headers: HeaderMap) -> ApiResult<Json<TriggerList>> {
    list(s, caller, headers, false).await
}

/// The account's routes.
#[utoipa::path(get, path = "/v1/routes", tag = "triggers", responses((status = 200, body = TriggerList)))]
pub async fn list_routes(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> ApiResult<Json<TriggerList>> {
    list(s, caller, headers, true).await
}

/// Reads one trigger of the kind the path names (a URL id under `/v1/routes` is not found).
async fn get_of_kind(s: &AppState, caller: &Caller, id: String, route: bool) -> ApiResult<TriggerRecord> {
    let (registry, account) = (s.registry.clone(), caller.account.id.clone());
    let record = blocking(move || Ok(registry.get_trigger(&account, &id)?)).await?;
    if record.is_route() != route {
        let what = if route { "route" } else { "function URL" };
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{} is not a {what}; list them with GET /v1/{}", record.id, if route { "routes" } else { "urls" }),
        ));
    }
    Ok(record)
}

/// One function URL.
#[utoipa::path(get, path = "/v1/urls/{id}", tag = "triggers",
    params(("id" = String, Path, description = "the function URL's id")),
    responses((status = 200, body = TriggerView), (status = 404, body = ErrorBody)))]
pub async fn get_url(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<TriggerView>> {
    Ok(Json(TriggerView::new(&get_of_kind(&s, &caller, id, false).await?, &base_url(&headers))))
}

/// One route.
#[utoipa::path(get, path = "/v1/routes/{id}", tag = "triggers",
    params(("id" = String, Path, description = "the route's id")),
    responses((status = 200, body = TriggerView), (status = 404, body = ErrorBody)))]
pub async fn get_route(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<TriggerView>> {
    Ok(Json(TriggerView::new(&get_of_kind(&s, &caller, id, true).await?, &base_url(&headers))))
}

async fn patch(
    s: AppState,
    caller: Caller,
    headers: HeaderMap,
    id: String,
    route: bool,
    req: PatchTriggerRequest,
) -> ApiResult<Json<TriggerView>> {
    get_of_kind(&s, &caller, id.clone(), route).await?;
    let registry = s.registry.clone();
    let patch = TriggerPatch { auth: req.auth, cors: req.cors };
    let record = blocking(move || Ok(registry.update_trigger(&caller.account.id, &id, patch)?)).await?;
    Ok(Json(TriggerView::new(&record, &base_url(&headers))))
}

/// Changes a function URL's auth or CORS settings.
#[utoipa::path(patch, path = "/v1/urls/{id}", tag = "triggers", request_body = PatchTriggerRequest,
    params(("id" = String, Path, description = "the function URL's id")),
    responses((status = 200, body = TriggerView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn patch_url(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PatchTriggerRequest>,
) -> ApiResult<Json<TriggerView>> {
    patch(s, caller, headers, id, false, req).await
}

/// Changes a route's auth or CORS settings.
#[utoipa::path(patch, path = "/v1/routes/{id}", tag = "triggers", request_body = PatchTriggerRequest,
    params(("id" = String, Path, description = "the route's id")),
    responses((status = 200, body = TriggerView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn patch_route(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PatchTriggerRequest>,
) -> ApiResult<Json<TriggerView>> {
    patch(s, caller, headers, id, true, req).await
}

async fn delete(s: AppState, caller: Caller, id: String, route: bool) -> ApiResult<StatusCode> {
    get_of_kind(&s, &caller, id.clone(), route).await?;
    let registry = s.registry.clone();
    blocking(move || Ok(registry.delete_trigger(&caller.account.id, &id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a function URL; requests to it get 404 from then on.
#[utoipa::path(delete, path = "/v1/urls/{id}", tag = "triggers",
    params(("id" = String, Path, description = "the function URL's id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_url(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    delete(s, caller, id, false).await
}

/// Deletes a route; requests it matched go to the next most specific route, or get 404.
#[utoipa::path(delete, path = "/v1/routes/{id}", tag = "triggers",
    params(("id" = String, Path, description = "the route's id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_route(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    delete(s, caller, id, true).await
}

// ---- serving -------------------------------------------------------------------------------------------

/// An error the gateway answers before any function runs (no trigger matched).
fn trigger_error(status: StatusCode, code: &str, message: String) -> Response {
    respond(TriggerReply::error(status.as_u16(), code, message, None))
}

fn respond(reply: TriggerReply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut resp = (status, HttpBody::from(reply.body)).into_response();
    for (name, value) in &reply.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

/// `ANY /u/{id}` and `ANY /u/{id}/{*path}`: a function URL.
pub async fn serve_url(State(s): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let rest = path.strip_prefix("/u/").unwrap_or_default();
    let (id, sub) = rest.split_once('/').map_or((rest, "/".to_string()), |(id, p)| (id, format!("/{p}")));
    match s.gateway.url(id).await {
        Ok(Some(matched)) => serve(s, matched, sub, req).await,
        Ok(None) => {
            trigger_error(StatusCode::NOT_FOUND, "not_found", format!("there is no function URL {id} on this server"))
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `ANY /gw/{account}` and `ANY /gw/{account}/{*path}`: the account's routes.
pub async fn serve_route(State(s): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let rest = path.strip_prefix("/gw/").unwrap_or_default();
    let (account, sub) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let Ok(account) = AccountId::parse(account) else {
        return trigger_error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{account:?} is not an account id; gateway URLs are /gw/<account-id>/<path>"),
        );
    };
    match s.gateway.route(&account, req.method().as_str(), &sub).await {
        Ok(Some(matched)) => serve(s, matched, sub, req).await,
        Ok(None) => trigger_error(
            StatusCode::NOT_FOUND,
            "no_route",
            format!("no route of account {account} matches {} {sub}; list them with `stoke route ls`", req.method()),
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Reads the request off the wire and hands it to the gateway: first to admit (preflight, auth), then,
/// with its body, to call the function.
async fn serve(s: AppState, matched: Matched, sub_path: String, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let request = TriggerRequest {
        method: parts.method.as_str().to_string(),
        sub_path,
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect(),
        source_ip: parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()),
        protocol: format!("{:?}", parts.version),
    };
    if let Some(reply) = s.gateway.admit(&matched, &request) {
        return respond(reply);
    }
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => respond(s.gateway.call(&matched, request, body).await),
        Err(_) => respond(TriggerReply::body_too_large()),
    }
}
