"""The decision protocol for models without tool calls (``tool_mode: json_schema``; issue 11 item 2).

A small model answers best in free text and follows a short, constrained choice well; it does poorly
when the whole decision, answer included, must be written inside one JSON schema. So a coordination
turn takes at most two LLM calls, each its own ``usage.recorded``:

1. **the choice** (skipped when ``new_answer`` is the only option, i.e. before any answer exists): a
   JSON-schema-constrained call among the offered tools, where ``new_answer`` takes no arguments
   (``{"tool": "new_answer", "arguments": {}}``) and ``vote`` takes ``agent_id`` and ``reason``;
2. **the answer** (only when the choice is ``new_answer``): a plain call with no tools, whose text
   becomes ``new_answer``'s ``content``.

The result is the same neutral ``vote`` / ``new_answer`` tool call a native model makes, so the
orchestrator validates and records it exactly as before (MassGen's semantics: anonymised answers,
enforcement, answer caps). MCP tools stay choices of step 1, with their own arguments.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import msgspec

from massgen_agent_worker.providers import Completion
from massgen_es.events import Message, ToolCall, ToolSpec, TurnRequested

Call = Callable[[TurnRequested], Awaitable[Completion]]

NEW_ANSWER = "new_answer"
WRITE_ANSWER = (
    "Write your new answer to the question now, in plain text (not JSON). It is shared with the other agents."
)
"""Asked after the choice was ``new_answer``; the prompt before it said what a better answer must do."""
_CHOOSE_NEW_ANSWER = ToolSpec(
    name=NEW_ANSWER,
    description="Write a new, better answer to the question (you write it next, in plain text)",
    parameters={"type": "object", "properties": {}},
)


async def decide(call: Call, req: TurnRequested) -> Completion:
    """Take the turn's decision in at most two calls (module docstring); ``call`` makes one LLM call.

    Returns:
        A completion whose ``tool_calls`` hold the decision: ``new_answer`` with the free text as
        ``content`` (and as the completion's ``content``), or whatever the choice call returned.
    """
    offered = {t.name: t for t in req.tools}
    if NEW_ANSWER not in offered:
        return await call(req)
    if len(offered) == 1:
        return _as_answer(await call(msgspec.structs.replace(req, tools=())), req)
    choices = tuple(_CHOOSE_NEW_ANSWER if t.name == NEW_ANSWER else t for t in req.tools)
    choice = await call(msgspec.structs.replace(req, tools=choices))
    if not any(c.name == NEW_ANSWER for c in choice.tool_calls):
        return choice
    written = await call(msgspec.structs.replace(
        req, tools=(), messages=(*req.messages, Message(role="user", content=WRITE_ANSWER))))
    return _as_answer(written, req)


def _as_answer(written: Completion, req: TurnRequested) -> Completion:
    call = ToolCall(id=f"call_{req.attempt}_answer", name=NEW_ANSWER,
                    arguments=json.dumps({"content": written.content.strip()}, ensure_ascii=False))
    return Completion(written.content, (call,), written.finish_reason, written.usage, written.model,
                      written.time_to_first_token_s, written.cost_usd)
