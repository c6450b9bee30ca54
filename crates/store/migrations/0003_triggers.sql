CREATE TABLE triggers (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    kind            TEXT NOT NULL,
    route_key       TEXT,
    route_shape     TEXT,
    function_name   TEXT NOT NULL,
    qualifier       TEXT,
    auth            TEXT NOT NULL,
    cors            TEXT,
    created_ms      INTEGER NOT NULL,
    UNIQUE (account_id, route_shape),
    FOREIGN KEY (account_id, function_name) REFERENCES functions(account_id, name) ON DELETE CASCADE
);
