-- Polling triggers: the newest tick handled per flow, and the snapshot carried between runs.
CREATE TABLE schedules (
    flow_id    text PRIMARY KEY,
    last_tick  double precision,
    snapshot   bytea
);
CREATE INDEX deliveries_polls ON deliveries (flow_id) WHERE source = 'schedule' AND state IN (0, 1);
