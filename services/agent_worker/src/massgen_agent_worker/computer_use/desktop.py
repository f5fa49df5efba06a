"""MassGen's ``linux`` environment of the computer-use tools: a running Docker container with an X
display (MassGen's ``cua-container``, DISPLAY ``:99``), driven with ``docker exec``: ``xdotool`` for the
mouse and keyboard, ``scrot`` for screenshots, as MassGen's tools do. The container is the user's (made
by MassGen's ``scripts/setup_docker_cua.sh`` there, ``images/cua-desktop`` + ``scripts/cua-image.sh``
here); it is used, never created or stopped. The worker needs the ``docker`` command and access to the
engine.

Same interface as :class:`.browser.Browser` (``do``, ``screenshot``, ``url``); there is no page, so
``navigate``/``back``/``forward`` are refused, and ``url`` is empty.
"""

from __future__ import annotations

import asyncio
import shutil

from massgen_agent_worker.computer_use.browser import MAX_WAIT_S, Action
from massgen_es.errors import ComputerActionError

EXEC_TIMEOUT_S = 30.0
_KEYS = {
    "enter": "Return", "return": "Return", "esc": "Escape", "escape": "Escape", "tab": "Tab", "space": "space",
    "backspace": "BackSpace", "delete": "Delete", "del": "Delete", "ctrl": "ctrl", "control": "ctrl",
    "controlormeta": "ctrl", "alt": "alt", "option": "alt", "shift": "shift", "cmd": "super", "command": "super",
    "meta": "super", "super": "super", "win": "super", "up": "Up", "down": "Down", "left": "Left", "right": "Right",
    "arrowup": "Up", "arrowdown": "Down", "arrowleft": "Left", "arrowright": "Right", "pageup": "Page_Up",
    "page_up": "Page_Up", "pagedown": "Page_Down", "page_down": "Page_Down", "home": "Home", "end": "End",
}
_BUTTONS = {"left": "1", "middle": "2", "right": "3"}


def xdotool_chord(keys: list[str] | str) -> str:
    """Keys pressed together in xdotool's naming: ``["ctrl", "a"]`` or ``"Control+A"`` -> ``ctrl+a``."""
    parts = keys if isinstance(keys, list) else [k for k in keys.split("+") if k] or [keys]
    out = []
    for key in (str(k).strip() for k in parts):
        mapped = _KEYS.get(key.lower().replace(" ", ""))
        out.append(mapped or (key.lower() if len(key) == 1 and len(parts) > 1 else key))
    return "+".join(out)


class Desktop:
    """An async context manager over a running container's X display.

    Args:
        container: the container's name (MassGen's ``environment_config.container_name``).
        display: its X display (``environment_config.display``, default ``:99``).

    Raises (on enter):
        ComputerActionError: no ``docker`` command, no engine, or the container is not running (the message
            names it and the fix).
    """

    def __init__(self, container: str, display: str = ":99") -> None:
        self.container, self.display = container, display

    async def _run(self, *args: str) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            "docker", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), EXEC_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ComputerActionError(f"docker {args[0]} took longer than {EXEC_TIMEOUT_S:g} s") from None
        if proc.returncode != 0:
            raise ComputerActionError(err.decode(errors="replace").strip().splitlines()[-1:][0] if err.strip()
                              else f"docker {args[0]} exited {proc.returncode}")
        return out

    async def _x(self, *command: str) -> bytes:
        return await self._run("exec", "-e", f"DISPLAY={self.display}", self.container, *command)

    async def __aenter__(self) -> Desktop:
        if shutil.which("docker") is None:
            raise ComputerActionError("the linux environment drives a Docker container, and the agent worker has no "
                              "`docker` command; install the Docker CLI where the worker runs")
        try:
            state = (await self._run("inspect", "-f", "{{.State.Running}}", self.container)).decode().strip()
        except ComputerActionError as exc:
            raise ComputerActionError(f"Docker container {self.container!r} not found ({exc}); create and start it "
                              "first (an X display with xdotool and scrot: images/cua-desktop, "
                              "scripts/cua-image.sh)") from None
        if state != "true":
            raise ComputerActionError(f"Docker container {self.container!r} is not running; start it first")
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None  # the container is the user's: left running, as MassGen does

    @property
    def url(self) -> str:
        """No page in a desktop: empty."""
        return ""

    async def screenshot(self) -> bytes:
        """A PNG of the whole X screen (``scrot`` in the container)."""
        return await self._x("sh", "-c", "scrot -o /tmp/massgen-screenshot.png && cat /tmp/massgen-screenshot.png")

    async def do(self, action: Action) -> None:
        """Carry out one action (:mod:`.browser`'s vocabulary) with xdotool.

        Raises:
            ComputerActionError: unknown type, missing argument, no page to navigate, or xdotool failed.
        """
        kind = str(action.get("type"))
        try:
            command = self._command(kind, action)
        except (KeyError, TypeError, ValueError) as exc:
            raise ComputerActionError(f"{kind}: bad or missing argument ({exc})") from None
        if kind == "wait":
            await asyncio.sleep(min(float(action.get("seconds", 1.0)), MAX_WAIT_S))
        elif command:
            await self._x("xdotool", *command)

    def _command(self, kind: str, a: Action) -> list[str]:
        def xy(x: object, y: object) -> list[str]:
            return ["mousemove", str(round(float(x))), str(round(float(y)))]  # type: ignore[arg-type]

        if kind == "click":
            button = _BUTTONS.get(str(a.get("button") or "left"))
            if button is None:
                raise ComputerActionError(f"click: button {a.get('button')!r} is not left, right or middle")
            return [*xy(a["x"], a["y"]), "click", "--repeat", str(int(a.get("count", 1))), button]
        if kind == "move":
            return xy(a["x"], a["y"])
        if kind == "drag":
            path = list(a["path"])
            if len(path) < 2:
                raise ComputerActionError("drag needs a path of at least two points")
            steps = [*xy(*path[0]), "mousedown", "1"]
            for point in path[1:]:
                steps += xy(*point)
            return [*steps, "mouseup", "1"]
        if kind in ("mouse_down", "mouse_up"):
            return [kind.replace("_", ""), "1"]
        if kind == "type":
            return ["type", "--delay", "12", "--", str(a["text"])]
        if kind == "key":
            return ["key", "--", xdotool_chord(a["keys"])]
        if kind == "scroll":
            dx, dy = float(a.get("dx") or 0), float(a.get("dy") or 0)
            where = xy(a["x"], a["y"]) if a.get("x") is not None and a.get("y") is not None else []
            button = ("5" if dy > 0 else "4") if dy else ("7" if dx > 0 else "6")
            clicks = max(1, round(abs(dy or dx) / 100))
            return [*where, "click", "--repeat", str(clicks), button]
        if kind in ("wait", "screenshot"):
            return []
        if kind in ("navigate", "back", "forward"):
            raise ComputerActionError(f"{kind}: the linux environment is a desktop, not a browser page; open a browser "
                              "in it and use the mouse and keyboard")
        raise ComputerActionError(f"unknown action {kind!r}")
