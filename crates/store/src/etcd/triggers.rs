//! HTTP triggers: `triggers/<account>/<function>/<id>` (so they go with their function), `trigger-ids/<id>`
//! (where a trigger is, by id) and `trigger-routes/<account>/<shape>` (a route's shape is unique per account).

use stoke_core::AccountId;

use super::{absent, delete, present, put, unchanged, EtcdStore};
use crate::{Result, StoreError, TriggerKind, TriggerRecord, TriggerStore};

impl EtcdStore {
    /// The keys besides its own that a trigger owns: its id's, and its route shape's.
    pub(super) fn trigger_index_keys(&self, t: &TriggerRecord) -> Vec<String> {
        let mut keys = vec![self.keys.key(&["trigger-ids", &t.id])];
        if let TriggerKind::Route { shape, .. } = &t.kind {
            keys.push(self.keys.key(&["trigger-routes", t.account.as_str(), shape]));
        }
        keys
    }

    fn trigger_key(&self, t: &TriggerRecord) -> String {
        self.keys.key(&["triggers", t.account.as_str(), t.function.as_str(), &t.id])
    }

    /// The trigger with `id`, with its key and revision.
    fn find_trigger(&self, id: &str) -> Result<Option<super::Read<TriggerRecord>>> {
        let Some(at) = self.get::<String>(&self.keys.key(&["trigger-ids", id]))? else {
            return Ok(None);
        };
        self.get::<TriggerRecord>(&at.value)
    }
}

impl TriggerStore for EtcdStore {
    fn insert_trigger(&self, t: &TriggerRecord) -> Result<()> {
        let key = self.trigger_key(t);
        let function = self.keys.key(&["functions", t.account.as_str(), t.function.as_str()]);
        let index = self.trigger_index_keys(t);
        let mut when = vec![present(&function), absent(&key)];
        when.extend(index.iter().map(|k| absent(k)));
        let mut ops = vec![put(&key, t)?, put(&index[0], &key)?];
        if let Some(route) = index.get(1) {
            ops.push(put(route, &t.id)?);
        }
        if self.commit(when, ops)? {
            return Ok(());
        }
        if self.get::<serde_json::Value>(&function)?.is_none() {
            return Err(StoreError::NotFound(format!("function {}", t.function)));
        }
        let what = match &t.kind {
            TriggerKind::Route { key, .. } => key.as_str(),
            TriggerKind::Url => t.id.as_str(),
        };
        Err(StoreError::Conflict(format!("route {what}")))
    }

    fn get_trigger(&self, id: &str) -> Result<Option<TriggerRecord>> {
        Ok(self.find_trigger(id)?.map(|r| r.value))
    }

    fn list_triggers(&self, account: Option<&AccountId>) -> Result<Vec<TriggerRecord>> {
        let prefix = match account {
            Some(a) => self.keys.under(&["triggers", a.as_str()]),
            None => self.keys.under(&["triggers"]),
        };
        let (rows, _) = self.list::<TriggerRecord>(&prefix)?;
        let mut out: Vec<_> = rows.into_iter().map(|r| r.value).collect();
        out.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(out)
    }

    fn update_trigger(&self, t: &TriggerRecord) -> Result<()> {
        let what = || format!("trigger {}", t.id);
        self.retry(what, || {
            let Some(stored) = self.find_trigger(&t.id)?.filter(|r| r.value.account == t.account) else {
                return Err(StoreError::NotFound(what()));
            };
            let mut next = stored.value;
            next.auth = t.auth;
            next.cors = t.cors.clone();
            Ok(self
                .commit(vec![unchanged(&stored.key, stored.mod_revision)], vec![put(&stored.key, &next)?])?
                .then_some(()))
        })
    }

    fn delete_trigger(&self, account: &AccountId, id: &str) -> Result<bool> {
        self.retry(
            || format!("trigger {id}"),
            || {
                let Some(stored) = self.find_trigger(id)?.filter(|r| &r.value.account == account) else {
                    return Ok(Some(false));
                };
                let mut ops = vec![delete(&stored.key)];
                ops.extend(self.trigger_index_keys(&stored.value).iter().map(|k| delete(k)));
                Ok(self.commit(vec![unchanged(&stored.key, stored.mod_revision)], ops)?.then_some(true))
            },
        )
    }
}
