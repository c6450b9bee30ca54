//! `stoke-bench --scenarios generators`: why the project's own load generator and `wrk` see different server
//! CPU per warm invocation (issue 27 asks for the two measures to be reconciled). The same server and the
//! same warm function, in the same rounds, driven by:
//! - the project's generator (`closed_loop`: one blocking OS thread per connection),
//! - `wrk` with 2 threads (event loops: many connections per thread, requests handled in batches),
//! - `wrk` with one thread per connection (the project generator's threading, `wrk`'s client).
//!
//! For each: invocations/s, the server's CPU per invocation counted two ways (the server's live threads'
//! scheduler time, as the other scenarios count it, and the process's `utime + stime`, as the issue's `wrk`
//! figure was counted), the server's context switches per invocation, and new TCP connections per 1,000
//! invocations (the kernel's `PassiveOpens`).

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::harness::{b64, closed_loop, process_cpu_ns, start_server, table, zip_with};

#[derive(Debug, clap::Args)]
pub struct GeneratorsArgs {
    /// Connections each generator keeps open.
    #[arg(long, default_value_t = 32, value_name = "N")]
    generator_connections: usize,
}

/// The server process's counters at one moment.
#[derive(Debug, Clone, Copy)]
struct Counters {
    /// Live threads' scheduler time (ns).
    sched_ns: u64,
    /// utime + stime (clock ticks).
    ticks: u64,
    /// Voluntary and involuntary context switches of every live thread.
    switches: u64,
    /// The kernel's passive TCP opens (connections accepted, machine-wide).
    passive_opens: u64,
}

fn counters(pid: u32) -> Result<Counters> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("read the server's stat")?;
    // Fields after the command name (which may hold spaces) start at the state: utime is the 14th field of
    // the whole line, the 12th after the name.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let mut switches = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        if let Ok(status) = std::fs::read_to_string(task.path().join("status")) {
            switches += status
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary_ctxt_switches"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    let snmp = std::fs::read_to_string("/proc/net/snmp").context("read /proc/net/snmp")?;
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap_or_default(), tcp.next().unwrap_or_default());
    let passive_opens = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "PassiveOpens")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    Ok(Counters { sched_ns: process_cpu_ns(pid).unwrap_or(0), ticks, switches, passive_opens })
}

/// One generator's run: invocations and the server's counters before and after.
struct Measured {
    invocations: u64,
    seconds: f64,
    before: Counters,
    after: Counters,
}

impl Measured {
    fn row(&self, name: &str) -> (Vec<String>, Value) {
        let n = self.invocations.max(1) as f64;
        let tick_ns = 1e9 / clock_ticks_per_second();
        let sched_us = (self.after.sched_ns - self.before.sched_ns) as f64 / 1e3 / n;
        let stat_us = (self.after.ticks - self.before.ticks) as f64 * tick_ns / 1e3 / n;
        let switches = (self.after.switches - self.before.switches) as f64 / n;
        let opens = (self.after.passive_opens - self.before.passive_opens) as f64 * 1000.0 / n;
        let rate = self.invocations as f64 / self.seconds;
        (
            vec![
                name.to_string(),
                format!("{rate:.0}"),
                format!("{sched_us:.0}"),
                format!("{stat_us:.0}"),
                format!("{switches:.2}"),
                format!("{opens:.2}"),
            ],
            json!({"generator": name, "per_s": rate, "cpu_us_threads": sched_us, "cpu_us_utime_stime": stat_us,
                   "context_switches": switches, "new_connections_per_1000": opens}),
        )
    }
}

fn clock_ticks_per_second() -> f64 {
    // Linux's USER_HZ is 100 on every architecture stoke runs on.
    100.0
}

fn wrk_lua(key: &str) -> Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut f = tempfile::Builder::new().suffix(".lua").tempfile()?;
    writeln!(
        f,
        "wrk.method = \"POST\"\nwrk.body = '{{\"noop\":1}}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"Authorization\"] = \"Bearer {key}\""
    )?;
    Ok(f)
}

/// Runs wrk; the requests it completed.
fn wrk(url: &str, script: &std::path::Path, threads: usize, connections: usize, seconds: f64) -> Result<u64> {
    let out = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &connections.to_string()])
        .args(["-d", &format!("{}s", stoke_core::num::saturate_u64(seconds.ceil())), "-s"])
        .arg(script)
        .arg(url)
        .output()
        .context("run wrk (apt install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("Non-2xx") {
        bail!("wrk failed or saw errors:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    }
    text.lines()
        .find_map(|l| l.trim().split_once(" requests in ").and_then(|(n, _)| n.trim().parse().ok()))
        .with_context(|| format!("cannot read wrk's request count:\n{text}"))
}

pub fn run(args: &GeneratorsArgs, bootstrap: &[u8], raw: Option<&[u8]>, rounds: usize, seconds: f64) -> Result<Value> {
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("the generators scenario needs wrk (apt install wrk)");
    }
    let server = start_server("generators", &[])?;
    // The lambda_runtime no-op; and, when given, the raw Runtime API client, which keeps one connection
    // (lambda_runtime opens another every ~10 invocations): the difference is what reconnecting costs the
    // server.
    let mut functions = vec![("noop", "lambda_runtime no-op", bootstrap)];
    if let Some(raw) = raw {
        functions.push(("raw", "raw Runtime API no-op", raw));
    }
    for (name, _, code) in &functions {
        let body = json!({"name": name, "runtime": "provided.al2023",
                          "code_base64": b64(&zip_with("bootstrap", 0o755, code)?)});
        server.send(reqwest::Method::POST, "/v1/functions", Some(body))?;
    }
    let c = args.generator_connections;
    let script = wrk_lua(&server.key)?;
    let pid = server.pid();
    // (row name, function, generator: 0 stoke-bench, 1 wrk -t2, 2 wrk a thread per connection)
    let mut rows: Vec<(String, &str, usize)> = Vec::new();
    for (name, label, _) in &functions {
        rows.push((format!("{label}: stoke-bench generator, {c} threads × 1 connection"), name, 0));
        rows.push((format!("{label}: wrk, 2 threads × {} connections", c / 2), name, 1));
        if *name == "noop" {
            rows.push((format!("{label}: wrk, {c} threads × 1 connection"), name, 2));
        }
    }
    let url = |f: &str| format!("{}/v1/functions/{f}/invoke", server.endpoint);
    for (name, _, _) in &functions {
        // Warm each pool to the connections' concurrency first.
        closed_loop(&url(name), Some(&server.key), br#"{"noop":1}"#, c, 1.0);
    }
    let mut runs: Vec<Vec<Measured>> = (0..rows.len()).map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for ((_, function, generator), runs) in rows.iter().zip(runs.iter_mut()) {
            let before = counters(pid)?;
            let start = std::time::Instant::now();
            let u = url(function);
            let invocations = match generator {
                0 => closed_loop(&u, Some(&server.key), br#"{"noop":1}"#, c, seconds).latencies_us.len() as u64,
                1 => wrk(&u, script.path(), 2, c, seconds)?,
                _ => wrk(&u, script.path(), c, c, seconds)?,
            };
            let elapsed = start.elapsed().as_secs_f64();
            let after = counters(pid)?;
            runs.push(Measured { invocations, seconds: elapsed, before, after });
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let mut t = table(&[
        "function and generator (same server, warm)",
        "invocations/s",
        "server CPU µs/inv (live threads)",
        "server CPU µs/inv (utime+stime)",
        "server context switches/inv",
        "new TCP connections per 1,000",
    ]);
    let mut out = Vec::new();
    for ((name, _, _), runs) in rows.iter().zip(&runs) {
        // The median round by throughput.
        let mut order: Vec<&Measured> = runs.iter().collect();
        order.sort_by(|a, b| (a.invocations as f64 / a.seconds).total_cmp(&(b.invocations as f64 / b.seconds)));
        let (row, json) = order[order.len() / 2].row(name);
        t.add_row(row);
        out.push(json);
    }
    println!("\nload generators: the same warm invocations, counted the same ways (median of {rounds} rounds)\n{t}");
    Ok(json!(out))
}
