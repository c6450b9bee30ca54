//! One instance: launch it in the sandbox with its own Runtime API endpoint, pump its output into the
//! function's log, and clean up when it exits (answering any invocation it held).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::context::{error_outcome, InstanceCtx, NO_SPACE, PLATFORM};
use crate::queue::{self, FunctionQueue, Origin};
use crate::{lock, Outcome, Shared};

/// Starts instance `id` of `queue`'s function in the background, charged `charge_mb` on the node's memory
/// ledger and holding `gpus` on its GPU ledger (the caller took both); both are given back when it is gone.
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    queue: Arc<FunctionQueue>,
    charge_mb: u64,
    id: u64,
    gpus: Option<Vec<stoke_core::gpu::GrantedGpu>>,
) {
    queue.add_instance(id, charge_mb);
    let origin = queue.origin_of_new();
    let shared = shared.clone();
    tokio::spawn(async move { run(shared, queue, id, origin, gpus).await });
}

async fn run(
    shared: Arc<Shared>,
    queue: Arc<FunctionQueue>,
    id: u64,
    origin: Option<Origin>,
    gpus: Option<Vec<stoke_core::gpu::GrantedGpu>>,
) {
    let mut ctx = InstanceCtx::new(id, origin, shared.clone(), queue.clone());
    ctx.gpus = gpus;
    let ctx = Arc::new(ctx);
    let init_error = match launch(&shared, &ctx).await {
        Err(outcome) => Some(outcome),
        Ok((spawned, server, serve)) => {
            let stoke_sandbox::Spawned { stdout, stderr, exit, control, .. } = spawned;
            for fd in [stdout, stderr].into_iter().flatten() {
                let (tx, rx) = mpsc::unbounded_channel();
                lock(&ctx.drains).push(tx);
                tokio::spawn(pump(fd, ctx.clone(), rx));
            }
            let _ = serve.send(control);
            let status = exit.await;
            server.abort();
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            let running = lock(&ctx.current).take();
            let out_of_memory = ctx.control.get().is_some_and(|c| c.out_of_memory());
            if let Some(cur) = running {
                let message = format!("RequestId: {} Error: Runtime exited with error: {status}", cur.id);
                ctx.log(Some(cur.id.clone()), message.clone());
                let error_type = if out_of_memory { "Runtime.OutOfMemory" } else { "Runtime.ExitError" };
                ctx.finish(cur, error_outcome(error_type, message));
            }
            if ctx.ready.get().is_none() {
                let reported = lock(&ctx.init_error).take();
                Some(reported.unwrap_or_else(|| {
                    if out_of_memory {
                        error_outcome(
                            "Runtime.OutOfMemory",
                            format!(
                                "Runtime ran out of memory during init ({status}); its working set does not fit in \
                                 {} MB: raise memory_mb (stoke tune finds the right size)",
                                ctx.queue.target.config.memory_mb
                            ),
                        )
                    } else {
                        error_outcome(
                            "Runtime.ExitError",
                            format!(
                                "Runtime exited before it asked for work ({status}); see `stoke logs` for its output"
                            ),
                        )
                    }
                }))
            } else {
                None
            }
        }
    };
    if let Some(Outcome::FunctionError { body, .. }) = &init_error {
        ctx.log(None, format!("INIT_REPORT instance {id} failed: {}", String::from_utf8_lossy(body)));
    }
    if ctx.gpus.is_some() {
        // What it held comes back before the queue looks for room again.
        lock(&shared.gpus).release(id);
    }
    let orphans = queue.instance_gone(&shared, id, init_error.clone());
    if let Some(error) = init_error {
        for inv in orphans {
            queue::fail(&queue, inv, error.clone());
        }
    }
    queue::reconcile(&shared, &queue);
}

/// A launched instance, its endpoint's server, and the endpoint's go-ahead: the endpoint takes no
/// connection until its output is being read, so a runtime's first lines belong to its first invocation.
type Launched =
    (stoke_sandbox::Spawned, tokio::task::JoinHandle<()>, oneshot::Sender<Arc<dyn stoke_sandbox::InstanceControl>>);

async fn launch(shared: &Arc<Shared>, ctx: &Arc<InstanceCtx>) -> Result<Launched, Outcome> {
    let queue = &ctx.queue;
    let target = queue.target.clone();
    let code_dir = queue
        .code_dir
        .get_or_try_init(|| {
            let (archive, sha, run_dir) = (target.archive.clone(), target.code_sha256.clone(), shared.run_dir.clone());
            async move {
                tokio::task::spawn_blocking(move || crate::codecache::unpack(&run_dir, &archive, &sha))
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?
            }
        })
        .await
        .map_err(|e| {
            if matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) {
                error_outcome(
                    NO_SPACE,
                    format!(
                        "the node's disk is full: cannot unpack the function's code ({e}); retry once space is freed"
                    ),
                )
            } else {
                error_outcome("Runtime.InitError", format!("cannot unpack the function's code: {e}"))
            }
        })?
        .clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| error_outcome("Runtime.InitError", format!("cannot open the Runtime API endpoint: {e}")))?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let mut spec =
        crate::runtimes::spawn_spec(shared.sandbox.as_ref(), &target, &code_dir, &shared.run_dir, port, ctx.id)
            .map_err(|msg| error_outcome("Runtime.InvalidEntrypoint", msg))?;
    if let (Some(granted), Some(host)) = (&ctx.gpus, &shared.settings.gpu) {
        let held: Vec<(u32, Option<(u64, u32)>)> =
            granted.iter().map(|g| (g.index, (!g.whole).then_some((g.memory_mb, g.percentage)))).collect();
        let plan = host.plan(&held, shared.sandbox.isolates_devices());
        spec.env.extend(plan.env.iter().cloned());
        spec.gpu = Some(plan);
    }
    let (listener, started) =
        crate::runtime_api::InstanceListener::new(listener, ctx.id, shared.metrics.runtime_connections.clone());
    let server = tokio::spawn(crate::runtime_api::serve(listener, ctx.clone()));
    let mut attempt = 0;
    // Starting a sandbox takes milliseconds of system calls (lean's clone and set-up, an OCI bundle's files
    // and mounts, a VM's disks): off the async threads, so warm invocations on them do not wait for it — on
    // threads that live as long as the server, since an instance dies with the thread that started it.
    let spec = Arc::new(spec);
    let spawned = loop {
        let (sandbox, s) = (shared.sandbox.clone(), spec.clone());
        let started = stoke_sandbox::on_lasting_thread(move || sandbox.spawn(&s))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(format!("the sandbox start was lost: {e}"))));
        match started {
            Ok(s) => break s,
            Err(e) => {
                let functions_fault = stoke_sandbox::entrypoint_fault(&e);
                if !functions_fault && attempt < SPAWN_RETRIES {
                    attempt += 1;
                    ctx.log(None, format!("instance {} could not start ({e}); trying again", ctx.id));
                    tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
                    continue;
                }
                server.abort();
                let program = spec.program.display();
                return Err(if functions_fault {
                    error_outcome("Runtime.InvalidEntrypoint", format!("cannot start {program}: {e}"))
                } else {
                    error_outcome(
                        PLATFORM,
                        format!("the node could not start an instance to run {program}: {e}; retry the invocation"),
                    )
                });
            }
        }
    };
    let _ = ctx.launched.set(shared.clock.now().saturating_duration_since(ctx.spawned_at));
    let _ = ctx.control.set(spawned.control.clone());
    if ctx.gpus.is_some() && shared.settings.gpu.as_ref().is_some_and(|g| g.samples_memory()) {
        tokio::spawn(sample_gpu_memory(Arc::downgrade(ctx)));
    }
    queue.set_control(ctx.id, spawned.control.clone());
    Ok((spawned, server, started))
}

/// How often the GPU memory an instance's processes hold is read, for its REPORT's peak.
const GPU_SAMPLE: std::time::Duration = std::time::Duration::from_millis(100);

/// Reads the GPU memory of an instance's processes every [`GPU_SAMPLE`] while it lives, keeping the peak.
/// Each reading is a driver call and a walk of the instance's processes: off the async threads.
async fn sample_gpu_memory(ctx: std::sync::Weak<InstanceCtx>) {
    let mut every = tokio::time::interval(GPU_SAMPLE);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let Some(ctx) = ctx.upgrade() else { return };
        let read = tokio::task::spawn_blocking(move || ctx.sample_gpu_memory()).await;
        if !read.unwrap_or(false) {
            return;
        }
    }
}

/// Starts a sandbox may try again after a failure of the node's own (a busy device, a short resource).
const SPAWN_RETRIES: u32 = 2;

/// Copies one output pipe of an instance into the function's log, line by line, tagging each line with
/// the invocation running when it was read. Reads without blocking, so a drain request can take
/// everything already written at once.
async fn pump(
    fd: std::os::fd::OwnedFd,
    ctx: Arc<InstanceCtx>,
    mut drains: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
) {
    let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else { return };
    let mut pending = Vec::new();
    let mut open = true;
    while open {
        tokio::select! {
            ready = pipe.readable() => {
                open = ready.is_ok() && read_available(&pipe, &mut pending, &ctx);
            }
            Some(ack) = drains.recv() => {
                open = read_available(&pipe, &mut pending, &ctx);
                let _ = ack.send(());
            }
        }
    }
    if !pending.is_empty() {
        ctx.log(ctx.current_id(), String::from_utf8_lossy(&pending).into_owned());
    }
}

/// Reads what the pipe holds now and logs its complete lines; false once the pipe is closed.
fn read_available(pipe: &tokio::net::unix::pipe::Receiver, pending: &mut Vec<u8>, ctx: &InstanceCtx) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match pipe.try_read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                pending.extend_from_slice(&chunk[..n]);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]).trim_end_matches('\r').to_string();
                    ctx.log(ctx.current_id(), text);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}
