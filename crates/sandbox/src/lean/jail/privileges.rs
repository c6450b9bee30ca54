//! The last privileged steps of a process of the jail, in the order that makes them stick:
//!
//! - groups, then the group id, then the bounding and ambient capability sets, then the user id last — each
//!   of the earlier steps needs the privileges that leaving uid 0 takes away (and leaving it for good
//!   clears the permitted and effective sets);
//! - `no_new_privs` before the seccomp filter: without `CAP_SYS_ADMIN` the kernel installs a filter only
//!   for a process that can gain no privileges (a filter must not mislead a set-uid program it runs).

use super::super::seccomp::Filter;
use super::error::JailError;
use super::sys::Sys;

/// Capability numbers tried when emptying the bounding set; the kernel knows fewer (41 in 6.x).
const CAPABILITIES: u32 = 64;

/// To the sandbox user, with empty capability sets (bounding and ambient included) and no groups.
pub(super) fn drop_to_user(sys: &mut dyn Sys, uid: u32, gid: u32) -> Result<(), JailError> {
    sys.clear_groups().map_err(JailError::ClearGroups)?;
    sys.set_gid(gid).map_err(|error| JailError::SetGid { gid, error })?;
    for cap in 0..CAPABILITIES {
        match sys.drop_bounding_capability(cap) {
            Ok(()) => {}
            // Past the last capability this kernel knows.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(error) => return Err(JailError::DropCapability { cap, error }),
        }
    }
    sys.clear_ambient_capabilities();
    // Leaving uid 0 for good clears the permitted and effective sets.
    sys.set_uid(uid).map_err(|error| JailError::SetUid { uid, error })
}

/// To root of the user namespace this process just entered (and PID 1 mapped), with no groups: a zygote,
/// which keeps the capabilities it has there to set up the instances it forks.
pub(super) fn become_namespace_root(sys: &mut dyn Sys) -> Result<(), JailError> {
    sys.clear_groups().map_err(JailError::BecomeRoot)?;
    sys.set_gid(0).map_err(JailError::BecomeRoot)?;
    sys.set_uid(0).map_err(JailError::BecomeRoot)
}

/// No new privileges, then `filter`.
pub(super) fn confine(sys: &mut dyn Sys, filter: Filter) -> Result<(), JailError> {
    sys.set_no_new_privs().map_err(JailError::NoNewPrivs)?;
    sys.install_seccomp(filter).map_err(|error| JailError::Seccomp { filter, error })
}

#[cfg(test)]
mod tests {
    use super::super::recorder::Recorder;
    use super::*;

    #[test]
    fn the_group_goes_before_the_user_and_the_capabilities_in_between() {
        let mut sys = Recorder::default();
        drop_to_user(&mut sys, 993, 990).unwrap();
        assert_eq!(
            sys.summary(),
            [
                "setgroups []",
                "setresgid 990",
                "capbset drop 0..=40",
                "capbset drop 41 -> EINVAL",
                "ambient clear",
                "setresuid 993"
            ]
        );
    }

    #[test]
    fn a_failed_step_leaves_the_process_as_privileged_as_it_was_and_says_which() {
        let mut sys = Recorder::failing("setresgid");
        let err = drop_to_user(&mut sys, 993, 990).unwrap_err();
        assert!(matches!(err, JailError::SetGid { gid: 990, .. }), "{err:?}");
        assert_eq!(sys.summary(), ["setgroups []", "setresgid 990 -> EPERM"]);
        assert_eq!(
            err.to_string(),
            "cannot drop privileges: cannot set the group to 990: Operation not permitted (os error 1)"
        );

        // A capability the kernel knows but will not drop is an error, not the end of the list.
        let mut sys = Recorder::failing("capbset drop 3");
        let err = drop_to_user(&mut sys, 993, 990).unwrap_err();
        assert!(matches!(err, JailError::DropCapability { cap: 3, .. }), "{err:?}");
        assert_eq!(sys.summary(), ["setgroups []", "setresgid 990", "capbset drop 0..=2", "capbset drop 3 -> EPERM"]);

        let mut sys = Recorder::failing("setresuid");
        assert!(matches!(drop_to_user(&mut sys, 993, 990), Err(JailError::SetUid { uid: 993, .. })));
    }

    #[test]
    fn no_new_privs_goes_before_the_filter_and_without_it_no_filter_is_installed() {
        let mut sys = Recorder::default();
        confine(&mut sys, Filter::Zygote).unwrap();
        assert_eq!(sys.summary(), ["no_new_privs", "seccomp zygote"]);

        let mut sys = Recorder::failing("no_new_privs");
        assert!(matches!(confine(&mut sys, Filter::Instance), Err(JailError::NoNewPrivs(_))));
        assert_eq!(sys.summary(), ["no_new_privs -> EPERM"]);

        let mut sys = Recorder::failing("seccomp");
        let err = confine(&mut sys, Filter::Instance).unwrap_err();
        assert!(matches!(err, JailError::Seccomp { filter: Filter::Instance, .. }), "{err:?}");
        assert!(err.to_string().starts_with("cannot install the seccomp filter: "), "{err}");
    }

    #[test]
    fn a_zygote_becomes_root_of_its_namespace_group_first() {
        let mut sys = Recorder::default();
        become_namespace_root(&mut sys).unwrap();
        assert_eq!(sys.summary(), ["setgroups []", "setresgid 0", "setresuid 0"]);
        let mut sys = Recorder::failing("setresgid");
        assert!(matches!(become_namespace_root(&mut sys), Err(JailError::BecomeRoot(_))));
        assert_eq!(sys.summary(), ["setgroups []", "setresgid 0 -> EPERM"]);
    }
}
