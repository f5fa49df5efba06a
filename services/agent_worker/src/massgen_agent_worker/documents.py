"""Render a model's document text as a file: what ``generate_file`` (``enable_file_generation``) saves.

MassGen's ``text_to_file_generation`` (MassGen spec §2.8) asks a model for the content and writes it with
reportlab (PDF) or as plain text (TXT, MD); the spec names DOCX, XLSX and PPTX too. Here the model writes
Markdown (:data:`INSTRUCTIONS` tells it so, and CSV for a spreadsheet) and each format has one well-kept
writer: reportlab (PDF), python-docx (DOCX), openpyxl (XLSX), python-pptx (PPTX). The Markdown read is the
small subset those formats show: ``#`` headings, ``-``/``*``/``1.`` list items and paragraphs; anything
else is kept as text.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal
from xml.sax.saxutils import escape

FORMATS: dict[str, str] = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "md": "text/markdown",
    "txt": "text/plain",
}
"""The formats ``generate_file`` writes, and each one's MIME type."""

INSTRUCTIONS: dict[str, str] = {
    "xlsx": "Write the spreadsheet's data as CSV only: a header row, then one row per line, comma-separated, "
            "numbers without units or thousands separators. No prose, no code fences.",
    "pptx": "Write the slides in Markdown: each slide starts with a `# ` title line, followed by its bullet "
            "points as `- ` lines. No code fences.",
    "txt": "Write plain text. No Markdown markup.",
}
"""What the model is told to write, per format (others: :data:`MARKDOWN`)."""
MARKDOWN = ("Write the document in Markdown: `#`/`##`/`###` headings, paragraphs separated by a blank line, "
            "`- ` bullet points. No code fences around the whole document.")


def instructions(file_format: str) -> str:
    """The system instructions for the model writing a ``file_format`` document (MassGen's intent: "a
    professional content writer" producing the document's content, nothing around it)."""
    return ("You are a professional content writer. Produce the complete content of the requested "
            f"{file_format.upper()} document, ready to save: no preamble, no remarks about it. "
            + INSTRUCTIONS.get(file_format, MARKDOWN))


@dataclass(frozen=True)
class Block:
    """One block of the Markdown read: a heading (``level`` 1-6), a list ``item`` or a ``para``graph."""

    kind: Literal["heading", "item", "para"]
    text: str
    level: int = 0


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")
_FENCE = re.compile(r"^\s*```")


def blocks(text: str) -> Iterator[Block]:
    """The headings, list items and paragraphs of ``text`` (lines of a paragraph joined by spaces;
    ``**``/``__`` emphasis markers dropped; code fence lines skipped)."""
    para: list[str] = []

    def flush() -> Iterator[Block]:
        if para:
            yield Block("para", " ".join(para))
            para.clear()

    for raw in text.splitlines():
        line = raw.replace("**", "").replace("__", "").rstrip()
        if _FENCE.match(line):
            continue
        heading, item = _HEADING.match(line), _ITEM.match(line)
        if not line.strip() or heading or item:
            yield from flush()
        if heading:
            yield Block("heading", heading[2], len(heading[1]))
        elif item:
            yield Block("item", item[1].strip())
        elif line.strip():
            para.append(line.strip())
    yield from flush()


def _pdf(text: str, title: str) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import ListFlowable, ListItem, Paragraph, SimpleDocTemplate

    styles = getSampleStyleSheet()
    story: list = []
    items: list = []

    def end_list() -> None:
        if items:
            story.append(ListFlowable(list(items), bulletType="bullet"))
            items.clear()

    for b in blocks(text):
        if b.kind == "item":
            items.append(ListItem(Paragraph(escape(b.text), styles["BodyText"])))
            continue
        end_list()
        style = styles[f"Heading{min(b.level, 4)}"] if b.kind == "heading" else styles["BodyText"]
        story.append(Paragraph(escape(b.text), style))
    end_list()
    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=A4, title=title).build(story)
    return out.getvalue()


def _docx(text: str, title: str) -> bytes:
    import docx

    doc = docx.Document()
    doc.core_properties.title = title
    for b in blocks(text):
        if b.kind == "heading":
            doc.add_heading(b.text, level=min(b.level, 9))
        else:
            doc.add_paragraph(b.text, style="List Bullet" if b.kind == "item" else None)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def _cell(value: str) -> str | int | float:
    """A CSV field as a number when it is one, so the spreadsheet can compute with it."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _xlsx(text: str, title: str) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None  # a new workbook has one sheet
    sheet.title = re.sub(r"[\\/*?:\[\]]", " ", title)[:31] or "Sheet1"  # Excel's sheet-name rules
    lines = [ln for ln in text.splitlines() if ln.strip() and not _FENCE.match(ln)]
    for row in csv.reader(lines):
        sheet.append([_cell(v.strip()) for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _pptx(text: str, title: str) -> bytes:
    from pptx import Presentation
    from pptx.shapes.placeholder import SlidePlaceholder

    deck = Presentation()
    deck.core_properties.title = title
    layout = deck.slide_layouts[1]  # "Title and Content": a title and a body placeholder
    body = None
    for b in blocks(text):
        if b.kind == "heading" or body is None:
            slide = deck.slides.add_slide(layout)
            head, content = slide.shapes.title, slide.placeholders[1]
            assert head is not None and isinstance(content, SlidePlaceholder)  # what this layout has
            head.text = b.text if b.kind == "heading" else title
            body = content.text_frame
            if b.kind == "heading":
                continue
        paragraph = body.paragraphs[0] if not body.text else body.add_paragraph()
        paragraph.text = b.text
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


WRITERS: dict[str, Callable[[str, str], bytes]] = {
    "pdf": _pdf, "docx": _docx, "xlsx": _xlsx, "pptx": _pptx,
    "md": lambda text, _title: text.encode(), "txt": lambda text, _title: text.encode(),
}


def render(text: str, file_format: str, title: str) -> bytes:
    """``text`` (the model's Markdown, or CSV for ``xlsx``) as a ``file_format`` file titled ``title``.

    Raises:
        ValueError: ``file_format`` is not one of :data:`FORMATS`.
    """
    writer = WRITERS.get(file_format)
    if writer is None:
        raise ValueError(f"file_format must be one of {', '.join(FORMATS)}, not {file_format!r}")
    return writer(text, title)
