//! Hiding cold starts in workflows, against a real server with real Python functions whose init is slow:
//! a chain pays one cold start per step with `off` and one in all with `eager` and `jit`; the timeline and
//! the bill show where the time and the money went; the policy is set per workflow and per execution.

mod common;

use common::*;
use serde_json::{json, Value};

/// 400 ms of init, 600 ms of work: longer than an init, so `eager` can hide it too.
const SLOW: &str =
    "import time\ntime.sleep(0.4)\ndef handler(event, context):\n    time.sleep(0.6)\n    return event\n";

fn chain(s: &TestServer, tag: &str, prewarm: Option<&str>) -> String {
    for f in ["a", "b", "c"] {
        python_fn(s, &format!("{tag}-{f}"), SLOW, json!({"timeout_s": 30}));
    }
    let name = format!("chain-{tag}");
    let definition = json!({"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": format!("{tag}-a"), "Next": "B"},
        "B": {"Type": "Task", "Resource": format!("{tag}-b"), "Next": "C"},
        "C": {"Type": "Task", "Resource": format!("{tag}-c"), "End": true}}});
    let (status, body) = s.post("/v1/workflows", json!({"name": name, "definition": definition, "prewarm": prewarm}));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["prewarm"].as_str(), prewarm);
    name
}

fn run(s: &TestServer, workflow: &str, body: Value) -> String {
    let (status, e) = s.post(&format!("/v1/workflows/{workflow}/run"), body);
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    e["id"].as_str().unwrap().to_string()
}

fn timeline(s: &TestServer, id: &str) -> Value {
    let (status, t) = s.get(&format!("/v1/executions/{id}/timeline"));
    assert_eq!(status, 200, "{t}");
    t
}

fn phases(step: &Value) -> Vec<&str> {
    step["segments"].as_array().unwrap().iter().map(|s| s["phase"].as_str().unwrap()).collect()
}

#[test]
fn a_chain_pays_one_cold_start_with_eager_and_jit_and_one_per_step_without() {
    let s = TestServer::start();
    let off = chain(&s, "off", Some("off"));
    let eager = chain(&s, "eager", Some("eager"));
    // The workflow says off; the execution asks for jit.
    let jit = chain(&s, "jit", Some("off"));

    let off_id = run(&s, &off, json!({"input": {"k": 1}}));
    let t = timeline(&s, &off_id);
    assert_eq!(t["cold_starts"], 3, "without pre-warming every step starts cold: {t}");
    let a = &t["steps"][0];
    assert_eq!((a["state"].as_str(), a["type"].as_str()), (Some("A"), Some("Task")));
    assert_eq!(phases(a).last(), Some(&"running"));
    assert!(phases(a).contains(&"sandbox") && phases(a).contains(&"init"), "{a}");

    let eager_id = run(&s, &eager, json!({"input": {"k": 2}}));
    assert_eq!(timeline(&s, &eager_id)["cold_starts"], 1, "eager: only the first step starts cold");

    let jit_id = run(&s, &jit, json!({"input": {"k": 3}, "prewarm": "jit"}));
    let t = timeline(&s, &jit_id);
    assert_eq!(t["cold_starts"], 1, "jit: only the first step starts cold: {t}");
    for step in &t["steps"].as_array().unwrap()[1..] {
        assert_eq!(phases(step).last(), Some(&"running"), "{step}");
        assert!(!phases(step).contains(&"init"), "a pre-warmed step waits for no init: {step}");
    }
    // The history records the policy the execution ran with.
    let (_, h) = s.get(&format!("/v1/executions/{jit_id}/history"));
    assert_eq!(h["events"][0]["details"]["prewarm"], "jit");

    // The bill: every instance's init is billed to the execution that first used it, pre-warmed or not.
    for id in [&off_id, &jit_id] {
        let (status, cost) = s.get(&format!("/v1/executions/{id}/cost"));
        assert_eq!(status, 200, "{cost}");
        let total = &cost["total"];
        assert_eq!(total["invocations"], 3, "{cost}");
        assert!(total["billed_ms"].as_u64().unwrap() >= 1800, "three runs of 600 ms: {cost}");
        assert!(total["init_ms"].as_u64().unwrap() >= 1200, "three inits of 400 ms: {cost}");
        let per_step: u64 =
            cost["steps"].as_array().unwrap().iter().map(|s| s["bill"]["billed_ms"].as_u64().unwrap()).sum();
        assert_eq!(per_step, total["billed_ms"].as_u64().unwrap());
        let gb_s = total["gb_seconds"].as_f64().unwrap();
        let expected = (total["billed_ms"].as_u64().unwrap() + total["init_ms"].as_u64().unwrap()) as f64 / 1000.0
            * 128.0
            / 1024.0;
        assert!((gb_s - expected).abs() < 1e-9, "{gb_s} vs {expected}");
    }

    // The CLI draws the timeline and prints the bill.
    let out = s.cli().args(["wf", "timeline", &off_id, "--width", "40"]).output().unwrap();
    let chart = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(chart.lines().next().unwrap().starts_with("A |") && chart.contains("cold ×1"), "{chart}");
    assert!(chart.contains("(3 cold starts)") && chart.contains('#') && chart.contains('i'), "{chart}");
    let out = s.cli().args(["wf", "cost", &jit_id]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && table.contains("TOTAL") && table.contains("per GB-second"), "{table}");
}

#[test]
fn statistics_outlive_the_server_and_bad_policies_are_refused() {
    let mut s = TestServer::start();
    let (status, body) = s.post(
        "/v1/workflows",
        json!({"name": "w", "prewarm": "lazy", "definition": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}),
    );
    assert_error(&(status, body), 400, "invalid_parameter", "off, eager, jit");
    let choice = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": 1, "Next": "One"}], "Default": "Other"},
        "One": {"Type": "Pass", "End": true}, "Other": {"Type": "Pass", "End": true}}});
    let (status, body) = s.post("/v1/workflows", json!({"name": "w", "definition": choice}));
    assert_eq!(status, 201, "{body}");
    assert!(body.get("prewarm").is_none(), "no policy of its own: the server's");
    let resp = s.post("/v1/workflows/w/run", json!({"input": {"x": 1}, "prewarm": "sometimes"}));
    assert_error(&resp, 400, "invalid_parameter", "is not a policy");
    let (_, list) = s.get("/v1/workflows/w/executions");
    assert_eq!(list["executions"].as_array().unwrap().len(), 0, "a refused start leaves nothing behind");
    let (status, _) = s.get("/v1/executions/nope/timeline");
    assert_eq!(status, 404);
    let (status, _) = s.get("/v1/executions/nope/cost");
    assert_eq!(status, 404);
    // Updates keep the policy unless told; `default` clears it.
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}});
    let (status, body) =
        s.call(s.req(reqwest::Method::PUT, "/v1/workflows/w").json(&json!({"definition": def, "prewarm": "eager"})));
    assert_eq!((status, body["prewarm"].as_str()), (200, Some("eager")), "{body}");
    let (_, body) = s.call(s.req(reqwest::Method::PUT, "/v1/workflows/w").json(&json!({"definition": def})));
    assert_eq!(body["prewarm"], "eager");
    let (_, body) =
        s.call(s.req(reqwest::Method::PUT, "/v1/workflows/w").json(&json!({"definition": def, "prewarm": "default"})));
    assert!(body.get("prewarm").is_none(), "{body}");

    // Learned statistics (here: Choice branches and a function's durations) are written to the store and
    // survive a restart: the stats table holds them after the server is gone.
    let (status, body) = s.post("/v1/workflows", json!({"name": "branchy", "definition": choice}));
    assert_eq!(status, 201, "{body}");
    for x in [1, 1, 2] {
        let (status, e) = s.post("/v1/workflows/branchy/run", json!({"input": {"x": x}}));
        assert_eq!((status, e["status"].as_str()), (200, Some("SUCCEEDED")), "{e}");
    }
    python_fn(&s, "quick", "def handler(e, c):\n    return e\n", json!({}));
    let (status, _) = s.post("/v1/functions/quick/invoke", json!({}));
    assert_eq!(status, 200);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    s.kill9();
    let db = rusqlite_rows(&s, "SELECT kind || ' ' || key || ' ' || data FROM stats ORDER BY kind, key");
    let choice = db.iter().find(|r| r.starts_with("choice ") && r.contains("/branchy/C")).expect("choice stats");
    assert!(choice.contains("\"One\":2") && choice.contains("\"Other\":1"), "{db:?}");
    let function =
        db.iter().find(|r| r.starts_with("function ") && r.contains("/quick/$LATEST")).expect("function stats");
    assert!(function.contains("init_ms") && function.contains("run_ms"), "{function}");
}

/// Rows of a query on the server's database, each as text (read after the server is gone).
fn rusqlite_rows(s: &TestServer, sql: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(s.dir.join("stoke.db")).expect("open the database");
    let mut stmt = conn.prepare(sql).expect("query");
    stmt.query_map([], |r| r.get::<_, String>(0)).expect("rows").collect::<Result<_, _>>().expect("rows")
}
