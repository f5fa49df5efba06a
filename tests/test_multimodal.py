"""``upload_files`` (MassGen spec §2.8, §5.2): validation at load, the Object Store at submit, and each
adapter's native form on the wire, through the real SDKs against FakeOpenAI (Chat Completions) and
llmock (Responses, Messages, generateContent), plus one whole-stack run with an uploaded image."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest

from harness import Stack, agent_script, of, team
from massgen_agent_worker import generation
from massgen_agent_worker.conversation import Conversation
from massgen_agent_worker.providers import chatcompletion, claude, gemini
from massgen_agent_worker.providers import openai as responses
from massgen_agent_worker.tools import ToolClient
from massgen_es import media
from massgen_es.bus.objects import ObjectStore
from massgen_es.config import BackendConfig, parse_config, run_submitted
from massgen_es.errors import ConfigError, ToolArgumentError
from massgen_es.events import (
    MediaGenerated,
    MediaSaved,
    Message,
    Record,
    RunCompleted,
    RunSubmitted,
    Source,
    ToolCall,
    ToolSpec,
    TurnRequested,
)
from massgen_es.testing.fake_openai import FakeOpenAI, Reply
from massgen_replay import render
from massgen_replay.read import project

# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
WAV = (b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00@\x1f\x00\x00\x80>\x00\x00\x02\x00"
       b"\x10\x00data\x00\x00\x00\x00")
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
QUESTION = (Message(role="system", content="Be brief."), Message(role="user", content="What is in the file?"))
NEW_ANSWER = ToolSpec(name="new_answer", description="Provide an answer", parameters={
    "type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"]})


class Sink:
    """The conversation's text sink (the worker's coalescer)."""

    async def add(self, text: str) -> None:
        pass

    async def close(self) -> None:
        pass


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


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server of a directory holding ``audio/alloy.wav`` and ``docs/blog.pdf``."""
    root = tmp_path / "web"
    (root / "audio").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "audio" / "alloy.wav").write_bytes(WAV)
    (root / "docs" / "blog.pdf").write_bytes(PDF)
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


async def test_a_url_entry_is_downloaded_at_submit_and_stored_like_a_file(nc, web):
    url = f"{web}/audio/alloy.wav?dl=1"  # the type comes from the URL's path, as a file's from its name
    cfg = parse_config(config({"type": "gemini", "upload_files": [{"audio_path": url},
                                                                   {"file_path": f"{web}/docs/blog.pdf"}]}))
    ev = run_submitted("q", cfg)
    wav, pdf = ev.agents[0].backend["upload_files"]
    digest = hashlib.sha256(WAV).hexdigest()
    assert wav == {"audio_path": url,
                   "object": {"name": digest, "digest": f"sha256:{digest}", "size": len(WAV), "label": "alloy.wav"}}
    objects = ObjectStore(nc)
    await media.store_uploads(objects, ev.agents)
    got = await media.fetch_uploads(objects, media.uploads_of(ev.agents[0].backend))
    assert [(a.kind, a.mime_type, a.name, a.data) for a in got] == [
        ("audio", "audio/wav", "alloy.wav", WAV), ("file", "application/pdf", "blog.pdf", PDF)]
    assert pdf["file_path"] == f"{web}/docs/blog.pdf"


def test_a_url_entry_that_cannot_be_downloaded_or_is_too_large_is_a_clear_error(web):
    def submit_error(url: str, **backend: Any) -> str:
        cfg = parse_config(config({"type": "gemini", "upload_files": [{"audio_path": url}], **backend}))
        with pytest.raises(ConfigError) as exc:
            run_submitted("q", cfg)
        return str(exc.value)

    assert "answered HTTP 404" in submit_error(f"{web}/audio/none.wav")
    assert "could not download it" in submit_error("http://127.0.0.1:9/alloy.wav")  # nothing listens
    msg = submit_error(f"{web}/audio/alloy.wav", media_max_file_size_mb=0.00001)
    assert "is over" in msg and "`media_max_file_size_mb`" in msg


def test_a_url_of_a_type_the_provider_does_not_take_is_refused_at_load():
    msg = load_error({"type": "claude", "upload_files": [{"image_path": "https://cdn.example.com/dot.bmp"}]})
    assert "`agents[0].backend.upload_files[0].image_path`" in msg and "image/png" in msg


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


# --- generation: enable_image_generation / enable_audio_generation -------------------------------


def test_generation_keys_are_refused_where_the_provider_has_no_such_api_here():
    msg = load_error({"type": "claude", "enable_image_generation": True})
    assert "`agents[0].backend.enable_image_generation`" in msg and "'claude'" in msg and "openai" in msg
    msg = load_error({"type": "chatcompletion", "enable_audio_generation": True})
    assert "`agents[0].backend.enable_audio_generation`" in msg and "generates audio only through" in msg
    assert "'chatcompletion'" in msg


async def test_generate_image_and_audio_call_the_openai_sdk_against_the_fake(fake: FakeOpenAI, monkeypatch):
    monkeypatch.setenv("MASSGEN_TEST_MM_KEY", "sk-test")
    cfg = msgspec.convert({"type": "openai", "model": "gpt-5-nano", "base_url": fake.base_url,
                           "api_key_env": "MASSGEN_TEST_MM_KEY",
                           "enable_image_generation": True, "enable_audio_generation": True}, BackendConfig)
    assert [t.name for t in generation.tools(cfg)] == ["generate_image", "generate_audio"]
    image = await generation.generate(cfg, ToolCall(id="call_1", name="generate_image",
                                                    arguments='{"prompt": "a red dot", "size": "1024x1024"}'))
    assert (image.kind, image.data, image.mime_type, image.file_name) == ("image", fake.image_png, "image/png",
                                                                          "image_call_1.png")
    assert fake.requests("gpt-image-1") == [{"model": "gpt-image-1", "prompt": "a red dot", "size": "1024x1024",
                                             "n": 1}]
    audio = await generation.generate(cfg, ToolCall(id="call_2", name="generate_audio",
                                                    arguments='{"text": "Hello there", "voice": "nova"}'))
    assert (audio.data, audio.mime_type, audio.file_name) == (fake.speech_mp3, "audio/mpeg", "audio_call_2.mp3")
    assert fake.requests("gpt-4o-mini-tts") == [{"model": "gpt-4o-mini-tts", "voice": "nova", "input": "Hello there",
                                                 "response_format": "mp3"}]
    with pytest.raises(ToolArgumentError, match="non-empty string `prompt`"):
        await generation.generate(cfg, ToolCall(id="c", name="generate_image", arguments="{}"))


async def test_a_generated_image_is_stored_recorded_saved_in_the_workspace_and_replayed(
    fresh_nats, fake: FakeOpenAI, tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("MASSGEN_TEST_MM_KEY", "sk-test")
    cfg = {"agents": [{"id": "artist", "backend": {
        "type": "openai", "model": "gpt-5-nano", "base_url": fake.base_url, "cwd": "ws",
        "api_key_env": "MASSGEN_TEST_MM_KEY",
        "enable_image_generation": True}}]}
    async with Stack(fresh_nats.url) as s:
        s.broker(tmp_path)
        run_id = await s.submit(cfg, "Draw a dot.")
        submitted = (await s.log.read(run_id))[0]
        req = TurnRequested(turn_id="t1", agent_id="artist", attempt=1, kind="coordination", messages=QUESTION,
                            tools=(), backend=submitted.event.agents[0].backend, answers_version=0)
        record = Record(seq=2, id=f"{run_id}:t1", run_id=run_id, ts=0.0, source=Source(service="orchestrator",
                        instance="t"), causation_id=None, event=req)

        async def emit(_suffix: str, _event: Any) -> None:
            pass

        tools = ToolClient(s.nc, Source(service="agent_worker", instance="t"))
        talk = Conversation(req, record, f"{run_id}:w:t1:1:d1", None, emit, tools, ObjectStore(s.nc))
        call = ToolCall(id="call_7", name="generate_image", arguments='{"prompt": "a red dot"}')
        answers = await talk.run_tools([call], "r0")
        records = await s.log.read(run_id)
        objects = ObjectStore(s.nc)
        (made,) = of(records, MediaGenerated)
        assert await objects.get(made.object) == fake.image_png
    saved_path = tmp_path / "runs" / run_id / "workspaces" / "artist" / "image_call_7.png"
    assert answers == {"call_7": f"Generated image image_call_7.png ({len(fake.image_png)} bytes, image/png), "
                                 "saved in your workspace as image_call_7.png."}
    assert (made.kind, made.mime_type, made.prompt, made.model, made.agent_id) == (
        "image", "image/png", "a red dot", "gpt-image-1", "artist")
    (saved,) = of(records, MediaSaved)
    assert saved.path == str(saved_path) and saved_path.read_bytes() == fake.image_png
    view = project(run_id, records)
    media_lines = [e.text for e in view.timeline if e.kind == "media"]
    assert media_lines[0].startswith(f"image image_call_7.png ({len(fake.image_png)} bytes, image/png, gpt-image-1")
    assert media_lines[1] == f"saved in the workspace as {saved_path} ({len(fake.image_png)} bytes)"
    assert render.progress(view, next(e for e in view.timeline if e.kind == "media")) is not None


async def test_the_tool_loop_offers_generate_image_runs_it_and_gives_the_model_the_file_name(
    fresh_nats, fake: FakeOpenAI
):
    # FakeOpenAI has no Responses route, so the loop runs on a Chat Completions backend built directly
    # (config validation allows generation on `openai` only); the generation call is the same SDK call.
    backend = {"type": "chatcompletion", "model": "gen-loop", "base_url": fake.base_url,
               "enable_image_generation": True}
    fake.script("gen-loop", Reply(tool_calls=(("generate_image", {"prompt": "a red dot"}),)),
                Reply(tool_calls=(("new_answer", {"content": "Here is the dot."}),)))
    req = TurnRequested(turn_id="t1", agent_id="artist", attempt=1, kind="coordination", messages=QUESTION,
                        tools=(NEW_ANSWER,), backend=backend, answers_version=0)
    record = Record(seq=2, id="r1:t1", run_id="r1", ts=0.0, source=Source(service="orchestrator", instance="t"),
                    causation_id=None, event=req)
    emitted: list[Any] = []

    async def emit(_suffix: str, event: Any) -> None:
        emitted.append(event)

    async with Stack(fresh_nats.url) as s:
        tools = ToolClient(s.nc, Source(service="agent_worker", instance="t"))
        talk = Conversation(req, record, "r1:w:t1:1:d1", Sink(), emit, tools, ObjectStore(s.nc))
        result = await talk.run()
        (made,) = of(await s.log.read("r1"), MediaGenerated)
    assert [c.name for c in result.tool_calls] == ["new_answer"]
    first, second = fake.requests("gen-loop")
    assert [t["function"]["name"] for t in first["tools"]] == ["new_answer", "generate_image"]
    assert second["messages"][-1] == {
        "role": "tool", "tool_call_id": second["messages"][-2]["tool_calls"][0]["id"],
        "content": f"Generated image {made.file_name} ({len(fake.image_png)} bytes, image/png)."}
    assert fake.requests("gpt-image-1")[0]["prompt"] == "a red dot"
