//! The memory optimizer's rules (seed 002's PreEnv Optimizer, `stoke tune`): which memory sizes to test
//! and in what batches, what one size's invocations measure, when larger sizes stopped helping, and which
//! size a strategy recommends. The server runs the invocations; everything it decides with is here.
//!
//! A tune sweeps one [`Dimension`]: the function's memory, or — for a function holding a share of one GPU —
//! its `gpu_percentage` or its `gpu_memory_mb`, with the same strategies (the smallest share that is not
//! slower, by default).

use serde::{Deserialize, Serialize};

use crate::config::{MEMORY_STEP_MB, MIN_MEMORY_MB};
use crate::cost::{billed_ms, Pricing};
use crate::limits::cpu_millis;
use crate::validation::ValidationError;
use crate::NodeLimits;

/// The version label of a tune's test sizes (their pools are the tuner's, not the function's callers').
pub const TUNE_VERSION_PREFIX: &str = "tune-";

/// Sizes tested when the user names none (capped by the node).
pub const DEFAULT_SIZES: [u32; 7] = [128, 256, 512, 1024, 1536, 2048, 3072];
/// Warm invocations per size when the user names no count.
pub const DEFAULT_RUNS: u32 = 10;
pub const MAX_RUNS: u32 = 100;
pub const MAX_SIZES: usize = 16;
/// How much slower than the fastest size `smallest-not-slower` accepts.
pub const DEFAULT_TOLERANCE: f64 = 0.05;
/// `balanced`: the weight of cost against speed.
pub const DEFAULT_WEIGHT: f64 = 0.5;
/// Differences below this are "the same speed" whatever the tolerance: the billing granularity, and below
/// the noise of a shared machine for sub-millisecond functions.
pub const SAME_SPEED_MS: f64 = 1.0;

/// GPU shares tested when the user names none (for a function holding a share of one GPU).
pub const DEFAULT_GPU_PERCENTAGES: [u32; 5] = [10, 25, 50, 75, 100];

/// What a tune varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// The function's memory, in MB.
    #[default]
    Memory,
    /// The function's share of its GPU's compute (`gpu_percentage`), its memory unchanged.
    GpuPercentage,
    /// The GPU memory its share may allocate (`gpu_memory_mb`), in MB.
    GpuMemory,
}

/// GPU memory sizes tested when the user names none (capped by the node's largest GPU).
pub const DEFAULT_GPU_MEMORY_MB: [u32; 6] = [1024, 2048, 4096, 8192, 16_384, 32_768];

/// A list of values to sweep as the user gave it (`field`): at least one (`example` shows how), at most
/// [`MAX_SIZES`], each one `valid` (else `invalid` says why); or `defaults` when none was given; then the
/// function's `current` value (when it has one), ascending, without duplicates.
fn sweep(
    field: &'static str,
    requested: Option<&[u32]>,
    defaults: Vec<u32>,
    current: Option<u32>,
    example: &str,
    valid: impl Fn(u32) -> bool,
    invalid: impl Fn(u32) -> String,
) -> Result<Vec<u32>, ValidationError> {
    let mut out = match requested {
        Some([]) => {
            return Err(ValidationError::new(
                field,
                format!("{field} lists nothing: give at least one, e.g. {example}"),
            ))
        }
        Some(list) if list.len() > MAX_SIZES => {
            return Err(ValidationError::new(
                field,
                format!("{field} lists {} values; a tune tests at most {MAX_SIZES}", list.len()),
            ))
        }
        Some(list) => match list.iter().find(|v| !valid(**v)) {
            Some(bad) => return Err(ValidationError::new(field, invalid(*bad))),
            None => list.to_vec(),
        },
        None => defaults,
    };
    out.extend(current);
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The GPU memory sizes to test: the user's (multiples of 256, at most `largest_mb`, the node's largest GPU,
/// when known) or the defaults capped by it, plus the function's current size when it set one.
pub fn gpu_memory_sizes(
    requested: Option<&[u32]>,
    current_mb: u32,
    largest_mb: Option<u64>,
) -> Result<Vec<u32>, ValidationError> {
    let step = crate::config::GPU_MEMORY_STEP_MB;
    let fits = |m: u32| largest_mb.is_none_or(|max| u64::from(m) <= max);
    let largest = largest_mb.map(|m| format!(", at most this node's largest GPU ({m} MB)")).unwrap_or_default();
    sweep(
        "gpu_memory",
        requested,
        DEFAULT_GPU_MEMORY_MB.iter().copied().filter(|m| fits(*m)).collect(),
        (current_mb > 0).then_some(current_mb),
        "2048,4096",
        |m| m > 0 && m.is_multiple_of(step) && fits(m),
        |bad| format!("GPU memory size {bad} MB is not valid: give multiples of {step}{largest}"),
    )
}

/// The GPU shares to test: the user's (1-100 each) or the defaults, plus the function's current share, so
/// the saving is measured.
pub fn gpu_percentages(requested: Option<&[u32]>, current: u32) -> Result<Vec<u32>, ValidationError> {
    sweep(
        "gpu_percentage",
        requested,
        DEFAULT_GPU_PERCENTAGES.to_vec(),
        Some(current),
        "25,50,100",
        |p| (1..=100).contains(&p),
        |bad| format!("GPU share {bad} is not valid: give percentages between 1 and 100"),
    )
}

/// How the recommended size is chosen among the sizes whose invocations all succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Strategy {
    /// The cheapest per invocation.
    Cost,
    /// The fastest warm run.
    Speed,
    /// The best of `weight` × relative cost + (1 − `weight`) × relative duration.
    Balanced { weight: f64 },
    /// Seed 002's rule: the smallest memory whose warm duration is within `tolerance` of the fastest (or
    /// within [`SAME_SPEED_MS`], for functions that run in about a millisecond).
    SmallestNotSlower { tolerance: f64 },
}

impl Strategy {
    pub const NAMES: &'static str = "smallest-not-slower, cost, speed, balanced";

    /// Parses a strategy name with its parameters (`None` = the defaults).
    pub fn parse(name: &str, tolerance: Option<f64>, weight: Option<f64>) -> Result<Strategy, ValidationError> {
        if let Some(t) = tolerance {
            if !(0.0..=1.0).contains(&t) {
                return Err(ValidationError::new(
                    "tolerance",
                    format!("tolerance {t} is not valid: give a fraction between 0 and 1 (0.05 = 5 %)"),
                ));
            }
        }
        if let Some(w) = weight {
            if !(0.0..=1.0).contains(&w) {
                return Err(ValidationError::new(
                    "weight",
                    format!("weight {w} is not valid: give a fraction between 0 (speed only) and 1 (cost only)"),
                ));
            }
        }
        Ok(match name {
            "smallest-not-slower" => Strategy::SmallestNotSlower { tolerance: tolerance.unwrap_or(DEFAULT_TOLERANCE) },
            "cost" => Strategy::Cost,
            "speed" => Strategy::Speed,
            "balanced" => Strategy::Balanced { weight: weight.unwrap_or(DEFAULT_WEIGHT) },
            other => {
                return Err(ValidationError::new(
                    "strategy",
                    format!("strategy {other:?} is not known: use one of {}", Strategy::NAMES),
                ))
            }
        })
    }

    /// The gain below which a larger size "did not help" (for stopping early).
    fn tolerance(&self) -> f64 {
        match self {
            Strategy::SmallestNotSlower { tolerance } => *tolerance,
            _ => DEFAULT_TOLERANCE,
        }
    }
}

/// The sizes to test: the user's (or the defaults capped by the node), plus the function's current size so
/// the saving is measured rather than guessed; ascending, without duplicates.
pub fn sizes(requested: Option<&[u32]>, current_mb: u32, node: &NodeLimits) -> Result<Vec<u32>, ValidationError> {
    let max = node.max_memory_mb - node.max_memory_mb % MEMORY_STEP_MB;
    let mut out: Vec<u32> = match requested {
        Some([]) => {
            return Err(ValidationError::new("memory", "memory lists no sizes: give at least one, e.g. 128,512"))
        }
        Some(list) => {
            if list.len() > MAX_SIZES {
                return Err(ValidationError::new(
                    "memory",
                    format!("memory lists {} sizes; a tune tests at most {MAX_SIZES}", list.len()),
                ));
            }
            for &m in list {
                if m < MIN_MEMORY_MB || m > max || !m.is_multiple_of(MEMORY_STEP_MB) {
                    return Err(ValidationError::new(
                        "memory",
                        format!(
                            "memory size {m} MB is not valid: sizes must be multiples of {MEMORY_STEP_MB} between \
                             {MIN_MEMORY_MB} and this node's limit of {max} MB"
                        ),
                    ));
                }
            }
            list.to_vec()
        }
        None => DEFAULT_SIZES.iter().copied().filter(|&m| m <= max).collect(),
    };
    out.push(current_mb);
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

pub fn check_runs(runs: u32) -> Result<u32, ValidationError> {
    if runs == 0 || runs > MAX_RUNS {
        return Err(ValidationError::new(
            "runs",
            format!("runs {runs} is not valid: give between 1 and {MAX_RUNS} warm invocations per size"),
        ));
    }
    Ok(runs)
}

/// Splits the (ascending) sizes into batches tested at once: a batch fits the node's memory budget and, when
/// CPU is capped by memory, the node's cores — so sizes tested together do not slow each other down. When
/// CPU is only weighted, every size has the whole machine alone and batches hold one size.
pub fn batches(sizes: &[u32], cores: u32, budget_mb: u64, cpu_capped: bool) -> Vec<Vec<u32>> {
    let cpu_room = u64::from(cores.max(1)) * 1000;
    let mut out: Vec<Vec<u32>> = Vec::new();
    let (mut mem, mut cpu) = (0u64, 0u64);
    for &m in sizes {
        let (m64, c) = (u64::from(m), u64::from(cpu_millis(m)));
        let fits = cpu_capped && mem + m64 <= budget_mb && cpu + c <= cpu_room;
        match out.last_mut() {
            Some(batch) if fits => batch.push(m),
            _ => {
                out.push(vec![m]);
                (mem, cpu) = (0, 0);
            }
        }
        mem += m64;
        cpu += c;
    }
    out
}

/// One invocation at one size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub duration_ms: f64,
    /// Present on the cold start.
    pub init_ms: Option<f64>,
    pub max_memory_used_mb: u64,
    /// The error type (`Runtime.OutOfMemory`, `Sandbox.Timedout`, the function's own) when it failed.
    pub error: Option<String>,
    /// The error's message, for the report.
    pub message: Option<String>,
}

pub const OUT_OF_MEMORY: &str = "Runtime.OutOfMemory";

fn is_limit_error(error: &str) -> bool {
    error == OUT_OF_MEMORY || error.contains("Timedout") || error.contains("TimedOut")
}

/// What one size measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SizeReport {
    pub memory_mb: u32,
    /// Warm invocations that succeeded.
    pub runs: u32,
    /// Invocations (cold or warm) that failed.
    pub errors: u32,
    /// The first failure: `type: message`.
    pub error: Option<String>,
    /// It ran out of memory (a result: the working set does not fit).
    pub out_of_memory: bool,
    /// Warm duration: the mean with the fastest and slowest 10 % left out (the median below 5 runs).
    pub warm_ms: Option<f64>,
    pub warm_p90_ms: Option<f64>,
    /// The cold start: initialisation, and the whole first invocation (init + run).
    pub init_ms: Option<f64>,
    pub cold_ms: Option<f64>,
    /// Peak memory of the instance (from its cgroup where the sandbox has one).
    pub peak_mb: u64,
    /// A warm invocation's cost at the measured duration (billed ms × memory + the request price).
    pub cost: Option<f64>,
    /// Of a GPU share sweep: the share this report ran at (its memory is the function's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_percentage: Option<u32>,
    /// Of a GPU memory sweep: the GPU memory this report ran with, in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_mb: Option<u32>,
}

impl SizeReport {
    /// Where the report sits in its sweep: by what a GPU sweep varies (the rest is the same throughout), else
    /// by memory.
    pub fn key(&self) -> (u32, u32, u32) {
        (self.gpu_percentage.unwrap_or(0), self.gpu_memory_mb.unwrap_or(0), self.memory_mb)
    }

    /// The value of `dimension` this report ran at.
    pub fn value(&self, dimension: Dimension) -> u32 {
        match dimension {
            Dimension::Memory => self.memory_mb,
            Dimension::GpuPercentage => self.gpu_percentage.unwrap_or(100),
            Dimension::GpuMemory => self.gpu_memory_mb.unwrap_or(0),
        }
    }

    /// Every invocation succeeded, so the size can be recommended.
    pub fn usable(&self) -> bool {
        self.errors == 0 && self.warm_ms.is_some()
    }
}

/// A typical warm duration that one outlier cannot move: the mean without the lowest and highest tenth from
/// 5 samples on, the median below that (with 3 samples, one run that waited for a CPU-quota period would
/// otherwise set the size's speed on its own).
pub fn typical_duration(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n < 5 {
        return Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 });
    }
    let cut = n / 10;
    let kept = &v[cut..n - cut];
    Some(kept.iter().sum::<f64>() / kept.len() as f64)
}

fn p90(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = crate::num::saturate_usize((0.9 * v.len() as f64).ceil());
    Some(v[rank.saturating_sub(1)])
}

/// A warm invocation's cost at `memory_mb` and `duration_ms`.
pub fn invocation_cost(memory_mb: u32, duration_ms: f64, pricing: &Pricing) -> f64 {
    billed_ms(duration_ms) as f64 / 1000.0 * f64::from(memory_mb) / 1024.0 * pricing.per_gb_second + pricing.per_request
}

/// Summarises one size: `cold` is the first invocation (on a new instance), `warm` the ones after it.
pub fn summarize(memory_mb: u32, cold: Option<&Sample>, warm: &[Sample], pricing: &Pricing) -> SizeReport {
    let all = cold.into_iter().chain(warm);
    let failed: Vec<&Sample> = all.clone().filter(|s| s.error.is_some()).collect();
    let ok: Vec<f64> = warm.iter().filter(|s| s.error.is_none()).map(|s| s.duration_ms).collect();
    let warm_ms = typical_duration(&ok);
    let cold_ok = cold.filter(|s| s.error.is_none());
    SizeReport {
        memory_mb,
        runs: u32::try_from(ok.len()).unwrap_or(u32::MAX),
        errors: u32::try_from(failed.len()).unwrap_or(u32::MAX),
        error: failed.first().map(|s| {
            let kind = s.error.as_deref().unwrap_or_default();
            match s.message.as_deref() {
                Some(m) if !m.is_empty() => format!("{kind}: {m}"),
                _ => kind.to_string(),
            }
        }),
        out_of_memory: failed.iter().any(|s| s.error.as_deref() == Some(OUT_OF_MEMORY)),
        warm_ms,
        warm_p90_ms: p90(&ok),
        init_ms: cold.and_then(|s| s.init_ms),
        cold_ms: cold_ok.map(|s| s.duration_ms + s.init_ms.unwrap_or(0.0)),
        peak_mb: all.map(|s| s.max_memory_used_mb).max().unwrap_or(0),
        cost: warm_ms.map(|d| invocation_cost(memory_mb, d, pricing)),
        gpu_percentage: None,
        gpu_memory_mb: None,
    }
}

/// Why the tune ended before testing every size, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Test the next batch.
    Continue,
    /// The largest sizes tested were no faster than smaller ones: larger ones will not help.
    StopNoGain,
    /// Every size failed for a reason other than a limit (memory, time): the payload or the function is
    /// wrong, and more memory will not fix it.
    StopFunctionFails(String),
}

/// After a batch: whether larger sizes are still worth testing. `tested` are the reports so far (any order).
pub fn verdict(tested: &[SizeReport], strategy: &Strategy) -> Verdict {
    let mut t: Vec<&SizeReport> = tested.iter().collect();
    t.sort_by_key(|r| r.key());
    if !t.is_empty()
        && t.iter().all(|r| r.warm_ms.is_none() && r.error.as_deref().is_some_and(|e| !is_limit_error(type_of(e))))
    {
        return Verdict::StopFunctionFails(t[0].error.clone().unwrap_or_default());
    }
    // The two largest sizes must both have run, and neither beat the best smaller size by the tolerance.
    let n = t.len();
    if n < 3 {
        return Verdict::Continue;
    }
    let tol = strategy.tolerance();
    let no_gain = |i: usize| -> bool {
        let Some(d) = t[i].warm_ms.filter(|_| t[i].usable()) else { return false };
        let best_below = t[..i].iter().filter(|r| r.usable()).filter_map(|r| r.warm_ms).fold(f64::INFINITY, f64::min);
        d >= (best_below * (1.0 - tol)).min(best_below - SAME_SPEED_MS)
    };
    if no_gain(n - 1) && no_gain(n - 2) {
        Verdict::StopNoGain
    } else {
        Verdict::Continue
    }
}

fn type_of(error: &str) -> &str {
    error.split(':').next().unwrap_or(error)
}

/// What the tuner recommends, and what it saves against the function's current size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Recommendation {
    pub memory_mb: u32,
    pub current_mb: u32,
    /// Warm duration at the recommended size relative to the current one (+0.03 = 3 % slower).
    pub duration_change: Option<f64>,
    /// Reserved memory saved (0.75 = 75 % less); negative when the recommendation is larger.
    pub memory_saving: f64,
    /// Cost per invocation saved (negative = dearer).
    pub cost_saving: Option<f64>,
    /// One sentence, e.g. "1024 MB → 256 MB: same speed within 3 %, 75 % less memory reserved, 71 % cheaper".
    pub summary: String,
    /// Of a GPU share sweep: the share recommended and the current one; of a GPU memory sweep, the GPU memory
    /// recommended and the current one (absent when the function set none); and what of the GPU that saves
    /// (0.75 = 75 % less reserved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_percentage: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_gpu_percentage: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_gpu_memory_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_saving: Option<f64>,
}

/// The report `strategy` picks among the usable ones, or `None` when none worked. Ties go to the smaller
/// size (reports are compared in ascending order of their [`SizeReport::key`]).
fn choose<'a>(reports: &'a [SizeReport], strategy: &Strategy) -> Option<&'a SizeReport> {
    let usable: Vec<&SizeReport> = reports.iter().filter(|r| r.usable()).collect();
    let time = |r: &SizeReport| r.warm_ms.unwrap_or(f64::INFINITY);
    let cost = |r: &SizeReport| r.cost.unwrap_or(f64::INFINITY);
    let fastest = usable.iter().map(|r| time(r)).fold(f64::INFINITY, f64::min);
    let cheapest = usable.iter().map(|r| cost(r)).fold(f64::INFINITY, f64::min);
    let mut ordered = usable.clone();
    ordered.sort_by_key(|r| r.key());
    let best_by = |score: &dyn Fn(&SizeReport) -> f64| -> Option<&SizeReport> {
        ordered.iter().copied().fold(None, |best: Option<&SizeReport>, r| match best {
            Some(b) if score(b) <= score(r) => Some(b),
            _ => Some(r),
        })
    };
    match strategy {
        Strategy::Speed => best_by(&time),
        Strategy::Cost => best_by(&cost),
        Strategy::Balanced { weight } => {
            best_by(&|r: &SizeReport| weight * cost(r) / cheapest + (1.0 - weight) * time(r) / fastest)
        }
        Strategy::SmallestNotSlower { tolerance } => {
            ordered.iter().copied().find(|r| time(r) <= (fastest * (1.0 + tolerance)).max(fastest + SAME_SPEED_MS))
        }
    }
}

/// The picked report's speed and cost against the current one's: (ms and relative change of the warm time,
/// cost saving).
fn against(pick: &SizeReport, current: Option<&SizeReport>) -> (Option<(f64, f64)>, Option<f64>) {
    let time = |r: &SizeReport| r.warm_ms.unwrap_or(f64::INFINITY);
    let cost = |r: &SizeReport| r.cost.unwrap_or(f64::INFINITY);
    let duration = current.map(|c| (time(pick) - time(c), time(pick) / time(c) - 1.0));
    (duration, current.map(|c| 1.0 - cost(pick) / cost(c)))
}

/// The size `strategy` picks among the usable reports, or `None` when no size worked.
pub fn recommend(reports: &[SizeReport], current_mb: u32, strategy: &Strategy) -> Option<Recommendation> {
    let pick = choose(reports, strategy)?;
    let current = reports.iter().find(|r| r.memory_mb == current_mb && r.usable());
    let (duration, cost_saving) = against(pick, current);
    let memory_saving = 1.0 - f64::from(pick.memory_mb) / f64::from(current_mb);
    Some(Recommendation {
        memory_mb: pick.memory_mb,
        current_mb,
        duration_change: duration.map(|d| d.1),
        memory_saving,
        cost_saving,
        summary: summary(current_mb, pick.memory_mb, duration, memory_saving, cost_saving),
        gpu_percentage: None,
        current_gpu_percentage: None,
        gpu_memory_mb: None,
        current_gpu_memory_mb: None,
        gpu_saving: None,
    })
}

/// What `strategy` picks among the usable reports of a GPU sweep of `dimension` (by default the smallest
/// share, or GPU memory, that is not slower), against the function's `current` value (`None`: a GPU memory
/// the function left to follow its percentage); `None` when nothing worked.
pub fn recommend_gpu(
    reports: &[SizeReport],
    dimension: Dimension,
    current: Option<u32>,
    strategy: &Strategy,
) -> Option<Recommendation> {
    let pick = choose(reports, strategy)?;
    let value = pick.value(dimension);
    let now = current.and_then(|c| reports.iter().find(|r| r.value(dimension) == c && r.usable()));
    let (duration, cost_saving) = against(pick, now);
    let gpu_saving = current.map(|c| 1.0 - f64::from(value) / f64::from(c.max(1)));
    let (unit, of) = match dimension {
        Dimension::GpuMemory => (" MB", "GPU memory"),
        _ => (" %", "the GPU"),
    };
    let words = match (current, gpu_saving) {
        (Some(c), _) if c == value => format!("{c}{unit} of {of} is already the right share for this strategy"),
        (Some(c), Some(saving)) => {
            let reserved = if saving >= 0.0 {
                format!("{} less of {of} reserved", pct(saving))
            } else {
                format!("{} more of {of} reserved", pct(saving))
            };
            format!("{c}{unit} → {value}{unit} of {of}: {}, {reserved}", speed_words(duration))
        }
        _ => format!("{value}{unit} of {of} (the function set none: its share's memory followed its percentage)"),
    };
    let (gpu_percentage, current_gpu_percentage, gpu_memory_mb, current_gpu_memory_mb) = match dimension {
        Dimension::GpuMemory => (None, None, Some(value), current),
        _ => (Some(value), current, None, None),
    };
    Some(Recommendation {
        memory_mb: pick.memory_mb,
        current_mb: pick.memory_mb,
        duration_change: duration.map(|d| d.1),
        memory_saving: 0.0,
        cost_saving,
        summary: words,
        gpu_percentage,
        current_gpu_percentage,
        gpu_memory_mb,
        current_gpu_memory_mb,
        gpu_saving,
    })
}

fn pct(x: f64) -> String {
    format!("{:.0} %", (x * 100.0).abs())
}

/// `duration`: the recommended size's warm time against the current one's, in ms and relative.
fn summary(current: u32, pick: u32, duration: Option<(f64, f64)>, memory: f64, cost: Option<f64>) -> String {
    if pick == current {
        return format!("{current} MB is already the right size for this strategy");
    }
    let speed = speed_words(duration);
    let memory = if memory >= 0.0 {
        format!("{} less memory reserved", pct(memory))
    } else {
        format!("{} more memory reserved", pct(memory))
    };
    let cost = match cost {
        Some(c) if c >= 0.005 => format!(", {} cheaper", pct(c)),
        Some(c) if c <= -0.005 => format!(", {} dearer", pct(c)),
        Some(_) => ", same cost".to_string(),
        None => String::new(),
    };
    format!("{current} MB → {pick} MB: {speed}, {memory}{cost}")
}

/// The recommended size's speed against the current one's, in words.
fn speed_words(duration: Option<(f64, f64)>) -> String {
    match duration {
        None => "the current size failed, so no comparison of speed".to_string(),
        Some((_, d)) if d.abs() < 0.005 => "same speed".to_string(),
        Some((ms, d)) if ms.abs() < SAME_SPEED_MS && d.abs() > DEFAULT_TOLERANCE => {
            format!("same speed within {:.2} ms", ms.abs())
        }
        Some((_, d)) if d > 0.0 && d <= DEFAULT_TOLERANCE => format!("same speed within {}", pct(d)),
        Some((_, d)) if d > 0.0 => format!("{} slower", pct(d)),
        Some((_, d)) => format!("{} faster", pct(d)),
    }
}

#[cfg(test)]
mod tests;
