//! The Amazon States Language as pure code: parsing and validation of state machine definitions, JSONPath,
//! payload templates, intrinsic functions, Choice rules, Retry/Catch, and the per-state input/output
//! processing. No I/O, no clock and no randomness of its own: the workflow engine drives it, supplies the
//! time and the entropy, and performs the effects (invocations, waits) this crate asks for.

pub mod choice;
pub mod definition;
pub mod intrinsic;
pub mod jsonata;
pub mod path;
pub mod prewarm;
pub mod retry;
pub mod step;
pub mod template;

pub use definition::{Definition, Machine, Problem, Resource, State, StateKind};
pub use intrinsic::{Entropy, SeededEntropy};
pub use step::{Entry, Outcome};

/// The predefined error names (spec Appendix A, plus `States.Runtime` as AWS raises it).
pub mod errors {
    pub const ALL: &str = "States.ALL";
    pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
    pub const TIMEOUT: &str = "States.Timeout";
    pub const TASK_FAILED: &str = "States.TaskFailed";
    pub const PERMISSIONS: &str = "States.Permissions";
    pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
    pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
    pub const BRANCH_FAILED: &str = "States.BranchFailed";
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
    pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
    pub const RUNTIME: &str = "States.Runtime";
    /// A size quota exceeded (here: workflow variables). Terminal: `States.ALL` does not catch it.
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
    pub const QUERY_EVALUATION_ERROR: &str = crate::jsonata::QUERY_EVALUATION_ERROR;
}

/// A failed step: the ASL error name and its cause, as a catcher's `{Error, Cause}` output shows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    pub error: String,
    pub cause: String,
    /// Of a JSONata failure: the field whose expression failed (`Output/result`), which Step Functions'
    /// `EvaluationFailed` event names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Failure {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Failure {
        Failure { error: error.into(), cause: cause.into(), location: None }
    }

    /// The failure, at the field `location`.
    pub fn at(self, location: impl Into<String>) -> Failure {
        Failure { location: Some(location.into()), ..self }
    }

    /// The `{"Error": …, "Cause": …}` document a catcher passes on.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::json!({"Error": self.error, "Cause": self.cause})
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.cause)
    }
}
