"""The one computer-use loop every provider shares (MassGen's ``computer_use``, ``claude_computer_use``
and ``gemini_computer_use``, spec §4.3): screenshot -> the model -> its actions run in the environment ->
a screenshot after each call -> the model ..., until the model answers without an action or
``max_iterations`` model requests were made.

A :class:`Driver` is the provider's part: it turns the provider's replies into :class:`Call`\\ s of
actions in :mod:`.browser`'s vocabulary and the outcomes back into the provider's next request. A
:class:`Recorder` is told of every step (the action, the screenshot after it, the page's URL, the
error), so the worker can store the screenshot and record an event: a session is replayable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from massgen_agent_worker.computer_use.browser import Action, Browser
from massgen_agent_worker.computer_use.desktop import Desktop
from massgen_es.errors import ComputerActionError, ComputerUseError


@dataclass
class Call:
    """One tool call of the computer-use model: its id, the provider's name for it and the actions it
    stands for (usually one). ``error`` is set when the call cannot be carried out as asked."""

    id: str
    name: str
    actions: list[Action]
    raw: dict[str, Any] = field(default_factory=dict[str, Any])
    """The call as the provider sent it (what the action log shows)."""
    error: str = ""


@dataclass
class Turn:
    """A model reply: the calls to carry out (none: the model is done) and its text."""

    calls: list[Call]
    text: str = ""


@dataclass
class Outcome:
    """A carried-out call, for the provider's next request."""

    call: Call
    screenshot: bytes
    url: str
    error: str = ""


class Driver(Protocol):
    """A provider's part of the loop."""

    name: str
    """The tool's operation name (``computer_use``, ``claude_computer_use``, ``gemini_computer_use``)."""
    reports_errors: bool
    """Whether the provider's protocol can tell the model that an action failed (OpenAI's cannot: the
    session then ends with the error, as MassGen's does)."""

    async def first(self, task: str, screenshot: bytes) -> Turn:
        """The model's first reply to ``task`` (``screenshot``: the page before any action)."""
        ...

    async def next(self, outcomes: list[Outcome]) -> Turn:
        """The model's reply to the outcomes of its last turn's calls."""
        ...


class Recorder(Protocol):
    """Told of every step, in order: ``step`` counts from 1 over the whole session."""

    async def __call__(self, step: int, call: Call, screenshot: bytes, url: str, error: str) -> None:
        """Record one step: the call, the PNG after it, the page's URL and the action's error (or "")."""
        ...


async def run(driver: Driver, env: Browser | Desktop, task: str, max_iterations: int, record: Recorder | None,
              environment: str = "browser") -> str:
    """Run the loop; returns MassGen's result text, a JSON object: ``success``, ``operation``, ``task``,
    ``environment``, ``iterations`` (model requests made), ``action_log`` (``{iteration, action, url,
    error?}``) and ``final_output`` or ``error`` (``Reached maximum iterations (N)`` when the model
    still wanted to act after ``max_iterations`` requests).

    Raises:
        ComputerUseError: a provider request failed (the driver maps the SDK's error).
    """
    if max_iterations < 1:
        raise ComputerUseError(f"max_iterations must be at least 1, not {max_iterations}")
    log: list[dict[str, Any]] = []
    result: dict[str, Any] = {"success": False, "operation": driver.name, "task": task, "environment": environment}
    turn = await driver.first(task, await env.screenshot())
    requests, step = 1, 0
    while True:
        if not turn.calls:
            result.update(success=True, final_output=turn.text)
            break
        outcomes: list[Outcome] = []
        failed = ""
        for call in turn.calls:
            step += 1
            error = call.error
            for action in call.actions if not error else ():
                try:
                    await env.do(action)
                except ComputerActionError as exc:
                    error = str(exc)
                    break
            shot = await env.screenshot()
            if record is not None:
                await record(step, call, shot, env.url, error)
            log.append({"iteration": requests, "action": call.raw or {"name": call.name}, "url": env.url,
                        **({"error": error} if error else {})})
            outcomes.append(Outcome(call, shot, env.url, error))
            failed = failed or error
        if failed and not driver.reports_errors:
            result["error"] = f"Action execution failed: {failed}"
            break
        if requests >= max_iterations:
            result["error"] = f"Reached maximum iterations ({max_iterations})"
            break
        turn = await driver.next(outcomes)
        requests += 1
    result.update(iterations=requests, action_log=log)
    return json.dumps(result, indent=2, ensure_ascii=False)
