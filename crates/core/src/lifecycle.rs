//! The function lifecycle of seed 002 as an explicit transition table.
//!
//! States: `LATEST` (created or last modified), `PUBLISHED` (the newest code and configuration is a
//! numbered version), `BLOCKED` (access suspended), `UPDATING` (code or configuration is being changed;
//! invocations are held, not refused), `RETIRED` (refuses everything; deleted once in-flight work drains).

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LifecycleState {
    Latest,
    Published,
    Blocked,
    Updating,
    Retired,
}

impl LifecycleState {
    pub const ALL: [Self; 5] = [Self::Latest, Self::Published, Self::Blocked, Self::Updating, Self::Retired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Latest => "LATEST",
            Self::Published => "PUBLISHED",
            Self::Blocked => "BLOCKED",
            Self::Updating => "UPDATING",
            Self::Retired => "RETIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Whether an invocation of a function in this state may run, must wait, or is refused.
    pub fn admission(self) -> Admission {
        match self {
            Self::Latest | Self::Published => Admission::Accept,
            Self::Updating => Admission::Hold,
            Self::Blocked | Self::Retired => Admission::Refuse,
        }
    }
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to an invocation that arrives in a given state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accept,
    /// Wait until the update finishes, then run.
    Hold,
    Refuse,
}

/// Something that moves a function through its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleEvent {
    Publish,
    Block,
    Unblock,
    BeginUpdate,
    FinishUpdate,
    Retire,
}

impl LifecycleEvent {
    pub const ALL: [Self; 6] =
        [Self::Publish, Self::Block, Self::Unblock, Self::BeginUpdate, Self::FinishUpdate, Self::Retire];

    /// The action's name as users type it (CLI sub-command, API path).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Block => "block",
            Self::Unblock => "unblock",
            Self::BeginUpdate => "update",
            Self::FinishUpdate => "finish-update",
            Self::Retire => "retire",
        }
    }
}

/// Facts outside the state that a transition depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LifecycleContext {
    /// `$LATEST` equals the newest published version (so unblocking returns to `PUBLISHED`).
    pub latest_is_published: bool,
}

/// A refused transition: names the current state and what is allowed from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {event} a function that is {state}; allowed from {state}: {allowed}", event = .event.as_str(), allowed = allowed_list(.allowed))]
pub struct IllegalTransition {
    pub state: LifecycleState,
    pub event: LifecycleEvent,
    pub allowed: Vec<LifecycleEvent>,
}

fn allowed_list(allowed: &[LifecycleEvent]) -> String {
    if allowed.is_empty() {
        "nothing (the function is being deleted)".to_string()
    } else {
        allowed.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// The transition table. Returns the next state, or why the event is not allowed.
pub fn next_state(
    state: LifecycleState,
    event: LifecycleEvent,
    ctx: LifecycleContext,
) -> Result<LifecycleState, IllegalTransition> {
    table(state, event, ctx).ok_or_else(|| IllegalTransition { state, event, allowed: allowed_events(state, ctx) })
}

/// Events a user may send from `state`, in table order. `FinishUpdate` is the platform's own event and
/// is offered only while an update runs.
pub fn allowed_events(state: LifecycleState, ctx: LifecycleContext) -> Vec<LifecycleEvent> {
    LifecycleEvent::ALL
        .into_iter()
        .filter(|&event| event != LifecycleEvent::FinishUpdate || state == LifecycleState::Updating)
        .filter(|&event| table(state, event, ctx).is_some())
        .collect()
}

fn table(state: LifecycleState, event: LifecycleEvent, ctx: LifecycleContext) -> Option<LifecycleState> {
    use LifecycleEvent as E;
    use LifecycleState as S;
    match (state, event) {
        (S::Latest | S::Published, E::Publish) => Some(S::Published),
        (S::Latest | S::Published, E::Block) => Some(S::Blocked),
        (S::Latest | S::Published, E::BeginUpdate) => Some(S::Updating),
        (S::Latest | S::Published | S::Blocked, E::Retire) => Some(S::Retired),
        (S::Updating, E::FinishUpdate) => Some(S::Latest),
        // A blocked function can be fixed and published without letting traffic in; it stays blocked.
        (S::Blocked, E::Publish | E::BeginUpdate | E::FinishUpdate) => Some(S::Blocked),
        (S::Blocked, E::Unblock) => Some(if ctx.latest_is_published { S::Published } else { S::Latest }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LifecycleEvent as E;
    use LifecycleState as S;

    /// The whole table, written out: every (state, event) pair and its expected outcome.
    fn expected(state: S, event: E, latest_is_published: bool) -> Option<S> {
        let unblocked = if latest_is_published { S::Published } else { S::Latest };
        match (state, event) {
            (S::Latest, E::Publish) => Some(S::Published),
            (S::Latest, E::Block) => Some(S::Blocked),
            (S::Latest, E::Unblock) => None,
            (S::Latest, E::BeginUpdate) => Some(S::Updating),
            (S::Latest, E::FinishUpdate) => None,
            (S::Latest, E::Retire) => Some(S::Retired),

            (S::Published, E::Publish) => Some(S::Published),
            (S::Published, E::Block) => Some(S::Blocked),
            (S::Published, E::Unblock) => None,
            (S::Published, E::BeginUpdate) => Some(S::Updating),
            (S::Published, E::FinishUpdate) => None,
            (S::Published, E::Retire) => Some(S::Retired),

            (S::Blocked, E::Publish) => Some(S::Blocked),
            (S::Blocked, E::Block) => None,
            (S::Blocked, E::Unblock) => Some(unblocked),
            (S::Blocked, E::BeginUpdate) => Some(S::Blocked),
            (S::Blocked, E::FinishUpdate) => Some(S::Blocked),
            (S::Blocked, E::Retire) => Some(S::Retired),

            (S::Updating, E::FinishUpdate) => Some(S::Latest),
            (S::Updating, E::Publish | E::Block | E::Unblock | E::BeginUpdate | E::Retire) => None,

            (S::Retired, _) => None,
        }
    }

    #[test]
    fn every_state_event_pair_matches_the_table() {
        for latest_is_published in [false, true] {
            let ctx = LifecycleContext { latest_is_published };
            for state in S::ALL {
                for event in E::ALL {
                    let got = next_state(state, event, ctx).ok();
                    assert_eq!(got, expected(state, event, latest_is_published), "{state} + {event:?} ({ctx:?})");
                }
            }
        }
    }

    #[test]
    fn refusals_name_current_state_and_allowed_next_steps() {
        let ctx = LifecycleContext::default();
        let e = next_state(S::Latest, E::Unblock, ctx).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot unblock a function that is LATEST; allowed from LATEST: publish, block, update, retire"
        );
        let e = next_state(S::Updating, E::Retire, ctx).unwrap_err();
        assert_eq!(e.allowed, vec![E::FinishUpdate]);
        let e = next_state(S::Retired, E::Publish, ctx).unwrap_err();
        assert!(e.to_string().contains("being deleted"), "{e}");
        let e = next_state(S::Blocked, E::Block, ctx).unwrap_err();
        assert!(e.to_string().contains("unblock"), "{e}");
    }

    #[test]
    fn allowed_events_agree_with_the_table() {
        for state in S::ALL {
            for latest_is_published in [false, true] {
                let ctx = LifecycleContext { latest_is_published };
                for event in allowed_events(state, ctx) {
                    assert!(next_state(state, event, ctx).is_ok(), "{state} {event:?}");
                }
            }
        }
    }

    #[test]
    fn admission_per_state() {
        assert_eq!(S::Latest.admission(), Admission::Accept);
        assert_eq!(S::Published.admission(), Admission::Accept);
        assert_eq!(S::Updating.admission(), Admission::Hold);
        assert_eq!(S::Blocked.admission(), Admission::Refuse);
        assert_eq!(S::Retired.admission(), Admission::Refuse);
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        assert_eq!(S::parse("latest"), None);
    }
}
