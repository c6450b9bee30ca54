//! `stoke nodes`: the nodes of the cluster (admin only).

use anyhow::Result;
use reqwest::Method;
use stoke_server::http::cluster::NodeList;

use crate::client::Client;
use crate::output::{print_json, table, Format};
use crate::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(global: &GlobalArgs, _args: Args) -> Result<()> {
    let client = Client::from_args(global)?;
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
            n.gpus.to_string(),
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
