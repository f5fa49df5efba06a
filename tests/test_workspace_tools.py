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
