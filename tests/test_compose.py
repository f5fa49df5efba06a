"""End to end against the compose stack (issue 6): the images built offline from this tree, the
stack started with `docker compose` under a throwaway project (massgen_es.testing.compose), the CLI on
the host as NATS user `cli`, a scripted model in a container on the stack's network.

The tests share one stack and run in file order: one worker first, then three, then one of the
three killed. Needs a Docker engine with compose v2 and root (`make test` provides both).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml

from harness import assert_no_duplicates, of
from massgen_es.bus.jetstream import JetStreamEventLog, connect
from massgen_es.events import (
    AnswerPosted,
    ExecutionCompleted,
    RunCompleted,
    RunSubmitted,
    TurnStarted,
    UsageRecorded,
    VoteCast,
)
from massgen_es.testing.compose import ComposeStack, host_of

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / "tests" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stack():
    s = ComposeStack(ROOT, workers=1, ack_wait_s=6)
    print(s.build())
    with s:
        yield s


@pytest.fixture
async def log(stack: ComposeStack):
    nc = await connect(stack.url("cli"), "e2e-tests")
    yield JetStreamEventLog(nc)
    await nc.close()


def scripted_team(tmp_path: Path, n: int, model: str, **backend) -> str:
    """A config of n chatcompletion agents on the scripted-model container; returns its path."""
    cfg = {
        "agents": [
            {"id": f"agent-{chr(97 + i)}", "backend": {"type": "chatcompletion", "model": model,
                                                      "base_url": "http://scripted-model:8000/v1", **backend}}
            for i in range(n)
        ],
        "timeout_settings": {"orchestrator_timeout_seconds": 180, "presentation_timeout_seconds": 60},
    }
    path = tmp_path / f"team-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def submitted(stack: ComposeStack, question: str, *args: str) -> dict:
    done = stack.cli("submit", question, *args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


# ------------------------------------------------------------------ images and security


def test_images_run_as_non_root_and_carry_only_their_service(stack: ComposeStack) -> None:
    modules = ("massgen_orchestrator", "massgen_agent_worker", "massgen_mcp_broker", "massgen_executor",
               "openai", "anthropic", "google.genai", "docker")  # google.genai: `google` alone is also protobuf's
    probe = ("import importlib.util as u, json; "
             f"print(json.dumps({{m: bool(u.find_spec(m)) for m in {modules}}}))")
    has = {}
    for image in ("orchestrator", "agent-worker", "mcp-broker", "executor"):
        ref = f"massgen/{image}:latest"
        user = stack.run(["docker", "image", "inspect", "-f", "{{.Config.User}}", ref]).strip()
        assert user.startswith("10001"), (image, user)
        out = stack.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", ref,
                          "-c", probe])
        has[image] = {m for m, present in json.loads(out).items() if present}
    assert has["orchestrator"] == {"massgen_orchestrator"}
    assert has["agent-worker"] == {"massgen_agent_worker", "openai", "anthropic", "google.genai"}
    assert has["mcp-broker"] == {"massgen_mcp_broker"}
    assert has["executor"] == {"massgen_executor", "docker"}


async def test_anonymous_nats_is_refused_and_each_user_keeps_to_its_role(stack: ComposeStack) -> None:
    perms = _load("nats_permissions")
    host = f"127.0.0.1:{stack.nats_port}"
    why = await perms.refused(f"nats://{host}")
    assert why is not None and "authorization" in why.lower(), why
    assert await perms.refused(f"nats://cli:{uuid.uuid4().hex}@{host}") is not None
    assert await perms.refused(stack.url("cli")) is None
    # The worker cannot append the orchestrator's decisions, the CLI cannot decide nor push work, ...
    passwords = {user: stack.passwords[var] for user, var in perms.USERS.items()}
    await perms.negative_checks(f"nats://{host}", passwords)
    assert perms.failures == []


# ------------------------------------------------------------------ runs


async def test_full_round_with_a_scripted_provider_in_a_container(
    stack: ComposeStack, log, tmp_path: Path
) -> None:
    summary = submitted(stack, "What is 6 times 7?", "--config", scripted_team(tmp_path, 3, "echo"))
    assert summary["status"] == "completed", summary
    assert summary["final_answer"] == "FINAL 42"
    records = await log.read(summary["run_id"])
    # Who answers before the others vote depends on timing; every agent ends up voting.
    assert of(records, AnswerPosted)
    assert {e.voter_id for e in of(records, VoteCast)} == {"agent-a", "agent-b", "agent-c"}
    assert of(records, RunCompleted)[0].winner_id == summary["winner"]
    # Every turn ran in the one worker container.
    [host] = stack.containers("agent-worker")
    assert {host_of(e.worker) for e in of(records, TurnStarted)} == {host}
    assert_no_duplicates(summary["run_id"], records)


def test_services_are_healthy_by_their_healthcheck_and_serve_metrics_on_the_network(stack: ComposeStack) -> None:
    """Issue 14 item 4: each service's compose healthcheck is its /healthz; /metrics is reachable by
    service name on the compose network (as Prometheus scrapes it) and shows the round above."""
    for service in ("orchestrator", "agent-worker", "mcp-broker", "executor"):
        for cid in stack.containers(service).values():
            assert stack.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", cid]).strip() == "healthy"
    [worker] = stack.containers("agent-worker").values()

    def scrape(service: str) -> str:
        get = f"import urllib.request; print(urllib.request.urlopen('http://{service}:9464/metrics').read().decode())"
        return stack.run(["docker", "exec", worker, "python", "-c", get])

    assert 'massgen_runs_total{outcome="completed",service="orchestrator"}' in scrape("orchestrator")
    worker_metrics = scrape("agent-worker")
    assert 'massgen_turns_total{agent="agent-a",model="echo",outcome="responded",service="agent_worker"}' \
        in worker_metrics
    assert 'massgen_work_queue_pending{consumer="agent_worker",queue="MASSGEN_TURNS"}' in worker_metrics


async def test_default_submit_is_answered_by_the_local_llm_container(stack: ComposeStack, log) -> None:
    served = stack.logs("local-llm").count("stop processing")
    summary = submitted(stack, "What is 2+2?")  # no config, no API key: the default local team
    assert summary["status"] == "completed", summary
    assert summary["final_answer"].strip()
    records = await log.read(summary["run_id"])
    agents = {a.id for a in of(records, RunSubmitted)[0].agents}
    assert {u.agent_id for u in of(records, UsageRecorded)} == agents
    assert stack.logs("local-llm").count("stop processing") >= served + len(of(records, UsageRecorded))


async def test_executor_runs_commands_in_a_sibling_sandbox_on_the_shared_data_dir(
    stack: ComposeStack, log, tmp_path: Path
) -> None:
    cfg = tmp_path / "exec.yaml"
    cfg.write_text(yaml.safe_dump({
        "agents": [{
            "id": "runner",
            "system_message": "RUN: echo hello-from-sandbox > note.txt && cat note.txt && id -u",
            "backend": {"type": "chatcompletion", "model": "exec", "base_url": "http://scripted-model:8000/v1",
                        "cwd": "workspace", "enable_mcp_command_line": True,
                        "command_line_execution_mode": "docker",
                        "command_line_docker_image": "massgen/sandbox-python:latest"},
        }],
        "timeout_settings": {"orchestrator_timeout_seconds": 180, "presentation_timeout_seconds": 60},
    }))
    summary = submitted(stack, "run the command", "--config", str(cfg))
    assert summary["status"] == "completed", summary
    [done] = of(await log.read(summary["run_id"]), ExecutionCompleted)
    assert done.mode == "docker" and done.exit_code == 0
    assert done.stdout.split() == ["hello-from-sandbox", "1000"]  # the sandbox user, not the executor's
    # The sandbox wrote through the bind mount at the identical host path.
    assert stack.data is not None
    note = stack.data / "runs" / summary["run_id"] / "workspaces" / "runner" / "note.txt"
    assert note.read_text().strip() == "hello-from-sandbox"
    assert note.stat().st_uid == 1000


def test_status_lists_every_service_with_queues_and_streams(stack: ComposeStack) -> None:
    done = stack.cli("status", "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    services = {s["service"] for s in status["services"]}
    assert {"orchestrator", "agent_worker", "mcp_broker", "executor"} <= services
    assert all(s["age_s"] < 30 for s in status["services"])
    assert {q["stream"] for q in status["queues"]} == {"MASSGEN_TURNS", "MASSGEN_TOOLS", "MASSGEN_EXEC"}
    assert next(s for s in status["streams"] if s["stream"] == "MASSGEN_EVENTS")["messages"] > 0


async def test_turns_spread_across_three_worker_replicas(stack: ComposeStack, log, tmp_path: Path) -> None:
    await asyncio.to_thread(stack.scale_workers, 3)  # returns once all three heartbeat
    hosts = set(stack.containers("agent-worker"))
    assert len(hosts) == 3
    cfg = scripted_team(tmp_path, 6, "echo-1s")
    summary = await asyncio.to_thread(submitted, stack, "Spread out", "--config", cfg)
    assert summary["status"] == "completed", summary
    records = await log.read(summary["run_id"])
    per_host = Counter(host_of(e.worker) for e in of(records, TurnStarted))
    assert set(per_host) == hosts, per_host
    assert_no_duplicates(summary["run_id"], records)


async def _first_turn(log, question: str) -> tuple[str, TurnStarted]:
    """Follow the log until the run asking ``question`` has a worker on its first turn."""
    run_id = None
    async with asyncio.timeout(60):
        async for r in log.follow():
            if isinstance(r.event, RunSubmitted) and r.event.question == question:
                run_id = r.run_id
            elif run_id and r.run_id == run_id and isinstance(r.event, TurnStarted):
                return run_id, r.event
    raise AssertionError("unreachable")


async def _interrupt_a_turn(stack: ComposeStack, log, tmp_path: Path, how: str) -> tuple[str, list, dict]:
    """Submit a 3-agent run whose model calls take 3 s, `docker <how>` (kill or stop) the container of
    the worker on its first turn in the middle of that call, and wait for the run to end. Returns the
    run id, the records of the interrupted turn's TurnStarted, and the CLI's summary."""
    await asyncio.to_thread(stack.scale_workers, 3)
    question = f"Survive a {how} {uuid.uuid4().hex[:6]}"
    proc = stack.cli_popen("submit", question, "--config", scripted_team(tmp_path, 3, "echo-3s"), "--json")
    try:
        run_id, victim = await _first_turn(log, question)
        container = stack.containers("agent-worker")[host_of(victim.worker)]
        await asyncio.to_thread(stack.run, ["docker", how, container])
        out, err = await asyncio.to_thread(proc.communicate, timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    summary = json.loads(out)
    assert summary["status"] == "completed" and summary["final_answer"] == "FINAL 42", summary
    records = await log.read(run_id)
    starts = [r for r in records if isinstance(r.event, TurnStarted)
              and (r.event.turn_id, r.event.attempt) == (victim.turn_id, victim.attempt)]
    assert [r.event.delivery for r in starts] == [1, 2], starts  # handed to another replica once
    assert host_of(starts[1].event.worker) != host_of(victim.worker)
    assert {e.voter_id for e in of(records, VoteCast)} == {"agent-a", "agent-b", "agent-c"}
    assert_no_duplicates(run_id, records)
    return container, starts, summary


async def test_worker_container_killed_mid_run_the_run_completes_without_duplicates(
    stack: ComposeStack, log, tmp_path: Path
) -> None:
    _, starts, _ = await _interrupt_a_turn(stack, log, tmp_path, "kill")
    # SIGKILL: nothing handed the turn back; JetStream redelivered it after the ack wait (6 s here).
    assert starts[1].ts - starts[0].ts >= 5


async def test_worker_container_stopped_mid_turn_exits_cleanly_and_hands_the_turn_back(
    stack: ComposeStack, log, tmp_path: Path
) -> None:
    container, starts, _ = await _interrupt_a_turn(stack, log, tmp_path, "stop")
    # SIGTERM: the worker nak'ed its turn on the way out, so it came back well before the 6 s ack wait.
    assert starts[1].ts - starts[0].ts < 4
    assert stack.run(["docker", "inspect", "-f", "{{.State.ExitCode}}", container]).strip() == "0"
    logged = stack.run(["docker", "logs", container])
    lines = [json.loads(line) for line in logged.splitlines() if line.strip()]
    assert any("stopping" in line["msg"] and line["service"] == "agent_worker" for line in lines)
