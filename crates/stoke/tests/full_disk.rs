//! A full disk: the data directory on a small file system (a tmpfs of 32 MiB the test mounts) fills up
//! while functions are created and Event invocations accepted. Every write that cannot be made is refused
//! with a retryable 507 `insufficient_storage` (503 on the Lambda API), nothing accepted is lost, the store
//! is not corrupted, and the server recovers by itself once space is freed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A tmpfs mounted for the test, unmounted when dropped.
struct SmallFs(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl SmallFs {
    fn mount(size_mb: u32) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "stoke-full-disk-test"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount a tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        SmallFs(path, dir)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn eventually(what: &str, wait: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + wait;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {wait:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn marks(dir: &Path) -> Vec<u64> {
    let mut seen: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("ran-")?.parse().ok())
        .collect();
    seen.sort_unstable();
    seen
}

/// Records each event it ran as a file in the event's `mark` directory.
const COUNTER: &str = "import os\ndef handler(event, context):\n    open(os.path.join(event['mark'], 'ran-%d' % event['n']), 'w').close()\n    return event['n']\n";

#[test]
fn a_full_disk_refuses_writes_with_507_loses_nothing_accepted_and_recovers_by_itself() {
    if !privileged("full disk (mounts a tmpfs)") {
        return;
    }
    if !present_or_skip(
        Command::new("python3").args(["-c", "import boto3"]).output().is_ok_and(|o| o.status.success()),
        "boto3",
        "full disk",
    ) {
        return;
    }
    let fs = SmallFs::mount(32);
    let fill = fs.0.join("filler");
    std::fs::create_dir(&fill).unwrap();
    let mark = tempfile::tempdir().unwrap();
    // The process sandbox: the function records each event it ran in `mark`, outside the small file system.
    let mut s = TestServer::start_in(&fs.0, &["--sandbox", "process"]);
    python_fn(&s, "counter", COUNTER, json!({}));
    // "lazy" is never invoked before the disk is full: its 2 MiB of code cannot be unpacked then.
    let mut lazy = create_body("lazy", &zip_of(&[("app.py", COUNTER.as_bytes()), ("pad.bin", &noise(7, 2 << 20))]));
    lazy["handler"] = json!("app.handler");
    assert_eq!(s.post("/v1/functions", lazy).0, 201);
    // The counter's code is unpacked while there is room.
    let (status, body) = s.post("/v1/functions/counter/invoke", json!({"n": 0, "mark": mark.path()}));
    assert_eq!(status, 200, "{body}");

    let creds: Value = serde_json::from_slice(&std::fs::read(s.dir.join("credentials.json")).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(format!("{}/../../tests/clients/full_disk.py", env!("CARGO_MANIFEST_DIR")))
        .env("STOKE_ENDPOINT", &s.url)
        .env("STOKE_API_KEY", &s.api_key)
        .env("STOKE_AKID", creds["access_key_id"].as_str().unwrap())
        .env("STOKE_SECRET", creds["secret_access_key"].as_str().unwrap())
        .env("FILL_DIR", &fill)
        .env("MARK_DIR", mark.path())
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    assert!(out.status.success(), "full_disk.py: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(out.stdout.trim_ascii()).expect("one JSON line");
    let list = |k: &str| report[k].as_array().unwrap().clone();
    println!(
        "filling the disk: {} functions created, {} creates refused; {} Event invocations accepted, {} refused",
        list("created").len(),
        list("refused_creates").len(),
        list("accepted").len(),
        list("refused_events").len()
    );
    assert!(
        list("unexpected").is_empty(),
        "every answer is a success or a 507/503 disk-full: {}",
        report["unexpected"]
    );
    assert!(!list("refused_creates").is_empty() && !list("refused_events").is_empty(), "the disk filled: {report}");
    assert!(!list("created").is_empty() && !list("accepted").is_empty(), "writes were accepted before: {report}");
    assert!(list("retry_after").iter().all(|r| r.as_str() == Some("5")), "a 507 says when to retry: {report}");

    // A function that cannot start for want of space is the platform's failure: retryable, not the
    // function's error; its Event invocation was accepted and waits.
    assert_eq!(report["lazy_event"], 202, "{report}");
    let sync = &report["lazy_sync"];
    assert_eq!(
        (sync["status"].as_u64(), sync["code"].as_str()),
        (Some(503), Some("ServiceUnavailableException")),
        "{report}"
    );
    assert!(sync["message"].as_str().unwrap().contains("disk is full"), "{report}");
    let (status, body) = s.post("/v1/functions/lazy/invoke", json!({"n": 100002, "mark": mark.path()}));
    assert_eq!((status, body["error"]["code"].as_str()), (507, Some("insufficient_storage")), "{body}");

    // While the disk is full, what was written stays readable, and nothing refused was half-written.
    for name in list("created") {
        assert_eq!(s.get(&format!("/v1/functions/{}", name.as_str().unwrap())).0, 200, "{name} was acknowledged");
    }
    for name in list("refused_creates") {
        assert_eq!(s.get(&format!("/v1/functions/{}", name.as_str().unwrap())).0, 404, "{name} was refused");
    }

    // Space comes back: the server recovers by itself.
    std::fs::remove_dir_all(&fill).unwrap();
    let recovered = Instant::now();
    eventually("a create succeeds again", Duration::from_secs(10), || {
        s.post("/v1/functions", create_body("after-space", &python_zip("after"))).0 == 201
    });
    for name in list("refused_creates").iter().take(3) {
        assert_eq!(s.create_function(name.as_str().unwrap(), &python_zip("again"))["name"], *name);
    }
    // Every accepted Event invocation runs (the platform's failures do not use up its attempts).
    let mut accepted: Vec<u64> = list("accepted").iter().map(|n| n.as_u64().unwrap()).collect();
    accepted.push(100000);
    eventually("every accepted Event invocation ran", Duration::from_secs(60), || {
        let ran = marks(mark.path());
        accepted.iter().all(|n| ran.binary_search(n).is_ok())
    });
    println!("recovered: every accepted event ran {:?} after space came back", recovered.elapsed());

    // The store is whole: a restart reads it, and SQLite's own check passes.
    s.kill9();
    let db = rusqlite::Connection::open(s.dir.join("stoke.db")).unwrap();
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    drop(db);
    s.launch();
    for name in list("created") {
        assert_eq!(s.get(&format!("/v1/functions/{}", name.as_str().unwrap())).0, 200, "{name} survives a restart");
    }
}
