//! The scheduler end to end without processes: queues, placement, the pool controller, instances' lives and
//! reservations, run on a [`FakeSandbox`](stoke_sandbox::fake::FakeSandbox) whose scripted runtimes speak
//! the Runtime API over loopback HTTP, with time moved by a [`TestClock`](crate::clock::TestClock).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stoke_sandbox::fake::{Action, Init, Script};

use crate::testing::{function_error, until, Harness, Names};
use crate::{InvokeError, InvokeRequest, InvokeTarget, Outcome, Scheduler};

/// Runs `payload` on `target` in the background.
fn spawn_invoke(
    scheduler: &Scheduler,
    target: &Arc<InvokeTarget>,
    payload: &str,
) -> tokio::task::JoinHandle<Result<crate::InvokeResult, InvokeError>> {
    let (scheduler, target) = (scheduler.clone(), target.clone());
    let req = InvokeRequest { payload: payload.to_string().into(), ..Default::default() };
    tokio::spawn(async move { scheduler.invoke(&target, req).await })
}

/// Waits until the `i`th instance has received its first invocation, which is after the pool was sized
/// again for its readiness. The controller decides how many instances to start under the queue's lock and
/// starts them after it: two decisions at once (a call arriving while an instance reports ready) can both
/// start one for the same work. Tests that count instances let one decision finish before the next.
async fn started_one_at_a_time(h: &Harness, i: usize) {
    until("the instance's first invocation", || h.fake.spawned().get(i).is_some_and(|s| s.invocations() == 1)).await;
}

/// Instances that take a while to initialise, as real ones do: all those one decision starts are counted
/// in the pool before the first of them reports ready (and the pool is sized again).
fn slow_init(script: Script) -> Script {
    script.init(Init::ReadyAfter(Duration::from_millis(100)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_invocations_reuse_the_one_instance() {
    let h = Harness::new(Script::echo());
    let target = h.target("resize", |_| {});
    let mut instances = Vec::new();
    for i in 0..5 {
        let (body, result) = h.ok(&target, &format!("{{\"n\":{i}}}")).await;
        assert_eq!(body, format!("{{\"n\":{i}}}"));
        assert_eq!(result.report.init_duration_ms.is_some(), i == 0, "only the first one waited for an init");
        assert_eq!(result.report.instance_init_ms.is_some(), i == 0, "the instance's first invocation");
        instances.push(result.report.instance);
        h.idle(&target, 1).await;
    }
    assert_eq!(h.fake.spawn_count(), 1);
    assert!(instances.iter().all(|i| *i == instances[0]), "{instances:?}");
    assert_eq!(h.fake.spawned()[0].invocations(), 5);
    let infos = h.scheduler.instances(&target.account, Some(&target.function));
    assert_eq!(infos.len(), 1);
    assert_eq!((infos[0].invocations, infos[0].pid), (5, Some(h.fake.spawned()[0].pid)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_grow_the_pool_to_its_limit_queue_beyond_and_are_refused_past_a_full_round() {
    let h = Harness::with(Script::echo().taking(Duration::from_millis(800)), |s| s.first_wave = 0);
    let target = h.target("resize", |c| c.concurrency_limit = Some(2));
    // One after the other: the pool is sized again when an instance first asks for work, and two sizings at
    // once can both start an instance for the same call (see `started_one_at_a_time`).
    let mut first = Vec::new();
    for i in 0..2 {
        first.push(spawn_invoke(&h.scheduler, &target, &i.to_string()));
        started_one_at_a_time(&h, i).await;
    }
    until("two busy instances", || h.scheduler.pool(&target).busy == 2).await;
    // Both instances are busy: two more wait in the queue for them, the pool is at its limit…
    let queued: Vec<_> = (2..4).map(|i| spawn_invoke(&h.scheduler, &target, &i.to_string())).collect();
    until("two queued", || h.scheduler.pool(&target).queued == 2).await;
    assert_eq!(h.fake.spawn_count(), 2);
    // …and a full round of work is queued for them: the next call is refused.
    match h.invoke(&target, "4").await {
        Err(InvokeError::Throttled { reason, retry_after_s }) => {
            assert_eq!(reason, "function resize is at its concurrency limit of 2");
            assert_eq!(retry_after_s, 1);
        }
        other => panic!("expected a throttle, got {other:?}"),
    }
    let mut ran_on = Vec::new();
    for (i, call) in first.into_iter().chain(queued).enumerate() {
        let result = call.await.expect("joined").expect("invoked");
        assert_eq!(result.outcome, Outcome::Success(i.to_string().into()));
        ran_on.push(result.report.instance);
    }
    assert_eq!(h.fake.spawn_count(), 2, "the queued calls ran on the same two instances");
    ran_on.sort();
    ran_on.dedup();
    assert_eq!(ran_on.len(), 2);
    let queue = h.queue(&target);
    assert_eq!(h.shared().metrics.throttles.get_or_create(queue.labels()).get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_at_its_allowance_is_refused_once_a_round_is_queued() {
    let h = Harness::with(Script::echo().taking(Duration::from_millis(800)), |s| s.account_concurrency = 1);
    let target = h.target("resize", |_| {});
    let running = spawn_invoke(&h.scheduler, &target, "1");
    started_one_at_a_time(&h, 0).await;
    // Queued: the account has no room for a second instance, so it waits for the first.
    let waiting = spawn_invoke(&h.scheduler, &target, "2");
    until("one queued", || h.scheduler.pool(&target).queued == 1).await;
    match h.invoke(&target, "3").await {
        Err(InvokeError::Throttled { reason, .. }) => {
            assert_eq!(reason, "account 123456789012 is at its allowance of 1 instances in use on this node")
        }
        other => panic!("expected a throttle, got {other:?}"),
    }
    let (a, b) = (running.await.unwrap().unwrap(), waiting.await.unwrap().unwrap());
    assert_eq!((a.outcome, b.outcome), (Outcome::Success("1".into()), Outcome::Success("2".into())));
    assert_eq!(a.report.instance, b.report.instance);
    assert_eq!(h.fake.spawn_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_error_comes_back_as_one_and_the_instance_stays() {
    let h = Harness::new(Script::reply(|inv| {
        if inv.body_str() == "\"bad\"" {
            Action::fail("ValueError", "bad input")
        } else {
            Action::Respond(inv.body.clone())
        }
    }));
    let target = h.target("resize", |_| {});
    let failed = h.invoke(&target, "\"bad\"").await.unwrap();
    assert_eq!(
        function_error(&failed),
        ("ValueError".into(), json!({"errorType": "ValueError", "errorMessage": "bad input"}))
    );
    h.idle(&target, 1).await;
    let (body, fine) = h.ok(&target, "\"good\"").await;
    assert_eq!(body, "\"good\"");
    assert_eq!((fine.report.instance, h.fake.spawn_count()), (failed.report.instance, 1));
    assert!(h.fake.killed().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_that_crashes_fails_its_invocation_and_the_next_call_gets_a_new_instance() {
    let h = Harness::new(Script::reply(|inv| {
        if inv.body_str() == "\"crash\"" {
            Action::Exit(3)
        } else {
            Action::Respond(inv.body.clone())
        }
    }));
    let target = h.target("resize", |_| {});
    let crashed = h.invoke(&target, "\"crash\"").await.unwrap();
    let (error_type, body) = function_error(&crashed);
    assert_eq!(error_type, "Runtime.ExitError");
    let expected = format!("RequestId: {} Error: Runtime exited with error: exit status: 3", crashed.request_id);
    assert_eq!(body["errorMessage"], expected.as_str());
    let gone = &h.fake.spawned()[0];
    assert_eq!(gone.exit_status().and_then(|s| s.code()), Some(3));
    until("the crashed instance to be forgotten", || h.scheduler.pool(&target).total() == 0).await;
    let (body, fine) = h.ok(&target, "\"again\"").await;
    assert_eq!(body, "\"again\"");
    assert_eq!(h.fake.spawn_count(), 2);
    assert_ne!(fine.report.instance, crashed.report.instance);
    assert!(fine.report.init_duration_ms.is_some(), "a cold start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_killed_for_its_memory_fails_with_out_of_memory() {
    let h = Harness::new(Script::reply(|_| Action::OutOfMemory));
    let target = h.target("resize", |_| {});
    let result = h.invoke(&target, "{}").await.unwrap();
    let (error_type, body) = function_error(&result);
    assert_eq!(error_type, "Runtime.OutOfMemory");
    assert!(body["errorMessage"].as_str().unwrap().ends_with("Runtime exited with error: signal: 9 (SIGKILL)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_error_fails_the_waiting_call_and_backs_off_until_the_clock_passes() {
    let broken = Script::echo()
        .init(Init::Error { error_type: "Runtime.ImportModuleError".into(), message: "No module named numpy".into() });
    let h = Harness::new(broken);
    let target = h.target("resize", |_| {});
    let first = h.invoke(&target, "{}").await.unwrap();
    let expected = json!({"errorType": "Runtime.ImportModuleError", "errorMessage": "No module named numpy"});
    assert_eq!(function_error(&first), ("Runtime.ImportModuleError".into(), expected.clone()));
    assert_eq!(first.report.instance, 0, "the platform answered: no instance ran it");
    // During the back-off (1 s after a first failure) calls fail at once with the same error; nothing starts.
    let during = h.invoke(&target, "{}").await.unwrap();
    assert_eq!(function_error(&during), ("Runtime.ImportModuleError".into(), expected));
    assert_eq!(h.fake.spawn_count(), 1);
    // The code is fixed; once the back-off has passed, the next call starts an instance that works.
    h.fake.set_script(Script::echo());
    h.clock.advance(Duration::from_millis(1100));
    let (body, _) = h.ok(&target, "\"fixed\"").await;
    assert_eq!(body, "\"fixed\"");
    assert_eq!(h.fake.spawn_count(), 2);
    let log = h.scheduler.logs(&target.account, &target.function, 0, 100);
    let report = log.iter().find(|l| l.text.starts_with("INIT_REPORT instance 1 failed: ")).expect("INIT_REPORT");
    assert!(report.text.contains("No module named numpy"), "{}", report.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_that_exits_before_asking_for_work_is_an_init_failure() {
    let h = Harness::new(Script::echo().init(Init::Exit(2)));
    let target = h.target("resize", |_| {});
    let result = h.invoke(&target, "{}").await.unwrap();
    let (error_type, body) = function_error(&result);
    assert_eq!(error_type, "Runtime.ExitError");
    assert_eq!(
        body["errorMessage"],
        "Runtime exited before it asked for work (exit status: 2); see `stoke logs` for its output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_the_sandbox_cannot_start_fails_the_call_with_an_invalid_entrypoint() {
    let h = Harness::new(Script::echo());
    h.fake.fail_spawns(Some((std::io::ErrorKind::NotFound, "no such file")));
    let target = h.target("resize", |_| {});
    let result = h.invoke(&target, "{}").await.unwrap();
    let (error_type, body) = function_error(&result);
    assert_eq!(error_type, "Runtime.InvalidEntrypoint");
    let program = h.dir.path().join("run/code/abc/bootstrap");
    assert_eq!(body["errorMessage"], format!("cannot start {}: no such file", program.display()).as_str());
    assert_eq!(h.fake.spawn_count(), 0);
    assert!(!h.logs(&target).iter().any(|l| l.contains("trying again")), "the function's fault is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_the_node_fails_once_is_tried_again_and_the_call_never_sees_it() {
    let h = Harness::new(Script::echo());
    h.fake.fail_next_spawns(1, std::io::ErrorKind::ResourceBusy, "Device or resource busy");
    let target = h.target("resize", |_| {});
    let (body, _) = h.ok(&target, "{\"n\":1}").await;
    assert_eq!(body, "{\"n\":1}");
    assert_eq!(h.fake.spawn_count(), 1);
    let logs = h.logs(&target);
    assert!(logs.iter().any(|l| l.contains("could not start (Device or resource busy); trying again")), "{logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_the_node_keeps_failing_is_the_platforms_error_not_the_functions() {
    let h = Harness::new(Script::echo());
    h.fake.fail_spawns(Some((std::io::ErrorKind::ResourceBusy, "Device or resource busy")));
    let target = h.target("resize", |_| {});
    match h.invoke(&target, "{}").await {
        Err(InvokeError::Platform(message)) => {
            let program = h.dir.path().join("run/code/abc/bootstrap");
            assert_eq!(
                message,
                format!(
                    "the node could not start an instance to run {}: Device or resource busy; retry the invocation",
                    program.display()
                )
            );
        }
        other => panic!("expected the platform's error, got {other:?}"),
    }
    let logs = h.logs(&target);
    assert_eq!(logs.iter().filter(|l| l.contains("trying again")).count(), 2, "{logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_past_its_timeout_fails_and_its_instance_is_killed() {
    let h = Harness::new(Script::reply(|_| Action::Hang));
    let target = h.target("resize", |c| c.timeout_s = 1);
    let result = h.invoke(&target, "{}").await.unwrap();
    let (error_type, body) = function_error(&result);
    assert_eq!(error_type, "Sandbox.Timedout");
    let expected = format!("RequestId: {} Error: Task timed out after 1.00 seconds", result.request_id);
    assert_eq!(body["errorMessage"], expected.as_str());
    // The instance is killed right after the call is answered.
    until("the instance killed", || !h.fake.killed().is_empty()).await;
    assert_eq!(h.fake.killed(), vec![h.fake.spawned()[0].pid]);
    // From its arrival (its deadline counts from there) to the timeout.
    assert!(result.report.queued_ms + result.report.duration_ms >= 999.0, "{:?}", result.report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_asking_again_without_answering_fails_the_invocation_it_abandoned() {
    let h = Harness::new(Script::reply(|inv| {
        if inv.body_str() == "\"drop\"" {
            Action::Abandon
        } else {
            Action::Respond(inv.body.clone())
        }
    }));
    let target = h.target("resize", |_| {});
    let dropped = h.invoke(&target, "\"drop\"").await.unwrap();
    assert_eq!(function_error(&dropped).0, "Runtime.InvalidState");
    h.idle(&target, 1).await;
    let (body, fine) = h.ok(&target, "\"kept\"").await;
    assert_eq!((body.as_str(), fine.report.instance), ("\"kept\"", dropped.report.instance));
    assert_eq!(h.fake.spawn_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_is_evicted_once_the_clock_passes_its_keep_alive() {
    let h = Harness::new(Script::echo());
    let target = h.target("resize", |c| c.keep_alive_s = 600);
    h.ok(&target, "{}").await;
    h.idle(&target, 1).await;
    let pid = h.fake.spawned()[0].pid;
    h.clock.advance(Duration::from_secs(599));
    h.tick();
    assert!(h.fake.killed().is_empty(), "within its keep-alive");
    assert_eq!(h.evictions("keep_alive"), 0);
    h.clock.advance(Duration::from_secs(2));
    h.tick();
    assert_eq!(h.fake.killed(), vec![pid]);
    assert_eq!(h.evictions("keep_alive"), 1);
    until("the evicted instance to be gone", || h.scheduler.pool(&target).total() == 0).await;
    assert_eq!(h.scheduler.node_status().charged_mb, 0, "its memory is released");
    let (_, again) = h.ok(&target, "{}").await;
    assert!(again.report.init_duration_ms.is_some(), "a cold start again");
    assert_eq!(h.fake.spawn_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_warm_instances_start_ahead_serve_warm_and_outlive_their_keep_alive() {
    let h = Harness::new(slow_init(Script::echo()));
    let target = h.target("resize", |c| c.min_warm = 2);
    h.scheduler.keep_warm(&target);
    h.idle(&target, 2).await;
    assert_eq!(h.fake.spawn_count(), 2);
    h.clock.advance(Duration::from_secs(3600));
    h.tick();
    assert!(h.fake.killed().is_empty(), "min_warm instances are kept past their keep-alive");
    let (_, result) = h.ok(&target, "{}").await;
    assert_eq!(result.report.init_duration_ms, None, "ready before the call came: warm");
    assert!(result.report.instance_init_ms.is_some(), "but the instance's first invocation");
    assert_eq!(h.fake.spawn_count(), 2);
}

/// Two sizings of one pool that decided before either placed (the tick and an arrival, say) start what the
/// pool needs once, not twice: placing decides again under the node's placement lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_sizing_starts_no_instance_another_already_started() {
    let h = Harness::new(slow_init(Script::echo()));
    let target = h.target("resize", |c| c.min_warm = 2);
    let queue = h.queue(&target);
    assert_eq!(queue.still_to_start(h.shared()), 2);
    // Both sizings saw 2 to start; the first places them, the second comes late with its stale count.
    crate::place(h.shared(), &queue, 2);
    crate::place(h.shared(), &queue, 2);
    assert_eq!(queue.snapshot_now(h.shared()).total(), 2, "the second sizing's instances were already started");
    h.idle(&target, 2).await;
    assert_eq!(h.fake.spawn_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_gives_way_to_one_that_needs_its_memory() {
    let h = Harness::with(Script::echo(), |s| {
        s.memory_budget_mb = 256;
        s.memory_overcommit = 1.0;
    });
    let small = h.target("small", |c| c.memory_mb = 128);
    let big = h.target("big", |c| c.memory_mb = 256);
    h.ok(&small, "{}").await;
    h.idle(&small, 1).await;
    assert_eq!(h.scheduler.node_status().charged_mb, 128);
    let (body, _) = h.ok(&big, "\"big\"").await;
    assert_eq!(body, "\"big\"");
    assert_eq!(h.fake.killed(), vec![h.fake.spawned_of("small")[0].pid]);
    assert_eq!(h.fake.spawned_of("big").len(), 1);
    let node = h.scheduler.node_status();
    assert_eq!((node.evictions["reclaimed"], node.reclaim_walks), (1, 1));
    until("the small instance to be released", || h.scheduler.node_status().charged_mb == 256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_no_instance_has_room_for_is_refused_after_its_grace() {
    let h = Harness::with(Script::reply(|_| Action::Hang), |s| {
        s.memory_budget_mb = 256;
        s.memory_overcommit = 1.0;
    });
    let big = h.target("big", |c| c.memory_mb = 256);
    let small = h.target("small", |c| c.memory_mb = 128);
    let _running = spawn_invoke(&h.scheduler, &big, "{}");
    until("the big instance busy", || h.scheduler.pool(&big).busy == 1).await;
    let asked = std::time::Instant::now();
    match h.invoke(&small, "{}").await {
        Err(InvokeError::Throttled { reason, retry_after_s: 1 }) => assert_eq!(
            reason,
            "this node's memory is taken by instances in use (256 MB of its 256 MB budget, 256 MB configured of the \
             256 MB its overcommit allows); no instance of function small can start"
        ),
        other => panic!("expected a throttle, got {other:?}"),
    }
    assert!(asked.elapsed() >= Duration::from_millis(250), "it waited for room first");
    assert!(h.fake.spawned_of("small").is_empty());
    assert!(h.fake.killed().is_empty(), "a busy instance never gives way");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_give_way_when_the_instances_working_set_nears_the_budget() {
    let h = Harness::with(Script::echo(), |s| s.memory_budget_mb = 1000);
    let target = h.target("resize", |_| {});
    h.ok(&target, "{}").await;
    h.idle(&target, 1).await;
    h.fake.set_instances_memory(Some(890 << 20));
    h.tick();
    assert!(h.fake.killed().is_empty(), "below 90 % of the budget");
    h.fake.set_instances_memory(Some(950 << 20));
    h.tick();
    assert_eq!(h.fake.killed(), vec![h.fake.spawned()[0].pid]);
    assert_eq!(h.evictions("reclaimed"), 1);
    assert_eq!(h.scheduler.node_status().used_mb, Some(950));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_is_charged_by_its_measured_peak_once_initialised() {
    let h = Harness::with(Script::echo(), |s| s.memory_budget_mb = 2048);
    assert_eq!(h.fake.memory_limit(), Some(2048 << 20), "instances are held to the budget together");
    h.fake.set_peak_memory(Some(40 << 20));
    let target = h.target("resize", |_| {});
    let (_, result) = h.ok(&target, "{}").await;
    assert_eq!(result.report.max_memory_used_mb, 40);
    let node = h.scheduler.node_status();
    // 40 MB measured plus headroom (at least 8 MB, or a quarter: 10 MB), against 128 MB configured.
    assert_eq!((node.charged_mb, node.configured_mb, node.instances), (50, 128, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_function_lets_its_idle_instances_go_and_starts_fresh_ones() {
    let h = Harness::new(Script::echo());
    let target = h.target("resize", |_| {});
    h.ok(&target, "{}").await;
    h.idle(&target, 1).await;
    h.scheduler.drain(&target.account, &target.function);
    assert_eq!(h.fake.killed(), vec![h.fake.spawned()[0].pid]);
    assert_eq!(h.evictions("drained"), 1);
    h.ok(&target, "{}").await;
    assert_eq!(h.fake.spawn_count(), 2);
    h.idle(&target, 1).await;
    assert_eq!(h.scheduler.in_flight(&target.account, &target.function), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_invocations_start_instances_before_they_arrive() {
    let h = Harness::new(slow_init(Script::echo()));
    let target = h.target("resize", |_| {});
    h.scheduler.announce(&target, 2, Duration::from_secs(10));
    h.idle(&target, 2).await;
    assert_eq!(h.fake.spawn_count(), 2);
    assert_eq!(h.scheduler.pool(&target).forecast, 2);
    let (_, result) = h.ok(&target, "{}").await;
    assert_eq!(result.report.init_duration_ms, None, "it found a warm instance");
    assert_eq!(h.scheduler.pool(&target).forecast, 1, "the arrival used up one announcement");
    h.clock.advance(Duration::from_secs(11));
    assert_eq!(h.scheduler.pool(&target).forecast, 0, "the other lapsed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_is_frozen_while_it_waits_and_thawed_for_work() {
    let h = Harness::with(Script::echo(), |s| s.freeze_idle_after = Some(Duration::from_millis(50)));
    h.fake.set_can_freeze(true);
    let target = h.target("resize", |_| {});
    h.ok(&target, "{}").await;
    let instance = h.fake.spawned()[0].clone();
    until("the idle instance frozen", || instance.is_frozen()).await;
    let (body, _) = h.ok(&target, "\"thawed\"").await;
    assert_eq!(body, "\"thawed\"");
    assert_eq!(instance.freezes()[..2], [true, false], "thawed before it heard of the work");
    assert_eq!(instance.invocations(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invocations_log_has_its_runtimes_output_between_start_and_end() {
    let h = Harness::new(Script::handler(|inv, api| async move {
        api.print(&format!("handling {}", inv.body_str()));
        Action::Respond(b"done".to_vec())
    }));
    let target = h.target("resize", |_| {});
    // Warm: the endpoint serves an instance as soon as the sandbox has started it, a moment before
    // `instance::run` starts reading its output. A scripted runtime can answer its first invocation within
    // that moment (its line then lands outside the invocation); a real one takes milliseconds to start.
    h.ok(&target, "\"warm-up\"").await;
    h.idle(&target, 1).await;
    let req = InvokeRequest { payload: "\"x\"".into(), want_log: true, ..Default::default() };
    let result = h.scheduler.invoke(&target, req).await.unwrap();
    let id = &result.request_id;
    assert_eq!(result.log.len(), 4, "{:?}", result.log);
    assert_eq!(
        result.log[..3],
        [format!("START RequestId: {id} Version: $LATEST"), "handling \"x\"".into(), format!("END RequestId: {id}")]
    );
    assert!(result.log[3].starts_with(&format!("REPORT RequestId: {id}\tDuration: ")), "{}", result.log[3]);
    assert!(result.log[3].contains("\tMemory Size: 128 MB\t"));
    assert!(!result.log[3].contains("Init Duration"), "a warm invocation");
    let all = h.scheduler.logs(&target.account, &target.function, 0, 100);
    let warm_up = all.iter().find(|l| l.text == "handling \"warm-up\"").expect("the first invocation's line");
    assert_eq!(warm_up.instance, result.report.instance);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_serves_only_connections_its_instance_opened() {
    let h = Harness::new(Script::echo().init(Init::Hang));
    let target = h.target("resize", |_| {});
    let _waiting = spawn_invoke(&h.scheduler, &target, "{}");
    until("an instance started", || h.fake.spawn_count() == 1).await;
    let instance = h.fake.spawned()[0].clone();
    // Another process on the host finds the port and asks for the function's work.
    let mut stranger = tokio::net::TcpStream::connect(instance.endpoint()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stranger.write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stranger.read_to_end(&mut answer)).await.unwrap();
    assert!(
        read.is_err() || answer.is_empty(),
        "disconnected without an answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(h.scheduler.pool(&target).queued, 1, "the invocation is still waiting for its instance");
}

/// A prepared step's runtime: reads its preparation input, waits for its turn, answers with both (or with
/// why its turn never came). An ordinary invocation it echoes.
fn prepared_step() -> Script {
    Script::handler(|inv, api| async move {
        let prepared = api.get("/2018-06-01/stoke/prepared").await.expect("prepared");
        if prepared.status != 200 {
            // Not started by prepare: an ordinary invocation.
            return Action::Respond(inv.body);
        }
        let params = prepared.json();
        let turn = api.get("/2018-06-01/stoke/turn").await.expect("turn");
        if turn.status != 200 {
            return Action::fail(
                turn.json()["errorType"].as_str().unwrap_or("?"),
                turn.json()["errorMessage"].as_str().unwrap_or("?"),
            );
        }
        Action::respond(json!({"params": params, "input": turn.json()}).to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_prepares_a_later_one_whose_turn_runs_on_the_reserved_instance() {
    let h = Harness::new(Script::echo());
    let (first, later) = (h.target("first", |_| {}), h.target("later", |_| {}));
    h.scheduler.resolve_with(Arc::new(Names(vec![later.clone()])));
    h.fake.script_for(
        "first",
        Script::handler(|_, api| async move {
            let body = json!({"function": "later", "params": {"bucket": "b"}}).to_string();
            let answer = api.post("/2018-06-01/stoke/prepare", &[], body.as_bytes()).await.expect("prepare");
            Action::respond(format!("{} {}", answer.status, String::from_utf8_lossy(&answer.body)))
        }),
    );
    h.fake.script_for("later", prepared_step());
    let execution: Arc<str> = Arc::from("exec-1");
    let req = InvokeRequest { payload: "{}".into(), execution: Some(execution.clone()), ..Default::default() };
    let prepared = h.scheduler.invoke(&first, req).await.unwrap();
    let Outcome::Success(answer) = prepared.outcome else { panic!("{:?}", prepared.outcome) };
    let answer = String::from_utf8(answer.to_vec()).unwrap();
    let (status, body) = answer.split_once(' ').unwrap();
    assert_eq!(status, "202");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!((body["reservationId"].as_str(), body["function"].as_str()), (Some("1"), Some("later")));
    assert_eq!(body["expiresInMs"], 60_000);
    until("the reserved instance held", || h.scheduler.pool(&later).held == 1).await;
    assert_eq!(h.scheduler.reservations("exec-1"), 1);
    let req = InvokeRequest { payload: "{\"n\":7}".into(), execution: Some(execution), ..Default::default() };
    let turn = h.scheduler.invoke(&later, req).await.unwrap();
    let Outcome::Success(result) = &turn.outcome else { panic!("{:?}", turn.outcome) };
    let result: serde_json::Value = serde_json::from_slice(result).unwrap();
    assert_eq!(result, json!({"params": {"bucket": "b"}, "input": {"n": 7}}));
    assert!(turn.report.held_ms.is_some(), "it was held for its turn");
    assert_eq!(h.scheduler.reservations("exec-1"), 0);
    assert_eq!(h.fake.spawned_of("later").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_reservation_frees_its_instance_for_other_calls() {
    let h = Harness::new(prepared_step());
    let target = h.target("later", |_| {});
    let reservation = crate::prepare(h.shared(), &target, Arc::from("exec-2"), "{\"p\":1}".into()).unwrap();
    until("the reserved instance held", || h.scheduler.pool(&target).held == 1).await;
    assert_eq!(h.scheduler.release_reservations("exec-2", None, "the execution ended"), 1);
    let preparation = reservation.take_result().unwrap().await.unwrap();
    assert_eq!(
        function_error(&preparation),
        (
            "Stoke.ReservationReleased".into(),
            json!({"errorType": "Stoke.ReservationReleased", "errorMessage": "the execution ended"})
        )
    );
    h.idle(&target, 1).await;
    let (body, _) = h.ok(&target, "\"plain\"").await;
    assert_eq!(body, "\"plain\"");
    assert_eq!(h.fake.spawn_count(), 1, "the same instance took the plain call");
    assert_eq!(h.fake.spawned()[0].invocations(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_whose_step_never_comes_expires() {
    let h = Harness::with(prepared_step(), |s| s.reservation_ttl = Duration::from_millis(100));
    let target = h.target("later", |_| {});
    let reservation = crate::prepare(h.shared(), &target, Arc::from("exec-3"), "null".into()).unwrap();
    let preparation = reservation.take_result().unwrap().await.unwrap();
    let (error_type, body) = function_error(&preparation);
    assert_eq!(error_type, "Stoke.ReservationReleased");
    assert_eq!(body["errorMessage"], "the reservation expired: the execution did not reach this step within 0.1 s");
    assert_eq!(h.scheduler.reservations("exec-3"), 0);
    // The step arrives late: it runs as any invocation would, on the instance now free.
    h.idle(&target, 1).await;
    let req = InvokeRequest { payload: "1".into(), execution: Some(Arc::from("exec-3")), ..Default::default() };
    let late = h.scheduler.invoke(&target, req).await.unwrap();
    assert_eq!(late.outcome, Outcome::Success("1".into()));
    assert_eq!(late.report.held_ms, None);
    assert_eq!(h.fake.spawn_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instances_timeline_is_stamped_by_the_schedulers_clock() {
    let h = Harness::new(Script::echo());
    h.clock.advance(Duration::from_secs(86_400));
    let target = h.target("resize", |_| {});
    h.ok(&target, "{}").await;
    let infos = h.scheduler.instances(&target.account, Some(&target.function));
    let started_ms = infos[0].timeline[0].1;
    let day_ahead = crate::Clock::now_ms(&crate::SystemClock) + 86_400_000;
    assert!((day_ahead - 5_000..=day_ahead).contains(&started_ms), "{started_ms} vs {day_ahead}");
}

/// Records what the pool controller asked of other nodes, and says capacity is arranged there.
#[derive(Default)]
struct Elsewhere(std::sync::Mutex<Vec<(String, usize, usize)>>);

impl crate::Overflow for Elsewhere {
    fn short(&self, target: &Arc<InvokeTarget>, instances: usize, queued: usize) -> bool {
        self.0.lock().unwrap().push((target.function.to_string(), instances, queued));
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_the_node_has_no_room_for_waits_for_another_nodes_instances_which_pull_it() {
    // No instance of a 128 MB function fits a 100 MB node: the controller says so to the cluster, and the
    // invocation waits in the queue for an instance on another node to take it.
    let h = Harness::with(Script::echo(), |s| {
        s.memory_budget_mb = 100;
        s.memory_overcommit = 1.0;
    });
    let elsewhere = Arc::new(Elsewhere::default());
    h.scheduler.overflow_to(elsewhere.clone());
    let target = h.target("big", |_| {});
    let call = spawn_invoke(&h.scheduler, &target, r#"{"n":1}"#);
    until("the controller asks for room elsewhere", || !elsewhere.0.lock().unwrap().is_empty()).await;
    let taken = h.scheduler.take(&target, Duration::from_secs(5)).await.expect("the queued invocation");
    assert_eq!(&taken.request().payload[..], br#"{"n":1}"#);
    assert_eq!(elsewhere.0.lock().unwrap()[0], ("big".to_string(), 1, 1));
    assert_eq!(h.fake.spawn_count(), 0, "nothing started here");
    // The other node had no room after all: the invocation goes back to this queue, and is taken again.
    let first_id = taken.id().to_string();
    taken.finish(Err(InvokeError::Throttled { reason: "no room there".into(), retry_after_s: 1 }));
    let taken = h.scheduler.take(&target, Duration::from_secs(5)).await.expect("back in the queue");
    assert_eq!(taken.id(), first_id);
    let mut ran = crate::testing::ok_result(taken.id(), "elsewhere");
    ran.node = Some("node-3".into());
    taken.finish(Ok(ran));
    let result = call.await.unwrap().unwrap();
    assert_eq!((result.node.as_deref(), result.outcome), (Some("node-3"), Outcome::Success("elsewhere".into())));

    // A taker already waiting gets the next invocation directly; the node running it lost, its caller is told.
    let waiting = {
        let (scheduler, target) = (h.scheduler.clone(), target.clone());
        tokio::spawn(async move { scheduler.take(&target, Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await; // the taker is waiting
    let call = spawn_invoke(&h.scheduler, &target, r#"{"n":2}"#);
    let taken = waiting.await.unwrap().expect("handed to the waiting taker");
    assert_eq!(&taken.request().payload[..], br#"{"n":2}"#);
    taken.finish(Err(InvokeError::NodeLost("node-3 was lost".into())));
    assert!(matches!(call.await.unwrap(), Err(InvokeError::NodeLost(m)) if m == "node-3 was lost"));
    // A step of an execution with a scratch directory stays with this node's instances: a waiting taker is
    // not handed it, and still gets the next invocation that may move.
    let waiting = {
        let (scheduler, target) = (h.scheduler.clone(), target.clone());
        tokio::spawn(async move { scheduler.take(&target, Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await; // the taker is waiting
    let step = {
        let (scheduler, target) = (h.scheduler.clone(), target.clone());
        let req = InvokeRequest {
            payload: "{}".into(),
            execution: Some(Arc::from("exec-1")),
            scratch: true,
            ..Default::default()
        };
        tokio::spawn(async move { scheduler.invoke(&target, req).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let call = spawn_invoke(&h.scheduler, &target, r#"{"n":3}"#);
    let taken = waiting.await.unwrap().expect("the taker still waits for work that may move");
    assert_eq!(&taken.request().payload[..], br#"{"n":3}"#);
    taken.finish(Err(InvokeError::NodeLost("gone".into())));
    assert!(call.await.unwrap().is_err());
    assert!(h.scheduler.take(&target, Duration::from_millis(50)).await.is_none(), "the step is not handed out");
    step.abort();
}

/// Relays the owner's turn (or release) of a preparation to its copy on the node that took it, as a host
/// does over HTTP in a cluster.
fn relay(there: crate::Prepared, here: crate::Prepared) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match there.turn().await {
            Ok(input) => {
                here.arrive(input);
            }
            Err(why) => {
                here.release(&why);
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preparation_another_node_takes_waits_there_for_the_turn_its_owner_decides() {
    // The queue's owner has no room for a 128 MB instance; the other node has.
    let owner = Harness::with(prepared_step(), |s| {
        s.memory_budget_mb = 100;
        s.memory_overcommit = 1.0;
    });
    owner.scheduler.overflow_to(Arc::new(Elsewhere::default()));
    let host = Harness::new(prepared_step());
    let (at_owner, at_host) = (owner.target("later", |_| {}), host.target("later", |_| {}));
    let id = owner.scheduler.prepare(&at_owner, Arc::from("exec-1"), "{\"p\":1}".into()).expect("prepared");
    let taken = owner.scheduler.take(&at_owner, Duration::from_secs(5)).await.expect("the preparation moves");
    let there = taken.prepared().expect("it is a preparation");
    assert_eq!(there.id(), id);
    let req = taken.request().clone();
    let here = crate::Prepared::relayed(id, req.execution.clone().expect("its execution"), req.payload.clone());
    let run = {
        let (scheduler, target, here) = (host.scheduler.clone(), at_host.clone(), here.clone());
        tokio::spawn(async move { scheduler.invoke_prepared(&target, req, here).await })
    };
    let relaying = relay(there, here);
    until("the prepared instance is held on the other node", || host.scheduler.pool(&at_host).held == 1).await;

    // The execution reaches the step at the owner: the step's result is what the other node's instance
    // made of its preparation and the step's input.
    let step =
        InvokeRequest { payload: "{\"n\":7}".into(), execution: Some(Arc::from("exec-1")), ..Default::default() };
    let stepping = {
        let (scheduler, target) = (owner.scheduler.clone(), at_owner.clone());
        tokio::spawn(async move { scheduler.invoke(&target, step).await })
    };
    let ran = run.await.unwrap().expect("ran on the other node");
    assert!(ran.report.held_ms.is_some(), "it was held for its turn there");
    taken.finish(Ok(ran));
    let result = stepping.await.unwrap().expect("the step's result");
    let Outcome::Success(body) = &result.outcome else { panic!("{:?}", result.outcome) };
    let body: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(body, json!({"params": {"p": 1}, "input": {"n": 7}}));
    relaying.await.unwrap();
    assert_eq!((owner.fake.spawn_count(), host.fake.spawn_count()), (0, 1));

    // Released at the owner (the execution ended): the other node's instance hears why, and the owner's
    // queue is told that preparation ended.
    owner.scheduler.prepare(&at_owner, Arc::from("exec-2"), "{\"p\":2}".into()).expect("prepared");
    let taken = owner.scheduler.take(&at_owner, Duration::from_secs(5)).await.expect("the preparation moves");
    let req = taken.request().clone();
    let here = crate::Prepared::relayed(2, Arc::from("exec-2"), req.payload.clone());
    let relaying = relay(taken.prepared().unwrap(), here.clone());
    let run = {
        let (scheduler, target) = (host.scheduler.clone(), at_host.clone());
        tokio::spawn(async move { scheduler.invoke_prepared(&target, req, here).await })
    };
    until("the instance is held again", || host.scheduler.pool(&at_host).held == 1).await;
    assert_eq!(owner.scheduler.release_reservations("exec-2", None, "the execution ended"), 1);
    relaying.await.unwrap();
    let ran = run.await.unwrap().expect("the preparation ended");
    assert_eq!(
        function_error(&ran),
        (
            "Stoke.ReservationReleased".into(),
            json!({"errorType": "Stoke.ReservationReleased", "errorMessage": "the execution ended"})
        )
    );
    taken.finish(Ok(ran));
    assert_eq!(owner.scheduler.reservations("exec-2"), 0);

    // A preparation whose node was lost before its turn: the step finds no reservation and runs as any
    // other invocation (here it waits in the queue for a taker).
    owner.scheduler.prepare(&at_owner, Arc::from("exec-3"), "{\"p\":3}".into()).expect("prepared");
    let taken = owner.scheduler.take(&at_owner, Duration::from_secs(5)).await.expect("the preparation moves");
    let there = taken.prepared().unwrap();
    taken.finish(Err(InvokeError::NodeLost("node-2 was lost".into())));
    assert!(there.turn().await.is_err(), "released when its preparation was lost");
    let step =
        InvokeRequest { payload: "{\"n\":8}".into(), execution: Some(Arc::from("exec-3")), ..Default::default() };
    let stepping = {
        let (scheduler, target) = (owner.scheduler.clone(), at_owner.clone());
        tokio::spawn(async move { scheduler.invoke(&target, step).await })
    };
    let taken = owner.scheduler.take(&at_owner, Duration::from_secs(5)).await.expect("the step is queued");
    assert!(taken.prepared().is_none(), "the step is no preparation");
    assert_eq!(&taken.request().payload[..], b"{\"n\":8}");
    let ran = crate::testing::ok_result(taken.id(), "plain");
    taken.finish(Ok(ran));
    assert_eq!(stepping.await.unwrap().unwrap().outcome, Outcome::Success("plain".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_history_counts_each_slots_invocations_cold_starts_and_durations() {
    let h = Harness::new(Script::echo());
    let target = h.target("resize", |_| {});
    h.tick();
    for i in 0..4 {
        h.ok(&target, &format!("{i}")).await;
        h.idle(&target, 1).await;
    }
    assert!(h.scheduler.node_history().is_empty(), "no slot has ended yet");
    h.clock.advance(stoke_core::history::SLOT);
    h.tick();
    let points = h.scheduler.node_history();
    assert_eq!(points.len(), 1, "{points:?}");
    let p = &points[0];
    assert_eq!((p.invocations, p.cold_starts, p.errors, p.throttles, p.queued), (4, 1, 0, 0, 0), "{p:?}");
    assert_eq!(p.invocations_per_s, 0.4);
    assert!(p.p50_ms.is_some_and(|ms| ms > 0.0) && p.p99_ms >= p.p50_ms, "{p:?}");
    // The function's own count, for the functions list.
    let activity = h.scheduler.activity(&target.account)[target.function.as_str()];
    assert_eq!((activity.invocations, activity.errors), (4, 0));
    assert!(activity.last_invoked_ms > 1_700_000_000_000, "{activity:?}");
    // A quiet slot is recorded too, empty: the chart shows the gap.
    h.clock.advance(stoke_core::history::SLOT);
    h.tick();
    let points = h.scheduler.node_history();
    assert_eq!(points.len(), 2);
    assert_eq!((points[1].invocations, points[1].p50_ms), (0, None));
}
