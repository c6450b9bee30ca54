//! Functions with their versions and aliases: `functions/<account>/<name>`,
//! `versions/<account>/<name>/<version>` and `aliases/<account>/<name>/<alias>`. Deleting a function
//! deletes everything under its name in one transaction: versions, aliases, triggers and tunes.

use stoke_core::{AccountId, FunctionName, LifecycleState};

use super::{absent, delete, delete_prefix, none_changed_since, num, present, put, unchanged, EtcdStore, Read};
use crate::{
    AliasRecord, EventConfigRecord, FunctionRecord, FunctionStore, Result, StoreError, TriggerRecord, VersionRecord,
};

impl EtcdStore {
    fn function_key(&self, account: &AccountId, name: &FunctionName) -> String {
        self.keys.key(&["functions", account.as_str(), name.as_str()])
    }

    fn version_key(&self, v: &VersionRecord) -> String {
        self.keys.key(&["versions", v.account.as_str(), v.function.as_str(), &num(v.version)])
    }

    fn alias_key(&self, account: &AccountId, function: &FunctionName, alias: &str) -> String {
        self.keys.key(&["aliases", account.as_str(), function.as_str(), alias])
    }

    /// The function stored at `key`, if its revision is still `expected_revision` (`what` names it in the
    /// error otherwise).
    fn function_at(
        &self,
        key: &str,
        expected_revision: u64,
        what: &dyn Fn() -> String,
    ) -> Result<super::Read<FunctionRecord>> {
        let Some(stored) = self.get::<FunctionRecord>(key)? else {
            return Err(StoreError::NotFound(what()));
        };
        if stored.value.revision != expected_revision {
            return Err(StoreError::RevisionMismatch(what()));
        }
        Ok(stored)
    }

    /// Replaces `f` if its stored revision is `expected_revision`, together with `also`.
    fn write_function(&self, f: &FunctionRecord, expected_revision: u64, also: &[(String, Vec<u8>)]) -> Result<()> {
        let key = self.function_key(&f.account, &f.name);
        let what = || format!("function {}", f.name);
        self.retry(what, || {
            let stored = self.function_at(&key, expected_revision, &what)?;
            // An update keeps the creation time, as SQLite's does.
            let mut next = f.clone();
            next.created_ms = stored.value.created_ms;
            let mut when = vec![unchanged(&key, stored.mod_revision)];
            let mut ops = vec![put(&key, &next)?];
            for (k, v) in also {
                when.push(absent(k));
                ops.push(etcd_client::TxnOp::put(k.as_str(), v.clone(), None));
            }
            if self.commit(when, ops)? {
                return Ok(Some(()));
            }
            // Refused: if the function changed meanwhile, read it again (its revision decides); if it did not,
            // the version's key is taken.
            let now = self.get::<serde_json::Value>(&key)?.map(|r| r.mod_revision);
            if now != Some(stored.mod_revision) {
                return Ok(None);
            }
            Err(StoreError::Conflict(format!("version of function {}", f.name)))
        })
    }
}

impl FunctionStore for EtcdStore {
    fn insert_function(&self, f: &FunctionRecord) -> Result<()> {
        let key = self.function_key(&f.account, &f.name);
        if self.commit(vec![absent(&key)], vec![put(&key, f)?])? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("function {}", f.name)))
        }
    }

    fn insert_published_function(&self, f: &FunctionRecord, v: &VersionRecord) -> Result<()> {
        if (&v.account, &v.function) != (&f.account, &f.name) {
            return Err(StoreError::Conflict(format!(
                "version {} names function {}, not {}",
                v.version, v.function, f.name
            )));
        }
        let (key, vkey) = (self.function_key(&f.account, &f.name), self.version_key(v));
        if self.commit(vec![absent(&key), absent(&vkey)], vec![put(&key, f)?, put(&vkey, v)?])? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("function {}", f.name)))
        }
    }

    fn get_function(&self, account: &AccountId, name: &FunctionName) -> Result<Option<FunctionRecord>> {
        Ok(self.get(&self.function_key(account, name))?.map(|r: Read<FunctionRecord>| r.value))
    }

    fn list_functions(&self, account: &AccountId, after: Option<&str>, limit: usize) -> Result<Vec<FunctionRecord>> {
        let (rows, _) = self.list::<FunctionRecord>(&self.keys.under(&["functions", account.as_str()]))?;
        Ok(rows
            .into_iter()
            .map(|r| r.value)
            .filter(|f| after.is_none_or(|a| f.name.as_str() > a))
            .take(limit)
            .collect())
    }

    fn functions_in_state(&self, state: LifecycleState) -> Result<Vec<FunctionRecord>> {
        let (rows, _) = self.list::<FunctionRecord>(&self.keys.under(&["functions"]))?;
        Ok(rows.into_iter().map(|r| r.value).filter(|f| f.state == state).collect())
    }

    fn update_function(&self, f: &FunctionRecord, expected_revision: u64) -> Result<()> {
        self.write_function(f, expected_revision, &[])
    }

    fn delete_function(&self, account: &AccountId, name: &FunctionName) -> Result<bool> {
        let key = self.function_key(account, name);
        let (a, n) = (account.as_str(), name.as_str());
        let triggers = self.keys.under(&["triggers", a, n]);
        self.retry(
            || format!("function {name}"),
            || {
                let Some(stored) = self.get::<serde_json::Value>(&key)? else {
                    return Ok(Some(false));
                };
                // A trigger's id and route keys go with it; a trigger added after this read fails the commit.
                let (found, revision) = self.list::<TriggerRecord>(&triggers)?;
                let mut ops = vec![
                    delete(&key),
                    delete_prefix(&self.keys.under(&["versions", a, n])),
                    delete_prefix(&self.keys.under(&["aliases", a, n])),
                    delete_prefix(&self.keys.under(&["tunes", a, n])),
                    delete_prefix(&self.keys.under(&["event-configs", a, n])),
                    delete_prefix(&triggers),
                ];
                for t in &found {
                    ops.extend(self.trigger_index_keys(&t.value).iter().map(|k| delete(k)));
                }
                let when = vec![unchanged(&key, stored.mod_revision), none_changed_since(&triggers, revision)];
                Ok(self.commit(when, ops)?.then_some(true))
            },
        )
    }

    fn publish_version(&self, f: &FunctionRecord, expected_revision: u64, v: &VersionRecord) -> Result<()> {
        self.write_function(f, expected_revision, &[(self.version_key(v), super::encode(v)?)])
    }

    fn put_event_config(&self, c: &EventConfigRecord) -> Result<()> {
        let key = self.keys.key(&["event-configs", c.account.as_str(), c.function.as_str(), &c.qualifier]);
        let function = self.function_key(&c.account, &c.function);
        if self.commit(vec![present(&function)], vec![put(&key, c)?])? {
            return Ok(());
        }
        Err(StoreError::NotFound(format!("function {}", c.function)))
    }

    fn get_event_config(
        &self,
        account: &AccountId,
        function: &FunctionName,
        qualifier: &str,
    ) -> Result<Option<EventConfigRecord>> {
        let key = self.keys.key(&["event-configs", account.as_str(), function.as_str(), qualifier]);
        Ok(self.get(&key)?.map(|r: Read<EventConfigRecord>| r.value))
    }

    fn list_event_configs(&self, account: &AccountId, function: &FunctionName) -> Result<Vec<EventConfigRecord>> {
        let (rows, _) =
            self.list::<EventConfigRecord>(&self.keys.under(&["event-configs", account.as_str(), function.as_str()]))?;
        Ok(rows.into_iter().map(|r| r.value).collect())
    }

    fn delete_event_config(&self, account: &AccountId, function: &FunctionName, qualifier: &str) -> Result<bool> {
        let key = self.keys.key(&["event-configs", account.as_str(), function.as_str(), qualifier]);
        let resp = self.run(move |mut kv| async move { kv.delete(key, None).await })?;
        Ok(resp.deleted() > 0)
    }

    fn delete_version(&self, f: &FunctionRecord, expected_revision: u64, version: u64) -> Result<bool> {
        let key = self.function_key(&f.account, &f.name);
        let (a, n) = (f.account.as_str(), f.name.as_str());
        let version_key = self.keys.key(&["versions", a, n, &num(version)]);
        let aliases = self.keys.under(&["aliases", a, n]);
        let what = || format!("function {}", f.name);
        self.retry(what, || {
            let stored = self.function_at(&key, expected_revision, &what)?;
            let Some(v) = self.get::<serde_json::Value>(&version_key)? else {
                return Ok(Some(false));
            };
            // An alias made to route to the version after this read fails the commit.
            let (routes, revision) = self.list::<AliasRecord>(&aliases)?;
            let routes: Vec<AliasRecord> = routes.into_iter().map(|r| r.value).collect();
            crate::refuse_routed_version(&routes, f, version)?;
            let mut next = f.clone();
            next.created_ms = stored.value.created_ms;
            let when = vec![
                unchanged(&key, stored.mod_revision),
                unchanged(&version_key, v.mod_revision),
                none_changed_since(&aliases, revision),
            ];
            Ok(self.commit(when, vec![put(&key, &next)?, delete(&version_key)])?.then_some(true))
        })
    }

    fn get_version(&self, account: &AccountId, name: &FunctionName, version: u64) -> Result<Option<VersionRecord>> {
        let key = self.keys.key(&["versions", account.as_str(), name.as_str(), &num(version)]);
        Ok(self.get(&key)?.map(|r: Read<VersionRecord>| r.value))
    }

    fn list_versions(
        &self,
        account: &AccountId,
        name: &FunctionName,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<VersionRecord>> {
        let (rows, _) = self.list::<VersionRecord>(&self.keys.under(&["versions", account.as_str(), name.as_str()]))?;
        let after = after.unwrap_or(0);
        Ok(rows.into_iter().map(|r| r.value).filter(|v| v.version > after).take(limit).collect())
    }

    fn put_alias(&self, a: &AliasRecord, expected_revision: Option<u64>) -> Result<()> {
        let key = self.alias_key(&a.account, &a.function, a.name.as_str());
        let what = || format!("alias {} of {}", a.name, a.function);
        let function = self.function_key(&a.account, &a.function);
        match expected_revision {
            None => {
                if self.commit(vec![absent(&key), present(&function)], vec![put(&key, a)?])? {
                    return Ok(());
                }
                if self.get::<serde_json::Value>(&function)?.is_none() {
                    return Err(StoreError::NotFound(format!("function {}", a.function)));
                }
                Err(StoreError::Conflict(what()))
            }
            Some(expected) => self.replace_at_revision(&key, a, expected, &what, StoreError::RevisionMismatch),
        }
    }

    fn get_alias(&self, account: &AccountId, function: &FunctionName, alias: &str) -> Result<Option<AliasRecord>> {
        Ok(self.get(&self.alias_key(account, function, alias))?.map(|r: Read<AliasRecord>| r.value))
    }

    fn list_aliases(&self, account: &AccountId, function: &FunctionName) -> Result<Vec<AliasRecord>> {
        let (rows, _) =
            self.list::<AliasRecord>(&self.keys.under(&["aliases", account.as_str(), function.as_str()]))?;
        Ok(rows.into_iter().map(|r| r.value).collect())
    }

    fn delete_alias(&self, account: &AccountId, function: &FunctionName, alias: &str) -> Result<bool> {
        let key = self.alias_key(account, function, alias);
        let resp = self.run(move |mut kv| async move { kv.delete(key, None).await })?;
        Ok(resp.deleted() > 0)
    }

    fn referenced_archives(&self) -> Result<Vec<(AccountId, FunctionName, String, String)>> {
        let (functions, _) = self.list::<FunctionRecord>(&self.keys.under(&["functions"]))?;
        let (versions, _) = self.list::<VersionRecord>(&self.keys.under(&["versions"]))?;
        let latest = functions.into_iter().filter_map(|r| {
            let f = r.value;
            f.code.map(|c| (f.account, f.name, crate::LATEST_DIR.to_string(), c.sha256))
        });
        let published = versions.into_iter().map(|r| {
            let v = r.value;
            (v.account, v.function, v.version.to_string(), v.code.sha256)
        });
        Ok(latest.chain(published).collect())
    }
}
