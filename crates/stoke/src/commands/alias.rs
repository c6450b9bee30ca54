//! `stoke alias ...`.

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::json;
use stoke_server::http::views::{AliasList, AliasView};

use crate::client::{segment, Client};
use crate::output::{print_fields, print_json, table, Format};
use crate::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create an alias or move it: `stoke alias set thumb prod 3`.
    Set {
        function: String,
        alias: String,
        /// A published version number, or $LATEST.
        #[arg(value_name = "VERSION")]
        target: String,
        /// Send a share of traffic to a second version: VERSION=WEIGHT, e.g. 4=0.1.
        #[arg(long, value_name = "VERSION=WEIGHT")]
        also: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Show one alias.
    Get { function: String, alias: String },
    /// List a function's aliases.
    Ls { function: String },
    /// Delete an alias (the versions stay).
    Rm { function: String, alias: String },
}

fn show(global: &GlobalArgs, a: AliasView, raw: &serde_json::Value) {
    if global.output == Format::Json {
        print_json(raw);
        return;
    }
    let mut fields = vec![("alias", a.name), ("function", a.function), ("version", a.routing.version), ("arn", a.arn)];
    if let (Some(v), Some(w)) = (a.routing.additional_version, a.routing.additional_weight) {
        fields.push(("also", format!("version {v} gets {:.1}% of invocations", w * 100.0)));
    }
    fields.push(("description", a.description));
    print_fields(&fields);
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<()> {
    let client = Client::from_args(global)?;
    match args.command {
        Command::Set { function, alias, target, also, description } => {
            let (extra, weight) = match also {
                None => (None, None),
                Some(spec) => {
                    let Some((v, w)) = spec.split_once('=') else {
                        bail!("--also takes VERSION=WEIGHT, e.g. 4=0.1; got {spec:?}");
                    };
                    let w: f64 = w.parse().with_context(|| format!("--also weight {w:?} is not a number"))?;
                    (Some(v.to_string()), Some(w))
                }
            };
            let body = json!({ "version": target, "additional_version": extra, "additional_weight": weight, "description": description });
            let path = format!("/v1/functions/{}/aliases/{}", segment(&function), segment(&alias));
            let (a, raw): (AliasView, _) = client.json(client.request(Method::PUT, &path).json(&body))?;
            show(global, a, &raw);
        }
        Command::Get { function, alias } => {
            let path = format!("/v1/functions/{}/aliases/{}", segment(&function), segment(&alias));
            let (a, raw): (AliasView, _) = client.json(client.request(Method::GET, &path))?;
            show(global, a, &raw);
        }
        Command::Ls { function } => {
            let path = format!("/v1/functions/{}/aliases", segment(&function));
            let (list, raw): (AliasList, _) = client.json(client.request(Method::GET, &path))?;
            if global.output == Format::Json {
                print_json(&raw);
            } else {
                let mut t = table(&["ALIAS", "VERSION", "ALSO", "DESCRIPTION"]);
                for a in list.aliases {
                    let also = match (a.routing.additional_version, a.routing.additional_weight) {
                        (Some(v), Some(w)) => format!("{v} ({:.1}%)", w * 100.0),
                        _ => String::new(),
                    };
                    t.add_row(vec![a.name, a.routing.version, also, a.description]);
                }
                println!("{t}");
            }
        }
        Command::Rm { function, alias } => {
            let path = format!("/v1/functions/{}/aliases/{}", segment(&function), segment(&alias));
            client.send(client.request(Method::DELETE, &path))?;
            if global.output == Format::Table {
                println!("alias {alias} of {function} deleted");
            }
        }
    }
    Ok(())
}
