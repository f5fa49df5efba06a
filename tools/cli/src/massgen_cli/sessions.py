"""Multi-turn sessions (issue 15 item 5; MassGen spec §1.13): ``massgen chat``, ``submit --session``,
``runs --session`` and ``replay --session``.

A session is a property of its runs: each turn is a run whose ``run.submitted`` carries the session id,
the earlier turns that ended with an answer (question and final answer, which the agents see as the
conversation history) and the run whose winner's workspace the turn starts from (see
``massgen_es.workspaces``). Nothing else records a session, so a session is listed and replayed from
the log alone, and a turn replays like any run. As in MassGen, no coordination state spans turns: every
turn is a new run with freshly started agents.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.prompt import Prompt
from rich.text import Text

from massgen_cli.console import err, fail, out
from massgen_es import config as config_mod
from massgen_es import tool_safety
from massgen_es.bus import EventLog
from massgen_es.errors import ConfigError, MassgenError
from massgen_es.events import PreviousTurn, RunSubmitted
from massgen_es.ops import home
from massgen_replay import read, render, views

_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ANSWERED = ("completed", "timed_out")
"""Statuses of a turn whose final answer the next turns carry (a timed-out run still presented one)."""

HELP = """commands:
  /quit, /exit, /q   leave the chat (so does end of input, Ctrl-D)
  /reset, /clear     start a new session: the next question has no history
  /status            the session id and its turns in this chat
  /config            the config in use
  /help              this text
anything else is the next question of the session; Ctrl-C during a turn cancels that turn."""


def new_session_id() -> str:
    """A fresh session id, ``s-YYYYmmdd-HHMMSS-xxxxxx`` (sortable, like run ids)."""
    return f"s-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def check_session_id(session_id: str) -> str:
    """``session_id`` if it is a usable id, else:

    Raises:
        ConfigError: it is empty, longer than 64 characters or has characters other than letters,
            digits, ``_``, ``.`` and ``-``.
    """
    if not _SESSION_ID.fullmatch(session_id):
        raise ConfigError(f"session id {session_id!r} is not usable: use 1-64 letters, digits, '_', '.' or '-', "
                          "starting with a letter or digit (or leave --session out of `massgen chat` for a new one)")
    return session_id


async def session_runs(log: EventLog, session_id: str) -> list[views.RunView]:
    """The runs of ``session_id``, oldest first; empty for a session with no turn yet. A fork of a turn
    (``massgen fork``) copies its session id but is an alternative, not a turn: left out."""
    return [v for v in await read.all_runs(log) if v.session_id == session_id and v.forked_from is None]


def next_turn(submitted: RunSubmitted, session_id: str, turns: list[views.RunView]) -> RunSubmitted:
    """``submitted`` as the next turn of ``session_id`` after ``turns`` (its runs, oldest first): the
    turns that ended with an answer become its history (MassGen's ``conversation_history`` holds the user
    messages and final answers, spec §1.13), and the latest of them with a winner gives the workspace."""
    previous = tuple(PreviousTurn(run_id=v.run_id, question=v.question, answer=v.final_answer or "", winner=v.winner)
                     for v in turns if v.status in ANSWERED and v.final_answer)
    carried = next((t.run_id for t in reversed(previous) if t.winner is not None), None)
    return msgspec.structs.replace(submitted, session_id=session_id, previous_turns=previous, workspace_from=carried)


async def continued(log: EventLog, submitted: RunSubmitted, session_id: str) -> RunSubmitted:
    """:func:`next_turn` after the session's runs in ``log`` (a new session when it has none)."""
    return next_turn(submitted, session_id, await session_runs(log, session_id))


def unknown_session(session_id: str) -> str:
    """The error for a session with no runs, naming the fix."""
    return (f"no runs in session {session_id!r}; `massgen runs` lists the runs with their sessions, and "
            f"`massgen submit --session {session_id} \"…\"` (or `massgen chat --session {session_id}`) starts it")


def show_session(session_id: str, turns: list[views.RunView], as_json: bool) -> None:
    """``massgen replay --session``: each turn's run in order with its question, status, winner and final
    answer (``--json``: one summary object per turn, with its question and turn number)."""
    for n, v in enumerate(turns, 1):
        if as_json:
            print(json.dumps({"turn": n, "question": v.question} | v.summary(), ensure_ascii=False))
            continue
        who = f"{v.agents[v.winner].anon_id} ({v.winner})" if v.winner in v.agents else "-"
        out.print(Text.assemble((f"turn {n}", "bold"), f" · run {v.run_id} · {v.status} · winner {who}"))
        out.print(Text.assemble(("  question: ", "dim"), v.question))
        out.print(Text.assemble(("  answer:   ", "dim"), v.final_answer or v.failure or "(no final answer)"))
    if not as_json:
        err.print(f"session {session_id}: {len(turns)} turn(s); `massgen replay RUN_ID` shows one in full")


def chat(
    config: Annotated[str | None, typer.Option("--config", "-c", help="MassGen-shaped YAML config.")] = None,
    session: Annotated[str | None, typer.Option("--session", help="Continue this session (default: a new one).")]
    = None,
) -> None:
    """Interactive multi-turn chat (MassGen's interactive mode, spec §1.13): each line is the next turn of
    the session, a run with the live view whose agents see the earlier questions and answers and start
    from the previous winner's workspace. Slash commands: /quit /exit /q, /reset /clear, /status,
    /config, /help. Ctrl-C during a turn cancels that turn and returns to the prompt; end of input quits.
    Works on a pipe as on a terminal."""
    from massgen_cli.app import submit_run  # the submit command's own submission and follow

    try:
        cfg = config_mod.load_config(config)
        session_id = check_session_id(session) if session is not None else new_session_id()
    except ConfigError as exc:
        fail(str(exc), 1)
    secrets = config_mod.secrets(cfg)
    done: list[views.RunView] = []
    err.print(f"session [bold]{session_id}[/bold] ({len(cfg.team)} agents); /help for commands, /quit to leave")
    while True:
        try:
            line = Prompt.ask("[bold]>[/bold]", console=err).strip()
        except (EOFError, KeyboardInterrupt):
            err.print()
            break
        if not line:
            continue
        if line.startswith("/"):
            command = line.split()[0].lower()
            if command in ("/quit", "/exit", "/q"):
                break
            if command in ("/reset", "/clear"):
                session_id, done = new_session_id(), []
                err.print(f"new session [bold]{session_id}[/bold]: the next question starts without history")
            elif command == "/status":
                _status(session_id, done)
            elif command == "/config":
                err.print(f"config: {config or 'the default team'} ({', '.join(a.id for a in cfg.team)})")
            elif command == "/help":
                err.print(HELP, highlight=False)
            else:
                err.print(f"unknown command {command}; /help lists them", highlight=False)
            continue
        try:
            submitted = config_mod.run_submitted(line, cfg, config,
                                                 overrides=tool_safety.override_rules(home(), Path.cwd()))
            view = asyncio.run(submit_run(submitted, False, secrets, session=session_id))
        except KeyboardInterrupt:  # the turn's run was cancelled and recorded (follow_or_cancel)
            err.print("turn cancelled; ask again, or /quit")
            continue
        except MassgenError as exc:  # ConfigError included: the chat goes on with the next line
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            continue
        done.append(view)
        out.print(render.final(view))
        if view.status == "failed":
            err.print(Text.assemble(("turn failed:", "red"), f" {view.failure}"))
    err.print(f"session {session_id}: continue it with `massgen chat --session {session_id}`; "
              f"`massgen replay --session {session_id}` shows it")


def _status(session_id: str, done: list[views.RunView]) -> None:
    err.print(f"session {session_id}: {len(done)} turn(s) in this chat", highlight=False)
    for n, v in enumerate(done, 1):
        err.print(f"  {n}. run {v.run_id} · {v.status} · winner {v.winner or '-'} · {v.question[:60]}",
                  highlight=False)


__all__ = ["ANSWERED", "chat", "check_session_id", "continued", "new_session_id", "next_turn",
           "session_runs", "show_session", "unknown_session"]
