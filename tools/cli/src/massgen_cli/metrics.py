"""Prometheus metrics of a service process, derived from the events it appends and the work items it
takes (issue 14 item 4).

:class:`EventMetrics` is a :class:`massgen_es.observe.Observer`: the event log and the work queues tell
it what passed through them, and it folds that into counters and histograms; nothing in the services
counts anything. Every series carries ``service``, the writer's (or consumer's) one name, so the
embedded stack's single endpoint tells its services apart. The depth of the work queues this
process's services pull from is read from JetStream consumer info at scrape time
(:func:`massgen_es.ops.queue_depths`, as ``massgen status`` reads it).

Names follow Prometheus conventions (``_total`` counters, base units: ``_seconds``, ``_usd``); label
names follow OpenTelemetry's where one exists (``error_type`` for ``error.type``, ``token_type`` for
``gen_ai.token.type``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from nats.aio.client import Client
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from massgen_es import ops
from massgen_es.events import (
    AgentDropped,
    Event,
    ExecutionCompleted,
    ExecutionFailed,
    Failure,
    ProviderRetried,
    Record,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunTimedOut,
    Source,
    ToolCallCompleted,
    ToolCallFailed,
    ToolsListed,
    TurnFailed,
    TurnRequested,
    TurnResponded,
    UsageRecorded,
)
from massgen_es.subjects import WORK_QUEUES

log = logging.getLogger("massgen.metrics")
disable_created_metrics()  # no `_created` series: Prometheus does not need them, and they double the output

# LLM calls take from a fraction of a second (a cached vote) to minutes (a long answer on a CPU).
LLM_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 600)
# Tool calls and commands: milliseconds (a file read) to the executor's timeouts.
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_MAX_TURNS_TRACKED = 10_000  # turns whose model is remembered until their outcome (bounded: a lost outcome)


def _failure_type(failure: Failure | None) -> str:
    return failure.type if failure is not None else "unknown"


class EventMetrics:
    """The metrics of one process, on its own :class:`CollectorRegistry` (``registry``).

    Series (each with a ``service`` label; durations in seconds, cost in US dollars):

    - ``massgen_turns_total{agent, model, outcome}``: agent turns ended, ``outcome`` ``responded`` or
      ``failed`` (``turn.responded`` / ``turn.failed``): by ``service="agent_worker"`` as the provider
      answered (or failed), by ``service="orchestrator"`` when it gives up on a turn whose responses it
      rejected (enforcement);
    - ``massgen_llm_request_duration_seconds{agent, model}`` (histogram) and
      ``massgen_llm_time_to_first_token_seconds{agent, model}`` (histogram): one per LLM call
      (``usage.recorded``);
    - ``massgen_llm_tokens_total{agent, model, token_type}``: ``input``, ``output``, and of those
      ``cached`` (part of input) and ``reasoning`` (part of output);
    - ``massgen_llm_cost_usd_total{agent, model}``: from ``usage.recorded`` (``massgen_es.pricing``);
      calls of a model without a price add nothing;
    - ``massgen_tool_call_duration_seconds{mcp_server, tool, outcome}`` (histogram): ``ok``, ``error``
      (the tool answered with an error) or ``failed`` (``tool.call_failed``);
    - ``massgen_execution_duration_seconds{mode, outcome}`` (histogram): ``ok``, ``nonzero_exit`` or
      ``timed_out`` (``execution.completed``); ``execution.failed`` has no duration and counts only
      as a failure;
    - ``massgen_failures_total{event, error_type}``: every failure record appended (``turn.failed``,
      ``provider.retried``, ``tool.call_failed``, ``tools.listed``, ``execution.failed``,
      ``run.failed``) and ``agent.dropped``; ``error_type`` is the failure's kind (``massgen_es.errors``);
    - ``massgen_runs_total{outcome}``: ``completed``, ``timed_out``, ``failed`` (the orchestrator's);
    - ``massgen_events_total{event}``: events appended, by type;
    - ``massgen_work_items_total{queue}`` and ``massgen_work_item_redeliveries_total{queue}``: work items
      taken, and those taken again after a redelivery (``queue`` is the stream);
    - ``massgen_work_queue_pending``, ``massgen_work_queue_in_flight``,
      ``massgen_work_queue_redelivered`` (gauges ``{queue, consumer}``, no ``service``): JetStream's
      view of the work queues pulled by ``consumers``, read by :meth:`refresh_queues`; each replica of
      a service reports its queue (aggregate with ``max``). The orchestrator pulls from none.

    Args:
        consumers: the services of this process (their NATS users may read their own consumer's info
            only, so each endpoint reports the queues its services pull from).

    An event re-appended after a redelivery is dropped by the server as a duplicate and not counted
    again (``massgen_es.observe``).
    """

    def __init__(self, consumers: Collection[str] = ()) -> None:
        self.consumers = frozenset(consumers)
        self.registry = CollectorRegistry()
        r = self.registry
        self.turns = Counter("massgen_turns", "Agent turns ended, by outcome (responded or failed).",
                             ["service", "agent", "model", "outcome"], registry=r)
        self.llm_duration = Histogram("massgen_llm_request_duration_seconds", "Duration of one LLM call.",
                                      ["service", "agent", "model"], buckets=LLM_BUCKETS, registry=r)
        self.llm_ttft = Histogram("massgen_llm_time_to_first_token_seconds",
                                  "Time from an LLM call's start to its first streamed token.",
                                  ["service", "agent", "model"], buckets=LLM_BUCKETS, registry=r)
        self.tokens = Counter("massgen_llm_tokens", "LLM tokens; cached is part of input, reasoning of output.",
                              ["service", "agent", "model", "token_type"], registry=r)
        self.cost = Counter("massgen_llm_cost_usd", "LLM cost in US dollars (massgen_es.pricing).",
                            ["service", "agent", "model"], registry=r)
        self.tool_duration = Histogram("massgen_tool_call_duration_seconds", "Duration of one MCP tool call.",
                                       ["service", "mcp_server", "tool", "outcome"], buckets=CALL_BUCKETS,
                                       registry=r)
        self.exec_duration = Histogram("massgen_execution_duration_seconds", "Duration of one sandboxed command.",
                                       ["service", "mode", "outcome"], buckets=CALL_BUCKETS, registry=r)
        self.failures = Counter("massgen_failures", "Failure records appended, by event and failure kind.",
                                ["service", "event", "error_type"], registry=r)
        self.runs = Counter("massgen_runs", "Runs ended, by outcome.", ["service", "outcome"], registry=r)
        self.events = Counter("massgen_events", "Events appended to the log, by type.", ["service", "event"],
                              registry=r)
        self.items = Counter("massgen_work_items", "Work items taken from a work queue.", ["service", "queue"],
                             registry=r)
        self.redeliveries = Counter("massgen_work_item_redeliveries",
                                    "Work items taken again after a redelivery (delivery > 1).",
                                    ["service", "queue"], registry=r)
        self._queues = _QueueCollector()
        r.register(self._queues)
        self._models: OrderedDict[tuple[str, int], str] = OrderedDict()

    # --- massgen_es.observe.Observer -------------------------------------------------------------------

    def handled(self, consumer: str, record: Record, delivery: int) -> None:
        """Count a work item taken; remember a turn's model until its outcome is appended."""
        queue = _queue_of(consumer)
        self.items.labels(consumer, queue).inc()
        if delivery > 1:
            self.redeliveries.labels(consumer, queue).inc()
        event = record.event
        if isinstance(event, TurnRequested):
            self._remember(event.turn_id, event.attempt, _model_of(event))

    def appended(self, origin: Source, run_id: str, events: Sequence[Event]) -> None:
        """Fold appended events into the series."""
        for event in events:
            self._one(origin.service, event)

    def _one(self, svc: str, e: Event) -> None:  # noqa: C901 - one branch per event type, flat
        self.events.labels(svc, type(e).__struct_config__.tag or type(e).__name__).inc()
        if isinstance(e, TurnRequested):  # the orchestrator's: its own turn.failed (enforcement) has a model
            self._remember(e.turn_id, e.attempt, _model_of(e))
        elif isinstance(e, UsageRecorded):
            self._remember(e.turn_id, e.attempt, e.model)
            self.llm_duration.labels(svc, e.agent_id, e.model).observe(e.duration_s)
            if e.time_to_first_token_s is not None:
                self.llm_ttft.labels(svc, e.agent_id, e.model).observe(e.time_to_first_token_s)
            for kind, n in (("input", e.usage.input_tokens), ("output", e.usage.output_tokens),
                            ("cached", e.usage.cached_tokens), ("reasoning", e.usage.reasoning_tokens)):
                self.tokens.labels(svc, e.agent_id, e.model, kind).inc(n)
            self.cost.labels(svc, e.agent_id, e.model).inc(e.cost_usd or 0.0)
        elif isinstance(e, TurnResponded):
            self.turns.labels(svc, e.agent_id, self._models.pop((e.turn_id, e.attempt), "unknown"), "responded").inc()
        elif isinstance(e, TurnFailed):
            self.turns.labels(svc, e.agent_id, self._models.pop((e.turn_id, e.attempt), "unknown"), "failed").inc()
            self._failed(svc, "turn.failed", e.failure)
        elif isinstance(e, ProviderRetried):
            self._failed(svc, "provider.retried", e.failure)
        elif isinstance(e, ToolCallCompleted):
            outcome = "error" if e.is_error else "ok"
            self.tool_duration.labels(svc, e.server, e.tool, outcome).observe(e.duration_s)
        elif isinstance(e, ToolCallFailed):
            self.tool_duration.labels(svc, e.server, e.tool, "failed").observe(e.duration_s)
            self._failed(svc, "tool.call_failed", e.failure)
        elif isinstance(e, ToolsListed) and e.failure is not None:
            self._failed(svc, "tools.listed", e.failure)
        elif isinstance(e, ExecutionCompleted):
            outcome = "timed_out" if e.timed_out else "ok" if e.exit_code == 0 else "nonzero_exit"
            self.exec_duration.labels(svc, e.mode, outcome).observe(e.duration_s)
        elif isinstance(e, ExecutionFailed):
            self._failed(svc, "execution.failed", e.failure)
        elif isinstance(e, AgentDropped):
            self.failures.labels(svc, "agent.dropped", "AgentDropped").inc()
        elif isinstance(e, RunCompleted):
            self.runs.labels(svc, "completed").inc()
        elif isinstance(e, RunTimedOut):
            self.runs.labels(svc, "timed_out").inc()
        elif isinstance(e, RunCancelled):
            self.runs.labels(svc, "cancelled").inc()
        elif isinstance(e, RunFailed):
            self.runs.labels(svc, "failed").inc()
            self._failed(svc, "run.failed", e.failure)

    def _failed(self, svc: str, event: str, failure: Failure | None) -> None:
        self.failures.labels(svc, event, _failure_type(failure)).inc()

    def _remember(self, turn_id: str, attempt: int, model: str) -> None:
        self._models[(turn_id, attempt)] = model
        self._models.move_to_end((turn_id, attempt))
        while len(self._models) > _MAX_TURNS_TRACKED:
            self._models.popitem(last=False)

    # --- the work queues, read at scrape time ----------------------------------------------------------

    async def refresh_queues(self, nc: Client, timeout_s: float = 3.0) -> None:
        """Read the consumer info of the queues of ``consumers`` (:func:`massgen_es.ops.queue_depths`)
        for the next scrape, waiting up to ``timeout_s`` seconds; on failure or timeout the gauges are
        left out of the scrape (an absent series rather than a stale one) and the reason is logged."""
        try:
            self._queues.queues = await asyncio.wait_for(ops.queue_depths(nc, self.consumers), timeout_s)
        except Exception as exc:  # noqa: BLE001 - a scrape must still answer with the other series
            log.warning("reading the work queues' depth failed: %s: %s", type(exc).__name__, exc)
            self._queues.queues = []


def _model_of(turn: TurnRequested) -> str:
    return str(turn.backend.get("model") or turn.backend.get("type") or "unknown")


def _queue_of(consumer: str) -> str:
    return next((q.stream for q in WORK_QUEUES if q.consumer == consumer), consumer)


class _QueueCollector(Collector):
    """The work queues' gauges, from the last :meth:`EventMetrics.refresh_queues`."""

    def __init__(self) -> None:
        self.queues: list[dict[str, Any]] = []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """One gauge family per consumer-info count, one series per known queue."""
        for key, name, doc in (
            ("pending", "massgen_work_queue_pending", "Work items waiting for a consumer (JetStream num_pending)."),
            ("in_flight", "massgen_work_queue_in_flight", "Work items delivered, not yet acked (num_ack_pending)."),
            ("redelivered", "massgen_work_queue_redelivered",
             "Work items delivered more than once, not yet acked (num_redelivered)."),
        ):
            family = GaugeMetricFamily(name, doc, labels=["queue", "consumer"])
            for q in self.queues:
                if q[key] is not None:
                    family.add_metric([q["stream"], q["consumer"]], float(q[key]))
            yield family


__all__ = ["CALL_BUCKETS", "LLM_BUCKETS", "EventMetrics"]
