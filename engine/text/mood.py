"""Document mood: pools sentence-level emotion and valence/arousal into one reading of the whole text.

Sentence heads read Reddit comments and EmoBank sentences; a story or a poem carries its feeling in a
few lines among many neutral ones, and often shows it (rain, an empty room) rather than naming it.
So, per document:

1. every sentence gets a salience weight ``SALIENCE_FLOOR + (1 − p_neutral)²``: the sentences that
   carry a feeling count most, narrative ones still a little;
2. the document head (``data/models/document_head.npz``, trained by
   ``scripts/train_document_head.py`` on documents built from held-out and unused rows) reads
   pooled features — the weighted and the plain mean and the maximum of the sentence
   probabilities, the cosine of the document and of its closest sentence to each label's
   prototype scenes (``labels.EMOTION_DESCRIPTIONS``), plain and times how literary the text
   reads, and the pooled valence/arousal — and gives the document's seven emotion probabilities;
   its neutral score is raised as far as the text reads like an online comment (see
   ``DocumentHead.probabilities``). Without the head file the weighted mean stands in;
3. valence/arousal: the weighted mean of the regression heads, stretched onto the mood plane and
   blended with the point the document's emotion probabilities imply (``to_mood_plane``);
4. Korean only: as far as the text reads like an online comment rather than prose (1 − the
   register head's literary share), its valence leans toward the review-sentiment head (NSMC):
   in reviews the sentiment head reads praise and complaint best, while in a story "I cried" is
   grief, not praise (``REVIEW_SENTIMENT_SHARE``);
5. the sentences that weigh most for the chosen feeling are kept to quote in the reasons.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from engine.text.labels import EKMAN_LABELS, EKMAN_VA, EMOTION_DESCRIPTIONS

MODEL_FILES_DIR = Path(__file__).resolve().parents[2] / "data" / "models"
DOC_HEAD_FILE = "document_head.npz"
DOC_META_FILE = "document_head.json"
SALIENCE_FLOOR = 0.1  # weight of a sentence the heads read as fully neutral
SALIENCE_POWER = 2.0
PROTOTYPE_SCALE = 5.0  # cosines are small (±0.3); scaled to the range of the log-probabilities
QUOTE_CHARS = 70  # a quoted sentence in the reasons is cut to this length
QUOTES = 2
HEAD_VA_SHARE = 0.5  # the emotions' point on the plane: head and pooled probabilities, half each
# Korean valence: share of the review-sentiment head at a fully comment-like register (times
# 1 − literary share). On the "tune" Korean review documents 0 / 0.3 / 0.5 / 0.7 / 1.0 gave valence
# sign 0.783 / 0.867 / 0.908 / 0.942 / 0.983; 0.7 keeps the sad Korean story's valence at −0.12
# (1.0: −0.09) — stories read 0.6–0.85 literary, reviews 0.12–0.69 (median 0.41).
REVIEW_SENTIMENT_SHARE = 0.7
REVIEW_SENTIMENT_LANGUAGES = ("ko",)
# where document_features puts the cosines of the (salience-weighted) document to the prototypes,
# and the literary share
PROTOTYPE_COLUMNS = slice(3 * len(EKMAN_LABELS), 4 * len(EKMAN_LABELS))
LITERARY_COLUMN = 5 * len(EKMAN_LABELS) + 2

# Regression head output → mood-plane scale, per language head: std of the labels' circumplex
# placement / std of the head's predictions. scripts/train_text_models.py measures it on the
# training rows (GoEmotions → en/other, KOTE → ko) and stores it with the heads ("va_gain" in
# text_heads.json), so it cannot go stale; these values are only the fallback for heads trained
# before that. `python bench/text_analyzer.py --calibrate` re-measures it on GoEmotions dev / KOTE.
VA_GAIN: dict[str, tuple[float, float]] = {"en": (3.2, 3.1), "other": (3.2, 3.1), "ko": (1.5, 1.8)}
VA_BLEND = 0.5  # share of the (stretched) regression heads; the rest is the emotion labels' centre
_NEUTRAL = EKMAN_LABELS.index("neutral")
_EKMAN_VA = np.array([EKMAN_VA[label] for label in EKMAN_LABELS], dtype=np.float32)


@dataclass
class DocumentHead:
    """Linear softmax over pooled document features (see ``document_features``)."""

    prototypes: np.ndarray  # (7, d) unit vectors, EKMAN_LABELS order
    register: np.ndarray  # (d + 1,) logistic weights + bias: is a sentence literary prose/verse?
    weight: np.ndarray  # (7, n_features)
    bias: np.ndarray  # (7,)
    meta: dict[str, Any] = field(default_factory=dict)

    def share(self, language: str) -> float:
        """How much the head's reading counts for a language (the weighted mean is the rest).

        Trained on English documents; ``meta["language_share"]`` gives other languages' share.
        """
        if language in self.meta.get("languages", ["en"]):
            return 1.0
        return float(self.meta.get("language_share", {}).get(language, 0.0))

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Softmax of the linear scores; the neutral score is raised by ``meta["comment_neutral_offset"]``
        × (1 − literary share): the sentence heads read calm but argumentative online comments as
        mild anger, while in stories and poems (literary share near 1) it is the other way round —
        narrative lines read neutral and the feeling is shown — so the raise fades with the register.
        """
        z = features @ self.weight.T + self.bias
        offset = float(self.meta.get("comment_neutral_offset", 0.0))
        if offset:
            z = z.copy()
            z[..., _NEUTRAL] += offset * (1.0 - features[..., LITERARY_COLUMN])
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)


@dataclass
class DocumentMood:
    """The document's emotion scores and label, its place on the mood plane, and why."""

    scores: dict[str, float]
    label: str
    valence: float
    arousal: float
    model_va: tuple[float, float]  # pooled regression output, before stretching and blending
    quotes: list[str]  # the sentences that carried the chosen feeling, shortened
    # Korean: (share of the review-sentiment head in the valence, its salience-weighted P(positive))
    review_sentiment: tuple[float, float] | None = None


@lru_cache(maxsize=4)
def load_document_head(model_dir: str) -> DocumentHead | None:
    """The trained document head in ``model_dir``, or None when it was never trained there."""
    folder = Path(model_dir)
    arrays_path, meta_path = folder / DOC_HEAD_FILE, folder / DOC_META_FILE
    if not arrays_path.exists() or not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    with np.load(arrays_path, allow_pickle=False) as npz:
        return DocumentHead(
            prototypes=npz["prototypes"].astype(np.float32),
            register=npz["register"].astype(np.float32),
            weight=npz["weight"].astype(np.float32),
            bias=npz["bias"].astype(np.float32),
            meta=meta,
        )


def descriptions_digest() -> str:
    """Short hash of labels.EMOTION_DESCRIPTIONS: the stored prototypes were embedded from it."""
    text = json.dumps({k: EMOTION_DESCRIPTIONS[k] for k in EKMAN_LABELS}, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def salience_weights(emotion_probs: np.ndarray) -> np.ndarray:
    """Per-sentence weights summing to 1: emotional sentences count most (see module docstring)."""
    weights = SALIENCE_FLOOR + (1.0 - emotion_probs[:, _NEUTRAL]) ** SALIENCE_POWER
    return weights / weights.sum()


def stored_va_gain(models: Any) -> dict[str, tuple[float, float]]:
    """VA_GAIN as calibrated for the loaded heads (``meta["va_gain"]``), else the fallback table."""
    gains = dict(VA_GAIN)
    meta = getattr(models, "meta", None)
    stored = meta.get("va_gain", {}) if isinstance(meta, dict) else {}
    for language, pair in stored.items():
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            gains[language] = (float(pair[0]), float(pair[1]))
    return gains


def to_mood_plane(
    model_valence: float,
    model_arousal: float,
    emotion_scores: dict[str, float],
    language: str,
    *,
    gain: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """Place a text on the catalogue's valence/arousal plane (where the moods sit).

    The regression heads learnt EmoBank's scale, where almost every sentence sits within ±0.35 of
    neutral, while the moods (and the emotion labels' centres in ``labels.EKMAN_VA``) use the whole
    circumplex. So: stretch the regression output by the measured scale ratio (``gain``, by default
    VA_GAIN), and average it with the point the emotion probabilities imply. Blending the two
    estimators also measured better than either alone on GoEmotions/KOTE valence.
    """
    gain_v, gain_a = gain or VA_GAIN.get(language, VA_GAIN["en"])
    emo_v = sum(p * EKMAN_VA[label][0] for label, p in emotion_scores.items() if label in EKMAN_VA)
    emo_a = sum(p * EKMAN_VA[label][1] for label, p in emotion_scores.items() if label in EKMAN_VA)
    valence = VA_BLEND * float(np.clip(gain_v * model_valence, -1, 1)) + (1 - VA_BLEND) * emo_v
    arousal = VA_BLEND * float(np.clip(gain_a * model_arousal, -1, 1)) + (1 - VA_BLEND) * emo_a
    return float(np.clip(valence, -1, 1)), float(np.clip(arousal, -1, 1))


def emotion_label(scores: dict[str, float]) -> str:
    """The most likely label; "neutral" only wins when no emotion is close to it."""
    best = max(scores, key=scores.get)
    if best != "neutral":
        return best
    emotional = {k: v for k, v in scores.items() if k != "neutral"}
    if emotional:
        runner = max(emotional, key=emotional.get)
        if emotional[runner] >= 0.75 * scores["neutral"]:
            return runner
    return best


def literary_share(embeddings: np.ndarray, register: np.ndarray) -> float:
    """Mean probability that a sentence reads like literary prose or verse (EmoBank fiction,
    letters, essays, news; Gutenberg poems) rather than an online comment (GoEmotions)."""
    logits = embeddings @ register[:-1] + register[-1]
    return float(np.mean(1.0 / (1.0 + np.exp(-logits))))


def document_features(
    emotion_probs: np.ndarray,
    va: np.ndarray,
    embeddings: np.ndarray,
    prototypes: np.ndarray,
    register: np.ndarray,
    language: str,
    gain: tuple[float, float] | None,
) -> np.ndarray:
    """The document head's 52 inputs for one document (rows = its sentences).

    The prototype cosines enter twice, once plain and once times the literary share: the heads
    under the pooled probabilities learnt from comments, and in stories and poems the prototypes
    carry more of the feeling (the head learns how much from the poem stanzas it is trained on).
    """
    weights = salience_weights(emotion_probs)
    pooled = weights @ emotion_probs
    vector = weights @ embeddings
    vector = vector / max(float(np.linalg.norm(vector)), 1e-9)
    model_v, model_a = (weights @ va).tolist()
    valence, arousal = to_mood_plane(
        model_v, model_a, dict(zip(EKMAN_LABELS, pooled.tolist(), strict=True)), language, gain=gain
    )
    similarity = PROTOTYPE_SCALE * np.concatenate(
        [prototypes @ vector, (embeddings @ prototypes.T).max(axis=0)]
    )
    literary = literary_share(embeddings, register)
    return np.concatenate(
        [
            np.log(pooled + 1e-4),
            np.log(emotion_probs.mean(axis=0) + 1e-4),
            emotion_probs.max(axis=0),
            similarity,
            [valence, arousal, literary],
            literary * similarity,
        ]
    ).astype(np.float32)


def read_mood(
    sentences: Sequence[str],
    emotion_probs: np.ndarray,
    va: np.ndarray,
    embeddings: np.ndarray,
    language: str,
    *,
    gain: tuple[float, float] | None = None,
    head: DocumentHead | None = None,
    sentiment: np.ndarray | None = None,
) -> DocumentMood:
    """One document's mood from its sentences' head outputs (rows in document order).

    ``sentiment``: the review-sentiment head's P(positive) per sentence, used for the languages in
    REVIEW_SENTIMENT_LANGUAGES (step 4 of the module docstring); needs the head's register.
    """
    weights = salience_weights(emotion_probs)
    pooled = probs = weights @ emotion_probs
    share = head.share(language) if head is not None else 0.0
    if head is not None and share > 0.0:
        features = document_features(
            emotion_probs, va, embeddings, head.prototypes, head.register, language, gain
        )
        probs = share * head.probabilities(features) + (1.0 - share) * probs
        label = EKMAN_LABELS[int(np.argmax(probs))]  # the head is trained for the argmax, neutral too
    else:
        label = emotion_label(dict(zip(EKMAN_LABELS, probs.tolist(), strict=True)))
    scores = {label_: float(p) for label_, p in zip(EKMAN_LABELS, probs, strict=True)}
    model_v, model_a = (float(x) for x in np.clip(weights @ va, -1.0, 1.0))
    # the point on the plane implied by the emotions: from the head's and the pooled probabilities
    implied = dict(
        zip(EKMAN_LABELS, (HEAD_VA_SHARE * probs + (1 - HEAD_VA_SHARE) * pooled).tolist(), strict=True)
    )
    valence, arousal = to_mood_plane(model_v, model_a, implied, language, gain=gain)
    review = None
    if sentiment is not None and head is not None and language in REVIEW_SENTIMENT_LANGUAGES:
        share_r = REVIEW_SENTIMENT_SHARE * (1.0 - literary_share(embeddings, head.register))
        positive = float(weights @ np.asarray(sentiment, dtype=np.float32))
        valence = float(np.clip((1.0 - share_r) * valence + share_r * (2.0 * positive - 1.0), -1.0, 1.0))
        review = (share_r, positive)
    return DocumentMood(
        scores=scores,
        label=label,
        valence=valence,
        arousal=arousal,
        model_va=(model_v, model_a),
        quotes=carrying_sentences(sentences, emotion_probs, va, weights, label),
        review_sentiment=review,
    )


def carrying_sentences(
    sentences: Sequence[str],
    emotion_probs: np.ndarray,
    va: np.ndarray,
    weights: np.ndarray,
    label: str,
    k: int = QUOTES,
) -> list[str]:
    """The ``k`` sentences that weigh most for ``label`` (in document order), shortened to quote.

    A sentence's share: its salience weight × its probability of the label; for "neutral" (nothing
    stands out) the sentences with the strongest valence, either way, are quoted instead.
    """
    if not len(sentences):
        return []
    column = EKMAN_LABELS.index(label)
    if column == _NEUTRAL:
        share = np.abs(va[:, 0])
    else:
        share = weights * emotion_probs[:, column]
    order = sorted(np.argsort(-share, kind="stable")[:k].tolist())
    return [shorten(sentences[i]) for i in order]


def shorten(sentence: str, limit: int = QUOTE_CHARS) -> str:
    """One line, at most ``limit`` characters, cut at a word boundary with an ellipsis."""
    text = " ".join(sentence.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(",;:–- ") + "…"
