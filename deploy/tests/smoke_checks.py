"""Assertions of scripts/compose-smoke.sh on the CLI's JSON output (stdin).

    smoke_checks.py summary     # `massgen submit --json`: completed, with a final answer
    smoke_checks.py exec        # `massgen replay RUN --json`: a docker-mode execution by uid 1000
    smoke_checks.py status      # `massgen status --json`: every service has a heartbeat
"""

from __future__ import annotations

import json
import sys


def summary() -> None:
    s = json.load(sys.stdin)
    assert s["status"] == "completed" and s["final_answer"], s
    print(f"  run {s['run_id']}: {s['status']}, winner {s['winner']}, {s['usage']['llm_calls']} LLM calls")
    print(f"  final answer: {s['final_answer'][:160]!r}")


def exec_() -> None:
    events = [json.loads(line)["event"] for line in sys.stdin if line.strip()]
    done = [e for e in events if e["type"] == "execution.completed"]
    assert done, f"no execution.completed in {[e['type'] for e in events]}"
    d = done[0]
    assert d["mode"] == "docker" and d["exit_code"] == 0, d
    lines = d["stdout"].split()
    assert lines[:2] == ["hello-from-sandbox", "1000"], d["stdout"]
    assert any(e["type"] == "run.completed" for e in events)
    print(f"  execution.completed: mode {d['mode']}, sandbox {d['sandbox']}, stdout {d['stdout']!r}")


def status() -> None:
    s = json.load(sys.stdin)
    names = sorted({x["service"] for x in s["services"]})
    counts = ", ".join(f"{n} x{sum(1 for x in s['services'] if x['service'] == n)}" for n in names)
    print(f"  services with a heartbeat: {counts}")
    assert {"orchestrator", "agent_worker", "mcp_broker", "executor"} <= set(names), names


if __name__ == "__main__":
    {"summary": summary, "exec": exec_, "status": status}[sys.argv[1]]()
