//! Why the jail stopped: one variant per step, so a failure says which step it was (the helper prints it
//! as `stoke-jail: <message>` and exits with 125, as `env` and container runtimes do when they themselves
//! fail rather than the program they run).

use std::io;
use std::path::PathBuf;

use super::super::seccomp::Filter;
use super::config::ArgumentError;

/// A step of the jail that failed, with the system's reason. Each process of the jail stops at its first
/// failed step: nothing after it runs, least of all the runtime.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    // The jailer, in the host's PID namespace.
    #[error("bad arguments: {0}")]
    Arguments(ArgumentError),
    #[error("cannot give the instance a network of its own: {0}")]
    OwnNetwork(io::Error),
    #[error("cannot create namespaces: {0}")]
    Namespaces(io::Error),
    #[error("cannot watch the server: {0}")]
    WatchServer(io::Error),
    #[error("cannot fork: {0}")]
    Fork(io::Error),
    #[error("cannot watch the instance: {0}")]
    WatchInstance(io::Error),
    #[error("cannot return to the host's network: {0}")]
    HostNetwork(io::Error),
    #[error("the Runtime API relay failed: {0}")]
    Relay(io::Error),
    #[error("cannot wait for the instance: {0}")]
    WaitInstance(io::Error),
    #[error("lost the instance: {0}")]
    LostInstance(io::Error),

    // PID 1 of the instance.
    #[error("cannot tie the instance to its helper: {0}")]
    TieToHelper(io::Error),
    #[error("cannot create the instance's mount namespace: {0}")]
    MountNamespace(io::Error),
    #[error("cannot join cgroup {}: {error}", dir.display())]
    JoinCgroup { dir: PathBuf, error: io::Error },
    #[error("cannot set the host name: {0}")]
    Hostname(io::Error),
    #[error("cannot build the instance's file system: {0}")]
    RootFs(String),
    #[error("no assignment: {0}")]
    Assignment(String),
    #[error("cannot fork the runtime: {0}")]
    ForkRuntime(io::Error),
    #[error("lost the runtime: {0}")]
    LostRuntime(io::Error),

    // The runtime's process (and, from `Seccomp` on, the zygote's).
    #[error("cannot drop privileges: cannot leave the supplementary groups: {0}")]
    ClearGroups(io::Error),
    #[error("cannot drop privileges: cannot set the group to {gid}: {error}")]
    SetGid { gid: u32, error: io::Error },
    #[error("cannot drop privileges: cannot drop capability {cap} from the bounding set: {error}")]
    DropCapability { cap: u32, error: io::Error },
    #[error("cannot drop privileges: cannot set the user to {uid}: {error}")]
    SetUid { uid: u32, error: io::Error },
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(io::Error),
    #[error("cannot install {filter}: {error}")]
    Seccomp { filter: Filter, error: io::Error },
    #[error("cannot enter {}: {error}", dir.display())]
    Chdir { dir: PathBuf, error: io::Error },
    #[error("an argument contains a NUL byte")]
    NulByte,
    #[error("cannot run {}: {error}", program.display())]
    Exec { program: PathBuf, error: io::Error },

    // A zygote: PID 1's child, and the zygote it forks into a user namespace of its own.
    #[error("cannot make the zygote's set-up pipes: {0}")]
    ZygotePipes(io::Error),
    #[error("cannot fork the zygote: {0}")]
    ForkZygote(io::Error),
    #[error("cannot tie the zygote to its parent: {0}")]
    TieZygote(io::Error),
    #[error("cannot create the zygote's user namespace: {0}")]
    UserNamespace(io::Error),
    #[error("the zygote did not make its user namespace")]
    NoUserNamespace,
    #[error("cannot map the zygote's user namespace: {0}")]
    MapUserNamespace(io::Error),
    #[error("the zygote's user namespace was not mapped")]
    NotMapped,
    #[error("cannot become root of the zygote's user namespace: {0}")]
    BecomeRoot(io::Error),

    // The oci backend's holder.
    #[error("no program to hold (expected `-- <program> [args]`)")]
    NoProgramToHold,
    #[error("cannot create a PID namespace: {0}")]
    PidNamespace(io::Error),
    #[error("cannot tie the runtime to its holder: {0}")]
    TieToHolder(io::Error),
    #[error("cannot give the runtime its namespace's /proc: {0}")]
    OwnProc(io::Error),
}
