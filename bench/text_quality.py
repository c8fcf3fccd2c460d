"""Quality and speed of the text models on the held-out splits of ../shared/data.

    .venv/bin/python bench/text_quality.py [--data-dir ../shared/data] [--nsmc-limit N]

Uses the committed heads in data/models through the public TextModels API (the same code path as
the bot) and scores only rows that training never saw (engine.text.datasets splits):
book titles 20 % per class, GoEmotions dev, KOTE 20 %, NSMC 20 %, EmoBank dev. Then the
document-level table of bench/text_documents.py (issue 16: whole documents through the analyser,
built from the "report" halves of held-out rows), with and without the document head.
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
from engine.text.labels import EKMAN_LABELS, EKMAN_VA, GOEMOTIONS_28, KOTE_44, to_ekman, to_valence_arousal  # noqa: E402
from engine.text.models import TextModels  # noqa: E402


def accuracy(gold: list[str] | np.ndarray, pred: list[str] | np.ndarray) -> float:
    return float(np.mean(np.asarray(gold) == np.asarray(pred)))


def macro_f1(gold: list[str], pred: list[str], labels: tuple[str, ...] = EKMAN_LABELS) -> float:
    """Macro-F1 over the labels that occur in gold (labels absent from gold are skipped)."""
    gold_a, pred_a = np.asarray(gold), np.asarray(pred)
    scores = []
    for label in labels:
        tp = np.sum((gold_a == label) & (pred_a == label))
        fp = np.sum((gold_a != label) & (pred_a == label))
        fn = np.sum((gold_a == label) & (pred_a != label))
        if tp + fn == 0:
            continue
        scores.append(2 * tp / max(2 * tp + fp + fn, 1))
    return float(np.mean(scores))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=D.DEFAULT_DATA_DIR)
    parser.add_argument("--nsmc-limit", type=int, default=0, help="score only the first N held-out reviews")
    parser.add_argument("--skip-analyzer", action="store_true")
    parser.add_argument("--skip-documents", action="store_true", help="no document-level table")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    models = TextModels.load()
    load_s = time.perf_counter() - start
    rows: list[tuple[str, str, str]] = []  # (metric, value, held-out rows)

    # Topic from titles (30 classes present in the data; 32 possible outputs).
    books = D.load_book_titles(args.data_dir)
    titles = [books.titles[i] for i in books.split.test]
    gold_topic = books.category_ids[books.split.test]
    start = time.perf_counter()
    topics = models.topic(titles)
    titles_per_s = len(titles) / (time.perf_counter() - start)
    pred_topic = np.array([t.id for t in topics])
    top3 = np.mean([g in [i for i, _, _ in t.top3] for g, t in zip(gold_topic, topics, strict=True)])
    rows.append(
        (
            "topic accuracy (title only, 30 classes)",
            f"{accuracy(gold_topic, pred_topic):.3f}",
            str(len(titles)),
        )
    )
    rows.append(("topic top-3 accuracy", f"{top3:.3f}", str(len(titles))))
    rows.append(("topic predicted as 30/31 (no data)", f"{np.mean(pred_topic >= 30):.3f}", str(len(titles))))

    # English emotion: GoEmotions-Ekman dev, single-label rows.
    goemo = D.load_goemotions(args.data_dir)
    dev = [i for i in goemo.split.test if len(goemo.labels[i]) == 1]
    en_texts = [goemo.texts[i] for i in dev]
    en_gold = [goemo.labels[i][0] for i in dev]
    en_pred = [r.label for r in models.emotion(en_texts, ["en"] * len(en_texts))]
    rows.append(
        (
            "en emotion accuracy (GoEmotions-Ekman dev, single-label)",
            f"{accuracy(en_gold, en_pred):.3f}",
            str(len(dev)),
        )
    )
    rows.append(("en emotion macro-F1", f"{macro_f1(en_gold, en_pred):.3f}", str(len(dev))))

    # Korean emotion: KOTE held-out, 44 labels mapped to 7 by the reviewed table.
    kote = D.load_kote(args.data_dir)
    ko_texts = [kote.texts[i] for i in kote.split.test]
    ko_gold = [to_ekman(kote.labels[i], "kote") for i in kote.split.test]
    ko_res = models.emotion(ko_texts, ["ko"] * len(ko_texts))
    ko_pred = [r.label for r in ko_res]
    # KOTE rows carry the union of five annotators' labels (7.9 on average), so also report how
    # often the prediction is one of the Ekman labels that some annotator chose.
    ko_any = [{KOTE_44[x][0] for x in kote.labels[i]} for i in kote.split.test]
    rows.append(
        (
            "ko emotion accuracy (KOTE held-out, mapped to 7)",
            f"{accuracy(ko_gold, ko_pred):.3f}",
            str(len(ko_texts)),
        )
    )
    rows.append(("ko emotion macro-F1", f"{macro_f1(ko_gold, ko_pred):.3f}", str(len(ko_texts))))
    ko_lenient = np.mean([p in labels for p, labels in zip(ko_pred, ko_any, strict=True)])
    rows.append(("ko emotion: prediction among annotators' labels", f"{ko_lenient:.3f}", str(len(ko_texts))))

    ko_va = models.valence_arousal(ko_texts, ["ko"] * len(ko_texts))
    table_va = np.array([to_valence_arousal(kote.labels[i], "kote") for i in kote.split.test])
    rows.append(
        (
            "ko valence r vs KOTE label-table valence",
            f"{pearson(ko_va[:, 0], table_va[:, 0]):.3f}",
            str(len(ko_texts)),
        )
    )
    rows.append(
        (
            "ko arousal r vs KOTE label-table arousal",
            f"{pearson(ko_va[:, 1], table_va[:, 1]):.3f}",
            str(len(ko_texts)),
        )
    )

    # Korean sentiment: NSMC-style held-out reviews; the sentiment head and the sign of valence.
    nsmc = D.load_nsmc(args.data_dir)
    test_idx = nsmc.split.test[: args.nsmc_limit] if args.nsmc_limit else nsmc.split.test
    ns_texts = [nsmc.texts[i] for i in test_idx]
    ns_gold = nsmc.positive[test_idx]
    ns_prob = models.sentiment(ns_texts, ["ko"] * len(ns_texts))
    ns_va = models.valence_arousal(ns_texts, ["ko"] * len(ns_texts))
    rows.append(
        (
            "ko sentiment accuracy (NSMC held-out, sentiment head)",
            f"{accuracy(ns_gold, ns_prob > 0.5):.3f}",
            str(len(ns_texts)),
        )
    )
    rows.append(
        (
            "ko sentiment accuracy from sign of valence",
            f"{accuracy(ns_gold, ns_va[:, 0] > 0):.3f}",
            str(len(ns_texts)),
        )
    )

    # Valence/arousal: EmoBank dev.
    bank = D.load_emobank(args.data_dir)
    bank_texts = [bank.texts[i] for i in bank.split.test]
    bank_pred = models.valence_arousal(bank_texts, ["en"] * len(bank_texts))
    gold_va = bank.va[bank.split.test]
    rows.append(
        (
            "valence Pearson r (EmoBank dev)",
            f"{pearson(bank_pred[:, 0], gold_va[:, 0]):.3f}",
            str(len(bank_texts)),
        )
    )
    rows.append(
        (
            "arousal Pearson r (EmoBank dev)",
            f"{pearson(bank_pred[:, 1], gold_va[:, 1]):.3f}",
            str(len(bank_texts)),
        )
    )

    rows.append(
        ("titles per second (batch of held-out titles, topic)", f"{titles_per_s:.0f}", str(len(titles)))
    )
    rows.append(("model load (s)", f"{load_s:.2f}", "-"))

    if not args.skip_analyzer:
        rows.extend(analyzer_latency())

    width = max(len(r[0]) for r in rows)
    print(f"| {'metric':<{width}} | value | rows |")
    print(f"|{'-' * (width + 2)}|------:|-----:|")
    for metric, value, n in rows:
        print(f"| {metric:<{width}} | {value} | {n} |")

    if not args.skip_documents:
        from text_documents import document_table  # bench/text_documents.py, beside this file

        print("\n" + document_table(args.data_dir, "report"))

    print_label_va_check(models, args.data_dir)
    return 0


def print_label_va_check(models: TextModels, data_dir: Path) -> None:
    """Do the label → valence/arousal tables agree with what the EmoBank regressor predicts?

    For every GoEmotions dev comment with one fine label, predict V/A with the English regressor
    (trained on EmoBank only, never on these labels) and average per gold label.
    """
    fine = D.load_goemotions(data_dir, fine=True)
    dev = [i for i in fine.split.test if len(fine.labels[i]) == 1]
    texts = [fine.texts[i] for i in dev]
    gold = [fine.labels[i][0] for i in dev]
    va = models.valence_arousal(texts, ["en"] * len(texts))
    print(
        "\nLabel → valence/arousal check (GoEmotions dev, single-label rows; predicted by the EmoBank regressor)"
    )
    print("| label | ekman | n | table V | pred V | table A | pred A |")
    print("|---|---|---:|---:|---:|---:|---:|")
    table_v, pred_v, table_a, pred_a = [], [], [], []
    for label, (ekman, tv, ta) in sorted(GOEMOTIONS_28.items(), key=lambda kv: kv[1][1]):
        mask = np.array([g == label for g in gold])
        if mask.sum() < 5:
            continue
        pv, pa = va[mask].mean(axis=0)
        table_v.append(tv), pred_v.append(pv), table_a.append(ta), pred_a.append(pa)
        print(f"| {label} | {ekman} | {mask.sum()} | {tv:+.2f} | {pv:+.2f} | {ta:+.2f} | {pa:+.2f} |")
    print(
        f"Across labels: Pearson r(table V, mean pred V) = {pearson(np.array(table_v), np.array(pred_v)):.3f}; "
        f"r(table A, mean pred A) = {pearson(np.array(table_a), np.array(pred_a)):.3f}"
    )
    print("\n| Ekman label | table V | mean pred V | table A | mean pred A |")
    print("|---|---:|---:|---:|---:|")
    ekman_gold = np.array([GOEMOTIONS_28[g][0] for g in gold])
    for label in EKMAN_LABELS:
        mask = ekman_gold == label
        pv, pa = va[mask].mean(axis=0)
        tv, ta = EKMAN_VA[label]
        print(f"| {label} | {tv:+.2f} | {pv:+.2f} | {ta:+.2f} | {pa:+.2f} |")


def analyzer_latency() -> list[tuple[str, str, str]]:
    """Latency of analysing a 100 KB English document, if D1's analyser exists."""
    try:
        from engine.text.analyzer import Analyzer
    except ImportError as err:
        return [("100 KB document analysis (s)", f"n/a ({err.name} missing)", "-")]
    paragraph = (
        "The old lighthouse keeper climbed the stairs every evening, counting the steps as his father had. "
        "Storms came and went, and the town below grew quiet as the fishing boats stopped returning. "
        "One winter a letter arrived from the city, and with it the news he had feared for years. "
    )
    text = (paragraph * (100_000 // len(paragraph) + 1))[:100_000]
    analyzer = Analyzer.load()
    analyzer.analyze(text[:2000])  # warm-up (lazy resources)
    start = time.perf_counter()
    analyzer.analyze(text)
    return [("100 KB document analysis after load (s)", f"{time.perf_counter() - start:.2f}", "1")]


if __name__ == "__main__":
    raise SystemExit(main())
