//! `stoke-bench --scenarios schedules`: what schedules cost a node. The server's CPU while idle with no
//! schedules and with 10,000 (none due for a day: a node that polled each schedule would pay for every one
//! of them each tick), side by side in one run; then 1,000 one-time schedules due at the same second: how
//! late each fire was (the store's record of when it was dealt with, against when it was due) and the
//! server's CPU per fire.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::harness::{b64, on_threads, percentile, process_cpu_ns, start_server, table, zip_with};

#[derive(Debug, clap::Args)]
pub struct SchedulesArgs {
    /// Schedules that wait (none fires during the run), for the idle figure.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    idle_schedules: usize,
    /// One-time schedules due at the same second, for the lateness figure.
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    same_second: usize,
    /// Seconds the idle CPU is measured over, each way.
    #[arg(long, default_value_t = 20.0, value_name = "S")]
    idle_seconds: f64,
}

/// Server CPU (ms) per second over `seconds`.
fn idle_cpu(pid: u32, seconds: f64) -> Result<f64> {
    let before = process_cpu_ns(pid).context("cannot read the server's CPU time")?;
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let after = process_cpu_ns(pid).context("cannot read the server's CPU time")?;
    Ok((after - before) as f64 / 1e6 / seconds)
}

fn ms_of(v: &Value) -> Option<i64> {
    v.as_str()?.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

pub fn run(args: &SchedulesArgs) -> Result<Value> {
    let server = start_server("schedules", &[])?;
    let noop = zip_with("app.py", 0o644, b"def handler(e, c):\n    return None\n")?;
    server.send(
        reqwest::Method::POST,
        "/v1/functions",
        Some(json!({"name": "tick", "runtime": "python3.12", "handler": "app.handler", "code_base64": b64(&noop)})),
    )?;
    let pid = server.pid();
    // Let start-up work settle, then the idle node with no schedules.
    std::thread::sleep(Duration::from_secs(2));
    let empty = idle_cpu(pid, args.idle_seconds)?;

    let made = Instant::now();
    on_threads(0..args.idle_schedules, 4, |i| {
        let expression = match i % 3 {
            0 => "rate(1 day)".to_string(),
            1 => format!("cron({} {} * * ? *)", i % 60, (i / 60) % 24),
            _ => "at(2099-01-01T00:00:00)".to_string(),
        };
        server.send(
            reqwest::Method::POST,
            "/v1/schedules",
            Some(json!({"name": format!("wait-{i}"), "expression": expression, "target": {"function": "tick"},
                        "start": "2099-01-01T00:00:00Z"})),
        )?;
        Ok(())
    })?;
    let create_s = made.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let full = idle_cpu(pid, args.idle_seconds)?;

    // 1,000 due at the same second, far enough ahead to create them all first.
    let created_in = Duration::from_secs_f64((args.same_second as f64 / 150.0).max(5.0) + 5.0);
    let due =
        jiff::Timestamp::now().checked_add(jiff::SignedDuration::try_from(created_in)?)?.round(jiff::Unit::Second)?;
    let at = due.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    on_threads(0..args.same_second, 4, |i| {
        server.send(
            reqwest::Method::POST,
            "/v1/schedules",
            Some(
                json!({"name": format!("now-{i}"), "expression": format!("at({at})"), "target": {"function": "tick"}}),
            ),
        )?;
        Ok(())
    })?;
    let wait = due.as_millisecond() - jiff::Timestamp::now().as_millisecond();
    anyhow::ensure!(wait > 500, "creating the schedules took past their due time; run with a smaller --same-second");
    std::thread::sleep(Duration::from_millis(u64::try_from(wait - 500).unwrap_or(0)));
    let cpu_before = process_cpu_ns(pid).context("cannot read the server's CPU time")?;
    // Every fire dealt with (the list shows when), or a minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut late = Vec::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        late.clear();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = "/v1/schedules?prefix=now-&limit=1000".to_string();
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = server.send(reqwest::Method::GET, &path, None)?;
            for s in page["schedules"].as_array().into_iter().flatten() {
                if let (Some(fired), Some(due)) = (ms_of(&s["last_fired_at"]), ms_of(&s["last_fire"])) {
                    late.push(u64::try_from(fired - due).unwrap_or(0));
                }
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        if late.len() >= args.same_second {
            break;
        }
    }
    let cpu_after = process_cpu_ns(pid).context("cannot read the server's CPU time")?;
    late.sort_unstable();
    let fired = late.len();
    // The server's CPU from just before the second until every fire was dealt with: the fires, and the server's
    // share of running their invocations (a no-op each) that started meanwhile.
    let cpu_per_fire_us = (cpu_after - cpu_before) as f64 / 1e3 / fired.max(1) as f64;
    // Milliseconds: the store keeps times to the millisecond.
    let (p50, p99, max) =
        (percentile(&late, 0.5), percentile(&late, 0.99), late.last().copied().unwrap_or_default() as f64);

    let mut t = table(&["figure", "value"]);
    t.add_row(vec![format!("server CPU idle, 0 schedules"), format!("{empty:.3} ms/s")]);
    t.add_row(vec![format!("server CPU idle, {} schedules", args.idle_schedules), format!("{full:.3} ms/s")]);
    t.add_row(vec!["ratio".to_string(), format!("{:.2}×", full / empty.max(1e-9))]);
    t.add_row(vec![
        format!("creating {} schedules", args.idle_schedules),
        format!("{create_s:.1} s ({:.0}/s)", args.idle_schedules as f64 / create_s),
    ]);
    t.add_row(vec![format!("fires dealt with, of {} due at {at}Z", args.same_second), fired.to_string()]);
    t.add_row(vec!["lateness p50 / p99 / max".to_string(), format!("{p50:.0} / {p99:.0} / {max:.0} ms")]);
    t.add_row(vec![
        "server CPU per fire (with its share of running the no-op it queued)".to_string(),
        format!("{cpu_per_fire_us:.0} µs"),
    ]);
    println!("\nschedules: idle cost and fire lateness\n{t}");
    Ok(json!({
        "idle_cpu_ms_per_s": {"none": empty, "schedules": full, "count": args.idle_schedules},
        "create_s": create_s,
        "same_second": {"due": args.same_second, "fired": fired, "lateness_ms": {"p50": p50, "p99": p99, "max": max},
                        "cpu_per_fire_us": cpu_per_fire_us},
    }))
}
