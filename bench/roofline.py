"""The memory-bandwidth ceiling of MusicGen decoding on this machine, and what it allows.

    .venv/bin/python bench/roofline.py                    # batches 8 and 16, 5-s clips
    .venv/bin/python bench/roofline.py --batches 8,16,32 --measured-naive 0.23

Every decoder step reads all decoder weights (fp32: 4 bytes each; our int8: 1 byte) plus every
cached key and value of every row (fp32), and each row is doubled by classifier-free guidance; it
also multiplies every row by every weight. So a step takes at least
``max(bytes / DRAM bandwidth, 2 * rows * weights / matmul peak)`` whatever the kernels (a roofline),
with both rates measured here: a reduction over 1 GiB, and a large-batch Linear in the precision
of the configuration (fbgemm for int8, as the product runs it). The EnCodec decode that follows is
timed, not modelled. The table prints the best audio-seconds per wall-second each configuration
could reach, and the ratio of the engine's ceiling to the naive configuration (fp32, batch 1),
either to naive's own ceiling or to a measured naive figure.

Model: the real facebook/musicgen-small architecture with random weights (``bench/_musicgen_random.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def read_bandwidth(gib: float = 1.0, repeats: int = 5) -> float:
    """Best observed DRAM read rate in bytes/s: a reduction over a buffer far larger than any cache."""
    import torch

    data = torch.ones(int(gib * 2**30) // 4)
    data.sum()  # fault the pages in
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        data.sum()
        best = max(best, data.numel() * 4 / (time.perf_counter() - started))
    return best


def matmul_peak(int8: bool, rows: int = 256, repeats: int = 20) -> float:
    """Multiply-adds x 2 per second of a 1024 -> 4096 Linear on ``rows`` rows: the compute roof."""
    import warnings

    import torch

    layer = torch.nn.Sequential(torch.nn.Linear(1024, 4096, bias=False))
    if int8:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            layer = quantize_dynamic(layer, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    x = torch.randn(rows, 1024)
    with torch.inference_mode():
        layer(x)
        started = time.perf_counter()
        for _ in range(repeats):
            layer(x)
        return 2 * rows * 1024 * 4096 * repeats / (time.perf_counter() - started)


def decoder_step_weights(config) -> int:
    """Parameters the decoder reads every step: self-attention q/k/v/o, cross-attention q/o (its
    k/v are computed once from the text), the feed-forward pair and the per-codebook LM heads."""
    d, ffn, layers = config.hidden_size, config.ffn_dim, config.num_hidden_layers
    per_layer = 4 * d * d + 2 * d * d + 2 * d * ffn
    return layers * per_layer + config.num_codebooks * d * config.vocab_size


def step_bytes(config, *, rows: int, cached: int, text_tokens: int, weight_bytes: int, kv_bytes: int) -> int:
    """Bytes read by one step with ``cached`` positions of self-attention keys/values per row."""
    kv_per_position = 2 * config.num_hidden_layers * config.hidden_size * kv_bytes  # keys + values
    return decoder_step_weights(config) * weight_bytes + rows * (cached + text_tokens) * kv_per_position


def clip_bytes(config, *, batch: int, steps: int, text_tokens: int, weight_bytes: int, kv_bytes: int) -> int:
    rows = 2 * batch  # classifier-free guidance: a conditional and an unconditional row per clip
    return sum(
        step_bytes(
            config, rows=rows, cached=t, text_tokens=text_tokens, weight_bytes=weight_bytes, kv_bytes=kv_bytes
        )
        for t in range(1, steps + 1)
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="8,16")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--text-tokens", type=int, default=12, help="prompt length after tokenising")
    p.add_argument(
        "--kv-bytes", type=int, default=4, help="bytes per cached key/value (4 = fp32, as the product)"
    )
    p.add_argument("--measured-naive", type=float, default=None, help="naive audio-s/s from bench/engine.py")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model-dir", default="/tmp/textunes-bench/musicgen-small-random")
    args = p.parse_args()

    import torch

    from bench._musicgen_random import build_random_musicgen_small
    from engine.generation import musicgen as mg

    torch.set_num_threads(args.threads)
    bandwidth = read_bandwidth()
    peaks = {4: matmul_peak(int8=False), 1: matmul_peak(int8=True)}  # keyed by bytes per weight
    checkpoint = build_random_musicgen_small(args.model_dir)
    backend = mg.MusicGenBackend(str(checkpoint), device="cpu", dtype="int8", threads=args.threads)
    config = backend.model.decoder.config
    codec = backend.model.audio_encoder
    frames = int(round(args.seconds * codec.config.frame_rate))
    steps = frames + backend.num_codebooks - 1  # the delay pattern adds codebooks - 1 steps

    def codec_seconds(rows: int) -> float:
        codes = torch.randint(0, codec.config.codebook_size, (1, rows, backend.num_codebooks, frames))
        with torch.inference_mode():
            codec.decode(codes, [None])  # warm-up
            started = time.perf_counter()
            codec.decode(codes, [None])
            return time.perf_counter() - started

    def ceiling(batch: int, weight_bytes: int, kv_bytes: int) -> tuple[float, float, float, float]:
        """(mean bytes per step, codec seconds, best wall seconds, best audio-s/s) for one batch."""
        total = clip_bytes(
            config,
            batch=batch,
            steps=steps,
            text_tokens=args.text_tokens,
            weight_bytes=weight_bytes,
            kv_bytes=kv_bytes,
        )
        ops = steps * 2 * (2 * batch) * decoder_step_weights(config)
        tail = codec_seconds(batch)
        wall = max(total / bandwidth, ops / peaks[weight_bytes]) + tail
        return total / steps, tail, wall, batch * args.seconds / wall

    print(
        f"DRAM read bandwidth {bandwidth / 1e9:.1f} GB/s, Linear peak fp32 {peaks[4] / 1e9:.0f} GFLOP/s, "
        f"int8 {peaks[1] / 1e9:.0f} GOP/s ({args.threads} threads); musicgen-small decoder "
        f"reads {decoder_step_weights(config) / 1e6:.0f} M weights per step; {args.seconds:g}-s clips = "
        f"{steps} steps\n"
    )
    print(
        "| configuration | MB read per step (mean) | codec s | best wall s | ceiling audio-s/s | ceiling / naive ceiling |"
    )
    print("|---|---|---|---|---|---|")
    naive_mb, naive_tail, naive_wall, naive_rate = ceiling(1, 4, 4)
    print(
        f"| naive: fp32, batch 1 | {naive_mb / 1e6:.0f} | {naive_tail:.2f} | {naive_wall:.1f} | {naive_rate:.3f} | 1.0× |"
    )
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        mb, tail, wall, rate = ceiling(batch, 1, args.kv_bytes)
        rows.append((batch, rate))
        print(
            f"| engine: int8, batch {batch}, KV {8 * args.kv_bytes}-bit | {mb / 1e6:.0f} | {tail:.2f} | {wall:.1f} | "
            f"{rate:.3f} | {rate / naive_rate:.1f}× |",
            flush=True,
        )
    if args.measured_naive:
        print(f"\nAgainst the measured naive {args.measured_naive:.3f} audio-s/s:")
        for batch, rate in rows:
            print(f"- batch {batch}: the ceiling is {rate / args.measured_naive:.1f}× naive")


if __name__ == "__main__":
    main()
