//! Test harness: a real `stoke server` process on 127.0.0.1 with a free port and a temp data directory
//! (stoke-testkit's launcher, shared with the benchmarks), killed when the handle drops, plus small HTTP
//! and archive helpers.
#![allow(dead_code)]

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::Method;
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_stoke");

pub struct TestServer {
    pub dir: PathBuf,
    pub url: String,
    pub api_key: String,
    pub access_key_id: String,
    pub account_id: String,
    server: stoke_testkit::Server,
    http: Client,
    /// The etcd of a one-node cluster (`STOKE_TEST_CLUSTER=1`), dropped after the server.
    etcd: Option<(stoke_testkit::etcd::Etcd, tempfile::TempDir)>,
}

/// Whether the suites run against a node of a cluster (`STOKE_TEST_CLUSTER=1`: each test server is a node
/// with its own etcd) rather than a node on its embedded store.
pub fn cluster_mode() -> bool {
    std::env::var("STOKE_TEST_CLUSTER").is_ok_and(|v| v == "1")
}

/// A file holding a cluster secret, in `dir`.
pub fn secret_file(dir: &Path) -> PathBuf {
    let path = dir.join("cluster-secret");
    std::fs::write(&path, format!("{}\n", "c0ffee".repeat(8))).unwrap();
    path
}

/// Where a server's standard error goes: a new file under `STOKE_TEST_LOGS` when it names a directory (to
/// read what the servers of a failed run said), else nowhere.
fn log_file() -> Option<PathBuf> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = PathBuf::from(std::env::var_os("STOKE_TEST_LOGS")?);
    std::fs::create_dir_all(&dir).ok()?;
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(dir.join(format!("{}-{seq}.log", std::process::id())))
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `stoke server` flags.
    pub fn start_with(args: &[&str]) -> Self {
        if cluster_mode() {
            let etcd = stoke_testkit::etcd::Etcd::start().unwrap_or_else(|e| panic!("{e:#}"));
            let dir = tempfile::tempdir().unwrap();
            let secret = secret_file(dir.path());
            let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            all.extend(cluster_args(&etcd.endpoint(), "node-1", &secret));
            let mut s = Self::start_args(all);
            s.etcd = Some((etcd, dir));
            return s;
        }
        Self::start_args(args.iter().map(|s| s.to_string()).collect())
    }

    /// Starts a node of the cluster whose etcd is at `etcd`, named `name`.
    pub fn start_node(etcd: &str, name: &str, secret: &Path, args: &[&str]) -> Self {
        Self::start_node_logged(etcd, name, secret, args, None)
    }

    /// [`TestServer::start_node`], its standard error written to `log` (when given).
    pub fn start_node_logged(etcd: &str, name: &str, secret: &Path, args: &[&str], log: Option<PathBuf>) -> Self {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(cluster_args(etcd, name, secret));
        Self::start_options(all, None, None, log)
    }

    /// Uses another node's credentials (a node that joined later has none of its own).
    pub fn use_credentials_of(&mut self, other: &TestServer) {
        self.api_key.clone_from(&other.api_key);
        self.access_key_id.clone_from(&other.access_key_id);
        self.account_id.clone_from(&other.account_id);
    }

    /// Starts a server that serves HTTPS (its flags in `args`), trusting the CA certificate `ca`.
    pub fn start_tls(args: &[&str], ca: &Path) -> Self {
        Self::start_options(args.iter().map(|s| s.to_string()).collect(), Some(ca), None, None)
    }

    /// Starts a server whose data directory is made under `parent` (e.g. a small file system).
    pub fn start_in(parent: &Path, args: &[&str]) -> Self {
        Self::start_options(args.iter().map(|s| s.to_string()).collect(), None, Some(parent), None)
    }

    fn start_args(args: Vec<String>) -> Self {
        Self::start_options(args, None, None, None)
    }

    fn start_options(args: Vec<String>, ca: Option<&Path>, parent: Option<&Path>, log: Option<PathBuf>) -> Self {
        let options = stoke_testkit::Options {
            args,
            dir_parent: parent.map(Path::to_path_buf),
            // A test's instances are few, and lean helpers that outlive a killed server can take seconds
            // to notice (the zygote and oci tests bound that on their own): tests do not wait for them.
            drain_timeout: Duration::ZERO,
            ca_file: ca.map(Path::to_path_buf),
            log: log.or_else(log_file),
            ..Default::default()
        };
        let mut http = Client::builder().timeout(Duration::from_secs(60));
        if let Some(ca) = ca {
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap());
        }
        let server = stoke_testkit::Server::start(BIN, options).unwrap_or_else(|e| panic!("{e:#}"));
        let mut s = Self {
            dir: server.dir().to_path_buf(),
            url: String::new(),
            api_key: String::new(),
            access_key_id: String::new(),
            account_id: String::new(),
            server,
            http: http.build().unwrap(),
            etcd: None,
        };
        s.read_endpoint();
        s
    }

    /// Starts (or restarts) the process on the same data directory.
    pub fn launch(&mut self) {
        self.server.launch().unwrap_or_else(|e| panic!("{e:#}"));
        self.read_endpoint();
    }

    fn read_endpoint(&mut self) {
        self.url = self.server.endpoint().to_string();
        let creds = self.server.credentials();
        if creds.api_key.is_empty() {
            return; // a node that joined a cluster later: it uses another node's credentials
        }
        self.api_key = creds.api_key.clone();
        self.access_key_id = creds.access_key_id.clone();
        self.account_id = creds.account_id.clone();
    }

    /// The server's store, opened beside it: its etcd in cluster mode, else its SQLite file (open it while
    /// the server is stopped).
    pub fn store(&self) -> Box<dyn stoke_store::Store> {
        match &self.etcd {
            Some((etcd, _)) => Box::new(
                stoke_store::EtcdStore::connect(
                    &[etcd.endpoint()],
                    stoke_server::cluster::ClusterConfig::DEFAULT_PREFIX,
                )
                .unwrap(),
            ),
            None => Box::new(stoke_store::SqliteStore::open(&self.dir.join("stoke.db")).unwrap()),
        }
    }

    /// The server process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill9(&mut self) {
        self.server.kill();
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.req_as(&self.api_key, method, path)
    }

    /// A request with no credentials at all.
    pub fn http_plain(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url))
    }

    pub fn req_as(&self, key: &str, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url)).bearer_auth(key)
    }

    /// Sends and returns (status, JSON body or Null).
    pub fn call(&self, req: RequestBuilder) -> (u16, Value) {
        let resp: Response = req.send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call(self.req(Method::GET, path))
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(self.req(Method::POST, path).json(&body))
    }

    /// Creates a function, asserting success.
    pub fn create_function(&self, name: &str, archive: &[u8]) -> Value {
        let (status, body) = self.post("/v1/functions", create_body(name, archive));
        assert_eq!(status, 201, "create {name}: {body}");
        body
    }

    /// Creates another account and returns its API key.
    pub fn new_account(&self, name: &str) -> (String, String) {
        let (status, body) = self.post("/v1/accounts", json!({ "name": name }));
        assert_eq!(status, 201, "{body}");
        (
            body["credentials"]["api_key"].as_str().unwrap().to_string(),
            body["credentials"]["account_id"].as_str().unwrap().to_string(),
        )
    }

    /// A `stoke` CLI command pointed at this server through its data directory.
    pub fn cli(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--data-dir").arg(&self.dir).env_remove("STOKE_ENDPOINT").env_remove("STOKE_API_KEY");
        c
    }

    pub fn code_dir(&self) -> PathBuf {
        self.dir.join("code")
    }
}

pub fn create_body(name: &str, archive: &[u8]) -> Value {
    json!({
        "name": name,
        "runtime": "python3.12",
        "handler": "app.handler",
        "code_base64": base64::engine::general_purpose::STANDARD.encode(archive),
    })
}

/// A zip with the given files.
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in files {
        w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// `size` incompressible bytes (xorshift), distinct per `seed`: archives of them stay as large as the data.
pub fn noise(seed: u64, size: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x & 0xff) as u8
        })
        .collect()
}

/// A small python function archive whose content (and so sha256) depends on `tag`.
pub fn python_zip(tag: &str) -> Vec<u8> {
    zip_of(&[("app.py", format!("TAG = {tag:?}\ndef handler(event, context):\n    return TAG\n").as_bytes())])
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// The flags that make a server a node of the cluster at `etcd`, with a short lease so tests see a node go.
pub fn cluster_args(etcd: &str, name: &str, secret: &Path) -> Vec<String> {
    vec![
        "--cluster".into(),
        etcd.into(),
        "--node-name".into(),
        name.into(),
        "--cluster-secret-file".into(),
        secret.display().to_string(),
        "--node-ttl".into(),
        "3".into(),
    ]
}

pub fn assert_error(resp: &(u16, Value), status: u16, code: &str, needle: &str) {
    let (s, body) = resp;
    assert_eq!(*s, status, "expected {status} {code}, got {s}: {body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.to_lowercase().contains(&needle.to_lowercase()), "message {msg:?} should mention {needle:?}");
}

/// For a test that needs a tool scripts/prereqs installs: outside CI it may skip, and says so loudly; in CI
/// a missing tool fails the test. Returns whether the tool is there.
pub fn present_or_skip(present: bool, tool: &str, check: &str) -> bool {
    if !present {
        assert!(std::env::var_os("CI").is_none(), "{tool} must be installed in CI (scripts/prereqs installs it)");
        eprintln!("SKIPPED {check}: {tool} is not installed (run scripts/prereqs)");
    }
    present
}

/// Whether the vm sandbox can run here (root, QEMU, a guest kernel with 9p, a static busybox); outside CI
/// a missing part skips, loudly.
pub fn vm_ready() -> bool {
    if !privileged("the vm sandbox") {
        return false;
    }
    stoke_testkit::vm::missing_parts().into_iter().all(|part| present_or_skip(false, part, "the vm sandbox"))
}

/// The server arguments that run instances in VMs on this host: KVM where it can run a guest, else
/// emulated.
pub fn vm_args() -> [&'static str; 4] {
    ["--sandbox", "vm", "--vm-accel", stoke_testkit::vm::accel()]
}

/// Whether this host can run the lean sandbox; outside CI a non-root run skips, loudly.
pub fn privileged(check: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false);
    if !root {
        assert!(std::env::var_os("CI").is_none(), "the privileged tests must run as root in CI");
        eprintln!("SKIPPED {check}: the lean sandbox needs root (run the tests as root)");
    }
    root
}

/// Creates a python function from source, with extra configuration.
/// Waits (up to a minute) until execution `id` is no longer RUNNING, and returns it.
pub fn execution_done(s: &TestServer, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, e) = s.get(&format!("/v1/executions/{id}"));
        assert_eq!(status, 200, "{e}");
        if e["status"] != "RUNNING" {
            return e;
        }
        assert!(std::time::Instant::now() < deadline, "execution {id} still running: {e}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn python_fn(s: &TestServer, name: &str, source: &str, extra: Value) {
    let mut body = create_body(name, &zip_of(&[("app.py", source.as_bytes())]));
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, resp) = s.post("/v1/functions", body);
    assert_eq!(status, 201, "{resp}");
}

/// Builds tests/functions/rust-echo (lambda_runtime) into its own target directory and returns the binary.
pub fn build_rust_echo() -> std::path::PathBuf {
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

/// Creates `name`, a `provided.al2023` function running the lambda_runtime test function.
pub fn rust_echo_fn(s: &TestServer, name: &str) {
    let binary = std::fs::read(build_rust_echo()).unwrap();
    let body = json!({"name": name, "runtime": "provided.al2023",
        "code_base64": base64::engine::general_purpose::STANDARD.encode(bootstrap_zip(&binary))});
    let (status, resp) = s.post("/v1/functions", body);
    assert_eq!(status, 201, "{resp}");
}

/// A zip holding `bootstrap` (mode 0755) with these bytes: a `provided` function's archive.
pub fn bootstrap_zip(binary: &[u8]) -> Vec<u8> {
    provided_zip(binary, &[])
}

/// A `provided` function's archive: `bootstrap` (mode 0755) with these bytes, and these other files.
pub fn provided_zip(bootstrap: &[u8], files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("bootstrap", zip::write::SimpleFileOptions::default().unix_permissions(0o755)).unwrap();
    w.write_all(bootstrap).unwrap();
    for (name, body) in files {
        w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// The Python interpreter that has `module`, resolved past version-manager shims.
pub fn python_with(module: &str) -> Option<String> {
    let out =
        Command::new("python3").args(["-c", &format!("import {module}, sys; print(sys.executable)")]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Certificates for an HTTPS test, made with the openssl command: a CA, and a server certificate it signed
/// for 127.0.0.1 and localhost. Returns (ca.pem, server.pem, server.key).
pub fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let (cert, key, csr, ext) =
        (dir.join("server.pem"), dir.join("server.key"), dir.join("server.csr"), dir.join("ext"));
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl command");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=stoke test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext",
        "-out",
        "server.pem",
    ]);
    let _ = (ca_key, csr);
    (ca, cert, key)
}

/// Adds SigV4 headers for the server's admin key pair to an Event invocation through the Lambda API (its
/// routes refuse unsigned requests).
pub fn sign_lambda(
    s: &TestServer,
    req: reqwest::blocking::RequestBuilder,
    body: &serde_json::Value,
) -> reqwest::blocking::RequestBuilder {
    use stoke_server::sigv4::{authorization, SignedRequest};
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.dir.join("credentials.json")).unwrap()).unwrap();
    let built = req.try_clone().unwrap().build().unwrap();
    let host = format!("{}:{}", built.url().host_str().unwrap(), built.url().port().unwrap());
    let now_ms =
        stoke_core::num::millis_i64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap());
    let amz_date = stoke_core::time::format_amz_date(now_ms);
    let payload = serde_json::to_vec(body).unwrap();
    let signed = SignedRequest {
        method: "POST",
        raw_path: built.url().path(),
        raw_query: None,
        headers: vec![("host", &host), ("x-amz-date", &amz_date), ("x-amz-invocation-type", "Event")],
        body: &payload,
    };
    let auth = authorization(
        &signed,
        creds["access_key_id"].as_str().unwrap(),
        creds["secret_access_key"].as_str().unwrap(),
        "us-east-1",
        "lambda",
        &amz_date,
        &["host", "x-amz-date", "x-amz-invocation-type"],
    );
    req.header("X-Amz-Date", amz_date.clone()).header("Authorization", auth)
}

pub fn python_has(module: &str) -> bool {
    Command::new("python3").args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success())
}

/// Runs a script of tests/clients against `s` with the admin's key pair (STOKE_ENDPOINT, STOKE_AKID,
/// STOKE_SECRET, STOKE_ACCOUNT); it must succeed and print "all checks passed".
pub fn run_boto3_script(s: &TestServer, script: &str) {
    run_boto3_script_with(s, script, &[]);
}

/// As [`run_boto3_script`], with more environment variables for the script (e.g. `AWS_CA_BUNDLE`).
pub fn run_boto3_script_with(s: &TestServer, script: &str, env: &[(&str, &Path)]) {
    run_boto3_script_args(s, script, &[], env);
}

/// As [`run_boto3_script_with`], with arguments for the script; returns what it printed.
pub fn run_boto3_script_args(s: &TestServer, script: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.dir.join("credentials.json")).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(format!("{}/../../tests/clients/{script}", env!("CARGO_MANIFEST_DIR")))
        .args(args)
        .env("STOKE_ENDPOINT", &s.url)
        .env("STOKE_AKID", creds["access_key_id"].as_str().unwrap())
        .env("STOKE_SECRET", creds["secret_access_key"].as_str().unwrap())
        .env("STOKE_ACCOUNT", &s.account_id)
        .env_remove("AWS_PROFILE")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    stdout.into_owned()
}

/// Where the durable execution SDK's wheels are (`scripts/test` downloads them).
pub fn durable_wheels() -> std::path::PathBuf {
    std::env::var_os("STOKE_DURABLE_WHEELS").map_or_else(
        || std::path::PathBuf::from(format!("{}/../../tests/durable/.wheels", env!("CARGO_MANIFEST_DIR"))),
        std::path::PathBuf::from,
    )
}

/// The SDK's wheels, or `None` (and a loud skip outside CI) when they or boto3 are missing.
pub fn durable_sdk(check: &str) -> Option<std::path::PathBuf> {
    let wheels = durable_wheels();
    let has_sdk = std::fs::read_dir(&wheels).is_ok_and(|d| {
        d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("aws_durable_execution_sdk_python-"))
    });
    (present_or_skip(python_has("boto3"), "boto3", check)
        && present_or_skip(has_sdk, "the durable execution SDK's wheels", check))
    .then_some(wheels)
}

/// Invokes `function` on `s` with `event`: the status, the function error header, and the body as JSON
/// (`Null` when it is not).
pub fn invoke_function(s: &TestServer, function: &str, event: Value) -> (u16, Option<String>, Value) {
    let resp = s.req(Method::POST, &format!("/v1/functions/{function}/invoke")).json(&event).send().unwrap();
    let status = resp.status().as_u16();
    let error = resp.headers().get("x-stoke-function-error").map(|v| v.to_str().unwrap().to_string());
    (status, error, serde_json::from_str(&resp.text().unwrap()).unwrap_or(Value::Null))
}

/// The Lambda clients answer on `s`'s sandbox (`label` names it in failures): the Python and Node runtimes,
/// the Rust `lambda_runtime` crate and AWS's own Python client (`awslambdaric`, run by `ric`, the Python
/// that has it) each answer, report a handler's error as Lambda does, and keep their instance warm for the
/// next invocation. Each function's timeout is `timeout_s` (a cold start counts against it).
pub fn lambda_clients_answer(s: &TestServer, label: &str, ric: Option<&str>, timeout_s: u64) {
    let fail = "def handler(event, context):\n    if event.get('fail'):\n        raise ValueError('asked to fail')\n    return {'event': event, 'name': context.function_name}\n";
    python_fn(s, "py", fail, json!({"timeout_s": timeout_s}));
    let node = "exports.handler = async (event, context) => {\n  if (event.fail) throw new TypeError('asked to fail');\n  return {event, name: context.functionName};\n};\n";
    let mut body = create_body("js", &zip_of(&[("index.js", node.as_bytes())]));
    (body["runtime"], body["handler"]) = (json!("nodejs20.x"), json!("index.handler"));
    body["timeout_s"] = json!(timeout_s);
    assert_eq!(s.post("/v1/functions", body).0, 201);
    rust_echo_fn(s, "rusty");
    let (status, out) = s.call(s.req(Method::PATCH, "/v1/functions/rusty").json(&json!({"timeout_s": timeout_s})));
    assert_eq!(status, 200, "{out}");
    let mut clients = vec![("py", Some("ValueError")), ("js", Some("TypeError")), ("rusty", None)];
    if let Some(python) = ric {
        let bootstrap = format!("#!/bin/sh\nexec {python} -m awslambdaric app.handler\n");
        let archive = provided_zip(bootstrap.as_bytes(), &[("app.py", fail.as_bytes())]);
        let code = base64::engine::general_purpose::STANDARD.encode(archive);
        let body = json!({"name": "ric", "runtime": "provided.al2023", "timeout_s": timeout_s, "code_base64": code});
        assert_eq!(s.post("/v1/functions", body).0, 201);
        clients.push(("ric", Some("ValueError")));
    }
    for (name, error_type) in clients {
        let (status, err, out) = invoke_function(s, name, json!({"x": 1}));
        assert_eq!((status, err), (200, None), "{label} {name}: {out}");
        let echoed = if name == "rusty" { &out["echo"] } else { &out["event"] };
        assert_eq!(echoed, &json!({"x": 1}), "{label} {name}: {out}");
        let (status, err, out) = invoke_function(s, name, json!({"fail": true}));
        assert_eq!(status, 200, "{label} {name}: {out}");
        assert!(err.is_some(), "{label} {name}: a handler's error is the function's: {out}");
        assert_eq!(out["errorMessage"], "asked to fail", "{label} {name}: {out}");
        if let Some(t) = error_type {
            assert_eq!(out["errorType"], t, "{label} {name}: {out}");
        }
        let (_, err, out) = invoke_function(s, name, json!({"x": 2}));
        assert_eq!(err, None, "{label} {name}: the instance survives its handler's error: {out}");
        let (_, list) = s.get(&format!("/v1/instances?function={name}"));
        assert_eq!(list["instances"].as_array().unwrap().len(), 1, "{label} {name}: one warm instance: {list}");
    }
}
