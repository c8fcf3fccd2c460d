"""🔁 on a track message makes another take — raw events, so it works on messages of any age.

A reaction is no interaction, so nothing can be answered privately in the channel: refusals (channel
not allowed, over a limit) go to the member by DM, once per cooldown, and never to the channel.
"""

from __future__ import annotations

import asyncio
import logging

import discord
from discord.ext import commands

from bot.checks import channel_block_reason, is_owner
from bot.delivery.plan import JobPlan
from bot.delivery.posting import REGENERATE_EMOJI
from bot.delivery.progress import capacity_refusal, follow, music_request, requester_of, submit_answered
from bot.delivery.surfaces import ChannelSurface
from bot.ratelimit import limiter_for
from bot.replies import FrontCog
from engine.errors import UserInputError

log = logging.getLogger("textunes.bot")


class Regenerate(FrontCog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    async def _tell_once(self, user_id: int, text: str, retry_after: float) -> None:
        """A private note by DM, at most once while the same answer holds (a 🔁 storm sends one)."""
        if not limiter_for(self.bot).first_refusal(user_id, retry_after):
            return
        try:
            dm = await self.bot.create_dm(discord.Object(user_id))
            await dm.send(f"⚠️ {text}")
        except discord.HTTPException as exc:  # DMs closed: the refusal stays silent, never public
            log.info("🔁 refusal not delivered to user %s (HTTP %s)", user_id, exc.status)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        bot = self.bot
        if str(payload.emoji) != REGENERATE_EMOJI or bot.user is None or payload.user_id == bot.user.id:
            return
        job = await asyncio.to_thread(bot.ledger.job_by_message, payload.message_id)
        if job is None:
            return  # not one of our track messages
        channel = bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        original = channel.get_partial_message(payload.message_id)
        if not is_owner(job.user_id, payload.user_id):
            # only the owner may regenerate; others' 🔁 is ignored (and removed, to say so quietly)
            try:
                await original.remove_reaction(REGENERATE_EMOJI, discord.Object(payload.user_id))
            except discord.HTTPException:
                pass
            return
        parent = getattr(bot.get_channel(payload.channel_id), "parent_id", None)
        blocked = await asyncio.to_thread(
            channel_block_reason, bot.store, payload.guild_id, payload.channel_id, parent
        )
        requester = requester_of(payload.user_id, payload.guild_id, payload.channel_id)
        refusal = None
        if not blocked:
            refusal = await capacity_refusal(bot, requester, samples=job.samples, duration=job.spec.duration)
        if blocked or refusal:
            text, wait = (blocked, 60.0) if blocked else (refusal.text, refusal.retry_after)
            await self._tell_once(payload.user_id, text, wait)
            return
        plan = JobPlan(
            spec=job.spec, samples=job.samples, analysis=job.request.get("analysis"), title="Another take"
        )
        surface = ChannelSurface(channel, original, owner=payload.user_id)
        try:
            handle = await submit_answered(bot, requester, music_request(plan, kind="regenerate"))
            await follow(bot, surface, handle, plan)
        except UserInputError as exc:  # admitted a moment ago, refused now (the queue filled up)
            await self._tell_once(payload.user_id, str(exc), 60.0)
        except discord.HTTPException as exc:
            log.warning("regenerate for message %s failed: %s", payload.message_id, exc)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Regenerate(bot))
