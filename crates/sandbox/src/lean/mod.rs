//! The `lean` backend: each instance in its own mount, PID, IPC and UTS namespaces, on a read-only root
//! built from the base image, under cgroup limits, as an unprivileged user with no capabilities and a
//! seccomp filter. Setting up costs a few milliseconds (no image unpacking, no daemon): see
//! BENCHMARKS.md.
//!
//! The server side (here) creates the instance's cgroups and starts the helper ([`jail`]) that does the
//! privileged setup in the new namespaces and executes the runtime.

pub mod cgroup;
pub mod jail;
pub mod rootfs;
pub mod seccomp;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::{InstanceControl, InstancePaths, Sandbox, SpawnSpec, Spawned};
use cgroup::{Group, Layout, Limits};
use jail::{JailConfig, JAIL_ARG};
use rootfs::{Bind, RootSpec};

/// Where the code and stoke's runtime files appear inside a lean instance (as on Lambda).
pub const TASK_ROOT: &str = "/var/task";
pub const RUNTIME_DIR: &str = "/var/runtime";
/// Where an instance sees its account's workflow scratch directories (read-write).
pub const SCRATCH_DIR: &str = "/var/stoke-scratch";
/// Where an instance sees its layers, merged (as on Lambda).
pub const LAYER_ROOT: &str = "/opt";

/// Knobs of the lean backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeanSettings {
    /// The unprivileged user and group functions run as (Lambda's `sbx_user1051` is 993).
    pub uid: u32,
    pub gid: u32,
    /// Size of each instance's `/tmp`, in MB.
    pub tmp_mb: u32,
    /// Processes and threads an instance may have.
    pub pids_max: u32,
    /// Cap CPU time at the memory-proportional share (otherwise the share is only a weight under contention).
    pub cpu_quota: bool,
}

impl Default for LeanSettings {
    fn default() -> Self {
        LeanSettings { uid: 993, gid: 990, tmp_mb: 512, pids_max: 1024, cpu_quota: false }
    }
}

/// Why the lean backend cannot run on this host.
#[derive(Debug)]
pub enum Unavailable {
    NotRoot,
    NoCgroups,
    Setup(io::Error),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::NotRoot => write!(f, "the lean sandbox needs root (namespaces, mounts and cgroups)"),
            Unavailable::NoCgroups => {
                write!(f, "the lean sandbox needs the memory, cpu and pids cgroup controllers, and this host lacks one")
            }
            Unavailable::Setup(e) => write!(f, "cannot prepare the lean sandbox's cgroups: {e}"),
        }
    }
}

/// Instances in namespaces and cgroups, set up by a helper process.
pub struct LeanSandbox {
    helper: PathBuf,
    new_root: PathBuf,
    layout: Layout,
    server: u32,
    settings: LeanSettings,
    next: AtomicU64,
    /// Groups whose removal failed (members still exiting); retried on later spawns.
    leftovers: Arc<Mutex<Vec<PathBuf>>>,
}

impl std::fmt::Debug for LeanSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeanSandbox").field("cgroups", &self.layout.describe()).finish_non_exhaustive()
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
        Ok(LeanSandbox {
            helper,
            new_root,
            layout,
            server,
            settings,
            next: AtomicU64::new(1),
            leftovers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// What the server prints at start, e.g. `cgroup v1 (memory, cpu, pids, freezer), user 993:990`.
    pub fn describe(&self) -> String {
        format!("{}, user {}:{}", self.layout.describe(), self.settings.uid, self.settings.gid)
    }

    fn retry_leftovers(&self) {
        let mut left = self.leftovers.lock().unwrap_or_else(|p| p.into_inner());
        left.retain(|dir| std::fs::remove_dir(dir).is_err() && dir.exists());
    }
}

impl Drop for LeanSandbox {
    fn drop(&mut self) {
        // Instances are gone by now (each is killed with the server); remove this server's groups.
        self.layout.remove_server(self.server);
    }
}

impl Sandbox for LeanSandbox {
    fn kind(&self) -> &'static str {
        "lean"
    }

    fn paths(&self, _host: &InstancePaths) -> InstancePaths {
        InstancePaths { task_root: TASK_ROOT.into(), runtime_dir: RUNTIME_DIR.into(), scratch: SCRATCH_DIR.into() }
    }

    fn isolates_network(&self) -> bool {
        true
    }

    fn layer_root(&self) -> Option<PathBuf> {
        Some(LAYER_ROOT.into())
    }

    fn spawn(&self, spec: &SpawnSpec) -> io::Result<Spawned> {
        self.retry_leftovers();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let limits = Limits {
            memory_bytes: u64::from(spec.memory_mb) * 1024 * 1024,
            cpu_millis: spec.cpu_millis,
            cpu_quota: self.settings.cpu_quota,
            pids: self.settings.pids_max,
        };
        let group = self.layout.create(self.server, id, &limits)?;
        let mut binds = vec![
            Bind::read_only(spec.host.task_root.clone(), TASK_ROOT.into()),
            Bind::read_only(spec.host.runtime_dir.clone(), RUNTIME_DIR.into()),
        ];
        binds.extend(spec.host_dirs.iter().map(|d| Bind::read_only(d.clone(), d.clone())));
        // Workflow scratch: the only host directory an instance may write, and only its account's.
        if spec.host.scratch.is_dir() {
            binds.push(Bind { source: spec.host.scratch.clone(), target: SCRATCH_DIR.into(), writable: true });
        }
        let root = RootSpec {
            new_root: self.new_root.clone(),
            binds,
            tmp_mb: self.settings.tmp_mb,
            uid: self.settings.uid,
            gid: self.settings.gid,
            hostname: "stoke".into(),
            layers: spec.layers.clone(),
            image: spec.image.clone(),
        };
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
        };
        let mut cmd = tokio::process::Command::new(&self.helper);
        cmd.arg(JAIL_ARG)
            .args(config.to_args())
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let files = spec.open_files;
        // SAFETY: runs between fork and exec; prctl and setrlimit are raw syscalls through nix that neither
        // allocate nor lock, and the closure only reads an integer it captured by value.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
                setrlimit(Resource::RLIMIT_NOFILE, files, files).map_err(io::Error::from)?;
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                group.remove();
                return Err(e);
            }
        };
        let pid = child.id().ok_or_else(|| io::Error::other("the instance exited before it could be tracked"))?;
        let control = LeanControl { pid, group, leftovers: self.leftovers.clone() };
        Ok(Spawned { child, control: Arc::new(control) })
    }
}

struct LeanControl {
    /// The helper's pid in the host's namespace; it leads the instance's process group.
    pid: u32,
    group: Group,
    leftovers: Arc<Mutex<Vec<PathBuf>>>,
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

    fn out_of_memory(&self) -> bool {
        self.group.oom_kills() > 0
    }

    fn freeze(&self, frozen: bool) -> bool {
        self.group.freeze(frozen)
    }

    fn opened_connection(&self, local: SocketAddr, peer: SocketAddr) -> bool {
        let mut pids = self.group.pids();
        pids.push(self.pid);
        crate::peer::opened_by_any(&pids, local, peer)
    }
}

impl Drop for LeanControl {
    fn drop(&mut self) {
        let busy = self.group.remove();
        if !busy.is_empty() {
            self.leftovers.lock().unwrap_or_else(|p| p.into_inner()).extend(busy);
        }
    }
}
