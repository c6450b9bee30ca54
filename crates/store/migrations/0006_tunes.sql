CREATE TABLE tunes (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    function_name   TEXT NOT NULL,
    state           TEXT NOT NULL,
    request         TEXT NOT NULL,
    result          TEXT,
    error           TEXT,
    created_ms      INTEGER NOT NULL,
    finished_ms     INTEGER,
    FOREIGN KEY (account_id, function_name) REFERENCES functions(account_id, name) ON DELETE CASCADE
);
CREATE INDEX tunes_by_function ON tunes(account_id, function_name, created_ms);
