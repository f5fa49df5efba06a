"""MassGen's bundled multimodal tools (``massgen/tool/_multimodal_tools/``, MassGen spec §2.8), run by the
agent worker rather than the executor: each calls an OpenAI model, and only the worker holds provider
keys. This table is what config resolution reads (:func:`massgen_es.custom_tools.resolve`): MassGen's
parameters for each function (its signature without ``allowed_paths`` and ``agent_cwd``: the agent's
roots decide what it may read and write), which arguments name files the tool reads from the agent's
workspace, and, for a tool that makes a file, the generation tool of the worker that makes it.

The worker (``massgen_agent_worker.multimodal``) runs a call: each file argument is read by the MCP
broker, which owns the workspaces (``workspace.file_requested`` → ``workspace.file_read``, the bytes in
the Object Store); the model's answer, or the generated file (``media.generated`` → ``media.saved``),
becomes the tool result, in MassGen's JSON shape. A tool with :attr:`WorkerTool.produces` needs no code
of its own: its arguments are renamed onto the worker's generation tool and run by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

MB = 1024 * 1024
IMAGE_TYPES = frozenset({".png", ".jpg", ".jpeg"})
AUDIO_TYPES = frozenset({".wav", ".mp3", ".m4a", ".mp4", ".ogg", ".flac", ".aac", ".wma", ".opus", ".webm"})
VIDEO_TYPES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".flv", ".wmv", ".webm", ".m4v", ".mpg", ".mpeg"})
NOT_DOCUMENTS = frozenset({
    ".exe", ".bin", ".dll", ".so", ".dylib", ".o", ".a", ".doc", ".xls", ".ppt", ".zip", ".tar", ".gz", ".bz2",
    ".7z", ".rar", ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".ico", ".svg", ".mp3", ".wav", ".ogg", ".flac",
    ".aac", ".mp4", ".avi", ".mov", ".mkv", ".flv", ".wmv", ".pyc", ".class", ".jar",
})
"""What ``understand_file`` refuses, as MassGen's does (images, audio, video have their own tools)."""


@dataclass(frozen=True)
class Read:
    """A file argument: the broker reads each path it names (a string, or a list of strings).

    Attributes:
        argument: the parameter's name.
        types: the file name endings accepted (lower case, with the dot); ``refused`` lists the ones
            refused instead, when any other is accepted.
        max_bytes: larger files are refused (the API's own limit for such a file).
    """

    argument: str
    max_bytes: int
    types: frozenset[str] = frozenset()
    refused: frozenset[str] = frozenset()

    def accepts(self, path: str) -> bool:
        """Whether ``path``'s ending is one this argument takes."""
        suffix = PurePath(path).suffix.lower()
        return suffix in self.types if self.types else suffix not in self.refused


@dataclass(frozen=True)
class WorkerTool:
    """One of MassGen's bundled tools the worker runs.

    Attributes:
        description: what the model is told (MassGen's docstring summary).
        parameters: MassGen's parameters as a JSON schema.
        operation: the ``operation`` field of MassGen's JSON result.
        reads: the file arguments.
        produces: the worker's generation tool that makes the file (``generate_image``, ``generate_audio``,
            ``generate_video``, ``generate_file``),
            or empty for a tool the worker implements itself.
        arguments: for ``produces``: the generation tool's argument for each of MassGen's (absent ones
            are not passed).
    """

    description: str
    parameters: dict[str, Any]
    operation: str
    reads: tuple[Read, ...] = ()
    produces: str = ""
    arguments: Mapping[str, str] = field(default_factory=dict)


def _schema(required: tuple[str, ...], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


def _text(description: str, default: str | None = None) -> dict[str, Any]:
    return {"type": "string", "description": description} | ({"default": default} if default is not None else {})


_PATHS = {"type": "array", "items": {"type": "string"}}
_STORAGE = _text("Directory for the file, relative to your workspace (default: the workspace itself).")

TOOLS: Mapping[str, WorkerTool] = {
    "understand_image": WorkerTool(
        "Understand and analyze an image (PNG/JPEG) with an OpenAI vision model: describe it or answer a "
        "question about it.",
        _schema(("image_path",),
                image_path=_text("Path to the image, relative to your workspace or absolute inside your roots."),
                prompt=_text("Question or instruction about the image.",
                             "What's in this image? Please describe it in detail."),
                model=_text("OpenAI model to use.", "gpt-4.1")),
        "understand_image", reads=(Read("image_path", 20 * MB, IMAGE_TYPES),)),
    "understand_audio": WorkerTool(
        "Transcribe audio file(s) to text with OpenAI's Transcription API; each file separately.",
        _schema(("audio_paths",),
                audio_paths=_PATHS | {"description": "Paths to audio files (WAV, MP3, M4A ...), relative to your "
                                                     "workspace or absolute inside your roots."},
                model=_text("OpenAI transcription model.", "gpt-4o-transcribe")),
        "generate_text_with_input_audio", reads=(Read("audio_paths", 25 * MB, AUDIO_TYPES),)),
    "understand_video": WorkerTool(
        "Understand and analyze a video by extracting key frames and asking an OpenAI vision model about "
        "them (the audio is not analyzed).",
        _schema(("video_path",),
                video_path=_text("Path to the video (MP4, AVI, MOV ...), relative to your workspace or absolute "
                                 "inside your roots."),
                prompt=_text("Question or instruction about the video.",
                             "What's happening in this video? Please describe the content, actions, and any "
                             "important details you observe across these frames."),
                num_frames={"type": "integer", "minimum": 1, "maximum": 32, "default": 8,
                            "description": "Key frames to extract, evenly spaced (4-16 recommended)."},
                model=_text("OpenAI model to use.", "gpt-4.1")),
        "understand_video", reads=(Read("video_path", 200 * MB, VIDEO_TYPES),)),
    "understand_file": WorkerTool(
        "Understand and analyze a file's content with an OpenAI model: text and code files, PDF, DOCX, "
        "XLSX and PPTX (their text is extracted).",
        _schema(("file_path",),
                file_path=_text("Path to the file, relative to your workspace or absolute inside your roots."),
                prompt=_text("Question or instruction about the file.",
                             "Please analyze this file and provide a comprehensive understanding of its content, "
                             "purpose, and structure."),
                model=_text("OpenAI model to use.", "gpt-4.1"),
                max_chars={"type": "integer", "minimum": 1, "default": 50000,
                           "description": "Most characters of the file's text to send."}),
        "understand_file", reads=(Read("file_path", 50 * MB, refused=NOT_DOCUMENTS),)),
    "text_to_image_generation": WorkerTool(
        "Generate an image from a text description (no input images) and save it as a PNG in your workspace.",
        _schema(("prompt",), prompt=_text("Text description of the image to generate."),
                model=_text("Accepted for MassGen's configs; the image is made by the Images API's model.",
                            "gpt-4.1"),
                storage_path=_STORAGE),
        "generate_and_store_image_no_input_images", produces="generate_image", arguments={"prompt": "prompt"}),
    "image_to_image_generation": WorkerTool(
        "Create a new image from input images (PNG/JPEG) and a description, and save it as a PNG in your "
        "workspace.",
        _schema(("base_image_paths",),
                base_image_paths=_PATHS | {"description": "Paths to the input images, relative to your workspace "
                                                          "or absolute inside your roots."},
                prompt=_text("What to make of the images.", "Create a variation of the provided images"),
                model=_text("Accepted for MassGen's configs; the image is made by the Images API's model.",
                            "gpt-4.1"),
                storage_path=_STORAGE),
        "generate_and_store_image_with_input_images", reads=(Read("base_image_paths", 20 * MB, IMAGE_TYPES),),
        produces="generate_image", arguments={"prompt": "prompt"}),
    "text_to_speech_transcription_generation": WorkerTool(
        "Convert text (e.g. a transcription) to speech with OpenAI's text-to-speech API and save the audio in "
        "your workspace.",
        _schema(("input_text",), input_text=_text("The text to speak."),
                model=_text("Text-to-speech model (gpt-4o-mini-tts, tts-1, tts-1-hd).", "gpt-4o-mini-tts"),
                voice=_text("Voice (alloy, ash, ballad, coral, echo, fable, nova, onyx, sage, shimmer).", "alloy"),
                instructions=_text("How to speak: tone and style (gpt-4o-mini-tts)."),
                storage_path=_STORAGE,
                audio_format=_text("mp3, opus, aac, flac, wav or pcm.", "mp3")),
        "convert_text_to_speech", produces="generate_audio",
        arguments={"input_text": "text", "voice": "voice", "instructions": "instructions", "audio_format": "format",
                   "model": "model"}),
    "text_to_speech_continue_generation": WorkerTool(
        "Have an OpenAI audio model respond to a prompt in speech, and save the audio in your workspace.",
        _schema(("prompt",), prompt=_text("What the model responds to, in speech."),
                model=_text("OpenAI audio model.", "gpt-4o-audio-preview"),
                voice=_text("Voice (alloy, echo, fable, onyx, nova, shimmer ...).", "alloy"),
                audio_format=_text("wav, mp3, opus, aac, flac or pcm16.", "wav"),
                storage_path=_STORAGE),
        "generate_and_store_audio_no_input_audios"),
    "text_to_video_generation": WorkerTool(
        "Generate a video from a text description with OpenAI's Sora and save it as an MP4 in your workspace.",
        _schema(("prompt",), prompt=_text("Text description of the video to generate."),
                model=_text("Video model (sora-2, sora-2-pro).", "sora-2"),
                seconds={"type": "integer", "enum": [4, 8, 12], "default": 4, "description": "Length in seconds."},
                storage_path=_STORAGE),
        "generate_and_store_video_no_input_images", produces="generate_video",
        arguments={"prompt": "prompt", "model": "model", "seconds": "seconds"}),
    "text_to_file_generation": WorkerTool(
        "Write a document (TXT, MD, PDF, DOCX, XLSX or PPTX) about a topic with an OpenAI model and save it in "
        "your workspace.",
        _schema(("prompt",), prompt=_text("What the document is about and what it must contain."),
                file_format=_text("txt, md, pdf, docx, xlsx or pptx.", "txt"),
                filename=_text("File name without extension (default: one made from the call)."),
                model=_text("OpenAI model that writes the content.", "gpt-4o"),
                storage_path=_STORAGE),
        "generate_and_store_file", produces="generate_file",
        arguments={"prompt": "prompt", "file_format": "file_format", "filename": "filename", "model": "model"}),
}
"""MassGen's bundled tools this system runs in the agent worker, by MassGen's function name."""
