"""Rules for commands that take the machine down rather than touch files: formatting disks, shutting
down, signalling every process, and fork bombs. They are refused even with sudo rights."""

from __future__ import annotations

import re

from massgen_executor.filters.call import Call
from massgen_executor.filters.errors import CommandRefused, dangerous
from massgen_executor.filters.lexer import closing

FORMATTERS = frozenset(
    {"mke2fs", "mkswap", "fdisk", "sfdisk", "cfdisk", "gdisk", "sgdisk", "parted", "wipefs"}
)
POWER = frozenset({"shutdown", "reboot", "halt", "poweroff", "kexec"})
_SYSTEMCTL_POWER = frozenset({"poweroff", "reboot", "halt", "kexec", "rescue", "emergency", "suspend",
                              "hibernate", "soft-reboot"})

_FUNCTION_NAME = r"[^\s()<>{}|&;'\"`$\\]+"
_FUNCTION_DEF = re.compile(  # `function NAME [()]` or `NAME ()`
    rf"(?:\bfunction\s+({_FUNCTION_NAME})\s*(?:\(\s*\))?|({_FUNCTION_NAME})\s*\(\s*\))\s*"
)
_OTHER_FORK_BOMBS = (
    re.compile(r"\bfork\b(?:\s*\(\s*\))?\s+while\s+fork\b"),  # perl -e 'fork while fork'
    re.compile(r"\bwhile\b.{0,120}?\bfork\s*\(", re.DOTALL),  # while True: os.fork()
    re.compile(r"\bfor\s*\(\s*;\s*;\s*\)\s*\{?\s*fork\s*\("),  # for(;;) fork();
    re.compile(r"\$0\s*(?:\||&(?!&))\s*\$0"),  # a script piping into itself
)


def format_disk(call: Call) -> None:
    """``mkfs*``, ``mkswap``, ``fdisk``, ``parted``, ``wipefs``, …: refused (they destroy a disk)."""
    raise dangerous(call.shown, "formats or partitions a disk", "Work with files inside your workspace.")


def power(call: Call) -> None:
    """``shutdown``, ``reboot``, ``halt``, ``poweroff``, ``kexec``, ``init 0``/``6``, ``systemctl
    reboot`` & co.: refused (they stop every agent's sandbox, not just this one's work)."""
    name, args = call.name, call.args
    if name in POWER or (name in ("init", "telinit") and args[:1] and args[0] in ("0", "6")) or (
        name == "systemctl" and _SYSTEMCTL_POWER.intersection(args)
    ):
        raise dangerous(call.shown, "shuts down or restarts the machine", "Stop your own processes instead.")


def kill(call: Call) -> None:
    """``killall5`` and ``kill -1``/``kill 1``: refused (they signal every process, or init)."""
    if call.name == "killall5" or _kills_everything(call.args):
        raise dangerous(call.shown, "signals every process (or init)",
                        "Kill your own processes by their pid.")


def _kills_everything(args: list[str]) -> bool:
    i = 0
    if args[:1] and args[0] in ("-s", "-n"):
        i = 2
    elif args[:1] and args[0].startswith("-") and args[0] not in ("--", "-1"):
        i = 1  # -9, -KILL, -SIGTERM
    rest = args[i:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return "-1" in rest or "1" in rest


def check_fork_bomb(text: str) -> None:
    """Refuse a script defining a function that starts copies of itself in parallel (``:(){ :|:& };:``)
    or forking in an endless loop (in any language: it is searched as text, quotes included).

    Raises:
        CommandRefused: rule ``dangerous``.
    """
    for m in _FUNCTION_DEF.finditer(text):
        name = m.group(1) or m.group(2)
        start = m.end()
        if start >= len(text) or text[start] not in "{(":
            continue
        end = closing(text, start + 1, text[start], "}" if text[start] == "{" else ")")
        body = text[start + 1 : end]
        # The function starts copies of itself in parallel: `f|f`, `f & …`.
        if re.search(rf"(?<![^\s|&;(){{}}]){re.escape(name)}\s*(?:\||&(?!&))", body):
            raise CommandRefused(
                f"command refused: it defines `{name}` to start copies of itself in parallel (a fork "
                "bomb); this is never run here. Recursive functions must not pipe into or background "
                "themselves.",
                rule="dangerous",
            )
    for pattern in _OTHER_FORK_BOMBS:
        if pattern.search(text):
            raise CommandRefused(
                "command refused: it forks in an endless loop (a fork bomb); this is never run here.",
                rule="dangerous",
            )
