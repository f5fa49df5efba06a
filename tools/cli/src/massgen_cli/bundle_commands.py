"""``massgen export bundle RUN -o FILE`` and ``massgen import bundle FILE``: a run as one portable file
(format: :mod:`massgen_replay.bundle`; moving it: :mod:`massgen_replay.transfer`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from massgen_cli.console import err, fail, run
from massgen_cli.stack import open_stack
from massgen_replay import bundle as bundle_format
from massgen_replay.transfer import Imported, export_run, import_bundle


def export_bundle(
    run_id: Annotated[str, typer.Argument(help="Run id, as printed by submit or listed by `massgen runs`.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Bundle file to write; default RUN.tar.gz.")]
    = None,
) -> None:
    """Write a run to one file: its events (ids, timestamps and sources as recorded), the objects they
    reference and its config without secrets, with a manifest of counts and sha256 hashes."""
    path = output or Path(f"{run_id}.tar.gz")

    async def go() -> bundle_format.Bundle:
        async with open_stack(services=False, name="massgen-export") as stack:
            return await export_run(stack.nc, run_id)

    bundle = run(go())
    size = bundle_format.save(bundle, path)
    err.print(f"run {run_id} ({bundle.status}): {len(bundle.records)} events, {len(bundle.objects)} objects, "
              f"{size} bytes -> {path}", highlight=False)


def import_bundle_command(
    file: Annotated[Path, typer.Argument(help="A bundle written by `massgen export bundle`.")],
) -> None:
    """Load a bundle into this stack (MASSGEN_NATS_URL, a running `massgen up`, or the embedded stack)
    under its run id, after checking its hashes and schema version; then `massgen replay RUN` shows it.
    Refused, with nothing written, when the run id holds another run there or an orchestrator runs
    there; importing the same bundle again writes nothing."""
    try:
        bundle = bundle_format.load(file)
    except bundle_format.BundleError as exc:  # a bad file: nothing was written anywhere
        fail(str(exc), 1)

    async def go() -> Imported:
        async with open_stack(services=False, name="massgen-import") as stack:
            return await import_bundle(stack.nc, bundle)

    done = run(go())
    what = "already imported, nothing written" if done.written == 0 else f"{done.written} events written"
    err.print(f"run {done.run_id}: {done.events} events ({what}), {done.objects} objects; "
              f"`massgen replay {done.run_id}` shows it", highlight=False)
