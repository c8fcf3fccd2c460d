"""``/bgm-from-text``: a document (or pasted text) → analysis → music that fits it."""

from __future__ import annotations

import asyncio

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.bgm import duration_choices, duration_refusal, split_list, tempo_choices
from bot.cogs.library import channel_block_reason, guild_limits
from bot.delivery import JobPlan, analysis_summary, capacity_refusal, reply_ephemeral, start_interaction_job
from engine.errors import UserInputError
from engine.text.ingest import check_upload, document_from_text, read_document


async def fail_privately(interaction: discord.Interaction, message: str) -> None:
    """After a public defer: drop the "thinking…" message and tell only the user what went wrong."""
    try:
        await interaction.delete_original_response()
    except discord.HTTPException:
        pass
    await interaction.followup.send(message, ephemeral=True)


class TextMode(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(
        name="bgm-from-text", description="Score a document: attach .txt .md .pdf .docx .html, or paste text"
    )
    @app_commands.describe(
        file="the document (.txt, .md, .pdf, .docx, .html)",
        text="or paste the text here instead of attaching a file",
        duration="0:15, 0:30, 1:00 — or any length up to the server's limit",
        tempo="override the tempo: Slow / Medium / Fast or a BPM",
        keywords="extra keywords, comma-separated",
    )
    async def bgm_from_text(
        self,
        interaction: discord.Interaction,
        file: discord.Attachment | None = None,
        text: str | None = None,
        duration: str | None = None,
        tempo: str | None = None,
        keywords: str | None = None,
    ) -> None:
        bot, store = self.bot, self.bot.store
        blocked = await asyncio.to_thread(channel_block_reason, store, interaction)
        if blocked:
            await reply_ephemeral(interaction, blocked)
            return
        if file is None and not (text and text.strip()):
            await reply_ephemeral(interaction, "Attach a document (`file`) or paste some `text` to score.")
            return
        max_bytes = bot.settings.max_file_bytes
        try:
            if file is not None:  # name and size are known before downloading anything
                check_upload(file.filename, file.size, max_bytes=max_bytes)
        except UserInputError as exc:
            await reply_ephemeral(interaction, f"⚠️ {exc}")
            return
        # say "queue full / too many jobs" now, ephemerally, before downloading or analysing anything
        # (only a look at the rate limit: start_interaction_job counts the request once it starts)
        refusal = await capacity_refusal(bot, interaction.user.id, interaction.guild_id, charge=False)
        if refusal:
            await reply_ephemeral(interaction, f"⚠️ {refusal}")
            return
        await interaction.response.defer(thinking=True)
        try:
            if file is not None:
                data = await file.read()
                doc = await asyncio.to_thread(read_document, data, file.filename, max_bytes=max_bytes)
            else:
                doc = await asyncio.to_thread(document_from_text, text or "")
            await interaction.edit_original_response(content="📖 Reading your text…")
            analyzer = await bot.analyzer()
            analysis = await asyncio.to_thread(
                analyzer.analyze,
                doc.text,
                title=doc.title,
                tempo=tempo,
                duration=duration or 15,
                keywords=tuple(split_list(keywords)),
            )
        except UserInputError as exc:
            await fail_privately(interaction, f"⚠️ {exc}")
            return
        limits = await asyncio.to_thread(guild_limits, store, interaction.guild_id, bot)
        too_long = duration_refusal(bot, limits, analysis.spec.duration)
        if too_long:
            await fail_privately(interaction, too_long)
            return
        title = f"Music for “{doc.title}”" if doc.title else "Music for your text"
        plan = JobPlan(spec=analysis.spec, analysis=analysis_summary(analysis), title=title[:120])
        await start_interaction_job(bot, interaction, plan, kind="text")

    @bgm_from_text.autocomplete("duration")
    async def _duration(self, interaction: discord.Interaction, current: str):
        return duration_choices(current)

    @bgm_from_text.autocomplete("tempo")
    async def _tempo(self, interaction: discord.Interaction, current: str):
        return tempo_choices(current)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(TextMode(bot))
