"""The ``massgen`` command as a user runs it (a child process, embedded stack under a temp MASSGEN_HOME)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from nats.js.api import AckPolicy, ConsumerConfig

from massgen_es import models, subjects
from massgen_es.bus.jetstream import connect, ensure_streams
from massgen_es.bus.server import NatsServer
from massgen_es.testing.fake_openai import FakeOpenAI, Reply, team_member

MASSGEN = str(Path(sys.executable).parent / "massgen")


def massgen(*args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MASSGEN, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}
    )


def test_bad_config_exits_1_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("agents:\n  - id: a\n    backend: {type: local, temprature: 0.3}\n")
    result = massgen("submit", "hi", "--config", str(cfg))
    assert result.returncode == 1
    assert "unknown key `agents[0].backend.temprature`" in result.stderr


def test_unreachable_nats_exits_2_with_reason() -> None:
    result = massgen("submit", "hi", "--json", MASSGEN_NATS_URL="nats://127.0.0.1:1")
    assert result.returncode == 2
    assert "cannot reach NATS at nats://127.0.0.1:1" in result.stderr


def test_submit_json_then_replay_and_runs_on_the_embedded_stack(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        fake.default("ma", team_member("Paris"))
        fake.default("mb", team_member("Paris, France"))
        cfg = tmp_path / "team.yaml"
        cfg.write_text(yaml.safe_dump({"agents": [
            {"id": aid, "backend": {"type": "chatcompletion", "model": m, "base_url": fake.base_url}}
            for aid, m in (("alpha", "ma"), ("beta", "mb"))
        ]}))
        result = massgen("submit", "Capital of France?", "--config", str(cfg), "--json")
        calls = len(fake.requests())
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == "completed" and out["winner"] == "alpha" and out["final_answer"] == "FINAL Paris"
    assert {v["voter"] for v in out["votes"]} == {"alpha", "beta"}
    assert out["usage"]["llm_calls"] == calls
    lines = massgen("replay", out["run_id"], "--json").stdout.splitlines()
    types = [json.loads(line)["type"] for line in lines]
    assert types[0] == "run.submitted" and types[-1] == "run.completed" and "vote.cast" in types
    report = massgen("replay", out["run_id"], "--check")
    assert report.returncode == 0 and "decisions reproduced" in report.stderr and "final answer" in report.stdout
    assert out["run_id"] in massgen("runs").stdout


def test_all_agents_failed_exits_2_naming_each_agents_last_failure(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        fake.default("down", lambda body: Reply(status=503, error_message="overloaded"))
        cfg = tmp_path / "team.yaml"
        cfg.write_text(yaml.safe_dump({"agents": [
            {"id": "solo", "backend": {"type": "chatcompletion", "model": "down", "base_url": fake.base_url}}
        ]}))
        result = massgen("submit", "hi", "--config", str(cfg), "--json")
    assert result.returncode == 2
    out = json.loads(result.stdout)
    assert out["status"] == "failed" and out["error"] == "all agents failed"
    # Issue 13 item 4: the error names each agent's last failure, type and message.
    assert out["agent_failures"]["solo"]["type"] == "ProviderServerError"
    assert "overloaded" in out["agent_failures"]["solo"]["message"]
    assert "all agents failed" in result.stderr
    assert "solo: ProviderServerError: " in result.stderr and "overloaded" in result.stderr


@pytest.mark.llm
def test_submit_on_the_real_local_model_answers_right_then_replays_without_calling_it() -> None:
    """The README's main job (`make demo`): the demo question, a full answer/vote/presentation round on
    the default local model, and a right answer."""
    result = massgen("submit", "What is the capital of France? Answer in one word.", "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert "paris" in out["final_answer"].lower(), out
    assert out["usage"]["llm_calls"] >= 4
    lines = [json.loads(line) for line in massgen("replay", out["run_id"], "--json").stdout.splitlines()]
    types = {e["type"] for e in lines}
    assert {"answer.posted", "vote.cast", "presentation.completed"} <= types
    # The model server answers under the model's name (usage, traces and metrics carry it).
    assert {e["event"]["model"] for e in lines if e["type"] == "usage.recorded"} == {models.DEFAULT_MODEL}
    before = len(lines)
    check = massgen("replay", out["run_id"], "--check")
    assert check.returncode == 0 and "decisions reproduced" in check.stderr
    # Replay appended nothing (no model call, no decision): the log is unchanged.
    assert len(massgen("replay", out["run_id"], "--json").stdout.splitlines()) == before


def test_served_service_heartbeats_shows_in_status_and_stops_cleanly_on_sigterm(fresh_nats, tmp_path: Path) -> None:
    import signal
    import time

    env = {**os.environ, "MASSGEN_NATS_URL": fresh_nats.url, "MASSGEN_HOME": str(tmp_path)}
    proc = subprocess.Popen([MASSGEN, "serve", "agent_worker"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline, info = time.monotonic() + 30, {}
        while time.monotonic() < deadline:
            result = massgen("status", "--json", MASSGEN_NATS_URL=fresh_nats.url)
            info = json.loads(result.stdout) if result.returncode == 0 else {}
            if any(s["service"] == "agent_worker" for s in info.get("services", ())):
                break
            time.sleep(0.5)
        [worker] = [s for s in info["services"] if s["service"] == "agent_worker"]
        assert worker["age_s"] < 30
        assert {q["stream"] for q in info["queues"]} == {"MASSGEN_TURNS", "MASSGEN_TOOLS", "MASSGEN_EXEC"}
        assert any(s["stream"] == "MASSGEN_EVENTS" and s["messages"] is not None for s in info["streams"])
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]  # JSON lines on stdout
    assert any("serving" in entry["msg"] for entry in lines)
    assert any("stopping" in entry["msg"] and entry["service"] == "agent_worker" for entry in lines)


def test_a_service_that_crashes_ends_submit_at_once_naming_the_service_and_the_fix(tmp_path: Path) -> None:
    """A JetStream store holding a foreign consumer on the turn queue: the embedded agent_worker cannot
    bind, and submit says so and exits, instead of waiting out the run's timeout."""
    async def foreign_consumer(url: str) -> None:
        nc = await connect(url, "pytest")
        await ensure_streams(nc.jetstream())
        await nc.jetstream().add_consumer(subjects.TURNS_STREAM, ConsumerConfig(
            durable_name="someone-else", filter_subject=subjects.TURNS_WILDCARD, ack_policy=AckPolicy.EXPLICIT))
        await nc.close()

    with NatsServer(tmp_path / "home" / "nats") as server:
        asyncio.run(foreign_consumer(server.url))
    cfg = tmp_path / "team.yaml"
    cfg.write_text(yaml.safe_dump({"agents": [
        {"id": "a", "backend": {"type": "chatcompletion", "model": "m", "base_url": "http://127.0.0.1:9/v1"}}]}))
    result = massgen("submit", "hi", "--config", str(cfg), "--json", timeout=120, MASSGEN_HOME=str(tmp_path / "home"))
    assert result.returncode == 2
    assert "service agent_worker crashed" in result.stderr
    assert "nats consumer rm MASSGEN_TURNS NAME" in result.stderr


async def test_a_service_that_does_not_stop_is_reported_with_where_it_waits() -> None:
    """``stack.awaiting``: the chain of awaits of a task, innermost last (what the warning about a
    service that outlives its cancellation prints for every task)."""
    from massgen_cli.stack import awaiting

    never = asyncio.Event()

    async def innermost() -> None:
        await never.wait()

    async def middle() -> None:
        await innermost()

    task = asyncio.create_task(middle(), name="svc")
    await asyncio.sleep(0.01)
    try:
        chain = awaiting(task).splitlines()
        assert chain[0] == "task svc" and "in middle" in chain[1]
        assert "in innermost" in chain[2] and "in wait" in chain[3]  # asyncio.Event.wait
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
