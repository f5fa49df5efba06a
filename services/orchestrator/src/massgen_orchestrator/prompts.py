"""MassGen's prompts and workflow-tool schemas (MassGen spec §1.4-§1.6, §1.11), anonymised.

One numbering everywhere: ``agentN`` is the N-th agent in config order, in the answer list, the vote
enum, update messages and error texts (MassGen numbers these three differently, spec §1.4 (a)-(c)).
Real agent ids never reach a prompt. No clock: MassGen's timestamp line is left out so that prompts,
like every decision, are a pure function of the log.

Two styles, chosen per agent by its tool mode (``massgen_es.backends.tool_mode``):

- ``massgen``: MassGen's own texts, for models with native tool calls;
- ``compact``: for models without tool calls (``json_schema``, the local models). The same content
  (identity, the question, every answer under its anonymous id, the voting and novelty criteria) in a
  few plain sentences, without the presenter's vote tally (a small model copies it as its final
  answer): a 0.5-1.5B model loses the question in MassGen's XML-tagged, tool-call-centred prompt, and
  answered ``<END OF DOCUMENT>`` (issue 11).
  Each agent's turns form one conversation: the question as asked, the agent's own latest answer as
  its reply, then the other agents' answers and the agent's own label, with what to do. The prefix an agent's
  later turns share with its earlier ones is what llama.cpp's prompt cache serves from the agent's
  slot, so a vote or presentation turn processes little more than the other agents' answers.
  (MassGen restarts every turn from scratch and does not tell an agent which answer is its own.)

A turn of a multi-turn session carries the earlier turns (:func:`with_history`, MassGen spec §1.13):
``<CONVERSATION_HISTORY>`` before the ORIGINAL MESSAGE and a multi-turn note in the system prompt in the
``massgen`` style; in the ``compact`` style the earlier questions and answers as the conversation's
first user/assistant messages, which a chat model reads as the history it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from massgen_es.events import Message, ToolSpec

Style = Literal["massgen", "compact"]

ENFORCEMENT_MESSAGE = (
    "Finish your work above by making a tool call of `vote` or `new_answer`. Make sure you actually call the tool."
)

_SENSITIVITY = {
    "lenient": (
        "Does the best CURRENT ANSWER address the ORIGINAL MESSAGE well? If YES, use the `vote` tool to "
        "record your vote and skip the `new_answer` tool."
    ),
    "balanced": (
        "Does the best CURRENT ANSWER address the ORIGINAL MESSAGE well? Consider: Is it comprehensive, "
        "accurate and complete? Could it be meaningfully improved? Only use the `vote` tool if the best "
        "answer is strong and complete."
    ),
    "strict": (
        "Does the best CURRENT ANSWER address the ORIGINAL MESSAGE exceptionally well? Consider all aspects, "
        "edge cases and whether it is reference quality. Only use the `vote` tool if the best answer meets "
        "high standards of excellence."
    ),
}
_NOVELTY = {
    "lenient": "",
    "balanced": (
        "If you provide a new answer, it must be meaningfully different from the existing answers: "
        "don't just rephrase them."
    ),
    "strict": (
        "If you provide a new answer, it must be SUBSTANTIALLY different from the existing answers. "
        "If you cannot provide a truly novel solution, vote instead."
    ),
}


def new_answer_tool() -> ToolSpec:
    """MassGen's ``new_answer`` tool (spec §1.5)."""
    return ToolSpec(
        name="new_answer",
        description="Submit a new and improved answer",
        parameters={
            "type": "object",
            "properties": {
                "content": {
                    "type": "string",
                    "description": "Your improved answer. If any builtin tools like search or code execution "
                    "were used, mention how they are used here.",
                }
            },
            "required": ["content"],
        },
    )


def vote_tool(valid_anon_ids: Sequence[str]) -> ToolSpec:
    """MassGen's ``vote`` tool (spec §1.5), its enum narrowed to the agents that have answers."""
    return ToolSpec(
        name="vote",
        description="Vote for the best agent to present final answer",
        parameters={
            "type": "object",
            "properties": {
                "agent_id": {
                    "type": "string",
                    "description": "Anonymous agent ID to vote for (e.g., 'agent1', 'agent2')",
                    "enum": list(valid_anon_ids),
                },
                "reason": {"type": "string", "description": "Brief reason why this agent has the best answer"},
            },
            "required": ["agent_id", "reason"],
        },
    )


def _section(tag: str, priority: str, body: str) -> str:
    return f'<{tag} priority="{priority}">\n{body}\n</{tag}>'


def coordination_system(system_message: str, sensitivity: str, novelty: str) -> str:
    """The coordination system prompt (``SystemPromptBuilder``, spec §1.6, sections 1-2)."""
    parts: list[str] = []
    if system_message.strip():
        parts.append(_section("agent_identity", "critical", system_message.strip()))
    body = [
        "You are evaluating answers from multiple agents for final response to a message. Different agents "
        "may have different builtin tools and capabilities.",
        _SENSITIVITY[sensitivity],
        "Otherwise, digest existing answers, combine their strengths, and do additional work to address their "
        "weaknesses, then use the `new_answer` tool to record a better answer to the ORIGINAL MESSAGE.",
    ]
    if _NOVELTY[novelty]:
        body.append(_NOVELTY[novelty])
    body.append("Make sure you actually call `vote` or `new_answer` (in tool call format).")
    parts.append(_section("massgen_coordination", "critical", "\n".join(body)))
    return "<system_prompt>\n" + "\n".join(parts) + "\n</system_prompt>"


def answers_block(answers: Sequence[tuple[str, str]]) -> str:
    """``<CURRENT ANSWERS>`` with ``(anon_id, content)`` pairs in config order."""
    if not answers:
        inner = "(no answers available yet)"
    else:
        inner = "\n".join(f"<{a}> {text} <end of {a}>" for a, text in answers)
    return f"<CURRENT ANSWERS from the agents>\n{inner}\n<END OF CURRENT ANSWERS>"


def coordination_user(question: str, answers: Sequence[tuple[str, str]], paraphrase: str | None = None) -> str:
    """The coordination user message (spec §1.6), with the agent's ``<PARAPHRASED MESSAGE>`` (§1.15) if any."""
    said = f"<PARAPHRASED MESSAGE> {paraphrase} <END OF PARAPHRASED MESSAGE>\n" if paraphrase else ""
    return f"<ORIGINAL MESSAGE> {question} <END OF ORIGINAL MESSAGE>\n{said}{answers_block(answers)}"


def coordination_messages(
    system_message: str, sensitivity: str, novelty: str, question: str, answers: Sequence[tuple[str, str]],
    style: Style = "massgen", own: tuple[str, str] | None = None, paraphrase: str | None = None,
) -> tuple[Message, ...]:
    """Attempt-1 messages of a coordination turn, in ``style`` (module docstring); ``own`` is the agent's
    latest ``(anon_id, answer)``, which the compact style puts first, as the agent's own reply;
    ``paraphrase`` the agent's rewrite of the question (MassGen spec §1.15), after the original."""
    if style == "compact":
        criteria = _COMPACT_SENSITIVITY[sensitivity] + _COMPACT_NOVELTY[novelty]
        asked = f"{question}\n\nIn other words: {paraphrase}" if paraphrase else question
        return _compact_conversation(system_message, asked, answers, own, criteria)
    return (
        Message(role="system", content=coordination_system(system_message, sensitivity, novelty)),
        Message(role="user", content=coordination_user(question, answers, paraphrase)),
    )


PLANNING_MODE_INSTRUCTION = (
    "During coordination, describe what you would do without actually executing actions. Only provide concrete "
    "implementation details without calling external APIs or tools."
)
"""MassGen's default ``planning_mode_instruction`` (spec §1.6, system-message section 10)."""


def with_planning(messages: tuple[Message, ...], instruction: str | None) -> tuple[Message, ...]:
    """``messages`` with planning mode's instruction (``instruction``, else
    :data:`PLANNING_MODE_INSTRUCTION`) closing the system message, as MassGen adds it (spec §1.14)."""
    text = instruction or PLANNING_MODE_INSTRUCTION
    first = messages[0]
    if first.role == "system":
        return (msgspec.structs.replace(first, content=f"{first.content}\n\n{text}"), *messages[1:])
    return (Message(role="system", content=text), *messages)


_COMPACT_SENSITIVITY = {
    "lenient": "If one of these answers is correct, vote for the best one. If none is, write a better answer.",
    "balanced": (
        "Vote for the best answer only if it is correct and complete. If it could be meaningfully improved, "
        "write a better answer."
    ),
    "strict": (
        "Vote for the best answer only if it is excellent: correct, complete and careful about edge cases. "
        "Otherwise write a better answer."
    ),
}
_COMPACT_NOVELTY = {
    "lenient": "",
    "balanced": " A new answer must be meaningfully different from the existing ones, not a rephrasing.",
    "strict": " A new answer must be substantially different from the existing ones; if you have none, vote.",
}


_TEAM = "Several agents answered this question; their answers are labelled agent1, agent2, ..."
"""Said where the answers are listed, not in the system message: a small model told it is "one of several
agents" before answering starts writing answers for agent1, agent2, ... itself."""


def _listing(answers: Sequence[tuple[str, str]]) -> str:
    return "\n\n".join(f"{a} wrote:\n{text}" for a, text in answers)


def _compact_conversation(
    system_message: str, question: str, answers: Sequence[tuple[str, str]], own: tuple[str, str] | None,
    closing: str,
) -> tuple[Message, ...]:
    """``[system, question, own answer, the other answers + closing]``; before any answer, the question
    alone; for an agent without an answer of its own, the question and the answers in one message. The
    system message is the agent's own (none when it has none)."""
    system = (Message(role="system", content=system_message.strip()),) if system_message.strip() else ()
    if not answers:
        return (*system, Message(role="user", content=question))
    if own is None:
        listed = f"Question: {question}\n\n{_TEAM}\n\nAnswers so far:\n\n{_listing(answers)}\n\n{closing}"
        return (*system, Message(role="user", content=listed))
    others = [(a, text) for a, text in answers if a != own[0]]
    listed = f"{_TEAM} Yours, above, is {own[0]}.\n\n"
    listed += f"The other agents' answers:\n\n{_listing(others)}" if others else "No other agent has answered."
    return (
        *system,
        Message(role="user", content=question),
        Message(role="assistant", content=own[1]),
        Message(role="user", content=f"{listed}\n\n{closing}"),
    )


def update_message(new_answers: Sequence[tuple[str, str]], style: Style = "massgen") -> str:
    """The mid-turn update (spec §1.6), numbered like everything else."""
    if style == "compact":
        return f"New answers arrived while you were working:\n\n{_listing(new_answers)}\n\nTake them into account."
    listed = "\n".join(f"<{a}> {text} <end of {a}>" for a, text in new_answers)
    return (
        "UPDATE: While you were working, new answers were provided.\n"
        f"<NEW ANSWERS>\n{listed}\n</NEW ANSWERS>\n"
        "You can now: 1. Continue your current approach if you think it's better 2. Build upon or refine the "
        "new answers 3. Vote for an existing answer if it is the best.\n"
        "Proceed with your decision (continue working, vote, or provide new_answer)."
    )


def presentation_messages(
    system_message: str,
    question: str,
    votes_for_presenter: Sequence[str],
    tie_broken: bool,
    answers: Sequence[tuple[str, str]],
    presenter_anon: str,
    style: Style = "massgen",
    *,
    skipped: bool = False,
) -> tuple[Message, ...]:
    """Final presentation prompt (spec §1.6 "Presentation", §1.11), with anonymous ids only. ``skipped``:
    coordination was skipped (``skip_coordination_rounds``), so no vote is reported as timed out."""
    if style == "compact":
        return _compact_presentation(system_message, question, answers, presenter_anon)
    system: list[str] = []
    if system_message.strip():
        system.append(_section("agent_identity", "critical", system_message.strip()))
    system.append(
        "You have been selected as the winning presenter in a coordination process. Present the best possible "
        "coordinated answer by combining the strengths from all participants."
    )
    if votes_for_presenter:
        tally = f"You received {len(votes_for_presenter)} vote(s) with feedback: " + "; ".join(votes_for_presenter)
        if tie_broken:
            tally += " (tie-broken by registration order)"
    elif skipped:
        tally = "Coordination was skipped (skip_coordination_rounds); you were selected to present directly."
    else:
        tally = "No votes were cast before the time limit; your answer was selected as the best available."
    listed = "\n".join(
        f"<{a}> {text} <end of {a}>" + (" (YOUR ANSWER)" if a == presenter_anon else "") for a, text in answers
    )
    user = (
        f"<ORIGINAL MESSAGE> {question} <END OF ORIGINAL MESSAGE>\n"
        f"VOTING RESULTS:\n{tally}\n"
        f"All answers provided during coordination:\n{listed}\n"
        "Based on the coordination process above, present your final answer:"
    )
    return (Message(role="system", content="\n".join(system)), Message(role="user", content=user))


def _compact_presentation(
    system_message: str, question: str, answers: Sequence[tuple[str, str]], presenter_anon: str,
) -> tuple[Message, ...]:
    own = next(((a, text) for a, text in answers if a == presenter_anon), None)
    # No vote tally: a small model copies "your answer was voted the best ..." as its final answer. The
    # question asked again: a small model asked to "present" its answer describes it (drops the code).
    closing = f"Answer the question once more, as your final answer (complete, with any code it needs):\n\n{question}"
    return _compact_conversation(system_message, question, answers, own, closing)


# ---------------------------------------------------------------- post-evaluation (spec §1.5, §1.6, §1.12)


def submit_tool() -> ToolSpec:
    """MassGen's post-evaluation ``submit`` tool (spec §1.5, ``post_evaluation.py``)."""
    return ToolSpec(
        name="submit",
        description="Submit the final answer. Call this when the final answer fully addresses the original task "
        "and needs no further coordination.",
        parameters={
            "type": "object",
            "properties": {
                "confirmed": {
                    "type": "boolean",
                    "enum": [True],
                    "description": "Confirm that the final answer fully addresses the original task and is ready "
                    "to be submitted",
                }
            },
            "required": ["confirmed"],
        },
    )


def restart_tool() -> ToolSpec:
    """MassGen's post-evaluation ``restart_orchestration`` tool (spec §1.5), with its worked example."""
    return ToolSpec(
        name="restart_orchestration",
        description="Restart the coordination with specific instructions, when the final answer does not fully "
        "address the original task. All agents start over and see your reason and instructions.",
        parameters={
            "type": "object",
            "properties": {
                "reason": {
                    "type": "string",
                    "description": "Why the final answer is insufficient. Example: 'The task asked for two "
                    "Beatles members, but the answer only describes John Lennon.'",
                },
                "instructions": {
                    "type": "string",
                    "description": "What the next attempt must do differently. Example: 'Describe both John "
                    "Lennon and Paul McCartney, with birth year, role in the band and notable contributions.'",
                },
            },
            "required": ["reason", "instructions"],
        },
    )


def post_evaluation_messages(
    system_message: str, question: str, final_answer: str, style: Style = "massgen"
) -> tuple[Message, ...]:
    """The winner's post-evaluation prompt (spec §1.6 "Post-evaluation"): identity + the evaluation
    section; the original message, ``FINAL ANSWER TO EVALUATE:`` and what to do."""
    system = (Message(role="system", content=system_message.strip()),) if system_message.strip() else ()
    if style == "compact":
        user = (
            f"Question: {question}\n\nThe team's final answer:\n\n{final_answer}\n\n"
            "Check whether this final answer fully and correctly answers the question. If it does, choose "
            "submit. If it does not, choose restart_orchestration, with the reason and what the next "
            "attempt must do."
        )
        return (*system, Message(role="user", content=user))
    section = _section(
        "post_evaluation",
        "critical",
        "You have just presented the final answer of a coordination process. Evaluate whether this answer fully "
        "addresses the original task: is it complete, correct and does it do everything that was asked? If the "
        "answer claims that files were created or changed, verify that they exist.\n"
        "Then call ONE of these tools:\n"
        "- `submit(confirmed=True)` if the answer fully addresses the original task;\n"
        "- `restart_orchestration(reason, instructions)` if it does not: say why, and what the next attempt "
        "must do differently. All agents will start over with your feedback.",
    )
    parts = [_section("agent_identity", "critical", system_message.strip())] if system_message.strip() else []
    user = (
        f"<ORIGINAL MESSAGE> {question} <END OF ORIGINAL MESSAGE>\n"
        f"FINAL ANSWER TO EVALUATE:\n{final_answer}\n"
        "Evaluate whether this final answer fully addresses the original message, then call `submit` or "
        "`restart_orchestration`."
    )
    return (
        Message(role="system", content="<system_prompt>\n" + "\n".join([*parts, section]) + "\n</system_prompt>"),
        Message(role="user", content=user),
    )


def restart_context(reason: str, instructions: str, previous_answer: str, style: Style = "massgen") -> str:
    """MassGen's ``format_restart_context`` (spec §1.6): the prefix of every coordination turn's user
    message in an attempt after a restart."""
    if style == "compact":
        return (
            f"A previous attempt at this question was restarted because: {reason}\n"
            f"Instructions for this attempt: {instructions}\n"
            f"The previous attempt's answer, for reference:\n{previous_answer}"
        )
    return (
        "<PREVIOUS ATTEMPT FEEDBACK>\n"
        f"The previous orchestration attempt was restarted because: {reason}\n\n"
        f"**Instructions for this attempt:** {instructions}\n\n"
        f"**Previous attempt's winning answer (for reference):**\n{previous_answer}\n\n"
        "Please address these specific issues in your coordination and final answer.\n"
        "<END OF PREVIOUS ATTEMPT FEEDBACK>"
    )


def with_restart_context(messages: Sequence[Message], context: str) -> tuple[Message, ...]:
    """``messages`` with ``context`` before the first user message (the question)."""
    out = list(messages)
    i = next(i for i, m in enumerate(out) if m.role == "user")
    out[i] = Message(role="user", content=f"{context}\n\n{out[i].content}")
    return tuple(out)


MULTI_TURN_NOTE = (
    "This is a multi-turn conversation. The CONVERSATION_HISTORY holds the user's earlier messages and "
    "the final answers given to them; the ORIGINAL MESSAGE is the user's latest message, to be answered "
    "in that context. Your workspace starts as a copy of the files the previous turn's final answer left, "
    "which are also available read-only as a context path."
)
"""The multi-turn note of the system prompt (MassGen spec §1.13; MassGen's wording is not recorded)."""


def history_block(history: Sequence[tuple[str, str]]) -> str:
    """``<CONVERSATION_HISTORY>`` of ``(question, final answer)`` pairs, oldest first (spec §1.6)."""
    lines = "\n".join(f"User: {q}\nAssistant: {a}" for q, a in history)
    return f"<CONVERSATION_HISTORY>\n{lines}\n<END OF CONVERSATION_HISTORY>"


def with_history(
    messages: tuple[Message, ...], history: Sequence[tuple[str, str]], style: Style = "massgen"
) -> tuple[Message, ...]:
    """A turn's first messages (coordination or presentation) with the session's earlier turns, ``history``
    as ``(question, final answer)`` pairs oldest first (MassGen spec §1.13); unchanged when it is empty."""
    if not history:
        return messages
    first_user = next(i for i, m in enumerate(messages) if m.role == "user")
    head, rest = list(messages[:first_user]), list(messages[first_user:])
    if style == "compact":
        earlier = [m for q, a in history
                   for m in (Message(role="user", content=q), Message(role="assistant", content=a))]
        return (*head, *earlier, *rest)
    note = _section("multi_turn", "high", MULTI_TURN_NOTE)
    if head and head[0].role == "system":
        head[0] = Message(role="system", content=f"{head[0].content}\n{note}")
    else:
        head.insert(0, Message(role="system", content=note))
    rest[0] = Message(role="user", content=f"{history_block(history)}\n{rest[0].content}")
    return (*head, *rest)
