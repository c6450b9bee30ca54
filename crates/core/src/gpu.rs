//! The node's GPU ledger (seed 002's `GPUNum`, `GPUMemorySize`, `GPUPercentage`): which GPUs an instance
//! gets, and what of each one is reserved. Pure: the scheduler asks it before starting an instance of a GPU
//! function and tells it when the instance is gone.
//!
//! What a function's settings mean:
//! - `gpu_count = n` alone (no `gpu_memory_mb`, no `gpu_percentage` or 100): `n` whole GPUs, nobody else's
//!   instance on them while it lives.
//! - `gpu_count = 1` with `gpu_memory_mb` and/or `gpu_percentage` below 100: a **share** of one GPU — that
//!   much memory and that percentage of its compute, enforced by the GPU's MPS daemon. A dimension left out
//!   follows the other in proportion: 50 % of an 80 GB GPU reserves 40 GB, 20 GB of it reserves 25 %.
//! - Shares never add up past a GPU's memory or 100 % (no overcommit), and pack onto the GPU that already
//!   holds the most before another one is opened, so whole GPUs stay free for functions that need them.

use std::collections::BTreeMap;

use crate::config::{FunctionConfig, GPU_MEMORY_STEP_MB};

/// One GPU as the ledger knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuCapacity {
    /// The node's index for it (NVML's, as `nvidia-smi` shows).
    pub index: u32,
    /// Its memory, in MB.
    pub memory_mb: u64,
}

/// What a function asks of the node's GPUs, per instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuRequest {
    /// This many whole GPUs.
    Whole(u32),
    /// A share of one GPU: memory in MB and percent of its compute; a missing one follows the other.
    Share { memory_mb: Option<u64>, percentage: Option<u32> },
}

impl GpuRequest {
    /// What `config` asks for; `None` for a function without a GPU.
    pub fn of(config: &FunctionConfig) -> Option<GpuRequest> {
        let memory = (config.gpu_memory_mb > 0).then_some(u64::from(config.gpu_memory_mb));
        let percentage = config.gpu_percentage.filter(|p| *p < 100);
        match config.gpu_count {
            0 => None,
            1 if memory.is_some() || percentage.is_some() => Some(GpuRequest::Share { memory_mb: memory, percentage }),
            n => Some(GpuRequest::Whole(n)),
        }
    }

    /// The memory and percentage this request reserves on a GPU of `memory_mb`, or `None` when it does not
    /// fit even an empty one.
    fn share_on(self, gpu_memory_mb: u64) -> Option<(u64, u32)> {
        match self {
            GpuRequest::Whole(_) => Some((gpu_memory_mb, 100)),
            // A GPU of unknown size (counted from its device nodes): what is asked, unchecked.
            GpuRequest::Share { memory_mb, percentage } if gpu_memory_mb == 0 => {
                Some((memory_mb.unwrap_or(0), percentage.unwrap_or(100)))
            }
            GpuRequest::Share { memory_mb, percentage } => {
                let (memory, percentage) = match (memory_mb, percentage) {
                    (Some(m), Some(p)) => (m, p),
                    (Some(m), None) => (m, percent_of(m, gpu_memory_mb)),
                    (None, Some(p)) => (memory_for(p, gpu_memory_mb), p),
                    (None, None) => (gpu_memory_mb, 100),
                };
                (memory <= gpu_memory_mb && (1..=100).contains(&percentage)).then_some((memory, percentage))
            }
        }
    }

    /// The request in words, for refusals.
    pub fn describe(self) -> String {
        match self {
            GpuRequest::Whole(1) => "a whole GPU".to_string(),
            GpuRequest::Whole(n) => format!("{n} whole GPUs"),
            GpuRequest::Share { memory_mb, percentage } => {
                let mut parts = Vec::new();
                if let Some(p) = percentage {
                    parts.push(format!("{p}%"));
                }
                if let Some(m) = memory_mb {
                    parts.push(format!("{m} MB"));
                }
                format!("a share of one GPU ({})", parts.join(", "))
            }
        }
    }
}

/// The percentage of a GPU's compute that goes with `memory_mb` of its memory (rounded up, at least 1).
fn percent_of(memory_mb: u64, gpu_memory_mb: u64) -> u32 {
    if gpu_memory_mb == 0 {
        return 100;
    }
    let p = (memory_mb * 100).div_ceil(gpu_memory_mb).clamp(1, 100);
    u32::try_from(p).unwrap_or(100)
}

/// The memory that goes with `percentage` of a GPU's compute: that share of its memory, rounded down to the
/// 256 MB step, at least one step.
fn memory_for(percentage: u32, gpu_memory_mb: u64) -> u64 {
    let step = u64::from(GPU_MEMORY_STEP_MB);
    let share = gpu_memory_mb * u64::from(percentage) / 100;
    (share / step * step).max(step).min(gpu_memory_mb)
}

/// One GPU of a grant: what the instance may use of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantedGpu {
    pub index: u32,
    /// The GPU's memory the instance may allocate, in MB (all of it for a whole GPU).
    pub memory_mb: u64,
    /// Percent of the GPU's compute (100 for a whole GPU).
    pub percentage: u32,
    /// Whether the instance has the GPU to itself.
    pub whole: bool,
}

/// Why an instance got no GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuRefusal {
    /// The node could never give it: too few GPUs, or none large enough. Not worth retrying here.
    NeverFits(String),
    /// Instances hold what it needs now; retry when one ends.
    Busy(String),
}

impl GpuRefusal {
    pub fn message(&self) -> &str {
        match self {
            GpuRefusal::NeverFits(m) | GpuRefusal::Busy(m) => m,
        }
    }
}

/// What is reserved on one GPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Slot {
    reserved_mb: u64,
    reserved_percentage: u32,
    /// Holder (an instance's id) → what it reserved here.
    holders: BTreeMap<u64, GrantedGpu>,
}

/// One GPU's use, as `GET /v1/node` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuUse {
    pub index: u32,
    pub memory_mb: u64,
    pub reserved_mb: u64,
    pub reserved_percentage: u32,
    /// Instances holding it whole.
    pub whole: usize,
    /// Instances holding a share of it.
    pub shares: usize,
}

/// Every GPU of the node and what instances hold of each. Never lends more than a GPU has.
#[derive(Debug, Clone, Default)]
pub struct GpuLedger {
    gpus: Vec<(GpuCapacity, Slot)>,
}

impl GpuLedger {
    pub fn new(gpus: &[GpuCapacity]) -> Self {
        GpuLedger { gpus: gpus.iter().map(|g| (*g, Slot::default())).collect() }
    }

    /// The node's GPUs in words: "2 GPUs (0: 81559 MB, 1: 81559 MB)", "0 GPUs".
    pub fn describe(&self) -> String {
        let list: Vec<String> = self.gpus.iter().map(|(g, _)| format!("{}: {} MB", g.index, g.memory_mb)).collect();
        let n = self.gpus.len();
        let noun = if n == 1 { "GPU" } else { "GPUs" };
        if list.is_empty() {
            format!("{n} {noun}")
        } else {
            format!("{n} {noun} ({})", list.join(", "))
        }
    }

    /// Reserves what `request` needs for holder `id` (an instance), or says why it cannot.
    pub fn assign(&mut self, id: u64, request: GpuRequest) -> Result<Vec<GrantedGpu>, GpuRefusal> {
        let granted = match request {
            GpuRequest::Whole(n) => self.pick_whole(n, request)?,
            GpuRequest::Share { .. } => vec![self.pick_share(request)?],
        };
        for part in &granted {
            if let Some((_, slot)) = self.gpus.iter_mut().find(|(g, _)| g.index == part.index) {
                slot.reserved_mb += part.memory_mb;
                slot.reserved_percentage += part.percentage;
                slot.holders.insert(id, *part);
            }
        }
        Ok(granted)
    }

    fn pick_whole(&self, n: u32, request: GpuRequest) -> Result<Vec<GrantedGpu>, GpuRefusal> {
        let have = u32::try_from(self.gpus.len()).unwrap_or(u32::MAX);
        if n > have {
            return Err(GpuRefusal::NeverFits(format!(
                "the function needs {} and this node has {}",
                request.describe(),
                self.describe()
            )));
        }
        let free: Vec<GrantedGpu> = self
            .gpus
            .iter()
            .filter(|(_, s)| s.holders.is_empty())
            .map(|(g, _)| GrantedGpu { index: g.index, memory_mb: g.memory_mb, percentage: 100, whole: true })
            .take(n as usize)
            .collect();
        if free.len() < n as usize {
            return Err(GpuRefusal::Busy(format!(
                "the function needs {} and {} of this node's {} free ({})",
                request.describe(),
                free.len(),
                self.describe(),
                self.use_in_words()
            )));
        }
        Ok(free)
    }

    fn pick_share(&self, request: GpuRequest) -> Result<GrantedGpu, GpuRefusal> {
        let fits_empty = self.gpus.iter().any(|(g, _)| request.share_on(g.memory_mb).is_some());
        if !fits_empty {
            return Err(GpuRefusal::NeverFits(format!(
                "the function needs {} and no GPU of this node is that large: it has {}",
                request.describe(),
                self.describe()
            )));
        }
        // Pack: the GPU that already holds the most (by compute, then memory) and still has room.
        let best = self
            .gpus
            .iter()
            .filter(|(_, s)| !s.holders.values().any(|h| h.whole))
            .filter_map(|(g, s)| {
                let (memory, percentage) = request.share_on(g.memory_mb)?;
                let memory_room = g.memory_mb == 0 || s.reserved_mb + memory <= g.memory_mb;
                let room = memory_room && s.reserved_percentage + percentage <= 100;
                room.then_some((g, s, memory, percentage))
            })
            .max_by(|a, b| {
                (a.1.reserved_percentage, a.1.reserved_mb, std::cmp::Reverse(a.0.index)).cmp(&(
                    b.1.reserved_percentage,
                    b.1.reserved_mb,
                    std::cmp::Reverse(b.0.index),
                ))
            });
        match best {
            Some((g, _, memory_mb, percentage)) => {
                Ok(GrantedGpu { index: g.index, memory_mb, percentage, whole: false })
            }
            None => Err(GpuRefusal::Busy(format!(
                "the function needs {} and no GPU has that much free now: {}",
                request.describe(),
                self.use_in_words()
            ))),
        }
    }

    /// Gives back what holder `id` reserved (nothing when it holds nothing).
    pub fn release(&mut self, id: u64) {
        for (_, slot) in &mut self.gpus {
            if let Some(part) = slot.holders.remove(&id) {
                slot.reserved_mb = slot.reserved_mb.saturating_sub(part.memory_mb);
                slot.reserved_percentage = slot.reserved_percentage.saturating_sub(part.percentage);
            }
        }
    }

    /// Each GPU's use.
    pub fn usage(&self) -> Vec<GpuUse> {
        self.gpus
            .iter()
            .map(|(g, s)| GpuUse {
                index: g.index,
                memory_mb: g.memory_mb,
                reserved_mb: s.reserved_mb,
                reserved_percentage: s.reserved_percentage,
                whole: s.holders.values().filter(|h| h.whole).count(),
                shares: s.holders.values().filter(|h| !h.whole).count(),
            })
            .collect()
    }

    fn use_in_words(&self) -> String {
        let parts: Vec<String> = self
            .gpus
            .iter()
            .map(|(g, s)| {
                if s.holders.values().any(|h| h.whole) {
                    format!("GPU {} is held whole", g.index)
                } else {
                    format!(
                        "GPU {} has {}% and {} MB free",
                        g.index,
                        100 - s.reserved_percentage.min(100),
                        g.memory_mb.saturating_sub(s.reserved_mb)
                    )
                }
            })
            .collect();
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H100: u64 = 81_559;

    fn ledger(n: u32) -> GpuLedger {
        GpuLedger::new(&(0..n).map(|index| GpuCapacity { index, memory_mb: H100 }).collect::<Vec<_>>())
    }

    fn share(memory_mb: Option<u64>, percentage: Option<u32>) -> GpuRequest {
        GpuRequest::Share { memory_mb, percentage }
    }

    #[test]
    fn a_functions_settings_become_a_request() {
        let patch = crate::ConfigPatch {
            runtime: Some("python3.12".into()),
            handler: Some("app.h".into()),
            ..Default::default()
        };
        let mut c = patch.into_new_config().unwrap();
        assert_eq!(GpuRequest::of(&c), None);
        c.gpu_count = 2;
        assert_eq!(GpuRequest::of(&c), Some(GpuRequest::Whole(2)));
        c.gpu_count = 1;
        c.gpu_percentage = Some(100);
        assert_eq!(GpuRequest::of(&c), Some(GpuRequest::Whole(1)), "100 % of one GPU is the GPU");
        c.gpu_percentage = Some(50);
        assert_eq!(GpuRequest::of(&c), Some(share(None, Some(50))));
        c.gpu_memory_mb = 4096;
        assert_eq!(GpuRequest::of(&c), Some(share(Some(4096), Some(50))));
        c.gpu_percentage = None;
        assert_eq!(GpuRequest::of(&c), Some(share(Some(4096), None)));
    }

    #[test]
    fn a_missing_dimension_follows_the_other_in_proportion() {
        assert_eq!(share(None, Some(50)).share_on(80_000), Some((39_936, 50)), "40 GB rounded down to 256 MB");
        assert_eq!(share(Some(20_000), None).share_on(80_000), Some((20_000, 25)));
        assert_eq!(share(Some(256), None).share_on(80_000), Some((256, 1)), "at least 1 %");
        assert_eq!(share(None, Some(1)).share_on(1_000), Some((256, 1)), "at least one 256 MB step");
        assert_eq!(share(Some(90_000), None).share_on(80_000), None, "larger than the GPU");
        assert_eq!(share(Some(4096), None).share_on(0), Some((4096, 100)), "a GPU of unknown size");
    }

    #[test]
    fn whole_gpus_are_exclusive_and_come_back_on_release() {
        let mut l = ledger(2);
        let a = l.assign(1, GpuRequest::Whole(1)).unwrap();
        assert_eq!(a, [GrantedGpu { index: 0, memory_mb: H100, percentage: 100, whole: true }]);
        let b = l.assign(2, GpuRequest::Whole(1)).unwrap();
        assert_eq!(b[0].index, 1);
        let Err(GpuRefusal::Busy(why)) = l.assign(3, GpuRequest::Whole(1)) else { panic!("overcommitted") };
        assert!(why.contains("GPU 0 is held whole") && why.contains("0 of this node's 2 GPUs"), "{why}");
        assert!(l.assign(3, share(None, Some(10))).is_err(), "no share on a GPU held whole");
        l.release(1);
        assert_eq!(l.assign(3, GpuRequest::Whole(1)).unwrap()[0].index, 0);
        l.release(99); // holds nothing: no effect
        assert_eq!(l.usage().iter().map(|u| u.whole).sum::<usize>(), 2);
    }

    #[test]
    fn more_gpus_than_the_node_has_never_fit_and_say_what_it_has() {
        let mut none = ledger(0);
        let Err(GpuRefusal::NeverFits(why)) = none.assign(1, GpuRequest::Whole(1)) else { panic!() };
        assert!(why.contains("this node has 0 GPUs"), "{why}");
        let mut two = ledger(2);
        let Err(GpuRefusal::NeverFits(why)) = two.assign(1, GpuRequest::Whole(3)) else { panic!() };
        assert!(why.contains("3 whole GPUs") && why.contains("2 GPUs (0: 81559 MB, 1: 81559 MB)"), "{why}");
        let Err(GpuRefusal::NeverFits(why)) = two.assign(1, share(Some(100_000), None)) else { panic!() };
        assert!(why.contains("no GPU of this node is that large"), "{why}");
    }

    #[test]
    fn shares_pack_onto_one_gpu_before_opening_another() {
        let mut l = ledger(2);
        for id in 0..4 {
            let g = l.assign(id, share(None, Some(25))).unwrap();
            assert_eq!(g[0].index, 0, "share {id} packs onto GPU 0");
            assert!(!g[0].whole);
        }
        assert_eq!(l.usage()[0].reserved_percentage, 100);
        assert_eq!(l.assign(4, share(None, Some(25))).unwrap()[0].index, 1, "GPU 0 is full");
        // A whole GPU is no longer free: GPU 0 is full of shares, GPU 1 holds one.
        assert!(matches!(l.assign(5, GpuRequest::Whole(1)), Err(GpuRefusal::Busy(_))));
        l.release(4);
        assert_eq!(l.assign(5, GpuRequest::Whole(1)).unwrap()[0].index, 1);
    }

    #[test]
    fn shares_never_overcommit_memory_or_compute() {
        let mut l = GpuLedger::new(&[GpuCapacity { index: 0, memory_mb: 8_192 }]);
        l.assign(1, share(Some(6_144), Some(10))).unwrap();
        let Err(GpuRefusal::Busy(why)) = l.assign(2, share(Some(4_096), Some(10))) else { panic!("memory") };
        assert!(why.contains("GPU 0 has 90% and 2048 MB free"), "{why}");
        l.assign(2, share(Some(2_048), Some(80))).unwrap();
        assert!(l.assign(3, share(Some(256), Some(20))).is_err(), "compute is all reserved (10 + 80 + 20)");
        assert_eq!(
            l.usage()[0],
            GpuUse { index: 0, memory_mb: 8_192, reserved_mb: 8_192, reserved_percentage: 90, whole: 0, shares: 2 }
        );
        l.release(1);
        l.release(2);
        assert_eq!(l.usage()[0].reserved_mb, 0);
        assert_eq!(l.usage()[0].reserved_percentage, 0);
    }

    #[test]
    fn a_share_prefers_the_fuller_gpu_that_still_has_room() {
        let mut l = ledger(3);
        l.assign(1, GpuRequest::Whole(1)).unwrap(); // GPU 0 whole
        l.assign(2, share(None, Some(30))).unwrap(); // GPU 1
        l.assign(3, share(None, Some(60))).unwrap(); // GPU 1 (90 %)
                                                     // 20 % does not fit GPU 1 any more; GPU 2 is opened.
        assert_eq!(l.assign(4, share(None, Some(20))).unwrap()[0].index, 2);
        // 10 % fits GPU 1, the fuller one.
        assert_eq!(l.assign(5, share(None, Some(10))).unwrap()[0].index, 1);
    }
}
