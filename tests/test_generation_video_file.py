"""``enable_video_generation`` and ``enable_file_generation`` (MassGen spec §2.8): ``generate_video``
through the official SDK's Videos API (create, poll, download) and ``generate_file`` (the backend's model
writes the content, a library writes PDF/DOCX/XLSX/PPTX), both against FakeOpenAI; then whole runs on a
real nats-server where a scripted model calls them, the files land in the workspace and replay shows them,
and a failed generation is a tool result the model reads, not a failed turn."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
import zlib
from pathlib import Path

import docx
import msgspec
import openpyxl
import pptx
import pytest
import yaml

from harness import Stack, of
from massgen_agent_worker import documents, generation
from massgen_es.config import BackendConfig, parse_config
from massgen_es.errors import ConfigError, ProviderError, ProviderTimeout, ToolArgumentError
from massgen_es.events import MediaGenerated, MediaSaved, RunCompleted, TurnFailed, UsageRecorded
from massgen_es.testing.fake_openai import FakeOpenAI, Reply
from massgen_replay import lanes, render
from massgen_replay.read import project

# openai 3.x marks the Videos API deprecated (OpenAI's Sora API shut down on 2026-09-24); the routes are
# what other OpenAI-compatible endpoints keep serving, and what FakeOpenAI serves here.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API is scheduled:DeprecationWarning")

KEY_ENV = "MASSGEN_TEST_GEN_KEY"
WRITER = "You are a professional content writer"
REPORT = "# Quarterly Report\n\nRevenue grew by 12% & costs fell.\n\n## Outlook\n- Hire two engineers\n- Ship v2"


@pytest.fixture
def cfg(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> BackendConfig:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    return msgspec.convert({"type": "openai", "model": "gpt-writer", "base_url": fake.base_url, "api_key_env": KEY_ENV,
                            "enable_video_generation": True, "enable_file_generation": True}, BackendConfig)


def pdf_text(data: bytes) -> str:
    """The text-drawing operators of reportlab's (ASCII85 + Flate) page streams."""
    out = []
    for m in re.finditer(rb"stream\r?\n(.*?)endstream", data, re.S):
        out.append(zlib.decompress(base64.a85decode(m[1].strip().removesuffix(b"~>"))).decode("latin-1"))
    return "\n".join(out)


# --- config ------------------------------------------------------------------------------------------


def test_video_and_file_generation_keys_load_on_openai_and_offer_their_tools():
    loaded = parse_config({"agents": [{"id": "a", "backend": {
        "type": "openai", "model": "gpt-4o", "cwd": "ws", "enable_file_generation": True,
        "enable_video_generation": True}}]})
    backend = loaded.agents[0].backend
    assert [t.name for t in generation.tools(backend)] == ["generate_video", "generate_file"]


CORPUS = Path(__file__).parent / "massgen_configs" / "corpus" / "tools" / "custom_tools" / "multimodal_tools"


@pytest.mark.parametrize("name", ["text_to_video_generation_single", "text_to_video_generation_multi",
                                  "text_to_file_generation_single", "text_to_file_generation_multi"])
def test_massgens_generation_configs_load_with_their_keys_once_the_bundled_tools_are_set_aside(name):
    # These configs also list MassGen's bundled tools (text_to_*_generation, understand_*), which are
    # another part's work; without them, what is left is this part's: the keys and their tools.
    data = yaml.safe_load((CORPUS / f"{name}.yaml").read_text())
    for agent in data["agents"]:
        agent["backend"].pop("custom_tools")
    loaded = parse_config(data, f"{name}.yaml")
    key = "enable_video_generation" if "video" in name else "enable_file_generation"
    for agent in loaded.agents:
        assert getattr(agent.backend, key) is True
        assert [t.name for t in generation.tools(agent.backend)] == [
            "generate_video" if "video" in name else "generate_file"]


@pytest.mark.parametrize(("key", "what"), [("enable_video_generation", "video"),
                                           ("enable_file_generation", "documents")])
def test_video_and_file_generation_are_refused_where_the_provider_has_no_such_api(key, what):
    with pytest.raises(ConfigError) as exc:
        parse_config({"agents": [{"id": "a", "backend": {"type": "claude", "model": "m", key: True}}]})
    assert f"`agents[0].backend.{key}`" in str(exc.value)
    assert f"generates {what} only through the provider API of backend type openai" in str(exc.value)


# --- generate_video ----------------------------------------------------------------------------------


async def test_generate_video_creates_a_job_polls_it_and_downloads_the_mp4_logging_its_progress(
    fake: FakeOpenAI, cfg, caplog: pytest.LogCaptureFixture
):
    fake.video_polls = 3
    with caplog.at_level(logging.INFO, logger=generation.__name__):
        made = await generation.generate_video(cfg, "a neon-lit alley at night", seconds=8, stem="video_c1")
    job = next(r.path.rsplit("/", 1)[-1] for r in fake.received() if r.path.startswith("/v1/videos/"))
    assert [r.getMessage() for r in caplog.records] == [
        f"video job {job}: queued 0%", f"video job {job}: in_progress 25%", f"video job {job}: in_progress 50%",
        f"video job {job}: in_progress 75%", f"video job {job}: completed 100%"]
    assert (made.kind, made.data, made.mime_type, made.file_name, made.model) == (
        "video", fake.video_mp4, "video/mp4", "video_c1.mp4", "sora-2")
    assert fake.requests("sora-2") == [{"prompt": "a neon-lit alley at night", "model": "sora-2", "seconds": "8"}]
    seen = [(r.path, r.query) for r in fake.received() if r.path.startswith("/v1/videos/")]
    job = seen[0][0]
    assert seen == [(job, {})] * 4 + [(job + "/content", {"variant": "video"})]  # 3 in progress, then done


async def test_a_failed_video_job_is_a_provider_error_with_the_apis_reason(fake: FakeOpenAI, cfg):
    fake.video_failure = ("moderation_blocked", "The prompt was blocked by moderation.")
    with pytest.raises(ProviderError, match=r"failed \(moderation_blocked: The prompt was blocked by moderation"):
        await generation.generate_video(cfg, "something forbidden")
    assert not [r for r in fake.received() if r.path.endswith("/content")]


async def test_a_refused_video_request_is_a_provider_error_naming_the_status(fake: FakeOpenAI, cfg):
    fake.video_refusal = (403, "Sora is not enabled for this organization")
    with pytest.raises(ProviderError, match="HTTP 403: .*Sora is not enabled for this organization"):
        await generation.generate_video(cfg, "a cat")


async def test_a_video_job_longer_than_request_timeout_is_a_timeout(fake: FakeOpenAI, cfg):
    fake.video_polls, fake.poll_after_ms = 1000, 100
    slow = msgspec.structs.replace(cfg, request_timeout_seconds=0.5)
    with pytest.raises(ProviderTimeout, match="not done within 0.5 s"):
        await generation.generate_video(slow, "a very long video")
    assert len([r for r in fake.received() if r.path.startswith("/v1/videos/")]) < 10


async def test_cancelling_a_video_generation_stops_its_polling(fake: FakeOpenAI, cfg):
    # what happens when the run is cancelled or ends: the worker cancels the turn's task
    fake.video_polls, fake.poll_after_ms = 1000, 20

    def polls() -> int:
        return len([r for r in fake.received() if r.path.startswith("/v1/videos/")])

    task = asyncio.ensure_future(generation.generate_video(cfg, "a long video"))
    while polls() < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stopped = polls()
    await asyncio.sleep(0.2)
    assert polls() == stopped


@pytest.mark.parametrize(("kw", "message"), [({"seconds": 5}, "seconds must be one of 4, 8, 12"),
                                             ({"size": "10x10"}, "size must be one of 720x1280")])
async def test_bad_video_arguments_are_tool_argument_errors_before_any_call(fake: FakeOpenAI, cfg, kw, message):
    with pytest.raises(ToolArgumentError, match=message):
        await generation.generate_video(cfg, "a cat", **kw)
    assert fake.received() == []


# --- generate_file -----------------------------------------------------------------------------------


def _read(fmt: str, data: bytes) -> str:
    if fmt == "pdf":
        return pdf_text(data)
    if fmt == "docx":
        return "\n".join(p.text for p in docx.Document(io.BytesIO(data)).paragraphs)
    if fmt == "pptx":
        deck = pptx.Presentation(io.BytesIO(data))
        return "\n".join(s.text_frame.text for slide in deck.slides for s in slide.shapes if s.has_text_frame)
    return data.decode()


@pytest.mark.parametrize("fmt", ["pdf", "docx", "pptx", "md", "txt"])
async def test_generate_file_has_the_backends_model_write_the_content_and_renders_it(fake: FakeOpenAI, cfg, fmt):
    fake.script("gpt-writer", Reply(text=REPORT))
    made = await generation.generate_file(cfg, "A quarterly report", file_format=fmt, filename="q3_report")
    (body,) = fake.requests("gpt-writer")
    assert body["input"] == "A quarterly report" and body["instructions"].startswith(WRITER)
    assert (made.kind, made.file_name, made.mime_type, made.model) == (
        "file", f"q3_report.{fmt}", documents.FORMATS[fmt], "gpt-writer")
    text = _read(fmt, made.data)
    for piece in ("Quarterly Report", "Revenue grew by 12% & costs fell.", "Outlook", "Hire two engineers"):
        assert piece in text
    assert made.usage is not None and made.usage.output_tokens > 0
    assert made.preview.startswith("# Quarterly Report")


async def test_generate_file_writes_a_spreadsheet_from_csv_with_numbers_as_numbers(fake: FakeOpenAI, cfg):
    fake.script("gpt-writer", Reply(text="Quarter,Revenue,Growth\nQ1,1200,0.05\nQ2,1350,0.125"))
    made = await generation.generate_file(cfg, "Revenue by quarter", file_format="xlsx")
    assert "CSV" in fake.requests("gpt-writer")[0]["instructions"]
    sheet = openpyxl.load_workbook(io.BytesIO(made.data)).active
    assert sheet is not None
    assert list(sheet.values) == [("Quarter", "Revenue", "Growth"), ("Q1", 1200, 0.05), ("Q2", 1350, 0.125)]
    assert made.file_name == "document.xlsx"


async def test_a_model_given_filename_never_leaves_the_workspace_root(fake: FakeOpenAI, cfg):
    fake.script("gpt-writer", Reply(text="hello"))
    made = await generation.generate_file(cfg, "Say hello", file_format="txt", filename="../../etc/passwd.txt")
    assert made.file_name == "passwd.txt"


async def test_a_failed_content_call_or_empty_content_is_a_provider_error(fake: FakeOpenAI, cfg):
    fake.script("gpt-writer", Reply(status=400, error_message="context length exceeded"), Reply(text="   "))
    with pytest.raises(ProviderError, match="HTTP 400: .*context length exceeded"):
        await generation.generate_file(cfg, "A report", file_format="pdf")
    with pytest.raises(ProviderError, match="wrote no content"):
        await generation.generate_file(cfg, "A report", file_format="pdf")
    with pytest.raises(ToolArgumentError, match="file_format must be one of pdf, docx"):
        await generation.generate_file(cfg, "A report", file_format="odt")


# --- whole runs ----------------------------------------------------------------------------------------


def _outputs(body: dict) -> list[str]:
    items = body.get("input") or []
    return [i["output"] for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]


def _tools(body: dict) -> list[str]:
    return [t.get("name") for t in body.get("tools") or []]


def maker(final: str, writer: Reply | None = None):
    """The agent's model (Responses API): as the document writer, ``writer``; in its first turn, one
    generation call after another (video, then a PDF), then an answer; then a vote; presenting (no
    workflow tools), the final text."""

    def handle(body: dict) -> Reply:
        if str(body.get("instructions") or "").startswith(WRITER):
            return writer or Reply(text=REPORT)
        tools, done = _tools(body), _outputs(body)
        if "vote" in tools:
            return Reply(tool_calls=(("vote", {"agent_id": "agent1", "reason": "it has the files"}),))
        if "new_answer" not in tools:
            return Reply(text=final)
        if not done:
            return Reply(tool_calls=(("generate_video", {"prompt": "a neon-lit alley", "seconds": "4"}),))
        if len(done) == 1:
            return Reply(tool_calls=(("generate_file", {"prompt": "A quarterly report", "file_format": "pdf",
                                                        "filename": "report"}),))
        return Reply(tool_calls=(("new_answer", {"content": " | ".join(done)}),))

    return handle


def run_config(fake: FakeOpenAI, model: str) -> dict:
    return {
        "agents": [{"id": "maker", "backend": {
            "type": "openai", "model": model, "base_url": fake.base_url, "api_key_env": KEY_ENV, "cwd": "ws",
            "enable_video_generation": True, "enable_file_generation": True}}],
        "timeout_settings": {"orchestrator_timeout_seconds": 60, "presentation_timeout_seconds": 30},
    }


async def test_a_run_generates_a_video_and_a_pdf_into_the_workspace_and_replay_shows_them(
    fresh_nats, fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    fake.default("gen-run", maker("Made video and report."))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        s.broker(tmp_path)
        run_id = await s.submit(run_config(fake, "gen-run"), "Make a clip and a report.")
        records = await s.wait_done(run_id, timeout_s=60)
    assert of(records, RunCompleted)[0].final_answer == "Made video and report."
    made = {m.kind: m for m in of(records, MediaGenerated)}
    assert set(made) == {"video", "file"}
    video, report = made["video"], made["file"]
    workspace = tmp_path / "runs" / run_id / "workspaces" / "maker"
    saved = {Path(m.path).name: m for m in of(records, MediaSaved)}
    assert set(saved) == {video.file_name, "report.pdf"} and report.file_name == "report.pdf"
    assert (workspace / video.file_name).read_bytes() == fake.video_mp4
    assert "Revenue grew by 12% & costs fell." in pdf_text((workspace / "report.pdf").read_bytes())
    assert (video.model, video.mime_type, report.model, report.mime_type) == (
        "sora-2", "video/mp4", "gen-run", "application/pdf")
    # what the model read back: the file names, and the start of the document
    answer_call = [b for b in fake.requests("gen-run") if "new_answer" in _tools(b) and len(_outputs(b)) == 2][0]
    told = _outputs(answer_call)
    assert told[0].startswith(f"Generated video {video.file_name} ({len(fake.video_mp4)} bytes, video/mp4), saved "
                              f"in your workspace as {video.file_name}.")
    assert "saved in your workspace as report.pdf.\nIt begins:\n# Quarterly Report" in told[1]
    # the document's content call is counted like any model call
    assert any(u.model == "gen-run" and u.usage.output_tokens > 0 and u.turn_id == video.turn_id
               for u in of(records, UsageRecorded))
    view = project(run_id, records)
    lines = [e for e in view.timeline if e.kind == "media"]
    texts = [e.text for e in lines]
    assert any(t.startswith(f"video {video.file_name} ({len(fake.video_mp4)} bytes, video/mp4, sora-2") for t in texts)
    assert any(t.startswith("file report.pdf (") and "application/pdf, gen-run" in t for t in texts)
    assert f"saved in the workspace as {workspace / 'report.pdf'} ({report.object.size} bytes)" in texts
    assert all(render.progress(view, e) is not None for e in lines)
    shown = {i.summary: i for i in lanes.items(records) if i.type == "media.generated"}  # the HTML timeline
    head = f"generated video {video.file_name} ({len(fake.video_mp4)} bytes, video/mp4)"
    assert shown[head].lane == "maker" and "prompt:\na neon-lit alley" in shown[head].body
    assert any(k.startswith("generated file report.pdf (") for k in shown)


async def test_a_failed_video_job_is_a_tool_error_the_model_reads_and_the_run_goes_on(
    fresh_nats, fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    fake.video_failure = ("moderation_blocked", "The prompt was blocked by moderation.")
    # the PDF's content call fails too
    fake.default("gen-fail", maker("No files, sorry.", Reply(status=500, error_message="writer is down")))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        s.broker(tmp_path)
        run_id = await s.submit(run_config(fake, "gen-fail"), "Make a clip and a report.")
        records = await s.wait_done(run_id, timeout_s=60)
    assert of(records, RunCompleted)[0].final_answer == "No files, sorry."
    assert not of(records, TurnFailed) and not of(records, MediaGenerated) and not of(records, MediaSaved)
    answer_call = [b for b in fake.requests("gen-fail") if "new_answer" in _tools(b) and len(_outputs(b)) == 2][0]
    video_told, file_told = _outputs(answer_call)
    assert video_told.startswith("Error: openai endpoint: video job video_")
    assert "failed (moderation_blocked: The prompt was blocked by moderation.)" in video_told
    assert file_told.startswith("Error: openai endpoint returned HTTP 500") and "writer is down" in file_told
    assert json.dumps(answer_call).count("Error:") == 2
