//! Valid records to build cases from, and checks of which error a call returned.

use std::fmt::Debug;

use stoke_core::gateway::{Cors, TriggerAuth};
use stoke_core::{AccountId, AliasName, AliasRouting, FunctionName, LayerName, LifecycleState};
use stoke_store::{
    AccountKeys, AccountRecord, AliasRecord, CodeRef, EventRecord, EventState, ExecutionRecord, ExecutionStatus,
    FunctionRecord, HistoryRow, ImageRecord, LayerRecord, Result, StatRecord, Store, StoreError, TriggerKind,
    TriggerRecord, TuneRecord, VersionRecord, WorkflowRecord,
};

/// Account `n` as a record: its name and keys all carry `n`, so accounts of different numbers never clash.
pub fn account_record(n: u64) -> (AccountRecord, AccountKeys) {
    (
        AccountRecord { id: AccountId::from_number(n), name: format!("acct{n}"), is_admin: false, created_ms: 1 },
        AccountKeys {
            api_key_sha256: format!("hash{n}"),
            access_key_id: format!("AKID{n}"),
            secret_access_key: format!("secret{n}"),
        },
    )
}

/// Creates account `n` and returns its id.
pub fn account(s: &dyn Store, n: u64) -> AccountId {
    let (record, keys) = account_record(n);
    s.create_account(&record, &keys).expect("a new account is created");
    record.id
}

pub fn fname(name: &str) -> FunctionName {
    FunctionName::parse(name).expect("a valid function name")
}

pub fn lname(name: &str) -> LayerName {
    LayerName::parse(name).expect("a valid layer name")
}

/// A function at revision 1 with code and no version.
pub fn function(account: &AccountId, name: &str) -> FunctionRecord {
    FunctionRecord {
        account: account.clone(),
        name: fname(name),
        config: stoke_core::ConfigPatch { runtime: Some("provided".into()), ..Default::default() }
            .into_new_config()
            .expect("a valid configuration"),
        state: LifecycleState::Latest,
        code: Some(CodeRef { sha256: format!("{name}-latest"), size: 2 }),
        revision: 1,
        latest_published: None,
        last_version: 0,
        created_ms: 5,
        modified_ms: 5,
    }
}

/// Version `n` of `f`, with code of its own.
pub fn version(f: &FunctionRecord, n: u64) -> VersionRecord {
    VersionRecord {
        account: f.account.clone(),
        function: f.name.clone(),
        version: n,
        config: f.config.clone(),
        code: CodeRef { sha256: format!("{}-v{n}", f.name), size: n },
        description: format!("version {n}"),
        created_ms: 100 + ms(n),
    }
}

/// Publishes the next version of `f` (as read) and returns the function as stored after.
pub fn publish(s: &dyn Store, f: &FunctionRecord) -> FunctionRecord {
    let mut next = f.clone();
    next.revision += 1;
    next.last_version += 1;
    next.latest_published = Some(next.last_version);
    next.state = LifecycleState::Published;
    s.publish_version(&next, f.revision, &version(&next, next.last_version)).expect("the version is published");
    next
}

/// An alias of `f` at revision 1.
pub fn alias(f: &FunctionRecord, name: &str, version: &str) -> AliasRecord {
    AliasRecord {
        account: f.account.clone(),
        function: f.name.clone(),
        name: AliasName::parse(name).expect("a valid alias name"),
        routing: AliasRouting { version: version.into(), additional_version: None, additional_weight: None },
        description: format!("{name} traffic"),
        revision: 1,
        created_ms: 1,
        modified_ms: 1,
    }
}

/// A layer version to publish (`version` is assigned by the store).
pub fn layer(account: &AccountId, name: &str, sha: &str) -> LayerRecord {
    LayerRecord {
        account: account.clone(),
        name: lname(name),
        version: 0,
        description: format!("{name} libs"),
        compatible_runtimes: vec!["python3.12".into(), "provided".into()],
        code: CodeRef { sha256: sha.into(), size: 10 },
        created_ms: 7,
        deleted_ms: None,
    }
}

pub fn image(name: &str) -> ImageRecord {
    ImageRecord {
        name: name.into(),
        code: CodeRef { sha256: format!("{name}-sha"), size: 3 },
        unpacked_bytes: 1 << 40,
        created_ms: 2,
    }
}

/// A function URL of `function`.
pub fn url_trigger(account: &AccountId, id: &str, function: &str) -> TriggerRecord {
    TriggerRecord {
        id: id.into(),
        account: account.clone(),
        kind: TriggerKind::Url,
        function: fname(function),
        qualifier: Some("prod".into()),
        auth: TriggerAuth::None,
        cors: Some(Cors { allow_origins: vec!["*".into()], max_age_s: Some(60), ..Default::default() }),
        created_ms: 7,
    }
}

/// A gateway route of `function`.
pub fn route_trigger(account: &AccountId, id: &str, function: &str, key: &str, shape: &str) -> TriggerRecord {
    TriggerRecord {
        id: id.into(),
        account: account.clone(),
        kind: TriggerKind::Route { key: key.into(), shape: shape.into() },
        function: fname(function),
        qualifier: None,
        auth: TriggerAuth::Key,
        cors: None,
        created_ms: 7,
    }
}

pub fn workflow(account: &AccountId, name: &str) -> WorkflowRecord {
    WorkflowRecord {
        account: account.clone(),
        name: name.into(),
        definition: format!("{{\"Comment\":\"{name}\"}}"),
        revision: 1,
        created_ms: 1,
        updated_ms: 1,
        prewarm: Some("jit".into()),
        role_arn: Some("arn:aws:iam::123456789012:role/flows".into()),
    }
}

/// A running execution of `workflow`, named `run-<id>`.
pub fn execution(account: &AccountId, workflow: &str, id: &str, started_ms: i64) -> ExecutionRecord {
    ExecutionRecord {
        id: id.into(),
        account: account.clone(),
        workflow: workflow.into(),
        name: format!("run-{id}"),
        definition: "{\"StartAt\":\"A\"}".into(),
        status: ExecutionStatus::Running,
        input: "{\"n\":1}".into(),
        output: None,
        error: None,
        cause: None,
        started_ms,
        stopped_ms: None,
    }
}

/// History event `seq`, every field derived from it.
pub fn row(seq: u64) -> HistoryRow {
    let small = u32::try_from(seq).expect("a small sequence number");
    HistoryRow {
        seq,
        timestamp_ms: 1_000 + ms(seq),
        kind: format!("Kind{seq}"),
        scope: format!("branch-{seq}"),
        step: small * 2,
        attempt: small + 1,
        details: format!("{{\"seq\":{seq}}}"),
    }
}

/// A queued event due at `due`.
pub fn event(account: &AccountId, id: &str, due: i64) -> EventRecord {
    EventRecord {
        id: id.into(),
        account: account.clone(),
        reference: "f:prod".into(),
        payload: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        attempts: 0,
        next_attempt_ms: due,
        state: EventState::Queued,
        error_type: None,
        result: None,
        created_ms: 3,
        finished_ms: None,
        executed_version: None,
        max_retries: None,
        max_age_s: None,
    }
}

pub fn stat(kind: &str, key: &str, data: &str, updated_ms: i64) -> StatRecord {
    StatRecord { kind: kind.into(), key: key.into(), data: data.into(), updated_ms }
}

/// A running tune of `function`.
pub fn tune(account: &AccountId, function: &str, id: &str, created_ms: i64) -> TuneRecord {
    TuneRecord {
        id: id.into(),
        account: account.clone(),
        function: fname(function),
        state: "running".into(),
        request: "{\"sizes\":[128,256]}".into(),
        result: None,
        error: None,
        created_ms,
        finished_ms: None,
    }
}

/// A small count as milliseconds.
pub fn ms(n: u64) -> i64 {
    i64::try_from(n).expect("a small number")
}

#[track_caller]
pub fn expect_conflict<T: Debug>(r: Result<T>) {
    assert!(matches!(r, Err(StoreError::Conflict(_))), "expected Conflict, got {r:?}");
}

#[track_caller]
pub fn expect_revision_mismatch<T: Debug>(r: Result<T>) {
    assert!(matches!(r, Err(StoreError::RevisionMismatch(_))), "expected RevisionMismatch, got {r:?}");
}

#[track_caller]
pub fn expect_not_found<T: Debug>(r: Result<T>) {
    assert!(matches!(r, Err(StoreError::NotFound(_))), "expected NotFound, got {r:?}");
}

/// Runs `f` on `n` threads started together (a barrier), returning each thread's result in thread order.
pub fn race<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (f, barrier) = (&f, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a racing thread panicked")).collect()
    })
}
