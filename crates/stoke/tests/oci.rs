//! The oci sandbox: functions as OCI bundles run by runc, crun and gVisor's runsc, with the lean sandbox's
//! layers, images and limits, and nothing left running when the server dies. Privileged; in CI the three
//! must be installed (scripts/prereqs installs them).

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::json;

fn runtimes() -> Vec<&'static str> {
    if !privileged("the oci sandbox") {
        return Vec::new();
    }
    let installed = |tool: &str| std::process::Command::new(tool).arg("--version").output().is_ok();
    ["runc", "crun", "runsc"].into_iter().filter(|r| present_or_skip(installed(r), r, "the oci sandbox")).collect()
}

const PROBE: &str = r#"
import os, shared
def handler(event, context):
    return {"value": shared.VALUE, "user": os.getuid(), "opt": sorted(os.listdir("/opt")),
            "env": os.environ.get("MINE"), "hostname": open("/etc/hostname").read().strip()}
"#;

#[test]
fn functions_run_as_oci_bundles_with_their_layers_and_limits() {
    for runtime in runtimes() {
        let s = TestServer::start_with(&["--sandbox", "oci", "--oci-runtime", runtime]);
        let (_, list) = s.get("/v1/instances");
        assert_eq!(list["sandbox"], "oci", "{list}");
        for (name, value) in [("base", "base"), ("top", "top")] {
            let zip = zip_of(&[("python/shared.py", format!("VALUE = {value:?}\n").as_bytes())]);
            let body = json!({"code_base64": base64::engine::general_purpose::STANDARD.encode(zip)});
            assert_eq!(s.post(&format!("/v1/layers/{name}/versions"), body).0, 201);
        }
        python_fn(&s, "probe", PROBE, json!({"layers": ["base:1", "top:1"], "environment": {"MINE": "m"}}));
        let (status, err, out) = invoke_function(&s, "probe", json!({}));
        assert_eq!((status, err), (200, None), "{runtime}: {out}");
        assert_eq!(out["value"], "top", "{runtime}: the later layer wins: {out}");
        assert_eq!((out["user"].as_u64(), out["env"].as_str()), (Some(993), Some("m")), "{runtime}: {out}");
        assert_eq!(out["opt"], json!(["python"]), "{runtime}: {out}");
        assert_eq!(out["hostname"], "stoke", "{runtime}: {out}");
        // Warm: the same container answers again.
        assert_eq!(invoke_function(&s, "probe", json!({})).0, 200);
        let (_, list) = s.get("/v1/instances?function=probe");
        assert_eq!(list["instances"].as_array().unwrap().len(), 1, "{runtime}: {list}");

        // A provided function, and network none refused with the reason.
        rust_echo_fn(&s, "rusty");
        let (status, err, out) = invoke_function(&s, "rusty", json!({"x": 1}));
        assert_eq!((status, err), (200, None), "{runtime}: {out}");
        assert_eq!(out["echo"], json!({"x": 1}));
        let mut body = create_body("sealed", &python_zip("x"));
        body["network"] = json!("none");
        assert_error(&s.post("/v1/functions", body), 400, "invalid_parameter", "lean sandbox");
    }
}

/// Processes of the host whose command line holds `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
        })
        .collect()
}

#[test]
fn nothing_an_instance_started_outlives_a_killed_server() {
    let mut setups: Vec<Vec<&str>> =
        runtimes().into_iter().map(|r| vec!["--sandbox", "oci", "--oci-runtime", r]).collect();
    if privileged("the lean sandbox") {
        setups.push(vec!["--sandbox", "lean"]);
    }
    for mut setup in setups {
        // Idle instances are frozen soon: a frozen process keeps even a SIGKILL pending until thawed.
        setup.extend(["--freeze-after-ms", "100"]);
        let mut s = TestServer::start_with(&setup);
        let token = format!("stoke-survivor-{}", std::process::id());
        let code = format!(
            "import subprocess\nchild = subprocess.Popen(['/bin/sh', '-c', 'sleep 300; true', '{token}'])\ndef handler(e, c):\n    return child.pid\n"
        );
        python_fn(&s, "spawner", &code, json!({}));
        let (status, err, out) = invoke_function(&s, "spawner", json!({}));
        assert_eq!((status, err), (200, None), "{setup:?}: {out}");
        // gVisor's guest processes are its sentry's, not the host's: look for the sandbox's own processes
        // (runsc, its gofer and sandbox carry the container's id, stoke-<server pid>-<instance>).
        let token = if setup.contains(&"runsc") { format!("stoke-{}-", s.pid().unwrap()) } else { token };
        assert!(!processes_with(&token).is_empty(), "{setup:?}: the function's child runs");
        std::thread::sleep(Duration::from_millis(600));
        s.kill9();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !processes_with(&token).is_empty() {
            assert!(Instant::now() < deadline, "{setup:?}: a function's process outlived the server");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The Lambda clients run unchanged in each OCI runtime, gVisor's included: stoke's Python and Node
/// runtimes, the Rust `lambda_runtime` crate and AWS's own Python client (`awslambdaric`) each answer, report
/// a handler's error as Lambda does, and keep their instance warm for the next invocation.
#[test]
fn lambda_clients_run_unchanged_in_each_runtime() {
    let ric = python_with("awslambdaric");
    present_or_skip(ric.is_some(), "awslambdaric", "awslambdaric in the oci sandbox");
    for runtime in runtimes() {
        let s = TestServer::start_with(&["--sandbox", "oci", "--oci-runtime", runtime]);
        lambda_clients_answer(&s, runtime, ric.as_deref(), 10);
    }
}

/// A gVisor platform is checked at start: runsc refusing it, or a runtime that is not runsc, stops the
/// server with a sentence that says why; the flag alone, without a runtime named, is a usage error.
#[test]
fn a_gvisor_platform_the_runtime_cannot_take_stops_start_up() {
    let runtimes = runtimes();
    let cases = [
        ("runsc", "no-such-platform", "runsc refused the platform \"no-such-platform\""),
        ("runc", "ptrace", "--runsc-platform applies to gVisor's runsc"),
    ];
    for (runtime, platform, needle) in cases.into_iter().filter(|(r, _, _)| runtimes.contains(r)) {
        let data = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(BIN)
            .args(["server", "--listen", "127.0.0.1:0", "--sandbox", "oci", "--oci-runtime", runtime])
            .args(["--runsc-platform", platform, "--data-dir"])
            .arg(data.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{runtime} with platform {platform} must not start");
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
    let out = std::process::Command::new(BIN).args(["server", "--runsc-platform", "ptrace"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--oci-runtime"), "{}", String::from_utf8_lossy(&out.stderr));
}
