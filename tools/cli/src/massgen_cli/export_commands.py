"""``massgen export`` and ``massgen import``: a run out of the stack (to an observability backend, to a
portable file) and back in.

Each exporter lives in its own module and adds its command here; this module only names the groups.
"""

from __future__ import annotations

import typer

export_app = typer.Typer(no_args_is_help=True, help="Send a run out of the stack: as OpenTelemetry traces or a bundle.")
import_app = typer.Typer(no_args_is_help=True, help="Bring a run into the stack: from a bundle.")

from massgen_cli import bundle_commands  # noqa: E402 - each exporter registers after the groups exist
from massgen_cli.otel_commands import otel  # noqa: E402

export_app.command("otel")(otel)
export_app.command("bundle")(bundle_commands.export_bundle)
import_app.command("bundle")(bundle_commands.import_bundle_command)
