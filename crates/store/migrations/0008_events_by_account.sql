-- An account's failed Event invocations, listed by id (the failed-event store).
CREATE INDEX events_by_account_state ON events(account_id, state, id);
