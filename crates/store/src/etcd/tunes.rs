//! Tunes: `tunes/<account>/<function>/<id>`, so they go with their function.

use stoke_core::{AccountId, FunctionName};

use super::{present, put, EtcdStore};
use crate::{Result, StoreError, TuneRecord, TuneStore};

impl TuneStore for EtcdStore {
    fn put_tune(&self, t: &TuneRecord) -> Result<()> {
        let k = &self.keys;
        let function = k.key(&["functions", t.account.as_str(), t.function.as_str()]);
        let key = k.key(&["tunes", t.account.as_str(), t.function.as_str(), &t.id]);
        if self.commit(vec![present(&function)], vec![put(&key, t)?])? {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("function {}", t.function)))
        }
    }

    fn get_tune(&self, account: &AccountId, id: &str) -> Result<Option<TuneRecord>> {
        let (rows, _) = self.list::<TuneRecord>(&self.keys.under(&["tunes", account.as_str()]))?;
        Ok(rows.into_iter().map(|r| r.value).find(|t| t.id == id))
    }

    fn latest_tune(&self, account: &AccountId, function: &FunctionName) -> Result<Option<TuneRecord>> {
        let (rows, _) = self.list::<TuneRecord>(&self.keys.under(&["tunes", account.as_str(), function.as_str()]))?;
        Ok(rows.into_iter().map(|r| r.value).max_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id))))
    }

    fn fail_running_tunes(&self, error: &str, now_ms: i64) -> Result<usize> {
        let (rows, _) = self.list::<TuneRecord>(&self.keys.under(&["tunes"]))?;
        let mut failed = 0;
        for row in rows.into_iter().filter(|r| r.value.state == "running") {
            let mut t = row.value;
            t.state = "failed".into();
            t.error = Some(error.to_string());
            t.finished_ms = Some(now_ms);
            // A tune another node finished meanwhile keeps its result.
            if self.commit(vec![super::unchanged(&row.key, row.mod_revision)], vec![put(&row.key, &t)?])? {
                failed += 1;
            }
        }
        Ok(failed)
    }
}
