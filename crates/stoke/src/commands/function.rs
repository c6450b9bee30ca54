//! `stoke fn ...`: functions, their code, versions and lifecycle.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::blocking::Body;
use reqwest::Method;
use serde_json::json;
use stoke_core::{ConfigPatch, Network};
use stoke_server::http::views::{
    EventConfigList, EventConfigView, FunctionList, FunctionView, VersionList, VersionView,
};

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
    /// Create a function from a code archive (.zip, .tar.gz) or a directory.
    ///
    /// Example: stoke fn create thumb --runtime python3.12 --handler app.handler --code ./thumb --memory 256
    Create {
        name: String,
        /// A .zip or .tar.gz archive, or a directory to zip.
        #[arg(long, value_name = "PATH")]
        code: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Change $LATEST: its code (--code), its configuration, or both.
    Update {
        name: String,
        /// New code: a .zip or .tar.gz archive, or a directory to zip.
        #[arg(long, value_name = "PATH")]
        code: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Show a function: name, name:version, name:alias, or an ARN.
    Get {
        function: String,
        /// Show environment variables' values (they are masked otherwise: `KEY=****`).
        #[arg(long)]
        show_secrets: bool,
    },
    /// List functions.
    Ls {
        /// Functions per page.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Start after this cursor (from a previous page).
        #[arg(long)]
        cursor: Option<String>,
        /// Follow every page.
        #[arg(long)]
        all: bool,
    },
    /// Delete a function with all its versions and aliases; NAME:N deletes only published version N
    /// (refused while an alias routes to it).
    Rm { name: String },
    /// Publish $LATEST as a new immutable version.
    Publish {
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List published versions.
    Versions { name: String },
    /// Show or set how Event invocations are retried and where their outcome goes (Lambda's event invoke
    /// config): NAME lists every qualifier's; NAME[:QUALIFIER] with --max-retries/--max-age/--on-success/
    /// --on-failure sets one ($LATEST by default; what is left out takes the default), --delete removes it.
    EventConfig {
        name: String,
        /// Retries after a failed attempt, 0 to 2 (default 2).
        #[arg(long, value_name = "N")]
        max_retries: Option<i64>,
        /// How old an event may get before it is given up, 60 to 21600 seconds (default 21600).
        #[arg(long, value_name = "SECONDS")]
        max_age: Option<i64>,
        /// Where a success's invocation record goes: a function ARN (invoked asynchronously with the record)
        /// or a state machine ARN (started with it).
        #[arg(long, value_name = "ARN")]
        on_success: Option<String>,
        /// Where a failure's invocation record goes (as --on-success); failed events stay in the failed-event
        /// store either way.
        #[arg(long, value_name = "ARN")]
        on_failure: Option<String>,
        #[arg(long, conflicts_with_all = ["max_retries", "max_age", "on_success", "on_failure"])]
        delete: bool,
    },
    /// Refuse invocations until unblocked.
    Block { name: String },
    /// Let invocations in again.
    Unblock { name: String },
    /// Retire: refuse everything, then delete once in-flight work drains.
    Retire { name: String },
    /// Download the code archive of a function or version.
    Code {
        function: String,
        /// Where to write the zip.
        #[arg(long, short = 'O', value_name = "FILE")]
        out: PathBuf,
    },
}

/// Configuration flags shared by create and update; unset flags leave the value alone.
#[derive(Debug, clap::Args)]
struct ConfigArgs {
    /// python3.8 … python3.14, nodejs, nodejs18.x … nodejs24.x, or provided.
    #[arg(long)]
    runtime: Option<String>,
    /// module.function (python, node); ignored by provided.
    #[arg(long)]
    handler: Option<String>,
    /// Memory in MB: a multiple of 64 from 128 up to the node's limit.
    #[arg(long, value_name = "MB")]
    memory: Option<u32>,
    /// Seconds an invocation may run (1-900).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u32>,
    /// Size of /tmp in MB (512-10240; Lambda's ephemeral storage): on disk, not counted against memory.
    #[arg(long, value_name = "MB")]
    ephemeral_storage: Option<u32>,
    /// Environment variable KEY=VALUE; repeat for more. Replaces all variables on update.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    #[arg(long)]
    description: Option<String>,
    /// Layer reference name:version; repeat for more (at most 5).
    #[arg(long = "layer", value_name = "NAME:VERSION")]
    layers: Vec<String>,
    /// Root file system image.
    #[arg(long)]
    base_image: Option<String>,
    #[arg(long, value_name = "N")]
    gpus: Option<u32>,
    /// GPU memory in MB (multiples of 256).
    #[arg(long, value_name = "MB")]
    gpu_memory: Option<u32>,
    /// Share of a GPU, 1-100 (0 clears).
    #[arg(long, value_name = "PERCENT")]
    gpu_percentage: Option<u32>,
    /// Most instances running at once (0 clears the limit).
    #[arg(long, value_name = "N")]
    concurrency: Option<u32>,
    /// Instances kept warm without traffic.
    #[arg(long, value_name = "N")]
    min_warm: Option<u32>,
    /// Seconds an idle instance stays warm.
    #[arg(long, value_name = "SECONDS")]
    keep_alive: Option<u32>,
    /// `host` (the node's network, as on Lambda) or `none` (only loopback; needs the lean sandbox).
    #[arg(long, value_parser = ["host", "none"])]
    network: Option<String>,
    /// Makes the function durable (on create only): the seconds each execution may run in all, 1-31622400.
    #[arg(long, value_name = "SECONDS")]
    durable_timeout: Option<u32>,
    /// Days a durable function's finished executions are kept (1-90, default 14).
    #[arg(long, value_name = "DAYS")]
    durable_retention: Option<u32>,
    /// How the runtime writes logs: `text` (as printed) or `json` (each log record a JSON object, as
    /// Lambda's LoggingConfig LogFormat JSON).
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// With --log-format json: the lowest level written (TRACE, DEBUG, INFO, WARN, ERROR, FATAL).
    #[arg(long, value_name = "LEVEL", requires = "log_format")]
    log_level: Option<String>,
}

impl ConfigArgs {
    fn into_patch(self) -> Result<ConfigPatch> {
        let environment = if self.env.is_empty() {
            None
        } else {
            let mut map = BTreeMap::new();
            for kv in &self.env {
                let Some((k, v)) = kv.split_once('=') else {
                    bail!("--env takes KEY=VALUE; got {kv:?}");
                };
                map.insert(k.to_string(), v.to_string());
            }
            Some(map)
        };
        Ok(ConfigPatch {
            runtime: self.runtime,
            handler: self.handler,
            memory_mb: self.memory,
            timeout_s: self.timeout,
            environment,
            description: self.description,
            layers: (!self.layers.is_empty()).then_some(self.layers),
            base_image: self.base_image,
            gpu_count: self.gpus,
            gpu_memory_mb: self.gpu_memory,
            gpu_percentage: self.gpu_percentage,
            concurrency_limit: self.concurrency,
            min_warm: self.min_warm,
            keep_alive_s: self.keep_alive,
            network: self.network.as_deref().map(|n| if n == "none" { Network::None } else { Network::Host }),
            ephemeral_storage_mb: self.ephemeral_storage,
            durable: (self.durable_timeout.is_some() || self.durable_retention.is_some()).then_some(
                stoke_core::config::DurableConfigPatch {
                    execution_timeout_s: self.durable_timeout,
                    retention_days: self.durable_retention,
                },
            ),
            logging: self.log_format.map(|f| stoke_core::config::LoggingConfig {
                format: if f == "json" {
                    stoke_core::config::LogFormat::Json
                } else {
                    stoke_core::config::LogFormat::Text
                },
                application_level: self.log_level,
                ..Default::default()
            }),
        })
    }
}

/// Reads an archive, or zips a directory (keeping file modes, so a `bootstrap` stays executable, and
/// modification times, so shipped `.pyc` files stay valid).
pub(crate) fn load_code(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read code at {}", path.display()))?;
    if !meta.is_dir() {
        return std::fs::read(path).with_context(|| format!("cannot read code archive {}", path.display()));
    }
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let p = entry.path();
            let rel = p.strip_prefix(path).unwrap_or(&p).to_string_lossy().replace('\\', "/");
            let meta = entry.metadata()?;
            use std::os::unix::fs::PermissionsExt;
            let opts = stoke_store::archive::entry_options(meta.permissions().mode() & 0o777, meta.modified().ok());
            if meta.is_dir() {
                zip.add_directory(format!("{rel}/"), opts)?;
                stack.push(p);
            } else {
                zip.start_file(rel, opts)?;
                zip.write_all(&std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?)?;
            }
        }
    }
    Ok(zip.finish()?.into_inner())
}

/// A request body that advances a progress bar as it is sent.
struct Progress {
    inner: Cursor<Vec<u8>>,
    bar: ProgressBar,
}

impl Read for Progress {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        if n == 0 {
            self.bar.finish_and_clear();
        }
        Ok(n)
    }
}

pub(crate) fn upload_body(bytes: Vec<u8>) -> Body {
    let len = bytes.len() as u64;
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("uploading {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Body::sized(Progress { inner: Cursor::new(bytes), bar }, len)
}

/// Environment variables' values replaced by `****`, in a function's JSON as the API answers it.
fn mask_environment(raw: &mut serde_json::Value) {
    if let Some(env) = raw.get_mut("environment").and_then(serde_json::Value::as_object_mut) {
        for value in env.values_mut() {
            *value = serde_json::Value::String(MASK.into());
        }
    }
}

const MASK: &str = "****";

fn show(global: &GlobalArgs, f: FunctionView, raw: &serde_json::Value) {
    show_masked(global, f, raw, true);
}

/// Prints a function; environment variables' values are masked unless `masked` is false.
fn show_masked(global: &GlobalArgs, f: FunctionView, raw: &serde_json::Value, masked: bool) {
    if global.output == Format::Json {
        let mut raw = raw.clone();
        if masked {
            mask_environment(&mut raw);
        }
        print_json(&raw);
        return;
    }
    let c = &f.config;
    let env = c
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={}", if masked { MASK } else { v }))
        .collect::<Vec<_>>()
        .join(" ");
    let gpu = if c.gpu_count == 0 {
        "none".to_string()
    } else {
        format!("{} × {} MB, {}%", c.gpu_count, c.gpu_memory_mb, c.gpu_percentage.unwrap_or(100))
    };
    let tune = f.last_tune.as_ref().map(|t| {
        let result = match (&t.recommendation, &t.error) {
            (_, Some(e)) => e.message.clone(),
            (Some(r), None) => r.summary.clone(),
            (None, None) => format!("{}/{} invocations", t.progress.done, t.progress.total),
        };
        format!("{} ({}): {result}", t.id, t.state)
    });
    let mut fields = vec![
        ("name", f.name),
        ("version", f.version),
        ("state", f.state.to_string()),
        ("allowed", f.allowed_actions.join(", ")),
        ("arn", f.arn),
        ("runtime", c.runtime.clone()),
        ("handler", c.handler.clone()),
        ("memory", format!("{} MB", c.memory_mb)),
        ("timeout", format!("{} s", c.timeout_s)),
        ("/tmp", format!("{} MB", c.ephemeral_storage_mb)),
        ("environment", env),
        ("layers", c.layers.join(", ")),
        ("base image", c.base_image.clone()),
        ("gpu", gpu),
        ("concurrency", c.concurrency_limit.map_or_else(|| "account limit".into(), |n| n.to_string())),
        ("min warm", c.min_warm.to_string()),
        ("keep alive", format!("{} s", c.keep_alive_s)),
        ("network", c.network.as_str().to_string()),
        (
            "durable",
            c.durable.map_or_else(
                || "no".into(),
                |d| format!("executions run ≤ {} s, kept {} days", d.execution_timeout_s, d.retention_days),
            ),
        ),
        ("code", format!("{} ({} bytes)", f.code_sha256, f.code_size)),
        ("versions", if f.last_version == 0 { "none".into() } else { format!("1 … {}", f.last_version) }),
        ("modified", f.modified),
        ("description", c.description.clone()),
    ];
    fields.extend(tune.map(|t| ("last tune", t)));
    print_fields(&fields);
}

fn fn_path(name: &str, rest: &str) -> String {
    format!("/v1/functions/{}{rest}", segment(name))
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<()> {
    let client = Client::from_args(global)?;
    match args.command {
        Command::Create { name, code, config } => {
            let patch = config.into_patch()?;
            let archive = load_code(&code)?;
            let mut body = serde_json::to_value(&patch)?;
            let obj = body.as_object_mut().context("configuration did not serialise to an object")?;
            obj.retain(|_, v| !v.is_null());
            obj.insert("name".into(), json!(name));
            obj.insert("code_base64".into(), json!(base64::engine::general_purpose::STANDARD.encode(&archive)));
            let req = client
                .request(Method::POST, "/v1/functions")
                .header("content-type", "application/json")
                .body(upload_body(serde_json::to_vec(&body)?));
            let (f, raw): (FunctionView, _) = client.json(req)?;
            show(global, f, &raw);
        }
        Command::Update { name, code, config } => {
            let patch = config.into_patch()?;
            if code.is_none() && patch.is_empty() {
                bail!("nothing to update: give --code and/or configuration flags (see `stoke fn update --help`)");
            }
            let mut last = None;
            if let Some(code) = code {
                let req = client
                    .request(Method::PUT, &fn_path(&name, "/code"))
                    .header("content-type", "application/zip")
                    .body(upload_body(load_code(&code)?));
                last = Some(client.json::<FunctionView>(req)?);
            }
            if !patch.is_empty() {
                last = Some(client.json(client.request(Method::PATCH, &fn_path(&name, "")).json(&patch))?);
            }
            if let Some((f, raw)) = last {
                show(global, f, &raw);
            }
        }
        Command::Get { function, show_secrets } => {
            let (f, raw): (FunctionView, _) = client.json(client.request(Method::GET, &fn_path(&function, "")))?;
            show_masked(global, f, &raw, !show_secrets);
        }
        Command::Ls { limit, cursor, all } => {
            let mut cursor = cursor;
            let mut functions = Vec::new();
            let mut raw_pages = Vec::new();
            loop {
                let mut req = client.request(Method::GET, "/v1/functions").query(&[("limit", limit.to_string())]);
                if let Some(c) = &cursor {
                    req = req.query(&[("cursor", c)]);
                }
                let (page, raw): (FunctionList, _) = client.json(req)?;
                functions.extend(page.functions);
                raw_pages.push(raw);
                cursor = page.next_cursor;
                if !all || cursor.is_none() {
                    break;
                }
            }
            if global.output == Format::Json {
                let mut out = if raw_pages.len() == 1 {
                    raw_pages.swap_remove(0)
                } else {
                    json!({ "functions": functions, "next_cursor": cursor })
                };
                for f in out["functions"].as_array_mut().into_iter().flatten() {
                    mask_environment(f);
                }
                print_json(&out);
            } else {
                let mut t =
                    table(&["NAME", "STATE", "RUNTIME", "MEMORY", "VERSIONS", "LAST INVOKED", "ERRORS", "MODIFIED"]);
                for f in &functions {
                    let (last, errors) = match f.activity.filter(|a| a.invocations > 0) {
                        Some(a) => (
                            stoke_core::time::format_rfc3339(a.last_invoked_ms),
                            format!(
                                "{} of {} ({:.0} %)",
                                a.errors,
                                a.invocations,
                                a.error_rate().unwrap_or(0.0) * 100.0
                            ),
                        ),
                        None => ("-".to_string(), "-".to_string()),
                    };
                    t.add_row(vec![
                        f.name.clone(),
                        f.state.to_string(),
                        f.config.runtime.clone(),
                        format!("{} MB", f.config.memory_mb),
                        f.last_version.to_string(),
                        last,
                        errors,
                        f.modified.clone(),
                    ]);
                }
                println!("{t}");
                if let Some(c) = cursor {
                    eprintln!("more: stoke fn ls --cursor {c}  (or --all)");
                }
            }
        }
        Command::Rm { name } => match stoke_core::FunctionRef::parse(&name).ok().and_then(|r| r.qualifier) {
            Some(stoke_core::Qualifier::Version(n)) => {
                let function = name.rsplit_once(':').map_or(name.as_str(), |(f, _)| f);
                client.send(client.request(Method::DELETE, &fn_path(function, &format!("/versions/{n}"))))?;
                if global.output == Format::Table {
                    println!("version {n} of function {function} deleted");
                }
            }
            Some(q) => bail!("{name}: rm deletes a function or one version of it (NAME:N), not {q}"),
            None => {
                client.send(client.request(Method::DELETE, &fn_path(&name, "")))?;
                if global.output == Format::Table {
                    println!("function {name} deleted");
                }
            }
        },
        Command::Publish { name, description } => {
            let req =
                client.request(Method::POST, &fn_path(&name, "/versions")).json(&json!({ "description": description }));
            let (v, raw): (VersionView, _) = client.json(req)?;
            if global.output == Format::Json {
                print_json(&raw);
            } else {
                print_fields(&[
                    ("function", v.function),
                    ("version", v.version.to_string()),
                    ("arn", v.arn),
                    ("code", v.code_sha256),
                ]);
            }
        }
        Command::EventConfig { name, max_retries, max_age, on_success, on_failure, delete } => {
            let (function, qualifier) = match stoke_core::FunctionRef::parse(&name).ok().and_then(|r| r.qualifier) {
                Some(q) => (name.rsplit_once(':').map_or(name.as_str(), |(f, _)| f).to_string(), q.to_string()),
                None => (name.clone(), "$LATEST".to_string()),
            };
            let path = fn_path(&function, &format!("/event-configs/{}", crate::client::segment(&qualifier)));
            if delete {
                client.send(client.request(Method::DELETE, &path))?;
                println!("the event invoke config of {function}:{qualifier} was removed (Lambda's defaults apply)");
            } else if max_retries.is_some() || max_age.is_some() || on_success.is_some() || on_failure.is_some() {
                let body = json!({ "max_retries": max_retries, "max_age_s": max_age, "on_success": on_success,
                                   "on_failure": on_failure });
                let (c, raw): (EventConfigView, _) = client.json(client.request(Method::PUT, &path).json(&body))?;
                if global.output == Format::Json {
                    print_json(&raw);
                } else {
                    println!(
                        "{function}:{}: {} retries, events given up after {} s",
                        c.qualifier,
                        c.max_retries.unwrap_or(stoke_core::event::MAX_RETRIES),
                        c.max_age_s.unwrap_or(stoke_core::event::MAX_EVENT_AGE_S)
                    );
                    for (when, to) in [("on success", &c.on_success), ("on failure", &c.on_failure)] {
                        if let Some(to) = to {
                            println!("  {when}: records go to {to}");
                        }
                    }
                }
            } else {
                let (list, raw): (EventConfigList, _) =
                    client.json(client.request(Method::GET, &fn_path(&function, "/event-configs")))?;
                if global.output == Format::Json {
                    print_json(&raw);
                } else {
                    let mut t = table(&["QUALIFIER", "MAX RETRIES", "MAX AGE", "ON SUCCESS", "ON FAILURE", "MODIFIED"]);
                    for c in list.configs {
                        let or_default =
                            |v: Option<u32>, d: u32| v.map_or_else(|| format!("{d} (default)"), |v| v.to_string());
                        t.add_row(vec![
                            c.qualifier,
                            or_default(c.max_retries, stoke_core::event::MAX_RETRIES),
                            format!("{} s", or_default(c.max_age_s, stoke_core::event::MAX_EVENT_AGE_S)),
                            c.on_success.unwrap_or_else(|| "-".into()),
                            c.on_failure.unwrap_or_else(|| "failed-event store".into()),
                            c.modified_at,
                        ]);
                    }
                    println!("{t}");
                }
            }
        }
        Command::Versions { name } => {
            let (list, raw): (VersionList, _) =
                client.json(client.request(Method::GET, &fn_path(&name, "/versions")).query(&[("limit", "1000")]))?;
            if global.output == Format::Json {
                print_json(&raw);
            } else {
                let mut t = table(&["VERSION", "RUNTIME", "MEMORY", "CODE", "CREATED", "DESCRIPTION"]);
                for v in list.versions {
                    t.add_row(vec![
                        v.version.to_string(),
                        v.config.runtime,
                        format!("{} MB", v.config.memory_mb),
                        v.code_sha256.chars().take(12).collect(),
                        v.created,
                        v.description,
                    ]);
                }
                println!("{t}");
            }
        }
        Command::Block { name } => lifecycle(global, &client, &name, "block")?,
        Command::Unblock { name } => lifecycle(global, &client, &name, "unblock")?,
        Command::Retire { name } => lifecycle(global, &client, &name, "retire")?,
        Command::Code { function, out } => {
            let bytes = client.send(client.request(Method::GET, &fn_path(&function, "/code")))?.bytes()?;
            std::fs::write(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
            if global.output == Format::Table {
                println!("wrote {} bytes to {}", bytes.len(), out.display());
            }
        }
    }
    Ok(())
}

fn lifecycle(global: &GlobalArgs, client: &Client, name: &str, action: &str) -> Result<()> {
    let (f, raw): (FunctionView, _) =
        client.json(client.request(Method::POST, &fn_path(name, &format!("/{action}"))))?;
    if global.output == Format::Json {
        print_json(&raw);
    } else {
        println!("{} is now {} (allowed next: {})", f.name, f.state, f.allowed_actions.join(", "));
    }
    Ok(())
}
