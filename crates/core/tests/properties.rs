//! Property tests (bounded fuzzing on stable Rust) of the pure parsers and policies in stoke-core: the
//! archive policy and the percent codec. Each runs a few hundred to a few thousand generated cases in the
//! test suite; `PROPTEST_CASES=N` (scripts/fuzz --long) runs more. A failing case proptest finds is written to
//! `proptest-regressions/` beside this file: commit it, and it is replayed first from then on.

use proptest::prelude::*;
use stoke_core::archive::{EntryCheck, EntryError, EntryKind};

fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases: n, ..ProptestConfig::default() }
}

/// Path segments chosen to hit the policy's edges: climbing, separators of both kinds, NUL, empty parts.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "lib", "x.so"]).prop_map(String::from),
        1 => prop::sample::select(vec!["..", ".", "", "\\", "a\\..", "..\\b", "\0", "é", " "]).prop_map(String::from),
        1 => "[a-z.\\\\/]{0,4}",
    ]
}

fn name() -> impl Strategy<Value = String> {
    (prop::sample::select(vec!["", "/", "./", "\\"]), prop::collection::vec(segment(), 1..4))
        .prop_map(|(lead, parts)| format!("{lead}{}", parts.join("/")))
}

#[derive(Debug, Clone)]
enum Kind {
    File,
    Dir,
    Link(String),
    Other,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::File),
        2 => Just(Kind::Dir),
        2 => name().prop_map(Kind::Link),
        1 => Just(Kind::Other),
    ]
}

fn no_climb(path: &str) -> bool {
    !path.starts_with('/')
        && !path.starts_with('\\')
        && !path.contains('\0')
        && path.split(['/', '\\']).all(|p| p != "..")
}

proptest! {
    #![proptest_config(cases(2000))]

    /// Whatever the entries and their order: the check never panics; every accepted name is canonical and
    /// stays inside the root; no accepted entry lies under an accepted link; no name is both a directory
    /// and a leaf; every accepted link points downward.
    #[test]
    fn accepted_entries_form_one_tree_inside_the_root(entries in prop::collection::vec((name(), kind()), 0..12)) {
        let mut check = EntryCheck::new(1 << 20);
        let mut links = Vec::new();
        let mut leaves = Vec::new();
        let mut accepted = Vec::new();
        for (name, kind) in &entries {
            let k = match kind {
                Kind::File => EntryKind::File,
                Kind::Dir => EntryKind::Dir,
                Kind::Link(t) => EntryKind::Symlink(t),
                Kind::Other => EntryKind::Other("hard link"),
            };
            let Ok(Some(path)) = check.entry(name, k) else { continue };
            prop_assert!(no_climb(&path), "{path:?} from {name:?}");
            prop_assert!(path.split('/').all(|p| !p.is_empty() && p != "."), "not canonical: {path:?}");
            prop_assert!(!path.contains('\\'), "not canonical: {path:?}");
            match kind {
                Kind::Link(target) => {
                    prop_assert!(no_climb(target), "link {path:?} -> {target:?}");
                    links.push(path.clone());
                    leaves.push(path.clone());
                }
                Kind::File => leaves.push(path.clone()),
                _ => {}
            }
            prop_assert!(!matches!(kind, Kind::Other), "{kind:?} accepted");
            accepted.push(path);
        }
        for link in &links {
            let under = format!("{link}/");
            prop_assert!(!accepted.iter().any(|p| p.starts_with(&under)), "an entry under link {link:?}: {accepted:?}");
        }
        for leaf in &leaves {
            let under = format!("{leaf}/");
            prop_assert!(!accepted.iter().any(|p| p.starts_with(&under)), "{leaf:?} is a leaf and a directory");
        }
    }

    /// The size check stops at the first count past the limit, whatever the chunks.
    #[test]
    fn inflating_stops_exactly_past_the_limit(limit in 0u64..10_000, chunks in prop::collection::vec(0u64..5_000, 0..20)) {
        let mut check = EntryCheck::new(limit);
        let mut total = 0u64;
        for chunk in chunks {
            total += chunk;
            match check.inflated(chunk) {
                Ok(()) => prop_assert!(total <= limit),
                Err(EntryError::TooLarge { inflated, limit: l }) => {
                    prop_assert!(total > limit && inflated == total && l == limit);
                    break;
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }

    /// Decoding never panics on any text (a `%` before a multi-byte character once did), and decoding what
    /// was encoded gives the bytes back.
    #[test]
    fn percent_decoding_takes_any_text_and_inverts_encoding(text in "\\PC{0,24}", bytes in prop::collection::vec(any::<u8>(), 0..32), slash in any::<bool>()) {
        let _ = stoke_core::percent::decode(&text);
        let _ = stoke_core::percent::decode_str(&text);
        prop_assert_eq!(stoke_core::percent::decode(&stoke_core::percent::encode(&bytes, slash)), bytes);
    }
}

#[test]
fn a_percent_before_a_multi_byte_character_decodes_without_panicking() {
    // Found by reading, before these properties existed; kept as a regression case.
    let _ = stoke_core::percent::decode("%é");
    let _ = stoke_core::percent::decode("%%\u{1F600}");
}
