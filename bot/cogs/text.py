"""``/bgm-from-text``: a document (or pasted text) → the engine's analysis sandbox → music that fits it.

The bot never reads or analyses a document itself: it checks what Discord says about the upload
(name, size), downloads it and hands the bytes to ``MusicService`` as a ``DocumentRequest``; the
service reads and analyses it in a separate process with time and memory limits.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import channel_allowed
from bot.delivery.plan import JobPlan
from bot.delivery.progress import capacity_refusal, requester_of, start_interaction_job
from bot.replies import FrontCog
from bot.transformers import DurationOption, Keywords, TempoOption
from engine.errors import UserInputError
from engine.service import DocumentRequest


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
        bot = self.bot
        if file is None and not (text and text.strip()):
            raise UserInputError("Attach a document (`file`) or paste some `text` to score.")
        requester = requester_of(interaction.user.id, interaction.guild_id, interaction.channel_id)
        if file is not None:  # name and size are known before downloading anything
            await bot.service.check_upload(requester, file.filename, file.size)
        # analysing costs as much as making music: the request takes its rate-limit token now, so a
        # document that fails to read or analyse is not free (and the answer is still private)
        refusal = await capacity_refusal(bot, requester, duration=duration)
        if refusal:
            raise UserInputError(refusal.text)
        await interaction.response.defer(thinking=True)
        data = await file.read() if file is not None else None
        request = DocumentRequest(
            data=data,
            filename=file.filename if file is not None else None,
            text=None if file is not None else text,
            duration=duration,
            tempo=tempo,
            keywords=tuple(keywords or ()),
        )
        plan = JobPlan(spec=None, title="Music for your text", document=True)
        await start_interaction_job(bot, interaction, plan, kind="text", request=request, charged=True)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(TextMode(bot))
