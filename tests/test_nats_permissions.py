"""deploy/nats/nats.conf with the real clients, no Docker: deploy/tests/nats_permissions.py starts
nats-server with that file and every service as its own NATS user, runs a submit that lists and calls
an MCP tool with a secret env value and runs a command, then tries what each user must not do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_each_nats_user_can_do_its_job_and_nothing_more() -> None:
    done = subprocess.run([sys.executable, "deploy/tests/nats_permissions.py"], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "all NATS permission checks passed" in done.stdout
    assert "cli cannot listen to the orchestrator's replies" in done.stdout


def test_inbox_prefix_is_per_nats_user() -> None:
    import pytest

    from massgen_es.errors import ConfigError
    from massgen_es.subjects import inbox_prefix

    assert inbox_prefix("nats://agent-worker:pw@nats:4222") == "_INBOX_agent-worker"
    assert inbox_prefix("tls://cli:pw@127.0.0.1:4222,tls://cli:pw@other:4222") == "_INBOX_cli"
    assert inbox_prefix("nats://127.0.0.1:4222") == "_INBOX"  # no user: the embedded stack
    with pytest.raises(ConfigError):
        inbox_prefix("nats://a.b:pw@nats:4222")  # a dot would split the subject token
