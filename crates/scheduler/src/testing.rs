//! What the crate's tests run a scheduler with: a [`FakeSandbox`] (instances are scripted runtimes in tokio
//! tasks, speaking the Runtime API over loopback HTTP), a [`TestClock`], a run directory where every
//! function's code is already unpacked, and no controller tick but the ones the test asks for
//! ([`Harness::tick`]).

use std::sync::Arc;
use std::time::Duration;

use stoke_core::{FunctionConfig, FunctionName};
use stoke_sandbox::fake::{FakeSandbox, Script};

use crate::clock::TestClock;
use crate::queue::FunctionQueue;
use crate::{
    InvokeError, InvokeRequest, InvokeResult, InvokeTarget, Outcome, Refusal, Resolver, Scheduler, Settings, Shared,
};

pub(crate) struct Harness {
    pub scheduler: Scheduler,
    pub fake: Arc<FakeSandbox>,
    pub clock: Arc<TestClock>,
    pub dir: tempfile::TempDir,
}

/// Settings that never freeze idle instances.
pub(crate) fn settings() -> Settings {
    Settings { freeze_idle_after: None, max_starting_per_function: 8, cores: 4, ..Settings::default() }
}

impl Harness {
    /// A scheduler whose instances run `script`, on [`settings`].
    pub fn new(script: Script) -> Self {
        Self::with(script, |_| {})
    }

    /// A scheduler whose instances run `script`, on [`settings`] changed by `change`.
    pub fn with(script: Script, change: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = settings();
        change(&mut settings);
        let fake = Arc::new(FakeSandbox::new(script));
        let clock = Arc::new(TestClock::default());
        let scheduler =
            Scheduler::without_ticks(fake.clone(), dir.path().join("run"), settings, clock.clone()).expect("start");
        Harness { scheduler, fake, clock, dir }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.scheduler.shared
    }

    /// Function `name` of the fixture's account (`provided` runtime, 128 MB, 3 s, keep-alive 600 s), its
    /// configuration changed by `configure`. Its code is unpacked already, so no archive is read.
    pub fn target(&self, name: &str, configure: impl FnOnce(&mut FunctionConfig)) -> Arc<InvokeTarget> {
        let mut target = InvokeTarget::fixture("$LATEST");
        target.function = FunctionName::parse(name).expect("name");
        target.invoked_arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{name}");
        configure(&mut target.config);
        let code = self.dir.path().join("run").join("code").join(&target.code_sha256);
        std::fs::create_dir_all(&code).expect("code dir");
        std::fs::write(code.join("bootstrap"), "#!/bin/sh\n").expect("bootstrap");
        Arc::new(target)
    }

    pub async fn invoke(&self, target: &Arc<InvokeTarget>, payload: &str) -> Result<InvokeResult, InvokeError> {
        let req = InvokeRequest { payload: payload.to_string().into(), ..Default::default() };
        self.scheduler.invoke(target, req).await
    }

    /// Runs `payload` and returns the response body; fails the test on anything else.
    pub async fn ok(&self, target: &Arc<InvokeTarget>, payload: &str) -> (String, InvokeResult) {
        let result = self.invoke(target, payload).await.expect("invoked");
        match &result.outcome {
            Outcome::Success(body) => (String::from_utf8(body.to_vec()).expect("utf-8"), result),
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// The text of `target`'s first 1,000 log lines.
    pub fn logs(&self, target: &Arc<InvokeTarget>) -> Vec<String> {
        self.scheduler.logs(&target.account, &target.function, 0, 1000).into_iter().map(|l| l.text).collect()
    }

    /// One controller tick, now.
    pub fn tick(&self) {
        crate::tick(self.shared());
    }

    pub fn queue(&self, target: &Arc<InvokeTarget>) -> Arc<FunctionQueue> {
        crate::queue_of(self.shared(), target)
    }

    pub fn evictions(&self, reason: &str) -> u64 {
        self.scheduler.node_status().evictions.get(reason).copied().unwrap_or(0)
    }

    /// Waits until `target`'s pool has `n` idle instances (an instance that answered is idle only once it
    /// has asked for its next invocation).
    pub async fn idle(&self, target: &Arc<InvokeTarget>, n: usize) {
        let what = format!("{n} idle instances");
        until(&what, || self.scheduler.pool(target).idle == n).await;
    }
}

/// Waits up to 5 s for `cond`; fails the test, saying `what` it waited for, if it never holds.
pub(crate) async fn until(what: &str, cond: impl Fn() -> bool) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        if tokio::time::Instant::now() >= give_up {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The error type and parsed body of a function error; fails the test on a response.
pub(crate) fn function_error(result: &InvokeResult) -> (String, serde_json::Value) {
    match &result.outcome {
        Outcome::FunctionError { error_type, body } => {
            (error_type.clone(), serde_json::from_slice(body).unwrap_or(serde_json::Value::Null))
        }
        other => panic!("expected a function error, got {other:?}"),
    }
}

/// Resolves the names of the harness's functions.
pub(crate) struct Names(pub Vec<Arc<InvokeTarget>>);

impl Resolver for Names {
    fn resolve<'a>(
        &'a self,
        _account: &'a stoke_core::AccountId,
        reference: &'a str,
    ) -> crate::BoxFuture<'a, Result<Arc<InvokeTarget>, Refusal>> {
        let found = self.0.iter().find(|t| t.function.as_str() == reference).cloned();
        Box::pin(async move {
            found.ok_or_else(|| Refusal {
                status: 404,
                code: "ResourceNotFoundException".into(),
                message: format!("no function {reference}"),
            })
        })
    }
}

/// A successful result of `body` under request id `id`, as another node would report it.
pub(crate) fn ok_result(id: &str, body: &'static str) -> InvokeResult {
    InvokeResult {
        request_id: id.to_string(),
        outcome: Outcome::Success(body.into()),
        report: crate::Report { duration_ms: 1.0, billed_ms: 1, memory_mb: 128, instance: 1, ..Default::default() },
        log: vec![],
        node: None,
    }
}
