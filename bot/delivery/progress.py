"""Running one job for Discord: admission, submit, progress edits, then the finished tracks posted.

Every feature (``/bgm``, ``/bgm-from-text``, 🔁, the buttons, restart recovery) ends in ``run_job``,
so the rules live in one place: the store records each step and every failure reaches the user as
a friendly message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp
import discord

from bot.delivery.plan import JobPlan, record_job
from bot.delivery.posting import describe_error, post_tracks, safe_fail
from bot.delivery.surfaces import InteractionSurface, Surface
from bot.limits import guild_limits, server_rates
from bot.ratelimit import limiter_for
from bot.replies import reply_private
from engine.errors import UserInputError
from engine.jobs import JobCancelled, JobFailed, JobRequest
from engine.spec import Track
from engine.store import USER_DEFAULTS, JobRecord, TrackRecord

log = logging.getLogger("textunes.bot")


def _percent_bar(percent: float) -> str:
    filled = int(percent // 10)
    return "▰" * filled + "▱" * (10 - filled)


async def _safe_update(surface: Surface, content: str) -> None:
    """Progress is best effort: a refused or failed edit must not stop the job."""
    try:
        await surface.update(content)
    except (discord.HTTPException, aiohttp.ClientError) as exc:
        log.info("progress message not updated (%s)", describe_error(exc))


async def run_job(bot, surface: Surface, job: JobRecord, plan: JobPlan) -> list[TrackRecord]:
    """Submit ``job`` to the engine, keep ``surface`` informed, post the result once."""
    store = bot.store
    try:
        handle = await bot.engine.submit(
            JobRequest(
                user_id=str(job.user_id),
                spec=plan.spec,
                samples=plan.samples,
                guild_id=job.guild_id,
                job_id=job.id,
                continue_from=plan.continue_from,
                extend_seconds=plan.extend_seconds,
            )
        )
    except UserInputError as exc:  # queue full, too many jobs for this user, bad samples
        await asyncio.to_thread(store.mark_failed, job.id, str(exc))
        await safe_fail(surface, f"⚠️ {exc}")
        return []

    interval = getattr(bot.settings, "progress_interval", 2.0)
    last_edit = 0.0
    async for event in handle.events():
        now = time.monotonic()
        if event.kind == "queued" and event.position:
            await _safe_update(surface, f"⏳ **{plan.shown_title}** — queued, position {event.position}.")
            last_edit = now
        elif event.kind == "started":
            await asyncio.to_thread(store.mark_running, job.id)
            await _safe_update(surface, f"🎼 **{plan.shown_title}** — generating… {_percent_bar(0)} 0%")
            last_edit = now
        elif event.kind == "progress" and event.percent is not None and now - last_edit >= interval:
            pct = event.percent
            await _safe_update(
                surface, f"🎼 **{plan.shown_title}** — generating… {_percent_bar(pct)} {pct:.0f}%"
            )
            last_edit = now
    try:
        tracks = await handle.result()
    except JobCancelled:
        await asyncio.to_thread(store.mark_cancelled, job.id)
        await safe_fail(surface, f"🛑 **{plan.shown_title}** — cancelled.")
        return []
    except JobFailed as exc:
        if exc.reason == "shutdown":
            # the bot is stopping: keep the job queued/running in the store so the next start
            # (setup_hook → recover_unfinished → resume_job) finishes and posts it
            log.info("job %s interrupted by shutdown; it resumes on the next start", job.id)
            try:  # best effort: Discord's session may already be closing
                await surface.update(
                    f"⏸️ **{plan.shown_title}** — the bot is restarting; the track follows when it is back."
                )
            except Exception:
                log.debug("could not say that job %s is paused", job.id)
            return []
        log.warning("job %s failed (%s): %s", job.id, exc.reason, exc.detail)
        await asyncio.to_thread(store.mark_failed, job.id, str(exc))
        await safe_fail(surface, f"⚠️ **{plan.shown_title}** failed: {exc}")
        return []
    return await deliver_tracks(bot, surface, job, plan, tracks)


def _finish_and_store(bot, job: JobRecord, plan: JobPlan, tracks: list[Track]) -> list[TrackRecord]:
    from engine.audio import finish

    fmt = track_format(bot, job.user_id)
    records = []
    for index, track in enumerate(tracks):
        # a continuation keeps its new, longer length; a fresh track gets exactly what was asked
        duration = None if plan.continue_from is not None else plan.spec.duration
        finished = finish(track, duration=duration)
        records.append(bot.store.add_track(job.id, finished, fmt=fmt, index=index, analysis=plan.analysis))
    return records


def track_format(bot, user_id: int | str) -> str:
    """The member's ``/settings format`` when set, else the bot's ``TEXTUNES_AUDIO_FORMAT``."""
    chosen = bot.store.user_settings(user_id).get("format")
    # the store fills in USER_DEFAULTS' format for everyone: only another value is a member's choice
    if chosen and chosen != USER_DEFAULTS.get("format"):
        return str(chosen)
    return getattr(bot.settings, "audio_format", "mp3")


async def deliver_tracks(
    bot, surface: Surface, job: JobRecord, plan: JobPlan, tracks: list[Track]
) -> list[TrackRecord]:
    """Store the finished ``tracks`` (once) and post them (once)."""
    records = await asyncio.to_thread(_finish_and_store, bot, job, plan, tracks)
    await post_tracks(bot, surface, job, plan, records, tracks)
    return records


@dataclass(frozen=True)
class Refusal:
    """Why a request is not taken now, and for how long that answer stays true."""

    text: str
    retry_after: float = 60.0


async def capacity_refusal(
    bot, user_id: int | str, guild_id: int | None, *, charge: bool = True
) -> Refusal | None:
    """Say no before deferring (so the answer can be private): too many jobs, queue full, or making
    tracks faster than the rate limit (the answer then says when to retry).

    Every path that makes music comes here, so this is where the rate limit is counted: a request
    that passes takes a token from the member's and the server's buckets. ``charge=False`` only
    looks (an early check before slow work that is charged when it really starts).
    """
    limits = await asyncio.to_thread(guild_limits, bot.store, guild_id, bot.settings)
    mine = len(bot.engine.jobs_of(str(user_id)))
    per_user = int(limits["jobs_per_user"])
    if mine >= per_user:
        return Refusal(
            f"You already have {mine} job(s) in progress (the limit is {per_user}). "
            "Wait for one to finish, or `/cancel` it."
        )
    queue_size = int(limits["queue_size"])
    if bot.engine.queue_length() >= queue_size:
        return Refusal(f"The queue is full ({queue_size} jobs). Try again in a few minutes.")
    # last, so a request refused above does not use up a token
    user_rate, guild_rate = await asyncio.to_thread(server_rates, bot.store, guild_id)
    limited = limiter_for(bot).hit(
        user_id, guild_id, user_rate=user_rate, guild_rate=guild_rate, charge=charge
    )
    return Refusal(limited.message(), limited.retry_after) if limited else None


async def start_interaction_job(
    bot,
    interaction: discord.Interaction,
    plan: JobPlan,
    *,
    kind: str,
    parent_track_id: str | None = None,
    charged: bool = False,
) -> list[TrackRecord]:
    """The common path of every interaction that makes music: check, defer, record, run.

    ``charged``: the caller already took this request's rate-limit token (text mode charges it
    before analysing, so a failing document is not free).
    """
    if not charged:
        refusal = await capacity_refusal(bot, interaction.user.id, interaction.guild_id)
        if refusal:
            await reply_private(interaction, f"⚠️ {refusal.text}")
            return []
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True)
    job = await asyncio.to_thread(
        record_job,
        bot,
        plan,
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        kind=kind,
        interaction=interaction,
        parent_track_id=parent_track_id,
    )
    return await run_job(bot, InteractionSurface(interaction, job), job, plan)
