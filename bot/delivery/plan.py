"""What the bot asks the service for and shows while it runs (``JobPlan``)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.replies import shown
from engine.spec import MusicSpec


@dataclass
class JobPlan:
    """What to run for a job: the spec plus how (samples, continuation)."""

    spec: MusicSpec | None  # None in text mode until the analysis has chosen one
    samples: int = 1
    continue_from_track_id: str | None = None  # extend / variation: the stored track to continue
    keep_seconds: float | None = None  # variation: continue only this opening of it
    extend_seconds: float = 0.0
    analysis: dict | None = None  # text mode: shown in the embed and stored with the tracks
    title: str = "Your track"
    document: bool = False  # text mode: a read/analysis failure is told privately

    @property
    def shown_title(self) -> str:
        """The title as message text: it may come from a document or a preset, so it cannot ping."""
        return shown(self.title, 200)
