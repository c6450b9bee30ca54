//! The durable execution service's pure parts: what an invocation's answer means, the list filters, names.

use stoke_scheduler::Outcome;

use super::run::output_of;
use super::*;

#[test]
fn an_invocations_answer_is_the_sdks_output_or_a_failed_invocation() {
    let ok = |body: &str| output_of(Outcome::Success(Bytes::from(body.to_string())));
    assert_eq!(
        ok(r#"{"Status":"SUCCEEDED","Result":"{\"a\":1}"}"#),
        InvocationOutput::Succeeded(Some("{\"a\":1}".into()))
    );
    assert_eq!(ok(r#"{"Status":"SUCCEEDED"}"#), InvocationOutput::Succeeded(None));
    assert_eq!(
        ok(r#"{"Status":"FAILED","Error":{"ErrorType":"ValueError","ErrorMessage":"bad"}}"#),
        InvocationOutput::Failed(Some(ErrorObject::new("ValueError", "bad")))
    );
    assert_eq!(ok(r#"{"Status":"PENDING"}"#), InvocationOutput::Pending);
    // A handler the SDK does not wrap answers something else: the invocation failed (and is tried again).
    for plain in [r#"{"result": 1}"#, "42", "not json", r#"{"Status":"DONE"}"#] {
        let InvocationOutput::Error(e) = ok(plain) else { panic!("{plain} is not an output") };
        assert_eq!(e.error_type.as_deref(), Some("Stoke.InvalidDurableOutput"), "{plain}");
    }
    // A function error (a crash, a timeout, a raise outside the SDK) keeps its type, message and trace.
    let crashed = output_of(Outcome::FunctionError {
        error_type: "Runtime.ExitError".into(),
        body: Bytes::from(r#"{"errorMessage":"exited","stackTrace":["a","b"]}"#),
    });
    let InvocationOutput::Error(e) = crashed else { panic!("a function error is a failed invocation") };
    assert_eq!((e.error_type.as_deref(), e.error_message.as_deref()), (Some("Runtime.ExitError"), Some("exited")));
    assert_eq!(e.stack_trace, Some(vec!["a".to_string(), "b".to_string()]));
}

fn record(name: &str, version: &str, status: &str, started_ms: i64) -> DurableRecord {
    DurableRecord {
        id: format!("id-{name}"),
        account: AccountId::parse("123456789012").unwrap(),
        function: FunctionName::parse("orders").unwrap(),
        version: version.into(),
        name: name.into(),
        arn: String::new(),
        status: status.into(),
        input_sha256: String::new(),
        started_ms,
        ended_ms: None,
        next_deadline_ms: None,
        revision: 0,
        head: String::new(),
        retention_days: 14,
        expires_ms: None,
    }
}

#[test]
fn the_list_filters_are_each_a_condition_and_all_must_hold() {
    let r = record("a", "$LATEST", "RUNNING", 1_000);
    assert!(ListFilter::default().admits(&r));
    let by = |f: ListFilter| f.admits(&r);
    assert!(by(ListFilter { qualifier: Some("$LATEST".into()), ..Default::default() }));
    assert!(!by(ListFilter { qualifier: Some("1".into()), ..Default::default() }));
    assert!(by(ListFilter { name: Some("a".into()), ..Default::default() }));
    assert!(!by(ListFilter { name: Some("b".into()), ..Default::default() }));
    assert!(by(ListFilter { statuses: vec!["FAILED".into(), "RUNNING".into()], ..Default::default() }));
    assert!(!by(ListFilter { statuses: vec!["FAILED".into()], ..Default::default() }));
    // StartedAfter is inclusive, StartedBefore is not.
    assert!(by(ListFilter { started_after_ms: Some(1_000), started_before_ms: Some(1_001), ..Default::default() }));
    assert!(!by(ListFilter { started_before_ms: Some(1_000), ..Default::default() }));
    assert!(!by(ListFilter { started_after_ms: Some(1_001), ..Default::default() }));
    assert!(!by(ListFilter { name: Some("a".into()), statuses: vec!["FAILED".into()], ..Default::default() }));
}

#[test]
fn execution_names_are_the_apis_pattern() {
    for good in ["a", "approve-1", "A_b-9", &"x".repeat(64)] {
        assert!(valid_name(good), "{good}");
    }
    for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
        assert!(!valid_name(bad), "{bad}");
    }
}

#[test]
fn a_delta_becomes_one_row_per_operation_and_per_event_that_read_back() {
    let mut x = DurableExecution::start(
        "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/n/id",
        "n",
        "{}",
        60,
        1_000,
    );
    let (ops, events) = rows(x.take_delta());
    assert_eq!(ops.len(), 1);
    assert_eq!((ops[0].seq, ops[0].op_id.as_str()), (0, "id"));
    assert_eq!(events.iter().map(|e| (e.event_id, e.kind.as_str())).collect::<Vec<_>>(), [(1, "ExecutionStarted")]);
    let op: Operation = serde_json::from_str(&ops[0].data).unwrap();
    let event: Event = serde_json::from_str(&events[0].data).unwrap();
    let back = DurableExecution::from_parts(x.head().clone(), vec![op], vec![event]);
    assert_eq!(back.operations, x.operations);
    assert_eq!(back.events, x.events);
    // Nothing changed since: nothing to write.
    let (ops, events) = rows(x.take_delta());
    assert!(ops.is_empty() && events.is_empty());
}
