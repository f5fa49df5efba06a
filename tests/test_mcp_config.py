"""MCP rules of ``massgen.mcp`` and the MCP part of config validation: naming, filters, server
security, substitution, redaction, argument validation, filesystem roots."""

from __future__ import annotations

import os

import msgspec
import pytest

from massgen import mcp
from massgen.config import BackendConfig, McpServerConfig, parse_config, run_submitted, secrets
from massgen.errors import ConfigError


def server(**kw) -> McpServerConfig:
    return msgspec.convert({"name": "fs", "command": "npx", **kw}, McpServerConfig)


def backend(**kw) -> BackendConfig:
    return msgspec.convert({"type": "chatcompletion", "model": "m", **kw}, BackendConfig)


def agent_cfg(servers, **backend_kw) -> dict:
    return {"agents": [{"id": "a", "backend": {"type": "chatcompletion", "model": "m", "mcp_servers": servers,
                                                **backend_kw}}]}


# ---------------------------------------------------------------- naming and filters


def test_tool_names_are_prefixed_with_server_and_split_back():
    assert mcp.tool_name("fs", "read_file") == "mcp__fs__read_file"
    assert mcp.split_tool_name("mcp__fs__read_file") == ("fs", "read_file")
    assert mcp.split_tool_name("mcp__my-srv__do__it") == ("my-srv", "do__it")
    assert mcp.split_tool_name("vote") is None


@pytest.mark.parametrize("entry", ["read_file", "mcp__fs__read_file"])
def test_allowed_tools_match_bare_and_prefixed_names(entry):
    # MassGen compares bare names only, so its documented prefixed entries silently never match.
    assert mcp.tool_allowed(server(allowed_tools=[entry]), backend(), "read_file")
    assert not mcp.tool_allowed(server(allowed_tools=[entry]), backend(), "write_file")
    assert mcp.tool_allowed(server(), backend(allowed_tools=[entry]), "read_file")


@pytest.mark.parametrize("entry", ["write_file", "mcp__fs__write_file"])
def test_exclude_tools_match_bare_and_prefixed_names_at_both_levels(entry):
    assert not mcp.tool_allowed(server(exclude_tools=[entry]), backend(), "write_file")
    assert not mcp.tool_allowed(server(), backend(exclude_tools=[entry]), "write_file")
    assert mcp.tool_allowed(server(exclude_tools=[entry]), backend(), "read_file")


def test_prefixed_entry_for_another_server_does_not_match():
    assert not mcp.tool_allowed(server(), backend(allowed_tools=["mcp__other__read_file"]), "read_file")


# ---------------------------------------------------------------- server validation


@pytest.mark.parametrize(
    ("srv", "fragment"),
    [
        ({"command": "npx; rm -rf /"}, "metacharacters"),
        ({"command": "npx", "args": ["$(id)"]}, "metacharacters"),
        ({"command": "npx", "args": ["a|b"]}, "metacharacters"),
        ({"command": "docker", "args": ["run", "x"]}, "not allowed"),
        ({"command": "../bin/node"}, "`..`"),
        ({"command": "npx", "env": {"LD_PRELOAD": "/x.so"}}, "LD_PRELOAD"),
        ({"command": "npx", "env": {"PATH": "/tmp"}}, "PATH"),
        ({"command": "npx", "cwd": "../up"}, "cwd"),
        ({"type": "streamable-http", "url": "file:///etc/passwd", "command": None}, "http(s)"),
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


def test_cwd_reserves_the_filesystem_server_name():
    with pytest.raises(ConfigError, match="filesystem"):
        parse_config(agent_cfg([{"name": "filesystem", "command": "npx"}], cwd="ws"))


def test_missing_context_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"context_paths\[0\]\.path"):
        parse_config(agent_cfg([], context_paths=[{"path": str(tmp_path / "nope")}]))


# ---------------------------------------------------------------- secrets


def test_env_and_header_values_become_references_and_go_to_the_secret_store():
    cfg = parse_config(agent_cfg([
        {"name": "s", "command": "npx", "env": {"TOKEN": "abc-secret-1"}},
        {"name": "h", "type": "streamable-http", "url": "https://x.example/mcp", "headers": {"Authorization": "Bearer zz9"}},
    ]))
    encoded = msgspec.json.encode(run_submitted("q", cfg)).decode()
    assert "abc-secret-1" not in encoded and "Bearer zz9" not in encoded
    assert sorted(secrets(cfg).values()) == ["Bearer zz9", "abc-secret-1"]
    assert all(f"${{secret:{d}}}" in encoded for d in secrets(cfg))


def test_substitution_uses_the_environment_and_names_a_missing_variable():
    assert mcp.substitute("Bearer ${T}", {"T": "x"}) == "Bearer x"
    with pytest.raises(ConfigError, match="MISSING_VAR"):
        mcp.substitute("${MISSING_VAR}", {})


def test_redactor_scrubs_nested_values():
    red = mcp.Redactor(["s3cret", "ab"])
    assert red.scrub_obj({"a": ["x s3cret y", ("s3cret",)], "b": 1, "c": "ab"}) == {
        "a": ["x *** y", ("***",)], "b": 1, "c": "ab"}


# ---------------------------------------------------------------- arguments

SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [("{}", "'path' is a required property"), ('{"path": 3}', "is not of type 'string'"),
     ("[1]", "JSON object"), ("{bad", "not valid JSON")],
)
def test_tool_arguments_are_validated_against_the_input_schema(raw, fragment):
    with pytest.raises(mcp.ToolArgumentError, match=fragment):
        mcp.check_arguments(raw, SCHEMA)


def test_valid_tool_arguments_are_returned_as_a_dict():
    assert mcp.check_arguments('{"path": "a.txt"}', SCHEMA) == {"path": "a.txt"}


# ---------------------------------------------------------------- filesystem roots


@pytest.fixture
def roots(tmp_path):
    ws, shared, outside = tmp_path / "ws", tmp_path / "shared", tmp_path / "outside"
    for d in (ws, shared, outside):
        d.mkdir()
    (outside / "secret.txt").write_text("x")
    (ws / "link").symlink_to(outside)
    return [mcp.Root(ws.resolve(), True), mcp.Root(shared.resolve(), False)], ws, shared, outside


def test_paths_inside_the_workspace_resolve(roots):
    rs, ws, _, _ = roots
    assert mcp.resolve_in_roots("new/file.txt", rs, write=True) == ws.resolve() / "new/file.txt"


@pytest.mark.parametrize("raw", ["../outside/secret.txt", "link/secret.txt", "missing/../../outside/x", "~/x", "/etc/passwd"])
def test_traversal_symlink_escapes_and_home_are_refused(roots, raw):
    rs, *_ = roots
    with pytest.raises(mcp.ToolPermissionError):
        mcp.resolve_in_roots(raw, rs, write=False)


def test_read_only_root_refuses_writes_but_allows_reads(roots):
    rs, _, shared, _ = roots
    mcp.resolve_in_roots(str(shared / "a.txt"), rs, write=False)
    with pytest.raises(mcp.ToolPermissionError, match="read-only"):
        mcp.resolve_in_roots(str(shared / "a.txt"), rs, write=True)


def test_path_arguments_of_filesystem_tools():
    assert mcp.path_arguments("move_file", {"source": "a", "destination": "b"}) == [("a", True), ("b", True)]
    assert mcp.path_arguments("read_multiple_files", {"paths": ["a", "b"]}) == [("a", False), ("b", False)]
    assert os.path.basename(mcp.executable_and_args(server(command="npx -y pkg", args=["x"]))[0]) == "npx"
