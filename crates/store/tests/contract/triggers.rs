//! HTTP triggers: function URLs and gateway routes.

use stoke_core::gateway::{Cors, TriggerAuth};
use stoke_store::Store;

use crate::fixtures::{account, expect_conflict, expect_not_found, fname, function, race, route_trigger, url_trigger};

/// Triggers read back whole, found by id from any account, listed oldest first (`created_ms`, then id),
/// per account or all.
pub fn triggers_read_back_and_list_oldest_first(s: &dyn Store) {
    let (a, b) = (account(s, 501), account(s, 502));
    s.insert_function(&function(&a, "f")).unwrap();
    s.insert_function(&function(&b, "f")).unwrap();
    let mut late = route_trigger(&a, "a-late", "f", "POST /items", "POST /items");
    late.created_ms = 30;
    let mut early = url_trigger(&a, "z-early", "f");
    early.created_ms = 10;
    let mut tie = url_trigger(&a, "m-tie", "f");
    (tie.created_ms, tie.qualifier, tie.cors, tie.auth) = (30, None, None, TriggerAuth::Key);
    let mut theirs = route_trigger(&b, "b-mid", "f", "GET /x", "GET /x");
    theirs.created_ms = 20;
    for t in [&late, &early, &tie, &theirs] {
        s.insert_trigger(t).unwrap();
    }
    assert_eq!(s.get_trigger("z-early").unwrap(), Some(early.clone()), "a URL reads back whole");
    assert_eq!(s.get_trigger("a-late").unwrap(), Some(late.clone()), "a route keeps its key and shape");
    assert_eq!(s.get_trigger("b-mid").unwrap(), Some(theirs.clone()), "found by id whatever the account");
    assert_eq!(s.get_trigger("nope").unwrap(), None);
    assert_eq!(s.list_triggers(Some(&a)).unwrap(), [early.clone(), late.clone(), tie.clone()]);
    assert_eq!(s.list_triggers(Some(&b)).unwrap(), [theirs.clone()]);
    assert_eq!(s.list_triggers(None).unwrap(), [early, theirs, late, tie]);
    assert!(s.list_triggers(Some(&account(s, 503))).unwrap().is_empty());
}

/// A trigger must point at an existing function of its account (`NotFound` otherwise); a route's shape is
/// unique per account (`Conflict`), URLs have none, and ids are unique (`Conflict`).
pub fn triggers_need_their_function_and_a_free_shape(s: &dyn Store) {
    let (a, b) = (account(s, 511), account(s, 512));
    s.insert_function(&function(&b, "f")).unwrap();
    expect_not_found(s.insert_trigger(&url_trigger(&a, "u0", "f")));
    expect_not_found(s.insert_trigger(&route_trigger(&a, "r0", "f", "GET /p", "GET /p")));
    assert!(s.list_triggers(None).unwrap().is_empty(), "a refused trigger writes nothing");
    s.insert_function(&function(&a, "f")).unwrap();
    s.insert_function(&function(&a, "g")).unwrap();

    s.insert_trigger(&url_trigger(&a, "u1", "f")).unwrap();
    s.insert_trigger(&url_trigger(&a, "u2", "f")).unwrap();
    s.insert_trigger(&route_trigger(&a, "r1", "f", "GET /p/{id}", "GET /p/{}")).unwrap();
    expect_conflict(s.insert_trigger(&route_trigger(&a, "r2", "g", "GET /p/{name}", "GET /p/{}")));
    s.insert_trigger(&route_trigger(&a, "r3", "g", "POST /p/{name}", "POST /p/{}")).unwrap();
    s.insert_trigger(&route_trigger(&b, "r4", "f", "GET /p/{id}", "GET /p/{}")).unwrap();
    expect_conflict(s.insert_trigger(&url_trigger(&a, "u1", "g")));
    expect_conflict(s.insert_trigger(&route_trigger(&b, "r1", "f", "PUT /q", "PUT /q")));
    assert_eq!(s.get_trigger("u1").unwrap(), Some(url_trigger(&a, "u1", "f")), "the refused insert wrote nothing");
    assert_eq!(s.get_trigger("r2").unwrap(), None);
    let ids: Vec<String> = s.list_triggers(None).unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, ["r1", "r3", "r4", "u1", "u2"]);

    assert!(s.delete_trigger(&a, "r1").unwrap());
    s.insert_trigger(&route_trigger(&a, "r2", "g", "GET /p/{name}", "GET /p/{}")).unwrap();
    assert_eq!(s.get_trigger("r2").unwrap().unwrap().function, fname("g"), "a deleted route's shape is free");
}

/// `update_trigger` replaces auth and CORS of the account's own trigger and nothing else; another
/// account's or a missing trigger is `NotFound`.
pub fn updates_change_only_auth_and_cors(s: &dyn Store) {
    let (a, b) = (account(s, 521), account(s, 522));
    s.insert_function(&function(&a, "f")).unwrap();
    s.insert_function(&function(&a, "g")).unwrap();
    let url = url_trigger(&a, "u1", "f");
    s.insert_trigger(&url).unwrap();

    let mut changed = url.clone();
    changed.auth = TriggerAuth::Key;
    changed.cors = Some(Cors { allow_methods: vec!["GET".into()], allow_credentials: true, ..Default::default() });
    (changed.qualifier, changed.created_ms, changed.function) = (None, 1_000, fname("g"));
    s.update_trigger(&changed).unwrap();
    let mut expected = url.clone();
    (expected.auth, expected.cors) = (changed.auth, changed.cors.clone());
    assert_eq!(s.get_trigger("u1").unwrap(), Some(expected.clone()));

    changed.cors = None;
    s.update_trigger(&changed).unwrap();
    expected.cors = None;
    assert_eq!(s.get_trigger("u1").unwrap(), Some(expected.clone()), "CORS can be removed");

    let mut foreign = expected.clone();
    (foreign.account, foreign.auth) = (b, TriggerAuth::None);
    expect_not_found(s.update_trigger(&foreign));
    expect_not_found(s.update_trigger(&url_trigger(&a, "nope", "f")));
    assert_eq!(s.get_trigger("u1").unwrap(), Some(expected), "refused updates wrote nothing");
    assert_eq!(s.get_trigger("nope").unwrap(), None, "an update does not create");
}

/// Only the owning account deletes a trigger; a second delete is false.
pub fn triggers_are_deleted_by_their_account_once(s: &dyn Store) {
    let (a, b) = (account(s, 531), account(s, 532));
    s.insert_function(&function(&a, "f")).unwrap();
    s.insert_trigger(&url_trigger(&a, "u1", "f")).unwrap();
    s.insert_trigger(&url_trigger(&a, "u2", "f")).unwrap();
    assert!(!s.delete_trigger(&b, "u1").unwrap(), "only the owning account deletes");
    assert!(s.get_trigger("u1").unwrap().is_some());
    assert!(s.delete_trigger(&a, "u1").unwrap());
    assert!(!s.delete_trigger(&a, "u1").unwrap(), "already gone");
    assert!(!s.delete_trigger(&a, "nope").unwrap());
    assert_eq!(s.get_trigger("u1").unwrap(), None);
    assert_eq!(s.list_triggers(Some(&a)).unwrap(), [url_trigger(&a, "u2", "f")]);
}

/// Racing inserts of routes of one shape: exactly one is stored, the others are `Conflict`.
pub fn concurrent_routes_of_one_shape_have_one_winner(s: &dyn Store) {
    const THREADS: usize = 8;
    let a = account(s, 541);
    s.insert_function(&function(&a, "f")).unwrap();
    let route = |i: usize| route_trigger(&a, &format!("r{i}"), "f", &format!("GET /p/{{v{i}}}"), "GET /p/{}");
    let results = race(THREADS, |i| s.insert_trigger(&route(i)));
    let winners: Vec<usize> = (0..THREADS).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.into_iter().filter(Result::is_err) {
        expect_conflict(r);
    }
    assert_eq!(s.list_triggers(Some(&a)).unwrap(), [route(winners[0])]);
}

contract!(
    triggers_read_back_and_list_oldest_first,
    triggers_need_their_function_and_a_free_shape,
    updates_change_only_auth_and_cors,
    triggers_are_deleted_by_their_account_once,
    concurrent_routes_of_one_shape_have_one_winner,
);
