"""A run out of a stack into a :class:`~massgen_replay.bundle.Bundle`, and a bundle into a stack.

Import checks everything it can before it writes anything: the bundle itself (:func:`bundle.load`), that
the run id is free in the target stack (or holds the start of this very history: a repeated import is a
no-op, an interrupted one is completed), and that no orchestrator runs there. Then the objects go in
first, so an event never references a missing object, then the events (:mod:`massgen_es.bus.history`).
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client

from massgen_es.bus.history import Written, stored_prefix, write_history, writer_of
from massgen_es.bus.jetstream import JetStreamEventLog
from massgen_es.bus.objects import ObjectStore
from massgen_es.errors import BundleError, BusError
from massgen_es.events import RunSubmitted
from massgen_es.ops import status
from massgen_replay.bundle import Bundle, referenced_objects, run_config
from massgen_replay.read import run_records


async def export_run(nc: Client, run_id: str) -> Bundle:
    """Collect ``run_id`` from the stack: its events in stream order, the objects they reference, its
    config without secrets.

    Raises:
        ReplayError: the run has no events.
        BundleError: an event cannot be written back anywhere (no writer), the run has no
            ``run.submitted``, or a referenced object is missing from the Object Store.
    """
    records = await run_records(JetStreamEventLog(nc), run_id)
    try:
        for r in records:
            writer_of(r)
    except ValueError as exc:
        raise BundleError(f"run {run_id} cannot be bundled: {exc}") from None
    submitted = next((r.event for r in records if isinstance(r.event, RunSubmitted)), None)
    if submitted is None:
        raise BundleError(f"run {run_id} has no run.submitted event, so no config to bundle; is it a run id?")
    store = ObjectStore(nc)
    objects: dict[str, bytes] = {}
    for ref in referenced_objects(records):
        try:
            objects[ref.name] = await store.get(ref)
        except BusError as exc:
            raise BundleError(f"run {run_id} cannot be bundled whole: {exc}") from None
    return Bundle(run_id=run_id, records=records, objects=objects, config_yaml=run_config(submitted))


@dataclass(frozen=True)
class Imported:
    """What an import did: ``written`` of ``events`` events appended (0 when the run was already
    there, complete), ``objects`` objects stored."""

    run_id: str
    events: int
    written: int
    objects: int


async def import_bundle(nc: Client, bundle: Bundle) -> Imported:
    """Load ``bundle`` into the stack behind ``nc`` under its own run id.

    Raises:
        BundleError: an orchestrator runs on this stack (it would take the imported run for a new one
            and act on it), or an object would be stored under another digest. Nothing written.
        HistoryConflict: the run id exists there with other events. Nothing written.
        BusError: the server refused a write (a long history may then be partly written: importing the
            same bundle again completes it).
    """
    live = [s for s in (await status(nc))["services"] if s.get("service") == "orchestrator"]
    if live:
        instances = ", ".join(str(s.get("instance")) for s in live)
        raise BundleError(
            f"an orchestrator runs on this stack ({instances}): it would take run {bundle.run_id} for a new "
            "submission and act on it. Stop it during the import (`docker compose stop orchestrator`, or "
            "stop `massgen up`/`massgen serve orchestrator`), then start it again: on start it leaves "
            "finished runs alone"
        )
    # Checked before the objects go in, so a refused import writes nothing at all.
    await stored_prefix(nc, bundle.run_id, [r.id for r in bundle.records])
    store = ObjectStore(nc)
    for name, data in bundle.objects.items():
        ref = await store.put(data, "imported")
        if ref.name != name:
            raise BundleError(f"object {name} was stored as {ref.name}: this stack's scrubber changed it; "
                              "nothing of the run's events was imported")
    done: Written = await write_history(nc, bundle.run_id, bundle.records)
    return Imported(run_id=bundle.run_id, events=len(bundle.records), written=done.written,
                    objects=len(bundle.objects))


__all__ = ["Imported", "export_run", "import_bundle"]
