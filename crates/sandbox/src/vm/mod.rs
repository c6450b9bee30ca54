//! The `vm` backend: each instance in a KVM microVM of its own, run by QEMU's `microvm` machine (a
//! package on every distribution, no firmware, virtio over MMIO, direct kernel boot).
//!
//! - The guest kernel is a packaged one (Debian's `linux-image-amd64`); stoke unpacks its ELF image once
//!   (booting it directly skips the decompressor) and builds, at start, one initramfs holding busybox,
//!   stoke's init, the kernel modules the guest needs (virtio, its network card, 9p) and the `/etc` files an
//!   instance gets. Each instance adds a few hundred bytes to it: what to mount and run.
//! - The host's `/usr` (the default image), the function's code, stoke's runtime files and the layers are
//!   shared read-only over 9p by QEMU itself (no daemon); the account's scratch directory read-write;
//!   `/tmp` is a disk of the VM's own.
//! - The guest's only network peer is the Runtime API: QEMU's user network with `restrict=on` drops every
//!   packet but the connections to one forwarded address, which QEMU hands to a relay it starts per
//!   connection; the relay is a process of the instance's group, so the Runtime API's check that a
//!   connection is the instance's own holds as on the other sandboxes.
//! - Memory is the VM's memory; vCPUs follow the CPU share (itself proportional to memory). The function
//!   runs as an unprivileged user with no capabilities and no new privileges inside the guest; when it
//!   exits, the init writes its exit status and the guest's OOM kills to a one-block status disk and powers
//!   the VM off. QEMU is tied to the server (`PR_SET_PDEATHSIG`) and filters its own system calls.
//!
//! - Generic VMs are booted before their function is known and given it through a shared slot directory
//!   and their console (see [`VmSandbox::keep_generic`](crate::Sandbox::keep_generic)).
//! - VMs are restored from a snapshot of a booted guest rather than booted, once one of their shape is
//!   saved ([`snapshot`]).
//!
//! Without `/dev/kvm` (or where the host's KVM cannot run a standard guest kernel, as PVM's) it refuses to
//! start unless told to emulate (`Accel::Tcg`), which is correct and many times slower.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use std::{fs, io};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

pub mod image;
pub mod snapshot;

use crate::lean::cgroup::{Group, Layout, Limits};
use crate::lean::{rootfs, LeanSettings, LAYER_ROOT, RUNTIME_DIR, SCRATCH_DIR, TASK_ROOT};
use crate::{GenericSpec, InstanceControl, InstancePaths, Sandbox, SpawnSpec, Spawned};
pub use image::Accel;
use image::{Entry, Instance, Machine};
use snapshot::{Shape, Snapshot};

/// How the vm sandbox is asked to accelerate its VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelChoice {
    /// KVM, or refuse to start where it cannot be used.
    #[default]
    Auto,
    Kvm,
    /// Emulated by QEMU: slow, for hosts without usable hardware virtualisation.
    Tcg,
}

/// The vm sandbox's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSettings {
    pub accel: AccelChoice,
    /// The guest kernel (a `vmlinuz` whose modules are installed); `None`: the newest in `/boot` with 9p.
    pub kernel: Option<PathBuf>,
    /// Restore VMs from snapshots of booted guests rather than boot each (see [`snapshot`]).
    pub snapshots: bool,
}

impl Default for VmSettings {
    fn default() -> Self {
        VmSettings { accel: AccelChoice::default(), kernel: None, snapshots: true }
    }
}

/// Why the vm sandbox cannot run here.
#[derive(Debug)]
pub struct VmUnavailable(pub String);

impl std::fmt::Display for VmUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for VmUnavailable {}

fn unavailable(why: impl Into<String>) -> VmUnavailable {
    VmUnavailable(why.into())
}

const BUSYBOX: &str = "/bin/busybox";

/// Instances in QEMU microVMs.
pub struct VmSandbox {
    qemu: PathBuf,
    accel: Accel,
    kernel: PathBuf,
    release: String,
    /// The initramfs every instance starts from.
    base: Vec<u8>,
    dir: PathBuf,
    next: AtomicU64,
    /// Instance directories that could not be removed yet (a mount still busy), tried again later.
    leftovers: Arc<Mutex<Vec<PathBuf>>>,
    host_top: Vec<PathBuf>,
    layout: Layout,
    server: u32,
    settings: LeanSettings,
    /// The host's TSC frequency, told to emulated guests.
    tsc_khz: Option<u32>,
    /// The generic kinds to keep, and the VMs ready of each.
    pool: Mutex<Vec<(GenericSpec, Vec<GenericVm>)>>,
    /// Each shape's snapshot; `None` when VMs always boot.
    snapshots: Option<Mutex<std::collections::HashMap<Shape, snapshot::Status>>>,
    /// An empty directory: what a restored VM's unused 9p devices share.
    empty: PathBuf,
    /// Itself, for the threads that refill the pool.
    me: std::sync::Weak<VmSandbox>,
}

/// What QEMU itself may use beyond its guest's memory (its code, the emulator's translation cache, the
/// devices' buffers), in MB: the instance's group holds the guest's memory plus this.
const QEMU_OVERHEAD_MB: u64 = 192;
/// The emulator's translation cache, in MB (QEMU's default is a GiB per VM).
const TCG_CACHE_MB: u32 = 32;

impl VmSandbox {
    /// Checks what the sandbox needs (QEMU, a guest kernel with its modules, a static busybox, usable KVM
    /// unless emulation was asked for) and builds the guest's image under `run_dir/vm`.
    pub fn new(settings: &VmSettings, run_dir: &Path, lean: &LeanSettings) -> Result<Arc<VmSandbox>, VmUnavailable> {
        if !nix::unistd::geteuid().is_root() {
            return Err(unavailable("the vm sandbox needs root (QEMU shares the function's files as their owner)"));
        }
        let layout = Layout::detect()
            .ok_or_else(|| unavailable("the vm sandbox needs the memory, cpu and pids cgroup controllers"))?;
        let server = std::process::id();
        layout.prepare(server).map_err(|e| unavailable(format!("cannot prepare the VMs' cgroups: {e}")))?;
        let qemu = crate::find_program("qemu-system-x86_64").ok_or_else(|| {
            unavailable("the vm sandbox needs QEMU: apt-get install qemu-system-x86 (its microvm machine runs the VMs)")
        })?;
        let accel = choose_accel(settings.accel)?;
        let (kernel, release) = match &settings.kernel {
            Some(k) => {
                let release = release_of(k).ok_or_else(|| {
                    unavailable(format!(
                        "the guest kernel {} is not a vmlinuz-<release> with its modules in /lib/modules/<release>",
                        k.display()
                    ))
                })?;
                (k.clone(), release)
            }
            None => find_kernel().ok_or_else(|| {
                unavailable(
                    "the vm sandbox needs a guest kernel with virtio and 9p modules: apt-get install \
                     linux-image-amd64 (Debian's cloud kernel has no 9p), or name one with --vm-kernel",
                )
            })?,
        };
        let busybox = fs::read(BUSYBOX).map_err(|_| {
            unavailable("the vm sandbox needs a static busybox for its guests: apt-get install busybox-static")
        })?;
        if !image::static_elf(&busybox) {
            return Err(unavailable(
                "/bin/busybox is linked dynamically; the guests need the static one: apt-get install busybox-static",
            ));
        }
        let dir = run_dir.join("vm");
        for fresh in ["instances", "snapshots", "empty"] {
            let _ = fs::remove_dir_all(dir.join(fresh));
            fs::create_dir_all(dir.join(fresh))
                .map_err(|e| unavailable(format!("cannot prepare {}: {e}", dir.join(fresh).display())))?;
        }
        // Booting the ELF image directly (PVH) skips the compressed kernel's decompressor: a second under
        // emulation. Fall back to the compressed one where it cannot be unpacked.
        let kernel = match unpack_kernel(&kernel, &dir.join(format!("vmlinux-{release}"))) {
            Ok(elf) => elf,
            Err(e) => {
                tracing::warn!(kernel = %kernel.display(), error = %e, "booting the compressed guest kernel");
                kernel
            }
        };
        let modules_dir = Path::new("/lib/modules").join(&release);
        let dep = fs::read_to_string(modules_dir.join("modules.dep")).map_err(|e| {
            unavailable(format!("cannot read the guest kernel's modules.dep in {}: {e}", modules_dir.display()))
        })?;
        let order = image::module_order(&dep, image::MODULES).map_err(unavailable)?;
        let host_top: Vec<PathBuf> = rootfs::HOST_TOP
            .iter()
            .map(|n| Path::new("/").join(n))
            .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
            .collect();
        let base = base_image(busybox, &modules_dir, &order, lean)
            .map_err(|e| unavailable(format!("cannot build the guests' initramfs: {e}")))?;
        let empty = dir.join("empty");
        Ok(Arc::new_cyclic(|me| VmSandbox {
            qemu,
            accel,
            kernel,
            release,
            base,
            dir,
            next: AtomicU64::new(1),
            leftovers: Arc::default(),
            host_top,
            layout,
            server,
            settings: lean.clone(),
            tsc_khz: (accel == Accel::Tcg).then(tsc_khz).flatten(),
            pool: Mutex::new(Vec::new()),
            snapshots: settings.snapshots.then(Mutex::default),
            empty,
            me: me.clone(),
        }))
    }

    /// One line for the start-up message.
    pub fn describe(&self) -> String {
        let accel = match self.accel {
            Accel::Kvm => "KVM",
            Accel::Tcg => "EMULATED (TCG, no hardware virtualisation: slow)",
        };
        let snapshots = if self.snapshots.is_some() { "restored from snapshots" } else { "booted (no snapshots)" };
        format!(
            "QEMU microvm at {}, {accel}, guest kernel {}, initramfs {} KiB, VMs {snapshots}, {}",
            self.qemu.display(),
            self.release,
            self.base.len() / 1024,
            self.layout.describe()
        )
    }

    pub fn accel(&self) -> Accel {
        self.accel
    }
}

/// The accelerator `choice` resolves to on this host, or why the VMs cannot run.
fn choose_accel(choice: AccelChoice) -> Result<Accel, VmUnavailable> {
    let kvm = fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map(drop).map_err(|e| e.to_string());
    decide_accel(choice, kvm, Path::new("/sys/module/kvm_pvm").exists()).map_err(unavailable)
}

/// [`choose_accel`]'s rule: emulation only when asked; KVM when `/dev/kvm` opens, except that `auto` will
/// not use a PVM host's KVM (`pvm`), which runs only PVM guest kernels and hangs a standard one.
fn decide_accel(choice: AccelChoice, kvm: Result<(), String>, pvm: bool) -> Result<Accel, String> {
    if choice == AccelChoice::Tcg {
        return Ok(Accel::Tcg);
    }
    let hint = "or pass --vm-accel tcg to emulate the VMs (correct, many times slower)";
    if let Err(e) = kvm {
        return Err(format!(
            "the vm sandbox needs hardware virtualisation and /dev/kvm cannot be opened ({e}): load kvm_intel or \
             kvm_amd (on a cloud VM, enable nested virtualisation), {hint}"
        ));
    }
    if choice == AccelChoice::Auto && pvm {
        return Err(format!(
            "this host's /dev/kvm is kvm_pvm, which runs only PVM guest kernels (a standard one hangs): use a host \
             with kvm_intel or kvm_amd, pass --vm-accel kvm with a PVM guest kernel (--vm-kernel), {hint}"
        ));
    }
    Ok(Accel::Kvm)
}

/// The host's TSC frequency in kHz, measured against the monotonic clock over 50 ms.
fn tsc_khz() -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        let started = std::time::Instant::now();
        // SAFETY: `rdtsc` reads the time-stamp counter, which every x86-64 processor has; nothing else.
        #[allow(unused_unsafe)]
        let before = unsafe { core::arch::x86_64::_rdtsc() };
        std::thread::sleep(std::time::Duration::from_millis(50));
        // SAFETY: as above.
        #[allow(unused_unsafe)]
        let after = unsafe { core::arch::x86_64::_rdtsc() };
        let micros = started.elapsed().as_micros().max(1);
        let khz = u128::from(after.saturating_sub(before)) * 1000 / micros;
        // Rounded to a MHz: the kernel refines it, and a steady value keeps guests alike.
        u32::try_from((khz + 500) / 1000 * 1000).ok().filter(|k| *k > 100_000)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// `vmlinuz-<release>`'s release, when its modules are installed.
fn release_of(kernel: &Path) -> Option<String> {
    let name = kernel.file_name()?.to_str()?;
    let release = name.strip_prefix("vmlinuz-").unwrap_or(name);
    Path::new("/lib/modules").join(release).join("modules.dep").is_file().then(|| release.to_string())
}

/// The newest kernel in `/boot` whose installed modules include 9p.
fn find_kernel() -> Option<(PathBuf, String)> {
    let mut found: Vec<(PathBuf, String)> = fs::read_dir("/boot")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| Some((p.clone(), release_of(&p)?)))
        .filter(|(_, r)| Path::new("/lib/modules").join(r).join("kernel/fs/9p").is_dir())
        .collect();
    found.sort_by(|a, b| a.1.cmp(&b.1));
    found.pop()
}

/// Unpacks the ELF kernel inside compressed kernel `bz` into `to` (kept there for the next start).
fn unpack_kernel(bz: &Path, to: &Path) -> io::Result<PathBuf> {
    let data = fs::read(bz)?;
    let stamp = format!("{}", data.len());
    let stamp_file = to.with_extension("source");
    if to.is_file() && fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(to.to_path_buf());
    }
    let formats: [(&[u8], &str); 3] =
        [(b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x1f\x8b\x08\x00", "gzip")];
    for (magic, tool) in formats {
        let Some(at) = data.windows(magic.len()).position(|w| w == magic) else { continue };
        let Some(tool_path) = crate::find_program(tool) else { continue };
        let mut child = std::process::Command::new(tool_path)
            .arg("-dc")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped");
        let payload = data[at..].to_vec();
        // What follows the payload in the image is not the compressor's: its complaint is ignored, the ELF
        // header checked instead.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&payload);
        });
        let mut elf = Vec::new();
        child.stdout.take().expect("piped").read_to_end(&mut elf)?;
        let _ = child.wait();
        let _ = writer.join();
        if elf.starts_with(b"\x7fELF") {
            let tmp = to.with_extension("tmp");
            fs::write(&tmp, &elf)?;
            fs::rename(&tmp, to)?;
            fs::write(stamp_file, stamp)?;
            return Ok(to.to_path_buf());
        }
    }
    Err(io::Error::other("no compressed ELF kernel found in it"))
}

/// The initramfs every guest starts from.
fn base_image(busybox: Vec<u8>, modules_dir: &Path, order: &[String], lean: &LeanSettings) -> io::Result<Vec<u8>> {
    let mut entries: Vec<(String, Entry)> = Vec::new();
    for dir in ["stoke", "stoke/modules", "proc", "sys", "dev", "tmp", "etc", "var", "root", "opt"] {
        entries.push((dir.into(), Entry::Dir));
    }
    entries.push(("stoke/busybox".into(), Entry::File { data: busybox, executable: true }));
    entries.push(("stoke/sh".into(), Entry::Symlink("busybox".into())));
    entries.push(("init".into(), Entry::File { data: image::INIT.as_bytes().to_vec(), executable: true }));
    let mut names = String::new();
    for path in order {
        let name = path.rsplit('/').next().unwrap_or(path);
        let (name, data) = match name.rsplit_once('.') {
            Some((stem, "xz")) => (stem.to_string(), decompress("xz", &modules_dir.join(path))?),
            Some((stem, "zst")) => (stem.to_string(), decompress("zstd", &modules_dir.join(path))?),
            _ => (name.to_string(), fs::read(modules_dir.join(path))?),
        };
        names.push_str(&name);
        names.push('\n');
        entries.push((format!("stoke/modules/{name}"), Entry::File { data, executable: false }));
    }
    entries.push(("stoke/modules/order".into(), Entry::File { data: names.into_bytes(), executable: false }));
    for top in rootfs::HOST_TOP {
        let host = Path::new("/").join(top);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&host)?.display().to_string();
                entries.push((top.to_string(), Entry::Symlink(target)));
            }
            Ok(m) if m.is_dir() => entries.push((top.to_string(), Entry::Dir)),
            _ => {}
        }
    }
    for name in rootfs::HOST_ETC {
        copy_tree(&Path::new("/etc").join(name), &format!("etc/{name}"), &mut entries, 0)?;
    }
    let (passwd, group) = image::users(lean.uid, lean.gid);
    entries.push(("etc/passwd".into(), Entry::File { data: passwd.into_bytes(), executable: false }));
    entries.push(("etc/group".into(), Entry::File { data: group.into_bytes(), executable: false }));
    entries.push(("etc/hostname".into(), Entry::File { data: b"stoke\n".to_vec(), executable: false }));
    image::cpio(&entries).map_err(io::Error::other)
}

/// A sparse disk image at `path` with an empty ext4 file system of `mb` usable, formatted as the lean
/// sandbox formats its `/tmp` disks.
fn tmp_image(path: &Path, mb: u32) -> io::Result<()> {
    fs::File::create(path)?.set_len(crate::lean::ephemeral::image_mb(mb) * 1024 * 1024)?;
    crate::lean::ephemeral::format(path)
}

fn decompress(tool: &str, path: &Path) -> io::Result<Vec<u8>> {
    let out = std::process::Command::new(tool).arg("-dc").arg(path).stderr(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!("{tool} cannot unpack {}", path.display())));
    }
    Ok(out.stdout)
}

/// Copies host file, link or directory `host` into the archive at `at` (regular files, links and
/// directories that anyone may read; nothing past a few levels down).
fn copy_tree(host: &Path, at: &str, entries: &mut Vec<(String, Entry)>, depth: usize) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(host) else { return Ok(()) };
    let kind = meta.file_type();
    // What only root may read on the host (TLS private keys) stays there.
    if !kind.is_symlink() && meta.permissions().mode() & 0o004 == 0 {
        return Ok(());
    }
    if kind.is_symlink() {
        entries.push((at.into(), Entry::Symlink(fs::read_link(host)?.display().to_string())));
    } else if kind.is_file() {
        let executable = meta.permissions().mode() & 0o111 != 0;
        entries.push((at.into(), Entry::File { data: fs::read(host)?, executable }));
    } else if kind.is_dir() && depth < 4 {
        entries.push((at.into(), Entry::Dir));
        let mut children: Vec<_> = fs::read_dir(host)?.flatten().map(|e| e.file_name()).collect();
        children.sort();
        for c in children {
            let name = c.to_string_lossy();
            copy_tree(&host.join(&c), &format!("{at}/{name}"), entries, depth + 1)?;
        }
    }
    Ok(())
}

impl Sandbox for VmSandbox {
    fn kind(&self) -> &'static str {
        "vm"
    }

    fn paths(&self, _host: &InstancePaths) -> InstancePaths {
        crate::lean::instance_view()
    }

    fn isolates_network(&self) -> bool {
        true
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

    /// Keeps generic VMs of each kind booted: a VM of [`GENERIC_MEMORY_MB`] with its `/tmp`, the host's
    /// image and the kind's runtime files mounted, waiting for its function. (A kind's pre-started runtime
    /// is not started in a VM: its function's runtime starts when it is assigned.)
    fn keep_generic(&self, kinds: Vec<GenericSpec>) {
        let kinds: Vec<GenericSpec> = kinds.into_iter().filter(|k| k.count > 0).collect();
        let names: Vec<String> = kinds.iter().map(|k| k.name.clone()).collect();
        let old =
            std::mem::replace(&mut *crate::lock(&self.pool), kinds.into_iter().map(|k| (k, Vec::new())).collect());
        for vm in old.into_iter().flat_map(|(_, ready)| ready) {
            self.discard(vm);
        }
        for name in names {
            self.refill(&name, Duration::ZERO);
        }
    }

    fn generic_ready(&self) -> Vec<(String, usize)> {
        crate::lock(&self.pool).iter().map(|(k, ready)| (k.name.clone(), ready.len())).collect()
    }

    fn snapshots_ready(&self) -> Vec<String> {
        let Some(snapshots) = &self.snapshots else { return Vec::new() };
        let mut names: Vec<String> = crate::lock(snapshots)
            .values()
            .filter_map(|s| match s {
                snapshot::Status::Ready(s) => Some(s.name.clone()),
                _ => None,
            })
            .collect();
        names.sort();
        names
    }

    fn spawn(&self, spec: &SpawnSpec) -> io::Result<Spawned> {
        if spec.image.is_some() {
            return Err(io::Error::other(
                "base images do not run on the vm sandbox yet: run this function on the lean or oci sandbox",
            ));
        }
        if spec.gpu.is_some() {
            return Err(io::Error::other("GPUs are not passed to VMs: run GPU functions on the lean or oci sandbox"));
        }
        self.retry_leftovers();
        if let Some((name, vm)) = self.take_generic(spec) {
            self.refill(&name, REFILL_DELAY);
            match self.assign(vm, spec) {
                Ok(spawned) => return Ok(spawned),
                Err(e) => tracing::warn!(kind = %name, error = %e, "a generic VM could not take its function"),
            }
        }
        let memory_mb = spec.memory_mb.max(128);
        let shape = Shape { memory_mb, vcpus: vcpus(spec.cpu_millis), tmp_mb: spec.ephemeral_mb.max(1) };
        let snapshot = self.snapshot_for(shape);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join("instances").join(id.to_string());
        let group = self.layout.create(self.server, id, &self.limits(memory_mb, spec.cpu_millis))?;
        let started = self.prepare(spec, &dir, snapshot).and_then(|(machine, resume)| {
            let child = match resume {
                None => self.start_qemu(&machine, &dir, &group, Stdio::null())?,
                // Its console's input closes once it has its script: the function reads none.
                Some(resume) => self.restore(&machine, &dir, &group, &resume)?.0,
            };
            Ok((machine, child))
        });
        match started {
            Ok((machine, child)) => self.spawned(child, group, &machine, dir),
            Err(e) => {
                group.remove();
                remove_instance_dir(&dir);
                if snapshot_used(&e) {
                    // The VM boots instead, and so do later ones of its shape.
                    tracing::warn!(snapshot = %shape.name(), error = %e, "cannot restore a VM: booting it");
                    self.snapshot_failed(shape);
                    return self.spawn(spec);
                }
                Err(e)
            }
        }
    }
}

/// The memory of generic VMs, in MB: Lambda's default (and smallest) size, which most functions keep.
/// A function of another size starts a VM of its own.
const GENERIC_MEMORY_MB: u32 = 128;
/// The `/tmp` of generic VMs, in MB: Lambda's default ephemeral storage.
const GENERIC_TMP_MB: u32 = 512;
/// How long after a generic VM is taken its replacement starts (not on the cold start's CPU).
const REFILL_DELAY: Duration = Duration::from_millis(50);
/// Where a generic VM mounts its slot: the host directory its function's code, layers and scratch
/// directory are bound into when it is given one.
const GUEST_SLOT: &str = "/stoke/slot";

/// What a VM restored from a snapshot is sent once it runs ([`image::restored_script`]).
struct Resume {
    snapshot: Arc<Snapshot>,
    /// Its shares as the guest mounts them: (tag, guest path, writable).
    shares: Vec<(String, PathBuf, bool)>,
    tmp_mb: u32,
    /// Its command, or a generic VM's wait for one.
    then: String,
}

/// Whether `e` is a restore's failure (marked by [`VmSandbox::restore`]), after which the VM boots.
fn snapshot_used(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<RestoreFailed>())
}

#[derive(Debug)]
struct RestoreFailed(String);

impl std::fmt::Display for RestoreFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "restoring the VM's snapshot failed: {}", self.0)
    }
}

impl std::error::Error for RestoreFailed {}

/// vCPUs of a VM with `cpu_millis` of CPU share: one per 1000, at least one, at most the host's.
fn vcpus(cpu_millis: u32) -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
    cpu_millis.div_ceil(1000).clamp(1, cpus)
}

/// How a VM comes up.
enum Boot<'a> {
    /// Booted, with this script as its instance's part of the initramfs.
    Script(&'a str),
    /// Booted to be saved as a snapshot: it waits before mounting anything; QMP saves it.
    ToSave,
    /// Restored from a snapshot; QMP says when it runs.
    Restore(&'a Snapshot),
}

/// A generic VM waiting for its function.
struct GenericVm {
    child: tokio::process::Child,
    group: Group,
    dir: PathBuf,
    machine: Machine,
    /// Its console's input, where its assignment goes.
    assign: fs::File,
}

impl VmSandbox {
    fn limits(&self, memory_mb: u32, cpu_millis: u32) -> Limits {
        Limits {
            memory_bytes: (u64::from(memory_mb) + QEMU_OVERHEAD_MB) * 1024 * 1024,
            cpu_millis,
            cpu_quota: self.settings.cpu_quota,
            pids: self.settings.pids_max,
        }
    }

    /// Groups and directories left by instances whose processes took a moment to go.
    fn retry_leftovers(&self) {
        crate::lock(&self.leftovers).retain(|d| {
            if d.starts_with(&self.dir) {
                remove_instance_dir(d);
            } else {
                let _ = fs::remove_dir(d);
            }
            d.exists()
        });
    }

    /// Starts QEMU for `machine` in `group`, tied to the calling thread (which must outlive the VM).
    fn start_qemu(
        &self,
        machine: &Machine,
        dir: &Path,
        group: &Group,
        stdin: Stdio,
    ) -> io::Result<tokio::process::Child> {
        // QEMU joins its group before it runs: every process it starts (the relays) is counted, limited and
        // known there.
        let procs: Vec<std::ffi::CString> = group
            .dirs()
            .iter()
            .filter_map(|d| std::ffi::CString::new(d.join("cgroup.procs").into_os_string().into_encoded_bytes()).ok())
            .collect();
        let mut cmd = tokio::process::Command::new(&self.qemu);
        cmd.args(image::qemu_args(machine))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir(dir)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: runs between fork and exec; prctl, open, write and close are raw syscalls that neither
        // allocate nor lock, and the closure only reads the C strings it owns.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
                for p in &procs {
                    let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                Ok(())
            });
        }
        cmd.spawn()
    }

    /// The instance a running VM is; an error (the VM gone) when QEMU has already exited, which leaves no
    /// pid to signal.
    fn spawned(
        &self,
        child: tokio::process::Child,
        group: Group,
        machine: &Machine,
        dir: PathBuf,
    ) -> io::Result<Spawned> {
        let memory_bytes = u64::from(machine.memory_mb) * 1024 * 1024;
        let (status, leftovers) = (machine.status_disk.clone(), self.leftovers.clone());
        let Some(pid) = child.id() else {
            group.remove_or_leave(&leftovers);
            remove_instance_dir(&dir);
            return Err(io::Error::other("the VM exited before it could be tracked"));
        };
        let control = VmControl { pid, group, memory_bytes, status, dir, leftovers };
        Ok(Spawned::from_child(child, Arc::new(control)))
    }

    /// What the guest's function sees of `spec`: its environment (the Runtime API at the guest's address
    /// for it) and its command.
    fn instance(&self, spec: &SpawnSpec, shares: Vec<(String, PathBuf, bool)>) -> Instance {
        let env = spec
            .env
            .iter()
            .map(|(k, v)| match k.as_str() {
                "AWS_LAMBDA_RUNTIME_API" => (k.clone(), image::RUNTIME_API_ADDR.to_string()),
                _ => (k.clone(), v.clone()),
            })
            .collect();
        Instance {
            shares,
            tmp_mb: spec.ephemeral_mb,
            processes: self.settings.pids_max,
            open_files: spec.open_files,
            program: spec.program.clone(),
            args: spec.args.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
            env,
            cwd: spec.cwd.clone(),
        }
    }

    /// Writes instance `dir`'s initramfs (unless restored from `snapshot`) and disks, merges its layers:
    /// what QEMU is to run for a VM started for its function, and what it is sent once restored.
    fn prepare(
        &self,
        spec: &SpawnSpec,
        dir: &Path,
        snapshot: Option<Arc<Snapshot>>,
    ) -> io::Result<(Machine, Option<Resume>)> {
        fs::create_dir_all(dir)?;
        let layers = match spec.layers.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            many => Some(crate::oci::merge_layers(many, &dir.join("opt"))?),
        };
        let shares = image::shares(
            &self.host_top,
            &spec.host.task_root,
            &spec.host.runtime_dir,
            layers.as_deref(),
            &spec.host_dirs,
            &spec.host.scratch,
        );
        let guest: Vec<(String, PathBuf, bool)> =
            shares.iter().map(|(t, _, guest, rw)| (t.clone(), guest.clone(), *rw)).collect();
        let instance = self.instance(spec, guest.clone());
        fs::write(dir.join("port"), spec.runtime_api_port.to_string())?;
        let host: Vec<(String, PathBuf, bool)> = shares.into_iter().map(|(tag, host, _, rw)| (tag, host, rw)).collect();
        let (memory_mb, tmp_mb) = (spec.memory_mb.max(128), spec.ephemeral_mb);
        if let Some((snapshot, padded)) = snapshot.and_then(|s| Some((s, self.padded(&host)?))) {
            let machine = self.machine(dir, Boot::Restore(&snapshot), padded, memory_mb, spec.cpu_millis, tmp_mb)?;
            let then = image::run_script(&instance);
            return Ok((machine, Some(Resume { snapshot, shares: guest, tmp_mb, then })));
        }
        let script = image::instance_script(&instance);
        Ok((self.machine(dir, Boot::Script(&script), host, memory_mb, spec.cpu_millis, tmp_mb)?, None))
    }

    /// The files of a VM in `dir` (its initramfs with its own part as `boot` says, or its snapshot's; its
    /// status and `/tmp` disks, its relay) and QEMU's view of it.
    fn machine(
        &self,
        dir: &Path,
        boot: Boot<'_>,
        shares: Vec<(String, PathBuf, bool)>,
        memory_mb: u32,
        cpu_millis: u32,
        tmp_mb: u32,
    ) -> io::Result<Machine> {
        let (initrd, qmp, incoming) = match boot {
            Boot::Script(script) => (self.initrd(dir, script)?, None, None),
            Boot::ToSave => (self.initrd(dir, &image::snapshot_instance())?, Some(dir.join("qmp")), None),
            Boot::Restore(snapshot) => (snapshot.initrd.clone(), Some(dir.join("qmp")), Some(snapshot.state.clone())),
        };
        let status_disk = dir.join("status");
        fs::write(&status_disk, vec![0u8; 4096])?;
        let tmp_disk = dir.join("tmp");
        tmp_image(&tmp_disk, tmp_mb.max(1))?;
        let relay = dir.join("relay");
        fs::write(&relay, image::relay_script(BUSYBOX, &dir.join("port")))?;
        Ok(Machine {
            accel: self.accel,
            kernel: self.kernel.clone(),
            initrd,
            status_disk,
            tmp_disk: Some(tmp_disk),
            memory_mb,
            vcpus: vcpus(cpu_millis),
            tcg_cache_mb: TCG_CACHE_MB,
            tsc_khz: self.tsc_khz,
            shares,
            relay: vec![BUSYBOX.to_string(), "sh".into(), relay.display().to_string()],
            qmp,
            incoming,
        })
    }

    /// Writes `dir`'s initramfs: the one every guest starts from, with `script` as its instance's part.
    fn initrd(&self, dir: &Path, script: &str) -> io::Result<PathBuf> {
        let own = image::cpio(&[(
            "stoke/instance".to_string(),
            Entry::File { data: script.as_bytes().to_vec(), executable: false },
        )])
        .map_err(io::Error::other)?;
        let initrd = dir.join("initrd");
        let mut f = fs::File::create(&initrd)?;
        f.write_all(&self.base)?;
        f.write_all(&own)?;
        Ok(initrd)
    }

    /// `shares` (tags `s0`…) and as many more sharing the empty directory as a snapshot's machine has;
    /// `None` when they are more than that (the VM boots).
    fn padded(&self, shares: &[(String, PathBuf, bool)]) -> Option<Vec<(String, PathBuf, bool)>> {
        let slots = self.host_top.len() + snapshot::EXTRA_SHARES;
        if shares.len() > slots {
            return None;
        }
        let mut shares = shares.to_vec();
        for n in shares.len()..slots {
            shares.push((format!("s{n}"), self.empty.clone(), false));
        }
        Some(shares)
    }

    /// The snapshot VMs of `shape` are restored from, when it is ready. Without one, it is made in the
    /// background for the VMs that follow.
    fn snapshot_for(&self, shape: Shape) -> Option<Arc<Snapshot>> {
        let known = crate::lock(self.snapshots.as_ref()?).get(&shape).cloned();
        match known {
            Some(snapshot::Status::Ready(s)) => Some(s),
            Some(_) => None,
            None => {
                let me = self.me.upgrade()?;
                let runtime = tokio::runtime::Handle::try_current().ok()?;
                runtime.spawn(async move { me.snapshot(shape).await });
                None
            }
        }
    }

    /// VMs of `shape` boot from now on.
    fn snapshot_failed(&self, shape: Shape) {
        if let Some(snapshots) = &self.snapshots {
            crate::lock(snapshots).insert(shape, snapshot::Status::Failed);
        }
    }

    /// The snapshot of `shape`, saved now unless there is one (or it is being saved: then this waits for
    /// it). `None` when snapshots are off, too many shapes have one, or it cannot be made.
    async fn snapshot(self: Arc<Self>, shape: Shape) -> Option<Arc<Snapshot>> {
        let snapshots = self.snapshots.as_ref()?;
        loop {
            {
                let mut known = crate::lock(snapshots);
                match known.get(&shape) {
                    Some(snapshot::Status::Ready(s)) => return Some(s.clone()),
                    Some(snapshot::Status::Failed) => return None,
                    Some(snapshot::Status::Building) => {}
                    None if known.len() >= snapshot::MAX_SHAPES => return None,
                    None => {
                        known.insert(shape, snapshot::Status::Building);
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let started = Instant::now();
        let status = match self.save(shape).await {
            Ok(s) => {
                let mb = fs::metadata(&s.state).map_or(0, |m| m.len() / (1024 * 1024));
                let ms = started.elapsed().as_millis();
                tracing::info!(snapshot = %s.name, state_mb = mb, took_ms = ms, "VMs of this shape are now restored");
                snapshot::Status::Ready(Arc::new(s))
            }
            Err(e) => {
                tracing::warn!(snapshot = %shape.name(), error = %e, "cannot save a VM snapshot: VMs of its shape boot");
                snapshot::Status::Failed
            }
        };
        crate::lock(snapshots).insert(shape, status.clone());
        match status {
            snapshot::Status::Ready(s) => Some(s),
            _ => None,
        }
    }

    /// Boots a VM of `shape` until its guest waits for its instance, and saves it: its initramfs and
    /// state stay in the snapshot's directory, the rest goes.
    async fn save(self: &Arc<Self>, shape: Shape) -> io::Result<Snapshot> {
        let name = shape.name();
        let dir = self.dir.join("snapshots").join(&name);
        fs::create_dir_all(&dir)?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let cpu_millis = shape.vcpus * 1000;
        let group = self.layout.create(self.server, id, &self.limits(shape.memory_mb, cpu_millis))?;
        let (me, at) = (self.clone(), dir.clone());
        let booted = crate::on_lasting_thread(move || {
            let shares = me.padded(&[]).unwrap_or_default();
            let started = me
                .machine(&at, Boot::ToSave, shares, shape.memory_mb, cpu_millis, shape.tmp_mb)
                .and_then(|machine| Ok((me.start_qemu(&machine, &at, &group, Stdio::piped())?, machine)));
            (started, group)
        })
        .await
        .map_err(|_| io::Error::other("the VM's thread ended"))?;
        let (started, group) = booted;
        let (mut child, machine) = match started {
            Ok(s) => s,
            Err(e) => {
                group.remove_or_leave(&self.leftovers);
                return Err(e);
            }
        };
        let saved = async {
            wait_ready(&mut child, image::SNAPSHOT_READY).await?;
            let (qmp, state) = (dir.join("qmp"), dir.join("state"));
            let uri = image::save_uri(&state.with_extension("tmp"));
            tokio::task::spawn_blocking(move || {
                let mut qmp = snapshot::Qmp::connect(&qmp, || true)?;
                qmp.save(&uri)?;
                let _ = qmp.execute("quit", serde_json::json!({}));
                Ok::<_, io::Error>(())
            })
            .await
            .map_err(io::Error::other)??;
            fs::rename(state.with_extension("tmp"), &state)?;
            Ok::<_, io::Error>(state)
        }
        .await;
        let _ = child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        group.remove_or_leave(&self.leftovers);
        for file in VM_FILES.iter().chain(&["state.tmp"]) {
            let _ = fs::remove_file(dir.join(file));
        }
        let state = saved?;
        Ok(Snapshot { name, initrd: machine.initrd, state })
    }

    /// Starts QEMU restoring `resume`'s snapshot for `machine` in `group`, waits until the VM runs, and
    /// sends it its script; returns QEMU and the VM's console input (kept open for a generic VM's
    /// assignment). A failure to restore is a [`RestoreFailed`].
    fn restore(
        &self,
        machine: &Machine,
        dir: &Path,
        group: &Group,
        resume: &Resume,
    ) -> io::Result<(tokio::process::Child, fs::File)> {
        let failed = |e: io::Error| io::Error::other(RestoreFailed(e.to_string()));
        let mut child = self.start_qemu(machine, dir, group, Stdio::piped()).map_err(failed)?;
        let mut console = child
            .stdin
            .take()
            .and_then(|s| s.into_owned_fd().ok())
            .map(fs::File::from)
            .ok_or_else(|| io::Error::other("the restored VM has no console input"))?;
        snapshot::Qmp::connect(&dir.join("qmp"), || matches!(child.try_wait(), Ok(None)))
            .and_then(|mut qmp| qmp.wait_running())
            .map_err(failed)?;
        let mut seed = [0u8; 32];
        fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
        let renewal = image::Renewal {
            seed_hex: seed.iter().map(|b| format!("{b:02x}")).collect(),
            sent: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default(),
            snapshot: resume.snapshot.name.clone(),
        };
        let script = image::restored_script(&resume.shares, resume.tmp_mb, &renewal, &resume.then);
        console.write_all(image::framed(&script).as_bytes())?;
        Ok((child, console))
    }

    /// The shape of `kind`'s generic VMs.
    fn generic_shape(kind: &GenericSpec) -> Shape {
        Shape {
            memory_mb: kind.memory_mb.max(GENERIC_MEMORY_MB),
            vcpus: vcpus(kind.cpu_millis),
            tmp_mb: GENERIC_TMP_MB,
        }
    }

    /// Starts one generic VM of `kind`, restored from its shape's snapshot when there is one, else
    /// booted: everything but its function.
    fn boot_generic(&self, kind: &GenericSpec) -> io::Result<GenericVm> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join("instances").join(id.to_string());
        let memory_mb = kind.memory_mb.max(GENERIC_MEMORY_MB);
        let snapshot = self.snapshot_for(Self::generic_shape(kind));
        let group = self.layout.create(self.server, id, &self.limits(memory_mb, kind.cpu_millis))?;
        let booted = (|| {
            let slot = dir.join("slot");
            for d in ["task", "opt", "scratch"] {
                fs::create_dir_all(slot.join(d))?;
            }
            let mut shares: Vec<(PathBuf, PathBuf, bool)> =
                self.host_top.iter().map(|p| (p.clone(), p.clone(), false)).collect();
            shares.push((kind.runtime_dir.clone(), RUNTIME_DIR.into(), false));
            shares.extend(kind.host_dirs.iter().map(|d| (d.clone(), d.clone(), false)));
            shares.push((slot, GUEST_SLOT.into(), true));
            let shares: Vec<(String, PathBuf, PathBuf, bool)> = shares
                .into_iter()
                .enumerate()
                .map(|(n, (host, guest, rw))| (format!("s{n}"), host, guest, rw))
                .collect();
            let guest: Vec<(String, PathBuf, bool)> =
                shares.iter().map(|(t, _, g, rw)| (t.clone(), g.clone(), *rw)).collect();
            let host: Vec<(String, PathBuf, bool)> = shares.into_iter().map(|(t, h, _, rw)| (t, h, rw)).collect();
            if let Some((snapshot, padded)) = snapshot.and_then(|s| Some((s, self.padded(&host)?))) {
                let machine =
                    self.machine(&dir, Boot::Restore(&snapshot), padded, memory_mb, kind.cpu_millis, GENERIC_TMP_MB)?;
                let resume = Resume { snapshot, shares: guest, tmp_mb: GENERIC_TMP_MB, then: image::generic_wait() };
                let (child, assign) = self.restore(&machine, &dir, &group, &resume)?;
                return Ok((child, machine, assign));
            }
            let script = image::generic_script(&guest, GENERIC_TMP_MB);
            let machine =
                self.machine(&dir, Boot::Script(&script), host, memory_mb, kind.cpu_millis, GENERIC_TMP_MB)?;
            let mut child = self.start_qemu(&machine, &dir, &group, Stdio::piped())?;
            let assign = child
                .stdin
                .take()
                .and_then(|s| s.into_owned_fd().ok())
                .map(fs::File::from)
                .ok_or_else(|| io::Error::other("the generic VM has no console input"))?;
            Ok((child, machine, assign))
        })();
        match booted {
            Ok((child, machine, assign)) => Ok(GenericVm { child, group, dir, machine, assign }),
            Err(e) => {
                group.remove();
                remove_instance_dir(&dir);
                if snapshot_used(&e) {
                    tracing::warn!(kind = %kind.name, error = %e, "cannot restore a generic VM: booting it");
                    self.snapshot_failed(Self::generic_shape(kind));
                    return self.boot_generic(kind);
                }
                Err(e)
            }
        }
    }

    /// A ready generic VM that can run `spec` (its memory, `/tmp`, runtime files and interpreter
    /// directories are the function's), and its kind. Dead ones are dropped on the way.
    fn take_generic(&self, spec: &SpawnSpec) -> Option<(String, GenericVm)> {
        if spec.ephemeral_mb != GENERIC_TMP_MB {
            return None;
        }
        let mut pool = crate::lock(&self.pool);
        for (kind, ready) in pool.iter_mut() {
            let fits = kind.runtime_dir == spec.host.runtime_dir
                && spec.host_dirs.iter().all(|d| kind.host_dirs.contains(d))
                && spec.memory_mb.max(128) == kind.memory_mb.max(GENERIC_MEMORY_MB);
            if !fits {
                continue;
            }
            while let Some(mut vm) = ready.pop() {
                if matches!(vm.child.try_wait(), Ok(None)) {
                    return Some((kind.name.clone(), vm));
                }
                self.discard(vm);
            }
        }
        None
    }

    /// Gives generic VM `vm` its function: binds the code, layers and scratch directory into its slot on
    /// the host, tells its relay the instance's port, gives its group the function's CPU share, and sends
    /// the assignment to its console.
    fn assign(&self, mut vm: GenericVm, spec: &SpawnSpec) -> io::Result<Spawned> {
        let given = (|| {
            let slot = vm.dir.join("slot");
            crate::lean::attach::bind(&spec.host.task_root, &slot.join("task"), true)?;
            let mut binds = vec![(Path::new(GUEST_SLOT).join("task"), PathBuf::from(TASK_ROOT), false)];
            match spec.layers.as_slice() {
                [] => {}
                [one] => crate::lean::attach::bind(one, &slot.join("opt"), true)?,
                many => {
                    crate::oci::merge_layers(many, &slot.join("opt"))?;
                }
            }
            if !spec.layers.is_empty() {
                binds.push((Path::new(GUEST_SLOT).join("opt"), PathBuf::from(LAYER_ROOT), false));
            }
            if spec.host.scratch.is_dir() {
                crate::lean::attach::bind(&spec.host.scratch, &slot.join("scratch"), false)?;
                binds.push((Path::new(GUEST_SLOT).join("scratch"), PathBuf::from(SCRATCH_DIR), true));
            }
            fs::write(vm.dir.join("port"), spec.runtime_api_port.to_string())?;
            vm.group.set_limits(&self.limits(vm.machine.memory_mb, spec.cpu_millis))?;
            let script = image::assignment_script(&binds, Path::new(GUEST_SLOT), &self.instance(spec, Vec::new()));
            vm.assign.write_all(image::framed(&script).as_bytes())?;
            Ok(())
        })();
        match given {
            Ok(()) => self.spawned(vm.child, vm.group, &vm.machine, vm.dir),
            Err(e) => {
                self.discard(vm);
                Err(e)
            }
        }
    }

    /// Ends a generic VM that will not be used.
    fn discard(&self, vm: GenericVm) {
        let GenericVm { mut child, group, dir, .. } = vm;
        let _ = child.start_kill();
        drop(child);
        group.remove_or_leave(&self.leftovers);
        remove_instance_dir(&dir);
        if dir.exists() {
            crate::lock(&self.leftovers).push(dir);
        }
    }

    /// Keeps kind `name`'s pool full, after `delay`: each VM is started on a thread that outlives it, and
    /// counts as ready once its guest says so.
    fn refill(&self, name: &str, delay: Duration) {
        let Some(me) = self.me.upgrade() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let name = name.to_string();
        runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            loop {
                let kind = {
                    let pool = crate::lock(&me.pool);
                    pool.iter().find(|(k, ready)| k.name == name && ready.len() < k.count).map(|(k, _)| k.clone())
                };
                let Some(kind) = kind else { return };
                // The kind's snapshot first (saved once; waited for while another VM saves it).
                me.clone().snapshot(Self::generic_shape(&kind)).await;
                let booter = me.clone();
                let booted = crate::on_lasting_thread(move || booter.boot_generic(&kind)).await;
                let mut vm = match booted {
                    Ok(Ok(vm)) => vm,
                    Ok(Err(e)) => {
                        tracing::warn!(kind = %name, error = %e, "cannot boot a generic VM");
                        return;
                    }
                    Err(_) => return,
                };
                if let Err(e) = wait_ready(&mut vm.child, image::GENERIC_READY).await {
                    tracing::warn!(kind = %name, error = %e, "a generic VM did not come up");
                    me.discard(vm);
                    return;
                }
                let mut pool = crate::lock(&me.pool);
                match pool.iter_mut().find(|(k, _)| k.name == name) {
                    Some((_, ready)) => ready.push(vm),
                    None => {
                        drop(pool);
                        me.discard(vm);
                        return;
                    }
                }
            }
        });
    }
}

/// Most a generic VM may take to boot, even emulated.
const GENERIC_BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Waits until a VM's guest says `marker` (a generic VM: it is ready for its assignment; one booted to be
/// saved: it is ready to be), reading its console up to that and no further (what follows is its
/// function's output).
async fn wait_ready(child: &mut tokio::process::Child, marker: &str) -> io::Result<()> {
    use tokio::io::AsyncReadExt;
    let out = child.stdout.as_mut().ok_or_else(|| io::Error::other("the VM has no console output"))?;
    let marker = marker.as_bytes();
    let read = async {
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            if out.read(&mut byte).await? == 0 {
                let said = String::from_utf8_lossy(&seen).into_owned();
                return Err(io::Error::other(format!("it stopped before it was ready: {said}")));
            }
            seen.push(byte[0]);
            if seen.ends_with(marker) {
                return Ok(());
            }
            if seen.len() > 64 * 1024 {
                return Err(io::Error::other("it said too much before it was ready"));
            }
        }
    };
    tokio::time::timeout(GENERIC_BOOT_TIMEOUT, read)
        .await
        .map_err(|_| io::Error::other(format!("not ready after {} s", GENERIC_BOOT_TIMEOUT.as_secs())))?
}

impl Drop for VmSandbox {
    fn drop(&mut self) {
        let pool = std::mem::take(&mut *crate::lock(&self.pool));
        for vm in pool.into_iter().flat_map(|(_, ready)| ready) {
            self.discard(vm);
        }
        // Each is up to its VM's memory in size; the next start saves its own.
        let _ = fs::remove_dir_all(self.dir.join("snapshots"));
    }
}

struct VmControl {
    /// QEMU.
    pid: u32,
    /// QEMU's group: it and the relays it starts.
    group: Group,
    /// The VM's memory.
    memory_bytes: u64,
    status: PathBuf,
    dir: PathBuf,
    leftovers: Arc<Mutex<Vec<PathBuf>>>,
}

impl InstanceControl for VmControl {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn kill(&self) {
        let _ = nix::sys::signal::kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        for pid in self.group.pids() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }

    /// What the VM cost the host at its peak: QEMU's and its relays' memory, the guest's memory it touched
    /// included.
    /// Never more than the VM's memory: what QEMU uses beyond it is QEMU's, not the function's.
    fn peak_memory_bytes(&self) -> Option<u64> {
        self.group.peak_memory().map(|p| p.min(self.memory_bytes))
    }

    fn processes(&self) -> Vec<u32> {
        self.group.pids()
    }

    fn out_of_memory(&self) -> bool {
        let guest = fs::read(&self.status).ok().and_then(|d| image::parse_status(&d)).is_some_and(|(_, oom)| oom);
        guest || self.group.oom_kills() > 0
    }

    /// QEMU is stopped with a signal, not the cgroup freezer: a process frozen in a v1 freezer keeps a
    /// pending SIGKILL until thawed, so the server's death (its parent-death signal) would not end it;
    /// a stopped one dies of it. The relays wait on their sockets meanwhile.
    fn freeze(&self, frozen: bool) -> bool {
        let signal = if frozen { Signal::SIGSTOP } else { Signal::SIGCONT };
        nix::sys::signal::kill(Pid::from_raw(self.pid as i32), signal).is_ok()
    }

    /// The Runtime API's connections come from the relays QEMU starts (each detached from QEMU, in a
    /// session of its own), which are in QEMU's group.
    fn opened_connection(&self, local: SocketAddr, peer: SocketAddr) -> bool {
        crate::peer::opened_by_any(&self.group.pids(), local, peer)
    }

    fn opened_connection_quickly(&self, local: SocketAddr, peer: SocketAddr) -> bool {
        self.group.opened_connection_quickly(local, peer)
    }
}

impl Drop for VmControl {
    fn drop(&mut self) {
        self.group.remove_or_leave(&self.leftovers);
        remove_instance_dir(&self.dir);
        if self.dir.exists() {
            crate::lock(&self.leftovers).push(self.dir.clone());
        }
    }
}

/// The files a VM's directory holds for it besides its initramfs: its disks, its relay and the port it
/// reads, QEMU's QMP socket.
const VM_FILES: [&str; 5] = ["status", "tmp", "relay", "port", "qmp"];

/// Removes an instance's directory: what is mounted in it (merged layers, a generic VM's slot) first, then
/// its files, then its directories once empty — never following into a mount or deleting what a function
/// wrote in its scratch directory.
fn remove_instance_dir(dir: &Path) {
    use crate::lean::attach::{remove_tree, unmount_all};
    for mounted in ["opt", "slot/task", "slot/opt", "slot/scratch"] {
        unmount_all(&dir.join(mounted));
    }
    for file in VM_FILES.iter().chain(&["initrd"]) {
        let _ = fs::remove_file(dir.join(file));
    }
    remove_tree(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_is_used_where_it_can_run_a_guest_and_emulation_only_when_asked() {
        assert_eq!(decide_accel(AccelChoice::Auto, Ok(()), false), Ok(Accel::Kvm));
        assert_eq!(decide_accel(AccelChoice::Kvm, Ok(()), false), Ok(Accel::Kvm));
        assert_eq!(decide_accel(AccelChoice::Tcg, Err("No such file or directory".into()), false), Ok(Accel::Tcg));
        let none = decide_accel(AccelChoice::Auto, Err("No such file or directory".into()), false).unwrap_err();
        assert!(none.contains("/dev/kvm cannot be opened (No such file or directory)"), "{none}");
        assert!(none.contains("--vm-accel tcg"), "says how to go on: {none}");
        let asked = decide_accel(AccelChoice::Kvm, Err("Permission denied".into()), false).unwrap_err();
        assert!(asked.contains("Permission denied"), "{asked}");
        let pvm = decide_accel(AccelChoice::Auto, Ok(()), true).unwrap_err();
        assert!(pvm.contains("kvm_pvm") && pvm.contains("--vm-accel tcg"), "{pvm}");
        assert_eq!(decide_accel(AccelChoice::Kvm, Ok(()), true), Ok(Accel::Kvm), "insisted on, with a PVM kernel");
    }
}
