"""No secret in the log, the logs or any file under MASSGEN_HOME (issue 13 items 1 and 5): a run through
``massgen submit`` in which a provider echoes its API key in a 401 body and an MCP server returns and
prints its whole environment (the MCP ``env`` secrets included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from test_mcp_broker import script, tool_server

from massgen_es import subjects
from massgen_es.testing.fake_openai import FakeOpenAI, Reply

MASSGEN = str(Path(sys.executable).parent / "massgen")
PROVIDER_KEY = "opaque-provider-key-7f3a9c2e1d"  # no credential shape: only "known value" can catch it
SHAPED_KEY = "sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2"
MCP_SECRET = "mcp-env-secret-0f9e8d7c6b5a"


def _files_with(root: Path, secrets: tuple[str, ...]) -> list[str]:
    """Files under ``root`` holding any of ``secrets``, the secret store's own stream aside."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file() or f"KV_{subjects.SECRETS_BUCKET}" in path.parts:
            continue
        data = path.read_bytes()
        found += [f"{path.relative_to(root)}: {s}" for s in secrets if s.encode() in data]
    return found


def test_no_secret_reaches_an_event_a_log_line_or_a_file_under_massgen_home(tmp_path: Path) -> None:
    home = Path(os.environ["MASSGEN_HOME"])
    server = tool_server(tmp_path)
    server["env"] = {**server["env"], "SERVICE_DSN": MCP_SECRET}
    with FakeOpenAI() as fake:
        fake.default("leaky", lambda body: Reply(
            status=401, error_message=f"Incorrect API key provided: {PROVIDER_KEY}; also tried {SHAPED_KEY}"))
        fake.default("tooler", script((("mcp__t__environ", {}),)))
        cfg = tmp_path / "team.yaml"
        cfg.write_text(yaml.safe_dump({"agents": [
            {"id": "tooler", "backend": {"type": "chatcompletion", "model": "tooler", "base_url": fake.base_url,
                                         "mcp_servers": [server]}},  # agent1, whom the script votes for
            {"id": "leaky", "backend": {"type": "chatcompletion", "model": "leaky", "base_url": fake.base_url,
                                        "api_key_env": "PROVIDER_CRED_A", "max_retries": 0}},
        ]}))
        env = {**os.environ, "PROVIDER_CRED_A": PROVIDER_KEY, "OPENAI_API_KEY": SHAPED_KEY}
        result = subprocess.run([MASSGEN, "submit", "go", "--config", str(cfg), "--json"], capture_output=True,
                                text=True, timeout=240, env=env)
        assert result.returncode == 0, result.stderr
        replay = subprocess.run([MASSGEN, "replay", json.loads(result.stdout)["run_id"], "--json"],
                                capture_output=True, text=True, timeout=120, env=env)
    secrets = (PROVIDER_KEY, SHAPED_KEY, MCP_SECRET)
    events = [json.loads(line) for line in replay.stdout.splitlines()]
    types = {e["type"] for e in events}
    # The run did meet every secret: the 401 was recorded, the tool returned the environment.
    assert {"turn.failed", "agent.dropped", "tool.call_completed"} <= types, types
    assert "SERVICE_DSN=[redacted]" in replay.stdout and "Incorrect API key provided: [redacted]" in replay.stdout
    for text in (result.stdout, result.stderr, replay.stdout, replay.stderr):
        assert not [s for s in secrets if s in text]
    stderr_logs = list((home).rglob("mcp_t_*_stderr.log"))
    assert stderr_logs and "SERVICE_DSN=[redacted]" in stderr_logs[0].read_text()
    assert _files_with(home, secrets) == []
