"""Posting results when Discord misbehaves (issue 7): rate limits, 5xx, size limits, expired interaction
tokens and missing permissions. The real bot and discord.py client against tests/fake_discord; every
test checks that the track was posted exactly once (or not at all), the job's final state in the
store, and what the user saw."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile

from bot.bot import create_bot
from bot.delivery.ledger import INTERACTION_TTL
from bot.delivery.ledger import DeliveryJob as JobRecord
from engine.jobs import EngineConfig
from engine.store import JOB_STATES
from tests.bot_harness import running_bot, seconds_of, settings_for
from tests.fake_discord import FakeDiscord, StoredMessage

RECYCLE = "\N{CLOCKWISE RIGHTWARDS AND LEFTWARDS OPEN CIRCLE ARROWS}"
ORIGINAL = r"/webhooks/\d+/[^/]+/messages/@original$"  # the interaction's reply, edited with the track
CHANNEL_EDIT = r"/channels/\d+/messages/\d+$"  # a channel status message, edited with the track
LOGGER = "textunes.bot"
BGM = {"genre": "Lofi", "mood": "Calm", "duration": "5"}


# ------------------------------------------------------------------------------------------ helpers
def posted_tracks(fake: FakeDiscord) -> list[StoredMessage]:
    """Every live message anywhere (replies, channel, DMs) that carries a file."""
    return [m for m in fake.messages.values() if m.attachments and not m.deleted]


def jobs_of(bot, fake: FakeDiscord, user: str = "alice") -> list[JobRecord]:
    # oldest first, each with its delivery row from the bot's ledger
    return [bot.ledger.job(j.id) for j in bot.store.jobs_of(fake.user_id(user), states=JOB_STATES)]


async def eventually(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll state the fake is not notified about (the bot's store)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def final_job(
    bot, fake: FakeDiscord, nth: int = 1, user: str = "alice", timeout: float = 30.0
) -> JobRecord:
    """The user's ``nth`` job once it is done/failed and no post is still claimed."""

    def settled() -> bool:
        jobs = jobs_of(bot, fake, user)
        if len(jobs) < nth:
            return False
        job = jobs[nth - 1]
        # the service marks a job done once its tracks are stored: it is settled when posted, or
        # failed with nothing left claimed
        if job.state == "done":
            return job.delivered_at is not None
        return job.state == "failed" and job.claimed_at is None

    await eventually(settled, timeout, f"job {nth} to settle")
    return jobs_of(bot, fake, user)[nth - 1]


def assert_track_kept(bot, job: JobRecord, seconds: float) -> None:
    """Nothing lost: the job's track is in the store, decodable, and offered by /history."""
    records = bot.store.tracks_of_job(job.id)
    assert len(records) == 1
    audio, rate = soundfile.read(io.BytesIO(bot.store.read_track_bytes(records[0].id)))
    assert abs(len(audio) / rate - seconds) < 0.1
    assert records[0].id in [t.id for t in bot.store.history(job.user_id)]


def assert_no_secrets_logged(caplog: pytest.LogCaptureFixture, fake: FakeDiscord) -> None:
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "fake-token" not in text
    assert not any(inter.token in text for inter in fake.interactions.values())


def _gated_arranger(gate: threading.Event, device: str):
    """The real arranger whose generate waits for the test to open ``gate`` (to act mid-job)."""
    from engine.generation import load_backend

    class Gated:
        def __init__(self, inner) -> None:
            self.inner = inner

        def __getattr__(self, name: str):
            return getattr(self.inner, name)

        def generate(self, specs, **kwargs):
            if not gate.wait(30):
                raise RuntimeError("the test never opened the gate")
            return self.inner.generate(specs, **kwargs)

    return Gated(load_backend("arranger", device=device, log=None))


@contextlib.asynccontextmanager
async def gated_bot(fake: FakeDiscord, tmp_path: Path):
    """Like tests.bot_harness.running_bot, but generation waits until the yielded gate is set."""
    gate = threading.Event()
    settings = settings_for(tmp_path)
    bot = create_bot(
        settings,
        engine_config=EngineConfig(
            backend="arranger",
            worker="thread",
            max_queue=settings.max_queue,
            per_user_limit=settings.per_user_jobs,
            backend_factory=functools.partial(_gated_arranger, gate),
        ),
    )
    task = asyncio.create_task(bot.start(settings.token))
    try:
        await fake.wait_connected()
        await fake.wait_until(lambda: bot.get_guild(fake.guild_id) is not None, 15, "the guild in the cache")
        yield bot, gate
    finally:
        gate.set()
        await bot.close()
        with contextlib.suppress(Exception):
            await task


async def generating(inter) -> None:
    await inter.wait_original(lambda m: "generating" in m.content, timeout=30)


# ------------------------------------------------------------------------------------ 429 and 5xx
async def test_rate_limited_upload_waits_retry_after_and_posts_once(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    fake.fail_next("PATCH", ORIGINAL, status=429, retry_after=1.0, files_only=True)
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        inter = await fake.slash("bgm", BGM)
        result = await inter.wait_result()
        job = await final_job(bot, fake)
    limited = [r for r in fake.requests_to("PATCH", ORIGINAL) if r.status == 429]
    uploaded = [r for r in fake.requests_to("PATCH", ORIGINAL) if r.files]
    assert len(limited) == 1 and len(uploaded) == 1
    assert uploaded[0].at - limited[0].at >= 1.0  # discord.py waited retry_after
    assert posted_tracks(fake) == [result] and len(result.attachments) == 1
    assert "is ready" in result.content and abs(seconds_of(result) - 5.0) < 0.1
    assert job.state == "done" and job.error is None and job.message_id == str(result.id)


@pytest.mark.parametrize(
    ("where", "status", "gaps"),
    [
        ("interaction", 502, (0.95, 2.95)),  # the webhook adapter retries every 5xx itself (1 s, 3 s)
        ("channel", 500, (0.95,)),  # HTTPClient retries 500/502/504 itself (1 s)
        ("channel", 503, (0.45, 1.45)),  # HTTPClient raises a 503 at once: our retries (0.5 s, 1.5 s)
    ],
)
async def test_server_errors_on_upload_are_retried_and_posted_once(
    fake: FakeDiscord, tmp_path: Path, where: str, status: int, gaps: tuple[float, ...]
) -> None:
    times = len(gaps)
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        if where == "interaction":
            pattern = ORIGINAL
            fake.fail_next("PATCH", pattern, status=status, times=times, files_only=True)
            result = await (await fake.slash("bgm", BGM)).wait_result()
        else:  # 🔁 on a track: a status message in the channel, edited with the new take
            first = await (await fake.slash("bgm", BGM)).wait_result()
            await final_job(bot, fake)
            pattern = CHANNEL_EDIT
            fake.fail_next("PATCH", pattern, status=status, times=times, files_only=True)
            await fake.react(first, RECYCLE)
            await fake.wait_until(lambda: len(posted_tracks(fake)) == 2, 30, "the new take")
            result = next(m for m in posted_tracks(fake) if m.id != first.id)
            assert result.webhook_id is None and int(result.message_reference["message_id"]) == first.id
        job = await final_job(bot, fake, nth=1 if where == "interaction" else 2)
    failed = [r for r in fake.requests_to("PATCH", pattern) if r.status == status]
    uploaded = [r for r in fake.requests_to("PATCH", pattern) if r.files]
    assert len(failed) == times and len(uploaded) == 1  # retried, then one upload that worked
    stamps = [r.at for r in failed] + [uploaded[0].at]
    waited = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(w >= g for w, g in zip(waited, gaps, strict=True)), waited  # growing backoff
    assert len(posted_tracks(fake)) == (1 if where == "interaction" else 2)
    assert len(result.attachments) == 1 and "is ready" in result.content
    assert job.state == "done" and job.error is None and job.message_id == str(result.id)


async def test_upload_that_keeps_failing_fails_the_job_and_keeps_the_track(
    fake: FakeDiscord, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        first = await (await fake.slash("bgm", BGM)).wait_result()
        await final_job(bot, fake)
        fake.fail_next("PATCH", CHANNEL_EDIT, status=503, times=50, files_only=True)
        await fake.react(first, RECYCLE)
        job = await final_job(bot, fake, nth=2)
        status = next(m for m in fake.channel_messages() if m.message_reference)
        await fake.wait_until(lambda: "could not be posted" in status.content, 10, "the failure message")
        assert_track_kept(bot, job, 5.0)
    attempts = [r for r in fake.requests_to("PATCH", CHANNEL_EDIT) if r.status == 503]
    assert len(attempts) == 4  # the first try and our three retries, then it gives up
    assert posted_tracks(fake) == [first]  # the retake was never posted
    assert f"<@{fake.user_id('alice')}>" in status.content
    assert "HTTP 503" in status.content and "/history" in status.content
    assert job.kind == "regenerate" and job.state == "failed" and job.delivered_at is None
    assert "503" in job.error and "after 4 tries" in job.error
    assert_no_secrets_logged(caplog, fake)


# ------------------------------------------------------------------------------------ size limits
@pytest.mark.parametrize(("limit", "duration", "preview"), [(60_000, 5, False), (24_000, 10, True)])
async def test_upload_over_the_limit_is_reencoded_or_previewed(
    fake: FakeDiscord, tmp_path: Path, limit: int, duration: int, preview: bool
) -> None:
    fake.attachment_size_limit = limit  # what the interaction says
    fake.max_upload_bytes = limit  # and what the fake enforces (413 above it)
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        inter = await fake.slash("bgm", {**BGM, "duration": str(duration)})
        result = await inter.wait_result()
        job = await final_job(bot, fake)
        assert_track_kept(bot, job, float(duration))  # the full track, whatever was posted
    attachment = result.attachments[0]
    assert posted_tracks(fake) == [result] and len(result.attachments) == 1
    assert attachment.size <= limit
    assert not [r for r in fake.requests if r.status == 413]  # it fitted the first time
    audio, rate = soundfile.read(io.BytesIO(attachment.data))
    seconds = len(audio) / rate
    if preview:
        assert "-preview." in attachment.filename
        assert "preview" in result.content and f"of 0:{duration:02d}" in result.content
        assert "/history" in result.content and "shorter duration" in result.content
        assert 3.0 <= seconds < duration - 1
        mono = audio.mean(axis=1) if audio.ndim == 2 else audio
        tail, body = mono[-int(0.1 * rate) :], mono[: int(seconds * rate * 0.6)]
        assert np.sqrt(np.mean(tail**2)) < 0.2 * np.sqrt(np.mean(body**2))  # faded out
    else:
        assert "re-encoded at" in result.content and "preview" not in result.content
        assert abs(seconds - duration) < 0.1
    assert job.state == "done" and job.error is None and job.message_id == str(result.id)


async def test_discord_413_retries_once_with_a_smaller_budget(fake: FakeDiscord, tmp_path: Path) -> None:
    fake.max_upload_bytes = 60_000  # Discord accepts less than the 10 MB the interaction claims
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        result = await (await fake.slash("bgm", BGM)).wait_result()
        job = await final_job(bot, fake)
    attempts = fake.requests_to("PATCH", ORIGINAL)
    assert [r.status for r in attempts if r.status == 413] == [413]
    assert posted_tracks(fake) == [result] and result.attachments[0].size <= 60_000
    assert "re-encoded at" in result.content and abs(seconds_of(result) - 5.0) < 0.1
    assert job.state == "done" and job.error is None


async def test_repeated_413_fails_with_a_clear_message(fake: FakeDiscord, tmp_path: Path) -> None:
    too_large = {"message": "Request entity too large", "code": 40005}
    fake.fail_next("PATCH", ORIGINAL, status=413, times=5, files_only=True, body=too_large)
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        inter = await fake.slash("bgm", BGM)
        reply = await inter.wait_original(lambda m: "could not be posted" in m.content, timeout=30)
        job = await final_job(bot, fake)
        assert_track_kept(bot, job, 5.0)
    assert len([r for r in fake.requests_to("PATCH", ORIGINAL) if r.status == 413]) == 2  # once more, smaller
    assert posted_tracks(fake) == []
    assert "too large for this server's upload limit" in reply.content and "/history" in reply.content
    assert job.state == "failed" and "413" in job.error and "40005" in job.error


# ------------------------------------------------------------------------- expired interaction tokens
async def test_job_older_than_the_token_is_posted_in_the_channel(fake: FakeDiscord, tmp_path: Path) -> None:
    async with gated_bot(fake, tmp_path) as (bot, gate):
        inter = await fake.slash("bgm", BGM)
        await generating(inter)
        # as if the job had queued for 16 minutes: the store forgets tokens older than Discord's 15
        assert bot.ledger.forget_expired_tokens(now=time.time() + INTERACTION_TTL + 60) == 1
        gate.set()
        await fake.wait_until(lambda: posted_tracks(fake), 30, "the track")
        job = await final_job(bot, fake)
    [posted] = posted_tracks(fake)
    assert posted.webhook_id is None and posted.channel_id == fake.channel_id  # a channel message
    assert int(posted.message_reference["message_id"]) == inter.original_id  # replying to the command
    assert posted.content.startswith(f"<@{fake.user_id('alice')}>") and "is ready" in posted.content
    assert "could no longer be edited" in posted.content and len(posted.attachments) == 1
    assert not [r for r in fake.requests if "/webhooks/" in r.path and r.files]  # the dead token: not tried
    assert job.state == "done" and job.error is None and job.message_id == str(posted.id)


@pytest.mark.parametrize("how", ["token-401-mid-job", "upload-404-unknown-webhook"])
async def test_rejected_interaction_webhook_falls_back_to_the_channel(
    fake: FakeDiscord, tmp_path: Path, how: str
) -> None:
    async with gated_bot(fake, tmp_path) as (bot, gate):
        inter = await fake.slash("bgm", BGM)
        await generating(inter)
        if how == "token-401-mid-job":
            fake.expire_interaction(inter, status=401)
            status = 401
        else:  # the webhook dies exactly at the upload
            unknown = {"message": "Unknown Webhook", "code": 10015}
            fake.fail_next("PATCH", ORIGINAL, status=404, files_only=True, body=unknown)
            status = 404
        gate.set()
        await fake.wait_until(lambda: posted_tracks(fake), 30, "the track")
        job = await final_job(bot, fake)
    [posted] = posted_tracks(fake)
    webhook = [r for r in fake.requests if "/webhooks/" in r.path]
    rejected = [r for r in webhook if r.status == status]
    assert len(rejected) == 1 and webhook[-1] is rejected[0]  # given up on the token after one refusal
    assert posted.webhook_id is None and posted.channel_id == fake.channel_id
    assert f"<@{fake.user_id('alice')}>" in posted.content and len(posted.attachments) == 1
    assert not inter.original.attachments
    assert job.state == "done" and job.error is None and job.message_id == str(posted.id)


# -------------------------------------------------------------------------------- missing permissions
async def test_missing_attach_files_is_explained_in_a_dm_and_logged(
    fake: FakeDiscord, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        first = await (await fake.slash("bgm", BGM)).wait_result()
        await final_job(bot, fake)
        await fake.deny_permission("attach_files")
        await fake.react(first, RECYCLE)  # the retake goes to the channel, where files are refused
        await fake.wait_until(lambda: fake.dm_messages("alice"), 30, "a DM to alice")
        job = await final_job(bot, fake, nth=2)
        assert_track_kept(bot, job, 5.0)
        status = next(m for m in fake.channel_messages() if m.message_reference)
        await fake.wait_until(lambda: "could not be posted" in status.content, 10, "the status line")
    [dm] = fake.dm_messages("alice")
    assert "**Attach Files**" in dm.content and f"<#{fake.channel_id}>" in dm.content
    assert "/history" in dm.content
    assert "missing Attach Files" in status.content
    assert posted_tracks(fake) == [first]
    assert len([r for r in fake.requests_to("PATCH", CHANNEL_EDIT) if r.status == 403]) == 1
    assert job.kind == "regenerate" and job.state == "failed" and job.delivered_at is None
    assert "Attach Files" in job.error
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == LOGGER]
    admin = [w for w in warnings if "Attach Files" in w]
    assert admin and "Fake Guild" in admin[0] and f"#music ({fake.channel_id})" in admin[0]
    assert_no_secrets_logged(caplog, fake)


async def test_missing_send_messages_with_dms_closed_is_only_logged(
    fake: FakeDiscord, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    await fake.deny_permission("send_messages")
    fake.block_dms("alice")
    async with gated_bot(fake, tmp_path) as (bot, gate):
        inter = await fake.slash("bgm", BGM)
        await generating(inter)
        fake.expire_interaction(inter, status=404)  # so the track has to go to the channel
        gate.set()
        job = await final_job(bot, fake)
        assert_track_kept(bot, job, 5.0)
        # after failing the job it still tries a DM, then says in the log that nobody could be told
        told = "could not tell user"
        await eventually(lambda: any(told in r.getMessage() for r in caplog.records), 10, "the last log line")
    dm_channel = fake.dm_channels[str(fake.user_id("alice"))]
    assert [r.status for r in fake.requests_to("POST", rf"/channels/{fake.channel_id}/messages$")] == [403]
    assert [r.status for r in fake.requests_to("POST", rf"/channels/{dm_channel}/messages$")] == [403]
    assert posted_tracks(fake) == [] and fake.dm_messages("alice") == []
    assert not inter.followups  # the interaction was dead: no ephemeral attempt
    assert job.state == "failed" and "Send Messages" in job.error
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == LOGGER]
    assert any("Send Messages" in w and "Fake Guild" in w for w in warnings)
    assert any(told in w for w in warnings)
    assert_no_secrets_logged(caplog, fake)


async def test_refused_upload_on_a_live_interaction_is_explained_ephemerally(
    fake: FakeDiscord, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    # Discord normally lets apps attach files to interaction replies; the fake can refuse them anyway
    await fake.deny_permission("attach_files", interactions=True)
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        inter = await fake.slash("bgm", BGM)
        error = await inter.wait_error(timeout=30)
        job = await final_job(bot, fake)
        assert_track_kept(bot, job, 5.0)
        await inter.wait_original(lambda m: "could not be posted here" in m.content)
    assert "**Attach Files**" in error and "/history" in error
    assert posted_tracks(fake) == [] and not fake.dm_channels  # told in the interaction, no DM needed
    assert len([r for r in fake.requests_to("PATCH", ORIGINAL) if r.status == 403]) == 1
    assert job.state == "failed" and "Attach Files" in job.error
    assert_no_secrets_logged(caplog, fake)
