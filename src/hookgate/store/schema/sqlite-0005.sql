-- Destinations (a request becomes one delivery per destination it is routed to), per-key
-- order and the FILTERED state (4). Deliveries stored before are the flow's workers'.
ALTER TABLE deliveries ADD COLUMN destination TEXT NOT NULL DEFAULT 'worker';
ALTER TABLE deliveries ADD COLUMN order_key TEXT;
DROP INDEX deliveries_ready;
DROP INDEX deliveries_leased;
CREATE INDEX deliveries_ready ON deliveries (flow_id, destination, next_at) WHERE state = 0;
CREATE INDEX deliveries_leased ON deliveries (flow_id, destination, lease_until) WHERE state = 1;
-- The head of each key's line: the oldest queued or leased delivery with that key.
CREATE INDEX deliveries_keyed ON deliveries (flow_id, destination, order_key, seq)
    WHERE order_key IS NOT NULL AND state IN (0, 1);
