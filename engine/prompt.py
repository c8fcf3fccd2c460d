"""Categories (+ free keywords) → a validated ``MusicSpec`` with a MusicGen text prompt.

The prompt imitates the captions MusicGen was trained on (MusicCaps: "A calm, dreamy lo-fi hip hop
track featuring piano and drums. Slow tempo, 76 BPM."): short declarative sentences naming genre,
mood, instruments, tempo in words and BPM, and where the music fits. It is deterministic: the same
choices always give the same text, so a seed reproduces a track.

Every user-facing problem raises a ``UserInputError`` subclass whose message says what to change.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from engine.catalogue import MAX_BPM, MIN_BPM, Catalogue, TempoInfo, default_catalogue
from engine.errors import UserInputError
from engine.spec import MusicSpec

MAX_ITEMS = 5  # per kind: genres, moods, instruments, keywords
MAX_KEYWORD_CHARS = 60
MAX_PROMPT_CHARS = 400
MIN_DURATION, MAX_DURATION = 5.0, 180.0
DEFAULT_DURATION = 15.0
MODES = ("major", "minor")

_SPLIT = re.compile(r"[,，、]")
# words that mean the user wants a voice: then we must not ask MusicGen for an instrumental
_VOCAL_WORDS = re.compile(
    r"\b(vocals?|voices?|sing|singer|singing|sung|choir|choral|rap|rapping|lyrics?|chant\w*)\b|보컬|노래|합창|랩|가사",
    re.IGNORECASE,
)


class PromptInputError(UserInputError):
    """A category list, keyword, duration, key or prompt the builder cannot accept."""


# --- parsing single values ----------------------------------------------------------------------


def parse_duration(value: str | int | float) -> float:
    """Seconds from 15, 15.5, "15", "15s", "15 sec", "0:15", "1:00", "1m30s", "1분", "30초" (5..180 s)."""
    hint = "use seconds (15) or m:ss (0:15, 0:30, 1:00)"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PromptInputError(f"Duration {value!r} not understood: {hint}.")
    if isinstance(value, str):
        text = value.strip().lower()
        seconds = _duration_from_text(text)
        if seconds is None:
            shown = " ".join(value.split())[:30]
            raise PromptInputError(f"Duration '{shown}' not understood: {hint}.")
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or not MIN_DURATION <= seconds <= MAX_DURATION:
        shown = f"{seconds:g} s" if math.isfinite(seconds) else str(value)
        raise PromptInputError(
            f"Duration {shown} is out of range: choose {MIN_DURATION:g} s to {_mmss(MAX_DURATION)} "
            "(0:15, 0:30 and 1:00 are the usual lengths)."
        )
    return seconds


def _duration_from_text(text: str) -> float | None:
    match = re.fullmatch(r"(\d+):([0-5]\d)", text)
    if match:
        return float(int(match.group(1)) * 60 + int(match.group(2)))
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|secs|second|seconds|초)?", text)
    if match:
        return float(match.group(1))
    match = re.fullmatch(
        r"(\d+(?:\.\d+)?)\s*(?:m|min|mins|minute|minutes|분)(?:\s*(\d+)\s*(?:s|sec|secs|second|seconds|초)?)?",
        text,
    )
    if match:
        return float(match.group(1)) * 60 + (int(match.group(2)) if match.group(2) else 0)
    return None


def _mmss(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def parse_mode(value: str) -> str:
    """ "major"/"minor" (also maj, min, 장조, 단조)."""
    text = str(value).strip().lower()
    if text in ("major", "maj", "장조"):
        return "major"
    if text in ("minor", "min", "단조"):
        return "minor"
    raise PromptInputError(f"Mode '{str(value)[:20]}' not understood: use major or minor.")


def parse_key(value: str) -> tuple[str, str | None]:
    """A tonic with an optional mode: "C", "f#", "Bb", "Am", "A minor", "F♯ maj" → ("A", "minor")."""
    text = str(value).strip().replace("♯", "#").replace("♭", "b")
    match = re.fullmatch(r"([A-Ga-g])([#b]?)\s*(m|min|minor|maj|major|장조|단조)?", text, flags=re.IGNORECASE)
    if not match or (match.group(3) == "M"):
        shown = " ".join(str(value).split())[:20]
        raise PromptInputError(
            f"Key '{shown}' not understood: use a note name such as C, F# or Bb, optionally with m or minor (Am)."
        )
    tonic = match.group(1).upper() + match.group(2)
    suffix = match.group(3)
    return tonic, (parse_mode("minor" if suffix.lower() == "m" else suffix) if suffix else None)


def _split_items(values: str | Iterable[str] | None, what: str) -> list[str]:
    """User lists arrive as a tuple of strings or one comma-separated string; both are accepted."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    items = []
    for value in values:
        if not isinstance(value, str):
            raise PromptInputError(f"Each {what} must be text, not {type(value).__name__}.")
        items.extend(part.strip() for part in _SPLIT.split(value))
    return [item for item in items if item]


def _canonical(kind: str, values, cat: Catalogue) -> tuple[str, ...]:
    singular = kind[:-1]
    names: list[str] = []
    for item in _split_items(values, singular):
        entry = cat.resolve(kind, item)
        if entry.en not in names:  # "Lofi, 로파이" is one genre
            names.append(entry.en)
    if len(names) > MAX_ITEMS:
        raise PromptInputError(f"Too many {kind} ({len(names)}): choose at most {MAX_ITEMS}.")
    return tuple(names)


def _clean_text(text: str) -> str:
    return " ".join(text.split())


def _keywords(values) -> tuple[str, ...]:
    out: list[str] = []
    for raw in _split_items(values, "keyword"):
        keyword = _clean_text(raw)
        if len(keyword) > MAX_KEYWORD_CHARS:
            raise PromptInputError(
                f"Keyword '{keyword[:20]}…' is {len(keyword)} characters long: keep each keyword "
                f"under {MAX_KEYWORD_CHARS + 1} characters."
            )
        if not keyword.isprintable():
            raise PromptInputError(f"Keyword '{keyword[:20]}' contains control characters; use plain text.")
        if keyword.casefold() not in (k.casefold() for k in out):
            out.append(keyword)
    if len(out) > MAX_ITEMS:
        raise PromptInputError(f"Too many keywords ({len(out)}): use at most {MAX_ITEMS}.")
    return tuple(out)


def _free_text(prompt: str | None) -> str | None:
    if prompt is None:
        return None
    if not isinstance(prompt, str):
        raise PromptInputError("The prompt must be text.")
    text = _clean_text(prompt)
    if not text:
        return None
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptInputError(
            f"The prompt is {len(text)} characters long: keep it under {MAX_PROMPT_CHARS + 1} characters."
        )
    if not text.isprintable():
        raise PromptInputError("The prompt contains control characters; use plain text.")
    return text


# --- the caption --------------------------------------------------------------------------------


def _join(words: list[str], conjunction: str = "and") -> str:
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def _article(phrase: str) -> str:
    """ "a" or "an" for the first word (by sound: an EDM, an R&B, a European, an upbeat)."""
    first = phrase.split()[0] if phrase.split() else ""
    if not first:
        return "a"
    bare = first.strip("\"'(")
    if bare.isupper() and bare[:1].isalpha():  # read letter by letter
        return "an" if bare[0] in "AEFHILMNORSX" else "a"
    if bare[:1].isdigit():
        return "an" if bare.startswith(("8", "11", "18")) else "a"
    lower = bare.lower()
    if lower.startswith(("uni", "use", "euro", "one", "ukulele")):
        return "a"
    if lower.startswith(("hour", "honest")):
        return "an"
    return "an" if lower[:1] in "aeiou" else "a"


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def build_prompt(
    *,
    genres: Iterable[str] = (),
    moods: Iterable[str] = (),
    instruments: Iterable[str] = (),
    keywords: Iterable[str] = (),
    tempo: str | None = None,
    bpm: int | None = None,
    key: str | None = None,
    mode: str | None = None,
    prompt: str | None = None,
    catalogue: Catalogue | None = None,
) -> str:
    """The MusicCaps-style caption for already-validated choices (deterministic).

    ``tempo``/``bpm`` None leaves tempo out; ``mode`` None leaves the key out unless ``key`` is set.
    """
    cat = catalogue or default_catalogue()
    genre_words = [cat.text("genres", g) for g in genres]
    hints = [cat.mood_hint(m) for m in moods]
    adjectives = [h.adj for h in hints if h.adj]
    scenes = list(dict.fromkeys(h.scene for h in hints if h.scene))
    instrument_words = [cat.text("instruments", i) for i in instruments]
    keywords = list(keywords)
    free = _free_text(prompt)

    sentences: list[str] = []
    vocal = bool(_VOCAL_WORDS.search(" ".join([*keywords, *instrument_words, free or ""])))
    if genre_words or adjectives or instrument_words or keywords:
        words = [", ".join(adjectives)] if adjectives else []
        if not vocal:
            words.append("instrumental")  # background music: ask MusicGen not to sing
        if len(genre_words) <= 2:
            words += [_join(genre_words), "track"] if genre_words else ["track"]
            head = " ".join(w for w in words if w)
            if instrument_words:
                head += f" featuring {_join(instrument_words)}"
        else:
            head = " ".join(words + ["track blending", _join(genre_words)])
            if instrument_words:
                head += f", featuring {_join(instrument_words)}"
        sentences.append(_sentence(f"{_article(head)} {head}"))
    elif free:
        sentences.append(_sentence(free))  # only free text: it is the base of the prompt
        free = None

    if bpm is not None:
        label = tempo or cat.tempo_label(bpm).label
        tempo_text = f"{label} tempo, {int(bpm)} BPM"
        if key:
            tempo_text += f", in {key} {mode or 'major'}"
        elif mode:
            tempo_text += f", in a {mode} key"
        sentences.append(_sentence(tempo_text))
    elif key:
        sentences.append(_sentence(f"In {key} {mode or 'major'}"))
    elif mode:
        sentences.append(_sentence(f"In a {mode} key"))

    if keywords:
        sentences.append(_sentence(f"Evokes {_join([_keyword_text(k, cat) for k in keywords])}"))
    if scenes:
        sentences.append(_sentence(f"It could be played {_join(scenes, 'or')}"))
    if free:
        sentences.append(_sentence(free))
    return " ".join(sentences)


def _keyword_text(keyword: str, cat: Catalogue) -> str:
    """A keyword that is a catalogue name reads in English ("크리스마스" → "Christmas" style words)."""
    for kind in ("genres", "moods", "instruments"):
        entry = cat.get(kind, keyword)
        if entry is not None and not keyword.isascii():
            return (
                cat.text(kind, entry.en)
                if kind != "moods"
                else (cat.mood_hint(entry.en).adj or entry.en.lower())
            )
    return keyword


# --- the spec -----------------------------------------------------------------------------------


def build_spec(
    genres: Iterable[str] | str = (),
    moods: Iterable[str] | str = (),
    instruments: Iterable[str] | str = (),
    keywords: Iterable[str] | str = (),
    tempo: str | int | float | TempoInfo | None = None,
    duration: str | int | float = DEFAULT_DURATION,
    prompt: str | None = None,
    key: str | None = None,
    mode: str | None = None,
    reasons: Iterable[str] = (),
    catalogue: Catalogue | None = None,
) -> MusicSpec:
    """Validate and canonicalise user choices (English or Korean) and derive bpm, mode and energy.

    Without a tempo the BPM comes from the first genre's typical tempo, nudged by the moods' energy,
    else from the moods' energy alone, else Medium. The mode is ``mode``, else the key's (``Am``),
    else the majority of the moods' modes (ties: the sign of their mean valence), else a genre's
    lean, else major. Raises ``UserInputError`` subclasses with a message for the user.
    """
    cat = catalogue or default_catalogue()
    genre_names = _canonical("genres", genres, cat)
    mood_names = _canonical("moods", moods, cat)
    instrument_names = _canonical("instruments", instruments, cat)
    keyword_list = _keywords(keywords)
    free = _free_text(prompt)
    if not (genre_names or mood_names or instrument_names or keyword_list or free):
        raise PromptInputError(
            "Say what to make: choose at least one genre, mood or instrument, add a keyword, or write a prompt."
        )
    seconds = parse_duration(duration if duration is not None else DEFAULT_DURATION)

    tonic, key_mode = parse_key(key) if key not in (None, "") else (None, None)
    hints = [cat.mood_hint(m) for m in mood_names]
    genre_hints = [cat.genre_hint(g) for g in genre_names]
    energy = round(sum(h.energy for h in hints) / len(hints), 2) if hints else None

    # tempo: explicit > genre's typical BPM (nudged by mood energy) > mood energy > not stated
    if isinstance(tempo, TempoInfo):
        info: TempoInfo | None = tempo
    elif tempo is None or (isinstance(tempo, str) and not tempo.strip()):
        info = None
    else:
        info = cat.tempo(tempo)
    tempo_stated = True
    if info is not None:
        bpm = info.bpm
    else:
        typical = next((g.bpm for g in genre_hints if g.bpm), None)
        if typical is not None:
            bpm = typical * (1 + 0.15 * ((energy if energy is not None else 0.5) - 0.5))
        elif energy is not None:
            bpm = 64 + 72 * energy  # calm 0.2 → 78 (Slow), happy 0.7 → 114, party 0.95 → 132
        else:
            bpm, tempo_stated = cat.tempo("Medium").bpm, False
        bpm = int(round(min(MAX_BPM, max(MIN_BPM, bpm))))
    label = cat.tempo_label(bpm).label

    mode_stated = True
    if mode not in (None, ""):
        final_mode = parse_mode(mode)
    elif key_mode:
        final_mode = key_mode
    elif hints:
        minor = sum(h.mode == "minor" for h in hints)
        major = len(hints) - minor
        if minor != major:
            final_mode = "minor" if minor > major else "major"
        else:
            final_mode = "major" if sum(h.valence for h in hints) >= 0 else "minor"
    else:
        final_mode = next((g.mode for g in genre_hints if g.mode), None) or "major"
        mode_stated = any(g.mode for g in genre_hints)

    if energy is None:
        energy = round(min(0.95, max(0.05, (bpm - 60) / 100)), 2) if tempo_stated else 0.5

    text = build_prompt(
        genres=genre_names,
        moods=mood_names,
        instruments=instrument_names,
        keywords=keyword_list,
        tempo=label if tempo_stated else None,
        bpm=bpm if tempo_stated else None,
        key=tonic,
        mode=final_mode if (mode_stated or tonic) else None,
        prompt=free,
        catalogue=cat,
    )
    return MusicSpec(
        prompt=text,
        genres=genre_names,
        moods=mood_names,
        instruments=instrument_names,
        keywords=keyword_list,
        tempo=label,
        bpm=bpm,
        mode=final_mode,
        key=tonic,
        energy=float(energy),
        duration=seconds,
        reasons=tuple(str(r) for r in reasons),
    )
