//! The lean sandbox against hostile functions: every attempt to reach the host, other instances or the
//! platform is contained, the limits hold, and the platform keeps serving other functions during and
//! after. Privileged (namespaces, mounts, cgroups): runs as root, and in CI it must.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn python_fn(s: &TestServer, name: &str, source: &str, mut extra: Value) {
    extra["runtime"] = json!("python3.11");
    common::python_fn(s, name, source, extra);
}

fn invoke(s: &TestServer, reference: &str, event: Value) -> (u16, Option<String>, Value) {
    invoke_within(s, reference, event, Duration::from_secs(60))
}

/// An invocation the client waits `wait` for (longer than the test client's 60 s, for a function whose
/// timeout is longer).
fn invoke_within(s: &TestServer, reference: &str, event: Value, wait: Duration) -> (u16, Option<String>, Value) {
    let resp =
        s.req(Method::POST, &format!("/v1/functions/{reference}/invoke")).json(&event).timeout(wait).send().unwrap();
    let status = resp.status().as_u16();
    let error = resp.headers().get("x-stoke-function-error").map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().unwrap();
    (status, error, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Attacks that return what happened; each one reports the exception it met or what it managed.
const HOSTILE: &str = r#"
import ctypes, errno, os, socket

libc = ctypes.CDLL(None, use_errno=True)

def attempt(fn):
    try:
        return {"ok": True, "value": fn()}
    except Exception as e:
        return {"ok": False, "error": type(e).__name__ + ": " + str(e)}

def read(path):
    with open(path, "rb") as f:
        return f.read(64).decode("latin-1")

def write(path):
    with open(path, "w") as f:
        f.write("owned")
    return "written"

def call(name, *args):
    rc = getattr(libc, name)(*args)
    return {"rc": rc, "errno": errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno())}

def handler(event, context):
    a = event["attack"]
    if a == "read_host":
        out = {p: attempt(lambda p=p: read(p)) for p in event["paths"]}
        out["pid"] = os.getpid()
        return out
    if a == "processes":
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        def cmdline(p):
            try:
                return open("/proc/%d/cmdline" % p, "rb").read().replace(b"\0", b" ").decode("latin-1")
            except OSError:
                return ""
        return {"pids": pids, "cmdlines": [cmdline(p) for p in pids],
                "kill_server": attempt(lambda: os.kill(event["server_pid"], 9))}
    if a == "write_readonly":
        return {p: attempt(lambda p=p: write(p)) for p in ["/var/task/app.py", "/var/task/new", "/usr/bin/owned", "/etc/passwd", "/owned", "/var/runtime/x"]}
    if a == "privileged_calls":
        return {
            "mount": call("mount", b"none", b"/tmp", b"tmpfs", 0, None),
            "umount": call("umount2", b"/proc", 2),
            "unshare_net": call("unshare", 0x40000000),
            "unshare_user": call("unshare", 0x10000000),
            "ptrace_init": call("ptrace", 16, 1, None, None),
            "chroot": call("chroot", b"/tmp"),
            "setuid_root": attempt(lambda: os.setuid(0)),
            "sethostname": call("sethostname", b"evil", 4),
        }
    if a == "proc_escape":
        return {
            "init_root": attempt(lambda: os.listdir("/proc/1/root/")),
            "host_shadow_via_proc": attempt(lambda: read("/proc/1/root/etc/shadow")),
            "sysrq": attempt(lambda: write("/proc/sysrq-trigger")),
            "core_pattern": attempt(lambda: write("/proc/sys/kernel/core_pattern")),
            "kcore": attempt(lambda: read("/proc/kcore")),
            "mounts": open("/proc/self/mounts").read(),
        }
    if a == "fork_bomb":
        children = []
        failure = None
        for _ in range(5000):
            try:
                pid = os.fork()
            except OSError as e:
                failure = e.strerror
                break
            if pid == 0:
                try:
                    os.execv("/bin/sleep", ["sleep", "30"])
                finally:
                    os._exit(0)
            children.append(pid)
        for pid in children:
            os.kill(pid, 9)
        for pid in children:
            os.waitpid(pid, 0)
        return {"forked": len(children), "failure": failure}
    if a == "memory_bomb":
        hog = []
        while True:
            hog.append(bytearray(16 * 1024 * 1024))
    if a == "fill_tmp":
        written = 0
        chunk = b"x" * (1024 * 1024)
        try:
            with open("/tmp/fill", "wb") as f:
                while written < 10 * 1024 * 1024 * 1024:
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
        except OSError as e:
            err = e.strerror
        os.remove("/tmp/fill")
        return {"written_mb": written // (1024 * 1024), "error": err}
    if a == "tmp":
        st, fs = os.stat("/tmp"), os.statvfs("/tmp")
        return {"dev": [os.major(st.st_dev), os.minor(st.st_dev)], "size_mb": fs.f_blocks * fs.f_frsize // 2**20,
                "free_mb": fs.f_bavail * fs.f_frsize // 2**20, "mode": oct(st.st_mode & 0o7777),
                "entries": os.listdir("/tmp")}
    if a == "whoami":
        status = {l.split(":")[0]: l.split(":")[1].strip() for l in open("/proc/self/status") if ":" in l}
        return {"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(), "hostname": socket.gethostname(),
                "caps": {k: status.get(k) for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]},
                # PR_GET_NO_NEW_PRIVS and PR_GET_SECCOMP: what the kernel (or gVisor's) enforces on this process.
                "no_new_privs": libc.prctl(39, 0, 0, 0, 0), "seccomp": libc.prctl(21, 0, 0, 0, 0),
                "task_root": os.environ["LAMBDA_TASK_ROOT"], "root": sorted(os.listdir("/")),
                "init": open("/proc/1/cmdline").read().replace("\0", " "), "pid": os.getpid()}
    raise ValueError("unknown attack " + a)
"#;

const ECHO: &str = "def handler(event, context):\n    return event\n";

/// Every attack runs against each way an instance can start: a lean instance set up for its function, a
/// lean generic instance (set up before its function was known, then given it), a lean instance forked from
/// a Python zygote (the hostile function then has a layer), an OCI bundle run by runc, by crun and by
/// gVisor's runsc, and a microVM (when installed; in CI they must be; the VM emulated where this host's KVM
/// cannot run a guest).
const SETUPS: [&[&str]; 8] = [
    &["--generic", "none"],
    &["--generic", "python=2,sandbox=2"],
    &["--generic", "none", "--zygotes", "2"],
    &["--sandbox", "oci", "--oci-runtime", "runc"],
    &["--sandbox", "oci", "--oci-runtime", "crun"],
    &["--sandbox", "oci", "--oci-runtime", "runsc"],
    &["--sandbox", "vm", "--vm-accel", "kvm"],
    // Emulated, a fork and exec costs ~60 ms: a smaller process limit stops the fork bomb within its timeout.
    &["--sandbox", "vm", "--pids-max", "128", "--vm-accel", "tcg"],
];

fn setups() -> Vec<&'static [&'static str]> {
    let installed = |tool: &str| std::process::Command::new(tool).arg("--version").output().is_ok();
    let kvm = stoke_testkit::vm::kvm_usable();
    SETUPS
        .iter()
        .copied()
        .filter(|s| match s.last() {
            Some(&runtime @ ("runc" | "crun" | "runsc")) => {
                present_or_skip(installed(runtime), runtime, "the oci sandbox")
            }
            Some(&"kvm") => kvm && vm_ready(),
            Some(&"tcg") => !kvm && vm_ready(),
            _ => true,
        })
        .collect()
}

/// The setup runs instances in a VM: the guest kernel is its own, with no seccomp filter or capability
/// bounding inside (the VM is the boundary), a process limit instead of a pids cgroup, and its own /proc.
fn vm(setup: &[&str]) -> bool {
    setup.contains(&"vm")
}

/// The setup runs instances in gVisor, whose kernel is its own (its `/proc` differs in places).
fn gvisor(setup: &[&str]) -> bool {
    setup.contains(&"runsc")
}

fn server(setup: &[&str]) -> TestServer {
    let mut args = vec!["--ephemeral-storage", "disk"];
    if !setup.contains(&"--sandbox") {
        args.extend(["--sandbox", "lean"]);
    }
    args.extend(setup);
    let s = TestServer::start_with(&args);
    if setup.contains(&"python=2,sandbox=2") {
        // Let the pool fill, so the hostile function's first instance is a generic one.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while s.get("/v1/instances").1["generic"]["python"] != 2 {
            assert!(std::time::Instant::now() < deadline, "the generic pool never filled");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut hostile = json!({"memory_mb": 1024, "timeout_s": hostile_timeout(setup).as_secs()});
    if setup.contains(&"--zygotes") {
        // A layer, and its zygote ready (started by another function's first instance), so every instance
        // of the hostile function is forked from it.
        let zip = zip_of(&[("python/shared_lib.py", b"VALUE = 42\n")]);
        let layer = json!({"code_base64": base64::engine::general_purpose::STANDARD.encode(zip)});
        assert_eq!(s.post("/v1/layers/lib/versions", layer).0, 201);
        python_fn(
            &s,
            "warmer",
            "import shared_lib\ndef handler(e, c):\n    return shared_lib.VALUE\n",
            json!({"layers": ["lib:1"]}),
        );
        assert_eq!(invoke(&s, "warmer", json!({})).2, json!(42));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while s.get("/v1/instances").1["zygotes"] != 1 {
            assert!(std::time::Instant::now() < deadline, "the zygote never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        hostile["layers"] = json!(["lib:1"]);
    }
    python_fn(&s, "hostile", HOSTILE, hostile.clone());
    // The least memory there is, and Lambda's default /tmp of 512 MB: four times as much.
    hostile["memory_mb"] = json!(128);
    python_fn(&s, "filler", HOSTILE, hostile);
    // A VM's cold start counts against the bystander's timeout too (seconds, when emulated).
    python_fn(&s, "bystander", ECHO, json!({"timeout_s": 60}));
    s
}

fn attack(s: &TestServer, name: &str, extra: Value) -> Value {
    let mut event = json!({"attack": name});
    for (k, v) in extra.as_object().unwrap() {
        event[k] = v.clone();
    }
    let (status, error, body) = invoke(s, "hostile", event);
    assert_eq!(status, 200, "{name}: {body}");
    assert_eq!(error, None, "{name}: {body}");
    // The platform still serves another function.
    assert_eq!(invoke(s, "bystander", json!({"after": name})).2, json!({"after": name}), "after {name}");
    body
}

fn refused(result: &Value, what: &str) {
    assert_eq!(result["ok"], json!(false), "{what} should have failed: {result}");
}

fn eperm(result: &Value, what: &str) {
    assert_eq!(result["rc"], json!(-1), "{what} should have failed: {result}");
    assert_eq!(result["errno"], json!("EPERM"), "{what}: {result}");
}

#[test]
fn a_lean_instance_runs_unprivileged_on_its_own_read_only_root() {
    if !privileged("lean instance identity") {
        return;
    }
    for setup in setups() {
        a_lean_instance_runs_unprivileged_on_its_own_read_only_root_on(&server(setup), gvisor(setup), vm(setup));
    }
}

fn a_lean_instance_runs_unprivileged_on_its_own_read_only_root_on(s: &TestServer, gvisor: bool, vm: bool) {
    let (status, list) = s.get("/v1/instances");
    assert_eq!(status, 200);
    assert!(matches!(list["sandbox"].as_str(), Some("lean" | "oci" | "vm")), "{list}");
    let me = attack(s, "whoami", json!({}));
    if list["zygotes"] == 1 {
        let init = me["init"].as_str().unwrap();
        assert!(init.contains("stoke_python_zygote.py") && me["pid"] == 1, "forked from the zygote: {me}");
    }
    assert_eq!((me["uid"].as_u64(), me["gid"].as_u64()), (Some(993), Some(990)), "{me}");
    assert_eq!(me["cwd"], "/var/task");
    assert_eq!(me["task_root"], "/var/task");
    assert_eq!(me["hostname"], "stoke");
    // No capabilities at all. gVisor's /proc/self/status has no CapAmb line (it has no ambient set). In a
    // VM the guest's bounding set stays (its kernel is the VM's own, and no new privileges can be gained).
    for (set, value) in me["caps"].as_object().unwrap() {
        let exempt = (gvisor && set == "CapAmb" && value.is_null()) || (vm && set == "CapBnd");
        if !exempt {
            assert_eq!(value, "0000000000000000", "no capabilities at all: {me}");
        }
    }
    // A VM's guest kernel has no system call filter: the boundary is the VM.
    let seccomp = if vm { 0 } else { 2 };
    assert_eq!((me["no_new_privs"].as_i64(), me["seccomp"].as_i64()), (Some(1), Some(seccomp)), "{me}");
    if vm {
        assert!(me["init"].as_str().unwrap().contains("/init"), "PID 1 is the guest's init: {me}");
    }
    let root: Vec<&str> = me["root"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for expected in ["dev", "etc", "opt", "proc", "tmp", "usr", "var"] {
        assert!(root.contains(&expected), "/ lacks {expected}: {root:?}");
    }
    for host_only in ["home", "boot", "srv", "mnt", "work"] {
        assert!(!root.contains(&host_only), "the host's /{host_only} is visible: {root:?}");
    }
}

#[test]
fn hostile_functions_cannot_read_or_write_the_host_or_see_its_processes() {
    if !privileged("host isolation") {
        return;
    }
    for setup in setups() {
        hostile_functions_cannot_read_or_write_the_host_or_see_its_processes_on(
            &server(setup),
            gvisor(setup),
            vm(setup),
        );
    }
}

fn hostile_functions_cannot_read_or_write_the_host_or_see_its_processes_on(s: &TestServer, gvisor: bool, vm: bool) {
    let credentials = s.dir.join("credentials.json");
    let paths = json!(["/etc/shadow", credentials.to_str().unwrap(), "/root/.bash_history", "/proc/1/environ"]);
    let read = attack(s, "read_host", json!({"paths": paths}));
    for p in paths.as_array().unwrap() {
        let p = p.as_str().unwrap();
        // In an OCI container and in an instance forked from a zygote, PID 1 is the function's runtime
        // itself: /proc/1/environ is its own (as it started: the container's, or the zygote's).
        // In gVisor, PID 1 is the reading process itself: /proc/1/environ is its own environment.
        if p == "/proc/1/environ" && read["pid"] == 1 {
            let environ = read[p]["value"].as_str().unwrap();
            assert!(gvisor || environ.contains("PATH=/usr/local/sbin"), "{read}");
            continue;
        }
        refused(&read[p], p);
    }

    let server_pid: u64 = serde_json::from_slice::<Value>(&std::fs::read(s.dir.join("server.json")).unwrap()).unwrap()
        ["pid"]
        .as_u64()
        .unwrap();
    let procs = attack(s, "processes", json!({"server_pid": server_pid}));
    let pids: Vec<u64> = procs["pids"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect();
    // A VM's /proc is its guest kernel's: its own threads and init, none of the host's.
    assert!((vm || pids.len() <= 3) && pids.contains(&1), "an instance sees only its own processes: {pids:?}");
    let cmdlines = procs["cmdlines"].as_array().unwrap();
    assert!(!cmdlines.iter().any(|c| c.as_str().unwrap().contains(" server --listen")), "the server: {cmdlines:?}");
    refused(&procs["kill_server"], "killing the server");

    let writes = attack(s, "write_readonly", json!({}));
    for (path, result) in writes.as_object().unwrap() {
        refused(result, path);
    }
    // The code on the host is untouched.
    let (_, f) = s.get("/v1/functions/hostile");
    let code = s.dir.join("run/code").join(f["code_sha256"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(code.join("app.py")).unwrap(), HOSTILE);
    assert!(!code.join("new").exists());
}

#[test]
fn hostile_functions_cannot_mount_trace_or_make_namespaces_or_escape_through_proc() {
    if !privileged("privileged calls") {
        return;
    }
    for setup in setups() {
        hostile_functions_cannot_mount_trace_or_make_namespaces_or_escape_through_proc_on(&server(setup));
    }
}

fn hostile_functions_cannot_mount_trace_or_make_namespaces_or_escape_through_proc_on(s: &TestServer) {
    let calls = attack(s, "privileged_calls", json!({}));
    for name in ["mount", "umount", "unshare_net", "unshare_user", "ptrace_init", "chroot", "sethostname"] {
        eperm(&calls[name], name);
    }
    refused(&calls["setuid_root"], "setuid(0)");

    let proc = attack(s, "proc_escape", json!({}));
    refused(&proc["host_shadow_via_proc"], "/proc/1/root/etc/shadow");
    refused(&proc["sysrq"], "/proc/sysrq-trigger");
    refused(&proc["core_pattern"], "/proc/sys/kernel/core_pattern");
    refused(&proc["kcore"], "/proc/kcore");
    // PID 1 of the instance is stoke's own init; its root is the instance's root, not the host's.
    if proc["init_root"]["ok"] == json!(true) {
        let listing: Vec<&str> =
            proc["init_root"]["value"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(!listing.contains(&"home") && !listing.contains(&"work"), "{listing:?}");
    }
    let mounts = proc["mounts"].as_str().unwrap();
    assert!(!mounts.contains("/work") && !mounts.contains(s.dir.to_str().unwrap()), "host paths leak: {mounts}");
}

#[test]
fn fork_bombs_memory_bombs_and_full_tmp_hit_the_limits_and_the_platform_keeps_serving() {
    if !privileged("resource limits") {
        return;
    }
    for setup in setups() {
        // Shown with a failure's message: which setup it was.
        println!("setup: {setup:?}");
        fork_bombs_memory_bombs_and_full_tmp_hit_the_limits_and_the_platform_keeps_serving_on(&server(setup), setup);
    }
}

/// The hostile function's timeout. Emulated, the fork bomb's 128 forks and execs (each ~60 ms alone) took
/// more than 30 s on a loaded two-core CI runner: the limit under test is the process limit, not the
/// timeout, so an emulated guest gets five minutes.
fn hostile_timeout(setup: &[&str]) -> Duration {
    Duration::from_secs(if setup.contains(&"tcg") { 300 } else { 30 })
}

fn fork_bombs_memory_bombs_and_full_tmp_hit_the_limits_and_the_platform_keeps_serving_on(
    s: &TestServer,
    setup: &[&str],
) {
    let gvisor = gvisor(setup);
    // Fork bomb: stopped by the PIDs limit, while another function keeps answering.
    let wait = hostile_timeout(setup) + Duration::from_secs(30);
    std::thread::scope(|scope| {
        let bomb = scope.spawn(move || invoke_within(s, "hostile", json!({"attack": "fork_bomb"}), wait));
        for i in 0..5 {
            assert_eq!(invoke(s, "bystander", json!({"during": i})).2, json!({"during": i}));
            std::thread::sleep(Duration::from_millis(50));
        }
        let (status, error, result) = bomb.join().unwrap();
        assert_eq!(status, 200, "{result}");
        if gvisor {
            // gVisor keeps no process limit of its own: the host's pids limit stops the sentry, which ends
            // the instance's whole sandbox; the next invocation gets a new one.
            assert_eq!(error.as_deref(), Some("Runtime.ExitError"), "{result}");
            assert_eq!(attack(s, "whoami", json!({}))["uid"], 993, "a new instance serves the function");
        } else {
            assert_eq!(error, None, "{result}");
            let forked = result["forked"].as_u64().unwrap();
            // In a VM the limit is the guest's per-user process limit, of the same size.
            assert!(forked < 1024, "the PIDs limit (1024) stops the bomb: {result}");
            assert!(result["failure"].is_string(), "fork failed in the end: {result}");
        }
        assert_eq!(invoke(s, "bystander", json!({"after": "fork_bomb"})).2, json!({"after": "fork_bomb"}));
    });

    // Memory bomb: killed at the function's memory size, reported as Lambda does.
    let (status, error, body) = invoke(s, "hostile", json!({"attack": "memory_bomb"}));
    assert_eq!(status, 200);
    assert_eq!(error.as_deref(), Some("Runtime.OutOfMemory"), "{body}");
    assert_eq!(body["errorType"], "Runtime.OutOfMemory");
    let logs = s.cli().args(["logs", "hostile"]).output().unwrap();
    let logs = String::from_utf8_lossy(&logs.stdout);
    let used: u64 = logs
        .lines()
        .rfind(|l| l.contains("REPORT"))
        .and_then(|l| l.split("Max Memory Used: ").nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no REPORT with memory in {logs}"));
    assert!((900..=1024).contains(&used), "Max Memory Used {used} MB is near the 1024 MB limit");
    assert_eq!(invoke(s, "bystander", json!({"after": "oom"})).2, json!({"after": "oom"}));

    // /tmp: Lambda's ephemeral storage, 512 MB by default, on a disk of the instance's own. A 128 MB
    // function fills all of it (none of it is memory), and the write past it fails with ENOSPC.
    let (status, error, tmp) = invoke(s, "filler", json!({"attack": "fill_tmp"}));
    assert_eq!((status, error.as_deref()), (200, None), "{tmp}");
    let written = tmp["written_mb"].as_u64().unwrap();
    assert!((512..600).contains(&written), "512 MB of /tmp, and no more, for a 128 MB function: {tmp}");
    assert!(tmp["error"].as_str().unwrap().contains("No space left"), "{tmp}");
    assert_eq!(invoke(s, "bystander", json!({"after": "tmp"})).2, json!({"after": "tmp"}));
}

/// The mount point, in the server's own mount namespace, of the file system on device `dev`
/// (`[major, minor]`) under `under`.
fn ephemeral_mount(s: &TestServer, dev: &Value, under: &std::path::Path) -> Option<String> {
    let info = std::fs::read_to_string(format!("/proc/{}/mountinfo", s.pid().unwrap())).unwrap();
    let id = format!("{}:{}", dev[0], dev[1]);
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f[2] == id && std::path::Path::new(f[4]).starts_with(under)).then(|| f[4].to_string())
    })
}

#[test]
fn ephemeral_storage_is_each_functions_size_on_a_disk_of_its_own_and_goes_with_its_instance() {
    if !privileged("ephemeral storage") {
        return;
    }
    // The disks on a file system of the operator's choosing (here a directory of the test's).
    let disks = tempfile::tempdir().unwrap();
    let under = disks.path().join("stoke-tmp");
    let s = TestServer::start_with(&[
        "--sandbox",
        "lean",
        "--generic",
        "none",
        "--ephemeral-storage",
        "disk",
        "--ephemeral-dir",
        disks.path().to_str().unwrap(),
    ]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.py"), HOSTILE).unwrap();
    let created = s
        .cli()
        .args(["fn", "create", "sized", "--runtime", "python3.11", "--handler", "app.handler", "--memory", "128"])
        .args(["--ephemeral-storage", "1024", "--code"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let shown = s.cli().args(["fn", "get", "sized"]).output().unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains("1024 MB"), "{}", String::from_utf8_lossy(&shown.stdout));

    let (_, _, first) = invoke(&s, "sized", json!({"attack": "tmp"}));
    assert_eq!(first["dev"][0], 7, "/tmp is a loop device's file system: {first}");
    let (size, free) = (first["size_mb"].as_u64().unwrap(), first["free_mb"].as_u64().unwrap());
    assert!((1024..1100).contains(&size) && free >= 1024, "df /tmp shows the function's 1024 MB: {first}");
    assert_eq!((first["mode"].as_str(), first["entries"].as_array().map(Vec::len)), (Some("0o1777"), Some(0)));
    let first_mount = ephemeral_mount(&s, &first["dev"], &under)
        .unwrap_or_else(|| panic!("no host mount of {first} under {under:?}"));

    // A new size takes effect with the next instance.
    let updated = s.cli().args(["fn", "update", "sized", "--ephemeral-storage", "600"]).output().unwrap();
    assert!(updated.status.success(), "{}", String::from_utf8_lossy(&updated.stderr));
    let (_, _, second) = invoke(&s, "sized", json!({"attack": "tmp"}));
    let size = second["size_mb"].as_u64().unwrap();
    assert!((600..660).contains(&size), "{second}");
    let second_mount = ephemeral_mount(&s, &second["dev"], &under).unwrap();
    assert_ne!(first_mount, second_mount);

    // Sizes outside Lambda's range are refused, and nothing changes.
    for bad in [511, 10_241] {
        let resp = s.call(s.req(Method::PATCH, "/v1/functions/sized").json(&json!({"ephemeral_storage_mb": bad})));
        assert_error(&resp, 400, "invalid_parameter", "between 512 and 10240 MB");
    }
    assert_eq!(s.get("/v1/functions/sized").1["ephemeral_storage_mb"], 600);

    // Each instance's disk goes with it: nothing of either is mounted once the function is gone.
    assert!(s.cli().args(["fn", "rm", "sized"]).status().unwrap().success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let info = std::fs::read_to_string(format!("/proc/{}/mountinfo", s.pid().unwrap())).unwrap();
        let left: Vec<&String> = [&first_mount, &second_mount]
            .into_iter()
            .filter(|m| info.lines().any(|l| l.split(' ').nth(4) == Some(m.as_str())))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still mounted after the instances ended: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Where the host cannot make disks, or the operator says so, /tmp is a tmpfs of the function's size.
    let s = TestServer::start_with(&["--sandbox", "lean", "--generic", "none", "--ephemeral-storage", "memory"]);
    python_fn(&s, "sized", HOSTILE, json!({"ephemeral_storage_mb": 2048}));
    let (_, _, tmp) = invoke(&s, "sized", json!({"attack": "tmp"}));
    assert_eq!((tmp["dev"][0].as_u64(), tmp["size_mb"].as_u64()), (Some(0), Some(2048)), "a tmpfs: {tmp}");
}

/// The freezer state of the instance whose helper is `helper_pid`: "FROZEN" / "THAWED" (v1) or
/// "frozen 1" / "frozen 0" (v2), read from the host.
fn freezer_state(helper_pid: u64) -> String {
    let children =
        std::fs::read_to_string(format!("/proc/{helper_pid}/task/{helper_pid}/children")).unwrap_or_default();
    let Some(init) = children.split_whitespace().next() else { return "gone".into() };
    let cgroups = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap_or_default();
    if let Some(path) = cgroups.lines().find_map(|l| l.split_once(":freezer:").map(|(_, p)| p.to_string())) {
        let file = format!("/sys/fs/cgroup/freezer{path}/freezer.state");
        return std::fs::read_to_string(file).unwrap_or_default().trim().to_string();
    }
    let path = cgroups.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or_default();
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if let Ok(events) = std::fs::read_to_string(format!("{root}{path}/cgroup.events")) {
            return events.lines().find(|l| l.starts_with("frozen ")).unwrap_or_default().to_string();
        }
    }
    "unknown".into()
}

#[test]
fn idle_instances_are_frozen_and_thawed_when_work_arrives() {
    if !privileged("freezer") {
        return;
    }
    let s = TestServer::start_with(&["--sandbox", "lean", "--freeze-after-ms", "200"]);
    let ticker = r#"
import threading, time
count = 0
def tick():
    global count
    while True:
        count += 1
        time.sleep(0.002)
threading.Thread(target=tick, daemon=True).start()
def handler(event, context):
    return count
"#;
    python_fn(&s, "ticker", ticker, json!({}));
    let (status, error, first) = invoke(&s, "ticker", json!({}));
    assert_eq!((status, error), (200, None), "{first}");
    let (_, list) = s.get("/v1/instances?function=ticker");
    let helper = list["instances"][0]["pid"].as_u64().expect("instance pid");
    let frozen = |state: &str| state == "FROZEN" || state == "frozen 1";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut state = freezer_state(helper);
    while !frozen(&state) {
        assert!(std::time::Instant::now() < deadline, "the idle instance was never frozen (state {state:?})");
        std::thread::sleep(Duration::from_millis(50));
        state = freezer_state(helper);
    }
    // Work thaws it: the invocation is served by the same instance, and its background thread ran again.
    let (status, error, second) = invoke(&s, "ticker", json!({}));
    assert_eq!((status, error), (200, None), "{second}");
    assert!(second.as_u64().unwrap() >= first.as_u64().unwrap(), "{first} then {second}");
    let after = freezer_state(helper);
    assert!(!frozen(&after), "thawed after dispatch, got {after:?}");
    let (_, list) = s.get("/v1/instances?function=ticker");
    assert_eq!(list["instances"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["instances"][0]["invocations"], 2);
}
