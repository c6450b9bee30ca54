//! `stoke tune`, the memory optimizer (seed 002's PreEnv Optimizer: Env Controller → Tester → Exec Analyzer
//! → Best Env Selector). Every rule it follows is in `stoke_core::tune`; this service runs the test
//! invocations, keeps the progress, stores the result, and applies it when asked.
//!
//! Each memory size runs as a temporary version of the function (`tune-<id>`): its own pool, so the first
//! invocation is a real cold start and nothing touches `$LATEST`, its aliases or their warm instances until
//! the result is applied. The temporary pools are released when the tune ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use stoke_core::keepalive::{advise, KeepAliveAdvice};
use stoke_core::sync::lock;
use stoke_core::tune::{self, Dimension, Recommendation, Sample, SizeReport, Strategy, Verdict};
use stoke_core::{AccountId, AliasRouting, ConfigPatch, FunctionName, ValidationError};
use stoke_scheduler::{InvokeRequest, InvokeTarget, Outcome};
use stoke_store::{Store, TuneRecord};

use crate::invoke::{InvokeFailure, Invoker};
use crate::registry::{now_ms, FunctionIf, Registry, RegistryError};
use crate::stats::Statistics;

pub use stoke_core::tune::TUNE_VERSION_PREFIX;

/// What a tune was asked to do.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TuneRequest {
    /// The event every test invocation gets (any JSON; `{}` when absent).
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
    /// Memory sizes to test, in MB: 1-16 sizes, each a multiple of 64 from 128 up to the node's limit (default
    /// 128, 256, 512, 1024, 1536, 2048, 3072, capped by the node). The function's current size is always
    /// tested too.
    #[schema(min_items = 1, max_items = 16, minimum = 128, multiple_of = 64)]
    pub memory: Option<Vec<u32>>,
    /// GPU shares to test instead of memory sizes, in percent of the GPU's compute (1-100 each; default 10,
    /// 25, 50, 75, 100): for a function holding a share of one GPU (`gpu_count` 1). Its current share is
    /// always tested too; its memory stays as it is.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 16, minimum = 1, maximum = 100)]
    pub gpu_percentage: Option<Vec<u32>>,
    /// GPU memory sizes to test instead, in MB (multiples of 256, at most the node's largest GPU; default 1024
    /// up to 32768, doubling): for a function holding a share of one GPU. Its current `gpu_memory_mb`, when
    /// set, is always tested too.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 16, minimum = 256, multiple_of = 256)]
    pub gpu_memory: Option<Vec<u32>>,
    /// Warm invocations per size after its cold start, 1-100 (default 10).
    #[schema(minimum = 1, maximum = 100)]
    pub runs: Option<u32>,
    /// `smallest-not-slower` (default), `cost`, `speed` or `balanced`.
    pub strategy: Option<String>,
    /// `smallest-not-slower`: how much slower than the fastest is still "not slower", 0–1 (default 0.05).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub tolerance: Option<f64>,
    /// `balanced`: the weight of cost against speed, 0–1 (default 0.5).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub weight: Option<f64>,
    /// Set the recommended memory on `$LATEST` when the tune succeeds.
    #[serde(default)]
    pub apply: bool,
    /// With `apply` only: then publish `$LATEST` and point this alias (one that exists) at the new version.
    #[schema(max_length = 128, pattern = r"^[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*$")]
    pub alias: Option<String>,
}

/// How far a tune is, in invocations.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    pub done: u32,
    /// Shrinks when the search stops early.
    pub total: u32,
}

/// What applying the recommendation changed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Applied {
    pub memory_mb: u32,
    /// Of a GPU share sweep: the share set; of a GPU memory sweep, the GPU memory set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_percentage: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_mb: Option<u32>,
    /// The version published for the alias.
    pub version: Option<u64>,
    pub alias: Option<String>,
}

/// Why a tune failed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TuneFailure {
    /// `function_failed` (the function failed at every size for its own reason), `no_size_worked`,
    /// `apply_failed`, `interrupted`.
    pub code: String,
    pub message: String,
}

/// A tune, running or done.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TuneView {
    pub id: String,
    pub function: String,
    /// The reference whose code and configuration were tested.
    pub reference: String,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    pub strategy: Strategy,
    pub runs: u32,
    /// What the tune varies: `memory` (sizes in MB), `gpu_percentage` (shares of the GPU, in percent) or
    /// `gpu_memory` (the GPU memory of a share, in MB).
    #[serde(default)]
    pub dimension: Dimension,
    /// Every size (or share) the tune may test, ascending.
    pub planned: Vec<u32>,
    /// The sizes tested so far, ascending.
    pub sizes: Vec<SizeReport>,
    /// Sizes left untested because larger sizes stopped helping.
    pub skipped: Vec<u32>,
    pub progress: Progress,
    /// CPU is capped in proportion to memory (lean sandbox with `--cpu-quota`), so CPU-bound functions run
    /// faster with more memory. Otherwise each instance may use any idle CPU and only memory differs.
    pub cpu_follows_memory: bool,
    /// Memory limits are enforced (lean sandbox), so too small a size runs out of memory.
    pub memory_enforced: bool,
    pub recommendation: Option<Recommendation>,
    /// The keep-alive the function's recorded traffic calls for, when enough was recorded.
    pub keep_alive: Option<KeepAliveAdvice>,
    pub applied: Option<Applied>,
    pub error: Option<TuneFailure>,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
}

/// Why a tune could not start, or cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Invoke(#[from] InvokeFailure),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    NotFound(String),
}

impl From<stoke_store::StoreError> for TuneError {
    fn from(e: stoke_store::StoreError) -> Self {
        Self::Registry(e.into())
    }
}

/// What a tune runs with.
pub struct Tuner {
    pub registry: Arc<Registry>,
    pub invoker: Arc<Invoker>,
    pub store: Arc<dyn Store>,
    pub stats: Arc<Statistics>,
    pub pricing: stoke_core::cost::Pricing,
    /// CPUs of the node, for sizing batches.
    pub cores: u32,
    pub cpu_follows_memory: bool,
    pub memory_enforced: bool,
    /// Tunes in progress, by id, with their account.
    running: Mutex<HashMap<String, (AccountId, Live)>>,
}

impl std::fmt::Debug for Tuner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tuner").finish_non_exhaustive()
    }
}

/// A running tune's view, updated as it goes.
type Live = Arc<Mutex<TuneView>>;

/// A size (or share) under test.
struct Trial {
    value: u32,
    target: Arc<InvokeTarget>,
}

impl Tuner {
    pub fn new(
        registry: Arc<Registry>,
        invoker: Arc<Invoker>,
        store: Arc<dyn Store>,
        stats: Arc<Statistics>,
        pricing: stoke_core::cost::Pricing,
        cpu_follows_memory: bool,
        memory_enforced: bool,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
        Self {
            registry,
            invoker,
            store,
            stats,
            pricing,
            cores,
            cpu_follows_memory,
            memory_enforced,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Marks tunes a previous run left running as failed (call once at start).
    pub fn recover(&self) -> Result<usize, TuneError> {
        Ok(self.store.fail_running_tunes("the server stopped while this tune ran; start it again", now_ms())?)
    }

    /// Checks the request, records the tune and starts it; returns it as it starts.
    pub async fn start(
        self: &Arc<Self>,
        caller: &AccountId,
        reference: &str,
        req: TuneRequest,
    ) -> Result<TuneView, TuneError> {
        let strategy =
            Strategy::parse(req.strategy.as_deref().unwrap_or("smallest-not-slower"), req.tolerance, req.weight)?;
        let runs = tune::check_runs(req.runs.unwrap_or(tune::DEFAULT_RUNS))?;
        if req.alias.is_some() && !req.apply {
            return Err(
                ValidationError::new("alias", "alias moves only with apply: add apply (stoke tune --apply)").into()
            );
        }
        let payload = match &req.payload {
            None => Bytes::from_static(b"{}"),
            Some(v) => Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        };
        let payload = Invoker::payload(payload)?;
        let primary = self.invoker.check(caller, reference).await?;
        let node = self.registry.node_limits();
        let (dimension, planned) = match (&req.memory, &req.gpu_percentage, &req.gpu_memory) {
            (_, None, None) => {
                (Dimension::Memory, tune::sizes(req.memory.as_deref(), primary.config.memory_mb, &node)?)
            }
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                let field = if req.gpu_memory.is_some() { "gpu_memory" } else { "gpu_percentage" };
                return Err(ValidationError::new(
                    field,
                    "a tune sweeps one of memory, gpu_percentage and gpu_memory: leave the others out",
                )
                .into());
            }
            (None, percentages, sizes) if primary.config.gpu_count != 1 => {
                let field = if sizes.is_some() && percentages.is_none() { "gpu_memory" } else { "gpu_percentage" };
                return Err(ValidationError::new(
                    field,
                    format!(
                        "{field} sweeps a share of one GPU, and function {} has gpu_count {}: give it one GPU first \
                         (stoke fn update {} --gpus 1)",
                        primary.function, primary.config.gpu_count, primary.function
                    ),
                )
                .into());
            }
            (None, Some(shares), None) => (
                Dimension::GpuPercentage,
                tune::gpu_percentages(Some(shares), primary.config.gpu_percentage.unwrap_or(100))?,
            ),
            (None, None, Some(sizes)) => {
                let largest = self.invoker.scheduler().gpus().iter().map(|(d, _)| d.memory_mb).filter(|m| *m > 0).max();
                (Dimension::GpuMemory, tune::gpu_memory_sizes(Some(sizes), primary.config.gpu_memory_mb, largest)?)
            }
        };
        if let Some(alias) = &req.alias {
            let (registry, acct, name, alias) =
                (self.registry.clone(), caller.clone(), primary.function.clone(), alias.clone());
            tokio::task::spawn_blocking(move || registry.get_alias(&acct, &name, &alias))
                .await
                .map_err(|e| TuneError::NotFound(e.to_string()))??;
        }
        let id = self.invoker.scheduler().request_id();
        let view = TuneView {
            id: id.clone(),
            function: primary.function.to_string(),
            reference: reference.to_string(),
            state: "running".into(),
            strategy,
            runs,
            dimension,
            progress: Progress { done: 0, total: u32::try_from(planned.len()).unwrap_or(u32::MAX) * (runs + 1) },
            planned,
            sizes: Vec::new(),
            skipped: Vec::new(),
            cpu_follows_memory: self.cpu_follows_memory,
            memory_enforced: self.memory_enforced,
            recommendation: None,
            keep_alive: None,
            applied: None,
            error: None,
            created_ms: now_ms(),
            finished_ms: None,
        };
        self.save(caller, &primary.function, &view, &req).await?;
        let shared = Arc::new(Mutex::new(view.clone()));
        lock(&self.running).insert(id, (caller.clone(), shared.clone()));
        let me = self.clone();
        let caller = caller.clone();
        tokio::spawn(async move { me.run(caller, primary, req, payload, shared).await });
        Ok(view)
    }

    /// A tune of the caller's, live while it runs.
    pub async fn get(&self, caller: &AccountId, id: &str) -> Result<TuneView, TuneError> {
        let live = lock(&self.running).get(id).filter(|(owner, _)| owner == caller).map(|(_, v)| v.clone());
        if let Some(view) = live {
            return Ok(lock(&view).clone());
        }
        let (store, acct, key) = (self.store.clone(), caller.clone(), id.to_string());
        let record = tokio::task::spawn_blocking(move || store.get_tune(&acct, &key))
            .await
            .map_err(|e| TuneError::NotFound(e.to_string()))??
            .ok_or_else(|| no_tune(id))?;
        view_of(&record).ok_or_else(|| no_tune(id))
    }

    /// The function's most recent tune, if any (for `stoke fn get`).
    pub fn latest(&self, caller: &AccountId, function: &FunctionName) -> Option<TuneView> {
        let record = self.store.latest_tune(caller, function).ok()??;
        let live = lock(&self.running).get(&record.id).map(|(_, v)| lock(v).clone());
        live.or_else(|| view_of(&record))
    }

    async fn save(
        &self,
        caller: &AccountId,
        function: &FunctionName,
        view: &TuneView,
        req: &TuneRequest,
    ) -> Result<(), TuneError> {
        let record = TuneRecord {
            id: view.id.clone(),
            account: caller.clone(),
            function: function.clone(),
            state: view.state.clone(),
            request: serde_json::to_string(req).unwrap_or_default(),
            result: Some(serde_json::to_string(view).unwrap_or_default()),
            error: view.error.as_ref().map(|e| e.message.clone()),
            created_ms: view.created_ms,
            finished_ms: view.finished_ms,
        };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.put_tune(&record))
            .await
            .map_err(|e| TuneError::NotFound(e.to_string()))??;
        Ok(())
    }

    async fn run(
        self: Arc<Self>,
        caller: AccountId,
        primary: Arc<InvokeTarget>,
        req: TuneRequest,
        payload: Bytes,
        shared: Arc<Mutex<TuneView>>,
    ) {
        let started = Instant::now();
        let (id, planned, runs, strategy, dimension) = {
            let v = lock(&shared);
            (v.id.clone(), v.planned.clone(), v.runs, v.strategy, v.dimension)
        };
        let trials: Vec<Trial> = planned
            .iter()
            .map(|&value| {
                let mut t = (*primary).clone();
                match dimension {
                    Dimension::Memory => t.config.memory_mb = value,
                    Dimension::GpuPercentage => t.config.gpu_percentage = Some(value),
                    Dimension::GpuMemory => t.config.gpu_memory_mb = value,
                }
                t.config.min_warm = 0;
                t.version = format!("{TUNE_VERSION_PREFIX}{id}");
                t.key = Default::default();
                Trial { value, target: Arc::new(t) }
            })
            .collect();
        let budget = u64::from(self.registry.node_limits().max_memory_mb);
        let (batches, current) = match dimension {
            Dimension::Memory => {
                (tune::batches(&planned, self.cores, budget, self.cpu_follows_memory), primary.config.memory_mb)
            }
            // Shares of one GPU measured together would share its compute: one at a time.
            Dimension::GpuPercentage => {
                (planned.iter().map(|p| vec![*p]).collect(), primary.config.gpu_percentage.unwrap_or(100))
            }
            Dimension::GpuMemory => (planned.iter().map(|p| vec![*p]).collect(), primary.config.gpu_memory_mb),
        };
        let mut failure = None;
        let mut stop = false;
        for batch in batches {
            // After an early stop only the current size is still measured (the saving is against it).
            let batch: Vec<u32> = if stop { batch.into_iter().filter(|&m| m == current).collect() } else { batch };
            if batch.is_empty() {
                continue;
            }
            let mut set = tokio::task::JoinSet::new();
            for trial in trials.iter().filter(|t| batch.contains(&t.value)) {
                let (me, target, payload, shared) =
                    (self.clone(), trial.target.clone(), payload.clone(), shared.clone());
                let value = trial.value;
                set.spawn(async move {
                    let mut report = me.measure(target, payload, runs, shared).await;
                    match dimension {
                        Dimension::Memory => {}
                        Dimension::GpuPercentage => report.gpu_percentage = Some(value),
                        Dimension::GpuMemory => report.gpu_memory_mb = Some(value),
                    }
                    report
                });
            }
            while let Some(done) = set.join_next().await {
                if let Ok(report) = done {
                    let mut v = lock(&shared);
                    v.sizes.push(report);
                    v.sizes.sort_by_key(SizeReport::key);
                }
            }
            if stop {
                continue;
            }
            let sizes = lock(&shared).sizes.clone();
            match tune::verdict(&sizes, &strategy) {
                Verdict::Continue => {}
                Verdict::StopNoGain => {
                    stop = true;
                    // The progress bar's end moves in: only the current size may still run.
                    let mut v = lock(&shared);
                    let tested: Vec<u32> = v.sizes.iter().map(|r| r.value(dimension)).collect();
                    let left = planned.iter().filter(|m| !tested.contains(m) && **m != current).count();
                    let left = u32::try_from(left).unwrap_or(u32::MAX);
                    v.progress.total = v.progress.total.saturating_sub(left * (runs + 1));
                }
                Verdict::StopFunctionFails(error) => {
                    failure = Some(TuneFailure {
                        code: "function_failed".into(),
                        message: format!(
                            "the function failed at every size tested, for a reason more memory does not fix \
                             ({error}); check the payload with stoke invoke {}",
                            primary.function
                        ),
                    });
                    break;
                }
            }
        }
        for t in &trials {
            self.invoker.scheduler().release(&t.target);
        }
        let finished = {
            let mut v = lock(&shared);
            let tested: Vec<u32> = v.sizes.iter().map(|r| r.value(dimension)).collect();
            v.skipped = planned.iter().copied().filter(|m| !tested.contains(m)).collect();
            v.progress.total = v.progress.done;
            v.recommendation = match dimension {
                Dimension::Memory => tune::recommend(&v.sizes, current, &strategy),
                Dimension::GpuPercentage => tune::recommend_gpu(&v.sizes, dimension, Some(current), &strategy),
                Dimension::GpuMemory => {
                    tune::recommend_gpu(&v.sizes, dimension, (current > 0).then_some(current), &strategy)
                }
            };
            if failure.is_none() && v.recommendation.is_none() {
                let first = v.sizes.iter().find_map(|r| r.error.clone()).unwrap_or_default();
                let larger = match dimension {
                    Dimension::Memory => "test larger sizes with --memory",
                    Dimension::GpuPercentage => "test larger shares with --gpu-percentage",
                    Dimension::GpuMemory => "test more GPU memory with --gpu-memory",
                };
                failure = Some(TuneFailure {
                    code: "no_size_worked".into(),
                    message: format!(
                        "no size tested ran every invocation without an error (first error: {first}); {larger}, or \
                         raise the function's timeout"
                    ),
                });
            }
            v.keep_alive = advise(&self.stats.calls(primary.version_key()), primary.config.keep_alive_s);
            v.clone()
        };
        let mut view = finished;
        if let (None, Some(rec), true) = (&failure, &view.recommendation, req.apply) {
            let setting = match (rec.gpu_percentage, rec.gpu_memory_mb) {
                (Some(p), _) => Setting::GpuPercentage(p),
                (_, Some(m)) => Setting::GpuMemory(m),
                _ => Setting::Memory(rec.memory_mb),
            };
            match self.apply(&caller, &primary.function, setting, req.alias.clone()).await {
                Ok(applied) => view.applied = Some(applied),
                Err(e) => {
                    failure = Some(TuneFailure {
                        code: "apply_failed".into(),
                        message: format!("the tune finished but its result could not be applied: {e}"),
                    })
                }
            }
        }
        view.state = if failure.is_some() { "failed" } else { "succeeded" }.into();
        view.error = failure;
        view.finished_ms = Some(now_ms());
        tracing::info!(
            tune = %id, function = %primary.function, state = %view.state,
            wall_ms = stoke_core::num::millis_u64(started.elapsed()), "tune finished"
        );
        if let Err(e) = self.save(&caller, &primary.function, &view, &req).await {
            tracing::error!(tune = %id, error = %e, "cannot store a tune's result");
        }
        *lock(&shared) = view;
        lock(&self.running).remove(&id);
    }

    /// One size: a cold start, then `runs` warm invocations, one after the other.
    async fn measure(
        &self,
        target: Arc<InvokeTarget>,
        payload: Bytes,
        runs: u32,
        shared: Arc<Mutex<TuneView>>,
    ) -> SizeReport {
        let mut samples = Vec::with_capacity(runs as usize + 1);
        for _ in 0..=runs {
            let req = InvokeRequest {
                payload: payload.clone(),
                client_context: None,
                want_log: false,
                request_id: None,
                ..Default::default()
            };
            let sample = match self.invoker.scheduler().invoke(&target, req).await {
                Ok(r) => {
                    let (error, message) = match &r.outcome {
                        Outcome::Success(_) => (None, None),
                        Outcome::FunctionError { error_type, body } => {
                            (Some(error_type.clone()), Some(error_message(body)))
                        }
                    };
                    Sample {
                        duration_ms: r.report.duration_ms,
                        init_ms: r.report.init_duration_ms,
                        max_memory_used_mb: r.report.max_memory_used_mb,
                        error,
                        message,
                    }
                }
                Err(e) => Sample {
                    duration_ms: 0.0,
                    init_ms: None,
                    max_memory_used_mb: 0,
                    error: Some("Stoke.InvokeFailed".into()),
                    message: Some(e.to_string()),
                },
            };
            let failed_cold = samples.is_empty() && sample.error.is_some();
            samples.push(sample);
            let mut v = lock(&shared);
            v.progress.done += 1;
            // A size that cannot even start (out of memory in init, say) is not run `runs` more times.
            if failed_cold {
                v.progress.total = v.progress.total.saturating_sub(runs);
                break;
            }
        }
        let (cold, warm) = samples.split_first().map_or((None, &[][..]), |(c, w)| (Some(c), w));
        tune::summarize(target.config.memory_mb, cold, warm, &self.pricing)
    }

    async fn apply(
        &self,
        caller: &AccountId,
        function: &FunctionName,
        setting: Setting,
        alias: Option<String>,
    ) -> Result<Applied, RegistryError> {
        let (registry, acct, name) = (self.registry.clone(), caller.clone(), function.clone());
        tokio::task::spawn_blocking(move || {
            let config = registry.get_function(&acct, &name)?.config;
            let unchanged = Applied {
                memory_mb: config.memory_mb,
                gpu_percentage: None,
                gpu_memory_mb: None,
                version: None,
                alias: None,
            };
            let (patch, changed, description, applied) = match setting {
                Setting::Memory(m) => (
                    ConfigPatch { memory_mb: Some(m), ..ConfigPatch::default() },
                    config.memory_mb != m,
                    format!("stoke tune: {m} MB"),
                    Applied { memory_mb: m, ..unchanged },
                ),
                Setting::GpuPercentage(p) => (
                    ConfigPatch { gpu_percentage: Some(p), ..ConfigPatch::default() },
                    config.gpu_percentage != Some(p),
                    format!("stoke tune: {p} % of the GPU"),
                    Applied { gpu_percentage: Some(p), ..unchanged },
                ),
                Setting::GpuMemory(m) => (
                    ConfigPatch { gpu_memory_mb: Some(m), ..ConfigPatch::default() },
                    config.gpu_memory_mb != m,
                    format!("stoke tune: {m} MB of GPU memory"),
                    Applied { gpu_memory_mb: Some(m), ..unchanged },
                ),
            };
            if changed {
                registry.update_config(&acct, &name, patch)?;
            }
            let Some(alias) = alias else { return Ok(applied) };
            let description = Some(description);
            let version = registry.publish(&acct, &name, description, &FunctionIf::default())?.version;
            let routing = AliasRouting {
                version: version.version.to_string(),
                additional_version: None,
                additional_weight: None,
            };
            registry.put_alias(&acct, &name, &alias, routing, None, crate::registry::AliasIf::Any)?;
            Ok(Applied { version: Some(version.version), alias: Some(alias), ..applied })
        })
        .await
        .map_err(|e| RegistryError::NotFound(e.to_string()))?
    }
}

/// What applying a tune's recommendation sets.
#[derive(Debug, Clone, Copy)]
enum Setting {
    Memory(u32),
    GpuPercentage(u32),
    GpuMemory(u32),
}

fn no_tune(id: &str) -> TuneError {
    TuneError::NotFound(format!("tune {id} does not exist in your account; stoke fn get <function> shows the latest"))
}

fn view_of(record: &TuneRecord) -> Option<TuneView> {
    serde_json::from_str(record.result.as_deref()?).ok().map(|mut v: TuneView| {
        // A restart fails running tunes in the record; the view says so too.
        if record.state == "failed" && v.state == "running" {
            v.state = "failed".into();
            v.finished_ms = record.finished_ms;
            v.error =
                Some(TuneFailure { code: "interrupted".into(), message: record.error.clone().unwrap_or_default() });
        }
        v
    })
}

/// The `errorMessage` of an error body, or the body itself.
fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("errorMessage").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| text.chars().take(200).collect())
}
