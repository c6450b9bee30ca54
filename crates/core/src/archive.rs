//! The archive policy: what an uploaded code, layer or image archive may contain, checked entry by entry
//! before anything is written. Pure: the store feeds it the entries of a zip or a tar as it reads them.
//!
//! - Names are relative, without `..`, NUL or a leading `/` or `\`.
//! - A symlink may point only downward from its own directory: a relative target without `..` (so
//!   `libfoo.so -> libfoo.so.1` and `current -> v2/bin` are kept as links, `out -> /tmp` and `up -> ..` are
//!   refused). Without `..` nothing can climb, so every link resolves inside the archive's root, chains of
//!   links included.
//! - No entry is written through a link (`d -> sub`, then `d/x`), and no name is both a directory and a file
//!   or link: an archive means one tree, whatever order a tool extracts it in.
//! - Hard links, devices and FIFOs are refused.
//! - The unpacked size is counted on the bytes really inflated, not on what headers claim.

use std::collections::HashSet;

/// Lambda's limit on a function's unzipped code and layers together: 262,144,000 bytes.
pub const MAX_UNZIPPED_BYTES: u64 = 262_144_000;

/// What an archive entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind<'a> {
    File,
    Dir,
    /// A symbolic link, with its target.
    Symlink(&'a str),
    /// Anything else (a hard link, a device, a FIFO), described for the error.
    Other(&'a str),
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("the archive has an entry {0:?} that points outside its root; use relative paths without '..'")]
    UnsafePath(String),
    #[error(
        "the archive's symlink {name:?} points to {target:?}, outside its own directory; a link may only point to \
         a relative path without '..' (e.g. libfoo.so -> libfoo.so.1)"
    )]
    LinkOutside { name: String, target: String },
    #[error("the archive's entry {name:?} is written through the symlink {link:?}; put it at its real path")]
    ThroughLink { name: String, link: String },
    #[error("the archive's entry {name:?} is both a directory and a file or link; an archive must describe one tree")]
    Conflict { name: String },
    #[error("the archive's entry {name:?} is a {kind}; only files, directories and symlinks are allowed")]
    Unsupported { name: String, kind: String },
    /// Stopped at `inflated` bytes, the first count past the limit.
    #[error("the archive unpacks to more than {limit} bytes; Unzipped size must be smaller than {limit} bytes")]
    TooLarge { inflated: u64, limit: u64 },
}

/// An entry's name made canonical: no leading `./`, no trailing `/`, `\` read as `/`; `None` for the root.
fn canonical(name: &str) -> Option<String> {
    let name = name.replace('\\', "/");
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// A relative path without `..`, NUL, or a leading separator.
fn is_safe(path: &str) -> bool {
    !(path.is_empty()
        || path.starts_with('/')
        || path.starts_with('\\')
        || path.contains('\0')
        || path.split(['/', '\\']).any(|part| part == ".."))
}

/// Checks one archive's entries in the order they come. Keeps what it has seen: the links, the directories
/// entries live in, and the bytes inflated so far.
#[derive(Debug)]
pub struct EntryCheck {
    limit: u64,
    inflated: u64,
    links: HashSet<String>,
    /// Names given as files or links.
    leaves: HashSet<String>,
    /// Names that are directories: given as such, or holding another entry.
    dirs: HashSet<String>,
}

impl EntryCheck {
    /// A check whose unpacked size may not pass `limit` bytes.
    pub fn new(limit: u64) -> Self {
        EntryCheck { limit, inflated: 0, links: HashSet::new(), leaves: HashSet::new(), dirs: HashSet::new() }
    }

    /// Checks the next entry; returns its canonical name (`None`: the root itself, to skip).
    pub fn entry(&mut self, name: &str, kind: EntryKind<'_>) -> Result<Option<String>, EntryError> {
        if !is_safe(name) {
            return Err(EntryError::UnsafePath(name.to_string()));
        }
        let Some(path) = canonical(name) else { return Ok(None) };
        let parts: Vec<&str> = path.split('/').collect();
        for depth in 1..parts.len() {
            let prefix = parts[..depth].join("/");
            if self.links.contains(&prefix) {
                return Err(EntryError::ThroughLink { name: path.clone(), link: prefix });
            }
            if self.leaves.contains(&prefix) {
                return Err(EntryError::Conflict { name: prefix });
            }
            self.dirs.insert(prefix);
        }
        match kind {
            EntryKind::Dir => {
                if self.leaves.contains(&path) {
                    return Err(EntryError::Conflict { name: path });
                }
                self.dirs.insert(path.clone());
            }
            EntryKind::File | EntryKind::Symlink(_) => {
                if self.dirs.contains(&path) {
                    return Err(EntryError::Conflict { name: path });
                }
                if let EntryKind::Symlink(target) = kind {
                    if !is_safe(target) {
                        return Err(EntryError::LinkOutside { name: path, target: target.to_string() });
                    }
                    self.links.insert(path.clone());
                } else if self.links.contains(&path) {
                    // A file given again where a link was: extraction would write through the link.
                    return Err(EntryError::ThroughLink { name: path.clone(), link: path });
                }
                self.leaves.insert(path.clone());
            }
            EntryKind::Other(what) => return Err(EntryError::Unsupported { name: path, kind: what.to_string() }),
        }
        Ok(Some(path))
    }

    /// Counts `bytes` more inflated; refuses once the total passes the limit. Call it as the bytes come, so
    /// a bomb is stopped at the limit, not inflated whole.
    pub fn inflated(&mut self, bytes: u64) -> Result<(), EntryError> {
        self.inflated = self.inflated.saturating_add(bytes);
        if self.inflated > self.limit {
            return Err(EntryError::TooLarge { inflated: self.inflated, limit: self.limit });
        }
        Ok(())
    }

    /// Bytes inflated so far.
    pub fn total(&self) -> u64 {
        self.inflated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(entries: &[(&str, EntryKind<'_>)]) -> Result<(), EntryError> {
        let mut c = EntryCheck::new(MAX_UNZIPPED_BYTES);
        for (name, kind) in entries {
            c.entry(name, *kind)?;
        }
        Ok(())
    }

    use EntryKind::{Dir, File, Other, Symlink};

    #[test]
    fn ordinary_trees_and_downward_links_pass() {
        assert_eq!(
            check(&[
                ("bootstrap", File),
                ("lib/", Dir),
                ("lib/libfoo.so.1", File),
                ("lib/libfoo.so", Symlink("libfoo.so.1")),
                ("./python/pkg/__init__.py", File),
                ("current", Symlink("python/pkg")),
                ("python/", Dir),
            ]),
            Ok(())
        );
        let mut c = EntryCheck::new(10);
        assert_eq!(c.entry("./", Dir), Ok(None), "the root itself is skipped");
        assert_eq!(c.entry("a\\b.txt", File), Ok(Some("a/b.txt".into())));
    }

    #[test]
    fn names_that_leave_the_root_are_refused() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "\\x", "a/..", "x\0y"] {
            assert_eq!(check(&[(bad, File)]), Err(EntryError::UnsafePath(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn links_out_of_their_directory_are_refused() {
        // The cases: an absolute target, and climbing with '..' directly or through another link.
        assert!(matches!(check(&[("out", Symlink("/tmp"))]), Err(EntryError::LinkOutside { .. })));
        assert!(matches!(check(&[("a/b", Symlink(".."))]), Err(EntryError::LinkOutside { .. })));
        assert!(matches!(check(&[("a/c", Symlink("b/../.."))]), Err(EntryError::LinkOutside { .. })));
        assert!(matches!(check(&[("d/", Dir), ("d", Symlink("/tmp"))]), Err(EntryError::Conflict { .. })));
        assert!(matches!(check(&[("e", Symlink(""))]), Err(EntryError::LinkOutside { .. })));
    }

    #[test]
    fn nothing_is_written_through_a_link() {
        assert_eq!(
            check(&[("d", Symlink("sub")), ("d/x", File)]),
            Err(EntryError::ThroughLink { name: "d/x".into(), link: "d".into() })
        );
        assert_eq!(
            check(&[("d", Symlink("sub")), ("d/e/x", File)]),
            Err(EntryError::ThroughLink { name: "d/e/x".into(), link: "d".into() })
        );
        // A file given again at a link's name would be written through it.
        assert!(matches!(check(&[("f", Symlink("g")), ("f", File)]), Err(EntryError::ThroughLink { .. })));
    }

    #[test]
    fn a_name_is_a_directory_or_a_leaf_not_both() {
        assert_eq!(check(&[("a/x", File), ("a", File)]), Err(EntryError::Conflict { name: "a".into() }));
        assert_eq!(check(&[("a", File), ("a/x", File)]), Err(EntryError::Conflict { name: "a".into() }));
        assert_eq!(check(&[("a", File), ("a/", Dir)]), Err(EntryError::Conflict { name: "a".into() }));
    }

    #[test]
    fn hard_links_and_devices_are_refused() {
        assert_eq!(
            check(&[("dev/null", Other("character device"))]),
            Err(EntryError::Unsupported { name: "dev/null".into(), kind: "character device".into() })
        );
    }

    #[test]
    fn the_unpacked_size_is_counted_as_bytes_come() {
        let mut c = EntryCheck::new(100);
        assert_eq!(c.inflated(60), Ok(()));
        assert_eq!(c.inflated(40), Ok(()));
        assert_eq!(c.total(), 100);
        assert_eq!(c.inflated(1), Err(EntryError::TooLarge { inflated: 101, limit: 100 }));
        let message = EntryError::TooLarge { inflated: 0, limit: MAX_UNZIPPED_BYTES }.to_string();
        assert!(message.contains("Unzipped size must be smaller than 262144000 bytes"), "{message}");
    }
}
