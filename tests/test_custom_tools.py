"""MassGen's ``custom_tools`` (MassGen spec §2.5; issue 16 item 2): schemas read from the file without
running it, config errors with key paths, MassGen's bundled tools (ours or refused), and whole runs on a
real nats-server where the scripted model (the wire-level fake, through the real ``openai`` SDK) calls
a custom tool that the real executor runs in the agent's local (bubblewrap) sandbox."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import msgspec
import pytest

from harness import Stack, of, team, tool_names, vote
from massgen_es.config import BackendConfig, load_config, parse_config, run_submitted
from massgen_es.custom_tools import UNSUPPORTED, runner, source_of
from massgen_es.errors import ConfigError
from massgen_es.events import AnswerPosted, ExecutionCompleted, ExecutionFailed, ExecutionRequested, RunCompleted
from massgen_es.testing.fake_openai import FakeOpenAI, Reply
from massgen_replay.views import RunView

CONFIGS = Path(__file__).parent / "massgen_configs" / "tools" / "custom_tools"
"""Copies of MassGen's example configs (``massgen/configs/tools/custom_tools``) that name its bundled tools."""

SAMPLE = '''
from typing import Literal, Optional

from massgen.tool._result import ExecutionResult, TextContent


async def shout(text: str, times: int = 2, loud: bool = False, tags: list[str] | None = None,
                mode: Literal["plain", "fancy"] = "plain", ratio: Optional[float] = None,
                options: dict = {}, api_key: str = "", agent_cwd: str = "") -> ExecutionResult:
    """Repeat a text.

    Args:
        text: What to repeat
        times: How many times
    """
    print("this goes to stderr, not to the model")
    (__import__("pathlib").Path(agent_cwd) / "shouted.txt").write_text(text)
    return ExecutionResult(output_blocks=[
        TextContent(data=" ".join([text] * times) + f" key={api_key} cwd={agent_cwd}"),
        TextContent(data="a log line", is_log=True),
    ])


def boom(x: int) -> str:
    """Always fails."""
    raise ValueError(f"cannot handle {x}")


def sleepy() -> str:
    import time
    time.sleep(30)
    return "late"
'''


@pytest.fixture
def tool_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_tools.py"
    path.write_text(SAMPLE)
    return path


def config(*tools: dict, **backend) -> dict:
    return {"agents": [{"id": "a", "backend": {"type": "chatcompletion", "model": "m", "base_url": "http://x/v1",
                                               "custom_tools": list(tools), **backend}}]}


def resolved(*tools: dict, **backend):
    return {t.name: t for t in parse_config(config(*tools, **backend)).team[0].backend.resolved_custom_tools}


# ---------------------------------------------------------------- schema and config


def test_schema_comes_from_the_signature_and_docstring_without_running_the_file(tool_file):
    ran = tool_file.parent / "ran"
    source = SAMPLE + f"\nopen({str(ran)!r}, 'w').close()\n"
    tool_file.write_text(source)
    tools = resolved({"path": str(tool_file), "function": ["shout", "boom"], "preset_args": [{"api_key": "K"}, {}]})
    assert not ran.exists()
    shout = tools["custom_tool__shout"]
    assert shout.description == "Repeat a text."
    assert shout.parameters == {
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "What to repeat"},
            "times": {"type": "integer", "description": "How many times", "default": 2},
            "loud": {"type": "boolean", "default": False},
            "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}], "default": None},
            "mode": {"type": "string", "enum": ["plain", "fancy"], "default": "plain"},
            "ratio": {"type": ["number", "null"], "default": None},
            "options": {"type": "object", "default": {}},
        },
        "required": ["text"],
    }  # `api_key` (a preset) and `agent_cwd` (injected) are hidden from the model
    assert shout.preset_args == {"api_key": "K"} and shout.source == source and shout.function == "shout"
    boom = tools["custom_tool__boom"]
    assert boom.parameters["required"] == ["x"]
    assert boom.source == "" and source_of(list(tools.values()), boom) == source  # one file travels once


def test_name_description_and_str_forms(tool_file):
    tools = resolved({"name": "echo", "path": str(tool_file), "function": "shout", "description": "Mine.",
                      "preset_args": {"api_key": "K"}, "category": "text"})
    assert list(tools) == ["custom_tool__echo"]
    assert (tools["custom_tool__echo"].description, tools["custom_tool__echo"].category) == ("Mine.", "text")


def test_the_specs_travel_in_the_run_submitted_event(tool_file):
    ev = run_submitted("q", parse_config(config({"path": str(tool_file), "function": "boom"})))
    backend = msgspec.convert(msgspec.json.decode(msgspec.json.encode(ev)).get("agents")[0]["backend"], BackendConfig)
    [spec] = backend.resolved_custom_tools
    assert spec.name == "custom_tool__boom" and spec.source == SAMPLE  # an executor elsewhere needs no file
    tool_file.unlink()  # `massgen fork --set` parses the recorded backend again: its tools stay as recorded
    again = parse_config({"agents": [{"id": "a", "backend": ev.agents[0].backend}]}).team[0].backend
    assert again.resolved_custom_tools == backend.resolved_custom_tools


@pytest.mark.parametrize(("tool", "key", "says"), [
    ({"path": "PATH"}, "agents[0].backend.custom_tools[1].function", "is missing"),
    ({"path": "/no/such/tools.py", "function": "f"}, "agents[0].backend.custom_tools[1].path", "does not exist"),
    ({"path": "PATH", "function": "nope"}, "agents[0].backend.custom_tools[1].function", "no top-level function"),
    ({"path": "PATH", "function": ["boom", "nope"]}, "agents[0].backend.custom_tools[1].function[1]", "`nope`"),
    ({"path": "PATH", "function": "boom", "name": "shout"}, "agents[0].backend.custom_tools[1].name",
     "already declared by `agents[0].backend.custom_tools[0]`"),
    ({"path": "PATH", "function": "boom", "preset_args": {"y": 1}},
     "agents[0].backend.custom_tools[1].preset_args.y", "has no parameter `y`"),
    ({"path": "PATH", "function": "boom", "name": ["a", "b"]}, "agents[0].backend.custom_tools[1].name",
     "2 entries for 1 function"),
    ({"path": "PATH", "function": "boom", "name": "bad name"}, "agents[0].backend.custom_tools[1].name",
     "not a valid tool name"),
    ({"function": "my_function"}, "agents[0].backend.custom_tools[1].function",
     "set `agents[0].backend.custom_tools[1].path`"),
])
def test_a_bad_entry_is_a_config_error_naming_its_key(tool_file, tool, key, says):
    tool = {k: str(tool_file) if v == "PATH" else v for k, v in tool.items()}
    with pytest.raises(ConfigError) as err:
        parse_config(config({"path": str(tool_file), "function": "shout"}, tool))
    assert f"`{key}`" in str(err.value) and says in str(err.value)


def test_a_file_that_is_not_python_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(:\n")
    with pytest.raises(ConfigError, match=r"custom_tools\[0\]\.path`: .* is not valid Python"):
        parse_config(config({"path": str(bad), "function": "f"}))


def test_a_file_too_big_to_travel_with_the_run_is_a_config_error(tmp_path):
    big = tmp_path / "big.py"
    big.write_text("def f() -> None:\n    pass\n" + "# padding\n" * 6000)
    with pytest.raises(ConfigError, match=r"custom_tools\[0\]\.path`: .* is over 48 kB"):
        parse_config(config({"path": str(big), "function": "f"}))


RETURNS = '''
def as_dict(agent_cwd: str) -> dict:
    return {"cwd": agent_cwd}


def counting(n: int):
    for i in range(n):
        yield f"step {i}"
'''


def call_runner(function: str, arguments: dict) -> dict | None:
    line = runner.command(RETURNS, "returns.py", function, arguments, "/the/workspace")
    done = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True, timeout=30, check=False)
    return runner.result(done.stdout)


def test_the_runner_injects_agent_cwd_over_the_model_s_and_shapes_results():
    assert call_runner("as_dict", {"agent_cwd": "/etc"}) == {"ok": True, "text": '{"cwd": "/the/workspace"}'}
    assert call_runner("counting", {"n": 3}) == {"ok": True, "text": "step 2"}  # a generator's last value
    assert call_runner("counting", {"m": 3}) == {
        "ok": False, "error": "invalid arguments for counting: missing a required argument: 'n'"}


@pytest.mark.parametrize("path", [None, "massgen/tool/_basic/_two_num_tool.py"])
def test_two_num_tool_is_ours_without_a_path_or_at_massgen_s_path(path):
    tool = {"name": ["two_num_tool"], "function": ["two_num_tool"], **({"path": path} if path else {})}
    spec = resolved(tool)["custom_tool__two_num_tool"]
    assert spec.parameters["required"] == ["x", "y"] and spec.path.endswith("massgen_es/custom_tools/basic.py")


@pytest.mark.parametrize("function", sorted(UNSUPPORTED))
def test_massgen_bundled_tools_we_lack_are_refused_by_name(function):
    with pytest.raises(ConfigError) as err:
        parse_config(config({"name": [function], "path": "massgen/tool/_x/x.py", "function": [function]}))
    message = str(err.value)
    assert f"`{function}` is one of MassGen's bundled tools" in message and "does not support" in message
    assert "spelling" not in message and "agents[0].backend.custom_tools[0].function" in message


def test_auto_discover_adds_two_num_tool_and_exclude_removes_tools(tool_file):
    assert list(resolved(auto_discover_custom_tools=True)) == ["custom_tool__two_num_tool"]
    tools = resolved({"path": str(tool_file), "function": ["shout", "boom"]}, auto_discover_custom_tools=True,
                     exclude_custom_tools=["boom", "custom_tool__two_num_tool"])
    assert list(tools) == ["custom_tool__shout"]


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_massgen_examples_using_two_num_tool_load(name):
    cfg = load_config(CONFIGS / name)
    for agent in cfg.team:
        [spec] = agent.backend.resolved_custom_tools
        assert spec.name == "custom_tool__two_num_tool"
        assert spec.function == ("wrong_two_num_tool" if "wrong_custom_tool" in name else "two_num_tool")


def test_massgen_example_with_understand_image_loads_it_as_a_tool_the_worker_runs(tmp_path, monkeypatch):
    # Its context path is relative to a MassGen checkout (tests/test_multimodal_tools.py runs the tool).
    image = tmp_path / "massgen/configs/resources/v0.1.3-example/multimodality.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"\xff\xd8")
    monkeypatch.chdir(tmp_path)
    [spec] = load_config(CONFIGS / "multimodal_tools" / "understand_image.yaml").agents[0].backend.resolved_custom_tools
    assert (spec.name, spec.runs_in, spec.source) == ("custom_tool__understand_image", "agent_worker", "")


# ---------------------------------------------------------------- whole runs


def tool_results(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "tool"]


def calling(*calls: tuple[str, dict | str]):
    """A model that makes ``calls`` in one round, answers with the tool messages it read, votes agent1."""

    def handle(body: dict) -> Reply:
        tools = tool_names(body)
        seen = tool_results(body["messages"])
        if "vote" in tools:
            return vote("agent1")
        if "new_answer" not in tools:
            return Reply(text="FINAL " + " | ".join(seen))
        if not seen:
            return Reply(tool_calls=calls)
        return Reply(tool_calls=(("new_answer", {"content": json.dumps(seen)}),))

    return handle


async def run(fresh_nats, home: Path, fake: FakeOpenAI, handler, **backend) -> tuple[str, list, list[dict]]:
    cfg, (model,) = team(fake, 1)
    cfg["agents"][0]["backend"].update(backend)
    fake.default(model, handler)
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        stack.executor(home)
        run_id = await stack.submit(cfg)
        records = await stack.wait_done(run_id, 90)
    return run_id, records, fake.requests(model)


async def test_a_user_tool_runs_in_the_executor_and_its_result_reaches_the_model(
    fresh_nats, fake, massgen_home, tool_file
):
    handler = calling(("custom_tool__shout", {"text": "hi", "times": 3}))
    run_id, records, requests = await run(
        fresh_nats, massgen_home, fake, handler,
        custom_tools=[{"path": str(tool_file), "function": "shout", "preset_args": {"api_key": "K"}}])
    [offered] = [t for t in requests[0]["tools"] if t["function"]["name"] == "custom_tool__shout"]
    assert "api_key" not in offered["function"]["parameters"]["properties"]  # preset: hidden, yet passed
    workspace = massgen_home / "runs" / run_id / "workspaces" / "agent-a"
    [request] = of(records, ExecutionRequested)
    assert (request.custom_tool, request.arguments) == ("custom_tool__shout", {"text": "hi", "times": 3})
    [done] = of(records, ExecutionCompleted)
    expected = f"hi hi hi key=K cwd={workspace}"
    assert (done.custom_tool, done.mode, done.stdout) == ("custom_tool__shout", "local", expected)
    assert "this goes to stderr" in done.stderr  # what the function printed is not its result
    assert (workspace / "shouted.txt").read_text() == "hi"  # agent_cwd is the agent's workspace
    assert tool_results(requests[1]["messages"]) == [expected]  # the model's next request carries the result
    [answer] = of(records, AnswerPosted)
    assert json.loads(answer.content) == [expected] and of(records, RunCompleted)


async def test_two_num_tool_from_a_massgen_style_config(fresh_nats, fake, massgen_home):
    handler = calling(("custom_tool__two_num_tool", {"x": 123, "y": 456}))
    _, records, requests = await run(fresh_nats, massgen_home, fake, handler, custom_tools=[{
        "name": ["two_num_tool"], "category": "math", "path": "massgen/tool/_basic/_two_num_tool.py",
        "function": ["two_num_tool"]}])
    [done] = of(records, ExecutionCompleted)
    assert done.stdout == "The sum of 123 and 456 is 579"
    assert tool_results(requests[1]["messages"]) == ["The sum of 123 and 456 is 579"] and of(records, RunCompleted)
    view = RunView(records[0].run_id)
    for r in records:
        view.apply(r)
    assert [e.text for e in view.timeline if e.kind == "exec"] == ['custom_tool__two_num_tool {"x": 123, "y": 456}']


async def test_failures_come_back_as_tool_errors_and_the_run_completes(fresh_nats, fake, massgen_home, tool_file):
    handler = calling(
        ("custom_tool__two_num_tool", {"x": 1, "y": 2}),  # MassGen's deliberately broken example
        ("custom_tool__boom", {"x": 7}),  # the function raises
        ("custom_tool__boom", {"x": "seven"}),  # arguments that do not fit the schema
        ("custom_tool__sleepy", {}),  # runs past the timeout
    )
    _, records, requests = await run(
        fresh_nats, massgen_home, fake, handler, command_line_timeout_seconds=3,
        custom_tools=[{"name": ["two_num_tool"], "function": ["wrong_two_num_tool"]},
                      {"path": str(tool_file), "function": ["boom", "sleepy"]}])
    failed = {f.failure.type: f.failure.message for f in of(records, ExecutionFailed)}
    assert set(failed) == {"CustomToolError", "ToolArgumentError", "ToolTimeout"}
    errors = tool_results(requests[1]["messages"])
    assert len(errors) == 4 and all(e.startswith("Error: ") for e in errors)
    assert "wrong_two_num_tool is a deliberately broken example tool" in errors[0]
    assert "ValueError: cannot handle 7" in errors[1] and "my_tools.py:" in errors[1]
    assert "'seven' is not of type 'integer'" in errors[2]
    assert "did not finish within 3 s" in errors[3]
    assert of(records, RunCompleted) and not of(records, ExecutionCompleted)
