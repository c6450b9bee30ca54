//! The store's contract: the same cases run against every backend of [`stoke_store::Store`], so a backend
//! that passes them behaves as the server expects (the same errors, orderings, paging, cascades and
//! atomicity). A case is a `pub fn name(s: &dyn Store)` in the file of its aggregate; `contract!(name, …)`
//! at the bottom of that file makes one test per backend: `<aggregate>::<name>::sqlite` and
//! `<aggregate>::<name>::etcd`.
//!
//! Cases know nothing of storage: no SQL, no keys. Each gets a fresh, empty store from [`backends`] and
//! still creates its own accounts with numbers no other case uses.
//!
//! A backend that needs something outside the process (etcd) may be unavailable: its tests then print
//! `SKIPPED` and pass, except under CI (the `CI` environment variable set), where they fail.

mod backends;
mod fixtures;

use std::io::Write;

use stoke_store::Store;

/// Makes one test per backend for each named case of the current module.
macro_rules! contract {
    ($($case:ident),+ $(,)?) => {
        $(
            mod $case {
                #[test]
                fn sqlite() {
                    $crate::on_sqlite(super::$case);
                }

                #[test]
                fn etcd() {
                    $crate::on_etcd(module_path!(), super::$case);
                }
            }
        )+
    };
}

mod accounts;
mod durable;
mod events;
mod functions;
mod layers;
mod schedules;
mod stats;
mod triggers;
mod tunes;
mod workflows;

/// Runs a case on a fresh SQLite store.
pub fn on_sqlite(case: fn(&dyn Store)) {
    let backend = backends::sqlite();
    case(&*backend.store);
}

/// Runs a case on a fresh etcd store, or skips it (loudly) when no etcd is available, which is an error
/// under CI.
pub fn on_etcd(name: &str, case: fn(&dyn Store)) {
    match backends::etcd() {
        Some(backend) => case(&*backend.store),
        None => {
            // Written to the process's stderr directly, not through the test harness's capture, so the skip
            // shows in a passing run.
            let _ =
                writeln!(std::io::stderr(), "SKIPPED: etcd not available: {name} did not run against the etcd backend");
            assert!(
                std::env::var_os("CI").is_none(),
                "etcd not available under CI: the etcd contract case {name} must run there"
            );
        }
    }
}
