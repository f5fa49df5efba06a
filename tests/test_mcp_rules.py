"""The pure MCP rules of ``massgen_es.mcp``: naming, tool filters, server validation (MassGen spec §3.4),
substitution, redaction, argument validation, and filesystem roots (§3.5)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import pytest

from massgen_es import mcp
from massgen_es.config import BackendConfig, McpServerConfig
from massgen_es.errors import ConfigError, MassgenError

WHERE = "agents[0].backend.mcp_servers[1]"


def server(**fields) -> McpServerConfig:
    return msgspec.convert({"name": "fs", "command": "npx", **fields}, McpServerConfig)


def http(url: str, **fields) -> McpServerConfig:
    return msgspec.convert({"name": "api", "type": "streamable-http", "url": url, **fields}, McpServerConfig)


def backend(**fields) -> BackendConfig:
    return msgspec.convert({"type": "chatcompletion", "model": "m", **fields}, BackendConfig)


def rejects(cfg: McpServerConfig, pattern: str) -> str:
    """Validation fails, naming the key path under WHERE and matching ``pattern``; returns the message."""
    with pytest.raises(ConfigError, match=pattern) as info:
        mcp.validate_server(cfg, WHERE)
    assert WHERE in str(info.value)
    return str(info.value)


# ---------------------------------------------------------------- naming (spec §3.2)


def test_tool_name_prefixes_server_and_tool():
    assert mcp.tool_name("fs", "read_file") == "mcp__fs__read_file"


@pytest.mark.parametrize(("srv", "tool"), [("fs", "read_file"), ("my-server_2", "do__it"), ("a", "b")])
def test_split_tool_name_inverts_tool_name(srv, tool):
    assert mcp.split_tool_name(mcp.tool_name(srv, tool)) == (srv, tool)


@pytest.mark.parametrize("name", ["read_file", "mcp__fs", "mcp____x", "mcp__fs__", "new_answer"])
def test_split_tool_name_rejects_non_mcp_names(name):
    assert mcp.split_tool_name(name) is None


# ---------------------------------------------------------------- filters: bare and prefixed entries


def test_allowed_tools_prefixed_entry_matches_massgen_defect_case():
    # MassGen's docs write prefixed names here, which MassGen then never matches.
    assert mcp.tool_allowed(server(allowed_tools=["mcp__fs__read_file"]), backend(), "read_file")
    assert not mcp.tool_allowed(server(allowed_tools=["mcp__fs__read_file"]), backend(), "write_file")


def test_allowed_tools_bare_entry_matches():
    assert mcp.tool_allowed(server(allowed_tools=["read_file"]), backend(), "read_file")
    assert not mcp.tool_allowed(server(allowed_tools=["read_file"]), backend(), "write_file")


def test_server_exclude_tools_bare_and_prefixed():
    assert not mcp.tool_allowed(server(exclude_tools=["write_file"]), backend(), "write_file")
    assert not mcp.tool_allowed(server(exclude_tools=["mcp__fs__write_file"]), backend(), "write_file")
    assert mcp.tool_allowed(server(exclude_tools=["write_file"]), backend(), "read_file")


def test_backend_exclude_tools_bare_and_prefixed():
    assert not mcp.tool_allowed(server(), backend(exclude_tools=["write_file"]), "write_file")
    assert not mcp.tool_allowed(server(), backend(exclude_tools=["mcp__fs__write_file"]), "write_file")
    # A prefixed entry for another server leaves this one alone.
    assert mcp.tool_allowed(server(), backend(exclude_tools=["mcp__other__write_file"]), "write_file")


def test_backend_allowed_tools_bare_and_prefixed():
    assert mcp.tool_allowed(server(), backend(allowed_tools=["read_file"]), "read_file")
    assert mcp.tool_allowed(server(), backend(allowed_tools=["mcp__fs__read_file"]), "read_file")
    assert not mcp.tool_allowed(server(), backend(allowed_tools=["mcp__fs__read_file"]), "list_directory")


def test_backend_allowed_tools_prefixed_for_other_server_does_not_match():
    assert not mcp.tool_allowed(server(), backend(allowed_tools=["mcp__other__read_file"]), "read_file")


def test_server_allowed_tools_take_precedence_over_backend():
    srv = server(allowed_tools=["list_directory"])
    assert mcp.tool_allowed(srv, backend(allowed_tools=["read_file"]), "list_directory")
    assert not mcp.tool_allowed(srv, backend(allowed_tools=["read_file"]), "read_file")


def test_exclude_beats_allow():
    srv = server(allowed_tools=["read_file"], exclude_tools=["mcp__fs__read_file"])
    assert not mcp.tool_allowed(srv, backend(), "read_file")
    assert not mcp.tool_allowed(
        server(allowed_tools=["read_file"]), backend(exclude_tools=["read_file"]), "read_file"
    )


def test_no_lists_allows_everything():
    assert mcp.tool_allowed(server(), backend(), "anything")


def test_empty_allowlist_allows_nothing():
    assert not mcp.tool_allowed(server(allowed_tools=[]), backend(), "read_file")


# ---------------------------------------------------------------- server validation (spec §3.4)


def test_valid_stdio_and_http_servers_pass():
    mcp.validate_server(server(args=["-y", "@modelcontextprotocol/server-filesystem", "${HOME_DIR}"]), WHERE)
    mcp.validate_server(server(command=["python3.12", "-m", "srv"]), WHERE)
    mcp.validate_server(
        http("https://mcp.example.com/mcp", headers={"Authorization": "Bearer ${TOKEN}"}), WHERE
    )


@pytest.mark.parametrize("name", ["", "a b", "x" * 101, "fs/1", "ü"])
def test_server_name_charset_and_length(name):
    rejects(server(name=name), r"\.name")


def test_stdio_requires_command():
    rejects(msgspec.convert({"name": "fs"}, McpServerConfig), r"\.command.*required")


@pytest.mark.parametrize(
    "command",
    [
        "npx; rm -rf /",
        "npx && curl evil",
        "npx | sh",
        "npx `id`",
        "npx $(id)",
        "npx > /etc/passwd",
        "npx\nrm -rf /",
    ],
)
def test_command_shell_metacharacters_rejected(command):
    rejects(server(command=command), r"\.command")


@pytest.mark.parametrize("arg", ["$(id)", "`id`", "a;b", "x|y", "a&b", "<in", "line\nbreak", "$HOME"])
def test_args_shell_metacharacters_rejected(arg):
    rejects(server(args=["-y", arg]), r"\.args.*metacharacter")


def test_args_allow_var_references():
    mcp.validate_server(server(args=["--token", "${API_TOKEN}", "--x=${A}${B}"]), WHERE)


def test_executable_var_reference_rejected():
    rejects(server(command="${TOOL}"), r"\.command.*metacharacter")


@pytest.mark.parametrize("arg", ["../secret", "a/../../b", "--root=../x", "..", "a\\..\\b"])
def test_dotdot_in_args_is_accepted_as_in_massgen(arg):
    """MassGen checks `..` in the command only (issue 16): its examples start `python ../server.py`."""
    mcp.validate_server(server(args=[arg]), WHERE)


def test_dotdot_in_the_commands_own_arguments_rejected():
    rejects(server(command="python ../x.py"), r"\.command.*\.\.")


def test_dotdot_in_command_rejected():
    rejects(server(command="../bin/node"), r"\.command.*\.\.")


def test_dots_in_names_are_not_dotdot():
    mcp.validate_server(server(args=["pkg...v2", "file..txt", "./x"]), WHERE)


def test_arg_count_limit_counts_command_tokens():
    mcp.validate_server(server(args=["a"] * 50), WHERE)
    rejects(server(args=["a"] * 51), r"\.args.*50")
    rejects(server(command="npx -y", args=["a"] * 50), r"\.args.*50")


def test_arg_length_limit():
    mcp.validate_server(server(args=["a" * 500]), WHERE)
    rejects(server(args=["a" * 501]), r"\.args.*500")


def test_unknown_executable_docker_rejected():
    msg = rejects(server(command="docker run mcp/fs"), r"\.command.*'docker'.*not allowed")
    assert "allowed_executables" in msg


def test_allowed_executables_override():
    mcp.validate_server(
        server(command="docker run mcp/fs", security={"allowed_executables": ["docker"]}), WHERE
    )
    mcp.validate_server(
        server(command="/usr/bin/docker", security={"allowed_executables": ["docker"]}), WHERE
    )


def test_executable_checked_by_basename():
    mcp.validate_server(server(command="/usr/local/bin/node"), WHERE)
    rejects(server(command="/usr/local/bin/docker"), r"'docker'")


def test_security_levels_extend_the_allowlist():
    rejects(server(command="git"), r"not allowed at security level 'strict'")
    mcp.validate_server(server(command="git", security={"level": "moderate"}), WHERE)
    rejects(server(command="curl", security={"level": "moderate"}), r"'curl'")
    mcp.validate_server(server(command="curl", security={"level": "permissive"}), WHERE)


def test_unbalanced_quotes_rejected():
    rejects(server(command="npx 'oops"), r"\.command.*split")


def test_stdio_with_url_rejected():
    rejects(server(url="https://x.example"), r"url")


@pytest.mark.parametrize(
    "key",
    ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "DYLD_INSERT_LIBRARIES", "PYTHONPATH", "NODE_OPTIONS"],
)
def test_loader_env_vars_rejected_at_every_level(key):
    for level in ("strict", "moderate", "permissive"):
        rejects(server(env={key: "x"}, security={"level": level}), rf"\.env\.{key}")


@pytest.mark.parametrize("key", ["PATH", "HOME", "USER", "USERNAME", "SHELL"])
def test_identity_env_vars_rejected_in_strict_only(key):
    rejects(server(env={key: "/x"}), rf"\.env\.{key}.*moderate")
    mcp.validate_server(server(env={key: "/x"}, security={"level": "moderate"}), WHERE)


def test_env_key_charset():
    rejects(server(env={"BAD-KEY": "x"}), r"\.env\.BAD-KEY")
    mcp.validate_server(server(env={"API_KEY": "${API_KEY}"}), WHERE)


def test_dotdot_in_cwd_rejected():
    rejects(server(cwd="work/../../etc"), r"\.cwd.*\.\.")
    mcp.validate_server(server(cwd="/srv/work"), WHERE)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://x.example/", "javascript:alert(1)", "https://", "x.example"]
)
def test_url_scheme_and_host_required(url):
    rejects(http(url), r"\.url.*http")


def test_http_requires_url():
    rejects(msgspec.convert({"name": "api", "type": "streamable-http"}, McpServerConfig), r"\.url.*required")


def test_url_length_limit():
    rejects(http("https://x.example/" + "a" * 2048), r"\.url.*2048")


def test_http_with_command_rejected():
    rejects(http("https://x.example/mcp", command="npx"), r"command")


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5/mcp",
        "http://192.168.1.1:8080/",
        "http://169.254.169.254/latest",
        "http://[fd00::1]/",
        "http://172.16.0.1/",
        "http://[::ffff:10.0.0.1]/",
    ],
)
def test_private_ip_rejected_unless_allowed(url):
    rejects(http(url), r"\.url.*private.*allow_private_ips")
    mcp.validate_server(http(url, security={"allow_private_ips": True}), WHERE)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080/mcp",
        "http://127.0.0.1/",
        "http://127.9.9.9/",
        "http://[::1]:3000/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://LOCALHOST./",
        "http://api.localhost/",
        "http://0.0.0.0/",
    ],
)
def test_localhost_allowed_by_default_and_refusable(url):
    mcp.validate_server(http(url), WHERE)
    rejects(http(url, security={"allow_localhost": False}), r"\.url.*allow_localhost")


def test_public_hostnames_are_not_resolved():
    mcp.validate_server(http("https://internal.corp.example/mcp"), WHERE)  # no DNS lookup: accepted as is
    mcp.validate_server(http("https://8.8.8.8/mcp"), WHERE)


def test_url_credentials_rejected():
    rejects(http("https://user:secret@x.example/mcp"), r"\.url.*credentials.*headers")


def test_timeout_retries_and_breaker_bounds():
    mcp.validate_server(server(timeout=300, retries=0), WHERE)
    rejects(server(timeout=0), r"\.timeout")
    rejects(server(timeout=301), r"\.timeout")
    rejects(server(timeout=float("nan")), r"\.timeout")
    rejects(server(retries=11), r"\.retries")
    rejects(server(retries=-1), r"\.retries")
    rejects(server(circuit_breaker={"max_failures": 0}), r"\.circuit_breaker\.max_failures")
    rejects(server(circuit_breaker={"reset_time_seconds": 0}), r"\.circuit_breaker\.reset_time_seconds")


def test_executable_and_args_splits_string_command():
    assert mcp.executable_and_args(server(command="npx -y 'a b'", args=["c"])) == ("npx", ["-y", "a b", "c"])
    assert mcp.executable_and_args(server(command=["uvx", "srv"], args=["--x"])) == ("uvx", ["srv", "--x"])


# ---------------------------------------------------------------- substitution and redaction


def test_substitute_replaces_every_reference():
    env = {"A": "1", "TOKEN": "t0k"}
    assert mcp.substitute("Bearer ${TOKEN}/${A}${A}", env) == "Bearer t0k/11"
    assert mcp.substitute("no refs $A", env) == "no refs $A"


def test_substitute_missing_variable_names_it():
    with pytest.raises(ConfigError, match=r"environment variable MISSING_X is not set; export it"):
        mcp.substitute("x ${MISSING_X}", {})


# ---------------------------------------------------------------- argument validation

SCHEMA = {
    "type": "object",
    "properties": {
        "path": {"type": "string"},
        "head": {"type": "number"},
        "edits": {"type": "array", "items": {"type": "object", "required": ["oldText"]}},
    },
    "required": ["path"],
}


def test_check_arguments_returns_the_object():
    assert mcp.check_arguments('{"path": "a.txt", "head": 3}', SCHEMA) == {"path": "a.txt", "head": 3}


def test_check_arguments_missing_required_property():
    with pytest.raises(
        mcp.ToolArgumentError, match=r"^invalid arguments for tool: 'path' is a required property \(at \$\)$"
    ):
        mcp.check_arguments("{}", SCHEMA)


def test_check_arguments_wrong_type_names_location():
    with pytest.raises(mcp.ToolArgumentError, match=r"is not of type 'number' \(at \$\.head\)"):
        mcp.check_arguments('{"path": "a", "head": "3"}', SCHEMA)
    with pytest.raises(
        mcp.ToolArgumentError, match=r"'oldText' is a required property \(at \$\.edits\[0\]\)"
    ):
        mcp.check_arguments('{"path": "a", "edits": [{}]}', SCHEMA)


@pytest.mark.parametrize("raw", ["[1, 2]", '"path"', "3", "null"])
def test_check_arguments_rejects_non_objects(raw):
    with pytest.raises(mcp.ToolArgumentError, match="must be a JSON object"):
        mcp.check_arguments(raw, {"type": "object"})


@pytest.mark.parametrize("raw", ['{"path": ', "{'path': 'a'}", '{"x": NaN}'])
def test_check_arguments_rejects_invalid_json(raw):
    with pytest.raises(mcp.ToolArgumentError, match="not valid JSON|not JSON"):
        mcp.check_arguments(raw, {"type": "object"})


def test_check_arguments_empty_string_is_empty_object():
    assert mcp.check_arguments("", {"type": "object"}) == {}


def test_check_arguments_depth_limit():
    def nested(n: int) -> str:
        return '{"a": ' * n + "1" + "}" * n

    assert mcp.check_arguments(nested(20), {"type": "object"})
    with pytest.raises(mcp.ToolArgumentError, match="deeper than 20"):
        mcp.check_arguments(nested(21), {"type": "object"})
    with pytest.raises(mcp.ToolArgumentError, match="deeper than 20"):  # RecursionError inside json
        mcp.check_arguments("[" * 49_000 + "]" * 49_000, {"type": "object"})


def test_check_arguments_size_limit():
    ok = json.dumps({"t": "x" * (mcp.MAX_ARGUMENT_CHARS - 20)})
    assert mcp.check_arguments(ok, {"type": "object"})
    with pytest.raises(mcp.ToolArgumentError, match="over 100000 characters"):
        mcp.check_arguments(json.dumps({"t": "x" * mcp.MAX_ARGUMENT_CHARS}), {"type": "object"})


def test_check_arguments_broken_schema_does_not_blame_the_model():
    assert mcp.check_arguments('{"a": 1}', {"type": "not-a-type"}) == {"a": 1}
    assert mcp.check_arguments('{"a": 1}', {"$ref": "https://example.invalid/s.json"}) == {"a": 1}
    with pytest.raises(mcp.ToolArgumentError):
        mcp.check_arguments("[]", {"type": "not-a-type"})


def test_error_classes_are_massgen_errors():
    assert issubclass(mcp.ToolArgumentError, MassgenError)
    assert issubclass(mcp.ToolPermissionError, MassgenError)


# ---------------------------------------------------------------- filesystem roots (spec §3.5)


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    ws = tmp_path / "workspace"
    shared = tmp_path / "shared"
    outside = tmp_path / "outside"
    for d in (ws / "sub", shared, outside):
        d.mkdir(parents=True)
    (ws / "sub" / "a.txt").write_text("a")
    (shared / "ref.txt").write_text("r")
    (outside / "secret.txt").write_text("s")
    return {"ws": ws, "shared": shared, "outside": outside}


@pytest.fixture
def roots(tree) -> list[mcp.Root]:
    return [mcp.Root(tree["ws"], True), mcp.Root(tree["shared"], False)]


def test_path_inside_root_ok(tree, roots):
    assert (
        mcp.resolve_in_roots(str(tree["ws"] / "sub/a.txt"), roots, write=True)
        == (tree["ws"] / "sub/a.txt").resolve()
    )
    assert mcp.resolve_in_roots(str(tree["shared"] / "ref.txt"), roots, write=False)


def test_relative_path_is_relative_to_first_root(tree, roots):
    assert mcp.resolve_in_roots("sub/a.txt", roots, write=False) == (tree["ws"] / "sub/a.txt").resolve()
    assert mcp.resolve_in_roots("", roots, write=False) == tree["ws"].resolve()


@pytest.mark.parametrize(
    "raw", ["../outside/secret.txt", "sub/../../outside/secret.txt", "missing/../../../etc/passwd"]
)
def test_dotdot_traversal_rejected(roots, raw):
    with pytest.raises(mcp.ToolPermissionError, match="resolves outside the allowed directories"):
        mcp.resolve_in_roots(raw, roots, write=False)


def test_absolute_path_outside_rejected(tree, roots):
    with pytest.raises(mcp.ToolPermissionError, match="outside"):
        mcp.resolve_in_roots(str(tree["outside"] / "secret.txt"), roots, write=False)


def test_dotdot_that_stays_inside_is_ok(tree, roots):
    assert (
        mcp.resolve_in_roots("sub/../sub/a.txt", roots, write=False) == (tree["ws"] / "sub/a.txt").resolve()
    )


def test_symlink_inside_root_pointing_outside_rejected(tree, roots):
    (tree["ws"] / "link").symlink_to(tree["outside"])
    (tree["ws"] / "filelink").symlink_to(tree["outside"] / "secret.txt")
    for raw in ("link/secret.txt", "filelink", "link/new.txt"):
        with pytest.raises(mcp.ToolPermissionError, match="outside"):
            mcp.resolve_in_roots(raw, roots, write=False)


def test_dangling_symlink_pointing_outside_rejected_for_write(tree, roots):
    # Walking up to the deepest *existing* parent would miss this link and allow creating the target.
    (tree["ws"] / "dangling").symlink_to(tree["outside"] / "not-yet.txt")
    with pytest.raises(mcp.ToolPermissionError, match="outside"):
        mcp.resolve_in_roots("dangling", roots, write=True)


def test_symlink_into_read_only_root_is_read_only(tree, roots):
    (tree["ws"] / "toshared").symlink_to(tree["shared"])
    assert mcp.resolve_in_roots("toshared/ref.txt", roots, write=False)
    with pytest.raises(mcp.ToolPermissionError, match="read-only"):
        mcp.resolve_in_roots("toshared/ref.txt", roots, write=True)


def test_write_to_read_only_root_rejected(tree, roots):
    with pytest.raises(mcp.ToolPermissionError, match=r"is read-only for this agent"):
        mcp.resolve_in_roots(str(tree["shared"] / "ref.txt"), roots, write=True)
    with pytest.raises(mcp.ToolPermissionError, match="read-only"):
        mcp.resolve_in_roots(str(tree["shared"] / "new/dir/x.txt"), roots, write=True)


def test_write_new_file_in_writable_root_ok(tree, roots):
    target = tree["ws"] / "new" / "deeper" / "file.txt"
    assert mcp.resolve_in_roots(str(target), roots, write=True) == target.resolve()
    assert not target.exists()  # nothing is created


def test_most_specific_root_decides(tree):
    nested = [mcp.Root(tree["ws"], True), mcp.Root(tree["ws"] / "sub", False)]
    with pytest.raises(mcp.ToolPermissionError, match="read-only"):
        mcp.resolve_in_roots("sub/a.txt", nested, write=True)
    assert mcp.resolve_in_roots("other.txt", nested, write=True)


@pytest.mark.parametrize("raw", ["~", "~/.ssh/id_rsa", "~root/x"])
def test_tilde_rejected(roots, raw):
    with pytest.raises(mcp.ToolPermissionError, match="`~`"):
        mcp.resolve_in_roots(raw, roots, write=False)


def test_nul_byte_and_no_roots_rejected(roots):
    with pytest.raises(mcp.ToolPermissionError, match="NUL"):
        mcp.resolve_in_roots("a\x00b", roots, write=False)
    with pytest.raises(mcp.ToolPermissionError, match="no directories"):
        mcp.resolve_in_roots("a", [], write=False)


def test_root_paths_are_resolved(tree, tmp_path):
    (tmp_path / "wslink").symlink_to(tree["ws"])
    root = mcp.Root(tmp_path / "wslink", True)
    assert root.path == tree["ws"].resolve()
    assert mcp.resolve_in_roots(str(tree["ws"] / "sub/a.txt"), [root], write=True)
    assert os.path.isabs(mcp.Root(Path("relative"), False).path)


# ---------------------------------------------------------------- filesystem server path arguments


def test_filesystem_write_tools():
    assert mcp.FILESYSTEM_WRITE_TOOLS == {"write_file", "edit_file", "create_directory", "move_file"}
    assert not mcp.FILESYSTEM_WRITE_TOOLS & mcp.FILESYSTEM_READ_TOOLS


def test_path_arguments_of_filesystem_tools():
    assert mcp.path_arguments("read_text_file", {"path": "a", "head": 2}) == [("a", False)]
    assert mcp.path_arguments("write_file", {"path": "a", "content": "x"}) == [("a", True)]
    assert mcp.path_arguments("edit_file", {"path": "a", "edits": [], "dryRun": True}) == [("a", True)]
    assert mcp.path_arguments("read_multiple_files", {"paths": ["a", "b"]}) == [("a", False), ("b", False)]
    assert mcp.path_arguments("move_file", {"source": "a", "destination": "b"}) == [("a", True), ("b", True)]
    assert mcp.path_arguments("search_files", {"path": ".", "pattern": "*.py"}) == [(".", False)]
    assert mcp.path_arguments("list_allowed_directories", {}) == []


def test_path_arguments_unknown_tool_needs_write():
    assert mcp.path_arguments("delete_file", {"path": "a"}) == [("a", True)]


def test_path_arguments_reject_non_string_paths():
    with pytest.raises(mcp.ToolArgumentError, match="path"):
        mcp.path_arguments("read_text_file", {"path": ["a"]})
    with pytest.raises(mcp.ToolArgumentError, match="paths"):
        mcp.path_arguments("read_multiple_files", {"paths": ["a", 1]})


def test_confine_paths_replaces_each_path_by_its_checked_absolute_form(tree, roots):
    out = mcp.confine_paths("move_file", {"source": "a.txt", "destination": "sub/b.txt", "x": 1}, roots)
    first = roots[0].path
    assert out == {"source": str(first / "a.txt"), "destination": str(first / "sub" / "b.txt"), "x": 1}
    with pytest.raises(mcp.ToolPermissionError):
        mcp.confine_paths("read_multiple_files", {"paths": ["a.txt", "../../x"]}, roots)
