"""Music theory for the arranger: note names, scales, keys, chords and voice leading, bar plans and form."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import UserInputError

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_ACCIDENTALS = {"#": 1, "♯": 1, "b": -1, "♭": -1}

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor; cadences raise the 7th (harmonic minor V)


class InvalidArrangerInput(UserInputError):
    """A spec the arranger cannot play (bad key name, absurd tempo or duration)."""


def tonic_pitch_class(key: str | None) -> int | None:
    """'C', 'F#', 'Bb', 'a minor', 'Ebm' -> tonic pitch class 0..11 (None stays None)."""
    if key is None or not str(key).strip():
        return None
    text = str(key).strip()
    letter = text[0].upper()
    if letter not in "CDEFGAB":
        raise InvalidArrangerInput(f"Unknown key '{key}'. Use a note name such as C, F#, Bb or A.")
    pc = NOTE_NAMES.index(letter)
    for ch in text[1:3]:
        if ch in _ACCIDENTALS:
            pc += _ACCIDENTALS[ch]
        else:
            break
    return pc % 12


# --------------------------------------------------------------------------------------------
# Harmony
# --------------------------------------------------------------------------------------------
# Progressions as 0-based scale degrees; one chord per harmonic-rhythm unit.
PROGRESSIONS: dict[tuple[str, str], tuple[tuple[int, ...], ...]] = {
    ("pop", "major"): ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 5, 4), (3, 0, 4, 5), (0, 2, 3, 4)),
    ("pop", "minor"): ((0, 5, 2, 6), (0, 3, 6, 2), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 4, 0), (5, 6, 0, 0)),
    ("jazz", "major"): ((1, 4, 0, 0), (0, 5, 1, 4), (2, 5, 1, 4), (3, 2, 1, 4), (0, 3, 1, 4)),
    ("jazz", "minor"): ((1, 4, 0, 0), (0, 3, 1, 4), (0, 5, 1, 4), (3, 6, 2, 5)),
    ("blues", "major"): ((0, 0, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4),),
    ("blues", "minor"): ((0, 0, 0, 0, 3, 3, 0, 0, 5, 4, 0, 4),),
    ("modal", "major"): ((0, 3), (0, 5, 3, 0), (0, 4, 3, 0), (3, 0, 5, 4)),
    ("modal", "minor"): ((0, 5), (0, 6, 5, 6), (0, 3, 0, 5), (0, 2, 5, 6)),
    ("epic", "major"): ((0, 4, 5, 3), (5, 3, 0, 4), (0, 2, 3, 4)),
    ("epic", "minor"): ((0, 5, 2, 6), (0, 5, 3, 4), (0, 3, 5, 4), (0, 6, 5, 4)),
}


@dataclass(frozen=True)
class Chord:
    degree: int
    root: int  # pitch class
    tones: tuple[int, ...]  # pitch classes, root first (triad or seventh)

    @property
    def triad(self) -> tuple[int, ...]:
        return self.tones[:3]


def build_chord(
    tonic: int, scale: Sequence[int], degree: int, *, seventh: bool, mode: str, dominant: bool = False
) -> Chord:
    """Diatonic chord on ``degree``; ``dominant`` forces a major third + minor seventh (V7, blues)."""
    steps = [scale[(degree + k) % 7] for k in (0, 2, 4, 6)]
    root = (tonic + steps[0]) % 12
    pcs = [(tonic + s) % 12 for s in steps]
    if dominant or (mode == "minor" and degree == 4):
        # harmonic-minor V (raised leading tone) gives cadences their pull
        pcs = [root, (root + 4) % 12, (root + 7) % 12, (root + 10) % 12]
    tones = tuple(pcs if seventh else pcs[:3])
    return Chord(degree=degree, root=root, tones=tones)


def voice_chord(tones: Sequence[int], previous: Sequence[int] | None, lo: int, hi: int) -> list[int]:
    """Closed voicing of ``tones`` inside [lo, hi] that moves least from ``previous`` (voice leading)."""
    candidates: list[list[int]] = []
    for inversion in range(len(tones)):
        order = list(tones[inversion:]) + list(tones[:inversion])
        for base_octave in range(lo // 12 - 1, hi // 12 + 1):
            notes, last = [], None
            for pc in order:
                n = base_octave * 12 + pc
                while last is not None and n <= last:
                    n += 12
                notes.append(n)
                last = n
            if notes[0] >= lo and notes[-1] <= hi:
                candidates.append(notes)
    if not candidates:  # range too narrow for the chord: stack upwards from lo
        notes, last = [], lo - 1
        for pc in tones:
            n = (last // 12) * 12 + pc
            while n <= last:
                n += 12
            notes.append(n)
            last = n
        return notes
    if previous:
        centre = sum(previous) / len(previous)
        return min(candidates, key=lambda c: (abs(sum(c) / len(c) - centre), c[0]))
    middle = (lo + hi) / 2
    return min(candidates, key=lambda c: (abs(sum(c) / len(c) - middle), c[0]))


# --------------------------------------------------------------------------------------------
# Form
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BarPlan:
    index: int
    section: str  # intro | A | B | outro
    section_bar: int  # bar number inside its section
    phrase_bar: int  # 0..3 inside its 4-bar phrase
    phrase_index: int  # counts phrases of the body (intro excluded)
    last_of_section: bool
    chord: Chord


BODY_CYCLE = ("A", "A", "B", "A", "B", "B")  # 4-bar phrases; long pieces keep alternating
PHRASE_BARS = 4


def default_intro_bars(total_bars: int) -> int:
    if total_bars <= 4:
        return 0
    if total_bars <= 8:
        return 1
    if total_bars <= 16:
        return 2
    return 4


def default_outro_bars(total_bars: int) -> int:
    return 1 if total_bars <= 6 else 2


def bars_for(duration: float, bpm: float) -> int:
    """Bars so that the last (final-chord) bar starts at least one beat before the end."""
    beat = 60.0 / bpm
    return max(2, int(math.floor(max(duration - beat, 0.0) / (4 * beat))) + 1)
