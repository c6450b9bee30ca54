//! `stoke-bench --scenarios sandboxes`: the same warm `lambda_runtime` no-op on every sandbox this host can
//! run (process, lean, OCI bundles under runc, crun and gVisor's runsc, and microVMs), side by side in the
//! same rounds,
//! and what an idle instance costs the host in memory on each. Cold starts per sandbox are the core
//! scenario's table.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::harness::{
    b64, closed_loop, descendants, isolating_sandboxes, percentile, spread, start_server, table, zip_with, BenchServer,
};
use crate::load::pss_kib;

#[derive(Debug, clap::Args)]
pub struct SandboxesArgs {
    /// Concurrency levels of the sandboxes scenario's warm rows.
    #[arg(long, value_delimiter = ',', default_value = "1,8", value_name = "N,...")]
    sandboxes_concurrency: Vec<usize>,
    /// Idle warm instances per sandbox whose memory the sandboxes scenario measures.
    #[arg(long, default_value_t = 20, value_name = "N")]
    sandboxes_idle: usize,
}

/// Every sandbox this host runs, each on a server of its own: lean without generic instances or zygotes
/// (every instance set up for its function, as the OCI runtimes do).
fn servers() -> Result<Vec<(BenchServer, String)>> {
    let mut servers = vec![(start_server("sbx-process", &["--sandbox", "process"])?, "process".to_string())];
    match start_server("sbx-lean", &["--sandbox", "lean", "--generic", "none", "--zygotes", "0"]) {
        Ok(lean) => servers.push((lean, "lean".to_string())),
        Err(e) => {
            eprintln!("sandboxes: no lean sandbox here ({e:#}); process only");
            return Ok(servers);
        }
    }
    for (short, label, flags) in isolating_sandboxes(false) {
        servers.push((start_server(&format!("sbx-{short}"), &flags)?, label));
    }
    Ok(servers)
}

/// Memory (PSS) of the server and of every process below it, in KiB.
fn memory_kib(server: &BenchServer) -> (u64, u64) {
    let pid = server.pid();
    let below = descendants(pid).into_iter().filter_map(pss_kib).sum();
    (pss_kib(pid).unwrap_or(0), below)
}

/// Waits until `function` has `n` idle (or frozen) instances.
fn wait_idle(server: &BenchServer, function: &str, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = server.send(reqwest::Method::GET, &format!("/v1/instances?function={function}"), None)?;
        let idle = list["instances"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|i| i["state"] == "idle" || i["state"] == "frozen").count());
        if idle >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{}: only {idle} of {n} instances became idle within 5 minutes", server.sandbox);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub fn run(args: &SandboxesArgs, bootstrap: &[u8], rounds: usize, seconds: f64) -> Result<Value> {
    let servers = servers()?;
    let code = b64(&zip_with("bootstrap", 0o755, bootstrap)?);
    // A timeout past an emulated VM's cold start (which counts against it).
    let noop = json!({"name": "noop", "runtime": "provided.al2023", "code_base64": code, "timeout_s": 120});
    let max_c = args.sandboxes_concurrency.iter().copied().max().unwrap_or(1);
    for (server, _) in &servers {
        server.send(reqwest::Method::POST, "/v1/functions", Some(noop.clone()))?;
        // Warm as many instances as the highest concurrency uses.
        closed_loop(&format!("{}/v1/functions/noop/invoke", server.endpoint), Some(&server.key), b"{}", max_c, 1.0);
    }
    // (sandbox, concurrency) → per round: throughput, p50 µs, p99 µs.
    let mut samples: Vec<Vec<Vec<(f64, f64, f64)>>> =
        vec![vec![Vec::new(); args.sandboxes_concurrency.len()]; servers.len()];
    for round in 0..rounds {
        for (ci, &c) in args.sandboxes_concurrency.iter().enumerate() {
            for (si, (server, label)) in servers.iter().enumerate() {
                let url = format!("{}/v1/functions/noop/invoke", server.endpoint);
                let mut run = closed_loop(&url, Some(&server.key), b"{}", c, seconds);
                if run.errors > 0 {
                    eprintln!("sandboxes: {label} at {c}: {} errors in round {round}", run.errors);
                }
                run.latencies_us.sort_unstable();
                let throughput = run.latencies_us.len() as f64 / run.elapsed.as_secs_f64();
                samples[si][ci].push((
                    throughput,
                    percentile(&run.latencies_us, 0.5),
                    percentile(&run.latencies_us, 0.99),
                ));
            }
        }
    }
    let lean_index = servers.iter().position(|(_, l)| l == "lean");
    let mut warm = table(&["sandbox", "conc", "req/s [min–max]", "p50 µs", "p99 µs", "req/s vs lean", "p50 vs lean"]);
    let mut rows = Vec::new();
    let median = |v: &[(f64, f64, f64)], f: fn(&(f64, f64, f64)) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        spread(&mut x)
    };
    for (ci, &c) in args.sandboxes_concurrency.iter().enumerate() {
        let lean = lean_index.map(|i| (median(&samples[i][ci], |s| s.0).0, median(&samples[i][ci], |s| s.1).0));
        for (si, (_, label)) in servers.iter().enumerate() {
            let (tput, tmin, tmax) = median(&samples[si][ci], |s| s.0);
            let (p50, _, _) = median(&samples[si][ci], |s| s.1);
            let (p99, _, _) = median(&samples[si][ci], |s| s.2);
            let ratio = |a: f64, b: Option<f64>| b.map_or("—".to_string(), |b| format!("{:.2}×", a / b));
            warm.add_row(vec![
                label.clone(),
                c.to_string(),
                format!("{tput:.0} [{tmin:.0}–{tmax:.0}]"),
                format!("{p50:.0}"),
                format!("{p99:.0}"),
                ratio(tput, lean.map(|l| l.0)),
                ratio(p50, lean.map(|l| l.1)),
            ]);
            rows.push(json!({"sandbox": label, "concurrency": c, "throughput": tput, "throughput_min": tmin,
                "throughput_max": tmax, "p50_us": p50, "p99_us": p99}));
        }
    }
    println!("sandboxes: warm lambda_runtime no-op, medians of {rounds} rounds of {seconds} s\n{warm}");

    // Memory per idle instance: the host's processes for `n` more idle instances, and the server's growth.
    let n = args.sandboxes_idle;
    let mut memory =
        table(&["sandbox", "idle instances", "host processes KiB per instance", "server KiB per instance"]);
    let mut mem_rows = Vec::new();
    for (server, label) in &servers {
        std::thread::sleep(Duration::from_secs(2));
        let (server_before, below_before) = memory_kib(server);
        let idle = json!({"name": "idle", "runtime": "provided.al2023", "code_base64": code, "min_warm": n,
                          "keep_alive_s": 3600});
        server.send(reqwest::Method::POST, "/v1/functions", Some(idle))?;
        wait_idle(server, "idle", n)?;
        // Let the freezer take them and the bookkeeping settle.
        std::thread::sleep(Duration::from_secs(3));
        let (server_after, below_after) = memory_kib(server);
        let per = |after: u64, before: u64| after.saturating_sub(before) as f64 / n as f64;
        let (host, own) = (per(below_after, below_before), per(server_after, server_before));
        memory.add_row(vec![label.clone(), n.to_string(), format!("{host:.0}"), format!("{own:.0}")]);
        mem_rows.push(json!({"sandbox": label, "idle": n, "host_kib_per_instance": host,
            "server_kib_per_instance": own}));
    }
    println!("sandboxes: memory (PSS) per idle instance of the rust no-op (128 MB)\n{memory}");
    Ok(json!({"warm": rows, "memory": mem_rows}))
}
