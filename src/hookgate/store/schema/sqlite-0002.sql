-- Polling triggers: the newest tick handled per flow, and the snapshot carried between runs.
CREATE TABLE schedules (
    flow_id    TEXT PRIMARY KEY,
    last_tick  REAL,
    snapshot   BLOB
) WITHOUT ROWID;
CREATE INDEX deliveries_polls ON deliveries (flow_id) WHERE source = 'schedule' AND state IN (0, 1);
