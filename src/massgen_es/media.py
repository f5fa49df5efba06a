"""Files a backend's model sees with the question: MassGen's ``upload_files`` (MassGen spec §2.8, §5.2).

A backend lists ``upload_files: [{image_path: PATH}, {audio_path: ...}, {video_path: ...}, {file_path: ...}]``.
Config validation (:func:`check_uploads`) refuses a missing or oversized file (``media_max_file_size_mb``,
default 64 as MassGen's) and a kind or type the backend's provider does not accept (:data:`ACCEPTS`).
``run.submitted`` carries each entry with ``object``: the reference of its bytes in the Object Store
(:func:`with_objects`), which the submitter stores before appending the event (:func:`store_uploads`); the
events themselves stay small. The agent worker fetches the bytes (:func:`fetch_uploads`) and the provider
adapter attaches them to the first user message in its provider's native form.

An entry may name an ``http(s)`` URL instead of a path, as in MassGen (its examples upload
``https://cdn.openai.com/...pdf``). The file is downloaded once, when the run is submitted
(:func:`with_objects`: a GET following redirects, at most ``media_max_file_size_mb``, :data:`FETCH_TIMEOUT_S`),
and stored in the Object Store like a local file, so every provider gets the same bytes in its native
form (rather than the URL passed through, which only some providers and kinds accept) and a replay or a
fork never depends on the URL again. Its kind and type come from the URL's path, as a local file's do
from its name; a failed or oversized download is a :class:`ConfigError` naming the URL and the fix.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import posixpath
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import msgspec

from massgen_es import backends
from massgen_es.bus.objects import ObjectStore
from massgen_es.errors import ConfigError
from massgen_es.events import AgentSpec, ObjectRef

Kind = Literal["image", "audio", "video", "file"]

KEYS: dict[str, Kind] = {"image_path": "image", "audio_path": "audio", "video_path": "video", "file_path": "file"}
"""MassGen's keys of an ``upload_files`` entry and the kind each names."""

_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
ACCEPTS: dict[str, dict[Kind, frozenset[str]]] = {
    # Chat Completions: `image_url` data URIs and `input_audio` (wav, mp3).
    "chatcompletion": {"image": _IMAGES, "audio": frozenset({"audio/wav", "audio/mpeg"})},
    "azure_openai": {"image": _IMAGES, "audio": frozenset({"audio/wav", "audio/mpeg"})},
    # Responses: `input_image`, and `input_file` for PDFs.
    "openai": {"image": _IMAGES, "file": frozenset({"application/pdf"})},
    # Messages: `image` blocks, and `document` blocks for PDFs and plain text.
    "claude": {"image": _IMAGES, "file": frozenset({"application/pdf", "text/plain"})},
    # generateContent: inline data parts.
    "gemini": {
        "image": _IMAGES | {"image/heic", "image/heif"},
        "audio": frozenset({"audio/wav", "audio/mpeg", "audio/aac", "audio/ogg", "audio/flac", "audio/aiff"}),
        "video": frozenset({"video/mp4", "video/mpeg", "video/quicktime", "video/webm", "video/x-flv",
                            "video/x-msvideo", "video/x-ms-wmv", "video/3gpp"}),
        "file": frozenset({"application/pdf", "text/plain"}),
    },
}
"""The kinds, and for each the MIME types, each adapter's provider accepts inline (adapters not listed:
none, e.g. ``local`` and ``claude_code``)."""

_MIME_FIXES = {"audio/x-wav": "audio/wav", "audio/mp3": "audio/mpeg", "audio/x-flac": "audio/flac",
               "audio/x-aiff": "audio/aiff"}


class UploadFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """One entry of ``upload_files``: exactly one of the four paths."""

    image_path: str | None = None
    audio_path: str | None = None
    video_path: str | None = None
    file_path: str | None = None
    object: ObjectRef | None = None
    """Set at submit: the file's bytes in the Object Store (its label the file name). An entry that has it
    already (a fork's, from its parent's submission) keeps it: the file is not read again."""

    @property
    def key(self) -> str:
        """Which path key is set (validation ensures exactly one)."""
        return next((k for k in KEYS if getattr(self, k) is not None), "file_path")

    @property
    def path(self) -> str:
        """The path that is set."""
        return getattr(self, self.key) or ""

    @property
    def kind(self) -> Kind:
        """``image``, ``audio``, ``video`` or ``file``."""
        return KEYS[self.key]


@dataclass(frozen=True)
class Attachment:
    """An uploaded file as an adapter attaches it: kind, MIME type, name and bytes."""

    kind: Kind
    mime_type: str
    name: str
    data: bytes

    @property
    def base64(self) -> str:
        """The bytes, base64-encoded (ASCII)."""
        return base64.b64encode(self.data).decode()

    @property
    def data_uri(self) -> str:
        """``data:<mime>;base64,<bytes>``."""
        return f"data:{self.mime_type};base64,{self.base64}"


FETCH_TIMEOUT_S = 60.0
"""Seconds a URL entry's download may stall (per read), at submit."""
_FETCHED: dict[str, bytes] = {}
"""Downloaded bytes by digest, from :func:`with_objects` until :func:`store_uploads` stores them."""


def is_url(path: str) -> bool:
    """Whether an entry names an ``http(s)`` URL rather than a local path."""
    return path.startswith(("http://", "https://"))


def fetch(url: str, max_bytes: int) -> bytes:
    """The body of ``GET url`` (redirects followed), read until ``max_bytes``.

    Raises:
        ConfigError: the server cannot be reached or answers an error status, or the body is larger than
            ``max_bytes``; the message names the URL and what to do.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "massgen-es"})
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as resp:  # noqa: S310 - http(s) only
            data = resp.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"upload {url!r}: the server answered HTTP {exc.code}; check the URL, or download the "
                          "file and give its path") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"upload {url!r}: could not download it ({reason}); check the URL and the network, or "
                          "download the file and give its path") from None
    if len(data) > max_bytes:
        raise ConfigError(f"upload {url!r} is over {max_bytes / 1_048_576:g} MB (`media_max_file_size_mb`); raise "
                          "the limit or upload a smaller file")
    return data


def _url_name(url: str) -> str:
    return posixpath.basename(unquote(urlsplit(url).path)) or "download"


def mime_type(path: str) -> str | None:
    """The MIME type of ``path`` (or of a URL's path) by its extension, in the spelling providers use
    (``audio/wav``)."""
    guessed = mimetypes.guess_type(urlsplit(path).path if is_url(path) else path, strict=False)[0]
    return _MIME_FIXES.get(guessed, guessed) if guessed else None


def check_uploads(backend_type: str, uploads: tuple[UploadFile, ...], max_mb: float, where: str, origin: str) -> None:
    """Every entry names one existing, small enough file of a kind and type the backend accepts.

    Raises:
        ConfigError: the message names the entry's key path and the fix.
    """
    if not max_mb > 0:
        raise ConfigError(f"{origin}: `{where}.media_max_file_size_mb` must be a positive number of megabytes")
    accepted = ACCEPTS.get(backends.capabilities(backend_type).adapter, {})
    for i, u in enumerate(uploads):
        at = f"{where}.upload_files[{i}]"
        set_keys = [k for k in KEYS if getattr(u, k) is not None]
        if len(set_keys) != 1:
            raise ConfigError(f"{origin}: `{at}` must have exactly one of {', '.join(KEYS)} (it has "
                              f"{', '.join(set_keys) or 'none'}); write one entry per file")
        at = f"{at}.{u.key}"
        p = Path(u.path).expanduser()
        if u.object is not None:  # a fork's entry (its parent's config): the bytes are stored already
            pass
        elif is_url(u.path):
            pass  # downloaded at submit (`with_objects`), its size checked then
        elif not p.is_file():
            raise ConfigError(f"{origin}: `{at}` {u.path!r} is not a file; fix the path (relative paths are "
                              "relative to the directory massgen runs in)")
        size_mb = (u.object.size if u.object is not None else 0 if is_url(u.path) else p.stat().st_size) / 1_048_576
        if size_mb > max_mb:
            raise ConfigError(f"{origin}: `{at}` {u.path!r} is {size_mb:.1f} MB, above "
                              f"`{where}.media_max_file_size_mb` ({max_mb:g}); raise the limit or upload a smaller one")
        if u.kind not in accepted:
            able = sorted(t for t, c in backends.BACKENDS.items() if u.kind in ACCEPTS.get(c.adapter, {}))
            raise ConfigError(f"{origin}: `{at}`: backend type {backend_type!r} cannot take {u.kind} uploads; "
                              f"remove the entry or use one of: {', '.join(able)}")
        mime = mime_type(u.path)
        if mime not in accepted[u.kind]:
            raise ConfigError(f"{origin}: `{at}` {u.path!r} is {mime or 'of an unknown type'}, which backend type "
                              f"{backend_type!r} does not accept as {u.kind}; convert it to one of: "
                              f"{', '.join(sorted(accepted[u.kind]))}")


GENERATION_KEYS = ("enable_image_generation", "enable_audio_generation", "enable_video_generation",
                   "enable_file_generation")
"""MassGen's ``enable_*_generation`` backend keys (MassGen spec §2.8, §5.2), all built here."""

GENERATES: dict[str, frozenset[str]] = {"openai": frozenset(GENERATION_KEYS)}
"""The generation keys each adapter honours, through its provider's own API (``openai``: the Images API,
text-to-speech, the Videos API (Sora) and, for documents, the Responses API writing the content;
``massgen_agent_worker.generation``)."""


_WHAT = {"enable_image_generation": "images", "enable_audio_generation": "audio",
         "enable_video_generation": "video", "enable_file_generation": "documents"}


def check_generation(backend_type: str, flags: dict[str, bool], where: str, origin: str) -> None:
    """Every set ``enable_*_generation`` key is one the backend's provider API can honour here.

    Raises:
        ConfigError: naming the key and the feature, and the backend types that have it (if any).
    """
    for key in GENERATION_KEYS:
        if not flags.get(key):
            continue
        if key not in GENERATES.get(backends.capabilities(backend_type).adapter, frozenset()):
            able = sorted(t for t, c in backends.BACKENDS.items() if key in GENERATES.get(c.adapter, frozenset()))
            raise ConfigError(f"{origin}: `{where}.{key}`: this system generates {_WHAT[key]} only through "
                              f"the provider API of backend type {', '.join(able)}, not {backend_type!r}; remove the "
                              "key or change the backend type")


def with_objects(uploads: tuple[UploadFile, ...], max_mb: float = 64.0) -> tuple[UploadFile, ...]:
    """The entries with absolute paths and ``object`` set to the reference of each file's bytes (read
    now; :func:`store_uploads` stores the same bytes). A URL entry is downloaded now (:func:`fetch`, at
    most ``max_mb``) and keeps its URL.

    Raises:
        ConfigError: a URL entry could not be downloaded or is too large.
    """
    out: list[UploadFile] = []
    for u in uploads:
        if u.object is not None:
            out.append(u)
            continue
        if is_url(u.path):
            data = fetch(u.path, int(max_mb * 1_048_576))
            digest = hashlib.sha256(data).hexdigest()
            _FETCHED[digest] = data
            out.append(msgspec.structs.replace(u, object=ObjectRef(
                name=digest, digest=f"sha256:{digest}", size=len(data), label=_url_name(u.path))))
            continue
        p = Path(u.path).expanduser().resolve()
        data = p.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        ref = ObjectRef(name=digest, digest=f"sha256:{digest}", size=len(data), label=p.name)
        out.append(msgspec.structs.replace(u, object=ref, **{u.key: str(p)}))
    return tuple(out)


def uploads_of(backend: dict[str, object]) -> tuple[UploadFile, ...]:
    """The ``upload_files`` of a backend block as events carry it."""
    return msgspec.convert(backend.get("upload_files", ()), tuple[UploadFile, ...])


async def store_uploads(objects: ObjectStore, agents: Iterable[AgentSpec]) -> None:
    """Store the uploaded files of ``agents`` (a ``run.submitted``'s or ``run.forked``'s) in the Object
    Store, byte for byte, before the event is appended.

    Raises:
        ConfigError: a file changed or vanished since the config was loaded.
    """
    for agent in agents:
        for u in uploads_of(agent.backend):
            if u.object is None:
                continue
            if is_url(u.path):
                # Downloaded by `with_objects` in this process; an entry without its bytes here is a fork's,
                # whose parent stored them already (the store is content-addressed).
                fetched = _FETCHED.pop(u.object.name, None)
                if fetched is not None:
                    await objects.put(fetched, u.object.label, exact=True)
                continue
            try:
                data = Path(u.path).read_bytes()
            except OSError as exc:
                raise ConfigError(f"upload {u.path!r} of agent {agent.id}: {exc.strerror}; fix the path") from None
            if f"sha256:{hashlib.sha256(data).hexdigest()}" != u.object.digest:
                raise ConfigError(f"upload {u.path!r} of agent {agent.id} changed while the run was submitted; "
                                  "submit again")
            await objects.put(data, u.object.label, exact=True)


async def fetch_uploads(objects: ObjectStore, uploads: Iterable[UploadFile]) -> tuple[Attachment, ...]:
    """The stored bytes of ``uploads`` as attachments (in config order).

    Raises:
        BusError: an object is missing or does not match its digest.
    """
    out: list[Attachment] = []
    for u in uploads:
        if u.object is None:
            continue
        data = await objects.get(u.object)
        out.append(Attachment(kind=u.kind, mime_type=mime_type(u.path) or "application/octet-stream",
                              name=u.object.label, data=data))
    return tuple(out)
