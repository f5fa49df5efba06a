"""MCP broker integration: real nats-server, the services in-process, real MCP servers over stdio (the
SDK-built ``tests/mcp_servers/tool_server.py`` and the npm ``@modelcontextprotocol/server-filesystem``),
and scripted models through the real ``openai`` SDK."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness import Stack, of, team, tool_names, vote
from massgen_es import scrub
from massgen_es.events import (
    McpServerStateChanged,
    RunCompleted,
    RunSubmitted,
    ToolCallCompleted,
    ToolCallFailed,
    ToolsListed,
    WorkspaceSnapshotted,
)
from massgen_es.testing.fake_openai import FakeOpenAI, Reply
from massgen_replay.read import project

TOOL_SERVER = str(Path(__file__).parent / "mcp_servers" / "tool_server.py")


def tool_server(tmp: Path, name: str = "t", **extra) -> dict:
    """Config of the SDK-built test server; it notes its starts and calls in files under ``tmp``."""
    return {
        "name": name,
        "type": "stdio",
        "command": sys.executable,
        "args": [TOOL_SERVER],
        "env": {"TOOL_SERVER_STARTS": str(tmp / "starts"), "TOOL_SERVER_CALLS": str(tmp / "calls")},
        **extra,
    }


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def mcp_results(messages: list[dict]) -> list[str]:
    """Contents of the tool messages that answer MCP calls (not the orchestrator's own tool replies)."""
    ids = {c["id"] for m in messages if m["role"] == "assistant" for c in m.get("tool_calls") or ()
           if c["function"]["name"].startswith("mcp__")}
    return [m["content"] for m in messages if m["role"] == "tool" and m.get("tool_call_id") in ids]


def script(*rounds: tuple, final: str = "FINAL", present: tuple = ()):
    """A model that makes the given tool-call rounds, then answers with every tool result it read,
    votes for agent1 when asked, and presents (after the ``present`` tool calls, if any)."""

    def handle(body: dict) -> Reply:
        tools = tool_names(body)
        messages = body["messages"]
        done = sum(1 for m in messages if m["role"] == "assistant" and any(
            c["function"]["name"].startswith("mcp__") for c in m.get("tool_calls") or ()))
        results = mcp_results(messages)
        if "vote" in tools:
            return vote("agent1")
        if "new_answer" not in tools:  # the final presentation
            if done < len(present):
                return Reply(tool_calls=present[done])
            return Reply(text=f"{final} " + " | ".join(results))
        if done < len(rounds):
            return Reply(tool_calls=rounds[done])
        return Reply(tool_calls=(("new_answer", {"content": "RESULTS: " + " | ".join(results)}),))

    return handle


def mcp_team(fake: FakeOpenAI, n: int, handlers: list, **backend) -> dict:
    cfg, models = team(fake, n)
    for agent, model, handler in zip(cfg["agents"], models, handlers, strict=True):
        agent["backend"].update(backend)
        fake.default(model, handler)
    return cfg


async def run(fresh_nats, home: Path, cfg: dict, timeout_s: float = 60, **submit) -> tuple[str, list]:
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        stack.broker(home)
        run_id = await stack.submit(cfg, **submit)
        return run_id, await stack.wait_done(run_id, timeout_s)


def answers_of(records: list) -> list[str]:
    return [e.final_answer for e in of(records, RunCompleted)] + [
        r.event.tool_calls[0].arguments for r in records if r.type == "turn.responded" and r.event.tool_calls
    ]


# ---------------------------------------------------------------- calls


async def test_tool_result_is_recorded_and_reaches_the_model(fresh_nats, fake, tmp_path, massgen_home):
    cfg = mcp_team(fake, 1, [script((("mcp__t__echo", {"text": "ping"}),))], mcp_servers=[tool_server(tmp_path)])
    run_id, records = await run(fresh_nats, massgen_home, cfg)
    [done] = of(records, ToolCallCompleted)
    assert (done.server, done.tool, done.content, done.is_error) == ("t", "echo", "echo: ping", False)
    assert of(records, RunCompleted)
    assert any("RESULTS: echo: ping" in a for a in answers_of(records))
    [listed] = of(records, ToolsListed)
    assert {t.name for t in listed.tools} >= {"mcp__t__echo", "mcp__t__slow"}


async def test_parallel_tool_calls_run_concurrently(fresh_nats, fake, tmp_path, massgen_home):
    calls = (("mcp__t__slow", {"seconds": 1.0}), ("mcp__t__slow", {"seconds": 1.0}))
    cfg = mcp_team(fake, 1, [script(calls)], mcp_servers=[tool_server(tmp_path)])
    _, records = await run(fresh_nats, massgen_home, cfg)
    done = [r for r in records if isinstance(r.event, ToolCallCompleted)]
    assert len(done) == 2 and all(r.event.duration_s >= 1.0 for r in done)
    # Sequential calls would finish a second apart.
    assert abs(done[0].ts - done[1].ts) < 0.6


async def test_arguments_are_checked_against_the_input_schema(fresh_nats, fake, tmp_path, massgen_home):
    cfg = mcp_team(fake, 1, [script((("mcp__t__echo", {"txt": 1}),))], mcp_servers=[tool_server(tmp_path)])
    _, records = await run(fresh_nats, massgen_home, cfg)
    [failed] = of(records, ToolCallFailed)
    assert failed.failure.type == "ToolArgumentError" and "text" in failed.failure.message
    assert "echo" not in lines(tmp_path / "calls")  # never reached the server
    assert any("Error:" in a for a in answers_of(records)) and of(records, RunCompleted)


async def test_allowed_tools_match_prefixed_names(fresh_nats, fake, tmp_path, massgen_home):
    seen: list[list[str]] = []

    def handler(body: dict) -> Reply:
        seen.append(tool_names(body))
        return script()(body)

    server = tool_server(tmp_path, allowed_tools=["mcp__t__echo", "slow"], exclude_tools=["mcp__t__slow"])
    cfg = mcp_team(fake, 1, [handler], mcp_servers=[server])
    _, records = await run(fresh_nats, massgen_home, cfg)
    assert [t for t in seen[0] if t.startswith("mcp__")] == ["mcp__t__echo"]
    [listed] = of(records, ToolsListed)
    assert [t.name for t in listed.tools] == ["mcp__t__echo"]


async def test_tool_rounds_are_bounded(fresh_nats, fake, tmp_path, massgen_home):
    offered: list[list[str]] = []

    def handler(body: dict) -> Reply:
        tools = tool_names(body)
        offered.append(tools)
        if "vote" not in tools and "new_answer" in tools and "mcp__t__echo" in tools:
            return Reply(tool_calls=(("mcp__t__echo", {"text": "again"}),))  # never stops on its own
        return script()(body)

    cfg = mcp_team(fake, 1, [handler], mcp_servers=[tool_server(tmp_path)], max_tool_rounds=2)
    _, records = await run(fresh_nats, massgen_home, cfg)
    assert len(of(records, ToolCallCompleted)) == 2
    assert "mcp__t__echo" not in offered[2] and "new_answer" in offered[2]
    assert of(records, RunCompleted)


# ---------------------------------------------------------------- failures


async def test_server_that_cannot_start_gives_a_clear_tool_error_and_the_run_goes_on(
    fresh_nats, fake, tmp_path, massgen_home
):
    prompts: list[str] = []

    def handler(body: dict) -> Reply:
        prompts.append(body["messages"][0]["content"])
        return script()(body)

    broken = {"name": "gone", "type": "stdio", "command": sys.executable, "args": [str(tmp_path / "missing.py")]}
    cfg = mcp_team(fake, 1, [handler], mcp_servers=[broken])
    _, records = await run(fresh_nats, massgen_home, cfg)
    [listed] = of(records, ToolsListed)
    assert listed.failure is not None and "gone" in listed.failure.message
    # The cause, not the MCP SDK's task groups around it: the server exited, and what it said on stderr.
    message = listed.failure.message
    assert "MCPError: Connection closed" in message and "missing.py" in message and "TaskGroup" not in message
    assert "The MCP server 'gone' is unavailable" in prompts[0]
    assert of(records, RunCompleted)


async def test_http_server_that_refuses_the_connection_is_named_and_the_run_goes_on(
    fresh_nats, fake, massgen_home
):
    """MassGen's corpus names ``http://localhost:8000/mcp`` servers that are often not running: the agent
    goes on without their tools (as MassGen's does), and the failure names the refused connection."""
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = {"name": "down", "type": "streamable-http", "url": f"http://127.0.0.1:{port}/mcp"}
    cfg = mcp_team(fake, 1, [script()], mcp_servers=[down])
    _, records = await run(fresh_nats, massgen_home, cfg)
    [listed] = of(records, ToolsListed)
    assert listed.failure is not None and listed.failure.type == "ServerUnavailable"
    assert "ConnectError: All connection attempts failed" in listed.failure.message
    assert "TaskGroup" not in listed.failure.message
    assert of(records, RunCompleted)[0].final_answer.startswith("FINAL")


async def test_crashed_server_is_restarted_on_the_next_call(fresh_nats, fake, tmp_path, massgen_home):
    rounds = ((("mcp__t__crash", {}),), (("mcp__t__echo", {"text": "back"}),))
    cfg = mcp_team(fake, 1, [script(*rounds)], mcp_servers=[tool_server(tmp_path, retries=0)])
    _, records = await run(fresh_nats, massgen_home, cfg)
    [failed] = of(records, ToolCallFailed)
    assert failed.tool == "crash" and failed.failure.type == "ServerUnavailable"
    [done] = of(records, ToolCallCompleted)
    assert done.content == "echo: back"
    states = [(e.state, e.reason) for e in of(records, McpServerStateChanged)]
    assert ("crashed", "MCP server 't' exited during the call") in states
    assert ("started", "restarted after the server exited") in states
    assert len(lines(tmp_path / "starts")) == 2


async def test_circuit_breaker_opens_and_refuses_calls(fresh_nats, fake, tmp_path, massgen_home):
    rounds = ((("mcp__t__crash", {}),), (("mcp__t__echo", {"text": "x"}),))
    server = tool_server(tmp_path, retries=0, circuit_breaker={"max_failures": 1, "reset_time_seconds": 600})
    cfg = mcp_team(fake, 1, [script(*rounds)], mcp_servers=[server])
    _, records = await run(fresh_nats, massgen_home, cfg)
    assert [e.failure.type for e in of(records, ToolCallFailed)] == ["ServerUnavailable", "CircuitOpen"]
    assert "open" in [e.state for e in of(records, McpServerStateChanged)]
    assert len(lines(tmp_path / "starts")) == 1 and of(records, RunCompleted)


# ---------------------------------------------------------------- secrets, catalogs, sharing, replay


async def test_secrets_never_reach_the_log(fresh_nats, fake, tmp_path, massgen_home, nc):
    secret = "tok-" + uuid.uuid4().hex
    server = tool_server(tmp_path)
    server["env"]["MY_TOKEN"] = secret
    cfg = mcp_team(fake, 1, [script((("mcp__t__env", {"name": "MY_TOKEN"}),))], mcp_servers=[server])
    run_id, records = await run(fresh_nats, massgen_home, cfg)
    [done] = of(records, ToolCallCompleted)
    assert done.content == scrub.MARKER  # the server did see the value, the log did not
    [submitted] = of(records, RunSubmitted)
    assert "${secret:" in json.dumps(submitted.agents[0].backend["mcp_servers"][0]["env"])
    raw = json.dumps([r.event.__struct_fields__ and str(r.event) for r in records])
    assert secret not in raw


async def test_list_changed_records_a_new_catalog_that_the_model_sees(fresh_nats, fake, tmp_path, massgen_home):
    offered: list[list[str]] = []

    def handler(body: dict) -> Reply:
        offered.append(tool_names(body))
        return script((("mcp__t__grow", {}),), (("mcp__t__extra", {}),))(body)

    cfg = mcp_team(fake, 1, [handler], mcp_servers=[tool_server(tmp_path)])
    _, records = await run(fresh_nats, massgen_home, cfg)
    versions = [(e.version, "mcp__t__extra" in {t.name for t in e.tools}) for e in of(records, ToolsListed)]
    assert versions[0] == (1, False) and (2, True) in versions
    assert "mcp__t__extra" in offered[1]
    assert [e.content for e in of(records, ToolCallCompleted)] == ["grown", "extra"]


async def test_identical_server_config_shares_one_session_across_runs(fresh_nats, fake, tmp_path, massgen_home):
    server = tool_server(tmp_path)
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        stack.broker(massgen_home)
        for _ in range(2):
            cfg = mcp_team(fake, 1, [script((("mcp__t__echo", {"text": "x"}),))], mcp_servers=[server])
            await stack.wait_done(await stack.submit(cfg), 60)
    assert len(lines(tmp_path / "starts")) == 1
    assert lines(tmp_path / "calls") == ["echo", "echo"]


async def test_replay_serves_recorded_results_without_calling_the_server(fresh_nats, fake, tmp_path, massgen_home):
    server = tool_server(tmp_path)
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        stack.broker(massgen_home)
        cfg = mcp_team(fake, 1, [script((("mcp__t__echo", {"text": "once"}),))], mcp_servers=[server])
        first = await stack.submit(cfg)
        await stack.wait_done(first, 60)
        again = await stack.submit(cfg, replay_tools_from=first)
        records = await stack.wait_done(again, 60)
    [done] = of(records, ToolCallCompleted)
    assert (done.content, done.replayed_from) == ("echo: once", first)
    assert lines(tmp_path / "calls") == ["echo"]


# ---------------------------------------------------------------- filesystem


async def test_filesystem_rejects_traversal_and_symlink_escapes(fresh_nats, fake, tmp_path, massgen_home):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "notes.txt").write_text("shared notes")
    (ctx / "escape").symlink_to("/etc")
    rounds = (
        (("mcp__filesystem__write_file", {"path": "result.txt", "content": "42"}),),
        (("mcp__filesystem__read_text_file", {"path": "../../../../../../etc/hostname"}),),
        (("mcp__filesystem__read_text_file", {"path": str(ctx / "escape" / "hostname")}),),
        (("mcp__filesystem__read_text_file", {"path": str(ctx / "notes.txt")}),),
        (("mcp__filesystem__write_file", {"path": str(ctx / "notes.txt"), "content": "overwritten"}),),
    )
    cfg = mcp_team(fake, 1, [script(*rounds)], cwd="ws", context_paths=[{"path": str(ctx), "permission": "write"}])
    run_id, records = await run(fresh_nats, massgen_home, cfg)
    outcomes = [r.event for r in records if isinstance(r.event, ToolCallCompleted | ToolCallFailed)]
    kinds = [e.failure.type if isinstance(e, ToolCallFailed) else "ok" for e in outcomes]
    assert kinds == ["ok", "ToolPermissionError", "ToolPermissionError", "ok", "ToolPermissionError"], outcomes
    denied = [e for e in outcomes if isinstance(e, ToolCallFailed)]  # outcomes 1, 2 and 4, as just asserted
    assert "outside" in denied[0].failure.message and "outside" in denied[1].failure.message
    assert "read-only" in denied[2].failure.message  # write paths open only to the winner's presentation
    workspace = massgen_home / "runs" / run_id / "workspaces" / cfg["agents"][0]["id"]
    assert (workspace / "result.txt").read_text() == "42"
    assert (ctx / "notes.txt").read_text() == "shared notes"


async def test_winner_may_write_context_paths_during_the_presentation(fresh_nats, fake, tmp_path, massgen_home):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    present = ((("mcp__filesystem__write_file", {"path": str(ctx / "final.md"), "content": "the answer"}),),)
    cfg = mcp_team(
        fake, 1, [script(present=present)], cwd="ws", context_paths=[{"path": str(ctx), "permission": "write"}]
    )
    _, records = await run(fresh_nats, massgen_home, cfg)
    assert not of(records, ToolCallFailed)
    assert (ctx / "final.md").read_text() == "the answer"


async def test_answer_snapshot_is_shared_read_only_under_its_anonymous_id(fresh_nats, fake, tmp_path, massgen_home):
    write = ((("mcp__filesystem__write_file", {"path": "plan.md", "content": "step 1"}),),)
    reader_seen: list[str] = []

    def reader(body: dict) -> Reply:
        tools = tool_names(body)
        results = mcp_results(body["messages"])
        sees_agent1 = "<agent1>" in json.dumps(body["messages"])
        if "vote" in tools and not sees_agent1:
            return vote("agent2")  # agent1 has not answered yet; this vote is invalidated when it does
        if "vote" in tools and not results:
            root = next(line.split(": ", 1)[1] for line in body["messages"][0]["content"].splitlines()
                        if line.startswith("Shared reference"))
            shared = root.split("/<agentN>")[0] + "/agent1/plan.md"
            return Reply(tool_calls=(("mcp__filesystem__read_text_file", {"path": shared}),
                                     ("mcp__filesystem__write_file", {"path": shared, "content": "mine"})))
        if "vote" in tools:
            reader_seen.extend(results)
            return vote("agent1")
        return script()(body)

    cfg = mcp_team(fake, 2, [script(*write), reader], cwd="ws")
    cfg["orchestrator"] = {"max_new_answers_per_agent": 1}
    _, records = await run(fresh_nats, massgen_home, cfg, timeout_s=90)
    snaps = of(records, WorkspaceSnapshotted)
    assert [(s.anon_id, s.files) for s in snaps if s.agent_id == cfg["agents"][0]["id"]] == [("agent1", 1)]
    assert reader_seen[0] == "step 1"
    assert reader_seen[1].startswith("Error:") and "read-only" in reader_seen[1]
    assert of(records, RunCompleted)


async def test_calls_wait_no_longer_than_the_servers_timeout(fresh_nats, fake, tmp_path, massgen_home):
    cfg = mcp_team(
        fake,
        1,
        [script((("mcp__t__slow", {"seconds": 30}),))],
        mcp_servers=[tool_server(tmp_path, timeout=1, retries=0)],
    )
    started = time.monotonic()
    _, records = await run(fresh_nats, massgen_home, cfg)
    [failed] = of(records, ToolCallFailed)
    assert failed.failure.type == "ServerUnavailable" and "TimeoutError" in failed.failure.message
    assert time.monotonic() - started < 25


# ---------------------------------------------------------------- streamable HTTP, broker as a process


@pytest.fixture
def everything_http(tmp_path: Path):
    """The npm reference server ``server-everything`` in streamable-HTTP mode on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = Path(sys.prefix) / "mcp/node_modules/.bin/mcp-server-everything"
    log = open(tmp_path / "everything.log", "w")
    proc = subprocess.Popen([str(binary), "streamableHttp"], env={**os.environ, "PORT": str(port)},
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    proc.wait(10)
    log.close()


async def test_streamable_http_server_through_a_broker_process(
    fresh_nats, fake, tmp_path, massgen_home, everything_http
):
    token = "Bearer " + uuid.uuid4().hex
    server = {"name": "web", "type": "streamable-http", "url": everything_http, "headers": {"Authorization": token}}
    cfg = mcp_team(fake, 1, [script((("mcp__web__echo", {"message": "over http"}),))], mcp_servers=[server])
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        stack.process("mcp_broker")  # `massgen serve mcp_broker`, a separate process
        run_id = await stack.submit(cfg)
        records = await stack.wait_done(run_id, 90)
    [done] = of(records, ToolCallCompleted)
    assert "over http" in done.content and not done.is_error
    assert token.split()[1] not in str([r.event for r in records])
    view = project(run_id, records)
    assert any(e.kind == "tool_result" and "web.echo" in e.text for e in view.timeline)
    assert view.usage()["tool_calls"] == 1
