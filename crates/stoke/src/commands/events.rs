//! `stoke events failed …`: the failed-event store, where Event invocations that used up their retries
//! wait to be inspected, redriven or deleted.

use anyhow::{bail, Result};
use reqwest::Method;
use stoke_server::http::events::{EventCount, EventList, EventView};

use crate::client::{all_pages, segment, Client};
use crate::output::{print_json, table, Format};
use crate::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Event invocations that failed after their retries.
    #[command(subcommand)]
    Failed(Failed),
}

#[derive(Debug, clap::Subcommand)]
enum Failed {
    /// List them, oldest id first.
    Ls,
    /// Show one: its event, attempts and last error.
    Show { id: String },
    /// Queue them again, under the same request id, their retries counted afresh: the ones named, or --all.
    Redrive {
        ids: Vec<String>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete them: the ones named, or --all.
    Purge {
        ids: Vec<String>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<()> {
    let client = Client::from_args(global)?;
    let Command::Failed(cmd) = args.command;
    match cmd {
        Failed::Ls => {
            let all: Vec<EventView> = all_pages(|cursor| {
                let mut req = client.request(Method::GET, "/v1/events/failed").query(&[("limit", "1000")]);
                if let Some(c) = cursor {
                    req = req.query(&[("cursor", c)]);
                }
                let (page, _): (EventList, _) = client.json(req)?;
                Ok((page.events, page.next_cursor))
            })?;
            if global.output == Format::Json {
                print_json(&serde_json::to_value(&all)?);
                return Ok(());
            }
            let mut t = table(&["ID", "FUNCTION", "ATTEMPTS", "ERROR", "FAILED AT"]);
            for e in &all {
                t.add_row(vec![
                    e.id.clone(),
                    e.function.clone(),
                    e.attempts.to_string(),
                    e.error_type.clone().unwrap_or_else(|| "-".into()),
                    e.finished_at.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            println!("{t}");
            if all.is_empty() {
                println!("(no failed event invocations)");
            }
        }
        Failed::Show { id } => {
            let (e, raw): (EventView, _) =
                client.json(client.request(Method::GET, &format!("/v1/events/{}", segment(&id))))?;
            if global.output == Format::Json {
                print_json(&raw);
                return Ok(());
            }
            println!("id:        {}", e.id);
            println!("function:  {}", e.function);
            println!("state:     {}", e.state);
            println!("attempts:  {}", e.attempts);
            println!("created:   {}", e.created_at);
            println!("finished:  {}", e.finished_at.as_deref().unwrap_or("-"));
            println!("error:     {}", e.error_type.as_deref().unwrap_or("-"));
            println!("event:     {}", e.payload);
            if let Some(r) = &e.result {
                println!("result:    {r}");
            }
        }
        Failed::Redrive { ids, all } => {
            if all {
                let (n, _): (EventCount, _) = client.json(client.request(Method::POST, "/v1/events/failed/redrive"))?;
                println!("{} failed event invocation(s) queued again", n.count);
            } else if ids.is_empty() {
                bail!("name the event invocations to redrive (their ids), or give --all");
            } else {
                for id in ids {
                    let path = format!("/v1/events/{}/redrive", segment(&id));
                    let (e, _): (EventView, _) = client.json(client.request(Method::POST, &path))?;
                    println!("{} queued again ({})", e.id, e.function);
                }
            }
        }
        Failed::Purge { ids, all } => {
            if all {
                let (n, _): (EventCount, _) = client.json(client.request(Method::DELETE, "/v1/events/failed"))?;
                println!("{} failed event invocation(s) deleted", n.count);
            } else if ids.is_empty() {
                bail!("name the event invocations to delete (their ids), or give --all");
            } else {
                for id in ids {
                    client.send(client.request(Method::DELETE, &format!("/v1/events/{}", segment(&id))))?;
                    println!("{id} deleted");
                }
            }
        }
    }
    Ok(())
}
