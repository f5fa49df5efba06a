"""The orchestrator's thin async shell around the decision core.

On start it reads the whole event log, rebuilds every unfinished run (``logical_order`` + fold),
decides whatever inputs arrived after its last decision, re-queues turns still outstanding, re-arms
deadlines, then follows the log. A service built with ``adopt=False`` (the stack ``massgen submit``
starts for one run) takes on at start only the runs submitted since it was built (its command's), the
runs it is given, and the unfinished runs with an undecided cancel request (to end them); it takes on
another run when its ``run.resume_requested`` arrives (issue 15 item 6).

Decisions are appended per input as one atomic batch guarded by the
run's last orchestrator sequence, so a second orchestrator can never decide for the same run; on a
conflict (or any append failure) the run is rebuilt from the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from massgen_es import ids
from massgen_es.bus import Draft, EventLog, once
from massgen_es.bus.jetstream import WorkQueue
from massgen_es.errors import BusError
from massgen_es.events import (
    TERMINAL_EVENTS,
    PostEvaluationStarted,
    PresentationStarted,
    Record,
    RunCancelRequested,
    RunFailed,
    RunForked,
    RunResumeRequested,
    RunSubmitted,
    Source,
    TimerFired,
    TurnRequested,
)
from massgen_es.failures import failure_of
from massgen_orchestrator.decide import step
from massgen_orchestrator.state import RunState, evolve, logical_order

TimerName = Literal["run_deadline", "presentation_deadline"]
"""The deadlines of a run (``TimerFired.name``)."""

log = logging.getLogger("massgen.orchestrator")


@dataclass
class _Run:
    state: RunState
    last_orch_seq: int = 0
    """Stream sequence of the last event on the run's ``orch`` subject (the concurrency guard)."""
    seen_seq: int = 0
    """Highest stream sequence already folded (events up to here are skipped when followed)."""
    submitted_ts: float = 0.0
    presentation_ts: float | None = None
    """When the current presentation or post-evaluation started (its deadline counts from there)."""
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    """Armed deadlines by key: ``run_deadline``, or ``presentation_deadline:<turn id>``."""


class OrchestratorService:
    """Runs the coordination protocol for every run in the log.

    Args:
        log: the event log (JetStream in production).
        queue: the agent-turn work queue that ``turn.requested`` decisions are pushed to.
        instance: this replica's name, recorded as the ``source.instance`` of its events.
        adopt: take on at start every unfinished run in the log (a long-lived stack: compose, ``massgen
            up``, where a restarted orchestrator carries on); False for a stack started for one command,
            which must not spend tokens on runs it was not asked about (see the module docstring).
        runs: runs to take on at start even when ``adopt`` is False: the one the command is about
            (``massgen resume RUN``, the run ``massgen fork`` just wrote).
    """

    def __init__(
        self, log: EventLog, queue: WorkQueue, instance: str | None = None, *, adopt: bool = True,
        runs: Collection[str] = (),
    ) -> None:
        self.log = log
        self.adopt = adopt
        self.adopt_runs = frozenset(runs)
        self.created = time.time()
        self.queue = queue
        name = instance or Source.instance_id()
        self.source = Source(service="orchestrator", instance=name)
        # Deadlines are inputs to the core, not decisions: they must not look like orchestrator events.
        self.timer_source = Source(service="timer", instance=name)
        self.runs: dict[str, _Run] = {}
        self._own_ids: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self.ready = asyncio.Event()
        """Set once every unfinished run has been rebuilt and the service follows the log."""

    async def run(self) -> None:
        """Rebuild, then follow the log until cancelled."""
        records = await self.log.read()
        by_run: dict[str, list[Record]] = {}
        for r in records:
            by_run.setdefault(r.run_id, []).append(r)
        for run_id, recs in by_run.items():
            if self.adopt or run_id in self.adopt_runs or _cancel_pending(recs) or self._new(recs):
                await self._rebuild(run_id, recs)
        log.info("orchestrator ready: %d events read, %d unfinished runs", len(records), len(self.runs))
        self.ready.set()
        try:
            async for record in self.log.follow(after_seq=records[-1].seq if records else 0):
                await self._handle(record)
        finally:
            for run in self.runs.values():
                for t in run.timers.values():
                    t.cancel()
            for task in list(self._tasks):
                task.cancel()

    # ------------------------------------------------------------ rebuild

    def _new(self, records: list[Record]) -> bool:
        """Whether the run was submitted after this service was built: the command that built it
        submitted it while the service was starting, so its first read already holds it."""
        return any(isinstance(r.event, RunSubmitted) and not r.event.forked_from and r.ts >= self.created
                   for r in records)

    async def _rebuild(self, run_id: str, records: list[Record]) -> None:
        old = self.runs.pop(run_id, None)
        if old is not None:
            for t in old.timers.values():
                t.cancel()
        state = RunState(run_id)
        ordered = logical_order(records)
        # Fold everything up to the last decision; inputs after it are decided again (they were
        # either never decided, or decided with no output, which deciding again reproduces).
        probe = RunState(run_id)
        for r in ordered:
            evolve(probe, r)
        cut = probe.last_decided_seq
        pending = [r for r in ordered if not r.is_decision and r.seq > cut]
        pending_ids = {r.id for r in pending}
        for r in ordered:
            if r.id not in pending_ids:
                evolve(state, r)
        run = _Run(
            state=state,
            last_orch_seq=max((r.seq for r in records if r.is_decision), default=0),
            seen_seq=max((r.seq for r in records), default=0),
        )
        _deadline_bases(run, records)
        if probe.submitted is None or probe.phase == "done":
            return
        if probe.submitted.forked_from and not any(
            isinstance(r.event, RunForked) and r.event.parent_run_id == probe.submitted.forked_from for r in records
        ):
            # A fork still being copied (or whose copy was cut short): nothing to decide yet. A copied
            # run.forked (of a fork of a fork) names another parent.
            return
        self.runs[run_id] = run
        for r in pending:
            await self._decide(run, r)
        if run.state.phase == "done":
            self.runs.pop(run_id, None)
            return
        await self._requeue_outstanding(run, records)
        self._arm_timers(run)

    async def _requeue_outstanding(self, run: _Run, records: list[Record]) -> None:
        """Push again every turn still waiting for a worker; ``Nats-Msg-Id`` drops the ones already queued."""
        st = run.state
        turns = [*(a.turn for a in st.agents.values()), st.presentation_turn, st.evaluation_turn,
                 *st.paraphrase_turns.values()]
        open_turns = {(t.id, t.attempt) for t in turns if t and t.response is None and not t.failed}
        for r in records:
            if isinstance(r.event, TurnRequested) and (r.event.turn_id, r.event.attempt) in open_turns:
                await self.queue.push(r)

    # ------------------------------------------------------------ live

    async def _handle(self, record: Record) -> None:
        if record.is_decision:
            if record.id in self._own_ids:
                self._own_ids.discard(record.id)
            elif record.run_id in self.runs and record.seq > self.runs[record.run_id].seen_seq:
                log.warning("run %s: decision %s by another orchestrator; rebuilding", record.run_id, record.id)
                await self._resync(record.run_id)
            return
        if isinstance(record.event, RunForked):
            await self._resync(record.run_id)  # a fork's copy is complete: carry on as after a crash
            return
        run = self.runs.get(record.run_id)
        if run is None:
            if isinstance(record.event, RunResumeRequested):
                await self._resync(record.run_id)  # an interrupted run taken on by request
                return
            if isinstance(record.event, RunSubmitted) and record.event.forked_from:
                return  # the first event of a fork's copy: wait for its run.forked
            if not isinstance(record.event, RunSubmitted):
                return  # an event of a finished (or unknown) run: nothing left to decide
            run = self.runs[record.run_id] = _Run(state=RunState(record.run_id), submitted_ts=record.ts)
        if record.seq <= run.seen_seq:
            return
        await self._decide(run, record)
        if self.runs.get(record.run_id) is not run:
            return  # deciding ended in a rebuild (a conflict): the rebuilt run armed its own timers, if any
        if run.state.phase == "done":
            for t in run.timers.values():
                t.cancel()
            self.runs.pop(record.run_id, None)
        else:
            self._arm_timers(run)

    async def _decide(self, run: _Run, record: Record) -> None:
        run.seen_seq = max(run.seen_seq, record.seq)
        try:
            drafts = step(run.state, record)
        except Exception as exc:  # a bug in the core: end this run as data, keep serving the others
            log.exception("run %s: deciding %s (seq %d) failed", record.run_id, record.type, record.seq)
            run.state.phase = "done"
            reason = f"internal orchestrator error while deciding {record.type} (seq {record.seq})"
            drafts = [Draft(ids.decision_id(record.run_id, record.seq, 0), RunFailed(
                reason=reason, failure=failure_of(exc)), record.id)]
        if not drafts:
            return
        try:
            seqs = await self.log.append(
                record.run_id, "orchestrator", drafts, origin=self.source, expect_last_seq=run.last_orch_seq
            )
        except BusError as exc:
            log.warning("run %s: append failed (%s); rebuilding from the log", record.run_id, exc)
            await self._resync(record.run_id)
            return
        run.last_orch_seq = seqs[-1]
        self._own_ids.update(d.id for d in drafts)
        now = time.time()
        for d in drafts:
            if isinstance(d.event, PresentationStarted | PostEvaluationStarted):
                run.presentation_ts = now
        await self._push_turns(record.run_id, drafts, now)

    async def _push_turns(self, run_id: str, drafts: list[Draft], ts: float) -> None:
        for d in drafts:
            if isinstance(d.event, TurnRequested):
                await self.queue.push(
                    Record(
                        seq=0,
                        id=d.id,
                        run_id=run_id,
                        ts=ts,
                        source=self.source,
                        causation_id=d.causation_id,
                        event=d.event,
                    )
                )

    async def _resync(self, run_id: str) -> None:
        await self._rebuild(run_id, await self.log.read(run_id))

    # ------------------------------------------------------------ deadlines

    def _arm_timers(self, run: _Run) -> None:
        """Arm the deadlines of the run's phase, once each: the run deadline (from the submission, for
        every attempt: ``massgen_orchestrator.post_evaluation``) while coordinating or evaluating, and
        the deadline of the current presentation or post-evaluation turn, named after it."""
        st = run.state
        assert st.submitted is not None
        due: dict[tuple[TimerName, str | None], float] = {}
        if st.phase in ("coordinating", "evaluating"):
            due["run_deadline", None] = run.submitted_ts + st.submitted.settings.orchestrator_timeout_s
        turn = {"presenting": st.presentation_turn, "evaluating": st.evaluation_turn}.get(st.phase)
        if turn is not None:
            base = run.presentation_ts or time.time()
            due["presentation_deadline", turn.id] = base + st.submitted.settings.presentation_timeout_s
        keys = {name if turn_id is None else f"{name}:{turn_id}" for name, turn_id in due}
        for key in [k for k in run.timers if k.startswith("presentation_deadline") and k not in keys]:
            run.timers.pop(key).cancel()  # an earlier turn's deadline: its turn is over
        loop = asyncio.get_running_loop()
        for (name, turn_id), at in due.items():
            key = name if turn_id is None else f"{name}:{turn_id}"
            if key not in run.timers:
                delay = max(0.0, at - time.time())
                run.timers[key] = loop.call_later(delay, self._fire, st.run_id, name, turn_id)

    def _fire(self, run_id: str, name: TimerName, turn_id: str | None = None) -> None:
        # Fenced like every other late writer: a deadline that fires as the run ends records nothing.
        # A turn's deadline has an id of its own: the same id would be dropped as a duplicate.
        msg_id = f"{run_id}:timer:{name}" + (f":{turn_id}" if turn_id else "")
        task = asyncio.ensure_future(
            once.append_unless_ended(
                self.log, run_id, "timer", [Draft(msg_id, TimerFired(name=name, turn_id=turn_id))],
                origin=self.timer_source,
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _cancel_pending(records: list[Record]) -> bool:
    """Whether the run has a ``run.cancel_requested`` and has not ended (an orchestrator that adopts no
    run still decides it: a cancelled run must end, not wait for the next stack that adopts)."""
    return any(isinstance(r.event, RunCancelRequested) for r in records) and not any(
        isinstance(r.event, TERMINAL_EVENTS) for r in records)


def _deadline_bases(run: _Run, records: list[Record]) -> None:
    """When the run's deadlines count from: its submission and its presentation's start, not counting
    the pauses before each ``run.forked`` and ``run.resume_requested``. A pause is the time between
    such an event and the last event before it: a fork's copied events keep the parent's timestamps
    (a fork has the time its parent had left at the fork point), and an interrupted run had its time
    left when its stack went away. Events before a pause are moved forward by it."""
    latest = 0.0
    before: list[float] = []  # the latest timestamp up to each record
    for r in records:
        latest = max(latest, r.ts)
        before.append(latest)
    shift = 0.0
    for i in range(len(records) - 1, -1, -1):
        r = records[i]
        moved = r.ts + shift
        if isinstance(r.event, RunSubmitted):
            run.submitted_ts = moved
        elif isinstance(r.event, PresentationStarted | PostEvaluationStarted) and run.presentation_ts is None:
            run.presentation_ts = moved  # the latest one (records are walked backwards)
        if i and isinstance(r.event, RunForked | RunResumeRequested):
            shift += max(0.0, r.ts - before[i - 1])
