-- Flows, the durable queue, attempts and dedupe keys for several gateways on one database.
-- Headers are msgspec JSON in bytea (not jsonb): jsonb rejects \u0000 and the bytes must
-- round-trip exactly. Times are epoch seconds, as everywhere else in Hookgate.

CREATE TABLE flows (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    spec        jsonb NOT NULL,
    status      text NOT NULL,
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL
);

CREATE TABLE deliveries (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           text NOT NULL,
    request_id   text NOT NULL,
    flow_id      text NOT NULL,
    state        smallint NOT NULL DEFAULT 0,
    attempts     integer NOT NULL DEFAULT 0,
    next_at      double precision NOT NULL,
    lease_until  double precision,
    received_at  double precision NOT NULL,
    updated_at   double precision NOT NULL,
    method       text NOT NULL,
    path         text NOT NULL,
    query        text NOT NULL,
    headers      bytea NOT NULL,
    body         bytea NOT NULL,
    source       text NOT NULL,
    last_error   text
);
CREATE UNIQUE INDEX deliveries_id ON deliveries (id);
-- Leasing (state 0 and 1 of a flow, oldest first), purge (state 2 of a flow) and listing
-- one flow's deliveries in one state, newest first, all walk this one index.
CREATE INDEX deliveries_flow_state ON deliveries (flow_id, state, seq);
-- Listing one flow newest first, and one state across flows newest first (keyset on seq).
CREATE INDEX deliveries_flow ON deliveries (flow_id, seq);
CREATE INDEX deliveries_state ON deliveries (state, seq);

CREATE TABLE attempts (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id  text NOT NULL,
    number       integer NOT NULL,
    started_at   double precision NOT NULL,
    duration_ms  double precision NOT NULL,
    status_code  integer,
    error        text,
    response     text NOT NULL
);
CREATE INDEX attempts_delivery ON attempts (delivery_id, seq);

CREATE TABLE dedupe (
    flow_id      text NOT NULL,
    key          text NOT NULL,
    request_id   text NOT NULL,
    delivery_id  text NOT NULL,
    expires_at   double precision NOT NULL,
    PRIMARY KEY (flow_id, key)
);
