"""Document-level quality of the text analyser on documents built from held-out rows (issue 16).

    .venv/bin/python bench/text_documents.py [--part report|tune] [--draws N] [--data-dir ../shared/data]

Runs the real ``Analyzer.analyze_batch`` (the product path) on the sets of
``engine.text.datasets`` — one-emotion documents (8 GoEmotions dev comments of one label), Korean
documents of 8 held-out NSMC reviews of one polarity, of 4 held-out KOTE comments of one Ekman
label, negative/positive poem verses and stanzas
(3 polar + 3 "no impact" verses) of the poem csv's test split, EmoBank dev sentences grouped by
source document — once with the trained document head and once without it (salience-weighted
mean of the sentence heads), and prints one table. ``bench/text_quality.py`` prints it too.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from engine.text import datasets as D  # noqa: E402
from engine.text.labels import EKMAN_LABELS  # noqa: E402

SAD_FAMILY = ("sadness", "fear")
NEGATIVE_LABELS = ("anger", "disgust", "fear", "sadness")


def balanced_sign_accuracy(gold: list[int], valence: np.ndarray) -> float:
    """Mean over the two gold signs of the share whose valence has that sign (0 counts as +)."""
    gold_a = np.asarray(gold)
    pred = np.where(valence < 0, -1, 1)
    return float(np.mean([np.mean(pred[gold_a == g] == g) for g in (-1, 1)]))


def _scores(analyzer, texts: list[str], paces: list[tuple[str, int]] | None = None):
    """valence, arousal, labels, minor flags; (label, BPM) of each document appended to ``paces``."""
    results = analyzer.analyze_batch(texts)
    valence = np.array([r.valence for r in results])
    arousal = np.array([r.arousal for r in results])
    minor = np.array([r.mode == "minor" for r in results])
    if paces is not None:
        paces.extend((r.emotion["label"], r.bpm) for r in results)
    return valence, arousal, [r.emotion["label"] for r in results], minor


def one_emotion_rows(
    analyzer, data_dir: Path, part: str, draw: int = 0, paces: list | None = None
) -> list[tuple[str, str, int]]:
    """Per-class and overall accuracy on the one-emotion documents (``draw`` 0: the standard set)."""
    emotion = D.emotion_documents(data_dir, part=part, draw=draw)
    _, _, labels, _ = _scores(analyzer, emotion.texts, paces)
    gold_e, pred_e = np.asarray(emotion.gold), np.asarray(labels)
    per_class = {c: float(np.mean(pred_e[gold_e == c] == c)) for c in EKMAN_LABELS}
    name = "one-emotion documents" + (f" (draw {draw})" if draw else "")
    return [
        (f"{name}: accuracy per class (" + " ".join(f"{c[:4]} {v:.2f}" for c, v in per_class.items()) + "), min",
         f"{min(per_class.values()):.3f}", len(gold_e)),
        (f"{name}: accuracy", f"{np.mean(pred_e == gold_e):.3f}", len(gold_e)),
    ]  # fmt: skip


def document_rows(
    analyzer, data_dir: Path, part: str = "report", draws: int = 0
) -> list[tuple[str, str, int]]:
    """(metric, value, documents) rows for one analyser configuration."""
    rows: list[tuple[str, str, int]] = []
    paces: list[tuple[str, int]] = []  # (label, BPM) of every English document below
    verses, stanzas = D.poem_documents(data_dir, part=part)
    for docs in (verses, stanzas):
        valence, _, labels, minor = _scores(analyzer, docs.texts, paces)
        gold = np.asarray(docs.gold)
        n = len(gold)
        rows.append(
            (
                f"{docs.name}: valence sign, balanced accuracy",
                f"{balanced_sign_accuracy(docs.gold, valence):.3f}",
                n,
            )
        )
        mode = float(np.mean([np.mean(minor[gold == g] == (g < 0)) for g in (-1, 1)]))
        rows.append((f"{docs.name}: minor for negative / major for positive, balanced", f"{mode:.3f}", n))
        sad = np.isin(np.asarray(labels)[gold < 0], SAD_FAMILY)
        rows.append(
            (
                f"{docs.name}: negative ones labelled sadness/fear",
                f"{np.mean(sad):.3f}",
                int(np.sum(gold < 0)),
            )
        )
        rows.append(
            (
                f"{docs.name}: positive ones with negative valence",
                f"{np.mean(valence[gold > 0] < 0):.3f}",
                int(np.sum(gold > 0)),
            )
        )

    rows += one_emotion_rows(analyzer, data_dir, part, paces=paces)

    sad_bpm = [bpm for label, bpm in paces if label == "sadness"]
    rows.append(("English documents read as sadness: Slow (<= 84 BPM)", f"{np.mean(np.array(sad_bpm) <= 84):.3f}", len(sad_bpm)))  # fmt: skip
    lively = [bpm for label, bpm in paces if label in ("joy", "anger", "fear")]
    rows.append(("English documents read as joy/anger/fear: Fast (>= 115 BPM)", f"{np.mean(np.array(lively) >= 115):.3f}", len(lively)))  # fmt: skip

    korean = D.korean_documents(data_dir, part=part)
    valence, _, _, _ = _scores(analyzer, korean.texts)
    rows.append(("Korean 8-review documents: valence sign, balanced accuracy", f"{balanced_sign_accuracy(korean.gold, valence):.3f}", len(korean.gold)))  # fmt: skip

    kote = D.korean_emotion_documents(data_dir, part=part)
    _, _, labels, _ = _scores(analyzer, kote.texts)
    gold_k, pred_k = np.asarray(kote.gold), np.asarray(labels)
    per_class = {c: float(np.mean(pred_k[gold_k == c] == c)) for c in sorted(set(kote.gold))}
    rows.append(
        ("Korean 4-comment one-emotion documents (KOTE): accuracy per class (" + " ".join(f"{c[:4]} {v:.2f}" for c, v in per_class.items()) + "), mean",
         f"{np.mean(list(per_class.values())):.3f}", len(gold_k))
    )  # fmt: skip

    bank = D.emobank_documents(data_dir, part=part)
    valence, _, _, _ = _scores(analyzer, bank.texts)
    gold_b = np.asarray(bank.gold)
    rows.append(("EmoBank documents: valence Pearson r vs mean gold", f"{np.corrcoef(valence, gold_b)[0, 1]:.3f}", len(gold_b)))  # fmt: skip
    clear = np.abs(gold_b) >= 0.05
    sign = float(np.mean(np.sign(valence[clear]) == np.sign(gold_b[clear])))
    rows.append(
        ("EmoBank documents with |gold| ≥ 0.05: valence sign accuracy", f"{sign:.3f}", int(clear.sum()))
    )
    for draw in range(1, draws + 1):  # other documents from the same rows: how much the figure moves
        rows += one_emotion_rows(analyzer, data_dir, part, draw)
    return rows


def document_table(data_dir: Path = D.DEFAULT_DATA_DIR, part: str = "report", draws: int = 0) -> str:
    """Markdown table: each metric without and with the document head."""
    from engine.text.analyzer import Analyzer

    analyzer = Analyzer.load()
    head = analyzer.document_head
    start = time.perf_counter()
    with_head = document_rows(analyzer, data_dir, part, draws)
    analyzer.document_head = None
    try:
        without = document_rows(analyzer, data_dir, part, draws)
    finally:
        analyzer.document_head = head
    seconds = time.perf_counter() - start
    width = max(len(m) for m, _, _ in with_head)
    lines = [
        f"Document level ({part} part, held-out rows only; {seconds:.0f} s for both columns)",
        f"| {'metric':<{width}} | no head | document head | docs |",
        f"|{'-' * (width + 2)}|--------:|--------------:|-----:|",
    ]
    for (metric, value, n), (_, plain, _) in zip(with_head, without, strict=True):
        lines.append(f"| {metric:<{width}} | {plain} | {value} | {n} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=D.DEFAULT_DATA_DIR)
    parser.add_argument("--part", choices=D.DOC_PARTS, default="report")
    parser.add_argument(
        "--draws", type=int, default=0, help="also score N other draws of the one-emotion documents"
    )
    args = parser.parse_args(argv)
    print(document_table(args.data_dir, args.part, args.draws))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
