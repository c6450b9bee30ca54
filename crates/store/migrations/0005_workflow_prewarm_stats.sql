ALTER TABLE workflows ADD COLUMN prewarm TEXT;
CREATE TABLE stats (
    kind            TEXT NOT NULL,
    key             TEXT NOT NULL,
    data            TEXT NOT NULL,
    updated_ms      INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
