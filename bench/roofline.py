"""The ceiling of MusicGen decoding on this machine (bandwidth, compute, kernels), and what it allows.

    .venv/bin/python bench/roofline.py                    # batches 8 and 16, 5-s clips
    .venv/bin/python bench/roofline.py --batches 8,16,32 --measured-naive 0.23
    .venv/bin/python bench/roofline.py --kv-bytes 2          # if the KV cache were 16-bit

Every decoder step reads all decoder weights (fp32: 4 bytes each; our int8: 1 byte) plus every
cached key and value of every row (fp32), and each row is doubled by classifier-free guidance; it
also multiplies every row by every weight. So a step takes at least
``max(bytes / DRAM bandwidth, 2 * rows * weights / matmul peak)`` whatever the kernels (a roofline),
with both rates measured here: a reduction over 1 GiB, and a large-batch Linear in the precision
of the configuration (fbgemm for int8, as the product runs it). The EnCodec decode that follows is
timed, not modelled. The table prints the best audio-seconds per wall-second each configuration
could reach, and a second, lower ceiling: the same bytes with the Linear layers' weights read at
the rate the Linear kernels actually stream them (measured over as many distinct layers as a
decoder step has, so no cache helps). Ratios are to the naive configuration (fp32, batch 1):
to its own ceiling, or to a measured naive figure.

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


def _linear_1024_to_4096(int8: bool):
    """One Linear of the decoder's feed-forward shape, int8-quantised by the product's own helper."""
    import torch

    from engine.generation.int8 import int8_linears

    layer = torch.nn.Linear(1024, 4096, bias=False)
    return int8_linears(layer) if int8 else layer


def matmul_peak(int8: bool, rows: int = 256, repeats: int = 20) -> float:
    """Multiply-adds x 2 per second of a 1024 -> 4096 Linear on ``rows`` rows: the compute roof."""
    import torch

    layer = _linear_1024_to_4096(int8)
    x = torch.randn(rows, 1024)
    with torch.inference_mode():
        layer(x)
        started = time.perf_counter()
        for _ in range(repeats):
            layer(x)
        return 2 * rows * 1024 * 4096 * repeats / (time.perf_counter() - started)


def weight_streaming_rate(int8: bool, rows: int, megabytes: int = 384, repeats: int = 3) -> float:
    """Weight bytes per second that Linear layers read when each layer's weights are new to the
    caches, as in a decoder step: ``megabytes`` of distinct 1024 -> 4096 layers on ``rows`` rows."""
    import torch

    bytes_per_weight = 1 if int8 else 4
    count = max(1, megabytes * 2**20 // (1024 * 4096 * bytes_per_weight))
    layers = [_linear_1024_to_4096(int8) for _ in range(count)]
    x = torch.randn(rows, 1024)
    best = 0.0
    with torch.inference_mode():
        for _ in range(repeats):
            started = time.perf_counter()
            for layer in layers:
                layer(x)
            best = max(best, count * 1024 * 4096 * bytes_per_weight / (time.perf_counter() - started))
    return best


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

    def ceilings(batch: int, weight_bytes: int, kv_bytes: int) -> dict[str, float]:
        """Per-step bytes, codec time, the roofline's and the kernels' best audio-s/s for one batch."""
        rows = 2 * batch
        total = clip_bytes(
            config,
            batch=batch,
            steps=steps,
            text_tokens=args.text_tokens,
            weight_bytes=weight_bytes,
            kv_bytes=kv_bytes,
        )
        weight_total = steps * decoder_step_weights(config) * weight_bytes
        ops = steps * 2 * rows * decoder_step_weights(config)
        tail = codec_seconds(batch)
        streaming = weight_streaming_rate(int8=weight_bytes == 1, rows=rows)
        roofline_wall = max(total / bandwidth, ops / peaks[weight_bytes]) + tail
        # the Linear kernels at the rate they actually stream weights, the rest at DRAM bandwidth
        kernel_wall = weight_total / streaming + (total - weight_total) / bandwidth + tail
        audio = batch * args.seconds
        return {
            "mb": total / steps / 1e6,
            "codec": tail,
            "roofline": audio / roofline_wall,
            "streaming": streaming / 1e9,
            "kernels": audio / kernel_wall,
        }

    print(
        f"DRAM read bandwidth {bandwidth / 1e9:.1f} GB/s, Linear peak fp32 {peaks[4] / 1e9:.0f} GFLOP/s, "
        f"int8 {peaks[1] / 1e9:.0f} GOP/s ({args.threads} threads); musicgen-small decoder "
        f"reads {decoder_step_weights(config) / 1e6:.0f} M weights per step; {args.seconds:g}-s clips = "
        f"{steps} steps\n"
    )
    print(
        "| configuration | MB read per step (mean) | codec s | roofline audio-s/s | Linear streams GB/s "
        "| kernel ceiling audio-s/s |"
    )
    print("|---|---|---|---|---|---|")
    configs = [("naive: fp32, batch 1", 1, 4, 4)] + [
        (f"engine: int8, batch {b}, KV {8 * args.kv_bytes}-bit", b, 1, args.kv_bytes)
        for b in (int(b) for b in args.batches.split(","))
    ]
    results = []
    for name, batch, weight_bytes, kv_bytes in configs:
        r = ceilings(batch, weight_bytes, kv_bytes)
        results.append((name, r))
        print(
            f"| {name} | {r['mb']:.0f} | {r['codec']:.2f} | {r['roofline']:.3f} | {r['streaming']:.1f} "
            f"| {r['kernels']:.3f} |",
            flush=True,
        )
    naive = results[0][1]
    print("\nEngine ceilings as multiples of naive (its own ceiling, or the measured figure given):")
    for name, r in results[1:]:
        line = f"- {name}: roofline {r['roofline'] / naive['roofline']:.1f}×, kernels {r['kernels'] / naive['kernels']:.1f}×"
        if args.measured_naive:
            line += (
                f"; vs measured naive {args.measured_naive:.3f}: roofline "
                f"{r['roofline'] / args.measured_naive:.1f}×, kernels {r['kernels'] / args.measured_naive:.1f}×"
            )
        print(line)


if __name__ == "__main__":
    main()
