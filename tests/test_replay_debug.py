"""Replay's debugging views and consensus analytics (issue 14 items 1 and 5): ``massgen_replay.select``,
``activity`` and ``analytics`` on runs made by the real services (nats-server, the services in-process, a
real MCP server, a command run by the executor, scripted models through the ``openai`` SDK), and on
hand-written event sequences where a definition needs an exact order of votes."""

from __future__ import annotations

import pytest
from test_executor import commands, exec_team
from test_executor import run as exec_run
from test_mcp_broker import mcp_team, script, tool_server
from test_mcp_broker import run as mcp_run

from harness import Stack, agent_script, team
from massgen_es.errors import ReplayError
from massgen_es.events import (
    AgentSpec,
    AnswerPosted,
    ConsensusReached,
    Record,
    RunSettings,
    RunSubmitted,
    Source,
    Usage,
    UsageRecorded,
    VoteCast,
    VoteRecord,
)
from massgen_replay import activity, analytics
from massgen_replay.read import project
from massgen_replay.select import agent_of, check_types, select, selected_view

# ---------------------------------------------------------------- select


async def test_select_keeps_one_agents_events_one_type_a_prefix_or_one_activity(fresh_nats, fake, tmp_path,
                                                                                 massgen_home):
    echo = (("mcp__t__echo", {"text": "ping"}),)
    cfg = mcp_team(fake, 2, [script(echo), script()], mcp_servers=[tool_server(tmp_path)])
    run_id, records = await mcp_run(fresh_nats, massgen_home, cfg)
    a, b = "agent-a", "agent-b"

    mine = select(records, agents=[a])
    assert mine and all(agent_of(r) == a for r in mine)
    assert any(r.type == "tool.call_completed" for r in mine)
    assert not any(r.type == "run.submitted" for r in mine)  # run-level events are nobody's
    assert {agent_of(r) for r in select(records, agents=[a, b])} == {a, b}

    assert [r.type for r in select(records, types=["tool.call_completed"])] == ["tool.call_completed"]
    prefixed = select(records, types=["tool."])
    assert {r.type for r in prefixed} >= {"tool.call_requested", "tool.call_started", "tool.call_completed"}
    assert select(records, types=["tool"]) == prefixed  # the trailing dot is optional
    assert not any(r.type == "tools.listed" for r in prefixed)  # `tool.` is not `tools.`

    mcp = select(records, activity="mcp")
    assert {r.type for r in mcp} == {"tools.list_requested", "tools.listed", "tool.call_requested",
                                     "tool.call_started", "tool.call_completed", "mcp.server_state"}
    assert select(records, activity="exec") == []
    assert select(records) == records  # no filter: everything, in order
    only_b = select(records, agents=[b], activity="mcp")
    assert only_b and not any(r.type.startswith("tool.call") for r in only_b)  # b made no call

    view = selected_view(run_id, records, select(records, agents=[b]))
    assert view.status == "completed" and view.question  # the header is the whole run's
    assert {e.agent_id for e in view.timeline} == {b}
    assert view.agents[a].tool_calls == 0 and view.agents[b].calls > 0


def test_a_type_pattern_matching_no_event_type_is_refused_naming_the_families():
    check_types(["tool.call_completed", "tool.", "vote"])
    with pytest.raises(ReplayError, match="'tool.call_done' matches no event type.*tool\\.,"):
        check_types(["tool.call_done"])


# ---------------------------------------------------------------- activity rows


async def test_mcp_rows_pair_each_call_with_its_outcome_and_show_server_changes(fresh_nats, fake, tmp_path,
                                                                                massgen_home):
    calls = (("mcp__t__echo", {"text": "ping"}), ("mcp__t__echo", {"txt": 1}))
    cfg = mcp_team(fake, 1, [script(calls)], mcp_servers=[tool_server(tmp_path)])
    _, records = await mcp_run(fresh_nats, massgen_home, cfg)
    rows = activity.mcp_rows(select(records, activity="mcp"))
    done, refused = [r for r in rows if r["kind"] == "call"]
    assert (done["server"], done["tool"], done["error"], done["result_chars"]) == ("t", "echo", None, len("echo: ping"))
    assert done["duration_s"] > 0 and done["arguments"] == '{"text":"ping"}'
    assert refused["error"].startswith("ToolArgumentError: ") and refused["result_chars"] is None
    assert [r["state"] for r in rows if r["kind"] == "server"] == ["started"]
    assert [(r["server"], r["version"]) for r in rows if r["kind"] == "catalog"] == [("t", 1)]


def test_redacted_arguments_hide_credential_keys_and_shapes_at_any_depth():
    shown = activity.redact_arguments('{"q": "x", "api_key": "abc", "auth": {"GITHUB_TOKEN": "t", '
                                      '"note": "Bearer abcdefgh12345678"}}')
    assert shown == '{"q":"x","api_key":"[redacted]","auth":{"GITHUB_TOKEN":"[redacted]","note":"Bearer [redacted]"}}'
    assert activity.redact_arguments("not json sk-" + "a" * 20) == "not json [redacted]"


async def test_exec_rows_show_command_mode_exit_code_duration_and_output_size(fresh_nats, fake, massgen_home):
    cfg = exec_team(fake, commands(({"command": "echo hello"}, {"command": "exit 3"})),
                    command_line_execution_mode="local_unisolated")
    _, records = await exec_run(fresh_nats, massgen_home, cfg)
    rows = [r for r in activity.exec_rows(select(records, activity="exec")) if r["kind"] == "exec"]
    assert [(r["command"], r["mode"], r["exit_code"], r["output_chars"]) for r in rows] == [
        ("echo hello", "local_unisolated", 0, len("hello\n")), ("exit 3", "local_unisolated", 3, 0)]
    assert all(r["duration_s"] > 0 for r in rows) and rows[0]["error"] is None


# ---------------------------------------------------------------- analytics


def _rec(seq: int, ts: float, event) -> Record:
    return Record(seq=seq, id=f"e{seq}", run_id="r", ts=ts, source=Source(service="orchestrator", instance="t"),
                  causation_id=None, event=event)


def _vote(voter: str, target: str) -> VoteCast:
    return VoteCast(voter_id=voter, target_id=target, target_anon="agentN", reason="", version=1, turn_id="t")


def _answer(agent: str, n: int) -> AnswerPosted:
    return AnswerPosted(agent_id=agent, anon_id="agentN", label=f"{agent}.{n}", content="x", version=n, turn_id="t")


def test_flips_and_persuasion_follow_their_definitions():
    agents = tuple(AgentSpec(id=a, backend={}) for a in ("a", "b", "c"))
    events = [
        RunSubmitted(question="q", agents=agents, settings=RunSettings()),
        _answer("a", 1),
        _vote("c", "a"),  # c never answered: not persuaded, first vote: no flip
        _vote("b", "a"),  # b had no answer yet either
        _answer("b", 2),
        _vote("c", "a"),  # invalidated and cast again for a: no flip
        _vote("b", "b"),  # b votes for its own answer: a flip, not persuasion
        _vote("a", "b"),  # a had an answer: persuaded by b
        _vote("c", "b"),  # c flips to b: persuaded by b
        ConsensusReached(winner_id="b", winner_anon="agent2", tally={"agent2": 3}, votes=(
            VoteRecord(voter_id="a", target_id="b", target_anon="agent2", reason=""),)),
        UsageRecorded(turn_id="t", agent_id="a", attempt=1, model="m", usage=Usage(), duration_s=2.0,
                      time_to_first_token_s=0.5, cost_usd=0.25),
        UsageRecorded(turn_id="t", agent_id="a", attempt=1, model="m", usage=Usage(), duration_s=4.0, cost_usd=None),
    ]
    a = analytics.RunAnalytics()
    for i, ev in enumerate(events):
        a.apply(_rec(i + 1, 100.0 + i, ev))
    s = a.summary()
    assert [(f["voter"], f["from"], f["to"]) for f in s["flips"]] == [("b", "a", "b"), ("c", "a", "b")]
    assert s["persuasion"] == [{"voter": "a", "author": "b", "votes": 1}, {"voter": "c", "author": "b", "votes": 1}]
    assert s["time_to_consensus_s"] == 9.0 and s["time_to_first_answer_s"] == 1.0 and s["winner"] == "b"
    pa = s["per_agent"]
    assert (pa["a"]["answers"], pa["b"]["answers"], pa["c"]["answers"]) == (1, 1, 0)
    assert (pa["b"]["flips"], pa["c"]["flips"], pa["c"]["votes"]) == (1, 1, 3)
    assert pa["a"]["cost_usd"] == 0.25 and pa["a"]["unpriced_calls"] == 1
    assert pa["a"]["mean_call_s"] == 3.0 and pa["a"]["mean_ttft_s"] == 0.5
    assert pa["c"]["mean_call_s"] is None


async def test_analytics_of_real_runs_count_answers_wins_and_time_to_consensus(fresh_nats, fake):
    cfg, (ma, mb) = team(fake, 2)
    fake.default(ma, agent_script("Paris", "agent2"))
    fake.default(mb, agent_script("Paris, France", "agent2"))
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        runs = [await stack.submit(cfg) for _ in range(2)]
        views = [project(r, await stack.wait_done(r, 60)) for r in runs]
    for v in views:
        s = v.summary()["analytics"]
        assert s["winner"] == "agent-b" and 0 < s["time_to_consensus_s"] < v.duration_s
        assert {k: x["answers"] for k, x in s["per_agent"].items()} == {"agent-a": 1, "agent-b": 1}
        assert s["persuasion"] == [{"voter": "agent-a", "author": "agent-b", "votes": 1}]
        assert all(x["llm_calls"] > 0 and x["mean_call_s"] is not None for x in s["per_agent"].values())
    stats = analytics.across_runs((v.status, v.analytics) for v in views)
    assert (stats["runs"], stats["completed"], stats["with_consensus"]) == (2, 2, 2)
    assert stats["per_agent"]["agent-b"]["wins"] == 2 and stats["per_agent"]["agent-b"]["win_rate"] == 1.0
    assert stats["per_agent"]["agent-a"]["wins"] == 0 and stats["per_agent"]["agent-a"]["runs"] == 2
    assert stats["persuasion"] == [{"voter": "agent-a", "author": "agent-b", "votes": 2}]
