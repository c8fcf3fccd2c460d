"""What the buttons under a track do: Regenerate, Variation, Extend, Edit prompt (⭐ is the library's)."""

from __future__ import annotations

import asyncio

import discord
from discord.ext import commands

from bot.checks import require_owner
from bot.components import EditPromptButton, ExtendButton, RegenerateButton, VariationButton
from bot.delivery.plan import JobPlan
from bot.delivery.progress import start_interaction_job
from bot.replies import FrontCog, answer_error
from engine.errors import UserInputError
from engine.store import JobRecord

EXTEND_SECONDS = 15.0
MAX_TRACK_SECONDS = 180.0
GONE = "I can't find that track any more."


class TrackButtons(FrontCog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(RegenerateButton, VariationButton, ExtendButton, EditPromptButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(RegenerateButton, VariationButton, ExtendButton, EditPromptButton)

    async def _owned_job(self, interaction: discord.Interaction, job_id: str) -> JobRecord:
        job = await asyncio.to_thread(self.bot.store.get_job, job_id)
        if job is None:
            raise UserInputError(GONE)
        require_owner(job.user_id, interaction.user.id)
        return job

    async def _owned_job_of_track(self, interaction: discord.Interaction, track_id: str) -> JobRecord:
        record = await asyncio.to_thread(self.bot.store.get_track, track_id)
        if record is None:
            raise UserInputError(GONE)
        if not record.available:
            raise UserInputError("The audio of that track has expired; make it again with /bgm.")
        return await self._owned_job(interaction, record.job_id)

    async def regenerate(self, interaction: discord.Interaction, job_id: str) -> None:
        job = await self._owned_job(interaction, job_id)
        plan = JobPlan(
            spec=job.spec, samples=job.samples, analysis=job.request.get("analysis"), title="Another take"
        )
        await start_interaction_job(self.bot, interaction, plan, kind="regenerate")

    async def variation(self, interaction: discord.Interaction, track_id: str) -> None:
        """Keep the opening third of the track and let the generator take the rest somewhere new."""
        job = await self._owned_job_of_track(interaction, track_id)
        track = await asyncio.to_thread(self.bot.store.get_track, track_id)
        keep = track.duration / 3
        plan = JobPlan(
            spec=job.spec,
            samples=1,
            continue_from_track_id=track_id,
            keep_seconds=keep,
            extend_seconds=max(track.duration - keep, 1.0),
            title="A variation",
        )
        await start_interaction_job(self.bot, interaction, plan, kind="variation", parent_track_id=track_id)

    async def extend(self, interaction: discord.Interaction, track_id: str) -> None:
        job = await self._owned_job_of_track(interaction, track_id)
        track = await asyncio.to_thread(self.bot.store.get_track, track_id)
        if track.duration + EXTEND_SECONDS > MAX_TRACK_SECONDS:
            raise UserInputError(f"Tracks can be at most {MAX_TRACK_SECONDS / 60:.0f} minutes long.")
        plan = JobPlan(
            spec=job.spec.with_(duration=track.duration + EXTEND_SECONDS),
            samples=1,
            continue_from_track_id=track_id,
            extend_seconds=EXTEND_SECONDS,
            title="Your track, extended",
        )
        await start_interaction_job(self.bot, interaction, plan, kind="extend", parent_track_id=track_id)

    async def edit_prompt(self, interaction: discord.Interaction, job_id: str) -> None:
        job = await self._owned_job(interaction, job_id)
        await interaction.response.send_modal(EditPromptModal(self.bot, job))


class EditPromptModal(discord.ui.Modal, title="Edit the prompt"):
    def __init__(self, bot: commands.Bot, job: JobRecord) -> None:
        super().__init__()
        self.bot = bot
        self.job = job
        self.prompt = discord.ui.TextInput(
            label="Prompt", style=discord.TextStyle.paragraph, default=job.spec.prompt[:400], max_length=400
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        text = str(self.prompt.value).strip()
        if not text:
            raise UserInputError("The prompt can't be empty.")
        plan = JobPlan(
            spec=self.job.spec.with_(prompt=text), samples=self.job.samples, title="Your edited prompt"
        )
        await start_interaction_job(self.bot, interaction, plan, kind="edit")

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        await answer_error(interaction, error)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(TrackButtons(bot))
