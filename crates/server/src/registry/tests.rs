//! The registry's whole operations against SQLite and the archive store in a temp dir: what each writes,
//! and that a refused one writes nothing.

use std::sync::Arc;

use stoke_core::{AccountId, ConfigPatch, FunctionName, LifecycleState, NodeLimits};
use stoke_store::archive::ArchiveLimits;
use stoke_store::{CodeStore, ImageFiles, LayerFiles, SqliteStore, Store};

use super::{FunctionIf, Registry, RegistryError, RegistryFiles, RunningWork};
use crate::accounts::Accounts;
use crate::fixtures::zip_of;

/// Nothing runs: the registry's questions about work in flight all answer none.
struct Idle;

impl RunningWork for Idle {
    fn in_flight(&self, _: &AccountId, _: &FunctionName) -> usize {
        0
    }

    fn function_changed(&self, _: &AccountId, _: &FunctionName) {}
}

struct Fixture {
    _dir: tempfile::TempDir,
    registry: Registry,
    account: AccountId,
    /// The store under the registry, to see what it really holds.
    store: Arc<dyn Store>,
}

fn registry() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("stoke.db")).expect("store"));
    let (account, _) = Accounts::load(store.clone()).expect("accounts").create("acme", false).expect("account");
    let files = RegistryFiles {
        code: CodeStore::open(&dir.path().join("code")).expect("code"),
        layers: LayerFiles::open(&dir.path().join("layers")).expect("layers"),
        images: ImageFiles::open(&dir.path().join("images")).expect("images"),
    };
    let registry = Registry::new(store.clone(), files, NodeLimits::default(), ArchiveLimits::default(), Arc::new(Idle));
    Fixture { _dir: dir, registry, account: account.id, store }
}

fn python() -> ConfigPatch {
    ConfigPatch { runtime: Some("python3.12".into()), handler: Some("app.handler".into()), ..ConfigPatch::default() }
}

fn name(n: &str) -> FunctionName {
    FunctionName::parse(n).expect("a name")
}

const V1: &str = "def handler(e, c):\n    return 1\n";
const V2: &str = "def handler(e, c):\n    return 2\n";

#[test]
fn a_function_created_with_publish_has_its_first_version() {
    let f = registry();
    let (created, version) = f.registry.create_function(&f.account, "f", python(), &zip_of(V1), true).unwrap();
    let version = version.expect("published with the create");
    assert_eq!((version.version, created.latest_published, created.state), (1, Some(1), LifecycleState::Published));
    assert_eq!(f.registry.get_function(&f.account, &name("f")).unwrap(), created, "what was returned is stored");
    let (plain, none) = f.registry.create_function(&f.account, "g", python(), &zip_of(V1), false).unwrap();
    assert_eq!((none, plain.latest_published, plain.last_version), (None, None, 0));
    let again = f.registry.create_function(&f.account, "f", python(), &zip_of(V1), true);
    assert!(matches!(again, Err(RegistryError::Conflict(_))), "{again:?}");
}

#[test]
fn a_publish_whose_code_precondition_fails_publishes_nothing() {
    let f = registry();
    let (created, _) = f.registry.create_function(&f.account, "f", python(), &zip_of(V1), false).unwrap();
    let sha = created.code.as_ref().expect("code").sha256.clone();
    let stale = FunctionIf { code_sha256: Some("00".repeat(32)), ..Default::default() };
    let refused = f.registry.publish(&f.account, &name("f"), None, &stale);
    assert!(matches!(refused, Err(RegistryError::PreconditionFailed(_))), "{refused:?}");
    let after = f.registry.get_function(&f.account, &name("f")).unwrap();
    assert_eq!((after.last_version, after.revision), (0, created.revision), "nothing was written");
    let published = f.registry.publish(
        &f.account,
        &name("f"),
        Some("first".into()),
        &FunctionIf { code_sha256: Some(sha.to_uppercase()), ..Default::default() },
    );
    let published = published.expect("the hash matches, in any case");
    assert_eq!((published.version.version, published.version.description.as_str()), (1, "first"));
    assert_eq!(published.function, f.registry.get_function(&f.account, &name("f")).unwrap());
    // $LATEST is that version now: publishing again answers it, and writes nothing.
    let again = f.registry.publish(&f.account, &name("f"), None, &FunctionIf::default()).unwrap();
    assert_eq!((again.version.version, again.function.revision), (1, published.function.revision));
}

#[test]
fn a_change_whose_revision_precondition_is_stale_changes_nothing() {
    let f = registry();
    let (created, _) = f.registry.create_function(&f.account, "f", python(), &zip_of(V1), false).unwrap();
    let low = |r: u64| u32::try_from(r & 0xffff_ffff).unwrap();
    let stale = FunctionIf { revision: Some(low(created.revision) + 1), ..Default::default() };
    let patch = || ConfigPatch { timeout_s: Some(9), ..Default::default() };
    let refused = [
        f.registry.update_config_if(&f.account, &name("f"), patch(), &stale).map(|_| ()),
        f.registry.update_code_if(&f.account, &name("f"), &zip_of(V2), false, &stale).map(|_| ()),
        f.registry.publish(&f.account, &name("f"), None, &stale).map(|_| ()),
        f.registry.delete_function_if(&f.account, &name("f"), &stale),
    ];
    for r in refused {
        assert!(matches!(r, Err(RegistryError::PreconditionFailed(_))), "{r:?}");
    }
    assert_eq!(f.registry.get_function(&f.account, &name("f")).unwrap(), created, "nothing was written");
    // At the revision read, each goes through.
    let current = FunctionIf { revision: Some(low(created.revision)), ..Default::default() };
    let updated = f.registry.update_config_if(&f.account, &name("f"), patch(), &current).unwrap();
    assert_eq!(updated.config.timeout_s, 9);
    let at = FunctionIf { revision: Some(low(updated.revision)), ..Default::default() };
    f.registry.delete_function_if(&f.account, &name("f"), &at).unwrap();
    assert!(f.registry.get_function(&f.account, &name("f")).is_err());
}

#[test]
fn deleting_the_version_latest_equals_unpublishes_latest_and_removes_its_archive() {
    let f = registry();
    let (created, _) = f.registry.create_function(&f.account, "f", python(), &zip_of(V1), true).unwrap();
    assert_eq!((created.latest_published, created.state), (Some(1), LifecycleState::Published));
    assert!(f.registry.read_code(&f.account, "f:1").is_ok());
    f.registry.delete_version(&f.account, &name("f"), 1).unwrap();
    let after = f.registry.get_function(&f.account, &name("f")).unwrap();
    assert_eq!((after.latest_published, after.state, after.last_version), (None, LifecycleState::Latest, 1));
    assert!(matches!(f.registry.read_code(&f.account, "f:1"), Err(RegistryError::NotFound(_))));
    assert!(f.registry.read_code(&f.account, "f").is_ok(), "$LATEST keeps its code");
    // The next publish is a new number: numbers are not reused.
    let again = f.registry.publish(&f.account, &name("f"), None, &FunctionIf::default()).unwrap();
    assert_eq!(again.version.version, 2);
    let missing = f.registry.delete_version(&f.account, &name("f"), 1);
    assert!(matches!(missing, Err(RegistryError::NotFound(_))), "{missing:?}");
}

#[test]
fn new_code_published_with_its_update_is_one_version_and_the_same_code_is_not_published_twice() {
    let f = registry();
    f.registry.create_function(&f.account, "f", python(), &zip_of(V1), true).unwrap();
    let (updated, version) = f.registry.update_code(&f.account, &name("f"), &zip_of(V2), true).unwrap();
    let version = version.expect("published");
    assert_eq!((version.version, updated.latest_published, updated.state), (2, Some(2), LifecycleState::Published));
    assert_eq!(version.code, updated.code.clone().expect("code"));
    assert_eq!(f.registry.get_function(&f.account, &name("f")).unwrap(), updated);
    let (same, version) = f.registry.update_code(&f.account, &name("f"), &zip_of(V2), true).unwrap();
    assert_eq!((version.map(|v| v.version), same.last_version), (Some(2), 2), "the same code is version 2 still");
    let (_, none) = f.registry.update_code(&f.account, &name("f"), &zip_of(V1), false).unwrap();
    assert!(none.is_none());
    let versions = f.registry.list_versions(&f.account, &name("f"), None, 10).unwrap();
    assert_eq!(versions.0.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn a_configuration_update_moves_the_revision_and_an_empty_one_is_refused() {
    let f = registry();
    let (created, _) = f.registry.create_function(&f.account, "f", python(), &zip_of(V1), true).unwrap();
    let patch = ConfigPatch { memory_mb: Some(256), ..ConfigPatch::default() };
    let updated = f.registry.update_config(&f.account, &name("f"), patch).unwrap();
    assert_eq!((updated.config.memory_mb, updated.revision), (256, created.revision + 1));
    assert_eq!(updated.latest_published, None, "$LATEST differs from version 1 now");
    let empty = f.registry.update_config(&f.account, &name("f"), ConfigPatch::default());
    assert!(matches!(empty, Err(RegistryError::Validation(_))), "{empty:?}");
    let too_big = ConfigPatch { memory_mb: Some(1_000_000), ..ConfigPatch::default() };
    assert!(matches!(f.registry.update_config(&f.account, &name("f"), too_big), Err(RegistryError::Validation(_))));
    assert_eq!(f.registry.get_function(&f.account, &name("f")).unwrap(), updated, "a refused update writes nothing");
}

#[test]
fn a_deleted_function_is_gone_with_its_versions() {
    let f = registry();
    f.registry.create_function(&f.account, "f", python(), &zip_of(V1), true).unwrap();
    f.registry.delete_function(&f.account, &name("f")).unwrap();
    assert!(matches!(f.registry.get_function(&f.account, &name("f")), Err(RegistryError::NotFound(_))));
    assert!(matches!(f.registry.delete_function(&f.account, &name("f")), Err(RegistryError::NotFound(_))));
    assert!(matches!(f.registry.resolve(&f.account, "f:1"), Err(RegistryError::NotFound(_))));
    let bad = f.registry.create_function(&f.account, "f", python(), b"not a zip", false);
    assert!(matches!(bad, Err(RegistryError::Archive(_))), "{bad:?}");
    assert!(matches!(f.registry.get_function(&f.account, &name("f")), Err(RegistryError::NotFound(_))));
}

#[test]
fn environment_variables_are_stored_sealed_and_read_back_plain() {
    let keys = stoke_store::sealed::EnvKeys::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    let Fixture { _dir, registry: plain, account, store } = registry();
    let f = Fixture { _dir, registry: plain.seal_environment(Arc::new(keys)), account, store };
    let env = std::collections::BTreeMap::from([("DB_PASSWORD".to_string(), "hunter2".to_string())]);
    let config = ConfigPatch { environment: Some(env.clone()), ..python() };
    let (created, version) = f.registry.create_function(&f.account, "f", config, &zip_of(V1), true).unwrap();
    assert_eq!(created.config.environment, env, "the caller gets the variables it set");
    assert_eq!(f.registry.get_function(&f.account, &name("f")).unwrap().config.environment, env);
    let stored = f.store.get_function(&f.account, &name("f")).unwrap().unwrap();
    let stored_version = f.store.get_version(&f.account, &name("f"), 1).unwrap().unwrap();
    for stored in [&stored.config.environment, &stored_version.config.environment] {
        let text = serde_json::to_string(stored).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("DB_PASSWORD"), "stored in clear: {text}");
        assert!(stored.contains_key(stoke_store::sealed::SEALED_ENTRY), "{text}");
    }
    assert_eq!(version.unwrap().config.environment, env);
    let versions = f.registry.list_versions(&f.account, &name("f"), None, 10).unwrap();
    assert_eq!(versions.0[0].config.environment, env, "versions are read back plain");
}
