"""The one rule that hides credentials, signatures and worker env values wherever they show."""

from __future__ import annotations

from hookgate.domain import redaction
from hookgate.domain.redaction import MASK


def test_credentials_and_signatures_in_headers_are_shown_by_kind_and_length_only() -> None:
    pairs = [
        ("Authorization", "Bearer s3cret"),
        ("Cookie", "a=b"),
        ("Proxy-Authorization", "Basic dTpw"),
        ("X-Hub-Signature-256", "sha256=abc"),
        ("Stripe-Signature", "t=1,v1=abc"),
        ("webhook-signature", "v1,abc"),
        ("X-Shopify-Hmac-Sha256", "abc="),
        ("X-A", "1"),
    ]
    shown = dict(redaction.headers(pairs))
    assert shown["Authorization"] == f"Bearer {MASK} (13 characters, hidden)"
    assert shown["X-A"] == "1"
    for name, value in pairs[1:-1]:
        assert value not in shown[name], name
        assert MASK in shown[name]


def test_worker_env_values_and_secret_references_are_masked_keys_kept() -> None:
    spec = {
        "name": "orders",
        "worker": {"command": ["run"], "env": {"API_KEY": "plain"}},
        "auth": [{"type": "basic", "username": "u", "password": "env:P"}],
    }
    assert redaction.spec(spec) == {
        "name": "orders",
        "worker": {"command": ["run"], "env": {"API_KEY": MASK}},
        "auth": [{"type": "basic", "username": "u", "password": MASK}],
    }


def test_a_masked_value_sent_back_means_the_stored_one() -> None:
    stored = {
        "name": "orders",
        "worker": {"command": ["run"], "env": {"API_KEY": "plain", "MODE": "a"}},
        "auth": [{"type": "github", "secret": ["env:A", "env:B"]}],
    }
    edited = redaction.spec(stored)
    edited["worker"]["env"]["MODE"] = "b"
    edited["worker"]["env"]["NEW"] = MASK
    assert redaction.unmask(edited, stored) == {
        "name": "orders",
        "worker": {"command": ["run"], "env": {"API_KEY": "plain", "MODE": "b", "NEW": MASK}},
        "auth": [{"type": "github", "secret": ["env:A", "env:B"]}],
    }


def test_a_mask_outside_a_masked_field_is_left_for_validation_to_refuse() -> None:
    stored = {"name": "orders", "worker": {"command": ["run"]}}
    given = {"name": MASK, "worker": {"command": [MASK]}}
    assert redaction.unmask(given, stored) == given


def test_destination_credentials_are_masked_and_kept_on_a_round_trip() -> None:
    stored = {
        "destinations": [
            {"name": "bus", "rabbitmq": {"url": "amqp://app:s3cret@rabbit:5672/vh"}},
            {"name": "stream", "nats": {"subject": "s", "url": "nats://n:pw@nats:4222"}},
            {
                "name": "crm",
                "url": {
                    "url": "https://crm.example/hooks?token=abc&plain",
                    "headers": {"Authorization": "Bearer t0k", "X-Team": "blue"},
                },
            },
        ]
    }
    shown = redaction.spec(stored)
    text = str(shown)
    for secret in ("s3cret", ":pw@", "abc", "t0k"):
        assert secret not in text
    crm = shown["destinations"][2]["url"]
    assert crm["url"] == f"https://crm.example/hooks?token={redaction.MASK}&plain"
    assert crm["headers"] == {"Authorization": redaction.MASK, "X-Team": "blue"}
    assert (
        shown["destinations"][0]["rabbitmq"]["url"] == f"amqp://app:{redaction.MASK}@rabbit:5672/vh"
    )
    assert redaction.unmask(shown, stored) == stored
    edited = redaction.spec(stored)
    edited["destinations"][0]["rabbitmq"]["url"] = "amqp://app:new@rabbit:5672/vh"
    edited["destinations"][2]["url"]["headers"]["X-Team"] = "red"
    kept = redaction.unmask(edited, stored)
    assert kept["destinations"][0]["rabbitmq"]["url"] == "amqp://app:new@rabbit:5672/vh"
    assert kept["destinations"][2]["url"]["headers"] == {
        "Authorization": "Bearer t0k",
        "X-Team": "red",
    }
