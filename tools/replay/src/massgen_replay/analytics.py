"""Consensus analytics: how a run reached its answer, and across runs how each agent fares.

Pure projections of records (no I/O, no clock): :class:`RunAnalytics` folds one run's records (one at a
time, like :class:`massgen_replay.views.RunView`, which carries one), :func:`across_runs` aggregates
several runs' analytics for ``massgen runs --stats``.

Definitions (every time in seconds, every cost in US dollars):

- a **vote flip** is an agent's accepted vote whose target differs from its previous accepted vote in
  the same run (a vote invalidated by a new answer and cast again for the same agent is not a flip);
- **persuasion** (``voter -> author``) is an accepted vote for another agent's answer by a voter that
  had an answer of its own by then, or that had voted for someone else before: the voter was moved to
  the author's answer. An agent that never answered voting for the only answer is not counted;
- **time to consensus** is from ``run.submitted`` to ``consensus.reached`` (None without consensus);
- **latency** is an agent's LLM seconds (``usage.recorded.duration_s``) per call, and its mean time to
  first token where the provider streams one.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from massgen_es.events import (
    AnswerPosted,
    ConsensusReached,
    Record,
    RunCompleted,
    RunSubmitted,
    RunTimedOut,
    UsageRecorded,
    VoteCast,
)


@dataclass
class AgentStats:
    """One agent's figures in one run."""

    answers: int = 0
    votes: int = 0
    flips: int = 0
    calls: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    llm_seconds: float = 0.0
    ttft: list[float] = field(default_factory=list)
    """Times to first token of its calls, seconds (calls that reported one)."""

    def summary(self) -> dict[str, Any]:
        """JSON-ready: counts, ``cost_usd``, ``llm_seconds``, ``mean_call_s`` and ``mean_ttft_s`` (None
        without calls / without streamed first tokens)."""
        return {
            "answers": self.answers, "votes": self.votes, "flips": self.flips, "llm_calls": self.calls,
            "cost_usd": round(self.cost_usd, 8), "unpriced_calls": self.unpriced_calls,
            "llm_seconds": round(self.llm_seconds, 3),
            "mean_call_s": round(self.llm_seconds / self.calls, 3) if self.calls else None,
            "mean_ttft_s": round(statistics.fmean(self.ttft), 3) if self.ttft else None,
        }


@dataclass
class RunAnalytics:
    """Consensus analytics of one run (module docstring for the definitions)."""

    agents: dict[str, AgentStats] = field(default_factory=dict)
    flips: list[dict[str, Any]] = field(default_factory=list)
    """``{"voter", "from", "to", "ts"}`` per flip, targets as agent ids."""
    persuasions: Counter[tuple[str, str]] = field(default_factory=Counter)
    """``(voter, author)`` -> accepted votes that moved the voter to the author's answer."""
    submitted_ts: float | None = None
    first_answer_ts: float | None = None
    consensus_ts: float | None = None
    winner: str | None = None
    _last_vote: dict[str, str] = field(default_factory=dict)

    def _agent(self, agent_id: str) -> AgentStats:
        return self.agents.setdefault(agent_id, AgentStats())

    def apply(self, r: Record) -> None:
        """Fold one record (records of other types are ignored)."""
        ev = r.event
        match ev:
            case RunSubmitted():
                self.submitted_ts = r.ts
                for a in ev.agents:
                    self._agent(a.id)
            case AnswerPosted():
                self._agent(ev.agent_id).answers += 1
                if self.first_answer_ts is None:
                    self.first_answer_ts = r.ts
            case VoteCast():
                voter = self._agent(ev.voter_id)
                voter.votes += 1
                before = self._last_vote.get(ev.voter_id)
                if before is not None and before != ev.target_id:
                    voter.flips += 1
                    self.flips.append({"voter": ev.voter_id, "from": before, "to": ev.target_id, "ts": r.ts})
                moved = voter.answers > 0 or (before is not None and before != ev.target_id)
                if ev.target_id != ev.voter_id and moved:
                    self.persuasions[(ev.voter_id, ev.target_id)] += 1
                self._last_vote[ev.voter_id] = ev.target_id
            case ConsensusReached():
                self.consensus_ts = r.ts
                self.winner = ev.winner_id
            case RunCompleted() | RunTimedOut():
                self.winner = ev.winner_id or self.winner
            case UsageRecorded():
                a = self._agent(ev.agent_id)
                a.calls += 1
                a.llm_seconds += ev.duration_s
                if ev.cost_usd is None:
                    a.unpriced_calls += 1
                else:
                    a.cost_usd += ev.cost_usd
                if ev.time_to_first_token_s is not None:
                    a.ttft.append(ev.time_to_first_token_s)
            case _:
                pass

    @property
    def time_to_consensus_s(self) -> float | None:
        """Seconds from submission to consensus, or None (no consensus, or no submission seen)."""
        if self.submitted_ts is None or self.consensus_ts is None:
            return None
        return self.consensus_ts - self.submitted_ts

    def summary(self) -> dict[str, Any]:
        """JSON-ready: ``time_to_consensus_s``, ``time_to_first_answer_s``, ``winner``, ``flips`` (list),
        ``persuasion`` (``[{"voter", "author", "votes"}]``) and ``per_agent`` (:meth:`AgentStats.summary`)."""
        first = (self.first_answer_ts - self.submitted_ts
                 if self.first_answer_ts is not None and self.submitted_ts is not None else None)
        ttc = self.time_to_consensus_s
        return {
            "time_to_consensus_s": round(ttc, 3) if ttc is not None else None,
            "time_to_first_answer_s": round(first, 3) if first is not None else None,
            "winner": self.winner,
            "flips": [f | {"ts": round(f["ts"], 3)} for f in self.flips],
            "persuasion": [{"voter": v, "author": a, "votes": n} for (v, a), n in sorted(self.persuasions.items())],
            "per_agent": {aid: a.summary() for aid, a in self.agents.items()},
        }


def across_runs(runs: Iterable[tuple[str, RunAnalytics]]) -> dict[str, Any]:
    """Aggregate ``(status, analytics)`` of several runs (``status`` as :attr:`RunView.status`).

    Returns (JSON-ready): ``runs``, ``completed``, ``with_consensus``, ``time_to_consensus_s``
    (``{"mean", "median", "max"}`` over runs with consensus, or None), ``persuasion``
    (``[{"voter", "author", "votes"}]`` summed), and ``per_agent``: per agent id, ``runs`` (runs it took
    part in), ``wins`` (runs it won), ``win_rate`` (wins / runs), ``answers``, ``votes``, ``flips``,
    ``llm_calls``, ``cost_usd``, ``llm_seconds`` summed, and ``mean_call_s``.
    """
    per: dict[str, dict[str, Any]] = {}
    persuasion: Counter[tuple[str, str]] = Counter()
    ttcs: list[float] = []
    n = completed = 0
    for status, a in runs:
        n += 1
        completed += status == "completed"
        if a.time_to_consensus_s is not None:
            ttcs.append(a.time_to_consensus_s)
        persuasion.update(a.persuasions)
        for aid, s in a.agents.items():
            row = per.setdefault(aid, {"runs": 0, "wins": 0, "answers": 0, "votes": 0, "flips": 0,
                                       "llm_calls": 0, "cost_usd": 0.0, "llm_seconds": 0.0})
            row["runs"] += 1
            row["wins"] += a.winner == aid
            for k, v in (("answers", s.answers), ("votes", s.votes), ("flips", s.flips), ("llm_calls", s.calls),
                         ("cost_usd", s.cost_usd), ("llm_seconds", s.llm_seconds)):
                row[k] += v
    for row in per.values():
        row["win_rate"] = round(row["wins"] / row["runs"], 3)
        row["cost_usd"] = round(row["cost_usd"], 8)
        row["mean_call_s"] = round(row["llm_seconds"] / row["llm_calls"], 3) if row["llm_calls"] else None
        row["llm_seconds"] = round(row["llm_seconds"], 3)
    return {
        "runs": n,
        "completed": completed,
        "with_consensus": len(ttcs),
        "time_to_consensus_s": {"mean": round(statistics.fmean(ttcs), 3), "median": round(statistics.median(ttcs), 3),
                                "max": round(max(ttcs), 3)} if ttcs else None,
        "persuasion": [{"voter": v, "author": au, "votes": k} for (v, au), k in sorted(persuasion.items())],
        "per_agent": dict(sorted(per.items())),
    }
