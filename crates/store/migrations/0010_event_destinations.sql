-- Where an Event invocation's outcome goes (Lambda's OnSuccess / OnFailure destinations, as ARNs), and the
-- version an event's last attempt ran (its invocation record names it).
ALTER TABLE event_configs ADD COLUMN on_success TEXT;
ALTER TABLE event_configs ADD COLUMN on_failure TEXT;
ALTER TABLE events ADD COLUMN executed_version TEXT;
