//! The workflow service: state machine definitions (validated by `stoke-asl`), executions and their
//! durable history. Executions run on the [`engine`]; those a crash interrupted resume at start.

pub mod engine;
pub mod history;
pub mod timeline;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use stoke_asl::prewarm::Policy;
use stoke_asl::{Definition, Problem};
use stoke_core::sync::lock;
use stoke_core::AccountId;
use stoke_store::{ExecutionRecord, ExecutionStatus, MapRunRecord, StoreError, WorkflowRecord};
use tokio::sync::watch;

use crate::registry::now_ms;
use engine::{InFlight, Run, Services};
use history::{ExecutionStarted, Recorded};

/// The longest workflow or execution name (Step Functions' limit).
pub const MAX_NAME: usize = 80;
/// The largest execution input, as on Step Functions.
pub const MAX_INPUT_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("the definition is invalid:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    InvalidDefinition(Vec<Problem>),
    #[error("{message}")]
    InvalidInput { field: &'static str, message: String },
    #[error("{0}")]
    WorkflowNotFound(String),
    #[error("{0}")]
    ExecutionNotFound(String),
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    ConcurrentModification(String),
    #[error("{0}")]
    NotRunning(String),
    #[error("the store failed: {0}")]
    Store(StoreError),
}

pub type Result<T, E = WorkflowError> = std::result::Result<T, E>;

fn store_err(e: StoreError) -> WorkflowError {
    match e {
        StoreError::RevisionMismatch(m) => WorkflowError::ConcurrentModification(format!(
            "{m} was changed by another request since you read it; read it again and retry"
        )),
        other => WorkflowError::Store(other),
    }
}

/// Checks a workflow or execution name: 1–80 of `A-Z a-z 0-9 - _`.
pub fn check_name(field: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(WorkflowError::InvalidInput {
            field,
            message: format!("{field} {name:?} is not valid: use 1 to {MAX_NAME} letters, digits, '-' or '_'"),
        })
    }
}

/// Reads a pre-warm policy: `off`, `eager`, `jit`, or `default` (the server's; `None`).
pub fn parse_policy(text: &str) -> Result<Option<Policy>> {
    if text == "default" {
        return Ok(None);
    }
    Policy::parse(text).map(Some).ok_or_else(|| WorkflowError::InvalidInput {
        field: "prewarm",
        message: format!("prewarm {text:?} is not a policy: use off, eager, jit, or default (the server's)"),
    })
}

/// Parses execution input: JSON text, `{}` when empty.
pub fn parse_input(input: Option<&str>) -> Result<Value> {
    let text = input.unwrap_or("").trim();
    if text.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    if text.len() > MAX_INPUT_BYTES {
        return Err(WorkflowError::InvalidInput {
            field: "input",
            message: format!("the input is {} bytes; the limit is {MAX_INPUT_BYTES}", text.len()),
        });
    }
    serde_json::from_str(text).map_err(|e| WorkflowError::InvalidInput {
        field: "input",
        message: format!("the input is not JSON ({e}); pass a JSON document such as {{\"key\": 1}}"),
    })
}

/// What an update changes; `None` leaves that part as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkflowChange<'a> {
    pub definition: Option<&'a str>,
    pub prewarm: Option<&'a str>,
    pub role_arn: Option<&'a str>,
}

/// A state machine's role, as Step Functions' model bounds it (1 to 256 characters). stoke has no IAM, so the
/// role is kept and reported, never assumed.
fn check_role_arn(role: &str) -> Result<()> {
    if role.is_empty() || role.chars().count() > 256 {
        return Err(WorkflowError::InvalidInput {
            field: "role_arn",
            message: format!(
                "the role ARN must be 1 to 256 characters (it has {}); give the IAM role's ARN, such as \
                 arn:aws:iam::123456789012:role/states",
                role.chars().count()
            ),
        });
    }
    Ok(())
}

struct Running {
    abort: tokio::task::AbortHandle,
    done: watch::Receiver<bool>,
}

pub struct Workflows {
    services: Arc<Services>,
    running: Mutex<HashMap<String, Running>>,
}

impl std::fmt::Debug for Workflows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workflows").finish_non_exhaustive()
    }
}

/// A random UUID (v4) for execution ids and default names.
pub fn uuid() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    stoke_asl::intrinsic::uuid_v4(b)
}

impl Workflows {
    pub fn new(services: Arc<Services>) -> Self {
        Workflows { services, running: Mutex::new(HashMap::new()) }
    }

    pub fn region(&self) -> &str {
        &self.services.region
    }

    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// Validates and stores a new workflow; `prewarm` is its executions' pre-warm policy (see
    /// [`parse_policy`]; absent: the server's), `role_arn` the IAM role Step Functions' API names.
    pub fn create(
        &self,
        account: &AccountId,
        name: &str,
        definition: &str,
        prewarm: Option<&str>,
        role_arn: Option<&str>,
    ) -> Result<WorkflowRecord> {
        check_name("name", name)?;
        let prewarm = prewarm.map(parse_policy).transpose()?.flatten();
        if let Some(role) = role_arn {
            check_role_arn(role)?;
        }
        Definition::parse_str(definition).map_err(WorkflowError::InvalidDefinition)?;
        let now = now_ms();
        let w = WorkflowRecord {
            account: account.clone(),
            name: name.to_string(),
            definition: definition.to_string(),
            revision: 1,
            created_ms: now,
            updated_ms: now,
            prewarm: prewarm.map(|p| p.as_str().to_string()),
            role_arn: role_arn.map(String::from),
        };
        self.services.store.put_workflow(&w, None).map_err(|e| match e {
            StoreError::Conflict(_) => WorkflowError::Exists(format!(
                "workflow {name} already exists; update it (stoke wf update) or pick another name"
            )),
            other => store_err(other),
        })?;
        Ok(w)
    }

    /// Changes what `change` gives of a workflow (its definition, pre-warm policy, role); running
    /// executions keep the definition and role they started with.
    pub fn update(
        &self,
        account: &AccountId,
        name: &str,
        change: WorkflowChange<'_>,
        expected_revision: Option<u64>,
    ) -> Result<WorkflowRecord> {
        let prewarm = change.prewarm.map(parse_policy).transpose()?;
        if let Some(role) = change.role_arn {
            check_role_arn(role)?;
        }
        if let Some(definition) = change.definition {
            Definition::parse_str(definition).map_err(WorkflowError::InvalidDefinition)?;
        }
        let mut w = self.get(account, name)?;
        let read = w.revision;
        if let Some(expected) = expected_revision {
            if expected != read {
                return Err(WorkflowError::ConcurrentModification(format!(
                    "workflow {name} is at revision {read}, not {expected}; read it again and retry"
                )));
            }
        }
        if let Some(definition) = change.definition {
            w.definition = definition.to_string();
        }
        if let Some(p) = prewarm {
            w.prewarm = p.map(|p| p.as_str().to_string());
        }
        if let Some(role) = change.role_arn {
            w.role_arn = Some(role.to_string());
        }
        w.revision = read + 1;
        w.updated_ms = now_ms();
        self.services.store.put_workflow(&w, Some(read)).map_err(store_err)?;
        Ok(w)
    }

    pub fn get(&self, account: &AccountId, name: &str) -> Result<WorkflowRecord> {
        self.services.store.get_workflow(account, name).map_err(store_err)?.ok_or_else(|| {
            WorkflowError::WorkflowNotFound(format!("workflow {name} does not exist (stoke wf ls lists them)"))
        })
    }

    pub fn list(&self, account: &AccountId) -> Result<Vec<WorkflowRecord>> {
        self.services.store.list_workflows(account).map_err(store_err)
    }

    pub fn delete(&self, account: &AccountId, name: &str) -> Result<()> {
        if self.services.store.delete_workflow(account, name).map_err(store_err)? {
            Ok(())
        } else {
            Err(WorkflowError::WorkflowNotFound(format!("workflow {name} does not exist")))
        }
    }

    /// Starts an execution; returns at once with its record. `prewarm` overrides the workflow's policy
    /// for this execution; `scratch` gives its steps a shared scratch directory.
    pub fn start(
        self: &Arc<Self>,
        account: &AccountId,
        workflow: &str,
        name: Option<&str>,
        input: Option<&str>,
        prewarm: Option<&str>,
        scratch: bool,
    ) -> Result<ExecutionRecord> {
        let input = parse_input(input)?;
        if let Some(n) = name {
            check_name("name", n)?;
        }
        let requested = prewarm.map(parse_policy).transpose()?.flatten();
        let w = self.get(account, workflow)?;
        let policy =
            requested.or_else(|| w.prewarm.as_deref().and_then(Policy::parse)).unwrap_or(self.services.default_prewarm);
        let definition = Definition::parse_str(&w.definition).map_err(WorkflowError::InvalidDefinition)?;
        let id = uuid();
        let name = name.map(String::from).unwrap_or_else(|| id.clone());
        let started = ExecutionStarted {
            input,
            prewarm: Some(policy.as_str().to_string()),
            scratch,
            role_arn: w.role_arn.clone(),
        };
        let (record, started) = engine::new_execution(id, account, workflow, name, &w.definition, started);
        self.services.store.insert_execution(&record, &[started.to_row()]).map_err(|e| match e {
            StoreError::Conflict(_) => WorkflowError::Exists(format!(
                "workflow {workflow} already has an execution named {}; names are unique per workflow",
                record.name
            )),
            other => store_err(other),
        })?;
        self.spawn(record.clone(), definition, vec![started], InFlight::RunAgain);
        Ok(record)
    }

    fn spawn(
        self: &Arc<Self>,
        record: ExecutionRecord,
        definition: Definition,
        history: Vec<Recorded>,
        in_flight: InFlight,
    ) {
        let id = record.id.clone();
        let run = Arc::new(Run::new(record, definition, &history, self.services.clone()).in_flight(in_flight));
        let (tx, rx) = watch::channel(false);
        let me = Arc::downgrade(self);
        let key = id.clone();
        // The entry goes in before the task can finish and remove it.
        let mut running = lock(&self.running);
        let task = tokio::spawn(async move {
            let starts_map_runs = run.starts_map_runs();
            let account = run.record.account.clone();
            match run.drive().await {
                Err(e) => {
                    tracing::error!(execution = %key, error = e.0, "cannot record the execution; it resumes at the next start")
                }
                // It ended: a map run it left running (its TimeoutSeconds cut it short) ends with it.
                Ok(()) if starts_map_runs => {
                    if let Some(me) = me.upgrade() {
                        let (account, id) = (account.clone(), key.clone());
                        let ended = tokio::task::spawn_blocking(move || {
                            engine::end_map_runs(&*me.services.store, &account, &id, engine::ENDED_CAUSE)
                        })
                        .await;
                        if let Ok(Err(e)) = ended {
                            tracing::warn!(execution = %key, error = %e, "cannot end the execution's map runs");
                        }
                    }
                }
                Ok(()) => {}
            }
            if let Some(me) = me.upgrade() {
                lock(&me.running).remove(&key);
            }
            let _ = tx.send(true);
        });
        running.insert(id, Running { abort: task.abort_handle(), done: rx });
    }

    /// Waits until an execution of this process has ended (at once if it is not running here).
    pub async fn wait(&self, id: &str) {
        let rx = lock(&self.running).get(id).map(|r| r.done.clone());
        if let Some(mut rx) = rx {
            let _ = rx.wait_for(|done| *done).await;
        }
    }

    /// The execution, if it belongs to `account`.
    pub fn describe(&self, account: &AccountId, id: &str) -> Result<ExecutionRecord> {
        match self.services.store.get_execution(id).map_err(store_err)? {
            Some(e) if &e.account == account => Ok(e),
            _ => Err(WorkflowError::ExecutionNotFound(format!("execution {id} does not exist"))),
        }
    }

    /// Finds an execution by workflow and execution name (Step Functions' ARNs name both).
    pub fn find(&self, account: &AccountId, workflow: &str, name: &str) -> Result<ExecutionRecord> {
        self.services.store.find_execution(account, workflow, name).map_err(store_err)?.ok_or_else(|| {
            WorkflowError::ExecutionNotFound(format!("workflow {workflow} has no execution named {name}"))
        })
    }

    pub fn history(&self, account: &AccountId, id: &str) -> Result<Vec<Recorded>> {
        self.describe(account, id)?;
        self.stored_history(id)
    }

    fn stored_history(&self, id: &str) -> Result<Vec<Recorded>> {
        let rows = self.services.store.history(id).map_err(store_err)?;
        Ok(rows.iter().map(Recorded::from_row).collect())
    }

    /// Where the execution's time went, step by step, and what it cost.
    pub fn timeline(&self, account: &AccountId, id: &str) -> Result<timeline::Timeline> {
        let e = self.describe(account, id)?;
        let history = self.stored_history(id)?;
        Ok(timeline::timeline(e.started_ms, &history, &self.services.pricing))
    }

    pub fn executions(
        &self,
        account: &AccountId,
        workflow: Option<&str>,
        status: Option<ExecutionStatus>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>> {
        if let Some(w) = workflow {
            self.get(account, w)?;
        }
        self.services.store.list_executions(account, workflow, status, before, limit).map_err(store_err)
    }

    /// A map run of this account.
    pub fn map_run(&self, account: &AccountId, id: &str) -> Result<Option<MapRunRecord>> {
        self.services.store.get_map_run(account, id).map_err(store_err)
    }

    /// The map runs the execution's distributed Map states started, oldest first.
    pub fn map_runs(&self, account: &AccountId, execution_id: &str) -> Result<Vec<MapRunRecord>> {
        self.describe(account, execution_id)?;
        self.services.store.list_map_runs(account, execution_id).map_err(store_err)
    }

    /// A map run's child executions, newest first.
    pub fn map_run_children(&self, account: &AccountId, run: &MapRunRecord) -> Result<Vec<ExecutionRecord>> {
        let all = self
            .services
            .store
            .list_executions(account, Some(&run.children), None, None, usize::MAX)
            .map_err(store_err)?;
        Ok(all.into_iter().filter(|e| engine::map_run_of(e) == Some(run.id.as_str())).collect())
    }

    /// A map run's limits, and how many items each of its children holds.
    pub fn map_run_details(run: &MapRunRecord) -> Result<engine::MapRunDetails> {
        serde_json::from_str(&run.details).map_err(|e| {
            WorkflowError::Store(StoreError::Corrupt(format!("map run {} has unreadable details: {e}", run.id)))
        })
    }

    /// A map run's limits and its item and execution counts, from its children as they stand.
    pub fn map_run_counts(
        &self,
        account: &AccountId,
        run: &MapRunRecord,
    ) -> Result<(engine::MapRunDetails, Value, Value)> {
        let details = Self::map_run_details(run)?;
        let children: Vec<(usize, ExecutionStatus)> = self
            .map_run_children(account, run)?
            .iter()
            .filter_map(|e| Some((engine::child_index(e)?, e.status)))
            .collect();
        let (items, executions) = engine::counts(&details, &children);
        Ok((details, items, executions))
    }

    /// Stops a running execution: it ends ABORTED with the given error and cause.
    pub fn stop(
        &self,
        account: &AccountId,
        id: &str,
        error: Option<&str>,
        cause: Option<&str>,
    ) -> Result<ExecutionRecord> {
        let e = self.describe(account, id)?;
        if let Some(run) = engine::map_run_of(&e) {
            return Err(WorkflowError::NotRunning(format!(
                "execution {id} is a child of map run {run}, which its parent drives: stop the execution that \
                 started the map run instead"
            )));
        }
        if e.status != ExecutionStatus::Running {
            return Err(WorkflowError::NotRunning(format!(
                "execution {id} has already ended ({}); only a RUNNING execution can be stopped",
                e.status.as_str()
            )));
        }
        if let Some(r) = lock(&self.running).remove(id) {
            r.abort.abort();
        }
        // In a cluster another node may be running it: it becomes this node's, and that node's engine is
        // refused at its next write. The engine's task is aborted here, but a history write it had sent
        // may still land first: the abort is written after it.
        match engine::abort_execution(&*self.services.store, &e, error, cause) {
            Ok(Some(stopped)) => {
                // Its map runs' children were driven by its task: they end with it.
                engine::end_map_runs(&*self.services.store, account, id, engine::ENDED_CAUSE).map_err(store_err)?;
                Ok(stopped)
            }
            // It ended on its own while it was stopped (or another node ended it).
            Ok(None) => self.describe(account, id),
            Err(StoreError::Conflict(_)) => Err(WorkflowError::ConcurrentModification(format!(
                "execution {id} kept changing while it was stopped; stop it again"
            ))),
            Err(other) => Err(store_err(other)),
        }
    }

    /// In a cluster: resumes the executions this node owns but does not run — taken over from a node that was
    /// lost, or stopped here by a store outage — leaving those started in the last `settle` (their task may
    /// not be registered yet). Returns their ids.
    pub fn resume_orphans(self: &Arc<Self>, settle: Duration) -> Result<Vec<String>> {
        let cutoff = now_ms().saturating_sub(i64::try_from(settle.as_millis()).unwrap_or(i64::MAX));
        let mine = self.services.store.running_executions().map_err(store_err)?;
        let orphans: Vec<ExecutionRecord> = {
            let running = lock(&self.running);
            // A map run's children are driven by their parent's run, never on their own.
            mine.into_iter()
                .filter(|e| !running.contains_key(&e.id) && e.started_ms < cutoff && engine::map_run_of(e).is_none())
                .collect()
        };
        let mut resumed = Vec::new();
        for e in orphans {
            let history = self.stored_history(&e.id)?;
            match Definition::parse_str(&e.definition) {
                Ok(d) => {
                    tracing::info!(execution = %e.id, events = history.len(), "resuming an execution no process here ran");
                    resumed.push(e.id.clone());
                    // Its task in flight ran elsewhere (a lost node) or its outcome went unrecorded: unknown,
                    // so it fails as States.TaskFailed and follows its Retry and Catch, rather than running
                    // again unseen.
                    self.spawn(e, d, history, InFlight::Fail);
                }
                Err(problems) => {
                    tracing::error!(execution = %e.id, problems = problems.len(), "cannot resume: stored definition is invalid")
                }
            }
        }
        Ok(resumed)
    }

    /// Resumes every execution a previous run of the server left RUNNING; returns how many.
    pub fn resume(self: &Arc<Self>) -> Result<usize> {
        let running = self.services.store.running_executions().map_err(store_err)?;
        let count = running.len();
        let ids = running.iter().map(|e| e.id.clone()).collect();
        let swept = self.services.invoker.scheduler().sweep_scratch(&ids);
        if swept > 0 {
            tracing::info!(directories = swept, "removed the scratch directories of executions that ended");
        }
        // A map run's children are driven by their parent's run, never on their own; those whose parent
        // ended (a crash between the parent's end and theirs) end now.
        // One look per map run, however many of its children are running.
        let runs: std::collections::BTreeSet<(&AccountId, &str)> =
            running.iter().filter_map(|e| Some((&e.account, engine::map_run_of(e)?))).collect();
        let mut parents = std::collections::HashSet::new();
        for (account, run) in runs {
            let Some(parent) = self.services.store.get_map_run(account, run).ok().flatten().map(|r| r.execution_id)
            else {
                continue;
            };
            if !parents.insert(parent.clone()) {
                continue;
            }
            let parent_runs = self.services.store.get_execution(&parent).ok().flatten();
            if parent_runs.is_some_and(|p| p.status == ExecutionStatus::Running) {
                continue;
            }
            match engine::end_map_runs(&*self.services.store, account, &parent, engine::ENDED_CAUSE) {
                Ok(n) if n > 0 => {
                    tracing::info!(execution = %parent, children = n, "ended the map runs of an execution that had ended")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(execution = %parent, error = %e, "cannot end the map runs of an execution that ended")
                }
            }
        }
        for e in running.into_iter().filter(|e| engine::map_run_of(e).is_none()) {
            let history = self.stored_history(&e.id)?;
            match Definition::parse_str(&e.definition) {
                Ok(d) => {
                    tracing::info!(execution = %e.id, events = history.len(), "resuming execution");
                    self.spawn(e, d, history, InFlight::RunAgain);
                }
                Err(problems) => {
                    tracing::error!(execution = %e.id, problems = problems.len(), "cannot resume: stored definition is invalid")
                }
            }
        }
        Ok(count)
    }
}
