"""MassGen's bundled network tools we ship (issue 16 item 2): the crawl4ai clients
(``massgen/tool/_web_tools/crawl4ai_tool.py``) and ``fetch_github_issues``
(``massgen/tool/_self_evolution/_github_issue_analyzer.py``), offered as custom tools and run by the real
executor in the agent's local (bubblewrap) sandbox, talking to loopback fakes of a crawl4ai server and of
the GitHub REST API (``CRAWL4AI_BASE_URL``, ``GITHUB_API_URL`` in the executor's environment)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest
from test_custom_tools import run as run_custom
from test_executor import IMAGE, engine  # noqa: F401 - `engine` is a fixture

from harness import of, tool_names, vote
from massgen_es.config import load_config, parse_config
from massgen_es.custom_tools import CRAWL4AI_TOOLS, UNSUPPORTED
from massgen_es.events import ExecutionCompleted, ExecutionFailed, RunCompleted
from massgen_es.testing.fake_openai import FakeOpenAI, Reply

CORPUS = Path(__file__).parent / "massgen_configs" / "corpus"
PNG = b"\x89PNG\r\n\x1a\nfake-screenshot"


class _Fake(BaseHTTPRequestHandler):
    """A crawl4ai server and a GitHub issues API in one: each request is recorded with its headers."""

    seen: list[dict[str, Any]]
    issues: list[dict[str, Any]]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _record(self) -> dict[str, Any]:
        size = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(size)) if size else None
        entry = {"method": self.command, "path": self.path, "body": body,
                 "authorization": self.headers.get("Authorization")}
        self.seen.append(entry)
        return entry

    def do_HEAD(self) -> None:
        self._record()
        self._reply(404 if self.path.startswith("/missing") else 200, {})

    def do_GET(self) -> None:
        r = self._record()
        if self.path == "/health":
            self._reply(200, {"status": "ok"})
        elif self.path.startswith("/repos/acme/widgets/issues"):
            self._reply(200, self.issues(r["authorization"]) if callable(self.issues) else self.issues)
        else:
            self._reply(404, {"message": "Not Found"})

    def do_POST(self) -> None:
        r = self._record()
        url = (r["body"] or {}).get("url")
        replies: dict[str, Any] = {
            "/md": {"success": True, "url": url, "markdown": f"# Page at {url}", "filter": r["body"].get("f")},
            "/html": {"html": "<h1>clean</h1>"},
            "/screenshot": {"screenshot": base64.b64encode(PNG).decode()},
            "/pdf": {"pdf": base64.b64encode(b"%PDF-1.4 fake").decode()},
            "/execute_js": {"success": True, "url": url, "markdown": "m", "js_execution_result": {"0": "Title"},
                            "links": {}},
            "/crawl": {"results": [{"url": u, "success": True} for u in (r["body"] or {}).get("urls", [])]},
        }
        self._reply(200, replies[self.path]) if self.path in replies else self._reply(404, {"detail": "no"})


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Fake]]]:
    handler = type("Handler", (_Fake,), {"seen": [], "issues": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def calling(*calls: tuple[str, dict[str, Any]]):
    """A model that makes ``calls`` in one round, answers with the tool results it read, votes agent1."""

    def handle(body: dict) -> Reply:
        tools = tool_names(body)
        seen = [m["content"] for m in body["messages"] if m["role"] == "tool"]
        if "vote" in tools:
            return vote("agent1")
        if "new_answer" not in tools:
            return Reply(text="FINAL")
        if not seen:
            return Reply(tool_calls=calls)
        return Reply(tool_calls=(("new_answer", {"content": json.dumps(seen)}),))

    return handle


async def run(fresh_nats, home: Path, fake: FakeOpenAI, handler, tools: list[dict], **backend) -> tuple[str, list]:
    run_id, records, _ = await run_custom(fresh_nats, home, fake, handler, custom_tools=tools, **backend)
    return run_id, records


CRAWL_ENTRY = {"name": list(CRAWL4AI_TOOLS), "category": "web_scraping", "function": list(CRAWL4AI_TOOLS),
               "path": "massgen/tool/_web_tools/crawl4ai_tool.py"}
GITHUB_ENTRY = {"name": ["fetch_github_issues"], "function": ["fetch_github_issues"],
                "path": "massgen/tool/_self_evolution/_github_issue_analyzer.py"}


def test_the_tools_are_shipped_with_massgen_s_signatures():
    cfg = parse_config({"agents": [{"id": "a", "backend": {"type": "chatcompletion", "model": "m", "base_url": "http://x/v1",
                                                           "custom_tools": [CRAWL_ENTRY, GITHUB_ENTRY]}}]})
    specs = {s.name: s for s in cfg.team[0].backend.resolved_custom_tools}
    assert not {*CRAWL4AI_TOOLS, "fetch_github_issues"} & set(UNSUPPORTED)
    params = {n.removeprefix("custom_tool__"): (s.parameters["required"], sorted(s.parameters["properties"]))
              for n, s in specs.items()}
    assert params == {
        "crawl4ai_md": (["url"], ["filter_type", "query", "url"]),
        "crawl4ai_html": (["url"], ["url"]),
        "crawl4ai_screenshot": (["url"], ["output_filename", "url", "wait_seconds"]),  # agent_cwd is ours
        "crawl4ai_pdf": (["url"], ["output_filename", "url"]),
        "crawl4ai_execute_js": (["url", "scripts"], ["scripts", "url"]),
        "crawl4ai_crawl": (["urls"], ["max_urls", "urls"]),
        "fetch_github_issues": (["repo"], ["labels", "limit", "repo", "state"]),
    }
    assert all(s.network for s in specs.values())
    assert specs["custom_tool__fetch_github_issues"].env == ("GITHUB_API_URL", "GITHUB_TOKEN")


def test_massgen_s_memory_baseline_config_with_crawl4ai_loads(tmp_path, monkeypatch):
    for d in ("massgen", "docs"):  # its context paths, in a MassGen checkout
        (tmp_path / d).mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = load_config(CORPUS / "memory" / "gpt5mini_gemini_baseline_research_to_implementation.yaml")
    for agent in cfg.team:
        assert [s.function for s in agent.backend.resolved_custom_tools] == list(CRAWL4AI_TOOLS)


async def test_crawl4ai_tools_reach_the_user_s_server_from_the_sandbox(
    fresh_nats, fake, massgen_home, server, monkeypatch
):
    base, handler = server
    monkeypatch.setenv("CRAWL4AI_BASE_URL", base)
    page = f"{base}/article"
    _, records = await run(fresh_nats, massgen_home, fake, calling(
        ("custom_tool__crawl4ai_md", {"url": page, "filter_type": "bm25", "query": "agents"}),
        ("custom_tool__crawl4ai_md", {"url": f"{base}/missing"}),
        ("custom_tool__crawl4ai_screenshot", {"url": page, "output_filename": "shot.png"}),
        ("custom_tool__crawl4ai_crawl", {"urls": [page, f"{base}/b"], "max_urls": 1}),
        ("custom_tool__crawl4ai_execute_js", {"url": page, "scripts": ["document.title"]}),
    ), [CRAWL_ENTRY])
    done = {(d.custom_tool, i): json.loads(d.stdout) for i, d in enumerate(of(records, ExecutionCompleted))}
    results = sorted(done.items(), key=lambda kv: kv[0][0])
    by_tool: dict[str, list[dict]] = {}
    for (tool, _), out in results:
        by_tool.setdefault(tool.removeprefix("custom_tool__"), []).append(out)
    md = sorted(by_tool["crawl4ai_md"], key=lambda o: o["success"])
    assert md[1] == {"success": True, "url": page, "markdown": f"# Page at {page}", "filter": "bm25"}
    assert md[0]["success"] is False and "URL returned error status 404" in md[0]["error"]
    [shot] = by_tool["crawl4ai_screenshot"]
    assert shot["success"] and Path(shot["saved_to"]).read_bytes() == PNG  # in the agent's workspace
    assert Path(shot["saved_to"]).parent.name == "agent-a"
    [crawled] = by_tool["crawl4ai_crawl"]
    assert crawled == {"success": True, "total_urls": 1, "results": [{"url": page, "success": True}]}
    assert by_tool["crawl4ai_execute_js"][0]["js_execution_result"] == {"0": "Title"}
    posts = [(s["path"], s["body"]) for s in handler.seen if s["method"] == "POST"]
    assert ("/md", {"url": page, "f": "bm25", "q": "agents"}) in posts
    assert ("/screenshot", {"url": page, "screenshot_wait_for": 2.0}) in posts
    assert of(records, RunCompleted)


async def test_crawl4ai_without_a_server_tells_the_model_how_to_start_one(fresh_nats, fake, massgen_home, monkeypatch):
    monkeypatch.setenv("CRAWL4AI_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    _, records = await run(fresh_nats, massgen_home, fake, calling(
        ("custom_tool__crawl4ai_html", {"url": "http://127.0.0.1:9/x"})), [CRAWL_ENTRY])
    [done] = of(records, ExecutionCompleted)
    out = json.loads(done.stdout)
    assert out["success"] is False and "docker run -d -p 11235:11235" in out["details"]


def _issue(n: int, title: str, labels: list[str], comments: int, reactions: int, **extra: Any) -> dict[str, Any]:
    return {"number": n, "title": title, "labels": [{"name": x} for x in labels], "comments": comments,
            "reactions": {"total_count": reactions}, "created_at": f"2025-10-{n:02d}T00:00:00Z", "body": "text",
            "html_url": f"https://github.com/acme/widgets/issues/{n}", **extra}


async def test_fetch_github_issues_reports_issues_with_the_token_kept_out_of_the_log(
    fresh_nats, fake, massgen_home, server, monkeypatch
):
    base, handler = server
    token = "tok-3f9a8b7c6d5e4f3a2b1c"  # no known credential shape: only remembering it scrubs it
    monkeypatch.setenv("GITHUB_API_URL", base)
    monkeypatch.setenv("GITHUB_TOKEN", token)
    # The fake echoes the Authorization header into an issue title, as a leaky API error might.
    handler.issues = staticmethod(lambda auth: [
        _issue(1, "Crash on start", ["bug"], 3, 2),
        _issue(2, f"Add Gemini support (seen {auth})", ["enhancement"], 10, 4),
        _issue(3, "A pull request", [], 0, 0, pull_request={"url": "x"}),
        _issue(4, "Improve the README", [], 0, 0),
    ])
    _, records = await run(fresh_nats, massgen_home, fake, calling(
        ("custom_tool__fetch_github_issues", {"repo": "acme/widgets", "labels": ["bug", "enhancement"], "limit": 5}),
    ), [GITHUB_ENTRY])
    [get] = [s for s in handler.seen if s["path"].startswith("/repos/")]
    assert get["authorization"] == f"Bearer {token}"  # the token reached GitHub
    assert get["path"] == ("/repos/acme/widgets/issues?state=open&per_page=10&sort=created&direction=desc"
                           "&labels=bug%2Cenhancement")
    [done] = of(records, ExecutionCompleted)
    report = done.stdout
    assert report.startswith("# GitHub Issues Analysis: acme/widgets\n**State**: open\n**Filters**: bug, enhancement")
    assert "**Total Issues Analyzed**: 3" in report  # the pull request is left out
    top = "1. **#2**: Add Gemini support (seen Bearer [redacted]) (10 comments, 4 reactions) [Feature Request]"
    assert top in report
    assert "- **Feature vs Bug Ratio**: 1 features / 1 bugs" in report and "[Documentation]" in report
    everything = b"".join(msgspec.json.encode(r.event) for r in records)
    assert token.encode() not in everything and of(records, RunCompleted)


async def test_in_docker_mode_the_tools_use_the_container_s_network_or_say_it_has_none(
    fresh_nats, fake, massgen_home, server, monkeypatch, engine  # noqa: F811
):
    base, handler = server
    token = "tok-91b2c3d4e5f60718293a"
    monkeypatch.setenv("GITHUB_API_URL", base)
    monkeypatch.setenv("GITHUB_TOKEN", token)
    handler.issues = [_issue(7, "Add a dark mode", ["enhancement"], 1, 0)]
    call = calling(("custom_tool__fetch_github_issues", {"repo": "acme/widgets"}))
    docker = {"command_line_execution_mode": "docker", "command_line_docker_image": IMAGE}
    _, records = await run(fresh_nats, massgen_home, fake, call, [GITHUB_ENTRY], **docker)
    [failed] = of(records, ExecutionFailed)
    assert "needs the network" in failed.failure.message and "command_line_docker_network_mode: host" in (
        failed.failure.message)
    _, records = await run(fresh_nats, massgen_home, fake, call, [GITHUB_ENTRY], **docker,
                           command_line_docker_network_mode="host")  # the fake listens on this machine's loopback
    [done] = of(records, ExecutionCompleted)
    assert done.sandbox and "1. **#7**: Add a dark mode" in done.stdout
    [get] = [s for s in handler.seen if s["path"].startswith("/repos/")]
    assert get["authorization"] == f"Bearer {token}"  # through the exec's environment
    assert token.encode() not in b"".join(msgspec.json.encode(r.event) for r in records)
