//! The embedded backend: one SQLite file in WAL mode, schema versioned by `PRAGMA user_version`. Each
//! aggregate trait of the store is implemented in its own module; this one holds the connection, the
//! transaction helper, the migrations and what the modules share to read rows and map errors.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, Transaction};
use stoke_core::{AccountId, FunctionName};

use crate::{Result, StoreError};

mod accounts;
mod durable;
mod events;
mod functions;
mod layers;
mod schedules;
mod stats;
mod triggers;
mod tunes;
mod workflows;

/// Schema migrations, applied in order; the index + 1 is the schema version, the number its file under
/// `migrations/` starts with. Never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_accounts_functions_versions_aliases.sql"),
    include_str!("../../migrations/0002_events.sql"),
    include_str!("../../migrations/0003_triggers.sql"),
    include_str!("../../migrations/0004_workflows_executions_history.sql"),
    include_str!("../../migrations/0005_workflow_prewarm_stats.sql"),
    include_str!("../../migrations/0006_tunes.sql"),
    include_str!("../../migrations/0007_layers_images.sql"),
    include_str!("../../migrations/0008_events_by_account.sql"),
    include_str!("../../migrations/0009_event_configs.sql"),
    include_str!("../../migrations/0010_event_destinations.sql"),
    include_str!("../../migrations/0011_schedules.sql"),
    include_str!("../../migrations/0012_map_runs.sql"),
    include_str!("../../migrations/0013_durable_executions.sql"),
    include_str!("../../migrations/0014_durable_retention.sql"),
    include_str!("../../migrations/0015_workflow_role.sql"),
];

/// The SQLite-backed [`Store`](crate::Store).
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: an acknowledged change survives power loss, not only a crash of the process.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<u32> {
        Ok(self.lock().pragma_query_value(None, "user_version", |r| r.get("user_version"))?)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half transaction: SQLite rolls it back.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get::<_, u32>("user_version"))? as usize;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "database schema version {current} is newer than this stoke ({}); upgrade stoke",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("{what}: {e}").into())
}

fn account_id(s: String) -> rusqlite::Result<AccountId> {
    AccountId::parse(&s).map_err(|e| corrupt("account id", e))
}

fn function_name(s: String) -> rusqlite::Result<FunctionName> {
    FunctionName::parse(&s).map_err(|e| corrupt("function name", e))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

#[cfg(test)]
pub(crate) mod fixtures {
    use stoke_core::{AccountId, FunctionName, LifecycleState};

    use super::SqliteStore;
    use crate::prelude::*;
    use crate::{AccountKeys, AccountRecord, CodeRef, FunctionRecord};

    pub fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("stoke.db")).unwrap();
        (dir, s)
    }

    pub fn account(s: &SqliteStore, n: u64) -> AccountId {
        let id = AccountId::from_number(n);
        s.create_account(
            &AccountRecord { id: id.clone(), name: format!("acct{n}"), is_admin: false, created_ms: 1 },
            &AccountKeys {
                api_key_sha256: format!("hash{n}"),
                access_key_id: format!("AKID{n}"),
                secret_access_key: "s".into(),
            },
        )
        .unwrap();
        id
    }

    pub fn function(account: &AccountId, name: &str) -> FunctionRecord {
        FunctionRecord {
            account: account.clone(),
            name: FunctionName::parse(name).unwrap(),
            config: stoke_core::ConfigPatch { runtime: Some("provided".into()), ..Default::default() }
                .into_new_config()
                .unwrap(),
            state: LifecycleState::Latest,
            code: Some(CodeRef { sha256: "ab".into(), size: 2 }),
            revision: 1,
            latest_published: None,
            last_version: 0,
            created_ms: 5,
            modified_ms: 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use stoke_core::FunctionName;

    use super::fixtures::{account, function};
    use super::*;
    use crate::prelude::*;
    use crate::StatRecord;

    #[test]
    fn every_migration_file_is_applied_in_the_order_of_its_number() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        assert_eq!(files.len(), MIGRATIONS.len(), "{files:?}");
        for (i, (file, sql)) in files.iter().zip(MIGRATIONS).enumerate() {
            let name = file.file_name().unwrap().to_string_lossy();
            assert!(name.starts_with(&format!("{:04}_", i + 1)) && name.ends_with(".sql"), "{name}");
            assert_eq!(&std::fs::read_to_string(file).unwrap(), sql, "{name}");
        }
    }

    #[test]
    fn an_older_database_is_brought_up_to_date_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stoke.db");
        {
            // A data directory written by a stoke that knew the first four migrations.
            let mut conn = Connection::open(&path).unwrap();
            for (i, sql) in MIGRATIONS[..4].iter().enumerate() {
                let tx = conn.transaction().unwrap();
                tx.execute_batch(sql).unwrap();
                tx.pragma_update(None, "user_version", i + 1).unwrap();
                tx.commit().unwrap();
            }
            conn.execute(
                "INSERT INTO workflows (account_id, name, definition, revision, created_ms, updated_ms)
                 VALUES ('000000000001', 'flow', '{}', 3, 1, 2)",
                [],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap() as usize, MIGRATIONS.len(), "every later migration ran");
        let a = AccountId::from_number(1);
        let w = s.get_workflow(&a, "flow").unwrap().unwrap();
        assert_eq!(
            (w.revision, w.updated_ms, w.prewarm, w.role_arn),
            (3, 2, None, None),
            "added columns read as unset"
        );
        let stat = StatRecord { kind: "function".into(), key: "k".into(), data: "[]".into(), updated_ms: 4 };
        s.put_stats(std::slice::from_ref(&stat)).unwrap();
        assert_eq!(s.all_stats().unwrap(), [stat], "later migrations' tables exist");
    }

    #[test]
    fn a_newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stoke.db");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", MIGRATIONS.len() + 1).unwrap();
        assert!(matches!(SqliteStore::open(&path), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn migrations_run_once_and_reopen_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stoke.db");
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap() as usize, MIGRATIONS.len());
        let a = account(&s, 1);
        s.insert_function(&function(&a, "f")).unwrap();
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.get_function(&a, &FunctionName::parse("f").unwrap()).unwrap(), Some(function(&a, "f")));
    }
}
