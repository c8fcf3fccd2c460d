"""engine.store: migrations, jobs -> spec, audio round trip, retention, settings (delivery: test_ledger)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from engine.errors import UserInputError
from engine.spec import MusicSpec, Track
from engine.store import (
    GUILD_DEFAULTS,
    USER_DEFAULTS,
    SettingsError,
    Store,
    StoreError,
    TrackFileMissing,
    UnknownTrack,
    available_migrations,
    spec_from_request,
    spec_to_request,
)

SPEC = MusicSpec(
    prompt="A calm lofi track with piano and soft drums, 80 bpm",
    genres=("Lofi",),
    moods=("Calm", "Dreamy"),
    instruments=("Piano",),
    keywords=("rain",),
    tempo="Slow",
    bpm=80,
    mode="minor",
    key="F#",
    energy=0.3,
    duration=2.0,
    reasons=("calm because the text is quiet",),
)


class Clock:
    """Deterministic, strictly increasing time so ordering tests do not depend on the wall clock."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def make_track(
    seconds: float = 2.0, rate: int = 32000, channels: int = 1, freq: float = 440.0, **kw
) -> Track:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t) * np.minimum(1.0, t * 4)  # short fade-in: no click
    audio = np.stack([wave * (1.0 - 0.2 * c) for c in range(channels)]).astype(np.float32)
    return Track(audio=audio, sample_rate=rate, spec=SPEC, seed=kw.pop("seed", 1234), backend="arranger",
                 model="test-sf2", **kw)  # fmt: skip


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "db" / "textunes.db", clock=Clock())
    yield s
    s.close()


def new_job(store: Store, user: str = "u1", **kw):
    return store.create_job(user_id=user, request=spec_to_request(SPEC, samples=2, seed=7), **kw)


# ------------------------------------------------------------------------------------------------
# migrations
# ------------------------------------------------------------------------------------------------
def test_migrations_apply_on_fresh_db_and_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    latest = available_migrations()[-1].version
    with Store.open(path) as s:
        assert s.schema_version == latest >= 2
        assert {"jobs", "tracks", "favorites", "user_settings", "guild_settings", "guild_categories",
                "guild_presets"} <= set(s.db.table_names())  # fmt: skip
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Store.open(path) as s:  # reopening applies nothing twice
        rows = s.db.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        assert [r[0] for r in rows] == list(range(1, latest + 1))


def test_upgrade_from_version_1_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Store.open(path, migrate_to=1, clock=Clock()) as old:
        assert old.schema_version == 1
        assert "guild_presets" not in old.db.table_names()
        job = new_job(old, guild_id=99)
        rec = old.add_track(job.id, make_track(), fmt="wav")
        old.set_favorite("u1", rec.id)
        old.set_guild_settings(99, jobs_per_user=5)
    with Store.open(path) as s:
        assert s.schema_version == available_migrations()[-1].version
        assert s.job_spec(job.id) == SPEC
        assert s.get_track(rec.id).sha256 == rec.sha256
        assert [t.id for t in s.favorites("u1")] == [rec.id]
        assert s.guild_settings(99)["jobs_per_user"] == 5
        s.add_guild_preset(99, "Study", genres=["Lofi"])  # the new tables work on the upgraded db
        assert [p.name for p in s.guild_presets(99)] == ["Study"]


def test_database_newer_than_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'from_the_future', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store.open(path)


# ------------------------------------------------------------------------------------------------
# jobs
# ------------------------------------------------------------------------------------------------
def test_job_request_round_trips_to_spec(store: Store) -> None:
    job = new_job(store, guild_id=5)
    assert store.job_spec(job.id) == SPEC
    again = store.get_job(job.id)
    assert (again.samples, again.seed, again.guild_id) == (2, 7, "5")
    assert again.state == "queued" and again.attempts == 0
    with pytest.raises(TypeError):  # the engine's jobs know nothing of where a front end answers
        new_job(store, channel_id=6)
    # the flat form (MusicSpec fields at top level) and a MusicSpec object in the request also work
    flat = store.create_job(user_id=1, request={**spec_to_request(SPEC)["spec"], "samples": 1})
    assert store.job_spec(flat.id) == SPEC
    obj = store.create_job(user_id=1, request={"spec": SPEC, "samples": 3})
    assert store.job_spec(obj.id) == SPEC and store.get_job(obj.id).samples == 3
    assert spec_from_request(spec_to_request(SPEC.with_(key=None))).key is None


def test_job_states_and_unfinished_oldest_first(store: Store) -> None:
    a, b, c = new_job(store), new_job(store, user="u2"), new_job(store)
    store.mark_running(b.id)
    store.mark_done(c.id)
    assert [j.id for j in store.unfinished_jobs()] == [a.id, b.id]
    failed = store.mark_failed(a.id, "model crashed")
    assert failed.state == "failed" and failed.error == "model crashed" and failed.finished_at is not None
    assert [j.id for j in store.unfinished_jobs()] == [b.id]
    assert store.update_job(b.id, error="slow").error == "slow"
    with pytest.raises(ValueError):
        store.update_job(b.id, state="exploded")
    with pytest.raises(ValueError):
        store.update_job(b.id, message_id=123)
    with pytest.raises(KeyError):
        store.update_job("nope", state="done")


def test_recover_unfinished_requeues_and_gives_up_on_crash_loops(store: Store) -> None:
    fresh, crashing, waiting = new_job(store), new_job(store), new_job(store)
    store.mark_running(fresh.id)
    for _ in range(3):  # ran three times, the bot died each time
        store.mark_running(crashing.id)
    requeue, gave_up = store.recover_unfinished(max_attempts=3)
    assert [j.id for j in requeue] == [fresh.id, waiting.id]
    assert all(j.state == "queued" for j in requeue)
    assert [j.id for j in gave_up] == [crashing.id]
    assert gave_up[0].state == "failed" and "interrupted 3 times" in gave_up[0].error


# ------------------------------------------------------------------------------------------------
# tracks
# ------------------------------------------------------------------------------------------------
def test_track_mp3_round_trip_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    original = make_track(
        seconds=2.5, rate=32000, channels=2, midi=b"MThd-fake-midi", meta={"analysis": {"topic": 3}}
    )
    with Store.open(path) as s:
        job = new_job(s)
        rec = s.add_track(job.id, original)
        assert rec.format == "mp3" and rec.path.parent == s.files_dir and rec.path.name == f"{rec.id}.mp3"
        assert rec.sha256 == hashlib.sha256(rec.path.read_bytes()).hexdigest()
        assert rec.bytes == rec.path.stat().st_size > 0
        assert rec.midi_path.read_bytes() == b"MThd-fake-midi"
        assert rec.analysis == {"topic": 3} and rec.spec == SPEC and rec.seed == 1234
        assert (rec.duration, rec.sample_rate, rec.channels) == (2.5, 32000, 2)
    with Store.open(path) as s:  # a restart: Extend/Variation need the audio back
        loaded = s.load_track(rec.id)
        assert loaded.audio.dtype == np.float32 and loaded.audio.shape == original.audio.shape
        assert loaded.sample_rate == 32000 and loaded.duration == pytest.approx(2.5)
        assert loaded.spec == SPEC and loaded.seed == 1234 and loaded.backend == "arranger"
        assert loaded.midi == b"MThd-fake-midi"
        # lossy but the same music: strongly correlated with the original, not shifted in time
        corr = np.corrcoef(loaded.audio[0, 4000:-4000], original.audio[0, 4000:-4000])[0, 1]
        assert corr > 0.95
        assert s.read_track_bytes(rec.id) == rec.path.read_bytes()
        assert [t.id for t in s.tracks_of_job(job.id)] == [rec.id]


def test_wav_round_trip_is_exact_to_16_bits(store: Store) -> None:
    original = make_track(seconds=1.0, rate=44100)
    rec = store.add_track(new_job(store).id, original, fmt="wav")
    loaded = store.load_track(rec.id)
    assert loaded.audio.shape == (1, 44100)
    assert np.max(np.abs(loaded.audio - original.audio)) < 1.0 / 16000


def test_bad_track_requests_fail_clearly(store: Store) -> None:
    with pytest.raises(KeyError):
        store.add_track("missing-job", make_track())
    with pytest.raises(UnknownTrack):
        store.load_track("nope")
    with pytest.raises(UnknownTrack):
        store.set_favorite("u1", "nope")
    assert list(store.files_dir.iterdir()) == []  # nothing written for a failed add


def test_tampered_file_is_detected(store: Store) -> None:
    rec = store.add_track(new_job(store).id, make_track(seconds=0.5), fmt="wav")
    rec.path.write_bytes(rec.path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(StoreError, match="sha256"):
        store.read_track_bytes(rec.id)


# ------------------------------------------------------------------------------------------------
# retention, history, favorites
# ------------------------------------------------------------------------------------------------
def test_retention_deletes_oldest_non_favorites_first(store: Store) -> None:
    job = new_job(store)
    recs = [store.add_track(job.id, make_track(seconds=0.5, freq=200 + 100 * i), fmt="wav") for i in range(5)]
    size = recs[0].bytes
    assert all(r.bytes == size for r in recs) and store.stored_bytes() == 5 * size
    store.set_favorite("u1", recs[0].id)  # the oldest is a favorite: must survive
    freed = store.enforce_retention(max_bytes=3 * size)
    assert freed == 2 * size and store.stored_bytes() == 3 * size
    state = {r.id: store.get_track(r.id) for r in recs}
    assert [state[r.id].file_deleted for r in recs] == [False, True, True, False, False]
    assert not recs[1].path.exists() and recs[0].path.exists() and recs[3].path.exists()
    with pytest.raises(TrackFileMissing, match="removed to save space"):
        store.load_track(recs[1].id)
    assert len(store.history("u1", limit=10)) == 5  # rows stay in history
    assert store.enforce_retention(max_bytes=3 * size) == 0
    # a cap below the favorites alone: everything else goes, favorites still stay
    store.enforce_retention(max_bytes=0)
    assert store.get_track(recs[0].id).available and recs[0].path.exists()
    assert store.stored_bytes() == size


def test_history_newest_first_and_favorites(store: Store) -> None:
    job1, job2 = new_job(store, guild_id=1), new_job(store, guild_id=2)
    other = new_job(store, user="someone-else")
    a = store.add_track(job1.id, make_track(seconds=0.3), fmt="wav")
    b = store.add_track(job2.id, make_track(seconds=0.3), fmt="wav")
    store.add_track(other.id, make_track(seconds=0.3), fmt="wav")
    c = store.add_track(job2.id, make_track(seconds=0.3), fmt="wav")
    assert [t.id for t in store.history("u1")] == [c.id, b.id, a.id]
    assert [t.id for t in store.history("u1", limit=2)] == [c.id, b.id]
    assert [t.id for t in store.history("u1", guild_id=1)] == [a.id]
    assert [t.index for t in store.tracks_of_job(job2.id)] == [0, 1]
    assert store.set_favorite("u1", a.id) and store.set_favorite("u1", c.id)
    assert store.set_favorite("u1", a.id)  # idempotent
    assert [t.id for t in store.favorites("u1")] == [c.id, a.id]
    assert store.is_favorite("u1", a.id) and not store.is_favorite("u2", a.id)
    assert store.set_favorite("u1", a.id, on=False) is False
    assert [t.id for t in store.favorites("u1")] == [c.id]


def test_favorites_are_bounded(store: Store) -> None:
    store.max_favorites = 2
    job = new_job(store)
    recs = [store.add_track(job.id, make_track(seconds=0.2), fmt="wav") for _ in range(3)]
    store.set_favorite("u1", recs[0].id)
    store.set_favorite("u1", recs[1].id)
    with pytest.raises(SettingsError, match="limit"):
        store.set_favorite("u1", recs[2].id)


# ------------------------------------------------------------------------------------------------
# settings, guild catalogue
# ------------------------------------------------------------------------------------------------
def test_user_settings_defaults_merge_and_reset(store: Store) -> None:
    assert store.user_settings("u1") == USER_DEFAULTS
    store.set_user_settings("u1", tempo="Fast", duration="0:30")
    store.set_user_settings("u1", format="OGG")
    assert store.user_settings("u1") == {"tempo": "Fast", "duration": 30.0, "format": "ogg"}
    store.set_user_settings("u1", tempo=None)  # None resets one key to its default
    assert store.user_settings("u1")["tempo"] is None
    assert store.user_settings("u2") == USER_DEFAULTS  # other users untouched
    for bad in ({"format": "flac"}, {"duration": 999}, {"colour": "blue"}):
        with pytest.raises(UserInputError):
            store.set_user_settings("u1", **bad)
    assert store.user_settings("u1")["format"] == "ogg"  # failed updates change nothing


def test_guild_settings_defaults_merge_and_validation(store: Store) -> None:
    assert store.guild_settings(1) == GUILD_DEFAULTS
    assert store.guild_settings(1, defaults={"queue_size": 10})["queue_size"] == 10  # bot config over builtin
    merged = store.set_guild_settings(1, jobs_per_user="3", allowed_channels=[222, "111"], max_duration=60)
    assert merged["jobs_per_user"] == 3 and merged["allowed_channels"] == ["111", "222"]
    got = store.guild_settings(1, defaults={"queue_size": 10, "jobs_per_user": 9})
    assert got["jobs_per_user"] == 3 and got["queue_size"] == 10 and got["max_duration"] == 60.0
    store.set_guild_settings(1, allowed_channels=None)
    assert store.guild_settings(1)["allowed_channels"] == []
    with pytest.raises(SettingsError, match="between 1 and 20"):
        store.set_guild_settings(1, jobs_per_user=0)
    with pytest.raises(SettingsError, match="whole number"):
        store.set_guild_settings(1, queue_size=2.5)
    with pytest.raises(SettingsError, match="Unknown server setting"):
        store.set_guild_settings(1, everyone_is_admin=True)
    assert store.guild_settings(2) == GUILD_DEFAULTS
    assert store.guild_settings(None)["queue_size"] == GUILD_DEFAULTS["queue_size"]


def test_guild_categories_and_presets(store: Store) -> None:
    store.add_guild_category(1, "genres", "Chiptune Boss", "칩튠 보스")
    store.add_guild_category(1, "genres", "Chamber Pop")
    store.add_guild_category(1, "moods", "Spooky")
    store.add_guild_category(2, "genres", "Other Guild Only")
    store.add_guild_category(1, "genres", "chiptune boss", "칩튠")  # same name, any case: relabel
    assert [c.label for c in store.guild_categories(1, "genres")] == ["Chamber Pop", "chiptune boss (칩튠)"]
    assert [c.en for c in store.complete_guild_categories(1, "genres", "ch")] == [
        "Chamber Pop",
        "chiptune boss",
    ]
    assert [c.en for c in store.complete_guild_categories(1, "genres", "boss")] == ["chiptune boss"]
    assert [c.en for c in store.complete_guild_categories(1, "genres", "칩")] == ["chiptune boss"]
    assert store.find_guild_category(1, "genres", "칩튠").en == "chiptune boss"
    assert store.remove_guild_category(1, "genres", "CHAMBER POP")
    assert not store.remove_guild_category(1, "genres", "Chamber Pop")
    with pytest.raises(SettingsError, match="Unknown category kind"):
        store.add_guild_category(1, "tempos", "Warp")
    with pytest.raises(SettingsError, match="too long"):
        store.add_guild_category(1, "genres", "x" * 200)

    preset = store.add_guild_preset(1, "Horror game", genres="Ambient, Cinematic", moods=["Dark"], tempo="Slow",
                                    keywords=["creaking doors"], duration="1:00")  # fmt: skip
    assert preset.as_options() == {"genres": ("Ambient", "Cinematic"), "moods": ("Dark",),
                                   "keywords": ("creaking doors",), "tempo": "Slow", "duration": 60.0}  # fmt: skip
    store.add_guild_preset(1, "Study", genres=["Lofi"])
    assert [p.name for p in store.complete_guild_presets(1, "st")] == ["Study"]
    assert store.get_guild_preset(1, "horror GAME").moods == ("Dark",)
    with pytest.raises(SettingsError, match="empty"):
        store.add_guild_preset(1, "Nothing")
    assert store.remove_guild_preset(1, "study") and store.get_guild_preset(1, "Study") is None
    assert store.guild_presets(2) == []


def test_memory_store_cleans_its_files_dir() -> None:
    s = Store.open(":memory:")
    rec = s.add_track(new_job(s).id, make_track(seconds=0.2), fmt="wav")
    folder = s.files_dir
    assert rec.path.exists()
    s.close()
    assert not folder.exists()


def test_corrupt_database_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not a sqlite database, just some text " * 100)
    with pytest.raises(StoreError, match="cannot open the store database"):
        Store.open(path)
