"""The embedded offline backend: a seeded multi-part MIDI arrangement rendered with a GM SoundFont.

No model weights and no network: a ``MusicSpec`` (genres, moods, instruments, bpm, mode, key,
energy, duration) becomes

* a style (drum groove, default instruments, comping pattern, swing) chosen from the genres,
* a form: intro / A / B / outro built from 4-bar phrases (so it is not a one-bar loop),
* a chord progression per section chosen by mode and style (I-V-vi-IV, i-VI-III-VII, ii-V-I, 12-bar
  blues, ...), voiced with voice leading,
* bass, comping, pad, a melody developed from a seeded motif, and GM drums,

written with ``pretty_midi`` and rendered by ``midirenderer`` with pretty_midi's bundled TimGM6mb.sf2.
Everything random comes from ``numpy`` generators keyed on (seed, bar / phrase), which makes the
output deterministic per seed AND prefix-stable: the same seed planned for a longer duration plays
the same bars up to the original outro, which is what ``generate_continuation`` relies on.
"""

from __future__ import annotations

import io
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.errors import BackendError, UserInputError
from engine.generation.base import GenerationParams, ProgressFn
from engine.spec import MusicSpec, Track

SAMPLE_RATE = 48_000  # what midirenderer renders (stereo)
SOUNDFONT_NAME = "TimGM6mb.sf2"
MODEL_ID = f"{SOUNDFONT_NAME} arranger"
MAX_SECONDS = 600.0  # generous cap (specs are validated to <= 180 s upstream; continuations add to it)

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_ACCIDENTALS = {"#": 1, "♯": 1, "b": -1, "♭": -1}

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor; cadences raise the 7th (harmonic minor V)

# General MIDI percussion keys (channel 10)
KICK, RIM, SNARE, CLAP, CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 36, 37, 38, 39, 42, 44, 46
LOW_TOM, MID_TOM, HIGH_TOM, FLOOR_TOM = 45, 47, 50, 41
CRASH, RIDE, RIDE_BELL, TAMBOURINE, COWBELL, SHAKER = 49, 51, 53, 54, 56, 70
CONGA_HI, CONGA_LO, CLAVES = 63, 64, 75


class InvalidArrangerInput(UserInputError):
    """A spec the arranger cannot play (bad key name, absurd tempo or duration)."""


# --------------------------------------------------------------------------------------------
# Styles: genre -> groove, default instrumentation and harmonic language
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Style:
    name: str
    drums: str  # key of DRUM_GROOVES ("none" for no kit)
    lead: int  # GM programs (0-based)
    comp: int | None
    pad: int | None
    bass: int | None
    comp_pattern: str  # block | arp | strum | stab | skank | power | pad | waltz
    bass_pattern: str  # root | pop | walking | octave | offbeat | hiphop | reggae | drone
    harmony: str  # pop | jazz | blues | modal | epic
    swing: float = 0.0  # 0 straight .. 0.33 triplet swing of the 8th notes (16ths for hip hop)
    density: float = 0.5  # melody notes: 0 sparse .. 1 busy
    seventh_chords: bool = False
    pentatonic: bool = False  # melody on the pentatonic scale (folk/traditional/blues flavours)
    reverb: int = 50  # CC91 send
    harmonic_rhythm: int = 1  # bars per chord
    tempo_range: tuple[int, int] = (60, 180)  # the BPM range the groove sounds right in (info only)


STYLES: dict[str, Style] = {
    "pop": Style("pop", "pop", 0, 0, 48, 33, "block", "pop", "pop", density=0.55),
    "ballad": Style("ballad", "soft", 0, 0, 49, 33, "arp", "root", "pop", density=0.4, reverb=70),
    "lofi": Style(
        "lofi",
        "boom_bap",
        4,
        4,
        89,
        33,
        "block",
        "hiphop",
        "jazz",
        swing=0.18,
        density=0.35,
        seventh_chords=True,
        reverb=60,
    ),
    "hiphop": Style(
        "hiphop",
        "boom_bap",
        0,
        4,
        89,
        38,
        "block",
        "hiphop",
        "pop",
        swing=0.12,
        density=0.4,
        seventh_chords=True,
    ),
    "trap": Style("trap", "trap", 80, 4, 89, 38, "pad", "hiphop", "pop", density=0.4),
    "jazz": Style(
        "jazz",
        "swing",
        65,
        0,
        None,
        32,
        "block",
        "walking",
        "jazz",
        swing=0.3,
        density=0.6,
        seventh_chords=True,
        reverb=45,
    ),
    "blues": Style(
        "blues",
        "shuffle",
        26,
        0,
        None,
        33,
        "block",
        "walking",
        "blues",
        swing=0.3,
        density=0.55,
        seventh_chords=True,
        pentatonic=True,
    ),
    "rock": Style("rock", "rock", 29, 29, None, 34, "power", "pop", "pop", density=0.55, reverb=35),
    "metal": Style("metal", "metal", 30, 30, None, 34, "power", "octave", "epic", density=0.6, reverb=30),
    "edm": Style("edm", "four_on_floor", 81, 90, 89, 38, "stab", "offbeat", "pop", density=0.6),
    "house": Style(
        "house", "four_on_floor", 4, 4, 89, 38, "stab", "offbeat", "jazz", density=0.5, seventh_chords=True
    ),
    "disco": Style("disco", "disco", 48, 27, 49, 33, "stab", "octave", "pop", density=0.55),
    "dnb": Style("dnb", "breakbeat", 81, 89, 89, 38, "pad", "root", "epic", density=0.5),
    "reggae": Style(
        "reggae", "one_drop", 0, 16, None, 33, "skank", "reggae", "pop", swing=0.12, density=0.45
    ),
    "latin": Style("latin", "latin", 24, 24, None, 33, "strum", "pop", "pop", density=0.6),
    "funk": Style(
        "funk",
        "funk",
        61,
        27,
        None,
        36,
        "stab",
        "octave",
        "jazz",
        swing=0.08,
        density=0.6,
        seventh_chords=True,
    ),
    "folk": Style("folk", "folk", 73, 25, None, 32, "strum", "root", "pop", density=0.5, pentatonic=True),
    "country": Style("country", "folk", 40, 25, None, 32, "strum", "pop", "pop", density=0.55),
    "orchestral": Style("orchestral", "epic", 48, 48, 49, 43, "pad", "root", "epic", density=0.45, reverb=80),
    "classical": Style("classical", "none", 0, 0, 48, 42, "arp", "root", "pop", density=0.5, reverb=70),
    "ambient": Style(
        "ambient",
        "none",
        0,  # sparse piano over pads
        88,
        89,
        89,  # a low pad as the drone
        "pad",
        "drone",
        "modal",
        density=0.2,
        reverb=110,
        harmonic_rhythm=2,
        seventh_chords=True,
    ),
    "newage": Style(
        "newage", "none", 0, 0, 91, 32, "arp", "root", "modal", density=0.3, reverb=100, harmonic_rhythm=2
    ),
    "lullaby": Style(
        "lullaby", "none", 10, 46, 89, 32, "arp", "root", "pop", density=0.35, reverb=80, pentatonic=True
    ),
    "children": Style("children", "folk", 8, 0, None, 32, "block", "pop", "pop", density=0.55),
    "korean": Style(
        "korean",
        "traditional",
        107,
        107,
        49,
        32,
        "arp",
        "root",
        "modal",
        density=0.4,
        pentatonic=True,
        reverb=70,
        harmonic_rhythm=2,
    ),
    "asian": Style(
        "asian",
        "traditional",
        77,
        107,
        49,
        32,
        "arp",
        "root",
        "modal",
        density=0.4,
        pentatonic=True,
        reverb=70,
        harmonic_rhythm=2,
    ),
    "worldperc": Style(
        "worldperc", "latin", 114, 108, 49, 32, "arp", "pop", "modal", density=0.55, pentatonic=True
    ),
    "horror": Style(
        "horror", "none", 49, 48, 95, 43, "pad", "drone", "epic", density=0.25, reverb=110, harmonic_rhythm=2
    ),
}

# Ordered (keyword, style) rules: the first keyword found in a lower-cased genre name wins.
GENRE_RULES: tuple[tuple[str, str], ...] = (
    ("lofi", "lofi"),
    ("lo-fi", "lofi"),
    ("chill", "lofi"),
    ("downtempo", "lofi"),
    ("trip", "lofi"),
    ("trap", "trap"),
    ("hip", "hiphop"),
    ("gangsta", "hiphop"),
    ("rap", "hiphop"),
    ("jazz", "jazz"),
    ("swing", "jazz"),
    ("lounge", "jazz"),
    ("bossa", "latin"),
    ("blues", "blues"),
    ("bluegrass", "country"),
    ("country", "country"),
    ("metal", "metal"),
    ("punk", "rock"),
    ("industrial", "metal"),
    ("rock", "rock"),
    ("disco", "disco"),
    ("funk", "funk"),
    ("r&b", "funk"),
    ("soul", "funk"),
    ("rhythm and blues", "funk"),
    ("dnb", "dnb"),
    ("drum and bass", "dnb"),
    ("breakbeat", "dnb"),
    ("dubstep", "dnb"),
    ("house", "house"),
    ("techno", "edm"),
    ("trance", "edm"),
    ("rave", "edm"),
    ("edm", "edm"),
    ("dance", "edm"),
    ("electro", "edm"),
    ("synth", "edm"),
    ("future", "edm"),
    ("glitch", "edm"),
    ("electronic", "edm"),
    ("racing", "edm"),
    ("new wave", "edm"),
    ("games", "edm"),
    ("video game", "edm"),
    ("reggaeton", "latin"),
    ("reggae", "reggae"),
    ("ska", "reggae"),
    ("latin", "latin"),
    ("samba", "latin"),
    ("brazil", "latin"),
    ("flamenco", "latin"),
    ("spanish", "latin"),
    ("peruvian", "latin"),
    ("hawaiian", "folk"),
    ("folk", "folk"),
    ("acoustic", "folk"),
    ("indie", "folk"),
    ("lullaby", "lullaby"),
    ("children", "children"),
    ("kids", "children"),
    ("christmas", "children"),
    ("korean", "korean"),
    ("japanese", "asian"),
    ("china", "asian"),
    ("chinese", "asian"),
    ("mongolian", "asian"),
    ("gamelan", "asian"),
    ("bali", "asian"),
    ("indian", "worldperc"),
    ("bollywood", "worldperc"),
    ("african", "worldperc"),
    ("gnawa", "worldperc"),
    ("middle eastern", "worldperc"),
    ("world", "worldperc"),
    ("exotica", "worldperc"),
    ("horror", "horror"),
    ("halloween", "horror"),
    ("suspense", "horror"),
    ("thriller", "horror"),
    ("drone", "ambient"),
    ("ambient", "ambient"),
    ("ethereal", "ambient"),
    ("meditation", "ambient"),
    ("dream", "ambient"),
    ("new age", "newage"),
    ("minimal", "newage"),
    ("classical", "classical"),
    ("neo", "classical"),
    ("piano", "classical"),
    ("orchestr", "orchestral"),
    ("cinematic", "orchestral"),
    ("epic", "orchestral"),
    ("trailer", "orchestral"),
    ("battle", "orchestral"),
    ("action", "orchestral"),
    ("fantasy", "orchestral"),
    ("drama", "orchestral"),
    ("ballad", "ballad"),
    ("adult contemporary", "ballad"),
    ("easy listening", "ballad"),
    ("gospel", "ballad"),
    ("hymn", "ballad"),
    ("christian", "ballad"),
    ("inspirational", "ballad"),
    ("pop", "pop"),
)


def style_for(genres: Sequence[str]) -> Style:
    """The style of the first genre that matches a rule; ``pop`` when none does."""
    for genre in genres:
        name = genre.lower().replace("_", " ")
        for keyword, style in GENRE_RULES:
            if keyword in name:
                return STYLES[style]
    return STYLES["pop"]


# Used when engine.catalogue is not importable or does not know the name (keeps the arranger usable
# on its own). Keys are lower-case English names.
FALLBACK_PROGRAMS: dict[str, tuple[int, bool]] = {
    "piano": (0, False),
    "electric piano": (4, False),
    "keyboard": (0, False),
    "toy piano": (8, False),
    "celesta": (8, False),
    "glockenspiel": (9, False),
    "musicbox": (10, False),
    "music box": (10, False),
    "vibraphone": (11, False),
    "marimba": (12, False),
    "xylophone": (13, False),
    "bell": (14, False),
    "chimes": (14, False),
    "dulcimer": (15, False),
    "organ": (19, False),
    "hammond organ": (16, False),
    "accordion": (21, False),
    "harmonica": (22, False),
    "acoustic guitar": (25, False),
    "guitars": (25, False),
    "guitar": (25, False),
    "flamenco guitar": (24, False),
    "electric guitar": (27, False),
    "wah wah guitar": (28, False),
    "bass": (33, False),
    "acoustic bass": (32, False),
    "upright bass": (32, False),
    "double bass": (32, False),
    "synth bass": (38, False),
    "808": (38, False),
    "violin": (40, False),
    "fiddle": (40, False),
    "viola": (41, False),
    "cello": (42, False),
    "strings": (48, False),
    "pizzicato strings": (45, False),
    "harp": (46, False),
    "timpani": (47, False),
    "orchestra": (48, False),
    "choir": (52, False),
    "trumpet": (56, False),
    "trombone": (57, False),
    "tuba": (58, False),
    "french horn": (60, False),
    "brass": (61, False),
    "flugelhorn": (56, False),
    "soprano saxophone": (64, False),
    "saxophone": (65, False),
    "oboe": (68, False),
    "clarinet": (71, False),
    "flute": (73, False),
    "woodwinds": (71, False),
    "whistle": (78, False),
    "shakuhachi flute": (77, False),
    "synthesizer": (81, False),
    "pads": (89, False),
    "sitar": (104, False),
    "banjo": (105, False),
    "koto": (107, False),
    "kalimba": (108, False),
    "bagpipes": (109, False),
    "steel drums": (114, False),
    "ukulele": (24, False),
    "mandolin": (25, False),
    "drum": (0, True),
    "drums": (0, True),
    "drum machine": (0, True),
    "percussion": (0, True),
    "synth drums": (0, True),
}


def instrument_program(name: str) -> tuple[int, bool]:
    """GM (program, is_drum) for an instrument name: the catalogue first, then our fallback table."""
    program, is_drum, _notes = _gm_instrument(name)
    return program, is_drum


FULL_KIT_NOTES = (36, 38, 42, 46, 49)


def _gm_instrument(name: str) -> tuple[int, bool, tuple[int, ...]]:
    """(program, is_drum, percussion keys) — keys say which drums a percussion name means."""
    try:
        from engine.catalogue import default_catalogue

        gm = default_catalogue().instrument_program(name)
        return int(gm.program), bool(gm.is_drum), tuple(int(n) for n in getattr(gm, "drum_notes", ()) or ())
    except Exception:  # catalogue missing / half-built / name unknown there: fall back to our table
        pass
    key = " ".join(name.lower().replace("-", " ").split())
    if key in FALLBACK_PROGRAMS:
        program, is_drum = FALLBACK_PROGRAMS[key]
        return program, is_drum, FULL_KIT_NOTES if is_drum else ()
    raise InvalidArrangerInput(f"Unknown instrument '{name}' for the offline arranger.")


# Loudness (LUFS) of each GM program of TimGM6mb.sf2 playing the same phrase at CC7 127, measured
# by bench/gm_levels.py: patches differ by ~20 dB, so parts are levelled from this, not guessed.
GM_LEVELS = (
    -30.4,
    -30.1,
    -28.5,
    -28.5,
    -24.1,
    -28.7,
    -28.5,
    -25.9,
    -29.0,
    -32.6,
    -25.8,
    -22.9,
    -32.0,
    -37.6,
    -24.6,
    -31.4,
    -25.6,
    -27.4,
    -26.5,
    -26.7,
    -22.9,
    -24.3,
    -23.9,
    -27.1,
    -25.7,
    -28.8,
    -26.4,
    -31.6,
    -28.8,
    -26.0,
    -22.6,
    -22.7,
    -27.1,
    -24.7,
    -26.7,
    -25.3,
    -25.5,
    -32.2,
    -26.2,
    -26.2,
    -21.3,
    -21.9,
    -21.2,
    -24.2,
    -23.7,
    -30.5,
    -21.7,
    -30.2,
    -23.7,
    -26.2,
    -26.9,
    -25.3,
    -25.0,
    -25.1,
    -25.5,
    -24.4,
    -24.1,
    -26.2,
    -27.3,
    -29.5,
    -18.4,
    -29.2,
    -24.2,
    -23.8,
    -22.3,
    -22.3,
    -25.5,
    -27.8,
    -21.7,
    -23.4,
    -26.4,
    -23.5,
    -22.4,
    -19.5,
    -22.9,
    -23.0,
    -25.8,
    -25.0,
    -22.1,
    -19.4,
    -22.0,
    -23.5,
    -21.7,
    -23.8,
    -22.2,
    -22.1,
    -24.4,
    -22.6,
    -23.7,
    -30.5,
    -27.5,
    -23.8,
    -25.5,
    -27.3,
    -27.5,
    -30.1,
    -23.7,
    -23.0,
    -24.2,
    -23.4,
    -22.3,
    -39.1,
    -22.8,
    -23.9,
    -31.1,
    -27.7,
    -32.6,
    -24.9,
    -28.0,
    -22.3,
    -23.5,
    -23.7,
    -29.8,
    -34.9,
    -29.9,
    -35.4,
    -26.6,
    -35.1,
    -26.9,
    -56.8,
    -33.9,
    -42.9,
    -23.3,
    -30.4,
    -28.6,
    -48.0,
    -42.0,
    -31.1,
)
DRUM_KIT_LEVEL = -29.0  # our grooves at CC7 127 (measured: -32.1 LUFS at CC7 105)
# Solo loudness each role aims for (LUFS at velocity ~90): the tune on top, the groove close behind,
# harmony underneath. The whole mix is shifted down when a quiet patch cannot reach its target.
ROLE_TARGETS = {"lead": -29.0, "drums": -33.0, "bass": -32.0, "comp": -34.0, "pad": -36.0, "double": -35.0}
STYLE_TARGETS = {
    "lofi": {"drums": -33.5, "comp": -33.5},
    "ambient": {"pad": -33.0, "comp": -33.0, "bass": -35.0},
    "newage": {"pad": -34.0},
    "horror": {"pad": -33.0},
    "jazz": {"drums": -33.0},
    "edm": {"drums": -31.5, "bass": -31.0},
    "house": {"drums": -31.5, "bass": -31.0},
    "classical": {"bass": -35.0, "comp": -33.5},
    "orchestral": {"drums": -33.0},
}


BASS_PROGRAMS = set(range(32, 40)) | {43, 58}
POLYPHONIC = (
    set(range(0, 8))
    | set(range(8, 16))
    | set(range(16, 24))
    | set(range(24, 32))
    | {45, 46, 48, 49, 50, 51, 52, 53, 54, 88, 89, 90, 91, 92, 93, 94, 95, 105, 107, 108}
)
# comfortable melodic range (MIDI notes) per GM program family
_TESSITURA: dict[range, tuple[int, int]] = {
    range(0, 8): (60, 84),
    range(8, 16): (67, 91),
    range(16, 24): (60, 82),
    range(24, 32): (55, 79),
    range(32, 40): (40, 60),
    range(40, 41): (62, 88),
    range(41, 42): (57, 81),
    range(42, 43): (48, 72),
    range(43, 44): (36, 55),
    range(44, 56): (57, 81),
    range(56, 57): (60, 82),
    range(57, 58): (48, 70),
    range(58, 59): (36, 55),
    range(59, 64): (55, 77),
    range(64, 65): (62, 84),
    range(65, 66): (58, 80),
    range(66, 68): (50, 72),
    range(68, 72): (60, 84),
    range(72, 80): (67, 91),
    range(80, 88): (60, 84),
    range(88, 96): (57, 79),
    range(104, 112): (60, 84),
    range(112, 120): (64, 88),
}


def tessitura(program: int) -> tuple[int, int]:
    for span, rng in _TESSITURA.items():
        if program in span:
            return rng
    return (60, 82)


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


# --------------------------------------------------------------------------------------------
# Drums: 16-step grids per bar, {drum key: [(step, velocity), ...]}
# --------------------------------------------------------------------------------------------
def _steps(*pairs: tuple[int, int]) -> list[tuple[int, int]]:
    return list(pairs)


DRUM_GROOVES: dict[str, dict[int, list[tuple[int, int]]]] = {
    "pop": {
        KICK: _steps((0, 110), (8, 100), (10, 80)),
        SNARE: _steps((4, 100), (12, 104)),
        CLOSED_HAT: [(s, 78 if s % 4 == 0 else 60) for s in range(0, 16, 2)],
    },
    "soft": {
        KICK: _steps((0, 90), (8, 80)),
        RIM: _steps((4, 80), (12, 84)),
        CLOSED_HAT: [(s, 55 if s % 4 == 0 else 42) for s in range(0, 16, 2)],
    },
    "boom_bap": {
        KICK: _steps((0, 112), (7, 78), (10, 100)),
        SNARE: _steps((4, 104), (12, 108)),
        CLOSED_HAT: [(s, 70 if s % 4 == 0 else 52) for s in range(0, 16, 2)],
    },
    "trap": {
        KICK: _steps((0, 115), (6, 90), (11, 100)),
        CLAP: _steps(
            (8, 110),
        ),
        CLOSED_HAT: [(s, 66 if s % 2 == 0 else 48) for s in range(16)],
    },
    "rock": {
        KICK: _steps((0, 115), (7, 90), (8, 110)),
        SNARE: _steps((4, 112), (12, 115)),
        CLOSED_HAT: [(s, 85 if s % 4 == 0 else 68) for s in range(0, 16, 2)],
    },
    "metal": {
        KICK: [(s, 105) for s in range(0, 16, 2)],
        SNARE: _steps((4, 118), (12, 118)),
        CRASH: _steps((0, 80), (8, 70)),
    },
    "four_on_floor": {
        KICK: _steps((0, 120), (4, 118), (8, 120), (12, 118)),
        CLAP: _steps((4, 100), (12, 100)),
        OPEN_HAT: _steps((2, 70), (6, 70), (10, 70), (14, 70)),
        CLOSED_HAT: [(s, 45) for s in range(1, 16, 2)],
    },
    "disco": {
        KICK: _steps((0, 115), (4, 112), (8, 115), (12, 112)),
        SNARE: _steps((4, 95), (12, 95)),
        OPEN_HAT: _steps((2, 80), (6, 80), (10, 80), (14, 80)),
        TAMBOURINE: [(s, 40) for s in range(0, 16, 2)],
    },
    "breakbeat": {
        KICK: _steps((0, 118), (10, 105)),
        SNARE: _steps((4, 110), (12, 110), (15, 60)),
        CLOSED_HAT: [(s, 70 if s % 4 == 2 else 50) for s in range(0, 16, 2)],
    },
    "swing": {
        RIDE: _steps((0, 80), (4, 85), (6, 62), (8, 80), (12, 85), (14, 62)),
        PEDAL_HAT: _steps((4, 60), (12, 60)),
        KICK: _steps((0, 55), (8, 50)),
    },
    "shuffle": {
        KICK: _steps((0, 105), (8, 100)),
        SNARE: _steps((4, 100), (12, 100)),
        CLOSED_HAT: [(s, 75 if s % 4 == 0 else 55) for s in range(0, 16, 2)],
    },
    "one_drop": {
        KICK: _steps(
            (8, 105),
        ),
        RIM: _steps(
            (8, 95),
        ),
        CLOSED_HAT: [(s, 62 if s % 4 == 0 else 48) for s in range(0, 16, 2)],
    },
    "latin": {
        KICK: _steps((0, 105), (4, 95), (8, 105), (12, 95)),
        RIM: _steps((3, 80), (6, 80), (11, 80), (14, 80)),
        SHAKER: [(s, 50 if s % 2 == 0 else 36) for s in range(16)],
    },
    "funk": {
        KICK: _steps((0, 115), (3, 85), (10, 100)),
        SNARE: _steps((4, 110), (7, 45), (12, 110)),
        CLOSED_HAT: [(s, 72 if s % 2 == 0 else 52) for s in range(16)],
    },
    "folk": {
        KICK: _steps((0, 92), (8, 85)),
        TAMBOURINE: _steps((4, 70), (12, 74)),
        SHAKER: [(s, 44 if s % 2 == 0 else 32) for s in range(16)],
    },
    "epic": {
        FLOOR_TOM: _steps((0, 110), (3, 80), (6, 90), (8, 108), (11, 80), (14, 90)),
        LOW_TOM: _steps(
            (12, 85),
        ),
        SNARE: _steps(
            (12, 70),
        ),
    },
    "traditional": {
        CONGA_LO: _steps((0, 90), (6, 75), (8, 85)),
        CONGA_HI: _steps((4, 70), (11, 65), (12, 72)),
        SHAKER: [(s, 34) for s in range(0, 16, 2)],
    },
    "none": {},
}
# Layers for percussion a user asks for by name (16-step grid, velocity)
_HAND_DRUM_A = [(0, 90), (3, 70), (6, 80), (10, 75), (12, 85), (14, 65)]
_HAND_DRUM_B = [(2, 70), (7, 65), (8, 80), (11, 60), (15, 60)]
PERCUSSION_LAYERS: dict[int, list[tuple[int, int]]] = {
    CLAP: [(4, 95), (12, 95)],
    RIM: [(4, 80), (12, 80)],
    TAMBOURINE: [(s, 60 if s % 4 == 2 else 40) for s in range(0, 16, 2)],
    SHAKER: [(s, 50 if s % 2 == 0 else 34) for s in range(16)],
    69: [(s, 46 if s % 2 == 0 else 30) for s in range(16)],  # cabasa
    60: _HAND_DRUM_A,
    61: _HAND_DRUM_B,
    62: _HAND_DRUM_B,
    CONGA_HI: _HAND_DRUM_A,
    CONGA_LO: _HAND_DRUM_B,
    67: [(0, 70), (6, 60), (10, 60)],
    68: [(3, 60), (8, 65), (14, 55)],  # agogo
    80: [(s, 40) for s in range(2, 16, 4)],
    81: [(0, 70), (8, 60)],  # triangle
    52: [(0, 70)],  # china cymbal / gong: one accent per bar
    40: [(s, 70 if s % 4 == 0 else 45) for s in range(16)],
    41: [(0, 90), (8, 80)],
    43: [(6, 75), (14, 70)],
}
DEFAULT_LAYERS = (_HAND_DRUM_A, _HAND_DRUM_B, [(4, 80), (12, 80)], [(s, 45) for s in range(0, 16, 2)])
# which drum keys keep playing in the intro (a thinner groove)
INTRO_KEYS = {CLOSED_HAT, OPEN_HAT, SHAKER, RIDE, PEDAL_HAT, KICK, TAMBOURINE, CONGA_LO}


# --------------------------------------------------------------------------------------------
# Melody rhythms (one bar, in beats: (onset, length)); picked by density
# --------------------------------------------------------------------------------------------
RHYTHMS: tuple[tuple[float, tuple[tuple[float, float], ...]], ...] = (
    (0.1, ((0, 3), (3, 1))),
    (0.1, ((0, 2), (2, 2))),
    (0.2, ((0, 1.5), (1.5, 2.5))),
    (0.3, ((0, 1), (1, 1), (2, 2))),
    (0.35, ((0, 1.5), (1.5, 0.5), (2, 2))),
    (0.4, ((0.5, 1), (1.5, 1), (2.5, 1.5))),
    (0.5, ((0, 1), (1, 0.5), (1.5, 0.5), (2, 1), (3, 1))),
    (0.55, ((0, 0.5), (0.5, 1), (1.5, 0.5), (2, 2))),
    (0.6, ((0, 1.5), (1.5, 0.5), (2, 0.5), (2.5, 0.5), (3, 1))),
    (0.7, ((0, 0.5), (0.5, 0.5), (1, 1), (2, 0.5), (2.5, 0.5), (3, 1))),
    (0.8, ((0, 0.5), (0.5, 0.5), (1, 0.5), (1.5, 0.5), (2, 1), (3, 0.5), (3.5, 0.5))),
    (0.9, ((0, 0.5), (0.5, 0.25), (0.75, 0.25), (1, 0.5), (1.5, 0.5), (2, 0.5), (2.5, 0.5), (3, 1))),
)


# --------------------------------------------------------------------------------------------
# The arrangement
# --------------------------------------------------------------------------------------------
@dataclass
class Parts:
    """Resolved instrumentation for one track."""

    lead: int
    comp: int | None
    pad: int | None
    bass: int | None
    drums: str
    doubles: list[int] = field(default_factory=list)  # extra user instruments doubling the lead
    percussion: list[int] = field(default_factory=list)  # extra GM drum keys asked for (congas, shaker...)
    user_chosen: bool = False


def orchestrate(spec: MusicSpec, style: Style) -> Parts:
    """Map spec.instruments onto roles; unfilled roles keep the style's defaults."""
    parts = Parts(lead=style.lead, comp=style.comp, pad=style.pad, bass=style.bass, drums=style.drums)
    if not spec.instruments:
        return parts
    melodic: list[int] = []
    wants_drums = False
    user_bass: int | None = None
    for name in spec.instruments:
        program, is_drum, keys = _gm_instrument(name)
        if is_drum:
            # a kit (kick + snare) brings the groove; single percussion adds a layer over it
            wants_drums = wants_drums or not keys or (36 in keys and 38 in keys)
            parts.percussion.extend(k for k in keys if k not in FULL_KIT_NOTES and k not in parts.percussion)
        elif program in BASS_PROGRAMS and user_bass is None:
            user_bass = program
        elif program not in melodic:
            melodic.append(program)
    if user_bass is not None:
        parts.bass = user_bass
    if melodic:
        parts.user_chosen = True
        parts.lead = melodic[0]
        if len(melodic) > 1:
            parts.comp = melodic[1]
        elif melodic[0] in POLYPHONIC:
            parts.comp = melodic[0]  # piano / guitar / harp chosen alone: it also plays the chords
        if len(melodic) > 2:
            parts.pad = melodic[2]
        parts.doubles = melodic[3:5]
    if wants_drums and parts.drums == "none":
        parts.drums = "soft"
    return parts


@dataclass
class Arrangement:
    midi: object  # pretty_midi.PrettyMIDI
    bpm: float
    bar_seconds: float
    total_bars: int
    intro_bars: int
    outro_start_bar: int
    tonic: int
    mode: str
    style: str
    parts: Parts


class _Builder:
    """Writes one arrangement into a PrettyMIDI object."""

    def __init__(
        self, spec: MusicSpec, seed: int, *, total_bars: int, intro_bars: int, temperature: float = 1.0
    ) -> None:
        import pretty_midi

        self.pm_mod = pretty_midi
        self.spec = spec
        self.seed = seed
        self.temperature = max(0.1, float(temperature))
        self.bpm = float(spec.bpm)
        self.beat = 60.0 / self.bpm
        self.bar = 4 * self.beat
        self.total_bars = total_bars
        self.intro_bars = intro_bars
        self.outro_bars = min(default_outro_bars(total_bars), max(total_bars - intro_bars - 1, 1))
        self.outro_start = total_bars - self.outro_bars
        self.style = style_for(spec.genres)
        self.parts = orchestrate(spec, self.style)
        self.mode = "minor" if str(spec.mode).lower().startswith("min") else "major"
        self.energy = float(min(max(spec.energy, 0.0), 1.0))
        home = np.random.default_rng([seed, 11])
        tonic = tonic_pitch_class(spec.key)
        # keys that sit well on most GM instruments when none was asked for
        self.tonic = tonic if tonic is not None else int(home.choice([0, 2, 3, 5, 7, 9, 10]))
        self.scale = MAJOR_SCALE if self.mode == "major" else MINOR_SCALE
        self.swing = self.style.swing
        harmony = self.style.harmony
        options = PROGRESSIONS[(harmony, self.mode)]
        picks = home.permutation(len(options))
        self.prog_a = options[int(picks[0])]
        self.prog_b = options[int(picks[1 % len(options)])]
        self.pm = pretty_midi.PrettyMIDI(initial_tempo=self.bpm, resolution=480)
        self.tracks: dict[str, object] = {}
        self.mix = self._mix_offsets()
        self.plan = self._plan()

    # -- planning -------------------------------------------------------------------------
    def _chord(self, degree: int) -> Chord:
        dominant = self.style.harmony == "blues"
        return build_chord(
            self.tonic,
            self.scale,
            degree,
            seventh=self.style.seventh_chords or dominant,
            mode=self.mode,
            dominant=dominant,
        )

    def _plan(self) -> list[BarPlan]:
        plan: list[BarPlan] = []
        hr = self.style.harmonic_rhythm
        for index in range(self.total_bars):
            if index < self.intro_bars:
                section, section_bar, phrase_index = "intro", index, -1
                degree = self.prog_a[(index // hr) % len(self.prog_a)]
                last = index == self.intro_bars - 1
            elif index >= self.outro_start:
                section, section_bar, phrase_index = "outro", index - self.outro_start, -1
                final = index == self.total_bars - 1
                cadence = 3 if self.style.harmony == "modal" else 4  # plagal for modal styles
                degree = 0 if final else cadence
                last = final
            else:
                body = index - self.intro_bars
                phrase_index = body // PHRASE_BARS
                section = BODY_CYCLE[phrase_index % len(BODY_CYCLE)]
                section_bar = body % PHRASE_BARS
                prog = self.prog_a if section == "A" else self.prog_b
                if len(prog) == 12:  # 12-bar blues runs through its whole form
                    degree = prog[body % 12]
                else:
                    degree = (
                        prog[(section_bar // hr) % len(prog)] if hr == 1 else prog[(body // hr) % len(prog)]
                    )
                nxt = index + 1
                next_section = (
                    "outro"
                    if nxt >= self.outro_start
                    else BODY_CYCLE[((nxt - self.intro_bars) // PHRASE_BARS) % len(BODY_CYCLE)]
                )
                last = (section_bar == PHRASE_BARS - 1 and next_section != section) or nxt == self.outro_start
            plan.append(
                BarPlan(
                    index=index,
                    section=section,
                    section_bar=section_bar,
                    phrase_bar=(section_bar % PHRASE_BARS),
                    phrase_index=phrase_index,
                    last_of_section=last,
                    chord=self._chord(degree),
                )
            )
        return plan

    # -- helpers --------------------------------------------------------------------------
    def _mix_offsets(self) -> dict[str, float]:
        """dB each role must move from CC7 127 to hit its target (<= 0: CC7 can only attenuate)."""
        targets = {**ROLE_TARGETS, **STYLE_TARGETS.get(self.style.name, {})}
        if self.parts.user_chosen:
            targets["pad"] -= 2.0  # the instruments the user asked for stay in front
        roles = {
            "lead": self.parts.lead,
            "comp": self.parts.comp,
            "pad": self.parts.pad,
            "bass": self.parts.bass,
        }
        wanted = {r: targets[r] - GM_LEVELS[p] for r, p in roles.items() if p is not None}
        if self.parts.drums != "none" or self.parts.percussion:
            wanted["drums"] = targets["drums"] - DRUM_KIT_LEVEL
        for i, p in enumerate(self.parts.doubles):
            wanted[f"double{i}"] = targets["double"] - GM_LEVELS[p]
        excess = max(0.0, max(wanted.values(), default=0.0))
        return {r: db - excess for r, db in wanted.items()}

    def _track(
        self,
        role: str,
        program: int,
        *,
        is_drum: bool = False,
        pan: int = 64,
        reverb: int | None = None,
    ) -> object:
        key = f"{role}:{program}:{is_drum}"
        if key not in self.tracks:
            inst = self.pm_mod.Instrument(program=program, is_drum=is_drum, name=role)
            cc = self.pm_mod.ControlChange
            rev = self.style.reverb if reverb is None else reverb
            # CC7 follows a 40*log10 law in SoundFont synths (measured: 127 -> 100 is -4.2 dB)
            volume = int(np.clip(round(127 * 10 ** (self.mix.get(role, -6.0) / 40)), 8, 127))
            inst.control_changes.extend([cc(7, volume, 0.0), cc(10, pan, 0.0), cc(91, min(rev, 127), 0.0)])
            self.pm.instruments.append(inst)
            self.tracks[key] = inst
        return self.tracks[key]

    def _time(self, bar: int, beat: float) -> float:
        """Seconds of (bar, beat), with swing on off-beat 8ths (or 16ths for hip hop grooves)."""
        frac = beat % 1.0
        if self.swing:
            sixteenth_swing = self.style.drums in ("boom_bap", "trap")
            if sixteenth_swing and (abs(frac - 0.25) < 1e-6 or abs(frac - 0.75) < 1e-6):
                beat += self.swing * 0.25
            elif abs(frac - 0.5) < 1e-6:
                beat += self.swing * 0.5
        return bar * self.bar + beat * self.beat

    def _vel(self, base: float, rng: np.random.Generator, spread: float = 5.0) -> int:
        scale = 0.78 + 0.32 * self.energy
        return int(np.clip(round(base * scale + rng.normal(0.0, spread)), 1, 127))

    def _note(self, inst, pitch: int, start: float, end: float, velocity: int) -> None:
        if end - start < 0.02:
            end = start + 0.02
        inst.notes.append(
            self.pm_mod.Note(velocity=int(velocity), pitch=int(pitch), start=max(0.0, start), end=end)
        )

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    # -- parts ----------------------------------------------------------------------------
    def build(self) -> Arrangement:
        self._drums()
        self._bass()
        self._comp()
        self._pad()
        self._melody()
        # final chord rings past the end of the grid; the renderer stops at the last event
        return Arrangement(
            midi=self.pm,
            bpm=self.bpm,
            bar_seconds=self.bar,
            total_bars=self.total_bars,
            intro_bars=self.intro_bars,
            outro_start_bar=self.outro_start,
            tonic=self.tonic,
            mode=self.mode,
            style=self.style.name,
            parts=self.parts,
        )

    def _drums(self) -> None:
        groove = {k: list(v) for k, v in DRUM_GROOVES.get(self.parts.drums, {}).items()}
        for i, key in enumerate(self.parts.percussion[:4]):
            groove.setdefault(key, list(PERCUSSION_LAYERS.get(key, DEFAULT_LAYERS[i % len(DEFAULT_LAYERS)])))
        if not groove:
            return
        kit = self._track("drums", 0, is_drum=True, reverb=min(self.style.reverb, 40))
        sixteenth = 0.25
        has_kit = self.parts.drums not in ("none", "traditional")  # crashes and fills need a drum kit
        for bar in self.plan:
            rng = self._rng(1, bar.index)
            final = bar.section == "outro" and bar.last_of_section
            if final:
                t = self._time(bar.index, 0)
                if has_kit:
                    self._note(kit, CRASH, t, t + self.bar, self._vel(100, rng))
                    self._note(kit, KICK, t, t + 0.2, self._vel(112, rng))
                else:
                    self._note(kit, next(iter(groove)), t, t + 0.3, self._vel(90, rng))
                continue
            if bar.section == "intro" and self.intro_bars >= 2 and bar.index == 0:
                continue  # first intro bar without drums: the groove enters after the chords
            fill = has_kit and bar.last_of_section and bar.section != "intro" and self.energy >= 0.3
            for key, hits in groove.items():
                if bar.section == "intro" and key not in INTRO_KEYS:
                    continue
                for step, vel in hits:
                    if fill and step >= 12 and key not in (KICK,):
                        continue
                    # low energy thins the hats; B sections add ghost notes on the hats
                    if key in (CLOSED_HAT, SHAKER) and step % 2 == 1 and self.energy < 0.35:
                        continue
                    beat = step * sixteenth
                    t = self._time(bar.index, beat) + (0.0 if key == KICK else rng.normal(0, 0.003))
                    v = vel * (1.08 if bar.section == "B" else 1.0)
                    self._note(kit, key, t, t + 0.12, self._vel(v, rng, 4.0))
            if bar.section == "B" and self.parts.drums in (
                "pop",
                "rock",
                "boom_bap",
                "funk",
                "shuffle",
                "breakbeat",
            ):
                # B lifts: open hat on the "and" of 4
                t = self._time(bar.index, 3.5)
                self._note(kit, OPEN_HAT, t, t + 0.2, self._vel(70, rng))
            if (
                has_kit
                and bar.section_bar == 0
                and bar.section in ("A", "B")
                and (bar.index == self.intro_bars or bar.phrase_index % 2 == 0)
            ):
                t = self._time(bar.index, 0)
                crash_v = 72 if bar.index == self.intro_bars else 60
                self._note(
                    kit,
                    CRASH if self.parts.drums not in ("swing",) else RIDE_BELL,
                    t,
                    t + 1.0,
                    self._vel(crash_v, rng),
                )
            if fill:
                toms = (
                    (SNARE, SNARE, HIGH_TOM, MID_TOM)
                    if self.energy < 0.7
                    else (SNARE, HIGH_TOM, MID_TOM, LOW_TOM)
                )
                for i, step in enumerate(range(12, 16)):
                    t = self._time(bar.index, step * sixteenth)
                    self._note(kit, toms[i], t, t + 0.12, self._vel(70 + 8 * i, rng))

    def _bass(self) -> None:
        program = self.parts.bass
        if program is None:
            return
        inst = self._track("bass", program, reverb=20)
        lo = 33 if program in (38, 39) else 28
        pattern = self.style.bass_pattern

        def root_note(pc: int) -> int:
            n = lo + ((pc - lo) % 12)
            return n if n >= 33 else n + 12

        for bar in self.plan:
            rng = self._rng(2, bar.index)
            chord = bar.chord
            root = root_note(chord.root)
            fifth = root + 7
            nxt = self.plan[bar.index + 1].chord.root if bar.index + 1 < len(self.plan) else chord.root
            t0 = bar.index
            final = bar.section == "outro" and bar.last_of_section
            if final or pattern == "drone" or (bar.section == "intro" and bar.section_bar == 0):
                end = self._time(t0, 4) + (1.5 if final else 0.0)
                self._note(inst, root, self._time(t0, 0), end - 0.02, self._vel(88, rng))
                continue
            notes: list[tuple[float, float, int, float]] = []  # beat, length, pitch, velocity
            if pattern == "root":
                notes = [
                    (0, 2, root, 90),
                    (2, 2, root if rng.random() < 0.5 else fifth - 12 if fifth - 12 >= 28 else fifth, 80),
                ]
            elif pattern == "pop":
                approach = root_note(nxt) + (-1 if rng.random() < 0.5 else 2)
                notes = [(0, 1.5, root, 96), (1.5, 0.5, root, 76), (2, 1, fifth, 86), (3, 1, approach, 80)]
            elif pattern == "walking":
                tones = [root, root + (chord.tones[1] - chord.root) % 12, fifth]
                target = root_note(nxt)
                lead_in = target - 1 if target > tones[-1] else target + 1
                notes = [
                    (0, 1, tones[0], 92),
                    (1, 1, tones[1], 80),
                    (2, 1, tones[2], 84),
                    (3, 1, lead_in, 78),
                ]
            elif pattern == "octave":
                notes = [
                    (b / 2, 0.45, root + (12 if b % 2 else 0), 92 if b % 2 == 0 else 78) for b in range(8)
                ]
            elif pattern == "offbeat":
                notes = [(b + 0.5, 0.45, root, 96) for b in range(4)]
                if bar.section == "B":
                    notes += [(0, 0.3, root, 80)]
            elif pattern == "hiphop":
                notes = [
                    (0, 1.2, root, 98),
                    (1.75, 0.5, root, 76),
                    (2.5, 1.0, fifth if rng.random() < 0.4 else root, 86),
                ]
            elif pattern == "reggae":
                notes = [
                    (0, 0.9, root, 92),
                    (1.5, 0.5, fifth, 78),
                    (2.5, 0.5, root + 12, 74),
                    (3, 0.9, fifth, 80),
                ]
            if bar.section == "intro":
                notes = notes[:1]
            for beat, length, pitch, vel in notes:
                start = self._time(t0, beat) + rng.normal(0, 0.004)
                end = self._time(t0, beat + length) - 0.03
                self._note(inst, pitch, start, end, self._vel(vel, rng))

    def _comp(self) -> None:
        program = self.parts.comp
        if program is None:
            return
        pattern = self.style.comp_pattern
        if program not in POLYPHONIC and pattern in ("block", "strum", "stab", "skank", "power", "pad"):
            pattern = "arp"  # a single-line instrument plays the chords as broken chords
        lo, hi = (48, 67) if pattern == "power" else (52, 74)
        if program in range(88, 96) or program in (48, 49, 50, 51):
            lo, hi = 55, 76
        inst = self._track("comp", program, pan=44)
        previous: list[int] | None = None
        for bar in self.plan:
            rng = self._rng(3, bar.index)
            chord = bar.chord
            tones = (chord.root, (chord.root + 7) % 12) if pattern == "power" else chord.tones
            voicing = voice_chord(tones, previous, lo, hi)
            previous = voicing
            if pattern == "power":
                voicing = voicing + [voicing[0] + 12]
            t0 = bar.index
            final = bar.section == "outro" and bar.last_of_section
            base = 74 if bar.section != "B" else 80
            if bar.section == "intro":
                base -= 8
            hits: list[tuple[float, float, float]]  # beat, length, velocity
            if final or pattern == "pad":
                hits = [(0, 4 + (1.5 / self.beat if final else 0), base)]
            elif pattern == "block":
                if self.style.name in ("lofi", "hiphop", "jazz", "house", "funk"):
                    hits = (
                        [(0, 1.4, base), (2.5, 1.3, base - 6)]
                        if rng.random() < 0.6
                        else [(0, 2.5, base), (3.5, 0.5, base - 10)]
                    )
                else:
                    hits = [(0, 2, base), (2, 2, base - 6)]
            elif pattern == "strum":
                hits = [
                    (0, 1, base + 6),
                    (1, 0.5, base - 4),
                    (1.5, 1, base - 8),
                    (2.5, 0.5, base - 6),
                    (3, 0.5, base),
                    (3.5, 0.5, base - 10),
                ]
            elif pattern == "stab":
                hits = [(b + 0.5, 0.3, base) for b in range(4)]
            elif pattern == "skank":
                hits = [(1, 0.3, base), (3, 0.3, base)]
            elif pattern == "power":
                hits = [(b / 2, 0.4, base + (6 if b % 2 == 0 else -4)) for b in range(8)]
            else:  # arp / waltz: broken chord in 8ths, up then down
                seq = voicing + [voicing[0] + 12] + voicing[1:][::-1]
                step = 0.5 if self.bpm < 130 else 1.0
                count = int(4 / step)
                for i in range(count):
                    pitch = seq[i % len(seq)]
                    start = self._time(t0, i * step) + rng.normal(0, 0.005)
                    end = self._time(t0, i * step + step * 1.6)
                    self._note(inst, pitch, start, end, self._vel(base - 6 - (4 if i % 2 else 0), rng))
                continue
            for beat, length, vel in hits:
                strum = 0.012 if pattern == "strum" else 0.004
                start = self._time(t0, beat)
                for k, pitch in enumerate(voicing):
                    s = start + k * strum + rng.normal(0, 0.003)
                    e = self._time(t0, beat + length) - 0.02
                    self._note(inst, pitch, s, e, self._vel(vel - 3 * (k == 0), rng, 4.0))

    def _pad(self) -> None:
        program = self.parts.pad
        if program is None:
            return
        inst = self._track("pad", program, pan=84)
        previous: list[int] | None = None
        for bar in self.plan:
            if bar.section == "A" and self.style.drums != "none" and bar.phrase_index == 0:
                continue  # let the first A breathe; the pad joins later for contrast
            rng = self._rng(4, bar.index)
            voicing = voice_chord(bar.chord.tones, previous, 62, 84)
            previous = voicing
            final = bar.section == "outro" and bar.last_of_section
            start = self._time(bar.index, 0)
            end = self._time(bar.index, 4) + (1.5 if final else 0.05)
            for pitch in voicing:
                self._note(inst, pitch, start + rng.normal(0, 0.004), end, self._vel(68, rng, 3.0))

    # -- melody ---------------------------------------------------------------------------
    def _melody_pitches(self, lo: int, hi: int) -> list[int]:
        if self.style.pentatonic:
            steps = (0, 2, 4, 7, 9) if self.mode == "major" else (0, 3, 5, 7, 10)
        else:
            steps = self.scale
        return [n for n in range(lo, hi + 1) if (n - self.tonic) % 12 in steps]

    def _motif(self, kind: int) -> list[list[tuple[float, float, int]]]:
        """Two bars of (onset, length, scale-step move) — the idea each phrase develops."""
        rng = self._rng(5, kind)
        density = min(1.0, max(0.05, self.style.density * (0.7 + 0.6 * self.energy) + (0.12 if kind else 0)))
        choices = [r for d, r in RHYTHMS if abs(d - density) <= 0.25] or [RHYTHMS[3][1]]
        motif = []
        for _bar in range(2):
            rhythm = choices[int(rng.integers(len(choices)))]
            moves = []
            for i, (onset, length) in enumerate(rhythm):
                spread = 1.2 * self.temperature
                move = 0 if i == 0 else int(np.clip(round(rng.normal(0, spread)), -4, 4))
                if i and move == 0 and rng.random() < 0.5:
                    move = 1 if rng.random() < 0.5 else -1
                moves.append((float(onset), float(length), move))
            motif.append(moves)
        return motif

    def _pitch(self, pool: list[int], idx: int, chord: Chord) -> int:
        """Scale note ``idx``, with the leading tone raised where the chord is a harmonic-minor V."""
        pitch = pool[idx]
        if self.mode == "minor" and (self.tonic + 11) % 12 in chord.tones and (pitch - self.tonic) % 12 == 10:
            pitch += 1
        return pitch

    def _melody(self) -> None:
        program = self.parts.lead
        lo, hi = tessitura(program)
        if hi >= 76 and self.parts.comp is not None:
            lo = max(lo, 62)  # keep the tune above the comping hands
        inst = self._track("lead", program, pan=64)
        doubles = [
            self._track(f"double{i}", p, pan=30 + 60 * (i % 2)) for i, p in enumerate(self.parts.doubles)
        ]
        pool = self._melody_pitches(lo, hi)
        motifs = {"A": self._motif(0), "B": self._motif(1)}
        centre = {"A": len(pool) * 0.45, "B": len(pool) * 0.62}
        idx = int(centre["A"])

        def play(bar: BarPlan, onset: float, length: float, pitch: int, vel: int, rng) -> None:
            start = self._time(bar.index, onset) + (rng.normal(0, 0.006) if onset else 0.0)
            end = self._time(bar.index, onset + length) - 0.03
            self._note(inst, pitch, start, end, vel)
            for d in doubles:
                self._note(d, pitch - 12, start, end, max(1, vel - 18))

        def nearest_chord_tone(pitch: int, chord: Chord, below: bool = False) -> int:
            options = [pitch + d for d in range(-6, 7) if (pitch + d) % 12 in chord.tones[:3]]
            if below:
                options = [o for o in options if o <= pitch] or options
            return min(options, key=lambda o: (abs(o - pitch), o))

        for bar in self.plan:
            if bar.section == "intro":
                continue
            rng = self._rng(6, bar.index)
            chord = bar.chord
            chord_pcs = set(chord.triad)
            final = bar.section == "outro" and bar.last_of_section
            if bar.section == "outro":
                # cadence: chord tones of the V (or IV) stepping down, then the tonic held to the end
                target = min(
                    (i for i, n in enumerate(pool) if n % 12 == self.tonic),
                    key=lambda i: abs(i - idx),
                    default=idx,
                )
                if final:
                    start = self._time(bar.index, 0)
                    self._note(inst, pool[target], start, start + self.bar + 1.2, self._vel(84, rng))
                    idx = target
                else:
                    first = nearest_chord_tone(pool[min(target + 2, len(pool) - 1)], chord)
                    second = nearest_chord_tone(first - 1, chord, below=True)
                    play(bar, 0.0, 2.0, first, self._vel(86, rng), rng)
                    play(bar, 2.0, 2.0, second, self._vel(78, rng), rng)
                continue
            section = bar.section
            motif = motifs[section]
            if bar.phrase_bar == 3:
                # phrase ending: one or two long notes on chord tones (the answer to the motif)
                moves = [(0.0, 2.0, 0), (2.0, 2.0, -1)] if rng.random() < 0.5 else [(0.0, 3.0, -1)]
            else:
                moves = list(motif[bar.phrase_bar % 2])
                if bar.phrase_bar == 2:  # restate the motif with a varied tail
                    moves = [
                        (o, ln, m + (int(rng.integers(-2, 3)) if k == len(moves) - 1 else 0))
                        for k, (o, ln, m) in enumerate(moves)
                    ]
                if bar.phrase_index >= 1 and len(moves) > 1:
                    # later phrases develop the idea: one interval changes, the rhythm stays
                    vary = self._rng(7, bar.phrase_index, bar.phrase_bar)
                    k = 1 + int(vary.integers(len(moves) - 1))
                    o, ln, m = moves[k]
                    moves[k] = (o, ln, int(np.clip(m + vary.choice([-2, -1, 1, 2]), -4, 4)))
            # drift back towards this section's register
            pull = centre[section] - idx
            if abs(pull) > 3:
                idx += int(np.sign(pull)) * 2
            if self.energy < 0.35 and bar.phrase_bar == 1 and rng.random() < 0.4:
                continue  # calm pieces leave space
            for onset, length, move in moves:
                idx = int(np.clip(idx + move, 1, len(pool) - 2))
                if onset in (0.0, 2.0) or length >= 1.0:  # strong beats and long notes: chord tones
                    idx = min(
                        range(max(0, idx - 2), min(len(pool), idx + 3)),
                        key=lambda i: (pool[i] % 12 not in chord_pcs, abs(i - idx)),
                    )
                accent = 8 if onset in (0.0, 2.0) else 0
                arch = 6 if bar.phrase_bar == 2 else 0
                vel = self._vel(82 + accent + arch + (6 if section == "B" else 0), rng)
                play(bar, onset, length, self._pitch(pool, idx, chord), vel, rng)


def arrange(
    spec: MusicSpec,
    seed: int,
    *,
    total_bars: int | None = None,
    intro_bars: int | None = None,
    temperature: float = 1.0,
) -> Arrangement:
    """Plan and write the MIDI for ``spec`` (no audio)."""
    bpm = float(spec.bpm)
    if not 30 <= bpm <= 300:
        raise InvalidArrangerInput(f"Tempo {spec.bpm} BPM is out of range: use 30-300 BPM.")
    if total_bars is None:
        total_bars = bars_for(float(spec.duration), bpm)
    if intro_bars is None:
        intro_bars = default_intro_bars(total_bars)
    return _Builder(spec, seed, total_bars=total_bars, intro_bars=intro_bars, temperature=temperature).build()


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def soundfont_bytes() -> bytes:
    import pretty_midi

    path = Path(pretty_midi.__file__).with_name(SOUNDFONT_NAME)
    if not path.is_file():
        raise BackendError(
            f"The General MIDI SoundFont {SOUNDFONT_NAME} is missing from pretty_midi ({path})."
        )
    return path.read_bytes()


def midi_bytes(pm) -> bytes:
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def decode_wav(wav: bytes) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV bytes -> float32 (channels, samples) without a decoder library (a view + scale)."""
    data = memoryview(wav)
    if bytes(data[:4]) != b"RIFF" or bytes(data[8:12]) != b"WAVE":
        raise BackendError("The renderer returned something that is not a WAV file.")
    pos, channels, sr, bits = 12, 0, 0, 0
    while pos + 8 <= len(data):
        chunk, size = bytes(data[pos : pos + 4]), int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt ":
            channels = int.from_bytes(data[body + 2 : body + 4], "little")
            sr = int.from_bytes(data[body + 4 : body + 8], "little")
            bits = int.from_bytes(data[body + 14 : body + 16], "little")
        elif chunk == b"data":
            if bits != 16 or channels < 1:
                raise BackendError(f"Unexpected WAV format from the renderer ({bits}-bit, {channels} ch).")
            size = min(size, len(data) - body) // (2 * channels) * (2 * channels)
            pcm = np.frombuffer(data[body : body + size], dtype="<i2").reshape(-1, channels)
            return (pcm.T * np.float32(1 / 32768)).astype(np.float32), sr
        pos = body + size + (size & 1)
    raise BackendError("The renderer's WAV has no audio data.")


def _render_wave(midi: bytes) -> tuple[np.ndarray, int]:
    """One midirenderer call (also the worker-process entry point: module level, picklable args)."""
    import midirenderer

    try:
        wav = midirenderer.render_wave_from(soundfont_bytes(), midi)
    except Exception as exc:  # the Rust renderer raises plain exceptions
        raise BackendError(f"Rendering the arrangement failed: {exc}") from exc
    return decode_wav(wav)


def render_midi(midi: bytes) -> tuple[np.ndarray, int]:
    """MIDI bytes -> float32 (channels, samples) audio with the bundled SoundFont."""
    return _render_wave(midi)


# Rendering is the cost: midirenderer spends ~6 ms per audio second on its reverb/chorus even in
# silence, plus the voices, and holds the GIL (two threads take twice as long). Measured on the shared
# 2-core box, rendering halves in a worker process did not pay, so one render it is -- of exactly the
# requested length (release tails past the end used to add 1-3 s of rendering that was cut off).
def _segment_midi(pm, start: float, stop: float, render_to: float) -> bytes:
    """MIDI of the notes with onset in [start, stop), shifted by -start, rendered up to ``render_to``."""
    import pretty_midi

    tempo = float(pm.get_tempo_changes()[1][0])
    out = pretty_midi.PrettyMIDI(initial_tempo=tempo, resolution=pm.resolution)
    for k, inst in enumerate(pm.instruments):
        # the same instruments in the same order keep the same channels; controllers are all at t=0
        part = pretty_midi.Instrument(program=inst.program, is_drum=inst.is_drum, name=inst.name)
        part.control_changes = [
            pretty_midi.ControlChange(c.number, c.value, max(0.0, c.time - start))
            for c in inst.control_changes
            if c.time < stop
        ]
        part.notes = [
            pretty_midi.Note(n.velocity, n.pitch, n.start - start, min(n.end, render_to) - start)
            for n in inst.notes
            if start <= n.start < stop and n.start < render_to
        ]
        if k == 0:  # midirenderer stops at the last event: an inert controller (CC 110) sets the end
            part.control_changes.append(pretty_midi.ControlChange(110, 0, render_to - start))
        out.instruments.append(part)
    return midi_bytes(out)


def render_arrangement(pm, seconds: float) -> tuple[np.ndarray, int]:
    """The first ``seconds`` of ``pm`` as float32 (channels, samples); nothing after is rendered."""
    audio, sr, _ = _render_first(pm, seconds)
    return audio, sr


def _render_first(pm, seconds: float) -> tuple[np.ndarray, int, bytes]:
    """``render_arrangement`` plus the MIDI bytes it rendered: exactly the audio's notes, the file
    users get beside it (one MIDI serialisation per track; writing one costs ~30 ms)."""
    midi = _segment_midi(pm, 0.0, math.inf, seconds)
    audio, sr = _render_wave(midi)
    return _fit(audio, int(round(seconds * sr))), sr, midi


def lofi_colour(audio: np.ndarray, sample_rate: int, seed: int) -> np.ndarray:
    """Worn-record colour for lo-fi: a soft 6 kHz low-pass, faint hiss and sparse vinyl crackle.

    Everything is causal and drawn sequentially from a seeded generator, so a longer render of the
    same seed starts with exactly the same colour (continuations stay seamless).
    """
    from scipy.signal import butter, lfilter

    # float32 throughout (scipy filters float32 natively; float64 doubled the cost of the colour)
    b, a = (c.astype(np.float32) for c in butter(2, 6000 / (sample_rate / 2), btype="low"))
    out = lfilter(b, a, audio.astype(np.float32, copy=False), axis=-1)
    n = out.shape[1]
    noise = np.random.default_rng([seed, 98]).standard_normal(n, dtype=np.float32) * np.float32(0.0025)
    rng = np.random.default_rng([seed, 99])
    click = np.exp(-np.arange(48) / 6.0).astype(np.float32)
    t = 0.0
    while True:  # clicks as a Poisson process, ~7 per second, mostly tiny, a few louder pops
        t += rng.exponential(1 / 7.0)
        i = int(t * sample_rate)
        if i >= n - 64:
            break
        amp = 0.02 * rng.pareto(3.0) + 0.004
        noise[i : i + 48] += np.float32(min(amp, 0.08) * (1 if rng.random() < 0.5 else -1)) * click
    # hiss and crackle share one high-pass: filtering their sum is the same (the filter is linear)
    hb, ha = (c.astype(np.float32) for c in butter(1, 3000 / (sample_rate / 2), btype="high"))
    return out + lfilter(hb, ha, noise)[None, :]


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    if audio.shape[1] >= n:
        return audio[:, :n]
    return np.pad(audio, ((0, 0), (0, n - audio.shape[1])))


def _declick_tail(audio: np.ndarray, sr: int, seconds: float = 0.02) -> np.ndarray:
    n = min(audio.shape[1], int(sr * seconds))
    if n > 1:
        audio[:, -n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
    return audio


# The raw render is quiet (peaks 0.12-0.44, -31..-22 LUFS measured across styles): a FIXED gain keeps
# takes of the same seed level-identical (continuations rely on it); engine.audio.finish sets loudness.
RENDER_GAIN = 2.0
PEAK_CEILING = 0.95


class ArrangerBackend:
    """MusicBackend that arranges MIDI and renders it offline with a General MIDI SoundFont."""

    name = "arranger"
    model_id = MODEL_ID
    sample_rate = SAMPLE_RATE
    max_batch = 64

    def __init__(self) -> None:
        self.params = GenerationParams()

    def set_generation_params(self, **params) -> None:
        """Accepts the shared GenerationParams names; ``temperature`` widens melodic leaps here."""
        unknown = set(params) - set(GenerationParams.__dataclass_fields__)
        if unknown:
            raise InvalidArrangerInput(f"Unknown generation parameter(s): {', '.join(sorted(unknown))}.")
        for key, value in params.items():
            setattr(self.params, key, value)

    # -- MusicBackend API -----------------------------------------------------------------
    def generate(
        self,
        specs: Sequence[MusicSpec],
        *,
        samples: int = 1,
        seed: int | None = None,
        progress: ProgressFn | None = None,
    ) -> list[Track]:
        specs = list(specs)
        if samples < 1:
            raise InvalidArrangerInput(f"samples must be at least 1, got {samples}.")
        for spec in specs:
            self._check(spec)
        seed = random.randrange(2**31) if seed is None else int(seed)
        total = len(specs) * samples
        tracks: list[Track] = []
        if progress:
            progress(0, total)
        for spec in specs:
            for sample in range(samples):
                tracks.append(self._make(spec, seed + sample, sample_index=sample))
                if progress:
                    progress(len(tracks), total)
        return tracks

    def generate_continuation(
        self, track: Track, seconds: float, *, progress: ProgressFn | None = None, seed: int | None = None
    ) -> Track:
        """Extend ``track`` by ``seconds``: the same seed re-planned longer, joined at the old outro.

        The planner is prefix-stable, so the longer arrangement plays the same bars up to where the
        original's outro began; the new audio takes over there with a short crossfade, gain-matched to
        the (possibly loudness-normalised) original.
        """
        seconds = float(seconds)
        if not seconds > 0:
            raise InvalidArrangerInput(f"The extension must be positive, got {seconds:g} seconds.")
        spec = track.spec
        if progress:
            progress(0, 1)
        info = track.meta.get("arranger") or {}
        use_seed = int(track.seed if seed is None else seed)
        old = np.asarray(track.audio, dtype=np.float32)
        if old.ndim == 1:
            old = old[None, :]
        old = _to_rate(old, track.sample_rate, self.sample_rate)
        if old.shape[0] == 1:
            old = np.repeat(old, 2, axis=0)
        old_len = old.shape[1]
        new_duration = old_len / self.sample_rate + seconds
        self._check(spec.with_(duration=min(new_duration, MAX_SECONDS)))
        bpm = float(spec.bpm)
        bar_seconds = 240.0 / bpm
        total_bars = bars_for(new_duration, bpm)
        intro = info.get("intro_bars")
        fade_out = float(track.meta.get("finish", {}).get("fade_out", 0.0) or 0.0)
        same_plan = track.backend == self.name and use_seed == track.seed and intro is not None
        new = self._render(
            spec.with_(duration=new_duration),
            use_seed,
            total_bars=total_bars,
            intro_bars=int(intro) if intro is not None else None,
        )
        audio, sr, arrangement, mid = new
        # where the old take hands over: its outro (same bars before it), never inside its fade-out
        limit = old_len / sr - max(fade_out, 0.25)
        if same_plan:
            join = min(int(info["outro_start_bar"]) * bar_seconds, limit)
        else:
            join = limit
        join = max(join, min(old_len / sr, 0.5))
        join_n = int(round(join * sr))
        xfade = min(int(0.12 * sr), join_n)
        total_n = int(round(new_duration * sr))
        audio = _fit(audio, total_n)
        # match the new render's level to the old audio just before the join
        win = slice(max(0, join_n - 2 * sr), join_n)
        ref = float(np.sqrt(np.mean(old[:, win] ** 2)) + 1e-9)
        cur = float(np.sqrt(np.mean(audio[:, win] ** 2)) + 1e-9)
        gain = (
            float(np.clip(ref / cur, 0.05, 20.0))
            if same_plan
            else float(
                np.clip(ref / (np.sqrt(np.mean(audio[:, join_n : join_n + 2 * sr] ** 2)) + 1e-9), 0.05, 20.0)
            )
        )
        audio *= gain
        out = audio.copy()
        out[:, : join_n - xfade] = old[:, : join_n - xfade]
        ramp = np.linspace(0.0, 1.0, xfade, dtype=np.float32)
        seg = slice(join_n - xfade, join_n)
        out[:, seg] = old[:, seg] * (1.0 - ramp) + audio[:, seg] * ramp
        out = _declick_tail(out, sr)
        if float(np.max(np.abs(out[:, seg.start :]))) > PEAK_CEILING:
            # a normalised original sits near full scale: limit only the new part, leave the old as is
            from engine.audio import limit_peaks

            out[:, seg.start :] = limit_peaks(out[:, seg.start :], sr, PEAK_CEILING)
        meta = dict(track.meta)
        meta.pop("finish", None)
        meta["arranger"] = self._meta(arrangement, mid)
        meta["continued_from_seed"] = track.seed
        meta["extended_seconds"] = seconds
        meta["join_seconds"] = join
        if progress:
            progress(1, 1)
        return Track(
            audio=out.astype(np.float32),
            sample_rate=sr,
            spec=spec.with_(duration=round(new_duration, 3)),
            seed=use_seed,
            backend=self.name,
            model=self.model_id,
            midi=mid,
            meta=meta,
        )

    # -- internals ------------------------------------------------------------------------
    def _check(self, spec: MusicSpec) -> None:
        if not spec.duration or not 0 < float(spec.duration) <= MAX_SECONDS:
            raise InvalidArrangerInput(
                f"Duration must be between 0 and {MAX_SECONDS:g} seconds, got {spec.duration}."
            )
        if not 30 <= float(spec.bpm) <= 300:
            raise InvalidArrangerInput(f"Tempo {spec.bpm} BPM is out of range: use 30-300 BPM.")
        tonic_pitch_class(spec.key)

    def _render(
        self, spec: MusicSpec, seed: int, *, total_bars: int | None = None, intro_bars: int | None = None
    ) -> tuple[np.ndarray, int, Arrangement, bytes]:
        arrangement = arrange(
            spec, seed, total_bars=total_bars, intro_bars=intro_bars, temperature=self.params.temperature
        )
        audio, sr, mid = _render_first(arrangement.midi, float(spec.duration))
        audio = audio * RENDER_GAIN
        if arrangement.style == "lofi":
            audio = lofi_colour(audio, sr, seed)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > PEAK_CEILING:  # rare dense arrangements: scale down rather than clip
            audio = audio * (PEAK_CEILING / peak)
        return audio.astype(np.float32), sr, arrangement, mid

    def _meta(self, arrangement: Arrangement, mid: bytes) -> dict:
        return {
            "style": arrangement.style,
            "key": NOTE_NAMES[arrangement.tonic],
            "mode": arrangement.mode,
            "bpm": arrangement.bpm,
            "bars": arrangement.total_bars,
            "intro_bars": arrangement.intro_bars,
            "outro_start_bar": arrangement.outro_start_bar,
            "bar_seconds": arrangement.bar_seconds,
            "programs": {
                "lead": arrangement.parts.lead,
                "comp": arrangement.parts.comp,
                "pad": arrangement.parts.pad,
                "bass": arrangement.parts.bass,
            },
            "drums": arrangement.parts.drums,
        }

    def _make(self, spec: MusicSpec, seed: int, *, sample_index: int) -> Track:
        started = time.perf_counter()
        audio, sr, arrangement, mid = self._render(spec, seed)
        audio = _declick_tail(_fit(audio, int(round(float(spec.duration) * sr))), sr)
        meta = {
            "arranger": self._meta(arrangement, mid),
            "sample_index": sample_index,
            "wall_seconds": time.perf_counter() - started,
        }
        return Track(
            audio=audio,
            sample_rate=sr,
            spec=spec,
            seed=seed,
            backend=self.name,
            model=self.model_id,
            midi=mid,
            meta=meta,
        )


def _to_rate(audio: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    if sr_from == sr_to:
        return audio
    from scipy.signal import resample_poly

    g = math.gcd(int(sr_from), int(sr_to))
    return resample_poly(audio, sr_to // g, sr_from // g, axis=-1).astype(np.float32)
