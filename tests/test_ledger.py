"""bot.delivery.ledger: the bot's own delivery table — exactly-once claims, tokens, old databases."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from bot.delivery.ledger import INTERACTION_TTL, UNDELIVERED_MAX_AGE, DeliveryLedger
from engine.spec import MusicSpec, Track
from engine.store import Store, available_migrations, spec_to_request

SPEC = MusicSpec(prompt="A calm lofi track with piano", genres=("Lofi",), bpm=80, duration=1.0)


class Clock:
    """Deterministic, strictly increasing time."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "db" / "textunes.db")
    yield s
    s.close()


@pytest.fixture
def ledger(store: Store) -> DeliveryLedger:
    return DeliveryLedger.open(store)


def new_job(store: Store, ledger: DeliveryLedger | None = None, user: str = "u1", **where):
    job = store.create_job(user_id=user, request=spec_to_request(SPEC, samples=2, seed=7), guild_id="5")
    if ledger is not None:
        ledger.record(job.id, user_id=user, guild_id="5", **where)
    return job


def _race(claim, n: int) -> list[bool]:
    barrier = threading.Barrier(n)
    results: list[bool] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait()
        won = claim(i)
        with lock:
            results.append(won)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# ------------------------------------------------------------------------------------------------
# the table and its rows
# ------------------------------------------------------------------------------------------------
def test_ledger_schema_is_its_own_and_opening_twice_applies_nothing(store: Store) -> None:
    first = DeliveryLedger(store)
    assert first.migrate() == [1]
    assert DeliveryLedger(store).migrate() == []  # recorded: a second open applies nothing
    assert first.schema_version() == 1
    tables = set(store.db.table_names())
    assert {"discord_deliveries", "discord_schema_migrations"} <= tables
    assert store.schema_version == available_migrations()[-1].version  # the engine's count is untouched
    jobs_columns = {c.name for c in store.db["jobs"].columns}
    assert not jobs_columns & {
        "channel_id",
        "interaction_id",
        "interaction_token",
        "message_id",
        "claimed_at",
    }


def test_job_joins_the_engine_record_with_where_it_is_answered(store: Store, ledger: DeliveryLedger) -> None:
    job = new_job(store, ledger, channel_id=6, interaction_id=7, interaction_token="secret-token")
    got = ledger.job(job.id)
    assert (got.id, got.guild_id, got.samples, got.spec) == (job.id, "5", 2, SPEC)  # the engine's fields
    assert (got.channel_id, got.interaction_id, got.interaction_token) == ("6", "7", "secret-token")
    assert "secret-token" not in repr(got)  # a credential never ends up in logs
    bare = store.create_job(user_id="9", request=spec_to_request(SPEC))  # e.g. a CLI job: no row
    assert ledger.job(bare.id).channel_id is None and ledger.job(bare.id).id == bare.id
    assert ledger.job("nope") is None
    ledger.forget(job.id)
    assert ledger.job(job.id).interaction_token is None


def test_a_row_without_a_job_is_invisible(store: Store, ledger: DeliveryLedger) -> None:
    # the bot wrote its row and died before submit recorded the job: nothing to deliver, no error
    ledger.record("abcdef012345", user_id="1", channel_id=6)
    assert ledger.job("abcdef012345") is None
    assert ledger.claimed_undelivered() == [] and ledger.pending_deliveries() == []


def test_job_by_message(store: Store, ledger: DeliveryLedger) -> None:
    a, b = new_job(store, ledger, channel_id=6), new_job(store, ledger, channel_id=6)
    store.mark_done(b.id)
    assert ledger.claim_delivery(b.id)
    ledger.mark_delivered(b.id, 123)
    assert ledger.job_by_message(123).id == b.id
    assert ledger.job_by_message("123").message_id == "123"
    assert ledger.job_by_message(124) is None and ledger.job(a.id).message_id is None


def test_expired_interaction_tokens_are_forgotten(store: Store) -> None:
    clock = Clock()
    ledger = DeliveryLedger.open(store, clock=clock)
    job = new_job(store, ledger, channel_id=6, interaction_token="tok")
    row = ledger.job(job.id)
    assert row.interaction_valid(now=row.recorded_at + 60)
    assert not row.interaction_valid(now=row.recorded_at + INTERACTION_TTL)
    assert ledger.forget_expired_tokens(now=row.recorded_at + 10) == 0
    assert ledger.forget_expired_tokens(now=row.recorded_at + INTERACTION_TTL + 60) == 1
    assert ledger.job(job.id).interaction_token is None
    assert not ledger.job(job.id).interaction_valid(now=row.recorded_at + 1)


# ------------------------------------------------------------------------------------------------
# exactly-once delivery
# ------------------------------------------------------------------------------------------------
def test_claim_delivery_exactly_once_under_thread_race(store: Store, ledger: DeliveryLedger) -> None:
    jobs = [new_job(store, ledger, channel_id=6) for _ in range(5)]
    for job in jobs:
        store.mark_done(job.id)
        results = _race(lambda i, jid=job.id: ledger.claim_delivery(jid), 24)
        assert results.count(True) == 1 and len(results) == 24


def test_claim_delivery_exactly_once_across_connections(tmp_path: Path) -> None:
    # separate Store objects = separate sqlite connections (as two bot processes would have)
    path = tmp_path / "shared.db"
    stores = [Store.open(path) for _ in range(6)]
    try:
        ledgers = [DeliveryLedger.open(s) for s in stores]
        job = new_job(stores[0], ledgers[0], channel_id=6)
        results = _race(lambda i: ledgers[i % len(ledgers)].claim_delivery(job.id), 18)
        assert results.count(True) == 1
    finally:
        for s in stores:
            s.close()


def test_delivery_release_and_mark(store: Store, ledger: DeliveryLedger) -> None:
    job = new_job(store, ledger, channel_id=6)
    assert ledger.pending_deliveries() == []  # still queued: nothing to post yet
    store.mark_done(job.id)
    assert [j.id for j in ledger.pending_deliveries()] == [job.id]
    assert [j.id for j in ledger.undelivered()] == [job.id]
    assert ledger.claim_delivery(job.id)
    assert ledger.pending_deliveries() == []
    assert [j.id for j in ledger.claimed_undelivered()] == [job.id]  # what a crash mid-send leaves
    assert ledger.release_delivery(job.id)  # the send failed for sure: let a retry claim it
    assert ledger.claim_delivery(job.id)
    ledger.mark_delivered(job.id, 555)
    assert not ledger.claim_delivery(job.id)
    assert not ledger.release_delivery(job.id)  # once delivered it stays delivered
    got = ledger.job(job.id)
    assert got.delivered and got.message_id == "555"
    assert ledger.claimed_undelivered() == []
    with pytest.raises(KeyError):
        ledger.mark_delivered("nope", 1)


def test_a_failed_job_is_pending_but_only_recent_done_jobs_are_reposted(store: Store) -> None:
    clock = Clock()
    ledger = DeliveryLedger.open(store, clock=clock)
    old, failed, cli = (
        new_job(store, ledger, channel_id=6),
        new_job(store, ledger, channel_id=6),
        new_job(store),
    )
    store.mark_done(old.id)
    store.mark_failed(failed.id, "crashed")
    store.mark_done(cli.id)  # no ledger row: not the bot's to post
    assert [j.id for j in ledger.pending_deliveries()] == [old.id, failed.id]  # its failure gets told
    clock.now += UNDELIVERED_MAX_AGE + 10
    assert ledger.undelivered() == []  # a day-old track is not posted after a restart


# ------------------------------------------------------------------------------------------------
# a database from before the ledger
# ------------------------------------------------------------------------------------------------
def _old_schema_job(path: Path) -> tuple[str, str, str]:
    """A database at the engine's schema 2 (Discord columns in ``jobs``) with one job answered through
    an interaction and one delivered, as the previous version left it."""
    with Store.open(path, migrate_to=2) as old:
        assert old.schema_version == 2
        conn = old.db.conn
        now = 2_000_000_000.0  # far future: the token is still "fresh" when the new code opens it
        for job_id, token, message, delivered in (
            ("aaaaaaaaaaaa", "tok-live", None, None),
            ("bbbbbbbbbbbb", None, "777", now),
        ):
            conn.execute(
                "INSERT INTO jobs (id, kind, request, user_id, guild_id, channel_id, interaction_id, "
                "interaction_token, message_id, state, created_at, updated_at, claimed_at, delivered_at) "
                "VALUES (?, 'bgm', ?, '42', '5', '6', '8', ?, ?, 'done', ?, ?, ?, ?)",
                (job_id, '{"spec": {"prompt": "calm piano"}, "samples": 1}', token, message, now, now,
                 delivered, delivered),
            )  # fmt: skip
        conn.execute(
            "INSERT INTO jobs (id, kind, request, user_id, state, created_at, updated_at) "
            "VALUES ('cccccccccccc', 'bgm', '{}', '43', 'done', 1, 1)"
        )  # a CLI job: no Discord columns set
    return "aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"


def test_old_database_keeps_working_after_the_move(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    live, posted, cli = _old_schema_job(path)
    with Store.open(path) as store:  # engine migration 0003: columns leave jobs, kept aside
        assert store.schema_version == available_migrations()[-1].version
        assert "interaction_token" not in {c.name for c in store.db["jobs"].columns}
        assert store.get_job(live).user_id == "42" and not hasattr(store.get_job(live), "interaction_token")
        ledger = DeliveryLedger.open(store)
        assert "jobs_retired_columns" not in store.db.table_names()  # moved in, then dropped
        got = ledger.job(live)
        assert (got.channel_id, got.interaction_id, got.interaction_token) == ("6", "8", "tok-live")
        assert got.state == "done" and got.spec.prompt == "calm piano"
        assert [j.id for j in ledger.pending_deliveries()] == [live]  # not yet posted: still owed
        assert ledger.job_by_message(777).id == posted and ledger.job(posted).delivered
        assert not ledger.claim_delivery(posted)  # delivered before the upgrade: never twice
        assert ledger.claim_delivery(live) and not ledger.claim_delivery(live)
        assert ledger.job(cli).channel_id is None
    with Store.open(path) as store:  # reopening: nothing applied twice, the rows stay
        ledger = DeliveryLedger.open(store)
        assert ledger.job(live).claimed_at is not None and ledger.job(posted).message_id == "777"
        count = store.db.execute("SELECT COUNT(*) FROM discord_deliveries").fetchone()[0]
        assert count == 2


def test_old_database_expired_tokens_are_wiped_on_import(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Store.open(path, migrate_to=2) as old:
        old.db.conn.execute(
            "INSERT INTO jobs (id, kind, request, user_id, channel_id, interaction_token, state, "
            "created_at, updated_at) VALUES ('dddddddddddd', 'bgm', '{}', '1', '6', 'stale', 'done', 5, 5)"
        )
    with Store.open(path) as store:
        ledger = DeliveryLedger.open(store)
        assert ledger.job("dddddddddddd").interaction_token is None
        raw = sqlite3.connect(path).execute("SELECT interaction_token FROM discord_deliveries").fetchall()
        assert raw == [(None,)]  # the secret is gone from the file's table, not only hidden


def test_track_rows_survive_the_jobs_table_change(tmp_path: Path) -> None:
    # DROP COLUMN rewrites jobs; tracks reference it (ON DELETE CASCADE) and must stay attached
    path = tmp_path / "old.db"
    with Store.open(path, migrate_to=2) as old:
        job = old.create_job(user_id="1", request=spec_to_request(SPEC))
        audio = np.zeros((1, 3200), dtype=np.float32)
        rec = old.add_track(job.id, Track(audio, 32000, SPEC, 1, "arranger", "test"), fmt="wav")
    with Store.open(path) as store:
        assert [t.id for t in store.tracks_of_job(job.id)] == [rec.id]
        assert store.load_track(rec.id).audio.shape == (1, 3200)


def test_job_kind_is_a_label_the_front_end_chooses(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Store.open(path, migrate_to=2) as old:
        with pytest.raises(sqlite3.IntegrityError):  # the old schema only took the bot's button names
            old.db.conn.execute(
                "INSERT INTO jobs (id, kind, request, user_id, created_at, updated_at) "
                "VALUES ('x', 'retake', '{}', '1', 1, 1)"
            )
    with Store.open(path) as store:
        job = store.create_job(user_id="1", request=spec_to_request(SPEC), kind="retake")
        assert store.get_job(job.id).kind == "retake"
        for bad in ("", "Regenerate", "x" * 40, "a b", "kind;drop"):
            with pytest.raises(ValueError, match="kind"):
                store.create_job(user_id="1", request=spec_to_request(SPEC), kind=bad)
        # the rebuilt jobs table is still the parent of tracks, with foreign keys back on
        assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        (fk,) = store.db.execute("PRAGMA foreign_key_list(tracks)").fetchall()
        assert fk[2] == "jobs"
