//! What the nodes of a cluster keep in etcd about themselves, and how they learn of each other's changes.
//!
//! - Membership: `nodes/<name>` keeps a node's last record for good (so a node that went is shown gone);
//!   `node-leases/<name>` holds the same record under the node's lease: it exists exactly while the node
//!   renews the lease, so a node that stops is gone within the lease's TTL. A name is one node's: joining
//!   with a name another live node holds is refused; the same node (same `node_id`, kept in its data
//!   directory) restarting takes its name back at once.
//! - Watches: [`EtcdStore::watch`] tells a node when anything under an aggregate's keys changed, so caches
//!   it keeps in memory (authentication, function resolution, routes) stay true without etcd on the warm path.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, WatchOptions};
use serde::{Deserialize, Serialize};

use super::{absent, encode, EtcdStore};
use crate::{Result, StoreError};

/// One node of a cluster as it describes itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    /// Random, kept in the node's data directory: tells the same node restarting from another one.
    pub node_id: String,
    /// Where other nodes and clients reach it (`http://host:port`).
    pub advertise: String,
    /// stoke's version.
    pub version: String,
    pub memory_mb: u64,
    pub cpus: u32,
    pub gpus: u32,
    /// The sandbox kind its instances run in (`lean`, `oci`, `process`).
    pub sandbox: String,
    /// Live instances, at the last heartbeat.
    pub instances: u64,
    /// Requests this node sent to etcd's key-value API so far (what benchmarks count).
    pub etcd_requests: u64,
    /// Function queues this node owns (cluster part 2: one queue per function version in the cluster).
    #[serde(default)]
    pub queues: u64,
    /// Its memory admission: the budget live instances may use, in MB, and the overcommit bound on their
    /// configured sizes; and what its live instances are charged and configured at, in MB.
    #[serde(default)]
    pub budget_mb: u64,
    #[serde(default)]
    pub overcommit: f64,
    #[serde(default)]
    pub charged_mb: u64,
    #[serde(default)]
    pub configured_mb: u64,
    /// Feeders pulling other nodes' queues' work onto this node's instances.
    #[serde(default)]
    pub hosting: u64,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
    /// Its GPUs and what its instances hold of each, at the last heartbeat.
    #[serde(default)]
    pub gpu_use: Vec<NodeGpu>,
}

/// One GPU of a node, as its heartbeat reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeGpu {
    pub index: u32,
    #[serde(default)]
    pub uuid: String,
    pub name: String,
    pub memory_mb: u64,
    #[serde(default)]
    pub minor: u32,
    pub reserved_mb: u64,
    pub reserved_percentage: u32,
    #[serde(default)]
    pub whole_instances: usize,
    #[serde(default)]
    pub share_instances: usize,
}

/// A node and whether it holds its lease now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    #[serde(flatten)]
    pub node: NodeRecord,
    /// `live` while its lease holds, `gone` after.
    pub state: String,
}

/// This node's place in the cluster: its lease, renewed in the background until dropped.
#[derive(Debug)]
pub struct Membership {
    record: Arc<Mutex<NodeRecord>>,
    /// The lease the node holds now (a new one after an outage let the old one lapse).
    lease: Arc<AtomicI64>,
    task: tokio::task::JoinHandle<()>,
}

impl Membership {
    /// Changes what the next heartbeat writes (load, counters).
    pub fn update(&self, f: impl FnOnce(&mut NodeRecord)) {
        f(&mut self.record.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn record(&self) -> NodeRecord {
        self.record.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The node's lease now: keys written under it go with the node.
    pub fn lease(&self) -> i64 {
        self.lease.load(Ordering::Relaxed)
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EtcdStore {
    /// Joins the cluster as `node`, under a lease of `ttl`, and keeps the lease (re-joining after an etcd
    /// outage) until the returned [`Membership`] is dropped. `Conflict` when another live node has the name.
    pub fn join(&self, node: &NodeRecord, ttl: Duration) -> Result<Membership> {
        let ttl_s = i64::try_from(ttl.as_secs().max(1)).unwrap_or(60);
        let keys = (self.keys.key(&["node-leases", &node.name]), self.keys.key(&["nodes", &node.name]));
        let lease = self.claim_name(node, &keys, ttl_s)?;
        let record = Arc::new(Mutex::new(node.clone()));
        let held = Arc::new(AtomicI64::new(lease));
        let (client, shared, requests) = (self.client.clone(), record.clone(), self.requests_counter());
        let lease_now = held.clone();
        let task = self.handle().spawn(async move {
            hold(client, shared, keys, lease_now, ttl_s, requests).await;
        });
        Ok(Membership { record, lease: held, task })
    }

    fn claim_name(&self, node: &NodeRecord, keys: &(String, String), ttl_s: i64) -> Result<i64> {
        let (client, node_, keys_) = (self.client.clone(), node.clone(), keys.clone());
        let claimed = self.block_on(async move {
            tokio::time::timeout(super::REQUEST_TIMEOUT, claim(&client, &node_, &keys_, ttl_s)).await
        });
        match claimed {
            Some(Ok(Ok(Claim::Taken(lease)))) => Ok(lease),
            Some(Ok(Ok(Claim::HeldBy(h)))) => Err(StoreError::Conflict(format!(
                "node name {:?}: a live node at {} holds it; give this node another --node-name, or stop that one \
                 and wait for its lease to lapse",
                node.name, h.advertise
            ))),
            Some(Ok(Ok(Claim::Lost))) => {
                Err(StoreError::Conflict(format!("node name {:?} was taken while joining; try again", node.name)))
            }
            Some(Ok(Err(e))) => Err(super::unavailable(&self.endpoints, &e)),
            Some(Err(_)) | None => {
                Err(StoreError::Unavailable(format!("etcd at {} did not answer in time", self.endpoints)))
            }
        }
    }

    /// Every node that ever joined, live or gone, by name.
    pub fn nodes(&self) -> Result<Vec<NodeStatus>> {
        let (live, _) = self.list::<NodeRecord>(&self.keys.under(&["node-leases"]))?;
        let (all, _) = self.list::<NodeRecord>(&self.keys.under(&["nodes"]))?;
        let mut out: Vec<NodeStatus> = all
            .into_iter()
            .map(|r| {
                let now = live.iter().find(|l| l.value.name == r.value.name);
                match now {
                    Some(l) => NodeStatus { node: l.value.clone(), state: "live".into() },
                    None => NodeStatus { node: r.value, state: "gone".into() },
                }
            })
            .collect();
        out.sort_by(|a, b| a.node.name.cmp(&b.node.name));
        Ok(out)
    }

    /// Takes over what the gone node `gone` left: the Event invocations it had claimed go back to the queue
    /// (at least once), and the executions it was running become this node's (their ids are returned, to
    /// resume from their history). Safe to run on several nodes at once: each item moves exactly once.
    pub fn take_over(&self, gone: &str) -> Result<(usize, Vec<String>)> {
        let (claimed, _) = self.list::<String>(&self.keys.under(&["event-running"]))?;
        let mut requeued = 0;
        for entry in claimed.into_iter().filter(|r| r.value == gone) {
            if self.move_event(&(entry.key, entry.mod_revision), crate::EventState::Queued)?.is_some() {
                requeued += 1;
            }
        }
        let (owned, _) = self.list::<String>(&self.keys.under(&["execution-owners"]))?;
        let mut taken = Vec::new();
        for entry in owned.into_iter().filter(|r| r.value == gone) {
            let moved = vec![TxnOp::put(entry.key.as_str(), encode(&self.owner)?, None)];
            if self.commit(vec![super::unchanged(&entry.key, entry.mod_revision)], moved)? {
                taken.push(entry.key.rsplit('/').next().unwrap_or_default().to_string());
            }
        }
        Ok((requeued, taken))
    }

    /// Forgets a gone node (`NotFound` if there is none of that name; `Conflict` while it is live).
    pub fn forget_node(&self, name: &str) -> Result<()> {
        let (lease_key, info_key) = (self.keys.key(&["node-leases", name]), self.keys.key(&["nodes", name]));
        if self.commit(vec![absent(&lease_key), super::present(&info_key)], vec![super::delete(&info_key)])? {
            return Ok(());
        }
        if self.get::<serde_json::Value>(&lease_key)?.is_some() {
            return Err(StoreError::Conflict(format!("node {name} is live; stop it first")));
        }
        Err(StoreError::NotFound(format!("node {name}")))
    }

    /// Calls `on_change(aggregate)` whenever a key under one of `aggregates` (first key segments, e.g.
    /// `functions`) changes, until the store is dropped. After etcd was unreachable the watch resumes from
    /// the revision it had seen, so no change is missed; if etcd compacted that revision away meanwhile,
    /// `on_change` is called once (anything may have changed).
    pub fn watch(&self, aggregates: &[&str], on_change: Arc<dyn Fn(&str) + Send + Sync>) {
        for aggregate in aggregates {
            let prefix = self.keys.under(&[aggregate]);
            let (client, name, on_change) = (self.client.clone(), (*aggregate).to_string(), on_change.clone());
            self.handle().spawn(async move {
                let mut next_revision = 0;
                loop {
                    let mut options = WatchOptions::new().with_prefix();
                    if next_revision > 0 {
                        options = options.with_start_revision(next_revision);
                    }
                    match client.watch_client().watch(prefix.as_str(), Some(options)).await {
                        Ok(mut stream) => {
                            while let Ok(Some(resp)) = stream.message().await {
                                if let Some(h) = resp.header() {
                                    next_revision = h.revision() + 1;
                                }
                                if resp.compact_revision() > 0 {
                                    // History before our revision is gone: start from now, assume all changed.
                                    next_revision = 0;
                                    on_change(&name);
                                    break;
                                }
                                if !resp.events().is_empty() {
                                    on_change(&name);
                                }
                                if resp.canceled() {
                                    break;
                                }
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, aggregate = %name, "watch failed; retrying"),
                    }
                    // Reconnecting from the next revision replays what happened meanwhile (a compacted one
                    // reports it, above); until etcd answers, callers keep what they cached.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
        }
    }
}

/// Renews the lease every third of its TTL and rewrites the record (heartbeat, load); after an outage that
/// let the lease lapse, takes a new lease and the name again, unless another node took it meanwhile.
async fn hold(
    client: etcd_client::Client,
    record: Arc<Mutex<NodeRecord>>,
    (lease_key, info_key): (String, String),
    held: Arc<AtomicI64>,
    ttl_s: i64,
    requests: Arc<std::sync::atomic::AtomicU64>,
) {
    let period = Duration::from_millis(u64::try_from(ttl_s).unwrap_or(5) * 1000 / 3);
    let mut lost = false;
    let keys = (lease_key.clone(), info_key.clone());
    loop {
        tokio::time::sleep(period).await;
        let lease = held.load(Ordering::Relaxed);
        let now = current_ms();
        let snapshot = {
            let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
            r.heartbeat_ms = now;
            r.etcd_requests = requests.load(std::sync::atomic::Ordering::Relaxed);
            r.clone()
        };
        let Ok(value) = serde_json::to_vec(&snapshot) else { continue };
        let renewed = async {
            let mut leases = client.lease_client();
            let (mut keeper, mut stream) = leases.keep_alive(lease).await?;
            keeper.keep_alive().await?;
            let ttl = stream.message().await?.map_or(0, |r| r.ttl());
            Ok::<_, etcd_client::Error>(ttl)
        };
        let alive = matches!(tokio::time::timeout(period, renewed).await, Ok(Ok(ttl)) if ttl > 0);
        let mut kv = client.kv_client();
        if alive {
            // Still ours: refresh the record (only if the lease still holds the key).
            let txn =
                Txn::new().when(vec![Compare::lease(lease_key.as_str(), CompareOp::Equal, lease)]).and_then(vec![
                    TxnOp::put(lease_key.as_str(), value.clone(), Some(PutOptions::new().with_lease(lease))),
                    TxnOp::put(info_key.as_str(), value.clone(), None),
                ]);
            if let Ok(Ok(r)) = tokio::time::timeout(period, kv.txn(txn)).await {
                if r.succeeded() {
                    if lost {
                        tracing::info!(node = %snapshot.name, "back in the cluster");
                        lost = false;
                    }
                    continue;
                }
            }
        }
        if !lost {
            tracing::warn!(node = %snapshot.name, "lost the cluster lease (etcd unreachable?); rejoining");
            lost = true;
        }
        // Rejoin: a new lease, and the name if it is free or still ours.
        let rejoin = claim(&client, &snapshot, &keys, ttl_s);
        match tokio::time::timeout(period, rejoin).await {
            Ok(Ok(Claim::Taken(granted))) => held.store(granted, Ordering::Relaxed),
            Ok(Ok(Claim::HeldBy(_))) => {
                tracing::error!(node = %snapshot.name, "another node took this node's name; not rejoining");
            }
            _ => {}
        }
    }
}

/// What claiming a node's name came to.
enum Claim {
    /// Ours, under this new lease.
    Taken(i64),
    /// Another live node's.
    HeldBy(Box<NodeRecord>),
    /// Changed between the read and the write: try again.
    Lost,
}

/// Takes `node`'s name under a new lease of `ttl_s` if it is free or still this node's (same `node_id`), writing
/// the record under the lease and the permanent one in one transaction.
async fn claim(
    client: &etcd_client::Client,
    node: &NodeRecord,
    (lease_key, info_key): &(String, String),
    ttl_s: i64,
) -> Result<Claim, etcd_client::Error> {
    let granted = client.lease_client().grant(ttl_s, None).await?.id();
    let mut kv = client.kv_client();
    let held = kv.get(lease_key.as_str(), None).await?;
    let guard = match held.kvs().first() {
        None => Compare::create_revision(lease_key.as_str(), CompareOp::Equal, 0),
        Some(found) => match serde_json::from_slice::<NodeRecord>(found.value()) {
            Ok(h) if h.node_id == node.node_id => {
                Compare::mod_revision(lease_key.as_str(), CompareOp::Equal, found.mod_revision())
            }
            Ok(h) => return Ok(Claim::HeldBy(Box::new(h))),
            Err(e) => {
                return Err(etcd_client::Error::InvalidArgs(format!("the record at {lease_key} is unreadable: {e}")))
            }
        },
    };
    let value = serde_json::to_vec(node).map_err(|e| etcd_client::Error::InvalidArgs(e.to_string()))?;
    let txn = Txn::new().when(vec![guard]).and_then(vec![
        TxnOp::put(lease_key.as_str(), value.clone(), Some(PutOptions::new().with_lease(granted))),
        TxnOp::put(info_key.as_str(), value, None),
    ]);
    Ok(if kv.txn(txn).await?.succeeded() { Claim::Taken(granted) } else { Claim::Lost })
}

fn current_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
