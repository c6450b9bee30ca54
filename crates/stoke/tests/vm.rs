//! The vm sandbox: each instance in a QEMU microVM of its own, with the other sandboxes' layers, limits,
//! logs and reports, and nothing to reach but its Runtime API. Privileged; in CI QEMU, the guest kernel and
//! busybox-static must be installed (scripts/prereqs installs them). Where this host's KVM cannot run a
//! guest (no /dev/kvm, or PVM's), the VMs are emulated (`--vm-accel tcg`): correct, seconds per cold start.
//! The security suite (sandbox.rs) runs on it as on every sandbox.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use reqwest::Method;
use serde_json::json;

const PROBE: &str = r#"
import os, platform, socket, shared

def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "connected"
    except OSError as e:
        return type(e).__name__

def handler(event, context):
    print("probe says hello")
    mem = {l.split(":")[0]: l.split()[1] for l in open("/proc/meminfo")}
    api_host, api_port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
    return {"value": shared.VALUE, "user": os.getuid(), "opt": sorted(os.listdir("/opt")),
            "env": os.environ.get("MINE"), "hostname": socket.gethostname(), "kernel": platform.release(),
            "mem_total_kb": int(mem["MemTotal"]), "tmp_dev": os.stat("/tmp").st_dev != os.stat("/").st_dev,
            "runtime_api": reach(api_host, int(api_port)),
            "modprobe": open("/proc/sys/kernel/modprobe").read().strip(),
            "host_api": reach("10.0.2.2", event["server_port"]),
            "loopback_api": reach("127.0.0.1", event["server_port"]),
            "internet": reach("1.1.1.1", 53)}
"#;

#[test]
fn functions_run_in_vms_of_their_own_with_layers_limits_and_only_their_runtime_api_to_reach() {
    if !vm_ready() {
        return;
    }
    let s = TestServer::start_with(&vm_args());
    let (_, list) = s.get("/v1/instances");
    assert_eq!(list["sandbox"], "vm", "{list}");
    for (name, value) in [("base", "base"), ("top", "top")] {
        let zip = zip_of(&[("python/shared.py", format!("VALUE = {value:?}\n").as_bytes())]);
        let body = json!({"code_base64": base64::engine::general_purpose::STANDARD.encode(zip)});
        assert_eq!(s.post(&format!("/v1/layers/{name}/versions"), body).0, 201);
    }
    let extra = json!({"layers": ["base:1", "top:1"], "environment": {"MINE": "m"}, "memory_mb": 256,
                       "timeout_s": 60});
    python_fn(&s, "probe", PROBE, extra);
    let port = s.url.rsplit(':').next().unwrap().trim_end_matches('/').parse::<u16>().unwrap();
    let (status, err, out) = invoke_function(&s, "probe", json!({"server_port": port}));
    assert_eq!((status, err), (200, None), "{out}");
    assert_eq!(out["value"], "top", "the later layer wins: {out}");
    assert_eq!((out["user"].as_u64(), out["env"].as_str()), (Some(993), Some("m")), "{out}");
    assert_eq!(out["opt"], json!(["python"]), "{out}");
    assert_eq!(out["hostname"], "stoke", "{out}");
    // Its memory is the VM's: 256 MB, less what the guest kernel keeps.
    let mem = out["mem_total_kb"].as_u64().unwrap();
    assert!((150_000..=262_144).contains(&mem), "MemTotal {mem} kB in a 256 MB VM: {out}");
    assert_eq!(out["tmp_dev"], true, "/tmp is a disk of its own: {out}");
    assert_eq!(out["modprobe"], "", "the guest loads no kernel module on demand: {out}");
    // Its only peer is its own Runtime API: not the server's API on the host, nor anything beyond.
    assert_eq!(out["runtime_api"], "connected", "{out}");
    for peer in ["host_api", "loopback_api", "internet"] {
        assert_ne!(out[peer], "connected", "{peer}: {out}");
    }
    // Logs and the REPORT come out as on every sandbox.
    let logs = s.cli().args(["logs", "probe"]).output().unwrap();
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.contains("probe says hello"), "{logs}");
    assert!(logs.contains("Max Memory Used") && logs.contains("Init Duration"), "{logs}");
    // Warm: the same VM answers again.
    assert_eq!(invoke_function(&s, "probe", json!({"server_port": port})).0, 200);
    let (_, list) = s.get("/v1/instances?function=probe");
    assert_eq!(list["instances"].as_array().unwrap().len(), 1, "{list}");

    // A provided function, and network none (a VM has no network but its Runtime API anyway).
    rust_echo_fn(&s, "rusty");
    let (status, patched) =
        s.call(s.req(Method::PATCH, "/v1/functions/rusty").json(&json!({"timeout_s": 60, "network": "none"})));
    assert_eq!(status, 200, "{patched}");
    let (status, err, out) = invoke_function(&s, "rusty", json!({"x": 1}));
    assert_eq!((status, err), (200, None), "{out}");
    assert_eq!(out["echo"], json!({"x": 1}));
}

/// Every Lambda client runs unchanged in a VM.
#[test]
fn lambda_clients_run_unchanged_in_a_vm() {
    if !vm_ready() {
        return;
    }
    let ric = python_with("awslambdaric");
    present_or_skip(ric.is_some(), "awslambdaric", "awslambdaric in the vm sandbox");
    let s = TestServer::start_with(&vm_args());
    lambda_clients_answer(&s, "vm", ric.as_deref(), 60);
}

#[test]
fn a_vm_that_runs_past_its_timeout_is_killed_and_the_next_invocation_gets_a_new_one() {
    if !vm_ready() {
        return;
    }
    let s = TestServer::start_with(&vm_args());
    let sleeper = "import time\ndef handler(event, context):\n    time.sleep(event['s'])\n    return 'woke'\n";
    python_fn(&s, "sleeper", sleeper, json!({"timeout_s": 20}));
    // Warm first: the cold start counts against the timeout.
    assert_eq!(invoke_function(&s, "sleeper", json!({"s": 0})).2, json!("woke"));
    let (_, list) = s.get("/v1/instances?function=sleeper");
    let qemu = list["instances"][0]["pid"].as_u64().unwrap();
    let started = Instant::now();
    let (status, err, out) = invoke_function(&s, "sleeper", json!({"s": 120}));
    assert_eq!((status, err.as_deref()), (200, Some("Sandbox.Timedout")), "{out}");
    assert!(started.elapsed() < Duration::from_secs(60), "stopped at its timeout");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{qemu}")).exists() {
        assert!(Instant::now() < deadline, "the timed-out VM (QEMU {qemu}) is still running");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(invoke_function(&s, "sleeper", json!({"s": 0})).2, json!("woke"), "a new VM serves it");
}

#[test]
fn the_vm_sandbox_refuses_to_start_without_what_it_needs_and_says_what_to_do() {
    let start = |args: &[&str]| {
        let data = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(BIN)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must not start");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for flags in [["--vm-accel", "tcg"], ["--vm-snapshots", "false"]] {
        let err = start(&flags);
        assert!(err.contains("--sandbox vm"), "the VM flags name their sandbox: {err}");
    }
    if !vm_ready() {
        return;
    }
    let err = start(&["--sandbox", "vm", "--vm-accel", "tcg", "--vm-kernel", "/nonexistent/vmlinuz-0.0-none"]);
    assert!(err.contains("/nonexistent/vmlinuz-0.0-none") && err.contains("/lib/modules"), "{err}");
    if !stoke_testkit::vm::kvm_usable() {
        // This host's KVM cannot run a guest: asked for it, the server says why and how to go on.
        let err = start(&["--sandbox", "vm"]);
        assert!(err.contains("/dev/kvm") || err.contains("kvm_pvm"), "{err}");
        assert!(err.contains("--vm-accel tcg"), "{err}");
    }
}

#[test]
fn vms_idle_stopped_or_busy_die_with_the_server() {
    if !vm_ready() {
        return;
    }
    let mut args = vm_args().to_vec();
    args.extend(["--freeze-after-ms", "200"]);
    let mut s = TestServer::start_with(&args);
    let sleeper = "import time\ndef handler(event, context):\n    time.sleep(event['s'])\n    return 'woke'\n";
    python_fn(&s, "idle", sleeper, json!({"timeout_s": 60}));
    python_fn(&s, "busy", sleeper, json!({"timeout_s": 60}));
    assert_eq!(invoke_function(&s, "idle", json!({"s": 0})).2, json!("woke"));
    let pid_of = |s: &TestServer, f: &str| {
        s.get(&format!("/v1/instances?function={f}")).1["instances"][0]["pid"].as_u64().unwrap()
    };
    let idle = pid_of(&s, "idle");
    // Stopped while idle (a SIGSTOP, which a parent-death SIGKILL still ends), resumed by work.
    let stopped = |pid: u64| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|st| st.rsplit(')').next().unwrap().split_whitespace().next() == Some("T"))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stopped(idle) {
        assert!(Instant::now() < deadline, "the idle VM (QEMU {idle}) was never stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(invoke_function(&s, "idle", json!({"s": 0})).2, json!("woke"), "resumed by work");
    let busy_call = {
        let (url, key) = (s.url.clone(), s.api_key.clone());
        std::thread::spawn(move || {
            let _ = reqwest::blocking::Client::new()
                .post(format!("{url}/v1/functions/busy/invoke"))
                .bearer_auth(key)
                .json(&json!({"s": 50}))
                .send();
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.get("/v1/instances?function=busy").1["instances"][0]["state"] != "busy" {
        assert!(Instant::now() < deadline, "the busy function never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    let busy = pid_of(&s, "busy");
    while !stopped(idle) {
        assert!(Instant::now() < deadline, "the idle VM was never stopped again");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.kill9();
    let deadline = Instant::now() + Duration::from_secs(10);
    for pid in [idle, busy] {
        // A process the kernel has killed may linger as a zombie of init: gone means not running.
        let running = |pid: u64| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|st| st.rsplit(')').next().unwrap().split_whitespace().next() != Some("Z"))
        };
        while running(pid) {
            assert!(Instant::now() < deadline, "QEMU {pid} outlived the server");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = busy_call.join();
}

const WHERE: &str = r#"
import os
def handler(event, context):
    task = [l.split() for l in open("/proc/self/mountinfo") if l.split()[4] == "/var/task"]
    return {"task_root_in_share": task[0][3], "listing": sorted(os.listdir("/var/task")),
            "slot": sorted(os.listdir("/stoke/slot")) if os.path.isdir("/stoke/slot") else None,
            "port": os.environ["AWS_LAMBDA_RUNTIME_API"]}
"#;

/// Generic VMs are booted before their function is known and given it at its first invocation: a 128 MB
/// function with the default /tmp runs in one (its code bound from the VM's slot), another size starts a
/// VM of its own, and the pool refills.
#[test]
fn a_generic_vm_booted_ahead_takes_a_function_of_its_size() {
    if !vm_ready() {
        return;
    }
    let mut args = vm_args().to_vec();
    args.extend(["--generic", "sandbox=1"]);
    let s = TestServer::start_with(&args);
    let ready = |s: &TestServer| s.get("/v1/instances").1["generic"]["sandbox"].as_u64() == Some(1);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(&s) {
        assert!(Instant::now() < deadline, "the generic VM never became ready: {}", s.get("/v1/instances").1);
        std::thread::sleep(Duration::from_millis(100));
    }
    python_fn(&s, "small", WHERE, json!({"memory_mb": 128, "timeout_s": 60}));
    python_fn(&s, "large", WHERE, json!({"memory_mb": 256, "timeout_s": 60}));
    let (status, err, small) = invoke_function(&s, "small", json!({}));
    assert_eq!((status, err), (200, None), "{small}");
    assert_eq!(small["task_root_in_share"], "/task", "its code was bound from a generic VM's slot: {small}");
    assert_eq!(small["listing"], json!(["app.py"]), "{small}");
    assert_eq!(small["slot"], json!([]), "the slot itself is unmounted (an empty directory): {small}");
    let (status, err, large) = invoke_function(&s, "large", json!({}));
    assert_eq!((status, err), (200, None), "{large}");
    assert_eq!(large["task_root_in_share"], "/", "a 256 MB function gets a VM of its own: {large}");
    // The pool refills, and the next one serves another function, with its own Runtime API endpoint.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(&s) {
        assert!(Instant::now() < deadline, "the pool never refilled: {}", s.get("/v1/instances").1);
        std::thread::sleep(Duration::from_millis(100));
    }
    python_fn(&s, "other", WHERE, json!({"memory_mb": 128, "timeout_s": 60}));
    let (status, err, other) = invoke_function(&s, "other", json!({}));
    assert_eq!((status, err), (200, None), "{other}");
    assert_eq!(other["task_root_in_share"], "/task", "{other}");
    assert_eq!(invoke_function(&s, "small", json!({})).0, 200, "the first one is still warm");
}

/// Reports how its VM came up: the snapshot it was restored from (none when booted), its clock, fresh
/// random bytes, its code and a `/tmp` it can write.
const RESTORED: &str = r#"
import os, time

def handler(event, context):
    restored = open("/stoke/restored").read().strip() if os.path.exists("/stoke/restored") else None
    with open("/tmp/mine", "w") as f:
        f.write(context.function_name)
    return {"restored": restored, "time": time.time(), "random": os.urandom(16).hex(),
            "code": len(open("/var/task/app.py").read()),
            "tmp": sorted(os.listdir("/tmp")), "name": context.function_name}
"#;

/// A `provided` runtime whose first act is to draw 16 random bytes, which it answers every invocation
/// with (the Runtime API loop in the host's Python, after the draw).
const EARLY_RANDOM: &str = r#"#!/bin/sh
r=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
exec /usr/bin/python3 -c '
import json, os, sys, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
    body = json.dumps({"random": sys.argv[1]}).encode()
    urllib.request.urlopen(urllib.request.Request(api + rid + "/response", data=body, method="POST")).read()
' "$r"
"#;

/// Once a VM of a shape has booted, one of that shape is saved in the background; later VMs of the shape
/// are restored from it, each with the host's time, random numbers of its own, its own code and `/tmp`.
/// `--vm-snapshots false` boots every VM.
#[test]
fn vms_are_restored_from_a_snapshot_with_the_hosts_clock_their_own_randomness_code_and_tmp() {
    if !vm_ready() {
        return;
    }
    let s = TestServer::start_with(&vm_args());
    for name in ["first", "second", "third"] {
        python_fn(&s, name, RESTORED, json!({"memory_mb": 128, "timeout_s": 60}));
    }
    let run = |s: &TestServer, name: &str| {
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let (status, err, out) = invoke_function(s, name, json!({}));
        let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert_eq!((status, err), (200, None), "{name}: {out}");
        let t = out["time"].as_f64().unwrap();
        // The clock a restored guest is given is the host's, less the time its console took to deliver the
        // script (a stale one would be as far behind as the snapshot is old: at least 3 s, below).
        assert!(before - 1.0 <= t && t <= after + 0.5, "{name}'s clock {t} is not the host's ({before}..{after})");
        let code = (out["code"].as_u64(), out["name"].as_str());
        assert_eq!(code, (Some(RESTORED.len() as u64), Some(name)), "its own code: {out}");
        assert_eq!(out["tmp"], json!(["mine"]), "a /tmp of its own, written: {out}");
        out
    };
    let first = run(&s, "first");
    assert_eq!(first["restored"], json!(null), "the first VM of its shape boots: {first}");
    // The snapshot is saved in the background after that boot; the node lists it once VMs are restored
    // from it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while s.get("/v1/instances").1["snapshots"] != json!(["128m-1c-512t"]) {
        assert!(Instant::now() < deadline, "no snapshot was saved: {}", s.get("/v1/instances").1);
        std::thread::sleep(Duration::from_millis(100));
    }
    let state = s.dir.join("run/vm/snapshots/128m-1c-512t/state");
    assert!(state.is_file(), "saved in the run directory: {}", state.display());
    // Old enough that a restored guest left with the saved clock would be seconds behind.
    std::thread::sleep(Duration::from_secs(3));
    let second = run(&s, "second");
    let third = run(&s, "third");
    for out in [&second, &third] {
        assert_eq!(out["restored"], "128m-1c-512t", "restored from the snapshot: {out}");
    }
    let randoms = [&first, &second, &third].map(|o| o["random"].as_str().unwrap().to_string());
    assert!(
        randoms[0] != randoms[1] && randoms[1] != randoms[2] && randoms[0] != randoms[2],
        "each VM draws its own random numbers: {randoms:?}"
    );
    assert_eq!(run(&s, "second")["restored"], "128m-1c-512t", "and stays warm");
    // The first thing a restored VM's runtime does: draw random bytes. Without the restore's reseed, VMs
    // restored from one snapshot draw the same bytes until the guest kernel's own next reseed (measured
    // by hand: identical right after the restore, different 0.5 s later). On KVM a runtime draws well
    // inside that window; emulated, the kernel's own reseed usually comes first.
    let early: Vec<String> = ["early-1", "early-2"]
        .iter()
        .map(|name| {
            let zip = base64::engine::general_purpose::STANDARD.encode(bootstrap_zip(EARLY_RANDOM.as_bytes()));
            let body = json!({"name": name, "runtime": "provided.al2023", "code_base64": zip, "timeout_s": 60});
            assert_eq!(s.post("/v1/functions", body).0, 201);
            let (status, err, out) = invoke_function(&s, name, json!({}));
            assert_eq!((status, err), (200, None), "{name}: {out}");
            out["random"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(early[0].len(), 32, "{early:?}");
    assert_ne!(early[0], early[1], "VMs restored from one snapshot draw their own random numbers from the start");
    drop(s);

    let mut args = vm_args().to_vec();
    args.extend(["--vm-snapshots", "false"]);
    let s = TestServer::start_with(&args);
    python_fn(&s, "first", RESTORED, json!({"memory_mb": 128, "timeout_s": 60}));
    python_fn(&s, "second", RESTORED, json!({"memory_mb": 128, "timeout_s": 60}));
    assert_eq!(run(&s, "first")["restored"], json!(null));
    assert_eq!(run(&s, "second")["restored"], json!(null), "without snapshots every VM boots");
    assert_eq!(s.get("/v1/instances").1.get("snapshots"), None, "none listed");
    let snapshots = std::fs::read_dir(s.dir.join("run/vm/snapshots")).unwrap().count();
    assert_eq!(snapshots, 0, "none saved");
}
