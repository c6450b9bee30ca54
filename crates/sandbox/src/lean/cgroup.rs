//! Control groups for lean instances: where each controller lives on this host (cgroup v1, v2, or a mix of
//! both — detected from `/proc/self/mountinfo`, never assumed), one group per instance with its limits, and
//! the readings the scheduler needs (peak memory, OOM kills, member processes).
//!
//! Layout: `<controller base>/stoke/s<server pid>/i<instance id>`. The server's pid in the path keeps
//! servers sharing a host apart, and lets a starting server remove what a killed one left behind.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The controllers an instance's limits need. `freezer` is optional (pausing idle instances), and so is
/// v1's `devices` (only instances holding GPUs get a group in it; on v2 a device program does its work).
const REQUIRED: [&str; 3] = ["memory", "cpu", "pids"];
const OPTIONAL: [&str; 2] = ["freezer", "devices"];

/// Where one controller is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// A cgroup v1 hierarchy mounted at the path, with this server's own group inside it.
    V1 { mount: PathBuf, own: PathBuf },
    /// The unified (v2) hierarchy.
    V2 { mount: PathBuf, own: PathBuf },
}

/// Which hierarchy serves each controller stoke uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub controllers: Vec<(&'static str, Hierarchy)>,
    /// Where the groups go: `stoke`, nested under the server's own group on v1 (lean); or `stoke-oci` at each
    /// hierarchy's root (an OCI runtime takes one path for every controller).
    pub place: Place,
    /// Where the unified (v2) hierarchy is mounted on a host whose controllers are all on v1 (a hybrid host).
    /// Each instance also gets a group there, with no controllers: the kernel tags every socket with its
    /// creator's v2 group, so the Runtime API knows a new connection's instance from one netlink query
    /// instead of a walk through `/proc` (see [`Group::opened_connection_quickly`]). An aid, not a limit: a
    /// host where that tree cannot be written goes without it.
    pub identity: Option<PathBuf>,
}

/// Where a layout's groups go (see [`Layout::place`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    UnderServer,
    OciRoot,
}

/// One cgroup mount from mountinfo: mount point, whether it is v2, and (v1) its controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMount {
    point: PathBuf,
    v2: bool,
    options: Vec<String>,
}

fn parse_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let point = before.split(' ').nth(4)?;
            let mut rest = after.split(' ');
            let fstype = rest.next()?;
            let super_opts = rest.nth(1).unwrap_or("");
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            Some(CgroupMount {
                point: PathBuf::from(unescape_octal(point)),
                v2,
                options: super_opts.split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            out.push((bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's group per hierarchy from `/proc/self/cgroup`: (controllers, path); v2 has no controllers.
fn parse_own(proc_cgroup: &str) -> Vec<(Vec<String>, PathBuf)> {
    proc_cgroup
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let names = controllers.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect();
            Some((names, PathBuf::from(path)))
        })
        .collect()
}

/// Decides where each controller lives. `v2_controllers` reads `cgroup.controllers` of a v2 mount.
/// v1 wins where a controller is mounted both ways (a v1 mount takes it away from the unified tree).
fn layout_from(mountinfo: &str, proc_cgroup: &str, v2_controllers: impl Fn(&Path) -> String) -> Option<Layout> {
    let mounts = parse_mounts(mountinfo);
    let own = parse_own(proc_cgroup);
    let own_v1 = |ctrl: &str| own.iter().find(|(names, _)| names.iter().any(|n| n == ctrl)).map(|(_, p)| p.clone());
    let own_v2 = own.iter().find(|(names, _)| names.is_empty()).map(|(_, p)| p.clone()).unwrap_or_else(|| "/".into());
    let v2_mount = mounts.iter().find(|m| m.v2);
    let v2_has: Vec<String> =
        v2_mount.map(|m| v2_controllers(&m.point).split_whitespace().map(str::to_string).collect()).unwrap_or_default();
    let mut controllers: Vec<(&'static str, Hierarchy)> = Vec::new();
    for ctrl in REQUIRED.iter().chain(OPTIONAL.iter()).copied() {
        let v1 = mounts.iter().find(|m| !m.v2 && m.options.iter().any(|o| o == ctrl));
        let found = match (v1, v2_mount) {
            (Some(m), _) => {
                Some(Hierarchy::V1 { mount: m.point.clone(), own: own_v1(ctrl).unwrap_or_else(|| "/".into()) })
            }
            (None, Some(m)) if v2_has.iter().any(|c| c == ctrl) || (ctrl == "freezer" && v2_mount.is_some()) => {
                // v2 freezes with `cgroup.freeze`, present in every non-root group; it is not a controller.
                Some(Hierarchy::V2 { mount: m.point.clone(), own: own_v2.clone() })
            }
            _ => None,
        };
        match found {
            Some(h) => controllers.push((ctrl, h)),
            None if REQUIRED.contains(&ctrl) => return None,
            None => {}
        }
    }
    let on_v2 = controllers.iter().any(|(_, h)| matches!(h, Hierarchy::V2 { .. }));
    let identity = v2_mount.filter(|_| !on_v2).map(|m| m.point.clone());
    Some(Layout { controllers, place: Place::UnderServer, identity })
}

impl Layout {
    /// Reads this host's layout; `None` when memory, cpu or pids control is missing.
    pub fn detect() -> Option<Layout> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        layout_from(&mountinfo, &own, |mount| fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default())
    }

    /// One line for the start banner, e.g. `cgroup v1 (memory, cpu, pids, freezer)`.
    pub fn describe(&self) -> String {
        let names = |v2: bool| -> Vec<&str> {
            self.controllers.iter().filter(|(_, h)| matches!(h, Hierarchy::V2 { .. }) == v2).map(|(c, _)| *c).collect()
        };
        let (v1, mut v2) = (names(false), names(true));
        if self.identity.is_some() {
            v2.push("socket identity");
        }
        match (v1.is_empty(), v2.is_empty()) {
            (false, true) => format!("cgroup v1 ({})", v1.join(", ")),
            (true, false) => format!("cgroup v2 ({})", v2.join(", ")),
            _ => format!("cgroup v1 ({}) + v2 ({})", v1.join(", "), v2.join(", ")),
        }
    }

    /// This server's directory in every hierarchy it uses, each listed once, the freezer's first: removing
    /// groups thaws and kills their members there, and a frozen process cannot die, so the other
    /// hierarchies' groups empty only after that.
    fn server_dirs(&self, server: u32) -> Vec<(PathBuf, bool)> {
        let mut dirs: Vec<(PathBuf, bool)> = Vec::new();
        let freezer_first = self.controllers.iter().filter(|(c, _)| *c == "freezer").chain(self.controllers.iter());
        for (_, h) in freezer_first {
            let dir = server_dir(h, self.place, server);
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// Prepares this server's groups (v2: delegates the controllers down to them) and removes the groups of
    /// servers that are no longer running, killing what was left in them.
    pub fn prepare(&self, server: u32) -> io::Result<()> {
        let mut dead = Vec::new();
        for (dir, v2) in self.server_dirs(server) {
            let stoke = dir.parent().unwrap_or(&dir).to_path_buf();
            fs::create_dir_all(&stoke)?;
            if v2 {
                let mount = stoke.parent().unwrap_or(&stoke).to_path_buf();
                let wanted: Vec<String> = self
                    .controllers
                    .iter()
                    .filter(|(c, h)| matches!(h, Hierarchy::V2 { .. }) && *c != "freezer")
                    .map(|(c, _)| format!("+{c}"))
                    .collect();
                fs::write(mount.join("cgroup.subtree_control"), wanted.join(" "))?;
                fs::write(stoke.join("cgroup.subtree_control"), wanted.join(" "))?;
                fs::create_dir_all(&dir)?;
                fs::write(dir.join("cgroup.subtree_control"), wanted.join(" "))?;
            } else {
                fs::create_dir_all(&dir)?;
            }
            dead.extend(dead_servers(&stoke, server));
        }
        if let Some(dir) = self.identity_dir(server) {
            // No controllers to delegate; a tree that cannot be made leaves each group without it.
            if fs::create_dir_all(&dir).is_ok() {
                dead.extend(dir.parent().map(|stoke| dead_servers(stoke, server)).unwrap_or_default());
            }
        }
        remove_trees(&dead.iter().map(PathBuf::as_path).collect::<Vec<_>>());
        Ok(())
    }

    /// This server's directory in the identity tree (see [`Layout::identity`]).
    fn identity_dir(&self, server: u32) -> Option<PathBuf> {
        Some(self.identity.as_ref()?.join("stoke").join(format!("s{server}")))
    }

    /// Removes this server's groups and whatever is left in them.
    pub fn remove_server(&self, server: u32) {
        for (dir, _) in self.server_dirs(server) {
            remove_tree(&dir);
        }
        if let Some(dir) = self.identity_dir(server) {
            remove_tree(&dir);
        }
    }

    /// The memory hierarchy's directory of this server (the parent of its instances' groups).
    fn memory_dir(&self, server: u32) -> Option<(PathBuf, bool)> {
        let (_, h) = self.controllers.iter().find(|(c, _)| *c == "memory")?;
        Some(server_dir(h, self.place, server))
    }

    /// What this server's instances use together, in bytes: the working set of their parent group (usage
    /// less the inactive file cache the kernel drops first).
    pub fn working_set(&self, server: u32) -> Option<u64> {
        let (dir, v2) = self.memory_dir(server)?;
        let usage = if v2 { "memory.current" } else { "memory.usage_in_bytes" };
        let usage: u64 = fs::read_to_string(dir.join(usage)).ok()?.trim().parse().ok()?;
        let stat = fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
        Some(working_set(usage, &stat, v2))
    }

    /// Holds this server's instances together to `bytes` of memory (their parent group's limit).
    pub fn limit_memory(&self, server: u32, bytes: u64) -> io::Result<()> {
        let Some((dir, v2)) = self.memory_dir(server) else { return Ok(()) };
        let file = if v2 { "memory.max" } else { "memory.limit_in_bytes" };
        fs::write(dir.join(file), bytes.to_string())
            .map_err(|e| io::Error::other(format!("cannot set {file} on {}: {e}", dir.display())))
    }

    /// Creates instance `id`'s groups with its limits.
    pub fn create(&self, server: u32, id: u64, limits: &Limits) -> io::Result<Group> {
        let mut dirs = Vec::new();
        let mut group =
            Group { dirs: Vec::new(), memory: None, freezer: None, controllers: Vec::new(), ..Default::default() };
        for (ctrl, h) in &self.controllers {
            if *ctrl == "devices" {
                continue;
            }
            let (base, v2) = server_dir(h, self.place, server);
            let dir = base.join(format!("i{id}"));
            if !dirs.contains(&dir) {
                make_group(&dir)?;
                dirs.push(dir.clone());
            }
            for (file, value) in settings(ctrl, v2, limits) {
                // Swap accounting is compiled out on some kernels; everything else must take.
                let optional = file.contains("memsw") || file.contains("swap");
                if let Err(e) = fs::write(dir.join(file), value).or_else(|e| if optional { Ok(()) } else { Err(e) }) {
                    group.dirs = dirs;
                    group.remove();
                    return Err(io::Error::other(format!("cannot set {file} on {}: {e}", dir.display())));
                }
            }
            match *ctrl {
                "memory" => group.memory = Some((dir.clone(), v2)),
                "freezer" => group.freezer = Some((dir.clone(), v2)),
                _ => {}
            }
            group.controllers.push((ctrl, dir.clone(), v2));
        }
        if let Some(base) = self.identity_dir(server) {
            // Last: the first directory is the one whose members are read.
            let dir = base.join(format!("i{id}"));
            if make_group(&dir).is_ok() {
                dirs.push(dir.clone());
                group.identity = Some(dir);
            }
        }
        group.dirs = dirs;
        Ok(group)
    }

    /// The same hierarchies without the identity groups: for instances that join their groups themselves from
    /// inside a user namespace (a zygote's), which v2's rules on moving between groups would refuse.
    pub fn without_identity(&self) -> Layout {
        Layout { identity: None, ..self.clone() }
    }
}

impl Layout {
    /// Holds instance `id`'s `group` to the devices `rules` allow: a group of its own in v1's `devices`
    /// hierarchy (which the instance then joins), else a device program on its v2 group. Says which.
    pub fn restrict_devices(
        &self,
        server: u32,
        id: u64,
        group: &mut Group,
        rules: &[super::devices::DeviceRule],
    ) -> io::Result<&'static str> {
        if let Some((_, h)) = self.controllers.iter().find(|(c, _)| *c == "devices") {
            let (base, _) = server_dir(h, self.place, server);
            let dir = base.join(format!("i{id}"));
            make_group(&dir)?;
            if !group.dirs.contains(&dir) {
                group.dirs.push(dir.clone());
                group.controllers.push(("devices", dir.clone(), false));
            }
            super::devices::restrict_v1(&dir, rules)
                .map_err(|e| io::Error::other(format!("cannot restrict {}'s devices: {e}", dir.display())))?;
            return Ok("cgroup v1 devices");
        }
        if let Some((_, dir, _)) = group.controllers.iter().find(|(_, _, v2)| *v2) {
            super::devices::restrict_v2(dir, rules)?;
            return Ok("cgroup v2 device program");
        }
        Err(io::Error::new(io::ErrorKind::Unsupported, "this host has no device cgroup (neither v1 devices nor v2)"))
    }
}

/// Makes the group directory `dir`; one already there (left by an instance of the same id) is taken as it is.
fn make_group(dir: &Path) -> io::Result<()> {
    fs::create_dir(dir).or_else(|e| if e.kind() == io::ErrorKind::AlreadyExists { Ok(()) } else { Err(e) })
}

/// A server's directory in one hierarchy, and whether it is v2.
fn server_dir(h: &Hierarchy, place: Place, server: u32) -> (PathBuf, bool) {
    let server = format!("s{server}");
    match (h, place) {
        // v1 groups nest under the server's own group, so limits placed on the server apply to them.
        (Hierarchy::V1 { mount, own }, Place::UnderServer) => (mount.join(rel(own)).join("stoke").join(server), false),
        (Hierarchy::V1 { mount, .. }, Place::OciRoot) => (mount.join(OCI_ROOT).join(server), false),
        // v2 forbids processes in inner groups that delegate controllers, and the server's own group holds the
        // server: stoke's groups hang from the root of the unified tree.
        (Hierarchy::V2 { mount, .. }, Place::UnderServer) => (mount.join("stoke").join(server), true),
        (Hierarchy::V2 { mount, .. }, Place::OciRoot) => (mount.join(OCI_ROOT).join(server), true),
    }
}

/// The hierarchy-relative directory under which an OCI runtime's groups go.
pub const OCI_ROOT: &str = "stoke-oci";

impl Layout {
    /// The same hierarchies, with groups at [`Place::OciRoot`].
    pub fn for_oci(&self) -> Layout {
        Layout { controllers: self.controllers.clone(), place: Place::OciRoot, identity: None }
    }
}

fn rel(p: &Path) -> &Path {
    p.strip_prefix("/").unwrap_or(p)
}

/// Limits of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    /// Share of the CPU in thousandths of a vCPU.
    pub cpu_millis: u32,
    /// Also cap the CPU time at that share (otherwise the share is a weight, used only under contention).
    pub cpu_quota: bool,
    pub pids: u32,
}

const CFS_PERIOD_US: u64 = 100_000;

/// The files and values that express `limits` for one controller.
pub(crate) fn settings(ctrl: &str, v2: bool, limits: &Limits) -> Vec<(&'static str, String)> {
    let quota_us = u64::from(limits.cpu_millis) * CFS_PERIOD_US / 1000;
    match (ctrl, v2) {
        // Memory first, then memory+swap (which may not go below memory), so the instance cannot swap.
        ("memory", false) => vec![
            ("memory.limit_in_bytes", limits.memory_bytes.to_string()),
            ("memory.memsw.limit_in_bytes", limits.memory_bytes.to_string()),
            ("memory.swappiness", "0".into()),
        ],
        ("memory", true) => vec![("memory.max", limits.memory_bytes.to_string()), ("memory.swap.max", "0".into())],
        // v1 shares: 1024 per vCPU; v2 weight: 100 per vCPU (1..=10000).
        ("cpu", false) => {
            let mut s = vec![("cpu.shares", (u64::from(limits.cpu_millis) * 1024 / 1000).max(2).to_string())];
            if limits.cpu_quota {
                s.push(("cpu.cfs_period_us", CFS_PERIOD_US.to_string()));
                s.push(("cpu.cfs_quota_us", quota_us.max(1000).to_string()));
            }
            s
        }
        ("cpu", true) => {
            let mut s = vec![("cpu.weight", (limits.cpu_millis / 10).clamp(1, 10_000).to_string())];
            if limits.cpu_quota {
                s.push(("cpu.max", format!("{} {CFS_PERIOD_US}", quota_us.max(1000))));
            }
            s
        }
        ("pids", _) => vec![("pids.max", limits.pids.to_string())],
        _ => Vec::new(),
    }
}

/// One instance's groups.
#[derive(Debug, Default)]
pub struct Group {
    dirs: Vec<PathBuf>,
    memory: Option<(PathBuf, bool)>,
    freezer: Option<(PathBuf, bool)>,
    /// Each controller's directory and whether it is v2.
    controllers: Vec<(&'static str, PathBuf, bool)>,
    /// The peak memory file, opened on first read and re-read in place: each REPORT samples it, and an
    /// open and close on the cgroup file system cost most of a read.
    peak: std::sync::OnceLock<Option<fs::File>>,
    /// The id of its cgroup v2 directory (that directory's inode number), read once.
    v2_id: std::sync::OnceLock<Option<u64>>,
    /// Its group in the identity tree, on a hybrid host (see [`Layout::identity`]).
    identity: Option<PathBuf>,
}

impl Group {
    /// Whether the connection from `peer` to `local` was opened by one of the group's processes, as the
    /// kernel's record of the socket's cgroup shows it (v2 only; `false` proves nothing, see
    /// `InstanceControl::opened_connection_quickly`).
    pub fn opened_connection_quickly(&self, local: std::net::SocketAddr, peer: std::net::SocketAddr) -> bool {
        self.v2_id().is_some_and(|id| crate::peer::opened_in_cgroup(id, local, peer))
    }

    /// The group's id in the unified (v2) hierarchy, which the kernel gives every socket its processes
    /// create; `None` where the group has no v2 directory.
    fn v2_id(&self) -> Option<u64> {
        *self.v2_id.get_or_init(|| {
            use std::os::unix::fs::MetadataExt;
            let controller = self.controllers.iter().find(|(_, _, v2)| *v2).map(|(_, dir, _)| dir);
            fs::metadata(controller.or(self.identity.as_ref())?).ok().map(|m| m.ino())
        })
    }

    /// Changes the group's limits (a generic instance gets its function's when it is assigned). On v1,
    /// memory may not exceed memory+swap: the memory limit is written on both sides of memory+swap, so one
    /// of the two writes takes whichever way the limit moves.
    pub fn set_limits(&self, limits: &Limits) -> io::Result<()> {
        for (ctrl, dir, v2) in &self.controllers {
            let mut writes = settings(ctrl, *v2, limits);
            if *ctrl == "memory" && !*v2 {
                writes.push(writes[0].clone());
            }
            let last = writes.len().saturating_sub(1);
            for (i, (file, value)) in writes.iter().enumerate() {
                let optional = file.contains("memsw") || file.contains("swap") || (*ctrl == "memory" && !*v2 && i == 0);
                if let Err(e) = fs::write(dir.join(file), value) {
                    if !optional || i == last {
                        return Err(io::Error::other(format!("cannot set {file} on {}: {e}", dir.display())));
                    }
                }
            }
        }
        Ok(())
    }

    /// The directories whose `cgroup.procs` the instance joins.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Each controller's directory (one per hierarchy: on v2 every controller shares one).
    pub fn controller_dirs(&self) -> Vec<(&'static str, PathBuf)> {
        let mut out: Vec<(&'static str, PathBuf)> = Vec::new();
        for (ctrl, dir, _) in &self.controllers {
            if !out.iter().any(|(_, d)| d == dir) {
                out.push((ctrl, dir.clone()));
            }
        }
        out
    }

    /// Peak memory use in bytes.
    pub fn peak_memory(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let file = self.peak.get_or_init(|| {
            let (dir, v2) = self.memory.as_ref()?;
            fs::File::open(dir.join(if *v2 { "memory.peak" } else { "memory.max_usage_in_bytes" })).ok()
        });
        // A cgroup file read from its start shows the value as it is now.
        let mut buf = [0u8; 32];
        let n = file.as_ref()?.read_at(&mut buf, 0).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
    }

    /// How many processes the kernel killed for running out of the group's memory.
    pub fn oom_kills(&self) -> u64 {
        let Some((dir, v2)) = self.memory.as_ref() else { return 0 };
        let file = if *v2 { "memory.events" } else { "memory.oom_control" };
        fs::read_to_string(dir.join(file)).map(|t| parse_oom_kills(&t)).unwrap_or(0)
    }

    /// Whether memory use ever reached the group's limit: its peak is the limit (or, v1, `memory.failcnt`;
    /// v2, `max` in `memory.events`, says so).
    pub fn hit_memory_limit(&self) -> bool {
        let Some((dir, v2)) = self.memory.as_ref() else { return false };
        let number = |file: &str| fs::read_to_string(dir.join(file)).ok().and_then(|t| t.trim().parse::<u64>().ok());
        let (peak, limit) =
            if *v2 { ("memory.peak", "memory.max") } else { ("memory.max_usage_in_bytes", "memory.limit_in_bytes") };
        if let (Some(p), Some(l)) = (number(peak), number(limit)) {
            if p >= l {
                return true;
            }
        }
        if *v2 {
            let events = fs::read_to_string(dir.join("memory.events")).unwrap_or_default();
            return events.lines().any(|l| l.strip_prefix("max ").is_some_and(|n| n.trim() != "0"));
        }
        number("memory.failcnt").is_some_and(|n| n > 0)
    }

    /// Processes in the group itself, as host pids: all of a lean instance's (its processes cannot make
    /// groups), read without listing the directory — every Runtime API connection asks.
    pub fn members(&self) -> Vec<u32> {
        self.dirs.first().map(|dir| procs(dir)).unwrap_or_default()
    }

    /// Processes in the group and the groups under it (an OCI runtime makes one there), as host pids.
    pub fn pids(&self) -> Vec<u32> {
        let Some(dir) = self.dirs.first() else { return Vec::new() };
        let mut pids = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            pids.extend(procs(&d));
            if let Ok(children) = fs::read_dir(&d) {
                stack.extend(children.flatten().filter(is_group).map(|c| c.path()));
            }
        }
        pids
    }

    /// Freezes (`true`) or thaws the group; false when this host has no freezer.
    pub fn freeze(&self, frozen: bool) -> bool {
        let Some((dir, v2)) = self.freezer.as_ref() else { return false };
        let (file, value) = match (*v2, frozen) {
            (true, f) => ("cgroup.freeze", if f { "1" } else { "0" }),
            (false, true) => ("freezer.state", "FROZEN"),
            (false, false) => ("freezer.state", "THAWED"),
        };
        fs::write(dir.join(file), value).is_ok()
    }

    /// Removes the groups; the ones still busy (processes still exiting) are returned for a later try.
    pub fn remove(&self) -> Vec<PathBuf> {
        self.dirs.iter().filter(|d| fs::remove_dir(d).is_err() && d.exists()).cloned().collect()
    }

    /// Removes the groups, adding the ones still busy to `leftovers` (which the sandbox retries later).
    pub fn remove_or_leave(&self, leftovers: &std::sync::Mutex<Vec<PathBuf>>) {
        let busy = self.remove();
        if !busy.is_empty() {
            crate::lock(leftovers).extend(busy);
        }
    }
}

/// A group's working set: `usage` less its inactive file cache (`total_inactive_file` in v1's `memory.stat`,
/// which counts the groups below; `inactive_file` in v2's, which always does).
pub(crate) fn working_set(usage: u64, stat: &str, v2: bool) -> u64 {
    let key = if v2 { "inactive_file" } else { "total_inactive_file" };
    let inactive = stat
        .lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    usage.saturating_sub(inactive)
}

pub(crate) fn parse_oom_kills(text: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok())).unwrap_or(0)
}

/// The `s<pid>` groups of servers that no longer run (to remove, with any process left in them).
fn dead_servers(stoke: &Path, me: u32) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(stoke) else { return Vec::new() };
    let mut dead = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix('s')).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        dead.push(entry.path());
    }
    dead
}

/// The processes `dir`'s `cgroup.procs` lists (none if it cannot be read), as host pids.
fn procs(dir: &Path) -> Vec<u32> {
    let text = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Whether a directory entry of a group is a group under it. The type comes with the listing: no stat per
/// file (a controller's directory holds dozens), which matters because every Runtime API connection lists
/// its instance's group, and reaping walks every group of a server.
fn is_group(entry: &fs::DirEntry) -> bool {
    entry.file_type().is_ok_and(|t| t.is_dir())
}

/// Removes a group and every group under it, killing what is left in them (deepest first).
pub(crate) fn remove_tree(dir: &Path) {
    if let Ok(children) = fs::read_dir(dir) {
        for child in children.flatten().filter(is_group) {
            remove_tree(&child.path());
        }
    }
    kill_members(dir);
    for _ in 0..50 {
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Removes the trees at `dirs` (one per hierarchy) and every process in them: kills and thaws everything
/// first, in every hierarchy, so that no removal waits for a process a later hierarchy still holds frozen.
pub(crate) fn remove_trees(dirs: &[&Path]) {
    fn kill_tree(dir: &Path) {
        if let Ok(children) = fs::read_dir(dir) {
            for child in children.flatten().filter(is_group) {
                kill_tree(&child.path());
            }
        }
        kill_members(dir);
    }
    dirs.iter().for_each(|d| kill_tree(d));
    dirs.iter().for_each(|d| remove_tree(d));
}

fn kill_members(dir: &Path) {
    for pid in procs(dir).into_iter().filter_map(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    // A frozen group keeps its members alive, killed or not, until thawed (cgroup v1).
    if dir.join("freezer.state").exists() {
        let _ = fs::write(dir.join("freezer.state"), "THAWED");
    }
    if dir.join("cgroup.freeze").exists() {
        let _ = fs::write(dir.join("cgroup.freeze"), "0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Debian 12 on this kind of VM: every controller on v1, plus an (empty) unified mount.
    const HYBRID: &str = "\
24 1 0:21 / / rw,relatime - ext4 /dev/vda rw
30 24 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
34 30 0:30 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
35 30 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_OWN: &str = "8:pids:/\n4:memory:/outer/abc\n1:cpu:/\n6:freezer:/\n0::/\n";

    const PURE_V2: &str = "\
24 1 0:21 / / rw,relatime - ext4 /dev/vda rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn detects_v1_controllers_and_nests_under_the_servers_own_group() {
        let layout = layout_from(HYBRID, HYBRID_OWN, |_| "hugetlb\n".into()).unwrap();
        let memory = &layout.controllers.iter().find(|(c, _)| *c == "memory").unwrap().1;
        assert_eq!(memory, &Hierarchy::V1 { mount: "/sys/fs/cgroup/memory".into(), own: "/outer/abc".into() });
        assert_eq!(layout.describe(), "cgroup v1 (memory, cpu, pids, freezer) + v2 (socket identity)");
        assert_eq!(layout.identity, Some("/sys/fs/cgroup/unified".into()), "the unified mount names sockets");
        assert_eq!(layout.for_oci().identity, None);
        assert_eq!(layout.without_identity().describe(), "cgroup v1 (memory, cpu, pids, freezer)");
        let dirs = layout.server_dirs(42);
        assert_eq!(dirs[0], ("/sys/fs/cgroup/freezer/stoke/s42".into(), false), "the freezer's groups go first");
        assert!(dirs.contains(&("/sys/fs/cgroup/memory/outer/abc/stoke/s42".into(), false)));
        assert!(dirs.contains(&("/sys/fs/cgroup/cpu/stoke/s42".into(), false)));
        assert_eq!(dirs.len(), 4);
    }

    #[test]
    fn detects_pure_v2() {
        let layout = layout_from(PURE_V2, "0::/user.slice/x\n", |p| {
            assert_eq!(p, Path::new("/sys/fs/cgroup"));
            "cpuset cpu io memory hugetlb pids rdma misc\n".into()
        })
        .unwrap();
        assert_eq!(layout.describe(), "cgroup v2 (memory, cpu, pids, freezer)");
        assert_eq!(layout.server_dirs(7), vec![("/sys/fs/cgroup/stoke/s7".into(), true)]);
        assert_eq!(layout.identity, None, "the groups' own v2 directories name sockets");
    }

    #[test]
    fn a_host_without_a_memory_controller_has_no_layout() {
        assert_eq!(layout_from(PURE_V2, "0::/\n", |_| "cpu pids\n".into()), None);
        assert_eq!(layout_from("", "", |_| String::new()), None);
    }

    #[test]
    fn mixed_hosts_take_v1_where_a_controller_is_mounted_there() {
        let mixed = "31 30 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                     35 30 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let layout = layout_from(mixed, "4:memory:/\n0::/\n", |_| "cpu pids".into()).unwrap();
        assert_eq!(layout.describe(), "cgroup v1 (memory) + v2 (cpu, pids, freezer)");
        assert_eq!(layout.identity, None);
        let v1_only = "31 30 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory,cpu,pids\n";
        assert_eq!(layout_from(v1_only, "4:memory,cpu,pids:/\n", |_| String::new()).unwrap().identity, None);
    }

    /// On a hybrid host each instance's groups end with one in the unified tree, with no settings; its id is
    /// the one sockets carry. Plain directories stand in for the cgroup file systems.
    #[test]
    fn an_instance_on_a_hybrid_host_gets_an_identity_group_last() {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        let v1 = |c: &str| Hierarchy::V1 { mount: root.path().join(c), own: "/".into() };
        let layout = Layout {
            controllers: vec![("memory", v1("memory")), ("cpu", v1("cpu")), ("pids", v1("pids"))],
            place: Place::UnderServer,
            identity: Some(root.path().join("unified")),
        };
        layout.prepare(9).unwrap();
        let limits = Limits { memory_bytes: 64 << 20, cpu_millis: 100, cpu_quota: false, pids: 64 };
        let group = layout.create(9, 3, &limits).unwrap();
        let identity = root.path().join("unified/stoke/s9/i3");
        assert_eq!(group.dirs().last(), Some(&identity), "joined with the others, listed last");
        assert_eq!(group.dirs()[0], root.path().join("memory/stoke/s9/i3"), "members are read from the first");
        assert_eq!(std::fs::read_dir(&identity).unwrap().count(), 0, "no settings in it");
        assert_eq!(group.v2_id(), Some(std::fs::metadata(&identity).unwrap().ino()));
        assert!(!group.controller_dirs().iter().any(|(_, d)| *d == identity), "not a controller a zygote joins");
        let plain = layout.without_identity().create(9, 4, &limits).unwrap();
        assert_eq!((plain.dirs().len(), plain.v2_id()), (3, None));
        // Where the tree cannot be made, the group goes without it.
        let unwritable = Layout { identity: Some(root.path().join("memory/limit_in_bytes_file")), ..layout.clone() };
        std::fs::write(root.path().join("memory/limit_in_bytes_file"), "").unwrap();
        assert_eq!(unwritable.create(9, 5, &limits).unwrap().dirs().len(), 3);
    }

    #[test]
    fn limits_in_each_version() {
        let l = Limits { memory_bytes: 128 << 20, cpu_millis: 72, cpu_quota: false, pids: 1024 };
        assert_eq!(settings("memory", false, &l)[0], ("memory.limit_in_bytes", "134217728".to_string()));
        assert_eq!(settings("memory", true, &l)[0], ("memory.max", "134217728".to_string()));
        assert_eq!(settings("cpu", false, &l), vec![("cpu.shares", "73".to_string())]);
        assert_eq!(settings("cpu", true, &l), vec![("cpu.weight", "7".to_string())]);
        let q = Limits { cpu_quota: true, cpu_millis: 2000, ..l };
        assert_eq!(settings("cpu", true, &q)[1], ("cpu.max", "200000 100000".to_string()));
        assert_eq!(settings("cpu", false, &q)[2], ("cpu.cfs_quota_us", "200000".to_string()));
        assert_eq!(settings("pids", true, &l), vec![("pids.max", "1024".to_string())]);
        assert!(settings("freezer", false, &l).is_empty());
        // The smallest share still gets a valid value.
        let tiny = Limits { cpu_millis: 1, cpu_quota: true, ..l };
        assert_eq!(settings("cpu", false, &tiny)[0].1, "2");
        assert_eq!(settings("cpu", true, &tiny)[0].1, "1");
        assert_eq!(settings("cpu", true, &tiny)[1].1, "1000 100000");
    }

    #[test]
    fn the_working_set_leaves_out_inactive_file_cache() {
        let v1 = "cache 100\ninactive_file 7\ntotal_cache 500\ntotal_inactive_file 300\n";
        assert_eq!(working_set(1000, v1, false), 700, "v1: the hierarchy's total, not the group's own");
        let v2 = "anon 400\nfile 500\ninactive_file 300\nactive_file 200\n";
        assert_eq!(working_set(1000, v2, true), 700);
        assert_eq!(working_set(1000, "", true), 1000, "no stat: all of it");
        assert_eq!(working_set(100, v2, true), 0, "never below zero");
    }

    #[test]
    fn reads_oom_kills_from_either_version() {
        assert_eq!(parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"), 2);
        assert_eq!(parse_oom_kills("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n"), 1);
        assert_eq!(parse_oom_kills("oom_kill_disable 0\n"), 0);
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape_octal(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape_octal(r"/x\\"), r"/x\\");
    }
}
