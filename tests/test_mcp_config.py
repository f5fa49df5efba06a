"""The MCP part of config validation: unsafe servers refused with the key path, MassGen's mapping
form, the reserved filesystem name, context paths, and secrets kept out of ``run.submitted``.
(The rules themselves are unit-tested in ``test_mcp_rules.py``.)"""

from __future__ import annotations

import msgspec
import pytest

from massgen_es.config import BackendConfig, McpServerConfig, parse_config, run_submitted, secrets
from massgen_es.errors import ConfigError


def server(**kw) -> McpServerConfig:
    return msgspec.convert({"name": "fs", "command": "npx", **kw}, McpServerConfig)


def backend(**kw) -> BackendConfig:
    return msgspec.convert({"type": "chatcompletion", "model": "m", **kw}, BackendConfig)


def agent_cfg(servers, **backend_kw) -> dict:
    backend = {"type": "chatcompletion", "model": "m", "base_url": "http://127.0.0.1:9/v1", "mcp_servers": servers}
    return {"agents": [{"id": "a", "backend": {**backend, **backend_kw}}]}


# ---------------------------------------------------------------- server validation


@pytest.mark.parametrize(
    ("srv", "fragment"),
    [
        ({"command": "npx; rm -rf /"}, "metacharacter"),
        ({"command": "npx", "args": ["$(id)"]}, "metacharacter"),
        ({"command": "npx", "args": ["a|b"]}, "metacharacter"),
        ({"command": "docker", "args": ["run", "x"]}, "not allowed"),
        ({"command": "../bin/node"}, "`..`"),
        ({"command": "npx", "env": {"LD_PRELOAD": "/x.so"}}, "LD_PRELOAD"),
        ({"command": "npx", "env": {"PATH": "/tmp"}}, "PATH"),
        ({"command": "npx", "cwd": "../up"}, "cwd"),
        ({"type": "streamable-http", "url": "file:///etc/passwd", "command": None}, "https://"),
        ({"type": "streamable-http", "url": "http://10.0.0.5/mcp", "command": None}, "private"),
        ({"type": "streamable-http", "url": "http://127.0.0.1:9/mcp", "command": None,
          "security": {"allow_localhost": False}}, "this machine"),
        ({"command": "npx", "timeout": 0}, "timeout"),
    ],
)
def test_unsafe_server_configs_are_refused_naming_the_key(srv, fragment):
    with pytest.raises(ConfigError, match=r"agents\[0\]\.backend\.mcp_servers\[0\]") as err:
        parse_config(agent_cfg([{"name": "s", **srv}]))
    assert fragment in str(err.value)


def test_safe_server_configs_pass():
    parse_config(agent_cfg([
        {"name": "a", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "${HOME}"]},
        {"name": "b", "command": "/usr/bin/python3.11", "args": ["server.py"], "env": {"LOG": "debug"}},
        {"name": "c", "type": "streamable-http", "url": "http://localhost:8080/mcp"},
        {"name": "d", "command": "docker", "security": {"allowed_executables": ["docker"]}},
        {"name": "e", "command": "npx", "env": {"PATH": "/opt/bin"}, "security": {"level": "moderate"}},
    ]))


def test_mapping_form_of_mcp_servers_is_accepted():
    cfg = parse_config(agent_cfg({"weather": {"type": "stdio", "command": "npx", "args": ["w"]}}))
    assert [s.name for s in cfg.team[0].backend.mcp_servers] == ["weather"]


def test_missing_context_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"context_paths\[0\]\.path"):
        parse_config(agent_cfg([], context_paths=[{"path": str(tmp_path / "nope")}]))


# ---------------------------------------------------------------- secrets


def test_env_and_header_values_become_references_and_go_to_the_secret_store():
    cfg = parse_config(agent_cfg([
        {"name": "s", "command": "npx", "env": {"TOKEN": "abc-secret-1"}},
        {"name": "h", "type": "streamable-http", "url": "https://x.example/mcp",
         "headers": {"Authorization": "Bearer zz9"}},
    ]))
    encoded = msgspec.json.encode(run_submitted("q", cfg)).decode()
    assert "abc-secret-1" not in encoded and "Bearer zz9" not in encoded
    assert sorted(secrets(cfg).values()) == ["Bearer zz9", "abc-secret-1"]
    assert all(f"${{secret:{d}}}" in encoded for d in secrets(cfg))
