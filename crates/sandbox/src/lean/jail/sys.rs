//! Every syscall of the jail's set-up, behind the [`Sys`] trait: the steps (in `mod.rs`, `init.rs`,
//! `privileges.rs`, `net.rs`, `hold.rs`) are plain code over the trait, so the order they make the calls in
//! is unit-tested with a recorder, without root; only [`RealSys`] calls the kernel.
//!
//! What the jail's processes do once set up — the jailer's and PID 1's waiting, the relay's copying, the
//! sweep of a dead server's groups — is not part of it: those loops order nothing and call the kernel
//! directly (`watch.rs`, `net.rs`, `init.rs`).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::{ForkResult, Gid, Pid, Uid};

use super::super::assignment::Assignment;
use super::super::rootfs::{self, Step};
use super::super::seccomp;
use super::super::seccomp::Filter;
use super::watch::SERVER_GONE;

/// Whose ids a user namespace's map translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ids {
    User,
    Group,
}

/// The operations the jail's set-up needs beyond the root file system's ([`rootfs::Sys`], which builds
/// it). Only the helper's own processes call these, and they are single-threaded: the helper was just
/// executed and starts no threads (a process that unshared its PID namespace may not).
pub(super) trait Sys: rootfs::Sys {
    /// What the root file system's plan reads of the host.
    fn host(&self) -> &dyn rootfs::HostView;

    /// `fork(2)`: the caller continues as both processes.
    fn fork(&mut self) -> io::Result<ForkResult>;
    /// A descriptor that becomes readable once `pid` exits.
    fn pidfd(&mut self, pid: Pid) -> io::Result<OwnedFd>;
    /// Catches [`SERVER_GONE`]: the returned descriptor becomes readable once it arrived.
    fn watch_server(&mut self) -> io::Result<OwnedFd>;
    /// `PR_SET_PDEATHSIG`: the signal this process gets when its parent dies.
    fn set_parent_death_signal(&mut self, signal: Signal) -> io::Result<()>;
    /// A pipe for a set-up handshake between two processes of the jail: (read end, write end).
    fn pipe(&mut self) -> io::Result<(OwnedFd, OwnedFd)>;
    /// Writes one byte (a handshake's "go"); the other side sees a failure as a missing byte.
    fn notify(&mut self, to: &OwnedFd, byte: u8);
    /// Whether a byte came (false once the other side is gone without one).
    fn await_notice(&mut self, from: &OwnedFd) -> bool;

    fn unshare(&mut self, namespaces: CloneFlags) -> io::Result<()>;
    /// Enters the namespace `fd` refers to.
    fn setns(&mut self, fd: &OwnedFd, namespace: CloneFlags) -> io::Result<()>;
    /// A handle on this process's network namespace, to return to it with [`Sys::setns`].
    fn open_network_namespace(&mut self) -> io::Result<OwnedFd>;
    /// `ip link set lo up`.
    fn loopback_up(&mut self) -> io::Result<()>;
    /// A TCP listener on `127.0.0.1:port`.
    fn listen_loopback(&mut self, port: u16) -> io::Result<OwnedFd>;
    /// Moves this process into the cgroup `dir`.
    fn join_cgroup(&mut self, dir: &Path) -> io::Result<()>;
    /// Writes `pid`'s user namespace's uid or gid map.
    fn map_ids(&mut self, pid: Pid, ids: Ids, map: &str) -> io::Result<()>;
    fn set_hostname(&mut self, name: &str) -> io::Result<()>;
    /// A generic instance's assignment, from stdin.
    fn read_assignment(&mut self) -> Result<Assignment, String>;

    /// Leaves every supplementary group.
    fn clear_groups(&mut self) -> io::Result<()>;
    /// Sets the real, effective and saved group ids.
    fn set_gid(&mut self, gid: u32) -> io::Result<()>;
    /// Sets the real, effective and saved user ids.
    fn set_uid(&mut self, uid: u32) -> io::Result<()>;
    /// `PR_CAPBSET_DROP`: `EINVAL` past the last capability the kernel knows.
    fn drop_bounding_capability(&mut self, cap: u32) -> io::Result<()>;
    /// `PR_CAP_AMBIENT_CLEAR_ALL`, which cannot fail on a kernel that has ambient capabilities (and there
    /// is nothing to clear on one that does not).
    fn clear_ambient_capabilities(&mut self);
    fn set_no_new_privs(&mut self) -> io::Result<()>;
    fn install_seccomp(&mut self, filter: Filter) -> io::Result<()>;

    fn chdir(&mut self, dir: &Path) -> io::Result<()>;
    /// Points stdin at `/dev/null` (best effort: the runtime reads nothing there anyway).
    fn stdin_from_dev_null(&mut self);
    /// `execv` (`env: None`: the environment stays) or `execve`; returns only when it failed.
    fn exec(&mut self, program: &CStr, argv: &[CString], env: Option<&[CString]>) -> io::Error;
}

/// The kernel.
#[derive(Debug)]
pub(super) struct RealSys;

impl Sys for RealSys {
    fn host(&self) -> &dyn rootfs::HostView {
        &rootfs::RealHost
    }

    fn fork(&mut self) -> io::Result<ForkResult> {
        // SAFETY: only the jail's processes fork through this, and they are single-threaded (see `Sys`), so
        // the child may do anything after fork.
        Ok(unsafe { nix::unistd::fork() }?)
    }

    fn pidfd(&mut self, pid: Pid) -> io::Result<OwnedFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new file descriptor or -1; no memory is shared.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // A descriptor is an int; the syscall's return type is only wider.
        let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd_open returned a descriptor past i32"))?;
        // SAFETY: the kernel just returned this descriptor to us, and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn watch_server(&mut self) -> io::Result<OwnedFd> {
        use nix::fcntl::OFlag;
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
        // A self-pipe, so a wait cannot miss the signal.
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        SERVER_GONE_PIPE.store(write.into_raw_fd(), Ordering::SeqCst);
        let action = SigAction::new(SigHandler::Handler(on_server_gone), SaFlags::SA_RESTART, SigSet::empty());
        // SAFETY: the handler only makes one write(2), which is async-signal-safe.
        unsafe { sigaction(SERVER_GONE, &action) }?;
        Ok(read)
    }

    fn set_parent_death_signal(&mut self, signal: Signal) -> io::Result<()> {
        Ok(nix::sys::prctl::set_pdeathsig(signal)?)
    }

    fn pipe(&mut self) -> io::Result<(OwnedFd, OwnedFd)> {
        Ok(nix::unistd::pipe()?)
    }

    fn notify(&mut self, to: &OwnedFd, byte: u8) {
        let _ = nix::unistd::write(to, &[byte]);
    }

    fn await_notice(&mut self, from: &OwnedFd) -> bool {
        let mut byte = [0u8; 1];
        matches!(nix::unistd::read(from, &mut byte), Ok(1))
    }

    fn unshare(&mut self, namespaces: CloneFlags) -> io::Result<()> {
        Ok(nix::sched::unshare(namespaces)?)
    }

    fn setns(&mut self, fd: &OwnedFd, namespace: CloneFlags) -> io::Result<()> {
        Ok(nix::sched::setns(fd, namespace)?)
    }

    fn open_network_namespace(&mut self) -> io::Result<OwnedFd> {
        Ok(std::fs::File::open("/proc/self/ns/net")?.into())
    }

    fn loopback_up(&mut self) -> io::Result<()> {
        let socket = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Datagram,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        // SAFETY: ifreq is plain data (a name and a union of integers and addresses); all zeroes is valid.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS reads the interface named in `req` and writes its flags into `req`, which lives
        // for the whole call; the socket is open.
        if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let up =
            libc::c_short::try_from(libc::IFF_UP | libc::IFF_RUNNING).expect("IFF_UP and IFF_RUNNING are low bits");
        // SAFETY: the kernel filled the flags member of the union just above.
        unsafe {
            req.ifr_ifru.ifru_flags |= up;
        }
        // SAFETY: SIOCSIFFLAGS reads `req`, which is initialised and lives for the whole call.
        if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn listen_loopback(&mut self, port: u16) -> io::Result<OwnedFd> {
        Ok(std::net::TcpListener::bind(("127.0.0.1", port))?.into())
    }

    fn join_cgroup(&mut self, dir: &Path) -> io::Result<()> {
        std::fs::write(dir.join("cgroup.procs"), "0")
    }

    fn map_ids(&mut self, pid: Pid, ids: Ids, map: &str) -> io::Result<()> {
        let file = match ids {
            Ids::User => "uid_map",
            Ids::Group => "gid_map",
        };
        std::fs::write(format!("/proc/{pid}/{file}"), map)
    }

    fn set_hostname(&mut self, name: &str) -> io::Result<()> {
        Ok(nix::unistd::sethostname(name)?)
    }

    fn read_assignment(&mut self) -> Result<Assignment, String> {
        Assignment::read_from(&mut io::stdin().lock())
    }

    fn clear_groups(&mut self) -> io::Result<()> {
        Ok(nix::unistd::setgroups(&[])?)
    }

    fn set_gid(&mut self, gid: u32) -> io::Result<()> {
        let gid = Gid::from_raw(gid);
        Ok(nix::unistd::setresgid(gid, gid, gid)?)
    }

    fn set_uid(&mut self, uid: u32) -> io::Result<()> {
        let uid = Uid::from_raw(uid);
        Ok(nix::unistd::setresuid(uid, uid, uid)?)
    }

    fn drop_bounding_capability(&mut self, cap: u32) -> io::Result<()> {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory of ours.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn clear_ambient_capabilities(&mut self) {
        // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
        unsafe {
            libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0);
        }
    }

    fn set_no_new_privs(&mut self) -> io::Result<()> {
        Ok(nix::sys::prctl::set_no_new_privs()?)
    }

    fn install_seccomp(&mut self, filter: Filter) -> io::Result<()> {
        match filter {
            Filter::Instance => seccomp::install(),
            Filter::Zygote => seccomp::install_program(seccomp::zygote_program()),
        }
    }

    fn chdir(&mut self, dir: &Path) -> io::Result<()> {
        Ok(nix::unistd::chdir(dir)?)
    }

    fn stdin_from_dev_null(&mut self) {
        if let Ok(null) = std::fs::File::open("/dev/null") {
            let _ = nix::unistd::dup2_stdin(&null);
        }
    }

    fn exec(&mut self, program: &CStr, argv: &[CString], env: Option<&[CString]>) -> io::Error {
        let Err(e) = match env {
            Some(env) => nix::unistd::execve(program, argv, env),
            None => nix::unistd::execv(program, argv),
        };
        e.into()
    }
}

/// Where the [`SERVER_GONE`] handler writes a byte (the write end of the jailer's watch pipe).
static SERVER_GONE_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_server_gone(_: libc::c_int) {
    let fd = SERVER_GONE_PIPE.load(Ordering::SeqCst);
    // SAFETY: write(2) is async-signal-safe; the byte lives in this frame for the whole call.
    unsafe {
        libc::write(fd, b"x".as_ptr().cast(), 1);
    }
}

/// Translates a plan's mount flags to `MS_*`.
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
        (f.slave, MsFlags::MS_SLAVE),
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

    #[test]
    fn mount_flags_translate() {
        let f = rootfs::MountFlags { bind: true, remount: true, readonly: true, ..Default::default() };
        assert_eq!(ms_flags(&f), MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY);
    }
}
