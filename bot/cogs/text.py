"""``/bgm-from-text``: a document (or pasted text) → analysis → music that fits it."""

from __future__ import annotations

import asyncio

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import channel_allowed
from bot.delivery.plan import JobPlan, analysis_summary
from bot.delivery.progress import capacity_refusal, start_interaction_job
from bot.limits import check_duration, guild_limits
from bot.replies import FrontCog
from bot.transformers import DurationOption, Keywords, TempoOption
from engine.errors import UserInputError
from engine.text.ingest import check_upload, document_from_text, read_document


class TextMode(FrontCog):
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
    @channel_allowed()
    async def bgm_from_text(
        self,
        interaction: discord.Interaction,
        file: discord.Attachment | None = None,
        text: str | None = None,
        duration: DurationOption | None = None,
        tempo: TempoOption | None = None,
        keywords: Keywords | None = None,
    ) -> None:
        bot, store = self.bot, self.bot.store
        if file is None and not (text and text.strip()):
            raise UserInputError("Attach a document (`file`) or paste some `text` to score.")
        max_bytes = bot.settings.max_file_bytes
        if file is not None:  # name and size are known before downloading anything
            check_upload(file.filename, file.size, max_bytes=max_bytes)
        limits = await asyncio.to_thread(guild_limits, store, interaction.guild_id, bot.settings)
        if duration is not None:
            check_duration(limits, duration)
        # analysing costs as much as making music: the request takes its rate-limit token now, so a
        # document that fails to read or analyse is not free (and the answer is still private)
        refusal = await capacity_refusal(bot, interaction.user.id, interaction.guild_id)
        if refusal:
            raise UserInputError(refusal.text)
        await interaction.response.defer(thinking=True)
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
            keywords=tuple(keywords or ()),
        )
        check_duration(limits, analysis.spec.duration)
        title = f"Music for “{doc.title}”" if doc.title else "Music for your text"
        plan = JobPlan(spec=analysis.spec, analysis=analysis_summary(analysis), title=title[:120])
        await start_interaction_job(bot, interaction, plan, kind="text", charged=True)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(TextMode(bot))
