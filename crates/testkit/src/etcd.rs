//! A real etcd (the Debian package's `etcd` binary) on free loopback ports and a temp data directory, for
//! the store's contract tests and the cluster tests. It is stopped when dropped; [`Etcd::stop`] and
//! [`Etcd::restart`] take it away and bring it back on the same port and data, for outage tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running etcd member of a one-member cluster.
#[derive(Debug)]
pub struct Etcd {
    bin: PathBuf,
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
}

/// The etcd binary: `$STOKE_ETCD`, else `etcd` on the PATH; `None` when there is none.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STOKE_ETCD") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join("etcd"))
        .find(|candidate| candidate.is_file())
}

/// A port nothing listens on now (the kernel's pick; another process could take it before it is used).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Etcd {
    /// Starts etcd and waits until it answers; fails when there is no etcd binary
    /// (`apt-get install etcd-server`, or `scripts/prereqs`).
    pub fn start() -> Result<Self> {
        let bin = etcd_binary().context("etcd is not installed: apt-get install etcd-server")?;
        let dir = tempfile::Builder::new().prefix(".tmp-etcd").tempdir()?;
        let mut etcd = Self { bin, child: None, client_port: free_port()?, peer_port: free_port()?, dir };
        etcd.restart()?;
        Ok(etcd)
    }

    /// The etcd process's id while it runs (the child of the guarding shell).
    pub fn pid(&self) -> Option<u32> {
        let shell = self.child.as_ref()?.id();
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    /// `http://127.0.0.1:PORT`, what `--cluster` takes.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Stops etcd (SIGKILL: as a crash or a partition looks to its clients). Its data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Closing the pipe makes the shell SIGKILL etcd and wait for it.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }

    /// Starts etcd (again) on the same ports and data and waits until it answers.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let client = self.endpoint();
        // etcd runs under a small shell that holds a pipe from this process: when the pipe closes (this
        // process ends, however it ends, or `stop` drops it) the shell kills etcd, so no etcd outlives its test.
        let child = Command::new("sh")
            .args(["-c", r#""$@" & etcd=$!; cat >/dev/null; kill -9 "$etcd"; wait "$etcd""#, "stoke-test-etcd"])
            .arg(&self.bin)
            .args(["--name", "test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}"), "--initial-cluster-state", "new"])
            // Tests write many small transactions: a shorter snapshot interval keeps the WAL small.
            .args(["--snapshot-count", "10000", "--log-level", "error", "--logger", "zap"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let child = self.child.insert(child);
        // Generous: a suite runs many etcds at once on a couple of cores, and a slow start is no failure of
        // what a test checks (one did not answer within 20 s in a loaded cluster-mode run).
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build()?;
        loop {
            let healthy = http
                .get(format!("{client}/health"))
                .send()
                .ok()
                .and_then(|r| r.json::<serde_json::Value>().ok())
                .is_some_and(|v| v["health"] == "true");
            if healthy {
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                bail!("etcd exited early: {status}");
            }
            if Instant::now() > deadline {
                bail!("etcd did not become healthy at {client} in time");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
