-- Leasing walks a destination's queue oldest first (by seq) and stops at its batch: ordered by
-- next_at, the lease sorted every due delivery (100,000 with such a backlog) to take 64.
-- First attempts (attempts = 0) are due in seq order; retries wait for their backoff and are
-- found by next_at, so deliveries in backoff are never walked past.
DROP INDEX deliveries_ready;
CREATE INDEX deliveries_ready ON deliveries (flow_id, destination, seq, next_at)
    WHERE state = 0 AND attempts = 0;
CREATE INDEX deliveries_backoff ON deliveries (flow_id, destination, next_at)
    WHERE state = 0 AND attempts > 0
