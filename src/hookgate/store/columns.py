"""Column lists, in the one order every statement of both stores uses (no imports: the
SQLite writer process needs them and nothing else of the gateway)."""

SUMMARY = (
    "id, request_id, flow_id, state, attempts, next_at, received_at, lease_until,"
    " last_error, updated_at, method, path, query, source"
)
FULL = SUMMARY + ", headers, body"
INSERTED = (
    "id, request_id, flow_id, next_at, received_at, updated_at, method, path, query,"
    " headers, body, source"
)

ATTEMPT = "number, started_at, duration_ms, status_code, error, response"
