-- Schedules, each read and written whole (the record, as JSON), indexed by when they fire next; and an
-- event's own retry rule (a schedule's fire carries its schedule's).
CREATE TABLE schedules (
    account_id      TEXT NOT NULL,
    group_name      TEXT NOT NULL,
    name            TEXT NOT NULL,
    next_fire_ms    INTEGER,
    revision        INTEGER NOT NULL,
    record          TEXT NOT NULL,
    PRIMARY KEY (account_id, group_name, name)
);
CREATE INDEX schedules_by_next_fire ON schedules(next_fire_ms) WHERE next_fire_ms IS NOT NULL;
ALTER TABLE events ADD COLUMN max_retries INTEGER;
ALTER TABLE events ADD COLUMN max_age_s INTEGER;
