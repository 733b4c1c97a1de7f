-- Finding a request by any of its ids (`hookgate deliveries show`): the caller's request id and
-- the provider's delivery id (the dedupe key) get an index each, so an exact id and a prefix
-- (a range in the BINARY collation) are index lookups. The delivery id has its own already.
CREATE INDEX deliveries_request_id ON deliveries (request_id);
CREATE INDEX dedupe_key ON dedupe (key);
