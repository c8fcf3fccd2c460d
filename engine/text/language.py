"""Which language a text is in: Korean and English are first-class, everything else is "other".

Script counting is enough here (and costs microseconds): Hangul marks Korean; Latin letters plus
common English function words mark English. Other languages still get analysed — through the
multilingual encoder — and are labelled "other" so users know the result is less certain.
"""

from __future__ import annotations

import re

KOREAN, ENGLISH, OTHER = "ko", "en", "other"
LANGUAGE_NAMES = {KOREAN: "Korean", ENGLISH: "English", OTHER: "other"}

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_WORD = re.compile(r"[A-Za-z']+")
# the most frequent English words; other Latin-script languages rarely use many of them
_ENGLISH_WORDS = frozenset(
    "the a an and or but of to in on at for with from by is are was were be been being it its this that "
    "these those i you he she we they me him her us them my your his our their not no so as if then "
    "than have has had do does did will would can could should there here what which who when where "
    "how all one up out about into over after just like very".split()
)

SAMPLE_CHARS = 20_000  # enough to decide; keeps detection O(1) on long documents


def detect_language(text: str) -> str:
    """Return ``"ko"``, ``"en"`` or ``"other"``."""
    sample = _sample(text)
    letters = sum(1 for ch in sample if ch.isalpha())
    if letters == 0:
        return OTHER
    hangul = len(_HANGUL.findall(sample))
    # a Hangul syllable is a whole syllable, English words are ~5 letters: 0.2 already means
    # Korean prose with some English terms mixed in
    if hangul / letters >= 0.2:
        return KOREAN
    latin = len(_LATIN.findall(sample))
    if latin / letters < 0.6:
        return OTHER
    words = _WORD.findall(sample.lower())
    if not words:
        return OTHER
    english = sum(1 for w in words if w in _ENGLISH_WORDS)
    ascii_share = len(_ASCII_LETTER.findall(sample)) / latin
    # short English snippets ("Rainy night", a title) may have no function word at all
    if english / len(words) >= 0.12 or (len(words) <= 12 and ascii_share > 0.98):
        return ENGLISH
    return OTHER


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


def _sample(text: str) -> str:
    if len(text) <= SAMPLE_CHARS:
        return text
    third = SAMPLE_CHARS // 3
    mid = len(text) // 2
    return text[:third] + text[mid - third // 2 : mid + third // 2] + text[-third:]
