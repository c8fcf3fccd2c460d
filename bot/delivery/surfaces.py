"""Where a job talks to its user: the interaction's own response, or a channel message without one.

An interaction's token lives 15 minutes: past 14 (by the job's age), or once its webhook answers
401/404, progress edits stop and the result goes to the channel as a new message mentioning the user.
After a restart the stored interaction id and token rebuild enough of it (``StoredInteraction``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import discord

from bot.delivery.ledger import INTERACTION_TTL
from bot.delivery.ledger import DeliveryJob as JobRecord
from bot.replies import mention_only

log = logging.getLogger("textunes.bot")

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
# Discord's interaction tokens die after 15 minutes: a job older than 14 goes to the channel instead
# of racing the deadline with a multi-megabyte upload.
TOKEN_MARGIN = 60.0


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
        owner: int | str | None = None,
    ) -> None:
        self.channel = channel
        self.reference = reference
        self.mention = mention  # the user to ping in failure messages (a reply alone does not say who)
        # the one user these messages may ping (the bot's default lets nobody through)
        self.owner = owner or mention
        self.message: discord.Message | None = None
        self.muted = False  # posting here was refused (403): stop trying progress messages
        guild = getattr(channel, "guild", None)
        self.upload_limit = getattr(guild, "filesize_limit", None) or DEFAULT_UPLOAD_LIMIT

    @property
    def allowed(self) -> discord.AllowedMentions | None:
        return mention_only(self.owner) if self.owner else None

    async def update(self, content: str) -> None:
        if self.muted:
            return
        try:
            if self.message is None:
                self.message = await self.channel.send(
                    content, reference=self.reference, mention_author=False, allowed_mentions=self.allowed
                )
            else:
                self.message = await self.message.edit(content=content, allowed_mentions=self.allowed)
        except discord.Forbidden:
            self.muted = True  # the final post will say which permission is missing
            raise

    async def fail(self, message: str) -> discord.Message | None:
        self.muted = False  # a refused progress message need not mean the failure text is refused
        await self.update(f"<@{self.mention}> {message}" if self.mention else message)
        return self.message

    async def deliver(self, *, content, embeds, files, view) -> discord.Message:
        if self.message is not None:
            return await self.message.edit(
                content=content, embeds=embeds, attachments=files, view=view, allowed_mentions=self.allowed
            )
        return await self.channel.send(
            content,
            embeds=embeds,
            files=files,
            view=view,
            reference=self.reference,
            mention_author=False,
            allowed_mentions=self.allowed,
        )


def token_gone(exc: BaseException) -> bool:
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

    @property
    def allowed(self) -> discord.AllowedMentions:
        return mention_only(self.interaction.user.id)  # the result line mentions its owner, nobody else

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
            message = await self.interaction.edit_original_response(
                content=content, allowed_mentions=self.allowed
            )
        except discord.HTTPException as exc:
            if not token_gone(exc):
                raise
            self.expire(f"HTTP {exc.status}")
            return
        self.reply_id = message.id

    async def fail(self, message: str) -> discord.Message | None:
        if self.usable():
            try:
                return await self.interaction.edit_original_response(
                    content=message, allowed_mentions=self.allowed
                )
            except discord.HTTPException as exc:
                if not token_gone(exc):
                    raise
                self.expire(f"HTTP {exc.status}")
        return await self.channel_surface().fail(message)

    async def deliver(self, *, content, embeds, files, view) -> discord.Message:
        return await self.interaction.edit_original_response(
            content=content, embeds=embeds, attachments=files, view=view, allowed_mentions=self.allowed
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
        self.channel = job_channel(bot, job)
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


def job_channel(bot, job: JobRecord) -> discord.abc.Messageable:
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
    channel = job_channel(bot, job)
    reference = None
    if job.message_id:
        reference = discord.MessageReference(
            message_id=int(job.message_id), channel_id=int(job.channel_id or 0), fail_if_not_exists=False
        )
    return ChannelSurface(channel, reference, mention=job.user_id)
