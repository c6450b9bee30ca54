//! Where an asynchronous invocation's outcome goes (Lambda's `OnSuccess` / `OnFailure` destinations), and
//! the invocation record a destination receives, written as Lambda writes it.
//!
//! Lambda takes SQS, SNS, EventBridge, S3 and Lambda destinations; stoke takes a function (invoked
//! asynchronously with the record as its event, as Lambda does) and, beyond Lambda, a state machine (an
//! execution started with the record as its input). The record's layout follows what real AWS delivered in
//! recorded tests (LocalStack's `test_lambda_destinations` snapshots) and the Lambda developer guide's
//! "Capturing records of Lambda asynchronous invocations".

use crate::names::{AccountId, FunctionName};
use crate::reference::FunctionRef;

/// A destination named by its ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`.
    Function(FunctionRef),
    /// `arn:aws:states:<region>:<account>:stateMachine:<name>`.
    StateMachine { account: AccountId, name: String },
}

/// Why a destination ARN was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationError {
    /// Not an ARN at all (Lambda's `ValidationException`, with the pattern it must match).
    Pattern,
    /// An ARN of a service stoke cannot deliver to (Lambda's `InvalidParameterValueException`).
    Unsupported,
    /// A function or state machine ARN that is malformed or names another account.
    Invalid,
}

/// The pattern Lambda's model gives a destination ARN (quoted in its validation message).
pub const ARN_PATTERN: &str = r"$|kafka://([^.]([a-zA-Z0-9\-_.]{0,248}))|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1})?:(\d{12})?:(.*)";

/// The ARNs a destination or a schedule's target may be, as the refusals name them.
pub const FORMS: &str = "arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>] or \
                         arn:aws:states:<region>:<account>:stateMachine:<name>";

/// The longest destination ARN Lambda takes.
pub const MAX_ARN_LEN: usize = 350;

impl Destination {
    /// Parses a destination ARN for a function of `caller`'s.
    pub fn parse(arn: &str, caller: &AccountId) -> Result<Self, DestinationError> {
        if arn.len() > MAX_ARN_LEN || !looks_like_an_arn(arn) {
            return Err(DestinationError::Pattern);
        }
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.get(2).copied() {
            Some("lambda") => {
                let r = FunctionRef::parse(arn).map_err(|_| DestinationError::Invalid)?;
                if r.account.as_ref() != Some(caller) {
                    return Err(DestinationError::Invalid);
                }
                Ok(Self::Function(r))
            }
            Some("states") => match crate::reference::parse_state_machine_arn(arn) {
                Some((account, name)) if account == caller.as_str() && !name.is_empty() => {
                    Ok(Self::StateMachine { account: caller.clone(), name: name.to_string() })
                }
                _ => Err(DestinationError::Invalid),
            },
            _ => Err(DestinationError::Unsupported),
        }
    }

    /// Whether this destination is `function` itself (Lambda refuses that).
    pub fn is_function(&self, function: &FunctionName) -> bool {
        matches!(self, Self::Function(r) if &r.name == function)
    }
}

/// `arn:<partition>:<service>:<region>:<account>:<resource>`, as far as Lambda's pattern checks it.
fn looks_like_an_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [arn, partition, service, region, account, _resource] = parts.as_slice() else { return false };
    let region_ok = region.is_empty()
        || (region.split('-').count() >= 3
            && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && region.ends_with(|c: char| c.is_ascii_digit()));
    *arn == "arn"
        && partition.starts_with("aws")
        && !service.is_empty()
        && service.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && region_ok
        && (account.is_empty() || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())))
}

/// Why a record is sent (Lambda's `requestContext.condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::RetriesExhausted => "RetriesExhausted",
            Self::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

/// What the last attempt returned.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// The version that ran (`$LATEST` or a number).
    pub executed_version: &'a str,
    /// The attempt failed (the payload is the runtime's error document).
    pub function_error: bool,
    pub payload: &'a [u8],
}

/// What goes into a record.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub timestamp_ms: i64,
    pub request_id: &'a str,
    /// The function's ARN qualified with the version that ran (`:$LATEST` when it never ran unqualified).
    pub function_arn: &'a str,
    pub condition: Condition,
    /// Attempts made (Lambda's `approximateInvokeCount`).
    pub attempts: u32,
    /// The event as it was sent.
    pub request_payload: &'a [u8],
    /// The last attempt's response; `None` when none ran (the record then ends after `requestPayload`, as
    /// Lambda's does).
    pub response: Option<Response<'a>>,
}

/// Lambda's invocation record, in its key order, compact: the event and the function's response are
/// copied in as they were (not re-serialised, so their own key order and numbers are kept).
pub fn invocation_record(r: &Record<'_>) -> String {
    let s = |v: &str| serde_json::Value::String(v.to_string()).to_string();
    let mut out = format!(
        "{{\"version\":\"1.0\",\"timestamp\":{},\"requestContext\":{{\"requestId\":{},\"functionArn\":{},\
         \"condition\":\"{}\",\"approximateInvokeCount\":{}}},\"requestPayload\":{}",
        s(&crate::time::format_rfc3339(r.timestamp_ms)),
        s(r.request_id),
        s(r.function_arn),
        r.condition.as_str(),
        r.attempts,
        json_or_string(r.request_payload),
    );
    if let Some(resp) = r.response {
        out.push_str(&format!(
            ",\"responseContext\":{{\"statusCode\":200,\"executedVersion\":{}{}}},\"responsePayload\":{}",
            s(resp.executed_version),
            if resp.function_error { ",\"functionError\":\"Unhandled\"" } else { "" },
            json_or_string(resp.payload),
        ));
    }
    out.push('}');
    out
}

/// A payload as JSON: itself when it is a JSON document, `null` when empty (a function that returned
/// nothing), else its text as a JSON string.
fn json_or_string(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return "null".into();
    }
    if serde_json::from_str::<serde::de::IgnoredAny>(trimmed).is_ok() {
        return trimmed.to_string();
    }
    serde_json::Value::String(text.into_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct() -> AccountId {
        AccountId::parse("123456789012").unwrap()
    }

    #[test]
    fn functions_and_state_machines_of_the_callers_account_are_destinations() {
        let f = Destination::parse("arn:aws:lambda:us-east-1:123456789012:function:sink", &acct()).unwrap();
        assert!(f.is_function(&FunctionName::parse("sink").unwrap()));
        assert!(!f.is_function(&FunctionName::parse("other").unwrap()));
        let q = Destination::parse("arn:aws:lambda:us-east-1:123456789012:function:sink:prod", &acct()).unwrap();
        assert!(matches!(q, Destination::Function(r) if r.qualifier.is_some()));
        assert_eq!(
            Destination::parse("arn:aws:states:us-east-1:123456789012:stateMachine:audit", &acct()),
            Ok(Destination::StateMachine { account: acct(), name: "audit".into() })
        );
    }

    #[test]
    fn other_accounts_other_services_and_non_arns_are_refused_as_lambda_refuses_them() {
        let refused = |arn: &str| Destination::parse(arn, &acct()).unwrap_err();
        assert_eq!(refused("arn:aws:lambda:us-east-1:999999999999:function:sink"), DestinationError::Invalid);
        assert_eq!(refused("arn:aws:lambda:us-east-1:123456789012:function:bad name"), DestinationError::Invalid);
        assert_eq!(refused("arn:aws:states:us-east-1:123456789012:execution:m:e"), DestinationError::Invalid);
        assert_eq!(refused("arn:aws:sqs:us-east-1:123456789012:queue"), DestinationError::Unsupported);
        assert_eq!(refused("arn:aws:iam::123456789012:role/r"), DestinationError::Unsupported);
        assert_eq!(refused("sink"), DestinationError::Pattern);
        assert_eq!(refused("arn:aws:lambda:us-east-1:12345:function:sink"), DestinationError::Pattern);
        assert_eq!(refused(&format!("arn:aws:lambda:us-east-1:123456789012:function:{}", "a".repeat(400))), {
            DestinationError::Pattern
        });
    }

    fn record(condition: Condition, response: Option<Response<'_>>) -> String {
        invocation_record(&Record {
            timestamp_ms: 1_574_636_905_651,
            request_id: "e4b46cbf-b738-4c4d-8880-a18cdf61200e",
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST",
            condition,
            attempts: 3,
            request_payload: br#"{"b": 1, "a": [2.50]}"#,
            response,
        })
    }

    #[test]
    fn a_failure_record_has_lambdas_keys_in_lambdas_order() {
        let error = br#"{"errorMessage":"boom","errorType":"Exception","stackTrace":[]}"#;
        let r = record(
            Condition::RetriesExhausted,
            Some(Response { executed_version: "$LATEST", function_error: true, payload: error }),
        );
        assert_eq!(
            r,
            "{\"version\":\"1.0\",\"timestamp\":\"2019-11-24T23:08:25.651Z\",\"requestContext\":{\"requestId\":\
             \"e4b46cbf-b738-4c4d-8880-a18cdf61200e\",\"functionArn\":\"arn:aws:lambda:us-east-1:123456789012:\
             function:f:$LATEST\",\"condition\":\"RetriesExhausted\",\"approximateInvokeCount\":3},\
             \"requestPayload\":{\"b\": 1, \"a\": [2.50]},\"responseContext\":{\"statusCode\":200,\
             \"executedVersion\":\"$LATEST\",\"functionError\":\"Unhandled\"},\"responsePayload\":{\"errorMessage\":\
             \"boom\",\"errorType\":\"Exception\",\"stackTrace\":[]}}"
        );
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["requestPayload"]["a"][0], 2.5);
    }

    #[test]
    fn a_success_has_no_function_error_and_an_empty_response_is_null() {
        let r =
            record(Condition::Success, Some(Response { executed_version: "7", function_error: false, payload: b"" }));
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["requestContext"]["condition"], "Success");
        assert_eq!(v["responseContext"], serde_json::json!({"statusCode": 200, "executedVersion": "7"}));
        assert!(v["responsePayload"].is_null() && v.get("responsePayload").is_some());
        let text = record(
            Condition::Success,
            Some(Response { executed_version: "7", function_error: false, payload: b"not \"json\"" }),
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["responsePayload"], "not \"json\"");
    }

    #[test]
    fn an_event_that_never_ran_ends_after_its_payload() {
        let v: serde_json::Value = serde_json::from_str(&record(Condition::EventAgeExceeded, None)).unwrap();
        assert_eq!(v["requestContext"]["condition"], "EventAgeExceeded");
        assert!(v.get("responseContext").is_none() && v.get("responsePayload").is_none());
    }
}
