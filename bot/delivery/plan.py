"""What a job runs (``JobPlan``) and its record in the store."""

from __future__ import annotations

from dataclasses import dataclass

import discord

from bot.replies import shown
from engine.spec import MusicSpec, Track
from engine.store import JobRecord, spec_to_request


@dataclass
class JobPlan:
    """What to run for a job: the spec plus how (samples, continuation)."""

    spec: MusicSpec | None  # None in text mode until the analysis has chosen one
    samples: int = 1
    continue_from: Track | None = None  # a variation: the opening to continue (engine-direct path)
    continue_from_track_id: str | None = None  # extend: the stored track to continue
    extend_seconds: float = 0.0
    analysis: dict | None = None  # text mode: shown in the embed and stored with the tracks
    title: str = "Your track"
    document: bool = False  # text mode: a read/analysis failure is told privately

    @property
    def shown_title(self) -> str:
        """The title as message text: it may come from a document or a preset, so it cannot ping."""
        return shown(self.title, 200)


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
