//! `/v1/functions/{function}/tune` and `/v1/tunes/{id}`: the memory optimizer.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiResult, ErrorBody};
use super::extract::ApiJson;
use super::views::FunctionRefPath;
use super::AppState;
use crate::accounts::Caller;
use crate::tune::{TuneRequest, TuneView};

/// Starts a tune: the payload runs at several memory sizes (each a temporary version, so nothing the
/// function's callers use changes), and the strategy recommends one. Answers at once with the tune's id;
/// `GET /v1/tunes/{id}` follows its progress and gives its result.
#[utoipa::path(post, path = "/v1/functions/{function}/tune", tag = "functions", request_body = TuneRequest,
    params(FunctionRefPath),
    responses((status = 202, body = TuneView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn start(
    State(s): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
    ApiJson(req): ApiJson<TuneRequest>,
) -> ApiResult<(StatusCode, Json<TuneView>)> {
    let view = s.tuner.start(&caller.account.id, &function, req).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// A tune: its progress while it runs; its measurements, recommendation and keep-alive advice when done.
#[utoipa::path(get, path = "/v1/tunes/{id}", tag = "functions",
    params(("id" = String, Path, description = "the tune's id")),
    responses((status = 200, body = TuneView), (status = 404, body = ErrorBody)))]
pub async fn get(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<TuneView>> {
    Ok(Json(s.tuner.get(&caller.account.id, &id).await?))
}
