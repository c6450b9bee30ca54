//! Layer versions and imported images.

use rusqlite::{params, OptionalExtension, Row};
use stoke_core::{AccountId, LayerName};

use super::{account_id, corrupt, is_unique_violation, SqliteStore};
use crate::{CodeRef, ImageRecord, LayerRecord, LayerStore, Result, StoreError};

const LAYER_COLS: &str =
    "account_id, name, version, description, runtimes, code_sha256, code_size, created_ms, deleted_ms";

fn layer_row(r: &Row<'_>) -> rusqlite::Result<LayerRecord> {
    let name: String = r.get("name")?;
    let runtimes: String = r.get("runtimes")?;
    Ok(LayerRecord {
        account: account_id(r.get("account_id")?)?,
        name: LayerName::parse(&name).map_err(|e| corrupt("layer name", e))?,
        version: r.get::<_, u64>("version")?,
        description: r.get("description")?,
        compatible_runtimes: serde_json::from_str(&runtimes).map_err(|e| corrupt("layer runtimes", e))?,
        code: CodeRef { sha256: r.get("code_sha256")?, size: r.get::<_, u64>("code_size")? },
        created_ms: r.get("created_ms")?,
        deleted_ms: r.get("deleted_ms")?,
    })
}

const IMAGE_COLS: &str = "name, sha256, size, unpacked_bytes, created_ms";

fn image_row(r: &Row<'_>) -> rusqlite::Result<ImageRecord> {
    Ok(ImageRecord {
        name: r.get("name")?,
        code: CodeRef { sha256: r.get("sha256")?, size: r.get::<_, u64>("size")? },
        unpacked_bytes: r.get::<_, u64>("unpacked_bytes")?,
        created_ms: r.get("created_ms")?,
    })
}

impl LayerStore for SqliteStore {
    fn insert_layer_version(&self, l: &LayerRecord) -> Result<u64> {
        self.write(|tx| {
            let (account, name) = (l.account.as_str(), l.name.as_str());
            tx.execute(
                "INSERT INTO layer_names (account_id, name, last_version) VALUES (?1, ?2, 1)
                 ON CONFLICT (account_id, name) DO UPDATE SET last_version = last_version + 1",
                params![account, name],
            )?;
            let version: u64 = tx.query_row(
                "SELECT last_version FROM layer_names WHERE account_id = ?1 AND name = ?2",
                params![account, name],
                |r| r.get("last_version"),
            )?;
            let runtimes =
                serde_json::to_string(&l.compatible_runtimes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.execute(
                &format!("INSERT INTO layers ({LAYER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)"),
                params![
                    account,
                    name,
                    version,
                    l.description,
                    runtimes,
                    l.code.sha256,
                    l.code.size as i64,
                    l.created_ms
                ],
            )?;
            Ok(version)
        })
    }

    fn get_layer_version(&self, account: &AccountId, name: &LayerName, version: u64) -> Result<Option<LayerRecord>> {
        let conn = self.lock();
        let sql = format!("SELECT {LAYER_COLS} FROM layers WHERE account_id = ?1 AND name = ?2 AND version = ?3");
        Ok(conn.query_row(&sql, params![account.as_str(), name.as_str(), version as i64], layer_row).optional()?)
    }

    fn list_layers(&self, account: &AccountId) -> Result<Vec<LayerRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {LAYER_COLS} FROM layers l WHERE account_id = ?1 AND deleted_ms IS NULL
             AND version = (SELECT MAX(version) FROM layers m WHERE m.account_id = l.account_id AND m.name = l.name
                            AND m.deleted_ms IS NULL)
             ORDER BY name"
        ))?;
        let rows = stmt.query_map([account.as_str()], layer_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn list_layer_versions(&self, account: &AccountId, name: &LayerName) -> Result<Vec<LayerRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {LAYER_COLS} FROM layers WHERE account_id = ?1 AND name = ?2 AND deleted_ms IS NULL
             ORDER BY version DESC"
        ))?;
        let rows = stmt
            .query_map(params![account.as_str(), name.as_str()], layer_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn delete_layer_version(
        &self,
        account: &AccountId,
        name: &LayerName,
        version: u64,
        forget: bool,
        now_ms: i64,
    ) -> Result<bool> {
        self.write(|tx| {
            let key = params![account.as_str(), name.as_str(), version as i64];
            let changed = if forget {
                tx.execute("DELETE FROM layers WHERE account_id = ?1 AND name = ?2 AND version = ?3", key)?
            } else {
                tx.execute(
                    "UPDATE layers SET deleted_ms = ?4
                     WHERE account_id = ?1 AND name = ?2 AND version = ?3 AND deleted_ms IS NULL",
                    params![account.as_str(), name.as_str(), version as i64, now_ms],
                )?
            };
            Ok(changed > 0)
        })
    }

    fn referenced_layers(&self) -> Result<Vec<(AccountId, String)>> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT DISTINCT account_id, code_sha256 FROM layers")?;
        let rows = stmt
            .query_map([], |r| Ok((account_id(r.get("account_id")?)?, r.get("code_sha256")?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn insert_image(&self, i: &ImageRecord) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &format!("INSERT INTO images ({IMAGE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
                params![i.name, i.code.sha256, i.code.size as i64, i.unpacked_bytes as i64, i.created_ms],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("image {}", i.name))
                } else {
                    e.into()
                }
            })?;
            Ok(())
        })
    }

    fn get_image(&self, name: &str) -> Result<Option<ImageRecord>> {
        let conn = self.lock();
        let sql = format!("SELECT {IMAGE_COLS} FROM images WHERE name = ?1");
        Ok(conn.query_row(&sql, [name], image_row).optional()?)
    }

    fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("SELECT {IMAGE_COLS} FROM images ORDER BY name"))?;
        let rows = stmt.query_map([], image_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn delete_image(&self, name: &str) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM images WHERE name = ?1", [name])? > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::fixtures::{account, store};

    fn layer(account: &AccountId, name: &str, sha: &str) -> LayerRecord {
        LayerRecord {
            account: account.clone(),
            name: LayerName::parse(name).unwrap(),
            version: 0,
            description: format!("{name} libs"),
            compatible_runtimes: vec!["python3.12".into()],
            code: CodeRef { sha256: sha.into(), size: 10 },
            created_ms: 7,
            deleted_ms: None,
        }
    }

    #[test]
    fn layer_versions_count_up_and_are_never_reused() {
        let (_d, s) = store();
        let (a, b) = (account(&s, 1), account(&s, 2));
        assert_eq!(s.insert_layer_version(&layer(&a, "np", "s1")).unwrap(), 1);
        assert_eq!(s.insert_layer_version(&layer(&a, "np", "s2")).unwrap(), 2);
        assert_eq!(s.insert_layer_version(&layer(&a, "pil", "s3")).unwrap(), 1);
        assert_eq!(s.insert_layer_version(&layer(&b, "np", "s1")).unwrap(), 1, "numbers are per account");
        let np = LayerName::parse("np").unwrap();
        let v2 = s.get_layer_version(&a, &np, 2).unwrap().unwrap();
        assert_eq!((v2.version, v2.code.sha256.as_str(), v2.compatible_runtimes.len()), (2, "s2", 1));
        let latest: Vec<_> = s.list_layers(&a).unwrap().iter().map(|l| (l.name.to_string(), l.version)).collect();
        assert_eq!(latest, [("np".to_string(), 2), ("pil".to_string(), 1)]);

        // Marked deleted: still readable (functions that list it keep running), no longer listed.
        assert!(s.delete_layer_version(&a, &np, 2, false, 99).unwrap());
        assert!(!s.delete_layer_version(&a, &np, 2, false, 100).unwrap(), "already deleted");
        assert_eq!(s.get_layer_version(&a, &np, 2).unwrap().unwrap().deleted_ms, Some(99));
        assert_eq!(s.list_layer_versions(&a, &np).unwrap().len(), 1);
        assert_eq!(s.list_layers(&a).unwrap()[0].version, 1, "the newest live version");
        assert_eq!(s.insert_layer_version(&layer(&a, "np", "s4")).unwrap(), 3, "2 is not reused");
        assert!(s.delete_layer_version(&a, &np, 1, true, 0).unwrap());
        assert!(s.get_layer_version(&a, &np, 1).unwrap().is_none(), "forgotten");
        let mut refs: Vec<_> =
            s.referenced_layers().unwrap().into_iter().map(|(acct, sha)| (acct.to_string(), sha)).collect();
        refs.sort();
        assert_eq!(refs.len(), 4, "{refs:?}");
    }

    fn alpine() -> ImageRecord {
        ImageRecord {
            name: "alpine".into(),
            code: CodeRef { sha256: "ff".into(), size: 3 },
            unpacked_bytes: 9,
            created_ms: 1,
        }
    }

    #[test]
    fn images_have_unique_names() {
        let (_d, s) = store();
        let img = alpine();
        s.insert_image(&img).unwrap();
        assert!(matches!(s.insert_image(&img), Err(StoreError::Conflict(_))));
        assert_eq!(s.get_image("alpine").unwrap(), Some(img.clone()));
        assert_eq!(s.list_images().unwrap(), [img]);
        assert!(s.delete_image("alpine").unwrap());
        assert!(!s.delete_image("alpine").unwrap());
        assert!(s.get_image("alpine").unwrap().is_none());
    }

    #[test]
    fn a_negative_size_is_refused_not_read_as_a_huge_one() {
        let (_d, s) = store();
        let img = alpine();
        s.insert_image(&img).unwrap();
        s.lock().execute("UPDATE images SET unpacked_bytes = -1", []).unwrap();
        assert!(s.get_image("alpine").is_err());
    }

    #[test]
    fn layer_versions_list_newest_first_and_stay_in_their_account() {
        let (_d, s) = store();
        let (a, b) = (account(&s, 1), account(&s, 2));
        for sha in ["s1", "s2", "s3"] {
            s.insert_layer_version(&layer(&a, "np", sha)).unwrap();
        }
        let np = LayerName::parse("np").unwrap();
        let mut third = layer(&a, "np", "s3");
        third.version = 3;
        assert_eq!(s.get_layer_version(&a, &np, 3).unwrap(), Some(third), "every field reads back");
        let versions: Vec<u64> = s.list_layer_versions(&a, &np).unwrap().into_iter().map(|l| l.version).collect();
        assert_eq!(versions, [3, 2, 1]);
        assert_eq!(s.get_layer_version(&a, &np, 4).unwrap(), None);
        assert_eq!(s.get_layer_version(&b, &np, 1).unwrap(), None, "another account's layer");
        assert!(s.list_layers(&b).unwrap().is_empty());
        assert!(s.list_layer_versions(&b, &np).unwrap().is_empty());
        assert!(!s.delete_layer_version(&b, &np, 1, false, 5).unwrap());
        assert!(!s.delete_layer_version(&a, &np, 9, true, 5).unwrap());
        for v in 1..=3 {
            assert!(s.delete_layer_version(&a, &np, v, false, 5).unwrap());
        }
        assert!(s.list_layers(&a).unwrap().is_empty(), "a layer with no live version is not listed");
        assert_eq!(s.referenced_layers().unwrap().len(), 3, "deleted versions still hold their archives");
    }

    #[test]
    fn images_list_by_name() {
        let (_d, s) = store();
        let image = |name: &str| ImageRecord {
            name: name.into(),
            code: CodeRef { sha256: format!("{name}-sha"), size: 3 },
            unpacked_bytes: 1 << 33,
            created_ms: 2,
        };
        s.insert_image(&image("ubuntu")).unwrap();
        s.insert_image(&image("alpine")).unwrap();
        assert_eq!(s.list_images().unwrap(), [image("alpine"), image("ubuntu")]);
        assert_eq!(s.get_image("debian").unwrap(), None);
    }
}
