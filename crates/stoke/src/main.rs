//! The `stoke` binary: `stoke server` runs the platform; every other sub-command is a client of its API.

mod client;
mod commands;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc for the server, the C library's allocator for the sandbox helpers (see `stoke_sandbox::Allocator`).
#[global_allocator]
static ALLOCATOR: stoke_sandbox::Allocator = stoke_sandbox::Allocator;

/// stoke — a self-hosted serverless platform: Lambda functions and Step Functions workflows, fast.
///
/// Start a server with `stoke server`; it prints where its admin credentials are. Every other command
/// talks to that server: it finds it through --endpoint / STOKE_ENDPOINT, or the server.json the server
/// writes into its data directory, and authenticates with --api-key / STOKE_API_KEY or the data
/// directory's credentials.json.
#[derive(Debug, Parser)]
#[command(name = "stoke", version, propagate_version = true, max_term_width = 110)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Data directory of the server (its store, code archives, credentials.json and server.json).
    #[arg(long, global = true, env = "STOKE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// URL of the server, e.g. http://127.0.0.1:9000 [default: from <data-dir>/server.json].
    #[arg(long, global = true, env = "STOKE_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// API key [default: from <data-dir>/credentials.json].
    #[arg(long, global = true, env = "STOKE_API_KEY", value_name = "KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Certificates (PEM) to trust, besides the system's, when the server serves HTTPS with its own
    /// certificate authority.
    #[arg(long, global = true, env = "STOKE_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = output::Format::Table)]
    pub output: output::Format,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the platform: the API, the store, and the functions.
    Server(Box<commands::server::Args>),
    /// Create, change, inspect, publish and retire functions.
    #[command(name = "fn", alias = "function")]
    Function(commands::function::Args),
    /// Run a function and print what it returned.
    Invoke(commands::invoke::InvokeArgs),
    /// Event invocations that failed after their retries: list, show, redrive, purge.
    Events(commands::events::Args),
    /// Lambda durable executions: list, get, history, stop, answer a callback.
    Durable(commands::durable::Args),
    /// Run a function or a workflow on a schedule: rate, cron (AWS's) or one time, in a time zone.
    Schedule(commands::schedule::Args),
    /// Show the nodes of the cluster: state (live, gone), address, capacity and load (admin only).
    Nodes(commands::nodes::Args),
    /// Show running instances and their states.
    Instances(commands::invoke::InstancesArgs),
    /// Print a function's log lines.
    Logs(commands::invoke::LogsArgs),
    /// Point names like prod or beta at published versions.
    Alias(commands::alias::Args),
    /// Layers: libraries published once, unpacked once, mounted read-only at /opt of every instance.
    Layer(commands::layer::LayerArgs),
    /// Images: root file systems functions can run on instead of the host's own.
    Image(commands::layer::ImageArgs),
    /// Function URLs: call a function over plain HTTP (Lambda's HTTP API event format).
    Url(commands::trigger::UrlArgs),
    /// Routes: map `METHOD /path/{param}` patterns of the account's gateway to functions.
    Route(commands::trigger::RouteArgs),
    /// Workflows: Amazon States Language state machines of functions, and their executions.
    #[command(name = "wf", alias = "workflow")]
    Workflow(commands::workflow::Args),
    /// Accounts (tenants) and their credentials.
    Account(commands::account::Args),
    /// Find the right memory size: run a payload at several sizes and recommend one.
    Tune(commands::tune::Args),
    /// Print a shell completion script, e.g. `stoke completions bash > /etc/bash_completion.d/stoke`.
    Completions(commands::completions::Args),
}

fn main() -> ExitCode {
    // The lean sandbox runs this binary as its set-up helper; nothing else may happen first.
    if std::env::args_os().nth(1).is_some_and(|a| a == stoke_sandbox::JAIL_ARG) {
        stoke_sandbox::jail_main(std::env::args_os().skip(2));
    }
    // The oci sandbox holds its OCI runtime in a PID namespace through this binary too.
    if std::env::args_os().nth(1).is_some_and(|a| a == stoke_sandbox::PIDNS_ARG) {
        stoke_sandbox::pidns_main(std::env::args_os().skip(2));
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => commands::server::run(&cli.global, *args),
        Command::Function(args) => commands::function::run(&cli.global, args),
        Command::Invoke(args) => commands::invoke::invoke(&cli.global, args),
        Command::Nodes(args) => commands::nodes::run(&cli.global, args),
        Command::Events(args) => commands::events::run(&cli.global, args),
        Command::Durable(args) => commands::durable::run(&cli.global, args),
        Command::Schedule(args) => commands::schedule::run(&cli.global, args),
        Command::Instances(args) => commands::invoke::instances(&cli.global, args),
        Command::Logs(args) => commands::invoke::logs(&cli.global, args),
        Command::Alias(args) => commands::alias::run(&cli.global, args),
        Command::Layer(args) => commands::layer::run_layer(&cli.global, args),
        Command::Image(args) => commands::layer::run_image(&cli.global, args),
        Command::Account(args) => commands::account::run(&cli.global, args),
        Command::Workflow(args) => commands::workflow::run(&cli.global, args),
        Command::Url(args) => commands::trigger::run_url(&cli.global, args),
        Command::Route(args) => commands::trigger::run_route(&cli.global, args),
        Command::Completions(args) => commands::completions::run(args),
        Command::Tune(args) => commands::tune::run(&cli.global, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Clap checks the whole command tree (duplicate names, bad defaults) only when asked.
    #[test]
    fn command_tree_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
