//! PID 1 of the instance, and the process it forks: the runtime, or a zygote in a user namespace of its
//! own.

use std::convert::Infallible;
use std::ffi::{CString, OsStr};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Pid};

use super::super::assignment::Assignment;
use super::super::rootfs;
use super::super::seccomp::Filter;
use super::error::JailError;
use super::privileges;
use super::sys::{Ids, Sys};
use super::{cstring, fail, Generic, JailConfig, Then};

/// PID 1 of the instance: its own mount namespace, its cgroups, its host name and its root file system;
/// then, for a generic instance that waits, its assignment; then it forks the runtime (or the zygote) and
/// stays to reap.
pub(super) fn init(sys: &mut dyn Sys, config: &JailConfig) -> Result<Then, JailError> {
    // If the jailer dies (the server killed it, or died itself), the whole instance goes. (In the new PID
    // namespace the parent is outside, so getppid() reads 0 and cannot tell whether it already died; the
    // server kills the whole process group, which includes this process, so that window closes anyway.)
    sys.set_parent_death_signal(Signal::SIGKILL).map_err(JailError::TieToHelper)?;
    sys.unshare(CloneFlags::CLONE_NEWNS).map_err(JailError::MountNamespace)?;
    for dir in &config.cgroups {
        sys.join_cgroup(dir).map_err(|error| JailError::JoinCgroup { dir: dir.clone(), error })?;
    }
    sys.set_hostname(&config.root.hostname).map_err(JailError::Hostname)?;
    let steps = rootfs::plan(&config.root, sys.host());
    rootfs::apply(&steps, sys).map_err(JailError::RootFs)?;
    // A generic instance that waits: everything is set up; its function comes on stdin.
    let assignment = match config.generic {
        Generic::Await => Some(sys.read_assignment().map_err(JailError::Assignment)?),
        Generic::No | Generic::Prestart | Generic::Zygote { .. } => None,
    };
    match sys.fork().map_err(JailError::ForkRuntime)? {
        ForkResult::Child => match config.generic {
            Generic::Zygote { host_uid } => zygote(sys, config, host_uid),
            _ => runtime(sys, config, assignment.as_ref()).map(|never| match never {}),
        },
        ForkResult::Parent { child } => Ok(Then::Reap { runtime: child }),
    }
}

/// Reaps everything; leaves when the runtime does, the way it did (when PID 1 exits, the kernel kills
/// whatever is left in the namespace).
pub(super) fn reap_until(runtime: Pid) -> ! {
    loop {
        match nix::sys::wait::waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == runtime => std::process::exit(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == runtime => std::process::exit(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => fail(&JailError::LostRuntime(e.into())),
        }
    }
}

/// The runtime's last steps before it becomes the function's runtime: what `assignment` says when there
/// is one (with exactly its environment), what the command line says otherwise (with the helper's own).
fn runtime(sys: &mut dyn Sys, config: &JailConfig, assignment: Option<&Assignment>) -> Result<Infallible, JailError> {
    let (program, args, cwd) = match assignment {
        Some(a) => (&a.program, &a.args, &a.cwd),
        None => (&config.program, &config.args, &config.cwd),
    };
    privileges::drop_to_user(sys, config.root.uid, config.root.gid)?;
    privileges::confine(sys, Filter::Instance)?;
    sys.chdir(cwd).map_err(|error| JailError::Chdir { dir: cwd.clone(), error })?;
    let (path, argv) = command_line(program, args)?;
    let error = match assignment {
        Some(a) => {
            let env =
                a.env.iter().map(|(k, v)| cstring(OsStr::new(&format!("{k}={v}")))).collect::<Result<Vec<_>, _>>()?;
            // Its stdin was the assignment's pipe; a function reads /dev/null there, as everywhere else.
            sys.stdin_from_dev_null();
            sys.exec(&path, &argv, Some(&env))
        }
        None => sys.exec(&path, &argv, None),
    };
    Err(JailError::Exec { program: program.clone(), error })
}

/// The zygote's process, forked by PID 1 once the root is built: it enters a user namespace of its own,
/// which PID 1 — still the host's root — maps (root inside → `host_uid`, the sandbox user → itself), and
/// becomes root inside it. Its mount and PID namespaces stay the instance's (owned by the host's user
/// namespace); the instances it forks make theirs inside its user namespace.
fn zygote(sys: &mut dyn Sys, config: &JailConfig, host_uid: u32) -> Result<Then, JailError> {
    let (ready_r, ready_w) = sys.pipe().map_err(JailError::ZygotePipes)?;
    let (go_r, go_w) = sys.pipe().map_err(JailError::ZygotePipes)?;
    match sys.fork().map_err(JailError::ForkZygote)? {
        ForkResult::Child => {
            drop((ready_r, go_w));
            sys.set_parent_death_signal(Signal::SIGKILL).map_err(JailError::TieZygote)?;
            sys.unshare(CloneFlags::CLONE_NEWUSER).map_err(JailError::UserNamespace)?;
            sys.notify(&ready_w, b'u');
            if !sys.await_notice(&go_r) {
                return Err(JailError::NotMapped);
            }
            privileges::become_namespace_root(sys)?;
            // The handshake's ends stay open through the exec, as they always have (not close-on-exec).
            exec_zygote(sys, config).map(|never| match never {})
        }
        ForkResult::Parent { child } => {
            drop((ready_w, go_r));
            if !sys.await_notice(&ready_r) {
                return Err(JailError::NoUserNamespace);
            }
            let (uid, gid) = (config.root.uid, config.root.gid);
            sys.map_ids(child, Ids::User, &format!("0 {host_uid} 1\n{uid} {uid} 1\n"))
                .and_then(|()| sys.map_ids(child, Ids::Group, &format!("0 {host_uid} 1\n{gid} {gid} 1\n")))
                .map_err(JailError::MapUserNamespace)?;
            sys.notify(&go_w, b'g');
            Ok(Then::Wait { child })
        }
    }
}

/// A zygote's last steps: no new privileges, its filter, and stoke's Python zygote, which keeps the
/// capabilities it has in its user namespace (it is root there) to set up the instances it forks.
fn exec_zygote(sys: &mut dyn Sys, config: &JailConfig) -> Result<Infallible, JailError> {
    privileges::confine(sys, Filter::Zygote)?;
    let root = Path::new("/");
    sys.chdir(root).map_err(|error| JailError::Chdir { dir: root.into(), error })?;
    let (path, argv) = command_line(&config.program, &config.args)?;
    let error = sys.exec(&path, &argv, None);
    Err(JailError::Exec { program: config.program.clone(), error })
}

/// `program` and its `argv` (the program first, then `args`) for exec.
fn command_line(program: &Path, args: &[std::ffi::OsString]) -> Result<(CString, Vec<CString>), JailError> {
    let path = cstring(program.as_os_str())?;
    let mut argv = vec![path.clone()];
    for arg in args {
        argv.push(cstring(arg)?);
    }
    Ok((path, argv))
}
