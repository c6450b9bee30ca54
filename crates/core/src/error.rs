//! One classification of what went wrong, whichever service raised it. The native API's statuses, the
//! Lambda API's exceptions and the names a workflow's Task sees (`Lambda.<Exception>`) are all read from
//! it, so that one failure is not classified three ways.

/// What kind of failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A parameter is wrong; the message says which and how to fix it.
    Invalid,
    /// The request's body is not what the operation reads (an event that is not JSON).
    InvalidContent,
    NotFound,
    /// The resource exists already, or its state does not allow the operation.
    Conflict,
    /// A precondition the caller set (a code hash, a revision) does not hold.
    Precondition,
    /// The resource is changing for a moment (an update in progress): retry shortly.
    Busy,
    /// The caller may not do this (another account's resource, an admin operation).
    Forbidden,
    /// The request, or what it unpacks to, is over a limit.
    TooLarge,
    /// Over a concurrency or rate limit: retry after the time given.
    Throttled,
    /// A dependency (the store, a peer node) cannot answer now: retry.
    Unavailable,
    /// The node's disk is full: nothing was written; retry once space is freed.
    Full,
    /// The server failed.
    Internal,
}

impl ErrorKind {
    /// The native API's HTTP status.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::Invalid | ErrorKind::InvalidContent => 400,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Precondition => 412,
            ErrorKind::TooLarge => 413,
            ErrorKind::Throttled => 429,
            ErrorKind::Busy | ErrorKind::Unavailable => 503,
            ErrorKind::Full => 507,
            ErrorKind::Internal => 500,
        }
    }

    /// The Lambda API's HTTP status and exception name (its `x-amzn-ErrorType`).
    pub fn lambda(self) -> (u16, &'static str) {
        match self {
            ErrorKind::Invalid => (400, "InvalidParameterValueException"),
            ErrorKind::InvalidContent => (400, "InvalidRequestContentException"),
            ErrorKind::Forbidden => (403, "AccessDeniedException"),
            ErrorKind::NotFound => (404, "ResourceNotFoundException"),
            // Lambda answers an update in progress with a conflict too.
            ErrorKind::Conflict | ErrorKind::Busy => (409, "ResourceConflictException"),
            ErrorKind::Precondition => (412, "PreconditionFailedException"),
            ErrorKind::TooLarge => (413, "RequestTooLargeException"),
            ErrorKind::Throttled => (429, "TooManyRequestsException"),
            // Lambda has no exception for a full disk: the one its SDKs retry.
            ErrorKind::Unavailable | ErrorKind::Full => (503, "ServiceUnavailableException"),
            ErrorKind::Internal => (500, "ServiceException"),
        }
    }

    /// The error name a workflow's Task state sees for an invocation that never ran, as Step Functions
    /// reports Lambda's service errors.
    pub fn task_error(self) -> String {
        format!("Lambda.{}", self.lambda().1)
    }

    /// The same request may succeed later without change.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorKind::Busy | ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Full)
    }

    /// The kind an HTTP status stands for (for errors that arrive as a status only).
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            412 => ErrorKind::Precondition,
            413 => ErrorKind::TooLarge,
            429 => ErrorKind::Throttled,
            503 => ErrorKind::Unavailable,
            507 => ErrorKind::Full,
            400..=499 => ErrorKind::Invalid,
            _ => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorKind; 12] = [
        ErrorKind::Invalid,
        ErrorKind::InvalidContent,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Precondition,
        ErrorKind::Busy,
        ErrorKind::Forbidden,
        ErrorKind::TooLarge,
        ErrorKind::Throttled,
        ErrorKind::Unavailable,
        ErrorKind::Full,
        ErrorKind::Internal,
    ];

    #[test]
    fn a_client_mistake_is_never_a_5xx_and_a_retryable_failure_never_a_4xx_mistake() {
        for kind in ALL {
            let client =
                !matches!(kind, ErrorKind::Busy | ErrorKind::Unavailable | ErrorKind::Full | ErrorKind::Internal);
            let native = kind.status();
            let (lambda, _) = kind.lambda();
            assert_eq!((400..500).contains(&native), client, "{kind:?} native {native}");
            if kind != ErrorKind::Busy {
                assert_eq!((400..500).contains(&lambda), client, "{kind:?} lambda {lambda}");
            }
            if kind.retryable() && kind != ErrorKind::Throttled {
                assert!(native == 503 || native == 507, "{kind:?}: {native}");
                if kind != ErrorKind::Busy {
                    assert_eq!(lambda, 503, "{kind:?}: the status Lambda's SDKs retry");
                }
            }
        }
    }

    #[test]
    fn statuses_read_back_as_their_kind() {
        for kind in ALL {
            let back = ErrorKind::from_status(kind.status());
            let same = match kind {
                ErrorKind::InvalidContent => ErrorKind::Invalid,
                ErrorKind::Busy => ErrorKind::Unavailable,
                other => other,
            };
            assert_eq!(back, same, "{kind:?}");
        }
        assert_eq!(ErrorKind::from_status(422), ErrorKind::Invalid);
        assert_eq!(ErrorKind::from_status(502), ErrorKind::Internal);
    }

    #[test]
    fn workflow_tasks_see_lambdas_exception_names() {
        assert_eq!(ErrorKind::NotFound.task_error(), "Lambda.ResourceNotFoundException");
        assert_eq!(ErrorKind::Throttled.task_error(), "Lambda.TooManyRequestsException");
        assert_eq!(ErrorKind::Busy.task_error(), "Lambda.ResourceConflictException");
    }
}
