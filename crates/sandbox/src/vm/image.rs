//! What a VM boots, as plain data: the initramfs (a `newc` cpio archive: stoke's init, busybox, the guest
//! kernel's modules, the `/etc` files an instance gets), each instance's own part of it (what to mount and
//! run), the order the kernel's modules load in, and QEMU's command line. Pure, unit-tested; the files are
//! read and written by [`super`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The guest's address for the Runtime API: QEMU's user network forwards connections to it (and to nothing
/// else) to the instance's own endpoint on the host.
pub const RUNTIME_API_ADDR: &str = "10.0.2.100:9001";

/// The kernel modules a guest needs (the rest of their dependencies follow from `modules.dep`): virtio over
/// MMIO (QEMU's `microvm`), its network card, 9p over virtio for the shared directories, the status and
/// `/tmp` disks, `/tmp`'s file system and the checksum it asks the crypto API for by name (a soft
/// dependency `modules.dep` does not list). All are loaded while the guest boots — before a snapshot is
/// saved — and the guest loads no module after that.
pub const MODULES: &[&str] =
    &["virtio_mmio", "virtio_net", "9pnet_virtio", "9p", "virtio_blk", "ext4", "crc32c_generic"];

/// One entry of a cpio archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File { data: Vec<u8>, executable: bool },
    Symlink(String),
}

/// A `newc` cpio archive of `entries` (paths without a leading `/`, parents before children), ending with
/// the trailer. The kernel unpacks it as the guest's first root; several archives one after the other are
/// unpacked in turn, later ones adding to earlier ones. An error names an entry the format cannot hold
/// (4 GiB or more).
pub fn cpio(entries: &[(String, Entry)]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (ino, (name, entry)) in (1u32..).zip(entries) {
        let (mode, data): (u32, &[u8]) = match entry {
            Entry::Dir => (0o040_755, &[]),
            Entry::File { data, executable } => (if *executable { 0o100_755 } else { 0o100_644 }, data),
            Entry::Symlink(target) => (0o120_777, target.as_bytes()),
        };
        header(&mut out, ino, mode, if matches!(entry, Entry::Dir) { 2 } else { 1 }, data.len(), name)?;
        out.extend_from_slice(data);
        pad(&mut out, 4);
    }
    header(&mut out, 0, 0, 1, 0, "TRAILER!!!")?;
    // The kernel reads archives in 512-byte blocks; one that follows starts on a block boundary.
    pad(&mut out, 512);
    Ok(out)
}

fn header(out: &mut Vec<u8>, ino: u32, mode: u32, nlink: u32, size: usize, name: &str) -> Result<(), String> {
    let too_big = |_| format!("{name} is too large for the guest's initramfs");
    let size = u32::try_from(size).map_err(too_big)?;
    let name_size = u32::try_from(name.len() + 1).map_err(too_big)?;
    let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, name_size, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out, 4);
    Ok(())
}

fn pad(out: &mut Vec<u8>, to: usize) {
    while !out.len().is_multiple_of(to) {
        out.push(0);
    }
}

/// The modules of `wanted` and everything they depend on, from the text of the kernel's `modules.dep`,
/// each after the modules it needs: the order `insmod` must load them in. Paths are relative to the
/// modules directory. An error names a module the kernel does not have.
pub fn module_order(modules_dep: &str, wanted: &[&str]) -> Result<Vec<String>, String> {
    let mut deps: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for line in modules_dep.lines() {
        let Some((path, rest)) = line.split_once(':') else { continue };
        deps.insert(module_name(path), (path.to_string(), rest.split_whitespace().map(module_name).collect()));
    }
    let mut order = Vec::new();
    let mut done = std::collections::HashSet::new();
    fn visit(
        name: &str,
        deps: &HashMap<String, (String, Vec<String>)>,
        done: &mut std::collections::HashSet<String>,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), String> {
        if done.contains(name) {
            return Ok(());
        }
        let (path, needs) = deps.get(name).ok_or_else(|| format!("the guest kernel has no module {name}"))?;
        if depth > 64 {
            return Err(format!("the guest kernel's modules depend on each other in a loop at {name}"));
        }
        for n in needs {
            visit(n, deps, done, order, depth + 1)?;
        }
        done.insert(name.to_string());
        order.push(path.clone());
        Ok(())
    }
    for w in wanted {
        visit(&w.replace('-', "_"), &deps, &mut done, &mut order, 0)?;
    }
    Ok(order)
}

/// A module's name from its path: `kernel/fs/9p/9p.ko.xz` is `9p`; dashes are underscores to the kernel.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// The guest's `/init`: mounts the kernel's file systems, loads the modules, brings the network up, reads
/// the instance's part (`/stoke/instance`: its mounts and its command), runs the function as its own
/// unprivileged process, then writes how it ended to the status disk and powers the VM off.
pub const INIT: &str = r#"#!/stoke/busybox sh
B=/stoke/busybox
$B mount -t proc -o nosuid,noexec,nodev proc /proc
$B mount -t sysfs -o nosuid,noexec,nodev sys /sys
$B mount -t devtmpfs -o nosuid,noexec dev /dev
$B stty -F /dev/console raw -echo 2>/dev/null
$B hostname stoke
while read -r m; do $B insmod "/stoke/modules/$m" || { echo "stoke: cannot load $m" >&2; $B poweroff -f; }; done < /stoke/modules/order
# No module loads on demand: the host's /usr (and its /usr/lib/modules) is shared into the guest, where
# the kernel would run its modprobe to load whatever a function's system calls ask for.
echo > /proc/sys/kernel/modprobe
$B ip link set lo up
$B ip link set eth0 up
$B ip addr add 10.0.2.15/24 dev eth0
$B ip route add default via 10.0.2.2
# The status disk is one block (8 sectors); the other disk is /tmp.
STATUS=; TMPDEV=
for d in /sys/block/vd*; do
  if [ "$($B cat "$d/size")" = 8 ]; then STATUS=/dev/${d##*/}; else TMPDEV=/dev/${d##*/}; fi
done
# Defence in depth inside the guest: no user namespaces for the unprivileged function.
$B sysctl -q -w kernel.unprivileged_userns_clone=0 2>/dev/null
$B sysctl -q -w user.max_user_namespaces=0 2>/dev/null
# Read-only shares are cached; a writable one (scratch, which other instances write too) is not.
share() { c=loose; [ "$2" = rw ] && c=none; $B mkdir -p "$3" && $B mount -t 9p -o "trans=virtio,version=9p2000.L,msize=262144,cache=$c,nosuid,nodev,$2" "$1" "$3" || { echo "stoke: cannot mount $3" >&2; $B poweroff -f; }; }
. /stoke/instance
code=$?
oom=$($B awk '/^oom_kill /{print $2}' /proc/vmstat)
[ -n "$STATUS" ] && printf 'exit=%s oom=%s\n' "$code" "${oom:-0}" | $B dd of="$STATUS" conv=notrunc,fsync 2>/dev/null
$B poweroff -f
"#;

/// What one instance's VM mounts and runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Shared host directories: (9p tag, where the guest mounts it, writable).
    pub shares: Vec<(String, PathBuf, bool)>,
    /// The size of its `/tmp`, in MB, where the VM has no disk for it (then it is a tmpfs).
    pub tmp_mb: u32,
    /// Processes the function's user may run at once.
    pub processes: u32,
    pub open_files: u64,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

/// `s` quoted for the shell: single quotes, each `'` written as `'\''`.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The instance's part of the init (`/stoke/instance`, sourced by [`INIT`]) for a VM started for its
/// function: its mounts and `/tmp` ([`mount_script`]), then its command ([`run_script`]).
pub fn instance_script(i: &Instance) -> String {
    mount_script(&i.shares, i.tmp_mb) + &run_script(i)
}

/// What a generic VM writes on its console when it is ready for its assignment (before that, what is sent
/// to its console could meet a terminal not yet in raw mode).
pub const GENERIC_READY: &str = "stoke-generic-ready\n";

/// The instance's part of the init for a *generic* VM, booted before its function is known: its mounts
/// (the host's image, stoke's runtime files, the slot where the function's code, layers and scratch
/// directory will appear) and `/tmp`; then it says it is ready ([`GENERIC_READY`]), waits on its console for
/// its assignment — a line with the script's length in bytes, then the script ([`assignment_script`]) —
/// and runs it.
pub fn generic_script(shares: &[(String, PathBuf, bool)], tmp_mb: u32) -> String {
    mount_script(shares, tmp_mb) + &generic_wait()
}

/// A generic VM's wait for its assignment, once its mounts are done: see [`generic_script`].
pub fn generic_wait() -> String {
    receive_script(GENERIC_READY, "", "/stoke/assigned")
}

/// The guest's side of a script sent on its console ([`framed`]): it says `ready`, reads a line with the
/// script's length in bytes (one that is not a number powers the VM off), runs `on_receipt`, keeps that
/// many bytes in `file` and sources it.
fn receive_script(ready: &str, on_receipt: &str, file: &str) -> String {
    format!(
        "echo {}\nn=\nread -r n\n{on_receipt}case \"$n\" in ''|*[!0-9]*) $B poweroff -f ;; esac\n\
         $B head -c \"$n\" > {file}\n. {file}\n",
        ready.trim_end()
    )
}

/// `script` as the host sends it on a VM's console ([`receive_script`]): its length in bytes on a line of
/// its own, then the script.
pub fn framed(script: &str) -> String {
    format!("{}\n{script}", script.len())
}

/// What a VM booted to be saved as a snapshot writes on its console once its kernel is up, its modules
/// loaded and its disks found — before anything is mounted from the host (QEMU refuses to save a guest
/// with a 9p share mounted).
pub const SNAPSHOT_READY: &str = "stoke-snapshot-ready\n";

/// The instance's part of the init for a VM booted to be saved ([`SNAPSHOT_READY`]): every VM restored
/// from it resumes here, waiting on its console for what makes it an instance — a line with the script's
/// length in bytes, then the script ([`restored_script`]). The guest's uptime when the line came is kept
/// (`U0`): the script sets the clock from the host's time of sending plus what passed since.
pub fn snapshot_instance() -> String {
    receive_script(SNAPSHOT_READY, "read -r U0 _ < /proc/uptime\n", "/stoke/given")
}

/// What a restored VM needs that its snapshot cannot hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    /// Fresh random bytes from the host, hex: mixed into the guest's pool, which is then reseeded. Every VM
    /// restored from one snapshot would otherwise draw the same random numbers.
    pub seed_hex: String,
    /// The host's time when the script is sent: the guest's clock stopped when it was saved.
    pub sent: std::time::Duration,
    /// The snapshot's name, left in `/stoke/restored`.
    pub snapshot: String,
}

/// Sets the guest's clock and reseeds its random number generator (`RNDRESEEDCRNG`, after mixing in the
/// host's bytes), in Perl from the host's `/usr` (Debian's `perl-base` is essential): busybox can neither
/// set the clock below a second nor reseed. The clock is the host's time of sending plus the guest's
/// uptime since the script's length line came (`U0`). x86-64's `clock_settime` is system call 227.
const RENEW: &str = r#"open(my $w, ">", "/dev/urandom") or die "urandom: $!"; print $w pack("H*", $ARGV[0]); close($w) or die "urandom: $!"; open(my $r, "<", "/dev/urandom") or die "urandom: $!"; ioctl($r, 0x5207, 0) or die "reseed: $!"; open(my $u, "<", "/proc/uptime") or die "uptime: $!"; my ($up) = split(" ", <$u>); my $t = $ARGV[1] + $up - $ARGV[2]; my $s = int($t); syscall(227, 0, pack("q<q<", $s, int(($t - $s) * 1e9))) == 0 or die "clock: $!";"#;

/// What a VM restored from a snapshot is sent on its console: the block caches dropped (the saved guest
/// read its disks' first blocks when it found them; this VM's disks are its own), its mounts and `/tmp`
/// ([`mount_script`]), its clock and randomness renewed ([`Renewal`]), then `then` — its command
/// ([`run_script`]) or a generic VM's wait ([`generic_wait`]).
pub fn restored_script(shares: &[(String, PathBuf, bool)], tmp_mb: u32, renewal: &Renewal, then: &str) -> String {
    let mut s = String::from("echo 3 > /proc/sys/vm/drop_caches\n");
    s.push_str(&mount_script(shares, tmp_mb));
    let sent = format!("{}.{:06}", renewal.sent.as_secs(), renewal.sent.subsec_micros());
    s.push_str(&format!(
        "/usr/bin/perl -e {} {} {sent} \"$U0\" || {{ echo 'stoke: cannot renew the restored guest' >&2; $B poweroff -f; }}\n",
        quote(RENEW),
        quote(&renewal.seed_hex)
    ));
    s.push_str(&format!("echo {} > /stoke/restored\n", quote(&renewal.snapshot)));
    s + then
}

/// A generic VM's assignment: the slot's directories bound where the function sees them (`binds`: slot
/// path, guest path, writable), the slot itself unmounted (the function sees only what was bound), then
/// its command.
pub fn assignment_script(binds: &[(PathBuf, PathBuf, bool)], slot: &Path, i: &Instance) -> String {
    let mut s = String::new();
    for (from, to, writable) in binds {
        let (from, to) = (quote(&from.display().to_string()), quote(&to.display().to_string()));
        s.push_str(&format!("$B mkdir -p {to} && $B mount --bind {from} {to}"));
        if !writable {
            s.push_str(&format!(" && $B mount -o remount,bind,ro,nosuid,nodev {to}"));
        }
        s.push_str(" || $B poweroff -f\n");
    }
    s.push_str(&format!("$B umount -l {}\n", quote(&slot.display().to_string())));
    s + &run_script(i)
}

/// Mounts the shares (`share TAG ro|rw PATH`, a function of [`INIT`]) and `/tmp`: the VM's own disk,
/// formatted by the host, or without one a tmpfs of `tmp_mb`.
pub fn mount_script(shares: &[(String, PathBuf, bool)], tmp_mb: u32) -> String {
    let mut s = String::new();
    for (tag, at, writable) in shares {
        let mode = if *writable { "rw" } else { "ro" };
        s.push_str(&format!("share {} {mode} {}\n", quote(tag), quote(&at.display().to_string())));
    }
    s.push_str("$B mkdir -p /tmp\n");
    s.push_str(&format!(
        "if [ -n \"$TMPDEV\" ]; then $B mount -t ext4 -o nosuid,nodev,noatime \"$TMPDEV\" /tmp && $B chmod 1777 /tmp \
         && $B rmdir /tmp/lost+found; \
         else $B mount -t tmpfs -o nosuid,nodev,mode=1777,size={}m tmpfs /tmp; fi\n",
        tmp_mb.max(1)
    ));
    s
}

/// Makes the guest's root read-only, then runs the function: as the unprivileged [`USER`] with no
/// capabilities and no new privileges, with exactly its environment; the init waits for it and reads its
/// exit status from `$?`.
pub fn run_script(i: &Instance) -> String {
    let mut s = String::new();
    // Everything is mounted: the guest's own root becomes read-only, as the other sandboxes' roots are.
    s.push_str("$B chmod 755 / && $B mount -o remount,ro / || $B poweroff -f\n");
    s.push_str("cd ");
    s.push_str(&quote(&i.cwd.display().to_string()));
    s.push_str(" || $B poweroff -f\n");
    s.push_str(&format!("ulimit -n {}\nulimit -u {}\n", i.open_files, i.processes));
    let mut command = String::from("exec /stoke/busybox setpriv --nnp /stoke/busybox env -i");
    for (k, v) in &i.env {
        command.push(' ');
        command.push_str(&quote(&format!("{k}={v}")));
    }
    command.push(' ');
    command.push_str(&quote(&i.program.display().to_string()));
    for a in &i.args {
        command.push(' ');
        command.push_str(&quote(a));
    }
    // `su` as root asks no password: the function runs as the instance's user, its capabilities gone.
    s.push_str(&format!("$B su -s /stoke/sh {USER} -c {} </dev/null 2>&1\n", quote(&command)));
    s
}

/// The relay QEMU starts for each connection to the Runtime API: it joins the connection to the port the
/// instance's endpoint listens on, read from `port_file` when the connection comes (a generic VM learns
/// its port only when it is given its function).
pub fn relay_script(busybox: &str, port_file: &Path) -> String {
    let port = quote(&port_file.display().to_string());
    format!("exec {busybox} nc 127.0.0.1 \"$({busybox} cat {port})\"\n")
}

/// The guest user functions run as (its ids are the instance's, in the guest's `/etc/passwd`).
pub const USER: &str = "sbx_user";

/// The guest's `/etc/passwd` and `/etc/group`: root and the instance's user.
pub fn users(uid: u32, gid: u32) -> (String, String) {
    (
        format!("root:x:0:0:root:/root:/sbin/nologin\n{USER}:x:{uid}:{gid}::/tmp:/sbin/nologin\n"),
        format!("root:x:0:\n{USER}:x:{gid}:\n"),
    )
}

/// How a VM is accelerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's own emulation: no hardware support needed, many times slower.
    Tcg,
}

/// What QEMU is given for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub accel: Accel,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub status_disk: PathBuf,
    /// The instance's `/tmp`: a raw disk image with a file system on it.
    pub tmp_disk: Option<PathBuf>,
    pub memory_mb: u32,
    pub vcpus: u32,
    /// The emulator's translation cache, in MB (TCG only).
    pub tcg_cache_mb: u32,
    /// The host's TSC frequency, in kHz, told to an emulated guest: its kernel otherwise calibrates the
    /// TSC against the emulated timer, which fails now and then under load and leaves it without a clock.
    pub tsc_khz: Option<u32>,
    /// Host directories shared: (tag, host path, writable).
    pub shares: Vec<(String, PathBuf, bool)>,
    /// The command QEMU runs for each connection the guest opens to [`RUNTIME_API_ADDR`]: it relays the
    /// connection to the instance's endpoint.
    pub relay: Vec<String>,
    /// QEMU's machine protocol on this Unix socket: to save the VM, or to learn that a restored one runs.
    pub qmp: Option<PathBuf>,
    /// The saved VM to restore instead of booting: a state file QEMU's `migrate` wrote.
    pub incoming: Option<PathBuf>,
}

/// QEMU's arguments for `m`: a `microvm` machine with no firmware, no PCI and no devices but the serial
/// console (the function's output), a network card whose only reachable peer is the Runtime API relay,
/// the shared directories and the status disk; QEMU's own system calls filtered (privilege changes stay
/// allowed: the filter reaches the relays QEMU starts, which `setsid`).
pub fn qemu_args(m: &Machine) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    match m.accel {
        Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => push(&["-accel", &format!("tcg,tb-size={}", m.tcg_cache_mb), "-cpu", "max"]),
    }
    push(&["-M", "microvm,x-option-roms=off,rtc=on", "-nodefaults", "-no-user-config", "-no-reboot"]);
    push(&["-display", "none", "-monitor", "none", "-serial", "stdio"]);
    push(&["-sandbox", "on,obsolete=deny,resourcecontrol=deny,spawn=allow"]);
    let memory = format!("{}M", m.memory_mb);
    let vcpus = m.vcpus.max(1).to_string();
    push(&["-m", &memory, "-smp", &vcpus]);
    let kernel = m.kernel.display().to_string();
    let initrd = m.initrd.display().to_string();
    push(&["-kernel", &kernel, "-initrd", &initrd]);
    let mut cmdline = String::from("console=ttyS0 quiet loglevel=0 panic=-1 rdinit=/init random.trust_cpu=on");
    if let Some(khz) = m.tsc_khz {
        cmdline.push_str(&format!(" tsc_early_khz={khz} tsc=reliable"));
    }
    push(&["-append", &cmdline]);
    let drive = format!("file={},format=raw,if=none,id=status,cache=writethrough", m.status_disk.display());
    push(&["-drive", &drive, "-device", "virtio-blk-device,drive=status"]);
    if let Some(tmp) = &m.tmp_disk {
        let drive =
            format!("file={},format=raw,if=none,id=tmp,discard=unmap", tmp.display().to_string().replace(',', ",,"));
        push(&["-drive", &drive, "-device", "virtio-blk-device,drive=tmp"]);
    }
    let relay = m.relay.join(" ").replace(',', ",,");
    let (addr, port) = RUNTIME_API_ADDR.split_once(':').unwrap_or((RUNTIME_API_ADDR, "9001"));
    let netdev = format!("user,id=net,restrict=on,ipv6=off,guestfwd=tcp:{addr}:{port}-cmd:{relay}");
    push(&["-netdev", &netdev, "-device", "virtio-net-device,netdev=net"]);
    for (tag, path, writable) in &m.shares {
        let ro = if *writable { "" } else { ",readonly=on" };
        // QEMU's option syntax doubles a comma inside a value.
        let path = path.display().to_string().replace(',', ",,");
        let fsdev = format!("local,id={tag},path={path},security_model=none{ro}");
        let device = format!("virtio-9p-device,fsdev={tag},mount_tag={tag}");
        push(&["-fsdev", &fsdev, "-device", &device]);
    }
    if let Some(qmp) = &m.qmp {
        let qmp = format!("unix:{},server=on,wait=off", qmp.display().to_string().replace(',', ",,"));
        push(&["-qmp", &qmp]);
    }
    if let Some(state) = &m.incoming {
        // Run by the shell; read from a file on the host, restored before the guest runs.
        let incoming = format!("exec:cat {}", quote(&state.display().to_string()));
        push(&["-incoming", &incoming]);
    }
    a
}

/// The shell command QEMU's `migrate` runs to save a VM's state into `state`.
pub fn save_uri(state: &Path) -> String {
    format!("exec:cat > {}", quote(&state.display().to_string()))
}

/// How the guest's function ended, from the status disk's first line (`exit=N oom=M`): its exit status
/// and whether the guest kernel killed a process for memory. `None` when the VM never got that far.
pub fn parse_status(disk: &[u8]) -> Option<(i32, bool)> {
    let line = std::str::from_utf8(disk.split(|b| *b == b'\n' || *b == 0).next()?).ok()?;
    let mut code = None;
    let mut oom = None;
    for field in line.split_whitespace() {
        match field.split_once('=') {
            Some(("exit", v)) => code = v.parse().ok(),
            Some(("oom", v)) => oom = v.parse::<u64>().ok(),
            _ => {}
        }
    }
    Some((code?, oom? > 0))
}

/// Whether `elf` is a 64-bit little-endian ELF executable with no program interpreter (statically
/// linked): what can run in a guest before any library is there.
pub fn static_elf(elf: &[u8]) -> bool {
    let u16_at = |at: usize| elf.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u64_at = |at: usize| elf.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else { return false };
    let Ok(phoff) = usize::try_from(phoff) else { return false };
    (0..count).all(|i| {
        let at = phoff.saturating_add(i.saturating_mul(size));
        // PT_INTERP (3): the dynamic loader a dynamically linked program needs.
        elf.get(at..at + 4).is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != 3)
    })
}

/// Where each host directory an instance needs is mounted in its guest, with a 9p tag of its own: the
/// host's top-level directories (`/usr`, …) at their own paths, then the instance's own.
pub fn shares(
    host_top: &[PathBuf],
    task_root: &Path,
    runtime_dir: &Path,
    layers: Option<&Path>,
    host_dirs: &[PathBuf],
    scratch: &Path,
) -> Vec<(String, PathBuf, PathBuf, bool)> {
    use crate::lean::{LAYER_ROOT, RUNTIME_DIR, SCRATCH_DIR, TASK_ROOT};
    let mut out: Vec<(PathBuf, PathBuf, bool)> = host_top.iter().map(|p| (p.clone(), p.clone(), false)).collect();
    out.push((task_root.to_path_buf(), TASK_ROOT.into(), false));
    out.push((runtime_dir.to_path_buf(), RUNTIME_DIR.into(), false));
    if let Some(layers) = layers {
        out.push((layers.to_path_buf(), LAYER_ROOT.into(), false));
    }
    out.extend(host_dirs.iter().map(|d| (d.clone(), d.clone(), false)));
    out.push((scratch.to_path_buf(), SCRATCH_DIR.into(), true));
    out.into_iter().enumerate().map(|(n, (host, guest, rw))| (format!("s{n}"), host, guest, rw)).collect()
}

#[cfg(test)]
mod tests;
