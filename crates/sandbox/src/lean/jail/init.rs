//! PID 1 of the instance, and the processes it forks: the runtime, or a zygote in a user namespace of its
//! own.

use std::ffi::{CString, OsStr};
use std::io;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Gid, Pid, Uid};

use super::super::assignment::Assignment;
use super::super::{rootfs, seccomp};
use super::privileges::drop_privileges;
use super::sys::RealSys;
use super::watch::wait_and_exit;
use super::{cstring, fail, Generic, JailConfig};

/// PID 1 of the instance.
pub(super) fn init(config: &JailConfig) -> ! {
    // If the jailer dies (the server killed it, or died itself), the whole instance goes. (In the new PID
    // namespace the parent is outside, so getppid() reads 0 and cannot tell whether it already died; the
    // server kills the whole process group, which includes this process, so that window closes anyway.)
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        fail(&format!("cannot tie the instance to its helper: {e}"));
    }
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWNS) {
        fail(&format!("cannot create the instance's mount namespace: {e}"));
    }
    join_cgroups(&config.cgroups);
    if let Err(e) = nix::unistd::sethostname(&config.root.hostname) {
        fail(&format!("cannot set the host name: {e}"));
    }
    let steps = rootfs::plan(&config.root, &rootfs::RealHost);
    if let Err(e) = rootfs::apply(&steps, &mut RealSys) {
        fail(&format!("cannot build the instance's file system: {e}"));
    }
    // A generic instance that waits: everything is set up; its function comes on stdin.
    let assignment = match config.generic {
        Generic::Await => match Assignment::read_from(&mut io::stdin().lock()) {
            Ok(a) => Some(a),
            Err(e) => fail(&format!("no assignment: {e}")),
        },
        Generic::No | Generic::Prestart | Generic::Zygote { .. } => None,
    };
    // SAFETY: init is single-threaded.
    let runtime = match unsafe { nix::unistd::fork() } {
        Err(e) => fail(&format!("cannot fork the runtime: {e}")),
        Ok(ForkResult::Child) => match config.generic {
            Generic::Zygote { host_uid } => enter_zygote_namespace(config, host_uid),
            _ => exec_runtime(config, assignment.as_ref()),
        },
        Ok(ForkResult::Parent { child }) => child,
    };
    // Reap everything; leave when the runtime does.
    loop {
        match nix::sys::wait::waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == runtime => std::process::exit(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == runtime => std::process::exit(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => fail(&format!("lost the runtime: {e}")),
        }
    }
}

fn join_cgroups(dirs: &[PathBuf]) {
    for dir in dirs {
        if let Err(e) = std::fs::write(dir.join("cgroup.procs"), "0") {
            fail(&format!("cannot join cgroup {}: {e}", dir.display()));
        }
    }
}

/// The zygote's process, forked by PID 1 once the root is built: it enters a user namespace of its own,
/// which PID 1 — still the host's root — maps (root inside → `host_uid`, the sandbox user → itself), and
/// becomes root inside it. Its mount and PID namespaces stay the instance's (owned by the host's user
/// namespace); the instances it forks make theirs inside its user namespace.
fn enter_zygote_namespace(config: &JailConfig, host_uid: u32) -> ! {
    let (Ok((ready_r, ready_w)), Ok((go_r, go_w))) = (nix::unistd::pipe(), nix::unistd::pipe()) else {
        fail("cannot make the zygote's set-up pipes")
    };
    // SAFETY: this process is single-threaded.
    match unsafe { nix::unistd::fork() } {
        Err(e) => fail(&format!("cannot fork the zygote: {e}")),
        Ok(ForkResult::Child) => {
            drop((ready_r, go_w));
            if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
                fail(&format!("cannot tie the zygote to its parent: {e}"));
            }
            if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWUSER) {
                fail(&format!("cannot create the zygote's user namespace: {e}"));
            }
            let _ = nix::unistd::write(&ready_w, b"u");
            let mut byte = [0u8; 1];
            if !matches!(nix::unistd::read(&go_r, &mut byte), Ok(1)) {
                fail("the zygote's user namespace was not mapped");
            }
            let root = (Gid::from_raw(0), Uid::from_raw(0));
            let entered = nix::unistd::setgroups(&[])
                .and_then(|()| nix::unistd::setresgid(root.0, root.0, root.0))
                .and_then(|()| nix::unistd::setresuid(root.1, root.1, root.1));
            if let Err(e) = entered {
                fail(&format!("cannot become root of the zygote's user namespace: {e}"));
            }
            exec_zygote(config)
        }
        Ok(ForkResult::Parent { child }) => {
            drop((ready_w, go_r));
            let mut byte = [0u8; 1];
            if !matches!(nix::unistd::read(&ready_r, &mut byte), Ok(1)) {
                fail("the zygote did not make its user namespace");
            }
            let (uid, gid) = (config.root.uid, config.root.gid);
            let mapped = std::fs::write(format!("/proc/{child}/uid_map"), format!("0 {host_uid} 1\n{uid} {uid} 1\n"))
                .and_then(|()| {
                    std::fs::write(format!("/proc/{child}/gid_map"), format!("0 {host_uid} 1\n{gid} {gid} 1\n"))
                });
            if let Err(e) = mapped {
                fail(&format!("cannot map the zygote's user namespace: {e}"));
            }
            let _ = nix::unistd::write(&go_w, b"g");
            wait_and_exit(child)
        }
    }
}

/// A zygote's last steps: no new privileges, its filter, and stoke's Python zygote, which keeps the
/// capabilities it has in its user namespace (it is root there) to set up the instances it forks.
fn exec_zygote(config: &JailConfig) -> ! {
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        fail(&format!("cannot set no_new_privs: {e}"));
    }
    if let Err(e) = seccomp::install_program(seccomp::zygote_program()) {
        fail(&format!("cannot install the zygote's seccomp filter: {e}"));
    }
    if let Err(e) = nix::unistd::chdir("/") {
        fail(&format!("cannot enter /: {e}"));
    }
    let path = cstring(config.program.as_os_str());
    let mut argv = vec![path.clone()];
    argv.extend(config.args.iter().map(|a| cstring(a)));
    let e = nix::unistd::execv(&path, &argv).unwrap_err();
    fail(&format!("cannot run {}: {e}", config.program.display()))
}

/// The runtime's last steps before it becomes the function's runtime: what `assignment` says when there
/// is one (with exactly its environment), what the command line says otherwise (with the helper's own).
fn exec_runtime(config: &JailConfig, assignment: Option<&Assignment>) -> ! {
    let (program, args, cwd) = match assignment {
        Some(a) => (&a.program, &a.args, &a.cwd),
        None => (&config.program, &config.args, &config.cwd),
    };
    if let Err(e) = drop_privileges(config.root.uid, config.root.gid) {
        fail(&format!("cannot drop privileges: {e}"));
    }
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        fail(&format!("cannot set no_new_privs: {e}"));
    }
    if let Err(e) = seccomp::install() {
        fail(&format!("cannot install the seccomp filter: {e}"));
    }
    if let Err(e) = nix::unistd::chdir(cwd) {
        fail(&format!("cannot enter {}: {e}", cwd.display()));
    }
    let path = cstring(program.as_os_str());
    let mut argv = vec![path.clone()];
    argv.extend(args.iter().map(|a| cstring(a)));
    let e = match assignment {
        Some(a) => {
            let env: Vec<CString> = a.env.iter().map(|(k, v)| cstring(OsStr::new(&format!("{k}={v}")))).collect();
            // Its stdin was the assignment's pipe; a function reads /dev/null there, as everywhere else.
            if let Ok(null) = std::fs::File::open("/dev/null") {
                let _ = nix::unistd::dup2_stdin(&null);
            }
            nix::unistd::execve(&path, &argv, &env).unwrap_err()
        }
        None => nix::unistd::execv(&path, &argv).unwrap_err(),
    };
    fail(&format!("cannot run {}: {e}", program.display()))
}
