"""How the executor runs one custom-tool call in the agent's sandbox: ``python3 -c`` a small runner.

The runner gets the tool file's text, the function name and the arguments (preset_args merged in) as
one base64 JSON argument, loads the file as a module, calls the function (``agent_cwd`` added when the
function accepts it), awaits a coroutine, and prints one marked JSON line on stdout: the result's text
(MassGen's ``ExecutionResult``: the text of its output blocks, ``is_log`` blocks left out; ``str()``
of anything else), or the error. What the function prints goes to stderr, so it cannot fake a result.

MassGen's bundled files import ``massgen.tool._result``; when no ``massgen`` package is importable the
runner provides a minimal one (``ExecutionResult``, ``TextContent``, ``ImageContent``, ``AudioContent``),
so a tool written for MassGen runs unchanged.
"""

from __future__ import annotations

import base64
import json
import shlex
from typing import Any

MARKER = "@@massgen-custom-tool-result@@ "
MAX_ARGV_BYTES = 120_000
"""One argument of a process may be at most 128 KiB on Linux (``MAX_ARG_STRLEN``)."""

RUNNER = r'''
import asyncio, base64, contextlib, inspect, json, sys, traceback, types
p = json.loads(base64.b64decode(sys.argv[1]))
if p.get("env_on_stdin"):
    import os
    os.environ.update(json.loads(sys.stdin.readline() or "{}"))
out = sys.stdout
def emit(**kw):
    out.write("\n" + MARKER + json.dumps(kw) + "\n"); out.flush()
try:
    import massgen.tool._result
except Exception:
    class _Block:
        def __init__(self, data="", **kw):
            self.data = data; self.__dict__.update(kw)
    class TextContent(_Block): pass
    class ImageContent(_Block): pass
    class AudioContent(_Block): pass
    class ExecutionResult:
        def __init__(self, output_blocks=None, **kw):
            self.output_blocks = list(output_blocks or []); self.__dict__.update(kw)
    mods = [types.ModuleType(n) for n in ("massgen", "massgen.tool", "massgen.tool._result")]
    for m in mods[1:]:
        m.ExecutionResult, m.TextContent, m.ImageContent, m.AudioContent = (
            ExecutionResult, TextContent, ImageContent, AudioContent)
    mods[0].tool, mods[1]._result = mods[1], mods[2]
    sys.modules.update({m.__name__: m for m in mods})
def text_of(r):
    if r is None:
        return ""
    blocks = getattr(r, "output_blocks", None)
    if blocks is None:
        return r if isinstance(r, str) else json.dumps(r) if isinstance(r, (dict, list)) else str(r)
    parts = []
    for b in blocks:
        if getattr(b, "is_log", False):
            continue
        data = getattr(b, "data", b)
        parts.append("[" + type(b).__name__ + " omitted]" if type(b).__name__ in ("ImageContent", "AudioContent")
                     else data if isinstance(data, str) else str(data))
    return "\n".join(parts)
async def call(fn, kwargs):
    r = fn(**kwargs)
    if inspect.isawaitable(r):
        r = await r
    if inspect.isasyncgen(r):
        last = None
        async for last in r:
            pass
        r = last
    elif inspect.isgenerator(r):
        last = None
        for last in r:
            pass
        r = last
    return r
try:
    with contextlib.redirect_stdout(sys.stderr):
        mod = types.ModuleType("custom_tool_" + p["function"])
        mod.__file__ = p["filename"]
        sys.modules[mod.__name__] = mod
        exec(compile(p["source"], p["filename"], "exec"), mod.__dict__)
        fn = getattr(mod, p["function"])
        kwargs = dict(p["arguments"])
        params = inspect.signature(fn).parameters
        if "agent_cwd" in params or any(v.kind is v.VAR_KEYWORD for v in params.values()):
            kwargs["agent_cwd"] = p["agent_cwd"]  # never the model's: it is not in the schema
        try:
            inspect.signature(fn).bind(**kwargs)
        except TypeError as exc:
            emit(ok=False, error="invalid arguments for " + p["function"] + ": " + str(exc)); sys.exit(0)
        text = text_of(asyncio.run(call(fn, kwargs)))
except SystemExit:
    raise
except BaseException as exc:
    tb = traceback.extract_tb(exc.__traceback__)
    where = next((f"{f.filename}:{f.lineno}" for f in reversed(tb) if f.filename == p["filename"]), "")
    emit(ok=False, error=type(exc).__name__ + ": " + str(exc) + (" (at " + where + ")" if where else ""))
else:
    emit(ok=True, text=text)
'''.replace("MARKER", repr(MARKER))


def command(
    source: str, filename: str, function: str, arguments: dict[str, Any], agent_cwd: str, env_on_stdin: bool = False
) -> str:
    """The ``/bin/sh -c`` command line that runs one call (``python3`` of the sandbox). With
    ``env_on_stdin`` the runner first reads one JSON line of environment variables from stdin (values
    that must not show in the command line, such as a token).

    Raises:
        ValueError: the file and arguments do not fit in one process argument (:data:`MAX_ARGV_BYTES`).
    """
    payload = json.dumps({"source": source, "filename": filename, "function": function,
                          "arguments": arguments, "agent_cwd": agent_cwd, "env_on_stdin": env_on_stdin},
                         ensure_ascii=False)
    encoded = base64.b64encode(payload.encode()).decode()
    line = f"python3 -c {shlex.quote(RUNNER)} {encoded}"
    if len(line) > MAX_ARGV_BYTES:
        raise ValueError(f"the tool file and its arguments are over {MAX_ARGV_BYTES // 1000} kB once encoded")
    return line


def result(stdout: str) -> dict[str, Any] | None:
    """The runner's ``{"ok": True, "text": ...}`` or ``{"ok": False, "error": ...}``; None if it printed none
    (it was killed, or python3 is missing)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            try:
                found = json.loads(line[len(MARKER):])
            except json.JSONDecodeError:
                return None
            return found if isinstance(found, dict) else None
    return None
