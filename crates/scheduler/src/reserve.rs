//! Reservations (seed 000's `Prepare`): a step of a workflow execution reserves an instance of the function
//! a later step of the same execution will run, and starts it with preparation parameters. The reserved
//! instance runs a *preparation invocation*: its handler reads the parameters (`prepared_params`), does its
//! own preparation (e.g. downloads its input), then waits for its turn (`wait_turn`), which hands it the
//! step's input when the execution reaches the step. Its response is the step's result.
//!
//! The reserved instance is busy with its preparation invocation from the start, so no other invocation
//! (of another execution, or of no execution at all) is ever given to it. A reservation ends in exactly one
//! of two ways, decided under one lock: its turn arrives, or it is released (it expired, the execution
//! took another branch or ended, or the instance answered or failed before its turn).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use tokio::sync::{oneshot, watch};

use crate::{lock, InvokeResult};

/// Where a reservation stands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Turn {
    /// Prepared (or preparing); the execution has not reached the step yet.
    Waiting,
    /// The step's input, and when it arrived.
    Arrived(Bytes, Instant),
    /// Released, and why: the instance's `wait_turn` fails with this sentence.
    Released(String),
}

/// One reserved instance's place in an execution.
pub(crate) struct Reservation {
    pub id: u64,
    pub execution: Arc<str>,
    /// The queue key of the function version reserved.
    pub key: String,
    pub params: Bytes,
    turn: watch::Sender<Turn>,
    /// The preparation invocation's result: the step's result once its turn has come.
    result: Mutex<Option<oneshot::Receiver<InvokeResult>>>,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("id", &self.id)
            .field("execution", &self.execution)
            .field("turn", &self.turn())
            .finish_non_exhaustive()
    }
}

impl Reservation {
    pub fn new(
        id: u64,
        execution: Arc<str>,
        key: String,
        params: Bytes,
        result: oneshot::Receiver<InvokeResult>,
    ) -> Self {
        Self { id, execution, key, params, turn: watch::Sender::new(Turn::Waiting), result: Mutex::new(Some(result)) }
    }

    /// A copy of another node's reservation `id`, for a preparation run here: its turn is relayed, and its
    /// result goes back to that node with the preparation's. It is in no [`Reservations`] (no step here
    /// looks for it).
    pub fn relayed(id: u64, execution: Arc<str>, params: Bytes) -> Self {
        let (turn, result) = (watch::Sender::new(Turn::Waiting), Mutex::new(None));
        Self { id, execution, key: String::new(), params, turn, result }
    }

    pub fn turn(&self) -> Turn {
        self.turn.borrow().clone()
    }

    /// Gives the step's input, arrived `now`, to the reserved instance; false when the reservation was released
    /// first.
    pub fn arrive(&self, payload: Bytes, now: Instant) -> bool {
        self.turn.send_if_modified(|t| {
            let waiting = *t == Turn::Waiting;
            if waiting {
                *t = Turn::Arrived(payload, now);
            }
            waiting
        })
    }

    /// Releases the reservation unless its turn came already; true when this call released it.
    pub fn release(&self, why: &str) -> bool {
        self.turn.send_if_modified(|t| {
            let waiting = *t == Turn::Waiting;
            if waiting {
                *t = Turn::Released(why.to_string());
            }
            waiting
        })
    }

    /// Waits until the turn comes (the step's input) or the reservation is released (why).
    pub async fn wait_turn(&self) -> Result<Bytes, String> {
        let mut rx = self.turn.subscribe();
        let seen = rx.wait_for(|t| *t != Turn::Waiting).await.map(|t| t.clone());
        match seen {
            Ok(Turn::Arrived(payload, _)) => Ok(payload),
            Ok(Turn::Released(why)) => Err(why),
            Ok(Turn::Waiting) | Err(_) => Err("the reservation is gone".into()),
        }
    }

    /// When the turn came, if it did.
    pub fn arrived_at(&self) -> Option<Instant> {
        match &*self.turn.borrow() {
            Turn::Arrived(_, at) => Some(*at),
            _ => None,
        }
    }

    /// The receiver of the preparation invocation's result (once).
    pub fn take_result(&self) -> Option<oneshot::Receiver<InvokeResult>> {
        lock(&self.result).take()
    }
}

/// Reservations not yet used or released, by execution and function version (oldest first: a Map whose
/// iterations were prepared one by one uses them in order).
#[derive(Default)]
pub(crate) struct Reservations {
    open: Mutex<HashMap<Arc<str>, ByFunction>>,
}

/// One execution's reservations, by function version.
type ByFunction = HashMap<String, VecDeque<Arc<Reservation>>>;

impl Reservations {
    pub fn add(&self, r: Arc<Reservation>) {
        lock(&self.open).entry(r.execution.clone()).or_default().entry(r.key.clone()).or_default().push_back(r);
    }

    /// Takes the oldest open reservation of `key` for `execution` and gives it its turn, arrived `now`.
    pub fn take_turn(&self, execution: &str, key: &str, payload: &Bytes, now: Instant) -> Option<Arc<Reservation>> {
        let mut open = lock(&self.open);
        let by_key = open.get_mut(execution)?;
        let queue = by_key.get_mut(key)?;
        let mut found = None;
        while let Some(r) = queue.pop_front() {
            if r.arrive(payload.clone(), now) {
                found = Some(r);
                break;
            }
        }
        if queue.is_empty() {
            by_key.remove(key);
        }
        if by_key.is_empty() {
            open.remove(execution);
        }
        found
    }

    /// Releases an execution's open reservations — all of them, or those of the given function versions —
    /// and returns how many were released.
    pub fn release(&self, execution: &str, keys: Option<&[String]>, why: &str) -> usize {
        let released: Vec<Arc<Reservation>> = {
            let mut open = lock(&self.open);
            let Some(by_key) = open.get_mut(execution) else { return 0 };
            let wanted: Vec<String> = match keys {
                Some(k) => k.iter().filter(|k| by_key.contains_key(*k)).cloned().collect(),
                None => by_key.keys().cloned().collect(),
            };
            let out = wanted.iter().filter_map(|k| by_key.remove(k)).flatten().collect();
            if by_key.is_empty() {
                open.remove(execution);
            }
            out
        };
        released.iter().filter(|r| r.release(why)).count()
    }

    /// Open reservations of an execution (released ones are forgotten when the execution's next turn or
    /// its end comes).
    pub fn count(&self, execution: &str) -> usize {
        let open = lock(&self.open);
        let Some(by_key) = open.get(execution) else { return 0 };
        by_key.values().flatten().filter(|r| r.turn() == Turn::Waiting).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reservation(id: u64, execution: &str, key: &str) -> (Arc<Reservation>, oneshot::Sender<InvokeResult>) {
        let (tx, rx) = oneshot::channel();
        (Arc::new(Reservation::new(id, Arc::from(execution), key.into(), Bytes::from_static(b"{}"), rx)), tx)
    }

    #[test]
    fn a_turn_and_a_release_exclude_each_other() {
        let (r, _tx) = reservation(1, "e1", "f");
        assert!(r.arrive(Bytes::from_static(b"[1]"), Instant::now()));
        assert!(!r.release("too late"), "a reservation whose turn came cannot be released");
        assert!(r.arrived_at().is_some());
        let (r, _tx) = reservation(2, "e1", "f");
        assert!(r.release("expired"));
        assert!(!r.arrive(Bytes::from_static(b"[1]"), Instant::now()), "a released reservation takes no turn");
        assert_eq!(r.turn(), Turn::Released("expired".into()));
    }

    #[test]
    fn turns_go_to_the_same_execution_and_function_oldest_first() {
        let rs = Reservations::default();
        let (a, _ta) = reservation(1, "e1", "f");
        let (b, _tb) = reservation(2, "e1", "f");
        let (c, _tc) = reservation(3, "e2", "f");
        for r in [&a, &b, &c] {
            rs.add(r.clone());
        }
        let payload = Bytes::from_static(b"{\"x\":1}");
        assert!(rs.take_turn("e1", "g", &payload, Instant::now()).is_none(), "another function");
        assert!(rs.take_turn("e3", "f", &payload, Instant::now()).is_none(), "another execution");
        assert_eq!(rs.take_turn("e1", "f", &payload, Instant::now()).map(|r| r.id), Some(1));
        // A reservation released meanwhile is skipped.
        b.release("expired");
        assert!(rs.take_turn("e1", "f", &payload, Instant::now()).is_none());
        assert_eq!(rs.count("e1"), 0);
        assert_eq!(rs.count("e2"), 1);
    }

    #[test]
    fn releasing_by_function_or_execution() {
        let rs = Reservations::default();
        let (a, _ta) = reservation(1, "e1", "f");
        let (b, _tb) = reservation(2, "e1", "g");
        rs.add(a.clone());
        rs.add(b.clone());
        assert_eq!(rs.release("e1", Some(&["g".to_string(), "h".to_string()]), "another branch"), 1);
        assert_eq!(b.turn(), Turn::Released("another branch".into()));
        assert_eq!(a.turn(), Turn::Waiting);
        assert_eq!(rs.release("e1", None, "the execution ended"), 1);
        assert_eq!(rs.count("e1"), 0);
        assert_eq!(rs.release("e1", None, "again"), 0);
    }

    #[tokio::test]
    async fn wait_turn_returns_the_input_or_why_not() {
        let (r, _tx) = reservation(1, "e1", "f");
        let waiter = {
            let r = r.clone();
            tokio::spawn(async move { r.wait_turn().await })
        };
        tokio::task::yield_now().await;
        r.arrive(Bytes::from_static(b"\"go\""), Instant::now());
        assert_eq!(waiter.await.expect("joined"), Ok(Bytes::from_static(b"\"go\"")));
        let (r, _tx) = reservation(2, "e1", "f");
        r.release("the execution took another branch");
        assert_eq!(r.wait_turn().await, Err("the execution took another branch".to_string()));
    }
}
