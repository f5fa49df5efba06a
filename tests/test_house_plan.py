"""The house plan's kernel rules (issue 12): protocol ids built and read in one module, one error tree,
one way an exception becomes a ``Failure``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from massgen_es import errors, ids
from massgen_es.failures import failure_of

ROOT = Path(__file__).resolve().parents[1]
CODE = [p for top in ("src", "services", "tools") for p in (ROOT / top).rglob("*.py")]


@pytest.mark.parametrize("index", [0, 1, 8, 41])
def test_anonymous_ids_read_back_to_their_config_position(index: int) -> None:
    assert ids.anon_index(ids.anon_id(index)) == index


@pytest.mark.parametrize("run", ["r1", "quality-abc:def", "run:o3:1"])
def test_decision_ids_read_back_to_their_cause(run: str) -> None:
    assert ids.cause_seq(ids.decision_id(run, 1234, 2)) == 1234


def test_presentation_turns_are_told_apart_from_coordination_turns() -> None:
    assert ids.is_presentation(ids.presentation_turn_id("a"))
    assert not ids.is_presentation(ids.turn_id("a", 3))


@pytest.mark.parametrize("bad", ["agent0", "agent", "Agent1", "a1", "agent1x"])
def test_a_malformed_anonymous_id_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not an anonymous agent id"):
        ids.anon_index(bad)


def test_a_malformed_decision_id_is_refused() -> None:
    with pytest.raises(ValueError, match="not an orchestrator decision id"):
        ids.cause_seq("r1:x3:1")


def test_failure_of_names_the_tree_class_and_fills_the_cause_chain() -> None:
    try:
        try:
            raise ConnectionResetError("peer went away")
        except ConnectionResetError as low:
            raise errors.ProviderConnectionError("stream dropped", retryable=True) from low
    except errors.ProviderError as exc:
        failure = failure_of(exc, attempt=2)
    assert (failure.type, failure.message, failure.retryable) == ("ProviderConnectionError", "stream dropped", True)
    assert failure.details == {"attempt": 2}
    assert failure.cause is not None and failure.cause.type == "ConnectionResetError"
    assert failure.cause.message == "peer went away"


def test_an_exception_from_outside_the_tree_becomes_an_internal_error_with_its_cause() -> None:
    failure = failure_of(KeyError("agent9"))
    assert failure.type == "InternalError" and "KeyError" in failure.message
    assert failure.cause is not None and failure.cause.type == "KeyError"


def test_error_details_are_carried_into_the_failure() -> None:
    failure = failure_of(errors.CommandRefused("command refused: `rm -rf /`", rule="dangerous"))
    assert failure.type == "CommandRefused" and failure.details == {"rule": "dangerous"}


def test_every_public_exception_class_lives_in_the_error_tree() -> None:
    outside = []
    for path in CODE:
        if path == ROOT / "src/massgen_es/errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {ast.unparse(b) for b in node.bases}
                if any(b.endswith(("Error", "Exception")) or b.startswith("errors.") for b in bases):
                    outside.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert outside == []


def test_the_error_tree_has_one_root_and_each_class_a_docstring() -> None:
    tree = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, BaseException)
            and c.__module__ == errors.__name__]
    assert len(tree) > 20
    assert all(issubclass(c, errors.MassgenError) for c in tree)
    assert [c.__name__ for c in tree if not (c.__doc__ or "").strip()] == []
