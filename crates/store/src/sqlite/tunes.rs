//! `stoke tune` runs.

use rusqlite::{params, OptionalExtension, Row};
use stoke_core::{AccountId, FunctionName};

use super::{account_id, function_name, SqliteStore};
use crate::{Result, StoreError, TuneRecord, TuneStore};

const TUNE_COLS: &str = "id, account_id, function_name, state, request, result, error, created_ms, finished_ms";

fn tune_row(r: &Row<'_>) -> rusqlite::Result<TuneRecord> {
    Ok(TuneRecord {
        id: r.get("id")?,
        account: account_id(r.get("account_id")?)?,
        function: function_name(r.get("function_name")?)?,
        state: r.get("state")?,
        request: r.get("request")?,
        result: r.get("result")?,
        error: r.get("error")?,
        created_ms: r.get("created_ms")?,
        finished_ms: r.get("finished_ms")?,
    })
}

impl TuneStore for SqliteStore {
    fn put_tune(&self, t: &TuneRecord) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &format!("INSERT OR REPLACE INTO tunes ({TUNE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![
                    t.id,
                    t.account.as_str(),
                    t.function.as_str(),
                    t.state,
                    t.request,
                    t.result,
                    t.error,
                    t.created_ms,
                    t.finished_ms
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    StoreError::NotFound(format!("function {}", t.function))
                }
                other => other.into(),
            })?;
            Ok(())
        })
    }

    fn get_tune(&self, account: &AccountId, id: &str) -> Result<Option<TuneRecord>> {
        let conn = self.lock();
        let sql = format!("SELECT {TUNE_COLS} FROM tunes WHERE account_id = ?1 AND id = ?2");
        Ok(conn.query_row(&sql, params![account.as_str(), id], tune_row).optional()?)
    }

    fn latest_tune(&self, account: &AccountId, function: &FunctionName) -> Result<Option<TuneRecord>> {
        let conn = self.lock();
        let sql = format!(
            "SELECT {TUNE_COLS} FROM tunes WHERE account_id = ?1 AND function_name = ?2
             ORDER BY created_ms DESC, id DESC LIMIT 1"
        );
        Ok(conn.query_row(&sql, params![account.as_str(), function.as_str()], tune_row).optional()?)
    }

    fn fail_running_tunes(&self, error: &str, now_ms: i64) -> Result<usize> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE tunes SET state = 'failed', error = ?1, finished_ms = ?2 WHERE state = 'running'",
                params![error, now_ms],
            )?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::sqlite::fixtures::{account, function, store};

    #[test]
    fn tunes_belong_to_their_function_and_a_restart_fails_the_running_ones() {
        let (_d, s) = store();
        let a = account(&s, 1);
        s.insert_function(&function(&a, "f")).unwrap();
        let f = FunctionName::parse("f").unwrap();
        let tune = |id: &str, at| TuneRecord {
            id: id.into(),
            account: a.clone(),
            function: f.clone(),
            state: "running".into(),
            request: "{}".into(),
            result: None,
            error: None,
            created_ms: at,
            finished_ms: None,
        };
        s.put_tune(&tune("t1", 1)).unwrap();
        let mut done = tune("t1", 1);
        (done.state, done.result, done.finished_ms) = ("succeeded".into(), Some("{\"r\":1}".into()), Some(5));
        s.put_tune(&done).unwrap();
        s.put_tune(&tune("t2", 2)).unwrap();
        assert_eq!(s.get_tune(&a, "t1").unwrap(), Some(done));
        assert_eq!(s.get_tune(&account(&s, 2), "t1").unwrap(), None, "another account's tune is not found");
        assert_eq!(s.latest_tune(&a, &f).unwrap().unwrap().id, "t2");
        assert_eq!(s.fail_running_tunes("the server restarted", 9).unwrap(), 1);
        let t2 = s.get_tune(&a, "t2").unwrap().unwrap();
        assert_eq!(
            (t2.state.as_str(), t2.error.as_deref(), t2.finished_ms),
            ("failed", Some("the server restarted"), Some(9))
        );
        let mut orphan = tune("t3", 3);
        orphan.function = FunctionName::parse("gone").unwrap();
        assert!(matches!(s.put_tune(&orphan), Err(StoreError::NotFound(_))));
        s.delete_function(&a, &f).unwrap();
        assert_eq!(s.get_tune(&a, "t1").unwrap(), None, "a function's tunes go with it");
    }

    #[test]
    fn the_latest_tune_is_the_newest_of_that_function() {
        let (_d, s) = store();
        let a = account(&s, 1);
        let (f, g) = (FunctionName::parse("f").unwrap(), FunctionName::parse("g").unwrap());
        s.insert_function(&function(&a, "f")).unwrap();
        s.insert_function(&function(&a, "g")).unwrap();
        assert_eq!(s.latest_tune(&a, &f).unwrap(), None);
        let tune = |id: &str, function: &FunctionName, at| TuneRecord {
            id: id.into(),
            account: a.clone(),
            function: function.clone(),
            state: "succeeded".into(),
            request: "{\"sizes\":[128,256]}".into(),
            result: Some("{}".into()),
            error: None,
            created_ms: at,
            finished_ms: Some(at + 1),
        };
        s.put_tune(&tune("t1", &f, 5)).unwrap();
        s.put_tune(&tune("t3", &f, 5)).unwrap();
        s.put_tune(&tune("t2", &f, 4)).unwrap();
        s.put_tune(&tune("t9", &g, 9)).unwrap();
        assert_eq!(s.latest_tune(&a, &f).unwrap(), Some(tune("t3", &f, 5)), "newest, then the higher id");
        assert_eq!(s.latest_tune(&a, &g).unwrap().unwrap().id, "t9");
        assert_eq!(s.latest_tune(&account(&s, 2), &f).unwrap(), None, "another account's function");
        assert_eq!(s.fail_running_tunes("restarted", 7).unwrap(), 0, "none was running");
        assert_eq!(s.get_tune(&a, "t1").unwrap().unwrap().state, "succeeded");
    }
}
