"""Provider URL handshakes answered by the guard, and the schemes that come with them.

Each handshake is the provider's documented example request, checked against its documented
answer: Slack https://api.slack.com/events/url_verification, Meta
https://developers.facebook.com/docs/graph-api/webhooks/getting-started, Microsoft Graph
https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks, Zoom
https://developers.zoom.us/docs/api/webhooks/, Dropbox
https://www.dropbox.com/developers/reference/webhooks, X
https://docs.x.com/x-api/webhooks/quickstart, Okta
https://developer.okta.com/docs/concepts/event-hooks/. Slack's signatures come from
``slack_sdk``; the other providers publish no Python SDK that signs, so their HMACs are
computed here with the standard library, from each provider's description.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import msgspec
import pytest
from slack_sdk.signature import SignatureVerifier

from hookgate.domain.auth import AuthMethod
from hookgate.domain.units import dec_hook

from .support import check, handshake

NOSNIFF = (b"x-content-type-options", b"nosniff")
TEXT = b"text/plain; charset=utf-8"


def hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def test_a_flow_without_a_handshaking_scheme_has_no_handshakes(make_guard):
    guard = make_guard({"type": "github", "secret": "s"})
    assert handshake(guard, method="GET", query="hub.mode=subscribe&challenge=x") is None
    assert not make_guard({"type": "bearer", "token": "t"}).needs_body


# Slack ----------------------------------------------------------------------------------

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_CHALLENGE = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
SLACK_VERIFICATION = json.dumps(
    {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": SLACK_CHALLENGE, "type": "url_verification"}
).encode()


def slack_headers(body: bytes, secret: str = SLACK_SECRET) -> list[tuple[str, str]]:
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return [("X-Slack-Request-Timestamp", timestamp), ("X-Slack-Signature", signature)]


@pytest.fixture
def slack(make_guard):
    return make_guard({"type": "slack", "secret": SLACK_SECRET})


def test_slack_url_verification_is_answered_with_the_challenge(slack):
    answer = handshake(slack, slack_headers(SLACK_VERIFICATION), SLACK_VERIFICATION)
    assert answer is not None
    assert (answer.status, answer.body, answer.content_type) == (
        200,
        SLACK_CHALLENGE.encode(),
        TEXT,
    )
    assert answer.outcome == "answered"


def test_slack_url_verification_with_a_bad_signature_is_refused_401(slack):
    forged = slack_headers(SLACK_VERIFICATION, secret="not-the-secret")
    answer = handshake(slack, forged, SLACK_VERIFICATION)
    assert answer is not None
    assert (answer.status, answer.outcome, answer.body) == (401, "bad-signature", b"")
    unsigned = handshake(slack, [], SLACK_VERIFICATION)
    assert unsigned is not None and unsigned.outcome == "missing-signature"


def test_slack_events_are_not_handshakes(slack):
    event = b'{"type":"event_callback","event":{"text":"what is \\"url_verification\\"?"}}'
    assert handshake(slack, slack_headers(event), event) is None
    form = b'command=%2Fx&text="url_verification"'
    assert handshake(slack, slack_headers(form), form) is None
    assert check(slack, slack_headers(form), form) is None


# Meta -----------------------------------------------------------------------------------

META_QUERY = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock"


@pytest.fixture
def meta(make_guard):
    return make_guard({"type": "meta", "secret": "app-secret", "verify_token": "meatyhamhock"})


def test_meta_subscription_is_answered_with_the_challenge(meta):
    answer = handshake(meta, method="GET", query=META_QUERY)
    assert answer is not None
    assert (answer.status, answer.body, answer.content_type) == (200, b"1158201444", TEXT)
    assert NOSNIFF in answer.headers


@pytest.mark.parametrize(
    ("query", "outcome"),
    [
        (META_QUERY.replace("meatyhamhock", "meatyhamhocks"), "bad-credentials"),
        ("hub.mode=subscribe&hub.challenge=1158201444", "missing-credentials"),
        (META_QUERY + "&hub.verify_token=meatyhamhock", "malformed-request"),
        ("hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=meatyhamhock", "malformed-request"),
    ],
)
def test_meta_subscription_with_a_wrong_verify_token_is_refused_403(meta, query, outcome):
    answer = handshake(meta, method="GET", query=query)
    assert answer is not None
    assert (answer.status, answer.outcome) == (403, outcome)


def test_meta_notifications_are_checked_with_the_app_secret(meta):
    body = b'{"object":"page","entry":[{"id":"1","time":1520383571,"changes":[]}]}'
    signature = "sha256=" + hex_hmac("app-secret", body)
    assert handshake(meta, [("X-Hub-Signature-256", signature)], body) is None
    assert check(meta, [("X-Hub-Signature-256", signature)], body) is None
    wrong = "sha256=" + hex_hmac("meatyhamhock", body)
    rejection = check(meta, [("X-Hub-Signature-256", wrong)], body)
    assert rejection is not None and rejection.reason == "bad-signature"


# Microsoft Graph ------------------------------------------------------------------------

GRAPH_TOKEN = (
    "Validation: Testing client application reachability for subscription "
    "Request-Id: 0e9ab0b6-7d7f-4c15-9c50-3f9b8c4e7a65"
)
GRAPH_NOTIFICATION = {
    "value": [
        {
            "id": "lsgTZMr9KwAAA",
            "subscriptionId": "{subscription_guid}",
            "subscriptionExpirationDateTime": "2016-03-19T22:11:09.952Z",
            "clientState": "secretClientValue",
            "changeType": "created",
            "resource": "users/{user_guid}@{tenant_guid}/messages/{long_id_string}",
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": "Users/{user_guid}@{tenant_guid}/Messages/{long_id_string}",
                "@odata.etag": 'W/"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf"',
                "id": "{long_id_string}",
            },
        }
    ]
}


@pytest.fixture
def graph(make_guard):
    return make_guard({"type": "msgraph", "secret": "secretClientValue"})


def test_graph_validation_is_answered_with_the_decoded_token_as_text(graph):
    query = urlencode({"validationToken": GRAPH_TOKEN})
    assert "+" in query and "%3A" in query
    answer = handshake(graph, [("Content-Type", "text/plain; charset=utf-8")], query=query)
    assert answer is not None
    assert (answer.status, answer.body, answer.content_type) == (200, GRAPH_TOKEN.encode(), TEXT)


def test_sharepoint_spelling_of_the_validation_token_is_answered_too(graph):
    answer = handshake(graph, query="validationtoken=abc%2Fdef")
    assert answer is not None and (answer.status, answer.body) == (200, b"abc/def")


def test_graph_notifications_are_checked_by_client_state(graph):
    body = json.dumps(GRAPH_NOTIFICATION).encode()
    assert handshake(graph, body=body) is None
    assert check(graph, body=body) is None
    two = {"value": [*GRAPH_NOTIFICATION["value"], {"clientState": "guess"}]}
    cases = {
        "bad-credentials": two,
        "missing-credentials": {"value": [{"changeType": "created"}]},
        "malformed-request": {"value": []},
    }
    for reason, notification in cases.items():
        rejection = check(graph, body=json.dumps(notification).encode())
        assert rejection is not None and rejection.reason == reason
    rejection = check(graph, body=b"not json")
    assert rejection is not None and rejection.reason == "malformed-request"


def test_graph_validation_without_a_token_is_refused(graph):
    answer = handshake(graph, query="validationToken=")
    assert answer is not None and (answer.status, answer.outcome) == (400, "malformed-request")


# Zoom -----------------------------------------------------------------------------------

ZOOM_SECRET = "zoom-secret-token"
ZOOM_VALIDATION = json.dumps(
    {
        "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"},
        "event_ts": 1654503849680,
        "event": "endpoint.url_validation",
    }
).encode()


def zoom_headers(body: bytes, secret: str = ZOOM_SECRET, timestamp: int | None = None):
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = "v0=" + hex_hmac(secret, f"v0:{ts}:".encode() + body)
    return [("x-zm-request-timestamp", ts), ("x-zm-signature", signature)]


@pytest.fixture
def zoom(make_guard):
    return make_guard({"type": "zoom", "secret": ZOOM_SECRET})


def test_zoom_url_validation_is_answered_with_the_encrypted_token(zoom):
    answer = handshake(zoom, zoom_headers(ZOOM_VALIDATION), ZOOM_VALIDATION)
    assert answer is not None
    assert answer.status == 200 and answer.content_type == b"application/json"
    assert json.loads(answer.body) == {
        "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
        "encryptedToken": hex_hmac(ZOOM_SECRET, b"qgg8vlvZRS6UYooatFL8Aw"),
    }


@pytest.mark.parametrize(
    ("headers", "outcome"),
    [
        (zoom_headers(ZOOM_VALIDATION, secret="wrong"), "bad-signature"),
        (zoom_headers(ZOOM_VALIDATION, timestamp=int(time.time()) - 3600), "stale-timestamp"),
        ([], "missing-signature"),
    ],
)
def test_zoom_url_validation_that_zoom_did_not_sign_is_refused_401(zoom, headers, outcome):
    answer = handshake(zoom, headers, ZOOM_VALIDATION)
    assert answer is not None and (answer.status, answer.outcome) == (401, outcome)


def test_zoom_events_are_checked_with_the_signature(zoom):
    body = b'{"event":"meeting.started","payload":{"object":{"id":"1"}}}'
    assert handshake(zoom, zoom_headers(body), body) is None
    assert check(zoom, zoom_headers(body), body) is None
    rejection = check(zoom, zoom_headers(body, secret="wrong"), body)
    assert rejection is not None and rejection.reason == "bad-signature"


# Dropbox --------------------------------------------------------------------------------


@pytest.fixture
def dropbox(make_guard):
    return make_guard({"type": "dropbox", "secret": "dropbox-app-secret"})


def test_dropbox_verification_echoes_the_challenge_as_nosniff_text(dropbox):
    answer = handshake(dropbox, method="GET", query="challenge=<b>aGVsbG8</b>")
    assert answer is not None
    assert (answer.status, answer.body, answer.content_type) == (200, b"<b>aGVsbG8</b>", TEXT)
    assert NOSNIFF in answer.headers


def test_dropbox_notifications_are_checked_with_the_app_secret(dropbox):
    body = b'{"list_folder": {"accounts": ["dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"]}}'
    signature = hex_hmac("dropbox-app-secret", body)
    assert handshake(dropbox, [("X-Dropbox-Signature", signature)], body) is None
    assert check(dropbox, [("X-Dropbox-Signature", signature)], body) is None
    rejection = check(dropbox, [("X-Dropbox-Signature", hex_hmac("x", body))], body)
    assert rejection is not None and rejection.reason == "bad-signature"


# X --------------------------------------------------------------------------------------

X_SECRET = "z3ZX4v7mAAUGykl3EcmkqbartmuW8VFOOzCloLx9Q45P0hLrFu"


def x_sign(message: bytes, secret: str = X_SECRET) -> str:
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


@pytest.fixture
def x(make_guard):
    return make_guard({"type": "x", "secret": X_SECRET})


def test_x_crc_is_answered_with_the_response_token(x):
    token = "9b4507b3-9040-4669-9ca3-6b94edb50553"
    answer = handshake(x, method="GET", query=f"crc_token={token}&nonce=MTc2OTUxODI5MjkxNA")
    assert answer is not None and answer.status == 200
    assert json.loads(answer.body) == {"response_token": x_sign(token.encode())}


def test_x_crc_never_signs_something_that_could_be_an_event(x):
    forged = b'{"for_user_id":"1","tweet_create_events":[]}'
    answer = handshake(x, method="GET", query=urlencode({"crc_token": forged}))
    assert answer is not None and (answer.status, answer.outcome) == (400, "malformed-request")
    assert x_sign(forged).encode() not in answer.body


def test_x_events_are_checked_with_the_consumer_secret(x):
    body = b'{"for_user_id":"2244994945","tweet_create_events":[]}'
    headers = [("x-twitter-webhooks-signature", x_sign(body))]
    assert handshake(x, headers, body) is None
    assert check(x, headers, body) is None
    rejection = check(x, [("x-twitter-webhooks-signature", x_sign(body, "no"))], body)
    assert rejection is not None and rejection.reason == "bad-signature"


# Okta -----------------------------------------------------------------------------------

OKTA_CHALLENGE = "Me_rShK8JHsTnbyYrWXCEoMGbM_zsZ6k0hLPZ_Pg"


@pytest.fixture
def okta(make_guard):
    return make_guard({"type": "okta", "secret": "my-shared-secret"})


def test_okta_verification_is_answered_with_the_challenge(okta):
    headers = [
        ("User-Agent", "Okta-Integrations"),
        ("Accept", "application/json"),
        ("X-Okta-Request-Id", "XOZfPkReFFZ10KWyGkzAMwAAADA"),
        ("X-Okta-Verification-Challenge", OKTA_CHALLENGE),
        ("Authorization", "my-shared-secret"),
    ]
    answer = handshake(okta, headers, method="GET")
    assert answer is not None and answer.status == 200
    assert json.loads(answer.body) == {"verification": OKTA_CHALLENGE}
    assert okta.needs_body


def test_okta_verification_without_the_secret_is_refused_401(okta):
    for auth in ([("Authorization", "guess")], []):
        headers = [("X-Okta-Verification-Challenge", OKTA_CHALLENGE), *auth]
        answer = handshake(okta, headers, method="GET")
        assert answer is not None and answer.status == 401
        assert answer.outcome in {"bad-credentials", "missing-credentials"}


def test_okta_events_are_checked_with_the_configured_header(make_guard):
    guard = make_guard({"type": "okta", "secret": "s3", "header": "X-Hook-Key"})
    body = b'{"eventType":"com.okta.event_hook","data":{"events":[]}}'
    assert check(guard, [("X-Hook-Key", "s3")], body) is None
    rejection = check(guard, [("Authorization", "s3")], body)
    assert rejection is not None and rejection.reason == "missing-credentials"


# configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "meta", "secret": "env:A"}, "verify_token"),
        ({"type": "meta", "secret": "env:A", "verify_token": "inline"}, "referenced"),
        ({"type": "okta", "secret": "env:A", "header": "Bad: header"}, "header name"),
    ],
)
def test_bad_entries_are_refused_when_the_flow_is_applied(entry, message):
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert([entry], list[AuthMethod], dec_hook=dec_hook)
