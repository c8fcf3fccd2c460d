"""Slash-command option types with their autocomplete: comma lists, tempo and duration.

A transformer's ``transform`` raises ``UserInputError`` for a bad value; discord.py wraps it in
``TransformerError`` and ``bot.replies.answer_error`` turns it into a private reply.
"""

from __future__ import annotations

import asyncio

import discord
from discord import app_commands

from engine.catalogue import default_catalogue
from engine.prompt import parse_duration

MAX_CHOICES = 25  # Discord's limit for autocomplete answers


def split_list(text: str | None) -> list[str]:
    """A comma-separated option ("Lofi, Jazz") as its non-empty parts."""
    return [part.strip() for part in (text or "").replace("\n", ",").split(",") if part.strip()]


def _choice_name(en: str, ko: str) -> str:
    return f"{en} · {ko}" if ko and ko != en else en


def complete_list(store, kind: str, current: str, guild_id: int | None) -> list[app_commands.Choice[str]]:
    """Autocomplete for a comma-separated list: complete the last item, keep the earlier ones."""
    head, _, last = current.rpartition(",")
    prefix = f"{head.strip()}, " if head.strip() else ""
    names: dict[str, str] = {}
    if store is not None and guild_id is not None:  # the server's own categories first
        for item in store.complete_guild_categories(guild_id, kind, last.strip()):
            names.setdefault(item.en, _choice_name(item.en, item.ko or ""))
    for entry in default_catalogue().complete(kind, last.strip(), limit=MAX_CHOICES):
        names.setdefault(entry.en, _choice_name(entry.en, entry.ko))
    return [
        app_commands.Choice(name=(prefix + label)[:100], value=(prefix + en)[:100])
        for en, label in names.items()
    ][:MAX_CHOICES]


def tempo_choices(current: str) -> list[app_commands.Choice[str]]:
    cat = default_catalogue()
    choices = []
    digits = "".join(ch for ch in current if ch.isdigit())
    if digits:
        choices.append(app_commands.Choice(name=f"{digits} BPM", value=digits))
    for entry in cat.list("tempos"):
        info = cat.tempo(entry.en)
        if not current or current.lower() in (entry.en.lower() + entry.ko) or digits:
            name = f"{entry.en} · {entry.ko} ({info.lo}-{info.hi} BPM)"
            choices.append(app_commands.Choice(name=name, value=entry.en))
    return choices[:MAX_CHOICES]


def duration_choices(current: str) -> list[app_commands.Choice[str]]:
    cat = default_catalogue()
    choices = [app_commands.Choice(name=e.en, value=e.en) for e in cat.list("durations") if current in e.en]
    if current and current not in [c.value for c in choices]:
        choices.insert(0, app_commands.Choice(name=current[:100], value=current[:100]))
    return choices[:MAX_CHOICES]


def canonical_tempo(value: str) -> str:
    """'fast' / '빠르게' -> 'Fast'; '92' / '92 bpm' -> '92 bpm' (UserInputError otherwise)."""
    info = default_catalogue().tempo(value)
    return f"{info.bpm} bpm" if getattr(info, "explicit", False) else info.label


class CommaList(app_commands.Transformer):
    """Free words, comma-separated ("rainy night, cafe") → a list."""

    async def transform(self, interaction: discord.Interaction, value: str) -> list[str]:
        return split_list(value)


class CatalogueList(CommaList):
    """Catalogue names, comma-separated, completed item by item (the server's own names first)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def autocomplete(
        self, interaction: discord.Interaction, value: str
    ) -> list[app_commands.Choice[str]]:
        store = getattr(interaction.client, "store", None)
        return await asyncio.to_thread(complete_list, store, self.kind, value, interaction.guild_id)


class Tempo(app_commands.Transformer):
    """Slow / Medium / Fast (Korean or English) or a BPM → its canonical form."""

    async def transform(self, interaction: discord.Interaction, value: str) -> str:
        return canonical_tempo(value)

    async def autocomplete(
        self, interaction: discord.Interaction, value: str
    ) -> list[app_commands.Choice[str]]:
        return tempo_choices(value)


class Duration(app_commands.Transformer):
    """Seconds or m:ss (5 s to 3:00) → seconds."""

    async def transform(self, interaction: discord.Interaction, value: str) -> float:
        return parse_duration(value)

    async def autocomplete(
        self, interaction: discord.Interaction, value: str
    ) -> list[app_commands.Choice[str]]:
        return duration_choices(value)


Genres = app_commands.Transform[list[str], CatalogueList("genres")]
Moods = app_commands.Transform[list[str], CatalogueList("moods")]
Instruments = app_commands.Transform[list[str], CatalogueList("instruments")]
Keywords = app_commands.Transform[list[str], CommaList]
TempoOption = app_commands.Transform[str, Tempo]
DurationOption = app_commands.Transform[float, Duration]
