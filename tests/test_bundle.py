"""Portable bundles (issue 14 item 6): ``massgen export bundle`` on one stack, ``massgen import bundle`` on
another, and every view the same. Real nats-servers (the embedded stack's and ``fresh_nats``), the real
``massgen`` command, scripted models through the real ``openai`` SDK, a real command in the executor.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import tarfile
import time
from pathlib import Path

import pytest
import yaml
from test_cli import massgen
from test_executor import commands

from harness import team
from massgen_es.bus.history import MAX_BATCH, HistoryConflict, write_history
from massgen_es.bus.jetstream import JetStreamEventLog, connect, ensure_streams
from massgen_es.bus.objects import ObjectStore
from massgen_es.config import parse_config
from massgen_es.events import (
    SCHEMA_VERSION,
    AgentSpec,
    ExecutionCompleted,
    Record,
    RunSettings,
    RunSubmitted,
    Source,
    TextDelta,
)
from massgen_es.ops import heartbeat
from massgen_es.testing import eventually
from massgen_es.testing.fake_openai import FakeOpenAI
from massgen_replay import bundle as bundles
from massgen_replay.transfer import import_bundle

CLI = Source(service="cli", instance="t")
WORKER = Source(service="agent_worker", instance="t")


def views(run_id: str, **env: str) -> dict[str, str]:
    """What a user sees of a run: the events, the report, and the core's re-decision."""
    as_json = massgen("replay", run_id, "--json", **env)
    check = massgen("replay", run_id, "--check", **env)
    assert as_json.returncode == 0 and check.returncode == 0, as_json.stderr + check.stderr
    return {"json": as_json.stdout, "report": check.stdout, "check": check.stderr}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, str], Path]:
    """A run on the embedded stack whose agent runs a command that writes a file (an Object Store
    object), exported: (run id, bundle path, the source stack's views, the source MASSGEN_HOME)."""
    tmp = tmp_path_factory.mktemp("export")
    home = tmp / "home"
    with FakeOpenAI() as fake:
        cfg, (model,) = team(fake, 1)
        cfg["agents"][0]["backend"].update({"cwd": "ws", "enable_mcp_command_line": True,
                                            "api_key_env": "BUNDLE_TEST_API_KEY"})
        fake.default(model, commands(({"command": "printf 'made here' > note.txt; echo ran"},)))
        (tmp / "team.yaml").write_text(yaml.safe_dump(cfg))
        env = {"MASSGEN_HOME": str(home), "BUNDLE_TEST_API_KEY": "sk-bundletestsecret0123456789"}
        result = massgen("submit", "Make a note", "--config", str(tmp / "team.yaml"), "--json", **env)
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    path = tmp / "run.tar.gz"
    done = massgen("export", "bundle", run_id, "-o", str(path), **env)
    assert done.returncode == 0, done.stderr
    assert f"run {run_id} (completed)" in done.stderr and "1 objects" in done.stderr.replace("\n", " ")
    return run_id, path, views(run_id, MASSGEN_HOME=str(home)), home


def test_an_exported_run_imported_elsewhere_gives_the_same_events_report_and_check(exported, fresh_nats):
    run_id, path, source_views, _ = exported
    url = {"MASSGEN_NATS_URL": fresh_nats.url}
    imported = massgen("import", "bundle", str(path), **url)
    assert imported.returncode == 0, imported.stderr
    assert "events written" in imported.stderr
    target_views = views(run_id, **url)
    assert target_views == source_views  # seq, ids, timestamps, sources: byte for byte
    assert "decisions reproduced" in target_views["check"] and "final answer" in target_views["report"]

    async def object_there() -> bytes:
        nc = await connect(fresh_nats.url, "pytest")
        try:
            records = await JetStreamEventLog(nc).read(run_id)
            [done] = [r.event for r in records if isinstance(r.event, ExecutionCompleted)]
            [note] = [o for o in done.objects if o.label == "note.txt"]
            return await ObjectStore(nc).get(note)
        finally:
            await nc.close()

    assert asyncio.run(object_there()) == b"made here"


def test_the_bundle_holds_a_manifest_with_hashes_and_a_config_without_secrets(exported):
    run_id, path, source_views, _ = exported
    with tarfile.open(path, "r:gz") as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
        lines = tar.extractfile("events.jsonl").read().decode()
        config = tar.extractfile("config.yaml").read().decode()
    assert names[:3] == ["manifest.json", "events.jsonl", "config.yaml"] and names[3].startswith("objects/")
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["run_id"] == run_id
    assert manifest["status"] == "completed" and manifest["counts"]["objects"] == 1
    assert manifest["counts"]["events"] == len(lines.splitlines()) == len(source_views["json"].splitlines())
    assert lines == source_views["json"]  # the events are `massgen replay --json`'s lines
    assert set(manifest["files"]) == set(names) - {"manifest.json"}
    cfg = yaml.safe_load(config)
    assert cfg["agents"][0]["backend"]["api_key_env"] == "BUNDLE_TEST_API_KEY"  # a name, not the key
    assert "sk-bundletestsecret" not in config and "sk-bundletestsecret" not in lines
    assert parse_config(cfg).team[0].id == "agent-a"  # `massgen submit --config` takes it


def test_run_config_drops_api_keys_and_scrubs_credentials():
    submitted = RunSubmitted(
        question="q",
        agents=(AgentSpec(id="a", backend={"type": "chatcompletion", "model": "m", "api_key": "plain-key-value-1",
                                           "extra": {"api_key": "nested-key-value"}},
                          system_message="use Bearer abcdef123456789 please"),),
        settings=RunSettings(max_cost_usd=0.5),
    )
    text = bundles.run_config(submitted)
    assert "plain-key-value-1" not in text and "nested-key-value" not in text and "api_key" not in text
    assert "abcdef123456789" not in text and "[redacted]" in text
    assert yaml.safe_load(text)["orchestrator"]["max_cost_usd"] == 0.5


def test_importing_the_same_bundle_again_writes_nothing(exported, fresh_nats):
    run_id, path, _, _ = exported
    url = {"MASSGEN_NATS_URL": fresh_nats.url}
    assert massgen("import", "bundle", str(path), **url).returncode == 0
    time.sleep(0.1)
    again = massgen("import", "bundle", str(path), **url)
    assert again.returncode == 0 and "already imported, nothing written" in again.stderr
    assert len(massgen("replay", run_id, "--json", **url).stdout.splitlines()) == \
        bundles.load(path).manifest["counts"]["events"]


def _rewritten(path: Path, out: Path, change) -> Path:
    """``path`` with its members passed through ``change(name, data) -> data``, repacked as is."""
    members: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as tar:
        for info in tar.getmembers():
            members[info.name] = tar.extractfile(info).read()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            data = change(name, data)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out.write_bytes(gzip.compress(buf.getvalue()))
    return out


def _stored(url: str, run_id: str) -> int:
    async def go() -> int:
        nc = await connect(url, "pytest")
        try:
            await ensure_streams(nc.jetstream())
            return len(await JetStreamEventLog(nc).read(run_id))
        finally:
            await nc.close()

    return asyncio.run(go())


def test_a_corrupt_bundle_is_refused_naming_the_member_and_nothing_is_imported(exported, fresh_nats, tmp_path):
    run_id, path, _, _ = exported
    url = {"MASSGEN_NATS_URL": fresh_nats.url}
    flipped = _rewritten(path, tmp_path / "flipped.tar.gz",
                         lambda n, d: d.replace(b'"vote.cast"', b'"vote.cost"', 1) if n == "events.jsonl" else d)
    result = massgen("import", "bundle", str(flipped), **url)
    assert result.returncode == 1
    assert "member events.jsonl does not match its sha256" in result.stderr.replace("\n", " ")
    lost_object = _rewritten(path, tmp_path / "lost.tar.gz",
                             lambda n, d: b"other bytes" if n.startswith("objects/") else d)
    result = massgen("import", "bundle", str(lost_object), **url)
    assert result.returncode == 1 and "does not match its sha256" in result.stderr.replace("\n", " ")
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = massgen("import", "bundle", str(truncated), **url)
    assert result.returncode == 1 and "is not a massgen bundle" in result.stderr.replace("\n", " ")
    assert _stored(fresh_nats.url, run_id) == 0


def test_a_bundle_of_a_newer_schema_is_refused_naming_both_versions(exported, tmp_path):
    _, path, _, _ = exported

    def newer(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        m = json.loads(data)
        m["schema_version"] = SCHEMA_VERSION + 1
        return json.dumps(m).encode()

    with pytest.raises(bundles.BundleError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this "
                                                  f"massgen-es supports \\({SCHEMA_VERSION}\\); upgrade"):
        bundles.load(_rewritten(path, tmp_path / "newer.tar.gz", newer))


def _history(run_id: str, n: int) -> list[Record]:
    submitted = RunSubmitted(question="q", agents=(AgentSpec(id="a", backend={"type": "local"}),),
                             settings=RunSettings())
    out = [Record(seq=1, id=f"{run_id}:submitted", run_id=run_id, ts=1.0, source=CLI, causation_id=None,
                  event=submitted)]
    out += [Record(seq=i + 2, id=f"{run_id}:d{i}", run_id=run_id, ts=2.0 + i, source=WORKER, causation_id=None,
                   event=TextDelta(turn_id="a.1", agent_id="a", attempt=1, seq=i, text=f"t{i} "))
            for i in range(n - 1)]
    return out


async def test_a_taken_run_id_is_refused_and_a_cut_short_history_is_completed(fresh_nats):
    nc = await connect(fresh_nats.url, "pytest")
    try:
        await ensure_streams(nc.jetstream())
        history = _history("long-run", MAX_BATCH + 500)
        first = await write_history(nc, "long-run", history[:MAX_BATCH])  # an import that stopped here
        rest = await write_history(nc, "long-run", history)
        assert (first.written, rest.already, rest.written) == (MAX_BATCH, MAX_BATCH, 500)
        stored = await JetStreamEventLog(nc).read("long-run")
        assert [(r.id, r.ts, r.source) for r in stored] == [(r.id, r.ts, r.source) for r in history]
        other = _history("long-run", 3)[:1] + [_history("other", 3)[1]]
        with pytest.raises(HistoryConflict, match="run long-run already exists in this stack"):
            await write_history(nc, "long-run", other)
        assert len(await JetStreamEventLog(nc).read("long-run")) == len(history)
    finally:
        await nc.close()


async def test_import_is_refused_while_an_orchestrator_runs_there(exported, fresh_nats):
    run_id, path, _, _ = exported
    nc = await connect(fresh_nats.url, "pytest")
    beat = asyncio.create_task(heartbeat(nc, Source(service="orchestrator", instance="live-1")))
    try:
        await ensure_streams(nc.jetstream())
        await eventually(lambda: _has_heartbeat(nc), 10, "the heartbeat")
        with pytest.raises(bundles.BundleError, match=r"an orchestrator runs on this stack \(live-1\)"):
            await import_bundle(nc, bundles.load(path))
        assert await JetStreamEventLog(nc).read(run_id) == []
    finally:
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)
        await nc.close()


async def test_an_orchestrator_appends_nothing_to_a_finished_run_written_into_its_log(fresh_nats):
    """A live orchestrator that sees a finished history arrive (the golden budget stop, whose deadline
    is long past) records nothing after the run's end: no decision, no ``timer.fired``."""
    from massgen_es.bus.jetstream import TurnQueue
    from massgen_orchestrator.service import OrchestratorService

    history = bundles.load(Path(__file__).parent / "histories" / "budget.tar.gz").records
    run_id = history[0].run_id
    nc = await connect(fresh_nats.url, "pytest")
    log = JetStreamEventLog(nc)
    try:
        await ensure_streams(nc.jetstream())
        orchestrator = OrchestratorService(log, TurnQueue(nc))
        task = asyncio.create_task(orchestrator.run())
        await asyncio.wait_for(orchestrator.ready.wait(), 10)
        await write_history(nc, run_id, history)
        await asyncio.sleep(3)  # a deadline already past fires at once; a decision takes milliseconds
        stored = await log.read(run_id)
        assert [r.id for r in stored] == [r.id for r in history]
        assert run_id not in orchestrator.runs
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await nc.close()


async def _has_heartbeat(nc) -> bool:
    from massgen_es.ops import status

    return bool((await status(nc))["services"])



def test_import_into_the_embedded_stack_then_runs_lists_it(exported, tmp_path):
    run_id, path, source_views, _ = exported
    home = {"MASSGEN_HOME": str(tmp_path / "elsewhere")}
    imported = massgen("import", "bundle", str(path), **home)
    assert imported.returncode == 0, imported.stderr
    assert views(run_id, **home) == source_views
    assert run_id in massgen("runs", **home).stdout


def test_an_event_of_a_tag_this_version_does_not_know_survives_the_bundle(tmp_path):
    from massgen_es.bus.history import envelope
    from massgen_es.events import UnknownEvent, decode

    history = _history("future", 2)
    future = UnknownEvent(type="future.thing", data={"type": "future.thing", "x": 1})
    history.append(Record(seq=3, id="future:f", run_id="future", ts=9.0, source=WORKER, causation_id=None,
                          event=future))
    bundles.save(bundles.Bundle(run_id="future", records=history), tmp_path / "f.tar.gz")
    loaded = bundles.load(tmp_path / "f.tar.gz").records
    assert loaded == history
    assert decode(envelope(loaded[-1], "renamed"), 3) == Record(
        seq=3, id="future:f", run_id="renamed", ts=9.0, source=WORKER, causation_id=None, event=future)
