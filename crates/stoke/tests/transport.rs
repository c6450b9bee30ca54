//! What one client may hold: slow-loris heads, slow bodies and idle connections are cut off by the
//! server's timeouts while other clients are served; a connection over the limit is answered 503; a request
//! head over the limit is a 431.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

fn addr(s: &TestServer) -> String {
    s.url.trim_start_matches("http://").to_string()
}

/// What the server sent on `stream` until it closed it (or `wait` passed): its bytes, and whether it closed.
fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                return (got, false)
            }
            Err(_) => return (got, true), // reset: closed by the server
        }
    }
}

/// The `pct`th percentile (0-100) of sorted times.
fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    sorted[(sorted.len() - 1) * pct / 100]
}

#[test]
fn a_thousand_slow_and_idle_connections_do_not_stop_the_api_and_are_cut_off() {
    // The test holds a thousand sockets itself.
    let limit = stoke_sandbox::raise_open_files_limit(8192).unwrap();
    assert!(limit >= 2048, "this test needs 2048 open files; the hard limit allows {limit}");
    let s = TestServer::start_with(&["--header-timeout", "2", "--body-timeout", "2"]);
    let addr = addr(&s);

    // A baseline for the normal client, alone.
    let normal = |n: usize| -> Vec<Duration> {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let (status, body) = s.get("/v1/functions");
            assert_eq!(status, 200, "a normal client must be answered: {body}");
            times.push(t.elapsed());
        }
        times.sort();
        times
    };
    let alone = normal(200);

    // 1,000 hostile connections: a third idle, a third sending their head a header every 200 ms (slow-loris),
    // a third sending a body a byte every 200 ms.
    let mut idle = Vec::new();
    let mut loris = Vec::new();
    let mut slow_body = Vec::new();
    for i in 0..1000 {
        let mut c = TcpStream::connect(&addr).unwrap();
        match i % 3 {
            0 => idle.push(c),
            1 => {
                c.write_all(b"GET /v1/functions HTTP/1.1\r\nhost: x\r\n").unwrap();
                loris.push(c);
            }
            _ => {
                let head = format!(
                    "POST /v1/functions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
                     content-type: application/json\r\ncontent-length: 100000\r\n\r\n{{",
                    s.api_key
                );
                c.write_all(head.as_bytes()).unwrap();
                slow_body.push(c);
            }
        }
    }
    let opened = Instant::now();
    let trickle = std::thread::scope(|scope| {
        let trickler = scope.spawn(|| {
            let mut writes = 0usize;
            while opened.elapsed() < Duration::from_secs(5) {
                for c in loris.iter_mut() {
                    writes += usize::from(c.write_all(b"x-slow: 1\r\n").is_ok());
                }
                for c in slow_body.iter_mut() {
                    writes += usize::from(c.write_all(b" ").is_ok());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            writes
        });
        let under_load = normal(200);
        (under_load, trickler.join().unwrap())
    });
    let (under_load, writes) = trickle;
    println!(
        "normal client, 200 GET /v1/functions: alone p50 {:?} p99 {:?} max {:?}; beside 1,000 slow/idle \
         connections p50 {:?} p99 {:?} max {:?} ({writes} trickled writes)",
        percentile(&alone, 50),
        percentile(&alone, 99),
        alone.last().unwrap(),
        percentile(&under_load, 50),
        percentile(&under_load, 99),
        under_load.last().unwrap(),
    );

    // Past the timeouts every hostile connection has been closed by the server; the slow bodies were told
    // why (408) before.
    for (kind, conns) in [("idle", &mut idle), ("slow-loris", &mut loris)] {
        let open =
            conns.iter_mut().map(|c| read_until_closed(c, Duration::from_secs(3)).1).filter(|closed| !closed).count();
        assert_eq!(open, 0, "{open} {kind} connection(s) still open after the header timeout");
    }
    let mut timed_out = 0;
    for c in slow_body.iter_mut() {
        let (got, closed) = read_until_closed(c, Duration::from_secs(3));
        assert!(closed, "a slow body's connection is still open after the body timeout");
        let got = String::from_utf8_lossy(&got);
        if got.starts_with("HTTP/1.1 408") {
            assert!(got.contains("request_timeout"), "{got}");
            timed_out += 1;
        } else {
            assert!(got.is_empty(), "a slow body got something else than a 408: {got}");
        }
    }
    assert!(timed_out > 300 / 2, "most slow bodies are answered 408 request_timeout; {timed_out} of 333 were");
    // And the server still answers.
    assert_eq!(s.get("/v1/functions").0, 200);
}

#[test]
fn a_connection_over_the_limit_is_answered_503_and_the_server_recovers_when_clients_go() {
    let s = TestServer::start_with(&["--max-connections", "20"]);
    let addr = addr(&s);
    let held: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    // Each held connection has been accepted once one of them can be asked something.
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(&addr).unwrap();
    extra.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let (got, closed) = read_until_closed(&mut extra, Duration::from_secs(5));
    let got = String::from_utf8_lossy(&got);
    assert!(closed, "the refused connection is closed");
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.contains("too_many_connections") && got.to_lowercase().contains("retry-after: 1"), "{got}");

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = s.http_plain(reqwest::Method::GET, "/healthz").send().map(|r| r.status().as_u16());
        if status.as_ref().is_ok_and(|s| *s == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not take connections again: {status:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_request_head_over_the_limit_is_431() {
    let s = TestServer::start_with(&["--max-header-kb", "16"]);
    let mut c = TcpStream::connect(addr(&s)).unwrap();
    let head = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(20 * 1024));
    let _ = c.write_all(head.as_bytes());
    let (got, _) = read_until_closed(&mut c, Duration::from_secs(5));
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    // A head within the limit is served.
    let (status, _) = s.call(s.http_plain(reqwest::Method::GET, "/healthz").header("x-big", "a".repeat(8 * 1024)));
    assert_eq!(status, 200);
}

#[test]
fn the_server_serves_on_the_threads_asked_for_one_per_four_cores_by_default_and_refuses_none() {
    let asked = TestServer::start_with(&["--worker-threads", "3"]);
    let (status, node) = asked.get("/v1/node");
    assert_eq!(status, 200, "{node}");
    assert_eq!(node["serving_threads"], 3, "{node}");
    // Served on those threads, the API and an instance's Runtime API both work.
    python_fn(&asked, "threads", "def handler(event, context):\n    return event\n", serde_json::json!({}));
    for n in 0..3 {
        let (status, error, answer) = invoke_function(&asked, "threads", serde_json::json!({ "n": n }));
        assert_eq!((status, error), (200, None), "{answer}");
        assert_eq!(answer["n"], n, "{answer}");
    }

    let default = TestServer::start();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let (_, node) = default.get("/v1/node");
    assert_eq!(node["serving_threads"], cores.div_ceil(4), "{cores} cores: {node}");

    let none = std::process::Command::new(BIN).args(["server", "--worker-threads", "0"]).output().unwrap();
    assert!(!none.status.success());
    let said = String::from_utf8_lossy(&none.stderr);
    assert!(said.contains("--worker-threads") && said.contains("0 is not in 1..=1024"), "{said}");
}
