"""MassGen's computer-use bundled tools (spec §4.3): their interface, as the loader offers them.

``computer_use`` (OpenAI), ``claude_computer_use`` (Anthropic), ``gemini_computer_use`` (Gemini) and
``browser_automation`` (Playwright, driven by the calling model) are run by the agent worker
(``massgen_agent_worker.computer_use``: the model-driven ones need a provider key, which only the
worker holds). This module declares what the model sees, MassGen's parameters with its defaults, so
the loader can build the tool's schema and check ``preset_args`` without the worker's code; a test
keeps it equal to the worker's function signatures.

Environments (MassGen's): ``browser``, a Chromium page; ``linux`` (also ``ubuntu``, ``docker``, and
``mac``/``windows``, which MassGen too runs in its Linux container), a running Docker container with an X
display driven by xdotool and scrot (MassGen's ``cua-container``; ``images/cua-desktop`` here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_S, _I, _B, _O = "string", "integer", "boolean", "object"
_ENV = ("environment", _S, "browser", "Environment: `browser` (a Chromium page of the display size) or `linux` "
        "(a Docker container's X desktop, named by environment_config.container_name).")


def _size(width: int, height: int, iterations: int) -> tuple[tuple[str, str, Any, str], ...]:
    return (("display_width", _I, width, "Display width in pixels."),
            ("display_height", _I, height, "Display height in pixels."),
            ("max_iterations", _I, iterations, "Most requests to the computer-use model before giving up."))


_URL = ("initial_url", _S, None, "URL to start at (default: a blank page); not in MassGen's signature of this "
        "tool: its browser has no address bar the model could type into.")
_CFG = ("environment_config", _O, None, "Browser: `headless` (bool), `browser_type` (`chromium`); linux: "
        "`container_name` (default cua-container), `display` (default :99).")

TOOLS: Mapping[str, tuple[str, tuple[tuple[str, str, Any, str], ...]]] = {
    "computer_use": (
        "Execute a computer automation task using OpenAI's computer-use-preview model: it controls a web "
        "browser (click, type, scroll, navigate) step by step from screenshots and reports what it did.",
        (("task", _S, ..., "Description of the task to perform."), _ENV, *_size(1920, 1080, 50),
         ("include_reasoning", _B, True, "Whether to include reasoning summaries."),
         ("initial_screenshot_path", _S, None, "Not supported here; leave it out."),
         _CFG, ("model", _S, "computer-use-preview", "Model that controls the computer."), _URL)),
    "claude_computer_use": (
        "Automate browser tasks using Claude's Computer Use: Claude takes screenshots, clicks, types, scrolls "
        "and navigates until the task is done.",
        (("query", _S, ..., "The task description for Claude to execute."), _ENV, *_size(1024, 768, 25),
         ("headless", _B, True, "Run the browser headless."),
         ("browser_type", _S, "chromium", "Browser to use (`chromium`)."), _CFG,
         ("model", _S, "claude-sonnet-4-5", "Claude model that controls the computer."), _URL)),
    "gemini_computer_use": (
        "Execute a browser automation task using Google's Gemini 2.5 Computer Use model, which controls a "
        "browser autonomously to complete it.",
        (("task", _S, ..., "Description of the task to perform."), _ENV, *_size(1440, 900, 25),
         ("include_thoughts", _B, True, "Whether to include the model's thinking."),
         ("initial_url", _S, None, "URL to start at (default: a blank page)."), _CFG,
         ("excluded_functions", "array", None, "Computer-use function names the model may not use."),
         ("model", _S, "gemini-2.5-computer-use-preview-10-2025", "Gemini computer-use model."))),
    "browser_automation": (
        "Perform one browser automation action with Playwright: navigate to a URL, click or type into a CSS "
        "selector, extract text, or take a screenshot.",
        (("task", _S, ..., "Description of what you are doing."), ("url", _S, None, "URL to navigate to first."),
         ("action", _S, "navigate", "`navigate`, `click`, `type`, `extract` or `screenshot`."),
         ("selector", _S, None, "CSS selector (click, type, extract)."), ("text", _S, None, "Text to type."),
         ("headless", _B, False, "Run the browser headless."),
         ("screenshot", _B, True, "Take a screenshot after the action."),
         ("output_filename", _S, None, "Not supported here; leave it out."))),
}
"""By MassGen's function name: the description and each parameter as ``(name, JSON type, default,
description)``; a default of ``...`` means required."""

DESKTOP_ENVIRONMENTS = ("linux", "ubuntu", "docker", "mac", "windows")
"""MassGen's environments that run in a Docker container's X desktop (``ubuntu``/``docker`` are its aliases
of ``linux``; ``mac``/``windows`` it also runs in the Linux container)."""


def environment_problem(environment: object) -> str:
    """Why ``environment`` cannot run here, or ``""`` for ``browser`` and the desktop ones."""
    if environment == "browser" or environment in DESKTOP_ENVIRONMENTS:
        return ""
    return f"environment {environment!r} is not one of MassGen's (browser, linux, mac, windows); use \"browser\""


def browser_problem(browser_type: object) -> str:
    """Why ``browser_type`` cannot run here, or ``""`` for ``chromium``."""
    if browser_type in ("chromium", None):
        return ""
    return f"browser_type {browser_type!r} is not installed here (only Chromium is); use \"chromium\""


def parameters(function: str) -> list[str]:
    """The parameter names of ``function`` (a key of :data:`TOOLS`)."""
    return [p[0] for p in TOOLS[function][1]]


def schema(function: str, hidden: set[str]) -> dict[str, Any]:
    """The JSON schema of ``function``'s arguments without ``hidden`` ones (its ``preset_args``)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, kind, default, description in TOOLS[function][1]:
        if name in hidden:
            continue
        prop: dict[str, Any] = {"type": kind, "description": description}
        if kind == "array":
            prop["items"] = {"type": _S}
        if default is ...:
            required.append(name)
        elif default is not None:
            prop["default"] = default
        properties[name] = prop
    return {"type": "object", "properties": properties, "required": required}


def preset_problem(function: str, preset: Mapping[str, Any]) -> str:
    """What is wrong with a tool's ``preset_args`` (an unknown parameter, an environment not built
    here), as ``"<key>: <why>"``, or ``""``."""
    known = parameters(function)
    for key in preset:
        if key not in known:
            return f"{key}: `{function}` has no parameter `{key}`; its parameters are: {', '.join(known)}"
    problem = environment_problem(preset.get("environment", "browser"))
    if problem:
        return f"environment: {problem}"
    if preset.get("environment", "browser") != "browser":
        return ""
    config = preset.get("environment_config")
    browser = preset.get("browser_type", config.get("browser_type") if isinstance(config, Mapping) else None)
    problem = browser_problem(browser)
    return f"browser_type: {problem}" if problem else ""
