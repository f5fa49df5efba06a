"""The config file's JSON Schema, generated from :class:`massgen_es.config.Config`, and a validation
that reports every problem of a file at once (``massgen config validate``).

The schema is ``msgspec.json.schema(Config)`` made useful to editors: every struct and field gets the
docstring written under it in the code as its ``description``, and ``mcp_servers`` also accepts
MassGen's mapping form (keyed by server name), as :func:`massgen_es.config.parse_config` does.
``python -m massgen_es.config_schema > schemas/config.schema.json`` (``make schema``) writes it; a test
fails when the committed file is stale. Point a YAML language server at it with a first line
``# yaml-language-server: $schema=<path or URL of schemas/config.schema.json>``.

:func:`problems` validates in two passes: the raw data against the schema (structure: unknown keys,
types, enum values; every error with its key path), then :func:`~massgen_es.config.parse_config` (the
semantic checks: paths that must exist, ``${ENV}`` key references, MCP server rules...). ``parse_config``
stays the one source of truth: a file has no problems exactly when it loads.
"""

from __future__ import annotations

import ast
import copy
import inspect
import json
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard, cast

import jsonschema.exceptions
import jsonschema.validators
import msgspec
import msgspec.inspect as mi
from jsonschema.exceptions import ValidationError

from massgen_es.config import Config, parse_config
from massgen_es.errors import ConfigError

SCHEMA_FILE_NAME = "config.schema.json"
"""Its name under ``schemas/`` in the repository."""
MODELINE_PREFIX = "# yaml-language-server: $schema="


def _structs(root: type) -> dict[str, type]:
    """Every struct class reachable from ``root``, by class name (the schema's ``$defs`` keys)."""
    found: dict[str, type] = {}

    def walk(t: mi.Type) -> None:
        if isinstance(t, mi.StructType):
            if t.cls.__name__ in found:
                return
            found[t.cls.__name__] = t.cls
            for f in t.fields:
                walk(f.type)
        elif isinstance(t, mi.UnionType):
            for u in t.types:
                walk(u)
        elif isinstance(t, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
            walk(t.item_type)
        elif isinstance(t, mi.DictType):
            walk(t.value_type)

    walk(mi.type_info(root))
    return found


def _field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under the fields of ``cls`` (``x: int = 0`` then ``\"\"\"...\"\"\"``)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # pragma: no cover - classes defined in source files always have it
        return {}
    tree = ast.parse(source)
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for prev, node in zip(body, body[1:], strict=False):
        if (isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name) and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            docs[prev.target.id] = inspect.cleandoc(node.value.value)
    return docs


def _describe(defs: dict[str, Any], classes: dict[str, type]) -> None:
    """Titles and descriptions from the code: the class docstring, cleaned, and each field's docstring."""
    for name, cls in classes.items():
        d = defs.get(name)
        if d is None:
            continue
        if cls.__doc__:
            d["description"] = inspect.cleandoc(cls.__doc__)
        props = cast(dict[str, Any], d.get("properties", {}))
        for field, doc in _field_docs(cls).items():
            if field in props:
                props[field] = {"description": doc, **props[field]}


def _mapping_form(defs: dict[str, Any]) -> None:
    """``mcp_servers`` may also be a mapping of server name to entry (MassGen's form, normalised on load)."""
    entry = copy.deepcopy(defs["McpServerConfig"])
    entry["title"] = "McpServerEntry"
    entry["description"] = "An MCP server in the mapping form of `mcp_servers` (its name is the key)."
    entry["required"] = [r for r in entry.get("required", []) if r != "name"]
    defs["McpServerEntry"] = entry
    prop = defs["BackendConfig"]["properties"]["mcp_servers"]
    listed = {"type": "array", "items": prop["items"]}
    keyed = {"type": "object", "additionalProperties": {"$ref": "#/$defs/McpServerEntry"}}
    defs["BackendConfig"]["properties"]["mcp_servers"] = {
        k: v for k, v in prop.items() if k not in ("type", "items")} | {"anyOf": [listed, keyed]}


def schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of a config file, as a dict."""
    raw = msgspec.json.schema(Config)
    defs = cast(dict[str, Any], raw["$defs"])
    _describe(defs, _structs(Config))
    _mapping_form(defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "massgen config",
        "description": "A massgen (MassGen-shaped) YAML config file. Generated from massgen_es.config by "
                       "`make schema`; do not edit by hand.",
        "$defs": defs,
        "$ref": raw["$ref"],
    }


def json_schema() -> str:
    """:func:`schema` as stable, pretty JSON text (what ``schemas/config.schema.json`` holds)."""
    return json.dumps(schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Problem:
    """One problem of a config file.

    Attributes:
        origin: the file (or ``<config>``).
        path: the key path, e.g. ``agents[1].backend.model`` ("" for the top level or when unknown).
        message: what is wrong, and for semantic checks how to fix it.
    """

    origin: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.origin}: `{self.path or '(top level)'}`: {self.message}" if self.path else \
            f"{self.origin}: {self.message}"


def _key_path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


# typeshed's jsonschema stub leaves best_match's return type out (as in massgen_es.mcp).
_best_match = cast(
    Callable[[Iterable[ValidationError]], "ValidationError | None"],
    jsonschema.exceptions.best_match,  # pyright: ignore[reportUnknownMemberType]  (the stub's missing return type)
)


def _is_dict(value: object) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict)


def _is_list(value: object) -> TypeGuard[list[Any]]:
    return isinstance(value, list)


def _messages(error: ValidationError) -> list[tuple[str, str]]:
    """(key path, message) of one schema error, in the words of ``parse_config`` where it has them."""
    where = _key_path(error.absolute_path)
    instance: object = error.instance
    sub: object = error.schema
    if error.validator == "additionalProperties" and _is_dict(instance) and _is_dict(sub):
        allowed: object = sub.get("properties", {})
        extra = [k for k in instance if not (_is_dict(allowed) and k in allowed)]
        return [(_key_path([*error.absolute_path, k]), "unknown key; check its spelling or remove it") for k in extra]
    if error.validator in ("anyOf", "oneOf") and error.context:
        types = [c.validator_value for c in error.context if c.validator == "type" and not c.relative_path]
        if len(types) == len(error.context):
            return [(where, f"expected {' or '.join(str(t) for t in types)}, got {error.instance!r}")]
        best = _best_match(error.context)
        if best is None:  # pragma: no cover - a non-empty context always has a best match
            return [(where, error.message)]
        return [(_key_path([*error.absolute_path, *best.relative_path]), best.message)]
    return [(where, error.message)]


def structure_problems(data: Any, origin: str = "<config>") -> list[Problem]:
    """Every error of ``data`` against the schema, in document order."""
    validator: Any = jsonschema.validators.Draft202012Validator(schema())
    found: Iterator[ValidationError] = validator.iter_errors(data)
    errors = sorted(found, key=lambda e: [str(p) for p in e.absolute_path])
    return [Problem(origin, where, what) for e in errors for where, what in _messages(e)]


def _semantic(data: Any, origin: str) -> str | None:
    """The message of ``parse_config``'s first problem with ``data`` (without the origin), or None."""
    try:
        parse_config(data, origin)
    except ConfigError as exc:
        text = str(exc)
        return text[len(origin) + 2:] if text.startswith(f"{origin}: ") else text
    return None


_STAND_IN = {"id": "stand-in", "backend": {"type": "local"}}
"""A valid agent: the rest of a file (``orchestrator``, ``timeout_settings``...) is checked with it."""


def _team(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """(key path, entry) of each agent of ``agents:`` or ``agent:``."""
    listed: object = data.get("agents")
    if _is_list(listed):
        return [(f"agents[{i}]", entry) for i, entry in enumerate(listed)]
    return [("agent", data["agent"])] if data.get("agent") is not None else []


def problems(data: Any, origin: str = "<config>") -> list[Problem]:
    """Every problem of a parsed config file; an empty list exactly when ``parse_config(data)`` succeeds
    (loading is the one source of truth: a key that loading accepts, e.g. a MassGen key it renames,
    is no problem even where the schema does not know it).

    For a file that does not load: its structural errors (all of them, from the schema), then the
    semantic ones ``parse_config`` finds. ``parse_config`` stops at its first, so each structurally
    clean agent is checked alone, the structurally clean other blocks with a stand-in team, and the
    whole file (agents together: duplicate ids...) when its structure is clean."""
    whole = _semantic(data, origin)
    if whole is None:
        return []
    found = structure_problems(data, origin)
    if not _is_dict(data):
        return found or [Problem(origin, "", whole)]
    bad = {re.split(r"[.\[]", p.path, maxsplit=1)[0] for p in found}
    messages: list[str] = []
    team = _team(data)
    for where, entry in team:
        if not any(p.path == where or p.path.startswith((f"{where}.", f"{where}[")) for p in found):
            alone = _semantic({"agents": [entry]}, origin)
            messages.append(alone.replace("agents[0]", where) if alone else "")
    if team:  # the other blocks with valid structure
        rest = {k: v for k, v in data.items() if k not in ("agents", "agent") and k not in bad}
        messages.append(_semantic({**rest, "agents": [_STAND_IN]}, origin) or "")
    if not found:
        messages.append(whole)
    for m in dict.fromkeys(messages):
        if m:
            found.append(Problem(origin, "", m))
    return found


def modeline(schema_ref: str) -> str:
    """The first line that points a YAML language server at the schema (``schema_ref``: a path or URL)."""
    return f"{MODELINE_PREFIX}{schema_ref}"


if __name__ == "__main__":  # python -m massgen_es.config_schema > schemas/config.schema.json
    sys.stdout.write(json_schema())
