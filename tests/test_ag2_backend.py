"""``type: ag2`` (MassGen spec §2.1/§2.2; issue 16 item 3): AG2 agents and group chats as a backend, run
with the real ``ag2`` package whose own OpenAI client talks to the wire-level fake, on a real nats-server;
their code blocks run at the real executor (local bubblewrap sandbox), never in the worker."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from corpus_fakes import ScriptedLLMock, openai_member
from harness import Stack, of, tool_names
from massgen_es import ag2
from massgen_es.config import parse_config
from massgen_es.errors import ConfigError
from massgen_es.events import (
    AnswerPosted,
    ExecutionCompleted,
    ExecutionRequested,
    RunCompleted,
    TextDelta,
    TurnFailed,
    UsageRecorded,
    VoteCast,
)
from massgen_es.testing.fake_openai import FakeOpenAI, Reply

pytest.importorskip("autogen", reason="the ag2 extra (services/agent_worker[ag2]) is not installed")


def llm(fake: FakeOpenAI, model: str) -> dict[str, Any]:
    return {"api_type": "openai", "model": model, "base_url": fake.base_url, "cache_seed": 42}


def single(fake: FakeOpenAI, model: str, **agent: Any) -> dict[str, Any]:
    return {"type": "ag2", "agent_config": {
        "type": "assistant", "name": "AG2_Assistant", "llm_config": llm(fake, model),
        "system_message": "You are a helpful AI assistant powered by AG2.", **agent}}


def cfg(*backends: dict[str, Any]) -> dict[str, Any]:
    return {"agents": [{"id": f"agent-{chr(97 + i)}", "backend": b} for i, b in enumerate(backends)],
            "timeout_settings": {"orchestrator_timeout_seconds": 90, "presentation_timeout_seconds": 60}}


@pytest.fixture(autouse=True)
def openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")


async def run(fresh_nats, home, config: dict[str, Any]) -> list:
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker(concurrency=4)
        stack.executor(home)
        return await stack.wait_done(await stack.submit(config), 90)


def _system(body: dict) -> str:
    return "\n".join(str(m.get("content")) for m in body.get("messages", []) if m.get("role") == "system")


async def test_a_single_ag2_agent_answers_votes_and_presents(fresh_nats, fake, massgen_home):
    fake.default("ag2-model", openai_member)
    fake.default("peer-model", openai_member)
    peer = {"type": "chatcompletion", "model": "peer-model", "base_url": fake.base_url}
    records = await run(fresh_nats, massgen_home, cfg(single(fake, "ag2-model"), peer))
    done = of(records, RunCompleted)
    assert done and done[0].final_answer.strip()
    assert any(a.agent_id == "agent-a" for a in of(records, AnswerPosted))
    assert any(v.voter_id == "agent-a" for v in of(records, VoteCast))
    bodies = fake.requests("ag2-model")
    assert bodies and all("powered by AG2" in _system(b) for b in bodies)  # the AG2 agent's own system message
    assert {"new_answer", "vote"} <= {n for b in bodies for n in tool_names(b)}
    usage = [u for u in of(records, UsageRecorded) if u.agent_id == "agent-a"]
    assert usage and usage[0].model == "ag2-model" and usage[0].usage.input_tokens > 0
    assert "".join(d.text for d in of(records, TextDelta) if d.agent_id == "agent-a").strip()


async def test_an_ag2_group_chat_takes_its_decision_through_its_user_agent(fresh_nats, fake, massgen_home):
    for model in ("grp-default", "grp-coder", "grp-manager"):
        fake.default(model, openai_member)
    group = {"type": "ag2", "group_config": {
        "llm_config": llm(fake, "grp-default"),
        "agents": [
            {"type": "assistant", "name": "Coder", "system_message": "You write code.",
             "llm_config": llm(fake, "grp-coder")},
            {"type": "assistant", "name": "Reviewer", "description": "Reviews code", "system_message": "You review."},
        ],
        "pattern": {"type": "auto", "initial_agent": "Coder",
                    "group_manager_args": {"llm_config": llm(fake, "grp-manager")}},
        "max_rounds": 8,
    }}
    records = await run(fresh_nats, massgen_home, cfg(group))
    done = of(records, RunCompleted)
    assert done and done[0].final_answer.strip()
    assert [a.agent_id for a in of(records, AnswerPosted)][:1] == ["agent-a"]
    coder = fake.requests("grp-coder")
    assert coder and all("new_answer" not in tool_names(b) for b in coder)  # experts never hold workflow tools
    user_calls = [b for b in fake.requests("grp-default") if "new_answer" in tool_names(b)]
    assert user_calls  # the User agent (the group's default llm_config) took the decision
    assert any("You write code." in _system(b) for b in coder)
    streamed = "".join(d.text for d in of(records, TextDelta) if d.agent_id == "agent-a")
    assert "[Coder]" in streamed


async def test_ag2_code_blocks_run_at_the_executor(fresh_nats, fake, massgen_home):
    answered: list[str] = []

    def coder(body: dict) -> Reply:  # writes code, answers with what it printed, then plays the team's part
        last = str(body["messages"][-1].get("content") or "")
        if answered or "new_answer" not in tool_names(body):
            return openai_member(body)
        if "exitcode" not in last:
            return Reply(text="Let me compute it.\n```python\nprint(6 * 7)\n```")
        found = re.search(r"Code output:\s*(\S+)", last)
        answered.append(f"The result is {found and found.group(1)}")
        return Reply(tool_calls=(("new_answer", {"content": answered[0]}),))

    fake.default("coder-model", coder)
    backend = single(fake, "coder-model", code_execution_config={
        "executor": {"type": "LocalCommandLineCodeExecutor", "timeout": 30, "work_dir": "./code_execution_workspace"}})
    records = await run(fresh_nats, massgen_home, cfg(backend))
    requested = of(records, ExecutionRequested)
    assert len(requested) == 1 and "print(6 * 7)" in requested[0].command
    completed = of(records, ExecutionCompleted)
    assert completed and completed[0].stdout.strip() == "42" and completed[0].mode == "local"
    assert [a.content for a in of(records, AnswerPosted)] == ["The result is 42"]
    assert of(records, RunCompleted)


async def test_anthropic_and_google_llm_configs_go_through_our_claude_and_gemini_adapters(
    fresh_nats, massgen_home, monkeypatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    with ScriptedLLMock() as llm:
        claude = {"type": "ag2", "agent_config": {"type": "assistant", "name": "AG2_Assistant", "llm_config": [
            {"api_type": "anthropic", "model": "claude-sonnet-4-20250514", "temperature": 0.3, "cache_seed": 42,
             "base_url": llm.base_url("anthropic")}]}}
        gemini = {"type": "ag2", "group_config": {
            "llm_config": {"api_type": "google", "model": "gemini-2.5-flash", "base_url": llm.base_url("gemini")},
            "agents": [{"type": "assistant", "name": "Coder"}, {"type": "assistant", "name": "Tester"}],
            "pattern": {"type": "round_robin", "initial_agent": "Coder"}, "max_rounds": 6}}
        records = await run(fresh_nats, massgen_home, cfg(claude, gemini))
        assert llm.requests("anthropic") and llm.requests("gemini")
    assert not of(records, TurnFailed)
    assert {a.agent_id for a in of(records, AnswerPosted)} == {"agent-a", "agent-b"}
    assert of(records, RunCompleted)
    models = {u.agent_id: u.model for u in of(records, UsageRecorded)}
    assert models["agent-a"].startswith("claude") and models["agent-b"].startswith("gemini")


@pytest.mark.parametrize(("backend", "message"), [
    ({"type": "ag2"}, "exactly one of `agent_config`"),
    ({"type": "ag2", "agent_config": {"name": "A", "llm_config": {"model": "m", "api_key": "sk-literal"}}},
     "agents[0].backend.agent_config.llm_config.api_key` holds a literal key"),
    ({"type": "ag2", "agent_config": {"name": "A", "llm_config": {"model": "m", "api_type": "mistral"}}},
     "api_type` must be one of: openai, anthropic, google"),
    ({"type": "ag2", "agent_config": {"name": "A", "llm_config": {"model": "m"},
                                      "code_execution_config": {"executor": {"type": "JupyterCodeExecutor"}}}},
     "'JupyterCodeExecutor' is not supported here"),
    ({"type": "ag2", "group_config": {"llm_config": {"model": "m"}, "agents": [{"name": "A"}],
                                      "pattern": {"type": "auto", "initial_agent": "B"}}},
     "pattern.initial_agent` must name one of the group's agents: A"),
    ({"type": "openai", "model": "gpt-4o", "agent_config": {"name": "A"}}, "only backend type ag2, autogen uses it"),
])
def test_bad_ag2_blocks_are_refused_with_their_key_path(backend, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"agents": [{"id": "a", "backend": backend}]})


def test_a_docker_code_executor_means_a_docker_sandbox():
    parsed = parse_config({"agents": [{"id": "a", "backend": {"type": "ag2", "agent_config": {
        "name": "A", "llm_config": [{"api_type": "anthropic", "model": "claude-sonnet-4"}],
        "code_execution_config": {"executor": {"type": "DockerCommandLineCodeExecutor"}}}}}]})
    assert parsed.team[0].backend.command_line_execution_mode == "docker"


def test_the_llm_config_key_reference_stays_a_reference_in_the_event():
    parsed = parse_config({"agents": [{"id": "a", "backend": {"type": "ag2", "agent_config": {
        "name": "A", "llm_config": {"model": "m", "api_key": "${MY_AG2_KEY}"}}}}]})
    assert "${MY_AG2_KEY}" in json.dumps(parsed.team[0].backend.agent_config)


async def test_a_worker_without_the_ag2_extra_names_it(monkeypatch):
    import sys

    from massgen_agent_worker import providers

    monkeypatch.setitem(sys.modules, "autogen", None)  # `import autogen` fails as on a worker without the extra
    monkeypatch.delitem(sys.modules, "massgen_agent_worker.providers.ag2_agents", raising=False)
    monkeypatch.delattr(providers, "ag2_agents", raising=False)
    monkeypatch.setattr(providers, "_loaded", {})
    backend = providers.backend_config({"type": "ag2", "agent_config": {"name": "A", "llm_config": {"model": "m"}}})
    with pytest.raises(ConfigError, match=re.escape("services/agent_worker[ag2]")):
        await providers.adapter_for(backend)


def test_only_an_ag2_agent_with_a_code_executor_runs_commands_without_the_command_line_tool():
    coder = {"name": "A", "llm_config": {"model": "m"},
             "code_execution_config": {"executor": {"type": "LocalCommandLineCodeExecutor"}}}
    assert ag2.executes_code({"type": "ag2", "agent_config": coder})
    assert ag2.executes_code({"type": "autogen", "group_config": {"agents": [{"name": "B"}, coder]}})
    assert not ag2.executes_code({"type": "ag2", "agent_config": {**coder, "code_execution_config": False}})
    assert not ag2.executes_code({"type": "openai", "agent_config": coder})


async def test_a_cancelled_call_ends_its_ag2_thread(fake: FakeOpenAI):
    import asyncio
    import contextlib

    from massgen_agent_worker import providers
    from massgen_agent_worker.providers import ag2_agents
    from massgen_es.events import Message, TurnRequested

    fake.default("slow-coder", lambda body: Reply(text="```python\nprint(1)\n```"))
    backend = single(fake, "slow-coder", code_execution_config={"executor": {"type": "LocalCommandLineCodeExecutor"}})
    request = TurnRequested(turn_id="t", agent_id="a", attempt=1, kind="coordination", backend=backend,
                            messages=(Message(role="user", content="compute"),), tools=(), answers_version=0)
    waiting = asyncio.Event()

    async def never_answers(call):  # the executor never answers: AG2's thread waits on the loop
        waiting.set()
        await asyncio.sleep(3600)

    async def on_text(_text: str) -> None:
        return None

    task = asyncio.ensure_future(ag2_agents.complete(providers.backend_config(backend), request, on_text,
                                                     run_tool=never_answers))
    await asyncio.wait_for(waiting.wait(), 30)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # the worker's thread pool drains: AG2's thread gave up its wait instead of blocking forever
    await asyncio.wait_for(asyncio.get_running_loop().shutdown_default_executor(), 5)
