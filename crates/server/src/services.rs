//! What executions run with, workflows' and durable functions': the invoker, the store, the statistics the
//! pre-warmer reads, its policy and the pricing; and what an invocation used, as both record it for timelines
//! and bills.

use std::sync::Arc;

use stoke_asl::prewarm::{self, Policy};
use stoke_store::Store;

use crate::invoke::Invoker;
use crate::stats::Statistics;
use crate::workflows::history::Usage;

/// What every execution runs with, a workflow's or a durable function's.
pub struct Services {
    pub invoker: Arc<Invoker>,
    pub store: Arc<dyn Store>,
    pub region: String,
    pub stats: Arc<Statistics>,
    /// The pre-warm policy of executions whose workflow and start request name none.
    pub default_prewarm: Policy,
    pub prewarm: prewarm::Settings,
    pub pricing: stoke_core::cost::Pricing,
}

/// What an invocation used and where its time went, kept in the history for cost and timelines; in a
/// cluster, with the node whose instance ran it (its queue's owner, a node hosting that queue, or this one).
pub fn usage(result: &stoke_scheduler::InvokeResult, invoker: &Invoker) -> Usage {
    let r = &result.report;
    let whole = |ms: f64| stoke_core::cost::billed_ms(ms);
    let cold = r.init_duration_ms.is_some();
    Usage {
        billed_ms: r.billed_ms,
        memory_mb: r.memory_mb,
        duration_ms: r.duration_ms,
        queued_ms: r.queued_ms,
        init_ms: r.instance_init_ms.map_or(0, whole),
        instance: r.instance,
        cold_start_ms: r.init_duration_ms,
        sandbox_ms: cold.then(|| r.sandbox_ms.unwrap_or(0.0)),
        held_ms: r.held_ms.map(whole),
        prepared: r.held_ms.is_some(),
        node: result.node.clone().or_else(|| invoker.queues().map(|q| q.node().to_string())),
    }
}
