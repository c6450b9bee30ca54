//! Workflows and executions: `workflows/<account>/<name>`, `executions/<account>/<id>`, `execution-ids/<id>`
//! (where an execution is), `execution-names/<account>/<workflow>/<name>` (names are unique per workflow),
//! `execution-owners/<id>` (the node running it, until it ends) and `history/<id>/<seq>`: one key per history
//! event, so no value grows with a long execution.

use stoke_core::AccountId;

use etcd_client::{Compare, CompareOp};

use super::{absent, num, present, put, unchanged, EtcdStore, Read};
use crate::{
    ExecutionRecord, ExecutionStatus, HistoryRow, MapRunRecord, Result, StoreError, WorkflowRecord, WorkflowStore,
};

impl EtcdStore {
    fn history_ops(
        &self,
        id: &str,
        events: &[HistoryRow],
    ) -> Result<(Vec<etcd_client::Compare>, Vec<etcd_client::TxnOp>)> {
        let mut when = Vec::with_capacity(events.len());
        let mut ops = Vec::with_capacity(events.len());
        let mut seen = std::collections::HashSet::new();
        for e in events {
            if !seen.insert(e.seq) {
                return Err(StoreError::Conflict(format!("history event {} of execution {id}", e.seq)));
            }
            let key = self.keys.key(&["history", id, &num(e.seq)]);
            when.push(absent(&key));
            ops.push(put(&key, e)?);
        }
        Ok((when, ops))
    }

    fn find_execution(&self, id: &str) -> Result<Option<Read<ExecutionRecord>>> {
        let Some(at) = self.get::<String>(&self.keys.key(&["execution-ids", id]))? else {
            return Ok(None);
        };
        self.get::<ExecutionRecord>(&at.value)
    }

    /// The first of `events` already recorded, as the conflict it is.
    fn history_conflict(&self, id: &str, events: &[HistoryRow]) -> Result<Option<StoreError>> {
        for e in events {
            if self.get::<serde_json::Value>(&self.keys.key(&["history", id, &num(e.seq)]))?.is_some() {
                return Ok(Some(StoreError::Conflict(format!("history event {} of execution {id}", e.seq))));
            }
        }
        Ok(None)
    }
}

impl WorkflowStore for EtcdStore {
    fn put_workflow(&self, w: &WorkflowRecord, expected_revision: Option<u64>) -> Result<()> {
        let key = self.keys.key(&["workflows", w.account.as_str(), &w.name]);
        let what = || format!("workflow {}", w.name);
        match expected_revision {
            None => {
                if self.commit(vec![absent(&key)], vec![put(&key, w)?])? {
                    Ok(())
                } else {
                    Err(StoreError::Conflict(what()))
                }
            }
            Some(expected) => self.replace_at_revision(&key, w, expected, &what, StoreError::NotFound),
        }
    }

    fn get_workflow(&self, account: &AccountId, name: &str) -> Result<Option<WorkflowRecord>> {
        Ok(self.get(&self.keys.key(&["workflows", account.as_str(), name]))?.map(|r: Read<WorkflowRecord>| r.value))
    }

    fn list_workflows(&self, account: &AccountId) -> Result<Vec<WorkflowRecord>> {
        let (rows, _) = self.list::<WorkflowRecord>(&self.keys.under(&["workflows", account.as_str()]))?;
        Ok(rows.into_iter().map(|r| r.value).collect())
    }

    fn delete_workflow(&self, account: &AccountId, name: &str) -> Result<bool> {
        let key = self.keys.key(&["workflows", account.as_str(), name]);
        let resp = self.run(move |mut kv| async move { kv.delete(key, None).await })?;
        Ok(resp.deleted() > 0)
    }

    fn insert_execution(&self, e: &ExecutionRecord, events: &[HistoryRow]) -> Result<()> {
        let k = &self.keys;
        let key = k.key(&["executions", e.account.as_str(), &e.id]);
        let id = k.key(&["execution-ids", &e.id]);
        let name = k.key(&["execution-names", e.account.as_str(), &e.workflow, &e.name]);
        let (mut when, mut ops) = self.history_ops(&e.id, events)?;
        when.extend([absent(&key), absent(&id), absent(&name)]);
        ops.extend([put(&key, e)?, put(&id, &key)?, put(&name, &e.id)?]);
        if e.status == ExecutionStatus::Running {
            ops.push(put(&k.key(&["execution-owners", &e.id]), &self.owner)?);
        }
        if self.commit(when, ops)? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("execution {}", e.name)))
        }
    }

    fn record_execution(&self, id: &str, events: &[HistoryRow], finished: Option<&ExecutionRecord>) -> Result<()> {
        self.retry(
            || format!("execution {id}"),
            || {
                let Some(stored) = self.find_execution(id)? else {
                    return Err(StoreError::NotFound(format!("execution {id}")));
                };
                let (mut when, mut ops) = self.history_ops(id, events)?;
                // Fenced: only the node that owns a running execution writes it (another may have taken it).
                let owner = self.keys.key(&["execution-owners", id]);
                if stored.value.status == ExecutionStatus::Running {
                    when.push(Compare::value(owner.as_str(), CompareOp::Equal, super::encode(&self.owner)?));
                }
                match finished {
                    Some(e) => {
                        if stored.value.status != ExecutionStatus::Running {
                            return Err(StoreError::Conflict(format!("execution {id} has already ended")));
                        }
                        let mut next = stored.value.clone();
                        next.status = e.status;
                        next.output.clone_from(&e.output);
                        next.error.clone_from(&e.error);
                        next.cause.clone_from(&e.cause);
                        next.stopped_ms = e.stopped_ms;
                        when.push(unchanged(&stored.key, stored.mod_revision));
                        ops.push(put(&stored.key, &next)?);
                        ops.push(super::delete(&self.keys.key(&["execution-owners", id])));
                    }
                    None => when.push(present(&stored.key)),
                }
                if self.commit(when, ops)? {
                    return Ok(Some(()));
                }
                if let Some(conflict) = self.history_conflict(id, events)? {
                    return Err(conflict);
                }
                let holder = self.get::<String>(&owner)?.map(|r| r.value);
                if stored.value.status == ExecutionStatus::Running && holder.as_deref() != Some(self.owner.as_str()) {
                    let by = holder.map_or_else(|| "no node".to_string(), |h| format!("node {h:?}"));
                    return Err(StoreError::Conflict(format!("execution {id} is run by {by} now, not by this node")));
                }
                Ok(None)
            },
        )
    }

    fn get_execution(&self, id: &str) -> Result<Option<ExecutionRecord>> {
        Ok(self.find_execution(id)?.map(|r| r.value))
    }

    fn find_execution(&self, account: &AccountId, workflow: &str, name: &str) -> Result<Option<ExecutionRecord>> {
        let Some(id) = self.get::<String>(&self.keys.key(&["execution-names", account.as_str(), workflow, name]))?
        else {
            return Ok(None);
        };
        Ok(self
            .get(&self.keys.key(&["executions", account.as_str(), &id.value]))?
            .map(|r: Read<ExecutionRecord>| r.value))
    }

    fn list_executions(
        &self,
        account: &AccountId,
        workflow: Option<&str>,
        status: Option<ExecutionStatus>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>> {
        let (rows, _) = self.list::<ExecutionRecord>(&self.keys.under(&["executions", account.as_str()]))?;
        let mut all: Vec<_> = rows.into_iter().map(|r| r.value).collect();
        // Newest first; `before` is the last one of the previous page (none when it is unknown, as on SQLite).
        all.sort_by(|a, b| (b.started_ms, &b.id).cmp(&(a.started_ms, &a.id)));
        let start = match before {
            None => 0,
            Some(id) => match all.iter().position(|e| e.id == id) {
                Some(i) => i + 1,
                None => return Ok(Vec::new()),
            },
        };
        Ok(all
            .into_iter()
            .skip(start)
            .filter(|e| workflow.is_none_or(|w| e.workflow == w) && status.is_none_or(|s| e.status == s))
            .take(limit)
            .collect())
    }

    /// `map-runs/<account>/<execution>/<id>`, written only while the execution exists.
    fn put_map_run(&self, m: &MapRunRecord) -> Result<()> {
        let k = &self.keys;
        let execution = k.key(&["executions", m.account.as_str(), &m.execution_id]);
        let key = k.key(&["map-runs", m.account.as_str(), &m.execution_id, &m.id]);
        if self.commit(vec![present(&execution)], vec![put(&key, m)?])? {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("execution {}", m.execution_id)))
        }
    }

    fn get_map_run(&self, account: &AccountId, id: &str) -> Result<Option<MapRunRecord>> {
        let (rows, _) = self.list::<MapRunRecord>(&self.keys.under(&["map-runs", account.as_str()]))?;
        Ok(rows.into_iter().map(|r| r.value).find(|m| m.id == id))
    }

    fn list_map_runs(&self, account: &AccountId, execution_id: &str) -> Result<Vec<MapRunRecord>> {
        let (rows, _) = self.list::<MapRunRecord>(&self.keys.under(&["map-runs", account.as_str(), execution_id]))?;
        let mut runs: Vec<MapRunRecord> = rows.into_iter().map(|r| r.value).collect();
        runs.sort_by(|a, b| (a.started_ms, &a.id).cmp(&(b.started_ms, &b.id)));
        Ok(runs)
    }

    /// This node's running executions: `execution-owners/<id>` lists who runs each one until it ends.
    fn running_executions(&self) -> Result<Vec<ExecutionRecord>> {
        let (owners, _) = self.list::<String>(&self.keys.under(&["execution-owners"]))?;
        let mut out = Vec::new();
        for owned in owners.into_iter().filter(|o| o.value == self.owner) {
            let id = owned.key.rsplit('/').next().unwrap_or_default();
            if let Some(e) = self.find_execution(id)?.map(|r| r.value) {
                if e.status == ExecutionStatus::Running {
                    out.push(e);
                }
            }
        }
        out.sort_by_key(|e| e.started_ms);
        Ok(out)
    }

    fn take_execution(&self, id: &str) -> Result<bool> {
        let owner = self.keys.key(&["execution-owners", id]);
        self.retry(
            || format!("execution {id}"),
            || {
                let Some(held) = self.get::<String>(&owner)? else { return Ok(Some(false)) };
                if held.value == self.owner {
                    return Ok(Some(true));
                }
                let taken = self.commit(vec![unchanged(&owner, held.mod_revision)], vec![put(&owner, &self.owner)?])?;
                Ok(taken.then_some(true))
            },
        )
    }

    fn history(&self, id: &str) -> Result<Vec<HistoryRow>> {
        let (rows, _) = self.list::<HistoryRow>(&self.keys.under(&["history", id]))?;
        Ok(rows.into_iter().map(|r| r.value).collect())
    }
}
