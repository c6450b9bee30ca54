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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
}
/// Beyond the function's timeout, how long a forwarded invocation may wait in its owner's queue.
const QUEUE_SLACK: Duration = Duration::from_secs(120);

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
    forwarded: AtomicU64,
    served_for_peers: AtomicU64,
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
            forwarded: AtomicU64::new(0),
            served_for_peers: AtomicU64::new(0),
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

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.me.node
    }

    /// How many queues this node owns.
    pub fn owned_here(&self) -> usize {
        read(&self.owners).values().filter(|o| o.node == self.me.node).count()
    }

    /// Invocations this node forwarded to other owners, and ran for other nodes, so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.forwarded.load(Ordering::Relaxed), self.served_for_peers.load(Ordering::Relaxed))
    }

    /// Counts an invocation run here for another node.
    pub fn served_one(&self) {
        self.served_for_peers.fetch_add(1, Ordering::Relaxed);
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
                _ => return,
            }
        }
    }

    /// Forwards an invocation of `target` (as `reference` named it) to `owner`, and waits for its outcome.
    pub async fn forward(
        &self,
        owner: &QueueOwner,
        target: &InvokeTarget,
        reference: &str,
        req: &InvokeRequest,
    ) -> Forwarded {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        let mut call = self
            .cluster
            .invocations()
            .post(format!("{}{FORWARD_PATH}", owner.advertise.trim_end_matches('/')))
            .header(SECRET_HEADER, self.cluster.secret())
            .header(header::ACCOUNT, target.account.as_str())
            .header(header::REFERENCE, reference)
            .header(header::VERSION, target.version.as_str())
            .timeout(Duration::from_secs(u64::from(target.config.timeout_s)) + QUEUE_SLACK)
            .body(req.payload.clone());
        if let Some(id) = &req.request_id {
            call = call.header(header::REQUEST_ID, id.as_str());
        }
        if let Some(cc) = &req.client_context {
            call = call.header(header::CLIENT_CONTEXT, base64::engine::general_purpose::STANDARD.encode(cc));
        }
        if req.want_log {
            call = call.header(header::LOG, "1");
        }
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
                node: node.into(),
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
