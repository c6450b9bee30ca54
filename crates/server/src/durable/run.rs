//! The loop of one durable execution: invoke its function, wait for what it waits for, invoke again, until it
//! ends.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use serde_json::Value;
use stoke_core::durable::{ErrorObject, InvocationOutput, Next};
use stoke_scheduler::{InvokeError, InvokeRequest, Outcome};
use stoke_store::StoreError;

use super::{lock, now_ms, random_u64, Durable, DurableFailure, Live, Loaded, Result, CLUSTER_LOOK_MS, RETRY_LATER};
use crate::error::Classified;
use crate::invoke::InvokeFailure;
use crate::services::usage;
use stoke_asl::prewarm::{resume_warm, Policy};

impl Durable {
    /// The loop of one execution: invoke, wait for what it waits for, invoke again, until it ends.
    pub(super) async fn run_loop(self: Arc<Self>, live: Arc<Live>) {
        loop {
            match self.step(&live).await {
                Ok(Some(deadline)) => {
                    let sleep = match deadline {
                        Some(at) => Duration::from_millis(u64::try_from((at - now_ms()).max(0)).unwrap_or(0)),
                        None => Duration::from_secs(3600),
                    };
                    tokio::select! {
                        () = tokio::time::sleep(sleep) => {}
                        () = live.wake.notified() => {}
                    }
                }
                Ok(None) => break,
                // Its record is gone (deleted under it): nothing is left to run.
                Err(DurableFailure::NotFound(why)) => {
                    tracing::warn!(execution = %live.id, %why, "a durable execution's record is gone; its loop ends");
                    break;
                }
                Err(e) => {
                    tracing::warn!(execution = %live.id, error = %e, "a durable execution's step failed; trying again");
                    tokio::time::sleep(RETRY_LATER).await;
                }
            }
        }
        live.done.send_replace(true);
        lock(&self.live).remove(&live.id);
    }

    /// This node's copy of `live`, read again when it is behind the store: after a failed write, and in a
    /// cluster whenever another node has written since (a checkpoint or a callback's answer that reached it).
    pub(super) async fn current<'a>(
        &self,
        live: &Live,
        guard: &'a mut tokio::sync::MutexGuard<'_, Option<Loaded>>,
    ) -> Result<&'a mut Loaded> {
        let behind = match guard.as_ref() {
            None => true,
            Some(l) if l.stale => true,
            Some(l) if self.node.is_some() => {
                let (a, i) = (live.account.clone(), live.id.clone());
                let stored = self.blocking(move |s| s.get_durable(&a, &i)).await?;
                stored.is_none_or(|r| r.revision != l.record.revision)
            }
            Some(_) => false,
        };
        if behind {
            let mut reread = self.load(&live.account, &live.id).await?;
            if let Some(old) = guard.take() {
                (reread.invoke_due, reread.retry_at) = (old.invoke_due, old.retry_at);
            }
            **guard = Some(reread);
        }
        Ok(guard.as_mut().unwrap_or_else(|| unreachable!("filled above")))
    }

    /// One turn of the loop: moves timers on, invokes the function when it is due, and says when to look
    /// again (`Some(None)`: when woken), or `None` when the execution has ended.
    async fn step(&self, live: &Arc<Live>) -> Result<Option<Option<i64>>> {
        let (payload, started, reference) = {
            let mut guard = live.state.lock().await;
            let l = self.current(live, &mut guard).await?;
            if !l.x.is_running() || self.moved(live, l) {
                return Ok(None);
            }
            let now = now_ms();
            if l.x.fire_due(now) {
                self.persist(l).await?;
                if !l.x.is_running() {
                    return Ok(None);
                }
            }
            let due = l.invoke_due || l.x.wants_invocation() || l.retry_at.is_some_and(|t| t <= now);
            if !due {
                let deadline = match (l.x.next_deadline(), l.retry_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                self.warm_resume(live, l);
                // In a cluster another node may answer a callback: look at the store now and then.
                let deadline = match self.node {
                    Some(_) => Some(deadline.unwrap_or(i64::MAX).min(now + CLUSTER_LOOK_MS)),
                    None => deadline,
                };
                return Ok(Some(deadline));
            }
            let (_, envelope) = l.x.begin_invocation(random_u64(), now);
            // Written before the function runs: its tokens are never valid again after a restart.
            self.persist(l).await?;
            (l.invoke_due, l.retry_at) = (false, None);
            let reference = format!("{}:{}", l.record.function, l.record.version);
            (Bytes::from(envelope.to_string()), now, reference)
        };
        let req = InvokeRequest { payload, ..Default::default() };
        let ran = self.services.invoker.invoke(&live.account, &reference, req).await;
        let mut guard = live.state.lock().await;
        let (request_id, output, usage) = match ran {
            Ok((result, _)) => {
                let used = serde_json::to_value(usage(&result, &self.services.invoker)).ok();
                (Some(result.request_id.clone()), output_of(result.outcome), used)
            }
            // The function never ran (no room, the platform could not): not the execution's failure.
            Err(e) if retry_later(&e) => (None, InvocationOutput::Pending, None),
            Err(e) => (Some(String::new()), InvocationOutput::Error(refusal(&e)), None),
        };
        // Recorded on what is stored: another node may have applied a checkpoint of this invocation.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let l = self.current(live, &mut guard).await?;
            // Another node took it over meanwhile: it has counted this invocation as lost, and invokes again.
            if self.moved(live, l) {
                return Ok(None);
            }
            let now = now_ms();
            match &request_id {
                None => {
                    l.x.abandon_invocation();
                    l.retry_at = Some(now + i64::try_from(RETRY_LATER.as_millis()).unwrap_or(1000));
                }
                Some(id) => match l.x.end_invocation(id, started, output.clone(), now, usage.clone()) {
                    Next::Done => {}
                    Next::Invoke => l.invoke_due = true,
                    // A failed invocation's retry; the engine's own timers are its next deadline.
                    Next::WaitUntil(t) => l.retry_at = t.filter(|t| Some(*t) != l.x.next_deadline()),
                },
            }
            match self.persist(l).await {
                Ok(()) => break,
                Err(DurableFailure::Store(StoreError::RevisionMismatch(_))) if attempt < 3 => continue,
                Err(e) => return Err(e),
            }
        }
        let l = guard.as_ref().unwrap_or_else(|| unreachable!("filled by current"));
        if !l.x.is_running() {
            return Ok(None);
        }
        Ok(Some(Some(l.retry_at.unwrap_or_else(now_ms))))
    }

    /// Whether another node runs the execution's loop now (it took it over from this one, thought lost).
    fn moved(&self, live: &Live, l: &Loaded) -> bool {
        let moved = self.node.is_some() && l.owner != self.node;
        if moved {
            tracing::warn!(execution = %live.id, node = ?l.owner, "another node took this durable execution over");
        }
        moved
    }

    /// Under the server's pre-warm policy, starts an instance of the function for a resume whose time is
    /// known (a wait's end, a step's retry) just before it, once per resume time; the instance's place in
    /// the pool's demand is taken by the resume's invocation.
    fn warm_resume(&self, live: &Arc<Live>, l: &Loaded) {
        let policy = self.services.default_prewarm;
        let Some(resume) = l.x.next_resume().filter(|_| policy != Policy::Off) else { return };
        if lock(&live.warmed_for).replace(resume) == Some(resume) {
            return;
        }
        let reference = format!("{}:{}", l.record.function, l.record.version);
        let (services, live) = (self.services.clone(), Arc::downgrade(live));
        tokio::spawn(async move {
            let Some(account) = live.upgrade().map(|l| l.account.clone()) else { return };
            let Some(target) = services.invoker.pool_target(&account, &reference).await else { return };
            let init = services.stats.function(target.version_key()).predicted_init_ms();
            let Some(w) = resume_warm(policy, &services.prewarm, now_ms(), resume, init) else { return };
            tokio::time::sleep(Duration::from_millis(u64::try_from(w.at_ms - now_ms()).unwrap_or(0))).await;
            // Ended, or suspended until another time, meanwhile: nothing to warm for.
            let current = live.upgrade().is_some_and(|l| !*l.done.borrow() && *lock(&l.warmed_for) == Some(resume));
            if current {
                let hold = Duration::from_millis(u64::try_from(w.hold_ms).unwrap_or(0));
                services.invoker.announce(&target, 1, hold).await;
            }
        });
    }
}

/// An invocation the platform refused for now is tried again without counting against the execution.
fn retry_later(e: &InvokeFailure) -> bool {
    e.platform_unavailable() || matches!(e, InvokeFailure::Scheduler(InvokeError::Throttled { .. }))
}

/// What an invocation's answer means to the engine: the SDK's output (`{"Status": …}`), or an invocation
/// that failed.
pub(super) fn output_of(outcome: Outcome) -> InvocationOutput {
    match outcome {
        Outcome::Success(body) => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match v.get("Status").and_then(Value::as_str) {
                Some("SUCCEEDED") => {
                    InvocationOutput::Succeeded(v.get("Result").and_then(Value::as_str).map(str::to_string))
                }
                Some("FAILED") => {
                    InvocationOutput::Failed(v.get("Error").and_then(|e| serde_json::from_value(e.clone()).ok()))
                }
                Some("PENDING") => InvocationOutput::Pending,
                _ => InvocationOutput::Error(ErrorObject::new(
                    "Stoke.InvalidDurableOutput",
                    "the function answered something that is not a durable execution's output: a durable function's \
                     handler must be wrapped by the durable execution SDK",
                )),
            }
        }
        Outcome::FunctionError { error_type, body } => InvocationOutput::Error(function_error(&error_type, &body)),
    }
}

/// A function's error answer (`{errorMessage, stackTrace}`) as the API's error: its type, message and trace.
pub(super) fn function_error(error_type: &str, body: &[u8]) -> ErrorObject {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut e = ErrorObject::new(error_type, v["errorMessage"].as_str().unwrap_or(""));
    e.stack_trace =
        v["stackTrace"].as_array().map(|a| a.iter().filter_map(|l| l.as_str().map(str::to_string)).collect());
    e
}

/// A refusal (the function did not run) as an execution records it: Lambda's exception name and the sentence.
pub(super) fn refusal<E: Classified + std::fmt::Display>(e: &E) -> ErrorObject {
    ErrorObject::new(e.class().for_lambda().lambda().1, &e.to_string())
}
