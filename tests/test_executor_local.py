"""Executor local mode and command filters (issue #5 items 3 and 4): real ``/bin/sh`` processes with
real rlimits, process groups and signals; the filters against the commands a model might send."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from pathlib import Path

import pytest

from massgen_es.errors import CommandStartError, MassgenError
from massgen_executor.filters import CommandRefused, check_command, validate_patterns
from massgen_executor.local import Limits, run_local

PY = shlex.quote(sys.executable)  # a python3 that does not depend on the host's shims or HOME


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaped yet counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


async def dead_soon(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def read_pid(path: Path, within_s: float = 10.0) -> int:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return int(text)
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} was not written")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    d = tmp_path / "ws"
    d.mkdir()
    return d


async def run(command: str, work: Path, *, timeout_s: float = 30, limits: Limits | None = None, **kw):
    return await run_local(command, work_dir=work, timeout_s=timeout_s, limits=limits or Limits(), **kw)


# ---------------------------------------------------------------- local mode


async def test_output_and_exit_code_are_returned(work: Path) -> None:
    r = await run("echo out; echo err >&2; exit 3", work)
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    assert not r.timed_out and not r.stdout_truncated and not r.stderr_truncated
    assert 0 < r.duration_s < 10


async def test_work_dir_is_the_current_directory(work: Path) -> None:
    r = await run("pwd; echo data > made.txt", work)
    assert r.stdout.decode().strip() == os.path.realpath(work)
    assert (work / "made.txt").read_text() == "data\n"


async def test_stdin_is_dev_null(work: Path) -> None:
    r = await run("cat; echo after", work, timeout_s=10)
    assert not r.timed_out and r.stdout == b"after\n"


async def test_timeout_kills_the_process_group_including_a_backgrounded_grandchild(work: Path) -> None:
    r = await run("sleep 100 & echo $! > pid.txt; echo started; wait", work, timeout_s=1)
    assert r.timed_out and r.exit_code == -9
    assert r.stdout == b"started\n"  # output until the kill is kept
    assert r.duration_s < 10
    pid = int((work / "pid.txt").read_text())
    assert await dead_soon(pid), f"grandchild {pid} survived the timeout"


async def test_background_jobs_do_not_outlive_the_command(work: Path) -> None:
    started = time.monotonic()
    r = await run("sleep 100 & echo $! > pid.txt; echo done", work, timeout_s=30)
    assert not r.timed_out and r.exit_code == 0 and r.stdout == b"done\n"
    assert time.monotonic() - started < 10  # not held open by the sleep's copy of stdout
    assert await dead_soon(int((work / "pid.txt").read_text()))


async def test_output_beyond_the_cap_is_cut_and_flagged(work: Path) -> None:
    r = await run("head -c 3000 /dev/zero; echo short >&2", work, max_output_bytes=1000)
    assert r.stdout == b"\0" * 1000 and r.stdout_truncated
    assert r.stderr == b"short\n" and not r.stderr_truncated


async def test_large_output_is_drained_so_the_child_never_blocks(work: Path) -> None:
    r = await run("head -c 20000000 /dev/zero; echo done >&2", work, timeout_s=30, max_output_bytes=1024)
    assert not r.timed_out and r.exit_code == 0
    assert len(r.stdout) == 1024 and r.stdout_truncated and r.stderr == b"done\n"


async def test_memory_limit_makes_a_big_allocation_fail(work: Path) -> None:
    limits = Limits(memory_bytes=512 << 20)
    small = await run(f'{PY} -c "bytearray(64<<20)"', work, limits=limits)
    assert small.exit_code == 0, small.stderr  # the limit leaves room for ordinary work
    big = await run(f'{PY} -c "bytearray(2<<30)"', work, limits=limits)
    assert big.exit_code != 0 and b"MemoryError" in big.stderr


async def test_file_size_limit_stops_a_big_write(work: Path) -> None:
    r = await run("head -c 5000000 /dev/zero > big.bin", work, limits=Limits(file_size_bytes=1 << 20))
    assert r.exit_code != 0
    assert (work / "big.bin").stat().st_size == 1 << 20


async def test_cpu_time_limit_ends_a_busy_loop(work: Path) -> None:
    r = await run(f'{PY} -c "while True: pass"', work, timeout_s=60, limits=Limits(cpu_seconds=1))
    assert not r.timed_out and r.exit_code != 0
    assert r.duration_s < 20


async def test_all_four_limits_are_set_in_the_child(work: Path) -> None:
    # RLIMIT_NPROC is set but not enforced for root, so read the limits rather than fork-bomb.
    limits = Limits(cpu_seconds=7, memory_bytes=700 << 20, file_size_bytes=3 << 20, processes=99)
    r = await run("cat /proc/self/limits", work, limits=limits)
    rows = {line[:26].strip(): line[26:].split()[:2] for line in r.stdout.decode().splitlines()[1:]}
    assert rows["Max cpu time"] == ["7", "8"]
    assert rows["Max address space"] == [str(700 << 20)] * 2
    assert rows["Max file size"] == [str(3 << 20)] * 2
    assert rows["Max processes"] == ["99", "99"]


async def test_environment_is_minimal_and_hides_host_secrets(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASSGEN_TEST_SECRET", "hunter2-value")
    r = await run("env", work, env={"EXTRA": "yes"})
    env = dict(line.split("=", 1) for line in r.stdout.decode().splitlines() if "=" in line)
    assert "MASSGEN_TEST_SECRET" not in env and b"hunter2-value" not in r.stdout
    assert env["HOME"] == str(work) and env["EXTRA"] == "yes" and env["LANG"] == "C.UTF-8"
    assert env["PATH"] == os.environ["PATH"]
    assert set(env) <= {"PATH", "HOME", "LANG", "EXTRA", "PWD", "SHLVL", "_", "OLDPWD"}


async def test_cancellation_kills_the_child(work: Path) -> None:
    task = asyncio.create_task(run("sleep 100 & echo $! > pid.txt; wait", work, timeout_s=60))
    pid = await read_pid(work / "pid.txt")
    assert alive(pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await dead_soon(pid), f"{pid} survived the cancellation"


async def test_a_missing_work_dir_is_a_start_error(tmp_path: Path) -> None:
    with pytest.raises(CommandStartError):
        await run("true", tmp_path / "missing")


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="cpu_seconds"):
        Limits(cpu_seconds=0)


# ---------------------------------------------------------------- filters

DANGEROUS = [
    "rm -rf /",
    "rm -fr /",
    "rm -r -f /",
    "rm --recursive --force /",
    "rm -rf /*",
    "rm   -rf    /",
    "sudo rm -rf /",
    "rm -Rf //",
    "rm -rf -- /",
    'rm -rf "/"',
    "/bin/rm -rf /",
    "rm -rf ~",
    "rm -rf $HOME/",
    "cd / && rm -rf *",
    "rm -rf / --no-preserve-root",
    "find / -delete",
    ":(){ :|:& };:",
    ":(){:|:&};:",
    "bomb() { bomb | bomb & }; bomb",
    "function f { f|f & }; f",
    "perl -e 'fork while fork'",
    "dd if=/dev/zero of=/dev/sda bs=1M",
    "mkfs.ext4 /dev/sdb1",
    "mkfs -t xfs /dev/nvme0n1p1",
    "echo x > /dev/sda",
    "cat disk.img > /dev/nvme0n1",
    "mv notes.txt /dev/null",
    "shutdown -h now",
    "reboot",
    "halt",
    "poweroff",
    "kill -9 -1",
    # hidden inside other commands
    "bash -c 'rm -rf /'",
    "sh -ec \"rm -rf /\"",
    "echo $(rm -rf /)",
    "echo `rm -rf /`",
    "eval 'rm -rf /'",
    "ls && rm -rf /",
    "ls; rm -rf /",
    "ls | rm -rf /",
    "if true; then rm -rf /; fi",
    "env X=1 nohup timeout 5 rm -rf /",
    "echo 'rm -rf /' | sh",
    "sh <<EOF\nrm -rf /\nEOF",
    "echo $((1<<2))\nrm -rf /",
    "ls # harmless\nrm -rf /",
]


@pytest.mark.parametrize("command", DANGEROUS)
def test_dangerous_patterns_are_refused(command: str, work: Path) -> None:
    with pytest.raises(CommandRefused) as info:
        check_command(command, workspace=work)
    assert info.value.rule == "dangerous"
    assert "never run" in str(info.value)


@pytest.mark.parametrize(
    "command",
    [
        "ls -la",
        "python3 x.py > out.txt",
        "rm -rf build/",
        "echo hi | tee log.txt",
        "cd sub && make",
        "npm test 2>&1 | tail -n 20 > /dev/null",
        "mkdir -p out/a && cd out/a && touch b",
        "find . -name '*.pyc' -delete",
        "chmod +x run.sh && ./run.sh",
        "echo x >> /tmp/notes.log",
        "echo ';' rm -rf /",  # a quoted operator is a word: this only prints
        "grep -rn 'sudo' . | wc -l",
        "cat <<'EOF' > f.py\nprint(\"it's ok; really\")\nEOF",
        "cat /etc/passwd",
        "kill %1",
    ],
)
def test_benign_commands_are_allowed(command: str, work: Path) -> None:
    check_command(command, workspace=work)


@pytest.mark.parametrize(
    "command",
    [
        "echo x > /etc/passwd",
        "cp a /usr/bin/a",
        "touch ../../x",
        "echo x &>/etc/hosts",
        "cat x 2>/var/log/x.log",
        "echo x | tee -a /etc/hosts",
        "mv /etc/hosts hosts.bak",  # removes the source
        "cp -t /usr/local/bin tool",
        "mkdir /opt/x",
        "cd .. && touch escaped",
        "rm -rf ../other",
        "dd if=/dev/zero of=/root/x count=1",
        "echo x > ~/.bashrc",
        "echo x > $TARGET",  # cannot be placed: refused
    ],
)
def test_writes_outside_the_workspace_are_refused(command: str, work: Path) -> None:
    with pytest.raises(CommandRefused) as info:
        check_command(command, workspace=work)
    assert info.value.rule == "outside_workspace"
    assert str(work) in str(info.value)  # the message says where writing is allowed


def test_a_symlink_out_of_the_workspace_does_not_make_a_write_inside(work: Path) -> None:
    (work / "etc").symlink_to("/etc")
    with pytest.raises(CommandRefused, match="outside your workspace"):
        check_command("echo x > etc/hosts", workspace=work)


def test_relative_paths_resolve_from_cwd_and_extra_roots_are_writable(work: Path, tmp_path: Path) -> None:
    (work / "sub").mkdir()
    check_command("touch ../x", workspace=work, cwd=work / "sub")
    with pytest.raises(CommandRefused):
        check_command("touch ../../x", workspace=work, cwd=work / "sub")
    shared = tmp_path / "shared"
    check_command(f"cp out.txt {shared}/out.txt", workspace=work, writable=[shared])
    check_command("cp a /usr/local/bin/a", workspace=work, writable=[Path("/")])


def test_blocked_patterns_refuse_matches_anywhere(work: Path) -> None:
    blocked = [r"\bgit\s+push\b"]
    check_command("git status", workspace=work, blocked=blocked)
    with pytest.raises(CommandRefused) as info:
        check_command("cd repo && git push origin main", workspace=work, blocked=blocked)
    assert info.value.rule == "blocked" and r"\bgit\s+push\b" in str(info.value)


def test_allowed_patterns_must_match_at_the_start(work: Path) -> None:
    allowed = [r"python3? ", r"ls\b"]
    check_command("python3 x.py", workspace=work, allowed=allowed)
    check_command("ls -la", workspace=work, allowed=allowed)
    for command in ("cat x.py", "echo x; ls"):
        with pytest.raises(CommandRefused) as info:
            check_command(command, workspace=work, allowed=allowed)
        assert info.value.rule == "not_allowed" and "python3? " in str(info.value)


@pytest.mark.parametrize("command", ["sudo apt-get install -y jq", "su -c 'id' root", "doas ls",
                                     "chmod 644 /etc/hosts", "chown root /etc/hosts"])
def test_privilege_commands_need_allow_sudo(command: str, work: Path) -> None:
    with pytest.raises(CommandRefused) as info:
        check_command(command, workspace=work)
    assert info.value.rule == "privilege"
    check_command(command, workspace=work, allow_sudo=True)


def test_allow_sudo_does_not_allow_dangerous_commands(work: Path) -> None:
    check_command("chmod -R u+w .", workspace=work)  # inside the workspace: no sudo needed
    with pytest.raises(CommandRefused, match="root filesystem"):
        check_command("sudo rm -rf /", workspace=work, allow_sudo=True)


def test_invalid_regex_is_a_value_error_naming_it(work: Path) -> None:
    with pytest.raises(ValueError, match=r"\(unclosed"):
        check_command("ls", workspace=work, allowed=["(unclosed"])
    with pytest.raises(ValueError, match=r"command_line_blocked_commands\[1\]` '\[bad'"):
        validate_patterns(["ok", "[bad"], "agents[0].backend.command_line_blocked_commands")
    with pytest.raises(ValueError, match="list"):
        validate_patterns("ls", "command_line_allowed_commands")  # type: ignore[arg-type]
    validate_patterns([r"^python\b", "ls"], "command_line_allowed_commands")


def test_unparsable_and_empty_commands_are_refused(work: Path) -> None:
    for command in ("echo 'unbalanced", "   "):
        with pytest.raises(CommandRefused) as info:
            check_command(command, workspace=work)
        assert info.value.rule == "unparsable"


def test_command_refused_is_a_massgen_error() -> None:
    assert issubclass(CommandRefused, MassgenError)
