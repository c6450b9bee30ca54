//! Function queues across a cluster (cluster part 2; seed 004's queue per action). Every function version
//! has one queue in the cluster, owned by one node (elected in etcd: `stoke_store::EtcdStore::claim_queue`).
//! A node that receives an invocation of a version whose queue another node owns forwards it there, over
//! pooled keep-alive connections, with the invocation's deadline; the owner's pool controller alone decides
//! how many instances the version gets. Owners are known from a watch, so routing a warm invocation reads
//! no etcd; the first invocation of a version no node owns costs one transaction.
//!
//! The owner answers a forwarded invocation with a stream: `S` as soon as an instance has taken the
//! invocation, then the outcome. So when the owner is lost, the forwarding node knows which case it is in:
//! - not started: the invocation was only queued there, and is queued again at the queue's new owner
//!   (within the lost node's lease TTL and a watch event);
//! - started: whether it finished is unknown; the caller gets a retryable error
//!   ([`InvokeError::NodeLost`]), and it is not run again silently.
//!
//! **Instances on other nodes pull from the owner** (seed 004's container proxy). When the owner's pool
//! controller wants instances its node has no room for, the owner picks a live node with room
//! (`stoke_core::placement`) and asks it to host the version (`POST /internal/v1/queues/host`). That node
//! runs *feeders*: each long-polls the owner for the queue's next invocation
//! (`POST /internal/v1/queues/take`) and runs it on the node's own instances — which still talk only to
//! their own node's Runtime API, under its isolation rules — then posts the outcome back
//! (`POST /internal/v1/queues/done/{id}`). A node keeps one invocation in hand per feeder and no more: its
//! instances never wait for a round trip while work is queued at the owner, and the owner never hands out
//! more than the node asked for. A host whose feeders find no work for [`HOST_IDLE`] stops; the owner asks
//! again while it is short. An invocation a hosting node took and was lost with fails with `node_lost`.
//!
//! **Workflows** follow the queues: a step goes to its version's owner like any invocation, a step's
//! `prepare` reserves the instance at that owner (which may hand the preparation to a host, whose instance
//! then waits for the turn the owner relays), and the pre-warmer announces to the owner, which passes on to
//! its host the instances it has no room for. Only an execution with a scratch directory (files on its node)
//! keeps its steps and preparations on its own node.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine;
use serde::{Deserialize, Serialize};
use stoke_scheduler::{InvokeError, InvokeRequest, InvokeResult, InvokeTarget, Outcome, Report};
use stoke_store::{OwnerChange, QueueName, QueueOwner, StoreError};

use crate::cluster::{Cluster, SECRET_HEADER};

/// The internal route a forwarded invocation goes to.
pub const FORWARD_PATH: &str = "/internal/v1/invoke";
/// Headers of a forwarded invocation (its payload is the body).
pub mod header {
    pub const ACCOUNT: &str = "x-stoke-account";
    pub const REFERENCE: &str = "x-stoke-reference";
    pub const VERSION: &str = "x-stoke-version";
    pub const REQUEST_ID: &str = "x-stoke-request-id";
    pub const CLIENT_CONTEXT: &str = "x-stoke-client-context";
    pub const LOG: &str = "x-stoke-log";
    /// The workflow execution the invocation is a step (or a preparation) of.
    pub const EXECUTION: &str = "x-stoke-execution";
    /// Of a preparation a host takes: the owner's reservation id (its turn is relayed from the owner).
    pub const RESERVATION: &str = "x-stoke-reservation";
}
/// Beyond the function's timeout, how long a forwarded invocation may wait in its owner's queue.
const QUEUE_SLACK: Duration = Duration::from_secs(120);
/// The internal routes of instances on other nodes pulling from a queue's owner.
pub const HOST_PATH: &str = "/internal/v1/queues/host";
pub const TAKE_PATH: &str = "/internal/v1/queues/take";
pub const DONE_PATH: &str = "/internal/v1/queues/done/{id}";
/// How long a feeder's request for work waits at the owner before it is answered empty (204).
pub const TAKE_WAIT: Duration = Duration::from_secs(20);
/// A hosting node stops pulling for a version after finding no work for this long.
pub const HOST_IDLE: Duration = Duration::from_secs(60);
/// How often an owner still short of room asks a host again (hosting is idempotent).
const ASK_AGAIN: Duration = Duration::from_secs(5);
/// How long a node that forwards waits, once a lost owner's queue is free, before it competes for it: the
/// nodes that hosted the queue's instances (warm) go first.
pub const HOST_HEAD_START: Duration = Duration::from_millis(250);
/// How long a host whose owner cannot be reached waits for the owner's lease to lapse.
const LOST_OWNER_WAIT: Duration = Duration::from_secs(60);
/// How long an owner waits after an ask that failed (no node had room, or the one asked did not answer).
const RETRY_ASK: Duration = Duration::from_secs(1);
/// Most feeders one node runs for one version.
pub const MAX_SLOTS: usize = 32;
/// The header naming the node that takes work.
pub const TAKER_HEADER: &str = "x-stoke-taker";
/// The internal routes of workflows across nodes: a step's `prepare`, the
/// pre-warmer's announcements and pool views, and releases of reservations, at the queue's owner; and a
/// host's wait for the turn of a preparation it took.
pub const PREPARE_PATH: &str = "/internal/v1/queues/prepare";
pub const POOL_PATH: &str = "/internal/v1/queues/pool";
pub const ANNOUNCE_PATH: &str = "/internal/v1/queues/announce";
pub const RELEASE_PATH: &str = "/internal/v1/queues/release";
pub const TURN_PATH: &str = "/internal/v1/queues/turn/{id}";
/// Longest a host keeps instances started for an owner's announced invocations ready for them.
pub const HOST_WARM_TTL: Duration = Duration::from_secs(60);
/// How long a host's wait for a preparation's turn waits at the owner before it is answered 204 and asked
/// again.
pub const TURN_WAIT: Duration = Duration::from_secs(20);

/// Where an invocation of a version runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// This node owns the version's queue.
    Local,
    /// Another node does.
    Remote(QueueOwner),
}

/// What forwarding an invocation came to.
#[derive(Debug)]
pub enum Forwarded {
    /// The owner ran it (or refused it, or was lost after it started).
    Done(Box<Result<InvokeResult, InvokeError>>),
    /// The owner could not be reached, or was lost before an instance took the invocation: it did not run,
    /// and may be sent to the queue's next owner.
    NotStarted(String),
}

/// This node's view of who owns each queue, and its forwarding.
pub struct Queues {
    cluster: Arc<Cluster>,
    me: QueueOwner,
    owners: RwLock<HashMap<QueueName, QueueOwner>>,
    /// Moves on with every change the watch reports.
    changes: tokio::sync::watch::Sender<u64>,
    /// Invocations of queues this node owns that other nodes took and run, by request id.
    running: std::sync::Mutex<HashMap<String, (String, stoke_scheduler::Taken)>>,
    /// Versions this node hosts for their owners: how many feeders each wants.
    hosted: std::sync::Mutex<HashMap<QueueName, Arc<Hosted>>>,
    /// What this node, as owner, asked other nodes to host: when, how many feeders, and on which node.
    asked: std::sync::Mutex<HashMap<QueueName, Asked>>,
    /// The other live nodes as the take-over loop last saw them.
    peers: RwLock<Vec<stoke_store::NodeRecord>>,
    /// Set once the invoker exists (the feeders run invocations through it).
    invoker: std::sync::OnceLock<std::sync::Weak<dyn RunHere>>,
}

/// What an owner asks a node to host: feeders pulling one version's queue (`POST` [`HOST_PATH`]).
#[derive(Debug, Serialize, Deserialize)]
pub struct HostRequest {
    #[serde(flatten)]
    pub queue: QueueName,
    /// How the feeders name the function to the owner (`function:version`).
    pub reference: String,
    pub owner: QueueOwner,
    pub slots: usize,
    /// Invocations announced soon (the pre-warmer's): the host starts instances for them ahead.
    #[serde(default)]
    pub warm: usize,
}

/// The pre-warmer's announcement to a queue's owner (`POST` [`ANNOUNCE_PATH`]).
#[derive(Debug, Serialize, Deserialize)]
pub struct Announce {
    pub count: usize,
    pub ttl_ms: u64,
}

/// A release of an execution's reservations at a queue's owner (`POST` [`RELEASE_PATH`]).
#[derive(Debug, Serialize, Deserialize)]
pub struct Release {
    pub execution: String,
    pub why: String,
}

/// What an owner asked other nodes for, for one of its queues.
#[derive(Debug)]
struct Asked {
    /// When it last asked, and whether that ask is still on its way (one at a time per queue).
    last: std::time::Instant,
    in_flight: bool,
    /// When an ask last failed: no other is made for [`RETRY_ASK`] after it.
    failed: Option<std::time::Instant>,
    /// Feeders asked for in all, and the node running them.
    slots: usize,
    on: Option<String>,
    /// Announced invocations the host was last asked to start instances for.
    warm: usize,
}

/// A version this node hosts for its queue's owner.
#[derive(Debug)]
struct Hosted {
    owner: QueueOwner,
    reference: String,
    /// Feeders wanted, and running.
    slots: std::sync::atomic::AtomicUsize,
    feeders: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues").field("node", &self.me.node).finish_non_exhaustive()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The queue `target` runs from.
pub fn queue_name(target: &InvokeTarget) -> QueueName {
    QueueName {
        account: target.account.to_string(),
        function: target.function.to_string(),
        version: target.version.clone(),
    }
}

impl Queues {
    /// Starts following the queues' owners for `cluster`'s node.
    pub fn start(cluster: Arc<Cluster>) -> Arc<Self> {
        let me = QueueOwner { node: cluster.name(), advertise: cluster.advertise() };
        let queues = Arc::new(Self {
            cluster,
            me,
            owners: RwLock::new(HashMap::new()),
            changes: tokio::sync::watch::channel(0).0,
            running: Default::default(),
            hosted: Default::default(),
            asked: Default::default(),
            peers: RwLock::new(Vec::new()),
            invoker: std::sync::OnceLock::new(),
        });
        let weak = Arc::downgrade(&queues);
        queues.cluster.store().watch_queue_owners(Arc::new(move |change| {
            if let Some(q) = weak.upgrade() {
                q.apply(change);
            }
        }));
        queues
    }

    fn apply(&self, change: OwnerChange) {
        {
            let mut owners = write(&self.owners);
            match change {
                OwnerChange::All(all) => *owners = all.into_iter().collect(),
                OwnerChange::Owned(q, o) => {
                    owners.insert(q, o);
                }
                OwnerChange::Released(q) => {
                    owners.remove(&q);
                }
            }
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Moves on whenever a queue's owner changes.
    pub fn changes(&self) -> u64 {
        *self.changes.borrow()
    }

    /// A POST to `path` of the peer at `advertise`, with the cluster secret, on the pooled invocation client.
    fn to_peer(&self, advertise: &str, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", advertise.trim_end_matches('/'));
        self.cluster.invocations().post(url).header(SECRET_HEADER, self.cluster.secret())
    }

    /// A POST to `path` of the peer at `advertise` about one version's queue: its account and version, and
    /// the reference that node resolves it by.
    fn to_queue(
        &self,
        advertise: &str,
        path: &str,
        account: &str,
        reference: &str,
        version: &str,
    ) -> reqwest::RequestBuilder {
        self.to_peer(advertise, path)
            .header(header::ACCOUNT, account)
            .header(header::REFERENCE, reference)
            .header(header::VERSION, version)
    }

    /// A POST to `path` of `owner` about the queue of `target` (named `function:version`).
    fn to_owner(&self, owner: &QueueOwner, path: &str, target: &InvokeTarget) -> reqwest::RequestBuilder {
        let reference = format!("{}:{}", target.function, target.version);
        self.to_queue(&owner.advertise, path, target.account.as_str(), &reference, &target.version)
    }

    /// Tells `owner` something about the queue of `target` that needs no answer (`what` names it in the log
    /// when it does not get there).
    async fn tell_owner<T: Serialize>(
        &self,
        owner: &QueueOwner,
        path: &str,
        target: &InvokeTarget,
        body: &T,
        what: &str,
    ) {
        let sent = self.to_owner(owner, path, target).timeout(Duration::from_secs(5)).json(body).send().await;
        if let Err(e) = sent.and_then(reqwest::Response::error_for_status) {
            tracing::debug!(error = %e, owner = %owner.node, "{what} did not reach the queue's owner");
        }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.me.node
    }

    /// The owner of `name` as this node knows it now.
    pub fn owner_of(&self, name: &QueueName) -> Option<QueueOwner> {
        read(&self.owners).get(name).cloned()
    }

    /// How many queues this node owns.
    pub fn owned_here(&self) -> usize {
        read(&self.owners).values().filter(|o| o.node == self.me.node).count()
    }

    /// Where invocations of `target` run. Known owners are answered from memory; a queue no node owns is
    /// taken by this node (one etcd transaction; another node that took it first is its owner).
    pub async fn route(&self, target: &InvokeTarget) -> Result<Route, StoreError> {
        let name = queue_name(target);
        let known = read(&self.owners).get(&name).cloned();
        let owner = match known {
            Some(owner) => owner,
            None => self.claim(name).await?,
        };
        Ok(if owner.node == self.me.node { Route::Local } else { Route::Remote(owner) })
    }

    async fn claim(&self, name: QueueName) -> Result<QueueOwner, StoreError> {
        let (store, me, lease, queue) =
            (self.cluster.store().clone(), self.me.clone(), self.cluster.lease(), name.clone());
        let owner = tokio::task::spawn_blocking(move || store.claim_queue(&queue, &me, lease))
            .await
            .map_err(|e| StoreError::Unavailable(format!("claiming a queue stopped: {e}")))??;
        if owner.node == self.me.node {
            tracing::debug!(queue = ?name, "this node owns the queue");
        }
        // The watch reports it too; whichever comes first, the entry is the same.
        write(&self.owners).entry(name).or_insert_with(|| owner.clone());
        Ok(owner)
    }

    /// Waits, up to `at_most`, until `owner` no longer owns `name` in this node's view (its lease lapsed).
    pub async fn until_replaced(&self, name: &QueueName, owner: &QueueOwner, at_most: Duration) {
        let mut changes = self.changes.subscribe();
        let _ = tokio::time::timeout(at_most, async {
            while read(&self.owners).get(name) == Some(owner) {
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
    }

    /// Resolves once `owner` has lost `name` for good: the watch says so and etcd agrees (a node whose
    /// view was reset by the watch asks etcd once rather than believe a missing entry).
    async fn lost(&self, name: &QueueName, owner: &QueueOwner) {
        loop {
            self.until_replaced(name, owner, Duration::from_secs(3600)).await;
            match self.claim(name.clone()).await {
                Ok(now) if now == *owner => {
                    write(&self.owners).insert(name.clone(), now);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(_) => return,
                // etcd cannot say now: the owner is not taken for lost on that alone.
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    /// Lets feeders run invocations through `invoker` (set once, at start).
    pub fn run_through(&self, invoker: std::sync::Weak<dyn RunHere>) {
        let _ = self.invoker.set(invoker);
    }

    /// What the take-over loop saw of the nodes: the live ones are placement's candidates; invocations that
    /// a gone node had taken from this node's queues fail with `node_lost` (whether they finished is
    /// unknown, and they are not run again).
    pub fn observe_nodes(&self, nodes: &[stoke_store::NodeStatus]) {
        let live: Vec<stoke_store::NodeRecord> =
            nodes.iter().filter(|n| n.state == "live" && n.node.name != self.me.node).map(|n| n.node.clone()).collect();
        *write(&self.peers) = live;
        let gone: Vec<&str> = nodes.iter().filter(|n| n.state == "gone").map(|n| n.node.name.as_str()).collect();
        if gone.is_empty() {
            return;
        }
        let lost: Vec<(String, stoke_scheduler::Taken)> = {
            let mut running = stoke_core::sync::lock(&self.running);
            let ids: Vec<String> =
                running.iter().filter(|(_, (n, _))| gone.contains(&n.as_str())).map(|(id, _)| id.clone()).collect();
            ids.into_iter().filter_map(|id| running.remove(&id)).collect()
        };
        for (node, taken) in lost {
            taken.finish(Err(InvokeError::NodeLost(format!(
                "node {node}, which ran this invocation for its queue's owner, was lost; it may or may not have \
                 finished, and was not run again: retry it if that is safe"
            ))));
        }
    }

    /// An invocation of a queue this node owns, taken by `node` (which will post its outcome).
    /// Returns the invocation as the taker is to run it, under the id its caller knows it by.
    pub fn taken_by(self: &Arc<Self>, node: &str, taken: stoke_scheduler::Taken) -> InvokeRequest {
        let id = taken.id().to_string();
        let req = InvokeRequest { request_id: Some(id.clone()), started: None, ..taken.request().clone() };
        let timeout = Duration::from_secs(u64::from(taken.timeout_s())) + QUEUE_SLACK;
        stoke_core::sync::lock(&self.running).insert(id.clone(), (node.to_string(), taken));
        // A taker that never reports (and is not seen gone): its caller is not left waiting for ever.
        let (queues, overdue) = (Arc::downgrade(self), id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let Some(q) = queues.upgrade() else { return };
            let left = stoke_core::sync::lock(&q.running).remove(&overdue);
            if let Some((node, taken)) = left {
                taken.finish(Err(InvokeError::NodeLost(format!(
                    "node {node} took this invocation and did not report its outcome in time"
                ))));
            }
        });
        req
    }

    /// The outcome of an invocation another node took; false when none of that id is running.
    pub fn done(&self, id: &str, frame: &[u8]) -> Result<bool, String> {
        let outcome = decode_outcome(frame).ok_or("the outcome is not one stoke sends")?;
        let Some((_, taken)) = stoke_core::sync::lock(&self.running).remove(id) else { return Ok(false) };
        taken.finish(outcome);
        Ok(true)
    }

    /// Hosts `queue` for `owner`: makes sure `slots` feeders pull its invocations (idempotent).
    pub fn host(self: &Arc<Self>, queue: QueueName, reference: String, owner: QueueOwner, slots: usize) -> usize {
        let hosted = {
            let mut all = stoke_core::sync::lock(&self.hosted);
            let entry = all.entry(queue.clone()).or_insert_with(|| {
                Arc::new(Hosted {
                    owner: owner.clone(),
                    reference: reference.clone(),
                    slots: Default::default(),
                    feeders: Default::default(),
                })
            });
            if entry.owner != owner {
                *entry = Arc::new(Hosted { owner, reference, slots: Default::default(), feeders: Default::default() });
            }
            entry.clone()
        };
        let wanted = slots.clamp(1, MAX_SLOTS);
        hosted.slots.fetch_max(wanted, Ordering::Relaxed);
        while hosted.feeders.load(Ordering::Relaxed) < hosted.slots.load(Ordering::Relaxed) {
            hosted.feeders.fetch_add(1, Ordering::Relaxed);
            let (me, queue, hosted) = (self.clone(), queue.clone(), hosted.clone());
            tokio::spawn(async move { me.feed(queue, hosted).await });
        }
        hosted.feeders.load(Ordering::Relaxed)
    }

    /// The versions this node hosts for other owners, with their feeders.
    pub fn hosting(&self) -> usize {
        stoke_core::sync::lock(&self.hosted).values().map(|h| h.feeders.load(Ordering::Relaxed)).sum()
    }

    /// One feeder: pulls `queue`'s invocations from its owner and runs them here, until it finds no work
    /// for [`HOST_IDLE`], the owner stops owning the queue, or the owner cannot be reached.
    async fn feed(self: Arc<Self>, queue: QueueName, hosted: Arc<Hosted>) {
        let owner = hosted.owner.clone();
        let mut idle_since = std::time::Instant::now();
        let mut failures = 0;
        loop {
            if read(&self.owners).get(&queue).is_some_and(|o| *o != owner) || idle_since.elapsed() >= HOST_IDLE {
                break;
            }
            let took = self
                .to_queue(&owner.advertise, TAKE_PATH, &queue.account, &hosted.reference, &queue.version)
                .header(TAKER_HEADER, self.me.node.as_str())
                .timeout(TAKE_WAIT + Duration::from_secs(10))
                .send()
                .await;
            let response = match took {
                Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT => {
                    failures = 0;
                    continue;
                }
                Ok(r) if r.status().is_success() => r,
                Ok(r) => {
                    tracing::debug!(status = %r.status(), queue = ?queue, "the owner refused to hand out work");
                    break;
                }
                Err(e) => {
                    failures += 1;
                    if failures >= 3 {
                        tracing::debug!(error = %e, queue = ?queue, "the queue's owner cannot be reached; stop hosting");
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
            };
            failures = 0;
            idle_since = std::time::Instant::now();
            let headers = response.headers().clone();
            let taken = request_from_headers(&headers, response.bytes().await.unwrap_or_default());
            let id = taken.as_ref().ok().and_then(|r| r.request_id.clone());
            let Some(id) = id else {
                tracing::warn!(owner = %owner.node, "an owner handed out an invocation without its id or with a bad header");
                continue;
            };
            let Some(invoker) = self.invoker.get().and_then(std::sync::Weak::upgrade) else { break };
            // A preparation: its instance here waits for a turn the owner decides, relayed from there.
            let prepared = match (&taken, headers.get(header::RESERVATION).and_then(|v| v.to_str().ok())) {
                (Ok(req), Some(reservation)) => reservation.parse().ok().zip(req.execution.clone()).map(|(r, e)| {
                    let prepared = stoke_scheduler::Prepared::relayed(r, e, req.payload.clone());
                    tokio::spawn(self.clone().relay_turn(owner.clone(), id.clone(), prepared.clone()));
                    prepared
                }),
                _ => None,
            };
            let outcome = match (stoke_core::AccountId::parse(&queue.account), taken) {
                (Ok(account), Ok(req)) => {
                    invoker.run_here(&account, &hosted.reference, &queue.version, req, prepared).await
                }
                (Err(e), _) => Err(InvokeError::Platform(e.message)),
                (_, Err(bad)) => Err(InvokeError::Platform(format!("the owner sent {bad} that is not stoke's"))),
            };
            // No room here after all: the owner queues it again; this feeder waits before taking more.
            let throttled = matches!(outcome, Err(InvokeError::Throttled { .. }));
            let frame = encode_outcome(outcome, &self.me.node);
            for attempt in 0..3 {
                let posted = self
                    .to_peer(&owner.advertise, &DONE_PATH.replace("{id}", &id))
                    .timeout(Duration::from_secs(30))
                    .body(frame.clone())
                    .send()
                    .await;
                match posted {
                    Ok(r) if r.status().is_success() => break,
                    _ if attempt < 2 => tokio::time::sleep(Duration::from_millis(200)).await,
                    _ => tracing::warn!(id, owner = %owner.node, "cannot report an invocation's outcome to its owner"),
                }
            }
            if throttled {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        if hosted.feeders.fetch_sub(1, Ordering::Relaxed) == 1 {
            hosted.slots.store(0, Ordering::Relaxed);
            {
                let mut all = stoke_core::sync::lock(&self.hosted);
                if all.get(&queue).is_some_and(|h| Arc::ptr_eq(h, &hosted)) {
                    all.remove(&queue);
                }
            }
            if failures > 0 {
                self.succeed(queue, owner).await;
            }
        }
    }

    /// Relays the turn of a preparation this node took from `owner` (invocation `id` there) to the
    /// reservation's copy here: the step's input once the owner's execution reaches the step, or why the
    /// reservation was released. Stops when the preparation ends here first.
    async fn relay_turn(self: Arc<Self>, owner: QueueOwner, id: String, prepared: stoke_scheduler::Prepared) {
        let mut failures = 0;
        loop {
            let asked = self
                .to_peer(&owner.advertise, &TURN_PATH.replace("{id}", &id))
                .timeout(TURN_WAIT + Duration::from_secs(10))
                .send();
            let answer = tokio::select! {
                answer = asked => answer,
                _ = prepared.turn() => return,
            };
            let released = match answer {
                Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT => {
                    failures = 0;
                    continue;
                }
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(input) => {
                        prepared.arrive(input);
                        return;
                    }
                    Err(e) => format!("the step's input from node {} was cut short: {e}", owner.node),
                },
                Ok(r) => {
                    let status = r.status();
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    match body["error"]["message"].as_str() {
                        Some(why) if status == reqwest::StatusCode::GONE => why.to_string(),
                        _ => format!(
                            "node {}, which owns the queue, no longer knows this preparation ({status})",
                            owner.node
                        ),
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures < 3 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        continue;
                    }
                    format!("node {}, which owns the queue and decides the turn, cannot be reached: {e}", owner.node)
                }
            };
            prepared.release(&released);
            return;
        }
    }

    /// The reservation of a preparation another node took from this node's queues (invocation `id`).
    pub fn turn_of(&self, id: &str) -> Option<stoke_scheduler::Prepared> {
        stoke_core::sync::lock(&self.running).get(id).and_then(|(_, taken)| taken.prepared())
    }

    /// Prepares `target` for a later step of `execution` at `owner`, its queue's owner, which picks the node
    /// of the instance; returns the reservation's id there.
    pub async fn prepare_at(
        &self,
        owner: &QueueOwner,
        target: &InvokeTarget,
        execution: &str,
        params: Bytes,
    ) -> Result<u64, InvokeError> {
        let answer = self
            .to_owner(owner, PREPARE_PATH, target)
            .header(header::EXECUTION, execution)
            .timeout(Duration::from_secs(10))
            .body(params)
            .send()
            .await
            .map_err(|e| {
                InvokeError::NodeLost(format!("node {}, which owns the queue, did not answer: {e}", owner.node))
            })?;
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        let why = || body["error"]["message"].as_str().unwrap_or("no reason given").to_string();
        match body["reservationId"].as_u64() {
            Some(id) if status.is_success() => Ok(id),
            _ if status == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                Err(InvokeError::Throttled { reason: why(), retry_after_s: 1 })
            }
            _ => Err(InvokeError::Platform(format!(
                "node {}, which owns the queue, did not prepare it: {}",
                owner.node,
                why()
            ))),
        }
    }

    /// `target`'s pool at `owner`, its queue's owner; `None` when it cannot say.
    pub async fn pool_at(&self, owner: &QueueOwner, target: &InvokeTarget) -> Option<stoke_core::pool::PoolSnapshot> {
        let answer = self.to_owner(owner, POOL_PATH, target).timeout(Duration::from_secs(5)).send().await.ok()?;
        if !answer.status().is_success() {
            return None;
        }
        answer.json().await.ok()
    }

    /// Announces `count` invocations of `target` soon to `owner`, its queue's owner (the pre-warmer).
    pub async fn announce_at(&self, owner: &QueueOwner, target: &InvokeTarget, count: usize, ttl: Duration) {
        let body = Announce { count, ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX) };
        self.tell_owner(owner, ANNOUNCE_PATH, target, &body, "the pre-warmer's announcement").await;
    }

    /// Releases `execution`'s open reservations of `target` at `owner`, its queue's owner.
    pub async fn release_at(&self, owner: &QueueOwner, target: &InvokeTarget, execution: &str, why: &str) {
        let body = Release { execution: execution.to_string(), why: why.to_string() };
        // Not released, they expire on their own (the reservation TTL).
        self.tell_owner(owner, RELEASE_PATH, target, &body, "a release of reservations").await;
    }

    /// The owner this node hosted `queue` for cannot be reached: once its lease lapses, this node competes
    /// for the queue at once — its instances of the version are warm, so it is the node to prefer; nodes
    /// that only forward wait [`HOST_HEAD_START`] before they compete.
    async fn succeed(&self, queue: QueueName, owner: QueueOwner) {
        self.until_replaced(&queue, &owner, LOST_OWNER_WAIT).await;
        if read(&self.owners).get(&queue).is_none() {
            match self.claim(queue.clone()).await {
                Ok(now) if now == self.me => tracing::info!(?queue, "took over a queue this node hosted"),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, ?queue, "cannot take over a queue this node hosted"),
            }
        }
    }

    /// The pool of `target` (a queue this node owns) is `instances` short of room, with `queued`
    /// invocations waiting: asks a live node with room to host the version, after reserving the room in
    /// etcd. Instances wanted beyond the queued invocations are for invocations announced soon (the
    /// pre-warmer's): the host is asked to start them ahead too, and asked again when more are announced.
    /// Returns whether a node is (being) asked.
    fn overflow(self: &Arc<Self>, target: &Arc<InvokeTarget>, instances: usize, queued: usize) -> bool {
        let name = queue_name(target);
        if read(&self.owners).get(&name).is_some_and(|o| o.node != self.me.node) || read(&self.peers).is_empty() {
            return false; // hosted here for another owner (that owner decides), or no other node
        }
        let slots = {
            let mut asked = stoke_core::sync::lock(&self.asked);
            let now = std::time::Instant::now();
            let entry = asked.entry(name.clone()).or_insert(Asked {
                last: now - ASK_AGAIN,
                in_flight: false,
                failed: None,
                slots: 0,
                on: None,
                warm: 0,
            });
            let arranged = entry.on.is_some();
            if entry.in_flight {
                return true;
            }
            if entry.failed.is_some_and(|t| now.duration_since(t) < RETRY_ASK) {
                return arranged;
            }
            let stale = now.duration_since(entry.last) >= ASK_AGAIN;
            if instances <= queued {
                entry.warm = 0; // what was announced has arrived (or lapsed)
            }
            let Some(ask) =
                stoke_core::placement::host_ask(entry.slots, entry.warm, instances, queued, MAX_SLOTS, stale)
            else {
                return arranged;
            };
            (entry.last, entry.in_flight, entry.warm) = (now, true, ask.warm);
            ask
        };
        let stoke_core::placement::HostAsk { slots, warm } = slots;
        let (me, target) = (self.clone(), target.clone());
        tokio::spawn(async move {
            let asked = me.ask_to_host(&target, slots, warm).await;
            let mut all = stoke_core::sync::lock(&me.asked);
            let Some(entry) = all.get_mut(&queue_name(&target)) else { return };
            entry.in_flight = false;
            match asked {
                Ok(node) => (entry.slots, entry.on, entry.failed) = (slots, Some(node), None),
                Err(why) => {
                    tracing::warn!(function = %target.function, version = %target.version, %why, "no node took instances to host");
                    entry.failed = Some(std::time::Instant::now());
                }
            }
        });
        true
    }

    /// Picks a node for `slots` feeders of `target` ([`stoke_core::placement::place`]), reserves their room
    /// there in etcd, and asks it to host them.
    async fn ask_to_host(
        self: &Arc<Self>,
        target: &Arc<InvokeTarget>,
        slots: usize,
        warm: usize,
    ) -> Result<String, String> {
        use stoke_core::placement::{lendable, place, Capacity, NodeRoom};
        let name = queue_name(target);
        let peers = read(&self.peers).clone();
        let hosted_on = stoke_core::sync::lock(&self.asked).get(&name).and_then(|a| a.on.clone());
        let store = self.cluster.store().clone();
        let now = crate::registry::now_ms();
        let reserved = tokio::task::spawn_blocking(move || store.reservations(now))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let rooms: Vec<NodeRoom> = peers
            .iter()
            .map(|n| NodeRoom {
                name: n.name.clone(),
                policy: stoke_core::memory::MemoryPolicy { budget_mb: n.budget_mb, overcommit: n.overcommit },
                ledger: stoke_core::memory::Ledger { charged_mb: n.charged_mb, configured_mb: n.configured_mb },
                instances: n.instances,
                gpus: n.gpus,
                reserved: reserved.get(&n.name).copied().unwrap_or_default(),
                hosts_it: hosted_on.as_deref() == Some(n.name.as_str()),
            })
            .collect();
        let each = Capacity { memory_mb: u64::from(target.config.memory_mb), gpus: target.config.gpu_count };
        let charge = u64::from(target.config.memory_mb);
        let pick = place(&rooms, charge, each).ok_or("no live node has room")?;
        let node = &peers[pick];
        let want = stoke_store::Reservation {
            capacity: Capacity {
                memory_mb: each.memory_mb * slots as u64,
                gpus: each.gpus * u32::try_from(slots).unwrap_or(u32::MAX),
            },
            since_ms: now,
            until_ms: now + i64::try_from((HOST_IDLE + ASK_AGAIN).as_millis()).unwrap_or(i64::MAX),
        };
        let (store, node_name, lease) = (self.cluster.store().clone(), node.name.clone(), self.cluster.lease());
        let holder = format!("{}|{}|{}|{}", self.me.node, name.account, name.function, name.version);
        let lends = lendable(&rooms[pick].policy, node.gpus);
        let reserved = tokio::task::spawn_blocking(move || store.reserve(&node_name, &holder, want, lends, lease))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if !reserved {
            return Err(format!("node {}'s room was reserved by other owners meanwhile", node.name));
        }
        let reference = format!("{}:{}", name.function, name.version);
        let body = HostRequest { queue: name, reference, owner: self.me.clone(), slots, warm };
        let answer = self
            .to_peer(&node.advertise, HOST_PATH)
            .timeout(Duration::from_secs(10))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("node {} did not answer: {e}", node.name))?;
        if !answer.status().is_success() {
            return Err(format!("node {} refused: {}", node.name, answer.status()));
        }
        tracing::debug!(node = %node.name, function = %target.function, slots, "a node hosts instances of a queue owned here");
        Ok(node.name.clone())
    }

    /// Forwards an invocation of `target` (as `reference` named it) to `owner`, and waits for its outcome.
    pub async fn forward(
        &self,
        owner: &QueueOwner,
        target: &InvokeTarget,
        reference: &str,
        req: &InvokeRequest,
    ) -> Forwarded {
        let call = self
            .to_queue(&owner.advertise, FORWARD_PATH, target.account.as_str(), reference, &target.version)
            .timeout(Duration::from_secs(u64::from(target.config.timeout_s)) + QUEUE_SLACK)
            .headers(request_headers(req))
            .body(req.payload.clone());
        let name = queue_name(target);
        let lost = self.lost(&name, owner);
        tokio::pin!(lost);
        let mut response = tokio::select! {
            sent = call.send() => match sent {
                Ok(r) => r,
                Err(e) => return Forwarded::NotStarted(format!("node {} did not take it: {e}", owner.node)),
            },
            () = &mut lost => return Forwarded::NotStarted(format!("node {} was lost", owner.node)),
        };
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Forwarded::Done(Box::new(Err(InvokeError::Platform(format!(
                "node {} refused an invocation forwarded to it ({status}): {body}",
                owner.node
            )))));
        }
        let mut frame = Vec::new();
        let mut started = false;
        let gone = |started: bool, why: String| {
            if started {
                Forwarded::Done(Box::new(Err(InvokeError::NodeLost(format!(
                    "node {} was running this invocation and was lost ({why}); it may or may not have finished, \
                     and was not run again: retry it if that is safe",
                    owner.node
                )))))
            } else {
                Forwarded::NotStarted(format!("node {} was lost before the invocation started: {why}", owner.node))
            }
        };
        loop {
            let chunk = tokio::select! {
                c = response.chunk() => c,
                () = &mut lost => return gone(started, "its lease lapsed".into()),
            };
            match chunk {
                Ok(Some(bytes)) => {
                    frame.extend_from_slice(&bytes);
                    if !started && frame.first() == Some(&STARTED) {
                        started = true;
                        frame.remove(0);
                    }
                }
                Ok(None) => break,
                Err(e) => return gone(started, e.to_string()),
            }
        }
        match decode_outcome(&frame) {
            Some(outcome) => Forwarded::Done(Box::new(outcome)),
            None => gone(started, "its answer was cut short".into()),
        }
    }
}

/// Runs an invocation of a version on this node's own instances, whoever owns its queue (the invoke
/// service does; feeders of a hosted queue call it).
pub trait RunHere: Send + Sync {
    fn run_here<'a>(
        &'a self,
        account: &'a stoke_core::AccountId,
        reference: &'a str,
        version: &'a str,
        req: InvokeRequest,
        prepared: Option<stoke_scheduler::Prepared>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<InvokeResult, InvokeError>> + Send + 'a>>;
}

/// An invocation's request id, client context (base64) and wish for its log, as the headers a node sends
/// another with its payload (forwarding it to the owner, or handing it to a host).
pub fn request_headers(req: &InvokeRequest) -> axum::http::HeaderMap {
    let mut out = axum::http::HeaderMap::new();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = axum::http::HeaderValue::from_str(value) {
            out.insert(name, v);
        }
    };
    if let Some(id) = &req.request_id {
        set(header::REQUEST_ID, id);
    }
    if let Some(cc) = &req.client_context {
        set(header::CLIENT_CONTEXT, &base64::engine::general_purpose::STANDARD.encode(cc));
    }
    if req.want_log {
        set(header::LOG, "1");
    }
    if let Some(execution) = &req.execution {
        set(header::EXECUTION, execution);
    }
    out
}

/// The invocation [`request_headers`] and `payload` carry; `Err` names the header that is not what stoke
/// sends.
pub fn request_from_headers(headers: &axum::http::HeaderMap, payload: Bytes) -> Result<InvokeRequest, &'static str> {
    let text = |name: &'static str| headers.get(name).map(|v| v.to_str().map_err(|_| name)).transpose();
    let client_context = text(header::CLIENT_CONTEXT)?
        .map(|b64| {
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| header::CLIENT_CONTEXT)?;
            String::from_utf8(raw).map_err(|_| header::CLIENT_CONTEXT)
        })
        .transpose()?;
    Ok(InvokeRequest {
        payload,
        client_context,
        want_log: text(header::LOG)?.is_some(),
        request_id: text(header::REQUEST_ID)?.map(str::to_string),
        execution: text(header::EXECUTION)?.map(Arc::from),
        ..Default::default()
    })
}

/// The first byte of a forwarded invocation's answer once an instance took it.
pub const STARTED: u8 = b'S';
const RESULT: u8 = b'R';
const ERROR: u8 = b'E';

/// A finished invocation's report and log, as the owner sends it back (the body follows it).
#[derive(Debug, Serialize, Deserialize)]
struct Finished {
    request_id: String,
    /// The function's error type; none when it succeeded.
    error_type: Option<String>,
    report: Report,
    log: Vec<String>,
    node: String,
    /// The body's length: an answer cut short is never taken for a shorter body.
    body_len: usize,
}

/// Why it did not run, as the owner sends it back.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Refused {
    Throttled { reason: String, retry_after_s: u64 },
    Platform { message: String },
    NoSpace { message: String },
    NodeLost { message: String },
}

/// The last frame of a forwarded invocation's answer: `R`, the length of the report's JSON (4 bytes, big
/// endian), the report, the body; or `E` and why it did not run.
pub fn encode_outcome(outcome: Result<InvokeResult, InvokeError>, node: &str) -> Bytes {
    match outcome {
        Ok(r) => {
            let (error_type, body) = match r.outcome {
                Outcome::Success(body) => (None, body),
                Outcome::FunctionError { error_type, body } => (Some(error_type), body),
            };
            let meta = Finished {
                request_id: r.request_id,
                error_type,
                report: r.report,
                log: r.log,
                // Run on another node for this one (its queue's owner): that node's name.
                node: r.node.unwrap_or_else(|| node.into()),
                body_len: body.len(),
            };
            let meta = serde_json::to_vec(&meta).unwrap_or_default();
            let mut out = Vec::with_capacity(5 + meta.len() + body.len());
            out.push(RESULT);
            out.extend_from_slice(&u32::try_from(meta.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(&meta);
            out.extend_from_slice(&body);
            Bytes::from(out)
        }
        Err(e) => {
            let refused = match e {
                InvokeError::Throttled { reason, retry_after_s } => Refused::Throttled { reason, retry_after_s },
                InvokeError::Platform(message) => Refused::Platform { message },
                InvokeError::NoSpace(message) => Refused::NoSpace { message },
                InvokeError::NodeLost(message) => Refused::NodeLost { message },
            };
            let mut out = vec![ERROR];
            out.extend(serde_json::to_vec(&refused).unwrap_or_default());
            Bytes::from(out)
        }
    }
}

/// Reads [`encode_outcome`]'s frame back; `None` when it is incomplete or not one.
fn decode_outcome(frame: &[u8]) -> Option<Result<InvokeResult, InvokeError>> {
    match frame.split_first()? {
        (&RESULT, rest) => {
            let len = usize::try_from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
            let meta: Finished = serde_json::from_slice(rest.get(4..4 + len)?).ok()?;
            let body = &rest[4 + len..];
            if body.len() != meta.body_len {
                return None;
            }
            let body = Bytes::copy_from_slice(body);
            let outcome = match meta.error_type {
                None => Outcome::Success(body),
                Some(error_type) => Outcome::FunctionError { error_type, body },
            };
            Some(Ok(InvokeResult {
                request_id: meta.request_id,
                outcome,
                report: meta.report,
                log: meta.log,
                node: Some(meta.node),
            }))
        }
        (&ERROR, rest) => Some(Err(match serde_json::from_slice(rest).ok()? {
            Refused::Throttled { reason, retry_after_s } => InvokeError::Throttled { reason, retry_after_s },
            Refused::Platform { message } => InvokeError::Platform(message),
            Refused::NoSpace { message } => InvokeError::NoSpace(message),
            Refused::NodeLost { message } => InvokeError::NodeLost(message),
        })),
        _ => None,
    }
}

/// The scheduler's overflow: a pool of a queue this node owns that its memory has no room for gets
/// instances on other nodes.
pub struct Overflow(pub std::sync::Weak<Queues>);

impl stoke_scheduler::Overflow for Overflow {
    fn short(&self, target: &Arc<InvokeTarget>, instances: usize, queued: usize) -> bool {
        self.0.upgrade().is_some_and(|q| q.overflow(target, instances, queued))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            duration_ms: 1.5,
            billed_ms: 2,
            memory_mb: 128,
            max_memory_used_mb: 40,
            init_duration_ms: Some(80.0),
            instance: 7,
            queued_ms: 0.2,
            sandbox_ms: None,
            instance_init_ms: Some(80.0),
            held_ms: None,
            max_gpu_memory_used_mb: Some(512),
        }
    }

    #[test]
    fn an_outcome_reads_back_as_it_was_sent_with_the_node_that_ran_it() {
        let ran = InvokeResult {
            request_id: "r1".into(),
            outcome: Outcome::FunctionError { error_type: "Boom".into(), body: Bytes::from_static(b"\x00{\"x\":1}") },
            report: report(),
            log: vec!["START".into(), "REPORT".into()],
            node: None,
        };
        let frame = encode_outcome(Ok(ran.clone()), "node-1");
        let back = decode_outcome(&frame).unwrap().unwrap();
        assert_eq!((back.request_id.as_str(), &back.outcome, &back.report), ("r1", &ran.outcome, &ran.report));
        assert_eq!((&back.log, back.node.as_deref()), (&ran.log, Some("node-1")));
        let ok = encode_outcome(
            Ok(InvokeResult { outcome: Outcome::Success(Bytes::new()), log: vec![], ..back.clone() }),
            "n",
        );
        assert_eq!(decode_outcome(&ok).unwrap().unwrap().outcome, Outcome::Success(Bytes::new()));
        // Cut short anywhere, it is not mistaken for an outcome.
        for cut in 0..frame.len() {
            assert!(decode_outcome(&frame[..cut]).is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn an_invocation_reads_back_from_the_headers_it_travels_in() {
        let req = InvokeRequest {
            payload: Bytes::from_static(b"{}"),
            client_context: Some("{\"custom\":{\"ü\":1}}".into()),
            want_log: true,
            request_id: Some("r-1".into()),
            execution: Some(Arc::from("exec-1")),
            ..Default::default()
        };
        let back = request_from_headers(&request_headers(&req), req.payload.clone()).unwrap();
        assert_eq!(
            (&back.client_context, back.want_log, &back.request_id, &back.execution),
            (&req.client_context, true, &req.request_id, &req.execution)
        );
        let bare = request_from_headers(&request_headers(&InvokeRequest::default()), Bytes::new()).unwrap();
        assert_eq!((bare.client_context, bare.want_log, bare.request_id, bare.execution), (None, false, None, None));
        let mut bad = request_headers(&req);
        bad.insert(header::CLIENT_CONTEXT, axum::http::HeaderValue::from_static("not base64!"));
        assert_eq!(request_from_headers(&bad, Bytes::new()).unwrap_err(), header::CLIENT_CONTEXT);
    }

    #[test]
    fn why_an_invocation_did_not_run_keeps_its_kind() {
        for e in [
            InvokeError::Throttled { reason: "limit".into(), retry_after_s: 3 },
            InvokeError::Platform("p".into()),
            InvokeError::NoSpace("full".into()),
            InvokeError::NodeLost("gone".into()),
        ] {
            let back = decode_outcome(&encode_outcome(Err(e.clone()), "n")).unwrap().unwrap_err();
            assert_eq!(format!("{back:?}"), format!("{e:?}"));
        }
        assert!(decode_outcome(b"Xjunk").is_none());
        assert!(decode_outcome(b"E{not json").is_none());
    }
}
