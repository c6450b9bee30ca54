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
    /// A `bootstrap` built with the lambda_runtime crate (scripts/bench builds tests/functions/rust-echo);
    /// needed by the `core` scenarios.
    #[arg(long, value_name = "FILE")]
    rust_bootstrap: Option<PathBuf>,
    /// Which scenarios run: `core` (warm invokes, the workflow engine's overhead, cold starts), `prewarm`
    /// (workflows whose functions all start cold, under each pre-warm policy) and `tune` (the memory
    /// optimizer on a CPU-bound, a memory-bound and an I/O-bound function) and `image` (seed 000's image
    /// workflow with Pillow and an S3-compatible store, in modes (a)–(e): no help, prepare, prepare +
    /// prefetch, jit, eager) and `layers` (seed 003: loading Node modules from a shared layer vs a copy per
    /// function, at several concurrencies, per sandbox; draws a chart), `burst` (100 invocations at once onto
    /// a cold function), `noisy` (a quiet function's latency while another is flooded), `density` (1,000
    /// idle warm instances: what they cost) and `many` (the same load spread over 1, 10, 100 and 1,000
    /// functions, then 1,000 active among 10,000 created: seed 004's table), `freeze` (what a thaw costs the
    /// next call, and the adaptive freeze delay).
    #[arg(long, value_delimiter = ',', default_value = "core,burst,noisy,prewarm",
          value_parser = ["core", "prewarm", "tune", "image", "layers", "burst", "noisy", "density", "many", "freeze"])]
    scenarios: Vec<String>,
    #[command(flatten)]
    prewarm: super::bench_prewarm::PrewarmArgs,
    #[command(flatten)]
    tune: super::bench_tune::TuneArgs,
    #[command(flatten)]
    image: super::bench_image::ImageArgs,
    #[command(flatten)]
    layers: super::bench_layers::LayersArgs,
    #[command(flatten)]
    load: super::bench_load::LoadArgs,
    #[command(flatten)]
    many: super::bench_many::ManyArgs,
    /// Sandbox of the core scenario's main server (its warm rows), e.g. `process` to compare with the
    /// default (with `process`, the cold-start table then has only the process sandbox).
    #[arg(long, value_name = "SANDBOX", value_parser = ["process", "lean", "oci"])]
    sandbox: Option<String>,
    /// Seconds each scenario runs per round.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Rounds; every scenario runs once per round, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
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
pub(super) struct Run {
    pub(super) latencies_us: Vec<u64>,
    pub(super) elapsed: Duration,
    pub(super) errors: usize,
}

impl Run {
    /// Joins the client threads (each returns its latencies and its error count) into one run that began at
    /// `start`.
    pub(super) fn gather(handles: Vec<std::thread::JoinHandle<(Vec<u64>, usize)>>, start: Instant) -> Run {
        let mut latencies_us = Vec::new();
        let mut errors = 0;
        for h in handles {
            let (l, e) = h.join().unwrap_or_default();
            latencies_us.extend(l);
            errors += e;
        }
        Run { latencies_us, elapsed: start.elapsed(), errors }
    }
}

/// One exchange of `client`'s request; true when it answered 2xx and the function did not fail.
pub(super) fn invoked_ok(client: &mut RawClient) -> bool {
    client.exchange().is_ok_and(|r| (200..300).contains(&r.status) && !r.function_error)
}

/// Base64, as the API takes code archives.
pub(super) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(super) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64
}

/// Closed loop: `concurrency` clients, each a thread with its own keep-alive connection (the raw load
/// generator), for `seconds`.
pub(super) fn closed_loop(url: &str, key: Option<&str>, body: &'static [u8], concurrency: usize, seconds: f64) -> Run {
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
                    if invoked_ok(&mut client) {
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
    Run::gather(handles, start)
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
}

/// CPU time a process has run so far, in ns: the sum over its threads' scheduler statistics (threads that
/// ended are not counted; the server's long-lived workers do the warm path's work).
pub(super) fn process_cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let ns = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Some(ns)
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

pub(super) fn zip_with(name: &str, mode: u32, data: &[u8]) -> Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(name, zip::write::SimpleFileOptions::default().unix_permissions(mode))?;
    w.write_all(data)?;
    Ok(w.finish()?.into_inner())
}

/// A benchmark server on a temp data directory: the process, its endpoint, its admin key, its sandbox.
pub(super) struct BenchServer {
    _process: ServerProcess,
    pub(super) endpoint: String,
    pub(super) key: String,
    pub(super) sandbox: String,
    dir: PathBuf,
    http: reqwest::blocking::Client,
}

impl BenchServer {
    /// The server's process id.
    pub(super) fn pid(&self) -> u32 {
        self._process.0.id()
    }

    /// One API call as the admin; a non-2xx answer is an error carrying the API's message.
    pub(super) fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let mut r = self.http.request(method, format!("{}{path}", self.endpoint)).bearer_auth(&self.key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.timeout(Duration::from_secs(600)).send()?;
        let status = r.status();
        let text = r.text()?;
        if !status.is_success() {
            bail!("{path}: {status} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self._process.0.kill();
        let _ = self._process.0.wait();
        // Its instances die with it, but a thousand of them take seconds to go: wait, so that the next
        // scenario does not measure their teardown.
        let dir = self.dir.to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline && processes_mentioning(&dir) > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Processes whose command line mentions `needle` (an instance's helper names its server's data directory).
fn processes_mentioning(needle: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmd| cmd.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .count()
}

pub(super) fn start_server(tag: &str, extra: &[&str]) -> Result<BenchServer> {
    let dir = std::env::temp_dir().join(format!("stoke-bench-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .args(extra)
        .env("RUST_LOG", std::env::var("STOKE_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .stderr(match std::env::var_os("STOKE_BENCH_SERVER_LOG") {
            Some(_) => Stdio::from(std::fs::File::create(std::env::temp_dir().join(format!("stoke-bench-{tag}.log")))?),
            None => Stdio::null(),
        })
        .spawn()?;
    let process = ServerProcess(child);
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
    let list: serde_json::Value =
        reqwest::blocking::Client::new().get(format!("{endpoint}/v1/instances")).bearer_auth(&key).send()?.json()?;
    let sandbox = list["sandbox"].as_str().unwrap_or("?").to_string();
    Ok(BenchServer { _process: process, endpoint, key, sandbox, dir, http: reqwest::blocking::Client::new() })
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
                let mut body = body.clone();
                body["name"] = json!(name);
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

const NUMPY_APP: &[u8] = b"import numpy\ndef handler(e, c):\n    return int(numpy.arange(10).sum())\n";

/// The directory python3 imports `modules` from (the last one's package directory's parent); `missing`
/// is the error when one of them is not installed.
pub(super) fn python_site(modules: &[&str], missing: &str) -> Result<PathBuf> {
    let last = modules.last().copied().unwrap_or("os");
    let script = format!("import os, {}; print(os.path.dirname(os.path.dirname({last}.__file__)))", modules.join(", "));
    let out = Command::new("python3").args(["-c", &script]).output().context("cannot run python3")?;
    if !out.status.success() {
        bail!("{missing}");
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// A layer of the numpy installed for python3 (`python/numpy`, `python/numpy.libs`).
fn numpy_layer() -> Result<Vec<u8>> {
    let site = python_site(&["numpy"], "numpy is not installed for python3 (scripts/bench installs it)")?;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for dir in ["numpy", "numpy.libs"] {
        if site.join(dir).is_dir() {
            super::bench_layers::add_tree(&mut zip, &site.join(dir), &format!("python/{dir}"))?;
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

/// Median, min and max.
pub(super) fn spread(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
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

pub fn run(args: Args) -> Result<()> {
    let mut results = json!({});
    if args.scenarios.iter().any(|s| s == "core") {
        results = core(&args)?;
    }
    if args.scenarios.iter().any(|s| s == "prewarm") {
        results["prewarm"] = super::bench_prewarm::run(&args.prewarm)?;
    }
    if args.scenarios.iter().any(|s| s == "tune") {
        results["tune"] = super::bench_tune::run(&args.tune)?;
    }
    if args.scenarios.iter().any(|s| s == "image") {
        results["image"] = super::bench_image::run(&args.image)?;
    }
    if args.scenarios.iter().any(|s| s == "layers") {
        results["layers"] = super::bench_layers::run(&args.layers)?;
    }
    let load = ["burst", "noisy", "density", "many", "freeze"];
    if args.scenarios.iter().any(|s| load.contains(&s.as_str())) {
        let bootstrap = rust_bootstrap(&args)?;
        if args.scenarios.iter().any(|s| s == "burst") {
            results["burst"] = super::bench_load::bursts(&args.load, &bootstrap, args.rounds)?;
        }
        if args.scenarios.iter().any(|s| s == "noisy") {
            results["noisy"] = super::bench_load::noisy(&args.load, &bootstrap, args.rounds, args.seconds)?;
        }
        if args.scenarios.iter().any(|s| s == "density") {
            results["density"] = super::bench_load::density(&args.load, &bootstrap)?;
        }
        if args.scenarios.iter().any(|s| s == "many") {
            results["many"] = super::bench_many::many(&args.many, &bootstrap, args.rounds, args.seconds)?;
        }
        if args.scenarios.iter().any(|s| s == "freeze") {
            results["freeze"] = super::bench_many::freeze(&bootstrap, 20)?;
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&results)?)?;
    }
    Ok(())
}

/// The lambda_runtime no-op's `bootstrap`, which the core and load scenarios deploy.
fn rust_bootstrap(args: &Args) -> Result<Vec<u8>> {
    let Some(path) = &args.rust_bootstrap else {
        bail!(
            "the core, burst, noisy, density, many and freeze scenarios need --rust-bootstrap (scripts/bench builds it), or pass \
             --scenarios prewarm"
        );
    };
    std::fs::read(path).with_context(|| format!("cannot read {} (scripts/bench builds it)", path.display()))
}

/// Warm invokes against the floor and peers, the workflow engine's overhead and cold starts per sandbox.
fn core(args: &Args) -> Result<serde_json::Value> {
    let bootstrap = rust_bootstrap(args)?;
    let bootstrap_path = args.rust_bootstrap.clone().unwrap_or_default();
    let main = match &args.sandbox {
        Some(sandbox) => start_server("main", &["--sandbox", sandbox])?,
        None => start_server("main", &[])?,
    };
    let (endpoint, key) = (main.endpoint.clone(), main.key.clone());
    let http = reqwest::blocking::Client::new();
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
    if let Some(raw) = &args.load.raw_bootstrap {
        let raw =
            std::fs::read(raw).with_context(|| format!("cannot read {} (scripts/bench builds it)", raw.display()))?;
        let body = json!({"name": "raw-noop", "runtime": "provided.al2023", "code_base64": b64(&zip_with("bootstrap", 0o755, &raw)?)});
        main.send(reqwest::Method::POST, "/v1/functions", Some(body))?;
        warm.push("raw-noop");
    }
    let floor = start_floor()?;
    let peers = super::bench_load::peers(&args.load, &bootstrap_path)?;
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
    for round in 0..args.rounds {
        for (ci, &c) in args.concurrency.iter().enumerate() {
            for (si, (name, url, key, platform)) in scenarios.iter().enumerate() {
                // CPU time is steadier than throughput on a shared machine: what the platform's process
                // (stoke's server, the emulator) spent per invocation, the function's own process aside.
                let cpu_before = platform.and_then(process_cpu_ns);
                let mut run = closed_loop(url, *key, br#"{"noop":1}"#, c, args.seconds);
                let cpu_ns = cpu_before.and_then(|b| Some(process_cpu_ns((*platform)?)?.saturating_sub(b)));
                run.latencies_us.sort_unstable();
                let tput = run.latencies_us.len() as f64 / run.elapsed.as_secs_f64();
                let l = &run.latencies_us;
                let cpu_us = cpu_ns.filter(|_| !l.is_empty()).map(|ns| ns as f64 / 1000.0 / l.len() as f64);
                results[si][ci].push(Round {
                    throughput: tput,
                    p50: percentile(l, 0.5),
                    p99: percentile(l, 0.99),
                    p999: percentile(l, 0.999),
                    errors: run.errors,
                    platform_cpu_us: cpu_us,
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
                errors.to_string(),
            ]);
            json_rows.push(json!({"scenario": name, "concurrency": c, "throughput_median": tput, "throughput_min": tmin,
                "throughput_max": tmax, "p50_us": p50, "p99_us": p99, "p999_us": p999, "p50_minus_floor_us": p50 - floor_p50,
                "platform_cpu_us_per_invocation": platform_cpu_us, "errors": errors}));
        }
    }
    println!("{t}");
    let in_process_ns = super::bench_load::in_process_ns(args.seconds.min(1.0));
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
            for runtime in ["runc", "crun"] {
                if Command::new(runtime).arg("--version").output().is_ok() {
                    oci.push((start_server(runtime, &["--sandbox", "oci", "--oci-runtime", runtime])?, runtime));
                }
            }
        }
        servers.extend(lean.iter().map(|(s, label)| (s, label.clone())));
        if !lean.is_empty() {
            servers.push((&main, "lean + generic + zygotes".to_string()));
        }
        for (server, runtime) in &oci {
            servers.push((server, format!("oci {runtime}")));
        }
        let mut functions = vec![
            (
                "rust-noop",
                json!({"runtime": "provided.al2023", "code_base64": b64(&zip_with("bootstrap", 0o755, &bootstrap)?)}),
            ),
            (
                "python-noop",
                json!({"runtime": "python3.12", "handler": "app.handler",
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
        eprintln!("cold starts: {} per sandbox and function", args.cold);
        let mut rows = cold_starts(&servers, &functions, args.cold)?;
        let (t, json) = cold_table(&mut rows);
        println!("{t}");
        cold_rows = json;
    }
    Ok(
        json!({"rounds": args.rounds, "seconds": args.seconds, "rows": json_rows, "in_process_ns": in_process_ns, "cold": cold_rows,
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
        let p90 = sorted[((sorted.len() - 1) as f64 * 0.9).round() as usize];
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
