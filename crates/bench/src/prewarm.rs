//! `stoke-bench --scenarios prewarm`: workflows whose functions all start cold, run under each pre-warm
//! policy side by side (interleaved rounds), with the time and the bill of every execution.
//!
//! Every function's init sleeps for `--prewarm-init` seconds (standing in for importing a heavy library)
//! on top of the Python runtime's own start, so cold starts are real. Before each measured execution the
//! workflow's functions are made cold by a configuration change (their instances are drained); their
//! learned statistics stay, as they would for a function that has been idle past its keep-alive.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::harness::{b64, spread, start_server, table, zip_with, BenchServer};

#[derive(Debug, clap::Args)]
pub struct PrewarmArgs {
    /// Measured executions per workflow and policy, after one unmeasured run that teaches the planner.
    #[arg(long, default_value_t = 5, value_name = "N")]
    prewarm_rounds: usize,
    /// Scale of seed 001's chain of 3 s, 7 s and 5 s tasks (1.0 runs the paper's 15 s).
    #[arg(long, default_value_t = 0.1, value_name = "F")]
    prewarm_scale: f64,
    /// Seconds every function's init takes on top of the runtime's start.
    #[arg(long, default_value_t = 0.3, value_name = "S")]
    prewarm_init: f64,
}

const POLICIES: [&str; 3] = ["off", "eager", "jit"];

/// The function every step runs: a slow init, then `RUN_S` seconds of work.
const SOURCE: &str = r#"import os, time
# Stands in for importing a heavy library (Pillow, numpy …); a few real imports follow.
time.sleep(float(os.environ.get("INIT_S", "0.3")))
import json, decimal, email.parser, http.client, xml.etree.ElementTree
RUN_S = float(os.environ.get("RUN_S", "0.1"))
def handler(event, context):
    time.sleep(RUN_S)
    return event
"#;

struct Workflow {
    name: &'static str,
    /// Each state's function (its name without the policy suffix) and run time in seconds.
    steps: Vec<(&'static str, f64)>,
    definition: fn(&str) -> Value,
    /// The input of round `i` (round 0 teaches the planner).
    input: fn(usize) -> Value,
}

fn task(function: String, next: Option<&str>) -> Value {
    match next {
        Some(n) => json!({"Type": "Task", "Resource": function, "Next": n}),
        None => json!({"Type": "Task", "Resource": function, "End": true}),
    }
}

fn workflows(scale: f64) -> Vec<Workflow> {
    vec![
        Workflow {
            name: "chain5",
            steps: vec![("s1", 0.2), ("s2", 0.2), ("s3", 0.2), ("s4", 0.2), ("s5", 0.2)],
            definition: |p| {
                json!({"StartAt": "S1", "States": {
                    "S1": task(format!("s1-{p}"), Some("S2")), "S2": task(format!("s2-{p}"), Some("S3")),
                    "S3": task(format!("s3-{p}"), Some("S4")), "S4": task(format!("s4-{p}"), Some("S5")),
                    "S5": task(format!("s5-{p}"), None)}})
            },
            input: |_| json!({}),
        },
        Workflow {
            name: "seed001",
            steps: vec![("t3", 3.0 * scale), ("t7", 7.0 * scale), ("t5", 5.0 * scale)],
            definition: |p| {
                json!({"StartAt": "T1", "States": {
                    "T1": task(format!("t3-{p}"), Some("T2")), "T2": task(format!("t7-{p}"), Some("T3")),
                    "T3": task(format!("t5-{p}"), None)}})
            },
            input: |_| json!({}),
        },
        Workflow {
            name: "branching",
            steps: vec![("check", 0.2), ("left", 0.2), ("right", 0.2), ("done", 0.2)],
            definition: |p| {
                json!({"StartAt": "Check", "States": {
                    "Check": task(format!("check-{p}"), Some("Which")),
                    "Which": {"Type": "Choice", "Choices": [
                        {"Variable": "$.path", "StringEquals": "left", "Next": "Left"}], "Default": "Right"},
                    "Left": task(format!("left-{p}"), Some("Done")),
                    "Right": task(format!("right-{p}"), Some("Done")),
                    "Done": task(format!("done-{p}"), None)}})
            },
            // Four in five executions go left.
            input: |i| json!({"path": if i % 5 == 4 { "right" } else { "left" }}),
        },
    ]
}

/// One measured execution.
#[derive(Default, Clone)]
struct Sample {
    e2e_ms: f64,
    cold_starts: f64,
    /// Σ billed + init (+ held) milliseconds.
    billed_ms: f64,
    /// What no pre-warmer can beat: the steps' run times, one cold start (the first step's), and 2 ms per
    /// step of platform overhead.
    bound_ms: f64,
}

struct Client<'a> {
    server: &'a BenchServer,
}

impl Client<'_> {
    /// Changes the functions' configuration so their next invocations start cold.
    fn make_cold(&self, functions: &[(String, f64)], round: usize, init_s: f64) -> Result<()> {
        for (name, run_s) in functions {
            let env = json!({"RUN_S": run_s.to_string(), "INIT_S": init_s.to_string(), "ROUND": round.to_string()});
            self.server.send(
                reqwest::Method::PATCH,
                &format!("/v1/functions/{name}"),
                Some(json!({"environment": env})),
            )?;
        }
        for (name, _) in functions {
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.server.send(reqwest::Method::GET, &format!("/v1/functions/{name}"), None)?["state"] == "UPDATING"
            {
                if Instant::now() > deadline {
                    bail!("function {name} is still updating after 30 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    fn execute(&self, workflow: &str, policy: &str, input: &Value) -> Result<Sample> {
        let started = Instant::now();
        let e = self.server.send(
            reqwest::Method::POST,
            &format!("/v1/workflows/{workflow}/run"),
            Some(json!({"input": input, "prewarm": policy})),
        )?;
        let e2e_ms = started.elapsed().as_secs_f64() * 1000.0;
        if e["status"] != "SUCCEEDED" {
            bail!("{workflow} ({policy}) ended {}: {}", e["status"], e["cause"]);
        }
        let id = e["id"].as_str().unwrap_or_default();
        let t = self.server.send(reqwest::Method::GET, &format!("/v1/executions/{id}/timeline"), None)?;
        let steps = t["steps"].as_array().cloned().unwrap_or_default();
        let phase_ms = |step: &Value, phases: &[&str]| -> f64 {
            step["segments"]
                .as_array()
                .map(|segs| {
                    segs.iter()
                        .filter(|s| phases.contains(&s["phase"].as_str().unwrap_or_default()))
                        .map(|s| s["end_ms"].as_f64().unwrap_or(0.0) - s["start_ms"].as_f64().unwrap_or(0.0))
                        .sum()
                })
                .unwrap_or(0.0)
        };
        let tasks: Vec<&Value> = steps.iter().filter(|s| s["type"] == "Task").collect();
        let running: f64 = tasks.iter().map(|s| phase_ms(s, &["running"])).sum();
        let first_cold = tasks.first().map_or(0.0, |s| phase_ms(s, &["sandbox", "init"]));
        let bill = &t["bill"];
        Ok(Sample {
            e2e_ms,
            cold_starts: t["cold_starts"].as_f64().unwrap_or(0.0),
            billed_ms: ["billed_ms", "init_ms", "held_ms"].iter().map(|k| bill[k].as_f64().unwrap_or(0.0)).sum(),
            bound_ms: running + first_cold + 2.0 * tasks.len() as f64,
        })
    }
}

/// Runs every workflow under every policy, interleaved, and prints one table per workflow.
pub fn run(args: &PrewarmArgs) -> Result<Value> {
    let valid = args.prewarm_rounds > 0 && args.prewarm_scale > 0.0 && args.prewarm_init >= 0.0;
    if !valid || !args.prewarm_scale.is_finite() || !args.prewarm_init.is_finite() {
        bail!("--prewarm-rounds must be at least 1, --prewarm-scale above 0 and --prewarm-init 0 or more");
    }
    let server = start_server("prewarm", &[])?;
    let client = Client { server: &server };
    let b64 = b64(&zip_with("app.py", 0o644, SOURCE.as_bytes())?);
    let flows = workflows(args.prewarm_scale);
    // Per workflow and policy: its own copy of the functions, so pools and statistics are its own.
    let mut copies: Vec<Vec<Vec<(String, f64)>>> = Vec::new();
    for flow in &flows {
        let mut per_policy = Vec::new();
        for p in POLICIES {
            let mut functions = Vec::new();
            for (f, run_s) in &flow.steps {
                let name = format!("{f}-{p}");
                let env = json!({"RUN_S": run_s.to_string(), "INIT_S": args.prewarm_init.to_string()});
                client.server.send(
                    reqwest::Method::POST,
                    "/v1/functions",
                    Some(json!({"name": name, "runtime": "python3.12", "handler": "app.handler", "timeout_s": 120,
                                "environment": env, "code_base64": b64})),
                )?;
                functions.push((name, *run_s));
            }
            let definition = (flow.definition)(p);
            client.server.send(
                reqwest::Method::POST,
                "/v1/workflows",
                Some(json!({"name": format!("{}-{p}", flow.name), "definition": definition})),
            )?;
            per_policy.push(functions);
        }
        copies.push(per_policy);
    }
    eprintln!(
        "prewarm: {} workflows × {} policies, {} measured rounds (+1 to learn), sandbox {}",
        flows.len(),
        POLICIES.len(),
        args.prewarm_rounds,
        server.sandbox
    );
    let mut samples = vec![vec![Vec::<Sample>::new(); POLICIES.len()]; flows.len()];
    for round in 0..=args.prewarm_rounds {
        for (wi, flow) in flows.iter().enumerate() {
            for (pi, p) in POLICIES.iter().enumerate() {
                client.make_cold(&copies[wi][pi], round, args.prewarm_init)?;
                let s = client.execute(&format!("{}-{p}", flow.name), p, &(flow.input)(round))?;
                eprintln!(
                    "round {round} {:<10} {p:<5} {:>8.0} ms  cold {}  billed {:>6.0} ms{}",
                    flow.name,
                    s.e2e_ms,
                    s.cold_starts,
                    s.billed_ms,
                    if round == 0 { "  (learning)" } else { "" }
                );
                if round > 0 {
                    samples[wi][pi].push(s);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (wi, flow) in flows.iter().enumerate() {
        let median = |pi: usize, f: fn(&Sample) -> f64| spread(&mut samples[wi][pi].iter().map(f).collect::<Vec<_>>());
        let (off_time, _, _) = median(0, |s| s.e2e_ms);
        let (off_bill, _, _) = median(0, |s| s.billed_ms);
        let mut t = table(&[
            "policy",
            "end to end ms p50 [min-max]",
            "vs off",
            "cold starts",
            "billed+init ms",
            "bill vs off",
            "bound ms (Σrun + 1 cold + 2 ms/step)",
            "p50 / bound",
        ]);
        for (pi, p) in POLICIES.iter().enumerate() {
            let (time, lo, hi) = median(pi, |s| s.e2e_ms);
            let (cold, _, _) = median(pi, |s| s.cold_starts);
            let (bill, _, _) = median(pi, |s| s.billed_ms);
            let (bound, _, _) = median(pi, |s| s.bound_ms);
            t.add_row(vec![
                p.to_string(),
                format!("{time:.0} [{lo:.0}-{hi:.0}]"),
                format!("{:.2}×", time / off_time),
                format!("{cold:.0}"),
                format!("{bill:.0}"),
                format!("{:.2}×", bill / off_bill),
                format!("{bound:.0}"),
                format!("{:.2}", time / bound),
            ]);
            out.push(
                json!({"workflow": flow.name, "policy": p, "e2e_p50_ms": time, "e2e_min_ms": lo, "e2e_max_ms": hi,
                "cold_starts_p50": cold, "billed_init_ms_p50": bill, "bound_ms_p50": bound,
                "time_vs_off": time / off_time, "bill_vs_off": bill / off_bill}),
            );
        }
        println!("{} ({} steps)\n{t}", flow.name, flow.steps.len());
    }
    Ok(Value::Array(out))
}
