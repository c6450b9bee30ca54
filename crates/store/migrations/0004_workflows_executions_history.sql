CREATE TABLE workflows (
    account_id      TEXT NOT NULL,
    name            TEXT NOT NULL,
    definition      TEXT NOT NULL,
    revision        INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE TABLE executions (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    workflow        TEXT NOT NULL,
    name            TEXT NOT NULL,
    definition      TEXT NOT NULL,
    status          TEXT NOT NULL,
    input           TEXT NOT NULL,
    output          TEXT,
    error           TEXT,
    cause           TEXT,
    started_ms      INTEGER NOT NULL,
    stopped_ms      INTEGER,
    UNIQUE (account_id, workflow, name)
);
CREATE INDEX executions_by_workflow ON executions(account_id, workflow, started_ms);
CREATE INDEX executions_running ON executions(status) WHERE status = 'RUNNING';
CREATE TABLE history (
    execution_id    TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    scope           TEXT NOT NULL,
    step            INTEGER NOT NULL,
    attempt         INTEGER NOT NULL,
    details         TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;
