""".docx → text by streaming ``word/document.xml`` out of the zip, with caps on the bytes really produced.

A zip's declared sizes are whatever the sender wrote, and zipfile's bzip2 / LZMA readers inflate a
whole compressed chunk at once (a 9.8 KB member reached 2.7 GB), so: only stored and deflate members
are accepted (all Word writes), each member is read in chunks through a counter that stops at
``MAX_MEMBER_BYTES`` (and ``MAX_TOTAL_BYTES`` over the members read), and the XML is parsed as it
streams (expat callbacks, no tree; a DTD or entity declaration is refused), stopping once
``max_chars`` of text are out. python-docx (which builds the whole tree: 12 MB of XML took
11 s and 284 MB) is not used for reading.
"""

from __future__ import annotations

import io
import zipfile

from engine.text.ingest.errors import (
    DocumentError,
    FileTooLarge,
    UnreadableDocument,
    format_size,
    short_error,
)

MAX_MEMBER_BYTES = 50_000_000  # document.xml of a long, heavily formatted book is ~10-20 MB
MAX_TOTAL_BYTES = 60_000_000
MAX_CORE_BYTES = 1_000_000  # docProps/core.xml (the title) is a few hundred bytes
MAX_ZIP_ENTRIES = 5_000
# expat calls back ~1 µs per element: a body of empty runs (8 M in 50 MB) would take 15 s, so the
# count is capped too (a long, heavily formatted real document has well under a million)
MAX_ELEMENTS = 2_000_000
CHUNK = 64 * 1024
_WORD_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_METHOD_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA"}

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main}"  # expat's "namespace}name"
_P, _T, _TAB, _BR, _CR = _W + "p", _W + "t", _W + "tab", _W + "br", _W + "cr"
_TBL, _TR, _TC, _PSTYLE, _VAL = _W + "tbl", _W + "tr", _W + "tc", _W + "pStyle", _W + "val"
_FALLBACK = "http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_DC_TITLE = "http://purl.org/dc/elements/1.1/}title"
_TITLE_STYLES = {"Title", "Heading1"}


class _CappedReader:
    """File-like view of one zip member that counts the bytes it really produces."""

    def __init__(
        self, member: io.BufferedIOBase, name: str, label: str, limit: int, totals: list[int]
    ) -> None:
        self._member, self._name, self._label = member, name, label
        self._limit, self._totals = limit, totals
        self.produced = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._member.read(CHUNK if size is None or size < 0 else min(size, CHUNK))
        self.produced += len(chunk)
        self._totals[0] += len(chunk)
        if self.produced > self._limit or self._totals[0] > MAX_TOTAL_BYTES:
            raise FileTooLarge(
                f"{self._name} unpacks to more than {format_size(min(self._limit, MAX_TOTAL_BYTES))} "
                f"({self._label}); that's not a normal Word document. Send a shorter part or paste the text."
            )
        return chunk


def read_docx(data: bytes, name: str, *, max_chars: int) -> tuple[str, str | None, bool]:
    """Returns (text, title, truncated). Paragraphs and table rows in document order; a table row's
    cells are joined with spaces. The title is the core-properties title, else the first paragraph
    styled Title / Heading 1."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise UnreadableDocument(
            f"{name} is not a valid .docx (it isn't a Word zip package). Re-save it from Word as .docx, "
            "or paste the text."
        ) from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise UnreadableDocument(f"{name} holds {len(infos):,} files; a Word document has a few dozen.")
        for info in infos:
            if info.compress_type not in _WORD_METHODS:
                method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
                raise UnreadableDocument(
                    f"{name} uses {method} compression, which Word never writes. "
                    "Open it in Word and save it again as .docx."
                )
        names = {info.filename for info in infos}
        if "word/document.xml" not in names:
            raise UnreadableDocument(
                f"{name} is not a Word document (no document body inside). Re-save it as .docx."
            )
        totals = [0]
        try:
            title = _core_title(archive, name, totals) if "docProps/core.xml" in names else None
            with archive.open("word/document.xml") as member:
                body = _CappedReader(member, name, "word/document.xml", MAX_MEMBER_BYTES, totals)
                text, heading, truncated = _body_text(body, max_chars)
        except DocumentError:
            raise
        except Exception as exc:  # zlib / CRC / XML errors: the file is damaged or not Word's
            raise UnreadableDocument(
                f"{name} looks damaged and I couldn't read it ({short_error(exc)}). Re-save it as .docx."
            ) from exc
    return text, title or heading, truncated


class _BodyText:
    """expat handlers that collect paragraphs and table rows in document order."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.chars = 0  # in ``lines`` and in paragraphs still open (one paragraph can be 50 MB of text)
        self.heading: str | None = None
        self.title_parts: list[str] = []  # dc:title (core.xml)
        self._in_title = False
        self._paragraphs: list[list[str]] = []  # open paragraphs (a text box's sits inside another)
        self._styles: list[str | None] = []
        self._cells: list[list[str]] = []  # per open table cell: its paragraphs
        self._rows: list[list[str]] = []  # per open table row: its cells
        self._in_text = 0
        self.elements = 0
        self._fallback = 0  # mc:Fallback repeats the mc:Choice content (text boxes): read it once

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self.elements += 1
        if tag == _FALLBACK:
            self._fallback += 1
        elif self._fallback:
            return
        elif tag == _T:
            self._in_text += 1
        elif tag == _P:
            self._paragraphs.append([])
            self._styles.append(None)
        elif tag == _TAB and self._paragraphs:
            self._add("\t")
        elif tag in (_BR, _CR) and self._paragraphs:
            self._add("\n")
        elif tag == _PSTYLE and self._styles:
            self._styles[-1] = attrs.get(_VAL)
        elif tag == _TC:
            self._cells.append([])
        elif tag == _TR:
            self._rows.append([])
        elif tag == _DC_TITLE:
            self._in_title = True

    def end(self, tag: str) -> None:
        if tag == _FALLBACK:
            self._fallback -= 1
        elif self._fallback:
            return
        elif tag == _T:
            self._in_text -= 1
        elif tag == _P and self._paragraphs:
            text = "".join(self._paragraphs.pop())
            self.chars -= len(text)  # counted as it arrived; _emit counts it again where it lands
            style = self._styles.pop()
            if self.heading is None and style in _TITLE_STYLES and text.strip():
                self.heading = text
            self._emit(text)
        elif tag == _TC and self._cells:
            cell = "\n".join(self._cells.pop())
            row = self._rows[-1] if self._rows else None
            if row is not None and cell and (not row or row[-1] != cell):  # merged cells repeat
                row.append(cell)
        elif tag == _TR and self._rows:
            self._emit(" ".join(self._rows.pop()))
        elif tag == _DC_TITLE:
            self._in_title = False

    def _emit(self, text: str) -> None:
        if self._cells:  # a paragraph (or a nested table's row) inside a table cell
            self._cells[-1].append(text)
        else:
            self.lines.append(text)
        self.chars += len(text) + 1

    def data(self, text: str) -> None:
        if self._in_title:
            self.title_parts.append(text)
        elif self._in_text and self._paragraphs and not self._fallback:
            self._add(text)

    def _add(self, piece: str) -> None:
        self._paragraphs[-1].append(piece)
        self.chars += len(piece)

    def flush(self) -> None:
        """Stopping early: keep the text of what is still open (a cell's paragraphs, then the rest)."""
        open_text = [text for cell in self._cells for text in cell] + ["".join(p) for p in self._paragraphs]
        self.lines.extend(text for text in open_text if text)


def _refuse_dtd(*_: object) -> None:
    raise ValueError("a DTD or entity declaration (Word never writes one)")


def _parse(source: _CappedReader, handler: _BodyText, max_chars: int) -> bool:
    """Feed ``source`` to expat chunk by chunk; True when it stopped early (``max_chars`` of text or
    ``MAX_ELEMENTS`` elements read).

    expat (not lxml's tree builder, ~4x slower here) with defusedxml's rules: any DOCTYPE or entity
    declaration is refused, so nothing is expanded or fetched."""
    from xml.parsers import expat

    parser = expat.ParserCreate(namespace_separator="}")
    parser.buffer_text = True
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_dtd
    parser.StartElementHandler = handler.start
    parser.EndElementHandler = handler.end
    parser.CharacterDataHandler = handler.data
    while chunk := source.read(CHUNK):
        parser.Parse(chunk, False)
        if handler.chars >= max_chars or handler.elements > MAX_ELEMENTS:
            handler.flush()
            return True
    parser.Parse(b"", True)
    return False


def _core_title(archive: zipfile.ZipFile, name: str, totals: list[int]) -> str | None:
    with archive.open("docProps/core.xml") as member:
        handler = _BodyText()
        _parse(
            _CappedReader(member, name, "docProps/core.xml", MAX_CORE_BYTES, totals), handler, MAX_CORE_BYTES
        )
    return "".join(handler.title_parts) or None


def _body_text(source: _CappedReader, max_chars: int) -> tuple[str, str | None, bool]:
    handler = _BodyText()
    truncated = _parse(source, handler, max_chars)
    return "\n".join(handler.lines), handler.heading, truncated
