//! The `stoke` CLI driven as a user would, against a real server found through the data directory.

mod common;

use std::process::Output;

use common::*;
use serde_json::Value;

fn run(s: &TestServer, args: &[&str]) -> Output {
    s.cli().args(args).output().expect("run stoke")
}

fn ok(s: &TestServer, args: &[&str]) -> String {
    let out = run(s, args);
    assert!(out.status.success(), "stoke {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn json(s: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(s, &all)).expect("JSON output")
}

fn fails(s: &TestServer, args: &[&str], needle: &str) {
    let out = run(s, args);
    assert!(!out.status.success(), "stoke {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "stoke {args:?}: stderr {err:?} should mention {needle:?}");
}

#[test]
fn function_manager_tour_from_the_cli() {
    let s = TestServer::start();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("app.py"), "def handler(event, context):\n    return event\n").unwrap();
    let dir = src.path().to_str().unwrap();

    let created = json(
        &s,
        &[
            "fn",
            "create",
            "hello",
            "--runtime",
            "python3.12",
            "--handler",
            "app.handler",
            "--code",
            dir,
            "--memory",
            "256",
            "--env",
            "GREETING=hi",
        ],
    );
    assert_eq!(created["state"], "LATEST");
    assert_eq!(created["memory_mb"], 256);
    // The CLI masks environment values (see environment_variables_are_sealed_at_rest_and_masked_unless_asked_for).
    assert_eq!(created["environment"]["GREETING"], "****");
    assert_eq!(s.get("/v1/functions/hello").1["environment"]["GREETING"], "hi");

    let table = ok(&s, &["fn", "ls"]);
    assert!(table.contains("hello") && table.contains("python3.12") && table.contains("256 MB"), "{table}");

    let published = json(&s, &["fn", "publish", "hello", "--description", "first"]);
    assert_eq!(published["version"], 1);
    let alias = json(&s, &["alias", "set", "hello", "prod", "1"]);
    assert_eq!(alias["version"], "1");
    let via_alias = json(&s, &["fn", "get", "hello:prod"]);
    assert_eq!(via_alias["version"], "1");
    assert!(ok(&s, &["alias", "ls", "hello"]).contains("prod"));

    let blocked = ok(&s, &["fn", "block", "hello"]);
    assert!(blocked.contains("BLOCKED"), "{blocked}");
    fails(&s, &["fn", "block", "hello"], "allowed from BLOCKED");
    assert!(ok(&s, &["fn", "unblock", "hello"]).contains("PUBLISHED"));

    // Update code from a .zip and configuration in one command; download it back.
    let zip_path = src.path().join("v2.zip");
    let v2 = python_zip("v2");
    std::fs::write(&zip_path, &v2).unwrap();
    let updated = json(&s, &["fn", "update", "hello", "--code", zip_path.to_str().unwrap(), "--timeout", "30"]);
    assert_eq!(updated["timeout_s"], 30);
    assert_eq!(updated["code_sha256"], sha256_hex(&v2));
    let out = src.path().join("out.zip");
    ok(&s, &["fn", "code", "hello", "-O", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), v2);
    let versions = json(&s, &["fn", "versions", "hello"]);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);

    let retired = ok(&s, &["fn", "retire", "hello"]);
    assert!(retired.contains("RETIRED"), "{retired}");

    // A durable function is made so when it is created, and only then.
    let base = ["--runtime", "python3.12", "--handler", "app.handler", "--code", dir];
    let durable = json(&s, &[&["fn", "create", "orders", "--durable-timeout", "3600"][..], &base[..]].concat());
    assert_eq!(durable["durable"], serde_json::json!({"execution_timeout_s": 3600, "retention_days": 14}));
    let shown = ok(&s, &["fn", "get", "orders"]);
    assert!(shown.contains("executions run ≤ 3600 s, kept 14 days"), "{shown}");
    let kept = json(&s, &["fn", "update", "orders", "--durable-retention", "30"]);
    assert_eq!(kept["durable"]["retention_days"], 30);
    ok(&s, &[&["fn", "create", "plain"][..], &base[..]].concat());
    fails(&s, &["fn", "update", "plain", "--durable-timeout", "60"], "made durable only when it is created");
    fails(
        &s,
        &[&["fn", "create", "late", "--durable-retention", "7"][..], &base[..]].concat(),
        "needs execution_timeout_s",
    );
}

#[test]
fn accounts_and_errors_from_the_cli() {
    let s = TestServer::start();
    let me = json(&s, &["account", "whoami"]);
    assert_eq!(me["is_admin"], true);
    let created = json(&s, &["account", "create", "team-b"]);
    let key_b = created["credentials"]["api_key"].as_str().unwrap().to_string();
    assert!(ok(&s, &["account", "ls"]).contains("team-b"));

    // The new account's key works through the environment and sees its own (empty) list.
    let out = s.cli().args(["-o", "json", "fn", "ls"]).env("STOKE_API_KEY", &key_b).output().unwrap();
    assert!(out.status.success());
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["functions"].as_array().unwrap().len(), 0);
    let out = s.cli().args(["account", "create", "sneaky"]).env("STOKE_API_KEY", &key_b).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only an admin account"));

    fails(&s, &["fn", "create", "x", "--runtime", "java", "--code", "/nonexistent.zip"], "cannot read code");
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("app.py"), "x").unwrap();
    let dir = src.path().to_str().unwrap();
    fails(&s, &["fn", "create", "x", "--runtime", "java", "--code", dir], "runtime \"java\" is not supported");
    fails(
        &s,
        &["fn", "create", "x", "--runtime", "python3.12", "--handler", "a.b", "--memory", "100", "--code", dir],
        "multiple of 64",
    );
    fails(&s, &["fn", "get", "ghost"], "does not exist");
    fails(&s, &["fn", "update", "ghost"], "nothing to update");
    fails(&s, &["fn", "create", "x", "--runtime", "python3.12", "--env", "NOEQUALS", "--code", dir], "KEY=VALUE");

    // A server that is not there, and a missing key, say what to do.
    let out = std::process::Command::new(BIN)
        .args(["--endpoint", "http://127.0.0.1:9", "--api-key", "k", "fn", "ls"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is it running?"));
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["fn", "ls", "--data-dir"])
        .arg(empty.path())
        .env_remove("STOKE_API_KEY")
        .env_remove("STOKE_ENDPOINT")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API key"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn help_and_completions() {
    let out = std::process::Command::new(BIN).args(["fn", "create", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--memory") && help.contains("multiple of 64"), "{help}");
    let out = std::process::Command::new(BIN).args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("_stoke"));
}

#[test]
fn environment_variables_are_sealed_at_rest_and_masked_unless_asked_for() {
    let mut s = TestServer::start_with(&["--sandbox", "process"]);
    let src = tempfile::tempdir().unwrap();
    std::fs::write(
        src.path().join("app.py"),
        "import os\ndef handler(event, context):\n    return os.environ['DB_PASSWORD']\n",
    )
    .unwrap();
    let dir = src.path().to_str().unwrap();
    ok(&s, &["fn", "create", "sealed", "--runtime", "python3.12", "--handler", "app.handler", "--code", dir]);
    ok(&s, &["fn", "update", "sealed", "--env", "DB_PASSWORD=hunter2-5ecret", "--env", "MODE=prod"]);
    ok(&s, &["fn", "publish", "sealed"]);

    // Masked in `fn get`, table and JSON, unless asked for.
    let shown = ok(&s, &["fn", "get", "sealed"]);
    assert!(shown.contains("DB_PASSWORD=****") && !shown.contains("hunter2"), "{shown}");
    let shown = json(&s, &["fn", "get", "sealed"]);
    assert_eq!(shown["environment"]["DB_PASSWORD"], "****", "{shown}");
    let listed = json(&s, &["fn", "ls"]);
    assert!(!listed.to_string().contains("hunter2"), "{listed}");
    assert!(ok(&s, &["fn", "get", "sealed", "--show-secrets"]).contains("DB_PASSWORD=hunter2-5ecret"));
    // The API answers its caller in plain (as Lambda's GetFunctionConfiguration does), and the function sees it.
    assert_eq!(s.get("/v1/functions/sealed").1["environment"]["DB_PASSWORD"], "hunter2-5ecret");
    assert_eq!(s.post("/v1/functions/sealed:1/invoke", serde_json::json!({})).1, "hunter2-5ecret");

    // At rest: no file of the data directory holds the value; the key is private and apart from the store.
    s.kill9();
    for file in files_under(&s.dir) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(!bytes.windows(7).any(|w| w == b"hunter2"), "{} holds the secret in clear", file.display());
    }
    use std::os::unix::fs::PermissionsExt;
    let key = s.dir.join("env.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);

    // A restart reads the sealed records with the same key; without it they cannot be opened, and the error
    // says which key is missing.
    s.launch();
    assert_eq!(s.get("/v1/functions/sealed:1").1["environment"]["MODE"], "prod");
    s.kill9();
    let original = std::fs::read_to_string(&key).unwrap();
    let k9 = "k9:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
    std::fs::write(&key, k9).unwrap();
    s.launch();
    let (status, body) = s.get("/v1/functions/sealed");
    assert_eq!(status, 500, "a record the key cannot open is the server's failure: {body}");

    // Rotation: a new key first, the old one kept below it. Old records open; writes seal with the new key.
    s.kill9();
    std::fs::write(&key, format!("{k9}{original}")).unwrap();
    s.launch();
    assert_eq!(s.get("/v1/functions/sealed").1["environment"]["MODE"], "prod");
    ok(&s, &["fn", "update", "sealed", "--env", "MODE=staging"]);
    s.kill9();
    let sealed_with_k9 =
        files_under(&s.dir).iter().any(|f| std::fs::read(f).unwrap_or_default().windows(6).any(|w| w == b"v1:k9:"));
    assert!(sealed_with_k9, "the update was sealed with the new key");
}
