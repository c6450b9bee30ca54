//! The helper that turns a plain child process into a lean instance — the only code in stoke that runs
//! privileged on an instance's behalf. The server starts it as `stoke __jail <options> -- <program> <args>`
//! with the function's environment; it then:
//!
//! 1. (`jailer`, in the host's PID namespace) unshares PID, IPC and UTS namespaces and forks;
//!    it waits for its child and exits the way the runtime did, so the server sees the runtime's status.
//!    If the server dies first ([`SERVER_GONE`] is the helper's parent-death signal), it kills every
//!    instance of that server — frozen ones too — and exits.
//!    For `network: none` it first moves into a new network namespace, brings its loopback up, listens on
//!    `127.0.0.1:9001` there, forks, then returns to the host's network and relays every connection to that
//!    port to the instance's Runtime API endpoint on the host — the only way out of the namespace;
//! 2. (`init`, PID 1 of the new namespace) enters a mount namespace of its own, joins the instance's cgroups, sets the host name, builds the
//!    root file system and pivots into it, forks the runtime, and reaps orphans until the runtime exits
//!    (when PID 1 exits, the kernel kills everything left in the namespace);
//! 3. (`runtime`) drops to the sandbox user with no capabilities, sets `no_new_privs`, installs the
//!    seccomp filter and executes the runtime program.

mod config;
mod hold;
mod init;
mod net;
mod privileges;
mod sys;
mod watch;

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sched::CloneFlags;
use nix::unistd::ForkResult;

pub use config::{ArgumentError, Generic, JailConfig};
pub use hold::hold_in_pid_namespace;
pub use net::RELAYED_RUNTIME_API_PORT;
pub use watch::SERVER_GONE;

use net::own_network;
use watch::{watch_server, Ends};

/// The first argument that makes the `stoke` binary act as this helper.
pub const JAIL_ARG: &str = "__jail";

/// Entry point of the helper: never returns.
pub fn jail_main(args: impl IntoIterator<Item = OsString>) -> ! {
    let config = match JailConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => fail(&format!("bad arguments: {e}")),
    };
    // network: none — a namespace of its own, entered before the fork so the instance is born in it.
    let relay = config.relay.map(|port| match own_network() {
        Ok(net) => (net, port),
        Err(e) => fail(&format!("cannot give the instance a network of its own: {e}")),
    });
    // The mount namespace is init's alone: the jailer stays in the server's, where the cgroup file system
    // still is when it must reap (pivot_root moves every process of a namespace to the new root).
    let namespaces = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    if let Err(e) = nix::sched::unshare(namespaces) {
        fail(&format!("cannot create namespaces: {e}"));
    }
    let server = watch_server();
    // SAFETY: the helper is single-threaded (it was just executed and started no threads), so the child
    // may do anything after fork.
    match unsafe { nix::unistd::fork() } {
        Err(e) => fail(&format!("cannot fork: {e}")),
        Ok(ForkResult::Child) => {
            drop((relay, server));
            init::init(&config)
        }
        Ok(ForkResult::Parent { child }) => {
            // A zygote's instances have no jailer of their own: a jailer whose server is gone reaps all the
            // server's groups, unless another is already at it (see `reap_server`).
            let reap = config.cgroups.iter().filter_map(|d| d.parent()).map(Path::to_path_buf).collect();
            let ends = Ends::new(child, server, config.cgroups.clone(), reap);
            match relay {
                Some((net, port)) => net.relay_until_exit(port, ends),
                None => ends.wait(),
            }
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("stoke-jail: {message}");
    std::process::exit(125)
}

fn cstring(s: &OsStr) -> CString {
    CString::new(s.as_bytes()).unwrap_or_else(|_| fail("an argument contains a NUL byte"))
}
