//! Layers and images in the function manager: publishing a layer version (unpacked once, shared by every
//! instance that lists it), deleting one without breaking the functions that still list it, importing a
//! root file system image, and checking a function's references to both.

use std::io::Read;
use std::path::PathBuf;

use stoke_core::{AccountId, FunctionConfig, LayerName, LayerRef, ValidationError};
use stoke_store::archive;
use stoke_store::{ImageRecord, LayerRecord};

use super::{now_ms, Registry, RegistryError, Result};

/// The base image every node has: the host's own `/usr` and friends, read-only.
pub const RESERVED_IMAGE: &str = FunctionConfig::DEFAULT_BASE_IMAGE;

/// The ARN of a layer version as views show it.
pub fn layer_view_arn(region: &str, l: &LayerRecord) -> String {
    stoke_core::layer::layer_arn(region, &l.account, &l.name, Some(l.version))
}

impl Registry {
    /// Publishes a new version of a layer from a zip (or tar.gz) of its files, which instances see under
    /// `/opt`. The files are unpacked before the version is recorded, so a recorded version always has them.
    pub fn publish_layer(
        &self,
        account: &AccountId,
        name: &str,
        description: String,
        compatible_runtimes: Vec<String>,
        code: &[u8],
    ) -> Result<LayerRecord> {
        let name = LayerName::parse(name)?;
        stoke_core::layer::validate_publish(&description, &compatible_runtimes)?;
        let zip = archive::normalize(code, &self.archive_limits)?;
        let code = self.layers.put(account, &zip)?;
        self.replicas.stored(&self.layers.archive(account, &code.sha256), &code.sha256)?;
        let mut record = LayerRecord {
            account: account.clone(),
            name,
            version: 0,
            description,
            compatible_runtimes,
            code,
            created_ms: now_ms(),
            deleted_ms: None,
        };
        record.version = self.store.insert_layer_version(&record)?;
        self.bump_generation();
        Ok(record)
    }

    /// A live layer version.
    pub fn get_layer(&self, account: &AccountId, name: &LayerName, version: u64) -> Result<LayerRecord> {
        self.store
            .get_layer_version(account, name, version)?
            .filter(|l| l.deleted_ms.is_none())
            .ok_or_else(|| RegistryError::NotFound(format!("layer {name}:{version} does not exist in your account")))
    }

    /// The newest live version of every layer of the account.
    pub fn list_layers(&self, account: &AccountId) -> Result<Vec<LayerRecord>> {
        Ok(self.store.list_layers(account)?)
    }

    /// A layer's live versions, newest first; not found when it has none.
    pub fn list_layer_versions(&self, account: &AccountId, name: &LayerName) -> Result<Vec<LayerRecord>> {
        let versions = self.store.list_layer_versions(account, name)?;
        if versions.is_empty() {
            return Err(RegistryError::NotFound(format!(
                "layer {name} does not exist in your account; publish it with stoke layer publish"
            )));
        }
        Ok(versions)
    }

    /// Deletes a layer version. Functions and versions that list it keep running on it (as on Lambda); no
    /// new configuration may list it. Its files go once nothing lists it.
    pub fn delete_layer(&self, account: &AccountId, name: &LayerName, version: u64) -> Result<()> {
        let layer = self.get_layer(account, name, version)?;
        let reference = LayerRef { account: None, name: name.clone(), version }.to_string();
        let listed = self.configs_of(account)?.iter().any(|c| c.layers.contains(&reference));
        self.store.delete_layer_version(account, name, version, !listed, now_ms())?;
        if !listed && !self.store.referenced_layers()?.iter().any(|(a, sha)| a == account && *sha == layer.code.sha256)
        {
            self.layers.remove(account, &layer.code.sha256)?;
        }
        self.bump_generation();
        Ok(())
    }

    /// Every configuration of the account: each function's `$LATEST` and every published version.
    fn configs_of(&self, account: &AccountId) -> Result<Vec<FunctionConfig>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.functions.list_functions(account, after.as_deref(), super::MAX_PAGE)?;
            for f in &page {
                out.push(f.config.clone());
                let mut v_after = None;
                loop {
                    let versions = self.functions.list_versions(account, &f.name, v_after, super::MAX_PAGE)?;
                    out.extend(versions.iter().map(|v| v.config.clone()));
                    if versions.len() < super::MAX_PAGE {
                        break;
                    }
                    v_after = versions.last().map(|v| v.version);
                }
            }
            if page.len() < super::MAX_PAGE {
                return Ok(out);
            }
            after = page.last().map(|f| f.name.to_string());
        }
    }

    /// Checks that a configuration's layers and base image exist for `account`, and writes its layer
    /// references in their canonical form (`name:version`).
    pub(crate) fn check_references(&self, account: &AccountId, config: &mut FunctionConfig) -> Result<()> {
        let mut canonical = Vec::with_capacity(config.layers.len());
        for reference in &config.layers {
            let r = LayerRef::parse(reference)?;
            if let Some(named) = &r.account {
                if named != account {
                    return Err(ValidationError::new(
                        "layers",
                        format!(
                            "layer {reference} belongs to account {named}; a function can list only its own \
                             account's layers"
                        ),
                    )
                    .into());
                }
            }
            let found = self.store.get_layer_version(account, &r.name, r.version)?;
            match found {
                Some(l) if l.deleted_ms.is_none() => canonical.push(r.to_string()),
                Some(_) => {
                    return Err(ValidationError::new(
                        "layers",
                        format!("layer {r} was deleted; list another version (stoke layer versions {})", r.name),
                    )
                    .into())
                }
                None => {
                    return Err(ValidationError::new(
                        "layers",
                        format!("layer {r} does not exist in your account; publish it with stoke layer publish"),
                    )
                    .into())
                }
            }
        }
        if canonical.len() != canonical.iter().collect::<std::collections::HashSet<_>>().len() {
            return Err(ValidationError::new("layers", "a layer is listed twice (once by name, once by ARN)").into());
        }
        config.layers = canonical;
        if config.base_image != RESERVED_IMAGE && self.store.get_image(&config.base_image)?.is_none() {
            return Err(ValidationError::new(
                "base_image",
                format!(
                    "image {:?} does not exist on this node; import it with stoke image import, or use {RESERVED_IMAGE}",
                    config.base_image
                ),
            )
            .into());
        }
        Ok(())
    }

    /// The host directories of a configuration's layers, in the order listed (later layers win where
    /// files collide). A deleted layer still resolves: functions that list it keep running.
    pub fn layer_dirs(&self, account: &AccountId, config: &FunctionConfig) -> Result<Vec<PathBuf>> {
        config
            .layers
            .iter()
            .map(|reference| {
                let r = LayerRef::parse(reference)?;
                let l = self
                    .store
                    .get_layer_version(account, &r.name, r.version)?
                    .ok_or_else(|| RegistryError::NotFound(format!("layer {r} no longer exists")))?;
                let content = self.layers.content(account, &l.code.sha256);
                // Published on another node of the cluster: unpacked here from its archive, once.
                if !content.is_dir() {
                    if let Some(zip) = self.replicas.local_copy(&l.code.sha256)? {
                        self.layers.put(account, &std::fs::read(zip)?)?;
                    }
                }
                Ok(content)
            })
            .collect()
    }

    /// Resolves a reference and the host directories of the layers its configuration lists.
    pub fn resolve_with_layers(&self, caller: &AccountId, reference: &str) -> Result<(super::Resolved, Vec<PathBuf>)> {
        let resolved = self.resolve(caller, reference)?;
        self.ensure_archive(&resolved)?;
        let layers = self.layer_dirs(caller, resolved.config())?;
        self.ensure_image(resolved.config())?;
        Ok((resolved, layers))
    }

    /// The root file system of an imported image; `None` for the host's own (`default`).
    pub fn image_root(&self, config: &FunctionConfig) -> Option<PathBuf> {
        (config.base_image != RESERVED_IMAGE).then(|| self.images.rootfs(&config.base_image))
    }

    /// Imports a root file system from a tarball (plain or gzip-compressed) read from `from`.
    pub fn import_image(&self, name: &str, from: &mut dyn Read) -> Result<ImageRecord> {
        stoke_core::config::validate_base_image(name)
            .map_err(|e| ValidationError::new("name", e.message.replace("base image name", "image name")))?;
        if name == RESERVED_IMAGE {
            return Err(ValidationError::new(
                "name",
                format!("{RESERVED_IMAGE} is the host's own image and cannot be replaced; pick another name"),
            )
            .into());
        }
        if self.store.get_image(name)?.is_some() {
            return Err(RegistryError::Conflict(format!(
                "image {name} already exists; delete it first (stoke image rm {name}) or pick another name"
            )));
        }
        let max = self.archive_limits.max_image_bytes;
        // In a cluster the tarball is kept as it streams in, for the other nodes to import it too.
        let (code, unpacked_bytes) = match self.replicas.spool() {
            None => self.images.import(name, from, max)?,
            Some(spool) => {
                let imported = std::fs::File::create(&spool).map_err(RegistryError::from).and_then(|out| {
                    let mut tee = Tee { inner: from, out };
                    let imported = self.images.import(name, &mut tee, max)?;
                    tee.out.sync_all()?;
                    self.replicas.adopt(&spool, &imported.0.sha256)?;
                    Ok(imported)
                });
                if imported.is_err() {
                    let _ = std::fs::remove_file(&spool);
                    let _ = self.images.remove(name);
                }
                imported?
            }
        };
        let record = ImageRecord { name: name.to_string(), code, unpacked_bytes, created_ms: now_ms() };
        if let Err(e) = self.store.insert_image(&record) {
            let _ = self.images.remove(name);
            return Err(e.into());
        }
        self.bump_generation();
        Ok(record)
    }

    /// Imports, on this node, the image `config` runs on when it was imported on another node of the
    /// cluster (from its tarball, fetched from a peer); one import at a time.
    fn ensure_image(&self, config: &FunctionConfig) -> Result<()> {
        static IMPORTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let Some(rootfs) = self.image_root(config) else { return Ok(()) };
        if rootfs.is_dir() {
            return Ok(());
        }
        // A missing record or copy leaves the instance's start to say what is missing.
        let Some(image) = self.store.get_image(&config.base_image)? else { return Ok(()) };
        let Some(tarball) = self.replicas.local_copy(&image.code.sha256)? else { return Ok(()) };
        let _one = stoke_core::sync::lock(&IMPORTING);
        if !rootfs.is_dir() {
            let mut file = std::fs::File::open(tarball)?;
            self.images.import(&image.name, &mut file, self.archive_limits.max_image_bytes)?;
        }
        Ok(())
    }

    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        Ok(self.store.list_images()?)
    }

    pub fn get_image(&self, name: &str) -> Result<ImageRecord> {
        self.store.get_image(name)?.ok_or_else(|| RegistryError::NotFound(format!("image {name} does not exist")))
    }

    /// Deletes an image no function runs on.
    pub fn delete_image(&self, name: &str) -> Result<()> {
        self.get_image(name)?;
        for account in self.store.list_accounts()? {
            if self.configs_of(&account.id)?.iter().any(|c| c.base_image == name) {
                return Err(RegistryError::Conflict(format!(
                    "image {name} is the base image of functions of account {}; change their base_image first",
                    account.id
                )));
            }
        }
        self.store.delete_image(name)?;
        self.images.remove(name)?;
        self.bump_generation();
        Ok(())
    }
}

/// Copies what is read through it to `out` (an upload kept while it is consumed).
struct Tee<'a> {
    inner: &'a mut dyn Read,
    out: std::fs::File,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        std::io::Write::write_all(&mut self.out, &buf[..n])?;
        Ok(n)
    }
}
