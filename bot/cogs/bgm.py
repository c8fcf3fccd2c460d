"""``/bgm``: music from categories (Korean or English names, autocompleted from the catalogue)."""

from __future__ import annotations

import asyncio

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.library import channel_block_reason, guild_limits
from bot.delivery import JobPlan, reply_ephemeral, start_interaction_job
from engine.catalogue import default_catalogue
from engine.errors import UserInputError
from engine.prompt import build_spec

MAX_CHOICES = 25  # Discord's limit for autocomplete answers


def split_list(text: str | None) -> list[str]:
    """A comma-separated option ("Lofi, Jazz") as its non-empty parts."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def duration_refusal(bot, limits: dict, seconds: float) -> str | None:
    """Why ``seconds`` is too long for this server (its /admin limit, else the bot's), or None."""
    max_duration = float(limits.get("max_duration") or bot.settings.max_duration)
    if seconds > max_duration:
        return f"⚠️ This server allows tracks up to {max_duration:.0f} s; you asked for {seconds:.0f} s."
    return None


def _choice_name(en: str, ko: str) -> str:
    return f"{en} · {ko}" if ko and ko != en else en


def complete_list(bot, kind: str, current: str, guild_id: int | None) -> list[app_commands.Choice[str]]:
    """Autocomplete for a comma-separated list: complete the last item, keep the earlier ones."""
    head, _, last = current.rpartition(",")
    prefix = f"{head.strip()}, " if head.strip() else ""
    names: dict[str, str] = {}
    store = getattr(bot, "store", None)
    if store is not None and guild_id is not None:  # the server's own categories first
        for item in store.complete_guild_categories(guild_id, kind, last.strip()):
            names.setdefault(item.en, _choice_name(item.en, item.ko or ""))
    for entry in default_catalogue().complete(kind, last.strip(), limit=MAX_CHOICES):
        names.setdefault(entry.en, _choice_name(entry.en, entry.ko))
    choices = []
    for en, label in names.items():
        value = (prefix + en)[:100]
        choices.append(app_commands.Choice(name=(prefix + label)[:100], value=value))
    return choices[:MAX_CHOICES]


def split_guild_names(bot, guild_id: int | None, kind: str, names: list[str]) -> tuple[list[str], list[str]]:
    """Catalogue names stay; a server-added name unknown to the catalogue becomes a keyword."""
    cat, store = default_catalogue(), bot.store
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


class Bgm(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(
        name="bgm", description="Make background music from a genre, mood, tempo and duration"
    )
    @app_commands.describe(
        genre="genre(s), comma-separated — Korean or English (e.g. Lofi, 재즈)",
        mood="mood(s), comma-separated (e.g. Calm, 몽환적인)",
        tempo="Slow / Medium / Fast, or a BPM such as 92",
        duration="0:15, 0:30, 1:00 — or any length up to the server's limit",
        instruments="instrument(s), comma-separated (e.g. Piano, Strings)",
        keywords="free keywords, comma-separated (e.g. rainy night, cafe)",
        samples="how many takes (1-4)",
    )
    async def bgm(
        self,
        interaction: discord.Interaction,
        genre: str,
        mood: str,
        tempo: str | None = None,
        duration: str | None = None,
        instruments: str | None = None,
        keywords: str | None = None,
        samples: app_commands.Range[int, 1, 4] = 1,
    ) -> None:
        bot, store = self.bot, self.bot.store
        blocked = await asyncio.to_thread(channel_block_reason, store, interaction)
        if blocked:
            await reply_ephemeral(interaction, blocked)
            return
        limits = await asyncio.to_thread(guild_limits, store, interaction.guild_id, bot)
        defaults = await asyncio.to_thread(store.user_settings, interaction.user.id)
        try:
            genres, extra_g = split_guild_names(bot, interaction.guild_id, "genres", split_list(genre))
            moods, extra_m = split_guild_names(bot, interaction.guild_id, "moods", split_list(mood))
            spec = build_spec(
                genres=tuple(genres),
                moods=tuple(moods),
                instruments=tuple(split_list(instruments)),
                keywords=tuple(split_list(keywords) + extra_g + extra_m),
                tempo=tempo or defaults.get("tempo"),
                duration=duration or defaults.get("duration") or 15,
            )
        except UserInputError as exc:
            await reply_ephemeral(interaction, f"⚠️ {exc}")
            return
        too_long = duration_refusal(bot, limits, spec.duration)
        if too_long:
            await reply_ephemeral(interaction, too_long)
            return
        max_samples = int(limits.get("max_samples") or bot.settings.max_samples)
        if samples > max_samples:
            await reply_ephemeral(interaction, f"⚠️ At most {max_samples} takes per request here.")
            return
        title = " · ".join(spec.genres + spec.moods) or "Your track"
        await start_interaction_job(
            bot, interaction, JobPlan(spec=spec, samples=samples, title=title), kind="bgm"
        )

    @bgm.autocomplete("genre")
    async def _genre(self, interaction: discord.Interaction, current: str):
        return complete_list(self.bot, "genres", current, interaction.guild_id)

    @bgm.autocomplete("mood")
    async def _mood(self, interaction: discord.Interaction, current: str):
        return complete_list(self.bot, "moods", current, interaction.guild_id)

    @bgm.autocomplete("instruments")
    async def _instruments(self, interaction: discord.Interaction, current: str):
        return complete_list(self.bot, "instruments", current, interaction.guild_id)

    @bgm.autocomplete("tempo")
    async def _tempo(self, interaction: discord.Interaction, current: str):
        return tempo_choices(current)

    @bgm.autocomplete("duration")
    async def _duration(self, interaction: discord.Interaction, current: str):
        return duration_choices(current)


def tempo_choices(current: str) -> list[app_commands.Choice[str]]:
    cat = default_catalogue()
    choices = []
    digits = "".join(ch for ch in current if ch.isdigit())
    if digits:
        choices.append(app_commands.Choice(name=f"{digits} BPM", value=digits))
    for entry in cat.list("tempos"):
        info = cat.tempo(entry.en)
        if not current or current.lower() in (entry.en.lower() + entry.ko) or digits:
            choices.append(
                app_commands.Choice(name=f"{entry.en} · {entry.ko} ({info.lo}-{info.hi} BPM)", value=entry.en)
            )
    return choices[:MAX_CHOICES]


def duration_choices(current: str) -> list[app_commands.Choice[str]]:
    cat = default_catalogue()
    choices = [app_commands.Choice(name=e.en, value=e.en) for e in cat.list("durations") if current in e.en]
    if current and current not in [c.value for c in choices]:
        choices.insert(0, app_commands.Choice(name=current[:100], value=current[:100]))
    return choices[:MAX_CHOICES]


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Bgm(bot))
