//! Property tests (bounded fuzzing on stable Rust) of archive intake: any bytes, and valid zips and tar.gz
//! files with bytes flipped or cut off, are accepted or refused with an `ArchiveError` (a 4xx), never a
//! panic; and whatever is accepted unpacks entirely inside its directory. `PROPTEST_CASES=N` runs more.

use std::io::Write;

use proptest::prelude::*;
use stoke_store::archive::{normalize, unpack_readable, ArchiveLimits};

fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases: n, ..ProptestConfig::default() }
}

fn limits() -> ArchiveLimits {
    ArchiveLimits { max_archive_bytes: 1 << 20, max_unpacked_bytes: 1 << 20, max_image_bytes: 1 << 20 }
}

/// A small valid zip: files, a directory, a link that stays inside.
fn sample_zip() -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    w.add_directory("lib/", opts).unwrap();
    w.start_file("app.py", opts).unwrap();
    w.write_all(b"def handler(e, c):\n    return 1\n").unwrap();
    w.start_file("lib/x.so.1", opts.compression_method(zip::CompressionMethod::Stored)).unwrap();
    w.write_all(&[7u8; 300]).unwrap();
    w.add_symlink("lib/x.so", "x.so.1", opts).unwrap();
    w.finish().unwrap().into_inner()
}

/// A small valid tar.gz with the same shape.
fn sample_tar_gz() -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut file = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data).unwrap();
    };
    file("app.py", b"def handler(e, c):\n    return 1\n");
    file("lib/x.so.1", &[7u8; 300]);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_cksum();
    tar.append_link(&mut h, "lib/x.so", "x.so.1").unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Cut { at: usize },
    Insert { at: usize, byte: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        1 => any::<usize>().prop_map(|at| Mutation::Cut { at }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        match *m {
            Mutation::Flip { at, xor } => {
                let i = at % bytes.len();
                bytes[i] ^= xor;
            }
            Mutation::Cut { at } => bytes.truncate(at % bytes.len()),
            Mutation::Insert { at, byte } => {
                let i = at % bytes.len();
                bytes.insert(i, byte);
            }
        }
    }
    bytes
}

/// Every path under `dir` (links not followed) is inside it, and every link resolves inside it.
fn stays_inside(dir: &std::path::Path) -> Result<(), String> {
    let root = dir.canonicalize().map_err(|e| e.to_string())?;
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| e.to_string())?.flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).map_err(|e| e.to_string())?;
                if target.is_absolute() || target.components().any(|c| c == std::path::Component::ParentDir) {
                    return Err(format!("{} -> {} leaves its directory", path.display(), target.display()));
                }
            } else if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(400))]

    /// Any bytes: accepted or refused, never a panic.
    #[test]
    fn any_bytes_are_an_archive_or_an_archive_error(prefix in prop::sample::select(vec![&b""[..], b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b"]), rest in prop::collection::vec(any::<u8>(), 0..512)) {
        let bytes = [prefix, &rest[..]].concat();
        let _ = normalize(&bytes, &limits());
    }

    /// A valid zip or tar.gz with bytes flipped, inserted or cut: refused cleanly, or accepted and then
    /// unpacked without anything leaving the destination.
    #[test]
    fn damaged_archives_are_refused_or_unpack_inside(tar in any::<bool>(), mutations in prop::collection::vec(mutation(), 1..4)) {
        let sample = if tar { sample_tar_gz() } else { sample_zip() };
        let bytes = mutate(sample, &mutations);
        if let Ok(zip) = normalize(&bytes, &limits()) {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("code.zip");
            std::fs::write(&file, &zip).unwrap();
            let dest = dir.path().join("out");
            if unpack_readable(&file, &dest).is_ok() {
                prop_assert!(stays_inside(&dest).is_ok(), "{:?}", stays_inside(&dest));
            }
        }
    }
}

#[test]
fn the_samples_themselves_are_accepted() {
    for bytes in [sample_zip(), sample_tar_gz()] {
        let zip = normalize(&bytes, &limits()).expect("a valid archive");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.zip"), &zip).unwrap();
        unpack_readable(&dir.path().join("c.zip"), &dir.path().join("out")).unwrap();
        assert!(dir.path().join("out/lib/x.so").exists());
        stays_inside(&dir.path().join("out")).unwrap();
    }
}
