//! The asynchronous queue: `events/<id>` holds each invocation; `event-queue/<id>` (its due time) lists the
//! queued ones and `event-running/<id>` (the node that claimed it) the claimed ones, so neither a claim nor a
//! restart reads the finished ones, and a restarting node requeues only what it had claimed.

use super::{absent, delete, put, unchanged, EtcdStore};
use stoke_core::AccountId;

use crate::{EventRecord, EventState, EventStore, Result, StoreError};

impl EtcdStore {
    /// The index writes that put `e` in the list of its state (and out of the others).
    pub(super) fn event_index_ops(&self, e: &EventRecord) -> Result<Vec<etcd_client::TxnOp>> {
        let queue = self.keys.key(&["event-queue", &e.id]);
        let running = self.keys.key(&["event-running", &e.id]);
        let failed = self.failed_key(e);
        Ok(match e.state {
            EventState::Queued => vec![put(&queue, &e.next_attempt_ms)?, delete(&running), delete(&failed)],
            EventState::Running => vec![delete(&queue), put(&running, &self.owner)?, delete(&failed)],
            EventState::Succeeded => vec![delete(&queue), delete(&running), delete(&failed)],
            EventState::Failed => vec![delete(&queue), delete(&running), put(&failed, &e.finished_ms)?],
        })
    }

    /// `event-failed/<account>/<id>`: the account's failed events (the failed-event store), by id.
    fn failed_key(&self, e: &EventRecord) -> String {
        self.keys.key(&["event-failed", e.account.as_str(), &e.id])
    }
}

impl EtcdStore {
    /// Moves the event named by the index entry `entry` (under `event-queue/` or `event-running/`) to
    /// `state`, if neither it nor its entry changed since read; the event as moved, or `None` if another
    /// writer got there first (or it is gone).
    pub(super) fn move_event(&self, entry: &(String, i64), state: EventState) -> Result<Option<EventRecord>> {
        let id = entry.0.rsplit('/').next().unwrap_or_default();
        let key = self.keys.key(&["events", id]);
        let Some(stored) = self.get::<EventRecord>(&key)? else { return Ok(None) };
        let mut e = stored.value;
        e.state = state;
        let mut ops = vec![put(&key, &e)?];
        ops.extend(self.event_index_ops(&e)?);
        let when = vec![unchanged(&entry.0, entry.1), unchanged(&key, stored.mod_revision)];
        Ok(self.commit(when, ops)?.then_some(e))
    }
}

impl EventStore for EtcdStore {
    fn enqueue_event(&self, e: &EventRecord) -> Result<()> {
        let key = self.keys.key(&["events", &e.id]);
        let mut ops = vec![put(&key, e)?];
        ops.extend(self.event_index_ops(e)?);
        if self.commit(vec![absent(&key)], ops)? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("event {}", e.id)))
        }
    }

    fn claim_events(&self, now_ms: i64, limit: usize) -> Result<Vec<EventRecord>> {
        let (queued, _) = self.list::<i64>(&self.keys.under(&["event-queue"]))?;
        let mut due: Vec<_> = queued.into_iter().filter(|r| r.value <= now_ms).collect();
        due.sort_by_key(|r| r.value);
        let mut claimed = Vec::new();
        for entry in due {
            if claimed.len() >= limit {
                break;
            }
            // Claimed once: whoever commits first takes it, the others skip it.
            if let Some(e) = self.move_event(&(entry.key, entry.mod_revision), EventState::Running)? {
                claimed.push(e);
            }
        }
        Ok(claimed)
    }

    fn update_event(&self, e: &EventRecord) -> Result<()> {
        let key = self.keys.key(&["events", &e.id]);
        let mut ops = vec![put(&key, e)?];
        ops.extend(self.event_index_ops(e)?);
        if self.commit(vec![super::present(&key)], ops)? {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("event {}", e.id)))
        }
    }

    fn finish_event(&self, e: &EventRecord, follow_up: &EventRecord) -> Result<()> {
        let key = self.keys.key(&["events", &e.id]);
        let next = self.keys.key(&["events", &follow_up.id]);
        let mut ops = vec![put(&key, e)?, put(&next, follow_up)?];
        ops.extend(self.event_index_ops(e)?);
        ops.extend(self.event_index_ops(follow_up)?);
        if self.commit(vec![super::present(&key), absent(&next)], ops)? {
            return Ok(());
        }
        // The follow-up is there already (a node that ran this event before): save the outcome alone.
        if self.get::<EventRecord>(&next)?.is_some() {
            return self.update_event(e);
        }
        Err(StoreError::NotFound(format!("event {}", e.id)))
    }

    fn get_event(&self, id: &str) -> Result<Option<EventRecord>> {
        Ok(self.get(&self.keys.key(&["events", id]))?.map(|r: super::Read<EventRecord>| r.value))
    }

    fn failed_events(&self, account: &AccountId, after: Option<&str>, limit: usize) -> Result<Vec<EventRecord>> {
        let (failed, _) = self.list::<Option<i64>>(&self.keys.under(&["event-failed", account.as_str()]))?;
        let mut out = Vec::new();
        for entry in failed {
            let id = entry.key.rsplit('/').next().unwrap_or_default().to_string();
            if after.is_some_and(|a| id.as_str() <= a) {
                continue;
            }
            if out.len() >= limit {
                break;
            }
            // An entry whose event is gone or moved on meanwhile is not listed.
            if let Some(e) = self.get_event(&id)?.filter(|e| e.state == EventState::Failed) {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn redrive_event(&self, id: &str, now_ms: i64) -> Result<Option<EventRecord>> {
        let key = self.keys.key(&["events", id]);
        let Some(stored) = self.get::<EventRecord>(&key)? else { return Ok(None) };
        if stored.value.state != EventState::Failed {
            return Ok(None);
        }
        let e = crate::redriven(stored.value, now_ms);
        let mut ops = vec![put(&key, &e)?];
        ops.extend(self.event_index_ops(&e)?);
        Ok(self.commit(vec![unchanged(&key, stored.mod_revision)], ops)?.then_some(e))
    }

    fn delete_failed_event(&self, id: &str) -> Result<bool> {
        let key = self.keys.key(&["events", id]);
        let Some(stored) = self.get::<EventRecord>(&key)? else { return Ok(false) };
        if stored.value.state != EventState::Failed {
            return Ok(false);
        }
        let ops = vec![delete(&key), delete(&self.failed_key(&stored.value))];
        self.commit(vec![unchanged(&key, stored.mod_revision)], ops)
    }

    fn requeue_running_events(&self) -> Result<usize> {
        let (running, _) = self.list::<String>(&self.keys.under(&["event-running"]))?;
        let mut requeued = 0;
        // Only this node's: another live node is still running its own.
        for entry in running.into_iter().filter(|r| r.value == self.owner) {
            if self.move_event(&(entry.key, entry.mod_revision), EventState::Queued)?.is_some() {
                requeued += 1;
            }
        }
        Ok(requeued)
    }
}
