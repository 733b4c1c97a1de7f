"""Column lists, in the one order every statement of both stores uses, and the delivery states
as SQL reads them (the SQLite writer process needs these and little else of the gateway)."""

from hookgate.domain.deliveries import State

QUEUED, LEASED, DONE, DEAD, FILTERED = (
    int(s) for s in (State.QUEUED, State.LEASED, State.DONE, State.DEAD, State.FILTERED)
)
"""The states as SQL compares them, interpolated into statements once, at import."""
LIVE = f"({QUEUED}, {LEASED})"
"""``state IN LIVE``: in the queue, counted against its bounds."""

SUMMARY = (
    "id, request_id, flow_id, state, attempts, next_at, received_at, lease_until,"
    " last_error, updated_at, method, path, query, source, destination, order_key"
)
FULL = SUMMARY + ", headers, body, status_token"
INSERTED = (
    "id, request_id, flow_id, next_at, received_at, updated_at, method, path, query,"
    " headers, body, source, destination, order_key, state"
)
INSERTED_COUNT = INSERTED.count(",") + 1
FULL_COUNT = FULL.count(",") + 1

PROGRESS = (
    f"request_id, flow_id, state, attempts, last_error, CASE WHEN state = {DONE} THEN answer END"
)
"""What a status URL shows; the answer only once done (a replay runs the delivery again)."""

ATTEMPT = "number, started_at, duration_ms, status_code, error, response"

ROW_OVERHEAD = 256
"""Bytes a stored request takes besides its head and body: ids, times, state, index entries."""
QUEUED_SIZE = (
    "(length(method) + length(path) + length(query) + length(headers) + length(body)"
    f" + {ROW_OVERHEAD})"
)
"""What one delivery counts against the queue bounds, in SQL both dialects read alike
(``length`` counts the characters of text and the bytes of a blob or ``bytea``).
``rows.queued_size`` is the same rule in Python: the two must agree, or the count drifts."""
