"""The bad-input matrix, end to end: the real discord.py client, our real engine and store, the fake
Discord in tests/fake_discord.

Every case must be answered with a clear, friendly message (ephemeral wherever Discord allows it)
and lose nothing: no job left queued/running in the store or the engine, no track posted twice,
and the engine still serves the next request. Faults in the model (a crash mid-job, out of memory)
are injected below the engine through ``EngineConfig(backend_factory=...)`` with the
``FaultyBackend`` of tests/test_jobs.py, which wraps the real offline arranger.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bot.ratelimit import Rate
from engine.jobs import EngineConfig
from tests.bot_harness import embed_field, running_bot, seconds_of, settings_for
from tests.fake_discord import FakeDiscord, StoredMessage
from tests.test_bot_library_e2e import slash_sub
from tests.test_ingest import make_pdf
from tests.test_jobs import FaultPlan, make_faulty

FIXTURES = Path(__file__).parent / "fixtures"
RECYCLE = "\N{CLOCKWISE RIGHTWARDS AND LEFTWARDS OPEN CIRCLE ARROWS}"
LOFI = {"genre": "Lofi", "mood": "Calm", "duration": "5"}
ALL_STATES = ("queued", "running", "done", "failed", "cancelled")
EPHEMERAL = 1 << 6


# ------------------------------------------------------------------------------------ helpers
def store_jobs(bot, fake: FakeDiscord, user: str) -> list:
    return bot.store.jobs_of(fake.user_id(user), ALL_STATES)


def public_warnings(fake: FakeDiscord) -> list[StoredMessage]:
    return [m for m in fake.messages.values() if "⚠️" in m.content and not m.ephemeral and not m.deleted]


def answered_directly_and_privately(inter) -> bool:
    """Refused before deferring: a type-4 callback with the ephemeral flag (no public "thinking…")."""
    cb = inter.callback
    return cb is not None and cb["type"] == 4 and bool((cb["data"] or {}).get("flags", 0) & EPHEMERAL)


async def accepted(fake: FakeDiscord, user: str = "alice"):
    """A /bgm the bot took on (deferred), so any rate-limit token it needed is already taken."""
    inter = await fake.slash("bgm", LOFI, user=user)
    assert (await inter.wait_callback())["type"] == 5  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
    return inter


async def next_request_works(fake: FakeDiscord, user: str = "bob") -> StoredMessage:
    result = await (await fake.slash("bgm", LOFI, user=user)).wait_result(timeout=60)
    assert abs(seconds_of(result) - 5.0) < 0.1
    return result


async def nothing_lost(fake: FakeDiscord, bot, *, tracks: int) -> None:
    """Every job finished in the store and the engine; exactly ``tracks`` track messages, one per job."""

    def idle() -> bool:
        engine_jobs = [bot.engine.jobs_of(str(fake.user_id(u))) for u in ("alice", "bob")]
        # the service marks a job done once its tracks are stored; posting them comes right after
        unposted = [
            j
            for u in ("alice", "bob")
            for j in bot.store.jobs_of(fake.user_id(u), ("done",))
            if not bot.ledger.job(j.id).delivered_at
        ]
        return (
            not bot.store.unfinished_jobs()
            and bot.engine.queue_length() == 0
            and not any(engine_jobs)
            and not unposted
        )

    await fake.wait_until(idle, 30, "every job finished in the store and the engine")
    posted = [m for m in fake.messages.values() if m.attachments and not m.deleted]
    assert len(posted) == tracks, [m.content for m in posted]
    jobs = [bot.ledger.job_by_message(m.id) for m in posted]
    assert all(jobs) and len({j.id for j in jobs}) == tracks  # each delivered job posted once
    assert all(j.state == "done" for j in jobs)


def slow_engine(plan: FaultPlan, settings, **config) -> EngineConfig:
    return EngineConfig(
        backend_factory=make_faulty(plan),
        worker="thread",
        max_queue=settings.max_queue,
        per_user_limit=settings.per_user_jobs,
        **config,
    )


# ------------------------------------------------------------------- documents and options that fail
# (all cases of a kind go to one bot, one after another: each must be refused on its own, and the
# bot must still work after the whole run of them)
BAD_DOCUMENTS = [  # (filename, bytes, size Discord reports or None, what the answer says)
    ("empty.txt", b"", 0, "empty.txt is empty"),
    ("novel.txt", b"hello", 50 * 1024 * 1024, "the limit is 2.0 MB"),
    ("notes.txt", (FIXTURES / "binary_renamed.txt").read_bytes(), None, "notes.txt is not a text file"),
    ("scan.pdf", make_pdf(["", ""], image_only=True), None, "this PDF has no text layer"),
]

BAD_OPTIONS = [  # (/bgm options, pattern of the answer)
    ({"genre": "lofy", "mood": "Calm"}, r"Unknown genre 'lofy'\. Did you mean: .*Lofi"),
    ({**LOFI, "duration": "10:00"}, r"Duration 600 s is out of range: choose 5 s to 3:00"),
    ({**LOFI, "duration": "0:02"}, r"Duration 2 s is out of range"),
    ({**LOFI, "duration": "soon"}, r"Duration 'soon' not understood"),
    ({**LOFI, "duration": "2:30"}, r"This server allows tracks up to 120 s; you asked for 150 s"),
    ({**LOFI, "instruments": "Piano, Bass, Cello, Drums, Flute, Harp"}, r"Too many instruments \(6\): choose at most 5"),
    ({**LOFI, "keywords": "rain, night, cafe, city, neon, train"}, r"Too many keywords \(6\): use at most 5"),
    ({**LOFI, "genre": "Lofi, Jazz, Rock, Pop, EDM, Ambient"}, r"Too many genres \(6\): choose at most 5"),
]  # fmt: skip


async def test_bad_documents_get_a_private_answer_and_lose_nothing(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        for filename, data, claimed_size, expected in BAD_DOCUMENTS:
            attachment = fake.add_attachment(filename, data, size=claimed_size)
            inter = await fake.slash("bgm-from-text", {"file": attachment})
            error = await inter.wait_error(timeout=30)
            assert expected in error and "⚠️" in error, (filename, error)
            if claimed_size is not None:  # refused from the size Discord reports, before downloading
                assert answered_directly_and_privately(inter) and not fake.attachment_downloads(attachment)
            else:  # read after a public defer: the "thinking…" message goes, only the user sees why
                await fake.wait_until(
                    lambda i=inter: i.original is not None and i.original.deleted, 10, filename
                )
        # each document's request was recorded and failed with its reason; none is left running
        failed = store_jobs(bot, fake, "alice")
        assert all(j.state == "failed" and j.error for j in failed) and not public_warnings(fake)
        await next_request_works(fake)
        await nothing_lost(fake, bot, tracks=1)


async def test_bad_options_are_refused_privately_and_lose_nothing(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        for options, expected in BAD_OPTIONS:
            inter = await fake.slash("bgm", options)
            error = await inter.wait_error()
            assert re.search(expected, error), (options, error)
            assert answered_directly_and_privately(inter), options
        assert not store_jobs(bot, fake, "alice") and not public_warnings(fake)
        await next_request_works(fake)
        await nothing_lost(fake, bot, tracks=1)


# ------------------------------------------------------------------------ Korean input must work
async def test_korean_genre_name_works(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        result = await (
            await fake.slash("bgm", {"genre": "로파이", "mood": "잔잔한", "duration": "5"})
        ).wait_result()
        assert embed_field(result, "Genre") == "Lofi" and abs(seconds_of(result) - 5.0) < 0.1
        await nothing_lost(fake, bot, tracks=1)


async def test_cp949_korean_document_works(fake: FakeDiscord, tmp_path: Path) -> None:
    data = (FIXTURES / "sad_ko_cp949.txt").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # really not UTF-8: the bot has to detect the legacy encoding
    attachment = fake.add_attachment("sad.txt", data, "text/plain")
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        result = await (await fake.slash("bgm-from-text", {"file": attachment, "duration": "5"})).wait_result(
            timeout=120
        )
        assert "떠나간 사람" in result.content  # the title, decoded correctly
        assert float(embed_field(result, "Valence / arousal").split("/")[0]) < 0  # a sad text
        assert abs(seconds_of(result) - 5.0) < 0.1
        await nothing_lost(fake, bot, tracks=1)


# ----------------------------------------------------------------------- a busy bot says no kindly
@pytest.mark.parametrize(
    ("changes", "second_user", "expected"),
    [
        pytest.param({"max_queue": 1, "per_user_jobs": 2}, "bob", "The queue is full (1 jobs)", id="queue-full"),
        pytest.param({"per_user_jobs": 1}, "alice", "(the limit is 1)", id="user-over-limit"),
    ],
)  # fmt: skip
async def test_a_busy_bot_refuses_privately_and_lose_nothing(
    fake: FakeDiscord, tmp_path: Path, changes: dict, second_user: str, expected: str
) -> None:
    # the model is slowed (20 paced steps of 0.5 s) until the test lets it go, so "busy" is certain
    plan = FaultPlan(steps=20, step_delay=0.5)
    settings = settings_for(tmp_path, **changes)
    async with running_bot(fake, settings, engine_config=slow_engine(plan, settings)) as bot:
        running = await fake.slash("bgm", LOFI)
        await running.wait_original(lambda m: "generating" in m.content)
        accepted = 1
        if settings.max_queue == 1:  # fill the queue behind the running job
            waiting = await fake.slash("bgm", LOFI)
            await waiting.wait_original(lambda m: "queued" in m.content)
            accepted = 2
        refused = await fake.slash("bgm", LOFI, user=second_user)
        error = await refused.wait_error()
        assert expected in error and answered_directly_and_privately(refused)
        assert len(store_jobs(bot, fake, "alice")) == accepted  # the refused request left no job
        assert not (second_user == "bob" and store_jobs(bot, fake, "bob"))
        plan.step_delay = 0.0  # let the model go: what was accepted is still made and posted
        await running.wait_result()
        await nothing_lost(fake, bot, tracks=accepted)
        await next_request_works(fake)
        await nothing_lost(fake, bot, tracks=accepted + 1)


# ------------------------------------------------------------------------------- rate limited
async def test_rate_limits_name_the_wait_and_the_wait_is_true(fake: FakeDiscord, tmp_path: Path) -> None:
    per = 6.0  # seconds; the bursts below are sent without waiting, well inside one window
    settings = settings_for(tmp_path, per_user_jobs=5, user_rate=Rate(2, per), guild_rate=Rate(3, per))
    async with running_bot(fake, settings) as bot:
        firsts = [await accepted(fake) for _ in range(2)]
        third = await fake.slash("bgm", LOFI)
        error = await third.wait_error()
        refused_at = asyncio.get_running_loop().time()
        match = re.search(r"You're making tracks quickly — try again in (\d+) s \(limit 2 per 6 s\)", error)
        assert match, error
        wait = int(match.group(1))
        assert 1 <= wait <= per and answered_directly_and_privately(third)

        bob = await accepted(fake, "bob")  # bob has his own budget...
        crowded = await fake.slash("bgm", LOFI, user="bob")  # ...but the server's 3 are used up
        server_error = await crowded.wait_error()
        assert re.search(
            r"This server is making a lot of tracks right now — try again in \d+ s", server_error
        )
        assert "(server limit 3 per 6 s)" in server_error and answered_directly_and_privately(crowded)
        tracks = [await inter.wait_result() for inter in (*firsts, bob)]
        assert len(store_jobs(bot, fake, "alice")) == 2 and len(store_jobs(bot, fake, "bob")) == 1

        # waiting as long as the message said is enough
        await asyncio.sleep(max(0.0, refused_at + wait - asyncio.get_running_loop().time()))
        again = [await accepted(fake) for _ in range(2)]  # alice's new window, used up
        # 🔁 on a track is no interaction: the refusal goes privately by DM (once), nothing is made
        await fake.react(tracks[0], RECYCLE)
        await fake.wait_until(
            lambda: any("try again in" in m.content for m in fake.dm_messages("alice")), 10, "🔁 refusal"
        )
        assert not any("try again in" in m.content for m in fake.channel_messages())
        for inter in again:
            assert abs(seconds_of(await inter.wait_result()) - 5.0) < 0.1
        assert len(store_jobs(bot, fake, "alice")) == 4
        await nothing_lost(fake, bot, tracks=5)


async def test_bgm_from_text_counts_once_against_the_rate_limit(fake: FakeDiscord, tmp_path: Path) -> None:
    # text mode looks at the limit before downloading and counts it when the job starts: one token
    settings = settings_for(tmp_path, user_rate=Rate(2, 60.0))
    async with running_bot(fake, settings) as bot:
        pasted = await fake.slash(
            "bgm-from-text", {"text": "A quiet walk by the sea at dawn.", "duration": "5"}
        )
        await pasted.wait_result(timeout=120)
        await next_request_works(fake, user="alice")  # the second of two
        refused = await fake.slash("bgm", LOFI)
        assert "limit 2 per minute" in await refused.wait_error()
        await nothing_lost(fake, bot, tracks=2)


async def test_a_server_admins_rate_overrides_the_bots(fake: FakeDiscord, tmp_path: Path) -> None:
    fake.admins.add(fake.user_id("alice"))
    async with running_bot(fake, settings_for(tmp_path, user_rate=Rate(6, 60.0))) as bot:
        saved = await slash_sub(fake, "admin", "limits", {"user_jobs_per_minute": 1})
        assert "per member **1/min**" in await saved.wait_error()
        await next_request_works(fake, user="alice")
        refused = await fake.slash("bgm", LOFI)
        assert "(limit 1 per minute)" in await refused.wait_error()
        assert answered_directly_and_privately(refused) and len(store_jobs(bot, fake, "alice")) == 1
        await nothing_lost(fake, bot, tracks=1)


# ---------------------------------------------------------------------------- faults in the model
async def test_model_crash_mid_job_is_reported_and_the_next_job_works(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    plan = FaultPlan(steps=4, step_delay=0.05, error_times=1)  # fails after its progress steps
    settings = settings_for(tmp_path)
    async with running_bot(fake, settings, engine_config=slow_engine(plan, settings)) as bot:
        doomed = await fake.slash("bgm", LOFI)
        failed = await doomed.wait_original(lambda m: "failed" in m.content)
        assert any("generating" in (e.get("content") or "") for e in failed.edits)  # it was mid-job
        assert "The music model failed while making this track. It was not your input" in failed.content
        assert not failed.attachments
        (job,) = store_jobs(bot, fake, "alice")
        assert job.state == "failed" and job.error
        await next_request_works(fake, user="alice")
        await nothing_lost(fake, bot, tracks=1)
    assert len(plan.calls) == 2


async def test_out_of_memory_splits_the_batch_and_fails_only_what_cannot_fit(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    plan = FaultPlan(oom_above=2)  # a call with more than 2 tracks runs out of memory
    settings = settings_for(tmp_path)
    # a wide batch window so the two requests below share one call
    engine = slow_engine(plan, settings, batch_window=0.5)
    async with running_bot(fake, settings, engine_config=engine) as bot:
        pair = [await fake.slash("bgm", {**LOFI, "samples": 2}, user=u) for u in ("alice", "bob")]
        results = [await inter.wait_result() for inter in pair]
        assert [len(r.attachments) for r in results] == [2, 2]
        assert bot.engine.stats["oom_splits"] == 1 and [len(c) for c in plan.calls] == [2, 1, 1]

        too_big = await fake.slash("bgm", {**LOFI, "samples": 3})
        failed = await too_big.wait_original(lambda m: "failed" in m.content)
        assert "too big for the music device's memory (3 × 5 s)" in failed.content
        assert "fewer samples" in failed.content and not failed.attachments
        assert sorted(j.state for j in store_jobs(bot, fake, "alice")) == ["done", "failed"]
        await next_request_works(fake)
        await nothing_lost(fake, bot, tracks=3)
