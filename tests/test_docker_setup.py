"""MassGen's Docker sandbox set-up keys (MassGen spec §4.2; ``massgen_es.docker_setup``):
``command_line_docker_credentials`` (read-only credential mounts, the environment from ``env_file`` and
``env_vars``, kept out of the event log) and ``command_line_docker_packages`` (preinstall lists), on a
real nats-server and a real Docker engine with the project's sandbox image. Nothing here reaches the
network: the sandboxes have none, and the Python package installed is a wheel built by the test."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import msgspec
import pytest
from test_executor import IMAGE, commands, engine, exec_team, run  # noqa: F401 - `engine` is a fixture

from harness import of
from massgen_es.config import parse_config, run_submitted, secrets
from massgen_es.docker_setup import read_env_file
from massgen_es.errors import ConfigError
from massgen_es.events import ExecutionCompleted, RunCompleted, RunSubmitted, SandboxChanged
from massgen_replay.views import RunView

TOKEN = "tok-7c1e9a4b2d8f6e3a5b0c"  # no known credential shape: only the secret path keeps it out of the log


def docker_backend(**keys) -> dict:
    return {"command_line_execution_mode": "docker", "command_line_docker_image": IMAGE, **keys}


def test_env_file_lines_read_as_massgen_reads_them(tmp_path):
    env = tmp_path / ".env"
    env.write_text('# comment\n\nA=1\nexport B="two words"\nC=\'x=y\'\nnot a line\n')
    assert read_env_file(env) == {"A": "1", "B": "two words", "C": "x=y"}


def test_bad_credentials_and_packages_are_config_errors_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def error(**keys) -> str:
        cfg = {"agents": [{"id": "a", "backend": {"type": "chatcompletion", "model": "m", "base_url": "http://x/v1",
                                                  **docker_backend(**keys)}}]}
        with pytest.raises(ConfigError) as exc:
            parse_config(cfg)
        return str(exc.value)

    assert "`agents[0].backend.command_line_docker_credentials.env_file` '.env' cannot be read" in error(
        command_line_docker_credentials={"env_file": ".env"})
    assert "list the ones it needs in `agents[0].backend.command_line_docker_credentials.env_vars`" in error(
        command_line_docker_credentials={"pass_all_env": True})
    assert "preinstall.python[1]` '--index-url' is not a package name" in error(
        command_line_docker_packages={"preinstall": {"python": ["ok", "--index-url"]}})
    assert "unknown key `agents[0].backend.command_line_docker_credentials.mounts`" in error(
        command_line_docker_credentials={"mounts": ["ssh_keys"]})


async def test_credentials_are_mounted_read_only_and_the_env_reaches_the_sandbox_but_never_the_log(
    fresh_nats, fake, massgen_home, engine, tmp_path, monkeypatch  # noqa: F811
):
    home = tmp_path / "home"
    (home / ".config" / "gh").mkdir(parents=True)
    (home / ".gitconfig").write_text("[user]\n\tname = Ada\n")
    (home / ".config" / "gh" / "hosts.yml").write_text("github.com:\n  user: ada\n")
    monkeypatch.setenv("HOME", str(home))  # the submitting user's home; it has no ~/.ssh (skipped)
    monkeypatch.setenv("MY_SETTING", "passed-through")
    env_file = tmp_path / "dev.env"
    env_file.write_text(f"GITHUB_TOKEN={TOKEN}\nNOT_WANTED=left-out\n")
    # Values are printed as digests: every sandbox variable's value is scrubbed from the events.
    probe = ('cat ~/.gitconfig; ls ~/.config/gh; for v in "$GITHUB_TOKEN" "$MY_SETTING"; do printf %s "$v" | '
             'sha256sum | cut -c1-16; done; echo "not=${NOT_WANTED:-unset} mine=$MY_SETTING"; '
             'test -w ~/.gitconfig || echo read-only; ls -d ~/.ssh 2>&1 | grep -c "No such"')
    cfg = exec_team(fake, commands(({"command": probe},)), **docker_backend(command_line_docker_credentials={
        "mount": ["ssh_keys", "git_config", "gh_config"], "env_file": str(env_file),
        "env_vars_from_file": ["GITHUB_TOKEN"], "env_vars": ["MY_SETTING", "UNSET_ONE"]}))
    parsed = parse_config(cfg)
    assert TOKEN in secrets(parsed).values()  # what the submitter puts in the secret store
    _, records = await run(fresh_nats, massgen_home, cfg)
    [done] = of(records, ExecutionCompleted)
    assert done.exit_code == 0 and done.sandbox, done
    digest = [hashlib.sha256(v.encode()).hexdigest()[:16] for v in (TOKEN, "passed-through")]
    assert done.stdout == ("[user]\n\tname = Ada\nhosts.yml\n" + "\n".join(digest)
                           + "\nnot=unset mine=[redacted]\nread-only\n1\n")
    [submitted] = of(records, RunSubmitted)
    ref = submitted.agents[0].backend["resolved_docker_env"]["GITHUB_TOKEN"]
    assert ref.startswith("${secret:") and ref != TOKEN
    log = b"".join(msgspec.json.encode(r.event) for r in records)
    assert TOKEN.encode() not in log and b"passed-through" not in log
    assert of(records, RunCompleted)


def tiny_wheel(folder: Path) -> Path:
    """A pure-Python wheel ``tinypkg 1.0`` (``tinypkg.VALUE``), built by hand so no index is needed."""
    files = {
        "tinypkg/__init__.py": b"VALUE = 'from-the-wheel'\n",
        "tinypkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                       b"Tag: py3-none-any\n",
    }
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for name, data in files.items()) + "tinypkg-1.0.dist-info/RECORD,,\n"
    wheel = folder / "tinypkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in {**files, "tinypkg-1.0.dist-info/RECORD": record.encode()}.items():
            z.writestr(name, data)
    return wheel


async def test_preinstalled_packages_are_there_for_the_first_command_and_a_failed_step_is_recorded(
    fresh_nats, fake, massgen_home, engine, tmp_path  # noqa: F811
):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = tiny_wheel(wheels)
    probe = 'python -c "import tinypkg; print(tinypkg.VALUE)" && command -v pip'
    cfg = exec_team(fake, commands(({"command": probe},)), **docker_backend(
        context_paths=[{"path": str(wheels)}],  # mounted read-only in the sandbox at the same path
        command_line_docker_packages={"preinstall": {"python": [str(wheel)], "system": ["jq"]}}))
    _, records = await run(fresh_nats, massgen_home, cfg)
    [done] = of(records, ExecutionCompleted)
    assert done.stdout == "from-the-wheel\n/home/massgen/.venv/bin/pip\n", done
    [created] = [e for e in of(records, SandboxChanged) if e.state == "created"]
    system, python = created.preinstall.splitlines()  # system packages first, as in MassGen
    assert system.startswith("system: jq: failed (exit ") and "the sandbox has no network" in system
    assert python.startswith(f"python: {wheel}: ok (")
    view = RunView(records[0].run_id)
    for r in records:
        view.apply(r)
    [shown] = [e.text for e in view.timeline if e.kind == "sandbox" and "created" in e.text]
    assert "; preinstall: system: jq: failed (exit " in shown  # what `massgen replay` shows
    assert of(records, RunCompleted)


def test_the_submitted_event_carries_references_and_packages_but_no_values(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".npmrc").write_text("//registry.npmjs.org/:_authToken=x\n")
    monkeypatch.setenv("API_THING", TOKEN)
    cfg = parse_config({"agents": [{"id": "a", "backend": {
        "type": "chatcompletion", "model": "m", "base_url": "http://x/v1", **docker_backend(
            command_line_docker_credentials={"mount": ["npm_config"], "env_vars": ["API_THING"],
                                             "additional_mounts": {str(tmp_path): {"bind": "/data"}}},
            command_line_docker_packages={"preinstall": {"npm": ["typescript"]}})}}]})
    backend = msgspec.json.decode(msgspec.json.encode(run_submitted("q", cfg).agents[0].backend))  # as on the wire
    assert backend["resolved_docker_mounts"] == [
        {"bind": "/home/massgen/.npmrc", "host": str(tmp_path / ".npmrc")},  # ro: the default, left out
        {"bind": "/data", "host": str(tmp_path)}]
    assert backend["command_line_docker_packages"] == {"preinstall": {"npm": ["typescript"]}}
    assert TOKEN not in json.dumps(backend) and backend["resolved_docker_env"]["API_THING"].startswith("${secret:")
