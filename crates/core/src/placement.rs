//! Where a queue's owner places instances its own node has no room for (cluster mode; seed 004: the
//! scheduler decides where containers go, and reserves the node's resources before it creates one).
//!
//! - [`place`] picks the node: one whose memory admits the instance (by the same rule a node admits its own
//!   instances, [`crate::memory::admit`]) and whose lendable room, less what other owners reserved there,
//!   holds it; among those the node that already hosts the version (its code is on disk, its instances may
//!   be warm), then the one with the most memory free, then the fewest instances, then by name.
//! - [`fits_reservations`] is the rule the reservation transaction checks: what all owners reserved on a
//!   node stays within what it lends (half its memory by configured size, and its GPUs), so two owners
//!   never overcommit one node. The node's own admission stays the final guard of its memory.
//! - [`slots_to_ask`] says when an owner asks a host for more feeders, and how many in all.

use crate::memory::{admit, Ledger, MemoryPolicy};

/// A candidate node as its last heartbeat described it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRoom {
    pub name: String,
    pub policy: MemoryPolicy,
    pub ledger: Ledger,
    pub instances: u64,
    pub gpus: u32,
    /// What owners have reserved on it now.
    pub reserved: Capacity,
    /// It hosts the version already.
    pub hosts_it: bool,
}

/// Memory (configured MB) and GPUs: what a node lends and what a reservation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Capacity {
    pub memory_mb: u64,
    pub gpus: u32,
}

/// What a node lends to other nodes' queues: half its memory by configured size (its own queues keep the
/// rest), and its GPUs.
pub fn lendable(policy: &MemoryPolicy, gpus: u32) -> Capacity {
    Capacity { memory_mb: policy.configured_limit_mb() / 2, gpus }
}

/// Whether `want` fits on a node that lends `lends` and has `reserved` taken by owners already.
pub fn fits_reservations(lends: Capacity, reserved: Capacity, want: Capacity) -> bool {
    reserved.memory_mb.saturating_add(want.memory_mb) <= lends.memory_mb
        && reserved.gpus.saturating_add(want.gpus) <= lends.gpus
}

/// The node (index into `nodes`) for an instance charged `charge_mb`, configured `want.memory_mb`, with
/// `want.gpus` GPUs; `None` when none has room.
pub fn place(nodes: &[NodeRoom], charge_mb: u64, want: Capacity) -> Option<usize> {
    nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            admit(&n.policy, n.ledger, 1, charge_mb, want.memory_mb).fits == 1
                && fits_reservations(lendable(&n.policy, n.gpus), n.reserved, want)
        })
        .max_by(|(_, a), (_, b)| {
            let free = |n: &NodeRoom| n.policy.budget_mb.saturating_sub(n.ledger.charged_mb);
            a.hosts_it
                .cmp(&b.hosts_it)
                .then(free(a).cmp(&free(b)))
                .then(b.instances.cmp(&a.instances))
                .then(b.name.cmp(&a.name))
        })
        .map(|(i, _)| i)
}

/// The feeders an owner asks a host for, in all, when its pool is `short` instances short and it asked for
/// `asked` before: more when short of what it asked (up to `max`), the same again once `stale` (the host
/// may have stopped for want of work), otherwise `None` (no request).
pub fn slots_to_ask(asked: usize, short: usize, max: usize, stale: bool) -> Option<usize> {
    let wanted = asked.saturating_add(short).min(max);
    if wanted > asked {
        Some(wanted)
    } else if stale {
        Some(asked.max(short).clamp(1, max.max(1)))
    } else {
        None
    }
}

/// What an owner asks a host for: feeders in all, and instances to start ahead for invocations announced
/// soon (the pre-warmer's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostAsk {
    pub slots: usize,
    pub warm: usize,
}

/// Whether an owner whose pool is `short` instances short, with `queued` invocations waiting, asks its host
/// again: for more feeders ([`slots_to_ask`]), or, with as many as before, because more invocations were
/// announced than it last asked the host to warm for (`warmed`). Instances short beyond the queued
/// invocations are for announced ones.
pub fn host_ask(asked: usize, warmed: usize, short: usize, queued: usize, max: usize, stale: bool) -> Option<HostAsk> {
    let warm = short.saturating_sub(queued);
    let slots = match slots_to_ask(asked, short, max, stale) {
        Some(slots) => slots,
        None if warm > warmed => asked.clamp(1, max.max(1)),
        None => return None,
    };
    Some(HostAsk { slots, warm })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, budget_mb: u64, charged_mb: u64, configured_mb: u64) -> NodeRoom {
        NodeRoom {
            name: name.into(),
            policy: MemoryPolicy { budget_mb, overcommit: 2.0 },
            ledger: Ledger { charged_mb, configured_mb },
            instances: 0,
            gpus: 0,
            reserved: Capacity::default(),
            hosts_it: false,
        }
    }

    const MB128: Capacity = Capacity { memory_mb: 128, gpus: 0 };

    #[test]
    fn the_node_with_the_most_room_is_picked_and_a_full_one_never() {
        let nodes = [node("a", 1000, 900, 900), node("b", 1000, 100, 100), node("c", 1000, 300, 300)];
        assert_eq!(place(&nodes, 128, MB128), Some(1));
        // Charged full (the budget), or configured full (the overcommit bound): not a candidate.
        let full = [node("a", 1000, 950, 100), node("b", 1000, 10, 1990)];
        assert_eq!(place(&full, 128, MB128), None);
        assert_eq!(place(&[], 128, MB128), None);
    }

    #[test]
    fn a_node_already_hosting_the_version_is_preferred_over_a_freer_one() {
        let mut nodes = [node("a", 1000, 500, 500), node("b", 1000, 0, 0)];
        nodes[0].hosts_it = true;
        assert_eq!(place(&nodes, 128, MB128), Some(0));
    }

    #[test]
    fn ties_go_to_fewer_instances_then_by_name() {
        let mut nodes = [node("b", 1000, 0, 0), node("a", 1000, 0, 0), node("c", 1000, 0, 0)];
        assert_eq!(place(&nodes, 128, MB128), Some(1), "by name");
        nodes[2].instances = 0;
        nodes[0].instances = 5;
        nodes[1].instances = 5;
        assert_eq!(place(&nodes, 128, MB128), Some(2), "fewer instances");
    }

    #[test]
    fn what_owners_reserved_on_a_node_stays_within_what_it_lends() {
        let policy = MemoryPolicy { budget_mb: 1000, overcommit: 2.0 };
        let lends = lendable(&policy, 1);
        assert_eq!(lends, Capacity { memory_mb: 1000, gpus: 1 });
        assert!(fits_reservations(lends, Capacity { memory_mb: 872, gpus: 0 }, MB128));
        assert!(!fits_reservations(lends, Capacity { memory_mb: 873, gpus: 0 }, MB128));
        let gpu = Capacity { memory_mb: 128, gpus: 1 };
        assert!(fits_reservations(lends, Capacity::default(), gpu));
        assert!(!fits_reservations(lends, Capacity { memory_mb: 0, gpus: 1 }, gpu), "its one GPU is taken");
        // A node whose lendable room is reserved is not a candidate, whatever its own ledger says.
        let mut reserved = node("a", 1000, 0, 0);
        reserved.reserved = Capacity { memory_mb: 1000, gpus: 0 };
        assert_eq!(place(&[reserved], 128, MB128), None);
    }

    #[test]
    fn an_owner_asks_for_more_feeders_when_short_and_again_once_stale() {
        assert_eq!(slots_to_ask(0, 3, 32, false), Some(3));
        assert_eq!(slots_to_ask(3, 2, 32, false), Some(5));
        assert_eq!(slots_to_ask(31, 5, 32, false), Some(32), "capped");
        assert_eq!(slots_to_ask(32, 5, 32, false), None, "asked for all it may");
        assert_eq!(slots_to_ask(32, 5, 32, true), Some(32), "asked again once stale");
        assert_eq!(slots_to_ask(4, 0, 32, false), None);
        assert_eq!(slots_to_ask(0, 0, 32, true), Some(1));
    }
    #[test]
    fn an_owner_asks_its_host_again_when_more_invocations_are_announced() {
        // 2 short, 2 queued: feeders for them, nothing to warm ahead.
        assert_eq!(host_ask(0, 0, 2, 2, 32, false), Some(HostAsk { slots: 2, warm: 0 }));
        // Asked for 2 already and still 2 short: 2 more; at the most feeders, no new request until stale.
        assert_eq!(host_ask(2, 0, 2, 2, 32, false), Some(HostAsk { slots: 4, warm: 0 }));
        assert_eq!(host_ask(4, 0, 2, 2, 4, false), None);
        // One invocation announced beyond the queued ones: the host is asked to warm an instance, once.
        assert_eq!(host_ask(4, 0, 1, 0, 4, false), Some(HostAsk { slots: 4, warm: 1 }));
        assert_eq!(host_ask(4, 1, 1, 0, 4, false), None);
        // More announced than it last passed on: asked again, with as many feeders as before.
        assert_eq!(host_ask(4, 1, 3, 0, 4, false), Some(HostAsk { slots: 4, warm: 3 }));
        // Stale: asked again whatever the forecast.
        assert_eq!(host_ask(4, 3, 3, 0, 4, true), Some(HostAsk { slots: 4, warm: 3 }));
        // Never asked, only announced work: one feeder at least.
        assert_eq!(host_ask(0, 0, 1, 0, 32, false), Some(HostAsk { slots: 1, warm: 1 }));
    }
}
