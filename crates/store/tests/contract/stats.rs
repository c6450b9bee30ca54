//! Learned statistics.

use stoke_store::Store;

use crate::fixtures::stat;

/// Statistics are replaced by (kind, key), a batch is written whole, and they read back ordered by kind,
/// then key.
pub fn stats_are_replaced_by_kind_and_key(s: &dyn Store) {
    assert!(s.all_stats().unwrap().is_empty(), "a new store has none");
    s.put_stats(&[]).unwrap();
    assert!(s.all_stats().unwrap().is_empty(), "an empty batch writes nothing");
    s.put_stats(&[
        stat("function", "a/f/$LATEST", "[1]", 1),
        stat("choice", "a/w/C", "{}", 1),
        stat("function", "a/f/1", "[9]", 1),
        stat("choice", "a/f/$LATEST", "{\"same key\":\"other kind\"}", 1),
    ])
    .unwrap();
    s.put_stats(&[stat("function", "a/f/$LATEST", "[1,2]", 2), stat("init", "b", "{}", 3), stat("init", "a", "{}", 3)])
        .unwrap();
    assert_eq!(
        s.all_stats().unwrap(),
        [
            stat("choice", "a/f/$LATEST", "{\"same key\":\"other kind\"}", 1),
            stat("choice", "a/w/C", "{}", 1),
            stat("function", "a/f/$LATEST", "[1,2]", 2),
            stat("function", "a/f/1", "[9]", 1),
            stat("init", "a", "{}", 3),
            stat("init", "b", "{}", 3),
        ]
    );
}

/// Within one batch, a later record of the same (kind, key) wins.
pub fn a_batch_writes_its_last_record_of_a_key(s: &dyn Store) {
    s.put_stats(&[stat("k", "x", "first", 1), stat("k", "x", "second", 2)]).unwrap();
    assert_eq!(s.all_stats().unwrap(), [stat("k", "x", "second", 2)]);
}

contract!(stats_are_replaced_by_kind_and_key, a_batch_writes_its_last_record_of_a_key);
