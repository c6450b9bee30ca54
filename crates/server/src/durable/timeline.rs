//! A durable execution's timeline and bill in the shape of a workflow's (`stoke wf timeline`): a row per
//! invocation of the function (where its time went: queued, sandbox, init, running; cold or warm) and a row
//! per operation (a step running, a wait or a callback waiting, a chained invoke, a child context), read
//! from the execution's events. A pure function of the history, so what the API shows is what was recorded.

use serde_json::Value;
use stoke_core::cost::{Bill, Pricing};
use stoke_core::durable::Event;

use crate::workflows::history::Usage;
pub use crate::workflows::timeline::Timeline;
use crate::workflows::timeline::{hidden_cold_start, invocation_segments, usage_of, Phase, Segment, StepTimeline};

/// The kinds of operation, by their events' prefix (`StepStarted` → `Step`).
const OPERATIONS: [&str; 5] = ["ChainedInvoke", "Callback", "Context", "Step", "Wait"];

/// Seconds since the epoch, as the events' details carry them, to milliseconds since `started_ms`.
fn since(details: &Value, key: &str, started_ms: i64) -> Option<f64> {
    details.get(key).and_then(Value::as_f64).map(|s| s * 1000.0 - started_ms as f64)
}

/// Builds the timeline of a durable execution that started at `started_ms` from its events, oldest first.
pub fn timeline(started_ms: i64, events: &[Event], pricing: &Pricing) -> Timeline {
    let at = |e: &Event| (e.at_ms - started_ms) as f64;
    let mut rows: Vec<StepTimeline> = Vec::new();
    let mut all = Vec::new();
    let mut invocations = 0u32;
    let mut operations = 0u32;
    // Per open operation row: its id, and when its current attempt started (a step between retries: when
    // its last attempt ended, `None` while it runs).
    let mut open: Vec<(String, usize, f64, Option<f64>)> = Vec::new();
    for e in events {
        if e.kind == "InvocationCompleted" {
            invocations += 1;
            let from = since(&e.details, "StartTimestamp", started_ms).unwrap_or_else(|| at(e));
            let to = since(&e.details, "EndTimestamp", started_ms).unwrap_or_else(|| at(e));
            let mut r = StepTimeline::entered(
                String::new(),
                invocations,
                format!("invocation {invocations}"),
                "Invocation".into(),
                from,
            );
            r.exited_ms = Some(to);
            if let Some(u) = e.usage.as_ref().and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok()) {
                r.invocations = 1;
                if u.cold_start_ms.is_some() && u.held_ms.unwrap_or(0) == 0 {
                    r.cold_starts = 1;
                }
                r.segments = invocation_segments(&u, from, to);
                r.hidden_cold_start_ms = hidden_cold_start(&u, &r.segments, from);
                r.node.clone_from(&u.node);
                r.bill = Some(Bill::of(&[usage_of(&u)], pricing));
                all.push(usage_of(&u));
            }
            rows.push(r);
            continue;
        }
        let Some(op_id) = &e.op_id else { continue };
        let Some(kind) = OPERATIONS.iter().find(|k| e.kind.starts_with(**k)) else { continue };
        let what = &e.kind[kind.len()..];
        let t = at(e);
        let found = open.iter().position(|(id, ..)| id == op_id);
        if what == "Started" {
            match found {
                // A step's next attempt, after a retry's back-off.
                Some(i) => {
                    let (_, r, _, ended) = open[i];
                    if let Some(ended) = ended {
                        rows[r].segments.push(Segment { phase: Phase::Waiting, start_ms: ended, end_ms: t });
                    }
                    open[i] = (op_id.clone(), r, t, None);
                }
                None => {
                    operations += 1;
                    let state = e.name.clone().unwrap_or_else(|| op_id.clone());
                    let scope = e.parent_id.clone().unwrap_or_default();
                    rows.push(StepTimeline::entered(
                        scope,
                        operations,
                        state,
                        e.sub_type.as_deref().unwrap_or(kind).into(),
                        t,
                    ));
                    open.push((op_id.clone(), rows.len() - 1, t, None));
                }
            }
            continue;
        }
        let Some(i) = found else { continue };
        let (_, r, began, _) = open[i];
        let phase = match *kind {
            "Wait" | "Callback" => Some(Phase::Waiting),
            "Step" | "ChainedInvoke" => Some(Phase::Running),
            _ => None,
        };
        if let Some(phase) = phase {
            rows[r].segments.push(Segment { phase, start_ms: began, end_ms: t });
        }
        if e.details.pointer("/RetryDetails/NextAttemptDelaySeconds").is_some() {
            open[i].3 = Some(t);
        } else {
            rows[r].exited_ms = Some(t);
            open.remove(i);
        }
    }
    rows.sort_by(|a, b| a.entered_ms.total_cmp(&b.entered_ms));
    Timeline {
        started_ms,
        duration_ms: events.last().map_or(0.0, at),
        cold_starts: rows.iter().map(|s| s.cold_starts).sum(),
        prewarm_saved_ms: rows.iter().map(|s| s.hidden_cold_start_ms).sum(),
        steps: rows,
        bill: Bill::of(&all, pricing),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn event(id: u64, at: i64, kind: &str, op: Option<&str>, details: Value) -> Event {
        Event {
            id,
            kind: kind.into(),
            sub_type: None,
            op_id: op.map(str::to_string),
            name: op.map(|o| format!("{o}-name")),
            parent_id: None,
            at_ms: T0 + at,
            details,
            usage: None,
        }
    }

    fn invocation(id: u64, from: i64, to: i64, usage: Value) -> Event {
        let secs = |ms: i64| (T0 + ms) as f64 / 1000.0;
        let details = json!({"StartTimestamp": secs(from), "EndTimestamp": secs(to), "RequestId": "r"});
        Event { usage: Some(usage), ..event(id, to, "InvocationCompleted", None, details) }
    }

    #[test]
    fn invocations_show_cold_and_warm_time_and_operations_their_spans() {
        let cold = json!({"billedMs": 40, "memoryMb": 128, "durationMs": 40.0, "initMs": 300, "instance": 1,
            "coldStartMs": 350.0, "sandboxMs": 50.0});
        // Started ahead by the pre-warmer: its first invocation, which did not wait for it.
        let warmed = json!({"billedMs": 20, "memoryMb": 128, "durationMs": 20.0, "initMs": 300, "instance": 2});
        let retry = json!({"RetryDetails": {"CurrentAttempt": 1, "NextAttemptDelaySeconds": 1}});
        let events = [
            event(1, 0, "ExecutionStarted", None, json!({})),
            event(2, 360, "StepStarted", Some("s"), json!({})),
            event(3, 370, "StepFailed", Some("s"), retry),
            event(4, 380, "WaitStarted", Some("w"), json!({})),
            invocation(5, 0, 390, cold),
            event(6, 5_000, "WaitSucceeded", Some("w"), json!({})),
            event(7, 5_010, "StepStarted", Some("s"), json!({})),
            event(8, 5_020, "StepSucceeded", Some("s"), json!({"RetryDetails": {"CurrentAttempt": 2}})),
            invocation(9, 5_000, 5_030, warmed),
            event(10, 5_030, "ExecutionSucceeded", None, json!({})),
        ];
        let t = timeline(T0, &events, &Pricing::default());
        let names: Vec<_> = t.steps.iter().map(|s| (s.kind.as_str(), s.state.as_str())).collect();
        assert_eq!(
            names,
            [("Invocation", "invocation 1"), ("Step", "s-name"), ("Wait", "w-name"), ("Invocation", "invocation 2")]
        );
        let first = &t.steps[0];
        assert_eq!((first.cold_starts, first.exited_ms), (1, Some(390.0)));
        let phases: Vec<_> = first.segments.iter().map(|s| (s.phase, s.start_ms, s.end_ms)).collect();
        assert_eq!(phases, [(Phase::Sandbox, 0.0, 50.0), (Phase::Init, 50.0, 350.0), (Phase::Running, 350.0, 390.0)]);
        // The step ran twice, with its retry's back-off between.
        let step = &t.steps[1];
        let phases: Vec<_> = step.segments.iter().map(|s| (s.phase, s.start_ms, s.end_ms)).collect();
        assert_eq!(
            phases,
            [(Phase::Running, 360.0, 370.0), (Phase::Waiting, 370.0, 5_010.0), (Phase::Running, 5_010.0, 5_020.0)]
        );
        assert_eq!(step.exited_ms, Some(5_020.0));
        assert_eq!(t.steps[2].segments[0].phase, Phase::Waiting);
        // The resume was warm: its instance's init was hidden, and counted as saved.
        let resume = &t.steps[3];
        assert_eq!((resume.cold_starts, resume.hidden_cold_start_ms), (0, 300.0));
        assert_eq!((t.cold_starts, t.prewarm_saved_ms, t.duration_ms), (1, 300.0, 5_030.0));
        assert_eq!((t.bill.invocations, t.bill.billed_ms, t.bill.init_ms), (2, 60, 600));
    }

    #[test]
    fn an_invocation_without_usage_and_an_operation_still_open_are_drawn_as_far_as_known() {
        let lost = Event { usage: None, ..invocation(2, 0, 100, json!({})) };
        let events = [
            event(1, 0, "ExecutionStarted", None, json!({})),
            lost,
            event(3, 200, "CallbackStarted", Some("c"), json!({})),
        ];
        let t = timeline(T0, &events, &Pricing::default());
        assert_eq!(t.steps.len(), 2);
        assert_eq!((t.steps[0].invocations, t.steps[0].bill.is_none()), (0, true));
        assert_eq!((t.steps[1].kind.as_str(), t.steps[1].exited_ms), ("Callback", None));
        assert_eq!((t.cold_starts, t.bill.invocations), (0, 0));
    }
}
