"""Cancel, detach, resume (issue 15 item 6), through the whole stack: the ``massgen`` command as a user
runs it, a real nats-server, the official ``openai`` SDK against the wire-level fake.

What a user meets: Ctrl-C in ``submit`` cancels the run and exits 4; a later stack leaves it cancelled;
``cancel`` works from a second terminal; ``--detach`` returns at once; a run whose stack went away is
``interrupted``, which no other ``submit`` continues, and ``resume`` continues on purpose.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness import massgen_up
from massgen_es.testing.fake_openai import FakeOpenAI, Reply, team_member

MASSGEN = str(Path(sys.executable).parent / "massgen")


def _config(tmp_path: Path, fake: FakeOpenAI, model: str) -> Path:
    cfg = tmp_path / f"{model}.yaml"
    cfg.write_text(yaml.safe_dump({"agents": [
        {"id": "solo", "backend": {"type": "chatcompletion", "model": model, "base_url": fake.base_url}}]}))
    return cfg


class Submit:
    """``massgen submit`` as a child process whose stderr is read as it comes (a full pipe would block
    the live view), with the run id it prints first."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([MASSGEN, "submit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        self.out: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        threading.Thread(target=lambda: self.out.extend(self.proc.stdout or ()), daemon=True).start()
        deadline = time.monotonic() + 60
        while not self.lines and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        assert self.lines and self.lines[0].startswith("run "), self.stderr
        self.run_id = self.lines[0].split()[1]

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout_s: float) -> int:
        """Its exit code; a submit still running after ``timeout_s`` fails the test with its stderr and
        its threads' stacks (SIGUSR1, ``massgen_cli.app``)."""
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            self.kill()
            self._reader.join(10)
            pytest.fail(f"submit still ran {timeout_s:g} s later; its stderr and threads:\n{self.stderr}")
        self._reader.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


class Gate:
    """A fake handler that holds every request until opened (a model thinking for as long as a test
    needs), answering as a one-agent team member once opened."""

    def __init__(self, text: str) -> None:
        self.open = threading.Event()
        self.member = team_member(text, vote_for="agent1")

    def __call__(self, body: dict) -> Reply:
        self.open.wait(120)
        return self.member(body)


def _runs() -> dict[str, str]:
    listed = subprocess.run([MASSGEN, "runs", "--json"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    return {row["run_id"]: row["status"] for row in map(json.loads, listed.stdout.splitlines())}


def _events(run_id: str) -> list[dict]:
    shown = subprocess.run([MASSGEN, "replay", run_id, "--json"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines()]


def _types(run_id: str) -> list[str]:
    return [e["type"] for e in _events(run_id)]


def _thinking(fake: FakeOpenAI, submit: Submit) -> None:
    """Wait until the agent's first LLM call reached the fake (the agent is thinking)."""
    try:
        fake.wait_for_requests("slow", 1, timeout_s=60)
    except TimeoutError:
        submit.proc.send_signal(signal.SIGUSR1)  # its threads' stacks, into its stderr
        time.sleep(2)
        submit.kill()
        pytest.fail(f"the agent never called the model; submit's stderr:\n{submit.stderr}")


@pytest.fixture
def up(massgen_home: Path) -> Iterator[subprocess.Popen]:
    """``massgen up``: a running stack that submits can leave runs to."""
    with massgen_up(massgen_home) as proc:
        yield proc


def test_ctrl_c_cancels_the_run_and_a_later_stack_leaves_it_cancelled(tmp_path, fake, massgen_home):
    gate = Gate("Paris")
    fake.default("slow", gate)
    submit = Submit("Capital of France?", "--config", str(_config(tmp_path, fake, "slow")))
    run_id = submit.run_id
    try:
        _thinking(fake, submit)
        submit.proc.send_signal(signal.SIGINT)
        code, stderr = submit.wait(60), submit.stderr
    finally:
        gate.open.set()
        submit.kill()
    assert code == 4, stderr
    assert f"run {run_id}: cancelled" in stderr
    types = _types(run_id)
    assert types[-1] == "run.cancelled" and "run.cancel_requested" in types
    assert "turn.responded" not in types  # the turn in flight was abandoned, not finished
    cancelled = next(e for e in _events(run_id) if e["type"] == "run.cancelled")
    assert cancelled["event"]["by"].startswith("Ctrl-C in massgen by ")

    # A stack that takes on every unfinished run (massgen up) starts later and runs another question; a
    # turn of the cancelled run still queued (naked as its worker stopped) reaches it: it stays as it was.
    fake.default("quick", team_member("Rome", vote_for="agent1"))
    before = len(fake.requests("slow"))
    with massgen_up(massgen_home):
        done = subprocess.run([MASSGEN, "submit", "Capital of Italy?", "--json", "--config",
                               str(_config(tmp_path, fake, "quick"))], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        time.sleep(2)
    assert _types(run_id) == types
    assert len(fake.requests("slow")) == before
    assert _runs()[run_id] == "cancelled"


def test_cancel_from_a_second_terminal_ends_a_detached_run(tmp_path, fake, up):
    gate = Gate("Paris")
    fake.default("slow", gate)
    try:
        detached = subprocess.run([MASSGEN, "submit", "Capital of France?", "--detach", "--json", "--config",
                                   str(_config(tmp_path, fake, "slow"))], capture_output=True, text=True, timeout=60)
        assert detached.returncode == 0, detached.stderr
        run_id = json.loads(detached.stdout)["run_id"]
        fake.wait_for_requests("slow", 1, timeout_s=60)
        assert _runs()[run_id] == "running"
        cancel = subprocess.run([MASSGEN, "cancel", run_id, "--reason", "wrong question"], capture_output=True,
                                text=True, timeout=60)
        assert cancel.returncode == 0, cancel.stderr
        assert f"run {run_id}: cancelled" in cancel.stderr
    finally:
        gate.open.set()
    [ended] = [e for e in _events(run_id) if e["type"] == "run.cancelled"]
    assert ended["event"]["reason"] == "wrong question" and ended["event"]["by"].startswith("massgen cancel by ")
    assert _runs()[run_id] == "cancelled"
    again = subprocess.run([MASSGEN, "cancel", run_id], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "has already ended (cancelled)" in again.stderr


def test_detach_without_a_running_stack_is_refused_with_the_fix(tmp_path, fake):
    refused = subprocess.run([MASSGEN, "submit", "hi", "--detach", "--config", str(_config(tmp_path, fake, "m"))],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "--detach needs a running stack" in refused.stderr and "massgen up" in refused.stderr
    assert fake.requests() == []


def test_an_interrupted_run_waits_for_resume_and_then_finishes(tmp_path, fake):
    gate = Gate("Paris")
    fake.default("slow", gate)
    submit = Submit("Capital of France?", "--config", str(_config(tmp_path, fake, "slow")))
    run_id = submit.run_id
    try:
        _thinking(fake, submit)
        submit.kill()  # the stack goes away with it: no cancel, the run is interrupted
    finally:
        gate.open.set()
    assert _runs()[run_id] == "interrupted"
    asked = len(fake.requests("slow"))

    # Another submit's stack takes on no other run: the interrupted one is not continued.
    fake.default("quick", team_member("Rome", vote_for="agent1"))
    other = subprocess.run([MASSGEN, "submit", "Capital of Italy?", "--json", "--config",
                            str(_config(tmp_path, fake, "quick"))], capture_output=True, text=True, timeout=120)
    assert other.returncode == 0, other.stderr
    assert len(fake.requests("slow")) == asked and _runs()[run_id] == "interrupted"

    resumed = subprocess.run([MASSGEN, "resume", run_id, "--json"], capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "completed" and "Paris" in summary["final_answer"]
    assert "run.resume_requested" in _types(run_id)
    assert _runs()[run_id] == "completed"
    finished = subprocess.run([MASSGEN, "resume", run_id], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1 and "has already ended (completed)" in finished.stderr


@pytest.mark.parametrize("adopt", [True, False])
async def test_only_an_adopting_orchestrator_takes_on_the_unfinished_runs_it_finds(fresh_nats, adopt):
    """The rule behind ``interrupted``: a stack started for one command (adopt=False) leaves the log's
    unfinished runs alone, unless one has a cancel request to decide or was submitted since the service
    was built (the command's own); compose and ``massgen up`` adopt them all."""
    import asyncio

    from massgen_es.bus import Draft
    from massgen_es.bus.jetstream import JetStreamEventLog, TurnQueue, connect, ensure_streams
    from massgen_es.config import parse_config, run_submitted
    from massgen_es.events import RunCancelRequested, Source
    from massgen_orchestrator.service import OrchestratorService

    nc = await connect(fresh_nats.url, "pytest")
    try:
        await ensure_streams(nc.jetstream())
        log = JetStreamEventLog(nc)
        cli = Source(service="cli", instance="t")
        cfg = parse_config({"agents": [{"id": "solo", "backend": {"type": "chatcompletion", "model": "m",
                                                                  "base_url": "http://127.0.0.1:9/v1"}}]})
        for run_id in ("left", "to-cancel"):
            await log.append(run_id, "cli", [Draft(f"{run_id}:submitted", run_submitted("q", cfg))], origin=cli)
        await log.append("to-cancel", "cli", [Draft("to-cancel:cancel", RunCancelRequested(by="t"))], origin=cli)
        svc = OrchestratorService(log, TurnQueue(nc), adopt=adopt)
        # Submitted while the service starts (its command's own run): its first read holds it already.
        await log.append("fresh", "cli", [Draft("fresh:submitted", run_submitted("q", cfg))], origin=cli)
        task = asyncio.create_task(svc.run())
        await asyncio.wait_for(svc.ready.wait(), 30)
        fresh = [r.type for r in await log.read("fresh", source="orchestrator")]
        left = [r.type for r in await log.read("left", source="orchestrator")]
        cancelled = [r.type for r in await log.read("to-cancel", source="orchestrator")]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await nc.close()
    assert cancelled[-1] == "run.cancelled"  # decided either way: a cancelled run must end
    assert fresh == ["turn.requested"]
    assert (left == ["turn.requested"]) is adopt and (left == []) is not adopt
    assert ("left" in svc.runs) is adopt
