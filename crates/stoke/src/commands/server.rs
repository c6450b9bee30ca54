//! `stoke server`: runs the platform until interrupted.

use anyhow::{Context, Result};
use stoke_sandbox::lean::{ephemeral, LeanSettings};
use stoke_server::cluster::ClusterConfig;
use stoke_server::transport::{Limits, TlsFiles, Transport};
use stoke_server::{GenericKind, SandboxChoice, Server, ServerConfig};

use crate::client::data_dir;
use crate::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port (see <data-dir>/server.json).
    #[arg(long, default_value = ServerConfig::DEFAULT_LISTEN, value_name = "HOST:PORT")]
    listen: String,
    /// Region written into ARNs.
    #[arg(long, default_value = ServerConfig::DEFAULT_REGION)]
    region: String,
    /// Largest memory a function may ask for, and the node's budget for all live instances together, in MB
    /// [default: the machine's memory]. Instances are admitted by what they really use (their measured peak
    /// plus headroom), each held to its own configured size.
    #[arg(long, value_name = "MB")]
    max_memory_mb: Option<u32>,
    /// How many times the memory budget live instances' configured sizes may add up to. Idle instances give
    /// way when either the budget or this bound is reached; 1 admits instances by their configured size.
    #[arg(long, default_value_t = stoke_core::memory::DEFAULT_OVERCOMMIT, value_name = "FACTOR",
          value_parser = parse_overcommit)]
    memory_overcommit: f64,
    /// Use at most this many of the node's NVIDIA GPUs (the first ones) [default: all found, through NVML,
    /// else the driver's /proc files, else /dev/nvidiaN].
    #[arg(long, value_name = "N")]
    gpus: Option<u32>,
    /// The NVML library GPUs are read through [default: libnvidia-ml.so.1 on the loader's path].
    #[arg(long, env = "STOKE_NVML_LIBRARY", value_name = "PATH")]
    nvml_library: Option<String>,
    /// Enforce GPU shares (gpu_memory_mb, gpu_percentage) with one CUDA MPS daemon per GPU, started and
    /// supervised by the node, when nvidia-cuda-mps-control is installed.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    gpu_mps: bool,
    /// Where the NVIDIA device nodes (nvidiaN, nvidiactl, nvidia-uvm) are [default: /dev].
    #[arg(long, value_name = "DIR")]
    gpu_dev_dir: Option<std::path::PathBuf>,
    /// Largest code archive accepted, in MB.
    #[arg(long, default_value_t = ServerConfig::DEFAULT_MAX_ARCHIVE_MB, value_name = "MB")]
    max_archive_mb: u64,
    /// Largest image `stoke image import` accepts, unpacked, in MB.
    #[arg(long, default_value_t = ServerConfig::DEFAULT_MAX_IMAGE_MB, value_name = "MB")]
    max_image_mb: u64,
    /// Most instances one account may have in use at once across its functions (starting, initialising or
    /// running an invocation, as Lambda counts concurrency); idle warm instances do not count.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    account_concurrency: usize,
    /// Sandbox for function instances: `lean` (namespaces, read-only root, cgroups, seccomp; needs root),
    /// `oci` (OCI bundles run by an OCI runtime: runc, crun, runsc; needs root), `vm` (a QEMU microVM per
    /// instance; needs root, QEMU and KVM), `process` (plain child processes with rlimits: no isolation), or
    /// `auto` (lean when it can run).
    #[arg(long, value_enum, default_value_t = SandboxArg::Auto)]
    sandbox: SandboxArg,
    /// The OCI runtime of `--sandbox oci`: a name on PATH (`runc`, `crun`, `runsc`) or a path
    /// [default: crun, else runc].
    #[arg(long, value_name = "RUNTIME")]
    oci_runtime: Option<String>,
    /// gVisor's platform when the OCI runtime is runsc: ptrace, systrap or kvm, as this runsc knows them
    /// [default: runsc's own].
    #[arg(long, value_name = "PLATFORM", requires = "oci_runtime")]
    runsc_platform: Option<String>,
    /// How `--sandbox vm` runs its VMs: `kvm` (hardware virtualisation), `tcg` (QEMU's emulation: no
    /// /dev/kvm needed, many times slower), or `auto` (kvm, and refuse to start where it cannot be used)
    /// [default: auto].
    #[arg(long, value_enum, value_name = "ACCEL")]
    vm_accel: Option<VmAccelArg>,
    /// The guest kernel of `--sandbox vm`: a `/boot/vmlinuz-<release>` whose modules are installed
    /// [default: the newest one with 9p, as `linux-image-amd64` installs].
    #[arg(long, value_name = "FILE")]
    vm_kernel: Option<std::path::PathBuf>,
    /// Whether `--sandbox vm` restores its VMs from snapshots: a VM of each shape (memory, vCPUs, /tmp
    /// size) is booted once and saved, later ones are restored from it with a new clock and fresh
    /// randomness; `false` boots every VM [default: true].
    #[arg(long, action = clap::ArgAction::Set, value_name = "BOOL")]
    vm_snapshots: Option<bool>,
    /// Where instances' /tmp lives (its size is each function's `ephemeral_storage_mb`): `disk` (a file
    /// system of its own per instance, on a loop device: not counted against the function's memory),
    /// `memory` (a tmpfs, which counts against it), or `auto` (disk when the host can).
    #[arg(long, value_enum, default_value_t = EphemeralArg::Auto)]
    ephemeral_storage: EphemeralArg,
    /// A directory on the file system that should hold instances' /tmp disks (sparse images, in
    /// `stoke-tmp` inside it) [default: the data directory's]. Put it elsewhere to keep full /tmps from
    /// filling the store's disk.
    #[arg(long, value_name = "DIR")]
    ephemeral_dir: Option<std::path::PathBuf>,
    /// Processes and threads a lean instance may have.
    #[arg(long, default_value_t = LeanSettings::default().pids_max, value_name = "N")]
    pids_max: u32,
    /// Cap each lean instance's CPU time at its memory-proportional share (one vCPU per 1,769 MB), as on
    /// Lambda. Without it the share is a weight, applied only when instances compete for the CPU.
    #[arg(long)]
    cpu_quota: bool,
    /// Freeze a lean instance after it has waited this long for work (it then uses no CPU) and thaw it
    /// when work arrives; 0 never freezes.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    freeze_after_ms: u64,
    /// How long an instance a workflow step reserved with `prepare` waits for its step; after that the
    /// reservation is released and the instance returns to its pool.
    #[arg(long, default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    reservation_ttl: u64,
    /// Generic instances to keep ready (lean sandbox): set up before their function is known, given one on
    /// demand, so a cold start skips the sandbox's set-up. KIND=N pairs: `sandbox` (serves any runtime) and
    /// `python` (stoke's Python runtime already started); `none` keeps none.
    #[arg(long, default_value = "sandbox=1,python=1", value_name = "KIND=N,...", value_parser = parse_generic)]
    generic: GenericArg,
    /// Python zygotes kept (lean sandbox), one per layer set: a parked interpreter with the layers' packages
    /// imported, from which instances of Python functions with those layers are forked. 0: none.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=64))]
    zygotes: u64,
    /// Most instances a function starts for a burst of invocations before one of them has initialised and
    /// run. Once run times are measured, the pool grows only as far as waiting for a busy instance would
    /// take longer than a cold start. 0: one instance per queued invocation, as Lambda does.
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=1000))]
    first_wave: u64,
    /// Most instances of one function initialising at once [default: twice the cores, at least 4]. Starting
    /// an instance is CPU work: many more at once than there are cores only slows each of them down.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
    max_starting: Option<u64>,
    /// How workflow executions hide cold starts, unless their workflow or start request says otherwise:
    /// `jit` starts each next function's instance just in time from learned durations, `eager` starts the
    /// next functions as soon as a state starts, `off` never.
    #[arg(long, default_value = "jit", value_parser = ["off", "eager", "jit"], value_name = "POLICY")]
    prewarm: String,
    /// Price per GB-second of billed time, for `stoke wf cost` [default: Lambda's, $0.0000166667].
    #[arg(long, value_name = "USD")]
    price_gb_second: Option<f64>,
    /// Price per invocation [default: Lambda's, $0.0000002].
    #[arg(long, value_name = "USD")]
    price_request: Option<f64>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// The key file functions' environment variables are sealed with at rest (created, mode 0600, when
    /// missing) [default: <data-dir>/env.key; in a cluster, a key derived from the cluster secret]. Keep it
    /// out of backups of the store; docs/function-manager.md says how to rotate it.
    #[arg(long, env = "STOKE_ENV_KEY_FILE", value_name = "FILE")]
    env_key_file: Option<std::path::PathBuf>,
    /// For tests: the schedules' clock starts at this instant (RFC 3339) instead of now.
    #[arg(long, hide = true, value_name = "TIME")]
    schedule_clock_start: Option<String>,
    /// For tests: the schedules' clock runs this many times as fast as the system's.
    #[arg(long, hide = true, value_name = "RATE")]
    schedule_clock_rate: Option<f64>,
    /// For tests: the system's time (ms since the epoch) at which the schedules' clock read its start
    /// [default: now]; the same value across restarts keeps it running on.
    #[arg(long, hide = true, value_name = "MS")]
    schedule_clock_since: Option<i64>,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    http: HttpArgs,
}

/// How the API is served: HTTPS, and what one client may hold.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "HTTP")]
struct HttpArgs {
    /// Serve the API over HTTPS with this certificate chain (PEM); needs --tls-key. Clients that do not trust
    /// its issuer take --ca-file. The Runtime API that instances call stays plain HTTP on their own endpoint.
    #[arg(long, env = "STOKE_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "STOKE_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Seconds a client has to send a request's head (also how long an idle connection is kept open).
    #[arg(long, default_value_t = Limits::default().header_timeout.as_secs(), value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout: u64,
    /// Seconds a client has to send a request's body, from its head.
    #[arg(long, default_value_t = Limits::default().body_timeout.as_secs(), value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout: u64,
    /// Connections held at once; one more is answered 503 `too_many_connections` (raise the open-files limit,
    /// `ulimit -n`, to match).
    #[arg(long, default_value_t = Limits::default().max_connections as u64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Largest request head (request line and headers) in KiB; a larger one is answered 431.
    #[arg(long, default_value_t = (Limits::default().max_header_bytes / 1024) as u64, value_name = "KIB",
          value_parser = clap::value_parser!(u64).range(8..=1024))]
    max_header_kb: u64,
    /// Threads serving the API and every instance's Runtime API [default: one per four cores, at least one].
    /// Fewer threads than cores keep a caller's request and its instance's answer on one thread and leave the
    /// cores to the functions; sandbox starts and the store's work run on threads of their own.
    #[arg(long, env = "STOKE_WORKER_THREADS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
}

impl HttpArgs {
    fn transport(&self) -> Transport {
        Transport {
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
                _ => None,
            },
            limits: Limits {
                header_timeout: std::time::Duration::from_secs(self.header_timeout),
                body_timeout: std::time::Duration::from_secs(self.body_timeout),
                max_connections: count(self.max_connections),
                max_header_bytes: count(self.max_header_kb) * 1024,
            },
        }
    }
}

/// Cluster mode: several nodes share one etcd (docs/cluster.md). Without --cluster the node runs alone on its
/// embedded SQLite store.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Cluster")]
struct ClusterArgs {
    /// Join a cluster: its etcd endpoints, comma-separated (e.g. http://10.0.0.5:2379,http://10.0.0.6:2379).
    #[arg(long, env = "STOKE_CLUSTER", value_name = "URL[,URL]", value_delimiter = ',')]
    cluster: Vec<String>,
    /// This node's name in the cluster, unique among its live nodes [default: the host name].
    #[arg(long, env = "STOKE_NODE_NAME", value_name = "NAME", requires = "cluster")]
    node_name: Option<String>,
    /// Where the other nodes and clients reach this node [default: http://<the address it listens on>].
    #[arg(long, env = "STOKE_ADVERTISE", value_name = "URL", requires = "cluster")]
    advertise: Option<String>,
    /// A file holding the secret nodes present to each other (the same on every node; at least 16
    /// characters, e.g. from `openssl rand -hex 32`).
    #[arg(long, env = "STOKE_CLUSTER_SECRET_FILE", value_name = "FILE", requires = "cluster")]
    cluster_secret_file: Option<std::path::PathBuf>,
    /// On how many nodes a new code archive must be before it is acknowledged (fewer when fewer are live).
    #[arg(long, default_value_t = ClusterConfig::DEFAULT_REPLICATION as u64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=16), requires = "cluster")]
    replication: u64,
    /// Seconds a node's membership lease lives without renewal: a node that stops is shown gone after it.
    #[arg(long, default_value_t = ClusterConfig::DEFAULT_NODE_TTL.as_secs(), value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(2..=300), requires = "cluster")]
    node_ttl: u64,
    /// Prefix of every key this cluster keeps in etcd (clusters sharing one etcd use different ones).
    #[arg(long, default_value = ClusterConfig::DEFAULT_PREFIX, value_name = "PREFIX", requires = "cluster")]
    etcd_prefix: String,
}

impl ClusterArgs {
    fn config(&self, global: &GlobalArgs) -> Result<Option<ClusterConfig>> {
        let endpoints: Vec<String> =
            self.cluster.iter().map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect();
        if endpoints.is_empty() {
            return Ok(None);
        }
        for e in &endpoints {
            anyhow::ensure!(
                e.starts_with("http://") || e.starts_with("https://"),
                "--cluster {e:?} is not an etcd URL: write it as http://HOST:PORT"
            );
        }
        if let Some(a) = &self.advertise {
            anyhow::ensure!(
                a.starts_with("http://") || a.starts_with("https://"),
                "--advertise {a:?} is not a URL: write it as http://HOST:PORT"
            );
        }
        let node_name = match &self.node_name {
            Some(n) => n.clone(),
            None => std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default(),
        };
        anyhow::ensure!(
            !node_name.is_empty()
                && node_name.len() <= 63
                && node_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'),
            "node name {node_name:?} is not valid: use 1-63 letters, digits, '-', '_' or '.' (--node-name)"
        );
        let secret_file = self.cluster_secret_file.as_ref().context(
            "--cluster needs --cluster-secret-file: a file with the secret the nodes share (e.g. `openssl rand -hex 32 > secret`)",
        )?;
        let secret = stoke_server::cluster::read_secret(secret_file).map_err(anyhow::Error::msg)?;
        Ok(Some(ClusterConfig {
            endpoints,
            node_name,
            advertise: self.advertise.clone().map(|a| a.trim_end_matches('/').to_string()),
            secret,
            prefix: self.etcd_prefix.clone(),
            replication: count(self.replication),
            node_ttl: std::time::Duration::from_secs(self.node_ttl),
            ca_file: global.ca_file.clone(),
        }))
    }
}

fn parse_overcommit(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|_| format!("{s:?} is not a number (e.g. 16)"))?;
    if !(1.0..=1000.0).contains(&f) {
        return Err(format!(
            "{f} is out of range: the overcommit is at least 1 (admission by configured size) and at most 1000"
        ));
    }
    Ok(f)
}

#[derive(Debug, Clone)]
struct GenericArg(Vec<(GenericKind, usize)>);

fn parse_generic(s: &str) -> Result<GenericArg, String> {
    if s == "none" || s.is_empty() {
        return Ok(GenericArg(Vec::new()));
    }
    let mut out = Vec::new();
    for pair in s.split(',') {
        let (kind, n) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not KIND=N (e.g. python=2)"))?;
        let kind = GenericKind::parse(kind.trim())
            .ok_or_else(|| format!("generic instance kind {kind:?} is not known: use sandbox or python"))?;
        let n: usize = n.trim().parse().map_err(|_| format!("{n:?} in {pair:?} is not a number"))?;
        if n > 64 {
            return Err(format!("{n} generic {} instances is too many: at most 64 of a kind", kind.name()));
        }
        out.retain(|(k, _)| *k != kind);
        out.push((kind, n));
    }
    Ok(GenericArg(out))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SandboxArg {
    Auto,
    Lean,
    Oci,
    Vm,
    Process,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum VmAccelArg {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EphemeralArg {
    Auto,
    Disk,
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// A count clap parsed as a u64 (its ranges are for u64), as the usize the server takes; clap bounds each.
fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    for (flag, price) in [("--price-gb-second", args.price_gb_second), ("--price-request", args.price_request)] {
        if let Some(p) = price {
            anyhow::ensure!(
                p.is_finite() && p >= 0.0,
                "{flag} {p} is not a price: give a number of dollars, 0 or more"
            );
        }
    }
    anyhow::ensure!(
        args.sandbox == SandboxArg::Vm
            || (args.vm_accel.is_none() && args.vm_kernel.is_none() && args.vm_snapshots.is_none()),
        "--vm-accel, --vm-kernel and --vm-snapshots apply to the vm sandbox: add --sandbox vm, or leave them out"
    );
    let mut config = ServerConfig {
        data_dir: data_dir(global),
        listen: args.listen,
        region: args.region,
        max_memory_mb: args.max_memory_mb,
        gpus: args.gpus,
        nvml_library: args.nvml_library.clone(),
        gpu_mps: args.gpu_mps,
        gpu_dev_dir: args.gpu_dev_dir.clone(),
        gpu_host: None,
        max_archive_mb: args.max_archive_mb,
        max_image_mb: args.max_image_mb,
        memory_overcommit: args.memory_overcommit,
        account_concurrency: args.account_concurrency,
        sandbox: match args.sandbox {
            SandboxArg::Auto => SandboxChoice::Auto,
            SandboxArg::Lean => SandboxChoice::Lean,
            SandboxArg::Process => SandboxChoice::Process,
            SandboxArg::Oci => {
                SandboxChoice::Oci { runtime: args.oci_runtime.clone(), platform: args.runsc_platform.clone() }
            }
            SandboxArg::Vm => SandboxChoice::Vm(stoke_sandbox::vm::VmSettings {
                accel: match args.vm_accel.unwrap_or(VmAccelArg::Auto) {
                    VmAccelArg::Auto => stoke_sandbox::vm::AccelChoice::Auto,
                    VmAccelArg::Kvm => stoke_sandbox::vm::AccelChoice::Kvm,
                    VmAccelArg::Tcg => stoke_sandbox::vm::AccelChoice::Tcg,
                },
                kernel: args.vm_kernel.clone(),
                snapshots: args.vm_snapshots.unwrap_or(true),
            }),
        },
        jail_helper: std::env::current_exe().ok(),
        prewarm: stoke_asl::prewarm::Policy::parse(&args.prewarm).unwrap_or_default(),
        pricing: {
            let default = stoke_core::cost::Pricing::default();
            stoke_core::cost::Pricing {
                per_gb_second: args.price_gb_second.unwrap_or(default.per_gb_second),
                per_request: args.price_request.unwrap_or(default.per_request),
            }
        },
        reservation_ttl: std::time::Duration::from_secs(args.reservation_ttl),
        freeze_idle_after: (args.freeze_after_ms > 0).then(|| std::time::Duration::from_millis(args.freeze_after_ms)),
        lean: LeanSettings {
            ephemeral: match args.ephemeral_storage {
                EphemeralArg::Auto => ephemeral::Choice::Auto,
                EphemeralArg::Disk => ephemeral::Choice::Disk,
                EphemeralArg::Memory => ephemeral::Choice::Memory,
            },
            ephemeral_dir: args.ephemeral_dir.clone(),
            pids_max: args.pids_max,
            cpu_quota: args.cpu_quota,
            ..Default::default()
        },
        generic: args.generic.0,
        zygotes: count(args.zygotes),
        first_wave: count(args.first_wave),
        max_starting: args.max_starting.map(count),
        cluster: args.cluster.config(global)?,
        transport: args.http.transport(),
        env_key_file: args.env_key_file.clone(),
        schedule_clock: schedule_clock(
            args.schedule_clock_start.as_deref(),
            args.schedule_clock_rate,
            args.schedule_clock_since,
        )?,
    };
    // The lean sandbox mounts generic instances' attach points: in a mount namespace of the server's own,
    // they go with the server however it ends. A namespace is per thread, so this comes before any thread.
    if config.sandbox != SandboxChoice::Process && nix_root() {
        if let Err(e) = stoke_sandbox::lean::attach::private_mount_namespace() {
            tracing::warn!(error = %e, "no mount namespace of the server's own: generic instances are off");
            config.generic.clear();
            config.zygotes = 0;
            // Disks mounted in the host's namespace would outlive a server that crashed.
            if config.lean.ephemeral == ephemeral::Choice::Auto {
                tracing::warn!("no mount namespace of the server's own: instances' /tmp is kept in memory");
                config.lean.ephemeral = ephemeral::Choice::Memory;
            }
        }
    }
    // Each client connection is a file descriptor; the usual soft limit (1024) would refuse clients long
    // before --max-connections does. Room is left for the store, archives and instances' pipes.
    let want = config.transport.limits.max_connections as u64 + 4096;
    match stoke_sandbox::raise_open_files_limit(want) {
        Ok(got) if got < want => tracing::warn!(
            open_files = got,
            max_connections = config.transport.limits.max_connections,
            "the open-files limit is below --max-connections plus room for the server's own files: raise the hard \
             limit (ulimit -Hn, LimitNOFILE=) or lower --max-connections"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    let workers = args.http.worker_threads.map_or_else(
        || {
            let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            stoke_core::limits::default_worker_threads(cores)
        },
        usize::from,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server = Server::start(config).await?;
        let info = server.info().clone();
        println!("stoke {} listening on {}", env!("CARGO_PKG_VERSION"), info.endpoint);
        if !info.addr.ip().is_loopback() && !info.endpoint.starts_with("https://") {
            eprintln!(
                "WARNING: the API listens on {} without TLS: API keys and payloads cross the network in clear. \
                 Serve HTTPS with --tls-cert and --tls-key, or listen on 127.0.0.1 behind a TLS proxy.",
                info.addr
            );
            tracing::warn!(addr = %info.addr, "the API listens on a non-loopback address without TLS");
        }
        println!("  data dir:     {}", info.data_dir.display());
        if info.created_admin {
            println!("  credentials:  {} (new admin account created)", info.credentials_path.display());
        } else if info.credentials_path.exists() {
            println!("  credentials:  {}", info.credentials_path.display());
        } else {
            println!("  credentials:  the admin account's are in the data directory of the node that created it");
        }
        println!(
            "  node:         functions may use up to {} MB each, {} GPU(s); sandbox: {}",
            info.node.max_memory_mb, info.node.gpu_count, info.sandbox
        );
        for line in &info.gpus {
            println!("  gpus:         {line}");
        }
        let r = &info.recovery;
        if r.interrupted_updates + r.temp_files_removed + r.orphan_archives_removed + r.retired_deleted > 0 {
            println!(
                "  recovered:    {} interrupted update(s) finished, {} partial upload(s) and {} unreferenced archive(s) removed, {} retired function(s) deleted",
                r.interrupted_updates, r.temp_files_removed, r.orphan_archives_removed, r.retired_deleted
            );
        }
        if info.resumed_executions > 0 {
            println!("  resumed:      {} workflow execution(s) left running", info.resumed_executions);
        }
        if let Some(c) = &info.cluster {
            println!("  cluster:      node {} of the cluster at {}", c.0, c.1);
        }
        println!("  try:          stoke --data-dir {} fn ls", info.data_dir.display());
        server.run(shutdown_signal()).await?;
        println!("stoke stopped");
        Ok::<_, anyhow::Error>(())
    })
}

fn nix_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The schedules' clock the hidden test flags ask for (`None`: the system's).
fn schedule_clock(
    start: Option<&str>,
    rate: Option<f64>,
    since: Option<i64>,
) -> anyhow::Result<Option<stoke_server::schedules::ScheduleClock>> {
    if start.is_none() && rate.is_none() && since.is_none() {
        return Ok(None);
    }
    let now = stoke_server::schedules::ScheduleClock::system().now_ms();
    let start_ms = match start {
        Some(s) => s
            .parse::<jiff::Timestamp>()
            .map_err(|e| anyhow::anyhow!("--schedule-clock-start {s:?} is not an RFC 3339 instant: {e}"))?
            .as_millisecond(),
        None => now,
    };
    let rate = rate.unwrap_or(1.0);
    anyhow::ensure!(rate.is_finite() && rate > 0.0, "--schedule-clock-rate must be a positive number");
    Ok(Some(stoke_server::schedules::ScheduleClock::warped(start_ms, since.unwrap_or(now), rate)))
}
