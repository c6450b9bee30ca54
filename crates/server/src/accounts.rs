//! Accounts (tenants) and their credentials: creation, the first-start admin account, and authentication.
//!
//! API keys are stored only as sha256; a copy of every key hash is kept in memory so authenticating a
//! request touches no database.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use stoke_core::{AccountId, FunctionName, ValidationError};
use stoke_store::{sha256_hex, AccountKeys, AccountRecord, Store, StoreError};

use crate::registry::now_ms;

/// Credentials handed out once, at account creation.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    pub account_id: String,
    /// Bearer token for the native `/v1` API.
    pub api_key: String,
    /// AWS-style key pair for SigV4 clients (boto3, aws cli).
    pub access_key_id: String,
    pub secret_access_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("account {0:?} already exists; pick another name")]
    Conflict(String),
    #[error("only an admin account may {0}")]
    Forbidden(&'static str),
    #[error("could not read random bytes for credentials: {0}")]
    Random(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::Conflict(what),
            other => Self::Store(other),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: AccountRecord,
}

/// What a SigV4 key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// An account's own key: whatever its account may.
    Account,
    /// A durable function's key (its instances sign with it): checkpoint and read the state of that
    /// function's durable executions, nothing else.
    DurableFunction(FunctionName),
}

/// How a durable function's access key id starts: then the account's 12 digits, then the function's name.
const DURABLE_KEY_PREFIX: &str = "STKD";

/// The account service.
pub struct Accounts {
    store: Arc<dyn Store>,
    by_key_hash: RwLock<HashMap<String, AccountRecord>>,
    by_access_key: RwLock<HashMap<String, (AccountRecord, String)>>,
    /// Each account's SigV4 secret, which durable functions' keys are derived from.
    by_account: RwLock<HashMap<AccountId, (AccountRecord, String)>>,
    /// In a cluster: a key not found reads the accounts again (see [`Accounts::refresh_on_miss`]); `None` on
    /// a single node, where the cache is the whole truth.
    refresh_after_miss: Option<crate::cluster::MissRefresh>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").finish_non_exhaustive()
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], AccountError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| AccountError::Random(e.to_string()))?;
    Ok(b)
}

fn encode(bytes: &[u8], alphabet: &[u8]) -> String {
    bytes.iter().map(|b| alphabet[*b as usize % alphabet.len()] as char).collect()
}

const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const KEY_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn validate_account_name(name: &str) -> Result<(), ValidationError> {
    let mut chars = name.chars();
    let ok = name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "name",
            format!("account name {name:?} is not valid: use 1-63 lowercase letters, digits or '-', starting with a letter or digit"),
        ))
    }
}

impl Accounts {
    /// Loads every account's key hashes into memory.
    pub fn load(store: Arc<dyn Store>) -> Result<Self, AccountError> {
        let accounts = Self {
            store,
            by_key_hash: RwLock::new(HashMap::new()),
            by_access_key: RwLock::new(HashMap::new()),
            by_account: RwLock::new(HashMap::new()),
            refresh_after_miss: None,
        };
        for (record, keys) in accounts.store.list_account_keys()? {
            accounts.remember(&record, &keys);
        }
        Ok(accounts)
    }

    /// Reads every account again (another node of the cluster created one): keys not in the store any more
    /// stop working, new ones start.
    pub fn reload(&self) -> Result<(), AccountError> {
        let all = self.store.list_account_keys()?;
        let mut by_hash = HashMap::new();
        let mut by_access = HashMap::new();
        let mut by_account = HashMap::new();
        for (record, keys) in all {
            by_hash.insert(keys.api_key_sha256.clone(), record.clone());
            by_account.insert(record.id.clone(), (record.clone(), keys.secret_access_key.clone()));
            by_access.insert(keys.access_key_id.clone(), (record, keys.secret_access_key));
        }
        *self.by_key_hash.write().unwrap_or_else(|p| p.into_inner()) = by_hash;
        *self.by_access_key.write().unwrap_or_else(|p| p.into_inner()) = by_access;
        *self.by_account.write().unwrap_or_else(|p| p.into_inner()) = by_account;
        Ok(())
    }

    fn remember(&self, record: &AccountRecord, keys: &AccountKeys) {
        self.by_key_hash.write().unwrap_or_else(|p| p.into_inner()).insert(keys.api_key_sha256.clone(), record.clone());
        self.by_access_key
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(keys.access_key_id.clone(), (record.clone(), keys.secret_access_key.clone()));
        self.by_account
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(record.id.clone(), (record.clone(), keys.secret_access_key.clone()));
    }

    pub fn is_empty(&self) -> bool {
        self.by_key_hash.read().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// Creates an account and returns its credentials (the only time the API key is seen).
    pub fn create(&self, name: &str, is_admin: bool) -> Result<(AccountRecord, Credentials), AccountError> {
        validate_account_name(name)?;
        let id = AccountId::from_number(u64::from_le_bytes(random_bytes::<8>()?));
        let api_key = format!("stk_{}", encode(&random_bytes::<32>()?, b"abcdefghijklmnopqrstuvwxyz0123456789"));
        let access_key_id = format!("AKST{}", encode(&random_bytes::<16>()?, UPPER_DIGITS));
        let secret_access_key = encode(&random_bytes::<40>()?, KEY_CHARS);
        let record = AccountRecord { id, name: name.to_string(), is_admin, created_ms: now_ms() };
        let keys = AccountKeys {
            api_key_sha256: sha256_hex(api_key.as_bytes()),
            access_key_id: access_key_id.clone(),
            secret_access_key: secret_access_key.clone(),
        };
        self.store.create_account(&record, &keys)?;
        self.remember(&record, &keys);
        let credentials = Credentials { account_id: record.id.to_string(), api_key, access_key_id, secret_access_key };
        Ok((record, credentials))
    }

    /// Creates an account on behalf of `caller`, who must be an admin.
    pub fn create_by(
        &self,
        caller: &Caller,
        name: &str,
        is_admin: bool,
    ) -> Result<(AccountRecord, Credentials), AccountError> {
        if !caller.account.is_admin {
            return Err(AccountError::Forbidden("create accounts"));
        }
        self.create(name, is_admin)
    }

    pub fn list_by(&self, caller: &Caller) -> Result<Vec<AccountRecord>, AccountError> {
        if !caller.account.is_admin {
            return Err(AccountError::Forbidden("list accounts"));
        }
        Ok(self.store.list_accounts()?)
    }

    /// The caller an API key belongs to, if any.
    pub fn authenticate(&self, api_key: &str) -> Option<Caller> {
        let hash = sha256_hex(api_key.as_bytes());
        let find = || {
            self.by_key_hash
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&hash)
                .map(|account| Caller { account: account.clone() })
        };
        find().or_else(|| self.refresh_after_miss().then(find).flatten())
    }

    /// The account and secret of an AWS-style access key id (for SigV4 verification).
    pub fn secret_for(&self, access_key_id: &str) -> Option<(AccountRecord, String)> {
        let find = || self.by_access_key.read().unwrap_or_else(|p| p.into_inner()).get(access_key_id).cloned();
        find().or_else(|| self.refresh_after_miss().then(find).flatten())
    }

    /// The account, scope and secret of an access key id: an account's own key, or a durable function's.
    pub fn scoped_secret_for(&self, access_key_id: &str) -> Option<(AccountRecord, Scope, String)> {
        let Some(rest) = access_key_id.strip_prefix(DURABLE_KEY_PREFIX) else {
            return self.secret_for(access_key_id).map(|(account, secret)| (account, Scope::Account, secret));
        };
        let (account, function) = (AccountId::parse(rest.get(..12)?).ok()?, FunctionName::parse(rest.get(12..)?).ok()?);
        let find = || self.by_account.read().unwrap_or_else(|p| p.into_inner()).get(&account).cloned();
        let (record, secret) = find().or_else(|| self.refresh_after_miss().then(find).flatten())?;
        let derived = durable_secret(&secret, &account, &function);
        Some((record, Scope::DurableFunction(function), derived))
    }

    /// The key pair a durable function's instances sign their checkpoints with. It is derived from the
    /// account's secret, so it is valid on every node, kept nowhere, and changes with that secret.
    pub fn durable_function_key(&self, account: &AccountId, function: &FunctionName) -> Option<(String, String)> {
        let (_, secret) = self.by_account.read().unwrap_or_else(|p| p.into_inner()).get(account).cloned()?;
        Some((format!("{DURABLE_KEY_PREFIX}{account}{function}"), durable_secret(&secret, account, function)))
    }

    /// In a cluster, an account another node created a moment ago may not have reached this node's cache
    /// (its watch event is on its way): a key not found reads the accounts again, at most every 250 ms, so
    /// a new key works on every node at once while unknown keys cannot make a node read etcd per request.
    pub fn refresh_on_miss(mut self, every: std::time::Duration) -> Self {
        self.refresh_after_miss = Some(crate::cluster::MissRefresh::new(every));
        self
    }

    /// Reads the accounts again after a miss, if this node does that and has not just done it.
    fn refresh_after_miss(&self) -> bool {
        self.refresh_after_miss.as_ref().is_some_and(crate::cluster::MissRefresh::allow) && self.reload().is_ok()
    }
}

fn durable_secret(account_secret: &str, account: &AccountId, function: &FunctionName) -> String {
    crate::sigv4::derive_secret(account_secret.as_bytes(), &format!("stoke-durable-v1\n{account}\n{function}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> (tempfile::TempDir, Accounts) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(stoke_store::SqliteStore::open(&dir.path().join("db")).unwrap());
        (dir, Accounts::load(store).unwrap())
    }

    #[test]
    fn created_keys_authenticate_and_survive_reload() {
        let (dir, a) = accounts();
        assert!(a.is_empty());
        let (rec, creds) = a.create("admin", true).unwrap();
        assert!(creds.api_key.starts_with("stk_") && creds.api_key.len() == 36);
        assert_eq!(creds.access_key_id.len(), 20);
        assert_eq!(creds.secret_access_key.len(), 40);
        assert_eq!(a.authenticate(&creds.api_key).unwrap().account.id, rec.id);
        assert!(a.authenticate("stk_wrong").is_none());
        let store: Arc<dyn Store> = Arc::new(stoke_store::SqliteStore::open(&dir.path().join("db")).unwrap());
        let reloaded = Accounts::load(store).unwrap();
        assert_eq!(reloaded.authenticate(&creds.api_key).unwrap().account.name, "admin");
        assert_eq!(reloaded.secret_for(&creds.access_key_id).unwrap().1, creds.secret_access_key);
    }

    #[test]
    fn a_durable_functions_key_is_derived_scoped_to_it_and_changes_with_nothing_stored() {
        let (dir, a) = accounts();
        let (rec, creds) = a.create("admin", true).unwrap();
        let (other, _) = a.create("other", false).unwrap();
        let f = FunctionName::parse("orders").unwrap();
        let (id, secret) = a.durable_function_key(&rec.id, &f).unwrap();
        assert_eq!(id, format!("STKD{}orders", rec.id));
        assert_ne!(secret, creds.secret_access_key);
        let (account, scope, found) = a.scoped_secret_for(&id).unwrap();
        assert_eq!((account.id, scope, found), (rec.id.clone(), Scope::DurableFunction(f.clone()), secret.clone()));
        // Another function's key, or another account's, is another secret.
        let g = FunctionName::parse("billing").unwrap();
        assert_ne!(a.durable_function_key(&rec.id, &g).unwrap().1, secret);
        assert_ne!(a.durable_function_key(&other.id, &f).unwrap().1, secret);
        // An account's own key is unscoped; malformed or unknown durable keys are nobody's.
        assert_eq!(a.scoped_secret_for(&creds.access_key_id).unwrap().1, Scope::Account);
        for bad in
            ["STKD", "STKD12345", "STKD999999999999orders", &format!("STKD{}", rec.id), &format!("STKD{}a/b", rec.id)]
        {
            assert!(a.scoped_secret_for(bad).is_none(), "{bad}");
        }
        // Nothing is stored: another node (a fresh load of the same store) derives the same key.
        let store: Arc<dyn Store> = Arc::new(stoke_store::SqliteStore::open(&dir.path().join("db")).unwrap());
        let reloaded = Accounts::load(store).unwrap();
        assert_eq!(reloaded.scoped_secret_for(&id).unwrap().2, secret);
    }

    #[test]
    fn a_key_another_node_created_works_at_once_where_misses_refresh_and_unknown_keys_are_throttled() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(stoke_store::SqliteStore::open(&dir.path().join("db")).unwrap());
        let every = std::time::Duration::from_secs(3600);
        let (plain, refreshing) =
            (Accounts::load(store.clone()).unwrap(), Accounts::load(store.clone()).unwrap().refresh_on_miss(every));
        // Another node (here: another cache over the same store) creates an account.
        let (_, creds) = Accounts::load(store).unwrap().create("team", false).unwrap();
        assert!(plain.authenticate(&creds.api_key).is_none(), "a single node's cache is the whole truth");
        assert_eq!(refreshing.authenticate(&creds.api_key).unwrap().account.name, "team");
        assert_eq!(refreshing.secret_for(&creds.access_key_id).unwrap().1, creds.secret_access_key);
        // Within the interval, a key created since is not found: the miss did not read the store again.
        let (_, later) = Accounts::load(Arc::new(stoke_store::SqliteStore::open(&dir.path().join("db")).unwrap()))
            .unwrap()
            .create("later", false)
            .unwrap();
        assert!(refreshing.authenticate(&later.api_key).is_none(), "read at most once per interval");
    }

    #[test]
    fn only_admins_manage_accounts() {
        let (_d, a) = accounts();
        let (admin, _) = a.create("admin", true).unwrap();
        let admin = Caller { account: admin };
        let (user, _) = a.create_by(&admin, "team-a", false).unwrap();
        let user = Caller { account: user };
        assert!(matches!(a.create_by(&user, "team-b", false), Err(AccountError::Forbidden(_))));
        assert!(matches!(a.list_by(&user), Err(AccountError::Forbidden(_))));
        assert_eq!(a.list_by(&admin).unwrap().len(), 2);
        assert!(matches!(a.create_by(&admin, "team-a", false), Err(AccountError::Conflict(_))));
        assert!(matches!(a.create_by(&admin, "Bad Name", false), Err(AccountError::Validation(_))));
    }
}
