"""A run's records as swimlane items: one lane per agent plus one for the run, stages as time bands.

Pure (records in, items out) and lossless: every record becomes an item whose ``body`` holds its full
text (answers, vote reasons, tool arguments and results, command output, failures), except
``text.delta`` records, which join one "streamed text" item per turn attempt and delivery. Event types
without a rule here still show, as their JSON. The HTML timeline (:mod:`massgen_replay.html`) draws these.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from massgen_es.events import (
    AgentDropped,
    AnswerPosted,
    BudgetExceeded,
    ComputerStep,
    ComputerUseCompleted,
    ConsensusReached,
    ContextCompressed,
    Event,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionStarted,
    Failure,
    McpServerStateChanged,
    MediaGenerated,
    MediaSaved,
    MemoryFact,
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
    RunCompleted,
    RunFailed,
    RunRestarted,
    RunSubmitted,
    RunTimedOut,
    SandboxChanged,
    TextDelta,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolsListed,
    TurnFailed,
    TurnRejected,
    TurnRequested,
    TurnResponded,
    TurnStarted,
    UnknownEvent,
    UsageRecorded,
    VoteCast,
    VoteInvalidated,
    WorkspaceFileRead,
)
from massgen_replay.views import preview

RUN_LANE = "run"
"""The lane of events that belong to no agent (submission, consensus, timers, MCP servers, the end)."""

STAGES = ("initialisation", "coordination", "presentation")
"""Stage names, in order: submission to the first turn started, from there to the presentation's start
(or the end), from there to the end."""


@dataclass
class Item:
    """One event in a lane.

    Attributes:
        seq: Stream sequence of the (first) record it shows.
        ts: Unix time of that record, seconds.
        lane: Agent id, or :data:`RUN_LANE`.
        kind: Category, one of ``turn text usage answer vote tool exec failure retry decision run info``;
            the page colours and filters by it.
        type: The event type (``vote.cast``), or ``text.delta`` for joined streamed text.
        summary: One line, at most about 140 characters.
        body: The full text; never shortened (the page pages through it).
        turn: Turn id, when the event belongs to a turn.
        flags: ``failure``, ``retry``, ``redelivery``: badges shown on the item.
    """

    seq: int
    ts: float
    lane: str
    kind: str
    type: str
    summary: str
    body: str
    turn: str | None = None
    flags: list[str] = field(default_factory=list)


@dataclass
class Stage:
    """One stage band: ``name`` from :data:`STAGES`, Unix ``start`` and ``end`` seconds."""

    name: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.end - self.start


def _failure(f: Failure) -> str:
    out = f.text() + (" (retryable)" if f.retryable else "")
    if f.details:
        out += "\n" + json.dumps(f.details, indent=2, ensure_ascii=False, default=str)
    return out + (f"\ncaused by {_failure(f.cause)}" if f.cause else "")


def _json(obj: Any) -> str:
    return json.dumps(msgspec.to_builtins(obj), indent=2, ensure_ascii=False)


# Each rule: event -> (kind, summary, body, flags). Lane and turn come from the event's fields.
Rule = Callable[[Any], tuple[str, str, str, list[str]]]


def _submitted(ev: RunSubmitted) -> tuple[str, str, str, list[str]]:
    agents = "\n".join(f"- {a.id}: {_json(a.backend)}" for a in ev.agents)
    body = f"question:\n{ev.question}\n\nagents:\n{agents}\n\nsettings:\n{_json(ev.settings)}"
    return "run", f"{len(ev.agents)} agents: {preview(ev.question)}", body, []


def _requested(ev: TurnRequested) -> tuple[str, str, str, list[str]]:
    msgs = "\n\n".join(f"[{m.role}]\n{m.content}" + "".join(f"\n→ {c.name}({c.arguments})" for c in m.tool_calls)
                       for m in ev.messages)
    tools = ", ".join(t.name for t in ev.tools) or "none"
    body = f"{ev.kind} turn {ev.turn_id}, attempt {ev.attempt}\ntools: {tools}\n\n{msgs}"
    return "turn", f"{ev.kind} turn requested, attempt {ev.attempt}, {len(ev.messages)} messages", body, []


def _started(ev: TurnStarted) -> tuple[str, str, str, list[str]]:
    again = f", delivery {ev.delivery}" if ev.delivery > 1 else ""
    text = f"turn {ev.turn_id} attempt {ev.attempt} started on {ev.worker}{again}"
    return "turn", text, text, ["redelivery"] if ev.delivery > 1 else []


def _usage(ev: UsageRecorded) -> tuple[str, str, str, list[str]]:
    cost = "unpriced" if ev.cost_usd is None else f"${ev.cost_usd:.6f}"
    u = ev.usage
    text = f"{ev.model}: {u.input_tokens} in, {u.output_tokens} out tokens, {ev.duration_s:.2f}s, {cost}"
    detail = f"{text}\ncached {u.cached_tokens}, reasoning {u.reasoning_tokens}"
    if ev.time_to_first_token_s is not None:
        detail += f", first token after {ev.time_to_first_token_s:.2f}s"
    return "usage", text, detail, []


def _retried(ev: ProviderRetried) -> tuple[str, str, str, list[str]]:
    head = f"provider retry {ev.retry} in {ev.delay_s:g}s after {ev.failure.type}"
    return "retry", f"{head}: {preview(ev.failure.message)}", f"{head}\n{_failure(ev.failure)}", ["retry"]


def _responded(ev: TurnResponded) -> tuple[str, str, str, list[str]]:
    calls = "\n".join(f"→ {c.name}({c.arguments})" for c in ev.tool_calls)
    names = ", ".join(c.name for c in ev.tool_calls)
    summary = f"responded: {names}" if names else f"responded: {preview(ev.content)}"
    body = f"finish reason: {ev.finish_reason}\n\n{ev.content}" + (f"\n\ntool calls:\n{calls}" if calls else "")
    return "turn", summary, body, []


def _rejected(ev: TurnRejected) -> tuple[str, str, str, list[str]]:
    first = ev.errors[0] if ev.errors else ""
    return "failure", f"rejected {ev.code}: {preview(first)}", f"{ev.code}\n" + "\n".join(ev.errors), ["failure"]


def _turn_failed(ev: TurnFailed) -> tuple[str, str, str, list[str]]:
    return "failure", f"turn failed: {ev.failure.type}: {preview(ev.failure.message)}", _failure(ev.failure), [
        "failure"]


def _answer(ev: AnswerPosted) -> tuple[str, str, str, list[str]]:
    return "answer", f"answer {ev.label}: {preview(ev.content)}", ev.content, []


def _vote(ev: VoteCast) -> tuple[str, str, str, list[str]]:
    head = f"vote → {ev.target_anon} ({ev.target_id})"
    return "vote", f"{head}: {preview(ev.reason)}", f"{head}\nreason:\n{ev.reason}", []


def _invalidated(ev: VoteInvalidated) -> tuple[str, str, str, list[str]]:
    text = f"vote for {ev.target_id} invalidated by new answer {ev.by_label}"
    return "vote", text, text, []


def _dropped(ev: AgentDropped) -> tuple[str, str, str, list[str]]:
    text = f"dropped after {ev.failed_turns} failed turns: {ev.reason}"
    return "failure", preview(text), text, ["failure"]


def _consensus(ev: ConsensusReached) -> tuple[str, str, str, list[str]]:
    tally = ", ".join(f"{k}: {n}" for k, n in ev.tally.items())
    votes = "\n".join(f"- {v.voter_id} → {v.target_anon} ({v.target_id}): {v.reason}" for v in ev.votes)
    tie = " (tie broken by config order)" if ev.tie_broken else ""
    head = f"consensus: winner {ev.winner_anon} ({ev.winner_id}){tie}; {tally}"
    return "decision", head, f"{head}\n\nvotes:\n{votes}", []


def _presenting(ev: PresentationStarted) -> tuple[str, str, str, list[str]]:
    text = f"final presentation started ({ev.reason})"
    return "decision", text, text, []


def _presented(ev: PresentationCompleted) -> tuple[str, str, str, list[str]]:
    note = " (stored answer used)" if ev.used_stored_answer else ""
    return "answer", f"final answer{note}: {preview(ev.content)}", ev.content, []


def _evaluating(ev: PostEvaluationStarted) -> tuple[str, str, str, list[str]]:
    text = f"post-evaluation of attempt {ev.attempt} started"
    return "decision", text, text, []


def _evaluated(ev: PostEvaluationSubmitted) -> tuple[str, str, str, list[str]]:
    text = f"final answer auto-submitted: {ev.auto}" if ev.auto else "final answer submitted by its evaluator"
    return "decision", text, text, []


def _restarted(ev: RunRestarted) -> tuple[str, str, str, list[str]]:
    head = f"run restarted: attempt {ev.attempt}: {preview(ev.reason)}"
    body = (f"attempt {ev.attempt} asked by {ev.evaluator_id}\nreason:\n{ev.reason}\n\ninstructions:\n"
            f"{ev.instructions}\n\nprevious answer:\n{ev.previous_answer}")
    return "decision", head, body, []


def _paraphrased(ev: QuestionParaphrased) -> tuple[str, str, str, list[str]]:
    shown = [t for t in ev.variants if t]
    body = "\n".join(f"{a}: {t}" for a, t in ev.by_agent.items()) or "no usable paraphrase: the original only"
    return "decision", f"question paraphrased: {len(shown)} of {len(ev.variants)} variants", body, []


def _ended(ev: RunCompleted | RunTimedOut) -> tuple[str, str, str, list[str]]:
    what = "completed" if isinstance(ev, RunCompleted) else "timed out"
    body = ev.final_answer or "(no final answer)"
    return "run", f"run {what}, winner {ev.winner_id or '-'}: {preview(body)}", body, []


def _run_failed(ev: RunFailed) -> tuple[str, str, str, list[str]]:
    body = ev.reason + (f"\n{_failure(ev.failure)}" if ev.failure else "")
    return "failure", f"run failed: {preview(ev.reason)}", body, ["failure"]


def _cancelled(ev: RunCancelled) -> tuple[str, str, str, list[str]]:
    text = f"run cancelled by {ev.by or 'request'}" + (f": {ev.reason}" if ev.reason else "")
    return "failure", preview(text), text, ["failure"]


def _budget(ev: BudgetExceeded) -> tuple[str, str, str, list[str]]:
    text = f"cost ${ev.cost_usd:.6f} reached the budget ${ev.max_cost_usd:g}"
    return "failure", text, text, ["failure"]


def _mcp_state(ev: McpServerStateChanged) -> tuple[str, str, str, list[str]]:
    text = f"MCP server {ev.server}: {ev.state}" + (f" ({ev.reason})" if ev.reason else "")
    bad = ev.state in ("crashed", "open")
    return ("failure" if bad else "tool"), preview(text), text, ["failure"] if bad else []


def _tools_listed(ev: ToolsListed) -> tuple[str, str, str, list[str]]:
    if ev.failure:
        return "failure", f"{ev.server}: tools unavailable: {preview(ev.failure.message)}", _failure(ev.failure), [
            "failure"]
    names = ", ".join(t.name for t in ev.tools)
    body = "\n".join(f"- {t.name}: {t.description}" for t in ev.tools)
    return "tool", preview(f"{ev.server}: {len(ev.tools)} tools (v{ev.version}): {names}"), body, []


def _tool_call(ev: ToolCallRequested) -> tuple[str, str, str, list[str]]:
    return "tool", f"tool call {ev.server}.{ev.tool}({preview(ev.arguments, 80)})", ev.arguments, []


def _tool_done(ev: ToolCallCompleted) -> tuple[str, str, str, list[str]]:
    flag = " [isError]" if ev.is_error else ""
    origin = f", replayed from {ev.replayed_from}" if ev.replayed_from else ""
    head = f"{ev.server}.{ev.tool}{flag} in {ev.duration_s:.3f}s, {ev.attempts} attempt(s){origin}"
    flags = (["failure"] if ev.is_error else []) + (["retry"] if ev.attempts > 1 else [])
    return ("failure" if ev.is_error else "tool"), f"tool result {head}: {preview(ev.content, 60)}", ev.content, flags


def _tool_failed(ev: ToolCallFailed) -> tuple[str, str, str, list[str]]:
    head = f"tool call {ev.server}.{ev.tool} failed: {ev.failure.type}"
    return "failure", f"{head}: {preview(ev.failure.message)}", _failure(ev.failure), ["failure"]


def _exec(ev: ExecutionRequested) -> tuple[str, str, str, list[str]]:
    return "exec", preview(ev.shown, 122), ev.shown.removeprefix("$ "), []


def _exec_started(ev: ExecutionStarted) -> tuple[str, str, str, list[str]]:
    text = f"command started ({ev.mode}" + (f" in {ev.sandbox})" if ev.sandbox else ")")
    return "exec", text, text, []


def _exec_done(ev: ExecutionCompleted) -> tuple[str, str, str, list[str]]:
    bad = ev.exit_code != 0 or ev.timed_out
    head = f"exit {ev.exit_code}" + (" [timed out]" if ev.timed_out else "") + f" in {ev.duration_s:.3f}s ({ev.mode})"
    cut = " (the executor kept only the first part; the rest is in its objects)"
    body = (f"{head}\n\nstdout ({len(ev.stdout)} chars){cut if ev.stdout_truncated else ''}:\n{ev.stdout}"
            f"\n\nstderr ({len(ev.stderr)} chars){cut if ev.stderr_truncated else ''}:\n{ev.stderr}")
    if ev.objects:
        body += "\n\nobjects:\n" + "\n".join(f"- {o.label or o.name} ({o.size} bytes, {o.digest})" for o in ev.objects)
    return ("failure" if bad else "exec"), f"{head}: {preview(ev.stdout or ev.stderr, 80)}", body, (
        ["failure"] if bad else [])


def _exec_failed(ev: ExecutionFailed) -> tuple[str, str, str, list[str]]:
    return "failure", f"command failed: {ev.failure.type}: {preview(ev.failure.message)}", _failure(ev.failure), [
        "failure"]


def _sandbox(ev: SandboxChanged) -> tuple[str, str, str, list[str]]:
    text = f"sandbox {ev.container} {ev.state}" + (f" ({ev.reason})" if ev.reason else "")
    detail = text + (f"\nimage {ev.image}" if ev.image else "") + (
        f"\npreinstalled:\n{ev.preinstall}" if ev.preinstall else "")
    return "exec", text, detail, []


def _media(ev: MediaGenerated) -> tuple[str, str, str, list[str]]:
    head = f"generated {ev.kind} {ev.file_name} ({ev.object.size} bytes, {ev.mime_type})"
    return "tool", head, (f"{head}\nmodel {ev.model}\nobject {ev.object.name} ({ev.object.digest})\n\n"
                          f"prompt:\n{ev.prompt}"), []


def _media_saved(ev: MediaSaved) -> tuple[str, str, str, list[str]]:
    if ev.failure is not None:
        return "failure", f"not saved: {preview(ev.failure.message)}", _failure(ev.failure), ["failure"]
    text = f"saved {ev.path} ({ev.bytes} bytes)"
    return "tool", text, text, []


def _file_read(ev: WorkspaceFileRead) -> tuple[str, str, str, list[str]]:
    if ev.failure is not None:
        return "failure", f"file not read: {preview(ev.failure.message)}", _failure(ev.failure), ["failure"]
    assert ev.object is not None
    text = f"read {ev.path} ({ev.object.size} bytes)"
    return "tool", text, f"{text}\nobject {ev.object.name} ({ev.object.digest})", []


def _facts(facts: tuple[MemoryFact, ...]) -> str:
    return "\n".join(f"- {f.text}" + (f" [{f.event}]" if f.event else "") + (
        f" (score {f.score:.3f})" if f.score is not None else "") for f in facts)


def _recalled(ev: MemoryRetrieved) -> tuple[str, str, str, list[str]]:
    if ev.failure is not None:
        return "failure", f"memory search failed: {preview(ev.failure.message)}", _failure(ev.failure), ["failure"]
    head = f"memory: {len(ev.facts)} fact(s) retrieved ({ev.reason}, session {ev.session})" + (
        f", {ev.excluded_recent} of this run left out" if ev.excluded_recent else "")
    return "tool", head, f"{head}\nquery: {ev.query}\n\n{_facts(ev.facts)}", []


def _remembered(ev: MemoryStored) -> tuple[str, str, str, list[str]]:
    if ev.failure is not None:
        return "failure", f"memory store failed: {preview(ev.failure.message)}", _failure(ev.failure), ["failure"]
    head = f"memory: stored {len(ev.facts)} fact(s) from {ev.messages} message(s) (session {ev.session})"
    return "tool", head, f"{head}\n\n{_facts(ev.facts)}", []


def _compressed(ev: ContextCompressed) -> tuple[str, str, str, list[str]]:
    head = (f"context compressed: ~{ev.tokens_before} -> ~{ev.tokens_after} tokens of {ev.context_window} "
            f"({ev.messages_removed} message(s) summarised by {ev.summary_model})")
    return "tool", head, f"{head}\ntrigger {ev.trigger_threshold:g}, target {ev.target_ratio:g}\n\n{ev.summary}", []


def _computer_step(ev: ComputerStep) -> tuple[str, str, str, list[str]]:
    head = f"{ev.tool.removeprefix('custom_tool__')} step {ev.step}: {preview(ev.action, 80)}"
    body = f"{head}\nurl {ev.url}\naction {ev.action}"
    if ev.screenshot is not None:
        body += f"\nscreenshot {ev.screenshot.name} ({ev.screenshot.size} bytes, {ev.screenshot.digest})"
    if ev.error:
        return "failure", f"{head}: {preview(ev.error)}", f"{body}\n\nerror: {ev.error}", ["failure"]
    return "tool", head, body, []


def _computer_done(ev: ComputerUseCompleted) -> tuple[str, str, str, list[str]]:
    head = (f"{ev.tool.removeprefix('custom_tool__')} {'failed' if ev.is_error else 'done'} after {ev.steps} step(s) "
            f"in {ev.duration_s:.1f}s")
    body = f"{head}\n\narguments:\n{json.dumps(ev.arguments, indent=2, ensure_ascii=False)}\n\nresult:\n{ev.result}"
    return ("failure" if ev.is_error else "tool"), f"{head}: {preview(ev.result, 80)}", body, (
        ["failure"] if ev.is_error else [])


RULES: dict[type, Rule] = {
    RunSubmitted: _submitted, TurnRequested: _requested, TurnStarted: _started, UsageRecorded: _usage,
    ProviderRetried: _retried, TurnResponded: _responded, TurnRejected: _rejected, TurnFailed: _turn_failed,
    AnswerPosted: _answer, VoteCast: _vote, VoteInvalidated: _invalidated, AgentDropped: _dropped,
    ConsensusReached: _consensus, PresentationStarted: _presenting, PresentationCompleted: _presented,
    PostEvaluationStarted: _evaluating, PostEvaluationSubmitted: _evaluated, RunRestarted: _restarted,
    QuestionParaphrased: _paraphrased,
    RunCompleted: _ended, RunTimedOut: _ended, RunFailed: _run_failed,
    RunCancelled: _cancelled, BudgetExceeded: _budget,
    McpServerStateChanged: _mcp_state, ToolsListed: _tools_listed, ToolCallRequested: _tool_call,
    ToolCallCompleted: _tool_done, ToolCallFailed: _tool_failed, ExecutionRequested: _exec,
    ExecutionStarted: _exec_started, ExecutionCompleted: _exec_done, ExecutionFailed: _exec_failed,
    SandboxChanged: _sandbox, MediaGenerated: _media, MediaSaved: _media_saved, WorkspaceFileRead: _file_read,
    MemoryRetrieved: _recalled, MemoryStored: _remembered, ContextCompressed: _compressed,
    ComputerStep: _computer_step, ComputerUseCompleted: _computer_done,
}
"""How each event type shows; any other type shows as ``info`` with its JSON as the body."""


def _lane_of(ev: Event) -> str:
    for name in ("agent_id", "voter_id", "presenter_id", "evaluator_id"):
        value = getattr(ev, name, None)
        if isinstance(value, str) and value:
            return value
    return RUN_LANE


def items(records: Iterable[Record]) -> list[Item]:
    """Every record as an :class:`Item`, in stream order; ``text.delta`` records of one turn attempt
    and delivery are joined into one ``text`` item at the first delta's place."""
    out: list[Item] = []
    streams: dict[tuple[str, str, int, int], Item] = {}
    for r in records:
        ev = r.event
        if isinstance(ev, UnknownEvent):
            body = json.dumps(ev.data, indent=2, ensure_ascii=False, default=str)
            out.append(Item(r.seq, r.ts, RUN_LANE, "info", ev.type, f"unknown event type {ev.type!r}", body))
            continue
        lane, turn = _lane_of(ev), getattr(ev, "turn_id", None)
        if isinstance(ev, TextDelta):
            key = (ev.agent_id, ev.turn_id, ev.attempt, ev.delivery)
            if key not in streams:
                flags = ["redelivery"] if ev.delivery > 1 else []
                streams[key] = Item(r.seq, r.ts, lane, "text", r.type, "", "", turn, flags)
                out.append(streams[key])
            streams[key].body += ev.text
            continue
        rule = RULES.get(type(ev))
        if rule is None:
            out.append(Item(r.seq, r.ts, lane, "info", r.type, r.type.replace(".", " "), _json(ev), turn))
            continue
        kind, summary, body, flags = rule(ev)
        out.append(Item(r.seq, r.ts, lane, kind, r.type, summary, body, turn, flags))
    for item in streams.values():
        item.summary = f"streamed {len(item.body)} chars: {preview(item.body)}"
    return out


def lanes(records: Iterable[Record]) -> list[str]:
    """Lane ids: the run's agents in config order, any other agent id seen, then :data:`RUN_LANE`."""
    order: list[str] = []
    for r in records:
        ev = r.event
        found = [a.id for a in ev.agents] if isinstance(ev, RunSubmitted) else [_lane_of(ev)] if isinstance(
            ev, Event) else []
        order += [a for a in found if a not in order and a != RUN_LANE]
    return [*order, RUN_LANE]


def stages(records: list[Record]) -> list[Stage]:
    """The stages that began, each ending where the next begins or at the last record (for a run that
    has not ended). Empty when there are no records."""
    if not records:
        return []
    start = next((r.ts for r in records if isinstance(r.event, RunSubmitted)), records[0].ts)
    marks = [("initialisation", start)]
    first_turn = next((r.ts for r in records if isinstance(r.event, TurnStarted)), None)
    if first_turn is not None:
        marks.append(("coordination", first_turn))
    shown = next((r.ts for r in records if isinstance(r.event, PresentationStarted)), None)
    if shown is not None:
        marks.append(("presentation", shown))
    end = max(max(r.ts for r in records), marks[-1][1])  # clocks of services may disagree a little
    return [Stage(name, at, marks[i + 1][1] if i + 1 < len(marks) else end) for i, (name, at) in enumerate(marks)]
