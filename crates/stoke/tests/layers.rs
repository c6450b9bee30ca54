//! Layers (published once, unpacked once, read-only at /opt of every instance that lists them), imported
//! base images, and `network: none`, against a real server with real sandboxes.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use base64::Engine;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn publish(s: &TestServer, name: &str, files: &[(&str, &[u8])]) -> Value {
    let (status, v) = s.post(
        &format!("/v1/layers/{name}/versions"),
        json!({"code_base64": b64(&zip_of(files)),
        "description": format!("{name} for tests"), "compatible_runtimes": ["python3.12"]}),
    );
    assert_eq!(status, 201, "{v}");
    v
}

fn invoke(s: &TestServer, function: &str, event: Value) -> (u16, Value, Option<String>) {
    let resp = s.req(Method::POST, &format!("/v1/functions/{function}/invoke")).json(&event).send().unwrap();
    let status = resp.status().as_u16();
    let error = resp.headers().get("x-stoke-function-error").map(|v| v.to_str().unwrap().to_string());
    (status, serde_json::from_str(&resp.text().unwrap()).unwrap_or(Value::Null), error)
}

/// Imports the listed modules and reports what it sees of /opt.
const USES_LAYERS: &str = r#"
import os, importlib
def handler(event, context):
    out = {"values": {}, "opt": sorted(os.listdir("/opt")) if os.path.isdir("/opt") else None}
    for name in event.get("modules", []):
        m = importlib.import_module(name)
        out["values"][name] = m.VALUE
        out.setdefault("files", {})[name] = m.__file__
    path = event.get("stat")
    if path:
        st = os.stat(path)
        out["stat"] = [st.st_dev, st.st_ino]
    try:
        open(os.path.join(os.path.dirname(importlib.import_module(event["modules"][0]).__file__), "x"), "w")
        out["write"] = "allowed"
    except OSError as e:
        out["write"] = e.strerror
    out["pythonpath"] = os.environ.get("PYTHONPATH")
    return out
"#;

#[test]
fn functions_import_from_their_layers_in_order_from_one_shared_copy() {
    let lean = privileged("layers in the lean sandbox");
    let s = TestServer::start();
    let a1 =
        publish(&s, "libs", &[("python/shared.py", b"VALUE = 'a1'\n"), ("python/only_a.py", b"VALUE = 'only-a'\n")]);
    assert_eq!((a1["version"].as_u64(), a1["reference"].as_str()), (Some(1), Some("libs:1")));
    let a2 = publish(&s, "libs", &[("python/shared.py", b"VALUE = 'a2'\n")]);
    assert_eq!(a2["version"], 2);
    publish(
        &s,
        "over",
        &[
            ("python/shared.py", b"VALUE = 'over'\n"),
            ("python/lib/python3.12/site-packages/sp.py", b"VALUE = 'site-packages'\n"),
        ],
    );

    // One layer; then two, where the later one wins and the earlier one's other files show through.
    python_fn(&s, "one", USES_LAYERS, json!({"layers": ["libs:1"]}));
    let arn = format!("arn:aws:lambda:us-east-1:{}:layer:over:1", s.account_id);
    python_fn(&s, "two", USES_LAYERS, json!({"layers": ["libs:1", arn]}));
    let (status, one, err) = invoke(&s, "one", json!({"modules": ["shared", "only_a"]}));
    assert_eq!((status, err), (200, None), "{one}");
    assert_eq!(one["values"], json!({"shared": "a1", "only_a": "only-a"}), "{one}");
    let (status, two, err) = invoke(&s, "two", json!({"modules": ["shared", "only_a", "sp"]}));
    assert_eq!((status, err), (200, None), "{two}");
    assert_eq!(
        two["values"],
        json!({"shared": "over", "only_a": "only-a", "sp": "site-packages"}),
        "the later layer wins: {two}"
    );
    let (_, f) = s.get("/v1/functions/two");
    assert_eq!(f["layers"], json!(["libs:1", "over:1"]), "ARNs are stored as name:version: {f}");

    // Unpacked once into the data directory, and what the instance reads is that very file.
    let content = s.dir.join("layers").join(&s.account_id).join(a1["code_sha256"].as_str().unwrap()).join("content");
    let host = std::fs::metadata(content.join("python/shared.py")).unwrap();
    if lean {
        assert_eq!(one["opt"], json!(["python"]), "{one}");
        assert_eq!(one["files"]["shared"], "/opt/python/shared.py", "{one}");
        let (_, seen, _) = invoke(&s, "one", json!({"modules": ["shared"], "stat": "/opt/python/shared.py"}));
        assert_eq!(seen["stat"], json!([host.dev(), host.ino()]), "no copy per instance: {seen}");
        assert_eq!(one["write"], "Read-only file system", "{one}");
        assert!(one["pythonpath"]
            .as_str()
            .unwrap()
            .starts_with("/opt/python/lib/python3.12/site-packages:/opt/python"));
    }
    // A second function listing the same version uses the same tree.
    python_fn(&s, "again", USES_LAYERS, json!({"layers": ["libs:1"]}));
    assert_eq!(invoke(&s, "again", json!({"modules": ["shared"]})).1["values"]["shared"], "a1");
    let trees = std::fs::read_dir(s.dir.join("layers").join(&s.account_id)).unwrap().count();
    assert_eq!(trees, 3, "one tree per published archive");

    // Deleting a listed version: the functions keep running on it; new configurations cannot list it.
    let (status, _) = s.call(s.req(Method::DELETE, "/v1/layers/libs/versions/1"));
    assert_eq!(status, 204);
    assert_error(&s.get("/v1/layers/libs/versions/1"), 404, "not_found", "libs:1");
    s.call(s.req(Method::PATCH, "/v1/functions/one").json(&json!({"memory_mb": 256})));
    assert_eq!(invoke(&s, "one", json!({"modules": ["shared"]})).1["values"]["shared"], "a1", "still runs");
    assert!(content.is_dir(), "its files stay while functions list it");
    let mut body = create_body("late", &zip_of(&[("app.py", USES_LAYERS.as_bytes())]));
    body["layers"] = json!(["libs:1"]);
    assert_error(&s.post("/v1/functions", body), 400, "invalid_parameter", "was deleted");
    // A version nothing lists goes with its files.
    let a2_content = s.dir.join("layers").join(&s.account_id).join(a2["code_sha256"].as_str().unwrap());
    assert_eq!(s.call(s.req(Method::DELETE, "/v1/layers/libs/versions/2")).0, 204);
    assert!(!a2_content.exists(), "unlisted: removed");
    let (_, list) = s.get("/v1/layers");
    let names: Vec<&str> =
        list["layers"].as_array().unwrap().iter().map(|l| l["reference"].as_str().unwrap()).collect();
    assert_eq!(names, ["over:1"], "{list}");
    assert_eq!(publish(&s, "libs", &[("python/shared.py", b"VALUE = 3\n")])["version"], 3, "numbers are not reused");
}

#[test]
fn the_process_sandbox_finds_layers_at_their_own_paths() {
    let s = TestServer::start_with(&["--sandbox", "process"]);
    publish(&s, "base", &[("python/shared.py", b"VALUE = 'base'\n"), ("python/base_only.py", b"VALUE = 1\n")]);
    publish(&s, "top", &[("python/shared.py", b"VALUE = 'top'\n")]);
    python_fn(&s, "p", USES_LAYERS, json!({"layers": ["base:1", "top:1"]}));
    let (status, out, err) = invoke(&s, "p", json!({"modules": ["shared", "base_only"]}));
    assert_eq!((status, err), (200, None), "{out}");
    assert_eq!(out["values"], json!({"shared": "top", "base_only": 1}), "{out}");
    assert!(out["files"]["shared"].as_str().unwrap().starts_with(s.dir.to_str().unwrap()), "{out}");
}

#[test]
fn node_functions_require_from_their_layers() {
    if !present_or_skip(std::process::Command::new("node").arg("--version").output().is_ok(), "node", "node layers") {
        return;
    }
    let s = TestServer::start();
    publish(
        &s,
        "pad",
        &[("nodejs/node_modules/leftpad/index.js", b"module.exports = (s, n) => s.padStart(n, '*');\n")],
    );
    let code = b"const pad = require('leftpad');\nexports.handler = async (e) => ({ padded: pad(e.s, 6) });\n";
    let mut body = create_body("npad", &zip_of(&[("index.js", code)]));
    body["runtime"] = json!("nodejs20.x");
    body["handler"] = json!("index.handler");
    body["layers"] = json!(["pad:1"]);
    assert_eq!(s.post("/v1/functions", body).0, 201);
    let (status, out, err) = invoke(&s, "npad", json!({"s": "ab"}));
    assert_eq!((status, err), (200, None), "{out}");
    assert_eq!(out["padded"], "****ab");
}

#[test]
fn bad_layer_requests_are_refused_and_write_nothing() {
    let s = TestServer::start();
    let zip = b64(&zip_of(&[("python/m.py", b"VALUE = 1\n")]));
    let publish_raw = |name: &str, body: Value| s.post(&format!("/v1/layers/{name}/versions"), body);
    assert_error(&publish_raw("bad name", json!({"code_base64": zip})), 400, "invalid_parameter", "layer name");
    assert_error(&publish_raw("l", json!({"code_base64": "%%%"})), 400, "invalid_parameter", "base64");
    assert_error(&publish_raw("l", json!({"code_base64": b64(b"plain text")})), 400, "invalid_archive", "zip");
    assert_error(
        &publish_raw("l", json!({"code_base64": zip, "compatible_runtimes": ["cobol"]})),
        400,
        "invalid_parameter",
        "cobol",
    );
    assert_error(&publish_raw("l", json!({"code_base64": zip, "colour": "red"})), 400, "invalid_json", "colour");
    assert_error(&publish_raw("l", json!({})), 400, "invalid_json", "code_base64");
    assert_eq!(s.get("/v1/layers").1["layers"], json!([]), "nothing was published");
    assert_error(&s.get("/v1/layers/l/versions"), 404, "not_found", "publish it");
    assert_error(&s.get("/v1/layers/l/versions/zero"), 400, "invalid_parameter", "version");
    assert_error(&s.get("/v1/layers/l/versions/1"), 404, "not_found", "l:1");

    publish(&s, "l", &[("python/m.py", b"VALUE = 1\n")]);
    let with_layers = |name: &str, layers: Value| {
        let mut body = create_body(name, &python_zip("x"));
        body["layers"] = layers;
        s.post("/v1/functions", body)
    };
    assert_error(&with_layers("f1", json!(["l:2"])), 400, "invalid_parameter", "does not exist");
    assert_error(&with_layers("f2", json!(["l"])), 400, "invalid_parameter", "name:version");
    assert_error(
        &with_layers("f3", json!(["arn:aws:lambda:us-east-1:999999999999:layer:l:1"])),
        400,
        "invalid_parameter",
        "own account",
    );
    let own = format!("arn:aws:lambda:us-east-1:{}:layer:l:1", s.account_id);
    assert_error(&with_layers("f4", json!(["l:1", own])), 400, "invalid_parameter", "listed twice");
    assert_error(&with_layers("f5", json!(["l:1", "l:1"])), 400, "invalid_parameter", "twice");
    assert_eq!(s.get("/v1/functions").1["functions"], json!([]), "no function was created");
    assert_eq!(with_layers("ok", json!(["l:1"])).0, 201);
    let patched = s.call(s.req(Method::PATCH, "/v1/functions/ok").json(&json!({"layers": ["l:7"]})));
    assert_error(&patched, 400, "invalid_parameter", "l:7");
    assert_eq!(s.get("/v1/functions/ok").1["layers"], json!(["l:1"]), "the update wrote nothing");

    // Another account sees none of it.
    let (key, _) = s.new_account("other");
    assert_eq!(s.call(s.req_as(&key, Method::GET, "/v1/layers")).1["layers"], json!([]));
    assert_eq!(s.call(s.req_as(&key, Method::GET, "/v1/layers/l/versions/1")).0, 404);
    assert_eq!(s.call(s.req_as(&key, Method::DELETE, "/v1/layers/l/versions/1")).0, 404);
}

#[test]
fn the_cli_publishes_lists_and_uses_layers() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("layer/python")).unwrap();
    std::fs::write(dir.path().join("layer/python/clilib.py"), "VALUE = 'from the cli'\n").unwrap();
    std::fs::create_dir_all(dir.path().join("code")).unwrap();
    std::fs::write(dir.path().join("code/app.py"), USES_LAYERS).unwrap();
    let run = |args: &[&str]| {
        let out = s.cli().args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let layer_dir = dir.path().join("layer");
    let (ok, out) = run(&["layer", "publish", "clilib", layer_dir.to_str().unwrap(), "--runtime", "python3.12"]);
    assert!(ok && out.contains("clilib:1") && out.contains("python3.12"), "{out}");
    let (ok, out) = run(&["layer", "ls"]);
    assert!(ok && out.contains("clilib:1"), "{out}");
    let code_dir = dir.path().join("code");
    let (ok, out) = run(&[
        "fn",
        "create",
        "clifn",
        "--runtime",
        "python3.12",
        "--handler",
        "app.handler",
        "--code",
        code_dir.to_str().unwrap(),
        "--layer",
        "clilib:1",
    ]);
    assert!(ok && out.contains("clilib:1"), "{out}");
    let (ok, out) = run(&["invoke", "clifn", "-p", r#"{"modules": ["clilib"]}"#]);
    assert!(ok && out.contains("from the cli"), "{out}");
    let (ok, out) = run(&["layer", "get", "clilib"]);
    assert!(!ok && out.contains("NAME:VERSION"), "{out}");
    let (ok, out) = run(&["layer", "rm", "clilib:1"]);
    assert!(ok && out.contains("keep running"), "{out}");
    let (ok, out) = run(&["layer", "versions", "clilib"]);
    assert!(!ok && out.contains("does not exist"), "{out}");
}

/// An image with only what the rust test function links against, and a marker.
fn tiny_image(binary: &Path) -> Vec<u8> {
    let out = std::process::Command::new("ldd").arg(binary).output().expect("ldd");
    let mut libs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')).map(str::to_string))
        .collect();
    libs.sort();
    libs.dedup();
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(true);
    for lib in &libs {
        let real = std::fs::canonicalize(lib).unwrap();
        b.append_path_with_name(&real, lib.trim_start_matches('/')).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    let marker = b"ID=stoke-test-image\n";
    h.set_size(marker.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, "etc/os-release", &marker[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, "usr/bin", &[][..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn functions_run_on_an_imported_image_and_see_nothing_of_the_hosts() {
    if !privileged("imported images (lean sandbox)") {
        return;
    }
    let binary = build_rust_echo();
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("tiny.tar");
    std::fs::write(&tarball, tiny_image(&binary)).unwrap();
    let out = s.cli().args(["image", "import", "tiny", tarball.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, list) = s.get("/v1/images");
    assert_eq!(list["images"][0]["name"], "tiny", "{list}");

    let body = json!({"name": "ontiny", "runtime": "provided.al2023", "base_image": "tiny",
        "code_base64": b64(&bootstrap_zip(&std::fs::read(&binary).unwrap()))});
    assert_eq!(s.post("/v1/functions", body).0, 201);
    let probe = json!({"read": ["/etc/os-release", "/usr/bin/python3", "/etc/shadow", "/etc/resolv.conf"]});
    let (status, seen, err) = invoke(&s, "ontiny", probe.clone());
    assert_eq!((status, err), (200, None), "{seen}");
    assert_eq!(seen["/etc/os-release"], "ID=stoke-test-image\n", "the image's own files: {seen}");
    assert_eq!(seen["/usr/bin/python3"], Value::Null, "nothing of the host's /usr: {seen}");
    assert_eq!(seen["/etc/shadow"], Value::Null, "{seen}");
    assert!(seen["/etc/resolv.conf"].is_string(), "the host's name resolution: {seen}");
    // The same function on the default image sees the host's.
    let body = json!({"name": "onhost", "runtime": "provided.al2023",
        "code_base64": b64(&bootstrap_zip(&std::fs::read(&binary).unwrap()))});
    assert_eq!(s.post("/v1/functions", body).0, 201);
    let (_, seen, _) = invoke(&s, "onhost", probe);
    assert_ne!(seen["/etc/os-release"], "ID=stoke-test-image\n", "{seen}");

    // A python function on an image without python says so.
    let mut body = create_body("pyontiny", &python_zip("x"));
    body["base_image"] = json!("tiny");
    assert_eq!(s.post("/v1/functions", body).0, 201);
    let (status, out, err) = invoke(&s, "pyontiny", json!({}));
    assert_eq!((status, err.as_deref()), (200, Some("Runtime.InvalidEntrypoint")), "{out}");
    assert!(out["errorMessage"].as_str().unwrap().contains("image tiny has no python3"), "{out}");

    // Bad input: unknown image, taken name, broken tarball, non-admin, image in use.
    let mut body = create_body("ghost", &python_zip("x"));
    body["base_image"] = json!("nosuch");
    assert_error(&s.post("/v1/functions", body), 400, "invalid_parameter", "import it");
    let put = |name: &str, key: &str, bytes: Vec<u8>| {
        s.call(s.req_as(key, Method::PUT, &format!("/v1/images/{name}")).body(bytes))
    };
    assert_error(&put("tiny", &s.api_key, tiny_image(&binary)), 409, "conflict", "already exists");
    assert_error(&put("junk", &s.api_key, vec![7u8; 2048]), 400, "invalid_image", "tar");
    assert_error(&put("Bad_Name", &s.api_key, tiny_image(&binary)), 400, "invalid_parameter", "image name");
    assert_error(&put("default", &s.api_key, tiny_image(&binary)), 400, "invalid_parameter", "host's own");
    let (key, _) = s.new_account("tenant");
    assert_error(&put("mine", &key, tiny_image(&binary)), 403, "forbidden", "admin");
    assert_error(&s.call(s.req(Method::DELETE, "/v1/images/tiny")), 409, "conflict", "base image");
    let (_, list) = s.get("/v1/images");
    assert_eq!(list["images"].as_array().unwrap().len(), 1, "nothing half-imported: {list}");
    assert_eq!(std::fs::read_dir(s.dir.join("images/.tmp")).unwrap().count(), 0);
}

/// Tries the network from inside: the host's loopback (a port the test listens on), and the outside world.
const NETWORK_PROBE: &str = r#"
import socket
def attempt(host, port):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((host, port))
        return "connected"
    except OSError as e:
        return type(e).__name__ + ": " + str(e)
    finally:
        s.close()
def handler(event, context):
    with open("/proc/net/dev") as f:
        interfaces = sorted(l.split(":")[0].strip() for l in f.readlines()[2:])
    return {"host": attempt("127.0.0.1", event["port"]), "outside": attempt("192.0.2.1", 80),
            "interfaces": interfaces}
"#;

#[test]
fn network_none_leaves_only_loopback_and_the_runtime_api() {
    if !privileged("network none (lean sandbox)") {
        return;
    }
    let s = TestServer::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    python_fn(&s, "sealed", NETWORK_PROBE, json!({"network": "none"}));
    python_fn(&s, "open", NETWORK_PROBE, json!({}));
    let (status, sealed, err) = invoke(&s, "sealed", json!({"port": port}));
    assert_eq!((status, err), (200, None), "the Runtime API works through the relay: {sealed}");
    assert_eq!(sealed["interfaces"], json!(["lo"]), "{sealed}");
    assert_ne!(sealed["host"], "connected", "the host's loopback is out of reach: {sealed}");
    assert_ne!(sealed["outside"], "connected", "{sealed}");
    assert!(sealed["outside"].as_str().unwrap().contains("unreachable"), "{sealed}");
    let (_, open, _) = invoke(&s, "open", json!({"port": port}));
    assert_eq!(open["host"], "connected", "network host reaches the host's loopback: {open}");
    assert_eq!(s.get("/v1/functions/sealed").1["network"], "none");
    // Warm invocations keep using the relayed connection.
    for _ in 0..20 {
        assert_eq!(invoke(&s, "sealed", json!({"port": port})).0, 200);
    }
    assert_error(
        &s.call(s.req(Method::PATCH, "/v1/functions/open").json(&json!({"network": "bridge"}))),
        400,
        "invalid_json",
        "network",
    );
}

#[test]
fn network_none_is_refused_where_the_sandbox_cannot_isolate() {
    let s = TestServer::start_with(&["--sandbox", "process"]);
    let mut body = create_body("sealed", &python_zip("x"));
    body["network"] = json!("none");
    assert_error(&s.post("/v1/functions", body), 400, "invalid_parameter", "lean sandbox");
}
