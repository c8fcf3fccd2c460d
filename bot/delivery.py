"""Running one job for Discord: submit → progress edits → finished audio posted exactly once.

Every feature (``/bgm``, ``/bgm-from-text``, 🔁, the buttons, restart recovery) ends here, so the
rules live in one place: the store records each step, ``claim_delivery`` makes the post happen at
most once, and every failure reaches the user as a friendly message.

A *surface* is where a job talks to the user: the interaction's own response (edited in place) or,
without a live interaction (a 🔁 reaction, a job resumed after a restart), a channel message.

When Discord misbehaves (``deliver_tracks``): rate limits and most 5xx are retried by discord.py,
the rest by us with backoff; a file over the limit is re-encoded, else cut to a faded preview, and
a 413 gets one more try with half the size; an interaction past ~14 minutes, or whose webhook says
401/404, has its track posted in the channel instead; a missing permission is told to the user
(ephemeral, else DM) and to the admin in a WARNING. A post that still fails leaves the job failed
with the reason and the track in the store, for ``/history``.

After a restart (``bot.py`` setup_hook → the functions at the end): a job killed between
``claim_delivery`` and ``mark_delivered`` is never generated again: the channel is read to see
whether its post landed (recorded as delivered), else its stored tracks are posted once, and if
Discord cannot be read the user is told the track is saved rather than risking a second upload.
Jobs stopped after too many attempts get a visible failure message (once), and resumed jobs answer
in the user's original interaction reply while its token lives, else in the channel.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import aiohttp
import discord

from bot.embeds import mmss
from engine.errors import UserInputError
from engine.jobs import JobCancelled, JobFailed, JobRequest
from engine.spec import MusicSpec, Track
from engine.store import INTERACTION_TTL, JobRecord, TrackRecord, spec_to_request

log = logging.getLogger("textunes.bot")

REGENERATE_EMOJI = "\N{CLOCKWISE RIGHTWARDS AND LEFTWARDS OPEN CIRCLE ARROWS}"
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
# Discord's interaction tokens die after 15 minutes: a job older than 14 goes to the channel instead
# of racing the deadline with a multi-megabyte upload.
TOKEN_MARGIN = 60.0

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


class Surface:
    """Where a job's progress and result are shown."""

    upload_limit: int = DEFAULT_UPLOAD_LIMIT

    async def update(self, content: str) -> None:
        raise NotImplementedError

    async def deliver(
        self, *, content: str, embeds: list[discord.Embed], files: list[discord.File], view: discord.ui.View
    ) -> discord.Message:
        raise NotImplementedError

    async def fail(self, message: str) -> discord.Message | None:
        """Show ``message`` (a failure) to the user; returns the message that shows it when known."""
        await self.update(message)
        return None

    def target_for(self, job: JobRecord) -> Surface:
        """Where the finished track of ``job`` should be posted (this surface, unless it expired)."""
        return self


class ChannelSurface(Surface):
    """A status message in a channel (optionally replying to a message), edited as the job goes."""

    def __init__(
        self,
        channel: discord.abc.Messageable,
        reference: discord.PartialMessage | discord.MessageReference | None = None,
        *,
        mention: int | str | None = None,
    ) -> None:
        self.channel = channel
        self.reference = reference
        self.mention = mention  # the user to ping in failure messages (a reply alone does not say who)
        self.message: discord.Message | None = None
        self.muted = False  # posting here was refused (403): stop trying progress messages
        guild = getattr(channel, "guild", None)
        self.upload_limit = getattr(guild, "filesize_limit", None) or DEFAULT_UPLOAD_LIMIT

    async def update(self, content: str) -> None:
        if self.muted:
            return
        try:
            if self.message is None:
                self.message = await self.channel.send(
                    content, reference=self.reference, mention_author=False
                )
            else:
                self.message = await self.message.edit(content=content)
        except discord.Forbidden:
            self.muted = True  # the final post will say which permission is missing
            raise

    async def fail(self, message: str) -> discord.Message | None:
        self.muted = False  # a refused progress message need not mean the failure text is refused
        await self.update(f"<@{self.mention}> {message}" if self.mention else message)
        return self.message

    async def deliver(self, *, content, embeds, files, view) -> discord.Message:
        if self.message is not None:
            return await self.message.edit(content=content, embeds=embeds, attachments=files, view=view)
        return await self.channel.send(
            content, embeds=embeds, files=files, view=view, reference=self.reference, mention_author=False
        )


def _token_gone(exc: BaseException) -> bool:
    """The interaction webhook's answer once its token expired (401 Invalid Webhook Token / 404
    Unknown Webhook) or its reply was deleted (404 Unknown Message): the edit did not happen."""
    return isinstance(exc, discord.HTTPException) and exc.status in (401, 404)


class InteractionSurface(Surface):
    """The deferred response of a slash command or button click, edited as the job goes.

    Its token lives 15 minutes. Past 14 (by the job's age), or once the webhook answers 401/404,
    progress edits stop and the result goes to the channel as a new message mentioning the user.
    """

    def __init__(self, interaction: discord.Interaction, job: JobRecord | None = None) -> None:
        self.interaction = interaction
        self.upload_limit = interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT
        self.created_at = job.created_at if job is not None else time.time()
        self.expired = False
        self.reply_id: int | None = None  # our original response, which the channel message replies to
        self._channel: ChannelSurface | None = None

    def usable(self, job: JobRecord | None = None) -> bool:
        """Can the interaction still be answered (by our clock and by the job's stored token)?"""
        if self.expired or time.time() >= self.created_at + INTERACTION_TTL - TOKEN_MARGIN:
            return False
        return job is None or job.interaction_valid(margin=TOKEN_MARGIN)

    def expire(self, why: str) -> None:
        if not self.expired:
            log.info(
                "interaction %s can no longer be answered (%s); using its channel", self.interaction.id, why
            )
        self.expired = True

    def channel_surface(self) -> ChannelSurface:
        """The channel the command was used in, as a surface that replies to our original response."""
        if self._channel is None:
            inter = self.interaction
            channel = inter.channel
            if not isinstance(channel, discord.abc.Messageable):
                channel = inter.client.get_partial_messageable(inter.channel_id or 0, guild_id=inter.guild_id)
            reference = None
            if self.reply_id is not None:
                reference = discord.MessageReference(
                    message_id=self.reply_id, channel_id=channel.id, fail_if_not_exists=False
                )
            self._channel = ChannelSurface(channel, reference, mention=inter.user.id)
        return self._channel

    def target_for(self, job: JobRecord) -> Surface:
        if not self.usable(job):
            self.expire("older than 14 minutes")
        return self.channel_surface() if self.expired else self

    async def update(self, content: str) -> None:
        if not self.usable():
            return  # progress is not worth a channel message; the result will be one
        try:
            message = await self.interaction.edit_original_response(content=content)
        except discord.HTTPException as exc:
            if not _token_gone(exc):
                raise
            self.expire(f"HTTP {exc.status}")
            return
        self.reply_id = message.id

    async def fail(self, message: str) -> discord.Message | None:
        if self.usable():
            try:
                return await self.interaction.edit_original_response(content=message)
            except discord.HTTPException as exc:
                if not _token_gone(exc):
                    raise
                self.expire(f"HTTP {exc.status}")
        return await self.channel_surface().fail(message)

    async def deliver(self, *, content, embeds, files, view) -> discord.Message:
        return await self.interaction.edit_original_response(
            content=content, embeds=embeds, attachments=files, view=view
        )


class StoredInteraction:
    """The parts of a ``discord.Interaction`` that ``InteractionSurface`` uses, rebuilt after a restart
    from the interaction id and token the job stored, so a resumed job can still edit the user's
    original response (the stale "⏳ queued" line becomes the result) while the token lives."""

    def __init__(self, bot, job: JobRecord) -> None:
        if not (job.interaction_id and job.interaction_token and job.channel_id and bot.application_id):
            raise ValueError(f"job {job.id} has no interaction to answer")
        self.id = int(job.interaction_id)
        self.client = bot
        self.channel = _job_channel(bot, job)
        self.channel_id = int(job.channel_id)
        self.guild_id = int(job.guild_id) if job.guild_id else None
        self.user = discord.Object(int(job.user_id))
        guild = bot.get_guild(self.guild_id) if self.guild_id else None
        self.filesize_limit = getattr(guild, "filesize_limit", None) or DEFAULT_UPLOAD_LIMIT
        # the same webhook discord.py builds for Interaction.followup (application id + token)
        self.followup = discord.Webhook.from_state(
            data={"id": bot.application_id, "type": 3, "token": job.interaction_token},
            state=bot._connection,
        )

    async def edit_original_response(self, **fields: Any) -> discord.WebhookMessage:
        return await self.followup.edit_message("@original", **fields)  # type: ignore[arg-type]


def _job_channel(bot, job: JobRecord) -> discord.abc.Messageable:
    """The channel the job was asked in: the cached one when known, else a partial one (enough to post)."""
    cid = int(job.channel_id or 0)
    channel = bot.get_channel(cid)
    if isinstance(channel, discord.abc.Messageable):
        return channel
    return bot.get_partial_messageable(cid, guild_id=int(job.guild_id) if job.guild_id else None)


def recovery_surface(bot, job: JobRecord) -> Surface:
    """Where a job from before a restart talks to its user: its interaction's original response while
    the token lives (an ``InteractionSurface``, so 401/404 and the 14-minute margin fall back to the
    channel as for any job), else a channel message mentioning the user (replying to ``message_id``
    when the job has one)."""
    if job.interaction_valid(margin=TOKEN_MARGIN):
        try:
            return InteractionSurface(StoredInteraction(bot, job), job)
        except ValueError:
            pass
    channel = _job_channel(bot, job)
    reference = None
    if job.message_id:
        reference = discord.MessageReference(
            message_id=int(job.message_id), channel_id=int(job.channel_id or 0), fail_if_not_exists=False
        )
    return ChannelSurface(channel, reference, mention=job.user_id)


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


async def _safe_update(surface: Surface, content: str) -> None:
    """Progress is best effort: a refused or failed edit must not stop the job."""
    try:
        await surface.update(content)
    except (discord.HTTPException, aiohttp.ClientError) as exc:
        log.info("progress message not updated (%s)", _describe(exc))


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
        await _safe_fail(surface, f"⚠️ {exc}")
        return []

    interval = getattr(bot.settings, "progress_interval", 2.0)
    last_edit = 0.0
    async for event in handle.events():
        now = time.monotonic()
        if event.kind == "queued" and event.position:
            await _safe_update(surface, f"⏳ **{plan.title}** — queued, position {event.position}.")
            last_edit = now
        elif event.kind == "started":
            await asyncio.to_thread(store.mark_running, job.id)
            await _safe_update(surface, f"🎼 **{plan.title}** — generating… {_percent_bar(0)} 0%")
            last_edit = now
        elif event.kind == "progress" and event.percent is not None and now - last_edit >= interval:
            pct = event.percent
            await _safe_update(surface, f"🎼 **{plan.title}** — generating… {_percent_bar(pct)} {pct:.0f}%")
            last_edit = now
    try:
        tracks = await handle.result()
    except JobCancelled:
        await asyncio.to_thread(store.mark_cancelled, job.id)
        await _safe_fail(surface, f"🛑 **{plan.title}** — cancelled.")
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
        await _safe_fail(surface, f"⚠️ **{plan.title}** failed: {exc}")
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
    from engine.audio import AudioTooLarge, encode, finish

    rates = [b for b in PREVIEW_BITRATES if fmt != "ogg" or int(b[:-1]) >= 48]  # Vorbis floor ~48k

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
    text = f"<@{job.user_id}> **{plan.title}** is ready." + (
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


def _describe(exc: BaseException) -> str:
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


async def deliver_tracks(
    bot, surface: Surface, job: JobRecord, plan: JobPlan, tracks: list[Track]
) -> list[TrackRecord]:
    """Store the finished ``tracks`` (once) and post them (once)."""
    records = await asyncio.to_thread(_finish_and_store, bot, job, plan, tracks)
    await post_tracks(bot, surface, job, plan, records, tracks)
    return records


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
    from bot.embeds import track_embeds
    from bot.views import track_view

    store = bot.store
    if not await asyncio.to_thread(store.claim_delivery, job.id):
        log.info("job %s was already delivered; not posting again", job.id)
        return None
    fresh = await asyncio.to_thread(store.get_job, job.id) or job  # its token may have been forgotten
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
            if isinstance(surface, InteractionSurface) and target is surface and _token_gone(exc):
                # the interaction's token died: nothing was posted, so the channel gets it (once)
                surface.expire(_describe(exc))
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
                "job %s: posting failed (%s); retry %d in %.1f s", job.id, _describe(exc), attempt, delay
            )
            await asyncio.sleep(delay)
    await _delivered(bot, job, message)
    return message


async def _delivered(bot, job: JobRecord, message: discord.Message) -> None:
    await asyncio.to_thread(bot.store.mark_delivered, job.id, message.id)
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
    await asyncio.to_thread(store.release_delivery, job.id)  # a later attempt may post it
    if isinstance(exc, discord.Forbidden):
        await _missing_permission_failure(bot, surface, target, job, plan, exc)
        return
    tries = f" after {attempts} tries" if attempts > 1 else ""
    log.warning("job %s: could not post the result%s: %s", job.id, tries, _describe(exc))
    await asyncio.to_thread(store.mark_failed, job.id, f"could not post the result{tries}: {_describe(exc)}")
    text = (
        f"⚠️ **{plan.title}** was made but could not be posted: {_friendly_http(exc)} "
        "Your track is saved — use `/history` to post it again."
    )
    if isinstance(target, ChannelSurface) and target.mention is None:  # a channel line: say whose
        text = f"<@{job.user_id}> {text}"
    await _safe_fail(target, text)


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
        _describe(exc),
    )
    await asyncio.to_thread(
        bot.store.mark_failed, job.id, f"missing permission {permission} in channel {job.channel_id}"
    )
    text = (
        f"⚠️ **{plan.title}** is ready, but I can't post it in <#{job.channel_id}>: I'm missing the "
        f"**{permission}** permission there. Ask a server admin to grant it to me in that channel. "
        "Your track is saved — post it with `/history` once that is fixed."
    )
    how = await _tell_privately(bot, surface, job, text)
    if how == "":
        log.warning("job %s: could not tell user %s about the missing permission either", job.id, job.user_id)
    if isinstance(target, ChannelSurface) and target.message is not None:  # the stale "generating…" line
        try:
            await target.message.edit(
                content=f"⚠️ **{plan.title}** could not be posted here (missing {permission})."
            )
        except discord.HTTPException:
            pass


async def _tell_privately(bot, surface: Surface, job: JobRecord, text: str) -> str:
    """Ephemeral through the interaction while it lives, else a DM; returns how, or "" if neither."""
    if isinstance(surface, InteractionSurface):
        fresh = await asyncio.to_thread(bot.store.get_job, job.id) or job
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
                log.info("job %s: ephemeral message refused (%s)", job.id, _describe(exc))
    try:
        dm = await bot.create_dm(discord.Object(int(job.user_id)))
        await dm.send(text)
        return "dm"
    except discord.HTTPException as exc:  # 50007: the user does not accept DMs from the bot
        log.info("job %s: DM to the user refused (%s)", job.id, _describe(exc))
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


async def _safe_fail(surface: Surface, message: str) -> discord.Message | None:
    try:
        return await surface.fail(message)
    except (discord.HTTPException, aiohttp.ClientError) as exc:
        log.warning("could not report a failure to the user (%s)", _describe(exc))
    return None


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


async def resume_job(bot, job: JobRecord) -> None:
    """Finish a job that was queued or running when the bot stopped (generated again, posted once)."""
    if job.channel_id is None:
        await asyncio.to_thread(bot.store.mark_failed, job.id, "no channel to deliver to")
        return
    plan = _plan_of(job, " (resumed after a restart)")
    if job.request.get("extend_seconds") and job.parent_track_id:
        plan.continue_from = await asyncio.to_thread(bot.store.load_track, job.parent_track_id)
        plan.extend_seconds = float(job.request["extend_seconds"])
    try:
        await run_job(bot, recovery_surface(bot, job), job, plan)
    except discord.HTTPException as exc:
        log.warning("could not resume job %s: %s", job.id, _describe(exc))


async def report_given_up(bot, job: JobRecord) -> None:
    """Tell the user, once, that ``job`` was stopped after too many interrupted attempts (its error)."""
    store = bot.store
    if job.channel_id is None or not await asyncio.to_thread(store.claim_delivery, job.id):
        return
    title = str(job.request.get("title") or "Your track")
    text = f"⚠️ **{title}** failed: {job.error or 'it was interrupted too many times.'}"
    message = await _safe_fail(recovery_surface(bot, job), text)
    if message is None:  # nothing was shown: a later attempt may claim it again
        await asyncio.to_thread(store.release_delivery, job.id)
        return
    await asyncio.to_thread(store.mark_delivered, job.id, message.id)


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
    channel = _job_channel(bot, job)
    after = datetime.fromtimestamp(job.created_at - HISTORY_SLACK, tz=timezone.utc)
    try:
        async for message in channel.history(limit=HISTORY_LIMIT, after=after, oldest_first=True):
            if _our_post(bot, message, track_ids):
                return message
        return None
    except (discord.HTTPException, aiohttp.ClientError, asyncio.TimeoutError) as exc:
        if not job.interaction_valid(margin=5.0):
            raise
        log.info("job %s: channel history unreadable (%s); asking the interaction", job.id, _describe(exc))
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
        await asyncio.to_thread(store.release_delivery, job.id)
        if job.state == "failed":
            await report_given_up(bot, job)
        else:
            await asyncio.to_thread(store.update_job, job.id, state="queued")
            await resume_job(bot, await asyncio.to_thread(store.get_job, job.id) or job)
        return
    plan = _plan_of(job)
    try:
        found = await _find_post(bot, job, {r.id for r in records})
    except (discord.HTTPException, aiohttp.ClientError, asyncio.TimeoutError) as exc:
        log.warning(
            "job %s was being posted when the bot stopped, and Discord cannot be read to check (%s); "
            "telling the user to use /history instead of risking a second post",
            job.id,
            _describe(exc),
        )
        await _say_saved(bot, job, plan)
        return
    if found is not None:
        log.info("job %s had been posted before the restart (message %s)", job.id, found.id)
        await _delivered(bot, job, found)
        return
    log.info("job %s was not posted before the restart; posting its stored tracks", job.id)
    await asyncio.to_thread(store.release_delivery, job.id)
    try:
        await post_tracks(bot, recovery_surface(bot, job), job, plan, records)
    except discord.HTTPException as exc:  # a failure message that could not be shown either
        log.warning("could not post job %s after the restart: %s", job.id, _describe(exc))


async def _say_saved(bot, job: JobRecord, plan: JobPlan) -> None:
    """The visible note for a post that may or may not have landed; the job counts as delivered."""
    store = bot.store
    text = (
        f"⚠️ I restarted while posting **{plan.title}** and could not check whether it arrived. "
        "It is saved: use `/history` to get it."
    )
    surface = ChannelSurface(_job_channel(bot, job), mention=job.user_id)
    message = await _safe_fail(surface, text)
    if message is None and not await _tell_privately(bot, surface, job, f"<@{job.user_id}> {text}"):
        # keep the claim (never post twice); the job is stopped with the reason, its track kept
        await asyncio.to_thread(store.mark_failed, job.id, "restarted mid-post; could not check or tell")
        return
    await asyncio.to_thread(store.mark_delivered, job.id, message.id if message else None)
    await asyncio.to_thread(store.mark_done, job.id)


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


async def capacity_refusal(
    bot, user_id: int | str, guild_id: int | None, *, charge: bool = True
) -> str | None:
    """Say no before deferring (so the answer can be ephemeral): user over the limit, queue full, or
    making tracks faster than the rate limit (the answer then says when to retry).

    Every path that makes music comes here, so this is where the rate limit is counted: a request
    that passes takes a token from the member's and the server's buckets. ``charge=False`` only
    looks (an early check before slow work that comes back here when the job really starts).
    """
    from bot.cogs.library import guild_limits
    from bot.ratelimit import guild_rates, limiter_for

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
    # last, so a request refused above does not use up a token
    user_rate, guild_rate = await asyncio.to_thread(guild_rates, bot.store, guild_id)
    limited = limiter_for(bot).hit(
        user_id, guild_id, user_rate=user_rate, guild_rate=guild_rate, charge=charge
    )
    return limited.message() if limited else None


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
    return await run_job(bot, InteractionSurface(interaction, job), job, plan)


async def reply_ephemeral(interaction: discord.Interaction, message: str) -> None:
    """An ephemeral answer whether or not the interaction was already acknowledged."""
    if interaction.response.is_done():
        await interaction.followup.send(message, ephemeral=True)
    else:
        await interaction.response.send_message(message, ephemeral=True)
