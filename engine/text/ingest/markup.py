"""Text passes over extracted text: line-length cap, normalisation, Markdown and HTML → plain text.

Every pass is linear in its input, because a user chooses the input. The rules that keep regular
expressions linear here: a repeated class never overlaps what may follow it (``[^\\[\\]]*`` inside
brackets, ``[^*\\n]`` inside ``*...*``), a run that may fail is only tried from its first character
(``(?<![ \\t])``), ``\\s`` is never used where it could cross a line, and lines are capped at
``MAX_LINE_CHARS`` before any pattern runs. ``tests/test_hostile_input.py`` feeds each pass 2 MB of
its worst case.
"""

from __future__ import annotations

import re
import unicodedata

# longer lines are broken (at a space where there is one) before any pattern runs
MAX_LINE_CHARS = 10_000
# a title is shown in Discord messages: one line, this long at most
MAX_TITLE_CHARS = 120


def cap_line_length(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """Unify newlines and break every line longer than ``limit`` (at a space in its second half
    when there is one), so no later pass ever sees an unbounded line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if len(text) <= limit:
        return text
    out: list[str] = []
    for line in text.split("\n"):
        start = 0
        while len(line) - start > limit:
            cut = line.rfind(" ", start + limit // 2, start + limit)
            if cut == -1:
                out.append(line[start : start + limit])
                start += limit
            else:
                out.append(line[start:cut])
                start = cut + 1
        out.append(line[start:] if start else line)
    return "\n".join(out)


def clean_title(title: str | None) -> str | None:
    """One line, whitespace collapsed, at most ``MAX_TITLE_CHARS`` (escaping mentions is the bot's job)."""
    if not title:
        return None
    title = " ".join(title[: MAX_TITLE_CHARS * 8].split())
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1].rstrip() + "…"
    return title or None


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# trailing blanks, tried only from the first blank of a run (a run without a newline is one attempt)
_TRAILING_BLANKS = re.compile(r"(?<![ \t])[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC (so decomposed Hangul from macOS matches), unify newlines, drop control chars, trim."""
    text = cap_line_length(text)
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\u00a0", " ").replace("\ufeff", "").replace("\u200b", "")
    text = _CONTROL_CHARS.sub("", text)
    text = _TRAILING_BLANKS.sub("\n", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


# --------------------------------------------------------------------------------------------
# Markdown

# (pattern, replacement, a substring the pattern cannot match without: the rule is skipped when absent)
_MD_RULES: tuple[tuple[re.Pattern[str], str, str | None], ...] = (
    (re.compile(r"\A---\n.*?\n---\n", re.S), "", "---\n"),  # YAML front matter (one anchored attempt)
    # fenced code is not prose; an opener only fails when no later fence of its kind exists (once)
    (re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M), "", None),
    (re.compile(r"!\[([^\[\]]*)\]\([^()]*\)"), r"\1", "!["),  # images -> alt text
    (re.compile(r"\[([^\[\]]+)\]\([^()]*\)"), r"\1", "]("),  # links -> their text
    (re.compile(r"^[ \t]*\[[^\[\]\n]+\]:[ \t]*\S+.*$", re.M), "", "]:"),  # reference link definitions
    (re.compile(r"<[^<>\n]+>"), "", "<"),  # inline HTML tags
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]*", re.M), "", "#"),  # heading markers
    (re.compile(r"^[ \t]{0,3}>[ \t]?", re.M), "", ">"),  # block quotes
    (re.compile(r"^[ \t]*(?:[-*+]|\d+[.)])[ \t]+", re.M), "", None),  # list bullets
    (re.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$", re.M), "", None),  # horizontal rules
    # table separators: one optional "|" between blank runs, never two adjacent blank runs
    (re.compile(r"^[ \t]*(?:\|[ \t]*)?:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*(?:\|[ \t]*)?$", re.M), "", "-"),
    (re.compile(r"^[ \t]*\|[ \t]*|(?<![ \t])[ \t]*\|[ \t]*$", re.M), "", "|"),  # table row edges
    (re.compile(r"(?<![ \t])[ \t]*\|[ \t]*"), " ", "|"),  # table cells
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2", None),  # bold (within a line; any later pair closes it)
    # italics: the text between may not contain the marker, so each opener scans to the next marker only
    (re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])"), r"\1", "*"),
    (re.compile(r"(?<![\w*])_(?!\s)([^_\n]+?)(?<!\s)_(?![\w*])"), r"\1", "_"),
    (re.compile(r"~~(.+?)~~"), r"\1", "~~"),
    (re.compile(r"`([^`]*)`"), r"\1", "`"),
)
_HEADING = re.compile(r"^[ \t]{0,3}#[ \t]+(.+)$", re.M)


def drop_html_comments(text: str) -> str:
    """Remove ``<!-- ... -->`` with two ``find`` calls per comment (a regex retries every unclosed
    opener to the end of the text: quadratic on ``<!--`` repeated). An unclosed comment runs to
    the end, as in HTML."""
    parts: list[str] = []
    pos = 0
    while True:
        start = text.find("<!--", pos)
        if start == -1:
            parts.append(text[pos:])
            break
        parts.append(text[pos:start])
        end = text.find("-->", start + 4)
        if end == -1:
            break
        pos = end + 3
    return "".join(parts)


def _heading_title(text: str) -> str | None:
    match = _HEADING.search(text)
    if not match:
        return None
    title = match.group(1).rstrip()
    closed = title.rstrip("#")  # "# Title ##": the closing hashes need a blank before them
    if closed != title and (not closed or closed[-1] in " \t"):
        title = closed.rstrip()
    title = title.replace("*", "").replace("_", "").replace("`", "")
    return title.strip() or None


def strip_markdown(text: str) -> tuple[str, str | None]:
    """Light Markdown → text: keep the words, drop the markup. Returns (text, first H1 or None)."""
    text = cap_line_length(text)
    title = _heading_title(text)
    # blank runs first: line-anchored rules then meet one empty line, not a million
    text = _BLANK_LINES.sub("\n\n", _TRAILING_BLANKS.sub("\n", text))
    text = drop_html_comments(text)
    for pattern, repl, needle in _MD_RULES:
        if needle is None or needle in text:
            text = pattern.sub(repl, text)
    return text, title


# --------------------------------------------------------------------------------------------
# HTML

_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "head", "nav", "footer", "iframe", "object",
              "title"}  # fmt: skip
_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section",
    "article", "blockquote", "pre", "header", "main", "aside", "dd", "dt", "hr", "figcaption",
}  # fmt: skip
_VOID_TAGS = {"br", "hr"}  # one line break each (lxml reports an end for them too)
_BLANK_RUN = re.compile(r"[ \t]+")


def html_to_text(markup: str) -> tuple[str, str | None]:
    """Visible text of an HTML page (block elements become line breaks) and its ``<title>``.

    libxml2's HTML parser (through lxml) is linear and C-fast; the standard library's
    ``html.parser`` is quadratic on inputs such as ``<a`` or ``<!--`` repeated. No network, no
    entities beyond HTML's own, and the tree is walked without recursion."""
    from lxml import etree

    parser = etree.HTMLParser(
        encoding="utf-8", no_network=True, remove_comments=True, remove_pis=True, huge_tree=False
    )
    root = etree.fromstring(markup.encode("utf-8", errors="replace"), parser)
    if root is None:
        return "", None
    parts: list[str] = []
    title: str | None = None
    skip_depth = 0
    for event, element in etree.iterwalk(root, events=("start", "end")):
        tag = element.tag if isinstance(element.tag, str) else None
        if tag is None:  # a comment or processing instruction that survived: only its tail is text
            if event == "end" and not skip_depth and element.tail:
                parts.append(element.tail)
            continue
        if event == "start":
            if tag == "title" and title is None:
                title = "".join(element.itertext())
            if tag in _SKIP_TAGS:
                skip_depth += 1
            if tag in _BLOCK_TAGS:
                parts.append("\n")
            if not skip_depth and element.text:
                parts.append(element.text)
        else:
            if tag in _SKIP_TAGS:
                skip_depth -= 1
            if tag in _BLOCK_TAGS and tag not in _VOID_TAGS:
                parts.append("\n")
            if not skip_depth and element.tail:
                parts.append(element.tail)
    text = cap_line_length("".join(parts))
    text = _BLANK_RUN.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return text, clean_title(title)
