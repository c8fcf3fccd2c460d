"""Fault injection: the REAL bot runs as its own OS process (``tests/bot_process.py``) against the
in-test fake Discord, is SIGKILLed mid-queue and started again on the same data dir.

What must hold afterwards: every job gets its track posted or a visible failure message, none
vanishes, none is posted twice (uploads counted per job at the fake), and the store's job states
are final. The second test lands the kill inside the delivery window itself (after
``claim_delivery``, with the upload in flight). The last tests start the bot in-process on a store
left in the states a kill leaves (made through the store's API): a post that cannot be checked, a
job stopped after too many attempts, an interaction whose token no longer works.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil

from bot.delivery.ledger import DeliveryLedger
from engine.prompt import build_spec
from engine.spec import MusicSpec, Track
from engine.store import JobRecord, Store, spec_to_request
from tests.bot_harness import running_bot, settings_for
from tests.bot_process import READY_LINE
from tests.fake_discord import FakeDiscord, StoredMessage

REPO = Path(__file__).resolve().parents[1]
RECYCLE = "\N{CLOCKWISE RIGHTWARDS AND LEFTWARDS OPEN CIRCLE ARROWS}"
ORIGINAL = r"/webhooks/\d+/[^/]+/messages/@original$"
FINAL_STATES = {"done", "failed", "cancelled"}


class BotProcess:
    """One ``python -m tests.bot_process`` child; stderr (its log) goes to ``log_path``."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    @classmethod
    async def start(
        cls,
        fake: FakeDiscord,
        data_dir: Path,
        log_path: Path,
        *,
        worker: str = "thread",
        per_user_jobs: int = 3,
    ) -> BotProcess:
        with open(log_path, "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.bot_process",
                "--base-url", fake.base_url, "--data-dir", str(data_dir),
                "--worker", worker, "--per-user-jobs", str(per_user_jobs),
                cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        bot = cls(proc, log_path)
        try:
            await asyncio.wait_for(bot._ready(), 90)
        except BaseException:
            await bot.kill()
            raise
        return bot

    async def _ready(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                raise AssertionError(
                    f"the bot process exited before it was ready; log:\n{self.log()[-3000:]}"
                )
            if line.decode().strip() == READY_LINE:
                return

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like the OOM killer or a pulled plug."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        """SIGTERM: the bot closes cleanly (after that nothing more can reach the fake)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except asyncio.TimeoutError:
            await self.kill()
            raise AssertionError("the bot process ignored SIGTERM for 30 s") from None


@contextlib.asynccontextmanager
async def bot_processes():
    """Collects started bot processes and kills any still running when the test ends."""
    started: list[BotProcess] = []
    try:
        yield started
    finally:
        for bot in started:
            stray = bot.descendants()
            if bot.proc.returncode is None:
                await bot.kill()
            for child in stray:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()


async def poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for a condition that no fake-Discord request signals (store rows, log lines)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


def store_jobs(data_dir: Path) -> dict[str, sqlite3.Row]:
    """The jobs table with the bot's delivery ledger row of each job, as the bot left them (read-only;
    the bot may still be running)."""
    conn = sqlite3.connect(f"file:{data_dir / 'textunes.db'}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return {
            row["id"]: row
            for row in conn.execute(
                "SELECT j.*, d.channel_id, d.interaction_id, d.message_id, d.claimed_at, d.delivered_at "
                "FROM jobs j LEFT JOIN discord_deliveries d ON d.job_id = j.id ORDER BY j.created_at, j.rowid"
            )
        }
    finally:
        conn.close()


def store_tracks(data_dir: Path) -> dict[str, list[str]]:
    """Track ids per job, in order (a job generated again would get new ones)."""
    conn = sqlite3.connect(f"file:{data_dir / 'textunes.db'}?mode=ro", uri=True, timeout=30)
    try:
        tracks: dict[str, list[str]] = {}
        for job_id, track_id in conn.execute("SELECT job_id, id FROM tracks ORDER BY job_id, idx"):
            tracks.setdefault(job_id, []).append(track_id)
        return tracks
    finally:
        conn.close()


def job_title(row: sqlite3.Row) -> str:
    return str(json.loads(row["request"]).get("title") or "")


def posts_by_job(fake: FakeDiscord) -> Counter:
    """Uploads Discord accepted, per job (the 🔁 button under a track names its job)."""
    counts: Counter = Counter()
    for rec in fake.requests:
        if not rec.files or not 200 <= rec.status < 300 or not isinstance(rec.json, dict):
            continue
        for row in rec.json.get("components") or []:
            for comp in row.get("components", []):
                found = re.fullmatch(r"textunes:regen:(\w+)", comp.get("custom_id", ""))
                if found:
                    counts[found.group(1)] += 1
    return counts


def failure_shown(fake: FakeDiscord, title: str) -> bool:
    """A visible (non-ephemeral) ⚠️ message about the job titled ``title``."""
    return any(
        "⚠️" in m.content and title in m.content and not m.ephemeral and not m.deleted
        for m in fake.messages.values()
    )


def shown_as(inter_original: StoredMessage | None, word: str) -> bool:
    return inter_original is not None and word in inter_original.content


async def test_sigkill_mid_queue_then_restart_posts_every_job_exactly_once(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    async with bot_processes() as started:
        # the production layout: the arranger runs in a worker child of the bot process
        first = await BotProcess.start(fake, data, tmp_path / "bot1.log", worker="process")
        started.append(first)
        early = await (
            await fake.slash("bgm", {"genre": "Lofi", "mood": "Calm", "duration": "0:05"})
        ).wait_result()
        # the bot reacts 🔁 only after mark_delivered + mark_done: this job is finished in the store
        await fake.wait_until(lambda: RECYCLE in early.reactions, 15, "the first job marked delivered")

        running = await fake.slash(
            "bgm", {"genre": "Orchestral", "mood": "Dark", "duration": "0:45", "samples": 2}
        )
        await running.wait_original(lambda m: "generating" in m.content)
        waiting = [
            await fake.slash("bgm", {"genre": "Jazz", "mood": "Happy", "duration": "0:15"}, user="bob"),
            await fake.slash("bgm", {"genre": "EDM", "mood": "Energetic", "duration": "0:10"}),
            await fake.slash(
                "bgm", {"genre": "Rock", "mood": "Angry", "duration": "0:08", "samples": 2}, user="bob"
            ),
            await fake.slash("bgm", {"genre": "Folk", "mood": "Sad", "duration": "0:06"}, user="bob"),
        ]
        await fake.wait_until(
            lambda: all(shown_as(w.original, "queued") for w in waiting), 30, "four jobs shown as queued"
        )
        workers = first.descendants()
        assert workers, "the process worker should be a child of the bot process"
        await first.kill()  # one job generating, four queued, one delivered

        posted_before = posts_by_job(fake)
        jobs = store_jobs(data)
        assert len(jobs) == 6
        assert len(posted_before) == 1 and sum(posted_before.values()) == 1  # only the early one
        early_job = next(iter(posted_before))
        assert jobs[early_job]["state"] == "done"
        assert {jobs[j]["state"] for j in jobs if j != early_job} <= {"queued", "running"}
        # the worker child must not outlive its killed parent (it would hold the model and a core)
        _, alive = await asyncio.to_thread(psutil.wait_procs, workers, 20)
        assert not alive, f"worker processes outlived the SIGKILLed bot: {alive}"

        second = await BotProcess.start(fake, data, tmp_path / "bot2.log", worker="process")
        started.append(second)

        def settled() -> bool:
            rows, posts = store_jobs(data), posts_by_job(fake)
            # a done job (tracks stored) is settled once its post is recorded (message_id), not before
            return all(
                row["state"] in FINAL_STATES
                and (row["state"] != "done" or row["message_id"] is not None)
                and (posts[j] >= 1 or failure_shown(fake, job_title(row)))
                for j, row in rows.items()
            )

        await fake.wait_until(settled, 120, "every job posted or failed visibly after the restart")
        await second.stop()  # after a clean stop nothing more can be posted: the counts are final

    posts, jobs = posts_by_job(fake), store_jobs(data)
    for job_id, row in jobs.items():
        title = job_title(row)
        assert row["state"] in FINAL_STATES, (title, row["state"])
        if row["state"] == "done":
            assert posts[job_id] == 1, (title, posts[job_id])  # exactly once, never twice
            message = fake.messages[int(row["message_id"])]
            assert len(message.attachments) == int(json.loads(row["request"]).get("samples", 1))
            assert row["delivered_at"] is not None
        else:  # allowed, but then the user must have been told
            assert posts[job_id] == 0 and failure_shown(fake, title), (title, row["state"], row["error"])
    resumed = [j for j in jobs if j != early_job]
    assert all(jobs[j]["state"] == "done" for j in resumed), {
        job_title(jobs[j]): jobs[j]["state"] for j in resumed
    }
    # the five interrupted jobs were finished by the second process, each in its interaction's reply
    # (the tokens still lived): the stale "⏳ queued" / "🎼 generating" line became the track
    for job_id in resumed:
        result = fake.messages[int(jobs[job_id]["message_id"])]
        assert "resumed after a restart" in result.content
        assert result.id == fake.interactions[int(jobs[job_id]["interaction_id"])].original_id
    assert sum(posts.values()) == 6
    stale = [m.content for m in fake.messages.values() if "queued" in m.content or "generating" in m.content]
    assert not stale, stale


async def test_kill_with_uploads_in_flight_never_posts_twice(fake: FakeDiscord, tmp_path: Path) -> None:
    """The delivery window: ``claim_delivery`` → upload → ``mark_delivered``.

    Two uploads are held open by the fake and the bot is SIGKILLed: one upload had reached
    Discord (the track is on the channel, but the bot never learnt it), the other never arrived.
    The restarted bot must not generate either again: it reads the channel, records the post that
    landed, and posts the stored track of the other one, once, in its interaction's reply.
    """
    data = tmp_path / "data"
    reached = fake.stall_next("PATCH", ORIGINAL, deliver=True)
    never = fake.stall_next("PATCH", ORIGINAL, deliver=False)
    async with bot_processes() as started:
        first = await BotProcess.start(fake, data, tmp_path / "bot1.log")
        started.append(first)
        await fake.slash("bgm", {"genre": "Lofi", "mood": "Calm", "duration": "0:05"})
        await fake.slash("bgm", {"genre": "Jazz", "mood": "Happy", "duration": "0:06"}, user="bob")
        await fake.wait_until(lambda: bool(reached.held and never.held), 60, "both uploads in flight")
        await first.kill()

        before = store_jobs(data)
        assert len(before) == 2 and all(r["claimed_at"] is not None for r in before.values())
        assert all(r["delivered_at"] is None for r in before.values())  # killed before mark_delivered
        assert all(r["state"] == "done" for r in before.values())  # tracks stored (the service's "done")
        tracks_before = store_tracks(data)
        on_discord = posts_by_job(fake)
        assert sum(on_discord.values()) == 1
        posted_job = next(iter(on_discord))
        lost_job = next(j for j in before if j != posted_job)
        landed_id = _original_id(fake, reached.held[0].path)
        lost_reply_id = _original_id(fake, never.held[0].path)
        assert "generating" in fake.messages[lost_reply_id].content  # the stale status line
        history_reads = len(fake.requests_to("GET", r"/channels/\d+/messages$"))

        second = await BotProcess.start(fake, data, tmp_path / "bot2.log")
        started.append(second)
        await poll(
            lambda: all(
                r["state"] in FINAL_STATES and r["delivered_at"] is not None
                for r in store_jobs(data).values()
            ),
            60,
            "the restarted bot to settle both jobs",
        )
        await second.stop()  # after a clean stop nothing more can be posted: the counts are final

    after, posts = store_jobs(data), posts_by_job(fake)
    assert posts == Counter({posted_job: 1, lost_job: 1}), posts  # each track on Discord exactly once
    assert all(row["state"] == "done" for row in after.values()), {j: r["state"] for j, r in after.items()}
    # nothing was generated again: the same stored tracks, and the restarted bot looked on Discord
    assert store_tracks(data) == tracks_before
    assert len(fake.requests_to("GET", r"/channels/\d+/messages$")) > history_reads
    # the upload that landed is recognised as the job's post
    assert int(after[posted_job]["message_id"]) == landed_id
    assert fake.messages[landed_id].attachments
    # the lost one: its stored track, posted in its interaction's reply (the stale line became it)
    assert int(after[lost_job]["message_id"]) == lost_reply_id
    result = fake.messages[lost_reply_id]
    assert [a.filename for a in result.attachments] == [f"textunes-{t}.mp3" for t in tracks_before[lost_job]]
    assert "is ready" in result.content and "generating" not in result.content
    assert RECYCLE in result.reactions and RECYCLE in fake.messages[landed_id].reactions
    assert not [
        m.content for m in fake.channel_messages() if "generating" in m.content or "queued" in m.content
    ]


def _original_id(fake: FakeDiscord, path: str) -> int:
    token = path.split("/")[-3]
    inter = next(i for i in fake.interactions.values() if i.token == token)
    assert inter.original_id is not None
    return inter.original_id


# ------------------------------------------------------------------------------------------------
# in-process restarts on a store left as a kill leaves it
# ------------------------------------------------------------------------------------------------
def seed_job(store: Store, fake: FakeDiscord, user: str, title: str, **kw) -> JobRecord:
    """A /bgm job as the cog records it (its ledger row: channel, interaction; then the job), before
    any of it ran."""
    spec = build_spec(
        genres=title.split(" · ")[0], moods=title.split(" · ")[1], duration=kw.pop("duration", 5)
    )
    job = store.create_job(
        user_id=fake.user_id(user),
        request=spec_to_request(spec, samples=1, title=title),
        guild_id=fake.guild_id,
    )
    DeliveryLedger.open(store).record(
        job.id, user_id=job.user_id, guild_id=fake.guild_id, channel_id=fake.channel_id, **kw
    )
    return job


def sine_track(spec: MusicSpec, seconds: float = 3.0, rate: int = 32000) -> Track:
    t = np.arange(int(seconds * rate)) / rate
    audio = (0.3 * np.sin(2 * np.pi * 440.0 * t))[None, :].astype(np.float32)
    return Track(audio=audio, sample_rate=rate, spec=spec, seed=5, backend="arranger", model="test")


def visible(fake: FakeDiscord, text: str) -> list[StoredMessage]:
    return [m for m in fake.messages.values() if text in m.content and not m.ephemeral and not m.deleted]


async def test_restart_that_cannot_read_the_channel_says_saved_instead_of_posting_again(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    """Killed mid-upload, restarted without Read Message History: whether the post landed cannot be
    known, so the bot must not upload again; it says the track is saved and closes the job."""
    settings = settings_for(tmp_path)
    with Store.open(settings.store_file) as store:
        job = seed_job(store, fake, "alice", "Lofi · Calm")
        store.mark_running(job.id)
        stored = store.add_track(job.id, sine_track(job.spec))
        store.mark_done(job.id)  # the service: tracks stored, job done; then the bot claims the post
        assert DeliveryLedger.open(store).claim_delivery(job.id)  # ...and died with the upload in flight
    await fake.deny_permission("read_message_history")

    async with running_bot(fake, settings) as bot:
        await fake.wait_until(lambda: bool(visible(fake, "I restarted while posting")), 20, "the notice")
        await poll(lambda: bot.ledger.job(job.id).delivered, 10, "the job closed")
        final = bot.ledger.job(job.id)
        tracks = bot.store.tracks_of_job(job.id)

    (notice,) = visible(fake, "I restarted while posting")
    assert f"<@{fake.user_id('alice')}>" in notice.content and "Lofi · Calm" in notice.content
    assert "/history" in notice.content and notice.channel_id == fake.channel_id
    reads = fake.requests_to("GET", r"/channels/\d+/messages$")
    assert reads and all(r.status == 403 for r in reads)  # it did try to look
    assert not [r for r in fake.requests if r.files], "nothing may be uploaded: it might be a duplicate"
    assert final.state == "done" and final.message_id == str(notice.id)
    assert [t.id for t in tracks] == [stored.id]  # the saved track, not generated again


async def test_restart_reports_given_up_jobs_and_falls_back_to_the_channel_on_a_dead_token(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    """A job that crashed three times is stopped with a visible message (once); a queued job whose
    interaction answers 401 is generated and posted in the channel instead, mentioning its user."""
    settings = settings_for(tmp_path)
    inter = await fake.slash("bgm", {"genre": "Jazz", "mood": "Happy", "duration": "0:05"}, user="bob")
    fake.expire_interaction(inter, 401)  # its webhook no longer works (revoked, or Discord restarted)
    with Store.open(settings.store_file) as store:
        crashing = seed_job(store, fake, "alice", "Orchestral · Dark")
        for _ in range(3):
            store.mark_running(crashing.id)  # it killed the bot every time it ran
        queued = seed_job(
            store, fake, "bob", "Jazz · Happy", interaction_id=inter.id, interaction_token=inter.token
        )

    async with running_bot(fake, settings) as bot:
        await fake.wait_until(lambda: bool(visible(fake, "Orchestral · Dark** failed")), 20, "the failure")
        await fake.wait_until(
            lambda: any(m.attachments for m in fake.channel_messages()), 60, "the resumed job posted"
        )
        await poll(lambda: bot.ledger.job(queued.id).delivered, 10, "the resumed job closed")
        given_up, resumed = bot.ledger.job(crashing.id), bot.ledger.job(queued.id)
        assert bot.store.tracks_of_job(crashing.id) == []

    (failure,) = visible(fake, "Orchestral · Dark** failed")
    assert f"<@{fake.user_id('alice')}>" in failure.content and "interrupted 3 times" in failure.content
    assert given_up.state == "failed" and given_up.message_id == str(failure.id)

    (result,) = [m for m in fake.channel_messages() if m.attachments]
    assert f"<@{fake.user_id('bob')}>" in result.content and "resumed after a restart" in result.content
    assert result.webhook_id is None  # a channel message, not the dead interaction's reply
    assert resumed.state == "done" and resumed.message_id == str(result.id)
    assert posts_by_job(fake) == Counter({queued.id: 1})
    tried = fake.requests_to("PATCH", ORIGINAL)
    assert tried and all(r.status == 401 for r in tried)  # it preferred the interaction, then fell back
