"""The compose stack on three NATS nodes (deploy/cluster.yml; issue 13 item 6): the images the compose
tests build (a rebuild with nothing changed is cached), every stream R3, the same users and permissions
on every node, and runs that complete with a node up and with one node stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_compose import ROOT, _load, scripted_team, submitted

from massgen_es import subjects
from massgen_es.testing import eventually
from massgen_es.testing.compose import ComposeStack

pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def cluster_stack():
    s = ComposeStack(ROOT, workers=1, ack_wait_s=6, cluster=True)
    s.build()  # the same images as tests/test_compose.py: cached when that module built them
    with s:
        yield s


def _health(stack: ComposeStack) -> dict:
    shown = stack.cli("status", "--json", timeout=60)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)["cluster"]


async def test_a_run_through_the_three_node_cluster_and_with_one_node_stopped(
    cluster_stack: ComposeStack, tmp_path: Path
) -> None:
    health = _health(cluster_stack)
    assert health["healthy"] and health["name"] == "massgen" and health["replicas"] == 3
    assert sorted(n["name"] for n in health["nodes"]) == ["nats-1", "nats-2", "nats-3"]
    assert {s["stream"]: s["replicas"] for s in health["streams"]}[subjects.EVENTS_STREAM] == 3
    # node 2 has the single node's users: anonymous is refused, the CLI keeps to its role
    perms = _load("nats_permissions")
    host = f"127.0.0.1:{cluster_stack.nats_ports[1]}"
    assert await perms.refused(f"nats://{host}") is not None
    await perms.negative_checks(f"nats://{host}", {u: cluster_stack.passwords[v] for u, v in perms.USERS.items()})
    assert perms.failures == []

    summary = submitted(cluster_stack, "What is 6 times 7?", "--config", scripted_team(tmp_path, 3, "echo"))
    assert summary["status"] == "completed" and summary["final_answer"] == "FINAL 42", summary

    cluster_stack.compose("stop", "nats-2")
    down = _health(cluster_stack)
    assert not down["healthy"] and [n["name"] for n in down["nodes"] if not n["reachable"]] == ["nats-2"]
    summary = submitted(cluster_stack, "What is 6 times 7?", "--config", scripted_team(tmp_path, 2, "echo"))
    assert summary["status"] == "completed" and summary["final_answer"] == "FINAL 42", summary

    cluster_stack.compose("start", "nats-2")
    await eventually(lambda: _health(cluster_stack)["healthy"], 90, "the cluster to be healthy again")
