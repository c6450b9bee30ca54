//! The benchmark's load generator: HTTP/1.1 over one kept-alive blocking socket per client, with the
//! request bytes built once. A general-purpose client (reqwest, hyper) spends more CPU per request than
//! the platform it measures on a two-core machine; this one costs a write and a read.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};

/// POSTs of a fixed body to one URL (or to one of a few paths on the same server), over one connection,
/// repeated.
pub struct RawClient {
    addr: SocketAddr,
    /// The request bytes, one per path.
    requests: Vec<Vec<u8>>,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
}

/// What one exchange returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// The response carried `X-Stoke-Function-Error` (the function failed).
    pub function_error: bool,
    pub body_len: usize,
}

impl RawClient {
    /// `url` is `http://host:port/path`; `bearer` is sent as `Authorization: Bearer …` when given.
    pub fn new(url: &str, bearer: Option<&str>, body: &[u8]) -> io::Result<RawClient> {
        Self::to_paths(url, &[""], bearer, body)
    }

    /// One request per path of `paths`, each appended to `base` (`http://host:port/prefix`); send one with
    /// [`exchange_nth`](Self::exchange_nth).
    pub fn to_paths(base: &str, paths: &[&str], bearer: Option<&str>, body: &[u8]) -> io::Result<RawClient> {
        let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{base}: {why}"));
        let rest = base.strip_prefix("http://").ok_or_else(|| invalid("only http:// URLs are supported"))?;
        let (host, prefix) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
        let addr = host.to_socket_addrs()?.next().ok_or_else(|| invalid("the host does not resolve"))?;
        let requests = paths
            .iter()
            .map(|path| {
                let mut head =
                    format!("POST {prefix}{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n");
                if let Some(key) = bearer {
                    head.push_str(&format!("Authorization: Bearer {key}\r\n"));
                }
                head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                let mut request = head.into_bytes();
                request.extend_from_slice(body);
                request
            })
            .collect();
        Ok(RawClient { addr, requests, conn: None, buf: Vec::with_capacity(8192) })
    }

    /// Sends the request and reads the whole response. A failed exchange drops the connection, so the next
    /// one reconnects.
    pub fn exchange(&mut self) -> io::Result<Reply> {
        self.exchange_nth(0)
    }

    /// Sends the request to the `n`th path (modulo their number), as [`exchange`](Self::exchange) does.
    pub fn exchange_nth(&mut self, n: usize) -> io::Result<Reply> {
        let result = self.try_exchange(n % self.requests.len());
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn try_exchange(&mut self, n: usize) -> io::Result<Reply> {
        if self.conn.is_none() {
            let c = TcpStream::connect(self.addr)?;
            c.set_nodelay(true)?;
            self.conn = Some(c);
        }
        let conn = self.conn.as_mut().expect("connected above");
        conn.write_all(&self.requests[n])?;
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(head) = parse_head(&self.buf)? {
                let total = head.header_len + head.content_length;
                while self.buf.len() < total {
                    let n = conn.read(&mut chunk)?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                if head.close {
                    self.conn = None;
                }
                return Ok(Reply {
                    status: head.status,
                    function_error: head.function_error,
                    body_len: head.content_length,
                });
            }
            let n = conn.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    header_len: usize,
    content_length: usize,
    function_error: bool,
    close: bool,
}

/// The status line and headers once they are complete; `None` while more bytes are needed.
fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad status line"))?;
    let (mut content_length, mut function_error, mut close) = (None, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().map_err(|_| bad("bad content-length"))?);
        } else if name.eq_ignore_ascii_case("x-stoke-function-error") {
            function_error = true;
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad("chunked responses are not supported by the load generator"));
        }
    }
    let content_length = content_length.ok_or_else(|| bad("response without content-length"))?;
    Ok(Some(Head { status, header_len: end + 4, content_length, function_error, close }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_complete_head_and_waits_for_a_partial_one() {
        let resp = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nX-Stoke-Function-Error: Unhandled\r\n\r\nnull";
        let head = parse_head(resp).unwrap().unwrap();
        assert_eq!(
            head,
            Head { status: 200, header_len: resp.len() - 4, content_length: 4, function_error: true, close: false }
        );
        assert_eq!(parse_head(&resp[..20]).unwrap(), None);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    /// A server for one connection: reads three requests with a `{}` body, answers each with `reply`, and
    /// returns them.
    fn serve_three(reply: &'static [u8]) -> (std::net::SocketAddr, std::thread::JoinHandle<Vec<String>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            for _ in 0..3 {
                let mut req = Vec::new();
                // Headers, then the 2-byte body.
                while !(req.windows(4).any(|w| w == b"\r\n\r\n") && req.ends_with(b"{}")) {
                    let n = conn.read(&mut buf).unwrap();
                    req.extend_from_slice(&buf[..n]);
                }
                seen.push(String::from_utf8(req).unwrap());
                conn.write_all(reply).unwrap();
            }
            seen
        });
        (addr, server)
    }

    #[test]
    fn repeats_a_request_over_one_connection() {
        let (addr, server) = serve_three(b"HTTP/1.1 202 Accepted\r\ncontent-length: 5\r\n\r\nhello");
        let mut client = RawClient::new(&format!("http://{addr}/x/y"), Some("k"), b"{}").unwrap();
        for _ in 0..3 {
            assert_eq!(client.exchange().unwrap(), Reply { status: 202, function_error: false, body_len: 5 });
        }
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 3, "all three requests came over the one accepted connection");
        assert!(seen[0].starts_with("POST /x/y HTTP/1.1\r\n") && seen[0].contains("Authorization: Bearer k\r\n"));
    }

    #[test]
    fn sends_each_request_to_the_path_asked_for() {
        let (addr, server) = serve_three(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        let mut client =
            RawClient::to_paths(&format!("http://{addr}/fn/"), &["a/invoke", "b/invoke"], None, b"{}").unwrap();
        for n in [1, 0, 3] {
            assert_eq!(client.exchange_nth(n).unwrap().status, 200);
        }
        let firsts: Vec<String> =
            server.join().unwrap().iter().map(|r| r.lines().next().unwrap().to_string()).collect();
        assert_eq!(firsts, ["POST /fn/b/invoke HTTP/1.1", "POST /fn/a/invoke HTTP/1.1", "POST /fn/b/invoke HTTP/1.1"]);
    }
}
