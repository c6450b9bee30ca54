//! The HTTP API. Handlers parse a request, call a service, and turn the result into a response; no
//! business rule lives here.

mod accounts;
pub mod cluster;
mod console;
mod drain;
mod durable;
pub mod durable_executions;
pub mod error;
pub mod events;
pub mod extract;
mod functions;
pub mod invoke;
pub mod lambda;
mod lambda_layers;
pub mod layers;
mod logs;
pub mod openapi;
mod scheduler;
pub mod schedules;
pub mod states;
pub mod triggers;
pub mod tune;
pub mod views;
pub mod workflows;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri};
use axum::routing::{any, delete, get, post, put};
use axum::Router;

use crate::accounts::Accounts;
use crate::registry::Registry;
use error::ApiError;

/// What every handler can reach: one reference-counted value, since the router clones it for every request
/// (and for each extractor and middleware that takes it).
#[derive(Clone, Debug)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    pub fn new(inner: AppStateInner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The services and settings behind [`AppState`].
#[derive(Debug)]
pub struct AppStateInner {
    pub registry: Arc<Registry>,
    pub accounts: Arc<Accounts>,
    pub invoker: Arc<crate::invoke::Invoker>,
    pub workflows: Arc<crate::workflows::Workflows>,
    /// Lambda durable executions.
    pub durable: Arc<crate::durable::Durable>,
    pub schedules: Arc<crate::schedules::Schedules>,
    /// Runs `stoke tune`.
    pub tuner: Arc<crate::tune::Tuner>,
    /// Matches HTTP trigger requests to function URLs and routes.
    pub gateway: Arc<crate::triggers::Gateway>,
    pub region: String,
    /// This node's cluster (`None`: a single node).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Turns `true` when the server starts shutting down: long-lived answers (a log stream) end then, so
    /// the connections they hold can close.
    pub closing: tokio::sync::watch::Sender<bool>,
}

/// Runs blocking service work (the store) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?
}

/// The whole API as a router (tests drive it without a socket).
pub fn app(state: AppState) -> Router {
    // Base64 inflates archives by 4/3; leave room for the JSON around them.
    let body_limit =
        usize::try_from(state.registry.archive_limits().max_archive_bytes).unwrap_or(usize::MAX) / 3 * 4 + (1 << 20);
    let blob_limit =
        usize::try_from(state.registry.archive_limits().max_image_bytes).unwrap_or(usize::MAX).max(body_limit);
    let v1 = Router::new()
        .route("/openapi.json", get(openapi::serve))
        .route("/node", get(accounts::node))
        .route("/node/history", get(accounts::node_history))
        .route("/nodes", get(cluster::list))
        .route("/account", get(accounts::whoami))
        .route("/accounts", get(accounts::list).post(accounts::create))
        .route("/functions", get(functions::list).post(functions::create))
        .route("/functions/{function}", get(functions::get).patch(functions::update_config).delete(functions::delete))
        .route("/functions/{function}/code", put(functions::update_code).get(functions::download_code))
        .route("/functions/{function}/versions", get(functions::list_versions).post(functions::publish))
        .route("/functions/{function}/versions/{version}", delete(functions::delete_version))
        .route("/functions/{function}/event-configs", get(functions::list_event_configs))
        .route(
            "/functions/{function}/event-configs/{qualifier}",
            put(functions::put_event_config).delete(functions::delete_event_config),
        )
        .route("/functions/{function}/durable-executions", get(durable_executions::list))
        .route("/durable-executions/{id}", get(durable_executions::get))
        .route("/durable-executions/{id}/history", get(durable_executions::history))
        .route("/durable-executions/{id}/timeline", get(durable_executions::timeline))
        .route("/durable-executions/{id}/stop", post(durable_executions::stop))
        .route("/durable-callbacks/{callback}", post(durable_executions::answer))
        .route("/events/failed", get(events::list_failed).delete(events::purge))
        .route("/events/failed/redrive", post(events::redrive_all))
        .route("/events/{id}", get(events::get).delete(events::delete))
        .route("/events/{id}/redrive", post(events::redrive))
        .route("/functions/{function}/aliases", get(functions::list_aliases))
        .route(
            "/functions/{function}/aliases/{alias}",
            get(functions::get_alias).put(functions::put_alias).delete(functions::delete_alias),
        )
        .route("/functions/{function}/block", post(functions::block))
        .route("/functions/{function}/unblock", post(functions::unblock))
        .route("/functions/{function}/retire", post(functions::retire))
        .route("/functions/{function}/invoke", post(invoke::invoke))
        .route("/functions/{function}/logs", get(invoke::logs))
        .route("/functions/{function}/logs/stream", get(invoke::logs_stream))
        .route("/functions/{function}/tune", post(tune::start))
        .route("/tunes/{id}", get(tune::get))
        .route("/instances", get(invoke::instances))
        .route("/urls", get(triggers::list_urls).post(triggers::create_url))
        .route("/urls/{id}", get(triggers::get_url).patch(triggers::patch_url).delete(triggers::delete_url))
        .route("/routes", get(triggers::list_routes).post(triggers::create_route))
        .route("/routes/{id}", get(triggers::get_route).patch(triggers::patch_route).delete(triggers::delete_route))
        .route("/schedules", get(schedules::list).post(schedules::create))
        .route("/schedules/{name}", get(schedules::get).put(schedules::replace).delete(schedules::delete))
        .route("/schedules/{name}/enable", post(schedules::enable))
        .route("/schedules/{name}/disable", post(schedules::disable))
        .route("/schedules/{name}/next", get(schedules::next))
        .route("/workflows", get(workflows::list).post(workflows::create))
        .route("/workflows/{name}", get(workflows::get).put(workflows::update).delete(workflows::delete))
        .route("/workflows/{name}/executions", get(workflows::executions).post(workflows::start))
        .route("/workflows/{name}/run", post(workflows::run))
        .route("/executions/{id}", get(workflows::describe))
        .route("/executions/{id}/history", get(workflows::history))
        .route("/executions/{id}/stop", post(workflows::stop))
        .route("/executions/{id}/timeline", get(workflows::timeline))
        .route("/executions/{id}/cost", get(workflows::cost))
        .route("/executions/{id}/map-runs", get(workflows::map_runs))
        .route("/executions/{id}/map-runs/{run}/executions", get(workflows::map_run_executions))
        .route("/layers", get(layers::list))
        .route("/layers/{name}/versions", get(layers::versions).post(layers::publish))
        .route("/layers/{name}/versions/{version}", get(layers::get).delete(layers::delete))
        .route("/images", get(layers::list_images))
        .route(
            "/images/{name}",
            get(layers::get_image)
                .delete(layers::delete_image)
                // Images are streamed to disk, not buffered: they are limited by their unpacked size.
                .put(layers::import)
                .layer(DefaultBodyLimit::disable()),
        );
    Router::new()
        .route("/", post(states::dispatch))
        .route("/healthz", get(|| async { "ok" }))
        .route("/console", get(console::page))
        .route("/console/", get(console::page))
        .route("/console/{asset}", get(console::asset))
        .route("/metrics", get(invoke::metrics))
        .nest("/v1", v1)
        .route("/internal/v1/instances", get(invoke::peer_list_instances))
        .route("/internal/v1/logs", get(invoke::peer_logs))
        .route(crate::queues::FORWARD_PATH, post(cluster::peer_invoke))
        .route(crate::queues::HOST_PATH, post(cluster::peer_host))
        .route(crate::queues::TAKE_PATH, post(cluster::peer_take))
        .route(crate::queues::DONE_PATH, post(cluster::peer_done))
        .route(crate::queues::TURN_PATH, post(cluster::peer_turn))
        .route(crate::queues::PREPARE_PATH, post(cluster::peer_prepare))
        .route(crate::queues::POOL_PATH, post(cluster::peer_pool))
        .route(crate::queues::ANNOUNCE_PATH, post(cluster::peer_announce))
        .route(crate::queues::RELEASE_PATH, post(cluster::peer_release))
        .route(
            "/internal/v1/blobs/{sha256}",
            // Image tarballs travel here too: up to the unpacked size an image may have.
            get(cluster::get_blob).put(cluster::put_blob).layer(DefaultBodyLimit::max(blob_limit)),
        )
        .nest("/2015-03-31", lambda::routes(state.clone()))
        .nest("/2018-10-31", lambda_layers::routes(state.clone()))
        .nest("/2019-09-25", lambda::event_config_routes(state.clone()))
        .nest("/2025-12-01", durable::routes(state.clone()))
        .merge(scheduler::routes())
        .route("/u/{id}", any(triggers::serve_url))
        .route("/u/{id}/", any(triggers::serve_url))
        .route("/u/{id}/{*path}", any(triggers::serve_url))
        .route("/gw/{account}", any(triggers::serve_route))
        .route("/gw/{account}/", any(triggers::serve_route))
        .route("/gw/{account}/{*path}", any(triggers::serve_route))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(drain::drain_unread))
        .with_state(state)
}

async fn unknown_route(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_route",
        format!("there is no route {}; see /v1/openapi.json for the API", uri.path()),
    )
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take this method; see /v1/openapi.json for the API", uri.path()),
    )
}

#[cfg(test)]
mod tests;
