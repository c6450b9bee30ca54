//! The seccomp filter every lean instance runs under: a classic-BPF program, built here as plain data
//! (unit-tested) and installed by the helper just before it executes the runtime.
//!
//! Denied with `EPERM`: mounting and changing the root, tracing other processes, loading kernels, kernel
//! modules and BPF programs, the kernel keyring, and creating or entering namespaces (`unshare`, `setns`,
//! and `clone` with any `CLONE_NEW*` flag). `clone3` gets `ENOSYS`, because its flags sit behind a pointer
//! the filter cannot read; C libraries then fall back to `clone`, whose flags it can. A foreign
//! architecture or the x32 ABI kills the process.

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// The syscalls refused outright.
pub fn denied() -> Vec<(&'static str, i64)> {
    use libc::*;
    vec![
        ("mount", SYS_mount),
        ("umount2", SYS_umount2),
        ("pivot_root", SYS_pivot_root),
        ("chroot", SYS_chroot),
        ("open_tree", SYS_open_tree),
        ("move_mount", SYS_move_mount),
        ("fsopen", SYS_fsopen),
        ("fsconfig", SYS_fsconfig),
        ("fsmount", SYS_fsmount),
        ("fspick", SYS_fspick),
        ("mount_setattr", SYS_mount_setattr),
        ("ptrace", SYS_ptrace),
        ("process_vm_readv", SYS_process_vm_readv),
        ("process_vm_writev", SYS_process_vm_writev),
        ("kexec_load", SYS_kexec_load),
        ("kexec_file_load", SYS_kexec_file_load),
        ("bpf", SYS_bpf),
        ("init_module", SYS_init_module),
        ("finit_module", SYS_finit_module),
        ("delete_module", SYS_delete_module),
        ("keyctl", SYS_keyctl),
        ("add_key", SYS_add_key),
        ("request_key", SYS_request_key),
        ("unshare", SYS_unshare),
        ("setns", SYS_setns),
        ("open_by_handle_at", SYS_open_by_handle_at),
        ("reboot", SYS_reboot),
        ("swapon", SYS_swapon),
        ("swapoff", SYS_swapoff),
    ]
}

/// Every `CLONE_NEW*` flag (NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET).
pub const CLONE_NEW_MASK: u32 =
    0x0000_0080 | 0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Offsets in `struct seccomp_data`: nr (u32), arch (u32), instruction_pointer (u64), args[6] (u64 each).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
#[cfg(target_endian = "little")]
const OFF_ARG0_LOW: u32 = 16;
#[cfg(target_endian = "big")]
const OFF_ARG0_LOW: u32 = 20;

const LD_W_ABS: u16 = opcode(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS);
const JEQ_K: u16 = opcode(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K);
const JGE_K: u16 = opcode(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K);
const JSET_K: u16 = opcode(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K);
const RET_K: u16 = opcode(libc::BPF_RET | libc::BPF_K);

/// A BPF opcode as `struct sock_filter` holds it: libc gives the parts as `u32`, the field is a `u16`.
#[allow(clippy::cast_possible_truncation)] // Asserted to fit; only used for constants, so checked at compile time.
const fn opcode(code: u32) -> u16 {
    assert!(code <= u16::MAX as u32);
    code as u16
}

/// A syscall number as `struct seccomp_data` holds it: libc gives it as `i64`, the field is 32 bits.
fn syscall_nr(nr: i64) -> u32 {
    u32::try_from(nr).expect("syscall numbers fit seccomp_data's nr")
}

const EPERM: u32 = libc::EPERM as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;

/// One instruction: (code, jt, jf, k) — the fields of `struct sock_filter`.
pub type Insn = (u16, u8, u8, u32);

fn stmt(code: u16, k: u32) -> Insn {
    (code, 0, 0, k)
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    (code, jt, jf, k)
}

/// The filter every instance runs under.
pub fn program() -> Vec<Insn> {
    program_denying(&denied())
}

/// What a zygote runs under (a parked interpreter that forks instances into namespaces of their own, inside
/// its user namespace): the instance filter but for `mount` and `unshare`, which it needs to set a forked
/// instance up. Each forked instance then installs [`program`] on top, before any of its function's code.
pub fn zygote_program() -> Vec<Insn> {
    let deny: Vec<(&'static str, i64)> =
        denied().into_iter().filter(|(n, _)| !matches!(*n, "mount" | "unshare")).collect();
    program_denying(&deny)
}

/// [`program`] as the bytes of an array of `struct sock_filter`, for a runtime to install itself.
pub fn program_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    for (code, jt, jf, k) in program() {
        out.extend_from_slice(&code.to_ne_bytes());
        out.push(jt);
        out.push(jf);
        out.extend_from_slice(&k.to_ne_bytes());
    }
    out
}

fn program_denying(deny: &[(&'static str, i64)]) -> Vec<Insn> {
    let errno = |e: u32| libc::SECCOMP_RET_ERRNO | e;
    let mut p = vec![
        stmt(LD_W_ABS, OFF_ARCH),
        jump(JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(LD_W_ABS, OFF_NR),
    ];
    if cfg!(target_arch = "x86_64") {
        p.push(jump(JGE_K, X32_SYSCALL_BIT, 0, 1));
        p.push(stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS));
    }
    // Each denied number jumps to the shared EPERM return placed after the list.
    let n = deny.len();
    for (i, (_, nr)) in deny.iter().enumerate() {
        let to_eperm = u8::try_from(n - i + 4).expect("the deny list fits a short jump");
        p.push(jump(JEQ_K, syscall_nr(*nr), to_eperm, 0));
    }
    // clone: inspect the flags (first argument).
    p.push(jump(JEQ_K, syscall_nr(libc::SYS_clone), 0, 2));
    p.push(stmt(LD_W_ABS, OFF_ARG0_LOW));
    p.push(jump(JSET_K, CLONE_NEW_MASK, 2, 3));
    // clone3
    p.push(jump(JEQ_K, syscall_nr(libc::SYS_clone3), 0, 2));
    p.push(stmt(RET_K, errno(ENOSYS)));
    p.push(stmt(RET_K, errno(EPERM)));
    p.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    p
}

/// Evaluates the program on one call, as the kernel would: what it returns for syscall `nr` made on
/// `arch` with first argument `arg0`. For tests, and to check the jump offsets by construction.
pub fn evaluate(program: &[Insn], arch: u32, nr: u32, arg0: u64) -> u32 {
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    while let Some(&(code, jt, jf, k)) = program.get(pc) {
        pc += 1;
        match code {
            LD_W_ABS => {
                acc = match k {
                    OFF_NR => nr,
                    OFF_ARCH => arch,
                    // The low 32 bits, as the kernel's load of that word sees them.
                    OFF_ARG0_LOW => (arg0 & 0xffff_ffff) as u32,
                    _ => 0,
                }
            }
            JEQ_K | JGE_K | JSET_K => {
                let taken = match code {
                    JEQ_K => acc == k,
                    JGE_K => acc >= k,
                    _ => acc & k != 0,
                };
                pc += usize::from(if taken { jt } else { jf });
            }
            RET_K => return k,
            _ => return libc::SECCOMP_RET_KILL_PROCESS,
        }
    }
    libc::SECCOMP_RET_KILL_PROCESS
}

/// Installs [`program`] on the calling thread (inherited across fork and exec). Requires `no_new_privs`
/// or `CAP_SYS_ADMIN`.
pub fn install() -> std::io::Result<()> {
    install_program(program())
}

/// Installs `program` on the calling thread.
pub fn install_program(program: Vec<Insn>) -> std::io::Result<()> {
    let insns: Vec<libc::sock_filter> =
        program.into_iter().map(|(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k }).collect();
    let len = u16::try_from(insns.len()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "a seccomp program of over 65535 instructions")
    })?;
    let prog = libc::sock_fprog { len, filter: insns.as_ptr().cast_mut() };
    // SAFETY: `prog` points at `insns`, which outlives the call; the kernel copies the program and keeps
    // no reference to our memory.
    let rc = unsafe {
        libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER as libc::c_ulong, &prog as *const libc::sock_fprog)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Which seccomp filter a process gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// A function's runtime: [`program`].
    Instance,
    /// A zygote, which mounts and unshares for the instances it forks:
    /// [`zygote_program`].
    Zygote,
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Filter::Instance => "the seccomp filter",
            Filter::Zygote => "the zygote's seccomp filter",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(nr: i64, arg0: u64) -> u32 {
        evaluate(&program(), AUDIT_ARCH, syscall_nr(nr), arg0)
    }

    const EPERM_RET: u32 = libc::SECCOMP_RET_ERRNO | EPERM;

    #[test]
    fn denies_every_listed_syscall_with_eperm() {
        for (name, nr) in denied() {
            assert_eq!(run(nr, 0), EPERM_RET, "{name}");
        }
    }

    #[test]
    fn allows_ordinary_syscalls() {
        for nr in
            [libc::SYS_read, libc::SYS_write, libc::SYS_openat, libc::SYS_execve, libc::SYS_exit_group, libc::SYS_futex]
        {
            assert_eq!(run(nr, 0), libc::SECCOMP_RET_ALLOW, "syscall {nr}");
        }
    }

    #[test]
    fn clone_is_allowed_for_threads_and_forks_but_not_for_namespaces() {
        let thread =
            (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_SIGHAND | libc::CLONE_THREAD) as u64;
        assert_eq!(run(libc::SYS_clone, thread), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_clone, libc::SIGCHLD as u64), libc::SECCOMP_RET_ALLOW);
        for flag in [libc::CLONE_NEWNS, libc::CLONE_NEWPID, libc::CLONE_NEWUSER, libc::CLONE_NEWNET, libc::CLONE_NEWUTS]
        {
            assert_eq!(run(libc::SYS_clone, u64::try_from(flag | libc::SIGCHLD).unwrap()), EPERM_RET);
        }
        assert_eq!(run(libc::SYS_clone3, 0), libc::SECCOMP_RET_ERRNO | ENOSYS);
    }

    #[test]
    fn the_zygote_may_mount_and_unshare_and_nothing_else_more() {
        let z = zygote_program();
        let run_z = |nr: i64, arg0: u64| evaluate(&z, AUDIT_ARCH, syscall_nr(nr), arg0);
        assert_eq!(run_z(libc::SYS_mount, 0), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run_z(libc::SYS_unshare, 0), libc::SECCOMP_RET_ALLOW);
        for (name, nr) in denied().into_iter().filter(|(n, _)| !matches!(*n, "mount" | "unshare")) {
            assert_eq!(run_z(nr, 0), EPERM_RET, "{name}");
        }
        assert_eq!(run_z(libc::SYS_clone, libc::CLONE_NEWUSER as u64), EPERM_RET);
        assert_eq!(program_bytes().len(), program().len() * 8);
    }

    #[test]
    fn foreign_architectures_and_x32_are_killed() {
        assert_eq!(evaluate(&program(), 0x4000_0003, syscall_nr(libc::SYS_read), 0), libc::SECCOMP_RET_KILL_PROCESS);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(run(i64::from(X32_SYSCALL_BIT) + libc::SYS_read, 0), libc::SECCOMP_RET_KILL_PROCESS);
        }
    }

    #[test]
    fn the_mask_covers_every_namespace_flag() {
        let all = libc::CLONE_NEWNS
            | libc::CLONE_NEWCGROUP
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUSER
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | 0x80; // CLONE_NEWTIME
        assert_eq!(all.cast_unsigned(), CLONE_NEW_MASK);
    }
}
