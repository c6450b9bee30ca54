CREATE TABLE map_runs (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    execution_id    TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    children        TEXT NOT NULL,
    status          TEXT NOT NULL,
    started_ms      INTEGER NOT NULL,
    stopped_ms      INTEGER,
    details         TEXT NOT NULL
);
CREATE INDEX map_runs_by_execution ON map_runs(account_id, execution_id, started_ms);
