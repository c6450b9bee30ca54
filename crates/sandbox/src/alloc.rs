//! The stoke binary's memory allocator: mimalloc for the server (and every other command), the C library's
//! own for the sandbox helpers the binary also runs as (`JAIL_ARG`, `PIDNS_ARG`).
//!
//! The server's warm path allocates and frees small buffers on every request from every worker thread;
//! glibc's allocator took a sixth of its CPU time, mimalloc takes a fraction of that (BENCHMARKS.md). A
//! lean instance, though, keeps two helper processes of this binary for its whole life, and mimalloc's
//! first arena costs each of them megabytes where glibc's heap costs a few hundred KiB — a thousand idle
//! instances would cost gigabytes. So the process picks once, at its first allocation (before `main`, before
//! any thread), from its own command line, and keeps that choice: nothing allocated by one allocator is ever
//! freed by the other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

const UNDECIDED: u8 = 0;
const SYSTEM: u8 = 1;
const MIMALLOC: u8 = 2;

static CHOICE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// The `#[global_allocator]` of the stoke binary.
#[derive(Debug)]
pub struct Allocator;

impl Allocator {
    #[inline]
    fn mimalloc() -> bool {
        match CHOICE.load(Ordering::Relaxed) {
            UNDECIDED => {
                let choice = if is_helper() { SYSTEM } else { MIMALLOC };
                CHOICE.store(choice, Ordering::Relaxed);
                choice == MIMALLOC
            }
            choice => choice == MIMALLOC,
        }
    }
}

/// Whether this process is one of the sandbox's helpers: its first argument is one of their entry
/// points. Reads `/proc/self/cmdline` with plain system calls, since nothing may allocate yet.
fn is_helper() -> bool {
    let mut buf = [0u8; 512];
    // SAFETY: a NUL-terminated path, a buffer this frame owns with its true length, and the descriptor is
    // closed before returning.
    let n = unsafe {
        let fd = libc::open(c"/proc/self/cmdline".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let Ok(n) = usize::try_from(n) else { return false };
    helper_command_line(&buf[..n])
}

/// Whether a command line (arguments separated by NULs, as `/proc/<pid>/cmdline` has it) is a helper's.
fn helper_command_line(cmdline: &[u8]) -> bool {
    let first = cmdline.split(|b| *b == 0).nth(1).unwrap_or_default();
    first == crate::JAIL_ARG.as_bytes() || first == crate::PIDNS_ARG.as_bytes()
}

// SAFETY: each call goes to the allocator chosen once for the process, which is the one that made the block.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::mimalloc() {
            mimalloc::MiMalloc.alloc(layout)
        } else {
            System.alloc(layout)
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::mimalloc() {
            mimalloc::MiMalloc.alloc_zeroed(layout)
        } else {
            System.alloc_zeroed(layout)
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::mimalloc() {
            mimalloc::MiMalloc.dealloc(ptr, layout)
        } else {
            System.dealloc(ptr, layout)
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::mimalloc() {
            mimalloc::MiMalloc.realloc(ptr, layout, new_size)
        } else {
            System.realloc(ptr, layout, new_size)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sandbox_helpers_are_told_apart() {
        let jail = format!("/usr/bin/stoke\0{}\0--new-root\0/x\0", crate::JAIL_ARG);
        assert!(helper_command_line(jail.as_bytes()));
        let pidns = format!("stoke\0{}\0--\0runc\0", crate::PIDNS_ARG);
        assert!(helper_command_line(pidns.as_bytes()));
        assert!(!helper_command_line(b"stoke\0server\0--listen=127.0.0.1:0\0"));
        assert!(!helper_command_line(b"stoke\0"));
        assert!(!helper_command_line(b""));
        // An argument that merely starts like one is not one.
        let longer = format!("stoke\0{}x\0", crate::JAIL_ARG);
        assert!(!helper_command_line(longer.as_bytes()));
    }

    #[test]
    fn the_choice_is_made_once_and_kept() {
        // This test binary does not install the allocator; asking decides for it, from its command line.
        let first = Allocator::mimalloc();
        assert!(first, "a test binary is not a helper");
        assert_eq!(CHOICE.load(Ordering::Relaxed), MIMALLOC);
        assert_eq!(Allocator::mimalloc(), first);
        // SAFETY: a block made by the chosen allocator, freed by it with the same layout.
        unsafe {
            let layout = Layout::from_size_align(64, 8).unwrap();
            let p = Allocator.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert!(std::slice::from_raw_parts(p, 64).iter().all(|b| *b == 0));
            let p = Allocator.realloc(p, layout, 4096);
            assert!(!p.is_null());
            Allocator.dealloc(p, Layout::from_size_align(4096, 8).unwrap());
        }
    }
}
