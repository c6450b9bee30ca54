//! The helper that turns a plain child process into a lean instance — the only code in stoke that runs
//! privileged on an instance's behalf. The server starts it as `stoke __jail <options> -- <program> <args>`
//! with the function's environment; it then:
//!
//! 1. (`jailer`, in the host's PID namespace) unshares mount, PID, IPC and UTS namespaces and forks;
//!    it waits for its child and exits the way the runtime did, so the server sees the runtime's status;
//! 2. (`init`, PID 1 of the new namespace) joins the instance's cgroups, sets the host name, builds the
//!    root file system and pivots into it, forks the runtime, and reaps orphans until the runtime exits
//!    (when PID 1 exits, the kernel kills everything left in the namespace);
//! 3. (`runtime`) drops to the sandbox user with no capabilities, sets `no_new_privs`, installs the
//!    seccomp filter and executes the runtime program.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Gid, Pid, Uid};

use super::rootfs::{self, Bind, RootSpec, Step};
use super::seccomp;

/// The first argument that makes the `stoke` binary act as this helper.
pub const JAIL_ARG: &str = "__jail";

/// Everything the helper needs, passed on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailConfig {
    pub root: RootSpec,
    /// Directories whose `cgroup.procs` the instance joins.
    pub cgroups: Vec<PathBuf>,
    pub cwd: PathBuf,
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl JailConfig {
    /// The helper's arguments (after [`JAIL_ARG`]).
    pub fn to_args(&self) -> Vec<OsString> {
        let r = &self.root;
        let mut a: Vec<OsString> = vec![
            "--new-root".into(),
            r.new_root.clone().into(),
            "--tmp-mb".into(),
            r.tmp_mb.to_string().into(),
            "--uid".into(),
            r.uid.to_string().into(),
            "--gid".into(),
            r.gid.to_string().into(),
            "--hostname".into(),
            r.hostname.clone().into(),
            "--cwd".into(),
            self.cwd.clone().into(),
        ];
        for b in &r.binds {
            let flag = if b.writable { "--bind-rw" } else { "--bind" };
            a.extend([flag.into(), b.source.clone().into(), b.target.clone().into()]);
        }
        for c in &self.cgroups {
            a.extend(["--cgroup".into(), c.clone().into()]);
        }
        a.push("--".into());
        a.push(self.program.clone().into());
        a.extend(self.args.iter().cloned());
        a
    }

    /// Parses [`JailConfig::to_args`]'s output; the error names the bad option.
    pub fn from_args(args: impl IntoIterator<Item = OsString>) -> Result<Self, String> {
        let mut it = args.into_iter();
        let mut root = RootSpec {
            new_root: PathBuf::new(),
            binds: Vec::new(),
            tmp_mb: 512,
            uid: 0,
            gid: 0,
            hostname: "stoke".into(),
        };
        let (mut cgroups, mut cwd) = (Vec::new(), PathBuf::from("/"));
        let value = |it: &mut dyn Iterator<Item = OsString>, key: &str| {
            it.next().ok_or_else(|| format!("option {key} needs a value"))
        };
        let number = |v: OsString, key: &str| -> Result<u32, String> {
            v.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| format!("option {key} needs a number"))
        };
        loop {
            let Some(key) = it.next() else { return Err("no program to run (expected `-- <program> [args]`)".into()) };
            let key = key.to_string_lossy().into_owned();
            match key.as_str() {
                "--new-root" => root.new_root = value(&mut it, &key)?.into(),
                "--tmp-mb" => root.tmp_mb = number(value(&mut it, &key)?, &key)?,
                "--uid" => root.uid = number(value(&mut it, &key)?, &key)?,
                "--gid" => root.gid = number(value(&mut it, &key)?, &key)?,
                "--hostname" => root.hostname = value(&mut it, &key)?.to_string_lossy().into_owned(),
                "--cwd" => cwd = value(&mut it, &key)?.into(),
                "--cgroup" => cgroups.push(value(&mut it, &key)?.into()),
                "--bind" | "--bind-rw" => {
                    let source = value(&mut it, &key)?.into();
                    let target = value(&mut it, &key)?.into();
                    root.binds.push(Bind { source, target, writable: key == "--bind-rw" });
                }
                "--" => break,
                other => return Err(format!("unknown option {other}")),
            }
        }
        let program: PathBuf = it.next().ok_or("no program after --")?.into();
        if root.new_root.as_os_str().is_empty() {
            return Err("--new-root is required".into());
        }
        if root.uid == 0 || root.gid == 0 {
            return Err("--uid and --gid must name an unprivileged user (not 0)".into());
        }
        Ok(JailConfig { root, cgroups, cwd, program, args: it.collect() })
    }
}

/// Entry point of the helper: never returns.
pub fn jail_main(args: impl IntoIterator<Item = OsString>) -> ! {
    let config = match JailConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => fail(&format!("bad arguments: {e}")),
    };
    let namespaces =
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    if let Err(e) = nix::sched::unshare(namespaces) {
        fail(&format!("cannot create namespaces: {e}"));
    }
    // SAFETY: the helper is single-threaded (it was just executed and started no threads), so the child
    // may do anything after fork.
    match unsafe { nix::unistd::fork() } {
        Err(e) => fail(&format!("cannot fork: {e}")),
        Ok(ForkResult::Child) => init(&config),
        Ok(ForkResult::Parent { child }) => relay(child),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("stoke-jail: {message}");
    std::process::exit(125)
}

/// Waits for `child` and ends the same way.
fn relay(child: Pid) -> ! {
    loop {
        match nix::sys::wait::waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => exit_like(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => exit_like(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => fail(&format!("lost the instance: {e}")),
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

/// PID 1 of the instance.
fn init(config: &JailConfig) -> ! {
    // If the jailer dies (the server killed it, or died itself), the whole instance goes. (In the new PID
    // namespace the parent is outside, so getppid() reads 0 and cannot tell whether it already died; the
    // server kills the whole process group, which includes this process, so that window closes anyway.)
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        fail(&format!("cannot tie the instance to its helper: {e}"));
    }
    for dir in &config.cgroups {
        if let Err(e) = std::fs::write(dir.join("cgroup.procs"), "0") {
            fail(&format!("cannot join cgroup {}: {e}", dir.display()));
        }
    }
    if let Err(e) = nix::unistd::sethostname(&config.root.hostname) {
        fail(&format!("cannot set the host name: {e}"));
    }
    let steps = rootfs::plan(&config.root, &rootfs::RealHost);
    if let Err(e) = rootfs::apply(&steps, &mut RealSys) {
        fail(&format!("cannot build the instance's file system: {e}"));
    }
    // SAFETY: init is single-threaded.
    let runtime = match unsafe { nix::unistd::fork() } {
        Err(e) => fail(&format!("cannot fork the runtime: {e}")),
        Ok(ForkResult::Child) => exec_runtime(config),
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

/// The runtime's last steps before it becomes the function's runtime.
fn exec_runtime(config: &JailConfig) -> ! {
    if let Err(e) = drop_privileges(config.root.uid, config.root.gid) {
        fail(&format!("cannot drop privileges: {e}"));
    }
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        fail(&format!("cannot set no_new_privs: {e}"));
    }
    if let Err(e) = seccomp::install() {
        fail(&format!("cannot install the seccomp filter: {e}"));
    }
    if let Err(e) = nix::unistd::chdir(&config.cwd) {
        fail(&format!("cannot enter {}: {e}", config.cwd.display()));
    }
    let program = cstring(config.program.as_os_str());
    let mut argv = vec![program.clone()];
    argv.extend(config.args.iter().map(|a| cstring(a)));
    let e = nix::unistd::execv(&program, &argv).unwrap_err();
    fail(&format!("cannot run {}: {e}", config.program.display()))
}

fn cstring(s: &OsStr) -> CString {
    CString::new(s.as_bytes()).unwrap_or_else(|_| fail("an argument contains a NUL byte"))
}

/// To the sandbox user, with empty capability sets (bounding and ambient included) and no groups.
fn drop_privileges(uid: u32, gid: u32) -> io::Result<()> {
    nix::unistd::setgroups(&[])?;
    let gid = Gid::from_raw(gid);
    nix::unistd::setresgid(gid, gid, gid)?;
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory of ours.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                break; // past the last capability this kernel knows
            }
            return Err(err);
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0);
    }
    let uid = Uid::from_raw(uid);
    // Leaving uid 0 for good clears the permitted and effective sets.
    nix::unistd::setresuid(uid, uid, uid)?;
    Ok(())
}

/// The real syscalls behind [`rootfs::Sys`].
struct RealSys;

fn ms_flags(f: &rootfs::MountFlags) -> MsFlags {
    let mut m = MsFlags::empty();
    for (on, flag) in [
        (f.bind, MsFlags::MS_BIND),
        (f.recursive, MsFlags::MS_REC),
        (f.remount, MsFlags::MS_REMOUNT),
        (f.readonly, MsFlags::MS_RDONLY),
        (f.nosuid, MsFlags::MS_NOSUID),
        (f.nodev, MsFlags::MS_NODEV),
        (f.noexec, MsFlags::MS_NOEXEC),
        (f.private, MsFlags::MS_PRIVATE),
    ] {
        if on {
            m |= flag;
        }
    }
    m
}

impl rootfs::Sys for RealSys {
    fn mount(&mut self, step: &Step) -> io::Result<()> {
        let Step::Mount { source, target, fstype, flags, data } = step else { return Ok(()) };
        nix::mount::mount(source.as_deref(), target.as_path(), *fstype, ms_flags(flags), data.as_deref())?;
        Ok(())
    }
    fn mkdir_all(&mut self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn touch(&mut self, path: &Path) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map(drop)
    }
    fn write_file(&mut self, path: &Path, contents: &[u8]) -> io::Result<()> {
        std::fs::write(path, contents)
    }
    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)?;
        nix::unistd::chdir("/")?;
        Ok(())
    }
    fn detach(&mut self, path: &Path) -> io::Result<()> {
        nix::mount::umount2(path, MntFlags::MNT_DETACH)?;
        Ok(())
    }
    fn rmdir(&mut self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
    fn exists(&mut self, path: &Path) -> bool {
        path.exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> JailConfig {
        JailConfig {
            root: RootSpec {
                new_root: "/d/run/root".into(),
                binds: vec![
                    Bind::read_only("/d/run/code/abc".into(), "/var/task".into()),
                    Bind::read_only("/opt/py 3".into(), "/opt/py 3".into()),
                    Bind { source: "/d/run/scratch/1".into(), target: "/var/stoke-scratch".into(), writable: true },
                ],
                tmp_mb: 256,
                uid: 993,
                gid: 990,
                hostname: "stoke".into(),
            },
            cgroups: vec!["/sys/fs/cgroup/memory/stoke/s1/i2".into()],
            cwd: "/var/task".into(),
            program: "/usr/bin/python3".into(),
            args: vec!["-u".into(), "--".into(), "/var/runtime/boot.py".into()],
        }
    }

    #[test]
    fn the_command_line_round_trips() {
        let c = config();
        assert_eq!(JailConfig::from_args(c.to_args()).unwrap(), c);
    }

    #[test]
    fn bad_command_lines_are_refused_with_the_reason() {
        let err = |args: &[&str]| JailConfig::from_args(args.iter().map(OsString::from)).unwrap_err();
        assert!(err(&["--bogus", "x", "--", "/bin/true"]).contains("unknown option --bogus"));
        assert!(err(&["--uid"]).contains("--uid needs a value"));
        assert!(err(&["--uid", "x", "--", "/p"]).contains("--uid needs a number"));
        assert!(err(&["--new-root", "/r"]).contains("no program"));
        assert!(err(&["--uid", "5", "--gid", "5", "--", "/p"]).contains("--new-root is required"));
        assert!(err(&["--new-root", "/r", "--", "/p"]).contains("unprivileged"));
    }

    #[test]
    fn mount_flags_translate() {
        let f = rootfs::MountFlags { bind: true, remount: true, readonly: true, ..Default::default() };
        assert_eq!(ms_flags(&f), MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY);
    }
}
