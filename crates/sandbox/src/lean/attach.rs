//! The server's side of attaching a function to a generic instance: a generic instance is set up before
//! anyone knows its function, with empty *attach points* — `<run>/attach/<id>/task`, `…/opt`, `…/scratch`
//! and `…/tmp` — which are shared mounts in the server's mount namespace and slaves of them inside the
//! instance (its `/var/task`, `/opt`, `/var/stoke-scratch` and `/tmp`). Mounting the function's code (and layers) on an attach point makes them appear
//! inside the instance, read-only, in microseconds.
//!
//! The server runs in a mount namespace of its own ([`private_mount_namespace`]), a slave of the host's, so
//! these mounts vanish with the server however it ends — none is left on the host.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::ephemeral::Ephemeral;
pub use super::mounts::{remove_tree, unmount_all};

/// Moves this process into a mount namespace of its own that still sees the host's mounts (a slave of the
/// host's). Must run before the process starts any thread: a mount namespace is per thread.
pub fn private_mount_namespace() -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)?;
    Ok(())
}

/// A generic instance's attach points on the host.
#[derive(Debug)]
pub struct AttachPoints {
    dir: PathBuf,
}

impl AttachPoints {
    /// Creates `dir/task`, `dir/opt`, `dir/scratch` and `dir/tmp` as shared mount points.
    pub fn create(dir: PathBuf) -> io::Result<AttachPoints> {
        let points = AttachPoints { dir };
        for p in points.all() {
            std::fs::create_dir_all(&p)?;
            let made = mount(Some(&p), &p, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .and_then(|()| mount(None::<&str>, &p, None::<&str>, MsFlags::MS_SHARED, None::<&str>));
            if let Err(e) = made {
                points.remove();
                return Err(e.into());
            }
        }
        Ok(points)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn task(&self) -> PathBuf {
        self.dir.join("task")
    }

    pub fn opt(&self) -> PathBuf {
        self.dir.join("opt")
    }

    pub fn scratch(&self) -> PathBuf {
        self.dir.join("scratch")
    }

    pub fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn all(&self) -> [PathBuf; 4] {
        [self.task(), self.opt(), self.scratch(), self.tmp()]
    }

    /// Mounts the function's code at `task` and its layers at `opt` (one bound, several overlaid with the
    /// last on top), read-only, its account's workflow scratch directory at `scratch` and its `/tmp` at
    /// `tmp`, writable; none with set-id or devices. The mounts propagate into the instance.
    pub fn attach(&self, code: &Path, layers: &[PathBuf], scratch: Option<&Path>, tmp: &Ephemeral) -> io::Result<()> {
        tmp.attach(&self.tmp())?;
        bind(code, &self.task(), true)?;
        if let Some(dir) = scratch.filter(|d| d.is_dir()) {
            bind(dir, &self.scratch(), false)?;
        }
        match layers {
            [] => Ok(()),
            [one] => bind(one, &self.opt(), true),
            many => {
                let lower: Vec<String> = many.iter().rev().map(|p| p.display().to_string()).collect();
                mount(
                    Some("overlay"),
                    &self.opt(),
                    Some("overlay"),
                    MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(format!("lowerdir={}", lower.join(":")).as_str()),
                )?;
                Ok(())
            }
        }
    }

    /// Unmounts everything and removes the directory.
    pub fn remove(&self) {
        for p in self.all() {
            // What was attached, then the attach point itself.
            unmount_all(&p);
        }
        remove_tree(&self.dir);
    }
}

/// Binds `source` at `target` (read-only or not), without set-id or devices. A remount does not
/// propagate, so the view is made first at a private temporary point and bound from there: the mount that
/// lands on `target` (and its copies inside the instance) has its flags from birth.
pub(crate) fn bind(source: &Path, target: &Path, read_only: bool) -> io::Result<()> {
    let staging = target.with_extension("staging");
    std::fs::create_dir_all(&staging)?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    let result = mount(Some(source), &staging, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .and_then(|()| mount(None::<&str>, &staging, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>))
        .and_then(|()| mount(None::<&str>, &staging, None::<&str>, flags, None::<&str>))
        .and_then(|()| mount(Some(&staging), target, None::<&str>, MsFlags::MS_BIND, None::<&str>));
    let _ = umount2(&staging, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(&staging);
    result.map_err(io::Error::from)
}

/// One instance's slot under a zygote's attach root: `task` (its code, read-only), `scratch` (its account's
/// scratch directory), `tmp` (its `/tmp`) and `cg-<controller>` (its cgroups, which it joins itself). Mounted here, they
/// propagate into the zygote, where the forked instance binds them into its own mount namespace.
#[derive(Debug)]
pub struct Slot {
    dir: PathBuf,
}

impl Slot {
    /// Makes the slot's mount points — `task`, `scratch` and `tmp` empty, `cg-<controller>` bound to the
    /// instance's cgroup directories (controller name, directory) — for an instance forked ahead of its
    /// function.
    pub fn prepare(dir: PathBuf, cgroups: &[(&str, PathBuf)]) -> io::Result<Slot> {
        let slot = Slot { dir };
        let made = (|| -> io::Result<()> {
            slot.point("task")?;
            slot.point("scratch")?;
            slot.point("tmp")?;
            for (controller, dir) in cgroups {
                let p = slot.point(&format!("cg-{controller}"))?;
                mount(Some(dir.as_path()), &p, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
            }
            Ok(())
        })();
        if let Err(e) = made {
            slot.remove();
            return Err(e);
        }
        Ok(slot)
    }

    fn point(&self, name: &str) -> io::Result<PathBuf> {
        let p = self.dir.join(name);
        std::fs::create_dir_all(&p)?;
        mount(Some(&p), &p, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
        mount(None::<&str>, &p, None::<&str>, MsFlags::MS_SHARED, None::<&str>)?;
        Ok(p)
    }

    /// Mounts the function's code (read-only), its account's scratch directory and its `/tmp` on the slot;
    /// they propagate into the waiting instance.
    pub fn attach(&self, code: &Path, scratch: Option<&Path>, tmp: &Ephemeral) -> io::Result<()> {
        tmp.attach(&self.dir.join("tmp"))?;
        bind(code, &self.dir.join("task"), true)?;
        if let Some(dir) = scratch.filter(|d| d.is_dir()) {
            bind(dir, &self.dir.join("scratch"), false)?;
        }
        Ok(())
    }

    /// Unmounts everything and removes the slot.
    pub fn remove(&self) {
        remove_tree(&self.dir);
    }
}

/// Makes `dir` a shared mount point (a zygote's attach root).
pub fn shared_point(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
    mount(None::<&str>, dir, None::<&str>, MsFlags::MS_SHARED, None::<&str>)?;
    Ok(())
}

/// Removes the attach points a previous server on this run directory left (its namespace is gone, so
/// nothing is mounted there any more in ours; only the directories remain).
pub fn sweep(root: &Path) {
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            let p = e.path();
            remove_tree(&p);
        }
    }
}
