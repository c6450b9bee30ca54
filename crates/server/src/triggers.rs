//! HTTP triggers: function URLs (`/u/<id>/…`) and the routes of an account's gateway (`/gw/<account>/…`).
//!
//! Records live in the store next to the functions they call (a trigger goes with its function), written
//! through the registry so every change moves its generation. Requests are matched against an in-memory
//! index that is rebuilt when that generation moves: a request reads no database, and a route added or
//! removed takes effect at once, without a restart, while requests already matched finish undisturbed
//! (they hold their own copy of what they matched).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use stoke_core::gateway::{Cors, PathParams, RoutePattern, RouteTable, TriggerAuth};
use stoke_core::{AccountId, ValidationError};
use stoke_store::{TriggerKind, TriggerRecord};

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
    urls: HashMap<String, TriggerRecord>,
    routes: HashMap<AccountId, RouteTable<TriggerRecord>>,
}

/// Matches HTTP requests to triggers.
#[derive(Debug)]
pub struct Gateway {
    registry: Arc<Registry>,
    index: RwLock<Arc<Index>>,
}

impl Gateway {
    pub fn new(registry: Arc<Registry>) -> Self {
        Gateway { registry, index: RwLock::new(Arc::new(Index { generation: u64::MAX, ..Default::default() })) }
    }

    /// The index for the registry's current generation, rebuilt (off the async workers) when stale.
    async fn index(&self) -> Result<Arc<Index>> {
        let generation = self.registry.generation();
        let current = self.index.read().unwrap_or_else(|p| p.into_inner()).clone();
        if current.generation == generation {
            return Ok(current);
        }
        let registry = self.registry.clone();
        let records = tokio::task::spawn_blocking(move || registry.store().list_triggers(None))
            .await
            .map_err(|e| RegistryError::Store(stoke_store::StoreError::Corrupt(e.to_string())))??;
        let mut index = Index { generation, ..Default::default() };
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
        let index = self.index().await?;
        Ok(index.urls.get(id).map(|t| Matched { trigger: t.clone(), route_key: "$default".into(), params: Vec::new() }))
    }

    /// The account's most specific route for the request.
    pub async fn route(&self, account: &AccountId, method: &str, path: &str) -> Result<Option<Matched>> {
        let index = self.index().await?;
        Ok(index.routes.get(account).and_then(|table| table.find(method, path)).map(|(pattern, t, params)| Matched {
            trigger: t.clone(),
            route_key: pattern.route_key(),
            params,
        }))
    }
}
