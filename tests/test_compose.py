"""End to end against the compose stack (issue 6): the images built offline from this tree, the
stack started with `docker compose` under a throwaway project (massgen.testing.compose), the CLI on
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

from massgen.bus.jetstream import JetStreamEventLog, connect
from massgen.events import (
    AnswerPosted,
    ExecutionCompleted,
    RunCompleted,
    RunSubmitted,
    TurnStarted,
    UsageRecorded,
    VoteCast,
)
from massgen.testing import eventually
from massgen.testing.compose import ComposeStack

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / "tests" / f"{name}.py")
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


def worker_host(instance: str) -> str:
    """A worker's `Source.instance` is `<hostname>-<pid>-<hex>`; in a container the hostname is the
    container's short id."""
    return instance.rsplit("-", 2)[0]


# ------------------------------------------------------------------ images and security


def test_images_run_as_non_root_and_carry_only_their_service(stack: ComposeStack) -> None:
    probe = ("import importlib.util as u, json; "
             "print(json.dumps({m: bool(u.find_spec(m)) for m in ('massgen_orchestrator', 'massgen_agent_worker', "
             "'massgen_mcp_broker', 'massgen_executor', 'openai', 'anthropic', 'google', 'docker')}))")
    has = {}
    for image in ("orchestrator", "agent-worker", "mcp-broker", "executor"):
        ref = f"massgen/{image}:latest"
        assert stack._run(["docker", "image", "inspect", "-f", "{{.Config.User}}", ref]).strip().startswith("10001")
        out = stack._run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", ref, "-c", probe])
        has[image] = {m for m, present in json.loads(out).items() if present}
    assert has["orchestrator"] == {"massgen_orchestrator"}
    assert has["agent-worker"] == {"massgen_agent_worker", "openai", "anthropic", "google"}
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


async def test_full_round_with_a_scripted_provider_in_a_container(stack: ComposeStack, log, tmp_path: Path) -> None:
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
    assert {worker_host(e.worker) for e in of(records, TurnStarted)} == {host}
    assert_no_duplicates(summary["run_id"], records)


async def test_default_submit_is_answered_by_the_local_llm_container(stack: ComposeStack, log) -> None:
    served = stack.logs("local-llm").count("stop processing")
    summary = submitted(stack, "What is 2+2?")  # no config, no API key: the default local team
    assert summary["status"] == "completed", summary
    assert summary["final_answer"].strip()
    records = await log.read(summary["run_id"])
    assert {u.agent_id for u in of(records, UsageRecorded)} == {a.id for a in of(records, RunSubmitted)[0].agents}
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
                        "cwd": "workspace", "enable_mcp_command_line": True, "command_line_execution_mode": "docker",
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
    note = stack.data / "runs" / summary["run_id"] / "workspaces" / "runner" / "note.txt"
    assert note.read_text().strip() == "hello-from-sandbox"
    assert note.stat().st_uid == 1000


def test_status_lists_every_service_with_its_heartbeat(stack: ComposeStack) -> None:
    async def every_service() -> bool:
        done = stack.cli("status", "--json", timeout=60)
        if done.returncode != 0:
            return False
        names = {s["service"] for s in json.loads(done.stdout)["services"]}
        return {"orchestrator", "agent_worker", "mcp_broker", "executor"} <= names

    asyncio.run(eventually(every_service, 30, "a heartbeat from every service"))


async def test_turns_spread_across_three_worker_replicas(stack: ComposeStack, log, tmp_path: Path) -> None:
    stack.scale_workers(3)
    hosts = set(stack.containers("agent-worker"))
    assert len(hosts) == 3

    async def three_pulling() -> bool:
        done = await asyncio.to_thread(stack.cli, "status", "--json", timeout=60)
        workers = [s for s in json.loads(done.stdout or "{}").get("services", []) if s["service"] == "agent_worker"]
        return {worker_host(s["instance"]) for s in workers} >= hosts

    await eventually(three_pulling, 60, "three agent-worker heartbeats")
    summary = await asyncio.to_thread(submitted, stack, "Spread out", "--config", scripted_team(tmp_path, 6, "echo-1s"))
    assert summary["status"] == "completed", summary
    records = await log.read(summary["run_id"])
    per_host = Counter(worker_host(e.worker) for e in of(records, TurnStarted))
    assert set(per_host) == hosts, per_host
    assert_no_duplicates(summary["run_id"], records)


async def test_worker_container_killed_mid_run_the_run_completes_without_duplicates(
    stack: ComposeStack, log, tmp_path: Path
) -> None:
    question = f"Survive a crash {uuid.uuid4().hex[:6]}"
    proc = stack.cli_popen("submit", question, "--config", scripted_team(tmp_path, 3, "echo-3s"), "--json")
    try:
        run_id, victim = None, None
        async with asyncio.timeout(60):
            async for r in log.follow():
                if isinstance(r.event, RunSubmitted) and r.event.question == question:
                    run_id = r.run_id
                elif run_id and r.run_id == run_id and isinstance(r.event, TurnStarted):
                    victim = r.event  # its model call takes 3 s: the worker dies in the middle of it
                    break
        container = stack.containers("agent-worker")[worker_host(victim.worker)]
        stack._run(["docker", "kill", container])
        out, err = await asyncio.to_thread(proc.communicate, timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    summary = json.loads(out)
    assert summary["status"] == "completed" and summary["final_answer"] == "FINAL 42", summary
    records = await log.read(run_id)
    starts = [e for e in of(records, TurnStarted) if e.turn_id == victim.turn_id and e.attempt == victim.attempt]
    assert [e.delivery for e in starts] == [1, 2], starts  # redelivered once, after the ack wait
    assert worker_host(starts[1].worker) != worker_host(victim.worker)
    assert {e.voter_id for e in of(records, VoteCast)} == {"agent-a", "agent-b", "agent-c"}
    assert_no_duplicates(run_id, records)
