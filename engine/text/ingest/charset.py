"""Bytes of unknown encoding → text: BOM, UTF-16, strict UTF-8, a declared charset, Korean, Western, then a guess.

The order matters more than any detector: a real UTF-8 file always decodes strictly, a Korean file
from Windows is CP949 (EUC-KR is its subset), and a Western file that is not UTF-8 is almost always
Windows-1252 / Latin-1. Only text that fits none of these is handed to charset-normalizer, whose
statistics are unreliable on short texts (it read Latin-1 "crème brûlée" as cp1250 or cp1006).
"""

from __future__ import annotations

import re
import unicodedata

from engine.text.ingest.errors import SUPPORTED_TYPES_TEXT, NotText

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
# when charset-normalizer finds several equally good readings, prefer these (UTF-16 is not here:
# it is recognised from its NUL bytes above, and "Café" must never become two CJK characters)
_PREFERRED_ENCODINGS = ("cp949", "euc_kr", "cp1252", "latin_1")
# <meta charset="..."> / <meta http-equiv=... content="text/html; charset=...">, in the first 4 KB
_META_CHARSET = re.compile(rb"""<meta[^<>]{0,512}?charset=["']?([A-Za-z0-9_\-]{1,40})""", re.I)

_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_HANGUL_SYLLABLE = re.compile(r"[\uac00-\ud7a3]")
_ASCII_LETTER = re.compile(r"[A-Za-z]")
# non-ASCII letters of Western European languages in Windows-1252 (× and ÷ are not letters)
_WESTERN_LETTER = re.compile(
    r"[\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff\u0152\u0153\u0160\u0161\u0178\u017d\u017e]"
)
# and the punctuation / symbols such text uses
_WESTERN_SIGN = re.compile(r"[\u2018\u2019\u201a\u201c\u201d\u201e\u2013\u2014\u2026\u2022\u20ac\u00ab\u00bb"
                           r"\u00b0\u00a7\u00a9\u00ae\u00b7\u00a1\u00bf\u00aa\u00ba\u00bd\u00bc\u00be\u00a0\u00a3]")  # fmt: skip


def _count(pattern: re.Pattern[str], text: str) -> int:
    return pattern.subn("", text)[1]


def printable_ratio(text: str) -> float:
    """Share of the first 20 000 characters that are not control / unassigned code points."""
    if not text:
        return 1.0
    sample = text[:20000]
    bad = sum(
        1 for ch in sample if unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") and ch not in "\n\r\t\f"
    )
    return 1.0 - bad / len(sample)


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


def not_text_error(data: bytes, name: str) -> NotText:
    for magic, what, suffix in _MAGIC:
        if data.startswith(magic):
            fix = f" Rename it to {suffix} and send it again." if suffix else f" Send {SUPPORTED_TYPES_TEXT}."
            return NotText(f"{name} is not a text file — it looks like {what}.{fix}")
    return NotText(
        f"{name} doesn't look like text (it contains binary data). "
        f"Send a plain-text, Markdown, PDF, Word (.docx) or HTML file, or paste the text."
    )


def _korean(data: bytes) -> str | None:
    """CP949 text: decodes strictly, its non-ASCII characters are mostly Hangul syllables, and they
    weigh at least a little against the Latin letters (a syllable is worth ~3 letters). A Western
    file that happens to decode (``Äp`` is a valid CP949 pair) fails the second and third tests."""
    try:
        text = data.decode("cp949")
    except UnicodeDecodeError:
        return None
    hangul = _count(_HANGUL_SYLLABLE, text)
    if hangul and hangul >= 0.6 * _count(_NON_ASCII, text) and hangul * 6 >= _count(_ASCII_LETTER, text):
        return text
    return None


def _western(data: bytes) -> str | None:
    """Windows-1252 (a superset of Latin-1's printable range): decodes strictly, nearly all its
    non-ASCII characters are Western letters or punctuation, and those letters are a minority of the
    letters (Cyrillic or Greek bytes read as 1252 are all "accented letters")."""
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    non_ascii = _count(_NON_ASCII, text)
    accented = _count(_WESTERN_LETTER, text)
    if accented + _count(_WESTERN_SIGN, text) < 0.9 * non_ascii:
        return None
    if accented > 0.4 * (accented + _count(_ASCII_LETTER, text)):
        return None
    return text


def decode_text(data: bytes, name: str = "document", *, html: bool = False) -> tuple[str, str]:
    """Decode bytes of unknown encoding; raise ``NotText`` for binary data. Returns (text, encoding)."""
    if data.startswith(_STRONG_MAGIC):  # a PDF or image renamed .txt can decode "fine" as cp1252
        raise not_text_error(data, name)
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
        if decoded and printable_ratio(decoded) >= 0.95:
            return decoded, utf16
    if b"\x00" in data[:65536]:
        # NULs never occur in real single-byte / UTF-8 / CJK text
        raise not_text_error(data, name)
    text, encoding = _decode_8bit(data, name, html=html)
    if printable_ratio(text) < 0.85:
        raise not_text_error(data, name)
    return text, encoding


def _decode_8bit(data: bytes, name: str, *, html: bool) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    if html:
        match = _META_CHARSET.search(data[:4096])
        if match:
            declared = match.group(1).decode("ascii").lower()
            try:
                return data.decode(declared), declared
            except (LookupError, UnicodeDecodeError):
                pass
    text = _korean(data)
    if text is not None:
        return text, "cp949"
    text = _western(data)
    if text is not None:
        return text, "cp1252"
    return _detect(data, name)


def _detect(data: bytes, name: str) -> tuple[str, str]:
    from charset_normalizer import from_bytes

    results = from_bytes(data)
    best = results.best()
    if best is None:
        raise not_text_error(data, name)
    # several readings are often equally plausible (cp1250 vs cp1252 for French): pick the usual one
    close = [r for r in results if r.chaos <= best.chaos + 0.01 and r.coherence >= best.coherence - 0.02]
    for preferred in _PREFERRED_ENCODINGS:
        for match in close:
            if preferred in (match.encoding, *match.could_be_from_charset):
                return data.decode(preferred, errors="replace"), preferred
    return str(best), best.encoding
