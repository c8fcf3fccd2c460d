"""Realtime factor of the offline arranger (audio seconds per wall second), plus finishing cost.

    .venv/bin/python bench/arranger.py [--durations 15 60] [--genres Lofi EDM Jazz Ambient] [--repeat 3]

Prints one row per (genre, duration): best-of-N wall time of ``generate`` (arrange + render +
decode) and its realtime factor, of ``engine.audio.finish``, of mp3 encoding (192k), end to end
(generate + finish + encode) with its realtime factor, and the measured tempo of the result.
``TEXTUNES_ARRANGER_WORKERS=0`` renders without the worker process (same audio, one core).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.audio import encode, estimate_tempo, finish  # noqa: E402
from engine.generation.arranger import ArrangerBackend  # noqa: E402
from engine.spec import MusicSpec  # noqa: E402

BPM = {"Lofi": 80, "EDM": 128, "Jazz": 120, "Ambient": 70, "Rock": 110, "Pop": 100}


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--durations", type=float, nargs="+", default=[15.0, 60.0])
    ap.add_argument("--genres", nargs="+", default=["Lofi", "EDM", "Jazz", "Ambient"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    backend = ArrangerBackend()
    backend.generate([MusicSpec(prompt="warm-up", duration=5.0)], seed=0)  # loads the SoundFont once
    header = (
        f"{'genre':<8} {'bpm':>4} {'audio s':>8} {'generate s':>11} {'gen x rt':>9} "
        f"{'finish s':>9} {'mp3 s':>6} {'e2e s':>6} {'e2e x rt':>9} {'tempo est':>10}"
    )
    print(header)
    print("-" * len(header))
    for duration in args.durations:
        for genre in args.genres:
            bpm = BPM.get(genre, 100)
            spec = MusicSpec(prompt=genre, genres=(genre,), bpm=bpm, duration=duration)
            wall, tracks = best_of(lambda spec=spec: backend.generate([spec], seed=7), args.repeat)
            track = tracks[0]
            fin_wall, finished = best_of(lambda track=track: finish(track), args.repeat)
            mp3_wall, _ = best_of(lambda finished=finished: encode(finished, "mp3", "192k"), args.repeat)
            end_to_end = wall + fin_wall + mp3_wall
            tempo = estimate_tempo(track.audio, track.sample_rate)
            print(
                f"{genre:<8} {bpm:>4} {duration:>8.0f} {wall:>11.3f} {duration / wall:>9.1f} "
                f"{fin_wall:>9.3f} {mp3_wall:>6.3f} {end_to_end:>6.3f} {duration / end_to_end:>9.1f} "
                f"{tempo:>10.1f}"
            )


if __name__ == "__main__":
    main()
