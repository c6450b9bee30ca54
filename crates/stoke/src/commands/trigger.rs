//! `stoke url ...` and `stoke route ...`: HTTP triggers.

use anyhow::{bail, Result};
use reqwest::Method;
use serde_json::json;
use stoke_server::http::triggers::{TriggerList, TriggerView};

use crate::client::{segment, Client};
use crate::output::{print_fields, print_json, table, Format};
use crate::GlobalArgs;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Auth {
    /// Callers send the account's API key (`Authorization: Bearer …`).
    Key,
    /// Public: anyone who can reach the server can invoke the function.
    None,
}

impl Auth {
    fn as_str(self) -> &'static str {
        match self {
            Auth::Key => "key",
            Auth::None => "none",
        }
    }
}

/// Cross-origin settings; any of them turns CORS on.
#[derive(Debug, Clone, clap::Args)]
struct CorsArgs {
    /// Origin allowed to call from a browser (repeat, or `*`).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    origins: Vec<String>,
    /// Method allowed (repeat, or `*`) [default with an origin: *].
    #[arg(long = "cors-method", value_name = "METHOD")]
    methods: Vec<String>,
    /// Request header allowed (repeat).
    #[arg(long = "cors-header", value_name = "HEADER")]
    headers: Vec<String>,
    /// Response header the browser may read (repeat).
    #[arg(long = "cors-expose", value_name = "HEADER")]
    expose: Vec<String>,
    /// Seconds a browser may cache the preflight answer.
    #[arg(long = "cors-max-age", value_name = "SECONDS")]
    max_age: Option<u32>,
    /// Allow cookies and credentials (needs explicit origins).
    #[arg(long = "cors-credentials")]
    credentials: bool,
}

impl CorsArgs {
    fn to_json(&self) -> serde_json::Value {
        if self.origins.is_empty() && self.methods.is_empty() && self.headers.is_empty() && self.expose.is_empty() {
            return serde_json::Value::Null;
        }
        let methods = if self.methods.is_empty() { vec!["*".to_string()] } else { self.methods.clone() };
        json!({ "allow_origins": self.origins, "allow_methods": methods, "allow_headers": self.headers,
            "expose_headers": self.expose, "max_age_s": self.max_age, "allow_credentials": self.credentials })
    }
}

#[derive(Debug, clap::Args)]
pub struct UrlArgs {
    #[command(subcommand)]
    command: UrlCommand,
}

#[derive(Debug, clap::Subcommand)]
enum UrlCommand {
    /// Give a function (or an alias: name:alias) a stable URL, `http://<server>/u/<id>/…`, any method and path.
    Create {
        function: String,
        #[arg(long, value_enum, default_value_t = Auth::Key)]
        auth: Auth,
        #[command(flatten)]
        cors: CorsArgs,
    },
    /// List the account's function URLs.
    Ls,
    /// Show one function URL.
    Get { id: String },
    /// Change a URL's auth or CORS settings.
    Update {
        id: String,
        #[arg(long, value_enum)]
        auth: Option<Auth>,
        #[command(flatten)]
        cors: CorsArgs,
        /// Remove the CORS settings.
        #[arg(long, conflicts_with_all = ["origins", "methods", "headers", "expose"])]
        no_cors: bool,
    },
    /// Delete a function URL (requests to it get 404 from then on).
    Rm { id: String },
}

#[derive(Debug, clap::Args)]
pub struct RouteArgs {
    #[command(subcommand)]
    command: RouteCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RouteCommand {
    /// Map `METHOD /path` to a function: `stoke route add 'GET /pets/{id}' pets`. `{param}` matches one
    /// segment, a final `{name+}` the rest; the most specific route wins. Served at http://<server>/gw/<account>/….
    Add {
        #[arg(value_name = "'METHOD /path'")]
        route: String,
        function: String,
        #[arg(long, value_enum, default_value_t = Auth::Key)]
        auth: Auth,
        #[command(flatten)]
        cors: CorsArgs,
    },
    /// List the account's routes, most recent last.
    Ls,
    /// Show one route.
    Get { id: String },
    /// Delete a route.
    Rm { id: String },
}

fn warn_if_public(auth: Auth) {
    if matches!(auth, Auth::None) {
        eprintln!(
            "WARNING: --auth none makes this trigger PUBLIC: anyone who can reach this server can invoke the function."
        );
    }
}

fn show(global: &GlobalArgs, t: TriggerView, raw: &serde_json::Value) {
    if global.output == Format::Json {
        print_json(raw);
        return;
    }
    let mut fields = vec![("id", t.id), ("url", t.url)];
    if let Some(r) = t.route {
        fields.push(("route", r));
    }
    fields.push(("function", t.function));
    fields
        .push(("auth", if t.auth == stoke_core::gateway::TriggerAuth::None { "none (public)" } else { "key" }.into()));
    if let Some(c) = t.cors {
        fields.push(("cors origins", c.allow_origins.join(", ")));
        fields.push(("cors methods", c.allow_methods.join(", ")));
    }
    fields.push(("created", t.created_at));
    print_fields(&fields);
}

fn list(global: &GlobalArgs, client: &Client, path: &str, routes: bool) -> Result<()> {
    let (list, raw): (TriggerList, _) = client.json(client.request(Method::GET, path))?;
    if global.output == Format::Json {
        print_json(&raw);
        return Ok(());
    }
    let mut t = if routes {
        table(&["ID", "ROUTE", "FUNCTION", "AUTH", "URL"])
    } else {
        table(&["ID", "FUNCTION", "AUTH", "URL"])
    };
    for tr in list.triggers {
        let auth = tr.auth.as_str().to_string();
        if routes {
            t.add_row(vec![tr.id, tr.route.unwrap_or_default(), tr.function, auth, tr.url]);
        } else {
            t.add_row(vec![tr.id, tr.function, auth, tr.url]);
        }
    }
    println!("{t}");
    Ok(())
}

pub fn run_url(global: &GlobalArgs, args: UrlArgs) -> Result<()> {
    let client = Client::from_args(global)?;
    match args.command {
        UrlCommand::Create { function, auth, cors } => {
            warn_if_public(auth);
            let body = json!({ "function": function, "auth": auth.as_str(), "cors": cors.to_json() });
            let (t, raw): (TriggerView, _) = client.json(client.request(Method::POST, "/v1/urls").json(&body))?;
            show(global, t, &raw);
        }
        UrlCommand::Ls => list(global, &client, "/v1/urls", false)?,
        UrlCommand::Get { id } => {
            let (t, raw): (TriggerView, _) =
                client.json(client.request(Method::GET, &format!("/v1/urls/{}", segment(&id))))?;
            show(global, t, &raw);
        }
        UrlCommand::Update { id, auth, cors, no_cors } => {
            let mut body = serde_json::Map::new();
            if let Some(a) = auth {
                warn_if_public(a);
                body.insert("auth".into(), json!(a.as_str()));
            }
            let cors = cors.to_json();
            if no_cors {
                body.insert("cors".into(), serde_json::Value::Null);
            } else if !cors.is_null() {
                body.insert("cors".into(), cors);
            }
            if body.is_empty() {
                bail!("nothing to change: pass --auth, --cors-* or --no-cors");
            }
            let path = format!("/v1/urls/{}", segment(&id));
            let (t, raw): (TriggerView, _) = client.json(client.request(Method::PATCH, &path).json(&body))?;
            show(global, t, &raw);
        }
        UrlCommand::Rm { id } => {
            client.send(client.request(Method::DELETE, &format!("/v1/urls/{}", segment(&id))))?;
            if global.output == Format::Table {
                println!("function URL {id} deleted");
            }
        }
    }
    Ok(())
}

pub fn run_route(global: &GlobalArgs, args: RouteArgs) -> Result<()> {
    let client = Client::from_args(global)?;
    match args.command {
        RouteCommand::Add { route, function, auth, cors } => {
            warn_if_public(auth);
            let body = json!({ "route": route, "function": function, "auth": auth.as_str(), "cors": cors.to_json() });
            let (t, raw): (TriggerView, _) = client.json(client.request(Method::POST, "/v1/routes").json(&body))?;
            show(global, t, &raw);
        }
        RouteCommand::Ls => list(global, &client, "/v1/routes", true)?,
        RouteCommand::Get { id } => {
            let (t, raw): (TriggerView, _) =
                client.json(client.request(Method::GET, &format!("/v1/routes/{}", segment(&id))))?;
            show(global, t, &raw);
        }
        RouteCommand::Rm { id } => {
            client.send(client.request(Method::DELETE, &format!("/v1/routes/{}", segment(&id))))?;
            if global.output == Format::Table {
                println!("route {id} deleted");
            }
        }
    }
    Ok(())
}
