"""OpenTelemetry traces end to end: a real gateway exporting OTLP/HTTP to a collector in the test.

The collector decodes what the gateway's exporter really sends (protobuf), and the workers
record the ``traceparent`` they really got, so a trace is checked from the caller's span
through the gateway's spans to the worker.
"""

from __future__ import annotations

import secrets
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from tests.conftest import ROOT, GatewayProcess
from tests.e2e.helpers import eventually, recorded

from hookgate.errors import ConfigError
from hookgate.tracing import from_environment

FLAKY = ROOT / "tests" / "workers" / "flaky.py"
ECHO = ROOT / "examples" / "workers" / "echo.py"


class Collector:
    """An OTLP/HTTP trace receiver on a loopback port; keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.resources: list[dict[str, str]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.receive(self.path, body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def receive(self, path: str, body: bytes) -> None:
        assert path == "/v1/traces", path
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.resources.append(resource)
                    self.spans.append(
                        {
                            "name": span.name,
                            "trace": span.trace_id.hex(),
                            "id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "kind": Span.SpanKind.Name(span.kind),
                            "error": span.status.code == Status.STATUS_CODE_ERROR,
                            "attributes": {
                                a.key: getattr(a.value, a.value.WhichOneof("value"))
                                for a in span.attributes
                            },
                        }
                    )

    def named(self, name: str, **attributes: Any) -> list[dict[str, Any]]:
        return [
            s
            for s in self.spans
            if s["name"] == name and all(s["attributes"].get(k) == v for k, v in attributes.items())
        ]

    def one(self, name: str, **attributes: Any) -> dict[str, Any]:
        found = eventually(lambda: self.named(name, **attributes))
        assert len(found) == 1, found
        span: dict[str, Any] = found[0]
        return span


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector()
    collector.thread.start()
    yield collector
    collector.server.shutdown()
    collector.server.server_close()


FLOWS = f"""
flows:
  - name: api
    mode: sync
    worker: {{command: [{sys.executable}, {ECHO}]}}
    replicas: 1
  - name: orders
    mode: async
    worker:
      command: [{sys.executable}, {FLAKY}]
      env: {{RECORD_FILE: "{{record}}"}}
    retry: {{max_attempts: 3, backoff: 100ms, max_backoff: 200ms}}
"""


def traced_gateway(factory: Any, collector: Collector, record: Path) -> GatewayProcess:
    gateway: GatewayProcess = factory(
        FLOWS.replace("{record}", str(record)),
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "hookgate-under-test",
        },
    )
    eventually(lambda: gateway.flow("api")["workers"]["ready"] == 1)
    return gateway


def traceparent() -> tuple[str, str, str]:
    """A caller's ``traceparent``, with its trace id and span id."""
    trace, span = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace}-{span}-01", trace, span


def parts(header: str) -> tuple[str, str]:
    """Trace id and parent span id of a ``traceparent``."""
    version, trace, span, flags = header.split("-")
    assert version == "00" and int(flags, 16) & 1, header  # sampled
    return trace, span


def test_a_sync_request_is_one_trace_from_the_caller_to_the_worker(
    gateway_factory: Any, collector: Collector, tmp_path: Path
) -> None:
    gateway = traced_gateway(gateway_factory, collector, tmp_path / "record.jsonl")
    header, trace, caller_span = traceparent()
    answer = httpx.post(gateway.hook("api") + "/x", content=b"{}", headers={"traceparent": header})
    assert answer.status_code == 200

    request = collector.one("hookgate.request", **{"hookgate.flow": "api"})
    assert (request["trace"], request["parent"], request["kind"]) == (
        trace,
        caller_span,
        "SPAN_KIND_SERVER",
    )
    assert request["attributes"]["http.response.status_code"] == 200
    assert request["attributes"]["http.request.method"] == "POST"
    assert request["attributes"]["hookgate.request_id"] == answer.headers["x-request-id"]
    proxy = collector.one("hookgate.proxy")
    assert (proxy["trace"], proxy["parent"], proxy["kind"]) == (
        trace,
        request["id"],
        "SPAN_KIND_CLIENT",
    )
    # The worker continues the trace under the proxy span.
    assert parts(answer.json()["headers"]["traceparent"]) == (trace, proxy["id"])
    assert collector.resources[0]["service.name"] == "hookgate-under-test"


def test_an_async_request_and_its_delivery_attempts_share_one_trace(
    gateway_factory: Any, collector: Collector, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    gateway = traced_gateway(gateway_factory, collector, record)
    header, trace, caller_span = traceparent()
    answer = httpx.post(
        gateway.hook("orders") + "?status=503",
        content=b'{"n": 1}',
        headers={"traceparent": header},
    )
    assert answer.status_code == 202
    eventually(lambda: len(recorded(record)) == 3)  # three attempts, each answered 503

    request = collector.one("hookgate.request", **{"hookgate.flow": "orders"})
    assert (request["trace"], request["parent"]) == (trace, caller_span)
    assert request["attributes"]["http.response.status_code"] == 202
    store = collector.one("hookgate.store.enqueue")
    assert (store["trace"], store["parent"]) == (trace, request["id"])
    attempts = eventually(lambda: len(found := collector.named("hookgate.deliver")) == 3 and found)
    assert sorted(a["attributes"]["hookgate.attempt"] for a in attempts) == [1, 2, 3]
    for attempt in attempts:
        assert (attempt["trace"], attempt["parent"], attempt["kind"]) == (
            trace,
            request["id"],
            "SPAN_KIND_CLIENT",
        )
        assert attempt["attributes"]["http.response.status_code"] == 503
        assert attempt["error"]
        assert (
            attempt["attributes"]["hookgate.delivery_id"]
            == store["attributes"]["hookgate.delivery_id"]
        )
    # Each attempt reaches the worker as the parent of whatever the worker traces.
    by_attempt = {a["attributes"]["hookgate.attempt"]: a["id"] for a in attempts}
    for item in recorded(record):
        number = int(item["headers"]["x-hookgate-attempt"])
        assert parts(item["headers"]["traceparent"]) == (trace, by_attempt[number])


def test_a_request_without_traceparent_starts_a_trace_the_worker_joins(
    gateway_factory: Any, collector: Collector, tmp_path: Path
) -> None:
    gateway = traced_gateway(gateway_factory, collector, tmp_path / "record.jsonl")
    answer = httpx.post(gateway.hook("api"), content=b"{}")
    request = collector.one("hookgate.request", **{"hookgate.flow": "api"})
    assert request["parent"] == ""
    assert parts(answer.json()["headers"]["traceparent"])[0] == request["trace"]


def test_without_an_endpoint_there_is_no_tracing_and_traceparent_passes_through(
    gateway_factory: Any, tmp_path: Path
) -> None:
    gateway: GatewayProcess = gateway_factory(
        FLOWS.replace("{record}", str(tmp_path / "record.jsonl"))
    )
    eventually(lambda: gateway.flow("api")["workers"]["ready"] == 1)
    header, _, _ = traceparent()
    answer = httpx.post(gateway.hook("api"), content=b"{}", headers={"traceparent": header})
    assert answer.json()["headers"]["traceparent"] == header


def test_tracing_is_off_without_an_endpoint_or_when_disabled() -> None:
    assert not from_environment({}).enabled
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert not from_environment({**endpoint, "OTEL_SDK_DISABLED": "true"}).enabled
    traced = from_environment(endpoint)
    assert traced.enabled
    traced.shutdown()


def test_an_endpoint_without_the_otel_extra_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigError, match=r"pip install 'hookgate\[otel\]'"):
        from_environment({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318"})
