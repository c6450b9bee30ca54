//! The `queues` scenario (cluster part 2): one queue per function version across a cluster of three nodes
//! on this machine, sharing one etcd.
//!
//! - Forwarding: warm invocations of a no-op sent to the node that owns its queue, against the same sent to
//!   another node, which forwards them (rounds alternate): p50/p99 and the CPU both servers spent per
//!   invocation.
//! - etcd requests per warm invocation (local and forwarded) and per cold start (a version no node owns
//!   yet, and the first invocation on a node of a version another node owns).
//! - Seed 004's table across the cluster: the same closed-loop load, its clients spread over the three
//!   nodes, over 1, 10, 100 and 1,000 functions whose queues the nodes own between them.
//! - On a cluster of two: invocations run by another node's instances pulling from the owner's queue (the
//!   owner has no room for them) against a local queue.
//!
//! The three nodes share this machine's cores, so throughput does not add up here; the per-invocation costs
//! measured are what the projection in BENCHMARKS.md is made from.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::harness::{
    b64, closed_loop, on_threads, percentile, process_cpu_ns, spread, spread_load, start_server, table, zip_with,
    BenchServer,
};

#[derive(Debug, Clone, clap::Args)]
pub struct QueuesArgs {
    /// Function counts the cluster's seed 004 table spreads the same load over, one row each.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,1000", value_name = "N,...")]
    pub queues_functions: Vec<usize>,
    /// Closed-loop clients (spread over the nodes).
    #[arg(long, default_value_t = 24, value_name = "N")]
    pub queues_clients: usize,
    /// Functions created to count etcd requests per cold start.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub queues_cold: usize,
}

/// The no-op's `bootstrap` runs the binary from the shared layer, as in the `many` scenario.
const BOOTSTRAP: &[u8] = b"#!/bin/sh\nexec /opt/noop\n";

struct Cluster {
    nodes: Vec<BenchServer>,
    etcd: stoke_testkit::etcd::Etcd,
    _secret: tempfile::TempDir,
}

impl Cluster {
    fn start(n: usize) -> Result<Cluster> {
        Self::start_with(n, |_| Vec::new())
    }

    /// `n` nodes, node `i` (from 0) with `extra(i)` flags besides the usual ones.
    fn start_with(n: usize, extra: impl Fn(usize) -> Vec<&'static str>) -> Result<Cluster> {
        let etcd = stoke_testkit::etcd::Etcd::start()
            .context("the queues scenario needs etcd (apt-get install etcd-server)")?;
        let secret = tempfile::tempdir()?;
        let file = secret.path().join("secret");
        std::fs::write(&file, "q".repeat(64))?;
        let (endpoint, file) = (etcd.endpoint(), file.display().to_string());
        let mut nodes: Vec<BenchServer> = Vec::new();
        for i in 1..=n {
            let name = format!("bench-{i}");
            let mut args =
                vec!["--cluster", &endpoint, "--node-name", &name, "--cluster-secret-file", &file, "--generic", "none"];
            args.extend(extra(i - 1));
            let mut node = start_server(&format!("queues-{i}"), &args)?;
            if let Some(first) = nodes.first() {
                // Nodes that join later use the first node's admin key.
                node.key = first.key.clone();
                node.sandbox = first.sandbox.clone();
            }
            nodes.push(node);
        }
        Ok(Cluster { nodes, etcd, _secret: secret })
    }

    /// Requests every node sent to etcd while serving calls (not its background loops) so far.
    fn etcd_requests(&self) -> Result<u64> {
        self.nodes.iter().map(etcd_requests).sum()
    }

    fn cpu_ns(&self) -> u64 {
        self.nodes.iter().map(|n| process_cpu_ns(n.pid()).unwrap_or(0)).sum()
    }
}

/// The requests a node sent to etcd while serving calls so far.
fn etcd_requests(node: &BenchServer) -> Result<u64> {
    let text = node.raw_get("/metrics")?;
    text.lines()
        .find(|l| l.starts_with("stoke_etcd_requests_total{") && l.contains("source=\"requests\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .context("/metrics has no stoke_etcd_requests_total{source=\"requests\"}")
}

/// Invokes `path` once through `node` (a failure is an error).
fn invoke_once(node: &BenchServer, function: &str) -> Result<Option<String>> {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/functions/{function}/invoke", node.endpoint))
        .bearer_auth(&node.key)
        .body("{}")
        .timeout(Duration::from_secs(120))
        .send()?;
    let ran_on = r.headers().get("x-stoke-node").and_then(|v| v.to_str().ok()).map(str::to_string);
    if !r.status().is_success() || r.headers().contains_key("x-stoke-function-error") {
        bail!("invoking {function} through {} failed: {}", node.endpoint, r.text()?);
    }
    Ok(ran_on)
}

/// Creates `q-{from}` … `q-{to - 1}` through node 0, four at a time.
fn deploy(c: &Cluster, from: usize, to: usize, code: &str) -> Result<()> {
    on_threads(from..to, 4, |i| {
        let body = json!({"name": format!("q-{i}"), "runtime": "provided.al2023", "memory_mb": 128,
                          "layers": ["noop:1"], "code_base64": code});
        c.nodes[0].send(reqwest::Method::POST, "/v1/functions", Some(body)).map(drop)
    })
}

/// Invokes `q-{from}` … `q-{to - 1}` once each, function `i` through node `i % nodes` (so the queues'
/// owners spread over the nodes), eight at a time.
fn warm(c: &Cluster, from: usize, to: usize) -> Result<()> {
    on_threads(from..to, 8, |i| invoke_once(&c.nodes[i % c.nodes.len()], &format!("q-{i}")).map(drop))
}

/// Per round: (invocations/s, CPU µs per invocation of all nodes, p50 µs, p99 µs, etcd requests per invocation).
type Measured = (f64, f64, f64, f64, f64);
/// One figure of a [`Measured`] round.
type Figure = fn(&Measured) -> f64;

/// One closed-loop run of `function` through `via`: its figures, with the CPU and etcd requests of every
/// node of `c`.
fn measure(c: &Cluster, via: &BenchServer, function: &str, clients: usize, seconds: f64) -> Result<Measured> {
    let (cpu0, etcd0) = (c.cpu_ns(), c.etcd_requests()?);
    let url = format!("{}/v1/functions/{function}/invoke", via.endpoint);
    let run = closed_loop(&url, Some(&via.key), b"{}", clients, seconds);
    let (cpu, etcd) = (c.cpu_ns() - cpu0, c.etcd_requests()? - etcd0);
    let n = run.latencies_us.len().max(1) as f64;
    let mut lat = run.latencies_us;
    lat.sort_unstable();
    Ok((
        lat.len() as f64 / run.elapsed.as_secs_f64(),
        cpu as f64 / 1000.0 / n,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        etcd as f64 / n,
    ))
}

/// The side-by-side table of a local queue's rounds (`runs[0]`) and another path's (`runs[1]`, headed
/// `other`, keyed `key` in the JSON), medians of the rounds.
fn side_by_side(runs: &[Vec<Measured>; 2], other: &str, ratio: &str, key: &str) -> (comfy_table::Table, Value) {
    let med = |k: usize, f: Figure| spread(&mut runs[k].iter().map(f).collect::<Vec<_>>()).0;
    let mut t = table(&["warm no-op, one function", "local queue", other, ratio]);
    let rows: [(&str, Figure); 5] = [
        ("invocations/s", |m| m.0),
        ("CPU µs/invocation, all nodes", |m| m.1),
        ("p50 µs", |m| m.2),
        ("p99 µs", |m| m.3),
        ("etcd requests/invocation", |m| m.4),
    ];
    let mut out = json!({});
    for (label, f) in rows {
        let (local, remote) = (med(0, f), med(1, f));
        let ratio = if local > 0.0 { format!("{:.2}×", remote / local) } else { "—".into() };
        let digits = if label.starts_with("etcd") { 4 } else { 0 };
        t.add_row(vec![label.into(), format!("{local:.digits$}"), format!("{remote:.digits$}"), ratio]);
        out[label] = json!({"local": local, key: remote});
    }
    (t, out)
}

fn forwarding(c: &Cluster, rounds: usize, seconds: f64, clients: usize) -> Result<Value> {
    // q-0's queue is node 0's (it ran it first).
    if invoke_once(&c.nodes[0], "q-0")?.is_some() {
        bail!("q-0 should run on the node that owns its queue");
    }
    if invoke_once(&c.nodes[1], "q-0")?.as_deref() != Some("bench-1") {
        bail!("q-0 invoked through node 2 should run on bench-1, which owns its queue");
    }
    let mut runs: [Vec<Measured>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (k, via) in [&c.nodes[0], &c.nodes[1]].into_iter().enumerate() {
            runs[k].push(measure(c, via, "q-0", clients, seconds)?);
        }
    }
    let (t, out) = side_by_side(&runs, "queue on another node", "forwarded / local", "forwarded");
    println!(
        "\nforwarding to a queue's owner, {clients} clients, closed loop (median of {rounds} rounds of {seconds} s; \
         {} sandbox, three nodes on this machine)\n{t}",
        c.nodes[0].sandbox
    );
    Ok(out)
}

/// Invocations pulled by another node's instances against a local queue, on a cluster of two: node 1 has
/// no room for the function's instances (its budget is below their size), so every call through it runs on
/// node 2's instances, which pull them from node 1's queue; the local row calls a function whose queue and
/// instances are node 2's, through node 2.
fn pulled(bootstrap: &[u8], rounds: usize, seconds: f64, clients: usize) -> Result<Value> {
    let c = Cluster::start_with(2, |i| {
        if i == 0 {
            vec!["--max-memory-mb", "200", "--memory-overcommit", "1"]
        } else {
            vec![]
        }
    })?;
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let layer = json!({"code_base64": b64(&zip_with("noop", 0o755, bootstrap)?), "description": "the no-op"});
    b.send(reqwest::Method::POST, "/v1/layers/noop/versions", Some(layer))?;
    let code = b64(&zip_with("bootstrap", 0o755, BOOTSTRAP)?);
    for name in ["near", "far"] {
        let body = json!({"name": name, "runtime": "provided.al2023", "memory_mb": 256, "layers": ["noop:1"], "code_base64": code});
        b.send(reqwest::Method::POST, "/v1/functions", Some(body))?;
    }
    invoke_once(b, "near")?;
    std::thread::sleep(Duration::from_secs(3)); // node 1 knows node 2's room (heartbeats, the nodes' list)
    if invoke_once(a, "far")?.as_deref() != Some("bench-2") {
        bail!("far invoked through bench-1, which has no room for it, should run on bench-2");
    }
    // Settle: the host asks for its feeders as the owner runs short, and their instances start.
    measure(&c, a, "far", clients, seconds)?;
    measure(&c, b, "near", clients, seconds)?;
    let mut runs: [Vec<Measured>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        runs[0].push(measure(&c, b, "near", clients, seconds)?);
        runs[1].push(measure(&c, a, "far", clients, seconds)?);
    }
    let (t, mut out) = side_by_side(&runs, "pulled by another node's instances", "pulled / local", "pulled");
    std::thread::sleep(Duration::from_millis(2500)); // a load report, so the count is current
    let nodes = b.send(reqwest::Method::GET, "/v1/nodes", None)?;
    let hosting = nodes["nodes"][1]["hosting"].clone();
    println!(
        "\ninstances on another node pulling from the owner's queue, {clients} clients, closed loop (median of {rounds} \
         rounds of {seconds} s; {} sandbox, two nodes on this machine; bench-2 ran {hosting} feeders)\n{t}",
        b.sandbox
    );
    out["feeders"] = hosting;
    Ok(out)
}

/// etcd requests per cold start: a version no node owns yet, invoked through node 2; then its first
/// invocation through node 3, which forwards it to node 2.
fn cold_starts(c: &Cluster, n: usize, code: &str) -> Result<Value> {
    let first = 100_000;
    deploy(c, first, first + n, code)?;
    // Let the creates' watch events reach every node before counting.
    std::thread::sleep(Duration::from_secs(1));
    let mut counted = Vec::new();
    for via in [&c.nodes[1], &c.nodes[2]] {
        let before = c.etcd_requests()?;
        for i in first..first + n {
            invoke_once(via, &format!("q-{i}"))?;
        }
        counted.push((c.etcd_requests()? - before) as f64 / n as f64);
    }
    let mut t = table(&["first invocation of a version", "etcd requests (all nodes)"]);
    t.add_row(vec!["no node owns its queue: cold start, the queue taken".into(), format!("{:.2}", counted[0])]);
    t.add_row(vec!["on another node than the queue's owner: forwarded".into(), format!("{:.2}", counted[1])]);
    println!("\netcd requests per first invocation ({n} functions each)\n{t}");
    Ok(json!({"cold_start_queue_taken": counted[0], "first_forwarded": counted[1], "functions": n}))
}

struct Row {
    functions: usize,
    throughput: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    cpu_us: Vec<f64>,
    errors: usize,
}

fn seed_table(c: &Cluster, counts: &[usize], clients: usize, rounds: usize, seconds: f64) -> Result<Value> {
    let bases: Vec<String> = c.nodes.iter().map(|n| format!("{}/v1/functions/", n.endpoint)).collect();
    let paths = |n: usize| (0..n).map(|i| format!("q-{i}/invoke")).collect::<Vec<_>>();
    let widest = counts.iter().copied().max().unwrap_or(1);
    // Settle: one unmeasured run over the most functions any row calls.
    spread_load(&bases, &c.nodes[0].key, &paths(widest), clients, seconds)?;
    let mut rows: Vec<Row> = counts
        .iter()
        .map(|&functions| Row { functions, throughput: vec![], p50: vec![], p99: vec![], cpu_us: vec![], errors: 0 })
        .collect();
    for round in 0..rounds {
        for row in &mut rows {
            let cpu0 = c.cpu_ns();
            let mut run = spread_load(&bases, &c.nodes[0].key, &paths(row.functions), clients, seconds)?;
            let cpu = c.cpu_ns() - cpu0;
            run.latencies_us.sort_unstable();
            let n = run.latencies_us.len();
            let tput = n as f64 / run.elapsed.as_secs_f64();
            eprintln!(
                "round {} queues: {} functions over 3 nodes {tput:>7.0}/s p50 {:>6.0} µs p99 {:>7.0} µs",
                round + 1,
                row.functions,
                percentile(&run.latencies_us, 0.5),
                percentile(&run.latencies_us, 0.99)
            );
            row.throughput.push(tput);
            row.p50.push(percentile(&run.latencies_us, 0.5));
            row.p99.push(percentile(&run.latencies_us, 0.99));
            row.cpu_us.push(cpu as f64 / 1000.0 / n.max(1) as f64);
            row.errors += run.errors;
        }
    }
    let base = rows.iter().find(|r| r.functions == 1).map(|r| spread(&mut r.throughput.clone()).0);
    let mut t = table(&[
        "functions called",
        "invocations/s [min-max]",
        "vs 1 function",
        "p50 µs",
        "p99 µs",
        "CPU µs/inv, all nodes",
        "errors",
    ]);
    let mut out = Vec::new();
    for r in &mut rows {
        let (tput, lo, hi) = spread(&mut r.throughput);
        let (p50, p99, cpu) = (spread(&mut r.p50).0, spread(&mut r.p99).0, spread(&mut r.cpu_us).0);
        let vs = base.map(|b| tput / b);
        t.add_row(vec![
            r.functions.to_string(),
            format!("{tput:.0} [{lo:.0}-{hi:.0}]"),
            vs.map_or("—".into(), |v| format!("{v:.2}×")),
            format!("{p50:.0}"),
            format!("{p99:.0}"),
            format!("{cpu:.0}"),
            r.errors.to_string(),
        ]);
        out.push(
            json!({"functions": r.functions, "throughput_median": tput, "throughput_min": lo, "throughput_max": hi,
            "throughput_vs_one": vs, "p50_us": p50, "p99_us": p99, "cpu_us_per_invocation": cpu, "errors": r.errors}),
        );
    }
    println!(
        "\nmany functions across a cluster of 3 nodes on this machine ({} sandbox, {clients} clients spread over the \
         nodes, closed loop, {rounds} rounds of {seconds} s, medians)\n{t}",
        c.nodes[0].sandbox
    );
    Ok(json!(out))
}

/// Each node's queues and instances, as `GET /v1/nodes` shows them.
fn owners(c: &Cluster) -> Result<Value> {
    std::thread::sleep(Duration::from_secs(3)); // a heartbeat, so the counts are current
    let nodes = c.nodes[0].send(reqwest::Method::GET, "/v1/nodes", None)?;
    let list: Vec<Value> = nodes["nodes"]
        .as_array()
        .map(|a| {
            a.iter().map(|n| json!({"node": n["name"], "queues": n["queues"], "instances": n["instances"]})).collect()
        })
        .unwrap_or_default();
    eprintln!("queues: owners and instances per node: {}", Value::from(list.clone()));
    Ok(Value::from(list))
}

pub fn run(args: &QueuesArgs, bootstrap: &[u8], rounds: usize, seconds: f64) -> Result<Value> {
    if args.queues_functions.contains(&0) || args.queues_clients == 0 {
        bail!("--queues-functions and --queues-clients must be at least 1");
    }
    let c = Cluster::start(3)?;
    let layer = json!({"code_base64": b64(&zip_with("noop", 0o755, bootstrap)?), "description": "the no-op"});
    c.nodes[0].send(reqwest::Method::POST, "/v1/layers/noop/versions", Some(layer))?;
    let code = b64(&zip_with("bootstrap", 0o755, BOOTSTRAP)?);
    let widest = args.queues_functions.iter().copied().max().unwrap_or(1);
    let started = Instant::now();
    deploy(&c, 0, widest, &code)?;
    // q-0 first, through node 0, so the forwarding rows know its owner.
    invoke_once(&c.nodes[0], "q-0")?;
    warm(&c, 1, widest)?;
    eprintln!("queues: {widest} functions created and invoked once in {:.0} s", started.elapsed().as_secs_f64());
    let forwarding = forwarding(&c, rounds, seconds, 16)?;
    let cold = cold_starts(&c, args.queues_cold, &code)?;
    let table = seed_table(&c, &args.queues_functions, args.queues_clients, rounds, seconds)?;
    let nodes = owners(&c)?;
    let etcd_cpu_ms = c.etcd.pid().and_then(process_cpu_ns).map(|ns| ns / 1_000_000);
    drop(c);
    let pulled = pulled(bootstrap, rounds, seconds, 16)?;
    Ok(json!({"forwarding": forwarding, "etcd_per_first_invocation": cold, "many": table, "nodes": nodes,
              "etcd_cpu_ms_total": etcd_cpu_ms, "pulled": pulled, "rounds": rounds, "seconds": seconds}))
}
