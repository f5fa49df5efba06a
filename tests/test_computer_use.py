"""MassGen's computer-use bundled tools (``computer_use``, ``claude_computer_use``, ``gemini_computer_use``,
``browser_automation``; spec §4.3), run by the agent worker (``massgen_agent_worker.computer_use``).

Each provider's official SDK talks to a wire-level fake (FakeOpenAI's Responses route emitting
``computer_call`` items; llmock for Anthropic ``tool_use`` blocks and Gemini function calls), and the
actions are carried out in a real Chromium on a loopback page whose server sees the clicks and the
submitted form. The end-to-end test runs a whole team over a real nats-server.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from llmock.scenarios import Reply as MockReply
from llmock.scenarios import ToolCall as MockToolCall
from llmock.testing import LLMockServer

from corpus_fakes import ScriptedLLMock, tool_names
from harness import Stack, of
from massgen_agent_worker import automation as automation_worker
from massgen_agent_worker import computer_use as cu
from massgen_agent_worker.computer_use.loop import Call
from massgen_agent_worker.tools import ToolClient
from massgen_es.bus.objects import ObjectStore
from massgen_es.config import load_config, parse_config
from massgen_es.custom_tools import automation
from massgen_es.errors import ConfigError
from massgen_es.events import (
    ComputerStep,
    ComputerUseCompleted,
    ExecutionRequested,
    RunCompleted,
    Source,
    ToolCall,
    TurnRequested,
)
from massgen_es.testing.fake_openai import FakeOpenAI, Reply
from massgen_replay import lanes, render
from massgen_replay.read import project

pytestmark = pytest.mark.skipif(cu.browser.chromium() is None, reason="no Chromium (scripts/browser.sh installs it)")

CORPUS = Path(__file__).parent / "massgen_configs" / "corpus" / "tools" / "custom_tools"
PNG = b"\x89PNG\r\n\x1a\n"
W, H = 800, 600
PAGE = b"""<!doctype html><html><head><title>Test page</title></head><body style="margin:0">
<button id="b" style="position:absolute;left:100px;top:100px;width:200px;height:80px"
 onclick="fetch('/clicked')">Press</button>
<form action="/submitted" method="get" style="position:absolute;left:100px;top:300px;margin:0">
<input id="q" name="q" style="width:300px;height:40px;margin:0"></form>
<h1 style="position:absolute;left:100px;top:400px;margin:0">Hello page</h1></body></html>"""
BUTTON = (200, 140)
FIELD = (250, 320)


class Site:
    """A loopback HTTP server with :data:`PAGE`; ``hits`` lists every path (with query) it served."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                site.hits.append(self.path)
                body = PAGE if self.path == "/" else b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "text/html" if self.path == "/" else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    async def saw(self, path: str, timeout_s: float = 5.0) -> bool:
        for _ in range(int(timeout_s / 0.05)):
            if any(h.startswith(path) for h in self.hits):
                return True
            await asyncio.sleep(0.05)
        return False


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.server.shutdown()


@pytest.fixture
def llm() -> Iterator[LLMockServer]:
    server = LLMockServer()
    server.start()
    yield server
    server.stop()


class Steps:
    """A recorder keeping every step."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, str, bytes, str, str]] = []

    async def __call__(self, step: int, call: Call, screenshot: bytes, url: str, error: str) -> None:
        self.steps.append((step, call.name, screenshot, url, error))


HEADLESS = {"headless": True}


# ---------------------------------------------------------------- the three providers


async def test_openai_computer_calls_click_the_page_and_get_screenshots_back(site: Site, fake: FakeOpenAI):
    fake.script("computer-use-preview",
                Reply(computer_actions=({"type": "click", "x": BUTTON[0], "y": BUTTON[1], "button": "left"},)),
                Reply(text="I pressed the button."))
    steps = Steps()
    out = json.loads(await cu.computer_use("Press the button", display_width=W, display_height=H,
                                           environment_config=HEADLESS, initial_url=site.url, api_key="sk-test",
                                           base_url=fake.base_url, record=steps))
    assert await site.saw("/clicked")
    assert out["success"] is True and out["final_output"] == "I pressed the button." and out["iterations"] == 2
    assert out["action_log"] == [{"iteration": 1, "action": {"type": "click", "x": 200, "y": 140, "button": "left"},
                                  "url": site.url}]
    first, second = fake.requests("computer-use-preview")
    assert first["tools"] == [{"type": "computer_use_preview", "display_width": W, "display_height": H,
                               "environment": "browser"}]
    assert first["reasoning"] == {"summary": "concise"}
    assert first["input"][0]["content"][0]["text"] == "Press the button"
    (output,) = second["input"]
    assert second["previous_response_id"].startswith("resp_") and output["type"] == "computer_call_output"
    assert output["current_url"] == site.url and output["output"]["type"] == "computer_screenshot"
    sent = base64.b64decode(output["output"]["image_url"].removeprefix("data:image/png;base64,"))
    assert sent.startswith(PNG)
    ((n, name, shot, url, error),) = steps.steps
    assert (n, name, url, error) == (1, "computer", site.url, "") and shot == sent


async def test_claude_tool_use_clicks_and_the_next_request_carries_the_screenshot(site: Site, llm: LLMockServer):
    llm.state.scenarios.add(MockReply(tool_calls=(MockToolCall(
        "computer", {"action": "left_click", "coordinate": list(BUTTON)}),)))
    llm.state.scenarios.add(MockReply(text="Done: pressed it."))
    out = json.loads(await cu.claude_computer_use("Press the button", display_width=W, display_height=H,
                                                  initial_url=site.url, api_key="sk-ant-test",
                                                  base_url=llm.base_url("anthropic")))
    assert await site.saw("/clicked")
    assert out["success"] is True and out["final_output"] == "Done: pressed it." and out["iterations"] == 2
    first, second = [r.body for r in llm.state.journal.records() if r.provider == "anthropic"]
    assert first["tools"][0]["type"] == "computer_20250124" and first["tools"][0]["display_width_px"] == W
    assert first["messages"] == [{"role": "user", "content": "Press the button"}]
    result = second["messages"][-1]["content"][0]
    assert result["type"] == "tool_result" and "is_error" not in result
    assert base64.b64decode(result["content"][0]["source"]["data"]).startswith(PNG)


async def test_a_failed_action_is_an_error_claude_sees_and_the_loop_goes_on(site: Site, llm: LLMockServer):
    llm.state.scenarios.add(MockReply(tool_calls=(MockToolCall("computer", {"action": "teleport"}),)))
    llm.state.scenarios.add(MockReply(tool_calls=(MockToolCall("bash", {"command": "ls"}),)))
    llm.state.scenarios.add(MockReply(text="Gave up."))
    steps = Steps()
    out = json.loads(await cu.claude_computer_use("Do it", display_width=W, display_height=H, initial_url=site.url,
                                                  api_key="sk-ant-test", base_url=llm.base_url("anthropic"),
                                                  record=steps))
    bodies = [r.body for r in llm.state.journal.records() if r.provider == "anthropic"]
    teleport, bash = bodies[1]["messages"][-1]["content"][0], bodies[2]["messages"][-1]["content"][0]
    assert teleport["is_error"] is True and teleport["content"][0]["text"] == "Error: unknown action 'teleport'"
    assert bash["is_error"] is True
    assert "'bash' is not offered here; use `computer`" in bash["content"][0]["text"]
    assert [s[4] for s in steps.steps] == ["unknown action 'teleport'", bash["content"][0]["text"][len("Error: "):]]
    assert out["success"] is True and out["final_output"] == "Gave up."


async def test_gemini_type_text_at_fills_the_field_on_its_0_to_999_grid_and_submits(site: Site, llm: LLMockServer):
    grid = {"x": FIELD[0] * 1000 // W + 1, "y": FIELD[1] * 1000 // H + 1}
    llm.state.scenarios.add(MockReply(tool_calls=(MockToolCall("type_text_at", {**grid, "text": "hello world"}),)))
    llm.state.scenarios.add(MockReply(text="Submitted."))
    out = json.loads(await cu.gemini_computer_use("Search hello world", display_width=W, display_height=H,
                                                  initial_url=site.url, environment_config=HEADLESS,
                                                  api_key="gm-test", base_url=llm.base_url("gemini")))
    assert await site.saw("/submitted?q=hello+world")
    assert out["success"] is True and out["final_output"] == "Submitted."
    first, second = [r.body for r in llm.state.journal.records() if r.provider == "gemini"]
    assert first["tools"] == [{"computerUse": {"environment": "ENVIRONMENT_BROWSER"}}]
    assert [p.get("text") for p in first["contents"][0]["parts"]][0] == "Search hello world"
    response, image = second["contents"][-1]["parts"]
    assert response["functionResponse"]["name"] == "type_text_at"
    assert response["functionResponse"]["response"]["url"].startswith(site.url + "submitted?q=hello+world")
    assert base64.urlsafe_b64decode(image["inlineData"]["data"] + "==").startswith(PNG)  # the SDK sends URL-safe base64


async def test_max_iterations_caps_the_model_requests(site: Site, fake: FakeOpenAI):
    fake.default("computer-use-preview", lambda body: Reply(computer_actions=({"type": "screenshot"},)))
    steps = Steps()
    out = json.loads(await cu.computer_use("Loop forever", display_width=W, display_height=H, max_iterations=3,
                                           environment_config=HEADLESS, initial_url=site.url, api_key="sk-test",
                                           base_url=fake.base_url, record=steps))
    assert len(fake.requests("computer-use-preview")) == 3 and len(steps.steps) == 3
    assert out["success"] is False and out["error"] == "Reached maximum iterations (3)" and out["iterations"] == 3


async def test_an_openai_action_that_fails_ends_the_session_with_its_error(site: Site, fake: FakeOpenAI):
    fake.script("computer-use-preview", Reply(computer_actions=({"type": "click", "x": 5, "y": 5, "button": "back"},)))
    out = json.loads(await cu.computer_use("Go back", display_width=W, display_height=H, initial_url=site.url,
                                           environment_config=HEADLESS, api_key="sk-test", base_url=fake.base_url))
    assert out["success"] is False
    assert out["error"] == "Action execution failed: click: button 'back' is not left, right or middle"
    assert len(fake.requests("computer-use-preview")) == 1  # OpenAI's protocol has no way to tell the model


async def test_a_provider_error_is_a_computer_use_error(fake: FakeOpenAI):
    fake.script("computer-use-preview", Reply(status=400, error_message="model not enabled"))
    refused = "OpenAI Responses API refused the request: Error code: 400 - model not enabled"
    with pytest.raises(cu.ComputerUseError, match=refused):
        await cu.computer_use("x", display_width=W, display_height=H, environment_config=HEADLESS,
                              api_key="sk-test", base_url=fake.base_url)


async def test_an_unknown_environment_or_a_missing_container_is_refused_by_name():
    with pytest.raises(cu.ComputerUseError, match="environment 'amiga' is not one of MassGen's"):
        await cu.gemini_computer_use("x", environment="amiga", api_key="k")
    with pytest.raises(cu.ComputerUseError, match="Docker container 'massgen-no-such-cua' not found"):
        await cu.gemini_computer_use("x", environment="linux", api_key="k",
                                     environment_config={"container_name": "massgen-no-such-cua"})


async def test_a_missing_key_names_its_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(cu.ComputerUseError, match="ANTHROPIC_API_KEY is not set in the agent worker's environment"):
        await cu.claude_computer_use("x")


# ---------------------------------------------------------------- the linux environment (a Docker desktop)

CUA_IMAGE = os.environ.get("MASSGEN_CUA_IMAGE", "massgen/cua-desktop:latest")


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def desktop() -> Iterator[str]:
    """A container of :data:`CUA_IMAGE` (``make sandbox`` builds it: scripts/cua-image.sh) on no network,
    with an xterm at the top left of its 800x600 X screen; removed afterwards."""
    name = f"massgen-cua-test-{uuid.uuid4().hex[:8]}"
    started = _docker("run", "-d", "--name", name, "--network", "none", "-e", f"WIDTH={W}", "-e", f"HEIGHT={H}",
                      CUA_IMAGE)
    assert started.returncode == 0, f"{started.stderr} (build the image: bash scripts/cua-image.sh)"
    try:
        for _ in range(100):
            if _docker("exec", name, "xdotool", "getdisplaygeometry").returncode == 0:
                break
            time.sleep(0.1)
        _docker("exec", "-d", name, "xterm", "-geometry", "60x20+0+0")
        for _ in range(100):
            if _docker("exec", name, "xdotool", "search", "--class", "xterm").returncode == 0:
                break
            time.sleep(0.1)
        yield name
    finally:
        _docker("rm", "-f", name)


async def test_claude_drives_a_linux_desktop_container_with_xdotool_and_scrot(desktop: str, llm: LLMockServer):
    for call in ({"action": "left_click", "coordinate": [100, 100]}, {"action": "type", "text": "touch /tmp/typed-ok"},
                 {"action": "key", "text": "Return"}):
        llm.state.scenarios.add(MockReply(tool_calls=(MockToolCall("computer", call),)))
    llm.state.scenarios.add(MockReply(text="Created the file."))
    steps = Steps()
    out = json.loads(await cu.claude_computer_use(
        "Create /tmp/typed-ok in the terminal", environment="linux", display_width=W, display_height=H,
        environment_config={"container_name": desktop, "display": ":99"}, api_key="sk-ant-test",
        base_url=llm.base_url("anthropic"), record=steps))
    for _ in range(50):  # the shell in the xterm runs the command
        if _docker("exec", desktop, "test", "-f", "/tmp/typed-ok").returncode == 0:
            break
        await asyncio.sleep(0.1)
    assert _docker("exec", desktop, "test", "-f", "/tmp/typed-ok").returncode == 0
    assert out["success"] is True and out["environment"] == "linux" and out["iterations"] == 4
    assert [(s[0], s[3], s[4]) for s in steps.steps] == [(1, "", ""), (2, "", ""), (3, "", "")]
    assert all(s[2].startswith(PNG) for s in steps.steps)  # scrot's screenshots of the X screen
    last = [r.body for r in llm.state.journal.records() if r.provider == "anthropic"][-1]
    assert base64.b64decode(last["messages"][-1]["content"][0]["content"][0]["source"]["data"]).startswith(PNG)


async def test_openai_in_the_linux_desktop_names_that_environment_and_sends_no_page_url(desktop: str, fake: FakeOpenAI):
    fake.script("computer-use-preview", Reply(computer_actions=({"type": "keypress", "keys": ["ctrl", "l"]},)),
                Reply(text="ok"))
    out = json.loads(await cu.computer_use("x", environment="ubuntu", display_width=W, display_height=H,
                                           environment_config={"container_name": desktop}, api_key="sk-test",
                                           base_url=fake.base_url))
    first, second = fake.requests("computer-use-preview")
    assert first["tools"][0]["environment"] == "linux"  # MassGen's alias
    assert "current_url" not in second["input"][0] and out["success"] is True
    with pytest.raises(cu.ComputerUseError, match="initial_url needs environment \"browser\""):
        await cu.computer_use("x", environment="linux", initial_url="http://127.0.0.1:1/", api_key="sk-test",
                              environment_config={"container_name": desktop})


# ---------------------------------------------------------------- browser_automation (no model of its own)


async def test_browser_automation_extracts_clicks_and_types(site: Site):
    steps = Steps()
    out = json.loads(await cu.browser_automation("Read the heading", url=site.url, action="extract", selector="h1",
                                                 headless=True, record=steps))
    assert out["success"] is True and out["extracted_text"] == ["Hello page"] and out["current_title"] == "Test page"
    assert out["screenshot_size"] == len(steps.steps[0][2]) and steps.steps[0][2].startswith(PNG)
    out = json.loads(await cu.browser_automation("Press", url=site.url, action="click", selector="#b", headless=True))
    assert out["success"] is True and await site.saw("/clicked")
    out = json.loads(await cu.browser_automation("Press", url=site.url, action="click", selector="#nope",
                                                 headless=True, screenshot=False))
    assert out["success"] is False and "Timeout" in out["error"] and "screenshot_size" not in out
    with pytest.raises(cu.ComputerUseError, match="action 'type' needs selector and text"):
        await cu.browser_automation("Type", url=site.url, action="type")


# ---------------------------------------------------------------- loading MassGen's configs


def _without_understand_image(name: str, tmp_path: Path) -> Path:
    """A corpus config without its ``understand_image`` entries (another bundled tool, tested on its own)."""
    data = yaml.safe_load((CORPUS / name).read_text())
    for agent in data.get("agents") or [data["agent"]]:
        tools = agent["backend"]["custom_tools"]
        agent["backend"]["custom_tools"] = [t for t in tools if "understand_image" not in t["function"]]
    out = tmp_path / name
    out.write_text(yaml.safe_dump(data))
    return out


@pytest.mark.parametrize(("name", "tool", "preset"), [
    ("computer_use_example.yaml", "computer_use", {}),
    ("computer_use_browser_example.yaml", "computer_use", {}),
    ("computer_use_docker_example.yaml", "computer_use", {}),  # its `default_params` are ignored, as by MassGen
    ("claude_computer_use_browser_example.yaml", "claude_computer_use", {"environment": "browser"}),
    ("gemini_computer_use_example.yaml", "gemini_computer_use", {"environment": "browser"}),
    ("simple_browser_automation_example.yaml", "browser_automation", {}),
])
def test_the_computer_use_examples_load_as_worker_run_tools(name: str, tool: str, preset: dict, tmp_path: Path):
    (agent,) = load_config(_without_understand_image(name, tmp_path)).agents
    (spec,) = agent.backend.resolved_custom_tools
    assert (spec.name, spec.function, spec.runs_in, spec.source) == (f"custom_tool__{tool}", tool, "agent_worker", "")
    assert preset.items() <= spec.preset_args.items()
    assert set(spec.parameters["properties"]).isdisjoint(spec.preset_args)
    assert spec.parameters["required"] == ["query" if tool == "claude_computer_use" else "task"]


@pytest.mark.parametrize(("name", "tool"), [("claude_computer_use_docker_example.yaml", "claude_computer_use"),
                                           ("gemini_computer_use_docker_example.yaml", "gemini_computer_use")])
def test_the_linux_examples_load_with_their_container(name: str, tool: str, tmp_path: Path):
    (agent,) = load_config(_without_understand_image(name, tmp_path)).agents
    (spec,) = agent.backend.resolved_custom_tools
    assert spec.runs_in == "agent_worker" and spec.preset_args["environment"] == "linux"
    assert spec.preset_args["environment_config"] == {"container_name": "cua-container", "display": ":99"}


def test_a_browser_other_than_chromium_is_refused_at_load(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    tool = {"name": "gemini_computer_use", "path": "massgen/tool/_gemini_computer_use/gemini_computer_use_tool.py",
            "function": "gemini_computer_use", "preset_args": {"environment_config": {"browser_type": "firefox"}}}
    cfg.write_text(yaml.safe_dump({"agents": [{"id": "a", "backend": {
        "type": "openai", "model": "gpt-4.1", "custom_tools": [tool]}}]}))
    with pytest.raises(ConfigError, match=r"preset_args\.browser_type`: browser_type 'firefox' is not installed here"):
        load_config(cfg)


@pytest.mark.parametrize("function", sorted(automation.TOOLS))
def test_the_declared_parameters_are_the_worker_functions(function: str):
    declared = automation.parameters(function)
    params = inspect.signature(cu.TOOLS[function]).parameters
    # agent_cwd is MassGen's injected workspace path: in the signature, never offered to the model
    assert [p for p in params if params[p].kind is not inspect.Parameter.KEYWORD_ONLY and p != "agent_cwd"] == declared
    defaults = {n: d for n, _, d, _ in automation.TOOLS[function][1] if d is not ... and d is not None}
    assert {n: params[n].default for n in defaults} == defaults


# ---------------------------------------------------------------- end to end


async def _one_call(nats_url: str, fake: FakeOpenAI, preset: dict[str, Any]) -> tuple[str, ComputerUseCompleted]:
    """One ``custom_tool__computer_use`` call through the worker's :func:`run_call` (an ``openai`` agent on
    ``fake``, key in ``MASSGEN_TEST_CU_KEY``): the model's text and the recorded ``computer.completed``."""
    cfg = {"agents": [{"id": "a", "backend": {
        "type": "openai", "model": "gpt-4.1", "base_url": fake.base_url, "api_key_env": "MASSGEN_TEST_CU_KEY",
        "custom_tools": [{"name": "computer_use", "path": "massgen/tool/_computer_use/computer_use_tool.py",
                          "function": "computer_use", "preset_args": preset}]}}]}
    backend = parse_config(cfg).agents[0].backend
    async with Stack(nats_url) as s:
        run_id = await s.submit(cfg, "Loop")
        submitted = (await s.log.read(run_id))[0].event
        req = TurnRequested(turn_id="t1", agent_id="a", attempt=1, kind="coordination", messages=(), tools=(),
                            backend=submitted.agents[0].backend, answers_version=0)
        spec = backend.resolved_custom_tools[0]
        tools = ToolClient(s.nc, Source(service="agent_worker", instance="t"))
        text = await automation_worker.run_call(spec, ToolCall(id="c1", name=spec.name, arguments='{"task": "x"}'),
                                                req, backend, tools, ObjectStore(s.nc), run_id, f"{run_id}:t1",
                                                f"{run_id}:w:t1:1:d1:r0:cu:c1")
        (done,) = of(await s.log.read(run_id), ComputerUseCompleted)
    return text, done


async def test_a_session_over_its_time_is_stopped_and_the_model_told(
    fresh_nats, fake: FakeOpenAI, site: Site, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(automation_worker, "SESSION_TIMEOUT_S", 8.0)
    monkeypatch.setenv("MASSGEN_TEST_CU_KEY", "sk-test-cu")
    fake.default("computer-use-preview", lambda body: Reply(computer_actions=({"type": "screenshot"},), delay_s=0.3))
    text, done = await _one_call(fresh_nats.url, fake, {"initial_url": site.url, "display_width": W,
                                                        "display_height": H})
    assert text == "Error: computer_use took longer than 8 s and was stopped"
    assert done.is_error and done.result == text
    assert fake.requests("computer-use-preview")  # it was looping, with the backend key and endpoint
    assert fake.received("computer-use-preview")[0].headers["authorization"] == "Bearer sk-test-cu"


async def test_a_worker_without_playwright_answers_with_what_to_install(
    fresh_nats, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MASSGEN_TEST_CU_KEY", "sk-test-cu")
    monkeypatch.setitem(sys.modules, "playwright.async_api", None)  # what `import` finds in a worker without it
    text, done = await _one_call(fresh_nats.url, fake, {})
    assert text.startswith("Error: computer_use needs Playwright in the agent worker, which is not installed")
    assert text.endswith("install massgen-agent-worker[computer-use]")
    assert done.is_error and done.steps == 0 and not fake.requests("computer-use-preview")


RUNNABLE = ["computer_use_example.yaml", "computer_use_browser_example.yaml", "computer_use_docker_example.yaml",
            "claude_computer_use_browser_example.yaml", "claude_computer_use_docker_example.yaml",
            "gemini_computer_use_example.yaml", "gemini_computer_use_docker_example.yaml",
            "multi_agent_computer_use_example.yaml", "simple_browser_automation_example.yaml"]


@pytest.mark.timeout(600)
async def test_the_computer_use_examples_run_to_a_final_answer(
    fresh_nats, massgen_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The corpus walk's way (``tests/test_massgen_corpus.py``: each backend on a fake of its provider,
    the team answers, votes, presents) over this file's copies of the examples without
    ``understand_image`` (another bundled tool; the corpus walk runs the files as they are)."""
    from test_massgen_corpus import FAKE_KEY, _key_variables, rewrite

    raw = {n: yaml.safe_load(_without_understand_image(n, tmp_path).read_text()) for n in RUNNABLE}
    for var in set().union(*map(_key_variables, raw.values())):
        monkeypatch.setenv(var, FAKE_KEY)
    with FakeOpenAI() as fake, ScriptedLLMock() as llm:
        async with Stack(fresh_nats.url) as s:
            s.orchestrator()
            s.worker(concurrency=4)
            s.broker(massgen_home)
            s.executor(massgen_home)
            ran = {}
            for name, data in raw.items():
                cfg, dropped = rewrite(data, fake, llm)
                records = await s.wait_done(await s.submit(cfg), 120)
                done = of(records, RunCompleted)
                ran[name] = bool(done) and bool(done[0].final_answer.strip())
    assert ran == dict.fromkeys(RUNNABLE, True)


async def test_a_computer_use_call_runs_at_the_worker_and_is_recorded_for_replay(
    fresh_nats, fake: FakeOpenAI, site: Site, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-e2e-test-key")

    def agent(body: dict) -> Reply:
        names = tool_names(body)
        if "vote" in names:
            return Reply(tool_calls=(("vote", {"agent_id": "agent1", "reason": "done"}),))
        if "new_answer" in names:
            done = [i for i in body.get("input", []) if i.get("type") == "function_call_output"]
            if not done:
                return Reply(tool_calls=(("custom_tool__computer_use", {"task": "Press the button"}),))
            return Reply(tool_calls=(("new_answer", {"content": "Pressed. " + done[0]["output"][:60]}),))
        return Reply(text="FINAL the button was pressed")

    fake.default("gpt-4.1", agent)
    fake.script("computer-use-preview",
                Reply(computer_actions=({"type": "click", "x": BUTTON[0], "y": BUTTON[1], "button": "left"},)),
                Reply(text="Pressed the button."))
    cfg = {"agents": [{"id": "automation_agent", "backend": {
        "type": "openai", "model": "gpt-4.1", "base_url": fake.base_url, "custom_tools": [{
            "name": ["computer_use"], "path": "massgen/tool/_computer_use/computer_use_tool.py",
            "function": ["computer_use"], "preset_args": {
                "display_width": W, "display_height": H, "max_iterations": 5, "initial_url": site.url,
                "environment_config": HEADLESS}}]}}]}
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg, "Press the button on the page.")
        records = await s.wait_done(run_id, 90)
        (step,) = of(records, ComputerStep)
        assert step.screenshot is not None
        shot = await ObjectStore(s.nc).get(step.screenshot)
    assert await site.saw("/clicked")
    assert shot.startswith(PNG) and step.step == 1 and step.url == site.url and step.error == ""
    assert json.loads(step.action) == {"type": "click", "x": 200, "y": 140, "button": "left"}
    (done,) = of(records, ComputerUseCompleted)
    assert not done.is_error and json.loads(done.result)["final_output"] == "Pressed the button."
    assert done.arguments["task"] == "Press the button" and done.steps == 1
    assert not of(records, ExecutionRequested)  # run at the worker, never sent to the executor
    assert of(records, RunCompleted)[0].final_answer.strip()
    assert "sk-e2e-test-key" not in json.dumps([str(r.event) for r in records])
    view = project(run_id, records)  # what `massgen replay` shows
    shown = [e.text for e in view.timeline if e.kind == "computer"]
    assert shown[0] == (f"computer_use step 1: {step.action} at {site.url}; screenshot {step.screenshot.name[:12]} "
                        f"({len(shot)} bytes)")
    assert shown[1].startswith("computer_use done after 1 step(s) in ")
    assert render.progress(view, next(e for e in view.timeline if e.kind == "computer")) is not None
    (item,) = [i for i in lanes.items(records) if i.type == "computer.step"]  # the HTML timeline's lane item
    assert (item.lane, item.kind) == ("automation_agent", "tool") and f"screenshot {step.screenshot.name}" in item.body
