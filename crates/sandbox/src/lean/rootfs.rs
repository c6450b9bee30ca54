//! The file system an instance sees, as a plan of steps computed from plain values, and the code that
//! carries a plan out through the [`Sys`] trait. The plan is unit-tested without root; only the real `Sys`
//! makes syscalls.
//!
//! What an instance sees: a small read-only tmpfs as `/`, the base image's directories bound read-only
//! (default image: the host's `/usr` and its merged-`/usr` links, a few `/etc` essentials, and the
//! runtime's own installation), the function code read-only at `/var/task`, stoke's runtime files at
//! `/var/runtime`, `/opt` for layers, a size-limited tmpfs at `/tmp`, its own `/proc`, and a minimal
//! `/dev`. The host's root is detached after `pivot_root`, so nothing else is reachable.

use std::io;
use std::path::{Path, PathBuf};

/// Flags a step can ask for; translated to `MS_*` by the real [`Sys`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountFlags {
    pub bind: bool,
    pub recursive: bool,
    pub remount: bool,
    pub readonly: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
    pub private: bool,
    pub slave: bool,
}

const RO: MountFlags = MountFlags {
    bind: true,
    recursive: false,
    remount: true,
    readonly: true,
    nosuid: true,
    nodev: true,
    noexec: false,
    private: false,
    slave: false,
};

/// One step of setting up the root. Paths are absolute in the *host's* view until [`Step::PivotRoot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        fstype: Option<&'static str>,
        flags: MountFlags,
        data: Option<String>,
    },
    MkdirAll {
        path: PathBuf,
    },
    /// An empty file to bind a file onto.
    Touch {
        path: PathBuf,
    },
    WriteFile {
        path: PathBuf,
        contents: Vec<u8>,
    },
    Symlink {
        target: PathBuf,
        link: PathBuf,
    },
    PivotRoot {
        new_root: PathBuf,
        put_old: PathBuf,
    },
    /// Detaches a mount and everything under it.
    Detach {
        path: PathBuf,
    },
    Rmdir {
        path: PathBuf,
    },
    /// Steps that apply only if `path` exists (what a kernel offers in `/proc` varies).
    IfExists {
        path: PathBuf,
        then: Vec<Step>,
    },
}

/// What kind of entry a host path is, as far as the plan cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    Missing,
    Dir,
    File,
    Symlink(PathBuf),
}

/// The host's answers the plan needs (real: `symlink_metadata`, `read_dir`; tests: a table).
pub trait HostView {
    fn entry(&self, path: &Path) -> HostEntry;
    /// The names in a directory, sorted; empty when it is not one.
    fn list(&self, dir: &Path) -> Vec<String>;
}

/// The real host.
#[derive(Debug)]
pub struct RealHost;

impl HostView for RealHost {
    fn entry(&self, path: &Path) -> HostEntry {
        match std::fs::symlink_metadata(path) {
            Err(_) => HostEntry::Missing,
            Ok(m) if m.file_type().is_symlink() => {
                std::fs::read_link(path).map(HostEntry::Symlink).unwrap_or(HostEntry::Missing)
            }
            Ok(m) if m.is_dir() => HostEntry::Dir,
            Ok(_) => HostEntry::File,
        }
    }

    fn list(&self, dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// The top-level entries of the default image taken from the host (directories bound, symlinks copied).
pub const HOST_TOP: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// `/etc` entries taken from the host when present: name resolution, TLS roots, the dynamic linker's
/// cache, time zone data, and the alternatives links that some `/usr/bin` commands go through.
pub const HOST_ETC: &[&str] = &[
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "gai.conf",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
];

/// Top-level entries of an imported image the instance does not take from it: it makes its own.
pub const IMAGE_SKIP_TOP: &[&str] = &["proc", "dev", "tmp", "etc", "sys"];
/// `/etc` entries of an imported image the instance does not take from it: its own user and host name, no
/// password hashes, and the host's name resolution (as container runtimes do).
pub const IMAGE_SKIP_ETC: &[&str] = &["passwd", "group", "hostname", "shadow", "gshadow", "resolv.conf", "hosts"];
/// Host `/etc` files an instance on an imported image gets (name resolution works as on the host).
pub const IMAGE_HOST_ETC: &[&str] = &["resolv.conf", "hosts"];

/// Device nodes bound from the host into the instance's `/dev`.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Entries of `/proc` hidden (bound over with `/dev/null`) or made read-only, as container runtimes do.
const PROC_MASKED: &[&str] = &["kcore", "keys", "timer_list", "sched_debug", "latency_stats"];
const PROC_READONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus", "fs"];

/// A read-only bind of a host directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    /// Read-write (still nosuid, nodev); read-only otherwise.
    pub writable: bool,
}

impl Bind {
    pub fn read_only(source: PathBuf, target: PathBuf) -> Bind {
        Bind { source, target, writable: false }
    }
}

/// Everything the plan depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootSpec {
    /// An empty host directory the root tmpfs is mounted on (private to the instance's mount namespace).
    pub new_root: PathBuf,
    /// Read-only binds beyond the base image: the code at `/var/task`, the runtime files, layers, and
    /// host directories a runtime's interpreter lives in (at the same path).
    pub binds: Vec<Bind>,
    /// What `/tmp` is.
    pub tmp: Tmp,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    /// Unpacked layers, in the order the function lists them: merged read-only at `/opt`, later layers
    /// winning where files collide.
    pub layers: Vec<PathBuf>,
    /// An imported root file system to take the image's directories from, instead of the host's.
    pub image: Option<PathBuf>,
    /// A generic instance's attach points on the host (`task`, `opt`): bound at `/var/task` and `/opt` as
    /// slaves of the server's shared mounts, so code and layers attached there later appear inside.
    pub attach: Option<PathBuf>,
    /// A zygote's attach root on the host, bound at [`ZYGOTE_ATTACH`] as a slave: each instance it forks
    /// finds its code, scratch directory and cgroups in a slot the server mounts there.
    pub attach_root: Option<PathBuf>,
    /// Host device nodes beyond [`DEVICES`] bound into `/dev` under their own names (an instance's GPUs).
    pub devices: Vec<PathBuf>,
    /// A host directory bound writable at `/dev/shm` (a GPU share's MPS daemon's shared memory).
    pub shm: Option<PathBuf>,
}

/// An instance's `/tmp`: a tmpfs, or the disk the ephemeral storage made for it, bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tmp {
    /// A tmpfs of this size (it counts against the instance's memory).
    Memory { size_mb: u32 },
    /// A host directory, bound writable: the instance's disk, or a generic instance's attach point.
    Bind(PathBuf),
}

/// Where a zygote sees its attach root.
pub const ZYGOTE_ATTACH: &str = "/.stoke-attach";

fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn mount_ro(source: &Path, target: PathBuf) -> [Step; 2] {
    [
        Step::Mount {
            source: Some(source.to_path_buf()),
            target: target.clone(),
            fstype: None,
            flags: MountFlags { bind: true, recursive: true, ..Default::default() },
            data: None,
        },
        Step::Mount { source: None, target, fstype: None, flags: RO, data: None },
    ]
}

/// A writable bind: the source, then a remount that keeps it writable but drops set-uid and devices.
fn mount_rw(source: &Path, target: PathBuf) -> [Step; 2] {
    [
        Step::Mount {
            source: Some(source.to_path_buf()),
            target: target.clone(),
            fstype: None,
            flags: MountFlags { bind: true, ..Default::default() },
            data: None,
        },
        Step::Mount {
            source: None,
            target,
            fstype: None,
            flags: MountFlags { bind: true, remount: true, nosuid: true, nodev: true, ..Default::default() },
            data: None,
        },
    ]
}

fn tmpfs(target: PathBuf, data: String, noexec: bool) -> Step {
    Step::Mount {
        source: Some("tmpfs".into()),
        target,
        fstype: Some("tmpfs"),
        flags: MountFlags { nosuid: true, nodev: true, noexec, ..Default::default() },
        data: Some(data),
    }
}

/// The steps that build the instance's root and switch to it, in order.
pub fn plan(spec: &RootSpec, host: &dyn HostView) -> Vec<Step> {
    let root = spec.new_root.as_path();
    let receives = spec.attach.is_some() || spec.attach_root.is_some();
    let mut steps = vec![
        // Nothing mounted from here on propagates back to the host. A generic instance keeps receiving
        // (slave): its attach points must see what the server mounts on them; every other bind is then made
        // private on its own.
        Step::Mount {
            source: None,
            target: "/".into(),
            fstype: None,
            flags: MountFlags { recursive: true, private: !receives, slave: receives, ..Default::default() },
            data: None,
        },
        tmpfs(root.to_path_buf(), "mode=755,size=4m".into(), false),
    ];
    // The image's top-level directories: the host's own (`default`), or an imported image's.
    let (image_root, top): (&Path, Vec<String>) = match &spec.image {
        Some(image) => {
            let names = host.list(image).into_iter().filter(|n| !IMAGE_SKIP_TOP.contains(&n.as_str())).collect();
            (image.as_path(), names)
        }
        None => (Path::new("/"), HOST_TOP.iter().map(|s| s.to_string()).collect()),
    };
    for name in &top {
        take_entry(&mut steps, host, &image_root.join(name), inside(root, &Path::new("/").join(name)));
    }
    let etc = inside(root, Path::new("/etc"));
    steps.push(Step::MkdirAll { path: etc.clone() });
    steps.push(Step::WriteFile {
        path: etc.join("passwd"),
        contents: format!(
            "root:x:0:0:root:/root:/sbin/nologin\nsbx_user:x:{}:{}::/tmp:/sbin/nologin\n",
            spec.uid, spec.gid
        )
        .into_bytes(),
    });
    steps.push(Step::WriteFile {
        path: etc.join("group"),
        contents: format!("root:x:0:\nsbx_user:x:{}:\n", spec.gid).into_bytes(),
    });
    steps.push(Step::WriteFile { path: etc.join("hostname"), contents: format!("{}\n", spec.hostname).into_bytes() });
    match &spec.image {
        Some(image) => {
            let image_etc = image.join("etc");
            for name in host.list(&image_etc) {
                if !IMAGE_SKIP_ETC.contains(&name.as_str()) {
                    take_entry(&mut steps, host, &image_etc.join(&name), etc.join(&name));
                }
            }
            for name in IMAGE_HOST_ETC {
                take_entry(&mut steps, host, &Path::new("/etc").join(name), etc.join(name));
            }
        }
        None => {
            for name in HOST_ETC {
                take_entry(&mut steps, host, &Path::new("/etc").join(name), etc.join(name));
            }
        }
    }
    for bind in &spec.binds {
        let target = inside(root, &bind.target);
        match host.entry(&bind.source) {
            HostEntry::File => steps.push(Step::Touch { path: target.clone() }),
            _ => steps.push(Step::MkdirAll { path: target.clone() }),
        }
        if bind.writable {
            steps.extend(mount_rw(&bind.source, target));
        } else {
            steps.extend(mount_ro(&bind.source, target));
        }
    }
    let opt = inside(root, Path::new("/opt"));
    steps.push(Step::MkdirAll { path: opt.clone() });
    if let Some(attach) = &spec.attach {
        let task = inside(root, Path::new("/var/task"));
        steps.push(Step::MkdirAll { path: task.clone() });
        steps.extend(mount_ro(&attach.join("task"), task));
        steps.extend(mount_ro(&attach.join("opt"), opt.clone()));
        let scratch = inside(root, Path::new("/var/stoke-scratch"));
        steps.push(Step::MkdirAll { path: scratch.clone() });
        steps.extend(mount_rw(&attach.join("scratch"), scratch));
    }
    match spec.layers.as_slice() {
        [] => {}
        [one] => steps.extend(mount_ro(one, opt)),
        many => {
            // A read-only overlay of the layers alone (no upper directory); the first lower directory is the
            // top, so the last layer listed goes first.
            let lower: Vec<String> = many.iter().rev().map(|p| p.display().to_string()).collect();
            steps.push(Step::Mount {
                source: Some("overlay".into()),
                target: opt,
                fstype: Some("overlay"),
                flags: MountFlags { readonly: true, nosuid: true, nodev: true, ..Default::default() },
                data: Some(format!("lowerdir={}", lower.join(":"))),
            });
        }
    }
    if let Some(attach_root) = &spec.attach_root {
        // Where the instances a zygote forks bind their code and scratch directory (the root is read-only).
        steps.push(Step::MkdirAll { path: inside(root, Path::new("/var/task")) });
        steps.push(Step::MkdirAll { path: inside(root, Path::new("/var/stoke-scratch")) });
        let at = inside(root, Path::new(ZYGOTE_ATTACH));
        steps.push(Step::MkdirAll { path: at.clone() });
        steps.push(Step::Mount {
            source: Some(attach_root.clone()),
            target: at,
            fstype: None,
            flags: MountFlags { bind: true, ..Default::default() },
            data: None,
        });
    }
    if let Some(attach) = spec.attach.as_ref().or(spec.attach_root.as_ref()) {
        cut_propagation(&mut steps, attach);
    }
    let tmp = inside(root, Path::new("/tmp"));
    steps.push(Step::MkdirAll { path: tmp.clone() });
    match &spec.tmp {
        Tmp::Memory { size_mb } => steps.push(tmpfs(tmp, format!("mode=1777,size={size_mb}m"), false)),
        Tmp::Bind(source) => steps.extend(mount_rw(source, tmp)),
    }

    let proc = inside(root, Path::new("/proc"));
    steps.push(Step::MkdirAll { path: proc.clone() });
    steps.push(Step::Mount {
        source: Some("proc".into()),
        target: proc.clone(),
        fstype: Some("proc"),
        flags: MountFlags { nosuid: true, nodev: true, noexec: true, ..Default::default() },
        data: None,
    });
    // A zygote's instances mount a /proc of their own in its user namespace, which the kernel allows only
    // where a /proc is fully visible: they mask theirs after mounting it.
    let masks = if spec.attach_root.is_some() { &[][..] } else { PROC_MASKED };
    let read_only = if spec.attach_root.is_some() { &[][..] } else { PROC_READONLY };
    for name in masks {
        let mask = Step::Mount {
            source: Some("/dev/null".into()),
            target: proc.join(name),
            fstype: None,
            flags: MountFlags { bind: true, ..Default::default() },
            data: None,
        };
        steps.push(Step::IfExists { path: proc.join(name), then: vec![mask] });
    }
    for name in read_only {
        steps
            .push(Step::IfExists { path: proc.join(name), then: mount_ro(&proc.join(name), proc.join(name)).to_vec() });
    }

    let dev = inside(root, Path::new("/dev"));
    steps.push(Step::MkdirAll { path: dev.clone() });
    steps.push(tmpfs(dev.clone(), "mode=755,size=64k".into(), true));
    let standard = DEVICES.iter().map(|name| Path::new("/dev").join(name));
    let extra = spec.devices.iter().filter(|d| d.file_name().is_some()).cloned();
    for host_dev in standard.chain(extra) {
        let Some(name) = host_dev.file_name() else { continue };
        steps.push(Step::Touch { path: dev.join(name) });
        steps.push(Step::Mount {
            target: dev.join(name),
            source: Some(host_dev.clone()),
            fstype: None,
            flags: MountFlags { bind: true, ..Default::default() },
            data: None,
        });
    }
    if let Some(shm) = &spec.shm {
        steps.push(Step::MkdirAll { path: dev.join("shm") });
        steps.extend(mount_rw(shm, dev.join("shm")));
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Step::Symlink { target: target.into(), link: dev.join(link) });
    }
    steps.push(Step::Mount {
        source: None,
        target: dev,
        fstype: None,
        flags: MountFlags { remount: true, readonly: true, nosuid: true, noexec: true, ..RO },
        data: None,
    });

    let old = root.join(".old");
    steps.push(Step::MkdirAll { path: old.clone() });
    steps.push(Step::PivotRoot { new_root: root.to_path_buf(), put_old: old });
    steps.push(Step::Detach { path: "/.old".into() });
    steps.push(Step::Rmdir { path: "/.old".into() });
    // Last: the root itself becomes read-only (its tmpfs held only mount points and /etc's small files).
    steps.push(Step::Mount {
        source: None,
        target: "/".into(),
        fstype: None,
        flags: MountFlags {
            bind: true,
            remount: true,
            readonly: true,
            nosuid: true,
            nodev: true,
            ..Default::default()
        },
        data: None,
    });
    steps
}

/// After each bind of a host path other than the attach points, makes the bound tree private: only the
/// attach points keep receiving the server's mounts.
fn cut_propagation(steps: &mut Vec<Step>, attach: &Path) {
    let mut out = Vec::with_capacity(steps.len() * 2);
    for step in steps.drain(..) {
        let cut = match &step {
            Step::Mount { source: None, target, flags, .. } if flags.remount && flags.readonly => Some(target.clone()),
            _ => None,
        };
        let from_attach = out.last().is_some_and(
            |prev: &Step| matches!(prev, Step::Mount { source: Some(src), .. } if src.starts_with(attach)),
        );
        out.push(step);
        if let (Some(target), false) = (cut, from_attach) {
            out.push(Step::Mount {
                source: None,
                target,
                fstype: None,
                flags: MountFlags { recursive: true, private: true, ..Default::default() },
                data: None,
            });
        }
    }
    *steps = out;
}

/// Takes one entry of an image into the instance: a directory or file bound read-only, a link copied
/// (relative links — `localtime → ../usr/share/zoneinfo/…` — resolve inside the instance too).
fn take_entry(steps: &mut Vec<Step>, host: &dyn HostView, source: &Path, target: PathBuf) {
    match host.entry(source) {
        HostEntry::Dir => {
            steps.push(Step::MkdirAll { path: target.clone() });
            steps.extend(mount_ro(source, target));
        }
        HostEntry::File => {
            steps.push(Step::Touch { path: target.clone() });
            steps.extend(mount_ro(source, target));
        }
        HostEntry::Symlink(link) => steps.push(Step::Symlink { target: link, link: target }),
        HostEntry::Missing => {}
    }
}

/// Why a plan cannot be built from these values (checked before anything is mounted).
pub fn check(spec: &RootSpec) -> Result<(), String> {
    if spec.layers.len() > 1 {
        check_lowerdirs(&spec.layers)?;
    }
    Ok(())
}

/// Why these layer directories cannot be an overlay mount's lower directories, if they cannot.
pub(crate) fn check_lowerdirs(layers: &[PathBuf]) -> Result<(), String> {
    match layers.iter().find(|p| !usable_in_lowerdir(p)) {
        Some(bad) => Err(format!(
            "layer directory {} has a ':', ',' or '\\' in its path, which an overlay mount cannot take; move the \
             data directory to a plain path",
            bad.display()
        )),
        None => Ok(()),
    }
}

/// True when `path` can appear in an overlay mount's `lowerdir` list (which splits on `:` and `,`).
fn usable_in_lowerdir(path: &Path) -> bool {
    !path.as_os_str().as_encoded_bytes().iter().any(|b| matches!(b, b':' | b',' | b'\\'))
}

/// The operations a plan needs.
pub trait Sys {
    fn mount(&mut self, step: &Step) -> io::Result<()>;
    fn mkdir_all(&mut self, path: &Path) -> io::Result<()>;
    fn touch(&mut self, path: &Path) -> io::Result<()>;
    fn write_file(&mut self, path: &Path, contents: &[u8]) -> io::Result<()>;
    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()>;
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> io::Result<()>;
    fn detach(&mut self, path: &Path) -> io::Result<()>;
    fn rmdir(&mut self, path: &Path) -> io::Result<()>;
    fn exists(&mut self, path: &Path) -> bool;
}

/// Carries out `steps`; the error names the step that failed.
pub fn apply(steps: &[Step], sys: &mut dyn Sys) -> Result<(), String> {
    for step in steps {
        let done = match step {
            Step::Mount { .. } => sys.mount(step),
            Step::MkdirAll { path } => sys.mkdir_all(path),
            Step::Touch { path } => sys.touch(path),
            Step::WriteFile { path, contents } => sys.write_file(path, contents),
            Step::Symlink { target, link } => sys.symlink(target, link),
            Step::PivotRoot { new_root, put_old } => sys.pivot_root(new_root, put_old),
            Step::Detach { path } => sys.detach(path),
            Step::Rmdir { path } => sys.rmdir(path),
            Step::IfExists { path, then } => {
                if sys.exists(path) {
                    apply(then, sys)?;
                }
                Ok(())
            }
        };
        done.map_err(|e| format!("{}: {e}", describe(step)))?;
    }
    Ok(())
}

fn describe(step: &Step) -> String {
    match step {
        Step::Mount { source, target, fstype, .. } => format!(
            "mount {} on {}{}",
            source.as_ref().map_or("(remount)".into(), |s| s.display().to_string()),
            target.display(),
            fstype.map(|t| format!(" ({t})")).unwrap_or_default()
        ),
        Step::MkdirAll { path } => format!("mkdir {}", path.display()),
        Step::Touch { path } => format!("create {}", path.display()),
        Step::WriteFile { path, .. } => format!("write {}", path.display()),
        Step::Symlink { target, link } => format!("symlink {} -> {}", link.display(), target.display()),
        Step::PivotRoot { new_root, .. } => format!("pivot_root to {}", new_root.display()),
        Step::Detach { path } => format!("detach {}", path.display()),
        Step::Rmdir { path } => format!("rmdir {}", path.display()),
        Step::IfExists { path, .. } => format!("check {}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Table(HashMap<PathBuf, HostEntry>);

    impl HostView for Table {
        fn entry(&self, path: &Path) -> HostEntry {
            self.0.get(path).cloned().unwrap_or(HostEntry::Missing)
        }

        fn list(&self, dir: &Path) -> Vec<String> {
            let mut names: Vec<String> = self
                .0
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            names.sort();
            names
        }
    }

    fn debian() -> Table {
        let mut t = HashMap::new();
        t.insert("/usr".into(), HostEntry::Dir);
        for (l, to) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")] {
            t.insert(Path::new("/").join(l), HostEntry::Symlink(to.into()));
        }
        t.insert("/etc/resolv.conf".into(), HostEntry::File);
        t.insert("/etc/ssl".into(), HostEntry::Dir);
        t.insert("/etc/localtime".into(), HostEntry::Symlink("/usr/share/zoneinfo/Etc/UTC".into()));
        t.insert("/srv/code".into(), HostEntry::Dir);
        Table(t)
    }

    fn spec() -> RootSpec {
        RootSpec {
            new_root: "/data/run/root".into(),
            binds: vec![Bind::read_only("/srv/code".into(), "/var/task".into())],
            tmp: Tmp::Memory { size_mb: 512 },
            uid: 993,
            gid: 990,
            hostname: "stoke".into(),
            layers: Vec::new(),
            image: None,
            attach: None,
            attach_root: None,
            devices: Vec::new(),
            shm: None,
        }
    }

    fn position(steps: &[Step], pred: impl Fn(&Step) -> bool) -> usize {
        steps.iter().position(pred).expect("step present")
    }

    fn mounted_ro(steps: &[Step], target: &str) -> bool {
        steps.iter().any(|s| {
            matches!(s, Step::Mount { source: None, target: t, flags, .. }
                if t == Path::new(target) && flags.remount && flags.readonly)
        })
    }

    #[test]
    fn a_writable_bind_stays_writable_without_setuid_or_devices() {
        let mut spec = spec();
        spec.binds.push(Bind {
            source: "/data/run/scratch/1".into(),
            target: "/var/stoke-scratch".into(),
            writable: true,
        });
        let steps = plan(&spec, &debian());
        let target = Path::new("/data/run/root/var/stoke-scratch");
        assert!(!mounted_ro(&steps, "/data/run/root/var/stoke-scratch"));
        assert!(steps.iter().any(|s| matches!(s, Step::Mount { source: None, target: t, flags, .. }
            if t == target && flags.remount && flags.nosuid && flags.nodev && !flags.readonly)));
        assert!(mounted_ro(&steps, "/data/run/root/var/task"), "the code stays read-only");
    }

    #[test]
    fn an_instance_with_a_gpu_gets_its_device_nodes_and_the_daemons_shared_memory() {
        let mut spec = spec();
        spec.devices = vec!["/dev/nvidia1".into(), "/dev/nvidiactl".into()];
        spec.shm = Some("/data/run/mps/1/shm".into());
        let steps = plan(&spec, &debian());
        for name in ["nvidia1", "nvidiactl", "null"] {
            let at = Path::new("/data/run/root/dev").join(name);
            assert!(steps.contains(&Step::Touch { path: at.clone() }), "{name}");
            assert!(
                steps.iter().any(|s| matches!(s, Step::Mount { source: Some(src), target, .. }
                if target == &at && src == &Path::new("/dev").join(name))),
                "{name} bound from the host"
            );
        }
        assert!(!steps.iter().any(|s| matches!(s, Step::Touch { path } if path.ends_with("nvidia0"))));
        let shm = Path::new("/data/run/root/dev/shm");
        assert!(steps.iter().any(|s| matches!(s, Step::Mount { source: Some(src), target, .. }
            if target == shm && src == Path::new("/data/run/mps/1/shm"))));
        assert!(!mounted_ro(&steps, "/data/run/root/dev/shm"), "the shared memory is writable");
        // Without a GPU, no device beyond the standard ones and no /dev/shm.
        let plain = plan(&super::tests::spec(), &debian());
        assert!(!plain
            .iter()
            .any(|s| matches!(s, Step::Touch { path } if path.starts_with("/data/run/root/dev/nvidia"))));
        assert!(!plain.iter().any(|s| matches!(s, Step::MkdirAll { path } if path == shm)));
    }

    #[test]
    fn binds_the_image_and_the_code_read_only_and_replicates_links() {
        let steps = plan(&spec(), &debian());
        assert!(mounted_ro(&steps, "/data/run/root/usr"));
        assert!(mounted_ro(&steps, "/data/run/root/var/task"));
        assert!(mounted_ro(&steps, "/data/run/root/etc/ssl"));
        assert!(mounted_ro(&steps, "/data/run/root/etc/resolv.conf"));
        assert!(steps.contains(&Step::Symlink { target: "usr/lib64".into(), link: "/data/run/root/lib64".into() }));
        assert!(steps.contains(&Step::Symlink {
            target: "/usr/share/zoneinfo/Etc/UTC".into(),
            link: "/data/run/root/etc/localtime".into()
        }));
        // Absent host entries are skipped, not created.
        assert!(!steps.iter().any(|s| matches!(s, Step::Mount { target, .. } if target.ends_with("lib32"))));
        // Every bind of a host path is followed by its read-only remount; only devices and /proc masks are
        // bound writable, and nothing else of the host is mounted.
        for (i, s) in steps.iter().enumerate() {
            if let Step::Mount { source: Some(src), flags, target, .. } = s {
                if flags.bind && !src.starts_with("/dev") {
                    assert_eq!(
                        steps[i + 1],
                        Step::Mount { source: None, target: target.clone(), fstype: None, flags: RO, data: None }
                    );
                }
            }
        }
    }

    #[test]
    fn tmp_is_size_limited_and_the_root_is_sealed_after_pivot() {
        let steps = plan(&spec(), &debian());
        assert!(steps.iter().any(|s| matches!(s, Step::Mount { fstype: Some("tmpfs"), target, data: Some(d), .. }
            if target == Path::new("/data/run/root/tmp") && d == "mode=1777,size=512m")));
        let private = position(&steps, |s| matches!(s, Step::Mount { flags, .. } if flags.private));
        let pivot = position(&steps, |s| matches!(s, Step::PivotRoot { .. }));
        let detach = position(&steps, |s| matches!(s, Step::Detach { path } if path == Path::new("/.old")));
        assert_eq!(private, 0, "propagation is cut before anything is mounted");
        assert!(pivot < detach);
        assert!(
            matches!(steps.last(), Some(Step::Mount { target, flags, .. }) if target == Path::new("/") && flags.readonly)
        );
        // /proc is the instance's own and its sensitive entries are hidden.
        assert!(steps.iter().any(|s| matches!(s, Step::Mount { fstype: Some("proc"), .. })));
        let conditional: Vec<Step> = steps
            .iter()
            .filter_map(|s| if let Step::IfExists { then, .. } = s { Some(then.clone()) } else { None })
            .flatten()
            .collect();
        assert!(conditional.iter().any(|s| matches!(s, Step::Mount { source: Some(src), target, .. }
            if src == Path::new("/dev/null") && target.ends_with("proc/kcore"))));
        assert!(mounted_ro(&conditional, "/data/run/root/proc/sys"));
    }

    #[test]
    fn one_layer_is_bound_at_opt_and_several_are_overlaid_the_last_on_top() {
        let mut one = spec();
        one.layers = vec!["/data/layers/1/aa/content".into()];
        let steps = plan(&one, &debian());
        assert!(mounted_ro(&steps, "/data/run/root/opt"));
        assert!(steps.iter().any(|s| matches!(s, Step::Mount { source: Some(src), target, .. }
            if src == Path::new("/data/layers/1/aa/content") && target == Path::new("/data/run/root/opt"))));

        let mut three = spec();
        three.layers = vec!["/l/a".into(), "/l/b".into(), "/l/c".into()];
        check(&three).unwrap();
        let steps = plan(&three, &debian());
        let overlay = steps
            .iter()
            .find_map(|s| match s {
                Step::Mount { fstype: Some("overlay"), target, flags, data: Some(d), .. } => {
                    Some((target.clone(), *flags, d.clone()))
                }
                _ => None,
            })
            .expect("an overlay");
        assert_eq!(overlay.0, Path::new("/data/run/root/opt"));
        assert!(overlay.1.readonly && overlay.1.nosuid && overlay.1.nodev);
        assert_eq!(overlay.2, "lowerdir=/l/c:/l/b:/l/a");
        let tmp = position(
            &steps,
            |s| matches!(s, Step::Mount { fstype: Some("tmpfs"), target, .. } if target.ends_with("tmp")),
        );
        let opt = position(&steps, |s| matches!(s, Step::Mount { fstype: Some("overlay"), .. }));
        assert!(opt < tmp, "layers are mounted with the rest of the image, before /tmp");

        three.layers.push("/data,odd/l".into());
        assert!(check(&three).unwrap_err().contains("overlay"));
        assert!(
            plan(&spec(), &debian()).iter().all(|s| !matches!(s, Step::Mount { target, source: Some(_), .. }
            if target == Path::new("/data/run/root/opt"))),
            "no layers: /opt stays empty"
        );
    }

    #[test]
    fn an_imported_image_replaces_the_hosts_directories() {
        let mut t = debian().0;
        for (p, e) in [
            ("/img/usr", HostEntry::Dir),
            ("/img/bin", HostEntry::Symlink("usr/bin".into())),
            ("/img/var", HostEntry::Dir),
            ("/img/proc", HostEntry::Dir),
            ("/img/etc", HostEntry::Dir),
            ("/img/etc/os-release", HostEntry::File),
            ("/img/etc/ssl", HostEntry::Dir),
            ("/img/etc/shadow", HostEntry::File),
            ("/img/etc/passwd", HostEntry::File),
            ("/etc/hosts", HostEntry::File),
        ] {
            t.insert(p.into(), e);
        }
        let mut s = spec();
        s.image = Some("/img".into());
        let steps = plan(&s, &Table(t));
        let bound =
            |src: &str| steps.iter().any(|st| matches!(st, Step::Mount { source: Some(x), .. } if x == Path::new(src)));
        assert!(bound("/img/usr") && bound("/img/var") && bound("/img/etc/os-release") && bound("/img/etc/ssl"));
        assert!(!bound("/usr") && !bound("/etc/ssl"), "nothing of the host's image");
        assert!(bound("/etc/resolv.conf") && bound("/etc/hosts"), "the host's name resolution");
        assert!(!bound("/img/proc") && !bound("/img/etc/shadow") && !bound("/img/etc/passwd"));
        assert!(steps.contains(&Step::Symlink { target: "usr/bin".into(), link: "/data/run/root/bin".into() }));
        assert!(mounted_ro(&steps, "/data/run/root/usr"));
        assert!(mounted_ro(&steps, "/data/run/root/var/task"), "the code on top of the image's /var");
    }

    #[test]
    fn a_generic_instance_receives_only_at_its_attach_points() {
        let mut s = spec();
        s.binds.clear();
        s.attach = Some("/data/run/attach/7".into());
        let steps = plan(&s, &debian());
        assert!(
            matches!(&steps[0], Step::Mount { target, flags, .. } if target == Path::new("/") && flags.slave && flags.recursive && !flags.private)
        );
        let bound = |src: &str, dst: &str| {
            steps.iter().position(|st| {
                matches!(st, Step::Mount { source: Some(x), target, .. }
                if x == Path::new(src) && target == Path::new(dst))
            })
        };
        let task = bound("/data/run/attach/7/task", "/data/run/root/var/task").expect("task attach point");
        let opt = bound("/data/run/attach/7/opt", "/data/run/root/opt").expect("opt attach point");
        let private_after = |i: usize| matches!(&steps[i + 2], Step::Mount { source: None, flags, .. } if flags.private && flags.recursive);
        assert!(!private_after(task) && !private_after(opt), "the attach points stay slaves");
        let usr = bound("/usr", "/data/run/root/usr").unwrap();
        assert!(private_after(usr), "other binds are cut off from the server's mounts");
        assert!(mounted_ro(&steps, "/data/run/root/var/task") && mounted_ro(&steps, "/data/run/root/opt"));
        // A zygote: its attach root stays a slave, the rest is cut off.
        let mut z = spec();
        z.attach_root = Some("/data/run/zattach/3".into());
        let steps = plan(&z, &debian());
        assert!(matches!(&steps[0], Step::Mount { flags, .. } if flags.slave));
        let at = steps.iter().position(|st| {
            matches!(st, Step::Mount { source: Some(x), target, .. }
            if x == Path::new("/data/run/zattach/3") && target == Path::new("/data/run/root/.stoke-attach"))
        });
        let at = at.expect("the attach root is bound");
        assert!(!matches!(&steps[at + 1], Step::Mount { source: None, flags, .. } if flags.private));
        // An ordinary instance: everything private from the start, no extra steps.
        assert!(matches!(&plan(&spec(), &debian())[0], Step::Mount { flags, .. } if flags.private && !flags.slave));
    }

    #[test]
    fn writes_the_sandbox_user() {
        let steps = plan(&spec(), &debian());
        let passwd = steps.iter().find_map(|s| match s {
            Step::WriteFile { path, contents } if path.ends_with("etc/passwd") => {
                Some(String::from_utf8_lossy(contents).into_owned())
            }
            _ => None,
        });
        assert!(passwd.unwrap().contains("sbx_user:x:993:990::/tmp:/sbin/nologin"));
    }

    #[derive(Default)]
    struct Recorder {
        done: Vec<String>,
        fail_on: Option<&'static str>,
    }

    impl Recorder {
        fn note(&mut self, what: String) -> io::Result<()> {
            if self.fail_on.is_some_and(|f| what.contains(f)) {
                return Err(io::Error::from_raw_os_error(1));
            }
            self.done.push(what);
            Ok(())
        }
    }

    impl Sys for Recorder {
        fn mount(&mut self, step: &Step) -> io::Result<()> {
            self.note(describe(step))
        }
        fn mkdir_all(&mut self, path: &Path) -> io::Result<()> {
            self.note(format!("mkdir {}", path.display()))
        }
        fn touch(&mut self, path: &Path) -> io::Result<()> {
            self.note(format!("touch {}", path.display()))
        }
        fn write_file(&mut self, path: &Path, _: &[u8]) -> io::Result<()> {
            self.note(format!("write {}", path.display()))
        }
        fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
            self.note(format!("symlink {} {}", link.display(), target.display()))
        }
        fn pivot_root(&mut self, new_root: &Path, _: &Path) -> io::Result<()> {
            self.note(format!("pivot {}", new_root.display()))
        }
        fn detach(&mut self, path: &Path) -> io::Result<()> {
            self.note(format!("detach {}", path.display()))
        }
        fn rmdir(&mut self, path: &Path) -> io::Result<()> {
            self.note(format!("rmdir {}", path.display()))
        }
        fn exists(&mut self, path: &Path) -> bool {
            !path.ends_with("kcore")
        }
    }

    #[test]
    fn apply_runs_every_step_in_order_and_names_the_one_that_failed() {
        let steps = plan(&spec(), &debian());
        let mut ok = Recorder::default();
        apply(&steps, &mut ok).unwrap();
        let conditional = steps.iter().filter(|s| matches!(s, Step::IfExists { .. })).count();
        // Every plain step, and the present half of the conditional ones (two steps each but one mask).
        assert_eq!(ok.done.len(), steps.len() - conditional + (conditional - 1) * 2 - (PROC_MASKED.len() - 1));
        assert!(!ok.done.iter().any(|d| d.contains("kcore")), "absent entries are skipped");
        assert!(ok.done.iter().any(|d| d.contains("proc/keys")));
        assert_eq!(ok.done.iter().filter(|d| d.starts_with("pivot")).count(), 1);

        let mut failing = Recorder { fail_on: Some("var/task"), ..Default::default() };
        let err = apply(&steps, &mut failing).unwrap_err();
        assert!(err.starts_with("mkdir /data/run/root/var/task"), "{err}");
        assert!(!failing.done.iter().any(|d| d.starts_with("pivot")), "stops at the first failure");
    }
}
