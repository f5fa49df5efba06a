"""The event schema: every state change of a run is one of these events.

Wire format (JSON): an :class:`Envelope` whose ``data`` holds one event, tagged by ``type``::

    {"id": "o:t:r1:a:0:0", "run_id": "r1", "type": "vote.cast", "ts": 1732350000.12,
     "source": {"service": "orchestrator", "instance": "host-1234"}, "causation_id": "...", "v": 1,
     "data": {"type": "vote.cast", "voter_id": "a", ...}}

Rules (msgspec schema evolution, code-style anchors items 7-10):

- every event has an explicit string tag that never changes when the class is renamed;
- new fields only with defaults, never a changed type; a breaking change is a new tag;
- no ``forbid_unknown_fields`` here, so an older reader skips fields it does not know, and
  :func:`decode` turns an unknown tag into :class:`UnknownEvent` instead of failing.

``Envelope.id`` is also the ``Nats-Msg-Id`` of the publish, derived from the event's cause, so a
retried or redelivered handler never writes an event twice (docs/architecture principle 3).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from typing import Any, Literal, get_args

import msgspec

from massgen_es import scrub
from massgen_es.errors import EventDecodeError
from massgen_es.subjects import Writer

SCHEMA_VERSION = 1
SCHEMA_VERSIONS = {
    1: "initial schema: run, turn, answer, vote, presentation and usage events",
}
assert SCHEMA_VERSION in SCHEMA_VERSIONS, "every schema version needs a summary line"


# ---------------------------------------------------------------- shared value types


class Source(msgspec.Struct, frozen=True, kw_only=True):
    """Who published an event."""

    service: str
    """``cli``, ``orchestrator``, ``agent_worker`` ..."""
    instance: str
    """Process instance id, ``<host>-<pid>-<4 hex>`` (``instance_id``), to tell replicas apart."""

    @staticmethod
    def instance_id() -> str:
        """A new ``<hostname>-<pid>-<4 hex>``. The random part tells restarts apart in containers,
        where every service runs as pid 1 and a restarted container keeps its hostname."""
        return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    """An error as data (docs/architecture principle 6): never a pickled exception."""

    type: str
    """Error class name, e.g. ``ProviderHTTPError`` or ``EnforcementExhausted``."""
    message: str
    retryable: bool = False
    details: dict[str, Any] = {}
    cause: Failure | None = None

    def text(self) -> str:
        """``"<type>: <message>"``: the one-line form every view and the decision core print."""
        return f"{self.type}: {self.message}"


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """A tool call made by a model, in the neutral (OpenAI-like) shape."""

    id: str
    name: str
    arguments: str
    """The arguments as the model wrote them: a JSON string, possibly invalid."""


class ProviderBlock(msgspec.Struct, frozen=True, kw_only=True):
    """A block of a provider's reply that the neutral shape cannot express and that must go back to that
    provider unchanged, such as Anthropic's signed ``thinking`` block.

    ``data`` is the block exactly as the provider's API wrote it (a JSON object); nothing reads or
    edits it but the adapter that made it.
    """

    provider: str
    """The API whose adapter made the block and alone sends it back, e.g. ``anthropic``."""
    data: dict[str, Any]


class Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One chat message in the neutral shape every provider adapter translates."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    """For ``role == "tool"``: the call this message answers."""
    provider_blocks: tuple[ProviderBlock, ...] = ()
    """For ``role == "assistant"``: the reply's opaque blocks, in the order they came (the Claude
    adapter puts its ``thinking`` / ``redacted_thinking`` blocks first in the assistant message, as the
    Messages API wants them back in a tool loop). An adapter ignores blocks of another ``provider``."""


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A function tool offered to a model (JSON-schema ``parameters``)."""

    name: str
    description: str
    parameters: dict[str, Any]


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Token usage of one LLM call (OTel ``gen_ai.usage.*``)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


class AgentSpec(msgspec.Struct, frozen=True, kw_only=True):
    """An agent of a run, as submitted (secrets already replaced by env-var references)."""

    id: str
    backend: dict[str, Any]
    """The ``backend`` block of the config, validated; ``api_key`` never appears, only ``api_key_env``."""
    system_message: str = ""


class ToolRule(msgspec.Struct, frozen=True, kw_only=True):
    """A person's decision about tools (issue 15 items 2-3), from the config's ``tool_safety.rules`` or
    an override file (``massgen_es.tool_safety``); the first rule whose ``tool`` matches decides.

    Attributes:
        tool: ``server.tool`` with shell wildcards (``github.*``, ``*.delete_*``), or ``execute_command``.
        policy: ``allow`` runs the call, ``ask`` waits for a person's approval, ``deny`` refuses it.
        safety: ``reversible`` or ``irreversible``: what planning mode blocks during coordination.
        rationale: why, in a few words.
    """

    tool: str
    policy: Literal["allow", "ask", "deny"] | None = None
    safety: Literal["reversible", "irreversible"] | None = None
    rationale: str = ""


class Paraphrasing(msgspec.Struct, frozen=True, kw_only=True):
    """MassGen's DSPy question paraphrasing (``orchestrator.dspy``, spec §1.15), as the run uses it:
    one LLM call per variant, each on ``backend`` at its temperature (``massgen_orchestrator.paraphrase``).

    Attributes:
        num_variants: rewrites asked for (MassGen's ``num_variants``); only as many as there are agents
            are requested, since variant ``i`` goes to agents ``i``, ``i + n``, ... (round-robin).
        backend: the backend block that paraphrases (secrets replaced by env-var references).
        strategy: ``balanced``, ``diverse``, ``conservative`` or ``adaptive``: how far a rewrite may go.
        use_chain_of_thought: the model reasons briefly before the rewrite (kept out of the variant).
        temperature_range: ``(lowest, highest)`` temperature, spread over the variants' calls in order
            (MassGen's ``temperature_range``); None: the strategy's range.
    """

    num_variants: int
    backend: dict[str, Any]
    strategy: Literal["balanced", "diverse", "conservative", "adaptive"] = "balanced"
    use_chain_of_thought: bool = False
    temperature_range: tuple[float, float] | None = None


class RunSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Protocol settings of a run (MassGen spec §1.10, §5.2)."""

    max_new_answers_per_agent: int | None = None
    voting_sensitivity: Literal["lenient", "balanced", "strict"] = "lenient"
    answer_novelty_requirement: Literal["lenient", "balanced", "strict"] = "lenient"
    max_attempts: int = 3
    """LLM calls per turn before the turn fails (MassGen hard-codes 3, spec §1.4)."""
    max_failed_turns: int = 3
    """Consecutive failed turns after which an agent is dropped (MassGen #654 retries forever)."""
    orchestrator_timeout_s: float = 1800.0
    presentation_timeout_s: float = 300.0
    """Grace for the final presentation before the stored answer is used instead."""
    replay_tools_from: str | None = None
    """A run whose recorded MCP results are served instead of calling the servers again."""
    max_cost_usd: float | None = None
    """Run budget: once the recorded cost reaches it, no new turn starts and the run ends with the best
    answer so far (MassGen users ask for this in its #888)."""
    max_orchestration_restarts: int = 0
    """How many times the winner's post-evaluation may restart coordination (MassGen spec §1.12): a run
    has up to ``1 + max_orchestration_restarts`` attempts; 0 turns post-evaluation off."""
    debug_final_answer: str | None = None
    """MassGen's debug aid (spec §1.12, §5.2): the final answer of attempt 1 is this text instead of the
    presentation, so that the post-evaluation has something to restart on."""
    skip_coordination_rounds: bool = False
    """MassGen's debug aid (spec §1.2 step 5, §5.2): no coordination round; the first agent in config
    order is the winner and presents at once (``presentation.started`` reason ``skipped``)."""
    mode: Literal["team", "tool_call"] = "team"
    """``team``: the coordination protocol. ``tool_call``: one MCP tool call made by ``massgen mcp call``
    (its ``tool.call_requested`` is written by the command line); no agent turn is requested, and the
    orchestrator ends the run with the call's outcome, so it replays like any run."""
    planning_mode: bool = False
    """MassGen's ``enable_planning_mode`` (spec §1.14): during coordination irreversible tools are not
    executed, agents describe what they would do; the presenter runs them."""
    planning_mode_instruction: str | None = None
    """Replaces the planning-mode text added to coordination prompts (MassGen's key of that name)."""
    tool_rules: tuple[ToolRule, ...] = ()
    """The run's tool rules: the config's, then the workspace's and the user's override files."""
    approval_timeout_s: float = 300.0
    """How long a call marked ``ask`` waits for a person before it is denied."""
    paraphrase: Paraphrasing | None = None
    """MassGen's ``orchestrator.dspy``: before coordination the question is paraphrased once per agent
    slot and each agent sees its variant as ``<PARAPHRASED MESSAGE>`` (``question.paraphrased``)."""
    memory_filesystem_mode: bool = False
    """MassGen's ``enable_memory_filesystem_mode``: agents keep memory files in ``memory/short_term`` and
    ``memory/long_term`` of their workspace; the memories shared with answers (``workspace.snapshotted``)
    are shown in every coordination prompt (``massgen_orchestrator.memory``)."""


TurnKind = Literal["coordination", "presentation", "post_evaluation", "paraphrase"]
"""What a turn is for: coordination (``new_answer``/``vote``), the winner's final presentation (no
workflow tools), the winner's post-evaluation of it (``submit``/``restart_orchestration``, spec §1.12),
or one rewrite of the question before coordination (``RunSettings.paraphrase``; on the paraphrasing
backend, for the agent named, no tools)."""


class VoteRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A valid vote as counted at consensus."""

    voter_id: str
    target_id: str
    target_anon: str
    reason: str


# ---------------------------------------------------------------- events


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event; concrete classes set an explicit ``tag``."""


class PreviousTurn(msgspec.Struct, frozen=True, kw_only=True):
    """One earlier turn of a session (MassGen spec §1.13): its run, the user's question and the final
    answer the team gave. ``winner`` is the real agent id that presented it (never put in a prompt)."""

    run_id: str
    question: str
    answer: str
    winner: str | None = None


class RunSubmitted(Event, frozen=True, tag="run.submitted"):
    """A user submitted a question to a team of agents.

    A turn of a multi-turn session (``massgen chat``, ``massgen submit --session ID``; MassGen spec
    §1.13) carries its ``session_id``, the session's earlier turns that ended with an answer
    (``previous_turns``, oldest first: the agents see them as the conversation history) and
    ``workspace_from``, the earlier run whose winner's workspace this turn's agents start from (a
    writable copy in each workspace, the original as a read-only context path;
    ``massgen_es.workspaces.previous_workspace``). So a turn replays from its own events alone.
    """

    question: str
    agents: tuple[AgentSpec, ...]
    settings: RunSettings
    config_path: str | None = None
    forked_from: str | None = None
    """Set on the copy of a run's submission that begins a fork (``massgen fork``): the parent run. The
    orchestrator leaves such a run alone until its ``run.forked`` event says the copy is complete."""
    session_id: str | None = None
    previous_turns: tuple[PreviousTurn, ...] = ()
    workspace_from: str | None = None
    """The run among ``previous_turns`` whose winner's workspace carries forward (the latest with a winner)."""


class RunForked(Event, frozen=True, tag="run.forked"):
    """This run copies ``parent_run_id``'s events up to ``parent_seq`` and continues from there with a
    changed config (``massgen fork``). Appended after the copied events, it is an input to the decision
    core: from here on the agents' backends and system messages and the settings are these; an attempt
    still waiting for a worker whose agent's backend changed is requested again with the new one."""

    parent_run_id: str
    parent_seq: int
    """The parent's stream sequence of the last copied event (the fork point, moved forward to the end of
    the orchestrator's decisions on the events up to the requested one)."""
    agents: tuple[AgentSpec, ...]
    """Same ids in the same order as the parent's; backends and system messages may differ."""
    settings: RunSettings
    changes: tuple[str, ...] = ()
    """What changed, as given: ``--set`` assignments (``agents[1].backend.model=m2``) or ``--config FILE``."""
    copied: int = 0
    """How many of the parent's events were copied."""


class TurnRequested(Event, frozen=True, tag="turn.requested"):
    """The orchestrator asks an agent for one LLM call (attempt) of a turn; also the work-queue item."""

    turn_id: str
    agent_id: str
    attempt: int
    """1-based LLM call number within the turn."""
    kind: TurnKind
    messages: tuple[Message, ...]
    """Exactly what the model is sent, anonymised (real agent ids never appear)."""
    tools: tuple[ToolSpec, ...]
    backend: dict[str, Any]
    answers_version: int
    """How many answers had been accepted when these messages were built: what the agent has seen."""
    anon_id: str | None = None
    """The agent's anonymous id (``agentN``, its config position): what a backend may key per-agent
    state on (the local model's cache slot), never shown to other agents' prompts."""
    planning_mode: bool = False
    """Planning mode holds for this turn (a coordination turn of a run with ``planning_mode``): the
    worker refuses ``execute_command`` and the broker refuses irreversible MCP tools."""


class TurnStarted(Event, frozen=True, tag="turn.started"):
    """A worker picked up a turn attempt."""

    turn_id: str
    agent_id: str
    attempt: int
    worker: str
    delivery: int = 1
    """JetStream delivery count: above 1 after a worker died mid-turn."""


class TextDelta(Event, frozen=True, tag="text.delta"):
    """Coalesced streamed text of an attempt, so a replay can show it as it streamed."""

    turn_id: str
    agent_id: str
    attempt: int
    seq: int
    text: str
    delivery: int = 1


class UsageRecorded(Event, frozen=True, tag="usage.recorded"):
    """Tokens and time of one LLM call."""

    turn_id: str
    agent_id: str
    attempt: int
    model: str
    usage: Usage
    duration_s: float
    time_to_first_token_s: float | None = None
    cost_usd: float | None = None
    """From ``massgen_es.pricing`` (or the provider's own figure); None when the model has no known price."""


class ProviderRetried(Event, frozen=True, tag="provider.retried"):
    """A retryable provider error (rate limit, 5xx, connection, timeout); the call is made again after
    ``delay_s`` (the provider's ``Retry-After`` when it sent one)."""

    turn_id: str
    agent_id: str
    attempt: int
    retry: int
    """1-based retry number within the call."""
    delay_s: float
    failure: Failure


class TurnResponded(Event, frozen=True, tag="turn.responded"):
    """What the model returned for an attempt: its text and tool calls (the workflow decision)."""

    turn_id: str
    agent_id: str
    attempt: int
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None


class TurnFailed(Event, frozen=True, tag="turn.failed"):
    """An attempt failed (provider error) or a turn ran out of enforcement attempts."""

    turn_id: str
    agent_id: str
    attempt: int
    failure: Failure


class TurnRejected(Event, frozen=True, tag="turn.rejected"):
    """The orchestrator rejected a response (spec §1.4 table); ``errors`` go back to the model."""

    turn_id: str
    agent_id: str
    attempt: int
    code: str
    """``no_workflow_tool``, ``multiple_votes``, ``vote_and_answer``, ``vote_no_answers``, ``unknown_agent``,
    ``max_answers``, ``duplicate_answer``, ``answer_not_novel``, ``bad_arguments``, ``unknown_tool``."""
    errors: tuple[str, ...]


class AnswerPosted(Event, frozen=True, tag="answer.posted"):
    """An accepted ``new_answer``. Invalidates every vote (spec §1.3)."""

    agent_id: str
    anon_id: str
    label: str
    """``agentN.k``: the k-th answer of anonymous agent N (spec §6.4)."""
    content: str
    version: int
    """Number of accepted answers in the run after this one."""
    turn_id: str


class VoteCast(Event, frozen=True, tag="vote.cast"):
    """An accepted ``vote``, valid against answer-set ``version``."""

    voter_id: str
    target_id: str
    target_anon: str
    reason: str
    version: int
    turn_id: str


class VoteInvalidated(Event, frozen=True, tag="vote.invalidated"):
    """A vote no longer counts because a new answer arrived."""

    voter_id: str
    target_id: str
    by_label: str


class UpdateDelivered(Event, frozen=True, tag="update.delivered"):
    """New answers that arrived mid-turn are in the next attempt's messages (fixes spec §1.4 defect)."""

    agent_id: str
    turn_id: str
    attempt: int
    labels: tuple[str, ...]
    from_version: int
    to_version: int


class AgentDropped(Event, frozen=True, tag="agent.dropped"):
    """An agent failed too many turns in a row and leaves the run (fixes MassGen #654)."""

    agent_id: str
    reason: str
    failed_turns: int


class ConsensusReached(Event, frozen=True, tag="consensus.reached"):
    """Every live agent holds a valid vote; the plurality winner presents (spec §1.9)."""

    winner_id: str
    winner_anon: str
    tally: dict[str, int]
    """Anonymous id -> votes."""
    votes: tuple[VoteRecord, ...]
    tie_broken: bool = False


class PresentationStarted(Event, frozen=True, tag="presentation.started"):
    """The winner was asked for the final presentation (spec §1.11)."""

    presenter_id: str
    turn_id: str
    reason: Literal["consensus", "timeout", "skipped"]
    """``skipped``: ``skip_coordination_rounds`` (MassGen's debug key) chose the first agent."""


class PresentationCompleted(Event, frozen=True, tag="presentation.completed"):
    """The final answer; the stored answer when the presentation failed or came back empty."""

    presenter_id: str
    content: str
    used_stored_answer: bool = False


class PostEvaluationStarted(Event, frozen=True, tag="evaluation.started"):
    """The winner was asked to evaluate the presented final answer (MassGen spec §1.12): only when
    ``max_orchestration_restarts > 0`` and the attempt is not the run's last."""

    evaluator_id: str
    turn_id: str
    attempt: int
    """The run's attempt being evaluated (1-based; ``run.restarted`` starts the next)."""


class PostEvaluationSubmitted(Event, frozen=True, tag="evaluation.submitted"):
    """The evaluated answer stands: the evaluator called ``submit``, or the evaluation ended without a
    decision, which MassGen counts as a submit (no tool call, a failed turn, its deadline)."""

    evaluator_id: str
    turn_id: str
    auto: str = ""
    """Empty when the evaluator called ``submit``; otherwise why it counts as submitted."""


class QuestionParaphrased(Event, frozen=True, tag="question.paraphrased"):
    """Every paraphrase turn of the run settled (``RunSettings.paraphrase``, MassGen spec §1.15): the
    variants, and what each agent is asked besides the original (computed once; a resumed run reuses it).

    Attributes:
        variants: one per paraphrase turn, in order; ``""`` where the call failed or gave no usable text.
        by_agent: agent id -> its ``<PARAPHRASED MESSAGE>`` (round-robin over the variants); an agent
            whose variant is empty is not listed and sees the original only.
    """

    variants: tuple[str, ...]
    by_agent: dict[str, str]


class RunRestarted(Event, frozen=True, tag="run.restarted"):
    """The evaluator called ``restart_orchestration``: a new attempt starts from scratch (every agent's
    answers and votes reset), and every coordination turn of it begins with this feedback (MassGen's
    ``<PREVIOUS ATTEMPT FEEDBACK>``, spec §1.6, §1.12)."""

    attempt: int
    """The attempt that starts (2 for the first restart)."""
    evaluator_id: str
    reason: str
    instructions: str
    previous_winner_id: str
    previous_answer: str
    """The final answer of the attempt that was restarted (shown to the agents for reference)."""


class RunCompleted(Event, frozen=True, tag="run.completed"):
    """The run ended with a final answer after consensus."""

    winner_id: str
    final_answer: str


class RunTimedOut(Event, frozen=True, tag="run.timed_out"):
    """The orchestrator timeout expired; the best available answer (if any) was presented."""

    winner_id: str | None = None
    final_answer: str | None = None


class RunFailed(Event, frozen=True, tag="run.failed"):
    """The run ended without an answer."""

    reason: str
    failure: Failure | None = None


class RunCancelRequested(Event, frozen=True, tag="run.cancel_requested"):
    """Someone asked to stop the run: Ctrl-C in ``massgen submit`` or ``massgen cancel`` (issue 15 item
    6). An input to the decision core, which ends a run still going with ``run.cancelled``; an
    orchestrator that starts later decides it too, so a cancelled run is never resumed."""

    reason: str = ""
    by: str = ""
    """Who asked: the command, user and host (``massgen cancel by ana@laptop``)."""


class RunCancelled(Event, frozen=True, tag="run.cancelled"):
    """The run was stopped on request (``run.cancel_requested``): no new turns; turns, tool calls and
    commands in flight are abandoned, and their late results are not recorded (nothing follows a run's
    end)."""

    reason: str = ""
    by: str = ""


class RunResumeRequested(Event, frozen=True, tag="run.resume_requested"):
    """``massgen resume``: continue an interrupted run on purpose (one whose stack went away before it
    ended; a stack started for one ``massgen submit`` takes on no other run by itself). The
    orchestrator that sees it takes the run on: it re-queues the turns still open and re-arms the
    deadlines, which do not count the time the run was interrupted."""

    by: str = ""


class BudgetExceeded(Event, frozen=True, tag="budget.exceeded"):
    """The run's recorded cost reached ``max_cost_usd``: coordination stops here."""

    cost_usd: float
    max_cost_usd: float


class TimerFired(Event, frozen=True, tag="timer.fired"):
    """A deadline passed. Time enters the decision core only through this event."""

    name: Literal["run_deadline", "presentation_deadline"]
    turn_id: str | None = None
    """For ``presentation_deadline``: the presentation or post-evaluation turn it bounds, so a deadline
    armed for one attempt is not taken for a later one's. None in runs recorded before post-evaluation
    (the current presentation)."""


# ---------------------------------------------------------------- MCP tools (issue 3)


class ToolsListRequested(Event, frozen=True, tag="tools.list_requested"):
    """A worker asks the MCP broker for an agent's tool catalog; also the broker's work item."""

    agent_id: str


class ToolsListed(Event, frozen=True, tag="tools.listed"):
    """The catalog of one MCP server as one agent may use it: at start, and again (``version`` + 1) on
    the server's ``notifications/tools/list_changed``. ``tools`` carry prefixed names
    (``mcp__<server>__<tool>``) and the servers' input schemas; tools the agent's filters exclude are
    not listed. ``failure`` is set when the server could not be started or listed."""

    agent_id: str
    server: str
    version: int
    tools: tuple[ToolSpec, ...] = ()
    failure: Failure | None = None
    roots: tuple[str, ...] = ()
    """For the filesystem server: the directories the agent may reach (workspace first)."""


class ToolCallRequested(Event, frozen=True, tag="tool.call_requested"):
    """A model called an MCP tool; also the broker's work item. With ``server`` ``custom_tool``: one of
    MassGen's bundled multimodal tools, which the agent worker runs itself (it holds the provider key) and
    answers with ``tool.call_completed`` / ``tool.call_failed`` (``massgen_es.custom_tools.bundled``)."""

    call_id: str
    """The model's tool-call id."""
    turn_id: str
    agent_id: str
    attempt: int
    kind: TurnKind
    server: str
    tool: str
    """Bare tool name, as the server knows it."""
    arguments: str
    """The arguments as the model wrote them (JSON string, validated by the broker)."""


class ToolClassified(Event, frozen=True, tag="tool.classified"):
    """An LLM classified an MCP tool (issue 15 item 2): the agent's own backend, asked once per tool
    (server, tool name and input schema: ``digest``) in a planning-mode run, the first time a turn
    meets a tool no classification is stored for; kept in the ``MASSGEN_TOOL_SAFETY`` bucket too."""

    agent_id: str
    server: str
    tool: str
    digest: str
    safety: Literal["reversible", "irreversible"]
    rationale: str
    model: str


class ApprovalRequested(Event, frozen=True, tag="approval.requested"):
    """A tool call marked ``ask`` (a ``ToolRule``) waits for a person: ``massgen approve``/``deny`` or
    the live view's prompt answers with ``approval.decided``; without an answer within ``timeout_s`` the
    broker denies it. The rest of the run goes on meanwhile (issue 15 item 3)."""

    call_id: str
    turn_id: str
    agent_id: str
    server: str
    tool: str
    arguments: str
    """The arguments as the model wrote them (scrubbed like every event)."""
    timeout_s: float
    rationale: str = ""
    """The rule's reason for asking."""


class ApprovalDecided(Event, frozen=True, tag="approval.decided"):
    """The answer to an ``approval.requested`` (event id ``<request id>:decided``: the first answer is
    the only one, any later one is a duplicate that JetStream drops)."""

    call_id: str
    agent_id: str
    server: str
    tool: str
    approved: bool
    by: str
    """Who decided: ``massgen approve by ana@laptop``, or ``timeout after 300 s``."""
    reason: str = ""


class ToolCallStarted(Event, frozen=True, tag="tool.call_started"):
    """The broker is about to call the server (the call has passed its checks): from here on the call may
    have effects. A redelivered request that finds this marker (id ``<request id>:started``) and no
    outcome is answered ``tool.call_failed`` with ``Interrupted``, never called again (issue 13 item 3)."""

    call_id: str
    turn_id: str
    agent_id: str
    server: str
    tool: str


class ToolCallCompleted(Event, frozen=True, tag="tool.call_completed"):
    """The server answered a tool call (``is_error`` is the server's own ``isError``)."""

    call_id: str
    turn_id: str
    agent_id: str
    server: str
    tool: str
    content: str
    is_error: bool
    duration_s: float
    attempts: int = 1
    replayed_from: str | None = None
    """Run whose recorded result was served instead of calling the server."""


class ToolCallFailed(Event, frozen=True, tag="tool.call_failed"):
    """A tool call did not reach a server answer: refused (permission, arguments, circuit open), failed
    after its retries, timed out, or ``Interrupted`` (the broker stopped during the call). The model
    receives ``failure.message`` as a tool error."""

    call_id: str
    turn_id: str
    agent_id: str
    server: str
    tool: str
    failure: Failure
    duration_s: float = 0.0
    attempts: int = 0


class McpServerStateChanged(Event, frozen=True, tag="mcp.server_state"):
    """An MCP server session changed state: ``started``, ``crashed`` (restarted on next use), or its
    circuit breaker ``open`` / ``half_open`` / ``closed`` (MassGen spec §3.3)."""

    server: str
    state: Literal["started", "crashed", "open", "half_open", "closed"]
    reason: str = ""
    failures: int = 0


class WorkspaceSnapshotRequested(Event, frozen=True, tag="workspace.snapshot_requested"):
    """A worker asks the broker to share an agent's workspace after it posted an answer."""

    agent_id: str
    turn_id: str


class MemoryNote(msgspec.Struct, frozen=True, kw_only=True):
    """A memory file an agent shared with its answer (MassGen's memory filesystem mode):
    ``memory/<tier>/<name>.md`` of its workspace, Markdown with ``name``/``description`` front matter."""

    tier: Literal["short_term", "long_term"]
    name: str
    description: str = ""
    content: str = ""
    """The text after the front matter: short-term memories only (long-term ones are read on demand)."""
    path: str
    """The file in the shared snapshot (absolute, read-only for the other agents)."""


class WorkspaceSnapshotted(Event, frozen=True, tag="workspace.snapshotted"):
    """An agent's workspace was copied, read-only, to ``path`` for the other agents, under the same
    anonymous id its answer has (MassGen spec §3.5)."""

    agent_id: str
    anon_id: str
    turn_id: str
    path: str
    files: int
    bytes: int
    memories: tuple[MemoryNote, ...] = ()
    """With ``RunSettings.memory_filesystem_mode``: the memory files of the snapshot (``massgen_es.memory_files``)."""



# ---------------------------------------------------------------- code execution (issue 5)


class ObjectRef(msgspec.Struct, frozen=True, kw_only=True):
    """A payload kept in the JetStream Object Store (docs/architecture principle 5): events carry the reference."""

    name: str
    """Object name in the ``MASSGEN_OBJECTS`` bucket (the sha256 digest)."""
    digest: str
    """``sha256:<hex>`` of the content."""
    size: int
    label: str = ""
    """What it is: ``stdout``, ``stderr``, or a produced file's path relative to the workspace."""


class ExecutionRequested(Event, frozen=True, tag="execution.requested"):
    """A model called ``execute_command`` (MassGen spec §4.1); also the executor's work item."""

    call_id: str
    turn_id: str
    agent_id: str
    attempt: int
    command: str
    work_dir: str = ""
    """Relative to the agent's workspace (empty: the workspace itself)."""
    timeout_s: float | None = None
    custom_tool: str = ""
    """A call of this custom tool (``custom_tool__<name>``, MassGen spec §2.5) instead of a command: the
    executor runs the function with ``arguments`` in the agent's sandbox; ``command`` is empty."""
    arguments: dict[str, Any] = {}
    """The custom tool's arguments as the model passed them (checked against its schema)."""

    @property
    def shown(self) -> str:
        """What was run, for views: ``$ <command>``, or ``custom_tool__<name> <arguments as JSON>``."""
        if self.custom_tool:
            return f"{self.custom_tool} {json.dumps(self.arguments, ensure_ascii=False)}"
        return f"$ {self.command}"


ExecutionMode = Literal["docker", "local", "local_unisolated"]
"""Where a command runs (backend ``command_line_execution_mode``; SECURITY.md says what each isolates)."""


class ExecutionStarted(Event, frozen=True, tag="execution.started"):
    """The executor is about to run a command (it passed the filters): from here on it may have effects.
    A redelivered request that finds this marker (id ``<request id>:started``) and no outcome is answered
    ``execution.failed`` with ``Interrupted``, never run again (issue 13 item 3)."""

    call_id: str
    turn_id: str
    agent_id: str
    mode: ExecutionMode
    sandbox: str | None = None
    """The container name in Docker mode."""


class ExecutionCompleted(Event, frozen=True, tag="execution.completed"):
    """A command ran (whatever its exit code). Output beyond the cap, and files the command wrote in
    the workspace, are in the Object Store, referenced by digest."""

    call_id: str
    turn_id: str
    agent_id: str
    mode: ExecutionMode
    exit_code: int
    duration_s: float
    stdout: str
    stderr: str
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    objects: tuple[ObjectRef, ...] = ()
    sandbox: str | None = None
    """The container name in Docker mode."""
    custom_tool: str = ""
    """Set for a custom tool's call: ``stdout`` is then the function's result text (what the model reads)
    and ``stderr`` what the function printed."""


class ExecutionFailed(Event, frozen=True, tag="execution.failed"):
    """A command did not run to a result: refused by the filters, outside the workspace, no sandbox
    available, no answer in time, or ``Interrupted`` (the executor stopped while it ran)."""

    call_id: str
    turn_id: str
    agent_id: str
    failure: Failure


class SandboxChanged(Event, frozen=True, tag="sandbox.changed"):
    """An agent's Docker sandbox was ``created`` (cold or ``warm``, i.e. ahead of its first command) or
    ``removed`` (run ended, or reaped as an orphan by a restarted executor)."""

    agent_id: str
    container: str
    state: Literal["created", "removed"]
    image: str = ""
    reason: str = ""
    preinstall: str = ""
    """``created``: one ``<kind>: <packages>: ok (<s> s)`` or ``...: failed (<why>): <output tail>`` line per
    ``command_line_docker_packages`` install step (MassGen spec §4.2)."""


# ---------------------------------------------------------------- generated media (issue 16)


class MediaGenerated(Event, frozen=True, tag="media.generated"):
    """A model's ``generate_image``, ``generate_audio``, ``generate_video`` or ``generate_file`` call made a
    file through its provider's own API (``enable_*_generation``; the agent worker calls it, as it holds the
    provider key). The bytes are in the Object Store. Also the MCP broker's work item: it writes the file
    into the agent's workspace when the agent has one (``media.saved``)."""

    call_id: str
    turn_id: str
    agent_id: str
    attempt: int
    kind: Literal["image", "audio", "video", "file"]
    file_name: str
    """The name the model is told, and the file's name in the workspace (``image_<call>.png``)."""
    mime_type: str
    object: ObjectRef
    prompt: str
    """The image, video or document prompt, or the text spoken."""
    model: str
    directory: str = ""
    """Where in the agent's roots the file goes (MassGen's ``storage_path``: relative to the workspace, or
    absolute inside a writable root); empty: the workspace itself."""


class MediaSaved(Event, frozen=True, tag="media.saved"):
    """A generated file was written into the agent's workspace (``path``, absolute), or was not
    (``failure``: its ``directory`` is outside the agent's writable roots)."""

    call_id: str
    agent_id: str
    path: str
    bytes: int
    failure: Failure | None = None


class WorkspaceFileRequested(Event, frozen=True, tag="workspace.file_requested"):
    """A worker-run tool (one of MassGen's bundled multimodal tools, ``massgen_es.custom_tools.bundled``)
    needs a file the agent can read: the MCP broker, which owns the workspaces, checks ``path`` against
    the agent's roots and stores the bytes in the Object Store (``workspace.file_read``). Also the
    broker's work item."""

    call_id: str
    agent_id: str
    kind: TurnKind
    """The turn's kind: which roots the agent has (MassGen spec §3.5)."""
    path: str
    """As the model gave it: relative to the workspace, or absolute inside one of the agent's roots."""
    max_bytes: int
    """Larger files are refused (the provider's own limit for the file's use)."""


class WorkspaceFileRead(Event, frozen=True, tag="workspace.file_read"):
    """The answer to ``workspace.file_requested``: the file's bytes in the Object Store (``object``), or
    why it could not be read (``failure``: outside the agent's roots, missing, not a file, too large)."""

    call_id: str
    agent_id: str
    path: str
    """The resolved absolute path (the request's, when it could not be resolved)."""
    object: ObjectRef | None = None
    failure: Failure | None = None


# ---------------------------------------------------------------- memory (issue 16 item 4)


class MemoryFact(msgspec.Struct, frozen=True, kw_only=True):
    """One fact of an agent's persistent memory (mem0): its id in the store, its text, and for a store
    what mem0 did with it (``ADD``, ``UPDATE``, ``DELETE``)."""

    id: str
    text: str
    event: str | None = None
    score: float | None = None
    """Retrieval: similarity to the query (higher is closer)."""


class MemoryRetrieved(Event, frozen=True, tag="memory.retrieved"):
    """Facts of the agent's persistent memory put into the system message of a turn attempt (MassGen spec
    §5.4: at a turn's start, and again after its context was compressed). ``facts`` may be empty."""

    turn_id: str
    agent_id: str
    attempt: int
    session: str
    """The memory session (``persistent_memory.session_name``, the run's session, or the run)."""
    query: str
    reason: Literal["turn", "compression"]
    facts: tuple[MemoryFact, ...] = ()
    excluded_recent: int = 0
    """Facts left out because this run recorded them (``retrieval.exclude_recent``)."""
    failure: Failure | None = None
    """The search failed (the turn went on without facts)."""


class MemoryStored(Event, frozen=True, tag="memory.stored"):
    """A turn attempt's question and answer (and, with ``recording.record_all_tool_calls``, its tool calls)
    were given to the agent's persistent memory; ``facts``: what mem0 extracted and did. Appended with the
    id ``<turn key>:memory:result``: a redelivered turn that finds it does not store again."""

    turn_id: str
    agent_id: str
    attempt: int
    session: str
    facts: tuple[MemoryFact, ...] = ()
    messages: int = 0
    """How many messages were given to mem0."""
    failure: Failure | None = None
    """The store failed (mem0 or its models); the turn's answer still counts."""


class ContextCompressed(Event, frozen=True, tag="context.compressed"):
    """A call's messages passed ``trigger_threshold`` of the model's context window, so the older ones were
    summarised into the system message until the rest fits ``target_ratio`` of it (MassGen's
    ContextWindowMonitor + ContextCompressor). Token counts are estimates (characters / 4)."""

    turn_id: str
    agent_id: str
    attempt: int
    context_window: int
    trigger_threshold: float
    target_ratio: float
    tokens_before: int
    tokens_after: int
    messages_removed: int
    summary: str
    summary_model: str


# ---------------------------------------------------------------- computer use (issue 16)


class ComputerStep(Event, frozen=True, tag="computer.step"):
    """One step of a computer-use tool call (MassGen's ``computer_use``, ``claude_computer_use``,
    ``gemini_computer_use``, ``browser_automation``; spec §4.3), run by the agent worker: the action the
    computer-use model asked for, carried out in the browser, and the screenshot taken after it (in the
    Object Store), so replay can show the session step by step."""

    call_id: str
    """The calling model's tool-call id (the ``custom_tool__...`` call)."""
    turn_id: str
    agent_id: str
    attempt: int
    tool: str
    """``custom_tool__<name>``."""
    step: int
    """1, 2, ... over the call."""
    action: str
    """The action as the provider sent it (JSON)."""
    url: str
    """The page's URL after the action."""
    screenshot: ObjectRef | None = None
    error: str = ""
    """Why the action failed (the computer-use model was told), or empty."""


class ComputerUseCompleted(Event, frozen=True, tag="computer.completed"):
    """A computer-use tool call ended: ``result`` is the text the calling model reads (MassGen's JSON
    result, or the error when ``is_error``)."""

    call_id: str
    turn_id: str
    agent_id: str
    attempt: int
    tool: str
    arguments: dict[str, Any]
    """The call's arguments with its ``preset_args`` merged in."""
    result: str
    is_error: bool
    steps: int
    duration_s: float


EventType = (
    RunSubmitted
    | RunForked
    | TurnRequested
    | TurnStarted
    | TextDelta
    | UsageRecorded
    | ProviderRetried
    | TurnResponded
    | TurnFailed
    | TurnRejected
    | AnswerPosted
    | VoteCast
    | VoteInvalidated
    | UpdateDelivered
    | AgentDropped
    | ConsensusReached
    | PresentationStarted
    | PresentationCompleted
    | PostEvaluationStarted
    | PostEvaluationSubmitted
    | QuestionParaphrased
    | RunRestarted
    | RunCompleted
    | RunTimedOut
    | RunFailed
    | RunCancelRequested
    | RunCancelled
    | RunResumeRequested
    | TimerFired
    | BudgetExceeded
    | ToolsListRequested
    | ToolsListed
    | ToolCallRequested
    | ToolClassified
    | ApprovalRequested
    | ApprovalDecided
    | ToolCallStarted
    | ToolCallCompleted
    | ToolCallFailed
    | McpServerStateChanged
    | WorkspaceSnapshotRequested
    | WorkspaceSnapshotted
    | ExecutionRequested
    | ExecutionStarted
    | ExecutionCompleted
    | ExecutionFailed
    | SandboxChanged
    | MediaGenerated
    | MediaSaved
    | WorkspaceFileRequested
    | WorkspaceFileRead
    | MemoryRetrieved
    | MemoryStored
    | ContextCompressed
    | ComputerStep
    | ComputerUseCompleted
)
EVENT_CLASSES: tuple[type[Event], ...] = get_args(EventType)
TERMINAL_EVENTS = (RunCompleted, RunTimedOut, RunFailed, RunCancelled)

WRITTEN_BY: dict[type[Event], tuple[Writer, ...]] = {
    RunSubmitted: ("cli",),
    RunForked: ("cli",),
    TurnRequested: ("orchestrator",),
    TurnStarted: ("agent_worker",),
    TextDelta: ("agent_worker",),
    UsageRecorded: ("agent_worker",),
    ProviderRetried: ("agent_worker",),
    TurnResponded: ("agent_worker",),
    TurnFailed: ("agent_worker", "orchestrator"),  # an attempt fails at the worker, a turn at enforcement
    TurnRejected: ("orchestrator",),
    AnswerPosted: ("orchestrator",),
    VoteCast: ("orchestrator",),
    VoteInvalidated: ("orchestrator",),
    UpdateDelivered: ("orchestrator",),
    AgentDropped: ("orchestrator",),
    ConsensusReached: ("orchestrator",),
    PresentationStarted: ("orchestrator",),
    PresentationCompleted: ("orchestrator",),
    PostEvaluationStarted: ("orchestrator",),
    PostEvaluationSubmitted: ("orchestrator",),
    QuestionParaphrased: ("orchestrator",),
    RunRestarted: ("orchestrator",),
    RunCompleted: ("orchestrator",),
    RunTimedOut: ("orchestrator",),
    RunFailed: ("orchestrator",),
    RunCancelRequested: ("cli",),
    RunCancelled: ("orchestrator",),
    RunResumeRequested: ("cli",),
    BudgetExceeded: ("orchestrator",),
    TimerFired: ("timer",),
    ToolsListRequested: ("agent_worker",),
    ToolsListed: ("mcp_broker", "agent_worker"),  # the worker records the command tool and catalog timeouts
    ToolCallRequested: ("agent_worker", "cli"),  # the command line's for `massgen mcp call`
    ToolClassified: ("agent_worker",),
    ApprovalRequested: ("mcp_broker",),
    ApprovalDecided: ("cli", "mcp_broker"),  # a person's answer; the broker's denial on timeout
    ToolCallStarted: ("mcp_broker",),
    ToolCallCompleted: ("mcp_broker", "agent_worker"),  # the worker runs MassGen's bundled multimodal tools
    ToolCallFailed: ("mcp_broker", "agent_worker"),  # the worker records a call nobody answered in time
    McpServerStateChanged: ("mcp_broker",),
    WorkspaceSnapshotRequested: ("agent_worker",),
    WorkspaceSnapshotted: ("mcp_broker",),
    ExecutionRequested: ("agent_worker",),
    ExecutionStarted: ("executor",),
    ExecutionCompleted: ("executor",),
    ExecutionFailed: ("executor", "agent_worker"),  # the worker refuses bad arguments, records timeouts
    SandboxChanged: ("executor",),
    MediaGenerated: ("agent_worker",),
    MediaSaved: ("mcp_broker",),
    WorkspaceFileRequested: ("agent_worker",),
    WorkspaceFileRead: ("mcp_broker",),
    MemoryRetrieved: ("agent_worker",),
    MemoryStored: ("agent_worker",),
    ContextCompressed: ("agent_worker",),
    ComputerStep: ("agent_worker",),
    ComputerUseCompleted: ("agent_worker",),
}
"""Who may write each event type (``Source.service`` of its records): the catalogue of
docs/architecture/events.md, checked on every run of the integration tests (``check_writer``)."""


def check_writer(event: Event, writer: str) -> None:
    """Refuse an event that ``writer`` may not write (``WRITTEN_BY``).

    Raises:
        ValueError: the event's type is not one ``writer`` writes.
    """
    allowed = WRITTEN_BY.get(type(event), ())
    if writer not in allowed:
        raise ValueError(f"{writer} may not write {tag_of(event)} (written by: {', '.join(allowed) or 'nobody'})")


class UnknownEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event whose tag this reader does not know (written by a newer version); kept, not fatal."""

    type: str
    data: dict[str, Any]


# ---------------------------------------------------------------- envelope and codec


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """What is stored on the bus: metadata plus one event in ``data``."""

    id: str
    """Deterministic, derived from the cause; also the ``Nats-Msg-Id``."""
    run_id: str
    type: str
    """The event's tag, repeated here so list/filter tools need not decode ``data``."""
    ts: float
    """Unix time in seconds when the publishing shell built the event."""
    source: Source
    causation_id: str | None = None
    """Id of the event that caused this one."""
    v: int = SCHEMA_VERSION
    data: msgspec.Raw


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """A decoded event as read from the log, with its stream sequence (0 when not stored yet)."""

    seq: int
    id: str
    run_id: str
    ts: float
    source: Source
    causation_id: str | None
    event: Event | UnknownEvent

    @property
    def type(self) -> str:
        """The event tag."""
        return self.event.type if isinstance(self.event, UnknownEvent) else tag_of(self.event)

    @property
    def is_decision(self) -> bool:
        """Written by the orchestrator: a decision of the core, not an input to it."""
        return self.source.service == "orchestrator"


def _tag_of_class(cls: type[Event]) -> str:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str), f"{cls.__name__} needs an explicit string tag"
    return tag


_TAGS: dict[type[Event], str] = {cls: _tag_of_class(cls) for cls in EVENT_CLASSES}
_BY_TAG: dict[str, type[Event]] = {tag: cls for cls, tag in _TAGS.items()}
assert len(_BY_TAG) == len(EVENT_CLASSES), "event tags must be unique"
_ENCODER = msgspec.json.Encoder()
_ENVELOPE_DECODER = msgspec.json.Decoder(Envelope)
_EVENT_DECODERS = {tag: msgspec.json.Decoder(cls) for tag, cls in _BY_TAG.items()}


def tag_of(event: Event) -> str:
    """The wire tag of an event instance, e.g. ``"vote.cast"``."""
    return _TAGS[type(event)]


def encode(
    event: Event, *, id: str, run_id: str, ts: float, source: Source, causation_id: str | None = None
) -> bytes:
    """Serialise ``event`` in an envelope to JSON bytes, secrets scrubbed (:mod:`massgen_es.scrub`: every
    event reaches the bus through here, so no event type can carry a known secret or a credential shape
    into the log, a work queue, a replay or an export; issue 13 item 1)."""
    scrub.remember_environment()
    env = Envelope(
        id=id,
        run_id=run_id,
        type=tag_of(event),
        ts=ts,
        source=source,
        causation_id=causation_id,
        data=msgspec.Raw(scrub.data(_ENCODER.encode(event))),
    )
    return _ENCODER.encode(env)


def decode(data: bytes, seq: int = 0) -> Record:
    """Parse envelope bytes into a :class:`Record`.

    Unknown tags become :class:`UnknownEvent`; unknown fields are ignored (tolerant reader).

    Raises:
        EventDecodeError: the bytes are not an envelope, or a known event has invalid fields.
    """
    try:
        env = _ENVELOPE_DECODER.decode(data)
        decoder = _EVENT_DECODERS.get(env.type)
        event: Event | UnknownEvent
        if decoder is None:
            event = UnknownEvent(type=env.type, data=msgspec.json.decode(env.data))
        else:
            event = decoder.decode(env.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        preview = bytes(data[:120]).decode("utf-8", "replace")
        raise EventDecodeError(f"malformed event at seq {seq}: {exc} (message starts {preview!r})") from exc
    return Record(
        seq=seq,
        id=env.id,
        run_id=env.run_id,
        ts=env.ts,
        source=env.source,
        causation_id=env.causation_id,
        event=event,
    )


def to_builtins(record: Record) -> dict[str, Any]:
    """A record as plain JSON-ready data (used by ``--json`` outputs)."""
    out = msgspec.to_builtins(record)
    out["type"] = record.type
    return out


def json_schema() -> str:
    """JSON Schema (2020-12) of the envelope and every event, as stable, pretty JSON text."""
    (env_schema, *_event_schemas), components = msgspec.json.schema_components(
        (Envelope, *EVENT_CLASSES), ref_template="#/$defs/{name}"
    )
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "massgen-es events",
        "description": f"Envelope and events, schema version {SCHEMA_VERSION}. Generated by `make schema`.",
        "x-schema-version": SCHEMA_VERSION,
        "x-event-types": {tag: cls.__name__ for tag, cls in sorted(_BY_TAG.items())},
        "$defs": components,
        **env_schema,
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m massgen_es.events > schemas/events.schema.json
    print(json_schema(), end="")
