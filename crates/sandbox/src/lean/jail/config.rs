//! The helper's command line: [`JailConfig`] and its codec. The server encodes one with
//! [`JailConfig::to_args`]; the helper decodes it with [`JailConfig::from_args`] before anything else.

use std::ffi::OsString;
use std::path::PathBuf;

use super::super::rootfs::{Bind, RootSpec, Tmp};

/// Why a command line is not one [`JailConfig::to_args`] makes: the option at fault, or the rule broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentError {
    #[error("no program to run (expected `-- <program> [args]`)")]
    NoSeparator,
    #[error("no program after --")]
    NoProgram,
    #[error("unknown option {0}")]
    UnknownOption(String),
    #[error("option {0} needs a value")]
    MissingValue(String),
    #[error("option {0} needs a number")]
    NotANumber(String),
    #[error("option {0} needs a port number")]
    NotAPort(String),
    #[error("--new-root is required")]
    NoNewRoot,
    #[error("--uid and --gid must name an unprivileged user (not 0)")]
    PrivilegedUser,
    #[error("--zygote must name an unprivileged host uid (not 0)")]
    PrivilegedZygote,
}

/// Everything the helper needs, passed on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailConfig {
    pub root: RootSpec,
    /// Directories whose `cgroup.procs` the instance joins.
    pub cgroups: Vec<PathBuf>,
    pub cwd: PathBuf,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// `network: none`: the host port of the instance's Runtime API, relayed to
    /// [`RELAYED_RUNTIME_API_PORT`](super::RELAYED_RUNTIME_API_PORT) inside the instance's own network namespace.
    pub relay: Option<u16>,
    /// How a generic instance gets its function.
    pub generic: Generic,
}

/// Whether the instance knows its function at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Generic {
    /// It does: run `program` now.
    #[default]
    No,
    /// Set everything up, then wait for an [`Assignment`](super::super::assignment::Assignment) on stdin and
    /// run what it says.
    Await,
    /// Start `program` now (stoke's Python bootstrap), which reads its assignment from stdin itself.
    Prestart,
    /// A zygote: once the root is built, enter a user namespace of its own as its root (mapped to
    /// `host_uid`; the sandbox user mapped to itself) and run `program`, stoke's Python zygote, which forks
    /// instances.
    Zygote { host_uid: u32 },
}

impl JailConfig {
    /// The helper's arguments (after [`JAIL_ARG`](super::JAIL_ARG)).
    pub fn to_args(&self) -> Vec<OsString> {
        let r = &self.root;
        let mut a: Vec<OsString> = vec![
            "--new-root".into(),
            r.new_root.clone().into(),
            "--uid".into(),
            r.uid.to_string().into(),
            "--gid".into(),
            r.gid.to_string().into(),
            "--hostname".into(),
            r.hostname.clone().into(),
            "--cwd".into(),
            self.cwd.clone().into(),
        ];
        match &r.tmp {
            Tmp::Memory { size_mb } => a.extend(["--tmp-mb".into(), size_mb.to_string().into()]),
            Tmp::Bind(dir) => a.extend(["--tmp-bind".into(), dir.clone().into()]),
        }
        for b in &r.binds {
            let flag = if b.writable { "--bind-rw" } else { "--bind" };
            a.extend([flag.into(), b.source.clone().into(), b.target.clone().into()]);
        }
        for c in &self.cgroups {
            a.extend(["--cgroup".into(), c.clone().into()]);
        }
        for l in &r.layers {
            a.extend(["--layer".into(), l.clone().into()]);
        }
        if let Some(image) = &r.image {
            a.extend(["--image".into(), image.clone().into()]);
        }
        if let Some(port) = self.relay {
            a.extend(["--relay".into(), port.to_string().into()]);
        }
        if let Some(attach) = &r.attach {
            a.extend(["--attach".into(), attach.clone().into()]);
        }
        if let Some(attach_root) = &r.attach_root {
            a.extend(["--attach-root".into(), attach_root.clone().into()]);
        }
        for d in &r.devices {
            a.extend(["--device".into(), d.clone().into()]);
        }
        if let Some(shm) = &r.shm {
            a.extend(["--shm".into(), shm.clone().into()]);
        }
        match self.generic {
            Generic::No => {}
            Generic::Await => a.push("--await-assignment".into()),
            Generic::Prestart => a.push("--prestart".into()),
            Generic::Zygote { host_uid } => a.extend(["--zygote".into(), host_uid.to_string().into()]),
        }
        a.push("--".into());
        a.push(self.program.clone().into());
        a.extend(self.args.iter().cloned());
        a
    }

    /// Parses [`JailConfig::to_args`]'s output; the error names the bad option.
    pub fn from_args(args: impl IntoIterator<Item = OsString>) -> Result<Self, ArgumentError> {
        let mut it = args.into_iter();
        let mut root = RootSpec {
            new_root: PathBuf::new(),
            binds: Vec::new(),
            tmp: Tmp::Memory { size_mb: 512 },
            uid: 0,
            gid: 0,
            hostname: "stoke".into(),
            layers: Vec::new(),
            image: None,
            attach: None,
            attach_root: None,
            devices: Vec::new(),
            shm: None,
        };
        let (mut cgroups, mut cwd, mut relay, mut generic) = (Vec::new(), PathBuf::from("/"), None, Generic::No);
        let value = |it: &mut dyn Iterator<Item = OsString>, key: &str| {
            it.next().ok_or_else(|| ArgumentError::MissingValue(key.to_string()))
        };
        let number = |v: OsString, key: &str| -> Result<u32, ArgumentError> {
            v.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| ArgumentError::NotANumber(key.to_string()))
        };
        loop {
            let Some(key) = it.next() else { return Err(ArgumentError::NoSeparator) };
            let key = key.to_string_lossy().into_owned();
            match key.as_str() {
                "--new-root" => root.new_root = value(&mut it, &key)?.into(),
                "--tmp-mb" => root.tmp = Tmp::Memory { size_mb: number(value(&mut it, &key)?, &key)? },
                "--tmp-bind" => root.tmp = Tmp::Bind(value(&mut it, &key)?.into()),
                "--uid" => root.uid = number(value(&mut it, &key)?, &key)?,
                "--gid" => root.gid = number(value(&mut it, &key)?, &key)?,
                "--hostname" => root.hostname = value(&mut it, &key)?.to_string_lossy().into_owned(),
                "--cwd" => cwd = value(&mut it, &key)?.into(),
                "--cgroup" => cgroups.push(value(&mut it, &key)?.into()),
                "--layer" => root.layers.push(value(&mut it, &key)?.into()),
                "--image" => root.image = Some(value(&mut it, &key)?.into()),
                "--attach" => root.attach = Some(value(&mut it, &key)?.into()),
                "--attach-root" => root.attach_root = Some(value(&mut it, &key)?.into()),
                "--device" => root.devices.push(value(&mut it, &key)?.into()),
                "--shm" => root.shm = Some(value(&mut it, &key)?.into()),
                "--zygote" => generic = Generic::Zygote { host_uid: number(value(&mut it, &key)?, &key)? },
                "--await-assignment" => generic = Generic::Await,
                "--prestart" => generic = Generic::Prestart,
                "--relay" => {
                    let port = number(value(&mut it, &key)?, &key)?;
                    relay = Some(u16::try_from(port).map_err(|_| ArgumentError::NotAPort(key.clone()))?);
                }
                "--bind" | "--bind-rw" => {
                    let source = value(&mut it, &key)?.into();
                    let target = value(&mut it, &key)?.into();
                    root.binds.push(Bind { source, target, writable: key == "--bind-rw" });
                }
                "--" => break,
                other => return Err(ArgumentError::UnknownOption(other.to_string())),
            }
        }
        // A generic instance waiting for its assignment learns its program then.
        let program: PathBuf = match it.next() {
            Some(p) => p.into(),
            None if generic == Generic::Await => PathBuf::new(),
            None => return Err(ArgumentError::NoProgram),
        };
        if root.new_root.as_os_str().is_empty() {
            return Err(ArgumentError::NoNewRoot);
        }
        if root.uid == 0 || root.gid == 0 {
            return Err(ArgumentError::PrivilegedUser);
        }
        if generic == (Generic::Zygote { host_uid: 0 }) {
            return Err(ArgumentError::PrivilegedZygote);
        }
        Ok(JailConfig { root, cgroups, cwd, program, args: it.collect(), relay, generic })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> JailConfig {
        JailConfig {
            root: RootSpec {
                new_root: "/d/run/root".into(),
                binds: vec![
                    Bind::read_only("/d/run/code/abc".into(), "/var/task".into()),
                    Bind::read_only("/opt/py 3".into(), "/opt/py 3".into()),
                    Bind { source: "/d/run/scratch/1".into(), target: "/var/stoke-scratch".into(), writable: true },
                ],
                tmp: Tmp::Bind("/d/run/ephemeral/7".into()),
                uid: 993,
                gid: 990,
                hostname: "stoke".into(),
                layers: vec!["/d/layers/1/aa/content".into(), "/d/layers/1/bb/content".into()],
                image: Some("/d/images/alpine/rootfs".into()),
                attach: Some("/d/run/attach/3".into()),
                attach_root: Some("/d/run/zattach/2".into()),
                devices: vec!["/dev/nvidia1".into(), "/dev/nvidiactl".into()],
                shm: Some("/d/run/mps/1/shm".into()),
            },
            cgroups: vec!["/sys/fs/cgroup/memory/stoke/s1/i2".into()],
            cwd: "/var/task".into(),
            program: "/usr/bin/python3".into(),
            args: vec!["-u".into(), "--".into(), "/var/runtime/boot.py".into()],
            relay: Some(40123),
            generic: Generic::Zygote { host_uid: 66529 },
        }
    }

    #[test]
    fn the_command_line_round_trips() {
        let c = config();
        assert_eq!(JailConfig::from_args(c.to_args()).unwrap(), c);
        // A generic instance that waits for its assignment needs no program yet.
        let waiting = JailConfig { generic: Generic::Await, program: PathBuf::new(), args: Vec::new(), ..c };
        let mut args = waiting.to_args();
        args.pop();
        assert_eq!(JailConfig::from_args(args).unwrap(), waiting);
    }

    #[test]
    fn every_kind_of_instance_round_trips() {
        for generic in [Generic::No, Generic::Prestart, Generic::Zygote { host_uid: 1 }] {
            let c = JailConfig { generic, relay: None, ..config() };
            assert_eq!(JailConfig::from_args(c.to_args()).unwrap(), c);
        }
        let mut in_memory = config();
        in_memory.root.tmp = Tmp::Memory { size_mb: 2048 };
        assert_eq!(JailConfig::from_args(in_memory.to_args()).unwrap(), in_memory);
        // The least a command line may say: the rest takes its defaults.
        let least = ["--new-root", "/r", "--uid", "5", "--gid", "6", "--", "/p"].map(OsString::from);
        let c = JailConfig::from_args(least).unwrap();
        assert_eq!(
            (&c.root.tmp, c.root.hostname.as_str(), c.cwd.as_path()),
            (&Tmp::Memory { size_mb: 512 }, "stoke", Path::new("/"))
        );
        assert_eq!((c.generic, c.relay, c.args.len()), (Generic::No, None, 0));
        assert!(c.root.binds.is_empty() && c.cgroups.is_empty() && c.root.image.is_none());
    }

    #[test]
    fn bad_command_lines_are_refused_with_the_reason() {
        use ArgumentError::*;
        let err = |args: &[&str]| JailConfig::from_args(args.iter().map(OsString::from)).unwrap_err();
        let ok = ["--new-root", "/r", "--uid", "5", "--gid", "5"];
        let with = |extra: &[&'static str]| [&ok[..], extra].concat();
        assert_eq!(err(&["--bogus", "x", "--", "/bin/true"]), UnknownOption("--bogus".into()));
        assert_eq!(err(&["--uid"]), MissingValue("--uid".into()));
        assert_eq!(err(&["--bind", "/a"]), MissingValue("--bind".into()));
        assert_eq!(err(&["--uid", "x", "--", "/p"]), NotANumber("--uid".into()));
        assert_eq!(err(&["--uid", "-1", "--", "/p"]), NotANumber("--uid".into()));
        assert_eq!(err(&["--new-root", "/r"]), NoSeparator);
        assert_eq!(err(&with(&["--"])), NoProgram);
        assert_eq!(err(&["--uid", "5", "--gid", "5", "--", "/p"]), NoNewRoot);
        assert_eq!(err(&with(&["--zygote", "0", "--", "/p"])), PrivilegedZygote);
        assert_eq!(err(&["--new-root", "/r", "--", "/p"]), PrivilegedUser);
        assert_eq!(err(&["--new-root", "/r", "--uid", "5", "--", "/p"]), PrivilegedUser);
        assert_eq!(err(&["--relay", "70000", "--", "/p"]), NotAPort("--relay".into()));
        // Options after `--` are the program's.
        let c = JailConfig::from_args(with(&["--", "/p", "--bogus"]).iter().map(OsString::from)).unwrap();
        assert_eq!(c.args, ["--bogus"]);
        // The messages name the option.
        assert_eq!(NotAPort("--relay".into()).to_string(), "option --relay needs a port number");
        assert_eq!(NoSeparator.to_string(), "no program to run (expected `-- <program> [args]`)");
    }
}
