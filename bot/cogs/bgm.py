"""``/bgm``: music from categories or a server preset (Korean or English names, autocompleted)."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import channel_allowed
from bot.delivery.plan import JobPlan
from bot.delivery.progress import start_interaction_job
from bot.limits import check_duration, guild_limits
from bot.replies import FrontCog
from bot.transformers import MAX_CHOICES, DurationOption, Genres, Instruments, Keywords, Moods, TempoOption
from engine.catalogue import default_catalogue
from engine.errors import UserInputError
from engine.prompt import build_spec


def split_guild_names(
    store, guild_id: int | None, kind: str, names: list[str]
) -> tuple[list[str], list[str]]:
    """Catalogue names stay; a server-added name unknown to the catalogue becomes a keyword."""
    cat = default_catalogue()
    known, keywords = [], []
    for name in names:
        if (
            cat.get(kind, name) is None
            and guild_id is not None
            and store.find_guild_category(guild_id, kind, name)
        ):
            keywords.append(name)
        else:
            known.append(name)
    return known, keywords


def request_options(
    store, guild_id: int | None, user_id: int, preset_name: str | None, given: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """``build_spec`` options: what the member typed, over the preset's, over their /settings
    defaults; returns them and the preset's name (None without one)."""
    options: dict[str, Any] = {}
    preset = None
    if preset_name:
        preset = store.get_guild_preset(guild_id, preset_name)
        if preset is None:
            raise UserInputError(
                f"This server has no preset called '{preset_name[:60]}'. Pick one as you type."
            )
        options.update(preset.as_options())
    options.update({k: v for k, v in given.items() if v})
    if not (
        options.get("genres") or options.get("moods") or options.get("keywords") or options.get("instruments")
    ):
        raise UserInputError("Choose a genre and a mood (or a server preset).")
    defaults = store.user_settings(user_id)
    options.setdefault("tempo", defaults.get("tempo"))
    options.setdefault("duration", defaults.get("duration") or 15)
    extra: list[str] = []
    for kind in ("genres", "moods"):
        known, unknown = split_guild_names(store, guild_id, kind, list(options.get(kind) or ()))
        options[kind], extra = tuple(known), extra + unknown
    options["keywords"] = tuple(options.get("keywords") or ()) + tuple(extra)
    options["instruments"] = tuple(options.get("instruments") or ())
    return options, preset.name if preset else None


class Bgm(FrontCog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(
        name="bgm", description="Make background music from a genre, mood, tempo and duration (or a preset)"
    )
    @app_commands.describe(
        genre="genre(s), comma-separated — Korean or English (e.g. Lofi, 재즈)",
        mood="mood(s), comma-separated (e.g. Calm, 몽환적인)",
        tempo="Slow / Medium / Fast, or a BPM such as 92",
        duration="0:15, 0:30, 1:00 — or any length up to the server's limit",
        instruments="instrument(s), comma-separated (e.g. Piano, Strings)",
        keywords="free keywords, comma-separated (e.g. rainy night, cafe)",
        samples="how many takes (1-4)",
        preset="one of this server's presets (options you type win over it)",
    )
    @channel_allowed()
    async def bgm(
        self,
        interaction: discord.Interaction,
        genre: Genres | None = None,
        mood: Moods | None = None,
        tempo: TempoOption | None = None,
        duration: DurationOption | None = None,
        instruments: Instruments | None = None,
        keywords: Keywords | None = None,
        samples: app_commands.Range[int, 1, 4] = 1,
        preset: str | None = None,
    ) -> None:
        bot, store = self.bot, self.bot.store
        given = {
            "genres": genre, "moods": mood, "tempo": tempo, "duration": duration,
            "instruments": instruments, "keywords": keywords,
        }  # fmt: skip
        options, preset_name = await asyncio.to_thread(
            request_options, store, interaction.guild_id, interaction.user.id, preset, given
        )
        spec = build_spec(**options)
        limits = await asyncio.to_thread(guild_limits, store, interaction.guild_id, bot.settings)
        check_duration(limits, spec.duration)
        if samples > int(limits["max_samples"]):
            raise UserInputError(f"At most {limits['max_samples']} takes per request here.")
        title = preset_name or " · ".join(spec.genres + spec.moods) or "Your track"
        await start_interaction_job(
            bot, interaction, JobPlan(spec=spec, samples=samples, title=title), kind="bgm"
        )

    @bgm.autocomplete("preset")
    async def _preset(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        presets = await asyncio.to_thread(
            self.bot.store.complete_guild_presets, interaction.guild_id, current
        )
        return [app_commands.Choice(name=p.name[:100], value=p.name) for p in presets][:MAX_CHOICES]


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Bgm(bot))
