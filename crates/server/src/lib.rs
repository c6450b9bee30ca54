//! stoke's server: the services (registry, accounts) and the HTTP API, wired to the store.
//!
//! [`Server::start`] opens the data directory, recovers from any crash, creates the admin account on first
//! start, binds the listener and serves until told to stop.

pub mod accounts;
pub mod cluster;
pub mod durable;
pub mod error;
pub mod http;

pub use stoke_scheduler::runtimes::GenericKind;
pub mod invoke;
pub mod node;
pub mod queues;
pub mod registry;
pub mod schedules;
pub mod services;
pub mod sigv4;
pub mod stats;
pub mod transport;
pub mod triggers;
pub mod tune;
pub mod workflows;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use stoke_core::NodeLimits;
use stoke_store::archive::ArchiveLimits;
use stoke_store::{CodeStore, EtcdStore, SqliteStore, Store};

pub use accounts::{Accounts, Caller, Credentials};
pub use http::{app, AppState};
pub use registry::{RecoveryReport, Registry};

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// `host:port`; port 0 picks a free one (written to `<data-dir>/server.json`).
    pub listen: String,
    /// Region written into ARNs.
    pub region: String,
    /// Overrides the detected memory limit for functions.
    pub max_memory_mb: Option<u32>,
    /// Use at most this many of the GPUs found (the first ones); `None`: all of them.
    pub gpus: Option<u32>,
    /// The NVML library to read GPUs through (`None`: `libnvidia-ml.so.1` on the loader's path).
    pub nvml_library: Option<String>,
    /// Enforce GPU shares through one MPS daemon per GPU (when `nvidia-cuda-mps-control` is installed).
    pub gpu_mps: bool,
    /// Where the NVIDIA device nodes are (`None`: `/dev`).
    pub gpu_dev_dir: Option<PathBuf>,
    /// The node's GPUs as the caller found them, instead of looking (tests give a host of their own).
    pub gpu_host: Option<Arc<stoke_sandbox::gpu::GpuHost>>,
    pub max_archive_mb: u64,
    /// Largest imported image, unpacked, in MB.
    pub max_image_mb: u64,
    /// Live instances' configured sizes may add up to at most this many times the memory budget.
    pub memory_overcommit: f64,
    /// Most instances one account may have in use (starting, initialising or busy).
    pub account_concurrency: usize,
    /// Which sandbox runs instances.
    pub sandbox: SandboxChoice,
    /// The `stoke` binary, which the lean sandbox runs as its set-up helper (`None`: lean is unavailable).
    pub jail_helper: Option<PathBuf>,
    pub lean: stoke_sandbox::lean::LeanSettings,
    /// Freeze instances idle this long (lean sandbox); `None`: never.
    pub freeze_idle_after: Option<Duration>,
    /// How workflow executions hide cold starts unless their workflow or start request says otherwise.
    pub prewarm: stoke_asl::prewarm::Policy,
    /// Prices for cost accounting.
    pub pricing: stoke_core::cost::Pricing,
    /// How long an instance reserved by `prepare` waits for its step before it is released.
    pub reservation_ttl: Duration,
    /// Generic instances to keep ready, by kind (lean sandbox).
    pub generic: Vec<(stoke_scheduler::runtimes::GenericKind, usize)>,
    /// Most Python zygotes kept, one per layer set (lean sandbox); 0: none.
    pub zygotes: usize,
    /// Most instances a function starts for a burst before one has initialised and run; 0: one per
    /// queued invocation.
    pub first_wave: usize,
    /// Most instances of one function initialising at once (`None`: twice the cores, at least 4).
    pub max_starting: Option<usize>,
    /// Run as a node of a cluster sharing one etcd (`None`: alone, on the embedded SQLite store).
    pub cluster: Option<cluster::ClusterConfig>,
    /// HTTP or HTTPS, and the limits on what one client may hold.
    pub transport: transport::Transport,
    /// The clock schedules fire by (`None`: the system's); tests start it at an instant and run it faster.
    pub schedule_clock: Option<schedules::ScheduleClock>,
    /// The key file functions' environment variables are sealed with (`None`: `<data-dir>/env.key`, made
    /// at first start; in a cluster, a key derived from the cluster secret).
    pub env_key_file: Option<PathBuf>,
}

/// Which sandbox the server runs instances in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SandboxChoice {
    /// `lean` where it can run (root, cgroups, a helper), `process` otherwise.
    #[default]
    Auto,
    Lean,
    Process,
    /// OCI bundles run by this runtime (a name on PATH or a path; `None`: crun, else runc); `platform` is
    /// gVisor's (`runsc` only; `None`: its default).
    Oci {
        runtime: Option<String>,
        platform: Option<String>,
    },
    /// A QEMU microVM per instance.
    Vm(stoke_sandbox::vm::VmSettings),
}

impl ServerConfig {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:9000";
    pub const DEFAULT_MAX_IMAGE_MB: u64 = 4096;
    pub const DEFAULT_REGION: &'static str = "us-east-1";
    pub const DEFAULT_MAX_ARCHIVE_MB: u64 = 50;
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("data directory {0} is in use by another stoke server (stop it, or pass another --data-dir)")]
    Locked(PathBuf),
    #[error("cannot open the store in {path}: {source}")]
    Store { path: PathBuf, source: stoke_store::StoreError },
    #[error("cannot create the admin account: {0}")]
    Admin(accounts::AccountError),
    #[error("cannot recover the registry after a crash: {0}")]
    Recovery(registry::RegistryError),
    #[error("cannot recover the tunes a crash interrupted: {0}")]
    Tunes(tune::TuneError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("{0} (or pass --sandbox process)")]
    Sandbox(String),
    #[error("cannot resume workflow executions: {0}")]
    Workflows(String),
    #[error("cannot load the schedules: {0}")]
    Schedules(String),
    #[error("cannot join the cluster: {0}")]
    Cluster(String),
    #[error("cannot use the key for environment variables: {0} (see --env-key-file)")]
    EnvKey(String),
    #[error("cannot serve HTTPS: {0}")]
    Tls(#[from] transport::TlsError),
    #[error("{0}")]
    Gpus(String),
}

/// What start-up did, for the start-up message.
#[derive(Debug, Clone)]
pub struct StartupInfo {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub credentials_path: PathBuf,
    pub created_admin: bool,
    pub node: NodeLimits,
    /// The node's GPUs in words, one line each, and how they were found.
    pub gpus: Vec<String>,
    pub recovery: RecoveryReport,
    /// Which sandbox runs instances, and how it is set up (or why lean is not used).
    pub sandbox: String,
    /// Workflow executions a previous run left RUNNING, resumed now.
    pub resumed_executions: usize,
    /// In a cluster: this node's name and the etcd endpoints.
    pub cluster: Option<(String, String)>,
    /// The URL clients reach the API at (`https://` when serving TLS).
    pub endpoint: String,
}

/// A bound, ready server.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: transport::Limits,
    info: StartupInfo,
    _lock: File,
}

/// Written to `<data-dir>/server.json` at every start, so clients on this machine find the server.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ServerFile {
    pub endpoint: String,
    pub pid: u32,
}

pub const CREDENTIALS_FILE: &str = "credentials.json";
pub const SERVER_FILE: &str = "server.json";

/// The key file functions' environment variables are sealed with, in the data directory unless
/// `--env-key-file` puts it elsewhere.
pub const ENV_KEY_FILE: &str = "env.key";

/// Writes `contents` to `path` atomically with the given mode.
fn write_private(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path)
}

/// The sandbox to use, with a note for the start-up message.
fn choose_sandbox(
    config: &ServerConfig,
    run_dir: &std::path::Path,
) -> Result<(Arc<dyn stoke_sandbox::Sandbox>, String), StartError> {
    use stoke_sandbox::lean::LeanSandbox;
    let lean = || match &config.jail_helper {
        None => Err("the lean sandbox needs the stoke binary as its helper".to_string()),
        Some(helper) => LeanSandbox::new(helper.clone(), run_dir, config.lean.clone()).map_err(|e| e.to_string()),
    };
    match &config.sandbox {
        SandboxChoice::Process => Ok((Arc::new(stoke_sandbox::ProcessSandbox), "chosen with --sandbox process".into())),
        SandboxChoice::Oci { runtime, platform } => {
            let helper = config
                .jail_helper
                .clone()
                .ok_or_else(|| StartError::Sandbox("the oci sandbox needs the stoke binary as its helper".into()))?;
            let lean = config.lean.clone();
            let oci =
                stoke_sandbox::oci::OciSandbox::new(helper, runtime.as_deref(), platform.as_deref(), run_dir, lean)
                    .map_err(|e| StartError::Sandbox(e.to_string()))?;
            let note = oci.describe();
            Ok((Arc::new(oci), note))
        }
        SandboxChoice::Vm(settings) => {
            let vm = stoke_sandbox::vm::VmSandbox::new(settings, run_dir, &config.lean)
                .map_err(|e| StartError::Sandbox(e.to_string()))?;
            if vm.accel() == stoke_sandbox::vm::Accel::Tcg {
                tracing::warn!("the vm sandbox emulates its VMs (--vm-accel tcg): correct, many times slower");
            }
            let note = vm.describe();
            Ok((vm, note))
        }
        SandboxChoice::Lean => {
            let lean = lean().map_err(StartError::Sandbox)?;
            let note = lean.describe();
            Ok((Arc::new(lean), note))
        }
        SandboxChoice::Auto => match lean() {
            Ok(lean) => {
                let note = lean.describe();
                Ok((Arc::new(lean), note))
            }
            // Asked for disks and none can be made: an error, not a server without isolation.
            Err(why) if config.lean.ephemeral == stoke_sandbox::lean::ephemeral::Choice::Disk => {
                Err(StartError::Sandbox(why))
            }
            Err(why) => {
                tracing::warn!("running functions without isolation: {why}");
                Ok((Arc::new(stoke_sandbox::ProcessSandbox), format!("NO ISOLATION: {why}")))
            }
        },
    }
}

impl Server {
    /// Opens the data directory, recovers, and binds the listener.
    pub async fn start(config: ServerConfig) -> Result<Self, StartError> {
        Self::start_inner(config, None).await
    }

    /// [`Server::start`] with the instances run by `sandbox` rather than the one `config` chooses: tests
    /// give it a fake sandbox and drive [`Server::app`] in process.
    pub async fn start_with_sandbox(
        config: ServerConfig,
        sandbox: Arc<dyn stoke_sandbox::Sandbox>,
    ) -> Result<Self, StartError> {
        Self::start_inner(config, Some(sandbox)).await
    }

    async fn start_inner(
        config: ServerConfig,
        given: Option<Arc<dyn stoke_sandbox::Sandbox>>,
    ) -> Result<Self, StartError> {
        let data_dir = config.data_dir.clone();
        let dir_err = |source| StartError::DataDir { path: data_dir.clone(), source };
        fs::create_dir_all(&data_dir).map_err(dir_err)?;
        // Absolute from here on: sandboxes mount paths under it from other working directories.
        let data_dir = fs::canonicalize(&data_dir).map_err(dir_err)?;
        let dir_err = |source| StartError::DataDir { path: data_dir.clone(), source };
        let lock = File::create(data_dir.join("lock")).map_err(dir_err)?;
        if lock.try_lock().is_err() {
            return Err(StartError::Locked(data_dir));
        }
        let db_path = data_dir.join("stoke.db");
        let etcd = match &config.cluster {
            None => None,
            Some(c) => {
                let (endpoints, prefix) = (c.endpoints.clone(), c.prefix.clone());
                let node = c.node_name.clone();
                let connected = tokio::task::spawn_blocking(move || {
                    EtcdStore::connect(&endpoints, &prefix).map(|s| s.owned_by(&node))
                })
                .await
                .map_err(|e| StartError::Cluster(e.to_string()))?;
                Some(Arc::new(connected.map_err(|e| StartError::Cluster(e.to_string()))?))
            }
        };
        let store: Arc<dyn Store> = match &etcd {
            Some(etcd) => etcd.clone(),
            None => Arc::new(
                SqliteStore::open(&db_path).map_err(|source| StartError::Store { path: db_path.clone(), source })?,
            ),
        };
        let blobs = match (&etcd, &config.cluster) {
            (Some(etcd), Some(c)) => Some(Arc::new(
                cluster::Blobs::open(etcd.clone(), &data_dir, c).map_err(|e| StartError::Cluster(e.to_string()))?,
            )),
            _ => None,
        };
        let files = registry::RegistryFiles {
            code: CodeStore::open(&data_dir.join("code")).map_err(dir_err)?,
            layers: stoke_store::LayerFiles::open(&data_dir.join("layers")).map_err(dir_err)?,
            images: stoke_store::ImageFiles::open(&data_dir.join("images")).map_err(dir_err)?,
        };

        let mut accounts = Accounts::load(store.clone()).map_err(StartError::Admin)?;
        if etcd.is_some() {
            accounts = accounts.refresh_on_miss(cluster::MissRefresh::EVERY);
        }
        let accounts = Arc::new(accounts);
        let credentials_path = data_dir.join(CREDENTIALS_FILE);
        let mut created_admin = false;
        if accounts.is_empty() {
            match accounts.create("admin", true) {
                Ok((_, creds)) => {
                    let json = serde_json::to_vec_pretty(&creds).unwrap_or_default();
                    write_private(&credentials_path, &json, 0o600).map_err(dir_err)?;
                    created_admin = true;
                }
                // Another node of the cluster bootstrapped the admin account at the same moment.
                Err(accounts::AccountError::Conflict(_)) if etcd.is_some() => {
                    accounts.reload().map_err(StartError::Admin)?;
                }
                Err(e) => return Err(StartError::Admin(e)),
            }
        }

        let (sandbox, sandbox_note) = match given {
            Some(sandbox) => (sandbox, "given by the caller".to_string()),
            None => choose_sandbox(&config, &data_dir.join("run"))?,
        };
        let gpu_host = match &config.gpu_host {
            Some(host) => host.clone(),
            None => Arc::new(stoke_sandbox::gpu::GpuHost::discover(&stoke_sandbox::gpu::GpuSettings {
                nvml_library: config.nvml_library.clone(),
                limit: config.gpus,
                // A sandbox that shares the host's /dev (process) cannot hold a share to its MPS daemon.
                mps: config.gpu_mps && sandbox.isolates_devices(),
                run_dir: data_dir.join("run"),
                dev_dir: config.gpu_dev_dir.clone(),
            })),
        };
        if let Some(asked) = config.gpus.filter(|n| *n as usize > gpu_host.devices.len()) {
            return Err(StartError::Gpus(format!(
                "--gpus {asked}: this node has {} GPU(s){}",
                gpu_host.devices.len(),
                gpu_host.nvml_note.as_ref().map(|n| format!(" (NVML: {n})")).unwrap_or_default()
            )));
        }
        let node = NodeLimits {
            max_memory_mb: config
                .max_memory_mb
                .or_else(node::total_memory_mb)
                .unwrap_or(NodeLimits::default().max_memory_mb),
            gpu_count: u32::try_from(gpu_host.devices.len()).unwrap_or(u32::MAX),
            gpu_memory_mb: gpu_host.devices.iter().map(|d| d.memory_mb).max().unwrap_or(0),
            max_concurrency: NodeLimits::default().max_concurrency,
            network_isolation: sandbox.isolates_network(),
        };
        let archive_limits = ArchiveLimits {
            max_archive_bytes: config.max_archive_mb * 1024 * 1024,
            max_image_bytes: config.max_image_mb * 1024 * 1024,
            ..ArchiveLimits::default()
        };
        let settings = stoke_scheduler::Settings {
            memory_budget_mb: u64::from(node.max_memory_mb),
            memory_overcommit: config.memory_overcommit,
            account_concurrency: config.account_concurrency,
            freeze_idle_after: config.freeze_idle_after,
            reservation_ttl: config.reservation_ttl,
            generic: config.generic.clone(),
            zygotes: config.zygotes,
            first_wave: config.first_wave,
            max_starting_per_function: config.max_starting.unwrap_or_else(stoke_scheduler::default_max_starting),
            node: config.cluster.as_ref().map(|c| c.node_name.clone()),
            gpu: (!gpu_host.devices.is_empty()).then(|| gpu_host.clone()),
            ..Default::default()
        };
        let sandbox_isolates_devices = sandbox.isolates_devices();
        let scheduler = stoke_scheduler::Scheduler::start(sandbox, data_dir.join("run"), settings)
            .map_err(|source| StartError::DataDir { path: data_dir.join("run"), source })?;
        let work = Arc::new(invoke::SchedulerWork(scheduler.clone()));
        let env_keys = match (&config.env_key_file, &config.cluster) {
            (Some(path), _) => stoke_store::sealed::EnvKeys::load_or_create(path).map_err(StartError::EnvKey)?,
            // Every node holds the cluster secret: the key derived from it opens what any node sealed.
            (None, Some(c)) => stoke_store::sealed::EnvKeys::derive(&c.secret),
            (None, None) => stoke_store::sealed::EnvKeys::load_or_create(&data_dir.join(ENV_KEY_FILE))
                .map_err(StartError::EnvKey)?,
        };
        let mut registry =
            Registry::new(store.clone(), files, node, archive_limits, work).seal_environment(Arc::new(env_keys));
        if let Some(blobs) = &blobs {
            registry = registry.with_replicas(blobs.clone());
        }
        let registry = Arc::new(registry);
        // In a cluster, what other nodes are doing now is theirs: a restarting node takes back the executions
        // it ran and the events it had claimed (the store knows which), but leaves updates in progress and
        // tunes alone (docs/cluster.md).
        let shared = etcd.is_some();
        let recovery = registry.recover(shared).map_err(StartError::Recovery)?;
        let stats = stats::Statistics::load(store.clone())
            .map_err(|source| StartError::Store { path: db_path.clone(), source })?;
        stats.flush_in_background();
        scheduler.observe(stats.clone());
        // Bound before anything can invoke: a durable function's instances are told this endpoint.
        let tls = config.transport.tls.as_ref().map(transport::load_tls).transpose()?;
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|source| StartError::Listen { addr: config.listen.clone(), source })?;
        let addr = listener.local_addr().map_err(StartError::Serve)?;
        let endpoint = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
        let invoker = Arc::new(invoke::Invoker::new(registry.clone(), scheduler.clone(), config.region.clone()));
        invoker.serve_durable_functions(invoke::DurableEnv {
            endpoint: function_endpoint(addr, tls.is_some()),
            accounts: accounts.clone(),
        });
        scheduler.resolve_with(Arc::new(invoke::InvokerResolver(Arc::downgrade(&invoker))));
        let (store_for_tunes, stats_for_tunes) = (store.clone(), stats.clone());
        invoker.keep_warm();
        // On one node every enqueue wakes the runner and a short poll costs nothing; in a cluster a watch
        // wakes it for events queued elsewhere, and the poll (retries coming due) reads etcd once a second.
        let poll = if etcd.is_some() { Duration::from_secs(1) } else { Duration::from_millis(100) };
        invoker.run_events(64, Duration::from_secs(1), poll);
        let services = Arc::new(services::Services {
            invoker: invoker.clone(),
            store: store.clone(),
            region: config.region.clone(),
            stats,
            default_prewarm: config.prewarm,
            prewarm: Default::default(),
            pricing: config.pricing,
        });
        let workflows = Arc::new(workflows::Workflows::new(services.clone()));
        invoker.deliver_to(&workflows);
        let schedules = Arc::new(schedules::Schedules::new(
            registry.clone(),
            invoker.clone(),
            config.region.clone(),
            config.schedule_clock.unwrap_or_else(schedules::ScheduleClock::system),
        ));
        schedules.recover().map_err(|e| StartError::Schedules(e.to_string()))?;
        schedules.run(etcd.is_some());
        let resumed = workflows.resume().map_err(|e| StartError::Workflows(e.to_string()))?;
        let durable = durable::Durable::new(services, config.cluster.as_ref().map(|c| c.node_name.clone()));
        let resumed_durable = durable.resume().await.map_err(|e| StartError::Workflows(e.to_string()))?;
        if resumed_durable > 0 {
            tracing::info!(executions = resumed_durable, "durable executions resumed");
        }
        durable.sweep_in_background();
        let lean = invoker.scheduler().sandbox_kind() == "lean";
        let tuner = Arc::new(tune::Tuner::new(
            registry.clone(),
            invoker.clone(),
            store_for_tunes,
            stats_for_tunes,
            config.pricing,
            lean && config.lean.cpu_quota,
            lean,
        ));
        if !shared {
            tuner.recover().map_err(StartError::Tunes)?;
        }

        let server_file = ServerFile { endpoint: endpoint.clone(), pid: std::process::id() };
        write_private(&data_dir.join(SERVER_FILE), &serde_json::to_vec_pretty(&server_file).unwrap_or_default(), 0o644)
            .map_err(dir_err)?;

        let kind = invoker.scheduler().sandbox_kind();
        let cluster = match (&etcd, &config.cluster, blobs) {
            (Some(etcd), Some(c), Some(blobs)) => {
                let record = stoke_store::NodeRecord {
                    name: c.node_name.clone(),
                    node_id: node_id(&data_dir).map_err(dir_err)?,
                    advertise: c.advertise.clone().unwrap_or_else(|| endpoint.clone()),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    memory_mb: u64::from(node.max_memory_mb),
                    cpus: std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1)),
                    gpus: node.gpu_count,
                    sandbox: kind.to_string(),
                    instances: 0,
                    etcd_requests: etcd.requests(),
                    queues: 0,
                    // Placement reads these from the first heartbeat on: known at start.
                    budget_mb: invoker.scheduler().node_status().memory_budget_mb,
                    overcommit: invoker.scheduler().node_status().memory_overcommit,
                    charged_mb: 0,
                    configured_mb: 0,
                    hosting: 0,
                    started_ms: registry::now_ms(),
                    heartbeat_ms: registry::now_ms(),
                    gpu_use: node_gpus(invoker.scheduler()),
                };
                let (etcd, c) = (etcd.clone(), c.clone());
                let joined = tokio::task::spawn_blocking(move || cluster::Cluster::join(etcd, &c, record, blobs))
                    .await
                    .map_err(|e| StartError::Cluster(e.to_string()))?
                    .map_err(|e| match e {
                        stoke_store::StoreError::Conflict(why) => StartError::Cluster(why),
                        other => StartError::Cluster(other.to_string()),
                    })?;
                let joined = Arc::new(joined);
                let queues = queues::Queues::start(joined.clone());
                let runner: std::sync::Weak<dyn queues::RunHere> = Arc::downgrade(&invoker) as _;
                queues.run_through(runner);
                invoker.scheduler().overflow_to(Arc::new(queues::Overflow(Arc::downgrade(&queues))));
                invoker.route_through(queues);
                watch_cluster(&joined, &registry, &accounts, &invoker);
                report_load(&joined, &invoker);
                collect_blobs(&joined, store.clone());
                take_over_lost_work(&joined, &workflows, &durable, &invoker);
                Some(joined)
            }
            _ => None,
        };
        let mut kept: Vec<String> = Vec::new();
        if kind == "lean" {
            let generic: Vec<String> = config.generic.iter().map(|(k, n)| format!("{}={n}", k.name())).collect();
            if !generic.is_empty() {
                kept.push(format!("generic instances kept ready: {}", generic.join(", ")));
            }
            if config.zygotes > 0 {
                kept.push(format!("up to {} Python zygote(s)", config.zygotes));
            }
        }
        let sandbox = std::iter::once(sandbox_note.to_string()).chain(kept).collect::<Vec<_>>().join("; ");
        let sandbox = format!("{kind} ({sandbox})");
        let state = AppState::new(http::AppStateInner {
            gateway: Arc::new({
                let gateway = triggers::Gateway::new(registry.clone(), invoker.clone(), accounts.clone());
                if shared {
                    gateway.refresh_on_miss(cluster::MissRefresh::EVERY)
                } else {
                    gateway
                }
            }),
            registry,
            accounts,
            invoker,
            workflows,
            durable,
            schedules,
            tuner,
            region: config.region.clone(),
            cluster,
            closing: tokio::sync::watch::Sender::new(false),
        });
        let info = StartupInfo {
            addr,
            data_dir,
            credentials_path,
            created_admin,
            node,
            gpus: node::describe_gpus(&gpu_host, sandbox_isolates_devices, config.gpu_mps),
            recovery,
            sandbox,
            resumed_executions: resumed,
            cluster: config.cluster.as_ref().map(|c| (c.node_name.clone(), c.endpoints.join(","))),
            endpoint,
        };
        Ok(Self { state, listener, tls, limits: config.transport.limits, info, _lock: lock })
    }

    pub fn info(&self) -> &StartupInfo {
        &self.info
    }

    /// The HTTP API as a router, to call in process (the listener is left unused).
    pub fn app(&self) -> axum::Router {
        http::app(self.state.clone())
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
        let registry = self.state.registry.clone();
        let reaper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let r = registry.clone();
                match tokio::task::spawn_blocking(move || stoke_store::in_background(|| r.reap_retired())).await {
                    Ok(Err(e)) => tracing::warn!(error = %e, "retirement reaper failed"),
                    Err(e) => tracing::warn!(error = %e, "retirement reaper panicked"),
                    Ok(Ok(_)) => {}
                }
            }
        });
        // Long-lived answers (log streams) end when shutting down starts, so that their connections close.
        let closing = self.state.closing.clone();
        let shutdown = async move {
            shutdown.await;
            closing.send_replace(true);
        };
        let result = transport::serve(self.listener, http::app(self.state), self.tls, self.limits, shutdown).await;
        reaper.abort();
        result.map_err(StartError::Serve)
    }
}

/// This node's id: random, made once and kept in the data directory, so the same node restarting takes its
/// name back from its own lapsing lease while another node with that name is refused.
/// The endpoint this node's instances reach it at: its bound address, with a wildcard address (`0.0.0.0`,
/// `::`) read as loopback, which instances on this node always reach.
fn function_endpoint(addr: std::net::SocketAddr, tls: bool) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("{}://{}", if tls { "https" } else { "http" }, std::net::SocketAddr::new(ip, addr.port()))
}

fn node_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("node-id");
    match fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
            let id = stoke_core::hex::encode(&bytes);
            write_private(&path, id.as_bytes(), 0o644)?;
            Ok(id)
        }
    }
}

/// Keeps this node's caches true while other nodes write: authentication is read again when an account
/// changes; resolutions and routes when a function, version, alias, layer, image or trigger does; and the
/// Event runner looks at the queue when another node queued an invocation.
fn watch_cluster(
    cluster: &Arc<cluster::Cluster>,
    registry: &Arc<Registry>,
    accounts: &Arc<Accounts>,
    invoker: &Arc<invoke::Invoker>,
) {
    let (registry, accounts, invoker) = (Arc::downgrade(registry), Arc::downgrade(accounts), Arc::downgrade(invoker));
    let on_change = Arc::new(move |aggregate: &str| {
        if aggregate == "event-queue" {
            if let Some(i) = invoker.upgrade() {
                i.events_queued();
            }
        } else if aggregate == "accounts" {
            if let Some(a) = accounts.upgrade() {
                if let Err(e) = a.reload() {
                    tracing::warn!(error = %e, "cannot reload accounts after a change on another node");
                }
            }
        } else if let Some(r) = registry.upgrade() {
            r.changed_elsewhere();
        }
    });
    let aggregates = ["accounts", "functions", "versions", "aliases", "layers", "images", "triggers", "event-queue"];
    cluster.store().watch(&aggregates, on_change);
}

/// How often a cluster node looks for work to take over, and how long a new execution settles first.
const TAKE_OVER_EVERY: Duration = Duration::from_secs(2);

/// Node loss: every `TAKE_OVER_EVERY`, takes over what nodes whose lease lapsed left (the Event invocations
/// they had claimed go back to the queue; their running executions, workflows' and durable functions', become
/// this node's, fencing the old owner off) and resumes the executions this node owns but no task here runs.
/// Several nodes doing this at once move each item exactly once (one transaction each).
fn take_over_lost_work(
    cluster: &Arc<cluster::Cluster>,
    workflows: &Arc<workflows::Workflows>,
    durable: &Arc<durable::Durable>,
    invoker: &Arc<invoke::Invoker>,
) {
    let (cluster, workflows, invoker) = (Arc::downgrade(cluster), Arc::downgrade(workflows), Arc::downgrade(invoker));
    let durable = Arc::downgrade(durable);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(TAKE_OVER_EVERY).await;
            let (Some(c), Some(w)) = (cluster.upgrade(), workflows.upgrade()) else { return };
            let for_queues = invoker.clone();
            let taken = tokio::task::spawn_blocking(move || {
                stoke_store::in_background(|| {
                    let me = c.name();
                    let mut requeued = 0;
                    let mut gone = Vec::new();
                    let nodes = c.nodes()?;
                    if let Some(q) = for_queues.upgrade().as_ref().and_then(|i| i.queues().cloned()) {
                        q.observe_nodes(&nodes);
                    }
                    for n in nodes.into_iter().filter(|n| n.state == "gone" && n.node.name != me) {
                        let (events, executions) = c.store().take_over(&n.node.name)?;
                        if events + executions.len() > 0 {
                            tracing::warn!(node = %n.node.name, events, executions = executions.len(),
                                "took over the work of a node that is gone");
                        }
                        requeued += events;
                        gone.push(n.node.name);
                    }
                    let resumed = w.resume_orphans(TAKE_OVER_EVERY * 5).map_err(|e| e.to_string());
                    Ok::<_, stoke_store::StoreError>((requeued, resumed, gone))
                })
            })
            .await;
            match taken {
                Ok(Ok((requeued, resumed, gone))) => {
                    if let Some(d) = durable.upgrade() {
                        if let Err(e) = d.take_over(&gone).await {
                            tracing::debug!(error = %e, "cannot take over durable executions now; trying again");
                        }
                    }
                    if requeued > 0 {
                        if let Some(i) = invoker.upgrade() {
                            i.events_queued();
                        }
                    }
                    if let Err(e) = resumed {
                        tracing::warn!(error = %e, "cannot resume executions; trying again");
                    }
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "cannot look for lost work now; trying again"),
                Err(e) => tracing::warn!(error = %e, "the take-over task failed"),
            }
        }
    });
}

/// Collects the blobs no record refers to, at start and every 10 minutes (see `cluster::BLOB_GRACE`).
fn collect_blobs(cluster: &Arc<cluster::Cluster>, store: Arc<dyn Store>) {
    let cluster = Arc::downgrade(cluster);
    tokio::spawn(async move {
        loop {
            let Some(c) = cluster.upgrade() else { return };
            let store = store.clone();
            let swept = tokio::task::spawn_blocking(move || {
                stoke_store::in_background(|| {
                    let mut referenced: std::collections::HashSet<String> =
                        store.referenced_archives()?.into_iter().map(|(_, _, _, sha)| sha).collect();
                    referenced.extend(store.referenced_layers()?.into_iter().map(|(_, sha)| sha));
                    referenced.extend(store.list_images()?.into_iter().map(|i| i.code.sha256));
                    Ok::<_, stoke_store::StoreError>(c.blobs().collect(&referenced, cluster::BLOB_GRACE)?)
                })
            })
            .await;
            match swept {
                Ok(Ok(n)) if n > 0 => tracing::info!(blobs = n, "collected blobs no record refers to"),
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot collect unreferenced blobs; trying again later"),
                _ => {}
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
    });
}

/// This node's GPUs and what its instances hold of each: for its heartbeat, and as `GET /v1/node` and
/// `GET /v1/nodes` show them.
pub(crate) fn node_gpus(scheduler: &stoke_scheduler::Scheduler) -> Vec<stoke_store::NodeGpu> {
    scheduler
        .gpus()
        .into_iter()
        .map(|(d, u)| stoke_store::NodeGpu {
            index: d.index,
            uuid: d.uuid,
            name: d.name,
            memory_mb: d.memory_mb,
            minor: d.minor,
            reserved_mb: u.reserved_mb,
            reserved_percentage: u.reserved_percentage,
            whole_instances: u.whole,
            share_instances: u.shares,
        })
        .collect()
}

/// Keeps what this node's heartbeat reports of its load (live instances, queues owned) current.
fn report_load(cluster: &Arc<cluster::Cluster>, invoker: &Arc<invoke::Invoker>) {
    let (cluster, invoker) = (Arc::downgrade(cluster), Arc::downgrade(invoker));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (Some(c), Some(i)) = (cluster.upgrade(), invoker.upgrade()) else { return };
            let status = i.scheduler().node_status();
            let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
            let (queues, hosting) = i.queues().map_or((0, 0), |q| (count(q.owned_here()), count(q.hosting())));
            let gpu_use = node_gpus(i.scheduler());
            c.report(|n| {
                n.gpu_use = gpu_use;
                n.instances = count(status.instances);
                n.queues = queues;
                n.hosting = hosting;
                n.budget_mb = status.memory_budget_mb;
                n.overcommit = status.memory_overcommit;
                n.charged_mb = status.charged_mb;
                n.configured_mb = status.configured_mb;
            });
        }
    });
}

/// What the crate's tests share.
#[cfg(test)]
pub(crate) mod fixtures {
    /// A zip holding `app.py` with `source`.
    pub fn zip_of(source: &str) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            z.start_file("app.py", zip::write::SimpleFileOptions::default()).expect("a zip entry");
            std::io::Write::write_all(&mut z, source.as_bytes()).expect("zip");
            z.finish().expect("zip");
        }
        buf.into_inner()
    }
}
