"""🔁 on a track message makes another take — raw events, so it works on messages of any age."""

from __future__ import annotations

import asyncio
import logging

import discord
from discord.ext import commands

from bot.delivery import REGENERATE_EMOJI, ChannelSurface, JobPlan, capacity_refusal, record_job, run_job

log = logging.getLogger("textunes.bot")


class Regenerate(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        bot = self.bot
        if str(payload.emoji) != REGENERATE_EMOJI or bot.user is None or payload.user_id == bot.user.id:
            return
        job = await asyncio.to_thread(bot.store.job_by_message, payload.message_id)
        if job is None:
            return  # not one of our track messages
        channel = bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        original = channel.get_partial_message(payload.message_id)
        if str(job.user_id) != str(payload.user_id):
            # only the owner may regenerate; others' 🔁 is ignored (and removed, to say so quietly)
            try:
                await original.remove_reaction(REGENERATE_EMOJI, discord.Object(payload.user_id))
            except discord.HTTPException:
                pass
            return
        surface = ChannelSurface(channel, original)
        refusal = await capacity_refusal(bot, payload.user_id, payload.guild_id)
        if refusal:
            await surface.fail(f"⚠️ <@{payload.user_id}> {refusal}")
            return
        plan = JobPlan(
            spec=job.spec, samples=job.samples, analysis=job.request.get("analysis"), title="Another take"
        )
        new_job = await asyncio.to_thread(
            record_job,
            bot,
            plan,
            user_id=payload.user_id,
            guild_id=payload.guild_id,
            channel_id=payload.channel_id,
            kind="regenerate",
        )
        try:
            await run_job(bot, surface, new_job, plan)
        except discord.HTTPException as exc:
            log.warning("regenerate for message %s failed: %s", payload.message_id, exc)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Regenerate(bot))
