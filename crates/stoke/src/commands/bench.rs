//! `stoke bench`: measures the execution core side by side, in one run, against the physical floor.
//!
//! Starts its own server (this binary, `stoke server`) on a temp data directory, deploys the functions,
//! and runs every scenario in interleaved rounds so the shared machine's noise hits all of them alike.
//! Reports medians over rounds (with min and max) and ratios to the floor.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::json;

use crate::loadgen::RawClient;
use crate::output::table;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A `bootstrap` built with the lambda_runtime crate (scripts/bench builds tests/functions/rust-echo).
    #[arg(long, value_name = "FILE")]
    rust_bootstrap: PathBuf,
    /// Seconds each scenario runs per round.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Rounds; every scenario runs once per round, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrency levels (closed loop: each client sends its next request when the last one returns).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    concurrency: Vec<usize>,
    /// Write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One measured run: every latency in microseconds, and the wall time.
struct Run {
    latencies_us: Vec<u64>,
    elapsed: Duration,
    errors: usize,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64
}

/// Closed loop: `concurrency` clients, each a thread with its own keep-alive connection (the raw load
/// generator), for `seconds`.
fn closed_loop(url: &str, key: Option<&str>, body: &'static [u8], concurrency: usize, seconds: f64) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..concurrency)
        .map(|_| {
            let (url, key, stop) = (url.to_string(), key.map(str::to_string), stop.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(100_000);
                let mut errors = 0;
                let Ok(mut client) = RawClient::new(&url, key.as_deref(), body) else { return (lat, 1) };
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ok = client.exchange().is_ok_and(|r| (200..300).contains(&r.status) && !r.function_error);
                    if ok {
                        lat.push(t.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().unwrap_or_default();
        latencies_us.extend(l);
        errors += e;
    }
    Run { latencies_us, elapsed: start.elapsed(), errors }
}

/// The floor: one loopback HTTP hop to a trivial server that answers `null`.
fn start_floor() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().route("/", axum::routing::post(|| async { "null" }));
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok(format!("http://{addr}/"))
}

fn zip_with(name: &str, mode: u32, data: &[u8]) -> Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(name, zip::write::SimpleFileOptions::default().unix_permissions(mode))?;
    w.write_all(data)?;
    Ok(w.finish()?.into_inner())
}

pub fn run(args: Args) -> Result<()> {
    let bootstrap = std::fs::read(&args.rust_bootstrap)
        .with_context(|| format!("cannot read {} (scripts/bench builds it)", args.rust_bootstrap.display()))?;
    let dir = std::env::temp_dir().join(format!("stoke-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let _server = ServerProcess(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let endpoint = loop {
        if let Ok(b) = std::fs::read(dir.join("server.json")) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b) {
                break v["endpoint"].as_str().unwrap_or_default().to_string();
            }
        }
        if Instant::now() > deadline {
            bail!("the benchmark server did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let creds: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("credentials.json"))?)?;
    let key = creds["api_key"].as_str().unwrap_or_default().to_string();
    let http = reqwest::blocking::Client::new();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    for (name, body) in [
        (
            "rust-noop",
            json!({"name": "rust-noop", "runtime": "provided.al2023", "code_base64": b64(&zip_with("bootstrap", 0o755, &bootstrap)?)}),
        ),
        (
            "python-noop",
            json!({"name": "python-noop", "runtime": "python3.12", "handler": "app.handler",
            "code_base64": b64(&zip_with("app.py", 0o644, b"def handler(e, c):\n    return None\n")?)}),
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
    let floor = start_floor()?;
    let invoke_url = |f: &str| format!("{endpoint}/v1/functions/{f}/invoke");
    // Warm every pool to the highest concurrency first, so rounds measure warm invocations.
    let max_c = args.concurrency.iter().copied().max().unwrap_or(1);
    for f in ["rust-noop", "python-noop"] {
        closed_loop(&invoke_url(f), Some(&key), br#"{"noop":1}"#, max_c, 1.0);
    }
    let scenarios: Vec<(&str, String, Option<&str>)> = vec![
        ("floor: loopback HTTP hop", floor.clone(), None),
        ("stoke: rust lambda_runtime no-op", invoke_url("rust-noop"), Some(key.as_str())),
        ("stoke: rust no-op via function URL", function_url.clone(), Some(key.as_str())),
        ("stoke: python no-op", invoke_url("python-noop"), Some(key.as_str())),
    ];
    // results[scenario][concurrency] = per-round (throughput, p50, p99, p999)
    let mut results = vec![vec![Vec::<(f64, f64, f64, f64, usize)>::new(); args.concurrency.len()]; scenarios.len()];
    for round in 0..args.rounds {
        for (ci, &c) in args.concurrency.iter().enumerate() {
            for (si, (name, url, key)) in scenarios.iter().enumerate() {
                let mut run = closed_loop(url, *key, br#"{"noop":1}"#, c, args.seconds);
                run.latencies_us.sort_unstable();
                let tput = run.latencies_us.len() as f64 / run.elapsed.as_secs_f64();
                let l = &run.latencies_us;
                results[si][ci].push((tput, percentile(l, 0.5), percentile(l, 0.99), percentile(l, 0.999), run.errors));
                eprintln!("round {} c={c:<3} {name:<36} {tput:>9.0}/s p50 {:>7.0} µs", round + 1, percentile(l, 0.5));
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let mut t = table(&[
        "scenario",
        "conc",
        "req/s (median [min-max])",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "p50 − floor",
        "errors",
    ]);
    let mut json_rows = Vec::new();
    for (ci, &c) in args.concurrency.iter().enumerate() {
        let floor_p50 = median(&mut results[0][ci].iter().map(|r| r.1).collect()).0;
        for (si, (name, _, _)) in scenarios.iter().enumerate() {
            let rows = &results[si][ci];
            let (tput, tmin, tmax) = median(&mut rows.iter().map(|r| r.0).collect());
            let (p50, _, _) = median(&mut rows.iter().map(|r| r.1).collect());
            let (p99, _, _) = median(&mut rows.iter().map(|r| r.2).collect());
            let (p999, _, _) = median(&mut rows.iter().map(|r| r.3).collect());
            let errors: usize = rows.iter().map(|r| r.4).sum();
            let overhead = if si == 0 { "—".to_string() } else { format!("{:+.0} µs", p50 - floor_p50) };
            t.add_row(vec![
                name.to_string(),
                c.to_string(),
                format!("{tput:.0} [{tmin:.0}-{tmax:.0}]"),
                format!("{p50:.0}"),
                format!("{p99:.0}"),
                format!("{p999:.0}"),
                overhead,
                errors.to_string(),
            ]);
            json_rows.push(json!({"scenario": name, "concurrency": c, "throughput_median": tput, "throughput_min": tmin,
                "throughput_max": tmax, "p50_us": p50, "p99_us": p99, "p999_us": p999, "p50_minus_floor_us": p50 - floor_p50, "errors": errors}));
        }
    }
    println!("{t}");
    if let Some(path) = args.json {
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&json!({"rounds": args.rounds, "seconds": args.seconds, "rows": json_rows}))?,
        )?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
