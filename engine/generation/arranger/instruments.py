"""Data: General MIDI programs for instrument names, and each program's role and melodic range."""

from __future__ import annotations

from engine.generation.arranger.theory import InvalidArrangerInput

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
    program, is_drum, _notes = gm_instrument(name)
    return program, is_drum


FULL_KIT_NOTES = (36, 38, 42, 46, 49)


def gm_instrument(name: str) -> tuple[int, bool, tuple[int, ...]]:
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
