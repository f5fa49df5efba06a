"""A scripted OpenAI-compatible model for compose end-to-end checks (massgen_es.testing.fake_openai),
served on 0.0.0.0:PORT so the stack's containers reach it on the compose network.

Model ``exec``: runs ``execute_command`` (whatever sandbox mode the config sets) with the command
in the agent's system message after ``RUN:``, answers with the JSON result it read, votes agent1,
presents ``FINAL <result>``. Model ``echo``: answers ``42 (<random tag>)``, votes agent1, presents ``FINAL 42``.
``echo-300ms``, ``echo-1s``, ``echo-3s``: the same, each reply after that fixed delay (the scaling
benchmark's provider latency; a turn long enough to kill its worker mid-call).

    docker run -d --name scripted-model --network massgen_default --network-alias scripted-model \\
      -v "$PWD/deploy/tests/scripted_model.py:/opt/scripted_model.py:ro" --entrypoint python \\
      massgen/agent-worker /opt/scripted_model.py --port 8000
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import secrets
import signal
import threading
from http.server import ThreadingHTTPServer

from massgen_es.testing import fake_openai
from massgen_es.testing.fake_openai import FakeOpenAI, Reply

EXEC = "mcp__command_line__execute_command"


DELAYS = {"echo": 0.0, "exec": 0.0, "echo-300ms": 0.3, "echo-1s": 1.0, "echo-3s": 3.0}


def handle(body: dict) -> Reply:
    return dataclasses.replace(script(body), delay_s=DELAYS.get(body.get("model", ""), 0.0))


def script(body: dict) -> Reply:
    tools = [t["function"]["name"] for t in body.get("tools", [])]
    msgs = body["messages"]
    results = [m["content"] for m in msgs if m["role"] == "tool"]
    if "vote" in tools:
        return Reply(tool_calls=(("vote", {"agent_id": "agent1", "reason": "scripted"}),))
    if "new_answer" not in tools:
        return Reply(text="FINAL " + (" | ".join(results) or "42"))
    if body.get("model") == "exec" and EXEC in tools and not results:
        system = next((m["content"] for m in msgs if m["role"] == "system"), "")
        command = re.search(r"RUN:(.*)", system)
        return Reply(tool_calls=((EXEC, {"command": command.group(1).strip() if command else "id"}),))
    # A random tag keeps concurrent agents' answers distinct: identical ones are rejected (spec §1.4).
    return Reply(tool_calls=(("new_answer", {"content": " | ".join(results) or f"42 ({secrets.token_hex(3)})"}),))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    fake = FakeOpenAI()

    class _Handler(fake_openai._RequestHandler):
        owner = fake

    fake._server = ThreadingHTTPServer(("0.0.0.0", args.port), _Handler)
    fake._server.daemon_threads = True
    for model in DELAYS:
        fake.default(model, handle)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=fake._server.serve_forever, args=(0.05,), daemon=True).start()
    print(f"scripted model on 0.0.0.0:{args.port}", flush=True)
    stop.wait()


if __name__ == "__main__":
    main()
