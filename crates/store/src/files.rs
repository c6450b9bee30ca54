//! Layers and images on disk, unpacked once and shared read-only by every instance that uses them.
//!
//! - [`LayerFiles`]: `<root>/<account>/<sha256>/{layer.zip, content/}` — content-addressed, so versions with
//!   the same archive share one tree, and a publish that crashes leaves nothing but a temp directory.
//! - [`ImageFiles`]: `<root>/<name>/rootfs/` — a root file system imported from a tarball.
//!
//! Both are built in `<root>/.tmp` and renamed into place whole; at start, [`LayerFiles::reconcile`] and
//! [`ImageFiles::reconcile`] remove temp leftovers and trees no record points at.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use stoke_core::AccountId;

use crate::{archive, sha256_hex, CodeRef};

const TMP_DIR: &str = ".tmp";

fn unique_tmp(root: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    root.join(TMP_DIR).join(format!("{}-{nanos}-{n}", std::process::id()))
}

/// Removes `path`, a file or a whole tree.
fn remove_entry(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

fn clear_dir(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        remove_entry(&entry?.path())?;
        removed += 1;
    }
    Ok(removed)
}

/// Unpacked layer archives.
#[derive(Debug, Clone)]
pub struct LayerFiles {
    root: PathBuf,
}

impl LayerFiles {
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join(TMP_DIR))?;
        Ok(Self { root: root.to_path_buf() })
    }

    fn dir(&self, account: &AccountId, sha256: &str) -> PathBuf {
        self.root.join(account.as_str()).join(sha256)
    }

    /// Where the unpacked files of a layer archive are (what instances see under `/opt`).
    pub fn content(&self, account: &AccountId, sha256: &str) -> PathBuf {
        self.dir(account, sha256).join("content")
    }

    /// The archive as published.
    pub fn archive(&self, account: &AccountId, sha256: &str) -> PathBuf {
        self.dir(account, sha256).join("layer.zip")
    }

    /// Stores the zip and unpacks it, both durably, before the caller records the version; returns its
    /// sha256 and size. Publishing the same archive again costs nothing.
    pub fn put(&self, account: &AccountId, zip: &[u8]) -> io::Result<CodeRef> {
        let sha256 = sha256_hex(zip);
        let code = CodeRef { sha256: sha256.clone(), size: zip.len() as u64 };
        let dest = self.dir(account, &sha256);
        if dest.join("content").is_dir() {
            return Ok(code);
        }
        let tmp = unique_tmp(&self.root);
        let result = (|| {
            fs::create_dir_all(&tmp)?;
            let mut file = File::create(tmp.join("layer.zip"))?;
            file.write_all(zip)?;
            file.sync_all()?;
            archive::unpack_readable(&tmp.join("layer.zip"), &tmp.join("content"))?;
            fs::create_dir_all(dest.parent().unwrap_or(&self.root))?;
            match fs::rename(&tmp, &dest) {
                Ok(()) => {}
                // The same archive published at the same moment: theirs is as good as ours.
                Err(_) if dest.join("content").is_dir() => fs::remove_dir_all(&tmp)?,
                Err(e) => return Err(e),
            }
            File::open(dest.parent().unwrap_or(&self.root))?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result.map(|()| code)
    }

    /// Removes a layer archive's files (no record points at them any more).
    pub fn remove(&self, account: &AccountId, sha256: &str) -> io::Result<()> {
        match fs::remove_dir_all(self.dir(account, sha256)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes temp leftovers and every tree not in `referenced` (account, sha256); returns how many.
    pub fn reconcile(&self, referenced: &[(AccountId, String)]) -> io::Result<usize> {
        let mut removed = clear_dir(&self.root.join(TMP_DIR))?;
        let keep: HashSet<PathBuf> = referenced.iter().map(|(a, sha)| self.dir(a, sha)).collect();
        for account in fs::read_dir(&self.root)? {
            let account = account?;
            if account.file_name() == TMP_DIR || !account.file_type()?.is_dir() {
                continue;
            }
            for tree in fs::read_dir(account.path())? {
                let path = tree?.path();
                if !keep.contains(&path) {
                    remove_entry(&path)?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// Why an image could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("the image is not a tar archive (plain or gzip-compressed): {0}")]
    Malformed(String),
    #[error("the image unpacks to more than {limit} bytes; the limit is set with stoke server --max-image-mb")]
    TooLarge { limit: u64 },
    #[error("the image has an entry {0:?} that points outside its root; use paths without '..'")]
    UnsafePath(String),
    #[error("the image has no {0}: a root file system needs it (export one, e.g. with docker export or debootstrap)")]
    Incomplete(&'static str),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Imported root file systems.
#[derive(Debug, Clone)]
pub struct ImageFiles {
    root: PathBuf,
}

/// Where the instance mounts things of its own: created in every imported image so it can be bound
/// read-only as the instance's root.
pub const IMAGE_MOUNT_POINTS: &[&str] =
    &["proc", "dev", "tmp", "opt", "var/task", "var/runtime", "var/stoke-scratch", "etc"];
/// Files the instance binds its own version over.
pub const IMAGE_MOUNT_FILES: &[&str] = &["etc/passwd", "etc/group", "etc/hostname", "etc/resolv.conf", "etc/hosts"];

impl ImageFiles {
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join(TMP_DIR))?;
        Ok(Self { root: root.to_path_buf() })
    }

    /// The image's root file system.
    pub fn rootfs(&self, name: &str) -> PathBuf {
        self.root.join(name).join("rootfs")
    }

    /// Unpacks a tarball (plain or gzip-compressed) read from `from` into the image `name`, whole or not at
    /// all; returns the tarball's sha256 and size, and the unpacked bytes. Device nodes and FIFOs are
    /// skipped (an instance gets its own `/dev`); ownership and modes are kept; the mount points an instance
    /// needs are created. `name` must be free (the caller checked the record).
    pub fn import(&self, name: &str, from: &mut dyn Read, max_unpacked: u64) -> Result<(CodeRef, u64), ImageError> {
        let tmp = unique_tmp(&self.root);
        let result = self.import_into(&tmp, from, max_unpacked);
        let done = result.and_then(|r| {
            let dest = self.root.join(name);
            if dest.exists() {
                fs::remove_dir_all(&dest)?;
            }
            fs::rename(&tmp, &dest)?;
            File::open(&self.root)?.sync_all()?;
            Ok(r)
        });
        if done.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        done
    }

    fn import_into(&self, tmp: &Path, from: &mut dyn Read, max_unpacked: u64) -> Result<(CodeRef, u64), ImageError> {
        let rootfs = tmp.join("rootfs");
        fs::create_dir_all(&rootfs)?;
        let mut hashing = HashingReader { inner: from, hasher: <sha2::Sha256 as sha2::Digest>::new(), size: 0 };
        let mut head = [0u8; 2];
        let got = read_up_to(&mut hashing, &mut head)?;
        let unpacked = {
            let chained = Read::chain(&head[..got], &mut hashing);
            let reader: Box<dyn Read + '_> = if got == 2 && head == [0x1f, 0x8b] {
                Box::new(flate2::read::GzDecoder::new(chained))
            } else {
                Box::new(chained)
            };
            unpack_tar(reader, &rootfs, max_unpacked)?
        };
        // Drain what is left (tar padding) so the hash covers the whole upload.
        io::copy(&mut hashing, &mut io::sink())?;
        let has_usr = rootfs.join("usr").is_dir() || rootfs.join("bin").exists();
        if !has_usr {
            return Err(ImageError::Incomplete("/usr or /bin"));
        }
        for dir in IMAGE_MOUNT_POINTS {
            let p = rootfs.join(dir);
            if fs::symlink_metadata(&p).is_err() {
                fs::create_dir_all(&p)?;
                if *dir == "tmp" {
                    // OCI runtimes give the instance's /tmp the mode of this directory.
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o1777))?;
                }
            }
        }
        for file in IMAGE_MOUNT_FILES {
            let p = rootfs.join(file);
            if fs::symlink_metadata(&p).is_err() {
                File::create(&p)?;
            }
        }
        let sha256 = hashing.hasher_hex();
        Ok((CodeRef { sha256, size: hashing.size }, unpacked))
    }

    pub fn remove(&self, name: &str) -> io::Result<()> {
        match fs::remove_dir_all(self.root.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes temp leftovers and every image directory not in `names`; returns how many.
    pub fn reconcile(&self, names: &[String]) -> io::Result<usize> {
        let mut removed = clear_dir(&self.root.join(TMP_DIR))?;
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != TMP_DIR && !names.contains(&name) {
                fs::remove_dir_all(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Unpacks a tar stream into `rootfs`; returns the bytes of file data unpacked.
fn unpack_tar(reader: Box<dyn Read + '_>, rootfs: &Path, max_unpacked: u64) -> Result<u64, ImageError> {
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_ownerships(true);
    tar.set_preserve_mtime(true);
    tar.set_unpack_xattrs(false);
    let mut unpacked = 0u64;
    for entry in tar.entries().map_err(|e| ImageError::Malformed(e.to_string()))? {
        let mut entry = entry.map_err(|e| ImageError::Malformed(e.to_string()))?;
        let kind = entry.header().entry_type();
        if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
            continue;
        }
        let path = entry.path().map_err(|e| ImageError::Malformed(e.to_string()))?.into_owned();
        if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(ImageError::UnsafePath(path.display().to_string()));
        }
        unpacked += entry.header().size().unwrap_or(0);
        if unpacked > max_unpacked {
            return Err(ImageError::TooLarge { limit: max_unpacked });
        }
        // unpack_in refuses entries that would land outside `rootfs` (through links, say).
        let inside = entry.unpack_in(rootfs).map_err(|e| ImageError::Malformed(causes(&e)))?;
        if !inside {
            return Err(ImageError::UnsafePath(path.display().to_string()));
        }
    }
    Ok(unpacked)
}

/// An error and its sources, as one sentence.
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: sha2::Sha256,
    size: u64,
}

impl HashingReader<'_> {
    fn hasher_hex(&self) -> String {
        let digest = <sha2::Sha256 as sha2::Digest>::finalize(self.hasher.clone());
        stoke_core::hex::encode(&digest)
    }
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        <sha2::Sha256 as sha2::Digest>::update(&mut self.hasher, &buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn layers_are_unpacked_once_per_archive_and_reconciled() {
        let dir = tempfile::tempdir().unwrap();
        let files = LayerFiles::open(&dir.path().join("layers")).unwrap();
        let a = AccountId::from_number(1);
        let zip = zip_of(&[("python/mylib.py", b"X = 1\n")]);
        let code = files.put(&a, &zip).unwrap();
        assert_eq!(code.sha256, sha256_hex(&zip));
        let content = files.content(&a, &code.sha256);
        assert_eq!(fs::read(content.join("python/mylib.py")).unwrap(), b"X = 1\n");
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let before = inode(&content.join("python/mylib.py"));
        files.put(&a, &zip).unwrap();
        assert_eq!(inode(&content.join("python/mylib.py")), before, "published again: not unpacked again");
        assert_eq!(fs::read(files.archive(&a, &code.sha256)).unwrap(), zip);

        let other = files.put(&a, &zip_of(&[("bin/tool", b"#!/bin/sh\n")])).unwrap();
        fs::create_dir_all(dir.path().join("layers/.tmp/crash")).unwrap();
        assert_eq!(files.reconcile(&[(a.clone(), code.sha256.clone())]).unwrap(), 2);
        assert!(content.is_dir());
        assert!(!files.content(&a, &other.sha256).exists());
        files.remove(&a, &code.sha256).unwrap();
        assert!(!content.exists());
        let err = files.put(&a, b"not a zip").unwrap_err();
        assert!(err.to_string().contains("zip") || err.to_string().contains("archive"), "{err}");
        assert_eq!(fs::read_dir(dir.path().join("layers/.tmp")).unwrap().count(), 0, "a failed publish leaves nothing");
    }

    fn tarball(entries: &[(&str, &[u8])], gzip: bool) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        let raw = b.into_inner().unwrap();
        if !gzip {
            return raw;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn images_unpack_whole_with_their_mount_points() {
        let dir = tempfile::tempdir().unwrap();
        let images = ImageFiles::open(&dir.path().join("images")).unwrap();
        for gzip in [false, true] {
            let tar = tarball(&[("usr/bin/hello", b"#!/bin/sh\necho hi\n"), ("etc/os-release", b"ID=test\n")], gzip);
            let name = if gzip { "gz" } else { "plain" };
            let (code, unpacked) = images.import(name, &mut io::Cursor::new(&tar), 1 << 20).unwrap();
            assert_eq!(code.sha256, sha256_hex(&tar));
            assert_eq!(code.size, tar.len() as u64);
            assert_eq!(unpacked, 26);
            let root = images.rootfs(name);
            assert_eq!(fs::read(root.join("etc/os-release")).unwrap(), b"ID=test\n");
            for p in ["proc", "dev", "tmp", "var/task", "opt", "etc/passwd", "etc/resolv.conf"] {
                assert!(root.join(p).exists(), "{p}");
            }
        }
        let err = images.import("big", &mut io::Cursor::new(tarball(&[("usr/x", &[0u8; 4096])], false)), 100);
        assert!(matches!(err, Err(ImageError::TooLarge { limit: 100 })), "{err:?}");
        let err = images.import("empty", &mut io::Cursor::new(tarball(&[("data/x", b"1")], false)), 1 << 20);
        assert!(matches!(err, Err(ImageError::Incomplete(_))), "{err:?}");
        let err = images.import("junk", &mut io::Cursor::new(vec![7u8; 1024]), 1 << 20);
        assert!(matches!(err, Err(ImageError::Malformed(_))), "{err:?}");
        assert!(!images.rootfs("big").exists() && !images.rootfs("empty").exists());
        assert_eq!(fs::read_dir(dir.path().join("images/.tmp")).unwrap().count(), 0, "failed imports leave nothing");
        fs::create_dir_all(dir.path().join("images/stale/rootfs")).unwrap();
        assert_eq!(images.reconcile(&["gz".into(), "plain".into()]).unwrap(), 1);
        assert!(images.rootfs("gz").is_dir());
        images.remove("gz").unwrap();
        assert!(!images.rootfs("gz").exists());
    }
}
