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
