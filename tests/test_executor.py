"""Executor integration: real nats-server, the services in-process, a real Docker engine with the
project's sandbox images, and scripted models through the real ``openai`` SDK calling
``mcp__command_line__execute_command``."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import docker
import pytest

from harness import Stack, of, team, tool_names, vote
from massgen_es.bus.objects import ObjectStore
from massgen_es.events import (
    AnswerPosted,
    ExecutionCompleted,
    ExecutionFailed,
    RunCompleted,
    SandboxChanged,
)
from massgen_es.testing import eventually
from massgen_es.testing.fake_openai import FakeOpenAI, Reply
from massgen_executor.docker_sandbox import LABEL, RUN_LABEL

EXEC = "mcp__command_line__execute_command"
IMAGE = os.environ.get("MASSGEN_SANDBOX_PYTHON_IMAGE", "massgen/sandbox-python:latest")


def results(messages: list[dict]) -> list[str]:
    ids = {c["id"] for m in messages if m["role"] == "assistant" for c in m.get("tool_calls") or ()
           if c["function"]["name"] == EXEC}
    return [m["content"] for m in messages if m["role"] == "tool" and m.get("tool_call_id") in ids]


def commands(*rounds: tuple):
    """A model that runs the given command rounds, answers with the JSON results it read, votes agent1."""

    def handle(body: dict) -> Reply:
        tools = tool_names(body)
        seen = results(body["messages"])
        if "vote" in tools:
            return vote("agent1")
        if "new_answer" not in tools:
            return Reply(text="FINAL " + " | ".join(seen))
        done = sum(1 for m in body["messages"] if m["role"] == "assistant"
                   and any(c["function"]["name"] == EXEC for c in m.get("tool_calls") or ()))
        if done < len(rounds):
            return Reply(tool_calls=tuple((EXEC, args) for args in rounds[done]))
        return Reply(tool_calls=(("new_answer", {"content": json.dumps(seen)}),))

    return handle


def exec_team(fake: FakeOpenAI, handler, **backend) -> dict:
    cfg, (model,) = team(fake, 1)
    cfg["agents"][0]["backend"].update({"cwd": "ws", "enable_mcp_command_line": True, **backend})
    fake.default(model, handler)
    return cfg


async def run(fresh_nats, home: Path, cfg: dict, **executor) -> tuple[str, list]:
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        stack.broker(home)  # `cwd` also gives the agent the filesystem MCP server
        stack.executor(home, **executor)
        run_id = await stack.submit(cfg)
        records = await stack.wait_done(run_id, 90)
        return run_id, records


@pytest.fixture
def engine() -> docker.DockerClient:
    client = docker.from_env()
    client.ping()  # `make test` starts the engine (scripts/docker-engine.sh); a missing one fails loudly
    return client


# ---------------------------------------------------------------- local mode


async def test_local_command_runs_in_the_workspace_and_its_result_reaches_the_model(fresh_nats, fake, massgen_home):
    cfg = exec_team(fake, commands(({"command": "echo hello > note.txt && cat note.txt && pwd"},)))
    run_id, records = await run(fresh_nats, massgen_home, cfg)
    [done] = of(records, ExecutionCompleted)
    workspace = massgen_home / "runs" / run_id / "workspaces" / cfg["agents"][0]["id"]
    assert (done.mode, done.exit_code, done.sandbox) == ("local", 0, None)
    assert done.stdout == f"hello\n{workspace}\n"
    assert (workspace / "note.txt").read_text() == "hello\n"
    [note] = [o for o in done.objects if o.label == "note.txt"]  # produced files go to the Object Store
    async with Stack(fresh_nats.url) as stack:
        assert await ObjectStore(stack.nc).get(note) == b"hello\n"
    [answer] = of(records, AnswerPosted)  # the model read the execute_command JSON
    assert json.loads(json.loads(answer.content)[0])["stdout"] == done.stdout


async def test_refused_command_returns_the_reason_to_the_model(fresh_nats, fake, massgen_home):
    cfg = exec_team(fake, commands(({"command": "rm -rf /"},), ({"command": "ls /etc"},)),
                    command_line_blocked_commands=["^ls /etc"])
    _, records = await run(fresh_nats, massgen_home, cfg)
    failures = of(records, ExecutionFailed)
    assert [f.failure.type for f in failures] == ["CommandRefused", "CommandRefused"]
    [answer] = of(records, AnswerPosted)
    assert answer.content.count("Error:") == 2 and of(records, RunCompleted)


async def test_work_dir_outside_the_workspace_is_refused(fresh_nats, fake, massgen_home):
    cfg = exec_team(fake, commands(({"command": "ls", "work_dir": "../../.."},)))
    _, records = await run(fresh_nats, massgen_home, cfg)
    [failed] = of(records, ExecutionFailed)
    assert failed.failure.type == "ToolPermissionError" and "outside" in failed.failure.message


async def test_long_output_is_capped_in_the_event_and_kept_whole_in_the_object_store(fresh_nats, fake, massgen_home):
    cfg = exec_team(fake, commands(({"command": "python3 -c \"print('x' * 50000)\""},)),
                    command_line_max_output_chars=1000)
    _, records = await run(fresh_nats, massgen_home, cfg)
    [done] = of(records, ExecutionCompleted)
    assert len(done.stdout) == 1000 and done.stdout_truncated
    [full] = [o for o in done.objects if o.label == "stdout"]
    async with Stack(fresh_nats.url) as stack:
        assert await ObjectStore(stack.nc).get(full) == b"x" * 50000 + b"\n"


# ---------------------------------------------------------------- docker mode


async def test_docker_sandbox_is_isolated_limited_and_non_root(fresh_nats, fake, massgen_home, engine, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "data.txt").write_text("shared\n")
    probe = (
        "id -u; cat " + str(ctx / "data.txt") + "; (echo no > " + str(ctx / "w.txt") + ") 2>/dev/null || echo ctx-ro; "
        "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), 2)\" 2>/dev/null || echo no-net; "
        "touch /etc/x 2>/dev/null || echo root-ro; echo ok > made.txt"
    )
    cfg = exec_team(fake, commands(({"command": probe},)), command_line_execution_mode="docker",
                    command_line_docker_image=IMAGE, command_line_docker_memory_limit="256m",
                    command_line_docker_cpu_limit=0.5, command_line_docker_pids_limit=64,
                    command_line_docker_read_only=True, context_paths=[{"path": str(ctx)}])
    run_id, records = await run(fresh_nats, massgen_home, cfg)
    [done] = of(records, ExecutionCompleted)
    assert done.mode == "docker" and done.exit_code == 0, done
    assert done.stdout.split() == ["1000", "shared", "ctx-ro", "no-net", "root-ro"]
    workspace = massgen_home / "runs" / run_id / "workspaces" / cfg["agents"][0]["id"]
    assert (workspace / "made.txt").read_text() == "ok\n"
    created = [e for e in of(records, SandboxChanged) if e.state == "created"]
    assert [e.container for e in created] == [done.sandbox] and done.sandbox.startswith(f"massgen-{run_id}-")

    async def removed() -> bool:
        return not engine.api.containers(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})

    await eventually(removed, 20, "the run's sandbox to be removed")


async def test_sandbox_limits_are_applied(engine, fresh_nats, fake, massgen_home):
    cfg = exec_team(fake, commands(({"command": "sleep 5"},)), command_line_execution_mode="docker",
                    command_line_docker_image=IMAGE, command_line_docker_memory_limit="128m",
                    command_line_docker_cpu_limit=0.25, command_line_docker_pids_limit=32)
    seen: dict = {}

    async def inspect_while_running() -> bool:
        for c in engine.api.containers(filters={"label": LABEL}):
            try:
                seen.update(engine.api.inspect_container(c["Id"])["HostConfig"])
            except docker.errors.NotFound:  # ended between the list and the inspect
                continue
        return bool(seen)

    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        stack.broker(massgen_home)
        stack.executor(massgen_home)
        run_id = await stack.submit(cfg)
        await eventually(inspect_while_running, 30, "the sandbox to run")
        await stack.wait_done(run_id, 60)
    assert seen["Memory"] == 128 * 1024 * 1024 and seen["NanoCpus"] == 250_000_000
    assert seen["PidsLimit"] == 32 and seen["NetworkMode"] == "none"


async def test_docker_timeout_kills_the_command(fresh_nats, fake, massgen_home, engine):
    cfg = exec_team(fake, commands(({"command": "sleep 30", "timeout": 1},)), command_line_execution_mode="docker",
                    command_line_docker_image=IMAGE)
    _, records = await run(fresh_nats, massgen_home, cfg)
    [done] = of(records, ExecutionCompleted)
    assert done.timed_out and done.exit_code == 137 and done.duration_s < 10


async def test_parallel_runs_get_their_own_containers(fresh_nats, fake, massgen_home, engine):
    cfg = exec_team(fake, commands(({"command": "hostname"},)), command_line_execution_mode="docker",
                    command_line_docker_image=IMAGE)
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker(concurrency=4)
        stack.broker(massgen_home)
        stack.executor(massgen_home)
        runs = [await stack.submit(cfg) for _ in range(2)]
        records = [await stack.wait_done(r, 90) for r in runs]
    names = [of(r, ExecutionCompleted)[0].sandbox for r in records]
    hosts = [of(r, ExecutionCompleted)[0].stdout for r in records]
    assert len(set(names)) == 2 and len(set(hosts)) == 2


async def test_restarted_executor_reaps_orphaned_sandboxes(fresh_nats, massgen_home, engine):
    run_id = uuid.uuid4().hex[:12]
    orphan = engine.containers.run(IMAGE, ["sleep", "infinity"], detach=True, name=f"massgen-{run_id}-ghost",
                                   labels={LABEL: "1", RUN_LABEL: run_id, "massgen.agent": "ghost"})
    async with Stack(fresh_nats.url) as stack:
        stack.executor(massgen_home)

        async def gone() -> bool:
            return not engine.api.containers(all=True, filters={"name": orphan.name})

        await eventually(gone, 20, "the orphan to be reaped")


async def test_docker_mode_without_an_engine_fails_with_the_fix(fresh_nats, fake, massgen_home, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    cfg = exec_team(fake, commands(({"command": "echo hi"},)), command_line_execution_mode="docker")
    _, records = await run(fresh_nats, massgen_home, cfg, warm=False)
    [failed] = of(records, ExecutionFailed)
    assert failed.failure.type == "SandboxUnavailable"
    assert "command_line_execution_mode: local" in failed.failure.message
    assert not of(records, ExecutionCompleted)  # never silently falls back to local


async def test_executor_builds_the_image_from_a_configured_dockerfile(fresh_nats, fake, massgen_home, engine, tmp_path):
    build = tmp_path / "img"
    build.mkdir()
    (build / "Dockerfile").write_text(f"FROM {IMAGE}\nUSER root\nRUN echo built-by-executor > /marker\nUSER 1000\n")
    tag = f"massgen/test-sandbox:{uuid.uuid4().hex[:8]}"
    cfg = exec_team(fake, commands(({"command": "cat /marker"},)), command_line_execution_mode="docker",
                    command_line_docker_image=tag, command_line_docker_dockerfile=str(build / "Dockerfile"))
    try:
        _, records = await run(fresh_nats, massgen_home, cfg)
        [done] = of(records, ExecutionCompleted)
        assert done.stdout == "built-by-executor\n"
    finally:
        engine.images.remove(tag, force=True)
