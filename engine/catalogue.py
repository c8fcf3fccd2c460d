"""The bilingual category catalogue: genres, moods, instruments, tempos, durations and book topics.

Reads ``data/categories.db`` (built from the reviewed source ``data/categories.json`` by
``engine.catalogue_build``). Every lookup accepts the English or the Korean label, or a known alias,
in any case and with any spacing or hyphens ("lofi", "Lo-Fi", "로파이"). Unknown names raise
``UnknownCategory`` with the closest matches.

The whole catalogue is a few hundred rows, so it is read into memory once and never written: one
``Catalogue`` is safe to share between threads and event loops. This module must stay light (no
torch, no discord): the bot's autocomplete calls ``complete`` on every keystroke.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sqlite3
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz import fuzz

from engine.errors import TexTuneSError, UserInputError

KINDS = ("genres", "moods", "instruments", "tempos", "durations")
SINGULAR = {
    "genres": "genre",
    "moods": "mood",
    "instruments": "instrument",
    "tempos": "tempo",
    "durations": "duration",
}
DEFAULT_DB = Path(__file__).resolve().parent.parent / "data" / "categories.db"
DEFAULT_SOURCE = DEFAULT_DB.with_name("categories.json")
MIN_BPM, MAX_BPM = 40, 220
AUTOCOMPLETE_LIMIT = 25  # Discord's maximum number of autocomplete choices
FUZZY_CUTOFF = 60.0  # rapidfuzz WRatio below this is noise for names this short
FUZZY_SPREAD = 12.0  # keep fuzzy hits within this many points of the best one


class UnknownCategory(UserInputError):
    """A name that matches no entry of its kind; ``suggestions`` holds the closest English names."""

    def __init__(self, message: str, *, kind: str, name: str, suggestions: list[str]):
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.suggestions = suggestions


class CatalogueMissing(TexTuneSError):
    """``data/categories.db`` is not there (a broken checkout or install)."""


@dataclass(frozen=True)
class Entry:
    kind: str
    en: str
    ko: str
    popular: bool

    @property
    def label(self) -> str:
        """Both labels for display, e.g. ``Lofi (로파이)``."""
        return self.en if self.ko == self.en else f"{self.en} ({self.ko})"


@dataclass(frozen=True)
class TempoInfo:
    label: str  # Slow / Medium / Fast
    bpm: int
    lo: int  # range of the label; equal to bpm when the user gave an explicit BPM
    hi: int
    ko: str = ""
    explicit: bool = False  # True when the user typed a number


@dataclass(frozen=True)
class GMProgram:
    program: int  # General MIDI program 0..127 (0 = standard kit when is_drum)
    is_drum: bool
    drum_notes: tuple[int, ...] = ()  # GM percussion keys that stand for this instrument (is_drum only)


@dataclass(frozen=True)
class MoodHint:
    mode: str  # "major" | "minor"
    energy: float  # 0..1
    valence: float  # -1..1 (unpleasant .. pleasant)
    arousal: float  # -1..1 (calm .. excited)
    adj: str | None = None  # adjective used in prompts ("calm", "loving"); None for themes like Wedding
    scene: str | None = None  # "at a wedding": where such music is played, used in prompts
    theme: bool = False  # a use or setting (Sports, Wedding) rather than a feeling; skipped by moods_near


@dataclass(frozen=True)
class GenreHint:
    text: str  # how the genre reads in a prompt ("lo-fi", "Korean traditional")
    bpm: int | None = None  # typical tempo, when the genre has one
    mode: str | None = None  # "minor" for genres that lean that way


@dataclass(frozen=True)
class Topic:
    id: int
    name: str
    genres: tuple[str, ...]
    ko: str = ""


# --- name normalisation -------------------------------------------------------------------------

_IGNORED = re.compile(r"[\s\-_'`’‘.·/]+")

# Hangul final consonants (jongseong) rewritten as initial consonants (choseong), so a half-typed
# syllable matches: while typing "로파이" an IME shows "롶" (ㅍ as a final) before "로파".
_FINAL_TO_INITIAL = {
    0x11A8: "\u1100", 0x11A9: "\u1101", 0x11AA: "\u1100\u1109", 0x11AB: "\u1102",
    0x11AC: "\u1102\u110c", 0x11AD: "\u1102\u1112", 0x11AE: "\u1103", 0x11AF: "\u1105",
    0x11B0: "\u1105\u1100", 0x11B1: "\u1105\u1106", 0x11B2: "\u1105\u1107", 0x11B3: "\u1105\u1109",
    0x11B4: "\u1105\u1110", 0x11B5: "\u1105\u1111", 0x11B6: "\u1105\u1112", 0x11B7: "\u1106",
    0x11B8: "\u1107", 0x11B9: "\u1107\u1109", 0x11BA: "\u1109", 0x11BB: "\u110a", 0x11BC: "\u110b",
    0x11BD: "\u110c", 0x11BE: "\u110e", 0x11BF: "\u110f", 0x11C0: "\u1110", 0x11C1: "\u1111",
    0x11C2: "\u1112",
}  # fmt: skip


def name_key(text: str) -> str:
    """The lookup key of a name: NFKC, case-folded, '&' as 'and', no spaces/hyphens/apostrophes."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("&", "and")
    return _IGNORED.sub("", text)


def _typing_key(text: str) -> str:
    """``name_key`` decomposed into jamo with finals as initials, for as-you-type prefix matching."""
    decomposed = unicodedata.normalize("NFKD", name_key(text))
    return decomposed.translate(_FINAL_TO_INITIAL)


def _similarity(query: str, name: str) -> float:
    """0..100: whole-name similarity, or a slightly discounted best-window match for longer names."""
    score = fuzz.ratio(query, name)
    if len(name) > len(query):
        score = max(score, 0.85 * fuzz.partial_ratio(query, name))
    return score


def _normalise_kind(kind: str) -> str:
    k = kind.strip().lower()
    if k in KINDS:
        return k
    for plural, single in SINGULAR.items():
        if k == single:
            return plural
    raise ValueError(f"unknown catalogue kind {kind!r}; expected one of {', '.join(KINDS)}")


# --- the catalogue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Name:
    entry: Entry
    text: str  # the name as written (English, Korean or alias)
    key: str  # name_key: for exact lookups and substring search
    typing: str  # _typing_key: jamo-level, for prefixes while a Hangul syllable is half typed


class Catalogue:
    """In-memory view of ``categories.db``. Use ``default_catalogue()`` for the shared instance."""

    def __init__(self, path: str | Path = DEFAULT_DB):
        self.path = Path(path)
        if not self.path.is_file():
            raise CatalogueMissing(
                f"Category database not found at {self.path}. Rebuild it with `textunes categories build`."
            )
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            self._load(conn)
        finally:
            conn.close()

    def _load(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self._entries: dict[str, list[Entry]] = {k: [] for k in KINDS}
        self._by_en: dict[tuple[str, str], Entry] = {}
        for row in conn.execute("SELECT kind, en, ko, popular FROM entries ORDER BY kind, position"):
            entry = Entry(row["kind"], row["en"], row["ko"], bool(row["popular"]))
            self._entries[entry.kind].append(entry)
            self._by_en[(entry.kind, entry.en)] = entry
        self._names: dict[str, list[_Name]] = {k: [] for k in KINDS}
        self._by_key: dict[tuple[str, str], Entry] = {}
        for row in conn.execute("SELECT kind, name, key, en FROM names ORDER BY kind, key"):
            entry = self._by_en[(row["kind"], row["en"])]
            self._names[row["kind"]].append(_Name(entry, row["name"], row["key"], _typing_key(row["name"])))
            self._by_key[(row["kind"], row["key"])] = entry
        self._text = {
            (r["kind"], r["en"]): r["text"] for r in conn.execute("SELECT kind, en, text FROM entries")
        }
        self._tempos = {
            r["en"]: TempoInfo(r["en"], r["bpm"], r["lo"], r["hi"], r["ko"])
            for r in conn.execute("SELECT en, ko, bpm, lo, hi FROM tempos")
        }
        self._durations = {
            r["en"]: int(r["seconds"]) for r in conn.execute("SELECT en, seconds FROM durations")
        }
        self._programs = {
            r["en"]: GMProgram(r["program"], bool(r["is_drum"]), tuple(json.loads(r["drum_notes"])))
            for r in conn.execute("SELECT en, program, is_drum, drum_notes FROM instruments")
        }
        self._moods = {
            r["en"]: MoodHint(
                r["mode"], r["energy"], r["valence"], r["arousal"], r["adj"], r["scene"], bool(r["theme"])
            )
            for r in conn.execute("SELECT * FROM moods")
        }
        self._genres = {
            r["en"]: GenreHint(r["text"], r["bpm"], r["mode"])
            for r in conn.execute(
                "SELECT e.en, e.text, g.bpm, g.mode FROM entries e LEFT JOIN genre_hints g ON g.en = e.en "
                "WHERE e.kind = 'genres'"
            )
        }
        topic_genres: dict[int, list[str]] = {}
        for r in conn.execute("SELECT topic_id, genre FROM topic_genres ORDER BY topic_id, rank"):
            topic_genres.setdefault(r["topic_id"], []).append(r["genre"])
        self._topics = [
            Topic(r["id"], r["name"], tuple(topic_genres.get(r["id"], ())), r["ko"])
            for r in conn.execute("SELECT id, name, ko FROM topics ORDER BY id")
        ]
        self._topic_by_id = {t.id: t for t in self._topics}
        self.meta = {r["key"]: r["value"] for r in conn.execute("SELECT key, value FROM meta")}

    # -- listing and lookup ------------------------------------------------------------------------

    def list(self, kind: str, popular: bool = False, search: str | None = None) -> list[Entry]:
        """Entries of a kind in catalogue order (popular first); ``search`` filters by name."""
        kind = _normalise_kind(kind)
        if search is not None and search.strip():
            ranked = self._rank(kind, search)
            close = [e for tier, _, e in ranked if tier < 2]
            entries = close or [e for _, _, e in ranked]  # nothing contains the text: show fuzzy hits
        else:
            entries = list(self._entries[kind])
        return [e for e in entries if e.popular] if popular else entries

    def get(self, kind: str, name: str) -> Entry | None:
        """Like ``resolve`` but returns None for unknown names."""
        return self._by_key.get((_normalise_kind(kind), name_key(name)))

    def resolve(self, kind: str, name: str) -> Entry:
        """The entry for an English/Korean name or alias; ``UnknownCategory`` with suggestions if none."""
        kind = _normalise_kind(kind)
        entry = self._by_key.get((kind, name_key(name))) if isinstance(name, str) else None
        if entry is not None:
            return entry
        raise self._unknown(kind, name if isinstance(name, str) else repr(name))

    def _unknown(self, kind: str, name: str) -> UnknownCategory:
        singular = SINGULAR[kind]
        shown = " ".join(name.split())[:60] or "(empty)"
        suggestions = self.suggest(kind, name) if name.strip() else []
        if suggestions:
            message = f"Unknown {singular} '{shown}'. Did you mean: {', '.join(suggestions)}?"
        else:
            popular = ", ".join(e.en for e in self._entries[kind] if e.popular)
            message = f"Unknown {singular} '{shown}'. Popular {kind}: {popular}."
        return UnknownCategory(message, kind=kind, name=name, suggestions=suggestions)

    def suggest(self, kind: str, name: str, limit: int = 3) -> list[str]:
        """Closest English names for a misspelt or partial name (prefix and substring hits first)."""
        ranked = self._rank(_normalise_kind(kind), name)
        if any(tier < 2 for tier, _, _ in ranked):  # the name is part of real names: offer only those
            ranked = [t for t in ranked if t[0] < 2]
        return [e.en for _, _, e in ranked[:limit]]

    def complete(self, kind: str, text: str, limit: int = AUTOCOMPLETE_LIMIT) -> list[Entry]:
        """Autocomplete: empty text gives popular entries first; otherwise prefix > substring > fuzzy."""
        kind = _normalise_kind(kind)
        limit = max(0, min(limit, AUTOCOMPLETE_LIMIT))
        if not text or not name_key(text):
            # sorted() is stable, so each group keeps catalogue order
            return sorted(self._entries[kind], key=lambda e: not e.popular)[:limit]
        return [e for _, _, e in self._rank(kind, text, typing=True)][:limit]

    def _rank(self, kind: str, text: str, typing: bool = False) -> list[tuple[int, float, Entry]]:
        """(tier, -score, entry) best first; tier 0 prefix, 1 substring, 2 fuzzy. One row per entry.

        ``typing``: the text may end in a half-typed Hangul syllable, so prefixes compare jamo.
        """
        query, plain = _typing_key(text), name_key(text)
        if not query:
            return []
        best: dict[str, tuple[int, float, Entry]] = {}
        for n in self._names[kind]:
            if n.typing.startswith(query) if typing else n.key.startswith(plain):
                tier, score = 0, 100.0
            elif plain in n.key:  # whole syllables only: "슬" must not match inside "스릴러"
                tier, score = 1, 100.0
            elif len(query) >= 3:  # fuzzy on one or two letters matches nearly everything
                score = _similarity(query, n.typing)
                if score < FUZZY_CUTOFF:
                    continue
                tier = 2
            else:
                continue
            candidate = (tier, -score, n.entry)
            current = best.get(n.entry.en)
            if current is None or candidate[:2] < current[:2]:
                best[n.entry.en] = candidate
        fuzzy_scores = [-score for tier, score, _ in best.values() if tier == 2]
        if fuzzy_scores:  # fuzzy hits far below the best one are noise ("lofy" is not "Lively")
            floor = max(fuzzy_scores) - FUZZY_SPREAD
            best = {en: t for en, t in best.items() if t[0] < 2 or -t[1] >= floor}
        position = {e.en: i for i, e in enumerate(self._entries[kind])}
        return sorted(best.values(), key=lambda t: (t[0], t[1], not t[2].popular, position[t[2].en]))

    # -- musical hints -----------------------------------------------------------------------------

    def text(self, kind: str, name: str) -> str:
        """How an entry reads inside a prompt: "lo-fi", "acoustic guitar", "Korean traditional"."""
        entry = self.resolve(kind, name)
        return self._text[(entry.kind, entry.en)]

    def tempo(self, value: str | int | float) -> TempoInfo:
        """A tempo label (Slow/느리게/fast) or an explicit BPM (92, "92", "92 bpm") → TempoInfo."""
        if isinstance(value, bool):
            raise UserInputError("Tempo must be Slow, Medium, Fast or a BPM such as 92.")
        bpm: float | None = None
        if isinstance(value, (int, float)):
            bpm = float(value)
        elif isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:bpm|비피엠)?\s*", value, flags=re.IGNORECASE)
            if match:
                bpm = float(match.group(1))
        else:
            raise UserInputError("Tempo must be Slow, Medium, Fast or a BPM such as 92.")
        if bpm is None:
            entry = self.resolve("tempos", str(value))
            return self._tempos[entry.en]
        if not math.isfinite(bpm) or not MIN_BPM <= bpm <= MAX_BPM:
            raise UserInputError(
                f"Tempo {value} BPM is out of range: use {MIN_BPM} to {MAX_BPM} BPM, or Slow / Medium / Fast."
            )
        bpm_int = int(round(bpm))
        band = self.tempo_label(bpm_int)
        return TempoInfo(band.label, bpm_int, bpm_int, bpm_int, band.ko, explicit=True)

    def tempo_label(self, bpm: float) -> TempoInfo:
        """The Slow/Medium/Fast band a BPM falls in (bands are contiguous; the outer ones open-ended)."""
        bands = sorted(self._tempos.values(), key=lambda t: t.lo)
        for band in bands[:-1]:
            if bpm <= band.hi:
                return band
        return bands[-1]

    def duration_seconds(self, name: str) -> int:
        """Seconds of a catalogue duration ("0:30", "30초")."""
        return self._durations[self.resolve("durations", name).en]

    def instrument_program(self, name: str) -> GMProgram:
        return self._programs[self.resolve("instruments", name).en]

    def mood_hint(self, name: str) -> MoodHint:
        return self._moods[self.resolve("moods", name).en]

    def genre_hint(self, name: str) -> GenreHint:
        return self._genres[self.resolve("genres", name).en]

    def moods_near(
        self, valence: float, arousal: float, k: int = 2, *, include_themes: bool = False
    ) -> list[Entry]:
        """The k feeling-moods nearest a valence/arousal point (both clamped to [-1, 1])."""
        if not (math.isfinite(valence) and math.isfinite(arousal)):
            raise ValueError("valence and arousal must be finite numbers")
        v, a = max(-1.0, min(1.0, valence)), max(-1.0, min(1.0, arousal))
        scored = []
        for i, entry in enumerate(self._entries["moods"]):
            hint = self._moods[entry.en]
            if hint.theme and not include_themes:
                continue
            distance = math.hypot(hint.valence - v, hint.arousal - a)
            scored.append((round(distance, 9), not entry.popular, i, entry))
        return [t[-1] for t in sorted(scored)[: max(0, k)]]

    # -- topics --------------------------------------------------------------------------------------

    def topics(self) -> list[Topic]:
        return list(self._topics)

    def topic(self, topic_id: int) -> Topic:
        try:
            return self._topic_by_id[int(topic_id)]
        except KeyError:
            raise KeyError(f"no book topic with id {topic_id}") from None

    def topic_genres(self, topic_id: int) -> tuple[str, ...]:
        return self.topic(topic_id).genres


@functools.lru_cache(maxsize=1)
def default_catalogue() -> Catalogue:
    """The shared catalogue read from the repository's ``data/categories.db`` (any working directory)."""
    return Catalogue(DEFAULT_DB)
