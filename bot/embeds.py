"""Embeds for finished tracks: prompt, backend, seed, duration, and (text mode) why this music."""

from __future__ import annotations

import discord

from bot.replies import shown
from engine.spec import Track
from engine.store import TrackRecord

COLOUR = discord.Colour(0x5B8DEF)


def mmss(seconds: float) -> str:
    """A duration as m:ss for messages (rounded to the second)."""
    total = int(round(seconds))
    return f"{total // 60}:{total % 60:02d}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def track_embeds(plan, records: list[TrackRecord], tracks: list[Track] | None = None) -> list[discord.Embed]:
    spec = plan.spec
    embed = discord.Embed(
        title=f"🎵 {shown(plan.title, 200)}", description=shown(spec.prompt, 1000), colour=COLOUR
    )
    if spec.genres:
        embed.add_field(name="Genre", value=", ".join(spec.genres))
    if spec.moods:
        embed.add_field(name="Mood", value=", ".join(spec.moods))
    embed.add_field(name="Tempo", value=f"{spec.tempo} · {spec.bpm} BPM · {spec.mode}")
    if spec.instruments:
        embed.add_field(name="Instruments", value=shown(", ".join(spec.instruments), 1000))
    first = tracks[0] if tracks else records[0]  # stored tracks (re-posted after a restart) say it too
    embed.add_field(name="Backend", value=f"{first.backend} ({_clip(first.model, 60)})")
    embed.add_field(name="Seed", value=", ".join(str(r.seed) for r in records))
    embed.add_field(name="Duration", value=_clip(", ".join(mmss(r.duration) for r in records), 100))
    analysis = plan.analysis
    if analysis:
        summary = " ".join(analysis.get("summary") or [])
        if summary:
            embed.add_field(name="Summary", value=shown(summary, 1000), inline=False)
        topic, emotion = analysis.get("topic") or {}, analysis.get("emotion") or {}
        if topic:
            embed.add_field(name="Topic", value=f"{topic.get('name')} ({topic.get('score', 0):.2f})")
        if emotion:
            embed.add_field(name="Emotion", value=str(emotion.get("label")))
        embed.add_field(
            name="Valence / arousal",
            value=f"{analysis.get('valence', 0):+.2f} / {analysis.get('arousal', 0):+.2f}",
        )
        reasons = analysis.get("reasons") or []
        if reasons:
            embed.add_field(
                name="Why this music", value=shown("\n".join(f"• {r}" for r in reasons), 1000), inline=False
            )
    embed.set_footer(
        text="React 🔁 or press Regenerate for another take · track " + ", ".join(r.id for r in records)
    )
    return [embed]
