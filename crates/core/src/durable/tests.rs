use super::*;

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:greet:$LATEST/durable-execution/run-1/0d4f";
const T0: i64 = 1_800_000_000_000;

fn update(id: &str, kind: OperationType, action: OperationAction) -> OperationUpdate {
    OperationUpdate::new(id, kind, action)
}

fn step(id: &str, action: OperationAction) -> OperationUpdate {
    OperationUpdate { sub_type: Some("Step".into()), ..update(id, OperationType::Step, action) }
}

fn token_of(answer: &Value) -> String {
    answer["CheckpointToken"].as_str().expect("a token").to_string()
}

fn kinds(x: &DurableExecution) -> Vec<(u64, &str)> {
    x.events.iter().map(|e| (e.id, e.kind.as_str())).collect()
}

#[test]
fn a_step_that_succeeds_at_once_records_aws_events_in_aws_order() {
    // Conformance 1-1: one step, its START and SUCCEED in one batch (the SDK sends START without waiting).
    let mut x = DurableExecution::start(ARN, "run-1", "\"World\"", 300, T0);
    let (_, envelope) = x.begin_invocation(1592590337, T0);
    assert_eq!(envelope["DurableExecutionArn"], ARN);
    let ops = envelope["InitialExecutionState"]["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["Id"], "0d4f", "the EXECUTION operation's id is the ARN's last segment");
    assert_eq!(ops[0]["Type"], "EXECUTION");
    assert_eq!(ops[0]["ExecutionDetails"]["InputPayload"], "\"World\"");
    assert_eq!(ops[0]["StartTimestamp"], T0, "the envelope's timestamps are in ms");
    let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    let mut succeed = step("s1", OperationAction::Succeed);
    succeed.payload = Some("\"Hello, World!\"".into());
    let batch = [step("s1", OperationAction::Start), succeed];
    let answer = x.checkpoint(&token, Some("ct-1"), &batch, T0 + 5).unwrap();
    let changed = answer["NewExecutionState"]["Operations"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "the step it changed: {answer}");
    assert_eq!(changed[0]["Status"], "SUCCEEDED");
    assert_eq!(changed[0]["StepDetails"]["Result"], "\"Hello, World!\"");
    assert_eq!(changed[0]["StartTimestamp"], json!((T0 + 5) as f64 / 1000.0), "API answers are in seconds");
    let next =
        x.end_invocation("req-1", T0, InvocationOutput::Succeeded(Some("\"Hello, World!\"".into())), T0 + 9, None);
    assert_eq!(next, Next::Done);
    assert_eq!(
        kinds(&x),
        [
            (1, "ExecutionStarted"),
            (2, "StepStarted"),
            (3, "StepSucceeded"),
            (4, "InvocationCompleted"),
            (5, "ExecutionSucceeded")
        ]
    );
    assert_eq!((x.status, x.result.as_deref()), (ExecutionStatus::Succeeded, Some("\"Hello, World!\"")));
    let succeeded = x.events[2].to_wire(true);
    assert_eq!(succeeded["SubType"], "Step");
    assert_eq!(succeeded["Id"], "s1");
    assert_eq!(succeeded["StepSucceededDetails"]["Result"]["Payload"], "\"Hello, World!\"");
    assert_eq!(succeeded["StepSucceededDetails"]["RetryDetails"]["CurrentAttempt"], 1);
    assert!(x.events[2].to_wire(false)["StepSucceededDetails"]["Result"].get("Payload").is_none());
    assert_eq!(x.events[3].to_wire(true)["InvocationCompletedDetails"]["RequestId"], "req-1");
    assert_eq!(x.operations[0].status, OperationStatus::Succeeded);
}

#[test]
fn a_step_retried_after_a_failure_waits_its_delay_in_a_new_invocation() {
    // Conformance 1-11: StepFailed (with the retry's delay), the invocation ends PENDING, the retry comes
    // due with no event, the next invocation starts the step again and it succeeds on its second attempt.
    let mut x = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let (_, envelope) = x.begin_invocation(1592590338, T0);
    let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    let mut retry = step("s1", OperationAction::Retry);
    retry.error = Some(ErrorObject::new("ValueError", "flaky"));
    retry.step_options = Some(StepOptions { next_attempt_delay_seconds: Some(2) });
    let answer = x.checkpoint(&token, None, &[step("s1", OperationAction::Start), retry], T0 + 10).unwrap();
    let op = &answer["NewExecutionState"]["Operations"][0];
    assert_eq!((op["Status"].as_str(), op["StepDetails"]["Attempt"].as_u64()), (Some("PENDING"), Some(1)));
    assert_eq!(
        x.end_invocation("req-1", T0, InvocationOutput::Pending, T0 + 20, None),
        Next::WaitUntil(Some(T0 + 2_010)),
        "invoked again when the retry is due"
    );
    assert_eq!(x.next_resume(), Some(T0 + 2_010), "a step's retry resumes the function");
    assert!(!x.fire_due(T0 + 2_000), "not yet");
    assert!(x.fire_due(T0 + 2_010));
    assert_eq!(x.operations[1].status, OperationStatus::Ready);
    let (_, envelope) = x.begin_invocation(1592590339, T0);
    assert_eq!(envelope["UpdatedOperationIds"], json!(["s1"]), "what changed since the last invocation looked");
    let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    let mut succeed = step("s1", OperationAction::Succeed);
    succeed.payload = Some("1".into());
    let answer = x.checkpoint(&token, None, &[step("s1", OperationAction::Start)], T0 + 2_020).unwrap();
    x.checkpoint(&token_of(&answer), None, &[succeed], T0 + 2_030).unwrap();
    x.end_invocation("req-2", T0 + 2_015, InvocationOutput::Succeeded(Some("1".into())), T0 + 2_040, None);
    assert_eq!(
        kinds(&x),
        [
            (1, "ExecutionStarted"),
            (2, "StepStarted"),
            (3, "StepFailed"),
            (4, "InvocationCompleted"),
            (5, "StepStarted"),
            (6, "StepSucceeded"),
            (7, "InvocationCompleted"),
            (8, "ExecutionSucceeded"),
        ]
    );
    let failed = x.events[2].to_wire(true);
    assert_eq!(failed["StepFailedDetails"]["Error"]["Payload"]["ErrorType"], "ValueError");
    assert_eq!(failed["StepFailedDetails"]["RetryDetails"], json!({"CurrentAttempt": 1, "NextAttemptDelaySeconds": 2}));
    assert_eq!(x.events[5].to_wire(true)["StepSucceededDetails"]["RetryDetails"]["CurrentAttempt"], 2);
}

#[test]
fn a_wait_ends_on_its_timer_and_the_function_is_invoked_again() {
    // Conformance 2-1: WaitStarted, the invocation suspends, WaitSucceeded when the time comes, a second
    // invocation finishes.
    let mut x = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let (_, envelope) = x.begin_invocation(1592590340, T0);
    let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    let mut wait =
        OperationUpdate { sub_type: Some("Wait".into()), ..update("w1", OperationType::Wait, OperationAction::Start) };
    wait.wait_options = Some(WaitOptions { wait_seconds: Some(5) });
    let answer = x.checkpoint(&token, None, &[wait.clone()], T0).unwrap();
    assert_eq!(
        answer["NewExecutionState"]["Operations"][0]["WaitDetails"]["ScheduledEndTimestamp"],
        json!((T0 + 5_000) as f64 / 1000.0)
    );
    assert_eq!(x.next_resume(), None, "the invocation that started the wait still runs");
    let usage = json!({"billedMs": 3});
    assert_eq!(
        x.end_invocation("req-1", T0, InvocationOutput::Pending, T0 + 3, Some(usage.clone())),
        Next::WaitUntil(Some(T0 + 5_000))
    );
    assert_eq!(x.next_deadline(), Some(T0 + 5_000));
    assert_eq!(x.next_resume(), Some(T0 + 5_000), "the wait's end resumes the function");
    let completed = x.events.last().unwrap();
    assert_eq!((completed.kind.as_str(), completed.usage.as_ref()), ("InvocationCompleted", Some(&usage)));
    assert!(
        completed.to_wire(true).get("Usage").is_none() && !completed.to_wire(true).to_string().contains("billedMs")
    );
    assert!(x.fire_due(T0 + 5_000));
    assert_eq!(x.next_deadline(), Some(T0 + 300_000), "only the execution's own limit is left");
    assert_eq!(x.next_resume(), None, "the execution's limit ends it rather than resuming it");
    let (_, envelope) = x.begin_invocation(1592590341, T0);
    let ops = envelope["InitialExecutionState"]["Operations"].as_array().unwrap();
    assert_eq!((ops[1]["Status"].as_str(), ops[1]["EndTimestamp"].as_i64()), (Some("SUCCEEDED"), Some(T0 + 5_000)));
    x.end_invocation("req-2", T0 + 5_001, InvocationOutput::Succeeded(None), T0 + 5_010, None);
    assert_eq!(
        kinds(&x),
        [
            (1, "ExecutionStarted"),
            (2, "WaitStarted"),
            (3, "InvocationCompleted"),
            (4, "WaitSucceeded"),
            (5, "InvocationCompleted"),
            (6, "ExecutionSucceeded"),
        ]
    );
    assert_eq!(x.events[1].to_wire(true)["WaitStartedDetails"]["Duration"], 5);
    // A second START of the same wait is refused.
    let mut y = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let (_, envelope) = y.begin_invocation(1592590342, T0);
    let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    let refused = y.checkpoint(&token, None, &[wait.clone(), wait], T0).unwrap_err();
    assert!(matches!(refused, DurableError::Invalid(m) if m.contains("Start is not allowed on a Wait operation")));
}

#[test]
fn tokens_are_single_use_a_retried_checkpoint_gets_the_same_answer_and_a_refused_one_changes_nothing() {
    let mut x = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let (_, envelope) = x.begin_invocation(1592590343, T0);
    let first = envelope["CheckpointToken"].as_str().unwrap().to_string();
    let answer = x.checkpoint(&first, Some("ct-1"), &[step("a", OperationAction::Start)], T0).unwrap();
    // botocore retrying the same request (same client token, same inbound token): the same answer, nothing
    // applied twice.
    assert_eq!(x.checkpoint(&first, Some("ct-1"), &[step("a", OperationAction::Start)], T0).unwrap(), answer);
    assert_eq!(x.events.len(), 2);
    // The used token, under another client token, is refused with the message the SDKs retry on.
    let stale = x.checkpoint(&first, Some("ct-2"), &[], T0).unwrap_err();
    assert!(stale.to_string().starts_with("Invalid checkpoint token"), "{stale}");
    // A batch with one bad update applies none of it.
    let second = token_of(&answer);
    let before = x.clone();
    let bad = [step("b", OperationAction::Start), step("zzz", OperationAction::Succeed)];
    let refused = x.checkpoint(&second, None, &bad, T0).unwrap_err();
    assert!(matches!(&refused, DurableError::Invalid(m) if m.contains("update 1 (operation zzz)")), "{refused}");
    assert_eq!(x, before);
    // An empty checkpoint refreshes: the token moves on and what changed meanwhile comes back.
    let refreshed = x.checkpoint(&second, None, &[], T0).unwrap();
    assert_ne!(token_of(&refreshed), second);
    // Once the invocation ended, its token is dead.
    x.end_invocation("req-1", T0, InvocationOutput::Pending, T0 + 1, None);
    let dead = x.checkpoint(&token_of(&refreshed), None, &[], T0 + 2).unwrap_err();
    assert_eq!(dead, DurableError::InvalidToken("no invocation of this execution is running".into()));
    // Paging the state does not use the token up.
    let (_, envelope) = x.begin_invocation(1592590344, T0);
    let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    let (page, next) = x.state_page(&token, 0, 1).unwrap();
    assert_eq!((page.len(), next), (1, Some(1)));
    let (page, next) = x.state_page(&token, 1, 100).unwrap();
    assert_eq!((page[0]["Id"].as_str(), next), (Some("a"), None));
    x.checkpoint(&token, None, &[], T0 + 3).unwrap();
}

#[test]
fn updates_must_name_known_contexts_keep_their_type_and_follow_each_types_rules() {
    let mut x = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let (_, envelope) = x.begin_invocation(1592590345, T0);
    let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    let refused = |x: &mut DurableExecution, updates: &[OperationUpdate]| {
        x.checkpoint(&token, None, updates, T0).unwrap_err().to_string()
    };
    let orphan = OperationUpdate { parent_id: Some("nope".into()), ..step("a", OperationAction::Start) };
    assert!(refused(&mut x, &[orphan]).contains("its parent nope is not a context"));
    let retry = step("a", OperationAction::Retry);
    assert!(refused(&mut x, &[step("a", OperationAction::Start), retry]).contains("NextAttemptDelaySeconds"));
    let wait = update("w", OperationType::Wait, OperationAction::Start);
    assert!(refused(&mut x, &[wait]).contains("WaitSeconds"));
    let retyped = [step("a", OperationAction::Start), update("a", OperationType::Wait, OperationAction::Cancel)];
    assert!(refused(&mut x, &retyped).contains("it is a Step operation, not Wait"));
    let early = [update("e", OperationType::Execution, OperationAction::Succeed), step("a", OperationAction::Start)];
    assert!(refused(&mut x, &early).contains("must be the checkpoint's last"));
    // A child context with a step inside it, started in one batch.
    let ctx = OperationUpdate {
        sub_type: Some("RunInChildContext".into()),
        ..update("c", OperationType::Context, OperationAction::Start)
    };
    let inner = OperationUpdate { parent_id: Some("c".into()), ..step("c-1", OperationAction::Start) };
    let mut close = update("c", OperationType::Context, OperationAction::Succeed);
    close.payload = Some("7".into());
    x.checkpoint(&token, None, &[ctx, inner, close], T0).unwrap();
    assert_eq!(kinds(&x)[1..], [(2, "ContextStarted"), (3, "StepStarted"), (4, "ContextSucceeded")]);
    assert_eq!(x.events[2].parent_id.as_deref(), Some("c"));
}

#[test]
fn a_callback_has_an_id_its_answer_wakes_the_execution_and_silence_times_it_out() {
    let mut x = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let (_, envelope) = x.begin_invocation(1592590346, T0);
    let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    let mut cb = update("cb", OperationType::Callback, OperationAction::Start);
    cb.callback_options = Some(CallbackOptions { timeout_seconds: Some(60), heartbeat_timeout_seconds: Some(10) });
    let answer = x.checkpoint(&token, None, &[cb.clone()], T0).unwrap();
    let id =
        answer["NewExecutionState"]["Operations"][0]["CallbackDetails"]["CallbackId"].as_str().unwrap().to_string();
    assert_eq!(parse_callback_id(&id), Some(("0d4f".to_string(), "cb".to_string())));
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)), "the API's pattern: {id}");
    assert_eq!(
        x.events[1].to_wire(true)["CallbackStartedDetails"],
        json!({"CallbackId": id, "Timeout": 60, "HeartbeatTimeout": 10})
    );
    assert_eq!(
        x.end_invocation("req-1", T0, InvocationOutput::Pending, T0 + 1, None),
        Next::WaitUntil(Some(T0 + 10_000))
    );
    assert_eq!(x.next_resume(), None, "when a callback is answered is not known ahead");
    // A heartbeat pushes the heartbeat timeout on; an answer while nothing runs asks for an invocation.
    assert_eq!(x.answer_callback("cb", None, T0 + 8_000), Ok(false));
    assert_eq!(x.next_deadline(), Some(T0 + 18_000));
    assert!(!x.wants_invocation(), "a heartbeat changes nothing the function waits for");
    assert_eq!(x.answer_callback("cb", Some(Ok("\"yes\"".into())), T0 + 9_000), Ok(true));
    assert!(x.wants_invocation(), "what another node's copy learns from the stored state alone");
    x.begin_invocation(1592590348, T0 + 9_001);
    assert!(!x.wants_invocation(), "an invocation runs");
    assert_eq!(
        x.answer_callback("cb", Some(Ok("again".into())), T0 + 9_001),
        Err(DurableError::CallbackClosed("the callback has already been completed or has timed out".into()))
    );
    assert_eq!(x.events.last().unwrap().to_wire(true)["CallbackSucceededDetails"]["Result"]["Payload"], "\"yes\"");
    assert!(matches!(x.answer_callback("nope", None, T0), Err(DurableError::NotFound(_))));
    // Silence past the heartbeat timeout: timed out, with the SDK's error type.
    let mut y = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let (_, envelope) = y.begin_invocation(1592590347, T0);
    let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    y.checkpoint(&token, None, &[cb], T0).unwrap();
    y.end_invocation("req-1", T0, InvocationOutput::Pending, T0 + 1, None);
    assert!(y.fire_due(T0 + 10_000));
    assert_eq!(y.operations[1].status, OperationStatus::TimedOut);
    assert_eq!(y.operations[1].error.as_ref().and_then(|e| e.error_type.as_deref()), Some("Callback.Heartbeat"));
    assert_eq!(y.events.last().unwrap().kind, "CallbackTimedOut");
}

#[test]
fn an_invocation_that_fails_is_tried_again_then_the_execution_fails() {
    let mut x = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let crash = ErrorObject::new("Runtime.ExitError", "exit status 1");
    for n in 1..MAX_INVOCATION_FAILURES {
        x.begin_invocation(1592590348, T0);
        let at = T0 + i64::from(n) * 10;
        assert_eq!(
            x.end_invocation("r", at, InvocationOutput::Error(crash.clone()), at, None),
            Next::WaitUntil(Some(at + INVOCATION_RETRY_MS))
        );
    }
    x.begin_invocation(1592590349, T0);
    assert_eq!(x.end_invocation("r", T0, InvocationOutput::Error(crash.clone()), T0 + 100, None), Next::Done);
    assert_eq!((x.status, x.error.as_ref()), (ExecutionStatus::Failed, Some(&crash)));
    let last = x.events.last().unwrap().to_wire(true);
    assert_eq!(last["ExecutionFailedDetails"]["Error"]["Payload"]["ErrorType"], "Runtime.ExitError");
    assert_eq!(x.events.iter().filter(|e| e.kind == "InvocationCompleted").count(), MAX_INVOCATION_FAILURES as usize);
}

#[test]
fn a_large_result_comes_from_the_execution_checkpoint_and_the_execution_can_time_out_or_be_stopped() {
    let mut x = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let (_, envelope) = x.begin_invocation(1592590350, T0);
    let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    let mut done = update("execution-result-1", OperationType::Execution, OperationAction::Succeed);
    done.payload = Some("\"big\"".into());
    let answer = x.checkpoint(&token, None, &[done], T0).unwrap();
    assert!(answer.get("CheckpointToken").is_none(), "no token after the execution's own update: {answer}");
    x.end_invocation("r", T0, InvocationOutput::Succeeded(Some(String::new())), T0 + 1, None);
    assert_eq!(x.result.as_deref(), Some("\"big\""));
    // Its limit passed: timed out, and nothing is due after.
    let mut y = DurableExecution::start(ARN, "run-1", "{}", 10, T0);
    assert_eq!(y.next_deadline(), Some(T0 + 10_000));
    assert!(y.fire_due(T0 + 10_000));
    assert_eq!((y.status, y.next_deadline()), (ExecutionStatus::TimedOut, None));
    assert_eq!(y.events.last().unwrap().kind, "ExecutionTimedOut");
    // Stopped.
    let mut z = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    z.stop(Some(ErrorObject::new("Stopped", "by hand")), T0 + 1).unwrap();
    assert_eq!((z.status, z.events.last().unwrap().kind.as_str()), (ExecutionStatus::Stopped, "ExecutionStopped"));
    assert!(z.stop(None, T0 + 2).is_err());
}

#[test]
fn updates_read_as_botocore_writes_them() {
    let body = json!({"Id": "s1", "Type": "STEP", "SubType": "Step", "Action": "RETRY", "Name": "flaky",
        "Error": {"ErrorType": "ValueError", "ErrorMessage": "no", "StackTrace": ["a"]},
        "StepOptions": {"NextAttemptDelaySeconds": 3}});
    let u: OperationUpdate = serde_json::from_value(body).unwrap();
    assert_eq!((u.kind, u.action, u.name.as_deref()), (OperationType::Step, OperationAction::Retry, Some("flaky")));
    assert_eq!(u.step_options.and_then(|o| o.next_attempt_delay_seconds), Some(3));
    assert_eq!(u.error.and_then(|e| e.stack_trace), Some(vec!["a".to_string()]));
    assert_eq!(execution_id(ARN), "0d4f");
    assert_eq!(execution_arn("arn:f:$LATEST", "n", "i"), "arn:f:$LATEST/durable-execution/n/i");
    assert_eq!(parse_callback_id("not base64!"), None);
}

#[test]
fn an_execution_is_stored_as_a_head_and_the_operations_and_events_that_changed() {
    let mut x = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let first = x.take_delta();
    assert_eq!((first.operations.len(), first.operations[0].0), (1, 0), "the EXECUTION operation");
    assert_eq!(first.events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["ExecutionStarted"]);
    assert_eq!(x.take_delta(), Delta::default(), "nothing new");
    let (_, envelope) = x.begin_invocation(7, T0);
    let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    let mut cb = update("cb", OperationType::Callback, OperationAction::Start);
    cb.callback_options = Some(CallbackOptions { timeout_seconds: None, heartbeat_timeout_seconds: Some(10) });
    let batch = [step("a", OperationAction::Start), cb];
    let answer = x.checkpoint(&token, None, &batch, T0 + 1).unwrap();
    let delta = x.take_delta();
    assert_eq!(delta.operations.iter().map(|(i, o)| (*i, o.id.as_str())).collect::<Vec<_>>(), [(1, "a"), (2, "cb")]);
    assert_eq!(delta.events.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 3]);
    // A heartbeat changes an operation without an event: it is written too.
    x.answer_callback("cb", None, T0 + 2).unwrap();
    assert_eq!(x.take_delta().operations.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [2]);
    // Read back from its parts, it goes on where it was: the same token is good, the next one too.
    let mut back = DurableExecution::from_parts(x.head().clone(), x.operations.clone(), x.events.clone());
    let next = token_of(&answer);
    let answer = back.checkpoint(&next, None, &[step("a", OperationAction::Succeed)], T0 + 3).unwrap();
    assert!(answer["CheckpointToken"].is_string());
    assert_eq!(
        back.take_delta().events.iter().map(|e| (e.id, e.kind.as_str())).collect::<Vec<_>>(),
        [(4, "StepSucceeded")]
    );
    // Its end changes the EXECUTION operation without touching it otherwise: written.
    back.end_invocation("r", T0, InvocationOutput::Succeeded(None), T0 + 4, None);
    let end = back.take_delta();
    assert!(end.operations.iter().any(|(i, o)| *i == 0 && o.status == OperationStatus::Succeeded), "{end:?}");
    assert_eq!(back.head().invocation_started_ms, None);
}

#[test]
fn tokens_cannot_be_guessed_and_an_invocation_that_never_ran_leaves_no_trace() {
    let mut x = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let (_, first) = x.begin_invocation(1, T0);
    let first = first["CheckpointToken"].as_str().unwrap().to_string();
    assert_eq!(x.head().invocation_started_ms, Some(T0));
    x.abandon_invocation();
    assert!(x.checkpoint(&first, None, &[], T0).is_err(), "an abandoned invocation's token is dead");
    assert_eq!((x.events.len(), x.head().failures), (1, 0), "no event, not a failure");
    let (_, second) = x.begin_invocation(2, T0 + 1);
    let second = second["CheckpointToken"].as_str().unwrap().to_string();
    assert_eq!(first.len(), second.len());
    assert_ne!(first[..16], second[..16], "the random part differs");
    // The same invocation number and sequence with another random part is refused.
    let forged = format!("{:016x}{}", 1, &second[16..]);
    assert!(matches!(x.checkpoint(&forged, None, &[], T0 + 2), Err(DurableError::InvalidToken(_))));
    x.checkpoint(&second, None, &[], T0 + 2).unwrap();
}

#[test]
fn an_answer_the_invocation_already_saw_does_not_invoke_it_again() {
    let mut x = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let (_, envelope) = x.begin_invocation(3, T0);
    let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    let answer =
        x.checkpoint(&token, None, &[update("cb", OperationType::Callback, OperationAction::Start)], T0).unwrap();
    // Answered while the invocation runs: no invocation asked for now…
    assert_eq!(x.answer_callback("cb", Some(Ok("1".into())), T0 + 1), Ok(false));
    // …and its next checkpoint's answer carries the result, so when it ends there is nothing new to see.
    let seen = x.checkpoint(&token_of(&answer), None, &[], T0 + 2).unwrap();
    assert_eq!(seen["NewExecutionState"]["Operations"][0]["CallbackDetails"]["Result"], "1");
    assert_eq!(x.end_invocation("r", T0, InvocationOutput::Pending, T0 + 3, None), Next::WaitUntil(Some(T0 + 300_000)));
    // Answered after its last checkpoint: it ends without having seen it, and is invoked again at once.
    let mut y = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let (_, envelope) = y.begin_invocation(4, T0);
    let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    y.checkpoint(&token, None, &[update("cb", OperationType::Callback, OperationAction::Start)], T0).unwrap();
    assert_eq!(y.answer_callback("cb", Some(Ok("1".into())), T0 + 1), Ok(false));
    assert_eq!(y.end_invocation("r", T0, InvocationOutput::Pending, T0 + 3, None), Next::Invoke);
}

#[test]
fn execution_arns_are_read_as_botocores_pattern_has_them() {
    let arn = parse_arn(ARN).unwrap();
    assert_eq!(
        (arn.region.as_str(), arn.account.as_str(), arn.function.as_str(), arn.version.as_str()),
        ("us-east-1", "123456789012", "greet", "$LATEST")
    );
    assert_eq!((arn.name.as_str(), arn.id.as_str()), ("run-1", "0d4f"));
    assert_eq!(
        parse_arn("arn:aws:lambda:eu-west-1:123456789012:function:f:7/durable-execution/n/i").unwrap().version,
        "7"
    );
    for bad in [
        "arn:aws:lambda:us-east-1:123456789012:function:greet/durable-execution/run-1/0d4f",
        "arn:aws:lambda:us-east-1:123456789012:function:greet:prod/durable-execution/run-1/0d4f",
        "arn:aws:lambda:us-east-1:12345:function:greet:$LATEST/durable-execution/run-1/0d4f",
        "arn:aws:s3:us-east-1:123456789012:function:greet:$LATEST/durable-execution/run-1/0d4f",
        "arn:aws:lambda:us-east-1:123456789012:function:greet:$LATEST/durable-execution/run 1/0d4f",
        "arn:aws:lambda:us-east-1:123456789012:function:greet:$LATEST/durable-execution/run-1",
    ] {
        assert_eq!(parse_arn(bad), None, "{bad}");
    }
}

#[test]
fn an_envelope_past_the_payload_limit_carries_a_marker_and_the_rest_is_read_with_the_token() {
    let mut x = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let (_, envelope) = x.begin_invocation(9, T0);
    assert_eq!(envelope["InitialExecutionState"]["NextMarker"], "", "all of a small execution fits");
    let mut token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    // Twelve steps of 1 MiB results: 5 fit (with the EXECUTION operation), the rest is paged.
    let big = format!("\"{}\"", "x".repeat(1024 * 1024));
    for n in 0..12 {
        let mut done = step(&format!("s{n}"), OperationAction::Succeed);
        done.payload = Some(big.clone());
        let answer = x.checkpoint(&token, None, &[step(&format!("s{n}"), OperationAction::Start), done], T0).unwrap();
        token = token_of(&answer);
    }
    x.end_invocation("r", T0, InvocationOutput::Pending, T0 + 1, None);
    let (_, envelope) = x.begin_invocation(10, T0 + 2);
    let carried = envelope["InitialExecutionState"]["Operations"].as_array().unwrap().len();
    assert!(serde_json::to_string(&envelope).unwrap().len() <= ENVELOPE_BYTES + 4096);
    assert_eq!(carried, 5, "the EXECUTION operation and four steps");
    assert_eq!(envelope["InitialExecutionState"]["NextMarker"], "5");
    let token = envelope["CheckpointToken"].as_str().unwrap();
    let (rest, next) = x.state_page(token, 5, 1000).unwrap();
    assert_eq!((rest.len(), next), (8, None), "the other eight, by the marker");
    assert_eq!(rest[0]["Id"], "s4");
}

#[test]
fn a_chained_invoke_is_started_by_the_sdk_and_ended_by_the_service_with_awss_events() {
    let mut x = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let (_, envelope) = x.begin_invocation(7, T0);
    let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    let mut call = update("inv", OperationType::ChainedInvoke, OperationAction::Start);
    call.chained_invoke_options =
        Some(ChainedInvokeOptions { function_name: "echo".into(), tenant_id: Some("t-1".into()) });
    call.payload = Some("\"hi\"".into());
    x.checkpoint(&token, None, &[call], T0).unwrap();
    // The service says what it started before the event is stored.
    x.describe_chained_invoke("inv", "3", Some("arn:child"));
    let started = x.events.last().unwrap().to_wire(true);
    assert_eq!(
        started["ChainedInvokeStartedDetails"],
        json!({"FunctionName": "echo", "TenantId": "t-1", "Input": {"Payload": "\"hi\"", "Truncated": false}, "ExecutedVersion": "3",
               "DurableExecutionArn": "arn:child"})
    );
    assert_eq!(x.chained_invokes(), vec![("inv".to_string(), "echo".to_string(), Some("\"hi\"".to_string()))]);
    assert_eq!(
        x.end_invocation("req-1", T0, InvocationOutput::Pending, T0 + 1, None),
        Next::WaitUntil(Some(T0 + 300_000))
    );
    // It ends while nothing runs: the execution is to be invoked, and the SDK reads the result.
    assert_eq!(x.end_chained_invoke("inv", Ok(Some("\"hi\"".into())), T0 + 5), Ok(true));
    assert!(x.wants_invocation() && x.chained_invokes().is_empty());
    let ended = x.events.last().unwrap().to_wire(true);
    assert_eq!(ended["EventType"], "ChainedInvokeSucceeded");
    assert_eq!(ended["ChainedInvokeSucceededDetails"]["Result"]["Payload"], "\"hi\"");
    assert_eq!(x.operations[1].to_wire(true)["ChainedInvokeDetails"]["Result"], "\"hi\"");
    // Told again (a restart dispatched it twice): nothing changes.
    let events = x.events.len();
    assert_eq!(x.end_chained_invoke("inv", Err(ErrorObject::new("X", "y")), T0 + 6), Ok(false));
    assert_eq!(x.events.len(), events);
    assert!(matches!(x.end_chained_invoke("nope", Ok(None), T0), Err(DurableError::NotFound(_))));
    // A failure is ChainedInvokeFailed with the invoked function's error.
    let mut y = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let (_, envelope) = y.begin_invocation(8, T0);
    let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
    let mut call = update("inv", OperationType::ChainedInvoke, OperationAction::Start);
    call.chained_invoke_options = Some(ChainedInvokeOptions { function_name: "echo".into(), ..Default::default() });
    y.checkpoint(&token, None, &[call], T0).unwrap();
    // While an invocation runs, it learns of the end from its next checkpoint: no new invocation.
    assert_eq!(y.end_chained_invoke("inv", Err(ErrorObject::new("ValueError", "bad")), T0 + 1), Ok(false));
    let failed = y.events.last().unwrap().to_wire(true);
    assert_eq!(failed["ChainedInvokeFailedDetails"]["Error"]["Payload"]["ErrorType"], "ValueError");
}

#[test]
fn a_chained_invokes_end_waits_for_the_invocation_that_started_it_to_suspend_or_change_something() {
    let started = |x: &mut DurableExecution, op: &str| {
        let (_, envelope) = x.begin_invocation(7, T0);
        let token = envelope["CheckpointToken"].as_str().unwrap().to_string();
        let mut call = update(op, OperationType::ChainedInvoke, OperationAction::Start);
        call.chained_invoke_options = Some(ChainedInvokeOptions { function_name: "echo".into(), ..Default::default() });
        token_of(&x.checkpoint(&token, None, &[call], T0).unwrap())
    };
    // The invoked function answers before its caller returns PENDING: held, then recorded after
    // InvocationCompleted.
    let mut x = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    started(&mut x, "inv");
    assert!(x.holds_chained_end("inv"), "the caller has not suspended yet");
    assert!(!x.holds_chained_end("nope"));
    x.end_invocation("req-1", T0, InvocationOutput::Pending, T0 + 1, None);
    assert!(!x.holds_chained_end("inv"), "the caller suspended");
    assert_eq!(x.end_chained_invoke("inv", Ok(None), T0 + 2), Ok(true));
    let kinds: Vec<&str> = x.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds[kinds.len() - 2..], ["InvocationCompleted", "ChainedInvokeSucceeded"]);
    assert!(!x.holds_chained_end("inv"), "ended: nothing to hold");
    // The caller goes on and changes something (a step): the end is recorded at once, and its next
    // checkpoint's answer carries it.
    let mut y = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    let token = started(&mut y, "inv");
    y.checkpoint(&token, None, &[step("s", OperationAction::Start)], T0 + 1).unwrap();
    assert!(!y.holds_chained_end("inv"), "the caller changed the execution since");
    // Started by an earlier invocation (taken on again after a restart): never held.
    let mut z = DurableExecution::start(ARN, "run-1", "{}", 300, T0);
    started(&mut z, "inv");
    z.end_invocation("req-1", T0, InvocationOutput::Pending, T0 + 1, None);
    z.begin_invocation(8, T0 + 10);
    assert!(!z.holds_chained_end("inv"), "started before this invocation");
}

#[test]
fn an_ended_execution_expires_its_retention_days_after_its_end() {
    assert_eq!(expires_at(T0, 14), T0 + 14 * 86_400_000);
    assert_eq!(expires_at(T0, 1), T0 + 86_400_000);
    assert_eq!(expires_at(i64::MAX - 5, 90), i64::MAX, "saturates rather than wrapping into the past");
}
