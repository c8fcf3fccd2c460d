"""The ``Document`` a reader returns and the ``DocumentError`` family it raises, with message helpers."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import UserInputError

# the order is what users see in every "supported types" message
SUPPORTED_TYPES_TEXT = ".txt, .md, .pdf, .docx, .html"


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
    sampled down to the character limit (or a PDF's page or time limit, or a .docx's text limit).
    ``title`` is always one line of at most ``MAX_TITLE_CHARS`` characters (it is shown to users).
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


def format_size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} MB"
    if n >= 1_000:
        return f"{n / 1_000:.0f} KB"
    return f"{n} bytes"


def short_error(exc: BaseException) -> str:
    """A library's exception text, one line and short enough to quote to a user."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."
