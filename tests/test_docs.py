"""docs/architecture is generated from the code (`make docs`, massgen_cli.docs) and kept current."""

from __future__ import annotations

from pathlib import Path

from massgen_cli import docs

ROOT = Path(__file__).resolve().parents[1]


def test_committed_architecture_docs_match_what_the_code_generates(capsys) -> None:
    assert docs.main(["--check"]) == 0, capsys.readouterr().err


def test_the_check_names_a_stale_file(tmp_path: Path, capsys) -> None:
    docs.main([str(tmp_path)])
    (tmp_path / "events.md").write_text("stale")
    assert docs.main([str(tmp_path), "--check"]) == 1
    assert "events.md" in capsys.readouterr().err


def test_the_docs_cover_every_event_service_and_writer() -> None:
    from massgen_es import events, subjects

    text = {name: make() for name, make in docs.GENERATED.items()}
    assert all(f"`{docs.tag_of_class(cls)}`" in text["events.md"] for cls in events.EVENT_CLASSES)
    assert all(f"`massgen serve {name}`" in text["services.md"] for name in subjects.SERVICE_NAMES)
    assert all(f"`massgen.run.<run>.{w}`" in text["messaging.md"] for w in subjects.WRITERS)
    assert "sequenceDiagram" in text["flows.md"] and "(docs/architecture/" in (ROOT / "README.md").read_text()
