//! Schedules: created once per name and group, read back whole, listed per account in name order, kept in
//! the pending list while they will fire, and rewritten only from the revision that was read, together with
//! the fire's event.

use stoke_core::AccountId;
use stoke_store::{EventState, ScheduleRecord, Store, StoreError};

use crate::fixtures::{account, event};

fn schedule(account: &AccountId, name: &str, next: Option<i64>) -> ScheduleRecord {
    ScheduleRecord {
        account: account.clone(),
        group: "default".into(),
        name: name.into(),
        expression: "rate(5 minutes)".into(),
        timezone: "UTC".into(),
        description: String::new(),
        enabled: true,
        start_ms: Some(1_000),
        end_ms: None,
        window_min: 0,
        target: format!("arn:aws:lambda:us-east-1:{account}:function:f"),
        input: Some("{\"n\":1}".into()),
        max_retries: 185,
        max_age_s: 86_400,
        delete_after_completion: false,
        created_ms: 1,
        modified_ms: 1,
        next_fire_ms: next,
        last_fire_ms: None,
        last_fired_at_ms: None,
        last_event: None,
        fires: 0,
        missed: 0,
        revision: 1,
    }
}

pub fn schedules_are_created_once_read_back_and_listed(s: &dyn Store) {
    let (a, b) = (account(s, 801), account(s, 802));
    for name in ["nightly", "hourly", "hourly-2", "weekly"] {
        s.insert_schedule(&schedule(&a, name, Some(10))).unwrap();
    }
    s.insert_schedule(&schedule(&b, "nightly", None)).unwrap();
    assert!(matches!(s.insert_schedule(&schedule(&a, "nightly", None)), Err(StoreError::Conflict(_))));
    assert_eq!(s.get_schedule(&a, "default", "nightly").unwrap(), Some(schedule(&a, "nightly", Some(10))));
    assert_eq!(s.get_schedule(&a, "other", "nightly").unwrap(), None, "groups are apart");
    let names = |prefix, after, limit| -> Vec<String> {
        s.list_schedules(&a, Some("default"), prefix, after, limit).unwrap().into_iter().map(|x| x.name).collect()
    };
    assert_eq!(names("", None, 10), ["hourly", "hourly-2", "nightly", "weekly"]);
    assert_eq!(names("hourly", None, 10), ["hourly", "hourly-2"]);
    assert_eq!(names("", Some("hourly-2"), 1), ["nightly"]);
    assert_eq!(s.list_schedules(&b, None, "", None, 10).unwrap().len(), 1, "another account's are its own");
    let pending: Vec<String> = s.pending_schedules().unwrap().into_iter().map(|x| x.name).collect();
    assert!(pending.iter().filter(|n| n.starts_with("hourly")).count() >= 2, "{pending:?}");
    assert!(s.pending_schedules().unwrap().iter().all(|x| x.next_fire_ms.is_some()), "only those that will fire");
    assert!(s.delete_schedule(&a, "default", "weekly").unwrap());
    assert!(!s.delete_schedule(&a, "default", "weekly").unwrap());
    assert_eq!(s.get_schedule(&a, "default", "weekly").unwrap(), None);
}

pub fn a_fire_rewrites_its_schedule_from_the_revision_read_with_its_event(s: &dyn Store) {
    let a = account(s, 803);
    let first = schedule(&a, "every", Some(10));
    s.insert_schedule(&first).unwrap();
    let fired = ScheduleRecord {
        next_fire_ms: Some(20),
        last_fire_ms: Some(10),
        fires: 1,
        last_event: Some("fire-1".into()),
        revision: 2,
        ..first.clone()
    };
    let fire = event(&a, "fire-1", 10);
    s.update_schedule(&fired, 1, Some(&fire)).unwrap();
    assert_eq!(s.get_schedule(&a, "default", "every").unwrap(), Some(fired.clone()));
    assert_eq!(s.get_event("fire-1").unwrap(), Some(fire.clone()), "the fire's event is queued with it");
    assert_eq!(s.claim_events(10, 10).unwrap()[0].state, EventState::Running);

    // Another writer (a node, a restart) that read revision 1 fires again: refused, nothing queued.
    let stale = ScheduleRecord { last_event: Some("fire-again".into()), revision: 2, ..first.clone() };
    let again = event(&a, "fire-again", 10);
    assert!(matches!(s.update_schedule(&stale, 1, Some(&again)), Err(StoreError::RevisionMismatch(_))));
    assert_eq!(s.get_event("fire-again").unwrap(), None);
    assert_eq!(s.get_schedule(&a, "default", "every").unwrap(), Some(fired.clone()));

    // An update without a fire; a schedule that is gone is not found.
    let done = ScheduleRecord { next_fire_ms: None, revision: 3, ..fired };
    s.update_schedule(&done, 2, None).unwrap();
    assert!(s.pending_schedules().unwrap().iter().all(|x| x.name != "every" || x.account != a));
    assert!(s.delete_schedule(&a, "default", "every").unwrap());
    assert!(matches!(s.update_schedule(&done, 3, None), Err(StoreError::NotFound(_))));
}

/// Fires written together: each from its own revision; a stale one writes nothing of it and the others
/// stand.
pub fn fires_written_together_each_check_their_own_revision(s: &dyn Store) {
    let a = account(s, 804);
    let (x, y, z) = (schedule(&a, "x", Some(10)), schedule(&a, "y", Some(10)), schedule(&a, "z", Some(10)));
    for one in [&x, &y, &z] {
        s.insert_schedule(one).unwrap();
    }
    let fired = |r: &ScheduleRecord| ScheduleRecord { next_fire_ms: Some(20), fires: 1, revision: 2, ..r.clone() };
    let (fx, fy, fz) = (fired(&x), fired(&y), fired(&z));
    let (ex, ey, ez) = (event(&a, "fx", 10), event(&a, "fy", 10), event(&a, "fz", 10));
    let written = s.fire_schedules(&[(&fx, 1, Some(&ex)), (&fy, 7, Some(&ey)), (&fz, 1, Some(&ez))]).unwrap();
    assert_eq!(written, [true, false, true]);
    assert_eq!(s.get_schedule(&a, "default", "x").unwrap(), Some(fx));
    assert_eq!(s.get_schedule(&a, "default", "y").unwrap(), Some(y), "the stale one is as it was");
    assert_eq!(s.get_event("fy").unwrap(), None, "and queued nothing");
    assert!(s.get_event("fx").unwrap().is_some() && s.get_event("fz").unwrap().is_some());
    let gone = schedule(&a, "gone", Some(10));
    assert_eq!(s.fire_schedules(&[(&gone, 1, None)]).unwrap(), [false], "a schedule that is not there");
}

contract!(
    schedules_are_created_once_read_back_and_listed,
    a_fire_rewrites_its_schedule_from_the_revision_read_with_its_event,
    fires_written_together_each_check_their_own_revision,
);
