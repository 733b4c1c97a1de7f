-- Status URLs (design §3, `Prefer`): a delivery may carry the token of its status URL, and
-- once done the worker's answer (status, headers, body; bounded per flow) for that URL.
ALTER TABLE deliveries ADD COLUMN status_token text, ADD COLUMN answer bytea;
CREATE UNIQUE INDEX deliveries_status_token ON deliveries (status_token)
    WHERE status_token IS NOT NULL;
