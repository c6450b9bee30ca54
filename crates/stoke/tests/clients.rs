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
