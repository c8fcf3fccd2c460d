"""Running one job for Discord: submit → progress edits → finished audio posted exactly once.

Every feature (``/bgm``, ``/bgm-from-text``, 🔁, the buttons, restart recovery) ends here, so the
rules live in one place: the store records each step, ``claim_delivery`` makes the post happen at
most once, and every failure reaches the user as a friendly message.

A *surface* is where a job talks to the user: the interaction's own response (edited in place) or,
without a live interaction (a 🔁 reaction, a job resumed after a restart), a channel message.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from dataclasses import dataclass
from typing import Any

import discord

from engine.errors import UserInputError
from engine.jobs import JobCancelled, JobFailed, JobRequest
from engine.spec import MusicSpec, Track
from engine.store import JobRecord, TrackRecord, spec_to_request

log = logging.getLogger("textunes.bot")

REGENERATE_EMOJI = "\N{CLOCKWISE RIGHTWARDS AND LEFTWARDS OPEN CIRCLE ARROWS}"
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


class Surface:
    """Where a job's progress and result are shown."""

    upload_limit: int = DEFAULT_UPLOAD_LIMIT

    async def update(self, content: str) -> None:
        raise NotImplementedError

    async def deliver(
        self, *, content: str, embeds: list[discord.Embed], files: list[discord.File], view: discord.ui.View
    ) -> discord.Message:
        raise NotImplementedError

    async def fail(self, message: str) -> None:
        await self.update(message)


class InteractionSurface(Surface):
    """The deferred response of a slash command or button click, edited as the job goes."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction
        self.upload_limit = interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT

    async def update(self, content: str) -> None:
        await self.interaction.edit_original_response(content=content)

    async def deliver(self, *, content, embeds, files, view) -> discord.Message:
        return await self.interaction.edit_original_response(
            content=content, embeds=embeds, attachments=files, view=view
        )


class ChannelSurface(Surface):
    """A status message in a channel (optionally replying to a message), edited as the job goes."""

    def __init__(
        self, channel: discord.abc.Messageable, reference: discord.PartialMessage | None = None
    ) -> None:
        self.channel = channel
        self.reference = reference
        self.message: discord.Message | None = None

    async def update(self, content: str) -> None:
        if self.message is None:
            self.message = await self.channel.send(content, reference=self.reference, mention_author=False)
        else:
            self.message = await self.message.edit(content=content)

    async def deliver(self, *, content, embeds, files, view) -> discord.Message:
        if self.message is None:
            return await self.channel.send(
                content, embeds=embeds, files=files, view=view, reference=self.reference, mention_author=False
            )
        return await self.message.edit(content=content, embeds=embeds, attachments=files, view=view)


@dataclass
class JobPlan:
    """What to run for a job: the spec plus how (samples, continuation)."""

    spec: MusicSpec
    samples: int = 1
    continue_from: Track | None = None
    extend_seconds: float = 0.0
    analysis: dict | None = None  # text mode: shown in the embed and stored with the tracks
    title: str = "Your track"


def record_job(
    bot,
    plan: JobPlan,
    *,
    user_id: int | str,
    guild_id: int | None,
    channel_id: int | None,
    kind: str,
    interaction: discord.Interaction | None = None,
    parent_track_id: str | None = None,
) -> JobRecord:
    request = spec_to_request(plan.spec, samples=plan.samples, title=plan.title)
    if plan.analysis is not None:
        request["analysis"] = plan.analysis
    if plan.extend_seconds:
        request["extend_seconds"] = plan.extend_seconds
    return bot.store.create_job(
        user_id=user_id,
        request=request,
        guild_id=guild_id,
        channel_id=channel_id,
        interaction_id=interaction.id if interaction else None,
        interaction_token=interaction.token if interaction else None,
        kind=kind,
        parent_track_id=parent_track_id,
    )


def _percent_bar(percent: float) -> str:
    filled = int(percent // 10)
    return "▰" * filled + "▱" * (10 - filled)


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
        await surface.fail(f"⚠️ {exc}")
        return []

    interval = getattr(bot.settings, "progress_interval", 2.0)
    last_edit = 0.0
    async for event in handle.events():
        now = time.monotonic()
        if event.kind == "queued" and event.position:
            await surface.update(f"⏳ **{plan.title}** — queued, position {event.position}.")
            last_edit = now
        elif event.kind == "started":
            await asyncio.to_thread(store.mark_running, job.id)
            await surface.update(f"🎼 **{plan.title}** — generating… {_percent_bar(0)} 0%")
            last_edit = now
        elif event.kind == "progress" and event.percent is not None and now - last_edit >= interval:
            pct = event.percent
            await surface.update(f"🎼 **{plan.title}** — generating… {_percent_bar(pct)} {pct:.0f}%")
            last_edit = now
    try:
        tracks = await handle.result()
    except JobCancelled:
        await asyncio.to_thread(store.mark_cancelled, job.id)
        await surface.fail(f"🛑 **{plan.title}** — cancelled.")
        return []
    except JobFailed as exc:
        if exc.reason == "shutdown":
            # the bot is stopping: keep the job queued/running in the store so the next start
            # (setup_hook → recover_unfinished → resume_job) finishes and posts it
            log.info("job %s interrupted by shutdown; it resumes on the next start", job.id)
            try:  # best effort: Discord's session may already be closing
                await surface.update(
                    f"⏸️ **{plan.title}** — the bot is restarting; the track follows when it is back."
                )
            except Exception:
                log.debug("could not say that job %s is paused", job.id)
            return []
        log.warning("job %s failed (%s): %s", job.id, exc.reason, exc.detail)
        await asyncio.to_thread(store.mark_failed, job.id, str(exc))
        await surface.fail(f"⚠️ **{plan.title}** failed: {exc}")
        return []
    return await deliver_tracks(bot, surface, job, plan, tracks)


def _finish_and_store(bot, job: JobRecord, plan: JobPlan, tracks: list[Track]) -> list[TrackRecord]:
    from engine.audio import finish

    fmt = getattr(bot.settings, "audio_format", "mp3")
    records = []
    for index, track in enumerate(tracks):
        # a continuation keeps its new, longer length; a fresh track gets exactly what was asked
        duration = None if plan.continue_from is not None else plan.spec.duration
        finished = finish(track, duration=duration)
        records.append(bot.store.add_track(job.id, finished, fmt=fmt, index=index, analysis=plan.analysis))
    return records


def _upload_files(bot, records: list[TrackRecord], limit: int) -> tuple[list[discord.File], list[str]]:
    """Each stored file as an attachment; re-encoded smaller when the upload limit needs it."""
    from engine.audio import encode_to_fit

    per_file = max(limit // max(len(records), 1) - 64 * 1024, 64 * 1024)  # room for the JSON payload
    files, notes = [], []
    for record in records:
        data = bot.store.read_track_bytes(record.id)
        name = f"textunes-{record.id}.{record.format}"
        if len(data) > per_file:
            track = bot.store.load_track(record.id)
            data, bitrate = encode_to_fit(track, record.format if record.format != "wav" else "mp3", per_file)
            name = f"textunes-{record.id}.mp3" if record.format == "wav" else name
            notes.append(f"re-encoded at {bitrate} to fit the upload limit")
        files.append(discord.File(io.BytesIO(data), filename=name))
    return files, notes


async def deliver_tracks(
    bot, surface: Surface, job: JobRecord, plan: JobPlan, tracks: list[Track]
) -> list[TrackRecord]:
    from bot.embeds import track_embeds
    from bot.views import track_view

    store = bot.store
    records = await asyncio.to_thread(_finish_and_store, bot, job, plan, tracks)
    if not await asyncio.to_thread(store.claim_delivery, job.id):
        log.info("job %s was already delivered; not posting again", job.id)
        return records
    try:
        files, notes = await asyncio.to_thread(_upload_files, bot, records, surface.upload_limit)
        content = f"<@{job.user_id}> **{plan.title}** is ready." + (f" ({'; '.join(notes)})" if notes else "")
        message = await surface.deliver(
            content=content,
            embeds=track_embeds(plan, records, tracks),
            files=files,
            view=track_view(job, records),
        )
    except Exception as exc:
        await asyncio.to_thread(store.release_delivery, job.id)  # let a later attempt post it
        await asyncio.to_thread(store.mark_failed, job.id, f"could not post the result: {exc}")
        await _safe_fail(surface, f"⚠️ The track was made but could not be posted: {_friendly_http(exc)}")
        return records
    await asyncio.to_thread(store.mark_delivered, job.id, message.id)
    await asyncio.to_thread(store.mark_done, job.id)
    try:  # an inviting 🔁 under the track; missing Add Reactions permission is not an error
        await message.add_reaction(REGENERATE_EMOJI)
    except discord.HTTPException:
        pass
    return records


def _friendly_http(exc: Exception) -> str:
    if isinstance(exc, discord.Forbidden):
        return "I don't have permission to post files here (Attach Files / Send Messages)."
    if isinstance(exc, discord.HTTPException) and exc.status == 413:
        return "the file is too large for this server's upload limit."
    if isinstance(exc, UserInputError):
        return str(exc)
    return "Discord did not accept the upload; please try again."


async def _safe_fail(surface: Surface, message: str) -> None:
    try:
        await surface.fail(message)
    except discord.HTTPException:
        log.warning("could not report a failure to the user")


async def resume_job(bot, job: JobRecord) -> None:
    """Finish a job that was queued or running when the bot stopped (posted in its channel)."""
    if job.channel_id is None:
        await asyncio.to_thread(bot.store.mark_failed, job.id, "no channel to deliver to")
        return
    channel = bot.get_partial_messageable(int(job.channel_id))
    reference = channel.get_partial_message(int(job.message_id)) if job.message_id else None
    plan = JobPlan(
        spec=job.spec,
        samples=job.samples,
        analysis=job.request.get("analysis"),
        title=str(job.request.get("title") or "Your track") + " (resumed after a restart)",
    )
    if job.request.get("extend_seconds") and job.parent_track_id:
        plan.continue_from = await asyncio.to_thread(bot.store.load_track, job.parent_track_id)
        plan.extend_seconds = float(job.request["extend_seconds"])
    try:
        await run_job(bot, ChannelSurface(channel, reference), job, plan)
    except discord.HTTPException as exc:
        log.warning("could not resume job %s: %s", job.id, exc)


def owner_refusal(job: JobRecord, user_id: int | str) -> str | None:
    """Why ``user_id`` may not act on ``job`` (only its owner may), or None."""
    if str(job.user_id) != str(user_id):
        return "That track belongs to someone else — use `/bgm` to make your own."
    return None


def analysis_summary(analysis: Any) -> dict:
    """The parts of an Analysis shown in Discord and stored with the job."""
    data = analysis.to_dict()
    keep = ("language", "summary", "topic", "emotion", "valence", "arousal", "reasons", "truncated")
    return {k: data.get(k) for k in keep}


async def capacity_refusal(bot, user_id: int | str, guild_id: int | None) -> str | None:
    """Say no before deferring (so the answer can be ephemeral): queue full or user over the limit."""
    from bot.cogs.library import guild_limits

    limits = await asyncio.to_thread(guild_limits, bot.store, guild_id, bot)
    mine = len(bot.engine.jobs_of(str(user_id)))
    per_user = int(limits.get("jobs_per_user") or bot.settings.per_user_jobs)
    if mine >= per_user:
        return (
            f"You already have {mine} job(s) in progress (the limit is {per_user}). "
            "Wait for one to finish, or `/cancel` it."
        )
    queue_size = int(limits.get("queue_size") or bot.settings.max_queue)
    if bot.engine.queue_length() >= queue_size:
        return f"The queue is full ({queue_size} jobs). Try again in a few minutes."
    return None


async def start_interaction_job(
    bot,
    interaction: discord.Interaction,
    plan: JobPlan,
    *,
    kind: str,
    parent_track_id: str | None = None,
) -> list[TrackRecord]:
    """The common path of every interaction that makes music: check, defer, record, run."""
    refusal = await capacity_refusal(bot, interaction.user.id, interaction.guild_id)
    if refusal:
        await reply_ephemeral(interaction, f"⚠️ {refusal}")
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
    return await run_job(bot, InteractionSurface(interaction), job, plan)


async def reply_ephemeral(interaction: discord.Interaction, message: str) -> None:
    """An ephemeral answer whether or not the interaction was already acknowledged."""
    if interaction.response.is_done():
        await interaction.followup.send(message, ephemeral=True)
    else:
        await interaction.response.send_message(message, ephemeral=True)
