//! `stoke tune`: run a function at several memory sizes (or GPU shares) and recommend one (seed 002's PreEnv
//! Optimizer).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use stoke_chart::{tune_chart, TunePoint};
use stoke_server::tune::{TuneRequest, TuneView};

use crate::client::{segment, Client};
use crate::commands::invoke::read_payload;
use crate::output::{print_json, table, Format};
use crate::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// name, name:version, name:alias, or an ARN: the code and configuration to test.
    #[arg(required_unless_present = "show")]
    function: Option<String>,
    /// The event every test invocation gets: JSON text, or @FILE ('@-' for standard input).
    #[arg(long, short = 'p', default_value = "{}", value_name = "JSON|@FILE")]
    payload: String,
    /// Memory sizes to test, in MB (default 128,256,512,1024,1536,2048,3072, capped by the node). The
    /// function's current size is always tested too.
    #[arg(long, value_delimiter = ',', value_name = "MB,MB,…")]
    memory: Option<Vec<u32>>,
    /// Sweep the function's share of its GPU instead of its memory: percentages to test (a function with
    /// gpu_count 1; its current share is always tested too). Alone, `--gpu-percentage default` tests 10,25,
    /// 50,75,100.
    #[arg(long, value_delimiter = ',', value_name = "PCT,PCT,…|default", conflicts_with_all = ["memory", "chart"])]
    gpu_percentage: Option<Vec<String>>,
    /// Sweep the GPU memory of the function's share instead (MB, multiples of 256; a function with
    /// gpu_count 1). `--gpu-memory default` tests 1024 up to 32768 MB, doubling, capped by the node's GPU.
    #[arg(long, value_delimiter = ',', value_name = "MB,MB,…|default",
          conflicts_with_all = ["memory", "chart", "gpu_percentage"])]
    gpu_memory: Option<Vec<String>>,
    /// Warm invocations per size, after its cold start.
    #[arg(long, default_value_t = stoke_core::tune::DEFAULT_RUNS)]
    runs: u32,
    /// How to choose: smallest-not-slower (the smallest size within --tolerance of the fastest), cost,
    /// speed, or balanced (--weight of cost against speed).
    #[arg(long, default_value = "smallest-not-slower")]
    strategy: String,
    /// smallest-not-slower: how much slower than the fastest is still "not slower" (0.05 = 5 %).
    #[arg(long)]
    tolerance: Option<f64>,
    /// balanced: the weight of cost against speed, from 0 (speed only) to 1 (cost only).
    #[arg(long)]
    weight: Option<f64>,
    /// Set the recommended memory on $LATEST when the tune succeeds.
    #[arg(long)]
    apply: bool,
    /// With --apply: then publish $LATEST and point this alias at the new version.
    #[arg(long, requires = "apply")]
    alias: Option<String>,
    /// Also draw duration and cost against memory into this PNG file.
    #[arg(long, value_name = "FILE.png")]
    chart: Option<std::path::PathBuf>,
    /// Start the tune and print its id without waiting (follow it with `stoke tune --show ID`).
    #[arg(long, conflicts_with = "show")]
    no_wait: bool,
    /// Show (or wait for) the tune with this id instead of starting one.
    #[arg(long, value_name = "ID")]
    show: Option<String>,
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<()> {
    let client = Client::from_args(global)?;
    let id = match &args.show {
        Some(id) => id.clone(),
        None => {
            let payload: serde_json::Value =
                serde_json::from_slice(&read_payload(&args.payload)?).context("the payload is not valid JSON")?;
            let gpu_percentage = numbers(
                args.gpu_percentage.as_deref(),
                &stoke_core::tune::DEFAULT_GPU_PERCENTAGES,
                "--gpu-percentage takes whole percentages, e.g. 25,50,100 (or default)",
            )?;
            // The defaults, capped by the node's largest GPU (a larger size would be refused).
            let gpu_memory = match args.gpu_memory.as_deref() {
                Some([d]) if d == "default" => {
                    let (node, _): (stoke_server::http::views::NodeView, _) =
                        client.json(client.request(Method::GET, "/v1/node"))?;
                    let largest = node.gpus.iter().map(|g| g.memory_mb).max().filter(|m| *m > 0);
                    let sizes = stoke_core::tune::DEFAULT_GPU_MEMORY_MB;
                    Some(sizes.iter().copied().filter(|m| largest.is_none_or(|l| u64::from(*m) <= l)).collect())
                }
                other => numbers(other, &[], "--gpu-memory takes sizes in MB, e.g. 2048,4096 (or default)")?,
            };
            let req = TuneRequest {
                payload: Some(payload),
                memory: args.memory.clone(),
                gpu_percentage,
                gpu_memory,
                runs: Some(args.runs),
                strategy: Some(args.strategy.clone()),
                tolerance: args.tolerance,
                weight: args.weight,
                apply: args.apply,
                alias: args.alias.clone(),
            };
            let function = args.function.as_deref().unwrap_or_default();
            let path = format!("/v1/functions/{}/tune", segment(function));
            let (view, raw): (TuneView, _) = client.json(client.request(Method::POST, &path).json(&req))?;
            if args.no_wait {
                if global.output == Format::Json {
                    print_json(&raw);
                } else {
                    println!("{}", view.id);
                }
                return Ok(());
            }
            view.id
        }
    };
    let (view, raw) = follow(&client, &id, global.output == Format::Table)?;
    if let Some(path) = &args.chart {
        std::fs::write(path, chart(&view)).with_context(|| format!("cannot write the chart to {}", path.display()))?;
        eprintln!("chart written to {}", path.display());
    }
    if global.output == Format::Json {
        print_json(&raw);
    } else {
        print_tune(&view);
    }
    if let Some(e) = &view.error {
        bail!("tune {} failed ({}): {}", view.id, e.code, e.message);
    }
    Ok(())
}

/// A `--gpu-…` list: whole numbers (a trailing `%` allowed), or `default` for `defaults`.
fn numbers(list: Option<&[String]>, defaults: &[u32], what: &str) -> Result<Option<Vec<u32>>> {
    match list {
        None => Ok(None),
        Some([d]) if d == "default" => Ok(Some(defaults.to_vec())),
        Some(list) => Ok(Some(
            list.iter()
                .map(|p| p.trim().trim_end_matches('%').parse::<u32>())
                .collect::<Result<Vec<_>, _>>()
                .context(what.to_string())?,
        )),
    }
}

/// The tune's chart (PNG): the sizes that ran, and the recommended one.
fn chart(view: &TuneView) -> Vec<u8> {
    let sizes: Vec<TunePoint> = view
        .sizes
        .iter()
        .filter_map(|r| Some(TunePoint { memory_mb: r.memory_mb, warm_ms: r.warm_ms?, cost: r.cost? }))
        .collect();
    tune_chart(&view.function, &sizes, view.recommendation.as_ref().map(|r| r.memory_mb))
}

/// Polls the tune until it ends, drawing a progress bar on a terminal.
fn follow(client: &Client, id: &str, bar: bool) -> Result<(TuneView, serde_json::Value)> {
    let path = format!("/v1/tunes/{}", segment(id));
    let progress = if bar && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let p = ProgressBar::new(0);
        p.set_style(
            ProgressStyle::with_template("{spinner} tuning {msg} [{bar:30}] {pos}/{len} invocations ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Some(p)
    } else {
        None
    };
    loop {
        let (view, raw): (TuneView, _) = client.json(client.request(Method::GET, &path))?;
        if let Some(p) = &progress {
            p.set_length(u64::from(view.progress.total));
            p.set_position(u64::from(view.progress.done));
            p.set_message(view.function.clone());
        }
        if view.state != "running" {
            if let Some(p) = progress {
                p.finish_and_clear();
            }
            return Ok((view, raw));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.1}"))
}

/// The tune as a table, its recommendation and keep-alive advice.
pub fn print_tune(view: &TuneView) {
    use stoke_core::tune::Dimension;
    let dimension = view.dimension;
    let gpu = dimension != Dimension::Memory;
    let (first, unit) = match dimension {
        Dimension::Memory => ("memory MB", "MB"),
        Dimension::GpuPercentage => ("GPU %", "% of the GPU"),
        Dimension::GpuMemory => ("GPU MB", "MB of GPU memory"),
    };
    let mut t = table(&[first, "warm ms", "p90 ms", "cold ms", "init ms", "peak MB", "µ$ / call", "errors"]);
    let pick = view.recommendation.as_ref().map(|r| match dimension {
        Dimension::Memory => r.memory_mb,
        Dimension::GpuPercentage => r.gpu_percentage.unwrap_or(100),
        Dimension::GpuMemory => r.gpu_memory_mb.unwrap_or(0),
    });
    for r in &view.sizes {
        let here = r.value(dimension);
        let mark = if Some(here) == pick { " ◀" } else { "" };
        let errors = match (&r.error, r.out_of_memory) {
            (_, true) => format!("{} (out of memory)", r.errors),
            (Some(e), false) => format!("{} ({})", r.errors, e.chars().take(40).collect::<String>()),
            (None, false) => "0".into(),
        };
        t.add_row(vec![
            format!("{here}{mark}"),
            ms(r.warm_ms),
            ms(r.warm_p90_ms),
            ms(r.cold_ms),
            ms(r.init_ms),
            r.peak_mb.to_string(),
            r.cost.map_or_else(|| "-".into(), |c| format!("{:.3}", c * 1e6)),
            errors,
        ]);
    }
    println!("{t}");
    let strategy = serde_json::to_value(view.strategy).ok();
    let name = strategy.as_ref().and_then(|s| s["name"].as_str()).unwrap_or("?");
    println!("tune {} of {} ({name}, {} warm runs per size)", view.id, view.reference, view.runs);
    if !view.skipped.is_empty() {
        let skipped: Vec<String> = view.skipped.iter().map(u32::to_string).collect();
        println!("not tested (larger sizes stopped helping): {} {unit}", skipped.join(", "));
    }
    if !view.cpu_follows_memory && !gpu {
        println!(
            "note: CPU is not capped by memory on this server, so durations do not fall with memory \
             (start it with --cpu-quota on the lean sandbox for Lambda-like CPU shares)"
        );
    }
    if !view.memory_enforced {
        println!("note: this server's sandbox does not enforce memory limits; out-of-memory cannot show");
    }
    match &view.recommendation {
        Some(r) => println!("recommendation: {}", r.summary),
        None => println!("recommendation: none"),
    }
    if let Some(a) = &view.applied {
        let alias = match (&a.alias, a.version) {
            (Some(alias), Some(v)) => format!(", published as version {v}, alias {alias} moved"),
            _ => String::new(),
        };
        if let Some(p) = a.gpu_percentage {
            println!("applied: $LATEST set to {p} % of its GPU{alias}");
        }
        if let Some(m) = a.gpu_memory_mb {
            println!("applied: $LATEST set to {m} MB of GPU memory{alias}");
        }
        match (&a.alias, a.version) {
            _ if gpu => {}
            (Some(alias), Some(v)) => {
                println!("applied: $LATEST set to {} MB, published as version {v}, alias {alias} moved", a.memory_mb)
            }
            _ => println!("applied: $LATEST set to {} MB", a.memory_mb),
        }
    }
    match &view.keep_alive {
        Some(k) => println!(
            "keep-alive: {} s on the last {} calls (now {} s: {} cold starts, {:.0} idle instance-s; \
             chosen: {} cold starts, {:.0} idle instance-s)",
            k.chosen.keep_alive_s,
            k.calls,
            k.current.keep_alive_s,
            k.current.cold_starts,
            k.current.idle_instance_s,
            k.chosen.cold_starts,
            k.chosen.idle_instance_s
        ),
        None => println!(
            "keep-alive: not enough recorded traffic to advise (needs {} calls)",
            stoke_core::keepalive::MIN_CALLS
        ),
    }
}
