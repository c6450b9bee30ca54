//! Functions, their published versions and their aliases.

use stoke_core::{AccountId, LifecycleState};
use stoke_store::{CodeRef, FunctionRecord, Store, StoreError, LATEST_DIR};

use crate::fixtures::{
    account, alias, event, execution, expect_conflict, expect_not_found, expect_revision_mismatch, fname, function,
    layer, ms, publish, race, route_trigger, row, tune, url_trigger, version, workflow,
};

/// Every field of a function reads back as written, by insert and by update.
pub fn functions_round_trip_every_field(s: &dyn Store) {
    let a = account(s, 201);
    let mut f = function_with_everything(&a);
    s.insert_function(&f).unwrap();
    assert_eq!(s.get_function(&a, &f.name).unwrap(), Some(f.clone()));
    assert_eq!(s.get_function(&a, &fname("nope")).unwrap(), None);

    let read = f.revision;
    f.code = Some(CodeRef { sha256: "cd".into(), size: u64::from(u32::MAX) + 7 });
    (f.state, f.revision, f.latest_published, f.last_version, f.modified_ms) =
        (LifecycleState::Blocked, read + 1, None, 9, 99);
    f.config.environment.clear();
    f.config.description = "changed".into();
    s.update_function(&f, read).unwrap();
    assert_eq!(s.get_function(&a, &f.name).unwrap(), Some(f));
}

fn function_with_everything(a: &AccountId) -> FunctionRecord {
    let mut f = function(a, "every-field_1");
    (f.state, f.code, f.latest_published, f.last_version) = (LifecycleState::Updating, None, Some(3), 4);
    f.config.memory_mb = 512;
    f.config.environment.insert("K".into(), "v".into());
    f.config.layers = vec!["np:2".into()];
    f.config.description = "all of it".into();
    (f.revision, f.created_ms, f.modified_ms) = (7, 11, 12);
    f
}

/// A name is taken once per account: a second insert is a `Conflict` and leaves the first as it was.
pub fn duplicate_functions_conflict_per_account(s: &dyn Store) {
    let (a, b) = (account(s, 211), account(s, 212));
    let f = function(&a, "f");
    s.insert_function(&f).unwrap();
    let mut again = f.clone();
    again.config.memory_mb = 1024;
    expect_conflict(s.insert_function(&again));
    assert_eq!(s.get_function(&a, &f.name).unwrap(), Some(f.clone()), "the refused insert changed nothing");

    assert_eq!(s.get_function(&b, &f.name).unwrap(), None, "another account's function is not found");
    assert!(!s.delete_function(&b, &f.name).unwrap(), "another account's function is not deleted");
    let theirs = function(&b, "f");
    s.insert_function(&theirs).unwrap();
    assert_eq!(s.list_functions(&a, None, 10).unwrap(), [f]);
    assert_eq!(s.list_functions(&b, None, 10).unwrap(), [theirs]);
}

/// `update_function` needs the revision read: stale is `RevisionMismatch`, missing is `NotFound`, and a
/// refused update writes nothing. An update keeps the stored `created_ms` (SQLite does).
pub fn updates_check_the_revision(s: &dyn Store) {
    let a = account(s, 221);
    let mut f = function(&a, "f");
    s.insert_function(&f).unwrap();
    f.revision = 2;
    f.config.memory_mb = 256;
    s.update_function(&f, 1).unwrap();

    let mut stale = f.clone();
    (stale.revision, stale.config.memory_mb) = (3, 999);
    expect_revision_mismatch(s.update_function(&stale, 1));
    let missing = function(&a, "nope");
    expect_not_found(s.update_function(&missing, 1));
    assert_eq!(s.get_function(&a, &missing.name).unwrap(), None, "an update does not create");
    assert_eq!(s.get_function(&a, &f.name).unwrap(), Some(f.clone()), "the refused update wrote nothing");

    let mut moved = f.clone();
    (moved.revision, moved.created_ms, moved.modified_ms) = (3, 1_000, 2_000);
    s.update_function(&moved, 2).unwrap();
    let stored = s.get_function(&a, &f.name).unwrap().unwrap();
    assert_eq!(
        (stored.revision, stored.created_ms, stored.modified_ms),
        (3, f.created_ms, 2_000),
        "created_ms is kept, modified_ms is written"
    );
}

/// Functions list by name in byte order (`-` < digits < upper case < `_` < lower case), each page starting
/// strictly after `after` (which need not be an existing name), at most `limit` long.
pub fn list_functions_pages_by_name(s: &dyn Store) {
    let (a, b) = (account(s, 231), account(s, 232));
    let names = ["b", "a_b", "B", "a", "a-b", "a1", "Z9", "zz", "0"];
    for n in names {
        s.insert_function(&function(&a, n)).unwrap();
    }
    s.insert_function(&function(&b, "aa")).unwrap();
    let mut sorted: Vec<String> = names.iter().map(ToString::to_string).collect();
    sorted.sort();
    assert_eq!(sorted, ["0", "B", "Z9", "a", "a-b", "a1", "a_b", "b", "zz"], "byte order");

    let page = |after: Option<&str>, limit| -> Vec<String> {
        s.list_functions(&a, after, limit).unwrap().into_iter().map(|f| f.name.to_string()).collect()
    };
    assert_eq!(page(None, 100), sorted);
    assert_eq!(page(None, 2), ["0", "B"]);
    assert_eq!(page(Some("B"), 3), ["Z9", "a", "a-b"], "strictly after the cursor");
    assert_eq!(page(Some("a0"), 2), ["a1", "a_b"], "a cursor that is no function's name");
    assert_eq!(page(Some("zz"), 10), Vec::<String>::new());
    assert_eq!(page(Some("~"), 10), Vec::<String>::new(), "a cursor past every name");

    let mut walked = vec![];
    let mut after: Option<String> = None;
    loop {
        let got = page(after.as_deref(), 2);
        if got.is_empty() {
            break;
        }
        assert!(walked.len() <= names.len(), "paging does not end: {walked:?}");
        after = got.last().cloned();
        walked.extend(got);
    }
    assert_eq!(walked, sorted, "paging walks every function once, in order");
    let full = s.list_functions(&a, None, 100).unwrap();
    assert!(full.iter().all(|f| f.account == a), "only the account's own functions");
    assert_eq!(full[0], function(&a, "0"), "listed records are whole");
}

/// `functions_in_state` finds functions in one lifecycle state across every account.
pub fn functions_are_found_by_state_across_accounts(s: &dyn Store) {
    let (a, b) = (account(s, 241), account(s, 242));
    let in_state = |account, name: &str, state| {
        let mut f = function(account, name);
        f.state = state;
        s.insert_function(&f).unwrap();
        f
    };
    let old = in_state(&a, "old", LifecycleState::Retired);
    in_state(&a, "new", LifecycleState::Latest);
    let gone = in_state(&b, "gone", LifecycleState::Retired);
    in_state(&b, "busy", LifecycleState::Updating);

    let mut retired = s.functions_in_state(LifecycleState::Retired).unwrap();
    retired.sort_by(|x, y| (&x.account, &x.name).cmp(&(&y.account, &y.name)));
    assert_eq!(retired, [old, gone]);
    assert_eq!(s.functions_in_state(LifecycleState::Updating).unwrap().len(), 1);
    assert!(s.functions_in_state(LifecycleState::Blocked).unwrap().is_empty());

    // A state change moves a function between the answers.
    let mut busy = s.get_function(&b, &fname("busy")).unwrap().unwrap();
    (busy.state, busy.revision) = (LifecycleState::Blocked, 2);
    s.update_function(&busy, 1).unwrap();
    assert!(s.functions_in_state(LifecycleState::Updating).unwrap().is_empty());
    assert_eq!(s.functions_in_state(LifecycleState::Blocked).unwrap(), [busy]);
}

/// Create-with-publish writes the function and its first version, or neither.
pub fn insert_published_function_writes_both_or_neither(s: &dyn Store) {
    let a = account(s, 251);
    let mut f = function(&a, "f");
    (f.last_version, f.latest_published, f.state) = (1, Some(1), LifecycleState::Published);
    s.insert_published_function(&f, &version(&f, 1)).unwrap();
    assert_eq!(s.get_function(&a, &f.name).unwrap(), Some(f.clone()));
    assert_eq!(s.get_version(&a, &f.name, 1).unwrap(), Some(version(&f, 1)));

    let mut again = f.clone();
    again.config.memory_mb = 2048;
    let mut other_v1 = version(&again, 1);
    other_v1.description = "not this one".into();
    expect_conflict(s.insert_published_function(&again, &other_v1));
    assert_eq!(s.get_function(&a, &f.name).unwrap(), Some(f.clone()), "the taken name is unchanged");
    assert_eq!(s.get_version(&a, &f.name, 1).unwrap(), Some(version(&f, 1)), "its version too");

    // The version cannot be written (it belongs to a function that does not exist; SQLite: Conflict):
    // the function is not created either.
    let g = function(&a, "g");
    let refused = s.insert_published_function(&g, &version(&function(&a, "elsewhere"), 1));
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(s.get_function(&a, &g.name).unwrap(), None, "a refused create leaves nothing behind");
    assert_eq!(s.get_version(&a, &fname("elsewhere"), 1).unwrap(), None);
}

/// Publishing moves the function and adds a version together; a stale revision (`RevisionMismatch`), a
/// taken number (`Conflict`) or a missing function (`NotFound`) writes neither.
pub fn publish_moves_the_function_and_adds_a_version(s: &dyn Store) {
    let a = account(s, 261);
    let mut f = function(&a, "f");
    s.insert_function(&f).unwrap();
    for n in 1..=3 {
        f = publish(s, &f);
        assert_eq!(f.last_version, n);
    }
    assert_eq!(s.get_function(&a, &f.name).unwrap(), Some(f.clone()), "the function moved with each publish");
    for n in 1..=3 {
        assert_eq!(s.get_version(&a, &f.name, n).unwrap(), Some(version(&f, n)), "every field of version {n}");
    }

    let mut next = f.clone();
    (next.revision, next.last_version) = (f.revision + 1, 4);
    expect_revision_mismatch(s.publish_version(&next, f.revision - 1, &version(&next, 4)));
    assert_eq!(s.get_version(&a, &f.name, 4).unwrap(), None, "a stale publish adds no version");
    expect_conflict(s.publish_version(&next, f.revision, &version(&next, 3)));
    assert_eq!(s.get_function(&a, &f.name).unwrap(), Some(f.clone()), "a refused publish changes nothing");
    assert_eq!(s.get_version(&a, &f.name, 3).unwrap(), Some(version(&f, 3)), "nor the version it clashed with");
    let missing = function(&a, "nope");
    expect_not_found(s.publish_version(&missing, 1, &version(&missing, 1)));
    assert_eq!(s.get_version(&a, &missing.name, 1).unwrap(), None);
    assert_eq!(s.get_function(&a, &missing.name).unwrap(), None);
}

/// Deleting a version removes it and writes the function in one step, at the revision read; never while
/// an alias routes to it (primary or additional version); a version that is not there is `false`.
pub fn delete_version_guards_its_aliases_and_the_revision(s: &dyn Store) {
    let a = account(s, 263);
    let mut f = function(&a, "f");
    s.insert_function(&f).unwrap();
    for _ in 1..=3 {
        f = publish(s, &f);
    }
    s.put_alias(&alias(&f, "live", "1"), None).unwrap();
    let mut canary = alias(&f, "canary", "3");
    canary.routing.additional_version = Some("2".into());
    canary.routing.additional_weight = Some(0.1);
    s.put_alias(&canary, None).unwrap();
    let mut next = f.clone();
    next.revision += 1;
    for routed in [1, 2, 3] {
        let refused = s.delete_version(&next, f.revision, routed);
        assert!(matches!(&refused, Err(StoreError::InUse(why)) if why.contains("cannot be deleted")), "{refused:?}");
        assert!(s.get_version(&a, &f.name, routed).unwrap().is_some(), "version {routed} stays");
    }
    assert_eq!(s.get_function(&a, &f.name).unwrap(), Some(f.clone()), "a refused delete writes nothing");
    s.delete_alias(&a, &f.name, "canary").unwrap();
    expect_revision_mismatch(s.delete_version(&next, f.revision - 1, 3));
    assert!(s.get_version(&a, &f.name, 3).unwrap().is_some(), "a stale delete removes nothing");
    assert!(s.delete_version(&next, f.revision, 3).unwrap());
    assert_eq!(s.get_version(&a, &f.name, 3).unwrap(), None);
    assert_eq!(s.get_function(&a, &f.name).unwrap(), Some(next.clone()), "the function moved with the delete");
    let numbers: Vec<u64> = s.list_versions(&a, &f.name, None, 10).unwrap().iter().map(|v| v.version).collect();
    assert_eq!(numbers, [1, 2]);
    let mut after = next.clone();
    after.revision += 1;
    assert!(!s.delete_version(&after, next.revision, 3).unwrap(), "version 3 is gone already");
    assert!(!s.delete_version(&after, next.revision, 9).unwrap(), "there never was a version 9");
    expect_not_found(s.delete_version(&function(&a, "nope"), 1, 1));
}

/// A function's event invoke configs: one per qualifier, replaced by a put, listed by qualifier, deleted
/// one by one or with the function; none for a function that does not exist.
pub fn event_configs_live_and_die_with_their_function(s: &dyn Store) {
    let a = account(s, 264);
    let f = function(&a, "f");
    s.insert_function(&f).unwrap();
    let config = |q: &str, retries: Option<u32>, age: Option<u32>| stoke_store::EventConfigRecord {
        account: a.clone(),
        function: f.name.clone(),
        qualifier: q.into(),
        max_retries: retries,
        max_age_s: age,
        on_success: None,
        on_failure: retries.map(|_| format!("arn:aws:states:us-east-1:{a}:stateMachine:dlq")),
        modified_ms: 7,
    };
    s.put_event_config(&config("$LATEST", Some(0), None)).unwrap();
    s.put_event_config(&config("prod", None, Some(60))).unwrap();
    assert_eq!(s.get_event_config(&a, &f.name, "$LATEST").unwrap(), Some(config("$LATEST", Some(0), None)));
    s.put_event_config(&config("$LATEST", Some(1), Some(3600))).unwrap();
    assert_eq!(s.get_event_config(&a, &f.name, "$LATEST").unwrap(), Some(config("$LATEST", Some(1), Some(3600))));
    let qualifiers: Vec<String> = s.list_event_configs(&a, &f.name).unwrap().into_iter().map(|c| c.qualifier).collect();
    assert_eq!(qualifiers, ["$LATEST", "prod"]);
    assert!(s.delete_event_config(&a, &f.name, "prod").unwrap());
    assert!(!s.delete_event_config(&a, &f.name, "prod").unwrap());
    assert_eq!(s.get_event_config(&a, &f.name, "prod").unwrap(), None);
    let missing = stoke_store::EventConfigRecord { function: fname("nope"), ..config("$LATEST", None, None) };
    expect_not_found(s.put_event_config(&missing));
    assert!(s.delete_function(&a, &f.name).unwrap());
    s.insert_function(&f).unwrap();
    assert!(s.list_event_configs(&a, &f.name).unwrap().is_empty(), "they went with the function");
}

/// Versions list in ascending number, each page strictly after `after`, at most `limit` long.
pub fn list_versions_pages_by_number(s: &dyn Store) {
    let (a, b) = (account(s, 271), account(s, 272));
    let mut f = function(&a, "f");
    s.insert_function(&f).unwrap();
    for _ in 0..12 {
        f = publish(s, &f);
    }
    let mut g = function(&a, "g");
    s.insert_function(&g).unwrap();
    g = publish(s, &g);
    s.insert_function(&function(&b, "f")).unwrap();

    let numbers = |after, limit| -> Vec<u64> {
        s.list_versions(&a, &f.name, after, limit).unwrap().into_iter().map(|v| v.version).collect()
    };
    assert_eq!(numbers(None, 100), (1..=12).collect::<Vec<_>>(), "numeric, not text, order (2 before 10)");
    assert_eq!(numbers(None, 2), [1, 2]);
    assert_eq!(numbers(Some(2), 3), [3, 4, 5]);
    assert_eq!(numbers(Some(9), 10), [10, 11, 12]);
    assert!(numbers(Some(12), 10).is_empty());
    assert!(numbers(Some(u64::MAX), 10).is_empty(), "a cursor past every version is an empty page");
    assert_eq!(s.list_versions(&a, &f.name, None, 1).unwrap(), [version(&f, 1)], "listed records are whole");
    assert_eq!(s.list_versions(&a, &g.name, None, 10).unwrap(), [version(&g, 1)], "only the function's own");
    assert!(s.list_versions(&b, &f.name, None, 10).unwrap().is_empty(), "only the account's own");
    assert!(s.list_versions(&a, &fname("nope"), None, 10).unwrap().is_empty());
    assert_eq!(s.get_version(&a, &f.name, 13).unwrap(), None);
    assert_eq!(s.get_version(&b, &f.name, 1).unwrap(), None);
}

/// Aliases: created with `None` (`Conflict` if taken), replaced with the revision read (`RevisionMismatch`
/// if stale, and also when the alias does not exist), listed by name per function, deleted once.
pub fn aliases_create_replace_list_delete(s: &dyn Store) {
    let a = account(s, 281);
    let f = function(&a, "f");
    let g = function(&a, "g");
    s.insert_function(&f).unwrap();
    s.insert_function(&g).unwrap();

    let mut canary = alias(&f, "canary", "1");
    canary.routing.additional_version = Some("2".into());
    canary.routing.additional_weight = Some(0.25);
    s.put_alias(&canary, None).unwrap();
    s.put_alias(&alias(&f, "beta", "$LATEST"), None).unwrap();
    s.put_alias(&alias(&f, "Zed", "1"), None).unwrap();
    s.put_alias(&alias(&g, "canary", "3"), None).unwrap();
    assert_eq!(s.get_alias(&a, &f.name, "canary").unwrap(), Some(canary.clone()), "every field reads back");
    assert_eq!(s.get_alias(&a, &f.name, "nope").unwrap(), None);
    let names = |function| -> Vec<String> {
        s.list_aliases(&a, function).unwrap().into_iter().map(|x| x.name.to_string()).collect()
    };
    assert_eq!(names(&f.name), ["Zed", "beta", "canary"], "by name, byte order");
    assert_eq!(s.list_aliases(&a, &g.name).unwrap(), [alias(&g, "canary", "3")], "only the function's own");

    let mut taken = alias(&f, "canary", "7");
    taken.description = "again".into();
    expect_conflict(s.put_alias(&taken, None));
    assert_eq!(s.get_alias(&a, &f.name, "canary").unwrap(), Some(canary.clone()), "the refused create wrote nothing");

    let mut moved = canary.clone();
    (moved.revision, moved.routing.version, moved.routing.additional_version, moved.routing.additional_weight) =
        (2, "2".into(), None, None);
    (moved.description, moved.modified_ms, moved.created_ms) = ("moved".into(), 50, 999);
    s.put_alias(&moved, Some(1)).unwrap();
    let stored = s.get_alias(&a, &f.name, "canary").unwrap().unwrap();
    let mut expected = moved.clone();
    expected.created_ms = canary.created_ms;
    assert_eq!(stored, expected, "an update keeps created_ms");

    let mut stale = moved.clone();
    stale.revision = 3;
    expect_revision_mismatch(s.put_alias(&stale, Some(1)));
    let missing = alias(&f, "nope", "1");
    expect_revision_mismatch(s.put_alias(&missing, Some(1)));
    assert_eq!(s.get_alias(&a, &f.name, "nope").unwrap(), None, "a replace does not create");
    assert_eq!(s.get_alias(&a, &f.name, "canary").unwrap().unwrap().revision, 2);

    assert!(s.delete_alias(&a, &f.name, "canary").unwrap());
    assert!(!s.delete_alias(&a, &f.name, "canary").unwrap(), "already gone");
    assert!(!s.delete_alias(&a, &f.name, "nope").unwrap());
    assert_eq!(s.get_alias(&a, &f.name, "canary").unwrap(), None);
    assert_eq!(names(&f.name), ["Zed", "beta"]);
    assert_eq!(names(&g.name), ["canary"], "the other function's alias of the same name stays");
    s.put_alias(&alias(&f, "canary", "1"), None).unwrap();
    assert_eq!(s.get_alias(&a, &f.name, "canary").unwrap(), Some(alias(&f, "canary", "1")), "a deleted name is free");
}

/// Deleting a function takes its versions, aliases, triggers and tunes along (SQLite cascades exactly
/// these), and nothing else: not other functions' records, not events, layers, workflows or executions. A
/// new function of the same name starts bare.
pub fn delete_function_takes_its_records_along(s: &dyn Store) {
    let (a, b) = (account(s, 291), account(s, 292));
    let mut f = function(&a, "f");
    s.insert_function(&f).unwrap();
    f = publish(s, &f);
    f = publish(s, &f);
    s.put_alias(&alias(&f, "prod", "1"), None).unwrap();
    s.insert_trigger(&url_trigger(&a, "f-url", "f")).unwrap();
    s.insert_trigger(&route_trigger(&a, "f-route", "f", "GET /p/{id}", "GET /p/{}")).unwrap();
    s.put_tune(&tune(&a, "f", "f-tune", 3)).unwrap();

    // Neighbours: another function of the account, the same name in another account, and records that
    // name the function without belonging to it.
    let mut g = function(&a, "g");
    s.insert_function(&g).unwrap();
    g = publish(s, &g);
    s.put_alias(&alias(&g, "prod", "1"), None).unwrap();
    s.insert_trigger(&url_trigger(&a, "g-url", "g")).unwrap();
    s.put_tune(&tune(&a, "g", "g-tune", 3)).unwrap();
    let mut theirs = function(&b, "f");
    s.insert_function(&theirs).unwrap();
    theirs = publish(s, &theirs);
    s.put_alias(&alias(&theirs, "prod", "1"), None).unwrap();
    s.insert_trigger(&url_trigger(&b, "b-url", "f")).unwrap();
    s.put_tune(&tune(&b, "f", "b-tune", 3)).unwrap();
    let queued = event(&a, "ev", 10);
    s.enqueue_event(&queued).unwrap();
    assert_eq!(s.insert_layer_version(&layer(&a, "f", "layer-sha")).unwrap(), 1);
    s.put_workflow(&workflow(&a, "f"), None).unwrap();
    s.insert_execution(&execution(&a, "f", "ex", 1), &[row(1)]).unwrap();

    assert!(s.delete_function(&a, &f.name).unwrap());
    assert!(!s.delete_function(&a, &f.name).unwrap(), "already gone");
    assert_eq!(s.get_function(&a, &f.name).unwrap(), None);
    assert!(s.list_functions(&a, None, 10).unwrap().iter().all(|x| x.name != f.name));
    assert_eq!(s.get_version(&a, &f.name, 1).unwrap(), None);
    assert!(s.list_versions(&a, &f.name, None, 10).unwrap().is_empty(), "versions go");
    assert_eq!(s.get_alias(&a, &f.name, "prod").unwrap(), None);
    assert!(s.list_aliases(&a, &f.name).unwrap().is_empty(), "aliases go");
    assert_eq!(s.get_trigger("f-url").unwrap(), None, "triggers go");
    assert_eq!(s.get_trigger("f-route").unwrap(), None);
    assert_eq!(s.get_tune(&a, "f-tune").unwrap(), None, "tunes go");
    assert_eq!(s.latest_tune(&a, &f.name).unwrap(), None);
    let mut archives: Vec<_> = s
        .referenced_archives()
        .unwrap()
        .into_iter()
        .map(|(acct, func, dir, _)| (acct, func.to_string(), dir))
        .collect();
    archives.sort();
    let expected = |acct: &AccountId, func: &str, dir: &str| (acct.clone(), func.to_string(), dir.to_string());
    assert_eq!(
        archives,
        [expected(&a, "g", "1"), expected(&a, "g", LATEST_DIR), expected(&b, "f", "1"), expected(&b, "f", LATEST_DIR)],
        "nothing points at the deleted function's archives"
    );

    // The neighbours are untouched.
    assert_eq!(s.get_function(&a, &g.name).unwrap(), Some(g.clone()));
    assert_eq!(s.list_versions(&a, &g.name, None, 10).unwrap(), [version(&g, 1)]);
    assert_eq!(s.list_aliases(&a, &g.name).unwrap(), [alias(&g, "prod", "1")]);
    assert_eq!(s.get_function(&b, &f.name).unwrap(), Some(theirs.clone()));
    assert_eq!(s.list_versions(&b, &f.name, None, 10).unwrap(), [version(&theirs, 1)]);
    assert_eq!(s.list_aliases(&b, &f.name).unwrap(), [alias(&theirs, "prod", "1")]);
    let trigger_ids: Vec<String> = s.list_triggers(None).unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(trigger_ids, ["b-url", "g-url"]);
    assert_eq!(s.get_tune(&a, "g-tune").unwrap(), Some(tune(&a, "g", "g-tune", 3)));
    assert_eq!(s.get_tune(&b, "b-tune").unwrap(), Some(tune(&b, "f", "b-tune", 3)));
    assert_eq!(s.get_event("ev").unwrap(), Some(queued), "events are not the function's");
    assert_eq!(s.list_layers(&a).unwrap().len(), 1, "layers are not the function's");
    assert!(s.get_workflow(&a, "f").unwrap().is_some(), "workflows are not the function's");
    assert_eq!(s.history("ex").unwrap(), [row(1)], "executions are not the function's");

    // A new function of the name starts bare, and the deleted one's route shape is free again.
    s.insert_function(&function(&a, "f")).unwrap();
    assert!(s.list_versions(&a, &f.name, None, 10).unwrap().is_empty());
    assert!(s.list_aliases(&a, &f.name).unwrap().is_empty());
    assert_eq!(s.latest_tune(&a, &f.name).unwrap(), None);
    assert!(s.list_triggers(Some(&a)).unwrap().iter().all(|t| t.function != f.name));
    s.insert_trigger(&route_trigger(&a, "f-route-2", "f", "GET /p/{name}", "GET /p/{}")).unwrap();
}

/// Every archive a record points at: `$LATEST`'s (directory [`LATEST_DIR`]) when it has code, and each
/// version's (directory: its number).
pub fn referenced_archives_name_latest_and_every_version(s: &dyn Store) {
    let (a, b) = (account(s, 301), account(s, 302));
    let mut f = function(&a, "f");
    s.insert_function(&f).unwrap();
    f = publish(s, &f);
    f = publish(s, &f);
    // Without code (creation never completed), but with a version.
    let mut bare = function(&b, "bare");
    bare.code = None;
    s.insert_function(&bare).unwrap();
    publish(s, &bare);

    let mut refs = s.referenced_archives().unwrap();
    refs.sort();
    let r = |acct: &AccountId, func: &str, dir: &str, sha: &str| {
        (acct.clone(), fname(func), dir.to_string(), sha.to_string())
    };
    assert_eq!(
        refs,
        [
            r(&a, "f", "1", "f-v1"),
            r(&a, "f", "2", "f-v2"),
            r(&a, "f", LATEST_DIR, "f-latest"),
            r(&b, "bare", "1", "bare-v1"),
        ]
    );
    assert_eq!(f.last_version, 2);
}

/// Read-modify-write with `update_function` from many threads at once loses no update: each writer
/// retries on `RevisionMismatch`, and the counter ends at the number of increments.
pub fn concurrent_updates_lose_nothing(s: &dyn Store) {
    const THREADS: usize = 8;
    const EACH: usize = 10;
    let a = account(s, 311);
    let f = function(&a, "counter");
    s.insert_function(&f).unwrap();
    let retries = race(THREADS, |_| {
        let mut retries = 0;
        for _ in 0..EACH {
            loop {
                let mut read = s.get_function(&a, &f.name).unwrap().unwrap();
                let expected = read.revision;
                read.revision += 1;
                read.modified_ms += 1;
                read.config.memory_mb += 1;
                match s.update_function(&read, expected) {
                    Ok(()) => break,
                    Err(StoreError::RevisionMismatch(_)) => retries += 1,
                    Err(e) => panic!("unexpected error: {e:?}"),
                }
                assert!(retries < MAX_RETRIES, "an update from a fresh read never lands");
            }
        }
        retries
    });
    let total = u64::try_from(THREADS * EACH).unwrap();
    let stored = s.get_function(&a, &f.name).unwrap().unwrap();
    assert_eq!(stored.revision, f.revision + total, "every update landed once (retries: {retries:?})");
    assert_eq!(stored.modified_ms, f.modified_ms + ms(total));
    assert_eq!(stored.config.memory_mb, f.config.memory_mb + u32::try_from(total).unwrap());
}

/// Racing writers of one function name, of one alias, and of one revision of an alias: exactly one wins
/// each race, the others get `Conflict` (create) or `RevisionMismatch` (replace), and the winner's record
/// is the one stored.
pub fn concurrent_creates_and_replaces_have_one_winner(s: &dyn Store) {
    const THREADS: usize = 8;
    let a = account(s, 321);
    let contender = |i: usize| {
        let mut f = function(&a, "contested");
        f.config.memory_mb = 128 + u32::try_from(i).unwrap();
        f
    };
    let results = race(THREADS, |i| s.insert_function(&contender(i)));
    let winners: Vec<usize> = (0..THREADS).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(StoreError::Conflict(_)))), "{results:?}");
    assert_eq!(s.get_function(&a, &fname("contested")).unwrap(), Some(contender(winners[0])));

    let f = contender(winners[0]);
    let aliased = |i: usize, revision: u64| {
        let mut x = alias(&f, "live", &i.to_string());
        x.revision = revision;
        x
    };
    let results = race(THREADS, |i| s.put_alias(&aliased(i, 1), None));
    let created: Vec<usize> = (0..THREADS).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(created.len(), 1, "{results:?}");
    assert!(results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(StoreError::Conflict(_)))), "{results:?}");
    assert_eq!(s.get_alias(&a, &f.name, "live").unwrap(), Some(aliased(created[0], 1)));

    let results = race(2, |i| s.put_alias(&aliased(100 + i, 2), Some(1)));
    let replaced: Vec<usize> = (0..2).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(replaced.len(), 1, "{results:?}");
    expect_revision_mismatch(results.into_iter().find(Result::is_err).unwrap());
    assert_eq!(s.get_alias(&a, &f.name, "live").unwrap(), Some(aliased(100 + replaced[0], 2)));
}

/// Racing publishers of one function, each reading it and publishing the next number with the revision
/// read (retrying on `RevisionMismatch`), end with versions 1..=N and no gap or double.
pub fn concurrent_publishes_number_versions_without_gaps(s: &dyn Store) {
    const THREADS: usize = 6;
    const EACH: usize = 3;
    let a = account(s, 331);
    let f = function(&a, "f");
    s.insert_function(&f).unwrap();
    let published = race(THREADS, |_| {
        let mut mine = vec![];
        let mut retries = 0;
        for _ in 0..EACH {
            loop {
                let read = s.get_function(&a, &f.name).unwrap().unwrap();
                let mut next = read.clone();
                (next.revision, next.last_version) = (read.revision + 1, read.last_version + 1);
                match s.publish_version(&next, read.revision, &version(&next, next.last_version)) {
                    Ok(()) => {
                        mine.push(next.last_version);
                        break;
                    }
                    Err(StoreError::RevisionMismatch(_)) => retries += 1,
                    Err(e) => panic!("unexpected error: {e:?}"),
                }
                assert!(retries < MAX_RETRIES, "a publish from a fresh read never lands");
            }
        }
        mine
    });
    let total = u64::try_from(THREADS * EACH).unwrap();
    let mut numbers: Vec<u64> = published.into_iter().flatten().collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=total).collect::<Vec<_>>(), "each number published by exactly one writer");
    let listed: Vec<u64> = s.list_versions(&a, &f.name, None, 100).unwrap().into_iter().map(|v| v.version).collect();
    assert_eq!(listed, numbers);
    let stored = s.get_function(&a, &f.name).unwrap().unwrap();
    assert_eq!((stored.last_version, stored.revision), (total, 1 + total));
}

/// Retries a racing writer may need in all before a backend is judged stuck (a bound, so a broken backend
/// fails instead of hanging).
const MAX_RETRIES: usize = 10_000;

contract!(
    functions_round_trip_every_field,
    duplicate_functions_conflict_per_account,
    updates_check_the_revision,
    list_functions_pages_by_name,
    functions_are_found_by_state_across_accounts,
    insert_published_function_writes_both_or_neither,
    publish_moves_the_function_and_adds_a_version,
    delete_version_guards_its_aliases_and_the_revision,
    event_configs_live_and_die_with_their_function,
    list_versions_pages_by_number,
    aliases_create_replace_list_delete,
    delete_function_takes_its_records_along,
    referenced_archives_name_latest_and_every_version,
    concurrent_updates_lose_nothing,
    concurrent_creates_and_replaces_have_one_winner,
    concurrent_publishes_number_versions_without_gaps,
);
