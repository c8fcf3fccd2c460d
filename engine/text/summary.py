"""Extractive summary: the 3–5 sentences that best stand for the whole document.

Method (no generative model, works for any language the encoder knows):
1. split into sentences — Korean with kiwipiepy (it handles sentences without final punctuation),
   everything else with a regex splitter that respects abbreviations and decimals;
2. keep "real" sentences (enough letters, not a heading) and, for long documents, an evenly spaced
   sample of at most ``max_sentences`` so cost stays flat however long the document is;
3. embed them; a sentence's centrality is its cosine to the centroid of all sentence vectors (for
   unit vectors this equals its mean similarity to every other sentence, i.e. degree centrality);
4. pick greedily with MMR (centrality minus redundancy with what is already picked), then return
   the picks in document order.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.text.language import KOREAN

Embedder = Callable[[list[str]], np.ndarray]

MAX_SENTENCES = 40  # sentences embedded per document (the encoder is the cost: ~25-60 sentences/s)
KIWI_CHAR_BUDGET = 8_000  # Korean text given to kiwipiepy (~0.15 s); longer texts are sampled first
SPLIT_CHAR_BUDGET = 200_000  # same for the regex splitter (fast, but bounded anyway)
# a "sentence" kept only because there is nothing better (no sentence punctuation at all) is cut to
# this: the encoder's time grows with length (16 lines of 10 000 junk characters took 18 s)
MAX_FALLBACK_CHARS = 1_000
MMR_LAMBDA = 0.7  # 1.0 = pure centrality, lower = more diversity

# abbreviations after which a period does not end a sentence
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e fig no vol pp ed eds inc ltd co corp jan feb mar apr jun "
    "jul aug sep sept oct nov dec mt ft gen col lt sgt capt rev approx dept est".split()
)
# a boundary: terminal punctuation (+ closing quotes/brackets), then whitespace. Tried only from the
# first mark of a run ("......" without a space after is one failed attempt, not one per dot).
_BOUNDARY = re.compile(r"""(?<![.!?…。！？])([.!?…。！？]+["'”’)\]]*)(\s+)""")
# paragraph breaks: a blank line, or a line that starts a list item / heading / quote
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*|\n(?=[ \t]*[-*•#>]|[ \t]*\d+[.)]\s)")
# how far back from a period to look for the word before it (abbreviations are short)
_LAST_WORD_REACH = 40
_CJK_BOUNDARY = re.compile(r"([。！？])")
_LETTER = re.compile(r"[^\W\d_]", re.U)


@dataclass
class Summary:
    sentences: list[str]  # the summary, in document order
    candidates: list[str] = field(default_factory=list)  # the (sampled) sentences that were scored
    embeddings: np.ndarray | None = None  # one row per candidate (reused by the analyser)
    scores: list[float] = field(default_factory=list)  # centrality of each summary sentence
    sentence_count: int = 0  # sentences found in the (possibly pre-sampled) text


# --------------------------------------------------------------------------------------------
# sentence splitting

_kiwi = None
_kiwi_lock = threading.Lock()


def get_kiwi():
    """One shared Kiwi instance (loading it takes ~1 s; its first split warms the model)."""
    global _kiwi
    with _kiwi_lock:
        if _kiwi is None:
            from kiwipiepy import Kiwi

            kiwi = Kiwi()
            kiwi.split_into_sents("준비 운동입니다. 문장을 나눕니다.")
            _kiwi = kiwi
        return _kiwi


def split_sentences(text: str, lang: str) -> list[str]:
    """Split ``text`` into sentences; paragraphs and lines never merge into one sentence."""
    paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
    if lang == KOREAN:
        return _split_korean(paragraphs)
    sentences: list[str] = []
    for paragraph in paragraphs:
        # a line break inside a paragraph usually is hard wrapping: join it back up
        sentences.extend(_split_regex(" ".join(paragraph.split())))
    return sentences


def _split_korean(paragraphs: list[str]) -> list[str]:
    kiwi = get_kiwi()
    sentences: list[str] = []
    # kiwipiepy splits a list of texts in one call (and faster than one long text)
    joined = [" ".join(p.split()) for p in paragraphs]
    with _kiwi_lock:  # one Kiwi instance serves every thread (the bot analyses concurrently)
        results = list(kiwi.split_into_sents(joined))
    for result in results:
        sentences.extend(s.text.strip() for s in result if s.text.strip())
    return sentences


def _split_regex(paragraph: str) -> list[str]:
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(paragraph):
        end = match.end(1)
        # a bounded look back: "a. a. a. ..." never ends a sentence, so ``start`` stays put
        before = paragraph[max(start, match.start(1) - _LAST_WORD_REACH) : match.start(1)].split()
        last_word = before[-1].lower() if before else ""
        punct = match.group(1)
        nxt = paragraph[match.end() : match.end() + 1]
        if punct.startswith(".") and len(punct) == 1:
            # "Dr. Smith", "e.g. this", "J. R. R. Tolkien", "3.5" (no space there anyway)
            if last_word.rstrip(".") in _ABBREVIATIONS or re.fullmatch(r"[a-z]", last_word):
                continue
            if nxt and nxt.islower():  # "... approx. three" — a new sentence starts upper-case
                continue
        sentences.append(paragraph[start:end].strip())
        start = match.end()
    tail = paragraph[start:].strip()
    if tail:
        sentences.append(tail)
    # Chinese / Japanese punctuation has no following space
    if not any(mark in paragraph for mark in "。！？"):
        return sentences
    out: list[str] = []
    for sentence in sentences:
        pieces = _CJK_BOUNDARY.split(sentence)
        if len(pieces) > 1:
            merged = ["".join(pieces[i : i + 2]).strip() for i in range(0, len(pieces), 2)]
            out.extend(p for p in merged if p)
        else:
            out.append(sentence)
    return out


# --------------------------------------------------------------------------------------------
# selection


def is_content_sentence(sentence: str, lang: str) -> bool:
    """Headings, page numbers, captions and one-word lines make poor summary sentences."""
    letters = len(_LETTER.findall(sentence))
    words = len(sentence.split())
    if _is_heading(sentence, words):
        return False
    if lang == KOREAN:
        return letters >= 6 and len(sentence) <= 600
    if words <= 1:
        return letters >= 12  # CJK-like text without spaces
    return words >= 4 and letters >= 15 and len(sentence) <= 600


def _is_heading(sentence: str, words: int) -> bool:
    """A short line with no sentence ending ("A Summer Festival by the Sea", "제3장 이별")."""
    stripped = sentence.rstrip("\"'”’)] ")
    if not stripped or stripped[-1] in ".!?…。！？":
        return False
    # Korean sentences often lack the final period but end in a verb ending (-다, -요, -까 ...)
    if stripped[-1] in "다요까죠네지군라자":
        return False
    return words <= 8


def even_sample(items: Sequence, n: int) -> list[int]:
    """Indices of ``n`` items spread evenly from first to last (all of them if there are fewer)."""
    if len(items) <= n:
        return list(range(len(items)))
    if n <= 1:
        return [0]
    step = (len(items) - 1) / (n - 1)
    return sorted({round(i * step) for i in range(n)})


def summary_length(n_candidates: int) -> int:
    """3 sentences for short texts, up to 5 for long ones (never more than there are)."""
    if n_candidates <= 3:
        return n_candidates
    if n_candidates <= 12:
        return 3
    if n_candidates <= 40:
        return 4
    return 5


def mmr_select(embeddings: np.ndarray, k: int, lam: float = MMR_LAMBDA) -> tuple[list[int], np.ndarray]:
    """Greedy maximal-marginal-relevance pick of ``k`` rows. Returns (indices in document order,
    centrality of every row)."""
    vectors = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-9)
    centroid = vectors.mean(axis=0)
    centroid /= max(float(np.linalg.norm(centroid)), 1e-9)
    centrality = vectors @ centroid
    similarity = vectors @ vectors.T
    chosen: list[int] = []
    remaining = list(range(len(vectors)))
    while remaining and len(chosen) < k:
        if chosen:
            redundancy = similarity[np.ix_(remaining, chosen)].max(axis=1)
        else:
            redundancy = np.zeros(len(remaining))
        scores = lam * centrality[remaining] - (1.0 - lam) * redundancy
        best = remaining[int(np.argmax(scores))]
        chosen.append(best)
        remaining.remove(best)
    return sorted(chosen), centrality


def prepare_sentences(text: str, lang: str, max_sentences: int = MAX_SENTENCES) -> tuple[list[str], int]:
    """Split (after bounding the text) and keep an even sample of content sentences.

    Returns (candidates in document order, number of sentences found)."""
    from engine.text.ingest import sample_sections

    budget = KIWI_CHAR_BUDGET if lang == KOREAN else SPLIT_CHAR_BUDGET
    bounded = sample_sections(text, budget, sections=16) if len(text) > budget else text
    sentences = split_sentences(bounded, lang)
    content = [s for s in sentences if is_content_sentence(s, lang)]
    if len(content) < 3:  # a short note or a poem: use what there is
        content = [s[:MAX_FALLBACK_CHARS] for s in ([s for s in sentences if _LETTER.search(s)] or sentences)]
    picked = [content[i] for i in even_sample(content, max_sentences)]
    return picked, len(sentences)


def summarize(
    text: str,
    lang: str,
    embed: Embedder,
    *,
    max_sentences: int = MAX_SENTENCES,
    length: int | None = None,
) -> Summary:
    """Extractive summary of ``text`` (3–5 sentences, fewer only if the text has fewer)."""
    candidates, found = prepare_sentences(text, lang, max_sentences)
    if not candidates:
        return Summary(sentences=[], sentence_count=found)
    return summarize_candidates(candidates, embed(candidates), length=length, sentence_count=found)


def summarize_candidates(
    candidates: list[str],
    embeddings: np.ndarray,
    *,
    length: int | None = None,
    sentence_count: int | None = None,
) -> Summary:
    """The selection half of ``summarize``, for callers that embed many documents in one batch."""
    # the length follows the document (sentences found), not the sample we scored
    found = len(candidates) if sentence_count is None else max(sentence_count, len(candidates))
    k = min(summary_length(found) if length is None else length, len(candidates))
    embeddings = np.asarray(embeddings, dtype=np.float32)
    chosen, centrality = mmr_select(embeddings, k)
    return Summary(
        sentences=[candidates[i] for i in chosen],
        candidates=candidates,
        embeddings=embeddings,
        scores=[round(float(centrality[i]), 4) for i in chosen],
        sentence_count=len(candidates) if sentence_count is None else sentence_count,
    )
