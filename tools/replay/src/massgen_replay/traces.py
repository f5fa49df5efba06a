"""A run as a tree of trace spans, following the OpenTelemetry GenAI semantic conventions: a pure
projection of the run's events, with no OpenTelemetry dependency (``massgen export otel`` turns it into
SDK spans and sends them).

The tree (OTel GenAI semconv: agent spans, model spans, ``execute_tool`` spans):

- the run: ``invoke_workflow <run id>`` (``gen_ai.operation.name=invoke_workflow``), from
  ``run.submitted`` to the terminal event, with the question, status, winner and final answer;
- one span per turn attempt: ``invoke_agent <agent id>``, from ``turn.started`` to its response or
  failure; the answers and votes it led to are its span events (``massgen.answer``, ``massgen.vote``);
- under it, one span per LLM call: ``chat <model>`` (``usage.recorded`` ends it, ``duration_s`` gives
  its start), with the model, tokens and, on the attempt's last call, the finish reason;
- and one span per tool call or command: ``execute_tool <tool>``, from its start (or request) to its
  outcome, in error when it failed, returned ``isError``, exited non-zero or timed out.

Times are the events' own timestamps (Unix seconds), never the time of export. Only what the events
hold goes in (they are scrubbed of secrets when they are written, principle 7): of a backend block just
its ``type`` and ``model``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from massgen_es.events import (
    AgentDropped,
    AnswerPosted,
    BudgetExceeded,
    ConsensusReached,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionStarted,
    PostEvaluationStarted,
    PostEvaluationSubmitted,
    PresentationStarted,
    ProviderRetried,
    Record,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunRestarted,
    RunSubmitted,
    RunTimedOut,
    TimerFired,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolCallStarted,
    TurnFailed,
    TurnRejected,
    TurnRequested,
    TurnResponded,
    TurnStarted,
    UsageRecorded,
    VoteCast,
    VoteInvalidated,
)

AttrValue = str | int | float | bool | list[str]
"""An attribute value as OTel takes it (a primitive or a homogeneous list)."""

TEXT_LIMIT = 4000
"""Characters kept of a free text (question, answer, tool output) in an attribute."""

EXECUTE_COMMAND = "execute_command"
"""``gen_ai.tool.name`` of a command run by the executor (the ``command_line`` tool's bare name)."""

_PROVIDERS = {
    "openai": "openai", "claude": "anthropic", "claude_code": "anthropic", "gemini": "gcp.gemini",
    "azure_openai": "azure.ai.openai", "grok": "x_ai", "groq": "groq",
}
"""Backend type -> ``gen_ai.provider.name`` well-known value (OTel GenAI semconv); others keep their type."""


@dataclass
class SpanEvent:
    """An event on a span: ``ts`` in Unix seconds."""

    name: str
    ts: float
    attributes: dict[str, AttrValue] = field(default_factory=dict)


@dataclass
class SpanPlan:
    """One span to export.

    Attributes:
        key: stable id of the span within its run (``run``, ``turn:<turn>:<attempt>``, ...), from which
            the exporter derives a deterministic span id.
        parent: the parent's key, None for the run's root span.
        start, end: Unix seconds, from the events.
        error: the status description when the span failed, None when it did not.
    """

    key: str
    parent: str | None
    name: str
    start: float
    end: float | None = None
    attributes: dict[str, AttrValue] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    error: str | None = None


def clip(text: str, n: int = TEXT_LIMIT) -> str:
    """``text`` cut to ``n`` characters (with an ellipsis when cut)."""
    return text if len(text) <= n else text[: n - 1] + "…"


class _Builder:
    """Folds a run's records into spans (one pass, in stream order)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.root = SpanPlan("run", None, f"invoke_workflow {run_id}", 0.0, attributes={
            "gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": "massgen",
            "gen_ai.conversation.id": run_id, "massgen.run.id": run_id, "massgen.run.status": "running",
            "openinference.span.kind": "CHAIN",
        })
        self.spans: dict[str, SpanPlan] = {"run": self.root}
        self.backends: dict[str, tuple[str, str]] = {}
        """agent id -> (backend type, configured model)."""
        self.kinds: dict[str, str] = {}
        """turn id -> ``coordination``, ``presentation`` or ``post_evaluation``."""
        self.attempts: dict[str, str] = {}
        """turn id -> key of its latest attempt span."""
        self.chats: dict[str, str] = {}
        """attempt key -> key of its latest chat span."""
        self.tools: dict[tuple[str, str], str] = {}
        """(turn id, call id) -> key of the tool span."""
        self.last_ts = 0.0

    def _agent_attrs(self, agent_id: str) -> dict[str, AttrValue]:
        return {"gen_ai.agent.id": agent_id, "gen_ai.agent.name": agent_id, "gen_ai.conversation.id": self.run_id}

    def _open(self, key: str, parent: str, name: str, start: float, attrs: dict[str, AttrValue]) -> SpanPlan:
        span = SpanPlan(key, parent if parent in self.spans else "run", name, start, attributes=attrs)
        self.spans[key] = span
        return span

    def _end(self, key: str | None, ts: float, error: str | None = None) -> SpanPlan | None:
        span = self.spans.get(key) if key else None
        if span is not None:
            span.end = ts
            if error:
                span.error = error
                span.attributes["error.type"] = error.split(":", 1)[0]
        return span

    def _event_on(self, turn_id: str, name: str, ts: float, attrs: dict[str, AttrValue]) -> None:
        self.spans[self.attempts.get(turn_id, "run")].events.append(SpanEvent(name, ts, attrs))

    def apply(self, r: Record) -> None:
        """Fold one record."""
        self.last_ts = max(self.last_ts, r.ts)
        ev = r.event
        match ev:
            case RunSubmitted() | RunCompleted() | RunTimedOut() | RunFailed() | RunCancelled():
                self._run(r.ts, ev)
            case TurnRequested() | TurnStarted() | TurnResponded() | TurnFailed() | TurnRejected() | ProviderRetried():
                self._turn(r.ts, ev)
            case UsageRecorded():
                self._chat(r.ts, ev)
            case ToolCallRequested() | ToolCallStarted() | ToolCallCompleted() | ToolCallFailed():
                self._tool(r.ts, ev)
            case ExecutionRequested() | ExecutionStarted() | ExecutionCompleted() | ExecutionFailed():
                self._execution(r.ts, ev)
            case AnswerPosted():
                self._event_on(ev.turn_id, "massgen.answer", r.ts, {
                    "gen_ai.agent.id": ev.agent_id, "massgen.answer.label": ev.label,
                    "massgen.answer.anon_id": ev.anon_id, "massgen.answer.content": clip(ev.content)})
            case VoteCast():
                self._event_on(ev.turn_id, "massgen.vote", r.ts, {
                    "gen_ai.agent.id": ev.voter_id, "massgen.vote.target_id": ev.target_id,
                    "massgen.vote.target_anon": ev.target_anon, "massgen.vote.reason": clip(ev.reason)})
            case _:
                self._run_event(r.ts, ev)

    def _run(self, ts: float, ev: RunSubmitted | RunCompleted | RunTimedOut | RunFailed | RunCancelled) -> None:
        a = self.root.attributes
        match ev:
            case RunSubmitted():
                self.root.start = ts
                a["massgen.run.question"] = a["input.value"] = clip(ev.question)
                a["massgen.run.agents"] = [s.id for s in ev.agents]
                for s in ev.agents:
                    self.backends[s.id] = (str(s.backend.get("type", "")), str(s.backend.get("model", "")))
            case RunCompleted() | RunTimedOut():
                a["massgen.run.status"] = "completed" if isinstance(ev, RunCompleted) else "timed_out"
                if ev.winner_id:
                    a["massgen.run.winner"] = ev.winner_id
                if ev.final_answer is not None:
                    a["massgen.run.final_answer"] = a["output.value"] = clip(ev.final_answer)
                self._end("run", ts)
            case RunFailed():
                a["massgen.run.status"] = "failed"
                self._end("run", ts, ev.failure.text() if ev.failure else f"RunFailed: {ev.reason}")
            case RunCancelled():
                a["massgen.run.status"] = "cancelled"
                self._end("run", ts, f"RunCancelled: {ev.by}" + (f": {ev.reason}" if ev.reason else ""))

    def _run_event(self, ts: float, ev: object) -> None:
        """Decisions and incidents of the run as events on the root span."""
        events = self.root.events
        match ev:
            case ConsensusReached():
                events.append(SpanEvent("massgen.consensus", ts, {
                    "massgen.run.winner": ev.winner_id, "massgen.consensus.winner_anon": ev.winner_anon,
                    "massgen.consensus.tally": [f"{k}={n}" for k, n in ev.tally.items()],
                    "massgen.consensus.tie_broken": ev.tie_broken}))
            case PresentationStarted():
                events.append(SpanEvent("massgen.presentation", ts, {
                    "gen_ai.agent.id": ev.presenter_id, "massgen.presentation.reason": ev.reason}))
            case PostEvaluationStarted():
                events.append(SpanEvent("massgen.post_evaluation", ts, {
                    "gen_ai.agent.id": ev.evaluator_id, "massgen.run.attempt": ev.attempt}))
            case PostEvaluationSubmitted():
                events.append(SpanEvent("massgen.post_evaluation.submitted", ts, {
                    "gen_ai.agent.id": ev.evaluator_id, "massgen.post_evaluation.auto": ev.auto}))
            case RunRestarted():
                events.append(SpanEvent("massgen.restart", ts, {
                    "gen_ai.agent.id": ev.evaluator_id, "massgen.run.attempt": ev.attempt,
                    "massgen.restart.reason": clip(ev.reason), "massgen.restart.instructions": clip(ev.instructions)}))
            case VoteInvalidated():
                events.append(SpanEvent("massgen.vote_invalidated", ts, {
                    "gen_ai.agent.id": ev.voter_id, "massgen.vote.target_id": ev.target_id,
                    "massgen.vote.invalidated_by": ev.by_label}))
            case AgentDropped():
                events.append(SpanEvent("massgen.agent_dropped", ts, {
                    "gen_ai.agent.id": ev.agent_id, "massgen.reason": clip(ev.reason)}))
            case BudgetExceeded():
                events.append(SpanEvent("massgen.budget_exceeded", ts, {
                    "massgen.cost_usd": ev.cost_usd, "massgen.max_cost_usd": ev.max_cost_usd}))
            case TimerFired():
                events.append(SpanEvent("massgen.timer", ts, {"massgen.timer.name": ev.name}))
            case _:
                pass

    def _turn(self, ts: float, ev: TurnRequested | TurnStarted | TurnResponded | TurnFailed | TurnRejected
              | ProviderRetried) -> None:
        key = f"turn:{ev.turn_id}:{ev.attempt}"
        match ev:
            case TurnRequested():
                self.kinds[ev.turn_id] = ev.kind
            case TurnStarted():
                span = self.spans.get(key)
                if span is None:  # a redelivery of the same attempt keeps the first start
                    span = self._open(key, "run", f"invoke_agent {ev.agent_id}", ts, {
                        "gen_ai.operation.name": "invoke_agent", **self._agent_attrs(ev.agent_id),
                        "massgen.turn.id": ev.turn_id, "massgen.turn.attempt": ev.attempt,
                        "massgen.turn.kind": self.kinds.get(ev.turn_id, "coordination"),
                        "openinference.span.kind": "AGENT"})
                span.attributes["massgen.turn.deliveries"] = ev.delivery
                self.attempts[ev.turn_id] = key
            case TurnResponded():
                span = self._end(key, ts)
                if span is not None:
                    span.attributes["output.value"] = clip(ev.content or ", ".join(c.name for c in ev.tool_calls))
                chat = self.spans.get(self.chats.get(key, ""))
                if chat is not None and ev.finish_reason:  # the attempt's last LLM call gave the response
                    chat.attributes["gen_ai.response.finish_reasons"] = [ev.finish_reason]
            case TurnFailed():
                if self._end(key, ts, ev.failure.text()) is None:  # failed by enforcement, not in an attempt
                    self.root.events.append(SpanEvent("massgen.turn_failed", ts, {
                        "gen_ai.agent.id": ev.agent_id, "massgen.turn.id": ev.turn_id,
                        "error.type": ev.failure.type, "massgen.reason": clip(ev.failure.message)}))
            case TurnRejected():
                self._event_on(ev.turn_id, "massgen.turn_rejected", ts, {
                    "massgen.reject.code": ev.code, "massgen.reject.errors": [clip(e, 500) for e in ev.errors]})
            case ProviderRetried():
                self._event_on(ev.turn_id, "massgen.provider_retry", ts, {
                    "massgen.retry": ev.retry, "massgen.retry.delay_s": ev.delay_s,
                    "error.type": ev.failure.type, "massgen.reason": clip(ev.failure.message, 500)})

    def _chat(self, ts: float, ev: UsageRecorded) -> None:
        parent = f"turn:{ev.turn_id}:{ev.attempt}"
        n = sum(1 for k in self.spans if k.startswith(f"chat:{ev.turn_id}:{ev.attempt}:"))
        backend, requested = self.backends.get(ev.agent_id, ("", ""))
        model = requested or ev.model
        provider = _PROVIDERS.get(backend, backend or "unknown")
        u = ev.usage
        attrs: dict[str, AttrValue] = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.system": provider,
            "gen_ai.request.model": model, "gen_ai.response.model": ev.model, **self._agent_attrs(ev.agent_id),
            "gen_ai.usage.input_tokens": u.input_tokens, "gen_ai.usage.output_tokens": u.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": u.cached_tokens,
            "massgen.usage.reasoning_tokens": u.reasoning_tokens,
            "massgen.turn.id": ev.turn_id, "massgen.turn.attempt": ev.attempt, "massgen.backend.type": backend,
            # OpenInference (Phoenix's own conventions), so its UI shows the model and the tokens
            "openinference.span.kind": "LLM", "llm.model_name": ev.model, "llm.provider": provider,
            "llm.token_count.prompt": u.input_tokens, "llm.token_count.completion": u.output_tokens,
            "llm.token_count.total": u.input_tokens + u.output_tokens,
        }
        if ev.cost_usd is not None:
            attrs["massgen.cost_usd"] = ev.cost_usd
        if ev.time_to_first_token_s is not None:
            attrs["massgen.time_to_first_token_s"] = ev.time_to_first_token_s
        key = f"chat:{ev.turn_id}:{ev.attempt}:{n}"
        self._open(key, parent, f"chat {model}", ts - ev.duration_s, attrs).end = ts
        self.chats[parent] = key

    def _tool_span(self, ts: float, turn_id: str, attempt: int | None, call_id: str, tool: str,
                   agent_id: str) -> SpanPlan:
        key = self.tools.get((turn_id, call_id))
        if key is None:  # an outcome with no request (a refusal the worker records itself)
            parent = f"turn:{turn_id}:{attempt}" if attempt is not None else self.attempts.get(turn_id, "run")
            key = f"tool:{turn_id}:{attempt if attempt is not None else 0}:{call_id}"
            self._open(key, parent, f"execute_tool {tool}", ts, {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool, "gen_ai.tool.call.id": call_id,
                "gen_ai.tool.type": "function", **self._agent_attrs(agent_id), "massgen.turn.id": turn_id,
                "openinference.span.kind": "TOOL", "tool.name": tool})
            self.tools[(turn_id, call_id)] = key
        return self.spans[key]

    def _tool(self, ts: float, ev: ToolCallRequested | ToolCallStarted | ToolCallCompleted | ToolCallFailed) -> None:
        attempt = ev.attempt if isinstance(ev, ToolCallRequested) else None
        span = self._tool_span(ts, ev.turn_id, attempt, ev.call_id, ev.tool, ev.agent_id)
        span.attributes["massgen.mcp.server"] = ev.server
        match ev:
            case ToolCallRequested():
                span.attributes["gen_ai.tool.call.arguments"] = span.attributes["input.value"] = clip(ev.arguments)
            case ToolCallStarted():
                span.start = ts  # the call itself, not its wait in the queue
            case ToolCallCompleted():
                span.attributes["output.value"] = clip(ev.content)
                span.attributes["massgen.tool.attempts"] = ev.attempts
                if ev.replayed_from:
                    span.attributes["massgen.tool.replayed_from"] = ev.replayed_from
                self._end(span.key, ts, "ToolError: the tool returned isError" if ev.is_error else None)
            case ToolCallFailed():
                self._end(span.key, ts, ev.failure.text())

    def _execution(self, ts: float, ev: ExecutionRequested | ExecutionStarted | ExecutionCompleted
                   | ExecutionFailed) -> None:
        attempt = ev.attempt if isinstance(ev, ExecutionRequested) else None
        span = self._tool_span(ts, ev.turn_id, attempt, ev.call_id, EXECUTE_COMMAND, ev.agent_id)
        a = span.attributes
        match ev:
            case ExecutionRequested():
                a["massgen.exec.command"] = a["input.value"] = clip(ev.shown.removeprefix("$ "))
            case ExecutionStarted():
                span.start = ts
                a["massgen.exec.mode"] = ev.mode
            case ExecutionCompleted():
                a["massgen.exec.exit_code"] = ev.exit_code
                a["massgen.exec.timed_out"] = ev.timed_out
                a["output.value"] = clip(ev.stdout or ev.stderr)
                if ev.sandbox:
                    a["massgen.exec.sandbox"] = ev.sandbox
                error = ("CommandTimeout: the command timed out" if ev.timed_out
                         else f"CommandFailed: exit code {ev.exit_code}" if ev.exit_code != 0 else None)
                self._end(span.key, ts, error)
            case ExecutionFailed():
                self._end(span.key, ts, ev.failure.text())

    def result(self) -> list[SpanPlan]:
        """The spans, root first; a span never ended (a run still going) ends at the last event."""
        for span in self.spans.values():
            if span.end is None:
                span.end = max(self.last_ts, span.start)
        return list(self.spans.values())


def run_spans(run_id: str, records: list[Record]) -> list[SpanPlan]:
    """The span tree of one run (module docstring), root first, each parent before its children.

    Args:
        run_id: the run's id; names the root span and is ``gen_ai.conversation.id`` of every span.
        records: the run's events in stream order (:func:`massgen_replay.read.run_records`).
    """
    builder = _Builder(run_id)
    for r in records:
        builder.apply(r)
    return builder.result()
