//! The `oci` backend: each instance is an OCI bundle run by an OCI runtime binary (`runc`, `crun`, gVisor's
//! `runsc`), for users who want a standard isolation boundary. The same limits, layers, base images and
//! Runtime API reachability as the lean sandbox:
//!
//! - the bundle's `config.json` is built here as plain data ([`config`], unit-tested): the base image's
//!   directories, the code, runtime files, layers and scratch bound as in the lean sandbox, `/tmp` a
//!   size-limited tmpfs, an unprivileged user with no capabilities, `noNewPrivileges`, the same seccomp
//!   rules, masked and read-only `/proc` entries, the host's network (the Runtime API is on loopback);
//! - limits are written by stoke into a group it creates (`stoke-oci/s<server>/i<id>`), and the runtime
//!   puts the container one level below it: peak memory and OOM kills stay readable after the runtime has
//!   removed its own group;
//! - the runtime runs as PID 1 of a PID namespace of its own (`stoke __pidns`), which dies with the server:
//!   when the runtime dies, the kernel kills everything in that namespace, the container included.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::{fs, io};

use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::lean::cgroup::{Group, Layout, Limits};
use crate::lean::ephemeral::{Ephemeral, Storage};
use crate::lean::rootfs::{self, HostEntry, HostView, RealHost, Tmp};
use crate::lean::{LeanSettings, LAYER_ROOT, RUNTIME_DIR, SCRATCH_DIR, TASK_ROOT};
use crate::{InstanceControl, InstancePaths, Sandbox, SpawnSpec, Spawned};

/// The first argument that makes the `stoke` binary hold an OCI runtime in a PID namespace of its own.
pub const PIDNS_ARG: &str = "__pidns";

/// Why the oci backend cannot run here.
#[derive(Debug)]
pub enum OciUnavailable {
    NotRoot,
    NoCgroups,
    /// The runtime binary was not found (its name or path).
    NoRuntime(String),
    /// A gVisor platform was asked of a runtime that is not gVisor's `runsc`, or `runsc` refused it.
    Platform(String),
    Setup(io::Error),
    Ephemeral(io::Error),
}

impl std::fmt::Display for OciUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OciUnavailable::NotRoot => write!(f, "the oci sandbox needs root (the OCI runtimes run rootful)"),
            OciUnavailable::NoCgroups => write!(f, "the oci sandbox needs the memory, cpu and pids cgroup controllers"),
            OciUnavailable::NoRuntime(r) => write!(
                f,
                "no OCI runtime {r:?} on this node: install one (apt-get install runc, or crun) or name it with \
                 --oci-runtime PATH"
            ),
            OciUnavailable::Platform(m) => write!(f, "{m}"),
            OciUnavailable::Setup(e) => write!(f, "cannot prepare the oci sandbox: {e}"),
            OciUnavailable::Ephemeral(e) => write!(f, "{e}"),
        }
    }
}

/// Instances as OCI bundles run by an OCI runtime.
pub struct OciSandbox {
    helper: PathBuf,
    runtime: PathBuf,
    /// `runc`, `crun`, `runsc`, … (the binary's file name).
    runtime_name: String,
    /// Global flags given to the runtime before its command (gVisor's, see [`gvisor_flags`]).
    runtime_flags: Vec<String>,
    /// The runtime is gVisor's `runsc`: `Some(platform)`, `None` for its default platform.
    gvisor: Option<Option<String>>,
    dir: PathBuf,
    layout: Layout,
    server: u32,
    settings: LeanSettings,
    next: AtomicU64,
    leftovers: Arc<Mutex<Vec<PathBuf>>>,
    /// Held while the default image's template root is brought up to date (instances start concurrently).
    template: Mutex<()>,
    /// Instances' `/tmp`s.
    storage: Storage,
}

impl std::fmt::Debug for OciSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciSandbox").field("runtime", &self.runtime).finish_non_exhaustive()
    }
}

/// Whether `runtime` is gVisor's `runsc` (by name, or by what it says of its version).
fn is_gvisor(runtime: &Path) -> bool {
    if runtime.file_name().is_some_and(|n| n == "runsc") {
        return true;
    }
    std::process::Command::new(runtime)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("runsc version"))
}

/// The global flags stoke gives gVisor's `runsc`: the host's network stack (`--network=host`: the bundle
/// shares the host's network as runc's does, so the instance reaches the Runtime API on loopback; the
/// sentry makes the host's socket calls for it), the bundle's seccomp rules loaded inside the sandbox as
/// well (`--oci-seccomp`; runsc ignores them otherwise), and the platform when one is asked for.
pub fn gvisor_flags(platform: Option<&str>) -> Vec<String> {
    let mut flags = vec!["--network=host".to_string(), "--oci-seccomp".to_string()];
    if let Some(p) = platform {
        flags.push(format!("--platform={p}"));
    }
    flags
}

/// The host's pids limit for a gVisor instance meant to run `guest` tasks: the sentry runs each guest task
/// on host tasks of its own (on the ptrace platform, a tracing thread in the sentry and a thread of a stub
/// process), beside its Go runtime's threads and the gofer. gVisor (this Debian build) keeps no process
/// limit of its own, so this is the bound: a fork bomb that reaches it ends that instance's sandbox (the
/// sentry cannot make its next thread), not the node.
pub fn gvisor_host_pids(guest: u32) -> u32 {
    guest.saturating_mul(2).saturating_add(256)
}

impl OciSandbox {
    /// `helper` is the `stoke` binary; `runtime` an OCI runtime's name or path (`None`: crun, else runc);
    /// `platform` gVisor's platform (`ptrace`, `systrap`, `kvm`; only with `runsc`); `run_dir` the server's
    /// scratch directory.
    pub fn new(
        helper: PathBuf,
        runtime: Option<&str>,
        platform: Option<&str>,
        run_dir: &Path,
        settings: LeanSettings,
    ) -> Result<Self, OciUnavailable> {
        if !nix::unistd::geteuid().is_root() {
            return Err(OciUnavailable::NotRoot);
        }
        let runtime = match runtime {
            Some(r) => crate::find_program(r).ok_or_else(|| OciUnavailable::NoRuntime(r.to_string()))?,
            None => crate::find_program("crun")
                .or_else(|| crate::find_program("runc"))
                .ok_or_else(|| OciUnavailable::NoRuntime("crun or runc".into()))?,
        };
        let runtime_name = runtime.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let gvisor = is_gvisor(&runtime).then(|| platform.map(String::from));
        if gvisor.is_none() && platform.is_some() {
            return Err(OciUnavailable::Platform(format!(
                "--runsc-platform applies to gVisor's runsc; {} is not runsc (use --oci-runtime runsc)",
                runtime.display()
            )));
        }
        let runtime_flags = if gvisor.is_some() { gvisor_flags(platform) } else { Vec::new() };
        let layout = Layout::detect().ok_or(OciUnavailable::NoCgroups)?.for_oci();
        let server = std::process::id();
        layout.prepare(server).map_err(OciUnavailable::Setup)?;
        let dir = run_dir.join("oci");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("bundles")).map_err(OciUnavailable::Setup)?;
        if let Some(p) = platform {
            // runsc checks the platform's name whatever its command: an unknown one fails now, not at
            // every instance's start.
            let out = std::process::Command::new(&runtime)
                .arg("--root")
                .arg(dir.join("state"))
                .arg(format!("--platform={p}"))
                .arg("list")
                .stdin(Stdio::null())
                .output()
                .map_err(OciUnavailable::Setup)?;
            if !out.status.success() {
                let said = String::from_utf8_lossy(&out.stderr);
                let said = said.lines().last().unwrap_or("").trim().to_string();
                return Err(OciUnavailable::Platform(format!(
                    "runsc refused the platform {p:?} ({said}); this runsc knows the platforms its \
                     `runsc flags` lists under -platform"
                )));
            }
        }
        let storage =
            Storage::new(settings.ephemeral_home(run_dir), settings.ephemeral).map_err(OciUnavailable::Ephemeral)?;
        storage.refill();
        if runtime_name == "crun" {
            // crun refuses a hybrid host whose unified hierarchy has controllers of its own (hugetlb, say);
            // in the server's own mount namespace, hide the unified mount (stoke uses v1 where it exists).
            hide_busy_unified_mount();
        }
        Ok(OciSandbox {
            helper,
            runtime,
            runtime_name,
            runtime_flags,
            gvisor,
            dir,
            layout,
            server,
            settings,
            next: AtomicU64::new(1),
            leftovers: Arc::new(Mutex::new(Vec::new())),
            template: Mutex::new(()),
            storage,
        })
    }

    /// What the server prints at start, e.g. `runc at /usr/sbin/runc, cgroup v1 (…)`.
    pub fn describe(&self) -> String {
        let gvisor = match &self.gvisor {
            None => String::new(),
            Some(p) => format!(" (gVisor, platform {}, host network)", p.as_deref().unwrap_or("runsc's default")),
        };
        format!(
            "{}{gvisor} at {}, {}, {}",
            self.runtime_name,
            self.runtime.display(),
            self.layout.describe(),
            self.storage.describe()
        )
    }

    /// The runtime's name (`runc`, `crun`, …).
    pub fn runtime_name(&self) -> &str {
        &self.runtime_name
    }
}

/// Mounts a read-only overlay of `layers` at `at` (the last layer on top), in the server's mount namespace:
/// what the lean sandbox mounts inside an instance, for a runtime that cannot mount it itself (gVisor).
pub(crate) fn merge_layers(layers: &[PathBuf], at: &Path) -> io::Result<PathBuf> {
    use nix::mount::{mount, MsFlags};
    rootfs::check_lowerdirs(layers).map_err(io::Error::other)?;
    fs::create_dir_all(at)?;
    let lower: Vec<String> = layers.iter().rev().map(|p| p.display().to_string()).collect();
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("overlay"), at, Some("overlay"), flags, Some(format!("lowerdir={}", lower.join(":")).as_str()))
        .map_err(|e| io::Error::other(format!("cannot merge the layers for gVisor at {}: {e}", at.display())))?;
    Ok(at.to_path_buf())
}

/// Unmounts `/sys/fs/cgroup/unified` when it is a cgroup2 mount beside v1 ones and holds controllers.
fn hide_busy_unified_mount() {
    let unified = Path::new("/sys/fs/cgroup/unified");
    let controllers = fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
    if !controllers.trim().is_empty() && Path::new("/sys/fs/cgroup/memory").is_dir() {
        let _ = nix::mount::umount2(unified, nix::mount::MntFlags::MNT_DETACH);
    }
}

impl Drop for OciSandbox {
    fn drop(&mut self) {
        self.layout.remove_server(self.server);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What a bundle is made of, besides the spawn spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSpec {
    /// The root file system: a template of mount points (default image) or an imported image.
    pub rootfs: PathBuf,
    /// Generated `/etc` files bound over the image's (`passwd`, `group`, `hostname`).
    pub etc_files: Vec<(String, PathBuf)>,
    /// Host entries bound at the same place (the default image's `/usr`, `/etc` essentials, …).
    pub host_binds: Vec<PathBuf>,
    /// The group the runtime puts the container under (hierarchy-relative, absolute).
    pub cgroups_path: String,
    /// What `/tmp` is.
    pub tmp: Tmp,
    /// The runtime is gVisor's runsc, whose own kernel runs the instance (see [`seccomp`] for what changes).
    pub gvisor: bool,
    /// Several layers already merged on the host (a read-only overlay stoke mounted), bound at `/opt` in
    /// place of the bundle's own overlay mount, which gVisor does not take; `None`: the bundle mounts it.
    pub merged_layers: Option<PathBuf>,
}

fn bind(source: &Path, destination: &Path, writable: bool) -> Value {
    let mut options = vec!["rbind", "nosuid", "nodev"];
    options.push(if writable { "rw" } else { "ro" });
    json!({"destination": destination, "type": "bind", "source": source, "options": options})
}

/// The bundle's `config.json` for `spec`.
pub fn config(spec: &SpawnSpec, bundle: &BundleSpec, settings: &LeanSettings) -> Value {
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "noexec", "mode=755", "size=64k"]}),
    ];
    mounts.push(match &bundle.tmp {
        Tmp::Memory { size_mb } => json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777", format!("size={size_mb}m")]}),
        Tmp::Bind(dir) => bind(dir, Path::new("/tmp"), true),
    });
    for path in &bundle.host_binds {
        mounts.push(bind(path, path, false));
    }
    for (name, file) in &bundle.etc_files {
        mounts.push(bind(file, &Path::new("/etc").join(name), false));
    }
    mounts.push(bind(&spec.host.task_root, Path::new(TASK_ROOT), false));
    mounts.push(bind(&spec.host.runtime_dir, Path::new(RUNTIME_DIR), false));
    for dir in &spec.host_dirs {
        mounts.push(bind(dir, dir, false));
    }
    // The scheduler makes the account's scratch directory before every start.
    mounts.push(bind(&spec.host.scratch, Path::new(SCRATCH_DIR), true));
    match (spec.layers.as_slice(), &bundle.merged_layers) {
        ([], _) => {}
        ([one], _) => mounts.push(bind(one, Path::new(LAYER_ROOT), false)),
        (_, Some(merged)) => mounts.push(bind(merged, Path::new(LAYER_ROOT), false)),
        (many, None) => {
            let lower: Vec<String> = many.iter().rev().map(|p| p.display().to_string()).collect();
            mounts.push(json!({"destination": LAYER_ROOT, "type": "overlay", "source": "overlay",
                "options": ["ro", "nosuid", "nodev", format!("lowerdir={}", lower.join(":"))]}));
        }
    }
    let mut devices = Vec::new();
    let mut device_rules = Vec::new();
    if let Some(gpu) = &spec.gpu {
        for b in crate::lean::gpu_binds(gpu, spec.image.is_some()) {
            mounts.push(bind(&b.source, &b.target, b.writable));
        }
        if let Some(shm) = &gpu.shm {
            mounts.push(bind(shm, Path::new("/dev/shm"), true));
        }
        // Each node made in the container's /dev and allowed by its device cgroup; no other GPU's.
        for d in &gpu.devices {
            devices.push(json!({"path": d.path, "type": "c", "major": d.major, "minor": d.minor, "fileMode": 0o666,
                "uid": 0, "gid": 0}));
            device_rules.push(json!({"allow": true, "type": "c", "major": d.major, "minor": d.minor, "access": "rw"}));
        }
    }
    let mut args = vec![spec.program.display().to_string()];
    args.extend(spec.args.iter().map(|a| a.to_string_lossy().into_owned()));
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let no_caps: Vec<String> = Vec::new();
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": settings.uid, "gid": settings.gid},
            "args": args,
            "env": env,
            "cwd": spec.cwd,
            "capabilities": {"bounding": no_caps, "effective": no_caps, "inheritable": no_caps,
                             "permitted": no_caps, "ambient": no_caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": spec.open_files, "soft": spec.open_files}],
            "noNewPrivileges": true,
        },
        "root": {"path": bundle.rootfs, "readonly": true},
        "hostname": "stoke",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}],
            "cgroupsPath": bundle.cgroups_path,
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"],
            "seccomp": seccomp(!bundle.gvisor),
        },
    });
    if spec.gpu.is_some() {
        config["linux"]["devices"] = json!(devices);
        // The runtime's own defaults (null, zero, …) stay allowed; everything else is denied first.
        let mut rules = vec![json!({"allow": false, "access": "rwm"})];
        rules.extend(device_rules);
        config["linux"]["resources"] = json!({"devices": rules});
    }
    config
}

/// The lean sandbox's seccomp rules in OCI form: the same calls refused with `EPERM`; with `clone_rules`,
/// also `clone` with any `CLONE_NEW*` flag refused and `clone3` answered `ENOSYS` (so C libraries fall back
/// to `clone`). gVisor gets the refused calls only: its runsc (Debian's build) answers `EPERM` whatever
/// `errnoRet` says, so `clone3` refused would refuse every new thread, and a namespace made with `clone`
/// there is its own kernel's, whose no-capabilities rules apply.
pub fn seccomp(clone_rules: bool) -> Value {
    let names: Vec<&str> = crate::lean::seccomp::denied().into_iter().map(|(n, _)| n).collect();
    let mut rules = vec![json!({"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM})];
    if clone_rules {
        let flags = (0..32).map(|i| 1u32 << i).filter(|bit| crate::lean::seccomp::CLONE_NEW_MASK & bit != 0);
        for bit in flags {
            rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
                "args": [{"index": 0, "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ"}]}));
        }
        rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}));
    }
    json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
           "syscalls": rules})
}

/// A root of mount points for the default image (read-only to the instance): the host's top-level links
/// copied, empty directories and files where binds land, the generated `/etc` files beside them.
fn default_rootfs(root: &Path, spec: &SpawnSpec, host: &dyn HostView) -> io::Result<Vec<PathBuf>> {
    let mut binds = Vec::new();
    fs::create_dir_all(root.join("etc"))?;
    let top = rootfs::HOST_TOP.iter().map(|n| (Path::new("/").join(n), root.join(n)));
    let etc = rootfs::HOST_ETC.iter().map(|n| (Path::new("/etc").join(n), root.join("etc").join(n)));
    for (source, at) in top.chain(etc) {
        // Where a bind lands: a directory or an empty file; a link is copied (it resolves inside).
        match host.entry(&source) {
            HostEntry::Dir => {
                fs::create_dir_all(&at)?;
                binds.push(source);
            }
            HostEntry::File => {
                if !at.exists() {
                    fs::write(&at, b"")?;
                }
                binds.push(source);
            }
            HostEntry::Symlink(target) if fs::symlink_metadata(&at).is_err() => {
                std::os::unix::fs::symlink(target, &at)?;
            }
            HostEntry::Symlink(_) | HostEntry::Missing => {}
        }
    }
    for dir in ["proc", "dev", "tmp", "opt", "var/task", "var/runtime", "var/stoke-scratch"] {
        fs::create_dir_all(root.join(dir))?;
    }
    // OCI runtimes give a tmpfs the mode of the directory it is mounted on.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    for name in ["passwd", "group", "hostname"] {
        let at = root.join("etc").join(name);
        if !at.exists() {
            fs::write(at, b"")?;
        }
    }
    for dir in &spec.host_dirs {
        fs::create_dir_all(root.join(dir.strip_prefix("/").unwrap_or(dir)))?;
    }
    Ok(binds)
}

impl Sandbox for OciSandbox {
    fn kind(&self) -> &'static str {
        "oci"
    }

    fn paths(&self, _host: &InstancePaths) -> InstancePaths {
        crate::lean::instance_view()
    }

    fn isolates_devices(&self) -> bool {
        true
    }

    fn layer_root(&self) -> Option<PathBuf> {
        Some(LAYER_ROOT.into())
    }

    fn instances_memory_bytes(&self) -> Option<u64> {
        self.layout.working_set(self.server)
    }

    fn limit_instances_memory(&self, bytes: u64) -> bool {
        self.layout.limit_memory(self.server, bytes).is_ok()
    }

    fn spawn(&self, spec: &SpawnSpec) -> io::Result<Spawned> {
        if spec.isolated_network {
            return Err(io::Error::other(
                "network none needs the lean sandbox; the oci sandbox uses the host's network",
            ));
        }
        crate::lock(&self.leftovers).retain(|d| fs::remove_dir(d).is_err() && d.exists());
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let limits = Limits {
            memory_bytes: u64::from(spec.memory_mb) * 1024 * 1024,
            cpu_millis: spec.cpu_millis,
            cpu_quota: self.settings.cpu_quota,
            pids: if self.gvisor.is_some() { gvisor_host_pids(self.settings.pids_max) } else { self.settings.pids_max },
        };
        let group = self.layout.create(self.server, id, &limits)?;
        let bundle_dir = self.dir.join("bundles").join(id.to_string());
        let mut ephemeral = None;
        let made = (|| -> io::Result<BundleSpec> {
            let tmp = ephemeral.insert(self.storage.take(spec.ephemeral_mb)?).as_tmp();
            fs::create_dir_all(&bundle_dir)?;
            let etc = bundle_dir.join("etc");
            fs::create_dir_all(&etc)?;
            let passwd = format!(
                "root:x:0:0:root:/root:/sbin/nologin\nsbx_user:x:{}:{}::/tmp:/sbin/nologin\n",
                self.settings.uid, self.settings.gid
            );
            fs::write(etc.join("passwd"), passwd)?;
            fs::write(etc.join("group"), format!("root:x:0:\nsbx_user:x:{}:\n", self.settings.gid))?;
            fs::write(etc.join("hostname"), "stoke\n")?;
            let etc_files =
                ["passwd", "group", "hostname"].iter().map(|n| (n.to_string(), etc.join(n))).collect::<Vec<_>>();
            let (rootfs, host_binds) = match &spec.image {
                Some(image) => {
                    let host: Vec<PathBuf> = rootfs::IMAGE_HOST_ETC
                        .iter()
                        .map(|n| Path::new("/etc").join(n))
                        .filter(|p| p.exists() && image.join(p.strip_prefix("/").unwrap_or(p)).exists())
                        .collect();
                    (image.clone(), host)
                }
                None => {
                    let template = self.dir.join("rootfs-default");
                    let _one_at_a_time = crate::lock(&self.template);
                    let binds = default_rootfs(&template, spec, &RealHost)?;
                    (template, binds)
                }
            };
            let cgroups_path = format!("/{}/s{}/i{id}/c", crate::lean::cgroup::OCI_ROOT, self.server);
            let merged_layers = match (self.gvisor.is_some(), spec.layers.len()) {
                (true, 2..) => Some(merge_layers(&spec.layers, &bundle_dir.join("opt"))?),
                _ => None,
            };
            let gvisor = self.gvisor.is_some();
            Ok(BundleSpec { rootfs, etc_files, host_binds, cgroups_path, tmp, gvisor, merged_layers })
        })();
        let bundle = match made {
            Ok(b) => b,
            Err(e) => {
                group.remove();
                remove_bundle(&bundle_dir);
                return Err(e);
            }
        };
        let config = config(spec, &bundle, &self.settings);
        if let Err(e) = fs::write(bundle_dir.join("config.json"), config.to_string()) {
            group.remove();
            remove_bundle(&bundle_dir);
            return Err(e);
        }
        let state = self.dir.join("state");
        let mut cmd = tokio::process::Command::new(&self.helper);
        cmd.arg(PIDNS_ARG);
        for dir in group.dirs() {
            cmd.arg("--reap").arg(dir);
        }
        cmd.arg("--")
            .arg(&self.runtime)
            .args(&self.runtime_flags)
            .arg("--root")
            .arg(&state)
            .args(["run", "--bundle"])
            .arg(&bundle_dir)
            .arg(format!("stoke-{}-{id}", self.server))
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: runs between fork and exec; prctl and setrlimit are raw syscalls through nix that neither
        // allocate nor lock, and the closure captures nothing.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(crate::lean::jail::SERVER_GONE).map_err(io::Error::from)?;
                setrlimit(Resource::RLIMIT_NOFILE, 4096, 4096).map_err(io::Error::from)?;
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                group.remove();
                remove_bundle(&bundle_dir);
                return Err(e);
            }
        };
        let pid = child.id().ok_or_else(|| io::Error::other("the instance exited before it could be tracked"))?;
        let control = OciControl { pid, group, bundle: bundle_dir, leftovers: self.leftovers.clone(), _tmp: ephemeral };
        Ok(Spawned::from_child(child, Arc::new(control)))
    }
}

struct OciControl {
    /// The `stoke __pidns` holder; it leads the process group, the runtime is its child.
    pid: u32,
    group: Group,
    bundle: PathBuf,
    leftovers: Arc<Mutex<Vec<PathBuf>>>,
    /// Its `/tmp`, gone with it.
    _tmp: Option<Ephemeral>,
}

impl InstanceControl for OciControl {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn kill(&self) {
        // The runtime is PID 1 of the holder's namespace: killing the holder's group kills it, and with it the
        // container.
        self.group.freeze(false);
        let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
    }

    fn peak_memory_bytes(&self) -> Option<u64> {
        self.group.peak_memory()
    }

    fn processes(&self) -> Vec<u32> {
        self.group.pids()
    }

    fn out_of_memory(&self) -> bool {
        // The kernel counts an OOM kill in the victim's own group, which the runtime removes when the
        // container ends (cgroup v1 does not count it upwards); that stoke's group above reached its limit
        // says the same for an instance that was killed.
        self.group.oom_kills() > 0 || self.group.hit_memory_limit()
    }

    fn freeze(&self, frozen: bool) -> bool {
        self.group.freeze(frozen)
    }

    fn opened_connection(&self, local: SocketAddr, peer: SocketAddr) -> bool {
        let mut pids = self.group.pids();
        pids.push(self.pid);
        crate::peer::opened_by_any(&pids, local, peer)
    }
}

impl Drop for OciControl {
    fn drop(&mut self) {
        self.group.remove_or_leave(&self.leftovers);
        remove_bundle(&self.bundle);
    }
}

/// Removes a bundle's directory, unmounting the layers merged there first (gVisor's).
fn remove_bundle(dir: &Path) {
    let merged = dir.join("opt");
    if merged.is_dir() {
        let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = fs::remove_dir_all(dir);
}

/// Entry point of `stoke __pidns [--reap <cgroup dir>]... -- <runtime> <args>`: runs the runtime as PID 1 of
/// a new PID namespace, tied to this process (and so to the server), and exits the way it did; if the
/// server dies first, removes the `--reap` cgroup trees with every process in them. Never returns.
pub fn pidns_main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ! {
    let mut args = args.into_iter();
    let mut reap = Vec::new();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--") => break,
            Some("--reap") => match args.next() {
                Some(dir) => reap.push(PathBuf::from(dir)),
                None => {
                    eprintln!("stoke __pidns: option --reap needs a value");
                    std::process::exit(125)
                }
            },
            _ => {
                eprintln!("stoke __pidns: unknown option {} (expected --reap <dir> or --)", arg.to_string_lossy());
                std::process::exit(125)
            }
        }
    }
    crate::lean::jail::hold_in_pid_namespace(&args.collect::<Vec<_>>(), reap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SpawnSpec {
        SpawnSpec {
            host: InstancePaths {
                task_root: "/d/run/code/abc".into(),
                runtime_dir: "/d/run/runtimes".into(),
                scratch: "/d/run/scratch/1".into(),
            },
            host_dirs: vec!["/root/.pyenv/versions/3.11.7".into()],
            program: "/usr/bin/python3".into(),
            args: vec!["-S".into(), "/var/runtime/boot.py".into()],
            env: vec![("AWS_LAMBDA_RUNTIME_API".into(), "127.0.0.1:4000".into())],
            cwd: "/var/task".into(),
            memory_mb: 256,
            ephemeral_mb: 512,
            cpu_millis: 144,
            open_files: 1024,
            layers: vec!["/d/layers/a".into(), "/d/layers/b".into()],
            image: None,
            isolated_network: false,
            runtime_api_port: 4000,
            gpu: None,
        }
    }

    fn bundle() -> BundleSpec {
        BundleSpec {
            rootfs: "/d/run/oci/rootfs-default".into(),
            etc_files: vec![("passwd".into(), "/d/run/oci/bundles/1/etc/passwd".into())],
            host_binds: vec!["/usr".into(), "/etc/ssl".into()],
            cgroups_path: "/stoke-oci/s9/i1/c".into(),
            tmp: Tmp::Memory { size_mb: 64 },
            gvisor: false,
            merged_layers: None,
        }
    }

    #[test]
    fn gvisor_gets_its_flags_and_room_for_the_sentry() {
        assert!(gvisor_host_pids(1024) > 2 * 1024, "the sentry's stubs and tracers fit beside the guest's tasks");
        assert_eq!(gvisor_flags(None), ["--network=host", "--oci-seccomp"]);
        assert_eq!(gvisor_flags(Some("systrap")).last().map(String::as_str), Some("--platform=systrap"));
        // Several layers: gVisor binds the overlay stoke merged on the host instead of mounting one itself.
        let mut layered = spec();
        layered.layers = vec!["/d/layers/a".into(), "/d/layers/b".into()];
        let opt = |b: &BundleSpec| {
            let c = config(&layered, b, &LeanSettings::default());
            c["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/opt").cloned().unwrap()
        };
        assert_eq!(opt(&bundle())["type"], "overlay");
        let merged = BundleSpec { merged_layers: Some("/d/run/oci/bundles/1/opt".into()), ..bundle() };
        assert_eq!(
            (opt(&merged)["type"].as_str(), opt(&merged)["source"].as_str()),
            (Some("bind"), Some("/d/run/oci/bundles/1/opt"))
        );
    }

    #[test]
    fn a_gpu_instance_gets_its_devices_allowed_and_nothing_else() {
        use crate::gpu::{DeviceNode, GpuPlan};
        let mut with_gpu = spec();
        with_gpu.image = Some("/d/images/cuda/rootfs".into());
        with_gpu.gpu = Some(GpuPlan {
            gpus: vec![1],
            devices: vec![
                DeviceNode { path: "/dev/nvidia1".into(), major: 195, minor: 1 },
                DeviceNode { path: "/dev/nvidiactl".into(), major: 195, minor: 255 },
            ],
            files: vec!["/usr/lib/x86_64-linux-gnu/libcuda.so.1".into()],
            writable: vec!["/d/run/mps/1/pipe".into()],
            shm: Some("/d/run/mps/1/shm".into()),
            env: Vec::new(),
            enforced: true,
        });
        let c = config(&with_gpu, &bundle(), &LeanSettings::default());
        let devices = c["linux"]["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0]["path"], "/dev/nvidia1");
        assert_eq!(devices[0]["major"], 195);
        let rules = c["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(rules[0], json!({"allow": false, "access": "rwm"}), "everything else denied first");
        assert_eq!(rules[1], json!({"allow": true, "type": "c", "major": 195, "minor": 1, "access": "rw"}));
        let mounts = c["mounts"].as_array().unwrap();
        let at = |dest: &str| mounts.iter().find(|m| m["destination"] == dest).cloned();
        let lib = at("/usr/lib/x86_64-linux-gnu/libcuda.so.1").expect("the driver library, on an imported image");
        assert!(lib["options"].as_array().unwrap().contains(&json!("ro")));
        assert!(at("/d/run/mps/1/pipe").unwrap()["options"].as_array().unwrap().contains(&json!("rw")));
        assert_eq!(at("/dev/shm").unwrap()["source"], "/d/run/mps/1/shm");
        // On the default image the host's /usr is there already: the library is not bound again.
        with_gpu.image = None;
        let c = config(&with_gpu, &bundle(), &LeanSettings::default());
        assert!(!c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/usr/lib/x86_64-linux-gnu/libcuda.so.1"));
    }

    #[test]
    fn the_bundle_runs_the_runtime_unprivileged_on_a_read_only_root() {
        let c = config(&spec(), &bundle(), &LeanSettings::default());
        let p = &c["process"];
        assert_eq!(p["args"], json!(["/usr/bin/python3", "-S", "/var/runtime/boot.py"]));
        assert_eq!(p["env"], json!(["AWS_LAMBDA_RUNTIME_API=127.0.0.1:4000"]));
        assert_eq!((p["user"]["uid"].as_u64(), p["user"]["gid"].as_u64()), (Some(993), Some(990)));
        assert_eq!(p["noNewPrivileges"], true);
        for set in ["bounding", "effective", "inheritable", "permitted", "ambient"] {
            assert_eq!(p["capabilities"][set], json!([]), "{set}");
        }
        assert_eq!(c["root"], json!({"path": "/d/run/oci/rootfs-default", "readonly": true}));
        assert_eq!(c["linux"]["cgroupsPath"], "/stoke-oci/s9/i1/c");
        assert!(c["linux"].get("resources").is_none(), "limits live on stoke's group above the container's");
        let ns: Vec<&str> =
            c["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
        assert_eq!(ns, ["pid", "mount", "ipc", "uts"], "the host's network: the Runtime API is on loopback");
    }

    #[test]
    fn mounts_follow_the_lean_sandbox() {
        let c = config(&spec(), &bundle(), &LeanSettings::default());
        let mounts = c["mounts"].as_array().unwrap();
        let at = |d: &str| mounts.iter().find(|m| m["destination"] == d).unwrap_or_else(|| panic!("no mount at {d}"));
        assert_eq!(at("/tmp")["options"], json!(["nosuid", "nodev", "mode=1777", "size=64m"]));
        let on_disk = BundleSpec { tmp: Tmp::Bind("/d/run/ephemeral/3".into()), ..bundle() };
        let c = config(&spec(), &on_disk, &LeanSettings::default());
        let tmp = c["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/tmp").unwrap().clone();
        assert_eq!(tmp["source"], "/d/run/ephemeral/3");
        assert_eq!(tmp["options"], json!(["rbind", "nosuid", "nodev", "rw"]));
        assert_eq!(at("/var/task")["source"], "/d/run/code/abc");
        assert!(at("/var/task")["options"].as_array().unwrap().contains(&json!("ro")));
        assert!(at("/var/stoke-scratch")["options"].as_array().unwrap().contains(&json!("rw")));
        assert!(at("/usr")["options"].as_array().unwrap().contains(&json!("ro")));
        assert_eq!(at("/etc/passwd")["source"], "/d/run/oci/bundles/1/etc/passwd");
        assert_eq!(at("/root/.pyenv/versions/3.11.7")["type"], "bind");
        let opt = at("/opt");
        assert_eq!(opt["type"], "overlay");
        assert!(opt["options"].as_array().unwrap().contains(&json!("lowerdir=/d/layers/b:/d/layers/a")));
        let mut one = spec();
        one.layers.truncate(1);
        let c = config(&one, &bundle(), &LeanSettings::default());
        let opt = c["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/opt").unwrap().clone();
        assert_eq!(opt["source"], "/d/layers/a");
    }

    #[test]
    fn seccomp_refuses_what_the_lean_filter_refuses() {
        let s = seccomp(true);
        assert_eq!(s["defaultAction"], "SCMP_ACT_ALLOW");
        let rules = s["syscalls"].as_array().unwrap();
        let names = rules[0]["names"].as_array().unwrap();
        for call in ["mount", "ptrace", "unshare", "setns", "bpf", "keyctl", "kexec_load"] {
            assert!(names.contains(&json!(call)), "{call}");
        }
        let clone_rules = rules.iter().filter(|r| r["names"] == json!(["clone"])).count();
        assert_eq!(clone_rules, 8, "one rule per CLONE_NEW* flag");
        assert!(rules.iter().any(|r| r["names"] == json!(["clone3"]) && r["errnoRet"] == libc::ENOSYS));
        let gvisor = seccomp(false);
        let rules = gvisor["syscalls"].as_array().unwrap();
        assert_eq!(rules.len(), 1, "gVisor: the refused calls only, no clone or clone3 rules");
        assert_eq!(rules[0]["names"], s["syscalls"][0]["names"], "the same calls refused");
        let c = config(&spec(), &BundleSpec { gvisor: true, ..bundle() }, &LeanSettings::default());
        assert_eq!(c["linux"]["seccomp"], gvisor);
    }

    #[test]
    fn the_default_rootfs_is_made_of_mount_points() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        let binds = default_rootfs(&root, &spec(), &RealHost).unwrap();
        assert!(binds.contains(&PathBuf::from("/usr")));
        for p in ["proc", "dev", "tmp", "opt", "var/task", "var/runtime", "etc/passwd", "root/.pyenv/versions/3.11.7"] {
            assert!(root.join(p).exists(), "{p}");
        }
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(root.join("tmp")).unwrap().permissions().mode() & 0o7777, 0o1777);
        assert_eq!(fs::read_dir(root.join("var/task")).unwrap().count(), 0, "no content of its own");
        // Made again for the next instance: nothing to do, nothing breaks.
        assert_eq!(default_rootfs(&root, &spec(), &RealHost).unwrap(), binds);
    }
}
