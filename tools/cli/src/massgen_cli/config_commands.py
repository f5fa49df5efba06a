"""``massgen config``: write a config file (``init``, from questions or a template), list the
``templates``, check files (``validate``: every problem of every file at once) and ``show`` one
resolved, with its secrets masked; ``migrate`` a MassGen file into our keys (``massgen_cli.migrate_command``).

``massgen_es.config.load_config`` stays the one source of truth: ``init`` writes only what it loads,
and a file ``validate`` passes loads.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
import yaml

from massgen_cli.console import err, fail, out
from massgen_cli.migrate_command import migrate
from massgen_es import config_schema, scrub
from massgen_es.config import DEFAULT_CONFIG_YAML, Config, load_config, parse_config
from massgen_es.errors import ConfigError

config_app = typer.Typer(no_args_is_help=True,
                         help="Config files: write one (init), list the templates, validate files, show one "
                              "resolved, migrate a MassGen file.")

ROOT = Path(__file__).resolve().parents[4]
SCHEMA_PATH = ROOT / "schemas" / config_schema.SCHEMA_FILE_NAME
"""The generated JSON Schema in the repository (``make schema``)."""

TEMPLATES: dict[str, str] = {
    "local": "local-only team: the embedded default, three agents on the local model, no API key needed",
    "mixed": "mixed-provider team: OpenAI + Claude + Gemini, keys from OPENAI/ANTHROPIC/GEMINI_API_KEY",
    "research": "research with MCP: agents that fetch web pages and search the web (fetch and Brave Search servers)",
    "coding": "coding with Docker execution: a workspace per agent, commands in a container with no network",
}
"""Template name to its one-line description; ``local`` is ``DEFAULT_CONFIG_YAML``, the others are the
files under ``massgen_cli/templates``."""


def modeline() -> str:
    """The first line of a written config: it points a YAML language server at the schema."""
    return config_schema.modeline(str(SCHEMA_PATH))


def template_text(name: str) -> str:
    """The text of template ``name``, the schema modeline first.

    Raises:
        ConfigError: no template of that name.
    """
    if name not in TEMPLATES:
        raise ConfigError(f"no template {name!r}; choose one of: {', '.join(TEMPLATES)} (`massgen config templates`)")
    body = DEFAULT_CONFIG_YAML if name == "local" else \
        resources.files("massgen_cli").joinpath("templates", f"{name}.yaml").read_text(encoding="utf-8")
    return f"{modeline()}\n{body}"


@config_app.command("templates")
def templates() -> None:
    """List the templates `massgen config init --template NAME` writes, one line each."""
    for name, description in TEMPLATES.items():
        out.print(f"[bold]{name:<9}[/bold] {description}", highlight=False, soft_wrap=True)


@config_app.command("init")
def init(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="The file to write.")] = Path("massgen.yaml"),
    template: Annotated[str | None, typer.Option("--template", "-t", help="Write this template (`massgen config "
                                                 "templates`) without asking anything.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the file if it exists.")] = False,
) -> None:
    """Write a commented config file: from questions on the terminal (the team, each agent's backend and
    model, the environment variable holding each key, MCP servers, workspace, context paths, code
    execution), or from a template with --template NAME. Its first line points YAML editors at the schema."""
    if out_file.exists() and not force:
        fail(f"{out_file} exists; pass --force to overwrite it, or choose another --out", 1)
    if template is not None:
        try:
            text = template_text(template)
        except ConfigError as exc:
            fail(str(exc), 1)
    else:
        if not sys.stdin.isatty():
            fail("config init asks its questions on a terminal; without one use --template NAME "
                 "(`massgen config templates` lists them)", 1)
        from massgen_cli import config_init

        try:
            text = config_init.render(config_init.ask(), modeline())
        except ConfigError as exc:
            fail(str(exc), 1)
        except KeyboardInterrupt:
            err.print("interrupted: nothing written")
            raise typer.Exit(4) from None
    try:  # what is written must load: load_config is the one source of truth
        parse_config(yaml.safe_load(text), str(out_file))
    except ConfigError as exc:
        fail(f"the config would not load ({exc}); nothing written", 1)
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out_file}: {exc.strerror}; pick a writable path", 1)
    err.print(f"wrote {out_file}; `massgen config show {out_file}` prints it resolved, "
              f"`massgen submit --config {out_file} \"...\"` runs it")


def _files(paths: list[Path]) -> list[Path]:
    """The files named, a directory standing for its ``*.yaml`` and ``*.yml`` files."""
    found: list[Path] = []
    for p in paths:
        found += sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p]
    return found


def file_problems(path: Path) -> list[str]:
    """Every problem of one config file, each naming the file and the key path."""
    if not path.is_file():
        return [f"{path}: not found"]
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return [f"{path}: not valid YAML: {exc}"]
    return [str(p) for p in config_schema.problems(data, str(path))]


@config_app.command("validate")
def validate(
    files: Annotated[list[Path], typer.Argument(help="Config files, or directories of them (*.yaml, *.yml).")],
) -> None:
    """Check config files and report every problem of every file (its file and key path); exit 1 if
    any file has one, 0 otherwise. Structure (unknown keys, types, values) is checked against the JSON
    Schema, then the semantic checks of loading run (paths that must exist, ${ENV} key references, MCP
    server rules...)."""
    names = _files(files)
    if not names:
        fail("no config files there (a directory stands for its *.yaml and *.yml files)", 1)
    bad = 0
    for path in names:
        found = file_problems(path)
        if found:
            bad += 1
            for line in found:
                out.print(f"[red]✗[/red] {line}", highlight=False, soft_wrap=True)
        else:
            out.print(f"[green]✓[/green] {path}", highlight=False, soft_wrap=True)
    if bad:
        err.print(f"{bad} of {len(names)} file(s) have problems", soft_wrap=True)
        raise typer.Exit(1)


def masked(cfg: Config) -> dict[str, Any]:
    """``cfg`` as plain data for display: ``agent:`` turned into ``agents:``, every default filled in,
    and any MCP ``env``/``headers`` value, Docker sandbox variable (``resolved_docker_env``) or ``api_key``
    that is not a ``${...}`` reference replaced by the scrub marker."""
    data = msgspec.to_builtins(cfg)
    data.pop("agent", None)
    for agent in data["agents"]:
        backend = agent["backend"]
        if backend.get("api_key") is not None and not _is_ref(backend["api_key"]):
            backend["api_key"] = scrub.MARKER
        env = backend.get("resolved_docker_env") or {}
        backend["resolved_docker_env"] = {k: v if _is_ref(v) else scrub.MARKER for k, v in env.items()}
        for server in backend["mcp_servers"]:
            for key in ("env", "headers"):
                server[key] = {k: v if _is_ref(v) else scrub.MARKER for k, v in server[key].items()}
    return data


def _is_ref(value: str) -> bool:
    return value.startswith("${") and value.endswith("}") and "}" not in value[2:-1]


@config_app.command("show")
def show(file: Annotated[Path, typer.Argument(help="A config file.")]) -> None:
    """Print the resolved config as YAML: defaults filled in, `agent:` as `agents:`, secrets masked."""
    try:
        cfg = load_config(file)
    except ConfigError as exc:
        fail(str(exc), 1)
    text = yaml.safe_dump(masked(cfg), sort_keys=False, allow_unicode=True, width=120)
    scrub.remember_environment()
    sys.stdout.write(scrub.text(text))


config_app.command("migrate")(migrate)
