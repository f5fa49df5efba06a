"""``upload_files`` (MassGen spec §2.8, §5.2): validation at load, the Object Store at submit, and each
adapter's native form on the wire, through the real SDKs against FakeOpenAI (Chat Completions) and
llmock (Responses, Messages, generateContent), plus one whole-stack run with an uploaded image."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from harness import Stack, agent_script, of, team
from massgen_agent_worker.providers import chatcompletion, claude, gemini
from massgen_agent_worker.providers import openai as responses
from massgen_es import media
from massgen_es.bus.objects import ObjectStore
from massgen_es.config import BackendConfig, parse_config, run_submitted
from massgen_es.errors import ConfigError
from massgen_es.events import Message, RunCompleted, RunSubmitted, TurnRequested
from massgen_es.testing.fake_openai import FakeOpenAI, Reply

# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
WAV = (b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00@\x1f\x00\x00\x80>\x00\x00\x02\x00"
       b"\x10\x00data\x00\x00\x00\x00")
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
QUESTION = (Message(role="system", content="Be brief."), Message(role="user", content="What is in the file?"))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {"png": tmp_path / "dot.png", "wav": tmp_path / "beep.wav", "pdf": tmp_path / "doc.pdf",
           "txt": tmp_path / "notes.txt", "mp4": tmp_path / "clip.mp4", "bmp": tmp_path / "dot.bmp"}
    for key, data in (("png", PNG), ("wav", WAV), ("pdf", PDF), ("txt", b"hello notes"), ("mp4", b"\0" * 64),
                      ("bmp", b"BM")):
        out[key].write_bytes(data)
    return out


def config(backend: dict[str, Any]) -> dict[str, Any]:
    return {"agents": [{"id": "a", "backend": {"model": "m", "base_url": "http://127.0.0.1:9/v1", **backend}}]}


def load_error(backend: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(config(backend))
    return str(exc.value)


def turn() -> TurnRequested:
    return TurnRequested(turn_id="t", agent_id="a", attempt=1, kind="coordination", messages=QUESTION, tools=(),
                         backend={}, answers_version=0)


def attachment(path: Path, kind: media.Kind) -> media.Attachment:
    return media.Attachment(kind=kind, mime_type=media.mime_type(str(path)) or "", name=path.name,
                            data=path.read_bytes())


# --- validation at load --------------------------------------------------------------------------


def test_a_missing_file_is_a_config_error_naming_the_key_path(files):
    msg = load_error({"type": "openai", "upload_files": [{"image_path": str(files["png"].with_name("no.png"))}]})
    assert "`agents[0].backend.upload_files[0].image_path`" in msg and "fix the path" in msg


def test_an_oversized_file_names_the_limit_key(files):
    msg = load_error({"type": "openai", "media_max_file_size_mb": 0.00001,
                      "upload_files": [{"image_path": str(files["png"])}]})
    assert "`agents[0].backend.upload_files[0].image_path`" in msg
    assert "`agents[0].backend.media_max_file_size_mb`" in msg


def test_a_kind_the_provider_does_not_take_is_refused_naming_the_types_that_do(files):
    msg = load_error({"type": "openai", "upload_files": [{"video_path": str(files["mp4"])}]})
    assert "`agents[0].backend.upload_files[0].video_path`" in msg and "cannot take video uploads" in msg
    assert "gemini" in msg
    assert "cannot take image uploads" in load_error(
        {"type": "local", "upload_files": [{"image_path": str(files["png"])}]})


def test_a_type_the_provider_does_not_take_is_refused_with_the_types_it_does(files):
    msg = load_error({"type": "claude", "upload_files": [{"image_path": str(files["bmp"])}]})
    assert "`agents[0].backend.upload_files[0].image_path`" in msg and "image/png" in msg


def test_an_entry_needs_exactly_one_path(files):
    msg = load_error({"type": "gemini", "upload_files": [{"image_path": str(files["png"]),
                                                          "file_path": str(files["pdf"])}]})
    assert "`agents[0].backend.upload_files[0]` must have exactly one of" in msg
    assert "unknown key `agents[0].backend.upload_files[0].pic_path`" in load_error(
        {"type": "gemini", "upload_files": [{"pic_path": "x"}]})


def test_the_submitted_event_references_the_file_and_never_inlines_it(files):
    cfg = parse_config(config({"type": "openai", "upload_files": [{"image_path": str(files["png"])}]}))
    ev = run_submitted("What is this?", cfg)
    (entry,) = ev.agents[0].backend["upload_files"]
    digest = hashlib.sha256(PNG).hexdigest()
    assert entry == {"image_path": str(files["png"].resolve()),
                     "object": {"name": digest, "digest": f"sha256:{digest}", "size": len(PNG), "label": "dot.png"}}
    assert base64.b64encode(PNG).decode() not in msgspec.json.encode(ev).decode()


async def test_the_files_go_to_the_object_store_byte_for_byte_and_come_back_as_attachments(nc, files):
    cfg = parse_config(config({"type": "gemini", "upload_files": [{"image_path": str(files["png"])},
                                                                   {"audio_path": str(files["wav"])}]}))
    ev = run_submitted("q", cfg)
    objects = ObjectStore(nc)
    await media.store_uploads(objects, ev.agents)
    got = await media.fetch_uploads(objects, media.uploads_of(ev.agents[0].backend))
    assert [(a.kind, a.mime_type, a.name, a.data) for a in got] == [
        ("image", "image/png", "dot.png", PNG), ("audio", "audio/wav", "beep.wav", WAV)]


async def test_a_file_changed_after_loading_is_refused_at_submit(nc, files):
    cfg = parse_config(config({"type": "openai", "upload_files": [{"image_path": str(files["png"])}]}))
    ev = run_submitted("q", cfg)
    files["png"].write_bytes(PNG + b"x")
    with pytest.raises(ConfigError, match="changed while the run was submitted"):
        await media.store_uploads(ObjectStore(nc), ev.agents)


# --- each provider's native form on the wire -----------------------------------------------------


async def test_chat_completions_sends_an_image_url_data_uri_and_input_audio(fake: FakeOpenAI, files):
    fake.script("mm", Reply(text="a dot and a beep"))
    cfg = msgspec.convert({"type": "chatcompletion", "model": "mm", "base_url": fake.base_url}, BackendConfig)

    async def on_text(_: str) -> None:
        pass

    uploads = (attachment(files["png"], "image"), attachment(files["wav"], "audio"))
    done = await chatcompletion.complete(cfg, turn(), on_text, attachments=uploads)
    assert done.content == "a dot and a beep"
    user = fake.requests("mm")[0]["messages"][1]
    assert user == {"role": "user", "content": [
        {"type": "text", "text": "What is in the file?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(WAV).decode(), "format": "wav"}},
    ]}


async def test_responses_sends_input_image_and_input_file(llmock, files):
    llmock.reply("a dot and a document")
    cfg = msgspec.convert({"type": "openai", "model": "gpt-5-nano", "base_url": llmock.base_url("openai")},
                          BackendConfig)

    async def on_text(_: str) -> None:
        pass

    done = await responses.complete(cfg, turn(), on_text,
                                    attachments=(attachment(files["png"], "image"), attachment(files["pdf"], "file")))
    assert done.content == "a dot and a document"
    body = llmock.last_request.body
    assert body["input"] == [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "What is in the file?"},
        {"type": "input_image", "image_url": "data:image/png;base64," + base64.b64encode(PNG).decode(),
         "detail": "auto"},
        {"type": "input_file", "filename": "doc.pdf",
         "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode()},
    ]}]


async def test_claude_sends_image_and_document_blocks(llmock, monkeypatch, files):
    monkeypatch.setenv("MASSGEN_TEST_MM_KEY", "sk-ant-test")
    llmock.reply("a dot, a PDF and notes")
    cfg = msgspec.convert({"type": "claude", "model": "claude-sonnet-4-6", "base_url": llmock.base_url("anthropic"),
                           "api_key_env": "MASSGEN_TEST_MM_KEY"}, BackendConfig)

    async def on_text(_: str) -> None:
        pass

    done = await claude.complete(cfg, turn(), on_text, attachments=(
        attachment(files["png"], "image"), attachment(files["pdf"], "file"), attachment(files["txt"], "file")))
    assert done.content == "a dot, a PDF and notes"
    assert llmock.last_request.body["messages"] == [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": base64.b64encode(PNG).decode()}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": base64.b64encode(PDF).decode()}, "title": "doc.pdf"},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hello notes"},
         "title": "notes.txt"},
        {"type": "text", "text": "What is in the file?"},
    ]}]


async def test_gemini_sends_inline_data_parts(llmock, monkeypatch, files):
    monkeypatch.setenv("MASSGEN_TEST_MM_KEY", "test-key")
    llmock.reply("a dot and a clip")
    cfg = msgspec.convert({"type": "gemini", "model": "gemini-2.5-flash", "base_url": llmock.base_url("gemini"),
                           "api_key_env": "MASSGEN_TEST_MM_KEY"}, BackendConfig)

    async def on_text(_: str) -> None:
        pass

    done = await gemini.complete(cfg, turn(), on_text,
                                 attachments=(attachment(files["png"], "image"), attachment(files["mp4"], "video")))
    assert done.content == "a dot and a clip"
    (content,) = llmock.last_request.body["contents"]
    # google-genai writes `mime_type` and URL-safe base64, both of which the API accepts
    assert content == {"role": "user", "parts": [
        {"text": "What is in the file?"},
        {"inlineData": {"data": base64.urlsafe_b64encode(PNG).decode(), "mime_type": "image/png"}},
        {"inlineData": {"data": base64.urlsafe_b64encode(b"\0" * 64).decode(), "mime_type": "video/mp4"}},
    ]}


# --- the whole stack -----------------------------------------------------------------------------


async def test_a_run_with_an_uploaded_image_sends_it_on_every_call_and_keeps_events_small(
    fresh_nats, fake: FakeOpenAI, files
):
    cfg, (model,) = team(fake, 1)
    cfg["agents"][0]["backend"]["upload_files"] = [{"image_path": str(files["png"])}]
    fake.default(model, agent_script("A dot.", "agent1", final="The image is a single dot."))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg, "What is in the image?")
        records = await s.wait_done(run_id)
    assert of(records, RunCompleted)[0].final_answer == "The image is a single dot."
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    bodies = fake.requests(model)
    assert len(bodies) >= 2
    for body in bodies:
        user = next(m for m in body["messages"] if m["role"] == "user")
        assert user["content"][-1] == {"type": "image_url", "image_url": {"url": uri}}
    assert all(base64.b64encode(PNG).decode() not in json.dumps(msgspec.to_builtins(r.event)) for r in records)
    assert of(records, RunSubmitted)[0].agents[0].backend["upload_files"][0]["object"]["label"] == "dot.png"
