"""What a model or a user wrote is shown as written, never read as rich markup (``massgen_replay.render``)."""

from __future__ import annotations

from rich.console import Console

from massgen_replay import render
from massgen_replay.views import RunView

LATEX = r"So, \[2.5 \times 60 = 150\] minutes. [bold]not bold[/bold] [/]"


def _shown(renderable) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_the_final_answer_keeps_brackets_and_backslashes() -> None:
    view = RunView("r1", question="How many minutes are in [2.5] hours?", final_answer=LATEX, status="completed")
    assert LATEX in _shown(render.final(view))
    assert "How many minutes are in [2.5] hours?" in _shown(render.live(view))


def test_the_replay_report_keeps_the_question_and_answer_as_written() -> None:
    view = RunView("r1", question="what is [/] ?", final_answer=LATEX, status="completed")
    console = Console(width=200, record=True, color_system=None)
    render.report(view, console)
    text = console.export_text()
    assert "question: what is [/] ?" in text and LATEX in text
