//! Code archives on disk: `<root>/<account>/<function>/<version>/<sha256>.zip`.
//!
//! An archive is written to `<root>/.tmp`, synced, then renamed into place and its directory synced, so a
//! crash leaves either no archive or a whole one — never a half one. Publishing hard-links `$LATEST`'s
//! archive into the version's directory (no copy). At start, [`CodeStore::reconcile`] removes temp files and
//! archives no record points at (left by a crash between the file write and the database commit).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use stoke_core::{AccountId, FunctionName};

use crate::CodeRef;

/// Directory name of `$LATEST`'s archive.
pub const LATEST_DIR: &str = "latest";
const TMP_DIR: &str = ".tmp";

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    stoke_core::hex::encode(&Sha256::digest(bytes))
}

/// The archive directory tree.
#[derive(Debug, Clone)]
pub struct CodeStore {
    root: PathBuf,
}

/// What [`CodeStore::reconcile`] cleaned up.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub temp_files_removed: usize,
    pub orphans_removed: usize,
}

impl CodeStore {
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join(TMP_DIR))?;
        Ok(Self { root: root.to_path_buf() })
    }

    fn dir(&self, account: &AccountId, function: &FunctionName, version_dir: &str) -> PathBuf {
        self.root.join(account.as_str()).join(function.as_str()).join(version_dir)
    }

    /// Where an archive lives.
    pub fn path(&self, account: &AccountId, function: &FunctionName, version_dir: &str, sha256: &str) -> PathBuf {
        self.dir(account, function, version_dir).join(format!("{sha256}.zip"))
    }

    /// Stores `bytes` durably as an archive of `version_dir`; returns its sha256 and size.
    pub fn put(
        &self,
        account: &AccountId,
        function: &FunctionName,
        version_dir: &str,
        bytes: &[u8],
    ) -> io::Result<CodeRef> {
        let sha256 = sha256_hex(bytes);
        let dir = self.dir(account, function, version_dir);
        fs::create_dir_all(&dir)?;
        let dest = dir.join(format!("{sha256}.zip"));
        if !dest.exists() {
            let tmp = self.root.join(TMP_DIR).join(format!("{}.part", unique_suffix()));
            let result = (|| {
                let mut file = File::create(&tmp)?;
                file.write_all(bytes)?;
                file.sync_all()?;
                fs::rename(&tmp, &dest)?;
                File::open(&dir)?.sync_all()
            })();
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result?;
        }
        Ok(CodeRef { sha256, size: bytes.len() as u64 })
    }

    /// Makes the archive `sha256` of `from_dir` also the archive of `to_dir` (a hard link; a copy where the
    /// file system has none).
    pub fn link(
        &self,
        account: &AccountId,
        function: &FunctionName,
        from_dir: &str,
        to_dir: &str,
        sha256: &str,
    ) -> io::Result<()> {
        let src = self.path(account, function, from_dir, sha256);
        let dest = self.path(account, function, to_dir, sha256);
        if dest.exists() {
            return Ok(());
        }
        let dir = self.dir(account, function, to_dir);
        fs::create_dir_all(&dir)?;
        if fs::hard_link(&src, &dest).is_err() {
            let bytes = fs::read(&src)?;
            self.put(account, function, to_dir, &bytes)?;
        }
        File::open(&dir)?.sync_all()
    }

    pub fn read(
        &self,
        account: &AccountId,
        function: &FunctionName,
        version_dir: &str,
        sha256: &str,
    ) -> io::Result<Vec<u8>> {
        fs::read(self.path(account, function, version_dir, sha256))
    }

    /// Removes every archive of `version_dir` except `keep`.
    pub fn prune(&self, account: &AccountId, function: &FunctionName, version_dir: &str, keep: &str) -> io::Result<()> {
        let dir = self.dir(account, function, version_dir);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        let keep = format!("{keep}.zip");
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy() != keep {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Removes the archives of one version directory of a function (a deleted version).
    pub fn remove_version(&self, account: &AccountId, function: &FunctionName, version_dir: &str) -> io::Result<()> {
        match fs::remove_dir_all(self.dir(account, function, version_dir)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes all archives of a function.
    pub fn remove_function(&self, account: &AccountId, function: &FunctionName) -> io::Result<()> {
        match fs::remove_dir_all(self.root.join(account.as_str()).join(function.as_str())) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Deletes temp files and every archive not in `referenced` (account, function, version dir, sha256).
    pub fn reconcile(&self, referenced: &[(AccountId, FunctionName, String, String)]) -> io::Result<ReconcileReport> {
        let mut report = ReconcileReport::default();
        for entry in fs::read_dir(self.root.join(TMP_DIR))? {
            fs::remove_file(entry?.path())?;
            report.temp_files_removed += 1;
        }
        let keep: HashSet<PathBuf> = referenced.iter().map(|(a, f, v, sha)| self.path(a, f, v, sha)).collect();
        for file in walk_files(&self.root)? {
            if !file.starts_with(self.root.join(TMP_DIR)) && !keep.contains(&file) {
                fs::remove_file(&file)?;
                report.orphans_removed += 1;
            }
        }
        Ok(report)
    }
}

fn walk_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    Ok(out)
}

fn unique_suffix() -> String {
    let mut bytes = [0u8; 8];
    // Falling back to the clock is fine: the name only has to differ from concurrent writers'.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        // Its low 64 bits, the part that changes.
        bytes.copy_from_slice(&nanos.to_le_bytes()[..8]);
    }
    format!("{}-{}", std::process::id(), u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_link_read_and_reconcile() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(&dir.path().join("code")).unwrap();
        let a = AccountId::from_number(1);
        let f = FunctionName::parse("f").unwrap();
        let code = store.put(&a, &f, LATEST_DIR, b"hello").unwrap();
        assert_eq!(code.sha256, sha256_hex(b"hello"));
        assert_eq!(code.size, 5);
        store.link(&a, &f, LATEST_DIR, "1", &code.sha256).unwrap();
        assert_eq!(store.read(&a, &f, "1", &code.sha256).unwrap(), b"hello");

        let old = store.put(&a, &f, LATEST_DIR, b"older").unwrap();
        fs::write(dir.path().join("code/.tmp/crash.part"), b"half").unwrap();
        let refs = vec![
            (a.clone(), f.clone(), LATEST_DIR.to_string(), code.sha256.clone()),
            (a.clone(), f.clone(), "1".to_string(), code.sha256.clone()),
        ];
        let report = store.reconcile(&refs).unwrap();
        assert_eq!(report, ReconcileReport { temp_files_removed: 1, orphans_removed: 1 });
        assert!(!store.path(&a, &f, LATEST_DIR, &old.sha256).exists());
        assert!(store.path(&a, &f, "1", &code.sha256).exists());
    }

    #[test]
    fn prune_keeps_only_the_current_archive() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path()).unwrap();
        let a = AccountId::from_number(1);
        let f = FunctionName::parse("f").unwrap();
        let one = store.put(&a, &f, LATEST_DIR, b"1").unwrap();
        let two = store.put(&a, &f, LATEST_DIR, b"2").unwrap();
        store.prune(&a, &f, LATEST_DIR, &two.sha256).unwrap();
        assert!(!store.path(&a, &f, LATEST_DIR, &one.sha256).exists());
        assert!(store.path(&a, &f, LATEST_DIR, &two.sha256).exists());
        store.remove_function(&a, &f).unwrap();
        assert!(!store.path(&a, &f, LATEST_DIR, &two.sha256).exists());
    }
}
