//! The web console in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven through
//! WebDriver by tests/console/console_test.py): sign in, the functions list, a function's page, invoking from
//! it, live logs, a workflow's execution turning green step by step and its timeline, markup from the server
//! shown as text, and a second account seeing nothing of the first.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;

/// Prints its event's `say` with markup around it, and returns the event.
const ECHO: &str = "def handler(event, context):\n    print('said <script>window.__pwned=1</script> ' + str(event.get('say')))\n    return event\n";

fn browser_present() -> bool {
    let python_has = |m: &str| {
        Command::new("python3").args(["-c", &format!("import {m}")]).output().is_ok_and(|o| o.status.success())
    };
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
    for f in ["one", "two", "three"] {
        python_fn(&s, f, "import time\ndef handler(e, c):\n    time.sleep(0.6)\n    return e\n", json!({}));
    }
    let chain = json!({"StartAt": "One", "States": {
        "One": {"Type": "Task", "Resource": "one", "Next": "Two"},
        "Two": {"Type": "Task", "Resource": "two", "Next": "Three"},
        "Three": {"Type": "Task", "Resource": "three", "End": true}}});
    let (status, body) = s.post("/v1/workflows", json!({"name": "chain", "definition": chain}));
    assert_eq!(status, 201, "{body}");
    let (other_key, _) = s.new_account("other");
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/console/console_test.py"))
        .env("STOKE_ENDPOINT", &s.url)
        .env("STOKE_API_KEY", &s.api_key)
        .env("STOKE_OTHER_KEY", &other_key);
    // `STOKE_SCREENSHOTS=docs/console` (from the repository's root) refreshes the documentation's pictures.
    if let Some(dir) = std::env::var_os("STOKE_SCREENSHOTS") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        cmd.env("STOKE_SCREENSHOTS", dir);
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the console's browser test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
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
