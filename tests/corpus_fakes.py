"""Wire-level fakes that play a whole MassGen team, whatever the provider: each agent answers, then
votes, then the winner presents (``massgen_es.testing.fake_openai.team_member``, for every wire format).

One stateless decision reads each request as its provider sent it (the tools offered, the JSON schema
of a constrained choice, the last message) and picks the reply:

- a JSON-schema choice (``tool_mode: json_schema``): a vote for ``agent1`` when voting is offered, else
  ``submit`` when post-evaluation is, else ``new_answer``;
- the last message is a tool result (Claude Code's own tool loop after our tool ran): a short text;
- ``vote`` offered: a vote for ``agent1``; ``submit`` offered: confirm; ``new_answer``: a fresh answer;
- no workflow tool (the presentation, or the free-text answer of the decision protocol): text.

OpenAI-compatible chat completions (``chatcompletion``, its presets, ``local``, ``azure_openai``) go to
:class:`~massgen_es.testing.fake_openai.FakeOpenAI`; the Responses API (``openai``), Anthropic
(``claude``, ``claude_code``) and Gemini (``gemini``) to :class:`ScriptedLLMock`, a real llmock server
(its own encoders of each provider's wire format) whose reply to each request is this decision.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import PurePosixPath
from typing import Any

from llmock.scenarios import Plan, RequestInfo, ScenarioQueue
from llmock.scenarios import Reply as MockReply
from llmock.scenarios import ToolCall as MockToolCall
from llmock.testing import LLMockServer

from massgen_es.testing.fake_openai import Reply

WORKFLOW_PREFIX = "mcp__massgen__"
"""Claude Code offers our workflow tools as MCP tools of its ``massgen`` server."""
VOTE = {"agent_id": "agent1", "reason": "agent1's answer is complete and correct"}
_answers = itertools.count(1)


def _answer_text() -> str:
    # Every answer differs, so a strict `answer_novelty_requirement` never refuses one as a repeat.
    n = next(_answers)
    return f"Answer {n}: Paris is the capital of France (draft {n}, checked against source {n * 7919 % 104729})."


def tool_names(body: dict[str, Any]) -> list[str]:
    """The function tools a request offers, in any provider's shape (Chat Completions ``function.name``,
    Responses and Anthropic ``name``, Gemini ``functionDeclarations[].name``)."""
    names: list[str] = []
    for tool in body.get("tools") or ():
        if not isinstance(tool, dict):
            continue
        if isinstance(tool.get("function"), dict):
            names.append(tool["function"].get("name", ""))
        for decl in tool.get("functionDeclarations") or tool.get("function_declarations") or ():
            names.append(decl.get("name", ""))
        if isinstance(tool.get("name"), str):
            names.append(tool["name"])
    return names


def choice_schema(body: dict[str, Any]) -> Any:
    """The JSON schema of a constrained workflow choice (Chat Completions ``response_format``, Responses
    ``text.format``, Gemini ``generationConfig.responseJsonSchema``), or None."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return fmt.get("json_schema", {}).get("schema")
    text_format = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(text_format, dict) and text_format.get("type") == "json_schema":
        return text_format.get("schema")
    gen = body.get("generationConfig") or {}
    return gen.get("responseJsonSchema") or gen.get("responseSchema") or None


def _after_tool_result(body: dict[str, Any]) -> bool:
    messages = body.get("messages") or ()
    last = messages[-1] if messages else None
    content = last.get("content") if isinstance(last, dict) else None
    return isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "tool_result" for p in content)


def decide(body: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """``(text, None)`` for a text reply, ``(tool name as offered, arguments)`` for a tool call."""
    schema = choice_schema(body)
    if schema is not None:
        branches = json.dumps(schema)
        if '"vote"' in branches:
            return json.dumps({"tool": "vote", "arguments": VOTE}), None
        if '"submit"' in branches:
            return json.dumps({"tool": "submit", "arguments": {"confirmed": True}}), None
        return json.dumps({"tool": "new_answer", "arguments": {}}), None
    if _after_tool_result(body):
        return "Done.", None
    offered = {name.removeprefix(WORKFLOW_PREFIX): name for name in tool_names(body)}
    if "vote" in offered:
        return offered["vote"], VOTE
    if "submit" in offered:
        return offered["submit"], {"confirmed": True}
    if "new_answer" in offered:
        return offered["new_answer"], {"content": _answer_text()}
    return f"FINAL {_answer_text()}", None


def openai_member(body: dict[str, Any]) -> Reply:
    """:func:`decide` as a :class:`FakeOpenAI` handler."""
    text, args = decide(body)
    return Reply(text=text) if args is None else Reply(tool_calls=((text, args),))


_body: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("corpus_request_body")


class _DecidingQueue(ScenarioQueue):
    """llmock's scenario queue, answering every request with :func:`decide` on its body (which
    :class:`_BodyReader` put in the request's context)."""

    def plan_for(self, info: RequestInfo) -> Plan:
        text, args = decide(_body.get({}))
        reply = MockReply(text=text) if args is None else MockReply(tool_calls=(MockToolCall(text, args),))
        return Plan(reply=reply)


class _BodyReader:
    """ASGI middleware in front of llmock's: reads the JSON body into the request's context, then
    replays it to the app (same task, so concurrent requests never see each other's bodies)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        _body.set(body if isinstance(body, dict) else {})
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ScriptedLLMock(LLMockServer):
    """A real llmock server on loopback whose every reply is :func:`decide` on the request's body."""

    def __init__(self) -> None:
        super().__init__()
        self.state.scenarios = _DecidingQueue()
        self.app.add_middleware(_BodyReader)

    def requests(self, provider: str) -> int:
        """How many requests of ``provider`` (``openai``, ``anthropic``, ``gemini``) llmock journaled."""
        return sum(1 for r in self.state.journal.records() if r.provider == provider)


def memory_llm(body: dict[str, Any]) -> Reply:
    """The memory LLM of a config's ``persistent_memory`` (mem0's fact extraction and our compression
    summary), on FakeOpenAI's Chat Completions route. mem0 asks for a JSON object (``response_format``):
    the facts are the ``FACT: ...`` sentences of its prompt (the turn's messages), else the prompt's last
    line, as mem0's ``{"memory": [{"text"}]}``. A summary request (no JSON asked) gets ``SUMMARY: `` and
    the start of what it summarises."""
    prompt = "\n".join(str(m.get("content") or "") for m in body.get("messages") or () if isinstance(m, dict))
    if (body.get("response_format") or {}).get("type") == "json_object":
        facts = list(dict.fromkeys(f.strip().rstrip(".") for f in re.findall(r"FACT: ([^\n.]+)", prompt)))
        if not facts:
            lines = [ln.strip() for ln in prompt.splitlines() if ln.strip()]
            facts = [lines[-1][:200]] if lines else []
        return Reply(text=json.dumps({"memory": [{"text": f} for f in facts]}))
    user = next((str(m.get("content")) for m in reversed(body.get("messages") or ()) if m.get("role") == "user"), "")
    return Reply(text="SUMMARY: " + " ".join(user.split())[:300])


class UploadServer:
    """A loopback HTTP server standing in for every host the corpus's ``upload_files`` URLs name: ``GET
    /<host>/<path>`` answers a small file of the type the path's extension says (a WAV, a PDF, a PNG, or
    text), so a URL entry is downloaded at submit and attached like MassGen's would be."""

    FILES = {
        ".wav": b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00@\x1f\x00\x00\x80>\x00\x00\x02\x00"
                b"\x10\x00data\x00\x00\x00\x00",
        ".pdf": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
        ".png": bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                              "1f15c4890000000d49444154789c63f8cf00000301010018dd8db40000000049454e44ae426082"),
    }

    def __init__(self) -> None:
        files = self.FILES
        self.requests: list[str] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:
                seen.append(self.path)
                body = files.get(PurePosixPath(self.path.split("?")[0]).suffix.lower(), b"corpus upload\n")
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> UploadServer:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
