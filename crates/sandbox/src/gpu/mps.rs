//! One CUDA MPS control daemon per GPU, started and supervised by the node. An instance holding a share of
//! a GPU is that GPU's daemon's client: `CUDA_MPS_PINNED_DEVICE_MEM_LIMIT` caps what it can allocate (past
//! it, CUDA answers out-of-memory inside the function) and `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE` its share of
//! the GPU's multiprocessors.
//!
//! Each daemon sees only its GPU (`CUDA_VISIBLE_DEVICES=<uuid>`), keeps its pipes in a directory of its own,
//! and runs in a mount namespace whose `/dev/shm` is a directory of its own: clients get that directory
//! bound at their `/dev/shm` and the pipe directory at its path, and nothing else of the host's.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::GpuDevice;

/// The control daemon's program.
pub const CONTROL: &str = "nvidia-cuda-mps-control";

/// A daemon's directories on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    pub pipe: PathBuf,
    pub log: PathBuf,
    pub shm: PathBuf,
}

impl Dirs {
    /// GPU `index`'s directories under `run_dir`.
    pub fn of(run_dir: &Path, index: u32) -> Dirs {
        let base = run_dir.join("mps").join(index.to_string());
        Dirs { pipe: base.join("pipe"), log: base.join("log"), shm: base.join("shm") }
    }
}

/// The node's MPS daemons; dropping it stops them.
pub struct Daemons {
    dirs: Vec<(u32, Dirs)>,
    stop: Arc<AtomicBool>,
    children: Arc<Mutex<Vec<(u32, u32)>>>,
}

impl std::fmt::Debug for Daemons {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemons").field("gpus", &self.dirs.len()).finish_non_exhaustive()
    }
}

/// The control daemon's path, when installed.
pub fn find_control() -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin", "/usr/sbin", "/bin"].iter().map(|d| Path::new(d).join(CONTROL)).find(|p| p.exists())
}

impl Daemons {
    /// Starts a daemon for each GPU in `devices`, each restarted if it exits; `None` when the control
    /// daemon is not installed or its directories cannot be made (shares are then not enforced).
    pub fn start(run_dir: &Path, devices: &[GpuDevice]) -> Option<Arc<Daemons>> {
        let control = find_control()?;
        let stop = Arc::new(AtomicBool::new(false));
        let children = Arc::new(Mutex::new(Vec::new()));
        let mut dirs = Vec::new();
        for d in devices {
            let these = Dirs::of(run_dir, d.index);
            for (dir, mode) in [(&these.pipe, 0o777), (&these.log, 0o755), (&these.shm, 0o1777)] {
                std::fs::create_dir_all(dir).ok()?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).ok()?;
            }
            dirs.push((d.index, these.clone()));
            let (control, uuid, index) = (control.clone(), d.uuid.clone(), d.index);
            let (stop, children) = (stop.clone(), children.clone());
            std::thread::Builder::new()
                .name(format!("mps-{index}"))
                .spawn(move || supervise(&control, &uuid, index, &these, &stop, &children))
                .ok()?;
        }
        Some(Arc::new(Daemons { dirs, stop, children }))
    }

    /// GPU `index`'s daemon's directories.
    pub fn dirs(&self, index: u32) -> Option<Dirs> {
        self.dirs.iter().find(|(i, _)| *i == index).map(|(_, d)| d.clone())
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for (_, pid) in crate::lock(&self.children).drain(..) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// Runs GPU `index`'s daemon in the foreground, again after it exits (1 s, doubling to 30 s between tries),
/// until `stop`.
fn supervise(
    control: &Path,
    uuid: &str,
    index: u32,
    dirs: &Dirs,
    stop: &AtomicBool,
    children: &Mutex<Vec<(u32, u32)>>,
) {
    let mut backoff = Duration::from_secs(1);
    while !stop.load(Ordering::Relaxed) {
        match spawn(control, uuid, dirs) {
            Ok(mut child) => {
                crate::lock(children).push((index, child.id()));
                tracing::info!(gpu = index, pid = child.id(), "MPS daemon started");
                let started = std::time::Instant::now();
                let status = child.wait();
                crate::lock(children).retain(|(i, _)| *i != index);
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                tracing::warn!(gpu = index, ?status, ?backoff, "MPS daemon exited; restarting it");
            }
            Err(e) => tracing::warn!(gpu = index, error = %e, "MPS daemon could not start"),
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn spawn(control: &Path, uuid: &str, dirs: &Dirs) -> std::io::Result<Child> {
    let shm = std::ffi::CString::new(dirs.shm.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    let mut cmd = Command::new(control);
    cmd.arg("-f")
        .env("CUDA_VISIBLE_DEVICES", uuid)
        .env("CUDA_MPS_PIPE_DIRECTORY", &dirs.pipe)
        .env("CUDA_MPS_LOG_DIRECTORY", &dirs.log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // SAFETY: runs between fork and exec: prctl, unshare and two mounts through nix, which make raw
    // syscalls without allocating or locking; `shm` was allocated before the fork and is only read.
    unsafe {
        cmd.pre_exec(move || {
            use nix::mount::{mount, MsFlags};
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).map_err(std::io::Error::from)?;
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(std::io::Error::from)?;
            mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
                .map_err(std::io::Error::from)?;
            mount(Some(shm.as_c_str()), "/dev/shm", None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    cmd.spawn()
}
