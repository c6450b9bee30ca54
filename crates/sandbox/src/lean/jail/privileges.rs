//! The runtime's privileges: from the host's root to the sandbox user with no capabilities.

use std::io;

use nix::unistd::{Gid, Uid};

/// To the sandbox user, with empty capability sets (bounding and ambient included) and no groups.
pub(super) fn drop_privileges(uid: u32, gid: u32) -> io::Result<()> {
    nix::unistd::setgroups(&[])?;
    let gid = Gid::from_raw(gid);
    nix::unistd::setresgid(gid, gid, gid)?;
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory of ours.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                break; // past the last capability this kernel knows
            }
            return Err(err);
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0);
    }
    let uid = Uid::from_raw(uid);
    // Leaving uid 0 for good clears the permitted and effective sets.
    nix::unistd::setresuid(uid, uid, uid)?;
    Ok(())
}
