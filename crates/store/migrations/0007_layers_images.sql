CREATE TABLE layer_names (
    account_id      TEXT NOT NULL REFERENCES accounts(id),
    name            TEXT NOT NULL,
    last_version    INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE TABLE layers (
    account_id      TEXT NOT NULL,
    name            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    description     TEXT NOT NULL,
    runtimes        TEXT NOT NULL,
    code_sha256     TEXT NOT NULL,
    code_size       INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    deleted_ms      INTEGER,
    PRIMARY KEY (account_id, name, version),
    FOREIGN KEY (account_id, name) REFERENCES layer_names(account_id, name)
);
CREATE TABLE images (
    name            TEXT PRIMARY KEY,
    sha256          TEXT NOT NULL,
    size            INTEGER NOT NULL,
    unpacked_bytes  INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL
);
