"""What a job runs (``JobPlan``) and its record in the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord

from bot.replies import shown
from engine.spec import MusicSpec, Track
from engine.store import JobRecord, spec_to_request


@dataclass
class JobPlan:
    """What to run for a job: the spec plus how (samples, continuation)."""

    spec: MusicSpec
    samples: int = 1
    continue_from: Track | None = None
    extend_seconds: float = 0.0
    analysis: dict | None = None  # text mode: shown in the embed and stored with the tracks
    title: str = "Your track"

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


def analysis_summary(analysis: Any) -> dict:
    """The parts of an Analysis shown in Discord and stored with the job."""
    data = analysis.to_dict()
    keep = ("language", "summary", "topic", "emotion", "valence", "arousal", "reasons", "truncated")
    return {k: data.get(k) for k in keep}
