"""Every JetStream stream, subject and consumer name, built here and nowhere else.

One name per service (``ServiceName``): the service's package is ``massgen_<name>``, ``massgen serve
<name>`` runs it, its events carry ``Source.service == <name>`` and go to the subject token ``<name>``,
and its work queue's durable consumer is ``<name>``. (Compose calls the containers ``agent-worker`` and
``mcp-broker``: host names take no underscore.)

Layout (events through the event stream, work through work queues; docs/architecture):

- stream ``MASSGEN_EVENTS`` (file storage, limits retention, deny delete and purge, atomic batches):
  ``massgen.run.<run_id>.<writer>`` where ``writer`` (``WRITERS``) is who may write there:
    - ``cli``: the command line (``run.submitted``; ``tool.call_requested`` of ``massgen mcp call``);
    - ``orchestrator``: the orchestrator's decisions, appended in atomic batches guarded by
      ``Nats-Expected-Last-Subject-Sequence`` so two orchestrators can never both decide for one run;
    - ``timer``: deadlines noticed by the orchestrator shell (time enters the core only as events);
    - ``agent_worker``: agent workers (turn started, text deltas, usage, responses, failures);
    - ``mcp_broker``: the MCP broker (tool catalogs, tool-call results, server states, snapshots);
    - ``executor``: the executor (command results, sandbox lifecycle).
- stream ``MASSGEN_TURNS`` (work-queue retention): ``massgen.turns.<run_id>``; one durable pull
  consumer ``agent_worker`` shared by every worker replica.
- stream ``MASSGEN_TOOLS`` (work-queue retention): ``massgen.tools.<run_id>``; tool-list, tool-call and
  snapshot requests for the MCP broker, one durable pull consumer ``mcp_broker``.
- stream ``MASSGEN_EXEC`` (work-queue retention): ``massgen.exec.<run_id>``; command executions for the
  executor, one durable pull consumer ``executor``. Large payloads go to the Object Store bucket
  ``MASSGEN_OBJECTS``.
- ``massgen.mcp.inspect`` and ``massgen.mcp.call`` (``MCP_INSPECT_SUBJECT``, ``MCP_CALL_SUBJECT``):
  request-reply (core NATS, no stream); ``massgen mcp list`` / ``mcp call`` ask an MCP broker.
- reads of ``MASSGEN_EVENTS`` are batched direct gets on ``$JS.API.DIRECT.GET.MASSGEN_EVENTS``.
- replies and consumer deliveries arrive on ``_INBOX_<nats user>.…`` (``inbox_prefix``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import urlsplit

from massgen_es.errors import ConfigError

ServiceName = Literal["orchestrator", "agent_worker", "mcp_broker", "executor"]
"""The services, each by its one name (module docstring)."""
SERVICE_NAMES: tuple[ServiceName, ...] = get_args(ServiceName)
Writer = Literal["cli", "orchestrator", "timer", "agent_worker", "mcp_broker", "executor"]
"""Who may write a run's events: the services, the command line, and the orchestrator's timers."""
WRITERS: tuple[Writer, ...] = get_args(Writer)

EVENTS_STREAM = "MASSGEN_EVENTS"
TURNS_STREAM = "MASSGEN_TURNS"
WORKER_CONSUMER: ServiceName = "agent_worker"
TOOLS_STREAM = "MASSGEN_TOOLS"
EXEC_STREAM = "MASSGEN_EXEC"
EXECUTOR_CONSUMER: ServiceName = "executor"
OBJECTS_BUCKET = "MASSGEN_OBJECTS"
"""Object Store bucket of large payloads (full command output, produced files), named by digest."""
SERVICES_BUCKET = "MASSGEN_SERVICES"
"""Key-value bucket of service heartbeats (``massgen status``); entries expire."""
TOOL_SAFETY_BUCKET = "MASSGEN_TOOL_SAFETY"
"""Key-value bucket of LLM tool classifications, keyed by ``massgen_es.tool_safety.digest`` (server,
tool, input schema): a tool is classified once, reused by every run (issue 15 item 2)."""
SECRETS_BUCKET = "MASSGEN_SECRETS"
"""Key-value bucket of MCP ``env``/``headers`` values, keyed by digest; never part of the event log."""
BROKER_CONSUMER: ServiceName = "mcp_broker"

MCP_INSPECT_SUBJECT = "massgen.mcp.inspect"
"""Request-reply subject of ``massgen mcp list``: the command line sends its config's agents
(``massgen_es.mcp_inspect.InspectRequest``); an MCP broker answers with each server's state, circuit
breaker, catalog version and tools. Nothing is recorded: a listing changes no run."""
MCP_CALL_SUBJECT = "massgen.mcp.call"
"""Request-reply subject of ``massgen mcp call``: the command line names a ``tool.call_requested`` it
appended to a run of mode ``tool_call`` (``massgen_es.mcp_inspect.CallRequest``); an MCP broker makes the
call as it makes a model's, records the outcome in the log, and answers when it is recorded. The command
line pushes no work (it may not publish to the work queues)."""
MCP_REQUESTS = "massgen.mcp.*"
"""Both request subjects: what the brokers subscribe to, in queue group ``mcp_broker`` (one answers)."""

EVENTS_WILDCARD = "massgen.run.>"
EVENTS_DIRECT_GET = f"$JS.API.DIRECT.GET.{EVENTS_STREAM}"
"""JetStream direct-get API of the event stream (reads without a consumer; ADR-31)."""
TURNS_WILDCARD = "massgen.turns.>"
TOOLS_WILDCARD = "massgen.tools.>"
EXEC_WILDCARD = "massgen.exec.>"


@dataclass(frozen=True)
class WorkQueue:
    """A work-queue stream: who pushes items, and the service whose replicas pull them through one
    durable consumer named after it."""

    stream: str
    subjects: str
    consumer: ServiceName
    pushed_by: tuple[Writer, ...]
    items: str


WORK_QUEUES: tuple[WorkQueue, ...] = (
    WorkQueue(TURNS_STREAM, TURNS_WILDCARD, WORKER_CONSUMER, ("orchestrator",), "agent turns (turn.requested)"),
    WorkQueue(TOOLS_STREAM, TOOLS_WILDCARD, BROKER_CONSUMER, ("agent_worker",),
              "tool catalogs, tool calls and workspace snapshots"),
    WorkQueue(EXEC_STREAM, EXEC_WILDCARD, EXECUTOR_CONSUMER, ("agent_worker",), "command executions"),
)

RENAMED_CONSUMERS: dict[str, ServiceName] = {
    "agent-workers": WORKER_CONSUMER, "mcp-brokers": BROKER_CONSUMER, "executors": EXECUTOR_CONSUMER,
}
"""Work-queue consumers of earlier versions (before the one-name-per-service rename), by the consumer
that replaces each. A JetStream store made by such a version still holds them, and a work-queue stream
takes one consumer per subject: the service deletes its predecessor (its pending items stay in the
stream for the new consumer)."""

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _check_token(kind: str, value: str) -> str:
    # A dot or wildcard in a token would silently widen a subscription to other runs.
    if not _TOKEN.match(value):
        raise ValueError(f"invalid {kind} {value!r}: use 1-128 letters, digits, '_' or '-'")
    return value


def run_subject(run_id: str, source: Writer) -> str:
    """Subject of one run's events written by ``source`` (one of ``WRITERS``)."""
    if source not in WRITERS:
        raise ValueError(f"unknown event writer {source!r}; expected one of {WRITERS}")
    return f"massgen.run.{_check_token('run id', run_id)}.{source}"


def run_filter(run_id: str) -> str:
    """Filter subject matching every event of one run."""
    return f"massgen.run.{_check_token('run id', run_id)}.>"


def source_filter(run_id: str | None, source: Writer) -> str:
    """Filter subject matching what ``source`` wrote, for one run or (``run_id=None``) for every run."""
    if source not in WRITERS:
        raise ValueError(f"unknown event writer {source!r}; expected one of {WRITERS}")
    return run_subject(run_id, source) if run_id else f"massgen.run.*.{source}"


def inbox_prefix(url: str) -> str:
    """The reply-inbox prefix of a connection: ``_INBOX_<user>`` for a URL with a user
    (``nats://agent_worker:pw@nats:4222`` -> ``_INBOX_agent_worker``), else NATS's ``_INBOX``.

    JetStream replies, pull deliveries and follow deliveries arrive on inboxes; with one prefix per
    user, deploy/nats/nats.conf lets each user subscribe to its own inboxes only, so no service can
    listen to another's replies (the broker's secret reads, say).

    Raises:
        ConfigError: the user name cannot be a subject token (it has a dot, a space or a wildcard).
    """
    user = urlsplit(url.split(",")[0].strip()).username
    if user and not _TOKEN.match(user):
        raise ConfigError(f"NATS user {user!r} in the URL cannot name an inbox: "
                          "use letters, digits, '_' or '-'")
    return f"_INBOX_{user}" if user else "_INBOX"


def turn_subject(run_id: str) -> str:
    """Work-queue subject for the agent turns of one run."""
    return f"massgen.turns.{_check_token('run id', run_id)}"


def tool_subject(run_id: str) -> str:
    """Work-queue subject for the MCP broker's requests of one run."""
    return f"massgen.tools.{_check_token('run id', run_id)}"


def exec_subject(run_id: str) -> str:
    """Work-queue subject for the executor's requests of one run."""
    return f"massgen.exec.{_check_token('run id', run_id)}"


def run_id_of(subject: str) -> str:
    """Run id from a ``massgen.run.<run_id>.<source>`` or ``massgen.turns.<run_id>`` subject."""
    return subject.split(".")[2]


def source_of(subject: str) -> str:
    """Source token of a ``massgen.run.<run_id>.<source>`` subject."""
    return subject.split(".")[3]
