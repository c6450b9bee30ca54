//! Generic instances (OpenWhisk's stem cells): lean instances set up before their function is known, given
//! one on demand — its code, layers, environment and limits — against a real server. Privileged.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn invoke(s: &TestServer, function: &str, event: Value) -> (u16, Option<String>, Value) {
    let resp = s.req(Method::POST, &format!("/v1/functions/{function}/invoke")).json(&event).send().unwrap();
    let status = resp.status().as_u16();
    let error = resp.headers().get("x-stoke-function-error").map(|v| v.to_str().unwrap().to_string());
    (status, error, serde_json::from_str(&resp.text().unwrap()).unwrap_or(Value::Null))
}

/// Waits until the node has `want` generic instances of each kind ready.
fn pool_ready(s: &TestServer, want: &[(&str, u64)]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, list) = s.get("/v1/instances");
        if want.iter().all(|(k, n)| list["generic"][k].as_u64() == Some(*n)) {
            return list;
        }
        assert!(Instant::now() < deadline, "generic instances never became ready: {list}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Seconds since boot now (the host's clock of process start times).
fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

/// Reports when its interpreter and its instance's init (PID 1) started, in seconds since boot, and what
/// the instance was given.
const PROBE: &str = r#"
import os
def started(pid):
    fields = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")
def handler(event, context):
    hog = bytearray(event.get("allocate_mb", 0) * 1024 * 1024)
    return {"interpreter_started": started("self"), "init_started": started(1), "cwd": os.getcwd(),
            "task": sorted(os.listdir("/var/task")), "name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
            "mine": os.environ.get("MINE"), "stdin": os.readlink("/proc/self/fd/0"), "held": len(hog)}
"#;

#[test]
fn a_generic_instance_takes_a_function_that_did_not_exist_when_it_started() {
    if !privileged("generic instances") {
        return;
    }
    let s = TestServer::start_with(&["--generic", "python=1,sandbox=1"]);
    pool_ready(&s, &[("python", 1), ("sandbox", 1)]);
    // A ready instance may still be starting its runtime: give it time, so "before" is unambiguous.
    std::thread::sleep(Duration::from_secs(1));
    let created_at = uptime();
    python_fn(&s, "late", PROBE, json!({"memory_mb": 512, "environment": {"MINE": "yes"}}));
    let (status, err, out) = invoke(&s, "late", json!({"allocate_mb": 300}));
    assert_eq!((status, err), (200, None), "{out}");
    assert!(
        out["interpreter_started"].as_f64().unwrap() < created_at,
        "the Python runtime was started before the function existed: {out} (created at {created_at})"
    );
    assert_eq!(out["name"], "late", "{out}");
    assert_eq!(out["mine"], "yes", "its own environment: {out}");
    assert_eq!(out["cwd"], "/var/task", "{out}");
    assert_eq!(out["task"], json!(["app.py"]), "its own code: {out}");
    assert_eq!(out["stdin"], "/dev/null", "the assignment pipe is gone: {out}");
    assert_eq!(out["held"], 300 * 1024 * 1024, "its memory limit (512 MB), not the pool's 128 MB: {out}");

    // The pool refills; a second new function is given one of its instances too.
    pool_ready(&s, &[("python", 1), ("sandbox", 1)]);
    std::thread::sleep(Duration::from_secs(1));
    let created_at = uptime();
    python_fn(&s, "later", PROBE, json!({}));
    let (_, _, out) = invoke(&s, "later", json!({}));
    assert!(out["init_started"].as_f64().unwrap() < created_at, "its sandbox was set up before: {out}");
    assert_eq!(out["task"], json!(["app.py"]), "{out}");
    assert_eq!(out["name"], "later", "{out}");
    let list = pool_ready(&s, &[("python", 1), ("sandbox", 1)]);
    assert_eq!(list["instances"].as_array().unwrap().len(), 2, "{list}");

    // Generic instances hold to their function's limits: over it, the function is killed for memory.
    let (status, err, out) = invoke(&s, "later", json!({"allocate_mb": 300}));
    assert_eq!((status, err.as_deref()), (200, Some("Runtime.OutOfMemory")), "128 MB: {out}");
}

#[test]
fn generic_instances_attach_layers_and_serve_other_runtimes() {
    if !privileged("generic instances") {
        return;
    }
    let s = TestServer::start_with(&["--generic", "python=1,sandbox=1"]);
    pool_ready(&s, &[("python", 1), ("sandbox", 1)]);
    let layer = zip_of(&[("python/glib.py", b"VALUE = 'from the layer'\n")]);
    let (status, l) = s.post(
        "/v1/layers/glib/versions",
        json!({"code_base64": base64::engine::general_purpose::STANDARD.encode(layer)}),
    );
    assert_eq!(status, 201, "{l}");
    let uses = "import glib\ndef handler(e, c):\n    return glib.VALUE\n";
    python_fn(&s, "withlayer", uses, json!({"layers": ["glib:1"]}));
    let (status, err, out) = invoke(&s, "withlayer", json!({}));
    assert_eq!((status, err), (200, None), "{out}");
    assert_eq!(out, "from the layer", "PYTHONPATH applied after the interpreter started");

    // A provided function (the rust test function) runs in the sandbox kind.
    rust_echo_fn(&s, "rusty");
    let (status, err, out) = invoke(&s, "rusty", json!({"x": 1}));
    assert_eq!((status, err), (200, None), "{out}");
    assert_eq!(out["echo"], json!({"x": 1}));
    let (_, _, seen) = invoke(&s, "rusty", json!({"read": ["/opt/python/glib.py", "/etc/hostname"]}));
    assert_eq!(seen["/opt/python/glib.py"], Value::Null, "no other function's layers: {seen}");
    assert_eq!(seen["/etc/hostname"], "stoke\n", "{seen}");
}

#[test]
fn the_generic_pool_is_configurable_and_bad_settings_are_refused() {
    let s = TestServer::start_with(&["--generic", "none"]);
    let (_, list) = s.get("/v1/instances");
    assert!(list["generic"].as_object().is_none_or(|m| m.values().all(|v| v == 0)), "{list}");
    drop(s);
    for (bad, says) in
        [("cobol=1", "not known"), ("python", "KIND=N"), ("python=x", "not a number"), ("python=99", "at most 64")]
    {
        let out = std::process::Command::new(BIN)
            .args(["server", "--listen", "127.0.0.1:0", "--generic", bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "--generic {bad} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "--generic {bad}: {err}");
    }
}
