"""Wire-level fake of the OpenAI Chat Completions and Responses HTTP APIs (and the images and speech
routes) for tests.

The real ``openai`` SDK (sync or async) talks to it over loopback HTTP, so tests
exercise the same request/stream parsing code paths as production. Stdlib only.

Three routes serve one scripted reply mechanism:

- OpenAI: ``POST /v1/chat/completions``; the reply is the one scripted for the body's ``model``;
- OpenAI Responses API: ``POST /v1/responses`` (what ``client.responses.create`` sends), scripted the same
  way; a reply becomes ``message`` (``output_text``) and ``function_call`` output items, streamed as the
  API's named SSE events (``response.created`` ... ``response.completed``, the shapes of
  ``openai.types.responses.ResponseStreamEvent``). Handlers see the Responses body (``input``, and
  ``tools`` as ``{"type": "function", "name", ...}``); a reply's ``computer_actions`` become
  ``computer_call`` items (the ``computer_use_preview`` tool; not streamed);
- Azure OpenAI: ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` with an
  ``api-key`` header (what ``openai.AzureOpenAI(azure_endpoint=fake.azure_endpoint)`` sends); the reply
  is the one scripted for ``deployment``. Refused as Azure refuses it: a wrong or missing key is a 401,
  no ``api-version`` a 404, a deployment with nothing (left) scripted a 404 ``DeploymentNotFound``
  (Azure's ``{"error": {"code", "message"}}`` bodies).

Two more serve generated media (the worker's ``generate_image`` / ``generate_audio``), recorded like the
others (``fake.requests("gpt-image-1")``):

- ``POST /v1/images/generations``: ``{"created", "data": [{"b64_json"}], "usage"}`` as gpt-image models
  answer (``ImagesResponse``), the image being :attr:`FakeOpenAI.image_png`, once per ``n``;
- ``POST /v1/audio/speech``: the raw :attr:`FakeOpenAI.speech_mp3` bytes as ``audio/mpeg``;
- ``POST /v1/images/edits`` (multipart): like the generations route; recorded with ``images``, the
  uploaded files as ``[file name, size]`` pairs, in place of the file bytes;
- ``POST /v1/audio/transcriptions`` (multipart): :attr:`FakeOpenAI.transcript` (with the file's name
  and size filled in) as text or ``{"text"}`` JSON, per ``response_format``; recorded with ``file`` as
  ``[file name, size]``.

A Chat Completions request with ``"audio"`` in ``modalities`` gets its scripted reply's text as the audio's
``transcript`` and :attr:`FakeOpenAI.speech_mp3` (base64) as its ``data``, as audio models answer.

And the Videos API (Sora; the worker's ``generate_video``), a job per ``POST``, as ``client.videos`` drives it:

- ``POST /v1/videos`` (a multipart form, as the SDK sends it; recorded under its ``model``): the ``Video``
  job, ``queued``; or :attr:`FakeOpenAI.video_refusal`'s HTTP error;
- ``GET /v1/videos/{id}``: the job, ``in_progress`` for :attr:`FakeOpenAI.video_polls` polls (progress
  rising), then ``completed``, or ``failed`` with :attr:`FakeOpenAI.video_failure`'s error; each answer
  carries ``openai-poll-after-ms`` (:attr:`FakeOpenAI.poll_after_ms`) as the API does;
- ``GET /v1/videos/{id}/content``: :attr:`FakeOpenAI.video_mp4` as ``video/mp4`` once the job completed,
  else a 404.

And one serves embeddings (what mem0's OpenAI embedder sends for the worker's persistent memory):

- ``POST /v1/embeddings``: one vector per ``input`` string (:func:`embedding`: deterministic, words
  hashed into ``dimensions`` buckets, default 1536, unit length, so texts sharing words are close).

Example:
    with FakeOpenAI() as fake:
        fake.script("gpt-test", Reply(text="hello"))
        client = openai.OpenAI(base_url=fake.base_url, api_key="x")
        azure = openai.AzureOpenAI(azure_endpoint=fake.azure_endpoint, api_key=AZURE_API_KEY,
                                   api_version="2024-10-21")  # model="gpt-test" is the deployment
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import itertools
import json
import math
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Reply:
    """One scripted completion.

    Attributes:
        text: Assistant content.
        tool_calls: ``(function name, arguments)`` pairs; arguments are a dict or a raw JSON string.
        delay_s: Sleep before the first byte (only the handling thread sleeps).
        chunk_delay_s: Sleep between streamed chunks.
        status: Non-200 sends an OpenAI-shaped error body with this status.
        retry_after: With an error status, the ``Retry-After`` header in seconds.
        error_message: Message of that error.
        prompt_tokens: Defaults to the word count over all request message contents.
        completion_tokens: Defaults to words in ``text`` + tool-call argument chars // 4.
    """

    text: str = ""
    tool_calls: tuple[tuple[str, dict | str], ...] = ()
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    status: int = 200
    error_message: str = "scripted failure"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    retry_after: float | None = None
    """With an error ``status``: sent as the ``Retry-After`` header (seconds)."""
    computer_actions: tuple[dict[str, Any], ...] = ()
    """Responses route: one ``computer_call`` output item per action (``{"type": "click", "x": .., "y": ..}``,
    the ``computer_use_preview`` tool's actions), each with call id ``cu_<n>``."""


Handler = Callable[[dict], Reply]

EMBEDDING_DIMS = 1536
"""Length of the ``/v1/embeddings`` vectors when the request names no ``dimensions`` (text-embedding-3-small's)."""


def embedding(text: str, dims: int = EMBEDDING_DIMS) -> list[float]:
    """A deterministic unit vector for ``text``: each lower-cased word adds 1 to the bucket its SHA-256
    picks, so texts sharing words have a high cosine similarity (a stand-in for a real embedding model)."""
    vec = [0.0] * dims
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        vec[int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big") % dims] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec] if any(vec) else [1.0 / math.sqrt(dims)] * dims

_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 429: "rate_limit_error"}

AZURE_API_KEY = "fake-azure-key"
"""The ``api-key`` the Azure route accepts unless ``FakeOpenAI(azure_api_key=...)`` names another."""
_VIDEO_ROUTE = re.compile(r"/v1/videos/(?P<id>[^/]+)(?P<content>/content)?")
_AZURE_ROUTE = re.compile(r"/openai/deployments/(?P<deployment>[^/]+)/chat/completions")
# Azure OpenAI's own error bodies for a refused key, an unknown deployment and a missing api-version.
_AZURE_DENIED = {"error": {"code": "401", "message": (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for "
    "an active subscription and use a correct regional API endpoint for your resource.")}}
_AZURE_NO_DEPLOYMENT = {"error": {"code": "DeploymentNotFound", "message": (
    "The API deployment for this resource does not exist. If you created the deployment within the last "
    "5 minutes, please wait a moment and try again.")}}
_AZURE_NOT_FOUND = {"error": {"code": "404", "message": "Resource not found"}}


@dataclass(frozen=True)
class Received:
    """One request as the fake received it.

    Attributes:
        path: The URL path, without the query.
        query: The query parameters (``{"api-version": ...}`` on the Azure route).
        headers: The headers, names lower-cased.
        body: The JSON body.
    """

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict


def team_member(text: str, *, vote_for: str = "agent1", final: str | None = None) -> Handler:
    """A scripted agent on native tool calls: ``new_answer(text)`` when voting is not offered, a vote for
    ``vote_for`` (an anonymous id) when it is, and ``final`` (default ``FINAL <text>``) as plain text
    when no tools are offered (the presentation)."""

    def handle(body: dict) -> Reply:
        names = [t.get("function", t)["name"] for t in body.get("tools", [])]  # Chat Completions or Responses
        if not names:
            return Reply(text=final if final is not None else f"FINAL {text}")
        if "vote" in names:
            return Reply(tool_calls=(("vote", {"agent_id": vote_for, "reason": "clear"}),))
        return Reply(tool_calls=(("new_answer", {"content": text}),))

    return handle


def _error_body(status: int, message: str) -> dict:
    return {"error": {"message": message, "type": _ERROR_TYPES.get(status, "server_error"), "code": status}}


def _content_words(content: Any) -> int:
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):  # multi-part content: count text parts only
        return sum(len(p.get("text", "").split()) for p in content if isinstance(p, dict))
    return 0


def _pieces(s: str, size: int) -> list[str]:
    return [s[i : i + size] for i in range(0, len(s), size)] or [""]


class FakeOpenAI:
    """Scriptable fake OpenAI server bound to ``127.0.0.1`` on a free port.

    Replies are queued per model (FIFO); a per-model default handler is used when the
    queue is empty. Every request body is recorded before the reply is produced.
    """

    def __init__(self, *, azure_api_key: str = AZURE_API_KEY) -> None:
        self.azure_api_key = azure_api_key
        """The only ``api-key`` the Azure route accepts."""
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queues: dict[str, deque[Reply | Handler]] = defaultdict(deque)
        self._defaults: dict[str, Handler] = {}
        self._requests: list[Received] = []
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.image_png = base64.b64decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
        """The image ``/v1/images/generations`` sends back (a 1x1 PNG unless a test sets another)."""
        self.speech_mp3 = b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x00" + bytes(64)
        """The audio ``/v1/audio/speech`` sends back."""
        self.video_mp4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64)
        """The video ``/v1/videos/{id}/content`` sends back."""
        self.video_polls = 2
        """How many polls of a video job answer ``in_progress`` before its end."""
        self.video_failure: tuple[str, str] | None = None
        """``(code, message)``: video jobs end ``failed`` with this error instead of ``completed``."""
        self.video_refusal: tuple[int, str] | None = None
        """``(status, message)``: ``POST /v1/videos`` is refused with this HTTP error."""
        self.poll_after_ms = 5
        """The ``openai-poll-after-ms`` a video job's answers carry."""
        self._videos: dict[str, dict[str, Any]] = {}
        self._video_polls: dict[str, int] = {}
        self.transcript = "Transcript of {name} ({size} bytes)."
        """What ``/v1/audio/transcriptions`` sends back; ``{name}`` and ``{size}`` are the uploaded file's."""

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeOpenAI:
        """Bind a free loopback port and serve in a daemon thread. Returns self."""
        fake = self

        class _Handler(_RequestHandler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True  # a sleeping scripted reply must not block stop()
        # Short poll interval keeps stop() fast (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        server, thread = self._server, self._thread
        if server is not None:
            server.shutdown()
            server.server_close()
            if thread is not None:
                thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """Base URL for ``openai.OpenAI(base_url=...)``, e.g. ``http://127.0.0.1:PORT/v1``."""
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def azure_endpoint(self) -> str:
        """The resource endpoint for ``openai.AzureOpenAI(azure_endpoint=...)``, e.g. ``http://127.0.0.1:PORT``."""
        return self.base_url.removesuffix("/v1")

    # -- scripting -------------------------------------------------------------------
    def script(self, model: str, *replies: Reply | Handler) -> None:
        """Append replies (or handlers returning a Reply) to ``model``'s FIFO queue; on the Azure route
        ``model`` is the deployment name."""
        with self._lock:
            self._queues[model].extend(replies)

    def default(self, model: str, handler: Handler) -> None:
        """Use ``handler`` for ``model`` whenever its queue is empty (never consumed)."""
        with self._lock:
            self._defaults[model] = handler

    def requests(self, model: str | None = None) -> list[dict]:
        """Return request bodies received so far (optionally only for ``model``), in arrival order."""
        return [r.body for r in self.received(model)]

    def received(self, model: str | None = None) -> list[Received]:
        """Requests received so far with their path, query and headers (optionally only those whose
        body names ``model``), in arrival order."""
        with self._lock:
            return [r for r in self._requests if model is None or r.body.get("model") == model]

    def wait_for_requests(self, model: str, n: int, timeout_s: float = 10.0) -> list[dict]:
        """Block until at least ``n`` requests for ``model`` arrived.

        Raises:
            TimeoutError: If fewer than ``n`` arrived within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while True:
                got = [r.body for r in self._requests if r.body.get("model") == model]
                remaining = deadline - time.monotonic()
                if len(got) >= n or remaining <= 0:
                    break
                self._arrived.wait(remaining)
        if len(got) < n:
            raise TimeoutError(f"expected {n} requests for model {model!r}, got {len(got)} in {timeout_s}s")
        return got

    # -- internals used by the request handler ------------------------------------------
    def _record_and_pick(self, received: Received, model: Any) -> Reply | Handler | None:
        with self._arrived:
            self._requests.append(received)
            self._arrived.notify_all()
            if not isinstance(model, str):  # no reply is scripted for a request without a model name
                return None
            queue = self._queues.get(model)
            if queue:
                return queue.popleft()
            return self._defaults.get(model)

    def _scripted(self, model: str) -> bool:
        with self._lock:
            return bool(self._queues.get(model)) or model in self._defaults

    def _model_names(self) -> list[str]:
        with self._lock:
            return sorted(set(self._queues) | set(self._defaults))

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)


class _RequestHandler(BaseHTTPRequestHandler):
    # HTTP/1.0 closes the connection after each response, which marks the end of an SSE stream.
    protocol_version = "HTTP/1.0"
    owner: FakeOpenAI

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _send_json(self, status: int, obj: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        video = _VIDEO_ROUTE.fullmatch(url.path.rstrip("/"))
        if video is not None:
            self._video(video["id"], content=bool(video["content"]), query=dict(parse_qsl(url.query)))
        elif self.path.rstrip("/") == "/v1/models":
            names = self.owner._model_names()
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in names]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_json(404, _error_body(404, f"unknown path {self.path}"))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path.rstrip("/"), dict(parse_qsl(url.query))
        azure = _AZURE_ROUTE.fullmatch(path)
        if path in ("/v1/images/generations", "/v1/audio/speech"):
            self._media(path, query)
            return
        if path == "/v1/videos":
            self._video_create(query)
            return
        if path in ("/v1/images/edits", "/v1/audio/transcriptions"):
            self._multipart(path, query)
            return
        if path == "/v1/embeddings":
            self._embeddings(query)
            return
        if path not in ("/v1/chat/completions", "/v1/responses") and azure is None:
            self._send_json(404, _error_body(404, f"unknown path {self.path}"))
            return
        body = self._json_body()
        if body is None:
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        model = body.get("model")
        if azure is not None:
            model = azure["deployment"]
            refusal = self._azure_refusal(headers, query, model)
            if refusal is not None:
                self.owner._record_and_pick(Received(path, query, headers, body), None)
                self._send_json(*refusal)
                return
        entry = self.owner._record_and_pick(Received(path, query, headers, body), model)
        if entry is None:
            self._send_json(500, _error_body(500, f"no scripted reply for model {model!r}"))
            return
        try:
            reply = entry if isinstance(entry, Reply) else entry(body)
        except Exception as e:  # surface handler bugs to the test instead of a dropped connection
            self._send_json(500, _error_body(500, f"scripted handler for {model!r} raised {e!r}"))
            return
        time.sleep(reply.delay_s)  # per-request thread, so other requests proceed
        if reply.status != 200:
            extra = {"Retry-After": f"{reply.retry_after:g}"} if reply.retry_after is not None else None
            self._send_json(reply.status, _error_body(reply.status, reply.error_message), extra)
            return
        try:
            if path == "/v1/responses":
                self._respond(body, reply)
            elif body.get("stream"):
                self._stream(body, reply)
            else:
                self._complete(body, reply)
        except (BrokenPipeError, ConnectionResetError):  # client went away mid-reply
            pass

    def _json_body(self) -> dict | None:
        """The request's JSON body, or None after answering 400 to one that is not JSON."""
        try:
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        except json.JSONDecodeError as e:
            self._send_json(400, _error_body(400, f"invalid JSON body: {e}"))
            return None

    def _embeddings(self, query: dict[str, str]) -> None:
        """The embeddings route (module docstring): ``input`` a string or a list of strings."""
        body = self._json_body()
        if body is None:
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.owner._record_and_pick(Received("/v1/embeddings", query, headers, body), None)
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            self._send_json(400, _error_body(400, "`input` must be a string or a list of strings"))
            return
        dims = int(body.get("dimensions") or EMBEDDING_DIMS)
        words = sum(len(t.split()) for t in texts)
        self._send_json(200, {
            "object": "list", "model": body.get("model"),
            "data": [{"object": "embedding", "index": i, "embedding": embedding(t, dims)} for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": words, "total_tokens": words},
        })

    def _media(self, path: str, query: dict[str, str]) -> None:
        """The images and speech routes (module docstring)."""
        body = self._json_body()
        if body is None:
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.owner._record_and_pick(Received(path=path, query=query, headers=headers, body=body), None)
        if path.endswith("/speech"):
            if not body.get("input") or not body.get("voice"):
                self._send_json(400, _error_body(400, "`input` and `voice` are required"))
                return
            data = self.owner.speech_mp3
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if not body.get("prompt"):
            self._send_json(400, _error_body(400, "`prompt` is required"))
            return
        image = base64.b64encode(self.owner.image_png).decode()
        words = len(str(body["prompt"]).split())
        self._send_json(200, {
            "created": int(time.time()),
            "data": [{"b64_json": image} for _ in range(int(body.get("n") or 1))],
            "usage": {"input_tokens": words, "output_tokens": 272, "total_tokens": words + 272,
                      "input_tokens_details": {"text_tokens": words, "image_tokens": 0}},
        })

    def _form_body(self) -> dict[str, str]:
        """A ``multipart/form-data`` body's fields (what ``client.videos.create`` sends), else the JSON body's."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.headers.get("Content-Type", "").startswith("multipart/form-data"):
            return json.loads(raw or b"{}")
        return {name: data.decode() for name, _, data in self._parts(raw)}

    def _parts(self, raw: bytes) -> list[tuple[str, str | None, bytes]]:
        """A ``multipart/form-data`` body's parts: ``(field name, file name or None, bytes)``."""
        form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {self.headers.get('Content-Type', '')}\r\n\r\n".encode() + raw)
        parts: list[tuple[str, str | None, bytes]] = []
        for part in form.iter_parts() if form.is_multipart() else ():
            payload = part.get_payload(decode=True)
            parts.append((str(part.get_param("name", header="content-disposition")), part.get_filename(),
                          payload if isinstance(payload, bytes) else b""))
        return parts

    def _video_create(self, query: dict[str, str]) -> None:
        """``POST /v1/videos`` (module docstring)."""
        try:
            body = self._form_body()
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            self._send_json(400, _error_body(400, f"invalid body: {e}"))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner = self.owner
        owner._record_and_pick(Received("/v1/videos", query, headers, body), None)
        if owner.video_refusal is not None:
            self._send_json(owner.video_refusal[0], _error_body(*owner.video_refusal))
            return
        if not body.get("prompt"):
            self._send_json(400, _error_body(400, "`prompt` is required"))
            return
        job = {"id": f"video_{owner._next_id()}", "object": "video", "model": body.get("model") or "sora-2",
               "status": "queued", "progress": 0, "created_at": int(time.time()), "completed_at": None,
               "error": None, "prompt": body["prompt"], "seconds": body.get("seconds") or "4",
               "size": body.get("size") or "720x1280"}
        with owner._lock:
            owner._videos[job["id"]] = job
            owner._video_polls[job["id"]] = 0
        self._send_json(200, job, {"openai-poll-after-ms": str(owner.poll_after_ms)})

    def _video(self, video_id: str, *, content: bool, query: dict[str, str]) -> None:
        """``GET /v1/videos/{id}`` and ``.../content`` (module docstring)."""
        owner = self.owner
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = f"/v1/videos/{video_id}" + ("/content" if content else "")
        owner._record_and_pick(Received(path, query, headers, {}), None)
        with owner._lock:
            job = owner._videos.get(video_id)
            if job is not None and not content:
                polls = owner._video_polls[video_id] = owner._video_polls[video_id] + 1
                if polls <= owner.video_polls:
                    job.update(status="in_progress", progress=min(99, 100 * polls // (owner.video_polls + 1)))
                elif owner.video_failure is not None:
                    code, message = owner.video_failure
                    job.update(status="failed", error={"code": code, "message": message})
                else:
                    job.update(status="completed", progress=100, completed_at=int(time.time()))
            job = dict(job) if job is not None else None
        if job is None:
            self._send_json(404, _error_body(404, f"no video {video_id!r}"))
        elif not content:
            self._send_json(200, job, {"openai-poll-after-ms": str(owner.poll_after_ms)})
        elif job["status"] != "completed":
            self._send_json(404, _error_body(404, f"video {video_id!r} is {job['status']}, not completed"))
        else:
            data = owner.video_mp4
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
    def _multipart(self, path: str, query: dict[str, str]) -> None:
        """The image edits and transcription routes (module docstring)."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body: dict[str, Any] = {}
        for name, file_name, data in self._parts(raw):
            if file_name is not None:  # a file: its name and size, never its bytes
                key = "images" if name in ("image", "image[]") else str(name)
                body.setdefault(key, []).append([file_name, len(data)])
            else:
                body[str(name)] = data.decode()
        if "file" in body:
            body["file"] = body["file"][0]
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.owner._record_and_pick(Received(path=path, query=query, headers=headers, body=body), None)
        if path.endswith("/transcriptions"):
            if "file" not in body or not body.get("model"):
                self._send_json(400, _error_body(400, "`file` and `model` are required"))
                return
            text = self.owner.transcript.format(name=body["file"][0], size=body["file"][1])
            if body.get("response_format") == "text":
                data = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self._send_json(200, {"text": text})
            return
        if not body.get("images") or not body.get("prompt"):
            self._send_json(400, _error_body(400, "`image` and `prompt` are required"))
            return
        image = base64.b64encode(self.owner.image_png).decode()
        self._send_json(200, {"created": int(time.time()), "data": [{"b64_json": image}]})

    def _azure_refusal(
        self, headers: dict[str, str], query: dict[str, str], deployment: str
    ) -> tuple[int, dict] | None:
        """Azure's status and error body for a request it would refuse, checked in its order: the key,
        the API version, then the deployment (one with nothing left scripted does not exist)."""
        if headers.get("api-key") != self.owner.azure_api_key:
            return 401, _AZURE_DENIED
        if "api-version" not in query:
            return 404, _AZURE_NOT_FOUND
        if not self.owner._scripted(deployment):
            return 404, _AZURE_NO_DEPLOYMENT
        return None

    def _build(self, body: dict, reply: Reply) -> tuple[list[dict], dict]:
        calls = [
            {
                "id": f"call_{self.owner._next_id()}",
                "type": "function",
                "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
            }
            for name, args in reply.tool_calls
        ]
        prompt = reply.prompt_tokens
        if prompt is None:
            msgs = [m for m in body.get("messages", []) if isinstance(m, dict)]
            prompt = sum(_content_words(m.get("content")) for m in msgs)
            items = body.get("input")  # the Responses API: a string or a list of items
            prompt += _content_words(items) if isinstance(items, str) else sum(
                _content_words(i.get("content") or i.get("output")) for i in items or () if isinstance(i, dict))
        completion = reply.completion_tokens
        if completion is None:
            completion = len(reply.text.split()) + sum(len(c["function"]["arguments"]) for c in calls) // 4
        usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        usage["total_tokens"] = prompt + completion
        return calls, usage

    def _complete(self, body: dict, reply: Reply) -> None:
        calls, usage = self._build(body, reply)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or (None if calls else "")}
        if calls:
            message["tool_calls"] = calls
        if "audio" in (body.get("modalities") or ()):  # an audio model speaks its reply
            message["content"] = None
            message["audio"] = {"id": f"audio_{self.owner._next_id()}", "expires_at": int(time.time()) + 3600,
                                "data": base64.b64encode(self.owner.speech_mp3).decode(), "transcript": reply.text}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
        self._send_json(200, {
            "id": f"chatcmpl-{self.owner._next_id()}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model"), "choices": [choice], "usage": usage,
        })

    def _stream(self, body: dict, reply: Reply) -> None:
        calls, usage = self._build(body, reply)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        base = {"id": f"chatcmpl-{self.owner._next_id()}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model")}

        def frame(payload: str, pause: bool = True) -> None:
            if pause and reply.chunk_delay_s:
                time.sleep(reply.chunk_delay_s)
            self.wfile.write(f"data: {payload}\n\n".encode())
            self.wfile.flush()

        def chunk(delta: dict, finish: str | None = None, pause: bool = True) -> None:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            frame(json.dumps({**base, "choices": [choice]}), pause)

        chunk({"role": "assistant"}, pause=False)
        if reply.text:
            for piece in _pieces(reply.text, 5):  # small pieces so clients see many deltas
                chunk({"content": piece})
        for i, call in enumerate(calls):
            fn = call["function"]
            chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                   "function": {"name": fn["name"], "arguments": ""}}]})
            args = fn["arguments"]
            # At most half the string per piece, so arguments always arrive in 2+ deltas.
            for piece in _pieces(args, max(1, min(6, (len(args) + 1) // 2))):
                chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        chunk({}, "tool_calls" if calls else "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            frame(json.dumps({**base, "choices": [], "usage": usage}))
        frame("[DONE]", pause=False)

    def _respond(self, body: dict, reply: Reply) -> None:
        """A Responses API reply: the response object, or its stream of named SSE events."""
        calls, usage = self._build(body, reply)
        n = self.owner._next_id()
        output: list[dict[str, Any]] = []
        if reply.text or not (calls or reply.computer_actions):
            output.append({"type": "message", "id": f"msg_{n}", "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "text": reply.text, "annotations": []}]})
        output += [{"type": "function_call", "id": f"fc_{c['id']}", "call_id": c["id"], "status": "completed",
                    "name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in calls]
        output += [{"type": "computer_call", "id": f"cc_{n}_{i}", "call_id": f"cu_{n}_{i}", "action": action,
                    "pending_safety_checks": [], "status": "completed"}
                   for i, action in enumerate(reply.computer_actions)]
        response: dict[str, Any] = {
            "id": f"resp_{n}", "object": "response", "created_at": int(time.time()), "status": "completed",
            "model": body.get("model"), "output": output, "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": body.get("tools") or [], "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "metadata": {},
            "usage": {"input_tokens": usage["prompt_tokens"],
                      "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                      "output_tokens": usage["completion_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": usage["total_tokens"]},
        }
        if not body.get("stream"):
            self._send_json(200, response)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        seq = itertools.count()

        def event(kind: str, pause: bool = True, **fields: Any) -> None:
            if pause and reply.chunk_delay_s:
                time.sleep(reply.chunk_delay_s)
            data = json.dumps({"type": kind, "sequence_number": next(seq), **fields})
            self.wfile.write(f"event: {kind}\ndata: {data}\n\n".encode())
            self.wfile.flush()

        started = {**response, "status": "in_progress", "output": [], "usage": None}
        event("response.created", False, response=started)
        event("response.in_progress", False, response=started)
        for index, item in enumerate(output):
            where = {"item_id": item["id"], "output_index": index}
            if item["type"] == "message":
                event("response.output_item.added", output_index=index,
                      item={**item, "status": "in_progress", "content": []})
                part = {"type": "output_text", "text": "", "annotations": []}
                event("response.content_part.added", **where, content_index=0, part=part)
                for piece in _pieces(reply.text, 5):  # small pieces so clients see many deltas
                    event("response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[])
                event("response.output_text.done", **where, content_index=0, text=reply.text, logprobs=[])
                event("response.content_part.done", **where, content_index=0, part=item["content"][0])
            else:
                event("response.output_item.added", output_index=index,
                      item={**item, "status": "in_progress", "arguments": ""})
                args = item["arguments"]
                for piece in _pieces(args, max(1, min(6, (len(args) + 1) // 2))):
                    event("response.function_call_arguments.delta", **where, delta=piece)
                event("response.function_call_arguments.done", **where, name=item["name"], arguments=args)
            event("response.output_item.done", output_index=index, item=item)
        event("response.completed", response=response)
