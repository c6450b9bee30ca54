//! The embedded backend: one SQLite file in WAL mode, schema versioned by `PRAGMA user_version`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use stoke_core::{AccountId, AliasName, AliasRouting, FunctionConfig, FunctionName, LayerName, LifecycleState};

use crate::{
    AccountKeys, AccountRecord, AliasRecord, CodeRef, EventRecord, EventState, ExecutionRecord, ExecutionStatus,
    FunctionRecord, HistoryRow, ImageRecord, LayerRecord, Result, StatRecord, Store, StoreError, TriggerKind,
    TriggerRecord, TuneRecord, VersionRecord, WorkflowRecord,
};

const TRIGGER_COLS: &str =
    "id, account_id, kind, route_key, route_shape, function_name, qualifier, auth, cors, created_ms";

fn trigger_row(r: &Row<'_>) -> rusqlite::Result<TriggerRecord> {
    let kind: String = r.get(2)?;
    let kind = match kind.as_str() {
        "url" => TriggerKind::Url,
        "route" => TriggerKind::Route { key: r.get(3)?, shape: r.get(4)? },
        other => return Err(corrupt("trigger kind", other)),
    };
    let auth: String = r.get(7)?;
    let cors: Option<String> = r.get(8)?;
    Ok(TriggerRecord {
        id: r.get(0)?,
        account: account_id(r.get(1)?)?,
        kind,
        function: function_name(r.get(5)?)?,
        qualifier: r.get(6)?,
        auth: stoke_core::gateway::TriggerAuth::parse(&auth).ok_or_else(|| corrupt("trigger auth", &auth))?,
        cors: cors.map(|c| serde_json::from_str(&c).map_err(|e| corrupt("trigger CORS", e))).transpose()?,
        created_ms: r.get(9)?,
    })
}

fn cors_json(t: &TriggerRecord) -> Result<Option<String>> {
    t.cors.as_ref().map(|c| serde_json::to_string(c).map_err(|e| StoreError::Corrupt(e.to_string()))).transpose()
}

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

const LAYER_COLS: &str =
    "account_id, name, version, description, runtimes, code_sha256, code_size, created_ms, deleted_ms";

fn layer_row(r: &Row<'_>) -> rusqlite::Result<LayerRecord> {
    let name: String = r.get(1)?;
    let runtimes: String = r.get(4)?;
    Ok(LayerRecord {
        account: account_id(r.get(0)?)?,
        name: LayerName::parse(&name).map_err(|e| corrupt("layer name", e))?,
        version: r.get::<_, i64>(2)? as u64,
        description: r.get(3)?,
        compatible_runtimes: serde_json::from_str(&runtimes).map_err(|e| corrupt("layer runtimes", e))?,
        code: CodeRef { sha256: r.get(5)?, size: r.get::<_, i64>(6)? as u64 },
        created_ms: r.get(7)?,
        deleted_ms: r.get(8)?,
    })
}

const IMAGE_COLS: &str = "name, sha256, size, unpacked_bytes, created_ms";

fn image_row(r: &Row<'_>) -> rusqlite::Result<ImageRecord> {
    Ok(ImageRecord {
        name: r.get(0)?,
        code: CodeRef { sha256: r.get(1)?, size: r.get::<_, i64>(2)? as u64 },
        unpacked_bytes: r.get::<_, i64>(3)? as u64,
        created_ms: r.get(4)?,
    })
}

const TUNE_COLS: &str = "id, account_id, function_name, state, request, result, error, created_ms, finished_ms";

fn tune_row(r: &Row<'_>) -> rusqlite::Result<TuneRecord> {
    Ok(TuneRecord {
        id: r.get(0)?,
        account: account_id(r.get(1)?)?,
        function: function_name(r.get(2)?)?,
        state: r.get(3)?,
        request: r.get(4)?,
        result: r.get(5)?,
        error: r.get(6)?,
        created_ms: r.get(7)?,
        finished_ms: r.get(8)?,
    })
}

const WORKFLOW_COLS: &str = "account_id, name, definition, revision, created_ms, updated_ms, prewarm";

fn workflow_row(r: &Row<'_>) -> rusqlite::Result<WorkflowRecord> {
    Ok(WorkflowRecord {
        account: account_id(r.get(0)?)?,
        name: r.get(1)?,
        definition: r.get(2)?,
        revision: r.get::<_, i64>(3)? as u64,
        created_ms: r.get(4)?,
        updated_ms: r.get(5)?,
        prewarm: r.get(6)?,
    })
}

const EXECUTION_COLS: &str =
    "id, account_id, workflow, name, definition, status, input, output, error, cause, started_ms, stopped_ms";

fn execution_row(r: &Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    let status: String = r.get(5)?;
    Ok(ExecutionRecord {
        id: r.get(0)?,
        account: account_id(r.get(1)?)?,
        workflow: r.get(2)?,
        name: r.get(3)?,
        definition: r.get(4)?,
        status: ExecutionStatus::parse(&status).ok_or_else(|| corrupt("execution status", &status))?,
        input: r.get(6)?,
        output: r.get(7)?,
        error: r.get(8)?,
        cause: r.get(9)?,
        started_ms: r.get(10)?,
        stopped_ms: r.get(11)?,
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

/// The SQLite-backed [`Store`].
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

fn config(s: String) -> rusqlite::Result<FunctionConfig> {
    serde_json::from_str(&s).map_err(|e| corrupt("configuration", e))
}

fn config_json(c: &FunctionConfig) -> Result<String> {
    serde_json::to_string(c).map_err(|e| StoreError::Corrupt(e.to_string()))
}

const ACCOUNT_COLS: &str = "id, name, is_admin, created_ms, api_key_sha256, access_key_id, secret_access_key";

fn account_row(r: &Row<'_>) -> rusqlite::Result<(AccountRecord, AccountKeys)> {
    Ok((
        AccountRecord { id: account_id(r.get(0)?)?, name: r.get(1)?, is_admin: r.get(2)?, created_ms: r.get(3)? },
        AccountKeys { api_key_sha256: r.get(4)?, access_key_id: r.get(5)?, secret_access_key: r.get(6)? },
    ))
}

const FUNCTION_COLS: &str = "account_id, name, config, state, code_sha256, code_size, revision, \
                             latest_published, last_version, created_ms, modified_ms";

fn function_row(r: &Row<'_>) -> rusqlite::Result<FunctionRecord> {
    let state: String = r.get(3)?;
    let sha: Option<String> = r.get(4)?;
    let size: Option<i64> = r.get(5)?;
    Ok(FunctionRecord {
        account: account_id(r.get(0)?)?,
        name: function_name(r.get(1)?)?,
        config: config(r.get(2)?)?,
        state: LifecycleState::parse(&state).ok_or_else(|| corrupt("lifecycle state", &state))?,
        code: sha.zip(size).map(|(sha256, size)| CodeRef { sha256, size: size as u64 }),
        revision: r.get::<_, i64>(6)? as u64,
        latest_published: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        last_version: r.get::<_, i64>(8)? as u64,
        created_ms: r.get(9)?,
        modified_ms: r.get(10)?,
    })
}

const VERSION_COLS: &str =
    "account_id, function_name, version, config, code_sha256, code_size, description, created_ms";

fn version_row(r: &Row<'_>) -> rusqlite::Result<VersionRecord> {
    Ok(VersionRecord {
        account: account_id(r.get(0)?)?,
        function: function_name(r.get(1)?)?,
        version: r.get::<_, i64>(2)? as u64,
        config: config(r.get(3)?)?,
        code: CodeRef { sha256: r.get(4)?, size: r.get::<_, i64>(5)? as u64 },
        description: r.get(6)?,
        created_ms: r.get(7)?,
    })
}

const ALIAS_COLS: &str = "account_id, function_name, name, version, additional_version, additional_weight, \
                          description, revision, created_ms, modified_ms";

fn alias_row(r: &Row<'_>) -> rusqlite::Result<AliasRecord> {
    let name: String = r.get(2)?;
    Ok(AliasRecord {
        account: account_id(r.get(0)?)?,
        function: function_name(r.get(1)?)?,
        name: AliasName::parse(&name).map_err(|e| corrupt("alias name", e))?,
        routing: AliasRouting { version: r.get(3)?, additional_version: r.get(4)?, additional_weight: r.get(5)? },
        description: r.get(6)?,
        revision: r.get::<_, i64>(7)? as u64,
        created_ms: r.get(8)?,
        modified_ms: r.get(9)?,
    })
}

const EVENT_COLS: &str =
    "id, account_id, reference, payload, attempts, next_attempt_ms, state, error_type, result, created_ms, finished_ms";

fn event_row(r: &Row<'_>) -> rusqlite::Result<EventRecord> {
    let state: String = r.get(6)?;
    Ok(EventRecord {
        id: r.get(0)?,
        account: account_id(r.get(1)?)?,
        reference: r.get(2)?,
        payload: r.get(3)?,
        attempts: r.get(4)?,
        next_attempt_ms: r.get(5)?,
        state: EventState::parse(&state).ok_or_else(|| corrupt("event state", &state))?,
        error_type: r.get(7)?,
        result: r.get(8)?,
        created_ms: r.get(9)?,
        finished_ms: r.get(10)?,
    })
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn write_function(tx: &Transaction<'_>, f: &FunctionRecord, expected_revision: u64) -> Result<()> {
    let changed = tx.execute(
        "UPDATE functions SET config = ?3, state = ?4, code_sha256 = ?5, code_size = ?6, revision = ?7,
                latest_published = ?8, last_version = ?9, modified_ms = ?10
         WHERE account_id = ?1 AND name = ?2 AND revision = ?11",
        params![
            f.account.as_str(),
            f.name.as_str(),
            config_json(&f.config)?,
            f.state.as_str(),
            f.code.as_ref().map(|c| c.sha256.as_str()),
            f.code.as_ref().map(|c| c.size as i64),
            f.revision as i64,
            f.latest_published.map(|v| v as i64),
            f.last_version as i64,
            f.modified_ms,
            expected_revision as i64,
        ],
    )?;
    if changed == 1 {
        return Ok(());
    }
    let exists: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM functions WHERE account_id = ?1 AND name = ?2)",
        params![f.account.as_str(), f.name.as_str()],
        |r| r.get(0),
    )?;
    let what = format!("function {}", f.name);
    Err(if exists { StoreError::RevisionMismatch(what) } else { StoreError::NotFound(what) })
}

impl Store for SqliteStore {
    fn create_account(&self, account: &AccountRecord, keys: &AccountKeys) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &format!("INSERT INTO accounts ({ACCOUNT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    account.id.as_str(),
                    account.name,
                    account.is_admin,
                    account.created_ms,
                    keys.api_key_sha256,
                    keys.access_key_id,
                    keys.secret_access_key
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("account {:?}", account.name))
                } else {
                    e.into()
                }
            })?;
            Ok(())
        })
    }

    fn get_account(&self, id: &AccountId) -> Result<Option<AccountRecord>> {
        let conn = self.lock();
        Ok(conn
            .query_row(&format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?1"), [id.as_str()], account_row)
            .optional()?
            .map(|(a, _)| a))
    }

    fn list_accounts(&self) -> Result<Vec<AccountRecord>> {
        Ok(self.list_account_keys()?.into_iter().map(|(a, _)| a).collect())
    }

    fn list_account_keys(&self) -> Result<Vec<(AccountRecord, AccountKeys)>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY created_ms, id"))?;
        let rows = stmt.query_map([], account_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn insert_function(&self, f: &FunctionRecord) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &format!(
                    "INSERT INTO functions ({FUNCTION_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ),
                params![
                    f.account.as_str(),
                    f.name.as_str(),
                    config_json(&f.config)?,
                    f.state.as_str(),
                    f.code.as_ref().map(|c| c.sha256.as_str()),
                    f.code.as_ref().map(|c| c.size as i64),
                    f.revision as i64,
                    f.latest_published.map(|v| v as i64),
                    f.last_version as i64,
                    f.created_ms,
                    f.modified_ms,
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("function {}", f.name))
                } else {
                    e.into()
                }
            })?;
            Ok(())
        })
    }

    fn get_function(&self, account: &AccountId, name: &FunctionName) -> Result<Option<FunctionRecord>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                &format!("SELECT {FUNCTION_COLS} FROM functions WHERE account_id = ?1 AND name = ?2"),
                params![account.as_str(), name.as_str()],
                function_row,
            )
            .optional()?)
    }

    fn list_functions(&self, account: &AccountId, after: Option<&str>, limit: usize) -> Result<Vec<FunctionRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {FUNCTION_COLS} FROM functions WHERE account_id = ?1 AND name > ?2 ORDER BY name LIMIT ?3"
        ))?;
        let rows = stmt
            .query_map(params![account.as_str(), after.unwrap_or(""), limit as i64], function_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn functions_in_state(&self, state: LifecycleState) -> Result<Vec<FunctionRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("SELECT {FUNCTION_COLS} FROM functions WHERE state = ?1"))?;
        let rows = stmt.query_map([state.as_str()], function_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn update_function(&self, f: &FunctionRecord, expected_revision: u64) -> Result<()> {
        self.write(|tx| write_function(tx, f, expected_revision))
    }

    fn delete_function(&self, account: &AccountId, name: &FunctionName) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM functions WHERE account_id = ?1 AND name = ?2",
                params![account.as_str(), name.as_str()],
            )?;
            Ok(n == 1)
        })
    }

    fn publish_version(&self, f: &FunctionRecord, expected_revision: u64, v: &VersionRecord) -> Result<()> {
        self.write(|tx| {
            write_function(tx, f, expected_revision)?;
            tx.execute(
                &format!("INSERT INTO versions ({VERSION_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    v.account.as_str(),
                    v.function.as_str(),
                    v.version as i64,
                    config_json(&v.config)?,
                    v.code.sha256,
                    v.code.size as i64,
                    v.description,
                    v.created_ms
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("version {} of {}", v.version, v.function))
                } else {
                    e.into()
                }
            })?;
            Ok(())
        })
    }

    fn get_version(&self, account: &AccountId, name: &FunctionName, version: u64) -> Result<Option<VersionRecord>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {VERSION_COLS} FROM versions WHERE account_id = ?1 AND function_name = ?2 AND version = ?3"
                ),
                params![account.as_str(), name.as_str(), version as i64],
                version_row,
            )
            .optional()?)
    }

    fn list_versions(
        &self,
        account: &AccountId,
        name: &FunctionName,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<VersionRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {VERSION_COLS} FROM versions WHERE account_id = ?1 AND function_name = ?2 AND version > ?3
             ORDER BY version LIMIT ?4"
        ))?;
        let rows = stmt
            .query_map(params![account.as_str(), name.as_str(), after.unwrap_or(0) as i64, limit as i64], version_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn put_alias(&self, a: &AliasRecord, expected_revision: Option<u64>) -> Result<()> {
        self.write(|tx| {
            let what = format!("alias {} of {}", a.name, a.function);
            let values = params![
                a.account.as_str(),
                a.function.as_str(),
                a.name.as_str(),
                a.routing.version,
                a.routing.additional_version,
                a.routing.additional_weight,
                a.description,
                a.revision as i64,
                a.created_ms,
                a.modified_ms,
            ];
            match expected_revision {
                None => {
                    tx.execute(
                        &format!("INSERT INTO aliases ({ALIAS_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                        values,
                    )
                    .map_err(|e| {
                        if is_unique_violation(&e) {
                            StoreError::Conflict(what.clone())
                        } else {
                            e.into()
                        }
                    })?;
                }
                Some(expected) => {
                    let n = tx.execute(
                        "UPDATE aliases SET version = ?4, additional_version = ?5, additional_weight = ?6,
                                description = ?7, revision = ?8, modified_ms = ?10
                         WHERE account_id = ?1 AND function_name = ?2 AND name = ?3 AND revision = ?11",
                        params![
                            a.account.as_str(),
                            a.function.as_str(),
                            a.name.as_str(),
                            a.routing.version,
                            a.routing.additional_version,
                            a.routing.additional_weight,
                            a.description,
                            a.revision as i64,
                            a.created_ms,
                            a.modified_ms,
                            expected as i64
                        ],
                    )?;
                    if n != 1 {
                        return Err(StoreError::RevisionMismatch(what));
                    }
                }
            }
            Ok(())
        })
    }

    fn get_alias(&self, account: &AccountId, function: &FunctionName, alias: &str) -> Result<Option<AliasRecord>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                &format!("SELECT {ALIAS_COLS} FROM aliases WHERE account_id = ?1 AND function_name = ?2 AND name = ?3"),
                params![account.as_str(), function.as_str(), alias],
                alias_row,
            )
            .optional()?)
    }

    fn list_aliases(&self, account: &AccountId, function: &FunctionName) -> Result<Vec<AliasRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {ALIAS_COLS} FROM aliases WHERE account_id = ?1 AND function_name = ?2 ORDER BY name"
        ))?;
        let rows = stmt
            .query_map(params![account.as_str(), function.as_str()], alias_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn delete_alias(&self, account: &AccountId, function: &FunctionName, alias: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM aliases WHERE account_id = ?1 AND function_name = ?2 AND name = ?3",
                params![account.as_str(), function.as_str(), alias],
            )?;
            Ok(n == 1)
        })
    }

    fn enqueue_event(&self, e: &EventRecord) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &format!("INSERT INTO events ({EVENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
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
                    e.finished_ms
                ],
            )?;
            Ok(())
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
        self.write(|tx| {
            tx.execute(
                "UPDATE events SET attempts = ?2, next_attempt_ms = ?3, state = ?4, error_type = ?5, result = ?6,
                        finished_ms = ?7 WHERE id = ?1",
                params![e.id, e.attempts, e.next_attempt_ms, e.state.as_str(), e.error_type, e.result, e.finished_ms],
            )?;
            Ok(())
        })
    }

    fn get_event(&self, id: &str) -> Result<Option<EventRecord>> {
        let conn = self.lock();
        Ok(conn.query_row(&format!("SELECT {EVENT_COLS} FROM events WHERE id = ?1"), [id], event_row).optional()?)
    }

    fn requeue_running_events(&self) -> Result<usize> {
        self.write(|tx| Ok(tx.execute("UPDATE events SET state = 'queued' WHERE state = 'running'", [])?))
    }

    fn insert_trigger(&self, t: &TriggerRecord) -> Result<()> {
        let (kind, key, shape) = match &t.kind {
            TriggerKind::Url => ("url", None, None),
            TriggerKind::Route { key, shape } => ("route", Some(key.as_str()), Some(shape.as_str())),
        };
        self.write(|tx| {
            tx.execute(
                &format!("INSERT INTO triggers ({TRIGGER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    t.id,
                    t.account.as_str(),
                    kind,
                    key,
                    shape,
                    t.function.as_str(),
                    t.qualifier,
                    t.auth.as_str(),
                    cors_json(t)?,
                    t.created_ms
                ],
            )
            .map_err(|e| {
                const SQLITE_CONSTRAINT_FOREIGNKEY: std::ffi::c_int = 787;
                if matches!(&e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == SQLITE_CONSTRAINT_FOREIGNKEY)
                {
                    StoreError::NotFound(format!("function {}", t.function))
                } else if is_unique_violation(&e) {
                    StoreError::Conflict(format!("route {}", key.unwrap_or(&t.id)))
                } else {
                    e.into()
                }
            })?;
            Ok(())
        })
    }

    fn get_trigger(&self, id: &str) -> Result<Option<TriggerRecord>> {
        let conn = self.lock();
        Ok(conn
            .query_row(&format!("SELECT {TRIGGER_COLS} FROM triggers WHERE id = ?1"), [id], trigger_row)
            .optional()?)
    }

    fn list_triggers(&self, account: Option<&AccountId>) -> Result<Vec<TriggerRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {TRIGGER_COLS} FROM triggers WHERE ?1 IS NULL OR account_id = ?1 ORDER BY created_ms, id"
        ))?;
        let rows = stmt.query_map([account.map(AccountId::as_str)], trigger_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn update_trigger(&self, t: &TriggerRecord) -> Result<()> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE triggers SET auth = ?3, cors = ?4 WHERE account_id = ?1 AND id = ?2",
                params![t.account.as_str(), t.id, t.auth.as_str(), cors_json(t)?],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("trigger {}", t.id)));
            }
            Ok(())
        })
    }

    fn delete_trigger(&self, account: &AccountId, id: &str) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute("DELETE FROM triggers WHERE account_id = ?1 AND id = ?2", params![account.as_str(), id])? > 0)
        })
    }

    fn put_workflow(&self, w: &WorkflowRecord, expected_revision: Option<u64>) -> Result<()> {
        self.write(|tx| {
            match expected_revision {
                None => {
                    tx.execute(
                        &format!("INSERT INTO workflows ({WORKFLOW_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                        params![
                            w.account.as_str(),
                            w.name,
                            w.definition,
                            w.revision as i64,
                            w.created_ms,
                            w.updated_ms,
                            w.prewarm
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
                        "UPDATE workflows SET definition = ?3, revision = ?4, updated_ms = ?5, prewarm = ?7
                         WHERE account_id = ?1 AND name = ?2 AND revision = ?6",
                        params![
                            w.account.as_str(),
                            w.name,
                            w.definition,
                            w.revision as i64,
                            w.updated_ms,
                            rev as i64,
                            w.prewarm
                        ],
                    )?;
                    if changed == 0 {
                        let exists: bool = tx.query_row(
                            "SELECT EXISTS(SELECT 1 FROM workflows WHERE account_id = ?1 AND name = ?2)",
                            params![w.account.as_str(), w.name],
                            |r| r.get(0),
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

    fn put_stats(&self, stats: &[StatRecord]) -> Result<()> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO stats (kind, key, data, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, key) DO UPDATE SET data = excluded.data, updated_ms = excluded.updated_ms",
            )?;
            for s in stats {
                stmt.execute(params![s.kind, s.key, s.data, s.updated_ms])?;
            }
            Ok(())
        })
    }

    fn all_stats(&self) -> Result<Vec<StatRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT kind, key, data, updated_ms FROM stats ORDER BY kind, key")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StatRecord { kind: r.get(0)?, key: r.get(1)?, data: r.get(2)?, updated_ms: r.get(3)? })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn put_tune(&self, t: &TuneRecord) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &format!("INSERT OR REPLACE INTO tunes ({TUNE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![
                    t.id,
                    t.account.as_str(),
                    t.function.as_str(),
                    t.state,
                    t.request,
                    t.result,
                    t.error,
                    t.created_ms,
                    t.finished_ms
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    StoreError::NotFound(format!("function {}", t.function))
                }
                other => other.into(),
            })?;
            Ok(())
        })
    }

    fn get_tune(&self, account: &AccountId, id: &str) -> Result<Option<TuneRecord>> {
        let conn = self.lock();
        let sql = format!("SELECT {TUNE_COLS} FROM tunes WHERE account_id = ?1 AND id = ?2");
        Ok(conn.query_row(&sql, params![account.as_str(), id], tune_row).optional()?)
    }

    fn latest_tune(&self, account: &AccountId, function: &FunctionName) -> Result<Option<TuneRecord>> {
        let conn = self.lock();
        let sql = format!(
            "SELECT {TUNE_COLS} FROM tunes WHERE account_id = ?1 AND function_name = ?2
             ORDER BY created_ms DESC, id DESC LIMIT 1"
        );
        Ok(conn.query_row(&sql, params![account.as_str(), function.as_str()], tune_row).optional()?)
    }

    fn fail_running_tunes(&self, error: &str, now_ms: i64) -> Result<usize> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE tunes SET state = 'failed', error = ?1, finished_ms = ?2 WHERE state = 'running'",
                params![error, now_ms],
            )?)
        })
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
                    seq: r.get::<_, i64>(0)? as u64,
                    timestamp_ms: r.get(1)?,
                    kind: r.get(2)?,
                    scope: r.get(3)?,
                    step: r.get(4)?,
                    attempt: r.get(5)?,
                    details: r.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn referenced_archives(&self) -> Result<Vec<(AccountId, FunctionName, String, String)>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT account_id, name, '{}', code_sha256 FROM functions WHERE code_sha256 IS NOT NULL
             UNION ALL
             SELECT account_id, function_name, CAST(version AS TEXT), code_sha256 FROM versions",
            crate::LATEST_DIR
        ))?;
        let rows = stmt
            .query_map([], |r| Ok((account_id(r.get(0)?)?, function_name(r.get(1)?)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn insert_layer_version(&self, l: &LayerRecord) -> Result<u64> {
        self.write(|tx| {
            let (account, name) = (l.account.as_str(), l.name.as_str());
            tx.execute(
                "INSERT INTO layer_names (account_id, name, last_version) VALUES (?1, ?2, 1)
                 ON CONFLICT (account_id, name) DO UPDATE SET last_version = last_version + 1",
                params![account, name],
            )?;
            let version: i64 = tx.query_row(
                "SELECT last_version FROM layer_names WHERE account_id = ?1 AND name = ?2",
                params![account, name],
                |r| r.get(0),
            )?;
            let runtimes =
                serde_json::to_string(&l.compatible_runtimes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.execute(
                &format!("INSERT INTO layers ({LAYER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)"),
                params![
                    account,
                    name,
                    version,
                    l.description,
                    runtimes,
                    l.code.sha256,
                    l.code.size as i64,
                    l.created_ms
                ],
            )?;
            Ok(version as u64)
        })
    }

    fn get_layer_version(&self, account: &AccountId, name: &LayerName, version: u64) -> Result<Option<LayerRecord>> {
        let conn = self.lock();
        let sql = format!("SELECT {LAYER_COLS} FROM layers WHERE account_id = ?1 AND name = ?2 AND version = ?3");
        Ok(conn.query_row(&sql, params![account.as_str(), name.as_str(), version as i64], layer_row).optional()?)
    }

    fn list_layers(&self, account: &AccountId) -> Result<Vec<LayerRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {LAYER_COLS} FROM layers l WHERE account_id = ?1 AND deleted_ms IS NULL
             AND version = (SELECT MAX(version) FROM layers m WHERE m.account_id = l.account_id AND m.name = l.name
                            AND m.deleted_ms IS NULL)
             ORDER BY name"
        ))?;
        let rows = stmt.query_map([account.as_str()], layer_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn list_layer_versions(&self, account: &AccountId, name: &LayerName) -> Result<Vec<LayerRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {LAYER_COLS} FROM layers WHERE account_id = ?1 AND name = ?2 AND deleted_ms IS NULL
             ORDER BY version DESC"
        ))?;
        let rows = stmt
            .query_map(params![account.as_str(), name.as_str()], layer_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn delete_layer_version(
        &self,
        account: &AccountId,
        name: &LayerName,
        version: u64,
        forget: bool,
        now_ms: i64,
    ) -> Result<bool> {
        self.write(|tx| {
            let key = params![account.as_str(), name.as_str(), version as i64];
            let changed = if forget {
                tx.execute("DELETE FROM layers WHERE account_id = ?1 AND name = ?2 AND version = ?3", key)?
            } else {
                tx.execute(
                    "UPDATE layers SET deleted_ms = ?4
                     WHERE account_id = ?1 AND name = ?2 AND version = ?3 AND deleted_ms IS NULL",
                    params![account.as_str(), name.as_str(), version as i64, now_ms],
                )?
            };
            Ok(changed > 0)
        })
    }

    fn referenced_layers(&self) -> Result<Vec<(AccountId, String)>> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT DISTINCT account_id, code_sha256 FROM layers")?;
        let rows =
            stmt.query_map([], |r| Ok((account_id(r.get(0)?)?, r.get(1)?)))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn insert_image(&self, i: &ImageRecord) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &format!("INSERT INTO images ({IMAGE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
                params![i.name, i.code.sha256, i.code.size as i64, i.unpacked_bytes as i64, i.created_ms],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("image {}", i.name))
                } else {
                    e.into()
                }
            })?;
            Ok(())
        })
    }

    fn get_image(&self, name: &str) -> Result<Option<ImageRecord>> {
        let conn = self.lock();
        let sql = format!("SELECT {IMAGE_COLS} FROM images WHERE name = ?1");
        Ok(conn.query_row(&sql, [name], image_row).optional()?)
    }

    fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("SELECT {IMAGE_COLS} FROM images ORDER BY name"))?;
        let rows = stmt.query_map([], image_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn delete_image(&self, name: &str) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM images WHERE name = ?1", [name])? > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("stoke.db")).unwrap();
        (dir, s)
    }

    fn account(s: &SqliteStore, n: u64) -> AccountId {
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

    fn layer(account: &AccountId, name: &str, sha: &str) -> LayerRecord {
        LayerRecord {
            account: account.clone(),
            name: LayerName::parse(name).unwrap(),
            version: 0,
            description: format!("{name} libs"),
            compatible_runtimes: vec!["python3.12".into()],
            code: CodeRef { sha256: sha.into(), size: 10 },
            created_ms: 7,
            deleted_ms: None,
        }
    }

    #[test]
    fn layer_versions_count_up_and_are_never_reused() {
        let (_d, s) = store();
        let (a, b) = (account(&s, 1), account(&s, 2));
        assert_eq!(s.insert_layer_version(&layer(&a, "np", "s1")).unwrap(), 1);
        assert_eq!(s.insert_layer_version(&layer(&a, "np", "s2")).unwrap(), 2);
        assert_eq!(s.insert_layer_version(&layer(&a, "pil", "s3")).unwrap(), 1);
        assert_eq!(s.insert_layer_version(&layer(&b, "np", "s1")).unwrap(), 1, "numbers are per account");
        let np = LayerName::parse("np").unwrap();
        let v2 = s.get_layer_version(&a, &np, 2).unwrap().unwrap();
        assert_eq!((v2.version, v2.code.sha256.as_str(), v2.compatible_runtimes.len()), (2, "s2", 1));
        let latest: Vec<_> = s.list_layers(&a).unwrap().iter().map(|l| (l.name.to_string(), l.version)).collect();
        assert_eq!(latest, [("np".to_string(), 2), ("pil".to_string(), 1)]);

        // Marked deleted: still readable (functions that list it keep running), no longer listed.
        assert!(s.delete_layer_version(&a, &np, 2, false, 99).unwrap());
        assert!(!s.delete_layer_version(&a, &np, 2, false, 100).unwrap(), "already deleted");
        assert_eq!(s.get_layer_version(&a, &np, 2).unwrap().unwrap().deleted_ms, Some(99));
        assert_eq!(s.list_layer_versions(&a, &np).unwrap().len(), 1);
        assert_eq!(s.list_layers(&a).unwrap()[0].version, 1, "the newest live version");
        assert_eq!(s.insert_layer_version(&layer(&a, "np", "s4")).unwrap(), 3, "2 is not reused");
        assert!(s.delete_layer_version(&a, &np, 1, true, 0).unwrap());
        assert!(s.get_layer_version(&a, &np, 1).unwrap().is_none(), "forgotten");
        let mut refs: Vec<_> =
            s.referenced_layers().unwrap().into_iter().map(|(acct, sha)| (acct.to_string(), sha)).collect();
        refs.sort();
        assert_eq!(refs.len(), 4, "{refs:?}");
    }

    #[test]
    fn images_have_unique_names() {
        let (_d, s) = store();
        let img = ImageRecord {
            name: "alpine".into(),
            code: CodeRef { sha256: "ff".into(), size: 3 },
            unpacked_bytes: 9,
            created_ms: 1,
        };
        s.insert_image(&img).unwrap();
        assert!(matches!(s.insert_image(&img), Err(StoreError::Conflict(_))));
        assert_eq!(s.get_image("alpine").unwrap(), Some(img.clone()));
        assert_eq!(s.list_images().unwrap(), [img]);
        assert!(s.delete_image("alpine").unwrap());
        assert!(!s.delete_image("alpine").unwrap());
        assert!(s.get_image("alpine").unwrap().is_none());
    }

    fn function(account: &AccountId, name: &str) -> FunctionRecord {
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

    #[test]
    fn duplicate_accounts_and_functions_conflict() {
        let (_d, s) = store();
        let a = account(&s, 1);
        let dup = s.create_account(
            &AccountRecord { id: AccountId::from_number(2), name: "acct1".into(), is_admin: false, created_ms: 1 },
            &AccountKeys { api_key_sha256: "x".into(), access_key_id: "y".into(), secret_access_key: "z".into() },
        );
        assert!(matches!(dup, Err(StoreError::Conflict(_))));
        s.insert_function(&function(&a, "f")).unwrap();
        assert!(matches!(s.insert_function(&function(&a, "f")), Err(StoreError::Conflict(_))));
    }

    #[test]
    fn accounts_are_isolated() {
        let (_d, s) = store();
        let a = account(&s, 1);
        let b = account(&s, 2);
        s.insert_function(&function(&a, "f")).unwrap();
        let name = FunctionName::parse("f").unwrap();
        assert!(s.get_function(&b, &name).unwrap().is_none());
        assert!(s.list_functions(&b, None, 10).unwrap().is_empty());
        assert!(!s.delete_function(&b, &name).unwrap());
        s.insert_function(&function(&b, "f")).unwrap();
        assert_eq!(s.list_functions(&a, None, 10).unwrap().len(), 1);
    }

    #[test]
    fn updates_check_the_revision() {
        let (_d, s) = store();
        let a = account(&s, 1);
        let mut f = function(&a, "f");
        s.insert_function(&f).unwrap();
        f.revision = 2;
        f.config.memory_mb = 256;
        s.update_function(&f, 1).unwrap();
        f.revision = 3;
        assert!(matches!(s.update_function(&f, 1), Err(StoreError::RevisionMismatch(_))));
        let missing = function(&a, "nope");
        assert!(matches!(s.update_function(&missing, 1), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn pagination_walks_all_functions_in_order() {
        let (_d, s) = store();
        let a = account(&s, 1);
        for n in ["c", "a", "e", "b", "d"] {
            s.insert_function(&function(&a, n)).unwrap();
        }
        let mut seen = vec![];
        let mut after: Option<String> = None;
        loop {
            let page = s.list_functions(&a, after.as_deref(), 2).unwrap();
            if page.is_empty() {
                break;
            }
            after = Some(page.last().unwrap().name.to_string());
            seen.extend(page.into_iter().map(|f| f.name.to_string()));
        }
        assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn publish_is_atomic_with_the_function_update() {
        let (_d, s) = store();
        let a = account(&s, 1);
        let mut f = function(&a, "f");
        s.insert_function(&f).unwrap();
        let v = VersionRecord {
            account: a.clone(),
            function: f.name.clone(),
            version: 1,
            config: f.config.clone(),
            code: f.code.clone().unwrap(),
            description: String::new(),
            created_ms: 9,
        };
        f.revision = 2;
        f.last_version = 1;
        // A stale revision refuses the whole publish: no version row appears.
        assert!(s.publish_version(&f, 7, &v).is_err());
        assert!(s.get_version(&a, &f.name, 1).unwrap().is_none());
        s.publish_version(&f, 1, &v).unwrap();
        assert_eq!(s.get_version(&a, &f.name, 1).unwrap(), Some(v.clone()));
        assert_eq!(s.list_versions(&a, &f.name, None, 10).unwrap().len(), 1);
        let refs = s.referenced_archives().unwrap();
        assert_eq!(refs.len(), 2);
        assert!(refs.iter().any(|r| r.2 == "1") && refs.iter().any(|r| r.2 == crate::LATEST_DIR));
    }

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

    #[test]
    fn aliases_and_cascading_delete() {
        let (_d, s) = store();
        let a = account(&s, 1);
        let f = function(&a, "f");
        s.insert_function(&f).unwrap();
        let mut alias = AliasRecord {
            account: a.clone(),
            function: f.name.clone(),
            name: AliasName::parse("prod").unwrap(),
            routing: AliasRouting { version: "$LATEST".into(), additional_version: None, additional_weight: None },
            description: String::new(),
            revision: 1,
            created_ms: 1,
            modified_ms: 1,
        };
        s.put_alias(&alias, None).unwrap();
        assert!(matches!(s.put_alias(&alias, None), Err(StoreError::Conflict(_))));
        alias.revision = 2;
        alias.routing.version = "1".into();
        s.put_alias(&alias, Some(1)).unwrap();
        assert!(matches!(s.put_alias(&alias, Some(1)), Err(StoreError::RevisionMismatch(_))));
        assert_eq!(s.get_alias(&a, &f.name, "prod").unwrap().unwrap().routing.version, "1");
        assert!(s.delete_function(&a, &f.name).unwrap());
        assert!(s.list_aliases(&a, &f.name).unwrap().is_empty());
    }

    fn trigger(account: &AccountId, id: &str, route: Option<(&str, &str)>) -> TriggerRecord {
        TriggerRecord {
            id: id.into(),
            account: account.clone(),
            kind: route.map_or(TriggerKind::Url, |(k, s)| TriggerKind::Route { key: k.into(), shape: s.into() }),
            function: FunctionName::parse("f").unwrap(),
            qualifier: Some("prod".into()),
            auth: stoke_core::gateway::TriggerAuth::None,
            cors: Some(stoke_core::gateway::Cors { allow_origins: vec!["*".into()], ..Default::default() }),
            created_ms: 7,
        }
    }

    #[test]
    fn triggers_round_trip_refuse_same_shape_routes_and_go_with_their_function() {
        let (_d, s) = store();
        let a = account(&s, 1);
        let b = account(&s, 2);
        assert!(matches!(s.insert_trigger(&trigger(&a, "u1", None)), Err(StoreError::NotFound(_))));
        s.insert_function(&function(&a, "f")).unwrap();
        s.insert_function(&function(&b, "f")).unwrap();
        let url = trigger(&a, "u1", None);
        s.insert_trigger(&url).unwrap();
        s.insert_trigger(&trigger(&a, "u2", None)).unwrap();
        s.insert_trigger(&trigger(&a, "r1", Some(("GET /p/{id}", "GET /p/{}")))).unwrap();
        let clash = s.insert_trigger(&trigger(&a, "r2", Some(("GET /p/{name}", "GET /p/{}"))));
        assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
        // Another account may have the same route.
        s.insert_trigger(&trigger(&b, "r3", Some(("GET /p/{id}", "GET /p/{}")))).unwrap();
        assert_eq!(s.get_trigger("u1").unwrap(), Some(url.clone()));
        assert_eq!(s.list_triggers(Some(&a)).unwrap().len(), 3);
        assert_eq!(s.list_triggers(None).unwrap().len(), 4);
        let mut changed = url.clone();
        changed.auth = stoke_core::gateway::TriggerAuth::Key;
        changed.cors = None;
        s.update_trigger(&changed).unwrap();
        assert_eq!(s.get_trigger("u1").unwrap(), Some(changed));
        assert!(!s.delete_trigger(&b, "u1").unwrap(), "only the owning account deletes");
        assert!(s.delete_trigger(&a, "u1").unwrap());
        assert!(s.delete_function(&a, &FunctionName::parse("f").unwrap()).unwrap());
        assert!(s.list_triggers(Some(&a)).unwrap().is_empty(), "a function's triggers go with it");
        assert_eq!(s.list_triggers(None).unwrap().len(), 1);
    }

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
        };
        s.put_workflow(&w, None).unwrap();
        assert!(matches!(s.put_workflow(&w, None), Err(StoreError::Conflict(_))));
        w.revision = 2;
        w.definition = "{\"v\":2}".into();
        w.prewarm = Some("eager".into());
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

    #[test]
    fn tunes_belong_to_their_function_and_a_restart_fails_the_running_ones() {
        let (_d, s) = store();
        let a = account(&s, 1);
        s.insert_function(&function(&a, "f")).unwrap();
        let f = FunctionName::parse("f").unwrap();
        let tune = |id: &str, at| TuneRecord {
            id: id.into(),
            account: a.clone(),
            function: f.clone(),
            state: "running".into(),
            request: "{}".into(),
            result: None,
            error: None,
            created_ms: at,
            finished_ms: None,
        };
        s.put_tune(&tune("t1", 1)).unwrap();
        let mut done = tune("t1", 1);
        (done.state, done.result, done.finished_ms) = ("succeeded".into(), Some("{\"r\":1}".into()), Some(5));
        s.put_tune(&done).unwrap();
        s.put_tune(&tune("t2", 2)).unwrap();
        assert_eq!(s.get_tune(&a, "t1").unwrap(), Some(done));
        assert_eq!(s.get_tune(&account(&s, 2), "t1").unwrap(), None, "another account's tune is not found");
        assert_eq!(s.latest_tune(&a, &f).unwrap().unwrap().id, "t2");
        assert_eq!(s.fail_running_tunes("the server restarted", 9).unwrap(), 1);
        let t2 = s.get_tune(&a, "t2").unwrap().unwrap();
        assert_eq!(
            (t2.state.as_str(), t2.error.as_deref(), t2.finished_ms),
            ("failed", Some("the server restarted"), Some(9))
        );
        let mut orphan = tune("t3", 3);
        orphan.function = FunctionName::parse("gone").unwrap();
        assert!(matches!(s.put_tune(&orphan), Err(StoreError::NotFound(_))));
        s.delete_function(&a, &f).unwrap();
        assert_eq!(s.get_tune(&a, "t1").unwrap(), None, "a function's tunes go with it");
    }

    #[test]
    fn statistics_are_replaced_by_kind_and_key() {
        let (_d, s) = store();
        let stat = |kind: &str, key: &str, data: &str, at| StatRecord {
            kind: kind.into(),
            key: key.into(),
            data: data.into(),
            updated_ms: at,
        };
        s.put_stats(&[stat("function", "a/f/$LATEST", "[1]", 1), stat("choice", "a/w/C", "{}", 1)]).unwrap();
        s.put_stats(&[stat("function", "a/f/$LATEST", "[1,2]", 2)]).unwrap();
        let all = s.all_stats().unwrap();
        assert_eq!(all, vec![stat("choice", "a/w/C", "{}", 1), stat("function", "a/f/$LATEST", "[1,2]", 2)]);
    }
}
