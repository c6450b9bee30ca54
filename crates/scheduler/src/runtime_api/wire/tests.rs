use super::*;
use crate::runtime_api::Reply;

fn head(request: &str) -> Head {
    match parse(request.as_bytes()) {
        Parsed::Head(head) => head,
        other => panic!("{request:?} read as {other:?}"),
    }
}

fn elsewhere(request: &str) -> bool {
    matches!(parse(request.as_bytes()), Parsed::Elsewhere)
}

#[test]
fn an_invocations_requests_are_read_here() {
    let next = "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n\r\n";
    let h = head(next);
    assert!(matches!(h.kind, Kind::Next));
    assert_eq!((h.len, h.body_len), (next.len(), 0));

    let response =
        "POST /2018-06-01/runtime/invocation/8f3c-1/response HTTP/1.1\r\nContent-Length: 5\r\nconnection: keep-alive\r\n\r\nhello";
    let h = head(response);
    assert!(matches!(&h.kind, Kind::Response { id } if id == "8f3c-1"), "{:?}", h.kind);
    assert_eq!((h.len, h.body_len), (response.len() - 5, 5));

    let error = "POST /2018-06-01/runtime/invocation/r1/error HTTP/1.1\r\ncontent-length: 2\r\n\
                 Lambda-Runtime-Function-Error-Type: Runtime.Unknown\r\n\r\n{}";
    let h = head(error);
    assert!(
        matches!(&h.kind, Kind::Error { id, error_type: Some(t) } if id == "r1" && t == "Runtime.Unknown"),
        "{:?}",
        h.kind
    );
}

#[test]
fn stokes_other_routes_go_to_the_router_with_their_headers() {
    let h = head("POST /2018-06-01/stoke/prepare HTTP/1.1\r\ncontent-length: 2\r\nx-thing: 1\r\n\r\n{}");
    let Kind::Routed(request) = h.kind else { panic!("{:?}", h.kind) };
    assert_eq!((request.method().as_str(), request.uri().path()), ("POST", "/2018-06-01/stoke/prepare"));
    assert_eq!(request.headers()["x-thing"], "1");
    assert_eq!(h.body_len, 2);
    // An id the router would decode, a query, an unknown answer: the router's to read.
    for path in [
        "/2018-06-01/runtime/invocation/r%2D1/response",
        "/2018-06-01/runtime/invocation/r1/response?x=1",
        "/2018-06-01/runtime/invocation/r1/other",
        "/2018-06-01/runtime/invocation//response",
        "/2018-06-01/runtime/invocation/r1/response/more",
    ] {
        let h = head(&format!("POST {path} HTTP/1.1\r\ncontent-length: 0\r\n\r\n"));
        assert!(matches!(h.kind, Kind::Routed(_)), "{path}: {:?}", h.kind);
    }
    let h = head("GET /2018-06-01/runtime/invocation/next?x HTTP/1.1\r\n\r\n");
    assert!(matches!(h.kind, Kind::Routed(_)));
}

#[test]
fn a_head_not_yet_whole_waits_for_more() {
    assert!(matches!(parse(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial));
    assert!(matches!(parse(b"GE"), Parsed::Partial));
}

#[test]
fn anything_beyond_a_plain_request_is_left_to_hyper() {
    let post = "POST /2018-06-01/runtime/invocation/r1/response";
    assert!(elsewhere(&format!("{post} HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n")));
    assert!(elsewhere(&format!("{post} HTTP/1.1\r\ncontent-length: 3\r\nExpect: 100-continue\r\n\r\n")));
    assert!(elsewhere(&format!("{post} HTTP/1.1\r\ncontent-length: 0\r\nConnection: Close\r\n\r\n")));
    assert!(elsewhere(&format!("{post} HTTP/1.0\r\ncontent-length: 0\r\n\r\n")));
    assert!(elsewhere(&format!("{post} HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n")));
    assert!(elsewhere(&format!("{post} HTTP/1.1\r\ncontent-length: -1\r\n\r\n")));
    assert!(elsewhere(&format!("{post} HTTP/1.1\r\ncontent-length: {}\r\n\r\n", MAX_BODY + 1)));
    assert!(elsewhere("GET / HTTP/1.1\r\nupgrade: h2c\r\nconnection: Upgrade\r\n\r\n"));
    assert!(elsewhere("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    assert!(elsewhere("NOT HTTP AT ALL\r\n\r\n"));
    let many: String = (0..MAX_HEADERS + 1).map(|i| format!("x-{i}: 1\r\n")).collect();
    assert!(elsewhere(&format!("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n{many}\r\n")));
    let long = format!("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nx: {}", "a".repeat(MAX_HEAD));
    assert!(elsewhere(&long), "a head longer than this reader reads, not yet ended");
    assert!(!elsewhere(&format!("{post} HTTP/1.1\r\ncontent-length: {MAX_BODY}\r\n\r\n")));
}

#[test]
fn an_answers_head_has_its_status_headers_and_length() {
    let mut out = Vec::new();
    let headers = [("lambda-runtime-aws-request-id", b"r1".as_slice()), ("content-type", b"application/json")];
    write_head(&mut out, StatusCode::OK, headers.into_iter(), 7);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nlambda-runtime-aws-request-id: r1\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n"
    );
    let mut out = Vec::new();
    write_head(&mut out, StatusCode::ACCEPTED, std::iter::empty(), 0);
    assert_eq!(out, b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
}

#[test]
fn a_reply_leaves_out_a_header_value_that_could_split_the_head() {
    let reply =
        Reply::new(StatusCode::OK).header("lambda-runtime-client-context", "a\r\nx-injected: 1").header("a", "b\tc");
    assert_eq!(reply.headers, vec![("a", "b\tc".to_string())]);
}

// Connections served as an instance's are: over loopback, with a scheduler whose instance the test is.
mod served {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::runtime_api::tests::in_process::{connect, harness, instance, read_answer, request, submit};
    use tokio::task::JoinHandle;

    use crate::testing::{until, Harness};
    use crate::{InvokeError, InvokeResult, InvokeTarget, Outcome};

    use super::*;

    const NEXT: &str = "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nhost: x\r\n\r\n";

    fn response(id: &str, body: &str) -> String {
        format!(
            "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// A connection to `ctx`'s Runtime API whose `next` was handed invocation `id`; the bytes read past that
    /// answer; the invocation's result to come.
    async fn running(
        h: &Harness,
        target: &Arc<InvokeTarget>,
        ctx: &Arc<InstanceCtx>,
        id: &str,
    ) -> (TcpStream, Vec<u8>, JoinHandle<Result<InvokeResult, InvokeError>>) {
        let mut conn = connect(ctx).await;
        let mut buf = Vec::new();
        let result = submit(h, target, request(id, "{}")).await;
        conn.write_all(NEXT.as_bytes()).await.unwrap();
        let next = read_answer(&mut conn, &mut buf).await.unwrap();
        assert_eq!((next.status, next.header("lambda-runtime-aws-request-id")), (StatusCode::OK, id));
        (conn, buf, result)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_connection_serves_invocation_after_invocation_and_pipelined_requests() {
        let h = harness();
        let (target, ctx) = instance(&h, None);
        let mut conn = connect(&ctx).await;
        let mut buf = Vec::new();
        conn.write_all(NEXT.as_bytes()).await.unwrap();
        for i in 0..3 {
            let id = format!("r{i}");
            // The first `next` waits for it; the later ones were sent with the answer before.
            let result = {
                let (scheduler, target, req) =
                    (h.scheduler.clone(), target.clone(), request(&id, &format!("{{\"i\":{i}}}")));
                tokio::spawn(async move { scheduler.invoke(&target, req).await })
            };
            let next = read_answer(&mut conn, &mut buf).await.unwrap();
            assert_eq!((next.status, next.header("lambda-runtime-aws-request-id")), (StatusCode::OK, id.as_str()));
            assert_eq!(next.body, format!("{{\"i\":{i}}}"));
            // The answer and the next request in one stream, split inside the answer's body.
            let both = format!("{}{NEXT}", response(&id, &format!("done {i}")));
            let (first, rest) = both.split_at(both.len() - NEXT.len() - 3);
            conn.write_all(first.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            conn.write_all(rest.as_bytes()).await.unwrap();
            let answered = read_answer(&mut conn, &mut buf).await.unwrap();
            assert_eq!((answered.status, answered.body.len()), (StatusCode::ACCEPTED, 0));
            assert_eq!(result.await.unwrap().unwrap().outcome, Outcome::Success(format!("done {i}").into()));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chunked_answer_hands_the_connection_to_hyper_which_serves_the_rest_of_it() {
        let h = harness();
        let (target, ctx) = instance(&h, None);
        let (mut conn, mut buf, result) = running(&h, &target, &ctx, "c1").await;
        let chunked = "POST /2018-06-01/runtime/invocation/c1/response HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n\
                       5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        conn.write_all(chunked.as_bytes()).await.unwrap();
        let answered = read_answer(&mut conn, &mut buf).await.unwrap();
        assert_eq!(answered.status, StatusCode::ACCEPTED);
        assert_eq!(result.await.unwrap().unwrap().outcome, Outcome::Success("hello world".into()));
        // The same connection goes on, hyper's now.
        let result = submit(&h, &target, request("c2", "{}")).await;
        conn.write_all(NEXT.as_bytes()).await.unwrap();
        let next = read_answer(&mut conn, &mut buf).await.unwrap();
        assert_eq!(next.header("lambda-runtime-aws-request-id"), "c2");
        assert!(next.headers.contains_key("date"), "hyper writes a date; stoke's own reader does not");
        conn.write_all(response("c2", "again").as_bytes()).await.unwrap();
        assert_eq!(read_answer(&mut conn, &mut buf).await.unwrap().status, StatusCode::ACCEPTED);
        assert_eq!(result.await.unwrap().unwrap().outcome, Outcome::Success("again".into()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expect_continue_and_connection_close_are_honoured() {
        let h = harness();
        let (target, ctx) = instance(&h, None);
        let (mut conn, mut buf, result) = running(&h, &target, &ctx, "e1").await;
        let head = "POST /2018-06-01/runtime/invocation/e1/response HTTP/1.1\r\ncontent-length: 4\r\n\
                    expect: 100-continue\r\nconnection: close\r\n\r\n";
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut got = [0u8; 25];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"HTTP/1.1 100 Continue\r\n\r\n");
        conn.write_all(b"done").await.unwrap();
        assert_eq!(read_answer(&mut conn, &mut buf).await.unwrap().status, StatusCode::ACCEPTED);
        assert_eq!(result.await.unwrap().unwrap().outcome, Outcome::Success("done".into()));
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest)).await;
        assert!(matches!(closed, Ok(Ok(0))), "the server closes the connection it was asked to close");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_malformed_request_gets_a_400_and_the_connection_closes() {
        let h = harness();
        let (_, ctx) = instance(&h, None);
        let mut conn = connect(&ctx).await;
        conn.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest)).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&rest);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_runtime_gone_while_it_waits_loses_no_invocation() {
        let h = harness();
        let (target, ctx) = instance(&h, None);
        let mut conn = connect(&ctx).await;
        conn.write_all(NEXT.as_bytes()).await.unwrap();
        until("the instance waiting", || h.scheduler.pool(&target).idle == 1).await;
        drop(conn);
        // The connection's end drops its wait: the invocation is queued, not handed to no one.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let result = submit(&h, &target, request("kept", "{}")).await;
        let mut conn = connect(&ctx).await;
        let mut buf = Vec::new();
        conn.write_all(NEXT.as_bytes()).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut conn, &mut buf)).await;
        let next = next.expect("the invocation handed to the new connection, not the closed one").unwrap();
        assert_eq!(next.header("lambda-runtime-aws-request-id"), "kept");
        conn.write_all(response("kept", "ok").as_bytes()).await.unwrap();
        assert_eq!(result.await.unwrap().unwrap().outcome, Outcome::Success("ok".into()));
    }
}
