"""Whole documents get the mood a reader feels (issue 16): real stories in English and Korean, the
pooling rules of engine.text.mood, the stored document head, and the document-level dev sets."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from engine.text import datasets as D
from engine.text.analyzer import Analysis, Analyzer
from engine.text.labels import EKMAN_LABELS
from engine.text.mood import (
    DOC_HEAD_FILE,
    DOC_META_FILE,
    LITERARY_COLUMN,
    MODEL_FILES_DIR,
    DocumentHead,
    descriptions_digest,
    load_document_head,
    read_mood,
    salience_weights,
    shorten,
)

SAD_FAMILY = {"sadness", "fear"}

# The hand example of issue 16, written out.
STORY_EN = """The letter came on a Tuesday, in the grey envelope the army uses.
My mother read it standing in the hall and then sat down on the stairs without a word.
It said that my brother would not be coming home.
Outside it rained all afternoon, a slow rain that did not stop for anything.
Nobody lit the lamps.
The piano in the front room stayed closed; he was the only one of us who ever played it.
His coat still hung by the door, and his boots stood where he had left them.
At dinner we set one plate too many and no one had the heart to take it away.
In the evening the house was so quiet that I could hear the clock in the kitchen.
I went to his room and sat on his bed until it was dark.
"""
HAPPY_EN = """The whole town woke early on the morning of the summer festival, and everyone was smiling.
Children ran down to the beach with kites, laughing as the bright colours climbed into the sky.
Musicians played cheerful songs on the pier while families danced together in the warm sunshine.
When the fireworks burst over the water that night, the whole beach shouted with joy.
It was a wonderful celebration, and we are already excited for next year.
"""
ANGRY_EN = """I am absolutely furious about what the landlord did today.
He kept our deposit again and laughed when I asked for it back.
For three months he ignored the broken heating, and now he blames us for the damage.
I shouted at him in the hallway because I was so angry I could barely speak.
How dare he lie to our faces and threaten to throw us out?
I hate being treated like this, and I will not let him get away with it.
"""
FEAR_EN = """The power went out just after midnight and the house fell completely dark.
I heard slow footsteps on the stairs, although I was supposed to be alone.
My heart was pounding and I was too terrified to move or even breathe.
Something scratched at my bedroom door, again and again.
I hid under the blankets, shaking, praying that whatever it was would go away.
I have never been so scared in my life.
"""
SAD_KO = """할머니가 돌아가신 지 벌써 일 년이 되었다.
시골집 마당에는 아무도 돌보지 않은 꽃들이 말라 있었다.
부엌에 들어서자 할머니가 끓여 주시던 된장국 냄새가 떠올라 눈물이 났다.
방 안에는 할머니의 낡은 안경이 그대로 놓여 있었다.
나는 그 안경을 손에 쥐고 한참 동안 움직일 수 없었다.
창밖에는 차가운 바람이 불고 해가 천천히 지고 있었다.
이제 다시는 할머니의 목소리를 들을 수 없다는 사실이 가슴을 짓눌렀다.
"""
HAPPY_KO = """드디어 기다리던 여름 방학이 시작되었다.
친구들과 함께 바닷가로 여행을 떠나서 정말 신났다.
파란 하늘 아래에서 우리는 하루 종일 웃고 떠들며 수영을 했다.
저녁에는 해변에서 맛있는 고기를 구워 먹고 노래를 불렀다.
밤하늘에 불꽃놀이가 터지자 모두가 환호성을 질렀다.
이렇게 행복한 날이 또 있을까 싶을 만큼 즐거운 하루였다.
"""
ANGRY_KO = """오늘 가게 주인이 우리에게 한 짓을 생각하면 정말 화가 난다.
분명히 돈을 냈는데 안 냈다고 거짓말을 하면서 소리를 질렀다.
사과는커녕 오히려 우리를 도둑 취급하며 욕을 했다.
너무 억울하고 분해서 손이 떨릴 정도였다.
이런 식으로 손님을 무시하는 가게는 절대 용서할 수 없다.
"""
# Movie reviews (NSMC style): praise that cries, and a complaint — reviews, not stories.
REVIEWS_KO = """정말 감동적인 영화였어요 마지막 장면에서 펑펑 울었습니다.
배우들 연기가 최고였고 음악도 너무 좋았어요.
올해 본 영화 중에 최고입니다 강력 추천해요.
눈물 없이는 볼 수 없는 명작이네요 또 보고 싶어요.
"""
COMPLAINT_KO = """돈 아깝고 시간 아까운 최악의 영화.
스토리도 엉망이고 배우 연기도 어색해서 보다가 잠들었네요.
이런 영화에 평점 주는 사람들 이해가 안 됨 비추.
"""
FEAR_KO = """한밤중에 갑자기 집 안의 불이 모두 꺼졌다.
아무도 없어야 할 거실에서 누군가의 발소리가 천천히 들려왔다.
나는 너무 무서워서 숨도 제대로 쉴 수 없었다.
방문 손잡이가 조금씩 돌아가는 것을 보고 온몸이 얼어붙었다.
이불 속에 숨어 떨면서 제발 아무 일도 없기를 빌었다.
"""
# Longer Korean stories (8 sentences each), written for the Korean side of issue 16.
ANGRY_KO2 = """회사에 도착하자마자 팀장이 나를 회의실로 불렀다.
내가 밤새 만든 보고서를 자기가 만든 것처럼 사장님께 보고했다는 것이다.
게다가 실수한 부분은 전부 내 탓으로 돌렸다고 했다.
나는 얼굴이 화끈 달아오르고 주먹이 저절로 쥐어졌다.
참다못해 책상을 치며 그게 말이 되느냐고 소리쳤다.
팀장은 오히려 나에게 버릇이 없다며 큰소리를 쳤다.
그 뻔뻔한 얼굴을 보니 분노가 머리끝까지 치밀었다.
퇴근길 내내 이를 악물었고 도저히 화가 가라앉지 않았다.
"""
FEAR_KO2 = """산속에서 길을 잃은 지 세 시간이 넘었다.
해가 지자 숲은 순식간에 칠흑같이 어두워졌다.
휴대전화 배터리는 이미 꺼져 있었고 주위에는 아무도 없었다.
어디선가 나뭇가지가 부러지는 소리가 들렸다.
나는 숨을 죽이고 나무 뒤에 몸을 숨겼다.
무언가가 천천히 내 쪽으로 다가오는 것 같았다.
심장이 미친 듯이 뛰고 다리가 후들거려 한 발짝도 움직일 수 없었다.
살면서 그렇게 무서웠던 적은 한 번도 없었다.
"""
SAD_KO2 = """십 년 동안 함께 산 강아지가 오늘 아침 세상을 떠났다.
아이들은 학교에 가기 전에 작은 몸을 쓰다듬으며 울었다.
마당 한쪽에 묻어 주고 돌아오니 집이 텅 빈 것 같았다.
현관에는 아직도 강아지의 밥그릇이 놓여 있었다.
저녁이 되어도 아무도 그 그릇을 치우지 못했다.
산책 시간이 되자 나도 모르게 목줄을 찾고 있었다.
그 빈자리가 이렇게 클 줄은 몰랐다.
밤새 창밖의 비 소리를 들으며 잠을 이루지 못했다.
"""


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer.load()


@pytest.fixture(scope="module")
def readings(analyzer: Analyzer) -> dict[str, Analysis]:
    names = ["story_en", "happy_en", "angry_en", "fear_en", "sad_ko", "happy_ko", "angry_ko", "fear_ko"]
    texts = [STORY_EN, HAPPY_EN, ANGRY_EN, FEAR_EN, SAD_KO, HAPPY_KO, ANGRY_KO, FEAR_KO]
    names += ["reviews_ko", "complaint_ko", "angry_ko2", "fear_ko2", "sad_ko2"]
    texts += [REVIEWS_KO, COMPLAINT_KO, ANGRY_KO2, FEAR_KO2, SAD_KO2]
    return dict(zip(names, analyzer.analyze_batch(texts), strict=True))


def test_the_issue_story_is_sad_slow_and_minor(readings: dict[str, Analysis]) -> None:
    story = readings["story_en"]
    assert story.language == "en"
    assert story.emotion["label"] in SAD_FAMILY
    assert story.valence < 0 and story.mode == "minor"
    assert story.bpm <= 84 and story.tempo == "Slow"
    assert "Sad" in story.moods


def test_reasons_quote_the_sentences_that_carried_the_feeling(readings: dict[str, Analysis]) -> None:
    story = readings["story_en"]
    assert 1 <= len(story.feeling_quotes) <= 2
    for quote in story.feeling_quotes:
        assert len(quote) <= 70
        assert quote.rstrip("…") in " ".join(STORY_EN.split())  # a real (shortened) sentence of it
    quoted = [r for r in story.reasons if r.startswith("felt most in ")]
    assert len(quoted) == 1 and all(q in quoted[0] for q in story.feeling_quotes)
    assert quoted[0] in story.spec.reasons  # the spec carries the same reasons


@pytest.mark.parametrize(
    ("name", "labels", "positive"),
    [
        ("happy_en", {"joy"}, True),
        ("angry_en", {"anger"}, False),
        ("fear_en", {"fear"}, False),
        ("sad_ko", SAD_FAMILY, False),
        ("happy_ko", {"joy"}, True),
        ("sad_ko2", SAD_FAMILY, False),
        # Korean anger and fear stories often read as sadness (see NOTES-h-mood.md): the Korean
        # sentence head learnt KOTE comments, where fear is rare (23 of 1,000 held-out rows) and
        # grievance (서러움, "억울하다") maps to sadness, and the encoder puts these stories nearer the
        # sadness scenes than the fear ones. Only their negative family is asserted here.
        ("angry_ko", {"anger", "disgust", "fear", "sadness"}, False),
        ("fear_ko", {"anger", "disgust", "fear", "sadness"}, False),
        ("angry_ko2", {"anger", "disgust", "fear", "sadness"}, False),
        ("fear_ko2", {"anger", "disgust", "fear", "sadness"}, False),
    ],
)
def test_each_example_gets_its_feeling(
    readings: dict[str, Analysis], name: str, labels: set[str], positive: bool
) -> None:
    a = readings[name]
    assert a.emotion["label"] in labels, (a.emotion, a.reasons)
    assert (a.valence > 0) == positive
    assert a.mode == ("major" if positive else "minor")


def test_korean_anger_is_at_least_the_runner_up_reading(readings: dict[str, Analysis]) -> None:
    # a regression guard for the gap above: anger stays within the top two labels of both stories
    for name in ("angry_ko", "angry_ko2"):
        scores = readings[name].emotion["scores"]
        assert "anger" in sorted(scores, key=scores.get, reverse=True)[:2], scores


def test_sad_documents_are_slower_than_happy_ones(readings: dict[str, Analysis]) -> None:
    assert readings["story_en"].bpm + 20 <= readings["happy_en"].bpm
    # Korean arousal reads sad prose as mildly excited, so the gap is smaller (Medium, not Slow)
    assert readings["sad_ko"].bpm + 10 <= readings["happy_ko"].bpm


def test_korean_reviews_read_by_their_sentiment(readings: dict[str, Analysis]) -> None:
    # "울었습니다" (I cried) is praise in a review: the review's register lets the sentiment head in
    praise, complaint = readings["reviews_ko"], readings["complaint_ko"]
    assert praise.valence > 0 and praise.mode == "major", praise.reasons
    assert complaint.valence < 0 and complaint.mode == "minor", complaint.reasons
    assert any(r.startswith("review sentiment") for r in praise.reasons)


def test_analysis_with_quotes_pickles(readings: dict[str, Analysis]) -> None:
    story = readings["story_en"]
    again = pickle.loads(pickle.dumps(story))
    assert again.feeling_quotes == story.feeling_quotes and again.emotion == story.emotion


# --- pooling rules (no models: arrays stand in for the sentence heads' outputs) ----------------


def _probs(label: str, p: float) -> np.ndarray:
    row = np.full(len(EKMAN_LABELS), (1.0 - p) / (len(EKMAN_LABELS) - 1), dtype=np.float32)
    row[EKMAN_LABELS.index(label)] = p
    return row


def test_a_few_emotional_sentences_outweigh_many_neutral_ones() -> None:
    emo = np.stack([_probs("neutral", 0.55)] * 6 + [_probs("sadness", 0.9)] * 2)
    weights = salience_weights(emo)
    assert abs(weights.sum() - 1) < 1e-6 and weights[-1] > 3 * weights[0]
    sentences = [f"Plain sentence number {i}." for i in range(6)] + ["I cried all night.", "He is gone."]
    va = np.zeros((8, 2), dtype=np.float32)
    va[6:, 0] = -0.3
    mood = read_mood(sentences, emo, va, np.zeros((8, 512), np.float32), "en", head=None)
    # the plain mean would be neutral (0.46 vs 0.26); the salience-weighted reading is sadness
    assert float(emo.mean(axis=0)[EKMAN_LABELS.index("neutral")]) > 0.4
    assert mood.label == "sadness" and mood.valence < 0
    assert mood.quotes == ["I cried all night.", "He is gone."]


def _head_with_register(literary_logit: float) -> DocumentHead:
    register = np.zeros(513, dtype=np.float32)
    register[-1] = literary_logit  # bias only: every sentence reads this literary
    n = len(EKMAN_LABELS)
    return DocumentHead(
        np.eye(n, 512, dtype=np.float32), register, np.zeros((n, 52), np.float32), np.zeros(n, np.float32)
    )


def test_review_sentiment_counts_only_as_far_as_korean_text_reads_like_a_comment() -> None:
    emo = np.stack([_probs("sadness", 0.8)] * 4)  # "I cried ..." read as sadness
    va = np.full((4, 2), -0.3, dtype=np.float32)
    emb = np.zeros((4, 512), np.float32)
    praise = np.full(4, 0.95, dtype=np.float32)
    sentences = ["a.", "b.", "c.", "d."]
    review = read_mood(sentences, emo, va, emb, "ko", head=_head_with_register(-20.0), sentiment=praise)
    story = read_mood(sentences, emo, va, emb, "ko", head=_head_with_register(20.0), sentiment=praise)
    english = read_mood(sentences, emo, va, emb, "en", head=_head_with_register(-20.0), sentiment=praise)
    plain = read_mood(sentences, emo, va, emb, "ko", head=_head_with_register(-20.0))
    assert review.review_sentiment is not None and review.valence > plain.valence
    assert story.valence == pytest.approx(plain.valence, abs=1e-6) and story.valence < 0
    assert english.review_sentiment is None


def test_the_comment_neutral_offset_fades_with_the_literary_register() -> None:
    n = len(EKMAN_LABELS)
    neutral = EKMAN_LABELS.index("neutral")
    zero_weight, zero_bias = np.zeros((n, 52), np.float32), np.zeros(n, np.float32)
    meta = {"comment_neutral_offset": 0.4}
    head = DocumentHead(
        np.eye(n, 512, dtype=np.float32), np.zeros(513, np.float32), zero_weight, zero_bias, meta
    )
    comment, story = np.zeros((2, 52), np.float32), np.zeros((2, 52), np.float32)
    comment[:, LITERARY_COLUMN], story[:, LITERARY_COLUMN] = 0.0, 1.0
    p_comment, p_story = head.probabilities(comment)[0], head.probabilities(story)[0]
    assert p_comment[neutral] == pytest.approx(np.exp(0.4) / (np.exp(0.4) + n - 1), rel=1e-5)
    assert p_story == pytest.approx(np.full(n, 1.0 / n), rel=1e-5)  # prose: no raise at all
    stored = load_document_head(str(MODEL_FILES_DIR))
    assert stored is not None and 0.0 < stored.meta["comment_neutral_offset"] < 2.0


def test_neutral_documents_quote_their_strongest_valence() -> None:
    emo = np.stack([_probs("neutral", 0.9)] * 3)
    va = np.array([[0.01, 0.0], [-0.2, 0.0], [0.02, 0.0]], dtype=np.float32)
    mood = read_mood(["a b c d.", "e f g h.", "i j k l."], emo, va, np.zeros((3, 512), np.float32), "en")
    assert mood.label == "neutral" and mood.quotes[0] == "e f g h."


def test_shorten_cuts_at_a_word_boundary() -> None:
    text = "word " * 40
    short = shorten(text, limit=30)
    assert len(short) <= 30 and short.endswith("…") and short[:-1].strip().split() == ["word"] * 5
    assert shorten("  short   one ") == "short one"


# --- the stored document head -------------------------------------------------------------------


def test_document_head_is_small_arrays_matching_the_descriptions() -> None:
    path = MODEL_FILES_DIR / DOC_HEAD_FILE
    assert path.stat().st_size < 200_000
    with np.load(path, allow_pickle=False) as npz:  # no pickle inside
        assert set(npz.files) == {"prototypes", "register", "weight", "bias"}
    meta = json.loads((MODEL_FILES_DIR / DOC_META_FILE).read_text(encoding="utf-8"))
    assert meta["descriptions_sha256_16"] == descriptions_digest()  # retrain after editing them
    head = load_document_head(str(MODEL_FILES_DIR))
    assert head is not None and head.weight.shape == (len(EKMAN_LABELS), 52)
    assert np.allclose(np.linalg.norm(head.prototypes, axis=1), 1.0, atol=1e-4)
    assert head.share("en") == 1.0 and 0.0 < head.share("ko") < 1.0 and head.share("xx") == 0.0


def test_without_the_head_file_the_weighted_mean_is_used(tmp_path) -> None:
    assert load_document_head(str(tmp_path)) is None


# --- document-level dev sets --------------------------------------------------------------------


def test_document_sets_are_deterministic_and_parts_disjoint() -> None:
    report = D.emotion_documents(part="report", per_class=5)
    assert D.emotion_documents(part="report", per_class=5).texts == report.texts
    assert sorted(set(report.gold)) == sorted(EKMAN_LABELS) and len(report.texts) == 35
    other = D.emotion_documents(part="report", per_class=5, draw=1)
    assert other.gold == report.gold and other.texts != report.texts
    keys = [f"row {i}" for i in range(1000)]
    tune_rows, report_rows = D._part_rows(keys, "tune"), D._part_rows(keys, "report")
    assert not set(tune_rows) & set(report_rows) and len(tune_rows) + len(report_rows) == 1000
    diluted = D.emotion_documents(part="tune", per_class=2, emotional=3)
    assert "neutral" not in diluted.gold and len(diluted.texts) == 12
    with pytest.raises(ValueError):
        D.korean_documents(part="train")
    kote_tune, kote_report = (
        D.korean_emotion_documents(part="tune", per_class=3),
        D.korean_emotion_documents(per_class=3),
    )
    assert sorted(set(kote_report.gold)) == ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    assert not set(kote_tune.texts) & set(kote_report.texts)
    assert D.korean_emotion_documents(per_class=3).texts == kote_report.texts


def test_poem_report_part_uses_only_the_test_split() -> None:
    texts, labels, splits = D.load_poem_verses()
    test_verses = {t for t, s in zip(texts, splits, strict=True) if s == "test"}
    verses, stanzas = D.poem_documents(part="report", per_class=4)
    assert set(verses.texts) <= test_verses and set(verses.gold) == {-1, 1}
    assert all(set(s.split("\n")) <= test_verses for s in stanzas.texts)
    with pytest.raises(ValueError):
        D.poem_documents(part="dev")


def test_emobank_documents_group_sentences_of_one_source() -> None:
    docs = D.emobank_documents(part="report")
    assert docs.texts and all(-1 <= g <= 1 for g in docs.gold)
    tune = D.emobank_documents(part="tune")
    assert not set(docs.texts) & set(tune.texts)
