//! Accounts: `accounts/<id>` holds the record with its keys; `account-names/<name>`,
//! `account-api-keys/<sha256>` and `account-access-keys/<id>` hold the account id, so each is unique.

use serde::{Deserialize, Serialize};
use stoke_core::AccountId;

use super::{absent, put, EtcdStore};
use crate::{AccountKeys, AccountRecord, AccountStore, Result, StoreError};

#[derive(Serialize, Deserialize)]
struct Stored {
    account: AccountRecord,
    keys: AccountKeys,
}

impl AccountStore for EtcdStore {
    fn create_account(&self, account: &AccountRecord, keys: &AccountKeys) -> Result<()> {
        let k = &self.keys;
        let id = account.id.as_str();
        let record = k.key(&["accounts", id]);
        let unique = [
            record.clone(),
            k.key(&["account-names", &account.name]),
            k.key(&["account-api-keys", &keys.api_key_sha256]),
            k.key(&["account-access-keys", &keys.access_key_id]),
        ];
        let mut ops = vec![put(&record, &Stored { account: account.clone(), keys: keys.clone() })?];
        for index in &unique[1..] {
            ops.push(put(index, &id)?);
        }
        if self.commit(unique.iter().map(|u| absent(u)).collect(), ops)? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("account {:?}", account.name)))
        }
    }

    fn get_account(&self, id: &AccountId) -> Result<Option<AccountRecord>> {
        Ok(self.get::<Stored>(&self.keys.key(&["accounts", id.as_str()]))?.map(|r| r.value.account))
    }

    fn list_accounts(&self) -> Result<Vec<AccountRecord>> {
        Ok(self.list_account_keys()?.into_iter().map(|(a, _)| a).collect())
    }

    fn list_account_keys(&self) -> Result<Vec<(AccountRecord, AccountKeys)>> {
        let (rows, _) = self.list::<Stored>(&self.keys.under(&["accounts"]))?;
        let mut out: Vec<_> = rows.into_iter().map(|r| (r.value.account, r.value.keys)).collect();
        out.sort_by(|(a, _), (b, _)| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(out)
    }
}
