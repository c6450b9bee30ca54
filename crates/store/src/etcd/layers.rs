//! Layers and images: `layers/<account>/<name>/<version>`, `layer-counters/<account>/<name>` (the highest
//! version the layer ever had, so numbers are never reused) and `images/<name>`.

use stoke_core::{AccountId, LayerName};

use super::{absent, num, put, unchanged, EtcdStore, Read};
use crate::{ImageRecord, LayerRecord, LayerStore, Result, StoreError};

impl LayerStore for EtcdStore {
    fn insert_layer_version(&self, l: &LayerRecord) -> Result<u64> {
        let (a, n) = (l.account.as_str(), l.name.as_str());
        let counter = self.keys.key(&["layer-counters", a, n]);
        self.retry(
            || format!("layer {}", l.name),
            || {
                let last = self.get::<u64>(&counter)?;
                let version = last.as_ref().map_or(0, |r| r.value) + 1;
                let when = vec![match &last {
                    Some(r) => unchanged(&counter, r.mod_revision),
                    None => absent(&counter),
                }];
                let mut record = l.clone();
                record.version = version;
                record.deleted_ms = None;
                let key = self.keys.key(&["layers", a, n, &num(version)]);
                let ops = vec![put(&counter, &version)?, put(&key, &record)?];
                Ok(self.commit(when, ops)?.then_some(version))
            },
        )
    }

    fn get_layer_version(&self, account: &AccountId, name: &LayerName, version: u64) -> Result<Option<LayerRecord>> {
        let key = self.keys.key(&["layers", account.as_str(), name.as_str(), &num(version)]);
        Ok(self.get(&key)?.map(|r: Read<LayerRecord>| r.value))
    }

    fn list_layers(&self, account: &AccountId) -> Result<Vec<LayerRecord>> {
        let (rows, _) = self.list::<LayerRecord>(&self.keys.under(&["layers", account.as_str()]))?;
        // Keys keep each name's versions together, oldest first: the last live one of a name is its newest.
        let mut out: Vec<LayerRecord> = Vec::new();
        for l in rows.into_iter().map(|r| r.value).filter(|l| l.deleted_ms.is_none()) {
            match out.last_mut() {
                Some(prev) if prev.name == l.name => *prev = l,
                _ => out.push(l),
            }
        }
        // By name as a string (`a` before `a-b`; their keys, `a/…` and `a-b/…`, sort the other way).
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn list_layer_versions(&self, account: &AccountId, name: &LayerName) -> Result<Vec<LayerRecord>> {
        let (rows, _) = self.list::<LayerRecord>(&self.keys.under(&["layers", account.as_str(), name.as_str()]))?;
        Ok(rows.into_iter().rev().map(|r| r.value).filter(|l| l.deleted_ms.is_none()).collect())
    }

    fn delete_layer_version(
        &self,
        account: &AccountId,
        name: &LayerName,
        version: u64,
        forget: bool,
        now_ms: i64,
    ) -> Result<bool> {
        let key = self.keys.key(&["layers", account.as_str(), name.as_str(), &num(version)]);
        self.retry(
            || format!("layer {name} version {version}"),
            || {
                let Some(stored) = self.get::<LayerRecord>(&key)? else {
                    return Ok(Some(false));
                };
                let op = if forget {
                    super::delete(&key)
                } else if stored.value.deleted_ms.is_some() {
                    return Ok(Some(false));
                } else {
                    let mut l = stored.value;
                    l.deleted_ms = Some(now_ms);
                    put(&key, &l)?
                };
                Ok(self.commit(vec![unchanged(&key, stored.mod_revision)], vec![op])?.then_some(true))
            },
        )
    }

    fn referenced_layers(&self) -> Result<Vec<(AccountId, String)>> {
        let (rows, _) = self.list::<LayerRecord>(&self.keys.under(&["layers"]))?;
        let mut out: Vec<_> = rows.into_iter().map(|r| (r.value.account, r.value.code.sha256)).collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn insert_image(&self, i: &ImageRecord) -> Result<()> {
        let key = self.keys.key(&["images", &i.name]);
        if self.commit(vec![absent(&key)], vec![put(&key, i)?])? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("image {}", i.name)))
        }
    }

    fn get_image(&self, name: &str) -> Result<Option<ImageRecord>> {
        Ok(self.get(&self.keys.key(&["images", name]))?.map(|r: Read<ImageRecord>| r.value))
    }

    fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let (rows, _) = self.list::<ImageRecord>(&self.keys.under(&["images"]))?;
        Ok(rows.into_iter().map(|r| r.value).collect())
    }

    fn delete_image(&self, name: &str) -> Result<bool> {
        let key = self.keys.key(&["images", name]);
        let resp = self.run(move |mut kv| async move { kv.delete(key, None).await })?;
        Ok(resp.deleted() > 0)
    }
}
