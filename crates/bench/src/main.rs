//! `stoke-bench`: measures stoke's execution core side by side, in one run, against the physical floor.
//! `./scripts/bench` builds it with `stoke` and runs it.
//!
//! Starts its own servers (the `stoke` binary next to this one, or `--stoke`) on temp data directories,
//! deploys the functions, and runs every scenario in interleaved rounds so the shared machine's noise hits
//! all of them alike. Each scenario is a module importing the harness (servers, load, statistics) and the
//! load generator, never another scenario.

mod cluster;
mod execution_core;
mod generators;
mod harness;
mod image;
mod layers;
mod load;
mod loadgen;
mod many;
mod peers;
mod prewarm;
mod queues;
mod sandboxes;
mod schedules;
mod tune;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::json;

/// The benchmark client runs on mimalloc, as it did inside the `stoke` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Measure warm invocations side by side with the physical floor, and the other scenarios (see
/// scripts/bench and BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "stoke-bench", version, max_term_width = 110)]
struct Args {
    /// The `stoke` binary whose servers are measured [default: `stoke` next to this executable].
    #[arg(long, value_name = "PATH")]
    stoke: Option<PathBuf>,
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
    /// next call, and the adaptive freeze delay), `cluster` (registry operations on SQLite vs etcd, and warm
    /// invocations on a cluster node vs a single node, with the etcd requests they make), `queues` (three
    /// nodes: forwarding to a queue's owner vs a local queue, etcd requests per first invocation, and seed
    /// 004's table across the cluster), `schedules` (the idle cost of 10,000 schedules, and how late 1,000
    /// fires due at the same second are), `generators` (the same warm invocations driven by stoke-bench's
    /// generator and by wrk, with the server's CPU counted two ways), `sandboxes` (a warm no-op on every
    /// sandbox the host runs — process, lean, runc, crun, runsc — and memory per idle instance on each).
    #[arg(long, value_delimiter = ',', default_value = "core,burst,noisy,prewarm",
          value_parser = ["core", "prewarm", "tune", "image", "layers", "burst", "noisy", "density", "many", "freeze",
                          "cluster", "queues", "schedules", "generators", "sandboxes"])]
    scenarios: Vec<String>,
    #[command(flatten)]
    core: execution_core::CoreArgs,
    #[command(flatten)]
    prewarm: prewarm::PrewarmArgs,
    #[command(flatten)]
    tune: tune::TuneArgs,
    #[command(flatten)]
    image: image::ImageArgs,
    #[command(flatten)]
    layers: layers::LayersArgs,
    #[command(flatten)]
    load: load::LoadArgs,
    #[command(flatten)]
    many: many::ManyArgs,
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
    #[command(flatten)]
    queues: queues::QueuesArgs,
    #[command(flatten)]
    schedules: schedules::SchedulesArgs,
    #[command(flatten)]
    generators: generators::GeneratorsArgs,
    #[command(flatten)]
    sandboxes: sandboxes::SandboxesArgs,
    /// Seconds each scenario runs per round.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Rounds; every scenario runs once per round, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let stoke = match &args.stoke {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find this executable")?.with_file_name("stoke"),
    };
    harness::use_stoke(stoke)?;
    let wants = |scenario: &str| args.scenarios.iter().any(|s| s == scenario);
    let mut results = json!({});
    if wants("core") {
        let bootstrap = rust_bootstrap(&args)?;
        let path = args.rust_bootstrap.clone().unwrap_or_default();
        results = execution_core::run(&args.core, &bootstrap, &path, args.rounds, args.seconds)?;
    }
    if wants("prewarm") {
        results["prewarm"] = prewarm::run(&args.prewarm)?;
    }
    if wants("tune") {
        results["tune"] = tune::run(&args.tune)?;
    }
    if wants("image") {
        results["image"] = image::run(&args.image)?;
    }
    if wants("layers") {
        results["layers"] = layers::run(&args.layers)?;
    }
    if wants("schedules") {
        results["schedules"] = schedules::run(&args.schedules)?;
    }
    if ["burst", "noisy", "density", "many", "freeze", "cluster", "queues", "generators", "sandboxes"]
        .iter()
        .any(|s| wants(s))
    {
        let bootstrap = rust_bootstrap(&args)?;
        if wants("burst") {
            results["burst"] = load::bursts(&args.load, &bootstrap, args.rounds)?;
        }
        if wants("noisy") {
            results["noisy"] = load::noisy(&args.load, &bootstrap, args.rounds, args.seconds)?;
        }
        if wants("density") {
            results["density"] = load::density(&args.load, &bootstrap)?;
        }
        if wants("many") {
            results["many"] = many::many(&args.many, &bootstrap, args.rounds, args.seconds)?;
        }
        if wants("freeze") {
            results["freeze"] = many::freeze(&bootstrap, 20)?;
        }
        if wants("cluster") {
            results["cluster"] = cluster::run(&args.cluster, &bootstrap, args.rounds, args.seconds)?;
        }
        if wants("queues") {
            results["queues"] = queues::run(&args.queues, &bootstrap, args.rounds, args.seconds)?;
        }
        if wants("sandboxes") {
            results["sandboxes"] = sandboxes::run(&args.sandboxes, &bootstrap, args.rounds, args.seconds)?;
        }
        if wants("generators") {
            let raw = args.core.raw_bootstrap.as_ref().map(std::fs::read).transpose()?;
            results["generators"] =
                generators::run(&args.generators, &bootstrap, raw.as_deref(), args.rounds, args.seconds)?;
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
            "the core, burst, noisy, density, many, freeze, cluster and queues scenarios need --rust-bootstrap (scripts/bench builds it), or pass \
             --scenarios prewarm"
        );
    };
    std::fs::read(path).with_context(|| format!("cannot read {} (scripts/bench builds it)", path.display()))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Clap checks the whole command tree (duplicate names, bad defaults) only when asked.
    #[test]
    fn command_tree_is_consistent() {
        super::Args::command().debug_assert();
    }

    #[test]
    fn a_missing_stoke_binary_says_how_to_build_it() {
        let err = super::harness::use_stoke("/nonexistent/stoke".into()).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/stoke") && err.contains("cargo build --release --bin stoke"), "{err}");
    }
}
