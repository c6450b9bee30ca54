-- A durable execution's retention: the days its function kept ended executions when it started, and when
-- this one, having ended, is deleted. Executions that ended before this column existed keep Lambda's
-- default of 14 days from their end.
ALTER TABLE durable_executions ADD COLUMN retention_days INTEGER NOT NULL DEFAULT 14;
ALTER TABLE durable_executions ADD COLUMN expires_ms INTEGER;
UPDATE durable_executions SET expires_ms = ended_ms + 14 * 86400000 WHERE ended_ms IS NOT NULL;
CREATE INDEX durable_expiry ON durable_executions(expires_ms) WHERE expires_ms IS NOT NULL;
