//! The device cgroup of an instance holding GPUs: every device denied but the few any process needs
//! (`null`, `zero`, `full`, `random`, `urandom`, `tty`, `ptmx` and pseudo-terminals) and the nodes of its
//! GPU plan. On cgroup v1 that is the `devices` controller's `devices.deny` / `devices.allow`; on v2, a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the instance's group, as container runtimes do. The
//! rules and the program are plain data built here and unit-tested; loading and attaching are the two
//! syscalls at the end.
//!
//! Binding only the instance's own nodes into its `/dev` already keeps other GPUs out of reach (it cannot
//! make nodes: no `CAP_MKNOD`, and `/dev` is `nodev`); the device cgroup is the second wall, and the one the
//! kernel checks on every open.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One allowed device (or range): a character (`c`) or block (`b`) device, its major and minor (`None`:
/// any), and the access allowed (`r`, `w`, `m`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: &'static str,
}

impl DeviceRule {
    pub fn char(major: u32, minor: u32, access: &'static str) -> DeviceRule {
        DeviceRule { kind: 'c', major: Some(major), minor: Some(minor), access }
    }

    /// The rule as cgroup v1's `devices.allow` takes it: `c 195:0 rw`.
    pub fn v1_line(&self) -> String {
        let n = |v: Option<u32>| v.map_or_else(|| "*".to_string(), |v| v.to_string());
        format!("{} {}:{} {}", self.kind, n(self.major), n(self.minor), self.access)
    }
}

/// What every instance may open: the nodes lean binds into `/dev` and pseudo-terminals.
pub fn standard() -> Vec<DeviceRule> {
    let mut rules: Vec<DeviceRule> = [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2)]
        .into_iter()
        .map(|(major, minor)| DeviceRule::char(major, minor, "rw"))
        .collect();
    rules.push(DeviceRule { kind: 'c', major: Some(136), minor: None, access: "rw" });
    rules
}

/// The standard rules and read-write access to each of `nodes` (major, minor).
pub fn allowing(nodes: &[(u32, u32)]) -> Vec<DeviceRule> {
    let mut rules = standard();
    rules.extend(nodes.iter().map(|(major, minor)| DeviceRule::char(*major, *minor, "rw")));
    rules
}

// BPF_DEVCG_* of the kernel's uapi.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One BPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    fn encode(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.dst & 0x0f) | (self.src << 4);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

// Opcodes used.
const LDX_MEM_W: u8 = 0x61;
const MOV64_REG: u8 = 0xbf;
const MOV64_IMM: u8 = 0xb7;
const AND32_IMM: u8 = 0x54;
const RSH32_IMM: u8 = 0x74;
const JNE_IMM: u8 = 0x55;
const EXIT: u8 = 0x95;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, dst, src, off, imm }
}

/// The allow-list as a device program: 1 (allow) when the access matches a rule, 0 otherwise. The context is
/// `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`, the type in `access_type`'s low
/// 16 bits and the access in its high ones.
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),      // r2 = access_type
        insn(MOV64_REG, 3, 2, 0, 0),      // r3 = r2
        insn(AND32_IMM, 3, 0, 0, 0xffff), // r3 = type
        insn(RSH32_IMM, 2, 0, 0, 16),     // r2 = access
        insn(LDX_MEM_W, 4, 1, 4, 0),      // r4 = major
        insn(LDX_MEM_W, 5, 1, 8, 0),      // r5 = minor
    ];
    for rule in rules {
        let kind = if rule.kind == 'b' { DEV_BLOCK } else { DEV_CHAR };
        let access = rule.access.chars().fold(0, |a, c| {
            a | match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => 0,
            }
        });
        // The block's checks, each a jump past the block's end when it fails; then allow.
        let mut block: Vec<(Insn, bool)> = vec![(insn(JNE_IMM, 3, 0, 0, kind), true)];
        if access != ACC_READ | ACC_WRITE | ACC_MKNOD {
            block.push((insn(MOV64_REG, 6, 2, 0, 0), false));
            block.push((insn(AND32_IMM, 6, 0, 0, !access & 0x7), false));
            block.push((insn(JNE_IMM, 6, 0, 0, 0), true));
        }
        if let Some(major) = rule.major {
            block.push((insn(JNE_IMM, 4, 0, 0, i32::try_from(major).unwrap_or(i32::MAX)), true));
        }
        if let Some(minor) = rule.minor {
            block.push((insn(JNE_IMM, 5, 0, 0, i32::try_from(minor).unwrap_or(i32::MAX)), true));
        }
        block.push((insn(MOV64_IMM, 0, 0, 0, 1), false));
        block.push((insn(EXIT, 0, 0, 0, 0), false));
        let len = block.len();
        for (i, (mut ins, jumps)) in block.into_iter().enumerate() {
            if jumps {
                ins.off = i16::try_from(len - i - 1).unwrap_or(i16::MAX);
            }
            p.push(ins);
        }
    }
    p.push(insn(MOV64_IMM, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// Restricts a v1 `devices` group to `rules`: everything denied, then each rule allowed.
pub fn restrict_v1(dir: &Path, rules: &[DeviceRule]) -> io::Result<()> {
    std::fs::write(dir.join("devices.deny"), "a")?;
    for rule in rules {
        std::fs::write(dir.join("devices.allow"), rule.v1_line())?;
    }
    Ok(())
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// `union bpf_attr` as `BPF_PROG_LOAD` reads it (the fields up to `expected_attach_type`).
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` as `BPF_PROG_ATTACH` reads it.
#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Loads the program for `rules` and attaches it to the v2 group `dir`: from then on, every open of a
/// device node by a process in the group (or below it) is checked against the rules.
pub fn restrict_v2(dir: &Path, rules: &[DeviceRule]) -> io::Result<()> {
    let code: Vec<u8> = program(rules).into_iter().flat_map(Insn::encode).collect();
    let fd = match load(&code, None) {
        Ok(fd) => fd,
        Err(e) => {
            // Again with the verifier's log, for the message (without one, a short log buffer is an error).
            let mut log = vec![0u8; 256 * 1024];
            let again = load(&code, Some(&mut log));
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let verifier = String::from_utf8_lossy(&log[..end]).trim().to_string();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot load the device program: {e}{}",
                    again.err().map(|_| format!(" ({verifier})")).unwrap_or_default()
                ),
            ));
        }
    };
    let prog = fd;
    let group = std::fs::File::open(dir)?;
    let attach = ProgAttach {
        target_fd: u32::try_from(group.as_raw_fd()).map_err(io::Error::other)?,
        attach_bpf_fd: u32::try_from(prog.as_raw_fd()).map_err(io::Error::other)?,
        attach_type: BPF_CGROUP_DEVICE,
        ..ProgAttach::default()
    };
    // SAFETY: `attach` names two descriptors open for the call's duration; the size is the struct's.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, &attach as *const ProgAttach, std::mem::size_of::<ProgAttach>())
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("cannot attach the device program to {}: {e}", dir.display())));
    }
    // The group holds the program now; our descriptor can go.
    Ok(())
}

/// `BPF_PROG_LOAD` of a device program of `code` (encoded instructions), with the verifier's log written to
/// `log` when given.
fn load(code: &[u8], log: Option<&mut Vec<u8>>) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (1, u32::try_from(buf.len()).unwrap_or(0), buf.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(code.len() / 8).map_err(io::Error::other)?,
        insns: code.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        prog_name: *b"stoke_devices\0\0\0",
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..ProgLoad::default()
    };
    // SAFETY: `attr` points at the instructions, licence and (when given) log buffer, all alive for the call;
    // the size passed is the struct's, which the kernel reads no further than.
    let fd = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoad, std::mem::size_of::<ProgLoad>())
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor this function now owns.
    Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).map_err(io::Error::other)?) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_as_cgroup_v1_lines() {
        let rules = allowing(&[(195, 1), (195, 255)]);
        let lines: Vec<String> = rules.iter().map(DeviceRule::v1_line).collect();
        assert!(lines.contains(&"c 1:3 rw".to_string()), "/dev/null");
        assert!(lines.contains(&"c 136:* rw".to_string()), "pseudo-terminals");
        assert_eq!(lines[lines.len() - 2..], ["c 195:1 rw", "c 195:255 rw"]);
        assert!(!lines.iter().any(|l| l.starts_with('b')), "no block device");
    }

    /// Runs the program as the kernel would, on one access: a tiny interpreter of the opcodes it uses (with
    /// the kernel's own wrapping casts between register widths).
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
    fn run(program: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [((access << 16) | kind) as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = program[pc];
            pc += 1;
            let (d, s) = (i.dst as usize, i.src as usize);
            match i.code {
                LDX_MEM_W => r[d] = u64::from(ctx[(i.off / 4) as usize]),
                MOV64_REG => r[d] = r[s],
                MOV64_IMM => r[d] = i.imm as u64,
                AND32_IMM => r[d] = u64::from((r[d] as u32) & (i.imm as u32)),
                RSH32_IMM => r[d] = u64::from((r[d] as u32) >> i.imm),
                JNE_IMM if r[d] != i.imm as u64 => pc += i.off as usize,
                JNE_IMM => {}
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_program_allows_exactly_the_rules() {
        let p = program(&allowing(&[(195, 1), (195, 255)]));
        let (rw, r, m) = (ACC_READ | ACC_WRITE, ACC_READ, ACC_MKNOD);
        assert_eq!(run(&p, DEV_CHAR, rw, 195, 1), 1, "its GPU");
        assert_eq!(run(&p, DEV_CHAR, r, 195, 255), 1, "the control node");
        assert_eq!(run(&p, DEV_CHAR, rw, 195, 0), 0, "another GPU");
        assert_eq!(run(&p, DEV_CHAR, rw, 195, 3), 0, "another GPU");
        assert_eq!(run(&p, DEV_CHAR, m, 195, 1), 0, "no mknod, even of its own");
        assert_eq!(run(&p, DEV_BLOCK, rw, 195, 1), 0, "a block device of the same numbers");
        assert_eq!(run(&p, DEV_CHAR, rw, 1, 3), 1, "/dev/null");
        assert_eq!(run(&p, DEV_CHAR, rw, 136, 7), 1, "any pseudo-terminal");
        assert_eq!(run(&p, DEV_CHAR, rw, 1, 1), 0, "/dev/mem");
        assert_eq!(run(&p, DEV_BLOCK, r, 7, 0), 0, "a loop device");
        assert_eq!(run(&program(&[]), DEV_CHAR, r, 1, 3), 0, "no rule: nothing");
    }

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        let b = insn(LDX_MEM_W, 4, 1, 4, 0).encode();
        assert_eq!(b, [0x61, 0x14, 4, 0, 0, 0, 0, 0]);
        let j = insn(JNE_IMM, 5, 0, 3, 195).encode();
        assert_eq!(j, [0x55, 0x05, 3, 0, 195, 0, 0, 0]);
    }

    /// The program loaded and attached for real: a process in the group opens its device (the kernel then
    /// answers ENXIO, no driver being behind these numbers) and is refused another (EPERM).
    #[test]
    fn the_kernel_enforces_the_program() {
        if !nix::unistd::Uid::effective().is_root() {
            assert!(std::env::var_os("CI").is_none(), "CI runs the sandbox tests as root");
            eprintln!("SKIPPED: loading a device program and making a cgroup need root; CI runs this test");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // A cgroup v2 hierarchy of this test's own (works beside v1 controllers: it needs none).
        let mount = dir.path().join("cg2");
        std::fs::create_dir(&mount).unwrap();
        nix::mount::mount(Some("none"), &mount, Some("cgroup2"), nix::mount::MsFlags::empty(), None::<&str>).unwrap();
        let group = mount.join(format!("stoke-devices-test-{}", std::process::id()));
        std::fs::create_dir(&group).unwrap();
        // Two nodes of an unused major: 511 is reserved for local/experimental use.
        for minor in [0, 1] {
            let node = dir.path().join(format!("dev{minor}"));
            nix::sys::stat::mknod(
                &node,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(511, minor),
            )
            .unwrap();
        }
        let attached = restrict_v2(&group, &allowing(&[(511, 0)]));
        let script = "import os,sys,errno\nopen(sys.argv[1]+'/cgroup.procs','w').write('0')\nfor m in (0,1):\n \
             try:\n  os.open(sys.argv[2]+'/dev%d'%m,os.O_RDWR)\n  print('opened')\n except OSError as e:\n  \
             print(errno.errorcode[e.errno])\n";
        let out =
            std::process::Command::new("python3").args(["-c", script]).arg(&group).arg(dir.path()).output().unwrap();
        let _ = std::fs::remove_dir(&group);
        let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
        attached.unwrap();
        let seen = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = seen.lines().collect();
        assert_eq!(lines, ["ENXIO", "EPERM"], "allowed then refused; stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
}
