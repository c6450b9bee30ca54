//! `stoke-bench --scenarios tune`: the memory optimizer on three functions whose right size differs — a
//! CPU-bound one (faster with memory until one vCPU), a memory-bound one (a 300 MB working set loaded at
//! init) and an I/O-bound one (flat) — with the sizes it tested, the invocations and the wall time it took.
//! The functions are those of the tuner's tests (`tests/functions/tune`).
//!
//! CPU follows memory only when instances' CPU is capped (`--cpu-quota` on the lean sandbox), so the
//! scenario runs its server that way, and says so when the sandbox it got does not cap CPU.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::harness::{b64, start_server, table, zip_with};

#[derive(Debug, clap::Args)]
pub struct TuneArgs {
    /// Warm invocations per memory size in the tune scenario.
    #[arg(long, default_value_t = stoke_core::tune::DEFAULT_RUNS, value_name = "N")]
    tune_runs: u32,
}

struct Case {
    name: &'static str,
    kind: &'static str,
    source: &'static str,
    memory_mb: u32,
    payload: Value,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "crunch",
            kind: "CPU-bound (~150 ms at 1 vCPU)",
            source: include_str!("../../../tests/functions/tune/crunch.py"),
            memory_mb: 1024,
            payload: json!({"n": 2_000_000}),
        },
        Case {
            name: "model",
            kind: "memory-bound (300 MB at init)",
            source: include_str!("../../../tests/functions/tune/model.py"),
            memory_mb: 3072,
            payload: json!({"i": 7}),
        },
        Case {
            name: "waiter",
            kind: "I/O-bound (waits 200 ms)",
            source: include_str!("../../../tests/functions/tune/waiter.py"),
            memory_mb: 1024,
            payload: json!({}),
        },
    ]
}

pub fn run(args: &TuneArgs) -> Result<Value> {
    // The default sandbox (lean as root); --cpu-quota caps lean instances' CPU at their share.
    let server = start_server("tune", &["--cpu-quota"])?;
    let mut cpu_capped = true;
    let mut t = table(&[
        "function",
        "kind",
        "from",
        "recommended",
        "sizes tested",
        "skipped",
        "invocations",
        "wall s",
        "summary",
    ]);
    let mut rows = Vec::new();
    for c in cases() {
        let zip = zip_with("app.py", 0o644, c.source.as_bytes())?;
        server.send(
            reqwest::Method::POST,
            "/v1/functions",
            Some(json!({"name": c.name, "runtime": "python3.12", "handler": "app.handler", "memory_mb": c.memory_mb,
                "timeout_s": 60, "code_base64": b64(&zip)})),
        )?;
        let started = Instant::now();
        let view = server.send(
            reqwest::Method::POST,
            &format!("/v1/functions/{}/tune", c.name),
            Some(json!({"payload": c.payload, "runs": args.tune_runs})),
        )?;
        let id = view["id"].as_str().unwrap_or_default().to_string();
        let done = loop {
            let v = server.send(reqwest::Method::GET, &format!("/v1/tunes/{id}"), None)?;
            if v["state"] != "running" {
                break v;
            }
            if started.elapsed() > Duration::from_secs(1800) {
                bail!("the tune of {} did not finish in 30 minutes", c.name);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let wall_s = started.elapsed().as_secs_f64();
        cpu_capped &= done["cpu_follows_memory"] == true;
        if done["state"] != "succeeded" {
            bail!("the tune of {} failed: {}", c.name, done["error"]);
        }
        let list = |v: &Value| -> String {
            v.as_array().map_or(String::new(), |a| a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","))
        };
        let tested: Vec<Value> = done["sizes"].as_array().cloned().unwrap_or_default();
        let tested_mb = list(&Value::Array(tested.iter().map(|s| s["memory_mb"].clone()).collect()));
        let rec = &done["recommendation"];
        t.add_row(vec![
            c.name.to_string(),
            c.kind.to_string(),
            c.memory_mb.to_string(),
            rec["memory_mb"].to_string(),
            tested_mb.clone(),
            list(&done["skipped"]),
            done["progress"]["done"].to_string(),
            format!("{wall_s:.1}"),
            rec["summary"].as_str().unwrap_or_default().to_string(),
        ]);
        rows.push(json!({"function": c.name, "kind": c.kind, "from_mb": c.memory_mb,
            "recommended_mb": rec["memory_mb"], "tested_mb": tested_mb, "skipped": done["skipped"],
            "invocations": done["progress"]["done"], "wall_s": wall_s, "summary": rec["summary"], "sizes": done["sizes"]}));
    }
    println!(
        "\nstoke tune: smallest-not-slower (5 %), {} warm runs per size, sandbox {}",
        args.tune_runs, server.sandbox
    );
    println!("{t}");
    if !cpu_capped {
        println!("note: CPU is not capped by memory on this sandbox, so the CPU-bound function looks flat");
    }
    Ok(json!({"sandbox": server.sandbox, "runs": args.tune_runs, "functions": rows}))
}
