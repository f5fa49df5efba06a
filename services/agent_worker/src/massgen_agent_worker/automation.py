"""The worker's side of the computer-use bundled tools (``massgen_es.custom_tools.automation``): a
model's call of ``custom_tool__computer_use`` (or ``claude_``/``gemini_computer_use``,
``browser_automation``) runs here through :mod:`massgen_agent_worker.computer_use`, not at the executor.

Each step's screenshot goes to the Object Store and a ``computer.step`` event; the call's end is a
``computer.completed`` event with the text the model reads. Event ids derive from the attempt's key and
the call id, so a redelivered turn records nothing twice.

Keys: a tool of the agent's own provider (``computer_use`` on an ``openai`` backend, ``claude_computer_use``
on ``claude``, ``gemini_computer_use`` on ``gemini``) uses the backend's key and endpoint; otherwise the
provider's key variable in the worker's environment and the SDK's default endpoint, as MassGen does.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from typing import TYPE_CHECKING, Any

from massgen_agent_worker.providers import chatcompletion
from massgen_agent_worker.tools import ToolClient
from massgen_es import backends, mcp
from massgen_es.bus import Draft
from massgen_es.bus.objects import ObjectStore
from massgen_es.config import BackendConfig
from massgen_es.custom_tools import CustomToolSpec, automation
from massgen_es.errors import ConfigError, ToolArgumentError
from massgen_es.events import ComputerStep, ComputerUseCompleted, ToolCall, TurnRequested

if TYPE_CHECKING:
    from massgen_agent_worker.computer_use.loop import Call

SESSION_TIMEOUT_S = 900.0
"""The longest one computer-use call may take (its browser is then closed and the model told): each step
is bounded by its provider call and the page's timeouts, but a session of ``max_iterations`` steps is not."""

OWN_BACKEND = {"computer_use": "openai", "claude_computer_use": "claude", "gemini_computer_use": "gemini"}
"""The backend type whose key and endpoint each model-driven tool uses when the agent has it."""


def worker_tools(backend: BackendConfig) -> dict[str, CustomToolSpec]:
    """The agent's custom tools this worker runs itself, by the name the model calls."""
    return {t.name: t for t in backend.resolved_custom_tools
            if t.runs_in == "agent_worker" and t.function in automation.TOOLS}


def _endpoint(function: str, backend: BackendConfig) -> dict[str, Any]:
    if OWN_BACKEND.get(function) != backend.type:
        return {}
    url = backends.base_url(backend.type, backend.base_url)
    if backend.type == "gemini":
        # Imported here, as adapters are (providers.load): the Gemini adapter needs httpx, which a worker
        # without Gemini (the compose image) does not have.
        from massgen_agent_worker.providers import gemini

        return {"api_key": gemini.api_key(backend), "base_url": url}
    key = chatcompletion.api_key(backend, url)
    return {"api_key": key, "base_url": url}


async def run_call(
    spec: CustomToolSpec, call: ToolCall, req: TurnRequested, backend: BackendConfig, tools: ToolClient,
    objects: ObjectStore | None, run_id: str, cause: str, key: str,
) -> str:
    """Run one call of ``spec`` and record it; returns the text the calling model reads (``Error: ...``
    when the tool could not run: bad arguments, no key, an environment not built, a provider error, no
    Playwright in this worker)."""
    started, steps = time.monotonic(), 0

    async def record(step: int, c: Call, screenshot: bytes, url: str, error: str) -> None:
        nonlocal steps
        steps = step
        ref = await objects.put(screenshot, f"screenshot {step}", exact=True) if objects is not None else None
        await tools.record(run_id, Draft(f"{key}:step{step}", ComputerStep(
            call_id=call.id, turn_id=req.turn_id, agent_id=req.agent_id, attempt=req.attempt, tool=spec.name,
            step=step, action=json.dumps(c.raw, ensure_ascii=False), url=url, screenshot=ref, error=error), cause))

    arguments: dict[str, Any] = {}
    try:
        arguments = {**mcp.check_arguments(call.arguments, spec.parameters), **spec.preset_args}
        arguments.pop("agent_cwd", None)  # the worker has no workspace path to give
        result, is_error = await _call(spec.function, arguments, backend, record), False
    except (ToolArgumentError, ConfigError, _Failed) as exc:
        result, is_error = f"Error: {exc}", True
    await tools.record(run_id, Draft(f"{key}:done", ComputerUseCompleted(
        call_id=call.id, turn_id=req.turn_id, agent_id=req.agent_id, attempt=req.attempt, tool=spec.name,
        arguments=arguments, result=result, is_error=is_error, steps=steps,
        duration_s=round(time.monotonic() - started, 3)), cause))
    return result


class _Failed(Exception):
    """The tool ran and failed (its message is what the model reads)."""


async def _call(function: str, arguments: dict[str, Any], backend: BackendConfig, record: Any) -> str:
    try:  # Playwright is the worker's `computer-use` extra (165 MB): imported when a tool is first called
        from playwright.async_api import Error as PlaywrightError

        from massgen_agent_worker.computer_use import TOOLS, ComputerUseError
    except ImportError as exc:
        raise _Failed(f"{function} needs Playwright in the agent worker, which is not installed ({exc}); install "
                      "massgen-agent-worker[computer-use]") from None
    tool = TOOLS[function]
    try:
        inspect.signature(tool).bind(**arguments)
    except TypeError as exc:
        raise ToolArgumentError(f"invalid arguments for {function}: {exc}") from None
    try:
        async with asyncio.timeout(SESSION_TIMEOUT_S):
            return await tool(**arguments, **_endpoint(function, backend), record=record)
    except TimeoutError:
        raise _Failed(f"{function} took longer than {SESSION_TIMEOUT_S:g} s and was stopped") from None
    except ComputerUseError as exc:
        raise _Failed(str(exc)) from None
    except PlaywrightError as exc:  # the browser itself failed (crashed, closed) mid-session
        raise _Failed(f"the browser failed: {exc.message.splitlines()[0]}") from None
