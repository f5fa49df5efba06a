"""MassGen's computer-use bundled tools (spec §4.3; ``massgen/tool/_computer_use``,
``_claude_computer_use``, ``_gemini_computer_use``, ``_browser_automation``), run by the agent worker.

Why the worker: three of them call a provider's computer-use model on every step, and only the worker
holds provider keys (the executor never does); the step's screenshot goes to that model at once, so
the browser runs next to the loop, as a child process of the worker (headless Chromium, one per call,
closed when the call ends). Each step is recorded through the ``record`` callback (the worker stores
the screenshot in the Object Store and appends a ``computer.action`` event), so ``massgen replay``
shows the session.

The functions keep MassGen's names and parameters (what the model sees is the same schema) and return
MassGen's result text, a JSON object (``success``, ``action_log``, ``final_output`` or ``error``). The
keyword-only ``api_key``/``base_url``/``record`` are the worker's: the key of the tool's provider and
its endpoint (None: the provider's key variable, ``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``,
``GEMINI_API_KEY``, and the SDK's default endpoint).

Environments: ``browser`` (:mod:`.browser`, a Chromium page) and MassGen's ``linux`` (:mod:`.desktop`: a
running Docker container with an X display, ``environment_config.container_name`` and ``display``;
``ubuntu``/``docker``/``mac``/``windows`` run there too, as in MassGen).
"""

from __future__ import annotations

import json
import os
from typing import Any

import anthropic
import openai
from google import genai
from google.genai import types
from playwright.async_api import Error as PlaywrightError

from massgen_agent_worker.computer_use.browser import Browser
from massgen_agent_worker.computer_use.desktop import Desktop
from massgen_agent_worker.computer_use.drivers import GEMINI_MODEL, ClaudeDriver, GeminiDriver, OpenAIDriver
from massgen_agent_worker.computer_use.loop import Call, Driver, Recorder, run
from massgen_es import scrub
from massgen_es.custom_tools import automation
from massgen_es.errors import ComputerActionError, ComputerUseError

__all__ = ["TOOLS", "ComputerUseError", "Recorder", "browser_automation", "check_environment", "claude_computer_use",
           "computer_use", "gemini_computer_use"]

KEY_VARIABLES = {"computer_use": "OPENAI_API_KEY", "claude_computer_use": "ANTHROPIC_API_KEY",
                 "gemini_computer_use": "GEMINI_API_KEY"}
"""The provider key each model-driven tool needs, by tool (MassGen reads the same variables)."""


def check_environment(environment: str, browser_type: str = "chromium") -> None:
    """Refuse an environment MassGen does not have, and for ``browser`` any browser but Chromium (the only
    one installed).

    Raises:
        ComputerUseError: naming the value and the fix.
    """
    problem = automation.environment_problem(environment) or (
        automation.browser_problem(browser_type) if environment == "browser" else "")
    if problem:
        raise ComputerUseError(problem)


def _environment(environment: str, config: dict[str, Any], width: int, height: int, headless: bool,
                 start_url: str) -> Browser | Desktop:
    if environment == "browser":
        return Browser(width, height, headless=headless, start_url=start_url)
    return Desktop(str(config.get("container_name") or "cua-container"), str(config.get("display") or ":99"))


def _key(tool: str, api_key: str | None) -> str:
    key = api_key or os.environ.get(KEY_VARIABLES[tool], "")
    if not key:
        raise ComputerUseError(f"{KEY_VARIABLES[tool]} is not set in the agent worker's environment; {tool} calls "
                               "its provider's computer-use model with that key")
    scrub.remember([key])
    return key


async def _session(driver: Driver, task: str, environment: str, config: dict[str, Any], width: int, height: int,
                   max_iterations: int, headless: bool, record: Recorder | None, start_url: str = "") -> str:
    if start_url and environment != "browser":
        raise ComputerUseError("initial_url needs environment \"browser\"; in the linux desktop, open a browser")
    try:
        async with _environment(environment, config, width, height, headless, start_url) as env:
            return await run(driver, env, task, max_iterations, record, environment)
    except ComputerActionError as exc:  # the browser or the container is not there, or the start page did not load
        raise ComputerUseError(str(exc)) from None


def _size(width: int, height: int) -> None:
    if not (100 <= width <= 4096 and 100 <= height <= 4096):
        raise ComputerUseError(f"display {width}x{height} is out of range; use 100 to 4096 pixels a side")


async def computer_use(
    task: str, environment: str = "browser", display_width: int = 1920, display_height: int = 1080,
    max_iterations: int = 50, include_reasoning: bool = True, initial_screenshot_path: str | None = None,
    environment_config: dict[str, Any] | None = None, agent_cwd: str | None = None,
    model: str = "computer-use-preview", initial_url: str | None = None, *, api_key: str | None = None,
    base_url: str | None = None, record: Recorder | None = None,
) -> str:
    """OpenAI's computer-use model drives a browser to do ``task`` (MassGen's ``computer_use``), starting
    at ``initial_url`` when given (our addition: the model has no address bar to type a URL into).

    ``environment_config`` takes ``headless`` and ``browser_type``; ``initial_screenshot_path`` is refused
    (the worker cannot read the agent's workspace). Raises :class:`ComputerUseError` (see the module).
    """
    config = environment_config or {}
    check_environment(environment, str(config.get("browser_type", "chromium")))
    _size(display_width, display_height)
    if initial_screenshot_path:
        raise ComputerUseError("initial_screenshot_path is not supported here (the computer-use loop runs at the "
                               "agent worker, which cannot read the workspace); leave it out")
    client = openai.AsyncOpenAI(api_key=_key("computer_use", api_key), base_url=base_url, max_retries=1)
    environment = "linux" if environment in ("ubuntu", "docker") else environment  # MassGen's aliases
    driver = OpenAIDriver(client, model, display_width, display_height, include_reasoning, environment)
    return await _session(driver, task, environment, config, display_width, display_height, max_iterations,
                          bool(config.get("headless", False)), record, initial_url or "")


async def claude_computer_use(
    query: str, environment: str = "browser", display_width: int = 1024, display_height: int = 768,
    max_iterations: int = 25, headless: bool = True, browser_type: str = "chromium",
    environment_config: dict[str, Any] | None = None, model: str = "claude-sonnet-4-5",
    initial_url: str | None = None, *, api_key: str | None = None, base_url: str | None = None,
    record: Recorder | None = None,
) -> str:
    """Anthropic's computer-use tool drives a browser to do ``query`` (MassGen's ``claude_computer_use``),
    starting at ``initial_url`` when given (as for :func:`computer_use`). Raises :class:`ComputerUseError`
    (see the module)."""
    config = environment_config or {}
    check_environment(environment, str(config.get("browser_type", browser_type)))
    _size(display_width, display_height)
    client = anthropic.AsyncAnthropic(api_key=_key("claude_computer_use", api_key), base_url=base_url, max_retries=1)
    driver = ClaudeDriver(client, model, display_width, display_height)
    return await _session(driver, query, environment, config, display_width, display_height, max_iterations,
                          bool(config.get("headless", headless)), record, initial_url or "")


async def gemini_computer_use(
    task: str, environment: str = "browser", display_width: int = 1440, display_height: int = 900,
    max_iterations: int = 25, include_thoughts: bool = True, initial_url: str | None = None,
    environment_config: dict[str, Any] | None = None, agent_cwd: str | None = None,
    excluded_functions: list[str] | None = None, model: str = GEMINI_MODEL, *, api_key: str | None = None,
    base_url: str | None = None, record: Recorder | None = None,
) -> str:
    """Gemini's computer-use model drives a browser to do ``task`` (MassGen's ``gemini_computer_use``),
    starting at ``initial_url`` when given. Raises :class:`ComputerUseError` (see the module)."""
    config = environment_config or {}
    check_environment(environment, str(config.get("browser_type", "chromium")))
    _size(display_width, display_height)
    options = types.HttpOptions(api_version="v1beta", base_url=base_url,
                                retry_options=types.HttpRetryOptions(attempts=1))
    client = genai.Client(api_key=_key("gemini_computer_use", api_key), http_options=options)
    driver = GeminiDriver(client, model, display_width, display_height, include_thoughts,
                          list(excluded_functions or ()))
    return await _session(driver, task, environment, config, display_width, display_height, max_iterations,
                          bool(config.get("headless", True)), record, initial_url or "")


BROWSER_ACTIONS = ("navigate", "click", "type", "extract", "screenshot")


async def browser_automation(
    task: str, url: str | None = None, action: str = "navigate", selector: str | None = None,
    text: str | None = None, headless: bool = False, screenshot: bool = True, output_filename: str | None = None,
    *, record: Recorder | None = None,
) -> str:
    """One Playwright action in a fresh browser (MassGen's ``browser_automation``: no model of its own,
    the calling model is the driver): ``navigate`` to ``url``, ``click``/``type``/``extract`` on
    ``selector`` (after going to ``url`` when one is given), or ``screenshot``. Returns MassGen's JSON
    (``success``, ``current_url``, ``current_title``, ``extracted_text``, ``screenshot_size``; the
    screenshot itself goes to ``record``, not into the text). A failed action is ``success: false`` with
    the ``error``, as in MassGen. ``output_filename`` is refused: the worker cannot write the workspace.

    Raises:
        ComputerUseError: unknown action, missing argument, ``output_filename``, or no browser.
    """
    if action not in BROWSER_ACTIONS:
        raise ComputerUseError(f"unknown action {action!r}; use one of {', '.join(BROWSER_ACTIONS)}")
    needs = {"navigate": ("url",), "click": ("selector",), "type": ("selector", "text"), "extract": ("selector",)}
    given = {"url": url, "selector": selector, "text": text}
    missing = [k for k in needs.get(action, ()) if not given[k]]
    if missing:
        raise ComputerUseError(f"action {action!r} needs {' and '.join(missing)}")
    if output_filename:
        raise ComputerUseError("output_filename is not supported here (the browser runs at the agent worker, which "
                               "cannot write the workspace); leave it out: the screenshot is kept in the run's log")
    result: dict[str, Any] = {"success": False, "operation": "browser_automation", "task": task, "action": action}
    call = Call("browser_automation", "browser_automation", [],
                {"action": action, **{k: v for k, v in given.items() if v}})
    try:
        async with Browser(1920, 1080, headless=headless, start_url=url or "") as env:
            page = env.page
            error = ""
            try:
                if action == "navigate":
                    result.update(url=url, title=await page.title())
                elif action == "click":
                    await page.click(str(selector), timeout=10_000)
                elif action == "type":
                    await page.fill(str(selector), str(text), timeout=10_000)
                elif action == "extract":
                    found = (await page.query_selector_all(str(selector)))[:10]  # MassGen's limit
                    texts = [(await e.text_content() or "").strip() for e in found]
                    result["extracted_text"] = [t for t in texts if t]
                result["success"] = True
            except PlaywrightError as exc:
                error = result["error"] = exc.message.splitlines()[0]
            result.update(current_url=page.url, current_title=await page.title())
            if screenshot or record is not None:
                shot = await env.screenshot()
                if screenshot:
                    result["screenshot_size"] = len(shot)
                if record is not None:
                    await record(1, call, shot, page.url, error)
    except ComputerActionError as exc:
        raise ComputerUseError(str(exc)) from None
    return json.dumps(result, indent=2, ensure_ascii=False)


TOOLS = {"computer_use": computer_use, "claude_computer_use": claude_computer_use,
         "gemini_computer_use": gemini_computer_use, "browser_automation": browser_automation}
"""The bundled tools by MassGen's function name; each a coroutine function returning the result text."""

