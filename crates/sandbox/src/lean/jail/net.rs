//! `network: none`: the instance's own network namespace with only loopback, and the jailer's relay of the
//! Runtime API port inside it to the instance's endpoint on the host.

use std::io;
use std::os::fd::OwnedFd;

use nix::sched::CloneFlags;

use super::error::JailError;
use super::fail;
use super::sys::Sys;
use super::watch::{reap_server, wait_and_exit, Ends};

/// Where an instance with a network of its own finds its Runtime API (as on Lambda: `127.0.0.1:9001`).
pub const RELAYED_RUNTIME_API_PORT: u16 = 9001;

/// The jailer's side of `network: none`: the listener inside the instance's network namespace, and the
/// host's network namespace to go back to.
pub(super) struct OwnNetwork {
    listener: OwnedFd,
    host: OwnedFd,
}

/// Moves into a new network namespace with its loopback up and listens on the relayed Runtime API port
/// there; keeps a handle on the host's namespace.
pub(super) fn own_network(sys: &mut dyn Sys) -> Result<OwnNetwork, JailError> {
    let host = sys.open_network_namespace().map_err(JailError::OwnNetwork)?;
    sys.unshare(CloneFlags::CLONE_NEWNET).map_err(JailError::OwnNetwork)?;
    sys.loopback_up().map_err(JailError::OwnNetwork)?;
    let listener = sys.listen_loopback(RELAYED_RUNTIME_API_PORT).map_err(JailError::OwnNetwork)?;
    Ok(OwnNetwork { listener, host })
}

impl OwnNetwork {
    /// Returns to the host's network namespace, where the relay connects to `127.0.0.1:port`.
    pub(super) fn return_to_host(self, sys: &mut dyn Sys, port: u16) -> Result<Relay, JailError> {
        sys.setns(&self.host, CloneFlags::CLONE_NEWNET).map_err(JailError::HostNetwork)?;
        Ok(Relay { listener: self.listener.into(), port, pairs: Vec::new() })
    }
}

/// The relay's connections: each accepted one inside, paired with one to the host's endpoint.
#[derive(Debug)]
pub(super) struct Relay {
    listener: std::net::TcpListener,
    port: u16,
    pairs: Vec<(std::net::TcpStream, std::net::TcpStream)>,
}

impl Relay {
    /// Until the instance ends, relays every connection made inside it to `127.0.0.1:port` on the host;
    /// then exits the way the instance did. One thread, one poll loop (a process that unshared its PID
    /// namespace may not start threads): the listener, the instance's pidfd, and both ends of every relayed
    /// connection. Connections from inside arrive at the server from this helper, which leads the
    /// instance's process group, so the Runtime API's ownership check holds.
    pub(super) fn run_until_exit(mut self, ends: Ends) -> ! {
        loop {
            if let Err(e) = self.step(&ends) {
                fail(&JailError::Relay(e));
            }
        }
    }

    /// Waits for something to do and does it; the instance's end (or the server's) ends the jailer.
    fn step(&mut self, ends: &Ends) -> io::Result<()> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let readable = PollFlags::POLLIN;
        let mut fds = vec![
            PollFd::new(ends.exited.as_fd(), readable),
            PollFd::new(ends.server.as_fd(), readable),
            PollFd::new(self.listener.as_fd(), readable),
        ];
        for (inside, outside) in &self.pairs {
            fds.push(PollFd::new(inside.as_fd(), readable));
            fds.push(PollFd::new(outside.as_fd(), readable));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if ready[1] {
            reap_server(&ends.own, &ends.reap);
        }
        if ready[0] {
            wait_and_exit(ends.child);
        }
        // Copy what arrived; a side that closed (or failed) ends its pair.
        let mut closed = Vec::new();
        for (i, (inside, outside)) in self.pairs.iter_mut().enumerate() {
            let inward_ok = !ready[3 + 2 * i] || forward(inside, outside);
            let outward_ok = !ready[4 + 2 * i] || forward(outside, inside);
            if !(inward_ok && outward_ok) {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            let (inside, outside) = self.pairs.swap_remove(i);
            let _ = inside.shutdown(std::net::Shutdown::Both);
            let _ = outside.shutdown(std::net::Shutdown::Both);
        }
        if ready[2] {
            if let Ok((inside, _)) = self.listener.accept() {
                // The server is gone or refuses: the runtime sees its connection closed.
                if let Ok(outside) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                    let _ = inside.set_nodelay(true);
                    let _ = outside.set_nodelay(true);
                    self.pairs.push((inside, outside));
                }
            }
        }
        Ok(())
    }
}

/// Moves what `from` has to offer now into `to`; false once `from` closed or either side failed.
fn forward(from: &mut std::net::TcpStream, to: &mut std::net::TcpStream) -> bool {
    use std::io::{Read, Write};
    let mut buf = [0u8; 64 * 1024];
    match from.read(&mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => to.write_all(&buf[..n]).is_ok(),
    }
}
