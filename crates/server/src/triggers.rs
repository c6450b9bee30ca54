//! HTTP triggers: function URLs (`/u/<id>/…`) and the routes of an account's gateway (`/gw/<account>/…`).
//!
//! Records live in the store next to the functions they call (a trigger goes with its function), written
//! through the registry so every change moves its generation. Requests are matched against an in-memory
//! index that is rebuilt when that generation moves: a request reads no database, and a route added or
//! removed takes effect at once, without a restart, while requests already matched finish undisturbed
//! (they hold their own copy of what they matched).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use serde_json::json;
use stoke_core::error::ErrorKind;
use stoke_core::gateway::{self, Cors, PathParams, RoutePattern, RouteTable, TriggerAuth, MAX_BODY_BYTES};
use stoke_core::{AccountId, ValidationError};
use stoke_scheduler::{InvokeRequest, Outcome};
use stoke_store::{TriggerKind, TriggerRecord};

use crate::accounts::Accounts;
use crate::error::Classified;
use crate::invoke::Invoker;
use crate::registry::{now_ms, Registry, RegistryError, Result};

/// A trigger to create.
#[derive(Debug, Clone)]
pub struct NewTrigger {
    /// `name` or `name:qualifier` (an alias, a version or `$LATEST`), or a function ARN.
    pub function: String,
    /// `METHOD /path` for a route; `None` for a function URL.
    pub route: Option<String>,
    pub auth: TriggerAuth,
    pub cors: Option<Cors>,
}

/// Changes to a trigger's settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct TriggerPatch {
    pub auth: Option<TriggerAuth>,
    /// `Some(None)` removes the CORS settings.
    pub cors: Option<Option<Cors>>,
}

const ID_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";

fn random_id(len: usize) -> Result<String> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).map_err(|e| RegistryError::Store(stoke_store::StoreError::Corrupt(e.to_string())))?;
    Ok(bytes.iter().map(|b| ID_CHARS[*b as usize % ID_CHARS.len()] as char).collect())
}

fn not_found(id: &str) -> RegistryError {
    RegistryError::NotFound(format!("there is no function URL or route {id} in your account"))
}

impl Registry {
    /// Creates a function URL or a route after checking the function reference resolves now, the route
    /// key is well formed and no route of the account matches the same requests.
    pub fn create_trigger(&self, caller: &AccountId, new: NewTrigger) -> Result<TriggerRecord> {
        let reference = self.parse_ref(caller, &new.function)?;
        // The reference must name something that exists (the function, and the qualifier if given).
        self.resolve(caller, &new.function)?;
        if let Some(cors) = &new.cors {
            cors.validate().map_err(|m| ValidationError::new("cors", m))?;
        }
        let kind = match &new.route {
            None => TriggerKind::Url,
            Some(key) => {
                let pattern = RoutePattern::parse(key).map_err(|m| ValidationError::new("route", m))?;
                let shape = pattern.shape();
                let existing = self.store().list_triggers(Some(caller))?;
                let clash = existing.iter().find_map(|t| match &t.kind {
                    TriggerKind::Route { key, shape: s } if *s == shape => Some((key, &t.id)),
                    _ => None,
                });
                if let Some((clash_key, clash_id)) = clash {
                    return Err(RegistryError::Conflict(format!(
                        "route {} matches the same requests as the existing route {clash_key} ({}); delete that one first or change the path",
                        pattern.route_key(),
                        clash_id
                    )));
                }
                TriggerKind::Route { key: pattern.route_key(), shape }
            }
        };
        let id = match kind {
            TriggerKind::Url => random_id(24)?,
            TriggerKind::Route { .. } => format!("r-{}", random_id(12)?),
        };
        let record = TriggerRecord {
            id,
            account: caller.clone(),
            kind,
            function: reference.name,
            qualifier: reference.qualifier.map(|q| q.to_string()),
            auth: new.auth,
            cors: new.cors,
            created_ms: now_ms(),
        };
        self.store().insert_trigger(&record)?;
        self.bump_generation();
        Ok(record)
    }

    /// The caller's function URLs (`routes == false`) or routes, oldest first.
    pub fn list_triggers(&self, caller: &AccountId, routes: bool) -> Result<Vec<TriggerRecord>> {
        let all = self.store().list_triggers(Some(caller))?;
        Ok(all.into_iter().filter(|t| t.is_route() == routes).collect())
    }

    pub fn get_trigger(&self, caller: &AccountId, id: &str) -> Result<TriggerRecord> {
        self.store().get_trigger(id)?.filter(|t| &t.account == caller).ok_or_else(|| not_found(id))
    }

    pub fn update_trigger(&self, caller: &AccountId, id: &str, patch: TriggerPatch) -> Result<TriggerRecord> {
        let mut record = self.get_trigger(caller, id)?;
        if let Some(Some(cors)) = &patch.cors {
            cors.validate().map_err(|m| ValidationError::new("cors", m))?;
        }
        if let Some(auth) = patch.auth {
            record.auth = auth;
        }
        if let Some(cors) = patch.cors {
            record.cors = cors;
        }
        self.store().update_trigger(&record)?;
        self.bump_generation();
        Ok(record)
    }

    pub fn delete_trigger(&self, caller: &AccountId, id: &str) -> Result<()> {
        if !self.store().delete_trigger(caller, id)? {
            return Err(not_found(id));
        }
        self.bump_generation();
        Ok(())
    }
}

/// What a request matched.
#[derive(Debug, Clone)]
pub struct Matched {
    pub trigger: TriggerRecord,
    /// `$default` for a function URL, the route key for a route.
    pub route_key: String,
    pub params: PathParams,
}

/// Every trigger, arranged for matching.
#[derive(Debug, Default)]
struct Index {
    generation: u64,
    /// The gateway's own reads forced by a miss (see `Gateway::retry_after_miss`) that this index includes.
    forced: u64,
    urls: HashMap<String, TriggerRecord>,
    routes: HashMap<AccountId, RouteTable<TriggerRecord>>,
}

/// A trigger's request as the handler read it off the wire (header names in lower case).
#[derive(Debug, Clone, Default)]
pub struct TriggerRequest {
    pub method: String,
    /// The path below the trigger's base (`/` at least).
    pub sub_path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub source_ip: Option<String>,
    /// `HTTP/1.1`, as the event's `requestContext.http.protocol` carries it.
    pub protocol: String,
}

impl TriggerRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What to answer a trigger's caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl TriggerReply {
    /// An answer of the gateway itself (not of the function): `{"error": {code, message, request_id?}}`.
    pub fn error(status: u16, code: &str, message: impl Into<String>, request_id: Option<&str>) -> TriggerReply {
        let mut error = json!({ "code": code, "message": message.into() });
        if let Some(id) = request_id {
            error["request_id"] = json!(id);
        }
        TriggerReply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({ "error": error }).to_string().into_bytes(),
        }
    }

    /// The body was over what a function can take.
    pub fn body_too_large() -> TriggerReply {
        let message = format!("the request body is larger than {MAX_BODY_BYTES} bytes, the most a function can take");
        TriggerReply::error(413, "payload_too_large", message, None)
    }
}

/// Matches HTTP requests to triggers, and serves them: CORS preflights, the trigger's auth, the payload
/// 2.0 event, the invocation, and the function's reply read back as HTTP (`stoke_core::gateway`'s rules).
pub struct Gateway {
    registry: Arc<Registry>,
    invoker: Arc<Invoker>,
    accounts: Arc<Accounts>,
    index: RwLock<Arc<Index>>,
    /// In a cluster: a URL or route not found reads the triggers again (another node may just have made it).
    refresh_after_miss: Option<crate::cluster::MissRefresh>,
    /// Bumped by a miss that may read the triggers again; the index is read afresh when it moves.
    forced: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

impl Gateway {
    pub fn new(registry: Arc<Registry>, invoker: Arc<Invoker>, accounts: Arc<Accounts>) -> Self {
        let index = RwLock::new(Arc::new(Index { generation: u64::MAX, ..Default::default() }));
        Gateway { registry, invoker, accounts, index, refresh_after_miss: None, forced: Default::default() }
    }

    /// Reads the triggers again, at most once per `every`, when a request names one this node does not
    /// know: in a cluster, its index trails another node's change by a watch event.
    pub fn refresh_on_miss(mut self, every: std::time::Duration) -> Self {
        self.refresh_after_miss = Some(crate::cluster::MissRefresh::new(every));
        self
    }

    /// After a miss: whether to look again, with the index read afresh.
    fn retry_after_miss(&self) -> bool {
        // Only the gateway's index is read again: resolutions elsewhere stay cached.
        let again = self.refresh_after_miss.as_ref().is_some_and(crate::cluster::MissRefresh::allow);
        if again {
            self.forced.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        again
    }

    /// What to answer before the body is read: a browser's preflight (answered without invoking the
    /// function), or the refusal of a caller the trigger's auth does not let through. `None`: go on.
    pub fn admit(&self, matched: &Matched, req: &TriggerRequest) -> Option<TriggerReply> {
        let trigger = &matched.trigger;
        if let (Some(cors), true, Some(origin)) = (&trigger.cors, req.method == "OPTIONS", req.header("origin")) {
            if let Some(wanted) = req.header("access-control-request-method") {
                let headers = cors.preflight(origin, wanted).unwrap_or_default();
                return Some(TriggerReply { status: 204, headers, body: Vec::new() });
            }
        }
        if trigger.auth == TriggerAuth::None {
            return None;
        }
        let key = req.header("authorization").and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        let Some(key) = key else {
            let message = "this trigger needs its account's API key: send 'Authorization: Bearer <api_key>'";
            return Some(TriggerReply::error(401, "missing_credentials", message, None));
        };
        match self.accounts.authenticate(key) {
            Some(caller) if caller.account.id == trigger.account => None,
            Some(_) => Some(TriggerReply::error(
                403,
                "forbidden",
                "this API key belongs to another account; a trigger takes only its own account's key",
                None,
            )),
            None => {
                Some(TriggerReply::error(401, "invalid_credentials", "the API key is not valid for this server", None))
            }
        }
    }

    /// Invokes the trigger's function with the request as a payload 2.0 event and answers with what it
    /// returned, or with why it could not.
    pub async fn call(&self, matched: &Matched, mut req: TriggerRequest, body: Bytes) -> TriggerReply {
        let trigger = &matched.trigger;
        // The account's key is a credential of the platform, not the function's business.
        if trigger.auth == TriggerAuth::Key {
            req.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("authorization"));
        }
        let request_id = self.invoker.scheduler().request_id();
        let account = trigger.account.to_string();
        let event = gateway::event(&gateway::HttpRequest {
            method: &req.method,
            raw_path: &req.sub_path,
            raw_query: &req.query,
            headers: &req.headers,
            body: &body,
            route_key: &matched.route_key,
            path_parameters: &matched.params,
            account_id: &account,
            api_id: if trigger.is_route() { &account } else { &trigger.id },
            domain_name: req.header("host").unwrap_or("127.0.0.1"),
            request_id: &request_id,
            source_ip: req.source_ip.as_deref().unwrap_or("127.0.0.1"),
            protocol: &req.protocol,
            time_ms: now_ms(),
        });
        let invoke = InvokeRequest {
            payload: Bytes::from(event.to_string()),
            request_id: Some(request_id.clone()),
            ..Default::default()
        };
        let mut reply = match self.invoker.invoke(&trigger.account, &trigger.reference(), invoke).await {
            Ok((result, _version)) => match result.outcome {
                Outcome::Success(out) => match gateway::reply(&out) {
                    Ok(r) => TriggerReply { status: r.status, headers: r.headers, body: r.body },
                    Err(why) => TriggerReply::error(
                        502,
                        "bad_function_response",
                        format!("the function's result is not a valid HTTP response: {why}"),
                        Some(&request_id),
                    ),
                },
                Outcome::FunctionError { error_type, .. } if error_type == "Sandbox.Timedout" => TriggerReply::error(
                    504,
                    "function_timeout",
                    "the function did not answer within its timeout",
                    Some(&request_id),
                ),
                Outcome::FunctionError { error_type, .. } => TriggerReply::error(
                    502,
                    "function_error",
                    format!("the function failed with {error_type}; see `stoke logs {}`", trigger.function),
                    Some(&request_id),
                ),
            },
            Err(e) => {
                let class = e.class();
                // The trigger's caller is not at fault for the function's state: a refusal other than a
                // missing function or a throttle is the service being unavailable.
                let status = match class.kind {
                    ErrorKind::NotFound | ErrorKind::Throttled => class.kind.status(),
                    kind if kind.status() < 500 => 503,
                    kind => kind.status(),
                };
                if class.kind == ErrorKind::Internal {
                    tracing::error!(error = %e, trigger = %trigger.id, "internal error serving a trigger");
                }
                let mut reply = TriggerReply::error(status, class.code, e.to_string(), None);
                if let Some(secs) = class.retry_after_s {
                    reply.headers.push(("retry-after".into(), secs.to_string()));
                }
                reply
            }
        };
        if let Some(cors) = &trigger.cors {
            reply.headers.extend(cors.response_headers(req.header("origin")));
        }
        reply.headers.push(("x-stoke-request-id".into(), request_id));
        reply
    }

    /// The index for the registry's current generation, rebuilt (off the async workers) when stale.
    async fn index(&self) -> Result<Arc<Index>> {
        let generation = self.registry.generation();
        let forced = self.forced.load(std::sync::atomic::Ordering::Acquire);
        let current = self.index.read().unwrap_or_else(|p| p.into_inner()).clone();
        if current.generation == generation && current.forced == forced {
            return Ok(current);
        }
        let registry = self.registry.clone();
        let records = tokio::task::spawn_blocking(move || registry.store().list_triggers(None))
            .await
            .map_err(|e| RegistryError::Store(stoke_store::StoreError::Corrupt(e.to_string())))??;
        let mut index = Index { generation, forced, ..Default::default() };
        for t in records {
            match &t.kind {
                TriggerKind::Url => {
                    index.urls.insert(t.id.clone(), t);
                }
                TriggerKind::Route { key, .. } => {
                    // Keys were validated when stored; a record that no longer parses is skipped, not fatal.
                    if let Ok(pattern) = RoutePattern::parse(key) {
                        let _ = index.routes.entry(t.account.clone()).or_default().insert(pattern, t.clone());
                    }
                }
            }
        }
        let index = Arc::new(index);
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = index.clone();
        Ok(index)
    }

    /// The function URL with this id.
    pub async fn url(&self, id: &str) -> Result<Option<Matched>> {
        let find = |index: &Index| {
            index.urls.get(id).map(|t| Matched { trigger: t.clone(), route_key: "$default".into(), params: Vec::new() })
        };
        let found = find(&*self.index().await?);
        if found.is_none() && self.retry_after_miss() {
            return Ok(find(&*self.index().await?));
        }
        Ok(found)
    }

    /// The account's most specific route for the request.
    pub async fn route(&self, account: &AccountId, method: &str, path: &str) -> Result<Option<Matched>> {
        let find = |index: &Index| {
            index.routes.get(account).and_then(|table| table.find(method, path)).map(|(pattern, t, params)| Matched {
                trigger: t.clone(),
                route_key: pattern.route_key(),
                params,
            })
        };
        let found = find(&*self.index().await?);
        if found.is_none() && self.retry_after_miss() {
            return Ok(find(&*self.index().await?));
        }
        Ok(found)
    }
}
