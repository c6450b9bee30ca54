//! What every scenario shares: the stoke server it measures (stoke-testkit's launcher, the one the
//! integration tests use), closed-loop load, the statistics, code archives, and tables. Scenarios import
//! this module (and the load generator); never each other.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use stoke_core::num::{micros_u64, saturate_usize};

use anyhow::{bail, Context, Result};
use base64::Engine;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;

use crate::loadgen::RawClient;

/// The `stoke` binary the benchmark servers run, set once by `main` (`--stoke`).
static STOKE: OnceLock<PathBuf> = OnceLock::new();

/// Sets the `stoke` binary every [`start_server`] runs; an error when there is no file there.
pub fn use_stoke(path: PathBuf) -> Result<()> {
    if !path.is_file() {
        bail!(
            "no stoke binary at {}: build it with `cargo build --release --bin stoke` (./scripts/bench does), or \
             pass --stoke PATH",
            path.display()
        );
    }
    let _ = STOKE.set(path);
    Ok(())
}

/// A table with a header row.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().copied());
    t
}

/// A benchmark server on a temp data directory: the process, its endpoint, its admin key, its sandbox.
/// Dropping it kills the server and waits for its instances to go, so the next scenario does not measure
/// their teardown.
pub struct BenchServer {
    server: stoke_testkit::Server,
    pub endpoint: String,
    pub key: String,
    pub sandbox: String,
    http: reqwest::blocking::Client,
}

impl BenchServer {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.server.pid().unwrap_or_default()
    }

    /// The VM snapshots the server has ready (`/v1/instances`' `snapshots`).
    pub fn vm_snapshots(&self) -> Result<usize> {
        let list = self.send(reqwest::Method::GET, "/v1/instances", None)?;
        Ok(list["snapshots"].as_array().map_or(0, Vec::len))
    }

    /// A GET as the admin, returning the body as text (`/metrics`).
    pub fn raw_get(&self, path: &str) -> Result<String> {
        let r = self.http.get(format!("{}{path}", self.endpoint)).bearer_auth(&self.key).send()?;
        let status = r.status();
        let text = r.text()?;
        if !status.is_success() {
            bail!("{path}: {status} {text}");
        }
        Ok(text)
    }

    /// One API call as the admin; a non-2xx answer is an error carrying the API's message.
    pub fn send(
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

/// Starts a benchmark server with extra `stoke server` flags; `tag` names its data directory (and its log,
/// with `STOKE_BENCH_SERVER_LOG` set to the server's `RUST_LOG`).
pub fn start_server(tag: &str, extra: &[&str]) -> Result<BenchServer> {
    let stoke = STOKE.get().context("the stoke binary is not set (harness::use_stoke)")?;
    let log = std::env::var("STOKE_BENCH_SERVER_LOG").ok();
    let options = stoke_testkit::Options {
        args: extra.iter().map(|s| s.to_string()).collect(),
        env: vec![("RUST_LOG".to_string(), log.clone().unwrap_or_else(|| "warn".into()))],
        log: log.map(|_| std::env::temp_dir().join(format!("stoke-bench-{tag}.log"))),
        dir_prefix: format!("stoke-bench-{tag}-"),
        ..Default::default()
    };
    let server = stoke_testkit::Server::start(stoke, options).context("the benchmark server did not start")?;
    let (endpoint, key) = (server.endpoint().to_string(), server.credentials().api_key.clone());
    let http = reqwest::blocking::Client::new();
    let list: serde_json::Value = http.get(format!("{endpoint}/v1/instances")).bearer_auth(&key).send()?.json()?;
    let sandbox = list["sandbox"].as_str().unwrap_or("?").to_string();
    Ok(BenchServer { server, endpoint, key, sandbox, http })
}

/// The OCI runtimes installed here, of those the benchmarks compare: runc, crun and gVisor's runsc.
fn oci_runtimes() -> Vec<&'static str> {
    ["runc", "crun", "runsc"]
        .into_iter()
        .filter(|r| std::process::Command::new(r).arg("--version").output().is_ok())
        .collect()
}

/// The sandboxes beyond lean this host can run, each as (short name, label, server arguments): one per OCI
/// runtime installed, then the vm sandbox where QEMU, a guest kernel with 9p and a static busybox are — on
/// KVM where it can run a guest, else emulated (and labelled so) — booting every VM (no generic VMs, no
/// snapshots), and when `with_generic` also restoring them from snapshots and keeping generic VMs.
pub fn isolating_sandboxes(with_generic: bool) -> Vec<(&'static str, String, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, String, Vec<&'static str>)> = oci_runtimes()
        .into_iter()
        .map(|r| (r, format!("oci {r}"), vec!["--sandbox", "oci", "--oci-runtime", r]))
        .collect();
    if stoke_testkit::vm::missing_parts().is_empty() {
        let accel = stoke_testkit::vm::accel();
        let how = if accel == "kvm" { "KVM" } else { "emulated, no KVM" };
        let boot = vec!["--sandbox", "vm", "--vm-accel", accel, "--generic", "none", "--vm-snapshots", "false"];
        out.push(("vm", format!("vm ({how})"), boot));
        if with_generic {
            let restore = vec!["--sandbox", "vm", "--vm-accel", accel, "--generic", "none"];
            out.push(("vm-snapshot", format!("vm + snapshot ({how})"), restore));
            out.push(("vm-generic", format!("vm + generic ({how})"), vec!["--sandbox", "vm", "--vm-accel", accel]));
        }
    }
    out
}

/// One measured run: every latency in microseconds, and the wall time.
pub struct Run {
    pub latencies_us: Vec<u64>,
    pub elapsed: Duration,
    pub errors: usize,
}

impl Run {
    /// Joins the client threads (each returns its latencies and its error count) into one run that began at
    /// `start`.
    pub fn gather(handles: Vec<std::thread::JoinHandle<(Vec<u64>, usize)>>, start: Instant) -> Run {
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
pub fn invoked_ok(client: &mut RawClient) -> bool {
    client.exchange().is_ok_and(|r| (200..300).contains(&r.status) && !r.function_error)
}

/// Base64, as the API takes code archives.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The `p` quantile (0–1) of sorted values, nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = saturate_usize(((sorted.len() as f64 - 1.0) * p).round());
    sorted[idx] as f64
}

/// Closed loop: `concurrency` clients, each a thread with its own keep-alive connection (the raw load
/// generator), for `seconds`.
pub fn closed_loop(url: &str, key: Option<&str>, body: &'static [u8], concurrency: usize, seconds: f64) -> Run {
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
                        lat.push(micros_u64(t.elapsed()));
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

/// CPU time a process has run so far, in ns: the sum over its threads' scheduler statistics (threads that
/// ended are not counted; the server's long-lived workers do the warm path's work).
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let ns = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Some(ns)
}

/// Every process below `root` (children, grandchildren, …).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// CPU time of `pid`'s descendants ([`descendants`]), not of `pid` itself, in ns, each counted as
/// [`process_cpu_ns`] counts a process: the function instances a server or an emulator runs. Processes that
/// end meanwhile drop out.
pub fn descendants_cpu_ns(pid: u32) -> u64 {
    descendants(pid).into_iter().map(|p| process_cpu_ns(p).unwrap_or(0)).sum()
}

/// Median, min and max.
pub fn spread(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

pub fn zip_with(name: &str, mode: u32, data: &[u8]) -> Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(name, zip::write::SimpleFileOptions::default().unix_permissions(mode))?;
    w.write_all(data)?;
    Ok(w.finish()?.into_inner())
}

/// Adds the regular files under `dir` to `zip` below `prefix`, with their modification times (symbolic
/// links, such as `.bin`, are left out).
pub fn add_tree(zip: &mut zip::ZipWriter<std::io::Cursor<Vec<u8>>>, dir: &Path, prefix: &str) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = format!("{prefix}/{}", e.file_name().to_string_lossy());
        let kind = e.file_type()?;
        if kind.is_dir() {
            add_tree(zip, &e.path(), &name)?;
        } else if kind.is_file() {
            let mtime = e.metadata()?.modified().ok();
            zip.start_file(&name, stoke_store::archive::entry_options(0o644, mtime))?;
            std::io::copy(&mut std::fs::File::open(e.path())?, zip)?;
        }
    }
    Ok(())
}

/// The directory python3 imports `modules` from (the last one's package directory's parent); `missing`
/// is the error when one of them is not installed.
pub fn python_site(modules: &[&str], missing: &str) -> Result<PathBuf> {
    let last = modules.last().copied().unwrap_or("os");
    let script = format!("import os, {}; print(os.path.dirname(os.path.dirname({last}.__file__)))", modules.join(", "));
    let out = Command::new("python3").args(["-c", &script]).output().context("cannot run python3")?;
    if !out.status.success() {
        bail!("{missing}");
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Closed loop over many functions, and nodes: `clients` threads, client `c` on one keep-alive connection to
/// `bases[c % bases.len()]`, each call to one of `paths` (relative to the base) picked at random — the same
/// sequence in every round — for `seconds`.
pub fn spread_load(bases: &[String], key: &str, paths: &[String], clients: usize, seconds: f64) -> Result<Run> {
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let n = paths.len().max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let mut prepared = Vec::new();
    for c in 0..clients {
        let base = &bases[c % bases.len().max(1)];
        prepared.push((RawClient::to_paths(base, &paths, Some(key), br#"{"noop":1}"#)?, c));
    }
    let start = Instant::now();
    let handles: Vec<_> = prepared
        .into_iter()
        .map(|(mut client, c)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(100_000);
                let mut errors = 0;
                // xorshift64, seeded per client: the same sequence of functions in every round.
                let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let t = Instant::now();
                    match client.exchange_nth(usize::try_from(x % n as u64).unwrap_or(0)) {
                        Ok(r) if (200..300).contains(&r.status) && !r.function_error => {
                            lat.push(micros_u64(t.elapsed()))
                        }
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    Ok(Run::gather(handles, start))
}

/// Runs `f` for every number in `range` on `threads` threads at once (each takes the next number); the first
/// error stops the others from taking more.
pub fn on_threads(range: std::ops::Range<usize>, threads: usize, f: impl Fn(usize) -> Result<()> + Sync) -> Result<()> {
    let next = std::sync::atomic::AtomicUsize::new(range.start);
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= range.end || failed.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        f(i).inspect_err(|_| failed.store(true, Ordering::Relaxed))?;
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a worker thread panicked"))?)
    })
}
