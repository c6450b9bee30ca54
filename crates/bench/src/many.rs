//! The `many` scenario of `stoke-bench`, seed 004's table: the same closed-loop load spread over 1, 10, 100
//! and 1,000 functions on one node, and then 1,000 active functions among 10,000 created. A platform whose
//! scheduler keeps per-function state well stays flat; one that admits instances by their configured memory
//! collapses once the functions' sizes add up to more than the node has.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::harness::{b64, percentile, process_cpu_ns, spread, start_server, table, zip_with, BenchServer, Run};
use crate::loadgen::RawClient;

#[derive(Debug, Clone, clap::Args)]
pub struct ManyArgs {
    /// Function counts the `many` scenario spreads the same load over, one row each.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,1000", value_name = "N,...")]
    pub many_functions: Vec<usize>,
    /// Closed-loop clients of the `many` scenario; each picks a function at random for every call.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub many_clients: usize,
    /// Functions created for the `many` scenario's last rows, of which the largest `--many-functions` count
    /// is active and the rest idle or evicted. 0 leaves these rows out.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub many_created: usize,
    /// Flags for the `many` scenario's server, space-separated (e.g. `--max-memory-mb 200000`), to compare a
    /// setting with the defaults.
    #[arg(long, value_name = "FLAGS", allow_hyphen_values = true)]
    pub many_server_args: Option<String>,
}

/// The no-op's two-line `bootstrap`: every function runs the same binary from the shared layer (`/opt`), so
/// 10,000 functions store 10,000 tiny archives, not 10,000 copies of the binary.
const BOOTSTRAP: &[u8] = b"#!/bin/sh\nexec /opt/noop\n";

/// What the node counted: cold starts and evictions (every reason).
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    cold_starts: u64,
    evictions: u64,
    instances: u64,
    configured_mb: u64,
}

fn counters(server: &BenchServer) -> Result<Counters> {
    let node = server.send(reqwest::Method::GET, "/v1/node", None)?;
    let status = &node["status"];
    if status.is_null() {
        bail!("/v1/node has no status: the server is older than this benchmark");
    }
    let evictions = status["evictions"].as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    Ok(Counters {
        cold_starts: status["cold_starts"].as_u64().unwrap_or(0),
        evictions,
        instances: status["instances"].as_u64().unwrap_or(0),
        configured_mb: status["configured_mb"].as_u64().unwrap_or(0),
    })
}

/// Creates functions `many-{from}` … `many-{to - 1}` on four connections at once.
fn deploy(server: &BenchServer, from: usize, to: usize, code: &str) -> Result<()> {
    crate::harness::on_threads(from..to, 4, |i| {
        let body = json!({"name": format!("many-{i}"), "runtime": "provided.al2023", "memory_mb": 128,
                          "layers": ["noop:1"], "code_base64": code});
        server.send(reqwest::Method::POST, "/v1/functions", Some(body)).map(drop)
    })
}

/// Invokes functions `many-{from}` … `many-{to - 1}` once each, eight at a time, so each has been warm once.
fn warm(server: &BenchServer, from: usize, to: usize) -> Result<()> {
    let next = AtomicUsize::new(from);
    let started = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let http = reqwest::blocking::Client::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= to {
                            return Ok(());
                        }
                        if (i - from) % 1000 == 999 {
                            eprintln!(
                                "many: {} functions invoked once after {:.0} s",
                                i + 1 - from,
                                started.elapsed().as_secs_f64()
                            );
                        }
                        let r = http
                            .post(format!("{}/v1/functions/many-{i}/invoke", server.endpoint))
                            .bearer_auth(&server.key)
                            .body("{}")
                            .timeout(Duration::from_secs(120))
                            .send()?;
                        if !r.status().is_success() || r.headers().contains_key("x-stoke-function-error") {
                            bail!("the first invocation of many-{i} failed: {}", r.text()?);
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a warming thread panicked"))?)
    })
}

/// Closed loop: `clients` threads, each on one keep-alive connection, each call to one of the first `n`
/// functions picked at random, for `seconds`.
fn spread_load(server: &BenchServer, n: usize, clients: usize, seconds: f64) -> Result<Run> {
    let paths: Vec<String> = (0..n).map(|i| format!("many-{i}/invoke")).collect();
    let base = format!("{}/v1/functions/", server.endpoint);
    crate::harness::spread_load(&[base], &server.key, &paths, clients, seconds)
}

/// One row of the table: `active` functions called, `created` existing.
struct Row {
    active: usize,
    created: usize,
    throughput: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    cold_starts: Vec<f64>,
    evictions: Vec<f64>,
    /// CPU µs per invocation: the server's, and the whole machine's (server, instances, kernel, load generator).
    server_cpu_us: Vec<f64>,
    machine_cpu_us: Vec<f64>,
    errors: usize,
}

impl Row {
    fn new(active: usize, created: usize) -> Row {
        Row {
            active,
            created,
            throughput: vec![],
            p50: vec![],
            p99: vec![],
            cold_starts: vec![],
            evictions: vec![],
            server_cpu_us: vec![],
            machine_cpu_us: vec![],
            errors: 0,
        }
    }
}

/// CPU time every core of the machine has spent busy (not idle or waiting for I/O) so far, in ns.
fn machine_busy_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = cpu.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest…: user, nice, system, irq and softirq (guest time
    // is inside user already; steal is the hypervisor's).
    let busy: u64 = [0, 1, 2, 5, 6].iter().filter_map(|i| ticks.get(*i)).sum();
    // USER_HZ is 100 on Linux.
    Some(busy * 10_000_000)
}

/// Waits until the machine is quiet — under a third of a core busy over a second, for at most two minutes —
/// after a warm-up: instances evicted meanwhile are still being torn down (namespaces, mounts, cgroups) well
/// after the eviction, and the rows would measure that.
fn wait_quiet() {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let before = machine_busy_ns();
        std::thread::sleep(Duration::from_secs(1));
        match (before, machine_busy_ns()) {
            (Some(b), Some(a)) if a.saturating_sub(b) < 330_000_000 => return,
            (None, _) | (_, None) => return,
            _ => {}
        }
    }
}

/// Runs every row once per round, in turn, after one unmeasured run over the most functions any row calls
/// (the pools settle, as a platform's would under a load that has lasted a while; what it took is printed).
fn measure(server: &BenchServer, rows: &mut [Row], clients: usize, rounds: usize, seconds: f64) -> Result<()> {
    let widest = rows.iter().map(|r| r.active).max().unwrap_or(1);
    wait_quiet();
    let before = counters(server)?;
    spread_load(server, widest, clients, seconds)?;
    let after = counters(server)?;
    eprintln!(
        "many: settling run over {widest} functions: {} cold starts, {} evictions",
        after.cold_starts - before.cold_starts,
        after.evictions - before.evictions
    );
    for round in 0..rounds {
        for row in rows.iter_mut() {
            let before = counters(server)?;
            let (server_before, machine_before) = (process_cpu_ns(server.pid()), machine_busy_ns());
            let mut run = spread_load(server, row.active, clients, seconds)?;
            let (server_after, machine_after) = (process_cpu_ns(server.pid()), machine_busy_ns());
            let after = counters(server)?;
            let per_call = |a: Option<u64>, b: Option<u64>| {
                let calls = run.latencies_us.len().max(1) as f64;
                Some(a?.saturating_sub(b?) as f64 / 1000.0 / calls)
            };
            row.server_cpu_us.extend(per_call(server_after, server_before));
            row.machine_cpu_us.extend(per_call(machine_after, machine_before));
            run.latencies_us.sort_unstable();
            let tput = run.latencies_us.len() as f64 / run.elapsed.as_secs_f64();
            let (cold, evicted) = (after.cold_starts - before.cold_starts, after.evictions - before.evictions);
            eprintln!(
                "round {} many: {} of {} functions {tput:>7.0}/s p50 {:>6.0} µs p99 {:>7.0} µs, {cold} cold starts, {evicted} evictions",
                round + 1,
                row.active,
                row.created,
                percentile(&run.latencies_us, 0.5),
                percentile(&run.latencies_us, 0.99),
            );
            row.throughput.push(tput);
            row.p50.push(percentile(&run.latencies_us, 0.5));
            row.p99.push(percentile(&run.latencies_us, 0.99));
            row.cold_starts.push(cold as f64);
            row.evictions.push(evicted as f64);
            row.errors += run.errors;
        }
    }
    Ok(())
}

fn node_line(server: &BenchServer, what: &str) -> Result<Value> {
    let c = counters(server)?;
    eprintln!(
        "many: {what}: {} live instances, {} MB configured in all, {} cold starts and {} evictions so far",
        c.instances, c.configured_mb, c.cold_starts, c.evictions
    );
    Ok(json!({"after": what, "instances": c.instances, "configured_mb": c.configured_mb,
              "cold_starts": c.cold_starts, "evictions": c.evictions}))
}

pub fn many(args: &ManyArgs, bootstrap: &[u8], rounds: usize, seconds: f64) -> Result<Value> {
    let extra: Vec<&str> = args.many_server_args.as_deref().unwrap_or("").split_whitespace().collect();
    let server = start_server("many", &extra)?;
    let active = args.many_functions.iter().copied().max().unwrap_or(1);
    let created = args.many_created.max(active);
    if args.many_functions.contains(&0) || args.many_clients == 0 {
        bail!("--many-functions and --many-clients must be at least 1");
    }
    let layer = json!({"code_base64": b64(&zip_with("noop", 0o755, bootstrap)?), "description": "the no-op"});
    server.send(reqwest::Method::POST, "/v1/layers/noop/versions", Some(layer))?;
    let code = b64(&zip_with("bootstrap", 0o755, BOOTSTRAP)?);
    let started = Instant::now();
    deploy(&server, 0, active, &code)?;
    warm(&server, 0, active)?;
    eprintln!("many: {active} functions created and invoked once in {:.0} s", started.elapsed().as_secs_f64());
    let mut nodes = vec![node_line(&server, &format!("{active} functions invoked once"))?];
    let mut first: Vec<Row> = args.many_functions.iter().map(|&n| Row::new(n, active)).collect();
    measure(&server, &mut first, args.many_clients, rounds, seconds)?;
    nodes.push(node_line(&server, &format!("the rounds over 1 … {active} functions"))?);
    let mut second = Vec::new();
    if args.many_created > active {
        let started = Instant::now();
        deploy(&server, active, created, &code)?;
        warm(&server, active, created)?;
        eprintln!(
            "many: {} more functions created and invoked once in {:.0} s",
            created - active,
            started.elapsed().as_secs_f64()
        );
        nodes.push(node_line(&server, &format!("{created} functions invoked once"))?);
        // The active functions were the least recently used while the others were warmed: invoke each once
        // more, as they were before the first rows, so the rows measure the active set warm among the rest.
        warm(&server, 0, active)?;
        nodes.push(node_line(&server, &format!("the {active} active functions invoked once more"))?);
        second = vec![Row::new(1, created), Row::new(active, created)];
        measure(&server, &mut second, args.many_clients, rounds, seconds)?;
        nodes.push(node_line(&server, &format!("the rounds over 1 and {active} of {created} functions"))?);
    }
    let mut t = table(&[
        "functions called",
        "created",
        "invocations/s [min-max]",
        "vs 1 function",
        "p50 µs",
        "p99 µs",
        "p99 vs 1 function",
        "cold starts / run",
        "evictions / run",
        "server CPU µs/inv",
        "machine CPU µs/inv",
        "errors",
    ]);
    let mut out = Vec::new();
    for rows in [&mut first, &mut second] {
        let Some(one) = rows.iter().position(|r| r.active == 1) else {
            // Without a one-function row there is nothing to compare with: ratios are left out.
            for r in rows.iter_mut() {
                add_row(&mut t, &mut out, r, None, args.many_clients, seconds);
            }
            continue;
        };
        let base = (spread(&mut rows[one].throughput.clone()).0, spread(&mut rows[one].p99.clone()).0);
        for r in rows.iter_mut() {
            add_row(&mut t, &mut out, r, Some(base), args.many_clients, seconds);
        }
    }
    println!(
        "many functions, one node ({} sandbox, {} clients, closed loop, {rounds} rounds of {seconds} s, medians):\n{t}",
        server.sandbox, args.many_clients
    );
    Ok(json!({"clients": args.many_clients, "rounds": rounds, "seconds": seconds, "sandbox": server.sandbox,
              "server_args": extra, "rows": out, "node": nodes}))
}

fn add_row(
    t: &mut comfy_table::Table,
    out: &mut Vec<Value>,
    r: &mut Row,
    base: Option<(f64, f64)>,
    clients: usize,
    seconds: f64,
) {
    let (tput, lo, hi) = spread(&mut r.throughput);
    let p50 = spread(&mut r.p50).0;
    let p99 = spread(&mut r.p99).0;
    let cold = spread(&mut r.cold_starts).0;
    let evicted = spread(&mut r.evictions).0;
    let median = |v: &mut Vec<f64>| (!v.is_empty()).then(|| spread(v).0);
    let (server_cpu, machine_cpu) = (median(&mut r.server_cpu_us), median(&mut r.machine_cpu_us));
    let us = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.0}"));
    let ratio = |x: f64, b: f64| format!("{:.2}×", x / b);
    t.add_row(vec![
        r.active.to_string(),
        r.created.to_string(),
        format!("{tput:.0} [{lo:.0}-{hi:.0}]"),
        base.map_or("—".into(), |(b, _)| ratio(tput, b)),
        format!("{p50:.0}"),
        format!("{p99:.0}"),
        base.map_or("—".into(), |(_, b)| ratio(p99, b)),
        format!("{cold:.0}"),
        format!("{evicted:.0}"),
        us(server_cpu),
        us(machine_cpu),
        r.errors.to_string(),
    ]);
    out.push(json!({"functions": r.active, "created": r.created, "throughput_median": tput, "throughput_min": lo,
        "throughput_max": hi, "throughput_vs_one": base.map(|(b, _)| tput / b), "p50_us": p50, "p99_us": p99,
        "p99_vs_one": base.map(|(_, b)| p99 / b), "cold_starts_per_run": cold, "evictions_per_run": evicted,
        "server_cpu_us_per_invocation": server_cpu, "machine_cpu_us_per_invocation": machine_cpu,
        "errors": r.errors, "clients": clients, "seconds": seconds}));
}

/// What freezing an idle instance costs its next invocation, and what the adaptive delay saves: the
/// latency of a call after 300 ms of idleness on a server that never freezes and on one that freezes after
/// 100 ms (each function's first gaps, before its usual gap is known); and, on the default server, a function
/// called every 1.2 s — frozen and thawed for each call until its usual gap is known, then left unfrozen.
pub fn freeze(bootstrap: &[u8], samples: usize) -> Result<Value> {
    let never = start_server("freeze-never", &["--freeze-after-ms", "0"])?;
    let quick = start_server("freeze-100", &["--freeze-after-ms", "100"])?;
    let default = start_server("freeze-default", &[])?;
    let code = b64(&zip_with("bootstrap", 0o755, bootstrap)?);
    for server in [&never, &quick, &default] {
        for i in 0..samples {
            let body = json!({"name": format!("idle-{i}"), "runtime": "provided.al2023", "code_base64": code});
            server.send(reqwest::Method::POST, "/v1/functions", Some(body))?;
        }
    }
    let call = |client: &mut RawClient| -> Result<f64> {
        let t = Instant::now();
        match client.exchange() {
            Ok(r) if r.status == 200 && !r.function_error => Ok(t.elapsed().as_secs_f64() * 1e6),
            other => bail!("a freeze-scenario call failed: {other:?}"),
        }
    };
    let (mut unfrozen, mut thawed) = (Vec::new(), Vec::new());
    for i in 0..samples {
        for (server, out) in [(&never, &mut unfrozen), (&quick, &mut thawed)] {
            let url = format!("{}/v1/functions/idle-{i}/invoke", server.endpoint);
            let mut client = RawClient::new(&url, Some(&server.key), b"{}")?;
            call(&mut client)?;
            std::thread::sleep(Duration::from_millis(300));
            out.push(call(&mut client)?);
        }
    }
    // Every 1.2 s on the default server (freeze after 1 s): the first five gaps are too few to go by.
    let url = format!("{}/v1/functions/idle-0/invoke", default.endpoint);
    let mut client = RawClient::new(&url, Some(&default.key), b"{}")?;
    call(&mut client)?;
    let (mut learning, mut learned) = (Vec::new(), Vec::new());
    for k in 0..16 {
        std::thread::sleep(Duration::from_millis(1200));
        let us = call(&mut client)?;
        if k < 5 {
            learning.push(us);
        } else if k > 6 {
            learned.push(us);
        }
    }
    let mut t = table(&["idle instance, next call", "calls", "latency p50 µs [min-max]"]);
    let mut out = Vec::new();
    for (label, v) in [
        ("never frozen (--freeze-after-ms 0), after 300 ms idle", &mut unfrozen),
        ("frozen after 100 ms, thawed for the call, after 300 ms idle", &mut thawed),
        ("called every 1.2 s, default server: first five gaps (frozen after 1 s)", &mut learning),
        ("called every 1.2 s, default server: once its gaps are known (not frozen)", &mut learned),
    ] {
        let (p50, lo, hi) = spread(v);
        t.add_row(vec![label.to_string(), v.len().to_string(), format!("{p50:.0} [{lo:.0}-{hi:.0}]")]);
        out.push(json!({"case": label, "calls": v.len(), "p50_us": p50, "min_us": lo, "max_us": hi}));
    }
    let thaw = spread(&mut thawed.clone()).0 - spread(&mut unfrozen.clone()).0;
    println!("freezing idle instances ({} sandbox):\n{t}\na thaw costs the next call ≈ {thaw:.0} µs", never.sandbox);
    Ok(json!({"rows": out, "thaw_cost_us": thaw, "sandbox": never.sandbox}))
}
