//! `stoke wf ...`: workflows (Amazon States Language state machines) and their executions.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};
use stoke_core::num::saturate_usize;
use stoke_server::http::workflows::{
    CostView, ExecutionList, ExecutionView, HistoryView, MapRunList, WorkflowList, WorkflowView,
};
use stoke_server::workflows::timeline::{Phase, Timeline};

use crate::client::{segment, Client};
use crate::commands::invoke::read_payload;
use crate::output::{print_fields, print_json, table, Format};
use crate::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: WfCommand,
}

#[derive(Debug, clap::Subcommand)]
enum WfCommand {
    /// Create a workflow from an Amazon States Language file (`-` reads standard input).
    Create {
        name: String,
        definition: String,
        /// How its executions hide cold starts: off, eager, jit [default: the server's].
        #[arg(long, value_name = "POLICY")]
        prewarm: Option<String>,
        /// An IAM role's ARN, as Step Functions takes one: kept, and read by executions as
        /// `$$.Execution.RoleArn` (stoke assumes no role).
        #[arg(long, value_name = "ARN")]
        role_arn: Option<String>,
    },
    /// Replace a workflow's definition; running executions keep the one they started with.
    Update {
        name: String,
        definition: String,
        /// Fail unless the workflow is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
        /// A new pre-warm policy: off, eager, jit, or default (the server's) [default: unchanged].
        #[arg(long, value_name = "POLICY")]
        prewarm: Option<String>,
        /// A new role ARN [default: unchanged].
        #[arg(long, value_name = "ARN")]
        role_arn: Option<String>,
    },
    /// Show a workflow and its definition.
    Get { name: String },
    /// List the account's workflows.
    Ls,
    /// Delete a workflow (its executions stay readable).
    Rm { name: String },
    /// Run a workflow and follow it state by state until it ends; exits non-zero if it fails.
    Run {
        name: String,
        #[command(flatten)]
        start: StartArgs,
    },
    /// Start a workflow and return at once with the execution id.
    Start {
        name: String,
        #[command(flatten)]
        start: StartArgs,
    },
    /// Show an execution: status, output or error.
    Describe { id: String },
    /// Draw where an execution's time went, step by step: queued, sandbox, init, running, waiting.
    Timeline {
        id: String,
        /// Width of the chart in columns.
        #[arg(long, default_value_t = 60)]
        width: usize,
    },
    /// Show what an execution cost: billed and init milliseconds, GB-seconds, money, per step.
    Cost { id: String },
    /// Print an execution's history, event by event.
    History { id: String },
    /// List the map runs an execution's distributed Map states started, with their children's counts (the
    /// children are executions: `stoke wf describe` and `stoke wf history` take their ids).
    MapRuns {
        id: String,
        /// List this map run's child executions instead.
        #[arg(long, value_name = "MAP_RUN")]
        children: Option<String>,
    },
    /// Stop a running execution (it ends ABORTED).
    Stop {
        id: String,
        #[arg(long)]
        error: Option<String>,
        #[arg(long)]
        cause: Option<String>,
    },
    /// List a workflow's executions, newest first.
    Executions {
        name: String,
        /// Only RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED ones.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Debug, clap::Args)]
struct StartArgs {
    /// The execution's input: JSON text, or @FILE ('@-' for standard input).
    #[arg(long, short = 'i', default_value = "{}", value_name = "JSON|@FILE")]
    input: String,
    /// The execution's name, unique per workflow [default: a UUID].
    #[arg(long = "execution-name")]
    execution_name: Option<String>,
    /// This execution's pre-warm policy: off, eager, jit [default: the workflow's].
    #[arg(long, value_name = "POLICY")]
    prewarm: Option<String>,
    /// Give the execution's steps a shared scratch directory (stoke.scratch()), removed when it ends.
    #[arg(long)]
    scratch: bool,
}

impl StartArgs {
    fn body(&self) -> Result<Value> {
        let bytes = read_payload(&self.input)?;
        let input: Value = serde_json::from_slice(&bytes).context("--input is not valid JSON")?;
        Ok(json!({ "input": input, "name": self.execution_name, "prewarm": self.prewarm, "scratch": self.scratch }))
    }
}

/// One character per phase in the chart.
fn phase_mark(p: Phase) -> char {
    match p {
        Phase::Queued => '.',
        Phase::Sandbox => 's',
        Phase::Init => 'i',
        Phase::Held => 'h',
        Phase::Running => '#',
        Phase::Waiting => '~',
    }
}

/// The timeline as a text Gantt chart: a row per step, `width` columns for the execution's duration.
pub(crate) fn gantt(t: &Timeline, width: usize) -> Vec<String> {
    let width = width.max(10);
    let total = t.duration_ms.max(1.0);
    // The columns a stretch covers: at least one, so short phases stay visible.
    let span = |start: f64, end: f64| {
        let first = saturate_usize(((start / total) * width as f64).floor().clamp(0.0, (width - 1) as f64));
        let last = saturate_usize(((end / total) * width as f64).ceil().clamp(0.0, width as f64));
        first..last.max(first + 1)
    };
    let labels: Vec<String> = t
        .steps
        .iter()
        .map(|s| format!("{}{}", "  ".repeat(depth(&s.scope)), if s.state.is_empty() { &s.kind } else { &s.state }))
        .collect();
    let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0).min(32);
    let mut out = Vec::new();
    for (s, label) in t.steps.iter().zip(labels) {
        let mut row = vec![' '; width];
        let end = s.exited_ms.unwrap_or(t.duration_ms);
        row[span(s.entered_ms, end)].fill('-');
        for seg in &s.segments {
            row[span(seg.start_ms, seg.end_ms)].fill(phase_mark(seg.phase));
        }
        let cold = if s.cold_starts > 0 { format!("  cold ×{}", s.cold_starts) } else { String::new() };
        let node = s.node.as_ref().map_or_else(String::new, |n| format!("  on {n}"));
        let label: String = label.chars().take(label_width).collect();
        out.push(format!(
            "{label:<label_width$} |{}| {:>8.1} ms{cold}{node}",
            row.into_iter().collect::<String>(),
            end - s.entered_ms
        ));
    }
    out.push(format!(
        "{:<label_width$}  0 ms{:>w$}",
        "",
        format!("{:.1} ms", t.duration_ms),
        w = width.saturating_sub(3)
    ));
    let saved = if t.prewarm_saved_ms > 0.0 {
        format!(", {:.1} ms of cold starts hidden by pre-warming", t.prewarm_saved_ms)
    } else {
        String::new()
    };
    out.push(format!(
        "{:<label_width$}  . queued  s sandbox  i init  h held  # running  ~ waiting  - in state   ({} cold start{}{saved})",
        "",
        t.cold_starts,
        if t.cold_starts == 1 { "" } else { "s" }
    ));
    out
}

fn read_definition(spec: &str) -> Result<Value> {
    let text = if spec == "-" {
        let mut buf = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        std::fs::read_to_string(spec.strip_prefix('@').unwrap_or(spec))
            .with_context(|| format!("cannot read the definition file {spec}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{spec} is not JSON; a definition is a JSON state machine"))
}

fn show_workflow(global: &GlobalArgs, w: WorkflowView, raw: &Value) {
    if global.output == Format::Json {
        print_json(raw);
        return;
    }
    print_fields(&[
        ("name", w.name),
        ("arn", w.arn),
        ("revision", w.revision.to_string()),
        ("prewarm", w.prewarm.unwrap_or_else(|| "default (the server's)".into())),
        ("role", w.role_arn.unwrap_or_else(|| "-".into())),
        ("created", w.created_at),
        ("updated", w.updated_at),
    ]);
    println!("{}", serde_json::to_string_pretty(&w.definition).unwrap_or_default());
}

fn show_execution(global: &GlobalArgs, e: &ExecutionView, raw: &Value) {
    if global.output == Format::Json {
        print_json(raw);
        return;
    }
    let mut fields = vec![
        ("id", e.id.clone()),
        ("workflow", e.workflow.clone()),
        ("name", e.name.clone()),
        ("status", e.status.clone()),
        ("started", e.started_at.clone()),
    ];
    if let Some(s) = &e.stopped_at {
        fields.push(("stopped", s.clone()));
    }
    if let Some(d) = e.duration_ms {
        fields.push(("duration", format!("{d} ms")));
    }
    if let Some(err) = &e.error {
        fields.push(("error", err.clone()));
    }
    if let Some(c) = &e.cause {
        fields.push(("cause", c.clone()));
    }
    if let Some(o) = &e.output {
        fields.push(("output", o.to_string()));
    }
    print_fields(&fields);
}

fn history(client: &Client, id: &str) -> Result<HistoryView> {
    Ok(client.json(client.request(Method::GET, &format!("/v1/executions/{}/history", segment(id))))?.0)
}

fn describe(client: &Client, id: &str) -> Result<(ExecutionView, Value)> {
    client.json(client.request(Method::GET, &format!("/v1/executions/{}", segment(id))))
}

/// Where an event sits, for indenting branches and iterations.
fn depth(scope: &str) -> usize {
    scope.matches('/').count()
}

/// Follows an execution, printing each state as it is entered and left, until it ends.
fn follow(client: &Client, id: &str) -> Result<(ExecutionView, Value)> {
    let mut seen = HashSet::new();
    let mut entered_at: std::collections::HashMap<(String, u32), String> = Default::default();
    loop {
        let (e, raw) = describe(client, id)?;
        for ev in history(client, id)?.events {
            if !seen.insert(ev.id) {
                continue;
            }
            let indent = "  ".repeat(depth(&ev.scope) + 1);
            let name = ev.details.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            if ev.kind.ends_with("StateEntered") {
                eprintln!("{indent}→ {name} ({})", ev.kind.trim_end_matches("StateEntered"));
                entered_at.insert((ev.scope.clone(), ev.step), ev.timestamp.clone());
            } else if ev.kind.ends_with("StateExited") {
                eprintln!("{indent}✓ {name}");
            } else if ev.kind.ends_with("Failed") || ev.kind.ends_with("TimedOut") {
                let err = ev.details.get("error").and_then(Value::as_str).unwrap_or_default();
                if !err.is_empty() {
                    eprintln!("{indent}✗ {} {err}", ev.kind);
                }
            } else if ev.kind.ends_with("Scheduled") && ev.attempt > 0 {
                eprintln!("{indent}↻ retry {} of {}", ev.attempt, ev.details["resource"].as_str().unwrap_or_default());
            }
        }
        if e.status != "RUNNING" {
            return Ok((e, raw));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<()> {
    let client = Client::from_args(global)?;
    match args.command {
        WfCommand::Create { name, definition, prewarm, role_arn } => {
            let definition = read_definition(&definition)?;
            let body = json!({ "name": name, "definition": definition, "prewarm": prewarm, "role_arn": role_arn });
            let (w, raw): (WorkflowView, _) = client.json(client.request(Method::POST, "/v1/workflows").json(&body))?;
            show_workflow(global, w, &raw);
        }
        WfCommand::Update { name, definition, revision, prewarm, role_arn } => {
            let definition = read_definition(&definition)?;
            let body =
                json!({ "definition": definition, "revision": revision, "prewarm": prewarm, "role_arn": role_arn });
            let path = format!("/v1/workflows/{}", segment(&name));
            let (w, raw): (WorkflowView, _) = client.json(client.request(Method::PUT, &path).json(&body))?;
            show_workflow(global, w, &raw);
        }
        WfCommand::Get { name } => {
            let path = format!("/v1/workflows/{}", segment(&name));
            let (w, raw): (WorkflowView, _) = client.json(client.request(Method::GET, &path))?;
            show_workflow(global, w, &raw);
        }
        WfCommand::Ls => {
            let (list, raw): (WorkflowList, _) = client.json(client.request(Method::GET, "/v1/workflows"))?;
            if global.output == Format::Json {
                print_json(&raw);
                return Ok(());
            }
            let mut t = table(&["NAME", "REVISION", "STATES", "UPDATED"]);
            for w in list.workflows {
                let states = w.definition.get("States").and_then(Value::as_object).map(|m| m.len()).unwrap_or(0);
                t.add_row(vec![w.name, w.revision.to_string(), states.to_string(), w.updated_at]);
            }
            println!("{t}");
        }
        WfCommand::Rm { name } => {
            client.send(client.request(Method::DELETE, &format!("/v1/workflows/{}", segment(&name))))?;
            if global.output == Format::Table {
                println!("workflow {name} deleted");
            }
        }
        WfCommand::Start { name, start } => {
            let path = format!("/v1/workflows/{}/executions", segment(&name));
            let (e, raw): (ExecutionView, _) = client.json(client.request(Method::POST, &path).json(&start.body()?))?;
            show_execution(global, &e, &raw);
        }
        WfCommand::Run { name, start } => {
            let path = format!("/v1/workflows/{}/executions", segment(&name));
            let (e, _): (ExecutionView, Value) =
                client.json(client.request(Method::POST, &path).json(&start.body()?))?;
            if global.output == Format::Table {
                eprintln!("execution {} of {name}", e.id);
            }
            let (e, raw) = follow(&client, &e.id)?;
            if global.output == Format::Json {
                print_json(&raw);
            } else if let Some(o) = &e.output {
                println!("{}", serde_json::to_string_pretty(o).unwrap_or_default());
                eprintln!("{} in {} ms", e.status, e.duration_ms.unwrap_or(0));
            }
            if e.status != "SUCCEEDED" {
                bail!(
                    "execution {} ended {}: {} {}",
                    e.id,
                    e.status,
                    e.error.unwrap_or_default(),
                    e.cause.unwrap_or_default()
                );
            }
        }
        WfCommand::Describe { id } => {
            let (e, raw) = describe(&client, &id)?;
            show_execution(global, &e, &raw);
        }
        WfCommand::Timeline { id, width } => {
            let path = format!("/v1/executions/{}/timeline", segment(&id));
            let (t, raw): (Timeline, Value) = client.json(client.request(Method::GET, &path))?;
            if global.output == Format::Json {
                print_json(&raw);
            } else {
                gantt(&t, width).iter().for_each(|line| println!("{line}"));
            }
        }
        WfCommand::Cost { id } => {
            let path = format!("/v1/executions/{}/cost", segment(&id));
            let (c, raw): (CostView, Value) = client.json(client.request(Method::GET, &path))?;
            if global.output == Format::Json {
                print_json(&raw);
                return Ok(());
            }
            let mut t = table(&["STEP", "INVOCATIONS", "BILLED MS", "INIT MS", "HELD MS", "GB-S", "COST"]);
            let row = |name: String, b: &stoke_core::cost::Bill| {
                vec![
                    name,
                    b.invocations.to_string(),
                    b.billed_ms.to_string(),
                    b.init_ms.to_string(),
                    b.held_ms.to_string(),
                    format!("{:.6}", b.gb_seconds),
                    format!("${:.9}", b.cost),
                ]
            };
            for s in &c.steps {
                let name = if s.scope.is_empty() { s.state.clone() } else { format!("{} ({})", s.state, s.scope) };
                t.add_row(row(name, &s.bill));
            }
            t.add_row(row("TOTAL".into(), &c.total));
            println!("{t}");
            println!(
                "prices: ${} per GB-second, ${} per request (server configuration)",
                c.pricing.per_gb_second, c.pricing.per_request
            );
        }
        WfCommand::History { id } => {
            let path = format!("/v1/executions/{}/history", segment(&id));
            let (h, raw): (HistoryView, _) = client.json(client.request(Method::GET, &path))?;
            if global.output == Format::Json {
                print_json(&raw);
                return Ok(());
            }
            let mut t = table(&["ID", "TIME", "TYPE", "WHERE", "DETAILS"]);
            for ev in h.events {
                let mut details = ev.details.to_string();
                if details.len() > 80 {
                    details.truncate(77);
                    details.push_str("...");
                }
                let place =
                    if ev.scope.is_empty() { format!("{}", ev.step) } else { format!("{}/{}", ev.scope, ev.step) };
                t.add_row(vec![ev.id.to_string(), ev.timestamp, ev.kind, place, details]);
            }
            println!("{t}");
        }
        WfCommand::MapRuns { id, children: Some(run) } => {
            let path = format!("/v1/executions/{}/map-runs/{}/executions", segment(&id), segment(&run));
            let (list, raw): (ExecutionList, _) = client.json(client.request(Method::GET, &path))?;
            if global.output == Format::Json {
                print_json(&raw);
                return Ok(());
            }
            let mut t = table(&["ID", "NAME", "STATUS", "STARTED"]);
            for e in list.executions {
                t.add_row(vec![e.id, e.name, e.status, e.started_at]);
            }
            println!("{t}");
        }
        WfCommand::MapRuns { id, children: None } => {
            let path = format!("/v1/executions/{}/map-runs", segment(&id));
            let (list, raw): (MapRunList, _) = client.json(client.request(Method::GET, &path))?;
            if global.output == Format::Json {
                print_json(&raw);
                return Ok(());
            }
            let mut t = table(&["MAP RUN", "CHILDREN", "STATUS", "ITEMS", "SUCCEEDED", "FAILED", "RUNNING", "PENDING"]);
            for r in list.map_runs {
                let n = |k: &str| r.item_counts[k].as_u64().unwrap_or(0).to_string();
                t.add_row(vec![
                    r.id.clone(),
                    r.children.clone(),
                    r.status.clone(),
                    n("total"),
                    n("succeeded"),
                    n("failed"),
                    n("running"),
                    n("pending"),
                ]);
            }
            println!("{t}");
        }
        WfCommand::Stop { id, error, cause } => {
            let path = format!("/v1/executions/{}/stop", segment(&id));
            let body = json!({ "error": error, "cause": cause });
            let (e, raw): (ExecutionView, _) = client.json(client.request(Method::POST, &path).json(&body))?;
            show_execution(global, &e, &raw);
        }
        WfCommand::Executions { name, status, limit } => {
            let mut path = format!("/v1/workflows/{}/executions?limit={limit}", segment(&name));
            if let Some(s) = status {
                path.push_str(&format!("&status={}", segment(&s)));
            }
            let (list, raw): (ExecutionList, _) = client.json(client.request(Method::GET, &path))?;
            if global.output == Format::Json {
                print_json(&raw);
                return Ok(());
            }
            let mut t = table(&["ID", "NAME", "STATUS", "STARTED", "DURATION"]);
            for e in list.executions {
                let d = e.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default();
                t.add_row(vec![e.id, e.name, e.status, e.started_at, d]);
            }
            println!("{t}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use stoke_server::workflows::timeline::{Segment, StepTimeline};

    use super::*;

    #[test]
    fn the_chart_places_phases_on_a_shared_time_axis() {
        let step = |state: &str, entered: f64, exited: f64, segments: Vec<Segment>, cold| StepTimeline {
            scope: String::new(),
            step: 0,
            state: state.into(),
            kind: "Task".into(),
            entered_ms: entered,
            exited_ms: Some(exited),
            invocations: 1,
            cold_starts: cold,
            segments,
            bill: None,
            node: None,
            hidden_cold_start_ms: 0.0,
        };
        let seg = |phase, start_ms, end_ms| Segment { phase, start_ms, end_ms };
        let t = Timeline {
            started_ms: 0,
            duration_ms: 100.0,
            steps: vec![
                step(
                    "A",
                    0.0,
                    50.0,
                    vec![seg(Phase::Sandbox, 0.0, 10.0), seg(Phase::Init, 10.0, 30.0), seg(Phase::Running, 30.0, 50.0)],
                    1,
                ),
                StepTimeline {
                    node: Some("node-2".into()),
                    ..step("B", 50.0, 100.0, vec![seg(Phase::Running, 50.0, 99.0)], 0)
                },
            ],
            cold_starts: 1,
            bill: Default::default(),
            prewarm_saved_ms: 12.5,
        };
        let lines = gantt(&t, 10);
        assert_eq!(lines[0], "A |sii##     |     50.0 ms  cold ×1");
        assert_eq!(lines[1], "B |     #####|     50.0 ms  on node-2");
        assert!(lines[3].contains("(1 cold start, 12.5 ms of cold starts hidden by pre-warming)"), "{}", lines[3]);
    }
}
