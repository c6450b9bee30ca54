//! The embedded backend: one SQLite file in WAL mode, schema versioned by `PRAGMA user_version`. Each
//! aggregate trait of the store is implemented in its own module; this one holds the connection, the
//! transaction helper, the migrations and what the modules share to read rows and map errors.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, Transaction};
use stoke_core::{AccountId, FunctionName};

use crate::{Result, StoreError};

mod accounts;
mod events;
mod functions;
mod layers;
mod stats;
mod triggers;
mod tunes;
mod workflows;

/// Schema migrations, applied in order; the index + 1 is the schema version. Never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE accounts (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    is_admin          INTEGER NOT NULL,
    api_key_sha256    TEXT NOT NULL UNIQUE,
    access_key_id     TEXT NOT NULL UNIQUE,
    secret_access_key TEXT NOT NULL,
    created_ms        INTEGER NOT NULL
);
CREATE TABLE functions (
    account_id       TEXT NOT NULL REFERENCES accounts(id),
    name             TEXT NOT NULL,
    config           TEXT NOT NULL,
    state            TEXT NOT NULL,
    code_sha256      TEXT,
    code_size        INTEGER,
    revision         INTEGER NOT NULL,
    latest_published INTEGER,
    last_version     INTEGER NOT NULL,
    created_ms       INTEGER NOT NULL,
    modified_ms      INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE INDEX functions_by_state ON functions(state);
CREATE TABLE versions (
    account_id    TEXT NOT NULL,
    function_name TEXT NOT NULL,
    version       INTEGER NOT NULL,
    config        TEXT NOT NULL,
    code_sha256   TEXT NOT NULL,
    code_size     INTEGER NOT NULL,
    description   TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    PRIMARY KEY (account_id, function_name, version),
    FOREIGN KEY (account_id, function_name) REFERENCES functions(account_id, name) ON DELETE CASCADE
);
CREATE TABLE aliases (
    account_id         TEXT NOT NULL,
    function_name      TEXT NOT NULL,
    name               TEXT NOT NULL,
    version            TEXT NOT NULL,
    additional_version TEXT,
    additional_weight  REAL,
    description        TEXT NOT NULL,
    revision           INTEGER NOT NULL,
    created_ms         INTEGER NOT NULL,
    modified_ms        INTEGER NOT NULL,
    PRIMARY KEY (account_id, function_name, name),
    FOREIGN KEY (account_id, function_name) REFERENCES functions(account_id, name) ON DELETE CASCADE
);
"#,
    r#"
CREATE TABLE events (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    reference       TEXT NOT NULL,
    payload         BLOB NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    state           TEXT NOT NULL,
    error_type      TEXT,
    result          BLOB,
    created_ms      INTEGER NOT NULL,
    finished_ms     INTEGER
);
CREATE INDEX events_due ON events(state, next_attempt_ms);
"#,
    r#"
CREATE TABLE triggers (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    kind            TEXT NOT NULL,
    route_key       TEXT,
    route_shape     TEXT,
    function_name   TEXT NOT NULL,
    qualifier       TEXT,
    auth            TEXT NOT NULL,
    cors            TEXT,
    created_ms      INTEGER NOT NULL,
    UNIQUE (account_id, route_shape),
    FOREIGN KEY (account_id, function_name) REFERENCES functions(account_id, name) ON DELETE CASCADE
);
"#,
    r#"
CREATE TABLE workflows (
    account_id      TEXT NOT NULL,
    name            TEXT NOT NULL,
    definition      TEXT NOT NULL,
    revision        INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE TABLE executions (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    workflow        TEXT NOT NULL,
    name            TEXT NOT NULL,
    definition      TEXT NOT NULL,
    status          TEXT NOT NULL,
    input           TEXT NOT NULL,
    output          TEXT,
    error           TEXT,
    cause           TEXT,
    started_ms      INTEGER NOT NULL,
    stopped_ms      INTEGER,
    UNIQUE (account_id, workflow, name)
);
CREATE INDEX executions_by_workflow ON executions(account_id, workflow, started_ms);
CREATE INDEX executions_running ON executions(status) WHERE status = 'RUNNING';
CREATE TABLE history (
    execution_id    TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    scope           TEXT NOT NULL,
    step            INTEGER NOT NULL,
    attempt         INTEGER NOT NULL,
    details         TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE workflows ADD COLUMN prewarm TEXT;
CREATE TABLE stats (
    kind            TEXT NOT NULL,
    key             TEXT NOT NULL,
    data            TEXT NOT NULL,
    updated_ms      INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE tunes (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    function_name   TEXT NOT NULL,
    state           TEXT NOT NULL,
    request         TEXT NOT NULL,
    result          TEXT,
    error           TEXT,
    created_ms      INTEGER NOT NULL,
    finished_ms     INTEGER,
    FOREIGN KEY (account_id, function_name) REFERENCES functions(account_id, name) ON DELETE CASCADE
);
CREATE INDEX tunes_by_function ON tunes(account_id, function_name, created_ms);
"#,
    r#"
CREATE TABLE layer_names (
    account_id      TEXT NOT NULL REFERENCES accounts(id),
    name            TEXT NOT NULL,
    last_version    INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE TABLE layers (
    account_id      TEXT NOT NULL,
    name            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    description     TEXT NOT NULL,
    runtimes        TEXT NOT NULL,
    code_sha256     TEXT NOT NULL,
    code_size       INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    deleted_ms      INTEGER,
    PRIMARY KEY (account_id, name, version),
    FOREIGN KEY (account_id, name) REFERENCES layer_names(account_id, name)
);
CREATE TABLE images (
    name            TEXT PRIMARY KEY,
    sha256          TEXT NOT NULL,
    size            INTEGER NOT NULL,
    unpacked_bytes  INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL
);
"#,
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
        Ok(self.lock().pragma_query_value(None, "user_version", |r| r.get(0))?)
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
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get::<_, u32>(0))? as usize;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "database schema version {current} is newer than this stoke ({}); upgrade stoke",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as u32)?;
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
mod fixtures {
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
