//! Cluster mode end to end: a real etcd and real `stoke server` nodes on loopback. Any node serves the
//! whole API, archives survive the loss of the node that took them, membership follows the nodes, and an
//! etcd outage fails writes with a retryable 503 while warm invocations go on.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use stoke_testkit::etcd::Etcd;

/// etcd for a test; outside CI, where it may be missing, the test skips loudly.
fn etcd() -> Option<Etcd> {
    if !present_or_skip(stoke_testkit::etcd::etcd_binary().is_some(), "etcd", "cluster test") {
        return None;
    }
    Some(Etcd::start().unwrap_or_else(|e| panic!("{e:#}")))
}

const NODE_ARGS: &[&str] = &["--sandbox", "process", "--generic", "none", "--zygotes", "0"];

struct Cluster {
    nodes: Vec<TestServer>,
    secret: PathBuf,
    // Last: the nodes stop before their etcd does.
    _dir: tempfile::TempDir,
    etcd: Etcd,
}

impl Cluster {
    fn start(n: usize) -> Option<Self> {
        Self::start_with(n, |_| &[])
    }

    /// `n` nodes, node `i` (from 0) with `extra(i)` flags besides the usual ones.
    fn start_with(n: usize, extra: impl Fn(usize) -> &'static [&'static str]) -> Option<Self> {
        let etcd = etcd()?;
        let dir = tempfile::tempdir().unwrap();
        let secret = secret_file(dir.path());
        let mut nodes: Vec<TestServer> = Vec::new();
        for i in 0..n {
            let args: Vec<&str> = NODE_ARGS.iter().chain(extra(i)).copied().collect();
            let name = format!("node-{}", i + 1);
            let log = Some(dir.path().join(format!("{name}.log")));
            let mut node = TestServer::start_node_logged(&etcd.endpoint(), &name, &secret, &args, log);
            if let Some(first) = nodes.first() {
                node.use_credentials_of(first);
            }
            nodes.push(node);
        }
        Some(Self { nodes, secret, _dir: dir, etcd })
    }

    fn join(&mut self, name: &str) -> TestServer {
        let log = Some(self._dir.path().join(format!("{name}.log")));
        let mut node = TestServer::start_node_logged(&self.etcd.endpoint(), name, &self.secret, NODE_ARGS, log);
        node.use_credentials_of(&self.nodes[0]);
        node
    }
}

impl Drop for Cluster {
    /// A failed test shows what its nodes logged last (a node's own view of what went wrong).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self._dir.path()) else { return };
        let mut logs: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "log")).collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("---- the last lines of {} ----", log.display());
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}

fn invoke(node: &TestServer, reference: &str, payload: Value) -> (u16, Value) {
    node.call(node.req(Method::POST, &format!("/v1/functions/{reference}/invoke")).json(&payload))
}

fn echo(node: &TestServer, name: &str) {
    python_fn(
        node,
        name,
        "import os\ndef handler(event, context):\n    return {'echo': event, 'pid': os.getpid()}\n",
        json!({}),
    );
}

/// The nodes as `GET /v1/nodes` shows them: name → state.
fn states(node: &TestServer) -> Vec<(String, String)> {
    let (status, body) = node.get("/v1/nodes");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mode"], "cluster", "{body}");
    body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap().to_string(), n["state"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn any_node_serves_what_another_wrote() {
    let Some(c) = Cluster::start(3) else { return };
    let (a, b, cc) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    echo(a, "echo");
    // Created through A, invoked through B: B fetches the archive from a peer.
    let (status, out) = invoke(b, "echo", json!({"via": "b"}));
    assert_eq!((status, &out["echo"]["via"]), (200, &json!("b")), "{out}");
    // Published and aliased through C, invoked through A by the alias.
    let (status, v) = cc.post("/v1/functions/echo/versions", json!({}));
    assert_eq!(status, 201, "{v}");
    let (status, alias) =
        cc.call(cc.req(Method::PUT, "/v1/functions/echo/aliases/live").json(&json!({"version": "1"})));
    assert_eq!(status, 200, "{alias}");
    let (status, out) = invoke(a, "echo:live", json!({"via": "a"}));
    assert_eq!((status, &out["echo"]["via"]), (200, &json!("a")), "{out}");
    // A function URL made through one node answers through another, at once.
    let (status, t) = a.post("/v1/urls", json!({"function": "echo", "auth": "none"}));
    assert_eq!(status, 201, "{t}");
    let id = t["id"].as_str().unwrap();
    let (status, out) = cc.call(cc.http_plain(Method::POST, &format!("/u/{id}/hello")).body("hi"));
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["echo"]["rawPath"], "/hello", "{out}");
    // An account made on one node authenticates on the others.
    let (key, _) = b.new_account("team");
    let (status, who) = cc.call(cc.req_as(&key, Method::GET, "/v1/account"));
    assert_eq!((status, &who["name"]), (200, &json!("team")), "{who}");
    // Any node lists every node's instances, each with its node. Each version has one queue in the cluster,
    // owned by the first node that ran it: $LATEST's is node-2's (invoked there first; the function URL
    // through node-3 ran there too), version 1's is node-1's (the alias, through node-1).
    let (status, list) = cc.get("/v1/instances?function=echo");
    assert_eq!(status, 200, "{list}");
    let mut on: Vec<(&str, &str)> = list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| Some((i["version"].as_str()?, i["node"].as_str()?)))
        .collect();
    on.sort_unstable();
    on.dedup();
    assert_eq!(on, [("$LATEST", "node-2"), ("1", "node-1")], "{list}");
    let out = c.nodes[2]
        .cli()
        .args(["--endpoint", &c.nodes[2].url, "--api-key", &c.nodes[0].api_key, "instances", "echo"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("NODE") && text.contains("node-2"), "{text}");
    // Every node sees the same functions, and the nodes.
    for node in &c.nodes {
        let (status, list) = node.get("/v1/functions");
        assert_eq!(status, 200);
        assert_eq!(list["functions"].as_array().map(Vec::len), Some(1), "{list}");
        let live: Vec<_> = states(node).into_iter().filter(|(_, s)| s == "live").map(|(n, _)| n).collect();
        assert_eq!(live, ["node-1", "node-2", "node-3"]);
    }
    // The CLI shows them too.
    let out = c.nodes[1]
        .cli()
        .args(["--endpoint", &c.nodes[1].url, "--api-key", &c.nodes[0].api_key, "nodes"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("node-3") && text.contains("live"), "{text}");
    // Every node's metrics carry its name, so a cluster's nodes can be scraped into one place.
    for (n, node) in c.nodes.iter().enumerate() {
        let text = node.req(reqwest::Method::GET, "/metrics").send().unwrap().text().unwrap();
        let label = format!("node=\"node-{}\"", n + 1);
        assert!(text.contains(&format!("stoke_node_cold_starts_total{{{label}}}")), "{text}");
        assert!(text.contains(&format!("stoke_etcd_requests_total{{{label},source=\"requests\"}}")), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}

#[test]
fn two_nodes_moving_one_alias_at_once_do_not_both_win() {
    let Some(c) = Cluster::start(2) else { return };
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    echo(a, "flip");
    for _ in 0..2 {
        let (status, body) = a.post("/v1/functions/flip/versions", json!({}));
        assert!(status == 201 || status == 200, "{body}");
        let (status, body) =
            a.call(a.req(Method::PUT, "/v1/functions/flip/code").body(python_zip(&format!("v{}", rand_tag()))));
        assert_eq!(status, 200, "{body}");
    }
    let (status, alias) = a.call(a.req(Method::PUT, "/v1/functions/flip/aliases/prod").json(&json!({"version": "1"})));
    assert_eq!(status, 200, "{alias}");
    let revision = alias["revision"].as_u64().expect("an alias has a revision");
    // Both nodes move it from the revision they read, at the same moment: one wins, the other is told.
    let outcomes: Vec<(u16, Value)> = std::thread::scope(|s| {
        let moves: Vec<_> = [(a, "1"), (b, "2")]
            .into_iter()
            .map(|(node, version)| {
                s.spawn(move || {
                    node.call(node.req(Method::PUT, "/v1/functions/flip/aliases/prod").json(&json!({
                        "version": version, "revision": revision,
                    })))
                })
            })
            .collect();
        moves.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<_> = outcomes.iter().filter(|(s, _)| *s == 200).collect();
    let lost: Vec<_> = outcomes.iter().filter(|(s, _)| *s == 409 || *s == 412).collect();
    assert_eq!((won.len(), lost.len()), (1, 1), "{outcomes:?}");
    let code = lost[0].1["error"]["code"].as_str().unwrap();
    assert!(code == "precondition_failed" || code == "concurrent_modification", "{outcomes:?}");
    // What both nodes read now is what the winner wrote.
    let winner = won[0].1["version"].clone();
    for node in [a, b] {
        let (_, now) = node.get("/v1/functions/flip/aliases/prod");
        assert_eq!((now["version"].clone(), now["revision"].as_u64()), (winner.clone(), Some(revision + 1)), "{now}");
    }
}

fn rand_tag() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

#[test]
fn an_archive_outlives_the_node_that_took_it_and_a_killed_node_is_shown_gone() {
    let Some(mut c) = Cluster::start(3) else { return };
    echo(&c.nodes[0], "kept");
    let sha = c.nodes[0].get("/v1/functions/kept").1["code_sha256"].as_str().unwrap().to_string();
    let holders: Vec<usize> = (0..3).filter(|&i| c.nodes[i].dir.join("blobs").join(&sha).exists()).collect();
    assert!(holders.len() >= 2 && holders.contains(&0), "acknowledged on 2 nodes before the answer: {holders:?}");
    // kill -9 the node that took it; a node that joins later still runs the function.
    c.nodes[0].kill9();
    let killed_at = Instant::now();
    let mut late = c.join("node-4");
    late.use_credentials_of(&c.nodes[1]);
    let (status, out) = invoke(&late, "kept", json!({"n": 4}));
    assert_eq!((status, &out["echo"]["n"]), (200, &json!(4)), "{out}");
    assert!(late.dir.join("blobs").join(&sha).exists(), "fetched from a peer and kept");
    // Membership shows the killed node gone within its TTL (3 s) and a little.
    loop {
        let s = states(&c.nodes[1]);
        if s.contains(&("node-1".to_string(), "gone".to_string())) {
            break;
        }
        assert!(killed_at.elapsed() < Duration::from_secs(8), "node-1 still shown live: {s:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(states(&late).contains(&("node-4".to_string(), "live".to_string())));
}

#[test]
fn a_second_node_with_a_taken_name_refuses_to_start_and_an_unreachable_etcd_is_named() {
    let Some(c) = Cluster::start(1) else { return };
    let dir = tempfile::tempdir().unwrap();
    let taken = std::process::Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(cluster_args(&c.etcd.endpoint(), "node-1", &c.secret))
        .args(NODE_ARGS)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&taken.stderr);
    assert!(!taken.status.success() && err.contains("node-1") && err.contains("live node"), "{err}");
    let port = stoke_testkit::etcd::free_port().unwrap();
    let nowhere = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let out = std::process::Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(cluster_args(&nowhere, "node-9", &c.secret))
        .args(NODE_ARGS)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&nowhere), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "gave up in bounded time");
    // Without a secret, a node is told what it needs.
    let out = std::process::Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--cluster", &c.etcd.endpoint()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cluster-secret-file"));
}

#[test]
fn peers_only_reach_the_internal_api_with_the_secret() {
    let Some(c) = Cluster::start(1) else { return };
    let node = &c.nodes[0];
    let sha = "a".repeat(64);
    let (status, body) = node.call(node.http_plain(Method::GET, &format!("/internal/v1/blobs/{sha}")));
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{body}");
    let (status, _) = node.call(node.http_plain(Method::GET, "/internal/v1/instances?account=000000000001"));
    assert_eq!(status, 401, "peers' instance lists need the secret too");
    let logs = "/internal/v1/logs?account=000000000001&function=f&since_ms=0&limit=10";
    let (status, _) = node.call(node.http_plain(Method::GET, logs));
    assert_eq!(status, 401, "peers' log lines need the secret too");
    let secret = std::fs::read_to_string(&c.secret).unwrap().trim().to_string();
    let (status, body) = node.call(
        node.http_plain(Method::PUT, &format!("/internal/v1/blobs/{sha}"))
            .header("x-stoke-cluster-secret", &secret)
            .body("not that"),
    );
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("digest_mismatch")), "{body}");
    let (status, _) = node.call(
        node.http_plain(Method::GET, "/internal/v1/blobs/..%2F..%2Fetc%2Fpasswd")
            .header("x-stoke-cluster-secret", &secret),
    );
    assert_eq!(status, 400);
    let (status, body) = node.call(
        node.http_plain(Method::GET, "/internal/v1/logs?account=000000000001&function=no%20way&since_ms=0&limit=10")
            .header("x-stoke-cluster-secret", &secret),
    );
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("function")), "{body}");
    // Forwarded invocations: only from peers, and one missing what it needs is refused, naming it.
    let (status, _) = node.call(node.http_plain(Method::POST, "/internal/v1/invoke").body("{}"));
    assert_eq!(status, 401, "forwarded invocations need the secret too");
    let (status, body) = node.call(
        node.http_plain(Method::POST, "/internal/v1/invoke")
            .header("x-stoke-cluster-secret", &secret)
            .header("x-stoke-account", "000000000001")
            .body("{}"),
    );
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("x-stoke-reference")), "{body}");
    let (status, body) = node.call(
        node.http_plain(Method::POST, "/internal/v1/invoke")
            .header("x-stoke-cluster-secret", &secret)
            .header("x-stoke-account", "not-an-account")
            .body("{}"),
    );
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("x-stoke-account")), "{body}");
    // Hosting another owner's queue, taking its work and reporting outcomes: peers only, and checked.
    for path in [
        "/internal/v1/queues/host",
        "/internal/v1/queues/take",
        "/internal/v1/queues/done/x",
        "/internal/v1/queues/prepare",
        "/internal/v1/queues/turn/x",
        "/internal/v1/queues/pool",
        "/internal/v1/queues/announce",
        "/internal/v1/queues/release",
    ] {
        let (status, _) = node.call(node.http_plain(Method::POST, path).body("{}"));
        assert_eq!(status, 401, "{path} needs the secret");
    }
    let peer = |path: &str| node.http_plain(Method::POST, path).header("x-stoke-cluster-secret", &secret);
    let owner = json!({"node": "node-9", "advertise": "http://127.0.0.1:9"});
    let (status, body) = node.call(peer("/internal/v1/queues/host").json(&json!({"account": "000000000001",
        "function": "f", "version": "$LATEST", "reference": "f:$LATEST", "owner": owner, "slots": 0})));
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("slots")), "{body}");
    let (status, body) = node.call(
        peer("/internal/v1/queues/take")
            .header("x-stoke-account", "000000000001")
            .header("x-stoke-reference", "f")
            .header("x-stoke-version", "$LATEST"),
    );
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("x-stoke-taker")), "{body}");
    let (status, body) = node.call(peer("/internal/v1/queues/done/nothing").body("not an outcome"));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_outcome")), "{body}");
    // Workflows across nodes: a preparation names its execution, a turn its preparation, and the bodies
    // are stoke's; a function that does not exist is named as such.
    echo(node, "f");
    let of = |path: &str, function: &str| {
        peer(path)
            .header("x-stoke-account", node.account_id.as_str())
            .header("x-stoke-reference", function)
            .header("x-stoke-version", "$LATEST")
    };
    let (status, body) = node.call(of("/internal/v1/queues/prepare", "f").body("{}"));
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("x-stoke-execution")), "{body}");
    let (status, body) =
        node.call(of("/internal/v1/queues/prepare", "missing").header("x-stoke-execution", "e1").body("{}"));
    assert_eq!(status, 404, "{body}");
    let (status, body) = node.call(peer("/internal/v1/queues/turn/nothing"));
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    for path in ["/internal/v1/queues/announce", "/internal/v1/queues/release"] {
        let (status, body) = node.call(of(path, "f").body(r#"{"count": "many", "execution": 1}"#));
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_parameter")), "{path}: {body}");
    }
    let (status, body) = node.call(of("/internal/v1/queues/pool", "f"));
    assert_eq!((status, body["idle"].as_u64(), body["held"].as_u64()), (200, Some(0), Some(0)), "{body}");
    let (status, body) =
        node.call(of("/internal/v1/queues/release", "f").json(&json!({"execution": "e1", "why": "ended"})));
    assert_eq!((status, body["released"].as_u64()), (200, Some(0)), "{body}");
    // A non-admin account may not list the nodes.
    let (key, _) = node.new_account("plain");
    let (status, _) = node.call(node.req_as(&key, Method::GET, "/v1/nodes"));
    assert_eq!(status, 403);
}

#[test]
fn an_etcd_outage_fails_writes_retryably_while_warm_invocations_go_on() {
    let Some(mut c) = Cluster::start(2) else { return };
    echo(&c.nodes[0], "steady");
    let b = &c.nodes[1];
    let (status, _) = invoke(b, "steady", json!({"warm": 0}));
    assert_eq!(status, 200);
    c.etcd.stop();
    // Light load through the outage: every warm invocation answers.
    for i in 1..=20 {
        let (status, out) = invoke(b, "steady", json!({"warm": i}));
        assert_eq!((status, &out["echo"]["warm"]), (200, &json!(i)), "{out}");
    }
    // A write needs etcd: a retryable 503 naming what is down, and nothing half-written.
    let resp = b.call(b.req(Method::POST, "/v1/functions").json(&create_body("during", &python_zip("x"))));
    assert_error(&resp, 503, "store_unavailable", "etcd");
    c.etcd.restart().unwrap();
    // The node recovers by itself: writes work again once etcd answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = b.post("/v1/functions", create_body("after", &python_zip("y")));
        if status == 201 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "writes did not come back after etcd did: {body}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (status, _) = c.nodes[0].get("/v1/functions/during");
    assert_eq!(status, 404, "the refused create left nothing behind");
    let (status, out) = invoke(&c.nodes[0], "after", json!({"back": true}));
    assert_eq!(status, 200, "{out}");
}

#[test]
fn a_layer_published_on_one_node_is_unpacked_on_another_that_runs_it() {
    use base64::Engine;
    let Some(c) = Cluster::start(2) else { return };
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let layer = zip_of(&[("python/greeting.py", b"WORD = 'from a layer'\n")]);
    let (status, v) = a.post(
        "/v1/layers/words/versions",
        json!({"code_base64": base64::engine::general_purpose::STANDARD.encode(&layer)}),
    );
    assert_eq!(status, 201, "{v}");
    python_fn(
        a,
        "greeter",
        "import greeting\ndef handler(event, context):\n    return greeting.WORD\n",
        json!({"layers": ["words:1"]}),
    );
    let (status, out) = invoke(b, "greeter", json!({}));
    assert_eq!((status, &out), (200, &json!("from a layer")), "{out}");
    let sha = sha256_hex(&layer);
    assert!(b.dir.join("blobs").join(&sha).exists(), "node-2 holds the layer's archive");
}

/// Queues `per_node` Event invocations of `function` through each of `through` with boto3 (the Lambda API,
/// InvocationType Event); each event names its marker file in `dir`: `n<node>-<i>`.
fn queue_events(c: &Cluster, through: &[&TestServer], function: &str, per_node: usize, dir: &std::path::Path) {
    let creds: Value =
        serde_json::from_slice(&std::fs::read(c.nodes[0].dir.join("credentials.json")).unwrap()).unwrap();
    let script = r#"
import json, os, boto3
from botocore.config import Config
for n, ep in enumerate(os.environ["EPS"].split(",")):
    lam = boto3.client("lambda", endpoint_url=ep, region_name="us-east-1",
                       aws_access_key_id=os.environ["AKID"], aws_secret_access_key=os.environ["SECRET"],
                       config=Config(retries={"max_attempts": 0}))
    for i in range(int(os.environ["EACH"])):
        r = lam.invoke(FunctionName=os.environ["FUNCTION"], InvocationType="Event",
                       Payload=json.dumps({"marker": os.path.join(os.environ["DIR"], f"n{n}-{i}")}))
        assert r["StatusCode"] == 202, r
"#;
    let endpoints: Vec<&str> = through.iter().map(|n| n.url.as_str()).collect();
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .env("EPS", endpoints.join(","))
        .env("EACH", per_node.to_string())
        .env("FUNCTION", function)
        .env("AKID", creds["access_key_id"].as_str().unwrap())
        .env("SECRET", creds["secret_access_key"].as_str().unwrap())
        .env("DIR", dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn event_invocations_from_the_shared_queue_run_once_each() {
    let Some(c) = Cluster::start(2) else { return };
    if !present_or_skip(python_has("boto3"), "boto3", "Event invocations across nodes") {
        return;
    }
    // Each run appends a line to its marker: a second run of one event would show as a second line.
    let src = "def handler(e, c):\n    open(e['marker'], 'a').write(c.aws_request_id + '\\n')\n    return 1\n";
    assert_eq!(c.nodes[0].post("/v1/functions", create_body("later", &zip_of(&[("app.py", src.as_bytes())]))).0, 201);
    let markers = tempfile::tempdir().unwrap();
    // Accepted through both nodes with the Lambda API (boto3, InvocationType Event).
    queue_events(&c, &[&c.nodes[0], &c.nodes[1]], "later", 10, markers.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    while files_under(markers.path()).len() < 20 {
        assert!(Instant::now() < deadline, "only {} of 20 events ran", files_under(markers.path()).len());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500)); // time for a second run, if there were one
    for marker in files_under(markers.path()) {
        let runs = std::fs::read_to_string(&marker).unwrap();
        assert_eq!(runs.lines().count(), 1, "{} ran {} times", marker.display(), runs.lines().count());
    }
}

/// A minimal root file system: `/etc/os-release` and `/usr/bin`.
fn tiny_image() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, kind, mode) in [
        ("usr/bin", &b""[..], tar::EntryType::Directory, 0o755),
        ("etc/os-release", &b"ID=stoke-cluster-image\n"[..], tar::EntryType::Regular, 0o644),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn an_image_imported_on_one_node_is_imported_on_another_that_needs_it() {
    let Some(c) = Cluster::start(2) else { return };
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let tarball = tiny_image();
    let (status, image) = a.call(a.req(Method::PUT, "/v1/images/tiny").body(tarball.clone()));
    assert_eq!(status, 201, "{image}");
    let sha = sha256_hex(&tarball);
    assert!(b.dir.join("blobs").join(&sha).exists(), "the tarball is on 2 nodes before the import is acknowledged");
    let mut body = create_body("onimage", &python_zip("img"));
    body["base_image"] = json!("tiny");
    assert_eq!(a.post("/v1/functions", body).0, 201);
    // The process sandbox runs on the host's files, but node-2 must still have the image to run it anywhere.
    let (status, out) = invoke(b, "onimage", json!({}));
    assert_eq!(status, 200, "{out}");
    let release = std::fs::read_to_string(b.dir.join("images/tiny/rootfs/etc/os-release")).unwrap();
    assert_eq!(release, "ID=stoke-cluster-image\n");
}

#[test]
fn what_a_killed_node_had_claimed_or_was_running_is_taken_over_by_another() {
    let Some(mut c) = Cluster::start(2) else { return };
    if !present_or_skip(python_has("boto3"), "boto3", "taking over a lost node's events") {
        return;
    }
    // A workflow that outlives node-1: started there, it must finish on node-2.
    let (status, body) = c.nodes[0].post(
        "/v1/workflows",
        json!({"name": "outlive", "definition": {"StartAt": "W", "States": {
            "W": {"Type": "Wait", "Seconds": 2, "Next": "Done"},
            "Done": {"Type": "Pass", "Result": "finished elsewhere", "End": true}}}}),
    );
    assert_eq!(status, 201, "{body}");
    let (status, e) = c.nodes[0].post("/v1/workflows/outlive/executions", json!({"input": {}}));
    assert_eq!(status, 201, "{e}");
    let execution = e["id"].as_str().unwrap().to_string();
    // A Task in flight on node-1 when it is lost: its outcome is unknown, so node-2 fails it as
    // States.TaskFailed and its Catch runs, rather than running it again unseen.
    let runs = tempfile::tempdir().unwrap();
    let sleeper = "import time\ndef handler(e, c):\n    open(e['runs'] + '/' + c.aws_request_id, 'w').close()\n    time.sleep(60)\n    return 'woke'\n";
    assert_eq!(
        c.nodes[0].post("/v1/functions", create_body("sleeper", &zip_of(&[("app.py", sleeper.as_bytes())]))).0,
        201
    );
    let (status, body) = c.nodes[0].post(
        "/v1/workflows",
        json!({"name": "lost-task", "definition": {"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "sleeper", "TimeoutSeconds": 120, "Next": "Done",
                  "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.lost", "Next": "Caught"}]},
            "Caught": {"Type": "Pass", "End": true},
            "Done": {"Type": "Pass", "End": true}}}}),
    );
    assert_eq!(status, 201, "{body}");
    let (status, e) = c.nodes[0].post("/v1/workflows/lost-task/executions", json!({"input": {"runs": runs.path()}}));
    assert_eq!(status, 201, "{e}");
    let lost_task = e["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    while files_under(runs.path()).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "the Task never started on node-1");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Slow Event invocations, one at a time: node-1 claims them and is killed before it has run them all.
    let src = "import time\ndef handler(e, c):\n    time.sleep(0.3)\n    open(e['marker'], 'a').write(c.aws_request_id + '\\n')\n    return 1\n";
    let mut body = create_body("slow", &zip_of(&[("app.py", src.as_bytes())]));
    body["concurrency_limit"] = json!(1);
    assert_eq!(c.nodes[0].post("/v1/functions", body).0, 201);
    let markers = tempfile::tempdir().unwrap();
    queue_events(&c, &[&c.nodes[0]], "slow", 8, markers.path());
    c.nodes[0].kill9();
    let killed = Instant::now();
    let ran_before = files_under(markers.path()).len();
    assert!(ran_before < 8, "all 8 ran before the kill; the test proves nothing");
    // Within the lease (3 s) and a take-over round (2 s) and the runs themselves, node-2 has run every one.
    let b = &c.nodes[1];
    loop {
        let done = files_under(markers.path()).len();
        let (_, now) = b.get(&format!("/v1/executions/{execution}"));
        if done == 8 && now["status"] == "SUCCEEDED" {
            assert_eq!(now["output"], json!("finished elsewhere"), "{now}");
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(45),
            "{done} of 8 events ran ({ran_before} before the kill); the execution is {}",
            now["status"]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "{ran_before} of 8 events ran before the kill; all 8 and the execution done {:?} after it",
        killed.elapsed()
    );
    loop {
        let (_, now) = b.get(&format!("/v1/executions/{lost_task}"));
        if now["status"] == "SUCCEEDED" {
            assert_eq!(now["output"]["lost"]["Error"], "States.TaskFailed", "{now}");
            assert!(now["output"]["lost"]["Cause"].as_str().unwrap().contains("was lost"), "{now}");
            break;
        }
        assert_eq!(now["status"], "RUNNING", "{now}");
        assert!(killed.elapsed() < Duration::from_secs(45), "the lost Task's execution is still {now}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(files_under(runs.path()).len(), 1, "the lost Task ran again unseen");
    let (_, history) = b.get(&format!("/v1/executions/{lost_task}/history"));
    let kinds: Vec<&str> = history["events"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(kinds.contains(&"LambdaFunctionFailed"), "{kinds:?}");
}

#[test]
fn stopping_an_execution_through_another_node_fences_off_the_node_running_it() {
    let Some(c) = Cluster::start(2) else { return };
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let (status, body) = a.post(
        "/v1/workflows",
        json!({"name": "long", "definition": {"StartAt": "W", "States": {
            "W": {"Type": "Wait", "Seconds": 2, "Next": "After"},
            "After": {"Type": "Pass", "End": true}}}}),
    );
    assert_eq!(status, 201, "{body}");
    let (status, e) = a.post("/v1/workflows/long/executions", json!({"input": {}}));
    assert_eq!(status, 201, "{e}");
    let id = e["id"].as_str().unwrap();
    let (status, stopped) = b.post(&format!("/v1/executions/{id}/stop"), json!({"error": "Manual"}));
    assert_eq!((status, &stopped["status"]), (200, &json!("ABORTED")), "{stopped}");
    // node-1's engine wakes after its Wait, is refused its write, and stops: the execution stays ABORTED with
    // nothing after ExecutionAborted.
    std::thread::sleep(Duration::from_secs(3));
    let (_, now) = a.get(&format!("/v1/executions/{id}"));
    assert_eq!(now["status"], "ABORTED", "{now}");
    let (_, history) = a.get(&format!("/v1/executions/{id}/history"));
    let kinds: Vec<&str> = history["events"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.last(), Some(&"ExecutionAborted"), "{kinds:?}");
}

/// One sync invocation of the load in [`a_version_has_one_queue_in_the_cluster_and_losing_its_owner_loses_no_accepted_work`].
#[derive(Debug)]
struct Call {
    id: String,
    status: u16,
    code: String,
    node: Option<String>,
    at: Instant,
}

/// Invokes `function` through `url` until `stop`, each call under a fresh id, and returns every call.
fn sync_load(
    url: &str,
    key: &str,
    function: &str,
    dir: &std::path::Path,
    tag: &str,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<Call> {
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(90)).build().unwrap();
    let mut calls = Vec::new();
    for i in 0.. {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let id = format!("{tag}-{i}");
        let sent = http
            .post(format!("{url}/v1/functions/{function}/invoke"))
            .bearer_auth(key)
            .json(&json!({"dir": dir, "id": id, "sleep": 0.2}))
            .send();
        let call = match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let node = resp.headers().get("x-stoke-node").and_then(|v| v.to_str().ok()).map(str::to_string);
                let body: Value = resp.json().unwrap_or(Value::Null);
                Call {
                    id,
                    status,
                    code: body["error"]["code"].as_str().unwrap_or_default().to_string(),
                    node,
                    at: Instant::now(),
                }
            }
            Err(e) => Call { id, status: 0, code: e.to_string(), node: None, at: Instant::now() },
        };
        calls.push(call);
    }
    calls
}

#[test]
fn a_version_has_one_queue_in_the_cluster_and_losing_its_owner_loses_no_accepted_work() {
    let Some(mut c) = Cluster::start(3) else { return };
    let boto3 = present_or_skip(python_has("boto3"), "boto3", "Event invocations in the mixed load");
    // Each run appends its request id to a file named by the caller's id: two lines are two runs.
    let src = "import os, time\ndef handler(e, c):\n    path = e.get('marker') or os.path.join(e['dir'], e['id'])\n    open(path, 'a').write(c.aws_request_id + '\\n')\n    time.sleep(e.get('sleep', 0))\n    return {'pid': os.getpid()}\n";
    assert_eq!(c.nodes[0].post("/v1/functions", create_body("work", &zip_of(&[("app.py", src.as_bytes())]))).0, 201);
    let runs = tempfile::tempdir().unwrap();
    // node-1 runs it first: it owns the queue of work:$LATEST.
    let (status, out) = invoke(&c.nodes[0], "work", json!({"dir": runs.path(), "id": "first"}));
    assert_eq!(status, 200, "{out}");
    let owner_pid = out["pid"].clone();

    // Through node-2 and node-3 it runs on node-1, on node-1's instance, and they read no etcd to route it.
    let etcd_requests = |n: &TestServer| -> u64 {
        let text = n.req(Method::GET, "/metrics").send().unwrap().text().unwrap();
        let line = text.lines().find(|l| l.starts_with("stoke_etcd_requests_total") && l.contains("requests")).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    for via in [&c.nodes[1], &c.nodes[2]] {
        invoke(via, "work", json!({"dir": runs.path(), "id": format!("warm-up-{}", via.url)}));
        let before = etcd_requests(via);
        for i in 0..10 {
            let resp = via
                .req(Method::POST, "/v1/functions/work/invoke")
                .json(&json!({"dir": runs.path(), "id": format!("{}-{i}", via.url.len())}))
                .send()
                .unwrap();
            assert_eq!(resp.headers()["x-stoke-node"], "node-1");
            assert_eq!(resp.json::<Value>().unwrap()["pid"], owner_pid, "not node-1's warm instance");
        }
        assert_eq!(etcd_requests(via), before, "a warm forwarded invocation read etcd");
    }
    let (_, list) = c.nodes[1].get("/v1/instances?function=work");
    let on: Vec<&str> = list["instances"].as_array().unwrap().iter().filter_map(|i| i["node"].as_str()).collect();
    assert!(!on.is_empty() && on.iter().all(|n| *n == "node-1"), "{list}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, nodes) = c.nodes[2].get("/v1/nodes");
        let queues: Vec<u64> =
            nodes["nodes"].as_array().unwrap().iter().map(|n| n["queues"].as_u64().unwrap()).collect();
        if queues == [1, 0, 0] {
            break;
        }
        assert!(Instant::now() < deadline, "node-1 is not shown owning the queue: {nodes}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Steady mixed load through node-2 and node-3: sync invocations, Event invocations, workflows whose
    // Task invokes the function; then node-1, the queue's owner, is killed. A Task goes to the queue's
    // owner like any invocation: one that had started on node-1 fails there, and its Retry runs it again.
    let (status, body) = c.nodes[1].post(
        "/v1/workflows",
        json!({"name": "steps", "definition": {"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "work", "End": true,
                  "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 3}]}}}}),
    );
    assert_eq!(status, 201, "{body}");
    let events = tempfile::tempdir().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (key, b_url, c_url) = (c.nodes[0].api_key.clone(), c.nodes[1].url.clone(), c.nodes[2].url.clone());
    let mut executions = Vec::new();
    let (calls, killed) = std::thread::scope(|scope| {
        let mut load = Vec::new();
        for (t, url) in [&b_url, &b_url, &c_url, &c_url].into_iter().enumerate() {
            let (key, stop, dir) = (&key, &stop, runs.path());
            load.push(scope.spawn(move || sync_load(url, key, "work", dir, &format!("s{t}"), stop)));
        }
        std::thread::sleep(Duration::from_secs(2));
        if boto3 {
            queue_events(&c, &[&c.nodes[1], &c.nodes[2]], "work", 6, events.path());
        }
        for (n, via) in [&c.nodes[1], &c.nodes[2]].into_iter().enumerate() {
            let (status, e) = via.post(
                "/v1/workflows/steps/executions",
                json!({"input": {"dir": runs.path(), "id": format!("wf-{n}")}}),
            );
            assert_eq!(status, 201, "{e}");
            executions.push(e["id"].as_str().unwrap().to_string());
        }
        let killed = Instant::now();
        c.nodes[0].kill9();
        std::thread::sleep(Duration::from_secs(10));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let calls: Vec<Call> = load.into_iter().flat_map(|h| h.join().unwrap()).collect();
        (calls, killed)
    });

    // Sync invocations: only those that had started on node-1 failed, with a retryable node_lost; every
    // other call succeeded; none ran twice.
    let runs_of = |id: &str| std::fs::read_to_string(runs.path().join(id)).map_or(0, |s| s.lines().count());
    let failed: Vec<&Call> = calls.iter().filter(|c| c.status != 200).collect();
    for f in &failed {
        assert_eq!((f.status, f.code.as_str()), (503, "node_lost"), "{f:?}");
        assert!(f.at > killed, "{f:?} failed before the kill");
    }
    assert!(failed.len() <= 4, "more sync calls failed than were in flight (4 callers): {failed:?}");
    let duplicates: Vec<&str> = calls.iter().filter(|c| runs_of(&c.id) > 1).map(|c| c.id.as_str()).collect();
    assert!(duplicates.is_empty(), "sync invocations that ran twice: {duplicates:?}");
    for ok in calls.iter().filter(|c| c.status == 200) {
        assert_eq!(runs_of(&ok.id), 1, "{ok:?}");
    }
    // The queue served again, from another node, within the lease's TTL (3 s) and a little.
    let served_again = calls
        .iter()
        .filter(|c| c.status == 200 && c.at > killed && c.node.as_deref() != Some("node-1"))
        .map(|c| c.at - killed)
        .min()
        .expect("no invocation succeeded after the kill");
    let after = calls.iter().filter(|c| c.at > killed).count();
    eprintln!(
        "sync: {} calls, {} failed (node_lost, started on node-1), 0 ran twice; the queue served again {served_again:?} \
         after the kill ({after} calls after it)",
        calls.len(),
        failed.len()
    );
    assert!(served_again < Duration::from_secs(8), "the queue served again only {served_again:?} after the kill");

    // Every accepted Event invocation ran (at least once), and every workflow execution finished.
    let deadline = Instant::now() + Duration::from_secs(45);
    let b = &c.nodes[1];
    loop {
        let ran = files_under(events.path()).len();
        let statuses: Vec<Value> = executions.iter().map(|e| b.get(&format!("/v1/executions/{e}")).1).collect();
        let statuses: Vec<&Value> =
            statuses.iter().map(|e| if e["status"] == "SUCCEEDED" { &e["status"] } else { e }).collect();
        if (!boto3 || ran == 12) && statuses.iter().all(|s| *s == "SUCCEEDED") {
            let twice = files_under(events.path())
                .iter()
                .filter(|m| std::fs::read_to_string(m).unwrap().lines().count() > 1)
                .count();
            eprintln!("events: {ran} of 12 accepted ran, {twice} of them twice (at least once, same request id)");
            break;
        }
        assert!(Instant::now() < deadline, "{ran} of 12 events ran; executions {statuses:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // node-1 is shown gone, and a live node owns the queue now.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, nodes) = c.nodes[2].get("/v1/nodes");
        let list = nodes["nodes"].as_array().unwrap();
        let owned: u64 = list.iter().filter(|n| n["state"] == "live").map(|n| n["queues"].as_u64().unwrap()).sum();
        if owned == 1 && list[0]["state"] == "gone" {
            break;
        }
        assert!(Instant::now() < deadline, "{nodes}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Invokes `hosted` through the node at `url`, sleeping `sleep` seconds in it.
fn invoke_hosted(url: &str, key: &str, sleep: u64) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .post(format!("{url}/v1/functions/hosted/invoke"))
        .bearer_auth(key)
        .json(&json!({ "sleep": sleep }))
        .timeout(Duration::from_secs(60))
        .send()
        .unwrap()
}

#[test]
fn an_owner_short_of_room_places_instances_on_another_node_which_pull_its_queue() {
    // node-1 has room for one 256 MB instance and no more; node-2 and node-3 have the machine's memory.
    let Some(mut c) =
        Cluster::start_with(3, |i| if i == 0 { &["--max-memory-mb", "256", "--memory-overcommit", "1"] } else { &[] })
    else {
        return;
    };
    let src =
        "import os, time\ndef handler(e, c):\n    time.sleep(e.get('sleep', 0))\n    return {'pid': os.getpid()}\n";
    let mut body = create_body("hosted", &zip_of(&[("app.py", src.as_bytes())]));
    body["memory_mb"] = json!(256);
    body["timeout_s"] = json!(60);
    assert_eq!(c.nodes[0].post("/v1/functions", body).0, 201);
    let (status, out) = invoke(&c.nodes[0], "hosted", json!({}));
    assert_eq!(status, 200, "node-1 owns the queue: {out}");
    std::thread::sleep(Duration::from_secs(3)); // every node's heartbeat and the nodes' list are current

    // Six calls at once through node-3: node-1's one instance cannot take them all, so its controller
    // reserves room on node-2 (the freest, by name) and node-2's instances pull the rest from node-1.
    let (key, url) = (c.nodes[0].api_key.clone(), c.nodes[2].url.clone());
    let ran_on: Vec<String> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let (key, url) = (&key, &url);
                s.spawn(move || {
                    let resp = invoke_hosted(url, key, 1);
                    let (status, node) = (resp.status(), resp.headers().get("x-stoke-node").cloned());
                    assert_eq!(status, 200, "{}", resp.text().unwrap_or_default());
                    node.unwrap().to_str().unwrap().to_string()
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert!(ran_on.iter().any(|n| n == "node-2"), "nothing ran on node-2: {ran_on:?}");
    assert!(ran_on.iter().all(|n| n == "node-1" || n == "node-2"), "{ran_on:?}");
    let (_, list) = c.nodes[2].get("/v1/instances?function=hosted");
    let mut on: Vec<&str> = list["instances"].as_array().unwrap().iter().filter_map(|i| i["node"].as_str()).collect();
    on.sort_unstable();
    on.dedup();
    assert_eq!(on, ["node-1", "node-2"], "{list}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, nodes) = c.nodes[0].get("/v1/nodes");
        let hosting: Vec<u64> =
            nodes["nodes"].as_array().unwrap().iter().map(|n| n["hosting"].as_u64().unwrap_or(0)).collect();
        let reserved: Vec<u64> =
            nodes["nodes"].as_array().unwrap().iter().map(|n| n["reserved_mb"].as_u64().unwrap()).collect();
        if hosting[1] > 0 && hosting[0] == 0 && hosting[2] == 0 {
            // node-1 reserved room on node-2 for the feeders it asked for, 256 MB each.
            assert!(
                reserved[1] >= 256 && reserved[1].is_multiple_of(256) && reserved[0] == 0 && reserved[2] == 0,
                "{nodes}"
            );
            let out = c.nodes[0]
                .cli()
                .args(["--endpoint", &c.nodes[0].url, "--api-key", &c.nodes[0].api_key, "nodes"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("HOSTING") && text.contains("RESERVED") && text.contains(&format!("{} MB", reserved[1])),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "node-2 is not shown hosting: {nodes}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // node-2 is killed while it runs a call it took from node-1's queue: the caller is told, not left
    // hanging, and the call is not run again; the queue goes on serving.
    let long = std::thread::scope(|s| {
        let calls: Vec<_> = (0..2)
            .map(|_| {
                let (key, url) = (&key, &url);
                s.spawn(move || {
                    let resp = invoke_hosted(url, key, 12);
                    let status = resp.status().as_u16();
                    let body: Value = resp.json().unwrap_or(Value::Null);
                    (status, body["error"]["code"].as_str().unwrap_or_default().to_string(), Instant::now())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(4));
        c.nodes[1].kill9();
        let killed = Instant::now();
        (calls.into_iter().map(|c| c.join().unwrap()).collect::<Vec<_>>(), killed)
    });
    let (outcomes, killed) = long;
    let lost: Vec<_> = outcomes.iter().filter(|o| o.0 == 503).collect();
    assert_eq!(lost.len(), 1, "one of the two ran on node-2: {outcomes:?}");
    assert_eq!(lost[0].1, "node_lost", "{outcomes:?}");
    assert!(lost[0].2 - killed < Duration::from_secs(10), "told {:?} after the kill", lost[0].2 - killed);
    assert!(outcomes.iter().any(|o| o.0 == 200), "the call on node-1's own instance finished: {outcomes:?}");
    let (status, out) = invoke(&c.nodes[2], "hosted", json!({}));
    assert_eq!(status, 200, "{out}");
}

#[test]
fn losing_an_owner_whose_queue_another_node_hosts_runs_nothing_twice_and_the_host_takes_the_queue() {
    // node-1 owns the queue and has no room for the function's instances; node-2 lends too little for
    // one; node-3 hosts them all. Calls come in through node-2. node-1 is killed under that load.
    let Some(mut c) = Cluster::start_with(3, |i| match i {
        0 => &["--max-memory-mb", "200", "--memory-overcommit", "1"],
        1 => &["--max-memory-mb", "300", "--memory-overcommit", "1"],
        _ => &[],
    }) else {
        return;
    };
    let runs = tempfile::tempdir().unwrap();
    let src = "import os, time\ndef handler(e, c):\n    open(os.path.join(e['dir'], e['id']), 'a').write(c.aws_request_id + '\\n')\n    time.sleep(e.get('sleep', 0))\n    return {'pid': os.getpid()}\n";
    let mut body = create_body("far", &zip_of(&[("app.py", src.as_bytes())]));
    body["memory_mb"] = json!(256);
    // Created through node-3 (node-1 would refuse a function larger than its memory).
    assert_eq!(c.nodes[2].post("/v1/functions", body).0, 201);
    std::thread::sleep(Duration::from_secs(3)); // every node's heartbeat and the nodes' list are current
    let (status, out) = invoke(&c.nodes[0], "far", json!({"dir": runs.path(), "id": "first"}));
    assert_eq!(status, 200, "node-1 owns the queue, node-3 runs it: {out}");

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (key, url) = (c.nodes[0].api_key.clone(), c.nodes[1].url.clone());
    let (calls, killed) = std::thread::scope(|s| {
        let load: Vec<_> = (0..4)
            .map(|t| {
                let (key, url, stop, dir) = (&key, &url, &stop, runs.path());
                s.spawn(move || sync_load(url, key, "far", dir, &format!("h{t}"), stop))
            })
            .collect();
        std::thread::sleep(Duration::from_secs(3));
        let killed = Instant::now();
        c.nodes[0].kill9();
        std::thread::sleep(Duration::from_secs(10));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (load.into_iter().flat_map(|h| h.join().unwrap()).collect::<Vec<Call>>(), killed)
    });
    let runs_of = |id: &str| std::fs::read_to_string(runs.path().join(id)).map_or(0, |s| s.lines().count());
    let ran_before = calls.iter().filter(|c| c.at < killed && c.status == 200).count();
    assert!(ran_before > 0, "nothing ran through the hosting node before the kill: {calls:?}");
    assert!(calls.iter().filter(|c| c.at < killed).all(|c| c.node.as_deref() == Some("node-3") || c.status != 200));
    let failed: Vec<&Call> = calls.iter().filter(|c| c.status != 200).collect();
    for f in &failed {
        assert_eq!((f.status, f.code.as_str()), (503, "node_lost"), "{f:?}");
    }
    assert!(failed.len() <= 4, "more failed than were in flight: {failed:?}");
    let twice: Vec<&str> = calls.iter().filter(|c| runs_of(&c.id) > 1).map(|c| c.id.as_str()).collect();
    assert!(twice.is_empty(), "ran twice: {twice:?}");
    let served_again = calls.iter().filter(|c| c.status == 200 && c.at > killed).map(|c| c.at - killed).min();
    let served_again = served_again.expect("the queue never served again after its owner was lost");
    eprintln!(
        "host kept, owner lost: {} calls ({ran_before} before the kill), {} failed node_lost, 0 ran twice, served \
         again {served_again:?} after the kill",
        calls.len(),
        failed.len()
    );
    assert!(served_again < Duration::from_secs(8), "{served_again:?}");
    // node-3, whose instances of it were warm, took the queue: calls through node-2 run there.
    let after: Vec<&str> =
        calls.iter().filter(|c| c.status == 200 && c.at > killed).filter_map(|c| c.node.as_deref()).collect();
    assert!(!after.is_empty() && after.iter().all(|n| *n == "node-3"), "{after:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, nodes) = c.nodes[1].get("/v1/nodes");
        let queues: Vec<u64> =
            nodes["nodes"].as_array().unwrap().iter().map(|n| n["queues"].as_u64().unwrap()).collect();
        if queues[1..] == [0, 1] {
            break;
        }
        assert!(Instant::now() < deadline, "node-3 is not shown owning the queue: {nodes}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Prepares `second` with the event's key, then works long enough for the prepared instance to be ready.
const PREPARING: &str = r#"
import time, stoke
def handler(event, context):
    stoke.prepare("second", {"key": event["key"]})
    time.sleep(event.get("work_s", 1.5))
    if event.get("fail"):
        raise RuntimeError("the execution fails before the prepared step")
    return {"key": event["key"], "from_first": True}
"#;

/// Started by `prepare`: waits for its turn and says what it was prepared with; otherwise echoes.
const PREPARED: &str = r#"
import stoke
def handler(event, context):
    params = stoke.prepared_params()
    if params is not None:
        try:
            event = stoke.wait_turn()
        except stoke.ReservationReleased as e:
            print("RELEASED: %s" % e.message)
            raise
    return {"prepared": params, "input": event}
"#;

/// The node and cold starts of each state of an execution's timeline, by state name.
fn steps_ran(node: &TestServer, id: &str) -> Vec<(String, Option<String>, u64)> {
    let (status, t) = node.get(&format!("/v1/executions/{id}/timeline"));
    assert_eq!(status, 200, "{t}");
    t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let name = s["state"].as_str().unwrap().to_string();
            (name, s["node"].as_str().map(str::to_string), s["cold_starts"].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn a_workflow_prepares_and_prewarms_its_steps_on_the_nodes_their_queues_owners_pick() {
    // node-1 owns the queues of `second` and `third` but has no room for one of their instances: its
    // controller places them on node-2, which pulls from node-1. The executions run on node-3.
    let Some(c) =
        Cluster::start_with(3, |i| if i == 0 { &["--max-memory-mb", "128", "--memory-overcommit", "1"] } else { &[] })
    else {
        return;
    };
    let (n1, n2, n3) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    python_fn(n2, "first", PREPARING, json!({"timeout_s": 30}));
    python_fn(n2, "second", PREPARED, json!({"timeout_s": 30, "memory_mb": 256}));
    python_fn(n2, "third", PREPARED, json!({"memory_mb": 256, "keep_alive_s": 1}));
    python_fn(
        n2,
        "slow",
        "import time\ndef handler(e, c):\n    time.sleep(3)\n    return e\n",
        json!({"timeout_s": 30}),
    );
    std::thread::sleep(Duration::from_secs(3)); // every node knows the others (placement's candidates)
    for f in ["second", "third"] {
        let resp = n1.req(Method::POST, &format!("/v1/functions/{f}/invoke")).json(&json!({})).send().unwrap();
        assert_eq!(resp.status(), 200, "{f}");
        assert_eq!(resp.headers()["x-stoke-node"], "node-2", "node-1 owns {f}'s queue and places it on node-2");
    }
    for (name, definition, prewarm) in [
        (
            "pair",
            json!({"StartAt": "First", "States": {
                "First": {"Type": "Task", "Resource": "first", "Next": "Second"},
                "Second": {"Type": "Task", "Resource": "second", "End": true}}}),
            "off",
        ),
        (
            "branch",
            json!({"StartAt": "First", "States": {
                "First": {"Type": "Task", "Resource": "first", "Next": "Pick"},
                "Pick": {"Type": "Choice", "Default": "Done",
                         "Choices": [{"Variable": "$.key", "StringEquals": "never", "Next": "Second"}]},
                "Second": {"Type": "Task", "Resource": "second", "End": true},
                "Done": {"Type": "Succeed"}}}),
            "off",
        ),
        (
            "warmed",
            json!({"StartAt": "Slow", "States": {
                "Slow": {"Type": "Task", "Resource": "slow", "Next": "Third"},
                "Third": {"Type": "Task", "Resource": "third", "End": true}}}),
            "eager",
        ),
    ] {
        let (status, body) =
            n1.post("/v1/workflows", json!({"name": name, "definition": definition, "prewarm": prewarm}));
        assert_eq!(status, 201, "{body}");
    }

    // `first` runs on node-3 and prepares `second`: node-1 reserves the instance, on node-2; the step that
    // reaches it runs on it, with its own preparation input, its turn relayed from node-1.
    let (status, e) = n3.post("/v1/workflows/pair/executions", json!({"input": {"key": "w1"}}));
    assert_eq!(status, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_string();
    let done = execution_done(n3, &id);
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let out = &done["output"];
    let out: Value = out.as_str().map_or_else(|| out.clone(), |s| serde_json::from_str(s).unwrap());
    assert_eq!(out["prepared"], json!({"key": "w1"}), "the step ran on the instance prepared for it: {out}");
    assert_eq!((&out["input"]["key"], &out["input"]["from_first"]), (&json!("w1"), &json!(true)), "{out}");
    let ran = steps_ran(n3, &id);
    assert_eq!(ran[0], ("First".into(), Some("node-3".into()), 1), "{ran:?}");
    assert_eq!((&ran[1].0, &ran[1].1), (&"Second".to_string(), &Some("node-2".to_string())), "{ran:?}");

    // An execution that takes another branch, or ends, without reaching the prepared step releases the
    // reservation at node-1; the instance on node-2 hears why from its wait for the turn.
    for (workflow, input, status, why) in [
        (
            "branch",
            json!({"key": "w2"}),
            "SUCCEEDED",
            "RELEASED: the execution took another branch at the Choice state \"Pick\"",
        ),
        ("pair", json!({"key": "w3", "fail": true}), "FAILED", "RELEASED: the execution ended"),
    ] {
        let (created, e) = n3.post(&format!("/v1/workflows/{workflow}/executions"), json!({ "input": input }));
        assert_eq!(created, 201, "{e}");
        let done = execution_done(n3, e["id"].as_str().unwrap());
        assert_eq!(done["status"], status, "{done}");
        // Its log line is on node-2, and any node's `logs` shows it, with the node that wrote it.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (got, logs) = n3.get("/v1/functions/second/logs");
            assert_eq!(got, 200, "{logs}");
            let lines = logs["lines"].as_array().unwrap();
            if let Some(line) = lines.iter().find(|l| l["text"].as_str().is_some_and(|t| t.contains(why))) {
                assert_eq!(line["node"], "node-2", "{line}");
                break;
            }
            assert!(Instant::now() < deadline, "the prepared instance on node-2 was not told ({why}): {logs}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // The pre-warmer on node-3 announces `third` to node-1, which has its instance started on node-2 while
    // `slow` runs: the step finds it warm.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, list) = n3.get("/v1/instances?function=third");
        if list["instances"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "third's instance outlived its keep-alive: {list}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = n2.call(n2.req(Method::PATCH, "/v1/functions/third").json(&json!({"keep_alive_s": 60})));
    assert_eq!(status, 200, "{body}");
    let (status, e) = n3.post("/v1/workflows/warmed/executions", json!({"input": {}}));
    assert_eq!(status, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_string();
    let done = execution_done(n3, &id);
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let ran = steps_ran(n3, &id);
    assert_eq!(ran[1], ("Third".into(), Some("node-2".into()), 0), "warmed ahead on node-2: {ran:?}");
}

/// A schedule made through one node fires once per time in the cluster, and goes on firing after that node
/// is killed: the other node reads the schedules again (every 30 s of the schedules' clock, here run 60
/// times as fast) and each fire is written once, whichever node writes it first.
#[test]
fn a_schedule_fires_once_in_the_cluster_and_goes_on_when_its_node_is_lost() {
    let since: &'static str = Box::leak(jiff::Timestamp::now().as_millisecond().to_string().into_boxed_str());
    let clock: &'static [&'static str] = Box::leak(
        vec![
            "--schedule-clock-start",
            "2027-01-01T00:00:00Z",
            "--schedule-clock-rate",
            "60",
            "--schedule-clock-since",
            since,
        ]
        .into_boxed_slice(),
    );
    let Some(mut c) = Cluster::start_with(2, |_| clock) else { return };
    let out = tempfile::tempdir().unwrap();
    let recorder = "import json, os\ndef handler(e, c):\n    open(os.path.join(os.environ['OUT'], c.aws_request_id), 'w').write(json.dumps(e))\n";
    python_fn(&c.nodes[1], "rec", recorder, json!({"environment": {"OUT": out.path()}}));
    let (status, s) = c.nodes[0].post(
        "/v1/schedules",
        json!({"name": "minutely", "expression": "rate(1 minute)",
               "target": {"function": "rec", "input": {"at": "<aws.scheduler.scheduled-time>"}}}),
    );
    assert_eq!(status, 201, "{s}");
    let fires = || -> Vec<String> {
        let mut at: Vec<String> = std::fs::read_dir(out.path())
            .unwrap()
            .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
            .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
            .map(|v| v["at"].as_str().unwrap_or_default().to_string())
            .collect();
        at.sort();
        at
    };
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while fires().len() < n {
            assert!(Instant::now() < deadline, "only {} fires: {:?}", fires().len(), fires());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for(3);
    c.nodes[0].kill9();
    let before = fires().len();
    wait_for(before + 4);
    let got = fires();
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(unique, got, "a fire ran twice");
    let (_, s) = c.nodes[1].get("/v1/schedules/minutely");
    assert!(s["fires"].as_u64().unwrap() >= got.len() as u64, "{s}");
}

/// A durable execution whose loop ran on a node that is lost is taken over by another: it resumes there when
/// its wait ends and finishes, each step having run once (the SDK replays the first from its checkpoint).
#[test]
fn a_lost_nodes_durable_execution_is_taken_over_and_finishes_on_another() {
    let Some(mut c) = Cluster::start(2) else { return };
    let Some(wheels) = durable_sdk("taking over a lost node's durable executions") else { return };
    let env = [("STOKE_DURABLE_WHEELS", wheels.as_path())];
    run_boto3_script_args(&c.nodes[0], "boto3_durable_resume.py", &["deploy"], &env);
    // Started on node-1, which runs its loop: a step, then a wait of 6 s, during which node-1 is lost.
    let out = run_boto3_script_args(&c.nodes[0], "boto3_durable_resume.py", &["start", "6"], &env);
    let arn = out.lines().find_map(|l| l.strip_prefix("execution: ")).unwrap_or_else(|| panic!("{out}"));
    let id = arn.rsplit('/').next().unwrap().to_string();
    let b = &c.nodes[1];
    let events = |node: &TestServer| -> Vec<String> {
        let (status, h) = node.get(&format!("/v1/durable-executions/{id}/history"));
        assert_eq!(status, 200, "{h}");
        h["events"].as_array().unwrap().iter().map(|e| e["EventType"].as_str().unwrap().to_string()).collect()
    };
    let started = Instant::now();
    while !events(b).iter().any(|e| e == "WaitStarted") {
        assert!(started.elapsed() < Duration::from_secs(60), "the execution never reached its wait: {:?}", events(b));
        std::thread::sleep(Duration::from_millis(100));
    }
    c.nodes[0].kill9();
    let killed = Instant::now();
    let b = &c.nodes[1];
    loop {
        let (status, x) = b.get(&format!("/v1/durable-executions/{id}"));
        assert_eq!(status, 200, "{x}");
        if x["status"] == "SUCCEEDED" {
            assert_eq!(x["result"], "{\"result\": 4}", "{x}");
            break;
        }
        assert_eq!(x["status"], "RUNNING", "{x}");
        assert!(killed.elapsed() < Duration::from_secs(60), "not finished on node-2: {x}");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("finished on node-2 {:?} after node-1 was killed", killed.elapsed());
    let kinds = events(b);
    let count = |k: &str| kinds.iter().filter(|e| *e == k).count();
    assert_eq!((count("StepStarted"), count("StepSucceeded")), (2, 2), "each step ran once: {kinds:?}");
    assert_eq!(count("WaitSucceeded"), 1, "{kinds:?}");
    // The timeline shows the resume on node-2.
    let (_, t) = b.get(&format!("/v1/durable-executions/{id}/timeline"));
    let last = t["steps"].as_array().unwrap().iter().rfind(|r| r["type"] == "Invocation").cloned();
    assert_eq!(last.as_ref().and_then(|r| r["node"].as_str()), Some("node-2"), "{t}");
}
