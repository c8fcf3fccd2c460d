"""Turn an uploaded file (or pasted text) into plain text, safely.

Supported: ``.txt``, ``.md``, ``.pdf`` (pypdf), ``.docx`` (streamed zip + lxml), ``.html``/``.htm``
(text only). Every way a user's file can be wrong gets its own ``DocumentError`` subclass with a
message written for the user. Limits: the byte size before any parsing (so a huge upload costs
nothing); while parsing, the bytes a .docx really unpacks to, a PDF's pages and time, and every line's
length (so each text pass stays linear); after extraction, the character count (long texts are
sampled evenly across the document, never rejected, and the result is marked ``truncated``). The
submodules: ``charset`` (bytes → str), ``markup`` (text passes, Markdown, HTML), ``pdf``, ``word``.
"""

from __future__ import annotations

from pathlib import Path

from engine.text.ingest.charset import decode_text, printable_ratio
from engine.text.ingest.errors import (
    SUPPORTED_TYPES_TEXT,
    Document,
    DocumentError,
    EmptyDocument,
    FileTooLarge,
    NoTextLayer,
    NotText,
    UnreadableDocument,
    UnsupportedFileType,
    format_size,
)
from engine.text.ingest.markup import (
    MAX_LINE_CHARS,
    MAX_TITLE_CHARS,
    cap_line_length,
    clean_title,
    html_to_text,
    normalize_text,
    strip_markdown,
)
from engine.text.ingest.pdf import read_pdf
from engine.text.ingest.word import MAX_TOTAL_BYTES as MAX_DOCX_UNCOMPRESSED
from engine.text.ingest.word import read_docx

__all__ = [
    "DEFAULT_MAX_BYTES", "DEFAULT_MAX_CHARS", "MAX_DOCX_UNCOMPRESSED", "MAX_LINE_CHARS", "MAX_PDF_PAGES",
    "MAX_TITLE_CHARS", "PDF_TIME_BUDGET_S", "SUPPORTED_SUFFIXES", "SUPPORTED_TYPES_TEXT", "Document",
    "DocumentError", "EmptyDocument", "FileTooLarge", "NoTextLayer", "NotText", "UnreadableDocument",
    "UnsupportedFileType", "cap_line_length", "check_upload", "clean_title", "decode_text",
    "document_from_text", "html_to_text", "normalize_text", "read_document", "sample_sections",
    "strip_markdown",
]  # fmt: skip

DEFAULT_MAX_BYTES = 2_000_000
DEFAULT_MAX_CHARS = 500_000

# suffix -> kind; the order is what users see in the "supported types" message
SUPPORTED_SUFFIXES: dict[str, str] = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
}

# common formats people try, with the one-line fix we suggest
_CONVERT_HINTS: dict[str, str] = {
    ".doc": "save it as .docx (Word: File → Save As → Word Document)",
    ".hwp": "save it as .docx or .pdf from Hangul (한글: 다른 이름으로 저장)",
    ".hwpx": "save it as .docx or .pdf from Hangul (한글: 다른 이름으로 저장)",
    ".rtf": "save it as .docx or .txt",
    ".odt": "save it as .docx",
    ".pages": "export it as .docx or .pdf",
    ".epub": "export the chapter as .txt or .pdf",
}

# PDF extraction bounds: a 2 MB PDF can still hold thousands of pages of tiny text, or 300 pages that
# share one huge content stream. The budget covers the whole document, failed pages included.
MAX_PDF_PAGES = 300
PDF_TIME_BUDGET_S = 6.0

# when a text is over max_chars we keep this many evenly spaced sections of it
SAMPLE_SECTIONS = 8


def check_upload(filename: str, size: int, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Type and size checks that need only the name and size (run before any download); returns the kind."""
    suffix = Path(filename or "").suffix.lower()
    name = Path(filename or "document").name
    kind = SUPPORTED_SUFFIXES.get(suffix)
    if kind is None:
        hint = _CONVERT_HINTS.get(suffix)
        what = f"'{suffix}' files" if suffix else "files without an extension"
        msg = f"I can't read {what} ({name}). Supported types: {SUPPORTED_TYPES_TEXT}."
        if hint:
            msg += f" Tip: {hint}."
        raise UnsupportedFileType(msg)
    # size first: nothing is downloaded or parsed for an empty or oversize upload
    if size == 0:
        raise EmptyDocument(f"{name} is empty. Attach a document with some text in it, or paste the text.")
    if size > max_bytes:
        raise FileTooLarge(
            f"{name} is {format_size(size)}; the limit is {format_size(max_bytes)}. "
            "Send a shorter part (one chapter is plenty) or paste the text."
        )
    return kind


def read_document(
    data: bytes,
    filename: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> Document:
    """Extract the text of an uploaded file. Raises a ``DocumentError`` subclass on bad input."""
    kind = check_upload(filename, len(data), max_bytes=max_bytes)
    name = Path(filename or "document").name
    if not data or not data.strip():
        raise EmptyDocument(f"{name} is empty. Attach a document with some text in it, or paste the text.")

    title: str | None = None
    encoding: str | None = None
    pages: int | None = None
    truncated = False
    if kind == "txt":
        text, encoding = decode_text(data, name)  # normalize_text below caps its lines
    elif kind == "md":
        raw, encoding = decode_text(data, name)
        text, title = strip_markdown(raw)
    elif kind == "html":
        raw, encoding = decode_text(data, name, html=True)
        text, title = html_to_text(raw)
    elif kind == "pdf":
        text, title, pages, truncated = read_pdf(
            data, name, max_chars=max_chars, max_pages=MAX_PDF_PAGES, time_budget_s=PDF_TIME_BUDGET_S
        )
    else:  # docx
        text, title, truncated = read_docx(data, name, max_chars=max_chars)

    text = normalize_text(text)
    if not text:
        raise EmptyDocument(
            f"{name} has no readable text in it. Attach a document with some text, or paste it."
        )
    if len(text) > max_chars:
        text = sample_sections(text, max_chars)
        truncated = True
    if not title and kind == "txt":
        title = _title_from_first_line(text)
    return Document(
        text=text, kind=kind, encoding=encoding, title=clean_title(title), truncated=truncated, pages=pages
    )


def document_from_text(
    text: str, *, max_chars: int = DEFAULT_MAX_CHARS, title: str | None = None
) -> Document:
    """Pasted text gets the same checks (empty, binary junk, length) as an uploaded file."""
    if printable_ratio(text or "") < 0.85:  # before normalising, which drops control characters
        raise NotText("That doesn't look like text (too many control characters). Paste plain text.")
    text = normalize_text(text or "")
    if not text:
        raise EmptyDocument("The text is empty. Paste a few sentences (or attach a document).")
    truncated = False
    if len(text) > max_chars:
        text = sample_sections(text, max_chars)
        truncated = True
    title = clean_title(title) or _title_from_first_line(text)
    return Document(text=text, kind="paste", encoding=None, title=title, truncated=truncated)


def _title_from_first_line(text: str) -> str | None:
    """A plain-text file often starts with its title: a short line without a final period,
    followed by a blank line. (File names are not used: "chapter3_final_v2" misleads the topic.)"""
    first, sep, rest = text.partition("\n")
    first = first.strip()
    if not sep or not rest.startswith("\n") or not first or len(first) > 80:
        return None
    if first[-1] in ".,;:!?。" or first.endswith("다"):
        return None
    return first


# --------------------------------------------------------------------------------------------
# long documents


def sample_sections(text: str, max_chars: int, sections: int = SAMPLE_SECTIONS) -> str:
    """Keep ``sections`` evenly spaced windows whose total is ``max_chars``, cut at paragraph or
    sentence boundaries, so the beginning, middle and end of a long document all count."""
    if len(text) <= max_chars:
        return text
    sections = max(1, min(sections, max_chars // 200 or 1))
    window = max_chars // sections
    stride = len(text) / sections
    parts: list[str] = []
    for i in range(sections):
        start = int(i * stride)
        end = min(len(text), start + window)
        if i:
            start = _snap_forward(text, start, end)
        if end < len(text):
            end = _snap_backward(text, start, end)
        chunk = text[start:end].strip()
        if chunk:
            parts.append(chunk)
    return "\n\n".join(parts)[:max_chars]


def _snap_forward(text: str, start: int, limit: int) -> int:
    """Move a cut forward to a paragraph, line, sentence or at least word start (losing at most
    half the window)."""
    reach = start + (limit - start) // 2
    for mark in ("\n\n", "\n", ". ", "다. ", "? ", "! ", " "):
        pos = text.find(mark, start, reach)
        if pos != -1:
            return pos + len(mark)
    return start


def _snap_backward(text: str, start: int, end: int) -> int:
    floor = end - (end - start) // 2
    for mark in ("\n\n", "\n", ". ", "? ", "! ", " "):
        pos = text.rfind(mark, floor, end)
        if pos != -1:
            return pos + (1 if mark.strip() else 0)
    return end
