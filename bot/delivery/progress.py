"""Following one request for Discord: admission, submit to the engine's ``MusicService``, its outputs
shown as progress edits, then the finished tracks posted once.

The service owns the request (job record, analysis in its sandbox, generation, finishing and storing
the audio in the member's format); this module only turns its typed outputs into Discord messages.
Every feature (``/bgm``, ``/bgm-from-text``, 🔁, the buttons, restart recovery) ends in ``follow``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp
import discord

from bot.delivery.plan import JobPlan
from bot.delivery.posting import describe_error, post_tracks, safe_fail
from bot.delivery.surfaces import InteractionSurface, Surface
from bot.limits import server_rates
from bot.ratelimit import limiter_for
from bot.replies import reply_private
from engine.errors import UserInputError
from engine.service import (
    Analysed,
    Analysing,
    Cancelled,
    Done,
    Failed,
    MusicRequest,
    Progress,
    Queued,
    Requester,
    RequestHandle,
    Started,
    new_job_id,
)
from engine.store import TrackRecord

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


async def _fail_document(surface: Surface, message: str) -> None:
    """A document that could not be read or analysed: only its sender hears about it (the public
    "thinking…" reply goes), as for any other mistake in what they sent."""
    if isinstance(surface, InteractionSurface) and surface.usable():
        try:
            await reply_private(surface.interaction, f"⚠️ {message}")  # type: ignore[arg-type]
            return
        except discord.HTTPException as exc:
            log.info("private failure not sent (%s)", describe_error(exc))
    await safe_fail(surface, f"⚠️ {message}")


async def follow(bot, surface: Surface, handle: RequestHandle, plan: JobPlan) -> list[TrackRecord]:
    """Show ``handle``'s outputs on ``surface`` and post its stored tracks once (``claim_delivery``)."""
    interval = getattr(bot.settings, "progress_interval", 2.0)
    last_edit = 0.0
    analysed = False
    async for out in handle:
        now = time.monotonic()
        if isinstance(out, Analysing):
            await _safe_update(surface, "📖 Reading your text…")
        elif isinstance(out, Analysed):
            analysed, plan.title, plan.analysis = True, out.title, out.summary
        elif isinstance(out, Queued) and out.position:
            await _safe_update(surface, f"⏳ **{plan.shown_title}** — queued, position {out.position}.")
            last_edit = now
        elif isinstance(out, Started):
            await _safe_update(surface, f"🎼 **{plan.shown_title}** — generating… {_percent_bar(0)} 0%")
            last_edit = now
        elif isinstance(out, Progress) and now - last_edit >= interval:
            pct = out.percent
            await _safe_update(
                surface, f"🎼 **{plan.shown_title}** — generating… {_percent_bar(pct)} {pct:.0f}%"
            )
            last_edit = now
        elif isinstance(out, Cancelled):
            await safe_fail(surface, f"🛑 **{plan.shown_title}** — cancelled.")
            return []
        elif isinstance(out, Failed):
            await _failed(surface, plan, out, document=plan.document and not analysed)
            return []
        elif isinstance(out, Done):
            job = await asyncio.to_thread(bot.ledger.job, handle.job_id)
            if job is None:
                log.warning("job %s vanished from the store before posting", handle.job_id)
                return []
            if plan.spec is None:
                plan.spec = job.spec  # text mode: the spec the analysis chose
            await post_tracks(bot, surface, job, plan, list(out.tracks))
            return list(out.tracks)
    return []


async def _failed(surface: Surface, plan: JobPlan, out: Failed, *, document: bool) -> None:
    if out.reason == "shutdown":
        # the bot is stopping: the job stays queued/running in the store; the next start resumes it
        log.info("job %s interrupted by shutdown; it resumes on the next start", out.job_id)
        try:  # best effort: Discord's session may already be closing
            await surface.update(
                f"⏸️ **{plan.shown_title}** — the bot is restarting; the track follows when it is back."
            )
        except Exception:  # noqa: BLE001
            log.debug("could not say that job %s is paused", out.job_id)
    elif document and out.reason in ("input", "unavailable"):
        await _fail_document(surface, out.message)
    elif out.reason in ("input", "refused"):
        await safe_fail(surface, f"⚠️ {out.message}")
    else:
        await safe_fail(surface, f"⚠️ **{plan.shown_title}** failed: {out.message}")


@dataclass(frozen=True)
class Refusal:
    """Why a request is not taken now, and for how long that answer stays true."""

    text: str
    retry_after: float = 60.0


def requester_of(user_id: int | str, guild_id: int | None, channel_id: int | None) -> Requester:
    return Requester(
        str(user_id),
        None if guild_id is None else str(guild_id),
        None if channel_id is None else str(channel_id),
    )


async def capacity_refusal(
    bot,
    requester: Requester,
    *,
    samples: int = 1,
    duration: float | None = None,
    charge: bool = True,
) -> Refusal | None:
    """Say no before deferring (so the answer can be private): the service's one admission check
    (jobs per member, this server's queue, samples, duration), then the rate limit.

    Every path that makes music comes here, so this is where the rate limit is counted: a request
    that passes takes a token from the member's and the server's buckets.
    """
    try:
        await bot.service.admit(requester, samples=samples, duration=duration)
    except UserInputError as exc:
        return Refusal(str(exc))
    # last, so a request refused above does not use up a token
    user_rate, guild_rate = await asyncio.to_thread(server_rates, bot.store, requester.guild_id)
    limited = limiter_for(bot).hit(
        requester.user_id, requester.guild_id, user_rate=user_rate, guild_rate=guild_rate, charge=charge
    )
    return Refusal(limited.message(), limited.retry_after) if limited else None


def music_request(plan: JobPlan, *, kind: str, parent_track_id: str | None = None) -> MusicRequest:
    return MusicRequest(
        spec=plan.spec,
        samples=plan.samples,
        title=plan.title,
        kind=kind,
        parent_track_id=parent_track_id,
        continue_from_track_id=plan.continue_from_track_id,
        keep_seconds=plan.keep_seconds,
        extend_seconds=plan.extend_seconds,
    )


async def submit_answered(
    bot,
    requester: Requester,
    request,
    *,
    interaction_id: int | None = None,
    interaction_token: str | None = None,
) -> RequestHandle:
    """Submit ``request`` with its ledger row written first, under the job id the bot makes: a crash
    in between leaves a row without a job (ignored), never a job the bot cannot answer. A refused
    submit takes its row back."""
    job_id = new_job_id()
    await asyncio.to_thread(
        bot.ledger.record,
        job_id,
        user_id=requester.user_id,
        guild_id=requester.guild_id,
        channel_id=requester.channel_id,
        interaction_id=interaction_id,
        interaction_token=interaction_token,
    )
    try:
        return await bot.service.submit(requester, request, job_id=job_id)
    except BaseException:
        await asyncio.to_thread(bot.ledger.forget, job_id)
        raise


async def start_interaction_job(
    bot,
    interaction: discord.Interaction,
    plan: JobPlan,
    *,
    kind: str,
    parent_track_id: str | None = None,
    request=None,
    charged: bool = False,
) -> list[TrackRecord]:
    """The common path of every interaction that makes music: admit, defer, submit, follow.

    ``request``: a ready ``DocumentRequest`` (text mode) instead of the plan's music request;
    ``charged``: the caller already took this request's rate-limit token.
    """
    requester = requester_of(interaction.user.id, interaction.guild_id, interaction.channel_id)
    if not charged:
        refusal = await capacity_refusal(
            bot, requester, samples=plan.samples, duration=plan.spec.duration if plan.spec else None
        )
        if refusal:
            raise UserInputError(refusal.text)
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True)
    handle = await submit_answered(
        bot,
        requester,
        request or music_request(plan, kind=kind, parent_track_id=parent_track_id),
        interaction_id=interaction.id,
        interaction_token=interaction.token,
    )
    job = await asyncio.to_thread(bot.ledger.job, handle.job_id)
    return await follow(bot, InteractionSurface(interaction, job), handle, plan)
