//! A [`Sys`] that makes no syscalls: it writes each call down as a line, in order, and fails the ones a
//! test chooses, so the jail's tests can check the exact order of its steps, and what a failure stops.

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::{ForkResult, Pid};

use super::super::assignment::Assignment;
use super::super::rootfs::{self, HostEntry, HostView, Step};
use super::super::seccomp::Filter;
use super::sys::{Ids, Sys};

/// The recording `Sys`.
#[derive(Debug)]
pub(super) struct Recorder {
    /// Every call so far; a failed one ends in ` -> EPERM` (or ` -> EINVAL`).
    pub calls: Vec<String>,
    /// Calls whose line starts with this fail with `EPERM`.
    fail_on: Option<&'static str>,
    /// The side each fork returns, in order; the child once none are left.
    pub forks: VecDeque<ForkResult>,
    /// What a generic instance reads on stdin; nothing (the pipe closed) when `None`.
    pub assignment: Option<Assignment>,
    /// The last capability the kernel knows (40 since Linux 5.9).
    pub last_cap: u32,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder { calls: Vec::new(), fail_on: None, forks: VecDeque::new(), assignment: None, last_cap: 40 }
    }
}

impl Recorder {
    /// A recorder on which every call whose line starts with `prefix` fails.
    pub fn failing(prefix: &'static str) -> Recorder {
        Recorder { fail_on: Some(prefix), ..Recorder::default() }
    }

    /// Forks return the parent's side (of a child with this pid) for the first `n`, the child's after.
    pub fn parent_first(mut self, pids: &[i32]) -> Recorder {
        self.forks = pids.iter().map(|&p| ForkResult::Parent { child: Pid::from_raw(p) }).collect();
        self
    }

    fn note(&mut self, call: String) -> io::Result<()> {
        if self.fail_on.is_some_and(|prefix| call.starts_with(prefix)) {
            self.calls.push(format!("{call} -> EPERM"));
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        self.calls.push(call);
        Ok(())
    }

    /// The calls, with each run of root file system steps shown as one `fs…` line, and each run of dropped
    /// capabilities as one `capbset drop A..=B` line.
    pub fn summary(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for call in &self.calls {
            if call.starts_with("fs ") {
                if out.last().is_none_or(|l| l != "fs…") {
                    out.push("fs…".into());
                }
                continue;
            }
            if let Some(cap) = call.strip_prefix("capbset drop ").filter(|c| c.parse::<u32>().is_ok()) {
                let run = out.last_mut().filter(|l| l.starts_with("capbset drop ") && !l.contains(" -> "));
                if let Some(run) = run {
                    let first = run["capbset drop ".len()..].split("..=").next().unwrap_or_default().to_string();
                    *run = format!("capbset drop {first}..={cap}");
                    continue;
                }
            }
            out.push(call.clone());
        }
        out
    }

    /// A descriptor to hand out where the real call would make one.
    fn fd() -> OwnedFd {
        std::fs::File::open("/dev/null").expect("/dev/null").into()
    }
}

/// Names `flags`' namespaces as `/proc/<pid>/ns` does.
fn namespaces(flags: CloneFlags) -> String {
    let names = [
        (CloneFlags::CLONE_NEWNS, "mnt"),
        (CloneFlags::CLONE_NEWPID, "pid"),
        (CloneFlags::CLONE_NEWIPC, "ipc"),
        (CloneFlags::CLONE_NEWUTS, "uts"),
        (CloneFlags::CLONE_NEWNET, "net"),
        (CloneFlags::CLONE_NEWUSER, "user"),
        (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
    ];
    let named: Vec<&str> = names.iter().filter(|(f, _)| flags.contains(*f)).map(|(_, n)| *n).collect();
    named.join(" ")
}

/// A host with nothing on it: the plan keeps only the steps it takes whatever the host has.
struct NoHost;

impl HostView for NoHost {
    fn entry(&self, _: &Path) -> HostEntry {
        HostEntry::Missing
    }
    fn list(&self, _: &Path) -> Vec<String> {
        Vec::new()
    }
}

impl rootfs::Sys for Recorder {
    fn mount(&mut self, step: &Step) -> io::Result<()> {
        let Step::Mount { source, target, fstype, .. } = step else { unreachable!("only mounts are mounted") };
        let source = source.as_ref().map_or("(remount)".into(), |s| s.display().to_string());
        let fstype = fstype.map(|t| format!(" ({t})")).unwrap_or_default();
        self.note(format!("fs mount {source} on {}{fstype}", target.display()))
    }
    fn mkdir_all(&mut self, path: &Path) -> io::Result<()> {
        self.note(format!("fs mkdir {}", path.display()))
    }
    fn touch(&mut self, path: &Path) -> io::Result<()> {
        self.note(format!("fs touch {}", path.display()))
    }
    fn write_file(&mut self, path: &Path, _: &[u8]) -> io::Result<()> {
        self.note(format!("fs write {}", path.display()))
    }
    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        self.note(format!("fs symlink {} -> {}", link.display(), target.display()))
    }
    fn pivot_root(&mut self, new_root: &Path, _: &Path) -> io::Result<()> {
        self.note(format!("fs pivot_root {}", new_root.display()))
    }
    fn detach(&mut self, path: &Path) -> io::Result<()> {
        self.note(format!("fs detach {}", path.display()))
    }
    fn rmdir(&mut self, path: &Path) -> io::Result<()> {
        self.note(format!("fs rmdir {}", path.display()))
    }
    fn exists(&mut self, _: &Path) -> bool {
        true
    }
}

impl Sys for Recorder {
    fn host(&self) -> &dyn HostView {
        &NoHost
    }

    fn fork(&mut self) -> io::Result<ForkResult> {
        let side = self.forks.pop_front().unwrap_or(ForkResult::Child);
        self.note(match side {
            ForkResult::Child => "fork (child)".into(),
            ForkResult::Parent { child } => format!("fork (parent of {child})"),
        })?;
        Ok(side)
    }
    fn pidfd(&mut self, pid: Pid) -> io::Result<OwnedFd> {
        self.note(format!("pidfd {pid}")).map(|()| Recorder::fd())
    }
    fn watch_server(&mut self) -> io::Result<OwnedFd> {
        self.note("watch server".into()).map(|()| Recorder::fd())
    }
    fn set_parent_death_signal(&mut self, signal: Signal) -> io::Result<()> {
        self.note(format!("pdeathsig {}", signal.as_str()))
    }
    fn pipe(&mut self) -> io::Result<(OwnedFd, OwnedFd)> {
        self.note("pipe".into()).map(|()| (Recorder::fd(), Recorder::fd()))
    }
    fn notify(&mut self, _: &OwnedFd, byte: u8) {
        let _ = self.note(format!("notify {}", char::from(byte)));
    }
    fn await_notice(&mut self, _: &OwnedFd) -> bool {
        self.note("await notice".into()).is_ok()
    }
    fn unshare(&mut self, flags: CloneFlags) -> io::Result<()> {
        self.note(format!("unshare {}", namespaces(flags)))
    }
    fn setns(&mut self, _: &OwnedFd, flags: CloneFlags) -> io::Result<()> {
        self.note(format!("setns {}", namespaces(flags)))
    }
    fn open_network_namespace(&mut self) -> io::Result<OwnedFd> {
        self.note("open netns".into()).map(|()| Recorder::fd())
    }
    fn loopback_up(&mut self) -> io::Result<()> {
        self.note("loopback up".into())
    }
    fn listen_loopback(&mut self, port: u16) -> io::Result<OwnedFd> {
        self.note(format!("listen 127.0.0.1:{port}")).map(|()| Recorder::fd())
    }
    fn join_cgroup(&mut self, dir: &Path) -> io::Result<()> {
        self.note(format!("join cgroup {}", dir.display()))
    }
    fn map_ids(&mut self, pid: Pid, ids: Ids, map: &str) -> io::Result<()> {
        let file = if ids == Ids::User { "uid_map" } else { "gid_map" };
        self.note(format!("{file} {pid} {map:?}"))
    }
    fn set_hostname(&mut self, name: &str) -> io::Result<()> {
        self.note(format!("hostname {name}"))
    }
    fn read_assignment(&mut self) -> Result<Assignment, String> {
        self.note("read assignment".into()).map_err(|e| e.to_string())?;
        self.assignment.take().ok_or_else(|| "the server closed the assignment pipe before giving one".into())
    }
    fn clear_groups(&mut self) -> io::Result<()> {
        self.note("setgroups []".into())
    }
    fn set_gid(&mut self, gid: u32) -> io::Result<()> {
        self.note(format!("setresgid {gid}"))
    }
    fn set_uid(&mut self, uid: u32) -> io::Result<()> {
        self.note(format!("setresuid {uid}"))
    }
    fn drop_bounding_capability(&mut self, cap: u32) -> io::Result<()> {
        if cap > self.last_cap {
            self.calls.push(format!("capbset drop {cap} -> EINVAL"));
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.note(format!("capbset drop {cap}"))
    }
    fn clear_ambient_capabilities(&mut self) {
        let _ = self.note("ambient clear".into());
    }
    fn set_no_new_privs(&mut self) -> io::Result<()> {
        self.note("no_new_privs".into())
    }
    fn install_seccomp(&mut self, filter: Filter) -> io::Result<()> {
        self.note(format!("seccomp {}", if filter == Filter::Zygote { "zygote" } else { "instance" }))
    }
    fn chdir(&mut self, dir: &Path) -> io::Result<()> {
        self.note(format!("chdir {}", dir.display()))
    }
    fn stdin_from_dev_null(&mut self) {
        let _ = self.note("stdin /dev/null".into());
    }
    fn exec(&mut self, program: &CStr, argv: &[CString], env: Option<&[CString]>) -> io::Error {
        let mut call = format!("exec {}", program.to_string_lossy());
        for arg in argv.iter().skip(1) {
            call.push(' ');
            call.push_str(&arg.to_string_lossy());
        }
        if let Some(env) = env {
            let env: Vec<_> = env.iter().map(|e| e.to_string_lossy()).collect();
            call.push_str(&format!(" [env {}]", env.join(" ")));
        }
        match self.note(call) {
            // The real exec returns only when it failed; this one always returns.
            Ok(()) => io::Error::other("the recorder does not exec"),
            Err(e) => e,
        }
    }
}
