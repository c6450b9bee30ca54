//! A sandbox for tests (feature `test-fixtures`) that starts no process. Each instance is a tokio task running
//! a *scripted runtime*: it finds its Runtime API endpoint where a real runtime does (`AWS_LAMBDA_RUNTIME_API`
//! in the spawn spec's environment) and speaks the API over HTTP — `GET …/invocation/next`, then the
//! [`Script`]'s [`Action`] for the invocation (`POST …/response` or `…/error`, exit, hang …) — so everything the
//! scheduler does with an instance runs as it does with a real one, minus the process.
//!
//! Killing an instance stops its task. The sandbox records every instance it started ([`FakeSandbox::spawned`])
//! so tests can assert placement, and answers the memory questions with values the test sets.

use crate::lock;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::{InstanceControl, Sandbox, SpawnSpec, Spawned};

mod client;

pub use client::HttpResponse;

/// The Runtime API's version prefix.
const API: &str = "/2018-06-01";

/// What the scripted runtime does before it asks for its first invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    /// Asks for work at once.
    Ready,
    /// Initialises for this long, then asks for work.
    ReadyAfter(Duration),
    /// Reports an initialisation error (`POST /runtime/init/error`), then exits with status 1.
    Error { error_type: String, message: String },
    /// Exits with this status before it asks for work.
    Exit(i32),
    /// Never asks for work.
    Hang,
}

/// What the scripted runtime does with one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `POST …/{id}/response` with this body.
    Respond(Vec<u8>),
    /// `POST …/{id}/error` with `{"errorType", "errorMessage"}` and the error-type header.
    Fail { error_type: String, message: String },
    /// The runtime exits with this status, the invocation unanswered.
    Exit(i32),
    /// The kernel kills the runtime for exceeding its memory (SIGKILL, and the instance reports it).
    OutOfMemory,
    /// Never answers (until the instance is killed).
    Hang,
    /// Asks for the next invocation without answering this one.
    Abandon,
}

impl Action {
    pub fn respond(body: impl Into<Vec<u8>>) -> Self {
        Action::Respond(body.into())
    }

    pub fn fail(error_type: &str, message: &str) -> Self {
        Action::Fail { error_type: error_type.into(), message: message.into() }
    }
}

/// One invocation as the scripted runtime received it from `next`.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    /// The response's headers, names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Invocation {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("")
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Arc<dyn Fn(Invocation, Api) -> BoxFuture<Action> + Send + Sync>;

/// A runtime's behaviour: its init, then what it does with each invocation.
#[derive(Clone)]
pub struct Script {
    init: Init,
    handler: Handler,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").field("init", &self.init).finish_non_exhaustive()
    }
}

impl Script {
    /// Answers each invocation with its own event.
    pub fn echo() -> Self {
        Self::reply(|inv| Action::Respond(inv.body.clone()))
    }

    /// Answers each invocation with what `f` says.
    pub fn reply(f: impl Fn(&Invocation) -> Action + Send + Sync + 'static) -> Self {
        Self::handler(move |inv, _| std::future::ready(f(&inv)))
    }

    /// Handles each invocation with `f`, which may call the Runtime API itself through [`Api`] (stoke's
    /// extensions: `prepare`, `turn` …), write to the instance's output, or sleep.
    pub fn handler<F, Fut>(f: F) -> Self
    where
        F: Fn(Invocation, Api) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Action> + Send + 'static,
    {
        Script { init: Init::Ready, handler: Arc::new(move |inv, api| Box::pin(f(inv, api))) }
    }

    /// The same script with this init.
    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// The same script, each invocation taking `run` before its action.
    pub fn taking(self, run: Duration) -> Self {
        let inner = self.handler;
        Script {
            init: self.init,
            handler: Arc::new(move |inv, api| {
                let inner = inner.clone();
                Box::pin(async move {
                    tokio::time::sleep(run).await;
                    inner(inv, api).await
                })
            }),
        }
    }
}

/// What the test sets and the sandbox answers with.
struct Knobs {
    default_script: Script,
    scripts: HashMap<String, Script>,
    /// What `spawn` fails with, and how many more times (`None`: every time).
    spawn_error: Option<(io::ErrorKind, String, Option<u32>)>,
    instances_memory: Option<u64>,
    peak_memory: Option<u64>,
    memory_limit: Option<u64>,
    can_freeze: bool,
}

/// A sandbox whose instances are scripted runtimes in tokio tasks. See the module's documentation.
pub struct FakeSandbox {
    knobs: Arc<Mutex<Knobs>>,
    spawned: Mutex<Vec<Arc<FakeInstance>>>,
    next_pid: AtomicU32,
}

impl std::fmt::Debug for FakeSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSandbox").field("spawned", &lock(&self.spawned).len()).finish_non_exhaustive()
    }
}

impl FakeSandbox {
    /// Instances run `script` unless their function has its own ([`FakeSandbox::script_for`]).
    pub fn new(script: Script) -> Self {
        FakeSandbox {
            knobs: Arc::new(Mutex::new(Knobs {
                default_script: script,
                scripts: HashMap::new(),
                spawn_error: None,
                instances_memory: None,
                peak_memory: None,
                memory_limit: None,
                can_freeze: false,
            })),
            spawned: Mutex::new(Vec::new()),
            next_pid: AtomicU32::new(10_000),
        }
    }

    /// Instances of `function` (by `AWS_LAMBDA_FUNCTION_NAME`) started from now on run `script`.
    pub fn script_for(&self, function: &str, script: Script) {
        lock(&self.knobs).scripts.insert(function.to_string(), script);
    }

    /// Instances started from now on, of functions without their own script, run `script`.
    pub fn set_script(&self, script: Script) {
        lock(&self.knobs).default_script = script;
    }

    /// `spawn` fails with an error of this kind and message (`None`: it succeeds again).
    pub fn fail_spawns(&self, failure: Option<(io::ErrorKind, &str)>) {
        lock(&self.knobs).spawn_error = failure.map(|(kind, message)| (kind, message.to_string(), None));
    }

    /// The next `times` spawns fail with an error of this kind and message; the ones after succeed.
    pub fn fail_next_spawns(&self, times: u32, kind: io::ErrorKind, message: &str) {
        lock(&self.knobs).spawn_error = Some((kind, message.to_string(), Some(times)));
    }

    /// What [`Sandbox::instances_memory_bytes`] answers.
    pub fn set_instances_memory(&self, bytes: Option<u64>) {
        lock(&self.knobs).instances_memory = bytes;
    }

    /// What every instance's [`InstanceControl::peak_memory_bytes`] answers.
    pub fn set_peak_memory(&self, bytes: Option<u64>) {
        lock(&self.knobs).peak_memory = bytes;
    }

    /// Whether instances can be frozen (their `freeze` then records the state and returns true).
    pub fn set_can_freeze(&self, can: bool) {
        lock(&self.knobs).can_freeze = can;
    }

    /// The limit [`Sandbox::limit_instances_memory`] was last given.
    pub fn memory_limit(&self) -> Option<u64> {
        lock(&self.knobs).memory_limit
    }

    /// Every instance started, oldest first.
    pub fn spawned(&self) -> Vec<Arc<FakeInstance>> {
        lock(&self.spawned).clone()
    }

    pub fn spawn_count(&self) -> usize {
        lock(&self.spawned).len()
    }

    /// Instances started of `function`.
    pub fn spawned_of(&self, function: &str) -> Vec<Arc<FakeInstance>> {
        self.spawned().into_iter().filter(|i| i.function() == function).collect()
    }

    /// The instance with this pid.
    pub fn instance(&self, pid: u32) -> Option<Arc<FakeInstance>> {
        self.spawned().into_iter().find(|i| i.pid == pid)
    }

    /// Pids of the instances killed, in the order they were.
    pub fn killed(&self) -> Vec<u32> {
        let mut killed: Vec<_> = self.spawned().iter().filter_map(|i| i.killed_at().map(|at| (at, i.pid))).collect();
        killed.sort();
        killed.into_iter().map(|(_, pid)| pid).collect()
    }

    /// Instances whose runtime is still running.
    pub fn running(&self) -> usize {
        self.spawned().iter().filter(|i| i.exit_status().is_none()).count()
    }
}

/// Kills are numbered across instances, so [`FakeSandbox::killed`] can order them.
static KILLS: AtomicU64 = AtomicU64::new(1);

/// One instance the fake started: its spec, and what happened to it.
pub struct FakeInstance {
    pub pid: u32,
    pub spec: SpawnSpec,
    knobs: Arc<Mutex<Knobs>>,
    kill: watch::Sender<bool>,
    killed_at: AtomicU64,
    exit: Mutex<Option<ExitStatus>>,
    out_of_memory: AtomicBool,
    /// Every successful `freeze` call's argument, in order.
    freezes: Mutex<Vec<bool>>,
    /// Local addresses of the connections the runtime opened (what `opened_connection` checks).
    connections: Mutex<HashSet<SocketAddr>>,
    invocations: AtomicU64,
}

impl std::fmt::Debug for FakeInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeInstance")
            .field("pid", &self.pid)
            .field("function", &self.function())
            .field("exit", &self.exit_status())
            .finish_non_exhaustive()
    }
}

impl FakeInstance {
    /// A variable of the environment it was started with.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.spec.env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `AWS_LAMBDA_FUNCTION_NAME`.
    pub fn function(&self) -> &str {
        self.env("AWS_LAMBDA_FUNCTION_NAME").unwrap_or("")
    }

    /// `AWS_LAMBDA_RUNTIME_API`: `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        self.env("AWS_LAMBDA_RUNTIME_API").unwrap_or("")
    }

    pub fn is_killed(&self) -> bool {
        self.killed_at().is_some()
    }

    fn killed_at(&self) -> Option<u64> {
        Some(self.killed_at.load(Ordering::Relaxed)).filter(|n| *n > 0)
    }

    /// How the runtime ended; `None` while it runs.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *lock(&self.exit)
    }

    pub fn is_frozen(&self) -> bool {
        lock(&self.freezes).last() == Some(&true)
    }

    /// Each freeze (`true`) and thaw, in order.
    pub fn freezes(&self) -> Vec<bool> {
        lock(&self.freezes).clone()
    }

    /// Invocations the runtime received from `next`.
    pub fn invocations(&self) -> u64 {
        self.invocations.load(Ordering::Relaxed)
    }

    /// Waits (up to `limit`) until the runtime has ended; its status.
    pub async fn exited(&self, limit: Duration) -> Option<ExitStatus> {
        let until = tokio::time::Instant::now() + limit;
        loop {
            if let Some(s) = self.exit_status() {
                return Some(s);
            }
            if tokio::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl InstanceControl for FakeInstance {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn kill(&self) {
        let _ = self.killed_at.compare_exchange(
            0,
            KILLS.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.kill.send_replace(true);
    }

    fn peak_memory_bytes(&self) -> Option<u64> {
        lock(&self.knobs).peak_memory
    }

    fn out_of_memory(&self) -> bool {
        self.out_of_memory.load(Ordering::Relaxed)
    }

    fn freeze(&self, frozen: bool) -> bool {
        if !lock(&self.knobs).can_freeze {
            return false;
        }
        lock(&self.freezes).push(frozen);
        true
    }

    fn opened_connection(&self, local: SocketAddr, peer: SocketAddr) -> bool {
        self.endpoint().parse::<SocketAddr>().is_ok_and(|e| e.port() == local.port())
            && lock(&self.connections).contains(&peer)
    }
}

/// The scripted runtime's view of its endpoint, handed to [`Script::handler`]s: plain HTTP requests to the
/// Runtime API, and the instance's standard output.
#[derive(Clone)]
pub struct Api {
    instance: Arc<FakeInstance>,
    stdout: Arc<Mutex<Option<std::io::PipeWriter>>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("endpoint", &self.instance.endpoint()).finish()
    }
}

impl Api {
    /// `GET {path}` (a path under the endpoint, e.g. `/2018-06-01/stoke/turn`).
    pub async fn get(&self, path: &str) -> io::Result<HttpResponse> {
        self.request("GET", path, &[], &[]).await
    }

    /// `POST {path}` with `body` and extra `headers`.
    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> io::Result<HttpResponse> {
        self.request("POST", path, headers, body).await
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<HttpResponse> {
        let endpoint: SocketAddr = self
            .instance
            .endpoint()
            .parse()
            .map_err(|_| io::Error::other("AWS_LAMBDA_RUNTIME_API is not an address"))?;
        client::request(endpoint, &self.instance.connections, method, path, headers, body).await
    }

    /// Writes a line to the instance's standard output (the function's log).
    pub fn print(&self, line: &str) {
        use std::io::Write;
        if let Some(out) = lock(&self.stdout).as_mut() {
            let _ = writeln!(out, "{line}");
        }
    }
}

impl Sandbox for FakeSandbox {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn instances_memory_bytes(&self) -> Option<u64> {
        lock(&self.knobs).instances_memory
    }

    fn limit_instances_memory(&self, bytes: u64) -> bool {
        lock(&self.knobs).memory_limit = Some(bytes);
        true
    }

    fn spawn(&self, spec: &SpawnSpec) -> io::Result<Spawned> {
        let script = {
            let mut knobs = lock(&self.knobs);
            if let Some((kind, message, left)) = &mut knobs.spawn_error {
                if *left != Some(0) {
                    let error = io::Error::new(*kind, message.clone());
                    if let Some(n) = left {
                        *n -= 1;
                    }
                    return Err(error);
                }
                knobs.spawn_error = None;
            }
            let function = spec.env.iter().find(|(k, _)| k == "AWS_LAMBDA_FUNCTION_NAME").map(|(_, v)| v.as_str());
            function.and_then(|f| knobs.scripts.get(f)).unwrap_or(&knobs.default_script).clone()
        };
        let (stdout, writer) = std::io::pipe()?;
        let (kill, killed) = watch::channel(false);
        let instance = Arc::new(FakeInstance {
            pid: self.next_pid.fetch_add(1, Ordering::Relaxed),
            spec: spec.clone(),
            knobs: self.knobs.clone(),
            kill,
            killed_at: AtomicU64::new(0),
            exit: Mutex::new(None),
            out_of_memory: AtomicBool::new(false),
            freezes: Mutex::new(Vec::new()),
            connections: Mutex::new(HashSet::new()),
            invocations: AtomicU64::new(0),
        });
        lock(&self.spawned).push(instance.clone());
        let api = Api { instance: instance.clone(), stdout: Arc::new(Mutex::new(Some(writer))) };
        let (exit_tx, exit_rx) = oneshot::channel();
        tokio::spawn(supervise(script, api, killed, exit_tx));
        Ok(Spawned {
            stdout: Some(stdout.into()),
            stderr: None,
            exit: Box::pin(async move { exit_rx.await.map_err(|_| io::Error::other("the fake instance vanished")) }),
            control: instance,
        })
    }
}

/// How a scripted runtime ended on its own.
enum End {
    Exit(i32),
    OutOfMemory,
}

fn signalled(signal: i32) -> ExitStatus {
    ExitStatus::from_raw(signal)
}

/// Runs the script until it ends, the instance is killed, or whoever waits for the instance stops waiting
/// (a child process is killed on drop); then closes its output and reports how it ended.
async fn supervise(script: Script, api: Api, mut killed: watch::Receiver<bool>, mut exit: oneshot::Sender<ExitStatus>) {
    let instance = api.instance.clone();
    let stdout = api.stdout.clone();
    let status = tokio::select! {
        end = run(script, api) => match end {
            End::Exit(code) => ExitStatus::from_raw((code & 0xff) << 8),
            End::OutOfMemory => {
                instance.out_of_memory.store(true, Ordering::Relaxed);
                signalled(libc::SIGKILL)
            }
        },
        _ = killed.wait_for(|k| *k) => signalled(libc::SIGKILL),
        _ = exit.closed() => signalled(libc::SIGKILL),
    };
    lock(&stdout).take();
    *lock(&instance.exit) = Some(status);
    let _ = exit.send(status);
}

/// The runtime's loop: init, then `next` → the script's action, until it exits.
async fn run(script: Script, api: Api) -> End {
    match script.init {
        Init::Ready => {}
        Init::ReadyAfter(d) => tokio::time::sleep(d).await,
        Init::Error { error_type, message } => {
            let body = serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string();
            let header = [("lambda-runtime-function-error-type", error_type.as_str())];
            let _ = api.post(&format!("{API}/runtime/init/error"), &header, body.as_bytes()).await;
            return End::Exit(1);
        }
        Init::Exit(code) => return End::Exit(code),
        Init::Hang => std::future::pending().await,
    }
    loop {
        let Ok(next) = api.get(&format!("{API}/runtime/invocation/next")).await else { return End::Exit(1) };
        if next.status != 200 {
            // Evicted (410) or refused: a real runtime gives up too.
            return End::Exit(if next.status == 410 { 0 } else { 1 });
        }
        let inv = Invocation {
            request_id: next.header("lambda-runtime-aws-request-id").unwrap_or_default().to_string(),
            headers: next.headers,
            body: next.body,
        };
        api.instance.invocations.fetch_add(1, Ordering::Relaxed);
        let id = inv.request_id.clone();
        let answered = match (script.handler)(inv, api.clone()).await {
            Action::Respond(body) => api.post(&format!("{API}/runtime/invocation/{id}/response"), &[], &body).await,
            Action::Fail { error_type, message } => {
                let body = serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string();
                let header = [("lambda-runtime-function-error-type", error_type.as_str())];
                api.post(&format!("{API}/runtime/invocation/{id}/error"), &header, body.as_bytes()).await
            }
            Action::Exit(code) => return End::Exit(code),
            Action::OutOfMemory => return End::OutOfMemory,
            Action::Hang => std::future::pending().await,
            Action::Abandon => continue,
        };
        if answered.is_err() {
            return End::Exit(1);
        }
    }
}

#[cfg(test)]
mod tests;
