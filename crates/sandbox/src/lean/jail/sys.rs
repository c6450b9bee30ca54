//! The real syscalls behind the root file system's plan.

use std::io;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

use super::super::rootfs::{self, Step};

/// The real syscalls behind [`rootfs::Sys`].
pub(super) struct RealSys;

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
