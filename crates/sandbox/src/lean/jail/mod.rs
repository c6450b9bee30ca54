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
//! 2. (`init`, PID 1 of the new namespace) enters a mount namespace of its own, joins the instance's
//!    cgroups, sets the host name, builds the root file system and pivots into it, forks the runtime, and
//!    reaps orphans until the runtime exits (when PID 1 exits, the kernel kills everything left in the
//!    namespace);
//! 3. (`runtime`) drops to the sandbox user with no capabilities, sets `no_new_privs`, installs the
//!    seccomp filter and executes the runtime program.
//!
//! The layout: this file has the entry point and the order of the jailer's steps; `config` the command
//! line, `net` the network of its own and the relay, `init` PID 1 and what it forks, `privileges` the last
//! privileged steps, `watch` what ends a jailer, `hold` the oci backend's holder. Every syscall of the
//! set-up goes through the `Sys` trait (`sys`), so the order of the steps is unit-tested with a recorder;
//! a failed step stops its process with the [`JailError`] that names it.

mod config;
mod error;
mod hold;
mod init;
mod net;
mod privileges;
#[cfg(test)]
mod recorder;
mod sys;
mod watch;

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid};

pub use super::seccomp::Filter;
pub use config::{ArgumentError, Generic, JailConfig};
pub use error::JailError;
pub use hold::hold_in_pid_namespace;
pub use net::RELAYED_RUNTIME_API_PORT;
pub use watch::SERVER_GONE;

use net::Relay;
use sys::{RealSys, Sys};
use watch::Ends;

/// The first argument that makes the `stoke` binary act as this helper.
pub const JAIL_ARG: &str = "__jail";

/// Entry point of the helper: never returns.
pub fn jail_main(args: impl IntoIterator<Item = OsString>) -> ! {
    let config = match JailConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => fail(&JailError::Arguments(e)),
    };
    match jail(&mut RealSys, &config) {
        Ok(then) => then.run(),
        Err(e) => fail(&e),
    }
}

/// What a process of the jail does once its steps are done. The runtime's and the zygote's processes never
/// get here: their last step is exec.
#[derive(Debug)]
enum Then {
    /// The jailer: wait for the instance (relaying its Runtime API for `network: none`) or the server.
    Watch { ends: Ends, relay: Option<Relay> },
    /// PID 1: reap orphans until the runtime exits.
    Reap { runtime: Pid },
    /// A zygote's parent (PID 1's child): exit the way the zygote does.
    Wait { child: Pid },
}

impl Then {
    fn run(self) -> ! {
        match self {
            Then::Watch { ends, relay: Some(relay) } => relay.run_until_exit(ends),
            Then::Watch { ends, relay: None } => ends.wait(),
            Then::Reap { runtime } => init::reap_until(runtime),
            Then::Wait { child } => watch::wait_and_exit(child),
        }
    }
}

/// The jailer's steps; its child goes on as PID 1 ([`init::init`]) and, forked again, as the runtime.
fn jail(sys: &mut dyn Sys, config: &JailConfig) -> Result<Then, JailError> {
    // network: none — a namespace of its own, entered before the fork so the instance is born in it.
    let network = match config.relay {
        Some(port) => Some((net::own_network(sys)?, port)),
        None => None,
    };
    // The mount namespace is init's alone: the jailer stays in the server's, where the cgroup file system
    // still is when it must reap (pivot_root moves every process of a namespace to the new root).
    let namespaces = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    sys.unshare(namespaces).map_err(JailError::Namespaces)?;
    let server = sys.watch_server().map_err(JailError::WatchServer)?;
    match sys.fork().map_err(JailError::Fork)? {
        ForkResult::Child => {
            drop((network, server));
            init::init(sys, config)
        }
        ForkResult::Parent { child } => {
            // A zygote's instances have no jailer of their own: a jailer whose server is gone reaps all the
            // server's groups, unless another is already at it (see `reap_server`).
            let reap = config.cgroups.iter().filter_map(|d| d.parent()).map(Path::to_path_buf).collect();
            let exited = sys.pidfd(child).map_err(JailError::WatchInstance)?;
            let ends = Ends { exited, server, child, own: config.cgroups.clone(), reap };
            let relay = match network {
                Some((net, port)) => Some(net.return_to_host(sys, port)?),
                None => None,
            };
            Ok(Then::Watch { ends, relay })
        }
    }
}

/// Ends a process of the jail that could not do its step.
fn fail(error: &JailError) -> ! {
    eprintln!("stoke-jail: {error}");
    std::process::exit(125)
}

fn cstring(s: &OsStr) -> Result<CString, JailError> {
    CString::new(s.as_bytes()).map_err(|_| JailError::NulByte)
}

#[cfg(test)]
mod tests {
    use super::recorder::Recorder;
    use super::*;
    use crate::lean::assignment::Assignment;
    use crate::lean::rootfs::{Bind, RootSpec, Tmp};

    fn config(generic: Generic, relay: Option<u16>) -> JailConfig {
        JailConfig {
            root: RootSpec {
                new_root: "/d/run/root/5".into(),
                binds: vec![Bind::read_only("/d/run/code/abc".into(), "/var/task".into())],
                tmp: Tmp::Memory { size_mb: 256 },
                uid: 993,
                gid: 990,
                hostname: "stoke".into(),
                layers: Vec::new(),
                image: None,
                attach: None,
                attach_root: None,
                devices: Vec::new(),
                shm: None,
            },
            cgroups: vec!["/cg/memory/stoke/s1/i5".into(), "/cg/pids/stoke/s1/i5".into()],
            cwd: "/var/task".into(),
            program: "/usr/bin/python3".into(),
            args: vec!["-u".into(), "/var/runtime/boot.py".into()],
            relay,
            generic,
        }
    }

    /// Runs the jail on `sys` and returns how the process it followed ended: an exec is an error here.
    fn exec_error(sys: &mut Recorder, config: &JailConfig) -> JailError {
        jail(sys, config).expect_err("the recorder's exec returns")
    }

    fn position(calls: &[String], prefix: &str) -> usize {
        calls.iter().position(|c| c.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in {calls:#?}"))
    }

    #[test]
    fn the_runtime_is_set_up_in_this_exact_order() {
        let mut sys = Recorder::default();
        let err = exec_error(&mut sys, &config(Generic::No, None));
        assert!(matches!(&err, JailError::Exec { program, .. } if program == Path::new("/usr/bin/python3")));
        assert_eq!(
            sys.summary(),
            [
                // The jailer.
                "unshare pid ipc uts",
                "watch server",
                "fork (child)",
                // PID 1.
                "pdeathsig SIGKILL",
                "unshare mnt",
                "join cgroup /cg/memory/stoke/s1/i5",
                "join cgroup /cg/pids/stoke/s1/i5",
                "hostname stoke",
                "fs…",
                "fork (child)",
                // The runtime.
                "setgroups []",
                "setresgid 990",
                "capbset drop 0..=40",
                "capbset drop 41 -> EINVAL",
                "ambient clear",
                "setresuid 993",
                "no_new_privs",
                "seccomp instance",
                "chdir /var/task",
                "exec /usr/bin/python3 -u /var/runtime/boot.py",
            ]
        );
    }

    #[test]
    fn privileges_go_after_the_mounts_and_before_the_exec() {
        let mut sys = Recorder::default();
        exec_error(&mut sys, &config(Generic::Prestart, None));
        let calls = &sys.calls;
        let pivot = position(calls, "fs pivot_root");
        let last_mount = calls.iter().rposition(|c| c.starts_with("fs ")).unwrap();
        assert!(pivot < last_mount, "the root is sealed read-only after the pivot");
        let (groups, gid, uid) =
            (position(calls, "setgroups"), position(calls, "setresgid"), position(calls, "setresuid"));
        let (nnp, filter, exec) =
            (position(calls, "no_new_privs"), position(calls, "seccomp"), position(calls, "exec"));
        assert!(last_mount < groups && groups < gid && gid < uid && uid < nnp && nnp < filter && filter < exec);
        assert!(position(calls, "capbset") > gid && position(calls, "ambient") < uid);
        assert_eq!(exec, calls.len() - 1, "exec is the last step");
        // PID 1 is tied to the jailer before it does anything else, and in its own mount namespace before
        // it mounts anything.
        let init = position(calls, "fork") + 1;
        assert_eq!(calls[init], "pdeathsig SIGKILL");
        assert!(position(calls, "unshare mnt") < position(calls, "fs "));
    }

    #[test]
    fn a_network_of_its_own_is_made_before_the_fork_and_left_after() {
        let mut sys = Recorder::default().parent_first(&[42]);
        let Ok(Then::Watch { ends, relay: Some(_) }) = jail(&mut sys, &config(Generic::No, Some(40123))) else {
            panic!("the jailer watches and relays: {:?}", sys.calls)
        };
        assert_eq!(
            sys.calls,
            [
                "open netns",
                "unshare net",
                "loopback up",
                "listen 127.0.0.1:9001",
                "unshare pid ipc uts",
                "watch server",
                "fork (parent of 42)",
                "pidfd 42",
                "setns net",
            ]
        );
        assert_eq!(ends.child, Pid::from_raw(42));
        assert_eq!(ends.reap, [Path::new("/cg/memory/stoke/s1"), Path::new("/cg/pids/stoke/s1")]);

        // Without one, the jailer keeps the host's network and has nothing to relay.
        let mut sys = Recorder::default().parent_first(&[42]);
        let then = jail(&mut sys, &config(Generic::No, None)).unwrap();
        assert!(matches!(then, Then::Watch { relay: None, .. }));
        assert_eq!(sys.calls, ["unshare pid ipc uts", "watch server", "fork (parent of 42)", "pidfd 42"]);

        // The instance is born in it: PID 1 makes no network namespace of its own.
        let mut sys = Recorder::default();
        exec_error(&mut sys, &config(Generic::No, Some(40123)));
        assert_eq!(sys.calls.iter().filter(|c| c.starts_with("unshare net")).count(), 1, "{:#?}", sys.calls);
        assert!(position(&sys.calls, "unshare net") < position(&sys.calls, "fork"));
        assert!(!sys.calls.iter().any(|c| c.starts_with("setns")), "only the jailer returns to the host's");
    }

    /// A GPU plan's device nodes and its MPS daemon's shared memory, as the jailer carries them out: each node
    /// bound from the host into the new root's `/dev` before the pivot, nothing of another GPU.
    #[test]
    fn an_instance_with_a_gpu_gets_its_nodes_bound_before_the_pivot() {
        let mut cfg = config(Generic::No, None);
        cfg.root.devices = vec!["/dev/nvidia1".into(), "/dev/nvidiactl".into(), "/dev/nvidia-uvm".into()];
        cfg.root.shm = Some("/d/run/mps/1/shm".into());
        let mut sys = Recorder::default();
        exec_error(&mut sys, &cfg);
        let calls = &sys.calls;
        let pivot = position(calls, "fs pivot_root");
        for node in ["nvidia1", "nvidiactl", "nvidia-uvm"] {
            let bind = position(calls, &format!("fs mount /dev/{node} on /d/run/root/5/dev/{node}"));
            assert!(bind < pivot, "{node} is bound before the pivot");
        }
        assert!(position(calls, "fs mount /d/run/mps/1/shm on /d/run/root/5/dev/shm") < pivot);
        assert!(!calls.iter().any(|c| c.contains("nvidia0") || c.contains("nvidia2")), "no other GPU: {calls:#?}");
        let plain = {
            let mut sys = Recorder::default();
            exec_error(&mut sys, &config(Generic::No, None));
            sys.calls
        };
        assert!(!plain.iter().any(|c| c.contains("nvidia") || c.contains("/dev/shm")), "no GPU, no GPU nodes");
    }

    #[test]
    fn pid_1_reaps_the_runtime_it_forked() {
        let mut sys = Recorder::default();
        sys.forks = [ForkResult::Child, ForkResult::Parent { child: Pid::from_raw(2) }].into();
        let then = jail(&mut sys, &config(Generic::No, None)).unwrap();
        assert!(matches!(then, Then::Reap { runtime } if runtime == Pid::from_raw(2)));
        assert_eq!(sys.calls.last().unwrap(), "fork (parent of 2)");
        assert!(!sys.calls.iter().any(|c| c.starts_with("set")), "PID 1 keeps its privileges");
    }

    #[test]
    fn a_waiting_instance_runs_what_its_assignment_says_with_exactly_its_environment() {
        let mut sys = Recorder::default();
        sys.assignment = Some(Assignment {
            program: "/var/task/bootstrap".into(),
            args: vec!["--handler".into()],
            cwd: "/var/task/src".into(),
            env: vec![("A".into(), "1".into()), ("B".into(), "x y".into())],
        });
        let err = exec_error(&mut sys, &config(Generic::Await, None));
        assert!(matches!(&err, JailError::Exec { program, .. } if program == Path::new("/var/task/bootstrap")));
        let summary = sys.summary();
        let tail: Vec<&str> = summary.iter().rev().take(4).rev().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "seccomp instance",
                "chdir /var/task/src",
                "stdin /dev/null",
                "exec /var/task/bootstrap --handler [env A=1 B=x y]"
            ]
        );
        // The assignment is read once the root is built, before the runtime is forked.
        let read = position(&summary, "read assignment");
        assert_eq!((&summary[read - 1][..], &summary[read + 1][..]), ("fs…", "fork (child)"));

        // The pipe closes without one: no runtime.
        let mut sys = Recorder::default();
        let err = jail(&mut sys, &config(Generic::Await, None)).unwrap_err();
        assert!(matches!(err, JailError::Assignment(_)), "{err:?}");
        assert_eq!(sys.calls.last().unwrap(), "read assignment");
    }

    #[test]
    fn a_zygote_becomes_root_of_a_user_namespace_its_parent_maps() {
        let zygote = config(Generic::Zygote { host_uid: 66529 }, None);
        // The zygote's side.
        let mut sys = Recorder::default();
        let err = exec_error(&mut sys, &zygote);
        assert!(matches!(err, JailError::Exec { .. }), "{err:?}");
        let summary = sys.summary();
        let after_fs: Vec<&str> = summary.iter().skip(position(&summary, "fs…") + 1).map(String::as_str).collect();
        assert_eq!(
            after_fs,
            [
                "fork (child)",
                "pipe",
                "pipe",
                "fork (child)",
                "pdeathsig SIGKILL",
                "unshare user",
                "notify u",
                "await notice",
                "setgroups []",
                "setresgid 0",
                "setresuid 0",
                "no_new_privs",
                "seccomp zygote",
                "chdir /",
                "exec /usr/bin/python3 -u /var/runtime/boot.py",
            ]
        );
        // Its parent's side: it maps the namespace, then lets the zygote go on.
        let mut sys = Recorder::default();
        sys.forks = [ForkResult::Child, ForkResult::Child, ForkResult::Parent { child: Pid::from_raw(3) }].into();
        let then = jail(&mut sys, &zygote).unwrap();
        assert!(matches!(then, Then::Wait { child } if child == Pid::from_raw(3)));
        let summary = sys.summary();
        let tail: Vec<&str> = summary.iter().skip(position(&summary, "pipe")).map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "pipe",
                "pipe",
                "fork (parent of 3)",
                "await notice",
                r#"uid_map 3 "0 66529 1\n993 993 1\n""#,
                r#"gid_map 3 "0 66529 1\n990 990 1\n""#,
                "notify g",
            ]
        );

        // A zygote whose namespace was not mapped goes no further.
        let mut sys = Recorder::failing("await");
        assert!(matches!(jail(&mut sys, &zygote), Err(JailError::NotMapped)));
        assert_eq!(sys.calls.last().unwrap(), "await notice -> EPERM");
        let mut sys = Recorder::failing("await");
        sys.forks = [ForkResult::Child, ForkResult::Child, ForkResult::Parent { child: Pid::from_raw(3) }].into();
        assert!(matches!(jail(&mut sys, &zygote), Err(JailError::NoUserNamespace)));
        assert!(!sys.calls.iter().any(|c| c.contains("_map")));
    }

    /// Runs the jail following the runtime's side with `prefix` failing; returns its error and the calls.
    fn failing(prefix: &'static str, config: &JailConfig) -> (JailError, Vec<String>) {
        let mut sys = Recorder::failing(prefix);
        let err = exec_error(&mut sys, config);
        (err, sys.calls)
    }

    #[test]
    fn a_failed_step_stops_its_process_and_says_which_it_was() {
        let plain = config(Generic::No, None);
        type Case = (&'static str, fn(&JailError) -> bool);
        let cases: [Case; 16] = [
            ("open netns", |e| matches!(e, JailError::OwnNetwork(_))),
            ("loopback", |e| matches!(e, JailError::OwnNetwork(_))),
            ("unshare pid", |e| matches!(e, JailError::Namespaces(_))),
            ("watch server", |e| matches!(e, JailError::WatchServer(_))),
            ("fork", |e| matches!(e, JailError::Fork(_))),
            ("pdeathsig", |e| matches!(e, JailError::TieToHelper(_))),
            ("unshare mnt", |e| matches!(e, JailError::MountNamespace(_))),
            (
                "join cgroup /cg/pids",
                |e| matches!(e, JailError::JoinCgroup { dir, .. } if dir.ends_with("pids/stoke/s1/i5")),
            ),
            ("hostname", |e| matches!(e, JailError::Hostname(_))),
            (
                "fs mkdir /d/run/root/5/var/task",
                |e| matches!(e, JailError::RootFs(m) if m.starts_with("mkdir /d/run/root/5/var/task")),
            ),
            ("setgroups", |e| matches!(e, JailError::ClearGroups(_))),
            ("setresgid", |e| matches!(e, JailError::SetGid { gid: 990, .. })),
            ("setresuid", |e| matches!(e, JailError::SetUid { uid: 993, .. })),
            ("no_new_privs", |e| matches!(e, JailError::NoNewPrivs(_))),
            ("seccomp", |e| matches!(e, JailError::Seccomp { filter: Filter::Instance, .. })),
            ("chdir", |e| matches!(e, JailError::Chdir { dir, .. } if dir == Path::new("/var/task"))),
        ];
        for (prefix, expected) in cases {
            let (err, calls) = failing(prefix, &config(Generic::No, Some(40123)));
            assert!(expected(&err), "{prefix}: {err:?}");
            let failed = calls.iter().position(|c| c.ends_with(" -> EPERM")).expect("a failed step");
            assert!(calls[failed].starts_with(prefix), "{prefix}: {calls:#?}");
            assert_eq!(failed, calls.len() - 1, "{prefix}: nothing after the failed step: {calls:#?}");
        }
        // The exec itself.
        let (err, calls) = failing("exec", &plain);
        assert!(matches!(err, JailError::Exec { .. }));
        assert!(calls.last().unwrap().ends_with(" -> EPERM"));
        // An argument the kernel could not take: found before exec, after the filter.
        let mut nul = plain.clone();
        nul.args.push(OsString::from("a\0b"));
        let mut sys = Recorder::default();
        assert!(matches!(exec_error(&mut sys, &nul), JailError::NulByte));
        assert_eq!(sys.calls.last().unwrap(), "chdir /var/task");
        // The message names the step.
        let (err, _) = failing("hostname", &plain);
        assert_eq!(err.to_string(), "cannot set the host name: Operation not permitted (os error 1)");
    }
}
