"""What a caller gets back besides the worker's own answer: the accept answer of an async flow
(``accept:``), the preferences of RFC 7240 (``Prefer: respond-async``, ``wait=N``) and the
status URL's document.

Pure rules, precomputed per flow where they sit on the accept path.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from hookgate.domain.deliveries import Answer, Progress
from hookgate.domain.flows import Accept

PLACEHOLDER = "{requestId}"
STATUS_PATH = "/hook/-/status/"
"""Status URLs live under ``/hook/`` (whatever routes the hooks routes them too); ``-`` is
never a flow id (those are 22 characters)."""
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
"""Not kept from a worker's answer: they describe one connection, or are set again."""
_encode = msgspec.json.encode


class AcceptAnswer(msgspec.Struct, frozen=True):
    """A flow's ``accept:`` answer, ready to send: the body is split around the request id."""

    status: int
    head: bytes
    tail: bytes | None
    """None: no ``{requestId}`` in the body, which is ``head`` as it is."""
    headers: list[tuple[bytes, bytes]]
    content_type: bytes | None
    quoted: bool = False
    """The id goes in as a JSON string (the default body); else as it is (a template)."""

    def body(self, request_id: str) -> bytes:
        if self.tail is None:
            return self.head
        value = _encode(request_id) if self.quoted else request_id.encode()
        return self.head + value + self.tail


def accept_answer(accept: Accept) -> AcceptAnswer:
    """Precomputed once per flow spec; JSON unless ``headers`` names a ``Content-Type``."""
    quoted = accept.body is None
    tail: bytes | None
    if accept.body is None:
        head, tail = b'{"requestId":', b',"status":"accepted"}'
    else:
        before, found, after = accept.body.partition(PLACEHOLDER)
        head, tail = before.encode(), (after.encode() if found else None)
    if accept.status == 204:
        head, tail = b"", None
    content_type = None
    headers: list[tuple[bytes, bytes]] = []
    for name, value in accept.headers.items():
        if name.lower() == "content-type":
            content_type = value.encode()
        else:
            headers.append((name.lower().encode(), value.encode()))
    return AcceptAnswer(accept.status, head, tail, headers, content_type, quoted)


class Preference(msgspec.Struct, frozen=True):
    """What a caller asked for with ``Prefer`` (RFC 7240); unknown preferences are ignored."""

    respond_async: bool = False
    wait: float | None = None


def preference(values: list[bytes]) -> Preference | None:
    """The ``Prefer`` header fields' values, in order: None when none asks for anything we do.

    ``respond-async`` and ``wait=N`` (seconds), case-insensitive, parameters after ``;``
    ignored; the first ``wait`` counts (RFC 7240 §2), a malformed one is ignored.
    """
    respond_async, wait = False, None
    for value in values:
        for item in value.decode("latin-1").split(","):
            token, _, argument = item.split(";", 1)[0].partition("=")
            name = token.strip().lower()
            if name == "respond-async":
                respond_async = True
            elif name == "wait" and wait is None:
                text = argument.strip().strip('"')
                if text.isdigit():
                    wait = float(text)
    if not respond_async and wait is None:
        return None
    return Preference(respond_async=respond_async, wait=wait)


def answer_of(
    status: int | None, headers: list[tuple[str, str]], body: bytes, limit: int
) -> Answer | None:
    """A worker's answer as a caller gets it back, None if there is none or it is over
    ``limit`` bytes (a body cut short is not the worker's answer)."""
    if status is None or len(body) > limit:
        return None
    kept = [(k.lower(), v) for k, v in headers if k.lower() not in HOP_BY_HOP]
    return Answer(status=status, headers=kept, body=body)


def status_document(progress: Progress) -> bytes:
    """The status URL's JSON: where the delivery stands and, once done, the worker's answer
    (a body that is not UTF-8 text comes base64-encoded)."""
    document: dict[str, Any] = {
        "requestId": progress.request_id,
        "status": progress.label,
        "attempts": progress.attempts,
    }
    if progress.last_error is not None and progress.label in ("failed", "dead"):
        document["lastError"] = progress.last_error
    if progress.answer is not None:
        answer = Answer.decode(progress.answer)
        response: dict[str, Any] = {"status": answer.status, "headers": answer.headers}
        try:
            response["body"] = answer.body.decode("utf-8")
        except UnicodeDecodeError:
            response["body"] = base64.b64encode(answer.body).decode()
            response["bodyEncoding"] = "base64"
        document["response"] = response
    return _encode(document)
