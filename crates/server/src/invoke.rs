//! The invoke service: resolves a reference to something runnable, applies the lifecycle's admission
//! rule, picks the alias's weighted version, and hands the invocation to the scheduler.
//!
//! Resolutions are cached per (account, reference) and reused while the registry's generation is
//! unchanged, so a warm invocation touches no database and no disk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stoke_core::reference::function_arn;
use stoke_core::{AccountId, Admission, FunctionName, LifecycleState};
use stoke_scheduler::{InvokeError, InvokeRequest, InvokeResult, InvokeTarget, Scheduler};

use crate::registry::{Registry, RegistryError, Resolved, RunningWork};

/// Why an invocation was not run.
#[derive(Debug, thiserror::Error)]
pub enum InvokeFailure {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("function {0} is BLOCKED: invocations are refused until it is unblocked (stoke fn unblock {0})")]
    Blocked(String),
    #[error("function {0} is RETIRED and is being deleted; it takes no invocations")]
    Retired(String),
    #[error("function {0} stayed UPDATING for longer than {1} s; try again")]
    StillUpdating(String, u64),
    #[error("{0}")]
    Scheduler(#[from] InvokeError),
}

/// A resolved reference: the function's state and what an invocation runs.
struct Resolution {
    generation: u64,
    name: FunctionName,
    state: LifecycleState,
    primary: Arc<InvokeTarget>,
    /// An alias's second version and the share of invocations it gets.
    secondary: Option<(Arc<InvokeTarget>, f64)>,
}

/// How long an invocation waits for an update to finish before giving up.
const HOLD_LIMIT: Duration = Duration::from_secs(60);
const CACHE_LIMIT: usize = 10_000;

pub struct Invoker {
    registry: Arc<Registry>,
    scheduler: Scheduler,
    region: String,
    cache: Mutex<HashMap<(AccountId, String), Arc<Resolution>>>,
    rng: AtomicU64,
}

impl std::fmt::Debug for Invoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invoker").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Invoker {
    pub fn new(registry: Arc<Registry>, scheduler: Scheduler, region: String) -> Self {
        Self {
            registry,
            scheduler,
            region,
            cache: Mutex::new(HashMap::new()),
            rng: AtomicU64::new(0x2545_F491_4F6C_DD1D),
        }
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    fn target(&self, r: &Resolved, version: Option<&stoke_store::VersionRecord>, qualifier: &str) -> Arc<InvokeTarget> {
        let f = &r.function;
        let (config, sha, label) = match version {
            Some(v) => (v.config.clone(), v.code.sha256.clone(), v.version.to_string()),
            None => {
                (f.config.clone(), f.code.as_ref().map(|c| c.sha256.clone()).unwrap_or_default(), "$LATEST".to_string())
            }
        };
        let for_path = Resolved { function: f.clone(), version: version.cloned(), alias: None };
        Arc::new(InvokeTarget {
            account: f.account.clone(),
            function: f.name.clone(),
            version: label,
            config,
            archive: self.registry.archive_path(&for_path),
            code_sha256: sha,
            invoked_arn: function_arn(&self.region, &f.account, &f.name, Some(qualifier)),
            region: self.region.clone(),
        })
    }

    async fn resolve(&self, caller: &AccountId, reference: &str) -> Result<Arc<Resolution>, InvokeFailure> {
        let generation = self.registry.generation();
        let key = (caller.clone(), reference.to_string());
        if let Some(hit) = lock(&self.cache).get(&key) {
            if hit.generation == generation {
                return Ok(hit.clone());
            }
        }
        let registry = self.registry.clone();
        let (acct, r) = (caller.clone(), reference.to_string());
        let resolved = tokio::task::spawn_blocking(move || registry.resolve(&acct, &r))
            .await
            .map_err(|e| InvokeFailure::Scheduler(InvokeError::Platform(e.to_string())))??;
        let qualifier = resolved.alias.as_ref().map(|a| a.name.to_string()).unwrap_or_else(|| resolved.version_label());
        let primary = self.target(&resolved, resolved.version.as_ref(), &qualifier);
        let secondary = match &resolved.alias {
            Some(alias) => match (&alias.routing.additional_version, alias.routing.additional_weight) {
                (Some(v), Some(w)) => {
                    let n: u64 = v.parse().unwrap_or(0);
                    let registry = self.registry.clone();
                    let (acct, r) = (caller.clone(), format!("{}:{n}", resolved.function.name));
                    let extra = tokio::task::spawn_blocking(move || registry.resolve(&acct, &r))
                        .await
                        .map_err(|e| InvokeFailure::Scheduler(InvokeError::Platform(e.to_string())))??;
                    Some((self.target(&extra, extra.version.as_ref(), &qualifier), w))
                }
                _ => None,
            },
            None => None,
        };
        let resolution = Arc::new(Resolution {
            generation,
            name: resolved.function.name.clone(),
            state: resolved.function.state,
            primary,
            secondary,
        });
        let mut cache = lock(&self.cache);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, resolution.clone());
        Ok(resolution)
    }

    /// Keeps `min_warm` instances of every function and alias that asks for them, re-planned whenever the
    /// registry changes. Runs until the process ends.
    pub fn keep_warm(self: &Arc<Self>) {
        let invoker = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut seen = u64::MAX;
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let Some(invoker) = invoker.upgrade() else { return };
                let generation = invoker.registry.generation();
                if generation == seen {
                    continue;
                }
                seen = generation;
                let registry = invoker.registry.clone();
                let targets = match tokio::task::spawn_blocking(move || registry.warm_targets()).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot list functions to keep warm");
                        continue;
                    }
                    Err(_) => continue,
                };
                for (account, reference) in targets {
                    match invoker.resolve(&account, &reference).await {
                        Ok(r) if r.state.admission() == Admission::Accept => invoker.scheduler.keep_warm(&r.primary),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, reference, "cannot keep function warm"),
                    }
                }
            }
        });
    }

    /// A uniform sample in [0, 1) (xorshift; good enough to split traffic).
    fn sample(&self) -> f64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Runs an invocation of `reference` for `caller`; returns the result and the version that ran.
    pub async fn invoke(
        &self,
        caller: &AccountId,
        reference: &str,
        req: InvokeRequest,
    ) -> Result<(InvokeResult, String), InvokeFailure> {
        let started = Instant::now();
        let resolution = loop {
            let r = self.resolve(caller, reference).await?;
            match r.state.admission() {
                Admission::Accept => break r,
                Admission::Refuse if r.state == LifecycleState::Retired => {
                    return Err(InvokeFailure::Retired(r.name.to_string()))
                }
                Admission::Refuse => return Err(InvokeFailure::Blocked(r.name.to_string())),
                Admission::Hold => {
                    if started.elapsed() > HOLD_LIMIT {
                        return Err(InvokeFailure::StillUpdating(r.name.to_string(), HOLD_LIMIT.as_secs()));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        let target = match &resolution.secondary {
            Some((extra, weight)) if self.sample() < *weight => extra,
            _ => &resolution.primary,
        };
        let result = self.scheduler.invoke(target, req).await?;
        Ok((result, target.version.clone()))
    }
}

/// Lets the registry see the scheduler's work and tell it about changes.
pub struct SchedulerWork(pub Scheduler);

impl RunningWork for SchedulerWork {
    fn in_flight(&self, account: &AccountId, function: &FunctionName) -> usize {
        self.0.in_flight(account, function)
    }

    fn function_changed(&self, account: &AccountId, function: &FunctionName) {
        self.0.drain(account, function);
    }
}
