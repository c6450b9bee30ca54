//! Checks an uploaded code or layer archive and normalises it to a zip.
//!
//! Zips are kept byte for byte (so the sha256 a user computes matches ours); a tar.gz is converted to a
//! zip that keeps file modes (a `bootstrap` stays executable). Both go through one policy,
//! `stoke_core::archive::EntryCheck`, entry by entry before anything is written: names and symlinks that
//! stay inside the root, nothing written through a link, and the unpacked size counted on the bytes really
//! inflated (a zip bomb is stopped at the limit, whatever its headers claim).

use std::borrow::Cow;
use std::io::{Cursor, Read, Write};

use stoke_core::archive::{EntryCheck, EntryKind};

/// Size limits for archives.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveLimits {
    /// Largest archive accepted, in bytes, as uploaded.
    pub max_archive_bytes: u64,
    /// Largest total size of the files inside, unpacked.
    pub max_unpacked_bytes: u64,
    /// Largest imported image, unpacked.
    pub max_image_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max_archive_bytes: 50 * 1024 * 1024,
            max_unpacked_bytes: stoke_core::archive::MAX_UNZIPPED_BYTES,
            max_image_bytes: 4 * 1024 * 1024 * 1024,
        }
    }
}

/// Why an archive was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// The upload was empty.
    #[error("the code archive is empty: upload a .zip or .tar.gz of your function's files")]
    Empty,
    /// The upload exceeds the size limit.
    #[error(
        "the code archive is {size} bytes; the limit is {limit} bytes (shrink it, or move libraries into a layer)"
    )]
    TooLarge { size: u64, limit: u64 },
    /// Unpacked contents exceed the limit: `size` is what was inflated when the check stopped, past the limit.
    #[error("Unzipped size must be smaller than {limit} bytes: the code archive unpacks to more than that")]
    UnpackedTooLarge { size: u64, limit: u64 },
    /// Neither a zip nor a gzip'd tar.
    #[error("the code archive is neither a zip nor a tar.gz (its first bytes are {0}); upload a .zip or .tar.gz")]
    UnknownFormat(String),
    /// The archive's structure is broken.
    #[error("the code archive is malformed: {0}")]
    Malformed(String),
    /// An entry's path leaves the code directory.
    #[error(
        "the code archive has an entry {0:?} that points outside the code directory; use relative paths without '..'"
    )]
    UnsafePath(String),
    /// An entry the archive policy refuses: a link out of its directory, an entry written through a link, a
    /// name that is both a directory and a file, a device or hard link.
    #[error("{0}")]
    Refused(String),
}

impl From<stoke_core::archive::EntryError> for ArchiveError {
    fn from(e: stoke_core::archive::EntryError) -> Self {
        use stoke_core::archive::EntryError;
        match e {
            EntryError::UnsafePath(name) => ArchiveError::UnsafePath(name),
            EntryError::TooLarge { inflated, limit } => ArchiveError::UnpackedTooLarge { size: inflated, limit },
            other => ArchiveError::Refused(other.to_string()),
        }
    }
}

/// The archive as a zip, borrowed when it already was one.
pub fn normalize<'a>(bytes: &'a [u8], limits: &ArchiveLimits) -> Result<Cow<'a, [u8]>, ArchiveError> {
    if bytes.is_empty() {
        return Err(ArchiveError::Empty);
    }
    if bytes.len() as u64 > limits.max_archive_bytes {
        return Err(ArchiveError::TooLarge { size: bytes.len() as u64, limit: limits.max_archive_bytes });
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        check_zip(bytes, limits)?;
        Ok(Cow::Borrowed(bytes))
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        let zip = tar_gz_to_zip(bytes, limits)?;
        if zip.len() as u64 > limits.max_archive_bytes {
            return Err(ArchiveError::TooLarge { size: zip.len() as u64, limit: limits.max_archive_bytes });
        }
        Ok(Cow::Owned(zip))
    } else {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        Err(ArchiveError::UnknownFormat(head.join(" ")))
    }
}

/// Options for a zip entry with unix `mode` and modification time `mtime`, recorded both as the DOS time
/// and as an extended-timestamp field (exact to the second, as Python's `.pyc` check needs; see
/// [`unpack_readable`]).
pub fn entry_options(mode: u32, mtime: Option<std::time::SystemTime>) -> zip::write::FullFileOptions<'static> {
    let mut options = zip::write::FullFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(mode);
    let seconds =
        mtime.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).and_then(|d| u32::try_from(d.as_secs()).ok());
    if let Some(seconds) = seconds {
        if let Some(dos) = dos_time(u64::from(seconds)) {
            options = options.last_modified_time(dos);
        }
        let mut field = vec![1u8];
        field.extend_from_slice(&seconds.to_le_bytes());
        // Five bytes cannot overflow the extra-field limit.
        let _ = options.add_extra_data(0x5455, field.into_boxed_slice(), false);
    }
    options
}

/// The DOS date and time (UTC) of `seconds` since the epoch, for dates zip can hold (1980–2107).
fn dos_time(seconds: u64) -> Option<zip::DateTime> {
    let days = i64::try_from(seconds / 86_400).ok()?;
    let rem = seconds % 86_400;
    let (year, month, day) = stoke_core::time::civil_from_days(days);
    zip::DateTime::from_date_and_time(
        u16::try_from(year).ok()?,
        u8::try_from(month).ok()?,
        u8::try_from(day).ok()?,
        (rem / 3600) as u8,
        (rem % 3600 / 60) as u8,
        (rem % 60) as u8,
    )
    .ok()
}

/// Checks every entry of a zip by the archive policy, inflating each file to count its real size (and so
/// also checking every entry's CRC): a zip whose headers understate its contents is stopped at the limit.
fn check_zip(bytes: &[u8], limits: &ArchiveLimits) -> Result<(), ArchiveError> {
    let malformed = ArchiveError::Malformed;
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| malformed(e.to_string()))?;
    let mut check = EntryCheck::new(limits.max_unpacked_bytes);
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| malformed(e.to_string()))?;
        let name = entry.name().to_string();
        if entry.is_symlink() {
            let mut target = Vec::new();
            (&mut entry).take(4096).read_to_end(&mut target).map_err(|e| malformed(format!("{name}: {e}")))?;
            let target = String::from_utf8_lossy(&target).into_owned();
            check.entry(&name, EntryKind::Symlink(&target))?;
        } else if entry.is_dir() {
            check.entry(&name, EntryKind::Dir)?;
        } else {
            check.entry(&name, EntryKind::File)?;
            loop {
                let n = entry.read(&mut buf).map_err(|e| malformed(format!("{name}: {e}")))?;
                if n == 0 {
                    break;
                }
                check.inflated(n as u64)?;
            }
        }
    }
    Ok(())
}

fn tar_gz_to_zip(bytes: &[u8], limits: &ArchiveLimits) -> Result<Vec<u8>, ArchiveError> {
    let malformed = |e: std::io::Error| ArchiveError::Malformed(format!("tar.gz: {e}"));
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let mut check = EntryCheck::new(limits.max_unpacked_bytes);
    for entry in tar.entries().map_err(malformed)? {
        let mut entry = entry.map_err(malformed)?;
        let name = entry.path().map_err(malformed)?.to_string_lossy().into_owned();
        let target = entry.link_name().map_err(malformed)?.map(|t| t.to_string_lossy().into_owned());
        let kind = match entry.header().entry_type() {
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Symlink => EntryKind::Symlink(target.as_deref().unwrap_or("")),
            tar::EntryType::Link => EntryKind::Other("hard link"),
            tar::EntryType::Char => EntryKind::Other("character device"),
            tar::EntryType::Block => EntryKind::Other("block device"),
            tar::EntryType::Fifo => EntryKind::Other("FIFO"),
            _ => EntryKind::Other("special entry"),
        };
        let Some(path) = check.entry(&name, kind)? else { continue };
        let mode = entry.header().mode().unwrap_or(0o644);
        let mtime = entry.header().mtime().ok().map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        let options = entry_options(mode, mtime);
        let zip_err = |e: zip::result::ZipError| ArchiveError::Malformed(e.to_string());
        match entry.header().entry_type() {
            tar::EntryType::Directory => out.add_directory(path, options).map_err(zip_err)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                check.inflated(entry.size())?;
                // Only a hint: the size was just checked against the limits.
                let mut data = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
                entry.read_to_end(&mut data).map_err(malformed)?;
                out.start_file(path, options).map_err(zip_err)?;
                out.write_all(&data).map_err(malformed)?;
            }
            _ => out.add_symlink(path, target.unwrap_or_default(), options).map_err(zip_err)?,
        }
    }
    let cursor = out.finish().map_err(|e| ArchiveError::Malformed(e.to_string()))?;
    Ok(cursor.into_inner())
}

/// Unpacks the zip at `archive` into `dest`, whole or not at all: into a temp directory beside `dest` first,
/// then renamed. Several callers may unpack the same archive to the same place at once; all succeed.
///
/// Instances run as an unprivileged user, so the tree is made readable by everyone (and files executable
/// by their owner executable by everyone): archives built with `0600` files — common from zip libraries'
/// defaults — would otherwise fail with "Permission denied". Set-id bits are dropped.
pub fn unpack_readable(archive: &std::path::Path, dest: &std::path::Path) -> std::io::Result<()> {
    if dest.is_dir() {
        return Ok(());
    }
    let parent = dest.parent().ok_or_else(|| std::io::Error::other("the unpack destination has no parent"))?;
    std::fs::create_dir_all(parent)?;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        // A file-system error keeps its kind (a full disk is told apart from a broken archive).
        let io = |e: zip::result::ZipError| match e {
            zip::result::ZipError::Io(e) => e,
            other => std::io::Error::other(other),
        };
        let mut zip = zip::ZipArchive::new(std::fs::File::open(archive)?).map_err(io)?;
        zip.extract(&tmp).map_err(io)?;
        readable_by_all(&tmp)?;
        keep_modification_times(&mut zip, &tmp)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match std::fs::rename(&tmp, dest) {
        Ok(()) => Ok(()),
        // Another caller unpacked the same archive first.
        Err(_) if dest.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Gives every unpacked file the modification time its zip entry records. Python validates a shipped
/// `__pycache__/*.pyc` against its source's mtime: with the time of unpacking instead, every import of a
/// layer's packages would recompile them (numpy: hundreds of milliseconds per cold start).
fn keep_modification_times<R: std::io::Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    root: &std::path::Path,
) -> std::io::Result<()> {
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(std::io::Error::other)?;
        if !entry.is_file() || entry.is_symlink() {
            continue;
        }
        let Some(name) = entry.enclosed_name() else { continue };
        let Some(seconds) = entry_mtime(&entry) else { continue };
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
        std::fs::File::open(root.join(name))?.set_modified(time)?;
    }
    Ok(())
}

/// The entry's mtime in seconds since the epoch: the extended-timestamp field's (what `zip` and most tools
/// write, exact to the second) or else the DOS date and time, read as UTC.
fn entry_mtime<R: std::io::Read>(entry: &zip::read::ZipFile<'_, R>) -> Option<u64> {
    let extended = entry.extra_data_fields().find_map(|field| match field {
        zip::extra_fields::ExtraField::ExtendedTimestamp(ts) => ts.mod_time(),
        _ => None,
    });
    if let Some(seconds) = extended {
        return Some(u64::from(seconds));
    }
    let dos = entry.last_modified()?;
    dos_seconds(dos.year(), dos.month(), dos.day(), dos.hour(), dos.minute(), dos.second())
}

/// Seconds since the epoch of a civil UTC date and time; `None` before 1970.
fn dos_seconds(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Option<u64> {
    if !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let days = stoke_core::time::days_from_civil(i64::from(year), u32::from(month), u32::from(day));
    let seconds = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    u64::try_from(seconds).ok()
}

/// Directories 0755; files keep their mode plus read for all, and execute for all if the owner had it.
fn readable_by_all(dir: &std::path::Path) -> std::io::Result<()> {
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

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn tar_gz_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (name, data, mode) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(*mode);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn zips_pass_through_unchanged() {
        let z = zip_of(&[("app.py", b"def handler(e, c): return e")]);
        assert!(matches!(normalize(&z, &ArchiveLimits::default()).unwrap(), Cow::Borrowed(b) if b == z.as_slice()));
    }

    #[test]
    fn tar_gz_becomes_zip_keeping_modes() {
        let t = tar_gz_of(&[("bootstrap", b"#!/bin/sh\n", 0o755), ("./lib/x.txt", b"x", 0o644)]);
        let z = normalize(&t, &ArchiveLimits::default()).unwrap().into_owned();
        let mut zip = zip::ZipArchive::new(Cursor::new(z)).unwrap();
        let boot = zip.by_name("bootstrap").unwrap();
        assert_eq!(boot.unix_mode().unwrap() & 0o777, 0o755);
        drop(boot);
        assert!(zip.by_name("lib/x.txt").is_ok());
    }

    /// A zip of `data` at `name` (deflated) whose headers claim it holds `claimed` bytes.
    fn lying_zip(name: &str, data: &[u8], claimed: u32) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        w.start_file(name, options).unwrap();
        w.write_all(data).unwrap();
        let mut z = w.finish().unwrap().into_inner();
        let patch = |z: &mut Vec<u8>, sig: &[u8], offset: usize| {
            let at = z.windows(4).position(|w| w == sig).unwrap() + offset;
            z[at..at + 4].copy_from_slice(&claimed.to_le_bytes());
        };
        patch(&mut z, b"PK\x03\x04", 22);
        patch(&mut z, b"PK\x01\x02", 24);
        z
    }

    fn zip_with_links(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, target) in entries {
            match target {
                Some(t) => w.add_symlink(*name, *t, zip::write::SimpleFileOptions::default()).unwrap(),
                None => {
                    w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
                    w.write_all(b"x").unwrap();
                }
            }
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn zips_keep_to_the_same_policy_as_tars() {
        let limits = ArchiveLimits::default();
        // Written through a link that leaves the archive, or that climbs with '..' directly or via another link.
        for entries in [
            vec![("out", Some("/tmp")), ("out/x", None)],
            vec![("a/b", Some("..")), ("a/c", Some("b/../..")), ("a/c/x", None)],
            vec![("d", Some("/tmp")), ("d/x", None)],
        ] {
            let z = zip_with_links(&entries);
            let err = normalize(&z, &limits).unwrap_err();
            assert!(matches!(err, ArchiveError::Refused(_)), "{entries:?}: {err:?}");
            assert!(err.to_string().contains("symlink"), "{err}");
        }
        // Written through a link that stays inside: still one tree, one way.
        let z = zip_with_links(&[("d", Some("sub")), ("d/x", None)]);
        assert!(normalize(&z, &limits).unwrap_err().to_string().contains("through the symlink"));
        // Downward links are kept.
        let z = zip_with_links(&[("lib/libfoo.so.1", None), ("lib/libfoo.so", Some("libfoo.so.1"))]);
        assert!(normalize(&z, &limits).is_ok());
        // The same through a tar.gz.
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "out", "/tmp").unwrap();
        let t = b.into_inner().unwrap().finish().unwrap();
        assert!(matches!(normalize(&t, &limits), Err(ArchiveError::Refused(_))));
    }

    #[test]
    fn a_zip_whose_headers_understate_its_contents_is_refused() {
        let limits = ArchiveLimits { max_unpacked_bytes: 2000, ..Default::default() };
        let z = lying_zip("big", &[0u8; 300_000], 100);
        let err = normalize(&z, &limits).unwrap_err();
        assert!(
            matches!(err, ArchiveError::UnpackedTooLarge { limit: 2000, .. } | ArchiveError::Malformed(_)),
            "{err:?}"
        );
        // Honest headers, a large file: the same limit, counted on the inflated bytes.
        let z = lying_zip("big", &[0u8; 3000], 3000);
        assert!(matches!(normalize(&z, &limits), Err(ArchiveError::UnpackedTooLarge { limit: 2000, .. })));
        assert!(ArchiveError::UnpackedTooLarge { size: 0, limit: 262_144_000 }
            .to_string()
            .starts_with("Unzipped size must be smaller than 262144000 bytes"));
    }

    #[test]
    fn refusals() {
        let limits = ArchiveLimits { max_archive_bytes: 1000, max_unpacked_bytes: 2000, ..Default::default() };
        assert_eq!(normalize(b"", &limits), Err(ArchiveError::Empty));
        assert!(matches!(normalize(&[0u8; 1001], &limits), Err(ArchiveError::TooLarge { size: 1001, limit: 1000 })));
        assert!(
            matches!(normalize(b"hello world", &limits), Err(ArchiveError::UnknownFormat(h)) if h == "68 65 6c 6c")
        );
        assert!(matches!(normalize(b"PK\x03\x04garbage", &limits), Err(ArchiveError::Malformed(_))));
        assert!(matches!(normalize(&[0x1f, 0x8b, 0, 0], &limits), Err(ArchiveError::Malformed(_))));
        let evil = zip_of(&[("../../etc/passwd", b"x")]);
        assert_eq!(normalize(&evil, &limits), Err(ArchiveError::UnsafePath("../../etc/passwd".into())));
        let abs = zip_of(&[("/etc/passwd", b"x")]);
        assert!(matches!(normalize(&abs, &limits), Err(ArchiveError::UnsafePath(_))));
        let bomb = zip_of(&[("big", &[0u8; 5000])]);
        assert!(matches!(normalize(&bomb, &limits), Err(ArchiveError::UnpackedTooLarge { limit: 2000, .. })));
        let tar_bomb = tar_gz_of(&[("big", &[0u8; 5000], 0o644)]);
        assert!(matches!(normalize(&tar_bomb, &limits), Err(ArchiveError::UnpackedTooLarge { .. })));
    }

    #[test]
    fn concurrent_unpacks_of_the_same_archive_all_succeed() {
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("code.zip");
        let mut w = zip::ZipWriter::new(std::fs::File::create(&archive).unwrap());
        for i in 0..50 {
            w.start_file(format!("m{i}.py"), zip::write::SimpleFileOptions::default()).unwrap();
            w.write_all(&[b'x'; 4096]).unwrap();
        }
        w.finish().unwrap();
        let dest = tmp.path().join("run").join("abc");
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| unpack_readable(&archive, &dest))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in results {
            r.unwrap();
        }
        assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 50);
        let leftovers = std::fs::read_dir(tmp.path().join("run")).unwrap().count();
        assert_eq!(leftovers, 1, "temp directories are cleaned up");
        let err = unpack_readable(&tmp.path().join("missing.zip"), &tmp.path().join("run").join("x")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(!tmp.path().join("run").join("x").exists(), "a failed unpack leaves nothing");
    }

    #[test]
    fn civil_times_convert_both_ways() {
        assert_eq!(dos_seconds(1980, 1, 1, 0, 0, 0), Some(315_532_800));
        assert_eq!(dos_seconds(2024, 3, 1, 12, 34, 56), Some(1_709_296_496));
        assert_eq!(dos_seconds(2000, 2, 29, 23, 59, 58), Some(951_868_798));
        assert_eq!(dos_seconds(2000, 13, 1, 0, 0, 0), None);
        for seconds in [315_532_800u64, 951_868_798, 1_709_296_496, 1_709_296_497, 4_102_444_799] {
            let t = dos_time(seconds).unwrap();
            let back = dos_seconds(t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second());
            assert_eq!(back, Some(seconds & !1), "DOS times have two-second steps");
        }
        assert!(dos_time(1_000).is_none(), "zip cannot hold dates before 1980");
    }

    #[test]
    fn unpacked_files_keep_their_modification_times() {
        use std::time::{Duration, UNIX_EPOCH};
        let tmp = tempfile::tempdir().unwrap();
        let odd = UNIX_EPOCH + Duration::from_secs(1_709_296_497);
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("exact.py", entry_options(0o644, Some(odd))).unwrap();
        w.write_all(b"x = 1").unwrap();
        // Only the DOS time, two-second resolution, as some tools write.
        let dos = zip::DateTime::from_date_and_time(2024, 3, 1, 12, 34, 56).unwrap();
        w.start_file("dos.py", zip::write::SimpleFileOptions::default().last_modified_time(dos)).unwrap();
        w.write_all(b"y = 2").unwrap();
        w.add_directory("pkg/", zip::write::SimpleFileOptions::default()).unwrap();
        w.start_file("pkg/none.py", entry_options(0o600, None)).unwrap();
        let archive = tmp.path().join("layer.zip");
        std::fs::write(&archive, w.finish().unwrap().into_inner()).unwrap();
        let dest = tmp.path().join("out");
        unpack_readable(&archive, &dest).unwrap();
        let mtime = |p: &str| std::fs::metadata(dest.join(p)).unwrap().modified().unwrap();
        assert_eq!(mtime("exact.py"), odd);
        assert_eq!(mtime("dos.py"), UNIX_EPOCH + Duration::from_secs(1_709_296_496));
        assert_eq!(mtime("pkg/none.py"), UNIX_EPOCH + Duration::from_secs(315_532_800), "zip's default time");
    }

    #[test]
    fn a_tar_gz_keeps_its_modification_times_through_the_zip() {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_mtime(1_709_296_497);
        h.set_cksum();
        b.append_data(&mut h, "m.py", &b"x"[..]).unwrap();
        let tgz = b.into_inner().unwrap().finish().unwrap();
        let zipped = normalize(&tgz, &ArchiveLimits::default()).unwrap();
        let mut zip = zip::ZipArchive::new(Cursor::new(zipped.as_ref())).unwrap();
        let entry = zip.by_index_raw(0).unwrap();
        assert_eq!(entry_mtime(&entry), Some(1_709_296_497));
    }

    #[test]
    fn unpacked_files_are_readable_by_the_sandbox_user() {
        use std::os::unix::fs::PermissionsExt;
        use std::path::Path;
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
