"""The dispatcher: :func:`check_command` walks a script's simple commands, hands each to the rule for
its command name (:data:`_RULES`), then applies the checks every command gets (disk devices,
privilege, writes outside the workspace)."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from massgen_executor.filters import files, privilege, shells, system
from massgen_executor.filters.call import Call
from massgen_executor.filters.errors import CommandRefused, dangerous, shown
from massgen_executor.filters.lexer import WRITE_REDIRECTS, Simple, preprocess
from massgen_executor.filters.paths import BLOCK_DEVICE, TMP_DIR, Ctx, outside, resolve
from massgen_executor.filters.patterns import ALLOWED_KEY, BLOCKED_KEY, check_patterns, validate_patterns
from massgen_executor.filters.wrappers import command_words

MAX_NESTING = 8  # sh -c "sh -c '…'" levels checked before giving up (and refusing)

Rule = Callable[[Call], None]
# Command name → its rule. A name may reach its rule under conditions the rule checks (`kill 1`).
_RULES: dict[str, Rule] = {
    **dict.fromkeys(privilege.SWITCH_USER, privilege.switch_user),
    **dict.fromkeys(privilege.PERMISSIONS, privilege.permissions),
    **dict.fromkeys(("cd", "pushd"), shells.cd),
    **dict.fromkeys(shells.SHELLS, shells.shell),
    "eval": shells.eval_,
    "rm": files.rm,
    **dict.fromkeys(files.WRITERS, files.writer),
    **dict.fromkeys(files.COPIERS, files.copier),
    "dd": files.dd,
    "find": files.find,
    **dict.fromkeys(system.FORMATTERS, system.format_disk),
    **dict.fromkeys((*system.POWER, "init", "telinit", "systemctl"), system.power),
    **dict.fromkeys(("kill", "killall5"), system.kill),
}


def check_command(
    command: str,
    *,
    workspace: Path,
    allowed: Sequence[str] = (),
    blocked: Sequence[str] = (),
    allow_sudo: bool = False,
    cwd: Path | None = None,
    writable: Sequence[Path] = (),
) -> None:
    """Refuse ``command`` if the executor must not run it (MassGen spec §4.1 ``_sanitize_command`` and
    ``_check_command_filters``, issue #5 item 4). A best-effort check; see the module docstring of
    :mod:`massgen_executor.filters`.

    Args:
        command: the shell command as the model gave it (run later with ``/bin/sh -c``).
        workspace: the agent's workspace; writes must stay inside it (or ``writable``, or ``/tmp``).
        allowed: ``command_line_allowed_commands``; when non-empty the command must ``re.match`` one.
        blocked: ``command_line_blocked_commands``; the command must not ``re.search`` any.
        allow_sudo: ``command_line_docker_enable_sudo``: permits ``sudo``/``su``/``doas`` and
            ``chmod``/``chown`` anywhere (the other dangerous patterns stay refused).
        cwd: where the command runs, when not the workspace root (relative paths are resolved there).
        writable: further directories writes may go to (e.g. writable context paths); ``Path("/")``
            turns the outside-the-workspace check off, for a sandbox whose filesystem is disposable.

    Raises:
        CommandRefused: the message says why and what is allowed; ``rule`` names the check.
        ValueError: a pattern in ``allowed`` or ``blocked`` is not a valid regular expression (the
            message names it; config validation reports it earlier through
            :func:`~massgen_executor.filters.patterns.validate_patterns`).
    """
    validate_patterns(allowed, ALLOWED_KEY)
    validate_patterns(blocked, BLOCKED_KEY)
    if not command.strip():
        raise CommandRefused("command refused: the command is empty; give a shell command to run",
                             rule="unparsable")
    if "\x00" in command:
        raise CommandRefused("command refused: it contains a NUL character; remove it", rule="unparsable")
    ws = os.path.realpath(workspace)
    ctx = Ctx(workspace=ws, writable=tuple(os.path.realpath(w) for w in writable), allow_sudo=allow_sudo,
              cwd=os.path.realpath(cwd) if cwd is not None else ws, anchored=False)
    _check_script(command, ctx, 0)
    check_patterns(command, allowed, blocked)


def _check_script(text: str, ctx: Ctx, depth: int) -> None:
    """Check every command of a script: fork bombs in its text, then its substitutions (as scripts of
    their own), then its simple commands in order (``cd`` carries over within ``ctx``)."""
    if depth > MAX_NESTING:
        raise CommandRefused(
            f"command refused: it nests commands more than {MAX_NESTING} levels deep (sh -c, eval, $(…)); "
            "run it in fewer levels",
            rule="unparsable",
        )
    system.check_fork_bomb(text)
    script = preprocess(text)
    for inner in script.substitutions:
        _check_script(inner, replace(ctx), depth + 1)
    try:
        commands = script.commands()
    except ValueError as exc:
        raise CommandRefused(
            f"command refused: it cannot be parsed ({exc}); balance its quotes and escapes", rule="unparsable"
        ) from None
    for simple in commands:
        _check_simple(simple, ctx, script.heredocs, depth)


def _nested(what: str | list[str], ctx: Ctx, depth: int) -> None:
    """A rule's recursion (:data:`massgen_executor.filters.call.Nested`): a script or an argv."""
    if isinstance(what, str):
        _check_script(what, ctx, depth)
    else:
        _check_simple(Simple(what, []), ctx, {}, depth)


def _check_simple(cmd: Simple, ctx: Ctx, heredocs: dict[str, str], depth: int) -> None:
    """Strip the words before the command, run the command's rule, then the checks every command
    gets, in this order: disk devices, privilege, writes outside the workspace."""
    argv, wrapper = command_words(list(cmd.argv))
    name, args = (posixpath.basename(argv[0]), argv[1:]) if argv else ("", [])
    call = Call(
        name=name, args=args, cmd=cmd, ctx=ctx, heredocs=heredocs, depth=depth, nested=_nested,
        shown=shown(argv or cmd.argv) or " ".join(f"{op} {t}" for op, t in cmd.redirects),
        privilege=wrapper, writes=_redirect_writes(cmd),
    )
    if (rule := _rule_for(name)) is not None:
        rule(call)
    _refuse_device_writes(call)
    _refuse_privilege(call)
    _refuse_outside_writes(call)


def _rule_for(name: str) -> Rule | None:
    if name.startswith("mkfs"):  # mkfs, mkfs.ext4, mkfs.xfs, …
        return system.format_disk
    return _RULES.get(name)


def _redirect_writes(cmd: Simple) -> list[tuple[str, bool]]:
    """The files ``cmd``'s redirections write (``>&2`` and ``>&-`` write none)."""
    return [(target, True) for op, target in cmd.redirects
            if op in WRITE_REDIRECTS and not (op == ">&" and (target.isdigit() or target == "-"))]


def _refuse_device_writes(call: Call) -> None:
    """Writing onto a disk device (``> /dev/sda``, ``dd of=/dev/nvme0n1``) destroys its filesystem."""
    for target, _ in call.writes:
        path = resolve(target, call.ctx)
        if path is not None and BLOCK_DEVICE.match(path):
            raise dangerous(call.shown, f"writes to the disk device {path}",
                            "Write to files inside your workspace instead.")


def _refuse_privilege(call: Call) -> None:
    """Without ``allow_sudo``: no ``sudo``/``su``/… and no ``chmod``/``chown`` outside the workspace
    (commands run as the sandbox user, on purpose)."""
    if call.ctx.allow_sudo:
        return
    if call.privilege:
        raise CommandRefused(
            f"command refused: `{call.privilege}` is not allowed for this agent (commands run as the "
            "sandbox user, and sudo is enabled only with `command_line_docker_enable_sudo`); run the "
            "command without it, installing into your workspace if needed (e.g. `pip install --target "
            "./lib …`)",
            rule="privilege",
        )
    for target in call.permission_targets:
        if (why := outside(target, call.ctx, device_ok=False)) is not None:
            raise CommandRefused(
                f"command refused: `{call.shown}` changes permissions or ownership of {target!r}, "
                f"{why}; only files inside your workspace ({call.ctx.workspace}) may be changed",
                rule="privilege",
            )


def _refuse_outside_writes(call: Call) -> None:
    """Every write must land in the workspace, an extra writable root or ``/tmp``."""
    ctx = call.ctx
    for target, device_ok in call.writes:
        if (why := outside(target, ctx, device_ok)) is not None:
            extra = "".join(f", {w}" for w in ctx.writable)
            raise CommandRefused(
                f"command refused: `{call.shown}` writes to {target!r}, {why}. Write "
                f"inside your workspace ({ctx.workspace}{extra}; relative paths such as `out/result.txt`) "
                f"or under {TMP_DIR}",
                rule="outside_workspace",
            )
