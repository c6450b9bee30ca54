//! Accounts and their keys.

use rusqlite::{params, OptionalExtension, Row};
use stoke_core::AccountId;

use super::{account_id, is_unique_violation, SqliteStore};
use crate::{AccountKeys, AccountRecord, AccountStore, Result, StoreError};

const ACCOUNT_COLS: &str = "id, name, is_admin, created_ms, api_key_sha256, access_key_id, secret_access_key";

fn account_row(r: &Row<'_>) -> rusqlite::Result<(AccountRecord, AccountKeys)> {
    Ok((
        AccountRecord {
            id: account_id(r.get("id")?)?,
            name: r.get("name")?,
            is_admin: r.get("is_admin")?,
            created_ms: r.get("created_ms")?,
        },
        AccountKeys {
            api_key_sha256: r.get("api_key_sha256")?,
            access_key_id: r.get("access_key_id")?,
            secret_access_key: r.get("secret_access_key")?,
        },
    ))
}

impl AccountStore for SqliteStore {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::fixtures::{account, store};

    fn record(n: u64, name: &str, created_ms: i64) -> (AccountRecord, AccountKeys) {
        (
            AccountRecord { id: AccountId::from_number(n), name: name.into(), is_admin: n == 1, created_ms },
            AccountKeys {
                api_key_sha256: format!("hash{n}"),
                access_key_id: format!("AKID{n}"),
                secret_access_key: format!("secret{n}"),
            },
        )
    }

    #[test]
    fn accounts_read_back_with_their_keys_oldest_first() {
        let (_d, s) = store();
        let (admin, admin_keys) = record(1, "admin", 20);
        let (tenant, tenant_keys) = record(2, "tenant", 10);
        s.create_account(&admin, &admin_keys).unwrap();
        s.create_account(&tenant, &tenant_keys).unwrap();
        assert_eq!(s.get_account(&admin.id).unwrap(), Some(admin.clone()));
        assert_eq!(s.get_account(&AccountId::from_number(3)).unwrap(), None);
        assert_eq!(s.list_accounts().unwrap(), [tenant.clone(), admin.clone()]);
        assert_eq!(s.list_account_keys().unwrap(), [(tenant, tenant_keys), (admin, admin_keys)]);
    }

    #[test]
    fn duplicate_names_and_keys_conflict() {
        let (_d, s) = store();
        account(&s, 1);
        let dup = s.create_account(
            &AccountRecord { id: AccountId::from_number(2), name: "acct1".into(), is_admin: false, created_ms: 1 },
            &AccountKeys { api_key_sha256: "x".into(), access_key_id: "y".into(), secret_access_key: "z".into() },
        );
        assert!(matches!(dup, Err(StoreError::Conflict(_))));
        let (other, mut keys) = record(3, "other", 1);
        keys.api_key_sha256 = "hash1".into();
        assert!(matches!(s.create_account(&other, &keys), Err(StoreError::Conflict(_))), "API keys are unique");
        assert_eq!(s.list_accounts().unwrap().len(), 1, "a refused account writes nothing");
    }

    #[test]
    fn rows_are_read_by_column_name() {
        let (_d, s) = store();
        let (a, keys) = record(1, "admin", 5);
        s.create_account(&a, &keys).unwrap();
        let mut reversed: Vec<&str> = ACCOUNT_COLS.split(", ").collect();
        reversed.reverse();
        let sql = format!("SELECT {} FROM accounts", reversed.join(", "));
        assert_eq!(s.lock().query_row(&sql, [], account_row).unwrap(), (a, keys));
    }
}
