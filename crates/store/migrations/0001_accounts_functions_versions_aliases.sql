CREATE TABLE accounts (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    is_admin          INTEGER NOT NULL,
    api_key_sha256    TEXT NOT NULL UNIQUE,
    access_key_id     TEXT NOT NULL UNIQUE,
    secret_access_key TEXT NOT NULL,
    created_ms        INTEGER NOT NULL
);
CREATE TABLE functions (
    account_id       TEXT NOT NULL REFERENCES accounts(id),
    name             TEXT NOT NULL,
    config           TEXT NOT NULL,
    state            TEXT NOT NULL,
    code_sha256      TEXT,
    code_size        INTEGER,
    revision         INTEGER NOT NULL,
    latest_published INTEGER,
    last_version     INTEGER NOT NULL,
    created_ms       INTEGER NOT NULL,
    modified_ms      INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE INDEX functions_by_state ON functions(state);
CREATE TABLE versions (
    account_id    TEXT NOT NULL,
    function_name TEXT NOT NULL,
    version       INTEGER NOT NULL,
    config        TEXT NOT NULL,
    code_sha256   TEXT NOT NULL,
    code_size     INTEGER NOT NULL,
    description   TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    PRIMARY KEY (account_id, function_name, version),
    FOREIGN KEY (account_id, function_name) REFERENCES functions(account_id, name) ON DELETE CASCADE
);
CREATE TABLE aliases (
    account_id         TEXT NOT NULL,
    function_name      TEXT NOT NULL,
    name               TEXT NOT NULL,
    version            TEXT NOT NULL,
    additional_version TEXT,
    additional_weight  REAL,
    description        TEXT NOT NULL,
    revision           INTEGER NOT NULL,
    created_ms         INTEGER NOT NULL,
    modified_ms        INTEGER NOT NULL,
    PRIMARY KEY (account_id, function_name, name),
    FOREIGN KEY (account_id, function_name) REFERENCES functions(account_id, name) ON DELETE CASCADE
);
