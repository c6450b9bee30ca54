//! The oci backend's holder: an OCI runtime as PID 1 of a PID namespace of its own, gone with the server.

use std::ffi::{CString, OsString};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::ForkResult;

use super::watch::{watch_server, Ends};
use super::{cstring, fail};

/// Runs `args` (a program and its arguments) as PID 1 of a new PID namespace, killed if this process dies,
/// and exits the way it did: when the program ends or is killed, the kernel kills every process left in its
/// namespace. If the server dies first ([`SERVER_GONE`](super::SERVER_GONE)), it removes the cgroup trees `reap` with every
/// process in them (frozen ones too). The oci backend holds its OCI runtime this way, so a container cannot
/// outlive the server.
pub fn hold_in_pid_namespace(args: &[OsString], reap: Vec<PathBuf>) -> ! {
    let Some(program) = args.first() else { fail("no program to hold (expected `-- <program> [args]`)") };
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWPID) {
        fail(&format!("cannot create a PID namespace: {e}"));
    }
    let server = watch_server();
    // SAFETY: this process is single-threaded (it was just executed and started no threads).
    match unsafe { nix::unistd::fork() } {
        Err(e) => fail(&format!("cannot fork: {e}")),
        Ok(ForkResult::Child) => {
            if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
                fail(&format!("cannot tie the runtime to its holder: {e}"));
            }
            // The runtime reads /proc/<pid> of the processes it starts, by their pids in this namespace: it
            // needs this namespace's /proc (in a mount namespace of its own, so the server's stays).
            let own_proc = nix::sched::unshare(CloneFlags::CLONE_NEWNS)
                .and_then(|()| {
                    nix::mount::mount(
                        None::<&str>,
                        "/",
                        None::<&str>,
                        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                        None::<&str>,
                    )
                })
                .and_then(|()| {
                    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
                    nix::mount::mount(Some("proc"), "/proc", Some("proc"), flags, None::<&str>)
                });
            if let Err(e) = own_proc {
                fail(&format!("cannot give the runtime its namespace's /proc: {e}"));
            }
            let argv: Vec<CString> = args.iter().map(|a| cstring(a)).collect();
            let e = nix::unistd::execv(&cstring(program), &argv).unwrap_err();
            fail(&format!("cannot run {}: {e}", Path::new(program).display()))
        }
        Ok(ForkResult::Parent { child }) => Ends::new(child, server, Vec::new(), reap).wait(),
    }
}
