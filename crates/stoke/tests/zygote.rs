//! Python zygotes (SOCK): instances of Python functions with layers are forked from a parked interpreter
//! that imported the layers' packages before the function existed — and are still instances of their own:
//! unprivileged, filtered, in their own namespaces and limits. Against a real server. Privileged.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn invoke(s: &TestServer, function: &str, event: Value) -> (u16, Option<String>, Value) {
    let resp = s.req(Method::POST, &format!("/v1/functions/{function}/invoke")).json(&event).send().unwrap();
    let status = resp.status().as_u16();
    let error = resp.headers().get("x-stoke-function-error").map(|v| v.to_str().unwrap().to_string());
    (status, error, serde_json::from_str(&resp.text().unwrap()).unwrap_or(Value::Null))
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A layer package that takes a while to import and remembers when and where it was imported.
const HEAVY: &str = "import os, time\ntime.sleep(0.3)\nLOADED_AT = time.time()\nPID = os.getpid()\n";

/// Reports where the layer was imported and what the instance is.
const PROBE: &str = r#"
import os, socket, heavy
def handler(event, context):
    if event.get("write"):
        open("/tmp/mark", "w").write(event["write"])
    if event.get("allocate_mb"):
        hog = []
        for _ in range(event["allocate_mb"]):
            hog.append(bytearray(1024 * 1024))
    if event.get("sleep"):
        import time
        time.sleep(event["sleep"])
    status = {l.split(":")[0]: l.split(":")[1].strip() for l in open("/proc/self/status") if ":" in l}
    return {"loaded_at": heavy.LOADED_AT, "import_pid": heavy.PID, "pid": os.getpid(), "uid": os.getuid(),
            "gid": os.getgid(), "caps": [status[k] for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]],
            "no_new_privs": status["NoNewPrivs"], "seccomp": status["Seccomp"], "cwd": os.getcwd(),
            "task": sorted(os.listdir("/var/task")), "name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
            "mine": os.environ.get("MINE"), "mark": open("/tmp/mark").read() if os.path.exists("/tmp/mark") else None,
            "hostname": socket.gethostname(), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
"#;

fn server(zygotes: &str) -> TestServer {
    let s = TestServer::start_with(&["--sandbox", "lean", "--generic", "none", "--zygotes", zygotes]);
    let zip = zip_of(&[("python/heavy.py", HEAVY.as_bytes())]);
    let body = json!({"code_base64": base64::engine::general_purpose::STANDARD.encode(zip)});
    let (status, v) = s.post("/v1/layers/heavy/versions", body);
    assert_eq!(status, 201, "{v}");
    s
}

fn probe_fn(s: &TestServer, name: &str, extra: Value) {
    let mut config = json!({"runtime": "python3.12", "layers": ["heavy:1"], "environment": {"MINE": name}});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    python_fn(s, name, PROBE, config);
}

/// Waits until the node has `want` zygotes ready.
fn zygotes_ready(s: &TestServer, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, list) = s.get("/v1/instances");
        if list["zygotes"].as_u64() == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "the node never had {want} zygote(s) ready: {list}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the zygote of the `heavy` layer by running a first function with it (that instance starts the
/// usual way), and waits for it.
fn warm_zygote(s: &TestServer) -> Value {
    probe_fn(s, "first", json!({}));
    let (status, error, first) = invoke(s, "first", json!({}));
    assert_eq!((status, error), (200, None), "{first}");
    zygotes_ready(s, 1);
    first
}

fn processes(filter: impl Fn(u32, &str) -> bool) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            filter(*pid, &String::from_utf8_lossy(&cmdline).replace('\0', " "))
        })
        .collect()
}

fn parent(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
}

/// This server's zygote processes (the interpreters, not their helpers or the instances they forked).
fn zygote_pids(s: &TestServer) -> Vec<u32> {
    let helper = format!("--new-root {}", s.dir.join("run/root").display());
    processes(|pid, cmd| {
        cmd.contains("stoke_python_zygote.py") && !cmd.contains("__jail") && {
            let p = std::fs::read(format!("/proc/{}/cmdline", parent(pid))).unwrap_or_default();
            let p = String::from_utf8_lossy(&p).replace('\0', " ");
            p.contains("__jail") && p.contains(&helper)
        }
    })
}

#[test]
fn instances_fork_from_a_zygote_that_imported_their_layers_before_they_existed() {
    if !privileged("zygotes") {
        return;
    }
    let s = server("2");
    let first = warm_zygote(&s);
    assert!(first["loaded_at"].as_f64().unwrap() > 0.0, "{first}");
    // Functions created only now run on interpreters that imported the layer before.
    let created = now();
    probe_fn(&s, "one", json!({}));
    probe_fn(&s, "two", json!({}));
    let (status, error, one) = invoke(&s, "one", json!({"write": "one's"}));
    assert_eq!((status, error), (200, None), "{one}");
    let (status, error, two) = invoke(&s, "two", json!({}));
    assert_eq!((status, error), (200, None), "{two}");
    for (name, r) in [("one", &one), ("two", &two)] {
        assert!(r["loaded_at"].as_f64().unwrap() < created, "{name} imported the layer itself: {r}");
        assert_ne!(r["import_pid"], r["pid"], "{name}: the layer was imported by another process: {r}");
        // Still an instance of its own: PID 1 of its namespace, unprivileged, filtered.
        assert_eq!(r["pid"], 1, "{r}");
        assert_eq!(r["pids"], json!([1]), "{name} sees only itself: {r}");
        assert_eq!((r["uid"].as_u64(), r["gid"].as_u64()), (Some(993), Some(990)), "{r}");
        assert_eq!(r["caps"], json!(vec!["0000000000000000"; 5]), "no capabilities at all: {r}");
        assert_eq!((r["no_new_privs"].as_str(), r["seccomp"].as_str()), (Some("1"), Some("2")), "{r}");
        assert_eq!(r["cwd"], "/var/task");
        assert_eq!(r["task"], json!(["app.py"]), "{r}");
        assert_eq!(r["hostname"], "stoke");
        assert_eq!((r["name"].as_str(), r["mine"].as_str()), (Some(name), Some(name)), "its own environment: {r}");
    }
    // Each has its own /tmp.
    assert_eq!(one["mark"], "one's");
    assert_eq!(two["mark"], Value::Null, "{two}");
    // The one that started the zygote imported it itself, after being created.
    assert!(first["loaded_at"].as_f64().unwrap() < one["loaded_at"].as_f64().unwrap() + 60.0);
    let (_, list) = s.get("/v1/instances");
    assert_eq!(list["zygotes"], 1, "one zygote serves one layer set: {list}");
    assert_eq!(list["instances"].as_array().unwrap().len(), 3, "{list}");

    // A burst of new functions, more than the one instance forked ahead: every one is forked.
    let names: Vec<String> = (0..4).map(|i| format!("burst{i}")).collect();
    names.iter().for_each(|n| probe_fn(&s, n, json!({})));
    let created = now();
    std::thread::scope(|scope| {
        let runs: Vec<_> = names.iter().map(|n| scope.spawn(|| invoke(&s, n, json!({})))).collect();
        for (name, run) in names.iter().zip(runs) {
            let (status, error, r) = run.join().unwrap();
            assert_eq!((status, error), (200, None), "{name}: {r}");
            assert!(r["loaded_at"].as_f64().unwrap() < created, "{name} was not forked: {r}");
            assert_eq!(r["mine"].as_str(), Some(name.as_str()), "{r}");
        }
    });
}

#[test]
fn forked_instances_keep_their_limits_and_a_dead_zygote_is_replaced() {
    if !privileged("zygote limits") {
        return;
    }
    let s = server("1");
    warm_zygote(&s);
    // Memory: killed at the function's own size, reported as Lambda does; its limit is not the zygote's.
    probe_fn(&s, "hog", json!({"memory_mb": 128}));
    let (status, error, body) = invoke(&s, "hog", json!({"allocate_mb": 400}));
    assert_eq!(status, 200);
    assert_eq!(error.as_deref(), Some("Runtime.OutOfMemory"), "{body}");
    // Timeout: killed at the function's timeout.
    probe_fn(&s, "slow", json!({"timeout_s": 1}));
    let started = Instant::now();
    let (status, error, body) = invoke(&s, "slow", json!({"sleep": 5}));
    assert_eq!((status, error.as_deref()), (200, Some("Sandbox.Timedout")), "{body}");
    assert!(body["errorMessage"].as_str().unwrap_or_default().contains("Task timed out after 1.00 seconds"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(4), "killed at its timeout, not after the sleep");
    // Both still serve, from new forks.
    for name in ["hog", "slow"] {
        let (status, error, r) = invoke(&s, name, json!({}));
        assert_eq!((status, error), (200, None), "{name}: {r}");
        assert_eq!(r["pid"], 1, "{r}");
    }

    // A zygote that dies takes its instances with it; functions go on (started the usual way meanwhile)
    // and a new zygote takes over.
    let zygotes = zygote_pids(&s);
    assert_eq!(zygotes.len(), 1, "{zygotes:?}");
    let killed = std::process::Command::new("kill").args(["-9", &zygotes[0].to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.get("/v1/instances").1["zygotes"] != 0 {
        assert!(Instant::now() < deadline, "the dead zygote is still counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    probe_fn(&s, "after", json!({}));
    let created = now();
    let (status, error, after) = invoke(&s, "after", json!({}));
    assert_eq!((status, error), (200, None), "{after}");
    assert!(after["loaded_at"].as_f64().unwrap() > created, "started the usual way: {after}");
    zygotes_ready(&s, 1);
    probe_fn(&s, "later", json!({}));
    let created = now();
    let (status, error, later) = invoke(&s, "later", json!({}));
    assert_eq!((status, error), (200, None), "{later}");
    assert!(later["loaded_at"].as_f64().unwrap() < created, "forked from the new zygote: {later}");
    // The instances the dead zygote forked went with it; their functions still answer.
    let (status, error, hog) = invoke(&s, "hog", json!({}));
    assert_eq!((status, error), (200, None), "{hog}");
}

#[test]
fn without_zygotes_or_layers_instances_start_the_usual_way_and_nothing_outlives_the_server() {
    if !privileged("zygotes off") {
        return;
    }
    let s = server("0");
    probe_fn(&s, "a", json!({}));
    invoke(&s, "a", json!({}));
    probe_fn(&s, "b", json!({}));
    let created = now();
    let (status, error, b) = invoke(&s, "b", json!({}));
    assert_eq!((status, error), (200, None), "{b}");
    assert!(b["loaded_at"].as_f64().unwrap() > created, "imported by its own instance: {b}");
    assert_eq!(s.get("/v1/instances").1["zygotes"], 0);
    assert!(zygote_pids(&s).is_empty());
    drop(s);

    // A function without layers is not forked; one with them is, and a killed server leaves nothing.
    let mut s = server("1");
    python_fn(
        &s,
        "plain",
        "import os\ndef handler(e, c):\n    return os.getppid()\n",
        json!({"runtime": "python3.12"}),
    );
    let (status, error, _) = invoke(&s, "plain", json!({}));
    assert_eq!((status, error), (200, None));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.get("/v1/instances").1["zygotes"], 0, "no zygote for a function without layers");
    warm_zygote(&s);
    probe_fn(&s, "forked", json!({}));
    let (status, error, _) = invoke(&s, "forked", json!({}));
    assert_eq!((status, error), (200, None));
    let pid = serde_json::from_slice::<Value>(&std::fs::read(s.dir.join("server.json")).unwrap()).unwrap()["pid"]
        .as_u64()
        .unwrap();
    let pid = u32::try_from(pid).unwrap();
    let ours = move || {
        processes(move |p, cmd| {
            cmd.contains("stoke_python") && {
                let cg = std::fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap_or_default();
                cg.contains(&format!("stoke/s{pid}/"))
            }
        })
    };
    assert!(ours().len() >= 3, "the zygote and two instances run: {:?}", ours());
    s.kill9();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ours().is_empty() {
        assert!(Instant::now() < deadline, "a zygote or its instance outlived the server: {:?}", ours());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_zygote_settings_are_refused() {
    let out = std::process::Command::new(BIN).args(["server", "--zygotes", "65"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--zygotes") && err.contains("0..=64"), "{err}");
    let out = std::process::Command::new(BIN).args(["server", "--zygotes", "many"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'many'"));
}
