"""MassGen's ``workspace_tools`` MCP server (spec §3.5), our own: copy, delete and compare files in an
agent's directories. Run over stdio::

    python -m massgen_mcp_broker.workspace_tools --allowed-paths WORKSPACE [P ...] [--read-only P ...]
        [--protected P ...]

The MCP broker starts one for every agent with a workspace (``backend.cwd``), next to the filesystem
server: ``--allowed-paths`` its workspace (and the ``write`` context paths, which the broker keeps
read-only until the final presentation), ``--read-only`` the other agents' snapshots and the ``read``
context paths, ``--protected`` the context paths' ``protected_paths``.

Tools, with MassGen's names and arguments: ``copy_file(source_path, destination_path, overwrite)``,
``copy_files_batch(source_base_path, destination_base_path, include_patterns, exclude_patterns,
overwrite)``, ``delete_file(path, recursive)``, ``delete_files_batch(base_path, include_patterns,
exclude_patterns)``, ``compare_directories(dir1, dir2, show_content_diff)``, ``compare_files(file1,
file2, context_lines)``. MassGen's image and audio generation tools are not offered.

Rules: every path must resolve (symlinks followed) inside the roots, relative paths are taken relative
to the workspace (the first ``--allowed-paths``), only ``--allowed-paths`` are written; a root itself and
a protected path are never deleted, and protected paths never overwritten; a file is deleted only when
the agent read or created it in this run (read-before-delete: what counts and where that state lives is
in :mod:`massgen_mcp_broker.tracking`). Each result is a JSON object whose ``read``/``created`` name the
resolved files the call read or wrote; each refusal is a tool error that names the problem and the fix.
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from massgen_es import mcp
from massgen_es.errors import ToolError as MassgenToolError
from massgen_mcp_broker.tracking import KNOWN_PATHS_META, Tracker

MAX_DIFF_LINES = 200
"""Lines of a unified diff returned at most (MassGen returns 100 per file in compare_directories)."""


class Workspace:
    """An agent's roots, protected paths and read-before-delete tracker, and the six tools without MCP:
    each tool method returns its result as JSON text and raises the SDK's ``ToolError`` to refuse.

    Args:
        roots: writable first (the first is the workspace), then read-only; resolved.
        protected: resolved paths never deleted or overwritten.
    """

    def __init__(self, roots: Sequence[mcp.Root], protected: Sequence[Path] = ()) -> None:
        if not roots or not roots[0].writable:
            raise ValueError("the first root must be the writable workspace")
        self.roots = list(roots)
        self.protected = [Path(os.path.realpath(p)) for p in protected]
        self.tracker = Tracker()

    @property
    def workspace(self) -> Path:
        """The agent's workspace (relative paths start here)."""
        return self.roots[0].path

    def resolve(self, tool: str, raw: str, *, write: bool) -> Path:
        """``raw`` resolved inside the roots (MassGen spec §3.5).

        Raises:
            ToolError: outside every root, or a write under a read-only root; the text says which roots fit.
        """
        try:
            return mcp.resolve_in_roots(raw, self.roots, write=write)
        except MassgenToolError as exc:
            raise ToolError(f"{tool}: {exc}") from None

    def show(self, path: Path) -> str:
        """``path`` relative to the workspace when inside it, else absolute: how messages name it."""
        return str(path.relative_to(self.workspace)) if path.is_relative_to(self.workspace) else str(path)

    def writable(self, tool: str, path: Path, *, deleting: bool) -> None:
        """Refuse to delete or overwrite a protected path or a root itself.

        Raises:
            ToolError: naming the path and what to do instead.
        """
        try:
            mcp.check_not_protected(path, self.protected, deleting=deleting)
        except MassgenToolError as exc:
            raise ToolError(f"{tool}: {exc}") from None
        if deleting and any(path == r.path for r in self.roots):
            raise ToolError(f"{tool}: {path} is one of your root directories and is never deleted; delete "
                            "files or directories inside it instead")

    def check_read(self, tool: str, path: Path, known: frozenset[str]) -> None:
        """Read-before-delete (MassGen spec §3.5; see :mod:`massgen_mcp_broker.tracking`).

        Raises:
            ToolError: a file at or under ``path`` was neither read nor created; the text says how to read it.
        """
        unread = self.tracker.unread(path, known)
        if not unread:
            return
        if unread == [path]:
            raise ToolError(f"{tool}: {self.show(path)} was neither created nor read by you in this run; read it "
                            "(read_text_file or compare_files) before deleting it")
        names = ", ".join(self.show(p) for p in unread[:5]) + (f" and {len(unread) - 5} more" if len(unread) > 5
                                                               else "")
        raise ToolError(f"{tool}: {self.show(path)} holds {len(unread)} file(s) you neither created nor read in "
                        f"this run ({names}); read them (read_text_file, read_multiple_files or compare_files) "
                        "before deleting the directory")

    # ------------------------------------------------------------ the tools (MassGen's arguments)

    def copy_file(self, source_path: str, destination_path: str, overwrite: bool = False) -> str:
        """Copy a file or directory (e.g. from another agent's shared snapshot or a context path) into your
        workspace. destination_path: relative to your workspace, or absolute inside a writable directory."""
        source = self.resolve("copy_file", source_path, write=False)
        dest = self.resolve("copy_file", destination_path, write=True)
        if not os.path.lexists(source):
            raise ToolError(f"copy_file: source {source_path!r} does not exist; list the directory to find it")
        self.writable("copy_file", dest, deleting=source.is_dir())
        if os.path.lexists(dest) and not overwrite:
            raise ToolError(f"copy_file: destination {self.show(dest)} exists; pass overwrite=true to replace it, "
                            "or choose another destination_path")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(source, dest, symlinks=True)  # links copied as links, never followed out of roots
            created = _files(dest)
        else:
            shutil.copy2(source, dest)
            created = [dest]
        self.tracker.note(str(p) for p in created)
        return _result("copy_file", created=created, source=str(source), destination=str(dest),
                       type="directory" if source.is_dir() else "file", files=len(created))

    def copy_files_batch(self, source_base_path: str, destination_base_path: str = "",
                         include_patterns: list[str] | None = None, exclude_patterns: list[str] | None = None,
                         overwrite: bool = False) -> str:
        """Copy the files under source_base_path whose relative paths match include_patterns (glob, default
        all) and none of exclude_patterns to destination_base_path (default: your workspace root)."""
        source = self.resolve("copy_files_batch", source_base_path, write=False)
        dest = self.resolve("copy_files_batch", destination_base_path, write=True)
        if not source.is_dir():
            raise ToolError(f"copy_files_batch: {source_base_path!r} is not a directory; give the directory "
                            "to copy from")
        copied: list[Path] = []
        skipped: list[dict[str, str]] = []
        for item in _files(source):
            rel = str(item.relative_to(source))
            if not _matches(rel, include_patterns, exclude_patterns):
                continue
            target = dest / rel
            if item.is_symlink():
                skipped.append({"path": rel, "reason": "a symbolic link (not followed)"})
            elif os.path.lexists(target) and not overwrite:
                skipped.append({"path": rel, "reason": "destination exists (pass overwrite=true to replace)"})
            elif any(target.is_relative_to(p) for p in self.protected):
                skipped.append({"path": rel, "reason": "destination is protected"})
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(item, target)
                copied.append(target)
        self.tracker.note(str(p) for p in copied)
        return _result("copy_files_batch", created=copied, summary={"copied": len(copied), "skipped": len(skipped)},
                       skipped=skipped)

    def delete_file(self, path: str, recursive: bool = False, known: frozenset[str] = frozenset()) -> str:
        """Delete a file, or a directory with recursive=true, from your workspace. You must have read (or
        created) every file you delete in this run."""
        target = self.resolve("delete_file", path, write=True)
        if not os.path.lexists(target):
            raise ToolError(f"delete_file: {path!r} does not exist; nothing to delete")
        self.writable("delete_file", target, deleting=True)
        is_dir = target.is_dir() and not target.is_symlink()
        if is_dir and not recursive and any(target.iterdir()):
            raise ToolError(f"delete_file: {self.show(target)} is a directory that is not empty; pass "
                            "recursive=true to delete it with its contents")
        self.check_read("delete_file", target, known)
        files = len(_files(target)) if is_dir else 1
        if is_dir:
            shutil.rmtree(target)
        else:
            target.unlink()
        return _result("delete_file", path=str(target), type="directory" if is_dir else "file", files=files)

    def delete_files_batch(self, base_path: str, include_patterns: list[str] | None = None,
                           exclude_patterns: list[str] | None = None, known: frozenset[str] = frozenset()) -> str:
        """Delete the files under base_path whose relative paths match include_patterns (glob, default all)
        and none of exclude_patterns. Files you neither read nor created in this run are skipped."""
        base = self.resolve("delete_files_batch", base_path, write=True)
        if not base.is_dir():
            raise ToolError(f"delete_files_batch: {base_path!r} is not a directory; use delete_file for a file")
        known = known
        deleted: list[str] = []
        skipped: list[dict[str, str]] = []
        for item in _files(base):
            rel = str(item.relative_to(base))
            if not _matches(rel, include_patterns, exclude_patterns):
                continue
            try:
                self.writable("delete_files_batch", item, deleting=True)
                self.check_read("delete_files_batch", item, known)
            except ToolError as exc:
                skipped.append({"path": rel, "reason": str(exc).split(": ", 1)[1]})
                continue
            item.unlink()
            deleted.append(str(item))
        return _result("delete_files_batch", summary={"deleted": len(deleted), "skipped": len(skipped)},
                       deleted=deleted, skipped=skipped)

    def compare_directories(self, dir1: str, dir2: str, show_content_diff: bool = False) -> str:
        """Compare two directories recursively: files only in one, files that differ, identical files (paths
        relative to each directory); show_content_diff adds unified diffs of differing text files."""
        left = self.resolve("compare_directories", dir1, write=False)
        right = self.resolve("compare_directories", dir2, write=False)
        for raw, p in ((dir1, left), (dir2, right)):
            if not p.is_dir():
                raise ToolError(f"compare_directories: {raw!r} is not a directory; give two directories")
        a = {str(p.relative_to(left)): p for p in _files(left)}
        b = {str(p.relative_to(right)): p for p in _files(right)}
        common = sorted(a.keys() & b.keys())
        different = [r for r in common if a[r].read_bytes() != b[r].read_bytes()]
        fields: dict[str, Any] = {
            "only_in_dir1": sorted(a.keys() - b.keys()), "only_in_dir2": sorted(b.keys() - a.keys()),
            "different": different, "identical": [r for r in common if r not in different],
        }
        if show_content_diff:
            diffs = {}
            for r in different:
                try:
                    diff = difflib.unified_diff(_text_lines(a[r], "compare_directories"),
                                                _text_lines(b[r], "compare_directories"), f"dir1/{r}", f"dir2/{r}")
                    diffs[r] = "".join(list(diff)[:MAX_DIFF_LINES])
                except ToolError:
                    diffs[r] = "(not text)"
            fields["content_diffs"] = diffs
        read = [*a.values(), *b.values()]
        self.tracker.note(str(p) for p in read)
        return _result("compare_directories", read=read, **fields)

    def compare_files(self, file1: str, file2: str, context_lines: int = 3) -> str:
        """Compare two text files: whether they are identical, a unified diff, and lines added/removed."""
        left = self.resolve("compare_files", file1, write=False)
        right = self.resolve("compare_files", file2, write=False)
        for raw, p in ((file1, left), (file2, right)):
            if not p.is_file():
                raise ToolError(f"compare_files: {raw!r} is not a file; give two files (compare_directories "
                                "compares directories)")
        lines1, lines2 = _text_lines(left, "compare_files"), _text_lines(right, "compare_files")
        diff = list(difflib.unified_diff(lines1, lines2, file1, file2, n=max(context_lines, 0)))
        added = sum(1 for d in diff if d.startswith("+") and not d.startswith("+++"))
        removed = sum(1 for d in diff if d.startswith("-") and not d.startswith("---"))
        self.tracker.note([str(left), str(right)])
        return _result("compare_files", read=[left, right], identical=not diff,
                       diff="".join(diff[:MAX_DIFF_LINES]), stats={"added": added, "removed": removed})

def _matches(rel: str, include: list[str] | None, exclude: list[str] | None) -> bool:
    return any(fnmatch.fnmatch(rel, p) for p in include or ["*"]) and not any(
        fnmatch.fnmatch(rel, p) for p in exclude or [])


def _files(base: Path) -> list[Path]:
    """Files (and links) under ``base``, sorted; linked directories are not entered."""
    out = []
    for dirpath, dirnames, filenames in os.walk(base):
        out += [Path(dirpath, n) for n in filenames]
        out += [Path(dirpath, d) for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
    return sorted(out)


def _known_from(ctx: Context) -> frozenset[str]:
    """What the broker says the agent read or created (request ``_meta``), none when run on its own."""
    meta = ctx.request_context.meta or {}
    paths = meta.get(KNOWN_PATHS_META) or []
    return frozenset(p for p in paths if isinstance(p, str))


def _text_lines(path: Path, tool: str) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        raise ToolError(f"{tool}: {path} is not UTF-8 text; compare text files only") from None


def _result(operation: str, read: Sequence[Path] = (), created: Sequence[Path] = (), **fields: Any) -> str:
    return json.dumps({"success": True, "operation": operation, **fields, "read": [str(p) for p in read],
                       "created": [str(p) for p in created]}, indent=1)


def create_server(ws: Workspace) -> MCPServer:
    """The MCP server offering MassGen's six workspace tools over ``ws`` (MassGen spec §3.5)."""
    server = MCPServer("workspace_tools", instructions="Copy, delete and compare files in your workspace.")

    @server.tool()
    def copy_file(source_path: str, destination_path: str, overwrite: bool = False) -> str:
        """Copy a file or directory (e.g. from another agent's shared snapshot or a context path) into your
        workspace. destination_path: relative to your workspace, or absolute inside a writable directory."""
        return ws.copy_file(source_path, destination_path, overwrite)

    @server.tool()
    def copy_files_batch(source_base_path: str, destination_base_path: str = "",
                         include_patterns: list[str] | None = None, exclude_patterns: list[str] | None = None,
                         overwrite: bool = False) -> str:
        """Copy the files under source_base_path whose relative paths match include_patterns (glob, default
        all) and none of exclude_patterns to destination_base_path (default: your workspace root)."""
        return ws.copy_files_batch(source_base_path, destination_base_path, include_patterns, exclude_patterns,
                                   overwrite)

    @server.tool()
    def delete_file(path: str, ctx: Context, recursive: bool = False) -> str:
        """Delete a file, or a directory with recursive=true, from your workspace. You must have read (or
        created) every file you delete in this run."""
        return ws.delete_file(path, recursive, known=_known_from(ctx))

    @server.tool()
    def delete_files_batch(base_path: str, ctx: Context, include_patterns: list[str] | None = None,
                           exclude_patterns: list[str] | None = None) -> str:
        """Delete the files under base_path whose relative paths match include_patterns (glob, default all)
        and none of exclude_patterns. Files you neither read nor created in this run are skipped."""
        return ws.delete_files_batch(base_path, include_patterns, exclude_patterns, known=_known_from(ctx))

    @server.tool()
    def compare_directories(dir1: str, dir2: str, show_content_diff: bool = False) -> str:
        """Compare two directories recursively: files only in one, files that differ, identical files (paths
        relative to each directory); show_content_diff adds unified diffs of differing text files."""
        return ws.compare_directories(dir1, dir2, show_content_diff)

    @server.tool()
    def compare_files(file1: str, file2: str, context_lines: int = 3) -> str:
        """Compare two text files: whether they are identical, a unified diff, and lines added/removed."""
        return ws.compare_files(file1, file2, context_lines)

    return server


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line (see the module docstring) and serve over stdio until stdin closes."""
    parser = argparse.ArgumentParser(prog="python -m massgen_mcp_broker.workspace_tools",
                                     description="MassGen's workspace_tools MCP server (stdio).")
    parser.add_argument("--allowed-paths", nargs="+", required=True,
                        help="writable directories; the first is the workspace")
    parser.add_argument("--read-only", nargs="*", default=[], help="directories that are only read")
    parser.add_argument("--protected", nargs="*", default=[], help="paths never deleted or overwritten")
    args = parser.parse_args(argv)
    roots = [mcp.Root(Path(p), True) for p in args.allowed_paths] + [mcp.Root(Path(p), False) for p in args.read_only]
    create_server(Workspace(roots, [Path(p) for p in args.protected])).run("stdio")


if __name__ == "__main__":
    main()
