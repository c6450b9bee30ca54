//! The launcher the integration tests (`crates/stoke/tests/common`) and the benchmarks (`stoke-bench`)
//! share: a real `stoke server` process on 127.0.0.1 with a free port and a temp data directory. It waits
//! until the server answers, reads the admin credentials the server wrote, and on drop kills the server,
//! waits for its instances to go, and removes the directory.

pub mod etcd;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// How a server is started and torn down.
#[derive(Debug, Clone)]
pub struct Options {
    /// Extra `stoke server` flags.
    pub args: Vec<String>,
    /// Environment variables set for the server (on top of this process's own).
    pub env: Vec<(String, String)>,
    /// A file the server's standard error goes to; `None` discards it (standard output always is).
    pub log: Option<PathBuf>,
    /// How the temp data directory's name starts.
    pub dir_prefix: String,
    /// Where the temp data directory is made (`None`: the system's temp directory).
    pub dir_parent: Option<PathBuf>,
    /// How long the server has to write `server.json` and answer `/healthz`.
    pub start_timeout: Duration,
    /// How long teardown waits for the server's instances to go (`ZERO`: not at all).
    pub drain_timeout: Duration,
    /// A CA certificate (PEM) to trust when the server serves HTTPS with a certificate it issued.
    pub ca_file: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            env: Vec::new(),
            log: None,
            dir_prefix: ".tmp".to_string(),
            dir_parent: None,
            start_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(120),
            ca_file: None,
        }
    }
}

/// The admin credentials a new data directory's server writes to `credentials.json`.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub api_key: String,
    pub access_key_id: String,
    pub account_id: String,
}

/// A `stoke server` process on its own temp data directory.
#[derive(Debug)]
pub struct Server {
    bin: PathBuf,
    options: Options,
    child: Option<Child>,
    endpoint: String,
    credentials: Credentials,
    /// Last, so that the directory goes after the process and its instances.
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts `bin server` on a new temp data directory and waits until it answers.
    pub fn start(bin: impl Into<PathBuf>, options: Options) -> Result<Self> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(&options.dir_prefix);
        let dir = match &options.dir_parent {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .context("cannot create the server's temp data directory")?;
        let mut server = Self {
            bin: bin.into(),
            options,
            child: None,
            endpoint: String::new(),
            credentials: Credentials::default(),
            dir,
        };
        server.launch()?;
        Ok(server)
    }

    /// Starts the process (again, after [`kill`](Self::kill)) on the same data directory and waits until it
    /// answers `/healthz`; reads the endpoint from `server.json` and the credentials from `credentials.json`.
    pub fn launch(&mut self) -> Result<()> {
        self.kill();
        let dir = self.dir.path().to_path_buf();
        let _ = std::fs::remove_file(dir.join("server.json"));
        let stderr = match &self.options.log {
            Some(path) => {
                Stdio::from(std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?)
            }
            None => Stdio::null(),
        };
        let child = Command::new(&self.bin)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .args(&self.options.args)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {} server", self.bin.display()))?;
        let child = self.child.insert(child);
        let deadline = Instant::now() + self.options.start_timeout;
        self.endpoint = loop {
            if let Ok(bytes) = std::fs::read(dir.join("server.json")) {
                if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                    break v["endpoint"].as_str().context("server.json has no endpoint")?.to_string();
                }
            }
            if let Some(status) = child.try_wait()? {
                bail!("stoke server exited early: {status}");
            }
            if Instant::now() > deadline {
                bail!("the server did not write server.json in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5));
        if let Some(ca) = &self.options.ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        let http = http.build()?;
        while http.get(format!("{}/healthz", self.endpoint)).send().map(|r| r.status().as_u16()).ok() != Some(200) {
            if Instant::now() > deadline {
                bail!("the server did not answer /healthz in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // A node that joined a cluster after its first node has no credentials of its own.
        let Ok(bytes) = std::fs::read(dir.join("credentials.json")) else {
            return Ok(());
        };
        let creds: Value = serde_json::from_slice(&bytes).context("credentials.json is not JSON")?;
        let field = |name: &str| creds[name].as_str().unwrap_or_default().to_string();
        self.credentials = Credentials {
            api_key: field("api_key"),
            access_key_id: field("access_key_id"),
            account_id: field("account_id"),
        };
        Ok(())
    }

    /// SIGKILL: the process gets no chance to clean up, and its instances are not waited for.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process and waits (up to the options' `drain_timeout`) until no process mentions the data
    /// directory: its instances die with it, but a thousand of them take seconds to go, and whatever runs
    /// next should not share the machine with their teardown.
    pub fn stop(&mut self) {
        self.kill();
        let dir = self.dir.path().to_string_lossy().into_owned();
        let deadline = Instant::now() + self.options.drain_timeout;
        while Instant::now() < deadline && processes_mentioning(&dir) > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API's base URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the vm sandbox needs of this host, as the tests and benchmarks that run it ask.
pub mod vm {
    /// Whether this host's KVM can run a standard guest kernel: `/dev/kvm` opens and is not PVM's (which
    /// runs only PVM guests). Where it cannot, VMs run emulated (`--vm-accel tcg`).
    pub fn kvm_usable() -> bool {
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
            && !std::path::Path::new("/sys/module/kvm_pvm").exists()
    }

    /// `--vm-accel` for this host: `kvm` where its KVM can run a guest, else `tcg`.
    pub fn accel() -> &'static str {
        if kvm_usable() {
            "kvm"
        } else {
            "tcg"
        }
    }

    /// What the vm sandbox needs and this host lacks, each named by what installs it: QEMU, a guest kernel
    /// whose modules include 9p, a static busybox.
    pub fn missing_parts() -> Vec<&'static str> {
        let qemu = std::process::Command::new("qemu-system-x86_64").arg("--version").output().is_ok();
        let kernel = std::fs::read_dir("/lib/modules")
            .is_ok_and(|d| d.flatten().any(|m| m.path().join("kernel/fs/9p").is_dir()));
        let busybox = std::path::Path::new("/bin/busybox").exists();
        [(qemu, "qemu-system-x86"), (kernel, "linux-image-amd64 (a guest kernel with 9p)"), (busybox, "busybox-static")]
            .into_iter()
            .filter(|(present, _)| !present)
            .map(|(_, part)| part)
            .collect()
    }
}

/// Processes whose command line mentions `needle` (an instance's helper names its server's data directory).
pub fn processes_mentioning(needle: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmd| cmd.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_is_an_error_that_names_it() {
        let err = Server::start("/nonexistent/stoke", Options::default()).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/stoke"), "{err:#}");
    }

    #[test]
    fn a_server_that_exits_at_once_is_reported() {
        // `false` ignores its arguments and exits 1: the launcher must say so rather than wait.
        let started = Instant::now();
        let err = Server::start("false", Options::default()).unwrap_err();
        assert!(format!("{err:#}").contains("exited early"), "{err:#}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn counts_the_processes_that_mention_a_string() {
        let token = format!("stoke-testkit-{}", std::process::id());
        assert_eq!(processes_mentioning(&token), 0);
        // A shell waiting on its standard input (`read` is a built-in: no other process), named `token`.
        let mut child = Command::new("sh").args(["-c", "read line", &token]).stdin(Stdio::piped()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while processes_mentioning(&token) == 0 {
            assert!(Instant::now() < deadline, "the child's command line is seen");
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(processes_mentioning(&token), 0);
    }
}
