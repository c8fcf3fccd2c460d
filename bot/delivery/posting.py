"""Posting a job's stored tracks to Discord exactly once: uploads that fit, retries, clear failures.

When Discord misbehaves: rate limits and most 5xx are retried by discord.py, the rest by us with
backoff; a file over the limit is re-encoded, else cut to a faded preview, and a 413 gets one more
try with half the size; an interaction past ~14 minutes, or whose webhook says 401/404, has its
track posted in the channel instead; a missing permission is told to the user (ephemeral, else DM)
and to the admin in a WARNING. A post that still fails leaves the job failed with the reason and
the track in the store, for ``/history``.
"""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass, field

import aiohttp
import discord

from bot.components import track_view
from bot.delivery.ledger import DeliveryJob as JobRecord
from bot.delivery.plan import JobPlan
from bot.delivery.surfaces import ChannelSurface, InteractionSurface, Surface, token_gone
from bot.embeds import mmss, track_embeds
from bot.replies import mention_only
from engine.errors import UserInputError
from engine.spec import Track
from engine.store import TrackRecord

log = logging.getLogger("textunes.bot")

REGENERATE_EMOJI = "\N{CLOCKWISE RIGHTWARDS AND LEFTWARDS OPEN CIRCLE ARROWS}"
# Retries. discord.py already does most of this and we rely on it: HTTPClient.request (the bot's own
# routes) waits out every 429 for its retry_after and retries 500/502/504/524 up to 5 times; the
# webhook adapter behind interaction responses waits out 429s and retries *every* 5xx 5 times. We add
# our own few retries only for what it raises without having retried: a 503 (or other 5xx outside
# that set) on the bot's routes, a connection that never reached Discord, and RateLimited (raised
# instead of waiting only when the client sets max_ratelimit_timeout).
LIBRARY_RETRIED_5XX = frozenset({500, 502, 504, 524})
RETRY_DELAYS = (0.5, 1.5, 3.0)  # seconds before our 1st, 2nd, 3rd retry of one post
MAX_RATE_LIMIT_WAIT = 60.0

PREVIEW_MIN_SECONDS = 3.0  # shorter than this is not worth posting as a preview
PREVIEW_BITRATES = ("96k", "64k", "48k", "32k")


def _size(n: float) -> str:
    return f"{n / 1048576:.1f} MB" if n >= 1048576 else f"{n / 1024:.0f} KB"


@dataclass
class Uploads:
    """The files of one post (bytes, so a retry can send them again) and what was done to fit them."""

    budget: int
    items: list[tuple[str, bytes]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    previews: list[tuple[float, float]] = field(default_factory=list)  # (preview s, full s)

    @property
    def total(self) -> int:
        return sum(len(data) for _, data in self.items)

    def files(self) -> list[discord.File]:
        # fresh objects each time: discord.py closes a File after sending it
        return [discord.File(io.BytesIO(data), filename=name) for name, data in self.items]


def _encode_preview(track: Track, fmt: str, max_bytes: int) -> tuple[bytes, float]:
    """The first seconds of ``track`` that fit ``max_bytes``, faded out; returns (data, seconds)."""
    from engine.audio import AudioTooLarge, bitrates_for, encode, finish

    rates = bitrates_for(track, fmt, PREVIEW_BITRATES)  # Vorbis takes a range per rate and channels

    def seconds_at(bitrate: str) -> float:
        return max_bytes * 0.9 / (int(bitrate[:-1]) * 125)  # 10 % for the container and encoder slack

    # the best bitrate that still leaves a useful length (30 s or the whole track), else the lowest
    bitrate = next((b for b in rates if seconds_at(b) >= min(30.0, track.duration)), rates[-1])
    seconds = min(seconds_at(bitrate), track.duration)
    for _ in range(6):
        seconds = round(seconds, 1)
        if seconds < PREVIEW_MIN_SECONDS:
            break
        cut = finish(track, duration=seconds, fade_in=0.0, fade_out=min(2.0, seconds / 4))
        data = encode(cut, fmt, bitrate)
        if len(data) <= max_bytes:
            return data, seconds
        seconds *= 0.95 * max_bytes / len(data)
    raise AudioTooLarge(
        f"the track does not fit this server's upload limit ({_size(max_bytes)}) even as a "
        f"{PREVIEW_MIN_SECONDS:.0f}-second preview. Ask for a shorter duration, or post it with `/history` "
        "where larger files are allowed."
    )


def _prepare_uploads(bot, records: list[TrackRecord], limit: int) -> Uploads:
    """Each stored file as an attachment within ``limit`` bytes in all: as stored, else re-encoded at
    a lower bitrate, else (not even the lowest bitrate fits) a shorter preview."""
    from engine.audio import AudioTooLarge, encode_to_fit

    margin = min(64 * 1024, limit // 16)  # room for the JSON payload (embeds, components)
    per_file = max((limit - margin) // max(len(records), 1), 1)
    uploads = Uploads(budget=limit)
    for record in records:
        data = bot.store.read_track_bytes(record.id)
        fmt = record.format if record.format != "wav" else "mp3"
        name = f"textunes-{record.id}.{record.format}"
        if len(data) > per_file:
            track = bot.store.load_track(record.id)
            name = f"textunes-{record.id}.{fmt}"
            try:
                data, bitrate = encode_to_fit(track, fmt, per_file)
                note = f"re-encoded at {bitrate} to fit the upload limit"
            except AudioTooLarge:
                data, seconds = _encode_preview(track, fmt, per_file)
                name = f"textunes-{record.id}-preview.{fmt}"
                uploads.previews.append((seconds, track.duration))
                note = ""
            if note and note not in uploads.notes:
                uploads.notes.append(note)
        uploads.items.append((name, data))
    return uploads


def _ready_text(job: JobRecord, plan: JobPlan, uploads: Uploads, *, moved: bool) -> str:
    text = f"<@{job.user_id}> **{plan.shown_title}** is ready." + (
        f" ({'; '.join(uploads.notes)})" if uploads.notes else ""
    )
    if moved:
        text += " (posted here: the command's reply could no longer be edited)"
    if uploads.previews:
        shown, full = uploads.previews[0]
        text += (
            f"\n⚠️ This is a **preview**: the first {mmss(shown)} of {mmss(full)}, faded out. The full "
            f"track does not fit this server's upload limit ({_size(uploads.budget)}) even at the lowest "
            "bitrate. It is saved: post it with `/history` where larger files are allowed, or ask for a "
            "shorter duration."
        )
    return text


def describe_error(exc: BaseException) -> str:
    """An error for logs and the store: status and Discord's code, never a URL (it holds the token)."""
    if isinstance(exc, discord.HTTPException):
        return f"HTTP {exc.status} (code {exc.code}: {exc.text or 'no message'})"
    if isinstance(exc, discord.RateLimited):
        return f"rate limited for {exc.retry_after:.0f} s"
    if isinstance(exc, aiohttp.ClientError):
        return f"connection error ({type(exc).__name__})"
    return str(exc) or type(exc).__name__


def _retry_delay(exc: BaseException, attempt: int) -> float | None:
    """Seconds to wait before our next try of a post, or None when retrying would not help."""
    if attempt >= len(RETRY_DELAYS):
        return None
    if isinstance(exc, discord.RateLimited):
        return exc.retry_after if exc.retry_after <= MAX_RATE_LIMIT_WAIT else None
    if isinstance(exc, discord.HTTPException) and exc.status >= 500:
        url = str(getattr(exc.response, "url", ""))
        library_retried = "/webhooks/" in url or exc.status in LIBRARY_RETRIED_5XX  # see RETRY_DELAYS
        return None if library_retried else RETRY_DELAYS[attempt]
    if isinstance(exc, aiohttp.ClientConnectorError):  # never reached Discord: sending again is safe
        return RETRY_DELAYS[attempt]
    return None


async def post_tracks(
    bot,
    surface: Surface,
    job: JobRecord,
    plan: JobPlan,
    records: list[TrackRecord],
    tracks: list[Track] | None = None,
) -> discord.Message | None:
    """Post ``job``'s stored ``records`` once (``claim_delivery``); returns the message, or None when
    it was already claimed or could not be posted (the user is then told why)."""
    if not await asyncio.to_thread(bot.ledger.claim_delivery, job.id):
        log.info("job %s was already delivered; not posting again", job.id)
        return None
    fresh = await asyncio.to_thread(bot.ledger.job, job.id) or job  # its token may have been forgotten
    target = surface.target_for(fresh)
    budget = target.upload_limit
    uploads: Uploads | None = None
    shrunk, attempt = False, 0
    while True:
        try:
            if uploads is None or uploads.budget != budget:
                uploads = await asyncio.to_thread(_prepare_uploads, bot, records, budget)
            message = await target.deliver(
                content=_ready_text(job, plan, uploads, moved=target is not surface),
                embeds=track_embeds(plan, records, tracks),
                files=uploads.files(),
                view=track_view(job, records),
            )
            break
        except Exception as exc:
            if isinstance(surface, InteractionSurface) and target is surface and token_gone(exc):
                # the interaction's token died: nothing was posted, so the channel gets it (once)
                surface.expire(describe_error(exc))
                target = surface.channel_surface()
                budget = min(budget, target.upload_limit)
                continue
            if (
                isinstance(target, ChannelSurface)
                and target.message is not None
                and isinstance(exc, discord.NotFound)
            ):
                target.message = None  # someone deleted the status message: nothing changed, post anew
                continue
            if isinstance(exc, discord.HTTPException) and exc.status == 413 and not shrunk and uploads:
                # Discord's real limit is below the one it told us: once more with half of what we sent
                shrunk, budget = True, max(min(budget, uploads.total) // 2, 1)
                log.info(
                    "job %s: upload of %s refused as too large; trying %s",
                    job.id,
                    _size(uploads.total),
                    _size(budget),
                )
                continue
            delay = _retry_delay(exc, attempt)
            if delay is None:
                await _delivery_failed(bot, surface, target, job, plan, exc, attempts=attempt + 1)
                return None
            attempt += 1
            log.warning(
                "job %s: posting failed (%s); retry %d in %.1f s", job.id, describe_error(exc), attempt, delay
            )
            await asyncio.sleep(delay)
    await delivered(bot, job, message)
    return message


async def delivered(bot, job: JobRecord, message: discord.Message) -> None:
    await asyncio.to_thread(bot.ledger.mark_delivered, job.id, message.id)
    await asyncio.to_thread(bot.store.mark_done, job.id)
    try:  # an inviting 🔁 under the track; missing Add Reactions permission is not an error
        await message.add_reaction(REGENERATE_EMOJI)
    except discord.HTTPException:
        pass


async def _delivery_failed(
    bot, surface: Surface, target: Surface, job: JobRecord, plan: JobPlan, exc: Exception, *, attempts: int
) -> None:
    """The post cannot be made: fail the job with the reason, keep its tracks, tell the user."""
    store = bot.store
    await asyncio.to_thread(bot.ledger.release_delivery, job.id)  # a later attempt may post it
    if isinstance(exc, discord.Forbidden):
        await _missing_permission_failure(bot, surface, target, job, plan, exc)
        return
    tries = f" after {attempts} tries" if attempts > 1 else ""
    log.warning("job %s: could not post the result%s: %s", job.id, tries, describe_error(exc))
    await asyncio.to_thread(
        store.mark_failed, job.id, f"could not post the result{tries}: {describe_error(exc)}"
    )
    text = (
        f"⚠️ **{plan.shown_title}** was made but could not be posted: {_friendly_http(exc)} "
        "Your track is saved — use `/history` to post it again."
    )
    if isinstance(target, ChannelSurface) and target.mention is None:  # a channel line: say whose
        text = f"<@{job.user_id}> {text}"
    await safe_fail(target, text)


PERMISSION_LABELS = {
    "view_channel": "View Channel",
    "send_messages": "Send Messages",
    "attach_files": "Attach Files",
    "read_message_history": "Read Message History",
}


def _missing_permission(bot, job: JobRecord, target: Surface) -> str:
    """Which permission the bot lacks in the job's channel, from the cache Discord keeps up to date."""
    channel = bot.get_channel(int(job.channel_id)) if job.channel_id else None
    guild = getattr(channel, "guild", None)
    me = getattr(guild, "me", None)
    if channel is not None and me is not None and hasattr(channel, "permissions_for"):
        perms = channel.permissions_for(me)
        needed = ["view_channel", "send_messages", "attach_files"]
        if getattr(target, "reference", None) is not None:
            needed.append("read_message_history")  # replies need it
        for name in needed:
            if not getattr(perms, name):
                return PERMISSION_LABELS[name]
    return "Send Messages / Attach Files"  # a 403 does not say which; the cache did not know either


def _where(bot, job: JobRecord) -> str:
    channel = bot.get_channel(int(job.channel_id)) if job.channel_id else None
    guild = bot.get_guild(int(job.guild_id)) if job.guild_id else None
    guild_text = f"guild {guild.name!r} ({job.guild_id})" if guild else f"guild {job.guild_id}"
    name = getattr(channel, "name", None)
    channel_text = f"channel #{name} ({job.channel_id})" if name else f"channel {job.channel_id}"
    return f"{guild_text} {channel_text}"


async def _missing_permission_failure(
    bot, surface: Surface, target: Surface, job: JobRecord, plan: JobPlan, exc: discord.Forbidden
) -> None:
    permission = _missing_permission(bot, job, target)
    log.warning(
        "job %s: cannot post in %s: the bot is missing the %s permission there (Discord: %s). "
        "A server admin should grant it; the track is kept.",
        job.id,
        _where(bot, job),
        permission,
        describe_error(exc),
    )
    await asyncio.to_thread(
        bot.store.mark_failed, job.id, f"missing permission {permission} in channel {job.channel_id}"
    )
    text = (
        f"⚠️ **{plan.shown_title}** is ready, but I can't post it in <#{job.channel_id}>: I'm missing the "
        f"**{permission}** permission there. Ask a server admin to grant it to me in that channel. "
        "Your track is saved — post it with `/history` once that is fixed."
    )
    how = await tell_privately(bot, surface, job, text)
    if how == "":
        log.warning("job %s: could not tell user %s about the missing permission either", job.id, job.user_id)
    if isinstance(target, ChannelSurface) and target.message is not None:  # the stale "generating…" line
        try:
            await target.message.edit(
                content=f"⚠️ **{plan.shown_title}** could not be posted here (missing {permission})."
            )
        except discord.HTTPException:
            pass


async def tell_privately(bot, surface: Surface, job: JobRecord, text: str) -> str:
    """Ephemeral through the interaction while it lives, else a DM; returns how, or "" if neither."""
    if isinstance(surface, InteractionSurface):
        fresh = await asyncio.to_thread(bot.ledger.job, job.id) or job
        if surface.usable(fresh):
            try:
                await surface.interaction.followup.send(text, ephemeral=True)
                try:  # the public "generating…" reply should not stay at 100 % forever
                    await surface.interaction.edit_original_response(
                        content="⚠️ The track could not be posted here (see the message only you can see)."
                    )
                except discord.HTTPException:
                    pass
                return "ephemeral"
            except discord.HTTPException as exc:
                log.info("job %s: ephemeral message refused (%s)", job.id, describe_error(exc))
    try:
        dm = await bot.create_dm(discord.Object(int(job.user_id)))
        await dm.send(text, allowed_mentions=mention_only(job.user_id))
        return "dm"
    except discord.HTTPException as exc:  # 50007: the user does not accept DMs from the bot
        log.info("job %s: DM to the user refused (%s)", job.id, describe_error(exc))
    return ""


def _friendly_http(exc: Exception) -> str:
    if isinstance(exc, discord.Forbidden):
        return "I don't have permission to post files here (Attach Files / Send Messages)."
    if isinstance(exc, discord.HTTPException) and exc.status == 413:
        return "the file is too large for this server's upload limit."
    if isinstance(exc, discord.HTTPException) and exc.status >= 500:
        return f"Discord kept failing (HTTP {exc.status}); it is probably having trouble right now."
    if isinstance(exc, discord.RateLimited):
        return "Discord is rate-limiting me; please try again in a minute."
    if isinstance(exc, UserInputError):
        return str(exc)
    return "Discord did not accept the upload; please try again."


async def safe_fail(surface: Surface, message: str) -> discord.Message | None:
    try:
        return await surface.fail(message)
    except (discord.HTTPException, aiohttp.ClientError) as exc:
        log.warning("could not report a failure to the user (%s)", describe_error(exc))
    return None
