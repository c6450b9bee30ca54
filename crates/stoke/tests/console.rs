//! The web console in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven through
//! WebDriver by tests/console/*.py): sign in, the functions list, a function's page, invoking from it, live
//! logs and recent invocations, publishing, aliases, blocking, a tune's results, a workflow's graph and an
//! execution turning green step by step in its timeline and its graph, the node's charts, markup from the
//! server shown as text, and a second account seeing nothing of the first; page loads on a node with 1,000
//! functions and 10,000 executions; the node's history API.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;

/// Prints its event's `say` with markup around it, and returns the event.
const ECHO: &str = "def handler(event, context):\n    print('said <script>window.__pwned=1</script> ' + str(event.get('say')))\n    return event\n";

/// The browser tests run one at a time: the scale test times page loads, and two Chromiums on two cores
/// would time each other.
static BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_browser() -> std::sync::MutexGuard<'static, ()> {
    BROWSER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs tests/console/`script` against `s` with `env`; fails the test with its output unless it passes.
fn run_browser_script(script: &str, s: &TestServer, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/console").join(script))
        .env("STOKE_ENDPOINT", &s.url)
        .env("STOKE_API_KEY", &s.api_key)
        .envs(env.iter().copied());
    // `STOKE_SCREENSHOTS=docs/console` (from the repository's root) refreshes the documentation's pictures.
    if let Some(dir) = std::env::var_os("STOKE_SCREENSHOTS") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        cmd.env("STOKE_SCREENSHOTS", dir);
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the console's browser test {script} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    stdout.into_owned()
}

/// The workflow `chain`: three Task states, One → Two → Three, on the functions `one`, `two` and `three`, each
/// running `source`.
fn chain(s: &TestServer, source: &str) {
    for f in ["one", "two", "three"] {
        python_fn(s, f, source, json!({}));
    }
    let chain = json!({"StartAt": "One", "States": {
        "One": {"Type": "Task", "Resource": "one", "Next": "Two"},
        "Two": {"Type": "Task", "Resource": "two", "Next": "Three"},
        "Three": {"Type": "Task", "Resource": "three", "End": true}}});
    let (status, body) = s.post("/v1/workflows", json!({"name": "chain", "definition": chain}));
    assert_eq!(status, 201, "{body}");
}

fn browser_present() -> bool {
    Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists() && python_has("selenium")
}

#[test]
fn the_console_signs_in_lists_invokes_and_follows_logs_in_a_real_browser() {
    if !present_or_skip(browser_present(), "chromium, chromium-driver and selenium", "the console's browser test") {
        return;
    }
    let s = TestServer::start();
    python_fn(&s, "echo", ECHO, json!({"description": "<img src=x onerror=\"window.__pwned=1\">"}));
    // Three steps slow enough to be seen running.
    chain(&s, "import time\ndef handler(e, c):\n    time.sleep(0.6)\n    return e\n");
    // A tune of `echo` for the tune page: two sizes, two runs each.
    let (status, tune) = s.post("/v1/functions/echo/tune", json!({"payload": {}, "memory": [128, 256], "runs": 2}));
    assert_eq!(status, 202, "{tune}");
    let tune_id = tune["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while s.get(&format!("/v1/tunes/{tune_id}")).1["state"] == "running" {
        assert!(std::time::Instant::now() < deadline, "the tune did not end");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (other_key, _) = s.new_account("other");
    let _one = one_browser();
    run_browser_script("console_test.py", &s, &[("STOKE_OTHER_KEY", &other_key), ("STOKE_TUNE", &tune_id)]);
}

fn firefox_present() -> bool {
    Path::new("/usr/bin/firefox-esr").exists() && python_has("marionette_driver")
}

/// A durable function's executions listed on its page, and an execution's page with its timeline.
#[test]
fn the_console_lists_a_durable_functions_executions_and_draws_one() {
    if !present_or_skip(browser_present(), "chromium, chromium-driver and selenium", "the console's durable pages") {
        return;
    }
    let s = TestServer::start();
    // The SDK's output, written by hand: the durable service needs no SDK in the function.
    let done = "def handler(event, context):\n    return {'Status': 'SUCCEEDED', 'Result': '\"done\"'}\n";
    python_fn(&s, "flow", done, json!({"durable": {"execution_timeout_s": 60}}));
    let resp = s
        .req(reqwest::Method::POST, "/v1/functions/flow/invoke?durable_execution_name=order-1")
        .json(&json!({}))
        .send();
    assert_eq!(resp.unwrap().status().as_u16(), 200);
    let _one = one_browser();
    run_browser_script("console_durable.py", &s, &[]);
}

#[test]
fn the_console_works_in_firefox() {
    if !present_or_skip(firefox_present(), "firefox-esr and marionette_driver", "the console's Firefox test") {
        return;
    }
    let s = TestServer::start();
    python_fn(&s, "echo", ECHO, json!({}));
    chain(&s, "def handler(e, c):\n    return e\n");
    let (status, run) = s.post("/v1/workflows/chain/run", json!({"input": {}}));
    assert_eq!((status, run["status"].as_str()), (200, Some("SUCCEEDED")), "{run}");
    let _one = one_browser();
    run_browser_script("console_firefox.py", &s, &[("STOKE_EXECUTION", run["id"].as_str().unwrap())]);
}

/// Seed 004's scale on the console: 1,000 functions and 10,000 executions, each page opened by a full
/// navigation five times in a real Chromium; the median load of every page must stay within 200 ms, and
/// the lists come a page at a time from the server.
#[test]
fn the_console_pages_load_within_200_ms_with_1000_functions_and_10000_executions() {
    if !present_or_skip(browser_present(), "chromium, chromium-driver and selenium", "the console's scale test") {
        return;
    }
    let s = TestServer::start();
    let code = zip_of(&[("app.py", b"def handler(e, c):\n    return e\n".as_slice())]);
    let (status, body) = s.post(
        "/v1/workflows",
        json!({"name": "many",
        "definition": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}),
    );
    assert_eq!(status, 201, "{body}");
    let seeded = std::time::Instant::now();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (s, code) = (&s, &code);
            scope.spawn(move || {
                for i in (t..1000).step_by(8) {
                    let (status, body) = s.post("/v1/functions", create_body(&format!("fn-{i:04}"), code));
                    assert_eq!(status, 201, "{body}");
                }
                for i in (t..10_000).step_by(8) {
                    let (status, body) = s.post("/v1/workflows/many/executions", json!({"input": {"i": i}}));
                    assert_eq!(status, 201, "{body}");
                }
            });
        }
    });
    eprintln!("seeded 1,000 functions and 10,000 executions in {:.1} s", seeded.elapsed().as_secs_f64());
    let (_, list) = s.get("/v1/workflows/many/executions?limit=1");
    let execution = list["executions"][0]["id"].as_str().unwrap().to_string();
    let _one = one_browser();
    let out = run_browser_script("console_scale.py", &s, &[("STOKE_EXECUTION", &execution)]);
    eprintln!("{out}");
}

#[test]
fn the_console_is_served_with_a_strict_policy_and_no_key() {
    let s = TestServer::start();
    let page = reqwest::blocking::get(format!("{}/console", s.url)).unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(page.text().unwrap().contains("/console/app.js"));
    let missing = reqwest::blocking::get(format!("{}/console/nope.js", s.url)).unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
}

#[test]
fn a_log_stream_sends_lines_as_they_are_written_and_refuses_strangers() {
    use std::io::{BufRead, BufReader};
    let s = TestServer::start();
    python_fn(&s, "talk", "def handler(e, c):\n    print('line', e['n'])\n    return e\n", json!({}));
    let stream = s.req(reqwest::Method::GET, "/v1/functions/talk/logs/stream").send().unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut lines = BufReader::new(stream).lines();
    for n in 0..2 {
        let (status, _) = s.post("/v1/functions/talk/invoke", json!({ "n": n }));
        assert_eq!(status, 200);
        let data = loop {
            let line = lines.next().expect("the stream stays open").unwrap();
            if let Some(data) = line.strip_prefix("data: ") {
                let v: serde_json::Value = serde_json::from_str(data).unwrap();
                if v["text"].as_str().is_some_and(|t| t.contains("line")) {
                    break v;
                }
            }
        };
        assert!(data["text"].as_str().unwrap().contains(&format!("line {n}")), "{data}");
    }
    // Another account's key, and no key, are refused; a function that does not exist is a 404.
    let (other, _) = s.new_account("other");
    let refused = s.req_as(&other, reqwest::Method::GET, "/v1/functions/talk/logs/stream").send().unwrap();
    assert_eq!(refused.status(), 404);
    let anonymous = reqwest::blocking::get(format!("{}/v1/functions/talk/logs/stream", s.url)).unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[test]
fn the_node_history_and_each_functions_activity_count_the_calls() {
    let s = TestServer::start();
    let (other, _) = s.new_account("other");
    let refused = s.req_as(&other, reqwest::Method::GET, "/v1/node/history").send().unwrap();
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().unwrap();
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("admin"), "{body}");
    let (status, h) = s.get("/v1/node/history");
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["slot_s"], 10);
    python_fn(&s, "tick", "def handler(e, c):\n    return e\n", json!({}));
    for _ in 0..3 {
        assert_eq!(s.post("/v1/functions/tick/invoke", json!({})).0, 200);
    }
    // The functions list and the function say what its calls did on this node.
    python_fn(&s, "sour", "def handler(e, c):\n    raise ValueError('no')\n", json!({}));
    assert_eq!(s.post("/v1/functions/sour/invoke", json!({})).0, 200);
    let (_, list) = s.get("/v1/functions");
    let of = |name: &str| list["functions"].as_array().unwrap().iter().find(|f| f["name"] == name).unwrap().clone();
    assert_eq!(
        (of("tick")["activity"]["invocations"].as_u64(), of("tick")["activity"]["errors"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(
        (of("sour")["activity"]["invocations"].as_u64(), of("sour")["activity"]["errors"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        of("sour")["activity"]["last_invoked_ms"].as_i64().unwrap()
            >= of("tick")["activity"]["last_invoked_ms"].as_i64().unwrap()
    );
    assert_eq!(s.get("/v1/functions/tick").1["activity"]["invocations"], 3);
    let out = s.cli().args(["fn", "ls"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("LAST INVOKED") && text.contains("1 of 1 (100 %)") && text.contains("0 of 3 (0 %)"),
        "{text}"
    );
    // The slot the calls fell in ends within ten seconds (and a quarter, the controller's tick).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
    let points = loop {
        let (_, h) = s.get("/v1/node/history");
        let points = h["points"].as_array().unwrap().clone();
        if points.iter().map(|p| p["invocations"].as_u64().unwrap()).sum::<u64>() >= 4 {
            break points;
        }
        assert!(std::time::Instant::now() < deadline, "no slot counted the calls: {h}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(points.iter().map(|p| p["cold_starts"].as_u64().unwrap()).sum::<u64>(), 2, "{points:?}");
    assert!(points.iter().map(|p| p["errors"].as_u64().unwrap()).sum::<u64>() >= 1, "{points:?}");
    assert!(points.iter().any(|p| p["p99_ms"].as_f64().is_some_and(|ms| ms > 0.0)), "{points:?}");
    // The same from the CLI.
    let out = s.cli().args(["nodes", "--history", "60"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("INVOCATIONS/S") && text.contains("P99"), "{text}");
    let bad = s.cli().args(["nodes", "--history", "61"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("61 is not in 1..=60"));
}
