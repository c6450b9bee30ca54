//! `stoke tune` runs.

use stoke_store::{Store, TuneRecord};

use crate::fixtures::{account, expect_not_found, fname, function, tune};

/// A tune reads back whole, is replaced by its id, and is found only through its account.
pub fn tunes_read_back_and_are_replaced_by_id(s: &dyn Store) {
    let (a, b) = (account(s, 801), account(s, 802));
    s.insert_function(&function(&a, "f")).unwrap();
    let running = tune(&a, "f", "t1", 1);
    s.put_tune(&running).unwrap();
    assert_eq!(s.get_tune(&a, "t1").unwrap(), Some(running.clone()));
    let done = TuneRecord {
        state: "succeeded".into(),
        result: Some("{\"best\":256}".into()),
        finished_ms: Some(5),
        ..running.clone()
    };
    s.put_tune(&done).unwrap();
    assert_eq!(s.get_tune(&a, "t1").unwrap(), Some(done.clone()), "replaced by id");
    assert_eq!(s.latest_tune(&a, &fname("f")).unwrap(), Some(done), "one tune, not two");
    assert_eq!(s.get_tune(&b, "t1").unwrap(), None, "another account's tune is not found");
    assert_eq!(s.get_tune(&a, "nope").unwrap(), None);
}

/// A tune needs its function: one of a function the account does not have is `NotFound` and not written.
pub fn a_tune_needs_its_function(s: &dyn Store) {
    let (a, b) = (account(s, 811), account(s, 812));
    s.insert_function(&function(&b, "f")).unwrap();
    expect_not_found(s.put_tune(&tune(&a, "f", "t1", 1)));
    assert_eq!(s.get_tune(&a, "t1").unwrap(), None);
    assert_eq!(s.latest_tune(&a, &fname("f")).unwrap(), None);
    assert_eq!(s.fail_running_tunes("restarted", 2).unwrap(), 0, "the refused tune was not written");
}

/// `latest_tune`: the function's tune created last, ties by the higher id; other functions' and other
/// accounts' tunes do not count.
pub fn the_latest_tune_is_the_newest_of_that_function(s: &dyn Store) {
    let (a, b) = (account(s, 821), account(s, 822));
    for (acct, name) in [(&a, "f"), (&a, "g"), (&b, "f")] {
        s.insert_function(&function(acct, name)).unwrap();
    }
    assert_eq!(s.latest_tune(&a, &fname("f")).unwrap(), None);
    for (id, at) in [("t1", 5), ("t3", 5), ("t2", 4), ("t0", 1)] {
        s.put_tune(&tune(&a, "f", id, at)).unwrap();
    }
    s.put_tune(&tune(&a, "g", "t9", 9)).unwrap();
    s.put_tune(&tune(&b, "f", "t8", 8)).unwrap();
    assert_eq!(s.latest_tune(&a, &fname("f")).unwrap(), Some(tune(&a, "f", "t3", 5)), "newest, then the higher id");
    assert_eq!(s.latest_tune(&a, &fname("g")).unwrap(), Some(tune(&a, "g", "t9", 9)));
    assert_eq!(s.latest_tune(&b, &fname("f")).unwrap(), Some(tune(&b, "f", "t8", 8)));
    assert_eq!(s.latest_tune(&b, &fname("g")).unwrap(), None);
}

/// A starting server fails every account's running tunes with its error and time, and says how many;
/// finished tunes are untouched.
pub fn fail_running_tunes_marks_only_running_ones(s: &dyn Store) {
    let (a, b) = (account(s, 831), account(s, 832));
    s.insert_function(&function(&a, "f")).unwrap();
    s.insert_function(&function(&b, "g")).unwrap();
    assert_eq!(s.fail_running_tunes("restarted", 1).unwrap(), 0, "none yet");
    s.put_tune(&tune(&a, "f", "r1", 1)).unwrap();
    s.put_tune(&tune(&b, "g", "r2", 2)).unwrap();
    let ok = TuneRecord {
        state: "succeeded".into(),
        result: Some("{}".into()),
        finished_ms: Some(4),
        ..tune(&a, "f", "ok", 3)
    };
    s.put_tune(&ok).unwrap();
    let failed = TuneRecord {
        state: "failed".into(),
        error: Some("earlier".into()),
        finished_ms: Some(4),
        ..tune(&a, "f", "bad", 3)
    };
    s.put_tune(&failed).unwrap();

    assert_eq!(s.fail_running_tunes("the server restarted", 9).unwrap(), 2);
    for (acct, id, function, at) in [(&a, "r1", "f", 1), (&b, "r2", "g", 2)] {
        let expected = TuneRecord {
            state: "failed".into(),
            error: Some("the server restarted".into()),
            finished_ms: Some(9),
            ..tune(acct, function, id, at)
        };
        assert_eq!(s.get_tune(acct, id).unwrap(), Some(expected));
    }
    assert_eq!(s.get_tune(&a, "ok").unwrap(), Some(ok), "a finished tune is untouched");
    assert_eq!(s.get_tune(&a, "bad").unwrap(), Some(failed));
    assert_eq!(s.fail_running_tunes("again", 10).unwrap(), 0, "nothing is running any more");
}

contract!(
    tunes_read_back_and_are_replaced_by_id,
    a_tune_needs_its_function,
    the_latest_tune_is_the_newest_of_that_function,
    fail_running_tunes_marks_only_running_ones,
);
