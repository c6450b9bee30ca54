//! A distributed Map: each attempt of the state starts a *map run*, whose items (or batches of them) run
//! as child executions of their own, each with its own history, under the workflow name
//! `<machine>/<label>` (Step Functions' form). The parent's history holds the map run
//! (`MapRunStarted` → `MapRunSucceeded`/`MapRunFailed`), not each item's states.
//!
//! Everything is named from where it runs, so a resumed execution finds its map run and its children
//! again: the map run's id comes from the execution, scope, step and attempt; a child's name is
//! `<map run id>-<index>`. A child that had ended keeps its result; one that was running resumes from its
//! own history (children are driven by their parent, never resumed on their own).

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};
use stoke_asl::definition::Distributed;
use stoke_asl::step::{self, Context, Invocation, Reader, Tolerance};
use stoke_asl::{Definition, Failure, State};
use stoke_core::sync::lock;
use stoke_store::{ExecutionRecord, ExecutionStatus, MapRunRecord};

use super::{RecordError, Recorded, Run, Stop};
use crate::registry::now_ms;
use crate::workflows::history::{ErrorCause, ExecutionStarted, HistoryEvent, MapRunStarted};

/// Children a distributed Map without `MaxConcurrency` runs at once on this node (Step Functions allows
/// 10,000 across its fleet).
pub const DISTRIBUTED_CONCURRENCY: usize = 1_000;

/// The cause of a map run that failed more items than it tolerates (Step Functions' words).
pub const EXCEEDED_CAUSE: &str = "The specified tolerated failure threshold was exceeded";
/// Why a map run's children end ABORTED when the execution that started the run has ended.
pub const ENDED_CAUSE: &str = "the execution that started its map run ended";

/// How long a reader's or writer's function may take.
const CALL_SECONDS: u64 = 900;

/// Errors of a map run's reader and writer (the States Language's names).
const READER_FAILED: &str = "States.ItemReaderFailed";
const WRITER_FAILED: &str = "States.ResultWriterFailed";

/// One attempt of a distributed Map, as the state's entry gave it.
pub(super) struct MapRun<'a> {
    pub state: &'a State,
    pub dist: &'a Distributed,
    /// The children's inputs (none yet when a reader gives the items).
    pub inputs: &'a [Value],
    pub batches: &'a [usize],
    pub tolerance: Tolerance,
    pub max_concurrency: usize,
    pub reader: Option<&'a Reader>,
    pub writer: Option<&'a Invocation>,
    pub ctx: &'a Context,
    /// The variables of the Map's scope, which its `ItemSelector` reads (the children do not see them).
    pub vars: &'a step::Vars,
}

/// The items a reader's function answered, at most `max_items` of them (0: all). Step Functions' causes:
/// a negative MaxItems, and an answer that is not an array.
pub fn read_items(answer: Value, max_items: i64) -> Result<Vec<Value>, Failure> {
    if max_items < 0 {
        return Err(Failure::new(READER_FAILED, "field MaxItems must be positive"));
    }
    let Value::Array(mut items) = answer else {
        return Err(Failure::new(READER_FAILED, "Attempting to map over non-iterable node."));
    };
    if max_items > 0 {
        items.truncate(usize::try_from(max_items).unwrap_or(usize::MAX));
    }
    Ok(items)
}

/// What a writer's function is given: its payload (an object gets the fields added; anything else is put
/// under `Payload`), the map run's ARN and one record per child in order, as Step Functions' result files
/// hold them (`Input` and `Output` as JSON text; a child never started is `PENDING`).
pub fn writer_payload(payload: &Value, arn: &str, results: Vec<Value>) -> Value {
    let mut out = match payload {
        Value::Object(m) => Value::Object(m.clone()),
        other => json!({"Payload": other}),
    };
    out["MapRunArn"] = json!(arn);
    out["Results"] = Value::Array(results);
    out
}

/// A UUID-shaped id derived from `seed` (name-based: the same seed gives the same id).
pub fn name_uuid(seed: &str) -> String {
    let h = stoke_store::sha256_hex(seed.as_bytes());
    // Version 5 and the RFC 4122 variant, as a name-based UUID carries them.
    let variant = ["8", "9", "a", "b"][usize::from(h.as_bytes()[16] % 4)];
    format!("{}-{}-5{}-{variant}{}-{}", &h[..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

/// Step Functions' map run ARN: `arn:aws:states:<region>:<account>:mapRun:<machine>/<label>:<id>`.
pub fn map_run_arn(region: &str, account: &stoke_core::AccountId, children: &str, id: &str) -> String {
    format!("arn:aws:states:{region}:{account}:mapRun:{children}:{id}")
}

/// The (children's workflow, map run id) a map run ARN names.
pub fn parse_map_run_arn(arn: &str) -> Option<(String, String)> {
    match arn.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "states", _, _, "mapRun", children, id] if children.contains('/') && !id.is_empty() => {
            Some((children.to_string(), id.to_string()))
        }
        _ => None,
    }
}

/// The name of a map run's `index`-th child.
pub fn child_name(map_run: &str, index: usize) -> String {
    format!("{map_run}-{index}")
}

/// The map run a child execution belongs to (its name without the index), if it is one.
pub fn map_run_of(child: &ExecutionRecord) -> Option<&str> {
    child_parts(child).map(|(run, _)| run)
}

/// A child execution's index in its map run (the order of its items), if it is one.
pub fn child_index(child: &ExecutionRecord) -> Option<usize> {
    child_parts(child).and_then(|(_, i)| i.parse().ok())
}

fn child_parts(child: &ExecutionRecord) -> Option<(&str, &str)> {
    if !child.workflow.contains('/') {
        return None;
    }
    child.name.rsplit_once('-')
}

/// What a map run's record keeps besides its status (`MapRunRecord::details`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MapRunDetails {
    pub label: String,
    pub execution_type: String,
    /// 0: as many as the node runs at once.
    pub max_concurrency: usize,
    pub tolerated_failure_count: usize,
    pub tolerated_failure_percentage: f64,
    /// Items per child, in order (one each without an `ItemBatcher`).
    pub items: Vec<usize>,
    /// What a reader's function answered (kept, so a resumed run gives each child the same input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<Vec<Value>>,
}

/// A map run's item and execution counts (`DescribeMapRun`'s `itemCounts`, `executionCounts`), from its
/// children's statuses by index; a child not started is pending.
pub fn counts(details: &MapRunDetails, children: &[(usize, ExecutionStatus)]) -> (Value, Value) {
    #[derive(Default)]
    struct C {
        pending: usize,
        running: usize,
        succeeded: usize,
        failed: usize,
        timed_out: usize,
        aborted: usize,
        total: usize,
    }
    let (mut items, mut execs) = (C::default(), C::default());
    let mut seen = vec![None; details.items.len()];
    for (i, status) in children {
        if let Some(slot) = seen.get_mut(*i) {
            *slot = Some(*status);
        }
    }
    for (size, status) in details.items.iter().zip(seen) {
        for (c, n) in [(&mut items, *size), (&mut execs, 1)] {
            c.total += n;
            let field = match status {
                None => &mut c.pending,
                Some(ExecutionStatus::Running) => &mut c.running,
                Some(ExecutionStatus::Succeeded) => &mut c.succeeded,
                Some(ExecutionStatus::Failed) => &mut c.failed,
                Some(ExecutionStatus::TimedOut) => &mut c.timed_out,
                Some(ExecutionStatus::Aborted) => &mut c.aborted,
            };
            *field += n;
        }
    }
    let to_json = |c: C| {
        json!({"pending": c.pending, "running": c.running, "succeeded": c.succeeded, "failed": c.failed,
               "timedOut": c.timed_out, "aborted": c.aborted, "total": c.total, "resultsWritten": c.succeeded})
    };
    (to_json(items), to_json(execs))
}

/// Ends what an execution's map runs left running: each child still RUNNING ends ABORTED with `cause` (its
/// own map runs first, however it ended), then the run. For an execution that ended, was stopped, or was cut
/// short, and for children whose parent is gone; idempotent. Returns how many executions it ended.
pub fn end_map_runs(
    store: &dyn stoke_store::Store,
    account: &stoke_core::AccountId,
    execution_id: &str,
    cause: &str,
) -> stoke_store::Result<usize> {
    let mut ended = 0;
    for mut run in store.list_map_runs(account, execution_id)? {
        let children = store.list_executions(account, Some(&run.children), None, None, usize::MAX)?;
        for child in children.iter().filter(|c| map_run_of(c) == Some(run.id.as_str())) {
            ended += end_map_runs(store, account, &child.id, cause)?;
            if child.status == ExecutionStatus::Running && abort_execution(store, child, None, Some(cause))?.is_some() {
                ended += 1;
            }
        }
        if run.status == "RUNNING" {
            run.status = "ABORTED".into();
            run.stopped_ms = Some(now_ms());
            store.put_map_run(&run)?;
        }
    }
    Ok(ended)
}

/// Ends a RUNNING execution ABORTED with `error` and `cause`: `ExecutionAborted` after its last event, and
/// its record, in one write. On a shared store it first becomes this node's (the node running it is
/// refused at its next write). A write of its engine that lands first moves the abort after it. `None`
/// when it had ended meanwhile.
pub fn abort_execution(
    store: &dyn stoke_store::Store,
    e: &ExecutionRecord,
    error: Option<&str>,
    cause: Option<&str>,
) -> stoke_store::Result<Option<ExecutionRecord>> {
    if !store.take_execution(&e.id)? {
        return Ok(None);
    }
    let mut done = e.clone();
    done.status = ExecutionStatus::Aborted;
    done.error = error.map(String::from);
    done.cause = cause.map(String::from);
    done.stopped_ms = Some(now_ms());
    for _ in 0..8 {
        let seq = store.history(&e.id)?.last().map_or(0, |h| h.seq) + 1;
        let why = ErrorCause { error: done.error.clone(), cause: done.cause.clone() };
        let event = Recorded {
            seq,
            timestamp_ms: now_ms(),
            scope: String::new(),
            step: 0,
            attempt: 0,
            event: HistoryEvent::ExecutionAborted(why),
        };
        match store.record_execution(&e.id, &[event.to_row()], Some(&done)) {
            Ok(()) => return Ok(Some(done)),
            Err(stoke_store::StoreError::Conflict(_)) => {
                if store.get_execution(&e.id)?.is_none_or(|now| now.status != ExecutionStatus::Running) {
                    return Ok(None);
                }
            }
            Err(other) => return Err(other),
        }
    }
    Err(stoke_store::StoreError::Conflict(format!("execution {} kept changing while it was aborted", e.id)))
}

/// A new RUNNING execution and its first event (`ExecutionStarted`), to be inserted together.
pub fn new_execution(
    id: String,
    account: &stoke_core::AccountId,
    workflow: &str,
    name: String,
    definition: &str,
    started: ExecutionStarted,
) -> (ExecutionRecord, Recorded) {
    let record = ExecutionRecord {
        id,
        account: account.clone(),
        workflow: workflow.to_string(),
        name,
        definition: definition.to_string(),
        status: ExecutionStatus::Running,
        input: started.input.to_string(),
        output: None,
        error: None,
        cause: None,
        started_ms: now_ms(),
        stopped_ms: None,
    };
    let first = Recorded {
        seq: 1,
        timestamp_ms: record.started_ms,
        scope: String::new(),
        step: 0,
        attempt: 0,
        event: HistoryEvent::ExecutionStarted(started),
    };
    (record, first)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> stoke_store::Result<T> + Send + 'static) -> Result<T, Stop> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Stop::Record(RecordError(e.to_string())))?
        .map_err(|e| Stop::Record(RecordError(e.to_string())))
}

impl Run {
    /// One attempt of a distributed Map: its map run, children at most `max_concurrency` at once (0: up to
    /// [`DISTRIBUTED_CONCURRENCY`]). A reader's items are read once the run has started (a reader that fails
    /// fails the run with `States.ItemReaderFailed`). Once more items failed than tolerated, no further child
    /// starts and the run fails with `States.ExceedToleratedFailureThreshold`; with failures tolerated, a
    /// failed child's place in the output holds its `{"Error", "Cause"}`. A writer is given the results; the
    /// state's output is then `{"MapRunArn", "ResultWriterDetails": <its answer>}`.
    pub(super) async fn map_run(
        &self,
        run: MapRun<'_>,
        scope: &str,
        step: u32,
        attempt: u32,
    ) -> Result<Result<Value, Failure>, Stop> {
        let MapRun { state, dist, tolerance, max_concurrency, reader, writer, ctx, .. } = run;
        let store = self.services.store.clone();
        let account = self.record.account.clone();
        let id = name_uuid(&format!("{}/{scope}/{step}/{attempt}", self.record.id));
        let label = dist.label.clone().unwrap_or_else(|| state.name.clone());
        let children = format!("{}/{label}", self.record.workflow);
        let arn = map_run_arn(&self.services.region, &account, &children, &id);
        let known = {
            let (store, account, id) = (store.clone(), account.clone(), id.clone());
            blocking(move || store.get_map_run(&account, &id)).await?
        };
        let known_details: Option<MapRunDetails> = known.as_ref().and_then(|k| serde_json::from_str(&k.details).ok());
        let sizes_of = |inputs: &[Value], batches: &[usize]| -> Vec<usize> {
            if batches.is_empty() {
                vec![1; inputs.len()]
            } else {
                batches.to_vec()
            }
        };
        let mut details = MapRunDetails {
            label,
            execution_type: dist.execution_type.clone(),
            max_concurrency,
            tolerated_failure_count: tolerance.count.unwrap_or(0),
            tolerated_failure_percentage: tolerance.percentage.unwrap_or(0.0),
            items: sizes_of(run.inputs, run.batches),
            read: None,
        };
        let mut record = MapRunRecord {
            id: id.clone(),
            account: account.clone(),
            execution_id: self.record.id.clone(),
            children: children.clone(),
            status: "RUNNING".into(),
            started_ms: known.as_ref().map_or_else(now_ms, |k| k.started_ms),
            stopped_ms: None,
            details: known
                .as_ref()
                .map_or_else(|| serde_json::to_string(&details).unwrap_or_default(), |k| k.details.clone()),
        };
        if known.is_none() {
            let (store, r) = (store.clone(), record.clone());
            blocking(move || store.put_map_run(&r)).await?;
        }
        if !lock(&self.log).map_runs_started.contains(&(scope.to_string(), step, attempt)) {
            let started = MapRunStarted { map_run: id.clone(), children: children.clone() };
            self.push(HistoryEvent::MapRunStarted(started), scope, step, attempt);
        }
        self.flush(None).await?;

        // The items: the input's, or the reader's (read once: a resumed run finds them in its record).
        let read_inputs;
        let (inputs, batches): (&[Value], &[usize]) = match reader {
            None => (run.inputs, run.batches),
            Some(r) => {
                let items = match known_details.and_then(|d| d.read) {
                    Some(items) => Ok(items),
                    None => self.call(&r.call).await?.and_then(|answer| read_items(answer, r.max_items)),
                };
                let shaped = items.and_then(|items| {
                    details.read = Some(items.clone());
                    step::map_inputs(run.state, items, &r.input, ctx, run.vars, &mut *lock(&self.entropy))
                });
                match shaped {
                    Ok(shaped) => {
                        read_inputs = shaped;
                        (&read_inputs.0, &read_inputs.1)
                    }
                    Err(f) => {
                        let f = if f.error == READER_FAILED { f } else { Failure::new(READER_FAILED, f.cause) };
                        return self.end_map_run(record, Err(f), scope, step, attempt).await;
                    }
                }
            }
        };
        if reader.is_some() {
            details.items = sizes_of(inputs, batches);
            record.details = serde_json::to_string(&details).unwrap_or_default();
            let (store, r) = (store.clone(), record.clone());
            blocking(move || store.put_map_run(&r)).await?;
        }
        let sizes = details.items.clone();
        // A run that ended before a restart starts no child it had not started (its end is recorded).
        let ended_before = known.as_ref().is_some_and(|k| k.status != "RUNNING")
            || lock(&self.log).map_runs_ended.contains(&(scope.to_string(), step, attempt));
        let total_items: usize = sizes.iter().sum();
        let tolerated = tolerance.tolerated(total_items).unwrap_or(0);

        let definition = Definition::parse(&dist.definition).map_err(|problems| {
            Stop::Failed(Failure::new(
                stoke_asl::errors::RUNTIME,
                format!("the item processor is not a definition of its own: {problems:?}"),
            ))
        })?;
        let limit = if max_concurrency == 0 { DISTRIBUTED_CONCURRENCY } else { max_concurrency };
        let slots = tokio::sync::Semaphore::new(limit);
        let failed_items = AtomicUsize::new(0);
        let runs = inputs.iter().enumerate().map(|(i, input)| {
            let (slots, failed_items, definition) = (&slots, &failed_items, &definition);
            let (store, account, children, name) =
                (store.clone(), account.clone(), children.clone(), child_name(&id, i));
            let size = sizes[i];
            async move {
                let _permit = slots.acquire().await.map_err(|e| Stop::Record(RecordError(e.to_string())))?;
                let found = {
                    let (store, account, children, name) =
                        (store.clone(), account.clone(), children.clone(), name.clone());
                    blocking(move || store.find_execution(&account, &children, &name)).await?
                };
                if found.is_none() && (ended_before || failed_items.load(Ordering::Relaxed) > tolerated) {
                    return Ok::<_, Stop>(None); // the run has failed: this child stays pending
                }
                let child = match found {
                    Some(c) => c,
                    None => self.start_child(&children, &name, input, &dist.definition).await?,
                };
                let ended = if child.status == ExecutionStatus::Running {
                    self.drive_child(child, definition.clone()).await?
                } else {
                    child
                };
                let result = match ended.status {
                    ExecutionStatus::Succeeded => {
                        Ok(ended.output.as_deref().and_then(|o| serde_json::from_str(o).ok()).unwrap_or(Value::Null))
                    }
                    _ => {
                        failed_items.fetch_add(size, Ordering::Relaxed);
                        Err(Failure::new(
                            ended.error.clone().unwrap_or_default(),
                            ended.cause.clone().unwrap_or_default(),
                        ))
                    }
                };
                Ok(Some((ended, result)))
            }
        });
        let ended: Vec<Option<(ExecutionRecord, Result<Value, Failure>)>> =
            futures_util::future::try_join_all(runs).await?;
        let exceeded = failed_items.load(Ordering::Relaxed) > tolerated;
        let mut result = if exceeded {
            Err(Failure::new(stoke_asl::errors::EXCEED_TOLERATED_FAILURE_THRESHOLD, EXCEEDED_CAUSE))
        } else {
            Ok(Value::Array(ended.iter().flatten().map(|(_, r)| r.clone().unwrap_or_else(|f| f.to_value())).collect()))
        };
        if let Some(w) = writer {
            let region = &self.services.region;
            let records = ended
                .iter()
                .zip(inputs)
                .enumerate()
                .map(|(i, (e, input))| match e {
                    None => json!({"Index": i, "Status": "PENDING", "Input": input.to_string()}),
                    Some((child, r)) => {
                        let mut v = json!({"Index": i, "ExecutionArn": super::execution_arn(region, child),
                            "Name": child.name, "Input": child.input, "Status": child.status.as_str()});
                        match r {
                            Ok(out) => v["Output"] = json!(out.to_string()),
                            Err(f) => {
                                v["Error"] = json!(f.error);
                                v["Cause"] = json!(f.cause);
                            }
                        }
                        v
                    }
                })
                .collect();
            let call = Invocation { payload: writer_payload(&w.payload, &arn, records), ..w.clone() };
            let written = match self.call(&call).await? {
                Ok(answer) => Ok(json!({"MapRunArn": arn, "ResultWriterDetails": answer})),
                Err(f) => Err(Failure::new(WRITER_FAILED, format!("{}: {}", f.error, f.cause))),
            };
            result = match (result, written) {
                (Ok(_), written) => written,
                (Err(f), _) => Err(f),
            };
        }
        self.end_map_run(record, result, scope, step, attempt).await
    }

    /// Records the map run's end (its record, then `MapRunSucceeded`/`MapRunFailed` unless a resumed run
    /// recorded it already) and returns its result.
    async fn end_map_run(
        &self,
        mut record: MapRunRecord,
        result: Result<Value, Failure>,
        scope: &str,
        step: u32,
        attempt: u32,
    ) -> Result<Result<Value, Failure>, Stop> {
        record.status = if result.is_ok() { "SUCCEEDED" } else { "FAILED" }.into();
        record.stopped_ms = Some(now_ms());
        let store = self.services.store.clone();
        let r = record.clone();
        blocking(move || store.put_map_run(&r)).await?;
        if !lock(&self.log).map_runs_ended.contains(&(scope.to_string(), step, attempt)) {
            let ended = match &result {
                Ok(_) => HistoryEvent::MapRunSucceeded,
                Err(f) => HistoryEvent::MapRunFailed(ErrorCause {
                    error: Some(f.error.clone()),
                    cause: Some(f.cause.clone()),
                }),
            };
            self.push(ended, scope, step, attempt);
        }
        Ok(result)
    }

    /// Calls a reader's or writer's function; its answer, or the failure it ended with.
    async fn call(&self, call: &Invocation) -> Result<Result<Value, Failure>, Stop> {
        let reference = match &call.qualifier {
            Some(q) if !call.function.contains(':') => format!("{}:{q}", call.function),
            _ => call.function.clone(),
        };
        let limit = (CALL_SECONDS, stoke_asl::errors::TIMEOUT, "the call's limit");
        Ok(match self.invoke_once(&reference, &call.payload, limit, false).await {
            Ok((result, _usage)) => result,
            Err(f) => Err(f),
        })
    }

    /// Records a new child execution with its first event.
    async fn start_child(
        &self,
        children: &str,
        name: &str,
        input: &Value,
        definition: &Value,
    ) -> Result<ExecutionRecord, Stop> {
        let started = ExecutionStarted {
            input: input.clone(),
            prewarm: Some(self.policy.as_str().to_string()),
            scratch: false,
            role_arn: self.role_arn.clone(),
        };
        let id = name_uuid(&format!("{}/{children}/{name}", self.record.id));
        let account = &self.record.account;
        let (child, started) = new_execution(id, account, children, name.to_string(), &definition.to_string(), started);
        let (store, c, row) = (self.services.store.clone(), child.clone(), started.to_row());
        blocking(move || store.insert_execution(&c, &[row])).await?;
        Ok(child)
    }

    /// Runs a child to its end (from its own history, when it had started before) and reads it back. On a
    /// shared store it first becomes this node's, as its parent is; map runs of its own that it left running
    /// end with it.
    async fn drive_child(&self, child: ExecutionRecord, definition: Definition) -> Result<ExecutionRecord, Stop> {
        let id = child.id.clone();
        let (store, taken) = (self.services.store.clone(), id.clone());
        if !blocking(move || store.take_execution(&taken)).await? {
            let (store, read) = (self.services.store.clone(), id.clone());
            return blocking(move || store.get_execution(&read))
                .await?
                .ok_or_else(|| Stop::Record(RecordError(format!("the child execution {id} disappeared"))));
        }
        let history = {
            let (store, id) = (self.services.store.clone(), id.clone());
            blocking(move || store.history(&id)).await?
        };
        let history: Vec<Recorded> = history.iter().map(Recorded::from_row).collect();
        let run =
            std::sync::Arc::new(Run::new(child, definition, &history, self.services.clone()).in_flight(self.in_flight));
        let nested = run.starts_map_runs();
        Box::pin(run.drive()).await.map_err(Stop::Record)?;
        if nested {
            let (store, account, ended) = (self.services.store.clone(), self.record.account.clone(), id.clone());
            blocking(move || end_map_runs(&*store, &account, &ended, ENDED_CAUSE)).await?;
        }
        let (store, read) = (self.services.store.clone(), id.clone());
        blocking(move || store.get_execution(&read))
            .await?
            .ok_or_else(|| Stop::Record(RecordError(format!("the child execution {id} disappeared"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_shaped_and_the_same_for_the_same_seed() {
        let a = name_uuid("exec/scope/1/0");
        assert_eq!(a, name_uuid("exec/scope/1/0"));
        assert_ne!(a, name_uuid("exec/scope/1/1"));
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{a}");
        assert_eq!(&a[14..15], "5");
        assert!("89ab".contains(&a[19..20]), "{a}");
    }

    #[test]
    fn map_run_arns_round_trip() {
        let account = stoke_core::AccountId::parse("123456789012").unwrap();
        let arn = map_run_arn("us-east-1", &account, "flow/Orders", "abc-1");
        assert_eq!(arn, "arn:aws:states:us-east-1:123456789012:mapRun:flow/Orders:abc-1");
        assert_eq!(parse_map_run_arn(&arn), Some(("flow/Orders".into(), "abc-1".into())));
        assert_eq!(parse_map_run_arn("arn:aws:states:us-east-1:1:execution:flow:x"), None);
        assert_eq!(parse_map_run_arn("arn:aws:states:us-east-1:1:mapRun:flow:x"), None, "no label");
    }

    #[test]
    fn counts_follow_the_children_and_batches() {
        let details = MapRunDetails {
            label: "L".into(),
            execution_type: "STANDARD".into(),
            max_concurrency: 0,
            tolerated_failure_count: 0,
            tolerated_failure_percentage: 0.0,
            items: vec![2, 2, 1, 3],
            read: None,
        };
        let (items, execs) = counts(
            &details,
            &[(0, ExecutionStatus::Succeeded), (1, ExecutionStatus::Failed), (2, ExecutionStatus::Running)],
        );
        assert_eq!(
            execs,
            json!({"pending": 1, "running": 1, "succeeded": 1, "failed": 1, "timedOut": 0, "aborted": 0,
                   "total": 4, "resultsWritten": 1})
        );
        assert_eq!(
            (items["total"].as_u64(), items["failed"].as_u64(), items["pending"].as_u64()),
            (Some(8), Some(2), Some(3))
        );
        assert_eq!(items["resultsWritten"], 2);
    }

    #[test]
    fn a_reader_gives_an_array_cut_to_max_items() {
        assert_eq!(read_items(json!([1, 2, 3]), 0).unwrap(), [json!(1), json!(2), json!(3)], "0: all");
        assert_eq!(read_items(json!([1, 2, 3]), 2).unwrap(), [json!(1), json!(2)]);
        let f = read_items(json!({"Items": [1]}), 0).unwrap_err();
        assert_eq!((f.error.as_str(), f.cause.as_str()), (READER_FAILED, "Attempting to map over non-iterable node."));
        assert_eq!(read_items(json!([1]), -1).unwrap_err().cause, "field MaxItems must be positive");
    }

    #[test]
    fn a_writer_gets_its_payload_with_the_run_and_its_results() {
        let p = writer_payload(&json!({"to": "archive"}), "arn:run", vec![json!({"Index": 0})]);
        assert_eq!(p, json!({"to": "archive", "MapRunArn": "arn:run", "Results": [{"Index": 0}]}));
        let p = writer_payload(&json!("text"), "arn:run", Vec::new());
        assert_eq!(p, json!({"Payload": "text", "MapRunArn": "arn:run", "Results": []}));
    }

    #[test]
    fn a_child_names_its_map_run() {
        let child = |workflow: &str, name: &str| ExecutionRecord {
            id: "c".into(),
            account: stoke_core::AccountId::parse("123456789012").unwrap(),
            workflow: workflow.into(),
            name: name.into(),
            definition: String::new(),
            status: ExecutionStatus::Running,
            input: "{}".into(),
            output: None,
            error: None,
            cause: None,
            started_ms: 0,
            stopped_ms: None,
        };
        let run = name_uuid("x");
        assert_eq!(map_run_of(&child("flow/L", &child_name(&run, 12))), Some(run.as_str()));
        assert_eq!(child_index(&child("flow/L", &child_name(&run, 12))), Some(12));
        assert_eq!(child_index(&child("flow", "some-12")), None, "not a child");
        assert_eq!(map_run_of(&child("flow", "some-name")), None, "not a child");
    }
}
