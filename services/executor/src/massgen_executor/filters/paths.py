"""Where a command's path operands point, lexically, and whether writing there leaves the workspace."""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass

TMP_DIR = "/tmp"  # writable by absolute path, as in every sandbox image

_HOME_VAR = re.compile(r"^\$(?:HOME\b|\{HOME\})")
_PWD_VAR = re.compile(r"^\$(?:PWD\b|\{PWD\})")
BLOCK_DEVICE = re.compile(
    r"/dev/(?:sd|hd|vd|xvd)[a-z]|/dev/(?:nvme|mmcblk|loop|md|dm-|sr|disk|nbd|rbd)\d|/dev/mapper/"
    r"|/dev/(?:mem|kmem|port)$"
)
_HARMLESS_DEVICES = frozenset(
    {"/dev/null", "/dev/zero", "/dev/full", "/dev/stdout", "/dev/stderr", "/dev/tty"}
)
_FD_PATH = re.compile(r"/(?:dev|proc/self)/fd/\d+")


@dataclass
class Ctx:
    """What the checks know while walking a script; nested scripts get a copy (their ``cd`` stays
    theirs)."""

    workspace: str  # real path
    writable: tuple[str, ...]  # extra writable roots, real paths
    allow_sudo: bool
    cwd: str | None  # lexical absolute path, "~…" for the home directory, None when unknown
    anchored: bool  # cwd was set by an absolute `cd`: relative paths then count as absolute ones


def _norm(path: str) -> str:
    if path.startswith("~"):
        head, _, rest = path.partition("/")
        rest = posixpath.normpath("/" + rest)
        return head if rest == "/" else head + rest
    return posixpath.normpath("/" + path.lstrip("/"))  # also folds `//` and `/..`


def resolve(target: str, ctx: Ctx) -> str | None:
    """The absolute lexical path ``target`` names (``~…`` for the home directory), or None when it
    depends on something this check cannot know (a variable, a substitution, an unknown ``cd``)."""
    target = _HOME_VAR.sub("~", target)
    if m := _PWD_VAR.match(target):
        if ctx.cwd is None:
            return None
        target = ctx.cwd + target[m.end() :]
    if target.startswith(("~", "/")):
        return _norm(target)
    if target.startswith(("$", "`")) or ctx.cwd is None:
        return None
    return _norm(posixpath.join(ctx.cwd, target))


def is_root(path: str | None) -> bool:
    """``path`` is ``/``, ``/*`` or ``/.*``."""
    return path is not None and re.fullmatch(r"/(?:\.?\*)?", path) is not None


def is_home(path: str | None) -> bool:
    """``path`` is a home directory (``~``, ``~user``) or everything in one."""
    return path is not None and re.fullmatch(r"~[^/]*(?:/\.?\*)?", path) is not None


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def outside(target: str, ctx: Ctx, device_ok: bool) -> str | None:
    """Why writing ``target`` leaves the writable area, or None when it does not. ``device_ok``:
    ``/dev/null``, ``/dev/stdout``, ``/dev/fd/N`` and the like are fine (a redirection, ``tee``)."""
    if target in ("", "-"):
        return None
    path = resolve(target, ctx)
    if path is None:
        return "and this check cannot tell where that is (it depends on a variable or a substitution)"
    if path.startswith("~"):
        return "which is in a home directory, outside your workspace"
    if device_ok and (path in _HARMLESS_DEVICES or _FD_PATH.fullmatch(path)):
        return None
    real = os.path.realpath(path)  # a symlink inside the workspace may point out of it
    if any(_under(real, root) for root in (ctx.workspace, *ctx.writable)):
        return None
    if (target.startswith("/") or ctx.anchored) and _under(real, os.path.realpath(TMP_DIR)):
        return None
    if not target.startswith("/") and not ctx.anchored:
        return "which is outside your workspace (a relative path may not climb out of it with `..`)"
    return "which is outside your workspace"


def change_directory(dest: str, ctx: Ctx) -> None:
    """Follow ``cd dest`` in ``ctx`` (``cd -`` makes the directory unknown)."""
    if dest == "-":
        ctx.cwd = None
        return
    anchored = dest.startswith("/") or ctx.anchored
    ctx.cwd, ctx.anchored = resolve(dest, ctx), anchored
