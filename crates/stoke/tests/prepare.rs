//! Seed 000's runtime interfaces against a real server with real Python functions: a step prepares the next
//! step's instance (`prepare`), the prepared instance reads its preparation input (`prepared_params`) and
//! waits for its turn (`wait_turn`); reserved instances go to no one else (the W1/W2 scenario); a
//! reservation is released when the execution takes another branch or when it expires; held time is billed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Prepares `second` (or the event's `next`) with the event's key, then works for a while (long enough for `second` to start).
const FIRST: &str = r#"
import time, stoke
def handler(event, context):
    r = stoke.prepare(event.get("next", "second"), {"key": event["key"]})
    time.sleep(event.get("work_s", 1.5))
    return {"key": event["key"], "from_first": True, "reservation": r["reservationId"]}
"#;

/// 300 ms of init; when prepared, says so, and which instance ran it (an id drawn at init: pids repeat
/// across PID namespaces).
const SECOND: &str = r#"
import os, time, stoke
time.sleep(0.3)
INSTANCE = os.urandom(8).hex()
def handler(event, context):
    params = stoke.prepared_params()
    if params is not None:
        try:
            event = stoke.wait_turn()
        except stoke.ReservationReleased as e:
            print("RELEASED: %s" % e.message)
            raise
    return {"prepared": params, "input": event, "instance": INSTANCE}
"#;

fn start(s: &TestServer, workflow: &str, input: Value) -> String {
    let (status, e) = s.post(&format!("/v1/workflows/{workflow}/executions"), json!({"input": input}));
    assert_eq!(status, 201, "{e}");
    e["id"].as_str().unwrap().to_string()
}

fn output(e: &Value) -> Value {
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    let out = &e["output"];
    out.as_str().map_or_else(|| out.clone(), |s| serde_json::from_str(s).unwrap())
}

fn invoke(s: &TestServer, function: &str, event: Value) -> (u16, Value) {
    let resp = s.req(reqwest::Method::POST, &format!("/v1/functions/{function}/invoke")).json(&event).send().unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&resp.text().unwrap()).unwrap())
}

fn logs(s: &TestServer, function: &str) -> String {
    let (status, l) = s.get(&format!("/v1/functions/{function}/logs"));
    assert_eq!(status, 200, "{l}");
    l["lines"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pair(s: &TestServer) {
    python_fn(s, "first", FIRST, json!({"timeout_s": 30}));
    python_fn(s, "second", SECOND, json!({"timeout_s": 30}));
    let definition = json!({"StartAt": "First", "States": {
        "First": {"Type": "Task", "Resource": "first", "Next": "Second"},
        "Second": {"Type": "Task", "Resource": "second", "End": true}}});
    let (status, body) = s.post("/v1/workflows", json!({"name": "pair", "definition": definition, "prewarm": "off"}));
    assert_eq!(status, 201, "{body}");
}

/// Seed 000's W1/W2 scenario: two executions each prepare their own `second`; while they are reserved, a
/// plain invocation of `second` gets neither reserved instance, and each execution's step runs on the
/// instance it reserved, with its own preparation input.
#[test]
fn reserved_instances_serve_their_own_execution_only() {
    let s = TestServer::start();
    pair(&s);
    let w1 = start(&s, "pair", json!({"key": "w1"}));
    let w2 = start(&s, "pair", json!({"key": "w2"}));
    // Both reserved instances are ready and busy with their preparation (waiting for their turn).
    wait_for("two prepared instances", || {
        let (_, list) = s.get("/v1/instances?function=second");
        let busy = list["instances"].as_array().unwrap().iter().filter(|i| i["state"] == "busy").count();
        busy == 2
    });
    let (status, plain) = invoke(&s, "second", json!({"plain": true}));
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["prepared"], Value::Null, "a plain invocation is no preparation: {plain}");

    let (o1, o2) = (output(&execution_done(&s, &w1)), output(&execution_done(&s, &w2)));
    for (o, key) in [(&o1, "w1"), (&o2, "w2")] {
        assert_eq!(o["prepared"], json!({"key": key}), "each step ran on the instance its execution prepared: {o}");
        assert_eq!(o["input"]["key"], key, "and got its own step input from wait_turn: {o}");
        assert_eq!(o["input"]["from_first"], true, "{o}");
    }
    let ids = [&o1["instance"], &o2["instance"], &plain["instance"]];
    assert!(ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2], "three instances: {ids:?}");

    // The bill and the timeline: the prepared step's cold start is hidden, its held time billed.
    let (status, t) = s.get(&format!("/v1/executions/{w1}/timeline"));
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["cold_starts"], 1, "only `first` started cold: {t}");
    let second = &t["steps"][1];
    let phases: Vec<&str> =
        second["segments"].as_array().unwrap().iter().map(|x| x["phase"].as_str().unwrap()).collect();
    assert!(phases.contains(&"held") && phases.last() == Some(&"running"), "{second}");
    let held = second["bill"]["held_ms"].as_u64().unwrap();
    assert!(held >= 500, "held from its preparation until its turn (first works 1.5 s): {second}");
    let (status, cost) = s.get(&format!("/v1/executions/{w1}/cost"));
    assert_eq!(status, 200, "{cost}");
    assert_eq!(cost["total"]["held_ms"].as_u64(), Some(held), "{cost}");
    let (_, h) = s.get(&format!("/v1/executions/{w1}/history"));
    let usage = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["details"].get("usage"))
        .find(|u| u["prepared"] == true)
        .cloned()
        .expect("the prepared step's usage");
    assert!(
        usage["durationMs"].as_f64().unwrap() < 500.0,
        "the step runs from its turn, not from its preparation: {usage}"
    );
    assert_eq!(s.get(&format!("/v1/executions/{w2}/cost")).1["total"]["held_ms"].as_u64().map(|h| h > 0), Some(true));
}

/// Prepares `maybe`, then the Choice goes elsewhere (`go`), or the reservation expires first (`wait_s`).
const PICK: &str = r#"
import time, stoke
def handler(event, context):
    stoke.prepare("maybe", {"for": event["tag"]})
    time.sleep(event.get("wait_s", 0))
    return event
"#;

/// Runs the platform's interfaces from the function, as asked, and reports what each returned or raised.
const PROBE: &str = r#"
import json, os, http.client, stoke
def attempt(f):
    try:
        return {"ok": f()}
    except stoke.StokeError as e:
        return {"error": e.error_type, "status": e.status, "message": e.message}
def raw_prepare(body):
    host, _, port = os.environ["AWS_LAMBDA_RUNTIME_API"].partition(":")
    c = http.client.HTTPConnection(host, int(port))
    c.request("POST", "/2018-06-01/stoke/prepare", body=body)
    r = c.getresponse()
    return {"status": r.status, "body": json.loads(r.read())}
def handler(event, context):
    return {
        "prepare": attempt(lambda: stoke.prepare(event.get("target", "maybe"), {})),
        "params": attempt(stoke.prepared_params),
        "turn": attempt(stoke.wait_turn),
        "available": attempt(lambda: stoke.is_available(event.get("available", "maybe"))),
        "garbage": raw_prepare(b"{not json"),
    }
"#;

#[test]
fn reservations_are_released_on_another_branch_and_on_expiry_and_bad_requests_are_refused() {
    let s = TestServer::start_with(&["--reservation-ttl", "1"]);
    python_fn(&s, "pick", PICK, json!({"timeout_s": 30}));
    python_fn(&s, "maybe", SECOND, json!({"timeout_s": 30}));
    python_fn(&s, "probe", PROBE, json!({"timeout_s": 30}));
    let definition = json!({"StartAt": "Pick", "States": {
        "Pick": {"Type": "Task", "Resource": "pick", "Next": "Go?"},
        "Go?": {"Type": "Choice", "Choices": [{"Variable": "$.go", "BooleanEquals": true, "Next": "Maybe"}],
                "Default": "Elsewhere"},
        "Maybe": {"Type": "Task", "Resource": "maybe", "End": true},
        "Elsewhere": {"Type": "Wait", "Seconds": 2, "Next": "Probe"},
        "Probe": {"Type": "Task", "Resource": "probe", "Parameters": {"target": "nosuchfunction"}, "End": true}}});
    let (status, body) =
        s.post("/v1/workflows", json!({"name": "branchy", "definition": definition, "prewarm": "off"}));
    assert_eq!(status, 201, "{body}");

    // Another branch: `maybe`'s wait_turn fails at once with why, long before the reservation would expire.
    let id = start(&s, "branchy", json!({"tag": "a", "go": false}));
    wait_for("the release to reach the prepared instance", || logs(&s, "maybe").contains("RELEASED"));
    let e = execution_done(&s, &id);
    assert!(logs(&s, "maybe").contains("RELEASED: the execution took another branch at the Choice state \"Go?\""));
    // In a workflow, preparing a function that does not exist is refused with Lambda's code.
    let probe = output(&e);
    assert_eq!(probe["prepare"]["error"], "ResourceNotFoundException", "{probe}");
    assert_eq!(probe["prepare"]["status"], 404, "{probe}");
    assert_eq!(probe["turn"]["error"], "Stoke.NotPrepared", "the step itself has no turn to wait for: {probe}");
    assert_eq!(probe["garbage"]["status"], 400, "{probe}");
    assert_eq!(probe["garbage"]["body"]["errorType"], "Stoke.InvalidRequest", "{probe}");

    // Expiry: `pick` works 2.5 s, past the 1 s reservation; the step then runs as any invocation would.
    let id = start(&s, "branchy", json!({"tag": "b", "go": true, "wait_s": 2.5}));
    let out = output(&execution_done(&s, &id));
    assert_eq!(out["prepared"], Value::Null, "the expired reservation was not used: {out}");
    assert_eq!(out["input"]["tag"], "b", "{out}");
    assert!(logs(&s, "maybe").contains("RELEASED: the reservation expired"), "{}", logs(&s, "maybe"));

    // Outside a workflow: prepare is refused, a plain invocation is no preparation, bad bodies are refused.
    let (status, probe) = invoke(&s, "probe", json!({}));
    assert_eq!(status, 200, "{probe}");
    assert_eq!(probe["prepare"]["error"], "Stoke.NotInWorkflow", "{probe}");
    assert!(probe["prepare"]["message"].as_str().unwrap().contains("run the function from a workflow"), "{probe}");
    assert_eq!(probe["params"]["ok"], Value::Null, "{probe}");
    assert_eq!(probe["turn"]["error"], "Stoke.NotPrepared", "{probe}");
    assert_eq!(probe["turn"]["status"], 404, "{probe}");
    assert_eq!(probe["garbage"]["status"], 409, "not in a workflow is said before the body is read: {probe}");
    // is_available: `maybe` has an idle instance and nothing queued; an unknown function is not found.
    assert_eq!(probe["available"]["ok"], true, "{probe}");
    let (_, probe) = invoke(&s, "probe", json!({"available": "nosuchfunction"}));
    assert_eq!(probe["available"]["error"], "ResourceNotFoundException", "{probe}");
}

/// The Node helper (`require('stoke')`), prepared by a Python step.
const NODE_SECOND: &str = r#"
const stoke = require('stoke');
exports.handler = async (event) => {
  const params = await stoke.preparedParams();
  if (params !== null) event = await stoke.waitTurn();
  let refused = null;
  try { await stoke.prepare('nosuchfunction', {}); } catch (e) { refused = e.errorType; }
  return { prepared: params, input: event, available: await stoke.isAvailable('first'), refused };
};
"#;

#[test]
fn node_functions_use_the_same_interfaces() {
    if !present_or_skip(std::process::Command::new("node").arg("--version").output().is_ok(), "node", "node helper") {
        return;
    }
    let s = TestServer::start();
    python_fn(&s, "first", FIRST, json!({"timeout_s": 30}));
    let mut body = create_body("nsecond", &zip_of(&[("index.js", NODE_SECOND.as_bytes())]));
    body["runtime"] = json!("nodejs20.x");
    body["handler"] = json!("index.handler");
    body["timeout_s"] = json!(30);
    let (status, resp) = s.post("/v1/functions", body);
    assert_eq!(status, 201, "{resp}");
    let definition = json!({"StartAt": "First", "States": {
        "First": {"Type": "Task", "Resource": "first", "Next": "Second"},
        "Second": {"Type": "Task", "Resource": "nsecond", "End": true}}});
    let (status, body) = s.post("/v1/workflows", json!({"name": "mixed", "definition": definition, "prewarm": "off"}));
    assert_eq!(status, 201, "{body}");
    let id = start(&s, "mixed", json!({"key": "n1", "next": "nsecond", "work_s": 1.0}));
    let out = output(&execution_done(&s, &id));
    assert_eq!(out["prepared"], json!({"key": "n1"}), "{out}");
    assert_eq!(out["input"]["from_first"], true, "{out}");
    assert_eq!(out["refused"], "ResourceNotFoundException", "{out}");
    assert_eq!(out["available"], true, "first's instance is idle by now: {out}");
    let (_, cost) = s.get(&format!("/v1/executions/{id}/cost"));
    assert!(cost["total"]["held_ms"].as_u64().unwrap() > 0, "{cost}");
}

/// A step whose init prepares the next step before its own (slow) init, from the step the instance was
/// started for (`stoke.origin()`); the prepared instance does the same for the step after it. Each step
/// works 0.4 s: longer than a prepared instance's start lags behind the one that prepared it.
const LINK: &str = r#"
import os, time, stoke
ORIGIN = stoke.origin()
NEXT = os.environ.get("NEXT")
REFUSED = None
if ORIGIN is not None and NEXT:
    stoke.prepare(NEXT, {"from": os.environ["NAME"]})
elif NEXT:
    try:
        stoke.prepare(NEXT, {})
    except stoke.StokeError as e:
        REFUSED = e.error_type
time.sleep(0.8)
def handler(event, context):
    params = stoke.prepared_params()
    if params is not None:
        event = stoke.wait_turn()
    time.sleep(0.4)
    event["path"] = event.get("path", []) + [os.environ["NAME"]]
    event.setdefault("origins", {})[os.environ["NAME"]] = ORIGIN
    event["late_origin"] = stoke.origin()
    event["refused"] = REFUSED
    return event
"#;

/// Seed 000's (N − 1)·t_cold: in a chain whose functions are all cold, each step's init prepares the next,
/// so the cold starts overlap and the execution pays one.
#[test]
fn a_cold_chain_whose_inits_prepare_the_next_step_pays_one_cold_start() {
    let s = TestServer::start();
    for (name, next) in [("la", "lb"), ("lb", "lc"), ("lc", "")] {
        let env = json!({"NAME": name, "NEXT": next});
        python_fn(&s, name, LINK, json!({"timeout_s": 30, "environment": env}));
    }
    let definition = json!({"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "la", "Next": "B"},
        "B": {"Type": "Task", "Resource": "lb", "Next": "C"},
        "C": {"Type": "Task", "Resource": "lc", "End": true}}});
    let (status, body) = s.post("/v1/workflows", json!({"name": "links", "definition": definition, "prewarm": "off"}));
    assert_eq!(status, 201, "{body}");
    let id = start(&s, "links", json!({"n": 1}));
    let out = output(&execution_done(&s, &id));
    assert_eq!(out["path"], json!(["la", "lb", "lc"]), "{out}");
    // What each init saw: `la` was started for the step itself, the others for their preparations.
    let origins = &out["origins"];
    assert_eq!(origins["la"], json!({"execution": id, "event": {"n": 1}, "prepared": false}), "{out}");
    assert_eq!(origins["lb"], json!({"execution": id, "event": {"from": "la"}, "prepared": true}), "{out}");
    assert_eq!(origins["lc"]["prepared"], true, "{out}");
    assert_eq!(out["late_origin"], Value::Null, "origin is for init only: {out}");
    let (status, t) = s.get(&format!("/v1/executions/{id}/timeline"));
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["cold_starts"], 1, "the three cold starts overlapped: {t}");

    // An instance started for no workflow step has no origin, and its init cannot prepare.
    python_fn(&s, "lplain", LINK, json!({"timeout_s": 30, "environment": {"NAME": "lplain", "NEXT": "la"}}));
    let (status, plain) = invoke(&s, "lplain", json!({}));
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["origins"]["lplain"], Value::Null, "a plain invocation's instance has no origin: {plain}");
    assert_eq!(plain["refused"], "Stoke.NoInvocation", "{plain}");
}
