"""Turn an uploaded file (or pasted text) into plain text, safely.

Supported: ``.txt``, ``.md``, ``.pdf`` (pypdf), ``.docx`` (python-docx), ``.html``/``.htm`` (text
only). Every way a user's file can be wrong gets its own ``DocumentError`` subclass with a message
written for the user. Limits are applied in two places: the byte size before any parsing (so a huge
upload costs nothing), and the character count after extraction (long texts are sampled evenly
across the document, never rejected, and the result is marked ``truncated``).
"""

from __future__ import annotations

import io
import logging
import re
import time
import unicodedata
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from engine.errors import UserInputError

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
SUPPORTED_TYPES_TEXT = ".txt, .md, .pdf, .docx, .html"

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

# PDF extraction bounds: a 2 MB PDF can still hold thousands of pages of tiny text
MAX_PDF_PAGES = 300
PDF_TIME_BUDGET_S = 15.0
# a .docx is a zip: refuse ones that expand to far more than any real document (zip bombs)
MAX_DOCX_UNCOMPRESSED = 60_000_000

# when a text is over max_chars we keep this many evenly spaced sections of it
SAMPLE_SECTIONS = 8


class DocumentError(UserInputError):
    """A document could not be turned into text; the message says why and what to do."""


class EmptyDocument(DocumentError):
    pass


class UnsupportedFileType(DocumentError):
    pass


class FileTooLarge(DocumentError):
    pass


class NotText(DocumentError):
    pass


class NoTextLayer(DocumentError):
    pass


class UnreadableDocument(DocumentError):
    pass


@dataclass(frozen=True)
class Document:
    """Plain text extracted from a document.

    ``kind`` is ``txt``/``md``/``pdf``/``docx``/``html``/``paste``; ``encoding`` is the detected text
    encoding (``None`` for formats that carry their own); ``truncated`` is True when the text was
    sampled down to the character limit (or a PDF's page limit).
    """

    text: str
    kind: str
    encoding: str | None = None
    title: str | None = None
    truncated: bool = False
    pages: int | None = None

    @property
    def chars(self) -> int:
        return len(self.text)


def _format_size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} MB"
    if n >= 1_000:
        return f"{n / 1_000:.0f} KB"
    return f"{n} bytes"


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
            f"{name} is {_format_size(size)}; the limit is {_format_size(max_bytes)}. "
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
        text, encoding = decode_text(data, name)
    elif kind == "md":
        raw, encoding = decode_text(data, name)
        text, title = strip_markdown(raw)
    elif kind == "html":
        raw, encoding = decode_text(data, name, html=True)
        text, title = html_to_text(raw)
    elif kind == "pdf":
        text, title, pages, truncated = _read_pdf(data, name, max_chars)
    else:  # docx
        text, title = _read_docx(data, name)

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
    return Document(text=text, kind=kind, encoding=encoding, title=title, truncated=truncated, pages=pages)


def document_from_text(
    text: str, *, max_chars: int = DEFAULT_MAX_CHARS, title: str | None = None
) -> Document:
    """Pasted text gets the same checks (empty, binary junk, length) as an uploaded file."""
    if _printable_ratio(text or "") < 0.85:  # before normalising, which drops control characters
        raise NotText("That doesn't look like text (too many control characters). Paste plain text.")
    text = normalize_text(text or "")
    if not text:
        raise EmptyDocument("The text is empty. Paste a few sentences (or attach a document).")
    truncated = False
    if len(text) > max_chars:
        text = sample_sections(text, max_chars)
        truncated = True
    title = title or _title_from_first_line(text)
    return Document(text=text, kind="paste", encoding=None, title=title, truncated=truncated)


# --------------------------------------------------------------------------------------------
# encodings


_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),  # the utf-16 codec reads the BOM itself
    (b"\xfe\xff", "utf-16"),
)
# magic numbers of formats people rename to .txt, so we can say what the file really is
_MAGIC = (
    (b"%PDF", "a PDF", ".pdf"),
    (b"PK\x03\x04", "a zip archive (for example a .docx)", ".docx"),
    (b"\x89PNG", "a PNG image", None),
    (b"\xff\xd8\xff", "a JPEG image", None),
    (b"GIF8", "a GIF image", None),
    (b"\xd0\xcf\x11\xe0", "an old Office file (.doc/.hwp)", None),
    (b"\x7fELF", "a program", None),
    (b"MZ", "a Windows program", None),
    (b"ID3", "an MP3", None),
    (b"RIFF", "an audio/video file", None),
    (b"OggS", "an audio file", None),
    (b"\x1f\x8b", "a gzip archive", None),
)
# signatures no real text starts with ("MZ" does: "MZ세대", so it is only used for the message)
_STRONG_MAGIC = (
    b"%PDF-",
    b"PK\x03\x04",
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"\xd0\xcf\x11\xe0",
    b"\x7fELF",
    b"\x1f\x8b",
)
# when charset-normalizer finds several equally good single-byte readings, prefer these
_PREFERRED_ENCODINGS = ("utf_8", "cp949", "euc_kr", "utf_16", "utf_16_le", "utf_16_be", "cp1252", "latin_1")


def _looks_like_utf16(data: bytes) -> str | None:
    """UTF-16 without a BOM: spaces, newlines and ASCII leave a NUL in every other byte (on one side
    only). Korean text has fewer of them (only its spaces), so the bar is low; the caller still
    checks that the decoded text is printable."""
    sample = data[:4000]
    if len(sample) < 4:
        return None
    sample = sample[: len(sample) // 2 * 2]
    half = len(sample) // 2
    even_nuls = sample[0::2].count(0) / half
    odd_nuls = sample[1::2].count(0) / half
    # Hangul code points can have a 00 low byte too (U+B300 대), so "one side mostly NUL-free"
    if odd_nuls > 0.08 and even_nuls < odd_nuls / 4:
        return "utf-16-le"
    if even_nuls > 0.08 and odd_nuls < even_nuls / 4:
        return "utf-16-be"
    return None


def _printable_ratio(text: str) -> float:
    if not text:
        return 1.0
    sample = text[:20000]
    bad = sum(
        1 for ch in sample if unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") and ch not in "\n\r\t\f"
    )
    return 1.0 - bad / len(sample)


def _not_text_error(data: bytes, name: str) -> NotText:
    for magic, what, suffix in _MAGIC:
        if data.startswith(magic):
            fix = f" Rename it to {suffix} and send it again." if suffix else f" Send {SUPPORTED_TYPES_TEXT}."
            return NotText(f"{name} is not a text file — it looks like {what}.{fix}")
    return NotText(
        f"{name} doesn't look like text (it contains binary data). "
        f"Send a plain-text, Markdown, PDF, Word (.docx) or HTML file, or paste the text."
    )


def decode_text(data: bytes, name: str = "document", *, html: bool = False) -> tuple[str, str]:
    """Decode bytes of unknown encoding; raise ``NotText`` for binary data. Returns (text, encoding)."""
    if data.startswith(_STRONG_MAGIC):  # a PDF or image renamed .txt can decode "fine" as cp1252
        raise _not_text_error(data, name)
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec), codec.replace("-sig", "")
            except UnicodeDecodeError:
                break
    utf16 = _looks_like_utf16(data)
    if utf16:
        try:
            decoded = data[: len(data) // 2 * 2].decode(utf16)
        except UnicodeDecodeError:
            decoded = ""
        if decoded and _printable_ratio(decoded) >= 0.95:
            return decoded, utf16
    if b"\x00" in data[:65536]:
        # NULs never occur in real single-byte / UTF-8 / CJK text
        raise _not_text_error(data, name)
    try:
        text, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = None, None
    if text is None and html:
        match = re.search(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_\-]+)""", data[:4096], re.I)
        if match:
            try:
                text, encoding = data.decode(match.group(1).decode("ascii")), match.group(1).decode().lower()
            except (LookupError, UnicodeDecodeError):
                text = None
    if text is None:
        text, encoding = _detect(data, name)
    if _printable_ratio(text) < 0.85:
        raise _not_text_error(data, name)
    return text, encoding


def _detect(data: bytes, name: str) -> tuple[str, str]:
    from charset_normalizer import from_bytes

    results = from_bytes(data)
    best = results.best()
    if best is None:
        raise _not_text_error(data, name)
    # several readings are often equally plausible (cp1250 vs cp1252 for French): pick the usual one
    close = [r for r in results if r.chaos <= best.chaos + 0.01 and r.coherence >= best.coherence - 0.02]
    for preferred in _PREFERRED_ENCODINGS:
        for match in close:
            if preferred in (match.encoding, *match.could_be_from_charset):
                return data.decode(preferred, errors="replace"), preferred
    return str(best), best.encoding


# --------------------------------------------------------------------------------------------
# formats


def normalize_text(text: str) -> str:
    """NFC (so decomposed Hangul from macOS matches), unify newlines, drop control chars, trim."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = text.replace("\u00a0", " ").replace("\ufeff", "").replace("\u200b", "")
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


_MD_RULES = (
    (re.compile(r"\A---\n.*?\n---\n", re.S), ""),  # YAML front matter
    (re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M), ""),  # fenced code is not prose
    (re.compile(r"<!--.*?-->", re.S), ""),
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images -> alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links -> their text
    (re.compile(r"^\s*\[[^\]]+\]:\s*\S+.*$", re.M), ""),  # reference link definitions
    (re.compile(r"<[^>\n]+>"), ""),  # inline HTML tags
    (re.compile(r"^\s{0,3}#{1,6}\s*", re.M), ""),  # heading markers
    (re.compile(r"^\s{0,3}>\s?", re.M), ""),  # block quotes
    (re.compile(r"^\s*([-*+]|\d+[.)])\s+", re.M), ""),  # list bullets
    (re.compile(r"^\s*([-*_]\s*){3,}$", re.M), ""),  # horizontal rules
    (re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$", re.M), ""),  # table separators
    (re.compile(r"^[ \t]*\|[ \t]*|[ \t]*\|[ \t]*$", re.M), ""),  # table row edges
    (re.compile(r"[ \t]*\|[ \t]*"), " "),  # table cells
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),  # bold
    (re.compile(r"(?<![\w*])[*_](?!\s)(.+?)(?<!\s)[*_](?![\w*])"), r"\1"),  # italics
    (re.compile(r"~~(.+?)~~"), r"\1"),
    (re.compile(r"`([^`]*)`"), r"\1"),
)


def strip_markdown(text: str) -> tuple[str, str | None]:
    """Light Markdown → text: keep the words, drop the markup. Returns (text, first H1 or None)."""
    text = text.replace("\r\n", "\n")
    heading = re.search(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", text, re.M)
    title = heading.group(1).strip() if heading else None
    for pattern, repl in _MD_RULES:
        text = pattern.sub(repl, text)
    if title:
        title = re.sub(r"[*_`]", "", title)
    return text, title


class _HTMLText(HTMLParser):
    """Collects visible text; block elements become line breaks."""

    SKIP = {"script", "style", "noscript", "template", "svg", "head", "nav", "footer", "iframe", "object"}
    BLOCK = {
        "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section",
        "article", "blockquote", "pre", "header", "main", "aside", "dd", "dt", "hr", "figcaption",
    }  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._skip_depth = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self._skip_depth += 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP and self._skip_depth:
            self._skip_depth -= 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        elif not self._skip_depth:
            self.parts.append(data)


def html_to_text(markup: str) -> tuple[str, str | None]:
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+", " ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    title = " ".join("".join(parser.title_parts).split()) or None
    return text, title


def _read_pdf(data: bytes, name: str, max_chars: int) -> tuple[str, str | None, int, bool]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    if not data.lstrip().startswith(b"%PDF"):
        raise UnreadableDocument(
            f"{name} is not a valid PDF (it doesn't start like one). Re-export it as PDF."
        )
    # pypdf logs every repair it makes on a damaged file; that is noise for our users
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocument(f"{name} is password-protected. Remove the password and send it again.")
        count = len(reader.pages)
    except DocumentError:
        raise
    except Exception as exc:  # pypdf raises many types on corrupt input
        raise UnreadableDocument(
            f"{name} looks damaged and I couldn't read it ({_short(exc)}). Re-export it as PDF or paste the text."
        ) from exc
    if count == 0:
        raise EmptyDocument(f"{name} has no pages.")

    # very long PDFs: read evenly spaced pages so the text still represents the whole document
    indices = list(range(count))
    truncated = False
    if count > MAX_PDF_PAGES:
        step = count / MAX_PDF_PAGES
        indices = sorted({int(i * step) for i in range(MAX_PDF_PAGES)})
        truncated = True
    texts: list[str] = []
    total = 0
    started = time.monotonic()
    failures = 0
    for n, index in enumerate(indices):
        try:
            page_text = reader.pages[index].extract_text() or ""
        except (PyPdfError, Exception):  # one broken page must not lose the rest
            failures += 1
            continue
        texts.append(page_text)
        total += len(page_text)
        over_time = time.monotonic() - started > PDF_TIME_BUDGET_S
        if (total > max_chars * 1.2 or over_time) and n < len(indices) - 1:
            truncated = True
            break
    if failures and failures == len(indices):
        raise UnreadableDocument(
            f"{name} looks damaged: no page could be read. Re-export it as PDF or paste the text."
        )
    text = "\n\n".join(texts)
    if sum(ch.isalnum() for ch in text) < 20:
        raise NoTextLayer(
            f"{name}: this PDF has no text layer (a scan?) — export it with text, or paste the text."
        )
    title = None
    try:
        meta = reader.metadata
        if meta and meta.title and str(meta.title).strip():
            title = str(meta.title).strip()
    except Exception:  # broken metadata is not worth failing for
        title = None
    return text, title, count, truncated


def _read_docx(data: bytes, name: str) -> tuple[str, str | None]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
            if "word/document.xml" not in archive.namelist():
                raise UnreadableDocument(
                    f"{name} is not a Word document (no document body inside). Re-save it as .docx."
                )
    except zipfile.BadZipFile as exc:
        raise UnreadableDocument(
            f"{name} is not a valid .docx (it isn't a Word zip package). Re-save it from Word as .docx, or paste the text."
        ) from exc
    if expanded > MAX_DOCX_UNCOMPRESSED:
        raise FileTooLarge(
            f"{name} expands to {_format_size(expanded)} of data; that's too much. Send a shorter part."
        )
    try:
        import docx

        document = docx.Document(io.BytesIO(data))
        parts = [p.text for p in document.paragraphs]
        for table in document.tables:
            for row in table.rows:
                cells: list[str] = []
                for cell in row.cells:
                    if cell.text and (not cells or cells[-1] != cell.text):  # merged cells repeat
                        cells.append(cell.text)
                parts.append(" ".join(cells))
        title = (document.core_properties.title or "").strip() or None
    except DocumentError:
        raise
    except Exception as exc:
        raise UnreadableDocument(
            f"{name} looks damaged and I couldn't read it ({_short(exc)}). Re-save it as .docx."
        ) from exc
    return "\n".join(parts), title


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."


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
