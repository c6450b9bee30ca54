//! HTTP triggers: function URLs and gateway routes.

use rusqlite::{params, OptionalExtension, Row};
use stoke_core::AccountId;

use super::{account_id, corrupt, function_name, is_unique_violation, SqliteStore};
use crate::{Result, StoreError, TriggerKind, TriggerRecord, TriggerStore};

const TRIGGER_COLS: &str =
    "id, account_id, kind, route_key, route_shape, function_name, qualifier, auth, cors, created_ms";

fn trigger_row(r: &Row<'_>) -> rusqlite::Result<TriggerRecord> {
    let kind: String = r.get("kind")?;
    let kind = match kind.as_str() {
        "url" => TriggerKind::Url,
        "route" => TriggerKind::Route { key: r.get("route_key")?, shape: r.get("route_shape")? },
        other => return Err(corrupt("trigger kind", other)),
    };
    let auth: String = r.get("auth")?;
    let cors: Option<String> = r.get("cors")?;
    Ok(TriggerRecord {
        id: r.get("id")?,
        account: account_id(r.get("account_id")?)?,
        kind,
        function: function_name(r.get("function_name")?)?,
        qualifier: r.get("qualifier")?,
        auth: stoke_core::gateway::TriggerAuth::parse(&auth).ok_or_else(|| corrupt("trigger auth", &auth))?,
        cors: cors.map(|c| serde_json::from_str(&c).map_err(|e| corrupt("trigger CORS", e))).transpose()?,
        created_ms: r.get("created_ms")?,
    })
}

fn cors_json(t: &TriggerRecord) -> Result<Option<String>> {
    t.cors.as_ref().map(|c| serde_json::to_string(c).map_err(|e| StoreError::Corrupt(e.to_string()))).transpose()
}

impl TriggerStore for SqliteStore {
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
}

#[cfg(test)]
mod tests {
    use stoke_core::FunctionName;

    use super::*;
    use crate::prelude::*;
    use crate::sqlite::fixtures::{account, function, store};

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
    fn updates_change_only_auth_and_cors_of_the_accounts_own_trigger() {
        let (_d, s) = store();
        let (a, b) = (account(&s, 1), account(&s, 2));
        s.insert_function(&function(&a, "f")).unwrap();
        let mut late = trigger(&a, "r1", Some(("POST /items", "POST /items")));
        (late.created_ms, late.qualifier, late.cors) = (9, None, None);
        s.insert_trigger(&late).unwrap();
        let early = trigger(&a, "u1", None);
        s.insert_trigger(&early).unwrap();
        assert_eq!(s.list_triggers(Some(&a)).unwrap(), [early.clone(), late.clone()], "oldest first");
        assert_eq!(s.get_trigger("r1").unwrap(), Some(late.clone()), "a route keeps its key and shape");
        assert_eq!(s.get_trigger("nope").unwrap(), None);

        let mut changed = early.clone();
        changed.auth = stoke_core::gateway::TriggerAuth::Key;
        changed.qualifier = None;
        changed.created_ms = 1_000;
        s.update_trigger(&changed).unwrap();
        let stored = s.get_trigger("u1").unwrap().unwrap();
        assert_eq!(stored.auth, stoke_core::gateway::TriggerAuth::Key);
        assert_eq!((stored.qualifier, stored.created_ms), (early.qualifier.clone(), early.created_ms));

        let mut foreign = late.clone();
        foreign.account = b.clone();
        assert!(matches!(s.update_trigger(&foreign), Err(StoreError::NotFound(_))), "another account's trigger");
        let missing = trigger(&a, "nope", None);
        assert!(matches!(s.update_trigger(&missing), Err(StoreError::NotFound(_))));
        assert!(!s.delete_trigger(&a, "nope").unwrap());
    }
}
