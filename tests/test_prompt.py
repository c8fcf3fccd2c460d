"""Prompt builder: validation, canonical names, derived bpm/mode/energy, MusicCaps-style caption."""

from __future__ import annotations

import math

import pytest

from engine.catalogue import UnknownCategory, default_catalogue
from engine.errors import UserInputError
from engine.prompt import build_prompt, build_spec, parse_duration, parse_key
from engine.spec import MusicSpec


def test_example_caption():
    spec = build_spec(
        genres=["Lo-fi Hip Hop"],
        moods=["Calm", "Dreamy"],
        instruments=["Piano", "Drums"],
        keywords=["a rainy night"],
    )
    assert spec.prompt == (
        "A calm, dreamy instrumental lo-fi hip hop track featuring piano and drums. "
        "Slow tempo, 77 BPM, in a major key. Evokes a rainy night."
    )
    assert isinstance(spec, MusicSpec)
    assert spec.genres == ("Lo-fi Hip Hop",) and spec.moods == ("Calm", "Dreamy")
    assert spec.instruments == ("Piano", "Drums") and spec.keywords == ("a rainy night",)
    assert (spec.tempo, spec.bpm, spec.mode, spec.key, spec.duration) == ("Slow", 77, "major", None, 15.0)
    assert spec.energy == 0.25


def test_deterministic_and_korean_equals_english():
    english = build_spec(
        genres=["Lofi", "Jazz"], moods=["Calm"], instruments=["Piano"], tempo="Slow", duration="0:30"
    )
    korean = build_spec(
        genres=["로파이", "재즈"], moods=["차분한"], instruments=["피아노"], tempo="느리게", duration="30초"
    )
    again = build_spec(genres=["lofi", "JAZZ"], moods="calm", instruments="piano", tempo="slow", duration=30)
    assert english == korean == again
    assert english.prompt.isascii()  # MusicGen's T5 vocabulary is English


def test_comma_separated_strings_and_duplicates():
    spec = build_spec(genres="Lofi, 로파이, lo-fi", moods=("Sad，Lonely",))
    assert spec.genres == ("Lofi",) and spec.moods == ("Sad", "Lonely")


@pytest.mark.parametrize("kind", ["genres", "moods", "instruments"])
def test_at_most_five_per_kind(kind):
    names = [e.en for e in default_catalogue().list(kind)[:6]]
    build_spec(**{kind: names[:5]})
    with pytest.raises(UserInputError, match=r"Too many .*\(6\).*at most 5"):
        build_spec(**{kind: names})


def test_keyword_limits():
    build_spec(keywords=["x" * 60])
    with pytest.raises(UserInputError, match="under 61 characters"):
        build_spec(keywords=["x" * 61])
    with pytest.raises(UserInputError, match="at most 5"):
        build_spec(keywords=["a", "b", "c", "d", "e", "f"])
    with pytest.raises(UserInputError, match="control characters"):
        build_spec(keywords=["rain\x00y"])
    spec = build_spec(keywords=["  rainy \n night ", "Rainy Night", ""])
    assert spec.keywords == ("rainy night",)  # whitespace collapsed, case-insensitive duplicate dropped


def test_free_prompt():
    only = build_spec(prompt="  epic   orchestral battle music ")
    assert only.prompt == "Epic orchestral battle music."  # used as the base; no invented tempo
    assert only.bpm == 100 and only.energy == 0.5
    with_tempo = build_spec(prompt="epic orchestral battle music", tempo=140)
    assert with_tempo.prompt == "Epic orchestral battle music. Fast tempo, 140 BPM."
    appended = build_spec(genres=["Jazz"], prompt="like a smoky club at 2 am")
    assert appended.prompt.endswith(". Like a smoky club at 2 am.") and appended.prompt.startswith(
        "An instrumental jazz"
    )
    with pytest.raises(UserInputError, match="under 401"):
        build_spec(prompt="x" * 401)


def test_nothing_to_make_is_an_error():
    with pytest.raises(UserInputError, match="at least one genre"):
        build_spec()
    with pytest.raises(UserInputError, match="at least one genre"):
        build_spec(genres=[" "], keywords=[""], prompt="   ")


def test_unknown_name_raises_with_suggestions():
    with pytest.raises(UnknownCategory) as info:
        build_spec(genres=["Lofi", "jaz"])
    assert info.value.suggestions[0] == "Jazz"
    with pytest.raises(UserInputError):
        build_spec(genres=[3])


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (15, 15.0), ("15", 15.0), ("0:15", 15.0), ("1:00", 60.0), ("15s", 15.0), ("15 sec", 15.0),
        ("2:30", 150.0), ("1m30s", 90.0), ("1 min", 60.0), ("30초", 30.0), ("1분", 60.0), (7.5, 7.5),
        ("5", 5.0), ("3:00", 180.0),
    ],
)  # fmt: skip
def test_duration_formats(value, seconds):
    assert parse_duration(value) == seconds
    assert isinstance(parse_duration(value), float)


@pytest.mark.parametrize(
    "value", [4, 181, "3:01", "0:04", "abc", "1:5", True, float("nan"), -15, None, "15 hours"]
)
def test_duration_rejected(value):
    with pytest.raises(UserInputError, match="Duration"):
        parse_duration(value)


def test_duration_in_spec():
    assert build_spec(genres="Pop", duration="1:00").duration == 60.0
    assert build_spec(genres="Pop", duration=None).duration == 15.0
    with pytest.raises(UserInputError, match="5 s to 3:00"):
        build_spec(genres="Pop", duration=200)


def test_explicit_bpm():
    spec = build_spec(genres=["Lofi"], tempo=92)
    assert (spec.bpm, spec.tempo) == (92, "Medium") and "Medium tempo, 92 BPM" in spec.prompt
    assert build_spec(genres=["Lofi"], tempo="150 bpm").tempo == "Fast"
    assert build_spec(genres=["Lofi"], tempo="느리게").bpm == 72
    with pytest.raises(UserInputError, match="40 to 220"):
        build_spec(genres=["Lofi"], tempo=300)
    with pytest.raises(UnknownCategory):
        build_spec(genres=["Lofi"], tempo="warp speed")


def test_default_bpm_follows_genre_and_mood_energy():
    calm, party = build_spec(moods=["Calm"]), build_spec(moods=["Party"])
    assert calm.tempo == "Slow" and party.tempo == "Fast" and calm.bpm < party.bpm
    assert build_spec(genres=["Drum and Bass"]).bpm == 174  # the genre's typical tempo
    lofi_calm, lofi_energetic = (
        build_spec(genres="Lofi", moods="Calm"),
        build_spec(genres="Lofi", moods="Energetic"),
    )
    assert lofi_calm.bpm < 80 < lofi_energetic.bpm < 90  # nudged, not replaced
    plain = build_spec(keywords=["rainy night"])
    assert plain.bpm == 100 and "BPM" not in plain.prompt  # nothing to derive a tempo from: not stated


def test_mode_majority_tie_and_overrides():
    assert build_spec(moods=["Sad", "Dark", "Happy"]).mode == "minor"
    assert build_spec(moods=["Happy", "Calm", "Sad"]).mode == "major"
    # one major and one minor mood: the sign of their summed valence decides
    assert build_spec(moods=["Cheerful", "Heartbroken"]).mode == "minor"  # 0.80 - 0.85 < 0
    assert build_spec(moods=["Cheerful", "Lonely"]).mode == "major"  # 0.80 - 0.60 > 0
    assert build_spec(moods=["Lonely", "Cheerful"]).mode == "major"  # order does not matter
    assert build_spec(moods=["Happy"], mode="minor").mode == "minor"
    assert build_spec(moods=["Happy"], mode="단조").mode == "minor"
    assert build_spec(genres=["Heavy Metal"]).mode == "minor"  # genre lean when no moods
    spec = build_spec(moods=["Happy"], key="Am")
    assert (spec.key, spec.mode) == ("A", "minor") and "in A minor" in spec.prompt
    assert build_spec(genres="Pop", key="f#").key == "F#"
    with pytest.raises(UserInputError, match="major or minor"):
        build_spec(genres="Pop", mode="lydian")
    with pytest.raises(UserInputError, match="Key 'H'"):
        build_spec(genres="Pop", key="H")


def test_parse_key():
    assert parse_key("Bb") == ("Bb", None)
    assert parse_key("c minor") == ("C", "minor")
    assert parse_key("E♭ maj") == ("Eb", "major")
    assert parse_key("Dm") == ("D", "minor")


def test_energy_from_moods_or_tempo():
    assert build_spec(moods=["Calm", "Peaceful"]).energy == pytest.approx(0.18, abs=0.01)
    assert build_spec(moods=["Angry"]).energy == 0.9
    slow, fast = build_spec(genres="Jazz", tempo="Slow"), build_spec(genres="Jazz", tempo="Fast")
    assert 0 <= slow.energy < fast.energy <= 1


def test_caption_wording():
    edm = build_spec(genres=["EDM", "House", "Techno"], moods=["Upbeat"], instruments=["Synthesizer", "808"])
    assert edm.prompt.startswith(
        "An upbeat instrumental track blending EDM, house and techno, featuring synthesizer and 808 bass."
    )
    assert build_spec(genres=["EDM"]).prompt.startswith("An instrumental EDM track.")
    assert build_spec(genres=["R&B"], moods=["Romantic"]).prompt.startswith(
        "A romantic instrumental R&B track."
    )
    wedding = build_spec(genres="Jazz", moods=["Wedding", "Love"], instruments="Strings")
    assert wedding.prompt.startswith("A loving instrumental jazz track featuring strings.")
    assert "It could be played at a wedding." in wedding.prompt
    two = build_spec(genres=["Lofi", "Jazz"], instruments=["Piano", "Bass", "Drums"])
    assert two.prompt.startswith(
        "An instrumental lo-fi and jazz track featuring piano, bass guitar and drums."
    )
    korean = build_spec(genres=["국악"], keywords=["크리스마스"])
    assert "Korean traditional track" in korean.prompt and "Evokes Christmas." in korean.prompt


def test_vocals_keyword_drops_instrumental():
    assert "instrumental" not in build_spec(genres="Pop", keywords=["female vocals"]).prompt
    assert "instrumental" not in build_spec(instruments="Chant").prompt
    assert "instrumental" in build_spec(genres="Pop", keywords=["sunset"]).prompt


def test_caption_is_tidy_for_many_combinations():
    cat = default_catalogue()
    genres = [e.en for e in cat.list("genres")]
    moods = [e.en for e in cat.list("moods")]
    instruments = [e.en for e in cat.list("instruments")]
    for i in range(60):  # a deterministic walk through many combinations
        spec = build_spec(
            genres=genres[i % len(genres) : i % len(genres) + i % 4],
            moods=moods[(3 * i) % len(moods) : (3 * i) % len(moods) + i % 3],
            instruments=instruments[(7 * i) % len(instruments) : (7 * i) % len(instruments) + 1 + i % 3],
        )
        text = spec.prompt
        assert (
            text.isascii()
            and text.endswith(".")
            and "  " not in text
            and " ," not in text
            and ".." not in text
        )
        assert text[0].isupper()
        assert 40 <= spec.bpm <= 220 and spec.mode in ("major", "minor") and 0 <= spec.energy <= 1
        assert not math.isnan(spec.energy)


def test_build_prompt_directly():
    text = build_prompt(genres=["Jazz"], moods=["Calm"], tempo="Slow", bpm=70, mode="minor")
    assert text == "A calm instrumental jazz track. Slow tempo, 70 BPM, in a minor key."
    assert build_prompt(genres=["Jazz"]) == "An instrumental jazz track."
    assert build_prompt(genres=["Jazz"]) == build_prompt(genres=("Jazz",))


def test_reasons_pass_through():
    spec = build_spec(genres="Jazz", reasons=["topic Cookbooks → Jazz"])
    assert spec.reasons == ("topic Cookbooks → Jazz",)
