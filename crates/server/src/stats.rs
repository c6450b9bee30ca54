//! The statistics the workflow pre-warmer plans with (docs/workflows.md, "Hiding cold starts: the pre-warmer"): per
//! function version, recent init and run durations (told by the scheduler for every instance and invocation); per
//! Choice state, how often each branch was taken; per Map state, how many items it got. Kept in memory, written to the
//! store every few seconds when they changed, and loaded again at start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use stoke_core::keepalive::{Call, RECORDED_CALLS};
use stoke_core::stats::{BranchCounts, FunctionStats, Window};
use stoke_core::sync::lock;
use stoke_scheduler::{InvokeTarget, Observer};
use stoke_store::{StatRecord, Store};

use crate::registry::now_ms;

/// How often changed statistics are written.
const FLUSH_EVERY: Duration = Duration::from_secs(2);

const FUNCTION: &str = "function";
const CHOICE: &str = "choice";
const MAP: &str = "map";
const CALLS: &str = "calls";

/// The most recent invocations of a function version, for keep-alive advice.
type Calls = std::collections::VecDeque<Call>;

struct Entry<T> {
    value: T,
    dirty: bool,
}

/// One kind of statistics by key, remembering which changed since the last write.
struct Table<T>(HashMap<String, Entry<T>>);

impl<T: Default + Serialize + DeserializeOwned> Table<T> {
    fn new() -> Self {
        Table(HashMap::new())
    }

    /// Changes the value at `key` (created empty if new) and marks it for writing.
    fn update(&mut self, key: &str, f: impl FnOnce(&mut T)) {
        let entry = match self.0.get_mut(key) {
            Some(e) => e,
            None => self.0.entry(key.to_string()).or_insert(Entry { value: T::default(), dirty: false }),
        };
        f(&mut entry.value);
        entry.dirty = true;
    }

    fn load(&mut self, key: String, data: &str) {
        if let Ok(value) = serde_json::from_str(data) {
            self.0.insert(key, Entry { value, dirty: false });
        }
    }

    /// The changed entries as records, now marked clean.
    fn take_dirty(&mut self, kind: &str, now: i64, out: &mut Vec<StatRecord>) {
        for (key, e) in self.0.iter_mut().filter(|(_, e)| e.dirty) {
            e.dirty = false;
            let data = serde_json::to_string(&e.value).unwrap_or_default();
            out.push(StatRecord { kind: kind.into(), key: key.clone(), data, updated_ms: now });
        }
    }
}

pub struct Statistics {
    store: Arc<dyn Store>,
    functions: Mutex<Table<FunctionStats>>,
    branches: Mutex<Table<BranchCounts>>,
    items: Mutex<Table<Window>>,
    calls: Mutex<Table<Calls>>,
}

impl std::fmt::Debug for Statistics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statistics").finish_non_exhaustive()
    }
}

/// The key of a workflow state's statistics.
pub fn state_key(account: &str, workflow: &str, state: &str) -> String {
    format!("{account}/{workflow}/{state}")
}

impl Statistics {
    /// Loads what earlier runs learned.
    pub fn load(store: Arc<dyn Store>) -> Result<Arc<Self>, stoke_store::StoreError> {
        let stats = Statistics {
            store: store.clone(),
            functions: Mutex::new(Table::new()),
            branches: Mutex::new(Table::new()),
            items: Mutex::new(Table::new()),
            calls: Mutex::new(Table::new()),
        };
        for r in store.all_stats()? {
            match r.kind.as_str() {
                FUNCTION => lock(&stats.functions).load(r.key, &r.data),
                CHOICE => lock(&stats.branches).load(r.key, &r.data),
                MAP => lock(&stats.items).load(r.key, &r.data),
                CALLS => lock(&stats.calls).load(r.key, &r.data),
                _ => {}
            }
        }
        Ok(Arc::new(stats))
    }

    /// Writes changed statistics every few seconds until the process ends.
    pub fn flush_in_background(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FLUSH_EVERY).await;
                let Some(me) = me.upgrade() else { return };
                let records = me.changed();
                if records.is_empty() {
                    continue;
                }
                let store = me.store.clone();
                match tokio::task::spawn_blocking(move || stoke_store::in_background(|| store.put_stats(&records)))
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot write statistics"),
                    Err(e) => tracing::warn!(error = %e, "statistics writer failed"),
                }
            }
        });
    }

    fn changed(&self) -> Vec<StatRecord> {
        let now = now_ms();
        let mut out = Vec::new();
        lock(&self.functions).take_dirty(FUNCTION, now, &mut out);
        lock(&self.branches).take_dirty(CHOICE, now, &mut out);
        lock(&self.items).take_dirty(MAP, now, &mut out);
        lock(&self.calls).take_dirty(CALLS, now, &mut out);
        out
    }

    /// Writes every change now (at shutdown, and in tests).
    pub fn flush(&self) -> Result<(), stoke_store::StoreError> {
        let records = self.changed();
        if records.is_empty() {
            return Ok(());
        }
        self.store.put_stats(&records)
    }

    /// The statistics of a function version (`account/function/version`).
    pub fn function(&self, version_key: &str) -> FunctionStats {
        lock(&self.functions).0.get(version_key).map(|e| e.value.clone()).unwrap_or_default()
    }

    /// The recorded invocations of a function version (`account/function/version`), oldest first.
    pub fn calls(&self, version_key: &str) -> Vec<Call> {
        lock(&self.calls).0.get(version_key).map(|e| e.value.iter().copied().collect()).unwrap_or_default()
    }

    pub fn record_branch(&self, key: &str, target: &str) {
        lock(&self.branches).update(key, |counts| *counts.entry(target.to_string()).or_default() += 1);
    }

    pub fn branches(&self, key: &str) -> Vec<(String, u64)> {
        let table = lock(&self.branches);
        table.0.get(key).map(|e| e.value.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default()
    }

    pub fn record_items(&self, key: &str, count: usize) {
        lock(&self.items).update(key, |w| w.push(count as f64));
    }

    /// The typical item count of a Map state (the median of recent executions).
    pub fn items(&self, key: &str) -> Option<f64> {
        lock(&self.items).0.get(key).and_then(|e| e.value.quantile(0.5))
    }
}

/// A tuner's test sizes say nothing about how the function runs for its callers.
fn observed(target: &InvokeTarget) -> bool {
    !target.version.starts_with(stoke_core::tune::TUNE_VERSION_PREFIX)
}

impl Observer for Statistics {
    fn learned(&self, target: &InvokeTarget) -> stoke_scheduler::Learned {
        let s = self.function(target.version_key());
        let ms = |v: Option<f64>| v.map(|ms| Duration::from_secs_f64(ms / 1000.0));
        stoke_scheduler::Learned { init: ms(s.init_ms.quantile(0.5)), run: ms(s.run_ms.quantile(0.5)) }
    }

    fn initialised(&self, target: &InvokeTarget, init: Duration) {
        if !observed(target) {
            return;
        }
        let ms = init.as_secs_f64() * 1000.0;
        lock(&self.functions).update(target.version_key(), |s| s.init_ms.push(ms));
    }

    fn ran(&self, target: &InvokeTarget, run: Duration) {
        if !observed(target) {
            return;
        }
        let ms = run.as_secs_f64() * 1000.0;
        lock(&self.functions).update(target.version_key(), |s| s.run_ms.push(ms));
        let end_ms = now_ms();
        let call = Call { start_ms: end_ms - stoke_core::num::millis_i64(run), end_ms };
        lock(&self.calls).update(target.version_key(), |c| {
            if c.len() == RECORDED_CALLS {
                c.pop_front();
            }
            c.push_back(call);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_queue_learns_the_medians_of_earlier_runs_also_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let open = || -> Arc<dyn Store> { Arc::new(stoke_store::SqliteStore::open(&dir.path().join("db")).unwrap()) };
        let stats = Statistics::load(open()).unwrap();
        let t = InvokeTarget::fixture("$LATEST");
        assert_eq!(stats.learned(&t), stoke_scheduler::Learned::default(), "nothing known yet");
        for ms in [20, 30, 25] {
            stats.initialised(&t, Duration::from_millis(ms));
        }
        for ms in [1, 9, 2] {
            stats.ran(&t, Duration::from_millis(ms));
        }
        let learned = stats.learned(&t);
        assert_eq!(learned.init, Some(Duration::from_millis(25)));
        assert_eq!(learned.run, Some(Duration::from_millis(2)));
        // A tuner's test size learns nothing, and teaches nothing.
        let tune = InvokeTarget::fixture(&format!("{}x", stoke_core::tune::TUNE_VERSION_PREFIX));
        stats.initialised(&tune, Duration::from_millis(5));
        assert_eq!(stats.learned(&tune), stoke_scheduler::Learned::default());
        // Written to the store and loaded again by the next server.
        stats.flush().unwrap();
        drop(stats);
        let again = Statistics::load(open()).unwrap();
        assert_eq!(again.learned(&t), learned);
    }

    #[test]
    fn tables_write_only_what_changed_and_load_it_back() {
        let mut t: Table<Window> = Table::new();
        t.update("a", |w| w.push(1.0));
        t.update("b", |w| w.push(2.0));
        let mut out = Vec::new();
        t.take_dirty(MAP, 5, &mut out);
        out.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(
            out.iter().map(|r| (r.key.as_str(), r.data.as_str())).collect::<Vec<_>>(),
            [("a", "[1.0]"), ("b", "[2.0]")]
        );
        let mut again = Vec::new();
        t.take_dirty(MAP, 6, &mut again);
        assert!(again.is_empty(), "nothing changed since");
        t.update("a", |w| w.push(3.0));
        t.take_dirty(MAP, 7, &mut again);
        assert_eq!(again.len(), 1);
        let mut loaded: Table<Window> = Table::new();
        loaded.load("a".into(), &again[0].data);
        loaded.load("bad".into(), "not json");
        assert_eq!(loaded.0["a"].value.quantile(1.0), Some(3.0));
        assert!(!loaded.0.contains_key("bad"));
    }
}
