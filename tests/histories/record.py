"""(Re)record the golden runs of ``tests/test_golden_runs.py`` as bundles in this folder (issue 14 item 8).

    .venv/bin/python tests/histories/record.py NAME [NAME ...]     # or --all; --list names them
    .venv/bin/python tests/histories/record.py --decisions FILE    # print a bundle's decisions

Each run is made on a nats-server of its own (under a temporary folder, deleted afterwards) with the
services in-process, scripted models on the wire-level OpenAI fake through the real ``openai`` SDK,
except ``local-model``, which asks the real local model (``--model`` picks it; default: the default
model, ``massgen models``). Writes ``NAME.tar.gz`` (``massgen export bundle``'s format) and
``NAME.decisions.txt`` (one line per decision, for reviewing a re-recording with ``git diff``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the test helpers (harness, scripted models) live in tests/

from test_executor import EXEC, results  # noqa: E402
from test_mcp_broker import mcp_results, tool_server  # noqa: E402

from harness import Stack, answer, restarting_script, team, tool_names, vote  # noqa: E402
from massgen_es.bus.server import NatsServer  # noqa: E402
from massgen_es.config import DEFAULT_CONFIG_YAML  # noqa: E402
from massgen_es.events import ExecutionStarted, Record  # noqa: E402
from massgen_es.testing import eventually  # noqa: E402
from massgen_es.testing.fake_openai import FakeOpenAI, Reply, team_member  # noqa: E402
from massgen_replay import bundle as bundles  # noqa: E402
from massgen_replay.transfer import export_run  # noqa: E402

Scenario = Callable[[Stack, FakeOpenAI, Path, argparse.Namespace], Awaitable[str]]
ACK_WAIT_S = 2.0


async def mcp_exec(s: Stack, fake: FakeOpenAI, tmp: Path, args: argparse.Namespace) -> str:
    """Two agents; agent-a calls an MCP tool, then runs a command that writes a file (an Object Store
    object), and answers with both results; agent-b answers; both vote for agent1; agent-a presents."""
    cfg, (ma, mb) = team(fake, 2)
    cfg["agents"][0]["backend"].update({"cwd": "ws", "enable_mcp_command_line": True,
                                        "command_line_execution_mode": "local",
                                        "mcp_servers": [tool_server(tmp)]})

    def tools_then_answer(body: dict) -> Reply:
        names, messages = tool_names(body), body["messages"]
        if "vote" in names:
            return vote("agent1")
        if "new_answer" not in names:
            return Reply(text="FINAL: 4, as the tool and the command said")
        called = [c["function"]["name"] for m in messages if m["role"] == "assistant"
                  for c in m.get("tool_calls") or ()]
        if "mcp__t__echo" not in called:
            return Reply(tool_calls=(("mcp__t__echo", {"text": "2+2"}),))
        if EXEC not in called:
            return Reply(tool_calls=((EXEC, {"command": "echo $((2+2)) | tee sum.txt"}),))
        return answer(f"4 (tool: {' '.join(mcp_results(messages))}; command: {' '.join(results(messages))})")

    fake.default(ma, tools_then_answer)
    fake.default(mb, team_member("4", vote_for="agent1"))
    s.orchestrator()
    s.worker()
    s.broker(tmp / "home")
    s.executor(tmp / "home")
    return await _done(s, await s.submit(cfg, "What is 2+2? Check it with the tools."))


async def crash(s: Stack, fake: FakeOpenAI, tmp: Path, args: argparse.Namespace) -> str:
    """One agent runs a 3 s command; the executor (a `massgen serve executor` process) is SIGKILLed while
    it runs, a new one is started, the redelivered request is answered ``Interrupted`` (not run again),
    and the run completes."""
    cfg, (model,) = team(fake, 1)
    cfg["agents"][0]["backend"].update({"cwd": "ws", "enable_mcp_command_line": True,
                                        "command_line_execution_mode": "local"})

    def slow_command(body: dict) -> Reply:
        names, messages = tool_names(body), body["messages"]
        if "vote" in names:
            return vote("agent1")
        if "new_answer" not in names:
            return Reply(text="FINAL: " + " ".join(results(messages)))
        if not results(messages):
            return Reply(tool_calls=((EXEC, {"command": "echo started; sleep 3"}),))
        return answer("the command said: " + " ".join(results(messages)))

    fake.default(model, slow_command)
    s.orchestrator()
    s.worker()
    s.broker(tmp / "home")
    doomed = s.process("executor", "--ack-wait", f"{ACK_WAIT_S:g}")
    run_id = await s.submit(cfg, "Run the slow command and report what it said.")

    async def started() -> bool:
        return any(isinstance(r.event, ExecutionStarted) for r in await s.log.read(run_id))

    await eventually(started, 60, "the command to start")
    await asyncio.sleep(0.5)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(5)
    s.process("executor", "--ack-wait", f"{ACK_WAIT_S:g}")
    return await _done(s, run_id, 90)


async def crash_worker(s: Stack, fake: FakeOpenAI, tmp: Path, args: argparse.Namespace) -> str:
    """Two agents; the agent worker (a `massgen serve agent_worker` process) is SIGKILLed while agent-a's
    first LLM call (a slow one) is under way; a new worker gets the turn redelivered (``delivery`` 2) and the run
    completes with each answer once."""
    cfg, (ma, mb) = team(fake, 2)
    fake.script(ma, Reply(text="", tool_calls=(("new_answer", {"content": "Paris"}),), delay_s=4))
    fake.default(ma, team_member("Paris", vote_for="agent1"))
    fake.default(mb, team_member("Paris, France", vote_for="agent1"))
    s.orchestrator()
    doomed = s.process("agent_worker", "--ack-wait", f"{ACK_WAIT_S:g}")
    run_id = await s.submit(cfg)

    async def slow_call_running() -> bool:
        return len(fake.requests()) >= 2  # both agents' first calls are out; agent-a's takes 4 s

    await eventually(slow_call_running, 60, "the first calls")
    await asyncio.sleep(0.5)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(5)
    s.process("agent_worker", "--ack-wait", f"{ACK_WAIT_S:g}")
    return await _done(s, run_id, 90)


async def timeout(s: Stack, fake: FakeOpenAI, tmp: Path, args: argparse.Namespace) -> str:
    """agent-b never answers within the run's 2 s: the deadline fires and agent-a, the only one with an
    answer, presents (``run.timed_out``)."""
    cfg, (ma, mb) = team(fake, 2, timeout_s=2)
    fake.script(ma, answer("Paris"))
    fake.default(ma, lambda body: Reply(text="Presented after timeout: Paris"))
    fake.default(mb, lambda body: answer("late", delay_s=8))
    s.orchestrator()
    s.worker()
    return await _done(s, await s.submit(cfg), 30)


async def budget(s: Stack, fake: FakeOpenAI, tmp: Path, args: argparse.Namespace) -> str:
    """Two priced agents ($2.50/$10 per million tokens, 3000 prompt tokens a call) under a $0.01 budget:
    the budget is reached, no new turn starts, and the run ends with the best answer, unpresented."""
    cfg, models = team(fake, 2, orchestrator={"max_cost_usd": 0.01})
    for i, m in enumerate(models):
        cfg["agents"][i]["backend"]["model"] = m = f"gpt-4o-{m}"
        fake.default(m, lambda body, i=i: answer(f"answer {i}", prompt_tokens=3000, completion_tokens=100))
    s.orchestrator()
    s.worker()
    return await _done(s, await s.submit(cfg))


async def restart(s: Stack, fake: FakeOpenAI, tmp: Path, args: argparse.Namespace) -> str:
    """Two agents, ``max_orchestration_restarts: 2``: the winner's post-evaluation of attempt 1 restarts
    the run with its reasons (``run.restarted``); attempt 2's answers follow them and its evaluation
    submits (MassGen spec §1.12)."""
    cfg, (ma, mb) = team(fake, 2, orchestrator={"coordination": {"max_orchestration_restarts": 2}})
    fake.default(ma, restarting_script("Paris"))
    fake.default(mb, restarting_script("It is Paris"))
    s.orchestrator()
    s.worker()
    return await _done(s, await s.submit(cfg))


def _tool_round(*calls: tuple, present: tuple = ()) -> Callable[[dict], Reply]:
    """A model that makes ``calls`` (one round), answers with what the tools said, votes for agent1 and
    presents after the ``present`` calls."""

    def handle(body: dict) -> Reply:
        names, messages = tool_names(body), body["messages"]
        done = sum(1 for m in messages if m["role"] == "assistant" and m.get("tool_calls")
                   and any(c["function"]["name"].startswith("mcp__") for c in m["tool_calls"]))
        if "vote" in names:
            return vote("agent1")
        if "new_answer" not in names:
            return Reply(tool_calls=present) if present and not done else Reply(text="FINAL " + " | ".join(
                mcp_results(messages)))
        if calls and not done:
            return Reply(tool_calls=calls)
        return answer("RESULTS: " + " | ".join(mcp_results(messages)))

    return handle


async def planning(s: Stack, fake: FakeOpenAI, tmp: Path, args: argparse.Namespace) -> str:
    """Planning mode (MassGen spec §1.14): agent-a's coordination call of ``send_message`` is held back
    (``PlanningModeBlocked``), agent-b answers without tools; agent-a wins and sends while presenting."""
    cfg, (ma, mb) = team(fake, 2, orchestrator={"coordination": {"enable_planning_mode": True}})
    cfg["agents"][0]["backend"]["mcp_servers"] = [tool_server(tmp)]
    send = ("mcp__t__send_message", {"text": "hello"})
    fake.default(ma, _tool_round(send, present=(send,)))
    fake.default(mb, _tool_round())
    s.orchestrator()
    s.worker()
    s.broker(tmp / "home")
    return await _done(s, await s.submit(cfg))


async def approval(s: Stack, fake: FakeOpenAI, tmp: Path, args: argparse.Namespace) -> str:
    """A tool marked ``ask`` (issue 15 item 3): agent-a's ``send_message`` waits for a person while
    agent-b answers; the person approves (as ``massgen approve`` does), the call runs, agent-a wins."""
    from massgen_cli.run_control import decide_approval, pending_approvals

    cfg, (ma, mb) = team(fake, 2)
    cfg["agents"][0]["backend"]["mcp_servers"] = [tool_server(tmp)]
    cfg["tool_safety"] = {"rules": [{"tool": "t.send_message", "policy": "ask", "rationale": "posts publicly"}]}
    fake.default(ma, _tool_round(("mcp__t__send_message", {"text": "hello"})))
    fake.default(mb, _tool_round())
    s.orchestrator()
    s.worker()
    s.broker(tmp / "home")
    run_id = await s.submit(cfg)
    waiting: list = []

    async def asked() -> bool:
        waiting[:] = pending_approvals(await s.log.read(run_id))
        return bool(waiting)

    await eventually(asked, 60, "the approval request")
    await decide_approval(s.log, waiting[0][0], True, "massgen approve by recorder@golden")
    return await _done(s, run_id)


async def local_model(s: Stack, fake: FakeOpenAI, tmp: Path, args: argparse.Namespace) -> str:
    """The default team (three agents; ``--agents N`` keeps the first N) on a real local model
    (``--model``), the demo's question."""
    cfg = yaml.safe_load(DEFAULT_CONFIG_YAML)
    cfg["agents"] = cfg["agents"][: args.agents]
    if args.model:
        for agent in cfg["agents"]:
            agent["backend"]["model"] = args.model
    s.orchestrator()
    s.worker()
    return await _done(s, await s.submit(cfg, "What is the capital of France? Answer in one word."), 900)


SCENARIOS: dict[str, Scenario] = {
    "mcp-exec": mcp_exec, "crash": crash, "crash-worker": crash_worker, "timeout": timeout, "budget": budget,
    "local-model": local_model, "restart": restart, "planning": planning, "approval": approval,
}


async def _done(s: Stack, run_id: str, timeout_s: float = 60) -> str:
    await s.wait_done(run_id, timeout_s)
    await asyncio.sleep(1)  # let late events of the run (usage, redelivered work) land before the export
    return run_id


def decisions(records: list[Record]) -> str:
    """One line per decision, ``<seq of cause> <cause type> -> <decision type> <fields>``, ids and
    timestamps left out so a re-recording's ``git diff`` shows what the core decided differently."""
    by_id = {r.id: r for r in records}
    lines = []
    for r in records:
        if not r.is_decision:
            continue
        cause = by_id.get(r.causation_id or "")
        event = msgspec.to_builtins(r.event)
        event.pop("type", None)  # the line names it already
        fields = json.dumps(_brief(event), ensure_ascii=False)
        lines.append(f"{cause.type if cause else '?'} -> {r.type} {fields[:300]}")
    return "\n".join(lines) + "\n"


def _digest(value: object) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def _brief(value: object) -> object:
    """Long texts (prompts) shortened: the decision line names what changed, not every word."""
    if isinstance(value, dict):  # prompts, tool schemas and backends by digest: a change shows, briefly
        return {k: _digest(v) if k in ("messages", "tools", "backend") else _brief(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_brief(v) for v in value]
    if isinstance(value, str) and len(value) > 60:
        return value[:57] + "..."
    return value


async def record(name: str, args: argparse.Namespace) -> Path:
    """Run scenario ``name`` on a fresh nats-server and write its bundle and decisions listing here."""
    with tempfile.TemporaryDirectory(prefix=f"golden-{name}-") as tmp_dir:
        tmp = Path(tmp_dir)
        os.environ["MASSGEN_HOME"] = str(tmp / "home")  # the child services' workspaces and logs
        with NatsServer(tmp / "nats") as server, FakeOpenAI() as fake:
            async with Stack(server.url) as s:
                started = time.monotonic()
                run_id = await SCENARIOS[name](s, fake, tmp, args)
                bundle = await export_run(s.nc, run_id)
    path = HERE / f"{name}.tar.gz"
    size = bundles.save(bundle, path)
    (HERE / f"{name}.decisions.txt").write_text(decisions(bundle.records))
    print(f"{name}: run {run_id} {bundle.status}, {len(bundle.records)} events, {len(bundle.objects)} objects, "
          f"{size} bytes, {time.monotonic() - started:.0f} s -> {path.relative_to(HERE.parent.parent)}")
    return path


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"runs to record: {', '.join(SCENARIOS)}")
    parser.add_argument("--all", action="store_true", help="record every run")
    parser.add_argument("--list", action="store_true", help="name the runs and what each is")
    parser.add_argument("--model", help="local-model: the local model to ask (`massgen models`)")
    parser.add_argument("--agents", type=int, default=3, help="local-model: how many of the default team's agents")
    parser.add_argument("--decisions", metavar="FILE", help="print the decisions of a bundle")
    args = parser.parse_args()
    if args.list:
        for name, fn in SCENARIOS.items():
            print(f"{name}: {' '.join((fn.__doc__ or '').split())}")
        return
    if args.decisions:
        print(decisions(bundles.load(args.decisions).records), end="")
        return
    names = list(SCENARIOS) if args.all else args.names
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        parser.error(f"name runs to record ({', '.join(SCENARIOS)}), or --all" +
                     (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    for name in names:
        asyncio.run(record(name, args))


if __name__ == "__main__":
    main()
