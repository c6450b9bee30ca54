//! Functions' environment variables sealed at rest: AES-256-GCM under a key kept outside the store.
//!
//! A function's (or version's) non-empty `environment` is stored as one entry, [`SEALED_ENTRY`], whose
//! value is `v1:<key id>:<base64 of nonce, ciphertext and tag>`; the sealed text is the variables' JSON, and
//! the account and function name are its associated data, so a sealed value copied onto another function
//! does not open. The entry's name cannot be a variable's (names are letters, digits and underscores), and
//! records written before sealing existed read as they are and are sealed the next time they are written.
//!
//! [`SealedFunctions`] applies this to a [`FunctionStore`]: it seals on every write and opens on every read,
//! so what the registry sees, and what the API shows its caller, is the plain configuration.
//!
//! The key file holds one key per line, `<id>:<base64 of 32 bytes>`; the first seals, every one opens.
//! Rotating is: put a new key first, keep the old ones below it, restart; records are sealed with the new
//! key as they are written (docs/function-manager.md).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use stoke_core::{AccountId, FunctionName, LifecycleState};

use crate::{AliasRecord, FunctionRecord, FunctionStore, Result, StoreError, VersionRecord};

/// The environment entry that holds the sealed variables.
pub const SEALED_ENTRY: &str = "stoke:sealed";
const VERSION: &str = "v1";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The keys environment variables are sealed with: the first seals, all of them open.
pub struct EnvKeys {
    current: String,
    keys: HashMap<String, LessSafeKey>,
}

impl std::fmt::Debug for EnvKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("EnvKeys").field("current", &self.current).field("ids", &ids).finish()
    }
}

fn key_of(bytes: &[u8]) -> Option<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, bytes).ok().map(LessSafeKey::new)
}

impl EnvKeys {
    /// Reads a key file's text: `<id>:<base64 of 32 bytes>` per line, the first sealing; blank lines and
    /// lines starting with `#` are skipped.
    pub fn parse(text: &str) -> std::result::Result<EnvKeys, String> {
        let mut current = None;
        let mut keys = HashMap::new();
        for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, key) = line
                .split_once(':')
                .ok_or_else(|| format!("line {n} is not <id>:<base64 key> (e.g. k2:{})", "A".repeat(43) + "="))?;
            if id.is_empty()
                || id.len() > 32
                || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!("line {n}: the key id {id:?} is not 1-32 letters, digits, '-' or '_'"));
            }
            let bytes = B64.decode(key.trim()).map_err(|e| format!("line {n}: the key is not base64: {e}"))?;
            let key = (bytes.len() == 32).then(|| key_of(&bytes)).flatten().ok_or_else(|| {
                format!("line {n}: the key is {} bytes; it must be 32 (e.g. `openssl rand -base64 32`)", bytes.len())
            })?;
            if keys.insert(id.to_string(), key).is_some() {
                return Err(format!("line {n}: key id {id:?} appears twice"));
            }
            current.get_or_insert_with(|| id.to_string());
        }
        let current = current.ok_or("the key file holds no key")?;
        Ok(EnvKeys { current, keys })
    }

    /// A new key file's text: one fresh random key.
    pub fn generate() -> std::io::Result<String> {
        let mut key = [0u8; 32];
        let mut id = [0u8; 4];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        getrandom::fill(&mut id).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(format!(
            "# stoke's key for functions' environment variables: <id>:<base64>, the first seals, all open.\n\
             # Keep it out of backups of the store; see docs/function-manager.md for rotation.\n\
             k{}:{}\n",
            stoke_core::hex::encode(&id),
            B64.encode(key)
        ))
    }

    /// The key file at `path`, made (mode 0600) when it does not exist.
    pub fn load_or_create(path: &Path) -> std::result::Result<EnvKeys, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => EnvKeys::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = EnvKeys::generate().map_err(|e| format!("cannot make a key: {e}"))?;
                let write = || -> std::io::Result<()> {
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
                    f.write_all(text.as_bytes())?;
                    f.sync_all()
                };
                write().map_err(|e| format!("cannot write the key file {}: {e}", path.display()))?;
                EnvKeys::parse(&text)
            }
            Err(e) => Err(format!("cannot read the key file {}: {e}", path.display())),
        }
    }

    /// One key derived from a secret every node of a cluster holds (the cluster secret), so that nodes
    /// open each other's records without another file to share.
    pub fn derive(secret: &str) -> EnvKeys {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"stoke environment key v1\0");
        h.update(secret.as_bytes());
        let key = key_of(&h.finalize()).expect("a SHA-256 digest is an AES-256 key");
        EnvKeys { current: "cluster".into(), keys: HashMap::from([("cluster".to_string(), key)]) }
    }

    /// The id of the key that seals.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// `env` sealed for `owner` (`account/function`); an empty environment stays empty.
    pub fn seal(&self, owner: &str, env: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
        if env.is_empty() || env.contains_key(SEALED_ENTRY) {
            return Ok(env.clone());
        }
        let key = &self.keys[&self.current];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        let mut data = serde_json::to_vec(env).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(owner.as_bytes()), &mut data)
            .map_err(|_| StoreError::Corrupt("cannot seal the environment".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        let sealed = format!("{VERSION}:{}:{}", self.current, B64.encode(out));
        Ok(BTreeMap::from([(SEALED_ENTRY.to_string(), sealed)]))
    }

    /// The plain environment of a stored one (which may predate sealing).
    pub fn open(&self, owner: &str, env: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
        let Some(sealed) = env.get(SEALED_ENTRY) else { return Ok(env.clone()) };
        let unreadable = |why: String| StoreError::Corrupt(format!("the environment variables of {owner}: {why}"));
        let mut parts = sealed.splitn(3, ':');
        let (Some(VERSION), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(unreadable("the sealed value is not in a format this server reads".into()));
        };
        let key = self.keys.get(id).ok_or_else(|| {
            unreadable(format!(
                "sealed with key {id:?}, which the key file does not hold (put that key back below the current one)"
            ))
        })?;
        let data = B64.decode(data).map_err(|e| unreadable(format!("the sealed value is not base64: {e}")))?;
        if data.len() < NONCE_LEN {
            return Err(unreadable("the sealed value is truncated".into()));
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unreadable("bad nonce".into()))?;
        let mut sealed = sealed.to_vec();
        let plain = key.open_in_place(nonce, Aad::from(owner.as_bytes()), &mut sealed).map_err(|_| {
            unreadable(format!("key {id:?} does not open it: another key with that id, or an altered record"))
        })?;
        serde_json::from_slice(plain).map_err(|e| unreadable(e.to_string()))
    }
}

fn owner(account: &AccountId, function: &FunctionName) -> String {
    format!("{account}/{function}")
}

/// A [`FunctionStore`] that seals environment variables on the way in and opens them on the way out.
#[derive(Debug, Clone)]
pub struct SealedFunctions<S> {
    inner: S,
    keys: Arc<EnvKeys>,
}

impl<S> SealedFunctions<S> {
    pub fn new(inner: S, keys: Arc<EnvKeys>) -> Self {
        SealedFunctions { inner, keys }
    }

    fn seal_function(&self, f: &FunctionRecord) -> Result<FunctionRecord> {
        let mut f = f.clone();
        f.config.environment = self.keys.seal(&owner(&f.account, &f.name), &f.config.environment)?;
        Ok(f)
    }

    fn seal_version(&self, v: &VersionRecord) -> Result<VersionRecord> {
        let mut v = v.clone();
        v.config.environment = self.keys.seal(&owner(&v.account, &v.function), &v.config.environment)?;
        Ok(v)
    }

    fn open_function(&self, mut f: FunctionRecord) -> Result<FunctionRecord> {
        f.config.environment = self.keys.open(&owner(&f.account, &f.name), &f.config.environment)?;
        Ok(f)
    }

    fn open_version(&self, mut v: VersionRecord) -> Result<VersionRecord> {
        v.config.environment = self.keys.open(&owner(&v.account, &v.function), &v.config.environment)?;
        Ok(v)
    }
}

impl<S: std::ops::Deref + Send + Sync> FunctionStore for SealedFunctions<S>
where
    S::Target: FunctionStore,
{
    fn insert_function(&self, function: &FunctionRecord) -> Result<()> {
        self.inner.insert_function(&self.seal_function(function)?)
    }

    fn insert_published_function(&self, function: &FunctionRecord, version: &VersionRecord) -> Result<()> {
        self.inner.insert_published_function(&self.seal_function(function)?, &self.seal_version(version)?)
    }

    fn get_function(&self, account: &AccountId, name: &FunctionName) -> Result<Option<FunctionRecord>> {
        self.inner.get_function(account, name)?.map(|f| self.open_function(f)).transpose()
    }

    fn list_functions(&self, account: &AccountId, after: Option<&str>, limit: usize) -> Result<Vec<FunctionRecord>> {
        self.inner.list_functions(account, after, limit)?.into_iter().map(|f| self.open_function(f)).collect()
    }

    fn functions_in_state(&self, state: LifecycleState) -> Result<Vec<FunctionRecord>> {
        self.inner.functions_in_state(state)?.into_iter().map(|f| self.open_function(f)).collect()
    }

    fn update_function(&self, function: &FunctionRecord, expected_revision: u64) -> Result<()> {
        self.inner.update_function(&self.seal_function(function)?, expected_revision)
    }

    fn delete_function(&self, account: &AccountId, name: &FunctionName) -> Result<bool> {
        self.inner.delete_function(account, name)
    }

    fn publish_version(
        &self,
        function: &FunctionRecord,
        expected_revision: u64,
        version: &VersionRecord,
    ) -> Result<()> {
        self.inner.publish_version(&self.seal_function(function)?, expected_revision, &self.seal_version(version)?)
    }

    fn put_event_config(&self, config: &crate::EventConfigRecord) -> Result<()> {
        self.inner.put_event_config(config)
    }

    fn get_event_config(
        &self,
        account: &AccountId,
        function: &FunctionName,
        qualifier: &str,
    ) -> Result<Option<crate::EventConfigRecord>> {
        self.inner.get_event_config(account, function, qualifier)
    }

    fn list_event_configs(
        &self,
        account: &AccountId,
        function: &FunctionName,
    ) -> Result<Vec<crate::EventConfigRecord>> {
        self.inner.list_event_configs(account, function)
    }

    fn delete_event_config(&self, account: &AccountId, function: &FunctionName, qualifier: &str) -> Result<bool> {
        self.inner.delete_event_config(account, function, qualifier)
    }

    fn delete_version(&self, function: &FunctionRecord, expected_revision: u64, version: u64) -> Result<bool> {
        self.inner.delete_version(&self.seal_function(function)?, expected_revision, version)
    }

    fn get_version(&self, account: &AccountId, name: &FunctionName, version: u64) -> Result<Option<VersionRecord>> {
        self.inner.get_version(account, name, version)?.map(|v| self.open_version(v)).transpose()
    }

    fn list_versions(
        &self,
        account: &AccountId,
        name: &FunctionName,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<VersionRecord>> {
        self.inner.list_versions(account, name, after, limit)?.into_iter().map(|v| self.open_version(v)).collect()
    }

    fn put_alias(&self, alias: &AliasRecord, expected_revision: Option<u64>) -> Result<()> {
        self.inner.put_alias(alias, expected_revision)
    }

    fn get_alias(&self, account: &AccountId, function: &FunctionName, alias: &str) -> Result<Option<AliasRecord>> {
        self.inner.get_alias(account, function, alias)
    }

    fn list_aliases(&self, account: &AccountId, function: &FunctionName) -> Result<Vec<AliasRecord>> {
        self.inner.list_aliases(account, function)
    }

    fn delete_alias(&self, account: &AccountId, function: &FunctionName, alias: &str) -> Result<bool> {
        self.inner.delete_alias(account, function, alias)
    }

    fn referenced_archives(&self) -> Result<Vec<(AccountId, FunctionName, String, String)>> {
        self.inner.referenced_archives()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn keys(text: &str) -> EnvKeys {
        EnvKeys::parse(text).unwrap()
    }

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    #[test]
    fn sealed_variables_open_to_what_was_sealed_and_hide_it() {
        let k = keys(K1);
        let plain = env(&[("DB_PASSWORD", "hunter2"), ("MODE", "prod")]);
        let sealed = k.seal("123456789012/f", &plain).unwrap();
        assert_eq!(sealed.len(), 1);
        let value = &sealed[SEALED_ENTRY];
        assert!(value.starts_with("v1:k1:"), "{value}");
        assert!(!value.contains("hunter2") && !value.contains("DB_PASSWORD"), "{value}");
        assert_eq!(k.open("123456789012/f", &sealed).unwrap(), plain);
        // Two seals of the same variables differ (a fresh nonce each time).
        assert_ne!(k.seal("123456789012/f", &plain).unwrap(), sealed);
    }

    #[test]
    fn an_empty_or_unsealed_environment_passes_through() {
        let k = keys(K1);
        assert!(k.seal("a/f", &BTreeMap::new()).unwrap().is_empty());
        let legacy = env(&[("A", "1")]);
        assert_eq!(k.open("a/f", &legacy).unwrap(), legacy, "records written before sealing read as they are");
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_own_function_and_unaltered() {
        let k = keys(K1);
        let sealed = k.seal("a/f", &env(&[("A", "1")])).unwrap();
        let e = k.open("a/g", &sealed).unwrap_err().to_string();
        assert!(e.contains("a/g") && e.contains("altered"), "{e}");
        let mut altered = sealed.clone();
        let v = altered.get_mut(SEALED_ENTRY).unwrap();
        let flipped = if v.ends_with('A') { 'B' } else { 'A' };
        v.pop();
        v.push(flipped);
        assert!(k.open("a/f", &altered).is_err());
    }

    #[test]
    fn rotation_seals_with_the_first_key_and_opens_with_any() {
        let old = keys(K1);
        let sealed_old = old.seal("a/f", &env(&[("A", "1")])).unwrap();
        let rotated = keys(&format!("{K2}\n{K1}\n"));
        assert_eq!(rotated.current(), "k2");
        assert_eq!(rotated.open("a/f", &sealed_old).unwrap(), env(&[("A", "1")]));
        let sealed_new = rotated.seal("a/f", &env(&[("A", "1")])).unwrap();
        assert!(sealed_new[SEALED_ENTRY].starts_with("v1:k2:"));
        // Without the old key, its records say which key they need.
        let e = keys(K2).open("a/f", &sealed_old).unwrap_err().to_string();
        assert!(e.contains("\"k1\"") && e.contains("put that key back"), "{e}");
    }

    #[test]
    fn key_files_that_cannot_be_used_are_refused_with_the_line_at_fault() {
        for (text, needle) in [
            ("", "no key"),
            ("# only a comment\n", "no key"),
            ("k1", "line 1 is not <id>:<base64 key>"),
            ("k1:not base64!", "not base64"),
            ("k1:AAAA", "3 bytes; it must be 32"),
            (&format!("{K1}\n{K1}"), "appears twice"),
            ("bad id:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "key id"),
        ] {
            let e = EnvKeys::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        let generated = EnvKeys::generate().unwrap();
        assert!(EnvKeys::parse(&generated).is_ok(), "{generated}");
        assert_ne!(generated, EnvKeys::generate().unwrap());
    }

    #[test]
    fn a_key_file_is_made_private_once_and_then_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.key");
        let first = EnvKeys::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = EnvKeys::load_or_create(&path).unwrap();
        assert_eq!(first.current(), again.current());
        let sealed = first.seal("a/f", &env(&[("A", "1")])).unwrap();
        assert_eq!(again.open("a/f", &sealed).unwrap(), env(&[("A", "1")]));
    }

    #[test]
    fn the_cluster_key_is_the_same_on_every_node_with_the_same_secret() {
        let a = EnvKeys::derive("c0ffee".repeat(8).as_str());
        let b = EnvKeys::derive("c0ffee".repeat(8).as_str());
        let sealed = a.seal("a/f", &env(&[("A", "1")])).unwrap();
        assert_eq!(b.open("a/f", &sealed).unwrap(), env(&[("A", "1")]));
        assert!(EnvKeys::derive("another secret, sixteen+").open("a/f", &sealed).is_err());
    }

    #[test]
    fn the_sealing_store_keeps_records_sealed_and_hands_them_back_plain() {
        use crate::sqlite::fixtures;
        let (_dir, raw) = fixtures::store();
        let raw = Arc::new(raw);
        let sealed = SealedFunctions::new(raw.clone(), Arc::new(keys(K1)));
        let account = fixtures::account(&raw, 1);
        let mut f = fixtures::function(&account, "f");
        let name = f.name.clone();
        f.config.environment = env(&[("SECRET", "s3cr3t")]);
        sealed.insert_function(&f).unwrap();
        let stored = raw.get_function(&account, &name).unwrap().unwrap();
        assert!(stored.config.environment.contains_key(SEALED_ENTRY), "{:?}", stored.config.environment);
        assert_eq!(sealed.get_function(&account, &name).unwrap().unwrap().config.environment, f.config.environment);
        assert_eq!(sealed.list_functions(&account, None, 10).unwrap()[0].config.environment, f.config.environment);
    }
}
