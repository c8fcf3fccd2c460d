"""Document ingest: every format, every encoding, and one clear error per kind of bad input."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from engine.errors import UserInputError
from engine.text.ingest import (
    DocumentError,
    EmptyDocument,
    FileTooLarge,
    NoTextLayer,
    NotText,
    UnreadableDocument,
    UnsupportedFileType,
    decode_text,
    document_from_text,
    read_document,
    sample_sections,
)
from engine.text.language import detect_language
from tests.hostile_inputs import write_pdf

FIXTURES = Path(__file__).parent / "fixtures"
SAD_KO = (FIXTURES / "sad_ko.txt").read_text(encoding="utf-8").strip()


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# --- tiny PDF writer (no reportlab needed): enough structure for pypdf -------------------------


def make_pdf(pages: list[str] | None = None, *, image_only: bool = False, title: str | None = None) -> bytes:
    """A valid PDF whose pages show ``pages`` (Helvetica, ASCII) or, with ``image_only``, a single
    grey image and no text at all — what a scanner produces."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # placeholders, filled once the page ids are known
    pages_id = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    page_ids = []
    for text in pages or [""]:
        if image_only:
            pixels = bytes([128]) * (16 * 16)
            image = add(
                b"<< /Type /XObject /Subtype /Image /Width 16 /Height 16 /ColorSpace /DeviceGray "
                b"/BitsPerComponent 8 /Length %d >>\nstream\n" % len(pixels) + pixels + b"\nendstream"
            )
            stream = b"q 400 0 0 500 100 200 cm /Im1 Do Q"
            resources = b"<< /XObject << /Im1 %d 0 R >> >>" % image
        else:
            lines = []
            for i, line in enumerate(text.split("\n")):
                escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
                lines.append(b"BT /F1 11 Tf 50 %d Td (%s) Tj ET" % (760 - 14 * i, escaped.encode("latin-1")))
            stream = b"\n".join(lines)
            resources = b"<< /Font << /F1 %d 0 R >> >>" % font
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        page_ids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Resources %s /Contents %d 0 R >>"
                % (pages_id, resources, content)
            )
        )
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id
    kids = b" ".join(b"%d 0 R" % i for i in page_ids)
    objects[pages_id - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids))
    info = add(b"<< /Title (%s) >>" % title.encode("latin-1")) if title else None

    return write_pdf(objects, root=catalog, info=info)


def make_docx(
    paragraphs: list[str], *, title: str | None = None, table: list[list[str]] | None = None
) -> bytes:
    import docx

    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    if title:
        document.core_properties.title = title
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


# --- plain text and encodings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "encoding"),
    [
        ("sad_ko.txt", "utf-8"),
        ("sad_ko_cp949.txt", "cp949"),
        ("sad_ko_utf16.txt", "utf-16"),
        ("sad_ko_utf16le_nobom.txt", "utf-16-le"),
    ],
)
def test_korean_text_decodes_in_every_common_encoding(name: str, encoding: str) -> None:
    doc = read_document(fixture(name), name)
    assert doc.text == SAD_KO
    assert doc.encoding == encoding
    assert doc.kind == "txt"
    assert doc.title == "떠나간 사람"  # the first short line before a blank line
    assert detect_language(doc.text) == "ko"


def test_euc_kr_and_utf16_big_endian_decode() -> None:
    assert read_document(SAD_KO.encode("euc-kr"), "a.txt").text == SAD_KO
    assert read_document(SAD_KO.encode("utf-16-be"), "a.txt").text == SAD_KO
    assert read_document(b"\xef\xbb\xbf" + SAD_KO.encode("utf-8"), "a.txt").text == SAD_KO  # UTF-8 BOM


def test_latin1_text_keeps_its_accents() -> None:
    doc = read_document(fixture("latin1_fr.txt"), "fr.txt")
    assert "crème brûlée" in doc.text and "naïve" in doc.text and "Noël" in doc.text


def test_windows_newlines_and_decomposed_hangul_are_normalised() -> None:
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "비 오는 밤")
    doc = read_document(f"첫 줄입니다.\r\n{decomposed}\r\n".encode(), "a.txt")
    assert doc.text == "첫 줄입니다.\n비 오는 밤"


# --- other formats ------------------------------------------------------------------------------


def test_markdown_markup_is_stripped() -> None:
    doc = read_document(fixture("notes.md"), "notes.md")
    assert doc.kind == "md"
    assert doc.title == "Rainy Day Notes"
    for kept in ("Some bold words and some italic ones, with a link to a site.", "First item of a list",
                 "A quoted line that stays.", "a grey sky", "Rain Calm"):  # fmt: skip
        assert kept in doc.text
    for dropped in ("**", "https://example.com", "print(", "author:", "|", "```", "# "):
        assert dropped not in doc.text


def test_html_gives_visible_text_only() -> None:
    doc = read_document(fixture("page.html"), "page.html")
    assert doc.kind == "html" and doc.title == "Night Train"
    assert "the dark valley & the lights" in doc.text
    assert "Passengers slept while the conductor walked the quiet corridor.\nNobody spoke." in doc.text
    assert "script text" not in doc.text and "color: red" not in doc.text and "Home | About" not in doc.text


def test_html_in_euc_kr_uses_its_meta_charset() -> None:
    html = '<html><head><meta charset="euc-kr"><title>비</title></head><body><p>비가 온다.</p></body></html>'
    doc = read_document(html.encode("euc-kr"), "ko.htm")
    assert doc.title == "비" and doc.text == "비가 온다."


def test_pdf_text_is_extracted_from_every_page() -> None:
    data = make_pdf(
        ["The lighthouse keeper watched the storm.", "At dawn the sea was calm again."], title="Keeper"
    )
    doc = read_document(data, "story.pdf")
    assert doc.kind == "pdf" and doc.pages == 2 and doc.title == "Keeper"
    assert "lighthouse keeper watched the storm" in doc.text
    assert "sea was calm again" in doc.text
    assert doc.text.index("lighthouse") < doc.text.index("dawn")


def test_scanned_pdf_without_text_layer_says_so() -> None:
    with pytest.raises(NoTextLayer) as err:
        read_document(make_pdf(["", ""], image_only=True), "scan.pdf")
    assert "no text layer" in str(err.value) and "scan" in str(err.value)


def test_corrupt_pdf_is_unreadable_not_a_crash() -> None:
    data = make_pdf(["Some text here for the test."])
    with pytest.raises(UnreadableDocument) as err:
        read_document(data[:60], "broken.pdf")  # header only: no objects, no xref
    assert "broken.pdf" in str(err.value)
    with pytest.raises(UnreadableDocument):
        read_document(b"this is not a pdf at all", "fake.pdf")


def test_docx_paragraphs_tables_and_title() -> None:
    data = make_docx(
        ["봄이 오면 우리는 다시 만날 것이다.", "The garden will bloom again."],
        title="Spring",
        table=[["Season", "Mood"], ["Spring", "Hopeful"]],
    )
    doc = read_document(data, "letter.docx")
    assert doc.kind == "docx" and doc.title == "Spring"
    assert "봄이 오면 우리는 다시 만날 것이다." in doc.text
    assert "The garden will bloom again." in doc.text
    assert "Spring Hopeful" in doc.text


def test_corrupt_docx_and_zip_without_word_body_are_unreadable() -> None:
    with pytest.raises(UnreadableDocument) as err:
        read_document(b"PK\x03\x04 definitely not a zip", "bad.docx")
    assert ".docx" in str(err.value)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not word")
    with pytest.raises(UnreadableDocument, match="not a Word document"):
        read_document(buffer.getvalue(), "zip.docx")


# --- bad input: one class and one message each ------------------------------------------------


def test_each_bad_input_has_its_own_error_class() -> None:
    cases = {
        EmptyDocument: lambda: read_document(b"", "empty.txt"),
        UnsupportedFileType: lambda: read_document(b"hello", "song.mp3"),
        FileTooLarge: lambda: read_document(b"a" * 101, "big.txt", max_bytes=100),
        NotText: lambda: read_document(fixture("binary_renamed.txt"), "photo.txt"),
        NoTextLayer: lambda: read_document(make_pdf([""], image_only=True), "scan.pdf"),
        UnreadableDocument: lambda: read_document(b"%PDF-1.4 garbage", "broken.pdf"),
    }
    messages = set()
    for error_class, call in cases.items():
        with pytest.raises(error_class) as err:
            call()
        assert type(err.value) is error_class
        assert isinstance(err.value, DocumentError) and isinstance(err.value, UserInputError)
        messages.add(str(err.value))
    assert len(messages) == len(cases)


def test_empty_and_whitespace_only_documents() -> None:
    with pytest.raises(EmptyDocument, match="empty"):
        read_document(b"   \n\t\n ", "blank.txt")
    with pytest.raises(EmptyDocument):
        read_document(b"<html><body><script>x()</script></body></html>", "blank.html")
    with pytest.raises(EmptyDocument):
        document_from_text("  \n ")


def test_unsupported_type_lists_supported_types_and_conversion_tips() -> None:
    with pytest.raises(UnsupportedFileType) as err:
        read_document(b"data", "story.hwp")
    message = str(err.value)
    for suffix in (".txt", ".md", ".pdf", ".docx", ".html"):
        assert suffix in message
    assert "Hangul" in message
    with pytest.raises(UnsupportedFileType, match="without an extension"):
        read_document(b"data", "README")


def test_size_limit_is_checked_before_parsing() -> None:
    # a corrupt PDF over the limit must report the size, proving nothing was parsed
    with pytest.raises(FileTooLarge) as err:
        read_document(b"%PDF-1.4 " + b"x" * 2000, "huge.pdf", max_bytes=1000)
    assert "1 KB" in str(err.value) and "limit" in str(err.value)


def test_binary_renamed_txt_names_what_it_really_is() -> None:
    with pytest.raises(NotText, match="PNG image"):
        read_document(fixture("binary_renamed.txt"), "photo.txt")
    with pytest.raises(NotText, match="Rename it to .pdf"):
        read_document(make_pdf(["Hello world, some text."]), "report.txt")
    with pytest.raises(NotText, match="binary data"):
        read_document(fixture("random_bytes.txt"), "data.txt")
    with pytest.raises(NotText):
        document_from_text("\x01\x02\x03\x04\x05\x06 hi \x07\x08")


# --- long documents ---------------------------------------------------------------------------


def test_long_text_is_sampled_across_the_document_not_rejected() -> None:
    paragraphs = [f"Paragraph {i} tells part {i} of the long story." for i in range(5000)]
    text = "\n\n".join(paragraphs)
    doc = read_document(text.encode(), "long.txt", max_chars=20_000)
    assert doc.truncated and len(doc.text) <= 20_000
    numbers = [int(line.split()[1]) for line in doc.text.split("\n\n") if line.startswith("Paragraph ")]
    # beginning, middle and end all represented, in order
    assert numbers[0] < 100 and numbers[-1] > 4300
    assert any(2000 < n < 3000 for n in numbers)
    assert numbers == sorted(numbers)
    short = read_document(b"A short note about the rain.", "short.txt", max_chars=20_000)
    assert not short.truncated


def test_sample_sections_cuts_at_paragraph_boundaries() -> None:
    text = "\n\n".join(f"Block {i} " + "word " * 40 for i in range(200))
    sampled = sample_sections(text, 5000)
    assert len(sampled) <= 5000
    for block in sampled.split("\n\n"):
        assert block.startswith("Block ")


def test_long_pdf_reads_a_bounded_number_of_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.text.ingest as ingest

    monkeypatch.setattr(ingest, "MAX_PDF_PAGES", 5)  # a module constant, not our logic
    data = make_pdf([f"Page number {i} of the manual." for i in range(20)])
    doc = read_document(data, "manual.pdf")
    assert doc.truncated and doc.pages == 20
    # five pages spread over the whole document: 0, 4, 8, 12, 16
    found = [int(w) for w in doc.text.replace("Page number", "|").split("|")[1:] for w in [w.split()[0]]]
    assert found == [0, 4, 8, 12, 16]


def test_decode_text_rejects_nul_bytes_in_single_byte_text() -> None:
    with pytest.raises(NotText):
        decode_text(b"hello\x00world" + b"\xff\xfe\xfd" * 30, "x.txt")


# --- language -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The rain kept falling on the old town while we waited.", "en"),
        ("Rainy night", "en"),
        ("비가 계속 내리는 밤, 우리는 오래된 마을에서 기다렸다.", "ko"),
        ("오늘 회의에서 AI model과 GPU server 문제를 논의했다.", "ko"),  # Korean with English terms
        ("La pluie tombait sur la vieille ville pendant que nous attendions le train.", "other"),
        ("Der Regen fiel auf die alte Stadt, während wir auf den Zug warteten.", "other"),
        ("雨が降り続く夜、私たちは古い町で待っていた。", "other"),
        ("Дождь шёл всю ночь над старым городом.", "other"),
        ("12345 !!! ---", "other"),
    ],
)
def test_language_detection(text: str, expected: str) -> None:
    assert detect_language(text) == expected


def test_empty_upload_is_refused_from_its_reported_size() -> None:
    from engine.text.ingest import check_upload

    with pytest.raises(EmptyDocument, match="notes.txt is empty"):
        check_upload("notes.txt", 0)
    assert check_upload("notes.txt", 10) == check_upload("other.txt", 2000)
