//! Request ids: UUID-shaped, unique per server run, cheap (one random seed, then a counter).

use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) struct RequestIds {
    seed: u64,
    counter: AtomicU64,
}

impl RequestIds {
    pub fn new() -> Self {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        Self { seed: u64::from_le_bytes(b), counter: AtomicU64::new(0) }
    }

    pub fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let hi = self.seed;
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            (hi >> 32) as u32,
            ((hi >> 16) & 0xffff) as u16,
            (hi & 0xfff) as u16,
            0x8000 | ((n >> 48) as u16 & 0x3fff),
            n & 0xffff_ffff_ffff
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique_and_uuid_shaped() {
        let ids = super::RequestIds::new();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.chars().filter(|c| *c == '-').count(), 4);
        assert_eq!(&a[14..15], "4");
    }
}
