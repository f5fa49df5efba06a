"""MassGen's bundled tools that call a provider (``massgen_es.custom_tools.bundled``): the multimodal ones
(MassGen spec §2.8) and the interop lesson planners (:mod:`.interop`), run here: each calls an OpenAI
model, and the worker holds the provider keys (the executor never does).

A call of ``custom_tool__<name>`` is recorded like an MCP call of server ``custom_tool``
(``tool.call_requested``, then ``tool.call_completed`` with MassGen's JSON result, or ``tool.call_failed``,
whose message the model reads as the tool's error). In between:

1. each file argument is checked against the tool's file types, then read by the MCP broker, which owns
   the workspaces (``workspace.file_requested`` → ``workspace.file_read``: the path resolved against the
   agent's roots, the bytes in the Object Store);
2. the model is asked (:data:`HANDLERS`), or the tool's generation tool makes the file
   (:mod:`.generation`, arguments renamed by the table entry);
3. a made file goes to the Object Store and ``media.generated``; the broker writes it into the workspace
   (``media.saved``), in MassGen's ``storage_path`` when given.

So a run can be read back from its log: what was read (path and digest), what was asked and answered,
what was made and where it went.

**Which endpoint.** The tools use OpenAI's models (``gpt-4.1``, ``gpt-4o-transcribe``, ``gpt-image-1`` ...).
An agent whose backend is ``openai`` uses its own endpoint and key, as ``enable_image_generation`` does;
any other agent uses OpenAI's API with ``OPENAI_API_KEY`` from the worker's environment (and
``OPENAI_BASE_URL`` when set), as MassGen's tools read ``OPENAI_API_KEY`` whatever the agent's backend.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import msgspec
import openai

from massgen_agent_worker import extract, generation, interop
from massgen_agent_worker.providers import chatcompletion
from massgen_agent_worker.tools import CUSTOM_TOOLS, ToolClient
from massgen_es import custom_tools, mcp
from massgen_es.bus import Draft
from massgen_es.bus.objects import ObjectStore
from massgen_es.config import BackendConfig
from massgen_es.custom_tools import CustomToolSpec
from massgen_es.custom_tools.bundled import TOOLS, WorkerTool
from massgen_es.errors import (
    ConfigError,
    CustomToolError,
    MassgenError,
    ProviderError,
    ProviderServerError,
    ToolArgumentError,
    ToolTimeout,
)
from massgen_es.events import (
    MediaGenerated,
    ToolCall,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TurnRequested,
    WorkspaceFileRequested,
)
from massgen_es.failures import failure_of


@dataclass(frozen=True)
class Loaded:
    """A file the broker read: its resolved path and bytes."""

    path: str
    data: bytes


@dataclass(frozen=True)
class Call:
    """One call of a bundled tool, its files read."""

    cfg: BackendConfig
    client: openai.AsyncOpenAI
    tool: WorkerTool
    call: ToolCall
    args: dict[str, Any]
    """The model's arguments over MassGen's defaults and the entry's ``preset_args``."""
    files: dict[str, list[Loaded]]
    """Per file argument, the files it names, in its order."""


@dataclass(frozen=True)
class Outcome:
    """What a handler gives back: fields of MassGen's JSON result, and the file it made, if any."""

    fields: dict[str, Any]
    made: generation.Generated | None = None


Handler = Callable[[Call], Awaitable[Outcome]]


def worker_tools(backend: BackendConfig) -> dict[str, CustomToolSpec]:
    """The backend's custom tools that run here, by the name the model calls."""
    return {t.name: t for t in backend.resolved_custom_tools if t.runs_in == "agent_worker"}


def openai_client(cfg: BackendConfig) -> openai.AsyncOpenAI:
    """The client the tools call (module docstring: the agent's own for an ``openai`` backend, else
    OpenAI's with ``OPENAI_API_KEY``).

    Raises:
        ConfigError: the key's variable is not set.
    """
    if cfg.type == "openai":
        return chatcompletion.client(cfg)
    if not os.environ.get("OPENAI_API_KEY"):
        raise ConfigError(f"MassGen's multimodal tools call OpenAI's models, and this agent's backend ({cfg.type}) "
                          "is not `openai`: set OPENAI_API_KEY in the agent worker's environment")
    own = msgspec.structs.replace(cfg, type="openai", base_url=os.environ.get("OPENAI_BASE_URL") or None,
                                  api_key_env="OPENAI_API_KEY")
    return chatcompletion.client(own)


async def run(
    tools: ToolClient, objects: ObjectStore | None, req: TurnRequested, run_id: str, cause: str, request_id: str,
    backend: BackendConfig, spec: CustomToolSpec, call: ToolCall,
) -> str:
    """Run ``call`` of the bundled tool ``spec`` (module docstring), recording it under ``request_id``;
    returns the text the model reads (``Error: ...`` when it failed)."""
    name = spec.name.removeprefix(custom_tools.PREFIX)
    await tools.record(run_id, Draft(request_id, ToolCallRequested(
        call_id=call.id, turn_id=req.turn_id, agent_id=req.agent_id, attempt=req.attempt, kind=req.kind,
        server=CUSTOM_TOOLS, tool=name, arguments=call.arguments), cause))
    started = time.monotonic()
    try:
        tool = TOOLS[spec.function]
        args = {**_defaults(tool), **mcp.check_arguments(call.arguments, spec.parameters), **spec.preset_args}
        if objects is None:
            raise MassgenError("this worker has no Object Store to keep files in")
        client = openai_client(backend)  # a missing key fails the call before anything is read
        files = await _read(tools, objects, req, run_id, request_id, tool, args, call)
        handler = HANDLERS.get(spec.function) or _produce
        out = await handler(Call(backend, client, tool, call, args, files))
        result = {"success": True, "operation": tool.operation, **out.fields}
        if out.made is not None:
            result |= await _keep(tools, objects, req, run_id, request_id, backend, call, args, out.made)
    except (MassgenError, ProviderError) as exc:
        outcome: ToolCallCompleted | ToolCallFailed = ToolCallFailed(
            call_id=call.id, turn_id=req.turn_id, agent_id=req.agent_id, server=CUSTOM_TOOLS, tool=name,
            failure=failure_of(exc), duration_s=round(time.monotonic() - started, 4), attempts=1)
    else:
        outcome = ToolCallCompleted(
            call_id=call.id, turn_id=req.turn_id, agent_id=req.agent_id, server=CUSTOM_TOOLS, tool=name,
            content=json.dumps(result, indent=2, ensure_ascii=False), is_error=False,
            duration_s=round(time.monotonic() - started, 4))
    await tools.record(run_id, Draft(f"{request_id}:result", outcome, request_id))
    return outcome.content if isinstance(outcome, ToolCallCompleted) else f"Error: {outcome.failure.message}"


def _defaults(tool: WorkerTool) -> dict[str, Any]:
    return {k: v["default"] for k, v in tool.parameters["properties"].items() if "default" in v}


async def _read(
    tools: ToolClient, objects: ObjectStore, req: TurnRequested, run_id: str, request_id: str, tool: WorkerTool,
    args: dict[str, Any], call: ToolCall,
) -> dict[str, list[Loaded]]:
    """Each file of each file argument, read by the broker (types checked first: nothing is read for a
    call that names a file of the wrong type).

    Raises:
        ToolArgumentError, ToolPermissionError: a wrong type, a missing or unreadable file, a path outside
            the agent's roots (the broker's failure).
    """
    wanted = [(r, [args[r.argument]] if isinstance(args[r.argument], str) else list(args[r.argument]))
              for r in tool.reads if r.argument in args]
    for r, paths in wanted:
        if not paths:
            raise ToolArgumentError(f"`{r.argument}` names no file")
        for p in paths:
            if not r.accepts(p):
                kinds = ", ".join(sorted(r.types)) if r.types else f"anything but {', '.join(sorted(r.refused))}"
                raise ToolArgumentError(f"{p}: `{r.argument}` takes {kinds} files")
    out: dict[str, list[Loaded]] = {}
    n = 0
    for r, paths in wanted:
        for p in paths:
            event = WorkspaceFileRequested(call_id=call.id, agent_id=req.agent_id, kind=req.kind, path=p,
                                           max_bytes=r.max_bytes)
            read = await tools.read_file(run_id, request_id, f"{request_id}:read{n}", event)
            n += 1
            if read is None:
                raise ToolTimeout(f"the MCP broker did not read {p} in time")
            if read.failure is not None or read.object is None:
                raise ToolArgumentError(read.failure.message if read.failure else f"{p} could not be read")
            out.setdefault(r.argument, []).append(Loaded(read.path, await objects.get(read.object)))
    return out


async def _keep(
    tools: ToolClient, objects: ObjectStore, req: TurnRequested, run_id: str, request_id: str, backend: BackendConfig,
    call: ToolCall, args: dict[str, Any], made: generation.Generated,
) -> dict[str, Any]:
    """Store a made file, record it, have the broker save it; MassGen's fields describing the file.

    Raises:
        ToolArgumentError: the broker refused its ``storage_path``; ToolTimeout: it did not answer.
    """
    ref = await objects.put(made.data, made.file_name, exact=True)
    event = MediaGenerated(
        call_id=call.id, turn_id=req.turn_id, agent_id=req.agent_id, attempt=req.attempt, kind=made.kind,
        file_name=made.file_name, mime_type=made.mime_type, object=ref, prompt=made.prompt, model=made.model,
        directory=str(args.get("storage_path") or ""))
    where = made.file_name
    if backend.cwd is None:  # no workspace: the file is in the Object Store and the log only
        await tools.record(run_id, Draft(f"{request_id}:media", event, request_id))
        where = f"(not saved: this agent has no workspace; object {ref.name})"
    else:
        saved = await tools.save_media(run_id, request_id, f"{request_id}:media", event)
        if saved is None:
            raise ToolTimeout(f"the MCP broker did not save {made.file_name} in time")
        if saved.failure is not None:
            raise ToolArgumentError(saved.failure.message)
        where = saved.path
    info = {"file_path": where, "filename": made.file_name, "size": ref.size}
    if made.kind == "image":
        return {"images": [info | {"index": 0}], "model": made.model, "prompt": made.prompt, "total_images": 1}
    fmt = PurePath(made.file_name).suffix.lstrip(".")
    if made.kind == "audio":
        return {"audio_file": info | {"format": fmt}, "model": made.model, "format": fmt}
    return {"file": info | {"format": fmt}, "model": made.model}  # another kind a generation tool makes


# ---------------------------------------------------------------- the tools that ask a model


async def _chat(c: Call, content: list[dict[str, Any]]) -> str:
    """One Chat Completions call with ``content`` as the user message; the reply's text.

    Raises:
        ProviderError: the call failed, or the reply has no text.
    """
    label = "OpenAI endpoint (multimodal tool)"
    try:
        response = await c.client.chat.completions.create(
            model=c.args["model"], messages=[{"role": "user", "content": content}])  # type: ignore[misc,list-item]
    except openai.APIError as exc:
        raise chatcompletion.map_openai_error(exc, label) from exc
    text = response.choices[0].message.content if response.choices else None
    if not text:
        raise ProviderServerError(f"{label}: {c.args['model']} sent no text")
    return text


def _image_part(data: bytes, mime: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


async def _understand_image(c: Call) -> Outcome:
    (image,) = c.files["image_path"]
    mime = "image/png" if image.path.lower().endswith(".png") else "image/jpeg"
    text = await _chat(c, [{"type": "text", "text": c.args["prompt"]}, _image_part(image.data, mime)])
    return Outcome({"image_path": image.path, "prompt": c.args["prompt"], "model": c.args["model"], "response": text})


async def _understand_audio(c: Call) -> Outcome:
    out = []
    for audio in c.files["audio_paths"]:
        try:
            text = await c.client.audio.transcriptions.create(
                model=c.args["model"], file=(PurePath(audio.path).name, audio.data), response_format="text")
        except openai.APIError as exc:
            raise chatcompletion.map_openai_error(exc, f"OpenAI transcription of {audio.path}") from exc
        out.append({"file": audio.path, "transcription": str(text).strip()})
    return Outcome({"transcriptions": out, "audio_files": [a["file"] for a in out], "model": c.args["model"]})


async def _understand_video(c: Call) -> Outcome:
    (video,) = c.files["video_path"]
    frames = extract.video_frames(video.path, video.data, int(c.args["num_frames"]))
    text = await _chat(c, [{"type": "text", "text": c.args["prompt"]},
                           *(_image_part(f, "image/jpeg") for f in frames)])
    return Outcome({"video_path": video.path, "num_frames_extracted": len(frames), "prompt": c.args["prompt"],
                    "model": c.args["model"], "response": text})


async def _understand_file(c: Call) -> Outcome:
    (file,) = c.files["file_path"]
    name = PurePath(file.path).name
    text, how, truncated = extract.document_text(name, file.data, int(c.args["max_chars"]))
    note = "\n[content truncated]" if truncated else ""
    answer = await _chat(c, [{"type": "text", "text": f"File: {name}\n\n```\n{text}\n```{note}\n\n{c.args['prompt']}"}])
    return Outcome({"file_path": file.path, "file_name": name, "file_type": how, "file_size": len(file.data),
                    "chars_read": len(text), "truncated": truncated, "prompt": c.args["prompt"],
                    "model": c.args["model"], "response": answer})


async def _spoken_reply(c: Call) -> Outcome:
    """MassGen's ``text_to_speech_continue_generation``: an audio model answers the prompt in speech."""
    fmt, label = c.args["audio_format"], "OpenAI audio model"
    try:
        response = await c.client.chat.completions.create(
            model=c.args["model"], modalities=["text", "audio"], audio={"voice": c.args["voice"], "format": fmt},
            messages=[{"role": "user", "content": c.args["prompt"]}])
    except openai.APIError as exc:
        raise chatcompletion.map_openai_error(exc, label) from exc
    audio = response.choices[0].message.audio if response.choices else None
    if audio is None or not audio.data:
        raise ProviderServerError(f"{label}: {c.args['model']} sent no audio")
    safe_id = "".join(ch for ch in c.call.id if ch.isalnum() or ch in "-_")[:40] or "call"
    mime = generation.AUDIO_FORMATS.get(fmt, f"audio/{fmt}")
    made = generation.Generated("audio", base64.b64decode(audio.data), mime, f"audio_{safe_id}.{fmt}",
                                c.args["prompt"], c.args["model"])
    return Outcome({"prompt": c.args["prompt"], "voice": c.args["voice"], "text_response": audio.transcript}, made)


async def _produce(c: Call) -> Outcome:
    """A tool with ``produces``: its arguments renamed onto the generation tool, which makes the file;
    input images (``reads``) are what it edits. ``c.args`` already holds MassGen's defaults (:func:`run`)."""
    renamed = {ours: c.args[theirs] for theirs, ours in c.tool.arguments.items() if c.args.get(theirs) is not None}
    inputs = [(PurePath(f.path).name, f.data) for files in c.files.values() for f in files]
    made = await generation.generate(
        c.cfg, ToolCall(id=c.call.id, name=c.tool.produces, arguments=json.dumps(renamed)), client=c.client,
        inputs=inputs)
    return Outcome({"note": "The file was generated and saved.", "prompt": made.prompt}, made)


def _planner(function: str) -> Handler:
    """A handler for one of MassGen's interop lesson planners (:mod:`.interop`), on this tool's endpoint and key."""

    async def handle(c: Call) -> Outcome:
        plan = await interop.PLANNERS[function](
            c.args["prompt"], base_url=str(c.client.base_url), api_key=c.client.api_key, model=c.args["model"])
        if plan.startswith("Error"):  # the planners report failures as MassGen's tools do: as text
            raise CustomToolError(plan.removeprefix("Error: "))
        return Outcome({"prompt": c.args["prompt"], "lesson_plan": plan})

    return handle


HANDLERS: Mapping[str, Handler] = {
    "understand_image": _understand_image,
    "understand_audio": _understand_audio,
    "understand_video": _understand_video,
    "understand_file": _understand_file,
    "text_to_speech_continue_generation": _spoken_reply,
    **{function: _planner(function) for function in interop.PLANNERS},
}
"""The bundled tools the worker implements itself; a tool with ``produces`` needs none (:func:`_produce`)."""
