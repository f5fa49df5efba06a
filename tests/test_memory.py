"""MassGen's ``memory`` block (MassGen spec §5.4; issue 16 item 4): persistent memory with mem0 over
Qdrant (local mode, in-process) and context compression, run by the agent worker and recorded as events.

Everything is real but the models: a nats-server of the test's own, the services in-process, mem0 and
qdrant-client as installed, the ``openai`` SDK (the agents' and mem0's) against FakeOpenAI on loopback,
whose ``/v1/embeddings`` gives deterministic word-hash vectors (texts sharing words are close).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import msgspec
import pytest

from corpus_fakes import memory_llm
from harness import Stack, agent_script, answer, of, tool_names
from massgen_agent_worker import memory as mem
from massgen_agent_worker.worker import AgentWorker
from massgen_es.bus import Draft, once
from massgen_es.config import parse_config, run_submitted
from massgen_es.errors import ConfigError
from massgen_es.events import (
    ContextCompressed,
    MemoryRetrieved,
    MemoryStored,
    Message,
    RunCompleted,
    Source,
    ToolCall,
    ToolCallCompleted,
    TurnFailed,
    TurnRequested,
    TurnResponded,
)
from massgen_es.memory import context_window
from massgen_es.testing.fake_openai import FakeOpenAI, Reply
from massgen_replay import lanes
from massgen_replay.views import RunView

TOOL_SERVER = str(Path(__file__).parent / "mcp_servers" / "tool_server.py")
MEMORY_MODEL = "mem-nano"


def memory_block(fake: FakeOpenAI, path: Path, **extra) -> dict:
    """A ``memory`` block as MassGen's examples write it, on the fake and a local Qdrant in ``path``."""
    model = {"provider": "openai", "base_url": fake.base_url}
    return {
        "enabled": True,
        "conversation_memory": {"enabled": True},
        "persistent_memory": {
            "enabled": True, "on_disk": True, "session_name": "vault-project",
            "llm": {**model, "model": MEMORY_MODEL}, "embedding": {**model, "model": "text-embedding-3-small"},
            "qdrant": {"mode": "local", "path": str(path)},
        },
        "retrieval": {"limit": 5, "exclude_recent": True},
        **extra,
    }


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "memory-test-key")
    # mem0 alone would send its LLM calls to openrouter.ai when this is set; the worker must not.
    monkeypatch.setenv("OPENROUTER_API_KEY", "not-for-memory")


async def test_facts_stored_in_run_one_are_retrieved_into_run_two_of_the_same_session(
    fake: FakeOpenAI, fresh_nats, tmp_path: Path, keys,
):
    fake.default(MEMORY_MODEL, memory_llm)
    fake.default("solo-1", agent_script("FACT: the vault code is 4711. Done.", "agent1"))
    fake.default("solo-2", agent_script("The code is 4711.", "agent1"))
    store = tmp_path / "qdrant"

    def cfg(model: str) -> dict:
        return {"agents": [{"id": "keeper", "backend": {"type": "chatcompletion", "model": model,
                                                        "base_url": fake.base_url}}],
                "memory": memory_block(fake, store)}

    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        first = await stack.wait_done(await stack.submit(cfg("solo-1"), "Remember the vault code"), 60)
        second = await stack.wait_done(await stack.submit(cfg("solo-2"), "What is the vault code?"), 60)
    assert of(first, RunCompleted) and of(second, RunCompleted)
    stored = [f.text for e in of(first, MemoryStored) for f in e.facts]
    assert "the vault code is 4711" in stored
    assert all(e.session == "vault-project" and e.failure is None for e in of(first, MemoryStored))
    # Run 1's first turn found nothing; run 2's first turn found run 1's fact and put it in the prompt.
    assert of(first, MemoryRetrieved)[0].facts == ()
    got = of(second, MemoryRetrieved)[0]
    assert got.reason == "turn" and [f.text for f in got.facts][:1] == ["the vault code is 4711"]
    prompts = [json.dumps(b["messages"]) for b in fake.requests("solo-2")]
    assert "Relevant memories from earlier conversations" in prompts[0] and "the vault code is 4711" in prompts[0]
    assert not any("Relevant memories" in json.dumps(b["messages"]) for b in fake.requests("solo-1")[:1])
    # Replay shows what was stored and retrieved, from the events alone.
    view = RunView(second[0].run_id)
    for r in second:
        view.apply(r)
    assert any(e.kind == "memory" and "retrieved 1 fact(s): the vault code is 4711" in e.text for e in view.timeline)
    lane = [i.summary for i in lanes.items(first)]
    assert any(s.startswith("memory: stored 1 fact(s)") for s in lane)
    # mem0's telemetry (PostHog) was off when it was imported; its calls went to the configured provider.
    from mem0.memory import telemetry

    assert telemetry.MEM0_TELEMETRY is False
    paths = {r.path for r in fake.received()}
    assert {"/v1/embeddings", "/v1/chat/completions"} <= paths
    assert all(r.headers.get("authorization") == "Bearer memory-test-key" for r in fake.received(MEMORY_MODEL))


async def test_exclude_recent_leaves_out_facts_this_run_recorded(fake: FakeOpenAI, fresh_nats, tmp_path: Path, keys):
    fake.default(MEMORY_MODEL, memory_llm)
    fake.default("solo", agent_script("FACT: the river is the Seine. Done.", "agent1"))
    cfg = {"agents": [{"id": "keeper", "backend": {"type": "chatcompletion", "model": "solo",
                                                   "base_url": fake.base_url}}],
           "memory": memory_block(fake, tmp_path / "qdrant")}
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        records = await stack.wait_done(await stack.submit(cfg, "Which river is the Seine?"), 60)
    retrieved = of(records, MemoryRetrieved)
    assert len(retrieved) >= 2  # the answer turn and the later ones (vote, presentation)
    later = retrieved[1:]
    assert all(r.facts == () for r in later) and any(r.excluded_recent >= 1 for r in later)


async def test_a_turn_whose_context_passes_the_threshold_is_compressed_and_recorded(
    fake: FakeOpenAI, fresh_nats, tmp_path: Path, keys,
):
    """single_agent_compression_test.yaml's thresholds (0.02 / 0.01) on a 20,000-token window: 400 tokens
    trigger. The agent's echo tool returns ~3,000 characters; the next call's messages are compressed."""
    fake.default(MEMORY_MODEL, memory_llm)
    big = "grain " * 500

    def agent(body: dict) -> Reply:
        tools = tool_names(body)
        if "mcp__t__echo" in tools and not any(m.get("role") == "system" and "SUMMARY:" in str(m.get("content"))
                                               for m in body["messages"]):
            if not any(m.get("role") == "tool" for m in body["messages"]):
                return Reply(tool_calls=(("mcp__t__echo", {"text": big}),))
        if "vote" in tools:
            return Reply(tool_calls=(("vote", {"agent_id": "agent1", "reason": "only one"}),))
        if tools:
            return answer("FACT: the silo holds grain.")
        return Reply(text="FINAL: the silo holds grain")

    fake.default("packer", agent)
    backend = {"type": "chatcompletion", "model": "packer", "base_url": fake.base_url,
               "mcp_servers": [{"name": "t", "command": sys.executable, "args": [TOOL_SERVER]}]}
    block = memory_block(fake, tmp_path / "qdrant",
                         compression={"trigger_threshold": 0.02, "target_ratio": 0.01, "context_window": 20_000},
                         recording={"record_all_tool_calls": True, "record_reasoning": False})
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        stack.broker(tmp_path / "home")
        records = await stack.wait_done(await stack.submit({"agents": [{"id": "packer", "backend": backend}],
                                                            "memory": block}, "What does the silo hold?"), 90)
    assert of(records, RunCompleted) and of(records, ToolCallCompleted)
    [squeezed, *_] = of(records, ContextCompressed)
    assert squeezed.context_window == 20_000 and squeezed.trigger_threshold == 0.02
    assert squeezed.tokens_before > 400 and squeezed.tokens_after < squeezed.tokens_before
    assert squeezed.messages_removed == 2 and squeezed.summary.startswith("SUMMARY:")
    assert squeezed.summary_model == MEMORY_MODEL
    # The call after the tool round got the summary in its system message, not the 3,000-character result.
    after = [b for b in fake.requests("packer") if "SUMMARY:" in json.dumps(b["messages"])][0]
    assert big.strip() not in json.dumps(after["messages"])
    assert [m["role"] for m in after["messages"]] == ["system", "user"]
    # MassGen retrieves after compressing: recorded with the reason.
    assert any(r.reason == "compression" for r in of(records, MemoryRetrieved))
    assert any(i.summary.startswith("context compressed: ~") for i in lanes.items(records))
    # record_all_tool_calls: the answer turn gave mem0 its task, the echo call, its result and the answer.
    answered = [e for e in of(records, MemoryStored) if e.messages > 2]
    assert answered and all(e.messages == 4 and e.failure is None for e in answered)
    gave = [b for b in fake.requests(MEMORY_MODEL) if b.get("response_format")]
    assert any("(tool calls) mcp__t__echo" in json.dumps(b) for b in gave)
    assert of(records, TurnResponded)


def test_plan_keeps_the_system_message_the_task_and_whole_tool_rounds():
    sys_m, task = Message(role="system", content="s" * 40), Message(role="user", content="t" * 40)
    call = Message(role="assistant", content="", tool_calls=(ToolCall(id="c1", name="echo", arguments="{}"),))
    result = Message(role="tool", content="r" * 4000, tool_call_id="c1")
    call2 = Message(role="assistant", content="", tool_calls=(ToolCall(id="c2", name="echo", arguments="{}"),))
    result2 = Message(role="tool", content="q" * 40, tool_call_id="c2")
    messages = [sys_m, task, call, result, call2, result2]
    assert mem.plan(messages, 1, window=100_000, trigger=0.5, target=0.2) is None  # under the trigger
    todo = mem.plan(messages, 1, window=1_000, trigger=0.5, target=0.1)
    assert todo is not None and todo.removed == (2, 3)  # the big round goes, the small recent one stays
    only_result = [sys_m, task, result]
    assert mem.plan(only_result, 1, window=1_000, trigger=0.5, target=0.5).removed == (2,)  # type: ignore[union-attr]
    assert mem.plan([sys_m, Message(role="user", content="x" * 8000)], 1, window=1_000, trigger=0.5,
                    target=0.1) is None  # only the task: nothing may go


def test_context_windows_by_model_prefix():
    assert context_window("gpt-5-nano") == 400_000
    assert context_window("gemini-2.5-flash") == 1_048_576
    assert context_window("something-else") == 128_000


def test_memory_config_is_checked_with_key_paths(tmp_path: Path):
    base = {"agents": [{"id": "a", "backend": {"type": "openai", "model": "gpt-5-nano"}}]}
    with pytest.raises(ConfigError, match=r"`memory.compression.trigger_threshold` must be a fraction"):
        parse_config({**base, "memory": {"compression": {"trigger_threshold": 1.5}}})
    with pytest.raises(ConfigError, match=r"`memory.persistent_memory.llm.api_key` holds a literal key"):
        parse_config({**base, "memory": {"persistent_memory": {"llm": {"model": "m", "api_key": "sk-1"}}}})
    with pytest.raises(ConfigError, match=r"bad value at `memory.persistent_memory.qdrant.mode`"):
        parse_config({**base, "memory": {"persistent_memory": {"qdrant": {"mode": "cloud"}}}})
    off = parse_config({**base, "memory": {"enabled": False, "persistent_memory": {"enabled": True}}})
    assert off.team[0].backend.resolved_memory is None


def test_record_reasoning_loads_with_a_warning_that_it_has_no_effect(caplog: pytest.LogCaptureFixture):
    base = {"agents": [{"id": "a", "backend": {"type": "openai", "model": "gpt-5-nano"}}]}
    with caplog.at_level("WARNING", logger="massgen.config"):
        cfg = parse_config({**base, "memory": {"persistent_memory": {"enabled": True},
                                               "recording": {"record_reasoning": True}}}, "f.yaml")
    assert cfg.team[0].backend.resolved_memory is not None
    assert "`memory.recording.record_reasoning` has no effect here" in caplog.text


def test_a_per_agent_memory_block_is_deep_merged_over_the_top_level_one(tmp_path: Path):
    cfg = parse_config({
        "agents": [{"id": "a", "backend": {"type": "openai", "model": "gpt-5-nano"}},
                   {"id": "b", "backend": {"type": "openai", "model": "gpt-5-nano"},
                    "memory": {"retrieval": {"limit": 9}, "persistent_memory": {"session_name": "b-only"}}}],
        "memory": {"persistent_memory": {"session_name": "shared", "qdrant": {"mode": "local",
                                                                              "path": str(tmp_path)}},
                   "retrieval": {"limit": 3, "exclude_recent": False}},
    })
    a, b = (agent.backend.resolved_memory for agent in cfg.team)
    assert a is not None and b is not None
    assert (a.retrieval.limit, a.persistent_memory.session_name) == (3, "shared")
    assert (b.retrieval.limit, b.retrieval.exclude_recent, b.persistent_memory.session_name) == (9, False, "b-only")
    assert b.persistent_memory.qdrant.path == str(tmp_path)
    # It reaches the worker in the turn request's backend block.
    submitted = run_submitted("q", cfg)
    assert submitted.agents[1].backend["resolved_memory"]["retrieval"]["limit"] == 9
    assert submitted.agents[0].backend["resolved_memory"]["persistent_memory"]["llm"]["api_key_env"] == "OPENAI_API_KEY"


async def test_a_redelivered_turn_does_not_store_its_answer_twice(fake: FakeOpenAI, fresh_nats, tmp_path: Path, keys):
    """A worker that stored a turn's answer and died before acking: the turn comes again (delivery 2). Its
    ``memory:result`` is in the log, so mem0 is not asked again and ``memory.stored`` stays one event."""
    fake.default(MEMORY_MODEL, memory_llm)
    fake.default("solo", lambda body: Reply(text="FACT: the tide turns at noon. Done."))
    cfg = parse_config({"agents": [{"id": "keeper", "backend": {"type": "chatcompletion", "model": "solo",
                                                                "base_url": fake.base_url}}],
                        "memory": memory_block(fake, tmp_path / "qdrant")})
    submitted = run_submitted("When does the tide turn?", cfg)
    req = TurnRequested(turn_id="t1", agent_id="keeper", attempt=1, kind="presentation", answers_version=0,
                        messages=(Message(role="system", content="You answer."),
                                  Message(role="user", content="When does the tide turn?")),
                        tools=(), backend=submitted.agents[0].backend)
    async with Stack(fresh_nats.url) as stack:
        await stack.log.append("run-r", "cli", [Draft("run-r:submitted", submitted)],
                               origin=Source(service="cli", instance="t"))
        [seq] = await stack.log.append("run-r", "orchestrator", [Draft("run-r:turn", req)],
                                       origin=Source(service="orchestrator", instance="t"))
        record = next(r for r in await stack.log.read("run-r") if r.seq == seq)
        worker = AgentWorker(stack.nc)
        await worker._turn(record, req, 1, once.Fence(seq))
        extractions = len([b for b in fake.requests(MEMORY_MODEL) if b.get("response_format")])
        await worker._turn(record, req, 2, once.Fence(seq))
        records = await stack.log.read("run-r")
    assert extractions == 1
    assert len([b for b in fake.requests(MEMORY_MODEL) if b.get("response_format")]) == 1
    [stored] = of(records, MemoryStored)
    assert [f.text for f in stored.facts] == ["the tide turns at noon"]
    assert len(of(records, TurnResponded)) == 1  # the response too is one event (its deterministic id)


async def test_without_the_memory_extra_a_turn_fails_naming_it(
    fake: FakeOpenAI, fresh_nats, tmp_path: Path, keys, monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setitem(sys.modules, "mem0", None)  # what `import mem0` meets where the extra is not installed
    fake.default("solo", lambda body: Reply(text="an answer"))
    cfg = parse_config({"agents": [{"id": "keeper", "backend": {"type": "chatcompletion", "model": "solo",
                                                                "base_url": fake.base_url}}],
                        "memory": memory_block(fake, tmp_path / "no-extra")})
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        records = await stack.wait_done(await stack.submit(msgspec.to_builtins(cfg)), 60)
    failed = of(records, TurnFailed)
    assert failed and all("pip install 'massgen-agent-worker[memory]'" in f.failure.message for f in failed)
    assert not fake.requests("solo")  # no model call before memory could work


async def test_an_unreachable_qdrant_server_is_a_recorded_failure_and_the_run_goes_on(
    fake: FakeOpenAI, fresh_nats, tmp_path: Path, keys,
):
    """``qdrant.mode: server`` as MassGen's examples write it, at a loopback port where nothing listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    fake.default(MEMORY_MODEL, memory_llm)
    fake.default("solo", agent_script("FACT: nothing is stored.", "agent1"))
    block = memory_block(fake, tmp_path / "unused")
    block["persistent_memory"]["qdrant"] = {"mode": "server", "host": "127.0.0.1", "port": port}
    cfg = {"agents": [{"id": "keeper", "backend": {"type": "chatcompletion", "model": "solo",
                                                   "base_url": fake.base_url}}], "memory": block}
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        records = await stack.wait_done(await stack.submit(cfg), 60)
    assert of(records, RunCompleted)
    failures = [e.failure for e in (*of(records, MemoryRetrieved), *of(records, MemoryStored))]
    assert failures and all(f is not None and "refused" in f.message.lower() for f in failures), failures
