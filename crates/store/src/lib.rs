//! stoke's persistence. Nothing outside this crate knows SQL, etcd keys, or where archives sit on disk.
//!
//! - [`Store`]: every record the server keeps, behind traits so a cluster backend can replace the embedded
//!   one. It is the union of one small trait per aggregate: [`AccountStore`], [`FunctionStore`] (versions and
//!   aliases with their function), [`LayerStore`] (layers and images), [`TriggerStore`], [`WorkflowStore`]
//!   (executions and their history with their workflow), [`EventStore`] (the asynchronous queue),
//!   [`StatStore`] and [`TuneStore`]. [`prelude`] brings them all into scope.
//! - [`SqliteStore`]: the embedded backend (WAL, migrations in `migrations/*.sql`, one transaction per
//!   change), one module per aggregate.
//! - [`EtcdStore`]: the cluster backend: every record in etcd, one transaction per change guarded by
//!   revisions, one module per aggregate (keyspace in docs/cluster.md).
//! - [`CodeStore`]: code archives on disk at `<data>/code/<account>/<function>/<version>/<sha256>.zip`,
//!   written to a temp file and renamed so a crash never leaves half an archive.
//! - [`archive`]: checks an uploaded archive and turns a tar.gz into a zip.

pub mod archive;
mod code;
mod etcd;
mod files;
mod records;
pub mod sealed;
mod sqlite;

pub use code::{sha256_hex, CodeStore, LATEST_DIR};
pub use etcd::{
    in_background, EtcdStore, Membership, NodeGpu, NodeRecord, NodeStatus, OwnerChange, QueueName, QueueOwner,
    Reservation, MAX_TXN_OPS,
};
pub use files::{ImageError, ImageFiles, LayerFiles, IMAGE_MOUNT_FILES, IMAGE_MOUNT_POINTS};
pub use records::{
    AccountKeys, AccountRecord, AliasRecord, CodeRef, DurableEventRow, DurableOpRow, DurableRecord, EventConfigRecord,
    EventRecord, EventState, ExecutionRecord, ExecutionStatus, FunctionRecord, HistoryRow, ImageRecord, LayerRecord,
    MapRunRecord, ScheduleRecord, StatRecord, TriggerKind, TriggerRecord, TuneRecord, VersionRecord, WorkflowRecord,
};
pub use sqlite::SqliteStore;

use stoke_core::{AccountId, FunctionName, LayerName, LifecycleState};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record already exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// The record changed since it was read (optimistic concurrency).
    #[error("{0} was changed by another request; read it again and retry")]
    RevisionMismatch(String),
    /// Other records depend on the one to remove (the sentence says which, and what to do).
    #[error("{0}")]
    InUse(String),
    /// The record does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The store could not be reached or did not answer in time (etcd down, a partition); retrying later may
    /// succeed. A write that failed this way may or may not have been committed.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store refused the request as such (too large, malformed): retrying it does not help.
    #[error("the store refused the request: {0}")]
    Refused(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    #[error("file system error: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// The disk is full (or the quota spent): nothing was written, and the same write succeeds once space is
    /// freed. SQLite rolls its transaction back, and archives are written to a temporary file first.
    pub fn is_full(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => e.code == rusqlite::ErrorCode::DiskFull,
            StoreError::Io(e) => is_disk_full(e),
            _ => false,
        }
    }
}

/// Whether an I/O error says the file system has no room (ENOSPC, or EDQUOT: a quota spent).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything the server persists, as one handle (`Arc<dyn Store>`). Each aggregate has its own trait so a
/// backend (or a reader) deals with one group of tables at a time; every method is one transaction: it happens
/// entirely or not at all.
pub trait Store:
    AccountStore
    + FunctionStore
    + LayerStore
    + TriggerStore
    + WorkflowStore
    + EventStore
    + StatStore
    + TuneStore
    + ScheduleStore
    + DurableStore
    + Send
    + Sync
{
}

impl<T> Store for T where
    T: AccountStore
        + FunctionStore
        + LayerStore
        + TriggerStore
        + WorkflowStore
        + EventStore
        + StatStore
        + TuneStore
        + ScheduleStore
        + DurableStore
        + Send
        + Sync
{
}

/// The store's traits, for code that calls them on a concrete backend or a generic one (on `dyn Store` the
/// aggregate methods resolve without them).
pub mod prelude {
    pub use crate::{
        AccountStore, DurableStore, EventStore, FunctionStore, LayerStore, ScheduleStore, StatStore, Store,
        TriggerStore, TuneStore, WorkflowStore,
    };
}

/// Tenants and their credentials.
pub trait AccountStore {
    fn create_account(&self, account: &AccountRecord, keys: &AccountKeys) -> Result<()>;
    fn get_account(&self, id: &AccountId) -> Result<Option<AccountRecord>>;
    fn list_accounts(&self) -> Result<Vec<AccountRecord>>;
    /// Every account with its keys, to build the authentication cache at start.
    fn list_account_keys(&self) -> Result<Vec<(AccountRecord, AccountKeys)>>;
}

/// Refuses to delete `version` of `f` while one of its `aliases` routes to it (`InUse`, naming them).
pub(crate) fn refuse_routed_version(aliases: &[AliasRecord], f: &FunctionRecord, version: u64) -> Result<()> {
    let v = version.to_string();
    let routing: Vec<&str> = aliases.iter().filter(|a| a.routing.routes_to(&v)).map(|a| a.name.as_str()).collect();
    if routing.is_empty() {
        return Ok(());
    }
    Err(StoreError::InUse(format!(
        "version {version} of function {} cannot be deleted: aliases route to it ({}); point them at another \
         version first",
        f.name,
        routing.join(", ")
    )))
}

/// Functions with their published versions and aliases: versions and aliases live and die with their
/// function, and publishing changes a function and adds a version in one transaction.
pub trait FunctionStore {
    /// Inserts a new function; `Conflict` if the name is taken in that account.
    fn insert_function(&self, function: &FunctionRecord) -> Result<()>;
    /// Inserts a new function with its first version (create with publish): both or neither.
    fn insert_published_function(&self, function: &FunctionRecord, version: &VersionRecord) -> Result<()>;
    fn get_function(&self, account: &AccountId, name: &FunctionName) -> Result<Option<FunctionRecord>>;
    /// Functions of an account ordered by name, starting after `after`.
    fn list_functions(&self, account: &AccountId, after: Option<&str>, limit: usize) -> Result<Vec<FunctionRecord>>;
    /// Functions in a lifecycle state, across accounts (start-up recovery, the retirement reaper).
    fn functions_in_state(&self, state: LifecycleState) -> Result<Vec<FunctionRecord>>;
    /// Replaces a function if its stored revision is still `expected_revision`.
    fn update_function(&self, function: &FunctionRecord, expected_revision: u64) -> Result<()>;
    /// Deletes a function with its versions and aliases; false if it did not exist.
    fn delete_function(&self, account: &AccountId, name: &FunctionName) -> Result<bool>;

    /// Records a new version and the function's new state together.
    fn publish_version(&self, function: &FunctionRecord, expected_revision: u64, version: &VersionRecord)
        -> Result<()>;
    /// Deletes published `version` and writes the function's new record (if its stored revision is still
    /// `expected_revision`) in one step; `InUse` naming them while an alias routes to the version.
    /// False if there is no such version.
    fn delete_version(&self, function: &FunctionRecord, expected_revision: u64, version: u64) -> Result<bool>;
    fn get_version(&self, account: &AccountId, name: &FunctionName, version: u64) -> Result<Option<VersionRecord>>;
    fn list_versions(
        &self,
        account: &AccountId,
        name: &FunctionName,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<VersionRecord>>;

    /// Creates an alias (`expected_revision` None) or replaces it if unchanged since read.
    fn put_alias(&self, alias: &AliasRecord, expected_revision: Option<u64>) -> Result<()>;
    fn get_alias(&self, account: &AccountId, function: &FunctionName, alias: &str) -> Result<Option<AliasRecord>>;
    fn list_aliases(&self, account: &AccountId, function: &FunctionName) -> Result<Vec<AliasRecord>>;
    fn delete_alias(&self, account: &AccountId, function: &FunctionName, alias: &str) -> Result<bool>;

    /// Writes a function's event invoke config for one qualifier (creating or replacing it); `NotFound`
    /// if the function does not exist. It goes with the function.
    fn put_event_config(&self, config: &EventConfigRecord) -> Result<()>;
    fn get_event_config(
        &self,
        account: &AccountId,
        function: &FunctionName,
        qualifier: &str,
    ) -> Result<Option<EventConfigRecord>>;
    /// A function's event invoke configs, by qualifier.
    fn list_event_configs(&self, account: &AccountId, function: &FunctionName) -> Result<Vec<EventConfigRecord>>;
    fn delete_event_config(&self, account: &AccountId, function: &FunctionName, qualifier: &str) -> Result<bool>;

    /// Every archive a record points at: (account, function, version directory, sha256).
    fn referenced_archives(&self) -> Result<Vec<(AccountId, FunctionName, String, String)>>;
}

/// Layer versions and imported images: the file systems functions run on, shared between them.
pub trait LayerStore {
    /// Records a new version of a layer and returns its number: one more than the highest the layer ever
    /// had (numbers are never reused, even after a delete). `layer.version` is ignored.
    fn insert_layer_version(&self, layer: &LayerRecord) -> Result<u64>;
    /// A layer version, deleted or not (functions that list a deleted one keep running).
    fn get_layer_version(&self, account: &AccountId, name: &LayerName, version: u64) -> Result<Option<LayerRecord>>;
    /// The newest live version of each of the account's layers, by name.
    fn list_layers(&self, account: &AccountId) -> Result<Vec<LayerRecord>>;
    /// A layer's live versions, newest first.
    fn list_layer_versions(&self, account: &AccountId, name: &LayerName) -> Result<Vec<LayerRecord>>;
    /// Deletes a layer version: `forget` removes the record, otherwise it is only marked deleted at `now_ms`.
    /// False when there was no such live version.
    fn delete_layer_version(
        &self,
        account: &AccountId,
        name: &LayerName,
        version: u64,
        forget: bool,
        now_ms: i64,
    ) -> Result<bool>;
    /// Every layer archive a record points at: (account, sha256).
    fn referenced_layers(&self) -> Result<Vec<(AccountId, String)>>;

    /// Records an imported image; `Conflict` if the name is taken.
    fn insert_image(&self, image: &ImageRecord) -> Result<()>;
    fn get_image(&self, name: &str) -> Result<Option<ImageRecord>>;
    fn list_images(&self) -> Result<Vec<ImageRecord>>;
    fn delete_image(&self, name: &str) -> Result<bool>;
}

/// HTTP triggers (function URLs and gateway routes); they go with the function they point at.
pub trait TriggerStore {
    /// Adds an HTTP trigger; `Conflict` when the account has a route of the same shape.
    fn insert_trigger(&self, trigger: &TriggerRecord) -> Result<()>;
    fn get_trigger(&self, id: &str) -> Result<Option<TriggerRecord>>;
    /// Every trigger (of one account, or of all), oldest first.
    fn list_triggers(&self, account: Option<&AccountId>) -> Result<Vec<TriggerRecord>>;
    /// Replaces a trigger's auth and CORS settings.
    fn update_trigger(&self, trigger: &TriggerRecord) -> Result<()>;
    fn delete_trigger(&self, account: &AccountId, id: &str) -> Result<bool>;
}

/// Workflows, their executions and each execution's history: the history is appended in the same
/// transaction that records what it led to, so a restarted engine resumes from a consistent point.
pub trait WorkflowStore {
    /// Creates a workflow (`expected_revision` `None`; `Conflict` if the name is taken) or replaces one
    /// whose revision is still `expected_revision`.
    fn put_workflow(&self, workflow: &WorkflowRecord, expected_revision: Option<u64>) -> Result<()>;
    fn get_workflow(&self, account: &AccountId, name: &str) -> Result<Option<WorkflowRecord>>;
    fn list_workflows(&self, account: &AccountId) -> Result<Vec<WorkflowRecord>>;
    /// Deletes the workflow; its executions stay readable and running ones finish.
    fn delete_workflow(&self, account: &AccountId, name: &str) -> Result<bool>;

    /// Records a new execution with its first history events, in one transaction (`Conflict` if the
    /// workflow already has an execution of that name).
    fn insert_execution(&self, execution: &ExecutionRecord, events: &[HistoryRow]) -> Result<()>;
    /// Appends history events and, when given, the execution's new status and result, in one transaction.
    fn record_execution(&self, id: &str, events: &[HistoryRow], finished: Option<&ExecutionRecord>) -> Result<()>;
    fn get_execution(&self, id: &str) -> Result<Option<ExecutionRecord>>;
    /// The execution of `workflow` named `name` (names are unique per workflow).
    fn find_execution(&self, account: &AccountId, workflow: &str, name: &str) -> Result<Option<ExecutionRecord>>;
    /// Newest first; `workflow` and `status` filter; `before` pages (the last id seen).
    fn list_executions(
        &self,
        account: &AccountId,
        workflow: Option<&str>,
        status: Option<ExecutionStatus>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>>;
    /// Executions still RUNNING, for a starting server to resume (on a shared store, those this node ran).
    fn running_executions(&self) -> Result<Vec<ExecutionRecord>>;
    /// The execution's history in order.
    fn history(&self, id: &str) -> Result<Vec<HistoryRow>>;
    /// Writes a map run (replacing the one with its id); `NotFound` when its execution does not exist.
    fn put_map_run(&self, run: &MapRunRecord) -> Result<()>;
    fn get_map_run(&self, account: &AccountId, id: &str) -> Result<Option<MapRunRecord>>;
    /// An execution's map runs, oldest first.
    fn list_map_runs(&self, account: &AccountId, execution_id: &str) -> Result<Vec<MapRunRecord>>;
    /// Makes this node the one that runs (and may write) a RUNNING execution: on a shared store, the node
    /// that ran it is fenced off (its next write is refused) and the execution becomes this node's to end or
    /// resume; false when it is not running. One store of one node: nothing to hand over, true.
    fn take_execution(&self, id: &str) -> Result<bool> {
        let _ = id;
        Ok(true)
    }
}

/// The queue of asynchronous (Event) invocations: persisted before they are acknowledged, claimed by the
/// invoker, and put back after a crash.
pub trait EventStore {
    /// Persists an asynchronous invocation (before it is acknowledged).
    fn enqueue_event(&self, event: &EventRecord) -> Result<()>;
    /// Marks up to `limit` queued events due by `now_ms` as running and returns them.
    fn claim_events(&self, now_ms: i64, limit: usize) -> Result<Vec<EventRecord>>;
    /// Saves an event's new attempt count, state and result.
    fn update_event(&self, event: &EventRecord) -> Result<()>;
    /// Saves an event's outcome and, in the same transaction, queues `follow_up` (its record on the way to
    /// a destination) unless an event with that id is already there: delivered once, never lost.
    fn finish_event(&self, event: &EventRecord, follow_up: &EventRecord) -> Result<()>;
    fn get_event(&self, id: &str) -> Result<Option<EventRecord>>;
    /// After a crash: events that were running go back to the queue (at-least-once delivery); on a shared
    /// store, those this node had claimed.
    fn requeue_running_events(&self) -> Result<usize>;
    /// An account's failed events (the failed-event store) in id order, after `after`, at most `limit`.
    fn failed_events(&self, account: &AccountId, after: Option<&str>, limit: usize) -> Result<Vec<EventRecord>>;
    /// Puts a failed event back in the queue, due at `now_ms`, with its attempts counted afresh and its
    /// last outcome cleared; `None` if it is not (or no longer) failed.
    fn redrive_event(&self, id: &str, now_ms: i64) -> Result<Option<EventRecord>>;
    /// Deletes a failed event; false if it is not (or no longer) failed.
    fn delete_failed_event(&self, id: &str) -> Result<bool>;
}

/// A failed event as a redrive queues it again: due at `now_ms`, attempts counted afresh.
pub(crate) fn redriven(mut e: EventRecord, now_ms: i64) -> EventRecord {
    e.state = EventState::Queued;
    e.attempts = 0;
    e.next_attempt_ms = now_ms;
    e.error_type = None;
    e.result = None;
    e.finished_ms = None;
    e
}

/// Schedules. A fire is written with its schedule's next state in one transaction, so that a schedule
/// fires once per time whoever (which node, which restart) fires it.
pub trait ScheduleStore {
    /// Creates a schedule; `Conflict` if one of its name exists in its group.
    fn insert_schedule(&self, schedule: &ScheduleRecord) -> Result<()>;
    fn get_schedule(&self, account: &AccountId, group: &str, name: &str) -> Result<Option<ScheduleRecord>>;
    /// An account's schedules (of one group, when given) whose names start with `prefix`, in name order after
    /// `after`, at most `limit`.
    fn list_schedules(
        &self,
        account: &AccountId,
        group: Option<&str>,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>>;
    /// Every schedule, of every account, that will fire again (what a starting node puts in its index).
    fn pending_schedules(&self) -> Result<Vec<ScheduleRecord>>;
    /// Replaces a schedule whose stored revision is `expected_revision` (`RevisionMismatch` otherwise,
    /// `NotFound` if it is gone), queueing `fire` (the invocation a fire sends) in the same transaction.
    fn update_schedule(
        &self,
        schedule: &ScheduleRecord,
        expected_revision: u64,
        fire: Option<&EventRecord>,
    ) -> Result<()>;
    /// Deletes a schedule; false if there was none.
    fn delete_schedule(&self, account: &AccountId, group: &str, name: &str) -> Result<bool>;
    /// Many fires at once: each as [`ScheduleStore::update_schedule`] would write it; false for one whose
    /// schedule changed since it was read (or is gone), which writes nothing of it. A backend may write them
    /// in one transaction (SQLite does: a thousand fires due at one second cost one commit, not a thousand).
    #[allow(clippy::type_complexity)]
    fn fire_schedules(&self, fires: &[(&ScheduleRecord, u64, Option<&EventRecord>)]) -> Result<Vec<bool>> {
        fires
            .iter()
            .map(|(s, revision, fire)| match self.update_schedule(s, *revision, *fire) {
                Ok(()) => Ok(true),
                Err(StoreError::RevisionMismatch(_) | StoreError::NotFound(_)) => Ok(false),
                Err(e) => Err(e),
            })
            .collect()
    }
}

/// Learned statistics, opaque to the store, kept across restarts.
pub trait StatStore {
    /// Writes statistics (replacing those of the same kind and key), in one transaction.
    fn put_stats(&self, stats: &[StatRecord]) -> Result<()>;
    fn all_stats(&self) -> Result<Vec<StatRecord>>;
}

/// `stoke tune` runs; they go with the function they tuned.
/// Lambda durable executions: a head per execution, an operation and an event per row (or key).
pub trait DurableStore {
    /// A new execution with its first operations and events. `Conflict` when its id, or its name for its
    /// function, is taken.
    fn insert_durable(&self, e: &DurableRecord, ops: &[DurableOpRow], events: &[DurableEventRow]) -> Result<()>;
    /// One change, whole or not at all: the record (its revision one past `expected_revision`), the operations
    /// (replacing those at the same place), the events (appended). `RevisionMismatch` when the stored record is
    /// not at `expected_revision`, `NotFound` when there is none, `Conflict` when an event id is taken.
    fn record_durable(
        &self,
        e: &DurableRecord,
        expected_revision: u64,
        ops: &[DurableOpRow],
        events: &[DurableEventRow],
    ) -> Result<()>;
    fn get_durable(&self, account: &AccountId, id: &str) -> Result<Option<DurableRecord>>;
    /// The execution of `function` named `name`.
    fn find_durable(&self, account: &AccountId, function: &FunctionName, name: &str) -> Result<Option<DurableRecord>>;
    /// Its operations in start order.
    fn durable_operations(&self, id: &str) -> Result<Vec<DurableOpRow>>;
    /// Up to `limit` of its events after event `after`, in order.
    fn durable_events(&self, id: &str, after: u64, limit: usize) -> Result<Vec<DurableEventRow>>;
    /// A function's executions, oldest first, up to `limit` after the one with id `after`.
    fn list_durable(
        &self,
        account: &AccountId,
        function: &FunctionName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DurableRecord>>;
    /// Every execution still running (what a starting server resumes).
    fn running_durable(&self) -> Result<Vec<DurableRecord>>;
    /// Deletes up to `limit` executions whose retention ran out by `now_ms` (`expires_ms`), with their
    /// operations and events, oldest expiry first; returns them.
    fn delete_expired_durable(&self, now_ms: i64, limit: usize) -> Result<Vec<DurableRecord>>;
}

pub trait TuneStore {
    /// Writes a tune (replacing the one with its id).
    fn put_tune(&self, tune: &TuneRecord) -> Result<()>;
    fn get_tune(&self, account: &AccountId, id: &str) -> Result<Option<TuneRecord>>;
    /// The function's most recent tune.
    fn latest_tune(&self, account: &AccountId, function: &FunctionName) -> Result<Option<TuneRecord>>;
    /// Marks tunes still running as failed with `error` (a starting server: nothing runs them any more).
    fn fail_running_tunes(&self, error: &str, now_ms: i64) -> Result<usize>;
}
