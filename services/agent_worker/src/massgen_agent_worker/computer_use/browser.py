"""The ``browser`` environment of MassGen's computer-use tools: one headless Chromium page of
``display_width`` x ``display_height`` CSS pixels, driven through Playwright's async API.

Every provider's actions arrive here in one vocabulary (:data:`Action`, a dict with a ``type``):
``click`` (``x``, ``y``, ``button``, ``count``), ``move``, ``drag`` (``path`` of ``[x, y]``),
``mouse_down``/``mouse_up``, ``type`` (``text``), ``key`` (``keys``: pressed together, e.g.
``["ctrl", "a"]``), ``scroll`` (``x``, ``y``, ``dx``, ``dy`` in pixels), ``wait`` (``seconds``),
``navigate`` (``url``), ``back``, ``forward``, ``screenshot`` (nothing to do: one is taken after every
action). Coordinates are page pixels. MassGen runs Playwright's downloaded browsers; here the browser is
the system's Chromium (``MASSGEN_CHROMIUM``, default ``/usr/bin/chromium``; Playwright's own when
neither exists), since Playwright's download is not reachable from every machine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import Any

from playwright.async_api import Browser as PwBrowser
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, Playwright, async_playwright

from massgen_es.errors import ComputerActionError

Action = dict[str, Any]

MAX_WAIT_S = 10.0
"""A ``wait`` action sleeps at most this long (a model asking for minutes would hold the turn)."""
NAV_TIMEOUT_MS = 15_000
SETTLE_MS = 150
"""After each action, before waiting for the page to load: long enough for a navigation to start (MassGen
waits a whole second after every action)."""
_KEYS = {
    "enter": "Enter", "return": "Enter", "esc": "Escape", "escape": "Escape", "tab": "Tab", "space": "Space",
    "backspace": "Backspace", "delete": "Delete", "del": "Delete", "ctrl": "Control", "control": "Control",
    "alt": "Alt", "option": "Alt", "shift": "Shift", "cmd": "Meta", "command": "Meta", "meta": "Meta",
    "super": "Meta", "win": "Meta", "up": "ArrowUp", "down": "ArrowDown", "left": "ArrowLeft",
    "right": "ArrowRight", "arrowup": "ArrowUp", "arrowdown": "ArrowDown", "arrowleft": "ArrowLeft",
    "arrowright": "ArrowRight", "pageup": "PageUp", "page_up": "PageUp", "pagedown": "PageDown",
    "page_down": "PageDown", "home": "Home", "end": "End", "insert": "Insert",
}


def chromium() -> str | None:
    """The Chromium executable to launch: ``MASSGEN_CHROMIUM``, else ``/usr/bin/chromium`` when present,
    else None (Playwright's downloaded browser)."""
    configured = os.environ.get("MASSGEN_CHROMIUM")
    if configured:
        return configured
    return shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def key_name(key: str) -> str:
    """One key in Playwright's naming (``ctrl`` -> ``Control``, ``Return`` -> ``Enter``; ``a`` stays)."""
    key = key.strip()
    return _KEYS.get(key.lower().replace(" ", ""), key if len(key) == 1 else key[:1].upper() + key[1:])


def chord(keys: list[str] | str) -> str:
    """Keys pressed together as Playwright's ``Control+Shift+A``; accepts ``["ctrl", "a"]`` or ``"ctrl+a"``."""
    parts = keys if isinstance(keys, list) else [k for k in keys.replace("-", "+").split("+") if k] or [keys]
    return "+".join(key_name(str(k)) for k in parts)


class Browser:
    """An async context manager owning Playwright, the browser and one page.

    Args:
        width, height: the viewport in CSS pixels (MassGen's ``display_width``/``display_height``).
        headless: MassGen's ``headless``; a visible window needs ``DISPLAY``, so without one the
            browser is headless whatever was asked (as MassGen's Claude tool does on Linux).
        start_url: the first page (``about:blank`` when empty).

    Raises (on enter):
        ComputerActionError: Chromium could not be launched (message names the executable and the fix).
    """

    def __init__(self, width: int, height: int, headless: bool = True, start_url: str = "") -> None:
        self.width, self.height = width, height
        self.headless = headless or not os.environ.get("DISPLAY")
        self.start_url = start_url
        self._pw: Playwright | None = None
        self._browser: PwBrowser | None = None
        self._page: Page | None = None

    async def __aenter__(self) -> Browser:
        self._pw = await async_playwright().start()
        exe = chromium()
        try:
            self._browser = await self._pw.chromium.launch(executable_path=exe, headless=self.headless)
        except PlaywrightError as exc:
            await self._pw.stop()
            first = exc.message.splitlines()[0]
            raise ComputerActionError(f"cannot start Chromium ({exe or 'Playwright download'}): {first}; install it "
                                      "(scripts/browser.sh) or set MASSGEN_CHROMIUM to its path") from None
        context = await self._browser.new_context(viewport={"width": self.width, "height": self.height})
        self._page = await context.new_page()
        await self.navigate(self.start_url or "about:blank")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._browser is not None:
            await self._browser.close()
        if self._pw is not None:
            await self._pw.stop()

    @property
    def page(self) -> Page:
        """The Playwright page (inside the context manager only)."""
        assert self._page is not None, "use Browser as an async context manager"
        return self._page

    @property
    def url(self) -> str:
        """The page's current URL."""
        return self.page.url

    async def screenshot(self) -> bytes:
        """A PNG of the viewport."""
        return await self.page.screenshot(type="png")

    async def navigate(self, url: str) -> None:
        """Go to ``url`` and wait for its ``load`` event (at most :data:`NAV_TIMEOUT_MS`).

        Raises:
            ComputerActionError: no URL, or the page did not load.
        """
        if not url:
            raise ComputerActionError("navigate needs a url")
        try:
            await self.page.goto(url, wait_until="load", timeout=NAV_TIMEOUT_MS)
        except PlaywrightError as exc:
            raise ComputerActionError(f"navigating to {url} failed: {exc.message.splitlines()[0]}") from None

    async def do(self, action: Action) -> None:
        """Carry out one action of the module's vocabulary.

        Raises:
            ComputerActionError: unknown type, missing argument, or the page refused it.
        """
        kind = action.get("type")
        try:
            await self._do(str(kind), action)
        except PlaywrightError as exc:
            raise ComputerActionError(f"{kind} failed: {exc.message.splitlines()[0]}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ComputerActionError(f"{kind}: bad or missing argument ({exc})") from None
        try:  # let a navigation the action started (a click, Enter in a form) begin, then load
            await self.page.wait_for_timeout(SETTLE_MS)
            await self.page.wait_for_load_state(timeout=5_000)
        except PlaywrightError:
            pass

    async def _do(self, kind: str, a: Action) -> None:
        if not await self._pointer(kind, a):
            await self._other(kind, a)

    async def _pointer(self, kind: str, a: Action) -> bool:
        mouse = self.page.mouse
        if kind == "click":
            button = a.get("button") or "left"
            if button not in ("left", "right", "middle"):
                raise ComputerActionError(f"click: button {button!r} is not left, right or middle")
            await mouse.click(float(a["x"]), float(a["y"]), button=button, click_count=int(a.get("count", 1)))
        elif kind == "move":
            await mouse.move(float(a["x"]), float(a["y"]))
        elif kind == "drag":
            path = [(float(p[0]), float(p[1])) for p in a["path"]]
            if len(path) < 2:
                raise ComputerActionError("drag needs a path of at least two points")
            await mouse.move(*path[0])
            await mouse.down()
            for point in path[1:]:
                await mouse.move(*point)
            await mouse.up()
        elif kind == "mouse_down":
            await mouse.down()
        elif kind == "mouse_up":
            await mouse.up()
        elif kind == "scroll":
            if a.get("x") is not None and a.get("y") is not None:
                await mouse.move(float(a["x"]), float(a["y"]))
            await mouse.wheel(float(a.get("dx") or 0), float(a.get("dy") or 0))
        else:
            return False
        return True

    async def _other(self, kind: str, a: Action) -> None:
        keyboard = self.page.keyboard
        if kind == "type":
            await keyboard.type(str(a["text"]))
        elif kind == "key":
            await keyboard.press(chord(a["keys"]))
        elif kind == "wait":
            await asyncio.sleep(min(float(a.get("seconds", 1.0)), MAX_WAIT_S))
        elif kind == "navigate":
            await self.navigate(str(a.get("url") or ""))
        elif kind == "back":
            await self.page.go_back()
        elif kind == "forward":
            await self.page.go_forward()
        elif kind != "screenshot":
            raise ComputerActionError(f"unknown action {kind!r}")
