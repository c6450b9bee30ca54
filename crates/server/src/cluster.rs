//! Cluster mode: this node's place among equal nodes that share one etcd (docs/cluster.md).
//!
//! - [`Cluster::join`] registers the node under a lease (membership), refusing a name another live node
//!   holds, and keeps it renewed.
//! - [`Blobs`] keeps code and layer archives and image tarballs on enough nodes: a new archive is pushed to peers until
//!   `min(replication, live nodes)` hold it before its record is committed; a node that needs an archive it
//!   lacks fetches it from a live peer by sha256 and checks the hash before using it. Archives are kept by
//!   content under `<data-dir>/blobs/<sha256>` and linked where the registry reads them.
//! - Blobs no record refers to are collected once they are older than [`BLOB_GRACE`], so a blob whose
//!   create is still on its way to etcd is never taken.
//! - Peers call each other on `/internal/v1/…` with the cluster secret; nothing else may.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use stoke_store::{EtcdStore, Membership, NodeRecord, NodeStatus, StoreError};

/// How a node joins a cluster (`stoke server --cluster …`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// etcd endpoints, `http://host:port`.
    pub endpoints: Vec<String>,
    /// This node's name, unique among live nodes.
    pub node_name: String,
    /// Where peers and clients reach this node, `http://host:port` (`None`: the address it listens on).
    pub advertise: Option<String>,
    /// What peers present to each other on the internal API.
    pub secret: String,
    /// Key prefix in etcd (several clusters can share one etcd).
    pub prefix: String,
    /// On how many nodes an archive must be before its record is committed.
    pub replication: usize,
    /// The membership lease's time to live: a node that stops is shown gone within it.
    pub node_ttl: Duration,
    /// Certificates (PEM) to trust, besides the system's, when peers serve HTTPS.
    pub ca_file: Option<PathBuf>,
}

impl ClusterConfig {
    pub const DEFAULT_PREFIX: &'static str = "stoke";
    pub const DEFAULT_REPLICATION: usize = 2;
    pub const DEFAULT_NODE_TTL: Duration = Duration::from_secs(5);
}

/// The header peers put the cluster secret in.
pub const SECRET_HEADER: &str = "x-stoke-cluster-secret";

/// This node in its cluster.
pub struct Cluster {
    store: Arc<EtcdStore>,
    membership: Membership,
    secret: String,
    blobs: Arc<Blobs>,
    /// Forwards invocations to their queue's owner: pooled keep-alive connections, no overall timeout
    /// (each request carries the invocation's own deadline).
    invocations: reqwest::Client,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.membership.record().name).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Joins as `node` (`Conflict` when another live node has its name).
    pub fn join(
        store: Arc<EtcdStore>,
        config: &ClusterConfig,
        node: NodeRecord,
        blobs: Arc<Blobs>,
    ) -> Result<Self, StoreError> {
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http1_only()
            .pool_idle_timeout(Duration::from_secs(60));
        if let Some(ca) = &config.ca_file {
            for cert in certificates(ca).map_err(|e| StoreError::Refused(format!("--ca-file: {e}")))? {
                http = http.add_root_certificate(cert);
            }
        }
        let invocations =
            http.build().map_err(|e| StoreError::Unavailable(format!("cannot make the peer client: {e}")))?;
        let membership = store.join(&node, config.node_ttl)?;
        Ok(Self { store, membership, secret: config.secret.clone(), blobs, invocations })
    }

    /// The client invocations are forwarded to their queue's owner with.
    pub fn invocations(&self) -> &reqwest::Client {
        &self.invocations
    }

    /// This node's membership lease now: what it owns under it goes when the node does.
    pub fn lease(&self) -> i64 {
        self.membership.lease()
    }

    /// Where peers reach this node.
    pub fn advertise(&self) -> String {
        self.membership.record().advertise
    }

    pub fn store(&self) -> &Arc<EtcdStore> {
        &self.store
    }

    pub fn blobs(&self) -> &Arc<Blobs> {
        &self.blobs
    }

    pub fn name(&self) -> String {
        self.membership.record().name
    }

    /// Every node that joined, live or gone.
    pub fn nodes(&self) -> Result<Vec<NodeStatus>, StoreError> {
        self.store.nodes()
    }

    /// The other live nodes: (name, address).
    pub fn peers(&self) -> Result<Vec<(String, String)>, StoreError> {
        live_peers(&self.store, &self.name())
    }

    /// The client peers are called with (pooled keep-alive connections).
    pub fn http(&self) -> &reqwest::Client {
        &self.blobs.http
    }

    /// What this node presents to its peers.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Changes what this node's next heartbeat reports.
    pub fn report(&self, f: impl FnOnce(&mut NodeRecord)) {
        self.membership.update(f);
    }

    /// Whether `presented` is the cluster secret (compared in constant time).
    pub fn authorized(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| constant_time_eq(p.as_bytes(), self.secret.as_bytes()))
    }
}

/// Lets a cache miss read the store again, at most once per interval. A cluster node's caches (accounts,
/// triggers) trail another node's write by a watch event: a key or URL created a moment ago elsewhere is
/// found at once, while unknown keys cannot make a node read etcd on every request.
#[derive(Debug)]
pub struct MissRefresh {
    every: Duration,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl MissRefresh {
    pub const EVERY: Duration = Duration::from_millis(250);

    pub fn new(every: Duration) -> Self {
        Self { every, last: std::sync::Mutex::new(None) }
    }

    /// Whether a miss may read the store now (and, if so, that it did).
    pub fn allow(&self) -> bool {
        let mut last = stoke_core::sync::lock(&self.last);
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.every) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// The live nodes other than `me`: (name, address).
fn live_peers(store: &EtcdStore, me: &str) -> Result<Vec<(String, String)>, StoreError> {
    Ok(store
        .nodes()?
        .into_iter()
        .filter(|n| n.state == "live" && n.node.name != me)
        .map(|n| (n.node.name, n.node.advertise))
        .collect())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads the cluster secret from a file (trimmed); it must be at least 16 characters.
pub fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the cluster secret file {}: {e}", path.display()))?;
    let secret = text.trim().to_string();
    if secret.len() < 16 {
        return Err(format!(
            "the cluster secret in {} is {} characters; use at least 16 (e.g. `openssl rand -hex 32 > {}`)",
            path.display(),
            secret.len(),
            path.display()
        ));
    }
    Ok(secret)
}

/// Content-addressed archives of this node, shared with its peers.
pub struct Blobs {
    dir: PathBuf,
    store: Arc<EtcdStore>,
    name: String,
    secret: String,
    replication: usize,
    http: reqwest::Client,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn unavailable(message: String) -> StoreError {
    StoreError::Unavailable(message)
}

/// Whether `s` is a sha256 in lowercase hex (what the internal API accepts as a blob's name).
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Blobs {
    /// The blobs under `<data_dir>/blobs`, shared with the peers of `store`'s cluster.
    pub fn open(store: Arc<EtcdStore>, data_dir: &Path, config: &ClusterConfig) -> Result<Self, StoreError> {
        let dir = data_dir.join("blobs");
        // Uploads being taken in when the node last stopped are gone with their requests.
        let _ = std::fs::remove_dir_all(dir.join(SPOOL_DIR));
        std::fs::create_dir_all(dir.join(SPOOL_DIR))?;
        let mut http =
            reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).timeout(Duration::from_secs(60));
        if let Some(ca) = &config.ca_file {
            for cert in certificates(ca).map_err(|e| StoreError::Refused(format!("--ca-file: {e}")))? {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(|e| unavailable(format!("cannot make the peer client: {e}")))?;
        Ok(Self {
            dir,
            store,
            name: config.node_name.clone(),
            secret: config.secret.clone(),
            replication: config.replication.max(1),
            http,
        })
    }

    /// Where this node keeps the blob `sha256` (the caller checked it is one).
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// The other live nodes' addresses.
    fn peers(&self) -> Result<Vec<String>, StoreError> {
        Ok(live_peers(&self.store, &self.name)?.into_iter().map(|(_, address)| address).collect())
    }

    /// Keeps `bytes` (already checked to hash to `sha256`) as a blob: written to a temp file, synced, renamed.
    pub fn keep(&self, sha256: &str, bytes: &[u8]) -> std::io::Result<()> {
        write_blob(&self.dir, sha256, bytes)
    }

    /// Links the blob into `dest` (where the registry reads it), unless something is there already.
    fn link_to(&self, sha256: &str, dest: &Path) -> std::io::Result<()> {
        if dest.exists() {
            return Ok(());
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::hard_link(self.path(sha256), dest) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }

    /// Pushes blob `sha256` to peers until `min(replication, live nodes)` nodes hold it, this one included.
    fn replicate(&self, sha256: &str) -> Result<usize, StoreError> {
        let peers = self.peers()?;
        let needed = self.replication.min(peers.len() + 1) - 1;
        if needed == 0 {
            return Ok(1);
        }
        let bytes = std::fs::read(self.path(sha256))?;
        let (http, secret, sha) = (self.http.clone(), self.secret.clone(), sha256.to_string());
        let acks = self
            .store
            .block_on(async move {
                let mut acks = 0;
                for peer in peers {
                    if acks >= needed {
                        break;
                    }
                    let sent = http
                        .put(format!("{peer}/internal/v1/blobs/{sha}"))
                        .header(SECRET_HEADER, &secret)
                        .body(bytes.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => acks += 1,
                        Ok(r) => tracing::warn!(%peer, status = %r.status(), "a peer refused an archive"),
                        Err(e) => tracing::warn!(%peer, error = %e, "cannot copy an archive to a peer"),
                    }
                }
                acks
            })
            .unwrap_or(0);
        if acks < needed {
            return Err(unavailable(format!(
                "the archive could be kept on {} of the {} nodes it must be on; retry when more nodes are live",
                acks + 1,
                needed + 1
            )));
        }
        Ok(acks + 1)
    }

    /// Fetches blob `sha256` from a live peer, checks its hash and keeps it.
    fn fetch_from_peers(&self, sha256: &str) -> Result<(), StoreError> {
        let peers = self.peers()?;
        let (http, secret, sha) = (self.http.clone(), self.secret.clone(), sha256.to_string());
        let found = self
            .store
            .block_on(async move {
                for peer in peers {
                    let got =
                        http.get(format!("{peer}/internal/v1/blobs/{sha}")).header(SECRET_HEADER, &secret).send().await;
                    let Ok(resp) = got else { continue };
                    if !resp.status().is_success() {
                        continue;
                    }
                    let Ok(bytes) = resp.bytes().await else { continue };
                    if stoke_store::sha256_hex(&bytes) == sha {
                        return Some(bytes.to_vec());
                    }
                    tracing::warn!(%peer, "a peer sent an archive whose sha256 does not match; ignored");
                }
                None
            })
            .flatten();
        match found {
            Some(bytes) => Ok(self.keep(sha256, &bytes)?),
            None => Err(unavailable(format!(
                "no live node has archive {sha256}; it comes back when a node that holds it is live again"
            ))),
        }
    }
}

/// Where uploads are copied while they stream in (below the blob directory, on the same file system).
const SPOOL_DIR: &str = ".spool";

/// How old an unreferenced blob must be before it is collected: longer than any create or update takes
/// from writing its archive to committing its record, so a blob whose record is on its way is never taken.
pub const BLOB_GRACE: Duration = Duration::from_secs(3600);

impl Blobs {
    /// Removes the blobs no record refers to (`referenced`: sha256s) that are older than `grace`; returns
    /// how many. Files where the registry reads an archive are links of their own and stay.
    pub fn collect(&self, referenced: &std::collections::HashSet<String>, grace: Duration) -> std::io::Result<usize> {
        collect_unreferenced(&self.dir, referenced, grace, std::time::SystemTime::now())
    }
}

/// [`Blobs::collect`] over a directory, at `now`.
fn collect_unreferenced(
    dir: &Path,
    referenced: &std::collections::HashSet<String>,
    grace: Duration,
    now: std::time::SystemTime,
) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Temp files of a write that died are named `.<sha>.<pid>-<n>.tmp`: collected by age alone.
        let sha = name.strip_prefix('.').and_then(|n| n.split('.').next()).unwrap_or(&name);
        if !is_sha256(sha) || (referenced.contains(sha) && !name.starts_with('.')) {
            continue;
        }
        let age = entry.metadata()?.modified().ok().and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
        if age >= grace {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

impl crate::registry::Replicas for Blobs {
    fn stored(&self, path: &Path, sha256: &str) -> Result<(), StoreError> {
        if !self.path(sha256).exists() {
            match std::fs::hard_link(path, self.path(sha256)) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e.into()),
                _ => {}
            }
        }
        self.replicate(sha256).map(|_| ())
    }

    fn local_copy(&self, sha256: &str) -> Result<Option<PathBuf>, StoreError> {
        if !is_sha256(sha256) {
            return Ok(None);
        }
        if !self.path(sha256).exists() {
            self.fetch_from_peers(sha256)?;
        }
        Ok(Some(self.path(sha256)))
    }

    fn spool(&self) -> Option<PathBuf> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(self.dir.join(SPOOL_DIR).join(format!("{}-{n}", std::process::id())))
    }

    fn adopt(&self, spool: &Path, sha256: &str) -> Result<(), StoreError> {
        if self.path(sha256).exists() {
            std::fs::remove_file(spool)?;
        } else {
            std::fs::rename(spool, self.path(sha256))?;
            std::fs::File::open(&self.dir)?.sync_all()?;
        }
        self.replicate(sha256).map(|_| ())
    }

    fn fetch(&self, path: &Path, sha256: &str) -> Result<(), StoreError> {
        if path.exists() || !is_sha256(sha256) {
            return Ok(());
        }
        // Several first invocations may bring the same archive at once; one that finds a file gone under it
        // (another's temp file renamed, a directory made) tries once more before it is an error.
        let mut tries = 0;
        loop {
            if !self.path(sha256).exists() {
                self.fetch_from_peers(sha256)?;
            }
            match self.link_to(sha256, path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries == 0 => tries += 1,
                Err(e) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("cannot link archive {sha256} to {}: {e}", path.display()),
                    )
                    .into())
                }
                Ok(()) => return Ok(()),
            }
        }
    }
}

/// Writes blob `sha256` into `dir` unless it is there: to a temp file, synced, renamed, the directory synced.
/// Several requests may keep the same blob at once (functions sharing a layer, run together for the first
/// time): each writes its own temp file, and the last rename wins with the same bytes.
fn write_blob(dir: &Path, sha256: &str, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = dir.join(sha256);
    if path.exists() {
        return Ok(());
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{sha256}.{}-{n}.tmp", std::process::id()));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The certificates (PEM) in a CA file, for a client that must trust a server's own certificate authority.
pub fn certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate (expected PEM blocks 'BEGIN CERTIFICATE')", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole_and_blob_names_are_hashes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"abcd"));
        assert!(is_sha256(&"a1".repeat(32)));
        assert!(!is_sha256(&"A1".repeat(32)) && !is_sha256("../etc/passwd") && !is_sha256(&"a".repeat(63)));
    }

    #[test]
    fn a_miss_refreshes_at_most_once_per_interval() {
        let r = MissRefresh::new(Duration::from_secs(3600));
        assert!(r.allow(), "the first miss reads the store");
        assert!(!r.allow() && !r.allow(), "the next ones within the interval do not");
        let r = MissRefresh::new(Duration::ZERO);
        assert!(r.allow() && r.allow());
    }

    #[test]
    fn only_old_unreferenced_blobs_and_old_temp_files_are_collected() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, old, young) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        for name in [&kept, &old, &young, &format!(".{old}.7.tmp"), &"not-a-blob".to_string()] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let referenced: std::collections::HashSet<String> = [kept.clone()].into();
        let grace = Duration::from_secs(3600);
        // Nothing is old enough yet: a blob whose record is on its way stays.
        let now = std::time::SystemTime::now();
        assert_eq!(collect_unreferenced(dir.path(), &referenced, grace, now).unwrap(), 0);
        // Two hours on: the unreferenced blobs and the temp file go, the referenced one and strangers stay.
        let later = now + Duration::from_secs(7200);
        assert_eq!(collect_unreferenced(dir.path(), &referenced, grace, later).unwrap(), 3);
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        left.sort();
        assert_eq!(left, [kept, "not-a-blob".to_string()]);
    }

    #[test]
    fn the_same_blob_kept_by_many_requests_at_once_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let sha = "d".repeat(64);
        let bytes = vec![7u8; 256 * 1024];
        std::thread::scope(|s| {
            let writers: Vec<_> = (0..8).map(|_| s.spawn(|| write_blob(dir.path(), &sha, &bytes))).collect();
            for w in writers {
                w.join().unwrap().unwrap();
            }
        });
        assert_eq!(std::fs::read(dir.path().join(&sha)).unwrap(), bytes);
        let names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert_eq!(names, [sha], "no temp file is left behind");
    }

    #[test]
    fn a_short_or_missing_secret_is_refused_with_a_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        assert!(read_secret(&path).unwrap_err().contains("cannot read"));
        std::fs::write(&path, "short\n").unwrap();
        assert!(read_secret(&path).unwrap_err().contains("openssl rand -hex 32"));
        std::fs::write(&path, format!("{}\n", "s".repeat(32))).unwrap();
        assert_eq!(read_secret(&path).unwrap(), "s".repeat(32));
    }
}
