//! The core scenario (`--scenarios core`): warm invocations of Rust, Python and Node no-ops next to the
//! floor and peers in interleaved rounds, the workflow engine's overhead, and cold starts per sandbox.
//! Reports medians over rounds (with min and max) and ratios to the floor.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use stoke_core::num::saturate_usize;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::harness::{
    add_tree, b64, closed_loop, descendants_cpu_ns, isolating_sandboxes, percentile, process_cpu_ns, python_site,
    spread, start_server, table, zip_with, BenchServer,
};
use crate::peers::{in_process_ns, peers, start_floor};

#[derive(Debug, clap::Args)]
pub struct CoreArgs {
    /// Sandbox of the core scenario's main server (its warm rows), e.g. `process` to compare with the
    /// default (with `process`, the cold-start table then has only the process sandbox).
    #[arg(long, value_name = "SANDBOX", value_parser = ["process", "lean", "oci"])]
    sandbox: Option<String>,
    /// Concurrency levels (closed loop: each client sends its next request when the last one returns).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    concurrency: Vec<usize>,
    /// Cold starts measured per sandbox and runtime (each on a new function), interleaved across sandboxes.
    #[arg(long, default_value_t = 15, value_name = "N")]
    cold: usize,
    /// Workflow executions measured per kind (sync runs, interleaved): a 20-Pass chain, one Pass, one Task,
    /// and the Task's function invoked directly.
    #[arg(long, default_value_t = 30, value_name = "N")]
    workflows: usize,
    /// A `bootstrap` speaking the Runtime API over a raw socket with no runtime library (scripts/bench builds
    /// tests/functions/raw-noop): the warm rows then show what the queue and dispatch path sustains with the
    /// function's own work removed.
    #[arg(long, value_name = "FILE")]
    pub(crate) raw_bootstrap: Option<PathBuf>,
    /// Leave `cargo lambda watch` out of the warm rows (it is found on PATH as `cargo-lambda`, which
    /// scripts/bench installs from PyPI).
    #[arg(long)]
    no_cargo_lambda: bool,
}

/// One round of one warm scenario at one concurrency.
#[derive(Debug, Clone, Copy)]
struct Round {
    throughput: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    errors: usize,
    /// The platform process's CPU time per completed invocation (stoke's server, the emulator).
    platform_cpu_us: Option<f64>,
    /// Its descendants' CPU time per completed invocation: the function's own processes.
    function_cpu_us: Option<f64>,
}

/// The cold starts of one function on one sandbox: end-to-end and init milliseconds per start.
struct ColdRow {
    sandbox: String,
    function: String,
    total_ms: Vec<f64>,
    init_ms: Vec<f64>,
}

/// Cold starts: for each round, a new function per (sandbox, runtime), invoked once, sandboxes interleaved.
/// Each server comes with the label its rows carry.
fn cold_starts(
    servers: &[(&BenchServer, String)],
    functions: &[(&str, serde_json::Value)],
    n: usize,
) -> Result<Vec<ColdRow>> {
    let http = reqwest::blocking::Client::new();
    let mut rows = Vec::new();
    for (_, label) in servers {
        for (function, _) in functions {
            rows.push(ColdRow {
                sandbox: label.clone(),
                function: function.to_string(),
                total_ms: Vec::new(),
                init_ms: Vec::new(),
            });
        }
    }
    for i in 0..n {
        for (si, (server, _)) in servers.iter().enumerate() {
            for (fi, (runtime, body)) in functions.iter().enumerate() {
                let name = format!("cold-{runtime}-{i}");
                at_rest(&http, server);
                let mut body = body.clone();
                body["name"] = json!(name);
                // Past an emulated VM's cold start, which counts against the timeout.
                body["timeout_s"] = json!(120);
                let r = http
                    .post(format!("{}/v1/functions", server.endpoint))
                    .bearer_auth(&server.key)
                    .json(&body)
                    .send()?;
                if !r.status().is_success() {
                    bail!("cannot deploy {name}: {}", r.text()?);
                }
                let started = Instant::now();
                let r = http
                    .post(format!("{}/v1/functions/{name}/invoke", server.endpoint))
                    .bearer_auth(&server.key)
                    .body("{}")
                    .send()?;
                let total = started.elapsed().as_secs_f64() * 1000.0;
                let init = r.headers().get("x-stoke-init-duration-ms").and_then(|v| v.to_str().ok()?.parse().ok());
                if !r.status().is_success() || r.headers().contains_key("x-stoke-function-error") {
                    bail!("cold invoke of {name} on {} failed: {}", server.sandbox, r.text()?);
                }
                let row = &mut rows[si * functions.len() + fi];
                row.total_ms.push(total);
                row.init_ms.push(init.unwrap_or(f64::NAN));
                // Free the node's memory budget for the next start.
                let _ = http.delete(format!("{}/v1/functions/{name}", server.endpoint)).bearer_auth(&server.key).send();
            }
        }
    }
    Ok(rows)
}

/// Has a VM of each shape `functions` need boot once on `server`, and waits until their snapshots are
/// saved: the cold starts measured are then restores, as they are on a node past its first minute.
fn prime_snapshots(server: &BenchServer, label: &str, functions: &[(&str, serde_json::Value)]) -> Result<()> {
    let mut shapes: Vec<i64> =
        functions.iter().map(|(_, f)| f["ephemeral_storage_mb"].as_i64().unwrap_or(512)).collect();
    shapes.sort_unstable();
    shapes.dedup();
    for (function, body) in functions {
        let name = format!("prime-{function}");
        let mut body = body.clone();
        body["name"] = json!(name);
        body["timeout_s"] = json!(120);
        server.send(reqwest::Method::POST, "/v1/functions", Some(body))?;
        server.send(reqwest::Method::POST, &format!("/v1/functions/{name}/invoke"), Some(json!({})))?;
        server.send(reqwest::Method::DELETE, &format!("/v1/functions/{name}"), None)?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while server.vm_snapshots()? < shapes.len() {
        if Instant::now() > deadline {
            bail!("{label}: {} of {} VM snapshots saved after 5 minutes", server.vm_snapshots()?, shapes.len());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("cold starts: {label} has its {} snapshots", shapes.len());
    Ok(())
}

/// Waits until the server's generic instances are back (up to a second), then as long again as a Python
/// runtime takes to start in one (a generic instance counts once set up, before its pre-started runtime is
/// up), so each cold start meets a node at rest rather than one still replacing what the last start took.
fn at_rest(http: &reqwest::blocking::Client, server: &BenchServer) {
    let deadline = Instant::now() + Duration::from_secs(1);
    let settle = || std::thread::sleep(Duration::from_millis(300));
    while Instant::now() < deadline {
        let ready = http
            .get(format!("{}/v1/instances", server.endpoint))
            .bearer_auth(&server.key)
            .send()
            .and_then(|r| r.json::<serde_json::Value>())
            .map(|v| v["generic"].as_object().is_none_or(|kinds| kinds.values().all(|n| n.as_u64() >= Some(1))));
        if ready.unwrap_or(true) {
            return settle();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

const NUMPY_APP: &[u8] = b"import numpy\ndef handler(e, c):\n    return int(numpy.arange(10).sum())\n";

/// A layer of the numpy installed for python3 (`python/numpy`, `python/numpy.libs`).
fn numpy_layer() -> Result<Vec<u8>> {
    let site = python_site(&["numpy"], "numpy is not installed for python3 (scripts/bench installs it)")?;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for dir in ["numpy", "numpy.libs"] {
        if site.join(dir).is_dir() {
            add_tree(&mut zip, &site.join(dir), &format!("python/{dir}"))?;
        }
    }
    Ok(zip.finish()?.into_inner())
}

/// Starts `server`'s zygote for the numpy layer (a first instance of a function with it starts the usual
/// way) and waits until it is ready, so the measured cold starts are forked.
fn warm_zygote(server: &BenchServer, function: &serde_json::Value) -> Result<()> {
    let mut body = function.clone();
    body["name"] = json!("zygote-warmer");
    server.send(reqwest::Method::POST, "/v1/functions", Some(body))?;
    server.send(reqwest::Method::POST, "/v1/functions/zygote-warmer/invoke", Some(json!({})))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.send(reqwest::Method::GET, "/v1/instances", None)?["zygotes"].as_u64() < Some(1) {
        if Instant::now() > deadline {
            bail!("the numpy zygote was not ready after 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    server.send(reqwest::Method::DELETE, "/v1/functions/zygote-warmer", None)?;
    Ok(())
}

fn cold_table(rows: &mut [ColdRow]) -> (comfy_table::Table, Vec<serde_json::Value>) {
    let mut t = table(&["sandbox", "function", "cold invoke p50 ms [min-max]", "init p50 ms", "p50 vs process"]);
    let mut json_rows = Vec::new();
    // The process sandbox's median per function: what the other sandboxes are compared with.
    let baseline: Vec<(String, f64)> = rows
        .iter_mut()
        .filter(|r| r.sandbox == "process")
        .map(|r| (r.function.clone(), spread(&mut r.total_ms).0))
        .collect();
    for r in rows.iter_mut() {
        let (p, lo, hi) = spread(&mut r.total_ms);
        let init = spread(&mut r.init_ms).0;
        let base = baseline.iter().find(|(f, _)| *f == r.function).map(|(_, b)| *b);
        let ratio = base.map_or("—".to_string(), |b| format!("{:.2}×", p / b));
        t.add_row(vec![
            r.sandbox.clone(),
            r.function.clone(),
            format!("{p:.1} [{lo:.1}-{hi:.1}]"),
            format!("{init:.1}"),
            ratio,
        ]);
        json_rows.push(json!({"sandbox": r.sandbox, "function": r.function, "cold_p50_ms": p, "cold_min_ms": lo,
            "cold_max_ms": hi, "init_p50_ms": init}));
    }
    (t, json_rows)
}

/// Warm invokes against the floor and peers, the workflow engine's overhead and cold starts per sandbox.
/// `bootstrap` is the lambda_runtime no-op's binary, read from `bootstrap_path`.
pub fn run(
    args: &CoreArgs,
    bootstrap: &[u8],
    bootstrap_path: &Path,
    rounds: usize,
    seconds: f64,
) -> Result<serde_json::Value> {
    let main = match &args.sandbox {
        Some(sandbox) => start_server("main", &["--sandbox", sandbox])?,
        None => start_server("main", &[])?,
    };
    let (endpoint, key) = (main.endpoint.clone(), main.key.clone());
    let http = reqwest::blocking::Client::new();
    for (name, body) in [
        (
            "rust-noop",
            json!({"name": "rust-noop", "runtime": "provided.al2023", "code_base64": b64(&zip_with("bootstrap", 0o755, bootstrap)?)}),
        ),
        (
            "python-noop",
            json!({"name": "python-noop", "runtime": "python3.12", "handler": "app.handler",
            "code_base64": b64(&zip_with("app.py", 0o644, b"def handler(e, c):\n    return None\n")?)}),
        ),
        (
            "nodejs-noop",
            json!({"name": "nodejs-noop", "runtime": "nodejs20.x", "handler": "index.handler",
            "code_base64": b64(&zip_with("index.js", 0o644, b"exports.handler = async () => null;\n")?)}),
        ),
    ] {
        let r = http.post(format!("{endpoint}/v1/functions")).bearer_auth(&key).json(&body).send()?;
        if !r.status().is_success() {
            bail!("cannot deploy {name}: {}", r.text()?);
        }
    }
    // The same Rust function behind a function URL, to compare the HTTP trigger path with the invoke API.
    let r = http
        .post(format!("{endpoint}/v1/urls"))
        .bearer_auth(&key)
        .json(&json!({"function": "rust-noop", "auth": "key"}))
        .send()?;
    if !r.status().is_success() {
        bail!("cannot create the function URL: {}", r.text()?);
    }
    let function_url = r.json::<serde_json::Value>()?["url"].as_str().unwrap_or_default().to_string();
    // The same no-op over a raw Runtime API client: the platform's queue and dispatch with the function's
    // own work taken away.
    let mut warm = vec!["rust-noop", "python-noop", "nodejs-noop"];
    if let Some(raw) = &args.raw_bootstrap {
        let raw =
            std::fs::read(raw).with_context(|| format!("cannot read {} (scripts/bench builds it)", raw.display()))?;
        let body = json!({"name": "raw-noop", "runtime": "provided.al2023", "code_base64": b64(&zip_with("bootstrap", 0o755, &raw)?)});
        main.send(reqwest::Method::POST, "/v1/functions", Some(body))?;
        warm.push("raw-noop");
    }
    let floor = start_floor()?;
    let peers = peers(bootstrap_path, !args.no_cargo_lambda)?;
    let invoke_url = |f: &str| format!("{endpoint}/v1/functions/{f}/invoke");
    // Warm every pool to the highest concurrency first, so rounds measure warm invocations.
    let max_c = args.concurrency.iter().copied().max().unwrap_or(1);
    for f in &warm {
        closed_loop(&invoke_url(f), Some(&key), br#"{"noop":1}"#, max_c, 1.0);
    }
    // Name, URL, API key, and the process whose CPU time per invocation is the platform's cost.
    let server = Some(main.pid());
    let mut scenarios: Vec<(String, String, Option<&str>, Option<u32>)> = vec![
        ("floor: loopback HTTP hop".into(), floor.clone(), None, None),
        ("stoke: rust lambda_runtime no-op".into(), invoke_url("rust-noop"), Some(key.as_str()), server),
        ("stoke: rust no-op via function URL".into(), function_url.clone(), Some(key.as_str()), server),
        ("stoke: python no-op".into(), invoke_url("python-noop"), Some(key.as_str()), server),
        ("stoke: nodejs no-op".into(), invoke_url("nodejs-noop"), Some(key.as_str()), server),
    ];
    if warm.contains(&"raw-noop") {
        scenarios.push(("stoke: raw Runtime API no-op".into(), invoke_url("raw-noop"), Some(key.as_str()), server));
    }
    scenarios.extend(peers.rows.iter().map(|(name, url, pid)| (name.clone(), url.clone(), None, *pid)));
    // results[scenario][concurrency] = per-round (throughput, p50, p99, p999, errors, server CPU µs per invocation)
    let mut results = vec![vec![Vec::<Round>::new(); args.concurrency.len()]; scenarios.len()];
    for round in 0..rounds {
        for (ci, &c) in args.concurrency.iter().enumerate() {
            for (si, (name, url, key, platform)) in scenarios.iter().enumerate() {
                // CPU time is steadier than throughput on a shared machine: what the platform's process
                // (stoke's server, the emulator) spent per invocation, the function's own process aside.
                let cpu_before = platform.and_then(process_cpu_ns);
                let function_before = platform.map(descendants_cpu_ns);
                let mut run = closed_loop(url, *key, br#"{"noop":1}"#, c, seconds);
                let cpu_ns = cpu_before.and_then(|b| Some(process_cpu_ns((*platform)?)?.saturating_sub(b)));
                let function_ns = function_before.zip(*platform).map(|(b, p)| descendants_cpu_ns(p).saturating_sub(b));
                run.latencies_us.sort_unstable();
                let tput = run.latencies_us.len() as f64 / run.elapsed.as_secs_f64();
                let l = &run.latencies_us;
                let per_invocation =
                    |ns: Option<u64>| ns.filter(|_| !l.is_empty()).map(|ns| ns as f64 / 1000.0 / l.len() as f64);
                let cpu_us = per_invocation(cpu_ns);
                results[si][ci].push(Round {
                    throughput: tput,
                    p50: percentile(l, 0.5),
                    p99: percentile(l, 0.99),
                    p999: percentile(l, 0.999),
                    errors: run.errors,
                    platform_cpu_us: cpu_us,
                    function_cpu_us: per_invocation(function_ns),
                });
                eprintln!("round {} c={c:<3} {name:<36} {tput:>9.0}/s p50 {:>7.0} µs", round + 1, percentile(l, 0.5));
            }
        }
    }
    let mut t = table(&[
        "scenario",
        "conc",
        "req/s (median [min-max])",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "p50 − floor",
        "platform CPU µs/inv",
        "function CPU µs/inv",
        "errors",
    ]);
    let mut json_rows = Vec::new();
    for (ci, &c) in args.concurrency.iter().enumerate() {
        let floor_p50 = spread(&mut results[0][ci].iter().map(|r| r.p50).collect::<Vec<f64>>()).0;
        for (si, (name, _, _, _)) in scenarios.iter().enumerate() {
            let rows = &results[si][ci];
            let (tput, tmin, tmax) = spread(&mut rows.iter().map(|r| r.throughput).collect::<Vec<f64>>());
            let (p50, _, _) = spread(&mut rows.iter().map(|r| r.p50).collect::<Vec<f64>>());
            let (p99, _, _) = spread(&mut rows.iter().map(|r| r.p99).collect::<Vec<f64>>());
            let (p999, _, _) = spread(&mut rows.iter().map(|r| r.p999).collect::<Vec<f64>>());
            let mut cpu: Vec<f64> = rows.iter().filter_map(|r| r.platform_cpu_us).collect();
            let platform_cpu_us = (!cpu.is_empty()).then(|| spread(&mut cpu).0);
            let mut own: Vec<f64> = rows.iter().filter_map(|r| r.function_cpu_us).collect();
            let function_cpu_us = (!own.is_empty()).then(|| spread(&mut own).0);
            let errors: usize = rows.iter().map(|r| r.errors).sum();
            let overhead = if si == 0 { "—".to_string() } else { format!("{:+.0} µs", p50 - floor_p50) };
            t.add_row(vec![
                name.to_string(),
                c.to_string(),
                format!("{tput:.0} [{tmin:.0}-{tmax:.0}]"),
                format!("{p50:.0}"),
                format!("{p99:.0}"),
                format!("{p999:.0}"),
                overhead,
                platform_cpu_us.map_or_else(|| "—".to_string(), |us| format!("{us:.1}")),
                function_cpu_us.map_or_else(|| "—".to_string(), |us| format!("{us:.1}")),
                errors.to_string(),
            ]);
            json_rows.push(json!({"scenario": name, "concurrency": c, "throughput_median": tput, "throughput_min": tmin,
                "throughput_max": tmax, "p50_us": p50, "p99_us": p99, "p999_us": p999, "p50_minus_floor_us": p50 - floor_p50,
                "platform_cpu_us_per_invocation": platform_cpu_us, "function_cpu_us_per_invocation": function_cpu_us,
                "errors": errors}));
        }
    }
    println!("{t}");
    let in_process_ns = in_process_ns(seconds.min(1.0));
    println!(
        "floor: the no-op handler's work (parse the event, call, serialise the answer) in-process: {in_process_ns:.0} ns per call"
    );

    let workflow_rows =
        if args.workflows > 0 { workflow_bench(&http, &endpoint, &key, args.workflows)? } else { vec![] };

    let mut cold_rows = Vec::new();
    if args.cold > 0 {
        // The main server runs the default sandbox (lean as root, with generic instances and zygotes);
        // others run plain processes, lean with neither (every cold start sets an instance up), lean with
        // generic instances only, and — with root — OCI bundles, one server per OCI runtime installed.
        let process = start_server("process", &["--sandbox", "process"])?;
        let mut servers = vec![(&process, "process".to_string())];
        let mut lean = Vec::new();
        let mut oci = Vec::new();
        if main.sandbox != process.sandbox {
            lean.push((start_server("lean-bare", &["--generic", "none", "--zygotes", "0"])?, "lean".to_string()));
            lean.push((start_server("lean-generic", &["--zygotes", "0"])?, "lean + generic".to_string()));
            // /tmp as a tmpfs, as before ephemeral storage moved to disks of their own: what the disk costs.
            lean.push((
                start_server("lean-generic-memtmp", &["--zygotes", "0", "--ephemeral-storage", "memory"])?,
                "lean + generic, /tmp in memory".to_string(),
            ));
            for (short, label, flags) in isolating_sandboxes(true) {
                oci.push((start_server(short, &flags)?, label));
            }
        }
        servers.extend(lean.iter().map(|(s, label)| (s, label.clone())));
        if !lean.is_empty() {
            servers.push((&main, "lean + generic + zygotes".to_string()));
        }
        for (server, label) in &oci {
            servers.push((server, label.clone()));
        }
        let mut functions = vec![
            (
                "rust-noop",
                json!({"runtime": "provided.al2023", "code_base64": b64(&zip_with("bootstrap", 0o755, bootstrap)?)}),
            ),
            (
                "python-noop",
                json!({"runtime": "python3.12", "handler": "app.handler",
                "code_base64": b64(&zip_with("app.py", 0o644, b"def handler(e, c):\n    return None\n")?)}),
            ),
            // A /tmp size other than the default: its first disk is made on the cold start's path, later
            // ones ahead of it.
            (
                "python-noop-2g-tmp",
                json!({"runtime": "python3.12", "handler": "app.handler", "ephemeral_storage_mb": 2048,
                "code_base64": b64(&zip_with("app.py", 0o644, b"def handler(e, c):\n    return None\n")?)}),
            ),
        ];
        // A Python function importing a heavy library (numpy) from a layer: where zygotes pay.
        match numpy_layer() {
            Ok(layer) => {
                let body = json!({"code_base64": b64(&layer), "description": "numpy for the cold-start benchmark"});
                for (server, _) in &servers {
                    server.send(reqwest::Method::POST, "/v1/layers/numpy/versions", Some(body.clone()))?;
                }
                let numpy = json!({"runtime": "python3.12", "handler": "app.handler", "layers": ["numpy:1"],
                    "code_base64": b64(&zip_with("app.py", 0o644, NUMPY_APP)?)});
                if !lean.is_empty() {
                    warm_zygote(&main, &numpy)?;
                }
                functions.push(("python-numpy-layer", numpy));
            }
            Err(e) => eprintln!("cold starts: no numpy function ({e:#})"),
        }
        for (server, label) in oci.iter().filter(|(_, l)| l.starts_with("vm + snapshot")) {
            prime_snapshots(server, label, &functions)?;
        }
        eprintln!("cold starts: {} per sandbox and function", args.cold);
        let mut rows = cold_starts(&servers, &functions, args.cold)?;
        let (t, json) = cold_table(&mut rows);
        println!("{t}");
        cold_rows = json;
    }
    Ok(
        json!({"rounds": rounds, "seconds": seconds, "rows": json_rows, "in_process_ns": in_process_ns, "cold": cold_rows,
              "workflows": workflow_rows}),
    )
}

/// Workflow executions end to end (`POST /v1/workflows/{name}/run`) and as the engine sees them (the
/// execution's own start-to-stop time), next to a direct invocation of the same function.
fn workflow_bench(
    http: &reqwest::blocking::Client,
    endpoint: &str,
    key: &str,
    n: usize,
) -> Result<Vec<serde_json::Value>> {
    let chain: serde_json::Map<String, serde_json::Value> = (1..=20)
        .map(|i| {
            let next = if i < 20 {
                json!({"Type": "Pass", "Next": format!("P{}", i + 1)})
            } else {
                json!({"Type": "Pass", "End": true})
            };
            (format!("P{i}"), next)
        })
        .collect();
    let workflows = [
        ("pass-chain", json!({"StartAt": "P1", "States": chain})),
        ("one-pass", json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}})),
        ("one-task", json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "rust-noop", "End": true}}})),
    ];
    for (name, definition) in &workflows {
        let r = http
            .post(format!("{endpoint}/v1/workflows"))
            .bearer_auth(key)
            .json(&json!({"name": name, "definition": definition}))
            .send()?;
        if !r.status().is_success() {
            bail!("cannot create workflow {name}: {}", r.text()?);
        }
    }
    let kinds = [
        ("rust no-op invoked directly", format!("{endpoint}/v1/functions/rust-noop/invoke")),
        ("workflow: 1 Task (rust no-op)", format!("{endpoint}/v1/workflows/one-task/run")),
        ("workflow: 1 Pass", format!("{endpoint}/v1/workflows/one-pass/run")),
        ("workflow: 20 Pass states", format!("{endpoint}/v1/workflows/pass-chain/run")),
    ];
    let mut e2e = vec![Vec::new(); kinds.len()];
    let mut engine = vec![Vec::new(); kinds.len()];
    eprintln!("workflows: {n} runs per kind");
    for _ in 0..n {
        for (i, (_, url)) in kinds.iter().enumerate() {
            let body = if i == 0 { json!({"noop": 1}) } else { json!({"input": {"noop": 1}}) };
            let t = Instant::now();
            let r = http.post(url).bearer_auth(key).json(&body).send()?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if !r.status().is_success() {
                bail!("{url}: {}", r.text()?);
            }
            if i > 0 {
                let v: serde_json::Value = r.json()?;
                if v["status"] != "SUCCEEDED" {
                    bail!("{url}: the execution ended {}", v["status"]);
                }
                engine[i].push(v["duration_ms"].as_f64().unwrap_or(0.0));
            }
            e2e[i].push(ms);
        }
    }
    let mut t =
        table(&["workflow", "end to end p50 ms [min-max]", "p90 ms", "in the engine p50 ms", "vs direct invoke"]);
    let direct = spread(&mut e2e[0].clone()).0;
    let mut rows = Vec::new();
    for (i, (name, _)) in kinds.iter().enumerate() {
        let mut sorted = e2e[i].clone();
        sorted.sort_by(f64::total_cmp);
        let p90 = sorted[saturate_usize(((sorted.len() - 1) as f64 * 0.9).round())];
        let (p50, lo, hi) = spread(&mut e2e[i]);
        let engine_p50 = if i == 0 { None } else { Some(spread(&mut engine[i]).0) };
        t.add_row(vec![
            name.to_string(),
            format!("{p50:.2} [{lo:.2}-{hi:.2}]"),
            format!("{p90:.2}"),
            engine_p50.map(|e| format!("{e:.0}")).unwrap_or_else(|| "—".into()),
            format!("{:.2}×", p50 / direct),
        ]);
        rows.push(json!({"kind": name, "p50_ms": p50, "min_ms": lo, "max_ms": hi, "p90_ms": p90, "engine_p50_ms": engine_p50}));
    }
    println!("{t}");
    Ok(rows)
}
