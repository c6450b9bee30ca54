//! Workflows, their executions and each execution's history.

use rusqlite::{params, OptionalExtension, Row, Transaction};
use stoke_core::AccountId;

use super::{account_id, corrupt, is_unique_violation, SqliteStore};
use crate::{
    ExecutionRecord, ExecutionStatus, HistoryRow, MapRunRecord, Result, StoreError, WorkflowRecord, WorkflowStore,
};

const WORKFLOW_COLS: &str = "account_id, name, definition, revision, created_ms, updated_ms, prewarm, role_arn";

fn workflow_row(r: &Row<'_>) -> rusqlite::Result<WorkflowRecord> {
    Ok(WorkflowRecord {
        account: account_id(r.get("account_id")?)?,
        name: r.get("name")?,
        definition: r.get("definition")?,
        revision: r.get::<_, u64>("revision")?,
        created_ms: r.get("created_ms")?,
        updated_ms: r.get("updated_ms")?,
        prewarm: r.get("prewarm")?,
        role_arn: r.get("role_arn")?,
    })
}

const EXECUTION_COLS: &str =
    "id, account_id, workflow, name, definition, status, input, output, error, cause, started_ms, stopped_ms";

fn execution_row(r: &Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    let status: String = r.get("status")?;
    Ok(ExecutionRecord {
        id: r.get("id")?,
        account: account_id(r.get("account_id")?)?,
        workflow: r.get("workflow")?,
        name: r.get("name")?,
        definition: r.get("definition")?,
        status: ExecutionStatus::parse(&status).ok_or_else(|| corrupt("execution status", &status))?,
        input: r.get("input")?,
        output: r.get("output")?,
        error: r.get("error")?,
        cause: r.get("cause")?,
        started_ms: r.get("started_ms")?,
        stopped_ms: r.get("stopped_ms")?,
    })
}

fn append_history(tx: &Transaction<'_>, id: &str, events: &[HistoryRow]) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO history (execution_id, seq, timestamp_ms, kind, scope, step, attempt, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for e in events {
        stmt.execute(params![id, e.seq as i64, e.timestamp_ms, e.kind, e.scope, e.step, e.attempt, e.details])
            .map_err(|err| {
                if is_unique_violation(&err) {
                    StoreError::Conflict(format!("history event {} of execution {id}", e.seq))
                } else {
                    err.into()
                }
            })?;
    }
    Ok(())
}

impl WorkflowStore for SqliteStore {
    fn put_workflow(&self, w: &WorkflowRecord, expected_revision: Option<u64>) -> Result<()> {
        self.write(|tx| {
            match expected_revision {
                None => {
                    tx.execute(
                        &format!("INSERT INTO workflows ({WORKFLOW_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                        params![
                            w.account.as_str(),
                            w.name,
                            w.definition,
                            w.revision as i64,
                            w.created_ms,
                            w.updated_ms,
                            w.prewarm,
                            w.role_arn
                        ],
                    )
                    .map_err(|e| {
                        if is_unique_violation(&e) {
                            StoreError::Conflict(format!("workflow {}", w.name))
                        } else {
                            e.into()
                        }
                    })?;
                }
                Some(rev) => {
                    let changed = tx.execute(
                        "UPDATE workflows SET definition = ?3, revision = ?4, updated_ms = ?5, prewarm = ?7,
                         role_arn = ?8
                         WHERE account_id = ?1 AND name = ?2 AND revision = ?6",
                        params![
                            w.account.as_str(),
                            w.name,
                            w.definition,
                            w.revision as i64,
                            w.updated_ms,
                            rev as i64,
                            w.prewarm,
                            w.role_arn
                        ],
                    )?;
                    if changed == 0 {
                        let exists: bool = tx.query_row(
                            "SELECT EXISTS(SELECT 1 FROM workflows WHERE account_id = ?1 AND name = ?2) AS found",
                            params![w.account.as_str(), w.name],
                            |r| r.get("found"),
                        )?;
                        return Err(if exists {
                            StoreError::RevisionMismatch(format!("workflow {}", w.name))
                        } else {
                            StoreError::NotFound(format!("workflow {}", w.name))
                        });
                    }
                }
            }
            Ok(())
        })
    }

    fn get_workflow(&self, account: &AccountId, name: &str) -> Result<Option<WorkflowRecord>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                &format!("SELECT {WORKFLOW_COLS} FROM workflows WHERE account_id = ?1 AND name = ?2"),
                params![account.as_str(), name],
                workflow_row,
            )
            .optional()?)
    }

    fn list_workflows(&self, account: &AccountId) -> Result<Vec<WorkflowRecord>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare(&format!("SELECT {WORKFLOW_COLS} FROM workflows WHERE account_id = ?1 ORDER BY name"))?;
        let rows = stmt.query_map([account.as_str()], workflow_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn delete_workflow(&self, account: &AccountId, name: &str) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM workflows WHERE account_id = ?1 AND name = ?2",
                params![account.as_str(), name],
            )? > 0)
        })
    }

    fn insert_execution(&self, e: &ExecutionRecord, events: &[HistoryRow]) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &format!(
                    "INSERT INTO executions ({EXECUTION_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                ),
                params![
                    e.id,
                    e.account.as_str(),
                    e.workflow,
                    e.name,
                    e.definition,
                    e.status.as_str(),
                    e.input,
                    e.output,
                    e.error,
                    e.cause,
                    e.started_ms,
                    e.stopped_ms
                ],
            )
            .map_err(|err| {
                if is_unique_violation(&err) {
                    StoreError::Conflict(format!("execution {}", e.name))
                } else {
                    err.into()
                }
            })?;
            append_history(tx, &e.id, events)
        })
    }

    fn record_execution(&self, id: &str, events: &[HistoryRow], finished: Option<&ExecutionRecord>) -> Result<()> {
        self.write(|tx| {
            append_history(tx, id, events)?;
            if let Some(e) = finished {
                let changed = tx.execute(
                    "UPDATE executions SET status = ?2, output = ?3, error = ?4, cause = ?5, stopped_ms = ?6
                     WHERE id = ?1 AND status = 'RUNNING'",
                    params![id, e.status.as_str(), e.output, e.error, e.cause, e.stopped_ms],
                )?;
                if changed == 0 {
                    return Err(StoreError::Conflict(format!("execution {id} has already ended")));
                }
            }
            Ok(())
        })
    }

    fn get_execution(&self, id: &str) -> Result<Option<ExecutionRecord>> {
        let conn = self.lock();
        Ok(conn
            .query_row(&format!("SELECT {EXECUTION_COLS} FROM executions WHERE id = ?1"), [id], execution_row)
            .optional()?)
    }

    fn find_execution(&self, account: &AccountId, workflow: &str, name: &str) -> Result<Option<ExecutionRecord>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {EXECUTION_COLS} FROM executions WHERE account_id = ?1 AND workflow = ?2 AND name = ?3"
                ),
                params![account.as_str(), workflow, name],
                execution_row,
            )
            .optional()?)
    }

    fn list_executions(
        &self,
        account: &AccountId,
        workflow: Option<&str>,
        status: Option<ExecutionStatus>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {EXECUTION_COLS} FROM executions
             WHERE account_id = ?1 AND (?2 IS NULL OR workflow = ?2) AND (?3 IS NULL OR status = ?3)
               AND (?4 IS NULL OR (started_ms, id) < (SELECT started_ms, id FROM executions WHERE id = ?4))
             ORDER BY started_ms DESC, id DESC LIMIT ?5"
        ))?;
        let rows = stmt
            .query_map(
                params![account.as_str(), workflow, status.map(ExecutionStatus::as_str), before, limit as i64],
                execution_row,
            )?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn running_executions(&self) -> Result<Vec<ExecutionRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {EXECUTION_COLS} FROM executions WHERE status = 'RUNNING' ORDER BY started_ms"
        ))?;
        let rows = stmt.query_map([], execution_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn history(&self, id: &str) -> Result<Vec<HistoryRow>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT seq, timestamp_ms, kind, scope, step, attempt, details FROM history
             WHERE execution_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(HistoryRow {
                    seq: r.get::<_, u64>("seq")?,
                    timestamp_ms: r.get("timestamp_ms")?,
                    kind: r.get("kind")?,
                    scope: r.get("scope")?,
                    step: r.get("step")?,
                    attempt: r.get("attempt")?,
                    details: r.get("details")?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn put_map_run(&self, m: &MapRunRecord) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &format!("INSERT OR REPLACE INTO map_runs ({MAP_RUN_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    m.id,
                    m.account.as_str(),
                    m.execution_id,
                    m.children,
                    m.status,
                    m.started_ms,
                    m.stopped_ms,
                    m.details
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    StoreError::NotFound(format!("execution {}", m.execution_id))
                }
                other => other.into(),
            })?;
            Ok(())
        })
    }

    fn get_map_run(&self, account: &AccountId, id: &str) -> Result<Option<MapRunRecord>> {
        let conn = self.lock();
        let sql = format!("SELECT {MAP_RUN_COLS} FROM map_runs WHERE account_id = ?1 AND id = ?2");
        Ok(conn.query_row(&sql, params![account.as_str(), id], map_run_row).optional()?)
    }

    fn list_map_runs(&self, account: &AccountId, execution_id: &str) -> Result<Vec<MapRunRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {MAP_RUN_COLS} FROM map_runs WHERE account_id = ?1 AND execution_id = ?2 ORDER BY started_ms, id"
        ))?;
        let rows = stmt.query_map(params![account.as_str(), execution_id], map_run_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

const MAP_RUN_COLS: &str = "id, account_id, execution_id, children, status, started_ms, stopped_ms, details";

fn map_run_row(r: &Row<'_>) -> rusqlite::Result<MapRunRecord> {
    Ok(MapRunRecord {
        id: r.get("id")?,
        account: account_id(r.get("account_id")?)?,
        execution_id: r.get("execution_id")?,
        children: r.get("children")?,
        status: r.get("status")?,
        started_ms: r.get("started_ms")?,
        stopped_ms: r.get("stopped_ms")?,
        details: r.get("details")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::fixtures::{account, store};

    #[test]
    fn workflows_keep_revisions_and_executions_their_history() {
        let (_d, s) = store();
        let a = account(&s, 1);
        let mut w = WorkflowRecord {
            account: a.clone(),
            name: "flow".into(),
            definition: "{}".into(),
            revision: 1,
            created_ms: 1,
            updated_ms: 1,
            prewarm: None,
            role_arn: None,
        };
        s.put_workflow(&w, None).unwrap();
        assert!(matches!(s.put_workflow(&w, None), Err(StoreError::Conflict(_))));
        w.revision = 2;
        w.definition = "{\"v\":2}".into();
        w.prewarm = Some("eager".into());
        w.role_arn = Some("arn:aws:iam::123456789012:role/flows".into());
        s.put_workflow(&w, Some(1)).unwrap();
        assert!(matches!(s.put_workflow(&w, Some(1)), Err(StoreError::RevisionMismatch(_))));
        assert_eq!(s.get_workflow(&a, "flow").unwrap(), Some(w.clone()));
        assert_eq!(s.list_workflows(&a).unwrap().len(), 1);

        let event = |seq: u64, kind: &str| HistoryRow {
            seq,
            timestamp_ms: seq as i64,
            kind: kind.into(),
            scope: String::new(),
            step: 0,
            attempt: 0,
            details: "{}".into(),
        };
        let mut e = ExecutionRecord {
            id: "e1".into(),
            account: a.clone(),
            workflow: "flow".into(),
            name: "run-1".into(),
            definition: w.definition.clone(),
            status: ExecutionStatus::Running,
            input: "{}".into(),
            output: None,
            error: None,
            cause: None,
            started_ms: 10,
            stopped_ms: None,
        };
        s.insert_execution(&e, &[event(1, "ExecutionStarted")]).unwrap();
        let mut dup = e.clone();
        dup.id = "e2".into();
        assert!(matches!(s.insert_execution(&dup, &[]), Err(StoreError::Conflict(_))), "names are unique per workflow");
        assert!(matches!(s.record_execution("e1", &[event(1, "Again")], None), Err(StoreError::Conflict(_))));
        assert_eq!(s.history("e1").unwrap().len(), 1, "a failed append writes nothing");
        s.record_execution("e1", &[event(2, "PassStateEntered"), event(3, "PassStateExited")], None).unwrap();
        assert_eq!(s.running_executions().unwrap().len(), 1);
        e.status = ExecutionStatus::Succeeded;
        e.output = Some("{}".into());
        e.stopped_ms = Some(20);
        s.record_execution("e1", &[event(4, "ExecutionSucceeded")], Some(&e)).unwrap();
        assert!(matches!(s.record_execution("e1", &[event(5, "X")], Some(&e)), Err(StoreError::Conflict(_))));
        assert_eq!(s.get_execution("e1").unwrap(), Some(e.clone()));
        assert_eq!(s.find_execution(&a, "flow", "run-1").unwrap(), Some(e.clone()));
        assert_eq!(s.find_execution(&a, "flow", "run-9").unwrap(), None);
        let kinds: Vec<String> = s.history("e1").unwrap().into_iter().map(|h| h.kind).collect();
        assert_eq!(kinds, ["ExecutionStarted", "PassStateEntered", "PassStateExited", "ExecutionSucceeded"]);
        assert!(s.running_executions().unwrap().is_empty());

        let mut later = e.clone();
        later.id = "e3".into();
        later.name = "run-2".into();
        later.started_ms = 30;
        later.status = ExecutionStatus::Running;
        s.insert_execution(&later, &[]).unwrap();
        let all = s.list_executions(&a, Some("flow"), None, None, 10).unwrap();
        assert_eq!(all.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(), ["e3", "e1"]);
        let page = s.list_executions(&a, None, None, Some("e3"), 10).unwrap();
        assert_eq!(page.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(), ["e1"]);
        let done = s.list_executions(&a, None, Some(ExecutionStatus::Succeeded), None, 10).unwrap();
        assert_eq!(done.len(), 1);
        assert!(s.delete_workflow(&a, "flow").unwrap());
        assert!(s.get_execution("e1").unwrap().is_some(), "executions outlive their workflow");
    }

    fn workflow(account: &AccountId, name: &str) -> WorkflowRecord {
        WorkflowRecord {
            account: account.clone(),
            name: name.into(),
            definition: format!("{{\"Comment\":\"{name}\"}}"),
            revision: 1,
            created_ms: 1,
            updated_ms: 1,
            prewarm: Some("jit".into()),
            role_arn: None,
        }
    }

    fn execution(account: &AccountId, id: &str, started_ms: i64) -> ExecutionRecord {
        ExecutionRecord {
            id: id.into(),
            account: account.clone(),
            workflow: "flow".into(),
            name: format!("run-{id}"),
            definition: "{}".into(),
            status: ExecutionStatus::Running,
            input: "{\"n\":1}".into(),
            output: None,
            error: None,
            cause: None,
            started_ms,
            stopped_ms: None,
        }
    }

    #[test]
    fn workflows_list_by_name_per_account_and_updates_need_one_to_exist() {
        let (_d, s) = store();
        let (a, b) = (account(&s, 1), account(&s, 2));
        for name in ["zeta", "alpha"] {
            s.put_workflow(&workflow(&a, name), None).unwrap();
        }
        s.put_workflow(&workflow(&b, "alpha"), None).unwrap();
        let names: Vec<String> = s.list_workflows(&a).unwrap().into_iter().map(|w| w.name).collect();
        assert_eq!(names, ["alpha", "zeta"]);
        assert_eq!(s.get_workflow(&b, "alpha").unwrap(), Some(workflow(&b, "alpha")));
        assert_eq!(s.get_workflow(&b, "zeta").unwrap(), None);
        let mut missing = workflow(&a, "nope");
        missing.revision = 2;
        assert!(matches!(s.put_workflow(&missing, Some(1)), Err(StoreError::NotFound(_))));
        assert!(!s.delete_workflow(&b, "zeta").unwrap(), "only the owning account deletes");
        assert!(s.delete_workflow(&a, "zeta").unwrap());
        assert!(!s.delete_workflow(&a, "zeta").unwrap());
    }

    #[test]
    fn history_keeps_every_field_and_a_refused_finish_appends_nothing() {
        let (_d, s) = store();
        let a = account(&s, 1);
        let row = |seq: u64| HistoryRow {
            seq,
            timestamp_ms: 1_000 + seq as i64,
            kind: format!("Kind{seq}"),
            scope: format!("branch-{seq}"),
            step: u32::try_from(seq).unwrap() * 2,
            attempt: u32::try_from(seq).unwrap() + 1,
            details: format!("{{\"seq\":{seq}}}"),
        };
        let mut e = execution(&a, "e1", 5);
        s.insert_execution(&e, &[row(1), row(2)]).unwrap();
        assert_eq!(s.history("e1").unwrap(), [row(1), row(2)]);
        assert!(s.history("nope").unwrap().is_empty());
        assert!(matches!(s.record_execution("e1", &[row(2)], None), Err(StoreError::Conflict(_))), "seq is unique");

        (e.status, e.error, e.cause, e.stopped_ms) =
            (ExecutionStatus::Failed, Some("States.TaskFailed".into()), Some("boom".into()), Some(9));
        s.record_execution("e1", &[row(3)], Some(&e)).unwrap();
        assert_eq!(s.get_execution("e1").unwrap(), Some(e.clone()));
        let mut aborted = e.clone();
        aborted.status = ExecutionStatus::Aborted;
        let late = s.record_execution("e1", &[row(4)], Some(&aborted));
        assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
        assert_eq!(s.history("e1").unwrap(), [row(1), row(2), row(3)], "the refused finish appended nothing");
        assert_eq!(s.get_execution("e1").unwrap().unwrap().status, ExecutionStatus::Failed);
        assert!(s.running_executions().unwrap().is_empty());
    }

    #[test]
    fn executions_page_newest_first_and_filter() {
        let (_d, s) = store();
        let (a, b) = (account(&s, 1), account(&s, 2));
        for (id, at) in [("e1", 10), ("e2", 30), ("e3", 20), ("e4", 30)] {
            s.insert_execution(&execution(&a, id, at), &[]).unwrap();
        }
        let mut other = execution(&a, "o1", 40);
        other.workflow = "other".into();
        s.insert_execution(&other, &[]).unwrap();
        s.insert_execution(&execution(&b, "b1", 50), &[]).unwrap();
        let mut done = execution(&a, "e3", 20);
        done.status = ExecutionStatus::TimedOut;
        s.record_execution("e3", &[], Some(&done)).unwrap();

        let ids = |workflow, status, before, limit| -> Vec<String> {
            s.list_executions(&a, workflow, status, before, limit).unwrap().into_iter().map(|e| e.id).collect()
        };
        assert_eq!(ids(None, None, None, 10), ["o1", "e4", "e2", "e3", "e1"], "started_ms, then id, descending");
        assert_eq!(ids(Some("flow"), None, None, 2), ["e4", "e2"]);
        assert_eq!(ids(Some("flow"), None, Some("e2"), 2), ["e3", "e1"], "the next page starts after e2");
        assert_eq!(ids(Some("flow"), Some(ExecutionStatus::TimedOut), None, 10), ["e3"]);
        assert!(ids(Some("nope"), None, None, 10).is_empty());
        let running: Vec<String> = s.running_executions().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(running.len(), 5, "{running:?}");
        assert_eq!((running[0].as_str(), running[4].as_str()), ("e1", "b1"), "oldest first, across accounts");
    }
}
