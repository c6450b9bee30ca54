//! Lambda durable executions on this node: each execution's engine state (`stoke_core::durable`), written
//! to the store before anything is answered, and the loop that invokes its function until it ends.
//!
//! One task per running execution invokes the function with the envelope the SDK reads, and sleeps until
//! its next timer (a wait, a step's retry, a callback's timeout, the execution's own limit) or until a
//! callback's answer wakes it. Every change is one store write under the execution's lock, revision-checked:
//! a node whose copy is behind (another node applied a checkpoint) reads the execution again and applies
//! the change to what is stored. An invocation's start is written before the function is invoked, so a server
//! that dies during it records it, on its next start, as an invocation that failed, and tries again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stoke_core::durable::{
    self as engine, DurableError, DurableExecution, DurableHead, ErrorObject, Event, ExecutionStatus, InvocationOutput,
    Operation, OperationUpdate,
};
use stoke_core::{AccountId, FunctionName};
use stoke_scheduler::InvokeTarget;
use stoke_store::{DurableEventRow, DurableOpRow, DurableRecord, Store, StoreError};

use crate::accounts::Scope;
use crate::invoke::InvokeFailure;
use crate::registry::now_ms;
use crate::services::Services;

/// Why a durable execution operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum DurableFailure {
    #[error(transparent)]
    Engine(#[from] DurableError),
    /// The name is taken by an execution of another input.
    #[error("{0}")]
    AlreadyStarted(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// A durable function's key used on another function's execution.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Invoke(#[from] InvokeFailure),
}

impl From<StoreError> for DurableFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => DurableFailure::NotFound(format!("{what} does not exist")),
            other => DurableFailure::Store(other),
        }
    }
}

type Result<T> = std::result::Result<T, DurableFailure>;

/// Expired executions deleted per store call.
const SWEEP_BATCH: usize = 500;
/// How often expired executions are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// An execution's head as stored: the engine's, and the node whose loop runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredHead {
    #[serde(flatten)]
    head: DurableHead,
    /// The node running its loop (in a cluster); `None` on a single node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
}

/// The head as stored, with the node whose loop runs the execution.
fn head_json(x: &DurableExecution, owner: Option<&String>) -> String {
    let stored = StoredHead { head: x.head().clone(), node: owner.cloned() };
    serde_json::to_string(&stored).unwrap_or_default()
}

/// An execution started by an invocation of its function.
#[derive(Debug, Clone)]
pub struct Started {
    pub arn: String,
    pub id: String,
    /// The execution of that name was started before, with the same input: this is it.
    pub existing: bool,
}

/// What a synchronous invocation of a durable function answers.
#[derive(Debug, Clone)]
pub struct SyncAnswer {
    /// The version that ran.
    pub version: String,
    pub status: String,
    /// The execution's result, or its error as a function's error (`{errorType, errorMessage}`).
    pub body: String,
    /// Set when the execution did not succeed (or still runs).
    pub error_type: Option<String>,
}

/// What a loaded execution is, and what its loop is to do next.
struct Loaded {
    x: DurableExecution,
    record: DurableRecord,
    /// Behind the store (a write failed, or another node wrote): read again before the next change.
    stale: bool,
    /// The function is to be invoked as soon as the loop looks (a callback was answered, it was resumed).
    invoke_due: bool,
    /// When a failed invocation is tried again.
    retry_at: Option<i64>,
    /// In a cluster: the node whose loop runs it (kept by every node that writes it).
    owner: Option<String>,
}

/// An execution this node holds.
struct Live {
    id: String,
    account: AccountId,
    state: tokio::sync::Mutex<Option<Loaded>>,
    wake: tokio::sync::Notify,
    /// Whether this node runs its loop (it started or resumed it); other nodes only apply what reaches
    /// them, reading it fresh each time.
    runs_loop: bool,
    done: tokio::sync::watch::Sender<bool>,
    /// The resume time an instance was last started for (the pre-warmer), so it is started once.
    warmed_for: Mutex<Option<i64>>,
}

/// The durable execution service.
pub struct Durable {
    /// The store, the invoker, the statistics and the pre-warm policy executions run with (the server's
    /// `--prewarm`: whether a resume after a known wait is warmed).
    services: Arc<Services>,
    /// In a cluster: this node's name, recorded on the executions whose loops it runs.
    node: Option<String>,
    live: Mutex<HashMap<String, Arc<Live>>>,
    /// Chained invokes under way from this node: (execution id, operation id).
    chained: Mutex<std::collections::HashSet<(String, String)>>,
    me: Weak<Durable>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn status_name(status: ExecutionStatus) -> String {
    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // Without the system's randomness a token's random part falls back to the clock: still single-use.
    if getrandom::fill(&mut b).is_err() {
        return u64::try_from(now_ms()).unwrap_or_default().wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    u64::from_le_bytes(b)
}

/// How long a sync invocation waits for its execution (Lambda's limit for a synchronous durable invoke).
pub const SYNC_WAIT: Duration = Duration::from_secs(900);
/// How long the loop waits before trying again when the store or the platform failed it.
const RETRY_LATER: Duration = Duration::from_secs(1);
/// In a cluster: how often a waiting execution's loop looks at the store for what other nodes wrote.
const CLUSTER_LOOK_MS: i64 = 2_000;
/// A durable execution name: 1-64 letters, digits, `-` or `_`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Durable {
    pub fn new(services: Arc<Services>, node: Option<String>) -> Arc<Self> {
        Arc::new_cyclic(|me| Durable {
            services,
            node,
            live: Mutex::new(HashMap::new()),
            chained: Mutex::default(),
            me: me.clone(),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> std::result::Result<T, StoreError> + Send + 'static,
    ) -> std::result::Result<T, StoreError> {
        let store = self.services.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .unwrap_or_else(|e| Err(StoreError::Io(std::io::Error::other(e.to_string()))))
    }

    /// Starts an execution of `target` (a durable function's version) with `payload`, named `name` (or a
    /// new id). The same name with the same input is the execution started before; with another input it
    /// is refused. The execution is stored before this returns, and its loop runs.
    pub async fn start(&self, target: &Arc<InvokeTarget>, name: Option<&str>, payload: &Bytes) -> Result<Started> {
        self.start_as(target, name, crate::workflows::uuid(), payload).await
    }

    /// [`Durable::start`] with the new execution's id given (a chained invoke's, derived from its caller).
    async fn start_as(
        &self,
        target: &Arc<InvokeTarget>,
        name: Option<&str>,
        id: String,
        payload: &Bytes,
    ) -> Result<Started> {
        let Some(config) = target.config.durable else {
            return Err(DurableFailure::Invalid(format!("function {} is not durable", target.function)));
        };
        let name = name.map_or_else(|| id.clone(), str::to_string);
        if !valid_name(&name) {
            return Err(DurableFailure::Invalid(format!(
                "durable execution name {name:?} is not valid: use 1-64 letters, digits, '-' or '_'"
            )));
        }
        let input = String::from_utf8_lossy(payload).into_owned();
        let input_sha256 = stoke_store::sha256_hex(payload);
        let (account, function) = (target.account.clone(), target.function.clone());
        if let Some(found) = self.find(&account, &function, &name, &input_sha256).await? {
            return Ok(found);
        }
        let function_arn =
            stoke_core::reference::function_arn(&self.services.region, &account, &function, Some(&target.version));
        let arn = engine::execution_arn(&function_arn, &name, &id);
        let now = now_ms();
        let mut x = DurableExecution::start(&arn, &name, &input, u64::from(config.execution_timeout_s), now);
        let record = DurableRecord {
            id: id.clone(),
            account: account.clone(),
            function: function.clone(),
            version: target.version.clone(),
            name: name.clone(),
            arn: arn.clone(),
            status: status_name(x.status),
            input_sha256: input_sha256.clone(),
            started_ms: now,
            ended_ms: None,
            next_deadline_ms: x.next_deadline(),
            revision: 0,
            head: head_json(&x, self.node.as_ref()),
            retention_days: config.retention_days,
            expires_ms: None,
        };
        let (ops, events) = rows(x.take_delta());
        let stored = record.clone();
        match self.blocking(move |s| s.insert_durable(&stored, &ops, &events)).await {
            Ok(()) => {}
            // Another call started that name a moment ago.
            Err(StoreError::Conflict(_)) => {
                return self.find(&account, &function, &name, &input_sha256).await?.ok_or_else(|| {
                    DurableFailure::AlreadyStarted(format!("durable execution {name} was started meanwhile"))
                });
            }
            Err(e) => return Err(e.into()),
        }
        let owner = self.node.clone();
        let loaded = Loaded { x, record, stale: false, invoke_due: true, retry_at: None, owner };
        self.run(&id, account, loaded);
        Ok(Started { arn, id, existing: false })
    }

    async fn find(
        &self,
        account: &AccountId,
        function: &FunctionName,
        name: &str,
        input_sha256: &str,
    ) -> Result<Option<Started>> {
        let (a, f, n) = (account.clone(), function.clone(), name.to_string());
        let Some(found) = self.blocking(move |s| s.find_durable(&a, &f, &n)).await? else { return Ok(None) };
        if found.input_sha256 != input_sha256 {
            return Err(DurableFailure::AlreadyStarted(format!(
                "durable execution {name} of function {function} was started with another input: give the same \
                 input to reach it, or another name"
            )));
        }
        Ok(Some(Started { arn: found.arn, id: found.id, existing: true }))
    }

    /// Holds `loaded` and spawns its loop.
    fn run(&self, id: &str, account: AccountId, loaded: Loaded) {
        let live = Arc::new(Live {
            id: id.to_string(),
            account,
            state: tokio::sync::Mutex::new(Some(loaded)),
            wake: tokio::sync::Notify::new(),
            runs_loop: true,
            done: tokio::sync::watch::Sender::new(false),
            warmed_for: Mutex::new(None),
        });
        lock(&self.live).insert(id.to_string(), live.clone());
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            // Chained invokes it had started (before a restart) are taken on again.
            me.resume_chained(&live).await;
            me.run_loop(live).await
        });
    }

    /// Resumes the running executions this node runs (all of them on a single node): one whose invocation
    /// was cut off by the server's end is recorded as a failed invocation and tried again.
    pub async fn resume(&self) -> Result<usize> {
        let running = self.blocking(|s| s.running_durable()).await?;
        let mut resumed = 0;
        for record in running {
            let node = serde_json::from_str::<StoredHead>(&record.head).ok().and_then(|h| h.node);
            let looping = lock(&self.live).get(&record.id).is_some_and(|l| l.runs_loop);
            if node != self.node || looping {
                continue;
            }
            let (id, account) = (record.id.clone(), record.account.clone());
            let loaded = match self.load(&account, &id).await {
                Ok(loaded) => loaded,
                Err(e) => {
                    tracing::error!(execution = %id, error = %e, "cannot read a durable execution to resume it");
                    continue;
                }
            };
            match self.resume_loaded(&id, account, loaded).await {
                Ok(()) => resumed += 1,
                Err(e) => tracing::error!(execution = %id, error = %e, "cannot resume a durable execution"),
            }
        }
        Ok(resumed)
    }

    /// Runs here an execution read from the store that no loop runs: an invocation it had under way (the
    /// server or node that ran it stopped) counts as failed, and the function is invoked again at once. The
    /// change is written first (revision-checked), then the loop starts.
    async fn resume_loaded(&self, id: &str, account: AccountId, mut loaded: Loaded) -> Result<()> {
        if let Some(started) = loaded.x.invocation_started_ms {
            let lost = ErrorObject::new(
                "Stoke.InvocationLost",
                "the server stopped while the function was running; the invocation is tried again",
            );
            loaded.x.end_invocation("", started, InvocationOutput::Error(lost), now_ms(), None);
        }
        loaded.invoke_due = true;
        self.persist(&mut loaded).await?;
        self.run(id, account, loaded);
        Ok(())
    }

    /// In a cluster: takes over the running executions whose loops ran on the `lost` nodes (leases lapsed):
    /// each is recorded as this node's, revision-checked (of several nodes doing this at once, one wins), and
    /// resumed here — an invocation the lost node had under way counts as failed and the function is invoked
    /// again, the SDK replaying what was checkpointed. Returns how many it took.
    pub async fn take_over(&self, lost: &[String]) -> Result<usize> {
        let Some(me) = self.node.clone().filter(|_| !lost.is_empty()) else { return Ok(0) };
        let running = self.blocking(|s| s.running_durable()).await?;
        let mut taken = 0;
        for record in running {
            let node = serde_json::from_str::<StoredHead>(&record.head).ok().and_then(|h| h.node);
            if !node.as_ref().is_some_and(|n| lost.contains(n)) {
                continue;
            }
            let mut loaded = match self.load(&record.account, &record.id).await {
                Ok(l) if l.owner == node => l,
                Ok(_) | Err(DurableFailure::NotFound(_)) => continue,
                Err(e) => {
                    tracing::warn!(execution = %record.id, error = %e, "cannot read a lost node's durable execution");
                    continue;
                }
            };
            // Recorded as this node's in the same write that resumes it.
            loaded.owner = Some(me.clone());
            match self.resume_loaded(&record.id, record.account.clone(), loaded).await {
                Ok(()) => taken += 1,
                Err(DurableFailure::Store(StoreError::RevisionMismatch(_))) => {}
                Err(e) => tracing::warn!(execution = %record.id, error = %e, "cannot take over a durable execution"),
            }
        }
        if taken > 0 {
            tracing::warn!(nodes = ?lost, executions = taken, "took over the durable executions of nodes that are gone");
        }
        Ok(taken)
    }

    /// Deletes the executions whose retention ran out, with their operations and events, a batch at a time;
    /// returns how many.
    pub async fn sweep_expired(&self) -> Result<usize> {
        let mut deleted = 0;
        loop {
            let gone = self.blocking(|s| s.delete_expired_durable(now_ms(), SWEEP_BATCH)).await?;
            deleted += gone.len();
            let mut live = lock(&self.live);
            for x in &gone {
                live.remove(&x.id);
            }
            if gone.len() < SWEEP_BATCH {
                return Ok(deleted);
            }
        }
    }

    /// Sweeps expired executions now and every [`SWEEP_EVERY`] (on every node of a cluster: deleting one is
    /// idempotent).
    pub fn sweep_in_background(&self) {
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            loop {
                match me.sweep_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(executions = n, "durable executions past their retention deleted"),
                    Err(e) => tracing::warn!(error = %e, "cannot delete expired durable executions; trying later"),
                }
                tokio::time::sleep(SWEEP_EVERY).await;
            }
        });
    }

    /// Reads an execution from the store.
    async fn load(&self, account: &AccountId, id: &str) -> Result<Loaded> {
        let (a, i) = (account.clone(), id.to_string());
        let (record, ops, events) = self
            .blocking(move |s| {
                let Some(record) = s.get_durable(&a, &i)? else { return Ok(None) };
                Ok(Some((record, s.durable_operations(&i)?, s.durable_events(&i, 0, usize::MAX)?)))
            })
            .await?
            .ok_or_else(|| DurableFailure::NotFound(format!("durable execution {id} does not exist")))?;
        let broken = |what: &str, e: serde_json::Error| {
            DurableFailure::Store(StoreError::Corrupt(format!("durable execution {id}: {what}: {e}")))
        };
        let head: StoredHead = serde_json::from_str(&record.head).map_err(|e| broken("head", e))?;
        let ops: Vec<Operation> = ops
            .iter()
            .map(|o| serde_json::from_str(&o.data))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| broken("operation", e))?;
        let events: Vec<Event> = events
            .iter()
            .map(|e| serde_json::from_str(&e.data))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| broken("event", e))?;
        let x = DurableExecution::from_parts(head.head, ops, events);
        Ok(Loaded { x, record, stale: false, invoke_due: false, retry_at: None, owner: head.node })
    }

    /// Writes what changed; the record moves one revision on. A write refused (another node wrote, the
    /// store failed) leaves the copy stale, to be read again.
    async fn persist(&self, l: &mut Loaded) -> Result<()> {
        let delta = l.x.take_delta();
        let mut record = l.record.clone();
        record.status = status_name(l.x.status);
        record.ended_ms = l.x.ended_ms;
        record.expires_ms = l.x.ended_ms.map(|end| engine::expires_at(end, record.retention_days));
        record.next_deadline_ms = l.x.next_deadline();
        record.head = head_json(&l.x, l.owner.as_ref());
        let expected = record.revision;
        let (ops, events) = rows(delta);
        let stored = record.clone();
        match self.blocking(move |s| s.record_durable(&stored, expected, &ops, &events)).await {
            Ok(()) => {
                record.revision = expected + 1;
                l.record = record;
                Ok(())
            }
            Err(e) => {
                l.stale = true;
                Err(e.into())
            }
        }
    }

    /// The execution `id` of `account` as this node holds it (read from the store when it holds none).
    fn live(&self, account: &AccountId, id: &str) -> Result<Arc<Live>> {
        let mut all = lock(&self.live);
        let live = all
            .entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(Live {
                    id: id.to_string(),
                    account: account.clone(),
                    state: tokio::sync::Mutex::new(None),
                    wake: tokio::sync::Notify::new(),
                    runs_loop: false,
                    done: tokio::sync::watch::Sender::new(false),
                    warmed_for: Mutex::new(None),
                })
            })
            .clone();
        if live.account != *account {
            return Err(DurableFailure::NotFound(format!("durable execution {id} does not exist")));
        }
        Ok(live)
    }

    /// Applies `change` to execution `id` and writes it. When the copy here is behind the store (another node
    /// wrote), it is read again and the change applied to that, once more.
    async fn change<T>(
        &self,
        account: &AccountId,
        id: &str,
        scope: &Scope,
        mut change: impl FnMut(&mut Loaded, i64) -> std::result::Result<T, DurableError>,
    ) -> Result<(T, Arc<Live>)> {
        let live = self.live(account, id)?;
        let out = async {
            let mut guard = live.state.lock().await;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let l = self.current(&live, &mut guard).await?;
                check_scope(scope, &l.record)?;
                let out = change(l, now_ms())?;
                match self.persist(l).await {
                    Ok(()) => return Ok(out),
                    Err(DurableFailure::Store(StoreError::RevisionMismatch(_))) if attempt < 3 => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        .await;
        self.release(&live);
        out.map(|out| (out, live))
    }

    /// Reads execution `id` of `account` as it stands, changing nothing.
    async fn peek<T>(&self, account: &AccountId, id: &str, read: impl FnOnce(&Loaded) -> T) -> Result<T> {
        let live = self.live(account, id)?;
        let out = async {
            let mut guard = live.state.lock().await;
            let l = self.current(&live, &mut guard).await?;
            Ok::<_, DurableFailure>(read(l))
        }
        .await;
        self.release(&live);
        out
    }

    /// Forgets a copy this node held only to apply one change (the execution's loop runs elsewhere).
    fn release(&self, live: &Arc<Live>) {
        if !live.runs_loop {
            let mut all = lock(&self.live);
            if all.get(&live.id).is_some_and(|held| Arc::ptr_eq(held, live)) {
                all.remove(&live.id);
            }
        }
    }

    /// `CheckpointDurableExecution`: answers `{CheckpointToken, NewExecutionState}` once the change is stored.
    pub async fn checkpoint(
        &self,
        account: &AccountId,
        scope: &Scope,
        arn: &str,
        token: &str,
        client_token: Option<&str>,
        updates: &[OperationUpdate],
    ) -> Result<Value> {
        let id = self.id_of(account, arn)?;
        // A chained invoke's start event says what runs: the function is resolved before the change.
        let calls = self.chained_calls(account, &id, updates).await;
        let (answer, _) = self
            .change(account, &id, scope, |l, now| {
                let answer = l.x.checkpoint(token, client_token, updates, now)?;
                for call in &calls {
                    l.x.describe_chained_invoke(&call.op_id, &call.executed_version, call.execution_arn.as_deref());
                }
                Ok(answer)
            })
            .await?;
        for call in calls {
            self.dispatch(account, &id, call);
        }
        Ok(answer)
    }

    /// `GetDurableExecutionState`: a page of the operations, for the invocation holding `token`.
    pub async fn state(
        &self,
        account: &AccountId,
        scope: &Scope,
        arn: &str,
        token: &str,
        marker: usize,
        max: usize,
    ) -> Result<Value> {
        let id = self.id_of(account, arn)?;
        let live = self.live(account, &id)?;
        let page = async {
            let mut guard = live.state.lock().await;
            let l = self.current(&live, &mut guard).await?;
            check_scope(scope, &l.record)?;
            Ok::<_, DurableFailure>(l.x.state_page(token, marker, max)?)
        }
        .await;
        self.release(&live);
        let (ops, next) = page?;
        let mut out = json!({ "Operations": ops });
        if let Some(next) = next {
            out["NextMarker"] = json!(next.to_string());
        }
        Ok(out)
    }

    /// `SendDurableExecutionCallbackSuccess` / `Failure` / `Heartbeat`: `Ok` result, `Err` error, `None`.
    pub async fn answer_callback(
        &self,
        account: &AccountId,
        callback_id: &str,
        answer: Option<std::result::Result<String, ErrorObject>>,
    ) -> Result<()> {
        let Some((id, op)) = engine::parse_callback_id(callback_id) else {
            return Err(DurableFailure::NotFound(format!("callback {callback_id} does not exist")));
        };
        let (invoke, live) = self
            .change(account, &id, &Scope::Account, |l, now| {
                let invoke = l.x.answer_callback(&op, answer.clone(), now)?;
                l.invoke_due |= invoke;
                Ok(invoke)
            })
            .await
            .map_err(|e| match e {
                DurableFailure::NotFound(_) => {
                    DurableFailure::NotFound(format!("callback {callback_id} does not exist"))
                }
                other => other,
            })?;
        if invoke {
            self.wake(&live).await;
        }
        Ok(())
    }

    /// `StopDurableExecution`: answers when it stopped.
    pub async fn stop(&self, account: &AccountId, arn: &str, error: Option<ErrorObject>) -> Result<i64> {
        let id = self.id_of(account, arn)?;
        let (at, live) = self
            .change(account, &id, &Scope::Account, |l, now| {
                l.x.stop(error.clone(), now)?;
                Ok(now)
            })
            .await?;
        self.wake(&live).await;
        Ok(at)
    }

    /// Wakes the loop of an execution (this node's, or the node's that runs it).
    async fn wake(&self, live: &Arc<Live>) {
        if live.runs_loop {
            live.wake.notify_one();
        } else if let Some(held) = lock(&self.live).get(&live.id).filter(|l| l.runs_loop) {
            held.wake.notify_one();
        }
    }

    fn id_of(&self, account: &AccountId, arn: &str) -> Result<String> {
        let parsed = engine::parse_arn(arn).ok_or_else(|| {
            DurableFailure::Invalid(format!(
                "{arn:?} is not a durable execution ARN: arn:aws:lambda:<region>:<account>:function:<name>:<version>\
                 /durable-execution/<name>/<id>"
            ))
        })?;
        if parsed.account != account.as_str() || parsed.region != self.services.region {
            return Err(DurableFailure::NotFound(format!("durable execution {arn} does not exist")));
        }
        Ok(parsed.id)
    }

    /// The stored record of execution `id` of `account`.
    pub async fn record_by_id(&self, account: &AccountId, id: &str) -> Result<DurableRecord> {
        self.read_record(account, id, id).await
    }

    /// The stored record of execution `arn`.
    pub async fn record(&self, account: &AccountId, arn: &str) -> Result<DurableRecord> {
        let id = self.id_of(account, arn)?;
        self.read_record(account, &id, arn).await
    }

    /// The stored record of execution `id`; a missing one is named as the caller named it (`named`).
    async fn read_record(&self, account: &AccountId, id: &str, named: &str) -> Result<DurableRecord> {
        let (a, i) = (account.clone(), id.to_string());
        self.blocking(move |s| s.get_durable(&a, &i))
            .await?
            .ok_or_else(|| DurableFailure::NotFound(format!("durable execution {named} does not exist")))
    }

    /// An execution's input, from its first event (`ExecutionStarted`).
    pub async fn input(&self, record: &DurableRecord) -> Result<Option<String>> {
        let id = record.id.clone();
        let first = self.blocking(move |s| s.durable_events(&id, 0, 1)).await?;
        Ok(first
            .first()
            .and_then(|e| serde_json::from_str::<Event>(&e.data).ok())
            .and_then(|e| e.details["Input"]["Payload"].as_str().map(str::to_string)))
    }

    /// Waits for execution `started` of `target` as a synchronous invocation does (at most 15 minutes, or its
    /// timeout), and answers what the caller gets: its result, or its error as a function error.
    pub async fn answer_sync(
        &self,
        account: &AccountId,
        started: &Started,
        target: &InvokeTarget,
    ) -> Result<SyncAnswer> {
        let timeout = target.config.durable.map_or(1, |d| u64::from(d.execution_timeout_s));
        let limit = SYNC_WAIT.min(Duration::from_secs(timeout) + Duration::from_secs(1));
        let record = self.wait(account, &started.id, limit).await?;
        let (result, error) = self.outcome(&record);
        let (body, error_type) = match record.status.as_str() {
            "SUCCEEDED" => (result.unwrap_or_else(|| "null".into()), None),
            "RUNNING" => {
                let message = format!(
                    "the durable execution is still running after {} s, the most a synchronous invocation waits; it \
                     goes on: follow it with GetDurableExecution",
                    limit.as_secs()
                );
                (
                    json!({ "errorType": "Sandbox.Timedout", "errorMessage": message }).to_string(),
                    Some("Sandbox.Timedout".into()),
                )
            }
            _ => {
                let e = error.unwrap_or_default();
                let kind = e.error_type.unwrap_or_else(|| format!("Execution.{}", record.status));
                let mut v = json!({ "errorType": kind, "errorMessage": e.error_message.unwrap_or_default() });
                if let Some(trace) = e.stack_trace {
                    v["stackTrace"] = json!(trace);
                }
                (v.to_string(), Some(kind))
            }
        };
        Ok(SyncAnswer { version: record.version, status: record.status, body, error_type })
    }

    /// What an ended execution came to: its result, or its error.
    pub fn outcome(&self, record: &DurableRecord) -> (Option<String>, Option<ErrorObject>) {
        serde_json::from_str::<StoredHead>(&record.head).map_or((None, None), |h| (h.head.result, h.head.error))
    }

    /// `GetDurableExecution`.
    pub async fn describe(&self, account: &AccountId, arn: &str, include_data: bool) -> Result<Value> {
        let record = self.record(account, arn).await?;
        self.describe_record(&record, include_data).await
    }

    /// `GetDurableExecution` of a record already read.
    async fn describe_record(&self, record: &DurableRecord, include_data: bool) -> Result<Value> {
        let head: StoredHead = serde_json::from_str(&record.head).map_err(|e| {
            DurableFailure::Store(StoreError::Corrupt(format!("durable execution {}: {e}", record.arn)))
        })?;
        let h = head.head;
        let secs = |ms: i64| json!(ms as f64 / 1000.0);
        let mut out = json!({
            "DurableExecutionArn": record.arn,
            "DurableExecutionName": record.name,
            "FunctionArn": stoke_core::reference::function_arn(&self.services.region, &record.account, &record.function, Some(&record.version)),
            "Status": record.status,
            "StartTimestamp": secs(record.started_ms),
            "Version": record.version,
            "ExecutionDataIncluded": include_data,
        });
        if let Some(end) = record.ended_ms {
            out["EndTimestamp"] = secs(end);
        }
        if include_data {
            if let Some(input) = self.input(record).await? {
                out["InputPayload"] = json!(input);
            }
            if let Some(result) = &h.result {
                out["Result"] = json!(result);
            }
        }
        if let Some(e) = &h.error {
            out["Error"] = json!(e);
        }
        if let Some(limit) = h.timeout_at().filter(|_| h.status == ExecutionStatus::Running) {
            out["ExpectedExecutionTimeoutTimestamp"] = secs(limit);
        }
        Ok(out)
    }

    /// `GetDurableExecutionHistory`: events after `marker` (an event id), `max` of them, oldest first or
    /// newest first.
    pub async fn history(
        &self,
        account: &AccountId,
        arn: &str,
        marker: Option<u64>,
        max: usize,
        reverse: bool,
        include_data: bool,
    ) -> Result<Value> {
        let record = self.record(account, arn).await?;
        let id = record.id.clone();
        let rows = if reverse {
            // Newest first: the store pages forward, so read them all (an execution's history is bounded by
            // its operations) and page here.
            let mut all = self.blocking(move |s| s.durable_events(&id, 0, usize::MAX)).await?;
            all.reverse();
            let start = marker.map_or(0, |m| all.iter().position(|e| e.event_id < m).unwrap_or(all.len()));
            all.into_iter().skip(start).take(max + 1).collect::<Vec<_>>()
        } else {
            self.blocking(move |s| s.durable_events(&id, marker.unwrap_or(0), max + 1)).await?
        };
        let more = rows.len() > max;
        let events: Vec<Value> = rows
            .iter()
            .take(max)
            .filter_map(|r| serde_json::from_str::<Event>(&r.data).ok())
            .map(|e| e.to_wire(include_data))
            .collect();
        let mut out = json!({ "Events": events });
        if more {
            if let Some(last) = rows.get(max - 1) {
                out["NextMarker"] = json!(last.event_id.to_string());
            }
        }
        Ok(out)
    }

    /// Where an execution's time went and what its invocations cost, in the shape of a workflow's timeline.
    pub async fn timeline(&self, record: &DurableRecord) -> Result<timeline::Timeline> {
        let id = record.id.clone();
        let rows = self.blocking(move |s| s.durable_events(&id, 0, usize::MAX)).await?;
        let events: Vec<Event> = rows.iter().filter_map(|r| serde_json::from_str(&r.data).ok()).collect();
        Ok(timeline::timeline(record.started_ms, &events, &self.services.pricing))
    }

    /// `ListDurableExecutionsByFunction`: the function's executions that pass `filter`, oldest first (or
    /// newest first), `max` after the one `marker` names.
    pub async fn list(
        &self,
        account: &AccountId,
        function: &FunctionName,
        filter: &ListFilter,
        marker: Option<&str>,
        max: usize,
    ) -> Result<Value> {
        let (page, next) = self.list_records(account, function, filter, marker, max).await?;
        let secs = |ms: i64| json!(ms as f64 / 1000.0);
        let items: Vec<Value> = page
            .iter()
            .map(|r| {
                let mut v = json!({
                    "DurableExecutionArn": r.arn,
                    "DurableExecutionName": r.name,
                    "FunctionArn": stoke_core::reference::function_arn(&self.services.region, &r.account, &r.function, Some(&r.version)),
                    "Status": r.status,
                    "StartTimestamp": secs(r.started_ms),
                });
                if let Some(end) = r.ended_ms {
                    v["EndTimestamp"] = secs(end);
                }
                v
            })
            .collect();
        let mut out = json!({ "DurableExecutions": items });
        if let Some(next) = next {
            out["NextMarker"] = json!(next);
        }
        Ok(out)
    }

    /// A function's executions that pass `filter`, oldest first (or newest first), `max` after the one `marker`
    /// names; and the marker of the next page, when there is one.
    pub async fn list_records(
        &self,
        account: &AccountId,
        function: &FunctionName,
        filter: &ListFilter,
        marker: Option<&str>,
        max: usize,
    ) -> Result<(Vec<DurableRecord>, Option<String>)> {
        let (a, f) = (account.clone(), function.clone());
        let mut all = self.blocking(move |s| s.list_durable(&a, &f, None, usize::MAX)).await?;
        all.retain(|r| filter.admits(r));
        if filter.reverse {
            all.reverse();
        }
        let start = marker.map_or(0, |m| all.iter().position(|r| r.id == m).map_or(all.len(), |i| i + 1));
        let more = start + max < all.len();
        let page: Vec<DurableRecord> = all.into_iter().skip(start).take(max).collect();
        let next = if more { page.last().map(|r| r.id.clone()) } else { None };
        Ok((page, next))
    }

    /// Waits until execution `id` ends, at most `limit`; its status then (`RUNNING` if it has not ended).
    pub async fn wait(&self, account: &AccountId, id: &str, limit: Duration) -> Result<DurableRecord> {
        let held = lock(&self.live).get(id).filter(|l| l.runs_loop).cloned();
        if let Some(live) = held {
            let mut done = live.done.subscribe();
            let _ = tokio::time::timeout(limit, done.wait_for(|d| *d)).await;
        } else {
            // Run by another node: its record says when it ended.
            let deadline = tokio::time::Instant::now() + limit;
            loop {
                let (a, i) = (account.clone(), id.to_string());
                let r = self.blocking(move |s| s.get_durable(&a, &i)).await?;
                if r.as_ref().is_none_or(|r| r.status != "RUNNING") || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        self.record_by_id(account, id).await
    }
}

/// A durable function's key reaches only its own function's executions.
fn check_scope(scope: &Scope, record: &DurableRecord) -> Result<()> {
    match scope {
        Scope::DurableFunction(f) if record.function != *f => Err(DurableFailure::Forbidden(format!(
            "this key belongs to durable function {f}: it may not reach executions of {}",
            record.function
        ))),
        _ => Ok(()),
    }
}

/// The store's rows of a delta: an operation per place, an event per id, each as the engine's JSON.
fn rows(delta: engine::Delta) -> (Vec<DurableOpRow>, Vec<DurableEventRow>) {
    let ops = delta
        .operations
        .into_iter()
        .map(|(i, op)| DurableOpRow {
            seq: u32::try_from(i).unwrap_or(u32::MAX),
            op_id: op.id.clone(),
            data: serde_json::to_string(&op).unwrap_or_default(),
        })
        .collect();
    let events = delta
        .events
        .into_iter()
        .map(|e| DurableEventRow {
            event_id: e.id,
            timestamp_ms: e.at_ms,
            kind: e.kind.clone(),
            data: serde_json::to_string(&e).unwrap_or_default(),
        })
        .collect();
    (ops, events)
}

/// `ListDurableExecutionsByFunction`'s filters.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub qualifier: Option<String>,
    pub name: Option<String>,
    pub statuses: Vec<String>,
    pub started_after_ms: Option<i64>,
    pub started_before_ms: Option<i64>,
    pub reverse: bool,
}

impl ListFilter {
    fn admits(&self, r: &DurableRecord) -> bool {
        self.qualifier.as_ref().is_none_or(|q| *q == r.version)
            && self.name.as_ref().is_none_or(|n| *n == r.name)
            && (self.statuses.is_empty() || self.statuses.contains(&r.status))
            && self.started_after_ms.is_none_or(|t| r.started_ms >= t)
            && self.started_before_ms.is_none_or(|t| r.started_ms < t)
    }
}

mod chained;
mod run;
pub mod timeline;

#[cfg(test)]
mod tests;
