"""Latency of the text analyser (and, with --calibrate, the VA_GAIN scale table it uses).

    python bench/text_analyzer.py              # 100 KB English / Korean documents, batch of titles
    python bench/text_analyzer.py --calibrate  # re-measure VA_GAIN on held-out rows (vs the stored one)

Documents are built from ../shared/data rows (EmoBank sentences, KOTE comments) up to 100 KB of
UTF-8, so they have realistic sentence lengths. Times are after Analyzer.load() and one warm-up.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def build_document(texts: list[str], size_bytes: int, per_paragraph: int = 6) -> str:
    parts: list[str] = []
    total = 0
    for i, text in enumerate(texts):
        text = " ".join(text.split())
        if not text:
            continue
        parts.append(text + ("\n\n" if i % per_paragraph == per_paragraph - 1 else " "))
        total += len(parts[-1].encode("utf-8"))
        if total >= size_bytes:
            break
    return "".join(parts)


def latency(runs: int) -> None:
    from engine.text.analyzer import Analyzer

    rng = random.Random(7)
    english = [r["text"] for r in _rows("va_en_emobank.csv")]
    korean = [r["text"] for r in _rows("emotion_ko_kote.csv")]
    rng.shuffle(english)
    rng.shuffle(korean)
    docs = {
        "English 100 KB": build_document(english, 100_000),
        "Korean 100 KB": build_document(korean, 100_000),
    }
    started = time.perf_counter()
    analyzer = Analyzer.load()
    load_s = time.perf_counter() - started
    analyzer.analyze(docs["English 100 KB"][:3000])  # warm-up
    analyzer.analyze(docs["Korean 100 KB"][:3000])
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Analyzer.load(): {load_s:.2f} s   (load average {load_avg:.1f} on {os.cpu_count()} cores)")
    # CPU seconds next to wall seconds: on a busy machine wall time mostly measures the neighbours
    print(f"{'input':<22} {'bytes':>8} {'chars':>8} {'median s':>9} {'min s':>7} {'cpu s':>7}")
    for name, text in docs.items():
        times, cpu = [], []
        for _ in range(runs):
            t0, c0 = time.perf_counter(), time.process_time()
            analyzer.analyze(text)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        size = len(text.encode("utf-8"))
        print(
            f"{name:<22} {size:>8} {len(text):>8} {statistics.median(times):>9.2f} {min(times):>7.2f} "
            f"{statistics.median(cpu):>7.2f}"
        )
    titles = [r["title"] for r in _rows("book_titles_train.csv")]
    rng.shuffle(titles)
    titles = titles[:256]
    t0 = time.perf_counter()
    analyzer.analyze_batch(titles)
    elapsed = time.perf_counter() - t0
    print(
        f"{'batch of 256 titles':<22} {'':>8} {'':>8} {elapsed:>9.2f}   ({len(titles) / elapsed:.0f} titles/s)"
    )


def calibrate(n: int) -> None:
    """VA_GAIN = std of the label-table placement / std of the head's predictions (per language)."""
    from engine.text.labels import to_valence_arousal
    from engine.text.models import TextModels

    models = TextModels.load()
    rng = random.Random(0)
    sets = {
        "en": ("emotion_en_goemotions28_dev.csv", "goemotions"),
        "ko": ("emotion_ko_kote.csv", "kote"),
    }
    print(
        f"{'head':<5} {'rows':>5} {'pred std V':>10} {'pred std A':>10} {'label std V':>11} {'label std A':>11} {'gain V':>7} {'gain A':>7}"
    )
    for lang, (file, scheme) in sets.items():
        rows = _rows(file)
        rng.shuffle(rows)
        rows = rows[:n]
        target = np.array([to_valence_arousal(r["labels"].split(";"), scheme) for r in rows])
        pred = models.valence_arousal([r["text"] for r in rows], [lang] * len(rows))
        ps, ts = pred.std(axis=0), target.std(axis=0)
        gain = ts / np.maximum(ps, 1e-6)
        print(
            f"{lang:<5} {len(rows):>5} {ps[0]:>10.3f} {ps[1]:>10.3f} {ts[0]:>11.3f} {ts[1]:>11.3f} {gain[0]:>7.2f} {gain[1]:>7.2f}"
        )
    # the analyser uses the gain the training script measured on training rows and stored with the heads
    stored = models.meta.get("va_gain")
    print(f"stored with the heads (text_heads.json va_gain, used by the analyser): {stored or 'none'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calibrate", action="store_true", help="print the VA_GAIN table instead")
    parser.add_argument("--rows", type=int, default=600, help="rows per language for --calibrate")
    args = parser.parse_args(argv)
    if args.calibrate:
        calibrate(args.rows)
    else:
        latency(args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
