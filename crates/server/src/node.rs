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
/// are enforced.
pub fn describe_gpus(host: &stoke_sandbox::gpu::GpuHost) -> Vec<String> {
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
            if host.enforces_shares() {
                "enforced by one MPS daemon per GPU"
            } else {
                "placed but not enforced (no nvidia-cuda-mps-control, or --gpu-mps false)"
            }
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_meminfo() {
        let info = "MemTotal:       24576000 kB\nMemFree:        1000 kB\n";
        assert_eq!(super::parse_mem_total_mb(info), Some(24_000));
        assert_eq!(super::parse_mem_total_mb("nothing"), None);
    }
}
