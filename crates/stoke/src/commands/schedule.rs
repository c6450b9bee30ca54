//! `stoke schedule …`: run a function or a workflow on a schedule (rate, cron or one time).

use anyhow::{bail, Result};
use reqwest::Method;
use serde_json::{json, Value};
use stoke_server::http::schedules::{NextFires, ScheduleList, ScheduleView};

use crate::client::{segment, Client};
use crate::output::{print_json, table, Format};
use crate::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

/// What a schedule is: every flag is optional on `update` (what is not given stays as it is).
#[derive(Debug, Clone, Default, clap::Args)]
struct Spec {
    /// `rate(5 minutes)`, `cron(0 12 * * ? *)` (AWS's six fields: minutes hours day-of-month month
    /// day-of-week year) or `at(2027-01-01T09:00:00)`.
    #[arg(long, short = 'e')]
    expression: Option<String>,
    /// Run this function (`name` or `name:qualifier`), asynchronously.
    #[arg(long, conflicts_with_all = ["workflow", "target"])]
    function: Option<String>,
    /// Start an execution of this workflow.
    #[arg(long, conflicts_with = "target")]
    workflow: Option<String>,
    /// A function or state machine ARN.
    #[arg(long, value_name = "ARN")]
    target: Option<String>,
    /// The payload of each fire, JSON (may hold <aws.scheduler.scheduled-time> and the other context
    /// attributes); default: Scheduler's scheduled event.
    #[arg(long, value_name = "JSON")]
    input: Option<String>,
    /// The IANA time zone the expression is read in [default: UTC].
    #[arg(long, value_name = "ZONE")]
    timezone: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// Fire nothing before this instant (RFC 3339); rates count from it.
    #[arg(long, value_name = "TIME")]
    start: Option<String>,
    /// Fire nothing after this instant (RFC 3339).
    #[arg(long, value_name = "TIME")]
    end: Option<String>,
    /// Deliver each fire within this many minutes after its time (1-1440).
    #[arg(long, value_name = "MINUTES")]
    window: Option<i64>,
    /// Retries of a fire's failed invocation, 0-185 [default: 185].
    #[arg(long, value_name = "N")]
    max_retries: Option<i64>,
    /// How old a fire's invocation may get, and how late a missed fire is still delivered, 60-86400 s
    /// [default: 86400].
    #[arg(long, value_name = "SECONDS")]
    max_age: Option<i64>,
    /// Delete the schedule once it will not fire again.
    #[arg(long)]
    delete_after_completion: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create a schedule (enabled unless --disabled).
    Create {
        name: String,
        #[command(flatten)]
        spec: Spec,
        #[arg(long)]
        disabled: bool,
    },
    /// List schedules: expression, target, state, last fire and what became of it, next fire.
    Ls,
    /// Show one schedule.
    Get {
        name: String,
    },
    /// Change a schedule: the flags given replace what they name, the rest stays.
    Update {
        name: String,
        #[command(flatten)]
        spec: Spec,
    },
    Delete {
        name: String,
    },
    /// Fire from its next time after now (none missed while it was disabled).
    Enable {
        name: String,
    },
    /// Fire no more until enabled.
    Disable {
        name: String,
    },
    /// Show its next fire times.
    Next {
        name: String,
        #[arg(short = 'n', default_value_t = 5)]
        n: usize,
    },
}

fn path(name: &str) -> String {
    format!("/v1/schedules/{}", segment(name))
}

fn input_json(input: &str) -> Result<Value> {
    serde_json::from_str(input).map_err(|e| anyhow::anyhow!("--input is not JSON: {e} (quote a string as '\"text\"')"))
}

/// The request body a spec makes, over `base` (the schedule as it is, for an update).
fn body(spec: Spec, base: Option<&ScheduleView>, enabled: bool) -> Result<Value> {
    let Some(expression) = spec.expression.or_else(|| base.map(|b| b.expression.clone())) else {
        bail!("a schedule needs --expression (rate(…), cron(…) or at(…))");
    };
    let input = match (&spec.input, base) {
        (Some(i), _) => Some(input_json(i)?),
        (None, Some(b)) => b.target.input.clone(),
        (None, None) => None,
    };
    let mut target = match (spec.function, spec.workflow, spec.target, base) {
        (Some(f), _, _, _) => json!({ "function": f }),
        (_, Some(w), _, _) => json!({ "workflow": w }),
        (_, _, Some(a), _) => json!({ "arn": a }),
        (None, None, None, Some(b)) => json!({ "arn": b.target.arn }),
        (None, None, None, None) => {
            bail!("a schedule needs a target: --function NAME, --workflow NAME or --target ARN")
        }
    };
    if let Some(i) = input {
        target["input"] = i;
    }
    let pick = |given: Option<String>, kept: Option<String>| given.or(kept);
    Ok(json!({
        "expression": expression,
        "timezone": pick(spec.timezone, base.map(|b| b.timezone.clone())),
        "description": pick(spec.description, base.map(|b| b.description.clone())),
        "enabled": enabled,
        "start": pick(spec.start, base.and_then(|b| b.start.clone())),
        "end": pick(spec.end, base.and_then(|b| b.end.clone())),
        "flexible_window_min": spec.window.or(base.and_then(|b| (b.flexible_window_min > 0).then_some(i64::from(b.flexible_window_min)))),
        "target": target,
        "max_retries": spec.max_retries.or(base.map(|b| i64::from(b.max_retries))),
        "max_age_s": spec.max_age.or(base.map(|b| i64::from(b.max_age_s))),
        "delete_after_completion": spec.delete_after_completion || base.is_some_and(|b| b.delete_after_completion),
    }))
}

fn show(s: &ScheduleView) {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("{} ({}): {} in {}", s.name, s.state, s.expression, s.timezone);
    println!("  target:       {}", s.target.arn);
    if let Some(i) = &s.target.input {
        println!("  input:        {i}");
    }
    println!("  next fire:    {}", or_dash(&s.next_fire));
    println!("  last fire:    {} ({})", or_dash(&s.last_fire), or_dash(&s.last_outcome));
    println!("  fires:        {} delivered, {} missed", s.fires, s.missed);
    println!("  retries:      {} within {} s", s.max_retries, s.max_age_s);
    if s.flexible_window_min > 0 {
        println!("  window:       {} min", s.flexible_window_min);
    }
    if let Some(id) = &s.last_event {
        println!("  last event:   {id}");
    }
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<()> {
    let client = Client::from_args(global)?;
    let print = |view: ScheduleView, raw: Value| {
        if global.output == Format::Json {
            print_json(&raw);
        } else {
            show(&view);
        }
    };
    match args.command {
        Command::Create { name, spec, disabled } => {
            let mut b = body(spec, None, !disabled)?;
            b["name"] = json!(name);
            let (view, raw) = client.json(client.request(Method::POST, "/v1/schedules").json(&b))?;
            print(view, raw);
        }
        Command::Update { name, spec } => {
            let (current, _): (ScheduleView, _) = client.json(client.request(Method::GET, &path(&name)))?;
            let b = body(spec, Some(&current), current.state == "ENABLED")?;
            let (view, raw) = client.json(client.request(Method::PUT, &path(&name)).json(&b))?;
            print(view, raw);
        }
        Command::Get { name } => {
            let (view, raw) = client.json(client.request(Method::GET, &path(&name)))?;
            print(view, raw);
        }
        Command::Enable { name } => {
            let (view, raw) = client.json(client.request(Method::POST, &format!("{}/enable", path(&name))))?;
            print(view, raw);
        }
        Command::Disable { name } => {
            let (view, raw) = client.json(client.request(Method::POST, &format!("{}/disable", path(&name))))?;
            print(view, raw);
        }
        Command::Delete { name } => {
            client.send(client.request(Method::DELETE, &path(&name)))?;
            println!("schedule {name} deleted");
        }
        Command::Next { name, n } => {
            let (next, raw): (NextFires, _) =
                client.json(client.request(Method::GET, &format!("{}/next", path(&name))).query(&[("n", n)]))?;
            if global.output == Format::Json {
                print_json(&raw);
            } else if next.fires.is_empty() {
                println!("{name} will not fire again");
            } else {
                for f in next.fires {
                    println!("{f}");
                }
            }
        }
        Command::Ls => {
            let mut all: Vec<ScheduleView> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut req = client.request(Method::GET, "/v1/schedules").query(&[("limit", "1000")]);
                if let Some(c) = &cursor {
                    req = req.query(&[("cursor", c)]);
                }
                let (page, _): (ScheduleList, _) = client.json(req)?;
                all.extend(page.schedules);
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            if global.output == Format::Json {
                print_json(&json!({ "schedules": all }));
            } else if all.is_empty() {
                println!("no schedules (stoke schedule create NAME --expression 'rate(5 minutes)' --function F)");
            } else {
                let mut t = table(&["NAME", "STATE", "EXPRESSION", "TARGET", "LAST FIRE", "OUTCOME", "NEXT FIRE"]);
                for s in all {
                    let arn = &s.target.arn;
                    let target = [":function:", ":stateMachine:"]
                        .iter()
                        .find_map(|k| arn.split_once(k).map(|(_, t)| t.to_string()))
                        .unwrap_or_else(|| arn.clone());
                    t.add_row(vec![
                        s.name,
                        s.state,
                        format!("{} {}", s.expression, if s.timezone == "UTC" { String::new() } else { s.timezone }),
                        target,
                        s.last_fire.unwrap_or_else(|| "-".into()),
                        s.last_outcome.unwrap_or_else(|| "-".into()),
                        s.next_fire.unwrap_or_else(|| "-".into()),
                    ]);
                }
                println!("{t}");
            }
        }
    }
    Ok(())
}
