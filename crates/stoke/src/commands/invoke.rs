//! `stoke invoke`, `stoke instances`, `stoke logs`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use reqwest::Method;
use stoke_server::http::invoke::{InstanceList, LogList};

use crate::client::{segment, Client};
use crate::output::{print_json, table, Format};
use crate::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// name, name:version, name:alias, or an ARN.
    function: String,
    /// The event: JSON text, or @FILE to read it from a file ('@-' for standard input).
    #[arg(long, short = 'p', default_value = "{}", value_name = "JSON|@FILE")]
    payload: String,
    /// Also print the invocation's log (START … REPORT) to standard error.
    #[arg(long)]
    log: bool,
}

pub(crate) fn read_payload(spec: &str) -> Result<Vec<u8>> {
    match spec.strip_prefix('@') {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
            Ok(buf)
        }
        Some(path) => std::fs::read(path).with_context(|| format!("cannot read payload file {path}")),
        None => {
            serde_json::from_str::<serde_json::Value>(spec)
                .with_context(|| format!("--payload is not valid JSON: {spec:?} (use @FILE to read a file)"))?;
            Ok(spec.as_bytes().to_vec())
        }
    }
}

/// Prints the function's output on stdout and a one-line report on stderr; fails if the function failed.
pub fn invoke(global: &GlobalArgs, args: InvokeArgs) -> Result<()> {
    let client = Client::from_args(global)?;
    let payload = read_payload(&args.payload)?;
    let mut req =
        client.request(Method::POST, &format!("/v1/functions/{}/invoke", segment(&args.function))).body(payload);
    if args.log {
        req = req.query(&[("log", "tail")]);
    }
    let resp = client.send(req)?;
    let h = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let error = h("x-stoke-function-error");
    let (request_id, version) =
        (h("x-stoke-request-id").unwrap_or_default(), h("x-stoke-executed-version").unwrap_or_default());
    let (duration, billed, memory) =
        (h("x-stoke-duration-ms"), h("x-stoke-billed-duration-ms"), h("x-stoke-max-memory-used-mb"));
    let init = h("x-stoke-init-duration-ms");
    let log = h("x-stoke-log").and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    let body = resp.bytes()?;
    if global.output == Format::Json {
        let output: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into()));
        print_json(&serde_json::json!({
            "request_id": request_id, "executed_version": version, "function_error": error, "output": output,
            "duration_ms": duration, "billed_duration_ms": billed, "max_memory_used_mb": memory, "init_duration_ms": init,
        }));
    } else {
        std::io::stdout().write_all(&body)?;
        println!();
        if let Some(log) = &log {
            eprintln!("{}", String::from_utf8_lossy(log));
        }
        let cold = init.map(|i| format!(", cold start {i} ms")).unwrap_or_default();
        eprintln!(
            "request {request_id} on version {version}: {} ms{cold}, billed {} ms, {} MB used",
            duration.unwrap_or_default(),
            billed.unwrap_or_default(),
            memory.unwrap_or_default()
        );
    }
    match error {
        Some(e) => anyhow::bail!("the function failed with {e}"),
        None => Ok(()),
    }
}

#[derive(Debug, clap::Args)]
pub struct InstancesArgs {
    /// Only this function's instances.
    function: Option<String>,
    /// Refresh every second until interrupted.
    #[arg(long, short = 'w')]
    watch: bool,
}

pub fn instances(global: &GlobalArgs, args: InstancesArgs) -> Result<()> {
    let client = Client::from_args(global)?;
    loop {
        let mut req = client.request(Method::GET, "/v1/instances");
        if let Some(f) = &args.function {
            req = req.query(&[("function", f)]);
        }
        let (list, raw): (InstanceList, _) = client.json(req)?;
        if global.output == Format::Json {
            print_json(&raw);
        } else {
            if args.watch {
                print!("\x1b[2J\x1b[H");
            }
            // A cluster lists every node's instances: which node each is on comes first.
            let clustered = list.instances.iter().any(|i| i.node.is_some());
            let mut header = vec!["ID", "FUNCTION", "VERSION", "STATE", "PID", "INVOCATIONS", "INIT"];
            if clustered {
                header.insert(0, "NODE");
            }
            let mut t = table(&header);
            for i in &list.instances {
                let node = clustered.then(|| i.node.clone().unwrap_or_default());
                t.add_row(node.into_iter().chain([
                    i.id.to_string(),
                    i.function.clone(),
                    i.version.clone(),
                    i.state.as_str().to_string(),
                    i.pid.map(|p| p.to_string()).unwrap_or_default(),
                    i.invocations.to_string(),
                    i.init_duration_ms.map(|d| format!("{d:.1} ms")).unwrap_or_default(),
                ]));
            }
            println!("{t}\n{} instance(s), sandbox: {}", list.instances.len(), list.sandbox);
            if !list.unreachable.is_empty() {
                println!("not listed: node(s) {} did not answer", list.unreachable.join(", "));
            }
        }
        if !args.watch {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    function: String,
    /// Keep printing new lines until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only lines newer than this many seconds.
    #[arg(long, value_name = "SECONDS")]
    since: Option<u64>,
}

pub fn logs(global: &GlobalArgs, args: LogsArgs) -> Result<()> {
    let client = Client::from_args(global)?;
    let now_ms = stoke_core::num::millis_i64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?);
    let mut since =
        args.since.map_or(0, |s| now_ms.saturating_sub(i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000)));
    loop {
        let req = client
            .request(Method::GET, &format!("/v1/functions/{}/logs", segment(&args.function)))
            .query(&[("since_ms", since.to_string())]);
        let (list, raw): (LogList, _) = client.json(req)?;
        if global.output == Format::Json && !args.follow {
            print_json(&raw);
            return Ok(());
        }
        for line in &list.lines {
            let at = stoke_core::time::format_rfc3339(line.at_ms);
            match &line.node {
                // In a cluster: the node whose instance wrote it.
                Some(node) => println!("{at} {node} {}", line.text),
                None => println!("{at} {}", line.text),
            }
            since = since.max(line.at_ms + 1);
        }
        if !list.unreachable.is_empty() {
            eprintln!("missing: the lines of node(s) {}, which did not answer", list.unreachable.join(", "));
        }
        if !args.follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
