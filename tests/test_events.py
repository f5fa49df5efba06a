"""The event schema and codec: tags, the committed JSON Schema, round trips and the tolerant reader."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import msgspec
import pytest

from massgen_es import events as ev
from massgen_es.errors import EventDecodeError
from massgen_es.events import (
    AgentSpec,
    Event,
    Failure,
    Message,
    Record,
    RunFailed,
    RunSettings,
    RunSubmitted,
    Source,
    ToolCall,
    ToolSpec,
    TurnRequested,
    UnknownEvent,
    VoteCast,
    decode,
    encode,
    to_builtins,
)

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "events.schema.json"
SRC = Source(service="test", instance="host-1")


def _encode(event: Event, **overrides) -> bytes:
    meta = {"id": "e1", "run_id": "r1", "ts": 1732350000.5, "source": SRC, "causation_id": "c0"} | overrides
    return encode(event, **meta)


def _vote() -> VoteCast:
    return VoteCast(voter_id="a", target_id="b", target_anon="agent2", reason="best", version=2, turn_id="t1")


def _envelope_dict(event: Event) -> dict:
    return json.loads(_encode(event))


# ---------------------------------------------------------------- schema and tags


def test_committed_schema_matches_json_schema():
    committed = SCHEMA_FILE.read_text() if SCHEMA_FILE.exists() else ""
    assert committed == ev.json_schema(), (
        f"{SCHEMA_FILE} is stale or missing: run `make schema` and commit the result"
    )


def test_every_event_class_has_a_unique_explicit_tag():
    tags = [cls.__struct_config__.tag for cls in ev.EVENT_CLASSES]
    for cls, tag in zip(ev.EVENT_CLASSES, tags, strict=True):
        assert isinstance(tag, str) and tag != cls.__name__, f"{cls.__name__} needs an explicit tag"
        assert re.fullmatch(r"[a-z]+(\.[a-z_]+)+", tag), f"{cls.__name__}: unexpected tag {tag!r}"
    assert len(set(tags)) == len(tags)


def test_every_event_subclass_in_module_is_in_event_type_union():
    defined = {
        cls
        for _, cls in inspect.getmembers(ev, inspect.isclass)
        if issubclass(cls, Event) and cls is not Event and cls.__module__ == ev.__name__
    }
    assert defined == set(ev.EventType.__args__)
    assert set(ev.EVENT_CLASSES) == defined


# ---------------------------------------------------------------- round trips

ROUND_TRIP_EVENTS = [
    RunSubmitted(
        question="What is 2+2?",
        agents=(
            AgentSpec(id="a", backend={"type": "local", "temperature": 0.2}, system_message="Be brief."),
            AgentSpec(id="b", backend={"type": "chatcompletion", "model": "m", "api_key_env": "K"}),
        ),
        settings=RunSettings(
            max_new_answers_per_agent=2, voting_sensitivity="strict", orchestrator_timeout_s=60.0
        ),
        config_path="team.yaml",
    ),
    TurnRequested(
        turn_id="t1",
        agent_id="a",
        attempt=2,
        kind="coordination",
        messages=(
            Message(role="system", content="sys"),
            Message(
                role="assistant",
                tool_calls=(ToolCall(id="call1", name="vote", arguments='{"agent_id": "agent1"}'),),
            ),
            Message(role="tool", content="ok", tool_call_id="call1"),
        ),
        tools=(ToolSpec(name="vote", description="Vote", parameters={"type": "object", "properties": {}}),),
        backend={"type": "local", "max_tokens": 256},
        answers_version=3,
    ),
    _vote(),
    RunFailed(
        reason="all agents dropped",
        failure=Failure(
            type="AgentsExhausted",
            message="no live agents",
            details={"dropped": ["a", "b"]},
            cause=Failure(type="ProviderHTTPError", message="503", retryable=True, details={"status": 503}),
        ),
    ),
]


@pytest.mark.parametrize("event", ROUND_TRIP_EVENTS, ids=lambda e: ev.tag_of(e))
def test_encode_decode_round_trip_preserves_event(event: Event):
    record = decode(_encode(event), seq=7)
    assert record == Record(
        seq=7, id="e1", run_id="r1", ts=1732350000.5, source=SRC, causation_id="c0", event=event
    )


# ---------------------------------------------------------------- tolerant reader


def test_unknown_field_in_data_is_skipped():
    env = _envelope_dict(_vote())
    env["data"]["added_in_v2"] = {"nested": [1, 2]}
    assert decode(json.dumps(env).encode()).event == _vote()


def test_unknown_top_level_envelope_field_is_skipped():
    env = _envelope_dict(_vote())
    env["trace_id"] = "abc"
    record = decode(json.dumps(env).encode())
    assert record.event == _vote() and record.id == "e1"


def test_unknown_type_tag_decodes_to_unknown_event_with_data():
    env = _envelope_dict(_vote())
    env["type"] = "vote.retracted"
    env["data"] = {"type": "vote.retracted", "voter_id": "a"}
    record = decode(json.dumps(env).encode(), seq=3)
    assert record.event == UnknownEvent(type="vote.retracted", data=env["data"])
    assert record.type == "vote.retracted"


def test_malformed_json_raises_event_decode_error_naming_seq():
    with pytest.raises(EventDecodeError, match=r"seq 42\b"):
        decode(b'{"id": "e1", "run_id": ', seq=42)


def test_wrongly_typed_field_of_known_type_raises_event_decode_error_naming_seq():
    env = _envelope_dict(_vote())
    env["data"]["version"] = "two"
    with pytest.raises(EventDecodeError, match=r"seq 9\b"):
        decode(json.dumps(env).encode(), seq=9)


# ---------------------------------------------------------------- record helpers


def test_record_type_and_to_builtins_give_the_tag():
    record = decode(_encode(_vote()))
    assert record.type == "vote.cast"
    out = to_builtins(record)
    assert out["type"] == "vote.cast"
    assert out["event"] == msgspec.to_builtins(_vote())
    msgspec.json.encode(out)  # JSON-ready
