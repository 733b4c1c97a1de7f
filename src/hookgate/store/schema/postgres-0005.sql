-- Destinations (a request becomes one delivery per destination it is routed to), per-key
-- order and the FILTERED state (4). Deliveries stored before are the flow's workers'.
ALTER TABLE deliveries ADD COLUMN destination text NOT NULL DEFAULT 'worker';
ALTER TABLE deliveries ADD COLUMN order_key text;
-- Leasing one destination's deliveries, oldest first.
CREATE INDEX deliveries_lane ON deliveries (flow_id, destination, state, seq);
-- The head of each key's line: the oldest queued or leased delivery with that key.
CREATE INDEX deliveries_keyed ON deliveries (flow_id, destination, order_key, seq)
    WHERE order_key IS NOT NULL AND state IN (0, 1);
-- Delivery rate limits: one token bucket per rate-limited destination ("flow id/destination"),
-- shared by every gateway (``Store.take_tokens``).
CREATE TABLE buckets (
    name    text PRIMARY KEY,
    tokens  float8 NOT NULL,
    stamp   float8 NOT NULL
);
