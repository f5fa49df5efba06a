"""Rules for commands that need more rights than the sandbox user has: ``su``/``runuser``, and
``chmod``/``chown``/``chgrp`` (allowed inside the workspace). Without ``allow_sudo`` they are refused
after the rule, with the ``sudo``-like wrappers (see :mod:`massgen_executor.filters.wrappers`)."""

from __future__ import annotations

from massgen_executor.filters.call import Call, flag, options, value
from massgen_executor.filters.errors import dangerous
from massgen_executor.filters.paths import is_root, resolve

SWITCH_USER = frozenset({"su", "runuser"})
PERMISSIONS = frozenset({"chmod", "chown", "chgrp"})


def switch_user(call: Call) -> None:
    """``su``/``runuser``: needs sudo rights; with them, a ``-c``/``--command`` script is checked."""
    call.privilege = call.privilege or call.name
    if not call.ctx.allow_sudo:
        return
    args = call.args
    for k, a in enumerate(args):
        if a in ("-c", "--command") and k + 1 < len(args):
            call.check_script(args[k + 1])
        elif a.startswith("--command="):
            call.check_script(a.partition("=")[2])


def permissions(call: Call) -> None:
    """``chmod``/``chown``/``chgrp``: refuses a recursive change of the root filesystem (even with
    sudo rights: it breaks the machine); the files changed must otherwise be in the workspace unless
    sudo is allowed."""
    operands, opts, _ = options(call.args, "", frozenset({"reference", "from"}))
    letters = {o for o, _ in opts if len(o) == 1}
    # `chmod -x f`: a mode that looks like options; otherwise the first operand is the mode/owner.
    mode_in_options = call.name == "chmod" and not letters <= set("cfvRhHLP")
    files = operands if mode_in_options or value(opts, "reference") else operands[1:]
    if flag(opts, "R", "recursive") and any(is_root(resolve(f, call.ctx)) for f in files):
        raise dangerous(call.shown, "recursively changes the whole filesystem",
                        "Change files inside your workspace instead.")
    call.permission_targets = files
