"""Portable run bundles (issue 14 item 6): one file that holds a whole run, to move it to another stack
(``massgen export bundle`` / ``massgen import bundle``) or keep it as a golden run (``tests/histories``).

A bundle is a gzipped tar with these members (nothing else; read into memory, never extracted):

- ``manifest.json``: ``format`` (``massgen-bundle``), ``format_version``, ``schema_version`` (the event
  schema, :data:`massgen_es.events.SCHEMA_VERSION`, of the exporter), ``run_id``, ``status``,
  ``question``, ``exported_by``, ``counts`` (events, decisions, objects, events by type) and ``files``:
  each other member's ``sha256`` and ``bytes``;
- ``events.jsonl``: the run's events in stream order, one JSON object a line, exactly the lines of
  ``massgen replay RUN --json`` (``seq``, ``id``, ``run_id``, ``ts``, ``source``, ``causation_id``,
  ``type``, ``event``): the original ids, timestamps and sources;
- ``objects/<sha256>``: each Object Store payload an event references (``ObjectRef``), named by digest;
- ``config.yaml``: the run's config as MassGen-shaped YAML (``massgen submit --config`` takes it),
  rebuilt from ``run.submitted`` with every ``api_key`` dropped and the text scrubbed
  (:mod:`massgen_es.scrub`); MCP ``env``/``headers`` stay ``${secret:…}`` references.

:func:`load` checks everything before anything is used: a damaged bundle is refused naming what is wrong.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from massgen_es import scrub
from massgen_es.errors import BundleError, EventDecodeError
from massgen_es.events import (
    SCHEMA_VERSION,
    TERMINAL_EVENTS,
    ExecutionCompleted,
    ObjectRef,
    Record,
    RunSubmitted,
    decode,
    to_builtins,
)

FORMAT = "massgen-bundle"
FORMAT_VERSION = 1
"""Version of the bundle layout (members, manifest keys); a reader refuses a newer one."""
MAX_MEMBER_BYTES = 512 * 1024 * 1024
"""A member bigger than this is refused before it is read (a damaged or hostile size field)."""
_STATUS = {"run.completed": "completed", "run.timed_out": "timed_out", "run.failed": "failed"}




@dataclass(frozen=True)
class Bundle:
    """A run, as a bundle holds it.

    Attributes:
        run_id: the run's id.
        records: its events in stream order (``seq`` as stored where it was exported).
        objects: Object Store payloads by sha256 hex digest.
        config_yaml: the run's config, secrets removed (module docstring).
        manifest: the manifest as read (or as :func:`dump` writes it).
    """

    run_id: str
    records: list[Record]
    objects: dict[str, bytes] = field(default_factory=dict[str, bytes])
    config_yaml: str = ""
    manifest: dict[str, Any] = field(default_factory=dict[str, Any])

    @property
    def status(self) -> str:
        """``completed``, ``timed_out``, ``failed``, or ``unfinished`` (no terminal event)."""
        ends = [r.type for r in self.records if isinstance(r.event, TERMINAL_EVENTS)]
        return _STATUS[ends[-1]] if ends else "unfinished"


# ---------------------------------------------------------------- pieces


def event_lines(records: list[Record]) -> bytes:
    """``records`` as JSON lines, the same text as ``massgen replay RUN --json`` prints."""
    return "".join(json.dumps(to_builtins(r), ensure_ascii=False) + "\n" for r in records).encode()


def parse_line(line: str) -> Record:
    """One line of ``events.jsonl`` (or of ``massgen replay --json``) back into a :class:`Record`.

    Raises:
        EventDecodeError: not such a line, or the event's fields are invalid.
    """
    try:
        d = json.loads(line)
        event = d["event"]
        known = not (set(event) == {"type", "data"} and isinstance(event.get("data"), dict))
        data = event if known else event["data"]
        env = {k: d[k] for k in ("id", "run_id", "type", "ts", "source", "causation_id")} | {"data": data}
    except (ValueError, KeyError, TypeError) as exc:
        raise EventDecodeError(f"not an event line ({exc.__class__.__name__}: {exc}): {line[:120]!r}") from None
    return decode(json.dumps(env).encode(), int(d.get("seq") or 0))


def referenced_objects(records: list[Record]) -> list[ObjectRef]:
    """Every Object Store reference the events carry, once each, in order of first appearance."""
    seen: dict[str, ObjectRef] = {}
    for r in records:
        if isinstance(r.event, ExecutionCompleted):
            for ref in r.event.objects:
                seen.setdefault(ref.name, ref)
    return list(seen.values())


def run_config(submitted: RunSubmitted) -> str:
    """The config of a run as MassGen-shaped YAML: agents, ``orchestrator`` and ``timeout_settings``
    keys rebuilt from ``run.submitted``, with every ``api_key`` key dropped (``api_key_env``, a
    variable's name, stays) and the text scrubbed of known secrets and credential shapes."""
    s = submitted.settings
    orchestrator = {
        "max_new_answers_per_agent": s.max_new_answers_per_agent,
        "voting_sensitivity": s.voting_sensitivity,
        "answer_novelty_requirement": s.answer_novelty_requirement,
        "max_failed_turns": s.max_failed_turns,
        "max_cost_usd": s.max_cost_usd,
    }
    cfg = {
        "agents": [{"id": a.id, "backend": _without_keys(a.backend), "system_message": a.system_message}
                   for a in submitted.agents],
        "orchestrator": {k: v for k, v in orchestrator.items() if v is not None},
        "timeout_settings": {"orchestrator_timeout_seconds": s.orchestrator_timeout_s,
                             "presentation_timeout_seconds": s.presentation_timeout_s},
    }
    return scrub.text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))


def _without_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_keys(v) for k, v in value.items() if k != "api_key"}
    if isinstance(value, list):
        return [_without_keys(v) for v in value]
    return value


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _exporter() -> str:
    try:
        return f"massgen-es {version('massgen-es')}"
    except PackageNotFoundError:  # a source checkout without the package metadata
        return "massgen-es"


# ---------------------------------------------------------------- writing


def dump(bundle: Bundle) -> bytes:
    """The bundle file's bytes (gzipped tar, members in a fixed order with fixed metadata, so the same
    run gives the same bytes).

    Raises:
        BundleError: the records are empty or of another run, or an object's name is not its digest.
    """
    if not bundle.records:
        raise BundleError(f"run {bundle.run_id} has no events to bundle")
    if other := {r.run_id for r in bundle.records} - {bundle.run_id}:
        raise BundleError(f"the bundle of run {bundle.run_id} would hold events of other runs: {sorted(other)}")
    members: dict[str, bytes] = {"events.jsonl": event_lines(bundle.records)}
    members["config.yaml"] = bundle.config_yaml.encode()
    for name, data in sorted(bundle.objects.items()):
        if _sha256(data) != name:
            raise BundleError(f"object {name} does not match its digest; it cannot go into a bundle")
        members[f"objects/{name}"] = data
    types = Counter(r.type for r in bundle.records)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "run_id": bundle.run_id,
        "status": bundle.status,
        "question": next((r.event.question for r in bundle.records if isinstance(r.event, RunSubmitted)), ""),
        "exported_by": _exporter(),
        "counts": {"events": len(bundle.records), "decisions": sum(r.is_decision for r in bundle.records),
                   "objects": len(bundle.objects), "by_type": dict(sorted(types.items()))},
        "files": {name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in members.items()},
    }
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in {"manifest.json": json.dumps(manifest, indent=2, ensure_ascii=False).encode(),
                           **members}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def save(bundle: Bundle, path: str | Path) -> int:
    """Write :func:`dump` to ``path`` through a temporary file renamed into place (a failed write leaves
    no half file). Returns the file's size in bytes."""
    data = dump(bundle)
    p = Path(path)
    tmp = p.with_name(p.name + ".partial")
    tmp.write_bytes(data)
    tmp.replace(p)
    return len(data)


# ---------------------------------------------------------------- reading


def load(path: str | Path) -> Bundle:
    """Read and check a bundle file.

    Checks, in order: a gzipped tar of regular files; a manifest of this format, of a layout and an event
    schema no newer than this version's; each listed member present with its size and sha256, and no
    other; every event line decodes, belongs to the manifest's run, ids unique, count as listed; every
    object an event references present and matching its digest.

    Raises:
        BundleError: the first problem found, naming the file and the member, and what to do.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read bundle {p}: {exc.strerror or exc}") from None
    try:
        members = _members(data)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:  # gzip's errors are OSError or EOFError
        raise BundleError(f"{p} is not a massgen bundle (a gzipped tar): {exc}; it is damaged or another "
                          "kind of file, export it again with `massgen export bundle RUN -o FILE`") from None
    return _check(p, members)


def _members(data: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as tar:
        for info in tar.getmembers():
            if not info.isfile() or info.size > MAX_MEMBER_BYTES or info.name in out:
                raise ValueError(f"member {info.name!r} is not a regular file of a sane size, or repeats")
            f = tar.extractfile(info)
            assert f is not None  # a regular file always has a reader
            out[info.name] = f.read()
    return out


def _check(p: Path, members: dict[str, bytes]) -> Bundle:
    """The bundle of ``members``, once the manifest, the hashes, the events and the objects check out."""
    m = _manifest(p, members)
    records = _records(p, m, members.get("events.jsonl", b""))
    objects = {name.removeprefix("objects/"): data for name, data in members.items() if name.startswith("objects/")}
    for ref in referenced_objects(records):
        data = objects.get(ref.name)
        if data is None or f"sha256:{_sha256(data)}" != ref.digest:
            raise BundleError(f"bundle {p}: object {ref.name} ({ref.label or 'no label'}), referenced by the "
                              "events, is missing or does not match its digest")
    return Bundle(run_id=str(m["run_id"]), records=records, objects=objects,
                  config_yaml=members.get("config.yaml", b"").decode(), manifest=m)


def _manifest(p: Path, members: dict[str, bytes]) -> dict[str, Any]:
    """The manifest (taken out of ``members``), once its versions and every member's hash check out."""
    def bad(what: str) -> BundleError:
        return BundleError(f"bundle {p}: {what}")

    try:
        m = json.loads(members.pop("manifest.json"))
    except KeyError:
        raise bad("no manifest.json; it is not a massgen bundle") from None
    except ValueError as exc:
        raise bad(f"manifest.json is not JSON ({exc}); the bundle is damaged, export the run again") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or not m.get("run_id"):
        raise bad(f"manifest.json does not describe a {FORMAT}")
    if int(m.get("format_version", 0)) > FORMAT_VERSION:
        raise bad(f"bundle layout version {m['format_version']} is newer than this massgen-es reads "
                  f"({FORMAT_VERSION}); upgrade massgen-es to import it")
    if int(m.get("schema_version", 0)) > SCHEMA_VERSION:
        raise bad(f"its events have schema version {m['schema_version']}, newer than this massgen-es supports "
                  f"({SCHEMA_VERSION}); upgrade massgen-es (`pip install -U massgen-es`) to import it")
    files: dict[str, Any] = m.get("files") or {}
    if extra := sorted(set(members) - set(files)):
        raise bad(f"members not listed in the manifest: {extra}; the bundle was altered, export it again")
    for name, meta in files.items():
        if name not in members:
            raise bad(f"member {name} is missing; the bundle is incomplete, export it again")
        if len(members[name]) != meta.get("bytes") or _sha256(members[name]) != meta.get("sha256"):
            raise bad(f"member {name} does not match its sha256 in the manifest; the bundle is damaged, "
                      "export it again")
    return m


def _records(p: Path, m: dict[str, Any], lines: bytes) -> list[Record]:
    """The events of ``events.jsonl``, once each decodes, belongs to the run and the count is right."""
    records: list[Record] = []
    for n, line in enumerate(lines.decode().splitlines(), 1):
        try:
            records.append(parse_line(line))
        except EventDecodeError as exc:
            raise BundleError(f"bundle {p}: events.jsonl line {n}: {exc}") from None
    listed = (m.get("counts") or {}).get("events")
    if len(records) != listed or not records:
        raise BundleError(f"bundle {p}: events.jsonl holds {len(records)} events, the manifest says {listed}")
    if other := {r.run_id for r in records} - {m["run_id"]}:
        raise BundleError(f"bundle {p}: events.jsonl holds events of runs {sorted(other)}, not only of {m['run_id']}")
    if len({r.id for r in records}) != len(records):
        raise BundleError(f"bundle {p}: events.jsonl repeats event ids")
    return records


__all__ = ["FORMAT", "FORMAT_VERSION", "Bundle", "BundleError", "dump", "event_lines", "load", "parse_line",
           "referenced_objects", "run_config", "save"]
