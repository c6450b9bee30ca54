//! What this machine offers functions: memory and GPUs, read once at start.

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

/// NVIDIA GPUs visible as `/dev/nvidiaN`.
pub fn gpu_count() -> u32 {
    let Ok(entries) = fs::read_dir("/dev") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix("nvidia").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count()
        .try_into()
        .unwrap_or(u32::MAX)
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
