"""Protocol identities, built and read here and nowhere else.

- anonymous agent ids: ``agentN`` is the N-th agent in config order (1-based), in every prompt, vote
  enum, update, error text, shared-workspace folder and view (one numbering; MassGen uses three);
- turn ids: ``<agent id>.<n>`` for an agent's n-th turn of the run (n counts on across the run's
  attempts), ``<agent id>.present`` for the winner's presentation and ``<agent id>.evaluate`` for its
  post-evaluation; in attempt k > 1 of a run (after ``run.restarted``) these two are
  ``<agent id>.a<k>.present`` and ``<agent id>.a<k>.evaluate``, so every turn id of a run is unique;
  ``<agent id>.paraphrase`` for the question's rewrite that agent (the first of its round-robin
  slot) is given before coordination (MassGen's DSPy paraphrasing, spec §1.15);
- decision ids: ``<run id>:o<cause seq>:<i>``, the i-th event the orchestrator decided on the input at
  stream sequence ``cause seq``; deterministic, so a redecided input dedupes by ``Nats-Msg-Id``, and
  readable back, so a restarted orchestrator knows where it stopped.

Raises ``ValueError`` on ids that are not of these forms: they can only come from a corrupted log.
"""

from __future__ import annotations

import re

_ANON = re.compile(r"^agent([1-9][0-9]*)$")
_DECISION = re.compile(r"^(?P<run>.+):o(?P<seq>[0-9]+):(?P<i>[0-9]+)$")
PRESENTATION = "present"
POST_EVALUATION = "evaluate"
PARAPHRASE = "paraphrase"


def anon_id(index: int) -> str:
    """Anonymous id of the agent at 0-based config position ``index``: ``agent1``, ``agent2``, ..."""
    if index < 0:
        raise ValueError(f"agent index must be >= 0, got {index}")
    return f"agent{index + 1}"


def anon_index(anon: str) -> int:
    """0-based config position of anonymous id ``anon`` (``agent1`` -> 0).

    Raises:
        ValueError: ``anon`` is not ``agentN``.
    """
    m = _ANON.match(anon)
    if m is None:
        raise ValueError(f"not an anonymous agent id: {anon!r}")
    return int(m.group(1)) - 1


def turn_id(agent_id: str, n: int) -> str:
    """Id of agent ``agent_id``'s ``n``-th coordination turn (1-based)."""
    return f"{agent_id}.{n}"


def presentation_turn_id(agent_id: str, attempt: int = 1) -> str:
    """Id of the presentation turn of winner ``agent_id`` in the run's ``attempt``-th attempt."""
    return f"{_attempt_prefix(agent_id, attempt)}.{PRESENTATION}"


def post_evaluation_turn_id(agent_id: str, attempt: int = 1) -> str:
    """Id of winner ``agent_id``'s post-evaluation turn in the run's ``attempt``-th attempt."""
    return f"{_attempt_prefix(agent_id, attempt)}.{POST_EVALUATION}"


def is_post_evaluation(turn: str) -> bool:
    """Whether ``turn`` is a post-evaluation turn id."""
    return turn.endswith(f".{POST_EVALUATION}")


def _attempt_prefix(agent_id: str, attempt: int) -> str:
    # Attempt 1 keeps the ids of runs recorded before restarts existed.
    return agent_id if attempt == 1 else f"{agent_id}.a{attempt}"


def paraphrase_turn_id(agent_id: str) -> str:
    """Id of the turn that paraphrases the question for agent ``agent_id``'s round-robin slot."""
    return f"{agent_id}.{PARAPHRASE}"


def is_paraphrase(turn: str) -> bool:
    """Whether ``turn`` is a paraphrase turn id."""
    return turn.endswith(f".{PARAPHRASE}")


def is_presentation(turn: str) -> bool:
    """Whether ``turn`` is a presentation turn id."""
    return turn.endswith(f".{PRESENTATION}")


def decision_id(run_id: str, cause_seq: int, i: int) -> str:
    """Id (and ``Nats-Msg-Id``) of the ``i``-th decision caused by the input at stream seq ``cause_seq``."""
    return f"{run_id}:o{cause_seq}:{i}"


def cause_seq(decision: str) -> int:
    """The stream sequence of the input that caused decision ``decision``.

    Raises:
        ValueError: ``decision`` is not a decision id.
    """
    m = _DECISION.match(decision)
    if m is None:
        raise ValueError(f"not an orchestrator decision id: {decision!r}")
    return int(m.group("seq"))
