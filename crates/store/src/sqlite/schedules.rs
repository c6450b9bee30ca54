//! Schedules: one row each, the record as JSON beside the columns it is found and ordered by.

use rusqlite::{params, OptionalExtension};
use stoke_core::AccountId;

use super::SqliteStore;
use crate::{EventRecord, Result, ScheduleRecord, ScheduleStore, StoreError};

fn decode(json: &str) -> rusqlite::Result<ScheduleRecord> {
    serde_json::from_str(json)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}

fn encode(s: &ScheduleRecord) -> Result<String> {
    serde_json::to_string(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

enum Written {
    Yes,
    Gone,
    Changed,
}

/// Writes `s` (encoded as `record`) if its stored revision is `expected`, with the fire's event.
fn write_fire(
    tx: &rusqlite::Transaction<'_>,
    s: &ScheduleRecord,
    record: &str,
    expected: u64,
    fire: Option<&EventRecord>,
) -> Result<Written> {
    let stored: Option<u64> = tx
        .query_row(
            "SELECT revision FROM schedules WHERE account_id = ?1 AND group_name = ?2 AND name = ?3",
            params![s.account.as_str(), s.group, s.name],
            |r| r.get(0),
        )
        .optional()?;
    match stored {
        None => return Ok(Written::Gone),
        Some(r) if r != expected => return Ok(Written::Changed),
        Some(_) => {}
    }
    tx.execute(
        "UPDATE schedules SET next_fire_ms = ?4, revision = ?5, record = ?6
         WHERE account_id = ?1 AND group_name = ?2 AND name = ?3",
        params![s.account.as_str(), s.group, s.name, s.next_fire_ms, s.revision, record],
    )?;
    if let Some(e) = fire {
        super::events::insert_event(tx, e, "")?;
    }
    Ok(Written::Yes)
}

impl ScheduleStore for SqliteStore {
    fn insert_schedule(&self, s: &ScheduleRecord) -> Result<()> {
        let record = encode(s)?;
        self.write(|tx| {
            let written = tx.execute(
                "INSERT OR IGNORE INTO schedules (account_id, group_name, name, next_fire_ms, revision, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.account.as_str(), s.group, s.name, s.next_fire_ms, s.revision, record],
            )?;
            if written == 0 {
                return Err(StoreError::Conflict(format!("schedule {}", s.name)));
            }
            Ok(())
        })
    }

    fn get_schedule(&self, account: &AccountId, group: &str, name: &str) -> Result<Option<ScheduleRecord>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT record FROM schedules WHERE account_id = ?1 AND group_name = ?2 AND name = ?3",
                params![account.as_str(), group, name],
                |r| decode(&r.get::<_, String>(0)?),
            )
            .optional()?)
    }

    fn list_schedules(
        &self,
        account: &AccountId,
        group: Option<&str>,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT record FROM schedules WHERE account_id = ?1 AND (?2 IS NULL OR group_name = ?2)
                 AND substr(name, 1, length(?3)) = ?3 AND name > ?4
             ORDER BY name, group_name LIMIT ?5",
        )?;
        let rows = stmt
            .query_map(params![account.as_str(), group, prefix, after.unwrap_or(""), limit as i64], |r| {
                decode(&r.get::<_, String>(0)?)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn pending_schedules(&self) -> Result<Vec<ScheduleRecord>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT record FROM schedules WHERE next_fire_ms IS NOT NULL ORDER BY next_fire_ms")?;
        let rows = stmt.query_map([], |r| decode(&r.get::<_, String>(0)?))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn update_schedule(&self, s: &ScheduleRecord, expected_revision: u64, fire: Option<&EventRecord>) -> Result<()> {
        let record = encode(s)?;
        self.write(|tx| match write_fire(tx, s, &record, expected_revision, fire)? {
            Written::Yes => Ok(()),
            Written::Gone => Err(StoreError::NotFound(format!("schedule {}", s.name))),
            Written::Changed => Err(StoreError::RevisionMismatch(format!("schedule {}", s.name))),
        })
    }

    fn fire_schedules(&self, fires: &[(&ScheduleRecord, u64, Option<&EventRecord>)]) -> Result<Vec<bool>> {
        let records = fires.iter().map(|(s, _, _)| encode(s)).collect::<Result<Vec<_>>>()?;
        self.write(|tx| {
            fires
                .iter()
                .zip(&records)
                .map(|((s, revision, fire), record)| {
                    Ok(matches!(write_fire(tx, s, record, *revision, *fire)?, Written::Yes))
                })
                .collect()
        })
    }

    fn delete_schedule(&self, account: &AccountId, group: &str, name: &str) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM schedules WHERE account_id = ?1 AND group_name = ?2 AND name = ?3",
                params![account.as_str(), group, name],
            )? > 0)
        })
    }
}
