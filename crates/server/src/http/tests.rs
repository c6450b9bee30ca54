//! The HTTP API called in process: a whole server (SQLite in a temp dir, the real registry, scheduler and
//! services) whose instances run on the fake sandbox's scripted runtime, its router driven with `oneshot`.
//! For the status codes, error bodies and translations of the handlers; the binary's own tests cover
//! real processes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use serde_json::{json, Value};
use stoke_sandbox::fake::{Action, FakeSandbox, Script};
use tower::ServiceExt;

use crate::{SandboxChoice, Server, ServerConfig};

struct Api {
    _dir: tempfile::TempDir,
    server: Server,
    key: String,
    fake: Arc<FakeSandbox>,
}

async fn api(script: Script) -> Api {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        region: ServerConfig::DEFAULT_REGION.into(),
        max_memory_mb: Some(2048),
        gpus: Some(0),
        nvml_library: None,
        gpu_mps: false,
        gpu_dev_dir: None,
        gpu_host: None,
        max_archive_mb: ServerConfig::DEFAULT_MAX_ARCHIVE_MB,
        max_image_mb: ServerConfig::DEFAULT_MAX_IMAGE_MB,
        memory_overcommit: 16.0,
        account_concurrency: 100,
        sandbox: SandboxChoice::Process,
        jail_helper: None,
        lean: Default::default(),
        freeze_idle_after: None,
        prewarm: Default::default(),
        pricing: Default::default(),
        reservation_ttl: Duration::from_secs(30),
        generic: Vec::new(),
        zygotes: 0,
        first_wave: 2,
        max_starting: None,
        cluster: None,
        transport: Default::default(),
        env_key_file: None,
        schedule_clock: None,
    };
    let fake = Arc::new(FakeSandbox::new(script));
    let server = Server::start_with_sandbox(config, fake.clone()).await.expect("the server starts");
    let creds: Value =
        serde_json::from_slice(&std::fs::read(&server.info().credentials_path).expect("credentials")).expect("json");
    let key = creds["api_key"].as_str().expect("an api key").to_string();
    Api { _dir: dir, server, key, fake }
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>, key: Option<&str>) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.raw(req.body(body).expect("a request")).await
    }

    async fn raw(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.server.app().oneshot(req).await.expect("the router answers");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("a body");
        let value =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    async fn as_admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, body, Some(&self.key.clone())).await
    }

    async fn invoke(&self, function: &str, payload: &str) -> (StatusCode, Value) {
        let req = Request::post(format!("/v1/functions/{function}/invoke"))
            .header("authorization", format!("Bearer {}", self.key))
            .body(Body::from(payload.to_string()))
            .expect("a request");
        self.raw(req).await
    }
}

fn zip_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(crate::fixtures::zip_of("def handler(e, c):\n    return e\n"))
}

fn function(name: &str) -> Value {
    json!({"name": name, "runtime": "python3.12", "handler": "app.handler", "code_base64": zip_b64()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_is_created_read_and_invoked_without_a_process() {
    let a = api(Script::echo()).await;
    let (status, created) = a.as_admin(Method::POST, "/v1/functions", Some(function("echo"))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "echo");
    let (status, got) = a.as_admin(Method::GET, "/v1/functions/echo", None).await;
    assert_eq!((status, &got["name"]), (StatusCode::OK, &json!("echo")), "{got}");
    let (status, out) = a.invoke("echo", r#"{"hello": 1}"#).await;
    assert_eq!((status, out), (StatusCode::OK, json!({"hello": 1})));
    let (status, out) = a.invoke("echo", "").await;
    assert_eq!((status, out), (StatusCode::OK, json!({})), "no body is the event {{}}");
    assert_eq!(a.fake.spawn_count(), 1, "the second call was warm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_a_code_and_a_sentence_and_no_instance_runs_for_a_bad_request() {
    let a = api(Script::reply(|_| Action::fail("ValueError", "asked to fail"))).await;
    let (status, body) = a.call(Method::GET, "/v1/functions", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("missing_credentials")));
    let (status, body) = a.call(Method::GET, "/v1/functions", None, Some("sk_not-a-key")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(!body.to_string().contains(a._dir.path().to_str().unwrap()), "a 401 names no path: {body}");

    let cases: Vec<(Method, &str, Option<Value>, StatusCode, &str)> = vec![
        (Method::GET, "/v1/functions/ghost", None, StatusCode::NOT_FOUND, "not_found"),
        (Method::POST, "/v1/functions", Some(json!({"name": "x"})), StatusCode::BAD_REQUEST, "invalid_parameter"),
        (
            Method::POST,
            "/v1/functions",
            Some(json!({"name": "bad name!", "runtime": "python3.12", "handler": "a.b", "code_base64": zip_b64()})),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            Method::POST,
            "/v1/functions",
            Some(json!({"name": "z", "runtime": "python3.12", "handler": "a.b", "code_base64": "bm90IGEgemlw"})),
            StatusCode::BAD_REQUEST,
            "invalid_archive",
        ),
        (Method::GET, "/v1/executions/nope", None, StatusCode::NOT_FOUND, "execution_not_found"),
    ];
    for (method, path, body, want, code) in cases {
        let (status, got) = a.as_admin(method.clone(), path, body).await;
        assert_eq!((status, got["error"]["code"].as_str()), (want, Some(code)), "{method} {path}: {got}");
        assert!(got["error"]["message"].as_str().is_some_and(|m| m.len() > 10), "{method} {path}: {got}");
    }

    let (status, _) = a.as_admin(Method::POST, "/v1/functions", Some(function("fails"))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = a.invoke("fails", "{not json").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request_content")));
    assert_eq!(a.fake.spawn_count(), 0, "an event that is not JSON starts no instance");
    let (status, body) = a.invoke("fails", "{}").await;
    assert_eq!((status, &body["errorType"]), (StatusCode::OK, &json!("ValueError")), "a function error is a 200");
    let (status, body) = a.as_admin(Method::POST, "/v1/functions", Some(function("fails"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_url_reaches_the_function_through_the_gateway() {
    let a = api(Script::reply(|inv| {
        let event: Value = serde_json::from_slice(inv.body_str().as_bytes()).unwrap_or_default();
        let reply = json!({"statusCode": 201, "headers": {"x-path": event["rawPath"]}, "body": event["body"]});
        Action::respond(reply.to_string())
    }))
    .await;
    assert_eq!(a.as_admin(Method::POST, "/v1/functions", Some(function("web"))).await.0, StatusCode::CREATED);
    let (status, url) = a.as_admin(Method::POST, "/v1/urls", Some(json!({"function": "web", "auth": "none"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{url}");
    let id = url["id"].as_str().expect("an id");
    let req = Request::post(format!("/u/{id}/a/b")).body(Body::from("hi")).expect("a request");
    let resp = a.server.app().oneshot(req).await.expect("an answer");
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["x-path"], "/a/b");
    assert!(resp.headers().contains_key("x-stoke-request-id"));
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("a body");
    assert_eq!(&body[..], b"hi");
    // The same URL with `key` auth: refused before the function runs, and let through with the key.
    let spawned = a.fake.spawn_count();
    let (status, _) = a.as_admin(Method::PATCH, &format!("/v1/urls/{id}"), Some(json!({"auth": "key"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = a.call(Method::POST, &format!("/u/{id}/"), Some(json!({})), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("missing_credentials")));
    let (status, _) = a.call(Method::POST, &format!("/u/{id}/"), Some(json!({})), Some(&a.key)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(a.fake.spawn_count(), spawned, "the warm instance served it");
    let (status, body) = a.call(Method::GET, "/u/nothing-here", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}
