//! What ends a jailer (or an OCI runtime's holder): its instance's end, or the server's.

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::error::JailError;
use super::fail;

/// The helper's parent-death signal (the server sets it): the server is gone. A SIGKILL would not do: an
/// instance frozen in a cgroup v1 freezer keeps its own pending SIGKILL until someone thaws it, so the
/// helper catches this one, kills and thaws every group of its server, and exits.
pub const SERVER_GONE: Signal = Signal::SIGUSR1;

/// The server is gone: removes the helper's own instance's groups `own`, then — if no other helper of the
/// server is already at it — the server's cgroup trees `reap` with every process in them (a zygote's
/// instances have no helper of their own), thawing them so the kills land; exits as if killed.
///
/// One sweep is enough: with a thousand instances, a thousand helpers each walking every group of the server
/// took minutes to end them all. The sweeper holds an exclusive lock on the first tree while it works; a
/// helper that cannot take it leaves the rest to that one.
pub(super) fn reap_server(own: &[PathBuf], reap: &[PathBuf]) -> ! {
    fn paths(dirs: &[PathBuf]) -> Vec<&Path> {
        dirs.iter().map(PathBuf::as_path).collect()
    }
    super::super::cgroup::remove_trees(&paths(own));
    if sweep_lock(reap.first()).is_some() {
        super::super::cgroup::remove_trees(&paths(reap));
    }
    std::process::exit(128 + libc::SIGKILL)
}

/// An exclusive `flock` on `dir`, held until the returned descriptor is closed; `None` when another
/// process holds it. A tree that cannot be opened (already removed) needs no sweep either.
fn sweep_lock(dir: Option<&PathBuf>) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(dir?).ok()?;
    // SAFETY: flock(2) on a descriptor this function owns; no memory is passed.
    let locked = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    locked.then_some(dir)
}

/// What ends a jailer (or an OCI runtime's holder): its instance's end, or the server's.
#[derive(Debug)]
pub(super) struct Ends {
    /// The instance's pidfd.
    pub(super) exited: std::os::fd::OwnedFd,
    /// Readable once the server is gone.
    pub(super) server: std::os::fd::OwnedFd,
    pub(super) child: Pid,
    /// The instance's own groups, removed first if the server goes first.
    pub(super) own: Vec<PathBuf>,
    /// The cgroup trees to remove, with every process in them, if the server goes first.
    pub(super) reap: Vec<PathBuf>,
}

impl Ends {
    /// Waits for either; exits the way the instance did, or reaps the server's instances.
    pub(super) fn wait(self) -> ! {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        loop {
            let mut fds = [
                PollFd::new(self.exited.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.server.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => fail(&JailError::WaitInstance(e.into())),
            }
            let (exited, gone) = (fds[0].any().unwrap_or(false), fds[1].any().unwrap_or(false));
            if gone {
                reap_server(&self.own, &self.reap);
            }
            if exited {
                wait_and_exit(self.child);
            }
        }
    }
}

/// Waits for `child` and ends the same way.
pub(super) fn wait_and_exit(child: Pid) -> ! {
    loop {
        match nix::sys::wait::waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => exit_like(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => exit_like(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => fail(&JailError::LostInstance(e.into())),
        }
    }
}

/// Exits with `code`, or — for 129..=159, the shell convention for "killed by signal code-128" — by that
/// signal, so the server reports the runtime's real fate.
fn exit_like(code: i32) -> ! {
    if (129..=159).contains(&code) {
        if let Ok(sig) = Signal::try_from(code - 128) {
            let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
            // SAFETY: restoring the default disposition is always sound.
            unsafe {
                let _ = nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl);
            }
            let _ = nix::sys::signal::raise(sig);
        }
    }
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_helper_at_a_time_sweeps_a_server_tree() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().to_path_buf();
        let first = sweep_lock(Some(&tree));
        assert!(first.is_some(), "nobody sweeps yet");
        assert!(sweep_lock(Some(&tree)).is_none(), "another helper is sweeping");
        drop(first);
        assert!(sweep_lock(Some(&tree)).is_some(), "the sweep is over: it may be taken again");
        // A tree already removed needs no sweep, nor does a server with no tree.
        assert!(sweep_lock(Some(&tree.join("gone"))).is_none());
        assert!(sweep_lock(None).is_none());
    }
}
