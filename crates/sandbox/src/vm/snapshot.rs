//! Snapshots of booted VMs, restored instead of booting: a VM is booted once per [`Shape`] up to the point
//! where its kernel is up, its modules loaded and its disks found, and saved there by QEMU (`migrate` to a
//! file); every later VM of that shape is restored from the file and sent, on its console, what makes it an
//! instance (its mounts, a new clock and fresh randomness, then its command or a generic VM's wait).
//!
//! The guest must not have a 9p share mounted when it is saved (QEMU refuses), so a snapshot holds no host
//! path: a restored VM mounts its own shares, through devices of the same number and tags (unused ones
//! share an empty directory). What its guest already saw of its machine must match: memory, vCPUs and the
//! `/tmp` disk's size — the shape.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// What a snapshot's guest saw of its machine, which every VM restored from it must have too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    pub memory_mb: u32,
    pub vcpus: u32,
    /// The `/tmp` disk's usable size.
    pub tmp_mb: u32,
}

impl Shape {
    /// The snapshot's name: its directory, and what a restored guest finds in `/stoke/restored`.
    pub fn name(&self) -> String {
        format!("{}m-{}c-{}t", self.memory_mb, self.vcpus, self.tmp_mb)
    }
}

/// A saved VM on disk.
#[derive(Debug)]
pub struct Snapshot {
    pub name: String,
    /// The initramfs it booted (QEMU is given it again on restore: the machines must be alike).
    pub initrd: PathBuf,
    /// The state `migrate` wrote.
    pub state: PathBuf,
}

/// Where each shape's snapshot stands.
#[derive(Debug, Clone)]
pub enum Status {
    Building,
    Ready(std::sync::Arc<Snapshot>),
    /// It could not be made or restored: VMs of the shape boot.
    Failed,
}

/// Most shapes kept: each is a file of up to its memory size.
pub const MAX_SHAPES: usize = 8;
/// 9p devices in every snapshot's machine: the host's top-level directories and this many more (code,
/// runtime files, layers, scratch or a generic VM's slot, and interpreter directories outside `/usr`). A VM
/// that needs more boots.
pub const EXTRA_SHARES: usize = 6;

/// Most a save or a restore may take, even emulated.
const QMP_TIMEOUT: Duration = Duration::from_secs(60);

/// A QEMU machine protocol connection (blocking): one command at a time, events skipped.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to QEMU's socket at `path` once QEMU has made it, and leaves the greeting's capability
    /// negotiation. `alive` says whether QEMU still runs: a dead one is an error at once, not a wait.
    pub fn connect(path: &Path, mut alive: impl FnMut() -> bool) -> io::Result<Qmp> {
        let deadline = Instant::now() + QMP_TIMEOUT;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) if !alive() => return Err(io::Error::other("QEMU exited before its QMP socket opened")),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        stream.set_read_timeout(Some(QMP_TIMEOUT))?;
        let mut qmp = Qmp { reader: BufReader::new(stream.try_clone()?), writer: stream };
        let greeting = qmp.read()?;
        if greeting.get("QMP").is_none() {
            return Err(io::Error::other(format!("QEMU greeted with {greeting}")));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read(&mut self) -> io::Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::other("QEMU closed its QMP socket"));
        }
        serde_json::from_str(&line).map_err(|e| io::Error::other(format!("QEMU answered {line:?}: {e}")))
    }

    /// Runs `command` and returns its `return` value; QEMU's `error` is an error.
    pub fn execute(&mut self, command: &str, arguments: Value) -> io::Result<Value> {
        let mut line = json!({"execute": command, "arguments": arguments}).to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes())?;
        loop {
            let answer = self.read()?;
            if answer.get("event").is_some() {
                continue;
            }
            return match (answer.get("return"), answer.get("error")) {
                (Some(r), _) => Ok(r.clone()),
                (_, Some(e)) => Err(io::Error::other(format!("QEMU refused {command}: {e}"))),
                _ => Err(io::Error::other(format!("QEMU answered {command} with {answer}"))),
            };
        }
    }

    /// Saves the running VM with `migrate` to `uri`, waiting until QEMU says it is done; the VM is left
    /// paused.
    pub fn save(&mut self, uri: &str) -> io::Result<()> {
        self.execute("migrate", json!({"uri": uri}))?;
        let deadline = Instant::now() + QMP_TIMEOUT;
        loop {
            let status = self.execute("query-migrate", json!({}))?;
            match migration(&status)? {
                true => return Ok(()),
                false if Instant::now() > deadline => return Err(io::Error::other("the save did not finish")),
                false => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Waits until a VM started with `-incoming` has loaded its state and runs.
    pub fn wait_running(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + QMP_TIMEOUT;
        loop {
            let status = self.execute("query-status", json!({}))?;
            match status["status"].as_str() {
                Some("running") => return Ok(()),
                Some("inmigrate" | "prelaunch" | "restore-vm") if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                other => return Err(io::Error::other(format!("the restored VM is {}", other.unwrap_or("unknown")))),
            }
        }
    }
}

/// From `query-migrate`'s answer: done (`true`), still going (`false`), or why it failed.
pub fn migration(status: &Value) -> io::Result<bool> {
    match status["status"].as_str() {
        Some("completed") => Ok(true),
        Some("failed" | "cancelled") => Err(io::Error::other(format!(
            "QEMU could not save the VM: {}",
            status["error-desc"].as_str().unwrap_or("no reason given")
        ))),
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_is_done_when_qemu_says_completed_and_its_failure_says_why() {
        assert!(migration(&json!({"status": "completed", "ram": {}})).unwrap());
        assert!(!migration(&json!({"status": "active"})).unwrap());
        assert!(!migration(&json!({})).unwrap(), "not started yet");
        let failed = migration(&json!({"status": "failed", "error-desc": "disk full"})).unwrap_err();
        assert!(failed.to_string().contains("disk full"), "{failed}");
    }

    #[test]
    fn qmp_skips_events_and_returns_the_answer_or_the_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let qemu = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            s.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n").unwrap();
            let mut seen = Vec::new();
            for answer in [
                "{\"return\": {}}\n",
                "{\"event\": \"RESUME\"}\n{\"return\": {\"status\": \"running\"}}\n",
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such thing\"}}\n",
            ] {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                seen.push(serde_json::from_str::<Value>(&line).unwrap()["execute"].as_str().unwrap().to_string());
                s.write_all(answer.as_bytes()).unwrap();
            }
            seen
        });
        let mut qmp = Qmp::connect(&path, || true).unwrap();
        qmp.wait_running().unwrap();
        let refused = qmp.execute("frobnicate", json!({})).unwrap_err();
        assert!(refused.to_string().contains("refused frobnicate") && refused.to_string().contains("no such thing"));
        assert_eq!(qemu.join().unwrap(), ["qmp_capabilities", "query-status", "frobnicate"]);
    }

    #[test]
    fn a_qemu_that_died_is_an_error_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let err = Qmp::connect(&dir.path().join("never"), || false).err().unwrap();
        assert!(err.to_string().contains("exited"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
