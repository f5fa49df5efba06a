"""Each provider's part of the computer-use loop (:class:`.loop.Driver`), through its official SDK:

- OpenAI (``computer_use``): the Responses API with the ``computer_use_preview`` tool; ``computer_call``
  output items, answered with ``computer_call_output`` screenshots on ``previous_response_id``; pending
  safety checks are acknowledged, as MassGen does.
- Anthropic (``claude_computer_use``): the beta Messages API with the ``computer_20250124`` tool
  (beta ``computer-use-2025-01-24``); ``tool_use`` blocks, answered with ``tool_result`` blocks holding
  the screenshot (``is_error`` and the reason when an action failed).
- Gemini (``gemini_computer_use``): ``generate_content`` with the ``computer_use`` tool
  (``ENVIRONMENT_BROWSER``); function calls with coordinates on a 0-999 grid, answered with function
  responses (the URL, the error) and the screenshot.

Action names and arguments follow each provider's computer-use documentation (and MassGen's tools in
``massgen/tool/_computer_use``, ``_claude_computer_use``, ``_gemini_computer_use``).
"""

from __future__ import annotations

import base64
from typing import Any

import anthropic
import openai
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from massgen_agent_worker.computer_use.browser import Action
from massgen_agent_worker.computer_use.loop import Call, Outcome, Turn
from massgen_es.errors import ComputerUseError


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _xy(args: dict[str, Any], key: str = "coordinate") -> tuple[Any, Any]:
    point = args.get(key)
    if not (isinstance(point, list | tuple) and len(point) == 2):
        raise ValueError(f"`{key}` must be [x, y]")
    return point[0], point[1]


# ---------------------------------------------------------------- OpenAI


def openai_actions(action: dict[str, Any]) -> list[Action]:
    """A ``computer_call``'s ``action`` in :mod:`.browser`'s vocabulary (OpenAI's CUA action types)."""
    kind = action.get("type")
    if kind in ("click", "double_click"):
        return [{"type": "click", "x": action.get("x"), "y": action.get("y"), "button": action.get("button") or "left",
                 "count": 2 if kind == "double_click" else 1}]
    if kind == "scroll":
        return [{"type": "scroll", "x": action.get("x"), "y": action.get("y"), "dx": action.get("scroll_x") or 0,
                 "dy": action.get("scroll_y") or 0}]
    if kind == "keypress":
        return [{"type": "key", "keys": list(action.get("keys") or [])}]
    if kind == "type":
        return [{"type": "type", "text": action.get("text") or ""}]
    if kind == "move":
        return [{"type": "move", "x": action.get("x"), "y": action.get("y")}]
    if kind == "drag":
        return [{"type": "drag", "path": [[p.get("x"), p.get("y")] for p in action.get("path") or ()]}]
    if kind == "wait":
        return [{"type": "wait", "seconds": 2.0}]
    if kind == "screenshot":
        return [{"type": "screenshot"}]
    return [{"type": str(kind)}]  # the browser refuses it by name


class OpenAIDriver:
    """``computer-use-preview`` on the Responses API (MassGen's ``computer_use``)."""

    name = "computer_use"
    reports_errors = False

    def __init__(self, client: openai.AsyncOpenAI, model: str, width: int, height: int, reasoning: bool,
                 environment: str = "browser") -> None:
        self.client, self.model = client, model
        self.tool = {"type": "computer_use_preview", "display_width": width, "display_height": height,
                     "environment": environment}
        self.reasoning = reasoning
        self.previous = ""
        self.checks: dict[str, list[dict[str, Any]]] = {}

    async def _create(self, **kw: Any) -> Turn:
        try:
            response = await self.client.responses.create(model=self.model, tools=[self.tool],  # type: ignore[list-item]
                                                           truncation="auto", **kw)
        except openai.APIError as exc:
            raise ComputerUseError(f"the OpenAI Responses API refused the request: {exc.message}") from None
        self.previous = response.id
        calls: list[Call] = []
        for item in response.output:
            if item.type == "computer_call":
                raw = item.action.model_dump(exclude_none=True)
                self.checks[item.call_id] = [c.model_dump(exclude_none=True) for c in item.pending_safety_checks]
                calls.append(Call(item.call_id, "computer", openai_actions(raw), raw))
        return Turn(calls, response.output_text)

    async def first(self, task: str, screenshot: bytes) -> Turn:
        """The first request: the task (and for Gemini the first screenshot)."""
        extra: dict[str, Any] = {"reasoning": {"summary": "concise"}} if self.reasoning else {}
        return await self._create(input=[{"role": "user", "content": [{"type": "input_text", "text": task}]}], **extra)

    async def next(self, outcomes: list[Outcome]) -> Turn:
        """The next request: each outcome's screenshot (and error) for its call."""
        items: list[dict[str, Any]] = []
        for o in outcomes:
            item: dict[str, Any] = {"type": "computer_call_output", "call_id": o.call.id,
                                    "output": {"type": "computer_screenshot", "image_url": _data_url(o.screenshot)}}
            if o.url:  # a browser's page; a desktop has none
                item["current_url"] = o.url
            if self.checks.get(o.call.id):
                item["acknowledged_safety_checks"] = self.checks[o.call.id]
            items.append(item)
        return await self._create(previous_response_id=self.previous, input=items)  # type: ignore[arg-type]


# ---------------------------------------------------------------- Anthropic

CLAUDE_BETA = "computer-use-2025-01-24"


def claude_actions(args: dict[str, Any]) -> list[Action]:
    """A ``computer`` tool_use's input (``computer_20250124`` actions) in :mod:`.browser`'s vocabulary.

    Raises:
        ValueError: a coordinate is missing or malformed.
    """
    kind = args.get("action")
    clicks = {"left_click": ("left", 1), "right_click": ("right", 1), "middle_click": ("middle", 1),
              "double_click": ("left", 2), "triple_click": ("left", 3)}
    if kind in clicks:
        button, count = clicks[kind]
        x, y = _xy(args)
        return [{"type": "click", "x": x, "y": y, "button": button, "count": count}]
    if kind == "mouse_move":
        x, y = _xy(args)
        return [{"type": "move", "x": x, "y": y}]
    if kind == "left_click_drag":
        start = args.get("start_coordinate") or args.get("coordinate")
        end = args.get("coordinate2") if args.get("start_coordinate") is None else args.get("coordinate")
        return [{"type": "drag", "path": [start, end]}]
    if kind in ("left_mouse_down", "left_mouse_up"):
        return [{"type": "mouse_down" if kind == "left_mouse_down" else "mouse_up"}]
    if kind == "type":
        return [{"type": "type", "text": args.get("text") or ""}]
    if kind in ("key", "hold_key"):
        return [{"type": "key", "keys": str(args.get("text") or "")}]
    if kind == "scroll":
        direction = args.get("scroll_direction") or args.get("direction") or "down"
        amount = float(args.get("scroll_amount") or args.get("amount") or 5) * 100
        dx, dy = {"down": (0, amount), "up": (0, -amount), "left": (-amount, 0), "right": (amount, 0)}.get(
            direction, (0, amount))
        point = args.get("coordinate")
        x, y = (point[0], point[1]) if isinstance(point, list) and len(point) == 2 else (None, None)
        return [{"type": "scroll", "x": x, "y": y, "dx": dx, "dy": dy}]
    if kind == "wait":
        return [{"type": "wait", "seconds": float(args.get("duration") or 1)}]
    if kind in ("screenshot", "cursor_position"):
        return [{"type": "screenshot"}]
    return [{"type": str(kind)}]


class ClaudeDriver:
    """Anthropic's computer-use beta tool (MassGen's ``claude_computer_use``)."""

    name = "claude_computer_use"
    reports_errors = True

    def __init__(self, client: anthropic.AsyncAnthropic, model: str, width: int, height: int,
                 max_tokens: int = 4096) -> None:
        self.client, self.model, self.max_tokens = client, model, max_tokens
        self.tools = [{"type": "computer_20250124", "name": "computer", "display_width_px": width,
                       "display_height_px": height, "display_number": 1}]
        self.messages: list[dict[str, Any]] = []

    async def _create(self) -> Turn:
        try:
            reply = await self.client.beta.messages.create(
                model=self.model, max_tokens=self.max_tokens, tools=self.tools,  # type: ignore[arg-type]
                betas=[CLAUDE_BETA], messages=self.messages)  # type: ignore[arg-type]
        except anthropic.APIError as exc:
            raise ComputerUseError(f"the Anthropic API refused the request: {exc.message}") from None
        self.messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]})
        calls: list[Call] = []
        text = "".join(b.text for b in reply.content if b.type == "text")
        for block in reply.content:
            if block.type != "tool_use":
                continue
            args = block.input if isinstance(block.input, dict) else {}
            call = Call(block.id, block.name, [], {"name": block.name, **args})
            if block.name != "computer":
                call.error = f"the tool {block.name!r} is not offered here; use `computer`"
            else:
                try:
                    call.actions = claude_actions(args)
                except ValueError as exc:
                    call.error = f"{args.get('action')}: {exc}"
            calls.append(call)
        return Turn(calls, text)

    async def first(self, task: str, screenshot: bytes) -> Turn:
        """The first request: the task (and for Gemini the first screenshot)."""
        self.messages = [{"role": "user", "content": task}]
        return await self._create()

    async def next(self, outcomes: list[Outcome]) -> Turn:
        """The next request: each outcome's screenshot (and error) for its call."""
        results: list[dict[str, Any]] = []
        for o in outcomes:
            content: list[dict[str, Any]] = [{"type": "image", "source": {
                "type": "base64", "media_type": "image/png", "data": base64.b64encode(o.screenshot).decode()}}]
            if o.error:
                content.insert(0, {"type": "text", "text": f"Error: {o.error}"})
            results.append({"type": "tool_result", "tool_use_id": o.call.id, "content": content,
                            **({"is_error": True} if o.error else {})})
        self.messages.append({"role": "user", "content": results})
        return await self._create()


# ---------------------------------------------------------------- Gemini

GEMINI_MODEL = "gemini-2.5-computer-use-preview-10-2025"


_FIXED: dict[str, list[Action]] = {
    "open_web_browser": [],  # the browser is open already
    "search": [{"type": "navigate", "url": "https://www.google.com"}],  # Gemini's "go to a search engine"
    "go_back": [{"type": "back"}], "go_forward": [{"type": "forward"}],
    "wait_5_seconds": [{"type": "wait", "seconds": 5}],
}


def gemini_actions(name: str, args: dict[str, Any], width: int, height: int) -> list[Action]:
    """A Gemini computer-use function call in :mod:`.browser`'s vocabulary; Gemini's ``x``/``y`` are on
    a 0-999 grid over the screen, turned into pixels here."""

    def px(key: str, size: int) -> int:
        return int(float(args.get(key, 0)) / 1000 * size)

    def scroll(direction: str, amount: float) -> tuple[float, float]:
        return {"down": (0, amount), "up": (0, -amount), "left": (-amount, 0), "right": (amount, 0)}.get(
            direction, (0, amount))

    if name in _FIXED:
        return list(_FIXED[name])
    if name in ("click_at", "hover_at"):
        point = {"x": px("x", width), "y": px("y", height)}
        return [{"type": "click", **point} if name == "click_at" else {"type": "move", **point}]
    if name == "type_text_at":
        out: list[Action] = [{"type": "click", "x": px("x", width), "y": px("y", height)}]
        if args.get("clear_before_typing", True):
            out += [{"type": "key", "keys": "ControlOrMeta+a"}, {"type": "key", "keys": "Backspace"}]
        out.append({"type": "type", "text": str(args.get("text") or "")})
        if args.get("press_enter", True):
            out.append({"type": "key", "keys": "Enter"})
        return out
    if name == "key_combination":
        return [{"type": "key", "keys": str(args.get("keys") or "")}]
    if name == "scroll_document":
        dx, dy = scroll(str(args.get("direction") or "down"), 500)
        return [{"type": "scroll", "dx": dx, "dy": dy}]
    if name == "scroll_at":
        dx, dy = scroll(str(args.get("direction") or "down"), px("magnitude", height) if "magnitude" in args else 720)
        return [{"type": "scroll", "x": px("x", width), "y": px("y", height), "dx": dx, "dy": dy}]
    if name == "navigate":
        return [{"type": "navigate", "url": str(args.get("url") or "")}]
    if name == "drag_and_drop":
        return [{"type": "drag", "path": [[px("x", width), px("y", height)],
                                          [px("destination_x", width), px("destination_y", height)]]}]
    return [{"type": name}]


class GeminiDriver:
    """Gemini's computer-use tool (MassGen's ``gemini_computer_use``)."""

    name = "gemini_computer_use"
    reports_errors = True

    def __init__(self, client: genai.Client, model: str, width: int, height: int, include_thoughts: bool,
                 excluded: list[str]) -> None:
        self.client, self.model, self.width, self.height = client, model, width, height
        use = types.ComputerUse(environment=types.Environment.ENVIRONMENT_BROWSER,
                                excluded_predefined_functions=excluded or None)
        self.config = types.GenerateContentConfig(
            tools=[types.Tool(computer_use=use)],
            thinking_config=types.ThinkingConfig(include_thoughts=True) if include_thoughts else None)
        self.contents: list[types.Content] = []

    async def _create(self) -> Turn:
        try:
            response = await self.client.aio.models.generate_content(
                model=self.model, contents=self.contents, config=self.config)  # type: ignore[arg-type]
        except genai_errors.APIError as exc:
            raise ComputerUseError(f"the Gemini API refused the request: {exc.code} {exc.message}") from None
        content = response.candidates[0].content if response.candidates else None
        if content is None:
            return Turn([], "")
        self.contents.append(content)
        calls: list[Call] = []
        for i, part in enumerate(content.parts or ()):
            fc = part.function_call
            if fc is None or not fc.name:
                continue
            args = dict(fc.args or {})
            calls.append(Call(fc.id or f"{fc.name}-{len(self.contents)}-{i}", fc.name,
                              gemini_actions(fc.name, args, self.width, self.height), {"name": fc.name, **args}))
        text = " ".join(p.text for p in content.parts or () if p.text and not p.thought)
        return Turn(calls, text)

    async def first(self, task: str, screenshot: bytes) -> Turn:
        """The first request: the task (and for Gemini the first screenshot)."""
        self.contents = [types.Content(role="user", parts=[
            types.Part(text=task), types.Part.from_bytes(data=screenshot, mime_type="image/png")])]
        return await self._create()

    async def next(self, outcomes: list[Outcome]) -> Turn:
        """The next request: each outcome's screenshot (and error) for its call."""
        parts = [types.Part(function_response=types.FunctionResponse(
            name=o.call.name, id=o.call.id if not o.call.id.startswith(f"{o.call.name}-") else None,
            response={"url": o.url, **({"error": o.error} if o.error else {})})) for o in outcomes]
        parts.append(types.Part.from_bytes(data=outcomes[-1].screenshot, mime_type="image/png"))
        self.contents.append(types.Content(role="user", parts=parts))
        return await self._create()
