//! Every kind of bad request gets the right 4xx, a machine-readable code, a message naming the problem —
//! and changes nothing.

mod common;

use base64::Engine;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

#[test]
fn invalid_requests_get_clear_errors_and_write_nothing() {
    // A small node: 2048 MB, no GPUs, 1 MB archives, so limits are easy to cross.
    let s = TestServer::start_with(&["--max-memory-mb", "2048", "--gpus", "0", "--max-archive-mb", "1"]);
    // A valid create request for a new name; each case breaks one thing in it.
    let good = create_body("fresh", &python_zip("fresh"));
    s.create_function("good", &python_zip("good"));
    let (key_b, _) = s.new_account("other");
    let before = s.get("/v1/functions/good").1;

    // Incompressible content so the zip itself is over the 1 MB limit.
    let huge = zip_of(&[("blob.bin", &noise(1, 1_500_000))]);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);

    // (description, request, status, code, words the message must contain)
    type Case = (&'static str, reqwest::blocking::RequestBuilder, u16, &'static str, &'static str);
    let post = |body: Value| s.req(Method::POST, "/v1/functions").json(&body);
    let cases: Vec<Case> = vec![
        ("no auth", s.http_plain(Method::GET, "/v1/functions"), 401, "missing_credentials", "Bearer"),
        ("wrong key", s.req_as("stk_nope", Method::GET, "/v1/functions"), 401, "invalid_credentials", "not valid"),
        (
            "basic auth",
            s.http_plain(Method::GET, "/v1/functions").basic_auth("a", Some("b")),
            401,
            "missing_credentials",
            "Bearer",
        ),
        ("not json", s.req(Method::POST, "/v1/functions").body("{nope"), 400, "invalid_json", "not valid JSON"),
        (
            "missing name",
            post(json!({"runtime": "python3.12", "code_base64": b64(&python_zip("x"))})),
            400,
            "invalid_parameter",
            "name is required",
        ),
        ("bad name", post(with(good.clone(), "name", json!("has space"))), 400, "invalid_parameter", "has space"),
        ("name not string", post(with(good.clone(), "name", json!(7))), 400, "invalid_parameter", "must be a string"),
        (
            "missing runtime",
            post(json!({"name": "x", "handler": "a.b", "code_base64": b64(&python_zip("x"))})),
            400,
            "invalid_parameter",
            "runtime is required",
        ),
        ("unknown runtime", post(with(good.clone(), "runtime", json!("java17"))), 400, "invalid_parameter", "java17"),
        (
            "memory not a multiple of 64",
            post(with(good.clone(), "memory_mb", json!(100))),
            400,
            "invalid_parameter",
            "multiple of 64",
        ),
        (
            "memory below 128",
            post(with(good.clone(), "memory_mb", json!(64))),
            400,
            "invalid_parameter",
            "memory_mb 64",
        ),
        ("memory above node", post(with(good.clone(), "memory_mb", json!(4096))), 400, "invalid_parameter", "2048"),
        (
            "timeout zero",
            post(with(good.clone(), "timeout_s", json!(0))),
            400,
            "invalid_parameter",
            "between 1 and 900",
        ),
        (
            "timeout too long",
            post(with(good.clone(), "timeout_s", json!(901))),
            400,
            "invalid_parameter",
            "timeout_s 901",
        ),
        ("negative memory", post(with(good.clone(), "memory_mb", json!(-128))), 400, "invalid_json", "memory_mb"),
        (
            "no handler for python",
            post(json!({"name": "x", "runtime": "python3.12", "code_base64": b64(&python_zip("x"))})),
            400,
            "invalid_parameter",
            "handler is required",
        ),
        (
            "malformed handler",
            post(with(good.clone(), "handler", json!("app"))),
            400,
            "invalid_parameter",
            "module.function",
        ),
        (
            "reserved env var",
            post(with(good.clone(), "environment", json!({"AWS_REGION": "x"}))),
            400,
            "invalid_parameter",
            "reserved",
        ),
        (
            "bad env var name",
            post(with(good.clone(), "environment", json!({"1X": "x"}))),
            400,
            "invalid_parameter",
            "start with a letter",
        ),
        ("gpu on gpu-less node", post(with(good.clone(), "gpu_count", json!(1))), 400, "invalid_parameter", "0 GPU"),
        (
            "gpu memory step",
            post(with(good.clone(), "gpu_memory_mb", json!(300))),
            400,
            "invalid_parameter",
            "multiple of 256",
        ),
        (
            "gpu percentage range",
            post(with(good.clone(), "gpu_percentage", json!(150))),
            400,
            "invalid_parameter",
            "between 1 and 100",
        ),
        (
            "min_warm over concurrency",
            post(with(with(good.clone(), "concurrency_limit", json!(2)), "min_warm", json!(3))),
            400,
            "invalid_parameter",
            "min_warm 3",
        ),
        (
            "concurrency too high",
            post(with(good.clone(), "concurrency_limit", json!(5000))),
            400,
            "invalid_parameter",
            "concurrency_limit 5000",
        ),
        (
            "keep-alive zero",
            post(with(good.clone(), "keep_alive_s", json!(0))),
            400,
            "invalid_parameter",
            "keep_alive_s 0",
        ),
        (
            "description too long",
            post(with(good.clone(), "description", json!("d".repeat(300)))),
            400,
            "invalid_parameter",
            "limit is 256",
        ),
        (
            "too many layers",
            post(with(good.clone(), "layers", json!(["a:1", "b:1", "c:1", "d:1", "e:1", "f:1"]))),
            400,
            "invalid_parameter",
            "at most 5",
        ),
        (
            "bad layer ref",
            post(with(good.clone(), "layers", json!(["numpy"]))),
            400,
            "invalid_parameter",
            "name:version",
        ),
        (
            "bad base image",
            post(with(good.clone(), "base_image", json!("Ubuntu Latest"))),
            400,
            "invalid_parameter",
            "base image",
        ),
        (
            "unknown field",
            post(with(good.clone(), "memory", json!(256))),
            400,
            "invalid_json",
            "unknown field `memory`",
        ),
        ("code not base64", post(with(good.clone(), "code_base64", json!("***"))), 400, "invalid_parameter", "base64"),
        ("empty archive", post(with(good.clone(), "code_base64", json!(""))), 400, "invalid_archive", "empty"),
        (
            "not an archive",
            post(with(good.clone(), "code_base64", json!(b64(b"plain text, not a zip")))),
            400,
            "invalid_archive",
            "neither a zip nor a tar.gz",
        ),
        (
            "truncated zip",
            post(with(good.clone(), "code_base64", json!(b64(b"PK\x03\x04broken")))),
            400,
            "invalid_archive",
            "malformed",
        ),
        (
            "path traversal",
            post(with(good.clone(), "code_base64", json!(b64(&zip_of(&[("../evil.py", b"x")]))))),
            400,
            "invalid_archive",
            "outside the code directory",
        ),
        (
            "oversized archive",
            post(with(with(good.clone(), "name", json!("huge")), "code_base64", json!(b64(&huge)))),
            413,
            "archive_too_large",
            "limit",
        ),
        (
            "oversized code upload",
            s.req(Method::PUT, "/v1/functions/good/code").body(huge.clone()),
            413,
            "archive_too_large",
            "limit",
        ),
        ("duplicate name", post(with(good.clone(), "name", json!("good"))), 409, "conflict", "already exists"),
        ("unknown function", s.req(Method::GET, "/v1/functions/ghost"), 404, "not_found", "ghost"),
        ("unknown alias", s.req(Method::GET, "/v1/functions/good:nope"), 404, "not_found", "alias nope"),
        ("unknown version", s.req(Method::GET, "/v1/functions/good:99"), 404, "not_found", "version 99"),
        ("malformed reference", s.req(Method::GET, "/v1/functions/a:b:c"), 400, "invalid_reference", "name:alias"),
        ("version zero", s.req(Method::GET, "/v1/functions/good:0"), 400, "invalid_reference", "numbered from 1"),
        (
            "qualifier on whole-function op",
            s.req(Method::PATCH, "/v1/functions/good:1").json(&json!({"timeout_s": 5})),
            400,
            "invalid_parameter",
            "drop the qualifier",
        ),
        (
            "empty update",
            s.req(Method::PATCH, "/v1/functions/good").json(&json!({})),
            400,
            "invalid_parameter",
            "changes nothing",
        ),
        (
            "illegal transition",
            s.req(Method::POST, "/v1/functions/good/unblock"),
            409,
            "illegal_transition",
            "allowed from LATEST: publish, block, update, retire",
        ),
        (
            "alias to missing version",
            s.req(Method::PUT, "/v1/functions/good/aliases/prod").json(&json!({"version": "7"})),
            404,
            "not_found",
            "version 7",
        ),
        (
            "all-digit alias",
            s.req(Method::PUT, "/v1/functions/good/aliases/12").json(&json!({"version": "$LATEST"})),
            400,
            "invalid_parameter",
            "version number",
        ),
        (
            "alias weight out of range",
            s.req(Method::PUT, "/v1/functions/good/aliases/prod")
                .json(&json!({"version": "$LATEST", "additional_version": "1", "additional_weight": 1.5})),
            400,
            "invalid_parameter",
            "between 0 and 1",
        ),
        (
            "alias missing version",
            s.req(Method::PUT, "/v1/functions/good/aliases/prod").json(&json!({})),
            400,
            "invalid_json",
            "missing field `version`",
        ),
        (
            "delete unknown alias",
            s.req(Method::DELETE, "/v1/functions/good/aliases/nope"),
            404,
            "not_found",
            "alias nope",
        ),
        ("list limit zero", s.req(Method::GET, "/v1/functions?limit=0"), 400, "invalid_parameter", "limit 0"),
        ("list limit not a number", s.req(Method::GET, "/v1/functions?limit=lots"), 400, "invalid_query", "limit"),
        (
            "version cursor not a number",
            s.req(Method::GET, "/v1/functions/good/versions?cursor=x"),
            400,
            "invalid_query",
            "cursor",
        ),
        ("cross-account by name", s.req_as(&key_b, Method::GET, "/v1/functions/good"), 404, "not_found", "good"),
        (
            "cross-account code update",
            s.req_as(&key_b, Method::PUT, "/v1/functions/good/code").body(python_zip("evil")),
            404,
            "not_found",
            "good",
        ),
        (
            "cross-account by ARN",
            s.req_as(
                &key_b,
                Method::POST,
                &format!("/v1/functions/arn:aws:lambda:us-east-1:{}:function:good/block", s.account_id),
            ),
            403,
            "cross_account",
            "your own account",
        ),
        (
            "non-admin creates account",
            s.req_as(&key_b, Method::POST, "/v1/accounts").json(&json!({"name": "sneaky"})),
            403,
            "forbidden",
            "admin",
        ),
        (
            "bad account name",
            s.req(Method::POST, "/v1/accounts").json(&json!({"name": "Bad Name"})),
            400,
            "invalid_parameter",
            "account name",
        ),
        (
            "duplicate account",
            s.req(Method::POST, "/v1/accounts").json(&json!({"name": "other"})),
            409,
            "conflict",
            "already exists",
        ),
        ("unknown route", s.req(Method::GET, "/v1/nothing-here"), 404, "unknown_route", "/v1/nothing-here"),
        ("wrong method", s.req(Method::DELETE, "/v1/functions"), 405, "method_not_allowed", "/v1/functions"),
    ];
    assert!(cases.len() >= 30);
    let mut failures = vec![];
    for (what, req, status, code, needle) in cases {
        let resp = s.call(req);
        let result = std::panic::catch_unwind(|| assert_error(&resp, status, code, needle));
        if result.is_err() {
            failures.push(format!("{what}: got {} {}", resp.0, resp.1));
        }
    }
    assert!(failures.is_empty(), "cases that did not get the expected error:\n{}", failures.join("\n"));

    // Nothing above changed anything: one function, as it was; one extra account; no stray archives.
    let (_, list) = s.get("/v1/functions");
    let names: Vec<_> = list["functions"].as_array().unwrap().iter().map(|f| f["name"].clone()).collect();
    assert_eq!(names, vec![json!("good")]);
    assert_eq!(s.get("/v1/functions/good").1, before);
    let (_, accounts) = s.get("/v1/accounts");
    assert_eq!(accounts["accounts"].as_array().unwrap().len(), 2);
    let archives = files_under(&s.code_dir());
    assert_eq!(archives.len(), 1, "{archives:?}");
}

/// Sends a whole request — headers, then every byte of the body — before reading the answer, as boto3 and
/// Python's `http.client` do, and returns the status line and the body of the answer.
fn send_all_then_read(s: &TestServer, path: &str, key: &str, body: &[u8]) -> std::io::Result<(String, String)> {
    use std::io::{Read, Write};
    let addr = s.url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    let status = answer.lines().next().unwrap_or_default().to_string();
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// A request refused before its body was read — a wrong key, or an upload over the size limit — still gets its
/// answer when the client sends the whole body first: the server reads the rest and drops it rather than
/// resetting the connection under the client (which would see a broken pipe, not the error).
#[test]
fn a_refusal_reaches_a_client_that_sends_the_whole_body_before_reading() {
    let s = TestServer::start_with(&["--max-archive-mb", "4"]);
    let big = vec![b'a'; 24 << 20];
    let (status, body) = send_all_then_read(&s, "/v1/functions", "stk_not_a_key", &big).expect("the 401 is read");
    assert!(status.contains(" 401 "), "{status}: {body}");
    assert!(body.contains("\"code\""), "a machine-readable error: {body}");
    let (status, body) = send_all_then_read(&s, "/v1/functions", &s.api_key, &big).expect("the 413 is read");
    assert!(status.contains(" 413 "), "{status}: {body}");
    // Nothing was created, and the server still serves.
    let (code, list) = s.get("/v1/functions");
    assert_eq!(code, 200);
    assert_eq!(list["functions"].as_array().map(Vec::len), Some(0), "{list}");
}
