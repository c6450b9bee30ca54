//! `stoke tune` against a real server and real Python functions in the lean sandbox, with CPU capped in
//! proportion to memory as on Lambda: a CPU-bound function gets the size where it stops getting faster, a
//! memory-bound one the smallest size its working set fits in, a flat I/O-bound one the smallest size. Bad
//! requests get clear errors and start nothing.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// About 150 ms of pure Python CPU work at one full core for n = 2,000,000: longer than the CFS period
/// (100 ms), so a CPU quota shows in the duration (a job shorter than its quota per period runs at full speed).
const CPU_BOUND: &str = include_str!("../../../tests/functions/tune/crunch.py");
/// Holds a 300 MB working set loaded at init; each call then does little, so it is no faster with more
/// memory once the set fits.
const MEMORY_BOUND: &str = include_str!("../../../tests/functions/tune/model.py");
/// Waits on "I/O": more memory buys nothing.
const FLAT: &str = include_str!("../../../tests/functions/tune/waiter.py");

/// The tests of this file run one at a time: a tune measures speed, and the CPU-bound function's largest
/// size needs a whole core of this machine to itself.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts a tune and waits for it to end.
fn tune(s: &TestServer, function: &str, body: Value) -> Value {
    let (status, started) = s.post(&format!("/v1/functions/{function}/tune"), body);
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["state"], "running");
    let id = started["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (status, t) = s.get(&format!("/v1/tunes/{id}"));
        assert_eq!(status, 200, "{t}");
        if t["state"] != "running" {
            return t;
        }
        assert!(t["progress"]["done"].as_u64() <= t["progress"]["total"].as_u64(), "{t}");
        assert!(Instant::now() < deadline, "tune did not finish: {t}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn size(t: &Value, mb: u64) -> &Value {
    t["sizes"].as_array().unwrap().iter().find(|r| r["memory_mb"] == mb).unwrap_or_else(|| panic!("{mb} MB: {t}"))
}

fn warm(t: &Value, mb: u64) -> f64 {
    size(t, mb)["warm_ms"].as_f64().unwrap_or_else(|| panic!("{mb} MB has no warm runs: {t}"))
}

#[test]
fn the_tuner_recommends_the_right_size_for_cpu_memory_and_io_bound_functions() {
    let _serial = serial();
    if !privileged("tune recommendations") {
        return;
    }
    let s = TestServer::start_with(&["--sandbox", "lean", "--cpu-quota"]);

    // CPU-bound: every size is faster than the one below until one full vCPU (1769 MB).
    python_fn(&s, "crunch", CPU_BOUND, json!({"memory_mb": 256, "timeout_s": 60}));
    // Each size has twice the CPU of the one below (0.14, 0.29, 0.58, 1.16 vCPU): ideally half the time. On
    // two busy cores the larger quotas are not always met (a run saw 1.37× between 512 and 1024 MB), so the
    // check is that each is clearly faster, not by how much. The largest size's single thread needs a whole
    // core, which another process on a shared two-core machine can take for the length of its runs (one CI
    // run in ten saw 1024 and 2048 MB within 2 %): a tune whose sizes do not fall — the largest by more than
    // the strategy's 5 % tolerance, or it is rightly not recommended — is run once more.
    let falls = |t: &Value| {
        let (w256, w512, w1024, w2048) = (warm(t, 256), warm(t, 512), warm(t, 1024), warm(t, 2048));
        w256 > w512 * 1.2 && w512 > w1024 * 1.2 && w1024 > w2048 * 1.05
    };
    let body = json!({"payload": {"n": 2000000}, "memory": [256, 512, 1024, 2048], "runs": 4});
    let mut t = tune(&s, "crunch", body.clone());
    assert_eq!(t["state"], "succeeded", "{t}");
    if !falls(&t) {
        eprintln!("the CPU-bound tune's durations did not fall with memory; measuring again: {t}");
        t = tune(&s, "crunch", body);
        assert_eq!(t["state"], "succeeded", "{t}");
    }
    assert_eq!((t["cpu_follows_memory"].as_bool(), t["memory_enforced"].as_bool()), (Some(true), Some(true)));
    assert!(falls(&t), "durations fall with memory: {t}");
    assert_eq!(t["recommendation"]["memory_mb"], 2048, "{t}");
    assert_eq!(t["recommendation"]["current_mb"], 256);
    assert!(size(&t, 256)["cold_ms"].as_f64().unwrap() > size(&t, 256)["init_ms"].as_f64().unwrap());
    assert!(t["skipped"].as_array().unwrap().is_empty(), "durations kept falling: {t}");
    let (_, f) = s.get("/v1/functions/crunch");
    assert_eq!(f["memory_mb"], 256, "nothing applied without apply");
    assert_eq!(f["last_tune"]["id"], t["id"], "the function shows its latest tune");
    // The test sizes' instances go when the tune ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = s.get("/v1/instances?function=crunch");
        let left = list["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["version"].as_str().unwrap().starts_with("tune-"))
            .count();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the tune's instances were not released: {list}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Memory-bound: 300 MB do not fit in 128 or 256 MB; 512 is enough, and 1024 is no faster.
    python_fn(&s, "hog", MEMORY_BOUND, json!({"memory_mb": 1024, "timeout_s": 30}));
    // 512 and 1024 MB run it in the same time within a few per cent: on a shared two-core machine another
    // process can push 512 MB's runs past the 5 % tolerance (one CI run in many saw 5.4 %), so a tune that does
    // not pick 512 MB is run once more, and the second must.
    let body = json!({"payload": {"i": 7}, "memory": [128, 256, 512], "runs": 3});
    let mut t = tune(&s, "hog", body.clone());
    assert_eq!(t["state"], "succeeded", "{t}");
    if t["recommendation"]["memory_mb"] != 512 {
        eprintln!("the memory-bound tune did not pick 512 MB; measuring again: {t}");
        t = tune(&s, "hog", body);
        assert_eq!(t["state"], "succeeded", "{t}");
    }
    for mb in [128, 256] {
        assert_eq!(size(&t, mb)["out_of_memory"], true, "{mb} MB: {t}");
        assert!(size(&t, mb)["error"].as_str().unwrap().starts_with("Runtime.OutOfMemory"), "{t}");
    }
    assert!(size(&t, 512)["peak_mb"].as_u64().unwrap() >= 300, "the cgroup saw the working set: {t}");
    let r = &t["recommendation"];
    assert_eq!(r["memory_mb"], 512, "{t}");
    let summary = r["summary"].as_str().unwrap();
    assert!(summary.starts_with("1024 MB → 512 MB:") && summary.contains("50 % less memory reserved"), "{summary}");

    // Flat: the smallest size; two larger sizes that bring nothing end the search early. Its recorded
    // traffic (25 calls, a few ms apart) also says the 600 s keep-alive is far longer than it needs.
    python_fn(&s, "waiter", FLAT, json!({"memory_mb": 512, "timeout_s": 30}));
    for _ in 0..25 {
        let (status, _) = s.post("/v1/functions/waiter/invoke", json!({}));
        assert_eq!(status, 200);
    }
    std::thread::sleep(Duration::from_millis(100));
    let (status, v) = s.post("/v1/functions/waiter/versions", json!({}));
    assert_eq!(status, 201, "{v}");
    let (status, a) =
        s.call(s.req(reqwest::Method::PUT, "/v1/functions/waiter/aliases/prod").json(&json!({"version": "1"})));
    assert_eq!(status, 200, "{a}");
    let t = tune(
        &s,
        "waiter",
        json!({"memory": [128, 256, 512, 1024, 1536, 2048, 3072], "runs": 3, "apply": true, "alias": "prod"}),
    );
    assert_eq!(t["state"], "succeeded", "{t}");
    assert_eq!(t["recommendation"]["memory_mb"], 128, "{t}");
    let skipped: Vec<u64> = t["skipped"].as_array().unwrap().iter().map(|m| m.as_u64().unwrap()).collect();
    assert!(skipped.contains(&3072), "the search stopped before the largest size: {t}");
    assert!((warm(&t, 128) - warm(&t, 512)).abs() < 0.05 * warm(&t, 512), "{t}");
    let k = &t["keep_alive"];
    assert_eq!(k["calls"], 25, "{t}");
    assert_eq!(k["current"]["keep_alive_s"], 600);
    assert!(k["chosen"]["keep_alive_s"].as_u64().unwrap() < 600, "{k}");
    assert_eq!(k["chosen"]["cold_starts"], k["current"]["cold_starts"], "no more cold starts: {k}");
    assert!(k["chosen"]["idle_instance_s"].as_f64() < k["current"]["idle_instance_s"].as_f64(), "{k}");
    // Applied: $LATEST at 128 MB, published as version 2, prod moved to it.
    assert_eq!(t["applied"], json!({"memory_mb": 128, "version": 2, "alias": "prod"}), "{t}");
    let (_, f) = s.get("/v1/functions/waiter:prod");
    assert_eq!((f["memory_mb"].as_u64(), f["version"].as_str()), (Some(128), Some("2")), "{f}");
}

#[test]
fn the_cli_prints_the_table_the_recommendation_and_a_chart() {
    let _serial = serial();
    let s = TestServer::start();
    python_fn(&s, "quick", "def handler(event, context):\n    return event\n", json!({"memory_mb": 256}));
    let chart = s.dir.join("quick.png");
    let out = s
        .cli()
        .args(["tune", "quick", "--payload", "{\"a\": 1}", "--memory", "128,256", "--runs", "2", "--apply", "--chart"])
        .arg(&chart)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for needle in ["memory MB", "warm ms", "128", "256", "recommendation:", "keep-alive:", "applied: $LATEST set to"] {
        assert!(stdout.contains(needle), "{needle:?} in {stdout}");
    }
    let png = std::fs::read(&chart).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 1000, "the chart has content");
    let out = s.cli().args(["fn", "get", "quick"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("last tune") && stdout.contains("(succeeded)"), "{stdout}");

    // Errors come back as the API's sentence, with a failing exit status.
    let out = s.cli().args(["tune", "quick", "--memory", "100"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("memory size 100 MB is not valid"), "{out:?}");
}

#[test]
fn bad_tune_requests_get_clear_errors_and_start_nothing() {
    let _serial = serial();
    let s = TestServer::start_with(&["--max-memory-mb", "2048"]);
    python_fn(&s, "f", "def handler(event, context):\n    return event['missing']\n", json!({}));
    let post = |f: &str, body: Value| s.post(&format!("/v1/functions/{f}/tune"), body);
    assert_error(&post("nope", json!({})), 404, "not_found", "nope");
    assert_error(&post("f", json!({"memory": [4096]})), 400, "invalid_parameter", "node's limit of 2048 MB");
    assert_error(&post("f", json!({"memory": [200]})), 400, "invalid_parameter", "multiples of 64");
    assert_error(&post("f", json!({"memory": []})), 400, "invalid_parameter", "at least one");
    assert_error(&post("f", json!({"runs": 0})), 400, "invalid_parameter", "runs 0");
    assert_error(&post("f", json!({"strategy": "fastest"})), 400, "invalid_parameter", "smallest-not-slower");
    assert_error(
        &post("f", json!({"strategy": "smallest-not-slower", "tolerance": 3})),
        400,
        "invalid_parameter",
        "tolerance",
    );
    assert_error(&post("f", json!({"alias": "prod"})), 400, "invalid_parameter", "apply");
    assert_error(&post("f", json!({"apply": true, "alias": "prod"})), 404, "not_found", "alias prod");
    let (status, body) = post("f", json!({"sizes": [128]}));
    assert_eq!(status, 400, "unknown fields are refused: {body}");
    for (field, resp) in [("memory", post("f", json!({"memory": [4096]}))), ("runs", post("f", json!({"runs": 0})))] {
        assert_eq!(resp.1["error"]["field"], field);
    }
    let (_, f) = s.get("/v1/functions/f");
    assert!(f.get("last_tune").is_none(), "no tune was recorded: {f}");
    assert_error(&s.get("/v1/tunes/00000000-0000-0000-0000-000000000000"), 404, "not_found", "does not exist");

    // A payload the function always fails on: the tune stops after the first sizes and says why.
    let t = {
        let (status, started) = post("f", json!({"payload": {"x": 1}, "memory": [128, 256, 512, 1024], "runs": 2}));
        assert_eq!(status, 202, "{started}");
        let id = started["id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, t) = s.get(&format!("/v1/tunes/{id}"));
            if t["state"] != "running" {
                break t;
            }
            assert!(Instant::now() < deadline, "{t}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(t["state"], "failed", "{t}");
    assert_eq!(t["error"]["code"], "function_failed", "{t}");
    let message = t["error"]["message"].as_str().unwrap();
    assert!(message.contains("KeyError") && message.contains("stoke invoke f"), "{message}");
    assert!(t["recommendation"].is_null());
    // Another account sees none of it.
    let (key, _) = s.new_account("other");
    let resp = s.call(s.req_as(&key, reqwest::Method::GET, &format!("/v1/tunes/{}", t["id"].as_str().unwrap())));
    assert_error(&resp, 404, "not_found", "does not exist");
}
