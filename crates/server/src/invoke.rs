//! The invoke service: resolves a reference to something runnable, applies the lifecycle's admission
//! rule, picks the alias's weighted version, and hands the invocation to the scheduler.
//!
//! Resolutions are cached per (account, reference) and reused while the registry's generation is
//! unchanged, so a warm invocation touches no database and no disk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use stoke_core::destination::Condition;
use stoke_core::reference::function_arn;
use stoke_core::sync::lock;
use stoke_core::{AccountId, Admission, FunctionName, LifecycleState};
use stoke_scheduler::{InvokeError, InvokeRequest, InvokeResult, InvokeTarget, Scheduler};

use crate::registry::{Registry, RegistryError, Resolved, RunningWork};
use stoke_store::StoreError;

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
    #[error("the event is {size} bytes; the limit for a synchronous invocation is {limit}")]
    PayloadTooLarge { size: usize, limit: usize },
    /// The event is not JSON (Lambda refuses it before any function runs).
    #[error("the event is not JSON: {0}; send a JSON document (or nothing, for {{}})")]
    InvalidPayload(String),
    #[error("{0}")]
    Scheduler(#[from] InvokeError),
}

impl InvokeFailure {
    /// The platform cannot run the invocation now (a full disk, an unreachable store, an update in
    /// progress): not the function's failure, and the same invocation may run later without change.
    pub fn platform_unavailable(&self) -> bool {
        match self {
            InvokeFailure::Scheduler(InvokeError::NoSpace(_) | InvokeError::NodeLost(_))
            | InvokeFailure::StillUpdating(..) => true,
            InvokeFailure::Registry(e) => e.is_transient(),
            _ => false,
        }
    }
}

pub use stoke_core::limits::MAX_PAYLOAD_BYTES;

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
/// How long an invocation that did not start at its queue's owner (the owner was lost) keeps looking for
/// the queue's next owner: longer than a lost node's lease, which is when its queues get new owners.
const REROUTE_LIMIT: Duration = Duration::from_secs(30);
const CACHE_LIMIT: usize = 10_000;

type ResolutionCache = PerReference<Arc<Resolution>>;

/// Values per account and reference, found by borrowed keys; cleared when it holds `limit` of them.
#[derive(Debug)]
struct PerReference<V> {
    accounts: HashMap<AccountId, HashMap<String, V>>,
    len: usize,
    limit: usize,
}

impl<V> Default for PerReference<V> {
    fn default() -> Self {
        PerReference { accounts: HashMap::new(), len: 0, limit: CACHE_LIMIT }
    }
}

impl<V: Clone> PerReference<V> {
    fn get(&self, account: &AccountId, reference: &str) -> Option<V> {
        self.accounts.get(account)?.get(reference).cloned()
    }

    fn insert(&mut self, account: &AccountId, reference: &str, value: V) {
        if let Some(slot) = self.accounts.get_mut(account).and_then(|refs| refs.get_mut(reference)) {
            *slot = value;
            return;
        }
        if self.len >= self.limit {
            self.accounts.clear();
            self.len = 0;
        }
        self.accounts.entry(account.clone()).or_default().insert(reference.to_string(), value);
        self.len += 1;
    }
}

#[cfg(test)]
mod cache_tests {
    use super::PerReference;
    use stoke_core::AccountId;

    #[test]
    fn values_are_kept_per_account_and_reference_and_cleared_at_the_limit() {
        let (a, b) = (AccountId::from_number(1), AccountId::from_number(2));
        let mut c = PerReference { limit: 3, ..PerReference::default() };
        c.insert(&a, "f", 1);
        c.insert(&a, "f:prod", 2);
        c.insert(&b, "f", 3);
        assert_eq!(
            (c.get(&a, "f"), c.get(&a, "f:prod"), c.get(&b, "f"), c.get(&b, "g")),
            (Some(1), Some(2), Some(3), None)
        );
        c.insert(&a, "f", 4);
        assert_eq!((c.get(&a, "f"), c.len), (Some(4), 3), "a replaced value is not counted twice");
        c.insert(&b, "g", 5);
        assert_eq!((c.get(&a, "f"), c.get(&b, "g"), c.len), (None, Some(5), 1), "full: cleared, then the new one");
    }
}

pub struct Invoker {
    registry: Arc<Registry>,
    scheduler: Scheduler,
    region: String,
    /// Per account, per reference: looked up by borrowed keys (no allocation on a warm invocation).
    cache: Mutex<ResolutionCache>,
    rng: AtomicU64,
    /// Woken when an Event invocation is queued.
    events_ready: Arc<tokio::sync::Notify>,
    /// In a cluster: the function queues' owners, and forwarding to them.
    queues: std::sync::OnceLock<Arc<crate::queues::Queues>>,
    /// What became of Event invocations, by account, function and outcome (for `/metrics`).
    event_outcomes: Mutex<std::collections::BTreeMap<(AccountId, String, EventOutcome), u64>>,
    /// Where invocation records for state machine destinations start executions (set once they exist).
    workflows: std::sync::OnceLock<std::sync::Weak<crate::workflows::Workflows>>,
    /// How a durable function's instances reach this server's durable execution API.
    durable_env: std::sync::OnceLock<DurableEnv>,
}

/// What a durable function's instances are given to checkpoint: this server's endpoint (the SDKs build a
/// plain Lambda client, which reads `AWS_ENDPOINT_URL_LAMBDA`) and the function's own key.
pub struct DurableEnv {
    pub endpoint: String,
    pub accounts: Arc<crate::accounts::Accounts>,
}

impl DurableEnv {
    fn for_function(&self, account: &AccountId, function: &FunctionName) -> Vec<(String, String)> {
        let mut env = vec![("AWS_ENDPOINT_URL_LAMBDA".to_string(), self.endpoint.clone())];
        if let Some((id, secret)) = self.accounts.durable_function_key(account, function) {
            env.push(("AWS_ACCESS_KEY_ID".to_string(), id));
            env.push(("AWS_SECRET_ACCESS_KEY".to_string(), secret));
        }
        env
    }
}

/// What became of an Event invocation's attempt, or of a failed one (for `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventOutcome {
    Succeeded,
    /// Failed, and will be retried.
    Retried,
    /// Failed its last attempt: now in the failed-event store.
    Failed,
    /// Not run now (throttled, or the platform could not): back in the queue, its attempts untouched.
    Deferred,
    /// Older than its maximum age before it could run again: now in the failed-event store.
    Expired,
    /// Taken out of the failed-event store and queued again.
    Redriven,
    /// Its invocation record was queued for its destination (on success or on failure).
    ToDestination,
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Retried => "retried",
            Self::Failed => "failed",
            Self::Deferred => "deferred",
            Self::Expired => "expired",
            Self::Redriven => "redriven",
            Self::ToDestination => "to_destination",
        }
    }
}

impl std::fmt::Debug for Invoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invoker").finish_non_exhaustive()
    }
}

impl Invoker {
    pub fn new(registry: Arc<Registry>, scheduler: Scheduler, region: String) -> Self {
        Self {
            registry,
            scheduler,
            region,
            cache: Mutex::new(ResolutionCache::default()),
            rng: AtomicU64::new(0x2545_F491_4F6C_DD1D),
            events_ready: Arc::new(tokio::sync::Notify::new()),
            queues: std::sync::OnceLock::new(),
            event_outcomes: Mutex::new(std::collections::BTreeMap::new()),
            workflows: std::sync::OnceLock::new(),
            durable_env: std::sync::OnceLock::new(),
        }
    }

    /// Gives the invoker the workflow service, so that invocation records reach state machine destinations.
    pub fn deliver_to(&self, workflows: &Arc<crate::workflows::Workflows>) {
        let _ = self.workflows.set(Arc::downgrade(workflows));
    }

    /// Counts an Event invocation of `reference` (its function) in `account` that came to `outcome`.
    pub fn count_event(&self, account: &AccountId, reference: &str, outcome: EventOutcome) {
        let function =
            stoke_core::FunctionRef::parse(reference).map_or_else(|_| reference.to_string(), |r| r.name.to_string());
        *lock(&self.event_outcomes).entry((account.clone(), function, outcome)).or_default() += 1;
    }

    /// The Event invocation counters in Prometheus' text format (`stoke_event_invocations_total`).
    pub fn event_metrics(&self, node: Option<&str>) -> String {
        use std::fmt::Write;
        let mut out = String::from(
            "# HELP stoke_event_invocations What became of Event invocations' attempts: succeeded, retried, failed \
             (into the failed-event store), deferred (throttled or the platform unavailable), expired (past their \
             maximum age), redriven.\n\
             # TYPE stoke_event_invocations counter\n",
        );
        let node = node.map_or_else(String::new, |n| format!(",node=\"{n}\""));
        for ((account, function, outcome), n) in lock(&self.event_outcomes).iter() {
            let _ = writeln!(
                out,
                "stoke_event_invocations_total{{account=\"{account}\",function=\"{function}\",outcome=\"{}\"{node}}} {n}",
                outcome.as_str()
            );
        }
        out
    }

    /// Gives durable functions' instances this server's endpoint and their keys (set once, before the first
    /// invocation resolves).
    pub fn serve_durable_functions(&self, env: DurableEnv) {
        let _ = self.durable_env.set(env);
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    fn target(&self, r: &Resolved, layers: Vec<std::path::PathBuf>, qualifier: &str) -> Arc<InvokeTarget> {
        let (f, version) = (&r.function, r.version.as_ref());
        let (config, label) = match version {
            Some(v) => (v.config.clone(), v.version.to_string()),
            None => (f.config.clone(), "$LATEST".to_string()),
        };
        let platform_env = match (config.durable, self.durable_env.get()) {
            (Some(_), Some(env)) => env.for_function(&f.account, &f.name),
            _ => Vec::new(),
        };
        Arc::new(InvokeTarget {
            platform_env,
            account: f.account.clone(),
            function: f.name.clone(),
            version: label,
            image: self.registry.image_root(&config),
            config,
            layers,
            archive: self.registry.archive_path(f, version),
            code_sha256: crate::registry::archive_of(f, version).1.to_string(),
            invoked_arn: function_arn(&self.region, &f.account, &f.name, Some(qualifier)),
            region: self.region.clone(),
            key: Default::default(),
        })
    }

    async fn resolve(&self, caller: &AccountId, reference: &str) -> Result<Arc<Resolution>, InvokeFailure> {
        let generation = self.registry.generation();
        if let Some(hit) = lock(&self.cache).get(caller, reference) {
            if hit.generation == generation {
                return Ok(hit);
            }
        }
        let registry = self.registry.clone();
        let (acct, r) = (caller.clone(), reference.to_string());
        let fresh = tokio::task::spawn_blocking(move || registry.resolve_with_layers(&acct, &r))
            .await
            .map_err(|e| InvokeFailure::Scheduler(InvokeError::Platform(e.to_string())))?;
        let (resolved, layers) = match fresh {
            Ok(found) => found,
            // The cluster's store is unreachable: what was resolved before still runs (warm invocations go on
            // through an etcd outage); only references never seen fail, with a retryable 503.
            Err(RegistryError::Store(StoreError::Unavailable(why))) => match lock(&self.cache).get(caller, reference) {
                Some(stale) => return Ok(stale),
                None => return Err(RegistryError::Store(StoreError::Unavailable(why)).into()),
            },
            Err(e) => return Err(e.into()),
        };
        let qualifier = resolved.alias.as_ref().map(|a| a.name.to_string()).unwrap_or_else(|| resolved.version_label());
        let primary = self.target(&resolved, layers, &qualifier);
        let secondary = match &resolved.alias {
            Some(alias) => match (&alias.routing.additional_version, alias.routing.additional_weight) {
                (Some(v), Some(w)) => {
                    let n: u64 = v.parse().unwrap_or(0);
                    let registry = self.registry.clone();
                    let (acct, r) = (caller.clone(), format!("{}:{n}", resolved.function.name));
                    let (extra, layers) = tokio::task::spawn_blocking(move || registry.resolve_with_layers(&acct, &r))
                        .await
                        .map_err(|e| InvokeFailure::Scheduler(InvokeError::Platform(e.to_string())))??;
                    Some((self.target(&extra, layers, &qualifier), w))
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
        lock(&self.cache).insert(caller, reference, resolution.clone());
        Ok(resolution)
    }

    /// The event as the function will get it: at most [`MAX_PAYLOAD_BYTES`], a JSON document, and `{}` when
    /// empty (as on Lambda, where an invocation without a payload gets an empty object and one that is not
    /// JSON is refused before any function runs).
    pub fn payload(body: Bytes) -> Result<Bytes, InvokeFailure> {
        if body.len() > MAX_PAYLOAD_BYTES {
            return Err(InvokeFailure::PayloadTooLarge { size: body.len(), limit: MAX_PAYLOAD_BYTES });
        }
        if stoke_core::json::is_blank(&body) {
            return Ok(Bytes::from_static(b"{}"));
        }
        serde_json::from_slice::<serde::de::IgnoredAny>(&body)
            .map_err(|e| InvokeFailure::InvalidPayload(e.to_string()))?;
        Ok(body)
    }

    /// DryRun: checks that the reference resolves and would be admitted; returns what it would run (its
    /// primary version).
    pub async fn check(&self, caller: &AccountId, reference: &str) -> Result<Arc<InvokeTarget>, InvokeFailure> {
        let r = self.resolve(caller, reference).await?;
        match r.state {
            LifecycleState::Blocked => Err(InvokeFailure::Blocked(r.name.to_string())),
            LifecycleState::Retired => Err(InvokeFailure::Retired(r.name.to_string())),
            _ => Ok(r.primary.clone()),
        }
    }

    /// Persists an Event invocation and returns its request id once it is durable.
    pub async fn enqueue_event(
        &self,
        caller: &AccountId,
        reference: &str,
        payload: Bytes,
    ) -> Result<String, InvokeFailure> {
        self.check(caller, reference).await?;
        let id = self.scheduler.request_id();
        let (registry, acct, r, event_id) = (self.registry.clone(), caller.clone(), reference.to_string(), id.clone());
        tokio::task::spawn_blocking(move || registry.enqueue_event(&acct, &r, event_id, payload.to_vec()))
            .await
            .map_err(|e| InvokeFailure::Scheduler(InvokeError::Platform(e.to_string())))??;
        self.events_ready.notify_one();
        Ok(id)
    }

    /// An Event invocation was queued other than by this invoker (by another node, or a redrive): look at
    /// the queue now rather than at the next poll.
    pub fn events_queued(&self) {
        self.events_ready.notify_one();
    }

    /// Runs Event invocations from the durable queue, at most `parallel` at once, retrying failures twice
    /// with back-off; looks at the queue when an event is queued and every `poll` (retries come due). Runs
    /// until the process ends.
    pub fn run_events(self: &Arc<Self>, parallel: usize, base_backoff: Duration, poll: Duration) {
        let invoker = Arc::downgrade(self);
        let slots = Arc::new(tokio::sync::Semaphore::new(parallel));
        tokio::spawn(async move {
            loop {
                let Some(me) = invoker.upgrade() else { return };
                let ready = me.events_ready.clone();
                let free = slots.available_permits();
                let claimed = if free == 0 {
                    Ok(vec![])
                } else {
                    let registry = me.registry.clone();
                    tokio::task::spawn_blocking(move || stoke_store::in_background(|| registry.claim_events(free)))
                        .await
                        .unwrap_or_else(|e| Err(RegistryError::Store(stoke_store::StoreError::Corrupt(e.to_string()))))
                };
                match claimed {
                    Ok(events) if !events.is_empty() => {
                        for event in events {
                            let Ok(permit) = slots.clone().acquire_owned().await else { return };
                            let me = me.clone();
                            tokio::spawn(async move {
                                me.run_event(event, base_backoff).await;
                                drop(permit);
                            });
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot read the event queue"),
                }
                drop(me);
                let _ = tokio::time::timeout(poll, ready.notified()).await;
            }
        });
    }

    async fn run_event(&self, mut event: stoke_store::EventRecord, base_backoff: Duration) {
        use stoke_core::event::{after_attempt, AttemptOutcome, EventNext};
        let to_machine = machine_of(&event.reference).is_some();
        let (outcome, error_type, result, version) = match machine_of(&event.reference) {
            Some(machine) => self.deliver_to_machine(&event, machine).await,
            None => self.attempt_event(&event).await,
        };
        if !matches!(outcome, AttemptOutcome::Throttled | AttemptOutcome::Unavailable) {
            event.attempts += 1;
            event.error_type = error_type;
            event.result = result;
            event.executed_version = version.or(event.executed_version.take());
        }
        let now = crate::registry::now_ms();
        let deferred = matches!(outcome, AttemptOutcome::Throttled | AttemptOutcome::Unavailable);
        // The function's event invoke config decides the retries, the age and where the outcome goes.
        let rules = if to_machine {
            crate::registry::EventRules::default()
        } else {
            let (registry, account, reference) =
                (self.registry.clone(), event.account.clone(), event.reference.clone());
            let mut rules = tokio::task::spawn_blocking(move || registry.event_rules(&account, &reference))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            // An event with its own rule (a schedule's fire) keeps it; its function's destinations apply.
            if event.max_retries.is_some() || event.max_age_s.is_some() {
                rules.policy = stoke_core::event::EventPolicy {
                    max_retries: event.max_retries.unwrap_or(rules.policy.max_retries),
                    max_age: event.max_age_s.map_or(rules.policy.max_age, |s| Duration::from_secs(u64::from(s))),
                };
            }
            rules
        };
        let age = Duration::from_millis(u64::try_from(now - event.created_ms).unwrap_or(0));
        // Whether the last attempt that ran failed (the record's functionError), read before an expiry
        // overwrites the error type.
        let failed = event.error_type.is_some();
        let (counted, destination) = match after_attempt(&rules.policy, event.attempts, age, outcome, base_backoff) {
            EventNext::Succeeded => {
                event.state = stoke_store::EventState::Succeeded;
                event.finished_ms = Some(now);
                (EventOutcome::Succeeded, rules.on_success.map(|d| (d, Condition::Success)))
            }
            EventNext::Failed => {
                event.state = stoke_store::EventState::Failed;
                event.finished_ms = Some(now);
                tracing::warn!(event = %event.id, reference = %event.reference, "event invocation failed after all attempts");
                (EventOutcome::Failed, rules.on_failure.map(|d| (d, Condition::RetriesExhausted)))
            }
            EventNext::Expired => {
                event.state = stoke_store::EventState::Failed;
                event.finished_ms = Some(now);
                tracing::warn!(event = %event.id, reference = %event.reference, "event invocation past its maximum age");
                // As Lambda names it in its invocation record's condition.
                event.error_type = Some("EventAgeExceeded".into());
                (EventOutcome::Expired, rules.on_failure.map(|d| (d, Condition::EventAgeExceeded)))
            }
            EventNext::RetryAfter(delay) => {
                event.state = stoke_store::EventState::Queued;
                event.next_attempt_ms = now + stoke_core::num::millis_i64(delay);
                (if deferred { EventOutcome::Deferred } else { EventOutcome::Retried }, None)
            }
        };
        self.count_event(&event.account, &event.reference, counted);
        let follow_up = destination.map(|(d, c)| self.follow_up(&event, d, c, failed, now));
        self.record_event(event, follow_up).await
    }

    /// One attempt of an Event invocation of a function: how it went, its error type, its output (or error
    /// body), and the version that ran.
    async fn attempt_event(
        &self,
        event: &stoke_store::EventRecord,
    ) -> (stoke_core::event::AttemptOutcome, Option<String>, Option<Vec<u8>>, Option<String>) {
        use stoke_core::event::AttemptOutcome;
        // Every attempt runs under the request id the 202 named, as Lambda's retries do: a function tells a
        // retry (or a run again after a lost node) by seeing an id it has seen before.
        let req = InvokeRequest {
            payload: Bytes::from(event.payload.clone()),
            client_context: None,
            want_log: false,
            request_id: Some(event.id.clone()),
            ..Default::default()
        };
        match self.invoke(&event.account, &event.reference, req).await {
            Ok((r, version)) => match r.outcome {
                stoke_scheduler::Outcome::Success(body) => {
                    (AttemptOutcome::Succeeded, None, Some(body.to_vec()), Some(version))
                }
                stoke_scheduler::Outcome::FunctionError { error_type, body } => {
                    (AttemptOutcome::Failed, Some(error_type), Some(body.to_vec()), Some(version))
                }
            },
            Err(InvokeFailure::Scheduler(InvokeError::Throttled { .. })) => {
                (AttemptOutcome::Throttled, None, None, None)
            }
            // A full disk, an unreachable store: the event waits for the platform, its attempts untouched.
            Err(e) if e.platform_unavailable() => {
                tracing::debug!(event = %event.id, error = %e, "the platform cannot run an event invocation now");
                (AttemptOutcome::Unavailable, None, None, None)
            }
            Err(e) => {
                (AttemptOutcome::Failed, Some("Stoke.InvokeFailed".to_string()), Some(e.to_string().into_bytes()), None)
            }
        }
    }

    /// Delivers an invocation record to a state machine: starts an execution named after the delivery, with
    /// the record as its input (started already counts as delivered: the name makes it happen once).
    async fn deliver_to_machine(
        &self,
        event: &stoke_store::EventRecord,
        machine: &str,
    ) -> (stoke_core::event::AttemptOutcome, Option<String>, Option<Vec<u8>>, Option<String>) {
        use crate::workflows::WorkflowError;
        use stoke_core::event::AttemptOutcome;
        let Some(workflows) = self.workflows.get().and_then(std::sync::Weak::upgrade) else {
            return (AttemptOutcome::Unavailable, None, None, None);
        };
        let (account, machine, name) = (event.account.clone(), machine.to_string(), event.id.clone());
        let input = String::from_utf8_lossy(&event.payload).into_owned();
        let started = tokio::task::spawn_blocking(move || {
            workflows.start(&account, &machine, Some(&name), Some(&input), None, false).map(|e| e.id)
        })
        .await;
        match started {
            Ok(Ok(_)) | Ok(Err(WorkflowError::Exists(_))) => (AttemptOutcome::Succeeded, None, None, None),
            Ok(Err(WorkflowError::Store(e))) if e.is_full() || matches!(e, StoreError::Unavailable(_)) => {
                (AttemptOutcome::Unavailable, None, None, None)
            }
            Ok(Err(e)) => {
                let kind = match e {
                    WorkflowError::WorkflowNotFound(_) => "StateMachineDoesNotExist",
                    _ => "Stoke.DeliveryFailed",
                };
                (AttemptOutcome::Failed, Some(kind.into()), Some(e.to_string().into_bytes()), None)
            }
            Err(e) => (AttemptOutcome::Unavailable, None, Some(e.to_string().into_bytes()), None),
        }
    }

    /// The event that takes `event`'s invocation record to `destination`, queued now.
    fn follow_up(
        &self,
        event: &stoke_store::EventRecord,
        destination: String,
        condition: Condition,
        ran_and_failed: bool,
        now: i64,
    ) -> stoke_store::EventRecord {
        let named = stoke_core::FunctionRef::parse(&event.reference).ok();
        let qualifier = event.executed_version.clone().unwrap_or_else(|| {
            named.as_ref().and_then(|r| r.qualifier.as_ref()).unwrap_or(&stoke_core::Qualifier::Latest).to_string()
        });
        let arn = match &named {
            Some(r) => function_arn(&self.region, &event.account, &r.name, Some(&qualifier)),
            None => event.reference.clone(),
        };
        let response = (event.attempts > 0).then(|| stoke_core::destination::Response {
            executed_version: &qualifier,
            function_error: ran_and_failed,
            payload: event.result.as_deref().unwrap_or_default(),
        });
        let record = stoke_core::destination::invocation_record(&stoke_core::destination::Record {
            timestamp_ms: now,
            request_id: &event.id,
            function_arn: &arn,
            condition,
            attempts: event.attempts,
            request_payload: &event.payload,
            response,
        });
        stoke_store::EventRecord::queued(
            self.scheduler.request_id(),
            event.account.clone(),
            destination,
            record.into_bytes(),
            now,
        )
    }

    /// Records an event's outcome (and queues its record for a destination in the same write). It must be
    /// recorded, or the event stays claimed and is never run again (a full disk, an unreachable store):
    /// keeps trying until it is.
    async fn record_event(&self, event: stoke_store::EventRecord, follow_up: Option<stoke_store::EventRecord>) {
        let sending = follow_up.is_some();
        let (event, follow_up) = (Arc::new(event), Arc::new(follow_up));
        for attempt in 0u64.. {
            let (registry, record, next) = (self.registry.clone(), event.clone(), follow_up.clone());
            let saved = tokio::task::spawn_blocking(move || match next.as_ref() {
                Some(next) => registry.finish_event(&record, next),
                None => registry.update_event(&record),
            })
            .await;
            let error = match saved {
                Ok(Ok(())) => {
                    if sending {
                        self.count_event(&event.account, &event.reference, EventOutcome::ToDestination);
                        self.events_ready.notify_one();
                    }
                    return;
                }
                Ok(Err(e)) if !e.is_transient() => {
                    tracing::error!(event = %event.id, error = %e, "cannot record an event invocation's outcome");
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            if attempt == 0 {
                tracing::error!(event = %event.id, %error, "cannot record an event invocation's outcome; retrying");
            }
            tokio::time::sleep(stoke_core::event::PLATFORM_RETRY).await;
        }
    }

    /// Keeps `min_warm` instances of every function and alias that asks for them, re-planned whenever the
    /// registry changes. Runs until the process ends.
    pub fn keep_warm(self: &Arc<Self>) {
        let invoker = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut seen = (u64::MAX, 0);
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let Some(invoker) = invoker.upgrade() else { return };
                // In a cluster, a version is kept warm by its queue's owner; when an owner is lost, another
                // node takes the queue, and its instances, over.
                let owners = invoker.queues().map_or(0, |q| q.changes());
                let generation = (invoker.registry.generation(), owners);
                if generation == seen {
                    continue;
                }
                seen = generation;
                let registry = invoker.registry.clone();
                let targets =
                    match tokio::task::spawn_blocking(move || stoke_store::in_background(|| registry.warm_targets()))
                        .await
                    {
                        Ok(Ok(t)) => t,
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "cannot list functions to keep warm");
                            continue;
                        }
                        Err(_) => continue,
                    };
                for (account, reference) in targets {
                    match invoker.resolve(&account, &reference).await {
                        Ok(r) if r.state.admission() == Admission::Accept => {
                            let here = match invoker.queues() {
                                None => true,
                                Some(q) => match q.route(&r.primary).await {
                                    Ok(route) => route == crate::queues::Route::Local,
                                    Err(e) => {
                                        tracing::warn!(error = %e, reference, "cannot tell which node keeps it warm");
                                        seen.0 = u64::MAX; // look again
                                        false
                                    }
                                },
                            };
                            if here {
                                invoker.scheduler.keep_warm(&r.primary);
                            }
                        }
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

    /// The pool an invocation of `reference` by `caller` would use now (its primary version), for the
    /// workflow pre-warmer; `None` when it cannot be invoked.
    pub async fn pool_target(&self, caller: &AccountId, reference: &str) -> Option<Arc<InvokeTarget>> {
        let r = self.resolve(caller, reference).await.ok()?;
        (r.state.admission() == Admission::Accept).then(|| r.primary.clone())
    }

    /// Runs an invocation of `reference` for `caller`; returns the result and the version that ran. In a
    /// cluster it runs from the version's one queue: here if this node owns it, else at its owner.
    pub async fn invoke(
        &self,
        caller: &AccountId,
        reference: &str,
        req: InvokeRequest,
    ) -> Result<(InvokeResult, String), InvokeFailure> {
        let resolution = self.admit(caller, reference).await?;
        let target = match &resolution.secondary {
            Some((extra, weight)) if self.sample() < *weight => extra,
            _ => &resolution.primary,
        };
        // A workflow's steps go to their queues' owners like any invocation (the owner holds what the
        // execution prepared); those of an execution with a scratch directory stay on its node, with it.
        if let (Some(queues), false) = (self.queues.get(), req.scratch) {
            if let Some(result) = self.forward(queues, target, reference, &req).await? {
                return Ok((result, target.version.clone()));
            }
        }
        let result = self.scheduler.invoke(target, req).await?;
        Ok((result, target.version.clone()))
    }

    /// Sends an invocation of `target` to its queue's owner when that is another node, and returns what it
    /// came to; `None` when this node owns the queue. An invocation the owner was lost with before it
    /// started goes to the queue's next owner (this node, perhaps); one lost after it started fails with
    /// [`InvokeError::NodeLost`].
    async fn forward(
        &self,
        queues: &crate::queues::Queues,
        target: &Arc<InvokeTarget>,
        reference: &str,
        req: &InvokeRequest,
    ) -> Result<Option<InvokeResult>, InvokeFailure> {
        use crate::queues::{Forwarded, Route};
        let give_up = Instant::now() + REROUTE_LIMIT;
        loop {
            let owner = match queues.route(target).await.map_err(RegistryError::Store)? {
                Route::Local => return Ok(None),
                Route::Remote(owner) => owner,
            };
            match queues.forward(&owner, target, reference, req).await {
                Forwarded::Done(result) => return Ok(Some((*result)?)),
                Forwarded::NotStarted(why) => {
                    if Instant::now() >= give_up {
                        return Err(InvokeFailure::Scheduler(InvokeError::NodeLost(format!(
                            "the queue of {}:{} had no reachable owner for {} s ({why}); it did not run: retry it",
                            target.function,
                            target.version,
                            REROUTE_LIMIT.as_secs()
                        ))));
                    }
                    tracing::debug!(%why, "a forwarded invocation did not start; sending it to the queue's next owner");
                    let name = crate::queues::queue_name(target);
                    queues.until_replaced(&name, &owner, Duration::from_millis(500)).await;
                    if queues.owner_of(&name).is_none() {
                        // The queue is free: the nodes that hosted its instances compete first.
                        tokio::time::sleep(crate::queues::HOST_HEAD_START).await;
                    }
                }
            }
        }
    }

    /// Runs an invocation another node forwarded here because this node owns the queue of `version` (the
    /// version the forwarding node picked when it resolved `reference`). It runs here, whatever this node
    /// thinks of the queue's owner now: an invocation is forwarded once.
    pub async fn invoke_as_owner(
        &self,
        caller: &AccountId,
        reference: &str,
        version: &str,
        req: InvokeRequest,
    ) -> Result<InvokeResult, InvokeFailure> {
        let target = self.version_target(caller, reference, version).await?;
        Ok(self.scheduler.invoke(&target, req).await?)
    }

    /// The node that owns `target`'s queue, when that is another node (cluster mode); `None` here.
    async fn remote_owner(
        &self,
        target: &InvokeTarget,
    ) -> Option<(&Arc<crate::queues::Queues>, stoke_store::QueueOwner)> {
        let queues = self.queues.get()?;
        match queues.route(target).await {
            Ok(crate::queues::Route::Remote(owner)) => Some((queues, owner)),
            Ok(crate::queues::Route::Local) => None,
            Err(e) => {
                tracing::debug!(error = %e, function = %target.function, "the queue's owner is unknown; using this node's view");
                None
            }
        }
    }

    /// `target`'s pool at its queue's owner, when that is another node that answers.
    async fn pool_at_owner(&self, target: &InvokeTarget) -> Option<stoke_core::pool::PoolSnapshot> {
        let (queues, owner) = self.remote_owner(target).await?;
        queues.pool_at(&owner, target).await
    }

    /// `target`'s pool where its queue is (at its owner, in a cluster), for the workflow pre-warmer.
    pub async fn pool(&self, target: &Arc<InvokeTarget>) -> stoke_core::pool::PoolSnapshot {
        match self.pool_at_owner(target).await {
            Some(pool) => pool,
            None => self.scheduler.pool(target),
        }
    }

    /// Announces `count` invocations of `target` soon (the pre-warmer) to its queue's pool, wherever its
    /// owner is: the owner's controller starts instances for them on the node it picks.
    pub async fn announce(&self, target: &Arc<InvokeTarget>, count: usize, ttl: Duration) {
        match self.remote_owner(target).await {
            Some((queues, owner)) => queues.announce_at(&owner, target, count, ttl).await,
            None => self.scheduler.announce(target, count, ttl),
        }
    }

    /// Releases `execution`'s open reservations of `targets` (a Choice ruled them out, or it ended), here
    /// and at the owners of their queues on other nodes. A queue no node owns holds no reservation: a
    /// release claims none.
    pub async fn release_reservations(&self, execution: &str, targets: &[Arc<InvokeTarget>], why: &str) {
        self.scheduler.release_reservations(execution, Some(targets), why);
        let Some(queues) = self.queues.get() else { return };
        for target in targets {
            match queues.owner_of(&crate::queues::queue_name(target)) {
                Some(owner) if owner.node != queues.node() => queues.release_at(&owner, target, execution, why).await,
                _ => {}
            }
        }
    }

    /// What runs `version` of the function `reference` names, as `caller` would invoke it.
    pub async fn version_target(
        &self,
        caller: &AccountId,
        reference: &str,
        version: &str,
    ) -> Result<Arc<InvokeTarget>, InvokeFailure> {
        let resolution = self.admit(caller, reference).await?;
        let picked = std::iter::once(&resolution.primary)
            .chain(resolution.secondary.as_ref().map(|(t, _)| t))
            .find(|t| t.version == version)
            .cloned();
        Ok(match picked {
            Some(t) => t,
            // The alias moved on meanwhile: run the version the caller's node picked.
            None => self.admit(caller, &format!("{}:{version}", resolution.name)).await?.primary.clone(),
        })
    }

    /// Resolves `reference` and applies its function's lifecycle: waits while an update is in progress,
    /// refuses a blocked or retired function.
    async fn admit(&self, caller: &AccountId, reference: &str) -> Result<Arc<Resolution>, InvokeFailure> {
        let started = Instant::now();
        loop {
            let r = self.resolve(caller, reference).await?;
            match r.state.admission() {
                Admission::Accept => return Ok(r),
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
        }
    }

    /// Routes invocations through the cluster's queues (a cluster node, once it has joined).
    pub fn route_through(&self, queues: Arc<crate::queues::Queues>) {
        let _ = self.queues.set(queues);
    }

    /// The cluster's queues, on a cluster node.
    pub fn queues(&self) -> Option<&Arc<crate::queues::Queues>> {
        self.queues.get()
    }
}

/// The state machine an event's reference names when it carries an invocation record to a state machine
/// destination.
fn machine_of(reference: &str) -> Option<&str> {
    stoke_core::reference::parse_state_machine_arn(reference).map(|(_, name)| name)
}

/// Resolves the references running functions name (`prepare`, `is_available`) as invocations of them by
/// the function's account would be: a reservation is made for the version the step will invoke.
pub struct InvokerResolver(pub std::sync::Weak<Invoker>);

impl stoke_scheduler::Resolver for InvokerResolver {
    fn resolve<'a>(
        &'a self,
        account: &'a AccountId,
        reference: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Arc<InvokeTarget>, stoke_scheduler::Refusal>> + Send + 'a>,
    > {
        Box::pin(async move {
            let refuse = |status: u16, code: &str, message: String| stoke_scheduler::Refusal {
                status,
                code: code.to_string(),
                message,
            };
            let Some(invoker) = self.0.upgrade() else {
                return Err(refuse(503, "Stoke.Unavailable", "the server is shutting down".into()));
            };
            invoker.check(account, reference).await.map_err(|e| match &e {
                InvokeFailure::Registry(RegistryError::NotFound(_)) => {
                    refuse(404, "ResourceNotFoundException", e.to_string())
                }
                InvokeFailure::Blocked(_) | InvokeFailure::Retired(_) => {
                    refuse(409, "ResourceConflictException", e.to_string())
                }
                _ => refuse(400, "InvalidParameterValueException", e.to_string()),
            })
        })
    }

    fn prepare_at_owner<'a>(
        &'a self,
        target: &'a Arc<InvokeTarget>,
        execution: &'a str,
        params: Bytes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Result<u64, InvokeError>>> + Send + 'a>> {
        Box::pin(async move {
            let invoker = self.0.upgrade()?;
            let (queues, owner) = invoker.remote_owner(target).await?;
            Some(queues.prepare_at(&owner, target, execution, params).await)
        })
    }

    fn pool_at_owner<'a>(
        &'a self,
        target: &'a Arc<InvokeTarget>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<stoke_core::pool::PoolSnapshot>> + Send + 'a>> {
        Box::pin(async move { self.0.upgrade()?.pool_at_owner(target).await })
    }
}

impl crate::queues::RunHere for Invoker {
    fn run_here<'a>(
        &'a self,
        account: &'a AccountId,
        reference: &'a str,
        version: &'a str,
        req: InvokeRequest,
        prepared: Option<stoke_scheduler::Prepared>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<InvokeResult, InvokeError>> + Send + 'a>> {
        Box::pin(async move {
            let ran = match prepared {
                None => self.invoke_as_owner(account, reference, version, req).await,
                Some(prepared) => match self.version_target(account, reference, version).await {
                    Ok(target) => self.scheduler.invoke_prepared(&target, req, prepared).await.map_err(Into::into),
                    Err(e) => Err(e),
                },
            };
            ran.map_err(|e| match e {
                InvokeFailure::Scheduler(e) => e,
                // This node's view of the function (deleted or blocked meanwhile): the platform's, to the
                // node that asked.
                other => InvokeError::Platform(other.to_string()),
            })
        })
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
