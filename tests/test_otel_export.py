"""``massgen export otel`` against a real OTLP backend: Arize Phoenix, installed by ``scripts/phoenix.sh``
(``make test`` runs it) and started here on free loopback ports; the runs are real runs of the ``massgen``
command on the embedded stack, its agents on the wire-level OpenAI fake. Spans are read back through
Phoenix's REST API (``GET /v1/projects/<name>/spans``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from massgen_cli.otel_export import trace_id_of
from massgen_es.testing.fake_openai import FakeOpenAI, Reply, team_member

MASSGEN = str(Path(sys.executable).parent / "massgen")
PHOENIX = Path(sys.prefix) / "phoenix" / "bin" / "phoenix"
EXEC = "mcp__command_line__execute_command"


def massgen(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "MASSGEN_HOME": str(home)}
    env.pop("MASSGEN_NATS_URL", None)
    return subprocess.run([MASSGEN, *args], capture_output=True, text=True, timeout=timeout, env=env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Phoenix server on free loopback ports, offline; its base URL (OTLP/HTTP at ``/v1/traces``)."""
    if not PHOENIX.exists():
        pytest.fail(f"Arize Phoenix is not installed at {PHOENIX}: run `bash scripts/phoenix.sh` (`make test` does)")
    work = tmp_path_factory.mktemp("phoenix")
    port = _free_port()
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(work), "PHOENIX_PORT": str(port),
           "PHOENIX_GRPC_PORT": str(_free_port()), "PHOENIX_HOST": "127.0.0.1",
           "PHOENIX_TELEMETRY_ENABLED": "false", "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false"}
    log = (work / "phoenix.log").open("w")
    proc = subprocess.Popen([str(PHOENIX), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # ~15 s on a quiet machine; minutes on a loaded 2-core one
        while _get(f"{base}/healthz")[0] != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (work / "phoenix.log").read_text()[-2000:]
                pytest.fail(f"phoenix serve did not become healthy on {base} (exit {proc.poll()}):\n{tail}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def spans(base: str, project: str, want: int, timeout_s: float = 30) -> list[dict]:
    """The project's spans, once Phoenix has ingested at least ``want`` (it ingests asynchronously)."""
    deadline, got = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        got, cursor = [], None
        while True:
            page_url = f"{base}/v1/projects/{project}/spans?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            status, body = _get(page_url)
            if status != 200:
                break
            page = json.loads(body)
            got += page["data"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        if len(got) >= want:
            return got
        time.sleep(0.5)
    raise AssertionError(f"Phoenix holds {len(got)} spans of project {project}, expected {want}")


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _tools_then_answer(body: dict) -> Reply:
    """alpha: one round of a failing command and an MCP tool call, then its answer, a vote, the final."""
    tools = [t["function"]["name"] for t in body.get("tools", [])]
    if "vote" in tools:
        return Reply(tool_calls=(("vote", {"agent_id": "agent1", "reason": "checked"}),))
    if "new_answer" not in tools:
        return Reply(text="FINAL 4")
    if not any(m["role"] == "tool" for m in body["messages"]):
        listing = next(t for t in tools if t.endswith("list_allowed_directories"))
        return Reply(tool_calls=((EXEC, {"command": "echo four; exit 3"}), (listing, {})))
    return Reply(tool_calls=(("new_answer", {"content": "4"}),))


def _fails_once(handler):
    """``handler``, after one 400 (a turn attempt that fails: the orchestrator asks again)."""
    calls = []

    def handle(body: dict) -> Reply:
        calls.append(1)
        return Reply(status=400, error_message="scripted bad request") if len(calls) == 1 else handler(body)

    return handle


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[dict]]:
    """A completed run on the embedded stack: (MASSGEN_HOME, ``submit --json`` summary, its events)."""
    home = tmp_path_factory.mktemp("otel-home")
    with FakeOpenAI() as fake:
        fake.default("mx", _tools_then_answer)
        fake.default("my", _fails_once(team_member("four")))
        cfg = home / "team.yaml"
        cfg.write_text(yaml.safe_dump({"agents": [
            {"id": "alpha", "backend": {"type": "chatcompletion", "model": "mx", "base_url": fake.base_url,
                                        "cwd": "ws", "enable_mcp_command_line": True}},
            {"id": "beta", "backend": {"type": "chatcompletion", "model": "my", "base_url": fake.base_url}},
        ]}))
        result = massgen("submit", "What is 2+2?", "--config", str(cfg), "--json", home=home)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    replayed = massgen("replay", summary["run_id"], "--json", home=home).stdout
    events = [json.loads(line) for line in replayed.splitlines()]
    return home, summary, events


def test_export_sends_the_run_as_genai_spans_timed_by_its_events(phoenix, finished_run):
    home, summary, events = finished_run
    run_id, project = summary["run_id"], f"t-{uuid.uuid4().hex[:8]}"
    exported_at = time.time()
    result = massgen("export", "otel", run_id, "--endpoint", phoenix, "--project", project, home=home)
    assert result.returncode == 0, result.stderr
    n = int(result.stdout.split(" spans")[0].rsplit(" ", 1)[1])
    got = spans(phoenix, project, n)
    assert len(got) == n
    by_id = {s["context"]["span_id"]: s for s in got}
    assert {s["context"]["trace_id"] for s in got} == {trace_id_of(run_id)}  # derived from the run id

    # The run is the root, timed by run.submitted and run.completed, not by the export.
    [root] = [s for s in got if s["parent_id"] is None]
    assert root["name"] == f"invoke_workflow {run_id}"
    a = root["attributes"]
    assert (a["gen_ai.operation.name"], a["gen_ai.conversation.id"]) == ("invoke_workflow", run_id)
    assert (a["massgen.run.question"], a["massgen.run.status"], a["massgen.run.winner"]) == \
        ("What is 2+2?", "completed", "alpha")
    assert abs(_unix(root["start_time"]) - events[0]["ts"]) < 1e-3
    assert events[-1]["type"] == "run.completed" and abs(_unix(root["end_time"]) - events[-1]["ts"]) < 1e-3
    assert _unix(root["end_time"]) < exported_at
    assert "massgen.consensus" in [e["name"] for e in root["events"]]
    for s in got:
        assert _unix(root["start_time"]) - 1e-3 <= _unix(s["start_time"]) <= _unix(s["end_time"]) \
            <= _unix(root["end_time"]) + 1e-3, s["name"]

    # One invoke_agent span per turn attempt under the run; the answers and votes are their events.
    agents = [s for s in got if s["name"].startswith("invoke_agent ")]
    assert agents and all(s["parent_id"] == root["context"]["span_id"] for s in agents)
    assert all(s["name"] == f"invoke_agent {s['attributes']['gen_ai.agent.id']}" for s in agents)
    votes = {e["attributes"]["gen_ai.agent.id"]: e["attributes"]["massgen.vote.target_id"]
             for s in agents for e in s["events"] if e["name"] == "massgen.vote"}
    assert votes == {v["voter"]: v["target"] for v in summary["votes"]}
    answers = [e["attributes"]["massgen.answer.content"] for s in agents for e in s["events"]
               if e["name"] == "massgen.answer"]
    assert sorted(answers) == ["4", "four"]
    [failed] = [s for s in agents if s["status_code"] == "ERROR"]  # beta's first attempt: the 400
    assert failed["attributes"]["gen_ai.agent.id"] == "beta" and failed["attributes"]["massgen.turn.attempt"] == 1
    assert failed["attributes"]["error.type"] == "ProviderBadRequest"
    assert "scripted bad request" in failed["status_message"]

    # One chat span per LLM call, under its agent's turn, with the model, provider, tokens, finish reason.
    chats = [s for s in got if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert len(chats) == summary["usage"]["llm_calls"]
    for s in chats:
        c, parent = s["attributes"], by_id[s["parent_id"]]
        model = {"alpha": "mx", "beta": "my"}[c["gen_ai.agent.id"]]
        assert s["name"] == f"chat {model}" and c["gen_ai.request.model"] == model
        assert parent["attributes"]["gen_ai.agent.id"] == c["gen_ai.agent.id"]
        assert c["gen_ai.provider.name"] == c["gen_ai.system"] == "chatcompletion"
    assert sum(s["attributes"]["gen_ai.usage.input_tokens"] for s in chats) == summary["usage"]["input_tokens"]
    assert sum(s["attributes"]["gen_ai.usage.output_tokens"] for s in chats) == summary["usage"]["output_tokens"]
    reasons = [r for s in chats for r in s["attributes"].get("gen_ai.response.finish_reasons", [])]
    assert "tool_calls" in reasons and "stop" in reasons

    # execute_tool spans for the command (failed: exit 3) and the MCP call (fine), under alpha's turn.
    tools = {s["attributes"]["gen_ai.tool.name"]: s for s in got if s["name"].startswith("execute_tool ")}
    assert set(tools) == {"execute_command", "list_allowed_directories"}
    command, listing = tools["execute_command"], tools["list_allowed_directories"]
    assert command["status_code"] == "ERROR" and "exit code 3" in command["status_message"]
    assert listing["status_code"] == "OK" and listing["attributes"]["massgen.mcp.server"] == "filesystem"
    for s in (command, listing):
        assert s["attributes"]["gen_ai.operation.name"] == "execute_tool" and s["attributes"]["gen_ai.tool.call.id"]
        assert by_id[s["parent_id"]]["attributes"]["gen_ai.agent.id"] == "alpha"

    # The ids are deterministic: exporting again sends the same spans, which Phoenix keeps once.
    assert massgen("export", "otel", run_id, "--endpoint", phoenix, "--project", project, home=home).returncode == 0
    time.sleep(2)
    assert len(spans(phoenix, project, n)) == n


def test_export_to_an_endpoint_that_is_down_fails_naming_it(finished_run):
    home, summary, _ = finished_run
    port = _free_port()  # nothing listens there
    result = massgen("export", "otel", summary["run_id"], "--endpoint", f"http://127.0.0.1:{port}", "--timeout", "2",
                     home=home)
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert f"could not export traces to http://127.0.0.1:{port}/v1/traces" in message
    assert "Connection refused" in message and "--endpoint" in message


def test_follow_without_a_running_stack_refuses_naming_massgen_up(tmp_path):
    result = massgen("export", "otel", "--follow", "--endpoint", "http://127.0.0.1:9", home=tmp_path)
    assert result.returncode == 1
    assert "--follow needs a running stack" in result.stderr and "massgen up" in result.stderr


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout_s: float = 90) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before printing {text!r}:\n{content}")
        time.sleep(0.3)
    raise AssertionError(f"no {text!r} within {timeout_s} s:\n{path.read_text() if path.exists() else ''}")


def test_follow_exports_a_run_that_ends_after_it_started_and_a_restarted_follower_skips_it(phoenix, tmp_path):
    home, project = tmp_path / "home", f"f-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "MASSGEN_HOME": str(home)}
    env.pop("MASSGEN_NATS_URL", None)
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"{name}.log"
        with log.open("w") as f:
            procs.append(subprocess.Popen([MASSGEN, *args], env=env, stdout=f, stderr=subprocess.STDOUT))
        return procs[-1], log

    def stop(proc: subprocess.Popen) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(30)

    follow = ("export", "otel", "--follow", "--endpoint", phoenix, "--project", project)
    try:
        up, up_log = start("up", "up")
        _wait_for(up_log, "Ctrl-C to stop", up)
        follower, follower_log = start("follower", *follow)
        _wait_for(follower_log, "following runs", follower)
        with FakeOpenAI() as fake:
            fake.default("ma", team_member("Paris"))
            fake.default("mb", team_member("Paris, France"))
            cfg = tmp_path / "team.yaml"
            cfg.write_text(yaml.safe_dump({"agents": [
                {"id": aid, "backend": {"type": "chatcompletion", "model": m, "base_url": fake.base_url}}
                for aid, m in (("alpha", "ma"), ("beta", "mb"))]}))
            result = massgen("submit", "Capital of France?", "--config", str(cfg), "--json", home=home)
        assert result.returncode == 0, result.stderr
        run_id = json.loads(result.stdout)["run_id"]
        _wait_for(follower_log, f"exported run {run_id}", follower)
        roots = [s for s in spans(phoenix, project, 1) if s["parent_id"] is None]
        assert [s["name"] for s in roots] == [f"invoke_workflow {run_id}"]
        assert roots[0]["attributes"]["massgen.run.status"] == "completed"
        assert stop(follower) == 0 and "stopped following" in follower_log.read_text()
        assert "Traceback" not in follower_log.read_text()

        again, again_log = start("again", *follow)  # restarted: the run is marked as exported
        _wait_for(again_log, f"skip {run_id}: already exported", again)
        assert stop(again) == 0
        assert f"exported run {run_id}" not in again_log.read_text()
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # Ctrl-C: `massgen up` then removes its stack.json
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
