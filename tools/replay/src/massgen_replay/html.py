"""One run as a self-contained HTML page (``massgen replay RUN --html FILE``, issue 14 item 2).

Swimlanes (a column per agent, one for the run) with every event of the run in stream order, stage
bands with their durations, a usage and cost table, the final votes, and a search box. The page has
its CSS and JavaScript inline and a Content-Security-Policy that forbids any network access, so it
opens from a file, offline, years later. Every piece of event text is model or user output: it goes
through :func:`html.escape` and reaches the page only as text, never as markup. A long text is
collapsed (an event's detail opens on click) and split into pages, never cut (seed v0.0.18).
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from importlib import resources

from massgen_es.events import Record
from massgen_replay.lanes import RUN_LANE, Item, Stage, items, lanes, stages
from massgen_replay.read import project
from massgen_replay.views import RunView

PAGE_CHARS = 4000
"""A body longer than this is split into pages of at most this many characters, cut after a line end
where one falls in the page's last quarter."""

_TEMPLATE = "timeline.html"


def pages(text: str, size: int = PAGE_CHARS) -> list[str]:
    """``text`` split into pages of at most ``size`` characters whose concatenation is ``text``.

    Raises:
        ValueError: ``size`` is below 1.
    """
    if size < 1:
        raise ValueError(f"page size must be at least 1 character, got {size}")
    out: list[str] = []
    while len(text) > size:
        cut = text.rfind("\n", size * 3 // 4, size)
        cut = cut + 1 if cut >= 0 else size
        out.append(text[:cut])
        text = text[cut:]
    return [*out, text]


def _e(text: str) -> str:
    return escape(text, quote=True)


def _pager(text: str) -> str:
    """A body as one ``<pre>``, or as pages with prev/next/show-all buttons when it is long."""
    parts = pages(text)
    if len(parts) == 1:
        return f'<pre class="page">{_e(text)}</pre>'
    body = "".join(f'<pre class="page"{"" if i == 0 else " hidden"}>{_e(p)}</pre>' for i, p in enumerate(parts))
    nav = (f'<nav class="pages"><button type="button" class="prev" disabled>‹ prev</button>'
           f'<span class="pos">page 1 of {len(parts)}</span><button type="button" class="next">next ›</button>'
           f'<button type="button" class="all">show all {len(text):,} chars</button></nav>')
    return f'<div class="pager" data-page="0" data-count="{len(parts)}">{nav}{body}</div>'


def _event(item: Item, t0: float, view: RunView) -> str:
    """One ``<details>`` for an item: the summary line, and on click its metadata and full body."""
    badges = "".join(f'<span class="badge {f}">{f}</span>' for f in item.flags)
    n = len(pages(item.body))
    size = f' <span class="size">({len(item.body):,} chars, {n} pages)</span>' if n > 1 else ""
    turn = f'<span class="turn">{_e(item.turn)}</span> ' if item.turn else ""
    anon = f" ({view.agents[item.lane].anon_id})" if item.lane in view.agents else ""
    meta = (f'<div class="meta">{_e(item.type)} · seq {item.seq} · +{item.ts - t0:.3f}s · '
            f'{_e(item.lane)}{_e(anon)}</div>')
    return (f'<details class="ev k-{item.kind}" data-seq="{item.seq}" data-type="{_e(item.type)}">'
            f'<summary>{turn}{badges}<span class="sum">{_e(item.summary)}</span>{size}</summary>'
            f'{meta}{_pager(item.body)}</details>')


def _stage_bar(bands: list[Stage]) -> str:
    total = sum(s.seconds for s in bands) or 1.0
    cells = "".join(
        f'<div class="band st-{s.name}" style="flex-grow:{max(s.seconds / total, 0.04):.4f}">'
        f'{s.name} <b>{s.seconds:.2f}s</b></div>' for s in bands)
    return f'<div class="stagebar">{cells}</div>'


def _timeline(view: RunView, all_items: list[Item], lane_ids: list[str], bands: list[Stage], t0: float) -> str:
    heads = "".join(_lane_head(view, lane, all_items) for lane in lane_ids)
    rows: list[str] = []
    stage_iter = iter(bands)
    stage = next(stage_iter, None)
    upcoming = next(stage_iter, None)
    if stage:
        rows.append(_band_row(stage, len(lane_ids)))
    for item in all_items:
        while upcoming and item.ts >= upcoming.start:
            stage, upcoming = upcoming, next(stage_iter, None)
            rows.append(_band_row(stage, len(lane_ids)))
        col = lane_ids.index(item.lane)
        cells = "".join(f'<td class="lane" data-lane="{_e(lane)}">' + (_event(item, t0, view) if i == col else "")
                        + "</td>" for i, lane in enumerate(lane_ids))
        name = stage.name if stage else ""
        rows.append(f'<tr class="evrow st-{name}"><td class="t">+{item.ts - t0:.2f}s</td>{cells}</tr>')
    return (f'<table id="timeline"><thead><tr><th class="t">time</th>{heads}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _lane_head(view: RunView, lane: str, all_items: list[Item]) -> str:
    """A lane's name, and for an agent what it did: turns, answers, its vote, failures."""
    agent = view.agents.get(lane)
    name = f"{agent.anon_id} ({lane})" if agent else lane
    facts = ""
    if agent:
        turns = len({i.turn for i in all_items if i.lane == lane and i.type == "turn.started"})
        failures = sum(1 for i in all_items if i.lane == lane and "failure" in i.flags)
        facts = (f"{turns} turns · {len(agent.answers)} answers · vote {agent.vote or '-'} · {failures} failures"
                 f" · {agent.status}")
    return (f'<th class="lane-head" data-lane="{_e(lane)}"><span class="name">{_e(name)}</span>'
            f'<span class="facts">{_e(facts)}</span></th>')


def _band_row(stage: Stage, lanes_n: int) -> str:
    return (f'<tr class="band-row st-{stage.name}"><td colspan="{lanes_n + 1}">{stage.name} · '
            f'{stage.seconds:.2f}s</td></tr>')


def _usage(view: RunView) -> str:
    head = ("agent", "LLM calls", "input tokens", "output tokens", "cached", "reasoning", "LLM seconds",
            "cost $", "provider retries", "tool calls (errors)", "tool seconds")
    rows = []
    for a in view.agents.values():
        cost = f"{a.cost_usd:.6f}" + (f" + {a.unpriced_calls} unpriced" if a.unpriced_calls else "")
        cells = (f"{a.anon_id} ({a.id})", a.calls, a.input_tokens, a.output_tokens, a.cached_tokens,
                 a.reasoning_tokens, f"{a.llm_seconds:.2f}", cost, a.retries, f"{a.tool_calls} ({a.tool_errors})",
                 f"{a.tool_seconds:.2f}")
        rows.append("<tr>" + "".join(f"<td>{_e(str(c))}</td>" for c in cells) + "</tr>")
    u = view.usage()
    total = ("total", u["llm_calls"], u["input_tokens"], u["output_tokens"], u["cached_tokens"],
             u["reasoning_tokens"], f"{sum(a.llm_seconds for a in view.agents.values()):.2f}",
             f"{u['cost_usd']:.6f}" + (f" + {u['unpriced_calls']} unpriced" if u["unpriced_calls"] else ""),
             sum(a.retries for a in view.agents.values()), u["tool_calls"],
             f"{sum(a.tool_seconds for a in view.agents.values()):.2f}")
    rows.append('<tr class="total">' + "".join(f"<td>{_e(str(c))}</td>" for c in total) + "</tr>")
    return (f'<table id="usage"><thead><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _votes(view: RunView) -> str:
    if not view.votes:
        return "<p>no consensus recorded</p>"
    rows = "".join(f'<tr><td>{_e(v["voter"])}</td><td>{_e(v["target_anon"])} ({_e(v["target"])})</td>'
                   f'<td class="reason">{_e(v["reason"])}</td></tr>' for v in view.votes)
    head = "<thead><tr><th>voter</th><th>for</th><th>reason</th></tr></thead>"
    return f'<table id="votes">{head}<tbody>{rows}</tbody></table>'


def render(run_id: str, records: list[Record]) -> str:
    """The whole page for ``run_id`` as one HTML string (UTF-8 text, no external resources).

    ``records`` are the run's records in stream order (as :func:`massgen_replay.read.run_records`
    returns them, or a filtered subset); an empty list gives a page that says so.
    """
    view = project(run_id, records)
    all_items, lane_ids, bands = items(records), lanes(records), stages(records)
    t0 = view.stages.get("submitted", records[0].ts if records else 0.0)
    when = datetime.fromtimestamp(t0).isoformat(sep=" ", timespec="seconds") if records else "?"
    winner = f"{view.agents[view.winner].anon_id} ({view.winner})" if view.winner in view.agents else "-"
    final = view.final_answer or view.failure or "(no final answer)"
    header = (f'<h1>run {_e(run_id)}</h1><p class="facts"><span id="status" class="status-{_e(view.status)}">'
              f'{_e(view.status)}</span> · submitted {when} · {view.events} events · '
              f'{view.duration_s or 0:.2f}s · winner {_e(winner)}</p>'
              f'<p class="question"><b>question:</b> {_e(view.question)}</p>')
    body = (f'{header}<section id="stages"><h2>stages</h2>{_stage_bar(bands)}</section>'
            f'<section id="final"><h2>final answer</h2>{_pager(final)}</section>'
            f'<section><h2>usage and cost</h2>{_usage(view)}</section>'
            f'<section><h2>final votes</h2>{_votes(view)}</section>'
            f'<section id="events"><h2>timeline</h2><div class="tools"><input id="search" type="search" '
            f'placeholder="search events (text, agent, type)" autocomplete="off"> <span id="hits"></span> '
            f'<label><input id="failures-only" type="checkbox"> failures and retries only</label></div>'
            f'{_timeline(view, all_items, lane_ids, bands, t0) if all_items else "<p>no events</p>"}</section>')
    template = resources.files("massgen_replay").joinpath(_TEMPLATE).read_text(encoding="utf-8")
    return template.replace("{{TITLE}}", _e(f"massgen run {run_id}")).replace("{{BODY}}", body)


__all__ = ["PAGE_CHARS", "RUN_LANE", "pages", "render"]
