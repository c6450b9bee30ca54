//! The cluster backend: every record in etcd (v3 API, through the `etcd-client` crate), one JSON value per
//! key, one etcd transaction per change. The keyspace is in docs/cluster.md; each aggregate's keys are in
//! its own module here, and [`Keys`] builds them all.
//!
//! Optimistic concurrency: a change reads what it depends on, then commits in one transaction that
//! compares each of those keys' `mod_revision` (or that a key does not exist yet). When another writer got
//! there first the transaction fails and the change reads again, so two nodes never overwrite each other
//! silently; the store's own revision fields (a function's, an alias's) are checked against what the caller
//! read exactly as on SQLite.
//!
//! The store's traits are synchronous, the client is not: requests run on a small runtime owned by the
//! store, and the calling thread waits for the answer (inside the server's runtime through
//! `block_in_place`, so the other tasks of that worker move on). Every request has a deadline; an etcd that
//! does not answer is [`StoreError::Unavailable`], which the API turns into a retryable 503.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KvClient, Txn, TxnOp};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use cluster::{Membership, NodeGpu, NodeRecord, NodeStatus};
pub use queues::{OwnerChange, QueueName, QueueOwner, Reservation};

use crate::{Result, StoreError};

mod accounts;
mod cluster;
mod durable;
mod events;
mod functions;
mod layers;
mod queues;
mod schedules;
mod stats;
mod triggers;
mod tunes;
mod workflows;

/// How long one request to etcd may take before the store gives up on it (a write that timed out may still
/// have been committed: every change is written so that retrying it is safe or detected).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `connect` waits for etcd to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a change whose transaction lost a race reads again and retries before it gives up.
const MAX_RETRIES: usize = 64;
/// etcd's default limit of operations in one transaction (`--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

thread_local! {
    /// Set while the calling thread does background work (see [`in_background`]).
    static BACKGROUND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the requests it makes counted as background work (the periodic loops: statistics flushes,
/// the Event queue's poll, the retirement reaper, blob collection) rather than as requests made while
/// serving API calls and invocations, so the two can be told apart.
pub fn in_background<T>(f: impl FnOnce() -> T) -> T {
    BACKGROUND.with(|b| b.set(true));
    let out = f();
    BACKGROUND.with(|b| b.set(false));
    out
}

/// The etcd-backed [`Store`](crate::Store).
pub struct EtcdStore {
    client: Client,
    endpoints: String,
    keys: Keys,
    /// The node this handle serves: executions it starts and events it claims are recorded as its own, and
    /// on a restart it takes back only those (another live node's are not its to resume).
    owner: String,
    runtime: Option<tokio::runtime::Runtime>,
    requests: std::sync::Arc<AtomicU64>,
    background_requests: std::sync::Arc<AtomicU64>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("endpoints", &self.endpoints).field("prefix", &self.keys.root).finish()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // `shutdown_background` may run inside another runtime (the server's); a plain drop may not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One value read from etcd with the revision it was last changed at.
#[derive(Debug, Clone)]
pub(crate) struct Read<T> {
    pub key: String,
    pub value: T,
    pub mod_revision: i64,
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`http://host:port`, several for an etcd cluster) and keeps every key
    /// under `prefix` (e.g. `stoke`; several stoke clusters, or tests, can share one etcd). Fails with a
    /// message naming the endpoints when etcd does not answer.
    pub fn connect(endpoints: &[String], prefix: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("stoke-etcd")
            .enable_all()
            .build()?;
        let list = endpoints.join(",");
        if endpoints.is_empty() {
            return Err(StoreError::Unavailable("no etcd endpoint given: pass --cluster http://HOST:2379".into()));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
        let eps = endpoints.to_vec();
        let client = runtime
            .block_on(async move {
                let mut client = tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(eps, Some(options)))
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .map_err(|e| e.to_string())?;
                // Connecting is lazy: ask something so an unreachable etcd is found now.
                tokio::time::timeout(CONNECT_TIMEOUT, client.status())
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(client)
            })
            .map_err(|why| StoreError::Unavailable(format!("etcd at {list} did not answer ({why})")))?;
        let root = prefix.trim_end_matches('/').to_string();
        Ok(Self {
            client,
            endpoints: list,
            keys: Keys { root },
            owner: String::new(),
            runtime: Some(runtime),
            requests: std::sync::Arc::new(AtomicU64::new(0)),
            background_requests: std::sync::Arc::new(AtomicU64::new(0)),
        })
    }

    /// Records what this handle starts and claims as `node`'s (see [`EtcdStore`]'s `owner`).
    pub fn owned_by(mut self, node: &str) -> Self {
        self.owner = node.to_string();
        self
    }

    /// The etcd client, for the cluster's own use of etcd (membership, leases, watches).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The runtime the store's requests run on, for work that goes with them (lease renewal, watches).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.rt().handle()
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime is only taken when the store is dropped")
    }

    /// The key prefix everything of this cluster lives under.
    pub fn prefix(&self) -> &str {
        &self.keys.root
    }

    /// Requests sent to etcd's key-value API so far while serving calls (what a benchmark counts per
    /// operation); background work ([`in_background`]) is counted apart.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests made by background work (statistics flushes) so far.
    pub fn background_requests(&self) -> u64 {
        self.background_requests.load(Ordering::Relaxed)
    }

    fn requests_counter(&self) -> std::sync::Arc<AtomicU64> {
        self.requests.clone()
    }

    fn background_counter(&self) -> std::sync::Arc<AtomicU64> {
        self.background_requests.clone()
    }

    /// Runs `f` with a KV client on the store's runtime and waits for it, up to the request deadline.
    fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(KvClient) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        if BACKGROUND.with(std::cell::Cell::get) {
            self.background_requests.fetch_add(1, Ordering::Relaxed);
        } else {
            self.requests.fetch_add(1, Ordering::Relaxed);
        }
        let fut = f(self.client.kv_client());
        // The deadline is made on the store's runtime: a caller outside any runtime has no timer.
        match self.block_on(async move { tokio::time::timeout(REQUEST_TIMEOUT, fut).await }) {
            Some(Ok(Ok(v))) => Ok(v),
            Some(Ok(Err(e))) => Err(unavailable(&self.endpoints, &e)),
            Some(Err(_elapsed)) => Err(StoreError::Unavailable(format!(
                "etcd at {} did not answer within {} s",
                self.endpoints,
                REQUEST_TIMEOUT.as_secs()
            ))),
            None => Err(StoreError::Unavailable("the etcd client stopped".into())),
        }
    }

    /// Runs `fut` on the store's runtime and waits for it from a synchronous caller: inside the server's
    /// runtime through `block_in_place`, so that worker's other tasks move on. `None` when the runtime
    /// dropped it (the store is going away).
    pub fn block_on<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt().spawn(async move {
            let _ = tx.send(fut.await);
        });
        let wait = move || rx.recv().ok();
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// The value at `key`, if there is one.
    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Read<T>>> {
        let k = key.to_string();
        let resp = self.run(move |mut kv| async move { kv.get(k, None).await })?;
        resp.kvs().first().map(decode).transpose()
    }

    /// Every value under `prefix` in key order, and the revision the read saw.
    fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<(Vec<Read<T>>, i64)> {
        let p = prefix.to_string();
        let resp = self.run(move |mut kv| async move { kv.get(p, Some(GetOptions::new().with_prefix())).await })?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((resp.kvs().iter().map(decode).collect::<Result<Vec<_>>>()?, revision))
    }

    /// Commits `ops` if every one of `when` holds; false when one did not (nothing was written).
    fn commit(&self, when: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool> {
        if ops.len() > MAX_TXN_OPS {
            return Err(StoreError::Corrupt(format!(
                "a change of {} keys is more than etcd takes in one transaction ({MAX_TXN_OPS})",
                ops.len()
            )));
        }
        let resp = self.run(move |mut kv| async move { kv.txn(Txn::new().when(when).and_then(ops)).await })?;
        Ok(resp.succeeded())
    }

    /// Replaces the record at `key` with `next` if the stored one is still at revision `expected`, keeping the
    /// stored one's creation time. `missing` is the error when there is none; `RevisionMismatch` when it
    /// moved on.
    fn replace_at_revision<T: Revisioned>(
        &self,
        key: &str,
        next: &T,
        expected: u64,
        what: &dyn Fn() -> String,
        missing: fn(String) -> StoreError,
    ) -> Result<()> {
        self.retry(what, || {
            let Some(stored) = self.get::<T>(key)? else {
                return Err(missing(what()));
            };
            if stored.value.revision() != expected {
                return Err(StoreError::RevisionMismatch(what()));
            }
            let mut record = next.clone();
            record.keep_created(&stored.value);
            Ok(self.commit(vec![unchanged(key, stored.mod_revision)], vec![put(key, &record)?])?.then_some(()))
        })
    }

    /// Repeats `attempt` while it reports a lost race (`None`), up to [`MAX_RETRIES`] times.
    fn retry<T>(&self, what: impl Fn() -> String, mut attempt: impl FnMut() -> Result<Option<T>>) -> Result<T> {
        for _ in 0..MAX_RETRIES {
            if let Some(out) = attempt()? {
                return Ok(out);
            }
        }
        Err(StoreError::RevisionMismatch(what()))
    }
}

/// A failed request: etcd unreachable, overloaded or without a leader is `Unavailable` (retry); a request
/// etcd refused as such (too large, malformed) is `Refused`, which retrying does not change.
/// A record whose updates name the revision they read.
trait Revisioned: Serialize + DeserializeOwned + Clone {
    fn revision(&self) -> u64;
    /// Takes the creation time of the record it replaces (an update never changes it).
    fn keep_created(&mut self, stored: &Self);
}

impl Revisioned for crate::AliasRecord {
    fn revision(&self) -> u64 {
        self.revision
    }

    fn keep_created(&mut self, stored: &Self) {
        self.created_ms = stored.created_ms;
    }
}

impl Revisioned for crate::WorkflowRecord {
    fn revision(&self) -> u64 {
        self.revision
    }

    fn keep_created(&mut self, stored: &Self) {
        self.created_ms = stored.created_ms;
    }
}

fn unavailable(endpoints: &str, e: &etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    let refused = match e {
        E::GRpcStatus(status) => matches!(
            status.code(),
            tonic::Code::InvalidArgument
                | tonic::Code::OutOfRange
                | tonic::Code::FailedPrecondition
                | tonic::Code::PermissionDenied
                | tonic::Code::Unauthenticated
        ),
        E::InvalidArgs(_) | E::InvalidUri(_) | E::Utf8Error(_) | E::InvalidMetadataValue(_) => true,
        _ => false,
    };
    if refused {
        StoreError::Refused(format!("etcd at {endpoints} refused the request: {e}"))
    } else {
        StoreError::Unavailable(format!("etcd at {endpoints} failed the request: {e}"))
    }
}

fn decode<T: DeserializeOwned>(kv: &etcd_client::KeyValue) -> Result<Read<T>> {
    let key = String::from_utf8_lossy(kv.key()).into_owned();
    let value = serde_json::from_slice(kv.value()).map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?;
    Ok(Read { key, value, mod_revision: kv.mod_revision() })
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Writes `value` at `key`.
fn put<T: Serialize>(key: &str, value: &T) -> Result<TxnOp> {
    Ok(TxnOp::put(key, encode(value)?, None))
}

fn delete(key: &str) -> TxnOp {
    TxnOp::delete(key, None)
}

fn delete_prefix(prefix: &str) -> TxnOp {
    TxnOp::delete(prefix, Some(DeleteOptions::new().with_prefix()))
}

/// `key` does not exist.
fn absent(key: &str) -> Compare {
    Compare::create_revision(key, CompareOp::Equal, 0)
}

/// `key` exists.
fn present(key: &str) -> Compare {
    Compare::version(key, CompareOp::Greater, 0)
}

/// `key` is as it was when read.
fn unchanged(key: &str, mod_revision: i64) -> Compare {
    Compare::mod_revision(key, CompareOp::Equal, mod_revision)
}

/// No key under `prefix` changed (or appeared) after `revision`.
fn none_changed_since(prefix: &str, revision: i64) -> Compare {
    Compare::mod_revision(prefix, CompareOp::Less, revision + 1).with_prefix()
}

/// A number as a key segment that sorts as the number does.
fn num(n: u64) -> String {
    format!("{n:020}")
}

/// Builds every key the store uses. A free-form segment has `%` and `/` escaped so it stays one segment.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    root: String,
}

impl Keys {
    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.root.clone();
        for p in parts {
            k.push('/');
            k.push_str(&segment(p));
        }
        k
    }

    /// The prefix of every key below `parts` (ends with `/`, so `f` does not take in `f2`).
    fn under(&self, parts: &[&str]) -> String {
        let mut k = self.key(parts);
        k.push('/');
        k
    }
}

fn segment(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['%', '/']) {
        s.replace('%', "%25").replace('/', "%2F").into()
    } else {
        s.into()
    }
}

/// A key segment read back: what [`segment`] escaped, unescaped.
fn unsegment(s: &str) -> String {
    if s.contains('%') {
        s.replace("%2F", "/").replace("%25", "%")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use stoke_testkit::etcd::{free_port, Etcd};

    use super::*;
    use crate::prelude::*;

    /// etcd for a test, or `None` (loudly) outside CI where it is not installed; in CI its absence fails.
    pub(crate) fn etcd() -> Option<Etcd> {
        if stoke_testkit::etcd::etcd_binary().is_none() && std::env::var_os("CI").is_none() {
            eprintln!("SKIPPED: etcd is not installed (apt-get install etcd-server); CI runs this test");
            return None;
        }
        Some(Etcd::start().expect("etcd starts"))
    }

    fn running(id: &str) -> crate::ExecutionRecord {
        crate::ExecutionRecord {
            id: id.into(),
            account: stoke_core::AccountId::from_number(1),
            workflow: "w".into(),
            name: id.into(),
            definition: "{}".into(),
            status: crate::ExecutionStatus::Running,
            input: "{}".into(),
            output: None,
            error: None,
            cause: None,
            started_ms: 1,
            stopped_ms: None,
        }
    }

    fn row(seq: u64) -> crate::HistoryRow {
        crate::HistoryRow {
            seq,
            timestamp_ms: 1,
            kind: "PassStateEntered".into(),
            scope: String::new(),
            step: seq.try_into().unwrap(),
            attempt: 0,
            details: "{}".into(),
        }
    }

    #[test]
    fn an_execution_taken_by_another_node_fences_off_the_first_and_a_gone_nodes_work_moves_once() {
        let Some(etcd) = etcd() else { return };
        let node = |name: &str| EtcdStore::connect(&[etcd.endpoint()], "fence").unwrap().owned_by(name);
        let (a, b, c) = (node("a"), node("b"), node("c"));
        a.insert_execution(&running("x"), &[row(1)]).unwrap();
        a.record_execution("x", &[row(2)], None).unwrap();
        assert_eq!(a.running_executions().unwrap().len(), 1, "a runs it");
        assert!(b.running_executions().unwrap().is_empty(), "b does not");
        // b takes it (a stop through b, say): a's next write is refused and says who runs it now.
        assert!(b.take_execution("x").unwrap());
        let refused = a.record_execution("x", &[row(3)], None).unwrap_err();
        assert!(matches!(&refused, StoreError::Conflict(m) if m.contains("\"b\"")), "{refused}");
        assert_eq!(b.history("x").unwrap().len(), 2, "the refused write wrote nothing");
        let mut done = running("x");
        done.status = crate::ExecutionStatus::Aborted;
        b.record_execution("x", &[row(3)], Some(&done)).unwrap();
        assert!(!a.take_execution("x").unwrap(), "an ended execution is nobody's to take");

        // a is gone with a claimed event and a running execution: b and c take over at once; each item moves once.
        let event = crate::EventRecord {
            id: "e1".into(),
            account: stoke_core::AccountId::from_number(1),
            reference: "f".into(),
            payload: b"{}".to_vec(),
            attempts: 0,
            next_attempt_ms: 0,
            state: crate::EventState::Queued,
            error_type: None,
            result: None,
            created_ms: 1,
            finished_ms: None,
            executed_version: None,
            max_retries: None,
            max_age_s: None,
        };
        a.enqueue_event(&event).unwrap();
        assert_eq!(a.claim_events(10, 10).unwrap().len(), 1);
        a.insert_execution(&running("y"), &[row(1)]).unwrap();
        let (from_b, from_c) = std::thread::scope(|s| {
            let tb = s.spawn(|| b.take_over("a").unwrap());
            let tc = s.spawn(|| c.take_over("a").unwrap());
            (tb.join().unwrap(), tc.join().unwrap())
        });
        assert_eq!(from_b.0 + from_c.0, 1, "the event is requeued once: {from_b:?} {from_c:?}");
        assert_eq!(from_b.1.len() + from_c.1.len(), 1, "the execution moves once: {from_b:?} {from_c:?}");
        let owner = if from_b.1.is_empty() { &c } else { &b };
        assert_eq!(owner.running_executions().unwrap()[0].id, "y");
        assert_eq!(b.claim_events(10, 10).unwrap().len(), 1, "the requeued event can be claimed again");
        assert_eq!(b.take_over("a").unwrap(), (0, Vec::new()), "nothing is left to take");
    }

    #[test]
    fn an_unreachable_etcd_is_named_in_the_error() {
        let endpoint = format!("http://127.0.0.1:{}", free_port().unwrap());
        let started = std::time::Instant::now();
        let err = EtcdStore::connect(std::slice::from_ref(&endpoint), "stoke").unwrap_err();
        assert!(matches!(&err, StoreError::Unavailable(m) if m.contains(&endpoint)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10), "it gives up in bounded time");
    }

    #[test]
    fn requests_fail_as_unavailable_while_etcd_is_down_and_work_again_after() {
        let Some(mut etcd) = etcd() else { return };
        let store = EtcdStore::connect(&[etcd.endpoint()], "t").unwrap();
        let stat = crate::StatRecord { kind: "k".into(), key: "a/b".into(), data: "1".into(), updated_ms: 1 };
        store.put_stats(std::slice::from_ref(&stat)).unwrap();
        etcd.stop();
        let err = store.all_stats().unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        etcd.restart().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let back = loop {
            match store.all_stats() {
                Ok(rows) => break rows,
                Err(e) if std::time::Instant::now() < deadline => {
                    assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("etcd is back but the store still fails: {e}"),
            }
        };
        assert_eq!(back, [stat], "nothing acknowledged was lost");
        assert!(store.requests() >= 3);
    }

    #[test]
    fn segments_stay_segments_and_numbers_sort_as_numbers() {
        let k = Keys { root: "stoke".into() };
        assert_eq!(k.key(&["functions", "000000000001", "f"]), "stoke/functions/000000000001/f");
        assert_eq!(k.key(&["stats", "a/b", "50%"]), "stoke/stats/a%2Fb/50%25");
        assert_eq!(k.under(&["versions", "a", "f"]), "stoke/versions/a/f/");
        assert!(num(9) < num(10) && num(10) < num(u64::MAX));
    }
}
