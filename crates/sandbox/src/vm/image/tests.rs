use super::*;

#[test]
fn a_cpio_archive_is_newc_with_each_entry_aligned_and_a_trailer_on_a_block_boundary() {
    let entries = vec![
        ("stoke".to_string(), Entry::Dir),
        ("stoke/init".to_string(), Entry::File { data: b"#!/bin/sh\n".to_vec(), executable: true }),
        ("bin".to_string(), Entry::Symlink("usr/bin".into())),
    ];
    let a = cpio(&entries).unwrap();
    assert_eq!(a.len() % 512, 0, "the next archive starts on a block");
    assert!(a.starts_with(b"070701"));
    // Walk it as the kernel does: header, name (NUL-terminated, padded to 4), data (padded to 4).
    let mut at = 0;
    let mut seen = Vec::new();
    loop {
        let h = std::str::from_utf8(&a[at..at + 110]).unwrap();
        assert_eq!(&h[..6], "070701");
        let field = |n: usize| u32::from_str_radix(&h[6 + n * 8..14 + n * 8], 16).unwrap();
        let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
        let name = std::str::from_utf8(&a[at + 110..at + 110 + namesize - 1]).unwrap().to_string();
        at = (at + 110 + namesize).next_multiple_of(4);
        let data = a[at..at + size].to_vec();
        at = (at + size).next_multiple_of(4);
        if name == "TRAILER!!!" {
            break;
        }
        seen.push((name, mode, data));
    }
    assert_eq!(seen[0], ("stoke".to_string(), 0o040_755, vec![]));
    assert_eq!(seen[1], ("stoke/init".to_string(), 0o100_755, b"#!/bin/sh\n".to_vec()));
    assert_eq!(seen[2], ("bin".to_string(), 0o120_777, b"usr/bin".to_vec()));
    assert!(a[at..].iter().all(|b| *b == 0), "only padding after the trailer");
}

const DEP: &str = "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/net/9p/9pnet.ko:
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
";

#[test]
fn modules_load_after_everything_they_need_once_each() {
    let order = module_order(DEP, &["virtio_mmio", "virtio_net", "9pnet_virtio", "9p"]).unwrap();
    let pos =
        |m: &str| order.iter().position(|p| p.rsplit('/').next().unwrap().starts_with(&format!("{m}.ko"))).unwrap();
    assert_eq!(order.len(), 11, "{order:?}");
    for (before, after) in [
        ("virtio_ring", "virtio"),
        ("virtio", "virtio_mmio"),
        ("failover", "net_failover"),
        ("net_failover", "virtio_net"),
        ("netfs", "fscache"),
        ("fscache", "9p"),
        ("9pnet", "9pnet_virtio"),
    ] {
        assert!(pos(before) < pos(after), "{before} before {after}: {order:?}");
    }
    assert!(order.contains(&"kernel/drivers/net/virtio_net.ko.xz".to_string()), "compressed modules keep their path");
    let missing = module_order(DEP, &["9p", "vsock"]).unwrap_err();
    assert!(missing.contains("no module vsock"), "{missing}");
    let looped = module_order("a.ko: b.ko\nb.ko: a.ko\n", &["a"]);
    assert!(looped.is_err(), "a loop is an error, not a hang");
}

#[test]
fn the_instance_script_mounts_its_shares_and_runs_exactly_its_command_unprivileged() {
    let i = Instance {
        shares: vec![("s0".into(), "/usr".into(), false), ("s5".into(), "/var/stoke-scratch".into(), true)],
        tmp_mb: 512,
        processes: 1024,
        open_files: 1024,
        program: "/var/runtime/bootstrap".into(),
        args: vec!["it's".into()],
        env: vec![("A".into(), "x y".into()), ("B".into(), "$(reboot)".into())],
        cwd: "/var/task".into(),
    };
    let s = instance_script(&i);
    assert!(s.contains("share 's0' ro '/usr'\n"), "{s}");
    assert!(s.contains("share 's5' rw '/var/stoke-scratch'\n"), "{s}");
    assert!(s.contains("$B mount -t ext4 -o nosuid,nodev,noatime \"$TMPDEV\" /tmp"), "its disk: {s}");
    assert!(s.contains("size=512m tmpfs /tmp"), "or a tmpfs of its size: {s}");
    assert!(s.contains("ulimit -u 1024"), "{s}");
    assert!(s.contains("cd '/var/task'"), "{s}");
    let ro = s.find("mount -o remount,ro /").expect("the root made read-only");
    assert!(ro > s.find("/tmp").unwrap() && ro < s.find("cd '/var/task'").unwrap(), "after the mounts: {s}");
    assert!(s.contains("ulimit -n 1024"), "{s}");
    let run = s.lines().last().unwrap();
    assert!(run.starts_with("$B su -s /stoke/sh sbx_user -c '"), "{run}");
    assert!(run.ends_with(" </dev/null 2>&1"), "{run}");
    // The command survives two rounds of the shell (the init's, then su's) word for word: nothing expands.
    let inner = unquote(run.trim_start_matches("$B su -s /stoke/sh sbx_user -c ").trim_end_matches(" </dev/null 2>&1"));
    assert_eq!(
        words(&inner),
        [
            "exec",
            "/stoke/busybox",
            "setpriv",
            "--nnp",
            "/stoke/busybox",
            "env",
            "-i",
            "A=x y",
            "B=$(reboot)",
            "/var/runtime/bootstrap",
            "it's"
        ]
    );
}

/// Undoes [`quote`] on one word.
fn unquote(word: &str) -> String {
    words(word).concat()
}

/// Splits a line of single-quoted and bare words as `sh` does (only the quoting `quote` writes).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut started) = (false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            '\\' if !quoted => {
                cur.extend(chars.next());
                started = true;
            }
            ' ' if !quoted => {
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            c => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(cur);
    }
    out
}

#[test]
fn qemu_gets_a_microvm_whose_only_peer_is_the_relay_and_whose_shares_are_read_only_unless_said() {
    let m = Machine {
        accel: Accel::Tcg,
        kernel: "/run/vm/vmlinux".into(),
        initrd: "/run/vm/i/initrd".into(),
        status_disk: "/run/vm/i/status".into(),
        tmp_disk: Some("/run/vm/i/tmp".into()),
        memory_mb: 256,
        vcpus: 1,
        tcg_cache_mb: 32,
        tsc_khz: Some(2_600_000),
        shares: vec![("s0".into(), "/usr".into(), false), ("s1".into(), "/data/scratch,x".into(), true)],
        relay: vec!["/bin/busybox".into(), "nc".into(), "127.0.0.1".into(), "4242".into()],
        qmp: None,
        incoming: None,
    };
    let a = qemu_args(&m);
    assert!(!a.contains(&"-qmp".to_string()) && !a.contains(&"-incoming".to_string()), "booted, not restored");
    let after = |flag: &str| a.iter().position(|x| x == flag).map(|i| a[i + 1].clone()).unwrap();
    assert_eq!(after("-accel"), "tcg,tb-size=32", "a bounded translation cache");
    assert!(after("-M").starts_with("microvm"));
    assert_eq!(after("-m"), "256M");
    assert!(after("-append").contains(" tsc_early_khz=2600000 tsc=reliable"), "the emulated guest is told its clock");
    assert_eq!(
        after("-netdev"),
        "user,id=net,restrict=on,ipv6=off,guestfwd=tcp:10.0.2.100:9001-cmd:/bin/busybox nc 127.0.0.1 4242"
    );
    assert!(after("-sandbox").starts_with("on,"), "QEMU filters its own system calls");
    let fsdevs: Vec<&String> = a.iter().zip(a.iter().skip(1)).filter(|(f, _)| *f == "-fsdev").map(|(_, v)| v).collect();
    assert_eq!(fsdevs[0], "local,id=s0,path=/usr,security_model=none,readonly=on");
    assert_eq!(fsdevs[1], "local,id=s1,path=/data/scratch,,x,security_model=none", "commas doubled, writable");
    let drives: Vec<&String> = a.iter().zip(a.iter().skip(1)).filter(|(f, _)| *f == "-drive").map(|(_, v)| v).collect();
    assert_eq!(drives.len(), 2, "the status disk and /tmp: {drives:?}");
    assert!(drives[1].starts_with("file=/run/vm/i/tmp,format=raw"), "{drives:?}");
    assert!(a.contains(&"-nodefaults".to_string()) && a.contains(&"-no-reboot".to_string()));
    let restored = qemu_args(&Machine {
        qmp: Some("/run/vm/i/qmp".into()),
        incoming: Some("/run/vm/snapshots/128m it's/state".into()),
        ..m.clone()
    });
    let after = |flag: &str| restored.iter().position(|x| x == flag).map(|i| restored[i + 1].clone()).unwrap();
    assert_eq!(after("-qmp"), "unix:/run/vm/i/qmp,server=on,wait=off", "QEMU does not wait for its client");
    assert_eq!(after("-incoming"), r"exec:cat '/run/vm/snapshots/128m it'\''s/state'", "quoted for the shell");
    assert_eq!(save_uri(Path::new("/run/vm/s/state.tmp")), "exec:cat > '/run/vm/s/state.tmp'");
    let kvm = qemu_args(&Machine { accel: Accel::Kvm, tsc_khz: None, ..m });
    assert_eq!(kvm[..4], ["-accel", "kvm", "-cpu", "host"]);
    let kvm_cmdline = kvm.iter().position(|x| x == "-append").map(|i| kvm[i + 1].clone()).unwrap();
    assert!(!kvm_cmdline.contains("tsc"), "KVM's guests have kvm-clock: {kvm_cmdline}");
}

#[test]
fn only_read_only_shares_are_cached_in_the_guest() {
    let share = INIT.lines().find(|l| l.starts_with("share() {")).expect("the share function");
    assert!(share.contains(r#"c=loose; [ "$2" = rw ] && c=none;"#), "{share}");
    assert!(share.contains("cache=$c,") && share.contains(",$2\""), "{share}");
}

#[test]
fn the_status_disk_says_how_the_function_ended() {
    assert_eq!(parse_status(b"exit=0 oom=0\n\0\0"), Some((0, false)));
    assert_eq!(parse_status(b"exit=137 oom=2\n"), Some((137, true)));
    assert_eq!(parse_status(&[0u8; 4096]), None, "the VM never wrote it");
    assert_eq!(parse_status(b"exit=x oom=0\n"), None);
}

#[test]
fn shares_put_the_host_image_the_code_layers_and_scratch_where_the_other_sandboxes_do() {
    let s = shares(
        &["/usr".into()],
        Path::new("/data/code/f"),
        Path::new("/data/runtime"),
        Some(Path::new("/data/layers/l1")),
        &["/opt/python3.12".into()],
        Path::new("/data/scratch/acct"),
    );
    let view: Vec<(&str, &str, &str, bool)> =
        s.iter().map(|(t, h, g, rw)| (t.as_str(), h.to_str().unwrap(), g.to_str().unwrap(), *rw)).collect();
    assert_eq!(
        view,
        [
            ("s0", "/usr", "/usr", false),
            ("s1", "/data/code/f", "/var/task", false),
            ("s2", "/data/runtime", "/var/runtime", false),
            ("s3", "/data/layers/l1", "/opt", false),
            ("s4", "/opt/python3.12", "/opt/python3.12", false),
            ("s5", "/data/scratch/acct", "/var/stoke-scratch", true),
        ]
    );
}

#[test]
fn only_an_elf_without_an_interpreter_is_static() {
    // A minimal ELF64 header with program headers at 64: one PT_LOAD, then optionally a PT_INTERP.
    let elf = |types: &[u32]| {
        let mut e = vec![0u8; 64 + 56 * types.len()];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&u16::try_from(types.len()).unwrap().to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            e[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        e
    };
    assert!(static_elf(&elf(&[1, 1])));
    assert!(!static_elf(&elf(&[6, 3, 1])), "a PT_INTERP: dynamically linked");
    assert!(!static_elf(b"#!/bin/sh\n"), "not an ELF");
    let mut cut = elf(&[1, 3]);
    cut.truncate(100);
    assert!(!static_elf(&cut), "headers past the end: not trusted");
    if let Ok(sh) = std::fs::read("/bin/sh") {
        assert!(!static_elf(&sh), "the host's shell is linked dynamically");
    }
}

#[test]
fn a_generic_vm_mounts_its_slot_then_waits_for_a_script_of_a_stated_length() {
    let shares = vec![("s0".to_string(), PathBuf::from("/usr"), false), ("s4".into(), "/stoke/slot".into(), true)];
    let s = generic_script(&shares, 512);
    assert!(s.contains("share 's4' rw '/stoke/slot'\n"), "{s}");
    let (mounts, wait) = s.split_at(s.find("echo stoke-generic-ready\n").unwrap());
    assert_eq!(GENERIC_READY, "stoke-generic-ready\n", "what the host waits for is what the guest says");
    assert!(mounts.contains("/tmp"), "/tmp before it waits: {s}");
    assert!(wait.contains("*[!0-9]*) $B poweroff -f"), "a length that is not a number ends the VM: {s}");
    assert!(wait.contains("$B head -c \"$n\" > /stoke/assigned") && wait.ends_with(". /stoke/assigned\n"), "{s}");
    assert!(!s.contains("su -s"), "nothing runs before the assignment: {s}");
}

#[test]
fn an_assignment_binds_the_slot_read_only_except_scratch_hides_the_slot_and_runs_the_command() {
    let i = Instance {
        shares: vec![],
        tmp_mb: 512,
        processes: 64,
        open_files: 1024,
        program: "/var/runtime/bootstrap".into(),
        args: vec![],
        env: vec![("AWS_LAMBDA_RUNTIME_API".into(), RUNTIME_API_ADDR.into())],
        cwd: "/var/task".into(),
    };
    let binds = vec![
        (PathBuf::from("/stoke/slot/task"), PathBuf::from("/var/task"), false),
        (PathBuf::from("/stoke/slot/scratch"), PathBuf::from("/var/stoke-scratch"), true),
    ];
    let s = assignment_script(&binds, Path::new("/stoke/slot"), &i);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(
        lines[0],
        "$B mkdir -p '/var/task' && $B mount --bind '/stoke/slot/task' '/var/task' && \
         $B mount -o remount,bind,ro,nosuid,nodev '/var/task' || $B poweroff -f"
    );
    assert_eq!(lines[1], "$B mkdir -p '/var/stoke-scratch' && $B mount --bind '/stoke/slot/scratch' '/var/stoke-scratch' || $B poweroff -f");
    assert_eq!(lines[2], "$B umount -l '/stoke/slot'", "the function sees only what was bound");
    assert!(s.ends_with(&run_script(&i)), "then the command, as a VM started for its function runs it");
    assert!(s.contains("'AWS_LAMBDA_RUNTIME_API=10.0.2.100:9001'"), "{s}");
}

#[test]
fn the_relay_reads_its_port_when_a_connection_comes() {
    let r = relay_script("/bin/busybox", Path::new("/run/vm/7/port"));
    assert_eq!(r, "exec /bin/busybox nc 127.0.0.1 \"$(/bin/busybox cat '/run/vm/7/port')\"\n");
}

#[test]
fn a_vm_saved_for_a_snapshot_waits_before_mounting_anything_and_keeps_when_its_script_came() {
    let script = snapshot_instance();
    assert!(!script.contains("share ") && !script.contains("mount"), "{script}");
    let lines: Vec<&str> = script.lines().collect();
    assert_eq!(format!("{}\n", lines[0]), format!("echo {SNAPSHOT_READY}"), "says it is ready first");
    let read = lines.iter().position(|l| *l == "read -r n").unwrap();
    assert_eq!(lines[read + 1], "read -r U0 _ < /proc/uptime", "the uptime right when the length came");
    assert!(script.contains(r#"case "$n" in ''|*[!0-9]*) $B poweroff -f ;; esac"#), "a bad length ends it");
    assert!(script.ends_with(". /stoke/given\n"));
}

#[test]
fn a_restored_vm_drops_stale_caches_mounts_renews_its_clock_and_randomness_then_runs() {
    let shares =
        [("s0".to_string(), PathBuf::from("/usr"), false), ("s1".to_string(), PathBuf::from("/var/task"), false)];
    let renewal = Renewal {
        seed_hex: "00ff".repeat(16),
        sent: std::time::Duration::new(1_796_598_377, 729_388_964),
        snapshot: "128m-1c-512t".into(),
    };
    let s = restored_script(&shares, 512, &renewal, "echo then\n");
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], "echo 3 > /proc/sys/vm/drop_caches", "before /tmp's disk is mounted");
    let at = |prefix: &str| lines.iter().position(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {s}"));
    assert!(at("share 's0' ro '/usr'") < at("/usr/bin/perl"), "Perl comes from the host's /usr, mounted first");
    assert!(at("$B mkdir -p /tmp") < at("/usr/bin/perl"));
    let perl = words(lines[at("/usr/bin/perl")]);
    assert_eq!(perl[..2], ["/usr/bin/perl", "-e"]);
    assert!(perl[2].contains("ioctl($r, 0x5207, 0)"), "RNDRESEEDCRNG: {}", perl[2]);
    assert!(perl[2].contains("syscall(227, 0,"), "clock_settime: {}", perl[2]);
    assert_eq!(perl[3], renewal.seed_hex);
    assert_eq!(perl[4], "1796598377.729388", "the host's time when sent, to the microsecond");
    assert_eq!(perl[5], "\"$U0\"", "the uptime the guest kept");
    assert!(lines[at("/usr/bin/perl")].ends_with("$B poweroff -f; }"), "a guest it fails in goes: {s}");
    assert_eq!(lines[at("echo '128m-1c-512t'")], "echo '128m-1c-512t' > /stoke/restored");
    assert!(s.ends_with("echo then\n"), "then its command or its wait: {s}");
    assert!(generic_script(&shares, 512).ends_with(&generic_wait()));
    assert_eq!(framed("echo hi\n"), "8\necho hi\n", "its length in bytes, then the script");
}

#[test]
fn the_guest_loads_its_modules_at_boot_and_none_on_demand_after() {
    for needed in ["virtio_blk", "ext4", "crc32c_generic"] {
        assert!(MODULES.contains(&needed), "{needed}: /tmp's disk and file system come with the guest");
    }
    let lines: Vec<&str> = INIT.lines().collect();
    let at = |prefix: &str| lines.iter().position(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}"));
    let loaded = at("while read -r m; do $B insmod");
    let off = at("echo > /proc/sys/kernel/modprobe");
    assert!(loaded < off && off < at(". /stoke/instance"), "autoloading goes before anything of the instance's runs");
}
