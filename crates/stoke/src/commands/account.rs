//! `stoke account ...`.

use anyhow::Result;
use reqwest::Method;
use serde_json::json;
use stoke_server::http::views::{AccountList, AccountView, CreatedAccount};

use crate::client::Client;
use crate::output::{print_fields, print_json, table, Format};
use crate::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Show the account your API key belongs to.
    Whoami,
    /// List all accounts (admin only).
    Ls,
    /// Create an account and print its credentials, shown only this once (admin only).
    Create {
        /// 1-63 lowercase letters, digits or '-'.
        name: String,
        /// Make the new account an admin.
        #[arg(long)]
        admin: bool,
    },
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<()> {
    let client = Client::from_args(global)?;
    match args.command {
        Command::Whoami => {
            let (a, raw): (AccountView, _) = client.json(client.request(Method::GET, "/v1/account"))?;
            if global.output == Format::Json {
                print_json(&raw);
            } else {
                print_fields(&[
                    ("account", a.id),
                    ("name", a.name),
                    ("admin", a.is_admin.to_string()),
                    ("created", a.created),
                ]);
            }
        }
        Command::Ls => {
            let (list, raw): (AccountList, _) = client.json(client.request(Method::GET, "/v1/accounts"))?;
            if global.output == Format::Json {
                print_json(&raw);
            } else {
                let mut t = table(&["ACCOUNT", "NAME", "ADMIN", "CREATED"]);
                for a in list.accounts {
                    t.add_row(vec![a.id, a.name, a.is_admin.to_string(), a.created]);
                }
                println!("{t}");
            }
        }
        Command::Create { name, admin } => {
            let req = client.request(Method::POST, "/v1/accounts").json(&json!({ "name": name, "is_admin": admin }));
            let (created, raw): (CreatedAccount, _) = client.json(req)?;
            if global.output == Format::Json {
                print_json(&raw);
            } else {
                let c = created.credentials;
                print_fields(&[
                    ("account", c.account_id),
                    ("api_key", c.api_key),
                    ("access_key_id", c.access_key_id),
                    ("secret_access_key", c.secret_access_key),
                ]);
                eprintln!("Keep these now: the API key is not shown again.");
            }
        }
    }
    Ok(())
}
