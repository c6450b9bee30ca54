//! Lambda durable executions: `durable/<account>/<id>` (the record, its revision checked on every write),
//! `durable-names/<account>/<function>/<name>` (names are unique per function), `durable-ops/<id>/<seq>` and
//! `durable-events/<id>/<event id>`: one key per operation and per event, so no value grows with a long
//! execution.
//!
//! A change too large for one etcd transaction (etcd takes 128 operations in one by default; the SDKs send up
//! to 250 updates in a checkpoint) commits as one key, `durable-journal/<id>`, holding its rows, in the same
//! transaction as the record: it is the change, atomically. The rows are then copied to their own keys in
//! transactions of their own and the journal deleted; until that is done (a crash between), every read lays
//! the journal's rows over the keys', and the next write of the execution finishes the copy first.

use stoke_core::{AccountId, FunctionName};

use serde::{Deserialize, Serialize};

use super::{absent, delete, delete_prefix, num, put, unchanged, EtcdStore, Read};
use crate::{DurableEventRow, DurableOpRow, DurableRecord, DurableStore, Result, StoreError};

/// Keys one change writes at most in its own transaction; a larger one goes through the journal.
const DIRECT_KEYS: usize = 100;
/// Keys copied from a journal per transaction.
const COPY_KEYS: usize = 100;

/// The rows of a change committed with its record, not yet copied to their own keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Journal {
    ops: Vec<DurableOpRow>,
    events: Vec<DurableEventRow>,
}

impl EtcdStore {
    fn durable_key(&self, account: &AccountId, id: &str) -> String {
        self.keys.key(&["durable", account.as_str(), id])
    }

    /// The keys to write for `ops` and `events`, and the conditions (no event is there yet).
    fn durable_rows(
        &self,
        id: &str,
        ops: &[DurableOpRow],
        events: &[DurableEventRow],
    ) -> Result<(Vec<etcd_client::Compare>, Vec<etcd_client::TxnOp>)> {
        let mut when = Vec::with_capacity(events.len());
        let mut writes = Vec::with_capacity(ops.len() + events.len());
        for o in ops {
            writes.push(put(&self.keys.key(&["durable-ops", id, &num(u64::from(o.seq))]), o)?);
        }
        let mut seen = std::collections::HashSet::new();
        for e in events {
            if !seen.insert(e.event_id) {
                return Err(StoreError::Conflict(format!("event {} of durable execution {id}", e.event_id)));
            }
            let key = self.keys.key(&["durable-events", id, &num(e.event_id)]);
            when.push(absent(&key));
            writes.push(put(&key, e)?);
        }
        Ok((when, writes))
    }

    fn journal_key(&self, id: &str) -> String {
        self.keys.key(&["durable-journal", id])
    }

    /// Copies a journal left by a large change to its rows' own keys and deletes it.
    fn settle_journal(&self, id: &str) -> Result<()> {
        let key = self.journal_key(id);
        let Some(journal) = self.get::<Journal>(&key)? else { return Ok(()) };
        let ops =
            journal.value.ops.iter().map(|o| put(&self.keys.key(&["durable-ops", id, &num(u64::from(o.seq))]), o));
        let events =
            journal.value.events.iter().map(|e| put(&self.keys.key(&["durable-events", id, &num(e.event_id)]), e));
        let writes: Vec<etcd_client::TxnOp> = ops.chain(events).collect::<Result<_>>()?;
        // Each copy only while the journal is still there: once another node has copied and deleted it, a
        // later change may have rewritten these keys, which an old copy must not overwrite.
        let mut writes = writes.into_iter().peekable();
        while writes.peek().is_some() {
            let chunk: Vec<etcd_client::TxnOp> = writes.by_ref().take(COPY_KEYS).collect();
            if !self.commit(vec![unchanged(&key, journal.mod_revision)], chunk)? {
                return Ok(());
            }
        }
        self.commit(vec![unchanged(&key, journal.mod_revision)], vec![delete(&key)])?;
        Ok(())
    }

    /// A journal not yet copied, if any.
    fn pending_journal(&self, id: &str) -> Result<Journal> {
        Ok(self.get::<Journal>(&self.journal_key(id))?.map(|j| j.value).unwrap_or_default())
    }

    /// The first of `events` already stored, as the conflict it is.
    fn durable_event_conflict(&self, id: &str, events: &[DurableEventRow]) -> Result<Option<StoreError>> {
        for e in events {
            let key = self.keys.key(&["durable-events", id, &num(e.event_id)]);
            if self.get::<serde_json::Value>(&key)?.is_some() {
                return Ok(Some(StoreError::Conflict(format!("event {} of durable execution {id}", e.event_id))));
            }
        }
        Ok(None)
    }
}

impl DurableStore for EtcdStore {
    fn insert_durable(&self, e: &DurableRecord, ops: &[DurableOpRow], events: &[DurableEventRow]) -> Result<()> {
        let key = self.durable_key(&e.account, &e.id);
        let name = self.keys.key(&["durable-names", e.account.as_str(), e.function.as_str(), &e.name]);
        let (mut when, mut writes) = self.durable_rows(&e.id, ops, events)?;
        when.extend([absent(&key), absent(&name)]);
        writes.extend([put(&key, e)?, put(&name, &e.id)?]);
        if self.commit(when, writes)? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("durable execution {}", e.name)))
        }
    }

    fn record_durable(
        &self,
        e: &DurableRecord,
        expected_revision: u64,
        ops: &[DurableOpRow],
        events: &[DurableEventRow],
    ) -> Result<()> {
        let key = self.durable_key(&e.account, &e.id);
        let what = || format!("durable execution {}", e.id);
        // A journal left by an earlier change is copied first: this change's rows land over its own.
        self.settle_journal(&e.id)?;
        let large = ops.len() + events.len() + 1 > DIRECT_KEYS;
        self.retry(what, || {
            let Some(stored) = self.get::<DurableRecord>(&key)? else {
                return Err(StoreError::NotFound(what()));
            };
            if stored.value.revision != expected_revision {
                return Err(StoreError::RevisionMismatch(what()));
            }
            let (mut when, mut writes) = if large {
                // Its events are new by the revision checked; the journal is absent (settled above).
                let journal = self.journal_key(&e.id);
                let rows = Journal { ops: ops.to_vec(), events: events.to_vec() };
                (vec![absent(&journal)], vec![put(&journal, &rows)?])
            } else {
                self.durable_rows(&e.id, ops, events)?
            };
            when.push(unchanged(&key, stored.mod_revision));
            let next = DurableRecord { revision: expected_revision + 1, ..e.clone() };
            writes.push(put(&key, &next)?);
            if self.commit(when, writes)? {
                return Ok(Some(()));
            }
            // Lost to another write (read again), or an event is already there (refused).
            match self.durable_event_conflict(&e.id, events)? {
                Some(conflict) => Err(conflict),
                None => Ok(None),
            }
        })?;
        if large {
            // Committed: copying it now is tidiness; a reader already sees the rows through the journal.
            if let Err(err) = self.settle_journal(&e.id) {
                tracing::debug!(execution = %e.id, error = %err, "a durable journal is copied at the next write");
            }
        }
        Ok(())
    }

    fn get_durable(&self, account: &AccountId, id: &str) -> Result<Option<DurableRecord>> {
        Ok(self.get(&self.durable_key(account, id))?.map(|r: Read<DurableRecord>| r.value))
    }

    fn find_durable(&self, account: &AccountId, function: &FunctionName, name: &str) -> Result<Option<DurableRecord>> {
        let key = self.keys.key(&["durable-names", account.as_str(), function.as_str(), name]);
        match self.get::<String>(&key)? {
            Some(id) => self.get_durable(account, &id.value),
            None => Ok(None),
        }
    }

    fn durable_operations(&self, id: &str) -> Result<Vec<DurableOpRow>> {
        let journal = self.pending_journal(id)?;
        let (rows, _) = self.list::<DurableOpRow>(&self.keys.under(&["durable-ops", id]))?;
        let mut by_seq: std::collections::BTreeMap<u32, DurableOpRow> =
            rows.into_iter().map(|r| (r.value.seq, r.value)).collect();
        by_seq.extend(journal.ops.into_iter().map(|o| (o.seq, o)));
        Ok(by_seq.into_values().collect())
    }

    fn durable_events(&self, id: &str, after: u64, limit: usize) -> Result<Vec<DurableEventRow>> {
        let journal = self.pending_journal(id)?;
        let (rows, _) = self.list::<DurableEventRow>(&self.keys.under(&["durable-events", id]))?;
        let mut by_id: std::collections::BTreeMap<u64, DurableEventRow> =
            rows.into_iter().map(|r| (r.value.event_id, r.value)).collect();
        by_id.extend(journal.events.into_iter().map(|e| (e.event_id, e)));
        Ok(by_id.into_values().filter(|e| e.event_id > after).take(limit).collect())
    }

    fn list_durable(
        &self,
        account: &AccountId,
        function: &FunctionName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DurableRecord>> {
        let (rows, _) = self.list::<DurableRecord>(&self.keys.under(&["durable", account.as_str()]))?;
        let mut all: Vec<DurableRecord> =
            rows.into_iter().map(|r| r.value).filter(|d| &d.function == function).collect();
        all.sort_by(|a, b| (a.started_ms, &a.id).cmp(&(b.started_ms, &b.id)));
        let from = match after {
            Some(id) => all.iter().position(|d| d.id == id).map_or(all.len(), |i| i + 1),
            None => 0,
        };
        Ok(all.into_iter().skip(from).take(limit).collect())
    }

    fn running_durable(&self) -> Result<Vec<DurableRecord>> {
        let (rows, _) = self.list::<DurableRecord>(&self.keys.under(&["durable"]))?;
        let mut running: Vec<DurableRecord> =
            rows.into_iter().map(|r| r.value).filter(|d| d.status == "RUNNING").collect();
        running.sort_by(|a, b| (a.started_ms, &a.id).cmp(&(b.started_ms, &b.id)));
        Ok(running)
    }

    fn delete_expired_durable(&self, now_ms: i64, limit: usize) -> Result<Vec<DurableRecord>> {
        let (rows, _) = self.list::<DurableRecord>(&self.keys.under(&["durable"]))?;
        let mut expired: Vec<Read<DurableRecord>> =
            rows.into_iter().filter(|r| r.value.expires_ms.is_some_and(|t| t <= now_ms)).collect();
        expired.sort_by(|a, b| (a.value.expires_ms, &a.value.id).cmp(&(b.value.expires_ms, &b.value.id)));
        let mut deleted = Vec::new();
        for r in expired.into_iter().take(limit) {
            let x = r.value;
            let key = self.durable_key(&x.account, &x.id);
            let name = self.keys.key(&["durable-names", x.account.as_str(), x.function.as_str(), &x.name]);
            let writes = vec![
                delete(&key),
                delete(&name),
                delete_prefix(&self.keys.under(&["durable-ops", &x.id])),
                delete_prefix(&self.keys.under(&["durable-events", &x.id])),
                delete(&self.journal_key(&x.id)),
            ];
            // Another node deleting it first (or anything changing it) is not an error: it is not ours.
            if self.commit(vec![unchanged(&key, r.mod_revision)], writes)? {
                deleted.push(x);
            }
        }
        Ok(deleted)
    }
}
