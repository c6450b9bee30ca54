//! How the API is served: plain HTTP or HTTPS, and what one client may hold.
//!
//! A client that sends its request head slowly (slow-loris), or its body slowly, or that keeps a connection
//! open and silent, is cut off after a timeout; a request head larger than a limit is a 431; and when the
//! server holds as many connections as it allows, a new one is answered 503 `too_many_connections` at once
//! instead of waiting in the kernel's queue. None of this touches the warm path: a request without a body
//! costs no timer, and one with a body costs one.
//!
//! The Runtime API that instances call is not served here: it stays plain HTTP on each instance's own
//! loopback endpoint (see the scheduler crate).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::Request;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// What one client may hold, and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// From a connection's start, or the end of its previous response, until a whole request head has
    /// arrived (also how long an idle keep-alive connection is kept, and the TLS handshake's limit).
    pub header_timeout: Duration,
    /// From a request's head until its whole body has arrived.
    pub body_timeout: Duration,
    /// Connections held at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Largest request head (request line and headers); a larger one is a 431.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(120),
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
        }
    }
}

impl Limits {
    /// hyper reads a request head into a buffer of at most this size, and refuses to go below 8 KiB.
    const MIN_HEADER_BYTES: usize = 8 * 1024;
}

/// The certificate chain and key `--tls-cert` and `--tls-key` name.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How the API listener serves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transport {
    /// HTTPS with this certificate; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    pub limits: Limits,
}

/// A TLS set-up that cannot be used, said so that the operator can fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// Reads the certificate chain and private key (PEM) into a server configuration that speaks HTTP/1.1.
pub fn load_tls(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| TlsError(format!("cannot read the TLS {what} {}: {e}", path.display())))
    };
    let cert_pem = read(&files.cert, "certificate")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{} is not a PEM certificate chain: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{} holds no certificate (expected PEM blocks 'BEGIN CERTIFICATE')",
            files.cert.display()
        )));
    }
    let key_pem = read(&files.key, "key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        TlsError(format!("{} holds no usable private key (PEM: PKCS#8, PKCS#1 or SEC1): {e}", files.key.display()))
    })?;
    // ring, not aws-lc-rs: the build needs no cmake and no second C library, and the clients (reqwest) use
    // ring too. rustls deprecates it only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS set-up failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            TlsError(format!(
                "the key in {} does not fit the certificate in {}: {e}",
                files.key.display(),
                files.cert.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the connections finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut refused_logged = None::<std::time::Instant>;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted: neither stops
                    // the server. The pause keeps a lasting error from spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if refused_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(max = limits.max_connections, "connection limit reached: refusing new connections");
                refused_logged = Some(std::time::Instant::now());
            }
            tokio::spawn(refuse(stream, acceptor.is_none()));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(stream, peer, app, limits, watcher).await,
                Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(stream, peer, app, limits, watcher).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: axum::Router,
    limits: Limits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let app = app.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let body = if http_body::Body::is_end_stream(&body) {
                Body::new(body)
            } else {
                Body::new(Deadline::new(body, limits.body_timeout))
            };
            app.oneshot(Request::from_parts(parts, body)).await
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(Limits::MIN_HEADER_BYTES));
    let connection = http.serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Answers a connection over the limit with a 503 and closes it (plain HTTP; a TLS one is closed).
async fn refuse(mut stream: tokio::net::TcpStream, plain: bool) {
    if plain {
        let body = r#"{"error":{"code":"too_many_connections","message":"the server holds as many connections as it allows (--max-connections); retry shortly"}}"#;
        let reply = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(reply.as_bytes())).await;
    }
    let _ = stream.shutdown().await;
    // Closing with the client's request unread would reset the connection, and the reset can overtake the
    // reply: read what the client sends for a moment first.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// A request body that must have arrived whole by a deadline.
struct Deadline {
    body: Incoming,
    expires: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl Deadline {
    fn new(body: Incoming, limit: Duration) -> Self {
        Deadline { body, expires: Box::pin(tokio::time::sleep(limit)), limit }
    }
}

/// The request body did not arrive within `--body-timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s (--body-timeout)", .0.as_secs())]
pub struct BodyTimeout(Duration);

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.expires.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout(this.limit).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Whether reading a body failed because it did not arrive in time (somewhere in the error's chain).
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<BodyTimeout>() {
            return true;
        }
        next = e.source();
    }
    false
}
