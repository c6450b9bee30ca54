//! `/v1/account`, `/v1/accounts`, `/v1/node`, `/v1/node/history`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::ApiJson;
use super::views::{AccountList, AccountView, CreateAccountRequest, CreatedAccount, NodeHistory, NodeView};
use super::{blocking, AppState};
use crate::accounts::Caller;

/// The caller's own account.
#[utoipa::path(get, path = "/v1/account", tag = "accounts",
    responses((status = 200, body = AccountView), (status = 401, body = ErrorBody)))]
pub async fn whoami(caller: Caller) -> Json<AccountView> {
    Json(AccountView::from(&caller.account))
}

/// All accounts (admin only).
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts",
    responses((status = 200, body = AccountList), (status = 403, body = ErrorBody)))]
pub async fn list(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<AccountList>> {
    let accounts = s.accounts.clone();
    let list = blocking(move || Ok(accounts.list_by(&caller)?)).await?;
    Ok(Json(AccountList { accounts: list.iter().map(AccountView::from).collect() }))
}

/// Creates an account and returns its credentials (admin only).
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = CreateAccountRequest,
    responses((status = 201, body = CreatedAccount), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateAccountRequest>,
) -> ApiResult<(StatusCode, Json<CreatedAccount>)> {
    let accounts = s.accounts.clone();
    let (record, credentials) = blocking(move || Ok(accounts.create_by(&caller, &req.name, req.is_admin)?)).await?;
    Ok((StatusCode::CREATED, Json(CreatedAccount { account: AccountView::from(&record), credentials })))
}

/// What this node offers functions (memory, GPUs, archive size); for an administrator, also what its instances
/// hold and what it has done (cold starts, evictions).
#[utoipa::path(get, path = "/v1/node", tag = "node", responses((status = 200, body = NodeView)))]
pub async fn node(State(s): State<AppState>, caller: Caller) -> Json<NodeView> {
    Json(NodeView {
        gpus: crate::node_gpus(s.invoker.scheduler()).into_iter().map(Into::into).collect(),
        gpu_shares_enforced: s.invoker.scheduler().gpu_shares_enforced(),
        limits: s.registry.node_limits(),
        max_archive_bytes: s.registry.archive_limits().max_archive_bytes,
        region: s.region.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        serving_threads: tokio::runtime::Handle::current().metrics().num_workers(),
        status: caller.account.is_admin.then(|| s.invoker.scheduler().node_status()),
    })
}

/// The node's last hour in ten-second slots, oldest first: invocations per second, errors, throttles, cold
/// starts, invocations queued, and each slot's p50 and p99 duration (admin only: every account's calls).
#[utoipa::path(get, path = "/v1/node/history", tag = "node",
    responses((status = 200, body = NodeHistory), (status = 403, body = ErrorBody)))]
pub async fn node_history(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<NodeHistory>> {
    if !caller.account.is_admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the node's history counts every account's invocations: use an admin account's key",
        ));
    }
    Ok(Json(NodeHistory { slot_s: stoke_core::history::SLOT.as_secs(), points: s.invoker.scheduler().node_history() }))
}
