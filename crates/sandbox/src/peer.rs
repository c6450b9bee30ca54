//! Who opened a loopback TCP connection: the kernel names the socket's inode — asked directly by its four
//! addresses over netlink (`sock_diag`), or, where that is unavailable, found in the socket table
//! (`/proc/<pid>/net/tcp`) — and a process holds the socket if one of its file descriptors links to that
//! inode. This is how an instance's Runtime API endpoint refuses every process that is not part of the
//! instance. The netlink lookup is exact and costs the same however many sockets the host has; reading
//! the table grows with every socket (thousands in TIME-WAIT on a busy host) and is only the fallback.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::sys::socket::{self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};

// From linux/netlink.h, linux/sock_diag.h and linux/inet_diag.h.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_HDR_LEN: usize = 16;
const IPPROTO_TCP: u8 = 6;
/// `inet_diag_sockid`: sport, dport, src[4], dst[4], if, cookie[2].
const SOCKID_LEN: usize = 48;
/// Offset of `idiag_inode` in `inet_diag_msg` (family, state, timer, retrans, sockid, expires, rqueue,
/// wqueue, uid, inode).
const DIAG_MSG_INODE: usize = 4 + SOCKID_LEN + 16;

/// A `SOCK_DIAG_BY_FAMILY` request for the one TCP socket whose local end is `local` and remote end is
/// `remote` (an exact lookup, not a dump).
pub(crate) fn diag_request(local: SocketAddr, remote: SocketAddr) -> Vec<u8> {
    let len = NLMSG_HDR_LEN + 8 + SOCKID_LEN;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&u32::try_from(len).expect("a diag request is 72 bytes").to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    let family = if local.is_ipv4() { nix::libc::AF_INET } else { nix::libc::AF_INET6 };
    let family = u8::try_from(family).expect("address families are below 256");
    m.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    m.extend_from_slice(&local.port().to_be_bytes());
    m.extend_from_slice(&remote.port().to_be_bytes());
    for addr in [local.ip(), remote.ip()] {
        let mut words = [0u8; 16];
        match addr {
            IpAddr::V4(v4) => words[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => words.copy_from_slice(&v6.octets()),
        }
        m.extend_from_slice(&words);
    }
    m.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    m.extend_from_slice(&[0xff; 8]); // no cookie
    m
}

/// The inode in a reply to [`diag_request`]; `None` for an error reply (no such socket) or a short one.
pub(crate) fn diag_reply_inode(reply: &[u8]) -> Option<u64> {
    let kind = u16::from_ne_bytes(reply.get(4..6)?.try_into().ok()?);
    // Anything else (NLMSG_ERROR: no such socket) has no inode.
    if kind != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    let at = NLMSG_HDR_LEN + DIAG_MSG_INODE;
    Some(u64::from(u32::from_ne_bytes(reply.get(at..at + 4)?.try_into().ok()?)))
}

/// Asks the kernel for the inode of one TCP socket of this network namespace. `Err` when netlink
/// `sock_diag` cannot be used at all; `Ok(None)` when there is no such socket.
fn diag_inode(local: SocketAddr, remote: SocketAddr) -> std::io::Result<Option<u64>> {
    let fd = socket::socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    socket::sendto(fd.as_raw_fd(), &diag_request(local, remote), &NetlinkAddr::new(0, 0), MsgFlags::empty())?;
    let mut reply = [0u8; 512];
    let n = socket::recv(fd.as_raw_fd(), &mut reply, MsgFlags::empty())?;
    Ok(diag_reply_inode(&reply[..n]))
}

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
    let Some(inode) = connection_inode(group, local, peer) else { return false };
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

/// The inode of the socket behind the connection from `peer` to `local`, looked up through netlink, or
/// in the socket table of `pid`'s network namespace when netlink is unavailable.
fn connection_inode(pid: u32, local: SocketAddr, peer: SocketAddr) -> Option<u64> {
    match diag_inode(peer, local) {
        Ok(inode) => inode,
        Err(_) => {
            let table = if peer.is_ipv4() { "tcp" } else { "tcp6" };
            let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok()?;
            socket_inode(&text, peer, local)
        }
    }
}

/// Whether the connection from `peer` to `local` was opened by one of `pids` (an instance's processes,
/// as its cgroup lists them).
pub(crate) fn opened_by_any(pids: &[u32], local: SocketAddr, peer: SocketAddr) -> bool {
    let Some(&first) = pids.first() else { return false };
    let Some(inode) = connection_inode(first, local, peer) else { return false };
    pids.iter().any(|pid| holds_socket(*pid, inode))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NLMSG_ERROR: u16 = 2;

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
    fn builds_an_exact_diag_request_and_reads_the_inode_of_the_reply() {
        let req = diag_request("127.0.0.1:53632".parse().unwrap(), "127.0.0.1:8099".parse().unwrap());
        assert_eq!(req.len(), 72);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 72);
        assert_eq!(&req[16..18], &[u8::try_from(nix::libc::AF_INET).unwrap(), IPPROTO_TCP]);
        // Ports big-endian, then the local address, then the remote one.
        assert_eq!(&req[24..28], &[0xd1, 0x80, 0x1f, 0xa3]);
        assert_eq!(&req[28..32], &[127, 0, 0, 1]);
        assert_eq!(&req[44..48], &[127, 0, 0, 1]);
        let mut reply = vec![0u8; NLMSG_HDR_LEN + DIAG_MSG_INODE + 4];
        reply[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        reply[NLMSG_HDR_LEN + DIAG_MSG_INODE..].copy_from_slice(&98765u32.to_ne_bytes());
        assert_eq!(diag_reply_inode(&reply), Some(98765));
        reply[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(diag_reply_inode(&reply), None);
        assert_eq!(diag_reply_inode(&reply[..10]), None);
    }

    #[tokio::test]
    async fn the_kernel_names_the_same_socket_by_netlink_and_in_its_table() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(local).unwrap();
        let peer = client.local_addr().unwrap();
        let from_table = socket_inode(&std::fs::read_to_string("/proc/net/tcp").unwrap(), peer, local);
        assert!(from_table.is_some());
        assert_eq!(diag_inode(peer, local).unwrap(), from_table);
        assert_eq!(diag_inode("127.0.0.1:1".parse().unwrap(), local).unwrap(), None);
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
