"""Check deploy/nats/nats.conf with the real clients (run with the project's .venv python).

Host mode (default): starts ``nats-server -c deploy/nats/nats.conf`` on free loopback ports with random
passwords, the four services as ``massgen serve …`` processes (one NATS user each), and a scripted
OpenAI-compatible model (``massgen_es.testing.fake_openai``) that makes the agent call an MCP tool whose
server gets a secret env value (MASSGEN_SECRETS bucket) and run ``execute_command`` (executor, Object
Store), answer, vote and present. Then ``massgen submit/status/runs/replay`` as the ``cli`` user. The
server log must show no permissions violation during that run. Then the negative checks.

Stack mode (``--url nats://127.0.0.1:4222`` with the passwords in NATS_*_PASSWORD, e.g. from
deploy/.env): only the negative checks and ``massgen status`` against a running stack.

Negative checks: an anonymous connection and a wrong password are refused; the worker cannot append
to ``massgen.run.<run>.orchestrator`` nor push turns, nor delete streams or read the secrets bucket; the CLI
cannot decide, push work, or update/delete the event stream; the broker cannot append agent events.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
import yaml

from massgen_es.subjects import inbox_prefix

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "nats" / "nats.conf"
BIN = Path(sys.executable).parent
USERS = {
    "orchestrator": "NATS_ORCHESTRATOR_PASSWORD",
    "agent_worker": "NATS_AGENT_WORKER_PASSWORD",
    "mcp_broker": "NATS_MCP_BROKER_PASSWORD",
    "executor": "NATS_EXECUTOR_PASSWORD",
    "cli": "NATS_CLI_PASSWORD",
}
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        failures.append(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def url_for(base: str, user: str, passwords: dict[str, str]) -> str:
    return base.replace("nats://", f"nats://{user}:{passwords[user]}@", 1)


# ------------------------------------------------------------------ negative checks


async def _connect(url: str, errors: list[str] | None = None):
    async def on_error(exc: Exception) -> None:
        if errors is not None:
            errors.append(str(exc))

    return await nats.connect(url, connect_timeout=3, max_reconnect_attempts=0, allow_reconnect=False,
                              error_cb=on_error, inbox_prefix=inbox_prefix(url))


async def refused(url: str) -> str | None:
    """The error text if the connection is refused, None if it is accepted."""
    try:
        nc = await asyncio.wait_for(_connect(url), 8)
    except Exception as exc:  # noqa: BLE001 - nats-py raises several types for an auth failure
        return f"{exc.__class__.__name__}: {exc}".strip()
    await nc.close()
    return None


async def _denied(url: str, attempt) -> bool:
    """True when the server answers ``attempt(nc)`` with a permissions violation (reported
    asynchronously, hence the short wait after the flush)."""
    errors: list[str] = []
    nc = await _connect(url, errors)
    try:
        await attempt(nc)
        await nc.flush(2)
        for _ in range(20):
            if errors:
                break
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
    return any("permissions violation" in e.lower() for e in errors)


async def denied_publish(url: str, subject: str, data: bytes = b"{}") -> bool:
    """True when a core publish on ``subject`` is refused."""
    return await _denied(url, lambda nc: nc.publish(subject, data))


async def denied_subscribe(url: str, subject: str) -> bool:
    """True when a subscription to ``subject`` is refused."""
    return await _denied(url, lambda nc: nc.subscribe(subject))


async def stored_count(url: str, subject: str) -> int:
    nc = await _connect(url)
    try:
        info = await nc.jetstream().stream_info("MASSGEN_EVENTS", subjects_filter=subject)
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def negative_checks(base: str, passwords: dict[str, str]) -> None:
    print("negative checks", flush=True)
    host = base.split("://", 1)[1]
    why = await refused(f"nats://{host}")
    check(why is not None, f"anonymous connection refused ({why})")
    why = await refused(f"nats://cli:wrong-password@{host}")
    check(why is not None, f"wrong password refused ({why})")
    worker = url_for(base, "agent_worker", passwords)
    cli = url_for(base, "cli", passwords)
    broker = url_for(base, "mcp_broker", passwords)
    orch = url_for(base, "orchestrator", passwords)

    run = f"permcheck-{secrets.token_hex(4)}"
    check(await denied_publish(worker, f"massgen.run.{run}.orchestrator"),
          "agent_worker cannot publish massgen.run.<run>.orchestrator")
    check(await stored_count(cli, f"massgen.run.{run}.orchestrator") == 0, "  ... and nothing was stored there")
    check(await denied_publish(worker, f"massgen.run.{run}.timer"),
          "agent_worker cannot publish massgen.run.<run>.timer")
    check(await denied_publish(worker, f"massgen.turns.{run}"), "agent_worker cannot push turns")
    check(await denied_publish(worker, "$JS.API.STREAM.DELETE.MASSGEN_EVENTS"),
          "agent_worker cannot delete the event stream")
    check(await denied_publish(worker, "$JS.API.STREAM.UPDATE.MASSGEN_EVENTS"),
          "agent_worker cannot update the event stream")
    check(await denied_publish(worker, "$JS.API.DIRECT.GET.KV_MASSGEN_SECRETS.$KV.MASSGEN_SECRETS.x"),
          "agent_worker cannot read the secrets bucket (direct get)")
    check(await denied_publish(worker, "$JS.API.STREAM.MSG.GET.KV_MASSGEN_SECRETS"),
          "agent_worker cannot read the secrets bucket (message get)")
    check(await denied_publish(worker, "$JS.API.CONSUMER.MSG.NEXT.MASSGEN_TOOLS.mcp_broker"),
          "agent_worker cannot pull the broker's work queue")
    check(await denied_subscribe(worker, "_INBOX.>"), "agent_worker cannot subscribe to the shared inbox prefix")
    check(await denied_subscribe(worker, "_INBOX_mcp_broker.>"),
          "agent_worker cannot listen to the broker's replies (its secret reads)")
    check(await denied_subscribe(cli, "_INBOX_orchestrator.>"), "cli cannot listen to the orchestrator's replies")
    check(await denied_subscribe(cli, "massgen.run.>"), "cli cannot subscribe to event subjects outside JetStream")
    check(not await denied_subscribe(cli, "_INBOX_cli.x"), "cli may subscribe to its own inboxes")
    check(await denied_publish(cli, f"massgen.run.{run}.orchestrator"),
          "cli cannot publish massgen.run.<run>.orchestrator (decide)")
    check(await denied_publish(cli, f"massgen.turns.{run}"), "cli cannot push turns")
    check(await denied_publish(cli, f"massgen.exec.{run}"), "cli cannot push executions")
    check(await denied_publish(cli, f"massgen.tools.{run}"), "cli cannot push tool calls (mcp call asks a broker)")
    check(await denied_subscribe(cli, "massgen.mcp.*"), "cli cannot answer MCP broker requests")
    check(await denied_publish(cli, "$JS.API.STREAM.UPDATE.MASSGEN_EVENTS"), "cli cannot update the event stream")
    check(await denied_publish(cli, "$JS.API.STREAM.PURGE.MASSGEN_EVENTS"), "cli cannot purge the event stream")
    check(await denied_publish(cli, "$JS.API.CONSUMER.MSG.NEXT.MASSGEN_TURNS.agent_worker"), "cli cannot pull turns")
    check(await denied_publish(broker, f"massgen.run.{run}.agent_worker"),
          "mcp_broker cannot publish massgen.run.<run>.agent_worker")
    check(await denied_publish(orch, f"massgen.run.{run}.cli"), "orchestrator cannot publish massgen.run.<run>.cli")
    check(await denied_publish(orch, "$JS.API.STREAM.DELETE.MASSGEN_EVENTS"),
          "orchestrator cannot delete the event stream")
    check(not await denied_publish(cli, f"massgen.run.{run}.cli", b"not an event"),
          "cli may publish massgen.run.<run>.cli (control)")


# ------------------------------------------------------------------ host mode


async def long_follow(url: str, n: int = 4000) -> int:
    """Append n 8 KiB messages as the CLI, then follow them with the event log's ordered consumer:
    enough pending bytes for the server to send flow-control requests, which the client answers on
    ``$JS.FC.MASSGEN_EVENTS.…``."""
    from massgen_es.bus.jetstream import JetStreamEventLog

    run = f"fc-{secrets.token_hex(4)}"
    nc = await _connect(url)
    try:
        js = nc.jetstream()
        body = b"x" * 8192
        acks = [js.publish(f"massgen.run.{run}.cli", body) for _ in range(n)]
        for i in range(0, n, 500):
            await asyncio.gather(*acks[i:i + 500])
        seen = 0
        async for _ in JetStreamEventLog(nc).follow(run):
            seen += 1
            if seen == n:
                break
        return seen
    finally:
        await nc.close()


def scripted_model(body: dict):
    from massgen_es.testing.fake_openai import Reply

    tools = [t["function"]["name"] for t in body.get("tools", [])]
    msgs = body["messages"]
    called = [c["function"]["name"] for m in msgs if m["role"] == "assistant" for c in m.get("tool_calls") or ()]
    if "vote" in tools:
        return Reply(tool_calls=(("vote", {"agent_id": "agent1", "reason": "only answer"}),))
    if "new_answer" not in tools:
        return Reply(text="FINAL: checked")
    if "mcp__t__env" not in called:
        return Reply(tool_calls=(("mcp__t__env", {"name": "PROBE"}),))
    if "mcp__command_line__execute_command" not in called:
        command = {"command": "echo hello > note.txt && cat note.txt"}
        return Reply(tool_calls=(("mcp__command_line__execute_command", command),))
    results = [m["content"] for m in msgs if m["role"] == "tool"]
    return Reply(tool_calls=(("new_answer", {"content": "RESULTS " + " | ".join(results)}),))


def used_subjects(log_text: str) -> dict[str, set[str]]:
    """Per user, the subjects published (from a -V trace), with run ids, inboxes and ids generalized."""
    out: dict[str, set[str]] = {}
    for m in re.finditer(r'"\$G/user:([^"]+)" - <<- \[(?:H?PUB) (\S+)', log_text):
        user, subject = m.groups()
        subject = re.sub(r"^(massgen\.(?:run|turns|tools|exec))\.[^.]+", r"\1.<run>", subject)
        subject = re.sub(r"^(\$JS\.ACK\.[^.]+\.[^.]+)\..*", r"\1.>", subject)
        subject = re.sub(r"^(\$JS\.FC\.[^.]+)\..*", r"\1.>", subject)
        subject = re.sub(r"^(\$KV\.[^.]+)\..*", r"\1.<key>", subject)
        subject = re.sub(r"^(\$O\.[^.]+\.[CM])\..*", r"\1.<id>", subject)
        subject = re.sub(r"^(\$JS\.API\.CONSUMER\.(?:CREATE|DELETE|INFO)\.[^.]+)\.[A-Za-z0-9]{16,}(\..*)?$",
                         r"\1.<eph>\2", subject)
        subject = re.sub(r"^(\$JS\.API\.DIRECT\.GET\.KV_[^.]+)\..*", r"\1.>", subject)
        out.setdefault(user, set()).add(subject)
    return out


def host_mode(keep: bool, trace: bool = False) -> None:
    from massgen_es.testing.fake_openai import FakeOpenAI

    tmp = Path(tempfile.mkdtemp(prefix="massgen-natsperm-"))
    passwords = {u: secrets.token_hex(16) for u in USERS}
    env = {**os.environ, **{USERS[u]: p for u, p in passwords.items()}}
    port, http = free_port(), free_port()
    log = tmp / "nats.log"
    # The very config of the stack, with the JetStream store in the temporary directory (the server
    # refuses -sd next to store_dir); ports and interface come from the command line.
    conf = tmp / "nats.conf"
    conf.write_text(re.sub(r'store_dir: "[^"]*"', f'store_dir: "{tmp / "js"}"', CONF.read_text()))
    server = subprocess.Popen(
        [str(BIN / "nats-server"), "-c", str(conf), "-a", "127.0.0.1", "-p", str(port), "-m", str(http),
         "-l", str(log), *(["-V"] if trace else [])], env=env)
    procs: list[subprocess.Popen] = []
    base = f"nats://127.0.0.1:{port}"
    try:
        for _ in range(100):
            if log.exists() and "Server is ready" in log.read_text():
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"nats-server did not start; see {log}")
        fake = FakeOpenAI().start()
        fake.default("m-perm", scripted_model)
        home = tmp / "home"
        home.mkdir()
        for svc in ("orchestrator", "agent_worker", "mcp_broker", "executor"):
            senv = {**os.environ, "FAKE_KEY": "x", "MASSGEN_NATS_URL": url_for(base, svc, passwords),
                    "MASSGEN_HOME": str(home)}
            with open(tmp / f"{svc}.log", "w") as out:  # the child keeps its own descriptor
                procs.append(subprocess.Popen([str(BIN / "massgen"), "serve", svc], env=senv, stdout=out,
                                              stderr=subprocess.STDOUT))
        cfg = {
            "agents": [{"id": "agent-a", "backend": {
                "type": "chatcompletion", "model": "m-perm", "base_url": fake.base_url, "api_key_env": "FAKE_KEY",
                "cwd": "ws", "enable_mcp_command_line": True, "upload_files": [{"image_path": str(tmp / "dot.png")}],
                "mcp_servers": [{"name": "t", "type": "stdio", "command": sys.executable,
                                 "args": [str(ROOT / "tests" / "mcp_servers" / "tool_server.py")],
                                 "env": {"PROBE": "probe-secret-value"}}],
            }}],
            "timeout_settings": {"orchestrator_timeout_seconds": 90, "presentation_timeout_seconds": 30},
        }
        (tmp / "dot.png").write_bytes(fake.image_png)  # the CLI stores it, the worker attaches it
        (tmp / "cfg.yaml").write_text(yaml.safe_dump(cfg))
        cenv = {**os.environ, "MASSGEN_NATS_URL": url_for(base, "cli", passwords),
                "MASSGEN_HOME": str(tmp / "cli-home"), "FAKE_KEY": "x"}
        time.sleep(2)
        print("positive run (every service as its own user)", flush=True)
        t0 = time.time()
        sub = subprocess.run(
            [str(BIN / "massgen"), "submit", "permissions check", "--config", str(tmp / "cfg.yaml"), "--json"],
            env=cenv, check=False, capture_output=True, text=True, timeout=180)
        summary = json.loads(sub.stdout) if sub.stdout.strip().startswith("{") else {}
        check(sub.returncode == 0 and summary.get("status") == "completed",
              f"massgen submit completed in {time.time() - t0:.1f}s (rc {sub.returncode}, {sub.stderr.strip()[-300:]})")
        run_id = summary.get("run_id", "")
        uri = "data:image/png;base64," + base64.b64encode(fake.image_png).decode()
        check(any(uri in json.dumps(b["messages"]) for b in fake.requests("m-perm")),
              "the uploaded image reached the model (cli wrote it to the Object Store, agent_worker read it)")
        rep = subprocess.run([str(BIN / "massgen"), "replay", run_id, "--json"], env=cenv, check=False,
                             capture_output=True, text=True, timeout=60)
        types = [json.loads(line).get("event", {}).get("type") for line in rep.stdout.splitlines() if line.strip()]
        check(rep.returncode == 0, f"massgen replay --json ({len(types)} events)")
        for t in ("tools.listed", "tool.call_completed", "execution.completed", "run.completed"):
            check(t in types, f"  the run has {t}")
        st = subprocess.run([str(BIN / "massgen"), "status", "--json"], env=cenv, check=False,
                            capture_output=True, text=True, timeout=60)
        status = json.loads(st.stdout) if st.returncode == 0 else {}
        names = sorted({s["service"] for s in status.get("services", [])})
        check(st.returncode == 0 and len(names) >= 4, f"massgen status sees {names} ({st.stderr.strip()[-200:]})")
        rs = subprocess.run([str(BIN / "massgen"), "runs", "--json"], env=cenv, check=False,
                            capture_output=True, text=True, timeout=60)
        check(rs.returncode == 0 and run_id in rs.stdout, "massgen runs lists the run")
        ml = subprocess.run([str(BIN / "massgen"), "mcp", "list", "--config", str(tmp / "cfg.yaml"), "--json"],
                            env=cenv, check=False, capture_output=True, text=True, timeout=120)
        check(ml.returncode == 0 and '"echo"' in ml.stdout, f"massgen mcp list as cli ({ml.stderr.strip()[-300:]})")
        mc = subprocess.run([str(BIN / "massgen"), "mcp", "call", "t", "echo", "--args", '{"text": "perm"}',
                             "--config", str(tmp / "cfg.yaml"), "--json"],
                            env=cenv, check=False, capture_output=True, text=True, timeout=120)
        check(mc.returncode == 0 and "echo: perm" in mc.stdout, f"massgen mcp call as cli ({mc.stderr.strip()[-300:]})")
        violations = [line for line in log.read_text().splitlines() if "violation" in line.lower()]
        check(not violations, f"no permissions violation in the server log during the run {violations[:5]}")
        n = asyncio.run(long_follow(url_for(base, "cli", passwords)))
        violations = [line for line in log.read_text().splitlines() if "violation" in line.lower()]
        check(not violations, f"a long follow ({n} events, flow control) as cli: no violation {violations[:3]}")
        for svc in ("orchestrator", "agent_worker", "mcp_broker", "executor"):
            text = (tmp / f"{svc}.log").read_text()
            bad = [line for line in text.splitlines() if '"level": "error"' in line or "Traceback" in line
                   or "violation" in line.lower()]
            check(not bad, f"{svc} logged no error {bad[:3]}")
        if trace:
            for user, subs in sorted(used_subjects(log.read_text()).items()):
                print(f"published by {user}:")
                for sub in sorted(subs):
                    print(f"    {sub}")
        asyncio.run(negative_checks(base, passwords))
        fake.stop()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        server.terminate()
        server.wait(10)
        if keep or failures:
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--url", help="check a running stack (e.g. nats://127.0.0.1:4222); passwords from NATS_*_PASSWORD")
    ap.add_argument("--env-file", help="read NATS_*_PASSWORD from this file (e.g. deploy/.env)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory and logs")
    ap.add_argument("--trace", action="store_true",
                    help="host mode: trace the server and list the subjects each user published")
    args = ap.parse_args()
    if args.env_file:
        for line in Path(args.env_file).read_text().splitlines():
            m = re.match(r"^\s*([A-Z0-9_]+)=(.*)$", line)
            if m:
                os.environ.setdefault(m.group(1), m.group(2).strip().strip("'\""))
    if args.url:
        passwords = {u: os.environ[v] for u, v in USERS.items()}
        asyncio.run(negative_checks(args.url, passwords))
    else:
        host_mode(args.keep, args.trace)
    print("FAILED: " + "; ".join(failures) if failures else "all NATS permission checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
