//! The Runtime API's own HTTP/1.1: the requests of a warm invocation (`next`, then `response` or `error`) read
//! and answered here, each answer in one write, with no general server's machinery between the socket and
//! the handler (no per-request service, body stream, header map or routing table). Any other of stoke's
//! routes is read here too and passed to the router whole. A request that uses more of HTTP than a plain
//! request with a `Content-Length` (a chunked body, `Expect: 100-continue`, `Connection: close`, HTTP/1.0, a
//! head this reader cannot parse) hands its connection, from that request on, to hyper, which serves the
//! rest of it through the same router: every client gets a complete HTTP/1.1 server, and the runtimes'
//! common path the short one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::{ERROR_TYPE_HEADER, MAX_RESPONSE_BYTES};
use crate::context::InstanceCtx;

/// The largest request head read here; a longer one (no runtime sends one) is hyper's to answer.
const MAX_HEAD: usize = 16 * 1024;
/// The headers a request may have here; more are hyper's to read.
const MAX_HEADERS: usize = 32;
/// The largest body read here: the router's own limit, above which hyper and the router refuse it.
pub(super) const MAX_BODY: usize = MAX_RESPONSE_BYTES + 1024 * 1024;
/// Answers whose body is at most this long are copied after their head and written with it.
const COPIED_BODY: usize = 64 * 1024;
/// How much a client may send ahead while its request waits (a pipelined next request); reading stops there.
const MAX_AHEAD: usize = 64 * 1024;

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const INVOCATION: &str = "/2018-06-01/runtime/invocation/";

/// What a request asks for.
#[derive(Debug)]
enum Kind {
    Next,
    Response {
        id: String,
    },
    Error {
        id: String,
        error_type: Option<String>,
    },
    /// Another route: the router answers it (boxed: the common requests stay small).
    Routed(Box<Request<()>>),
}

/// A request head read from the front of the connection's buffer.
#[derive(Debug)]
struct Head {
    /// Its length in bytes; the body follows.
    len: usize,
    body_len: usize,
    kind: Kind,
}

#[derive(Debug)]
enum Parsed {
    /// More bytes are needed.
    Partial,
    Head(Head),
    /// A request for hyper: it uses more of HTTP than this reader does, or is malformed.
    Elsewhere,
}

/// Reads the request head at the front of `buf`, if it is all there.
fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Parsed::Partial,
        Ok(httparse::Status::Partial) | Err(_) => return Parsed::Elsewhere,
    };
    if request.version != Some(1) {
        return Parsed::Elsewhere;
    }
    let mut body_len = None;
    let mut error_type = None;
    for h in request.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
            match (body_len, parsed) {
                (None, Some(n)) if n <= MAX_BODY => body_len = Some(n),
                _ => return Parsed::Elsewhere,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Parsed::Elsewhere;
        } else if name.eq_ignore_ascii_case("connection") {
            let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if value.contains("close") || value.contains("upgrade") {
                return Parsed::Elsewhere;
            }
        } else if name.eq_ignore_ascii_case(ERROR_TYPE_HEADER) {
            error_type = std::str::from_utf8(h.value).ok().map(str::to_string);
        }
    }
    let (Some(method), Some(path)) = (request.method, request.path) else { return Parsed::Elsewhere };
    let answer = if method == "POST" { invocation_answer(path) } else { None };
    let kind = match (method, path, answer) {
        ("GET", NEXT, _) => Kind::Next,
        (_, _, Some((id, "response"))) => Kind::Response { id: id.to_string() },
        (_, _, Some((id, "error"))) => Kind::Error { id: id.to_string(), error_type },
        _ => match routed(method, path, request.headers) {
            Some(r) => Kind::Routed(r),
            None => return Parsed::Elsewhere,
        },
    };
    Parsed::Head(Head { len, body_len: body_len.unwrap_or(0), kind })
}

/// `/2018-06-01/runtime/invocation/{id}/{what}` → `(id, what)`, for an id the router would see unchanged
/// (no percent-encoding, no query).
fn invocation_answer(path: &str) -> Option<(&str, &str)> {
    let (id, what) = path.strip_prefix(INVOCATION)?.split_once('/')?;
    let plain = !id.is_empty() && !id.contains(['%', '?', '#']) && !what.contains(['/', '?', '#']);
    plain.then_some((id, what))
}

/// The request as the router takes it, without its body.
fn routed(method: &str, path: &str, headers: &[httparse::Header]) -> Option<Box<Request<()>>> {
    let mut request = Request::builder().method(method).uri(path);
    for h in headers {
        request = request.header(h.name, h.value);
    }
    request.body(()).ok().map(Box::new)
}

/// What reading the next request gave.
enum Read {
    Request(Kind, Bytes),
    Closed,
    Elsewhere,
}

/// Reads the next request, its body whole, off the connection (some of it may be in `buf` already).
async fn read_request(stream: &mut TcpStream, buf: &mut BytesMut) -> Read {
    loop {
        if !buf.is_empty() {
            match parse(buf) {
                Parsed::Partial => {}
                Parsed::Elsewhere => return Read::Elsewhere,
                Parsed::Head(head) => {
                    let total = head.len + head.body_len;
                    while buf.len() < total {
                        buf.reserve(total - buf.len());
                        if !matches!(stream.read_buf(buf).await, Ok(n) if n > 0) {
                            return Read::Closed;
                        }
                    }
                    let body = buf.split_to(total).split_off(head.len).freeze();
                    return Read::Request(head.kind, body);
                }
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        if !matches!(stream.read_buf(buf).await, Ok(n) if n > 0) {
            return Read::Closed;
        }
    }
}

/// Runs `answer` to its end, unless the client closes the connection first (then it is dropped, as hyper
/// drops a handler whose connection closed). Bytes the client sends meanwhile are kept in `buf`.
async fn unless_closed<F: Future>(stream: &mut TcpStream, buf: &mut BytesMut, answer: F) -> Option<F::Output> {
    tokio::pin!(answer);
    loop {
        tokio::select! {
            biased;
            out = &mut answer => return Some(out),
            read = stream.read_buf(buf), if buf.len() < MAX_AHEAD => {
                if !matches!(read, Ok(n) if n > 0) {
                    return None;
                }
                buf.reserve(4096);
            }
        }
    }
}

/// Serves one connection of the instance's runtime until it closes.
pub(super) async fn serve_connection(mut stream: TcpStream, ctx: Arc<InstanceCtx>, app: Router) {
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Vec::with_capacity(1024);
    loop {
        let (kind, body) = match read_request(&mut stream, &mut buf).await {
            Read::Request(kind, body) => (kind, body),
            Read::Closed => return,
            Read::Elsewhere => return by_hyper(stream, buf.freeze(), app).await,
        };
        let reply = match kind {
            Kind::Next => match unless_closed(&mut stream, &mut buf, super::next(State(ctx.clone()))).await {
                Some(reply) => reply,
                None => return,
            },
            Kind::Response { id } => super::response(State(ctx.clone()), Path(id), body).await,
            Kind::Error { id, error_type } => super::report_error(&ctx, &id, error_type.as_deref(), body).await,
            Kind::Routed(request) => {
                use tower::ServiceExt;
                let answer = app.clone().oneshot((*request).map(|()| Body::from(body)));
                let Some(Ok(response)) = unless_closed(&mut stream, &mut buf, answer).await else { return };
                let (parts, body) = response.into_parts();
                let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else { return };
                if write(&mut stream, &mut out, parts.status, headers(&parts.headers), &body).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let named = reply.headers.iter().map(|(n, v)| (*n, v.as_bytes()));
        if write(&mut stream, &mut out, reply.status, named, &reply.body).await.is_err() {
            return;
        }
    }
}

/// A header map's entries, but its `content-length`, which the head writes itself.
fn headers(map: &HeaderMap) -> impl Iterator<Item = (&str, &[u8])> {
    map.iter().filter(|(n, _)| *n != axum::http::header::CONTENT_LENGTH).map(|(n, v)| (n.as_str(), v.as_bytes()))
}

/// Writes an answer's head: its status line, headers and length.
fn write_head<'a>(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    body_len: usize,
) {
    use std::io::Write;
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", status.as_str(), status.canonical_reason().unwrap_or(""));
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    let _ = write!(out, "content-length: {body_len}\r\n\r\n");
}

/// Writes an answer: its head, built in `out`, and its body — in one write when the body is short.
async fn write<'a>(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    body: &[u8],
) -> std::io::Result<()> {
    out.clear();
    write_head(out, status, headers, body.len());
    if body.len() <= COPIED_BODY {
        out.extend_from_slice(body);
        return stream.write_all(out).await;
    }
    stream.write_all(out).await?;
    stream.write_all(body).await
}

/// Serves the rest of the connection with hyper, starting with the bytes already read from it.
async fn by_hyper(stream: TcpStream, read: Bytes, app: Router) {
    use tower::ServiceExt;
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        app.clone().oneshot(req.map(Body::new))
    });
    let io = hyper_util::rt::TokioIo::new(Prefixed { read, stream });
    if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
        tracing::debug!(error = %e, "a Runtime API connection ended with an error");
    }
}

/// A connection whose first bytes were read already: they are read again first.
struct Prefixed {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
