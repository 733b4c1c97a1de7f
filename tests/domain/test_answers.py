"""The rules behind accept answers, ``Prefer`` and the status document."""

from __future__ import annotations

import base64
import json

import pytest

from hookgate.domain.answers import (
    Preference,
    accept_answer,
    answer_of,
    preference,
    status_document,
)
from hookgate.domain.deliveries import Answer, Progress, State, new_status_token
from hookgate.domain.flowfile import spec_from_object
from hookgate.domain.flows import Accept
from hookgate.errors import ConfigError

WORKER = {"command": ["w"]}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([b"respond-async"], Preference(respond_async=True)),
        ([b"wait=10"], Preference(wait=10.0)),
        ([b"Respond-Async, WAIT=5"], Preference(respond_async=True, wait=5.0)),
        ([b"respond-async; foo=bar", b'wait="7"'], Preference(respond_async=True, wait=7.0)),
        ([b"wait=3, wait=9"], Preference(wait=3.0)),
        ([b"return=minimal"], None),
        ([b"wait=-1", b"wait=soon"], None),
        ([b""], None),
    ],
)
def test_prefer_is_read_as_rfc_7240_says(values: list[bytes], expected: Preference | None) -> None:
    assert preference(values) == expected


def test_the_default_accept_answer_quotes_the_request_id_as_json() -> None:
    answer = accept_answer(Accept(status=200))
    body = answer.body('odd "id"')
    assert json.loads(body) == {"requestId": 'odd "id"', "status": "accepted"}
    assert (answer.status, answer.content_type) == (200, None)


def test_a_templated_accept_answer_puts_the_request_id_in_place() -> None:
    answer = accept_answer(
        Accept(body="<ok id='{requestId}'/>", headers={"Content-Type": "text/xml", "X-A": "1"})
    )
    assert answer.body("abc") == b"<ok id='abc'/>"
    assert answer.content_type == b"text/xml"
    assert answer.headers == [(b"x-a", b"1")]
    assert accept_answer(Accept(status=200, body="OK")).body("abc") == b"OK"
    assert accept_answer(Accept(status=204)).body("abc") == b""


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("accept", {"status": 201}, "Invalid enum value 201"),
        ("accept", {"status": 204, "body": "x"}, "a 204 answer has no body"),
        ("accept", {"headers": {"bad name": "x"}}, "is not an HTTP token"),
        ("accept", {"headers": {"Content-Length": "1"}}, "is set by Hookgate"),
        ("accept", {"headers": {"X-A": "a\r\nb"}}, "printable ASCII"),
        ("fallback", "sync", "Invalid enum value 'sync'"),
    ],
)
def test_bad_answer_settings_are_refused_with_the_field(
    field: str, value: object, problem: str
) -> None:
    with pytest.raises(ConfigError, match=f"field {field}.*{problem}"):
        spec_from_object({"name": "f", "mode": "async", "worker": WORKER, field: value})


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"mode": "sync", "accept": {"status": 200}}, "`accept` needs mode: async"),
        ({"mode": "async", "fallback": "async"}, "`fallback` needs mode: sync"),
        (
            {"mode": "sync", "fallback": "async", "request_buffering": False},
            "needs request_buffering: true",
        ),
    ],
)
def test_answer_settings_need_the_right_mode(spec: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        spec_from_object({"name": "f", "worker": WORKER, **spec})


def test_answer_settings_have_defaults() -> None:
    spec = spec_from_object({"name": "f", "mode": "async", "worker": WORKER})
    assert (spec.accept, spec.max_wait, spec.fallback, spec.max_answer) == (None, 30, None, 10**6)


def test_a_workers_answer_is_kept_whole_or_not_at_all() -> None:
    headers = [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked"), ("X-A", "1")]
    kept = answer_of(201, headers, b"12345", 5)
    assert kept == Answer(
        status=201, headers=[("content-type", "text/plain"), ("x-a", "1")], body=b"12345"
    )
    assert answer_of(201, headers, b"123456", 5) is None
    assert answer_of(None, [], b"", 5) is None


def test_the_status_document_says_where_a_delivery_stands() -> None:
    def document(**fields: object) -> dict[str, object]:
        progress = Progress(request_id="r1", flow_id="f", **fields)  # type: ignore[arg-type]
        result: dict[str, object] = json.loads(status_document(progress))
        return result

    assert document(state=State.QUEUED, attempts=0) == {
        "requestId": "r1",
        "status": "queued",
        "attempts": 0,
    }
    assert document(state=State.QUEUED, attempts=1, last_error="HTTP 503")["status"] == "failed"
    assert document(state=State.LEASED, attempts=1)["status"] == "running"
    assert document(state=State.DEAD, attempts=3, last_error="HTTP 400")["lastError"] == "HTTP 400"
    text = Answer(status=200, headers=[("a", "b")], body=b"hi").encode()
    assert document(state=State.DONE, attempts=1, answer=text)["response"] == {
        "status": 200,
        "headers": [["a", "b"]],
        "body": "hi",
    }
    binary = Answer(status=200, headers=[], body=b"\xff\x00").encode()
    response = document(state=State.DONE, attempts=1, answer=binary)["response"]
    assert response == {
        "status": 200,
        "headers": [],
        "body": base64.b64encode(b"\xff\x00").decode(),
        "bodyEncoding": "base64",
    }


def test_status_tokens_are_long_random_and_url_safe() -> None:
    tokens = {new_status_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(len(t) == 32 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)
