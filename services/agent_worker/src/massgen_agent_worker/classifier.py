"""Asking an LLM whether an MCP tool's effects can be undone (issue 15 item 2).

The agent's own backend (the local model in the default team) is asked once per tool, with the
examples MassGen's irreversibility analysis gives its model (spec §1.14), and answers through one tool,
``classify_tool(irreversible, rationale)``: a native tool call, or the JSON-schema decision of a model
without tool calls (``providers.chatcompletion``). No answer, a malformed one or a failed call is no
classification: the name rule of ``massgen_es.tool_safety`` stands in.
"""

from __future__ import annotations

import json
import logging

from massgen_agent_worker import providers
from massgen_es.errors import MassgenError
from massgen_es.events import Message, ToolSpec, TurnRequested
from massgen_es.tool_safety import Learned

log = logging.getLogger("massgen.agent_worker")

CLASSIFY_TOOL = ToolSpec(
    name="classify_tool",
    description="Record whether calling the tool can change the world in a way that cannot be undone.",
    parameters={
        "type": "object",
        "properties": {
            "irreversible": {"type": "boolean", "description": "true if a call may have effects that cannot be "
                             "undone or that others see"},
            "rationale": {"type": "string", "description": "why, in one short sentence"},
        },
        "required": ["irreversible", "rationale"],
    },
)

_SYSTEM = (
    "You classify tools for safety. Irreversible: sending or posting messages, deleting or modifying data "
    "outside the agent's own workspace, creating records, payments, state-changing commands. Reversible: "
    "reading, searching, listing, fetching, and file changes inside the agent's own workspace."
)


def _question(server: str, tool: str, spec: ToolSpec) -> str:
    schema = json.dumps(spec.parameters, sort_keys=True)[:2000]
    return (f"Tool `{tool}` of the MCP server `{server}`.\nDescription: {spec.description[:1000] or '(none)'}\n"
            f"Input schema: {schema}\nCan a call of this tool have effects that cannot be undone? "
            "Answer with classify_tool.")


async def _ignore(text: str) -> None:
    return None


async def classify(req: TurnRequested, server: str, tool: str, spec: ToolSpec) -> Learned | None:
    """The classification of ``server``'s ``tool`` (``spec``: as the agent's catalog offers it) by the
    backend of ``req``; None when the model gave none (module docstring)."""
    ask = TurnRequested(
        turn_id=f"{req.turn_id}:classify", agent_id=req.agent_id, attempt=req.attempt, kind="coordination",
        messages=(Message(role="system", content=_SYSTEM), Message(role="user", content=_question(server, tool, spec))),
        tools=(CLASSIFY_TOOL,), backend=req.backend, answers_version=0, anon_id=req.anon_id,
    )
    try:
        done = await providers.complete(ask, _ignore)
    except MassgenError as exc:  # ProviderError included: the name rule stands in
        log.warning("classifying %s.%s failed (%s); its name decides", server, tool, exc)
        return None
    call = next((c for c in done.tool_calls if c.name == CLASSIFY_TOOL.name), None)
    try:
        args = json.loads(call.arguments) if call is not None else None
    except json.JSONDecodeError:
        args = None
    if not isinstance(args, dict) or not isinstance(args.get("irreversible"), bool):
        log.warning("no classification of %s.%s in the model's reply; its name decides", server, tool)
        return None
    return Learned(safety="irreversible" if args["irreversible"] else "reversible",
                   rationale=str(args.get("rationale", ""))[:300], model=done.model)


__all__ = ["CLASSIFY_TOOL", "classify"]
