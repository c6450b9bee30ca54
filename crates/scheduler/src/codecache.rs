//! Unpacked code, once per archive: `<run_dir>/code/<sha256>/`, shared read-only by every instance of
//! every version with that code. Unpacked into a temp directory and renamed, so it is whole or absent.

use std::path::{Path, PathBuf};

pub(crate) fn unpack(run_dir: &Path, archive: &Path, sha256: &str) -> std::io::Result<PathBuf> {
    let root = run_dir.join("code");
    let dest = root.join(sha256);
    if dest.is_dir() {
        return Ok(dest);
    }
    std::fs::create_dir_all(&root)?;
    let tmp = root.join(format!(".{sha256}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let file = std::fs::File::open(archive)?;
    let mut zip = zip::ZipArchive::new(file).map_err(std::io::Error::other)?;
    zip.extract(&tmp).map_err(std::io::Error::other)?;
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
