//! Lambda durable executions: a head per execution, an operation and an event per row.

use stoke_core::AccountId;
use stoke_store::{DurableEventRow, DurableOpRow, DurableRecord, Store};

use crate::fixtures::{account, expect_conflict, expect_not_found, expect_revision_mismatch, fname};

fn execution(account: &AccountId, function: &str, id: &str, name: &str, started_ms: i64) -> DurableRecord {
    DurableRecord {
        id: id.into(),
        account: account.clone(),
        function: fname(function),
        version: "$LATEST".into(),
        name: name.into(),
        arn: format!("arn:aws:lambda:us-east-1:{account}:function:{function}:$LATEST/durable-execution/{name}/{id}"),
        status: "RUNNING".into(),
        input_sha256: "00".into(),
        started_ms,
        ended_ms: None,
        next_deadline_ms: None,
        revision: 1,
        head: "{}".into(),
        retention_days: 14,
        expires_ms: None,
    }
}

fn op(seq: u32, id: &str, data: &str) -> DurableOpRow {
    DurableOpRow { seq, op_id: id.into(), data: data.into() }
}

fn event(id: u64, kind: &str) -> DurableEventRow {
    DurableEventRow {
        event_id: id,
        timestamp_ms: 1_000 + i64::try_from(id).unwrap(),
        kind: kind.into(),
        data: "{}".into(),
    }
}

/// An execution reads back with its operations and events; a change replaces operations in place, appends
/// events and moves the revision on; names are unique per function.
pub fn an_execution_is_written_as_a_head_operations_and_events(s: &dyn Store) {
    let (a, b) = (account(s, 1101), account(s, 1102));
    let x = execution(&a, "f", "x1", "run-1", 10);
    s.insert_durable(&x, &[op(0, "x1", "exec")], &[event(1, "ExecutionStarted")]).unwrap();
    assert_eq!(s.get_durable(&a, "x1").unwrap(), Some(x.clone()));
    assert_eq!(s.get_durable(&b, "x1").unwrap(), None, "another account's execution is not found");
    assert_eq!(s.find_durable(&a, &fname("f"), "run-1").unwrap(), Some(x.clone()));
    assert_eq!(s.find_durable(&a, &fname("g"), "run-1").unwrap(), None);
    // The same name for the same function is taken; for another function it is not.
    expect_conflict(s.insert_durable(&execution(&a, "f", "x2", "run-1", 11), &[], &[]));
    s.insert_durable(&execution(&a, "g", "x3", "run-1", 12), &[], &[]).unwrap();
    // A change: one operation replaced, one added, two events appended, the head rewritten.
    let changed = DurableRecord { head: "{\"n\":2}".into(), next_deadline_ms: Some(99), ..x.clone() };
    let events = [event(2, "StepStarted"), event(3, "StepSucceeded")];
    s.record_durable(&changed, 1, &[op(0, "x1", "exec'"), op(1, "s1", "step")], &events).unwrap();
    let stored = s.get_durable(&a, "x1").unwrap().unwrap();
    assert_eq!((stored.revision, stored.head.as_str(), stored.next_deadline_ms), (2, "{\"n\":2}", Some(99)));
    assert_eq!(s.durable_operations("x1").unwrap(), [op(0, "x1", "exec'"), op(1, "s1", "step")]);
    let all = s.durable_events("x1", 0, 100).unwrap();
    assert_eq!(all.iter().map(|e| e.event_id).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(s.durable_events("x1", 1, 1).unwrap(), [event(2, "StepStarted")], "paged after an event id");
    assert!(s.durable_events("x1", 3, 10).unwrap().is_empty());
}

/// A write that read an old revision, one that would add an event again, and one of an execution that does
/// not exist are refused, and none of them writes anything.
pub fn stale_duplicate_and_unknown_writes_are_refused_whole(s: &dyn Store) {
    let a = account(s, 1111);
    let x = execution(&a, "f", "x1", "run-1", 10);
    s.insert_durable(&x, &[op(0, "x1", "exec")], &[event(1, "ExecutionStarted")]).unwrap();
    s.record_durable(&x, 1, &[], &[event(2, "WaitStarted")]).unwrap();
    let ended = DurableRecord { status: "SUCCEEDED".into(), ended_ms: Some(50), ..x.clone() };
    expect_revision_mismatch(s.record_durable(&ended, 1, &[op(1, "w", "late")], &[event(3, "X")]));
    expect_conflict(s.record_durable(&ended, 2, &[op(1, "w", "dup")], &[event(2, "WaitStarted")]));
    assert_eq!(s.get_durable(&a, "x1").unwrap().unwrap().revision, 2, "nothing written");
    assert_eq!(s.durable_operations("x1").unwrap().len(), 1);
    assert_eq!(s.durable_events("x1", 0, 10).unwrap().len(), 2);
    expect_not_found(s.record_durable(&execution(&a, "f", "nope", "n", 1), 1, &[], &[]));
    s.record_durable(&ended, 2, &[], &[event(3, "ExecutionSucceeded")]).unwrap();
    assert_eq!(s.get_durable(&a, "x1").unwrap().unwrap().status, "SUCCEEDED");
}

/// A function's executions list oldest first and page after an id; running ones are found across accounts.
pub fn executions_list_by_function_and_the_running_ones_are_found(s: &dyn Store) {
    let (a, b) = (account(s, 1121), account(s, 1122));
    for (id, started) in [("x3", 30), ("x1", 10), ("x2", 20)] {
        s.insert_durable(&execution(&a, "f", id, &format!("n-{id}"), started), &[], &[]).unwrap();
    }
    s.insert_durable(&execution(&a, "g", "y1", "n", 5), &[], &[]).unwrap();
    s.insert_durable(&execution(&b, "f", "z1", "n", 1), &[], &[]).unwrap();
    let ids = |v: Vec<DurableRecord>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_durable(&a, &fname("f"), None, 10).unwrap()), ["x1", "x2", "x3"]);
    assert_eq!(ids(s.list_durable(&a, &fname("f"), Some("x1"), 1).unwrap()), ["x2"]);
    assert_eq!(ids(s.list_durable(&a, &fname("f"), Some("x3"), 10).unwrap()), Vec::<String>::new());
    let done = DurableRecord { status: "FAILED".into(), ..execution(&a, "f", "x2", "n-x2", 20) };
    s.record_durable(&done, 1, &[], &[]).unwrap();
    assert_eq!(ids(s.running_durable().unwrap()), ["z1", "y1", "x1", "x3"]);
}

/// Executions whose retention ran out are deleted whole (head, name, operations, events), oldest expiry
/// first and at most the limit; running ones and those not yet expired stay.
pub fn expired_executions_are_deleted_whole_and_nothing_else(s: &dyn Store) {
    let a = account(s, 1131);
    for (id, expires) in [("x1", Some(300)), ("x2", Some(100)), ("x3", Some(200)), ("x4", Some(900)), ("x5", None)] {
        let x = execution(&a, "f", id, &format!("n-{id}"), 10);
        s.insert_durable(&x, &[op(0, id, "exec")], &[event(1, "ExecutionStarted")]).unwrap();
        if expires.is_some() {
            let ended = DurableRecord { status: "SUCCEEDED".into(), ended_ms: Some(50), expires_ms: expires, ..x };
            s.record_durable(&ended, 1, &[], &[event(2, "ExecutionSucceeded")]).unwrap();
        }
    }
    assert_eq!(s.get_durable(&a, "x2").unwrap().unwrap().expires_ms, Some(100), "the expiry reads back");
    let ids = |v: Vec<DurableRecord>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(s.delete_expired_durable(300, 2).unwrap()), ["x2", "x3"], "oldest first, the limit kept");
    assert_eq!(ids(s.delete_expired_durable(300, 10).unwrap()), ["x1"]);
    assert!(s.delete_expired_durable(300, 10).unwrap().is_empty());
    for gone in ["x1", "x2", "x3"] {
        assert_eq!(s.get_durable(&a, gone).unwrap(), None);
        assert!(s.durable_operations(gone).unwrap().is_empty() && s.durable_events(gone, 0, 10).unwrap().is_empty());
    }
    // Its name is free again.
    s.insert_durable(&execution(&a, "f", "x6", "n-x2", 20), &[], &[]).unwrap();
    assert_eq!(ids(s.list_durable(&a, &fname("f"), None, 10).unwrap()), ["x4", "x5", "x6"]);
    assert_eq!(s.durable_events("x4", 0, 10).unwrap().len(), 2, "not yet expired: whole");
}

/// A change of hundreds of rows (the SDKs checkpoint up to 250 updates at once, past one etcd transaction)
/// is written whole, reads back whole, and the next changes land over it.
pub fn a_change_of_hundreds_of_rows_is_written_whole(s: &dyn Store) {
    let a = account(s, 1141);
    let x = execution(&a, "f", "big", "n-big", 10);
    s.insert_durable(&x, &[op(0, "big", "exec")], &[event(1, "ExecutionStarted")]).unwrap();
    let ops: Vec<DurableOpRow> = (1..=250).map(|i| op(i, &format!("o{i}"), "started")).collect();
    let events: Vec<DurableEventRow> = (2..=251).map(|i| event(i, "StepStarted")).collect();
    s.record_durable(&x, 1, &ops, &events).unwrap();
    assert_eq!(s.durable_operations("big").unwrap().len(), 251);
    assert_eq!(s.durable_events("big", 0, 1000).unwrap().len(), 251);
    assert_eq!(s.durable_events("big", 200, 10).unwrap().first().map(|e| e.event_id), Some(201), "paged");
    // A stale write of a large change is refused whole.
    let more: Vec<DurableEventRow> = (252..=400).map(|i| event(i, "StepSucceeded")).collect();
    expect_revision_mismatch(s.record_durable(&x, 1, &[], &more));
    assert_eq!(s.durable_events("big", 0, 1000).unwrap().len(), 251, "nothing of it written");
    // The next changes, large and small, land over it.
    let done: Vec<DurableOpRow> = (1..=250).map(|i| op(i, &format!("o{i}"), "succeeded")).collect();
    s.record_durable(&x, 2, &done, &more).unwrap();
    s.record_durable(&x, 3, &[op(7, "o7", "replaced")], &[event(401, "ExecutionSucceeded")]).unwrap();
    let stored = s.durable_operations("big").unwrap();
    assert_eq!(stored.len(), 251);
    assert_eq!(stored[7], op(7, "o7", "replaced"));
    assert!(stored[1..].iter().filter(|o| o.seq != 7).all(|o| o.data == "succeeded"), "the large change's rows");
    let all = s.durable_events("big", 0, 1000).unwrap();
    assert_eq!(all.iter().map(|e| e.event_id).collect::<Vec<_>>(), (1..=401).collect::<Vec<_>>());
    assert_eq!(s.get_durable(&a, "big").unwrap().unwrap().revision, 4);
}

contract!(
    a_change_of_hundreds_of_rows_is_written_whole,
    expired_executions_are_deleted_whole_and_nothing_else,
    an_execution_is_written_as_a_head_operations_and_events,
    stale_duplicate_and_unknown_writes_are_refused_whole,
    executions_list_by_function_and_the_running_ones_are_found,
);
