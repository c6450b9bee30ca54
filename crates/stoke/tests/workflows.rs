//! Workflows against a real server with real functions: every state type, Retry and Catch, the input/output
//! processing, errors for bad definitions and requests, and executions resuming after `kill -9`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const DOUBLE: &str = "def handler(event, context):\n    return {'n': event['n'] * 2}\n";
const FLAKY: &str = r#"
COUNT = 0
def handler(event, context):
    global COUNT
    COUNT += 1
    if COUNT < 3:
        raise RuntimeError("not yet, attempt %d" % COUNT)
    return {"attempts": COUNT}
"#;
const REJECT: &str = r#"
class OrderRejected(Exception):
    pass
def handler(event, context):
    raise OrderRejected("order %s is over the limit" % event.get("id"))
"#;

fn create_workflow(s: &TestServer, name: &str, definition: Value) {
    let (status, body) = s.post("/v1/workflows", json!({"name": name, "definition": definition}));
    assert_eq!(status, 201, "{body}");
}

fn run(s: &TestServer, name: &str, input: Value) -> Value {
    let (status, body) = s.post(&format!("/v1/workflows/{name}/run"), json!({"input": input}));
    assert_eq!(status, 200, "{body}");
    body
}

fn history(s: &TestServer, id: &str) -> Vec<Value> {
    let (status, body) = s.get(&format!("/v1/executions/{id}/history"));
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

fn kinds(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap().to_string()).collect()
}

#[test]
fn every_state_type_runs_with_retry_catch_and_io_processing() {
    let s = TestServer::start();
    python_fn(&s, "double", DOUBLE, json!({}));
    python_fn(&s, "flaky", FLAKY, json!({}));
    python_fn(&s, "reject", REJECT, json!({}));
    let arn = format!("arn:aws:lambda:us-east-1:{}:function:double", s.account_id);
    create_workflow(
        &s,
        "orders",
        json!({
            "Comment": "all JSONPath state types",
            "StartAt": "Seed",
            "States": {
                "Seed": {"Type": "Pass", "Parameters": {"n.$": "$.start", "items.$": "States.ArrayRange(1, 3, 1)", "id": "A-1"}, "Next": "Double"},
                "Double": {"Type": "Task", "Resource": arn, "ResultPath": "$.doubled", "Next": "Big?"},
                "Big?": {"Type": "Choice", "Choices": [
                    {"Variable": "$.doubled.n", "NumericGreaterThan": 100, "Next": "TooBig"}],
                    "Default": "Both"},
                "TooBig": {"Type": "Fail", "Error": "TooBig", "Cause": "n went over 100"},
                "Both": {"Type": "Parallel", "ResultPath": "$.both", "Next": "Each", "Branches": [
                    {"StartAt": "ViaIntegration", "States": {"ViaIntegration": {"Type": "Task",
                        "Resource": "arn:aws:states:::lambda:invoke",
                        "Parameters": {"FunctionName": "double", "Payload": {"n.$": "$.doubled.n"}},
                        "OutputPath": "$.Payload", "End": true}}},
                    {"StartAt": "Constant", "States": {"Constant": {"Type": "Pass", "Result": "right", "End": true}}}
                ]},
                "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                    "ItemSelector": {"n.$": "$$.Map.Item.Value", "at.$": "$$.Map.Item.Index"},
                    "ItemProcessor": {"StartAt": "DoubleItem", "States": {
                        "DoubleItem": {"Type": "Task", "Resource": "double", "ResultSelector": {"v.$": "$.n"}, "End": true}}},
                    "ResultPath": "$.mapped", "Next": "Pause"},
                "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Flaky"},
                "Flaky": {"Type": "Task", "Resource": "flaky", "ResultPath": "$.flaky",
                    "Retry": [{"ErrorEquals": ["RuntimeError"], "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 1.0}],
                    "Next": "Reject"},
                "Reject": {"Type": "Task", "Resource": "reject",
                    "Catch": [{"ErrorEquals": ["OrderRejected"], "ResultPath": "$.rejection", "Next": "Done"}],
                    "Next": "Done"},
                "Done": {"Type": "Succeed", "OutputPath": "$['doubled','both','mapped','flaky','rejection']"}
            }
        }),
    );
    let e = run(&s, "orders", json!({"start": 5}));
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    let out = &e["output"];
    assert_eq!(out[0], json!({"n": 10}), "{out}");
    assert_eq!(out[1], json!([{"n": 20}, "right"]), "{out}");
    assert_eq!(out[2], json!([{"v": 2}, {"v": 4}, {"v": 6}]), "{out}");
    assert_eq!(out[3], json!({"attempts": 3}), "{out}");
    assert_eq!(out[4]["Error"], "OrderRejected", "{out}");
    assert!(out[4]["Cause"].as_str().unwrap().contains("order A-1 is over the limit"), "{out}");

    let events = history(&s, e["id"].as_str().unwrap());
    let k = kinds(&events);
    assert_eq!(k.first().map(String::as_str), Some("ExecutionStarted"));
    assert_eq!(k.last().map(String::as_str), Some("ExecutionSucceeded"));
    for expected in [
        "PassStateEntered",
        "ChoiceStateExited",
        "ParallelStateSucceeded",
        "MapStateStarted",
        "MapIterationSucceeded",
        "WaitStateExited",
        "TaskScheduled",
        "TaskSucceeded",
        "SucceedStateEntered",
    ] {
        assert!(k.iter().any(|x| x == expected), "no {expected} in {k:?}");
    }
    let flaky_failures = events
        .iter()
        .filter(|e| e["type"] == "LambdaFunctionFailed" && e["details"]["error"] == "RuntimeError")
        .count();
    assert_eq!(flaky_failures, 2, "two failed attempts before the retry succeeded");
    // Every attempt records its start, as Step Functions does: Scheduled → Started → its end (branches and
    // iterations interleave: an attempt's events are those of its scope, step and attempt).
    for (i, e) in events.iter().enumerate() {
        let prefix = match e["type"].as_str() {
            Some("LambdaFunctionScheduled") => "LambdaFunction",
            Some("TaskScheduled") => "Task",
            _ => continue,
        };
        let same = |o: &&Value| o["scope"] == e["scope"] && o["step"] == e["step"] && o["attempt"] == e["attempt"];
        let after: Vec<&str> = events[i + 1..].iter().filter(same).filter_map(|o| o["type"].as_str()).collect();
        assert_eq!(after.first(), Some(&format!("{prefix}Started").as_str()), "{e}: then {after:?}");
        let end = after.get(1).copied().unwrap_or_default();
        assert!(end.ends_with("Succeeded") || end.ends_with("Failed"), "{e}: then {after:?}");
    }
    let count = |kind: &str| k.iter().filter(|x| *x == kind).count();
    assert!(count("LambdaFunctionStarted") >= 3, "flaky's three attempts at least: {k:?}");
    assert_eq!(count("LambdaFunctionStarted"), count("LambdaFunctionScheduled"), "{k:?}");
    assert_eq!(count("TaskStarted"), count("TaskScheduled"), "{k:?}");
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "event ids are consecutive: {ids:?}");

    // The Choice's other branch ends the execution FAILED with the Fail state's error.
    let e = run(&s, "orders", json!({"start": 60}));
    assert_eq!(e["status"], "FAILED", "{e}");
    assert_eq!(e["error"], "TooBig");
    assert_eq!(e["cause"], "n went over 100");

    // An uncaught function error fails the execution with the function's errorType.
    create_workflow(
        &s,
        "rejecting",
        json!({"StartAt": "R", "States": {"R": {"Type": "Task", "Resource": "reject", "End": true}}}),
    );
    let e = run(&s, "rejecting", json!({"id": 7}));
    assert_eq!(e["status"], "FAILED");
    assert_eq!(e["error"], "OrderRejected");

    // A missing function is Lambda's ResourceNotFoundException, catchable like any error.
    create_workflow(
        &s,
        "dangling",
        json!({"StartAt": "R", "States": {"R": {"Type": "Task", "Resource": "nobody", "End": true}}}),
    );
    let e = run(&s, "dangling", json!({}));
    assert_eq!(e["error"], "Lambda.ResourceNotFoundException", "{e}");

    // Listing, filtering and describing executions.
    let (status, list) = s.get("/v1/workflows/orders/executions?status=FAILED");
    assert_eq!(status, 200);
    assert_eq!(list["executions"].as_array().unwrap().len(), 1, "{list}");
    let (_, all) = s.get("/v1/workflows/orders/executions");
    assert_eq!(all["executions"].as_array().unwrap().len(), 2);
}

#[test]
fn timeouts_and_stop_end_executions() {
    let s = TestServer::start();
    python_fn(
        &s,
        "sleepy",
        "import time\ndef handler(e, c):\n    time.sleep(e.get('s', 5))\n    return 'woke'\n",
        json!({"timeout_s": 30}),
    );
    create_workflow(
        &s,
        "task-timeout",
        json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "sleepy", "TimeoutSeconds": 1,
        "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "Late"}], "End": true}, "Late": {"Type": "Pass", "Result": "gave up", "End": true}}}),
    );
    let e = run(&s, "task-timeout", json!({"s": 5}));
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    assert_eq!(e["output"], "gave up");

    create_workflow(
        &s,
        "heartbeat",
        json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "sleepy",
            "TimeoutSeconds": 20, "HeartbeatSeconds": 1, "End": true}}}),
    );
    let e = run(&s, "heartbeat", json!({"s": 5}));
    assert_eq!((e["status"].as_str(), e["error"].as_str()), (Some("FAILED"), Some("States.HeartbeatTimeout")), "{e}");
    create_workflow(
        &s,
        "machine-timeout",
        json!({"TimeoutSeconds": 1, "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 30, "End": true}}}),
    );
    let e = run(&s, "machine-timeout", json!({}));
    assert_eq!(e["status"], "TIMED_OUT", "{e}");
    assert!(e["duration_ms"].as_i64().unwrap() < 10_000);

    create_workflow(&s, "long", json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": true}}}));
    let (status, e) = s.post("/v1/workflows/long/executions", json!({"name": "to-stop"}));
    assert_eq!(status, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_string();
    let (status, stopped) = s.post(&format!("/v1/executions/{id}/stop"), json!({"error": "Manual", "cause": "test"}));
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["status"], "ABORTED");
    assert_eq!(kinds(&history(&s, &id)).last().map(String::as_str), Some("ExecutionAborted"));
    let again = s.post(&format!("/v1/executions/{id}/stop"), json!({}));
    assert_error(&again, 409, "execution_not_running", "already ended");
    let dup = s.post("/v1/workflows/long/executions", json!({"name": "to-stop"}));
    assert_error(&dup, 409, "conflict", "already has an execution named to-stop");
}

#[test]
fn bad_definitions_and_requests_get_clear_errors() {
    let s = TestServer::start();
    let bad = s.post(
        "/v1/workflows",
        json!({"name": "broken", "definition": {"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "Missing"}, "B": {"Type": "Choice", "Choices": []}}}}),
    );
    assert_error(&bad, 400, "invalid_definition", "MISSING_TRANSITION_TARGET at States.A.Next");
    assert!(bad.1["error"]["message"].as_str().unwrap().contains("States.B.Choices"), "{}", bad.1);
    assert_eq!(bad.1["error"]["field"], "definition");
    assert_error(
        &s.post("/v1/workflows", json!({"name": "x", "definition": "{not json"})),
        400,
        "invalid_definition",
        "not JSON",
    );
    assert_error(
        &s.post("/v1/workflows", json!({"name": "x", "definition": 5})),
        400,
        "invalid_definition",
        "JSON object",
    );
    assert_error(
        &s.post("/v1/workflows", json!({"name": "has space", "definition": {}})),
        400,
        "invalid_parameter",
        "letters, digits",
    );
    assert_error(&s.post("/v1/workflows", json!({"name": "x"})), 400, "invalid_json", "definition");

    let ok = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}});
    create_workflow(&s, "ok", ok.clone());
    assert_error(&s.post("/v1/workflows", json!({"name": "ok", "definition": ok})), 409, "conflict", "already exists");
    let stale = s.call(s.req(Method::PUT, "/v1/workflows/ok").json(&json!({"definition": ok, "revision": 7})));
    assert_error(&stale, 409, "concurrent_modification", "revision 1");
    let (status, updated) =
        s.call(s.req(Method::PUT, "/v1/workflows/ok").json(&json!({"definition": ok, "revision": 1})));
    assert_eq!((status, updated["revision"].as_u64()), (200, Some(2)), "{updated}");
    assert_error(&s.get("/v1/workflows/nope"), 404, "workflow_not_found", "does not exist");
    assert_error(&s.post("/v1/workflows/nope/run", json!({})), 404, "workflow_not_found", "nope");
    assert_error(&s.get("/v1/executions/nope"), 404, "execution_not_found", "nope");
    assert_error(&s.post("/v1/workflows/ok/run", json!({"name": "bad name!"})), 400, "invalid_parameter", "letters");
    assert_error(&s.get("/v1/workflows/ok/executions?status=DONE"), 400, "invalid_parameter", "RUNNING");
    // Another account sees none of it.
    let (other_key, _) = s.new_account("other");
    let (status, _) = s.call(s.req_as(&other_key, Method::GET, "/v1/workflows/ok"));
    assert_eq!(status, 404);
    let e = run(&s, "ok", json!({"x": 1}));
    let (status, _) =
        s.call(s.req_as(&other_key, Method::GET, &format!("/v1/executions/{}", e["id"].as_str().unwrap())));
    assert_eq!(status, 404);
    let (status, _) = s.call(s.req(Method::DELETE, "/v1/workflows/ok"));
    assert_eq!(status, 204);
    let (status, kept) = s.get(&format!("/v1/executions/{}", e["id"].as_str().unwrap()));
    assert_eq!((status, &kept["output"]), (200, &json!({"x": 1})), "executions outlive their workflow");
}

/// Polls until the execution's history has an event of `kind`.
fn wait_for_event(s: &TestServer, id: &str, kind: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kinds(&history(s, id)).iter().any(|k| k == kind) {
        assert!(Instant::now() < deadline, "no {kind} in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn executions_resume_after_kill9_without_rerunning_finished_steps() {
    let mut s = TestServer::start();
    python_fn(&s, "double", DOUBLE, json!({}));
    python_fn(
        &s,
        "sleepy",
        "import time\ndef handler(e, c):\n    time.sleep(2)\n    return {'n': e['n'] + 1}\n",
        json!({"timeout_s": 30}),
    );
    create_workflow(
        &s,
        "durable",
        json!({"StartAt": "First", "States": {
        "First": {"Type": "Task", "Resource": "double", "Next": "Hold"},
        "Hold": {"Type": "Wait", "Seconds": 2, "Next": "Slow"},
        "Slow": {"Type": "Task", "Resource": "sleepy", "Next": "Last"},
        "Last": {"Type": "Task", "Resource": "double", "End": true}}}),
    );

    // Killed during the Wait: First must not run again, and the Wait keeps its deadline.
    let (_, e) = s.post("/v1/workflows/durable/executions", json!({"input": {"n": 1}}));
    let waiting = e["id"].as_str().unwrap().to_string();
    wait_for_event(&s, &waiting, "WaitStateEntered");
    s.kill9();
    s.launch();
    let done = execution_done(&s, &waiting);
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["output"], json!({"n": 6}), "(1*2, +1, *2)");
    let events = history(&s, &waiting);
    let scheduled: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "LambdaFunctionScheduled")
        .map(|e| e["details"]["resource"].as_str().unwrap())
        .collect();
    assert_eq!(scheduled, ["double", "sleepy", "double"], "First ran once: {scheduled:?}");

    // Killed while Slow is in flight: Slow runs again (at-least-once) and the execution completes.
    let (_, e) = s.post("/v1/workflows/durable/executions", json!({"input": {"n": 2}}));
    let flying = e["id"].as_str().unwrap().to_string();
    wait_for_event(&s, &flying, "WaitStateExited");
    std::thread::sleep(Duration::from_millis(500));
    s.kill9();
    s.launch();
    let done = execution_done(&s, &flying);
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["output"], json!({"n": 10}));
    let k = kinds(&history(&s, &flying));
    assert_eq!(k.iter().filter(|k| *k == "ExecutionStarted").count(), 1);
    assert_eq!(k.iter().filter(|k| *k == "LambdaFunctionSucceeded").count(), 3, "{k:?}");
}

#[test]
fn jsonata_states_and_variables_run_and_survive_kill9() {
    let mut s = TestServer::start();
    python_fn(&s, "double", DOUBLE, json!({}));
    create_workflow(
        &s,
        "ata",
        json!({"QueryLanguage": "JSONata", "StartAt": "Init", "States": {
            "Init": {"Type": "Pass", "Next": "Hold",
                     "Assign": {"factor": "{% $states.input.factor %}", "seen": [], "id": "{% $states.context.Execution.Name %}"}},
            "Hold": {"Type": "Wait", "Seconds": "{% $factor %}", "Next": "Double",
                     "Assign": {"seen": "{% $append($seen, 'hold') %}"}},
            "Double": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "Fan",
                       "Arguments": {"FunctionName": "double", "Payload": {"n": "{% $states.input.n * $factor %}"}},
                       "Output": "{% $states.result.Payload %}",
                       "Assign": {"doubled": "{% $states.result.Payload.n %}"}},
            "Fan": {"Type": "Map", "Items": "{% $range(1, 3, 1) %}", "Next": "Check",
                    "ItemSelector": {"n": "{% $states.context.Map.Item.Value * $factor %}"},
                    "ItemProcessor": {"StartAt": "D", "States": {
                        "D": {"Type": "Task", "Resource": "double", "End": true,
                              "Output": "{% $states.result.n + $doubled %}"}}},
                    "Output": {"sums": "{% $states.result %}"}},
            "Check": {"Type": "Choice", "Default": "Small",
                      "Choices": [{"Condition": "{% $sum($states.input.sums) > 100 %}", "Next": "Big",
                                   "Assign": {"size": "big"}}]},
            "Big": {"Type": "Succeed", "Output": {"size": "{% $size %}", "seen": "{% $seen %}", "id": "{% $id %}",
                                                  "sums": "{% $states.input.sums %}"}},
            "Small": {"Type": "Fail", "Error": "TooSmall", "Cause": "{% 'sum was ' & $string($sum($states.input.sums)) %}"}
        }}),
    );

    // Killed during the Wait: the variables assigned before it come back from the history.
    let (_, e) = s.post("/v1/workflows/ata/executions", json!({"input": {"n": 10, "factor": 2}, "name": "ata-1"}));
    let id = e["id"].as_str().unwrap().to_string();
    wait_for_event(&s, &id, "WaitStateEntered");
    s.kill9();
    s.launch();
    let done = execution_done(&s, &id);
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    // doubled = 10*2*2 = 40; items 2, 4, 6 doubled plus 40.
    assert_eq!(done["output"], json!({"size": "big", "seen": ["hold"], "id": "ata-1", "sums": [44, 48, 52]}));
    let events = history(&s, &id);
    let init = events.iter().find(|e| e["type"] == "PassStateExited").unwrap();
    assert_eq!(init["details"]["assignedVariables"], json!({"factor": 2, "seen": [], "id": "ata-1"}), "{init}");

    // The Fail state's Cause is an expression.
    let done = run(&s, "ata", json!({"n": 0, "factor": 0}));
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!((done["error"].as_str(), done["cause"].as_str()), (Some("TooSmall"), Some("sum was 0")));

    // An expression that gives nothing fails the execution with Step Functions' cause.
    create_workflow(
        &s,
        "ata-undefined",
        json!({"QueryLanguage": "JSONata", "StartAt": "P", "States": {
            "P": {"Type": "Pass", "End": true, "Output": {"v": "{% $states.input.missing %}"}}}}),
    );
    let done = run(&s, "ata-undefined", json!({}));
    assert_eq!(done["error"], "States.QueryEvaluationError", "{done}");
    assert_eq!(
        done["cause"],
        "An error occurred while executing the state 'P' (entered at the event id #2). The JSONata expression \
         '$states.input.missing' specified for the field 'Output/v' returned nothing (undefined)."
    );

    // A bad expression is refused when the workflow is created.
    let (status, body) = s.post(
        "/v1/workflows",
        json!({"name": "bad", "definition": {"QueryLanguage": "JSONata", "StartAt": "P", "States": {
            "P": {"Type": "Pass", "End": true, "Output": "{% 1 + %}"}}}}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("S0207"), "{body}");
}

#[test]
fn cli_creates_runs_and_follows_workflows() {
    let s = TestServer::start();
    python_fn(&s, "double", DOUBLE, json!({}));
    let file = s.dir.join("flow.asl.json");
    std::fs::write(
        &file,
        json!({"StartAt": "D", "States": {"D": {"Type": "Task", "Resource": "double", "End": true}}}).to_string(),
    )
    .unwrap();
    let out = s.cli().args(["wf", "create", "flow"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = s.cli().args(["wf", "run", "flow", "--input", r#"{"n": 21}"#]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("\"n\": 42"), "{stdout}");
    assert!(stderr.contains("→ D (Task)") && stderr.contains("✓ D"), "progress shows each state: {stderr}");
    let out = s.cli().args(["wf", "ls"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("flow"));
    let out = s.cli().args(["wf", "run", "flow", "--input", r#"{"m": 1}"#]).output().unwrap();
    assert!(!out.status.success(), "a failed execution fails the command");
    assert!(String::from_utf8_lossy(&out.stderr).contains("KeyError"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&file, "{\"StartAt\": \"X\", \"States\": {}}").unwrap();
    let out = s.cli().args(["wf", "update", "flow"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid_definition"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A role given on the command line is shown and read by the machine as $$.Execution.RoleArn.
    let role = "arn:aws:iam::123456789012:role/flows";
    std::fs::write(
        &file,
        json!({"StartAt": "R", "States": {"R": {"Type": "Pass", "Parameters": {"role.$": "$$.Execution.RoleArn"},
               "End": true}}})
        .to_string(),
    )
    .unwrap();
    let out = s.cli().args(["wf", "create", "roles", "--role-arn", role]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("role") && l.ends_with(role)), "{stdout}");
    let out = s.cli().args(["wf", "run", "roles"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(role), "{}", String::from_utf8_lossy(&out.stdout));
    let out = s.cli().args(["wf", "update", "roles", "--role-arn", ""]).arg(&file).output().unwrap();
    assert!(!out.status.success(), "an empty role is refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("role ARN must be 1 to 256 characters"), "{stderr}");
}

const ECHO: &str = "def handler(event, context):\n    return event\n";
const RAISE: &str = r#"
import builtins
def handler(event, context):
    raise getattr(builtins, event["raise"])("raised on purpose")
"#;

/// Every state machine in `tests/asl-corpus/` runs each of its cases against a real server and ends with
/// the expected output or error. The corpus covers every state type, the processing order, paths,
/// templates, intrinsics, Choice operators, Retry/Catch, Parallel and Map semantics.
#[test]
fn the_corpus_of_state_machines_gives_the_expected_results() {
    let s = TestServer::start();
    python_fn(&s, "echo", ECHO, json!({}));
    python_fn(&s, "fail", RAISE, json!({}));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/asl-corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 40, "the corpus has {} machines", files.len());
    let mut failures = Vec::new();
    let mut cases = 0;
    for file in &files {
        let name = file.file_stem().unwrap().to_string_lossy().replace('.', "-");
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let (status, body) = s.post("/v1/workflows", json!({"name": name, "definition": doc["definition"]}));
        if status != 201 {
            failures.push(format!("{name}: not accepted: {body}"));
            continue;
        }
        for case in doc["cases"].as_array().unwrap() {
            cases += 1;
            let e = run(&s, &name, case["input"].clone());
            let got = match e["status"].as_str() {
                Some("SUCCEEDED") => Ok(e["output"].clone()),
                _ => Err((e["error"].clone(), e["cause"].as_str().unwrap_or_default().to_string())),
            };
            let ok = match (&got, case.get("output"), case.get("error")) {
                (Ok(out), Some(want), None) => out == want,
                (Err((error, cause)), None, Some(want)) => {
                    error == want && case["cause_contains"].as_str().is_none_or(|c| cause.contains(c))
                }
                _ => false,
            };
            if !ok {
                failures.push(format!("{name} with input {}: got {got:?}, wanted {case}", case["input"]));
            }
            // How many events of each type the history holds, where the case says.
            if let Some(want) = case.get("events").and_then(Value::as_object) {
                let seen = kinds(&history(&s, e["id"].as_str().unwrap()));
                for (kind, n) in want {
                    let count = seen.iter().filter(|k| *k == kind).count() as u64;
                    if Some(count) != n.as_u64() {
                        failures
                            .push(format!("{name} with input {}: {count} {kind} events, wanted {n}", case["input"]));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {cases} cases failed:\n{}", failures.len(), failures.join("\n"));
}

/// A distributed Map's children are executions of their own, driven by their parent: killed mid-run, the
/// parent resumes its map run (finished children keep their results, the others resume from their own
/// histories, none starts twice); stopped, its running children end ABORTED with it and none is resumed.
#[test]
fn distributed_maps_resume_after_kill9_and_stop_with_their_children() {
    let mut s = TestServer::start();
    let map = |seconds: u64| {
        json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "End": true, "Label": "Slow",
            "ItemsPath": "$.items", "MaxConcurrency": 2,
            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"}, "StartAt": "Hold", "States": {
                "Hold": {"Type": "Wait", "Seconds": seconds, "Next": "Done"},
                "Done": {"Type": "Pass", "End": true}}}}}})
    };
    create_workflow(&s, "dist", map(1));
    let items = json!([{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]);
    let (_, e) = s.post("/v1/workflows/dist/executions", json!({"input": {"items": items}}));
    let id = e["id"].as_str().unwrap().to_string();
    wait_for_event(&s, &id, "MapRunStarted");
    std::thread::sleep(Duration::from_millis(300));
    s.kill9();
    s.launch();
    let done = execution_done(&s, &id);
    assert_eq!((&done["status"], &done["output"]), (&json!("SUCCEEDED"), &items), "{done}");
    let events = kinds(&history(&s, &id));
    for kind in ["MapRunStarted", "MapRunSucceeded"] {
        assert_eq!(events.iter().filter(|k| *k == kind).count(), 1, "{kind} once: {events:?}");
    }
    assert!(!events.iter().any(|k| k.starts_with("MapIteration") || k.starts_with("Wait")), "{events:?}");
    let (status, runs) = s.get(&format!("/v1/executions/{id}/map-runs"));
    assert_eq!(status, 200, "{runs}");
    let run = &runs["map_runs"][0];
    assert_eq!((run["status"].as_str(), run["children"].as_str()), (Some("SUCCEEDED"), Some("dist/Slow")), "{run}");
    assert_eq!(run["execution_counts"]["succeeded"], 4, "four children, none twice: {run}");
    assert_eq!(run["execution_counts"]["total"], 4, "{run}");
    let cli = s.cli().args(["wf", "map-runs", &id]).output().unwrap();
    let printed = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success() && printed.contains(run["id"].as_str().unwrap()), "{printed}");
    assert!(printed.contains("SUCCEEDED") && printed.contains("dist/Slow"), "{printed}");
    // The children, natively: each an execution whose history the usual routes give.
    let run_id = run["id"].as_str().unwrap();
    let (status, children) = s.get(&format!("/v1/executions/{id}/map-runs/{run_id}/executions"));
    assert_eq!(status, 200, "{children}");
    let children = children["executions"].as_array().unwrap().clone();
    assert_eq!(children.len(), 4, "{children:?}");
    assert!(children.iter().all(|c| c["workflow"] == "dist/Slow" && c["status"] == "SUCCEEDED"), "{children:?}");
    let child = children[0]["id"].as_str().unwrap();
    let child_events = kinds(&history(&s, child));
    assert_eq!(child_events.first().map(String::as_str), Some("ExecutionStarted"), "{child_events:?}");
    assert!(child_events.iter().any(|k| k == "WaitStateEntered"), "the child's own states: {child_events:?}");
    let cli = s.cli().args(["wf", "map-runs", &id, "--children", run_id]).output().unwrap();
    let printed = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success() && printed.contains(child), "{printed}");
    assert_error(
        &s.get(&format!("/v1/executions/{id}/map-runs/nope/executions")),
        404,
        "execution_not_found",
        "no map run nope",
    );

    // Stopped: the parent and its running children end ABORTED; the children not started stay pending.
    create_workflow(&s, "long", map(60));
    let (_, e) = s.post("/v1/workflows/long/executions", json!({"input": {"items": items}}));
    let id = e["id"].as_str().unwrap().to_string();
    wait_for_event(&s, &id, "MapRunStarted");
    std::thread::sleep(Duration::from_millis(300));
    let (status, stopped) = s.post(&format!("/v1/executions/{id}/stop"), json!({"error": "Halt"}));
    assert_eq!((status, stopped["status"].as_str()), (200, Some("ABORTED")), "{stopped}");
    let counts = |s: &TestServer, id: &str| s.get(&format!("/v1/executions/{id}/map-runs")).1["map_runs"][0].clone();
    let run = counts(&s, &id);
    assert_eq!(run["status"], "ABORTED", "{run}");
    let c = &run["execution_counts"];
    assert_eq!(
        (c["aborted"].as_u64(), c["pending"].as_u64(), c["running"].as_u64()),
        (Some(2), Some(2), Some(0)),
        "{run}"
    );
    // Nothing resumes them: a restarted server leaves the run as it was.
    s.kill9();
    s.launch();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(counts(&s, &id)["execution_counts"], run["execution_counts"]);
    assert_error(&s.get("/v1/executions/nope/map-runs"), 404, "execution_not_found", "nope");

    // Cut short by its TimeoutSeconds, the parent ends its map run and running children too.
    let mut timed = map(60);
    timed["TimeoutSeconds"] = json!(1);
    create_workflow(&s, "timed", timed);
    let (_, e) = s.post("/v1/workflows/timed/executions", json!({"input": {"items": items}}));
    let id = e["id"].as_str().unwrap().to_string();
    assert_eq!(execution_done(&s, &id)["status"], "TIMED_OUT");
    let deadline = Instant::now() + Duration::from_secs(10);
    let run = loop {
        let run = counts(&s, &id);
        if run["status"] == "ABORTED" || Instant::now() > deadline {
            break run;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(run["status"], "ABORTED", "{run}");
    assert_eq!(run["execution_counts"]["running"], 0, "{run}");
    assert_eq!(run["execution_counts"]["aborted"], 2, "{run}");
}
