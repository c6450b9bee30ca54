//! Learned statistics.

use rusqlite::params;

use super::SqliteStore;
use crate::{Result, StatRecord, StatStore};

impl StatStore for SqliteStore {
    fn put_stats(&self, stats: &[StatRecord]) -> Result<()> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO stats (kind, key, data, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, key) DO UPDATE SET data = excluded.data, updated_ms = excluded.updated_ms",
            )?;
            for s in stats {
                stmt.execute(params![s.kind, s.key, s.data, s.updated_ms])?;
            }
            Ok(())
        })
    }

    fn all_stats(&self) -> Result<Vec<StatRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT kind, key, data, updated_ms FROM stats ORDER BY kind, key")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StatRecord {
                    kind: r.get("kind")?,
                    key: r.get("key")?,
                    data: r.get("data")?,
                    updated_ms: r.get("updated_ms")?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::fixtures::store;

    #[test]
    fn statistics_are_replaced_by_kind_and_key() {
        let (_d, s) = store();
        let stat = |kind: &str, key: &str, data: &str, at| StatRecord {
            kind: kind.into(),
            key: key.into(),
            data: data.into(),
            updated_ms: at,
        };
        s.put_stats(&[stat("function", "a/f/$LATEST", "[1]", 1), stat("choice", "a/w/C", "{}", 1)]).unwrap();
        s.put_stats(&[stat("function", "a/f/$LATEST", "[1,2]", 2)]).unwrap();
        let all = s.all_stats().unwrap();
        assert_eq!(all, vec![stat("choice", "a/w/C", "{}", 1), stat("function", "a/f/$LATEST", "[1,2]", 2)]);
    }

    #[test]
    fn statistics_start_empty_and_a_batch_is_written_whole() {
        let (_d, s) = store();
        assert!(s.all_stats().unwrap().is_empty());
        let stat = |key: &str| StatRecord { kind: "init".into(), key: key.into(), data: "{}".into(), updated_ms: 3 };
        let batch: Vec<_> = ["c", "a", "b"].into_iter().map(stat).collect();
        s.put_stats(&batch).unwrap();
        assert_eq!(s.all_stats().unwrap(), [stat("a"), stat("b"), stat("c")], "ordered by kind, then key");
    }
}
