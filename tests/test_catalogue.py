"""The bilingual catalogue: source quality, lookups, suggestions, autocomplete, hints, db build."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.catalogue import (
    DEFAULT_DB,
    DEFAULT_SOURCE,
    KINDS,
    Catalogue,
    Entry,
    UnknownCategory,
    default_catalogue,
    name_key,
)
from engine.catalogue_build import SourceError, build, db_contents, differences, load_source, validate
from engine.errors import UserInputError

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SEED = SHARED / "seed" / "category_ver1.0.3.json"
HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return default_catalogue()


@pytest.fixture(scope="module")
def source() -> dict:
    return load_source(DEFAULT_SOURCE)


# --- the source: every defect of the seed fixed ---------------------------------------------------


def test_source_passes_its_own_rules(source):
    assert validate(source) == []


@pytest.mark.parametrize("kind", KINDS)
def test_english_values_are_ascii_complete_and_unique(source, kind):
    ens = [e["en"] for e in source[kind]]
    assert len(ens) == len(set(ens)), "duplicate English values"
    assert len({name_key(e) for e in ens}) == len(ens), "English values equal up to case/spacing"
    kos = [e["ko"] for e in source[kind]]
    assert len({name_key(k) for k in kos}) == len(kos), "duplicate Korean labels"
    for en in ens:
        assert en.isascii() and en.isprintable() and en == en.strip(), en
        assert not HANGUL.search(en)
        assert "`" not in en
    for ko in kos:
        assert ko == ko.strip() and ko


# the seed's known-bad forms: none may survive as an English value
KNOWN_BAD = {
    "Fi", "Sci", "Old School Hip", "Children`", "Children", "Melotron", "찬트", "희망을 주는", "Trip", "Neo",
    "Electric", "Musicbox", "Relaxation", "Kids", "Folk music", "Pop music", "Soul music", "Independent",
    "Guitars", "Drum", "DnB", "Drones", "Dancy",
}  # fmt: skip


@pytest.mark.parametrize("kind", ("genres", "moods", "instruments"))
def test_known_bad_forms_are_gone(source, kind):
    ens = {e["en"] for e in source[kind]}
    assert not ens & KNOWN_BAD
    for en in ens:  # no truncated compound ("Old School Hip", "Sci"), whatever the kind
        assert en.split()[-1] not in {"Hip", "Sci", "Lo", "Neo", "Trip", "Fi"}, en


def test_specific_fixes(cat):
    assert cat.resolve("moods", "펑키한").en == "Funky"
    assert cat.resolve("moods", "Funny").ko == "웃긴"
    assert cat.get("moods", "겁내는") is None  # "fearful" was paired with Funky: dropped, not kept as alias
    assert cat.resolve("instruments", "성가").en == "Chant"
    assert cat.resolve("instruments", "melotron").en == "Mellotron"
    assert cat.resolve("moods", "고양").en == "Uplifting"
    assert cat.resolve("moods", "과학").en == "Sci-Fi"
    assert cat.resolve("genres", "올드 스쿨 힙").en == "Old School Hip Hop"
    assert cat.resolve("genres", "유럽").en == "European"
    # merged duplicates: both old spellings reach one entry
    assert cat.resolve("instruments", "Acoustic guitar") == cat.resolve("instruments", "Acoustic Guitar")
    assert cat.resolve("instruments", "Drum") == cat.resolve("instruments", "Drums")
    assert (
        cat.resolve("genres", "Kids")
        == cat.resolve("genres", "Music for children")
        == cat.resolve("genres", "어린이")
    )
    assert cat.resolve("moods", "Relaxation") == cat.resolve("moods", "Relaxing")


@pytest.mark.skipif(not SEED.is_file(), reason="needs ../shared/seed")
def test_every_seed_label_is_kept_or_its_removal_explained(cat, source):
    seed = json.loads(SEED.read_text(encoding="utf-8"))
    for kind in ("genres", "moods", "instruments"):
        removed = {name_key(label) for item in source["removed"].get(kind, []) for label in item["seed"]}
        for tier in ("popular", "normal"):
            for ko, en in seed[kind][tier].items():
                for label in (ko, en):
                    assert cat.get(kind, label) is not None or name_key(label) in removed, (kind, label)
    for kind in ("genres", "moods", "instruments"):
        popular_seed = {name_key(ko) for ko in seed[kind]["popular"]}
        popular_now = {name_key(e.ko) for e in cat.list(kind, popular=True)}
        assert len(popular_now) == 15
        assert popular_seed == popular_now  # the Korean popular labels were right; all kept popular


@pytest.mark.skipif(not (SHARED / "README.md").is_file(), reason="needs ../shared/README.md")
def test_topic_table_keeps_the_slides_rows(cat):
    rows = re.findall(r"^\| (\d+) \| [^|]+ \| ([^|]+) \|$", (SHARED / "README.md").read_text(), re.MULTILINE)
    assert len(rows) == 11
    for topic_id, genres in rows:
        slide = tuple(cat.resolve("genres", g.strip()).en for g in genres.split(","))
        assert cat.topic_genres(int(topic_id)) == slide


def test_topic_table_is_complete(cat):
    topics = cat.topics()
    assert [t.id for t in topics] == list(range(32))
    genre_names = {e.en for e in cat.list("genres")}
    for t in topics:
        assert len(t.genres) == 5 and len(set(t.genres)) == 5, t
        assert set(t.genres) <= genre_names, t  # canonical names, not aliases
        assert t.name and t.ko
    assert cat.topic(28).name == "Test Preparation"
    with pytest.raises(KeyError):
        cat.topic_genres(32)


def test_added_genres_are_flagged(source):
    added = {g["en"] for g in source["genres"] if g.get("added")}
    assert {"Hymns", "Gospel", "Inspirational", "Piano", "Smooth Rock", "Suspense", "Meditation"} <= added
    seed_words = (
        {name_key(v) for v in json.loads(SEED.read_text())["genres"]["normal"].values()}
        if SEED.is_file()
        else set()
    )
    for name in added:
        assert name_key(name) not in seed_words


# --- lookups ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name", "en"),
    [
        ("genres", "lofi", "Lofi"),
        ("genres", "Lo-Fi", "Lofi"),
        ("genres", "  LO fi ", "Lofi"),
        ("genres", "로파이", "Lofi"),
        ("genres", "hip-hop", "Hip Hop"),
        ("genres", "힙합", "Hip Hop"),
        ("genres", "r and b", "R&B"),
        ("genres", "국악", "Korean Traditional Music"),
        ("moods", "차분한", "Calm"),
        ("moods", "CALM", "Calm"),
        ("moods", "sci fi", "Sci-Fi"),
        ("instruments", "피아노", "Piano"),
        ("instruments", "어쿠스틱 기타", "Acoustic Guitar"),
        ("tempos", "느리게", "Slow"),
        ("durations", "30초", "0:30"),
    ],
)
def test_resolve_korean_english_any_case(cat, kind, name, en):
    entry = cat.resolve(kind, name)
    assert isinstance(entry, Entry) and entry.en == en and entry.kind == kind


def test_singular_kind_names_accepted(cat):
    assert cat.resolve("genre", "jazz").en == "Jazz"
    with pytest.raises(ValueError):
        cat.list("colours")


def test_unknown_name_suggests_closest(cat):
    with pytest.raises(UnknownCategory) as info:
        cat.resolve("genres", "lofy")
    err = info.value
    assert isinstance(err, UserInputError)
    assert str(err) == "Unknown genre 'lofy'. Did you mean: Lofi, Lo-fi Hip Hop?"
    assert err.suggestions == ["Lofi", "Lo-fi Hip Hop"]
    assert cat.suggest("instruments", "pianno")[0] == "Piano"
    assert cat.suggest("moods", "funy")[:2] == ["Funky", "Funny"]
    assert cat.suggest("genres", "재스")[0] == "Jazz"  # Korean typo
    assert cat.suggest("moods", "Sci") == ["Sci-Fi"]


def test_unknown_name_without_matches_lists_popular(cat):
    with pytest.raises(UnknownCategory) as info:
        cat.resolve("moods", "qqqqzzzz")
    assert info.value.suggestions == []
    assert "Popular moods: Angry, Calm" in str(info.value)
    with pytest.raises(UnknownCategory):
        cat.resolve("genres", "")


def test_list_popular_and_search(cat):
    popular = cat.list("genres", popular=True)
    assert len(popular) == 15 and all(e.popular for e in popular)
    everything = cat.list("genres")
    assert everything[:15] == popular and len(everything) > 100
    assert [e.en for e in cat.list("genres", search="jazz")][:1] == ["Jazz"]
    assert {e.en for e in cat.list("genres", search="jazz")} == {"Jazz", "Modern Jazz", "Smooth Jazz"}
    assert [e.en for e in cat.list("moods", search="슬")] == ["Sad"]
    assert [e.en for e in cat.list("tempos")] == ["Slow", "Medium", "Fast"]


# --- autocomplete ----------------------------------------------------------------------------------


def test_complete_empty_gives_popular_first(cat):
    got = cat.complete("genres", "")
    assert len(got) == 25
    assert all(e.popular for e in got[:15]) and not any(e.popular for e in got[15:])


def test_complete_prefix_then_substring(cat):
    got = [e.en for e in cat.complete("genres", "lo")]
    assert got[0] == "Lofi" and "Lo-fi Hip Hop" in got[:3]
    assert got.index("Lounge") < got.index("Chill Out")  # prefix before substring
    rock = [e.en for e in cat.complete("genres", "rock")]
    assert rock[0] == "Rock" and {"Classic Rock", "Indie Rock", "Soft Rock"} <= set(rock)
    assert len(cat.complete("genres", "o", limit=5)) == 5
    assert len(cat.complete("genres", "o", limit=100)) <= 25


def test_complete_follows_hangul_as_it_is_typed(cat):
    # an IME shows 롶 (ㅍ as a final consonant) on the way to 로파이
    for partial in ("ㄹ", "로", "롶", "로파"):
        assert cat.complete("genres", partial)[0].en == "Lofi", partial
    assert cat.complete("moods", "차분")[0].en == "Calm"
    assert cat.complete("instruments", "바이")[0].en == "Violin"


# --- hints -------------------------------------------------------------------------------------------


def test_tempo_labels_and_bpm(cat):
    slow = cat.tempo("Slow")
    assert (slow.label, slow.bpm, slow.lo, slow.hi, slow.explicit) == ("Slow", 72, 60, 84, False)
    assert cat.tempo("빠르게").label == "Fast" and 128 <= cat.tempo("fast").bpm <= 140
    medium = cat.tempo("Medium")
    assert medium.lo <= 100 <= medium.hi
    for value, label in (
        (92, "Medium"),
        ("92", "Medium"),
        ("150 BPM", "Fast"),
        ("40", "Slow"),
        (220, "Fast"),
    ):
        info = cat.tempo(value)
        assert info.explicit and info.label == label and info.lo == info.hi == info.bpm
    assert cat.tempo("91.6").bpm == 92


@pytest.mark.parametrize("bad", [39, 221, "300 bpm", 0, -5, float("nan"), True])
def test_tempo_out_of_range(cat, bad):
    with pytest.raises(UserInputError, match="Slow"):
        cat.tempo(bad)


def test_tempo_unknown_word_suggests(cat):
    with pytest.raises(UnknownCategory) as info:
        cat.tempo("fsat")
    assert info.value.suggestions[0] == "Fast"


def test_instrument_programs(cat):
    assert cat.instrument_program("Piano").program == 0 and not cat.instrument_program("피아노").is_drum
    assert cat.instrument_program("violin").program == 40
    drums = cat.instrument_program("드럼")
    assert drums.is_drum and 36 in drums.drum_notes and 38 in drums.drum_notes
    for entry in cat.list("instruments"):
        gm = cat.instrument_program(entry.en)
        assert 0 <= gm.program <= 127
        assert bool(gm.drum_notes) == gm.is_drum
        assert all(27 <= n <= 87 for n in gm.drum_notes)


def test_mood_hints_are_musically_consistent(cat):
    sad, happy = cat.mood_hint("슬픔"), cat.mood_hint("happy")
    assert sad.mode == "minor" and sad.valence < 0 and happy.mode == "major" and happy.valence > 0
    assert cat.mood_hint("Angry").arousal > cat.mood_hint("Calm").arousal
    hints = [cat.mood_hint(e.en) for e in cat.list("moods")]
    minor = [h.valence for h in hints if h.mode == "minor"]
    major = [h.valence for h in hints if h.mode == "major"]
    assert sum(minor) / len(minor) < 0 < sum(major) / len(major)
    for h in hints:  # energy tracks arousal (it is what the arranger plays louder/denser)
        assert abs(h.energy - (h.arousal + 1) / 2) <= 0.2
        assert -1 <= h.valence <= 1 and -1 <= h.arousal <= 1 and 0 <= h.energy <= 1


def test_moods_near_picks_feelings(cat):
    assert "Sad" in [e.en for e in cat.moods_near(-0.75, -0.4)]
    assert {"Happy", "Cheerful"} & {e.en for e in cat.moods_near(0.8, 0.5)}
    assert cat.moods_near(0.5, -0.7, k=1)[0].en in {"Peaceful", "Relaxing", "Calm", "Soothing", "Serene"}
    assert len(cat.moods_near(0, 0, k=4)) == 4
    themes = {e.en for e in cat.list("moods") if cat.mood_hint(e.en).theme}
    assert "Wedding" in themes
    for v in (-1, 0, 1):
        for a in (-1, 0, 1):
            assert not {e.en for e in cat.moods_near(v, a, k=5)} & themes
    assert cat.moods_near(5, 5, k=1) == cat.moods_near(1, 1, k=1)  # clamped
    with pytest.raises(ValueError):
        cat.moods_near(float("nan"), 0)


# --- the db ------------------------------------------------------------------------------------------


def test_committed_db_matches_source():
    assert differences(DEFAULT_SOURCE, DEFAULT_DB) == [], "run `textunes categories build`"


def test_db_check_notices_an_edit(tmp_path, source):
    edited = json.loads(json.dumps(source))
    edited["genres"][0]["ko"] = "어쿠스틱 음악"
    path = tmp_path / "categories.json"
    path.write_text(json.dumps(edited, ensure_ascii=False), encoding="utf-8")
    problems = differences(path, DEFAULT_DB)
    assert any("entries" in p for p in problems) and any("names" in p for p in problems)
    db = tmp_path / "categories.db"
    build(path, db)
    assert differences(path, db) == []
    assert Catalogue(db).resolve("genres", "어쿠스틱 음악").en == "Acoustic"


def test_rebuild_is_identical_in_content(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    build(DEFAULT_SOURCE, a)
    build(DEFAULT_SOURCE, b)
    assert db_contents(a) == db_contents(b)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["genres"].append({"en": "lofi", "ko": "새 장르", "popular": False}), "clashes"),
        (lambda d: d["moods"].append(dict(d["moods"][0], en="Angrier", ko="화난")), "clashes"),
        (lambda d: d["topics"][0]["genres"].__setitem__(0, "Polka"), "unknown genre"),
        (lambda d: d["instruments"][0].__setitem__("gm", 128), "GM program"),
        (lambda d: d["moods"][0].__setitem__("valence", 1.5), "valence"),
        (lambda d: d["genres"][0].__setitem__("en", "Akustik 음악"), "ASCII"),
    ],
)
def test_build_refuses_a_broken_source(tmp_path, source, mutate, message):
    doc = json.loads(json.dumps(source))
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(SourceError, match=message):
        build(path, tmp_path / "bad.db")
    assert not (tmp_path / "bad.db").exists()


def test_missing_db_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="textunes categories build"):
        Catalogue(tmp_path / "nope.db")


def test_works_from_any_directory_without_heavy_imports(tmp_path):
    code = (
        "import sys; from engine.catalogue import default_catalogue; import engine.prompt as p;"
        "c = default_catalogue(); print(c.resolve('genres', '로파이').en, p.build_spec(genres='lofi').bpm);"
        "print(sorted(m for m in ('torch', 'discord', 'transformers') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["Lofi 80", "[]"]


# --- CLI ---------------------------------------------------------------------------------------------


def test_cli_lists_popular_genres(capsys):
    from textunes.cli import main

    assert main(["categories", "genres", "--popular"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.endswith("*")]
    assert len(rows) == 15
    assert any("Lofi" in r and "로파이" in r for r in rows)
    assert "15 popular genres" in out


def test_cli_search_details_topics_and_check(capsys, tmp_path):
    from textunes.cli import main

    assert main(["categories", "instruments", "--search", "피아노", "--details"]) == 0
    out = capsys.readouterr().out
    assert "Piano" in out and "GM program" in out and "Toy Piano" in out
    assert main(["categories", "moods", "--search", "zzzzqqq"]) == 1
    assert main(["categories", "topics"]) == 0
    assert "Test Preparation" in capsys.readouterr().out
    assert main(["categories", "build", "--check"]) == 0
    db = tmp_path / "c.db"
    assert main(["categories", "build", "--db", str(db)]) == 0
    assert differences(DEFAULT_SOURCE, db) == []
    capsys.readouterr()
    broken = tmp_path / "broken.json"
    broken.write_text('{"genres": [,]}', encoding="utf-8")  # a reviewer's typo: one line, where it is
    assert main(["categories", "build", "--source", str(broken), "--db", str(tmp_path / "b.db")]) == 1
    err = capsys.readouterr().err
    assert (
        f"{broken} is not valid JSON: Expecting value at line 1, column 13" in err and "unexpected" not in err
    )
    assert not (tmp_path / "b.db").exists()
