//! Real AWS clients against a real server: the boto3 script in tests/clients deploys, publishes,
//! aliases, invokes (sync, Event, DryRun, Tail, client context) and deletes; wrong credentials are refused.

mod common;

use std::process::Command;

use common::*;

fn python_has(module: &str) -> bool {
    Command::new("python3").args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn boto3_drives_the_lambda_api() {
    if !python_has("boto3") {
        assert!(std::env::var_os("CI").is_none(), "boto3 must be installed in CI (scripts/prereqs installs it)");
        eprintln!("SKIPPED boto3 client test: boto3 is not installed (run scripts/prereqs)");
        return;
    }
    let s = TestServer::start();
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.dir.join("credentials.json")).unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/clients/boto3_lambda.py");
    let out = Command::new("python3")
        .arg(script)
        .env("STOKE_ENDPOINT", &s.url)
        .env("STOKE_AKID", creds["access_key_id"].as_str().unwrap())
        .env("STOKE_SECRET", creds["secret_access_key"].as_str().unwrap())
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "boto3 script failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

/// The Python interpreter that has `module`, resolved past version-manager shims.
fn python_with(module: &str) -> Option<String> {
    let out =
        Command::new("python3").args(["-c", &format!("import {module}, sys; print(sys.executable)")]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn provided_zip(bootstrap: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("bootstrap", zip::write::SimpleFileOptions::default().unix_permissions(0o755)).unwrap();
    std::io::Write::write_all(&mut w, bootstrap.as_bytes()).unwrap();
    for (name, body) in files {
        w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut w, body.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn invoke(s: &TestServer, function: &str, event: serde_json::Value) -> (Option<String>, serde_json::Value) {
    let resp = s.req(reqwest::Method::POST, &format!("/v1/functions/{function}/invoke")).json(&event).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let error = resp.headers().get("x-stoke-function-error").map(|v| v.to_str().unwrap().to_string());
    (error, resp.json().unwrap())
}

#[test]
fn awslambdaric_runs_unmodified_as_a_provided_runtime() {
    let Some(python) = python_with("awslambdaric") else {
        assert!(std::env::var_os("CI").is_none(), "awslambdaric must be installed in CI (scripts/prereqs installs it)");
        eprintln!("SKIPPED awslambdaric test: awslambdaric is not installed (run scripts/prereqs)");
        return;
    };
    let s = TestServer::start();
    let bootstrap = format!("#!/bin/sh\nexec {python} -m awslambdaric app.handler\n");
    let app = r#"
def handler(event, context):
    if event.get('fail'):
        raise ValueError('asked to fail')
    return {'event': event, 'name': context.function_name, 'memory': context.memory_limit_in_mb,
            'request': context.aws_request_id, 'remaining': context.get_remaining_time_in_millis() > 0}
"#;
    let body = serde_json::json!({"name": "ric", "runtime": "provided.al2023", "timeout_s": 10,
        "code_base64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, provided_zip(&bootstrap, &[("app.py", app)]))});
    assert_eq!(s.post("/v1/functions", body).0, 201);
    let (error, out) = invoke(&s, "ric", serde_json::json!({"x": 1}));
    assert_eq!(error, None, "{out}");
    assert_eq!(out["event"], serde_json::json!({"x": 1}));
    assert_eq!(out["name"], "ric");
    assert_eq!(out["memory"], "128");
    assert_eq!(out["remaining"], true);
    let (error, out) = invoke(&s, "ric", serde_json::json!({"fail": true}));
    assert_eq!(error.as_deref(), Some("ValueError"), "{out}");
    assert_eq!(out["errorMessage"], "asked to fail");
    // Warm reuse with the real client, too.
    let (_, again) = invoke(&s, "ric", serde_json::json!({"x": 2}));
    assert_eq!(again["event"], serde_json::json!({"x": 2}));
    assert_eq!(s.get("/v1/instances?function=ric").1["instances"].as_array().unwrap().len(), 1);

    // awslambdaric's init error path (exactly 202 expected) reports the import failure.
    let bad = format!("#!/bin/sh\nexec {python} -m awslambdaric missing.handler\n");
    let body = serde_json::json!({"name": "ricbad", "runtime": "provided",
        "code_base64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, provided_zip(&bad, &[]))});
    assert_eq!(s.post("/v1/functions", body).0, 201);
    let (error, out) = invoke(&s, "ricbad", serde_json::json!({}));
    assert_eq!(error.as_deref(), Some("Runtime.ImportModuleError"), "{out}");
}

/// Builds tests/functions/rust-echo (lambda_runtime) into its own target directory and returns the binary.
fn build_rust_echo() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = root.join("target/functions");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--locked", "--quiet", "--manifest-path"])
        .arg(root.join("tests/functions/rust-echo/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the lambda_runtime test function failed");
    target.join("debug/bootstrap")
}

#[test]
fn lambda_runtime_rust_function_runs_unmodified() {
    let binary = std::fs::read(build_rust_echo()).unwrap();
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("bootstrap", zip::write::SimpleFileOptions::default().unix_permissions(0o755)).unwrap();
    std::io::Write::write_all(&mut w, &binary).unwrap();
    let archive = w.finish().unwrap().into_inner();
    let s = TestServer::start();
    let body = serde_json::json!({"name": "rusty", "runtime": "provided.al2023", "memory_mb": 256,
        "code_base64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, archive)});
    let (status, created) = s.post("/v1/functions", body);
    assert_eq!(status, 201, "{created}");
    let (error, out) = invoke(&s, "rusty", serde_json::json!({"x": 1}));
    assert_eq!(error, None, "{out}");
    assert_eq!(out["echo"], serde_json::json!({"x": 1}));
    assert_eq!(out["function"], "rusty");
    assert_eq!(out["memory"], 256);
    assert_eq!(out["version"], "$LATEST");
    let (error, out) = invoke(&s, "rusty", serde_json::json!({"fail": true}));
    assert!(error.is_some(), "{out}");
    assert_eq!(out["errorMessage"], "asked to fail");
    let (error, _) = invoke(&s, "rusty", serde_json::json!({"x": 2}));
    assert_eq!(error, None, "the instance survives a handler error");
    assert_eq!(s.get("/v1/instances?function=rusty").1["instances"].as_array().unwrap().len(), 1);
}
