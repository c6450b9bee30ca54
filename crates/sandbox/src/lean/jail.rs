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

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Gid, Pid, Uid};

use super::assignment::Assignment;
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
    /// `network: none`: the host port of the instance's Runtime API, relayed to
    /// [`RELAYED_RUNTIME_API_PORT`] inside the instance's own network namespace.
    pub relay: Option<u16>,
    /// How a generic instance gets its function.
    pub generic: Generic,
}

/// Whether the instance knows its function at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Generic {
    /// It does: run `program` now.
    #[default]
    No,
    /// Set everything up, then wait for an [`Assignment`] on stdin and run what it says.
    Await,
    /// Start `program` now (stoke's Python bootstrap), which reads its assignment from stdin itself.
    Prestart,
    /// A zygote: once the root is built, enter a user namespace of its own as its root (mapped to
    /// `host_uid`; the sandbox user mapped to itself) and run `program`, stoke's Python zygote, which forks
    /// instances.
    Zygote { host_uid: u32 },
}

/// Where an instance with a network of its own finds its Runtime API (as on Lambda: `127.0.0.1:9001`).
pub const RELAYED_RUNTIME_API_PORT: u16 = 9001;

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
        for l in &r.layers {
            a.extend(["--layer".into(), l.clone().into()]);
        }
        if let Some(image) = &r.image {
            a.extend(["--image".into(), image.clone().into()]);
        }
        if let Some(port) = self.relay {
            a.extend(["--relay".into(), port.to_string().into()]);
        }
        if let Some(attach) = &r.attach {
            a.extend(["--attach".into(), attach.clone().into()]);
        }
        if let Some(attach_root) = &r.attach_root {
            a.extend(["--attach-root".into(), attach_root.clone().into()]);
        }
        match self.generic {
            Generic::No => {}
            Generic::Await => a.push("--await-assignment".into()),
            Generic::Prestart => a.push("--prestart".into()),
            Generic::Zygote { host_uid } => a.extend(["--zygote".into(), host_uid.to_string().into()]),
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
            layers: Vec::new(),
            image: None,
            attach: None,
            attach_root: None,
        };
        let (mut cgroups, mut cwd, mut relay, mut generic) = (Vec::new(), PathBuf::from("/"), None, Generic::No);
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
                "--layer" => root.layers.push(value(&mut it, &key)?.into()),
                "--image" => root.image = Some(value(&mut it, &key)?.into()),
                "--attach" => root.attach = Some(value(&mut it, &key)?.into()),
                "--attach-root" => root.attach_root = Some(value(&mut it, &key)?.into()),
                "--zygote" => generic = Generic::Zygote { host_uid: number(value(&mut it, &key)?, &key)? },
                "--await-assignment" => generic = Generic::Await,
                "--prestart" => generic = Generic::Prestart,
                "--relay" => {
                    let port = number(value(&mut it, &key)?, &key)?;
                    relay = Some(u16::try_from(port).map_err(|_| format!("option {key} needs a port number"))?);
                }
                "--bind" | "--bind-rw" => {
                    let source = value(&mut it, &key)?.into();
                    let target = value(&mut it, &key)?.into();
                    root.binds.push(Bind { source, target, writable: key == "--bind-rw" });
                }
                "--" => break,
                other => return Err(format!("unknown option {other}")),
            }
        }
        // A generic instance waiting for its assignment learns its program then.
        let program: PathBuf = match it.next() {
            Some(p) => p.into(),
            None if generic == Generic::Await => PathBuf::new(),
            None => return Err("no program after --".into()),
        };
        if root.new_root.as_os_str().is_empty() {
            return Err("--new-root is required".into());
        }
        if root.uid == 0 || root.gid == 0 {
            return Err("--uid and --gid must name an unprivileged user (not 0)".into());
        }
        if generic == (Generic::Zygote { host_uid: 0 }) {
            return Err("--zygote must name an unprivileged host uid (not 0)".into());
        }
        Ok(JailConfig { root, cgroups, cwd, program, args: it.collect(), relay, generic })
    }
}

/// The helper's parent-death signal (the server sets it): the server is gone. A SIGKILL would not do: an
/// instance frozen in a cgroup v1 freezer keeps its own pending SIGKILL until someone thaws it, so the
/// helper catches this one, kills and thaws every group of its server, and exits.
pub const SERVER_GONE: Signal = Signal::SIGUSR1;

/// Where the [`SERVER_GONE`] handler writes a byte (the write end of the jailer's watch pipe).
static SERVER_GONE_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_server_gone(_: libc::c_int) {
    let fd = SERVER_GONE_PIPE.load(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: write(2) is async-signal-safe; the byte lives in this frame for the whole call.
    unsafe {
        libc::write(fd, b"x".as_ptr().cast(), 1);
    }
}

/// Catches [`SERVER_GONE`]: the returned pipe becomes readable once it arrived (a self-pipe, so a wait
/// cannot miss it).
fn watch_server() -> std::os::fd::OwnedFd {
    use nix::fcntl::OFlag;
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    use std::os::fd::IntoRawFd;
    let (read, write) = match nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) {
        Ok(p) => p,
        Err(e) => fail(&format!("cannot watch the server: {e}")),
    };
    SERVER_GONE_PIPE.store(write.into_raw_fd(), std::sync::atomic::Ordering::SeqCst);
    let action = SigAction::new(SigHandler::Handler(on_server_gone), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler only makes one write(2), which is async-signal-safe.
    if let Err(e) = unsafe { sigaction(SERVER_GONE, &action) } {
        fail(&format!("cannot watch the server: {e}"));
    }
    read
}

/// The server is gone: removes the helper's own instance's groups `own`, then — if no other helper of the
/// server is already at it — the server's cgroup trees `reap` with every process in them (a zygote's
/// instances have no helper of their own), thawing them so the kills land; exits as if killed.
///
/// One sweep is enough: with a thousand instances, a thousand helpers each walking every group of the server
/// took minutes to end them all. The sweeper holds an exclusive lock on the first tree while it works; a
/// helper that cannot take it leaves the rest to that one.
fn reap_server(own: &[PathBuf], reap: &[PathBuf]) -> ! {
    fn paths(dirs: &[PathBuf]) -> Vec<&Path> {
        dirs.iter().map(PathBuf::as_path).collect()
    }
    super::cgroup::remove_trees(&paths(own));
    if sweep_lock(reap.first()).is_some() {
        super::cgroup::remove_trees(&paths(reap));
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
            init(&config)
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

/// The jailer's side of `network: none`: the listener inside the instance's network namespace, and the
/// host's network namespace to go back to.
struct OwnNetwork {
    listener: std::net::TcpListener,
    host: std::os::fd::OwnedFd,
}

/// Moves into a new network namespace with its loopback up and listens on the relayed Runtime API port
/// there; keeps a handle on the host's namespace.
fn own_network() -> io::Result<OwnNetwork> {
    let host: std::os::fd::OwnedFd = std::fs::File::open("/proc/self/ns/net")?.into();
    nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
    loopback_up()?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", RELAYED_RUNTIME_API_PORT))?;
    Ok(OwnNetwork { listener, host })
}

/// `ip link set lo up`.
fn loopback_up() -> io::Result<()> {
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
    use std::os::fd::AsRawFd;
    // SAFETY: SIOCGIFFLAGS reads the interface named in `req` and writes its flags into `req`, which lives
    // for the whole call; the socket is open.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the flags member of the union just above.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads `req`, which is initialised and lives for the whole call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl OwnNetwork {
    /// Returns to the host's network namespace and, until the instance ends, relays every connection made
    /// inside it to `127.0.0.1:port` on the host; then exits the way the instance did. One thread, one
    /// poll loop (a process that unshared its PID namespace may not start threads): the listener, the
    /// instance's pidfd, and both ends of every relayed connection. Connections from inside arrive at the
    /// server from this helper, which leads the instance's process group, so the Runtime API's ownership
    /// check holds.
    fn relay_until_exit(self, port: u16, ends: Ends) -> ! {
        if let Err(e) = nix::sched::setns(&self.host, CloneFlags::CLONE_NEWNET) {
            fail(&format!("cannot return to the host's network: {e}"));
        }
        let mut relay = Relay { listener: self.listener, port, pairs: Vec::new() };
        loop {
            match relay.step(&ends) {
                Ok(()) => {}
                Err(e) => fail(&format!("the Runtime API relay failed: {e}")),
            }
        }
    }
}

/// A pidfd for `pid`: readable once it has exited.
fn pidfd(pid: Pid) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new file descriptor or -1; no memory is shared.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us, and nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// The relay's connections: each accepted one inside, paired with one to the host's endpoint.
struct Relay {
    listener: std::net::TcpListener,
    port: u16,
    pairs: Vec<(std::net::TcpStream, std::net::TcpStream)>,
}

impl Relay {
    /// Waits for something to do and does it; the instance's end (or the server's) ends the jailer.
    fn step(&mut self, ends: &Ends) -> io::Result<()> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let readable = PollFlags::POLLIN;
        let mut fds = vec![
            PollFd::new(ends.exited.as_fd(), readable),
            PollFd::new(ends.server.as_fd(), readable),
            PollFd::new(self.listener.as_fd(), readable),
        ];
        for (inside, outside) in &self.pairs {
            fds.push(PollFd::new(inside.as_fd(), readable));
            fds.push(PollFd::new(outside.as_fd(), readable));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if ready[1] {
            reap_server(&ends.own, &ends.reap);
        }
        if ready[0] {
            wait_and_exit(ends.child);
        }
        // Copy what arrived; a side that closed (or failed) ends its pair.
        let mut closed = Vec::new();
        for (i, (inside, outside)) in self.pairs.iter_mut().enumerate() {
            let inward_ok = !ready[3 + 2 * i] || forward(inside, outside);
            let outward_ok = !ready[4 + 2 * i] || forward(outside, inside);
            if !(inward_ok && outward_ok) {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            let (inside, outside) = self.pairs.swap_remove(i);
            let _ = inside.shutdown(std::net::Shutdown::Both);
            let _ = outside.shutdown(std::net::Shutdown::Both);
        }
        if ready[2] {
            if let Ok((inside, _)) = self.listener.accept() {
                // The server is gone or refuses: the runtime sees its connection closed.
                if let Ok(outside) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                    let _ = inside.set_nodelay(true);
                    let _ = outside.set_nodelay(true);
                    self.pairs.push((inside, outside));
                }
            }
        }
        Ok(())
    }
}

/// Moves what `from` has to offer now into `to`; false once `from` closed or either side failed.
fn forward(from: &mut std::net::TcpStream, to: &mut std::net::TcpStream) -> bool {
    use std::io::{Read, Write};
    let mut buf = [0u8; 64 * 1024];
    match from.read(&mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => to.write_all(&buf[..n]).is_ok(),
    }
}

/// Runs `args` (a program and its arguments) as PID 1 of a new PID namespace, killed if this process dies,
/// and exits the way it did: when the program ends or is killed, the kernel kills every process left in its
/// namespace. If the server dies first ([`SERVER_GONE`]), it removes the cgroup trees `reap` with every
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

fn fail(message: &str) -> ! {
    eprintln!("stoke-jail: {message}");
    std::process::exit(125)
}

/// What ends a jailer (or an OCI runtime's holder): its instance's end, or the server's.
struct Ends {
    /// The instance's pidfd.
    exited: std::os::fd::OwnedFd,
    /// Readable once the server is gone.
    server: std::os::fd::OwnedFd,
    child: Pid,
    /// The instance's own groups, removed first if the server goes first.
    own: Vec<PathBuf>,
    /// The cgroup trees to remove, with every process in them, if the server goes first.
    reap: Vec<PathBuf>,
}

impl Ends {
    fn new(child: Pid, server: std::os::fd::OwnedFd, own: Vec<PathBuf>, reap: Vec<PathBuf>) -> Ends {
        match pidfd(child) {
            Ok(exited) => Ends { exited, server, child, own, reap },
            Err(e) => fail(&format!("cannot watch the instance: {e}")),
        }
    }

    /// Waits for either; exits the way the instance did, or reaps the server's instances.
    fn wait(self) -> ! {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        loop {
            let mut fds = [
                PollFd::new(self.exited.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.server.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => fail(&format!("cannot wait for the instance: {e}")),
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
fn wait_and_exit(child: Pid) -> ! {
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
                layers: vec!["/d/layers/1/aa/content".into(), "/d/layers/1/bb/content".into()],
                image: Some("/d/images/alpine/rootfs".into()),
                attach: Some("/d/run/attach/3".into()),
                attach_root: Some("/d/run/zattach/2".into()),
            },
            cgroups: vec!["/sys/fs/cgroup/memory/stoke/s1/i2".into()],
            cwd: "/var/task".into(),
            program: "/usr/bin/python3".into(),
            args: vec!["-u".into(), "--".into(), "/var/runtime/boot.py".into()],
            relay: Some(40123),
            generic: Generic::Zygote { host_uid: 66529 },
        }
    }

    #[test]
    fn the_command_line_round_trips() {
        let c = config();
        assert_eq!(JailConfig::from_args(c.to_args()).unwrap(), c);
        // A generic instance that waits for its assignment needs no program yet.
        let waiting = JailConfig { generic: Generic::Await, program: PathBuf::new(), args: Vec::new(), ..c };
        let mut args = waiting.to_args();
        args.pop();
        assert_eq!(JailConfig::from_args(args).unwrap(), waiting);
    }

    #[test]
    fn bad_command_lines_are_refused_with_the_reason() {
        let err = |args: &[&str]| JailConfig::from_args(args.iter().map(OsString::from)).unwrap_err();
        assert!(err(&["--bogus", "x", "--", "/bin/true"]).contains("unknown option --bogus"));
        assert!(err(&["--uid"]).contains("--uid needs a value"));
        assert!(err(&["--uid", "x", "--", "/p"]).contains("--uid needs a number"));
        assert!(err(&["--new-root", "/r"]).contains("no program"));
        assert!(err(&["--uid", "5", "--gid", "5", "--", "/p"]).contains("--new-root is required"));
        assert!(err(&["--new-root", "/r", "--uid", "5", "--gid", "5", "--zygote", "0", "--", "/p"]).contains("not 0"));
        assert!(err(&["--new-root", "/r", "--", "/p"]).contains("unprivileged"));
        assert!(err(&["--relay", "70000", "--", "/p"]).contains("--relay needs a port number"));
    }

    #[test]
    fn mount_flags_translate() {
        let f = rootfs::MountFlags { bind: true, remount: true, readonly: true, ..Default::default() };
        assert_eq!(ms_flags(&f), MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY);
    }
}
