//! SIGKILL the server in the middle of code uploads; after a restart every acknowledged function,
//! version and alias is there with byte-identical archives, and no partial archive remains.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::json;

/// An archive of `size` incompressible bytes, distinct per `tag`.
fn big_zip(tag: u64, size: usize) -> Vec<u8> {
    zip_of(&[("app.py", b"def handler(e, c):\n    return 1\n"), ("data.bin", &noise(tag, size))])
}

fn download_sha(s: &TestServer, reference: &str) -> String {
    let resp = s.req(Method::GET, &format!("/v1/functions/{reference}/code")).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200, "download {reference}");
    sha256_hex(&resp.bytes().unwrap())
}

/// Every file under code/ must be an archive some record points at, and .tmp must be empty.
fn assert_no_stray_archives(s: &TestServer, function: &str) {
    let tmp = files_under(&s.code_dir().join(".tmp"));
    assert!(tmp.is_empty(), "temp files left behind: {tmp:?}");
    let (_, f) = s.get(&format!("/v1/functions/{function}"));
    for file in files_under(&s.code_dir().join(&s.account_id).join(function)) {
        let dir = file.parent().and_then(Path::file_name).unwrap().to_string_lossy().to_string();
        let sha = file.file_stem().unwrap().to_string_lossy().to_string();
        let expected = if dir == "latest" {
            f["code_sha256"].as_str().unwrap().to_string()
        } else {
            s.get(&format!("/v1/functions/{function}:{dir}")).1["code_sha256"].as_str().unwrap_or("missing").to_string()
        };
        assert_eq!(sha, expected, "unreferenced archive {file:?}");
        assert_eq!(sha256_hex(&std::fs::read(&file).unwrap()), sha, "archive {file:?} is not whole");
    }
}

#[test]
fn kill_during_upload_body_keeps_the_acknowledged_state() {
    let mut s = TestServer::start();
    let v1 = python_zip("v1");
    s.create_function("f", &v1);
    assert_eq!(s.post("/v1/functions/f/versions", json!({})).0, 201);
    assert_eq!(s.call(s.req(Method::PUT, "/v1/functions/f/aliases/prod").json(&json!({"version": "1"}))).0, 200);

    // Send the headers and half of a 4 MB upload, then kill the server.
    let body = big_zip(7, 4 << 20);
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut conn = TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "PUT /v1/functions/f/code HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/zip\r\nContent-Length: {}\r\n\r\n",
        s.api_key,
        body.len()
    )
    .unwrap();
    conn.write_all(&body[..body.len() / 2]).unwrap();
    conn.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.kill9();
    drop(conn);

    s.launch();
    let (status, f) = s.get("/v1/functions/f");
    assert_eq!(status, 200);
    assert_eq!(f["code_sha256"], sha256_hex(&v1));
    assert_eq!(f["state"], "PUBLISHED");
    assert_eq!(download_sha(&s, "f"), sha256_hex(&v1));
    assert_eq!(download_sha(&s, "f:prod"), sha256_hex(&v1));
    assert_no_stray_archives(&s, "f");
}

#[test]
fn kill_at_random_moments_during_uploads_and_publishes_loses_nothing_acknowledged() {
    let mut s = TestServer::start();
    s.create_function("f", &python_zip("start"));
    let mut tag = 0u64;
    for round in 0..4u64 {
        let stop = Arc::new(AtomicBool::new(false));
        // Acknowledged facts: the last $LATEST sha, and every published version's sha.
        let acked_latest = Arc::new(Mutex::new(None::<String>));
        let acked_versions = Arc::new(Mutex::new(BTreeMap::<u64, String>::new()));
        let in_flight = Arc::new(Mutex::new(None::<String>));
        let writer = {
            let (url, key) = (s.url.clone(), s.api_key.clone());
            let (stop, acked_latest, acked_versions, in_flight) =
                (stop.clone(), acked_latest.clone(), acked_versions.clone(), in_flight.clone());
            let start_tag = tag;
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
                let mut t = start_tag;
                while !stop.load(Ordering::SeqCst) {
                    t += 1;
                    let code = big_zip(t, 1 << 20);
                    let sha = sha256_hex(&code);
                    *in_flight.lock().unwrap() = Some(sha.clone());
                    let ok = http
                        .put(format!("{url}/v1/functions/f/code"))
                        .bearer_auth(&key)
                        .body(code)
                        .send()
                        .map(|r| r.status().is_success())
                        .unwrap_or(false);
                    if !ok {
                        break;
                    }
                    *acked_latest.lock().unwrap() = Some(sha.clone());
                    if t.is_multiple_of(2) {
                        let resp = http
                            .post(format!("{url}/v1/functions/f/versions"))
                            .bearer_auth(&key)
                            .json(&json!({}))
                            .send();
                        match resp {
                            Ok(r) if r.status().as_u16() == 201 => {
                                let v: serde_json::Value = r.json().unwrap();
                                acked_versions.lock().unwrap().insert(v["version"].as_u64().unwrap(), sha.clone());
                            }
                            _ => break,
                        }
                    }
                }
                t
            })
        };
        // Let a few uploads land, then kill at a different offset into the next one each round.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while acked_versions.lock().unwrap().len() < 2 {
            assert!(std::time::Instant::now() < deadline, "round {round}: uploads did not get going");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(13 * round + 3));
        s.kill9();
        stop.store(true, Ordering::SeqCst);
        tag = writer.join().unwrap() + 1;

        s.launch();
        let (status, f) = s.get("/v1/functions/f");
        assert_eq!(status, 200, "round {round}");
        let latest = f["code_sha256"].as_str().unwrap().to_string();
        let acked = acked_latest.lock().unwrap().clone().expect("no upload was acknowledged before the kill");
        let pending = in_flight.lock().unwrap().clone();
        eprintln!("round {round}: {} versions acknowledged before the kill", acked_versions.lock().unwrap().len());
        assert!(
            latest == acked || Some(&latest) == pending.as_ref(),
            "round {round}: $LATEST is {latest}, acknowledged {acked}, in flight {pending:?}"
        );
        assert!(f["state"] == "LATEST" || f["state"] == "PUBLISHED", "round {round}: state {}", f["state"]);
        assert_eq!(download_sha(&s, "f"), latest, "round {round}");
        for (version, sha) in acked_versions.lock().unwrap().iter() {
            assert_eq!(&download_sha(&s, &format!("f:{version}")), sha, "round {round}: version {version}");
        }
        assert_no_stray_archives(&s, "f");
    }
}

#[test]
fn event_invocations_survive_sigkill_and_run_after_restart() {
    // The function marks each run with a file on the host, which only the process sandbox allows.
    let mut s = TestServer::start_with(&["--sandbox", "process"]);
    // One at a time and slow, so most events are still queued when the server dies.
    let src = "import time\ndef handler(e, c):\n    time.sleep(0.3)\n    open(e['marker'], 'w').write(c.aws_request_id)\n    return 1\n";
    let mut body = create_body("slow", &zip_of(&[("app.py", src.as_bytes())]));
    body["concurrency_limit"] = json!(1);
    assert_eq!(s.post("/v1/functions", body).0, 201);
    let markers = tempfile::tempdir().unwrap();
    let n = 12;
    for i in 0..n {
        let event = json!({ "marker": markers.path().join(format!("m{i}")) });
        let resp = s
            .http_plain(Method::POST, "/2015-03-31/functions/slow/invocations")
            .header("X-Amz-Invocation-Type", "Event")
            .json(&event);
        // The Lambda routes take SigV4; sign as boto3 would, via the CLI-independent helper.
        let resp = sign_lambda(&s, resp, &event).send().unwrap();
        assert_eq!(resp.status().as_u16(), 202, "{}", resp.text().unwrap());
    }
    std::thread::sleep(Duration::from_millis(400));
    s.kill9();
    let ran_before = files_under(markers.path()).len();
    assert!(ran_before < n, "all {n} events ran before the kill; the test proves nothing");
    s.launch();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while files_under(markers.path()).len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} events ran after the restart",
            files_under(markers.path()).len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{ran_before} of {n} events ran before the kill; all {n} after the restart");
}

/// Runs an execution of the durable function `brief` named `name` to its end; returns its id.
fn run_durable(s: &TestServer, name: &str) -> String {
    let path = format!("/v1/functions/brief/invoke?durable_execution_name={name}");
    let resp = s.req(Method::POST, &path).json(&json!({})).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let arn = resp.headers()["x-stoke-durable-execution-arn"].to_str().unwrap().to_string();
    arn.rsplit('/').next().unwrap().to_string()
}

/// Retention: an ended durable execution is kept its function's `retention_days` after its end (shown as
/// `expires_at`), then deleted whole — its record, history and name — by the sweep that runs at start and
/// hourly. The test moves the expiry into the past in the store while the server is down.
#[test]
fn an_ended_durable_execution_is_deleted_once_its_retention_runs_out() {
    // The SDK's output, written by hand: the durable service needs no SDK in the function.
    const DONE: &str = "def handler(event, context):\n    return {'Status': 'SUCCEEDED', 'Result': '\"done\"'}\n";
    let mut s = TestServer::start_with(&["--sandbox", "process"]);
    python_fn(&s, "brief", DONE, json!({"durable": {"execution_timeout_s": 60, "retention_days": 2}}));
    let (old, kept) = (run_durable(&s, "old"), run_durable(&s, "kept"));
    let (status, x) = s.get(&format!("/v1/durable-executions/{old}"));
    assert_eq!((status, x["status"].as_str()), (200, Some("SUCCEEDED")), "{x}");
    let ms = |field: &str| stoke_core::time::parse_rfc3339(x[field].as_str().unwrap()).unwrap();
    assert_eq!(ms("expires_at") - ms("ended_at"), 2 * 86_400 * 1_000_000_000, "two days after its end: {x}");

    s.kill9();
    {
        // Its expiry moved into the past, in whichever store the server keeps (SQLite, or etcd in cluster mode).
        let store = s.store();
        let account = stoke_core::AccountId::parse(&s.account_id).unwrap();
        let x = store.get_durable(&account, &old).unwrap().unwrap();
        let expired = stoke_store::DurableRecord { expires_ms: Some(1), ..x.clone() };
        store.record_durable(&expired, x.revision, &[], &[]).unwrap();
    }
    s.launch();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s.get(&format!("/v1/durable-executions/{old}")).0 != 404 {
        assert!(std::time::Instant::now() < deadline, "the expired execution is still there");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.get(&format!("/v1/durable-executions/{old}/history")).0, 404);
    let (status, kept_now) = s.get(&format!("/v1/durable-executions/{kept}"));
    assert_eq!((status, kept_now["status"].as_str()), (200, Some("SUCCEEDED")), "not expired, kept: {kept_now}");
    // A history cursor of digits past any event id (32 of them, the schema's limit) is the end, not an error.
    let (status, end) = s.get(&format!("/v1/durable-executions/{kept}/history?cursor={}", "9".repeat(32)));
    assert_eq!((status, end["events"].as_array().map(Vec::len)), (200, Some(0)), "{end}");
    // A cursor is at most 64 characters (the schema's limit counts characters, not bytes): within it, one this
    // API never gave finds nothing; past it, a 400 that says so.
    let wide = "𝕋".repeat(64);
    let (status, none) = s.get(&format!("/v1/functions/brief/durable-executions?cursor={wide}"));
    assert_eq!((status, none["executions"].as_array().map(Vec::len)), (200, Some(0)), "{none}");
    let (status, refused) = s.get(&format!("/v1/functions/brief/durable-executions?cursor={}", "x".repeat(65)));
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("invalid_parameter")), "{refused}");
    let (_, list) = s.get("/v1/functions/brief/durable-executions");
    let names: Vec<&str> = list["executions"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["kept"], "{list}");
    // Its name is free again: a new execution, not the deleted one's answer.
    let again = run_durable(&s, "old");
    assert_ne!(again, old);
}
