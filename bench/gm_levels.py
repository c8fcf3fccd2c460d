"""Measure how loud each General MIDI program of TimGM6mb.sf2 plays, for the arranger's mixer.

    .venv/bin/python bench/gm_levels.py            # prints GM_LEVELS as a Python literal

Each program plays the same 4-second phrase (a broken triad in its comfortable register, velocity
90, CC7 127); the integrated loudness (LUFS) of that solo is its level. The arranger sets each part's
CC7 from (role target - level), so a quiet patch (piano) and a loud one (saw lead) sit equally in a
mix. Re-run and paste the output into engine/generation/arranger/gm_levels.py when the SoundFont changes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pretty_midi  # noqa: E402

from engine.audio import loudness  # noqa: E402
from engine.generation.arranger import midi_bytes, render_midi, tessitura  # noqa: E402


def level(program: int) -> float:
    lo, hi = tessitura(program)
    root = (lo + hi) // 2 - 6
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(program=program)
    inst.control_changes.append(pretty_midi.ControlChange(7, 127, 0.0))
    for k in range(8):  # broken triad, eighth notes held for a quarter
        pitch = root + (0, 4, 7, 12)[k % 4]
        inst.notes.append(pretty_midi.Note(90, pitch, k * 0.5, k * 0.5 + 0.5))
    pm.instruments.append(inst)
    audio, sr = render_midi(midi_bytes(pm))
    return round(loudness(audio[:, : 4 * sr], sr), 1)


def main() -> None:
    levels = [level(p) for p in range(128)]
    print("GM_LEVELS = (")
    for row in range(0, 128, 8):
        print("    " + ", ".join(f"{v:.1f}" for v in levels[row : row + 8]) + ",")
    print(")")


if __name__ == "__main__":
    main()
