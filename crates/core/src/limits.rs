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

/// Cores per thread serving a node's HTTP (the API and every instance's Runtime API) by default.
pub const CORES_PER_SERVING_THREAD: usize = 4;

/// How many threads serve a node's HTTP by default on a machine of `cores`: one per
/// [`CORES_PER_SERVING_THREAD`] cores, at least one.
///
/// A warm invocation is two HTTP exchanges on the server's side (the caller's, and its instance's `next` and
/// `response`) handed over from one to the other. On one thread the hand-over is a local wake; across threads
/// it is a cross-thread wake-up, and on a two-core node one thread took 18–25 % less server CPU per
/// invocation than two and served 4–20 % more (BENCHMARKS.md, issue 27). The serving threads share the cores
/// with the functions' processes, which do most of a node's work: a raw no-op's invocation costs the server
/// ≈ 50 µs, so one thread serves ≈ 20,000 invocations/s — four cores' worth of real functions. Sandbox starts
/// and the store's work run on threads of their own, not on these.
pub fn default_worker_threads(cores: usize) -> usize {
    cores.div_ceil(CORES_PER_SERVING_THREAD).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_serving_thread_per_four_cores_and_never_none() {
        assert_eq!(default_worker_threads(0), 1);
        assert_eq!(default_worker_threads(1), 1);
        assert_eq!(default_worker_threads(2), 1);
        assert_eq!(default_worker_threads(4), 1);
        assert_eq!(default_worker_threads(5), 2);
        assert_eq!(default_worker_threads(16), 4);
        assert_eq!(default_worker_threads(64), 16);
    }

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
