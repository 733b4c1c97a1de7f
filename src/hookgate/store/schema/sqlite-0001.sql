CREATE TABLE flows (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    spec        BLOB NOT NULL,
    status      TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);

CREATE TABLE deliveries (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    flow_id      TEXT NOT NULL,
    state        INTEGER NOT NULL DEFAULT 0,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL NOT NULL,
    lease_until  REAL,
    received_at  REAL NOT NULL,
    updated_at   REAL NOT NULL,
    method       TEXT NOT NULL,
    path         TEXT NOT NULL,
    query        TEXT NOT NULL,
    headers      BLOB NOT NULL,
    body         BLOB NOT NULL,
    source       TEXT NOT NULL,
    last_error   TEXT
);
CREATE UNIQUE INDEX deliveries_id ON deliveries (id);
CREATE INDEX deliveries_flow ON deliveries (flow_id, seq);
CREATE INDEX deliveries_ready ON deliveries (flow_id, next_at) WHERE state = 0;
CREATE INDEX deliveries_leased ON deliveries (flow_id, lease_until) WHERE state = 1;
CREATE INDEX deliveries_state ON deliveries (state, seq) WHERE state <> 2;

CREATE TABLE attempts (
    delivery_id  TEXT NOT NULL,
    number       INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    duration_ms  REAL NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    response     TEXT NOT NULL
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);

CREATE TABLE dedupe (
    flow_id      TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    delivery_id  TEXT NOT NULL,
    expires_at   REAL NOT NULL,
    PRIMARY KEY (flow_id, key)
) WITHOUT ROWID;
