//! Unpacked code, once per archive: `<run_dir>/code/<sha256>/`, shared read-only by every instance of
//! every version with that code. Unpacked into a temp directory and renamed, so it is whole or absent.
//!
//! Instances run as an unprivileged user, so the unpacked tree is made readable by everyone (and files
//! executable by their owner executable by everyone): archives built with `0600` files — common from
//! zip libraries' defaults — would otherwise fail with "Permission denied" at import. The tree is mounted
//! read-only into instances of this code only.

use std::path::{Path, PathBuf};

pub(crate) fn unpack(run_dir: &Path, archive: &Path, sha256: &str) -> std::io::Result<PathBuf> {
    let root = run_dir.join("code");
    let dest = root.join(sha256);
    if dest.is_dir() {
        return Ok(dest);
    }
    std::fs::create_dir_all(&root)?;
    // Unique per call: two instances of the same code may start at once (other versions, sizes or pools).
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = root.join(format!(".{sha256}.{}.{n}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let file = std::fs::File::open(archive)?;
    let mut zip = zip::ZipArchive::new(file).map_err(std::io::Error::other)?;
    zip.extract(&tmp).map_err(std::io::Error::other)?;
    readable_by_all(&tmp)?;
    match std::fs::rename(&tmp, &dest) {
        Ok(()) => Ok(dest),
        // Another instance unpacked the same code first.
        Err(_) if dest.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dest)
        }
        Err(e) => Err(e),
    }
}

/// Directories 0755; files keep their mode plus read for all, and execute for all if the owner had it.
fn readable_by_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            readable_by_all(&entry.path())?;
        } else if kind.is_file() {
            let mode = entry.metadata()?.permissions().mode() & 0o7777;
            let exec = if mode & 0o100 != 0 { 0o111 } else { 0 };
            let wanted = (mode | 0o444 | exec) & !0o7000;
            if wanted != mode {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(wanted))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn concurrent_unpacks_of_the_same_code_all_succeed() {
        use std::io::Write;
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("code.zip");
        let mut w = zip::ZipWriter::new(std::fs::File::create(&archive).unwrap());
        for i in 0..50 {
            w.start_file(format!("m{i}.py"), zip::write::SimpleFileOptions::default()).unwrap();
            w.write_all(&[b'x'; 4096]).unwrap();
        }
        w.finish().unwrap();
        let run = tmp.path().join("run");
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| unpack(&run, &archive, "abc"))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in results {
            let dir = r.unwrap();
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 50);
        }
        let leftovers = std::fs::read_dir(run.join("code")).unwrap().count();
        assert_eq!(leftovers, 1, "temp directories are cleaned up");
    }

    #[test]
    fn unpacked_code_is_readable_by_the_sandbox_user() {
        let tmp = tempfile::tempdir().unwrap();
        let sub = tmp.path().join("pkg");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        let (private, tool, setuid) = (sub.join("app.py"), tmp.path().join("bootstrap"), tmp.path().join("s"));
        for (path, mode) in [(&private, 0o600), (&tool, 0o700), (&setuid, 0o4755)] {
            std::fs::write(path, b"x").unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        readable_by_all(tmp.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&sub), 0o755);
        assert_eq!(mode(&private), 0o644);
        assert_eq!(mode(&tool), 0o755);
        assert_eq!(mode(&setuid), 0o755, "set-id bits are dropped");
    }
}
