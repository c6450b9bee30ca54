//! Functions, their published versions and their aliases.

use rusqlite::{params, OptionalExtension, Row, Transaction};
use stoke_core::{AccountId, AliasName, AliasRouting, FunctionConfig, FunctionName, LifecycleState};

use super::{account_id, corrupt, function_name, is_unique_violation, SqliteStore};
use crate::{
    AliasRecord, CodeRef, EventConfigRecord, FunctionRecord, FunctionStore, Result, StoreError, VersionRecord,
};

fn config(s: String) -> rusqlite::Result<FunctionConfig> {
    serde_json::from_str(&s).map_err(|e| corrupt("configuration", e))
}

fn config_json(c: &FunctionConfig) -> Result<String> {
    serde_json::to_string(c).map_err(|e| StoreError::Corrupt(e.to_string()))
}

const FUNCTION_COLS: &str = "account_id, name, config, state, code_sha256, code_size, revision, \
                             latest_published, last_version, created_ms, modified_ms";

fn function_row(r: &Row<'_>) -> rusqlite::Result<FunctionRecord> {
    let state: String = r.get("state")?;
    let sha: Option<String> = r.get("code_sha256")?;
    let size: Option<u64> = r.get("code_size")?;
    Ok(FunctionRecord {
        account: account_id(r.get("account_id")?)?,
        name: function_name(r.get("name")?)?,
        config: config(r.get("config")?)?,
        state: LifecycleState::parse(&state).ok_or_else(|| corrupt("lifecycle state", &state))?,
        code: sha.zip(size).map(|(sha256, size)| CodeRef { sha256, size }),
        revision: r.get::<_, u64>("revision")?,
        latest_published: r.get::<_, Option<u64>>("latest_published")?,
        last_version: r.get::<_, u64>("last_version")?,
        created_ms: r.get("created_ms")?,
        modified_ms: r.get("modified_ms")?,
    })
}

const VERSION_COLS: &str =
    "account_id, function_name, version, config, code_sha256, code_size, description, created_ms";

fn version_row(r: &Row<'_>) -> rusqlite::Result<VersionRecord> {
    Ok(VersionRecord {
        account: account_id(r.get("account_id")?)?,
        function: function_name(r.get("function_name")?)?,
        version: r.get::<_, u64>("version")?,
        config: config(r.get("config")?)?,
        code: CodeRef { sha256: r.get("code_sha256")?, size: r.get::<_, u64>("code_size")? },
        description: r.get("description")?,
        created_ms: r.get("created_ms")?,
    })
}

const ALIAS_COLS: &str = "account_id, function_name, name, version, additional_version, additional_weight, \
                          description, revision, created_ms, modified_ms";

const EVENT_CONFIG_COLS: &str =
    "account_id, function_name, qualifier, max_retries, max_age_s, on_success, on_failure, modified_ms";

fn event_config_row(r: &Row<'_>) -> rusqlite::Result<EventConfigRecord> {
    Ok(EventConfigRecord {
        account: account_id(r.get("account_id")?)?,
        function: function_name(r.get("function_name")?)?,
        qualifier: r.get("qualifier")?,
        max_retries: r.get("max_retries")?,
        max_age_s: r.get("max_age_s")?,
        on_success: r.get("on_success")?,
        on_failure: r.get("on_failure")?,
        modified_ms: r.get("modified_ms")?,
    })
}

fn alias_row(r: &Row<'_>) -> rusqlite::Result<AliasRecord> {
    let name: String = r.get("name")?;
    Ok(AliasRecord {
        account: account_id(r.get("account_id")?)?,
        function: function_name(r.get("function_name")?)?,
        name: AliasName::parse(&name).map_err(|e| corrupt("alias name", e))?,
        routing: AliasRouting {
            version: r.get("version")?,
            additional_version: r.get("additional_version")?,
            additional_weight: r.get("additional_weight")?,
        },
        description: r.get("description")?,
        revision: r.get::<_, u64>("revision")?,
        created_ms: r.get("created_ms")?,
        modified_ms: r.get("modified_ms")?,
    })
}

fn write_function(tx: &Transaction<'_>, f: &FunctionRecord, expected_revision: u64) -> Result<()> {
    let mut values = function_values(f)?;
    values.push(Box::new(expected_revision as i64));
    // ?10 is created_ms, which an update keeps.
    let changed = tx.execute(
        "UPDATE functions SET config = ?3, state = ?4, code_sha256 = ?5, code_size = ?6, revision = ?7,
                latest_published = ?8, last_version = ?9, modified_ms = ?11
         WHERE account_id = ?1 AND name = ?2 AND revision = ?12",
        rusqlite::params_from_iter(values),
    )?;
    if changed == 1 {
        return Ok(());
    }
    let exists: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM functions WHERE account_id = ?1 AND name = ?2) AS found",
        params![f.account.as_str(), f.name.as_str()],
        |r| r.get("found"),
    )?;
    let what = format!("function {}", f.name);
    Err(if exists { StoreError::RevisionMismatch(what) } else { StoreError::NotFound(what) })
}

impl FunctionStore for SqliteStore {
    fn insert_function(&self, f: &FunctionRecord) -> Result<()> {
        self.write(|tx| insert_function_row(tx, f))
    }

    fn insert_published_function(&self, f: &FunctionRecord, v: &VersionRecord) -> Result<()> {
        self.write(|tx| {
            insert_function_row(tx, f)?;
            insert_version_row(tx, v)
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
            insert_version_row(tx, v)
        })
    }

    fn put_event_config(&self, c: &EventConfigRecord) -> Result<()> {
        self.write(|tx| {
            let written = tx.execute(
                &format!(
                    "INSERT INTO event_configs ({EVENT_CONFIG_COLS})
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
                     WHERE EXISTS (SELECT 1 FROM functions WHERE account_id = ?1 AND name = ?2)
                     ON CONFLICT (account_id, function_name, qualifier) DO UPDATE SET
                         max_retries = excluded.max_retries, max_age_s = excluded.max_age_s,
                         on_success = excluded.on_success, on_failure = excluded.on_failure,
                         modified_ms = excluded.modified_ms"
                ),
                params![
                    c.account.as_str(),
                    c.function.as_str(),
                    c.qualifier,
                    c.max_retries,
                    c.max_age_s,
                    c.on_success,
                    c.on_failure,
                    c.modified_ms
                ],
            )?;
            if written == 0 {
                return Err(StoreError::NotFound(format!("function {}", c.function)));
            }
            Ok(())
        })
    }

    fn get_event_config(
        &self,
        account: &AccountId,
        function: &FunctionName,
        qualifier: &str,
    ) -> Result<Option<EventConfigRecord>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {EVENT_CONFIG_COLS} FROM event_configs
                     WHERE account_id = ?1 AND function_name = ?2 AND qualifier = ?3"
                ),
                params![account.as_str(), function.as_str(), qualifier],
                event_config_row,
            )
            .optional()?)
    }

    fn list_event_configs(&self, account: &AccountId, function: &FunctionName) -> Result<Vec<EventConfigRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {EVENT_CONFIG_COLS} FROM event_configs WHERE account_id = ?1 AND function_name = ?2
             ORDER BY qualifier"
        ))?;
        let rows = stmt
            .query_map(params![account.as_str(), function.as_str()], event_config_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn delete_event_config(&self, account: &AccountId, function: &FunctionName, qualifier: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM event_configs WHERE account_id = ?1 AND function_name = ?2 AND qualifier = ?3",
                params![account.as_str(), function.as_str(), qualifier],
            )?;
            Ok(n == 1)
        })
    }

    fn delete_version(&self, f: &FunctionRecord, expected_revision: u64, version: u64) -> Result<bool> {
        self.write(|tx| {
            // The function as read first (as every backend answers), then the version.
            let stored: Option<i64> = tx
                .query_row(
                    "SELECT revision FROM functions WHERE account_id = ?1 AND name = ?2",
                    params![f.account.as_str(), f.name.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            let what = || format!("function {}", f.name);
            match stored {
                None => return Err(StoreError::NotFound(what())),
                Some(r) if r != expected_revision as i64 => return Err(StoreError::RevisionMismatch(what())),
                Some(_) => {}
            }
            let keys = params![f.account.as_str(), f.name.as_str(), version as i64];
            let exists: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM versions WHERE account_id = ?1 AND function_name = ?2 AND version = ?3)
                 AS found",
                keys,
                |r| r.get("found"),
            )?;
            if !exists {
                return Ok(false);
            }
            let mut stmt = tx.prepare(&format!(
                "SELECT {ALIAS_COLS} FROM aliases WHERE account_id = ?1 AND function_name = ?2 ORDER BY name"
            ))?;
            let aliases = stmt
                .query_map(params![f.account.as_str(), f.name.as_str()], alias_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            drop(stmt);
            crate::refuse_routed_version(&aliases, f, version)?;
            write_function(tx, f, expected_revision)?;
            tx.execute("DELETE FROM versions WHERE account_id = ?1 AND function_name = ?2 AND version = ?3", keys)?;
            Ok(true)
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
            .query_map(
                params![
                    account.as_str(),
                    name.as_str(),
                    i64::try_from(after.unwrap_or(0)).unwrap_or(i64::MAX),
                    limit as i64
                ],
                version_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn put_alias(&self, a: &AliasRecord, expected_revision: Option<u64>) -> Result<()> {
        self.write(|tx| {
            let what = format!("alias {} of {}", a.name, a.function);
            let (account, function, name, revision) =
                (a.account.as_str(), a.function.as_str(), a.name.as_str(), a.revision as i64);
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![
                &account,
                &function,
                &name,
                &a.routing.version,
                &a.routing.additional_version,
                &a.routing.additional_weight,
                &a.description,
                &revision,
                &a.created_ms,
                &a.modified_ms,
            ];
            match expected_revision {
                None => {
                    tx.execute(
                        &format!("INSERT INTO aliases ({ALIAS_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                        values.as_slice(),
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
                    let expected = expected as i64;
                    values.push(&expected);
                    // ?9 is created_ms, which an update keeps.
                    let n = tx.execute(
                        "UPDATE aliases SET version = ?4, additional_version = ?5, additional_weight = ?6,
                                description = ?7, revision = ?8, modified_ms = ?10
                         WHERE account_id = ?1 AND function_name = ?2 AND name = ?3 AND revision = ?11",
                        values.as_slice(),
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

    fn referenced_archives(&self) -> Result<Vec<(AccountId, FunctionName, String, String)>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT account_id, name AS function_name, '{}' AS version_dir, code_sha256
             FROM functions WHERE code_sha256 IS NOT NULL
             UNION ALL
             SELECT account_id, function_name, CAST(version AS TEXT) AS version_dir, code_sha256 FROM versions",
            crate::LATEST_DIR
        ))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    account_id(r.get("account_id")?)?,
                    function_name(r.get("function_name")?)?,
                    r.get("version_dir")?,
                    r.get("code_sha256")?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

/// A function's values in [`FUNCTION_COLS`] order, to bind as `?1`..`?11`.
fn function_values(f: &FunctionRecord) -> Result<Vec<Box<dyn rusqlite::ToSql>>> {
    Ok(vec![
        Box::new(f.account.as_str().to_string()),
        Box::new(f.name.as_str().to_string()),
        Box::new(config_json(&f.config)?),
        Box::new(f.state.as_str()),
        Box::new(f.code.as_ref().map(|c| c.sha256.clone())),
        Box::new(f.code.as_ref().map(|c| c.size as i64)),
        Box::new(f.revision as i64),
        Box::new(f.latest_published.map(|v| v as i64)),
        Box::new(f.last_version as i64),
        Box::new(f.created_ms),
        Box::new(f.modified_ms),
    ])
}

fn insert_function_row(tx: &Transaction<'_>, f: &FunctionRecord) -> Result<()> {
    tx.execute(
        &format!("INSERT INTO functions ({FUNCTION_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
        rusqlite::params_from_iter(function_values(f)?),
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("function {}", f.name))
        } else {
            e.into()
        }
    })?;
    Ok(())
}

fn insert_version_row(tx: &Transaction<'_>, v: &VersionRecord) -> Result<()> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::fixtures::{account, function, store};

    #[test]
    fn duplicate_functions_conflict() {
        let (_d, s) = store();
        let a = account(&s, 1);
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
        let stored = s.get_function(&a, &f.name).unwrap().unwrap();
        assert_eq!((stored.revision, stored.config.memory_mb), (2, 256), "the refused update wrote nothing");
    }

    #[test]
    fn functions_round_trip_every_field() {
        let (_d, s) = store();
        let a = account(&s, 1);
        let mut f = function(&a, "f");
        (f.state, f.code, f.latest_published, f.last_version) = (LifecycleState::Updating, None, Some(3), 4);
        f.config.memory_mb = 512;
        f.config.environment.insert("K".into(), "v".into());
        (f.revision, f.created_ms, f.modified_ms) = (7, 11, 12);
        s.insert_function(&f).unwrap();
        assert_eq!(s.get_function(&a, &f.name).unwrap(), Some(f.clone()));
        f.code = Some(CodeRef { sha256: "cd".into(), size: 99 });
        f.state = LifecycleState::Latest;
        f.revision = 8;
        s.update_function(&f, 7).unwrap();
        assert_eq!(s.get_function(&a, &f.name).unwrap(), Some(f));
    }

    #[test]
    fn functions_are_found_by_state_across_accounts() {
        let (_d, s) = store();
        let (a, b) = (account(&s, 1), account(&s, 2));
        let mut retired = function(&a, "old");
        retired.state = LifecycleState::Retired;
        s.insert_function(&retired).unwrap();
        s.insert_function(&function(&a, "new")).unwrap();
        let mut other = function(&b, "gone");
        other.state = LifecycleState::Retired;
        s.insert_function(&other).unwrap();
        let mut found: Vec<_> = s
            .functions_in_state(LifecycleState::Retired)
            .unwrap()
            .into_iter()
            .map(|f| (f.account.to_string(), f.name.to_string()))
            .collect();
        found.sort();
        assert_eq!(found, [(a.to_string(), "old".to_string()), (b.to_string(), "gone".to_string())]);
        assert!(s.functions_in_state(LifecycleState::Blocked).unwrap().is_empty());
    }

    #[test]
    fn delete_takes_versions_and_aliases_along() {
        let (_d, s) = store();
        let a = account(&s, 1);
        let mut f = function(&a, "f");
        s.insert_function(&f).unwrap();
        let v = version(&f, 1);
        f.revision = 2;
        s.publish_version(&f, 1, &v).unwrap();
        s.put_alias(&alias(&f, "prod", "1"), None).unwrap();
        assert!(s.delete_function(&a, &f.name).unwrap());
        assert!(!s.delete_function(&a, &f.name).unwrap(), "already gone");
        assert_eq!(s.get_function(&a, &f.name).unwrap(), None);
        assert_eq!(s.get_version(&a, &f.name, 1).unwrap(), None);
        assert_eq!(s.get_alias(&a, &f.name, "prod").unwrap(), None);
        assert!(s.referenced_archives().unwrap().is_empty(), "nothing points at its archives any more");
        s.insert_function(&function(&a, "f")).unwrap();
        assert!(s.list_versions(&a, &f.name, None, 10).unwrap().is_empty(), "a new function of the name starts bare");
    }

    fn version(f: &FunctionRecord, n: u64) -> VersionRecord {
        VersionRecord {
            account: f.account.clone(),
            function: f.name.clone(),
            version: n,
            config: f.config.clone(),
            code: CodeRef { sha256: format!("v{n}"), size: n },
            description: format!("version {n}"),
            created_ms: 100 + n as i64,
        }
    }

    fn alias(f: &FunctionRecord, name: &str, version: &str) -> AliasRecord {
        AliasRecord {
            account: f.account.clone(),
            function: f.name.clone(),
            name: AliasName::parse(name).unwrap(),
            routing: AliasRouting { version: version.into(), additional_version: None, additional_weight: None },
            description: format!("{name} traffic"),
            revision: 1,
            created_ms: 1,
            modified_ms: 1,
        }
    }

    #[test]
    fn a_function_created_published_has_its_version_or_nothing() {
        let (_d, s) = store();
        let a = account(&s, 1);
        let mut f = function(&a, "f");
        (f.last_version, f.latest_published) = (1, Some(1));
        s.insert_published_function(&f, &version(&f, 1)).unwrap();
        assert_eq!(s.get_function(&a, &f.name).unwrap(), Some(f.clone()));
        assert_eq!(s.get_version(&a, &f.name, 1).unwrap(), Some(version(&f, 1)));
        // The version cannot be written (it names another function): the function is not created either.
        let g = function(&a, "g");
        let refused = s.insert_published_function(&g, &version(&function(&a, "elsewhere"), 1));
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(s.get_function(&a, &g.name).unwrap(), None, "a refused create leaves nothing behind");
        let taken = s.insert_published_function(&f, &version(&f, 1));
        assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    }

    #[test]
    fn publish_requires_the_revision_read_and_a_new_number() {
        let (_d, s) = store();
        let a = account(&s, 1);
        let mut f = function(&a, "f");
        s.insert_function(&f).unwrap();
        for n in 1..=3 {
            let read = f.revision;
            (f.revision, f.last_version, f.latest_published) = (read + 1, n, Some(n));
            s.publish_version(&f, read, &version(&f, n)).unwrap();
        }
        assert_eq!(s.get_function(&a, &f.name).unwrap(), Some(f.clone()), "the function moved with each publish");
        let stale = s.publish_version(&f, 1, &version(&f, 4));
        assert!(matches!(stale, Err(StoreError::RevisionMismatch(_))), "{stale:?}");
        let read = f.revision;
        f.revision += 1;
        let again = s.publish_version(&f, read, &version(&f, 3));
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
        assert_eq!(s.get_function(&a, &f.name).unwrap().unwrap().revision, read, "a refused publish changes nothing");
        let missing = function(&a, "nope");
        assert!(matches!(s.publish_version(&missing, 1, &version(&missing, 1)), Err(StoreError::NotFound(_))));

        assert_eq!(s.get_version(&a, &f.name, 2).unwrap(), Some(version(&f, 2)));
        assert_eq!(s.get_version(&a, &f.name, 9).unwrap(), None);
        let numbers = |after, limit| -> Vec<u64> {
            s.list_versions(&a, &f.name, after, limit).unwrap().into_iter().map(|v| v.version).collect()
        };
        assert_eq!(numbers(None, 10), [1, 2, 3]);
        assert_eq!(numbers(None, 2), [1, 2]);
        assert_eq!(numbers(Some(2), 10), [3]);
        assert!(numbers(Some(3), 10).is_empty());
        assert!(numbers(Some(u64::MAX), 10).is_empty(), "a cursor past every version is an empty page");
    }

    #[test]
    fn aliases_round_trip_list_by_name_and_delete() {
        let (_d, s) = store();
        let a = account(&s, 1);
        let f = function(&a, "f");
        s.insert_function(&f).unwrap();
        let mut canary = alias(&f, "canary", "1");
        canary.routing.additional_version = Some("2".into());
        canary.routing.additional_weight = Some(0.25);
        s.put_alias(&canary, None).unwrap();
        s.put_alias(&alias(&f, "beta", "$LATEST"), None).unwrap();
        assert_eq!(s.get_alias(&a, &f.name, "canary").unwrap(), Some(canary.clone()));
        let names: Vec<String> = s.list_aliases(&a, &f.name).unwrap().into_iter().map(|x| x.name.to_string()).collect();
        assert_eq!(names, ["beta", "canary"]);
        let missing = alias(&f, "nope", "1");
        assert!(matches!(s.put_alias(&missing, Some(1)), Err(StoreError::RevisionMismatch(_))));
        assert!(s.delete_alias(&a, &f.name, "canary").unwrap());
        assert!(!s.delete_alias(&a, &f.name, "canary").unwrap());
        assert_eq!(s.get_alias(&a, &f.name, "canary").unwrap(), None);
        assert_eq!(s.list_aliases(&a, &f.name).unwrap().len(), 1);
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
}
