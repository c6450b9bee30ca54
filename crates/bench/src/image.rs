//! `stoke-bench --scenarios image`: seed 000's image workflow (`thumb` ‖ (`format` → `webp`)), with real
//! image work (Pillow) on images in an S3-compatible store on loopback (moto), in five modes side by side:
//! (a) no help, (b) `format` prepares `webp`, (c) prepare + prefetch of the image before `wait_turn`,
//! (d) the platform's `jit` pre-warmer, (e) `eager`.
//!
//! As in the seed's experiment (2621 ms for (a) is two cold starts in a row plus ~550 ms of work), every
//! function starts cold: before every measured execution the instances of all three are drained (a
//! configuration change). The functions import boto3 and Pillow at init (a real cold start), plus
//! `--image-init` seconds standing in for the seed's ~1 s library set-up; every S3 request pays
//! `--image-latency` ms (the seed's store was S3 in another region: ~190 ms per download).
//!
//! In (b) and (c) a cold `format` prepares `webp` first thing in its init, for the step its instance was
//! started for (`stoke.origin()`), so `webp`'s cold start overlaps `format`'s — what the seed's numbers
//! show (1497 ms, 153 ms held).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::harness::{b64, python_site, spread, start_server, table, zip_with, BenchServer};

const SOURCE: &str = include_str!("../../../examples/image/image.py");
const WORKFLOW: &str = include_str!("../../../examples/image/workflow.json");

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// Measured executions per mode, after one unmeasured round that warms `thumb` and `format` and
    /// teaches the pre-warmer.
    #[arg(long, default_value_t = 5, value_name = "N")]
    image_rounds: usize,
    /// Milliseconds added to every S3 request (a store in another region).
    #[arg(long, default_value_t = 150, value_name = "MS")]
    image_latency: u64,
    /// Width of the test image in pixels (height: three quarters of it).
    #[arg(long, default_value_t = 640, value_name = "PX")]
    image_width: u32,
    /// Seconds every function's init takes on top of importing boto3 and Pillow.
    #[arg(long, default_value_t = 0.3, value_name = "S")]
    image_init: f64,
}

/// (mode, pre-warm policy, what it is).
const MODES: [(&str, &str, &str); 5] = [
    ("a", "off", "no help"),
    ("b", "off", "prepare"),
    ("c", "off", "prepare + prefetch"),
    ("d", "jit", "platform jit"),
    ("e", "eager", "platform eager"),
];

/// The S3-compatible store: a moto server on a free loopback port, stopped when dropped.
struct ObjectStore {
    child: Child,
    endpoint: String,
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_object_store() -> Result<ObjectStore> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the moto server (python3 -m moto.server; scripts/bench installs moto[server])")?;
    let store = ObjectStore { child, endpoint: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("the moto server did not listen on port {port} within 30 s (is moto[server] installed?)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(store)
}

/// The directory holding the node's boto3 and Pillow: functions find them there through PYTHONPATH, as a
/// shared library directory (seed 003) rather than copies in every archive.
fn library_dir() -> Result<String> {
    let site = python_site(
        &["boto3", "PIL"],
        "the image scenario needs boto3 and Pillow for python3 (scripts/bench installs them)",
    )?;
    Ok(site.to_string_lossy().into_owned())
}

/// One measured execution.
#[derive(Default, Clone)]
struct Sample {
    e2e_ms: f64,
    /// Billed run time plus held time: what seed 000 compares (549 / 702 / 578 ms).
    billed_ms: f64,
    held_ms: f64,
    init_ms: f64,
    cold_starts: f64,
}

fn wait_until_active(server: &BenchServer, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.send(reqwest::Method::GET, &format!("/v1/functions/{name}"), None)?["state"] == "UPDATING" {
        if Instant::now() > deadline {
            bail!("function {name} is still updating after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn execute(server: &BenchServer, workflow: &str, policy: &str) -> Result<Sample> {
    let started = Instant::now();
    let e = server.send(
        reqwest::Method::POST,
        &format!("/v1/workflows/{workflow}/run"),
        Some(json!({"input": {"key": "photo.jpg"}, "prewarm": policy})),
    )?;
    let e2e_ms = started.elapsed().as_secs_f64() * 1000.0;
    if e["status"] != "SUCCEEDED" {
        bail!("{workflow} ended {}: {} {}", e["status"], e["error"], e["cause"]);
    }
    let id = e["id"].as_str().unwrap_or_default();
    let t = server.send(reqwest::Method::GET, &format!("/v1/executions/{id}/timeline"), None)?;
    let bill = &t["bill"];
    let n = |k: &str| bill[k].as_f64().unwrap_or(0.0);
    Ok(Sample {
        e2e_ms,
        billed_ms: n("billed_ms") + n("held_ms"),
        held_ms: n("held_ms"),
        init_ms: n("init_ms"),
        cold_starts: t["cold_starts"].as_f64().unwrap_or(0.0),
    })
}

/// Runs the five modes side by side (interleaved rounds) and prints seed 000's table.
pub fn run(args: &ImageArgs) -> Result<Value> {
    if args.image_rounds == 0 || !args.image_init.is_finite() || args.image_init < 0.0 || args.image_width < 16 {
        bail!("--image-rounds must be at least 1, --image-init 0 or more and --image-width at least 16");
    }
    let libraries = library_dir()?;
    let store = start_object_store()?;
    let server = start_server("image", &[])?;
    let b64 = b64(&zip_with("image.py", 0o644, SOURCE.as_bytes())?);
    let template: Value = serde_json::from_str(WORKFLOW).context("examples/image/workflow.json")?;
    let env = |mode: &str, round: usize| {
        json!({"MODE": mode, "BUCKET": "images", "S3_ENDPOINT": store.endpoint, "NEXT": format!("webp-{mode}"),
               "LATENCY_MS": args.image_latency.to_string(), "INIT_S": args.image_init.to_string(),
               "PYTHONPATH": libraries, "ROUND": round.to_string()})
    };
    let create = |name: &str, handler: &str, environment: Value| {
        server.send(
            reqwest::Method::POST,
            "/v1/functions",
            Some(json!({"name": name, "runtime": "python3.12", "handler": format!("image.{handler}"),
                        "memory_mb": 512, "timeout_s": 60, "environment": environment, "code_base64": b64})),
        )
    };
    create("setup", "setup", env("a", 0))?;
    let size = json!({"key": "photo.jpg", "width": args.image_width, "height": args.image_width * 3 / 4});
    let image = server.send(reqwest::Method::POST, "/v1/functions/setup/invoke", Some(size))?;
    for (mode, _, _) in MODES {
        for f in ["thumb", "format", "webp"] {
            create(&format!("{f}-{mode}"), f, env(mode, 0))?;
        }
        let definition = WORKFLOW_FUNCTIONS.iter().fold(template.to_string(), |d, f| {
            d.replace(&format!("\"Resource\": \"{f}\""), &format!("\"Resource\": \"{f}-{mode}\""))
                .replace(&format!("\"Resource\":\"{f}\""), &format!("\"Resource\":\"{f}-{mode}\""))
        });
        let definition: Value = serde_json::from_str(&definition)?;
        server.send(
            reqwest::Method::POST,
            "/v1/workflows",
            Some(json!({"name": format!("image-{mode}"), "definition": definition})),
        )?;
    }
    eprintln!(
        "image: {} modes, {} measured rounds (+1 to warm), {} byte JPEG, S3 latency {} ms, init +{} s, sandbox {}",
        MODES.len(),
        args.image_rounds,
        image["bytes"],
        args.image_latency,
        args.image_init,
        server.sandbox
    );
    let mut samples = vec![Vec::<Sample>::new(); MODES.len()];
    for round in 0..=args.image_rounds {
        for (mi, (mode, policy, _)) in MODES.iter().enumerate() {
            // Every function starts cold, as in the seed's (a).
            for f in WORKFLOW_FUNCTIONS {
                let name = format!("{f}-{mode}");
                server.send(
                    reqwest::Method::PATCH,
                    &format!("/v1/functions/{name}"),
                    Some(json!({"environment": env(mode, round + 1)})),
                )?;
                wait_until_active(&server, &name)?;
            }
            let s = execute(&server, &format!("image-{mode}"), policy)?;
            eprintln!(
                "round {round} ({mode}) {:>7.0} ms  billed+held {:>5.0} ms  held {:>4.0}  init {:>5.0}  cold {}{}",
                s.e2e_ms,
                s.billed_ms,
                s.held_ms,
                s.init_ms,
                s.cold_starts,
                if round == 0 { "  (warming)" } else { "" }
            );
            if round > 0 {
                samples[mi].push(s);
            }
        }
    }
    let median = |mi: usize, f: fn(&Sample) -> f64| spread(&mut samples[mi].iter().map(f).collect::<Vec<_>>());
    let (base_time, _, _) = median(0, |s| s.e2e_ms);
    let (base_bill, _, _) = median(0, |s| s.billed_ms);
    let mut t = table(&[
        "mode",
        "end to end ms p50 [min-max]",
        "vs (a)",
        "billed+held ms",
        "vs (a)",
        "held ms",
        "init ms",
        "cold starts",
    ]);
    let mut out = Vec::new();
    let mut times = Vec::new();
    for (mi, (mode, policy, what)) in MODES.iter().enumerate() {
        let (time, lo, hi) = median(mi, |s| s.e2e_ms);
        let (bill, _, _) = median(mi, |s| s.billed_ms);
        let (held, _, _) = median(mi, |s| s.held_ms);
        let (init, _, _) = median(mi, |s| s.init_ms);
        let (cold, _, _) = median(mi, |s| s.cold_starts);
        times.push(time);
        t.add_row(vec![
            format!("({mode}) {what}"),
            format!("{time:.0} [{lo:.0}-{hi:.0}]"),
            format!("{:.2}", time / base_time),
            format!("{bill:.0}"),
            format!("{:.2}", bill / base_bill),
            format!("{held:.0}"),
            format!("{init:.0}"),
            format!("{cold:.0}"),
        ]);
        out.push(json!({"mode": mode, "policy": policy, "what": what, "e2e_p50_ms": time, "e2e_min_ms": lo,
            "e2e_max_ms": hi, "time_vs_a": time / base_time, "billed_held_ms_p50": bill, "bill_vs_a": bill / base_bill,
            "held_ms_p50": held, "init_ms_p50": init, "cold_starts_p50": cold}));
    }
    println!(
        "seed 000 image workflow: thumb ‖ (format → webp), every function cold, S3 latency {} ms\n{t}",
        args.image_latency
    );
    println!(
        "(b)/(a) {:.2} (seed: 0.57)   (c)/(a) {:.2} (seed: 0.50)   (d)/(e) {:.2} (goal: within 5 %)",
        times[1] / times[0],
        times[2] / times[0],
        times[3] / times[4]
    );
    drop(server);
    drop(store);
    Ok(Value::Array(out))
}

/// The functions the example workflow names.
const WORKFLOW_FUNCTIONS: [&str; 3] = ["thumb", "format", "webp"];
