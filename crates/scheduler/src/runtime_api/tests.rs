use super::*;

#[test]
fn error_type_prefers_body_then_well_formed_header() {
    assert_eq!(error_type(None, &json!({"errorType": "ValueError"})), "ValueError");
    assert_eq!(error_type(Some("Runtime.ImportModuleError"), &json!({})), "Runtime.ImportModuleError");
    assert_eq!(error_type(Some("unhandled"), &json!({})), "Unhandled");
    assert_eq!(error_type(Some("unhandled"), &json!({"errorType": "my_crate::Error"})), "my_crate::Error");
    let mut h = HeaderMap::new();
    h.insert(ERROR_TYPE_HEADER, HeaderValue::from_static("Function.Mine"));
    assert_eq!(error_type_header(&h), Some("Function.Mine"));
}

#[test]
fn non_json_error_bodies_are_wrapped() {
    let Outcome::FunctionError { error_type, body } = error_body(None, &Bytes::from("boom")) else { panic!() };
    assert_eq!(error_type, "Unhandled");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["errorMessage"], "boom");
}

// The handlers in process: the router called with `oneshot`, for an instance the test stands in for (added
// to its queue as starting, so the queue starts no other for the work the test gives it).

pub(crate) mod in_process {
    use std::time::Duration;

    use stoke_sandbox::fake::{Init, Script};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::queue::Origin;
    use crate::testing::{function_error, until, Harness, Names};
    use crate::{Clock, InvokeError, InvokeRequest, InvokeResult, InvokeTarget, Scheduler};

    /// A scheduler whose own instances (none are expected) would never ask for work.
    pub(crate) fn harness() -> Harness {
        Harness::new(Script::echo().init(Init::Hang))
    }

    /// An instance of function `resize`, started for `origin`, whose runtime is the test.
    pub(crate) fn instance(h: &Harness, origin: Option<Origin>) -> (Arc<InvokeTarget>, Arc<InstanceCtx>) {
        let target = h.target("resize", |_| {});
        let queue = h.queue(&target);
        let id = Scheduler::next_instance_id(h.shared());
        queue.add_instance(id, 128);
        (target, Arc::new(InstanceCtx::new(id, origin, h.shared().clone(), queue)))
    }

    pub(crate) struct Answer {
        pub(crate) status: StatusCode,
        pub(crate) headers: HeaderMap,
        pub(crate) body: Bytes,
    }

    impl Answer {
        pub(crate) fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
        }

        pub(crate) fn header(&self, name: &str) -> &str {
            self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
        }
    }

    /// One request over a connection of its own, served as the instance's runtime's are
    /// ([`wire::serve_connection`]): the requests of an invocation by the Runtime API's own reader, the
    /// others by the router through it.
    async fn call(ctx: &Arc<InstanceCtx>, method: &str, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
        let mut head = format!("{method} {uri} HTTP/1.1\r\nhost: 127.0.0.1\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let mut request = head.into_bytes();
        request.extend_from_slice(&body);
        let mut conn = connect(ctx).await;
        conn.write_all(&request).await.unwrap();
        read_answer(&mut conn, &mut Vec::new()).await.expect("an answer")
    }

    /// A client connection to the instance's Runtime API, served by its own reader.
    pub(crate) async fn connect(ctx: &Arc<InstanceCtx>) -> tokio::net::TcpStream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (served, _) = listener.accept().await.unwrap();
        tokio::spawn(wire::serve_connection(served, ctx.clone(), router(ctx.clone())));
        client
    }

    /// Reads one answer off `conn` (`buf`: bytes read already, kept past the answer); `None` when the
    /// connection closes first.
    pub(crate) async fn read_answer(conn: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<Answer> {
        loop {
            let mut names = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut names);
            if let httparse::Status::Complete(len) = parsed.parse(buf).expect("a well-formed answer") {
                let mut headers = HeaderMap::new();
                for h in parsed.headers.iter() {
                    headers.append(
                        HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
                        HeaderValue::from_bytes(h.value).unwrap(),
                    );
                }
                let status = StatusCode::from_u16(parsed.code.unwrap()).unwrap();
                let body_len: usize =
                    headers.get("content-length").expect("a length").to_str().unwrap().parse().unwrap();
                while buf.len() < len + body_len {
                    if conn.read_buf(buf).await.unwrap() == 0 {
                        return None;
                    }
                }
                let body = Bytes::copy_from_slice(&buf[len..len + body_len]);
                buf.drain(..len + body_len);
                return Some(Answer { status, headers, body });
            }
            if conn.read_buf(buf).await.unwrap() == 0 {
                return None;
            }
        }
    }

    async fn get(ctx: &Arc<InstanceCtx>, uri: &str) -> Answer {
        call(ctx, "GET", uri, &[], Vec::new()).await
    }

    async fn post(ctx: &Arc<InstanceCtx>, uri: &str, body: &str) -> Answer {
        call(ctx, "POST", uri, &[], body.as_bytes().to_vec()).await
    }

    const NEXT: &str = "/2018-06-01/runtime/invocation/next";

    /// Submits `req` to the instance's queue (it waits there: the instance is starting).
    pub(crate) async fn submit(
        h: &Harness,
        target: &Arc<InvokeTarget>,
        req: InvokeRequest,
    ) -> tokio::task::JoinHandle<Result<InvokeResult, InvokeError>> {
        let queued = h.scheduler.pool(target).queued;
        let (scheduler, target2) = (h.scheduler.clone(), target.clone());
        let call = tokio::spawn(async move { scheduler.invoke(&target2, req).await });
        until("the invocation queued", || h.scheduler.pool(target).queued == queued + 1).await;
        call
    }

    pub(crate) fn request(id: &str, payload: &str) -> InvokeRequest {
        InvokeRequest { payload: payload.to_string().into(), request_id: Some(id.into()), ..Default::default() }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn next_hands_out_the_invocation_with_the_protocols_headers() {
        let h = harness();
        let (target, ctx) = instance(&h, None);
        h.clock.advance(Duration::from_secs(3600));
        let before_ms = h.clock.now_ms();
        let req = InvokeRequest { client_context: Some("{\"c\":1}".into()), ..request("req-1", "{\"a\":1}") };
        let result = submit(&h, &target, req).await;
        let next = get(&ctx, NEXT).await;
        let after_ms = h.clock.now_ms();
        assert_eq!((next.status, next.body.as_ref()), (StatusCode::OK, b"{\"a\":1}".as_slice()));
        assert_eq!(next.header("lambda-runtime-aws-request-id"), "req-1");
        let deadline: i64 = next.header("lambda-runtime-deadline-ms").parse().unwrap();
        assert!((before_ms + 3000..=after_ms + 3000).contains(&deadline), "3 s from its arrival, by the clock");
        assert_eq!(
            next.header("lambda-runtime-invoked-function-arn"),
            "arn:aws:lambda:us-east-1:123456789012:function:resize"
        );
        assert_eq!(next.header("lambda-runtime-client-context"), "{\"c\":1}");
        assert_eq!(next.header("content-type"), "application/json");
        let trace = next.header("lambda-runtime-trace-id");
        let (epoch_s, rest) = trace.strip_prefix("Root=1-").unwrap().split_once('-').unwrap();
        let epoch_s = i64::from_str_radix(epoch_s, 16).unwrap();
        assert!((before_ms / 1000..=after_ms / 1000).contains(&epoch_s));
        assert_eq!(rest, format!("{:012x}{:012x};Parent={:016x};Sampled=0", ctx.id, 0, 0));
        assert_eq!(h.scheduler.pool(&target).busy, 1);

        let answered = post(&ctx, "/2018-06-01/runtime/invocation/req-1/response", "done").await;
        assert_eq!((answered.status, answered.body.len()), (StatusCode::ACCEPTED, 0));
        let result = result.await.unwrap().unwrap();
        assert_eq!(result.outcome, Outcome::Success("done".into()));
        assert_eq!(result.report.instance, ctx.id);
        assert!(result.report.init_duration_ms.is_some(), "it arrived before the instance was ready");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_for_a_request_id_the_instance_is_not_running_are_refused() {
        let h = harness();
        let (_, ctx) = instance(&h, None);
        for what in ["response", "error"] {
            let answer = post(&ctx, &format!("/2018-06-01/runtime/invocation/nope/{what}"), "{}").await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST);
            assert_eq!(
                answer.json(),
                json!({"errorType": "InvalidRequestID", "errorMessage": "nope is not the invocation this instance is running"})
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_oversized_response_fails_the_invocation() {
        let h = harness();
        let (target, ctx) = instance(&h, None);
        let result = submit(&h, &target, request("big", "{}")).await;
        get(&ctx, NEXT).await;
        let body = vec![b'x'; MAX_RESPONSE_BYTES + 1];
        let answer = call(&ctx, "POST", "/2018-06-01/runtime/invocation/big/response", &[], body).await;
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(answer.json()["errorType"], "RequestEntityTooLarge");
        let result = result.await.unwrap().unwrap();
        let (error_type, body) = function_error(&result);
        assert_eq!(error_type, "Function.ResponseSizeTooLarge");
        assert_eq!(
            body["errorMessage"],
            "Response payload size (6291457 bytes) exceeded maximum allowed payload size (6291456 bytes)."
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_report_fails_the_invocation_with_the_runtimes_error() {
        let h = harness();
        let (target, ctx) = instance(&h, None);
        let result = submit(&h, &target, request("r1", "{}")).await;
        get(&ctx, NEXT).await;
        let header = [("lambda-runtime-function-error-type", "Runtime.HandlerNotFound")];
        let uri = "/2018-06-01/runtime/invocation/r1/error";
        let answer = call(&ctx, "POST", uri, &header, b"no handler named main".to_vec()).await;
        assert_eq!((answer.status, answer.body.len()), (StatusCode::ACCEPTED, 0));
        let result = result.await.unwrap().unwrap();
        assert_eq!(
            function_error(&result),
            (
                "Runtime.HandlerNotFound".into(),
                json!({"errorType": "Runtime.HandlerNotFound", "errorMessage": "no handler named main"})
            )
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn asking_again_without_answering_fails_the_invocation_and_waits_for_the_next() {
        let h = harness();
        let (target, ctx) = instance(&h, None);
        let first = submit(&h, &target, request("r1", "1")).await;
        get(&ctx, NEXT).await;
        let waiting = {
            let ctx = ctx.clone();
            tokio::spawn(async move { get(&ctx, NEXT).await })
        };
        let first = first.await.unwrap().unwrap();
        let (error_type, body) = function_error(&first);
        assert_eq!(error_type, "Runtime.InvalidState");
        assert_eq!(
            body["errorMessage"],
            "RequestId: r1 Error: the runtime asked for the next invocation without answering this one"
        );
        until("the instance idle", || h.scheduler.pool(&target).idle == 1).await;
        let second = {
            let (scheduler, target) = (h.scheduler.clone(), target.clone());
            tokio::spawn(async move { scheduler.invoke(&target, request("r2", "2")).await })
        };
        let next = waiting.await.unwrap();
        assert_eq!((next.status, next.header("lambda-runtime-aws-request-id")), (StatusCode::OK, "r2"));
        assert!(next.header("lambda-runtime-trace-id").ends_with(&format!("{:012x};Parent={:016x};Sampled=0", 1, 1)));
        post(&ctx, "/2018-06-01/runtime/invocation/r2/response", "ok").await;
        let second = second.await.unwrap().unwrap();
        assert_eq!(second.outcome, Outcome::Success("ok".into()));
        assert_eq!(second.report.init_duration_ms, None, "the instance was ready when it arrived");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invocation_handed_to_a_wait_given_up_in_that_instant_goes_back_to_the_queue() {
        let h = harness();
        let (target, ctx) = instance(&h, None);
        let rx = ctx.queue.next_for(ctx.id, None).expect_err("nothing is queued: the instance waits");
        let mut wait = Box::pin(wait_for_work(&ctx, rx));
        assert!(tokio::time::timeout(Duration::from_millis(20), &mut wait).await.is_err(), "it waits");
        let call = {
            let (scheduler, target) = (h.scheduler.clone(), target.clone());
            tokio::spawn(async move { scheduler.invoke(&target, request("back", "{}")).await })
        };
        until("the invocation handed to the waiting instance", || h.scheduler.pool(&target).busy == 1).await;
        // Its runtime's connection closes now: the wait is dropped before it takes what it was handed.
        drop(wait);
        until("the invocation queued again", || h.scheduler.pool(&target).queued == 1).await;
        let next = get(&ctx, NEXT).await;
        assert_eq!((next.status, next.header("lambda-runtime-aws-request-id")), (StatusCode::OK, "back"));
        post(&ctx, "/2018-06-01/runtime/invocation/back/response", "kept").await;
        assert_eq!(call.await.unwrap().unwrap().outcome, Outcome::Success("kept".into()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn next_answers_410_when_the_instance_is_evicted_while_it_waits() {
        let h = harness();
        let (target, ctx) = instance(&h, None);
        let waiting = {
            let ctx = ctx.clone();
            tokio::spawn(async move { get(&ctx, NEXT).await })
        };
        until("the instance idle", || h.scheduler.pool(&target).idle == 1).await;
        assert!(ctx.queue.evict_idle(h.shared(), ctx.id));
        let next = waiting.await.unwrap();
        assert_eq!(next.status, StatusCode::GONE);
        assert_eq!(next.json(), json!({"errorType": "Runtime.Evicted", "errorMessage": "this instance was evicted"}));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_init_error_is_recorded_for_the_instance() {
        let h = harness();
        let (_, ctx) = instance(&h, None);
        let answer = post(&ctx, "/2018-06-01/runtime/init/error", "{\"errorMessage\":\"boom\"}").await;
        assert_eq!((answer.status, answer.json()), (StatusCode::ACCEPTED, json!({"status": "OK"})));
        let recorded = lock(&ctx.init_error).clone();
        assert_eq!(
            recorded,
            Some(Outcome::FunctionError {
                error_type: "Runtime.InitError".into(),
                body: Bytes::from_static(b"{\"errorMessage\":\"boom\"}")
            }),
            "an init error without a type is a Runtime.InitError"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stokes_extensions_refuse_outside_their_context() {
        let h = harness();
        let (_, ctx) = instance(&h, None);
        let cases = [
            ("POST", "/2018-06-01/stoke/prepare", StatusCode::CONFLICT, "Stoke.NoInvocation"),
            ("GET", "/2018-06-01/stoke/prepared", StatusCode::NOT_FOUND, "Stoke.NotPrepared"),
            ("GET", "/2018-06-01/stoke/turn", StatusCode::NOT_FOUND, "Stoke.NotPrepared"),
            ("GET", "/2018-06-01/stoke/origin", StatusCode::NOT_FOUND, "Stoke.NoOrigin"),
            ("GET", "/2018-06-01/stoke/scratch", StatusCode::NOT_FOUND, "Stoke.NoScratch"),
            ("GET", "/2018-06-01/stoke/available/other", StatusCode::SERVICE_UNAVAILABLE, "Stoke.Unavailable"),
        ];
        for (method, uri, status, error_type) in cases {
            let answer = call(&ctx, method, uri, &[], b"{}".to_vec()).await;
            assert_eq!((answer.status, answer.json()["errorType"].as_str()), (status, Some(error_type)), "{uri}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prepare_needs_a_workflow_step_a_well_formed_request_and_a_known_function() {
        let h = harness();
        let (target, ctx) = instance(&h, None);
        h.scheduler.resolve_with(Arc::new(Names(vec![target.clone()])));
        let prepare = "/2018-06-01/stoke/prepare";
        let outside = submit(&h, &target, request("r1", "{}")).await;
        get(&ctx, NEXT).await;
        let answer = post(&ctx, prepare, "{\"function\":\"resize\"}").await;
        assert_eq!(
            (answer.status, answer.json()["errorType"].as_str()),
            (StatusCode::CONFLICT, Some("Stoke.NotInWorkflow"))
        );
        post(&ctx, "/2018-06-01/runtime/invocation/r1/response", "{}").await;
        outside.await.unwrap().unwrap();

        let step = InvokeRequest { execution: Some(Arc::from("exec-1")), scratch: true, ..request("r2", "{}") };
        let _step = submit(&h, &target, step).await;
        get(&ctx, NEXT).await;
        let answer = post(&ctx, prepare, "{\"fn\":\"resize\"}").await;
        assert_eq!(
            (answer.status, answer.json()["errorType"].as_str()),
            (StatusCode::BAD_REQUEST, Some("Stoke.InvalidRequest"))
        );
        let answer = post(&ctx, prepare, "{\"function\":\"missing\"}").await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(
            answer.json(),
            json!({"errorType": "ResourceNotFoundException", "errorMessage": "no function missing"})
        );
        // The step's scratch directory, where the instance sees it (the fake sandbox shows host paths).
        let answer = get(&ctx, "/2018-06-01/stoke/scratch").await;
        let expected = h.dir.path().join("run/scratch/123456789012/exec-1");
        assert_eq!(answer.json(), json!({"path": expected.display().to_string()}));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_origin_of_an_instance_is_known_during_its_init_only() {
        let h = harness();
        let origin = Origin {
            execution: Arc::from("exec-9"),
            event: Bytes::from_static(b"{\"k\":1}"),
            prepared: true,
            scratch: false,
        };
        let (target, ctx) = instance(&h, Some(origin));
        h.scheduler.resolve_with(Arc::new(Names(Vec::new())));
        let answer = get(&ctx, "/2018-06-01/stoke/origin").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.json(), json!({"execution": "exec-9", "event": {"k": 1}, "prepared": true}));
        // During init, prepare works for the origin's execution: it gets as far as resolving the function.
        let answer = post(&ctx, "/2018-06-01/stoke/prepare", "{\"function\":\"next-step\"}").await;
        assert_eq!(answer.json()["errorMessage"], "no function next-step");
        // The first next ends init.
        let _waiting = {
            let ctx = ctx.clone();
            tokio::spawn(async move { get(&ctx, NEXT).await })
        };
        until("the instance idle", || h.scheduler.pool(&target).idle == 1).await;
        let answer = get(&ctx, "/2018-06-01/stoke/origin").await;
        assert_eq!(
            (answer.status, answer.json()["errorType"].as_str()),
            (StatusCode::NOT_FOUND, Some("Stoke.NoOrigin"))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn available_says_whether_an_idle_instance_would_take_a_call() {
        let h = harness();
        let (target, ctx) = instance(&h, None);
        h.scheduler.resolve_with(Arc::new(Names(vec![target.clone()])));
        let uri = "/2018-06-01/stoke/available/resize";
        let answer = get(&ctx, uri).await;
        assert_eq!(
            (answer.status, answer.json()),
            (StatusCode::OK, json!({"available": false, "idle": 0, "queued": 0}))
        );
        let _waiting = {
            let ctx = ctx.clone();
            tokio::spawn(async move { get(&ctx, NEXT).await })
        };
        until("the instance idle", || h.scheduler.pool(&target).idle == 1).await;
        assert_eq!(get(&ctx, uri).await.json(), json!({"available": true, "idle": 1, "queued": 0}));
    }
}
