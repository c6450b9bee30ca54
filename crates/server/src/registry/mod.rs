//! The registry service: functions, versions, aliases and their lifecycle, over the store.
//!
//! Every rule comes from `stoke-core`; this module sequences store and archive writes so that a crash at
//! any point leaves the last acknowledged state intact. Methods are synchronous (the store is); the HTTP
//! layer runs them on the blocking pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use stoke_core::lifecycle::{next_state, LifecycleContext, LifecycleEvent};
use stoke_core::{
    AccountId, AliasName, AliasRouting, ConfigPatch, FunctionConfig, FunctionName, FunctionRef, IllegalTransition,
    LifecycleState, NodeLimits, Qualifier, RefError, ValidationError,
};
use stoke_store::archive::{self, ArchiveError, ArchiveLimits};
use stoke_store::{
    AliasRecord, CodeStore, EventConfigRecord, EventRecord, EventState, FunctionRecord, FunctionStore, ImageFiles,
    LayerFiles, Store, StoreError, VersionRecord, LATEST_DIR,
};

mod layers;

pub use layers::{layer_view_arn, RESERVED_IMAGE};

/// Where the registry keeps files: code archives, unpacked layers, imported images.
#[derive(Debug, Clone)]
pub struct RegistryFiles {
    pub code: CodeStore,
    pub layers: LayerFiles,
    pub images: ImageFiles,
}

/// Why a registry operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Reference(#[from] RefError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Image(#[from] stoke_store::ImageError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    /// An event invoke config's destination that cannot be used; `field` is `on_success` or `on_failure`,
    /// and `pattern` says it is not an ARN at all (Lambda's `ValidationException`, not its
    /// `InvalidParameterValueException`).
    #[error("{message}")]
    Destination { field: &'static str, pattern: bool, message: String },
    /// An ARN names an account other than the caller's.
    #[error("the reference names account {named}, but your credentials belong to account {caller}; you can only use your own account's functions")]
    CrossAccount { named: AccountId, caller: AccountId },
    #[error("{0}")]
    ConcurrentModification(String),
    /// A precondition the caller set (the code's hash, a revision) does not hold.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error(transparent)]
    Store(StoreError),
}

impl RegistryError {
    /// The store cannot take the operation now (unreachable, or its disk full): the same operation may
    /// succeed later without change.
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Store(e) if e.is_full() || matches!(e, StoreError::Unavailable(_)))
    }
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::Conflict(format!("{what} already exists")),
            StoreError::InUse(why) => Self::Conflict(why),
            StoreError::NotFound(what) => Self::NotFound(format!("{what} does not exist")),
            StoreError::RevisionMismatch(_) => Self::ConcurrentModification(e.to_string()),
            other => Self::Store(other),
        }
    }
}

impl From<std::io::Error> for RegistryError {
    fn from(e: std::io::Error) -> Self {
        Self::Store(StoreError::Io(e))
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// A reference resolved to the records it means.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub function: FunctionRecord,
    /// The published version, when the reference (or its alias) names one; `None` means `$LATEST`.
    pub version: Option<VersionRecord>,
    pub alias: Option<AliasRecord>,
}

impl Resolved {
    /// The configuration the reference runs with.
    pub fn config(&self) -> &FunctionConfig {
        self.version.as_ref().map_or(&self.function.config, |v| &v.config)
    }

    /// `$LATEST` or the version number.
    pub fn version_label(&self) -> String {
        self.version.as_ref().map_or_else(|| "$LATEST".to_string(), |v| v.version.to_string())
    }

    /// sha256 of the code the reference runs.
    pub fn code_sha256(&self) -> &str {
        archive_of(&self.function, self.version.as_ref()).1
    }
}

/// What a change requires of a function: its code (`CodeSha256` on `PublishVersion`) and its revision (`RevisionId`
/// on `PublishVersion`, `UpdateFunctionCode`, `UpdateFunctionConfiguration` and `DeleteFunction`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionIf {
    /// The code's SHA-256, hex.
    pub code_sha256: Option<String>,
    /// The function record's revision, as read (Lambda's `RevisionId` carries its low 32 bits).
    pub revision: Option<u32>,
}

impl FunctionIf {
    fn check(&self, f: &FunctionRecord) -> Result<()> {
        let actual = f.code.as_ref().map_or("", |c| c.sha256.as_str());
        if let Some(expected) = self.code_sha256.as_ref().filter(|e| !e.eq_ignore_ascii_case(actual)) {
            return Err(RegistryError::PreconditionFailed(format!(
                "the code of function {} changed: its SHA-256 is {actual}, the request expected {expected}; \
                 read the function again and publish the code you checked",
                f.name
            )));
        }
        match self.revision {
            Some(r) if u64::from(r) != f.revision & 0xffff_ffff => Err(RegistryError::PreconditionFailed(format!(
                "function {} changed since the RevisionId the request gives was read; read the function again \
                 (its RevisionId) and retry",
                f.name
            ))),
            _ => Ok(()),
        }
    }
}

/// A published version with the function as the publish left it.
#[derive(Debug, Clone)]
pub struct Published {
    pub function: FunctionRecord,
    pub version: VersionRecord,
}

/// The archive a function's `$LATEST` (no version) or a published version runs: (directory, sha256).
pub fn archive_of<'a>(function: &'a FunctionRecord, version: Option<&'a VersionRecord>) -> (String, &'a str) {
    match version {
        Some(v) => (v.version.to_string(), v.code.sha256.as_str()),
        None => (LATEST_DIR.to_string(), function.code.as_ref().map_or("", |c| c.sha256.as_str())),
    }
}

/// What the registry needs to know of, and tell, whatever runs functions.
pub trait RunningWork: Send + Sync {
    /// Invocations queued or running for a function: retirement waits for 0.
    fn in_flight(&self, account: &AccountId, function: &FunctionName) -> usize;
    /// The function's code, configuration or state changed: its current instances must take no new work.
    fn function_changed(&self, account: &AccountId, function: &FunctionName);
}

/// Where code archives are kept beyond this node. On one node only here ([`LocalOnly`]); in a cluster
/// (`cluster::Blobs`) a new archive is copied to enough peers before the record that refers to it is
/// committed, and a node fetches an archive it lacks from a peer, checking its sha256.
pub trait Replicas: Send + Sync {
    /// The archive at `path` (content `sha256`) was just written here: make it durable where it must be.
    fn stored(&self, path: &std::path::Path, sha256: &str) -> Result<(), StoreError>;
    /// The archive at `path` is about to be used here: bring it here if it is missing.
    fn fetch(&self, path: &std::path::Path, sha256: &str) -> Result<(), StoreError>;
    /// A file on this node holding archive `sha256`, fetched from a peer if needed, for files this node must
    /// build from it (a layer unpacked, an image imported); `None` when there is no other place than here.
    fn local_copy(&self, sha256: &str) -> Result<Option<std::path::PathBuf>, StoreError>;
    /// Where an upload being taken in (an image's tarball) is copied as it streams, to be kept with
    /// [`adopt`](Self::adopt); `None` when it need not be kept.
    fn spool(&self) -> Option<std::path::PathBuf>;
    /// The upload spooled at `spool` is archive `sha256`: keep it, and make it durable where it must be.
    fn adopt(&self, spool: &std::path::Path, sha256: &str) -> Result<(), StoreError>;
}

/// When `put_alias` may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasIf {
    /// Create or move it, whatever it points at now.
    Any,
    /// Create it; `Conflict` if it exists.
    Absent,
    /// Move it only if it is still at this revision (what the caller read); `PreconditionFailed` otherwise.
    Revision(u64),
}

/// One node: archives live only on its disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalOnly;

impl Replicas for LocalOnly {
    fn stored(&self, _: &std::path::Path, _: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn fetch(&self, _: &std::path::Path, _: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn local_copy(&self, _: &str) -> Result<Option<std::path::PathBuf>, StoreError> {
        Ok(None)
    }

    fn spool(&self) -> Option<std::path::PathBuf> {
        None
    }

    fn adopt(&self, _: &std::path::Path, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The function manager.
pub struct Registry {
    store: Arc<dyn Store>,
    /// The store's functions, versions and aliases, with environment variables sealed at rest once
    /// [`Registry::seal_environment`] gave a key (every function read and write goes through it).
    functions: Arc<dyn FunctionStore + Send + Sync>,
    code: CodeStore,
    layers: LayerFiles,
    images: ImageFiles,
    node: NodeLimits,
    archive_limits: ArchiveLimits,
    running: Arc<dyn RunningWork>,
    replicas: Arc<dyn Replicas>,
    /// Bumped by every change, so callers can cache resolutions and know when they are stale.
    generation: AtomicU64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("node", &self.node).finish_non_exhaustive()
    }
}

/// What becomes of a function's Event invocations: its retry rule and its destinations (ARNs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventRules {
    pub policy: stoke_core::event::EventPolicy,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
}

/// The wall clock the services stamp records with: the scheduler's system clock, the one place that reads it.
pub(crate) fn now_ms() -> i64 {
    use stoke_scheduler::clock::Clock;
    stoke_scheduler::clock::SystemClock.now_ms()
}

fn not_found_function(name: &FunctionName) -> RegistryError {
    RegistryError::NotFound(format!("function {name} does not exist in your account"))
}

/// Largest page a list call returns.
pub const MAX_PAGE: usize = 1000;

/// A page read one item long (`limit + 1`, to learn whether more follow), cut to `limit`, with the cursor of
/// the next page (`cursor_of` its last item) when more follow.
fn split_page<T, C>(mut page: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> C) -> (Vec<T>, Option<C>) {
    if page.len() <= limit {
        return (page, None);
    }
    page.truncate(limit);
    let next = page.last().map(cursor_of);
    (page, next)
}

fn check_limit(limit: usize) -> Result<()> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(ValidationError::new(
            "limit",
            format!("limit {limit} is not valid: it must be between 1 and {MAX_PAGE}"),
        )
        .into());
    }
    Ok(())
}

impl Registry {
    pub fn new(
        store: Arc<dyn Store>,
        files: RegistryFiles,
        node: NodeLimits,
        archive_limits: ArchiveLimits,
        running: Arc<dyn RunningWork>,
    ) -> Self {
        let RegistryFiles { code, layers, images } = files;
        Self {
            functions: store.clone(),
            store,
            code,
            layers,
            images,
            node,
            archive_limits,
            running,
            replicas: Arc::new(LocalOnly),
            generation: AtomicU64::new(0),
        }
    }

    /// Keeps archives where `replicas` says (a cluster's nodes) rather than on this node only.
    pub fn with_replicas(mut self, replicas: Arc<dyn Replicas>) -> Self {
        self.replicas = replicas;
        self
    }

    /// Seals functions' environment variables at rest with `keys` (stoke_store::sealed): every function and
    /// version written from now on is stored sealed, and every one read is handed back plain.
    pub fn seal_environment(mut self, keys: Arc<stoke_store::sealed::EnvKeys>) -> Self {
        self.functions = Arc::new(stoke_store::sealed::SealedFunctions::new(self.store.clone(), keys));
        self
    }

    /// Marks a change made elsewhere (another node of the cluster): resolutions and routes are read again.
    pub fn changed_elsewhere(&self) {
        self.bump_generation();
    }

    /// Brings the archive of a resolved reference to this node if it is not here (a cluster peer has it).
    pub fn ensure_archive(&self, resolved: &Resolved) -> Result<()> {
        let (_, sha) = archive_of(&resolved.function, resolved.version.as_ref());
        Ok(self.replicas.fetch(&self.archive_path(&resolved.function, resolved.version.as_ref()), sha)?)
    }

    /// The archive `sha256` of `$LATEST` was written: keep it where the replicas say before it is recorded.
    fn stored_latest(&self, account: &AccountId, name: &FunctionName, sha256: &str) -> Result<()> {
        Ok(self.replicas.stored(&self.code.path(account, name, LATEST_DIR, sha256), sha256)?)
    }

    /// Changes with every write; equal generations mean equal registry contents.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The store, for the services that keep their own records next to the functions (triggers).
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Marks a change that does not touch how functions run (a trigger added, say).
    pub(crate) fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Records a change; `runs_differently` also drains the function's instances.
    fn changed(&self, account: &AccountId, name: &FunctionName, runs_differently: bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if runs_differently {
            self.running.function_changed(account, name);
        }
    }

    /// The archive on disk of a resolved reference.
    pub fn archive_path(&self, function: &FunctionRecord, version: Option<&VersionRecord>) -> std::path::PathBuf {
        let (dir, sha) = archive_of(function, version);
        self.code.path(&function.account, &function.name, &dir, sha)
    }

    pub fn node_limits(&self) -> NodeLimits {
        self.node
    }

    pub fn archive_limits(&self) -> ArchiveLimits {
        self.archive_limits
    }

    /// Brings the registry to a consistent state after a crash: finishes interrupted updates (the old code
    /// is intact, since the new code is committed in one step), removes half-written and unreferenced
    /// archives, and deletes retired functions whose work has drained.
    ///
    /// With a `shared` store (a cluster), updates in progress may be another live node's: they are left alone.
    pub fn recover(&self, shared: bool) -> Result<RecoveryReport> {
        let mut report = RecoveryReport::default();
        let updating = if shared { Vec::new() } else { self.functions.functions_in_state(LifecycleState::Updating)? };
        for mut f in updating {
            let rev = f.revision;
            f.state = next_state(f.state, LifecycleEvent::FinishUpdate, LifecycleContext::default())?;
            f.revision += 1;
            self.functions.update_function(&f, rev)?;
            self.changed(&f.account, &f.name, false);
            report.interrupted_updates += 1;
        }
        let cleaned = self.code.reconcile(&self.functions.referenced_archives()?)?;
        report.temp_files_removed = cleaned.temp_files_removed;
        report.orphan_archives_removed = cleaned.orphans_removed;
        report.orphan_archives_removed += self.layers.reconcile(&self.store.referenced_layers()?)?;
        let images: Vec<String> = self.store.list_images()?.into_iter().map(|i| i.name).collect();
        report.orphan_archives_removed += self.images.reconcile(&images)?;
        report.retired_deleted = self.reap_retired()?;
        // A shared store requeues only the events this node had claimed.
        report.events_requeued = self.store.requeue_running_events()?;
        Ok(report)
    }

    /// Persists an Event invocation of a reference that resolves now; returns its request id.
    pub fn enqueue_event(&self, account: &AccountId, reference: &str, id: String, payload: Vec<u8>) -> Result<()> {
        self.resolve(account, reference)?;
        let now = now_ms();
        self.store.enqueue_event(&EventRecord::queued(id, account.clone(), reference.to_string(), payload, now))?;
        Ok(())
    }

    /// Event invocations due now, marked running.
    pub fn claim_events(&self, limit: usize) -> Result<Vec<EventRecord>> {
        Ok(self.store.claim_events(now_ms(), limit)?)
    }

    pub fn update_event(&self, event: &EventRecord) -> Result<()> {
        Ok(self.store.update_event(event)?)
    }

    /// Records an event's outcome and queues its invocation record for a destination, in one write.
    pub fn finish_event(&self, event: &EventRecord, follow_up: &EventRecord) -> Result<()> {
        Ok(self.store.finish_event(event, follow_up)?)
    }

    /// An Event invocation of the caller's, with its outcome.
    pub fn get_event(&self, account: &AccountId, id: &str) -> Result<EventRecord> {
        self.store
            .get_event(id)?
            .filter(|e| &e.account == account)
            .ok_or_else(|| RegistryError::NotFound(format!("event invocation {id} does not exist in your account")))
    }

    /// The rule for Event invocations of `reference`: its function's event invoke config for the qualifier
    /// the reference names (`$LATEST` when it names none), or Lambda's defaults and no destinations.
    pub fn event_rules(&self, account: &AccountId, reference: &str) -> Result<EventRules> {
        let r = self.parse_ref(account, reference)?;
        let qualifier = r.qualifier.unwrap_or(Qualifier::Latest).to_string();
        let config = self.functions.get_event_config(account, &r.name, &qualifier)?;
        Ok(config.map_or_else(Default::default, |c| EventRules {
            policy: stoke_core::event::EventPolicy::from_config(c.max_retries, c.max_age_s),
            on_success: c.on_success,
            on_failure: c.on_failure,
        }))
    }

    /// Sets the event invoke config of `name` for `qualifier` (which must exist): the fields given, and with
    /// `merge` (Lambda's Update…) the others as they were, else (Put…) Lambda's defaults for the others.
    /// `destinations` (on success, on failure), when given, replaces both; each must be a function or a
    /// state machine of the caller's that exists now, and not the function itself.
    pub fn put_event_config(
        &self,
        account: &AccountId,
        name: &FunctionName,
        qualifier: &str,
        (max_retries, max_age_s): (Option<u32>, Option<u32>),
        destinations: Option<(Option<String>, Option<String>)>,
        merge: bool,
    ) -> Result<EventConfigRecord> {
        self.resolve(account, &format!("{name}:{qualifier}"))?;
        if let Some((on_success, on_failure)) = &destinations {
            self.check_destination(account, name, "on_success", on_success.as_deref())?;
            self.check_destination(account, name, "on_failure", on_failure.as_deref())?;
        }
        let before = if merge { self.functions.get_event_config(account, name, qualifier)? } else { None };
        let (on_success, on_failure) = match destinations {
            Some(d) => d,
            None => before.as_ref().map(|b| (b.on_success.clone(), b.on_failure.clone())).unwrap_or_default(),
        };
        let config = EventConfigRecord {
            account: account.clone(),
            function: name.clone(),
            qualifier: qualifier.to_string(),
            max_retries: max_retries.or(before.as_ref().and_then(|b| b.max_retries)),
            max_age_s: max_age_s.or(before.as_ref().and_then(|b| b.max_age_s)),
            on_success,
            on_failure,
            modified_ms: now_ms(),
        };
        self.functions.put_event_config(&config)?;
        Ok(config)
    }

    /// Whether a function or state machine a destination or a schedule's target names exists now.
    fn target_exists(&self, account: &AccountId, target: &stoke_core::destination::Destination) -> Result<bool> {
        use stoke_core::destination::Destination;
        match target {
            Destination::Function(r) => {
                let reference = match &r.qualifier {
                    Some(q) => format!("{}:{q}", r.name),
                    None => r.name.to_string(),
                };
                match self.resolve(account, &reference) {
                    Ok(_) => Ok(true),
                    Err(RegistryError::NotFound(_)) => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Destination::StateMachine { name, .. } => Ok(self.store.get_workflow(account, name)?.is_some()),
        }
    }

    /// A schedule's target: a function or state machine ARN of the caller's that exists now; the refusal
    /// says what is wrong.
    pub fn check_target(&self, account: &AccountId, arn: &str) -> std::result::Result<(), String> {
        use stoke_core::destination::{Destination, DestinationError};
        let form = stoke_core::destination::FORMS;
        match Destination::parse(arn, account) {
            Err(DestinationError::Pattern | DestinationError::Unsupported) => {
                Err(format!("the target {arn:?} is not a function or state machine ARN ({form})"))
            }
            Err(DestinationError::Invalid) => {
                Err(format!("the target {arn} is not a function or state machine of your account ({form})"))
            }
            Ok(d) => match self.target_exists(account, &d) {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!("the target {arn} does not exist: create it first")),
                Err(e) => Err(e.to_string()),
            },
        }
    }

    /// A destination must be a function or state machine of the caller's that exists, and not the function
    /// itself; refused with Lambda's sentences.
    fn check_destination(
        &self,
        account: &AccountId,
        function: &FunctionName,
        field: &'static str,
        arn: Option<&str>,
    ) -> Result<()> {
        use stoke_core::destination::{Destination, DestinationError, ARN_PATTERN};
        let Some(arn) = arn else { return Ok(()) };
        let invalid = |pattern: bool, message: String| RegistryError::Destination { field, pattern, message };
        let lambda_field = if field == "on_success" { "onSuccess" } else { "onFailure" };
        let not_there = || {
            invalid(
                false,
                format!(
                    "The destination ARN {arn} is invalid. Name a function or a state machine of your account that \
                     exists ({}).",
                    stoke_core::destination::FORMS
                ),
            )
        };
        match Destination::parse(arn, account) {
            Err(DestinationError::Pattern) => Err(invalid(
                true,
                format!(
                    "1 validation error detected: Value '{arn}' at 'destinationConfig.{lambda_field}.destination' \
                     failed to satisfy constraint: Member must satisfy regular expression pattern: {ARN_PATTERN}"
                ),
            )),
            Err(DestinationError::Unsupported) => Err(invalid(
                false,
                format!(
                    "The provided destination config DestinationConfig({lambda_field}=Destination(destination={arn})) \
                     is invalid. stoke delivers to functions and state machines only (SQS, SNS, EventBridge and S3 \
                     destinations are not available); failed events are always kept in the failed-event store."
                ),
            )),
            Err(DestinationError::Invalid) => Err(not_there()),
            Ok(d) if d.is_function(function) => {
                Err(invalid(false, "You can't specify the function as a destination for itself.".into()))
            }
            Ok(d) => match self.target_exists(account, &d)? {
                true => Ok(()),
                false => Err(not_there()),
            },
        }
    }

    /// The event invoke config of `name` for `qualifier`.
    pub fn get_event_config(
        &self,
        account: &AccountId,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<EventConfigRecord> {
        self.load(account, name)?;
        self.functions.get_event_config(account, name, qualifier)?.ok_or_else(|| {
            RegistryError::NotFound(format!("function {name} has no event invoke config for {qualifier}"))
        })
    }

    /// Every event invoke config of `name`, by qualifier.
    pub fn list_event_configs(&self, account: &AccountId, name: &FunctionName) -> Result<Vec<EventConfigRecord>> {
        self.load(account, name)?;
        Ok(self.functions.list_event_configs(account, name)?)
    }

    /// Removes the event invoke config of `name` for `qualifier` (its events follow Lambda's defaults again).
    pub fn delete_event_config(&self, account: &AccountId, name: &FunctionName, qualifier: &str) -> Result<()> {
        self.load(account, name)?;
        if !self.functions.delete_event_config(account, name, qualifier)? {
            return Err(RegistryError::NotFound(format!("function {name} has no event invoke config for {qualifier}")));
        }
        Ok(())
    }

    /// The caller's failed Event invocations (the failed-event store), a page after `cursor`, and the
    /// cursor of the next page.
    pub fn failed_events(
        &self,
        account: &AccountId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<EventRecord>, Option<String>)> {
        check_limit(limit)?;
        let page = self.store.failed_events(account, cursor, limit + 1)?;
        Ok(split_page(page, limit, |e| e.id.clone()))
    }

    /// The caller's failed event `id`; `Conflict` naming its state when it is not failed.
    fn failed_event(&self, account: &AccountId, id: &str) -> Result<EventRecord> {
        let e = self.get_event(account, id)?;
        if e.state != EventState::Failed {
            return Err(RegistryError::Conflict(format!(
                "event invocation {id} is {}, not failed: only a failed one is redriven or deleted",
                e.state.as_str()
            )));
        }
        Ok(e)
    }

    /// Queues one failed Event invocation again, its retries counted afresh; the event as queued.
    pub fn redrive_event(&self, account: &AccountId, id: &str) -> Result<EventRecord> {
        self.failed_event(account, id)?;
        self.store
            .redrive_event(id, now_ms())?
            .ok_or_else(|| RegistryError::Conflict(format!("event invocation {id} changed meanwhile; look again")))
    }

    /// Deletes one failed Event invocation from the failed-event store.
    pub fn delete_failed_event(&self, account: &AccountId, id: &str) -> Result<()> {
        self.failed_event(account, id)?;
        if !self.store.delete_failed_event(id)? {
            return Err(RegistryError::Conflict(format!("event invocation {id} changed meanwhile; look again")));
        }
        Ok(())
    }

    /// Applies `each` (a redrive or a delete; true when it took) to every failed Event invocation of the
    /// caller; how many it took.
    fn each_failed(&self, account: &AccountId, mut each: impl FnMut(&EventRecord) -> Result<bool>) -> Result<usize> {
        let mut done = 0;
        let mut cursor: Option<String> = None;
        loop {
            let page = self.store.failed_events(account, cursor.as_deref(), MAX_PAGE)?;
            for e in &page {
                done += usize::from(each(e)?);
            }
            match page.last() {
                Some(last) if page.len() == MAX_PAGE => cursor = Some(last.id.clone()),
                _ => return Ok(done),
            }
        }
    }

    /// Queues every failed Event invocation of the caller again; the references of those it queued.
    pub fn redrive_failed(&self, account: &AccountId) -> Result<Vec<String>> {
        let now = now_ms();
        let mut redriven = Vec::new();
        self.each_failed(account, |e| {
            let queued = self.store.redrive_event(&e.id, now)?.is_some();
            if queued {
                redriven.push(e.reference.clone());
            }
            Ok(queued)
        })?;
        Ok(redriven)
    }

    /// Deletes every failed Event invocation of the caller; how many.
    pub fn purge_failed(&self, account: &AccountId) -> Result<usize> {
        self.each_failed(account, |e| Ok(self.store.delete_failed_event(&e.id)?))
    }

    /// References that should have warm instances without traffic: every function whose `$LATEST` sets
    /// `min_warm`, and every alias whose version does.
    pub fn warm_targets(&self) -> Result<Vec<(AccountId, String)>> {
        let mut out = Vec::new();
        for state in [LifecycleState::Latest, LifecycleState::Published] {
            for f in self.functions.functions_in_state(state)? {
                if f.config.min_warm > 0 {
                    out.push((f.account.clone(), f.name.to_string()));
                }
                for alias in self.functions.list_aliases(&f.account, &f.name)? {
                    let version_warm = match alias.routing.version.parse::<u64>() {
                        Ok(n) => {
                            self.functions.get_version(&f.account, &f.name, n)?.is_some_and(|v| v.config.min_warm > 0)
                        }
                        Err(_) => f.config.min_warm > 0,
                    };
                    if version_warm {
                        out.push((f.account.clone(), format!("{}:{}", f.name, alias.name)));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Deletes retired functions that have no work in flight; returns how many.
    pub fn reap_retired(&self) -> Result<usize> {
        let mut n = 0;
        for f in self.functions.functions_in_state(LifecycleState::Retired)? {
            if self.running.in_flight(&f.account, &f.name) == 0
                && self.functions.delete_function(&f.account, &f.name)?
            {
                self.code.remove_function(&f.account, &f.name)?;
                self.changed(&f.account, &f.name, true);
                tracing::info!(account = %f.account, function = %f.name, "retired function deleted");
                n += 1;
            }
        }
        Ok(n)
    }

    fn load(&self, account: &AccountId, name: &FunctionName) -> Result<FunctionRecord> {
        self.functions.get_function(account, name)?.ok_or_else(|| not_found_function(name))
    }

    /// Parses a reference and checks it names the caller's account.
    pub fn parse_ref(&self, caller: &AccountId, reference: &str) -> Result<FunctionRef> {
        let r = FunctionRef::parse(reference)?;
        if let Some(named) = &r.account {
            if named != caller {
                return Err(RegistryError::CrossAccount { named: named.clone(), caller: caller.clone() });
            }
        }
        Ok(r)
    }

    /// Parses an unqualified function name or ARN (for operations on the function as a whole).
    pub fn parse_function_name(&self, caller: &AccountId, reference: &str) -> Result<FunctionName> {
        let r = self.parse_ref(caller, reference)?;
        if let Some(q) = r.qualifier {
            return Err(ValidationError::new(
                "function",
                format!("this operation applies to the whole function; drop the qualifier :{q} from {reference:?}"),
            )
            .into());
        }
        Ok(r.name)
    }

    /// Resolves `name`, `name:version`, `name:alias` or an ARN to records.
    pub fn resolve(&self, caller: &AccountId, reference: &str) -> Result<Resolved> {
        let r = self.parse_ref(caller, reference)?;
        let function = self.load(caller, &r.name)?;
        let (version, alias) = match r.qualifier {
            None | Some(Qualifier::Latest) => (None, None),
            Some(Qualifier::Version(n)) => (Some(self.load_version(caller, &r.name, n)?), None),
            Some(Qualifier::Alias(a)) => {
                let alias = self.functions.get_alias(caller, &r.name, a.as_str())?.ok_or_else(|| {
                    RegistryError::NotFound(format!("alias {a} of function {} does not exist", r.name))
                })?;
                let version = match alias.routing.version.as_str() {
                    "$LATEST" => None,
                    v => Some(self.load_version(caller, &r.name, v.parse().unwrap_or(0))?),
                };
                (version, Some(alias))
            }
        };
        Ok(Resolved { function, version, alias })
    }

    fn load_version(&self, account: &AccountId, name: &FunctionName, n: u64) -> Result<VersionRecord> {
        self.functions
            .get_version(account, name, n)?
            .ok_or_else(|| RegistryError::NotFound(format!("version {n} of function {name} does not exist")))
    }

    /// Creates a function from a configuration and a code archive (zip or tar.gz). With `publish`, its
    /// first version is written with it (Lambda's `CreateFunction` with `Publish`): both or neither.
    pub fn create_function(
        &self,
        account: &AccountId,
        name: &str,
        patch: ConfigPatch,
        code: &[u8],
        publish: bool,
    ) -> Result<(FunctionRecord, Option<VersionRecord>)> {
        let name = FunctionName::parse(name)?;
        let mut config = patch.into_new_config()?;
        config.validate(&self.node)?;
        self.check_references(account, &mut config)?;
        if self.functions.get_function(account, &name)?.is_some() {
            return Err(RegistryError::Conflict(format!(
                "function {name} already exists in your account; update it, or pick another name"
            )));
        }
        let zip = archive::normalize(code, &self.archive_limits)?;
        let code_ref = self.code.put(account, &name, LATEST_DIR, &zip)?;
        self.stored_latest(account, &name, &code_ref.sha256)?;
        let now = now_ms();
        let mut record = FunctionRecord {
            account: account.clone(),
            name,
            config,
            state: LifecycleState::Latest,
            code: Some(code_ref),
            revision: 1,
            latest_published: None,
            last_version: 0,
            created_ms: now,
            modified_ms: now,
        };
        let version = if publish { self.next_version(&mut record, None)? } else { None };
        match &version {
            Some(v) => self.functions.insert_published_function(&record, v)?,
            None => self.functions.insert_function(&record)?,
        }
        self.changed(account, &record.name, false);
        Ok((record, version))
    }

    pub fn get_function(&self, account: &AccountId, name: &FunctionName) -> Result<FunctionRecord> {
        self.load(account, name)
    }

    /// A page of the account's functions after `cursor`, and the cursor of the next page.
    pub fn list_functions(
        &self,
        account: &AccountId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<FunctionRecord>, Option<String>)> {
        check_limit(limit)?;
        let page = self.functions.list_functions(account, cursor, limit + 1)?;
        Ok(split_page(page, limit, |f| f.name.to_string()))
    }

    /// Changes `$LATEST`'s configuration.
    pub fn update_config(
        &self,
        account: &AccountId,
        name: &FunctionName,
        patch: ConfigPatch,
    ) -> Result<FunctionRecord> {
        self.update_config_if(account, name, patch, &FunctionIf::default())
    }

    /// [`Registry::update_config`] if the function is still as `cond` requires (checked on the record the
    /// update writes, which carries that record's revision).
    pub fn update_config_if(
        &self,
        account: &AccountId,
        name: &FunctionName,
        patch: ConfigPatch,
        cond: &FunctionIf,
    ) -> Result<FunctionRecord> {
        if patch.is_empty() {
            return Err(ValidationError::new(
                "configuration",
                "the update changes nothing: give at least one field to change",
            )
            .into());
        }
        let mut f = self.load(account, name)?;
        cond.check(&f)?;
        let ctx = LifecycleContext { latest_is_published: f.latest_published.is_some() };
        let updating = next_state(f.state, LifecycleEvent::BeginUpdate, ctx)?;
        patch.check_update(&f.config)?;
        let mut config = patch.apply(&f.config);
        config.validate(&self.node)?;
        if config.layers != f.config.layers || config.base_image != f.config.base_image {
            self.check_references(account, &mut config)?;
        }
        let rev = f.revision;
        f.state = next_state(updating, LifecycleEvent::FinishUpdate, ctx)?;
        f.config = config;
        f.latest_published = None;
        f.revision += 1;
        f.modified_ms = now_ms();
        self.functions.update_function(&f, rev)?;
        self.changed(account, name, true);
        Ok(f)
    }

    /// Replaces `$LATEST`'s code. The function is UPDATING (invocations held) while the archive is written.
    /// With `publish`, the new code's version is written in the same step that ends the update (Lambda's
    /// `UpdateFunctionCode` with `Publish`): no moment shows the new code unpublished.
    pub fn update_code(
        &self,
        account: &AccountId,
        name: &FunctionName,
        code: &[u8],
        publish: bool,
    ) -> Result<(FunctionRecord, Option<VersionRecord>)> {
        self.update_code_if(account, name, code, publish, &FunctionIf::default())
    }

    /// [`Registry::update_code`] if the function is still as `cond` requires.
    pub fn update_code_if(
        &self,
        account: &AccountId,
        name: &FunctionName,
        code: &[u8],
        publish: bool,
        cond: &FunctionIf,
    ) -> Result<(FunctionRecord, Option<VersionRecord>)> {
        let mut f = self.load(account, name)?;
        cond.check(&f)?;
        let ctx = LifecycleContext { latest_is_published: f.latest_published.is_some() };
        let updating = next_state(f.state, LifecycleEvent::BeginUpdate, ctx)?;
        let zip = archive::normalize(code, &self.archive_limits)?;
        let before = f.clone();
        f.state = updating;
        f.revision += 1;
        self.functions.update_function(&f, before.revision)?;
        self.changed(account, name, false);
        let written = self
            .code
            .put(account, name, LATEST_DIR, &zip)
            .map_err(RegistryError::from)
            .and_then(|c| self.stored_latest(account, name, &c.sha256).map(|()| c));
        let code_ref = match written {
            Ok(c) => c,
            Err(e) => {
                // Put the function back as it was; the old archive was never touched.
                let mut back = before.clone();
                back.revision = f.revision + 1;
                self.functions.update_function(&back, f.revision)?;
                self.changed(account, name, false);
                return Err(e);
            }
        };
        let rev = f.revision;
        f.state = next_state(updating, LifecycleEvent::FinishUpdate, ctx)?;
        let changed = f.code.as_ref().map(|c| &c.sha256) != Some(&code_ref.sha256);
        f.code = Some(code_ref.clone());
        if changed {
            f.latest_published = None;
        } else if before.state == LifecycleState::Published {
            f.state = LifecycleState::Published;
        }
        f.revision += 1;
        f.modified_ms = now_ms();
        let version = match publish.then(|| self.next_version(&mut f, None)).transpose() {
            Ok(v) => v.flatten(),
            Err(e) => {
                // The update still ends; only the publish is refused (`f` is untouched by a failed one).
                self.functions.update_function(&f, rev)?;
                self.changed(account, name, true);
                return Err(e);
            }
        };
        match &version {
            Some(v) => self.functions.publish_version(&f, rev, v)?,
            None => self.functions.update_function(&f, rev)?,
        }
        self.changed(account, name, true);
        self.code.prune(account, name, LATEST_DIR, &code_ref.sha256)?;
        let version = match (version, publish) {
            (Some(v), _) => Some(v),
            // The code was the published one already: that version is the answer.
            (None, true) => Some(self.latest_version(&f)?),
            (None, false) => None,
        };
        Ok((f, version))
    }

    /// The archive bytes of a reference.
    pub fn read_code(&self, account: &AccountId, reference: &str) -> Result<(Resolved, Vec<u8>)> {
        let resolved = self.resolve(account, reference)?;
        self.ensure_archive(&resolved)?;
        let (dir, sha) = archive_of(&resolved.function, resolved.version.as_ref());
        let bytes = self.code.read(account, &resolved.function.name, &dir, sha)?;
        Ok((resolved, bytes))
    }

    /// Deletes a function, its versions, aliases and archives.
    pub fn delete_function(&self, account: &AccountId, name: &FunctionName) -> Result<()> {
        self.delete_function_if(account, name, &FunctionIf::default())
    }

    /// [`Registry::delete_function`] if the function is still as `cond` requires.
    pub fn delete_function_if(&self, account: &AccountId, name: &FunctionName, cond: &FunctionIf) -> Result<()> {
        if *cond != FunctionIf::default() {
            cond.check(&self.load(account, name)?)?;
        }
        if !self.functions.delete_function(account, name)? {
            return Err(not_found_function(name));
        }
        self.changed(account, name, true);
        self.code.remove_function(account, name)?;
        Ok(())
    }

    /// Deletes published `version` of a function (Lambda's `DeleteFunction` with a version `Qualifier`): its
    /// record and its archive. Refused while an alias routes to it; `$LATEST` goes only with the function.
    /// When `$LATEST` was that version, it is unpublished again (the next publish makes a new version).
    pub fn delete_version(&self, account: &AccountId, name: &FunctionName, version: u64) -> Result<()> {
        let mut f = self.load(account, name)?;
        let rev = f.revision;
        if f.latest_published == Some(version) {
            f.latest_published = None;
            if f.state == LifecycleState::Published {
                f.state = LifecycleState::Latest;
            }
        }
        f.revision += 1;
        f.modified_ms = now_ms();
        if !self.functions.delete_version(&f, rev, version)? {
            return Err(RegistryError::NotFound(format!("function {name} has no version {version}")));
        }
        self.changed(account, name, true);
        self.code.remove_version(account, name, &version.to_string())?;
        Ok(())
    }

    /// Publishes `$LATEST` as a new immutable version, or returns the version it already equals. What
    /// `cond` requires is checked on the record the publish writes, and the write carries that record's
    /// revision: a change in between fails it rather than publishing code the caller did not check.
    pub fn publish(
        &self,
        account: &AccountId,
        name: &FunctionName,
        description: Option<String>,
        cond: &FunctionIf,
    ) -> Result<Published> {
        let mut f = self.load(account, name)?;
        cond.check(&f)?;
        let rev = f.revision;
        match self.next_version(&mut f, description)? {
            Some(version) => {
                self.functions.publish_version(&f, rev, &version)?;
                self.changed(account, name, false);
                Ok(Published { function: f, version })
            }
            None => Ok(Published { version: self.latest_version(&f)?, function: f }),
        }
    }

    /// The version `$LATEST` is published as (`next_version` found nothing new to publish).
    fn latest_version(&self, f: &FunctionRecord) -> Result<VersionRecord> {
        self.load_version(&f.account, &f.name, f.latest_published.unwrap_or_default())
    }

    /// Turns `f` (as loaded, or as an update leaves it) into the record that publishes `$LATEST`, and
    /// the version to write with it; `None` when `$LATEST` is already published and `f` is unchanged.
    /// The archive is linked into the version's directory first; the caller writes both in one step.
    fn next_version(&self, f: &mut FunctionRecord, description: Option<String>) -> Result<Option<VersionRecord>> {
        let ctx = LifecycleContext { latest_is_published: f.latest_published.is_some() };
        let state = next_state(f.state, LifecycleEvent::Publish, ctx)?;
        if f.latest_published.is_some() {
            return Ok(None);
        }
        let description = description.unwrap_or_default();
        if description.chars().count() > stoke_core::config::MAX_DESCRIPTION_LEN {
            return Err(ValidationError::new("description", "description is longer than 256 characters").into());
        }
        let name = f.name.clone();
        let code =
            f.code.clone().ok_or_else(|| RegistryError::Conflict(format!("function {name} has no code to publish")))?;
        let number = f.last_version + 1;
        self.replicas.fetch(&self.code.path(&f.account, &name, LATEST_DIR, &code.sha256), &code.sha256)?;
        self.code.link(&f.account, &name, LATEST_DIR, &number.to_string(), &code.sha256)?;
        let version = VersionRecord {
            account: f.account.clone(),
            function: name,
            version: number,
            config: f.config.clone(),
            code,
            description,
            created_ms: now_ms(),
        };
        f.state = state;
        f.last_version = number;
        f.latest_published = Some(number);
        f.revision += 1;
        Ok(Some(version))
    }

    pub fn list_versions(
        &self,
        account: &AccountId,
        name: &FunctionName,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<VersionRecord>, Option<u64>)> {
        check_limit(limit)?;
        self.load(account, name)?;
        let page = self.functions.list_versions(account, name, after, limit + 1)?;
        Ok(split_page(page, limit, |v| v.version))
    }

    /// Applies a user lifecycle action (block, unblock, retire).
    pub fn lifecycle(&self, account: &AccountId, name: &FunctionName, event: LifecycleEvent) -> Result<FunctionRecord> {
        let mut f = self.load(account, name)?;
        let ctx = LifecycleContext { latest_is_published: f.latest_published.is_some() };
        let rev = f.revision;
        f.state = next_state(f.state, event, ctx)?;
        f.revision += 1;
        f.modified_ms = now_ms();
        self.functions.update_function(&f, rev)?;
        // Blocking or retiring stops work at once; unblocking lets the next invocation start fresh.
        self.changed(account, name, event != LifecycleEvent::Unblock);
        Ok(f)
    }

    fn check_version_exists(&self, account: &AccountId, name: &FunctionName, field: &str, version: &str) -> Result<()> {
        if version == "$LATEST" {
            return Ok(());
        }
        match version.parse::<u64>() {
            Ok(n) if n >= 1 => self.load_version(account, name, n).map(|_| ()),
            _ => Err(ValidationError::new(
                field,
                format!("{field} {version:?} is not valid: use $LATEST or a published version number"),
            )
            .into()),
        }
    }

    /// Creates an alias, or moves it when `create_only` is false and it exists.
    pub fn put_alias(
        &self,
        account: &AccountId,
        name: &FunctionName,
        alias: &str,
        routing: AliasRouting,
        description: Option<String>,
        only: AliasIf,
    ) -> Result<AliasRecord> {
        let alias = AliasName::parse(alias)?;
        let f = self.load(account, name)?;
        if f.state == LifecycleState::Retired {
            return Err(RegistryError::Conflict(format!("function {name} is RETIRED; its aliases cannot change")));
        }
        routing.validate().map_err(|e| ValidationError::new(e.field, e.message))?;
        self.check_version_exists(account, name, "version", &routing.version)?;
        if let Some(extra) = &routing.additional_version {
            self.check_version_exists(account, name, "additional_version", extra)?;
        }
        let now = now_ms();
        let existing = self.functions.get_alias(account, name, alias.as_str())?;
        match (only, &existing) {
            (AliasIf::Absent, Some(_)) => {
                return Err(RegistryError::Conflict(format!("alias {alias} of function {name} already exists")))
            }
            (AliasIf::Revision(expected), found) if found.as_ref().map(|a| a.revision) != Some(expected) => {
                return Err(RegistryError::PreconditionFailed(format!(
                    "alias {alias} of function {name} is not at revision {expected} any more (another request \
                     moved it); read it again and retry"
                )))
            }
            _ => {}
        }
        let record = AliasRecord {
            account: account.clone(),
            function: name.clone(),
            name: alias,
            description: description.or_else(|| existing.as_ref().map(|a| a.description.clone())).unwrap_or_default(),
            routing,
            revision: existing.as_ref().map_or(1, |a| a.revision + 1),
            created_ms: existing.as_ref().map_or(now, |a| a.created_ms),
            modified_ms: now,
        };
        self.functions.put_alias(&record, existing.map(|a| a.revision))?;
        self.changed(account, name, false);
        Ok(record)
    }

    pub fn get_alias(&self, account: &AccountId, name: &FunctionName, alias: &str) -> Result<AliasRecord> {
        self.load(account, name)?;
        self.store
            .get_alias(account, name, alias)?
            .ok_or_else(|| RegistryError::NotFound(format!("alias {alias} of function {name} does not exist")))
    }

    pub fn list_aliases(&self, account: &AccountId, name: &FunctionName) -> Result<Vec<AliasRecord>> {
        self.load(account, name)?;
        Ok(self.functions.list_aliases(account, name)?)
    }

    pub fn delete_alias(&self, account: &AccountId, name: &FunctionName, alias: &str) -> Result<()> {
        self.load(account, name)?;
        if !self.functions.delete_alias(account, name, alias)? {
            return Err(RegistryError::NotFound(format!("alias {alias} of function {name} does not exist")));
        }
        self.changed(account, name, false);
        Ok(())
    }
}

/// What [`Registry::recover`] found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub interrupted_updates: usize,
    pub temp_files_removed: usize,
    pub orphan_archives_removed: usize,
    pub retired_deleted: usize,
    /// Event invocations that were running at the crash and will run again.
    pub events_requeued: usize,
}

#[cfg(test)]
mod tests;
