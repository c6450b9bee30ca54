//! Language runtimes: stoke's own bootstraps for Python and Node (standard library only, so they start in
//! milliseconds), and `provided`, which runs the archive's `bootstrap` — any Runtime API client works.

use std::path::{Path, PathBuf};

use stoke_core::Runtime;
use stoke_sandbox::{InstancePaths, Sandbox, SpawnSpec};

use crate::{Clock, InvokeTarget, SystemClock};

const PYTHON_BOOTSTRAP: &str = include_str!("../runtimes/python_bootstrap.py");
const NODE_BOOTSTRAP: &str = include_str!("../runtimes/node_bootstrap.js");
/// The runtime interfaces (`prepare`, `wait_turn`, …) for Python and Node handlers: `import stoke`,
/// `require('stoke')`.
const PYTHON_HELPER: &str = include_str!("../runtimes/stoke.py");
const NODE_HELPER: &str = include_str!("../runtimes/stoke.js");

/// Writes the bootstraps and helper modules under `<run_dir>/runtimes`.
pub fn install(run_dir: &Path) -> std::io::Result<()> {
    let dir = run_dir.join("runtimes");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("stoke_python_bootstrap.py"), PYTHON_BOOTSTRAP)?;
    std::fs::write(dir.join("stoke_node_bootstrap.js"), NODE_BOOTSTRAP)?;
    // Next to the python bootstrap: on its sys.path. The node runtime's NODE_PATH names the directory.
    std::fs::write(dir.join("stoke.py"), PYTHON_HELPER)?;
    std::fs::write(dir.join("stoke.js"), NODE_HELPER)?;
    // A zygote's instances install the instance filter themselves, from these bytes.
    std::fs::write(dir.join("stoke_python_zygote.py"), stoke_sandbox::lean::zygote::PYTHON_ZYGOTE)?;
    std::fs::write(dir.join("stoke_seccomp.bpf"), stoke_sandbox::lean::seccomp::program_bytes())?;
    Ok(())
}

/// The host directory holding an account's workflow scratch directories (one per execution).
pub fn scratch_root(run_dir: &Path, account: &stoke_core::AccountId) -> PathBuf {
    run_dir.join("scratch").join(account.as_str())
}

/// Finds an executable on the server's PATH.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The real interpreter behind a name on PATH. Version managers put shell-script shims first on PATH
/// (pyenv, nvm), which cost ~100 ms per start; asking the interpreter where it lives skips them.
/// Resolved once per server.
fn interpreter(name: &'static str, ask: &'static [&'static str]) -> Option<PathBuf> {
    static CACHE: std::sync::Mutex<Vec<(&str, Option<PathBuf>)>> = std::sync::Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, found)) = cache.iter().find(|(n, _)| *n == name) {
        return found.clone();
    }
    let found = find_program(name).map(|shim| {
        std::process::Command::new(&shim)
            .args(ask)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|p| p.is_file())
            .unwrap_or(shim)
    });
    cache.push((name, found.clone()));
    found
}

const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment every runtime gets (Lambda's reserved variables, as its Runtime Interface Emulator sets
/// them), then the function's own variables.
fn environment(target: &InvokeTarget, seen: &InstancePaths, port: u16, instance: u64) -> Vec<(String, String)> {
    let c = &target.config;
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), BASE_PATH.into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TZ".into(), ":UTC".into()),
        ("HOME".into(), "/tmp".into()),
        ("AWS_LAMBDA_RUNTIME_API".into(), format!("127.0.0.1:{port}")),
        ("AWS_LAMBDA_FUNCTION_NAME".into(), target.function.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), target.version.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), c.memory_mb.to_string()),
        ("AWS_LAMBDA_LOG_GROUP_NAME".into(), c.logging.group_of(target.function.as_str())),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME".into(),
            format!("{}/[{}]{instance:016x}", SystemClock.now_ms() / 86_400_000, target.version),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE".into(), "on-demand".into()),
        ("AWS_REGION".into(), target.region.clone()),
        ("AWS_DEFAULT_REGION".into(), target.region.clone()),
        ("AWS_EXECUTION_ENV".into(), format!("AWS_Lambda_{}", c.runtime)),
        ("_HANDLER".into(), c.handler.clone()),
        ("LAMBDA_TASK_ROOT".into(), seen.task_root.display().to_string()),
        ("LAMBDA_RUNTIME_DIR".into(), seen.runtime_dir.display().to_string()),
    ];
    env.extend(c.logging.environment().into_iter().filter(|(k, _)| !c.environment.contains_key(k)));
    // Each name once: a program's environment with a name twice reads differently in each language.
    env.extend(target.platform_env.iter().filter(|(k, _)| !c.environment.contains_key(k)).cloned());
    env.extend(c.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// Where the instance sees its layers' content, the winning layer first: the sandbox's merged directory
/// (`/opt`), or each layer's own directory when the sandbox does not merge them.
fn layer_roots(sandbox: &dyn Sandbox, target: &InvokeTarget) -> Vec<PathBuf> {
    if target.layers.is_empty() {
        return Vec::new();
    }
    match sandbox.layer_root() {
        Some(merged) => vec![merged],
        None => target.layers.iter().rev().cloned().collect(),
    }
}

/// Puts the layers' search paths (Lambda's layout) into the environment, merged with what the function
/// set itself.
fn add_layer_paths(env: &mut Vec<(String, String)>, runtime: Runtime, roots: &[PathBuf]) {
    if roots.is_empty() {
        return;
    }
    for (var, ours) in stoke_core::layer::search_paths(runtime, roots) {
        // The function's own value (set after the platform's) is the one that counts.
        let existing = env.iter().rev().find(|(k, _)| k == var).map(|(_, v)| v.clone());
        env.retain(|(k, _)| k != var);
        env.push((var.to_string(), stoke_core::layer::merge_search_path(var, &ours, existing.as_deref())));
    }
}

/// How stoke's Python runtime starts (`seen` is where the instance sees the runtime files). -S: no host
/// site-packages — a function brings its dependencies in its archive or its layers, as on Lambda — and
/// skipping site saves most of the interpreter's start-up.
fn python_args(seen_runtime_dir: &Path) -> Vec<std::ffi::OsString> {
    vec!["-S".into(), "-u".into(), seen_runtime_dir.join("stoke_python_bootstrap.py").into_os_string()]
}

fn host_python() -> Option<PathBuf> {
    interpreter("python3", &["-S", "-c", "import sys; print(sys.executable)"])
}

fn host_node() -> Option<PathBuf> {
    interpreter("node", &["-e", "console.log(process.execPath)"])
}

/// The installation directories of the node's interpreters outside `/usr`, part of the default image.
fn default_host_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        [host_python(), host_node()].into_iter().flatten().flat_map(|p| installation(&p)).collect();
    dirs.dedup();
    dirs
}

/// Kinds of generic instance (started before their function is known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenericKind {
    /// Set up (namespaces, cgroups, file system), nothing started: serves any runtime on the default image.
    Sandbox,
    /// stoke's Python runtime already started, waiting for its function: serves `python3.x` on the default
    /// image.
    Python,
}

impl GenericKind {
    pub fn parse(s: &str) -> Option<GenericKind> {
        match s {
            "sandbox" => Some(GenericKind::Sandbox),
            "python" => Some(GenericKind::Python),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GenericKind::Sandbox => "sandbox",
            GenericKind::Python => "python",
        }
    }
}

/// What the sandbox needs to keep generic instances of these kinds.
pub(crate) fn generic_specs(run_dir: &Path, kinds: &[(GenericKind, usize)]) -> Vec<stoke_sandbox::GenericSpec> {
    let runtime_dir = run_dir.join("runtimes");
    let seen_runtime_dir = Path::new(stoke_sandbox::lean::RUNTIME_DIR);
    let memory_mb = stoke_core::config::MIN_MEMORY_MB;
    kinds
        .iter()
        .filter_map(|(kind, count)| {
            let prestart = match kind {
                GenericKind::Sandbox => None,
                GenericKind::Python => Some((host_python()?, python_args(seen_runtime_dir))),
            };
            let env = vec![
                ("PATH".into(), BASE_PATH.into()),
                ("LANG".into(), "C.UTF-8".into()),
                ("TZ".into(), ":UTC".into()),
                ("HOME".into(), "/tmp".into()),
                ("STOKE_GENERIC".into(), "1".into()),
            ];
            Some(stoke_sandbox::GenericSpec {
                name: kind.name().to_string(),
                prestart,
                env,
                runtime_dir: runtime_dir.clone(),
                host_dirs: default_host_dirs(),
                memory_mb,
                cpu_millis: stoke_core::limits::cpu_millis(memory_mb),
                count: *count,
            })
        })
        .collect()
}

/// What the sandbox needs to keep up to `max` Python zygotes (one per layer set); `None` without python3 or
/// with `max` 0.
pub(crate) fn zygote_spec(run_dir: &Path, max: usize) -> Option<stoke_sandbox::ZygoteSpec> {
    let python = host_python().filter(|_| max > 0)?;
    let seen_runtime_dir = Path::new(stoke_sandbox::lean::RUNTIME_DIR);
    Some(stoke_sandbox::ZygoteSpec {
        serves: (python.clone(), python_args(seen_runtime_dir)),
        command: (
            python,
            vec!["-S".into(), "-u".into(), seen_runtime_dir.join("stoke_python_zygote.py").into_os_string()],
        ),
        env: vec![
            ("PATH".into(), BASE_PATH.into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("TZ".into(), ":UTC".into()),
            ("HOME".into(), "/tmp".into()),
        ],
        runtime_dir: run_dir.join("runtimes"),
        host_dirs: default_host_dirs(),
        memory_mb: ZYGOTE_MEMORY_MB,
        cpu_millis: stoke_core::limits::cpu_millis(ZYGOTE_MEMORY_MB),
        max,
    })
}

/// A zygote's memory limit: what its layers' imports may take.
const ZYGOTE_MEMORY_MB: u32 = 2048;

/// An interpreter inside an imported image (as the instance sees it), from the usual places.
fn in_image(image: &Path, name: &str, image_name: &str) -> Result<PathBuf, String> {
    for dir in ["usr/local/bin", "usr/bin", "bin"] {
        if std::fs::symlink_metadata(image.join(dir).join(name)).is_ok() {
            return Ok(Path::new("/").join(dir).join(name));
        }
    }
    Err(format!("image {image_name} has no {name} in /usr/local/bin, /usr/bin or /bin; install it in the image"))
}

/// The installation an interpreter needs besides `/usr`: the prefix it lives under (two levels above
/// `bin/python3`), when that is outside the directories every image has.
fn installation(interpreter: &Path) -> Vec<PathBuf> {
    let prefix = interpreter.parent().and_then(Path::parent);
    match prefix {
        Some(p) if !p.starts_with("/usr") && p != Path::new("/") => vec![p.to_path_buf()],
        _ => Vec::new(),
    }
}

/// How to start an instance of `target` in `sandbox`; an error names what is missing. `code_dir` and
/// `run_dir` are host paths; the spec speaks of the paths the instance sees.
pub fn spawn_spec(
    sandbox: &dyn Sandbox,
    target: &InvokeTarget,
    code_dir: &Path,
    run_dir: &Path,
    port: u16,
    instance: u64,
) -> Result<SpawnSpec, String> {
    let runtime = Runtime::parse(&target.config.runtime).map_err(|e| e.message)?;
    let scratch = scratch_root(run_dir, &target.account);
    // Made before the instance, so its sandbox can mount it; executions' directories come and go inside.
    std::fs::create_dir_all(&scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let host = InstancePaths { task_root: code_dir.to_path_buf(), runtime_dir: run_dir.join("runtimes"), scratch };
    let seen = sandbox.paths(&host);
    if target.image.is_some() && sandbox.layer_root().is_none() {
        return Err(format!(
            "base image {} needs the lean sandbox, which this node does not run; use base_image default",
            target.config.base_image
        ));
    }
    let python = || match &target.image {
        Some(image) => in_image(image, "python3", &target.config.base_image),
        None => host_python().ok_or_else(|| "python3 is not installed on this node".to_string()),
    };
    let node = || match &target.image {
        Some(image) => in_image(image, "node", &target.config.base_image),
        None => host_node().ok_or_else(|| "node is not installed on this node".to_string()),
    };
    let (program, args) = match runtime {
        Runtime::Python { .. } => (python()?, python_args(&seen.runtime_dir)),
        Runtime::Node { .. } => (node()?, vec![seen.runtime_dir.join("stoke_node_bootstrap.js").into_os_string()]),
        Runtime::Provided => {
            if !code_dir.join("bootstrap").is_file() {
                return Err(
                    "the code archive has no executable 'bootstrap' at its root, which a provided runtime runs".into(),
                );
            }
            (seen.task_root.join("bootstrap"), vec![])
        }
    };
    // The node's language runtimes are part of the default image wherever they are installed, so a
    // `provided` bootstrap may use them too. An imported image brings its own.
    let host_dirs = if target.image.is_some() { Vec::new() } else { default_host_dirs() };
    // With a network of its own, the instance reaches its Runtime API through the relay, as on Lambda.
    let api_port =
        if target.config.network == stoke_core::Network::None { stoke_sandbox::RELAYED_RUNTIME_API_PORT } else { port };
    let mut env = environment(target, &seen, api_port, instance);
    if matches!(runtime, Runtime::Node { .. }) && !env.iter().any(|(k, _)| k == "NODE_PATH") {
        // stoke's helper module (`require('stoke')`) lives with the bootstrap.
        env.push(("NODE_PATH".into(), seen.runtime_dir.display().to_string()));
    }
    add_layer_paths(&mut env, runtime, &layer_roots(sandbox, target));
    if target.config.network == stoke_core::Network::None && !sandbox.isolates_network() {
        return Err("network none needs the lean sandbox, which this node does not run".into());
    }
    Ok(SpawnSpec {
        layers: target.layers.clone(),
        image: target.image.clone(),
        isolated_network: target.config.network == stoke_core::Network::None,
        runtime_api_port: port,
        gpu: None,
        env,
        cwd: seen.task_root,
        host,
        host_dirs,
        program,
        args,
        memory_mb: target.config.memory_mb,
        ephemeral_mb: target.config.ephemeral_storage_mb,
        cpu_millis: stoke_core::limits::cpu_millis(target.config.memory_mb),
        open_files: 1024,
    })
}
