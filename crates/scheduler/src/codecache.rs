//! Unpacked code, once per archive: `<run_dir>/code/<sha256>/`, shared read-only by every instance of
//! every version with that code, readable by the sandbox user (`stoke_store::archive::unpack_readable`).

use std::path::{Path, PathBuf};

pub(crate) fn unpack(run_dir: &Path, archive: &Path, sha256: &str) -> std::io::Result<PathBuf> {
    let dest = run_dir.join("code").join(sha256);
    stoke_store::archive::unpack_readable(archive, &dest)?;
    Ok(dest)
}
