//! The durable executor. It walks a definition with `stoke-asl`'s pure steps and performs their effects
//! (invocations, waits), appending every event to the execution's history **before** the effect it
//! announces. A restarted server replays the history: states that exited are not run again, task attempts
//! that finished keep their results, waits and back-offs resume where their deadlines stand, and an attempt
//! that was in flight is run again (at-least-once).
//!
//! Every event is placed by (scope, step, attempt): the scope is the top level (`""`) or a Parallel branch /
//! Map iteration (`"<parent>/<step>:b<i>"`, `"<parent>/<step>:i<i>"`), the step counts states entered in that
//! scope, the attempt counts tries of a task.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use serde_json::{json, Value};
use stoke_asl::definition::Machine;
use stoke_asl::prewarm::{self, FunctionView, Knowledge, Policy};
use stoke_asl::retry::{next_retry, Attempts};
use stoke_asl::step::{self, Context, Entry, Outcome, Vars};
use stoke_asl::{Definition, Entropy, Failure, SeededEntropy, State, StateKind};
use stoke_core::sync::lock;
use stoke_core::time::format_rfc3339;
use stoke_scheduler::{InvokeRequest, InvokeTarget};
use stoke_store::{ExecutionRecord, ExecutionStatus, HistoryRow};

use super::history::{
    ErrorCause, EvaluationFailed, HistoryEvent, Integration, MapIteration, MapStarted, Output, Recorded, StateEntered,
    StateExited, TaskFailure, TaskScheduled, TaskSucceeded, Usage,
};

mod distributed;
pub use distributed::{
    abort_execution, child_index, counts, end_map_runs, map_run_arn, map_run_of, new_execution, parse_map_run_arn,
    MapRunDetails, ENDED_CAUSE,
};

use crate::error::Classified;
use crate::invoke::InvokeFailure;
use crate::registry::now_ms;
use crate::services::usage;
pub use crate::services::Services;
use crate::stats::state_key;

/// How a state ended: its output, the next state (`None` ends its scope) and the variables it assigned.
type Exit = (Value, Option<String>, Option<Vars>);

/// Longest an announced invocation holds its warm instance's place in the pool's demand.
const ANNOUNCE_TTL: Duration = Duration::from_secs(60);

/// Iterations an unlimited inline Map runs at once (Step Functions' inline limit).
const UNLIMITED_MAP_CONCURRENCY: usize = 40;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What happened at one (scope, step), as far as the history tells.
#[derive(Debug, Default)]
struct StepRecord {
    entered_ms: Option<i64>,
    /// The id of its `…StateEntered` event.
    entered_seq: Option<u64>,
    wait_until_ms: Option<i64>,
    /// Its `EvaluationFailed` event is recorded (a resumed execution does not record it twice).
    evaluation_failed: bool,
    exited: Option<(Value, Option<String>, Option<Vars>)>,
    attempts: BTreeMap<u32, AttemptRecord>,
}

#[derive(Debug, Default)]
struct AttemptRecord {
    payload: Option<Value>,
    result: Option<(i64, Result<Value, Failure>)>,
    /// Of a Parallel or Map state's attempt: it started (its branches or iterations are under way).
    started: bool,
    /// Of a Parallel or Map state's attempt: when it ended.
    ended_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct Log {
    seq: u64,
    pending: Vec<Recorded>,
    steps: HashMap<(String, u32), StepRecord>,
    /// Map iterations whose end is recorded: (scope, step, attempt of the Map state, index).
    iterations_done: HashSet<(String, u32, u32, u64)>,
    /// Distributed Map attempts whose map run's start, or end, is recorded: (scope, step, attempt).
    map_runs_started: HashSet<(String, u32, u32)>,
    map_runs_ended: HashSet<(String, u32, u32)>,
}

impl Log {
    fn index(&mut self, e: &Recorded) {
        let rec = self.steps.entry((e.scope.clone(), e.step)).or_default();
        match &e.event {
            HistoryEvent::StateEntered(s) => {
                rec.entered_ms = Some(e.timestamp_ms);
                rec.entered_seq = Some(e.seq);
                rec.wait_until_ms = s.wait_until_ms;
            }
            HistoryEvent::StateExited(s) => rec.exited = Some((s.output.clone(), s.next.clone(), s.assigned.clone())),
            HistoryEvent::EvaluationFailed(_) => rec.evaluation_failed = true,
            HistoryEvent::TaskScheduled(_, t) => {
                rec.attempts.entry(e.attempt).or_default().payload = Some(t.input.clone());
            }
            HistoryEvent::TaskStarted(_) => rec.attempts.entry(e.attempt).or_default().started = true,
            HistoryEvent::TaskSucceeded(_, t) => {
                rec.attempts.entry(e.attempt).or_default().result = Some((e.timestamp_ms, Ok(t.output.clone())));
            }
            HistoryEvent::TaskFailed(_, f) | HistoryEvent::TaskTimedOut(_, f) => {
                let failure = Failure::new(f.error.clone(), f.cause.clone());
                rec.attempts.entry(e.attempt).or_default().result = Some((e.timestamp_ms, Err(failure)));
            }
            HistoryEvent::MapIterationSucceeded(m) | HistoryEvent::MapIterationFailed(m) => {
                self.iterations_done.insert((e.scope.clone(), e.step, e.attempt, m.index));
            }
            HistoryEvent::MapRunStarted(_) => {
                self.map_runs_started.insert((e.scope.clone(), e.step, e.attempt));
            }
            HistoryEvent::MapRunSucceeded | HistoryEvent::MapRunFailed(_) => {
                self.map_runs_ended.insert((e.scope.clone(), e.step, e.attempt));
            }
            HistoryEvent::ParallelStateStarted | HistoryEvent::MapStateStarted(_) => {
                rec.attempts.entry(e.attempt).or_default().started = true;
            }
            HistoryEvent::ParallelStateSucceeded
            | HistoryEvent::ParallelStateFailed
            | HistoryEvent::MapStateSucceeded
            | HistoryEvent::MapStateFailed => {
                rec.attempts.entry(e.attempt).or_default().ended_ms = Some(e.timestamp_ms);
            }
            _ => {}
        }
        self.seq = self.seq.max(e.seq);
    }
}

/// What a resumed execution does with a task attempt its history shows scheduled but not ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InFlight {
    /// Runs it again with its recorded payload (this node restarted: at-least-once).
    #[default]
    RunAgain,
    /// Fails it as `States.TaskFailed`, which its Retry and Catch then handle: it ran on a node that was lost,
    /// or its outcome went unrecorded, so whether it ran is unknown and running it again would be unseen.
    Fail,
}

/// The cause a task attempt lost with its node fails with.
pub const LOST_ATTEMPT_CAUSE: &str =
    "the node running this task was lost (or could not record its outcome) before the \
     outcome was recorded: the invocation may or may not have run; Retry on States.TaskFailed runs it again";

/// One execution being driven.
pub struct Run {
    pub record: ExecutionRecord,
    definition: Definition,
    input: Value,
    services: Arc<Services>,
    log: Mutex<Log>,
    entropy: Mutex<SeededEntropy>,
    policy: Policy,
    /// Every function the definition names statically: what the planner may warm.
    functions: BTreeSet<String>,
    /// Instances announced per Task state and not yet used by an entry of that state.
    announced: Mutex<HashMap<String, usize>>,
    /// Pending pre-warm timers: they end with the execution.
    timers: Mutex<tokio::task::JoinSet<()>>,
    /// The execution has a scratch directory its steps share (asked for at its start).
    scratch: bool,
    /// What an attempt found in flight on resuming does.
    in_flight: InFlight,
    /// The state machine's role when the execution started; `None`: none was given.
    role_arn: Option<String>,
}

/// An error of the store while recording: the execution stops where it stands and resumes after a restart.
#[derive(Debug)]
pub struct RecordError(pub String);

impl Run {
    /// Prepares a run from the execution's record and what its history already holds.
    pub fn new(record: ExecutionRecord, definition: Definition, history: &[Recorded], services: Arc<Services>) -> Run {
        let mut log = Log::default();
        for e in history {
            log.index(e);
        }
        let input = serde_json::from_str(&record.input).unwrap_or_else(|_| json!({}));
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        let started = history.iter().find_map(|e| match &e.event {
            HistoryEvent::ExecutionStarted(s) => Some(s),
            _ => None,
        });
        let policy =
            started.and_then(|s| s.prewarm.as_deref()).and_then(Policy::parse).unwrap_or(services.default_prewarm);
        let scratch = started.is_some_and(|s| s.scratch);
        let role_arn = started.and_then(|s| s.role_arn.clone());
        let mut functions = BTreeSet::new();
        static_functions(&definition.machine, &mut functions);
        Run {
            definition,
            input,
            services,
            log: Mutex::new(log),
            entropy: Mutex::new(SeededEntropy::new(u64::from_le_bytes(seed))),
            record,
            policy,
            functions,
            announced: Mutex::new(HashMap::new()),
            timers: Mutex::new(tokio::task::JoinSet::new()),
            scratch,
            in_flight: InFlight::RunAgain,
            role_arn,
        }
    }

    /// Says what an attempt found in flight does (run again, by default).
    pub fn in_flight(mut self, in_flight: InFlight) -> Self {
        self.in_flight = in_flight;
        self
    }

    /// A state starts: it uses one instance announced for it, and the planner looks ahead from it.
    async fn prewarm(&self, machine: &Machine, state: &State) {
        if let Some(n) = lock(&self.announced).get_mut(&state.name) {
            *n = n.saturating_sub(1);
        }
        if self.policy == Policy::Off {
            return;
        }
        let invoker = &self.services.invoker;
        let mut pools: HashMap<String, (Arc<InvokeTarget>, FunctionView)> = HashMap::new();
        for f in &self.functions {
            let Some(target) = invoker.pool_target(&self.record.account, f).await else { continue };
            // In a cluster, the pool at the queue's owner, which the announcements go to.
            let pool = invoker.pool(&target).await;
            let stats = self.services.stats.function(target.version_key());
            let view = FunctionView {
                init_ms: stats.predicted_init_ms(),
                run_ms: stats.predicted_run_ms(),
                spare: (pool.idle + pool.starting).saturating_sub(pool.queued + pool.forecast),
            };
            pools.insert(f.clone(), (target, view));
        }
        let known = Known { pools: &pools, run: self };
        let now = now_ms();
        let plan = prewarm::plan(machine, &state.name, now, self.policy, &known, &self.services.prewarm);
        for warm in plan {
            let Some((target, _)) = pools.get(&warm.function) else { continue };
            let extra = {
                let mut announced = lock(&self.announced);
                let have = announced.entry(warm.state.clone()).or_default();
                let extra = warm.count.saturating_sub(*have);
                *have += extra;
                extra
            };
            if extra == 0 {
                continue;
            }
            let (invoker, target) = (invoker.clone(), target.clone());
            let delay = Duration::from_millis(u64::try_from(warm.at_ms - now).unwrap_or(0));
            let ttl = ANNOUNCE_TTL.min(Duration::from_secs(u64::from(target.config.keep_alive_s)));
            lock(&self.timers).spawn(async move {
                tokio::time::sleep(delay).await;
                invoker.announce(&target, extra, ttl).await;
            });
        }
    }

    /// A Choice went to `chosen`: instances prepared for functions only its other branches reach are
    /// released (their `wait_turn` fails), and return to their pools.
    async fn release_ruled_out(&self, machine: &Machine, choice: &str, chosen: &str) {
        let invoker = &self.services.invoker;
        // In a cluster the reservations are held by their queues' owners, which may be other nodes.
        if invoker.queues().is_none() && invoker.scheduler().reservations(&self.record.id) == 0 {
            return;
        }
        let mut targets = Vec::new();
        for f in prewarm::ruled_out(machine, choice, chosen) {
            targets.extend(invoker.pool_target(&self.record.account, &f).await);
        }
        let why = format!("the execution took another branch at the Choice state \"{choice}\"");
        invoker.release_reservations(&self.record.id, &targets, &why).await;
    }

    fn push(&self, event: HistoryEvent, scope: &str, step: u32, attempt: u32) {
        let mut log = lock(&self.log);
        log.seq += 1;
        let e = Recorded { seq: log.seq, timestamp_ms: now_ms(), scope: scope.to_string(), step, attempt, event };
        log.index(&e);
        log.pending.push(e);
    }

    /// Writes pending events (and the final record) durably; nothing after this call happens before it.
    async fn flush(&self, finished: Option<ExecutionRecord>) -> Result<(), RecordError> {
        let events: Vec<HistoryRow> =
            std::mem::take(&mut lock(&self.log).pending).iter().map(Recorded::to_row).collect();
        if events.is_empty() && finished.is_none() {
            return Ok(());
        }
        let store = self.services.store.clone();
        let id = self.record.id.clone();
        tokio::task::spawn_blocking(move || store.record_execution(&id, &events, finished.as_ref()))
            .await
            .map_err(|e| RecordError(e.to_string()))?
            .map_err(|e| RecordError(e.to_string()))
    }

    fn random(&self) -> f64 {
        (lock(&self.entropy).next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn context(&self, state: &State, entered_ms: i64, retry_count: u32) -> Context {
        Context {
            execution_id: self.execution_arn(),
            execution_name: self.record.name.clone(),
            execution_input: self.input.clone(),
            execution_start_time: format_rfc3339(self.record.started_ms),
            role_arn: self.role_arn.clone().unwrap_or_default(),
            state_machine_id: workflow_arn(&self.services.region, &self.record.account, &self.record.workflow),
            state_machine_name: self.record.workflow.clone(),
            state_name: state.name.clone(),
            state_entered_time: format_rfc3339(entered_ms),
            retry_count: matches!(state.kind, StateKind::Task(_) | StateKind::Parallel(_) | StateKind::Map(_))
                .then_some(retry_count),
            map_item: None,
        }
    }

    fn state_key(&self, state: &str) -> String {
        state_key(self.record.account.as_str(), &self.record.workflow, state)
    }

    pub fn execution_arn(&self) -> String {
        execution_arn(&self.services.region, &self.record)
    }

    /// Whether the definition has a distributed Map (whose map runs outlive nothing of the execution).
    pub fn starts_map_runs(&self) -> bool {
        fn any(m: &Machine) -> bool {
            m.states.values().any(|s| match &s.kind {
                StateKind::Map(map) => map.distributed.is_some() || any(&map.processor),
                StateKind::Parallel(p) => p.branches.iter().any(any),
                _ => false,
            })
        }
        any(&self.definition.machine)
    }

    /// Drives the execution to its end and records it (the status is in the store). Honours the machine's
    /// `TimeoutSeconds` from the execution's start, also across restarts. `ExecutionStarted` is in the
    /// history already: it is written with the execution's row.
    pub async fn drive(self: Arc<Self>) -> Result<(), RecordError> {
        let machine = &self.definition.machine;
        let scheduler = self.services.invoker.scheduler().clone();
        if self.scratch {
            if let Err(e) = scheduler.open_scratch(&self.record.account, &self.record.id) {
                tracing::warn!(execution = %self.record.id, error = %e, "cannot create the scratch directory");
            }
        }
        let run = self.run_scope(machine, String::new(), self.input.clone(), Vars::new());
        let result = match self.definition.timeout_seconds {
            Some(limit) => {
                let limit_ms = i64::try_from(limit).unwrap_or(i64::MAX).saturating_mul(1000);
                let deadline = self.record.started_ms.saturating_add(limit_ms);
                let left = Duration::from_millis(u64::try_from(deadline - now_ms()).unwrap_or(0));
                match tokio::time::timeout(left, run).await {
                    Ok(r) => r,
                    Err(_) => Err(Stop::TimedOut),
                }
            }
            None => run.await,
        };
        lock(&self.timers).abort_all();
        scheduler.release_reservations(&self.record.id, None, "the execution ended");
        if self.services.invoker.queues().is_some() {
            // In a cluster, steps on any node may have prepared at the owners of the workflow's functions'
            // queues: those are told too, off the execution's path (unreleased, they expire on their own).
            let (run, why) = (self.clone(), "the execution ended");
            tokio::spawn(async move {
                let mut targets = Vec::new();
                for f in &run.functions {
                    targets.extend(run.services.invoker.pool_target(&run.record.account, f).await);
                }
                run.services.invoker.release_reservations(&run.record.id, &targets, why).await;
            });
        }
        if self.scratch {
            if let Err(e) = scheduler.close_scratch(&self.record.account, &self.record.id) {
                tracing::warn!(execution = %self.record.id, error = %e, "cannot remove the scratch directory");
            }
        }
        let mut record = self.record.clone();
        record.stopped_ms = Some(now_ms());
        match result {
            Ok(output) => {
                record.status = ExecutionStatus::Succeeded;
                record.output = Some(output.to_string());
                self.push(HistoryEvent::ExecutionSucceeded(Output { output }), "", 0, 0);
            }
            Err(Stop::Failed(f)) => {
                record.status = ExecutionStatus::Failed;
                // A Fail state without Error or Cause leaves them out, as Step Functions does.
                let present = |s: String| (!s.is_empty()).then_some(s);
                record.error = present(f.error);
                record.cause = present(f.cause);
                let why = ErrorCause { error: record.error.clone(), cause: record.cause.clone() };
                self.push(HistoryEvent::ExecutionFailed(why), "", 0, 0);
            }
            Err(Stop::TimedOut) => {
                record.status = ExecutionStatus::TimedOut;
                record.error = Some(stoke_asl::errors::TIMEOUT.into());
                record.cause = Some("the execution ran longer than the machine's TimeoutSeconds".into());
                let why = ErrorCause { error: record.error.clone(), cause: record.cause.clone() };
                self.push(HistoryEvent::ExecutionTimedOut(why), "", 0, 0);
            }
            Err(Stop::Record(e)) => return Err(e),
        }
        self.flush(Some(record)).await
    }

    /// Runs a machine from its start in `scope`; the machine's output, or the failure that ended it.
    fn run_scope<'a>(
        &'a self,
        machine: &'a Machine,
        scope: String,
        input: Value,
        mut vars: Vars,
    ) -> BoxFuture<'a, Result<Value, Stop>> {
        Box::pin(async move {
            let mut name = machine.start_at.clone();
            let mut raw = input;
            let mut step: u32 = 0;
            loop {
                let Some(state) = machine.state(&name) else {
                    return Err(Stop::Failed(Failure::new(
                        stoke_asl::errors::RUNTIME,
                        format!("the state \"{name}\" does not exist"),
                    )));
                };
                let done = lock(&self.log).steps.get(&(scope.clone(), step)).and_then(|r| r.exited.clone());
                let (output, next, assigned) = match done {
                    Some(d) => d,
                    None => {
                        self.prewarm(machine, state).await;
                        let (output, next, assigned) = self.run_state(state, &scope, step, raw, &vars).await?;
                        if let (StateKind::Choice(_), Some(n)) = (&state.kind, &next) {
                            self.services.stats.record_branch(&self.state_key(&state.name), n);
                            self.release_ruled_out(machine, &state.name, n).await;
                        }
                        let exited = StateExited {
                            state_type: state.type_name().into(),
                            name: state.name.clone(),
                            output: output.clone(),
                            next: next.clone(),
                            assigned: assigned.clone(),
                        };
                        self.push(HistoryEvent::StateExited(exited), &scope, step, 0);
                        (output, next, assigned)
                    }
                };
                // Assignments take effect for the states after this one (replayed ones too).
                vars.extend(assigned.unwrap_or_default());
                match next {
                    Some(n) => {
                        name = n;
                        raw = output;
                        step += 1;
                    }
                    None => return Ok(output),
                }
            }
        })
    }

    /// Runs one state; its output and next state.
    async fn run_state(&self, state: &State, scope: &str, step: u32, raw: Value, vars: &Vars) -> Result<Exit, Stop> {
        let key = (scope.to_string(), step);
        let (entered_before, wait_until) = {
            let log = lock(&self.log);
            let rec = log.steps.get(&key);
            (rec.and_then(|r| r.entered_ms), rec.and_then(|r| r.wait_until_ms))
        };
        let entered_ms = entered_before.unwrap_or_else(now_ms);
        let ctx = self.context(state, entered_ms, 0);
        let entry = {
            let mut entropy = lock(&self.entropy);
            step::enter(state, &raw, &ctx, vars, &mut *entropy, i128::from(now_ms()) * 1_000_000)
        };
        if entered_before.is_none() {
            let wait_until_ms = match &entry {
                Entry::WaitUntil { until_ns, .. } => Some(ns_to_ms(*until_ns)),
                _ => None,
            };
            let entered = StateEntered {
                state_type: state.type_name().into(),
                name: state.name.clone(),
                input: raw.clone(),
                wait_until_ms,
            };
            self.push(HistoryEvent::StateEntered(entered), scope, step, 0);
        }
        match entry {
            Entry::Done { output, next, assigned } => Ok((output, next, assigned)),
            Entry::Failed(f) if !matches!(state.kind, StateKind::Fail(_)) => {
                let f = self.located(scope, step, state, f);
                // As Step Functions records a Map that fails on entry (its items could not be read): the
                // state's failure, with no `MapStateStarted` before it. Once, also across a resume.
                let ended = lock(&self.log)
                    .steps
                    .get(&(scope.to_string(), step))
                    .is_some_and(|r| r.attempts.get(&0).is_some_and(|a| a.ended_ms.is_some()));
                if matches!(state.kind, StateKind::Map(_)) && !ended {
                    self.push(HistoryEvent::MapStateFailed, scope, step, 0);
                }
                self.fail(state, &raw, f, &ctx, vars)
            }
            Entry::Failed(f) => self.fail(state, &raw, f, &ctx, vars),
            Entry::WaitUntil { until_ns, output, next, assigned } => {
                let until_ms = wait_until.unwrap_or(ns_to_ms(until_ns));
                self.flush(None).await.map_err(Stop::Record)?;
                sleep_until_ms(until_ms).await;
                Ok((output, next, assigned))
            }
            Entry::Invoke { .. } => self.run_task(state, scope, step, (&raw, vars), entry, entered_ms).await,
            Entry::Parallel { input } => {
                let StateKind::Parallel(parallel) = &state.kind else { return unreachable_state(state) };
                let what = Composite::Parallel(parallel, input);
                self.run_composite(state, scope, step, (&raw, vars), &ctx, what).await
            }
            Entry::Map { items, max_concurrency, tolerated_failures, batches, tolerance, reader, writer } => {
                let StateKind::Map(map) = &state.kind else { return unreachable_state(state) };
                let what = Composite::Map {
                    map,
                    items,
                    max_concurrency,
                    tolerated: tolerated_failures,
                    batches,
                    tolerance,
                    reader,
                    writer,
                };
                self.run_composite(state, scope, step, (&raw, vars), &ctx, what).await
            }
        }
    }

    /// A Parallel or Map state: its branches or iterations, run again as a whole per the state's `Retry`
    /// (each attempt's branches and iterations in scopes of their own), then `Catch` or the result.
    async fn run_composite(
        &self,
        state: &State,
        scope: &str,
        step: u32,
        (raw, vars): (&Value, &Vars),
        ctx: &Context,
        what: Composite<'_>,
    ) -> Result<Exit, Stop> {
        let retriers = step::retriers(state);
        let mut attempts = Attempts::default();
        let mut attempt: u32 = 0;
        loop {
            let (started, ended_ms) = {
                let log = lock(&self.log);
                let known = log.steps.get(&(scope.to_string(), step)).and_then(|r| r.attempts.get(&attempt));
                (known.is_some_and(|a| a.started), known.and_then(|a| a.ended_ms))
            };
            let result = match &what {
                Composite::Parallel(parallel, input) => {
                    if !started {
                        self.push(HistoryEvent::ParallelStateStarted, scope, step, attempt);
                    }
                    let runs = parallel.branches.iter().enumerate().map(|(i, b)| {
                        // A branch reads the variables of the scopes around it; what it assigns stays in it.
                        let child = child_scope(scope, step, attempt, 'b', i);
                        self.run_scope(b, child, input.clone(), vars.clone())
                    });
                    match futures_util::future::try_join_all(runs).await {
                        Ok(outputs) => Ok(Value::Array(outputs)),
                        Err(Stop::Failed(f)) => Err(f),
                        Err(other) => return Err(other),
                    }
                }
                Composite::Map { map, items, max_concurrency, tolerated, batches, tolerance, reader, writer } => {
                    // The items, however many batches carry them.
                    let length = if batches.is_empty() { items.len() } else { batches.iter().sum() };
                    if !started {
                        self.push(
                            HistoryEvent::MapStateStarted(MapStarted { length: length as u64 }),
                            scope,
                            step,
                            attempt,
                        );
                        if attempt == 0 {
                            self.services.stats.record_items(&self.state_key(&state.name), length);
                        }
                    }
                    match &map.distributed {
                        Some(d) => {
                            let run = distributed::MapRun {
                                state,
                                dist: d,
                                inputs: items,
                                batches,
                                tolerance: *tolerance,
                                max_concurrency: *max_concurrency,
                                reader: reader.as_deref(),
                                writer: writer.as_deref(),
                                ctx,
                                vars,
                            };
                            self.map_run(run, scope, step, attempt).await?
                        }
                        None => {
                            let limits = (*max_concurrency, *tolerated);
                            self.map_attempt(map, items, limits, vars, scope, step, attempt).await?
                        }
                    }
                }
            };
            // As Step Functions records it: an attempt that is retried ends with no event (the next one
            // starts with `…StateStarted`); the state's last attempt ends with `…StateSucceeded/Failed`.
            let retry = match &result {
                Err(f) => next_retry(retriers, &mut attempts, &f.error, self.random()),
                Ok(_) => None,
            };
            if retry.is_none() && ended_ms.is_none() {
                let ended = match (&what, result.is_ok()) {
                    (Composite::Parallel(..), true) => HistoryEvent::ParallelStateSucceeded,
                    (Composite::Parallel(..), false) => HistoryEvent::ParallelStateFailed,
                    (Composite::Map { .. }, true) => HistoryEvent::MapStateSucceeded,
                    (Composite::Map { .. }, false) => HistoryEvent::MapStateFailed,
                };
                self.push(ended, scope, step, attempt);
            }
            let Some(delay_ms) = retry else { return self.finish((state, scope, step), raw, result, ctx, vars) };
            attempt += 1;
            // A resumed execution whose next attempt had started already goes straight on to it.
            let next_started = lock(&self.log)
                .steps
                .get(&(scope.to_string(), step))
                .is_some_and(|r| r.attempts.get(&attempt).is_some_and(|a| a.started));
            if !next_started {
                self.flush(None).await.map_err(Stop::Record)?;
                sleep_until_ms(now_ms() + delay_ms as i64).await;
            }
        }
    }

    /// One attempt of a Map state: its iterations, at most `max_concurrency` at once (0: no limit but
    /// Step Functions' inline one). Once more iterations failed than `tolerated` (none, when absent), no
    /// further iteration starts: the state has failed.
    #[allow(clippy::too_many_arguments)]
    async fn map_attempt(
        &self,
        map: &stoke_asl::definition::MapState,
        items: &[Value],
        (max_concurrency, tolerated): (usize, Option<usize>),
        vars: &Vars,
        scope: &str,
        step: u32,
        attempt: u32,
    ) -> Result<Result<Value, Failure>, Stop> {
        let limit = if max_concurrency == 0 { UNLIMITED_MAP_CONCURRENCY } else { max_concurrency };
        let slots = tokio::sync::Semaphore::new(limit);
        let failed = std::sync::atomic::AtomicUsize::new(0);
        let runs = items.iter().enumerate().map(|(i, item)| {
            let (slots, failed) = (&slots, &failed);
            let child = child_scope(scope, step, attempt, 'i', i);
            async move {
                let _permit = slots.acquire().await.map_err(|e| Stop::Record(RecordError(e.to_string())))?;
                let resumed = lock(&self.log).steps.contains_key(&(child.clone(), 0));
                if !resumed && failed.load(std::sync::atomic::Ordering::Relaxed) > tolerated.unwrap_or(0) {
                    return Ok(None); // the state has failed: this iteration does not start
                }
                // A resumed iteration announced its start already.
                if !resumed {
                    let started = HistoryEvent::MapIterationStarted(MapIteration { index: i as u64 });
                    self.push(started, scope, step, attempt);
                }
                let r = self.run_scope(&map.processor, child, item.clone(), vars.clone()).await;
                let index = MapIteration { index: i as u64 };
                let (ended, result) = match r {
                    Ok(v) => (HistoryEvent::MapIterationSucceeded(index), Ok(v)),
                    Err(Stop::Failed(f)) => {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        (HistoryEvent::MapIterationFailed(index), Err(f))
                    }
                    Err(other) => return Err(other),
                };
                let known = lock(&self.log).iterations_done.contains(&(scope.to_string(), step, attempt, i as u64));
                if !known {
                    self.push(ended, scope, step, attempt);
                }
                Ok(Some(result))
            }
        });
        let results: Vec<Option<Result<Value, Failure>>> = futures_util::future::try_join_all(runs).await?;
        Ok(step::map_result(results.into_iter().flatten().collect(), tolerated))
    }

    /// The state's result through its output processing, then Catch for a failure; a failure of the
    /// processing itself is located first (the effect's own failure was, where it happened).
    fn finish(
        &self,
        (state, scope, step): (&State, &str, u32),
        raw: &Value,
        result: Result<Value, Failure>,
        ctx: &Context,
        vars: &Vars,
    ) -> Result<Exit, Stop> {
        let from_effect = result.is_err();
        let processed = step::process_result(state, raw, result, ctx, vars, &mut *lock(&self.entropy));
        match processed {
            Ok((output, assigned)) => Ok((output, state.next.clone(), assigned)),
            Err(f) => {
                let f = if from_effect { f } else { self.located(scope, step, state, f) };
                self.fail(state, raw, f, ctx, vars)
            }
        }
    }

    /// The Lambda service error Step Functions reports for an invocation of `reference` that never ran; for
    /// a function that does not exist, its cause word for word (recorded on AWS), naming the qualified ARN.
    fn invoke_failure(&self, reference: &str, e: InvokeFailure) -> Failure {
        let kind = e.class().for_lambda();
        let wanted = stoke_core::reference::FunctionRef::parse(reference).ok();
        match wanted {
            Some(r) if kind == stoke_core::error::ErrorKind::NotFound => {
                let account = r.account.unwrap_or_else(|| self.record.account.clone());
                let qualifier = r.qualifier.unwrap_or(stoke_core::Qualifier::Latest).to_string();
                let arn =
                    stoke_core::reference::function_arn(&self.services.region, &account, &r.name, Some(&qualifier));
                let request_id = stoke_asl::intrinsic::random_uuid(&mut *lock(&self.entropy));
                Failure::new(
                    kind.task_error(),
                    format!(
                        "Function not found: {arn} (Service: AWSLambda; Status Code: 404; Error Code: \
                         ResourceNotFoundException; Request ID: {request_id}; Proxy: null)"
                    ),
                )
            }
            _ => Failure::new(kind.task_error(), e.to_string()),
        }
    }

    /// A `States.Runtime` or `States.QueryEvaluationError` failure of the state at `step` of `scope`, its
    /// cause led by where it happened, as Step Functions words it: "An error occurred while executing the
    /// state 'X' (entered at the event id #N). …". A failed JSONata expression is also recorded as Step
    /// Functions does, in an `EvaluationFailed` event naming the field. Other failures are returned as they are.
    fn located(&self, scope: &str, step: u32, state: &State, f: Failure) -> Failure {
        if f.error != stoke_asl::errors::RUNTIME && f.error != stoke_asl::errors::QUERY_EVALUATION_ERROR {
            return f;
        }
        let (seq, recorded) = {
            let log = lock(&self.log);
            let rec = log.steps.get(&(scope.to_string(), step));
            (rec.and_then(|r| r.entered_seq), rec.is_some_and(|r| r.evaluation_failed))
        };
        let Some(seq) = seq else { return f };
        let cause = format!(
            "An error occurred while executing the state '{}' (entered at the event id #{seq}). {}",
            state.name, f.cause
        );
        let f = Failure { cause, ..f };
        if let (Some(location), false) = (&f.location, recorded) {
            let event = EvaluationFailed {
                error: f.error.clone(),
                cause: f.cause.clone(),
                location: location.clone(),
                state: state.name.clone(),
            };
            self.push(HistoryEvent::EvaluationFailed(event), scope, step, 0);
        }
        f
    }

    fn fail(&self, state: &State, raw: &Value, f: Failure, ctx: &Context, vars: &Vars) -> Result<Exit, Stop> {
        match step::fail(state, raw, f, ctx, vars, &mut *lock(&self.entropy)) {
            Outcome::Next { output, next, assigned } => Ok((output, next, assigned)),
            Outcome::Failed(f) => Err(Stop::Failed(f)),
        }
    }

    /// A Task: attempts with Retry, each recorded before it runs; then ResultSelector/ResultPath or Catch.
    async fn run_task(
        &self,
        state: &State,
        scope: &str,
        step: u32,
        (raw, vars): (&Value, &Vars),
        entry: Entry,
        entered_ms: i64,
    ) -> Result<Exit, Stop> {
        let Entry::Invoke {
            function,
            qualifier,
            payload,
            timeout_seconds,
            timeout_given,
            heartbeat_seconds,
            wrap,
            parameters,
        } = entry
        else {
            return unreachable_state(state);
        };
        let key = (scope.to_string(), step);
        let retriers = step::retriers(state);
        let mut attempts = Attempts::default();
        let mut attempt: u32 = 0;
        let integration = if wrap { Integration::LambdaInvoke } else { Integration::Lambda };
        let reference = match &qualifier {
            Some(q) if !function.contains(':') => format!("{function}:{q}"),
            _ => function.clone(),
        };
        loop {
            let (known, started) = {
                let log = lock(&self.log);
                let a = log.steps.get(&key).and_then(|r| r.attempts.get(&attempt));
                (a.map(|a| (a.payload.clone(), a.result.clone())), a.is_some_and(|a| a.started))
            };
            let (ended_ms, result) = match known {
                Some((_, Some((ended, result)))) => (ended, result),
                Some((_, None)) if self.in_flight == InFlight::Fail => {
                    let failure = Failure::new(stoke_asl::errors::TASK_FAILED, LOST_ATTEMPT_CAUSE);
                    let event = TaskFailure { error: failure.error.clone(), cause: failure.cause.clone(), usage: None };
                    self.push(HistoryEvent::TaskFailed(integration, event), scope, step, attempt);
                    (now_ms(), Err(failure))
                }
                other => {
                    // An attempt scheduled before a restart runs again with what it recorded: the payload, or
                    // for lambda:invoke the Parameters it is made from (as Step Functions records them).
                    let scheduled = other.is_some();
                    let recorded = other.and_then(|(p, _)| p);
                    let payload = match recorded {
                        Some(p) if wrap && p.get("FunctionName").is_some() => step::lambda_invoke_payload(&p),
                        Some(p) => p,
                        None => payload.clone(),
                    };
                    if !scheduled {
                        let scheduled = TaskScheduled {
                            resource: reference.clone(),
                            input: parameters.clone().unwrap_or_else(|| payload.clone()),
                            // As Step Functions records it: only a timeout the definition gives.
                            timeout_seconds: timeout_given.then_some(timeout_seconds),
                        };
                        self.push(HistoryEvent::TaskScheduled(integration, scheduled), scope, step, attempt);
                    }
                    if !started {
                        // As Step Functions records every attempt: scheduled, started, then its end.
                        self.push(HistoryEvent::TaskStarted(integration), scope, step, attempt);
                    }
                    self.flush(None).await.map_err(Stop::Record)?;
                    let limit = match heartbeat_seconds {
                        Some(h) if h < timeout_seconds => (h, stoke_asl::errors::HEARTBEAT_TIMEOUT, "HeartbeatSeconds"),
                        _ => (timeout_seconds, stoke_asl::errors::TIMEOUT, "TimeoutSeconds"),
                    };
                    let (result, usage) = self.invoke(&reference, &payload, limit, wrap).await;
                    let ended = match &result {
                        Ok(out) => {
                            HistoryEvent::TaskSucceeded(integration, TaskSucceeded { output: out.clone(), usage })
                        }
                        Err(f) => {
                            let failure = TaskFailure { error: f.error.clone(), cause: f.cause.clone(), usage };
                            if f.error == stoke_asl::errors::TIMEOUT || f.error == stoke_asl::errors::HEARTBEAT_TIMEOUT
                            {
                                HistoryEvent::TaskTimedOut(integration, failure)
                            } else {
                                HistoryEvent::TaskFailed(integration, failure)
                            }
                        }
                    };
                    self.push(ended, scope, step, attempt);
                    (now_ms(), result)
                }
            };
            match result {
                Ok(out) => {
                    let ctx = self.context(state, entered_ms, attempt);
                    return self.finish((state, scope, step), raw, Ok(out), &ctx, vars);
                }
                Err(f) => match next_retry(retriers, &mut attempts, &f.error, self.random()) {
                    Some(delay_ms) => {
                        self.flush(None).await.map_err(Stop::Record)?;
                        sleep_until_ms(ended_ms + delay_ms as i64).await;
                        attempt += 1;
                    }
                    None => {
                        let ctx = self.context(state, entered_ms, attempt);
                        return self.fail(state, raw, f, &ctx, vars);
                    }
                },
            }
        }
    }

    /// One invocation of a function: its parsed result or its ASL failure, and what it used (absent when
    /// it never ran).
    async fn invoke(
        &self,
        reference: &str,
        payload: &Value,
        limit: (u64, &str, &str),
        wrap: bool,
    ) -> (Result<Value, Failure>, Option<Usage>) {
        match self.invoke_once(reference, payload, limit, wrap).await {
            Ok((result, usage)) => (result, Some(usage)),
            Err(f) => (Err(f), None),
        }
    }

    async fn invoke_once(
        &self,
        reference: &str,
        payload: &Value,
        (limit_seconds, timeout_error, field): (u64, &str, &str),
        wrap: bool,
    ) -> Result<(Result<Value, Failure>, Usage), Failure> {
        let req = InvokeRequest {
            payload: Bytes::from(payload.to_string()),
            client_context: None,
            want_log: false,
            request_id: None,
            execution: Some(Arc::from(self.record.id.as_str())),
            scratch: self.scratch,
            started: None,
        };
        let call = self.services.invoker.invoke(&self.record.account, reference, req);
        let (result, version) = match tokio::time::timeout(Duration::from_secs(limit_seconds), call).await {
            Err(_) => {
                return Err(Failure::new(
                    timeout_error,
                    format!("the task did not finish within {limit_seconds} s ({field})"),
                ))
            }
            Ok(Err(e)) => return Err(self.invoke_failure(reference, e)),
            Ok(Ok(r)) => r,
        };
        let parse = |body: &[u8]| {
            serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
        };
        let used = usage(&result, &self.services.invoker);
        let outcome = match result.outcome {
            stoke_scheduler::Outcome::Success(body) => {
                let out = parse(&body);
                Ok(if wrap { step::lambda_invoke_result(out, &version, &result.request_id, body.len()) } else { out })
            }
            stoke_scheduler::Outcome::FunctionError { error_type, body } => {
                let doc = parse(&body);
                let mut f = step::function_error(&doc);
                if doc.get("errorType").is_none() {
                    f.error = error_type;
                }
                Err(f)
            }
        };
        Ok((outcome, used))
    }
}

/// What the planner reads: the pools of the definition's functions, and the statistics of the run's
/// workflow.
struct Known<'a> {
    pools: &'a HashMap<String, (Arc<InvokeTarget>, FunctionView)>,
    run: &'a Run,
}

impl Knowledge for Known<'_> {
    fn function(&self, reference: &str) -> Option<FunctionView> {
        self.pools.get(reference).map(|(_, view)| *view)
    }

    fn branch_counts(&self, choice: &str) -> Vec<(String, u64)> {
        self.run.services.stats.branches(&self.run.state_key(choice))
    }

    fn map_items(&self, map: &str) -> Option<f64> {
        self.run.services.stats.items(&self.run.state_key(map))
    }
}

/// The functions Task states name statically, in every branch and iterator.
fn static_functions(machine: &Machine, out: &mut BTreeSet<String>) {
    for state in machine.states.values() {
        out.extend(prewarm::task_function(state));
        match &state.kind {
            StateKind::Parallel(p) => p.branches.iter().for_each(|b| static_functions(b, out)),
            StateKind::Map(m) => static_functions(&m.processor, out),
            _ => {}
        }
    }
}

async fn sleep_until_ms(until_ms: i64) {
    let left = u64::try_from(until_ms - now_ms()).unwrap_or(0);
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left)).await;
    }
}

/// Nanoseconds since the epoch to milliseconds, clamped to i64: a Wait of billions of years waits "forever"
/// rather than wrapping round to some other time.
fn ns_to_ms(ns: i128) -> i64 {
    i64::try_from(ns / 1_000_000).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}

/// Why a scope stopped early.
#[derive(Debug)]
enum Stop {
    Failed(Failure),
    TimedOut,
    Record(RecordError),
}

impl From<RecordError> for Stop {
    fn from(e: RecordError) -> Self {
        Stop::Record(e)
    }
}

/// What a Parallel or Map state runs in each attempt.
enum Composite<'a> {
    Parallel(&'a stoke_asl::definition::Parallel, Value),
    Map {
        map: &'a stoke_asl::definition::MapState,
        items: Vec<Value>,
        max_concurrency: usize,
        tolerated: Option<usize>,
        batches: Vec<usize>,
        tolerance: stoke_asl::step::Tolerance,
        reader: Option<Box<stoke_asl::step::Reader>>,
        writer: Option<Box<stoke_asl::step::Invocation>>,
    },
}

/// The scope of branch or iteration `i` (`kind` `b` or `i`) of the state at `step` of `scope`, in its
/// state's attempt `attempt` (the first attempt's scopes carry no attempt number).
fn child_scope(scope: &str, step: u32, attempt: u32, kind: char, i: usize) -> String {
    match attempt {
        0 => format!("{scope}/{step}:{kind}{i}"),
        n => format!("{scope}/{step}:{kind}{i}.{n}"),
    }
}

fn unreachable_state<T>(state: &State) -> Result<T, Stop> {
    Err(Stop::Failed(Failure::new(
        stoke_asl::errors::RUNTIME,
        format!("the engine met an effect that \"{}\" cannot have", state.name),
    )))
}

/// Step Functions' state machine ARN.
pub fn workflow_arn(region: &str, account: &stoke_core::AccountId, workflow: &str) -> String {
    stoke_core::reference::state_machine_arn(region, account, workflow)
}

/// Step Functions' execution ARN.
pub fn execution_arn(region: &str, e: &ExecutionRecord) -> String {
    format!("arn:aws:states:{region}:{}:execution:{}:{}", e.account, e.workflow, e.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_past_the_i64_milliseconds_clamps_instead_of_wrapping() {
        assert_eq!(ns_to_ms(1_500_000_999), 1_500);
        assert_eq!(ns_to_ms(-2_000_000), -2);
        // Seconds: 10^16 from now, which `as i64` wrapped to a time in the past.
        assert_eq!(ns_to_ms(10i128.pow(25)), i64::MAX);
        assert_eq!(ns_to_ms(-(10i128.pow(25))), i64::MIN);
    }

    fn event(seq: u64, kind: &str, scope: &str, step: u32, attempt: u32, details: Value) -> HistoryRow {
        HistoryRow {
            seq,
            timestamp_ms: 1000 + seq as i64,
            kind: kind.into(),
            scope: scope.into(),
            step,
            attempt,
            details: details.to_string(),
        }
    }

    /// The replay index is what lets a restarted engine skip finished work; check what it learns.
    #[test]
    fn the_history_index_knows_what_finished() {
        let mut log = Log::default();
        let history = [
            event(1, "ExecutionStarted", "", 0, 0, json!({"input": {}})),
            event(2, "TaskStateEntered", "", 0, 0, json!({"name": "T", "input": {}})),
            event(3, "LambdaFunctionScheduled", "", 0, 0, json!({"input": {"a": 1}})),
            event(4, "LambdaFunctionFailed", "", 0, 0, json!({"error": "E", "cause": "c"})),
            event(5, "LambdaFunctionScheduled", "", 0, 1, json!({"input": {"a": 1}})),
            event(6, "LambdaFunctionSucceeded", "", 0, 1, json!({"output": 7})),
            event(7, "TaskStateExited", "", 0, 0, json!({"name": "T", "output": 7, "next": "W"})),
            event(8, "WaitStateEntered", "", 1, 0, json!({"name": "W", "input": 7, "waitUntilMs": 99})),
            event(9, "MapIterationSucceeded", "/2:i3", 0, 0, json!({"index": 4})),
            event(10, "TaskScheduled", "/2:i3", 0, 0, json!({"input": 1})),
            event(11, "ParallelStateStarted", "", 3, 1, json!({})),
            event(12, "ParallelStateFailed", "", 3, 1, json!({})),
            event(13, "ParallelStateStarted", "", 3, 2, json!({})),
        ];
        for e in &history {
            log.index(&Recorded::from_row(e));
        }
        assert_eq!(log.seq, 13);
        let t = &log.steps[&(String::new(), 0)];
        assert_eq!(t.exited, Some((json!(7), Some("W".into()), None)));
        assert_eq!(t.attempts[&0].result.as_ref().map(|r| r.1.clone()), Some(Err(Failure::new("E", "c"))));
        assert_eq!(t.attempts[&1].result.as_ref().map(|r| r.1.clone()), Some(Ok(json!(7))));
        let w = &log.steps[&(String::new(), 1)];
        assert_eq!((w.entered_ms, w.wait_until_ms, w.exited.is_none()), (Some(1008), Some(99), true));
        let in_flight = &log.steps[&("/2:i3".to_string(), 0)].attempts[&0];
        assert_eq!((in_flight.payload.clone(), in_flight.result.is_none()), (Some(json!(1)), true));
        assert!(log.iterations_done.contains(&("/2:i3".to_string(), 0, 0, 4)));
        // A Parallel state's second attempt ended, its third is under way.
        let p = &log.steps[&(String::new(), 3)].attempts;
        assert_eq!((p[&1].started, p[&1].ended_ms, p[&2].started, p[&2].ended_ms), (true, Some(1012), true, None));
    }

    #[test]
    fn each_attempt_of_a_parallel_or_map_state_runs_its_branches_in_scopes_of_its_own() {
        assert_eq!(child_scope("", 2, 0, 'b', 1), "/2:b1");
        assert_eq!(child_scope("/0:i3", 1, 2, 'i', 0), "/0:i3/1:i0.2");
    }
}
