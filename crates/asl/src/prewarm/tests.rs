use std::collections::HashMap;

use serde_json::{json, Value};

use super::*;
use crate::Definition;

#[derive(Default)]
struct Known {
    functions: HashMap<String, FunctionView>,
    branches: HashMap<String, Vec<(String, u64)>>,
    items: HashMap<String, f64>,
}

impl Known {
    fn with(mut self, f: &str, init: f64, run: f64) -> Self {
        self.functions.insert(f.into(), FunctionView { init_ms: Some(init), run_ms: Some(run), spare: 0 });
        self
    }
}

impl Knowledge for Known {
    fn function(&self, reference: &str) -> Option<FunctionView> {
        self.functions.get(reference).copied()
    }
    fn branch_counts(&self, choice: &str) -> Vec<(String, u64)> {
        self.branches.get(choice).cloned().unwrap_or_default()
    }
    fn map_items(&self, map: &str) -> Option<f64> {
        self.items.get(map).copied()
    }
}

fn machine(v: Value) -> Machine {
    Definition::parse(&v).expect("valid definition").machine
}

fn task(f: &str, next: Option<&str>) -> Value {
    match next {
        Some(n) => json!({"Type": "Task", "Resource": f, "Next": n}),
        None => json!({"Type": "Task", "Resource": f, "End": true}),
    }
}

/// A → B → C → D → E, each a function of the same name.
fn chain() -> Machine {
    machine(json!({"StartAt": "A", "States": {
        "A": task("a", Some("B")), "B": task("b", Some("C")), "C": task("c", Some("D")),
        "D": task("d", Some("E")), "E": task("e", None)}}))
}

fn five(init: f64, run: f64) -> Known {
    ["a", "b", "c", "d", "e"].iter().fold(Known::default(), |k, f| k.with(f, init, run))
}

/// A fixed 50 ms margin, for round numbers.
fn flat() -> Settings {
    Settings { margin_share: 0.0, ..Settings::default() }
}

fn summary(plan: &[Warm]) -> Vec<(&str, usize, i64)> {
    plan.iter().map(|w| (w.state.as_str(), w.count, w.at_ms)).collect()
}

#[test]
fn jit_warms_each_step_of_a_cold_chain_just_in_time() {
    // Every function: 300 ms init, 100 ms run, none warm. A runs cold: it ends at 400 ms; B must be ready
    // then, so it starts at 400 − 300 − 50 (margin) = 50 ms; B ends at 500, so C starts at 150, and so on.
    let plan = plan(&chain(), "A", 0, Policy::Jit, &five(300.0, 100.0), &flat());
    assert_eq!(summary(&plan), vec![("B", 1, 50), ("C", 1, 150), ("D", 1, 250), ("E", 1, 350)]);
    assert_eq!(plan[0].function, "b");
}

#[test]
fn jit_warms_at_once_what_cannot_be_ready_in_time_and_skips_what_is_warm() {
    // A warm A (spare instance) runs 100 ms: B (init 300) cannot be ready in time: warm it now.
    let mut k = five(300.0, 100.0);
    k.functions.get_mut("a").unwrap().spare = 1;
    k.functions.get_mut("c").unwrap().spare = 1;
    let plan = plan(&chain(), "A", 1000, Policy::Jit, &k, &flat());
    // C has a free instance: not warmed, but its run still counts for D's timing (D starts at 1300).
    assert_eq!(summary(&plan), vec![("B", 1, 1000), ("D", 1, 1000), ("E", 1, 1050)]);
}

#[test]
fn jit_without_statistics_warms_now_and_eager_only_the_next_task() {
    let k = Known::default().with("a", 300.0, 100.0);
    let mut unknown = k;
    for f in ["b", "c", "d", "e"] {
        unknown.functions.insert(f.into(), FunctionView::default());
    }
    let jit = plan(&chain(), "A", 7, Policy::Jit, &unknown, &flat());
    assert_eq!(summary(&jit), vec![("B", 1, 7), ("C", 1, 7), ("D", 1, 7), ("E", 1, 7)]);
    let eager = plan(&chain(), "A", 7, Policy::Eager, &five(300.0, 100.0), &flat());
    assert_eq!(summary(&eager), vec![("B", 1, 7)]);
    assert!(plan(&chain(), "A", 7, Policy::Off, &five(300.0, 100.0), &flat()).is_empty());
}

#[test]
fn a_slow_init_is_warmed_with_a_proportional_margin() {
    // 1 s init: 20 % (200 ms) is more than the 50 ms floor. A ends at 1000 + 100 = 1100; B at 1100 − 1200.
    let mut k = five(1000.0, 100.0);
    k.functions.get_mut("a").unwrap().spare = 1;
    let first = plan(&chain(), "A", 5000, Policy::Jit, &k, &Settings::default());
    assert_eq!(summary(&first)[..2], [("B", 1, 5000), ("C", 1, 5000)]);
    k.functions.get_mut("a").unwrap().run_ms = Some(3000.0);
    let later = plan(&chain(), "A", 0, Policy::Jit, &k, &Settings::default());
    // A ends at 3000: B starts 3000 − 1000 − 200; B ends 3100, C at 1900.
    assert_eq!(summary(&later)[..2], [("B", 1, 1800), ("C", 1, 1900)]);
}

#[test]
fn the_horizon_and_the_task_cap_bound_the_walk() {
    let near = Settings { horizon_ms: 450.0, ..flat() };
    let plan1 = plan(&chain(), "A", 0, Policy::Jit, &five(300.0, 100.0), &near);
    // B starts at 400, C at 500 (beyond 450): C's start is left to a later plan.
    assert_eq!(summary(&plan1), vec![("B", 1, 50)]);
    let capped = Settings { max_tasks: 2, ..flat() };
    assert_eq!(plan(&chain(), "A", 0, Policy::Jit, &five(300.0, 100.0), &capped).len(), 2);
}

#[test]
fn unknown_functions_and_waits_of_unknown_length_are_not_planned_past() {
    let m = machine(json!({"StartAt": "A", "States": {
        "A": task("a", Some("W")),
        "W": {"Type": "Wait", "TimestampPath": "$.when", "Next": "B"},
        "B": task("b", None)}}));
    assert!(plan(&m, "A", 0, Policy::Jit, &five(300.0, 100.0), &flat()).is_empty());
    // A fixed wait is simply time: B starts at 400 + 2000.
    let m = machine(json!({"StartAt": "A", "States": {
        "A": task("a", Some("W")), "W": {"Type": "Wait", "Seconds": 2, "Next": "X"},
        "X": task("nobody", Some("B")), "B": task("b", None)}}));
    // "nobody" is not a function: its run time is unknown, so B is warmed at once.
    let plan = plan(&m, "A", 0, Policy::Jit, &five(300.0, 100.0), &flat());
    assert_eq!(summary(&plan), vec![("B", 1, 0)]);
}

#[test]
fn choice_warms_the_likely_branch_and_others_above_the_threshold() {
    let m = machine(json!({"StartAt": "A", "States": {
        "A": task("a", Some("C")),
        "C": {"Type": "Choice", "Choices": [
            {"Variable": "$.x", "NumericEquals": 1, "Next": "B"},
            {"Variable": "$.x", "NumericEquals": 2, "Next": "D"}], "Default": "E"},
        "B": task("b", None), "D": task("d", None), "E": task("e", None)}}));
    let mut k = five(300.0, 100.0);
    // B taken 90 times, D 9, E once: shares (Laplace) 91/103, 10/103, 2/103.
    k.branches.insert("C".into(), vec![("B".into(), 90), ("D".into(), 9), ("E".into(), 1)]);
    let tight = plan(&m, "A", 0, Policy::Jit, &k, &flat());
    assert_eq!(summary(&tight), vec![("B", 1, 50)]);
    let loose = Settings { branch_threshold: 0.05, ..flat() };
    assert_eq!(summary(&plan(&m, "A", 0, Policy::Jit, &k, &loose)), vec![("B", 1, 50), ("D", 1, 50)]);
    // Never taken: every branch is as likely as the others (1/3 each), all above 0.2.
    k.branches.clear();
    assert_eq!(plan(&m, "A", 0, Policy::Jit, &k, &flat()).len(), 3);
    // The most likely branch changes with the statistics.
    k.branches.insert("C".into(), vec![("E".into(), 50)]);
    assert_eq!(summary(&plan(&m, "A", 0, Policy::Jit, &k, &flat())), vec![("E", 1, 50)]);
    // Eager warms every branch.
    assert_eq!(plan(&m, "A", 0, Policy::Eager, &k, &flat()).len(), 3);
}

#[test]
fn parallel_warms_every_branch_and_continues_after_the_slowest() {
    let m = machine(json!({"StartAt": "A", "States": {
        "A": task("a", Some("P")),
        "P": {"Type": "Parallel", "Next": "E", "Branches": [
            {"StartAt": "B", "States": {"B": task("b", None)}},
            {"StartAt": "C", "States": {"C": task("c", Some("D")), "D": task("d", None)}}]},
        "E": task("e", None)}}));
    let plan = plan(&m, "A", 0, Policy::Jit, &five(300.0, 100.0), &flat());
    // P starts at 400: B and C at 50; D after C (500) at 150; E after the slower branch (600) at 250.
    assert_eq!(summary(&plan), vec![("B", 1, 50), ("C", 1, 50), ("D", 1, 150), ("E", 1, 250)]);
}

#[test]
fn map_warms_as_many_instances_as_run_at_once() {
    let m = |concurrency: u64| {
        machine(json!({"StartAt": "A", "States": {
            "A": task("a", Some("M")),
            "M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": concurrency, "Next": "E",
                  "ItemProcessor": {"StartAt": "B", "States": {"B": task("b", None)}}},
            "E": task("e", None)}}))
    };
    let mut k = five(300.0, 100.0);
    k.items.insert("M".into(), 10.0);
    // 10 items, 4 at once: 4 instances of b; 3 rounds of 100 ms, so E starts at 400 + 300.
    let plan4 = plan(&m(4), "A", 0, Policy::Jit, &k, &flat());
    assert_eq!(summary(&plan4), vec![("B", 4, 50), ("E", 1, 350)]);
    // Unlimited: one per item. Free instances reduce the count.
    k.functions.get_mut("b").unwrap().spare = 3;
    assert_eq!(summary(&plan(&m(0), "A", 0, Policy::Jit, &k, &flat()))[0], ("B", 7, 50));
    // Item count never seen: one instance.
    k.items.clear();
    k.functions.get_mut("b").unwrap().spare = 0;
    assert_eq!(summary(&plan(&m(0), "A", 0, Policy::Jit, &k, &flat()))[0], ("B", 1, 50));
}

#[test]
fn a_loop_is_walked_once_per_state() {
    let m = machine(json!({"StartAt": "A", "States": {
        "A": task("a", Some("C")),
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.done", "BooleanEquals": true, "Next": "S"}],
              "Default": "A"},
        "S": {"Type": "Succeed"}}}));
    let mut k = five(300.0, 100.0);
    k.branches.insert("C".into(), vec![("A".into(), 99)]);
    let plan = plan(&m, "A", 0, Policy::Jit, &k, &flat());
    // The loop back to A: one entry for A however often the walk comes round.
    assert_eq!(plan.iter().filter(|w| w.state == "A").count(), 1);
}

#[test]
fn lambda_invoke_names_its_function_in_literal_parameters() {
    let m = machine(json!({"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
              "Parameters": {"FunctionName": "f", "Qualifier": "prod", "Payload.$": "$"}, "Next": "B"},
        "B": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
              "Parameters": {"FunctionName.$": "$.which"}, "End": true}}}));
    assert_eq!(task_function(m.state("A").unwrap()), Some("f:prod".into()));
    assert_eq!(task_function(m.state("B").unwrap()), None);
    assert_eq!(Policy::parse("jit"), Some(Policy::Jit));
    assert_eq!(Policy::parse("lazy"), None);
    assert!(Policy::NAMES.iter().all(|n| Policy::parse(n).map(Policy::as_str) == Some(*n)));
}

/// A → Is? → (yes: Y → Join | no: N1 → N2 → Join), Join → J; Y's catcher goes to Rescue.
fn branching() -> Machine {
    machine(json!({"StartAt": "A", "States": {
        "A": task("a", Some("Is")),
        "Is": {"Type": "Choice", "Choices": [{"Variable": "$.ok", "BooleanEquals": true, "Next": "Y"}],
               "Default": "N1"},
        "Y": {"Type": "Task", "Resource": "y", "Next": "Join",
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Rescue"}]},
        "Rescue": task("rescue", Some("Join")),
        "N1": task("n1", Some("N2")),
        "N2": {"Type": "Parallel", "Next": "Join", "Branches": [
            {"StartAt": "P", "States": {"P": task("p", None)}},
            {"StartAt": "Q", "States": {"Q": task("q", None)}}]},
        "Join": task("j", None)}}))
}

#[test]
fn reachable_functions_follow_next_choices_catchers_and_branches() {
    let m = branching();
    let all: Vec<_> = reachable_functions(&m, "A").into_iter().collect();
    assert_eq!(all, ["a", "j", "n1", "p", "q", "rescue", "y"]);
    let from_y: Vec<_> = reachable_functions(&m, "Y").into_iter().collect();
    assert_eq!(from_y, ["j", "rescue", "y"]);
    // A loop ends the walk.
    let looped = machine(json!({"StartAt": "A", "States": {
        "A": task("a", Some("B")),
        "B": {"Type": "Task", "Resource": "b", "Next": "A", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "End"}]},
        "End": {"Type": "Succeed"}}}));
    assert_eq!(reachable_functions(&looped, "B").len(), 2);
}

#[test]
fn a_choice_rules_out_the_functions_only_its_other_branches_reach() {
    let m = branching();
    let out: Vec<_> = ruled_out(&m, "Is", "Y").into_iter().collect();
    assert_eq!(out, ["n1", "p", "q"], "the join's function is still ahead");
    let out: Vec<_> = ruled_out(&m, "Is", "N1").into_iter().collect();
    assert_eq!(out, ["rescue", "y"]);
}

#[test]
fn a_known_resume_is_warmed_init_and_margin_ahead_under_jit() {
    let s = Settings::default();
    // 400 ms init: the margin is the larger of 50 ms and 20 % (80 ms).
    let w = resume_warm(Policy::Jit, &s, 1_000, 11_000, Some(400.0)).unwrap();
    assert_eq!(w, ResumeWarm { at_ms: 11_000 - 480, hold_ms: 480 + 10_000 });
    // A fast init: the 50 ms floor.
    assert_eq!(resume_warm(Policy::Jit, &s, 1_000, 11_000, Some(100.0)).unwrap().at_ms, 11_000 - 150);
    // Never measured: a second is assumed.
    assert_eq!(resume_warm(Policy::Jit, &s, 1_000, 11_000, None).unwrap().at_ms, 11_000 - 1_200);
    assert_eq!(resume_warm(Policy::Jit, &s, 1_000, 11_000, Some(f64::NAN)).unwrap().at_ms, 11_000 - 1_200);
    // Sooner than an init away: at once, holding until after the resume.
    assert_eq!(
        resume_warm(Policy::Jit, &s, 1_000, 1_300, Some(400.0)),
        Some(ResumeWarm { at_ms: 1_000, hold_ms: 10_300 })
    );
}

#[test]
fn eager_keeps_an_instance_through_a_short_suspension_and_off_or_a_due_resume_warm_nothing() {
    let s = Settings::default();
    assert_eq!(resume_warm(Policy::Eager, &s, 1_000, 61_000, Some(400.0)).unwrap().at_ms, 1_000);
    // Beyond the horizon, eager waits as jit does rather than keep an instance idle for hours.
    let far = 1_000 + 3_600_000;
    assert_eq!(resume_warm(Policy::Eager, &s, 1_000, far, Some(400.0)).unwrap().at_ms, far - 480);
    assert_eq!(resume_warm(Policy::Off, &s, 1_000, 11_000, Some(400.0)), None);
    assert_eq!(resume_warm(Policy::Jit, &s, 1_000, 1_000, Some(400.0)), None, "due now: the invocation starts one");
    assert_eq!(resume_warm(Policy::Jit, &s, 1_000, 900, Some(400.0)), None);
}
