//! Schedules against a real server: fires counted on a clock that runs 60 times as fast (a minute a second,
//! so no test waits for minutes), one-time and disabled schedules, state machine targets, the server killed
//! across a fire, refusals, and the CLI.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{python_fn, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

/// Writes each event it gets to a file named after its request id in `$OUT`.
const RECORDER: &str = "import json, os\ndef handler(e, c):\n    open(os.path.join(os.environ['OUT'], c.aws_request_id), 'w').write(json.dumps(e))\n    return e\n";

fn recorder(s: &TestServer, name: &str, out: &Path) {
    python_fn(s, name, RECORDER, json!({"environment": {"OUT": out.to_str().unwrap()}}));
}

/// The events the recorder got, oldest first by scheduled time when they carry one.
fn received(dir: &Path) -> Vec<Value> {
    let mut v: Vec<Value> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p: PathBuf| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
        .collect();
    v.sort_by_key(|e| e["at"].as_str().map(String::from).or_else(|| e["time"].as_str().map(String::from)));
    v
}

fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn create(s: &TestServer, body: Value) -> Value {
    let (status, v) = s.post("/v1/schedules", body);
    assert_eq!(status, 201, "{v}");
    v
}

/// Starts a server whose schedules' clock reads 2027-01-01T00:00:00Z now and runs a minute per second (on
/// through restarts).
fn fast() -> TestServer {
    let since = jiff::Timestamp::now().as_millisecond().to_string();
    TestServer::start_with(&[
        "--sandbox",
        "process",
        "--schedule-clock-start",
        "2027-01-01T00:00:00Z",
        "--schedule-clock-rate",
        "60",
        "--schedule-clock-since",
        &since,
    ])
}

#[test]
fn a_rate_schedule_fires_on_its_grid_a_disabled_one_never_and_a_one_time_one_once() {
    let s = fast();
    let (out, once) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    recorder(&s, "rec", out.path());
    recorder(&s, "once", once.path());
    // Every minute from 00:01 to 00:05: five fires in the simulated window, then no more.
    let every = create(
        &s,
        json!({
            "name": "every-minute", "expression": "rate(1 minute)",
            "start": "2027-01-01T00:01:00Z", "end": "2027-01-01T00:05:30Z",
            "target": {"function": "rec", "input": {"at": "<aws.scheduler.scheduled-time>", "id": "<aws.scheduler.execution-id>", "n": "<aws.scheduler.attempt-number>"}}
        }),
    );
    assert_eq!(every["next_fire"], "2027-01-01T00:01:00.000Z", "{every}");
    assert_eq!(every["state"], "ENABLED");
    let (status, next) = s.get("/v1/schedules/every-minute/next?n=10");
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["fires"].as_array().unwrap().len(), 5, "only five before the end: {next}");
    // A disabled schedule, and a one-time one (deleted once done).
    create(&s, json!({"name": "off", "expression": "rate(1 minute)", "enabled": false, "target": {"function": "rec"}}));
    create(
        &s,
        json!({"name": "new-year", "expression": "at(2027-01-01T00:02:00)", "delete_after_completion": true,
               "target": {"function": "once"}}),
    );

    until("five fires", Duration::from_secs(60), || received(out.path()).len() >= 5);
    let (_, every) = s.get("/v1/schedules/every-minute");
    until("the schedule to be done", Duration::from_secs(30), || {
        s.get("/v1/schedules/every-minute").1["next_fire"].is_null()
    });
    let got = received(out.path());
    assert_eq!(got.len(), 5, "{got:?}");
    let times: Vec<&str> = got.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert_eq!(
        times,
        [
            "2027-01-01T00:01:00Z",
            "2027-01-01T00:02:00Z",
            "2027-01-01T00:03:00Z",
            "2027-01-01T00:04:00Z",
            "2027-01-01T00:05:00Z"
        ]
    );
    // Each fire has its own id, which is also the invocation's request id, and is attempt 1.
    let ids: std::collections::BTreeSet<&str> = got.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 5);
    assert!(got.iter().all(|e| e["n"] == "1"));
    for id in &ids {
        assert!(out.path().join(id).exists(), "the request id is the fire's id");
    }
    let (_, every) = (every, s.get("/v1/schedules/every-minute").1);
    assert_eq!((&every["fires"], &every["missed"]), (&json!(5), &json!(0)), "{every}");
    assert_eq!(every["last_fire"], "2027-01-01T00:05:00.000Z");
    until("the last fire's invocation to finish", Duration::from_secs(30), || {
        s.get("/v1/schedules/every-minute").1["last_outcome"] == "succeeded"
    });

    let (_, off) = s.get("/v1/schedules/off");
    assert_eq!((&off["fires"], &off["state"]), (&json!(0), &json!("DISABLED")), "{off}");
    assert!(off["next_fire"].is_null());
    // The one-time schedule fired once, with Scheduler's scheduled event, and is gone.
    let once_got = received(once.path());
    assert_eq!(once_got.len(), 1, "{once_got:?}");
    assert_eq!(once_got[0]["detail-type"], "Scheduled Event");
    assert_eq!(once_got[0]["time"], "2027-01-01T00:02:00Z");
    assert!(once_got[0]["resources"][0].as_str().unwrap().ends_with(":schedule/default/new-year"));
    let (status, _) = s.get("/v1/schedules/new-year");
    assert_eq!(status, 404, "deleted after completion");

    // Enabled now, it fires from its next minute, none for the minutes it was off.
    let (status, on) = s.post("/v1/schedules/off/enable", json!({}));
    assert_eq!(status, 200, "{on}");
    until("the enabled schedule's first fire", Duration::from_secs(30), || s.get("/v1/schedules/off").1["fires"] == 1);
    assert_eq!(s.get("/v1/schedules/off").1["missed"], 0);

    // /metrics counts the fires.
    let text = s.req(Method::GET, "/metrics").send().unwrap().text().unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("stoke_schedule_fires_total{")
            && l.contains("schedule=\"every-minute\"")
            && l.contains("outcome=\"fired\"")
            && l.ends_with(" 5")),
        "{text}"
    );
}

#[test]
fn a_schedule_starts_a_state_machine_and_the_cli_drives_schedules() {
    let s = fast();
    let (status, w) = s.post(
        "/v1/workflows",
        json!({"name": "nightly", "definition": {"StartAt": "Keep", "States": {"Keep": {"Type": "Pass", "End": true}}}}),
    );
    assert_eq!(status, 201, "{w}");
    let cli = |args: &[&str]| {
        let out = s.cli().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let made = cli(&[
        "schedule",
        "create",
        "wf",
        "--expression",
        "cron(*/2 * * * ? *)",
        "--workflow",
        "nightly",
        "--input",
        r#"{"when": "<aws.scheduler.scheduled-time>"}"#,
        "--timezone",
        "Europe/Paris",
    ]);
    assert!(made.contains("wf (ENABLED): cron(*/2 * * * ? *) in Europe/Paris"), "{made}");
    let next = cli(&["schedule", "next", "wf", "-n", "3"]);
    assert_eq!(next.lines().count(), 3, "{next}");
    assert!(next.lines().next().unwrap().ends_with(":00.000Z"), "{next}");
    let executions = || s.get("/v1/workflows/nightly/executions").1["executions"].as_array().unwrap().clone();
    until("an execution started by the schedule", Duration::from_secs(60), || !executions().is_empty());
    let e = &executions()[0];
    assert!(e["input"]["when"].as_str().unwrap().ends_with(":00Z"), "{e}");
    let listed = cli(&["schedule", "ls"]);
    assert!(listed.contains("wf") && listed.contains("ENABLED") && listed.contains("nightly"), "{listed}");
    assert!(cli(&["schedule", "disable", "wf"]).contains("wf (DISABLED)"));
    let updated = cli(&["schedule", "update", "wf", "--expression", "rate(3 hours)"]);
    assert!(updated.contains("wf (DISABLED): rate(3 hours) in Europe/Paris"), "{updated}");
    assert!(cli(&["schedule", "get", "wf"]).contains("nightly"), "the target was kept");
    assert!(cli(&["schedule", "delete", "wf"]).contains("deleted"));
    let out = s.cli().args(["schedule", "get", "wf"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Schedule wf does not exist"));
}

#[test]
fn bad_schedules_are_refused_saying_what_is_wrong() {
    let s = TestServer::start_with(&["--sandbox", "process"]);
    python_fn(&s, "f", "def handler(e, c):\n    return 1\n", json!({}));
    let (key, _) = s.new_account("other");
    let other_arn = |n: &str| format!("arn:aws:lambda:us-east-1:{}:function:{n}", "999999999999");
    let bad = |body: Value, status: u16, field: &str, says: &str| {
        let (got, v) = s.post("/v1/schedules", body.clone());
        assert_eq!(got, status, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(says), "{body}: {v}");
    };
    let f = json!({"function": "f"});
    bad(
        json!({"name": "a", "expression": "cron(0 1 * * * *)", "target": f}),
        400,
        "expression",
        "Invalid Schedule Expression cron(0 1 * * * *).",
    );
    bad(json!({"name": "a", "expression": "cron(71 8 1 * ? *)", "target": f}), 400, "expression", "minutes");
    bad(json!({"name": "a", "expression": "rate(10 seconds)", "target": f}), 400, "expression", "unit");
    bad(
        json!({"name": "a", "expression": "rate(1 hour)", "timezone": "Mars/Olympus", "target": f}),
        400,
        "timezone",
        "IANA",
    );
    bad(
        json!({"name": "a", "expression": "rate(1 hour)", "target": {"function": "nope"}}),
        400,
        "target",
        "does not exist",
    );
    bad(
        json!({"name": "a", "expression": "rate(1 hour)", "target": {"arn": other_arn("f")}}),
        400,
        "target",
        "of your account",
    );
    bad(
        json!({"name": "a", "expression": "rate(1 hour)", "target": {"workflow": "nope"}}),
        400,
        "target",
        "does not exist",
    );
    bad(json!({"name": "a", "expression": "rate(1 hour)", "target": {}}), 400, "target", "exactly one");
    bad(json!({"name": "a", "expression": "rate(1 hour)", "max_retries": 186, "target": f}), 400, "max_retries", "185");
    bad(json!({"name": "a", "expression": "rate(1 hour)", "max_age_s": 59, "target": f}), 400, "max_age_s", "60");
    bad(
        json!({"name": "a", "expression": "rate(1 hour)", "flexible_window_min": 0, "target": f}),
        400,
        "flexible_window_min",
        "1",
    );
    bad(json!({"name": "a b", "expression": "rate(1 hour)", "target": f}), 400, "name", "not a valid name");
    bad(json!({"name": "a", "expression": "rate(1 hour)", "start": "tomorrow", "target": f}), 400, "start", "RFC 3339");
    bad(
        json!({"name": "a", "expression": "rate(1 hour)", "start": "2027-01-02T00:00:00Z", "end": "2027-01-01T00:00:00Z", "target": f}),
        400,
        "end",
        "after the start",
    );
    // Nothing was written by any of them.
    assert_eq!(s.get("/v1/schedules").1["schedules"], json!([]));
    create(&s, json!({"name": "a", "expression": "rate(1 hour)", "target": f}));
    let (status, v) = s.post("/v1/schedules", json!({"name": "a", "expression": "rate(2 hours)", "target": f}));
    assert_eq!((status, v["error"]["code"].as_str()), (409, Some("conflict")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("Schedule a already exists."), "{v}");
    // Another account sees none of it.
    let (status, _) = s.call(s.req_as(&key, Method::GET, "/v1/schedules/a"));
    assert_eq!(status, 404);
    let (status, v) = s.call(s.req(Method::GET, "/v1/schedules/a/next?n=0"));
    assert_eq!(status, 400, "{v}");

    // Deleting the function a schedule runs is not refused: the schedule is visibly broken, its fires
    // fail (into the failed-event store) naming the missing function.
    let (status, _) = s.call(s.req(Method::DELETE, "/v1/functions/f"));
    assert_eq!(status, 204);
    let (_, a) = s.get("/v1/schedules/a");
    assert!(a["target"]["arn"].as_str().unwrap().ends_with(":function:f"), "{a}");
}

#[test]
fn a_fire_due_while_the_server_was_killed_is_delivered_once_at_restart() {
    let mut s = TestServer::start_with(&["--sandbox", "process"]);
    let out = tempfile::tempdir().unwrap();
    recorder(&s, "rec", out.path());
    // Due three seconds from now (whole seconds, UTC), with a minute's maximum age.
    let due = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_secs(3)).unwrap();
    let at = due.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    create(
        &s,
        json!({"name": "soon", "expression": format!("at({at})"), "max_age_s": 60,
               "target": {"function": "rec", "input": {"at": "<aws.scheduler.scheduled-time>"}}}),
    );
    s.kill9();
    std::thread::sleep(Duration::from_secs(5));
    assert!(received(out.path()).is_empty(), "nothing ran while the server was down");
    s.launch();
    until("the missed fire to be delivered", Duration::from_secs(30), || received(out.path()).len() == 1);
    std::thread::sleep(Duration::from_secs(2));
    let got = received(out.path());
    assert_eq!(got.len(), 1, "delivered once: {got:?}");
    assert_eq!(got[0]["at"], json!(format!("{at}Z")));
    let (_, soon) = s.get("/v1/schedules/soon");
    assert_eq!((&soon["fires"], &soon["missed"]), (&json!(1), &json!(0)), "{soon}");
    // Restarted again, nothing fires twice.
    s.kill9();
    s.launch();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(received(out.path()).len(), 1);
}

#[test]
fn a_fire_older_than_its_maximum_age_at_restart_is_recorded_as_missed() {
    // At 60x, the seconds the server is down are minutes: past the fire's 60 s maximum age.
    let mut s = fast();
    let out = tempfile::tempdir().unwrap();
    recorder(&s, "rec", out.path());
    create(
        &s,
        json!({"name": "late", "expression": "at(2027-01-01T00:05:00)", "max_age_s": 60, "target": {"function": "rec"}}),
    );
    s.kill9();
    std::thread::sleep(Duration::from_secs(8));
    s.launch();
    until("the overdue fire to be dealt with", Duration::from_secs(30), || {
        !s.get("/v1/schedules/late").1["last_fire"].is_null()
    });
    let (_, late) = s.get("/v1/schedules/late");
    assert_eq!((&late["fires"], &late["missed"]), (&json!(0), &json!(1)), "{late}");
    assert_eq!((&late["last_outcome"], &late["last_fire"]), (&json!("missed"), &json!("2027-01-01T00:05:00.000Z")));
    assert!(late["next_fire"].is_null(), "{late}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(received(out.path()).is_empty(), "a missed fire does not run");
    let text = s.req(Method::GET, "/metrics").send().unwrap().text().unwrap();
    assert!(
        text.lines().any(|l| l.contains("schedule=\"late\"") && l.contains("outcome=\"missed\"") && l.ends_with(" 1")),
        "{text}"
    );
}

#[test]
fn a_schedule_whose_function_was_deleted_is_visibly_broken_and_loses_nothing() {
    let s = fast();
    python_fn(&s, "doomed", "def handler(e, c):\n    return 1\n", json!({}));
    create(
        &s,
        json!({"name": "orphan", "expression": "rate(1 minute)", "max_retries": 0, "target": {"function": "doomed"}}),
    );
    // Deleting the function is not refused (as on AWS, where a schedule's target may go away): the schedule
    // stays, its fires fail naming the missing function, and each waits in the failed-event store.
    let (status, _) = s.call(s.req(Method::DELETE, "/v1/functions/doomed"));
    assert_eq!(status, 204);
    until("a fire to fail", Duration::from_secs(30), || s.get("/v1/schedules/orphan").1["last_outcome"] == "failed");
    let (_, orphan) = s.get("/v1/schedules/orphan");
    let id = orphan["last_event"].as_str().unwrap().to_string();
    let (status, failed) = s.get(&format!("/v1/events/{id}"));
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(failed["result"].to_string().contains("doomed"), "says which function: {failed}");
    let listed = {
        let out = s.cli().args(["schedule", "ls"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(listed.contains("orphan") && listed.contains("failed"), "{listed}");
}
