//! Function queues across a cluster (seed 004: one queue per action). Each function version has one queue
//! in the cluster, and one node owns it: `queue-owners/<account>/<function>/<version>` names the owner and is
//! written **under the owner's membership lease**, so it disappears when the owner stops renewing it. The
//! first node that needs a queue no node owns takes it with one transaction (the key must not exist), so
//! nodes competing for it agree on one owner. Every node keeps the owners in memory from a watch, so routing
//! an invocation reads no etcd.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions};
use serde::{Deserialize, Serialize};

use super::{encode, EtcdStore};
use crate::{Result, StoreError};
use stoke_core::placement::Capacity;

/// A function version's queue: which account's function, and which version (`$LATEST` or a number).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueName {
    pub account: String,
    pub function: String,
    pub version: String,
}

/// The node that owns a queue, and where it is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueOwner {
    pub node: String,
    pub advertise: String,
}

/// Room an owner holds on a node for instances it placed there, from `since_ms` until `until_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub capacity: Capacity,
    pub since_ms: i64,
    pub until_ms: i64,
}

/// What the watch on the queues' owners reports.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnerChange {
    /// Every owner now: what a node knew before is replaced (at start, and after the watch lost its place).
    All(Vec<(QueueName, QueueOwner)>),
    /// A queue was taken.
    Owned(QueueName, QueueOwner),
    /// A queue has no owner any more (its owner's lease lapsed, or it gave the queue up).
    Released(QueueName),
}

impl EtcdStore {
    /// The owner of `queue`: the node that holds it, or `me` if no node does — taken under `lease` (the
    /// caller's membership lease) in one transaction, so two nodes taking it at once agree on one owner.
    /// One request to etcd either way.
    pub fn claim_queue(&self, queue: &QueueName, me: &QueueOwner, lease: i64) -> Result<QueueOwner> {
        let key = self.queue_key(queue);
        let value = encode(me)?;
        let resp = self.run(move |mut kv| async move {
            let txn = Txn::new()
                .when(vec![Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then(vec![TxnOp::put(key.as_str(), value, Some(PutOptions::new().with_lease(lease)))])
                .or_else(vec![TxnOp::get(key.as_str(), None)]);
            kv.txn(txn).await
        })?;
        if resp.succeeded() {
            return Ok(me.clone());
        }
        let held = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| serde_json::from_slice::<QueueOwner>(kv.value())),
            _ => None,
        });
        match held {
            Some(Ok(owner)) => Ok(owner),
            Some(Err(e)) => Err(StoreError::Corrupt(format!("the owner of queue {queue:?} is unreadable: {e}"))),
            // Held when compared, gone when read cannot happen in one transaction; say so rather than guess.
            None => Err(StoreError::Unavailable(format!("the owner of queue {queue:?} changed while it was read"))),
        }
    }

    /// Gives up `queue` if `me` owns it (a node that stops serving it, or a test).
    pub fn release_queue(&self, queue: &QueueName, me: &QueueOwner) -> Result<bool> {
        let key = self.queue_key(queue);
        let Some(held) = self.get::<QueueOwner>(&key)? else { return Ok(false) };
        if held.value != *me {
            return Ok(false);
        }
        self.commit(vec![super::unchanged(&key, held.mod_revision)], vec![super::delete(&key)])
    }

    /// Tells `on` every queue's owner, then every change, until the store is dropped. After a lost
    /// connection the watch resumes from the revision it saw; if that was compacted away, `on` gets the
    /// whole list again ([`OwnerChange::All`]).
    pub fn watch_queue_owners(&self, on: Arc<dyn Fn(OwnerChange) + Send + Sync>) {
        let prefix = self.keys.under(&["queue-owners"]);
        let (client, background) = (self.client.clone(), self.background_counter());
        self.handle().spawn(async move {
            let mut next_revision = 0;
            loop {
                if next_revision == 0 {
                    background.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    match client.kv_client().get(prefix.as_str(), Some(GetOptions::new().with_prefix())).await {
                        Ok(resp) => {
                            let all = resp
                                .kvs()
                                .iter()
                                .filter_map(|kv| Some((queue_of(&prefix, kv.key())?, owner_of(kv.value())?)))
                                .collect();
                            next_revision = resp.header().map_or(0, |h| h.revision()) + 1;
                            on(OwnerChange::All(all));
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "cannot list the queues' owners; retrying");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                    }
                }
                let options = WatchOptions::new().with_prefix().with_start_revision(next_revision);
                match client.watch_client().watch(prefix.as_str(), Some(options)).await {
                    Ok(mut stream) => {
                        while let Ok(Some(resp)) = stream.message().await {
                            if resp.compact_revision() > 0 {
                                next_revision = 0; // list again
                                break;
                            }
                            if let Some(h) = resp.header() {
                                next_revision = next_revision.max(h.revision() + 1);
                            }
                            for event in resp.events() {
                                let Some(kv) = event.kv() else { continue };
                                let Some(queue) = queue_of(&prefix, kv.key()) else { continue };
                                match event.event_type() {
                                    EventType::Put => {
                                        if let Some(owner) = owner_of(kv.value()) {
                                            on(OwnerChange::Owned(queue, owner));
                                        }
                                    }
                                    EventType::Delete => on(OwnerChange::Released(queue)),
                                }
                            }
                            if resp.canceled() {
                                break;
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "the watch on the queues' owners failed; retrying"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    /// Reserves `want` on `node` for `holder` (an owner and one of its queues) until `until_ms`, under
    /// `lease` (the owner's: its reservations go with it), if what every holder reserved there and still
    /// holds, with `want`, stays within `lends` ([`stoke_core::placement::fits_reservations`]). Replaces the
    /// holder's earlier reservation there; lapsed ones are deleted on the way. Every reservation on a node
    /// moves its revision key, which each one checks: two owners never both take the node's last room.
    pub fn reserve(&self, node: &str, holder: &str, want: Reservation, lends: Capacity, lease: i64) -> Result<bool> {
        let (prefix, rev_key) = (self.keys.under(&["reservations", node]), self.keys.key(&["reservation-rev", node]));
        let own = self.keys.key(&["reservations", node, holder]);
        self.retry(
            || format!("reserving room on node {node}"),
            || {
                // The revision first: a reservation committed after it moves it, so a list read after it that
                // missed that reservation cannot pass the guard.
                let rev = self.get::<serde_json::Value>(&rev_key)?.map_or(0, |r| r.mod_revision);
                let (held, _) = self.list::<Reservation>(&prefix)?;
                let now = want.since_ms;
                let (live, lapsed): (Vec<_>, Vec<_>) = held.into_iter().partition(|r| r.value.until_ms > now);
                let taken = live.iter().filter(|r| r.key != own).fold(Capacity::default(), |t, r| Capacity {
                    memory_mb: t.memory_mb + r.value.capacity.memory_mb,
                    gpus: t.gpus + r.value.capacity.gpus,
                });
                if !stoke_core::placement::fits_reservations(lends, taken, want.capacity) {
                    return Ok(Some(false));
                }
                let guard = if rev == 0 { super::absent(&rev_key) } else { super::unchanged(&rev_key, rev) };
                let mut ops = vec![
                    TxnOp::put(rev_key.as_str(), b"{}".to_vec(), None),
                    TxnOp::put(own.as_str(), encode(&want)?, Some(PutOptions::new().with_lease(lease))),
                ];
                ops.extend(lapsed.iter().filter(|r| r.key != own).map(|r| super::delete(&r.key)));
                Ok(self.commit(vec![guard], ops)?.then_some(true))
            },
        )
    }

    /// What holders reserved on each node and still hold at `now_ms`.
    pub fn reservations(&self, now_ms: i64) -> Result<std::collections::HashMap<String, Capacity>> {
        let prefix = self.keys.under(&["reservations"]);
        let (held, _) = self.list::<Reservation>(&prefix)?;
        let mut out: std::collections::HashMap<String, Capacity> = Default::default();
        for r in held.into_iter().filter(|r| r.value.until_ms > now_ms) {
            let node = r.key.strip_prefix(&prefix).and_then(|k| k.split('/').next()).map(super::unsegment);
            if let Some(node) = node {
                let c = out.entry(node).or_default();
                c.memory_mb += r.value.capacity.memory_mb;
                c.gpus += r.value.capacity.gpus;
            }
        }
        Ok(out)
    }

    fn queue_key(&self, q: &QueueName) -> String {
        self.keys.key(&["queue-owners", &q.account, &q.function, &q.version])
    }
}

/// The queue a key under `prefix` names (segments unescaped).
fn queue_of(prefix: &str, key: &[u8]) -> Option<QueueName> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(prefix)?;
    let mut parts = rest.split('/').map(super::unsegment);
    let q = QueueName { account: parts.next()?, function: parts.next()?, version: parts.next()? };
    parts.next().is_none().then_some(q)
}

fn owner_of(value: &[u8]) -> Option<QueueOwner> {
    serde_json::from_slice(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_key_reads_back_as_its_queue() {
        let prefix = "p/queue-owners/";
        let q = queue_of(prefix, b"p/queue-owners/000000000001/echo/$LATEST").unwrap();
        assert_eq!(q, QueueName { account: "000000000001".into(), function: "echo".into(), version: "$LATEST".into() });
        assert_eq!(queue_of(prefix, b"p/queue-owners/1/echo").map(|q| q.version), None);
        assert_eq!(queue_of(prefix, b"p/queue-owners/1/echo/2/x"), None);
        assert_eq!(queue_of(prefix, b"other/1/echo/2"), None);
        assert_eq!(queue_of(prefix, b"p/queue-owners/a%2Fb/f/1").unwrap().account, "a/b");
    }

    fn record(name: &str) -> crate::NodeRecord {
        crate::NodeRecord {
            name: name.into(),
            node_id: format!("id-{name}"),
            advertise: format!("http://{name}"),
            version: "test".into(),
            memory_mb: 1,
            cpus: 1,
            gpus: 0,
            sandbox: "process".into(),
            instances: 0,
            etcd_requests: 0,
            queues: 0,
            budget_mb: 0,
            overcommit: 1.0,
            charged_mb: 0,
            configured_mb: 0,
            hosting: 0,
            started_ms: 0,
            heartbeat_ms: 0,
            gpu_use: Vec::new(),
        }
    }

    /// Waits up to 10 s for `seen` to hold `want`.
    fn wait_for(seen: &std::sync::Mutex<Vec<OwnerChange>>, want: impl Fn(&OwnerChange) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !seen.lock().unwrap().iter().any(&want) {
            assert!(std::time::Instant::now() < deadline, "not seen: {:?}", seen.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn two_owners_never_reserve_more_than_a_node_lends_and_lapsed_reservations_free_it() {
        let Some(etcd) = super::super::tests::etcd() else { return };
        let connect = || EtcdStore::connect(&[etcd.endpoint()], "reserve").unwrap();
        let (a, b) = (connect(), connect());
        let (a_member, b_member) = (
            a.join(&record("a"), Duration::from_secs(5)).unwrap(),
            b.join(&record("b"), Duration::from_secs(5)).unwrap(),
        );
        let lends = Capacity { memory_mb: 1000, gpus: 0 };
        let want = |mb: u64, until_ms: i64| Reservation {
            capacity: Capacity { memory_mb: mb, gpus: 0 },
            since_ms: 100,
            until_ms,
        };
        // Ten owners' worth of 300 MB racing for node c's 1,000 MB: exactly three get it.
        let won = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for i in 0..10 {
                let (store, lease) = if i % 2 == 0 { (&a, a_member.lease()) } else { (&b, b_member.lease()) };
                let won = &won;
                s.spawn(move || {
                    if store.reserve("c", &format!("owner-{i}"), want(300, 10_000), lends, lease).unwrap() {
                        won.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(won.load(std::sync::atomic::Ordering::Relaxed), 3);
        assert_eq!(a.reservations(100).unwrap()["c"], Capacity { memory_mb: 900, gpus: 0 });
        // A holder replacing its own reservation is not counted twice.
        let holder = (0..10)
            .map(|i| format!("owner-{i}"))
            .find(|h| a.get::<Reservation>(&a.keys.key(&["reservations", "c", h])).unwrap().is_some());
        assert!(a.reserve("c", &holder.unwrap(), want(400, 10_000), lends, a_member.lease()).unwrap());
        assert!(!a.reserve("c", "late", want(200, 10_000), lends, a_member.lease()).unwrap());
        // Once they lapse, the room is free again.
        assert!(a
            .reserve("c", "late", Reservation { since_ms: 20_000, ..want(900, 30_000) }, lends, a_member.lease())
            .unwrap());
        assert_eq!(a.reservations(20_000).unwrap()["c"], Capacity { memory_mb: 900, gpus: 0 });
    }

    #[test]
    fn one_node_owns_a_queue_until_its_lease_lapses_and_the_watch_tells_the_others() {
        let Some(etcd) = super::super::tests::etcd() else { return };
        let connect = || EtcdStore::connect(&[etcd.endpoint()], "queues").unwrap();
        let (a, b) = (connect(), connect());
        let me = |n: &str| QueueOwner { node: n.into(), advertise: format!("http://{n}") };
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        b.watch_queue_owners(Arc::new(move |c| log.lock().unwrap().push(c)));
        wait_for(&seen, |c| matches!(c, OwnerChange::All(all) if all.is_empty()));

        let a_member = a.join(&record("a"), Duration::from_secs(1)).unwrap();
        let b_member = b.join(&record("b"), Duration::from_secs(1)).unwrap();
        let q = QueueName { account: "1".into(), function: "f".into(), version: "$LATEST".into() };
        // The first to ask owns it; the second is told who does, and both cost one request.
        let before = b.requests();
        assert_eq!(a.claim_queue(&q, &me("a"), a_member.lease()).unwrap(), me("a"));
        assert_eq!(b.claim_queue(&q, &me("b"), b_member.lease()).unwrap(), me("a"));
        assert_eq!(b.requests() - before, 1);
        wait_for(&seen, |c| *c == OwnerChange::Owned(q.clone(), me("a")));
        // Another node cannot release it; its owner can, and then the next to ask takes it.
        assert!(!b.release_queue(&q, &me("b")).unwrap());
        assert!(a.release_queue(&q, &me("a")).unwrap());
        wait_for(&seen, |c| *c == OwnerChange::Released(q.clone()));
        assert_eq!(a.claim_queue(&q, &me("a"), a_member.lease()).unwrap(), me("a"));
        // a stops renewing its lease (it is killed): within the lease's time to live the queue is free.
        let lost = std::time::Instant::now();
        let released = seen.lock().unwrap().iter().filter(|c| matches!(c, OwnerChange::Released(_))).count();
        drop(a_member);
        let deadline = lost + Duration::from_secs(10);
        while seen.lock().unwrap().iter().filter(|c| matches!(c, OwnerChange::Released(_))).count() == released {
            assert!(std::time::Instant::now() < deadline, "the queue outlived its owner's lease");
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("the queue was free {:?} after its owner stopped renewing (TTL 1 s)", lost.elapsed());
        assert_eq!(b.claim_queue(&q, &me("b"), b_member.lease()).unwrap(), me("b"));
    }
}
