"""``generate_image``, ``generate_audio``, ``generate_video`` and ``generate_file``: the tools
``enable_image_generation``, ``enable_audio_generation``, ``enable_video_generation`` and
``enable_file_generation`` offer (MassGen spec §2.8), run by the worker through the agent's provider's own
API, since the worker holds the provider key (the executor never does).

Only the ``openai`` adapter has them (``massgen_es.media.GENERATES``; config validation refuses the keys
elsewhere), on the backend's endpoint and key:

- image: the Images API (``images.generate``, :data:`IMAGE_MODEL`, base64 PNG back);
- audio: text-to-speech (``audio.speech.create``, :data:`SPEECH_MODEL`, MP3 back);
- video: the Videos API (Sora, :data:`VIDEO_MODEL`): ``videos.create`` starts a job, ``videos.retrieve``
  is polled (at the interval the API asks for in ``openai-poll-after-ms``, else :data:`POLL_S`) until it
  completes or fails, then ``videos.download_content`` fetches the MP4 (:func:`generate_video`);
- file: the backend's own model writes the content (one Responses API call), and :mod:`.documents`
  renders it as PDF, DOCX, XLSX, PPTX, Markdown or text (:func:`generate_file`).

Each of :func:`generate_image`, :func:`generate_audio`, :func:`generate_video` and :func:`generate_file`
takes a prompt and returns a :class:`Generated`; :func:`generate` maps a tool call onto them. The
conversation stores the bytes in the Object Store, records ``media.generated`` and, for an agent with
``cwd``, waits for the MCP broker to write the file into the workspace (``media.saved``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import openai
from openai.types import VideoSeconds, VideoSize

from massgen_agent_worker import documents
from massgen_agent_worker.providers import chatcompletion
from massgen_es.config import BackendConfig
from massgen_es.errors import ConfigError, ProviderError, ProviderServerError, ProviderTimeout, ToolArgumentError
from massgen_es.events import ToolCall, ToolSpec, Usage

log = logging.getLogger(__name__)

IMAGE_MODEL = "gpt-image-1"
SPEECH_MODEL = "gpt-4o-mini-tts"
VIDEO_MODEL = "sora-2"
"""MassGen's ``text_to_video_generation`` default."""
SIZES = ("auto", "1024x1024", "1536x1024", "1024x1536")
AUDIO_FORMATS = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
                 "wav": "audio/wav", "pcm": "audio/pcm"}
"""The speech API's ``response_format`` values and their MIME types."""
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer")
VIDEO_SECONDS = ("4", "8", "12")
VIDEO_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
"""What the Videos API accepts (``openai.types.VideoSeconds`` / ``VideoSize``)."""
POLL_S = 2.0
"""Seconds between polls of a video job when the API names no interval (MassGen polls every 2 s)."""

GENERATE_IMAGE = ToolSpec(
    name="generate_image",
    description="Generate an image from a text prompt; you get back the name of the PNG file it was saved as.",
    parameters={
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "description": "What the image shows, in detail."},
            "size": {"type": "string", "enum": list(SIZES), "description": "Width x height (default: auto)."},
        },
        "required": ["prompt"],
    },
)
GENERATE_AUDIO = ToolSpec(
    name="generate_audio",
    description="Turn text into speech; you get back the name of the MP3 file it was saved as.",
    parameters={
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "The text to speak."},
            "voice": {"type": "string", "enum": list(VOICES), "description": "The voice (default: alloy)."},
        },
        "required": ["text"],
    },
)
GENERATE_VIDEO = ToolSpec(
    name="generate_video",
    description="Generate a short video from a text prompt (takes a minute or more); you get back the name of "
                "the MP4 file it was saved as.",
    parameters={
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "description": "What the video shows: subject, setting, camera, style."},
            "seconds": {"type": "string", "enum": list(VIDEO_SECONDS), "description": "Length (default: 4)."},
            "size": {"type": "string", "enum": list(VIDEO_SIZES), "description": "Width x height (default: "
                     "the API's, 720x1280)."},
        },
        "required": ["prompt"],
    },
)
GENERATE_FILE = ToolSpec(
    name="generate_file",
    description="Write a document (report, article, table, slides) from a description and save it as a file; "
                "you get back the file's name and the start of its content.",
    parameters={
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "description": "What the document contains, in detail."},
            "file_format": {"type": "string", "enum": list(documents.FORMATS),
                            "description": "pdf, docx (Word), xlsx (spreadsheet), pptx (slides), md or txt."},
            "filename": {"type": "string", "description": "File name without extension (optional)."},
        },
        "required": ["prompt", "file_format"],
    },
)
NAMES = frozenset({GENERATE_IMAGE.name, GENERATE_AUDIO.name, GENERATE_VIDEO.name, GENERATE_FILE.name})


@dataclass(frozen=True)
class Generated:
    """A generated file: what ``media.generated`` records, with the bytes.

    Attributes:
        usage: tokens of a model call made for it (``generate_file``'s content), else None.
        preview: text the model gets back with the file name (``generate_file``: the content's start).
    """

    kind: Literal["image", "audio", "video", "file"]
    data: bytes
    mime_type: str
    file_name: str
    prompt: str
    model: str
    usage: Usage | None = None
    preview: str = ""


def tools(cfg: BackendConfig) -> tuple[ToolSpec, ...]:
    """The generation tools ``cfg`` enables."""
    return tuple(spec for spec, on in (
        (GENERATE_IMAGE, cfg.enable_image_generation), (GENERATE_AUDIO, cfg.enable_audio_generation),
        (GENERATE_VIDEO, cfg.enable_video_generation), (GENERATE_FILE, cfg.enable_file_generation)) if on)


def _label(cfg: BackendConfig) -> str:
    return f"{cfg.type} endpoint"


def _choice(tool: str, name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ToolArgumentError(f"{tool}: {name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


async def generate_image(
    cfg: BackendConfig, prompt: str, *, size: str = "auto", stem: str = "image",
    client: openai.AsyncOpenAI | None = None, inputs: Sequence[tuple[str, bytes]] = (),
) -> Generated:
    """A PNG of ``prompt`` from the Images API, named ``<stem>.png``: generated, or the ``inputs`` images
    (file name, bytes) edited (the Images API's edits).

    Raises:
        ToolArgumentError: ``size`` is not one of :data:`SIZES`.
        ProviderError: the call failed, or sent no image.
        ConfigError: the API-key variable is not set.
    """
    _choice("generate_image", "size", size, SIZES)
    client = client or chatcompletion.client(cfg)
    try:
        if inputs:
            response = await client.images.edit(
                model=IMAGE_MODEL, image=list(inputs), prompt=prompt, size=cast(Any, size), n=1)
        else:
            response = await client.images.generate(model=IMAGE_MODEL, prompt=prompt, size=cast(Any, size), n=1)
    except openai.APIError as exc:
        raise chatcompletion.map_openai_error(exc, _label(cfg)) from exc
    b64 = response.data[0].b64_json if response.data else None
    try:
        data = base64.b64decode(b64 or "", validate=True)
    except binascii.Error:
        data = b""
    if not data:
        raise ProviderServerError(f"{_label(cfg)} sent no image data for generate_image")
    return Generated("image", data, "image/png", f"{stem}.png", prompt, IMAGE_MODEL)


async def generate_audio(
    cfg: BackendConfig, text: str, *, voice: str = "alloy", stem: str = "audio", fmt: str = "mp3",
    instructions: str | None = None, model: str | None = None, client: openai.AsyncOpenAI | None = None,
) -> Generated:
    """``text`` spoken (text-to-speech, ``model`` or :data:`SPEECH_MODEL`, with the optional voice
    ``instructions``), as ``<stem>.<fmt>``.

    Raises:
        ToolArgumentError: ``voice`` is not one of :data:`VOICES`, or ``fmt`` not one of :data:`AUDIO_FORMATS`.
        ProviderError: the call failed.
        ConfigError: the API-key variable is not set.
    """
    _choice("generate_audio", "voice", voice, VOICES)
    _choice("generate_audio", "format", fmt, tuple(AUDIO_FORMATS))
    client, model = client or chatcompletion.client(cfg), model or SPEECH_MODEL
    try:
        response = await client.audio.speech.create(
            model=model, voice=voice, input=text, response_format=cast(Any, fmt),
            instructions=instructions or openai.omit)
    except openai.APIError as exc:
        raise chatcompletion.map_openai_error(exc, _label(cfg)) from exc
    return Generated("audio", response.content, AUDIO_FORMATS[fmt], f"{stem}.{fmt}", text, model)


async def generate_video(
    cfg: BackendConfig, prompt: str, *, seconds: int | str = 4, size: str | None = None, model: str = VIDEO_MODEL,
    stem: str = "video", client: openai.AsyncOpenAI | None = None,
) -> Generated:
    """An MP4 of ``prompt`` from the Videos API (Sora; MassGen spec §2.8, ``text_to_video_generation``),
    named ``<stem>.mp4``: create the job, poll it until it completes or fails (each change of status or
    progress logged), download the video.

    The whole job may take ``cfg.request_timeout_seconds``; cancelling the task (the run was cancelled or
    ended) stops the polling at once.

    Raises:
        ToolArgumentError: ``seconds`` not 4, 8 or 12, or ``size`` not one of :data:`VIDEO_SIZES`.
        ProviderError: a call failed; the job failed (the API's error code and message); the job was not done
            within ``request_timeout_seconds`` (:class:`ProviderTimeout`).
        ConfigError: the API-key variable is not set.
    """
    secs = _choice("generate_video", "seconds", str(seconds), VIDEO_SECONDS)
    if size is not None:
        _choice("generate_video", "size", size, VIDEO_SIZES)
    client, label = client or chatcompletion.client(cfg), _label(cfg)
    deadline = time.monotonic() + cfg.request_timeout_seconds
    try:
        video = await client.videos.create(prompt=prompt, model=model, seconds=cast(VideoSeconds, secs),
                                           size=cast(VideoSize, size) if size else openai.omit)
        seen = (video.status, video.progress)
        log.info("video job %s: %s %s%%", video.id, video.status, video.progress)
        while video.status in ("queued", "in_progress"):
            raw = await client.videos.with_raw_response.retrieve(video.id)
            video = raw.parse()
            if (video.status, video.progress) != seen:
                seen = (video.status, video.progress)
                log.info("video job %s: %s %s%%", video.id, video.status, video.progress)
            if video.status not in ("queued", "in_progress"):
                break
            wait_s = _poll_after_s(raw.headers)
            if time.monotonic() + wait_s > deadline:
                raise ProviderTimeout(f"{label}: video job {video.id} not done within "
                                      f"{cfg.request_timeout_seconds:g} s (request_timeout_seconds)")
            await asyncio.sleep(wait_s)
        if video.status != "completed":
            error = video.error
            why = f"{error.code}: {error.message}" if error else "no reason given"
            raise ProviderError(f"{label}: video job {video.id} {video.status} ({why})", retryable=False)
        content = await client.videos.download_content(video.id, variant="video")
    except openai.APIError as exc:
        raise chatcompletion.map_openai_error(exc, label) from exc
    if not content.content:
        raise ProviderServerError(f"{label} sent no video data for job {video.id}")
    return Generated("video", content.content, "video/mp4", f"{stem}.mp4", prompt, str(video.model))


def _poll_after_s(headers: Any) -> float:
    """The interval the API asks for (``openai-poll-after-ms``, as the SDK's own ``poll`` reads it), else
    :data:`POLL_S`."""
    try:
        return max(0.0, int(headers.get("openai-poll-after-ms")) / 1000)
    except (TypeError, ValueError):
        return POLL_S


def _file_stem(filename: str | None, default: str) -> str:
    """A bare file name stem from the model's ``filename`` (no directories, no extension, no odd
    characters; the broker writes into the workspace root), else ``default``."""
    stem = re.sub(r"[^\w.-]+", "_", (filename or "").replace("\\", "/").rsplit("/", 1)[-1]).strip("._")
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    return stem[:80] or default


async def generate_file(
    cfg: BackendConfig, prompt: str, *, file_format: str = "txt", filename: str | None = None,
    model: str | None = None, stem: str = "document", client: openai.AsyncOpenAI | None = None,
) -> Generated:
    """A ``file_format`` document of ``prompt`` (MassGen spec §2.8, ``text_to_file_generation``): the
    backend's model (or ``model``) writes the content in one Responses API call, told to produce only the
    document (:func:`documents.instructions`), and :func:`documents.render` writes the file, named
    ``<filename or stem>.<file_format>``. MassGen's default format, ``txt``, is kept.

    Raises:
        ToolArgumentError: ``file_format`` is not one of ``documents.FORMATS``.
        ProviderError: the call failed, or the model wrote nothing.
        ConfigError: the API-key variable is not set.
    """
    fmt = _choice("generate_file", "file_format", file_format.lower().lstrip("."), tuple(documents.FORMATS))
    writer = model or cfg.model
    if not writer:
        raise ConfigError("generate_file needs a model to write the content: set `backend.model`")
    client, label = client or chatcompletion.client(cfg), _label(cfg)
    try:
        response = await client.responses.create(model=writer, instructions=documents.instructions(fmt), input=prompt)
    except openai.APIError as exc:
        raise chatcompletion.map_openai_error(exc, label) from exc
    text = response.output_text.strip()
    if not text:
        raise ProviderServerError(f"{label}: {writer} wrote no content for generate_file", retryable=False)
    name = _file_stem(filename, stem)
    try:
        data = await asyncio.to_thread(documents.render, text, fmt, name)
    except Exception as exc:  # a writer library refusing the text: the model sees why
        raise ToolArgumentError(f"generate_file: writing the {fmt} file failed: {exc}") from exc
    u = response.usage
    usage = Usage(input_tokens=u.input_tokens, output_tokens=u.output_tokens) if u else None
    preview = text[:300] + ("..." if len(text) > 300 else "")
    return Generated("file", data, documents.FORMATS[fmt], f"{name}.{fmt}", prompt, str(response.model),
                     usage=usage, preview=preview)


def _arguments(call: ToolCall, required: str) -> dict[str, Any]:
    try:
        args = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        args = None
    if not isinstance(args, dict) or not isinstance(args.get(required), str) or not args[required].strip():
        raise ToolArgumentError(f"{call.name} needs a non-empty string `{required}`")
    return {k: v for k, v in args.items() if isinstance(k, str) and isinstance(v, str | int) and v != ""}


async def generate(
    cfg: BackendConfig, call: ToolCall, *, client: openai.AsyncOpenAI | None = None,
    inputs: Sequence[tuple[str, bytes]] = (),
) -> Generated:
    """Run a generation tool call (:data:`NAMES`) through the provider's API: ``client``, or the backend's
    own endpoint and key. The file is named after the call (``image_<call id>.png``; ``generate_file``:
    the model's ``filename`` if it gave one).

    MassGen's bundled generation tools (``massgen_es.custom_tools.bundled``) come here too: ``inputs``
    (file name, bytes) are images ``generate_image`` edits (the Images API's edits), and
    ``generate_audio`` takes the optional ``format`` (:data:`AUDIO_FORMATS`), ``instructions`` and
    ``model`` arguments of MassGen's ``text_to_speech_transcription_generation``.

    Raises:
        ToolArgumentError: missing or bad arguments, or not a generation tool.
        ProviderError: the API call failed (``chatcompletion.map_openai_error``) or sent nothing usable.
        ConfigError: the API-key variable is not set.
    """
    safe_id = "".join(ch for ch in call.id if ch.isalnum() or ch in "-_")[:40] or "call"
    if call.name == GENERATE_IMAGE.name:
        args = _arguments(call, "prompt")
        return await generate_image(cfg, args["prompt"], size=str(args.get("size", "auto")), stem=f"image_{safe_id}",
                                    client=client, inputs=inputs)
    if call.name == GENERATE_AUDIO.name:
        args = _arguments(call, "text")
        instructions, model = args.get("instructions"), args.get("model")
        return await generate_audio(cfg, args["text"], voice=str(args.get("voice", "alloy")), stem=f"audio_{safe_id}",
                                    fmt=str(args.get("format", "mp3")), client=client,
                                    instructions=str(instructions) if instructions else None,
                                    model=str(model) if model else None)
    if call.name == GENERATE_VIDEO.name:
        args = _arguments(call, "prompt")
        size, model = args.get("size"), args.get("model")
        return await generate_video(cfg, args["prompt"], seconds=args.get("seconds", 4),
                                    size=str(size) if size is not None else None, stem=f"video_{safe_id}",
                                    model=str(model) if model else VIDEO_MODEL, client=client)
    if call.name == GENERATE_FILE.name:
        args = _arguments(call, "prompt")
        filename, model = args.get("filename"), args.get("model")
        return await generate_file(cfg, args["prompt"], file_format=str(args.get("file_format", "txt")),
                                   filename=str(filename) if filename is not None else None,
                                   model=str(model) if model else None, stem=f"document_{safe_id}", client=client)
    raise ToolArgumentError(f"{call.name} is not a generation tool")
