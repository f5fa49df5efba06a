"""Command filtering for ``execute_command`` (MassGen spec §4.1; issue #5 item 4).

:func:`check_command` applies three layers in order; the first that objects raises
:class:`CommandRefused`, whose message goes back to the model as the tool error:

1. the sanitizer (MassGen's ``_sanitize_command``, made robust): recursive delete of ``/``, ``/*`` or
   ``~``, fork bombs, ``dd``/``mkfs``/``shred``/redirections onto disk devices, ``mv`` of ``/dev/null``,
   shutdown and reboot, killing every process; and, unless sudo is allowed, ``sudo``/``su``/``doas``
   and ``chmod``/``chown`` of paths outside the workspace;
2. writes outside the workspace: the targets of redirections (``>``, ``>>``, ``&>``, ``<>``), ``tee``,
   ``cp``/``mv``/``install``/``ln``, ``touch``, ``mkdir``, ``rm``/``rmdir``/``unlink``/``shred``/
   ``truncate``, ``dd of=`` and ``find … -delete`` must be inside the workspace (or an extra writable
   root); an absolute path may also be under ``/tmp``; a relative path may not climb out with ``..``;
3. the config's regex lists: ``command_line_blocked_commands`` (refused when any pattern
   ``re.search``-es the command) and ``command_line_allowed_commands`` (when given, the command must
   ``re.match`` one, anchored at its start, as in MassGen).

The command is parsed, not grepped: ``shlex`` tokens, split into simple commands at ``;``, ``&&``,
``||``, ``|``, ``&``, newlines and parentheses, with quotes, escapes, comments and here-documents
understood, so ``rm -r -f /``, ``sudo  rm --recursive --force /`` and ``"rm" -fr //`` are all seen as
what they are. Wrappers (``sudo``, ``env``, ``nohup``, ``timeout``, ``xargs``, …) are looked through,
and ``sh -c``/``bash -c`` strings, ``eval``, ``$(…)``, backquotes, process substitutions, here-documents
fed to a shell and ``find -exec`` commands are checked recursively.

This is a **best-effort** check of what a command says, not of what it does: variables
(``$X -rf /``), programs that write files themselves (``python -c "open('/etc/x','w')"``), scripts
written first and run later, and deliberate obfuscation all get past it. It errs towards refusing: a
write whose target depends on a variable or a substitution is refused, since it cannot be placed. The
real boundary is the sandbox (Docker mode) and, in local mode, the limits of
:mod:`massgen_executor.local`.

Modules: :mod:`~.lexer` (shell text → simple commands), :mod:`~.check` (the dispatcher and the checks
every command gets), one rule module per command family (:mod:`~.files`, :mod:`~.shells`,
:mod:`~.privilege`, :mod:`~.system`; :mod:`~.wrappers` for the words before a command),
:mod:`~.paths` (placing targets), :mod:`~.patterns` (the config's regex lists), :mod:`~.errors`.
"""

from massgen_executor.filters.check import MAX_NESTING, check_command
from massgen_executor.filters.errors import CommandRefused
from massgen_executor.filters.paths import TMP_DIR
from massgen_executor.filters.patterns import ALLOWED_KEY, BLOCKED_KEY, validate_patterns

__all__ = [
    "ALLOWED_KEY",
    "BLOCKED_KEY",
    "MAX_NESTING",
    "TMP_DIR",
    "CommandRefused",
    "check_command",
    "validate_patterns",
]
