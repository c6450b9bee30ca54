//! Workflows, their executions and each execution's history.

use stoke_store::{ExecutionRecord, ExecutionStatus, MapRunRecord, Store, StoreError};

use crate::fixtures::{
    account, execution, expect_conflict, expect_not_found, expect_revision_mismatch, race, row, workflow,
};

/// Workflows: created with `None` (`Conflict` if the name is taken in the account), replaced with the
/// revision read (`RevisionMismatch` if stale, `NotFound` if missing; an update keeps `created_ms`), listed
/// by name per account, deleted once.
pub fn workflows_create_replace_list_delete(s: &dyn Store) {
    let (a, b) = (account(s, 601), account(s, 602));
    let mut w = workflow(&a, "flow");
    w.prewarm = None;
    s.put_workflow(&w, None).unwrap();
    assert_eq!(
        s.get_workflow(&a, "flow").unwrap(),
        Some(w.clone()),
        "every field reads back (role included), prewarm unset"
    );
    let mut taken = workflow(&a, "flow");
    taken.definition = "{}".into();
    expect_conflict(s.put_workflow(&taken, None));
    assert_eq!(s.get_workflow(&a, "flow").unwrap(), Some(w.clone()), "the refused create wrote nothing");

    let mut next = w.clone();
    (next.revision, next.definition, next.prewarm, next.updated_ms, next.created_ms) =
        (2, "{\"v\":2}".into(), Some("eager".into()), 20, 999);
    next.role_arn = Some("arn:aws:iam::123456789012:role/other".into());
    s.put_workflow(&next, Some(1)).unwrap();
    let mut expected = next.clone();
    expected.created_ms = w.created_ms;
    assert_eq!(
        s.get_workflow(&a, "flow").unwrap(),
        Some(expected.clone()),
        "an update keeps created_ms and replaces the role"
    );
    let mut stale = next.clone();
    (stale.revision, stale.definition) = (3, "{\"stale\":true}".into());
    expect_revision_mismatch(s.put_workflow(&stale, Some(1)));
    let mut missing = workflow(&a, "nope");
    missing.revision = 2;
    expect_not_found(s.put_workflow(&missing, Some(1)));
    assert_eq!(s.get_workflow(&a, "nope").unwrap(), None, "an update does not create");
    assert_eq!(s.get_workflow(&a, "flow").unwrap(), Some(expected.clone()), "refused updates wrote nothing");

    for name in ["zeta", "Alpha", "beta"] {
        s.put_workflow(&workflow(&a, name), None).unwrap();
    }
    s.put_workflow(&workflow(&b, "flow"), None).unwrap();
    let names: Vec<String> = s.list_workflows(&a).unwrap().into_iter().map(|x| x.name).collect();
    assert_eq!(names, ["Alpha", "beta", "flow", "zeta"], "by name (bytes)");
    assert_eq!(s.list_workflows(&b).unwrap(), [workflow(&b, "flow")], "per account, listed records are whole");
    assert_eq!(s.get_workflow(&b, "zeta").unwrap(), None);

    assert!(!s.delete_workflow(&b, "zeta").unwrap(), "only the owning account deletes");
    assert!(s.delete_workflow(&a, "zeta").unwrap());
    assert!(!s.delete_workflow(&a, "zeta").unwrap(), "already gone");
    assert_eq!(s.get_workflow(&a, "zeta").unwrap(), None);
    assert_eq!(s.get_workflow(&a, "flow").unwrap(), Some(expected), "the others stay");
    s.put_workflow(&workflow(&a, "zeta"), None).unwrap();
}

/// Deleting a workflow keeps its executions readable (with their history), and running ones can finish.
pub fn executions_outlive_their_workflow(s: &dyn Store) {
    let a = account(s, 611);
    s.put_workflow(&workflow(&a, "flow"), None).unwrap();
    let mut e = execution(&a, "flow", "e1", 10);
    s.insert_execution(&e, &[row(1)]).unwrap();
    assert!(s.delete_workflow(&a, "flow").unwrap());
    assert_eq!(s.get_execution("e1").unwrap(), Some(e.clone()));
    assert_eq!(s.find_execution(&a, "flow", "run-e1").unwrap(), Some(e.clone()));
    assert_eq!(s.running_executions().unwrap(), [e.clone()]);
    (e.status, e.output, e.stopped_ms) = (ExecutionStatus::Succeeded, Some("{}".into()), Some(20));
    s.record_execution("e1", &[row(2)], Some(&e)).unwrap();
    assert_eq!(s.get_execution("e1").unwrap(), Some(e));
    assert_eq!(s.history("e1").unwrap(), [row(1), row(2)]);
    assert_eq!(s.list_executions(&a, Some("flow"), None, None, 10).unwrap().len(), 1);
}

/// Execution names are unique per workflow of an account (`Conflict`, even once the first has ended), ids
/// are unique (`Conflict`); a refused start writes neither the execution nor its history.
pub fn execution_names_are_unique_per_workflow(s: &dyn Store) {
    let (a, b) = (account(s, 621), account(s, 622));
    for w in ["flow", "other"] {
        s.put_workflow(&workflow(&a, w), None).unwrap();
    }
    s.put_workflow(&workflow(&b, "flow"), None).unwrap();
    let mut first = execution(&a, "flow", "e1", 10);
    s.insert_execution(&first, &[row(1)]).unwrap();
    (first.status, first.stopped_ms) = (ExecutionStatus::Aborted, Some(11));
    s.record_execution("e1", &[], Some(&first)).unwrap();

    let mut same_name = execution(&a, "flow", "e2", 20);
    same_name.name = first.name.clone();
    expect_conflict(s.insert_execution(&same_name, &[row(1), row(2)]));
    assert_eq!(s.get_execution("e2").unwrap(), None, "the refused start wrote nothing");
    assert!(s.history("e2").unwrap().is_empty(), "nor its history");
    assert_eq!(s.find_execution(&a, "flow", &first.name).unwrap(), Some(first.clone()));

    let mut same_id = execution(&a, "flow", "e1", 30);
    same_id.name = "fresh".into();
    expect_conflict(s.insert_execution(&same_id, &[row(9)]));
    assert_eq!(s.find_execution(&a, "flow", "fresh").unwrap(), None);
    assert_eq!(s.history("e1").unwrap(), [row(1)], "the refused start appended nothing to the other's history");

    let mut other_workflow = execution(&a, "other", "e3", 40);
    other_workflow.name = first.name.clone();
    s.insert_execution(&other_workflow, &[]).unwrap();
    let mut other_account = execution(&b, "flow", "e4", 50);
    other_account.name = first.name.clone();
    s.insert_execution(&other_account, &[]).unwrap();
    assert_eq!(s.find_execution(&a, "other", &first.name).unwrap(), Some(other_workflow));
    assert_eq!(s.find_execution(&b, "flow", &first.name).unwrap(), Some(other_account));
    assert_eq!(s.find_execution(&a, "flow", &first.name).unwrap(), Some(first));
    assert_eq!(s.find_execution(&a, "flow", "nope").unwrap(), None);
    assert_eq!(s.find_execution(&a, "nope", "run-e1").unwrap(), None);
    assert_eq!(s.get_execution("nope").unwrap(), None);
}

/// An execution starts with its first history events in one step: history reads back in `seq` order with
/// every field, and a start whose events clash among themselves is refused whole.
pub fn executions_start_with_their_history(s: &dyn Store) {
    let a = account(s, 631);
    s.put_workflow(&workflow(&a, "flow"), None).unwrap();
    let mut e = execution(&a, "flow", "e1", 5);
    (e.output, e.error, e.cause) = (Some("o".into()), Some("err".into()), Some("why".into()));
    s.insert_execution(&e, &[row(1), row(2), row(3)]).unwrap();
    assert_eq!(s.get_execution("e1").unwrap(), Some(e), "every field reads back");
    assert_eq!(s.history("e1").unwrap(), [row(1), row(2), row(3)]);
    assert!(s.history("nope").unwrap().is_empty(), "an unknown execution has no history");

    let clash = execution(&a, "flow", "e2", 6);
    expect_conflict(s.insert_execution(&clash, &[row(1), row(1)]));
    assert_eq!(s.get_execution("e2").unwrap(), None, "a start whose history is refused is not recorded");
    assert!(s.history("e2").unwrap().is_empty());

    // Appended out of order, history still reads by `seq`.
    let later = execution(&a, "flow", "e3", 7);
    s.insert_execution(&later, &[row(2)]).unwrap();
    s.record_execution("e3", &[row(10), row(1)], None).unwrap();
    let seqs: Vec<u64> = s.history("e3").unwrap().into_iter().map(|h| h.seq).collect();
    assert_eq!(seqs, [1, 2, 10], "by seq, numerically");
}

/// `record_execution` appends events and, when given, sets the finished execution, in one step: an event
/// whose `seq` is taken, or a finish of an execution that already ended, is a `Conflict` that writes
/// nothing. A finish sets status, output, error, cause and stopped time only.
pub fn record_execution_appends_and_finishes_in_one_step(s: &dyn Store) {
    let a = account(s, 641);
    s.put_workflow(&workflow(&a, "flow"), None).unwrap();
    let started = execution(&a, "flow", "e1", 5);
    s.insert_execution(&started, &[row(1)]).unwrap();
    s.record_execution("e1", &[row(2), row(3)], None).unwrap();
    s.record_execution("e1", &[], None).unwrap();
    assert_eq!(s.get_execution("e1").unwrap(), Some(started.clone()), "appending alone leaves it running");
    assert_eq!(s.running_executions().unwrap(), std::slice::from_ref(&started));

    expect_conflict(s.record_execution("e1", &[row(4), row(2)], None));
    assert_eq!(s.history("e1").unwrap(), [row(1), row(2), row(3)], "a refused append writes none of its events");

    let mut failed = started.clone();
    (failed.status, failed.error, failed.cause, failed.stopped_ms, failed.output) =
        (ExecutionStatus::Failed, Some("States.TaskFailed".into()), Some("boom".into()), Some(9), Some("{}".into()));
    let mut clashing_finish = failed.clone();
    clashing_finish.status = ExecutionStatus::TimedOut;
    expect_conflict(s.record_execution("e1", &[row(4), row(3)], Some(&clashing_finish)));
    assert_eq!(s.get_execution("e1").unwrap(), Some(started.clone()), "a refused append does not finish it");

    // What else the finished record says is not written: the execution keeps its name, input and start.
    let mut sent = failed.clone();
    (sent.name, sent.input, sent.started_ms, sent.definition) = ("renamed".into(), "{}".into(), 1, "{}".into());
    s.record_execution("e1", &[row(4)], Some(&sent)).unwrap();
    assert_eq!(s.get_execution("e1").unwrap(), Some(failed.clone()));
    assert_eq!(s.history("e1").unwrap(), [row(1), row(2), row(3), row(4)]);
    assert!(s.running_executions().unwrap().is_empty());

    let mut aborted = failed.clone();
    aborted.status = ExecutionStatus::Aborted;
    expect_conflict(s.record_execution("e1", &[row(5)], Some(&aborted)));
    expect_conflict(s.record_execution("e1", &[], Some(&aborted)));
    assert_eq!(s.get_execution("e1").unwrap(), Some(failed), "an ended execution stays as it ended");
    assert_eq!(s.history("e1").unwrap(), [row(1), row(2), row(3), row(4)], "the refused finish appended nothing");

    // Recording on an execution that does not exist fails (SQLite: Conflict) and creates nothing.
    assert!(s.record_execution("nope", &[row(1)], None).is_err());
    assert!(s.record_execution("nope", &[], Some(&aborted)).is_err());
    assert!(s.history("nope").unwrap().is_empty());
    assert_eq!(s.get_execution("nope").unwrap(), None);
}

/// `list_executions`: newest first by `started_ms`, ties by id descending; `workflow` and `status` filter;
/// `before` (an id) pages: the next page holds what sorts after that execution.
pub fn list_executions_newest_first_with_filters_and_paging(s: &dyn Store) {
    let (a, b) = (account(s, 651), account(s, 652));
    for w in ["flow", "other"] {
        s.put_workflow(&workflow(&a, w), None).unwrap();
    }
    s.put_workflow(&workflow(&b, "flow"), None).unwrap();
    // Ids do not follow start times: the order is by start time first.
    for (id, at) in [("e1", 10), ("e2", 30), ("e3", 20), ("e4", 30), ("e0", 25)] {
        s.insert_execution(&execution(&a, "flow", id, at), &[]).unwrap();
    }
    s.insert_execution(&execution(&a, "other", "o1", 40), &[]).unwrap();
    s.insert_execution(&execution(&a, "other", "o2", 5), &[]).unwrap();
    s.insert_execution(&execution(&b, "flow", "b1", 50), &[]).unwrap();
    let finish = |id: &str, at, status| {
        let mut e = s.get_execution(id).unwrap().unwrap();
        (e.status, e.stopped_ms) = (status, Some(at));
        s.record_execution(id, &[], Some(&e)).unwrap();
    };
    finish("e3", 60, ExecutionStatus::TimedOut);
    finish("e2", 61, ExecutionStatus::Succeeded);
    finish("o2", 62, ExecutionStatus::Succeeded);

    let ids = |workflow: Option<&str>, status: Option<ExecutionStatus>, before: Option<&str>, limit: usize| {
        let page = s.list_executions(&a, workflow, status, before, limit).unwrap();
        page.into_iter().map(|e| e.id).collect::<Vec<String>>()
    };
    assert_eq!(ids(None, None, None, 100), ["o1", "e4", "e2", "e0", "e3", "e1", "o2"], "started_ms, then id, desc");
    assert_eq!(ids(Some("flow"), None, None, 100), ["e4", "e2", "e0", "e3", "e1"]);
    assert_eq!(ids(Some("flow"), None, None, 2), ["e4", "e2"]);
    assert_eq!(ids(Some("flow"), None, Some("e4"), 2), ["e2", "e0"], "a page starts after `before`, even on a tie");
    assert_eq!(ids(Some("flow"), None, Some("e0"), 2), ["e3", "e1"]);
    assert!(ids(Some("flow"), None, Some("e1"), 2).is_empty());
    assert_eq!(ids(None, Some(ExecutionStatus::Succeeded), None, 100), ["e2", "o2"]);
    assert_eq!(ids(Some("flow"), Some(ExecutionStatus::Succeeded), None, 100), ["e2"]);
    assert_eq!(ids(Some("flow"), Some(ExecutionStatus::TimedOut), None, 100), ["e3"]);
    assert_eq!(ids(Some("flow"), Some(ExecutionStatus::Running), None, 100), ["e4", "e0", "e1"]);
    assert_eq!(ids(Some("flow"), Some(ExecutionStatus::Running), Some("e4"), 1), ["e0"]);
    assert!(ids(Some("flow"), Some(ExecutionStatus::Failed), None, 100).is_empty());
    assert!(ids(Some("nope"), None, None, 100).is_empty());
    let theirs = s.list_executions(&b, None, None, None, 100).unwrap();
    assert_eq!(theirs, [execution(&b, "flow", "b1", 50)], "per account, listed records are whole");

    // Walking pages of 2 with `before` visits every execution once, in order.
    let mut walked: Vec<String> = vec![];
    loop {
        let page = ids(None, None, walked.last().map(String::as_str), 2);
        if page.is_empty() {
            break;
        }
        assert!(walked.len() <= 7, "paging does not end: {walked:?}");
        walked.extend(page);
    }
    assert_eq!(walked, ids(None, None, None, 100));
}

/// `running_executions`: every account's executions still running, oldest first (`started_ms`).
pub fn running_executions_oldest_first_across_accounts(s: &dyn Store) {
    let (a, b) = (account(s, 661), account(s, 662));
    assert!(s.running_executions().unwrap().is_empty());
    s.insert_execution(&execution(&a, "flow", "late", 30), &[]).unwrap();
    s.insert_execution(&execution(&b, "flow", "early", 10), &[]).unwrap();
    s.insert_execution(&execution(&a, "flow", "mid", 20), &[]).unwrap();
    let mut done = execution(&a, "flow", "done", 5);
    s.insert_execution(&done, &[]).unwrap();
    (done.status, done.stopped_ms) = (ExecutionStatus::Succeeded, Some(6));
    s.record_execution("done", &[], Some(&done)).unwrap();
    let ended_at_start = ExecutionRecord { status: ExecutionStatus::Aborted, ..execution(&a, "flow", "never", 1) };
    s.insert_execution(&ended_at_start, &[]).unwrap();
    assert_eq!(
        s.running_executions().unwrap(),
        [execution(&b, "flow", "early", 10), execution(&a, "flow", "mid", 20), execution(&a, "flow", "late", 30)]
    );
}

/// Racing finishes of one running execution, each with an event of its own: exactly one finishes it and
/// only its event is appended; the others are `Conflict` and append nothing. Racing starts of one name:
/// one is recorded, the others are `Conflict`.
pub fn concurrent_finishes_and_starts_have_one_winner(s: &dyn Store) {
    const THREADS: usize = 8;
    let a = account(s, 671);
    s.put_workflow(&workflow(&a, "flow"), None).unwrap();
    let started = execution(&a, "flow", "e1", 5);
    s.insert_execution(&started, &[row(1)]).unwrap();
    let finished = |i: usize| {
        let mut e = started.clone();
        (e.status, e.output, e.stopped_ms) = (ExecutionStatus::Succeeded, Some(format!("{i}")), Some(10));
        e
    };
    let results =
        race(THREADS, |i| s.record_execution("e1", &[row(2 + u64::try_from(i).unwrap())], Some(&finished(i))));
    let winners: Vec<usize> = (0..THREADS).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.into_iter().filter(Result::is_err) {
        expect_conflict(r);
    }
    let w = winners[0];
    assert_eq!(s.get_execution("e1").unwrap(), Some(finished(w)));
    assert_eq!(s.history("e1").unwrap(), [row(1), row(2 + u64::try_from(w).unwrap())]);

    let contender = |i: usize| ExecutionRecord { name: "once".into(), ..execution(&a, "flow", &format!("c{i}"), 20) };
    let results = race(THREADS, |i| s.insert_execution(&contender(i), &[row(1)]));
    let winners: Vec<usize> = (0..THREADS).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(StoreError::Conflict(_)))), "{results:?}");
    assert_eq!(s.find_execution(&a, "flow", "once").unwrap(), Some(contender(winners[0])));
    let with_history = (0..THREADS).filter(|i| !s.history(&format!("c{i}")).unwrap().is_empty()).count();
    assert_eq!(with_history, 1, "only the recorded start has history");

    // Racing workflow updates from one revision: one lands.
    let results = race(2, |i| {
        let mut w = workflow(&a, "flow");
        (w.revision, w.definition) = (2, format!("{{\"writer\":{i}}}"));
        s.put_workflow(&w, Some(1))
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    expect_revision_mismatch(results.into_iter().find(Result::is_err).unwrap());
    assert_eq!(s.get_workflow(&a, "flow").unwrap().unwrap().revision, 2);
}

/// Map runs: written only for an execution that exists (`NotFound` otherwise, nothing written), replaced by
/// id, found only through their account, listed per execution oldest first; children of a map run are
/// executions under `<machine>/<label>`, apart from the machine's own.
pub fn map_runs_belong_to_their_execution(s: &dyn Store) {
    let (a, b) = (account(s, 691), account(s, 692));
    s.put_workflow(&workflow(&a, "flow"), None).unwrap();
    s.insert_execution(&execution(&a, "flow", "p1", 10), &[row(1)]).unwrap();
    s.insert_execution(&execution(&a, "flow", "p2", 11), &[row(1)]).unwrap();
    let run = |id: &str, execution_id: &str, started_ms: i64| MapRunRecord {
        id: id.into(),
        account: a.clone(),
        execution_id: execution_id.into(),
        children: "flow/Orders".into(),
        status: "RUNNING".into(),
        started_ms,
        stopped_ms: None,
        details: "{\"maxConcurrency\":2}".into(),
    };
    expect_not_found(s.put_map_run(&run("m0", "missing", 1)));
    assert_eq!(s.get_map_run(&a, "m0").unwrap(), None, "a refused map run is not written");
    for (id, parent, at) in [("m2", "p1", 30), ("m1", "p1", 20), ("m3", "p2", 25)] {
        s.put_map_run(&run(id, parent, at)).unwrap();
    }
    let done = MapRunRecord { status: "SUCCEEDED".into(), stopped_ms: Some(40), ..run("m2", "p1", 30) };
    s.put_map_run(&done).unwrap();
    assert_eq!(s.get_map_run(&a, "m2").unwrap(), Some(done.clone()), "replaced by id");
    assert_eq!(s.get_map_run(&b, "m2").unwrap(), None, "another account's map run is not found");
    let ids: Vec<String> = s.list_map_runs(&a, "p1").unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(ids, ["m1", "m2"]);
    assert_eq!(s.list_map_runs(&a, "p2").unwrap().len(), 1);
    assert!(s.list_map_runs(&b, "p1").unwrap().is_empty());
    // A child execution, under the map run's own workflow name.
    let child = ExecutionRecord { name: "m2-0".into(), ..execution(&a, "flow/Orders", "c1", 31) };
    s.insert_execution(&child, &[row(1)]).unwrap();
    assert_eq!(s.find_execution(&a, "flow/Orders", "m2-0").unwrap(), Some(child));
    assert_eq!(s.list_executions(&a, Some("flow"), None, None, 10).unwrap().len(), 2, "the machine's own only");
    assert_eq!(s.list_executions(&a, Some("flow/Orders"), None, None, 10).unwrap().len(), 1);
}

contract!(
    map_runs_belong_to_their_execution,
    workflows_create_replace_list_delete,
    executions_outlive_their_workflow,
    execution_names_are_unique_per_workflow,
    executions_start_with_their_history,
    record_execution_appends_and_finishes_in_one_step,
    list_executions_newest_first_with_filters_and_paging,
    running_executions_oldest_first_across_accounts,
    concurrent_finishes_and_starts_have_one_winner,
);
