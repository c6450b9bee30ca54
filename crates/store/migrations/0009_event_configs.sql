-- How a function's Event invocations of one qualifier are delivered (Lambda's event invoke config).
CREATE TABLE event_configs (
    account_id      TEXT NOT NULL,
    function_name   TEXT NOT NULL,
    qualifier       TEXT NOT NULL,
    max_retries     INTEGER,
    max_age_s       INTEGER,
    modified_ms     INTEGER NOT NULL,
    PRIMARY KEY (account_id, function_name, qualifier),
    FOREIGN KEY (account_id, function_name) REFERENCES functions(account_id, name) ON DELETE CASCADE
);
