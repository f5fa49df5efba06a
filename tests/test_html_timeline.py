"""The HTML timeline (``massgen replay RUN --html FILE``, issue 14 item 2) in a real browser.

One real run on the embedded stack (``massgen submit`` as a child process, the wire-level OpenAI fake):
alpha hits a rate limit once (a provider retry), runs a command with a long output, has a second
command refused (a failure), and answers with HTML in its text; beta answers and both vote. The page
that ``massgen replay --html`` writes is opened from file:// in Debian's Chromium through Playwright,
and clicked, paged and searched like a user would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from massgen_es.testing.fake_openai import FakeOpenAI, Reply, team_member
from massgen_replay.html import PAGE_CHARS

CHROMIUM = "/usr/bin/chromium"
MASSGEN = str(Path(sys.executable).parent / "massgen")
EXEC = "mcp__command_line__execute_command"
LONG = "seq 1 3000"  # 13,893 chars of stdout: more than three pages
ANSWER = "Paris <script>window.pwned = 1</script> <b>not bold</b> & done"


def _alpha(body: dict) -> Reply:
    names = [t["function"]["name"] for t in body.get("tools", [])]
    if "vote" in names:
        return Reply(tool_calls=(("vote", {"agent_id": "agent1", "reason": "it ran the numbers & <checked>"}),))
    if "new_answer" not in names:  # the presentation (its tools are the command line's only)
        return Reply(text="FINAL " + ANSWER)
    ran = sum(1 for m in body["messages"] if m["role"] == "tool")
    if ran == 0:
        return Reply(tool_calls=((EXEC, {"command": LONG}),))
    if ran == 1:
        return Reply(tool_calls=((EXEC, {"command": "rm -rf /tmp/nothing"}),))
    return Reply(tool_calls=(("new_answer", {"content": ANSWER}),))


def _massgen(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([MASSGEN, *args], capture_output=True, text=True, timeout=240, env=env)


@pytest.fixture(scope="module")
def timeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, str, dict[str, str]]:
    """``(run_id, html_path, replay stderr, environment)`` of the run described above."""
    tmp = tmp_path_factory.mktemp("html")
    env = {k: v for k, v in os.environ.items() if k != "MASSGEN_NATS_URL"} | {"MASSGEN_HOME": str(tmp / "home")}
    with FakeOpenAI() as fake:
        fake.script("ma", Reply(status=429, retry_after=0.05, error_message="slow down"))
        fake.default("ma", _alpha)
        fake.default("mb", team_member("Paris, France"))
        backend = {"type": "chatcompletion", "base_url": fake.base_url}
        cfg = tmp / "team.yaml"
        cfg.write_text(yaml.safe_dump({"agents": [
            {"id": "alpha", "backend": backend | {"model": "ma", "cwd": "ws", "enable_mcp_command_line": True,
                                                  "command_line_blocked_commands": ["^rm "]}},
            {"id": "beta", "backend": backend | {"model": "mb"}},
        ]}))
        submitted = _massgen("submit", "Capital of France?", "--config", str(cfg), "--json", env=env)
    assert submitted.returncode == 0, submitted.stderr
    run_id = json.loads(submitted.stdout)["run_id"]
    page = tmp / "run.html"
    replayed = _massgen("replay", run_id, "--html", str(page), env=env)
    assert replayed.returncode == 0, replayed.stderr
    return run_id, page, replayed.stderr, env


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright, shared by this module's tests (launching costs about a
    second). Not by the session: Playwright's sync API keeps its event loop running while it is open,
    and every later asyncio test would then fail with "cannot be called from a running event loop"."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/browser.sh` (as root; `make test` does it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, timeline: tuple[str, Path, str, dict[str, str]]) -> Iterator[Page]:
    """The timeline opened from its file; the test fails if the page logs an error or throws, or asks
    for anything but its own file."""
    context = browser.new_context()
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if _bad(m) else None)
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("request", lambda r: problems.append(f"request {r.url}") if not r.url.startswith("file://") else None)
    pg.goto(timeline[1].as_uri())
    yield pg
    context.close()
    assert not problems, problems


def _bad(message: ConsoleMessage) -> bool:
    return message.type in ("error", "warning")


def test_replay_html_writes_the_page_and_says_where(timeline) -> None:
    run_id, path, stderr, _ = timeline
    text = path.read_text(encoding="utf-8")
    assert f"HTML timeline written to {path}" in stderr
    assert text.startswith("<!DOCTYPE html>") and f"run {run_id}" in text
    # Self-contained: nothing is loaded from anywhere.
    assert "http://" not in text.split("<body>")[0] and "<link rel=\"stylesheet\"" not in text and " src=" not in text


def test_replay_html_to_an_unwritable_path_exits_1_naming_the_path(timeline, tmp_path: Path) -> None:
    run_id, _, _, env = timeline
    target = tmp_path / "no such dir" / "run.html"
    result = _massgen("replay", run_id, "--html", str(target), env=env | {"COLUMNS": "400"})  # no wrapping
    assert result.returncode == 1
    assert f"cannot write the HTML timeline to {target}: No such file or directory; pick a writable path" in (
        result.stderr)


def test_lanes_show_each_agents_answers_votes_tools_executions_failures_and_retries(page: Page) -> None:
    heads = page.locator("th.lane-head")
    expect(heads.locator(".name")).to_have_text(["agent1 (alpha)", "agent2 (beta)", "run"])
    expect(heads.nth(0).locator(".facts")).to_have_text(re.compile(r"^3 turns · 1 answers · vote agent1 · 1 failures"))
    alpha = page.locator('td.lane[data-lane="alpha"] details.ev')
    beta = page.locator('td.lane[data-lane="beta"] details.ev')
    expect(alpha.filter(has_text="answer agent1.1")).to_have_count(1)
    expect(beta.filter(has_text="answer agent2.1")).to_have_count(1)
    expect(alpha.filter(has_text="vote → agent1 (alpha): it ran the numbers & <checked>")).to_have_count(1)
    expect(page.locator('td.lane[data-lane="alpha"] details.k-exec').filter(has_text=f"$ {LONG}")).to_have_count(1)
    expect(page.locator('td.lane[data-lane="alpha"] details.k-failure')
           .filter(has_text="command failed: CommandRefused")).to_have_count(1)
    expect(page.locator('td.lane[data-lane="alpha"] details.k-retry .badge.retry')).to_have_count(1)
    expect(page.locator('td.lane[data-lane="alpha"] details.k-text').first).to_contain_text("streamed")
    run = page.locator('td.lane[data-lane="run"] details')
    expect(run.filter(has_text="consensus: winner agent1")).to_have_count(1)


def test_event_text_is_shown_as_text_never_run_as_markup(page: Page) -> None:
    answer = page.locator('td.lane[data-lane="alpha"] details.k-answer').filter(has_text="answer agent1.1")
    answer.locator("summary").click()
    expect(answer.locator("pre.page")).to_have_text(ANSWER)
    assert page.evaluate("window.pwned") is None
    assert page.locator("details.ev b").count() == 0  # the model's <b> stayed text


def test_stages_show_as_bands_with_durations_and_usage_per_agent(page: Page) -> None:
    bands = page.locator(".stagebar .band")
    expect(bands).to_have_count(3)
    for band, name in zip(bands.all(), ("initialisation", "coordination", "presentation"), strict=True):
        expect(band).to_have_text(re.compile(rf"^{name} \d+\.\d\ds$"))
    expect(page.locator("tr.band-row")).to_have_count(3)
    rows = page.locator("#usage tbody tr")
    expect(rows).to_have_count(3)
    alpha = rows.nth(0).locator("td")
    expect(alpha.nth(0)).to_have_text("agent1 (alpha)")
    assert int(alpha.nth(1).inner_text()) >= 5  # retried call, two commands, answer, vote, presentation
    assert int(alpha.nth(3).inner_text()) > 0  # output tokens
    expect(alpha.nth(8)).to_have_text("1")  # provider retries
    expect(alpha.nth(9)).to_have_text("2 (1)")  # two commands, one refused


def test_clicking_an_event_expands_its_detail(page: Page) -> None:
    vote = page.locator('td.lane[data-lane="beta"] details.k-vote')
    detail = vote.locator("pre.page")
    expect(detail).to_be_hidden()
    vote.locator("summary").click()
    expect(detail).to_be_visible()
    expect(detail).to_contain_text("reason:\nclear")
    expect(vote.locator(".meta")).to_contain_text("vote.cast · seq")


def test_a_long_output_is_collapsed_into_pages_that_together_hold_all_of_it(page: Page) -> None:
    result = page.locator('td.lane[data-lane="alpha"] details[data-type="execution.completed"]')
    expect(result.locator("summary .size")).to_contain_text("4 pages")
    expect(result.locator("pre.page").first).to_be_hidden()  # collapsed until clicked
    result.locator("summary").click()
    pager = result.locator(".pager")
    expect(pager.locator(".pos")).to_have_text("page 1 of 4")
    expect(pager.locator("pre.page").nth(0)).to_be_visible()
    expect(pager.locator("pre.page").nth(1)).to_be_hidden()
    pager.locator("button.next").click()
    expect(pager.locator(".pos")).to_have_text("page 2 of 4")
    expect(pager.locator("pre.page").nth(1)).to_be_visible()
    expect(pager.locator("pre.page").nth(0)).to_be_hidden()
    pager.locator("button.prev").click()
    expect(pager.locator(".pos")).to_have_text("page 1 of 4")
    pages = pager.locator("pre.page").all_text_contents()
    assert all(len(p) <= PAGE_CHARS for p in pages)
    stdout = "".join(pages).split("stdout (13893 chars):\n", 1)[1].split("\n\nstderr", 1)[0]
    assert stdout == "".join(f"{i}\n" for i in range(1, 3001))  # nothing cut
    pager.locator("button.all").click()
    for i in range(4):
        expect(pager.locator("pre.page").nth(i)).to_be_visible()


def test_search_filters_the_events_and_marks_the_matches(page: Page) -> None:
    rows = page.locator("tr.evrow")
    total = rows.count()
    page.locator("#search").fill("CommandRefused")
    visible = page.locator("tr.evrow:not([hidden])")
    expect(visible).to_have_count(1)
    expect(visible.locator("mark.hit").first).to_have_text("CommandRefused")
    expect(page.locator("#hits")).to_have_text(f"1 of {total} events")
    expect(page.locator("tr.band-row:not([hidden])")).to_have_count(0)
    page.locator("#search").fill("")
    expect(page.locator("tr.evrow:not([hidden])")).to_have_count(total)
    expect(page.locator("mark.hit")).to_have_count(0)
    page.locator("#failures-only").check()
    expect(page.locator("tr.evrow:not([hidden])")).to_have_count(2)  # the rate limit and the refused command
