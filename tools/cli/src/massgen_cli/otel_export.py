"""Sending a run to an OpenTelemetry backend: the span tree of :mod:`massgen_replay.traces` turned into
OpenTelemetry SDK spans and exported over OTLP/HTTP (protobuf), e.g. to Arize Phoenix.

Ids are deterministic: the trace id derives from the run id and each span id from the run id and the
span's key, so exporting a run twice sends the same spans (a backend that keys spans by id keeps one
copy) and a trace can be found from its run id (:func:`trace_id_of`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from massgen_es.errors import ExportFailed
from massgen_es.events import Record
from massgen_replay.traces import SpanPlan, run_spans

DEFAULT_ENDPOINT = "http://127.0.0.1:6006"
"""Where traces go when neither ``--endpoint`` nor ``OTEL_EXPORTER_OTLP_ENDPOINT`` says: a local Phoenix."""
DEFAULT_PROJECT = "massgen"
"""The ``openinference.project.name`` resource attribute (Phoenix files the traces under this project)."""
SERVICE_NAME = "massgen"
"""The ``service.name`` resource attribute."""
_BATCH = 512
"""Spans per OTLP request."""




def traces_url(endpoint: str | None) -> str:
    """The OTLP/HTTP traces URL to post to.

    ``endpoint`` (``--endpoint``) or else ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is taken as the full URL
    when it already ends in ``/v1/traces``; a base URL (``OTEL_EXPORTER_OTLP_ENDPOINT``, or
    :data:`DEFAULT_ENDPOINT`) gets ``/v1/traces`` appended, as the OTLP exporter specification says.
    """
    if endpoint is None and os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    base = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def _digest_int(text: str, n_bytes: int) -> int:
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:n_bytes], "big")
    return value or 1  # all-zero ids are invalid in OTel


def trace_id_of(run_id: str) -> str:
    """The 32-hex-digit trace id of ``run_id``'s trace (the first 16 bytes of a SHA-256 of the run id)."""
    return f"{_digest_int('massgen-run:' + run_id, 16):032x}"


class _RunIds(IdGenerator):
    """Ids derived from the run and the key of the span being started (set in :attr:`key`)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.key = "run"

    def generate_trace_id(self) -> int:
        return int(trace_id_of(self.run_id), 16)

    def generate_span_id(self) -> int:
        return _digest_int(f"massgen-span:{self.run_id}/{self.key}", 8)


class _Collect(SpanProcessor):
    """Keeps every ended span, to send them in one go and learn whether the backend took them."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def _ns(ts: float) -> int:
    return int(round(ts * 1e9))


_KINDS = {"chat": SpanKind.CLIENT}
"""Span kind by operation (OTel GenAI semconv: model calls are CLIENT spans; agents and tools INTERNAL)."""


def to_otel(run_id: str, plans: Sequence[SpanPlan], *, project: str = DEFAULT_PROJECT) -> list[ReadableSpan]:
    """Finished SDK spans for ``plans`` (root first, parents before children), timed by the events.

    The resource carries ``service.name`` (:data:`SERVICE_NAME`) and ``openinference.project.name``
    (``project``), which picks the Phoenix project.
    """
    ids = _RunIds(run_id)
    collect = _Collect()
    provider = TracerProvider(
        resource=Resource.create({"service.name": SERVICE_NAME, "openinference.project.name": project}),
        id_generator=ids,
        span_limits=SpanLimits(max_events=10_000, max_attributes=256),
    )
    provider.add_span_processor(collect)
    tracer = provider.get_tracer("massgen_cli.otel_export")
    live: dict[str, trace.Span] = {}
    for plan in plans:
        ids.key = plan.key
        parent = live.get(plan.parent) if plan.parent else None
        context = trace.set_span_in_context(parent) if parent is not None else Context()
        operation = str(plan.attributes.get("gen_ai.operation.name", ""))
        span = tracer.start_span(plan.name, context=context, kind=_KINDS.get(operation, SpanKind.INTERNAL),
                                 attributes=plan.attributes, start_time=_ns(plan.start))
        for ev in plan.events:
            span.add_event(ev.name, ev.attributes, timestamp=_ns(ev.ts))
        span.set_status(Status(StatusCode.ERROR, plan.error) if plan.error else Status(StatusCode.OK))
        span.end(end_time=_ns(plan.end if plan.end is not None else plan.start))
        live[plan.key] = span
    provider.shutdown()
    return collect.spans


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _exporter_log() -> Iterator[_Capture]:
    """The OTLP exporter's own log, captured (it reports why an export failed only there)."""
    logger = logging.getLogger("opentelemetry.exporter")
    capture, propagate = _Capture(), logger.propagate
    logger.addHandler(capture)
    logger.propagate = False
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.propagate = propagate


def _cause(messages: list[str]) -> str:
    """The exporter's reason for a failure: its first message names the cause (connection refused, an
    HTTP status), stripped of the retry wording; the last one only says it gave up."""
    if not messages:
        return "no reason given"
    transient = re.match(r"Transient error (.*) encountered while", messages[0], re.S)
    return transient.group(1) if transient else messages[0].rstrip(".")


def send(spans: Sequence[ReadableSpan], url: str, *, timeout_s: float = 10.0) -> None:
    """Post ``spans`` to the OTLP/HTTP traces ``url`` (protobuf), :data:`_BATCH` spans a request.

    Raises:
        ExportFailed: the backend was unreachable or refused a batch; the message names ``url``, the
            exporter's reason and the fix.
    """
    exporter = OTLPSpanExporter(endpoint=url, timeout=timeout_s)
    try:
        with _exporter_log() as log:
            for i in range(0, len(spans), _BATCH):
                if exporter.export(spans[i: i + _BATCH]) is not SpanExportResult.SUCCESS:
                    reason = _cause(log.messages)
                    raise ExportFailed(
                        f"could not export traces to {url}: {reason}. Is an OTLP/HTTP backend listening there "
                        "(e.g. Phoenix: `phoenix serve`)? Pass --endpoint URL or set OTEL_EXPORTER_OTLP_ENDPOINT"
                    )
    finally:
        exporter.shutdown()


@dataclass(frozen=True)
class Exported:
    """What :func:`export_run` sent: the run, its trace id (32 hex digits), the number of spans, where,
    and the run's status (``running`` when it had not ended: its open spans end at its last event)."""

    run_id: str
    trace_id: str
    spans: int
    url: str
    status: str


def export_run(run_id: str, records: list[Record], url: str, *, project: str = DEFAULT_PROJECT,
               timeout_s: float = 10.0) -> Exported:
    """Build the run's spans (:func:`massgen_replay.traces.run_spans`) and send them to ``url``.

    Raises:
        ExportFailed: as :func:`send`.
    """
    plans = run_spans(run_id, records)
    spans = to_otel(run_id, plans, project=project)
    send(spans, url, timeout_s=timeout_s)
    return Exported(run_id, trace_id_of(run_id), len(spans), url, str(plans[0].attributes["massgen.run.status"]))
