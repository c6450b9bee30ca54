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

/// Time zones with the transitions that matter: none, an hour each way (north and south), half an hour
/// (Lord Howe), and a large jump (Samoa's style of offset).
fn zone() -> impl Strategy<Value = jiff::tz::TimeZone> {
    prop::sample::select(vec![
        "UTC0",
        "PST8PDT,M3.2.0,M11.1.0",
        "CET-1CEST,M3.5.0,M10.5.0/3",
        "AEST-10AEDT,M10.1.0,M4.1.0/3",
        "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
        "<-05>5<-04>,M3.2.0/0,M11.1.0/1",
    ])
    .prop_map(|p| jiff::tz::TimeZone::posix(p).unwrap())
}

/// One cron field: `*`, a value, a range (wrapping too) or a step, from the field's own range.
fn cron_field(min: u32, max: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        (min..=max).prop_map(|v| v.to_string()),
        (min..=max, min..=max).prop_map(|(a, b)| format!("{a}-{b}")),
        (min..=max, 1..=max.max(1)).prop_map(|(a, n)| format!("{a}/{n}")),
        (min..=max, min..=max).prop_map(|(a, b)| format!("{a},{b}")),
    ]
}

fn cron() -> impl Strategy<Value = String> {
    let days = prop_oneof![
        cron_field(1, 31).prop_map(|d| format!("{d} * ?")),
        Just("L * ?".to_string()),
        Just("LW * ?".to_string()),
        (1..=31u32).prop_map(|d| format!("{d}W * ?")),
        cron_field(1, 7).prop_map(|d| format!("? * {d}")),
        (1..=7u32).prop_map(|d| format!("? * {d}L")),
        (1..=7u32, 1..=5u32).prop_map(|(d, n)| format!("? * {d}#{n}")),
        (cron_field(1, 31), cron_field(1, 12)).prop_map(|(d, m)| format!("{d} {m} ?")),
    ];
    (cron_field(0, 59), cron_field(0, 23), days).prop_map(|(m, h, d)| format!("cron({m} {h} {d} *)"))
}

proptest! {
    #![proptest_config(cases(300))]

    /// Every fire is strictly after the instant asked about, is a time the zone's clocks really show (never in
    /// a skipped hour), matches the expression's minute and hour, and nothing fires in between: asking from
    /// any instant before the fire finds the same fire. A repeated hour fires once.
    #[test]
    fn cron_fires_are_after_now_monotone_and_real(expr in cron(), tz in zone(),
                                                   from in 1_700_000_000_000i64..2_100_000_000_000i64,
                                                   back in 0i64..86_400_000) {
        use stoke_core::schedule::Expression;
        let e = Expression::parse(&expr).unwrap();
        let Some(next) = e.next_after(&tz, from, i64::MIN / 2, None) else { return Ok(()) };
        prop_assert!(next > from, "{expr}: {next} is not after {from}");
        let civil = tz.to_datetime(jiff::Timestamp::from_millisecond(next).unwrap());
        prop_assert_eq!(civil.second(), 0);
        // The civil time is real and maps back to the same instant (or to the first of a repeated pair).
        let back_to = tz.to_ambiguous_timestamp(civil).earlier().unwrap().as_millisecond();
        prop_assert_eq!(back_to, next, "{} in {:?} is not where it fires", civil, tz);
        // Monotone: from any earlier instant in between, the same fire (nothing was skipped).
        let earlier = (next - 1 - back).max(from);
        prop_assert_eq!(e.next_after(&tz, earlier, i64::MIN / 2, None), Some(next));
        // The one after is later, and is not the same civil time again (a repeated hour fires once).
        if let Some(after) = e.next_after(&tz, next, i64::MIN / 2, None) {
            prop_assert!(after > next);
            let again = tz.to_datetime(jiff::Timestamp::from_millisecond(after).unwrap());
            prop_assert_ne!(again, civil, "{} fired twice", civil);
        }
    }

    /// A rate fires on its grid from the start: strictly after now, a whole number of periods from the start.
    #[test]
    fn rate_fires_are_on_the_grid_after_now(n in 1u32..500, unit in 0usize..3,
                                            start in 1_700_000_000_000i64..2_000_000_000_000i64,
                                            from in 1_700_000_000_000i64..2_100_000_000_000i64) {
        use stoke_core::schedule::Expression;
        let unit = ["minutes", "hours", "days"][unit];
        let e = Expression::parse(&format!("rate({n} {unit})")).unwrap();
        let every = i64::from(n) * [60_000, 3_600_000, 86_400_000][["minutes", "hours", "days"].iter().position(|u| *u == unit).unwrap()];
        let next = e.next_after(&jiff::tz::TimeZone::UTC, from, start, None).unwrap();
        prop_assert!(next > from && next >= start);
        prop_assert_eq!((next - start) % every, 0);
        prop_assert!(next - every <= from.max(start - every), "a fire was skipped");
    }
}
