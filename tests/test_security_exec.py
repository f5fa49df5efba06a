"""Command escapes in local (bubblewrap) and Docker mode (issue 13 items 2 and 5), tried as an attacker
would: a real nats-server, the orchestrator, worker and broker in-process, the executor as its own
process (``massgen serve executor``) holding a planted provider key in its environment, a real Docker
engine, and a scripted model calling ``execute_command``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from test_executor import IMAGE, commands, engine, exec_team  # noqa: F401 - engine: the fixture

from harness import MASSGEN, Stack, of
from massgen_es import scrub
from massgen_es.events import ExecutionCompleted, ExecutionFailed
from massgen_es.testing.fake_openai import FakeOpenAI

SECRET = "sk-test-" + uuid.uuid4().hex
MODES = ["local", "docker"]


def backend(mode: str, **extra) -> dict:
    """Backend keys of ``mode``; Docker mode gets the limits a deployment would set (256 MB, 64 pids)."""
    if mode == "docker":
        return {"command_line_execution_mode": "docker", "command_line_docker_image": IMAGE,
                "command_line_docker_memory_limit": "256m", "command_line_docker_pids_limit": 64, **extra}
    return {"command_line_execution_mode": mode, **extra}


@pytest.fixture
def mode(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("engine")  # a real engine, or the test fails loudly
    return request.param


async def served(fresh_nats, home: Path, cfg: dict, monkeypatch: pytest.MonkeyPatch, **env: str) -> list:
    """Run ``cfg`` with the executor as a child process whose environment holds :data:`SECRET` (as
    ``OPENAI_API_KEY``) plus ``env``; the log's records once the run ended."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        stack.broker(home)
        stack.process("executor")
        run_id = await stack.submit(cfg)
        return await stack.wait_done(run_id, 120)


def nobody_processes() -> int:
    """Processes on the host owned by the local sandbox's uid (65534)."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            count += os.stat(f"/proc/{pid}").st_uid == 65534
        except OSError:
            continue
    return count


@pytest.mark.parametrize("mode", MODES, indirect=True)
async def test_a_command_cannot_write_outside_the_workspace(mode, fresh_nats, fake, massgen_home, monkeypatch):
    name = f"massgen-escape-{uuid.uuid4().hex[:8]}"
    cmd = (f"python3 -c \"open('/var/tmp/{name}', 'w')\" 2>/dev/null && echo wrote-var-tmp; "
           f"python3 -c \"open('/etc/{name}', 'w')\" 2>/dev/null && echo wrote-etc; echo done")
    records = await served(fresh_nats, massgen_home, exec_team(fake, commands(({"command": cmd},)), **backend(mode)),
                           monkeypatch)
    [done] = of(records, ExecutionCompleted)
    assert done.stdout.endswith("done\n"), done
    assert not Path(f"/var/tmp/{name}").exists() and not Path(f"/etc/{name}").exists()
    if mode == "local":  # the sandbox's / is the host's, read-only; a container writes its own layer
        assert done.stdout == "done\n", done


@pytest.mark.parametrize("mode", MODES, indirect=True)
async def test_a_command_cannot_read_etc_shadow(mode, fresh_nats, fake, massgen_home, monkeypatch):
    cmd = "cat /etc/shadow; echo rc=$?"
    records = await served(fresh_nats, massgen_home, exec_team(fake, commands(({"command": cmd},)), **backend(mode)),
                           monkeypatch)
    [done] = of(records, ExecutionCompleted)
    assert "root:" not in done.stdout and "rc=0" not in done.stdout and "rc=" in done.stdout, done


ENVIRON = "cat /proc/$PPID/environ /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; echo end"


@pytest.mark.parametrize("mode", MODES, indirect=True)
async def test_no_process_environ_a_command_can_read_holds_the_executors_key(
    mode, fresh_nats, fake, massgen_home, monkeypatch
):
    records = await served(fresh_nats, massgen_home,
                           exec_team(fake, commands(({"command": ENVIRON},)), **backend(mode)), monkeypatch)
    [done] = of(records, ExecutionCompleted)
    assert "PATH=" in done.stdout  # it did read environments: its own processes'
    assert SECRET not in done.stdout and "OPENAI_API_KEY" not in done.stdout


async def test_local_unisolated_runs_on_the_host_when_opted_in(fresh_nats, fake, massgen_home, monkeypatch, tmp_path):
    """The opt-in keeps the old behaviour: the host's filesystem and the executor's environment (which
    is why the embedded stack's executor holds no secrets, see the last tests)."""
    outside = tmp_path / "outside.txt"
    cmd = f"echo host > {outside} && cat {outside}; {ENVIRON}"
    records = await served(fresh_nats, massgen_home, exec_team(
        fake, commands(({"command": cmd},)), command_line_execution_mode="local_unisolated"), monkeypatch)
    [done] = of(records, ExecutionCompleted)
    assert done.mode == "local_unisolated" and done.stdout.startswith("host\n")
    # It did read the executor's key; the scrubber kept the value out of the log (issue 13 item 1).
    assert outside.read_text() == "host\n" and f"OPENAI_API_KEY={scrub.MARKER}" in done.stdout
    assert SECRET not in done.stdout


def _listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.setblocking(False)
    return s


def _connect(port: int) -> str:
    return (f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 3)\" 2>/dev/null "
            "&& echo connected || echo refused")


@pytest.mark.parametrize("mode", MODES, indirect=True)
async def test_a_command_has_no_network(mode, fresh_nats, fake, massgen_home, monkeypatch):
    with _listener() as listener:
        cmd = _connect(listener.getsockname()[1])
        records = await served(fresh_nats, massgen_home,
                               exec_team(fake, commands(({"command": cmd},)), **backend(mode)), monkeypatch)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing reached the host's listener
    [done] = of(records, ExecutionCompleted)
    assert done.stdout == "refused\n", done


async def test_local_network_is_given_when_configured(fresh_nats, fake, massgen_home, monkeypatch):
    with _listener() as listener:
        cmd = _connect(listener.getsockname()[1])
        records = await served(fresh_nats, massgen_home, exec_team(
            fake, commands(({"command": cmd},)), command_line_local_network=True), monkeypatch)
        conn, _ = listener.accept()
        conn.close()
    [done] = of(records, ExecutionCompleted)
    assert done.stdout == "connected\n", done


# Past the command filters (which refuse fork-bomb text): the program reaches python3 as base64.
FORK_BOMB = "import os\nfor _ in range(100000):\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
MEMORY_HOG = "b = b'x' * (2 << 30)\nprint('allocated', len(b))\n"


def piped(program: str) -> str:
    import base64

    return f"echo {base64.b64encode(program.encode()).decode()} | base64 -d | python3"


@pytest.mark.parametrize("mode", MODES, indirect=True)
async def test_a_fork_bomb_is_contained_and_the_next_command_runs(mode, fresh_nats, fake, massgen_home, monkeypatch):
    before = nobody_processes()
    cfg = exec_team(fake, commands(({"command": piped(FORK_BOMB), "timeout": 4},), ({"command": "echo alive"},)),
                    **backend(mode))
    started = time.monotonic()
    records = await served(fresh_nats, massgen_home, cfg, monkeypatch)
    bomb, after = of(records, ExecutionCompleted)
    assert bomb.timed_out and bomb.duration_s < 15 and time.monotonic() - started < 90
    assert after.stdout == "alive\n"
    assert nobody_processes() <= before  # nothing of the sandbox is left on the host


@pytest.mark.parametrize("mode", MODES, indirect=True)
async def test_a_memory_hog_is_stopped(mode, fresh_nats, fake, massgen_home, monkeypatch):
    records = await served(fresh_nats, massgen_home,
                           exec_team(fake, commands(({"command": piped(MEMORY_HOG)},)), **backend(mode)), monkeypatch)
    [done] = of(records, ExecutionCompleted)
    assert done.exit_code != 0 and "allocated" not in done.stdout, done


async def test_local_sandbox_writes_the_workspace_reads_context_paths_and_drops_root(
    fresh_nats, fake, massgen_home, monkeypatch, tmp_path
):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "data.txt").write_text("shared\n")
    cmd = f"id -u; cat {ctx}/data.txt; (echo no > {ctx}/w.txt) 2>/dev/null || echo ctx-ro; echo ok > made.txt"
    cfg = exec_team(fake, commands(({"command": cmd},)), context_paths=[{"path": str(ctx)}])
    records = await served(fresh_nats, massgen_home, cfg, monkeypatch)
    [done] = of(records, ExecutionCompleted)
    assert done.mode == "local" and done.stdout.split() == ["65534", "shared", "ctx-ro"], done
    assert not (ctx / "w.txt").exists()
    [made] = [o for o in done.objects if o.label == "made.txt"]  # the executor collected the file
    [path] = [p for p in (massgen_home / "runs").rglob("made.txt") if p.parent.parent.name == "workspaces"]
    assert made.size == 3 and path.read_text() == "ok\n"


async def test_local_mode_refuses_naming_the_fix_when_bwrap_cannot_run(fresh_nats, fake, massgen_home, monkeypatch):
    cfg = exec_team(fake, commands(({"command": "echo hi"},)))
    records = await served(fresh_nats, massgen_home, cfg, monkeypatch, MASSGEN_BWRAP="/nonexistent/bwrap")
    [failed] = of(records, ExecutionFailed)
    assert failed.failure.type == "SandboxUnavailable"
    assert "apt-get install bubblewrap" in failed.failure.message
    assert "command_line_execution_mode: local_unisolated" in failed.failure.message
    assert not of(records, ExecutionCompleted)  # never silently unisolated


# ---------------------------------------------------------------- the embedded stack (massgen submit)


def _submit_config(tmp_path: Path, fake: FakeOpenAI, handler) -> Path:
    fake.default("m", handler)
    cfg = tmp_path / "team.yaml"
    cfg.write_text(yaml.safe_dump({"agents": [{"id": "solo", "backend": {
        "type": "chatcompletion", "model": "m", "base_url": fake.base_url, "cwd": "ws",
        "enable_mcp_command_line": True, "command_line_execution_mode": "local_unisolated"}}]}))
    return cfg


def test_the_embedded_executor_holds_no_provider_key(tmp_path, fake):
    """Unisolated, so the command can read its parent's environ: the executor child's holds none of the
    keys ``massgen submit`` was started with."""
    cfg = _submit_config(tmp_path, fake, commands(({"command": "cat /proc/$PPID/environ | tr '\\0' '\\n'"},)))
    home = tmp_path / "home"
    env = {**os.environ, "MASSGEN_HOME": str(home), "OPENAI_API_KEY": SECRET, "MY_SERVICE_TOKEN": SECRET + "t",
           "GROQ_API_KEY": SECRET + "g", "MASSGEN_DB_PASSWORD": SECRET + "p"}
    env.pop("MASSGEN_NATS_URL", None)
    result = subprocess.run([MASSGEN, "submit", "hi", "--config", str(cfg), "--json"], capture_output=True,
                            text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    replay = subprocess.run([MASSGEN, "replay", run_id, "--json"], capture_output=True, text=True, timeout=120, env=env)
    [done] = [json.loads(line) for line in replay.stdout.splitlines() if '"execution.completed"' in line]
    text = json.dumps(done)
    assert "MASSGEN_NATS_URL=nats://127.0.0.1" in text and f"MASSGEN_HOME={home}" in text  # the child's environ
    assert SECRET not in text
    assert (home / "logs" / "executor.log").exists()


def _executor_child(parent: int) -> int | None:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) == parent and b"serve" in argv and b"executor" in argv:
            return int(pid)
    return None


def test_a_crashed_executor_child_ends_submit_at_once(tmp_path, fake):
    def slow(body: dict):
        time.sleep(20)  # the run cannot end before the executor is killed
        return commands(({"command": "true"},))(body)

    cfg = _submit_config(tmp_path, fake, slow)
    env = {**os.environ, "MASSGEN_HOME": str(tmp_path / "home")}
    env.pop("MASSGEN_NATS_URL", None)
    proc = subprocess.Popen([MASSGEN, "submit", "hi", "--config", str(cfg), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while (child := _executor_child(proc.pid)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert child is not None, "submit started no executor child"
        os.kill(child, signal.SIGKILL)
        killed = time.monotonic()
        try:
            _, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # show where submit is stuck: its threads' stacks (SIGUSR1)
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            proc.kill()
            pytest.fail(f"submit did not end after its executor was killed; its stderr:\n{proc.communicate()[1]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - killed
    assert proc.returncode == 2 and took < 15, f"ended {took:.1f} s after the kill, status {proc.returncode}:\n{stderr}"
    assert "service executor crashed" in stderr and "exited with status -9" in stderr


def test_the_executor_childs_environment_keeps_paths_and_drops_credentials() -> None:
    """The allowlist, minus what the scrubber also treats as a credential (one rule, massgen_es.scrub)."""
    from massgen_cli.child_service import clean_env

    env = {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "MASSGEN_HOME": "/h",
           "OPENAI_API_KEY": "k", "GROQ_API_KEY": "k", "MY_SERVICE_TOKEN": "t", "DB_PASSWORD": "p",
           "AWS_SECRET_ACCESS_KEY": "s", "MASSGEN_SECRET_SALT": "s", "MASSGEN_NATS_URL": "nats://u:p@h:4222",
           "UNRELATED": "u"}
    assert clean_env(env) == {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "MASSGEN_HOME": "/h"}
