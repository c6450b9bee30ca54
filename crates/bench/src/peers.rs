//! What stoke's warm rows are measured against, in the same rounds: the floor (one loopback HTTP hop to a
//! trivial server), the handler called in-process, a fork-per-request baseline and `cargo lambda watch`.

use std::io::{self, BufRead, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::loadgen::RawClient;

/// The floor: one loopback HTTP hop to a trivial server that answers `null`.
pub fn start_floor() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().route("/", axum::routing::post(|| async { "null" }));
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok(format!("http://{addr}/"))
}

/// Reads one HTTP/1.1 message (head and `Content-Length` body) from `conn`; `None` at a clean end of stream.
pub fn read_message(conn: &mut impl BufRead) -> io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(1024);
    while !buf.ends_with(b"\r\n\r\n") {
        if conn.read_until(b'\n', &mut buf)? == 0 {
            return if buf.is_empty() { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

/// The fork-per-request baseline: a process of `bootstrap` started for one invocation, served a one-shot
/// Runtime API on its own loopback port, and killed once it answered — what a platform without warm
/// instances costs.
fn fork_once(bootstrap: &Path, event: &[u8]) -> io::Result<Vec<u8>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut child = Command::new(bootstrap)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "fork")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/fork")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "fork")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // A child that dies before connecting would leave accept() waiting: a watchdog connects after 10 s.
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(10));
            if !done.load(Ordering::Relaxed) {
                let _ = TcpStream::connect(addr);
            }
        })
    };
    let result = (|| {
        let deadline = std::time::SystemTime::now() + Duration::from_secs(60);
        let deadline_ms = deadline.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let mut delivered = false;
        loop {
            let (conn, _) = listener.accept()?;
            conn.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut conn = io::BufReader::new(conn);
            // One request per connection: every answer closes it.
            let Some((head, body)) = read_message(&mut conn)? else { continue };
            {
                let path = head.split(' ').nth(1).unwrap_or_default();
                if path.ends_with("/invocation/next") && !delivered {
                    delivered = true;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nConnection: close\r\nLambda-Runtime-Aws-Request-Id: fork-1\r\nLambda-Runtime-Deadline-Ms: {deadline_ms}\r\n\
                         Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:fork\r\n\
                         Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\n\
                         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        event.len()
                    );
                    conn.get_mut().write_all(reply.as_bytes())?;
                    conn.get_mut().write_all(event)?;
                } else if path.ends_with("/response") || path.ends_with("/error") {
                    conn.get_mut()
                        .write_all(b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")?;
                    return if path.ends_with("/response") {
                        Ok(body)
                    } else {
                        Err(io::Error::other(String::from_utf8_lossy(&body).into_owned()))
                    };
                } else {
                    return Err(io::Error::other(format!("unexpected request from the function: {path}")));
                }
            }
        }
    })();
    done.store(true, Ordering::Relaxed);
    let _ = child.kill();
    let _ = child.wait();
    drop(watchdog);
    result
}

/// Serves the fork-per-request baseline on a loopback port: every `POST /` starts `bootstrap` once.
fn start_fork_server(bootstrap: PathBuf) -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let bootstrap = Arc::new(bootstrap);
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() else { return };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            let app = axum::Router::new().route(
                "/",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let bootstrap = bootstrap.clone();
                    async move {
                        let ran = tokio::task::spawn_blocking(move || fork_once(&bootstrap, &body)).await;
                        match ran {
                            Ok(Ok(out)) => (axum::http::StatusCode::OK, out),
                            Ok(Err(e)) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string().into_bytes()),
                            Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string().into_bytes()),
                        }
                    }
                }),
            );
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok(format!("http://{addr}/"))
}

/// `cargo lambda watch` serving the rust function's project; killed with its process group on drop.
pub struct CargoLambda {
    child: Child,
    pub url: String,
}

impl Drop for CargoLambda {
    fn drop(&mut self) {
        let pgid = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &pgid]).status();
        let _ = self.child.wait();
    }
}

/// Starts `cargo lambda watch --release` on tests/functions/rust-echo (built into target/functions, where
/// scripts/bench built it) and waits until it answers an invocation. `None` when cargo-lambda is missing.
pub fn start_cargo_lambda() -> Result<Option<CargoLambda>> {
    if Command::new("cargo-lambda").arg("--version").output().is_err() {
        eprintln!("peers: cargo-lambda is not installed (scripts/bench installs it); its row is left out");
        return Ok(None);
    }
    let project = Path::new("tests/functions/rust-echo");
    if !project.join("Cargo.toml").is_file() {
        eprintln!("peers: run the benchmark from the repository's root to include cargo lambda watch");
        return Ok(None);
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    use std::os::unix::process::CommandExt;
    let target = std::env::current_dir()?.join("target/functions");
    let child = Command::new("cargo-lambda")
        .args(["lambda", "watch", "--release", "--ignore-changes", "--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &port.to_string()])
        .current_dir(project)
        .env("CARGO_TARGET_DIR", target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("cannot start cargo lambda watch")?;
    let watch =
        CargoLambda { child, url: format!("http://127.0.0.1:{port}/2015-03-31/functions/bootstrap/invocations") };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(mut c) = RawClient::new(&watch.url, None, br#"{"noop":1}"#) {
            if c.exchange().is_ok_and(|r| r.status == 200) {
                return Ok(Some(watch));
            }
        }
        if Instant::now() > deadline {
            bail!("cargo lambda watch did not answer within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The handler's floor: the rust no-op's work (parse the event, run the handler, serialise the answer)
/// called in-process, with no transport. Nanoseconds per call.
pub fn in_process_ns(seconds: f64) -> f64 {
    fn handler(event: Value) -> Option<Value> {
        event.get("noop").map(|_| Value::Null)
    }
    let event = br#"{"noop":1}"#;
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for _ in 0..1000 {
            let parsed: Value = serde_json::from_slice(std::hint::black_box(event)).unwrap_or(Value::Null);
            let out = serde_json::to_vec(&handler(parsed)).unwrap_or_default();
            std::hint::black_box(out);
        }
        calls += 1000;
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

/// Warm rows that come from outside stoke, measured in the core scenario's rounds next to stoke's rows.
pub struct Peers {
    /// Name, URL and, for a peer that is a process of its own, that process (whose CPU time is measured).
    pub rows: Vec<(String, String, Option<u32>)>,
    _cargo_lambda: Option<CargoLambda>,
}

/// The fork-per-request baseline running `bootstrap`, and `cargo lambda watch` unless left out.
pub fn peers(bootstrap: &Path, cargo_lambda: bool) -> Result<Peers> {
    let mut rows =
        vec![("peer: fork-per-request (rust)".to_string(), start_fork_server(bootstrap.to_path_buf())?, None)];
    let watch = if cargo_lambda { start_cargo_lambda()? } else { None };
    if let Some(w) = &watch {
        rows.push(("peer: cargo lambda watch (rust)".to_string(), w.url.clone(), Some(w.child.id())));
    }
    Ok(Peers { rows, _cargo_lambda: watch })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fork_baseline_serves_one_invocation_per_process() {
        // A shell "function" speaking the Runtime API with curl is not available everywhere; a missing
        // binary must come back as an error, not a hang.
        let err = fork_once(Path::new("/nonexistent/bootstrap"), b"{}").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn reads_http_messages_with_and_without_bodies() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\nPOST /r HTTP/1.1\r\ncontent-length: 4\r\n\r\nnull")
                .unwrap();
        });
        let mut conn = io::BufReader::new(listener.accept().unwrap().0);
        let (head, body) = read_message(&mut conn).unwrap().unwrap();
        assert!(head.starts_with("GET /next "));
        assert!(body.is_empty());
        let (head, body) = read_message(&mut conn).unwrap().unwrap();
        assert!(head.starts_with("POST /r "));
        assert_eq!(body, b"null");
        writer.join().unwrap();
        assert!(read_message(&mut conn).unwrap().is_none());
    }
}
