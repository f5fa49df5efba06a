"""MassGen's bundled multimodal tools (``custom_tools`` with ``path: massgen/tool/_multimodal_tools/...``,
MassGen spec §2.8), run by the agent worker through the official ``openai`` SDK against FakeOpenAI: the
config, the text and frames taken from documents and videos, and whole runs on a real nats-server in which
a scripted model calls each tool on a real file of its workspace (or a context path) and reads the result."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import av
import docx
import openpyxl
import pptx
import pytest
from PIL import Image

from harness import Stack, of
from massgen_agent_worker import extract, generation, multimodal
from massgen_es.config import parse_config
from massgen_es.custom_tools import bundled
from massgen_es.errors import ConfigError, ToolArgumentError
from massgen_es.events import (
    MediaGenerated,
    MediaSaved,
    RunCompleted,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    WorkspaceFileRead,
    WorkspaceFileRequested,
)
from massgen_es.testing.fake_openai import FakeOpenAI, Reply
from massgen_replay.read import project

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
WAV = (b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00@\x1f\x00\x00\x80>\x00\x00\x02\x00"
       b"\x10\x00data\x00\x00\x00\x00")
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (0, 0, 0),
           (255, 255, 255)]


def mp4(colours: list[tuple[int, int, int]] = COLOURS) -> bytes:
    """A real MP4 (MPEG-4 part 2, 64x48) with one frame per colour."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for colour in colours:
            for packet in stream.encode(av.VideoFrame.from_image(Image.new("RGB", (64, 48), colour))):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` (Helvetica), with a correct cross-reference table."""
    stream = f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def office(kind: str, text: str) -> bytes:
    buf = io.BytesIO()
    if kind == "docx":
        d = docx.Document()
        d.add_paragraph(text)
        d.add_table(rows=1, cols=2).rows[0].cells[0].text = "cell"
        d.save(buf)
    elif kind == "xlsx":
        book = openpyxl.Workbook()
        book.active.title = "Data"
        book.active.append(["name", text])
        book.save(buf)
    else:
        deck = pptx.Presentation()
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = text
        deck.save(buf)
    return buf.getvalue()


# --- the config ----------------------------------------------------------------------------------


def backend(*functions: str, **extra: Any) -> dict[str, Any]:
    return {"type": "openai", "model": "m", "cwd": "ws", "custom_tools": [
        {"name": [f], "path": f"massgen/tool/_multimodal_tools/{f}.py", "function": [f], **extra} for f in functions]}


def test_the_bundled_tools_load_as_worker_tools_with_massgens_parameters():
    cfg = parse_config({"agents": [{"id": "a", "backend": backend(*bundled.TOOLS)}]})
    specs = {s.function: s for s in cfg.agents[0].backend.resolved_custom_tools}
    assert set(specs) == set(bundled.TOOLS)
    assert {s.runs_in for s in specs.values()} == {"agent_worker"} and {s.source for s in specs.values()} == {""}
    params = {f: (list(s.parameters["properties"]), s.parameters["required"]) for f, s in specs.items()}
    assert params["understand_image"] == (["image_path", "prompt", "model"], ["image_path"])
    assert params["understand_audio"] == (["audio_paths", "model"], ["audio_paths"])
    assert params["understand_video"] == (["video_path", "prompt", "num_frames", "model"], ["video_path"])
    assert params["understand_file"] == (["file_path", "prompt", "model", "max_chars"], ["file_path"])
    assert params["image_to_image_generation"][1] == ["base_image_paths"]
    assert params["text_to_speech_transcription_generation"] == (
        ["input_text", "model", "voice", "instructions", "storage_path", "audio_format"], ["input_text"])
    assert specs["understand_image"].name == "custom_tool__understand_image"


def test_preset_args_are_hidden_from_the_model_and_must_be_parameters():
    cfg = parse_config({"agents": [{"id": "a", "backend": backend("understand_image",
                                                                  preset_args={"model": "gpt-4o"})}]})
    (spec,) = cfg.agents[0].backend.resolved_custom_tools
    assert "model" not in spec.parameters["properties"] and spec.preset_args == {"model": "gpt-4o"}
    with pytest.raises(ConfigError, match=r"custom_tools\[0\]\.preset_args\.size`: `understand_image` has no "
                                          r"parameter `size`"):
        parse_config({"agents": [{"id": "a", "backend": backend("understand_image", preset_args={"size": 1})}]})




def test_every_bundled_tool_has_a_handler_or_a_generation_tool():
    for function, tool in bundled.TOOLS.items():
        assert (function in multimodal.HANDLERS) != bool(tool.produces), function
        assert not tool.produces or tool.produces in generation.NAMES
        assert all(r.argument in tool.parameters["properties"] for r in tool.reads)


async def test_an_agent_on_another_provider_needs_openai_api_key_in_the_worker(monkeypatch):
    cfg = parse_config({"agents": [{"id": "a", "backend": backend("understand_image") | {"type": "claude"}}]})
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"backend \(claude\) is not `openai`: set OPENAI_API_KEY"):
        multimodal.openai_client(cfg.agents[0].backend)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    client = multimodal.openai_client(cfg.agents[0].backend)
    assert (str(client.base_url), client.api_key) == ("http://127.0.0.1:9/v1/", "sk-env")


# --- what is taken from a file -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data", "how", "expected"), [
    ("report.pdf", pdf("Quarterly revenue grew"), "pdf", "--- Page 1 ---\nQuarterly revenue grew"),
    ("memo.docx", office("docx", "Memo body text"), "docx", "Memo body text\n\ncell | "),
    ("sheet.xlsx", office("xlsx", "forty-two"), "excel", "=== Sheet: Data ===\nname | forty-two"),
    ("deck.pptx", office("pptx", "Roadmap slide"), "pptx", "--- Slide 1 ---\n\nRoadmap slide"),
    ("notes.md", b"# Notes\nplain", "text", "# Notes\nplain"),
])
def test_document_text_is_extracted_with_massgens_libraries(name, data, how, expected):
    assert extract.document_text(name, data, 10_000) == (expected, how, False)


def test_document_text_is_cut_at_max_chars_and_binary_is_refused():
    assert extract.document_text("a.txt", b"abcdef", 4) == ("abcd", "text", True)
    with pytest.raises(ToolArgumentError, match="binary"):
        extract.document_text("blob.dat", b"\xff\xfe\x00\x81", 100)
    with pytest.raises(ToolArgumentError, match="cannot read the text of broken.pdf"):
        extract.document_text("broken.pdf", b"not a pdf", 100)


def test_video_frames_are_evenly_spaced_jpegs():
    frames = extract.video_frames("clip.mp4", mp4(), 4)
    colours = [Image.open(io.BytesIO(f)).convert("RGB").getpixel((32, 24)) for f in frames]
    expected = [COLOURS[0], COLOURS[2], COLOURS[4], COLOURS[6]]
    assert all(f.startswith(b"\xff\xd8") for f in frames)
    assert all(max(abs(a - b) for a, b in zip(c, e, strict=True)) < 16 for c, e in zip(colours, expected, strict=True))
    assert len(extract.video_frames("clip.mp4", mp4(COLOURS[:2]), 8)) == 2
    with pytest.raises(ToolArgumentError, match="cannot decode the video"):
        extract.video_frames("clip.mp4", b"\0" * 64, 8)


# --- whole runs ----------------------------------------------------------------------------------


def _names(body: dict) -> list[str]:
    return [t.get("function", t)["name"] for t in body.get("tools", [])]


def _outputs(body: dict) -> list[str]:
    if "messages" in body:
        return [m["content"] for m in body["messages"] if m.get("role") == "tool"]
    items = [i for i in body.get("input", []) if isinstance(i, dict)]
    return [i["output"] for i in items if i.get("type") == "function_call_output"]


def caller(calls: list[tuple[str, dict[str, Any]]]):
    """A scripted agent that makes ``calls`` one per round, then answers with what the last one returned,
    votes for itself and presents its answer."""

    def handle(body: dict) -> Reply:
        names, outputs = _names(body), _outputs(body)
        if "new_answer" not in names and "vote" not in names:  # the presentation (the tools are still offered)
            return Reply(text="FINAL " + (outputs[-1] if outputs else "no tool result"))
        if "vote" in names:
            return Reply(tool_calls=(("vote", {"agent_id": "agent1", "reason": "it read the file"}),))
        if len(outputs) < len(calls):
            return Reply(tool_calls=(calls[len(outputs)],))
        return Reply(tool_calls=(("new_answer", {"content": "The tool said: " + outputs[-1]}),))

    return handle


async def run_agent(
    fresh_nats, fake: FakeOpenAI, home: Path, functions: list[str], calls: list[tuple[str, dict[str, Any]]],
    context: Path | None = None, agent_type: str = "chatcompletion",
) -> tuple[list, list[str]]:
    """A one-agent run whose model makes ``calls``; the run's records and the tool results it read."""
    model = f"agent-{len(fake.received())}"
    fake.default(model, caller(calls))
    b = backend(*functions) | {"type": agent_type, "model": model, "base_url": fake.base_url}
    cfg: dict[str, Any] = {"agents": [{"id": "seer", "backend": b}],
                           "timeout_settings": {"orchestrator_timeout_seconds": 60}}
    if context is not None:
        cfg["orchestrator"] = {"context_paths": [{"path": str(context), "permission": "read"}]}
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        s.broker(home)
        records = await s.wait_done(await s.submit(cfg, "Look at the file."), 60)
    assert of(records, RunCompleted), [r.type for r in records[-8:]]
    seen = max((_outputs(body) for body in fake.requests(model)), key=len)  # the tool round's requests add up
    return records, seen


@pytest.fixture
def openai_env(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    """An agent whose backend is not ``openai`` reaches OpenAI with OPENAI_API_KEY (and OPENAI_BASE_URL)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-worker-env")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    return fake


async def test_understand_image_sends_the_context_path_image_to_a_vision_model_and_the_answer_back(
    fresh_nats, openai_env: FakeOpenAI, tmp_path: Path, massgen_home: Path
):
    fake = openai_env
    media = tmp_path / "media"
    media.mkdir()
    (media / "dot.png").write_bytes(PNG)
    fake.script("gpt-4.1", Reply(text="A single red dot."))
    records, seen = await run_agent(fresh_nats, fake, massgen_home, ["understand_image"], [
        ("custom_tool__understand_image", {"image_path": str(media / "dot.png"), "prompt": "What colour?"})], media)
    (vision,) = fake.requests("gpt-4.1")
    assert vision["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What colour?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}}]}]
    assert fake.received("gpt-4.1")[0].headers["authorization"] == "Bearer sk-worker-env"
    result = json.loads(seen[0])
    assert result == {"success": True, "operation": "understand_image",
                      "image_path": str((media / "dot.png").resolve()), "prompt": "What colour?",
                      "model": "gpt-4.1", "response": "A single red dot."}
    (asked,) = of(records, ToolCallRequested)
    assert (asked.server, asked.tool) == ("custom_tool", "understand_image")
    (read,) = of(records, WorkspaceFileRead)
    assert read.object is not None and read.object.size == len(PNG) and read.failure is None
    (done,) = of(records, ToolCallCompleted)
    assert json.loads(done.content)["response"] == "A single red dot."
    view = project(records[0].run_id, records)  # replay shows what was read, from the log alone
    assert f"read {(media / 'dot.png').resolve()} ({len(PNG)} bytes) for a tool" in [
        e.text for e in view.timeline if e.kind == "media"]


async def test_understand_audio_transcribes_each_file(
    fresh_nats, openai_env: FakeOpenAI, tmp_path: Path, massgen_home: Path
):
    fake = openai_env
    media = tmp_path / "sounds"
    media.mkdir()
    (media / "a.wav").write_bytes(WAV)
    (media / "b.mp3").write_bytes(fake.speech_mp3)
    _, seen = await run_agent(fresh_nats, fake, massgen_home, ["understand_audio"], [
        ("custom_tool__understand_audio", {"audio_paths": [str(media / "a.wav"), str(media / "b.mp3")]})], media)
    asked = [r.body for r in fake.received() if r.path == "/v1/audio/transcriptions"]
    assert asked == [{"model": "gpt-4o-transcribe", "file": ["a.wav", len(WAV)], "response_format": "text"},
                     {"model": "gpt-4o-transcribe", "file": ["b.mp3", len(fake.speech_mp3)], "response_format": "text"}]
    result = json.loads(seen[0])
    assert [t["transcription"] for t in result["transcriptions"]] == [
        f"Transcript of a.wav ({len(WAV)} bytes).", f"Transcript of b.mp3 ({len(fake.speech_mp3)} bytes)."]
    assert result["operation"] == "generate_text_with_input_audio" and result["success"] is True


async def test_understand_video_sends_key_frames(fresh_nats, openai_env: FakeOpenAI, tmp_path: Path, massgen_home):
    fake = openai_env
    media = tmp_path / "film"
    media.mkdir()
    (media / "clip.mp4").write_bytes(mp4())
    fake.script("gpt-4.1-mini", Reply(text="Colours change every frame."))
    _, seen = await run_agent(fresh_nats, fake, massgen_home, ["understand_video"], [
        ("custom_tool__understand_video", {"video_path": str(media / "clip.mp4"), "num_frames": 3,
                                           "model": "gpt-4.1-mini"})], media)
    (vision,) = fake.requests("gpt-4.1-mini")
    parts = vision["messages"][0]["content"]
    assert parts[0]["type"] == "text" and "happening in this video" in parts[0]["text"]
    assert [p["image_url"]["url"][:23] for p in parts[1:]] == ["data:image/jpeg;base64,"] * 3
    result = json.loads(seen[0])
    assert (result["num_frames_extracted"], result["response"]) == (3, "Colours change every frame.")


async def test_understand_file_reads_a_file_the_agent_wrote_by_its_relative_path(
    fresh_nats, fake: FakeOpenAI, massgen_home: Path, monkeypatch: pytest.MonkeyPatch
):
    # An `openai` agent: the tool uses the agent's own endpoint and key, not OPENAI_API_KEY.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-agent-own")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    fake.script("gpt-4.1", Reply(text="It lists three chores."))
    _, seen = await run_agent(fresh_nats, fake, massgen_home, ["understand_file"], [
        ("mcp__filesystem__write_file", {"path": "todo.md", "content": "- wash\n- cook\n- read\n"}),
        ("custom_tool__understand_file", {"file_path": "todo.md", "prompt": "How many chores?"})],
        agent_type="openai")
    (asked,) = fake.requests("gpt-4.1")
    assert asked["messages"][0]["content"][0]["text"] == (
        "File: todo.md\n\n```\n- wash\n- cook\n- read\n\n```\n\nHow many chores?")
    result = json.loads(seen[-1])
    assert (result["file_type"], result["chars_read"], result["truncated"], result["response"]) == (
        "text", 21, False, "It lists three chores.")
    assert result["file_path"].endswith("/workspaces/seer/todo.md")


async def test_the_generation_tools_save_their_files_in_the_workspace(
    fresh_nats, openai_env: FakeOpenAI, tmp_path: Path, massgen_home: Path
):
    fake = openai_env
    media = tmp_path / "in"
    media.mkdir()
    (media / "cat.png").write_bytes(PNG)
    fake.script("gpt-4o-audio-preview", Reply(text="Golden retrievers are gentle family dogs."))
    records, seen = await run_agent(
        fresh_nats, fake, massgen_home,
        ["text_to_image_generation", "image_to_image_generation", "text_to_speech_transcription_generation",
         "text_to_speech_continue_generation"], [
            ("custom_tool__text_to_image_generation", {"prompt": "a cat in space", "storage_path": "art"}),
            ("custom_tool__image_to_image_generation", {"base_image_paths": [str(media / "cat.png")],
                                                        "prompt": "make it blue"}),
            ("custom_tool__text_to_speech_transcription_generation", {
                "input_text": "Hello there", "voice": "coral", "instructions": "cheerful", "audio_format": "wav"}),
            ("custom_tool__text_to_speech_continue_generation", {"prompt": "Is a golden retriever a good dog?",
                                                                 "audio_format": "mp3"}),
        ], media)
    made, saved = of(records, MediaGenerated), of(records, MediaSaved)
    assert [(m.kind, m.model, m.directory) for m in made] == [
        ("image", "gpt-image-1", "art"), ("image", "gpt-image-1", ""), ("audio", "gpt-4o-mini-tts", ""),
        ("audio", "gpt-4o-audio-preview", "")]
    assert [Path(s.path).read_bytes() for s in saved] == [fake.image_png, fake.image_png, fake.speech_mp3,
                                                          fake.speech_mp3]
    assert Path(saved[0].path).parent.name == "art" and Path(saved[0].path).parent.parent.name == "seer"
    results = [json.loads(s) for s in seen]
    assert results[0]["images"][0]["file_path"] == saved[0].path and results[0]["total_images"] == 1
    assert results[2]["audio_file"]["format"] == "wav" and results[2]["audio_file"]["file_path"] == saved[2].path
    assert results[3]["text_response"] == "Golden retrievers are gentle family dogs."
    (edit,) = [r.body for r in fake.received() if r.path == "/v1/images/edits"]
    assert (edit["images"], edit["prompt"], edit["model"]) == ([["cat.png", len(PNG)]], "make it blue", "gpt-image-1")
    assert fake.requests("gpt-image-1")[0]["prompt"] == "a cat in space"
    (speech,) = fake.requests("gpt-4o-mini-tts")
    assert speech == {"model": "gpt-4o-mini-tts", "voice": "coral", "input": "Hello there", "response_format": "wav",
                      "instructions": "cheerful"}
    (spoken,) = fake.requests("gpt-4o-audio-preview")
    assert spoken["modalities"] == ["text", "audio"] and spoken["audio"] == {"voice": "alloy", "format": "mp3"}


@pytest.mark.filterwarnings("ignore:The Sora API is scheduled:DeprecationWarning")
async def test_text_to_video_and_file_generation_run_the_workers_video_and_document_generation(
    fresh_nats, openai_env: FakeOpenAI, tmp_path: Path, massgen_home: Path
):
    fake = openai_env
    media = tmp_path / "in"
    media.mkdir()
    fake.script("gpt-4o", Reply(text="# Dogs\n\nGolden retrievers are gentle family dogs."))
    records, seen = await run_agent(
        fresh_nats, fake, massgen_home, ["text_to_video_generation", "text_to_file_generation"], [
            ("custom_tool__text_to_video_generation", {"prompt": "a dog on a beach", "seconds": 8,
                                                       "storage_path": "clips"}),
            ("custom_tool__text_to_file_generation", {"prompt": "a page on dogs", "file_format": "md",
                                                      "filename": "dogs"}),
        ], media)
    made, saved = of(records, MediaGenerated), of(records, MediaSaved)
    assert [(m.kind, m.model, m.directory) for m in made] == [("video", "sora-2", "clips"), ("file", "gpt-4o", "")]
    assert Path(saved[0].path).read_bytes() == fake.video_mp4 and Path(saved[0].path).parent.name == "clips"
    assert Path(saved[1].path).name == "dogs.md"
    assert "Golden retrievers" in Path(saved[1].path).read_text()
    (video,) = [r.body for r in fake.received() if r.path == "/v1/videos"]
    assert (video["prompt"], video["model"], video["seconds"]) == ("a dog on a beach", "sora-2", "8")
    assert not any(s.startswith("Error") for s in seen)


async def test_bad_files_come_back_to_the_model_as_tool_errors_without_a_model_call(
    fresh_nats, openai_env: FakeOpenAI, tmp_path: Path, massgen_home: Path
):
    fake = openai_env
    media = tmp_path / "ctx"
    media.mkdir()
    (media / "notes.txt").write_text("not an image")
    (tmp_path / "secret.png").write_bytes(PNG)
    records, seen = await run_agent(fresh_nats, fake, massgen_home, ["understand_image", "text_to_image_generation"], [
        ("custom_tool__understand_image", {"image_path": "missing.png"}),
        ("custom_tool__understand_image", {"image_path": str(tmp_path / "secret.png")}),
        ("custom_tool__understand_image", {"image_path": str(media / "notes.txt")}),
        ("custom_tool__understand_image", {"prompt": "no path"}),
        ("custom_tool__text_to_image_generation", {"prompt": "a cat", "storage_path": str(tmp_path / "elsewhere")}),
    ], media)
    assert seen[0].startswith("Error: file does not exist: ") and seen[0].endswith("/workspaces/seer/missing.png")
    assert seen[1].startswith(f"Error: path {str(tmp_path / 'secret.png')!r} resolves outside the allowed directories")
    assert seen[2] == (f"Error: {media / 'notes.txt'}: `image_path` takes .jpeg, .jpg, .png files")
    assert seen[3].startswith("Error: invalid arguments for tool: 'image_path' is a required property")
    assert seen[4].startswith(f"Error: path {str(tmp_path / 'elsewhere')!r} resolves outside the allowed directories")
    assert not (tmp_path / "elsewhere").exists()
    assert fake.requests("gpt-4.1") == []
    assert len(of(records, ToolCallFailed)) == 5 and len(of(records, WorkspaceFileRequested)) == 2
