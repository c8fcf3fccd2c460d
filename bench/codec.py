"""EnCodec decode time: our row chunking (frame-rate layers on all rows, upsampling in chunks) vs
decoding whole chunks of rows (what the engine did before), interleaved so drift hits both.

    .venv/bin/python bench/codec.py                  # 8 rows x 5 s, 3 pairs

Random musicgen-small checkpoint from ``bench/_musicgen_random.py``; random codes (decode time does
not depend on their values).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model-dir", default="/tmp/textunes-bench/musicgen-small-random")
    args = p.parse_args()

    import torch

    from bench._musicgen_random import build_random_musicgen_small
    from engine.generation import musicgen as mg

    checkpoint = build_random_musicgen_small(args.model_dir)
    backend = mg.MusicGenBackend(str(checkpoint), device="cpu", dtype="int8", threads=args.threads)
    codec = backend.model.audio_encoder
    frames = int(args.seconds * codec.config.frame_rate)
    codes = torch.randint(0, codec.config.codebook_size, (1, args.rows, backend.num_codebooks, frames))
    per_chunk = max(1, int(mg.DECODE_BUDGET_SECONDS * codec.config.frame_rate) // frames)

    def ours() -> None:
        codec.decode(codes, [None])

    def whole_chunks() -> None:
        for start in range(0, args.rows, per_chunk):
            codec.decode(codes[:, start : start + per_chunk], [None])

    def timed(fn) -> float:
        with torch.inference_mode():
            started = time.perf_counter()
            fn()
            return time.perf_counter() - started

    timed(ours), timed(whole_chunks)  # warm-up
    print(f"{args.rows} rows x {args.seconds:g} s, {per_chunk} rows per chunk, {args.threads} threads\n")
    print("| pair | frame-rate layers on all rows (s) | whole decode per chunk (s) |")
    print("|---|---|---|")
    for i in range(args.pairs):
        print(f"| {i + 1} | {timed(ours):.2f} | {timed(whole_chunks):.2f} |", flush=True)


if __name__ == "__main__":
    main()
