"""MassGen's ``workspace_tools`` server, ours (MassGen spec §3.5): the real server process over stdio with
the official MCP SDK client; then through the broker on a real nats-server with scripted models; and
the MassGen form of the server in a config."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_types
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from test_mcp_broker import mcp_team, of, run, script

from massgen_es.config import WORKSPACE_TOOLS_SERVER, parse_config, run_submitted, server_names
from massgen_es.events import ToolCallCompleted, ToolCallFailed, ToolsListed
from massgen_mcp_broker.runs import RunContext, resolve_launch
from massgen_mcp_broker.sessions import Session
from massgen_mcp_broker.tracking import KNOWN_PATHS_META

MASSGEN_FORM = {
    "name": "workspace_tools",
    "type": "stdio",
    "command": "fastmcp",
    "args": ["run", "massgen.filesystem_manager._workspace_tools_server:create_server", "--", "--allowed-paths", "."],
    "env": {"FASTMCP_SHOW_CLI_BANNER": "false"},
}


class Tools:
    """A client session with the server; :meth:`call` returns (is_error, text)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def call(self, tool: str, meta: dict | None = None, **arguments: Any) -> tuple[bool, str]:
        result = await self.client.call_tool(tool, arguments, meta=meta)
        text = "\n".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))
        return bool(result.is_error), text

    async def ok(self, tool: str, **arguments: Any) -> dict:
        is_error, text = await self.call(tool, **arguments)
        assert not is_error, text
        return json.loads(text)


@asynccontextmanager
async def server(workspace: Path, read_only: list[Path] = (), protected: list[Path] = (),
                 writable: list[Path] = ()) -> AsyncIterator[Tools]:
    args = ["-m", "massgen_mcp_broker.workspace_tools", "--allowed-paths", str(workspace), *map(str, writable)]
    if read_only:
        args += ["--read-only", *map(str, read_only)]
    if protected:
        args += ["--protected", *map(str, protected)]
    params = StdioServerParameters(command=sys.executable, args=args)
    async with Client(stdio_client(params), mode="legacy") as client:
        yield Tools(client)


def dirs(tmp_path: Path) -> tuple[Path, Path]:
    ws, snap = tmp_path / "ws", tmp_path / "snapshots"
    (snap / "agent2").mkdir(parents=True)
    ws.mkdir()
    return ws, snap


# ---------------------------------------------------------------- the server over stdio


async def test_offers_massgens_six_tools_with_massgens_argument_names(tmp_path):
    ws, _ = dirs(tmp_path)
    async with server(ws) as tools:
        listed = {t.name: set(t.input_schema["properties"]) for t in (await tools.client.list_tools()).tools}
    assert listed == {
        "copy_file": {"source_path", "destination_path", "overwrite"},
        "copy_files_batch": {"source_base_path", "destination_base_path", "include_patterns", "exclude_patterns",
                             "overwrite"},
        "delete_file": {"path", "recursive"},
        "delete_files_batch": {"base_path", "include_patterns", "exclude_patterns"},
        "compare_directories": {"dir1", "dir2", "show_content_diff"},
        "compare_files": {"file1", "file2", "context_lines"},
    }


async def test_copy_within_the_workspace(tmp_path):
    ws, _ = dirs(tmp_path)
    (ws / "draft.md").write_text("v1")
    async with server(ws) as tools:
        out = await tools.ok("copy_file", source_path="draft.md", destination_path="backup/draft.md")
        again = await tools.call("copy_file", source_path="draft.md", destination_path="backup/draft.md")
    assert (ws / "backup" / "draft.md").read_text() == "v1"
    assert out["created"] == [str(ws / "backup" / "draft.md")]
    assert again[0] and "exists; pass overwrite=true" in again[1]


async def test_copy_from_another_agents_read_only_snapshot_into_the_workspace(tmp_path):
    ws, snap = dirs(tmp_path)
    (snap / "agent2" / "src").mkdir()
    (snap / "agent2" / "src" / "app.py").write_text("print(2)")
    (snap / "agent2" / "README.md").write_text("readme")
    async with server(ws, read_only=[snap]) as tools:
        await tools.ok("copy_file", source_path=str(snap / "agent2" / "src"), destination_path="src")
        batch = await tools.ok("copy_files_batch", source_base_path=str(snap / "agent2"),
                               destination_base_path="mine", include_patterns=["*.md"])
        into_snapshot = await tools.call("copy_file", source_path="src/app.py",
                                         destination_path=str(snap / "agent2" / "app.py"))
    assert (ws / "src" / "app.py").read_text() == "print(2)"
    assert batch["summary"] == {"copied": 1, "skipped": 0} and (ws / "mine" / "README.md").read_text() == "readme"
    assert into_snapshot[0] and "read-only" in into_snapshot[1]
    assert not (snap / "agent2" / "app.py").exists()


async def test_copy_or_delete_outside_the_roots_is_refused(tmp_path):
    ws, _ = dirs(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    (ws / "link").symlink_to(tmp_path)
    async with server(ws) as tools:
        copy_in = await tools.call("copy_file", source_path=str(outside), destination_path="x.txt")
        copy_out = await tools.call("copy_file", source_path=str(ws), destination_path="../escaped")
        via_link = await tools.call("delete_file", path="link/outside.txt")
        delete = await tools.call("delete_file", path=str(outside))
    for is_error, text in (copy_in, copy_out, via_link, delete):
        assert is_error and "outside the allowed directories" in text, text
    assert outside.read_text() == "keep" and not (tmp_path / "escaped").exists()


async def test_delete_of_an_unread_file_is_refused_with_the_fix(tmp_path):
    ws, _ = dirs(tmp_path)
    (ws / "notes.txt").write_text("old notes")
    (ws / "dir").mkdir()
    (ws / "dir" / "a.txt").write_text("a")
    async with server(ws) as tools:
        file = await tools.call("delete_file", path="notes.txt")
        folder = await tools.call("delete_file", path="dir", recursive=True)
    assert file == (True, "Error executing tool delete_file: delete_file: notes.txt was neither created nor read "
                          "by you in this run; read it (read_text_file or compare_files) before deleting it")
    assert folder[0] and "dir holds 1 file(s) you neither created nor read in this run (dir/a.txt)" in folder[1]
    assert (ws / "notes.txt").exists() and (ws / "dir" / "a.txt").exists()


async def test_delete_after_compare_files_or_after_creating_it_is_allowed(tmp_path):
    ws, snap = dirs(tmp_path)
    (ws / "notes.txt").write_text("old\n")
    (ws / "other.txt").write_text("new\n")
    (snap / "agent2" / "x.txt").write_text("x")
    async with server(ws, read_only=[snap]) as tools:
        compared = await tools.ok("compare_files", file1="notes.txt", file2="other.txt")
        await tools.ok("delete_file", path="notes.txt")
        await tools.ok("copy_file", source_path=str(snap / "agent2"), destination_path="copied")
        await tools.ok("delete_file", path="copied", recursive=True)
        # A read the broker saw (the filesystem server's read_text_file) arrives in the request's _meta.
        await tools.ok("delete_file", path="other.txt", meta={KNOWN_PATHS_META: [str(ws / "other.txt")]})
    assert compared["identical"] is False and compared["stats"] == {"added": 1, "removed": 1}
    assert "-old" in compared["diff"] and "+new" in compared["diff"]
    assert not any(ws.iterdir())


async def test_protected_paths_are_never_deleted_or_overwritten(tmp_path):
    ws, _ = dirs(tmp_path)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "settings.yaml").write_text("keep: true")
    (ws / "settings.yaml").write_text("keep: false")
    # The context path is writable here (as in the winner's presentation); its protected file is not.
    async with server(ws, writable=[ctx], protected=[ctx / "settings.yaml"]) as tools:
        read = await tools.ok("compare_files", file1=str(ctx / "settings.yaml"), file2="settings.yaml")
        overwrite = await tools.call("copy_file", source_path="settings.yaml",
                                     destination_path=str(ctx / "settings.yaml"), overwrite=True)
        delete = await tools.call("delete_file", path=str(ctx / "settings.yaml"))
    assert read["read"] == [str(ctx / "settings.yaml"), str(ws / "settings.yaml")]
    assert overwrite[0] and "is protected" in overwrite[1] and "never be deleted or overwritten" in overwrite[1]
    assert delete[0] and "is protected" in delete[1]
    assert (ctx / "settings.yaml").read_text() == "keep: true"


async def test_compare_directories_lists_the_differences(tmp_path):
    ws, snap = dirs(tmp_path)
    for base, files in ((ws, {"same.txt": "s", "changed.txt": "a\n", "sub/mine.txt": "m"}),
                        (snap / "agent2", {"same.txt": "s", "changed.txt": "b\n", "theirs.txt": "t"})):
        for rel, text in files.items():
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_text(text)
    async with server(ws, read_only=[snap]) as tools:
        out = await tools.ok("compare_directories", dir1=".", dir2=str(snap / "agent2"), show_content_diff=True)
        # compare_directories counts as reading every file it compared.
        deleted = await tools.ok("delete_file", path="sub", recursive=True)
    assert (out["only_in_dir1"], out["only_in_dir2"]) == (["sub/mine.txt"], ["theirs.txt"])
    assert (out["different"], out["identical"]) == (["changed.txt"], ["same.txt"])
    assert "-a" in out["content_diffs"]["changed.txt"] and "+b" in out["content_diffs"]["changed.txt"]
    assert deleted["files"] == 1 and not (ws / "sub").exists()


# ---------------------------------------------------------------- through the broker


async def test_through_the_broker_roots_read_before_delete_from_the_log_and_protected_paths(
    fresh_nats, fake, tmp_path, massgen_home
):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "notes.txt").write_text("old notes")
    (ctx / "keep.yaml").write_text("keep: true")
    wt = "mcp__workspace_tools__"
    coordination = (
        ((wt + "copy_file", {"source_path": str(ctx / "notes.txt"), "destination_path": "copy.txt"}),),
        ((wt + "delete_file", {"path": str(ctx / "notes.txt")}),),  # context paths: read-only until presenting
        ((wt + "delete_file", {"path": "copy.txt"}),),  # created by the agent's copy
    )
    presentation = (
        ((wt + "delete_file", {"path": str(ctx / "notes.txt")}),),  # writable now, but never read
        (("mcp__filesystem__read_text_file", {"path": str(ctx / "notes.txt")}),),
        ((wt + "delete_file", {"path": str(ctx / "notes.txt")}),),  # the read is in the log: allowed
        ((wt + "delete_file", {"path": str(ctx / "keep.yaml")}),),
    )
    cfg = mcp_team(fake, 1, [script(*coordination, present=presentation)], cwd="ws",
                   context_paths=[{"path": str(ctx), "permission": "write", "protected_paths": ["keep.yaml"]}])
    run_id, records = await run(fresh_nats, massgen_home, cfg)
    listed = {e.server: e for e in of(records, ToolsListed)}
    assert {t.name for t in listed[WORKSPACE_TOOLS_SERVER].tools} == {
        wt + t for t in ("copy_file", "copy_files_batch", "delete_file", "delete_files_batch",
                         "compare_directories", "compare_files")}
    outcomes = [e for e in (r.event for r in records) if isinstance(e, ToolCallCompleted | ToolCallFailed)]
    shown = [(e.tool, e.failure.type if isinstance(e, ToolCallFailed) else "error" if e.is_error else "ok")
             for e in outcomes]
    assert shown == [
        ("copy_file", "ok"), ("delete_file", "ToolPermissionError"), ("delete_file", "ok"),
        ("delete_file", "error"), ("read_text_file", "ok"), ("delete_file", "ok"),
        ("delete_file", "ToolPermissionError"),
    ], outcomes
    assert "read-only" in outcomes[1].failure.message
    assert "notes.txt was neither created nor read by you in this run" in outcomes[3].content
    assert "protected" in outcomes[6].failure.message
    workspace = massgen_home / "runs" / run_id / "workspaces" / cfg["agents"][0]["id"]
    assert not (workspace / "copy.txt").exists() and not (ctx / "notes.txt").exists()
    assert (ctx / "keep.yaml").read_text() == "keep: true"


# ---------------------------------------------------------------- configs


def massgen_team(tmp_path: Path, server_entry: dict, **backend) -> dict:
    return {"agents": [{"id": "a", "backend": {"type": "chatcompletion", "model": "m",
                                               "base_url": "http://127.0.0.1:9/v1", "mcp_servers": [server_entry],
                                               **backend}}]}


async def test_the_massgen_form_of_the_server_maps_to_ours(tmp_path, massgen_home):
    cfg = parse_config(massgen_team(tmp_path, MASSGEN_FORM, cwd="ws"))
    assert server_names(cfg.team[0].backend) == ["workspace_tools", "filesystem"]
    context = RunContext.build("run-x", run_submitted("q", cfg), massgen_home)
    grant = context.agents["a"]
    assert WORKSPACE_TOOLS_SERVER in grant.builtin
    launch, _ = await resolve_launch(grant, grant.servers[WORKSPACE_TOOLS_SERVER], context, None)  # type: ignore[arg-type]
    assert (launch.command, launch.args[:4]) == (
        sys.executable, ("-m", "massgen_mcp_broker.workspace_tools", "--allowed-paths", str(grant.workspace.resolve())))
    session = Session(launch, tmp_path / "logs")  # what the broker starts: ours, not `fastmcp run`
    try:
        await session.start()
        assert {t.name for t in session.catalog} >= {"copy_file", "delete_file", "compare_directories"}
    finally:
        await session.close()


def test_the_massgen_form_without_a_workspace_is_left_out_with_a_warning_naming_the_fix(tmp_path, caplog):
    own = {"name": "notes", "command": "npx", "args": ["-y", "my-notes"]}
    team = massgen_team(tmp_path, MASSGEN_FORM)
    team["agents"][0]["backend"]["mcp_servers"].append(own)
    with caplog.at_level("WARNING", logger="massgen.config"):
        cfg = parse_config(team)
    assert server_names(cfg.team[0].backend) == ["notes"]  # no workspace: neither ours nor MassGen's runs
    assert any("`agents[0].backend.mcp_servers[0]` is MassGen's workspace_tools server" in r.getMessage()
               and "set `agents[0].backend.cwd`" in r.getMessage() for r in caplog.records)


def test_a_server_of_your_own_named_workspace_tools_replaces_ours(tmp_path, massgen_home):
    own = {"name": "workspace_tools", "command": "npx", "args": ["-y", "my-workspace-tools"]}
    cfg = parse_config(massgen_team(tmp_path, own, cwd="ws"))
    grant = RunContext.build("run-y", run_submitted("q", cfg), massgen_home).agents["a"]
    assert grant.builtin == {"filesystem"} and grant.servers[WORKSPACE_TOOLS_SERVER].command == "npx"


async def test_the_official_filesystem_server_next_to_cwd_means_ours_over_the_workspace(tmp_path, massgen_home):
    official = {"name": "filesystem", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "."],
                "exclude_tools": ["read_media_file"]}
    cfg = parse_config(massgen_team(tmp_path, official, cwd="ws"))
    context = RunContext.build("run-f", run_submitted("q", cfg), massgen_home)
    grant = context.agents["a"]
    assert grant.builtin == {"filesystem", "workspace_tools"}
    assert grant.servers["filesystem"].exclude_tools == ("read_media_file",)  # the entry's filters are kept
    launch, _ = await resolve_launch(grant, grant.servers["filesystem"], context, None)  # type: ignore[arg-type]
    assert "." not in launch.args and str(grant.workspace.resolve()) in launch.args


def test_another_server_named_filesystem_next_to_cwd_replaces_ours_with_a_warning(tmp_path, massgen_home, caplog):
    own = {"name": "filesystem", "command": "npx", "args": ["-y", "my-files"]}
    with caplog.at_level("WARNING", logger="massgen.config"):
        cfg = parse_config(massgen_team(tmp_path, own, cwd="ws"))
    grant = RunContext.build("run-g", run_submitted("q", cfg), massgen_home).agents["a"]
    assert grant.builtin == {"workspace_tools"} and grant.servers["filesystem"].args == ("-y", "my-files")
    assert any("replaces the workspace server that `cwd` adds" in r.getMessage() for r in caplog.records)
