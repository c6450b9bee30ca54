//! Real AWS clients against a real server: the boto3 script in tests/clients and the aws cli each deploy,
//! publish, alias, invoke (sync, Event, DryRun, Tail) and delete, and wrong credentials are refused;
//! `awslambdaric` and a `lambda_runtime` Rust function run unmodified.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Doubles its event's `n`: the function the Step Functions scripts call.
const DOUBLE: &str = "def handler(event, context):\n    return {'n': event['n'] * 2}\n";

#[test]
fn boto3_drives_the_scheduler_api() {
    if !present_or_skip(python_has("boto3"), "boto3", "boto3 scheduler client test") {
        return;
    }
    // The function proves a fire ran by writing a file on the host (the process sandbox lets it).
    let s = TestServer::start_with(&["--sandbox", "process"]);
    run_boto3_script(&s, "boto3_scheduler.py");
}

/// A function's `LoggingConfig` (JSON logs from the Python runtime) and its logs read with CloudWatch Logs'
/// `FilterLogEvents`, through boto3.
#[test]
fn boto3_reads_a_functions_json_logs_with_cloudwatch_logs_filter_patterns() {
    if !present_or_skip(python_has("boto3"), "boto3", "CloudWatch Logs client test") {
        return;
    }
    let s = TestServer::start_with(&["--sandbox", "process"]);
    run_boto3_script(&s, "boto3_logs.py");
}

#[test]
fn boto3_drives_durable_functions_that_run_the_unmodified_sdk() {
    let Some(wheels) = durable_sdk("durable functions client test") else { return };
    let s = TestServer::start();
    // Another account, whose keys must reach none of the first account's executions.
    let (status, other) = s.post("/v1/accounts", serde_json::json!({ "name": "other" }));
    assert_eq!(status, 201, "{other}");
    let c = &other["credentials"];
    let field = |k: &str| std::path::PathBuf::from(c[k].as_str().unwrap());
    let (akid, secret, account) = (field("access_key_id"), field("secret_access_key"), field("account_id"));
    let env = [
        ("STOKE_DURABLE_WHEELS", wheels.as_path()),
        ("STOKE_OTHER_AKID", akid.as_path()),
        ("STOKE_OTHER_SECRET", secret.as_path()),
        ("STOKE_OTHER_ACCOUNT", account.as_path()),
    ];
    run_boto3_script_with(&s, "boto3_durable.py", &env);

    // The CLI on what the script left: the running executions, a callback answered, a stop.
    let cli = |args: &[&str]| {
        let out = s.cli().args(args).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), format!("{stdout}{stderr}"))
    };
    let json_of = |args: &[&str]| -> serde_json::Value {
        let (ok, out) = cli(&[&["-o", "json"][..], args].concat());
        assert!(ok, "stoke {args:?}: {out}");
        serde_json::from_str(&out).unwrap()
    };
    let running = json_of(&["durable", "ls", "orders", "--status", "RUNNING"]);
    let id_of = |name: &str| {
        running.as_array().unwrap().iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("{running}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (waiting, sleeping) = (id_of("cli-callback"), id_of("cli-stop"));
    let (ok, table) = cli(&["durable", "ls", "orders"]);
    assert!(ok && table.contains("cli-callback") && table.contains("SUCCEEDED"), "{table}");
    let events = json_of(&["durable", "history", &waiting]);
    let callback = events.as_array().unwrap().iter().find(|e| e["EventType"] == "CallbackStarted").unwrap()
        ["CallbackStartedDetails"]["CallbackId"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out) = cli(&["durable", "history", &waiting]);
    assert!(ok && out.contains("CallbackStarted") && out.contains("approval"), "{out}");
    let (ok, out) = cli(&["durable", "callback", &callback, "--heartbeat"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["durable", "callback", &callback, "--result", "from the cli"]);
    assert!(ok && out.contains("answered"), "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let e = json_of(&["durable", "get", &waiting]);
        if e["status"] == "SUCCEEDED" {
            assert_eq!(e["result"], r#"{"approved": "from the cli"}"#, "{e}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{e}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (ok, out) = cli(&["durable", "callback", &callback, "--result", "again"]);
    assert!(!ok && out.contains("callback_closed"), "{out}");
    let stopped = json_of(&["durable", "stop", &sleeping, "--error-type", "Cancelled", "--message", "not needed"]);
    assert_eq!(
        (stopped["status"].as_str(), stopped["error"]["ErrorType"].as_str()),
        (Some("STOPPED"), Some("Cancelled"))
    );
    let (ok, out) = cli(&["durable", "get", &sleeping]);
    assert!(ok && out.contains("STOPPED") && out.contains("not needed"), "{out}");
    // Bad input: a clear error, nothing changed.
    let (ok, out) = cli(&["durable", "stop", &sleeping]);
    assert!(!ok && out.contains("execution_not_running"), "{out}");
    let (ok, out) = cli(&["durable", "get", "no-such-execution"]);
    assert!(!ok && out.contains("does not exist"), "{out}");
    let (ok, out) = cli(&["durable", "ls", "no-such-function"]);
    assert!(!ok && out.contains("not_found") || out.contains("does not exist"), "{out}");
    let (ok, out) = cli(&["durable", "callback", "bm9wZQpub3Bl", "--error", "X", "--message", "y"]);
    assert!(!ok && out.contains("does not exist"), "{out}");
}

/// AWS's conformance suite for durable execution SDKs and services: every requirement that has a handler in
/// tests/durable/handlers, validated by the suite's own validator against this server.
#[test]
fn awss_durable_execution_conformance_suite_passes() {
    let Some(wheels) = durable_sdk("durable execution conformance suite") else { return };
    let suite = std::path::PathBuf::from(format!("{}/../../tests/durable/.conformance", env!("CARGO_MANIFEST_DIR")));
    let present = suite.join("aws_durable_execution_conformance_tests").is_dir();
    if !present_or_skip(present, "the durable execution conformance suite", "durable execution conformance suite") {
        return;
    }
    // The process sandbox: the suite measures the durable service. On lean it also met two cold-start races
    // of that sandbox (an instance forked from a zygote that found no code, a /tmp disk gone before its
    // instance mounted it), each failing an invocation (which the service retries, but the history then has
    // an InvocationCompleted the requirement does not): see docs/durable.md.
    let s = TestServer::start_with(&["--sandbox", "process"]);
    let env = [("STOKE_DURABLE_WHEELS", wheels.as_path()), ("STOKE_CONFORMANCE", suite.as_path())];
    run_boto3_script_args(&s, "../durable/conformance.py", &[], &env);
}

#[test]
fn a_javascript_durable_function_runs_with_awss_js_sdk_unchanged() {
    let Some(wheels) = durable_sdk("durable functions in JavaScript") else { return };
    let modules =
        format!("{}/../../tests/durable/node/node_modules/@aws/durable-execution-sdk-js", env!("CARGO_MANIFEST_DIR"));
    let present = std::path::Path::new(&modules).is_dir();
    if !present_or_skip(present, "the durable execution SDK for JavaScript", "durable functions in JavaScript") {
        return;
    }
    let s = TestServer::start();
    run_boto3_script_with(&s, "boto3_durable_js.py", &[("STOKE_DURABLE_WHEELS", wheels.as_path())]);
}

/// Item 4 of durable functions: a resume whose time is known (a wait's end) is warm under the `jit`
/// pre-warmer although the wait outlasts the function's keep-alive, and cold with pre-warming `off`; the
/// execution's timeline says which, and what the pre-warmer hid.
#[test]
fn a_durable_execution_resumes_warm_after_a_wait_under_jit_and_cold_under_off() {
    let Some(wheels) = durable_sdk("durable resume-warm test") else { return };
    let env = [("STOKE_DURABLE_WHEELS", wheels.as_path())];
    for policy in ["off", "jit"] {
        let s = TestServer::start_with(&["--sandbox", "process", "--prewarm", policy]);
        run_boto3_script_args(&s, "boto3_durable_resume.py", &["deploy"], &env);
        // Idle instances last a second: the 4 s wait outlasts the one that ran the first invocation.
        let (status, body) =
            s.call(s.req(reqwest::Method::PATCH, "/v1/functions/orders").json(&serde_json::json!({"keep_alive_s": 1})));
        assert_eq!(status, 200, "{body}");
        let out = run_boto3_script_args(&s, "boto3_durable_resume.py", &["run", "4"], &env);
        let arn = out.lines().find_map(|l| l.strip_prefix("execution: ")).unwrap_or_else(|| panic!("{out}"));
        let id = arn.rsplit('/').next().unwrap();
        let (status, t) = s.get(&format!("/v1/durable-executions/{id}/timeline"));
        assert_eq!(status, 200, "{t}");
        let invocations: Vec<&serde_json::Value> =
            t["steps"].as_array().unwrap().iter().filter(|r| r["type"] == "Invocation").collect();
        assert_eq!(invocations.len(), 2, "{policy}: {t}");
        assert_eq!(invocations[0]["cold_starts"], 1, "{policy}: the first invocation starts an instance: {t}");
        let resume = invocations[1];
        match policy {
            "off" => {
                assert_eq!(resume["cold_starts"], 1, "off: the instance was gone when the wait ended: {t}");
                assert_eq!(t["prewarm_saved_ms"], 0.0, "{t}");
            }
            _ => {
                assert_eq!(resume["cold_starts"], 0, "jit: an instance was started before the wait ended: {t}");
                assert!(resume["hidden_cold_start_ms"].as_f64().unwrap() > 0.0, "{t}");
            }
        }
        assert_eq!(t["cold_starts"], if policy == "off" { 2 } else { 1 }, "{t}");
        let wait = t["steps"].as_array().unwrap().iter().find(|r| r["type"] == "Wait").unwrap_or_else(|| panic!("{t}"));
        assert_eq!((wait["state"].as_str(), wait["segments"][0]["phase"].as_str()), (Some("pause"), Some("waiting")));
        assert_eq!(t["bill"]["invocations"], 2, "{t}");
        // The CLI draws it as it draws a workflow's.
        let out = s.cli().args(["durable", "timeline", id]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("invocation 2") && text.contains("pause"), "{text}");
    }
}

#[test]
fn a_durable_execution_outlives_its_killed_server_and_runs_each_step_once() {
    let Some(wheels) = durable_sdk("durable functions crash test") else { return };
    let mut s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let arn = dir.path().join("arn");
    let env = [("STOKE_DURABLE_WHEELS", wheels.as_path()), ("STOKE_DURABLE_ARN", arn.as_path())];
    // The execution is in its 4 s wait when the server is killed; it starts again on another port.
    run_boto3_script_args(&s, "boto3_durable_crash.py", &["start"], &env);
    s.kill9();
    s.launch();
    run_boto3_script_args(&s, "boto3_durable_crash.py", &["finish"], &env);
}

#[test]
fn boto3_drives_the_lambda_api() {
    if !present_or_skip(python_has("boto3"), "boto3", "boto3 client test") {
        return;
    }
    // The script proves that Event invocations ran by having the function write files on the host, which
    // only the process sandbox allows (a lean instance cannot see the host's file system).
    let s = TestServer::start_with(&["--sandbox", "process"]);
    run_boto3_script(&s, "boto3_lambda.py");
}

#[test]
fn boto3_drives_the_step_functions_api() {
    if !present_or_skip(python_has("boto3"), "boto3", "boto3 Step Functions test") {
        return;
    }
    let s = TestServer::start();
    python_fn(&s, "double", DOUBLE, serde_json::json!({}));
    run_boto3_script(&s, "boto3_states.py");
}

#[test]
fn boto3_runs_a_distributed_map_with_child_executions() {
    if !present_or_skip(python_has("boto3"), "boto3", "boto3 distributed Map test") {
        return;
    }
    let s = TestServer::start();
    python_fn(&s, "double", DOUBLE, serde_json::json!({}));
    // A distributed Map's reader (its answer is the items; a negative count answers an object) and writer.
    python_fn(
        &s,
        "lister",
        "def handler(event, context):\n    n = event['count']\n    return [{'n': i} for i in range(n)] if n >= 0 else {'n': n}\n",
        serde_json::json!({}),
    );
    python_fn(
        &s,
        "archive",
        "import json\ndef handler(event, context):\n    rs = event['Results']\n    return {'received': len(rs), 'run': event['MapRunArn'], 'note': event['note'], 'outputs': [json.loads(r['Output']) for r in rs]}\n",
        serde_json::json!({}),
    );
    run_boto3_script(&s, "boto3_distributed_map.py");
}

#[test]
fn boto3_runs_jsonata_states_with_variables() {
    if !present_or_skip(python_has("boto3"), "boto3", "boto3 JSONata test") {
        return;
    }
    let s = TestServer::start();
    python_fn(&s, "double", DOUBLE, serde_json::json!({}));
    python_fn(
        &s,
        "boom",
        "class Boom(Exception):\n    pass\ndef handler(event, context):\n    raise Boom('no')\n",
        serde_json::json!({}),
    );
    run_boto3_script(&s, "boto3_jsonata.py");
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
        present_or_skip(false, "awslambdaric", "awslambdaric test");
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
        "code_base64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, provided_zip(bootstrap.as_bytes(), &[("app.py", app.as_bytes())]))});
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
        "code_base64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, provided_zip(bad.as_bytes(), &[]))});
    assert_eq!(s.post("/v1/functions", body).0, 201);
    let (error, out) = invoke(&s, "ricbad", serde_json::json!({}));
    assert_eq!(error.as_deref(), Some("Runtime.ImportModuleError"), "{out}");
}

#[test]
fn lambda_runtime_rust_function_runs_unmodified() {
    let archive = bootstrap_zip(&std::fs::read(build_rust_echo()).unwrap());
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

/// The stoke-runtime crate next to lambda_runtime: one step prepares the next, which runs as prepared.
#[test]
fn lambda_runtime_function_uses_the_stoke_runtime_crate() {
    let archive = bootstrap_zip(&std::fs::read(build_rust_echo()).unwrap());
    let code = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, archive);
    let s = TestServer::start();
    for name in ["rust1", "rust2"] {
        let body = serde_json::json!({"name": name, "runtime": "provided.al2023", "code_base64": code});
        assert_eq!(s.post("/v1/functions", body).0, 201);
    }
    let definition = serde_json::json!({"StartAt": "One", "States": {
        "One": {"Type": "Task", "Resource": "rust1", "Parameters": {"prepare": "rust2", "k.$": "$.k"}, "Next": "Two"},
        "Two": {"Type": "Task", "Resource": "rust2", "End": true}}});
    let (status, body) = s.post("/v1/workflows", serde_json::json!({"name": "rusty", "definition": definition}));
    assert_eq!(status, 201, "{body}");
    let (status, e) = s.post("/v1/workflows/rusty/run", serde_json::json!({"input": {"k": 7}}));
    assert_eq!((status, e["status"].as_str()), (200, Some("SUCCEEDED")), "{e}");
    let out = e["output"].as_str().map_or_else(|| e["output"].clone(), |o| serde_json::from_str(o).unwrap());
    assert_eq!(out["prepared"]["probe"], true, "rust2 ran as the instance rust1 prepared: {out}");
    assert_eq!(out["prepared"]["from"]["k"], 7, "{out}");
    assert_eq!(out["input"]["prepared_next"], "rust2", "wait_turn gave it rust1's output: {out}");
    // Outside a workflow the crate reports the refusal as the handler's error.
    let (error, out) = invoke(&s, "rust1", serde_json::json!({"prepare": "rust2"}));
    assert!(error.is_some(), "{out}");
    assert!(out.to_string().contains("Stoke.NotInWorkflow"), "{out}");
}

/// Runs the aws cli (v1, from PyPI) against the server with the given credentials; (success, stdout, stderr).
fn aws(s: &TestServer, akid: &str, secret: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("python3")
        .args(["-m", "awscli", "--endpoint-url", &s.url, "--region", "us-east-1", "--output", "json"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", akid)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_CONFIG_FILE", s.dir.join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", s.dir.join("no-aws-credentials"))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn aws_cli_drives_the_lambda_api() {
    if !present_or_skip(python_has("awscli"), "awscli", "aws cli test") {
        return;
    }
    // The script proves that Event invocations ran by having the function write files on the host, which
    // only the process sandbox allows (a lean instance cannot see the host's file system).
    let s = TestServer::start_with(&["--sandbox", "process"]);
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.dir.join("credentials.json")).unwrap()).unwrap();
    let (akid, secret) = (creds["access_key_id"].as_str().unwrap(), creds["secret_access_key"].as_str().unwrap());
    let run = |args: &[&str]| -> serde_json::Value {
        let (ok, stdout, stderr) = aws(&s, akid, secret, args);
        assert!(ok, "aws {args:?} failed:\n{stdout}\n{stderr}");
        if stdout.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("aws {args:?} printed no JSON ({e}): {stdout}"))
        }
    };
    let source =
        "import os\ndef handler(event, context):\n    if event.get('fail'):\n        raise KeyError('asked')\n    \
                  print('handling', event)\n    return {'event': event, 'greeting': os.environ.get('GREETING')}\n";
    let archive = s.dir.join("app.zip");
    std::fs::write(&archive, zip_of(&[("app.py", source.as_bytes())])).unwrap();
    let zip_arg = format!("fileb://{}", archive.display());
    let created = run(&[
        "lambda",
        "create-function",
        "--function-name",
        "cli",
        "--runtime",
        "python3.12",
        "--handler",
        "app.handler",
        "--role",
        "arn:aws:iam::123456789012:role/any",
        "--zip-file",
        &zip_arg,
        "--timeout",
        "10",
    ]);
    assert_eq!(created["FunctionName"], "cli");
    assert_eq!(created["State"], "Active");
    let config = run(&["lambda", "get-function-configuration", "--function-name", "cli"]);
    assert_eq!(config["Handler"], "app.handler");
    let listed = run(&["lambda", "list-functions"]);
    assert!(listed["Functions"].as_array().unwrap().iter().any(|f| f["FunctionName"] == "cli"), "{listed}");

    let out = s.dir.join("out.json");
    let out_arg = out.to_str().unwrap();
    let sync = run(&["lambda", "invoke", "--function-name", "cli", "--payload", r#"{"n": 1}"#, out_arg]);
    assert_eq!(sync["StatusCode"], 200, "{sync}");
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(result["event"], serde_json::json!({"n": 1}));
    // Tail: the invocation's log, base64.
    let tail = run(&["lambda", "invoke", "--function-name", "cli", "--log-type", "Tail", "--payload", "{}", out_arg]);
    let log = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, tail["LogResult"].as_str().unwrap())
        .unwrap();
    let log = String::from_utf8(log).unwrap();
    assert!(log.contains("handling {}") && log.contains("REPORT RequestId"), "{log}");
    let event =
        run(&["lambda", "invoke", "--function-name", "cli", "--invocation-type", "Event", "--payload", "{}", out_arg]);
    assert_eq!(event["StatusCode"], 202, "{event}");
    let dry = run(&["lambda", "invoke", "--function-name", "cli", "--invocation-type", "DryRun", out_arg]);
    assert_eq!(dry["StatusCode"], 204, "{dry}");
    let failed = run(&["lambda", "invoke", "--function-name", "cli", "--payload", r#"{"fail": true}"#, out_arg]);
    assert_eq!(failed["FunctionError"], "Unhandled", "{failed}");
    let error: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(error["errorType"], "KeyError", "{error}");

    // Configuration, versions and aliases.
    let updated = run(&[
        "lambda",
        "update-function-configuration",
        "--function-name",
        "cli",
        "--environment",
        "Variables={GREETING=hey}",
    ]);
    assert_eq!(updated["Environment"]["Variables"]["GREETING"], "hey", "{updated}");
    let version = run(&["lambda", "publish-version", "--function-name", "cli"]);
    assert_eq!(version["Version"], "1", "{version}");
    run(&["lambda", "create-alias", "--function-name", "cli", "--name", "live", "--function-version", "1"]);
    let aliased =
        run(&["lambda", "invoke", "--function-name", "cli", "--qualifier", "live", "--payload", "{}", out_arg]);
    assert_eq!(aliased["ExecutedVersion"], "1", "{aliased}");
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(result["greeting"], "hey");
    let versions = run(&["lambda", "list-versions-by-function", "--function-name", "cli"]);
    assert_eq!(versions["Versions"].as_array().unwrap().len(), 2, "{versions}");

    // Wrong credentials are refused, never served.
    let (ok, _, stderr) = aws(&s, akid, "not-the-secret", &["lambda", "list-functions"]);
    assert!(!ok && stderr.contains("InvalidSignatureException"), "{stderr}");
    let (ok, _, stderr) = aws(&s, "AKIANOBODY0000000000", secret, &["lambda", "list-functions"]);
    assert!(!ok && stderr.contains("UnrecognizedClientException"), "{stderr}");

    run(&["lambda", "delete-function", "--function-name", "cli"]);
    let (ok, _, stderr) = aws(&s, akid, secret, &["lambda", "get-function", "--function-name", "cli"]);
    assert!(!ok && stderr.contains("ResourceNotFoundException"), "{stderr}");
}

#[test]
fn node_sdk_drives_the_lambda_api() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/node");
    let installed = dir.join("node_modules/@aws-sdk/client-lambda").is_dir();
    if !present_or_skip(installed, "the AWS SDK for JavaScript (tests/clients/node)", "Node SDK client test") {
        return;
    }
    let s = TestServer::start_with(&["--sandbox", "process"]);
    python_fn(&s, "node-echo", "def handler(event, context):\n    return {'echo': event}\n", serde_json::json!({}));
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.dir.join("credentials.json")).unwrap()).unwrap();
    let out = Command::new("node")
        .arg(dir.join("lambda.mjs"))
        .current_dir(&dir)
        .env("STOKE_ENDPOINT", &s.url)
        .env("STOKE_AKID", creds["access_key_id"].as_str().unwrap())
        .env("STOKE_SECRET", creds["secret_access_key"].as_str().unwrap())
        .env("STOKE_FUNCTION", "node-echo")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("all checks passed"), "{stdout}\n{stderr}");
}

#[test]
fn boto3_and_the_cli_drive_a_server_that_serves_https() {
    if !present_or_skip(python_has("boto3"), "boto3", "HTTPS with boto3 and the CLI") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(certs.path());
    let (cert, key) = (cert.to_str().unwrap().to_string(), key.to_str().unwrap().to_string());
    // The process sandbox, as boto3_drives_the_lambda_api explains.
    let s = TestServer::start_tls(&["--sandbox", "process", "--tls-cert", &cert, "--tls-key", &key], &ca);
    assert!(s.url.starts_with("https://127.0.0.1:"), "server.json names the https endpoint: {}", s.url);

    // The whole boto3 script, over TLS, trusting the test's CA the way boto3 users do.
    run_boto3_script_with(&s, "boto3_lambda.py", &[("AWS_CA_BUNDLE", &ca)]);

    // The CLI finds the https endpoint in server.json and trusts the CA it is given.
    let zip = certs.path().join("code.zip");
    std::fs::write(&zip, python_zip("tls")).unwrap();
    let out = s
        .cli()
        .args(["--ca-file", ca.to_str().unwrap(), "fn", "create", "over-tls", "--runtime", "python3.12", "--handler"])
        .args(["app.handler", "--code", zip.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "fn create over https: {}", String::from_utf8_lossy(&out.stderr));
    let out =
        s.cli().env("STOKE_CA_FILE", &ca).args(["invoke", "over-tls", "--payload", r#"{"n": 1}"#]).output().unwrap();
    assert!(out.status.success(), "invoke over https: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tls"), "{}", String::from_utf8_lossy(&out.stdout));

    // Without the CA the CLI says what to do, and nothing is sent in clear.
    let out = s.cli().args(["fn", "ls"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--ca-file") && err.contains("certificate"), "{err}");
    let plain = s.url.replace("https://", "http://");
    let got = reqwest::blocking::get(format!("{plain}/healthz"));
    assert!(got.is_err() || got.unwrap().status() != 200, "plain HTTP on the TLS port must not be served");
}

#[test]
fn a_certificate_that_cannot_be_used_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_ca, cert, key) = make_certificates(dir.path());
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let other = tempfile::tempdir().unwrap();
    let (_, _, other_key) = make_certificates(other.path());
    let cases: [(&Path, &Path, &str); 4] = [
        (&dir.path().join("missing.pem"), &key, "cannot read the TLS certificate"),
        (&not_pem, &key, "holds no certificate"),
        (&cert, &not_pem, "no usable private key"),
        (&cert, &other_key, "does not fit the certificate"),
    ];
    for (cert, key, needle) in cases {
        let data = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "start-up must fail for {needle}");
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
    // One of the pair alone is a usage error, before anything starts.
    let out = Command::new(BIN).args(["server", "--tls-cert"]).arg(&cert).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"), "{}", String::from_utf8_lossy(&out.stderr));
}
