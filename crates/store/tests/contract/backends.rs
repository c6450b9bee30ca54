//! The backends the contract runs against. Each constructor returns a FRESH, EMPTY store, isolated from
//! every other `Backend` (cases assert on store-wide reads such as `list_accounts`, `claim_events`,
//! `all_stats` and `running_executions`, and the tests run in parallel).

use std::any::Any;

use stoke_store::{SqliteStore, Store};

/// A store under test, with whatever must live as long as it (a temp directory, a server process, a
/// key prefix to clean up). The store is dropped before the guard.
pub struct Backend {
    pub store: Box<dyn Store>,
    _guard: Box<dyn Any>,
}

impl Backend {
    pub fn new(store: Box<dyn Store>, guard: Box<dyn Any>) -> Self {
        Self { store, _guard: guard }
    }
}

/// The embedded backend, in a database of its own in a temp directory.
pub fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("a temp directory");
    let store = SqliteStore::open(&dir.path().join("stoke.db")).expect("a new SQLite store opens");
    Backend::new(Box::new(store), Box::new(dir))
}

/// One etcd for the whole test binary, started on first use; each backend gets a key prefix of its own, so
/// every call gives an empty store. etcd stops when this process ends (stoke-testkit's guard).
static ETCD: std::sync::OnceLock<Option<stoke_testkit::etcd::Etcd>> = std::sync::OnceLock::new();
static NEXT_PREFIX: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The etcd v3 backend, or `None` when etcd is not installed.
pub fn etcd() -> Option<Backend> {
    let etcd = ETCD
        .get_or_init(|| {
            stoke_testkit::etcd::etcd_binary()?;
            Some(stoke_testkit::etcd::Etcd::start().expect("etcd is installed but does not start"))
        })
        .as_ref()?;
    let n = NEXT_PREFIX.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let prefix = format!("contract-{}-{n}", std::process::id());
    let store = stoke_store::EtcdStore::connect(&[etcd.endpoint()], &prefix).expect("the etcd store connects");
    Some(Backend::new(Box::new(store), Box::new(())))
}
