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
        let (client_port, peer_port) = two_free_ports()?;
        let mut etcd = Self { bin, child: None, client_port, peer_port, dir };
        // Another process can take a free port between its pick and etcd's bind (the suite starts many
        // servers at once): etcd then exits at once, and is started again on other ports.
        for _ in 1..START_TRIES {
            match etcd.launch()? {
                Launch::Healthy => return Ok(etcd),
                Launch::Exited(why) => {
                    eprintln!("etcd exited at start ({why}); trying other ports");
                    (etcd.client_port, etcd.peer_port) = two_free_ports()?;
                    // A member keeps the peer address it first started with: begin again from nothing.
                    let _ = std::fs::remove_dir_all(etcd.dir.path().join("data"));
                }
            }
        }
        etcd.restart()?;
        Ok(etcd)
    }

    /// The etcd process's id while it runs (a child of the guarding shell).
    pub fn pid(&self) -> Option<u32> {
        let shell = self.child.as_ref()?.id();
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.starts_with("etcd")))
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
        match self.launch()? {
            Launch::Healthy => Ok(()),
            Launch::Exited(why) => {
                bail!("etcd exited at start on ports {} and {}: {why}", self.client_port, self.peer_port)
            }
        }
    }

    /// Starts etcd on this member's ports and data and waits until it answers or exits.
    fn launch(&mut self) -> Result<Launch> {
        self.stop();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let client = self.endpoint();
        let log = self.dir.path().join("etcd.log");
        // etcd runs under a small shell that holds a pipe from this process: when the pipe closes (this
        // process ends, however it ends, or `stop` drops it) the shell kills etcd, so no etcd outlives its
        // test. The shell ends when etcd does, so an etcd that could not start is seen at once.
        let guard = r#"log=$1; shift; exec 3<&0
"$@" </dev/null 2>"$log" & etcd=$!
{ cat >/dev/null; kill -9 "$etcd" 2>/dev/null; } <&3 &
exec 3<&-
wait "$etcd""#;
        let child = Command::new("sh")
            .args(["-c", guard, "stoke-test-etcd"])
            .arg(&log)
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
                return Ok(Launch::Healthy);
            }
            if let Some(status) = child.try_wait()? {
                self.stop();
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                let last = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("it printed nothing");
                return Ok(Launch::Exited(format!("{status}; {last}")));
            }
            if Instant::now() > deadline {
                bail!("etcd did not become healthy at {client} in time");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// How many port pairs [`Etcd::start`] tries.
const START_TRIES: usize = 3;

/// What came of starting etcd.
enum Launch {
    Healthy,
    /// It exited first, with its status and the last line it logged.
    Exited(String),
}

/// Two distinct ports nothing listens on now.
fn two_free_ports() -> Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn an_etcd_that_cannot_bind_its_port_is_reported_at_once_with_etcds_words() {
        if etcd_binary().is_none() {
            assert!(std::env::var_os("CI").is_none(), "CI installs etcd (scripts/prereqs)");
            eprintln!("SKIPPED: etcd is not installed (apt-get install etcd-server); CI runs this test");
            return;
        }
        let mut etcd = Etcd::start().unwrap();
        let pid = etcd.pid().expect("etcd runs under its guard");
        etcd.stop();
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "stop leaves no etcd behind");
        let _squatter = TcpListener::bind(("127.0.0.1", etcd.client_port)).unwrap();
        let err = format!("{:#}", etcd.restart().unwrap_err());
        assert!(err.contains("exited at start") && err.contains("address already in use"), "{err}");
    }
}
