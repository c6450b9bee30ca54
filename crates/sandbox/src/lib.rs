//! Where function instances run. Every syscall stoke makes on an instance's behalf lives in this crate,
//! behind the [`Sandbox`] trait, so the scheduler never touches processes, namespaces or cgroups directly.
//!
//! Backends: [`lean::LeanSandbox`] (namespaces, a read-only root, cgroups, seccomp — the default as root),
//! [`oci::OciSandbox`] (OCI bundles run by runc, crun or runsc), [`vm::VmSandbox`] (a QEMU microVM per
//! instance) and [`ProcessSandbox`] (a child process with resource limits — for unprivileged hosts and
//! development). For tests, `fake::FakeSandbox` (feature
//! `test-fixtures`) starts no process: its instances are scripted runtimes in tokio tasks.

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

mod alloc;
#[cfg(any(test, feature = "test-fixtures"))]
pub mod fake;
pub mod gpu;
pub mod lean;
pub mod oci;
mod peer;
pub mod vm;

pub use alloc::Allocator;
pub use lean::jail::{jail_main, JAIL_ARG, RELAYED_RUNTIME_API_PORT};
pub use oci::{pidns_main, PIDNS_ARG};

/// Raises this process's soft limit on open files towards `want` (never above the hard limit, never
/// lower than it is), for a server that holds many client connections. Returns the limit now in force.
/// Instances set their own limit when they start, so this does not reach them.
pub fn raise_open_files_limit(want: u64) -> io::Result<u64> {
    let (soft, hard) = nix::sys::resource::getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    let target = want.min(hard);
    if target <= soft {
        return Ok(soft);
    }
    setrlimit(Resource::RLIMIT_NOFILE, target, hard).map_err(io::Error::from)?;
    Ok(target)
}

/// Finds `name`: a file name looked up on the server's PATH, or a path.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return std::path::Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Threads that start instances: they live as long as the process.
const LASTING_THREADS: usize = 4;

type Job = Box<dyn FnOnce() + Send>;

/// Runs `f` on one of a few threads that live as long as the process and answers its result. Instances
/// must be started there (or on a tokio worker): each is tied to the thread that started it, whose end
/// (`PR_SET_PDEATHSIG` fires when that *thread* ends, not the process) counts as the server's death —
/// and tokio's blocking-pool threads end after ten idle seconds.
pub fn on_lasting_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::sync::oneshot::Receiver<T> {
    static QUEUE: std::sync::OnceLock<std::sync::mpsc::Sender<Job>> = std::sync::OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..LASTING_THREADS {
            let rx = rx.clone();
            let _ = std::thread::Builder::new().name(format!("stoke-spawn-{n}")).spawn(move || loop {
                let job = lock(&rx).recv();
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            });
        }
        tx
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The job runs in the caller's runtime, if any (a sandbox spawns its processes with tokio's).
    let runtime = tokio::runtime::Handle::try_current().ok();
    let job: Job = Box::new(move || {
        let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
        let _ = tx.send(f());
    });
    // The threads never end, so the queue always has a reader; a failed send drops the job, and the
    // receiver then reports it lost.
    let _ = queue.send(job);
    rx
}

/// Where an instance finds its function's code and stoke's runtime files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePaths {
    pub task_root: PathBuf,
    pub runtime_dir: PathBuf,
    /// The account's workflow scratch directories (read-write; one sub-directory per execution).
    pub scratch: PathBuf,
}

/// What to run and within which limits. Program, arguments, environment and working directory are in
/// the instance's view of the file system (see [`Sandbox::paths`]).
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// The code and runtime files on the host.
    pub host: InstancePaths,
    /// Host directories the runtime needs at the same path (an interpreter installed outside `/usr`).
    pub host_dirs: Vec<PathBuf>,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The complete environment: nothing of the server's own leaks in.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Memory the instance may use, in MB.
    pub memory_mb: u32,
    /// The size of its `/tmp` (Lambda's ephemeral storage), in MB.
    pub ephemeral_mb: u32,
    /// Share of the CPU in thousandths of a vCPU (proportional to memory).
    pub cpu_millis: u32,
    /// Open files the instance may hold.
    pub open_files: u64,
    /// Unpacked layers on the host, in the order the function lists them (later ones win).
    pub layers: Vec<PathBuf>,
    /// An imported root file system to run on instead of the host's own.
    pub image: Option<PathBuf>,
    /// A network of its own with only loopback, instead of the host's.
    pub isolated_network: bool,
    /// The host port of the instance's Runtime API endpoint (relayed in when the network is isolated).
    pub runtime_api_port: u16,
    /// The GPUs the instance holds: their device nodes, the driver's files, an MPS daemon's directories (its
    /// environment is in `env` already). Backends that isolate devices carry it out; `process` cannot.
    pub gpu: Option<gpu::GpuPlan>,
}

/// A kind of generic instance (OpenWhisk's stem cells): a sandbox set up before anyone knows its function,
/// given one on demand. The backend keeps `count` of each kind ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericSpec {
    /// Shown in listings: `sandbox` (nothing started yet) or a runtime's name (`python`).
    pub name: String,
    /// A runtime started before its function is known; it reads its assignment from stdin (stoke's
    /// Python bootstrap does). `None`: start nothing until the assignment, then run what it names.
    pub prestart: Option<(PathBuf, Vec<OsString>)>,
    /// The environment of the pre-started runtime (the assignment brings the function's).
    pub env: Vec<(String, String)>,
    /// stoke's runtime files on the host (seen at `/var/runtime`), and host directories runtimes need at
    /// the same path (an interpreter installed outside `/usr`).
    pub runtime_dir: PathBuf,
    pub host_dirs: Vec<PathBuf>,
    /// Limits until a function is assigned (then the function's): memory in MB, CPU share in thousandths
    /// of a vCPU.
    pub memory_mb: u32,
    pub cpu_millis: u32,
    pub count: usize,
}

/// What zygotes are made of, from the scheduler (which knows the runtimes). See
/// [`lean::zygote`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZygoteSpec {
    /// The runtime command a zygote replaces (stoke's Python runtime): instances whose spec runs exactly this
    /// may be forked.
    pub serves: (PathBuf, Vec<OsString>),
    /// The zygote's own command (stoke's Python zygote).
    pub command: (PathBuf, Vec<OsString>),
    pub env: Vec<(String, String)>,
    pub runtime_dir: PathBuf,
    pub host_dirs: Vec<PathBuf>,
    /// The zygote's memory limit, in MB, and CPU share.
    pub memory_mb: u32,
    pub cpu_millis: u32,
    /// Most zygotes kept (one per layer set); the least recently used without instances goes first.
    pub max: usize,
}

/// Control over a running instance, independent of who waits for it.
pub trait InstanceControl: Send + Sync {
    fn pid(&self) -> u32;
    /// Kills the instance and everything it started.
    fn kill(&self);
    /// Peak memory the instance used so far, in bytes, when the backend can tell.
    fn peak_memory_bytes(&self) -> Option<u64>;
    /// The host pids of the instance's processes (for what a GPU driver reports per process).
    fn processes(&self) -> Vec<u32> {
        vec![self.pid()]
    }
    /// Whether the kernel killed a process of the instance for exceeding its memory.
    fn out_of_memory(&self) -> bool {
        false
    }
    /// Freezes (`true`) or thaws every process of the instance; false when the backend cannot.
    fn freeze(&self, _frozen: bool) -> bool {
        false
    }
    /// Whether the loopback TCP connection from `peer` to `local` was opened by a process of this instance.
    /// Blocking (reads `/proc`); call it off the async threads.
    fn opened_connection(&self, local: SocketAddr, peer: SocketAddr) -> bool;
    /// The same question answered from the kernel's record of the socket's cgroup alone: one netlink
    /// exchange, no `/proc` read, cheap enough for an async thread. `true` proves the connection is the
    /// instance's; `false` proves nothing (ask [`InstanceControl::opened_connection`]).
    fn opened_connection_quickly(&self, _local: SocketAddr, _peer: SocketAddr) -> bool {
        false
    }
}

/// Completes when an instance has exited, with how it ended.
pub type Exit = std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<std::process::ExitStatus>> + Send>>;

/// A spawned instance: its output, its end, and its control.
pub struct Spawned {
    pub stdout: Option<std::os::fd::OwnedFd>,
    pub stderr: Option<std::os::fd::OwnedFd>,
    /// Dropping it before the end kills an instance that is a child process (`kill_on_drop`).
    pub exit: Exit,
    pub control: Arc<dyn InstanceControl>,
}

impl Spawned {
    /// An instance that is a child process of the server.
    pub fn from_child(mut child: tokio::process::Child, control: Arc<dyn InstanceControl>) -> Spawned {
        let stdout = child.stdout.take().and_then(|o| o.into_owned_fd().ok());
        let stderr = child.stderr.take().and_then(|e| e.into_owned_fd().ok());
        Spawned { stdout, stderr, exit: Box::pin(async move { child.wait().await }), control }
    }
}

impl std::fmt::Debug for Spawned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawned").field("pid", &self.control.pid()).finish()
    }
}

/// A way to run instances.
pub trait Sandbox: Send + Sync + 'static {
    /// Short name shown at start and in `stoke instances`.
    fn kind(&self) -> &'static str;
    /// Where an instance sees the code and runtime files that are at `host` on the host.
    fn paths(&self, host: &InstancePaths) -> InstancePaths {
        host.clone()
    }
    /// Whether an instance can get a network of its own (`network: none`).
    fn isolates_network(&self) -> bool {
        false
    }
    /// Whether an instance sees only the devices it is given (so a GPU plan's device nodes and MPS limits
    /// mean something); `process` shares the host's `/dev`.
    fn isolates_devices(&self) -> bool {
        false
    }
    /// Where an instance sees its layers: one directory they are merged into (`/opt`), or `None` when each
    /// layer stays at its own host path.
    fn layer_root(&self) -> Option<PathBuf> {
        None
    }
    /// Keeps generic instances of these kinds ready, replacing each one used (backends that cannot do
    /// without starting from scratch ignore this).
    fn keep_generic(&self, _kinds: Vec<GenericSpec>) {}
    /// Generic instances ready now, by kind.
    fn generic_ready(&self) -> Vec<(String, usize)> {
        Vec::new()
    }
    /// Forks instances of stoke's Python runtime with layers from zygotes of this kind (backends that cannot
    /// ignore this).
    fn keep_zygotes(&self, _spec: Option<ZygoteSpec>) {}
    /// Zygotes ready now.
    fn zygotes_ready(&self) -> usize {
        0
    }
    /// Snapshots instances are restored from rather than started, by name (the vm sandbox's shapes).
    fn snapshots_ready(&self) -> Vec<String> {
        Vec::new()
    }
    /// What all instances use together now, in bytes: their working set (memory the kernel cannot simply
    /// drop, so file cache it can reclaim does not count); `None` where the sandbox cannot tell.
    fn instances_memory_bytes(&self) -> Option<u64> {
        None
    }
    /// Holds all instances together to `bytes` of memory, so that when they outgrow the node's budget the
    /// kernel reclaims and, at worst, kills inside them — never the server or the rest of the host. False
    /// where the sandbox cannot.
    fn limit_instances_memory(&self, _bytes: u64) -> bool {
        false
    }
    /// Starts an instance. Must be called from a thread that lives as long as the server — a tokio worker, or
    /// [`on_lasting_thread`] (the child is tied to the spawning thread's lifetime through `PR_SET_PDEATHSIG`).
    fn spawn(&self, spec: &SpawnSpec) -> io::Result<Spawned>;
}

/// Child processes with rlimits, in their own process group, killed if the server dies.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessSandbox;

struct ProcessControl {
    pid: u32,
}

impl InstanceControl for ProcessControl {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn kill(&self) {
        // The child leads its own process group, so this reaches everything it forked.
        let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
    }

    fn opened_connection(&self, local: SocketAddr, peer: SocketAddr) -> bool {
        peer::opened_by_group(self.pid, local, peer)
    }

    fn processes(&self) -> Vec<u32> {
        group_members(self.pid)
    }

    fn peak_memory_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        parse_vm_hwm(&status)
    }
}

/// The processes of process group `pgid` (read from `/proc`).
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![pgid] };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().as_deref().and_then(stat_pgrp) == Some(pgid)
        })
        .collect();
    if !pids.contains(&pgid) {
        pids.push(pgid);
    }
    pids
}

/// The process group (5th field) of a `/proc/<pid>/stat` line; the command name in parentheses may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn stat_pgrp(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// `VmHWM` (peak resident set) from `/proc/<pid>/status`, in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl Sandbox for ProcessSandbox {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn spawn(&self, spec: &SpawnSpec) -> io::Result<Spawned> {
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&spec.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // Data segment and anonymous writable mappings: what a runtime's heap grows into. Virtual address
        // space (RLIMIT_AS) would break runtimes that reserve large ranges up front (V8, Go).
        let data_limit = u64::from(spec.memory_mb) * 1024 * 1024;
        let files = spec.open_files;
        // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe calls
        // are allowed. It makes three raw syscalls (prctl, setrlimit ×2) through nix, which neither allocate
        // nor take locks, and touches only the two integers it captured by value.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
                setrlimit(Resource::RLIMIT_DATA, data_limit, data_limit).map_err(io::Error::from)?;
                setrlimit(Resource::RLIMIT_NOFILE, files, files).map_err(io::Error::from)?;
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        let pid = child.id().ok_or_else(|| io::Error::other("the instance exited before it could be tracked"))?;
        Ok(Spawned::from_child(child, Arc::new(ProcessControl { pid })))
    }
}

/// Whether a sandbox's refusal to start a function's program is the function's fault — the program is
/// missing, not executable, or not a program — rather than the node's (a busy device, memory or processes
/// short), which is worth another try and must never be reported as the function's error.
pub fn entrypoint_fault(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied)
        || matches!(e.raw_os_error(), Some(libc::ENOEXEC | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG))
}

/// Locks `m`, taking the data even when a thread panicked while holding it: a sandbox's bookkeeping stays
/// consistent between statements, and one instance's failure must not stop every later spawn.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::AsyncReadExt;

    #[test]
    fn lasting_threads_are_a_few_named_threads_used_again_and_again_in_the_callers_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let seen: Vec<(String, bool)> = rt.block_on(async {
            let mut seen = Vec::new();
            for _ in 0..20 {
                let got = on_lasting_thread(|| {
                    let me = std::thread::current();
                    (me.name().unwrap_or_default().to_string(), tokio::runtime::Handle::try_current().is_ok())
                });
                seen.push(got.await.unwrap());
            }
            seen
        });
        assert!(seen.iter().all(|(name, _)| name.starts_with("stoke-spawn-")), "{seen:?}");
        assert!(seen.iter().all(|(_, in_runtime)| *in_runtime), "jobs run in the caller's runtime: {seen:?}");
        let mut names: Vec<&String> = seen.iter().map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        assert!(names.len() <= LASTING_THREADS, "no new thread per job: {names:?}");
    }

    #[test]
    fn a_missing_or_unrunnable_program_is_the_functions_fault_a_busy_node_is_not() {
        for errno in [libc::ENOENT, libc::EACCES, libc::ENOEXEC, libc::ENOTDIR, libc::ELOOP] {
            assert!(entrypoint_fault(&io::Error::from_raw_os_error(errno)), "errno {errno}");
        }
        for errno in [libc::EBUSY, libc::EAGAIN, libc::ENOMEM, libc::ENOSPC, libc::EMFILE] {
            assert!(!entrypoint_fault(&io::Error::from_raw_os_error(errno)), "errno {errno}");
        }
        assert!(!entrypoint_fault(&io::Error::other("the instance exited before it could be tracked")));
    }

    fn spec(script: &str) -> SpawnSpec {
        SpawnSpec {
            host: InstancePaths {
                task_root: std::env::temp_dir(),
                runtime_dir: std::env::temp_dir(),
                scratch: std::env::temp_dir(),
            },
            host_dirs: Vec::new(),
            cpu_millis: 144,
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("ONLY".into(), "this".into())],
            cwd: std::env::temp_dir(),
            memory_mb: 256,
            ephemeral_mb: 512,
            open_files: 64,
            layers: Vec::new(),
            image: None,
            isolated_network: false,
            runtime_api_port: 0,
            gpu: None,
        }
    }

    #[tokio::test]
    async fn runs_with_only_the_given_environment_and_limits() {
        let s = ProcessSandbox.spawn(&spec("echo \"$ONLY ${HOME:-nohome}\"; ulimit -n; ulimit -d")).unwrap();
        let mut out = String::new();
        let stdout = tokio::net::unix::pipe::Receiver::from_owned_fd(s.stdout.unwrap()).unwrap();
        let mut stdout = stdout;
        stdout.read_to_string(&mut out).await.unwrap();
        assert!(s.exit.await.unwrap().success());
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines, ["this nohome", "64", &(256 * 1024).to_string()]);
    }

    #[tokio::test]
    async fn kill_reaches_the_whole_process_group() {
        let s = ProcessSandbox.spawn(&spec("sleep 60 & echo $!; wait")).unwrap();
        let mut stdout = tokio::net::unix::pipe::Receiver::from_owned_fd(s.stdout.unwrap()).unwrap();
        let mut buf = [0u8; 32];
        let n = stdout.read(&mut buf).await.unwrap();
        let grandchild: i32 = std::str::from_utf8(&buf[..n]).unwrap().trim().parse().unwrap();
        assert!(s.control.peak_memory_bytes().is_some_and(|b| b > 0));
        s.control.kill();
        s.exit.await.unwrap();
        // The grandchild is gone too (or a zombie about to be reaped by init).
        for _ in 0..100 {
            let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
            if state.is_empty() || state.contains(") Z") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("grandchild {grandchild} survived the kill");
    }

    #[test]
    fn reads_the_process_group_after_the_command_name() {
        assert_eq!(stat_pgrp("42 (py thon) (x)) S 1 40 40 0 -1"), Some(40));
        assert_eq!(stat_pgrp("garbage"), None);
        let me = std::process::id();
        let group = u32::try_from(nix::unistd::getpgrp().as_raw()).unwrap();
        assert!(group_members(group).contains(&me));
    }

    #[test]
    fn parses_peak_memory() {
        assert_eq!(parse_vm_hwm("Name:\tx\nVmHWM:\t  2048 kB\n"), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
    }
}
