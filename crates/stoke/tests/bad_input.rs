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

/// A zip of files (`None`) and symlinks (`Some(target)`).
fn zip_with_links(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, target) in entries {
        match target {
            Some(t) => w.add_symlink(*name, *t, zip::write::SimpleFileOptions::default()).unwrap(),
            None => {
                w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
                w.write_all(b"def handler(e, c):\n    return 1\n").unwrap();
            }
        }
    }
    w.finish().unwrap().into_inner()
}

/// A zip whose one file really holds `size` zero bytes but whose headers claim 100.
fn understated_zip(size: usize) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    w.start_file("app.py", options).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..size / chunk.len() {
        w.write_all(&chunk).unwrap();
    }
    let mut z = w.finish().unwrap().into_inner();
    for (sig, offset) in [(b"PK\x03\x04", 22), (b"PK\x01\x02", 24)] {
        let at = z.windows(4).position(|w| w == sig).unwrap() + offset;
        z[at..at + 4].copy_from_slice(&100u32.to_le_bytes());
    }
    z
}

#[test]
fn hostile_archives_are_refused_at_upload_naming_the_entry_and_store_nothing() {
    let s = TestServer::start();
    let b64 = |z: &[u8]| base64::engine::general_purpose::STANDARD.encode(z);
    let create = |name: &str, zip: &[u8]| {
        let body = json!({"name": name, "runtime": "python3.12", "handler": "app.handler", "code_base64": b64(zip)});
        s.post("/v1/functions", body)
    };
    // Entries written through a symlink that leaves the archive: refused naming the link.
    for (entries, needle) in [
        (vec![("app.py", None), ("out", Some("/tmp")), ("out/x", None)], "\"out\""),
        (vec![("app.py", None), ("a/b", Some("..")), ("a/c", Some("b/../..")), ("a/c/x", None)], "\"a/b\""),
        (vec![("app.py", None), ("d", Some("/tmp")), ("d/x", None)], "\"d\""),
    ] {
        let resp = create("evil", &zip_with_links(&entries));
        assert_error(&resp, 400, "invalid_archive", needle);
        assert_error(&resp, 400, "invalid_archive", "symlink");
    }
    // Headers claiming 100 bytes over 300 MiB of zeros: refused on the bytes really inflated.
    let resp = create("bomb", &understated_zip(300 << 20));
    assert!(resp.0 == 413 || resp.0 == 400, "{resp:?}");
    assert!(resp.1["error"]["code"] == "archive_too_large" || resp.1["error"]["code"] == "invalid_archive", "{resp:?}");
    // A layer with a link out of it: a client's bad archive, 400, never a 500.
    let layer = json!({"code_base64": b64(&zip_with_links(&[("python/x.py", None), ("python/out", Some("/etc"))]))});
    let resp = s.post("/v1/layers/evil/versions", layer);
    assert_error(&resp, 400, "invalid_archive", "\"python/out\"");
    // Nothing was stored.
    let (_, list) = s.get("/v1/functions");
    assert_eq!(list["functions"].as_array().map(Vec::len), Some(0), "{list}");
    assert_eq!(s.get("/v1/layers/evil/versions").0, 404);
}

#[test]
fn an_unauthenticated_caller_learns_nothing_about_the_server() {
    let s = TestServer::start();
    let dir = s.dir.to_string_lossy().into_owned();
    for path in ["/v1/functions", "/v1/node", "/v1/instances", "/metrics"] {
        let (status, body) = s.call(s.http_plain(Method::GET, path));
        assert_eq!(status, 401, "{path}: {body}");
        let text = body.to_string();
        assert!(!text.contains(&dir) && !text.contains("/tmp"), "{path} told an unauthenticated caller {text}");
    }
}

#[test]
fn an_event_that_is_not_json_is_refused_before_any_instance_runs() {
    let s = TestServer::start();
    python_fn(&s, "echo", "def handler(e, c):\n    return e\n", json!({}));
    for body in [&b"not json {"[..], b"{\"a\": 1", b"\xff\xfe"] {
        let resp = s.call(s.req(Method::POST, "/v1/functions/echo/invoke").body(body.to_vec()));
        assert_error(&resp, 400, "invalid_request_content", "not JSON");
    }
    let (_, list) = s.get("/v1/instances?function=echo");
    assert_eq!(list["instances"].as_array().map(Vec::len), Some(0), "no instance was started: {list}");
    // JSON of any kind still runs, and an empty body is {}.
    for (body, out) in [(&b"\"HelloWorld\""[..], json!("HelloWorld")), (b"0", json!(0)), (b"", json!({}))] {
        let (status, got) = s.call(s.req(Method::POST, "/v1/functions/echo/invoke").body(body.to_vec()));
        assert_eq!((status, got), (200, out));
    }
}
