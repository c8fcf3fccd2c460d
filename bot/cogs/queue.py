"""``/queue``, ``/cancel`` and ``/categories``."""

from __future__ import annotations

import asyncio

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import require_owner
from bot.replies import FrontCog, reply_private, shown
from engine.catalogue import default_catalogue

KINDS = ("genres", "moods", "instruments", "tempos", "durations")


class Queue(FrontCog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(name="queue", description="Your place in the queue and how long it is")
    async def queue(self, interaction: discord.Interaction) -> None:
        engine = self.bot.engine
        mine = engine.jobs_of(str(interaction.user.id))
        lines = [f"Jobs waiting: **{engine.queue_length()}** · backend: {engine.backend_name}"]
        for job_id in mine:
            position = engine.position(job_id)
            where = "generating now" if position == 0 else f"position {position}"
            lines.append(f"• `{job_id}` — {where}")
        if not mine:
            lines.append("You have nothing queued. Start with `/bgm`.")
        await interaction.response.send_message("\n".join(lines), ephemeral=True)

    @app_commands.command(name="cancel", description="Cancel your queued or running job")
    @app_commands.describe(job="which job (default: your latest)")
    async def cancel(self, interaction: discord.Interaction, job: str | None = None) -> None:
        engine, user = self.bot.engine, str(interaction.user.id)
        mine = engine.jobs_of(user)
        if job is None:
            if not mine:
                await reply_private(interaction, "You have no job to cancel.")
                return
            job = mine[-1]
        record = await asyncio.to_thread(self.bot.store.get_job, job)
        if record is not None:
            require_owner(
                record.user_id, user, "That job belongs to someone else; you can only cancel your own."
            )
        if await self.bot.service.cancel(job, user_id=user):  # analysing requests too
            await reply_private(interaction, f"🛑 Cancelled `{shown(job, 40)}`.")
        else:
            await reply_private(interaction, f"`{shown(job, 40)}` is not queued or running any more.")

    @cancel.autocomplete("job")
    async def _job(self, interaction: discord.Interaction, current: str):
        mine = self.bot.engine.jobs_of(str(interaction.user.id))
        return [app_commands.Choice(name=j, value=j) for j in mine if current in j][:25]

    @app_commands.command(
        name="categories", description="Browse genres, moods, instruments, tempos and durations"
    )
    @app_commands.describe(
        kind="what to list", search="filter (Korean or English)", popular="only the popular ones"
    )
    @app_commands.choices(kind=[app_commands.Choice(name=k, value=k) for k in KINDS])
    async def categories(
        self, interaction: discord.Interaction, kind: str, search: str | None = None, popular: bool = False
    ) -> None:
        entries = default_catalogue().list(kind, popular=popular, search=search)
        if not entries:
            await reply_private(interaction, f"No {kind} match '{shown(search, 60)}'.")
            return
        listed = ", ".join(f"{e.en} ({e.ko})" if e.ko and e.ko != e.en else e.en for e in entries)
        if len(listed) > 1900:
            listed = listed[:1900].rsplit(",", 1)[0] + ", …"
        await interaction.response.send_message(f"**{kind}** ({len(entries)}): {listed}", ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Queue(bot))
