//! The load scenarios (`--scenarios burst,noisy,density`): bursts onto a cold function, a noisy neighbour
//! under an open-loop load, and the density of idle warm instances.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use stoke_core::num::{micros_u64, saturate_usize};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::harness::{
    b64, closed_loop, descendants, invoked_ok, percentile, process_cpu_ns, spread, start_server, table, zip_with, Run,
};
use crate::loadgen::RawClient;

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Concurrent invocations the burst scenario sends at once onto a cold function.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub burst: usize,
    /// Rate of the noisy-neighbour scenario's quiet function, in invocations per second (open loop).
    #[arg(long, default_value_t = 200.0, value_name = "PER_S")]
    pub noisy_rate: f64,
    /// Closed-loop clients flooding the noisy neighbour.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub noisy_flood: usize,
    /// Idle warm instances the density scenario keeps (in functions of 100 each).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub density: usize,
}

/// Open loop: requests are due at a fixed `rate`, spread over `clients` connections, and each latency is
/// counted from when its request was due, not from when it could be sent — a slow answer delays the requests
/// behind it and that delay is measured (no coordinated omission).
pub fn open_loop(url: &str, key: Option<&str>, body: &'static [u8], rate: f64, seconds: f64) -> Run {
    // Enough connections that requests due while others are still answered need not wait for a socket
    // (HTTP/1.1 carries one request at a time): a slow answer holds one connection, not the whole schedule.
    let clients = saturate_usize((rate / 25.0).ceil()).clamp(4, 64);
    let total = saturate_usize(rate * seconds);
    let start = Instant::now() + Duration::from_millis(20);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (url, key) = (url.to_string(), key.map(str::to_string));
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(total / clients + 1);
                let mut errors = 0;
                let Ok(mut client) = RawClient::new(&url, key.as_deref(), body) else { return (lat, total / clients) };
                for k in (c..total).step_by(clients) {
                    let due = start + Duration::from_secs_f64(k as f64 / rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    if invoked_ok(&mut client) {
                        lat.push(micros_u64(due.elapsed()));
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    Run::gather(handles, start)
}

/// Invocations of `url` sent all at once (a barrier releases them), one connection each: each one's
/// latency in ms, and the wall time until all were answered.
fn burst_once(url: &str, key: &str, n: usize) -> Result<(Vec<f64>, f64)> {
    let barrier = Arc::new(Barrier::new(n + 1));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (url, key, barrier) = (url.to_string(), key.to_string(), barrier.clone());
            std::thread::spawn(move || -> Result<f64> {
                let mut client = RawClient::new(&url, Some(&key), b"{}")?;
                barrier.wait();
                let t = Instant::now();
                let r = client.exchange()?;
                if r.status != 200 || r.function_error {
                    bail!("a burst invocation answered {}", r.status);
                }
                Ok(t.elapsed().as_secs_f64() * 1000.0)
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let mut lat = Vec::new();
    for h in handles {
        lat.push(h.join().map_err(|_| anyhow::anyhow!("a burst client panicked"))??);
    }
    Ok((lat, started.elapsed().as_secs_f64() * 1000.0))
}

/// Bursts: `args.burst` invocations at once onto a function that has no instance, next to one cold start
/// of a twin function on the same server, per round; for the rust and the python no-op, on a server with
/// the default first wave and on one that starts an instance per queued invocation (`--first-wave 0`).
pub fn bursts(args: &LoadArgs, bootstrap: &[u8], rounds: usize) -> Result<Value> {
    let servers = [
        (start_server("burst", &[])?, "first wave (default)"),
        (start_server("burst-each", &["--first-wave", "0"])?, "one per invocation"),
    ];
    let functions = [
        (
            "rust-noop",
            json!({"runtime": "provided.al2023", "code_base64": b64(&zip_with("bootstrap", 0o755, bootstrap)?)}),
        ),
        (
            "python-noop",
            json!({"runtime": "python3.12", "handler": "app.handler",
                   "code_base64": b64(&zip_with("app.py", 0o644, b"def handler(e, c):\n    return None\n")?)}),
        ),
    ];
    struct Row {
        function: &'static str,
        pool: &'static str,
        solo_ms: Vec<f64>,
        all_done_ms: Vec<f64>,
        warm_done_ms: Vec<f64>,
        instances: Vec<f64>,
        latencies: Vec<f64>,
    }
    let mut rows: Vec<Row> = functions
        .iter()
        .flat_map(|(function, _)| {
            servers.iter().map(|(_, pool)| Row {
                function,
                pool,
                solo_ms: vec![],
                all_done_ms: vec![],
                warm_done_ms: vec![],
                instances: vec![],
                latencies: vec![],
            })
        })
        .collect();
    for round in 0..rounds {
        for (fi, (function, body)) in functions.iter().enumerate() {
            for (si, (server, pool)) in servers.iter().enumerate() {
                let deploy = |name: &str| -> Result<()> {
                    let mut b = body.clone();
                    b["name"] = json!(name);
                    server.send(reqwest::Method::POST, "/v1/functions", Some(b)).map(|_| ())
                };
                let (solo, burst) = (format!("solo-{function}-{round}"), format!("burst-{function}-{round}"));
                deploy(&solo)?;
                deploy(&burst)?;
                let url = |f: &str| format!("{}/v1/functions/{f}/invoke", server.endpoint);
                // Let the node's generic instances refill after the previous burst, as they would between
                // bursts.
                std::thread::sleep(Duration::from_secs(2));
                let (solo_lat, _) = burst_once(&url(&solo), &server.key, 1)?;
                std::thread::sleep(Duration::from_secs(2));
                let (lat, all_done) = burst_once(&url(&burst), &server.key, args.burst)?;
                let list = server.send(reqwest::Method::GET, &format!("/v1/instances?function={burst}"), None)?;
                let instances = list["instances"].as_array().map_or(0, Vec::len);
                // The same burst again, onto the instances the first one left: what it costs without any
                // cold start (the CPU floor of 100 invocations on this machine).
                let (_, warm_done) = burst_once(&url(&burst), &server.key, args.burst)?;
                eprintln!(
                    "round {} burst {function}, {pool}: {} at once, all done in {all_done:.0} ms (one cold start {:.0} ms, the same burst warm {warm_done:.0} ms), {instances} instances",
                    round + 1,
                    args.burst,
                    solo_lat[0]
                );
                let row = &mut rows[fi * servers.len() + si];
                row.solo_ms.push(solo_lat[0]);
                row.all_done_ms.push(all_done);
                row.warm_done_ms.push(warm_done);
                row.instances.push(instances as f64);
                row.latencies.extend(lat);
                for f in [&solo, &burst] {
                    server.send(reqwest::Method::DELETE, &format!("/v1/functions/{f}"), None)?;
                }
            }
        }
    }
    let mut t = table(&[
        "function",
        "instances started",
        "burst",
        "one cold start ms",
        "all done ms [min-max]",
        "all done / cold start",
        "same burst warm ms",
        "(all done − warm) / cold start",
        "instances [min-max]",
        "latency p50 / p99 / max ms",
    ]);
    let mut out = Vec::new();
    for r in &mut rows {
        let (solo, _, _) = spread(&mut r.solo_ms);
        let (done, dmin, dmax) = spread(&mut r.all_done_ms);
        let (warm, _, _) = spread(&mut r.warm_done_ms);
        let (inst, imin, imax) = spread(&mut r.instances);
        r.latencies.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| r.latencies[saturate_usize(((r.latencies.len() - 1) as f64 * p).round())];
        let (p50, p99, max) = (q(0.5), q(0.99), q(1.0));
        t.add_row(vec![
            r.function.to_string(),
            r.pool.to_string(),
            args.burst.to_string(),
            format!("{solo:.1}"),
            format!("{done:.0} [{dmin:.0}-{dmax:.0}]"),
            format!("{:.2}×", done / solo),
            format!("{warm:.0}"),
            format!("{:.2}×", (done - warm) / solo),
            format!("{inst:.0} [{imin:.0}-{imax:.0}]"),
            format!("{p50:.0} / {p99:.0} / {max:.0}"),
        ]);
        out.push(json!({"function": r.function, "pool": r.pool, "burst": args.burst, "cold_start_ms": solo,
            "all_done_ms": done, "warm_burst_ms": warm, "all_done_min_ms": dmin, "all_done_max_ms": dmax, "instances": inst,
            "instances_min": imin, "instances_max": imax, "latency_p50_ms": p50, "latency_p99_ms": p99,
            "latency_max_ms": max}));
    }
    println!("bursts on the default sandbox ({}), {rounds} rounds:\n{t}", servers[0].0.sandbox);
    Ok(json!(out))
}

/// Noisy neighbour: function B at a low open-loop rate, alone and while function A is flooded by closed-loop
/// clients, interleaved per round. B's latency percentiles side by side.
pub fn noisy(args: &LoadArgs, bootstrap: &[u8], rounds: usize, seconds: f64) -> Result<Value> {
    let server = start_server("noisy", &[])?;
    let code = b64(&zip_with("bootstrap", 0o755, bootstrap)?);
    for name in ["quiet", "flood"] {
        server.send(
            reqwest::Method::POST,
            "/v1/functions",
            Some(json!({"name": name, "runtime": "provided.al2023", "code_base64": code})),
        )?;
    }
    let url = |f: &str| format!("{}/v1/functions/{f}/invoke", server.endpoint);
    let key = server.key.as_str();
    // Warm both pools first.
    closed_loop(&url("flood"), Some(key), br#"{"noop":1}"#, args.noisy_flood, 1.0);
    open_loop(&url("quiet"), Some(key), br#"{"noop":1}"#, args.noisy_rate, 1.0);
    let mut alone = Vec::new();
    let mut flooded = Vec::new();
    let mut flood_rates = Vec::new();
    for round in 0..rounds {
        let mut run = open_loop(&url("quiet"), Some(key), br#"{"noop":1}"#, args.noisy_rate, seconds);
        run.latencies_us.sort_unstable();
        alone.push(run);
        let flood_url = url("flood");
        let (c, s) = (args.noisy_flood, seconds + 0.4);
        let key_owned = key.to_string();
        let flood = std::thread::spawn(move || closed_loop(&flood_url, Some(&key_owned), br#"{"noop":1}"#, c, s));
        std::thread::sleep(Duration::from_millis(200));
        let mut run = open_loop(&url("quiet"), Some(key), br#"{"noop":1}"#, args.noisy_rate, seconds);
        run.latencies_us.sort_unstable();
        let f = flood.join().map_err(|_| anyhow::anyhow!("the flood panicked"))?;
        flood_rates.push(f.latencies_us.len() as f64 / f.elapsed.as_secs_f64());
        eprintln!(
            "round {} noisy: quiet p99 alone {:.0} µs, flooded {:.0} µs (flood {:.0}/s)",
            round + 1,
            percentile(&alone[round].latencies_us, 0.99),
            percentile(&run.latencies_us, 0.99),
            flood_rates[round]
        );
        flooded.push(run);
    }
    let stat =
        |runs: &[Run], p: f64| spread(&mut runs.iter().map(|r| percentile(&r.latencies_us, p)).collect::<Vec<_>>());
    let mut t = table(&["quiet function", "rate /s", "p50 µs", "p99 µs [min-max]", "p99.9 µs", "errors", "flood /s"]);
    let mut out = Vec::new();
    for (label, runs) in [("alone", &alone), ("next to the flood", &flooded)] {
        let (p50, _, _) = stat(runs, 0.5);
        let (p99, p99min, p99max) = stat(runs, 0.99);
        let (p999, _, _) = stat(runs, 0.999);
        let errors: usize = runs.iter().map(|r| r.errors).sum();
        let flood =
            if label == "alone" { "—".to_string() } else { format!("{:.0}", spread(&mut flood_rates.clone()).0) };
        t.add_row(vec![
            label.to_string(),
            format!("{:.0}", args.noisy_rate),
            format!("{p50:.0}"),
            format!("{p99:.0} [{p99min:.0}-{p99max:.0}]"),
            format!("{p999:.0}"),
            errors.to_string(),
            flood,
        ]);
        out.push(json!({"quiet": label, "rate": args.noisy_rate, "p50_us": p50, "p99_us": p99, "p999_us": p999, "errors": errors}));
    }
    let ratio = stat(&flooded, 0.99).0 / stat(&alone, 0.99).0;
    let list = server.send(reqwest::Method::GET, "/v1/instances?function=flood", None)?;
    let flood_instances = list["instances"].as_array().map_or(0, Vec::len);
    println!(
        "noisy neighbour ({} flood clients on {flood_instances} instances, open-loop quiet function), {rounds} rounds of {seconds} s:\n{t}\nquiet p99 flooded / alone: {ratio:.2}×",
        args.noisy_flood
    );
    Ok(json!({"rows": out, "p99_ratio": ratio, "flood_clients": args.noisy_flood, "flood_instances": flood_instances}))
}

/// Proportional set size of a process in KiB (`/proc/<pid>/smaps_rollup`).
pub(crate) fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("Pss:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Density: `args.density` idle warm instances of the rust no-op (functions of `min_warm` 100, 128 MB each),
/// frozen when the sandbox supports it, on a server with its default settings. What the server, the per-instance helpers and the functions cost in memory, and
/// what the server spends in CPU while they sit idle.
pub fn density(args: &LoadArgs, bootstrap: &[u8]) -> Result<Value> {
    let functions = args.density.div_ceil(100);
    // The server's defaults: instances are admitted by what they really use, so 1,000 instances of 128 MB
    // live on a node with far less than 128 GB.
    let server = start_server("density", &[])?;
    let pid = server.pid();
    let base_pss = pss_kib(pid).unwrap_or(0);
    let code = b64(&zip_with("bootstrap", 0o755, bootstrap)?);
    let started = Instant::now();
    for i in 0..functions {
        let warm = (args.density - i * 100).min(100);
        server.send(
            reqwest::Method::POST,
            "/v1/functions",
            Some(json!({"name": format!("idle-{i}"), "runtime": "provided.al2023", "code_base64": code,
                        "min_warm": warm, "keep_alive_s": 3600})),
        )?;
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut last = 0;
    loop {
        let list = server.send(reqwest::Method::GET, "/v1/instances", None)?;
        let idle = list["instances"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|i| i["state"] == "idle" || i["state"] == "frozen").count());
        if idle >= args.density {
            break;
        }
        if idle / 100 != last / 100 {
            eprintln!("density: {idle} idle instances after {:.0} s", started.elapsed().as_secs_f64());
        }
        last = idle;
        if Instant::now() > deadline {
            bail!("only {idle} of {} instances became idle within 15 minutes", args.density);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let ready_s = started.elapsed().as_secs_f64();
    // Let the freezer and the keep-alive bookkeeping settle, then measure the idle cost.
    std::thread::sleep(Duration::from_secs(3));
    let cpu_before = process_cpu_ns(pid).unwrap_or(0);
    let idle_window = Duration::from_secs(10);
    std::thread::sleep(idle_window);
    let cpu_ns = process_cpu_ns(pid).unwrap_or(0).saturating_sub(cpu_before);
    let server_cpu = cpu_ns as f64 / 1e9 / idle_window.as_secs_f64();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let (mut helpers, mut helper_kib, mut funcs, mut func_kib) = (0usize, 0u64, 0usize, 0u64);
    for p in descendants(pid) {
        let kib = pss_kib(p).unwrap_or(0);
        if std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == exe) {
            helpers += 1;
            helper_kib += kib;
        } else {
            funcs += 1;
            func_kib += kib;
        }
    }
    let server_pss = pss_kib(pid).unwrap_or(0);
    let n = args.density as f64;
    let per = |kib: u64| kib as f64 / n;
    let mut t = table(&["what", "processes", "memory (PSS) MiB", "per idle instance KiB"]);
    t.add_row(vec![
        "server, growth over its empty start".to_string(),
        "1".to_string(),
        format!("{:.1}", server_pss.saturating_sub(base_pss) as f64 / 1024.0),
        format!("{:.0}", per(server_pss.saturating_sub(base_pss))),
    ]);
    t.add_row(vec![
        "per-instance helpers (stoke processes)".to_string(),
        helpers.to_string(),
        format!("{:.1}", helper_kib as f64 / 1024.0),
        format!("{:.0}", per(helper_kib)),
    ]);
    t.add_row(vec![
        "functions' own processes".to_string(),
        funcs.to_string(),
        format!("{:.1}", func_kib as f64 / 1024.0),
        format!("{:.0}", per(func_kib)),
    ]);
    println!(
        "density: {} idle rust no-op instances on {} (ready after {ready_s:.0} s); server CPU while idle: {:.1} % of a core\n{t}",
        args.density,
        server.sandbox,
        server_cpu * 100.0
    );
    let out = json!({"instances": args.density, "sandbox": server.sandbox, "ready_s": ready_s,
        "server_pss_growth_kib": server_pss.saturating_sub(base_pss), "helpers": helpers, "helpers_pss_kib": helper_kib,
        "function_processes": funcs, "functions_pss_kib": func_kib, "server_idle_cpu_cores": server_cpu});
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::net::TcpListener;

    use super::*;
    use crate::peers::read_message;

    #[test]
    fn open_loop_counts_from_when_a_request_was_due() {
        // A server that takes 100 ms per request while the schedule is one every 10 ms over 4 connections:
        // requests queue behind each other, and the open loop must show the growing delay (a closed loop would
        // report 100 ms each).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                std::thread::spawn(move || {
                    let mut conn = io::BufReader::new(conn);
                    while let Ok(Some(_)) = read_message(&mut conn) {
                        std::thread::sleep(Duration::from_millis(100));
                        if conn.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnull").is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let mut run = open_loop(&format!("http://{addr}/"), None, b"{}", 100.0, 0.3);
        run.latencies_us.sort_unstable();
        assert_eq!(run.latencies_us.len(), 30);
        assert_eq!(run.errors, 0);
        let worst = *run.latencies_us.last().unwrap();
        assert!(worst > 300_000, "the last requests waited behind the others: {worst} µs");
    }
}
