"""Document → analysis → MusicSpec: the text mode of TexTuneS.

``Analyzer.load()`` loads the text models once; ``analyze(text)`` returns an ``Analysis`` with the
language, a 3–5 sentence summary, the book topic (+ top 3), the emotion (+ scores), valence and
arousal, and the music choices they lead to — each with a human-readable reason:

* topic → its five genres in the catalogue; we keep the 2–3 that best fit the text's energy (and
  borrow the runner-up topic's lead genre when that topic is nearly as likely);
* the document's emotion and valence/arousal come from its sentences (``engine.text.mood``: salience
  weighting and the document head), with the sentences that carried the feeling quoted;
* valence/arousal → the nearest moods on the catalogue's mood plane; arousal → BPM
  (``60 + (a + 1) / 2 · 80``: calm texts ≈ 60–80 BPM, excited ones ≈ 120–140), pulled toward the
  energy of the mood that names the emotion (Sad, Happy, …) by its share of the non-neutral
  probability;
  valence < 0 → minor.

The user's explicit choices (tempo, duration, keywords, instruments) always win over the analysis.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import existing_file
from engine.spec import MusicSpec
from engine.text.ingest import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CHARS,
    Document,
    FileTooLarge,
    document_from_text,
    read_document,
)
from engine.text.labels import EKMAN_VA
from engine.text.language import detect_language, language_name
from engine.text.mood import (  # noqa: F401  (VA_GAIN, to_mood_plane: re-exported for callers)
    REVIEW_SENTIMENT_LANGUAGES,
    VA_BLEND,
    VA_GAIN,
    DocumentMood,
    load_document_head,
    read_mood,
    stored_va_gain,
    to_mood_plane,
)
from engine.text.summary import MAX_SENTENCES, prepare_sentences, summarize_candidates

# BPM from arousal: a in [-1, 1] → 60..140 BPM
BPM_LOW, BPM_HIGH = 60, 140
# how much a genre's energy mismatch with the text counts against its topic prior (see _score_topic_genres)
ENERGY_FIT = 0.5
# Below this top-topic probability the topic is a guess, so its genre table is not used:
# GENERAL_GENRES picked by the text's energy and valence stand in, and the reasons say so. Measured
# on 600 titles held out of the topic head's training rows: top-1 right 31 % of the time below 0.20
# (49 % of titles; 0.15–0.20: 39 %) and 72 % above it (0.20–0.25: 61 %).
TOPIC_MIN_CONFIDENCE = 0.2
# Genres that suit most texts, with a rough valence lean (-1 dark .. +1 bright); energy from GENRE_ENERGY.
GENERAL_GENRES: dict[str, float] = {
    "Ambient": 0.0, "Acoustic": 0.4, "Folk": 0.3, "Cinematic": -0.2, "Orchestral": 0.0, "Pop": 0.6,
    "Rock": 0.0, "Dance": 0.6,
}  # fmt: skip
DEFAULT_DURATION = 15
# the catalogue mood that names each emotion outright (the nearest mood on the plane otherwise)
EMOTION_MOOD = {"joy": "Happy", "sadness": "Sad", "anger": "Angry", "fear": "Scary", "surprise": "Dramatic",
                "disgust": "Dark"}  # fmt: skip

# Rough energy (0 calm .. 1 intense) of genres that appear in the topic table, used to pick the
# topic genres that fit the text's arousal. Unlisted genres count as 0.5 (middle).
GENRE_ENERGY: dict[str, float] = {
    "Ambient": 0.1, "Meditation": 0.05, "Lullaby": 0.05, "New Age": 0.15, "Minimalism": 0.25,
    "Ethereal": 0.15, "Piano": 0.25, "Acoustic": 0.3, "Ballad": 0.25, "Hymns": 0.2, "Classical": 0.3,
    "Folk": 0.35, "Indie Folk": 0.35, "Smooth Jazz": 0.3, "Lounge": 0.3, "Soft Rock": 0.45,
    "Smooth Rock": 0.45, "Blues": 0.4, "Soul": 0.45, "Jazz": 0.45, "Gospel": 0.5, "Inspirational": 0.45,
    "Christian Music": 0.4, "Cinematic": 0.55, "Orchestral": 0.55, "World Music": 0.5, "Children": 0.5,
    "Swing": 0.65, "Lively": 0.7, "Synth Pop": 0.65, "Electronic": 0.65, "Suspense": 0.6, "Pop": 0.6,
    "Funk": 0.7, "Disco": 0.75, "Rock": 0.7, "Hip Hop": 0.65, "Lofi": 0.25, "Lo-fi Hip Hop": 0.25,
    "EDM": 0.85, "Techno": 0.8, "Glitch House": 0.75, "House": 0.75, "Racing": 0.9, "Punk": 0.9,
    "Industrial": 0.85, "Heavy Metal": 0.95, "Metal": 0.95, "Rocktronica": 0.8, "Trap": 0.75,
    "Motivational": 0.7, "Dance": 0.8, "Epic": 0.75, "Traditional Music": 0.4, "Dramedy": 0.55,
    "Ska": 0.75, "Modern Classical": 0.35, "Neo Classical": 0.3, "Easy Listening": 0.3, "Trip Hop": 0.4,
    "Drone": 0.1, "Orchestral Hybrid": 0.7, "Adult Contemporary": 0.4, "News": 0.5, "Downtempo": 0.3,
    "R&B": 0.45, "Dream Pop": 0.35, "Fantasy": 0.55, "Futurewave": 0.6, "Action": 0.85, "Indie Pop": 0.55,
    "Indie Rock": 0.65, "Electro Pop": 0.7, "Latin": 0.7, "Reggae": 0.5, "Chill Out": 0.25,
    "Children's Music": 0.5,
}  # fmt: skip


@dataclass
class Analysis:
    """Everything the text mode found out about one document, and the music it leads to."""

    language: str  # "ko" | "en" | "other"
    summary: list[str]
    topic: dict[str, Any]  # {id, name, score, top3: [{id, name, score}]}
    emotion: dict[str, Any]  # {label, scores: {label: p}}
    valence: float  # -1 unpleasant .. +1 pleasant, on the catalogue's mood plane (see to_mood_plane)
    arousal: float  # -1 calm .. +1 excited, same plane
    genres: list[str]
    moods: list[str]
    instruments: list[str]
    tempo: str  # label such as "Slow"
    bpm: int
    mode: str  # "major" | "minor"
    prompt: str
    reasons: list[str]
    spec: MusicSpec
    title: str | None = None
    truncated: bool = False
    chars: int = 0
    sentences: int = 0  # sentences found (before sampling)
    model_va: tuple[float, float] = (0.0, 0.0)  # the regression heads' own (valence, arousal)
    feeling_quotes: list[str] = field(default_factory=list)  # sentences that carried the emotion
    overrides: list[str] = field(default_factory=list)  # which fields the user set explicitly

    @property
    def language_name(self) -> str:
        return language_name(self.language)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (plain types only)."""
        out = asdict(self)
        out["spec"] = asdict(self.spec)
        out["spec"]["genres"] = list(self.spec.genres)
        for key in ("moods", "instruments", "keywords", "reasons"):
            out["spec"][key] = list(out["spec"][key])
        return out


@dataclass(frozen=True)
class _Overrides:
    tempo: str | int | None = None
    duration: str | int | float | None = None
    keywords: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ()

    def names(self) -> list[str]:
        given = [("tempo", self.tempo is not None), ("duration", self.duration is not None)]
        given += [("keywords", bool(self.keywords)), ("instruments", bool(self.instruments))]
        return [name for name, on in given if on]


@dataclass
class _Prepared:
    text: str
    title: str | None
    truncated: bool
    language: str
    candidates: list[str]
    sentence_count: int


class Analyzer:
    """Text models + catalogue, loaded once. ``analyze`` may be called from several threads (the
    encoder and the Korean splitter serialise themselves)."""

    def __init__(self, models: Any, catalogue: Any | None = None, *, max_sentences: int = MAX_SENTENCES):
        self.models = models
        self._catalogue = catalogue
        self.max_sentences = max_sentences
        # the topic head can reuse our embeddings; emotion/VA heads do when they accept them
        self._emotion_takes_embeddings = _accepts(models.emotion_probabilities, "embeddings")
        self._va_takes_embeddings = _accepts(models.valence_arousal, "embeddings")
        self.va_gain = stored_va_gain(models)
        model_dir = getattr(models, "model_dir", None)
        self.document_head = load_document_head(str(model_dir)) if model_dir is not None else None

    @classmethod
    def load(
        cls, model_dir: str | Path | None = None, *, catalogue: Any | None = None, threads: int = 2
    ) -> Analyzer:
        """Load the encoder, the trained heads and the Korean splitter, and warm them up."""
        from engine.text.models import TextModels
        from engine.text.summary import get_kiwi

        models = TextModels.load(model_dir, threads=threads)
        models.embed(["warm up the encoder"])  # the first forward pass is slower
        get_kiwi()
        return cls(models, catalogue)

    @property
    def catalogue(self) -> Any:
        if self._catalogue is None:
            from engine.catalogue import default_catalogue

            self._catalogue = default_catalogue()
        return self._catalogue

    # ------------------------------------------------------------------------------------------

    def analyze(
        self,
        text: str,
        *,
        title: str | None = None,
        tempo: str | int | None = None,
        duration: str | int | float | None = None,
        keywords: Iterable[str] = (),
        instruments: Iterable[str] = (),
    ) -> Analysis:
        """Analyse one text. Explicit ``tempo``/``duration``/``keywords``/``instruments`` win."""
        doc = document_from_text(text, title=title)
        return self.analyze_documents(
            [doc], tempo=tempo, duration=duration, keywords=keywords, instruments=instruments
        )[0]

    def analyze_document(self, doc: Document, **overrides: Any) -> Analysis:
        return self.analyze_documents([doc], **overrides)[0]

    def analyze_batch(self, texts: Sequence[str], **overrides: Any) -> list[Analysis]:
        """Analyse many texts with batched encoder calls (CSV evaluation, many titles)."""
        return self.analyze_documents([document_from_text(t) for t in texts], **overrides)

    def analyze_documents(
        self,
        docs: Sequence[Document],
        *,
        tempo: str | int | None = None,
        duration: str | int | float | None = None,
        keywords: Iterable[str] = (),
        instruments: Iterable[str] = (),
    ) -> list[Analysis]:
        overrides = _Overrides(
            tempo=tempo,
            duration=duration,
            keywords=tuple(k.strip() for k in keywords if k and k.strip()),
            instruments=tuple(i.strip() for i in instruments if i and i.strip()),
        )
        prepared = [self._prepare(doc) for doc in docs]
        if not prepared:
            return []

        # one encoder call for every candidate sentence (and title) of every document
        flat = [s for p in prepared for s in p.candidates]
        langs = [p.language for p in prepared for _ in p.candidates]
        titles = [p.title for p in prepared if p.title]
        encoded = self.models.embed(flat + titles)
        embeddings, title_vectors = encoded[: len(flat)], iter(encoded[len(flat) :])
        bounds = np.cumsum([0] + [len(p.candidates) for p in prepared])
        summaries = [
            summarize_candidates(p.candidates, embeddings[a:b], sentence_count=p.sentence_count)
            for p, a, b in zip(prepared, bounds[:-1], bounds[1:], strict=True)
        ]

        # topic from title + summary (the head was trained on titles: short, content-bearing text).
        # The summary's vector is the mean of its sentence vectors: no second encoder pass.
        topic_texts, topic_vectors = [], []
        for p, summary, a in zip(prepared, summaries, bounds[:-1], strict=True):
            picked = [a + p.candidates.index(sentence) for sentence in summary.sentences]
            vector = _unit(embeddings[picked].mean(axis=0))
            if p.title:
                vector = _unit(0.5 * next(title_vectors) + 0.5 * vector)
            topic_texts.append(_topic_text(p.title, summary.sentences))
            topic_vectors.append(vector)
        topics = self.models.topic(topic_texts, embeddings=np.stack(topic_vectors).astype(np.float32))

        # emotion and valence/arousal per sentence, then read per document (engine.text.mood)
        if self._emotion_takes_embeddings:
            emo = self.models.emotion_probabilities(flat, langs, embeddings=embeddings)
        else:
            emo = self.models.emotion_probabilities(flat, langs)
        if self._va_takes_embeddings:
            va = self.models.valence_arousal(flat, langs, embeddings=embeddings)
        else:
            va = self.models.valence_arousal(flat, langs)

        # the review-sentiment head, for the languages whose document valence leans on it (Korean)
        sentiment = np.zeros(len(flat), dtype=np.float32)
        review_rows = [i for i, lang in enumerate(langs) if lang in REVIEW_SENTIMENT_LANGUAGES]
        if review_rows and self.document_head is not None:
            sentiment[review_rows] = self.models.sentiment(
                [flat[i] for i in review_rows], [langs[i] for i in review_rows], embeddings[review_rows]
            )

        results = []
        for i, (p, summary, topic) in enumerate(zip(prepared, summaries, topics, strict=True)):
            a, b = bounds[i], bounds[i + 1]
            mood = read_mood(
                p.candidates, emo[a:b], va[a:b], embeddings[a:b], p.language,
                gain=self.va_gain.get(p.language), head=self.document_head, sentiment=sentiment[a:b],
            )  # fmt: skip
            analysis = self._compose(p, summary.sentences, topic, mood, overrides)
            analysis.model_va = (round(mood.model_va[0], 4), round(mood.model_va[1], 4))
            analysis.feeling_quotes = mood.quotes
            results.append(analysis)
        return results

    # ------------------------------------------------------------------------------------------

    def _prepare(self, doc: Document) -> _Prepared:
        language = detect_language(doc.text)
        candidates, found = prepare_sentences(doc.text, language, self.max_sentences)
        if not candidates:  # only symbols/numbers: still analyse the raw text
            candidates, found = [doc.text[:500]], 1
        return _Prepared(doc.text, doc.title, doc.truncated, language, candidates, found)

    def _compose(
        self,
        p: _Prepared,
        summary: list[str],
        topic: Any,
        mood: DocumentMood,
        overrides: _Overrides,
    ) -> Analysis:
        from engine.prompt import build_spec

        cat = self.catalogue
        reasons: list[str] = []
        emotion_scores, valence, arousal = mood.scores, mood.valence, mood.arousal
        emotion_label = mood.label

        # genres from the topic table: the top topic's genres, blended with the runner-ups' in
        # proportion to their probability, and ordered by how well their energy fits the text
        energy = (arousal + 1.0) / 2.0
        if topic.score < TOPIC_MIN_CONFIDENCE:
            # a weak guess (a festival read as "Calendars"): its genre table would be noise
            genres = self._sort_names(general_genres(cat, energy, valence)[:2])[0]
            extra_instruments, extra_moods = [], []
            reasons.append(
                f"topic {topic.name} ({topic.score:.2f}) is only a guess (< {TOPIC_MIN_CONFIDENCE:.2f}) → "
                f"general genres for energy {energy:.2f}, valence {_signed(valence)}: {', '.join(genres)}"
            )
        else:
            genres, extra_instruments, extra_moods = self._topic_genres(cat, topic, energy, reasons)

        # moods: the emotion label's own mood, then the moods nearest the text's valence/arousal
        top_p = emotion_scores.get(emotion_label, 0.0)
        moods: list[str] = []
        named = None
        if emotion_label in EKMAN_VA and emotion_label != "neutral":
            named = cat.get("moods", EMOTION_MOOD.get(emotion_label, ""))
            moods = [named.en] if named else [e.en for e in cat.moods_near(*EKMAN_VA[emotion_label], k=1)]
            reasons.append(f"{emotion_label} {top_p:.2f} → {', '.join(moods)}")
        else:
            reasons.append(f"{emotion_label} {top_p:.2f} → no emotion mood")
        if mood.quotes:  # the sentences that carried the feeling (the strongest valence if neutral)
            reasons.append("felt most in " + ", ".join(f"“{q}”" for q in mood.quotes))
        if mood.review_sentiment is not None and mood.review_sentiment[0] >= 0.05:
            share_r, positive = mood.review_sentiment
            reasons.append(
                f"review sentiment {positive:.2f} positive, weight {share_r:.2f} in valence (comment-like register)"
            )
        near = [e.en for e in cat.moods_near(valence, arousal, k=3) if e.en not in moods][: 3 - len(moods)]
        reasons.append(f"valence {_signed(valence)}, arousal {_signed(arousal)} → {', '.join(near)}")
        moods += near
        for mood in extra_moods:  # a mood named in the topic's list (Lively) tops it up
            if mood not in moods and len(moods) < 3:
                moods.append(mood)

        # tempo and mode: the text's energy, pulled toward the energy of the mood that names its
        # emotion (a sad text gets the Sad mood's pace: arousal alone stays near the middle for
        # narrative prose, whose sentences read as calm-ish). The pull is the emotion's share of the
        # emotional (non-neutral) probability: once the label beats neutral, the neutral narrative
        # lines say nothing about pace (see pace_weight).
        tempo_energy, pulled = energy, ""
        if named is not None:
            hint = cat.mood_hint(named.en)
            pull = pace_weight(emotion_scores, emotion_label)
            tempo_energy = (1.0 - pull) * energy + pull * hint.energy
            pulled = f" and {named.en} (energy {hint.energy:.2f}, weight {pull:.2f})"
        bpm = int(round(BPM_LOW + tempo_energy * (BPM_HIGH - BPM_LOW)))
        if overrides.tempo is not None:
            tempo_value: str | int = overrides.tempo
            reasons.append(f"tempo {overrides.tempo} (your choice)")
        else:
            tempo_value = str(bpm)
            reasons.append(f"arousal {_signed(arousal)}{pulled} → {bpm} BPM")
        mode = "minor" if valence < 0 else "major"
        reasons.append(f"valence {_signed(valence)} → {mode} key")

        instruments = list(overrides.instruments) or extra_instruments
        if overrides.instruments:
            reasons.append(f"instruments {', '.join(overrides.instruments)} (your choice)")
        if overrides.keywords:
            reasons.append(f"keywords {', '.join(overrides.keywords)} (your choice)")
        if overrides.duration is not None:
            reasons.append(f"duration {overrides.duration} (your choice)")

        spec = build_spec(
            genres=tuple(genres),
            moods=tuple(moods),
            instruments=tuple(instruments),
            keywords=overrides.keywords,
            tempo=tempo_value,
            duration=overrides.duration if overrides.duration is not None else DEFAULT_DURATION,
            mode=mode,
            reasons=tuple(reasons),
            catalogue=cat,
        )
        # the spec holds the canonical values (e.g. the user's "fast" → its BPM)
        return Analysis(
            language=p.language,
            summary=summary,
            topic={
                "id": int(topic.id),
                "name": topic.name,
                "score": round(float(topic.score), 4),
                "top3": [{"id": int(i), "name": n, "score": round(float(s), 4)} for i, n, s in topic.top3],
            },
            emotion={"label": emotion_label, "scores": {k: round(v, 4) for k, v in emotion_scores.items()}},
            valence=round(valence, 4),
            arousal=round(arousal, 4),
            genres=list(spec.genres),
            moods=list(spec.moods),
            instruments=list(spec.instruments),
            tempo=spec.tempo,
            bpm=spec.bpm,
            mode=spec.mode,
            prompt=spec.prompt,
            reasons=list(spec.reasons) or reasons,
            spec=spec,
            title=p.title,
            truncated=p.truncated,
            chars=len(p.text),
            sentences=p.sentence_count,
            overrides=overrides.names(),
        )

    def _topic_genres(
        self, cat: Any, topic: Any, energy: float, reasons: list[str]
    ) -> tuple[list[str], list[str], list[str]]:
        """Genres (and instruments/moods) from the topic table, with a reason per source topic."""
        ranked = _score_topic_genres(cat, topic.top3, energy)
        genres, extra_instruments, extra_moods = self._sort_names([name for name, _ in ranked[:3]])
        if not genres:  # the best fits were all instruments/moods: add the best real genre
            genres = self._sort_names([name for name, _ in ranked])[0][:1]
        by_topic: dict[str, list[str]] = {}
        for name, source in ranked:
            canonical = self._sort_names([name])
            flat_names = [n for bucket in canonical for n in bucket]
            if flat_names and flat_names[0] in genres + extra_instruments:
                by_topic.setdefault(source, []).append(flat_names[0])
        scores_by_name = {name: score for _, name, score in topic.top3}
        for n, (source, words) in enumerate(by_topic.items()):
            prefix = "topic" if source == topic.name else "close runner-up topic"
            reasons.append(f"{prefix} {source} ({scores_by_name.get(source, 0.0):.2f}) → {', '.join(words)}")
            if n == 0 and source != topic.name:
                reasons.insert(-1, f"topic {topic.name} ({topic.score:.2f})")
        return genres, extra_instruments, extra_moods

    def _sort_names(self, names: Iterable[str]) -> tuple[list[str], list[str], list[str]]:
        """Topic table entries are mostly genres, but some are instruments (Piano) or moods
        (Lively): file each under the catalogue kind that knows it; unknown names are dropped."""
        from engine.catalogue import UnknownCategory

        genres: list[str] = []
        instruments: list[str] = []
        moods: list[str] = []
        for name in names:
            for kind, bucket in (("genres", genres), ("instruments", instruments), ("moods", moods)):
                try:
                    entry = self.catalogue.resolve(kind, name)
                except UnknownCategory:
                    continue
                if entry.en not in bucket:
                    bucket.append(entry.en)
                break
        return genres, instruments, moods


# --------------------------------------------------------------------------------------------
# helpers


def _accepts(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def pace_weight(scores: dict[str, float], label: str) -> float:
    """How far the tempo follows the named emotion's mood: its share of the non-neutral probability.

    A story whose head reads sadness 0.48 / neutral 0.44 / the rest 0.08 gets 0.86, not 0.48. On
    the "tune" documents (bench/text_documents.py) this took the documents read as sadness from
    80 % to 84 % Slow and the issue's story from 88 to 79 BPM, with joy/anger/fear ones unchanged.
    """
    emotional = 1.0 - scores.get("neutral", 0.0)
    return float(np.clip(scores.get(label, 0.0) / max(emotional, 1e-6), 0.0, 1.0))


def _signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "−")


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def _topic_text(title: str | None, summary: list[str]) -> str:
    body = " ".join(summary)
    return f"{title}. {body}" if title else body


def _genre_energy(cat: Any, name: str) -> float:
    """0..1 energy of a genre: our table, else the catalogue's typical BPM, else the middle."""
    if name in GENRE_ENERGY:
        return GENRE_ENERGY[name]
    try:
        bpm = cat.genre_hint(name).bpm
    except Exception:  # not a genre in the catalogue (an instrument such as Piano) or no hint
        bpm = None
    if bpm:
        return float(np.clip((bpm - BPM_LOW) / (BPM_HIGH - BPM_LOW), 0.0, 1.0))
    return 0.5


def general_genres(cat: Any, energy: float, valence: float) -> list[str]:
    """GENERAL_GENRES ordered by fit to the text: |energy gap| + 0.25 · |valence gap|."""
    return sorted(
        GENERAL_GENRES,
        key=lambda g: abs(_genre_energy(cat, g) - energy) + 0.25 * abs(GENERAL_GENRES[g] - valence),
    )


def _score_topic_genres(
    cat: Any, top3: Sequence[tuple[int, str, float]], energy: float
) -> list[tuple[str, str]]:
    """Rank the genres of the top-3 topics: (name, topic it came from), best first.

    score = Σ over topics listing the genre of share(topic) · (1 − 0.1 · position in its list)
            − ENERGY_FIT · |genre energy − text energy|
    where share is the topic's probability renormalised over the top 3. A confident topic keeps
    its own genres (energy only reorders them); a close call mixes in the runner-up's."""
    total = sum(max(p, 0.0) for _, _, p in top3) or 1.0
    prior: dict[str, float] = {}
    source: dict[str, tuple[float, str]] = {}
    for topic_id, name, p in top3:
        share = max(p, 0.0) / total
        for position, genre in enumerate(cat.topic_genres(int(topic_id))):
            weight = share * (1.0 - 0.1 * position)
            prior[genre] = prior.get(genre, 0.0) + weight
            if weight > source.get(genre, (-1.0, ""))[0]:
                source[genre] = (weight, name)
    order = {g: i for i, g in enumerate(prior)}
    scored = sorted(
        prior,
        key=lambda g: (-(prior[g] - ENERGY_FIT * abs(_genre_energy(cat, g) - energy)), order[g]),
    )
    return [(g, source[g][1]) for g in scored]


# --------------------------------------------------------------------------------------------
# files


_default: Analyzer | None = None
_default_lock = threading.Lock()


def default_analyzer() -> Analyzer:
    """A process-wide analyser (models load on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Analyzer.load()
        return _default


def read_file(
    path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES, max_chars: int = DEFAULT_MAX_CHARS
) -> Document:
    """Read a document from disk with the same checks as an upload (size checked before reading)."""
    file = existing_file(path)
    size = file.stat().st_size
    if size > max_bytes:
        raise FileTooLarge(
            f"{file.name} is {size / 1_000_000:.1f} MB; the limit is {max_bytes / 1_000_000:.1f} MB. "
            "Send a shorter part (one chapter is plenty) or paste the text."
        )
    return read_document(file.read_bytes(), file.name, max_bytes=max_bytes, max_chars=max_chars)


def spec_from_file(
    path: str | os.PathLike[str],
    *,
    analyzer: Analyzer | None = None,
    tempo: str | int | None = None,
    duration: str | int | float | None = None,
    keywords: Iterable[str] = (),
    instruments: Iterable[str] = (),
) -> tuple[Analysis, MusicSpec]:
    """``textunes generate --from-text FILE``: read, analyse, and return the spec to generate."""
    doc = read_file(path)
    analysis = (analyzer or default_analyzer()).analyze_document(
        doc, tempo=tempo, duration=duration, keywords=keywords, instruments=instruments
    )
    return analysis, analysis.spec
