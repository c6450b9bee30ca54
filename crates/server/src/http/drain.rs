//! Reads what a client is still sending after its request was answered without reading the whole body (a
//! refusal by an extractor — a wrong key, an oversized upload — or a handler that did not need it).
//!
//! A server that closes a connection with unread data in it resets the connection, and a client still
//! sending its body (most do: boto3, Python's `http.client`, reqwest) then sees a broken pipe or a reset
//! instead of the answer that says what was wrong. So the rest of the body is read and dropped before the
//! answer goes out, within a limit of bytes and time; beyond that the connection is closed after all.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use http_body::{Body as HttpBody, Frame, SizeHint};

/// Most bytes of an unread body read and dropped.
const MAX_DRAIN_BYTES: usize = 64 << 20;
/// Longest a client may take to send the rest.
const MAX_DRAIN_TIME: Duration = Duration::from_secs(10);

/// Where a request body left unread is put back when the handler lets go of it.
type Unread = Arc<Mutex<Option<Body>>>;

struct Tracked {
    inner: Option<Body>,
    ended: bool,
    unread: Unread,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(body) = self.inner.take().filter(|b| !self.ended && !b.is_end_stream()) {
            *self.unread.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
        }
    }
}

/// The middleware: hands the handler a body that remembers whether it was read to its end, and reads the
/// rest of one that was not before the answer is sent.
pub async fn drain_unread(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let unread = Unread::default();
    let tracked = Tracked { inner: Some(body), ended: false, unread: unread.clone() };
    let response = next.run(Request::from_parts(parts, Body::new(tracked))).await;
    let left = unread.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(body) = left {
        discard(body).await;
    }
    response
}

async fn discard(body: Body) {
    let mut stream = body.into_data_stream();
    let deadline = tokio::time::Instant::now() + MAX_DRAIN_TIME;
    let mut read = 0;
    while read <= MAX_DRAIN_BYTES {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => read += chunk.len(),
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(body: Body) -> (Tracked, Unread) {
        let unread = Unread::default();
        (Tracked { inner: Some(body), ended: false, unread: unread.clone() }, unread)
    }

    #[tokio::test]
    async fn a_body_dropped_unread_is_put_back_and_one_read_to_its_end_is_not() {
        let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from("a")), Ok(Bytes::from("b"))]);
        let (t, unread) = tracked(Body::from_stream(stream));
        drop(t);
        let left = unread.lock().unwrap().take().expect("the unread body is kept");
        let rest = axum::body::to_bytes(left, 10).await.unwrap();
        assert_eq!(rest, "ab");

        let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from("a"))]);
        let (t, unread) = tracked(Body::from_stream(stream));
        let all = axum::body::to_bytes(Body::new(t), 10).await.unwrap();
        assert_eq!(all, "a");
        assert!(unread.lock().unwrap().is_none(), "nothing left to read");
    }
}
