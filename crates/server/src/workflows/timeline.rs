//! An execution's timeline and bill, read from its history: for every step, where its time went (queued,
//! sandbox creation, runtime and function init, running, waiting) and what its invocations cost. Pure
//! functions of the history events, so what the API shows is exactly what was recorded.

use serde::{Deserialize, Serialize};
use stoke_core::cost::{Bill, Pricing};

use super::history::{HistoryEvent, Recorded, Usage};

/// What a stretch of a step's time was spent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for an instance (behind other work, or for a cold start to begin).
    Queued,
    /// Creating the sandbox of a cold instance.
    Sandbox,
    /// The runtime and the function's own initialisation, for a cold instance.
    Init,
    /// An instance prepared for the step by an earlier one (`prepare`): doing its own preparation, then
    /// waiting for its turn. It overlaps the earlier steps; the step itself does not wait for it.
    Held,
    /// The function running.
    Running,
    /// A Wait state, or a back-off before a retry.
    Waiting,
}

/// One stretch of time, in milliseconds since the execution started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Segment {
    pub phase: Phase,
    pub start_ms: f64,
    pub end_ms: f64,
}

/// One state entered by the execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepTimeline {
    /// `""` at the top level, else the Parallel branch or Map iteration.
    pub scope: String,
    pub step: u32,
    pub state: String,
    /// Task, Pass, Choice, Wait, …
    #[serde(rename = "type")]
    pub kind: String,
    pub entered_ms: f64,
    /// Absent while the state runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exited_ms: Option<f64>,
    /// Invocations of the step's function (tries, with retries).
    pub invocations: u32,
    /// Invocations that waited for a cold start.
    pub cold_starts: u32,
    pub segments: Vec<Segment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill: Option<Bill>,
    /// In a cluster: the node whose instance ran the step's last invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Cold-start time its invocations did not wait for: an instance started for it ahead of time (by the
    /// pre-warmer, or prepared by an earlier step) that initialised before the step asked for it.
    #[serde(default)]
    pub hidden_cold_start_ms: f64,
}

impl StepTimeline {
    /// A step entered at `entered_ms`, nothing else known of it yet.
    pub fn entered(scope: String, step: u32, state: String, kind: String, entered_ms: f64) -> Self {
        StepTimeline {
            scope,
            step,
            state,
            kind,
            entered_ms,
            exited_ms: None,
            invocations: 0,
            cold_starts: 0,
            segments: Vec::new(),
            bill: None,
            node: None,
            hidden_cold_start_ms: 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Timeline {
    pub started_ms: i64,
    /// Since the start: to the end, or to the last event while it runs.
    pub duration_ms: f64,
    pub steps: Vec<StepTimeline>,
    pub cold_starts: u32,
    pub bill: Bill,
    /// What pre-warming saved against `off`, as far as the node knows: the steps' hidden cold starts added
    /// up (with pre-warming off, each instance would have started when its step asked for it).
    #[serde(default)]
    pub prewarm_saved_ms: f64,
}

/// Of one invocation's cold start, the part that ran before its step asked for it (`from`): all of an
/// instance's initialisation when it was started ahead and the invocation did not wait, else the part of a
/// prepared instance's start drawn before the step.
pub(crate) fn hidden_cold_start(usage: &Usage, segments: &[Segment], from: f64) -> f64 {
    if usage.cold_start_ms.is_none() {
        // Its first invocation, and it did not wait: its whole initialisation happened before.
        return usage.init_ms as f64;
    }
    segments
        .iter()
        .filter(|s| matches!(s.phase, Phase::Sandbox | Phase::Init))
        .map(|s| (s.end_ms.min(from) - s.start_ms).max(0.0))
        .sum()
}

/// Where an invocation's time went, from when it was scheduled (`from`) to when its result came (`to`).
/// A prepared instance's start and holding happened before the step was scheduled, and are drawn there.
pub(crate) fn invocation_segments(usage: &Usage, from: f64, to: f64) -> Vec<Segment> {
    let prepared = usage.held_ms.is_some();
    let floor = if prepared { f64::MIN } else { from };
    let seg = |phase, start: f64, end: f64| Segment { phase, start_ms: start.max(floor), end_ms: end.max(floor) };
    let run_start = (to - usage.duration_ms).max(from);
    let mut out = Vec::new();
    let mut cursor = run_start;
    if let Some(held) = usage.held_ms {
        let held = held as f64;
        out.push(seg(Phase::Held, cursor - held, cursor));
        cursor -= held;
    }
    if let Some(cold) = usage.cold_start_ms {
        let sandbox = usage.sandbox_ms.unwrap_or(0.0);
        let init = (cold - sandbox).max(0.0);
        out.push(seg(Phase::Init, cursor - init, cursor));
        cursor -= init;
        out.push(seg(Phase::Sandbox, cursor - sandbox, cursor));
        cursor -= sandbox;
    }
    if cursor > from && !prepared {
        out.push(seg(Phase::Queued, from, cursor));
    }
    out.reverse();
    out.push(seg(Phase::Running, run_start, to));
    out.retain(|s| s.end_ms > s.start_ms);
    out
}

pub(crate) fn usage_of(u: &Usage) -> stoke_core::cost::Usage {
    stoke_core::cost::Usage {
        billed_ms: u.billed_ms,
        init_ms: u.init_ms,
        held_ms: u.held_ms.unwrap_or(0),
        memory_mb: u.memory_mb,
    }
}

/// Builds the timeline of an execution that started at `started_ms` from its history.
pub fn timeline(started_ms: i64, history: &[Recorded], pricing: &Pricing) -> Timeline {
    let at = |e: &Recorded| (e.timestamp_ms - started_ms) as f64;
    let mut steps: Vec<StepTimeline> = Vec::new();
    let mut usages: Vec<Vec<stoke_core::cost::Usage>> = Vec::new();
    let mut all = Vec::new();
    // Per step: when its current attempt was scheduled, and when the last attempt ended (for back-offs).
    let mut scheduled: Vec<(Option<f64>, Option<f64>)> = Vec::new();
    let find = |steps: &[StepTimeline], e: &Recorded| {
        steps.iter().rposition(|s| s.scope == e.scope && s.step == e.step && s.exited_ms.is_none())
    };
    for e in history {
        if let HistoryEvent::StateEntered(entered) = &e.event {
            steps.push(StepTimeline::entered(
                e.scope.clone(),
                e.step,
                entered.name.clone(),
                entered.state_type.clone(),
                at(e),
            ));
            usages.push(Vec::new());
            scheduled.push((None, None));
            continue;
        }
        let Some(i) = find(&steps, e) else { continue };
        let usage = match &e.event {
            HistoryEvent::StateExited(_) => {
                let s = &mut steps[i];
                s.exited_ms = Some(at(e));
                if s.kind == "Wait" {
                    s.segments.push(Segment { phase: Phase::Waiting, start_ms: s.entered_ms, end_ms: at(e) });
                }
                continue;
            }
            HistoryEvent::TaskScheduled(..) => {
                if let (None, Some(ended)) = scheduled[i] {
                    steps[i].segments.push(Segment { phase: Phase::Waiting, start_ms: ended, end_ms: at(e) });
                }
                scheduled[i] = (Some(at(e)), None);
                continue;
            }
            HistoryEvent::TaskSucceeded(_, t) => &t.usage,
            HistoryEvent::TaskFailed(_, f) | HistoryEvent::TaskTimedOut(_, f) => &f.usage,
            _ => continue,
        };
        // Ended without running (the function was missing, a timeout …): the try still took time.
        let Some(u) = usage else {
            scheduled[i] = (None, Some(at(e)));
            continue;
        };
        let from = scheduled[i].0.unwrap_or_else(|| at(e));
        let s = &mut steps[i];
        s.invocations += 1;
        // A prepared instance's cold start was hidden behind earlier steps — unless the step came before
        // the instance was ready (nothing was held) and waited for it.
        if u.cold_start_ms.is_some() && u.held_ms.unwrap_or(0) == 0 {
            s.cold_starts += 1;
        }
        let segments = invocation_segments(u, from, at(e));
        s.hidden_cold_start_ms += hidden_cold_start(u, &segments, from);
        s.segments.extend(segments);
        if u.node.is_some() {
            s.node.clone_from(&u.node);
        }
        usages[i].push(usage_of(u));
        all.push(usage_of(u));
        scheduled[i] = (None, Some(at(e)));
    }
    for (s, u) in steps.iter_mut().zip(&usages) {
        if !u.is_empty() {
            s.bill = Some(Bill::of(u, pricing));
        }
    }
    Timeline {
        started_ms,
        duration_ms: history.last().map_or(0.0, at),
        cold_starts: steps.iter().map(|s| s.cold_starts).sum(),
        prewarm_saved_ms: steps.iter().map(|s| s.hidden_cold_start_ms).sum(),
        steps,
        bill: Bill::of(&all, pricing),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn event(seq: u64, at: i64, kind: &str, step: u32, details: Value) -> Recorded {
        Recorded::from_row(&stoke_store::HistoryRow {
            seq,
            timestamp_ms: 1_000 + at,
            kind: kind.into(),
            scope: String::new(),
            step,
            attempt: 0,
            details: details.to_string(),
        })
    }

    fn usage(v: Value) -> Usage {
        serde_json::from_value(v).expect("usage")
    }

    #[test]
    fn a_cold_task_then_a_warm_retry_and_a_wait() {
        let cold = json!({"billedMs": 100, "memoryMb": 1024, "durationMs": 100.0, "queuedMs": 400.0,
                          "initMs": 300, "coldStartMs": 300.0, "sandboxMs": 50.0, "instance": 1});
        let warm = json!({"billedMs": 20, "memoryMb": 1024, "durationMs": 20.0, "queuedMs": 0.1,
                          "initMs": 0, "instance": 1});
        let history = [
            event(1, 0, "ExecutionStarted", 0, json!({})),
            event(2, 0, "TaskStateEntered", 0, json!({"name": "T"})),
            event(3, 0, "LambdaFunctionScheduled", 0, json!({})),
            event(4, 500, "LambdaFunctionFailed", 0, json!({"error": "E", "usage": cold})),
            event(5, 600, "LambdaFunctionScheduled", 0, json!({})),
            event(6, 620, "LambdaFunctionSucceeded", 0, json!({"usage": warm})),
            event(7, 620, "TaskStateExited", 0, json!({"name": "T"})),
            event(8, 620, "WaitStateEntered", 1, json!({"name": "W"})),
            event(9, 1620, "WaitStateExited", 1, json!({"name": "W"})),
            event(10, 1620, "ExecutionSucceeded", 0, json!({})),
        ];
        let pricing = Pricing { per_gb_second: 1.0, per_request: 0.0 };
        let t = timeline(1_000, &history, &pricing);
        assert_eq!((t.duration_ms, t.cold_starts, t.steps.len()), (1620.0, 1, 2));
        let task = &t.steps[0];
        assert_eq!((task.invocations, task.cold_starts, task.exited_ms), (2, 1, Some(620.0)));
        let phases: Vec<_> = task.segments.iter().map(|s| (s.phase, s.start_ms, s.end_ms)).collect();
        assert_eq!(
            phases,
            vec![
                // 500 ms from scheduling to the result: 100 running, 250 init, 50 sandbox, 100 queued first.
                (Phase::Queued, 0.0, 100.0),
                (Phase::Sandbox, 100.0, 150.0),
                (Phase::Init, 150.0, 400.0),
                (Phase::Running, 400.0, 500.0),
                // The back-off before the retry, then the warm retry.
                (Phase::Waiting, 500.0, 600.0),
                (Phase::Running, 600.0, 620.0),
            ]
        );
        // 100 + 300 init + 20 ms at 1 GB.
        let bill = task.bill.expect("billed");
        assert_eq!((bill.invocations, bill.billed_ms, bill.init_ms), (2, 120, 300));
        assert!((t.bill.gb_seconds - 0.42).abs() < 1e-9);
        assert_eq!(t.steps[1].segments, vec![Segment { phase: Phase::Waiting, start_ms: 0.0 + 620.0, end_ms: 1620.0 }]);
        assert_eq!(t.steps[1].bill, None);
    }

    #[test]
    fn a_running_step_and_a_task_that_never_ran() {
        let history = [
            event(1, 0, "TaskStateEntered", 0, json!({"name": "Missing"})),
            event(2, 0, "LambdaFunctionScheduled", 0, json!({})),
            event(3, 5, "LambdaFunctionFailed", 0, json!({"error": "Lambda.ResourceNotFoundException"})),
            event(4, 5, "TaskStateExited", 0, json!({"name": "Missing"})),
            event(5, 5, "TaskStateEntered", 1, json!({"name": "Slow"})),
            event(6, 6, "LambdaFunctionScheduled", 1, json!({})),
        ];
        let t = timeline(1_000, &history, &Pricing::default());
        assert_eq!(t.steps[0].invocations, 0, "an invocation that never ran is not billed");
        assert!(t.steps[0].segments.is_empty());
        assert_eq!((t.steps[1].exited_ms, t.bill.invocations), (None, 0));
    }

    #[test]
    fn a_prepared_instance_is_held_before_its_step_and_is_not_a_cold_start() {
        // Prepared 600 ms before the step was scheduled (at 1000): 50 ms sandbox, 250 ms init, held 300 ms.
        let u = json!({"durationMs": 40.0, "billedMs": 40, "memoryMb": 128, "initMs": 250, "heldMs": 300,
                       "coldStartMs": 300.0, "sandboxMs": 50.0, "prepared": true});
        let segs: Vec<_> =
            invocation_segments(&usage(u.clone()), 1000.0, 1041.0).iter().map(|s| (s.phase, s.start_ms)).collect();
        assert_eq!(
            segs,
            vec![(Phase::Sandbox, 401.0), (Phase::Init, 451.0), (Phase::Held, 701.0), (Phase::Running, 1001.0)]
        );
        let history = [
            event(1, 1000, "TaskStateEntered", 0, json!({"name": "T"})),
            event(2, 1000, "LambdaFunctionScheduled", 0, json!({})),
            event(3, 1041, "LambdaFunctionSucceeded", 0, json!({"usage": u})),
        ];
        let pricing = Pricing { per_gb_second: 1.0, per_request: 0.0 };
        let t = timeline(1_000, &history, &pricing);
        assert_eq!(t.cold_starts, 0);
        // Prepared too late: the step came before the instance was ready, and waited for its init.
        let mut late = u.clone();
        late["heldMs"] = json!(0);
        let history_late = [
            history[0].clone(),
            history[1].clone(),
            event(3, 1041, "LambdaFunctionSucceeded", 0, json!({"usage": late})),
        ];
        let t_late = timeline(1_000, &history_late, &pricing);
        assert_eq!(t_late.cold_starts, 1);
        // What preparing saved: the whole 300 ms start; prepared late, all but the 1 ms the step waited.
        assert_eq!((t.prewarm_saved_ms, t.steps[0].hidden_cold_start_ms), (300.0, 300.0));
        assert_eq!(t_late.prewarm_saved_ms, 299.0);
        // Billed from the preparation: init 250 + held 300 + run 40 ms, at 128 MB.
        assert_eq!((t.bill.billed_ms, t.bill.init_ms, t.bill.held_ms), (40, 250, 300));
        assert!((t.bill.gb_seconds - 0.59 / 8.0).abs() < 1e-9, "{}", t.bill.gb_seconds);
    }

    #[test]
    fn an_instance_pre_warmed_ahead_of_its_step_saved_its_initialisation() {
        // The pre-warmer started the instance while the first step ran: its first invocation did not wait,
        // and the 17 ms it took to initialise are what pre-warming saved. The next call on it saves nothing.
        let first = json!({"durationMs": 10.0, "queuedMs": 0.1, "billedMs": 10, "memoryMb": 128, "initMs": 17});
        let again = json!({"durationMs": 10.0, "queuedMs": 0.1, "billedMs": 10, "memoryMb": 128});
        let history = [
            event(1, 0, "TaskStateEntered", 0, json!({"name": "A"})),
            event(2, 0, "LambdaFunctionScheduled", 0, json!({})),
            event(3, 11, "LambdaFunctionSucceeded", 0, json!({"usage": first})),
            event(4, 11, "TaskStateExited", 0, json!({"name": "A"})),
            event(5, 11, "TaskStateEntered", 1, json!({"name": "B"})),
            event(6, 11, "LambdaFunctionScheduled", 1, json!({})),
            event(7, 22, "LambdaFunctionSucceeded", 1, json!({"usage": again})),
        ];
        let t = timeline(1_000, &history, &Pricing::default());
        assert_eq!(t.cold_starts, 0);
        assert_eq!((t.steps[0].hidden_cold_start_ms, t.steps[1].hidden_cold_start_ms), (17.0, 0.0));
        assert_eq!(t.prewarm_saved_ms, 17.0);
    }

    #[test]
    fn a_warm_invocation_is_queued_then_running() {
        let u = json!({"durationMs": 10.0, "queuedMs": 0.5, "billedMs": 10, "memoryMb": 128});
        let segs = invocation_segments(&usage(u), 100.0, 112.0);
        assert_eq!(
            segs,
            vec![
                Segment { phase: Phase::Queued, start_ms: 100.0, end_ms: 102.0 },
                Segment { phase: Phase::Running, start_ms: 102.0, end_ms: 112.0 }
            ]
        );
    }
}
