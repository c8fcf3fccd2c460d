"""Loaders and deterministic held-out splits for the text-model training data (``../shared/data``).

Both ``scripts/train_text_models.py`` (training) and ``bench/text_quality.py`` (evaluation) import
these functions, so the bench scores exactly the rows that training never saw. Nothing here is used
at run time by the bot; it only reads CSV files.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Repo root is two levels above engine/text; shared data sits beside the repo root.
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"

SPLIT_SEED = 20251124
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Split:
    """Row indices of one data set: ``train`` for fitting, ``test`` held out for the bench."""

    train: np.ndarray
    test: np.ndarray


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def stable_split(
    keys: list[str],
    strata: list[str] | None = None,
    *,
    test_fraction: float = TEST_FRACTION,
    seed: int = SPLIT_SEED,
) -> Split:
    """Split rows into train/test deterministically.

    Each row's fate depends only on a hash of (seed, its key), so the split is the same on every
    machine and Python version, and independent of row order. With ``strata`` the test share is
    taken per stratum (sorted by hash), which keeps class balance exact for small data sets.
    """
    if strata is None:
        strata = [""] * len(keys)
    ranks = np.array(
        [
            int.from_bytes(hashlib.sha256(f"{seed}:{i}:{k}".encode()).digest()[:8], "big")
            for i, k in enumerate(keys)
        ],
        dtype=np.uint64,
    )
    test_mask = np.zeros(len(keys), dtype=bool)
    strata_arr = np.array(strata, dtype=object)
    for stratum in sorted(set(strata)):
        members = np.flatnonzero(strata_arr == stratum)
        order = members[np.argsort(ranks[members], kind="stable")]
        n_test = int(round(len(members) * test_fraction))
        test_mask[order[:n_test]] = True
    return Split(train=np.flatnonzero(~test_mask), test=np.flatnonzero(test_mask))


# --- the individual data sets -------------------------------------------------------------------


@dataclass
class BookTitles:
    titles: list[str]
    category_ids: np.ndarray  # 32-class book32 numbering
    split: Split


def load_book_titles(data_dir: Path = DEFAULT_DATA_DIR) -> BookTitles:
    rows = _read_csv(data_dir / "book_titles_train.csv")
    titles = [r["title"].strip() for r in rows]
    ids = np.array([int(r["category_id"]) for r in rows])
    split = stable_split(titles, [str(i) for i in ids])
    return BookTitles(titles, ids, split)


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: list[list[str]]  # multi-label, as in the files
    split: Split


def load_goemotions(data_dir: Path = DEFAULT_DATA_DIR, *, fine: bool = False) -> LabelledTexts:
    """GoEmotions train + dev; the dev file is the held-out split (``split.test``)."""
    stem = "emotion_en_goemotions28" if fine else "emotion_en"
    train = _read_csv(data_dir / f"{stem}_train.csv")
    dev = _read_csv(data_dir / f"{stem}_dev.csv")
    rows = train + dev
    split = Split(train=np.arange(len(train)), test=np.arange(len(train), len(rows)))
    return LabelledTexts([r["text"] for r in rows], [r["labels"].split(";") for r in rows], split)


def load_kote(data_dir: Path = DEFAULT_DATA_DIR) -> LabelledTexts:
    rows = _read_csv(data_dir / "emotion_ko_kote.csv")
    texts = [r["text"] for r in rows]
    return LabelledTexts(texts, [r["labels"].split(";") for r in rows], stable_split(texts))


@dataclass
class Sentiment:
    texts: list[str]
    positive: np.ndarray  # 0/1
    split: Split


def load_nsmc(data_dir: Path = DEFAULT_DATA_DIR) -> Sentiment:
    rows = _read_csv(data_dir / "sentiment_ko_nsmc.csv")
    texts = [r["text"] for r in rows]
    labels = np.array([int(r["label"]) for r in rows])
    return Sentiment(texts, labels, stable_split(texts, [str(v) for v in labels]))


@dataclass
class ValenceArousal:
    texts: list[str]
    va: np.ndarray  # (n, 2) in [-1, 1]
    split: Split


def load_emobank(data_dir: Path = DEFAULT_DATA_DIR) -> ValenceArousal:
    """EmoBank; its own ``dev`` rows are the held-out split (its ``test`` rows are not shipped)."""
    rows = _read_csv(data_dir / "va_en_emobank.csv")
    texts = [r["text"] for r in rows]
    va = np.array(
        [[(float(r["valence"]) - 3) / 2, (float(r["arousal"]) - 3) / 2] for r in rows], dtype=np.float32
    )
    is_dev = np.array([r["split"] == "dev" for r in rows])
    return ValenceArousal(texts, va, Split(train=np.flatnonzero(~is_dev), test=np.flatnonzero(is_dev)))


# --- document-level dev sets ---------------------------------------------------------------------
# Built only from held-out rows (GoEmotions dev, EmoBank dev, NSMC's 20 %, the poem csv's dev/test),
# each cut into two halves: "tune" (aggregation constants are chosen on it) and "report" (the bench's
# figures). Documents are drawn with a fixed seed, so every run scores the same texts.

DOC_PARTS = ("tune", "report")
DOC_SIZE = 8  # sentences per one-emotion / Korean document, as in issue 16


@dataclass
class Documents:
    """Texts made of several held-out rows, with one gold label (or number) per document."""

    name: str
    texts: list[str]
    gold: list  # str label, +1/-1 sign or float, per the set


def _part_rows(keys: list[str], part: str, strata: list[str] | None = None) -> np.ndarray:
    if part not in DOC_PARTS:
        raise ValueError(f"part must be one of {DOC_PARTS}, not {part!r}")
    halves = stable_split(keys, strata, test_fraction=0.5, seed=SPLIT_SEED + 16)
    return halves.train if part == "tune" else halves.test


def _with_stop(text: str) -> str:
    """Close a row with a full stop so that joined rows stay separate sentences."""
    text = " ".join(text.split())
    return text if text[-1:] in ".!?…\"'”’)" else text + "."


def _draw_documents(
    pools: dict, per_class: int, size: int, seed: int, joiner: str = " "
) -> tuple[list[str], list]:
    """``per_class`` documents per pool key, each ``size`` distinct rows of that pool."""
    rng = np.random.default_rng(seed)
    texts, gold = [], []
    for key in sorted(pools):
        pool = pools[key]
        for _ in range(per_class):
            picked = rng.choice(len(pool), size=min(size, len(pool)), replace=False)
            texts.append(joiner.join(pool[i] for i in picked))
            gold.append(key)
    return texts, gold


def emotion_pools(data_dir: Path = DEFAULT_DATA_DIR, part: str = "report") -> dict[str, list[str]]:
    """The part's single-label GoEmotions dev comments by Ekman label (closed with a full stop)."""
    goemo = load_goemotions(data_dir)
    rows = [int(i) for i in goemo.split.test if len(goemo.labels[i]) == 1]
    keys = [goemo.texts[i] for i in rows]
    mine = _part_rows(keys, part, [goemo.labels[i][0] for i in rows])
    pools: dict[str, list[str]] = {}
    for j in mine:
        i = rows[j]
        pools.setdefault(goemo.labels[i][0], []).append(_with_stop(goemo.texts[i]))
    return pools


def emotion_documents(
    data_dir: Path = DEFAULT_DATA_DIR,
    part: str = "report",
    per_class: int = 30,
    size: int = DOC_SIZE,
    emotional: int | None = None,
    draw: int = 0,
) -> Documents:
    """Documents of ``size`` GoEmotions dev comments that all carry one Ekman label (neutral too).

    ``draw``: 0 is the standard set; other numbers draw other documents from the same rows (to see
    how much a figure moves with the draw).

    With ``emotional=k`` only k comments carry the label and the rest are neutral ones, shuffled in
    (the document is still labelled with the emotion; neutral documents are then not drawn).
    """
    pools = emotion_pools(data_dir, part)
    if emotional is None:
        texts, gold = _draw_documents(pools, per_class, size, seed=SPLIT_SEED + 1 + 1000 * draw)
        return Documents("one-emotion documents", texts, gold)
    neutral = pools.pop("neutral")
    rng = np.random.default_rng(SPLIT_SEED + 4)
    texts, gold = [], []
    for label in sorted(pools):
        for _ in range(per_class):
            rows_ = [pools[label][k] for k in rng.choice(len(pools[label]), size=emotional, replace=False)]
            rows_ += [neutral[k] for k in rng.choice(len(neutral), size=size - emotional, replace=False)]
            texts.append(" ".join(rows_[k] for k in rng.permutation(len(rows_))))
            gold.append(label)
    return Documents(f"documents with {emotional} of {size} comments emotional", texts, gold)


def korean_documents(
    data_dir: Path = DEFAULT_DATA_DIR, part: str = "report", per_class: int = 60, size: int = DOC_SIZE
) -> Documents:
    """Documents of ``size`` held-out NSMC reviews of one polarity; gold is +1 / -1."""
    nsmc = load_nsmc(data_dir)
    rows = [int(i) for i in nsmc.split.test]
    mine = _part_rows([nsmc.texts[i] for i in rows], part, [str(nsmc.positive[i]) for i in rows])
    pools: dict[int, list[str]] = {}
    for j in mine:
        i = rows[j]
        pools.setdefault(1 if nsmc.positive[i] else -1, []).append(" ".join(nsmc.texts[i].split()))
    texts, gold = _draw_documents(pools, per_class, size, seed=SPLIT_SEED + 2)
    return Documents("Korean 8-review documents", texts, gold)


def korean_emotion_documents(
    data_dir: Path = DEFAULT_DATA_DIR, part: str = "report", per_class: int = 30, size: int = 4
) -> Documents:
    """Documents of ``size`` held-out KOTE comments (the 20 % no head trained on) of one Ekman label
    (``labels.to_ekman`` of their annotators' labels). Neutral has 2 such rows and is left out;
    fear has 23 in all, so its documents of one part share rows."""
    from engine.text.labels import to_ekman  # labels imports nothing from here; keeps this module light

    kote = load_kote(data_dir)
    rows = [int(i) for i in kote.split.test]
    gold = [to_ekman(kote.labels[i], "kote") for i in rows]
    mine = _part_rows([kote.texts[i] for i in rows], part, gold)
    pools: dict[str, list[str]] = {}
    for j in mine:
        if gold[j] != "neutral":
            pools.setdefault(gold[j], []).append(_with_stop(kote.texts[rows[j]]))
    texts, labels = _draw_documents(pools, per_class, size, seed=SPLIT_SEED + 5)
    return Documents(f"Korean {size}-comment one-emotion documents", texts, labels)


def load_poem_verses(data_dir: Path = DEFAULT_DATA_DIR) -> tuple[list[str], np.ndarray, list[str]]:
    """poem_sentiment_en.csv: verses, labels (-1 negative, 0 no impact, 1 positive, 2 mixed), splits."""
    rows = _read_csv(data_dir / "poem_sentiment_en.csv")
    return [r["text"] for r in rows], np.array([int(r["label"]) for r in rows]), [r["split"] for r in rows]


def poem_documents(
    data_dir: Path = DEFAULT_DATA_DIR,
    part: str = "report",
    per_class: int = 40,
    polar: int = 3,
    plain: int = 3,
) -> tuple[Documents, Documents]:
    """(single verses, stanzas) of negative (-1) and positive (+1) poem lines.

    The csv's published ``dev`` split is the tune part and ``test`` the report part; ``part="train"``
    draws from its ``train`` split (for the document head). A stanza is ``polar`` verses of one polarity and ``plain`` "no impact" verses
    of the same part, in random order, one per line: in a real poem the feeling sits in a few lines.
    """
    if part not in (*DOC_PARTS, "train"):
        raise ValueError(f"part must be one of {DOC_PARTS} or 'train', not {part!r}")
    texts, labels, splits = load_poem_verses(data_dir)
    wanted = {"tune": "dev", "report": "test", "train": "train"}[part]
    mine = [i for i, s in enumerate(splits) if s == wanted]
    verses = Documents("poem verses", [texts[i] for i in mine if labels[i] in (-1, 1)],
                       [int(labels[i]) for i in mine if labels[i] in (-1, 1)])  # fmt: skip
    neutral = [texts[i] for i in mine if labels[i] == 0]
    rng = np.random.default_rng(SPLIT_SEED + 3)
    stanzas = Documents("poem stanzas", [], [])
    for sign in (-1, 1):
        pool = [texts[i] for i in mine if labels[i] == sign]
        for _ in range(per_class):
            lines = [pool[k] for k in rng.choice(len(pool), size=polar, replace=False)]
            lines += [neutral[k] for k in rng.choice(len(neutral), size=plain, replace=False)]
            order = rng.permutation(len(lines))
            stanzas.texts.append("\n".join(lines[k] for k in order))
            stanzas.gold.append(sign)
    return verses, stanzas


def emobank_documents(
    data_dir: Path = DEFAULT_DATA_DIR, part: str = "report", size: int = DOC_SIZE
) -> Documents:
    """EmoBank dev sentences grouped by source document (the ``id`` before the first ``_`` names it),
    in text order, cut into windows of up to ``size`` sentences; gold is the window's mean valence.

    SemEval headlines are single sentences from many sources, so they are left out; windows of fewer
    than 3 sentences too. Source documents, not windows, are split into the two parts.
    """
    rows = _read_csv(data_dir / "va_en_emobank.csv")
    by_doc: dict[str, list[tuple[int, str, float]]] = {}
    for r in rows:
        if r["split"] != "dev":
            continue
        doc, *offsets = r["id"].split("_")
        if doc == "SemEval":
            continue
        start = int(offsets[0]) if offsets and offsets[0].isdigit() else 0
        by_doc.setdefault(doc, []).append((start, r["text"], (float(r["valence"]) - 3) / 2))
    names = sorted(by_doc)
    mine = {names[j] for j in _part_rows(names, part)}
    out = Documents("EmoBank documents", [], [])
    for name in names:
        if name not in mine:
            continue
        sentences = sorted(by_doc[name])
        for k in range(0, len(sentences), size):
            window = sentences[k : k + size]
            if len(window) >= 3:
                out.texts.append(" ".join(_with_stop(t) for _, t, _ in window))
                out.gold.append(float(np.mean([v for _, _, v in window])))
    return out
