//! The pre-warm planner (docs/workflows.md, "Hiding cold starts: the pre-warmer"): when a state starts, which functions
//! further down the graph need an instance started, how many, and when — so that a workflow of N functions pays for at
//! most one cold start. A pure function of (state graph, statistics, pool view, now) → plan; the engine carries it out.
//!
//! Policies:
//! - `off`: nothing is warmed;
//! - `eager` (seed 001): the next Tasks after the current state are warmed at once;
//! - `jit` (the default): the graph is walked ahead along the predicted path; a Task is warmed at
//!   `predicted start − predicted init − margin`, so its instance is ready just in time. Choice branches
//!   are warmed by their learned probability (always the most likely one, others above a threshold),
//!   Parallel branches all, a Map's iteration with as many instances as will run at once.

use std::collections::BTreeSet;

use stoke_core::num::{saturate_i64, saturate_usize};

use crate::definition::{Count, Machine, Wait};
use crate::{Resource, State, StateKind};

/// Iterations an unlimited inline Map runs at once.
const UNLIMITED_MAP_CONCURRENCY: f64 = 40.0;
/// States walked in one plan at most (a loop in the graph ends the walk).
const MAX_WALK: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Off,
    Eager,
    #[default]
    Jit,
}

impl Policy {
    pub const NAMES: [&'static str; 3] = ["off", "eager", "jit"];

    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "off" => Some(Policy::Off),
            "eager" => Some(Policy::Eager),
            "jit" => Some(Policy::Jit),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Off => "off",
            Policy::Eager => "eager",
            Policy::Jit => "jit",
        }
    }
}

/// What the planner knows of one function: its typical times and how many of its instances are free.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FunctionView {
    /// Predicted initialisation time of a new instance (a pessimistic estimate, e.g. p90), once measured.
    pub init_ms: Option<f64>,
    /// Predicted run time of one invocation (e.g. p50), once measured.
    pub run_ms: Option<f64>,
    /// Instances idle or starting that no queued or announced invocation has claimed.
    pub spare: usize,
}

/// The statistics and pool view the planner reads. Implemented by the engine over its live data; by maps
/// in tests.
pub trait Knowledge {
    /// `None` when the reference names no function the caller may run (nothing to warm).
    fn function(&self, reference: &str) -> Option<FunctionView>;
    /// How often each target of a Choice state was taken, by target state name.
    fn branch_counts(&self, choice: &str) -> Vec<(String, u64)>;
    /// The typical number of items a Map state gets.
    fn map_items(&self, map: &str) -> Option<f64>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Warm this much earlier than strictly needed, for the prediction's error …
    pub margin_ms: f64,
    /// … or this share of the predicted init, when that is more (a slow init varies more).
    pub margin_share: f64,
    /// Do not plan further ahead than this.
    pub horizon_ms: f64,
    /// Warm a Choice branch other than the most likely one when its probability is at least this.
    pub branch_threshold: f64,
    /// Most Tasks one plan warms.
    pub max_tasks: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self { margin_ms: 50.0, margin_share: 0.2, horizon_ms: 120_000.0, branch_threshold: 0.2, max_tasks: 32 }
    }
}

/// Start `count` instances of `function` at `at_ms`, for the Task state `state`.
#[derive(Debug, Clone, PartialEq)]
pub struct Warm {
    pub state: String,
    pub function: String,
    pub count: usize,
    pub at_ms: i64,
}

/// Assumed initialisation of a function whose cold start was never measured.
pub const UNMEASURED_INIT_MS: f64 = 1_000.0;
/// How long an instance started for a resume holds its place after the resume was due (a late loop).
const RESUME_HOLD_MS: i64 = 10_000;

/// An instance to start at `at_ms` for a resume due at a known time, holding its place in the pool's
/// demand for `hold_ms` from then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeWarm {
    pub at_ms: i64,
    pub hold_ms: i64,
}

/// A durable execution suspended until `resume_ms` (a wait's end, a step's retry): when to start an
/// instance so that its resume is warm. `jit` starts it `init + margin` before the resume; `eager` at once
/// when the resume is within the horizon (kept idle until then), else as `jit`; `off` starts nothing, nor
/// does a resume already due (the invocation itself starts what it needs).
pub fn resume_warm(
    policy: Policy,
    settings: &Settings,
    now_ms: i64,
    resume_ms: i64,
    init_ms: Option<f64>,
) -> Option<ResumeWarm> {
    if policy == Policy::Off || resume_ms <= now_ms {
        return None;
    }
    let init = init_ms.filter(|i| i.is_finite() && *i >= 0.0).unwrap_or(UNMEASURED_INIT_MS);
    let lead = saturate_i64((init + settings.margin_ms.max(init * settings.margin_share)).ceil());
    let within_horizon = ((resume_ms - now_ms) as f64) <= settings.horizon_ms;
    let at_ms = match policy {
        Policy::Eager if within_horizon => now_ms,
        _ => resume_ms.saturating_sub(lead).max(now_ms),
    };
    Some(ResumeWarm { at_ms, hold_ms: resume_ms - at_ms + RESUME_HOLD_MS })
}

/// The function a Task state runs, when the definition names it statically: the `Resource` itself, or a
/// literal `FunctionName` (and `Qualifier`) in the Parameters of `lambda:invoke`.
pub fn task_function(state: &State) -> Option<String> {
    let StateKind::Task(task) = &state.kind else { return None };
    match &task.resource {
        Resource::Function(f) => Some(f.clone()),
        Resource::LambdaInvoke => {
            let parameters = task.processing.parameters.as_ref()?;
            let literal = |name: &str| parameters.literal_string(name);
            let function = literal("FunctionName")?;
            Some(match literal("Qualifier") {
                Some(q) if !function.contains(':') => format!("{function}:{q}"),
                _ => function,
            })
        }
    }
}

/// The plan made when `current` (a state of `machine`) starts at `now_ms`.
pub fn plan(
    machine: &Machine,
    current: &str,
    now_ms: i64,
    policy: Policy,
    knowledge: &dyn Knowledge,
    settings: &Settings,
) -> Vec<Warm> {
    if policy == Policy::Off {
        return Vec::new();
    }
    let mut walker = Walker { knowledge, settings, policy, now: now_ms as f64, out: Vec::new(), tasks: 0, walked: 0 };
    walker.walk(machine, current, Some(now_ms as f64), 1.0, true);
    let mut out = walker.out;
    // One entry per state: the earliest time and the largest count asked for it.
    out.sort_by(|a, b| a.state.cmp(&b.state).then(a.at_ms.cmp(&b.at_ms)));
    out.dedup_by(|later, first| {
        let same = later.state == first.state;
        if same {
            first.count = first.count.max(later.count);
        }
        same
    });
    out.sort_by(|a, b| a.at_ms.cmp(&b.at_ms).then(a.state.cmp(&b.state)));
    out
}

struct Walker<'a> {
    knowledge: &'a dyn Knowledge,
    settings: &'a Settings,
    policy: Policy,
    now: f64,
    out: Vec<Warm>,
    tasks: usize,
    walked: usize,
}

impl Walker<'_> {
    /// Walks `machine` from `name`, reached at `t` (`None`: unknown) by `count` concurrent runs; warms the
    /// Tasks on the way (not the first state when `current`: it is running now). Returns the predicted
    /// time the walked path ends, `None` when unknown or beyond the horizon.
    fn walk(
        &mut self,
        machine: &Machine,
        name: &str,
        mut t: Option<f64>,
        count: f64,
        mut current: bool,
    ) -> Option<f64> {
        let mut name = name.to_string();
        loop {
            self.walked += 1;
            if self.walked > MAX_WALK || t.is_some_and(|t| t - self.now > self.settings.horizon_ms) {
                return None;
            }
            let state = machine.state(&name)?;
            match &state.kind {
                StateKind::Task(_) => {
                    let view = task_function(state).and_then(|f| self.knowledge.function(&f).map(|v| (f, v)));
                    match view {
                        None => t = None,
                        Some((function, view)) => t = self.task(state, function, view, t, count, current)?,
                    }
                }
                StateKind::Pass(_) => {}
                StateKind::Wait(Wait::Seconds(s)) => t = add(t, Some(*s as f64 * 1000.0)),
                // A wait of unknown length: what follows is left to the plan made when the wait ends.
                StateKind::Wait(_) => return None,
                StateKind::Succeed | StateKind::Fail(_) => return t,
                StateKind::Choice(choice) => {
                    let mut targets: Vec<&str> = choice.choices.iter().map(|r| r.next.as_str()).collect();
                    targets.extend(choice.default.as_deref());
                    let mut seen = std::collections::BTreeSet::new();
                    targets.retain(|n| seen.insert(*n));
                    let counts = self.knowledge.branch_counts(&state.name);
                    let total: u64 = targets.iter().map(|n| taken(&counts, n)).sum();
                    // Laplace's rule: a branch never seen still has a chance.
                    let share = |n: &str| (taken(&counts, n) as f64 + 1.0) / (total as f64 + targets.len() as f64);
                    let likely = targets
                        .iter()
                        .copied()
                        .max_by(|a, b| share(a).total_cmp(&share(b)).then(b.cmp(a)))?
                        .to_string();
                    for other in targets.iter().filter(|n| **n != likely) {
                        if self.policy == Policy::Eager || share(other) >= self.settings.branch_threshold {
                            self.walk(machine, other, t, count, false);
                        }
                    }
                    current = false;
                    name = likely;
                    continue;
                }
                StateKind::Parallel(p) => {
                    let mut end = t;
                    for branch in &p.branches {
                        let branch_end = self.walk(branch, &branch.start_at, t, count, false);
                        end = match (end, branch_end) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            _ => None,
                        };
                    }
                    t = end;
                }
                StateKind::Map(m) => {
                    let items = self.knowledge.map_items(&state.name);
                    let limit = match m.max_concurrency {
                        Count::Fixed(0) | Count::Path(_) | Count::Expr(_) => UNLIMITED_MAP_CONCURRENCY,
                        Count::Fixed(n) => n as f64,
                    };
                    let at_once = items.map_or(1.0, |n| n.min(limit).max(1.0));
                    let rounds = items.map_or(1.0, |n| (n / at_once).ceil().max(1.0));
                    let end = self.walk(&m.processor, &m.processor.start_at, t, count * at_once, false);
                    t = match (t, end) {
                        (Some(start), Some(end)) => Some(start + (end - start) * rounds),
                        _ => None,
                    };
                }
            }
            if self.policy == Policy::Eager
                && !current
                && matches!(state.kind, StateKind::Parallel(_) | StateKind::Map(_))
            {
                return None;
            }
            current = false;
            match &state.next {
                Some(next) => name = next.clone(),
                None => return t,
            }
        }
    }

    /// A Task on the walk: warms it unless it is the current state or has free instances. The predicted
    /// end time (`Some(None)`: unknown), or `None` when the walk stops here.
    fn task(
        &mut self,
        state: &State,
        function: String,
        view: FunctionView,
        t: Option<f64>,
        count: f64,
        current: bool,
    ) -> Option<Option<f64>> {
        if current {
            // Running now: a cold start unless an instance is free for it.
            let cold = if view.spare == 0 { view.init_ms } else { Some(0.0) };
            return Some(add(add(t, cold), view.run_ms));
        }
        if self.tasks >= self.settings.max_tasks {
            return None;
        }
        self.tasks += 1;
        let instances = saturate_usize(count.ceil().max(1.0));
        if view.spare < instances {
            let at = match (self.policy, t, view.init_ms) {
                (Policy::Jit, Some(start), Some(init)) => {
                    start - init - self.settings.margin_ms.max(init * self.settings.margin_share)
                }
                _ => self.now,
            };
            self.out.push(Warm {
                state: state.name.clone(),
                function,
                count: instances - view.spare,
                at_ms: saturate_i64(at.max(self.now).round()),
            });
        }
        if self.policy == Policy::Eager {
            // Seed 001: the next functions only.
            return None;
        }
        Some(add(t, view.run_ms))
    }
}

/// Functions that Tasks reachable from `from` in `machine` name statically, including those in the
/// Parallel branches and Map iterations on the way.
pub fn reachable_functions(machine: &Machine, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut out = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(state) = machine.state(&name) else { continue };
        out.extend(task_function(state));
        match &state.kind {
            StateKind::Parallel(p) => {
                for b in &p.branches {
                    out.extend(reachable_functions(b, &b.start_at));
                }
            }
            StateKind::Map(m) => out.extend(reachable_functions(&m.processor, &m.processor.start_at)),
            _ => {}
        }
        todo.extend(machine.successors(&name).into_iter().map(String::from));
    }
    out
}

/// Functions a Choice's decision ruled out: reachable from the branches not taken, not from the one taken
/// (`chosen`). Instances prepared for them wait in vain; their reservations are released.
pub fn ruled_out(machine: &Machine, choice: &str, chosen: &str) -> BTreeSet<String> {
    let still = reachable_functions(machine, chosen);
    let mut out = BTreeSet::new();
    for next in machine.successors(choice) {
        if next != chosen {
            out.extend(reachable_functions(machine, next).into_iter().filter(|f| !still.contains(f)));
        }
    }
    out
}

fn taken(counts: &[(String, u64)], name: &str) -> u64 {
    counts.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c)
}

fn add(t: Option<f64>, d: Option<f64>) -> Option<f64> {
    Some(t? + d?)
}

#[cfg(test)]
mod tests;
