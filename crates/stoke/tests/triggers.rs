//! HTTP triggers against a real server with real functions: function URLs and routes, Lambda's HTTP API
//! payload format 2.0 both ways (Python and Node handlers written for it), binary bodies, cookies, custom
//! status, CORS, auth, every error status, live route changes, and curl as the client.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const PY_HANDLER: &str = r#"
import base64, json, time
def handler(event, context):
    path = event["rawPath"]
    if path == "/echo":
        return {"statusCode": 200, "headers": {"content-type": "application/json", "x-handler": "python"},
                "body": json.dumps({"method": event["requestContext"]["http"]["method"],
                    "path": event["requestContext"]["http"]["path"], "query": event.get("queryStringParameters"),
                    "raw_query": event["rawQueryString"], "cookies": event.get("cookies"),
                    "custom": event["headers"].get("x-custom"), "auth": event["headers"].get("authorization"),
                    "route": event["routeKey"], "body": event.get("body"), "b64": event["isBase64Encoded"],
                    "request": event["requestContext"]["requestId"], "same_id": event["requestContext"]["requestId"] == context.aws_request_id})}
    if path == "/binary":
        data = base64.b64decode(event["body"]) if event["isBase64Encoded"] else event["body"].encode()
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "isBase64Encoded": True, "body": base64.b64encode(data[::-1]).decode()}
    if path == "/teapot":
        return {"statusCode": 418, "headers": {"content-type": "text/plain"},
                "cookies": ["a=1; Path=/", "b=2; HttpOnly"], "body": "short and stout"}
    if path == "/plain":
        return {"hello": "world"}
    if path == "/fail":
        raise RuntimeError("asked to fail")
    if path == "/slow":
        time.sleep(event.get("queryStringParameters", {}).get("s") and float(event["queryStringParameters"]["s"]) or 5)
        return "late"
    if path == "/bad":
        return {"statusCode": "abc"}
    return {"statusCode": 200, "body": "default " + path}
"#;

const NODE_HANDLER: &str = r#"
exports.handler = async (event) => {
  if (event.routeKey === "GET /pets/{id}") {
    return { statusCode: 200, headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: event.pathParameters.id, q: event.queryStringParameters || null,
        cookies: event.cookies || null, ua: event.requestContext.http.userAgent }) };
  }
  if (event.routeKey === "ANY /files/{path+}") {
    const body = event.isBase64Encoded ? Buffer.from(event.body, "base64") : Buffer.from(event.body || "");
    return { statusCode: 201, headers: { "content-type": "application/octet-stream", "x-path": event.pathParameters.path },
      isBase64Encoded: true, body: Buffer.concat([Buffer.from("got:"), body]).toString("base64"), cookies: ["n=1"] };
  }
  return { statusCode: 200, body: "route " + event.routeKey };
};
"#;

fn python_fn(s: &TestServer, name: &str, extra: Value) {
    let mut body = create_body(name, &zip_of(&[("app.py", PY_HANDLER.as_bytes())]));
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, resp) = s.post("/v1/functions", body);
    assert_eq!(status, 201, "{resp}");
}

fn node_fn(s: &TestServer, name: &str) -> bool {
    if !present_or_skip(Command::new("node").arg("--version").output().is_ok(), "node", "node handler checks") {
        return false;
    }
    let mut body = create_body(name, &zip_of(&[("index.js", NODE_HANDLER.as_bytes())]));
    body["runtime"] = json!("nodejs20.x");
    body["handler"] = json!("index.handler");
    let (status, resp) = s.post("/v1/functions", body);
    assert_eq!(status, 201, "{resp}");
    true
}

/// Creates a function URL and returns its base (ending without '/').
fn url_for(s: &TestServer, function: &str, auth: &str) -> String {
    let (status, t) = s.post("/v1/urls", json!({"function": function, "auth": auth}));
    assert_eq!(status, 201, "{t}");
    assert_eq!(t["kind"], "url");
    t["url"].as_str().unwrap().trim_end_matches('/').to_string()
}

fn plain() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

fn curl(args: &[&str]) -> (String, Vec<u8>) {
    let out = Command::new("curl").args(["-s", "-S", "-D", "-"]).args(args).output().expect("curl is installed");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let split = out.stdout.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block") + 4;
    (String::from_utf8_lossy(&out.stdout[..split]).to_lowercase(), out.stdout[split..].to_vec())
}

#[test]
fn a_python_handler_behind_a_function_url_sees_the_http_api_event_and_shapes_the_response() {
    let s = TestServer::start();
    python_fn(&s, "web", json!({"timeout_s": 10}));
    let base = url_for(&s, "web", "none");
    let http = plain();

    let r = http
        .post(format!("{base}/echo?a=1&a=2&b=x+y"))
        .header("x-custom", "yes")
        .header("cookie", "s=1; theme=dark")
        .header("content-type", "text/plain")
        .body("hi there")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-handler"], "python");
    let request_id = r.headers()["x-stoke-request-id"].to_str().unwrap().to_string();
    let e: Value = r.json().unwrap();
    assert_eq!(e["method"], "POST");
    assert_eq!(e["path"], "/echo");
    assert_eq!(e["raw_query"], "a=1&a=2&b=x+y");
    assert_eq!(e["query"], json!({"a": "1,2", "b": "x y"}));
    assert_eq!(e["cookies"], json!(["s=1", "theme=dark"]));
    assert_eq!(e["custom"], "yes");
    assert_eq!(e["route"], "$default");
    assert_eq!(e["body"], "hi there");
    assert_eq!(e["b64"], false);
    assert_eq!(e["request"], request_id, "the event's request id is the invocation's");
    assert_eq!(e["same_id"], true);

    // Binary bodies round-trip, both ways.
    let payload: Vec<u8> = (0..=255u8).chain([0, 0xff, 0x80]).collect();
    let r = http
        .put(format!("{base}/binary"))
        .header("content-type", "application/octet-stream")
        .body(payload.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let mut reversed = payload.clone();
    reversed.reverse();
    assert_eq!(r.bytes().unwrap().to_vec(), reversed);

    // Custom status, headers and cookies.
    let r = http.get(format!("{base}/teapot")).send().unwrap();
    assert_eq!(r.status(), 418);
    let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; HttpOnly"]);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().unwrap(), "short and stout");

    // The URL as printed (with its trailing '/') and without it both reach the function at "/".
    for url in [format!("{base}/"), base.clone()] {
        let r = http.get(&url).send().unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.text().unwrap(), "default /");
    }

    // A result without statusCode is a 200 JSON body.
    let r = http.get(format!("{base}/plain")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.json::<Value>().unwrap(), json!({"hello": "world"}));

    // The same through curl.
    let (head, body) = curl(&[&format!("{base}/teapot"), "-H", "Cookie: c=3"]);
    assert!(head.starts_with("http/1.1 418"), "{head}");
    assert!(head.contains("set-cookie: a=1; path=/"), "{head}");
    assert_eq!(body, b"short and stout");
    let (head, body) =
        curl(&["-X", "POST", "--data-binary", "@-", &format!("{base}/echo?q=curl"), "-H", "x-custom: curl"]);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((e["custom"].as_str(), e["query"]["q"].as_str()), (Some("curl"), Some("curl")));

    // Every invocation went through the scheduler's pool: one instance, warm after the first request — or,
    // when the back-to-back requests kept it busy long enough (a slow machine), one per core at most, as
    // the pool grows under a lasting load.
    let (_, list) = s.get("/v1/instances?function=web");
    let instances = list["instances"].as_array().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    assert!((1..=cores).contains(&instances.len()), "{list}");
    assert!(instances.iter().any(|i| i["invocations"].as_u64() > Some(1)), "the first instance stayed warm: {list}");
}

#[test]
fn a_node_handler_behind_routes_gets_path_parameters_and_the_most_specific_route() {
    let s = TestServer::start();
    if !node_fn(&s, "pets") {
        return;
    }
    let (_, me) = s.get("/v1/account");
    let account = me["id"].as_str().unwrap().to_string();
    for route in ["GET /pets/{id}", "ANY /files/{path+}", "ANY /{proxy+}"] {
        let (status, t) = s.post("/v1/routes", json!({"route": route, "function": "pets", "auth": "none"}));
        assert_eq!(status, 201, "{t}");
        assert_eq!(t["route"], route);
        assert_eq!(t["url"], format!("{}/gw/{account}", s.url));
    }
    let gw = format!("{}/gw/{account}", s.url);
    let http = plain();
    let r = http.get(format!("{gw}/pets/42%20b?x=1")).header("cookie", "k=v").send().unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["id"], "42 b");
    assert_eq!(v["q"], json!({"x": "1"}));
    assert_eq!(v["cookies"], json!(["k=v"]));
    // POST does not match `GET /pets/{id}`: it falls through to the catch-all.
    assert_eq!(http.post(format!("{gw}/pets/42")).send().unwrap().text().unwrap(), "route ANY /{proxy+}");
    let r = http
        .post(format!("{gw}/files/a/b.bin"))
        .header("content-type", "image/png")
        .body(vec![0x89u8, 0x50, 0, 0xff])
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-path"], "a/b.bin");
    assert_eq!(r.headers()["set-cookie"], "n=1");
    assert_eq!(r.bytes().unwrap().to_vec(), [b"got:".as_slice(), &[0x89, 0x50, 0, 0xff]].concat());
    // With curl, and an unknown account's gateway.
    let (head, body) = curl(&[&format!("{gw}/pets/7")]);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["id"], "7");
    let r = http.get(format!("{}/gw/000000000000/pets/7", s.url)).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "no_route");
}

#[test]
fn each_failure_gets_its_own_status() {
    let s = TestServer::start();
    python_fn(&s, "web", json!({"timeout_s": 2, "concurrency_limit": 1}));
    let base = url_for(&s, "web", "none");
    let http = plain();
    let error = |r: reqwest::blocking::Response| -> (u16, Value) {
        let status = r.status().as_u16();
        (status, r.json().unwrap())
    };
    // Function error: 502 with the request id.
    let (status, body) = error(http.get(format!("{base}/fail")).send().unwrap());
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "function_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("RuntimeError"), "{body}");
    assert!(!body["error"]["request_id"].as_str().unwrap().is_empty());
    // A result that is not a response: 502.
    let (status, body) = error(http.get(format!("{base}/bad")).send().unwrap());
    assert_eq!((status, body["error"]["code"].as_str()), (502, Some("bad_function_response")));
    // Timeout: 504.
    let (status, body) = error(http.get(format!("{base}/slow?s=3")).send().unwrap());
    assert_eq!((status, body["error"]["code"].as_str()), (504, Some("function_timeout")), "{body}");
    // Too large: 413, and the function never sees it.
    let big = vec![b'x'; 6 * 1024 * 1024 + 1];
    let (status, body) = error(http.post(format!("{base}/echo")).body(big).send().unwrap());
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("payload_too_large")));
    // Unknown URL: 404.
    let (status, body) = error(http.get(format!("{}/u/doesnotexist/x", s.url)).send().unwrap());
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    // Throttled: with a limit of 1, one request running and one queued, the next gets 429.
    let busy = || {
        let (_, list) = s.get("/v1/instances?function=web");
        list["instances"].as_array().unwrap().iter().any(|i| i["state"] == "busy")
    };
    std::thread::scope(|scope| {
        let base = &base;
        let first = scope.spawn(move || plain().get(format!("{base}/slow?s=1.5")).send().unwrap().status().as_u16());
        for _ in 0..200 {
            if busy() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let second = scope.spawn(move || plain().get(format!("{base}/slow?s=0.1")).send().unwrap().status().as_u16());
        std::thread::sleep(Duration::from_millis(300));
        let r = plain().get(format!("{base}/plain")).send().unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "too_many_requests");
        assert_eq!(first.join().unwrap(), 200);
        assert_eq!(second.join().unwrap(), 200, "the queued request ran once the first was done");
    });
    // And the function still works.
    assert_eq!(http.get(format!("{base}/plain")).send().unwrap().status(), 200);
}

#[test]
fn key_auth_takes_only_the_owning_accounts_key_and_hides_it_from_the_function() {
    let s = TestServer::start();
    python_fn(&s, "web", json!({}));
    let base = url_for(&s, "web", "key");
    let http = plain();
    let r = http.get(format!("{base}/echo")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "missing_credentials");
    let r = http.get(format!("{base}/echo")).bearer_auth("wrong").send().unwrap();
    assert_eq!(r.status(), 401);
    let (other_key, _) = s.new_account("other");
    let r = http.get(format!("{base}/echo")).bearer_auth(&other_key).send().unwrap();
    assert_eq!(r.status(), 403);
    let r = http.get(format!("{base}/echo")).bearer_auth(&s.api_key).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["auth"], Value::Null, "the API key is not passed to the function");
    // The other account cannot see or delete this URL either.
    let id = base.rsplit('/').next().unwrap();
    let r = s.req_as(&other_key, Method::DELETE, &format!("/v1/urls/{id}")).send().unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn cors_preflights_are_answered_without_the_function_and_responses_carry_the_headers() {
    let s = TestServer::start();
    python_fn(&s, "web", json!({}));
    let (status, t) = s.post(
        "/v1/urls",
        json!({"function": "web", "auth": "none", "cors": {"allow_origins": ["https://app.example.com"],
            "allow_methods": ["GET", "POST"], "allow_headers": ["content-type"], "max_age_s": 300}}),
    );
    assert_eq!(status, 201, "{t}");
    let base = t["url"].as_str().unwrap().trim_end_matches('/').to_string();
    let http = plain();
    let r = http
        .request(Method::OPTIONS, format!("{base}/echo"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(r.headers()["access-control-max-age"], "300");
    let r = http
        .request(Method::OPTIONS, format!("{base}/echo"))
        .header("origin", "https://evil.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = http.get(format!("{base}/plain")).header("origin", "https://app.example.com").send().unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com");
    // No function ran for the preflights: one invocation in the log.
    let (_, logs) = s.get("/v1/functions/web/logs");
    let reports =
        logs["lines"].as_array().unwrap().iter().filter(|l| l["text"].as_str().unwrap().starts_with("REPORT")).count();
    assert_eq!(reports, 1);
    // Settings change in place; CORS can be removed.
    let id = t["id"].as_str().unwrap();
    let (status, t) = s.call(s.req(Method::PATCH, &format!("/v1/urls/{id}")).json(&json!({"cors": null})));
    assert_eq!(status, 200, "{t}");
    assert!(t.get("cors").is_none());
    let r = http.get(format!("{base}/plain")).header("origin", "https://app.example.com").send().unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[test]
fn routes_change_live_without_dropping_requests_in_flight() {
    let s = TestServer::start();
    python_fn(&s, "web", json!({"timeout_s": 10}));
    let (_, me) = s.get("/v1/account");
    let gw = format!("{}/gw/{}", s.url, me["id"].as_str().unwrap());
    let (status, _) = s.post("/v1/routes", json!({"route": "ANY /plain", "function": "web", "auth": "none"}));
    assert_eq!(status, 201);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (stop, gw2) = (&stop, &gw);
    /// Stops the load even when an assertion fails, so the scope can end and report it.
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        let _stop_guard = StopOnDrop(stop);
        let load = scope.spawn(move || {
            let http = plain();
            let (mut ok, mut bad) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = http.get(format!("{gw2}/plain")).send().unwrap();
                if r.status() == 200 {
                    ok += 1;
                } else {
                    bad.push(r.status().as_u16());
                }
            }
            (ok, bad)
        });
        // A slow request in flight while its own route is deleted still completes.
        let slow = scope.spawn(move || plain().get(format!("{gw2}/slow?s=1")).send().unwrap());
        let (status, slow_route) =
            s.post("/v1/routes", json!({"route": "GET /slow", "function": "web", "auth": "none"}));
        assert_eq!(status, 201, "{slow_route}");
        for i in 0..10 {
            let (status, t) =
                s.post("/v1/routes", json!({"route": format!("GET /extra{i}"), "function": "web", "auth": "none"}));
            assert_eq!(status, 201, "{t}");
            let r = plain().get(format!("{gw2}/extra{i}")).send().unwrap();
            assert_eq!(r.status(), 200, "a new route serves at once");
            let id = t["id"].as_str().unwrap();
            assert_eq!(s.call(s.req(Method::DELETE, &format!("/v1/routes/{id}"))).0, 204);
            assert_eq!(
                plain().get(format!("{gw2}/extra{i}")).send().unwrap().status(),
                404,
                "a deleted route is gone at once"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        let id = slow_route["id"].as_str().unwrap();
        assert_eq!(s.call(s.req(Method::DELETE, &format!("/v1/routes/{id}"))).0, 204);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, bad) = load.join().unwrap();
        assert!(ok > 0 && bad.is_empty(), "{ok} served, refused: {bad:?}");
        let slow = slow.join().unwrap();
        // The request was either matched before the route existed (404) or ran to the end.
        assert!(matches!(slow.status().as_u16(), 200 | 404), "{}", slow.status());
    });
}

#[test]
fn trigger_management_refuses_bad_input_with_the_reason() {
    let s = TestServer::start();
    python_fn(&s, "web", json!({}));
    let cases = [
        ("/v1/urls", json!({"function": "nope"}), 404, "not_found", "nope"),
        ("/v1/urls", json!({"function": "web:live"}), 404, "not_found", "live"),
        ("/v1/urls", json!({"function": "web", "auth": "open"}), 400, "invalid_json", "expected `none` or `key`"),
        ("/v1/urls", json!({"function": "web", "extra": 1}), 400, "invalid_json", "extra"),
        (
            "/v1/urls",
            json!({"function": "web", "cors": {"allow_origins": ["example.com"]}}),
            400,
            "invalid_parameter",
            "scheme://host",
        ),
        (
            "/v1/urls",
            json!({"function": "web", "cors": {"allow_origins": ["*"], "allow_credentials": true}}),
            400,
            "invalid_parameter",
            "credentials",
        ),
        ("/v1/routes", json!({"route": "FETCH /x", "function": "web"}), 400, "invalid_parameter", "not one of"),
        ("/v1/routes", json!({"route": "GET /{a+}/b", "function": "web"}), 400, "invalid_parameter", "last segment"),
        ("/v1/routes", json!({"function": "web"}), 400, "invalid_json", "missing field `route`"),
    ];
    for (path, body, status, code, needle) in cases {
        assert_error(&s.post(path, body.clone()), status, code, needle);
    }
    let (status, _) = s.post("/v1/routes", json!({"route": "GET /pets/{id}", "function": "web"}));
    assert_eq!(status, 201);
    assert_error(
        &s.post("/v1/routes", json!({"route": "get /pets/{name}", "function": "web"})),
        409,
        "conflict",
        "GET /pets/{id}",
    );
    // A URL id is not a route and the other way round.
    let (_, url) = s.post("/v1/urls", json!({"function": "web"}));
    let id = url["id"].as_str().unwrap();
    assert_error(&s.get(&format!("/v1/routes/{id}")), 404, "not_found", "not a route");
    // Nothing half-written: one URL, one route.
    assert_eq!(s.get("/v1/urls").1["triggers"].as_array().unwrap().len(), 1);
    assert_eq!(s.get("/v1/routes").1["triggers"].as_array().unwrap().len(), 1);
    // Deleting the function deletes its triggers.
    assert_eq!(s.call(s.req(Method::DELETE, "/v1/functions/web")).0, 204);
    assert!(s.get("/v1/urls").1["triggers"].as_array().unwrap().is_empty());
}

#[test]
fn the_cli_creates_lists_and_removes_urls_and_routes() {
    let s = TestServer::start();
    python_fn(&s, "web", json!({}));
    let out = s.cli().args(["url", "create", "web", "--auth", "none"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PUBLIC"), "--auth none warns loudly");
    let out = s.cli().args(["url", "ls", "-o", "json"]).output().unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let url = list["triggers"][0]["url"].as_str().unwrap().to_string();
    let id = list["triggers"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(plain().get(format!("{url}plain")).send().unwrap().status(), 200);
    let out = s.cli().args(["route", "add", "GET /hello/{name}", "web", "--auth", "none"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("GET /hello/{name}"));
    let out = s.cli().args(["route", "add", "GET /hello/{other}", "web"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("matches the same requests"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.cli().args(["route", "ls"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("/hello/{name}"));
    let out = s.cli().args(["url", "rm", &id]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(plain().get(format!("{url}plain")).send().unwrap().status(), 404);
}
