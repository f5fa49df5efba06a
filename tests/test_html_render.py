"""The HTML timeline as a pure function (``massgen_replay.html``, ``massgen_replay.lanes``): records in,
escaped, lossless HTML out. Records go through the real wire codec (encode, then decode)."""

from __future__ import annotations

import re
from html import unescape

import pytest

from massgen_es.events import (
    AgentSpec,
    AnswerPosted,
    Event,
    Record,
    RunSettings,
    RunSubmitted,
    Source,
    TextDelta,
    TurnStarted,
    VoteCast,
    decode,
    encode,
)
from massgen_replay import html, lanes

EVIL = '<img src=x onerror="window.pwned=1"> </pre></details></td></tr><script>alert(1)</script> & "q"'


def _records(*events: Event, run_id: str = "r1") -> list[Record]:
    src = Source(service="test", instance="t")
    return [decode(encode(ev, id=f"{run_id}:{i}", run_id=run_id, ts=1000.0 + i, source=src), seq=i + 1)
            for i, ev in enumerate(events)]


def _submitted(*agents: str) -> RunSubmitted:
    return RunSubmitted(question=EVIL, agents=tuple(AgentSpec(id=a, backend={"type": "local"}) for a in agents),
                        settings=RunSettings())


def test_pages_cut_at_line_ends_and_join_back_to_the_whole_text() -> None:
    text = "".join(f"line {i}\n" for i in range(2000))
    parts = html.pages(text, 1000)
    assert "".join(parts) == text and len(parts) > 10
    assert all(len(p) <= 1000 for p in parts) and all(p.endswith("\n") for p in parts[:-1])
    assert html.pages("x" * 2500, 1000) == ["x" * 1000, "x" * 1000, "x" * 500]  # no line end: cut at the size
    with pytest.raises(ValueError, match="page size must be at least 1"):
        html.pages("abc", 0)


def test_every_piece_of_event_text_is_escaped_even_in_attributes() -> None:
    agent = 'a"><script>x()</script>'
    records = _records(
        _submitted(agent),
        TurnStarted(turn_id=f"{agent}.1", agent_id=agent, attempt=1, worker="w"),
        AnswerPosted(agent_id=agent, anon_id="agent1", label="agent1.1", content=EVIL, version=1, turn_id="t"),
        VoteCast(voter_id=agent, target_id=agent, target_anon="agent1", reason=EVIL, version=1, turn_id="t"),
    )
    page = html.render("r1", records)
    body = page.split("<body>", 1)[1].rsplit("<script>", 1)[0]  # the page's own script excluded
    assert "<script" not in body and "<img" not in body and 'onerror="' not in body
    assert EVIL not in body
    # What a reader sees, once the browser unescapes it, is the text as written.
    shown = [unescape(t) for t in re.findall(r'<pre class="page">(.*?)</pre>', body, re.S)]
    assert EVIL in shown and f"vote → agent1 ({agent})\nreason:\n{EVIL}" in shown


def test_streamed_text_is_joined_per_attempt_and_delivery_without_losing_a_character() -> None:
    chunks = [f"chunk {i} " * 50 for i in range(40)]  # about 17,000 characters
    records = _records(
        _submitted("a"),
        *(TextDelta(turn_id="a.1", agent_id="a", attempt=1, seq=i, text=c) for i, c in enumerate(chunks)),
        TextDelta(turn_id="a.1", agent_id="a", attempt=1, seq=0, text="again", delivery=2),
    )
    [first, again] = [i for i in lanes.items(records) if i.kind == "text"]
    assert first.body == "".join(chunks) and first.seq == 2 and first.flags == []
    assert again.body == "again" and again.flags == ["redelivery"]
    page = html.render("r1", records)
    pre = re.findall(r'<pre class="page"[^>]*>(.*?)</pre>', page, re.S)
    assert "".join(unescape(p) for p in pre if "chunk" in p) == "".join(chunks)
    assert f"({len(first.body):,} chars, 5 pages)" in page


def test_stages_end_where_the_next_begins_and_an_unended_run_at_its_last_record() -> None:
    records = _records(_submitted("a"), TurnStarted(turn_id="a.1", agent_id="a", attempt=1, worker="w"),
                       TextDelta(turn_id="a.1", agent_id="a", attempt=1, seq=0, text="hi"))
    stages = lanes.stages(records)
    assert [(s.name, s.start, s.end) for s in stages] == [("initialisation", 1000.0, 1001.0),
                                                          ("coordination", 1001.0, 1002.0)]
    assert lanes.stages([]) == []


def test_an_unknown_event_type_still_shows_with_its_data() -> None:
    [record] = _records(_submitted("a"))
    unknown = decode(b'{"id":"x","run_id":"r1","type":"future.thing","ts":1001.0,'
                     b'"source":{"service":"s","instance":"i"},"data":{"detail":"<b>kept</b>"}}', seq=2)
    [_, item] = lanes.items([record, unknown])
    assert (item.lane, item.kind, item.type) == (lanes.RUN_LANE, "info", "future.thing")
    assert "&lt;b&gt;kept&lt;/b&gt;" in html.render("r1", [record, unknown])


def test_a_run_without_records_gives_a_page_that_says_so() -> None:
    page = html.render("nothing", [])
    assert "<h1>run nothing</h1>" in page and "<p>no events</p>" in page
