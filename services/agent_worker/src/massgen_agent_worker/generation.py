"""``generate_image`` and ``generate_audio``: the tools ``enable_image_generation`` and
``enable_audio_generation`` offer (MassGen spec §2.8), run by the worker through the agent's provider's
own API, since the worker holds the provider key (the executor never does).

Only the ``openai`` adapter has them (``massgen_es.media.GENERATES``; config validation refuses the keys
elsewhere): the Images API (``images.generate``, :data:`IMAGE_MODEL`, base64 PNG back) and text-to-speech
(``audio.speech.create``, :data:`SPEECH_MODEL`, MP3 back), on the backend's endpoint and key. The
conversation stores the bytes in the Object Store, records ``media.generated`` and, for an agent with
``cwd``, waits for the MCP broker to write the file into the workspace (``media.saved``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import openai

from massgen_agent_worker.providers import chatcompletion
from massgen_es.config import BackendConfig
from massgen_es.errors import ProviderServerError, ToolArgumentError
from massgen_es.events import ToolCall, ToolSpec

IMAGE_MODEL = "gpt-image-1"
SPEECH_MODEL = "gpt-4o-mini-tts"
SIZES = ("auto", "1024x1024", "1536x1024", "1024x1536")
AUDIO_FORMATS = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
                 "wav": "audio/wav", "pcm": "audio/pcm"}
"""The speech API's ``response_format`` values and their MIME types."""
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer")

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
NAMES = frozenset({GENERATE_IMAGE.name, GENERATE_AUDIO.name})


@dataclass(frozen=True)
class Generated:
    """A generated file: what ``media.generated`` records, with the bytes."""

    kind: Literal["image", "audio"]
    data: bytes
    mime_type: str
    file_name: str
    prompt: str
    model: str


def tools(cfg: BackendConfig) -> tuple[ToolSpec, ...]:
    """The generation tools ``cfg`` enables."""
    return ((GENERATE_IMAGE,) if cfg.enable_image_generation else ()) + (
        (GENERATE_AUDIO,) if cfg.enable_audio_generation else ())


def _arguments(call: ToolCall, required: str) -> dict[str, str]:
    try:
        args = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        args = None
    if not isinstance(args, dict) or not isinstance(args.get(required), str) or not args[required].strip():
        raise ToolArgumentError(f"{call.name} needs a non-empty string `{required}`")
    return {k: v for k, v in args.items() if isinstance(k, str) and isinstance(v, str)}


async def generate(
    cfg: BackendConfig, call: ToolCall, *, client: openai.AsyncOpenAI | None = None,
    inputs: Sequence[tuple[str, bytes]] = (),
) -> Generated:
    """Run ``call`` (``generate_image`` or ``generate_audio``) through the provider's API: ``client``, or
    the backend's own endpoint and key.

    MassGen's bundled generation tools (``massgen_es.custom_tools.bundled``) come here too: ``inputs``
    (file name, bytes) are images ``generate_image`` edits (the Images API's edits), and
    ``generate_audio`` takes the optional ``format`` (:data:`AUDIO_FORMATS`), ``instructions`` and
    ``model`` arguments of MassGen's ``text_to_speech_transcription_generation``.

    Raises:
        ToolArgumentError: missing or bad arguments.
        ProviderError: the API call failed (``chatcompletion.map_openai_error``), or sent no image.
        ConfigError: the API-key variable is not set.
    """
    client = client or chatcompletion.client(cfg)
    label = f"{cfg.type} endpoint"
    safe_id = "".join(ch for ch in call.id if ch.isalnum() or ch in "-_")[:40] or "call"
    if call.name == GENERATE_IMAGE.name:
        args = _arguments(call, "prompt")
        size = args.get("size", "auto")
        if size not in SIZES:
            raise ToolArgumentError(f"generate_image: size must be one of {', '.join(SIZES)}")
        try:
            if inputs:
                response = await client.images.edit(
                    model=IMAGE_MODEL, image=[(name, data) for name, data in inputs], prompt=args["prompt"],
                    size=size, n=1)
            else:
                response = await client.images.generate(model=IMAGE_MODEL, prompt=args["prompt"], size=size, n=1)
        except openai.APIError as exc:
            raise chatcompletion.map_openai_error(exc, label) from exc
        b64 = response.data[0].b64_json if response.data else None
        try:
            data = base64.b64decode(b64 or "", validate=True)
        except binascii.Error:
            data = b""
        if not data:
            raise ProviderServerError(f"{label} sent no image data for generate_image")
        return Generated("image", data, "image/png", f"image_{safe_id}.png", args["prompt"], IMAGE_MODEL)
    if call.name == GENERATE_AUDIO.name:
        args = _arguments(call, "text")
        voice = args.get("voice", "alloy")
        if voice not in VOICES:
            raise ToolArgumentError(f"generate_audio: voice must be one of {', '.join(VOICES)}")
        fmt = args.get("format", "mp3")
        if fmt not in AUDIO_FORMATS:
            raise ToolArgumentError(f"generate_audio: format must be one of {', '.join(AUDIO_FORMATS)}")
        model = args.get("model") or SPEECH_MODEL
        extra = {"instructions": args["instructions"]} if args.get("instructions") else {}
        try:
            response = await client.audio.speech.create(
                model=model, voice=voice, input=args["text"], response_format=fmt, **extra)  # type: ignore[arg-type]
        except openai.APIError as exc:
            raise chatcompletion.map_openai_error(exc, label) from exc
        return Generated("audio", response.content, AUDIO_FORMATS[fmt], f"audio_{safe_id}.{fmt}", args["text"], model)
    raise ToolArgumentError(f"{call.name} is not a generation tool")
