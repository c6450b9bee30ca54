-- Lambda durable executions: a row per execution (its head, opaque JSON), a row per operation and a row per
-- history event, so nothing grows with a long execution.
CREATE TABLE durable_executions (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    function_name   TEXT NOT NULL,
    version         TEXT NOT NULL,
    name            TEXT NOT NULL,
    arn             TEXT NOT NULL,
    status          TEXT NOT NULL,
    input_sha256    TEXT NOT NULL,
    started_ms      INTEGER NOT NULL,
    ended_ms        INTEGER,
    next_deadline_ms INTEGER,
    revision        INTEGER NOT NULL,
    head            TEXT NOT NULL,
    UNIQUE (account_id, function_name, name)
);
CREATE INDEX durable_by_function ON durable_executions(account_id, function_name, started_ms);
CREATE INDEX durable_running ON durable_executions(status) WHERE status = 'RUNNING';
CREATE TABLE durable_operations (
    execution_id    TEXT NOT NULL REFERENCES durable_executions(id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    op_id           TEXT NOT NULL,
    data            TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq),
    UNIQUE (execution_id, op_id)
) WITHOUT ROWID;
CREATE TABLE durable_events (
    execution_id    TEXT NOT NULL REFERENCES durable_executions(id) ON DELETE CASCADE,
    event_id        INTEGER NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    data            TEXT NOT NULL,
    PRIMARY KEY (execution_id, event_id)
) WITHOUT ROWID;
