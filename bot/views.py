"""Buttons under a track: Regenerate, Variation, Extend, Edit prompt (and ⭐ from the library cog).

They are ``DynamicItem``s: the job or track id lives in the custom_id and the store resolves it, so
the buttons keep working on old messages after the bot restarts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import discord

from bot.delivery import JobPlan, owner_refusal, reply_ephemeral, start_interaction_job
from engine.errors import UserInputError
from engine.spec import Track
from engine.store import JobRecord, TrackRecord

PREFIX = "textunes"
EXTEND_SECONDS = 15.0
MAX_TRACK_SECONDS = 180.0


async def _owned_job(interaction: discord.Interaction, job_id: str) -> JobRecord | None:
    job = await asyncio.to_thread(interaction.client.store.get_job, job_id)  # type: ignore[attr-defined]
    if job is None:
        await reply_ephemeral(interaction, "I can't find that track any more.")
        return None
    refusal = owner_refusal(job, interaction.user.id)
    if refusal:
        await reply_ephemeral(interaction, refusal)
        return None
    return job


async def _owned_track(interaction: discord.Interaction, track_id: str) -> tuple[JobRecord, Track] | None:
    store = interaction.client.store  # type: ignore[attr-defined]
    record = await asyncio.to_thread(store.get_track, track_id)
    if record is None:
        await reply_ephemeral(interaction, "I can't find that track any more.")
        return None
    job = await _owned_job(interaction, record.job_id)
    if job is None:
        return None
    try:
        track = await asyncio.to_thread(store.load_track, track_id)
    except UserInputError as exc:  # the file was cleaned up by the retention policy
        await reply_ephemeral(interaction, str(exc))
        return None
    return job, track


class RegenerateButton(
    discord.ui.DynamicItem[discord.ui.Button], template=PREFIX + r":regen:(?P<job_id>[0-9a-f]{6,32})"
):
    """Another take of the same request with a new seed (same as reacting 🔁)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Regenerate",
                emoji="🔁",
                style=discord.ButtonStyle.primary,
                custom_id=f"{PREFIX}:regen:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: Any) -> RegenerateButton:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        job = await _owned_job(interaction, self.job_id)
        if job is None:
            return
        plan = JobPlan(
            spec=job.spec, samples=job.samples, analysis=job.request.get("analysis"), title="Another take"
        )
        await start_interaction_job(interaction.client, interaction, plan, kind="regenerate")


class VariationButton(
    discord.ui.DynamicItem[discord.ui.Button], template=PREFIX + r":var:(?P<track_id>[0-9a-f]{6,32})"
):
    """Keep the opening third of this track and let the generator take the rest somewhere new."""

    def __init__(self, track_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Variation",
                emoji="🎲",
                style=discord.ButtonStyle.secondary,
                custom_id=f"{PREFIX}:var:{track_id}",
            )
        )
        self.track_id = track_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: Any) -> VariationButton:
        return cls(match["track_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        found = await _owned_track(interaction, self.track_id)
        if found is None:
            return
        job, track = found
        keep = max(int(track.sample_rate * track.duration / 3), 1)
        opening = Track(
            track.audio[:, :keep],
            track.sample_rate,
            track.spec,
            track.seed,
            track.backend,
            track.model,
            track.midi,
            dict(track.meta),
        )
        plan = JobPlan(
            spec=job.spec,
            samples=1,
            continue_from=opening,
            extend_seconds=max(track.duration - opening.duration, 1.0),
            title="A variation",
        )
        await start_interaction_job(
            interaction.client, interaction, plan, kind="variation", parent_track_id=self.track_id
        )


class ExtendButton(
    discord.ui.DynamicItem[discord.ui.Button], template=PREFIX + r":ext:(?P<track_id>[0-9a-f]{6,32})"
):
    """Continue this track for another 15 seconds."""

    def __init__(self, track_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Extend +15 s",
                emoji="⏩",
                style=discord.ButtonStyle.secondary,
                custom_id=f"{PREFIX}:ext:{track_id}",
            )
        )
        self.track_id = track_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: Any) -> ExtendButton:
        return cls(match["track_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        found = await _owned_track(interaction, self.track_id)
        if found is None:
            return
        job, track = found
        if track.duration + EXTEND_SECONDS > MAX_TRACK_SECONDS:
            await reply_ephemeral(
                interaction, f"Tracks can be at most {MAX_TRACK_SECONDS / 60:.0f} minutes long."
            )
            return
        spec = job.spec.with_(duration=track.duration + EXTEND_SECONDS)
        plan = JobPlan(
            spec=spec,
            samples=1,
            continue_from=track,
            extend_seconds=EXTEND_SECONDS,
            title="Your track, extended",
        )
        await start_interaction_job(
            interaction.client, interaction, plan, kind="extend", parent_track_id=self.track_id
        )


class EditPromptModal(discord.ui.Modal, title="Edit the prompt"):
    def __init__(self, job: JobRecord) -> None:
        super().__init__()
        self.job = job
        self.prompt = discord.ui.TextInput(
            label="Prompt", style=discord.TextStyle.paragraph, default=job.spec.prompt[:400], max_length=400
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        text = str(self.prompt.value).strip()
        if not text:
            await reply_ephemeral(interaction, "The prompt can't be empty.")
            return
        plan = JobPlan(
            spec=self.job.spec.with_(prompt=text), samples=self.job.samples, title="Your edited prompt"
        )
        await start_interaction_job(interaction.client, interaction, plan, kind="edit")


class EditPromptButton(
    discord.ui.DynamicItem[discord.ui.Button], template=PREFIX + r":edit:(?P<job_id>[0-9a-f]{6,32})"
):
    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Edit prompt",
                emoji="✏️",
                style=discord.ButtonStyle.secondary,
                custom_id=f"{PREFIX}:edit:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: Any) -> EditPromptButton:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        job = await _owned_job(interaction, self.job_id)
        if job is not None:
            await interaction.response.send_modal(EditPromptModal(job))


DYNAMIC_ITEMS = (RegenerateButton, VariationButton, ExtendButton, EditPromptButton)


def track_view(job: JobRecord, records: list[TrackRecord]) -> discord.ui.View:
    from bot.cogs.library import FavoriteButton

    view = discord.ui.View(timeout=None)
    first = records[0].id
    for item in (
        RegenerateButton(job.id),
        VariationButton(first),
        ExtendButton(first),
        EditPromptButton(job.id),
        FavoriteButton(first),
    ):
        view.add_item(item)
    return view
