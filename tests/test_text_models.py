"""TextModels with the committed heads in data/models (never trains; see scripts/train_text_models.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.text import datasets
from engine.text.labels import EKMAN_LABELS, EKMAN_VA, GOEMOTIONS_28, KOTE_44, to_ekman, to_valence_arousal
from engine.text.models import (
    BOOK_CATEGORIES,
    HEADS_FILE,
    META_FILE,
    MODEL_DIR,
    ModelsMissing,
    TextModels,
    guess_language,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models() -> TextModels:
    return TextModels.load()


def test_artifacts_are_small_arrays_without_pickle() -> None:
    heads = MODEL_DIR / HEADS_FILE
    assert heads.stat().st_size < 10_000_000
    with np.load(heads, allow_pickle=False) as npz:  # would raise on object arrays
        assert all(npz[key].dtype != object for key in npz.files)
    meta = json.loads((MODEL_DIR / META_FILE).read_text(encoding="utf-8"))
    for family in ("topic", "emotion_en", "emotion_ko", "va_en", "va_ko", "sentiment_ko"):
        assert family in meta["heads"]


def test_load_is_cached(models: TextModels) -> None:
    assert TextModels.load() is models


def test_missing_models_give_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelsMissing, match="train_text_models.py"):
        TextModels.load(tmp_path)


def test_embed_shapes_and_norms(models: TextModels) -> None:
    vecs = models.embed(["A quiet morning by the lake.", "호숫가의 조용한 아침.", ""])
    assert vecs.shape == (3, 512) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs[:2], axis=1), 1.0, atol=1e-4)
    assert not vecs[2].any()  # empty text → zero vector, not NaN
    assert float(vecs[0] @ vecs[1]) > 0.5  # the encoder is multilingual: translations are close
    assert models.embed([]).shape == (0, 512)


def test_clear_english_joy(models: TextModels) -> None:
    text = ["I am so happy today, this is wonderful!"]
    result = models.emotion(text, ["en"])[0]
    assert result.label == "joy"
    assert set(result.scores) == set(EKMAN_LABELS)
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert models.valence_arousal(text, ["en"])[0, 0] > 0.2


@pytest.mark.parametrize(
    ("text", "lang", "label"),
    [
        ("My dog died this morning and I can't stop crying.", "en", "sadness"),
        ("I'm terrified, someone is trying to break into my house.", "en", "fear"),
        ("That is absolutely disgusting, it makes me want to vomit.", "en", "disgust"),
        ("오늘 할머니가 돌아가셔서 너무 슬프고 눈물만 난다.", "ko", "sadness"),
        ("정말 행복하다! 시험에 합격해서 너무 기뻐요.", "ko", "joy"),
        ("진짜 화가 나서 참을 수가 없다. 왜 나한테 이러는 거야!", "ko", "anger"),
    ],
)
def test_clear_emotions(models: TextModels, text: str, lang: str, label: str) -> None:
    assert models.emotion([text], [lang])[0].label == label


def test_korean_sad_sentence_has_negative_valence(models: TextModels) -> None:
    va = models.valence_arousal(["오늘 할머니가 돌아가셔서 너무 슬프고 눈물만 난다."], ["ko"])
    assert va[0, 0] < 0


def test_valence_orders_pleasant_above_unpleasant(models: TextModels) -> None:
    texts = [
        "What a beautiful day, I love everyone here!",
        "This is the worst day of my life, everything is ruined.",
    ]
    va = models.valence_arousal(texts, ["en", "en"])
    assert va.shape == (2, 2) and va.dtype == np.float32
    assert va[0, 0] > va[1, 0] + 0.3
    assert np.all(np.abs(va) <= 1.0)


def test_calm_versus_excited_arousal(models: TextModels) -> None:
    texts = [
        "The lake was still and I slowly drifted off to sleep.",
        "WE WON!!! I'm screaming, this is insane!!!",
    ]
    va = models.valence_arousal(texts, ["en", "en"])
    assert va[1, 1] > va[0, 1]


def test_korean_sentiment(models: TextModels) -> None:
    probs = models.sentiment(
        ["정말 재미있고 감동적인 최고의 영화", "돈 아깝고 시간 아까운 최악의 영화"], ["ko", "ko"]
    )
    assert probs[0] > 0.5 > probs[1]


def test_topic_python_book(models: TextModels) -> None:
    result = models.topic(["Learn Python Programming in 24 Hours"])[0]
    assert "Computers & Technology" in [name for _, name, _ in result.top3]
    assert len(result.top3) == 3
    assert result.top3[0][2] >= result.top3[1][2] >= result.top3[2][2]
    assert result.name == BOOK_CATEGORIES[result.id] and result.score == result.top3[0][2]


def test_topic_korean_title_through_the_multilingual_encoder(models: TextModels) -> None:
    result = models.topic(["맛있는 집밥 요리 레시피 100선"])[0]
    assert "Cookbooks, Food & Wine" in [name for _, name, _ in result.top3]


def test_topic_probabilities_cover_32_categories(models: TextModels) -> None:
    probs = models.topic_probabilities(["A History of the Roman Empire", "Cooking with Cast Iron"])
    assert probs.shape == (2, 32)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_untrained_topics_only_from_explicit_cues(models: TextModels) -> None:
    results = models.topic(
        ["Lesson Plans for the Elementary Classroom: A Teacher's Guide", "Coming Out: Gay and Lesbian Lives"]
    )
    assert results[0].id == 31 and results[0].name == "Education & Teaching"
    assert results[1].id == 30
    assert models.topic(["The Complete Guide to Sourdough Baking"])[0].id not in (30, 31)


def test_batches_match_single_calls(models: TextModels) -> None:
    texts = ["I am so happy today!", "너무 무섭다", "The stock market crashed again."]
    langs = ["en", "ko", "en"]
    batch = models.emotion_probabilities(texts, langs)
    for i, (text, lang) in enumerate(zip(texts, langs, strict=True)):
        np.testing.assert_allclose(batch[i], models.emotion_probabilities([text], [lang])[0], atol=1e-5)


def test_languages_are_guessed_when_not_given(models: TextModels) -> None:
    assert guess_language("오늘은 기분이 좋다") == "ko"
    assert guess_language("Today I feel good") == "en"
    assert guess_language("Сегодня хороший день") == "xx"
    texts = ["오늘 할머니가 돌아가셔서 너무 슬프고 눈물만 난다.", "Сегодня хороший день"]
    np.testing.assert_allclose(models.valence_arousal(texts), models.valence_arousal(texts, ["ko", "xx"]))
    assert len(models.emotion(texts)) == 2


def test_mismatched_languages_are_rejected(models: TextModels) -> None:
    with pytest.raises(ValueError, match="2 texts but 1 languages"):
        models.emotion(["a", "b"], ["en"])


def test_empty_batches(models: TextModels) -> None:
    assert models.topic([]) == [] and models.emotion([], []) == []
    assert models.valence_arousal([], []).shape == (0, 2)


# --- label tables -----------------------------------------------------------------------------------


def test_label_tables_are_complete_and_in_range() -> None:
    assert len(KOTE_44) == 44 and len(GOEMOTIONS_28) == 28
    for table in (KOTE_44, GOEMOTIONS_28):
        for ekman, valence, arousal in table.values():
            assert ekman in EKMAN_LABELS and -1 <= valence <= 1 and -1 <= arousal <= 1
    # The table's fine labels agree in sign of valence with their Ekman centre (neutral/surprise excepted).
    for table in (KOTE_44, GOEMOTIONS_28):
        for ekman, valence, _ in table.values():
            if ekman not in ("neutral", "surprise"):
                assert np.sign(valence) == np.sign(EKMAN_VA[ekman][0])


def test_label_mapping_of_rows() -> None:
    assert to_ekman(["없음"], "kote") == "neutral"
    assert to_ekman(["슬픔", "절망", "기쁨"], "kote") == "sadness"
    assert to_ekman(["놀람", "기쁨"], "kote") == "surprise"  # tie → the more specific label
    assert to_ekman(["admiration", "gratitude"], "goemotions") == "joy"
    assert to_valence_arousal(["슬픔", "기쁨"], "kote") == pytest.approx((0.05, 0.025))
    with pytest.raises(ValueError):
        to_ekman(["x"], "unknown")


def test_every_label_in_the_data_is_mapped() -> None:
    kote = datasets.load_kote()
    assert {label for labels in kote.labels for label in labels} <= set(KOTE_44)
    fine = datasets.load_goemotions(fine=True)
    assert {label for labels in fine.labels for label in labels} <= set(GOEMOTIONS_28)


# --- deterministic splits -------------------------------------------------------------------------


def test_split_is_deterministic_and_disjoint() -> None:
    keys = [f"title {i}" for i in range(200)]
    strata = [str(i % 4) for i in range(200)]
    a = datasets.stable_split(keys, strata)
    b = datasets.stable_split(list(keys), list(strata))
    np.testing.assert_array_equal(a.test, b.test)
    assert not set(a.train) & set(a.test) and len(a.train) + len(a.test) == 200
    assert all(sum(1 for i in a.test if strata[i] == s) == 10 for s in "0123")  # 20 % of each stratum
    other_seed = datasets.stable_split(keys, strata, seed=1)
    assert set(other_seed.test) != set(a.test)


def test_book_split_matches_training_script() -> None:
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import train_text_models  # the script must use the same split function as the bench

    assert train_text_models.D is datasets
    books = datasets.load_book_titles()
    assert len(books.split.test) == 750 and len(set(books.category_ids[books.split.test])) == 30
    again = datasets.load_book_titles()
    np.testing.assert_array_equal(books.split.test, again.split.test)


# --- ensembles (log-probability averages of heads) ---------------------------------------------------


def test_ensemble_heads_are_stored_and_fold_fine_labels(models: TextModels) -> None:
    meta = json.loads((MODEL_DIR / META_FILE).read_text(encoding="utf-8"))
    emotion_en = meta["heads"]["emotion_en"]
    assert emotion_en["kind"] == "ensemble" and emotion_en["classes"] == list(EKMAN_LABELS)
    fine_member = next(m for m in emotion_en["members"] if m["head"] == "emotion_en_fine")
    with np.load(MODEL_DIR / HEADS_FILE, allow_pickle=False) as npz:
        mapping = npz[fine_member["map"]]
    # 28 GoEmotions labels, each folded into exactly one Ekman label, as the label table says.
    fine_classes = meta["heads"]["emotion_en_fine"]["classes"]
    assert mapping.shape == (28, 7) and np.all(mapping.sum(axis=1) == 1)
    for row, label in zip(mapping, fine_classes, strict=True):
        assert EKMAN_LABELS[int(np.argmax(row))] == GOEMOTIONS_28[label][0]
    probs = models.emotion_probabilities(["I am so angry right now, this makes me furious."], ["en"])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert EKMAN_LABELS[int(np.argmax(probs[0]))] == "anger"


def test_topic_description_prototypes_point_at_their_category(models: TextModels) -> None:
    from engine.text.labels import TOPIC_DESCRIPTIONS

    assert set(TOPIC_DESCRIPTIONS) == set(range(len(BOOK_CATEGORIES)))
    desc_head = models.heads["topic_desc"]
    ids = desc_head.classes
    texts = [TOPIC_DESCRIPTIONS[i] for i in ids]
    probs = desc_head.score({"use": models.embed(texts)})
    # Each description is nearest to its own prototype: the columns are in class order.
    assert [ids[j] for j in np.argmax(probs, axis=1)] == ids


# --- Korean morpheme features, one-vs-rest heads, stored V/A gain --------------------------------------


def test_morpheme_strings_split_korean_endings() -> None:
    from engine.text.models import morpheme_strings

    got = morpheme_strings(["영화가 정말 재밌었다", "", "good movie"])
    assert len(got) == 3
    tokens = got[0].split()
    assert all("/" in t for t in tokens)
    assert "영화/NNG" in tokens and any(t.startswith("재밌/") for t in tokens)  # stem split from 었다
    assert got[1] == ""  # an empty text gives no tokens, not an error


def test_korean_sentiment_reads_inflected_forms(models: TextModels) -> None:
    # The NB-SVM member sees morphemes, so the same stems in other endings still count.
    meta = models.meta["heads"]["sentiment_ko"]
    assert meta["blocks"] == ["use", "char_ko", "morph_ko"]
    probs = models.sentiment(
        ["배우들 연기가 너무 좋았고 다시 보고 싶네요", "지루하고 유치해서 보다가 잠들었습니다"], ["ko", "ko"]
    )
    assert probs[0] > 0.5 > probs[1]


def test_english_emotion_ensemble_has_a_one_vs_rest_character_member(models: TextModels) -> None:
    members = {m["head"] for m in models.meta["heads"]["emotion_en"]["members"]}
    assert "emotion_en_chars" in members
    head = models.heads["emotion_en_chars"]
    assert head.kind == "ovr"
    probs = models.emotion_probabilities(["I'm terrified of what happens next."], ["en"])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_va_gain_is_stored_with_the_heads_and_used_by_the_analyzer(models: TextModels) -> None:
    from engine.text.analyzer import Analyzer

    stored = models.meta["va_gain"]
    assert set(stored) == {"en", "ko", "other"}
    for gain_v, gain_a in stored.values():
        assert 1.0 < gain_v < 6.0 and 1.0 < gain_a < 6.0  # the heads under-spread the plane
    analyzer = Analyzer(models)
    assert analyzer.va_gain["ko"] == tuple(stored["ko"]) and analyzer.va_gain["en"] == tuple(stored["en"])
