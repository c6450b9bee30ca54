//! Statistics: `stats/<kind>/<key>`.

use super::{put, EtcdStore};
use crate::{Result, StatRecord, StatStore};

impl StatStore for EtcdStore {
    fn put_stats(&self, stats: &[StatRecord]) -> Result<()> {
        // One transaction per batch of etcd's size, each whole; a batch is replaced value by value, so a
        // split batch never leaves a record half-written.
        // etcd refuses a transaction that writes one key twice: the last record of a key is the one kept.
        let mut last: std::collections::BTreeMap<(&str, &str), &StatRecord> = std::collections::BTreeMap::new();
        for s in stats {
            last.insert((&s.kind, &s.key), s);
        }
        let unique: Vec<&StatRecord> = last.into_values().collect();
        for chunk in unique.chunks(super::MAX_TXN_OPS) {
            let ops = chunk
                .iter()
                .map(|s| put(&self.keys.key(&["stats", &s.kind, &s.key]), s))
                .collect::<Result<Vec<_>>>()?;
            self.commit(Vec::new(), ops)?;
        }
        Ok(())
    }

    fn all_stats(&self) -> Result<Vec<StatRecord>> {
        let (rows, _) = self.list::<StatRecord>(&self.keys.under(&["stats"]))?;
        let mut out: Vec<_> = rows.into_iter().map(|r| r.value).collect();
        out.sort_by(|a, b| (&a.kind, &a.key).cmp(&(&b.kind, &b.key)));
        Ok(out)
    }
}
