"""Data: GM drum keys, 16-step drum grooves, percussion layers and one-bar melody rhythms."""

from __future__ import annotations

# General MIDI percussion keys (channel 10)
KICK, RIM, SNARE, CLAP, CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 36, 37, 38, 39, 42, 44, 46
LOW_TOM, MID_TOM, HIGH_TOM, FLOOR_TOM = 45, 47, 50, 41
CRASH, RIDE, RIDE_BELL, TAMBOURINE, COWBELL, SHAKER = 49, 51, 53, 54, 56, 70
CONGA_HI, CONGA_LO, CLAVES = 63, 64, 75


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
