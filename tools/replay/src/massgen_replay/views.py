"""Pure projections of a run's events: per-agent timeline, votes, usage, stage times.

``RunView.apply`` folds one record at a time, so the same view serves the live display of
``massgen submit`` and the after-the-fact report of ``massgen replay`` (zero LLM calls either way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from massgen_es import ids
from massgen_es.events import (
    AgentDropped,
    AnswerPosted,
    ApprovalDecided,
    ApprovalRequested,
    BudgetExceeded,
    ComputerStep,
    ComputerUseCompleted,
    ConsensusReached,
    ContextCompressed,
    Event,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionRequested,
    McpServerStateChanged,
    MediaGenerated,
    MediaSaved,
    MemoryRetrieved,
    MemoryStored,
    PostEvaluationStarted,
    PostEvaluationSubmitted,
    PresentationCompleted,
    PresentationStarted,
    ProviderRetried,
    QuestionParaphrased,
    Record,
    RunCancelled,
    RunCancelRequested,
    RunCompleted,
    RunFailed,
    RunForked,
    RunRestarted,
    RunResumeRequested,
    RunSubmitted,
    RunTimedOut,
    SandboxChanged,
    TextDelta,
    TimerFired,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolClassified,
    ToolsListed,
    TurnFailed,
    TurnRejected,
    TurnRequested,
    TurnResponded,
    TurnStarted,
    UnknownEvent,
    UpdateDelivered,
    UsageRecorded,
    VoteCast,
    VoteInvalidated,
    WorkspaceFileRead,
    WorkspaceSnapshotted,
)
from massgen_replay.analytics import RunAnalytics

_TURN_EVENTS = (
    TurnRequested, TurnStarted, TextDelta, UsageRecorded, ProviderRetried, TurnResponded, TurnRejected, TurnFailed,
    AnswerPosted, UpdateDelivered, AgentDropped,
)
"""Events of an agent's turns: shown only for an agent of the run."""
_TOOL_EVENTS = (
    ToolsListed, ToolCallRequested, ToolCallCompleted, ToolCallFailed, ExecutionRequested, ExecutionCompleted,
    ExecutionFailed, WorkspaceSnapshotted, ApprovalRequested, ApprovalDecided, ToolClassified,
)
"""Events of an agent's tools and commands: shown only for an agent of the run."""
_DECISION_EVENTS = (
    VoteCast, VoteInvalidated, ConsensusReached, PresentationStarted, PresentationCompleted, PostEvaluationStarted,
    PostEvaluationSubmitted, RunRestarted, QuestionParaphrased,
)


def _started_status(ev: TurnStarted) -> str:
    """An agent's status once a worker took up one of its turns, by the turn's kind (from its id)."""
    if ids.is_presentation(ev.turn_id):
        return "presenting"
    if ids.is_post_evaluation(ev.turn_id):
        return "evaluating"
    if ids.is_paraphrase(ev.turn_id):
        return "paraphrasing the question"
    return f"thinking (attempt {ev.attempt})"


def preview(text: str, n: int = 100) -> str:
    """One-line preview of ``text``, at most ``n`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


@dataclass
class Entry:
    """One line of a timeline."""

    ts: float
    agent_id: str | None
    kind: str
    text: str


@dataclass
class AgentView:
    """What one agent did."""

    id: str
    anon_id: str
    status: str = "waiting"
    text: str = ""
    """Text streamed in the current (or last) attempt."""
    answers: list[str] = field(default_factory=list)
    vote: str | None = None
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    llm_seconds: float = 0.0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    retries: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    tool_seconds: float = 0.0
    last_failure: tuple[str, str] | None = None
    """``(type, message)`` of the agent's last failed turn (as logged: secrets already scrubbed)."""


@dataclass
class RunView:
    """Everything ``massgen replay`` shows about one run."""

    run_id: str
    question: str = ""
    agents: dict[str, AgentView] = field(default_factory=dict)
    timeline: list[Entry] = field(default_factory=list)
    status: str = "running"
    phase: str = "coordinating"
    winner: str | None = None
    final_answer: str | None = None
    votes: list[dict[str, str]] = field(default_factory=list)
    tally: dict[str, int] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)
    """Unix times of ``submitted``, ``first_answer``, ``consensus``, ``presentation``, ``ended``."""
    events: int = 0
    failure: str | None = None
    forked_from: tuple[str, int] | None = None
    """``(parent run, parent seq)`` of a fork (``massgen fork``): its events up to ``run.forked`` are copies."""
    attempt: int = 1
    """The run's coordination attempt (MassGen spec §1.12): each ``run.restarted`` starts the next, and
    the winner, votes and tally shown are the last attempt's."""
    session_id: str | None = None
    """The multi-turn session this run is a turn of (``massgen chat``, ``submit --session``)."""
    analytics: RunAnalytics = field(default_factory=RunAnalytics)
    """Vote flips, persuasion, time to consensus, per-agent answers, cost and latency (analytics.py)."""

    def _log(self, r: Record, agent_id: str | None, kind: str, text: str) -> None:
        self.timeline.append(Entry(r.ts, agent_id, kind, text))

    def apply(self, r: Record) -> None:
        """Fold one record into the view."""
        self.events += 1
        self.analytics.apply(r)
        ev = r.event
        if isinstance(ev, UnknownEvent):
            self._log(r, None, "unknown", f"event type {ev.type!r} (newer or malformed): {preview(str(ev.data))}")
            return
        agent = self.agents.get(getattr(ev, "agent_id", ""))
        if isinstance(ev, _TURN_EVENTS):
            if agent:  # of an agent of this run
                self._apply_turn(r, ev, agent)
        elif isinstance(ev, _TOOL_EVENTS):
            if agent:
                self._apply_tool(r, ev, agent)
        elif isinstance(ev, _DECISION_EVENTS):
            self._apply_decision(r, ev)
        elif isinstance(ev, MediaGenerated):
            self._log(r, ev.agent_id, "media", f"{ev.kind} {ev.file_name} ({ev.object.size} bytes, {ev.mime_type}, "
                      f"{ev.model}; object {ev.object.name[:12]}): {preview(ev.prompt)}")
        elif isinstance(ev, MediaSaved):
            self._log(r, ev.agent_id, "media", f"not saved: {ev.failure.message}" if ev.failure else
                      f"saved in the workspace as {ev.path} ({ev.bytes} bytes)")
        elif isinstance(ev, WorkspaceFileRead):
            self._log(r, ev.agent_id, "media", f"could not read {ev.path}: {ev.failure.message}" if ev.failure else
                      f"read {ev.path} ({ev.object.size if ev.object else 0} bytes) for a tool")
        elif isinstance(ev, MemoryRetrieved | MemoryStored):
            verb = "retrieved" if isinstance(ev, MemoryRetrieved) else "stored"
            what = (f"{verb} failed: {preview(ev.failure.message)}" if ev.failure else
                    f"{verb} {len(ev.facts)} fact(s): " + preview("; ".join(f.text for f in ev.facts)))
            self._log(r, ev.agent_id, "memory", what)
        elif isinstance(ev, ContextCompressed):
            self._log(r, ev.agent_id, "memory", f"context compressed ~{ev.tokens_before} -> ~{ev.tokens_after} "
                      f"tokens of {ev.context_window}: {preview(ev.summary)}")
        elif isinstance(ev, ComputerStep):
            shot = f"; screenshot {ev.screenshot.name[:12]} ({ev.screenshot.size} bytes)" if ev.screenshot else ""
            self._log(r, ev.agent_id, "computer", f"{ev.tool.removeprefix('custom_tool__')} step {ev.step}: "
                      f"{preview(ev.action)} at {ev.url}{shot}" + (f"; error: {ev.error}" if ev.error else ""))
        elif isinstance(ev, ComputerUseCompleted):
            self._log(r, ev.agent_id, "computer", f"{ev.tool.removeprefix('custom_tool__')} "
                      f"{'failed' if ev.is_error else 'done'} after {ev.steps} step(s) in {ev.duration_s:.1f}s: "
                      f"{preview(ev.result)}")
        else:
            self._apply_run(r, ev)

    def _apply_run(self, r: Record, ev: Event) -> None:
        """The run's start and end, its budget and deadlines, MCP servers and sandboxes."""
        match ev:
            case RunSubmitted():
                self.question = ev.question
                self.session_id = ev.session_id
                self.stages["submitted"] = r.ts
                for i, a in enumerate(ev.agents):
                    self.agents[a.id] = AgentView(a.id, ids.anon_id(i))
                turn = ""
                if ev.session_id:
                    turn = f"; session {ev.session_id}, after {len(ev.previous_turns)} answered turn(s)"
                    turn += f", workspace from {ev.workspace_from}" if ev.workspace_from else ""
                self._log(r, None, "submitted",
                          f"{len(ev.agents)} agents: {', '.join(a.id for a in ev.agents)}{turn}")
            case RunForked():
                self.forked_from = (ev.parent_run_id, ev.parent_seq)
                changes = "; ".join(ev.changes) or "no config change"
                self._log(r, None, "forked", f"from {ev.parent_run_id} at seq {ev.parent_seq} ({ev.copied} events "
                          f"copied): {changes}")
            case BudgetExceeded():
                self._log(r, None, "budget", f"cost ${ev.cost_usd:.6f} reached the budget ${ev.max_cost_usd:g}")
            case RunCompleted() | RunTimedOut():
                self.status = "completed" if isinstance(ev, RunCompleted) else "timed_out"
                self.winner, self.final_answer = ev.winner_id, ev.final_answer
                self._end(r)
            case RunFailed():
                self.status, self.failure = "failed", ev.reason
                self._end(r)
            case RunCancelRequested():
                self.status = "cancelling" if self.phase != "done" else self.status
                why = f": {ev.reason}" if ev.reason else ""
                self._log(r, None, "cancel", f"requested by {ev.by or 'someone'}{why}")
            case RunCancelled():
                why = f": {ev.reason}" if ev.reason else ""
                self.status, self.failure = "cancelled", f"cancelled by {ev.by or 'request'}{why}"
                self._end(r)
            case RunResumeRequested():
                self.status = "running" if self.phase != "done" else self.status
                self._log(r, None, "resume", f"requested by {ev.by or 'someone'}")
            case McpServerStateChanged():
                reason = f" ({preview(ev.reason)})" if ev.reason else ""
                self._log(r, None, "mcp_server", f"{ev.server}: {ev.state}" + reason)
            case SandboxChanged():
                reason = f" ({ev.reason})" if ev.reason else ""
                installed = f"; preinstall: {'; '.join(ev.preinstall.splitlines())}" if ev.preinstall else ""
                self._log(r, ev.agent_id, "sandbox", f"{ev.container} {ev.state}" + reason + installed)
            case TimerFired():
                self._log(r, None, "timer", ev.name)
            case _:
                pass

    def _apply_decision(self, r: Record, ev: Event) -> None:
        """Votes, consensus and the presentation."""
        match ev:
            case VoteCast():
                voter = self.agents[ev.voter_id]
                voter.vote = ev.target_anon
                voter.status = f"voted {ev.target_anon}"
                self._log(r, ev.voter_id, "vote", f"→ {ev.target_anon} ({ev.target_id}): {preview(ev.reason)}")
            case VoteInvalidated():
                self.agents[ev.voter_id].vote = None
                self._log(r, ev.voter_id, "invalidated", f"vote for {ev.target_id} invalidated by {ev.by_label}")
            case ConsensusReached():
                self.stages["consensus"] = r.ts
                self.tally = dict(ev.tally)
                self.votes = [
                    {"voter": v.voter_id, "target": v.target_id, "target_anon": v.target_anon, "reason": v.reason}
                    for v in ev.votes
                ]
                tally = ", ".join(f"{k}: {n}" for k, n in ev.tally.items())
                self._log(r, None, "consensus", f"winner {ev.winner_anon} ({ev.winner_id}); {tally}")
            case PresentationStarted():
                self.phase = "presenting"
                self.winner = ev.presenter_id
                self.stages["presentation"] = r.ts
                self._log(r, ev.presenter_id, "presenting", f"final presentation ({ev.reason})")
            case PresentationCompleted():
                note = " (stored answer used)" if ev.used_stored_answer else ""
                self._log(r, ev.presenter_id, "presented", preview(ev.content) + note)
            case PostEvaluationStarted():
                self.phase = "evaluating"
                self._log(r, ev.evaluator_id, "evaluating", f"post-evaluation of attempt {ev.attempt}")
            case PostEvaluationSubmitted():
                self._log(r, ev.evaluator_id, "evaluated", f"auto-submitted: {ev.auto}" if ev.auto else "submitted")
            case RunRestarted():
                self._restart(r, ev)
            case QuestionParaphrased():  # MassGen spec §1.15: what each agent is asked besides the original
                for agent_id, text in ev.by_agent.items():
                    self._log(r, agent_id, "paraphrase", preview(text))
                if not ev.by_agent:
                    self._log(r, None, "paraphrase", "no usable paraphrase; every agent has the original only")
            case _:
                pass

    def _restart(self, r: Record, ev: RunRestarted) -> None:
        """A new attempt: the previous one's votes and winner no longer stand (its answers stay listed)."""
        self.attempt, self.phase, self.winner, self.final_answer = ev.attempt, "coordinating", None, None
        self.tally, self.votes = {}, []
        for a in self.agents.values():
            a.vote = None
        self._log(r, ev.evaluator_id, "restarted",
                  f"attempt {ev.attempt}: {preview(ev.reason)}; instructions: {preview(ev.instructions)}")

    def _apply_turn(self, r: Record, ev: Event, agent: AgentView) -> None:
        """An agent's turns: requests, attempts, streamed text, usage, responses and their outcome."""
        match ev:
            case TurnRequested():
                agent.status = {"coordination": "queued", "presentation": "presenting (queued)",
                                "post_evaluation": "evaluating (queued)",
                                "paraphrase": "paraphrasing the question (queued)"}[ev.kind]
            case TurnStarted():
                agent.status = _started_status(ev)
                agent.text = ""
                again = f", redelivery {ev.delivery}" if ev.delivery > 1 else ""
                self._log(r, ev.agent_id, "started", f"turn {ev.turn_id} attempt {ev.attempt} on {ev.worker}{again}")
            case TextDelta():
                agent.text += ev.text
            case UsageRecorded():
                agent.calls += 1
                agent.input_tokens += ev.usage.input_tokens
                agent.output_tokens += ev.usage.output_tokens
                agent.cached_tokens += ev.usage.cached_tokens
                agent.reasoning_tokens += ev.usage.reasoning_tokens
                agent.llm_seconds += ev.duration_s
                if ev.cost_usd is None:
                    agent.unpriced_calls += 1
                else:
                    agent.cost_usd += ev.cost_usd
            case ProviderRetried():
                agent.retries += 1
                self._log(r, ev.agent_id, "retry", f"retry {ev.retry} in {ev.delay_s:g}s after {ev.failure.type}: "
                          f"{preview(ev.failure.message)}")
            case TurnResponded():
                calls = ", ".join(f"{c.name}({preview(c.arguments, 80)})" for c in ev.tool_calls)
                self._log(r, ev.agent_id, "responded", calls or f"text: {preview(ev.content)}")
            case TurnRejected():
                self._log(r, ev.agent_id, "rejected", f"{ev.code}: {preview(ev.errors[0] if ev.errors else '')}")
            case TurnFailed():
                agent.status = "failed turn"
                agent.last_failure = (ev.failure.type, ev.failure.message)
                self._log(r, ev.agent_id, "failed", f"{ev.failure.type}: {preview(ev.failure.message)}")
            case AnswerPosted():
                agent.answers.append(ev.label)
                agent.status = f"answered {ev.label}"
                self.stages.setdefault("first_answer", r.ts)
                self._log(r, ev.agent_id, "new_answer", f"{ev.label}: {preview(ev.content)}")
            case UpdateDelivered():
                labels = ", ".join(ev.labels)
                self._log(r, ev.agent_id, "update", f"new answers {labels} delivered in attempt {ev.attempt}")
            case AgentDropped():
                agent.status = "dropped"
                self._log(r, ev.agent_id, "dropped", ev.reason)
            case _:
                pass

    def _apply_tool(self, r: Record, ev: Event, agent: AgentView) -> None:
        """An agent's MCP tools, tool calls, commands and shared workspace."""
        match ev:
            case ToolsListed():
                what = f"unavailable: {preview(ev.failure.message)}" if ev.failure else (
                    f"{len(ev.tools)} tools (v{ev.version}): {preview(', '.join(t.name for t in ev.tools), 120)}")
                self._log(r, ev.agent_id, "tools", f"{ev.server}: {what}")
            case ToolClassified():
                self._log(r, ev.agent_id, "classified", f"{ev.server}.{ev.tool}: {ev.safety} by {ev.model} "
                          f"({preview(ev.rationale, 120)})")
            case ApprovalRequested():
                agent.status = f"waiting for approval of {ev.server}.{ev.tool}"
                why = f" ({ev.rationale})" if ev.rationale else ""
                self._log(r, ev.agent_id, "approval", f"asks a person: {ev.server}.{ev.tool}"
                          f"({preview(ev.arguments, 80)}), call {ev.call_id}, {ev.timeout_s:g} s{why}")
            case ApprovalDecided():
                agent.status = f"calling {ev.server}.{ev.tool}" if ev.approved else "denied a tool"
                why = f": {ev.reason}" if ev.reason else ""
                self._log(r, ev.agent_id, "approval", f"{ev.server}.{ev.tool} "
                          f"{'approved' if ev.approved else 'denied'} by {ev.by}{why}")
            case ToolCallRequested():
                agent.status = f"calling {ev.server}.{ev.tool}"
                self._log(r, ev.agent_id, "tool_call", f"{ev.server}.{ev.tool}({preview(ev.arguments, 80)})")
            case ToolCallCompleted():
                agent.tool_calls += 1
                agent.tool_errors += ev.is_error
                agent.tool_seconds += ev.duration_s
                origin = f", replayed from {ev.replayed_from}" if ev.replayed_from else ""
                flag = " [isError]" if ev.is_error else ""
                self._log(r, ev.agent_id, "tool_result",
                          f"{ev.server}.{ev.tool}{flag} in {ev.duration_s:.3f}s{origin}: {preview(ev.content)}")
            case ToolCallFailed():
                agent.tool_calls += 1
                agent.tool_errors += 1
                self._log(r, ev.agent_id, "tool_failed",
                          f"{ev.server}.{ev.tool}: {ev.failure.type}: {preview(ev.failure.message)}")
            case ExecutionRequested():
                agent.status = f"running {ev.custom_tool}" if ev.custom_tool else "running a command"
                self._log(r, ev.agent_id, "exec", preview(ev.shown, 102))
            case ExecutionCompleted():
                agent.tool_calls += 1
                agent.tool_errors += ev.exit_code != 0 or ev.timed_out
                agent.tool_seconds += ev.duration_s
                where = f" in {ev.sandbox}" if ev.sandbox else " (local)"
                flags = " [timed out]" if ev.timed_out else ""
                files = f", {len(ev.objects)} objects stored" if ev.objects else ""
                self._log(r, ev.agent_id, "exec_result", f"exit {ev.exit_code}{flags} in {ev.duration_s:.3f}s{where}"
                          f"{files}: {preview(ev.stdout or ev.stderr)}")
            case ExecutionFailed():
                agent.tool_calls += 1
                agent.tool_errors += 1
                self._log(r, ev.agent_id, "exec_failed", f"{ev.failure.type}: {preview(ev.failure.message)}")
            case WorkspaceSnapshotted():
                shared = f"workspace shared as {ev.anon_id}: {ev.files} files, {ev.bytes} bytes"
                self._log(r, ev.agent_id, "snapshot", shared)
            case _:
                pass

    def _end(self, r: Record) -> None:
        self.phase = "done"
        self.stages["ended"] = r.ts
        self._log(r, None, self.status, preview(self.final_answer or self.failure or ""))

    @property
    def duration_s(self) -> float | None:
        """Seconds from submission to the end (or to the last event seen)."""
        if "submitted" not in self.stages:
            return None
        end = self.stages.get("ended") or (self.timeline[-1].ts if self.timeline else self.stages["submitted"])
        return end - self.stages["submitted"]

    def stage_durations(self) -> dict[str, float]:
        """Seconds spent per stage: ``coordination`` (to consensus or timeout), ``presentation``, ``total``."""
        s = self.stages
        out = {}
        if "submitted" in s:
            coord_end = s.get("presentation") or s.get("ended")
            if coord_end:
                out["coordination"] = coord_end - s["submitted"]
            if "presentation" in s and "ended" in s:
                out["presentation"] = s["ended"] - s["presentation"]
            if "ended" in s:
                out["total"] = s["ended"] - s["submitted"]
        return out

    def usage(self) -> dict[str, Any]:
        """Token usage, total and per agent."""
        return {
            "input_tokens": sum(a.input_tokens for a in self.agents.values()),
            "output_tokens": sum(a.output_tokens for a in self.agents.values()),
            "cached_tokens": sum(a.cached_tokens for a in self.agents.values()),
            "reasoning_tokens": sum(a.reasoning_tokens for a in self.agents.values()),
            "llm_calls": sum(a.calls for a in self.agents.values()),
            "tool_calls": sum(a.tool_calls for a in self.agents.values()),
            "cost_usd": round(sum(a.cost_usd for a in self.agents.values()), 8),
            "unpriced_calls": sum(a.unpriced_calls for a in self.agents.values()),
            "per_agent": {
                a.id: {
                    "input_tokens": a.input_tokens,
                    "output_tokens": a.output_tokens,
                    "cached_tokens": a.cached_tokens,
                    "reasoning_tokens": a.reasoning_tokens,
                    "llm_calls": a.calls,
                    "cost_usd": round(a.cost_usd, 8),
                    "retries": a.retries,
                    "tool_calls": a.tool_calls,
                    "tool_errors": a.tool_errors,
                    "tool_seconds": round(a.tool_seconds, 3),
                }
                for a in self.agents.values()
            },
        }

    def summary(self) -> dict[str, Any]:
        """The ``massgen submit --json`` object."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "winner": self.winner,
            "final_answer": self.final_answer,
            "votes": self.votes,
            "usage": self.usage(),
            "duration_s": round(self.duration_s or 0.0, 3),
            "error": self.failure,
            "agent_failures": self.agent_failures(),
            "forked_from": {"run_id": self.forked_from[0], "seq": self.forked_from[1]} if self.forked_from else None,
            "session_id": self.session_id,
            "analytics": self.analytics.summary(),
        }

    def agent_failures(self) -> dict[str, dict[str, str]]:
        """Each agent's last failed turn, ``{agent_id: {"type": ..., "message": ...}}`` (agents whose
        turns never failed left out): what a failed run's error names (issue 13 item 4)."""
        return {a.id: {"type": a.last_failure[0], "message": a.last_failure[1]}
                for a in self.agents.values() if a.last_failure is not None}
