"""🎲 Variation: keep the opening third of a track and generate the rest anew.

A stopgap on the engine's ``JobEngine`` directly: ``MusicService``'s ``MusicRequest`` can continue a
stored track but not "only its first N seconds" (see NOTES-h-bot.md). Until it can, this one path
records the job, finishes and stores the audio itself; posting is the common ``post_tracks``.
"""

from __future__ import annotations

import asyncio
import logging

import discord

from bot.delivery.plan import JobPlan, record_job
from bot.delivery.posting import post_tracks, safe_fail
from bot.delivery.progress import capacity_refusal, requester_of
from bot.delivery.surfaces import InteractionSurface
from engine.errors import UserInputError
from engine.jobs import JobCancelled, JobFailed, JobRequest
from engine.store import USER_DEFAULTS, TrackRecord

log = logging.getLogger("textunes.bot")


def _format_for(bot, user_id: int | str) -> str:
    chosen = bot.store.user_settings(user_id).get("format")
    if chosen and chosen != USER_DEFAULTS.get("format"):  # the store fills in the default for everyone
        return str(chosen)
    return getattr(bot.settings, "audio_format", "mp3")


def _finish_and_store(bot, job, plan: JobPlan, tracks) -> list[TrackRecord]:
    from engine.audio import finish  # numpy/soundfile work, off the event loop (called in a thread)

    fmt = _format_for(bot, job.user_id)
    return [
        bot.store.add_track(job.id, finish(track, duration=None), fmt=fmt, index=i, analysis=plan.analysis)
        for i, track in enumerate(tracks)
    ]


async def start_variation(
    bot, interaction: discord.Interaction, plan: JobPlan, *, parent_track_id: str
) -> list[TrackRecord]:
    requester = requester_of(interaction.user.id, interaction.guild_id, interaction.channel_id)
    refusal = await capacity_refusal(bot, requester, samples=1, duration=plan.spec.duration)
    if refusal:
        raise UserInputError(refusal.text)
    await interaction.response.defer(thinking=True)
    job = await asyncio.to_thread(
        record_job,
        bot,
        plan,
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        kind="variation",
        interaction=interaction,
        parent_track_id=parent_track_id,
    )
    surface = InteractionSurface(interaction, job)
    try:
        handle = await bot.engine.submit(
            JobRequest(
                user_id=str(job.user_id),
                spec=plan.spec,
                samples=1,
                guild_id=job.guild_id,
                job_id=job.id,
                continue_from=plan.continue_from,
                extend_seconds=plan.extend_seconds,
            )
        )
        async for event in handle.events():
            if event.kind == "started":
                await asyncio.to_thread(bot.store.mark_running, job.id)
        tracks = await handle.result()
    except (UserInputError, JobFailed, JobCancelled) as exc:
        if isinstance(exc, JobFailed) and exc.reason == "shutdown":
            return []  # stays resumable in the store
        await asyncio.to_thread(bot.store.mark_failed, job.id, str(exc))
        await safe_fail(surface, f"⚠️ **{plan.shown_title}** failed: {exc}")
        return []
    records = await asyncio.to_thread(_finish_and_store, bot, job, plan, tracks)
    await post_tracks(bot, surface, job, plan, records, tracks)
    return records
