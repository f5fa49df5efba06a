"""MassGen's framework-interop lesson planners (``massgen_agent_worker.interop``): each framework, for
real, drives its four roles through its own OpenAI client against the wire-level fake, each role reading
the previous one's output."""

from __future__ import annotations

import pytest

from massgen_agent_worker import interop
from massgen_es.testing.fake_openai import FakeOpenAI, Reply

MARKS = {"curriculum": "STANDARDS-OK", "planner": "PLAN-OK", "reviewer": "REVIEW-OK",
         "formatter": "<title>Fractions</title>"}


def _role(body: dict) -> str:
    system = " ".join(str(m.get("content")) for m in body["messages"] if m.get("role") == "system")
    return next(name for name, text, _ in interop.ROLES if text[:40] in system)


def _text(message: dict) -> str:
    content = message.get("content")
    return " ".join(p.get("text", "") for p in content) if isinstance(content, list) else str(content)


def play(body: dict) -> Reply:
    return Reply(text=f"{MARKS[_role(body)]} for: {_text(body['messages'][-1])[-60:]}")


@pytest.mark.parametrize("name", sorted(interop.PLANNERS))
async def test_each_planner_runs_its_four_roles_in_order_through_its_framework(name, fake: FakeOpenAI):
    model = f"planner-{name}"
    fake.default(model, play)
    out = await interop.PLANNERS[name]("a lesson on fractions", base_url=fake.base_url, api_key="k", model=model)
    bodies = fake.requests(model)
    roles = [_role(b) for b in bodies]
    assert [r for r in roles if r in ("curriculum", "formatter")] == ["curriculum", "formatter"]
    assert roles[0] == "curriculum" and roles[-1] == "formatter" and "planner" in roles and "reviewer" in roles
    assert "a lesson on fractions" in _text(bodies[0]["messages"][-1])
    formatter_input = " ".join(_text(m) for m in bodies[-1]["messages"] if m.get("role") != "system")
    assert "REVIEW-OK" in formatter_input  # it formats the reviewed plan
    assert "Lesson Planner Result:" in out and "<title>Fractions</title>" in out


async def test_a_planner_without_a_key_says_so(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = await interop.openai_assistant_lesson_planner("fractions", base_url="http://127.0.0.1:9/v1")
    assert out == "Error: OPENAI_API_KEY is not set (the lesson planners call an OpenAI model)"
