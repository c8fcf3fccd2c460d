"""Extractive summary: sentence splitting (English regex, Korean kiwipiepy), centrality + MMR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.text.summary import (
    even_sample,
    is_content_sentence,
    mmr_select,
    prepare_sentences,
    split_sentences,
    summarize,
    summary_length,
)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def embed():
    """The real multilingual encoder (loaded once per process by TextModels' cache)."""
    from engine.text.models import TextModels

    return TextModels.load().embed


# --- splitting ------------------------------------------------------------------------------


def test_english_splitter_respects_abbreviations_decimals_and_quotes() -> None:
    text = (
        'Dr. Smith paid $3.50 for the tea on Monday. He said, "It is late!" Then he left. '
        "The U.S. team won, e.g. in the relay. Why? Nobody knows…  Really."
    )
    assert split_sentences(text, "en") == [
        "Dr. Smith paid $3.50 for the tea on Monday.",
        'He said, "It is late!"',
        "Then he left.",
        "The U.S. team won, e.g. in the relay.",
        "Why?",
        "Nobody knows…",
        "Really.",
    ]


def test_paragraphs_never_merge_but_wrapped_lines_do() -> None:
    text = "A heading\n\nThe first line is\nwrapped here. Second sentence.\n\nNew paragraph without a period"
    assert split_sentences(text, "en") == [
        "A heading",
        "The first line is wrapped here.",
        "Second sentence.",
        "New paragraph without a period",
    ]


def test_korean_splitter_finds_sentences_without_punctuation() -> None:
    text = "비가 내리는 밤이었다 그녀는 창밖을 보며 울었다. 모든 것이 끝났다고 생각했다!\n\n다음 날 아침 해가 떴다"
    assert split_sentences(text, "ko") == [
        "비가 내리는 밤이었다",
        "그녀는 창밖을 보며 울었다.",
        "모든 것이 끝났다고 생각했다!",
        "다음 날 아침 해가 떴다",
    ]


def test_cjk_punctuation_splits_other_languages() -> None:
    assert split_sentences("雨が降っている。傘を持っていこう！", "other") == [
        "雨が降っている。",
        "傘を持っていこう！",
    ]


def test_headings_and_fragments_are_not_summary_candidates() -> None:
    assert not is_content_sentence("A Summer Festival by the Sea", "en")
    assert not is_content_sentence("제3장 이별", "ko")
    assert not is_content_sentence("Page 12", "en")
    assert is_content_sentence("The rain kept falling on the roof all night", "en")
    assert is_content_sentence("비가 내리는 밤이었다", "ko")


# --- selection ------------------------------------------------------------------------------


def test_summary_length_is_three_to_five() -> None:
    assert [summary_length(n) for n in (1, 3, 4, 12, 13, 40, 41, 500)] == [1, 3, 3, 3, 4, 4, 5, 5]


def test_even_sample_covers_first_to_last() -> None:
    assert even_sample(range(10), 20) == list(range(10))
    picked = even_sample(range(1000), 5)
    assert picked[0] == 0 and picked[-1] == 999 and len(picked) == 5 and picked == sorted(picked)


def test_mmr_prefers_central_rows_and_skips_duplicates() -> None:
    rng = np.random.default_rng(0)
    theme = rng.normal(size=16)
    rows = [theme + 0.3 * rng.normal(size=16) for _ in range(6)]
    rows.append(rng.normal(size=16) * 3)  # an outlier far from the theme
    rows.append(rows[0].copy())  # an exact duplicate of row 0
    chosen, centrality = mmr_select(np.array(rows), 3)
    assert 6 not in chosen  # the outlier is least central
    assert not (0 in chosen and 7 in chosen)  # never both copies
    assert chosen == sorted(chosen)
    assert centrality[6] < min(centrality[:6])


def test_summary_picks_central_sentences_in_document_order(embed) -> None:
    on_topic = [
        "The old fisherman rowed out to sea before dawn, hoping to catch a great fish.",
        "For days the fisherman fought the enormous marlin that pulled his small boat far out to sea.",
        "The fish was bigger than his boat, and the old man admired its strength and beauty.",
        "Sharks came and tore at the marlin while the fisherman struggled to defend his catch.",
        "When he finally reached the harbour, only the skeleton of the great fish remained.",
        "The boy cried when he saw the fisherman's wounded hands and the ruined catch.",
        "The old man slept in his shack and dreamed of lions on a beach in Africa.",
        "Other fishermen measured the skeleton of the marlin and could not believe its size.",
    ]
    outlier = "Quarterly tax filings for small businesses must include the updated depreciation schedule."
    sentences = on_topic[:4] + [outlier] + on_topic[4:]
    text = " ".join(sentences)
    summary = summarize(text, "en", embed)
    assert 3 <= len(summary.sentences) <= 5
    assert outlier not in summary.sentences
    positions = [sentences.index(s) for s in summary.sentences]
    assert positions == sorted(positions)
    assert len(set(summary.sentences)) == len(summary.sentences)


def test_korean_summary_from_fixture(embed) -> None:
    text = (FIXTURES / "sad_ko.txt").read_text(encoding="utf-8")
    summary = summarize(text, "ko", embed)
    assert len(summary.sentences) == 3
    body = text.split("\n\n", 1)[1]
    for sentence in summary.sentences:
        assert sentence in body  # whole sentences of the body; the title line is not one
    assert "떠나간 사람" not in summary.sentences
    positions = [body.index(s) for s in summary.sentences]
    assert positions == sorted(positions)


def test_short_texts_return_what_there_is(embed) -> None:
    assert summarize("Just one line about the rain.", "en", embed).sentences == [
        "Just one line about the rain."
    ]
    two = summarize("비가 온다. 바람도 분다.", "ko", embed)
    assert two.sentences == ["비가 온다.", "바람도 분다."]


def test_long_documents_are_sampled_evenly_and_bounded() -> None:
    sentences = [f"Sentence number {i} describes another quiet evening by the river." for i in range(3000)]
    candidates, found = prepare_sentences(" ".join(sentences), "en", max_sentences=40)
    assert found == 3000
    assert len(candidates) == 40
    numbers = [int(c.split()[2]) for c in candidates]
    assert numbers[0] == 0 and numbers[-1] == 2999 and numbers == sorted(numbers)


def test_long_korean_text_is_bounded_before_kiwi() -> None:
    paragraph = "그녀가 떠난 뒤로 나는 매일 창밖만 바라본다 비가 오면 더 슬퍼진다. 언제쯤 괜찮아질까?"
    text = "\n\n".join(
        f"{i}번째 날에도 나는 창밖만 바라보았다. {paragraph}" for i in range(3000)
    )  # ~170k characters
    candidates, found = prepare_sentences(text, "ko", max_sentences=30)
    assert len(candidates) == 30
    assert found < 3000 * 3  # kiwipiepy saw a bounded sample, not everything
    days = [int(c.split("번째")[0]) for c in candidates if "번째" in c]
    assert (
        days == sorted(days) and days[-1] > 2000
    )  # the end is represented (the first 8k chars hold ~70 days)
