"""Text mode end to end: document → analysis → MusicSpec, the CLI, and the batch JSONL output."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from engine.errors import UserInputError
from engine.spec import MusicSpec
from engine.text.analyzer import (
    BPM_HIGH,
    BPM_LOW,
    GENERAL_GENRES,
    TOPIC_MIN_CONFIDENCE,
    Analysis,
    Analyzer,
    general_genres,
    spec_from_file,
)
from engine.text.ingest import EmptyDocument, FileTooLarge, NotText
from engine.text.labels import EKMAN_LABELS
from textunes.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
HAPPY_EN = (FIXTURES / "happy_en.txt").read_text(encoding="utf-8")
SAD_KO = (FIXTURES / "sad_ko.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer.load()


@pytest.fixture(scope="module")
def happy(analyzer: Analyzer) -> Analysis:
    return analyzer.analyze(HAPPY_EN)


@pytest.fixture(scope="module")
def sad(analyzer: Analyzer) -> Analysis:
    return analyzer.analyze(SAD_KO)


def _check_consistent(a: Analysis, analyzer: Analyzer) -> None:
    """Invariants every analysis must satisfy, whatever the models predict."""
    assert 1 <= len(a.summary) <= 5
    assert a.topic["top3"][0]["id"] == a.topic["id"] and len(a.topic["top3"]) == 3
    top_scores = [t["score"] for t in a.topic["top3"]]
    assert top_scores == sorted(top_scores, reverse=True) and 0 < a.topic["score"] <= 1
    assert set(a.emotion["scores"]) == set(EKMAN_LABELS)
    assert abs(sum(a.emotion["scores"].values()) - 1) < 1e-3
    assert -1 <= a.valence <= 1 and -1 <= a.arousal <= 1
    # genres come from the topic table (the top topic, or the runner-up when it is close), or from
    # the general list when the topic is only a guess
    cat = analyzer.catalogue
    allowed = set(cat.topic_genres(a.topic["id"])) | set(cat.topic_genres(a.topic["top3"][1]["id"]))
    if a.topic["score"] < TOPIC_MIN_CONFIDENCE:
        allowed = set(GENERAL_GENRES)
    allowed_keys = {cat.resolve(kind, g).en for g in allowed for kind in ("genres", "instruments", "moods")
                    if cat.get(kind, g)}  # fmt: skip
    assert a.genres and set(a.genres) <= allowed_keys
    assert a.moods
    assert a.mode == ("minor" if a.valence < 0 else "major")
    assert a.spec.mode == a.mode and isinstance(a.spec, MusicSpec)
    assert a.prompt == a.spec.prompt and a.prompt
    assert any(a.topic["name"] in r for r in a.reasons)


def test_happy_english_text(happy: Analysis, analyzer: Analyzer) -> None:
    _check_consistent(happy, analyzer)
    assert happy.language == "en"
    assert happy.title == "A Summer Festival by the Sea"
    assert len(happy.summary) == 3
    assert happy.valence > 0.1 and happy.mode == "major"
    assert happy.emotion["label"] == "joy" and "Happy" in happy.moods
    expected_bpm = round(BPM_LOW + (happy.arousal + 1) / 2 * (BPM_HIGH - BPM_LOW))
    assert happy.bpm == expected_bpm and happy.spec.bpm == expected_bpm
    assert any(f"{expected_bpm} BPM" in r for r in happy.reasons)
    assert not happy.overrides


def test_unsure_topic_falls_back_to_general_genres(happy: Analysis, analyzer: Analyzer) -> None:
    # The festival text is about no book category: its best topic (it used to be "Calendars" and
    # gave Lullaby/Meditation picks) is a weak guess, so the genres follow the text's energy instead.
    assert happy.topic["score"] < TOPIC_MIN_CONFIDENCE
    assert happy.genres and set(happy.genres) <= set(GENERAL_GENRES)
    energy = (happy.arousal + 1) / 2
    assert happy.genres[0] == general_genres(analyzer.catalogue, energy, happy.valence)[0]
    assert not set(happy.genres) & {"Lullaby", "Meditation"}  # nothing sleepy for an excited text
    reason = next(r for r in happy.reasons if "only a guess" in r)
    assert happy.topic["name"] in reason and ", ".join(happy.genres) in reason


def test_confident_topic_keeps_its_genre_table(analyzer: Analyzer) -> None:
    a = analyzer.analyze("Learn Python Programming: A Beginner's Guide to Coding and Software")
    assert a.topic["name"] == "Computers & Technology" and a.topic["score"] >= TOPIC_MIN_CONFIDENCE
    assert set(a.genres) <= set(analyzer.catalogue.topic_genres(a.topic["id"]))
    assert not any("only a guess" in r for r in a.reasons)
    assert any(r.startswith("topic Computers & Technology") for r in a.reasons)


def test_general_genres_follow_energy_and_valence(analyzer: Analyzer) -> None:
    cat = analyzer.catalogue
    assert general_genres(cat, 0.1, 0.0)[0] == "Ambient"  # calm
    assert general_genres(cat, 0.65, 0.7)[0] == "Pop"  # lively and bright
    assert general_genres(cat, 0.55, -0.6)[0] == "Cinematic"  # tense and dark
    assert sorted(general_genres(cat, 0.5, 0.0)) == sorted(GENERAL_GENRES)


def test_sad_korean_text(sad: Analysis, happy: Analysis, analyzer: Analyzer) -> None:
    _check_consistent(sad, analyzer)
    assert sad.language == "ko"
    assert sad.valence < 0 and sad.mode == "minor"
    assert sad.valence < happy.valence
    assert sad.emotion["label"] == "sadness"
    assert "Sad" in sad.moods
    assert any("sadness" in r for r in sad.reasons)
    for sentence in sad.summary:
        assert sentence in SAD_KO


def test_user_choices_win_over_the_analysis(analyzer: Analyzer, sad: Analysis) -> None:
    a = analyzer.analyze(
        SAD_KO, tempo="Fast", duration="0:30", keywords=("rainy window",), instruments=("Cello",)
    )
    assert a.spec.tempo == "Fast" and a.tempo == "Fast"
    assert a.bpm == analyzer.catalogue.tempo("Fast").bpm
    assert a.spec.duration == 30
    assert "rainy window" in a.spec.keywords and "rainy window" in a.prompt
    assert a.instruments == ["Cello"] and a.spec.instruments == ("Cello",)
    assert set(a.overrides) == {"tempo", "duration", "keywords", "instruments"}
    assert any("your choice" in r for r in a.reasons)
    # the analysis itself is unchanged by the overrides
    assert a.emotion == sad.emotion and a.topic == sad.topic and a.mode == "minor"
    bpm_override = analyzer.analyze(SAD_KO, tempo=150)
    assert bpm_override.bpm == 150


def test_batch_matches_single_analyses(analyzer: Analyzer, happy: Analysis, sad: Analysis) -> None:
    title = "The Complete Guide to Sourdough Baking"
    batch = analyzer.analyze_batch([HAPPY_EN, title, SAD_KO])
    single_title = analyzer.analyze(title)
    for got, want in zip(batch, [happy, single_title, sad], strict=True):
        assert got.summary == want.summary
        assert got.topic["id"] == want.topic["id"]
        assert got.emotion["label"] == want.emotion["label"]
        assert got.valence == pytest.approx(want.valence, abs=1e-3)
        assert got.genres == want.genres and got.prompt == want.prompt
    assert batch[1].summary == [title]


def test_other_language_is_analysed_and_labelled(analyzer: Analyzer) -> None:
    text = "La pluie tombait doucement sur la ville. Les enfants riaient dans les rues et chantaient."
    a = analyzer.analyze(text)
    assert a.language == "other" and a.language_name == "other"
    _check_consistent(a, analyzer)


def test_to_dict_is_json_ready(happy: Analysis) -> None:
    data = json.loads(json.dumps(happy.to_dict(), ensure_ascii=False))
    for key in ("language", "summary", "topic", "emotion", "valence", "arousal", "genres", "moods",
                "tempo", "bpm", "mode", "prompt", "reasons", "spec", "truncated", "chars"):  # fmt: skip
        assert key in data
    assert data["spec"]["prompt"] == happy.prompt and data["spec"]["genres"] == happy.genres
    assert data["topic"]["top3"][0]["name"] == happy.topic["name"]
    assert len(data["model_va"]) == 2 and data["model_va"] != [0.0, 0.0]  # the heads' raw output is kept


def test_bad_text_input(analyzer: Analyzer) -> None:
    with pytest.raises(EmptyDocument):
        analyzer.analyze("   ")
    with pytest.raises(NotText):
        analyzer.analyze("\x00\x01\x02\x03\x04\x05\x06\x07")


def test_long_document_is_sampled_and_flagged(analyzer: Analyzer) -> None:
    from engine.text.ingest import read_document

    paragraphs = [
        f"On day {i} the festival crowd sang and danced by the bright harbour." for i in range(4000)
    ]
    doc = read_document("\n\n".join(paragraphs).encode(), "diary.txt", max_chars=50_000)
    a = analyzer.analyze_document(doc)
    assert a.truncated and a.chars <= 50_000 and a.to_dict()["truncated"] is True
    assert len(a.summary) == 5
    days = [int(s.split()[2]) for s in a.summary]
    assert days == sorted(days)


# --- files ------------------------------------------------------------------------------------


def test_spec_from_cp949_file_equals_utf8_file(analyzer: Analyzer, sad: Analysis) -> None:
    analysis, spec = spec_from_file(FIXTURES / "sad_ko_cp949.txt", analyzer=analyzer, duration=20)
    assert spec is analysis.spec and spec.duration == 20
    assert analysis.summary == sad.summary and analysis.emotion == sad.emotion
    assert analysis.title == "떠나간 사람"


def test_spec_from_file_errors(tmp_path: Path, analyzer: Analyzer) -> None:
    with pytest.raises(UserInputError, match="No such file"):
        spec_from_file(tmp_path / "missing.txt", analyzer=analyzer)
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * 2_000_001)
    with pytest.raises(FileTooLarge):
        spec_from_file(big, analyzer=analyzer)


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_pretty_and_json(capsys: pytest.CaptureFixture[str], happy: Analysis) -> None:
    assert main(["analyze", str(FIXTURES / "happy_en.txt")]) == 0
    out = capsys.readouterr().out
    for label in (
        "summary:",
        "topic:",
        "emotion:",
        "valence:",
        "genres:",
        "moods:",
        "tempo:",
        "prompt:",
        "why:",
    ):
        assert label in out
    assert happy.prompt in out and happy.topic["name"] in out

    assert main(["analyze", str(FIXTURES / "sad_ko_utf16.txt"), "--json", "--tempo", "Slow"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["language"] == "ko" and data["tempo"] == "Slow" and data["overrides"] == ["tempo"]


def test_cli_bad_file_exits_2_with_a_friendly_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(FIXTURES / "binary_renamed.txt")]) == 2
    assert "PNG image" in capsys.readouterr().err
    assert main(["analyze"]) == 2
    assert "either a FILE" in capsys.readouterr().err


def test_cli_batch_writes_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"id": "1", "text": "We laughed all afternoon at the wonderful surprise party."},
        {"id": "2", "text": ""},  # an empty row is reported, not fatal
        {"id": "3", "text": "그 소식을 듣고 나는 밤새 울었다."},
    ]
    source = tmp_path / "rows.csv"
    with source.open("w", encoding="cp949", newline="") as handle:  # as Korean Excel saves it
        writer = csv.DictWriter(handle, fieldnames=["id", "text"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "results.jsonl"
    assert main(["analyze", "--batch", str(source), "--column", "text", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["row"] for line in lines] == [0, 1, 2]
    assert "empty" in lines[1]["error"]
    assert lines[0]["language"] == "en" and lines[2]["language"] == "ko"
    assert lines[0]["valence"] > lines[2]["valence"]
    for line in (lines[0], lines[2]):
        assert line["prompt"] and line["genres"] and line["emotion"]["label"] in EKMAN_LABELS
    assert "analysed 2 rows (1 skipped)" in capsys.readouterr().err

    assert main(["analyze", "--batch", str(source), "--column", "body"]) == 2
    err = capsys.readouterr().err
    assert "no column 'body'" in err and "Columns: id, text" in err

    before = out.read_bytes()  # a bad option is refused before --out is opened (and emptied)
    assert (
        main(["analyze", "--batch", str(source), "--column", "text", "--out", str(out), "--duration", "4"])
        == 2
    )
    assert "out of range" in capsys.readouterr().err and out.read_bytes() == before
