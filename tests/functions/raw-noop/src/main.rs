//! Answers every invocation with `null`: `GET …/invocation/next`, then `POST …/invocation/{id}/response`,
//! over one kept-alive socket (reconnecting when the server closes it). No runtime library, no JSON parsing:
//! the cheapest client of the Runtime API, so a benchmark with it measures the platform's queue and dispatch.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// The head (status line and headers) and the body of one HTTP/1.1 response.
fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<(String, usize)> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = conn.read(&mut chunk)?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok((head, length));
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().filter_map(|l| l.split_once(':')).find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
}

fn serve(api: &str) -> io::Result<()> {
    let mut conn = TcpStream::connect(api)?;
    conn.set_nodelay(true)?;
    let next = format!("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: {api}\r\n\r\n");
    let mut buf = Vec::with_capacity(8192);
    loop {
        conn.write_all(next.as_bytes())?;
        let (head, _) = read_response(&mut conn, &mut buf)?;
        let id = header(&head, "lambda-runtime-aws-request-id")
            .ok_or_else(|| io::Error::other(format!("/next answered without a request id: {head}")))?
            .to_string();
        let response = format!(
            "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\nnull"
        );
        conn.write_all(response.as_bytes())?;
        let (head, _) = read_response(&mut conn, &mut buf)?;
        if !head.starts_with("HTTP/1.1 2") {
            return Err(io::Error::other(format!("the response was refused: {head}")));
        }
        if header(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            return Ok(());
        }
    }
}

fn main() {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        eprintln!("AWS_LAMBDA_RUNTIME_API is not set: run this as a Lambda bootstrap");
        std::process::exit(2);
    };
    loop {
        match serve(&api) {
            // The server closed the kept-alive connection: open another.
            Ok(()) => continue,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => continue,
            Err(e) => {
                eprintln!("raw-noop: {e}");
                std::process::exit(1);
            }
        }
    }
}
