//! Taking down what the server mounted for an instance, safely: what is mounted goes before anything below
//! it is looked at, and nothing an instance wrote is followed or deleted from the host.

use std::path::Path;

use nix::mount::{umount2, MntFlags};

/// Detaches every mount stacked at `path`, without following a symbolic link there.
pub fn unmount_all(path: &Path) {
    while umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).is_ok() {}
}

/// Unmounts whatever is mounted at or under `dir` and removes its directories, which are then empty mount
/// points. Each mount goes before anything below it is looked at, symbolic links are never followed, and
/// only empty directories are removed: what an instance left in its scratch directory or `/tmp` (a link to
/// `/`, say) is never touched from the host.
pub fn remove_tree(dir: &Path) {
    unmount_all(dir);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an instance leaves in a directory the server later removes — a link to a host directory, files
    /// of its own — is never followed or deleted from the host: only empty directories go.
    #[test]
    fn removing_a_tree_follows_no_link_and_deletes_no_file() {
        let host = tempfile::tempdir().unwrap();
        let precious = host.path().join("precious");
        std::fs::create_dir_all(precious.join("inner")).unwrap();
        std::fs::write(precious.join("inner/data"), b"keep").unwrap();
        let slot = tempfile::tempdir().unwrap();
        let tmp = slot.path().join("slot/tmp");
        std::fs::create_dir_all(tmp.join("empty/deeper")).unwrap();
        std::os::unix::fs::symlink(&precious, tmp.join("link")).unwrap();
        std::os::unix::fs::symlink(&precious, slot.path().join("slot/link")).unwrap();
        remove_tree(&slot.path().join("slot"));
        assert_eq!(std::fs::read(precious.join("inner/data")).unwrap(), b"keep", "the link's target is untouched");
        assert!(!tmp.join("empty").exists(), "empty directories go");
        assert!(tmp.join("link").symlink_metadata().is_ok(), "a non-empty directory stays rather than be emptied");
    }
}
