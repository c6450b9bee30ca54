//! What an instance's memory size buys it besides memory: its share of the CPU. As on Lambda, CPU is
//! proportional to memory, one full vCPU at 1,769 MB.

/// Lambda's limit on a synchronous invocation's event and on its response (6 MiB): what the invoke APIs
/// take, what an HTTP trigger passes on, and what a runtime may answer.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// Memory at which an instance gets one whole vCPU.
pub const MB_PER_VCPU: u32 = 1769;

/// An instance's share of the CPU, in thousandths of one vCPU (1000 = one core), never below 1.
pub fn cpu_millis(memory_mb: u32) -> u32 {
    let millis = u64::from(memory_mb) * 1000 / u64::from(MB_PER_VCPU);
    u32::try_from(millis).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_follows_memory() {
        assert_eq!(cpu_millis(1769), 1000);
        assert_eq!(cpu_millis(128), 72);
        assert_eq!(cpu_millis(3538), 2000);
        assert_eq!(cpu_millis(10_240), 5788);
        assert_eq!(cpu_millis(0), 1);
        assert!(cpu_millis(256) > cpu_millis(128));
    }
}
