//! Who opened a loopback TCP connection: the kernel names the socket's inode — asked directly by its four
//! addresses over netlink (`sock_diag`), or, where that is unavailable, found in the socket table
//! (`/proc/<pid>/net/tcp`) — and a process holds the socket if one of its file descriptors links to that
//! inode. This is how an instance's Runtime API endpoint refuses every process that is not part of the
//! instance. The netlink lookup is exact and costs the same however many sockets the host has; reading
//! the table grows with every socket (thousands in TIME-WAIT on a busy host) and is only the fallback.
//!
//! On cgroup v2 the same netlink reply also names the cgroup of the process that created the socket: when
//! that is the instance's own group, the connection is the instance's, with no `/proc` read at all — the
//! quick check every new Runtime API connection gets first (see [`opened_in_cgroup`]).

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
/// Size of `inet_diag_msg`; its attributes follow it.
const DIAG_MSG_LEN: usize = DIAG_MSG_INODE + 4;
/// `INET_DIAG_CGROUP_ID`: the socket's cgroup v2 id (Linux 5.7 on), as a u64.
const INET_DIAG_CGROUP_ID: u16 = 21;

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

/// The cgroup id in a reply to [`diag_request`]: its `INET_DIAG_CGROUP_ID` attribute, absent on kernels
/// before 5.7 and for sockets that are not full sockets.
pub(crate) fn diag_reply_cgroup(reply: &[u8]) -> Option<u64> {
    diag_reply_inode(reply)?;
    let len = usize::try_from(u32::from_ne_bytes(reply.get(0..4)?.try_into().ok()?)).ok()?;
    let end = len.min(reply.len());
    let mut at = NLMSG_HDR_LEN + DIAG_MSG_LEN;
    while at + 4 <= end {
        let attr_len = usize::from(u16::from_ne_bytes(reply[at..at + 2].try_into().ok()?));
        let kind = u16::from_ne_bytes(reply[at + 2..at + 4].try_into().ok()?) & 0x3fff;
        if attr_len < 4 || at + attr_len > end {
            return None;
        }
        if kind == INET_DIAG_CGROUP_ID && attr_len == 12 {
            return Some(u64::from_ne_bytes(reply[at + 4..at + 12].try_into().ok()?));
        }
        at += attr_len.div_ceil(4) * 4;
    }
    None
}

std::thread_local! {
    /// Each thread's netlink socket for lookups, made on first use and kept: a connection's check is then
    /// one send and one receive. The sequence number tells a reply to this request from a stale one.
    static DIAG: std::cell::RefCell<Option<(std::os::fd::OwnedFd, u32)>> = const { std::cell::RefCell::new(None) };
}

/// Asks the kernel about one TCP socket of this network namespace: the whole reply. `Err` when netlink
/// `sock_diag` cannot be used at all.
fn diag(local: SocketAddr, remote: SocketAddr) -> std::io::Result<Vec<u8>> {
    DIAG.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let fd = socket::socket(
                AddressFamily::Netlink,
                SockType::Datagram,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::NetlinkSockDiag,
            )?;
            *slot = Some((fd, 0));
        }
        let Some((fd, seq)) = slot.as_mut() else { return Err(std::io::Error::other("no netlink socket")) };
        *seq = seq.wrapping_add(1);
        let mut request = diag_request(local, remote);
        request[8..12].copy_from_slice(&seq.to_ne_bytes());
        let asked = *seq;
        let answered = (|| {
            socket::sendto(fd.as_raw_fd(), &request, &NetlinkAddr::new(0, 0), MsgFlags::empty())?;
            let mut reply = vec![0u8; 2048];
            let n = socket::recv(fd.as_raw_fd(), &mut reply, MsgFlags::empty())?;
            reply.truncate(n);
            let seq = reply.get(8..12).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            if seq != Some(asked) {
                return Err(nix::errno::Errno::EPROTO);
            }
            Ok(reply)
        })();
        // A socket that failed once, or answered out of turn, is made again for the next lookup.
        answered.map_err(|e| {
            *slot = None;
            std::io::Error::from(e)
        })
    })
}

/// Asks the kernel for the inode of one TCP socket of this network namespace. `Err` when netlink
/// `sock_diag` cannot be used at all; `Ok(None)` when there is no such socket.
fn diag_inode(local: SocketAddr, remote: SocketAddr) -> std::io::Result<Option<u64>> {
    Ok(diag_reply_inode(&diag(local, remote)?))
}

/// Whether the connection from `peer` to `local` was opened by a process of the cgroup v2 group whose id
/// (its directory's inode number) is `group`: the kernel records the group of the process that created a
/// socket, and an instance's processes are all in its group. `false` means *not shown* (another group, no
/// netlink, an older kernel), not refused: the caller then asks [`opened_by_any`].
pub(crate) fn opened_in_cgroup(group: u64, local: SocketAddr, peer: SocketAddr) -> bool {
    diag(peer, local).ok().and_then(|reply| diag_reply_cgroup(&reply)) == Some(group)
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

    #[test]
    fn reads_the_cgroup_id_among_the_replys_attributes() {
        let mut reply = vec![0u8; NLMSG_HDR_LEN + DIAG_MSG_LEN];
        reply[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        let attr = |kind: u16, payload: &[u8]| {
            let mut a = Vec::new();
            a.extend_from_slice(&u16::try_from(4 + payload.len()).unwrap().to_ne_bytes());
            a.extend_from_slice(&kind.to_ne_bytes());
            a.extend_from_slice(payload);
            a.resize(a.len().div_ceil(4) * 4, 0);
            a
        };
        reply.extend(attr(8, &[1])); // INET_DIAG_SHUTDOWN, one byte padded to four
        reply.extend(attr(14, &[])); // INET_DIAG_PAD
        reply.extend(attr(INET_DIAG_CGROUP_ID, &4242u64.to_ne_bytes()));
        let len = u32::try_from(reply.len()).unwrap();
        reply[0..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(diag_reply_cgroup(&reply), Some(4242));
        // Cut short, or without the attribute, or an error reply: no id.
        assert_eq!(diag_reply_cgroup(&reply[..reply.len() - 4]), None);
        let bare = &reply[..NLMSG_HDR_LEN + DIAG_MSG_LEN + 8];
        assert_eq!(diag_reply_cgroup(bare), None);
        reply[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(diag_reply_cgroup(&reply), None);
    }

    /// The id the kernel gives a socket is the inode number of its creator's cgroup v2 directory: a process
    /// moved into a group of its own in the unified hierarchy (wherever it is mounted: pure v2, or hybrid as
    /// on this project's CI) opens a connection, and only that group's id shows it.
    #[tokio::test]
    async fn a_sockets_cgroup_is_its_creators_group() {
        let Some(unified) = unified_mount() else {
            eprintln!("SKIPPED: no cgroup v2 hierarchy here; the quick check then never applies");
            return;
        };
        if !nix::unistd::Uid::effective().is_root() {
            assert!(std::env::var_os("CI").is_none(), "CI runs the sandbox tests as root");
            eprintln!("SKIPPED: making a cgroup needs root; CI runs this test");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let group = unified.join(format!("stoke-peer-test-{}", std::process::id()));
        std::fs::create_dir(&group).unwrap();
        let id = std::fs::metadata(&group).unwrap().ino();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        // The child joins the group, then connects (a socket is its creator's group's when it is made).
        let script = format!(
            "import socket,sys,time\nopen(sys.argv[1]+'/cgroup.procs','w').write('0')\n\
             s=socket.create_connection(('127.0.0.1',{}))\ntime.sleep(30)\n",
            local.port()
        );
        let mut child = std::process::Command::new("python3").args(["-c", &script]).arg(&group).spawn().unwrap();
        let (_stream, peer) = listener.accept().await.unwrap();
        let theirs = opened_in_cgroup(id, local, peer);
        let ours = std::net::TcpStream::connect(local).unwrap();
        let (_ours_accepted, our_peer) = listener.accept().await.unwrap();
        let not_ours = opened_in_cgroup(id, local, our_peer);
        let other_id = opened_in_cgroup(id + 1, local, peer);
        let no_such = opened_in_cgroup(id, local, "127.0.0.1:1".parse().unwrap());
        // The thread's netlink socket is kept and answers again.
        let again = (0..3).all(|_| opened_in_cgroup(id, local, peer));
        let _ = child.kill();
        let _ = child.wait();
        drop(ours);
        let _ = std::fs::remove_dir(&group);
        assert!(theirs && again, "the group's process opened it");
        assert!(!not_ours, "this process is not in the group");
        assert!(!other_id && !no_such);
    }

    /// Where the unified (v2) hierarchy is mounted, from this process's mountinfo.
    fn unified_mount() -> Option<std::path::PathBuf> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        info.lines().find_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let point = before.split(' ').nth(4)?;
            after.starts_with("cgroup2 ").then(|| std::path::PathBuf::from(point))
        })
    }

    /// What the two ways of checking a Runtime API connection cost, next to the hop to a blocking thread the
    /// `/proc` walk needs (issue 27). A benchmark, not a test: `cargo test --release -p stoke-sandbox
    /// peer_check_costs -- --ignored --nocapture` prints the table.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a benchmark: run it with --ignored"]
    async fn peer_check_costs() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let script =
            format!("import socket,time\ns=socket.create_connection(('127.0.0.1',{}))\ntime.sleep(60)\n", local.port());
        let mut child = std::process::Command::new("python3").args(["-c", &script]).spawn().unwrap();
        let (_stream, peer) = listener.accept().await.unwrap();
        let pid = child.id();
        let cgroup = diag(peer, local).ok().and_then(|r| diag_reply_cgroup(&r));
        let n = 5_000u32;
        let per = |f: &mut dyn FnMut()| {
            let cpu = || {
                let mut ts = nix::libc::timespec { tv_sec: 0, tv_nsec: 0 };
                // SAFETY: clock_gettime writes only the timespec it is given.
                unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
                i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
            };
            let (wall, start) = (std::time::Instant::now(), cpu());
            for _ in 0..n {
                f();
            }
            let cpu_ns = u128::try_from(cpu() - start).unwrap_or(0);
            (wall.elapsed().as_nanos() / u128::from(n), cpu_ns / u128::from(n))
        };
        let walk = per(&mut || assert!(opened_by_any(&[pid], local, peer)));
        let quick = per(&mut || assert!(cgroup.is_some_and(|id| opened_in_cgroup(id, local, peer))));
        let handle = tokio::runtime::Handle::current();
        let hop = per(&mut || {
            let _ = tokio::task::block_in_place(|| handle.block_on(tokio::task::spawn_blocking(|| 1)));
        });
        let _ = child.kill();
        let _ = child.wait();
        println!("| check of one Runtime API connection | wall ns | CPU ns (whole process) |");
        println!("| --- | --- | --- |");
        for (what, (wall, cpu)) in [
            ("the process walk (`cgroup.procs`, `/proc/<pid>/fd`)", walk),
            ("the socket's cgroup from netlink", quick),
            ("a hop to a blocking thread and back", hop),
        ] {
            println!("| {what} | {wall} | {cpu} |");
        }
    }
}
