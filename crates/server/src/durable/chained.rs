//! Chained invokes (`context.invoke`): an execution calls another function and waits for it. A durable
//! function's call starts an execution of it, named after its caller and the operation so that taking the
//! call on again after a restart reaches the same execution; any other function is invoked, and its answer
//! is the result.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use stoke_core::durable::{ErrorObject, OperationAction, OperationType, OperationUpdate};
use stoke_core::AccountId;
use stoke_scheduler::{InvokeRequest, Outcome};

use super::run::{function_error, refusal};
use super::{lock, Durable, Live};
use crate::accounts::Scope;

/// A chained invoke the service takes on: what it calls, and what its start event records.
#[derive(Debug, Clone)]
pub(super) struct Call {
    pub op_id: String,
    pub function: String,
    pub payload: Option<String>,
    pub executed_version: String,
    /// The execution it starts, when the function is durable.
    pub execution_arn: Option<String>,
}

/// The name and id of the execution a chained invoke of a durable function starts: derived from the calling
/// execution and the operation.
fn chained_execution(parent_id: &str, op_id: &str) -> (String, String) {
    let hex = stoke_store::sha256_hex(format!("{parent_id}/{op_id}").as_bytes());
    let id = format!("{}-{}-{}-{}-{}", &hex[32..40], &hex[40..44], &hex[44..48], &hex[48..52], &hex[52..64]);
    (format!("chained-{}", &hex[..32]), id)
}

impl Durable {
    /// The chained invokes `updates` start, each with the function it calls resolved (a function that does
    /// not resolve is still started: its call then fails with the reason).
    pub(super) async fn chained_calls(&self, account: &AccountId, id: &str, updates: &[OperationUpdate]) -> Vec<Call> {
        let mut calls = Vec::new();
        for u in updates {
            if u.kind != OperationType::ChainedInvoke || u.action != OperationAction::Start {
                continue;
            }
            let function = u.chained_invoke_options.as_ref().map(|o| o.function_name.clone()).unwrap_or_default();
            calls.push(self.resolve_call(account, id, &u.id, function, u.payload.clone()).await);
        }
        calls
    }

    async fn resolve_call(
        &self,
        account: &AccountId,
        id: &str,
        op_id: &str,
        function: String,
        payload: Option<String>,
    ) -> Call {
        let (executed_version, execution_arn) = match self.services.invoker.check(account, &function).await {
            Ok(target) => {
                let arn = target.config.durable.map(|_| {
                    let (name, child) = chained_execution(id, op_id);
                    let function_arn = stoke_core::reference::function_arn(
                        &self.services.region,
                        &target.account,
                        &target.function,
                        Some(&target.version),
                    );
                    stoke_core::durable::execution_arn(&function_arn, &name, &child)
                });
                (target.version.clone(), arn)
            }
            Err(_) => (String::new(), None),
        };
        Call { op_id: op_id.to_string(), function, payload, executed_version, execution_arn }
    }

    /// Takes on the chained invokes `live` had started and not ended (after a restart).
    pub(super) async fn resume_chained(&self, live: &Arc<Live>) {
        let pending = {
            let guard = live.state.lock().await;
            guard.as_ref().map(|l| l.x.chained_invokes()).unwrap_or_default()
        };
        for (op_id, function, payload) in pending {
            let call = self.resolve_call(&live.account, &live.id, &op_id, function, payload).await;
            self.dispatch(&live.account, &live.id, call);
        }
    }

    /// Runs `call` of execution `id` off the caller's path, then records how it ended and wakes the execution.
    pub(super) fn dispatch(&self, account: &AccountId, id: &str, call: Call) {
        if !lock(&self.chained).insert((id.to_string(), call.op_id.clone())) {
            return; // under way already
        }
        let Some(me) = self.me.upgrade() else { return };
        let (account, id) = (account.clone(), id.to_string());
        tokio::spawn(async move {
            let outcome = me.call(&account, &id, &call).await;
            let key = (id.clone(), call.op_id.clone());
            // An answer faster than its caller waits for the caller to suspend (or change something), so
            // the history keeps AWS's order: checked every few milliseconds, writing nothing meanwhile.
            let mut pause = Duration::from_millis(2);
            while me.peek(&account, &id, |l| l.x.holds_chained_end(&call.op_id)).await.unwrap_or(false) {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            loop {
                let ended = me
                    .change(&account, &id, &Scope::Account, |l, now| {
                        let invoke = l.x.end_chained_invoke(&call.op_id, outcome.clone(), now)?;
                        l.invoke_due |= invoke;
                        Ok(invoke)
                    })
                    .await;
                match ended {
                    Ok((invoke, live)) => {
                        if invoke {
                            me.wake(&live).await;
                        }
                        break;
                    }
                    Err(e) if crate::error::Classified::class(&e).kind.retryable() => {
                        tracing::warn!(execution = %id, error = %e, "cannot record a chained invoke's end yet");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        tracing::warn!(execution = %id, error = %e, "a chained invoke's end was not recorded");
                        break;
                    }
                }
            }
            lock(&me.chained).remove(&key);
        });
    }

    /// Calls the function: its result, or its error as the calling execution sees it.
    async fn call(&self, account: &AccountId, id: &str, call: &Call) -> Result<Option<String>, ErrorObject> {
        let target = match self.services.invoker.check(account, &call.function).await {
            Ok(t) => t,
            Err(e) => return Err(refusal(&e)),
        };
        let payload = Bytes::from(call.payload.clone().unwrap_or_else(|| "null".into()));
        if target.config.durable.is_some() {
            let (name, child) = chained_execution(id, &call.op_id);
            let started = match self.start_as(&target, Some(&name), child, &payload).await {
                Ok(s) => s,
                Err(e) => return Err(refusal(&e)),
            };
            let record = loop {
                match self.wait(&target.account, &started.id, Duration::from_secs(3600)).await {
                    Ok(r) if r.status != "RUNNING" => break r,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(execution = %started.id, error = %e, "cannot read a chained execution; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            let (result, error) = self.outcome(&record);
            return match record.status.as_str() {
                "SUCCEEDED" => Ok(result),
                status => Err(error.unwrap_or_else(|| {
                    ErrorObject::new(&format!("Execution.{status}"), "the invoked durable execution did not succeed")
                })),
            };
        }
        let reference = format!("{}:{}", target.function, target.version);
        match self.services.invoker.invoke(account, &reference, InvokeRequest { payload, ..Default::default() }).await {
            Ok((result, _)) => match result.outcome {
                Outcome::Success(body) => Ok(Some(String::from_utf8_lossy(&body).into_owned())),
                Outcome::FunctionError { error_type, body } => Err(function_error(&error_type, &body)),
            },
            Err(e) => Err(refusal(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::chained_execution;

    #[test]
    fn a_chained_execution_is_named_after_its_caller_and_operation_within_the_apis_patterns() {
        let (name, id) = chained_execution("0d4f-parent", "op-1");
        assert_eq!((name.clone(), id.clone()), chained_execution("0d4f-parent", "op-1"), "the same call, the same one");
        assert_ne!(name, chained_execution("0d4f-parent", "op-2").0);
        assert_ne!(name, chained_execution("other", "op-1").0);
        assert!(name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{name}");
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.matches('-').count(), 4, "{id}");
    }
}
