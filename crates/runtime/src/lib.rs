//! stoke's runtime interfaces (seed 000) for Rust functions, next to `lambda_runtime`.
//!
//! A workflow step reserves an instance of a later step's function with [`prepare`]; the prepared
//! instance reads its preparation input with [`prepared_params`], does its own preparation (e.g. downloads
//! its input), then blocks in [`wait_turn`] until the execution reaches its step, which returns the step's
//! input. [`is_available`] tells whether a function has an idle instance to spare; [`scratch`] names the
//! directory the steps of the execution share.
//!
//! ```no_run
//! # fn handle(event: serde_json::Value) -> Result<serde_json::Value, stoke_runtime::Error> {
//! let event = match stoke_runtime::prepared_params()? {
//!     Some(params) => {
//!         // prefetch what `params` names, then:
//!         stoke_runtime::wait_turn()?
//!     }
//!     None => event,
//! };
//! # Ok(event) }
//! ```
//!
//! The calls are blocking (std only, one short HTTP request to the instance's own Runtime API endpoint); in
//! an async handler, wrap `wait_turn` in `tokio::task::spawn_blocking`.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The prepared instance's turn will not come (the reservation expired, or the execution took another
    /// branch or ended): end the invocation.
    Released(String),
    /// The platform refused the request: its HTTP status, machine-readable code and sentence.
    Refused { status: u16, code: String, message: String },
    /// Not running on stoke, or the endpoint could not be reached.
    Io(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Released(why) => write!(f, "Stoke.ReservationReleased: {why}"),
            Error::Refused { status, code, message } => write!(f, "{code} ({status}): {message}"),
            Error::Io(e) => write!(f, "cannot reach the Runtime API: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// A reservation made by [`prepare`].
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub id: String,
    pub function: String,
    pub version: String,
    pub expires_in_ms: u64,
}

/// The workflow step an instance was started for (see [`origin`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// The execution; [`prepare`] during init reserves for its later steps.
    pub execution: String,
    /// The step's input (for a preparation, its preparation input).
    pub event: Value,
    /// The step is a preparation started by `prepare`.
    pub prepared: bool,
}

/// The instance's Runtime API endpoint (`host:port`).
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: String,
}

impl Client {
    /// The endpoint of `AWS_LAMBDA_RUNTIME_API`.
    pub fn from_env() -> Result<Client, Error> {
        std::env::var("AWS_LAMBDA_RUNTIME_API")
            .map(|endpoint| Client { endpoint })
            .map_err(|_| Error::Io("AWS_LAMBDA_RUNTIME_API is not set: not running on stoke".into()))
    }

    pub fn new(endpoint: impl Into<String>) -> Client {
        Client { endpoint: endpoint.into() }
    }

    fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Vec<u8>, Error> {
        let io = |e: std::io::Error| Error::Io(e.to_string());
        let mut stream = TcpStream::connect(&self.endpoint).map_err(io)?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} /2018-06-01/stoke{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: \
             application/json\r\nContent-Length: {}\r\n\r\n",
            self.endpoint,
            body.len()
        );
        stream.write_all(head.as_bytes()).map_err(io)?;
        stream.write_all(body).map_err(io)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(io)?;
        let (status, body) = parse_response(&raw).ok_or_else(|| Error::Io("malformed HTTP response".into()))?;
        if status < 400 {
            return Ok(body);
        }
        let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let text = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let code = text("errorType");
        if code == "Stoke.ReservationReleased" {
            return Err(Error::Released(text("errorMessage")));
        }
        Err(Error::Refused { status, code, message: text("errorMessage") })
    }

    /// See [`prepare`].
    pub fn prepare(&self, function: &str, params: &Value) -> Result<Reservation, Error> {
        let body = serde_json::json!({ "function": function, "params": params }).to_string();
        let doc: Value = json(&self.call("POST", "/prepare", Some(body.as_bytes()))?)?;
        let text = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        Ok(Reservation {
            id: text("reservationId"),
            function: text("function"),
            version: text("version"),
            expires_in_ms: doc.get("expiresInMs").and_then(Value::as_u64).unwrap_or(0),
        })
    }

    /// See [`prepared_params`].
    pub fn prepared_params(&self) -> Result<Option<Value>, Error> {
        match self.call("GET", "/prepared", None) {
            Ok(body) => json(&body).map(Some),
            Err(Error::Refused { code, .. }) if code == "Stoke.NotPrepared" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// See [`wait_turn`].
    pub fn wait_turn(&self) -> Result<Value, Error> {
        json(&self.call("GET", "/turn", None)?)
    }

    /// See [`scratch`].
    pub fn scratch(&self) -> Result<Option<std::path::PathBuf>, Error> {
        match self.call("GET", "/scratch", None) {
            Ok(body) => Ok(json(&body)?.get("path").and_then(Value::as_str).map(std::path::PathBuf::from)),
            Err(Error::Refused { code, .. }) if code == "Stoke.NoScratch" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// See [`origin`].
    pub fn origin(&self) -> Result<Option<Origin>, Error> {
        match self.call("GET", "/origin", None) {
            Ok(body) => {
                let doc = json(&body)?;
                Ok(Some(Origin {
                    execution: doc.get("execution").and_then(Value::as_str).unwrap_or_default().to_string(),
                    event: doc.get("event").cloned().unwrap_or(Value::Null),
                    prepared: doc.get("prepared").and_then(Value::as_bool).unwrap_or(false),
                }))
            }
            Err(Error::Refused { code, .. }) if code == "Stoke.NoOrigin" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// See [`is_available`].
    pub fn is_available(&self, function: &str) -> Result<bool, Error> {
        let path = format!("/available/{}", escape(function));
        Ok(json(&self.call("GET", &path, None)?)?.get("available").and_then(Value::as_bool).unwrap_or(false))
    }
}

/// The directory the steps of this workflow execution share on this node (the execution was started with
/// scratch on); `None` when it has none.
pub fn scratch() -> Result<Option<std::path::PathBuf>, Error> {
    Client::from_env()?.scratch()
}

/// Reserves an instance of `function` (name, `name:qualifier` or ARN) for a later step of this workflow
/// execution and starts it with `params` as its preparation input.
pub fn prepare(function: &str, params: &Value) -> Result<Reservation, Error> {
    Client::from_env()?.prepare(function, params)
}

/// Inside a prepared instance, the preparation input; `None` when the running invocation is not a
/// preparation (its event is the step's input).
pub fn prepared_params() -> Result<Option<Value>, Error> {
    Client::from_env()?.prepared_params()
}

/// Inside a prepared instance: blocks until the execution reaches this instance's step and returns the
/// step's input; [`Error::Released`] when the turn will not come.
pub fn wait_turn() -> Result<Value, Error> {
    Client::from_env()?.wait_turn()
}

/// During init (before the runtime's first `next`): the workflow step this instance was started for, or
/// `None`. A cold step can [`prepare`] the next one before its own heavy init, so both cold starts
/// overlap; another instance may still take the step.
pub fn origin() -> Result<Option<Origin>, Error> {
    Client::from_env()?.origin()
}

/// True when idle instances of `function` outnumber the invocations queued for it.
pub fn is_available(function: &str) -> Result<bool, Error> {
    Client::from_env()?.is_available(function)
}

fn json(body: &[u8]) -> Result<Value, Error> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| Error::Io(format!("the Runtime API answered with no JSON: {e}")))
}

/// Percent-encodes what a path segment may not hold (a function reference has letters, digits, `-`, `_`,
/// `:` and `$`).
fn escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The status and body of an HTTP/1.1 response read to its end (plain or chunked).
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = &raw[split + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Some((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some((status, out));
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers one request with `response` and returns what was asked.
    fn serve_once(response: &'static str) -> (Client, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = Client::new(listener.local_addr().expect("addr").to_string());
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            // The whole request (head, then a body of Content-Length bytes) before answering: a server that
            // answers and closes early makes the client's body write fail with a reset.
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).expect("read");
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                let Some(end) = text.find("\r\n\r\n") else {
                    assert!(n > 0, "the request ended before its head did");
                    continue;
                };
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + length || n == 0 {
                    break;
                }
            }
            s.write_all(response.as_bytes()).expect("write");
            String::from_utf8_lossy(&got).into_owned()
        });
        (client, handle)
    }

    #[test]
    fn prepare_posts_the_function_and_params() {
        let (c, asked) = serve_once(
            "HTTP/1.1 202 Accepted\r\ncontent-length: 75\r\n\r\n{\"reservationId\":\"7\",\"function\":\"webp\",\"version\":\"$LATEST\",\"expiresInMs\":60}",
        );
        let r = c.prepare("webp", &serde_json::json!({"key": "a.jpg"})).expect("prepared");
        assert_eq!((r.id.as_str(), r.function.as_str(), r.expires_in_ms), ("7", "webp", 60));
        let asked = asked.join().expect("served");
        assert!(asked.starts_with("POST /2018-06-01/stoke/prepare HTTP/1.1"), "{asked}");
        assert!(asked.ends_with("{\"function\":\"webp\",\"params\":{\"key\":\"a.jpg\"}}"), "{asked}");
    }

    #[test]
    fn a_released_turn_and_a_refusal_are_errors_with_their_reasons() {
        let (c, _) = serve_once(
            "HTTP/1.1 410 Gone\r\ncontent-length: 82\r\n\r\n{\"errorType\":\"Stoke.ReservationReleased\",\"errorMessage\":\"the execution ended\"}  ",
        );
        assert_eq!(c.wait_turn(), Err(Error::Released("the execution ended".into())));
        let (c, _) = serve_once(
            "HTTP/1.1 409 Conflict\r\ncontent-length: 57\r\n\r\n{\"errorType\":\"Stoke.NotInWorkflow\",\"errorMessage\":\"no\"} ",
        );
        let e = c.prepare("x", &Value::Null).expect_err("refused");
        assert_eq!(e, Error::Refused { status: 409, code: "Stoke.NotInWorkflow".into(), message: "no".into() });
        let (c, _) = serve_once(
            "HTTP/1.1 404 Not Found\r\ncontent-length: 54\r\n\r\n{\"errorType\":\"Stoke.NotPrepared\",\"errorMessage\":\"no\"}",
        );
        assert_eq!(c.prepared_params(), Ok(None), "not prepared is no error");
        let (c, _) =
            serve_once("HTTP/1.1 404 Not Found\r\n\r\n{\"errorType\":\"Stoke.NoScratch\",\"errorMessage\":\"no\"}");
        assert_eq!(c.scratch(), Ok(None), "no scratch directory is no error");
        let (c, _) = serve_once("HTTP/1.1 200 OK\r\n\r\n{\"path\":\"/var/stoke-scratch/e1\"}");
        assert_eq!(c.scratch(), Ok(Some("/var/stoke-scratch/e1".into())));
        let (c, _) =
            serve_once("HTTP/1.1 404 Not Found\r\n\r\n{\"errorType\":\"Stoke.NoOrigin\",\"errorMessage\":\"no\"}");
        assert_eq!(c.origin(), Ok(None), "no origin is no error");
        let (c, asked) =
            serve_once("HTTP/1.1 200 OK\r\n\r\n{\"execution\":\"e1\",\"event\":{\"k\":1},\"prepared\":false}");
        let o = Origin { execution: "e1".into(), event: serde_json::json!({"k": 1}), prepared: false };
        assert_eq!(c.origin(), Ok(Some(o)));
        assert!(asked.join().expect("served").starts_with("GET /2018-06-01/stoke/origin "));
    }

    #[test]
    fn chunked_bodies_and_escaped_references() {
        let (c, asked) = serve_once(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"ava\r\nf\r\nilable\":true}  \r\n0\r\n\r\n",
        );
        assert_eq!(c.is_available("fn:prod/x"), Ok(true));
        assert!(asked.join().expect("served").starts_with("GET /2018-06-01/stoke/available/fn:prod%2Fx "));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n"), Some((200, vec![])));
        assert_eq!(parse_response(b"garbage"), None);
        assert!(matches!(Client::new("127.0.0.1:1").wait_turn(), Err(Error::Io(_))));
    }
}
