"""Generators of hostile documents (issue 14), shared by tests/test_hostile_input.py and bench/hostile.py.

Each builder returns bytes small enough to upload (under the 2 MB limit) that used to freeze or
exhaust the reader: text that the old cleaning regexes backtracked on, zip members that inflate
far past their declared size, a PDF whose pages share one huge content stream.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

TEXT_BYTES = 2_000_000  # "2 MB" of the text cases: the upload limit, exactly

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
# the two package parts python-docx (and Word) need to find the body, so the old reader really parsed it
_CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    b'<Default Extension="xml" ContentType="application/xml"/>'
    b'<Override PartName="/word/document.xml" '
    b'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)
_RELS = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    b'<Relationship Id="rId1" Target="word/document.xml" '
    b'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"/></Relationships>'
)


def repeat(unit: str, size: int = TEXT_BYTES) -> str:
    """Whole copies of ``unit`` up to ``size`` characters. Whole: a cut unit can close what the rest
    opened ("-_a" cut to "-_" ends with a closing "_", which let the old italics pattern finish in one
    linear match instead of retrying every opener)."""
    return unit * max(1, size // len(unit))


# --- zip / .docx --------------------------------------------------------------------------------


def body_xml(paragraphs: list[str]) -> bytes:
    runs = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    return f'<?xml version="1.0"?><w:document xmlns:w="{W_NS}"><w:body>{runs}</w:body></w:document>'.encode()


def docx_with_member(
    chunks: list[bytes], *, method: int = zipfile.ZIP_DEFLATED, declared_size: int | None = None
) -> bytes:
    """A .docx whose ``word/document.xml`` is ``chunks`` (streamed into the zip: a list that repeats
    one block costs one block of memory), compressed with ``method``; ``declared_size`` then
    overwrites the member's uncompressed size in its local header and central directory (the lie)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("_rels/.rels", _RELS, compress_type=zipfile.ZIP_DEFLATED)
        info = zipfile.ZipInfo("word/document.xml")
        info.compress_type = method
        with archive.open(info, "w", force_zip64=True) as member:
            for chunk in chunks:
                member.write(chunk)
    data = bytearray(buffer.getvalue())
    if declared_size is not None:
        patch_declared_size(data, "word/document.xml", declared_size)
    return bytes(data)


def patch_declared_size(data: bytearray, name: str, size: int) -> None:
    """Overwrite the uncompressed size of member ``name`` in its local header (offset 22) and its
    central-directory entry (offset 24), the two places a zip reader may trust."""
    encoded = name.encode()
    local = data.find(b"PK\x03\x04")
    while local != -1:
        name_len = struct.unpack_from("<H", data, local + 26)[0]
        if data[local + 30 : local + 30 + name_len] == encoded:
            struct.pack_into("<I", data, local + 22, size)
        local = data.find(b"PK\x03\x04", local + 4)
    central = data.find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46 : central + 46 + name_len] == encoded:
            struct.pack_into("<I", data, central + 24, size)
        central = data.find(b"PK\x01\x02", central + 4)


def zip_bomb(method: int, inflated: int, declared: int = 4096) -> bytes:
    """``word/document.xml`` of one paragraph whose text is ``inflated`` bytes of "a", declared as
    ``declared`` bytes."""
    head = f'<?xml version="1.0"?><w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>'.encode()
    block = b"a" * (16 << 20)
    return docx_with_member(
        [head, *[block] * max(1, inflated // len(block))], method=method, declared_size=declared
    )


def dense_docx(xml_bytes: int = 50_000_000) -> bytes:
    """An honest .docx (true sizes) of ``xml_bytes`` of one-letter paragraphs: ~50 KB zipped."""
    head = f'<?xml version="1.0"?><w:document xmlns:w="{W_NS}"><w:body>'.encode()
    unit = b"<w:p><w:r><w:t>a</w:t></w:r></w:p>"
    block = unit * ((1 << 20) // len(unit))
    return docx_with_member([head, *[block] * (xml_bytes // len(block)), b"</w:body></w:document>"])


# --- PDF ----------------------------------------------------------------------------------------


def write_pdf(objects: list[bytes], *, root: int, info: int | None = None) -> bytes:
    """Serialise numbered PDF objects (object n is ``objects[n - 1]``) with their xref table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    trailer = b"<< /Size %d /Root %d 0 R" % (len(objects) + 1, root)
    if info:
        trailer += b" /Info %d 0 R" % info
    out.write(b"trailer\n" + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def shared_stream_pdf(pages: int = 300, content_bytes: int = 10_000_000, *, distinct: int = 1) -> bytes:
    """``pages`` pages that draw ``distinct`` content streams of ``content_bytes`` each (page i draws
    stream i mod distinct; Flate: ~76 KB per stream). pypdf spends ~20 s on such a page before its
    own token limit stops it."""
    op = b"BT /F1 12 Tf 10 10 Td (aaaa) Tj ET\n"
    content = (op * (content_bytes // len(op) + 1))[:content_bytes]
    first_page = 4 + distinct
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % (first_page + i) for i in range(pages)), pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for number in range(distinct):
        packed = zlib.compress(b"%% stream %d\n" % number + content, 9)
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed + b"\nendstream"
        )
    for i in range(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (4 + i % distinct)
        )
    return write_pdf(objects, root=1)


# --- mention titles ---------------------------------------------------------------------------

MENTIONS = "@everyone @here <@&123>"
BODY = "The night was quiet and the rain fell softly on the roofs of the old town."


def mention_title_files(title: str = MENTIONS) -> dict[str, bytes]:
    """One small document per format whose title is ``title`` (the .txt and .md keep it on one line)."""
    from tests.test_ingest import make_docx, make_pdf

    one_line = " ".join(title.split())
    html_title = title.replace("&", "&amp;").replace("<", "&lt;")
    return {
        "title.txt": f"{one_line}\n\n{BODY}\n".encode(),
        "title.md": f"# {one_line}\n\n{BODY}\n".encode(),
        "title.html": f"<html><head><title>{html_title}</title></head><body><p>{BODY}</p></body></html>".encode(),
        "title.docx": make_docx([BODY], title=title),
        "title.pdf": make_pdf([BODY], title=title),
    }
