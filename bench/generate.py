"""Generation speed: naive vs batched MusicGen (real musicgen-small shapes, random weights) + arranger.

    .venv/bin/python bench/generate.py                # 5 s clips, full table (several minutes on 2 cores)
    .venv/bin/python bench/generate.py --quick        # 2 s clips, fewer rows
    .venv/bin/python bench/generate.py --rows naive,int8-b8,int8-b8-prealloc

Speed does not depend on weight values, so a random checkpoint with musicgen-small's exact
architecture (bench/_musicgen_random.py, built once into --checkpoint) times the real thing. Every
row goes through ``MusicGenBackend.generate`` — text encoding, decoding and EnCodec included —
exactly as the product does. Rows run sequentially in one process; a short warm-up call per
configuration is excluded from the timings.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = (
    "lofi hip hop with soft piano and vinyl crackle, calm, 80 bpm",
    "upbeat electronic dance track with synth bass and claps, 124 bpm",
    "cinematic orchestral strings, slow and sad, minor key",
    "acoustic folk guitar with warm vocals humming, happy",
    "smooth jazz trio, brushed drums, double bass, relaxing evening",
    "ambient dreamy pads with soft bells, meditation",
    "energetic rock with distorted guitars and loud drums, 140 bpm",
    "chill tropical house with marimba and light percussion",
)


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    dtype: str
    batch: int  # prompts per generate call
    calls: int  # generate calls timed (sequential)
    kv_cache: str = "dynamic"  # transformers' own; "preallocated" is ours


ROWS = {
    "naive": Row("naive", "musicgen naive (1 prompt/call)", "float32", 1, 1),
    "fp32-b8": Row("fp32-b8", "musicgen batched", "float32", 8, 1),
    "fp32-b8-prealloc": Row(
        "fp32-b8-prealloc", "musicgen batched + preallocated KV", "float32", 8, 1, "preallocated"
    ),
    "bf16-b1": Row("bf16-b1", "musicgen bf16 (1 prompt/call)", "bfloat16", 1, 1),
    "bf16-b8": Row("bf16-b8", "musicgen batched", "bfloat16", 8, 1),
    "bf16-b8-prealloc": Row(
        "bf16-b8-prealloc", "musicgen batched + preallocated KV", "bfloat16", 8, 1, "preallocated"
    ),
    "bf16-b16": Row("bf16-b16", "musicgen batched", "bfloat16", 16, 1),
    "int8-b1": Row("int8-b1", "musicgen int8 (1 prompt/call)", "int8", 1, 1),
    "int8-b8": Row("int8-b8", "musicgen batched", "int8", 8, 1),
    "int8-b8-prealloc": Row(
        "int8-b8-prealloc", "musicgen batched + preallocated KV", "int8", 8, 1, "preallocated"
    ),
    "int8-b16": Row("int8-b16", "musicgen batched", "int8", 16, 1),
}
DEFAULT_ROWS = ("naive", "fp32-b8", "int8-b1", "int8-b8", "int8-b8-prealloc", "int8-b16")
QUICK_ROWS = ("naive", "int8-b8", "int8-b8-prealloc")


def _specs(n: int, seconds: float):
    from engine.spec import MusicSpec

    return [MusicSpec(prompt=PROMPTS[i % len(PROMPTS)], duration=seconds) for i in range(n)]


def run_musicgen(row: Row, checkpoint: Path, seconds: float, threads: int | None) -> tuple[float, float]:
    """Return (audio seconds, wall seconds) for ``row``."""
    from engine.generation import musicgen as mg

    backend = mg.MusicGenBackend(
        str(checkpoint), device="cpu", dtype=row.dtype, kv_cache=row.kv_cache, threads=threads
    )
    backend.generate(_specs(row.batch, 0.2), seed=0)  # warm-up: allocator, kernels, caches
    audio = 0.0
    started = time.perf_counter()
    for call in range(row.calls):
        tracks = backend.generate(_specs(row.batch, seconds), seed=call)
        audio += sum(t.duration for t in tracks)
    return audio, time.perf_counter() - started


def run_arranger(seconds: float, batch: int) -> tuple[float, float] | str:
    try:
        from engine.generation.arranger import ArrangerBackend
    except ImportError as exc:
        return f"arranger not available: {exc}"
    backend = ArrangerBackend()
    backend.generate(_specs(1, 2.0), seed=0)
    started = time.perf_counter()
    tracks = backend.generate(_specs(batch, seconds), seed=1)
    return sum(t.duration for t in tracks), time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None, help="seconds of audio per prompt (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 s clips and only naive / bf16 rows")
    parser.add_argument("--rows", help=f"comma list of rows from: {', '.join(ROWS)}")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--checkpoint",
        default=os.environ.get("TEXTUNES_BENCH_CHECKPOINT", "/tmp/textunes-musicgen-small-random"),
        help="where the random musicgen-small checkpoint is built / reused",
    )
    parser.add_argument("--no-arranger", action="store_true")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (2.0 if args.quick else 5.0)
    keys = args.rows.split(",") if args.rows else (QUICK_ROWS if args.quick else DEFAULT_ROWS)
    unknown = [k for k in keys if k not in ROWS]
    if unknown:
        parser.error(f"unknown rows: {', '.join(unknown)}")

    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # the random checkpoint's pad-id warning, load bars
    transformers.utils.logging.disable_progress_bar()

    from bench._musicgen_random import build_random_musicgen_small
    from engine.device import configure_cpu_threads
    from engine.generation import musicgen as mg

    checkpoint = build_random_musicgen_small(args.checkpoint)
    threads = configure_cpu_threads(args.threads)
    print(
        f"# torch {torch.__version__}, {threads} CPU threads, load {os.getloadavg()[0]:.2f}; clip {seconds:g} s"
    )
    header = f"| {'backend':<34} | {'batch':>5} | {'dtype':<8} | {'audio s':>7} | {'wall s':>7} | {'audio-s/wall-s':>14} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    naive_rate = None
    for key in keys:
        row = ROWS[key]
        audio, wall = run_musicgen(row, checkpoint, seconds, args.threads)
        rate = audio / wall
        naive_rate = rate if key == "naive" else naive_rate
        vs = f" ({rate / naive_rate:.1f}x naive)" if naive_rate and key != "naive" else ""
        print(
            f"| {row.label:<34} | {row.batch:>5} | {row.dtype:<8} | {audio:>7.1f} | {wall:>7.1f} | {rate:>14.3f} |{vs}",
            flush=True,
        )
        mg._MODELS.clear()  # free this dtype's copy before loading the next (RAM)
        gc.collect()
    if not args.no_arranger:
        result = run_arranger(seconds, 8)
        if isinstance(result, str):
            print(f"# {result}")
        else:
            audio, wall = result
            print(
                f"| {'arranger (SoundFont)':<34} | {8:>5} | {'-':<8} | {audio:>7.1f} | {wall:>7.1f} | {audio / wall:>14.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
