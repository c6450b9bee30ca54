//! The `lean` backend: each instance in its own mount, PID, IPC and UTS namespaces, on a read-only root
//! built from the base image, under cgroup limits, as an unprivileged user with no capabilities and a
//! seccomp filter. Setting up costs a few milliseconds (no image unpacking, no daemon): see
//! BENCHMARKS.md.
//!
//! The server side (here) creates the instance's cgroups and starts the helper ([`jail`]) that does the
//! privileged setup in the new namespaces and executes the runtime. It also keeps *generic instances*
//! ready: instances set up in full — namespaces, cgroups (joined), root file system — before their function
//! is known, waiting with empty attach points at `/var/task` and `/opt` ([`attach`]). Giving one a function
//! means mounting its code and layers on the attach points, writing its limits, and handing it an
//! [`assignment::Assignment`]: no namespace, mount plan or cgroup migration on the cold start's path.

pub mod assignment;
pub mod attach;
pub mod cgroup;
pub mod devices;
pub mod ephemeral;
pub mod jail;
mod mounts;
pub mod rootfs;
pub mod seccomp;
pub mod zygote;

use crate::lock;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::{GenericSpec, InstanceControl, InstancePaths, Sandbox, SpawnSpec, Spawned};
use assignment::Assignment;
use attach::AttachPoints;
use cgroup::{Group, Layout, Limits};
use ephemeral::{Ephemeral, Storage};
use jail::{Generic, JailConfig, JAIL_ARG};
use rootfs::{Bind, RootSpec, Tmp};

/// Where the code and stoke's runtime files appear inside a lean instance (as on Lambda).
pub const TASK_ROOT: &str = "/var/task";
pub const RUNTIME_DIR: &str = "/var/runtime";
/// Where an instance sees its account's workflow scratch directories (read-write).
pub const SCRATCH_DIR: &str = "/var/stoke-scratch";
/// Where an instance sees its layers, merged (as on Lambda).
pub const LAYER_ROOT: &str = "/opt";

/// Where an instance whose root is its own sees its code, runtime files and scratch directory (lean, oci
/// and vm alike).
pub(crate) fn instance_view() -> InstancePaths {
    InstancePaths { task_root: TASK_ROOT.into(), runtime_dir: RUNTIME_DIR.into(), scratch: SCRATCH_DIR.into() }
}

/// Knobs of the lean backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeanSettings {
    /// The unprivileged user and group functions run as (Lambda's `sbx_user1051` is 993).
    pub uid: u32,
    pub gid: u32,
    /// Where instances' `/tmp` lives (its size is each function's).
    pub ephemeral: ephemeral::Choice,
    /// The directory whose file system holds the disks' images (`stoke-tmp` inside it); the run directory
    /// when absent.
    pub ephemeral_dir: Option<PathBuf>,
    /// Processes and threads an instance may have.
    pub pids_max: u32,
    /// Cap CPU time at the memory-proportional share (otherwise the share is only a weight under contention).
    pub cpu_quota: bool,
    /// The host uid a zygote's root maps to (owns nothing on the host).
    pub zygote_uid: u32,
}

impl Default for LeanSettings {
    fn default() -> Self {
        LeanSettings {
            uid: 993,
            gid: 990,
            ephemeral: ephemeral::Choice::Auto,
            ephemeral_dir: None,
            pids_max: 1024,
            cpu_quota: false,
            zygote_uid: 65_536 + 993,
        }
    }
}

impl LeanSettings {
    /// Where the disks of instances' `/tmp` are made: `stoke-tmp` in `--ephemeral-dir`, else `ephemeral` in
    /// the run directory (a directory of stoke's own either way: it is emptied at start).
    pub fn ephemeral_home(&self, run_dir: &Path) -> PathBuf {
        match &self.ephemeral_dir {
            Some(d) => d.join("stoke-tmp"),
            None => run_dir.join("ephemeral"),
        }
    }
}

/// Why the lean backend cannot run on this host.
#[derive(Debug)]
pub enum Unavailable {
    NotRoot,
    NoCgroups,
    Setup(io::Error),
    Ephemeral(io::Error),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::NotRoot => write!(f, "the lean sandbox needs root (namespaces, mounts and cgroups)"),
            Unavailable::NoCgroups => {
                write!(f, "the lean sandbox needs the memory, cpu and pids cgroup controllers, and this host lacks one")
            }
            Unavailable::Setup(e) => write!(f, "cannot prepare the lean sandbox's cgroups: {e}"),
            Unavailable::Ephemeral(e) => write!(f, "{e}"),
        }
    }
}

/// Open files an instance may hold.
const OPEN_FILES: u64 = 1024;
/// How long after a generic instance is taken its replacement starts.
const REFILL_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// Instances in namespaces and cgroups, set up by a helper process.
pub struct LeanSandbox {
    inner: Arc<Inner>,
}

/// What creating instances needs, shared with the tasks that refill the generic pool.
struct Inner {
    helper: PathBuf,
    new_root: PathBuf,
    attach_root: PathBuf,
    layout: Layout,
    server: u32,
    settings: LeanSettings,
    next: AtomicU64,
    /// Groups whose removal failed (members still exiting); retried on later spawns.
    leftovers: Arc<Mutex<Vec<PathBuf>>>,
    /// The generic kinds to keep, and the instances ready of each.
    pool: Mutex<Vec<(GenericSpec, Vec<Shell>)>>,
    zygotes: zygote::Zygotes,
    zattach_root: PathBuf,
    /// Instances' `/tmp`s.
    storage: Storage,
}

/// A generic instance waiting for its function.
struct Shell {
    child: tokio::process::Child,
    group: Group,
    attach: AttachPoints,
    /// Where its assignment goes (its stdin).
    assign: std::fs::File,
}

impl std::fmt::Debug for LeanSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeanSandbox").field("cgroups", &self.inner.layout.describe()).finish_non_exhaustive()
    }
}

impl LeanSandbox {
    /// `helper` is the `stoke` binary (run as `stoke __jail …`); `run_dir` is the server's scratch directory.
    pub fn new(helper: PathBuf, run_dir: &Path, settings: LeanSettings) -> Result<Self, Unavailable> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Unavailable::NotRoot);
        }
        let layout = Layout::detect().ok_or(Unavailable::NoCgroups)?;
        let server = std::process::id();
        layout.prepare(server).map_err(Unavailable::Setup)?;
        let new_root = run_dir.join("root");
        std::fs::create_dir_all(&new_root).map_err(Unavailable::Setup)?;
        let attach_root = run_dir.join("attach");
        attach::sweep(&attach_root);
        std::fs::create_dir_all(&attach_root).map_err(Unavailable::Setup)?;
        let zattach_root = run_dir.join("zattach");
        attach::remove_tree(&zattach_root);
        std::fs::create_dir_all(&zattach_root).map_err(Unavailable::Setup)?;
        let storage =
            Storage::new(settings.ephemeral_home(run_dir), settings.ephemeral).map_err(Unavailable::Ephemeral)?;
        storage.refill();
        Ok(LeanSandbox {
            inner: Arc::new(Inner {
                helper,
                new_root,
                attach_root,
                layout,
                server,
                settings,
                next: AtomicU64::new(1),
                leftovers: Arc::new(Mutex::new(Vec::new())),
                pool: Mutex::new(Vec::new()),
                zygotes: zygote::Zygotes::new(),
                zattach_root,
                storage,
            }),
        })
    }

    /// What the server prints at start, e.g. `cgroup v1 (memory, cpu, pids, freezer), user 993:990, /tmp
    /// on disk`.
    pub fn describe(&self) -> String {
        let s = &self.inner.settings;
        format!("{}, user {}:{}, {}", self.inner.layout.describe(), s.uid, s.gid, self.inner.storage.describe())
    }

    /// Where instances' `/tmp`s come from.
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }
}

impl Drop for LeanSandbox {
    fn drop(&mut self) {
        // Instances are gone by now (each is killed with the server); remove this server's groups.
        lock(&self.inner.pool).clear();
        self.inner.layout.remove_server(self.inner.server);
    }
}

impl Inner {
    fn retry_leftovers(&self) {
        let mut left = lock(&self.leftovers);
        left.retain(|dir| std::fs::remove_dir(dir).is_err() && dir.exists());
    }

    fn limits(&self, memory_mb: u32, cpu_millis: u32) -> Limits {
        Limits {
            memory_bytes: u64::from(memory_mb) * 1024 * 1024,
            cpu_millis,
            cpu_quota: self.settings.cpu_quota,
            pids: self.settings.pids_max,
        }
    }

    fn root(
        &self,
        binds: Vec<Bind>,
        layers: Vec<PathBuf>,
        image: Option<PathBuf>,
        attach: Option<PathBuf>,
        tmp: Tmp,
        gpu: Option<&crate::gpu::GpuPlan>,
    ) -> RootSpec {
        RootSpec {
            new_root: self.new_root.clone(),
            binds,
            tmp,
            uid: self.settings.uid,
            gid: self.settings.gid,
            hostname: "stoke".into(),
            layers,
            image,
            attach,
            attach_root: None,
            devices: gpu.map(|g| g.devices.iter().map(|d| d.path.clone()).collect()).unwrap_or_default(),
            shm: gpu.and_then(|g| g.shm.clone()),
        }
    }

    /// Starts the set-up helper for `config` in `group`, with this environment and stdin.
    fn start_helper(
        &self,
        config: &JailConfig,
        env: &[(String, String)],
        stdin: Stdio,
        group: &Group,
    ) -> io::Result<tokio::process::Child> {
        let mut cmd = tokio::process::Command::new(&self.helper);
        cmd.arg(JAIL_ARG)
            .args(config.to_args())
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: runs between fork and exec; prctl and setrlimit are raw syscalls through nix that neither
        // allocate nor lock, and the closure captures nothing.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(jail::SERVER_GONE).map_err(io::Error::from)?;
                setrlimit(Resource::RLIMIT_NOFILE, OPEN_FILES, OPEN_FILES).map_err(io::Error::from)?;
                Ok(())
            });
        }
        cmd.spawn().inspect_err(|_| {
            group.remove();
        })
    }

    /// Sets up one generic instance of `kind`: everything but its function.
    fn start_shell(&self, kind: &GenericSpec) -> io::Result<Shell> {
        self.retry_leftovers();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let group = self.layout.create(self.server, id, &self.limits(kind.memory_mb, kind.cpu_millis))?;
        let attach = match AttachPoints::create(self.attach_root.join(id.to_string())) {
            Ok(a) => a,
            Err(e) => {
                group.remove();
                return Err(e);
            }
        };
        let mut binds = vec![Bind::read_only(kind.runtime_dir.clone(), RUNTIME_DIR.into())];
        binds.extend(kind.host_dirs.iter().map(|d| Bind::read_only(d.clone(), d.clone())));
        let (program, args) = kind.prestart.clone().unwrap_or_default();
        let config = JailConfig {
            root: self.root(binds, Vec::new(), None, Some(attach.dir().to_path_buf()), Tmp::Bind(attach.tmp()), None),
            cgroups: group.dirs().to_vec(),
            cwd: "/".into(),
            program,
            args,
            relay: None,
            generic: if kind.prestart.is_some() { Generic::Prestart } else { Generic::Await },
        };
        let mut child = match self.start_helper(&config, &kind.env, Stdio::piped(), &group) {
            Ok(c) => c,
            Err(e) => {
                attach.remove();
                return Err(e);
            }
        };
        let stdin = child.stdin.take().and_then(|s| s.into_owned_fd().ok());
        let Some(stdin) = stdin else {
            attach.remove();
            return Err(io::Error::other("the generic instance has no assignment pipe"));
        };
        Ok(Shell { child, group, attach, assign: std::fs::File::from(stdin) })
    }

    /// Keeps `name`'s pool full, from a tokio worker thread (instances die with the thread that started them),
    /// after `delay`: a replacement started while the instance it replaces is still starting its runtime
    /// would take the CPU from that cold start.
    fn refill(self: &Arc<Self>, name: &str, delay: std::time::Duration) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let (me, name) = (self.clone(), name.to_string());
        handle.spawn(async move {
            tokio::time::sleep(delay).await;
            loop {
                let kind = {
                    let pool = lock(&me.pool);
                    pool.iter().find(|(k, ready)| k.name == name && ready.len() < k.count).map(|(k, _)| k.clone())
                };
                let Some(kind) = kind else { return };
                match me.start_shell(&kind) {
                    Ok(shell) => {
                        let mut pool = lock(&me.pool);
                        match pool.iter_mut().find(|(k, _)| k.name == name) {
                            Some((_, ready)) => ready.push(shell),
                            None => return,
                        }
                    }
                    Err(e) => {
                        eprintln!("stoke: cannot start a generic {name} instance: {e}");
                        return;
                    }
                }
            }
        });
    }

    /// A ready generic instance that can run `spec`: one whose pre-started runtime is `spec`'s, else one
    /// that started nothing yet. Dead ones are dropped on the way.
    fn take_shell(&self, spec: &SpawnSpec) -> Option<(String, Shell)> {
        if spec.image.is_some() || spec.isolated_network {
            return None;
        }
        let mut pool = lock(&self.pool);
        let command = (spec.program.clone(), spec.args.clone());
        let fits = |k: &GenericSpec| {
            k.runtime_dir == spec.host.runtime_dir && spec.host_dirs.iter().all(|d| k.host_dirs.contains(d))
        };
        let order = [true, false];
        for prestarted in order {
            for (kind, ready) in pool.iter_mut() {
                let wanted =
                    if prestarted { kind.prestart.as_ref() == Some(&command) } else { kind.prestart.is_none() };
                if !wanted || !fits(kind) {
                    continue;
                }
                while let Some(mut shell) = ready.pop() {
                    if matches!(shell.child.try_wait(), Ok(None)) {
                        return Some((kind.name.clone(), shell));
                    }
                    shell.attach.remove();
                    shell.group.remove();
                }
            }
        }
        None
    }

    /// Forks `spec` from the ready zygote of its layers; starts one for next time when there is none.
    fn from_zygote(self: &Arc<Self>, spec: &SpawnSpec) -> Option<Spawned> {
        if !self.zygotes.serves(spec) {
            return None;
        }
        let Some(z) = self.zygotes.ready_for(&spec.layers) else {
            if self.zygotes.mark_starting(&spec.layers) {
                self.start_zygote(spec.layers.clone());
            }
            return None;
        };
        self.retry_leftovers();
        match zygote::assign(&z, spec, &self.limits(spec.memory_mb, spec.cpu_millis), &self.storage)? {
            Ok(spawned) => Some(spawned),
            Err(e) => {
                eprintln!("stoke: the zygote could not start an instance: {e}");
                None
            }
        }
    }

    /// Starts a zygote for `layers` from a tokio worker thread (processes die with the thread that started
    /// them).
    fn start_zygote(self: &Arc<Self>, layers: Vec<PathBuf>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let me = self.clone();
        handle.spawn(async move {
            let Some(spec) = me.zygotes.spec() else { return };
            // A zygote's instances join their groups themselves, inside its user namespace, where v2 refuses
            // the move: they and it go without the identity groups (their connections take the walk).
            let layout = me.layout.without_identity();
            let host = zygote::Host {
                helper: &me.helper,
                new_root: &me.new_root,
                zattach_root: &me.zattach_root,
                layout: &layout,
                server: me.server,
                settings: &me.settings,
                id: me.next.fetch_add(1, Ordering::Relaxed),
            };
            let context = zygote::ForkContext {
                layout: layout.clone(),
                server: me.server,
                id_base: host.id << 32,
                uid: me.settings.uid,
                gid: me.settings.gid,
                limits: me.limits(128, 0),
                leftovers: me.leftovers.clone(),
            };
            match zygote::start(&host, &spec, &layers, context) {
                Ok(z) => me.zygotes.add(z),
                Err(e) => {
                    eprintln!("stoke: cannot start a zygote: {e}");
                    me.zygotes.start_failed(&layers);
                }
            }
        });
    }

    /// Gives `shell` the function `spec` describes.
    fn assign(&self, mut shell: Shell, spec: &SpawnSpec) -> io::Result<Spawned> {
        let mut tmp = None;
        let done = (|| {
            let layers = self.root(Vec::new(), spec.layers.clone(), None, None, Tmp::Memory { size_mb: 0 }, None);
            rootfs::check(&layers).map_err(io::Error::other)?;
            shell.group.set_limits(&self.limits(spec.memory_mb, spec.cpu_millis))?;
            let ephemeral = tmp.insert(self.storage.take(spec.ephemeral_mb)?);
            shell.attach.attach(&spec.host.task_root, &spec.layers, Some(&spec.host.scratch), ephemeral)?;
            let assignment = Assignment {
                program: spec.program.clone(),
                args: spec.args.clone(),
                cwd: spec.cwd.clone(),
                env: spec.env.clone(),
            };
            shell.assign.write_all(&assignment.encode().map_err(io::Error::other)?)
        })();
        if let Err(e) = done {
            let _ = shell.child.start_kill();
            shell.attach.remove();
            return Err(e);
        }
        let pid = shell.child.id().ok_or_else(|| io::Error::other("the generic instance exited"))?;
        let control = LeanControl {
            pid,
            group: shell.group,
            leftovers: self.leftovers.clone(),
            attach: Some(shell.attach),
            _tmp: tmp,
        };
        Ok(Spawned::from_child(shell.child, Arc::new(control)))
    }
}

impl Sandbox for LeanSandbox {
    fn kind(&self) -> &'static str {
        "lean"
    }

    fn paths(&self, _host: &InstancePaths) -> InstancePaths {
        instance_view()
    }

    fn isolates_devices(&self) -> bool {
        true
    }

    fn isolates_network(&self) -> bool {
        true
    }

    fn layer_root(&self) -> Option<PathBuf> {
        Some(LAYER_ROOT.into())
    }

    fn instances_memory_bytes(&self) -> Option<u64> {
        self.inner.layout.working_set(self.inner.server)
    }

    fn limit_instances_memory(&self, bytes: u64) -> bool {
        self.inner.layout.limit_memory(self.inner.server, bytes).is_ok()
    }

    fn keep_generic(&self, kinds: Vec<GenericSpec>) {
        let names: Vec<String> = kinds.iter().filter(|k| k.count > 0).map(|k| k.name.clone()).collect();
        *lock(&self.inner.pool) = kinds.into_iter().filter(|k| k.count > 0).map(|k| (k, Vec::new())).collect();
        for name in names {
            self.inner.refill(&name, std::time::Duration::ZERO);
        }
    }

    fn generic_ready(&self) -> Vec<(String, usize)> {
        lock(&self.inner.pool).iter().map(|(k, ready)| (k.name.clone(), ready.len())).collect()
    }

    fn keep_zygotes(&self, spec: Option<crate::ZygoteSpec>) {
        self.inner.zygotes.configure(spec);
    }

    fn zygotes_ready(&self) -> usize {
        self.inner.zygotes.ready_count()
    }

    fn spawn(&self, spec: &SpawnSpec) -> io::Result<Spawned> {
        // Zygotes and generic instances were set up without devices: an instance with GPUs starts afresh.
        if spec.gpu.is_none() {
            if let Some(spawned) = self.inner.from_zygote(spec) {
                return Ok(spawned);
            }
        }
        if let Some((name, shell)) = self.inner.take_shell(spec).filter(|_| spec.gpu.is_none()) {
            self.inner.refill(&name, REFILL_DELAY);
            match self.inner.assign(shell, spec) {
                Ok(spawned) => return Ok(spawned),
                // Something was wrong with that one; start from scratch.
                Err(e) => eprintln!("stoke: a generic {name} instance could not take its function: {e}"),
            }
        }
        let inner = &self.inner;
        inner.retry_leftovers();
        let id = inner.next.fetch_add(1, Ordering::Relaxed);
        let mut group = inner.layout.create(inner.server, id, &inner.limits(spec.memory_mb, spec.cpu_millis))?;
        if let Some(gpu) = &spec.gpu {
            let nodes: Vec<(u32, u32)> = gpu.devices.iter().map(|d| (d.major, d.minor)).collect();
            if let Err(e) = inner.layout.restrict_devices(inner.server, id, &mut group, &devices::allowing(&nodes)) {
                group.remove();
                return Err(io::Error::other(format!("cannot hold the instance to its GPUs: {e}")));
            }
        }
        let mut binds = vec![
            Bind::read_only(spec.host.task_root.clone(), TASK_ROOT.into()),
            Bind::read_only(spec.host.runtime_dir.clone(), RUNTIME_DIR.into()),
        ];
        binds.extend(spec.host_dirs.iter().map(|d| Bind::read_only(d.clone(), d.clone())));
        // Workflow scratch: the only host directory an instance may write, and only its account's.
        if spec.host.scratch.is_dir() {
            binds.push(Bind { source: spec.host.scratch.clone(), target: SCRATCH_DIR.into(), writable: true });
        }
        if let Some(gpu) = &spec.gpu {
            binds.extend(gpu_binds(gpu, spec.image.is_some()));
        }
        let tmp = match inner.storage.take(spec.ephemeral_mb) {
            Ok(t) => t,
            Err(e) => {
                group.remove();
                return Err(e);
            }
        };
        let root = inner.root(binds, spec.layers.clone(), spec.image.clone(), None, tmp.as_tmp(), spec.gpu.as_ref());
        if let Err(why) = rootfs::check(&root) {
            group.remove();
            return Err(io::Error::other(why));
        }
        let config = JailConfig {
            root,
            cgroups: group.dirs().to_vec(),
            cwd: spec.cwd.clone(),
            program: spec.program.clone(),
            args: spec.args.clone(),
            relay: spec.isolated_network.then_some(spec.runtime_api_port),
            generic: Generic::No,
        };
        let child = inner.start_helper(&config, &spec.env, Stdio::null(), &group)?;
        let pid = child.id().ok_or_else(|| io::Error::other("the instance exited before it could be tracked"))?;
        let control = LeanControl { pid, group, leftovers: inner.leftovers.clone(), attach: None, _tmp: Some(tmp) };
        Ok(Spawned::from_child(child, Arc::new(control)))
    }
}

/// The binds a GPU plan adds: the driver's files read-only at their own paths — those under the host's own
/// `/usr` (and its merged links) only on an imported image, where the default image already shows them —
/// and an MPS daemon's pipe directory writable.
pub(crate) fn gpu_binds(gpu: &crate::gpu::GpuPlan, image: bool) -> Vec<Bind> {
    let shown = |p: &Path| rootfs::HOST_TOP.iter().any(|top| p.starts_with(Path::new("/").join(top)));
    let files = gpu.files.iter().filter(|f| image || !shown(f)).map(|f| Bind::read_only(f.clone(), f.clone()));
    let writable = gpu.writable.iter().map(|d| Bind { source: d.clone(), target: d.clone(), writable: true });
    files.chain(writable).collect()
}

struct LeanControl {
    /// The helper's pid in the host's namespace; it leads the instance's process group.
    pid: u32,
    group: Group,
    leftovers: Arc<Mutex<Vec<PathBuf>>>,
    /// A generic instance's attach points, unmounted when it goes.
    attach: Option<AttachPoints>,
    /// Its `/tmp`, gone with it.
    _tmp: Option<Ephemeral>,
}

impl InstanceControl for LeanControl {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn kill(&self) {
        // Frozen processes cannot die until thawed. Killing the helper's group kills the namespace's PID 1,
        // and with it every process of the instance, whatever group or session it moved to.
        self.group.freeze(false);
        let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
    }

    fn peak_memory_bytes(&self) -> Option<u64> {
        self.group.peak_memory()
    }

    fn processes(&self) -> Vec<u32> {
        self.group.pids()
    }

    fn out_of_memory(&self) -> bool {
        self.group.oom_kills() > 0
    }

    fn freeze(&self, frozen: bool) -> bool {
        self.group.freeze(frozen)
    }

    fn opened_connection(&self, local: SocketAddr, peer: SocketAddr) -> bool {
        let mut pids = self.group.members();
        pids.push(self.pid);
        crate::peer::opened_by_any(&pids, local, peer)
    }

    fn opened_connection_quickly(&self, local: SocketAddr, peer: SocketAddr) -> bool {
        self.group.opened_connection_quickly(local, peer)
    }
}

impl Drop for LeanControl {
    fn drop(&mut self) {
        self.group.remove_or_leave(&self.leftovers);
        if let Some(a) = &self.attach {
            a.remove();
        }
    }
}
