"""``massgen config migrate FILE``: a MassGen config rewritten into our keys (``massgen_es.compat``),
its comments kept (``ruamel.yaml`` round trip)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any

import typer

from massgen_cli.console import err, fail, out


def migrate_text(text: str) -> tuple[str, list[str]]:
    """``text`` (a MassGen YAML config) with MassGen's keys rewritten as loading reads them, and the
    notes of :func:`massgen_es.compat.migrate` (what was dropped or changed, what stays refused).

    Raises:
        ValueError: ``text`` is not YAML, or its top level is not a mapping.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from massgen_es import compat

    yaml = YAML()  # round trip: comments and key order stay
    yaml.preserve_quotes = True
    yaml.width = 4096
    try:
        data: Any = yaml.load(text)
    except YAMLError as exc:
        raise ValueError(f"not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("the top level must be a mapping with an `agents:` list")
    migrated, notes = compat.migrate(data)  # pyright: ignore[reportUnknownArgumentType]
    buf = io.StringIO()
    yaml.dump(migrated, buf)
    return buf.getvalue(), notes


def migrate(
    file: Annotated[Path, typer.Argument(help="A MassGen YAML config.", exists=True, dir_okay=False)],
    write: Annotated[bool, typer.Option("--write", help="Rewrite FILE in place instead of printing.")] = False,
) -> None:
    """Rewrite MassGen's keys into ours (renamed keys, API parameters into ``extra_body``, appended
    system prompts; keys MassGen ignores are dropped), keeping comments. The notes on stderr say what
    was dropped and what this system still refuses. Exits 1 when something stays refused."""
    try:
        text, notes = migrate_text(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        fail(f"{file}: {exc}", 1)
    if write:
        file.write_text(text)
    else:
        out.print(text, end="", markup=False, highlight=False, soft_wrap=True)
    for note in notes:
        err.print(f"{file}: {note}", markup=False, highlight=False, soft_wrap=True)
    if any(n.startswith("still refused here") for n in notes):
        raise typer.Exit(1)


__all__ = ["migrate", "migrate_text"]
