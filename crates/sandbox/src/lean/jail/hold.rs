//! The oci backend's holder: an OCI runtime as PID 1 of a PID namespace of its own, gone with the server.

use std::ffi::{CString, OsString};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::ForkResult;

use super::super::rootfs::{MountFlags, Step};
use super::error::JailError;
use super::sys::{RealSys, Sys};
use super::watch::Ends;
use super::{cstring, fail};

/// Runs `args` (a program and its arguments) as PID 1 of a new PID namespace, killed if this process dies,
/// and exits the way it did: when the program ends or is killed, the kernel kills every process left in its
/// namespace. If the server dies first ([`SERVER_GONE`](super::SERVER_GONE)), it removes the cgroup trees
/// `reap` with every process in them (frozen ones too). The oci backend holds its OCI runtime this way, so a
/// container cannot outlive the server.
pub fn hold_in_pid_namespace(args: &[OsString], reap: Vec<PathBuf>) -> ! {
    match hold(&mut RealSys, args, reap) {
        Ok(ends) => ends.wait(),
        Err(e) => fail(&e),
    }
}

/// The holder's steps: its PID namespace, the server's watch, and the fork; the child becomes the
/// program (so it returns only when a step failed), the parent returns what it waits for.
fn hold(sys: &mut dyn Sys, args: &[OsString], reap: Vec<PathBuf>) -> Result<Ends, JailError> {
    let Some(program) = args.first() else { return Err(JailError::NoProgramToHold) };
    sys.unshare(CloneFlags::CLONE_NEWPID).map_err(JailError::PidNamespace)?;
    let server = sys.watch_server().map_err(JailError::WatchServer)?;
    match sys.fork().map_err(JailError::Fork)? {
        ForkResult::Child => {
            sys.set_parent_death_signal(Signal::SIGKILL).map_err(JailError::TieToHolder)?;
            // The runtime reads /proc/<pid> of the processes it starts, by their pids in this namespace: it
            // needs this namespace's /proc (in a mount namespace of its own, so the server's stays).
            let private = MountFlags { recursive: true, private: true, ..Default::default() };
            let proc = MountFlags { nosuid: true, nodev: true, noexec: true, ..Default::default() };
            sys.unshare(CloneFlags::CLONE_NEWNS)
                .and_then(|()| {
                    sys.mount(&Step::Mount {
                        source: None,
                        target: "/".into(),
                        fstype: None,
                        flags: private,
                        data: None,
                    })
                })
                .and_then(|()| {
                    let source = Some("proc".into());
                    sys.mount(&Step::Mount {
                        source,
                        target: "/proc".into(),
                        fstype: Some("proc"),
                        flags: proc,
                        data: None,
                    })
                })
                .map_err(JailError::OwnProc)?;
            let argv = args.iter().map(|a| cstring(a)).collect::<Result<Vec<CString>, _>>()?;
            let error = sys.exec(&cstring(program)?, &argv, None);
            Err(JailError::Exec { program: Path::new(program).into(), error })
        }
        ForkResult::Parent { child } => {
            let exited = sys.pidfd(child).map_err(JailError::WatchInstance)?;
            Ok(Ends { exited, server, child, own: Vec::new(), reap })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::recorder::Recorder;
    use super::*;

    fn runc() -> Vec<OsString> {
        ["/usr/bin/runc", "run", "--bundle", "/b", "c1"].map(OsString::from).to_vec()
    }

    #[test]
    fn the_runtime_gets_its_namespaces_proc_and_is_tied_to_the_holder() {
        let mut sys = Recorder::default();
        let err = hold(&mut sys, &runc(), Vec::new()).unwrap_err();
        assert!(matches!(err, JailError::Exec { .. }), "{err:?}");
        assert_eq!(
            sys.calls,
            [
                "unshare pid",
                "watch server",
                "fork (child)",
                "pdeathsig SIGKILL",
                "unshare mnt",
                "fs mount (remount) on /",
                "fs mount proc on /proc (proc)",
                "exec /usr/bin/runc run --bundle /b c1"
            ]
        );
    }

    #[test]
    fn the_holder_watches_the_runtime_and_the_server() {
        let mut sys = Recorder::default().parent_first(&[7]);
        let ends = hold(&mut sys, &runc(), vec!["/sys/fs/cgroup/stoke/s1".into()]).unwrap();
        assert_eq!(sys.calls, ["unshare pid", "watch server", "fork (parent of 7)", "pidfd 7"]);
        assert_eq!((ends.child.as_raw(), ends.own.len(), ends.reap.len()), (7, 0, 1));
    }

    #[test]
    fn a_failed_step_is_the_last() {
        let mut sys = Recorder::failing("unshare mnt");
        assert!(matches!(hold(&mut sys, &runc(), Vec::new()), Err(JailError::OwnProc(_))));
        assert_eq!(sys.calls.last().unwrap(), "unshare mnt -> EPERM");
        assert!(!sys.calls.iter().any(|c| c.starts_with("fs") || c.starts_with("exec")));

        let mut sys = Recorder::failing("unshare pid");
        assert!(matches!(hold(&mut sys, &runc(), Vec::new()), Err(JailError::PidNamespace(_))));
        assert_eq!(sys.calls, ["unshare pid -> EPERM"]);

        let mut sys = Recorder::default();
        assert!(matches!(hold(&mut sys, &[], Vec::new()), Err(JailError::NoProgramToHold)));
        assert!(sys.calls.is_empty());
    }
}
