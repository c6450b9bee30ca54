//! `stoke nodes`: the nodes of the cluster (admin only).

use anyhow::Result;
use reqwest::Method;
use stoke_server::http::cluster::NodeList;
use stoke_server::http::views::NodeHistory;

use crate::client::Client;
use crate::output::{print_json, table, Format};
use crate::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Instead of the nodes, show what the node this command talks to did over the last MINUTES (up to 60),
    /// in ten-second slots: invocations per second, errors, throttles, cold starts, queued, p50 and p99
    #[arg(long, value_name = "MINUTES", num_args = 0..=1, default_missing_value = "10",
          value_parser = clap::value_parser!(u64).range(1..=60))]
    history: Option<u64>,
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<()> {
    let client = Client::from_args(global)?;
    if let Some(minutes) = args.history {
        return history(&client, global, minutes);
    }
    let (list, raw): (NodeList, _) = client.json(client.request(Method::GET, "/v1/nodes"))?;
    if global.output == Format::Json {
        print_json(&raw);
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut t = table(&[
        "NODE",
        "STATE",
        "ADDRESS",
        "MEMORY",
        "CPUS",
        "GPUS",
        "SANDBOX",
        "INSTANCES",
        "QUEUES",
        "HOSTING",
        "RESERVED",
        "SEEN",
        "VERSION",
    ]);
    for n in list.nodes {
        let seen = format!("{:.1}s ago", (now - n.heartbeat_ms).max(0) as f64 / 1000.0);
        t.add_row(vec![
            n.name,
            n.state,
            if n.advertise.is_empty() { "-".into() } else { n.advertise },
            format!("{} MB", n.memory_mb),
            n.cpus.to_string(),
            gpus_in_words(n.gpus, &n.gpu_use),
            n.sandbox,
            n.instances.to_string(),
            n.queues.to_string(),
            n.hosting.to_string(),
            match (n.reserved_mb, n.reserved_gpus) {
                (0, 0) => "-".to_string(),
                (mb, 0) => format!("{mb} MB"),
                (mb, gpus) => format!("{mb} MB, {gpus} GPU"),
            },
            seen,
            n.version,
        ]);
    }
    println!("{t}");
    if list.mode == "single" {
        println!("(a single node: start nodes with --cluster to run several; see docs/cluster.md)");
    }
    Ok(())
}

/// A node's GPUs for the table: the count, and what instances hold of each that holds anything
/// (`2 (0: 100%, 1: 50% 4096 MB)`).
fn gpus_in_words(count: u32, used: &[stoke_server::http::views::GpuView]) -> String {
    let held: Vec<String> = used
        .iter()
        .filter(|g| g.reserved_percentage > 0 || g.reserved_mb > 0)
        .map(|g| {
            if g.whole_instances > 0 {
                format!("{}: whole", g.index)
            } else {
                format!("{}: {}% {} MB", g.index, g.reserved_percentage, g.reserved_mb)
            }
        })
        .collect();
    if held.is_empty() {
        count.to_string()
    } else {
        format!("{count} ({})", held.join(", "))
    }
}

fn history(client: &Client, global: &GlobalArgs, minutes: u64) -> Result<()> {
    let (h, raw): (NodeHistory, _) = client.json(client.request(Method::GET, "/v1/node/history"))?;
    if global.output == Format::Json {
        print_json(&raw);
        return Ok(());
    }
    let keep = usize::try_from(minutes * 60 / h.slot_s.max(1)).unwrap_or(usize::MAX);
    let points = &h.points[h.points.len().saturating_sub(keep)..];
    if points.is_empty() {
        println!("no slot has ended yet: the node counts in {} s slots", h.slot_s);
        return Ok(());
    }
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1} ms"));
    let mut t = table(&["UNTIL", "INVOCATIONS/S", "ERRORS", "THROTTLES", "COLD", "QUEUED", "P50", "P99"]);
    for p in points {
        t.add_row(vec![
            stoke_core::time::format_rfc3339(p.end_ms),
            format!("{:.1}", p.invocations_per_s),
            p.errors.to_string(),
            p.throttles.to_string(),
            p.cold_starts.to_string(),
            p.queued.to_string(),
            ms(p.p50_ms),
            ms(p.p99_ms),
        ]);
    }
    println!("{t}");
    println!("(durations within 25 %: each slot keeps a histogram, not every sample)");
    Ok(())
}
