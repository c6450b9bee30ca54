//! Layer versions and imported images.

use stoke_store::{LayerRecord, Store};

use crate::fixtures::{account, expect_conflict, image, layer, lname, race};

/// Each layer counts its versions from 1, per account and name; the store assigns the number, ignoring
/// the record's `version`, and a new version is live (`deleted_ms` is not read from the record either).
pub fn layer_versions_count_up_per_layer(s: &dyn Store) {
    let (a, b) = (account(s, 401), account(s, 402));
    let mut first = layer(&a, "np", "s1");
    (first.version, first.deleted_ms) = (42, Some(3));
    assert_eq!(s.insert_layer_version(&first).unwrap(), 1);
    assert_eq!(s.insert_layer_version(&layer(&a, "np", "s2")).unwrap(), 2);
    assert_eq!(s.insert_layer_version(&layer(&a, "pil", "s3")).unwrap(), 1, "numbers are per layer");
    assert_eq!(s.insert_layer_version(&layer(&b, "np", "s1")).unwrap(), 1, "numbers are per account");

    let np = lname("np");
    let stored = |account, name, version| s.get_layer_version(account, name, version).unwrap();
    assert_eq!(stored(&a, &np, 1), Some(LayerRecord { version: 1, deleted_ms: None, ..first }), "every field");
    assert_eq!(stored(&a, &np, 2), Some(LayerRecord { version: 2, ..layer(&a, "np", "s2") }));
    assert_eq!(stored(&a, &np, 3), None);
    assert_eq!(stored(&b, &np, 2), None, "another account's layer");
    assert_eq!(stored(&a, &lname("nope"), 1), None);
}

/// A number is never given twice, whether the highest version was marked deleted or forgotten, or every
/// version of the layer is gone.
pub fn layer_numbers_are_never_reused(s: &dyn Store) {
    let a = account(s, 411);
    let np = lname("np");
    let publish = |sha: &str| s.insert_layer_version(&layer(&a, "np", sha)).unwrap();
    assert_eq!([publish("s1"), publish("s2"), publish("s3")], [1, 2, 3]);
    assert!(s.delete_layer_version(&a, &np, 3, false, 50).unwrap());
    assert_eq!(publish("s4"), 4, "3 was marked deleted, not reused");
    assert!(s.delete_layer_version(&a, &np, 4, true, 51).unwrap());
    assert_eq!(s.get_layer_version(&a, &np, 4).unwrap(), None, "forgotten");
    assert_eq!(publish("s5"), 5, "4 was forgotten, not reused");
    for v in [1, 2, 5] {
        assert!(s.delete_layer_version(&a, &np, v, true, 52).unwrap());
    }
    assert!(s.list_layer_versions(&a, &np).unwrap().is_empty());
    assert_eq!(publish("s6"), 6, "a layer with no version left still counts on");
    let versions: Vec<u64> = s.list_layer_versions(&a, &np).unwrap().into_iter().map(|l| l.version).collect();
    assert_eq!(versions, [6]);
}

/// `list_layers`: the newest live version of each of the account's layers, by name; a layer whose versions
/// are all deleted is not listed. `list_layer_versions`: a layer's live versions, newest first.
pub fn layers_list_newest_live_version_by_name(s: &dyn Store) {
    let (a, b) = (account(s, 421), account(s, 422));
    for (name, sha) in [("pil", "p1"), ("np", "n1"), ("np", "n2"), ("np", "n3"), ("gone", "g1"), ("Zlib", "z1")] {
        s.insert_layer_version(&layer(&a, name, sha)).unwrap();
    }
    s.insert_layer_version(&layer(&b, "other", "o1")).unwrap();
    let np = lname("np");
    assert!(s.delete_layer_version(&a, &np, 3, false, 9).unwrap());
    assert!(s.delete_layer_version(&a, &lname("gone"), 1, false, 9).unwrap());

    let listed = s.list_layers(&a).unwrap();
    let names: Vec<(String, u64)> = listed.iter().map(|l| (l.name.to_string(), l.version)).collect();
    assert_eq!(names, [("Zlib".into(), 1), ("np".into(), 2), ("pil".into(), 1)], "newest live, by name (bytes)");
    assert_eq!(listed[1], LayerRecord { version: 2, ..layer(&a, "np", "n2") }, "listed records are whole");
    assert_eq!(s.list_layers(&b).unwrap(), [LayerRecord { version: 1, ..layer(&b, "other", "o1") }]);

    let versions: Vec<u64> = s.list_layer_versions(&a, &np).unwrap().into_iter().map(|l| l.version).collect();
    assert_eq!(versions, [2, 1], "live versions, newest first");
    assert!(s.list_layer_versions(&a, &lname("gone")).unwrap().is_empty());
    assert!(s.list_layer_versions(&b, &np).unwrap().is_empty(), "another account's layer");

    // Deleting the newest live version shows the one below it; publishing shows the new one.
    assert!(s.delete_layer_version(&a, &np, 2, true, 10).unwrap());
    assert_eq!(s.list_layers(&a).unwrap()[1].version, 1);
    assert_eq!(s.insert_layer_version(&layer(&a, "np", "n4")).unwrap(), 4);
    assert_eq!(s.list_layers(&a).unwrap()[1].version, 4);
}

/// A soft delete marks the version deleted at `now_ms`: still readable, no longer listed, and a second
/// delete finds no live version (false). `forget` removes the record. Both are false for a version that
/// does not exist or is another account's.
pub fn layer_versions_are_marked_deleted_or_forgotten(s: &dyn Store) {
    let (a, b) = (account(s, 431), account(s, 432));
    let np = lname("np");
    for sha in ["s1", "s2", "s3"] {
        s.insert_layer_version(&layer(&a, "np", sha)).unwrap();
    }
    assert!(!s.delete_layer_version(&b, &np, 1, false, 5).unwrap(), "another account's layer");
    assert!(!s.delete_layer_version(&b, &np, 1, true, 5).unwrap(), "another account's layer");
    assert!(!s.delete_layer_version(&a, &np, 9, false, 5).unwrap(), "no such version");
    assert!(!s.delete_layer_version(&a, &np, 9, true, 5).unwrap(), "no such version");

    assert!(s.delete_layer_version(&a, &np, 2, false, 99).unwrap());
    assert!(!s.delete_layer_version(&a, &np, 2, false, 100).unwrap(), "already deleted");
    assert_eq!(
        s.get_layer_version(&a, &np, 2).unwrap(),
        Some(LayerRecord { version: 2, deleted_ms: Some(99), ..layer(&a, "np", "s2") }),
        "a deleted version stays readable, marked at the first delete's time"
    );
    let live: Vec<u64> = s.list_layer_versions(&a, &np).unwrap().into_iter().map(|l| l.version).collect();
    assert_eq!(live, [3, 1]);

    assert!(s.delete_layer_version(&a, &np, 1, true, 101).unwrap());
    assert_eq!(s.get_layer_version(&a, &np, 1).unwrap(), None, "forgotten");
    assert!(!s.delete_layer_version(&a, &np, 1, false, 102).unwrap(), "a forgotten version is gone");
    assert!(!s.delete_layer_version(&a, &np, 1, true, 102).unwrap());

    // Forgetting a version already marked deleted removes it (SQLite also answers true here, though no live
    // version was left; the answer is not part of the contract).
    let _answer = s.delete_layer_version(&a, &np, 2, true, 103);
    assert_eq!(s.get_layer_version(&a, &np, 2).unwrap(), None, "a deleted version can be forgotten");
    assert_eq!(s.list_layer_versions(&a, &np).unwrap(), [LayerRecord { version: 3, ..layer(&a, "np", "s3") }]);
}

/// `referenced_layers`: each (account, archive) any version record points at, once, deleted versions
/// included (functions that list them still run on them), forgotten ones not.
pub fn referenced_layers_keep_deleted_not_forgotten(s: &dyn Store) {
    let (a, b) = (account(s, 441), account(s, 442));
    assert!(s.referenced_layers().unwrap().is_empty());
    let np = lname("np");
    for sha in ["shared", "shared", "soft", "forgotten"] {
        s.insert_layer_version(&layer(&a, "np", sha)).unwrap();
    }
    s.insert_layer_version(&layer(&a, "pil", "shared")).unwrap();
    s.insert_layer_version(&layer(&b, "np", "shared")).unwrap();
    assert!(s.delete_layer_version(&a, &np, 3, false, 1).unwrap());
    assert!(s.delete_layer_version(&a, &np, 4, true, 1).unwrap());
    let mut refs = s.referenced_layers().unwrap();
    refs.sort();
    assert_eq!(refs, [(a.clone(), "shared".to_string()), (a, "soft".to_string()), (b, "shared".to_string())]);
}

/// Many writers publishing versions of one layer at once all get distinct numbers, 1..=N.
pub fn concurrent_layer_publishes_get_distinct_numbers(s: &dyn Store) {
    const THREADS: usize = 8;
    const EACH: usize = 4;
    let a = account(s, 451);
    let numbers = race(THREADS, |i| {
        (0..EACH).map(|j| s.insert_layer_version(&layer(&a, "np", &format!("t{i}-{j}"))).unwrap()).collect::<Vec<_>>()
    });
    let total = u64::try_from(THREADS * EACH).unwrap();
    let mut all: Vec<u64> = numbers.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (1..=total).collect::<Vec<_>>(), "{numbers:?}");
    for (i, mine) in numbers.iter().enumerate() {
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "one writer's numbers increase: {mine:?}");
        for (j, v) in mine.iter().enumerate() {
            let stored = s.get_layer_version(&a, &lname("np"), *v).unwrap().unwrap();
            assert_eq!(stored.code.sha256, format!("t{i}-{j}"), "version {v} holds what its writer published");
        }
    }
    let listed: Vec<u64> = s.list_layer_versions(&a, &lname("np")).unwrap().into_iter().map(|l| l.version).collect();
    assert_eq!(listed, (1..=total).rev().collect::<Vec<_>>());
}

/// Images: unique names (`Conflict`), listed by name, deleted once.
pub fn images_have_unique_names(s: &dyn Store) {
    assert!(s.list_images().unwrap().is_empty());
    s.insert_image(&image("ubuntu")).unwrap();
    s.insert_image(&image("alpine")).unwrap();
    s.insert_image(&image("Debian")).unwrap();
    let mut again = image("alpine");
    again.unpacked_bytes = 1;
    expect_conflict(s.insert_image(&again));
    assert_eq!(s.get_image("alpine").unwrap(), Some(image("alpine")), "every field; the refused insert wrote nothing");
    assert_eq!(s.get_image("nope").unwrap(), None);
    assert_eq!(s.list_images().unwrap(), [image("Debian"), image("alpine"), image("ubuntu")], "by name (bytes)");
    assert!(s.delete_image("alpine").unwrap());
    assert!(!s.delete_image("alpine").unwrap());
    assert!(!s.delete_image("nope").unwrap());
    assert_eq!(s.get_image("alpine").unwrap(), None);
    assert_eq!(s.list_images().unwrap(), [image("Debian"), image("ubuntu")]);
    s.insert_image(&again).unwrap();
    assert_eq!(s.get_image("alpine").unwrap(), Some(again), "a deleted name is free");
}

contract!(
    layer_versions_count_up_per_layer,
    layer_numbers_are_never_reused,
    layers_list_newest_live_version_by_name,
    layer_versions_are_marked_deleted_or_forgotten,
    referenced_layers_keep_deleted_not_forgotten,
    concurrent_layer_publishes_get_distinct_numbers,
    images_have_unique_names,
);
