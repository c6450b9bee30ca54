//! What this machine offers functions: memory, read once at start, and its GPUs in words.

use std::fs;

/// Total memory in MB from `/proc/meminfo`, if readable.
pub fn total_memory_mb() -> Option<u32> {
    let info = fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total_mb(&info)
}

fn parse_mem_total_mb(meminfo: &str) -> Option<u32> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    u32::try_from(kb / 1024).ok()
}

/// The node's GPUs for the start-up message: one line each, then how they were found and whether shares
/// are enforced (and if not, why: the sandbox shares the host's devices, `--gpu-mps false`, or no MPS).
pub fn describe_gpus(host: &stoke_sandbox::gpu::GpuHost, isolated: bool, mps_asked: bool) -> Vec<String> {
    let mut lines: Vec<String> = host
        .devices
        .iter()
        .map(|d| {
            let memory = if d.memory_mb > 0 { format!("{} MB", d.memory_mb) } else { "memory unknown".into() };
            let uuid = if d.uuid.is_empty() { String::new() } else { format!(", {}", d.uuid) };
            format!("GPU {}: {} ({memory}{uuid}, /dev/nvidia{})", d.index, d.name, d.minor)
        })
        .collect();
    if !host.devices.is_empty() {
        lines.push(format!(
            "found through {}; shares (gpu_percentage, gpu_memory_mb) {}",
            host.source.as_str(),
            match (host.enforces_shares(), isolated, mps_asked) {
                (true, _, _) => "enforced by one MPS daemon per GPU",
                (false, false, _) => "placed but not enforced (this sandbox shares the host's devices)",
                (false, true, false) => "placed but not enforced (--gpu-mps false)",
                (false, true, true) => "placed but not enforced (nvidia-cuda-mps-control is not installed)",
            }
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_start_up_lines_say_each_gpu_and_why_shares_are_not_enforced() {
        use stoke_sandbox::gpu::{GpuDevice, GpuHost, HostFiles};
        let gpu = GpuDevice { index: 0, uuid: "GPU-1".into(), name: "NVIDIA H100".into(), memory_mb: 81_559, minor: 0 };
        let host = GpuHost::with_devices(vec![gpu], HostFiles::default());
        let lines = super::describe_gpus(&host, false, true);
        assert_eq!(lines[0], "GPU 0: NVIDIA H100 (81559 MB, GPU-1, /dev/nvidia0)");
        assert!(lines[1].contains("this sandbox shares the host's devices"), "{lines:?}");
        assert!(super::describe_gpus(&host, true, false)[1].contains("--gpu-mps false"));
        assert!(super::describe_gpus(&host, true, true)[1].contains("nvidia-cuda-mps-control is not installed"));
        let none = GpuHost::with_devices(Vec::new(), HostFiles::default());
        assert!(super::describe_gpus(&none, true, true).is_empty(), "no GPU, no lines");
    }

    #[test]
    fn parses_meminfo() {
        let info = "MemTotal:       24576000 kB\nMemFree:        1000 kB\n";
        assert_eq!(super::parse_mem_total_mb(info), Some(24_000));
        assert_eq!(super::parse_mem_total_mb("nothing"), None);
    }
}
