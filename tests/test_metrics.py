"""Prometheus metrics and the health endpoint (issue 14 item 4): real services on a real nats-server,
the official OpenAI SDK against the wire-level fake, scraped over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness import massgen_up
from massgen_cli.metrics import EventMetrics
from massgen_es import observe
from massgen_es.bus import Draft
from massgen_es.bus.jetstream import JetStreamEventLog, TurnQueue, connect, ensure_streams
from massgen_es.bus.server import NatsServer, free_port
from massgen_es.events import (
    ExecutionCompleted,
    ExecutionFailed,
    Failure,
    Source,
    ToolCallCompleted,
    TurnRequested,
)
from massgen_es.testing import eventually
from massgen_es.testing.fake_openai import FakeOpenAI, team_member

MASSGEN = str(Path(sys.executable).parent / "massgen")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(port: int) -> Samples:
    status, text = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def wait_for_health(port: int, status: int, timeout_s: float = 60, proc: subprocess.Popen | None = None) -> dict:
    deadline, last = time.monotonic() + timeout_s, (0, "")
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process exited ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
        try:
            last = get(f"http://127.0.0.1:{port}/healthz")
        except OSError:  # not listening yet
            last = (0, "")
        if last[0] == status:
            return json.loads(last[1])
        time.sleep(0.2)
    raise AssertionError(f"/healthz on {port} never answered {status}; last: {last}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def up(massgen_home: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    """``massgen up --metrics-port P`` (the embedded stack) until it advertised its stack."""
    port = free_port()
    with massgen_up(massgen_home, "--metrics-port", str(port)) as proc:
        yield proc, port


def test_up_serves_turns_tokens_cost_latency_and_queue_depth_labelled_per_service(
    up: tuple[subprocess.Popen, int], fake: FakeOpenAI, tmp_path: Path
) -> None:
    proc, port = up
    # Priced models (massgen_es.pricing), so the run costs something; different answers, so neither
    # agent's answer is rejected as a duplicate.
    models = {"alpha": "gpt-4o-mini", "beta": "gpt-4o"}
    fake.default("gpt-4o-mini", team_member("Paris"))
    fake.default("gpt-4o", team_member("Paris, France"))
    cfg = tmp_path / "team.yaml"
    cfg.write_text(yaml.safe_dump({"agents": [
        {"id": aid, "backend": {"type": "chatcompletion", "model": model, "base_url": fake.base_url}}
        for aid, model in models.items()]}))
    health = wait_for_health(port, 200, proc=proc)
    assert health["nats"] == "connected"
    assert {"orchestrator", "agent_worker", "mcp_broker", "executor"} <= set(health["services"])
    run = subprocess.run([MASSGEN, "submit", "Capital of France?", "--config", str(cfg), "--json"],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    calls = len(fake.requests())
    m = scrape(port)
    # Each agent answers and votes, the winner presents: every turn ended with a response, on its model.
    for agent, model in models.items():
        worker = {"service": "agent_worker", "agent": agent, "model": model}
        assert value(m, "massgen_turns_total", outcome="responded", **worker) >= 2
        assert value(m, "massgen_llm_tokens_total", token_type="input", **worker) > 0
        assert value(m, "massgen_llm_tokens_total", token_type="output", **worker) > 0
        assert value(m, "massgen_llm_cost_usd_total", **worker) > 0
    assert value(m, "massgen_turns_total", outcome="failed") == 0
    assert value(m, "massgen_llm_request_duration_seconds_count", service="agent_worker") == calls
    assert value(m, "massgen_llm_request_duration_seconds_sum", service="agent_worker") > 0
    assert value(m, "massgen_runs_total", service="orchestrator", outcome="completed") == 1
    assert value(m, "massgen_work_items_total", service="agent_worker", queue="MASSGEN_TURNS") == calls
    assert value(m, "massgen_events_total", service="orchestrator", event="run.completed") == 1
    # The queues the in-process services pull from (the orchestrator pulls from none).
    assert {dict(ls)["queue"] for n, ls in m if n == "massgen_work_queue_pending"} == {"MASSGEN_TURNS", "MASSGEN_TOOLS"}
    assert ("massgen_work_queue_pending", frozenset({("queue", "MASSGEN_TURNS"), ("consumer", "agent_worker")})) in m
    assert value(m, "massgen_work_queue_pending", queue="MASSGEN_TURNS") == 0  # the run is over
    # The executor runs as a child process: its own endpoint, one port up.
    child = wait_for_health(port + 1, 200)
    assert set(child["services"]) == {"executor", "executor-heartbeat"}
    assert ("massgen_work_queue_pending", frozenset({("queue", "MASSGEN_EXEC"), ("consumer", "executor")})) \
        in scrape(port + 1)


def test_healthz_is_200_while_up_and_503_naming_nats_after_the_server_stops(tmp_path: Path) -> None:
    port = free_port()
    with NatsServer(tmp_path / "nats") as server:
        env = {**os.environ, "MASSGEN_NATS_URL": server.url, "MASSGEN_METRICS_PORT": str(port)}
        proc = subprocess.Popen([MASSGEN, "serve", "agent_worker"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            body = wait_for_health(port, 200, proc=proc)
            assert body == {"status": "ok", "nats": "connected",
                            "services": {"agent_worker": "running", "agent_worker-heartbeat": "running"}}
            assert "massgen_turns_total" in get(f"http://127.0.0.1:{port}/metrics")[1]
            server.stop()
            body = wait_for_health(port, 503, timeout_s=30, proc=proc)
            assert body["status"] == "unhealthy"
            assert body["reason"] in ("NATS connection is reconnecting", "NATS connection is closed")
            assert get(f"http://127.0.0.1:{port}/nope")[0] == 404
        finally:
            stop(proc, signal.SIGTERM)


def test_a_metrics_port_in_use_fails_naming_the_port_and_the_option(nats_server: NatsServer) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([MASSGEN, "serve", "executor", "--metrics-port", str(port)],
                                env={**os.environ, "MASSGEN_NATS_URL": nats_server.url},
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"cannot serve metrics on 0.0.0.0:{port}" in result.stderr
    assert "--metrics-port" in result.stderr and "in use" in result.stderr


async def test_appended_tool_and_execution_events_move_their_series_once(nc) -> None:
    metrics = EventMetrics()
    observe.add(metrics)
    try:
        log = JetStreamEventLog(nc)
        run_id = f"metrics-{time.time_ns()}"
        broker, executor = (Source(service=s, instance="t1") for s in ("mcp_broker", "executor"))
        tool = ToolCallCompleted(call_id="c1", turn_id="t", agent_id="alpha", server="fs", tool="read_file",
                                 content="ok", is_error=False, duration_s=0.02)
        ran = ExecutionCompleted(call_id="e1", turn_id="t", agent_id="alpha", mode="local", exit_code=1,
                                 duration_s=0.3, stdout="", stderr="boom")
        broken = ExecutionFailed(call_id="e2", turn_id="t", agent_id="alpha",
                                 failure=Failure(type="SandboxError", message="no image"))
        for _ in range(2):  # the second round repeats the same event ids, as a redelivered item does
            await log.append(run_id, "mcp_broker", [Draft(f"{run_id}:c1", tool)], origin=broker)
            await log.append(run_id, "executor", [Draft(f"{run_id}:e1", ran), Draft(f"{run_id}:e2", broken)],
                             origin=executor)
    finally:
        observe.remove(metrics)
    r = metrics.registry
    assert r.get_sample_value("massgen_tool_call_duration_seconds_count", {
        "service": "mcp_broker", "mcp_server": "fs", "tool": "read_file", "outcome": "ok"}) == 1
    assert r.get_sample_value("massgen_tool_call_duration_seconds_sum", {
        "service": "mcp_broker", "mcp_server": "fs", "tool": "read_file", "outcome": "ok"}) == pytest.approx(0.02)
    assert r.get_sample_value("massgen_execution_duration_seconds_count", {
        "service": "executor", "mode": "local", "outcome": "nonzero_exit"}) == 1
    assert r.get_sample_value("massgen_failures_total", {
        "service": "executor", "event": "execution.failed", "error_type": "SandboxError"}) == 1


async def test_a_redelivered_work_item_counts_as_a_redelivery(fresh_nats: NatsServer) -> None:
    nc = await connect(fresh_nats.url, "pytest")
    await ensure_streams(nc.jetstream())
    metrics = EventMetrics()
    observe.add(metrics)
    queue, deliveries = TurnQueue(nc), []
    try:
        log = JetStreamEventLog(nc)
        turn = TurnRequested(turn_id="t1", agent_id="alpha", attempt=1, kind="coordination", messages=(),
                             tools=(), backend={"type": "chatcompletion", "model": "m1"}, answers_version=0)
        await log.append("redeliver", "orchestrator", [Draft("redeliver:t1", turn)],
                                 origin=Source(service="orchestrator", instance="t"))
        [record] = await log.read("redeliver")
        await queue.push(record)

        async def handle(record, msg) -> None:
            deliveries.append(record.id)
            await (msg.nak() if len(deliveries) == 1 else msg.ack())

        task = asyncio.create_task(queue.serve(handle, concurrency=1, ack_wait_s=5, max_deliver=3))
        await eventually(lambda: len(deliveries) == 2, 20, "the nak'd item delivered again")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        observe.remove(metrics)
        await nc.close()
    labels = {"service": "agent_worker", "queue": "MASSGEN_TURNS"}
    assert metrics.registry.get_sample_value("massgen_work_items_total", labels) == 2
    assert metrics.registry.get_sample_value("massgen_work_item_redeliveries_total", labels) == 1


def test_the_grafana_dashboard_shows_every_series_and_only_series_the_services_serve() -> None:
    dashboard = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "massgen-dashboard.json"
    text = dashboard.read_text()
    board = json.loads(text)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    families = list(EventMetrics().registry.collect())
    served = {f.name + s for f in families for s in suffixes[f.type]}
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p.get("targets", ()))
    assert set(re.findall(r"\bmassgen_[a-z_]+", exprs)) <= served
    assert not [f.name for f in families if f.name not in text]  # every family has a panel (or the variable)
    assert board["templating"]["list"][0] == {**board["templating"]["list"][0], "type": "datasource",
                                              "query": "prometheus"}
    assert all(p["datasource"]["uid"] == "${datasource}" for p in board["panels"] if p["type"] != "row")
