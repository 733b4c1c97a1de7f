-- Finding a request by any of its ids (`hookgate deliveries show`). text_pattern_ops compares
-- bytes whatever the database's collation, so a prefix is an index range (~>=~, ~<~) as well
-- as an exact id (=). The delivery id's unique index is rebuilt in that operator class.
CREATE UNIQUE INDEX deliveries_id_bytes ON deliveries (id text_pattern_ops);
DROP INDEX deliveries_id;
ALTER INDEX deliveries_id_bytes RENAME TO deliveries_id;
CREATE INDEX deliveries_request_id ON deliveries (request_id text_pattern_ops);
CREATE INDEX dedupe_key ON dedupe (key text_pattern_ops);
