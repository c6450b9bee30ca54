use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::*;
use crate::InstancePaths;

/// A request the stand-in endpoint received, and whether the instance's control says the instance opened
/// its connection.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    body: Vec<u8>,
    owned: bool,
}

/// A stand-in Runtime API endpoint: hands out the invocations in `work` (then holds `next` open), answers
/// every POST with 202, and reports each request.
async fn endpoint(
    work: Vec<(&'static str, &'static str)>,
) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>, Arc<Mutex<Option<Arc<FakeInstance>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let control: Arc<Mutex<Option<Arc<FakeInstance>>>> = Arc::default();
    let seen_control = control.clone();
    tokio::spawn(async move {
        let mut work = work.into_iter();
        let mut held = Vec::new();
        loop {
            let (mut stream, peer) = listener.accept().await.unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            let (head_end, length) = loop {
                let n = stream.read(&mut buf).await.unwrap();
                raw.extend_from_slice(&buf[..n]);
                if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    break (end + 4, length);
                }
            };
            while raw.len() < head_end + length {
                let n = stream.read(&mut buf).await.unwrap();
                raw.extend_from_slice(&buf[..n]);
            }
            let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
            let mut first = head.split(' ');
            let (method, path) = (first.next().unwrap().to_string(), first.next().unwrap().to_string());
            let local = stream.local_addr().unwrap();
            let owned = lock(&seen_control).as_ref().is_some_and(|c| c.opened_connection(local, peer));
            let _ = tx.send(Seen { method: method.clone(), path: path.clone(), body: raw[head_end..].to_vec(), owned });
            let reply = if method == "GET" {
                match work.next() {
                    Some((id, body)) => format!(
                        "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: {id}\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    ),
                    None => {
                        // No more work: `next` stays open, as a real endpoint holds it.
                        held.push(stream);
                        continue;
                    }
                }
            } else {
                // A chunked answer, as hyper writes a body of unknown length.
                "HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n".to_string()
            };
            stream.write_all(reply.as_bytes()).await.unwrap();
            let _ = stream.shutdown().await;
        }
    });
    (addr, rx, control)
}

fn spec(endpoint: SocketAddr, function: &str) -> SpawnSpec {
    let tmp = std::env::temp_dir();
    SpawnSpec {
        host: InstancePaths { task_root: tmp.clone(), runtime_dir: tmp.clone(), scratch: tmp.clone() },
        host_dirs: Vec::new(),
        program: "/var/task/bootstrap".into(),
        args: Vec::new(),
        env: vec![
            ("AWS_LAMBDA_RUNTIME_API".into(), endpoint.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME".into(), function.into()),
        ],
        cwd: tmp,
        memory_mb: 128,
        ephemeral_mb: 512,
        cpu_millis: 72,
        open_files: 64,
        layers: Vec::new(),
        image: None,
        isolated_network: false,
        runtime_api_port: endpoint.port(),
        gpu: None,
    }
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("a request in time").expect("open")
}

#[tokio::test]
async fn a_scripted_runtime_pulls_answers_and_is_known_by_its_connections() {
    let (addr, mut seen, control) = endpoint(vec![("r1", "{\"n\":1}"), ("r2", "bad")]).await;
    let fake = FakeSandbox::new(Script::echo());
    fake.script_for(
        "f",
        Script::reply(|inv| {
            if inv.body_str() == "bad" {
                Action::fail("ValueError", "not JSON")
            } else {
                Action::respond(format!("got {} for {}", inv.body_str(), inv.request_id))
            }
        }),
    );
    let spawned = fake.spawn(&spec(addr, "f")).unwrap();
    let instance = fake.instance(spawned.control.pid()).unwrap();
    *lock(&control) = Some(instance.clone());
    let next = recv(&mut seen).await;
    assert_eq!((next.method.as_str(), next.path.as_str()), ("GET", "/2018-06-01/runtime/invocation/next"));
    assert!(next.owned, "the instance opened its connection");
    let response = recv(&mut seen).await;
    assert_eq!(response.path, "/2018-06-01/runtime/invocation/r1/response");
    assert_eq!(String::from_utf8(response.body).unwrap(), "got {\"n\":1} for r1");
    assert_eq!(recv(&mut seen).await.path, "/2018-06-01/runtime/invocation/next");
    let error = recv(&mut seen).await;
    assert_eq!(error.path, "/2018-06-01/runtime/invocation/r2/error");
    let body: serde_json::Value = serde_json::from_slice(&error.body).unwrap();
    assert_eq!(body, serde_json::json!({"errorType": "ValueError", "errorMessage": "not JSON"}));
    assert_eq!(recv(&mut seen).await.path, "/2018-06-01/runtime/invocation/next", "asks again, held open");
    assert_eq!(instance.invocations(), 2);
    // A connection the runtime did not open is not its own.
    let outsider = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(!spawned.control.opened_connection(outsider.peer_addr().unwrap(), outsider.local_addr().unwrap()));
    assert_eq!(fake.running(), 1);
}

#[tokio::test]
async fn killing_an_instance_stops_its_runtime_and_ends_it_with_sigkill() {
    let (addr, mut seen, _) = endpoint(vec![("r1", "{}")]).await;
    let fake = FakeSandbox::new(Script::reply(|_| Action::Hang));
    let spawned = fake.spawn(&spec(addr, "f")).unwrap();
    recv(&mut seen).await;
    spawned.control.kill();
    let status = tokio::time::timeout(Duration::from_secs(5), spawned.exit).await.unwrap().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(fake.killed(), vec![spawned.control.pid()]);
    assert_eq!(fake.running(), 0);
    assert!(seen.try_recv().is_err(), "the hanging invocation was never answered");
}

#[tokio::test]
async fn exits_are_reported_with_their_status() {
    let (addr, mut seen, _) = endpoint(vec![("r1", "{}")]).await;
    let fake = FakeSandbox::new(Script::reply(|_| Action::Exit(3)));
    fake.script_for("oom", Script::reply(|_| Action::OutOfMemory));
    let spawned = fake.spawn(&spec(addr, "f")).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), spawned.exit).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(3));
    assert!(!spawned.control.out_of_memory());
    assert!(fake.killed().is_empty(), "it exited on its own");
    recv(&mut seen).await;

    let (addr, _seen, _) = endpoint(vec![("r1", "{}")]).await;
    let spawned = fake.spawn(&spec(addr, "oom")).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), spawned.exit).await.unwrap().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(spawned.control.out_of_memory());
}

#[tokio::test]
async fn an_init_error_is_reported_before_the_runtime_exits() {
    let (addr, mut seen, _) = endpoint(vec![]).await;
    let fake = FakeSandbox::new(
        Script::echo().init(Init::Error { error_type: "Runtime.ImportModuleError".into(), message: "no numpy".into() }),
    );
    let spawned = fake.spawn(&spec(addr, "f")).unwrap();
    let report = recv(&mut seen).await;
    assert_eq!((report.method.as_str(), report.path.as_str()), ("POST", "/2018-06-01/runtime/init/error"));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&report.body).unwrap()["errorMessage"], "no numpy");
    let status = tokio::time::timeout(Duration::from_secs(5), spawned.exit).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(1));
}

#[tokio::test]
async fn handlers_write_to_the_instances_output() {
    let (addr, _seen, _) = endpoint(vec![("r1", "{}")]).await;
    let fake = FakeSandbox::new(Script::handler(|inv, api| async move {
        api.print(&format!("handling {}", inv.request_id));
        Action::Exit(0)
    }));
    let spawned = fake.spawn(&spec(addr, "f")).unwrap();
    let mut out = String::new();
    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(spawned.stdout.unwrap()).unwrap();
    // Reads to the end: the pipe closes when the runtime ends.
    tokio::time::timeout(Duration::from_secs(5), pipe.read_to_string(&mut out)).await.unwrap().unwrap();
    assert_eq!(out, "handling r1\n");
}

#[tokio::test]
async fn memory_answers_and_spawn_failures_are_the_tests_to_set() {
    let (addr, _seen, _) = endpoint(vec![]).await;
    let fake = FakeSandbox::new(Script::echo().init(Init::Hang));
    assert_eq!((fake.instances_memory_bytes(), fake.memory_limit()), (None, None));
    assert!(fake.limit_instances_memory(1 << 30));
    fake.set_instances_memory(Some(5 << 20));
    fake.set_peak_memory(Some(7 << 20));
    assert_eq!((fake.instances_memory_bytes(), fake.memory_limit()), (Some(5 << 20), Some(1 << 30)));
    let spawned = fake.spawn(&spec(addr, "f")).unwrap();
    assert_eq!(spawned.control.peak_memory_bytes(), Some(7 << 20));
    assert!(!spawned.control.freeze(true), "no freezing unless asked for");
    fake.set_can_freeze(true);
    assert!(spawned.control.freeze(true));
    assert!(fake.spawned()[0].is_frozen());
    fake.fail_spawns(Some((io::ErrorKind::NotFound, "no such bootstrap")));
    assert_eq!(fake.spawn(&spec(addr, "f")).unwrap_err().to_string(), "no such bootstrap");
    assert_eq!(fake.spawn_count(), 1, "a failed spawn starts nothing");
    fake.fail_next_spawns(1, io::ErrorKind::ResourceBusy, "device busy");
    assert_eq!(fake.spawn(&spec(addr, "f")).unwrap_err().kind(), io::ErrorKind::ResourceBusy);
    let again = fake.spawn(&spec(addr, "f")).unwrap();
    assert_eq!(fake.spawn_count(), 2, "only the first of the two failed");
    drop(again);
    // Nobody waits for the instance any more: it is killed, as a child process would be.
    drop(spawned);
    let status = fake.spawned()[0].exited(Duration::from_secs(5)).await;
    assert_eq!(status.and_then(|s| s.signal()), Some(libc::SIGKILL));
}

#[test]
fn responses_parse_with_a_length_chunked_or_to_the_end() {
    let r = client::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhiextra").unwrap();
    assert_eq!((r.status, r.header("x-a"), r.body.as_slice()), (200, Some("b"), b"hi".as_slice()));
    let r =
        client::parse(b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (202, b"abcde".as_slice()));
    let r = client::parse(b"HTTP/1.1 410 Gone\r\n\r\n{\"errorType\":\"Runtime.Evicted\"}").unwrap();
    assert_eq!((r.status, r.json()["errorType"].as_str()), (410, Some("Runtime.Evicted")));
    assert!(client::parse(b"HTTP/1.1 200 OK\r\n").is_err());
}
