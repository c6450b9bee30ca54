CREATE TABLE events (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    reference       TEXT NOT NULL,
    payload         BLOB NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    state           TEXT NOT NULL,
    error_type      TEXT,
    result          BLOB,
    created_ms      INTEGER NOT NULL,
    finished_ms     INTEGER
);
CREATE INDEX events_due ON events(state, next_attempt_ms);
