"""What MassGen's ``understand_file`` and ``understand_video`` send a model, from a file's bytes: a
document's text (pypdf, python-docx, openpyxl, python-pptx, as MassGen uses) and a video's key frames
(PyAV, lighter than MassGen's opencv, resized to the vision API's limits with Pillow)."""

from __future__ import annotations

import io
from pathlib import PurePath

from massgen_es.errors import ToolArgumentError

MAX_SHORT_SIDE = 768
MAX_LONG_SIDE = 2000
"""OpenAI's vision limits for an image (pixels): a frame is scaled down to fit them, as MassGen does."""


def document_text(name: str, data: bytes, max_chars: int) -> tuple[str, str, bool]:
    """The text of a file named ``name``: ``(text, how, truncated)`` with ``how`` one of ``pdf``, ``docx``,
    ``excel``, ``pptx``, ``text`` (MassGen's ``file_type``), at most ``max_chars`` characters.

    Raises:
        ToolArgumentError: the file is binary, damaged, or has no text.
    """
    suffix = PurePath(name).suffix.lower()
    how = {".pdf": "pdf", ".docx": "docx", ".xlsx": "excel", ".xlsm": "excel", ".pptx": "pptx"}.get(suffix, "text")
    try:
        if how == "text":
            text = data.decode("utf-8")
        else:
            text = {"pdf": _pdf, "docx": _docx, "excel": _excel, "pptx": _pptx}[how](data)
    except UnicodeDecodeError:
        raise ToolArgumentError(f"{name} is binary and cannot be read as text; the documents this tool reads are "
                                "PDF, DOCX, XLSX and PPTX") from None
    except Exception as exc:  # noqa: BLE001 - each library raises its own errors on a damaged file
        raise ToolArgumentError(f"cannot read the text of {name} ({type(exc).__name__}: {exc})") from None
    if not text.strip():
        raise ToolArgumentError(f"{name} has no text (empty, or only images)")
    return text[:max_chars], how, len(text) > max_chars


def _pdf(data: bytes) -> str:
    import pypdf

    pages = pypdf.PdfReader(io.BytesIO(data)).pages
    return "\n\n".join(f"--- Page {i} ---\n{t}" for i, p in enumerate(pages, 1) if (t := p.extract_text()).strip())


def _docx(data: bytes) -> str:
    import docx

    doc = docx.Document(io.BytesIO(data))
    lines = [p.text for p in doc.paragraphs if p.text.strip()]
    lines += [row for t in doc.tables for r in t.rows if (row := " | ".join(c.text for c in r.cells)).strip(" |")]
    return "\n\n".join(lines)


def _excel(data: bytes) -> str:
    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    lines: list[str] = []
    for sheet in book.worksheets:
        rows = [" | ".join("" if v is None else str(v) for v in row) for row in sheet.iter_rows(values_only=True)]
        rows = [r for r in rows if r.strip(" |")]
        if rows:
            lines += [f"=== Sheet: {sheet.title} ===", *rows]
    return "\n".join(lines)


def _pptx(data: bytes) -> str:
    import pptx
    from pptx.shapes.autoshape import Shape

    out: list[str] = []
    for i, slide in enumerate(pptx.Presentation(io.BytesIO(data)).slides, 1):
        texts = [s.text_frame.text for s in slide.shapes if isinstance(s, Shape) and s.text_frame.text.strip()]
        if texts:
            out += [f"--- Slide {i} ---", *texts]
    return "\n\n".join(out)


def video_frames(name: str, data: bytes, count: int) -> list[bytes]:
    """``count`` frames of the video, evenly spaced from its start, as JPEG (quality 85), each scaled to
    :data:`MAX_SHORT_SIDE` x :data:`MAX_LONG_SIDE` at most; fewer when the video has fewer frames.

    Raises:
        ToolArgumentError: not a video PyAV can decode, or no frame could be read.
    """
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise ToolArgumentError(f"{name} has no video stream")
            total = container.streams.video[0].frames or sum(
                1 for p in container.demux(video=0) if p.size)  # counted from the packets when the header has none
        n = min(count, total)
        wanted = sorted({int(i * total / n) for i in range(n)})
        out: list[bytes] = []
        with av.open(io.BytesIO(data), mode="r") as container:  # decoded once, front to back; only picked frames kept
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    out.append(_jpeg(frame.to_image()))
                if not wanted or i >= wanted[-1]:
                    break
    except ToolArgumentError:
        raise
    except Exception as exc:  # noqa: BLE001 - PyAV raises its own error per ffmpeg failure
        raise ToolArgumentError(f"cannot decode the video {name} ({type(exc).__name__}: {exc})") from None
    if not out:
        raise ToolArgumentError(f"{name} has no frames")
    return out


def _jpeg(image) -> bytes:  # noqa: ANN001 - a PIL image
    short, long = sorted(image.size)
    scale = min(MAX_SHORT_SIDE / short, MAX_LONG_SIDE / long, 1.0)
    if scale < 1.0:
        image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()
