//! The queue of asynchronous invocations.

use rusqlite::{params, OptionalExtension, Row};

use stoke_core::AccountId;

use super::{account_id, corrupt, SqliteStore};
use crate::{EventRecord, EventState, EventStore, Result};

const EVENT_COLS: &str =
    "id, account_id, reference, payload, attempts, next_attempt_ms, state, error_type, result, created_ms, finished_ms, \
     executed_version, max_retries, max_age_s";

fn event_row(r: &Row<'_>) -> rusqlite::Result<EventRecord> {
    let state: String = r.get("state")?;
    Ok(EventRecord {
        id: r.get("id")?,
        account: account_id(r.get("account_id")?)?,
        reference: r.get("reference")?,
        payload: r.get("payload")?,
        attempts: r.get("attempts")?,
        next_attempt_ms: r.get("next_attempt_ms")?,
        state: EventState::parse(&state).ok_or_else(|| corrupt("event state", &state))?,
        error_type: r.get("error_type")?,
        result: r.get("result")?,
        created_ms: r.get("created_ms")?,
        finished_ms: r.get("finished_ms")?,
        executed_version: r.get("executed_version")?,
        max_retries: r.get("max_retries")?,
        max_age_s: r.get("max_age_s")?,
    })
}

/// Inserts an event (`or` is `""`, or `"OR IGNORE"` to leave one with the same id as it is).
pub(super) fn insert_event(tx: &rusqlite::Transaction<'_>, e: &EventRecord, or: &str) -> Result<()> {
    tx.execute(
        &format!("INSERT {or} INTO events ({EVENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
        params![
            e.id,
            e.account.as_str(),
            e.reference,
            e.payload,
            e.attempts,
            e.next_attempt_ms,
            e.state.as_str(),
            e.error_type,
            e.result,
            e.created_ms,
            e.finished_ms,
            e.executed_version,
            e.max_retries,
            e.max_age_s
        ],
    )?;
    Ok(())
}

/// Saves an event's attempts, state and outcome.
fn save_event(tx: &rusqlite::Transaction<'_>, e: &EventRecord) -> Result<()> {
    tx.execute(
        "UPDATE events SET attempts = ?2, next_attempt_ms = ?3, state = ?4, error_type = ?5, result = ?6,
                finished_ms = ?7, executed_version = ?8 WHERE id = ?1",
        params![
            e.id,
            e.attempts,
            e.next_attempt_ms,
            e.state.as_str(),
            e.error_type,
            e.result,
            e.finished_ms,
            e.executed_version
        ],
    )?;
    Ok(())
}

impl EventStore for SqliteStore {
    fn enqueue_event(&self, e: &EventRecord) -> Result<()> {
        self.write(|tx| insert_event(tx, e, ""))
    }

    fn finish_event(&self, e: &EventRecord, follow_up: &EventRecord) -> Result<()> {
        self.write(|tx| {
            save_event(tx, e)?;
            insert_event(tx, follow_up, "OR IGNORE")
        })
    }

    fn claim_events(&self, now_ms: i64, limit: usize) -> Result<Vec<EventRecord>> {
        self.write(|tx| {
            let mut stmt = tx.prepare(&format!(
                "UPDATE events SET state = 'running' WHERE id IN (
                     SELECT id FROM events WHERE state = 'queued' AND next_attempt_ms <= ?1
                     ORDER BY next_attempt_ms LIMIT ?2)
                 RETURNING {EVENT_COLS}"
            ))?;
            let rows =
                stmt.query_map(params![now_ms, limit as i64], event_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn update_event(&self, e: &EventRecord) -> Result<()> {
        self.write(|tx| save_event(tx, e))
    }

    fn get_event(&self, id: &str) -> Result<Option<EventRecord>> {
        let conn = self.lock();
        Ok(conn.query_row(&format!("SELECT {EVENT_COLS} FROM events WHERE id = ?1"), [id], event_row).optional()?)
    }

    fn requeue_running_events(&self) -> Result<usize> {
        self.write(|tx| Ok(tx.execute("UPDATE events SET state = 'queued' WHERE state = 'running'", [])?))
    }

    fn failed_events(&self, account: &AccountId, after: Option<&str>, limit: usize) -> Result<Vec<EventRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {EVENT_COLS} FROM events WHERE account_id = ?1 AND state = 'failed' AND id > ?2
             ORDER BY id LIMIT ?3"
        ))?;
        let rows = stmt
            .query_map(params![account.as_str(), after.unwrap_or(""), limit as i64], event_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn redrive_event(&self, id: &str, now_ms: i64) -> Result<Option<EventRecord>> {
        self.write(|tx| {
            let failed = tx
                .query_row(
                    &format!("SELECT {EVENT_COLS} FROM events WHERE id = ?1 AND state = 'failed'"),
                    [id],
                    event_row,
                )
                .optional()?;
            let Some(e) = failed else { return Ok(None) };
            let e = crate::redriven(e, now_ms);
            tx.execute(
                "UPDATE events SET attempts = ?2, next_attempt_ms = ?3, state = ?4, error_type = NULL, result = NULL,
                        finished_ms = NULL WHERE id = ?1",
                params![e.id, e.attempts, e.next_attempt_ms, e.state.as_str()],
            )?;
            Ok(Some(e))
        })
    }

    fn delete_failed_event(&self, id: &str) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM events WHERE id = ?1 AND state = 'failed'", [id])? == 1))
    }
}

#[cfg(test)]
mod tests {
    use stoke_core::AccountId;

    use super::*;
    use crate::sqlite::fixtures::{account, store};

    #[test]
    fn events_are_claimed_once_and_requeued_after_a_crash() {
        let (_d, s) = store();
        let a = account(&s, 1);
        for (i, due) in [(1, 100), (2, 200), (3, 900)] {
            s.enqueue_event(&EventRecord {
                id: format!("e{i}"),
                account: a.clone(),
                reference: "f".into(),
                payload: b"{}".to_vec(),
                attempts: 0,
                next_attempt_ms: due,
                state: EventState::Queued,
                error_type: None,
                result: None,
                created_ms: 1,
                finished_ms: None,
                executed_version: None,
                max_retries: None,
                max_age_s: None,
            })
            .unwrap();
        }
        let claimed = s.claim_events(500, 10).unwrap();
        assert_eq!(claimed.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["e1", "e2"]);
        assert!(claimed.iter().all(|e| e.state == EventState::Running));
        assert!(s.claim_events(500, 10).unwrap().is_empty(), "running events are not claimed twice");
        let mut done = claimed[0].clone();
        done.state = EventState::Succeeded;
        done.result = Some(b"42".to_vec());
        s.update_event(&done).unwrap();
        // A crash leaves e2 running: start-up puts it back in the queue.
        assert_eq!(s.requeue_running_events().unwrap(), 1);
        assert_eq!(s.claim_events(500, 10).unwrap()[0].id, "e2");
        assert_eq!(s.get_event("e1").unwrap().unwrap().result.as_deref(), Some(&b"42"[..]));
    }

    fn event(account: &AccountId, id: &str, due: i64) -> EventRecord {
        EventRecord {
            id: id.into(),
            account: account.clone(),
            reference: "f:prod".into(),
            payload: format!("{{\"id\":\"{id}\"}}").into_bytes(),
            attempts: 0,
            next_attempt_ms: due,
            state: EventState::Queued,
            error_type: None,
            result: None,
            created_ms: 3,
            finished_ms: None,
            executed_version: None,
            max_retries: None,
            max_age_s: None,
        }
    }

    #[test]
    fn a_retried_event_waits_for_its_next_attempt_and_keeps_its_outcome() {
        let (_d, s) = store();
        let a = account(&s, 1);
        let (early, late) = (event(&a, "early", 10), event(&a, "late", 20));
        s.enqueue_event(&late).unwrap();
        s.enqueue_event(&early).unwrap();
        assert_eq!(s.get_event("early").unwrap(), Some(early.clone()));
        assert_eq!(s.get_event("nope").unwrap(), None);
        assert!(s.claim_events(9, 10).unwrap().is_empty(), "nothing is due yet");

        let claimed = s.claim_events(100, 1).unwrap();
        assert_eq!(claimed.len(), 1, "the limit holds");
        let mut retry = claimed[0].clone();
        assert_eq!((retry.id.as_str(), retry.state), ("early", EventState::Running), "the earliest due first");
        (retry.attempts, retry.state, retry.next_attempt_ms) = (1, EventState::Queued, 500);
        (retry.error_type, retry.result) = (Some("Unhandled".into()), Some(b"boom".to_vec()));
        s.update_event(&retry).unwrap();
        assert_eq!(s.get_event("early").unwrap(), Some(retry.clone()));

        let ids = |now| -> Vec<String> { s.claim_events(now, 10).unwrap().into_iter().map(|e| e.id).collect() };
        assert_eq!(ids(100), ["late"], "the retry waits for its next attempt");
        assert_eq!(ids(500), ["early"]);

        let mut failed = retry;
        (failed.attempts, failed.state, failed.finished_ms) = (2, EventState::Failed, Some(501));
        s.update_event(&failed).unwrap();
        assert_eq!(s.get_event("early").unwrap(), Some(failed));
        assert_eq!(s.requeue_running_events().unwrap(), 1, "only late is still running");
        assert_eq!(ids(10_000), ["late"], "a finished event is never claimed again");
    }
}
