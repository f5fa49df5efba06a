"""MassGen's framework-interop tools (``massgen/tool/_extraframework_agents``, MassGen spec §2.5 and its
``tools/custom_tools/interop`` examples): each runs a small team of another agent framework against an
OpenAI model to write a fourth-grade lesson plan for ``prompt``, and returns it as text.

They call a provider, so they run in the agent worker (which holds the keys), never in the executor.
Every planner plays the same four roles in order, each reading the previous one's output (MassGen's
design): a curriculum expert (standards and objectives), a lesson planner (timed activities), a reviewer
(feedback and an improved plan) and a formatter (MassGen's tagged layout). What differs is the framework
that runs them:

- :func:`ag2_lesson_planner`: AG2 agents (``import autogen``), the planner and reviewer in an AG2 group
  chat, as MassGen's nested-chat planner;
- :func:`langgraph_lesson_planner`: a LangGraph ``StateGraph`` of four nodes on ``langchain-openai``'s
  ``ChatOpenAI``;
- :func:`openai_assistant_lesson_planner`: the ``openai`` SDK's streamed Chat Completions (MassGen's tool
  of this name uses Chat Completions too, not the Assistants API);
- :func:`smolagent_lesson_planner`: smolagents' ``OpenAIServerModel`` for each role (no ``CodeAgent``:
  its generated Python would run inside the worker).

MassGen's ``agentscope_lesson_planner`` is not here: AgentScope 2 pulls numpy, grpcio, dashscope and
OpenTelemetry exporters (too heavy for the worker), so configs naming it stay refused.

Each takes ``base_url``, ``api_key`` and ``model`` (keyword-only; defaults: our ``openai`` backend's
endpoint, ``OPENAI_API_KEY`` and MassGen's ``gpt-4o``). Errors come back as ``Error: ...`` text for the
model, as MassGen's tools return them. The frameworks are the worker's optional extra
``services/agent_worker[ag2]``; a planner whose framework is missing says so.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict

from massgen_es import backends

DEFAULT_MODEL = "gpt-4o"
EXTRA = "services/agent_worker[ag2]"

CURRICULUM = ("You are an expert in fourth-grade curriculum standards. For the topic you are given, list the "
              "grade-level standards it covers under STANDARDS: and what students will be able to do by the end "
              "of the lesson under OBJECTIVES:.")
PLANNER = ("You plan lessons. From the standards and objectives you are given, write a lesson plan with timed "
           "parts (an opening hook of 5-10 minutes, a main activity of 20-30, a practice activity of 15-20, "
           "assessment and closure of 5-10) and the materials each needs.")
REVIEWER = ("You review lesson plans for age-appropriateness, alignment with the standards, realistic timing, "
            "clear instructions and differentiation. Give specific feedback, then the improved plan.")
FORMATTER = ("You format lesson plans. Rewrite the plan you are given exactly in this layout:\n"
             "<title>...</title>\n<standards>...</standards>\n<learning_objectives>...</learning_objectives>\n"
             "<materials>...</materials>\n<activities>...</activities>\n<assessment>...</assessment>")
ROLES = (("curriculum", CURRICULUM, "Topic: {}"), ("planner", PLANNER, "Standards and objectives:\n\n{}"),
         ("reviewer", REVIEWER, "Review this lesson plan:\n\n{}"), ("formatter", FORMATTER, "Format this plan:\n\n{}"))
"""The four roles in order: (name, system message, user message template filled with the previous output)."""


def _endpoint(base_url: str | None, api_key: str | None) -> tuple[str, str]:
    url = base_url or backends.base_url("openai", None) or ""
    key = api_key or os.environ.get("OPENAI_API_KEY", "")
    if not key:
        raise _Refused("OPENAI_API_KEY is not set (the lesson planners call an OpenAI model)")
    return url, key


class _Refused(Exception):
    """A planner cannot run (no key, framework missing): its message goes to the model as ``Error: ...``."""


async def _guarded(framework: str, run: Callable[[], Awaitable[str]]) -> str:
    try:
        return await run()
    except _Refused as exc:
        return f"Error: {exc}"
    except ImportError as exc:
        return f"Error: {framework} is not installed in this agent worker ({exc.name}); install `{EXTRA}`"
    except Exception as exc:  # noqa: BLE001 - MassGen's tools report any failure to the model as text
        return f"Error creating lesson plan with {framework}: {type(exc).__name__}: {exc}"


async def _pipeline(ask: Callable[[str, str], Awaitable[str]], prompt: str) -> str:
    text = prompt
    for _name, system, template in ROLES:
        text = await ask(system, template.format(text))
    return text


async def openai_assistant_lesson_planner(
    prompt: str, *, base_url: str | None = None, api_key: str | None = None, model: str = DEFAULT_MODEL
) -> str:
    """A lesson plan for ``prompt`` from four roles on the ``openai`` SDK's streamed Chat Completions.

    Returns the formatted plan, or ``Error: ...`` (see the module docstring)."""

    async def run() -> str:
        import openai

        url, key = _endpoint(base_url, api_key)
        client = openai.AsyncOpenAI(base_url=url, api_key=key)

        async def ask(system: str, user: str) -> str:
            stream = await client.chat.completions.create(
                model=model, stream=True,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}])
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            return "".join(parts)

        try:
            plan = await _pipeline(ask, prompt)
        finally:
            await client.close()
        return f"OpenAI Assistant Lesson Planner Result:\n\n{plan}"

    return await _guarded("openai", run)


class _PlanState(TypedDict):
    text: str


async def langgraph_lesson_planner(
    prompt: str, *, base_url: str | None = None, api_key: str | None = None, model: str = DEFAULT_MODEL
) -> str:
    """A lesson plan for ``prompt`` from a LangGraph ``StateGraph`` (curriculum → planner → reviewer →
    formatter) on ``ChatOpenAI``. Returns the formatted plan, or ``Error: ...``."""

    async def run() -> str:
        from langchain_core.messages import HumanMessage, SystemMessage
        from langchain_openai import ChatOpenAI
        from langgraph.graph import END, StateGraph

        url, key = _endpoint(base_url, api_key)
        llm = ChatOpenAI(model=model, base_url=url, api_key=key)  # pyright: ignore[reportArgumentType]

        def node(system: str, template: str) -> Callable[[_PlanState], Awaitable[_PlanState]]:
            async def step(state: _PlanState) -> _PlanState:
                reply = await llm.ainvoke([SystemMessage(system), HumanMessage(template.format(state["text"]))])
                return {"text": str(reply.content)}

            return step

        graph: Any = StateGraph(_PlanState)
        for name, system, template in ROLES:
            graph.add_node(name, node(system, template))
        graph.set_entry_point(ROLES[0][0])
        for (first, _s, _t), (then, _s2, _t2) in zip(ROLES, ROLES[1:], strict=False):
            graph.add_edge(first, then)
        graph.add_edge(ROLES[-1][0], END)
        final = await graph.compile().ainvoke({"text": prompt})
        return f"LangGraph Lesson Planner Result:\n\n{final['text']}"

    return await _guarded("langgraph", run)


async def smolagent_lesson_planner(
    prompt: str, *, base_url: str | None = None, api_key: str | None = None, model: str = DEFAULT_MODEL
) -> str:
    """A lesson plan for ``prompt`` from the four roles on smolagents' ``OpenAIServerModel``. Returns the
    formatted plan, or ``Error: ...``."""

    async def run() -> str:
        from smolagents import OpenAIServerModel

        url, key = _endpoint(base_url, api_key)
        llm = OpenAIServerModel(model_id=model, api_base=url, api_key=key)

        async def ask(system: str, user: str) -> str:
            messages: list[Any] = [{"role": "system", "content": [{"type": "text", "text": system}]},
                                   {"role": "user", "content": [{"type": "text", "text": user}]}]
            reply = await asyncio.to_thread(llm.generate, messages)
            return str(reply.content or "")

        return f"SmolAgent Lesson Planner Result:\n\n{await _pipeline(ask, prompt)}"

    return await _guarded("smolagents", run)


async def ag2_lesson_planner(
    prompt: str, *, base_url: str | None = None, api_key: str | None = None, model: str = DEFAULT_MODEL
) -> str:
    """A lesson plan for ``prompt`` from AG2 agents: a lead teacher's sequential chats with the curriculum
    expert, then a planner/reviewer group chat, then the formatter, each chat carrying the previous one's
    last message (MassGen's nested-chat planner). Returns the formatted plan, or ``Error: ...``."""

    def sync() -> str:
        from autogen import ConversableAgent, GroupChat, GroupChatManager, LLMConfig

        url, key = _endpoint(base_url, api_key)
        llm = LLMConfig({"api_type": "openai", "model": model, "base_url": url, "api_key": key, "cache_seed": None})

        def agent(name: str, system: str) -> ConversableAgent:
            return ConversableAgent(name=name, system_message=system, human_input_mode="NEVER", llm_config=llm)

        lead = ConversableAgent(name="Lead_Teacher", human_input_mode="NEVER", llm_config=False)
        planning = GroupChat(agents=[agent("Lesson_Planner", PLANNER), agent("Lesson_Reviewer", REVIEWER)],
                             messages=[], max_round=3, speaker_selection_method="round_robin")
        results = lead.initiate_chats([
            {"recipient": agent("Curriculum_Expert", CURRICULUM), "message": ROLES[0][2].format(prompt),
             "max_turns": 1, "summary_method": "last_msg", "silent": True},
            {"recipient": GroupChatManager(groupchat=planning, llm_config=False),
             "message": "Write the lesson plan for these standards and objectives, then review it.",
             # the group chat's own last message (the reviewed plan), not the manager's empty reply
             "max_turns": 1, "summary_method": lambda *_: str(planning.messages[-1].get("content") or ""),
             "silent": True},
            {"recipient": agent("Formatter", FORMATTER), "message": "Format the reviewed lesson plan.",
             "max_turns": 1, "summary_method": "last_msg", "silent": True},
        ])
        return f"AG2 Lesson Planner Result:\n\n{results[-1].summary}"

    async def run() -> str:
        return await asyncio.to_thread(sync)

    return await _guarded("ag2", run)


PLANNERS: dict[str, Callable[..., Awaitable[str]]] = {
    "ag2_lesson_planner": ag2_lesson_planner,
    "langgraph_lesson_planner": langgraph_lesson_planner,
    "openai_assistant_lesson_planner": openai_assistant_lesson_planner,
    "smolagent_lesson_planner": smolagent_lesson_planner,
}
"""MassGen's interop tools built here, by MassGen's function name."""
