//! Workflow-scoped scratch: the steps of one execution share a directory on the node, so a later step
//! reuses what an earlier one fetched; it is removed when the execution ends, and exists only when asked.

mod common;

use common::*;
use serde_json::{json, Value};

/// Writes a file into the scratch directory (when there is one) and says where and what.
const FETCH: &str = r#"
import hashlib, os, stoke
def handler(event, context):
    d = stoke.scratch()
    if d is None:
        return {"scratch": None}
    data = os.urandom(4096)
    with open(os.path.join(d, "data.bin"), "wb") as f:
        f.write(data)
    return {"scratch": d, "sha": hashlib.sha256(data).hexdigest()}
"#;

/// Reads what the earlier step left.
const USE: &str = r#"
import hashlib, os, stoke
def handler(event, context):
    d = stoke.scratch()
    path = os.path.join(d, "data.bin")
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    return {"scratch": d, "sha": sha, "expected": event["sha"], "fetched_by": event["scratch"]}
"#;

fn output(e: &Value) -> Value {
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    e["output"].as_str().map_or_else(|| e["output"].clone(), |o| serde_json::from_str(o).unwrap())
}

#[test]
fn the_steps_of_an_execution_share_a_scratch_directory_that_ends_with_it() {
    let mut s = TestServer::start();
    python_fn(&s, "fetch", FETCH, json!({}));
    python_fn(&s, "use", USE, json!({}));
    let definition = json!({"StartAt": "Fetch", "States": {
        "Fetch": {"Type": "Task", "Resource": "fetch", "Next": "Use"},
        "Use": {"Type": "Task", "Resource": "use", "End": true}}});
    let (status, body) = s.post("/v1/workflows", json!({"name": "share", "definition": definition}));
    assert_eq!(status, 201, "{body}");

    let (status, e) = s.post("/v1/workflows/share/run", json!({"input": {}, "scratch": true}));
    assert_eq!(status, 200, "{e}");
    let out = output(&e);
    assert_eq!(out["sha"], out["expected"], "the second step read what the first wrote: {out}");
    assert_eq!(out["scratch"], out["fetched_by"], "{out}");
    let id = e["id"].as_str().unwrap();
    assert!(out["scratch"].as_str().unwrap().ends_with(id), "one directory per execution: {out}");
    let root = s.dir.join("run/scratch").join(&s.account_id);
    assert!(root.is_dir(), "the account's scratch root is kept");
    assert!(!root.join(id).exists(), "the execution's directory is removed when it ends");

    // Without asking, there is none; the CLI asks with --scratch.
    let (_, e) = s.post("/v1/workflows/share/run", json!({"input": {}}));
    assert_eq!(e["status"], "FAILED", "the second step finds no directory: {e}");
    let (_, h) = s.get(&format!("/v1/executions/{}/history", e["id"].as_str().unwrap()));
    let first = h["events"].as_array().unwrap().iter().find(|ev| ev["type"] == "LambdaFunctionSucceeded");
    assert_eq!(first.map(|ev| ev["details"]["output"]["scratch"].clone()), Some(Value::Null), "{h}");
    let out = s.cli().args(["wf", "run", "share", "--scratch"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let o: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(o["sha"], o["expected"], "the CLI's execution has its scratch directory: {o}");

    // A bad value is refused.
    let resp = s.post("/v1/workflows/share/run", json!({"input": {}, "scratch": "yes"}));
    assert_eq!(resp.0, 400, "{}", resp.1);

    // A directory left by an execution that ended while the server was down goes at the next start.
    std::fs::create_dir_all(root.join("ended-while-down/sub")).unwrap();
    s.kill9();
    s.launch();
    assert!(!root.join("ended-while-down").exists(), "stale scratch directories are swept at start");
}
