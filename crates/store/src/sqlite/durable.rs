//! Lambda durable executions: `durable_executions` (a head per execution), `durable_operations` and
//! `durable_events` (a row each).

use rusqlite::{params, OptionalExtension, Row, Transaction};
use stoke_core::{AccountId, FunctionName};

use super::{account_id, function_name, SqliteStore};
use crate::{DurableEventRow, DurableOpRow, DurableRecord, DurableStore, Result, StoreError};

const COLS: &str = "id, account_id, function_name, version, name, arn, status, input_sha256, started_ms, ended_ms, \
                    next_deadline_ms, revision, head, retention_days, expires_ms";

fn durable_row(r: &Row<'_>) -> rusqlite::Result<DurableRecord> {
    Ok(DurableRecord {
        id: r.get("id")?,
        account: account_id(r.get("account_id")?)?,
        function: function_name(r.get("function_name")?)?,
        version: r.get("version")?,
        name: r.get("name")?,
        arn: r.get("arn")?,
        status: r.get("status")?,
        input_sha256: r.get("input_sha256")?,
        started_ms: r.get("started_ms")?,
        ended_ms: r.get("ended_ms")?,
        next_deadline_ms: r.get("next_deadline_ms")?,
        revision: r.get::<_, i64>("revision")?.try_into().unwrap_or(0),
        head: r.get("head")?,
        retention_days: r.get("retention_days")?,
        expires_ms: r.get("expires_ms")?,
    })
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// Writes `ops` (replacing those at the same place) and appends `events`.
fn write_rows(tx: &Transaction<'_>, id: &str, ops: &[DurableOpRow], events: &[DurableEventRow]) -> Result<()> {
    for o in ops {
        tx.execute(
            "INSERT INTO durable_operations (execution_id, seq, op_id, data) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(execution_id, seq) DO UPDATE SET op_id = excluded.op_id, data = excluded.data",
            params![id, o.seq, o.op_id, o.data],
        )
        .map_err(|e| {
            if is_constraint(&e) {
                StoreError::Conflict(format!("operation {} of durable execution {id}", o.op_id))
            } else {
                e.into()
            }
        })?;
    }
    for ev in events {
        let event_id = i64::try_from(ev.event_id).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO durable_events (execution_id, event_id, timestamp_ms, kind, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, event_id, ev.timestamp_ms, ev.kind, ev.data],
        )
        .map_err(|e| {
            if is_constraint(&e) {
                StoreError::Conflict(format!("event {} of durable execution {id}", ev.event_id))
            } else {
                e.into()
            }
        })?;
    }
    Ok(())
}

impl DurableStore for SqliteStore {
    fn insert_durable(&self, e: &DurableRecord, ops: &[DurableOpRow], events: &[DurableEventRow]) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &format!("INSERT INTO durable_executions ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
                params![
                    e.id,
                    e.account.as_str(),
                    e.function.as_str(),
                    e.version,
                    e.name,
                    e.arn,
                    e.status,
                    e.input_sha256,
                    e.started_ms,
                    e.ended_ms,
                    e.next_deadline_ms,
                    i64::try_from(e.revision).unwrap_or(i64::MAX),
                    e.head,
                    e.retention_days,
                    e.expires_ms
                ],
            )
            .map_err(|err| {
                if is_constraint(&err) {
                    StoreError::Conflict(format!("durable execution {}", e.name))
                } else {
                    err.into()
                }
            })?;
            write_rows(tx, &e.id, ops, events)
        })
    }

    fn record_durable(
        &self,
        e: &DurableRecord,
        expected_revision: u64,
        ops: &[DurableOpRow],
        events: &[DurableEventRow],
    ) -> Result<()> {
        self.write(|tx| {
            let stored: Option<i64> = tx
                .query_row(
                    "SELECT revision FROM durable_executions WHERE account_id = ?1 AND id = ?2",
                    params![e.account.as_str(), e.id],
                    |r| r.get(0),
                )
                .optional()?;
            match stored {
                None => return Err(StoreError::NotFound(format!("durable execution {}", e.id))),
                Some(r) if r != i64::try_from(expected_revision).unwrap_or(i64::MAX) => {
                    return Err(StoreError::RevisionMismatch(format!("durable execution {}", e.id)));
                }
                Some(_) => {}
            }
            tx.execute(
                "UPDATE durable_executions SET status = ?1, ended_ms = ?2, next_deadline_ms = ?3, revision = ?4,
                 head = ?5, expires_ms = ?6 WHERE id = ?7",
                params![
                    e.status,
                    e.ended_ms,
                    e.next_deadline_ms,
                    i64::try_from(expected_revision + 1).unwrap_or(i64::MAX),
                    e.head,
                    e.expires_ms,
                    e.id
                ],
            )?;
            write_rows(tx, &e.id, ops, events)
        })
    }

    fn get_durable(&self, account: &AccountId, id: &str) -> Result<Option<DurableRecord>> {
        let conn = self.lock();
        let sql = format!("SELECT {COLS} FROM durable_executions WHERE account_id = ?1 AND id = ?2");
        Ok(conn.query_row(&sql, params![account.as_str(), id], durable_row).optional()?)
    }

    fn find_durable(&self, account: &AccountId, function: &FunctionName, name: &str) -> Result<Option<DurableRecord>> {
        let conn = self.lock();
        let sql =
            format!("SELECT {COLS} FROM durable_executions WHERE account_id = ?1 AND function_name = ?2 AND name = ?3");
        Ok(conn.query_row(&sql, params![account.as_str(), function.as_str(), name], durable_row).optional()?)
    }

    fn durable_operations(&self, id: &str) -> Result<Vec<DurableOpRow>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT seq, op_id, data FROM durable_operations WHERE execution_id = ?1 ORDER BY seq")?;
        let rows =
            stmt.query_map(params![id], |r| Ok(DurableOpRow { seq: r.get(0)?, op_id: r.get(1)?, data: r.get(2)? }))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn durable_events(&self, id: &str, after: u64, limit: usize) -> Result<Vec<DurableEventRow>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT event_id, timestamp_ms, kind, data FROM durable_events
             WHERE execution_id = ?1 AND event_id > ?2 ORDER BY event_id LIMIT ?3",
        )?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![id, after, limit], |r| {
            Ok(DurableEventRow {
                event_id: r.get::<_, i64>(0)?.try_into().unwrap_or(0),
                timestamp_ms: r.get(1)?,
                kind: r.get(2)?,
                data: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn list_durable(
        &self,
        account: &AccountId,
        function: &FunctionName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DurableRecord>> {
        let conn = self.lock();
        let sql = format!(
            "SELECT {COLS} FROM durable_executions d WHERE account_id = ?1 AND function_name = ?2
             AND (?3 IS NULL OR (started_ms, id) > (SELECT started_ms, id FROM durable_executions WHERE id = ?3))
             ORDER BY started_ms, id LIMIT ?4"
        );
        let mut stmt = conn.prepare(&sql)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![account.as_str(), function.as_str(), after, limit], durable_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn delete_expired_durable(&self, now_ms: i64, limit: usize) -> Result<Vec<DurableRecord>> {
        self.write(|tx| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let expired = {
                let mut stmt = tx.prepare(&format!(
                    "SELECT {COLS} FROM durable_executions WHERE expires_ms <= ?1 ORDER BY expires_ms, id LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![now_ms, limit], durable_row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            // Its operations and events go with it (ON DELETE CASCADE).
            for x in &expired {
                tx.execute("DELETE FROM durable_executions WHERE id = ?1", params![x.id])?;
            }
            Ok(expired)
        })
    }

    fn running_durable(&self) -> Result<Vec<DurableRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLS} FROM durable_executions WHERE status = 'RUNNING' ORDER BY started_ms, id"
        ))?;
        let rows = stmt.query_map([], durable_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}
