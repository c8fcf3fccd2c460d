"""Where MusicGen's time goes: per-decoder-step time and the codec's tail, per precision and batch.

    .venv/bin/python bench/decode_steps.py                                  # int8 vs fp32, batch 1 and 16, 5 s
    .venv/bin/python bench/decode_steps.py --dtypes int8 --batches 16 --kv-cache both
    .venv/bin/python bench/decode_steps.py --dtypes int8 --batches 1,8 --seconds 10 --attention both

Runs ``MusicGenBackend.generate`` (the product's path) on the random musicgen-small checkpoint of
``bench/_musicgen_random.py`` and times each decoder step through the progress callback. "codec tail"
is the time after the last step (EnCodec decoding the batch to audio). RSS is this process's.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = "calm lofi piano with soft drums at 80 bpm"


def measure(backend, batch: int, seconds: float, kv_cache: str) -> dict:
    from engine.spec import MusicSpec

    backend.kv_cache = kv_cache
    specs = [MusicSpec(prompt=PROMPT, duration=seconds)] * batch
    stamps: list[float] = []
    t0 = time.perf_counter()
    backend.generate(specs, seed=1, progress=lambda done, total: stamps.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {
        "wall": wall,
        "step_ms": 1000 * statistics.median(steps) if steps else float("nan"),
        "codec_s": t0 + wall - stamps[-1] if stamps else float("nan"),
        "rate": batch * seconds / wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtypes", default="float32,int8")
    p.add_argument("--batches", default="1,16")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument(
        "--kv-cache", choices=("preallocated", "dynamic", "both"), default="preallocated", help="KV cache"
    )
    p.add_argument(
        "--attention",
        choices=("eager", "sdpa", "both"),
        default="sdpa",
        help="decoder attention (the product keeps transformers' sdpa); both = interleaved pairs",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model-dir", default="/tmp/textunes-bench/musicgen-small-random")
    args = p.parse_args()

    import psutil

    from bench._musicgen_random import build_random_musicgen_small
    from engine.generation import musicgen as mg

    checkpoint = build_random_musicgen_small(args.model_dir)
    caches = ("dynamic", "preallocated") if args.kv_cache == "both" else (args.kv_cache,)
    # two interleaved pairs, so the VM's drift hits both kernels alike
    attentions = ("eager", "sdpa") * 2 if args.attention == "both" else (args.attention,)
    print(f"musicgen-small (random weights), {args.seconds:g}-s clips, {args.threads} threads\n")
    print(
        "| dtype | batch | KV cache | attention | step (median ms) | codec tail s | wall s | audio-s/s | RSS GB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for dtype in args.dtypes.split(","):
        backend = mg.MusicGenBackend(str(checkpoint), device="cpu", dtype=dtype, threads=args.threads)
        backend.generate([mg.MusicSpec(prompt=PROMPT, duration=0.2)], seed=1)  # warm-up
        for batch in (int(b) for b in args.batches.split(",")):
            for kv_cache in caches:
                for attention in attentions:
                    backend.model.decoder.set_attn_implementation(attention)
                    r = measure(backend, batch, args.seconds, kv_cache)
                    rss = psutil.Process().memory_info().rss / 2**30
                    print(
                        f"| {backend._dtype_name} | {batch} | {kv_cache} | {attention} | {r['step_ms']:.0f} | "
                        f"{r['codec_s']:.1f} | {r['wall']:.1f} | {r['rate']:.3f} | {rss:.2f} |",
                        flush=True,
                    )
        del backend
        mg._MODELS.clear()
        gc.collect()


if __name__ == "__main__":
    main()
