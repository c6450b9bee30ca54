//! Zygotes (SOCK): a parked Python interpreter per layer set with the layers' top-level packages already
//! imported, which forks new instances instead of starting an interpreter and importing them again.
//!
//! A zygote is set up like a lean instance, then enters a user namespace of its own as its root (mapped to
//! an unused host uid; the sandbox user is mapped to itself), so it can give each instance it forks
//! namespaces of its own without any privilege on the host. It keeps one instance *forked ahead*: the server
//! creates that instance's cgroups (their `cgroup.procs` owned by the sandbox user, so it can move itself in)
//! and a *slot* under the zygote's attach root (empty `task` and `scratch` mount points, and the cgroup
//! directories), which propagates into the zygote; it sends a `prefork` request with the instance's stdout
//! and stderr on the control socket (`SOCK_SEQPACKET`). The zygote forks; the child enters new mount and
//! PID namespaces and forks its PID 1, which joins its cgroups, binds the slot's `task` and `scratch` (as
//! slaves), mounts its own `/tmp` and `/proc`, hides the attach root, and waits.
//!
//! Giving it a function is then, on the cold start's path: write the function's limits into its cgroups,
//! mount the code and scratch directory on the slot (they appear inside), and send `assign` with the
//! environment. It becomes the sandbox user (dropping every capability), installs the instance filter and
//! runs stoke's Python runtime — its modules and the layers' already loaded, shared copy-on-write with the
//! zygote. A new instance is then forked ahead. The zygote reports each instance's end on the socket.

use crate::lock;
use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::socket::{socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType};
use serde_json::{json, Value};

use super::attach::{self, Slot};
use super::cgroup::{Group, Layout, Limits};
use super::ephemeral::{Ephemeral, Storage};
use super::jail::{Generic, JailConfig, JAIL_ARG};
use super::rootfs::{Bind, RootSpec, Tmp};
use crate::{InstanceControl, SpawnSpec, Spawned, ZygoteSpec};

/// stoke's Python zygote (standard library only; its syscalls go through ctypes): what the zygote process
/// runs. The scheduler installs it with the runtimes, as `stoke_python_zygote.py`.
pub const PYTHON_ZYGOTE: &str = include_str!("stoke_python_zygote.py");

/// One parked interpreter.
pub(super) struct Zygote {
    layers: Vec<PathBuf>,
    /// The set-up helper; dropping it kills the zygote and every instance it forked.
    helper: Mutex<Option<tokio::process::Child>>,
    group: Group,
    attach_root: PathBuf,
    control: OwnedFd,
    ready: AtomicBool,
    alive: AtomicBool,
    next_slot: AtomicU64,
    /// Instances forked and not yet ended: who to tell of their end.
    pending: Mutex<HashMap<String, tokio::sync::oneshot::Sender<i32>>>,
    last_used: Mutex<std::time::Instant>,
    /// Instances forked ahead, waiting for a function (one, more after a burst).
    spares: Mutex<Vec<Spare>>,
    /// What forking ahead needs.
    context: ForkContext,
}

/// What a zygote needs to fork instances ahead: where their cgroups go, and as whom they run.
#[derive(Clone)]
pub(super) struct ForkContext {
    pub layout: Layout,
    pub server: u32,
    /// Group ids of this zygote's instances: `base + slot`.
    pub id_base: u64,
    pub uid: u32,
    pub gid: u32,
    /// Limits until an instance is given its function.
    pub limits: Limits,
    pub leftovers: Arc<Mutex<Vec<PathBuf>>>,
}

/// An instance forked ahead of its function.
struct Spare {
    slot_name: String,
    slot: Slot,
    group: Group,
    stdout: OwnedFd,
    stderr: OwnedFd,
    exited: tokio::sync::oneshot::Receiver<i32>,
}

impl Zygote {
    /// How many instances it forked are running (the one forked ahead not counted).
    fn instances(&self) -> usize {
        let pending = lock(&self.pending).len();
        let spares = lock(&self.spares).len();
        pending.saturating_sub(spares)
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        if let Some(mut child) = lock(&self.helper).take() {
            let _ = child.start_kill();
        }
        for spare in lock(&self.spares).drain(..) {
            spare.group.remove_or_leave(&self.context.leftovers);
            spare.slot.remove();
        }
        self.group.remove();
        attach::remove_tree(&self.attach_root);
    }
}

/// The zygotes of one server.
pub(super) struct Zygotes {
    spec: Mutex<Option<ZygoteSpec>>,
    live: Mutex<Vec<Arc<Zygote>>>,
    /// Layer sets whose zygote is being started.
    starting: Mutex<Vec<Vec<PathBuf>>>,
    /// Layer sets whose zygote died before it was ready, or could not be kept, and when: not tried again
    /// for [`RETRY_AFTER`], so a layer that crashes its interpreter does not cost every cold start a zygote.
    refused: Mutex<Vec<(Vec<PathBuf>, std::time::Instant)>>,
}

/// How long a layer set whose zygote failed (or found no room) goes without one.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// What starting a zygote needs from the lean backend.
pub(super) struct Host<'a> {
    pub helper: &'a Path,
    pub new_root: &'a Path,
    pub zattach_root: &'a Path,
    pub layout: &'a Layout,
    pub server: u32,
    pub settings: &'a super::LeanSettings,
    pub id: u64,
}

impl Zygotes {
    pub fn new() -> Zygotes {
        Zygotes {
            spec: Mutex::new(None),
            live: Mutex::new(Vec::new()),
            starting: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
        }
    }

    /// Drops the dead zygotes from `live`; one that died before it was ready refuses its layer set a while.
    fn prune(&self, live: &mut Vec<Arc<Zygote>>) {
        live.retain(|z| {
            let alive = z.alive.load(Ordering::Acquire);
            if !alive && !z.ready.load(Ordering::Acquire) {
                self.refuse(&z.layers);
            }
            alive
        });
    }

    fn refuse(&self, layers: &[PathBuf]) {
        let mut refused = lock(&self.refused);
        refused.retain(|(l, at)| l != layers && at.elapsed() < RETRY_AFTER);
        refused.push((layers.to_vec(), std::time::Instant::now()));
    }

    pub fn configure(&self, spec: Option<ZygoteSpec>) {
        *lock(&self.spec) = spec.filter(|s| s.max > 0);
    }

    /// Whether `spec` could be forked from a zygote: stoke's Python runtime with layers, on the default
    /// image and the host's network.
    pub fn serves(&self, spec: &SpawnSpec) -> bool {
        let Some(z) = lock(&self.spec).clone() else { return false };
        !spec.layers.is_empty()
            && spec.image.is_none()
            && !spec.isolated_network
            && (spec.program.clone(), spec.args.clone()) == z.serves
            && spec.host.runtime_dir == z.runtime_dir
            && spec.host_dirs.iter().all(|d| z.host_dirs.contains(d))
    }

    /// The ready zygote for `layers`, if there is one (a dead one is dropped).
    pub fn ready_for(&self, layers: &[PathBuf]) -> Option<Arc<Zygote>> {
        let mut live = lock(&self.live);
        self.prune(&mut live);
        let z = live.iter().find(|z| z.layers == layers && z.ready.load(Ordering::Acquire))?.clone();
        *lock(&z.last_used) = std::time::Instant::now();
        Some(z)
    }

    /// Whether a zygote for `layers` exists, is starting, or failed a moment ago (then none should be
    /// started).
    pub fn known(&self, layers: &[PathBuf]) -> bool {
        let mut live = lock(&self.live);
        self.prune(&mut live);
        live.iter().any(|z| z.layers == layers)
            || lock(&self.starting).iter().any(|l| l == layers)
            || lock(&self.refused).iter().any(|(l, at)| l == layers && at.elapsed() < RETRY_AFTER)
    }

    pub fn mark_starting(&self, layers: &[PathBuf]) -> bool {
        if self.known(layers) {
            return false;
        }
        lock(&self.starting).push(layers.to_vec());
        true
    }

    pub fn spec(&self) -> Option<ZygoteSpec> {
        lock(&self.spec).clone()
    }

    /// Keeps a started zygote, making room by dropping the least recently used one without instances.
    pub fn add(&self, zygote: Arc<Zygote>) {
        lock(&self.starting).retain(|l| *l != zygote.layers);
        let max = self.spec().map_or(0, |s| s.max);
        let mut live = lock(&self.live);
        self.prune(&mut live);
        while live.len() >= max {
            let idle = live
                .iter()
                .enumerate()
                .filter(|(_, z)| z.instances() == 0)
                .min_by_key(|(_, z)| *lock(&z.last_used))
                .map(|(i, _)| i);
            match idle {
                Some(i) => drop(live.remove(i)),
                None => {
                    // Every zygote has instances: this one is not kept, and not started again for a while.
                    self.refuse(&zygote.layers);
                    return;
                }
            }
        }
        live.push(zygote);
    }

    pub fn start_failed(&self, layers: &[PathBuf]) {
        lock(&self.starting).retain(|l| l != layers);
        self.refuse(layers);
    }

    /// How many zygotes are ready.
    pub fn ready_count(&self) -> usize {
        lock(&self.live).iter().filter(|z| z.alive.load(Ordering::Acquire) && z.ready.load(Ordering::Acquire)).count()
    }
}

/// Starts a zygote for `layers`; it is ready once it has imported them (reported on its control socket) and
/// has an instance forked ahead.
pub(super) fn start(
    host: &Host<'_>,
    spec: &ZygoteSpec,
    layers: &[PathBuf],
    context: ForkContext,
) -> io::Result<Arc<Zygote>> {
    let limits = Limits {
        memory_bytes: u64::from(spec.memory_mb) * 1024 * 1024,
        cpu_millis: spec.cpu_millis,
        cpu_quota: false,
        pids: host.settings.pids_max,
    };
    let group = host.layout.create(host.server, host.id, &limits)?;
    let attach_root = host.zattach_root.join(host.id.to_string());
    if let Err(e) = attach::shared_point(&attach_root) {
        group.remove();
        return Err(e);
    }
    let fail = |e: io::Error, group: &Group| {
        group.remove();
        attach::remove_tree(&attach_root);
        e
    };
    let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| fail(e.into(), &group))?;
    let mut binds = vec![Bind::read_only(spec.runtime_dir.clone(), super::RUNTIME_DIR.into())];
    binds.extend(spec.host_dirs.iter().map(|d| Bind::read_only(d.clone(), d.clone())));
    let root = RootSpec {
        new_root: host.new_root.to_path_buf(),
        binds,
        // The zygote's own /tmp; each instance it forks binds its slot's.
        tmp: Tmp::Memory { size_mb: 16 },
        uid: host.settings.uid,
        gid: host.settings.gid,
        hostname: "stoke".into(),
        layers: layers.to_vec(),
        image: None,
        attach: None,
        attach_root: Some(attach_root.clone()),
        devices: Vec::new(),
        shm: None,
    };
    let config = JailConfig {
        root,
        cgroups: group.dirs().to_vec(),
        cwd: "/".into(),
        program: spec.command.0.clone(),
        args: spec.command.1.clone(),
        relay: None,
        generic: Generic::Zygote { host_uid: host.settings.zygote_uid },
    };
    let mut cmd = tokio::process::Command::new(host.helper);
    cmd.arg(JAIL_ARG)
        .args(config.to_args())
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let control_fd = theirs.as_raw_fd();
    // SAFETY: runs between fork and exec; prctl, setrlimit and dup2 are raw syscalls that neither allocate
    // nor lock, and the closure only reads an integer it captured by value.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(super::jail::SERVER_GONE).map_err(io::Error::from)?;
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 1024, 1024)
                .map_err(io::Error::from)?;
            // The zygote's control socket is its fd 3 (dup2 clears close-on-exec on the copy).
            if libc::dup2(control_fd, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| fail(e, &group))?;
    drop(theirs);
    // Its own complaints (a package that fails to import, say) go to the server's log.
    if let Some(stderr) = child.stderr.take().and_then(|e| e.into_owned_fd().ok()) {
        let _ = std::thread::Builder::new().name("zygote-log".into()).spawn(move || {
            let mut text = String::new();
            let _ = std::fs::File::from(stderr).read_to_string(&mut text);
            for line in text.lines().filter(|l| !l.is_empty()) {
                eprintln!("stoke zygote: {line}");
            }
        });
    }
    let zygote = Arc::new(Zygote {
        layers: layers.to_vec(),
        helper: Mutex::new(Some(child)),
        group,
        attach_root,
        control: ours,
        ready: AtomicBool::new(false),
        alive: AtomicBool::new(true),
        next_slot: AtomicU64::new(1),
        pending: Mutex::new(HashMap::new()),
        last_used: Mutex::new(std::time::Instant::now()),
        spares: Mutex::new(Vec::new()),
        context,
    });
    let reader = Arc::downgrade(&zygote);
    std::thread::Builder::new().name("zygote".into()).spawn(move || listen(reader))?;
    Ok(zygote)
}

/// Reads the zygote's reports until it goes: ready, and each instance's end.
fn listen(zygote: std::sync::Weak<Zygote>) {
    let fd = match zygote.upgrade() {
        Some(z) => match z.control.try_clone() {
            Ok(fd) => fd,
            Err(_) => return,
        },
        None => return,
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match nix::sys::socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Some(z) = zygote.upgrade() else { return };
        let Ok(msg) = serde_json::from_slice::<Value>(&buf[..n]) else { continue };
        if msg.get("ready").is_some() {
            match prefork(&z) {
                Ok(()) => z.ready.store(true, Ordering::Release),
                Err(e) => eprintln!("stoke: a zygote could not fork an instance ahead: {e}"),
            }
        } else if let Some(slot) = msg.get("exited").and_then(Value::as_str) {
            let status =
                msg.get("status").and_then(Value::as_i64).and_then(|s| i32::try_from(s).ok()).unwrap_or(127 << 8);
            if let Some(tx) = lock(&z.pending).remove(slot) {
                let _ = tx.send(status);
            }
        }
    }
    if let Some(z) = zygote.upgrade() {
        z.alive.store(false, Ordering::Release);
        // Its instances went with it: their ends are the zygote's.
        lock(&z.pending).clear();
    }
}

/// Forks one more instance of the zygote ahead of its function.
fn prefork(zygote: &Arc<Zygote>) -> io::Result<()> {
    let c = &zygote.context;
    let n = zygote.next_slot.fetch_add(1, Ordering::Relaxed);
    let slot_name = n.to_string();
    let group = c.layout.create(c.server, c.id_base + n, &c.limits)?;
    match fork_ahead(zygote, &slot_name, &group) {
        Ok((slot, stdout, stderr, exited)) => {
            lock(&zygote.spares).push(Spare { slot_name, slot, group, stdout, stderr, exited });
            Ok(())
        }
        Err(e) => {
            group.remove();
            Err(e)
        }
    }
}

type Forked = (Slot, OwnedFd, OwnedFd, tokio::sync::oneshot::Receiver<i32>);

/// Prepares `slot_name`'s slot for an instance in `group` and asks the zygote to fork it.
fn fork_ahead(zygote: &Arc<Zygote>, slot_name: &str, group: &Group) -> io::Result<Forked> {
    let c = &zygote.context;
    // The instance moves itself into its groups: it must be able to write their `cgroup.procs`.
    let owner = (Some(nix::unistd::Uid::from_raw(c.uid)), Some(nix::unistd::Gid::from_raw(c.gid)));
    for dir in group.dirs() {
        for file in ["cgroup.procs", "tasks"] {
            if dir.join(file).exists() {
                nix::unistd::chown(&dir.join(file), owner.0, owner.1)?;
            }
        }
    }
    let cgroups = group.controller_dirs();
    let slot = Slot::prepare(zygote.attach_root.join(slot_name), &cgroups)?;
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let controllers: Vec<&str> = cgroups.iter().map(|(name, _)| *name).collect();
    let request = json!({"prefork": slot_name, "cgroups": controllers, "uid": c.uid, "gid": c.gid});
    let (tx, exited) = tokio::sync::oneshot::channel();
    lock(&zygote.pending).insert(slot_name.to_string(), tx);
    let fds = [out_w.as_raw_fd(), err_w.as_raw_fd()];
    let sent = nix::sys::socket::sendmsg::<()>(
        zygote.control.as_raw_fd(),
        &[io::IoSlice::new(request.to_string().as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    );
    if let Err(e) = sent {
        lock(&zygote.pending).remove(slot_name);
        slot.remove();
        return Err(e.into());
    }
    Ok((slot, out_r, err_r, exited))
}

/// Gives the zygote's instance forked ahead the function `spec` describes, within `limits`; then forks the
/// next one ahead, off this path. In a burst that found none forked ahead, one is forked now (the zygote
/// handles requests in order, so the assignment follows the fork). `None` when that fails too.
pub(super) fn assign(
    zygote: &Arc<Zygote>,
    spec: &SpawnSpec,
    limits: &Limits,
    storage: &Storage,
) -> Option<io::Result<Spawned>> {
    let taken = lock(&zygote.spares).pop();
    let spare = match taken {
        Some(s) => s,
        None => {
            if let Err(e) = prefork(zygote) {
                eprintln!("stoke: a zygote could not fork an instance: {e}");
                return None;
            }
            lock(&zygote.spares).pop()?
        }
    };
    let refill = zygote.clone();
    let forked_ahead = move || {
        if lock(&refill.spares).is_empty() {
            if let Err(e) = prefork(&refill) {
                eprintln!("stoke: a zygote could not fork an instance ahead: {e}");
            }
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) => drop(h.spawn_blocking(forked_ahead)),
        Err(_) => forked_ahead(),
    }
    let mut tmp = None;
    let given = (|| -> io::Result<()> {
        spare.group.set_limits(limits)?;
        let ephemeral = tmp.insert(storage.take(spec.ephemeral_mb)?);
        spare.slot.attach(&spec.host.task_root, Some(&spec.host.scratch), ephemeral)?;
        let env: serde_json::Map<String, Value> = spec.env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let request = json!({"assign": spare.slot_name, "env": env, "cwd": spec.cwd});
        nix::sys::socket::send(zygote.control.as_raw_fd(), request.to_string().as_bytes(), MsgFlags::empty())?;
        Ok(())
    })();
    let Spare { slot_name, slot, group, stdout, stderr, exited } = spare;
    let control = ForkedControl {
        zygote: zygote.clone(),
        slot_name,
        slot,
        group,
        leftovers: zygote.context.leftovers.clone(),
        _tmp: tmp,
    };
    if let Err(e) = given {
        control.kill();
        return Some(Err(e));
    }
    let exit: crate::Exit = Box::pin(async move {
        exited
            .await
            .map(std::process::ExitStatus::from_raw)
            .map_err(|_| io::Error::other("the zygote it was forked from went away"))
    });
    Some(Ok(Spawned { stdout: Some(stdout), stderr: Some(stderr), exit, control: Arc::new(control) }))
}

/// Control over an instance forked from a zygote: its own cgroups hold it.
struct ForkedControl {
    zygote: Arc<Zygote>,
    slot_name: String,
    slot: Slot,
    group: Group,
    leftovers: Arc<Mutex<Vec<PathBuf>>>,
    /// Its `/tmp`, gone with it (declared last: dropped after the slot's mounts).
    _tmp: Option<Ephemeral>,
}

impl InstanceControl for ForkedControl {
    fn pid(&self) -> u32 {
        self.group.pids().first().copied().unwrap_or(0)
    }

    fn kill(&self) {
        self.group.freeze(false);
        for pid in self.group.pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
        // Before it joined its groups, only the zygote can reach it.
        let msg = json!({"kill": self.slot_name}).to_string();
        let _ = nix::sys::socket::send(self.zygote.control.as_raw_fd(), msg.as_bytes(), MsgFlags::empty());
    }

    fn peak_memory_bytes(&self) -> Option<u64> {
        self.group.peak_memory()
    }

    fn out_of_memory(&self) -> bool {
        self.group.oom_kills() > 0 || self.group.hit_memory_limit()
    }

    fn freeze(&self, frozen: bool) -> bool {
        self.group.freeze(frozen)
    }

    fn opened_connection(&self, local: std::net::SocketAddr, peer: std::net::SocketAddr) -> bool {
        crate::peer::opened_by_any(&self.group.members(), local, peer)
    }

    fn opened_connection_quickly(&self, local: std::net::SocketAddr, peer: std::net::SocketAddr) -> bool {
        self.group.opened_connection_quickly(local, peer)
    }
}

impl Drop for ForkedControl {
    fn drop(&mut self) {
        // Its end may have been only its zygote's (which reports no more): make sure nothing is left, frozen
        // or not.
        self.kill();
        self.group.remove_or_leave(&self.leftovers);
        self.slot.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InstancePaths;

    fn zygote_spec(max: usize) -> ZygoteSpec {
        ZygoteSpec {
            serves: ("/usr/bin/python3".into(), vec!["-S".into(), "/var/runtime/boot.py".into()]),
            command: ("/usr/bin/python3".into(), vec!["/var/runtime/stoke_python_zygote.py".into()]),
            env: Vec::new(),
            runtime_dir: "/d/run/runtimes".into(),
            host_dirs: vec!["/opt/py".into()],
            memory_mb: 2048,
            cpu_millis: 1000,
            max,
        }
    }

    fn spawn_spec() -> SpawnSpec {
        SpawnSpec {
            host: InstancePaths {
                task_root: "/d/run/code/abc".into(),
                runtime_dir: "/d/run/runtimes".into(),
                scratch: "/d/run/scratch/1".into(),
            },
            host_dirs: vec!["/opt/py".into()],
            program: "/usr/bin/python3".into(),
            args: vec!["-S".into(), "/var/runtime/boot.py".into()],
            env: Vec::new(),
            cwd: "/var/task".into(),
            memory_mb: 128,
            ephemeral_mb: 512,
            cpu_millis: 72,
            open_files: 1024,
            layers: vec!["/d/layers/1/aa/content".into()],
            image: None,
            isolated_network: false,
            runtime_api_port: 4000,
            gpu: None,
        }
    }

    #[test]
    fn serves_python_functions_with_layers_on_the_default_image_and_the_hosts_network() {
        let z = Zygotes::new();
        assert!(!z.serves(&spawn_spec()), "nothing is served before a spec is configured");
        z.configure(Some(zygote_spec(0)));
        assert!(!z.serves(&spawn_spec()), "--zygotes 0 serves nothing");
        z.configure(Some(zygote_spec(2)));
        assert!(z.serves(&spawn_spec()));
        type Change = fn(&mut SpawnSpec);
        let refused: [(&str, Change); 6] = [
            ("no layers", |s| s.layers.clear()),
            ("an imported image", |s| s.image = Some("/d/images/alpine/rootfs".into())),
            ("network: none", |s| s.isolated_network = true),
            ("another runtime", |s| s.program = "/usr/bin/node".into()),
            ("a host directory the zygote lacks", |s| s.host_dirs.push("/opt/other".into())),
            ("other runtime files", |s| s.host.runtime_dir = "/elsewhere".into()),
        ];
        for (what, change) in refused {
            let mut spec = spawn_spec();
            change(&mut spec);
            assert!(!z.serves(&spec), "{what} is not forked");
        }
    }

    #[test]
    fn a_layer_set_has_one_zygote_starting_at_a_time() {
        let z = Zygotes::new();
        z.configure(Some(zygote_spec(2)));
        let layers = vec![PathBuf::from("/d/layers/1/aa/content")];
        assert!(z.ready_for(&layers).is_none());
        assert!(z.mark_starting(&layers));
        assert!(!z.mark_starting(&layers), "already starting");
        assert!(z.known(&layers));
        z.start_failed(&layers);
        assert!(z.known(&layers), "a failed start is not retried at once");
        assert!(!z.mark_starting(&layers));
        lock(&z.refused)[0].1 -= RETRY_AFTER;
        assert!(!z.known(&layers), "it is retried later");
        assert!(z.mark_starting(&layers));
        assert_eq!(z.ready_count(), 0);
    }
}
