"""Optional OpenTelemetry traces (extra ``hookgate[otel]``).

One trace runs from the caller through the gateway to the worker: a ``hookgate.request`` span
per request on ``/hook/*`` (child of the caller's ``traceparent``, if it sent one), the store
write under it, then ``hookgate.proxy`` (sync) or one ``hookgate.deliver`` per attempt (async),
whose context reaches the worker as ``traceparent``. An async request is stored with the
request span's ``traceparent``, so its deliveries, however much later, join the same trace.

Tracing is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)
is set and ``OTEL_SDK_DISABLED`` is not ``true``; spans go out over OTLP/HTTP, and the exporter
reads the other standard ``OTEL_*`` variables itself. Off, it costs the hot path one attribute
check per request and nothing is imported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Literal

from hookgate.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span as OtelSpan

Headers = list[tuple[bytes, bytes]]
Kind = Literal["server", "client", "internal"]
Attributes = Mapping[str, str | int | float | bool]

TRACE_HEADERS = (b"traceparent", b"tracestate")
ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class Span:
    """What a traced step records as it goes; the disabled one records nothing."""

    def set(self, key: str, value: str | int | float | bool) -> None:
        pass

    def fail(self, message: str) -> None:
        pass


class Tracing:
    """Tracing switched off: every method is a no-op."""

    enabled = False

    def span(
        self,
        name: str,
        *,
        kind: Kind = "internal",
        parent: Headers | None = None,
        attributes: Attributes | None = None,
    ) -> contextlib.AbstractContextManager[Span]:
        """A span, current until the block ends; ``parent`` given: continue that trace."""
        return _NO_SCOPE

    def propagate(self, headers: Headers) -> Headers:
        """``headers`` with the current span as ``traceparent`` (any other one replaced)."""
        return headers

    def shutdown(self) -> None:
        """Send what is still buffered."""


_NO_SCOPE = contextlib.nullcontext(Span())


class _OtelSpan(Span):
    def __init__(self, span: OtelSpan) -> None:
        self._span = span

    def set(self, key: str, value: str | int | float | bool) -> None:
        self._span.set_attribute(key, value)

    def fail(self, message: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.set_status(Status(StatusCode.ERROR, message))


class OtelTracing(Tracing):
    enabled = True

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._provider = provider
        self._tracer = provider.get_tracer("hookgate")
        self._propagator = TraceContextTextMapPropagator()
        self._kinds = {
            "server": SpanKind.SERVER,
            "client": SpanKind.CLIENT,
            "internal": SpanKind.INTERNAL,
        }

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        *,
        kind: Kind = "internal",
        parent: Headers | None = None,
        attributes: Attributes | None = None,
    ) -> Iterator[Span]:
        context = None
        if parent is not None:
            carrier = {
                k.decode("latin-1").lower(): v.decode("latin-1")
                for k, v in parent
                if k.lower() in TRACE_HEADERS
            }
            context = self._propagator.extract(carrier)
        with self._tracer.start_as_current_span(
            name, context=context, kind=self._kinds[kind], attributes=attributes
        ) as span:
            yield _OtelSpan(span)

    def propagate(self, headers: Headers) -> Headers:
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        kept = [(k, v) for k, v in headers if k.lower() not in TRACE_HEADERS]
        return kept + [(k.encode(), v.encode("latin-1")) for k, v in carrier.items()]

    def shutdown(self) -> None:
        self._provider.shutdown()


def from_environment(environ: Mapping[str, str] = os.environ) -> Tracing:
    """Tracing as the standard ``OTEL_*`` variables ask for it; off when no endpoint is set."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return Tracing()
    if not any(environ.get(name) for name in ENDPOINTS):
        return Tracing()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        endpoint = next(name for name in ENDPOINTS if environ.get(name))
        raise ConfigError(
            f"{endpoint} is set but OpenTelemetry is not installed: "
            "pip install 'hookgate[otel]' (or unset it)"
        ) from None
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME", "hookgate")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return OtelTracing(provider)
