//! Accounts and their keys.

use rusqlite::{params, OptionalExtension, Row};
use stoke_core::AccountId;

use super::{account_id, is_unique_violation, SqliteStore};
use crate::{AccountKeys, AccountRecord, AccountStore, Result, StoreError};

const ACCOUNT_COLS: &str = "id, name, is_admin, created_ms, api_key_sha256, access_key_id, secret_access_key";

fn account_row(r: &Row<'_>) -> rusqlite::Result<(AccountRecord, AccountKeys)> {
    Ok((
        AccountRecord { id: account_id(r.get(0)?)?, name: r.get(1)?, is_admin: r.get(2)?, created_ms: r.get(3)? },
        AccountKeys { api_key_sha256: r.get(4)?, access_key_id: r.get(5)?, secret_access_key: r.get(6)? },
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

    #[test]
    fn duplicate_accounts_conflict() {
        let (_d, s) = store();
        account(&s, 1);
        let dup = s.create_account(
            &AccountRecord { id: AccountId::from_number(2), name: "acct1".into(), is_admin: false, created_ms: 1 },
            &AccountKeys { api_key_sha256: "x".into(), access_key_id: "y".into(), secret_access_key: "z".into() },
        );
        assert!(matches!(dup, Err(StoreError::Conflict(_))));
    }
}
