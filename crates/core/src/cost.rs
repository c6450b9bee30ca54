//! What an invocation and an execution cost, Lambda-style: billed milliseconds (rounded up to 1 ms) times
//! memory, plus a price per request. Initialisation is billed too (as Lambda bills INIT since 2025), and a
//! prepared instance bills the time it was held for its step.

use serde::{Deserialize, Serialize};

/// Prices, from the server's configuration. Defaults are Lambda's x86 on-demand prices in us-east-1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pricing {
    /// Per GB-second of billed time.
    pub per_gb_second: f64,
    /// Per invocation.
    pub per_request: f64,
}

impl Default for Pricing {
    fn default() -> Self {
        Self { per_gb_second: 0.000_016_666_7, per_request: 0.000_000_2 }
    }
}

/// What one invocation used.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    /// The run, rounded up to a whole millisecond.
    pub billed_ms: u64,
    /// Initialisation of the instance that ran it, when this was that instance's first invocation.
    pub init_ms: u64,
    /// Time an instance was held (reserved) for this invocation before it ran.
    pub held_ms: u64,
    pub memory_mb: u32,
}

impl Usage {
    /// Milliseconds billed in all.
    pub fn total_ms(&self) -> u64 {
        self.billed_ms + self.init_ms + self.held_ms
    }

    pub fn gb_seconds(&self) -> f64 {
        self.total_ms() as f64 / 1000.0 * f64::from(self.memory_mb) / 1024.0
    }
}

/// Rounds a measured duration up to whole billed milliseconds (at least 1 for anything that ran).
pub fn billed_ms(duration_ms: f64) -> u64 {
    if duration_ms <= 0.0 || !duration_ms.is_finite() {
        return 0;
    }
    crate::num::saturate_u64(duration_ms.ceil())
}

/// A REPORT's `Max Memory Used` in MB: the instance's peak, rounded up, never above the function's memory
/// size. While it kills for lack of memory, the kernel may force a few pages past a memory cgroup's limit,
/// and the group's peak counts them; Lambda's figure stops at the function's size.
pub fn max_memory_used_mb(peak_bytes: u64, memory_mb: u32) -> u64 {
    peak_bytes.div_ceil(1024 * 1024).min(u64::from(memory_mb))
}

/// An execution's (or any set of invocations') totals.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bill {
    pub invocations: u64,
    pub billed_ms: u64,
    pub init_ms: u64,
    pub held_ms: u64,
    pub gb_seconds: f64,
    /// In the pricing's currency.
    pub cost: f64,
}

impl Bill {
    pub fn of(usages: &[Usage], pricing: &Pricing) -> Bill {
        let mut bill = Bill::default();
        for u in usages {
            bill.invocations += 1;
            bill.billed_ms += u.billed_ms;
            bill.init_ms += u.init_ms;
            bill.held_ms += u.held_ms;
            bill.gb_seconds += u.gb_seconds();
        }
        bill.cost = bill.gb_seconds * pricing.per_gb_second + bill.invocations as f64 * pricing.per_request;
        bill
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_memory_used_rounds_up_and_stops_at_the_memory_size() {
        assert_eq!(max_memory_used_mb(0, 128), 0);
        assert_eq!(max_memory_used_mb(1, 128), 1);
        assert_eq!(max_memory_used_mb(40 << 20, 128), 40);
        assert_eq!(max_memory_used_mb((40 << 20) + 1, 128), 41);
        assert_eq!(max_memory_used_mb(1024 << 20, 1024), 1024);
        assert_eq!(max_memory_used_mb((1024 << 20) + 4096, 1024), 1024, "forced pages past the limit");
    }

    #[test]
    fn billed_time_rounds_up_to_the_millisecond() {
        assert_eq!(billed_ms(0.2), 1);
        assert_eq!(billed_ms(1.0), 1);
        assert_eq!(billed_ms(1.01), 2);
        assert_eq!(billed_ms(0.0), 0);
        assert_eq!(billed_ms(f64::NAN), 0);
    }

    #[test]
    fn an_execution_bills_runs_inits_and_held_time_by_memory() {
        let pricing = Pricing { per_gb_second: 1.0, per_request: 0.5 };
        let usages = [
            // 1 s at 1024 MB, cold (300 ms init): 1.3 GB-s.
            Usage { billed_ms: 1000, init_ms: 300, held_ms: 0, memory_mb: 1024 },
            // 2 s at 512 MB, held 200 ms before it ran: 1.1 GB-s.
            Usage { billed_ms: 2000, init_ms: 0, held_ms: 200, memory_mb: 512 },
        ];
        let bill = Bill::of(&usages, &pricing);
        assert_eq!((bill.invocations, bill.billed_ms, bill.init_ms, bill.held_ms), (2, 3000, 300, 200));
        assert!((bill.gb_seconds - 2.4).abs() < 1e-9, "{}", bill.gb_seconds);
        assert!((bill.cost - (2.4 + 1.0)).abs() < 1e-9, "{}", bill.cost);
        assert_eq!(Bill::of(&[], &pricing), Bill::default());
    }

    #[test]
    fn default_prices_are_lambdas() {
        // 1M invocations of 1 s at 1 GB: ~$16.67 + $0.20.
        let u = Usage { billed_ms: 1000, memory_mb: 1024, ..Usage::default() };
        let bill = Bill::of(&vec![u; 1_000_000], &Pricing::default());
        assert!((bill.cost - 16.867).abs() < 0.01, "{}", bill.cost);
    }
}
