""".docx → text by streaming ``word/document.xml`` out of the zip, with caps on the bytes really produced.

A zip's declared sizes are whatever the sender wrote, and zipfile's bzip2 / LZMA readers inflate a
whole compressed chunk at once (a 9.8 KB member reached 2.7 GB), so: only stored and deflate members
are accepted (all Word writes), each member is read in chunks through a counter that stops at
``MAX_MEMBER_BYTES`` (and ``MAX_TOTAL_BYTES`` over the members read), and the XML is parsed as it
streams (lxml ``iterparse``: no DTD, no entities, no network, elements freed as they end), stopping
once ``max_chars`` of text are out. python-docx (which builds the whole tree: 12 MB of XML took
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
CHUNK = 64 * 1024
_WORD_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_METHOD_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA"}

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_P, _T, _TAB, _BR, _CR = _W + "p", _W + "t", _W + "tab", _W + "br", _W + "cr"
_TBL, _TR, _TC, _PSTYLE, _VAL = _W + "tbl", _W + "tr", _W + "tc", _W + "pStyle", _W + "val"
_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
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


def _parser_options() -> dict:
    # Word never writes a DTD: no entity is resolved, nothing is fetched, huge nodes are refused
    return {"resolve_entities": False, "no_network": True, "load_dtd": False, "huge_tree": False}


def _core_title(archive: zipfile.ZipFile, name: str, totals: list[int]) -> str | None:
    from lxml import etree

    with archive.open("docProps/core.xml") as member:
        reader = _CappedReader(member, name, "docProps/core.xml", MAX_CORE_BYTES, totals)
        raw = b"".join(iter(lambda: reader.read(CHUNK), b""))
    root = etree.fromstring(raw, etree.XMLParser(**_parser_options()))
    return root.findtext(_DC_TITLE) or None


def _body_text(source: _CappedReader, max_chars: int) -> tuple[str, str | None, bool]:
    from lxml import etree

    lines: list[str] = []
    chars = 0
    heading: str | None = None
    paragraphs: list[list[str]] = []  # open paragraphs (a text box's paragraph sits inside another)
    styles: list[str | None] = []
    cells: list[list[str]] = []  # per open table cell: its paragraphs
    rows: list[list[str]] = []  # per open table row: its cells
    fallback = 0  # mc:Fallback repeats the mc:Choice content (text boxes): read it once
    events = etree.iterparse(source, events=("start", "end"), **_parser_options())
    for event, element in events:
        tag = element.tag
        if tag == _FALLBACK:
            fallback += 1 if event == "start" else -1
        elif fallback:
            pass
        elif event == "start":
            if tag == _P:
                paragraphs.append([])
                styles.append(None)
            elif tag == _TC:
                cells.append([])
            elif tag == _TR:
                rows.append([])
            continue
        elif tag == _T and paragraphs:
            paragraphs[-1].append(element.text or "")
        elif tag == _TAB and paragraphs:
            paragraphs[-1].append("\t")
        elif tag in (_BR, _CR) and paragraphs:
            paragraphs[-1].append("\n")
        elif tag == _PSTYLE and styles:
            styles[-1] = element.get(_VAL)
        elif tag == _P and paragraphs:
            text = "".join(paragraphs.pop())
            style = styles.pop()
            if heading is None and style in _TITLE_STYLES and text.strip():
                heading = text
            if cells:
                cells[-1].append(text)
            else:
                lines.append(text)
                chars += len(text) + 1
        elif tag == _TC and cells:
            cell = "\n".join(cells.pop())
            if rows and cell and (not rows[-1] or rows[-1][-1] != cell):
                rows[-1].append(cell)
        elif tag == _TR and rows:
            row = " ".join(rows.pop())
            if cells:  # a nested table: its rows belong to the outer cell
                cells[-1].append(row)
            else:
                lines.append(row)
                chars += len(row) + 1
        if event == "start":
            continue
        # free what has been read: the tree never holds more than the open elements
        element.clear()
        parent = element.getparent()
        if parent is not None:
            while element.getprevious() is not None:
                del parent[0]
        if chars >= max_chars:
            return "\n".join(lines), heading, True
    return "\n".join(lines), heading, False
