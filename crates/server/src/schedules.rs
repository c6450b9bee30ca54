//! Schedules: EventBridge Scheduler's model on stoke. A schedule's next fire time is kept in the store and,
//! on each node, in a sorted index (no schedule is polled: the node sleeps until the earliest fire). A fire
//! rewrites its schedule and queues the target's invocation in one transaction, from the revision it read,
//! so a schedule fires once per time whoever fires it; the invocation then runs through the same queue as
//! any Event invocation (retries, failed-event store, destinations).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::tz::TimeZone;
use stoke_core::schedule::{self, Expression};
use stoke_core::sync::lock;
use stoke_core::AccountId;
use stoke_store::{EventRecord, ScheduleRecord, StoreError};

use crate::registry::Registry;

/// Why a schedule operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// A field is invalid; `field` names it as the native API does.
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Exists(String),
    /// Changed by another request since it was read.
    #[error("{0}")]
    Conflict(String),
    #[error("the store failed: {0}")]
    Store(StoreError),
}

pub type Result<T, E = ScheduleError> = std::result::Result<T, E>;

impl From<StoreError> for ScheduleError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(format!("{what} does not exist")),
            StoreError::Conflict(what) => Self::Exists(format!("{what} already exists")),
            StoreError::RevisionMismatch(what) => {
                Self::Conflict(format!("{what} was changed by another request meanwhile; read it again and retry"))
            }
            other => Self::Store(other),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ScheduleError {
    ScheduleError::Invalid { field, message: message.into() }
}

/// What a schedule is asked to be (create or replace); what is left out takes Scheduler's default.
#[derive(Debug, Clone, Default)]
pub struct ScheduleInput {
    pub expression: String,
    /// An IANA zone; `None`: UTC.
    pub timezone: Option<String>,
    pub description: Option<String>,
    /// `None`: enabled.
    pub enabled: Option<bool>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// A flexible window in minutes (1–1440); `None`: off.
    pub window_min: Option<i64>,
    /// A function or state machine ARN of the caller's.
    pub target: String,
    pub input: Option<String>,
    pub max_retries: Option<i64>,
    pub max_age_s: Option<i64>,
    pub delete_after_completion: bool,
}

/// The clock schedules fire by: the system's, or for tests one that read `origin_ms` at the system's
/// `since_ms` and runs `rate` times as fast (a minute of schedules in a second, so that no test sleeps for a
/// minute; the same after a restart, so a test can kill the server across a fire).
#[derive(Debug, Clone, Copy)]
pub struct ScheduleClock {
    since_ms: i64,
    origin_ms: i64,
    rate: f64,
}

impl ScheduleClock {
    pub fn system() -> Self {
        Self { since_ms: 0, origin_ms: 0, rate: 1.0 }
    }

    pub fn warped(origin_ms: i64, since_ms: i64, rate: f64) -> Self {
        Self { since_ms, origin_ms, rate: rate.max(0.001) }
    }

    pub fn now_ms(&self) -> i64 {
        let real = (crate::registry::now_ms() - self.since_ms) as f64 * self.rate;
        self.origin_ms + stoke_core::num::saturate_i64(real)
    }

    /// How long to wait in real time for `ms` of this clock.
    fn real(&self, ms: i64) -> Duration {
        Duration::from_secs_f64((ms.max(0) as f64 / 1000.0) / self.rate)
    }
}

/// (account, group, name).
type Key = (AccountId, String, String);

/// How often (on the schedules' clock) a node of a cluster reads the schedules again.
const REFRESH_MS: i64 = 30_000;

/// A fire worked out from the schedule as read, before it is written.
struct Planned {
    key: Key,
    /// When the index had it due.
    due: i64,
    /// The schedule as the fire leaves it (its revision one past the one read).
    after: ScheduleRecord,
    /// The invocation it queues; none when it is missed.
    event: Option<EventRecord>,
    /// Fires counted as missed.
    missed: u64,
}

/// The schedules service.
pub struct Schedules {
    registry: Arc<Registry>,
    invoker: Arc<crate::invoke::Invoker>,
    region: String,
    clock: ScheduleClock,
    /// Every schedule that will fire, by when: the loop sleeps until the first.
    index: Mutex<Index>,
    wake: Arc<tokio::sync::Notify>,
    /// Fires delivered and missed, by account and schedule (for `/metrics`).
    counts: Mutex<BTreeMap<(AccountId, String, &'static str), u64>>,
}

#[derive(Default)]
struct Index {
    by_time: BTreeSet<(i64, Key)>,
    by_key: HashMap<Key, i64>,
}

impl Index {
    fn set(&mut self, key: Key, next: Option<i64>) {
        if let Some(old) = self.by_key.remove(&key) {
            self.by_time.remove(&(old, key.clone()));
        }
        if let Some(at) = next {
            self.by_time.insert((at, key.clone()));
            self.by_key.insert(key, at);
        }
    }

    /// The entries due by `now`, taken out.
    fn take_due(&mut self, now: i64) -> Vec<(i64, Key)> {
        let mut due = vec![];
        while let Some(first) = self.by_time.first() {
            if first.0 > now {
                break;
            }
            let (at, key) = self.by_time.pop_first().unwrap_or_else(|| unreachable!());
            self.by_key.remove(&key);
            due.push((at, key));
        }
        due
    }
}

impl std::fmt::Debug for Schedules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedules").finish_non_exhaustive()
    }
}

/// Schedules live in the `default` group only: another is not found, as a missing group is on Scheduler.
fn check_group(group: &str) -> Result<()> {
    if group == schedule::DEFAULT_GROUP {
        return Ok(());
    }
    Err(ScheduleError::NotFound(format!(
        "Schedule group {group} does not exist. stoke has the {} group only.",
        schedule::DEFAULT_GROUP
    )))
}

/// A stored schedule's timing, read once: its expression, zone, start and end.
struct Timing {
    expression: Expression,
    tz: TimeZone,
    start: i64,
    end: Option<i64>,
}

impl Timing {
    fn of(s: &ScheduleRecord) -> Result<Self> {
        Ok(Timing {
            expression: Expression::parse(&s.expression).map_err(|e| invalid("expression", e.to_string()))?,
            tz: zone(&s.timezone)?,
            start: s.start_ms.unwrap_or(s.created_ms),
            end: s.end_ms,
        })
    }

    /// The first fire strictly after `after`.
    fn next_after(&self, after: i64) -> Option<i64> {
        self.expression.next_after(&self.tz, after, self.start, self.end)
    }
}

/// Loads a time zone by its IANA name.
fn zone(name: &str) -> Result<TimeZone> {
    if name.is_empty() || name.len() > schedule::MAX_TIMEZONE_LEN {
        return Err(invalid("timezone", format!("the time zone {name:?} is not an IANA time zone name")));
    }
    TimeZone::get(name).map_err(|_| {
        invalid(
            "timezone",
            format!(
                "the time zone {name:?} is not an IANA time zone name (such as UTC, Europe/Paris, America/New_York)"
            ),
        )
    })
}

impl Schedules {
    pub fn new(
        registry: Arc<Registry>,
        invoker: Arc<crate::invoke::Invoker>,
        region: String,
        clock: ScheduleClock,
    ) -> Self {
        Self {
            registry,
            invoker,
            region,
            clock,
            index: Mutex::new(Index::default()),
            wake: Arc::new(tokio::sync::Notify::new()),
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A schedule's ARN.
    pub fn arn(&self, s: &ScheduleRecord) -> String {
        format!("arn:aws:scheduler:{}:{}:schedule/{}/{}", self.region, s.account, s.group, s.name)
    }

    /// The ARN of the target a native request names: a function (`name[:qualifier]`), a workflow, or an ARN;
    /// exactly one.
    pub fn target_arn(
        &self,
        account: &AccountId,
        function: Option<&str>,
        workflow: Option<&str>,
        arn: Option<&str>,
    ) -> Result<String> {
        match (function, workflow, arn) {
            (Some(f), None, None) => {
                let r = stoke_core::FunctionRef::parse(f).map_err(|e| invalid("target", e.to_string()))?;
                let q = r.qualifier.map(|q| q.to_string());
                Ok(stoke_core::reference::function_arn(&self.region, account, &r.name, q.as_deref()))
            }
            (None, Some(w), None) => Ok(stoke_core::reference::state_machine_arn(&self.region, account, w)),
            (None, None, Some(a)) => Ok(a.to_string()),
            _ => Err(invalid("target", "name exactly one target: a function, a workflow or an arn")),
        }
    }

    /// What became of a schedule's last fire: its invocation's state, `missed`, or `None` before the first.
    pub fn last_outcome(&self, s: &ScheduleRecord) -> Option<String> {
        match &s.last_event {
            Some(id) => Some(
                self.registry
                    .store()
                    .get_event(id)
                    .ok()
                    .flatten()
                    .map_or_else(|| "done".to_string(), |e| e.state.as_str().to_string()),
            ),
            None => s.last_fire_ms.map(|_| "missed".to_string()),
        }
    }

    /// Checks `input` and makes the record it describes (fire state left as it was in `before`).
    fn record(
        &self,
        account: &AccountId,
        group: &str,
        name: &str,
        input: ScheduleInput,
        before: Option<&ScheduleRecord>,
    ) -> Result<ScheduleRecord> {
        schedule::check_name(name).map_err(|m| invalid("name", m))?;
        check_group(group)?;
        let expression = Expression::parse(&input.expression).map_err(|e| invalid("expression", e.to_string()))?;
        let timezone = input.timezone.unwrap_or_else(|| "UTC".into());
        let tz = zone(&timezone)?;
        let description = input.description.unwrap_or_default();
        if description.chars().count() > schedule::MAX_DESCRIPTION_LEN {
            return Err(invalid(
                "description",
                format!("the description is longer than {} characters", schedule::MAX_DESCRIPTION_LEN),
            ));
        }
        if let (Some(start), Some(end)) = (input.start_ms, input.end_ms) {
            if end <= start {
                return Err(invalid("end", "the end date must be after the start date"));
            }
        }
        let window_min = match input.window_min {
            None => 0,
            Some(w) => schedule::check_range("maximumWindowInMinutes", w, 1, schedule::MAX_WINDOW_MIN)
                .map_err(|m| invalid("flexible_window_min", m))?,
        };
        let max_retries = match input.max_retries {
            None => schedule::DEFAULT_RETRIES,
            Some(n) => schedule::check_range("maximumRetryAttempts", n, 0, schedule::MAX_RETRIES)
                .map_err(|m| invalid("max_retries", m))?,
        };
        let max_age_s = match input.max_age_s {
            None => schedule::DEFAULT_EVENT_AGE_S,
            Some(n) => schedule::check_range(
                "maximumEventAgeInSeconds",
                n,
                schedule::MIN_EVENT_AGE_S,
                schedule::MAX_EVENT_AGE_S,
            )
            .map_err(|m| invalid("max_age_s", m))?,
        };
        if input.input.as_deref() == Some("") {
            return Err(invalid("input", "the input is empty: leave it out for Scheduler's scheduled event"));
        }
        self.registry.check_target(account, &input.target).map_err(|m| invalid("target", m))?;
        let now = self.now_ms();
        let enabled = input.enabled.unwrap_or(true);
        let start = input.start_ms.unwrap_or_else(|| before.map_or(now, |b| b.start_ms.unwrap_or(b.created_ms)));
        let next = if enabled { expression.next_after(&tz, now, start, input.end_ms) } else { None };
        let kept = |f: fn(&ScheduleRecord) -> Option<i64>| before.and_then(f);
        Ok(ScheduleRecord {
            account: account.clone(),
            group: group.to_string(),
            name: name.to_string(),
            expression: input.expression,
            timezone,
            description,
            enabled,
            start_ms: input.start_ms,
            end_ms: input.end_ms,
            window_min,
            target: input.target,
            input: input.input,
            max_retries,
            max_age_s,
            delete_after_completion: input.delete_after_completion,
            created_ms: before.map_or(now, |b| b.created_ms),
            modified_ms: now,
            next_fire_ms: next,
            last_fire_ms: kept(|b| b.last_fire_ms),
            last_fired_at_ms: kept(|b| b.last_fired_at_ms),
            last_event: before.and_then(|b| b.last_event.clone()),
            fires: before.map_or(0, |b| b.fires),
            missed: before.map_or(0, |b| b.missed),
            revision: before.map_or(1, |b| b.revision + 1),
        })
    }

    pub fn create(&self, account: &AccountId, group: &str, name: &str, input: ScheduleInput) -> Result<ScheduleRecord> {
        let s = self.record(account, group, name, input, None)?;
        self.registry.store().insert_schedule(&s).map_err(|e| match e {
            StoreError::Conflict(_) => ScheduleError::Exists(format!("Schedule {name} already exists.")),
            other => other.into(),
        })?;
        self.reindex(&s);
        Ok(s)
    }

    pub fn get(&self, account: &AccountId, group: &str, name: &str) -> Result<ScheduleRecord> {
        check_group(group)?;
        self.registry
            .store()
            .get_schedule(account, group, name)?
            .ok_or_else(|| ScheduleError::NotFound(format!("Schedule {name} does not exist.")))
    }

    pub fn list(
        &self,
        account: &AccountId,
        group: Option<&str>,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>> {
        group.map(check_group).transpose()?;
        Ok(self.registry.store().list_schedules(account, group, prefix, after, limit)?)
    }

    /// Replaces a schedule whole (what `input` leaves out takes Scheduler's default, as `UpdateSchedule`
    /// does); its fires so far are kept, its next fire computed again from now.
    pub fn replace(
        &self,
        account: &AccountId,
        group: &str,
        name: &str,
        input: ScheduleInput,
    ) -> Result<ScheduleRecord> {
        let before = self.get(account, group, name)?;
        let s = self.record(account, group, name, input, Some(&before))?;
        self.registry.store().update_schedule(&s, before.revision, None)?;
        self.reindex(&s);
        Ok(s)
    }

    pub fn delete(&self, account: &AccountId, group: &str, name: &str) -> Result<()> {
        check_group(group)?;
        if !self.registry.store().delete_schedule(account, group, name)? {
            return Err(ScheduleError::NotFound(format!("Schedule {name} does not exist.")));
        }
        lock(&self.index).set((account.clone(), group.to_string(), name.to_string()), None);
        Ok(())
    }

    /// Enables (its next fire counted from now: none missed while it was disabled) or disables it.
    pub fn set_enabled(&self, account: &AccountId, group: &str, name: &str, enabled: bool) -> Result<ScheduleRecord> {
        let before = self.get(account, group, name)?;
        let mut s = before.clone();
        s.enabled = enabled;
        s.next_fire_ms = if enabled { Timing::of(&s)?.next_after(self.now_ms()) } else { None };
        s.modified_ms = self.now_ms();
        s.revision += 1;
        self.registry.store().update_schedule(&s, before.revision, None)?;
        self.reindex(&s);
        Ok(s)
    }

    /// The next `n` fire times of a schedule from now (whether or not it is enabled).
    pub fn upcoming(&self, account: &AccountId, group: &str, name: &str, n: usize) -> Result<Vec<i64>> {
        let timing = Timing::of(&self.get(account, group, name)?)?;
        let mut at = self.now_ms();
        let mut out = vec![];
        while out.len() < n {
            match timing.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        Ok(out)
    }

    fn reindex(&self, s: &ScheduleRecord) {
        let key = (s.account.clone(), s.group.clone(), s.name.clone());
        lock(&self.index).set(key, s.next_fire_ms.filter(|_| s.enabled));
        self.wake.notify_one();
    }

    /// The fires delivered and missed, by account and schedule, in Prometheus' text format.
    pub fn metrics(&self, node: Option<&str>) -> String {
        use std::fmt::Write;
        let mut out = String::from(
            "# HELP stoke_schedule_fires What schedules' fires came to: fired (the target's invocation queued), \
             missed (due while the server was down, past the schedule's maximum event age).\n\
             # TYPE stoke_schedule_fires counter\n",
        );
        let node = node.map_or_else(String::new, |n| format!(",node=\"{n}\""));
        for ((account, name, outcome), n) in lock(&self.counts).iter() {
            let _ = writeln!(
                out,
                "stoke_schedule_fires_total{{account=\"{account}\",schedule=\"{name}\",outcome=\"{outcome}\"{node}}} {n}"
            );
        }
        out
    }

    /// Loads every schedule that will fire into the index (at start: the loop then delivers or records as
    /// missed what fell due while the server was down).
    pub fn recover(&self) -> Result<usize> {
        let pending = self.registry.store().pending_schedules()?;
        let mut index = lock(&self.index);
        for s in &pending {
            index.set((s.account.clone(), s.group.clone(), s.name.clone()), s.next_fire_ms.filter(|_| s.enabled));
        }
        Ok(pending.len())
    }

    /// Fires schedules as they come due, until the process ends. On a shared store (`shared`: a cluster),
    /// the index is also read again from the store every 30 s of the schedules' clock, so that a schedule
    /// another node created (or last fired) fires here when that node is gone; each fire still happens once,
    /// whichever node writes it first.
    pub fn run(self: &Arc<Self>, shared: bool) {
        let me = Arc::downgrade(self);
        let every = shared.then(|| self.clock.real(REFRESH_MS).max(Duration::from_millis(200)));
        tokio::spawn(async move {
            let mut refreshed = std::time::Instant::now();
            loop {
                let Some(this) = me.upgrade() else { return };
                if every.is_some_and(|e| refreshed.elapsed() >= e) {
                    refreshed = std::time::Instant::now();
                    let worker = this.clone();
                    match tokio::task::spawn_blocking(move || stoke_store::in_background(|| worker.recover())).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the schedules again; trying later"),
                        Err(e) => tracing::warn!(error = %e, "cannot read the schedules again; trying later"),
                    }
                }
                let due = lock(&this.index).take_due(this.now_ms());
                if !due.is_empty() {
                    let worker = this.clone();
                    let fired = tokio::task::spawn_blocking(move || {
                        stoke_store::in_background(|| {
                            worker.fire_all(due);
                        })
                    })
                    .await;
                    if fired.is_err() {
                        tracing::error!("the schedule loop's worker failed");
                    }
                    continue;
                }
                let wait = {
                    let index = lock(&this.index);
                    let until_due = index.by_time.first().map_or(Duration::from_secs(60), |(at, _)| {
                        this.clock.real(at - this.now_ms()).min(Duration::from_secs(60))
                    });
                    every.map_or(until_due, |e| until_due.min(e.saturating_sub(refreshed.elapsed())))
                };
                let wake = this.wake.clone();
                drop(this);
                let _ = tokio::time::timeout(wait, wake.notified()).await;
            }
        });
    }

    /// Fires what the index had due: for each schedule, delivers its latest fire time that has come (those
    /// before it, due while the server was down, are counted as missed; so is the latest when it is older
    /// than the schedule's maximum event age) and sets its next fire. Fires are written in batches (one
    /// transaction each on SQLite). One the store cannot take now stays in the index, tried again shortly;
    /// one whose schedule changed meanwhile is indexed as it is now.
    fn fire_all(&self, due: Vec<(i64, Key)>) {
        const BATCH: usize = 256;
        for chunk in due.chunks(BATCH) {
            let mut planned = Vec::with_capacity(chunk.len());
            for (at, key) in chunk {
                match self.plan(key, *at) {
                    Ok(Some(p)) => planned.push(p),
                    Ok(None) => {}
                    Err(e) => self.retry_later(key, *at, &e),
                }
            }
            let writes: Vec<_> = planned.iter().map(|p| (&p.after, p.after.revision - 1, p.event.as_ref())).collect();
            match self.registry.store().fire_schedules(&writes) {
                Ok(written) => {
                    let mut queued = false;
                    for (p, ok) in planned.iter().zip(written) {
                        if ok {
                            queued |= p.event.is_some();
                            self.settle(p);
                        } else if let Ok(Some(s)) = self.registry.store().get_schedule(&p.key.0, &p.key.1, &p.key.2) {
                            self.reindex(&s);
                        }
                    }
                    if queued {
                        self.invoker.events_queued();
                    }
                }
                Err(e) => {
                    for p in &planned {
                        self.retry_later(&p.key, p.due, &e);
                    }
                }
            }
        }
    }

    fn retry_later(&self, key: &Key, due: i64, e: &dyn std::fmt::Display) {
        tracing::warn!(schedule = %key.2, error = %e, "cannot fire a schedule now; trying again in a second");
        lock(&self.index).set(key.clone(), Some(due + stoke_core::num::millis_i64(Duration::from_secs(1))));
    }

    /// What firing `key` (due at `due` by the index) writes; `None` when there is nothing to fire (gone,
    /// disabled, or not due yet: the index was early, and is set right).
    fn plan(&self, key: &Key, due: i64) -> Result<Option<Planned>> {
        let Some(before) = self.registry.store().get_schedule(&key.0, &key.1, &key.2)? else { return Ok(None) };
        let Some(scheduled) = before.next_fire_ms.filter(|_| before.enabled) else { return Ok(None) };
        if scheduled > due {
            lock(&self.index).set(key.clone(), Some(scheduled));
            return Ok(None);
        }
        let now = self.now_ms();
        // The latest fire time that has come, and how many before it were skipped (the server was down).
        let (mut latest, mut skipped) = (scheduled, 0u64);
        let timing = Timing::of(&before)?;
        while let Some(next) = timing.next_after(latest) {
            if next > now || skipped >= 1_000_000 {
                break;
            }
            (latest, skipped) = (next, skipped + 1);
        }
        let deliver = schedule::deliver_late(latest, now, before.max_age_s);
        let mut after = before.clone();
        after.next_fire_ms = timing.next_after(latest.max(now));
        after.last_fire_ms = Some(latest);
        after.last_fired_at_ms = Some(now);
        after.missed += skipped + u64::from(!deliver);
        after.fires += u64::from(deliver);
        after.revision += 1;
        let event = deliver.then(|| self.fire_event(&before, latest, now));
        after.last_event = event.as_ref().map(|e| e.id.clone());
        Ok(Some(Planned { key: key.clone(), due, after, event, missed: skipped + u64::from(!deliver) }))
    }

    /// After a fire was written: counts it, indexes the next one, deletes a schedule that is done when it asks.
    fn settle(&self, p: &Planned) {
        let after = &p.after;
        {
            let mut counts = lock(&self.counts);
            let mut count = |outcome: &'static str, n: u64| {
                if n > 0 {
                    *counts.entry((after.account.clone(), after.name.clone(), outcome)).or_default() += n;
                }
            };
            count("fired", u64::from(p.event.is_some()));
            count("missed", p.missed);
        }
        if p.event.is_none() {
            tracing::warn!(schedule = %after.name, due = ?after.last_fire_ms, "a schedule's fire is older than its maximum event age: missed");
        }
        let next = after.next_fire_ms;
        if next.is_none() && after.delete_after_completion {
            if let Err(e) = self.registry.store().delete_schedule(&after.account, &after.group, &after.name) {
                tracing::warn!(schedule = %after.name, error = %e, "cannot delete a completed schedule; it stays, done");
            }
            lock(&self.index).set(p.key.clone(), None);
        } else {
            lock(&self.index).set(p.key.clone(), next);
        }
    }

    /// The Event invocation a fire queues: its payload (the input with Scheduler's context, or Scheduler's
    /// scheduled event), the schedule's retry rule, due within the flexible window.
    fn fire_event(&self, s: &ScheduleRecord, scheduled: i64, now: i64) -> EventRecord {
        let id = self.invoker.scheduler().request_id();
        let arn = self.arn(s);
        let payload = schedule::payload(
            s.input.as_deref(),
            &schedule::Fire {
                schedule_arn: &arn,
                id: &id,
                scheduled_ms: scheduled,
                attempt: 1,
                account: s.account.as_str(),
                region: &self.region,
            },
        );
        let seed = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&arn, scheduled).hash(&mut h);
            h.finish()
        };
        // The queue runs on the system clock: the window's delay, and how late the fire already is, in it.
        let real_now = crate::registry::now_ms();
        let delay = stoke_core::num::millis_i64(self.clock.real(schedule::window_delay_ms(s.window_min, seed)));
        let late = stoke_core::num::millis_i64(self.clock.real(now - scheduled));
        EventRecord {
            next_attempt_ms: real_now + delay,
            created_ms: real_now - late,
            max_retries: Some(s.max_retries),
            max_age_s: Some(s.max_age_s),
            ..EventRecord::queued(id, s.account.clone(), s.target.clone(), payload.into_bytes(), real_now)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> Key {
        (AccountId::parse("123456789012").unwrap(), "default".into(), n.into())
    }

    #[test]
    fn the_index_hands_out_what_is_due_in_time_order_once() {
        let mut index = Index::default();
        index.set(key("b"), Some(20));
        index.set(key("a"), Some(10));
        index.set(key("c"), Some(30));
        index.set(key("b"), Some(5)); // moved earlier: its old entry goes
        index.set(key("c"), None); // disabled
        assert_eq!(index.take_due(4), vec![]);
        let due: Vec<(i64, String)> = index.take_due(10).into_iter().map(|(t, k)| (t, k.2)).collect();
        assert_eq!(due, [(5, "b".to_string()), (10, "a".to_string())]);
        assert!(index.take_due(100).is_empty(), "each once; c was taken out");
        assert!(index.by_key.is_empty() && index.by_time.is_empty());
    }

    #[test]
    fn a_warped_clock_runs_from_its_origin_at_its_rate() {
        let since = crate::registry::now_ms() - 1_000;
        let clock = ScheduleClock::warped(1_000_000, since, 60.0);
        let now = clock.now_ms();
        assert!((1_060_000..1_070_000).contains(&now), "{now}");
        assert_eq!(clock.real(60_000), Duration::from_secs(1));
        assert_eq!(ScheduleClock::system().real(1_500), Duration::from_millis(1_500));
    }
}
