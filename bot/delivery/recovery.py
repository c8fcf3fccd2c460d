"""After a restart (bot.py setup_hook): finish what the last process left behind, posting nothing twice.

A job killed between the ledger's ``claim_delivery`` and ``mark_delivered`` is never generated again: the channel
is read to see whether its post landed (recorded as delivered), else its stored tracks are posted
once, and if Discord cannot be read the user is told the track is saved rather than risking a second
upload. Jobs stopped after too many attempts get a visible failure message (once), and resumed jobs
answer in the user's original interaction reply while its token lives, else in the channel.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import aiohttp
import discord

from bot.delivery.ledger import DeliveryJob as JobRecord
from bot.delivery.plan import JobPlan
from bot.delivery.posting import delivered, describe_error, post_tracks, safe_fail, tell_privately
from bot.delivery.progress import follow
from bot.delivery.surfaces import ChannelSurface, StoredInteraction, job_channel, recovery_surface
from engine.service import RequestHandle

log = logging.getLogger("textunes.bot")

# ----------------------------------------------------------------------------------------------
# After a restart (bot.py setup_hook): what the last process left behind
# ----------------------------------------------------------------------------------------------
# how far before the job's creation to start reading the channel (the interaction's reply is made
# just before the job is recorded; clocks differ a little) and how many messages to read at most
HISTORY_SLACK = 120.0
HISTORY_LIMIT = 200


def _plan_of(job: JobRecord, suffix: str = "") -> JobPlan:
    return JobPlan(
        spec=job.spec,
        samples=job.samples,
        analysis=job.request.get("analysis"),
        title=str(job.request.get("title") or "Your track") + suffix,
    )


async def follow_resumed(bot, handle: RequestHandle) -> None:
    """A job that was queued or running when the bot stopped, resubmitted by ``MusicService.start``:
    shown and posted once, in the user's original interaction reply while its token lives."""
    job = await asyncio.to_thread(bot.ledger.job, handle.job_id)
    if job is None or job.channel_id is None:
        log.warning("resumed job %s has no channel to deliver to; its track stays in /history", handle.job_id)
        return
    try:
        await follow(bot, recovery_surface(bot, job), handle, _plan_of(job, " (resumed after a restart)"))
    except discord.HTTPException as exc:
        log.warning("could not resume job %s: %s", job.id, describe_error(exc))


async def post_undelivered(bot, job: JobRecord) -> None:
    """Tracks stored but never claimed for posting (the bot stopped in between): post them once."""
    records = await asyncio.to_thread(bot.store.tracks_of_job, job.id)
    if not records or job.channel_id is None:
        return
    try:
        await post_tracks(bot, recovery_surface(bot, job), job, _plan_of(job), records)
    except discord.HTTPException as exc:
        log.warning("could not post job %s after the restart: %s", job.id, describe_error(exc))


async def report_given_up(bot, job: JobRecord) -> None:
    """Tell the user, once, that ``job`` was stopped after too many interrupted attempts (its error)."""
    ledger = bot.ledger
    if job.channel_id is None or not await asyncio.to_thread(ledger.claim_delivery, job.id):
        return
    title = str(job.request.get("title") or "Your track")
    text = f"⚠️ **{title}** failed: {job.error or 'it was interrupted too many times.'}"
    message = await safe_fail(recovery_surface(bot, job), text)
    if message is None:  # nothing was shown: a later attempt may claim it again
        await asyncio.to_thread(ledger.release_delivery, job.id)
        return
    await asyncio.to_thread(ledger.mark_delivered, job.id, message.id)


def _our_post(bot, message: discord.Message, track_ids: set[str]) -> bool:
    """Is ``message`` the bot's post of one of these tracks (files are named textunes-{track_id}.*)?"""
    me = bot.user.id if bot.user else None
    if message.author.id != me and message.webhook_id != bot.application_id:
        return False
    return any(track_id in a.filename for a in message.attachments for track_id in track_ids)


async def _find_post(bot, job: JobRecord, track_ids: set[str]) -> discord.Message | None:
    """The message carrying ``job``'s tracks, if the interrupted upload reached Discord.

    Reads the channel from just before the job was made, oldest first: the post is an edit of the
    interaction's reply or of the status message (both made when the job started) or a message soon
    after. Without Read Message History, the interaction's original response (where an interaction
    job posts) is looked at instead. Raises when neither can be read: then nobody can tell.
    """
    channel = job_channel(bot, job)
    after = datetime.fromtimestamp(job.created_at - HISTORY_SLACK, tz=timezone.utc)
    try:
        async for message in channel.history(limit=HISTORY_LIMIT, after=after, oldest_first=True):
            if _our_post(bot, message, track_ids):
                return message
        return None
    except (discord.HTTPException, aiohttp.ClientError, asyncio.TimeoutError) as exc:
        if not job.interaction_valid(margin=5.0):
            raise
        log.info(
            "job %s: channel history unreadable (%s); asking the interaction", job.id, describe_error(exc)
        )
        try:
            original = await StoredInteraction(bot, job).followup.fetch_message("@original")  # type: ignore[arg-type]
        except discord.HTTPException:
            raise exc from None
        if _our_post(bot, original, track_ids):
            return original
        raise  # the interaction shows no track, but a moved post could be in the channel: unknown


async def finish_interrupted_delivery(bot, job: JobRecord) -> None:
    """A job claimed for posting when the bot died: its tracks are stored, the post may have landed.

    Never generated again. Found on Discord → recorded as delivered. Certainly not there → the stored
    tracks are posted through a fresh claim (exactly once). Discord cannot be read → a short visible
    note points to ``/history`` rather than risking a second upload.
    """
    store = bot.store
    records = await asyncio.to_thread(store.tracks_of_job, job.id)
    if not records:  # only a failure notice is claimed without tracks (report_given_up): show it again
        await asyncio.to_thread(bot.ledger.release_delivery, job.id)
        if job.state != "failed":  # claimed with nothing to post: say it stopped, once
            await asyncio.to_thread(store.mark_failed, job.id, "interrupted by a restart")
            job = await asyncio.to_thread(bot.ledger.job, job.id) or job
        await report_given_up(bot, job)
        return
    plan = _plan_of(job)
    try:
        found = await _find_post(bot, job, {r.id for r in records})
    except (discord.HTTPException, aiohttp.ClientError, asyncio.TimeoutError) as exc:
        log.warning(
            "job %s was being posted when the bot stopped, and Discord cannot be read to check (%s); "
            "telling the user to use /history instead of risking a second post",
            job.id,
            describe_error(exc),
        )
        await _say_saved(bot, job, plan)
        return
    if found is not None:
        log.info("job %s had been posted before the restart (message %s)", job.id, found.id)
        await delivered(bot, job, found)
        return
    log.info("job %s was not posted before the restart; posting its stored tracks", job.id)
    await asyncio.to_thread(bot.ledger.release_delivery, job.id)
    try:
        await post_tracks(bot, recovery_surface(bot, job), job, plan, records)
    except discord.HTTPException as exc:  # a failure message that could not be shown either
        log.warning("could not post job %s after the restart: %s", job.id, describe_error(exc))


async def _say_saved(bot, job: JobRecord, plan: JobPlan) -> None:
    """The visible note for a post that may or may not have landed; the job counts as delivered."""
    store = bot.store
    text = (
        f"⚠️ I restarted while posting **{plan.title}** and could not check whether it arrived. "
        "It is saved: use `/history` to get it."
    )
    surface = ChannelSurface(job_channel(bot, job), mention=job.user_id)
    message = await safe_fail(surface, text)
    if message is None and not await tell_privately(bot, surface, job, f"<@{job.user_id}> {text}"):
        # keep the claim (never post twice); the job is stopped with the reason, its track kept
        await asyncio.to_thread(store.mark_failed, job.id, "restarted mid-post; could not check or tell")
        return
    await asyncio.to_thread(bot.ledger.mark_delivered, job.id, message.id if message else None)
    await asyncio.to_thread(store.mark_done, job.id)
