//! The queue of asynchronous invocations.

use std::collections::BTreeSet;

use stoke_store::{EventRecord, EventState, Store};

use crate::fixtures::{account, event, race};

fn ids(events: &[EventRecord]) -> BTreeSet<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

fn set<const N: usize>(ids: [&str; N]) -> BTreeSet<String> {
    ids.into_iter().map(String::from).collect()
}

/// An event reads back as enqueued, every field (a payload need not be UTF-8); an unknown id is `None`; a
/// second event with a taken id is refused (SQLite: a database error, not `Conflict`) and changes nothing.
pub fn events_read_back_as_enqueued(s: &dyn Store) {
    let a = account(s, 701);
    let mut e = event(&a, "e1", 10);
    (e.payload, e.attempts, e.error_type, e.result, e.finished_ms) =
        (vec![0, 159, 255, b'{'], 2, Some("Unhandled".into()), Some(vec![1, 2]), Some(4));
    s.enqueue_event(&e).unwrap();
    assert_eq!(s.get_event("e1").unwrap(), Some(e.clone()));
    assert_eq!(s.get_event("nope").unwrap(), None);
    let taken = event(&a, "e1", 20);
    assert!(s.enqueue_event(&taken).is_err(), "an id is taken once");
    assert_eq!(s.get_event("e1").unwrap(), Some(e));
}

/// `claim_events` takes up to `limit` queued events due by `now` (`next_attempt_ms <= now`), the earliest
/// due first, marks them running and returns them (as stored, state running); events not queued are never
/// claimed.
pub fn claims_take_due_queued_events_earliest_first(s: &dyn Store) {
    let (a, b) = (account(s, 711), account(s, 712));
    assert!(s.claim_events(i64::MAX, 10).unwrap().is_empty(), "an empty queue");
    // Ids sort against due times, so an answer by id would show.
    for (id, due) in [("a-300", 300), ("b-100", 100), ("c-200", 200), ("d-500", 500), ("e-900", 900)] {
        s.enqueue_event(&event(&a, id, due)).unwrap();
    }
    s.enqueue_event(&event(&b, "f-150", 150)).unwrap();
    for (id, state) in
        [("s-done", EventState::Succeeded), ("s-failed", EventState::Failed), ("s-run", EventState::Running)]
    {
        s.enqueue_event(&EventRecord { state, ..event(&a, id, 0) }).unwrap();
    }

    assert!(s.claim_events(99, 10).unwrap().is_empty(), "nothing queued is due yet");
    let first = s.claim_events(300, 2).unwrap();
    assert_eq!(ids(&first), set(["b-100", "f-150"]), "the earliest due, every account's");
    let claimed_b = first.iter().find(|e| e.id == "b-100").unwrap();
    assert_eq!(claimed_b, &EventRecord { state: EventState::Running, ..event(&a, "b-100", 100) });
    assert_eq!(s.get_event("b-100").unwrap().unwrap().state, EventState::Running, "claimed events are stored running");

    assert_eq!(ids(&s.claim_events(300, 10).unwrap()), set(["c-200", "a-300"]), "due is inclusive");
    assert!(s.claim_events(300, 10).unwrap().is_empty(), "running events are not claimed twice");
    assert_eq!(ids(&s.claim_events(10_000, 1).unwrap()), set(["d-500"]), "the limit holds, earliest first");
    assert_eq!(ids(&s.claim_events(10_000, 10).unwrap()), set(["e-900"]));
    assert!(s.claim_events(i64::MAX, 10).unwrap().is_empty(), "finished events are never claimed");
    assert_eq!(s.get_event("s-done").unwrap().unwrap().state, EventState::Succeeded);
    assert_eq!(s.get_event("s-failed").unwrap().unwrap().state, EventState::Failed);
}

/// `update_event` saves attempts, due time, state, error type, result and finish time: a retry waits for
/// its next attempt; a finished event keeps its outcome. Updating an unknown event creates nothing (SQLite
/// answers `Ok`).
pub fn updates_save_the_outcome_and_retries_wait(s: &dyn Store) {
    let a = account(s, 721);
    s.enqueue_event(&event(&a, "early", 10)).unwrap();
    s.enqueue_event(&event(&a, "late", 20)).unwrap();
    let claimed = s.claim_events(100, 1).unwrap();
    assert_eq!(ids(&claimed), set(["early"]));
    let mut retry = claimed[0].clone();
    (retry.attempts, retry.state, retry.next_attempt_ms) = (1, EventState::Queued, 500);
    (retry.error_type, retry.result) = (Some("Unhandled".into()), Some(b"boom".to_vec()));
    s.update_event(&retry).unwrap();
    assert_eq!(s.get_event("early").unwrap(), Some(retry.clone()));

    assert_eq!(ids(&s.claim_events(100, 10).unwrap()), set(["late"]), "the retry waits for its next attempt");
    let again = s.claim_events(500, 10).unwrap();
    assert_eq!(again, [EventRecord { state: EventState::Running, ..retry.clone() }]);

    let mut failed = again[0].clone();
    (failed.attempts, failed.state, failed.finished_ms) = (2, EventState::Failed, Some(501));
    s.update_event(&failed).unwrap();
    assert_eq!(s.get_event("early").unwrap(), Some(failed));
    let mut done = s.get_event("late").unwrap().unwrap();
    (done.state, done.result, done.error_type, done.finished_ms) =
        (EventState::Succeeded, Some(b"42".to_vec()), None, Some(600));
    s.update_event(&done).unwrap();
    assert_eq!(s.get_event("late").unwrap(), Some(done));
    assert!(s.claim_events(i64::MAX, 10).unwrap().is_empty(), "finished events are never claimed again");

    let ghost = event(&a, "ghost", 1);
    let _answer = s.update_event(&ghost);
    assert_eq!(s.get_event("ghost").unwrap(), None, "an update does not create");
    assert!(s.claim_events(i64::MAX, 10).unwrap().is_empty());
}

/// After a crash, running events go back to the queue (their other fields as they were) and the count of
/// them is returned; events in other states stay.
pub fn requeue_puts_running_events_back(s: &dyn Store) {
    let (a, b) = (account(s, 731), account(s, 732));
    assert_eq!(s.requeue_running_events().unwrap(), 0, "an empty queue");
    for (id, due) in [("e1", 10), ("e2", 20), ("e3", 30), ("e4", 40)] {
        s.enqueue_event(&event(&a, id, due)).unwrap();
    }
    s.enqueue_event(&event(&b, "e5", 50)).unwrap();
    s.enqueue_event(&event(&a, "later", 1_000)).unwrap();
    let claimed = s.claim_events(100, 10).unwrap();
    assert_eq!(ids(&claimed), set(["e1", "e2", "e3", "e4", "e5"]));
    let mut done = claimed.iter().find(|e| e.id == "e1").unwrap().clone();
    (done.state, done.finished_ms) = (EventState::Succeeded, Some(5));
    s.update_event(&done).unwrap();
    let mut attempted = claimed.iter().find(|e| e.id == "e2").unwrap().clone();
    (attempted.attempts, attempted.result) = (1, Some(b"partial".to_vec()));
    s.update_event(&attempted).unwrap();

    assert_eq!(s.requeue_running_events().unwrap(), 4, "e2 to e5, of every account");
    assert_eq!(s.requeue_running_events().unwrap(), 0, "nothing is running any more");
    assert_eq!(s.get_event("e2").unwrap(), Some(EventRecord { state: EventState::Queued, ..attempted }));
    assert_eq!(s.get_event("e1").unwrap(), Some(done), "a finished event stays finished");
    assert_eq!(s.get_event("later").unwrap(), Some(event(&a, "later", 1_000)), "a queued event is untouched");
    assert_eq!(ids(&s.claim_events(100, 10).unwrap()), set(["e2", "e3", "e4", "e5"]), "claimable again");
}

/// Many invokers claiming at once: every due event is claimed exactly once.
pub fn concurrent_claims_take_each_event_once(s: &dyn Store) {
    const THREADS: usize = 8;
    const EVENTS: usize = 60;
    let a = account(s, 741);
    for i in 0..EVENTS {
        s.enqueue_event(&event(&a, &format!("e{i:03}"), crate::fixtures::ms(u64::try_from(i % 7).unwrap()))).unwrap();
    }
    s.enqueue_event(&event(&a, "not-due", 1_000)).unwrap();
    let claimed = race(THREADS, |_| {
        let mut mine = vec![];
        // Every non-empty batch takes at least one of the events: more rounds than events means a claim
        // handed out an event again (a bound, so a broken backend fails instead of hanging).
        for _ in 0..=EVENTS {
            let batch = s.claim_events(100, 3).unwrap();
            if batch.is_empty() {
                return mine;
            }
            assert!(batch.iter().all(|e| e.state == EventState::Running));
            mine.extend(batch.into_iter().map(|e| e.id));
        }
        panic!("claims never ran dry: events are claimed again ({} claimed by this thread)", mine.len());
    });
    let all: Vec<&String> = claimed.iter().flatten().collect();
    let unique: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), EVENTS, "no event claimed twice: {claimed:?}");
    assert_eq!(unique.len(), EVENTS);
    assert!(!unique.contains(&"not-due".to_string()));
    assert_eq!(s.get_event("not-due").unwrap().unwrap().state, EventState::Queued);
    assert_eq!(s.requeue_running_events().unwrap(), EVENTS);
}

/// Finishing an event with a follow-up (its record on the way to a destination) saves both at once; a
/// second finish with the same follow-up (the event ran again) saves the outcome and queues nothing more.
pub fn finishing_an_event_queues_its_follow_up_once(s: &dyn Store) {
    let a = account(s, 708);
    s.enqueue_event(&event(&a, "ran", 10)).unwrap();
    let mut done = s.claim_events(10, 1).unwrap().remove(0);
    (done.state, done.attempts, done.finished_ms, done.executed_version) =
        (EventState::Failed, 2, Some(20), Some("3".into()));
    let follow_up = EventRecord {
        reference: "arn:aws:lambda:us-east-1:000000000000:function:sink".into(),
        ..event(&a, "ran-record", 20)
    };
    s.finish_event(&done, &follow_up).unwrap();
    assert_eq!(s.get_event("ran").unwrap().as_ref(), Some(&done), "every field, the version that ran included");
    assert_eq!(s.get_event("ran-record").unwrap().as_ref(), Some(&follow_up));
    assert_eq!(s.failed_events(&a, None, 10).unwrap(), [done.clone()], "the failed event is kept");
    assert_eq!(ids(&s.claim_events(20, 10).unwrap()), set(["ran-record"]), "the follow-up is queued");

    done.attempts = 3;
    s.finish_event(&done, &follow_up).unwrap();
    assert_eq!(s.get_event("ran").unwrap().unwrap().attempts, 3, "the outcome is saved again");
    assert_eq!(s.get_event("ran-record").unwrap().unwrap().state, EventState::Running, "not queued a second time");
    assert!(s.claim_events(1_000, 10).unwrap().is_empty());
}

/// The failed-event store: an account's failed events list by id in pages (never another account's, never
/// one that is not failed); a redrive puts one back in the queue, due now, attempts counted afresh, and it
/// is then claimed like any other; only a failed event is redriven or deleted.
pub fn failed_events_list_redrive_and_delete(s: &dyn Store) {
    let (a, b) = (account(s, 706), account(s, 707));
    let fail = |account, id: &str| {
        let mut e = event(account, id, 10);
        s.enqueue_event(&e).unwrap();
        (e.state, e.attempts, e.error_type, e.result, e.finished_ms) =
            (EventState::Failed, 3, Some("Unhandled".into()), Some(b"{}".to_vec()), Some(50));
        s.update_event(&e).unwrap();
        e
    };
    let (f1, f2) = (fail(&a, "f1"), fail(&a, "f2"));
    fail(&a, "f3");
    fail(&b, "fb");
    s.enqueue_event(&event(&a, "queued", 10)).unwrap();
    let page = |after: Option<&str>, limit| -> Vec<String> {
        s.failed_events(&a, after, limit).unwrap().into_iter().map(|e| e.id).collect()
    };
    assert_eq!(page(None, 10), ["f1", "f2", "f3"]);
    assert_eq!(page(None, 2), ["f1", "f2"]);
    assert_eq!(page(Some("f2"), 2), ["f3"]);
    assert_eq!(s.failed_events(&a, None, 10).unwrap()[0], f1, "every field");

    let back = s.redrive_event("f2", 900).unwrap().expect("f2 was failed");
    assert_eq!((back.state, back.attempts, back.next_attempt_ms), (EventState::Queued, 0, 900));
    assert_eq!((&back.error_type, &back.result, back.finished_ms), (&None, &None, None));
    assert_eq!((&back.payload, back.created_ms), (&f2.payload, f2.created_ms), "the invocation is the same");
    assert_eq!(s.get_event("f2").unwrap().as_ref(), Some(&back));
    assert_eq!(s.redrive_event("f2", 901).unwrap(), None, "queued now: not redriven again");
    assert_eq!(page(None, 10), ["f1", "f3"]);
    assert_eq!(ids(&s.claim_events(1000, 10).unwrap()), set(["queued", "f2"]), "a redriven event is claimed");
    assert_eq!(s.redrive_event("queued", 1000).unwrap(), None, "only a failed event is redriven");
    assert_eq!(s.redrive_event("nope", 1000).unwrap(), None);

    assert!(!s.delete_failed_event("queued").unwrap(), "only a failed event is deleted");
    assert!(s.delete_failed_event("f3").unwrap());
    assert!(!s.delete_failed_event("f3").unwrap());
    assert_eq!(s.get_event("f3").unwrap(), None);
    assert_eq!(page(None, 10), ["f1"]);
    assert_eq!(s.get_event("f1").unwrap(), Some(f1));
    assert_eq!(s.failed_events(&b, None, 10).unwrap().len(), 1, "the other account's is its own");
}

contract!(
    failed_events_list_redrive_and_delete,
    finishing_an_event_queues_its_follow_up_once,
    events_read_back_as_enqueued,
    claims_take_due_queued_events_earliest_first,
    updates_save_the_outcome_and_retries_wait,
    requeue_puts_running_events_back,
    concurrent_claims_take_each_event_once,
);
