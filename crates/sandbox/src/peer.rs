//! Who opened a loopback TCP connection: the kernel's socket table (`/proc/<pid>/net/tcp`) names the
//! socket's inode, and a process holds the socket if one of its file descriptors links to that inode.
//! This is how an instance's Runtime API endpoint refuses every process that is not part of the instance.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The inode of the socket whose local end is `local` and remote end is `remote`, from the text of a
/// `/proc/net/tcp` or `/proc/net/tcp6` table.
pub(crate) fn socket_inode(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let (want_local, want_remote) = (proc_addr(local), proc_addr(remote));
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let (l, r) = (fields.nth(1)?, fields.next()?);
        if !l.eq_ignore_ascii_case(&want_local) || !r.eq_ignore_ascii_case(&want_remote) {
            return None;
        }
        // After the addresses: st, tx:rx queue, tr:when, retrnsmt, uid, timeout, inode.
        fields.nth(6)?.parse().ok()
    })
}

/// An address as `/proc/net/tcp*` prints it: the address in the kernel's byte order (each 32-bit word
/// printed as a native-endian integer), then the port in big-endian hex.
fn proc_addr(addr: SocketAddr) -> String {
    let words: Vec<String> = match addr.ip() {
        IpAddr::V4(v4) => vec![format!("{:08X}", u32::from_ne_bytes(v4.octets()))],
        IpAddr::V6(v6) => {
            v6.octets().chunks(4).map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))).collect()
        }
    };
    format!("{}:{:04X}", words.concat(), addr.port())
}

/// Whether process `pid` holds a file descriptor on socket `inode`.
fn holds_socket(pid: u32, inode: u64) -> bool {
    let want = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == want.as_str()))
}

/// The process group of `pid`, from `/proc/<pid>/stat` (the fields after the command name, which may
/// itself contain spaces and parentheses).
fn process_group(pid: &str) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_pgrp(&stat)
}

pub(crate) fn parse_pgrp(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // state, ppid, pgrp
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Whether the loopback connection from `peer` to `local` was opened by a member of process group `group`
/// (an instance leads its own group, so the group is the instance). The leader is checked first: a runtime
/// usually talks to its endpoint itself.
pub(crate) fn opened_by_group(group: u32, local: SocketAddr, peer: SocketAddr) -> bool {
    let table = if peer.is_ipv4() { "tcp" } else { "tcp6" };
    // The leader's view of the socket table is the instance's network namespace.
    let Ok(text) = std::fs::read_to_string(format!("/proc/{group}/net/{table}")) else { return false };
    let Some(inode) = socket_inode(&text, peer, local) else { return false };
    if holds_socket(group, inode) {
        return true;
    }
    let Ok(procs) = std::fs::read_dir(Path::new("/proc")) else { return false };
    procs.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { return false };
        process_group(pid) == Some(group) && pid.parse().is_ok_and(|pid| holds_socket(pid, inode))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1520 1 00000000c3ce9274 100 0 0 10 0
   1: 0100007F:D180 0100007F:1FA3 01 00000000:00000000 03:00000146 00000000  1000        0 98765 3 000000003708ab45
";

    #[test]
    fn finds_the_inode_of_a_connection_by_both_ends() {
        let client: SocketAddr = "127.0.0.1:53632".parse().unwrap();
        let server: SocketAddr = "127.0.0.1:8099".parse().unwrap();
        assert_eq!(socket_inode(TABLE, client, server), Some(98765));
        // The reverse direction is another socket (the server's), not in this table.
        assert_eq!(socket_inode(TABLE, server, client), None);
        assert_eq!(socket_inode(TABLE, "127.0.0.1:1".parse().unwrap(), server), None);
    }

    #[test]
    fn prints_addresses_as_the_kernel_does() {
        if cfg!(target_endian = "little") {
            assert_eq!(proc_addr("127.0.0.1:8099".parse().unwrap()), "0100007F:1FA3");
            assert_eq!(proc_addr("[::1]:80".parse().unwrap()), "00000000000000000000000001000000:0050");
        }
    }

    #[test]
    fn reads_the_process_group_past_a_command_with_parentheses() {
        assert_eq!(parse_pgrp("42 (a) b (c)) S 1 4242 4242 0 -1"), Some(4242));
        assert_eq!(parse_pgrp("42 (sh) S 1"), None);
    }

    #[tokio::test]
    async fn a_connection_belongs_to_the_group_that_opened_it_and_to_nobody_else() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        // A child in its own group connects and waits; a grandchild (same group) connects too.
        let script = format!(
            "import socket,os,time\ns=socket.create_connection(('127.0.0.1',{p}))\n\
             if os.fork()==0:\n  c=socket.create_connection(('127.0.0.1',{p}));time.sleep(30)\n\
             time.sleep(30)\n",
            p = local.port()
        );
        let mut child = tokio::process::Command::new("python3")
            .args(["-c", &script])
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("python3 is needed for this test (scripts/prereqs installs it)");
        let group = child.id().unwrap();
        let (_a, first) = listener.accept().await.unwrap();
        let (_b, second) = listener.accept().await.unwrap();
        assert!(opened_by_group(group, local, first));
        assert!(opened_by_group(group, local, second));
        // A connection this test process opens is not the group's.
        let _mine = tokio::net::TcpStream::connect(local).await.unwrap();
        let (_c, third) = listener.accept().await.unwrap();
        assert!(!opened_by_group(group, local, third));
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group as i32), nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait().await;
    }
}
