//! How each service's errors are classified: one [`ErrorKind`] per failure, from which the native API's
//! status, the Lambda API's exception and a workflow Task's error name are read (`http::error`,
//! `http::lambda`, `workflows::engine`). A service error says what it is here, once.

use stoke_core::error::ErrorKind;
use stoke_scheduler::InvokeError;
use stoke_store::archive::ArchiveError;

use crate::accounts::AccountError;
use crate::invoke::InvokeFailure;
use crate::registry::RegistryError;
use crate::tune::TuneError;
use crate::workflows::WorkflowError;

/// An error's classification, and what the adapters add to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub kind: ErrorKind,
    /// The native API's stable, machine-readable code (finer than the kind).
    pub code: &'static str,
    /// The request field at fault.
    pub field: Option<String>,
    pub retry_after_s: Option<u64>,
    /// Where Lambda classifies the failure otherwise (it calls an archive that unzips too large an invalid
    /// parameter, not a request too large).
    pub lambda_kind: Option<ErrorKind>,
    /// Lambda's own wording, where clients match on it.
    pub lambda_message: Option<String>,
    /// Lambda's exception name where it is not the one its kind names (an archive over the upload limit is
    /// `RequestEntityTooLargeException`, an invoke payload `RequestTooLargeException`).
    pub lambda_code: Option<&'static str>,
}

impl Class {
    pub fn new(kind: ErrorKind, code: &'static str) -> Class {
        Class {
            kind,
            code,
            field: None,
            retry_after_s: None,
            lambda_kind: None,
            lambda_message: None,
            lambda_code: None,
        }
    }

    fn field(mut self, field: impl Into<String>) -> Class {
        self.field = Some(field.into());
        self
    }

    /// The kind the Lambda API (and a workflow's Task) reports.
    pub fn for_lambda(&self) -> ErrorKind {
        self.lambda_kind.unwrap_or(self.kind)
    }
}

/// A store failure: an unreachable cluster store is a retryable 503 (`store_unavailable`), a full disk a
/// retryable 507 (`insufficient_storage`), anything else the server's own failure.
fn store_class(e: &stoke_store::StoreError) -> Class {
    match e {
        stoke_store::StoreError::Unavailable(_) => {
            Class { retry_after_s: Some(1), ..Class::new(ErrorKind::Unavailable, "store_unavailable") }
        }
        e if e.is_full() => disk_full(),
        _ => Class::new(ErrorKind::Internal, "internal"),
    }
}

/// The node's disk is full: retry once an operator has freed space.
fn disk_full() -> Class {
    Class { retry_after_s: Some(5), ..Class::new(ErrorKind::Full, "insufficient_storage") }
}

/// The sentence a client reads for an error of this class: the error's own, said plainly when the disk is
/// full (a store's "database or disk is full" does not say that nothing was written, nor what to do).
pub fn message(class: &Class, e: &dyn std::fmt::Display) -> String {
    let said = e.to_string();
    if class.kind == ErrorKind::Full && !said.contains("disk is full") {
        format!("the server's disk is full, so nothing was written ({said}); retry once space is freed on the server")
    } else {
        said
    }
}

/// A service error that knows its class.
pub trait Classified: std::fmt::Display {
    fn class(&self) -> Class;
}

impl Classified for ArchiveError {
    fn class(&self) -> Class {
        match self {
            ArchiveError::TooLarge { .. } => Class {
                lambda_code: Some("RequestEntityTooLargeException"),
                ..Class::new(ErrorKind::TooLarge, "archive_too_large").field("code")
            },
            ArchiveError::UnpackedTooLarge { .. } => Class {
                lambda_kind: Some(ErrorKind::Invalid),
                ..Class::new(ErrorKind::TooLarge, "archive_too_large").field("code")
            },
            _ => Class::new(ErrorKind::Invalid, "invalid_archive").field("code"),
        }
    }
}

impl Classified for RegistryError {
    fn class(&self) -> Class {
        use ErrorKind as K;
        match self {
            RegistryError::Validation(v) => Class::new(K::Invalid, "invalid_parameter").field(v.field.clone()),
            RegistryError::Reference(_) => Class::new(K::Invalid, "invalid_reference"),
            RegistryError::Archive(a) => a.class(),
            RegistryError::Image(stoke_store::ImageError::Io(e)) if stoke_store::is_disk_full(e) => disk_full(),
            RegistryError::Image(stoke_store::ImageError::Io(_)) => Class::new(K::Internal, "internal"),
            RegistryError::Image(stoke_store::ImageError::TooLarge { .. }) => {
                Class::new(K::TooLarge, "image_too_large")
            }
            RegistryError::Image(_) => Class::new(K::Invalid, "invalid_image"),
            RegistryError::NotFound(_) => Class::new(K::NotFound, "not_found"),
            RegistryError::Conflict(_) => Class::new(K::Conflict, "conflict"),
            RegistryError::IllegalTransition(_) => Class::new(K::Conflict, "illegal_transition"),
            RegistryError::Destination { field, pattern, .. } => Class {
                lambda_code: pattern.then_some("ValidationException"),
                ..Class::new(K::Invalid, "invalid_destination").field(*field)
            },
            RegistryError::CrossAccount { .. } => Class::new(K::Forbidden, "cross_account"),
            RegistryError::ConcurrentModification(_) => Class::new(K::Conflict, "concurrent_modification"),
            RegistryError::PreconditionFailed(_) => Class::new(K::Precondition, "precondition_failed"),
            RegistryError::Store(e) => store_class(e),
        }
    }
}

impl Classified for InvokeFailure {
    fn class(&self) -> Class {
        use ErrorKind as K;
        match self {
            InvokeFailure::Registry(r) => r.class(),
            InvokeFailure::Blocked(_) => Class::new(K::Conflict, "function_blocked"),
            InvokeFailure::Retired(_) => Class::new(K::Conflict, "function_retired"),
            InvokeFailure::StillUpdating(..) => Class::new(K::Busy, "function_updating"),
            InvokeFailure::PayloadTooLarge { limit, .. } => Class {
                lambda_message: Some(format!("Request must be smaller than {limit} bytes for the Invoke operation")),
                ..Class::new(K::TooLarge, "payload_too_large")
            },
            InvokeFailure::InvalidPayload(detail) => Class {
                lambda_message: Some(format!("Could not parse request body into json: {detail}")),
                ..Class::new(K::InvalidContent, "invalid_request_content")
            },
            InvokeFailure::Scheduler(InvokeError::Throttled { retry_after_s, .. }) => {
                Class { retry_after_s: Some(*retry_after_s), ..Class::new(K::Throttled, "too_many_requests") }
            }
            InvokeFailure::Scheduler(InvokeError::NoSpace(_)) => disk_full(),
            InvokeFailure::Scheduler(InvokeError::Platform(_)) => Class::new(K::Internal, "internal"),
            InvokeFailure::Scheduler(InvokeError::NodeLost(_)) => {
                Class { retry_after_s: Some(1), ..Class::new(K::Unavailable, "node_lost") }
            }
        }
    }
}

impl Classified for AccountError {
    fn class(&self) -> Class {
        match self {
            AccountError::Validation(v) => Class::new(ErrorKind::Invalid, "invalid_parameter").field(v.field.clone()),
            AccountError::Conflict(_) => Class::new(ErrorKind::Conflict, "conflict"),
            AccountError::Forbidden(_) => Class::new(ErrorKind::Forbidden, "forbidden"),
            AccountError::Store(e) => store_class(e),
            AccountError::Random(_) => Class::new(ErrorKind::Internal, "internal"),
        }
    }
}

impl Classified for WorkflowError {
    fn class(&self) -> Class {
        use ErrorKind as K;
        match self {
            WorkflowError::InvalidDefinition(_) => Class::new(K::Invalid, "invalid_definition").field("definition"),
            WorkflowError::InvalidInput { field, .. } => Class::new(K::Invalid, "invalid_parameter").field(*field),
            WorkflowError::WorkflowNotFound(_) => Class::new(K::NotFound, "workflow_not_found"),
            WorkflowError::ExecutionNotFound(_) => Class::new(K::NotFound, "execution_not_found"),
            WorkflowError::Exists(_) => Class::new(K::Conflict, "conflict"),
            WorkflowError::ConcurrentModification(_) => Class::new(K::Conflict, "concurrent_modification"),
            WorkflowError::NotRunning(_) => Class::new(K::Conflict, "execution_not_running"),
            WorkflowError::Store(e) => store_class(e),
        }
    }
}

impl Classified for crate::schedules::ScheduleError {
    fn class(&self) -> Class {
        use crate::schedules::ScheduleError as S;
        use ErrorKind as K;
        match self {
            S::Invalid { field, .. } => Class::new(K::Invalid, "invalid_parameter").field(*field),
            S::NotFound(_) => Class::new(K::NotFound, "schedule_not_found"),
            S::Exists(_) => Class::new(K::Conflict, "conflict"),
            S::Conflict(_) => Class::new(K::Conflict, "concurrent_modification"),
            S::Store(e) => store_class(e),
        }
    }
}

impl Classified for crate::durable::DurableFailure {
    fn class(&self) -> Class {
        use crate::durable::DurableFailure as D;
        use stoke_core::durable::DurableError as E;
        use ErrorKind as K;
        match self {
            D::Engine(E::InvalidToken(_) | E::Invalid(_)) | D::Invalid(_) => {
                Class::new(K::Invalid, "invalid_parameter")
            }
            D::Engine(E::CallbackClosed(_)) => {
                Class { lambda_code: Some("CallbackTimeoutException"), ..Class::new(K::Invalid, "callback_closed") }
            }
            D::Engine(E::NotFound(_)) | D::NotFound(_) => Class::new(K::NotFound, "not_found"),
            D::AlreadyStarted(_) => Class {
                lambda_code: Some("DurableExecutionAlreadyStartedException"),
                ..Class::new(K::Conflict, "durable_execution_already_started")
            },
            D::Forbidden(_) => Class::new(K::Forbidden, "forbidden"),
            D::Store(e) => store_class(e),
            D::Invoke(e) => e.class(),
        }
    }
}

impl Classified for TuneError {
    fn class(&self) -> Class {
        match self {
            TuneError::Validation(v) => Class::new(ErrorKind::Invalid, "invalid_parameter").field(v.field.clone()),
            TuneError::Invoke(i) => i.class(),
            TuneError::Registry(r) => r.class(),
            TuneError::NotFound(_) => Class::new(ErrorKind::NotFound, "not_found"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three readers agree because they read one class: spot-check the failures a client meets most.
    #[test]
    fn one_failure_reads_the_same_in_every_api() {
        let throttled = InvokeFailure::Scheduler(InvokeError::Throttled { retry_after_s: 2, reason: "x".into() });
        let c = throttled.class();
        assert_eq!((c.kind.status(), c.code, c.retry_after_s), (429, "too_many_requests", Some(2)));
        assert_eq!(c.for_lambda().lambda(), (429, "TooManyRequestsException"));
        assert_eq!(c.for_lambda().task_error(), "Lambda.TooManyRequestsException");

        let missing = InvokeFailure::Registry(RegistryError::NotFound("function f does not exist".into())).class();
        assert_eq!(
            (missing.kind.status(), missing.for_lambda().task_error().as_str()),
            (404, "Lambda.ResourceNotFoundException")
        );

        let updating = InvokeFailure::StillUpdating("f".into(), 60).class();
        assert_eq!((updating.kind.status(), updating.for_lambda().lambda().0), (503, 409));

        let unpacked = RegistryError::Archive(ArchiveError::UnpackedTooLarge { size: 2, limit: 1 }).class();
        assert_eq!((unpacked.kind.status(), unpacked.code), (413, "archive_too_large"));
        assert_eq!(unpacked.for_lambda().lambda().1, "InvalidParameterValueException");

        let down =
            RegistryError::Store(stoke_store::StoreError::Unavailable("etcd at x did not answer".into())).class();
        assert_eq!((down.kind.status(), down.code, down.retry_after_s), (503, "store_unavailable", Some(1)));

        let full =
            RegistryError::Store(stoke_store::StoreError::Io(std::io::Error::from(std::io::ErrorKind::StorageFull)))
                .class();
        assert_eq!((full.kind.status(), full.code, full.retry_after_s), (507, "insufficient_storage", Some(5)));
        assert_eq!(full.for_lambda().lambda(), (503, "ServiceUnavailableException"));
        let other_io =
            RegistryError::Store(stoke_store::StoreError::Io(std::io::Error::from(std::io::ErrorKind::NotFound)));
        assert_eq!(other_io.class().kind.status(), 500);

        // The Event runner's rule (what waits without using up an attempt) agrees with the classification.
        let io = |kind| RegistryError::Store(stoke_store::StoreError::Io(std::io::Error::from(kind)));
        let failures = [
            InvokeFailure::Scheduler(InvokeError::NoSpace("full".into())),
            InvokeFailure::Scheduler(InvokeError::Platform("x".into())),
            InvokeFailure::StillUpdating("f".into(), 60),
            InvokeFailure::Blocked("f".into()),
            InvokeFailure::Registry(RegistryError::NotFound("f".into())),
            InvokeFailure::Registry(io(std::io::ErrorKind::StorageFull)),
            InvokeFailure::Registry(io(std::io::ErrorKind::PermissionDenied)),
            InvokeFailure::Registry(RegistryError::Store(stoke_store::StoreError::Unavailable("etcd".into()))),
        ];
        for f in &failures {
            assert_eq!(f.platform_unavailable(), f.class().kind.retryable(), "{f}");
        }

        let tune = TuneError::Registry(RegistryError::PreconditionFailed("sha".into())).class();
        assert_eq!((tune.kind.status(), tune.for_lambda().lambda().1), (412, "PreconditionFailedException"));
    }
}
