//! Each instance's `/tmp`: Lambda's *ephemeral storage*, 512–10,240 MB on disk, set per function.
//!
//! On disk, an instance's `/tmp` is a file system of its own: a sparse image file formatted as ext4 (no
//! journal, no reserved blocks), attached to a loop device and mounted in the server's mount namespace, then
//! bound into the instance. Its size is the function's, so writing past it fails with `ENOSPC`, and what
//! the instance writes is page cache the kernel writes back, not memory charged against the function's
//! limit: a 128 MB function can fill a 512 MB `/tmp`. The image is unlinked as soon as the loop device holds
//! it and the device clears itself when the last mount goes, so nothing outlives the instance or the server.
//!
//! Formatting and mounting take a few milliseconds, so disks are made ahead, off the cold start's path:
//! a few ready of each size the node's functions asked for lately ([`Wanted`]).
//!
//! Where the host cannot do this (no loop devices, no `mkfs.ext4`), `/tmp` is a tmpfs of the function's
//! size, as before: it then counts against the instance's memory. The server says which at start.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::lock;

/// The size a function gets when it names none (Lambda's default).
pub const DEFAULT_MB: u32 = 512;

/// How the server was asked to provide `/tmp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// On disk when the host can, else in memory.
    #[default]
    Auto,
    /// On disk, or the server does not start.
    Disk,
    /// A tmpfs: fast, but it counts against the instance's memory.
    Memory,
}

/// An image's size for `size_mb` of usable space: ext4's own metadata (inode tables, bitmaps, the root
/// directory) takes about 4 % of a small file system, so the image is that much larger and `df /tmp` shows
/// at least the function's size, as on Lambda.
pub fn image_mb(size_mb: u32) -> u64 {
    let size = u64::from(size_mb);
    size + size / 20 + 16
}

/// Which sizes to keep ready: those asked for in the last [`WANTED_FOR`], and always the default.
#[derive(Debug, Default)]
pub struct Wanted {
    last: BTreeMap<u32, Instant>,
}

/// How long a size stays wanted after its last use.
pub const WANTED_FOR: Duration = Duration::from_secs(600);
/// Disks kept ready of each wanted size.
pub const READY_PER_SIZE: usize = 2;
/// At most this many sizes are kept ready at once (the most recently used).
pub const MAX_SIZES: usize = 8;

impl Wanted {
    pub fn used(&mut self, size_mb: u32, now: Instant) {
        self.last.insert(size_mb, now);
        if self.last.len() > MAX_SIZES {
            let oldest = self.last.iter().filter(|(s, _)| **s != DEFAULT_MB).min_by_key(|(_, t)| **t).map(|(s, _)| *s);
            if let Some(s) = oldest {
                self.last.remove(&s);
            }
        }
    }

    /// The sizes to keep ready now, forgetting those unused for too long.
    pub fn sizes(&mut self, now: Instant) -> Vec<u32> {
        self.last.retain(|_, t| now.saturating_duration_since(*t) < WANTED_FOR);
        let mut sizes: Vec<u32> = self.last.keys().copied().collect();
        if !sizes.contains(&DEFAULT_MB) {
            sizes.insert(0, DEFAULT_MB);
        }
        sizes
    }
}

/// One instance's `/tmp` on the host side: a mounted disk, or the size of a tmpfs.
#[derive(Debug)]
pub enum Ephemeral {
    Disk(Disk),
    Memory { size_mb: u32 },
}

impl Ephemeral {
    /// What an instance set up for its function mounts at `/tmp`: the disk, bound, or a tmpfs of the size.
    pub fn as_tmp(&self) -> super::rootfs::Tmp {
        match self {
            Ephemeral::Disk(d) => super::rootfs::Tmp::Bind(d.path().to_path_buf()),
            Ephemeral::Memory { size_mb } => super::rootfs::Tmp::Memory { size_mb: *size_mb },
        }
    }

    /// Makes it appear at `point` (a generic instance's or a zygote slot's attach point): the disk bound
    /// there, or a tmpfs of the size mounted there. Writable, without set-id or devices.
    pub fn attach(&self, point: &Path) -> io::Result<()> {
        match self {
            Ephemeral::Disk(d) => {
                mount(Some(d.path()), point, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
            }
            Ephemeral::Memory { size_mb } => {
                let data = format!("mode=1777,size={size_mb}m");
                mount(
                    Some("tmpfs"),
                    point,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(data.as_str()),
                )?;
            }
        }
        Ok(())
    }
}

/// An ext4 file system on a loop device, mounted at `path` in the server's mount namespace.
#[derive(Debug)]
pub struct Disk {
    path: PathBuf,
    size_mb: u32,
}

impl Disk {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn size_mb(&self) -> u32 {
        self.size_mb
    }

    /// Formats an image of `size_mb` usable at `dir/<id>.img`, attaches it to a free loop device, unlinks
    /// it, and mounts the device at `dir/<id>`, its root writable by all (sticky, as `/tmp` is).
    pub fn create(dir: &Path, id: u64, size_mb: u32) -> io::Result<Disk> {
        let image = dir.join(format!("{id}.img"));
        let path = dir.join(id.to_string());
        let made = (|| {
            let file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&image)?;
            file.set_len(image_mb(size_mb) * 1024 * 1024)?;
            format(&image)?;
            // The device clears itself when its last opener goes: this one is held until the mount holds it.
            let (device, held) = attach_loop(&file)?;
            drop(file);
            std::fs::remove_file(&image)?;
            std::fs::create_dir_all(&path)?;
            // noinit_itable: the inode tables of a fresh file system need no zeroing, and this one is
            // gone before it could matter; without it a kernel thread writes them out behind each disk.
            let mounted = mount(
                Some(device.as_path()),
                &path,
                Some("ext4"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOATIME,
                Some("noinit_itable"),
            );
            drop(held);
            if device.starts_with(dir) {
                let _ = std::fs::remove_file(&device);
            }
            mounted?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o1777))?;
            let _ = std::fs::remove_dir(path.join("lost+found"));
            Ok(())
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_file(&image);
            while umount2(&path, MntFlags::MNT_DETACH).is_ok() {}
            let _ = std::fs::remove_dir(&path);
            return Err(e);
        }
        Ok(Disk { path, size_mb })
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        // The loop device clears itself once the instance's copies of the mount are gone too.
        while umount2(&self.path, MntFlags::MNT_DETACH).is_ok() {}
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Empties `dir` of a previous server's disks: their mount points unmounted first (a server that had no
/// mount namespace of its own leaves them mounted), then their images and device nodes, never following a
/// link or descending into a file system still mounted.
fn sweep(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => super::mounts::remove_tree(&e.path()),
            Ok(_) => {
                let _ = std::fs::remove_file(e.path());
            }
            Err(_) => {}
        }
    }
}

/// `mkfs.ext4` on `image`: no journal (nothing to recover after a crash: the disk dies with its
/// instance), no blocks reserved for root, inode tables left for the kernel to initialise lazily.
pub(crate) fn format(image: &Path) -> io::Result<()> {
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-O", "^has_journal", "-m", "0", "-E", "lazy_itable_init=1,nodiscard", "-L", "tmp"])
        .arg(image)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run mkfs.ext4: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!("mkfs.ext4 failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

// The kernel's loop device interface (linux/loop.h), which the libc crate does not carry.
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;
const LOOP_MAJOR: u64 = 7;

#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Tries at a free loop device other processes keep taking first (with back-off, about half a second in all).
const LOOP_TRIES: u32 = 16;

/// Attaches `file` to a free loop device that clears itself when its last mount goes, with direct I/O
/// (the image's pages are not cached twice). Returns the device's path — `/dev/loopN`, or a node made next
/// to the image where `/dev` lacks it (a container's static `/dev`) — and the device opened: closing it
/// before something else holds the device detaches it.
fn attach_loop(file: &File) -> io::Result<(PathBuf, File)> {
    // Every thread asking for a free device at once is told the same one, and all but one then find it
    // taken: a burst of 40 starts would need 40 tries for the last. One attach at a time within the server;
    // another process may still take the device between the two calls, and then the next one is asked for.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = lock(&ONE_AT_A_TIME);
    let control = OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open("/dev/loop-control")?;
    let dir = file_dir(file);
    let mut last = io::Error::other("no free loop device");
    for attempt in 0..LOOP_TRIES {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(1 << attempt.min(5)));
        }
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let device = device_node(n.cast_unsigned(), dir.as_deref())?;
        let opened = OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open(&device);
        let dev = match opened {
            Ok(d) => d,
            Err(e) => {
                remove_private_node(&device, dir.as_deref());
                return Err(e);
            }
        };
        // SAFETY: all-zero is a valid loop_config (every field is an integer or an integer array).
        let mut config: LoopConfig = unsafe { std::mem::zeroed() };
        config.fd = file.as_raw_fd().cast_unsigned();
        config.info.flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
        // SAFETY: `config` is a properly laid out loop_config that outlives the call.
        let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &config as *const LoopConfig) };
        if rc == 0 {
            return Ok((device, dev));
        }
        last = io::Error::last_os_error();
        remove_private_node(&device, dir.as_deref());
        if last.raw_os_error() != Some(libc::EBUSY) {
            break;
        }
    }
    Err(last)
}

/// The directory the image lies in (where a private device node goes).
fn file_dir(file: &File) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?.parent().map(Path::to_path_buf)
}

/// `/dev/loopN` when it exists, else a block device node for it made in `dir`.
fn device_node(n: u32, dir: Option<&Path>) -> io::Result<PathBuf> {
    let dev = PathBuf::from(format!("/dev/loop{n}"));
    if dev.exists() {
        return Ok(dev);
    }
    let Some(dir) = dir else { return Ok(dev) };
    let node = dir.join(format!("loop{n}.dev"));
    let _ = std::fs::remove_file(&node);
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(LOOP_MAJOR, u64::from(n)),
    )?;
    Ok(node)
}

fn remove_private_node(device: &Path, dir: Option<&Path>) {
    if dir.is_some_and(|d| device.starts_with(d)) {
        let _ = std::fs::remove_file(device);
    }
}

/// The node's provider of `/tmp`s: disks made ahead (or tmpfs sizes, when the host has no disks to give).
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// `None`: disks; `Some(why)`: memory, and why.
    memory: Option<String>,
    next: AtomicU64,
    ready: Mutex<Vec<Disk>>,
    wanted: Mutex<Wanted>,
    /// A refill is running.
    filling: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("dir", &self.inner.dir).field("memory", &self.inner.memory).finish()
    }
}

impl Storage {
    /// Storage under `dir` (emptied first: a previous server's disks died with its mount namespace). With
    /// [`Choice::Auto`], one disk is made to see whether the host can: when it cannot, `/tmp`s are tmpfs
    /// and [`Storage::describe`] says why. [`Choice::Disk`] fails instead.
    pub fn new(dir: PathBuf, choice: Choice) -> io::Result<Storage> {
        sweep(&dir);
        std::fs::create_dir_all(&dir)?;
        let storage = |memory| Storage {
            inner: Arc::new(Inner {
                dir: dir.clone(),
                memory,
                next: AtomicU64::new(1),
                ready: Mutex::new(Vec::new()),
                wanted: Mutex::new(Wanted::default()),
                filling: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        if choice == Choice::Memory {
            return Ok(storage(Some("chosen with --ephemeral-storage memory".into())));
        }
        match Disk::create(&dir, 0, 16) {
            Ok(probe) => {
                drop(probe);
                Ok(storage(None))
            }
            Err(e) if choice == Choice::Auto => Ok(storage(Some(format!("this host cannot make disks: {e}")))),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "--ephemeral-storage disk: cannot make a disk-backed /tmp ({e}); it needs loop devices and \
                     mkfs.ext4 (e2fsprogs). Use --ephemeral-storage memory to keep /tmp in memory"
                ),
            )),
        }
    }

    /// `/tmp on disk` or `/tmp in memory (why)`, for the server's start-up message.
    pub fn describe(&self) -> String {
        match &self.inner.memory {
            None => "/tmp on disk".into(),
            Some(why) => format!("/tmp in memory ({why})"),
        }
    }

    pub fn on_disk(&self) -> bool {
        self.inner.memory.is_none()
    }

    /// A `/tmp` of `size_mb` for an instance starting now: a disk made ahead when one is ready, else one
    /// made now. The ready ones are topped up off this path.
    pub fn take(&self, size_mb: u32) -> io::Result<Ephemeral> {
        if self.inner.memory.is_some() {
            return Ok(Ephemeral::Memory { size_mb });
        }
        lock(&self.inner.wanted).used(size_mb, Instant::now());
        let ready = {
            let mut ready = lock(&self.inner.ready);
            ready.iter().position(|d| d.size_mb == size_mb).map(|i| ready.swap_remove(i))
        };
        self.refill();
        match ready {
            Some(d) => Ok(Ephemeral::Disk(d)),
            None => {
                // Formatting and mounting take milliseconds: the other tasks of this worker move on meanwhile.
                let make = || self.inner.make(size_mb);
                let disk = match tokio::runtime::Handle::try_current() {
                    Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                        tokio::task::block_in_place(make)
                    }
                    _ => make(),
                }?;
                Ok(Ephemeral::Disk(disk))
            }
        }
    }

    /// Makes disks ahead for the sizes wanted, on a blocking thread, and drops those of sizes no longer
    /// wanted. One refill runs at a time.
    pub fn refill(&self) {
        if self.inner.memory.is_some() || self.inner.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        let work = move || {
            loop {
                let sizes = lock(&inner.wanted).sizes(Instant::now());
                let missing = {
                    let mut ready = lock(&inner.ready);
                    ready.retain(|d| sizes.contains(&d.size_mb));
                    sizes.into_iter().find(|s| ready.iter().filter(|d| d.size_mb == *s).count() < READY_PER_SIZE)
                };
                let Some(size) = missing else { break };
                match inner.make(size) {
                    Ok(d) => lock(&inner.ready).push(d),
                    Err(e) => {
                        eprintln!("stoke: cannot make a {size} MB /tmp ahead: {e}");
                        break;
                    }
                }
            }
            inner.filling.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(work)),
            Err(_) => {
                std::thread::spawn(work);
            }
        }
    }

    /// Disks ready now, by size (for tests and listings).
    pub fn ready(&self) -> Vec<u32> {
        let mut sizes: Vec<u32> = lock(&self.inner.ready).iter().map(|d| d.size_mb).collect();
        sizes.sort_unstable();
        sizes
    }
}

impl Inner {
    fn make(&self, size_mb: u32) -> io::Result<Disk> {
        Disk::create(&self.dir, self.next.fetch_add(1, Ordering::Relaxed), size_mb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_leave_the_whole_size_usable() {
        // ext4 formatted this way keeps 3.7 % of a 512 MB image for itself (measured: 493 MB free), less of
        // larger ones (inode tables are 1.6 % at 16 KB per inode).
        assert_eq!(image_mb(512), 512 + 25 + 16);
        for size in [512, 1024, 10_240] {
            assert!(image_mb(size) * 96 / 100 > u64::from(size), "{size} MB");
        }
    }

    #[test]
    fn the_default_size_is_always_wanted_and_others_expire() {
        let t0 = Instant::now();
        let mut w = Wanted::default();
        assert_eq!(w.sizes(t0), vec![DEFAULT_MB]);
        w.used(1024, t0);
        assert_eq!(w.sizes(t0 + Duration::from_secs(1)), vec![DEFAULT_MB, 1024]);
        assert_eq!(w.sizes(t0 + WANTED_FOR), vec![DEFAULT_MB], "unused for {WANTED_FOR:?}: no longer kept");
    }

    #[test]
    fn only_the_most_recent_sizes_are_kept() {
        let t0 = Instant::now();
        let mut w = Wanted::default();
        let max = u32::try_from(MAX_SIZES).unwrap();
        for i in 0..(max + 3) {
            w.used(600 + i, t0 + Duration::from_millis(u64::from(i)));
        }
        let sizes = w.sizes(t0 + Duration::from_secs(1));
        assert_eq!(sizes.len(), MAX_SIZES + 1, "{sizes:?}: the default plus the {MAX_SIZES} latest");
        assert!(!sizes.contains(&600) && sizes.contains(&(600 + max + 2)), "{sizes:?}");
    }
}
