//! Cluster mode against a single node, side by side in one run (issue: cluster part 1): registry operations
//! (create, publish, get, list) on SQLite and on etcd, and warm invocations on a cluster node against a node
//! on its own store, with the etcd requests each warm invocation made.
//!
//! Both servers run at once on this machine; rounds alternate between them. Per operation it reports the
//! wall time a client saw and the CPU the server (and, for etcd, the etcd process) spent, which is steadier
//! than wall time on a shared machine.

use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use stoke_core::num::micros_u64;

use crate::harness::{
    b64, closed_loop, percentile, process_cpu_ns, spread, start_server, table, zip_with, BenchServer,
};

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// Registry operations of each kind per round and store.
    #[arg(long, default_value_t = 100)]
    cluster_ops: usize,
    /// Clients of the warm-invocation comparison.
    #[arg(long, default_value_t = 16)]
    cluster_concurrency: usize,
}

/// The two servers compared, the cluster node's etcd last (it outlives its node).
struct Pair {
    single: BenchServer,
    node: BenchServer,
    etcd: stoke_testkit::etcd::Etcd,
    _secret: tempfile::TempDir,
}

fn start(extra: &[&str]) -> Result<Pair> {
    let etcd = stoke_testkit::etcd::Etcd::start().context("cluster mode needs etcd (apt-get install etcd-server)")?;
    let secret = tempfile::tempdir()?;
    let file = secret.path().join("secret");
    std::fs::write(&file, "b".repeat(64))?;
    let single = start_server("single", extra)?;
    let endpoint = etcd.endpoint();
    let file = file.display().to_string();
    let mut args = vec!["--cluster", &endpoint, "--node-name", "bench-1", "--cluster-secret-file", &file];
    args.extend_from_slice(extra);
    let node = start_server("cluster", &args)?;
    Ok(Pair { single, node, etcd, _secret: secret })
}

/// The etcd requests a node made so far: (while serving calls, in the background).
fn etcd_requests(node: &BenchServer) -> Result<(u64, u64)> {
    let text = node.raw_get("/metrics")?;
    // The family carries the node's name too (`{node="…",source="…"}`).
    let read = |source: &str| {
        text.lines()
            .find(|l| l.starts_with("stoke_etcd_requests_total{") && l.contains(&format!("source=\"{source}\"")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok((read("requests"), read("background")))
}

/// One registry operation kind, timed over `n` calls: (mean µs per call, server CPU µs per call, etcd CPU µs
/// per call).
fn time_ops(
    server: &BenchServer,
    etcd_pid: Option<u32>,
    n: usize,
    mut op: impl FnMut(usize) -> Result<()>,
) -> Result<(f64, f64, f64)> {
    let cpu = || process_cpu_ns(server.pid()).unwrap_or(0);
    let etcd_cpu = || etcd_pid.and_then(process_cpu_ns).unwrap_or(0);
    let (c0, e0, t0) = (cpu(), etcd_cpu(), Instant::now());
    for i in 0..n {
        op(i)?;
    }
    let wall = micros_u64(t0.elapsed()) as f64 / n as f64;
    let server_us = (cpu() - c0) as f64 / 1000.0 / n as f64;
    let etcd_us = (etcd_cpu() - e0) as f64 / 1000.0 / n as f64;
    Ok((wall, server_us, etcd_us))
}

const OPS: [&str; 4] = ["create", "publish", "get", "list"];

/// One warm round: invocations/s, server CPU µs per invocation, p50 and p99 µs.
type Warm = (f64, f64, f64, f64);
/// Reads one figure of a [`Warm`] round.
type Figure = fn(&Warm) -> f64;

/// Runs `ops` of each kind on `server`, functions named after `round`.
fn registry_round(
    server: &BenchServer,
    etcd_pid: Option<u32>,
    round: usize,
    ops: usize,
) -> Result<Vec<(f64, f64, f64)>> {
    let code = b64(&zip_with("app.py", 0o644, b"def handler(event, context):\n    return event\n")?);
    let name = |i: usize| format!("reg-{round}-{i}");
    let create = time_ops(server, etcd_pid, ops, |i| {
        let body = json!({"name": name(i), "runtime": "python3.12", "handler": "app.handler", "code_base64": code});
        server.send(reqwest::Method::POST, "/v1/functions", Some(body)).map(|_| ())
    })?;
    let publish = time_ops(server, etcd_pid, ops, |i| {
        server.send(reqwest::Method::POST, &format!("/v1/functions/{}/versions", name(i)), Some(json!({}))).map(|_| ())
    })?;
    let get = time_ops(server, etcd_pid, ops, |i| {
        server.send(reqwest::Method::GET, &format!("/v1/functions/{}", name(i)), None).map(|_| ())
    })?;
    let list = time_ops(server, etcd_pid, ops, |_| {
        server.send(reqwest::Method::GET, "/v1/functions?limit=50", None).map(|_| ())
    })?;
    Ok(vec![create, publish, get, list])
}

pub fn run(args: &ClusterArgs, bootstrap: &[u8], rounds: usize, seconds: f64) -> Result<Value> {
    let pair = start(&["--generic", "none", "--zygotes", "0"])?;
    let etcd_pid = pair.etcd.pid();
    // [store][op] → per-round (wall, server cpu, etcd cpu)
    let mut reg: Vec<Vec<Vec<(f64, f64, f64)>>> = vec![vec![Vec::new(); OPS.len()]; 2];
    for round in 0..rounds {
        for (s, (server, pid)) in [(&pair.single, None), (&pair.node, etcd_pid)].into_iter().enumerate() {
            for (o, m) in registry_round(server, pid, round, args.cluster_ops)?.into_iter().enumerate() {
                reg[s][o].push(m);
            }
        }
    }
    let mut t = table(&[
        "operation",
        "SQLite µs/op",
        "etcd µs/op",
        "ratio",
        "server CPU µs/op SQLite",
        "etcd node+etcd CPU µs/op",
    ]);
    let mut reg_json = json!({});
    for (o, op) in OPS.iter().enumerate() {
        let med = |s: usize, f: fn(&(f64, f64, f64)) -> f64| spread(&mut reg[s][o].iter().map(f).collect::<Vec<_>>()).0;
        let (sw, ew) = (med(0, |m| m.0), med(1, |m| m.0));
        let (sc, nc, ec) = (med(0, |m| m.1), med(1, |m| m.1), med(1, |m| m.2));
        t.add_row(vec![
            op.to_string(),
            format!("{sw:.0}"),
            format!("{ew:.0}"),
            format!("{:.2}×", ew / sw),
            format!("{sc:.0}"),
            format!("{nc:.0} + {ec:.0}"),
        ]);
        reg_json[*op] = json!({"sqlite_us": sw, "etcd_us": ew, "sqlite_server_cpu_us": sc, "etcd_server_cpu_us": nc, "etcd_cpu_us": ec});
    }
    println!(
        "\nregistry operations through the API, SQLite vs etcd (median of {rounds} rounds of {} each)\n{t}",
        args.cluster_ops
    );

    // Warm invocations of the same Rust no-op on both, alternating.
    let body = json!({"name": "warm", "runtime": "provided.al2023", "code_base64": b64(&zip_with("bootstrap", 0o755, bootstrap)?)});
    for server in [&pair.single, &pair.node] {
        server.send(reqwest::Method::POST, "/v1/functions", Some(body.clone()))?;
        server.send(reqwest::Method::POST, "/v1/functions/warm/invoke", Some(json!({})))?;
    }
    let mut warm: Vec<Vec<Warm>> = vec![Vec::new(), Vec::new()];
    let (mut etcd_calls, mut etcd_background, mut node_invocations) = (0u64, 0u64, 0usize);
    for _ in 0..rounds {
        for (s, server) in [&pair.single, &pair.node].into_iter().enumerate() {
            let before = if s == 1 { Some(etcd_requests(server)?) } else { None };
            let cpu0 = process_cpu_ns(server.pid()).unwrap_or(0);
            let url = format!("{}/v1/functions/warm/invoke", server.endpoint);
            let run = closed_loop(&url, Some(&server.key), b"{}", args.cluster_concurrency, seconds);
            let cpu = process_cpu_ns(server.pid()).unwrap_or(0) - cpu0;
            let n = run.latencies_us.len();
            if let Some((r0, b0)) = before {
                let (r1, b1) = etcd_requests(server)?;
                etcd_calls += r1 - r0;
                etcd_background += b1 - b0;
                node_invocations += n;
            }
            let mut lat = run.latencies_us;
            lat.sort_unstable();
            warm[s].push((
                n as f64 / run.elapsed.as_secs_f64(),
                cpu as f64 / 1000.0 / n.max(1) as f64,
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
            ));
        }
    }
    let med = |s: usize, f: Figure| spread(&mut warm[s].iter().map(f).collect::<Vec<_>>()).0;
    let mut t = table(&["warm Rust no-op, 16 clients", "single node", "cluster node", "cluster / single"]);
    let rows: [(&str, Figure); 4] =
        [("invocations/s", |m| m.0), ("server CPU µs/invocation", |m| m.1), ("p50 µs", |m| m.2), ("p99 µs", |m| m.3)];
    let mut warm_json = json!({});
    for (label, f) in rows {
        let (a, b) = (med(0, f), med(1, f));
        t.add_row(vec![label.to_string(), format!("{a:.0}"), format!("{b:.0}"), format!("{:.2}×", b / a)]);
        warm_json[label] = json!({"single": a, "cluster": b});
    }
    let per = etcd_calls as f64 / node_invocations.max(1) as f64;
    println!("\nwarm invocations, cluster node vs single node (median of {rounds} rounds of {seconds} s)\n{t}");
    println!(
        "etcd requests while serving {node_invocations} warm invocations on the cluster node: {etcd_calls} \
         ({per:.4} per invocation); in the background (statistics flushes, the Event queue's poll, the reaper): {etcd_background}"
    );
    Ok(
        json!({"registry": reg_json, "warm": warm_json, "etcd_requests": etcd_calls, "etcd_background_requests": etcd_background, "warm_invocations": node_invocations}),
    )
}
