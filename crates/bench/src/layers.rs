//! `stoke-bench --scenarios layers`: seed 003's experiment — how long loading a set of libraries takes from
//! a layer shared by every instance versus from a copy in each function's own archive, at several
//! concurrencies, per sandbox. As in the seed, the libraries are Node modules (lodash, express, react,
//! installed once with npm into a cache directory); each function measures its `require`s at init and
//! reports where they came from. Functions are new for every measurement, so every instance is cold.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::harness::{add_tree, b64, isolating_sandboxes, spread, start_server, table, BenchServer};

#[derive(Debug, clap::Args)]
pub struct LayersArgs {
    /// Concurrency levels of the layers scenario: that many new functions start at once.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16", value_name = "N,...")]
    layers_concurrency: Vec<usize>,
    /// Rounds of the layers scenario (every sandbox, mode and concurrency once per round, in turn).
    #[arg(long, default_value_t = 2, value_name = "N")]
    layers_rounds: usize,
    /// Where the layers scenario draws its chart (PNG).
    #[arg(long, default_value = "bench-layers.png", value_name = "FILE")]
    layers_chart: PathBuf,
}

/// The modules loaded, as in seed 003.
const MODULES: [&str; 3] = ["lodash", "express", "react"];

/// A function that times its `require`s at init and reports them with the path express came from.
const LOADER: &str = r#"const t0 = process.hrtime.bigint();
const loaded = ['lodash', 'express', 'react'].map((m) => require(m));
const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
exports.handler = async () => ({ load_ms: loadMs, modules: loaded.length, from: require.resolve('express') });
"#;

/// The modules installed once (npm) in a cache directory; returns its `node_modules`.
fn node_modules() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join("stoke-bench-node-libs");
    let modules = dir.join("node_modules");
    if MODULES.iter().all(|m| modules.join(m).join("package.json").is_file()) {
        return Ok(modules);
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!("layers: installing {} with npm into {}", MODULES.join(", "), dir.display());
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(&dir)
        .args(MODULES)
        .status()
        .context("cannot run npm (the layers scenario needs node and npm; scripts/prereqs installs them)")?;
    if !status.success() {
        bail!("npm install {} failed", MODULES.join(" "));
    }
    Ok(modules)
}

/// Regular files under `dir` and their bytes.
fn tree_size(dir: &Path) -> (u64, u64) {
    let mut total = (0, 0);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => {
                let (f, b) = tree_size(&e.path());
                total = (total.0 + f, total.1 + b);
            }
            Ok(t) if t.is_file() => total = (total.0 + 1, total.1 + e.metadata().map_or(0, |m| m.len())),
            _ => {}
        }
    }
    total
}

fn archive(modules: Option<(&Path, &str)>, files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
    for (name, data) in files {
        zip.start_file(*name, options)?;
        std::io::Write::write_all(&mut zip, data)?;
    }
    if let Some((dir, prefix)) = modules {
        add_tree(&mut zip, dir, prefix)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// One cell of the experiment: every instance's load time and cold invoke time, over the rounds.
struct Cell {
    sandbox: String,
    mode: &'static str,
    concurrency: usize,
    load_ms: Vec<f64>,
    cold_ms: Vec<f64>,
}

/// Starts `c` new functions at once on `server` and returns (load ms, cold invoke ms) of each.
fn burst(server: &BenchServer, mode: &str, c: usize, tag: &str, modules: &Path) -> Result<Vec<(f64, f64)>> {
    let names: Vec<String> = (0..c).map(|i| format!("load-{mode}-{tag}-{i}")).collect();
    for name in &names {
        let mut body = json!({"name": name, "runtime": "nodejs20.x", "handler": "index.handler", "memory_mb": 256, "timeout_s": 120});
        if mode == "shared" {
            body["code_base64"] = json!(b64(&archive(None, &[("index.js", LOADER.as_bytes())])?));
            body["layers"] = json!(["node-libs:1"]);
        } else {
            // A copy of its own: the marker makes every archive (and so its unpacked tree) distinct.
            let marker = format!("{name}\n");
            let files: [(&str, &[u8]); 2] = [("index.js", LOADER.as_bytes()), ("copy.txt", marker.as_bytes())];
            body["code_base64"] = json!(b64(&archive(Some((modules, "node_modules")), &files)?));
        }
        server.send(reqwest::Method::POST, "/v1/functions", Some(body))?;
    }
    let results: Vec<Result<(f64, f64)>> = std::thread::scope(|scope| {
        let runs: Vec<_> = names
            .iter()
            .map(|name| {
                scope.spawn(move || -> Result<(f64, f64)> {
                    let started = Instant::now();
                    let out =
                        server.send(reqwest::Method::POST, &format!("/v1/functions/{name}/invoke"), Some(json!({})))?;
                    let cold = started.elapsed().as_secs_f64() * 1000.0;
                    let Some(load) = out["load_ms"].as_f64() else { bail!("{name} answered {out}") };
                    let from = out["from"].as_str().unwrap_or_default();
                    let expected = if mode == "shared" { "/nodejs/node_modules/" } else { "/node_modules/express" };
                    if !from.contains(expected) || (mode == "copy" && from.contains("/nodejs/")) {
                        bail!("{name} loaded express from {from}, not from its {mode} copy");
                    }
                    Ok((load, cold))
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a client panicked")))).collect()
    });
    for name in &names {
        let _ = server.send(reqwest::Method::DELETE, &format!("/v1/functions/{name}"), None);
    }
    results.into_iter().collect()
}

pub fn run(args: &LayersArgs) -> Result<Value> {
    let modules = node_modules()?;
    let mut servers = vec![(start_server("layers-process", &["--sandbox", "process"])?, "process".to_string())];
    // No generic instances or zygotes: every instance loads its modules itself.
    let lean = start_server("layers-lean", &["--generic", "none", "--zygotes", "0"])?;
    if lean.sandbox == "lean" {
        servers.push((lean, "lean".to_string()));
        for (short, label, flags) in isolating_sandboxes(false) {
            servers.push((start_server(&format!("layers-{short}"), &flags)?, label));
        }
    } else {
        eprintln!("layers: the lean sandbox needs root, so only the process sandbox runs");
    }
    let layer = archive(Some((&modules, "nodejs/node_modules")), &[])?;
    for (server, _) in &servers {
        server.send(
            reqwest::Method::POST,
            "/v1/layers/node-libs/versions",
            Some(json!({"code_base64": b64(&layer)})),
        )?;
    }
    let mut cells = Vec::new();
    for (_, label) in &servers {
        for mode in ["shared", "copy"] {
            for &c in &args.layers_concurrency {
                cells.push(Cell { sandbox: label.clone(), mode, concurrency: c, load_ms: vec![], cold_ms: vec![] });
            }
        }
    }
    for round in 0..args.layers_rounds {
        for (ci, &c) in args.layers_concurrency.iter().enumerate() {
            for (si, (server, label)) in servers.iter().enumerate() {
                for (mi, mode) in ["shared", "copy"].into_iter().enumerate() {
                    let got = burst(server, mode, c, &format!("r{round}"), &modules)?;
                    let cell = &mut cells[(si * 2 + mi) * args.layers_concurrency.len() + ci];
                    for (load, cold) in got {
                        cell.load_ms.push(load);
                        cell.cold_ms.push(cold);
                    }
                    let p50 = spread(&mut cell.load_ms.clone()).0;
                    eprintln!("round {} c={c:<2} {label:<9} {mode:<6} load p50 {p50:>7.1} ms", round + 1);
                }
            }
        }
    }
    let mut headers = vec!["sandbox".to_string(), "modules from".to_string()];
    headers.extend(args.layers_concurrency.iter().map(|c| format!("c={c}")));
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut load_table = table(&header_refs);
    let mut cold_table = table(&header_refs);
    let mut rows = Vec::new();
    let mut series = Vec::new();
    for group in cells.chunks_mut(args.layers_concurrency.len()) {
        let (sandbox, mode) = (group[0].sandbox.clone(), group[0].mode);
        let from = if mode == "shared" { "shared layer" } else { "own copy" };
        let mut load_row = vec![sandbox.clone(), from.to_string()];
        let mut cold_row = load_row.clone();
        let mut points = Vec::new();
        for cell in group.iter_mut() {
            let (load, lo, hi) = spread(&mut cell.load_ms);
            let (cold, _, _) = spread(&mut cell.cold_ms);
            load_row.push(format!("{load:.1} [{lo:.0}-{hi:.0}]"));
            cold_row.push(format!("{cold:.0}"));
            points.push((cell.concurrency as f64, load));
            rows.push(json!({"sandbox": sandbox, "mode": mode, "concurrency": cell.concurrency, "load_p50_ms": load,
                "load_min_ms": lo, "load_max_ms": hi, "cold_invoke_p50_ms": cold, "instances": cell.load_ms.len()}));
        }
        load_table.add_row(load_row);
        cold_table.add_row(cold_row);
        series.push((format!("{sandbox} {mode}"), mode == "copy", points));
    }
    println!("loading {} at init, ms (median over every instance [min-max]):\n{load_table}", MODULES.join(", "));
    println!("cold invoke end to end, ms (median):\n{cold_table}");
    let (files, bytes) = tree_size(&modules);
    println!(
        "the modules are {files} files, {:.1} MB: a shared layer is unpacked once per node; an own copy once per \
         function (and cached once per copy)",
        bytes as f64 / 1e6
    );
    let png = stoke_chart::lines_chart(
        "SEED 003: LOADING LODASH, EXPRESS, REACT AT INIT",
        "CONCURRENT COLD STARTS",
        "LOAD MS (P50)",
        &series,
    );
    std::fs::write(&args.layers_chart, png)
        .with_context(|| format!("cannot write the chart to {}", args.layers_chart.display()))?;
    eprintln!("layers: chart written to {}", args.layers_chart.display());
    Ok(json!({"modules": MODULES, "files": files, "bytes": bytes, "rounds": args.layers_rounds, "rows": rows}))
}
