//! `stoke durable …`: Lambda durable executions — a function's executions, one execution, its history and
//! timeline, stopping it, answering its callbacks.

use anyhow::{bail, Result};
use reqwest::Method;
use serde_json::{json, Value};
use stoke_server::http::durable_executions::{DurableExecutionList, DurableExecutionView, DurableHistory};
use stoke_server::workflows::timeline::Timeline;

use crate::client::{all_pages, segment, Client};
use crate::output::{print_fields, print_json, table, Format};
use crate::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// A durable function's executions, oldest first.
    Ls {
        function: String,
        /// Only those in this state.
        #[arg(long, value_parser = ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED"])]
        status: Option<String>,
    },
    /// One execution: its state, input, and result or error.
    Get { id: String },
    /// An execution's history, Lambda's events, oldest first.
    History { id: String },
    /// Draw where an execution's time went: each invocation (queued, sandbox, init, running; cold or
    /// warm) and each operation (steps running, waits and callbacks waiting), as `stoke wf timeline` does.
    Timeline {
        id: String,
        /// Width of the chart in columns.
        #[arg(long, default_value_t = 60)]
        width: usize,
    },
    /// Stop a running execution.
    Stop {
        id: String,
        /// The error it ends with (its type).
        #[arg(long)]
        error_type: Option<String>,
        #[arg(long)]
        message: Option<String>,
    },
    /// Answer an execution's callback (its id is in the execution's CallbackStarted event).
    Callback {
        callback_id: String,
        /// Succeed it with this result (text, usually JSON).
        #[arg(long, group = "answer")]
        result: Option<String>,
        /// Fail it with this error type (and --message).
        #[arg(long, group = "answer")]
        error: Option<String>,
        #[arg(long, requires = "error")]
        message: Option<String>,
        /// Keep a callback with a heartbeat timeout alive.
        #[arg(long, group = "answer")]
        heartbeat: bool,
    },
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<()> {
    let client = Client::from_args(global)?;
    match args.command {
        Command::Ls { function, status } => {
            let path = format!("/v1/functions/{}/durable-executions", segment(&function));
            let all: Vec<DurableExecutionView> = all_pages(|cursor| {
                let mut req = client.request(Method::GET, &path).query(&[("limit", "1000")]);
                if let Some(s) = &status {
                    req = req.query(&[("status", s)]);
                }
                if let Some(c) = cursor {
                    req = req.query(&[("cursor", c)]);
                }
                let (page, _): (DurableExecutionList, _) = client.json(req)?;
                Ok((page.executions, page.next_cursor))
            })?;
            if global.output == Format::Json {
                print_json(&serde_json::to_value(&all)?);
                return Ok(());
            }
            let mut t = table(&["ID", "NAME", "VERSION", "STATUS", "STARTED", "ENDED"]);
            for e in &all {
                t.add_row(vec![
                    e.id.clone(),
                    e.name.clone(),
                    e.version.clone(),
                    e.status.clone(),
                    e.started_at.clone(),
                    e.ended_at.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            println!("{t}");
            if all.is_empty() {
                println!("(no durable executions of {function})");
            }
        }
        Command::Get { id } => {
            let (e, raw): (DurableExecutionView, _) =
                client.json(client.request(Method::GET, &format!("/v1/durable-executions/{}", segment(&id))))?;
            if global.output == Format::Json {
                print_json(&raw);
            } else {
                show(&e);
            }
        }
        Command::History { id } => {
            let path = format!("/v1/durable-executions/{}/history", segment(&id));
            let events: Vec<Value> = all_pages(|cursor| {
                let mut req = client.request(Method::GET, &path).query(&[("limit", "1000")]);
                if let Some(c) = cursor {
                    req = req.query(&[("cursor", c)]);
                }
                let (page, _): (DurableHistory, _) = client.json(req)?;
                Ok((page.events, page.next_cursor))
            })?;
            if global.output == Format::Json {
                print_json(&Value::Array(events));
                return Ok(());
            }
            let mut t = table(&["#", "EVENT", "OPERATION", "NAME", "AT", "DETAILS"]);
            for e in &events {
                let kind = e["EventType"].as_str().unwrap_or_default();
                let details = e.get(format!("{kind}Details")).map(short).unwrap_or_default();
                t.add_row(vec![
                    e["EventId"].to_string(),
                    kind.to_string(),
                    e["Id"].as_str().map_or_else(|| "-".into(), |i| i.chars().take(12).collect()),
                    e["Name"].as_str().unwrap_or("-").to_string(),
                    e["EventTimestamp"]
                        .as_f64()
                        .map(|s| stoke_core::time::format_rfc3339(stoke_core::num::saturate_i64((s * 1000.0).round())))
                        .unwrap_or_default(),
                    details,
                ]);
            }
            println!("{t}");
        }
        Command::Timeline { id, width } => {
            let path = format!("/v1/durable-executions/{}/timeline", segment(&id));
            let (t, raw): (Timeline, Value) = client.json(client.request(Method::GET, &path))?;
            if global.output == Format::Json {
                print_json(&raw);
            } else {
                super::workflow::gantt(&t, width).iter().for_each(|line| println!("{line}"));
            }
        }
        Command::Stop { id, error_type, message } => {
            let body = json!({ "error_type": error_type, "message": message });
            let path = format!("/v1/durable-executions/{}/stop", segment(&id));
            let (e, raw): (DurableExecutionView, _) = client.json(client.request(Method::POST, &path).json(&body))?;
            if global.output == Format::Json {
                print_json(&raw);
            } else {
                show(&e);
            }
        }
        Command::Callback { callback_id, result, error, message, heartbeat } => {
            let body = match (result, error, heartbeat) {
                (Some(r), None, false) => json!({ "result": r }),
                (None, Some(t), false) => json!({ "error": { "error_type": t, "message": message } }),
                (None, None, true) => json!({ "heartbeat": true }),
                _ => bail!("give one of --result, --error or --heartbeat"),
            };
            let path = format!("/v1/durable-callbacks/{}", segment(&callback_id));
            client.send(client.request(Method::POST, &path).json(&body))?;
            println!("callback {callback_id} answered");
        }
    }
    Ok(())
}

fn show(e: &DurableExecutionView) {
    let mut fields = vec![
        ("id", e.id.clone()),
        ("name", e.name.clone()),
        ("function", format!("{}:{}", e.function, e.version)),
        ("status", e.status.clone()),
        ("started", e.started_at.clone()),
        ("ended", e.ended_at.clone().unwrap_or_else(|| "-".into())),
        ("input", e.input.clone().unwrap_or_else(|| "-".into())),
    ];
    if let Some(r) = &e.result {
        fields.push(("result", r.clone()));
    }
    if let Some(err) = &e.error {
        fields.push(("error", err.to_string()));
    }
    if let Some(t) = &e.expires_at {
        fields.push(("deleted at", t.clone()));
    }
    fields.push(("arn", e.arn.clone()));
    print_fields(&fields);
}

/// An event's details on one line, payloads cut short.
fn short(details: &Value) -> String {
    let text = details.to_string();
    if text == "{}" {
        return String::new();
    }
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(79).collect::<String>())
    } else {
        text
    }
}
