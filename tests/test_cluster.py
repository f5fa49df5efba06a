"""Past one NATS server (issue 13 item 6): a real three-node JetStream cluster (three nats-server
processes on free loopback ports), every stream, bucket and work queue R3, and a run that survives the
loss of the event stream's leader with nothing lost and nothing duplicated."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness import MASSGEN, Stack, agent_script, assert_no_duplicates, of, team
from massgen_es import subjects
from massgen_es.bus.cluster import STREAMS
from massgen_es.bus.jetstream import TurnQueue, connect, ensure_streams
from massgen_es.bus.objects import ObjectStore
from massgen_es.bus.secrets import SecretStore
from massgen_es.bus.server import NatsCluster, NatsServer
from massgen_es.events import AnswerPosted, ConsensusReached, PresentationCompleted, RunCompleted, VoteCast
from massgen_es.ops import status
from massgen_es.testing import eventually
from massgen_es.testing.fake_openai import FakeOpenAI


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-server nodes forming one JetStream cluster, on free loopback ports."""
    with NatsCluster(tmp_path / "cluster", size=3) as cluster:
        yield cluster


async def _replicas_of_everything(url: str) -> dict[str, int]:
    """Replica count of every stream, bucket and work-queue consumer, after each is created the way the
    services create them."""
    nc = await connect(url, "pytest")
    try:
        await ensure_streams(nc.jetstream())
        await SecretStore(nc).put_all({"d" * 32: "value"})
        await ObjectStore(nc).put(b"output", "stdout")
        await status(nc)  # creates the heartbeat bucket
        sub = await TurnQueue(nc).consumer(ack_wait_s=30, max_deliver=5)
        js = nc.jetstream()
        found = {name: (await js.stream_info(name)).config.num_replicas or 1 for name in STREAMS}
        consumer = await js.consumer_info(subjects.TURNS_STREAM, subjects.WORKER_CONSUMER)
        # a consumer's replicas default to its stream's: its group is its leader plus the others
        found["consumer"] = 1 + len((consumer.cluster.replicas if consumer.cluster else None) or [])
        await sub.unsubscribe()
        return found
    finally:
        await nc.close()


async def test_every_stream_bucket_and_work_queue_is_r3_on_a_cluster(nats_cluster: NatsCluster) -> None:
    found = await _replicas_of_everything(nats_cluster.url)
    assert found == {name: 3 for name in [*STREAMS, "consumer"]}


async def test_every_stream_bucket_and_work_queue_is_r1_on_one_server(fresh_nats: NatsServer) -> None:
    found = await _replicas_of_everything(fresh_nats.url)
    assert found == {name: 1 for name in [*STREAMS, "consumer"]}


def _slow(handler, delay_s: float):
    """``handler``'s replies, each after ``delay_s``: a run long enough to lose a node in the middle."""
    return lambda body: dataclasses.replace(handler(body), delay_s=delay_s)


async def test_a_run_survives_losing_the_event_streams_leader(
    nats_cluster: NatsCluster, fake: FakeOpenAI
) -> None:
    cfg, models = team(fake, 3, timeout_s=120)
    for i, m in enumerate(models):
        fake.default(m, _slow(agent_script(f"Paris ({i}).", "agent1", final="Paris."), 1.0))
    async with Stack(nats_cluster.url) as s:
        s.orchestrator()
        s.worker()
        health = (await status(s.nc, nats_cluster.url))["cluster"]
        assert health["name"] == "massgen" and health["replicas"] == 3
        assert [n["reachable"] for n in health["nodes"]] == [True, True, True]
        run_id = await s.submit(cfg)

        async def answering() -> bool:
            return bool(of(await s.log.read(run_id), AnswerPosted))

        await eventually(answering, 30, "a first answer")
        leader = (await s.nc.jetstream().stream_info(subjects.EVENTS_STREAM)).cluster.leader
        node = nats_cluster.node(leader)
        assert node.proc is not None
        node.proc.kill()  # SIGKILL: no goodbye to its peers or its clients
        node.proc.wait()

        async def reported_down() -> bool:
            health = (await status(s.nc, nats_cluster.url))["cluster"]
            down = [n for n in health["nodes"] if not n["reachable"]]
            return not health["healthy"] and [n["name"] for n in down] == [leader]

        await eventually(reported_down, 30, f"massgen status to report node {leader} down")
        node.start()

        records = await s.wait_done(run_id, timeout_s=120)

        async def healthy() -> bool:
            return (await status(s.nc, nats_cluster.url))["cluster"]["healthy"]

        await eventually(healthy, 60, "the cluster to be healthy again")
        health = (await status(s.nc, nats_cluster.url))["cluster"]
        events = next(st for st in health["streams"] if st["stream"] == subjects.EVENTS_STREAM)
        assert sorted(p["name"] for p in events["peers"]) == ["n1", "n2", "n3"]
        assert all(p["current"] for p in events["peers"])
    # nothing lost: the whole protocol is in the log
    assert len(of(records, AnswerPosted)) >= 3 and {e.agent_id for e in of(records, AnswerPosted)} == {
        "agent-a", "agent-b", "agent-c"}
    assert {e.voter_id for e in of(records, VoteCast)} == {"agent-a", "agent-b", "agent-c"}
    assert of(records, ConsensusReached) and of(records, PresentationCompleted)
    assert of(records, RunCompleted)[0].final_answer == "Paris."
    # nothing duplicated: unique ids and sequences, one of each decision, and the core reproduces the log
    seqs = [r.seq for r in records]
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)
    assert_no_duplicates(run_id, records)


def test_massgen_up_cluster_3_serves_a_submit_and_status_shows_three_healthy_nodes(
    massgen_home: Path, fake: FakeOpenAI, tmp_path: Path
) -> None:
    fake.default("ma", agent_script("Paris", "agent1", final="FINAL Paris"))
    cfg = tmp_path / "team.yaml"
    cfg.write_text(yaml.safe_dump({"agents": [
        {"id": "alpha", "backend": {"type": "chatcompletion", "model": "ma", "base_url": fake.base_url}}]}))
    up = subprocess.Popen([MASSGEN, "up", "--cluster", "3"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (massgen_home / "stack.json").exists():
            assert up.poll() is None, up.stderr.read().decode() if up.stderr else ""
            assert time.monotonic() < deadline, "massgen up --cluster 3 did not advertise its stack"
            time.sleep(0.1)
        urls = json.loads((massgen_home / "stack.json").read_text())["url"].split(",")
        assert len(urls) == 3
        run = subprocess.run([MASSGEN, "submit", "Capital of France?", "--config", str(cfg), "--json"],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["final_answer"] == "FINAL Paris"
        shown = subprocess.run([MASSGEN, "status", "--json"], capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        health = json.loads(shown.stdout)["cluster"]
        assert health["healthy"] and health["replicas"] == 3
        assert sorted(n["name"] for n in health["nodes"]) == ["n1", "n2", "n3"]
        assert {s["stream"]: s["replicas"] for s in health["streams"]}[subjects.EVENTS_STREAM] == 3
        table = subprocess.run([MASSGEN, "status"], capture_output=True, text=True, timeout=60)
        assert "cluster massgen, R3, healthy" in table.stdout, table.stdout
        assert {p.name for p in (massgen_home / "nats-cluster").iterdir()} == {"n1", "n2", "n3"}
    finally:
        up.terminate()
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
