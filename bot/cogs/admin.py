"""Server admin: ``/admin ...`` for members with Manage Server.

Restrict the bot to channels, set limits (jobs per user, queue size, max duration, ...), and add or
remove server-specific categories/keywords and presets ("themes": Study, Horror game, Wedding) that
then show up in autocomplete. Settings live in ``bot.store`` (engine.store), so they survive restarts.

``default_permissions`` hides the commands from other members in Discord's UI, but that is only a
default a server can change, so every command also checks the member's permission itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import manager
from bot.embeds import mmss
from bot.limits import check_override, guild_limits, per_minute
from bot.replies import FrontCog, shown
from bot.transformers import DurationOption, Genres, Instruments, Keywords, Moods, TempoOption
from engine.errors import UserInputError

if TYPE_CHECKING:
    from engine.store import Store

log = logging.getLogger("textunes.bot.admin")

KIND_CHOICES = [
    app_commands.Choice(name="genre", value="genres"),
    app_commands.Choice(name="mood", value="moods"),
    app_commands.Choice(name="instrument", value="instruments"),
    app_commands.Choice(name="keyword", value="keywords"),
]


def _canonical_names(store: Store, guild_id: int, kind: str, names: list[str]) -> list[str]:
    """Catalogue names (Korean or English, any case) or this server's own; unknown -> friendly error."""
    from engine.catalogue import UnknownCategory, default_catalogue

    catalogue = default_catalogue()
    out = []
    for name in names:
        try:
            out.append(catalogue.resolve(kind, name).en)
        except UnknownCategory:
            own = store.find_guild_category(guild_id, kind, name)
            if own is None:
                raise
            out.append(own.en)
    return out


class Admin(FrontCog):
    """Per-server settings for server managers."""

    admin = app_commands.Group(
        name="admin",
        description="TexTuneS server settings (Manage Server)",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @property
    def store(self) -> Store:
        return self.bot.store  # type: ignore[attr-defined]

    @property
    def settings(self) -> Any:
        return getattr(self.bot, "settings", None)  # the operator's caps (None in a bare host)

    async def _run(self, interaction: discord.Interaction, work, done: str) -> None:
        """Store call off the loop, then the confirmation (errors: the cog's one handler)."""
        result = await asyncio.to_thread(work)
        text = done.format(result=shown(result)) if "{result" in done else done
        await interaction.response.send_message(text, ephemeral=True)

    # ------------------------------------------------------------------------------ show
    def _overview(self, guild_id: int) -> discord.Embed:
        store = self.store
        limits = guild_limits(store, guild_id, self.settings)
        embed = discord.Embed(title="TexTuneS on this server")
        channels = limits.get("allowed_channels") or []
        embed.add_field(
            name="Channels",
            value=", ".join(f"<#{c}>" for c in channels) if channels else "all channels",
            inline=False,
        )
        embed.add_field(name="Jobs per member", value=str(limits["jobs_per_user"]))
        embed.add_field(name="Queue size", value=str(limits["queue_size"]))
        embed.add_field(name="Max duration", value=mmss(limits["max_duration"]))
        embed.add_field(name="Max takes", value=str(limits["max_samples"]))
        embed.add_field(name="Jobs/min per member", value=per_minute(limits["user_jobs_per_minute"]))
        embed.add_field(name="Jobs/min server", value=per_minute(limits["guild_jobs_per_minute"]))
        categories = store.guild_categories(guild_id)
        if categories:
            by_kind: dict[str, list[str]] = {}
            for c in categories:
                by_kind.setdefault(c.kind, []).append(shown(c.label))
            text = "\n".join(f"**{k}**: {', '.join(v)}" for k, v in by_kind.items())
            embed.add_field(name="Custom categories", value=text[:1024], inline=False)
        presets = store.guild_presets(guild_id)
        if presets:
            embed.add_field(
                name="Presets", value="\n".join(_preset_line(p) for p in presets)[:1024], inline=False
            )
        return embed

    @admin.command(name="show", description="Show this server's TexTuneS settings, categories and presets")
    @manager()
    async def show(self, interaction: discord.Interaction) -> None:
        embed = await asyncio.to_thread(self._overview, interaction.guild_id)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    # -------------------------------------------------------------------------- channels
    @admin.command(name="channels", description="Limit TexTuneS to some channels (or allow all again)")
    @app_commands.describe(
        action="allow: add a channel · remove: take one off · all: every channel", channel="The channel"
    )
    @app_commands.choices(
        action=[
            app_commands.Choice(name="allow", value="allow"),
            app_commands.Choice(name="remove", value="remove"),
            app_commands.Choice(name="all", value="all"),
        ]
    )
    @manager()
    async def channels(
        self,
        interaction: discord.Interaction,
        action: str,
        channel: app_commands.AppCommandChannel | None = None,
    ) -> None:
        store, guild_id = self.store, interaction.guild_id
        if action != "all" and channel is None:
            raise UserInputError(f"Pick the channel to {action}.")
        if channel is not None and channel.type == discord.ChannelType.category:
            raise UserInputError("That is a category; pick a channel the bot can post in.")

        def work() -> list[str]:
            current = list(store.guild_settings(guild_id)["allowed_channels"])
            if action == "all":
                current = []
            elif action == "allow" and str(channel.id) not in current:
                current.append(str(channel.id))
            elif action == "remove":
                current = [c for c in current if c != str(channel.id)]
            return store.set_guild_settings(guild_id, allowed_channels=current or None)["allowed_channels"]

        allowed = await asyncio.to_thread(work)
        where = ", ".join(f"<#{c}>" for c in allowed) if allowed else "every channel"
        await interaction.response.send_message(f"TexTuneS now works in {where}.", ephemeral=True)

    # ---------------------------------------------------------------------------- limits
    @admin.command(
        name="limits", description="Set limits; leave an option out to keep it, reset to restore defaults"
    )
    @app_commands.describe(
        jobs_per_user="Jobs one member may have queued or running (1-20)",
        queue_size="Jobs waiting on this server at once (1-1000)",
        max_duration="Longest track members may ask for, e.g. 60 or 1:00 (max 3:00)",
        max_samples="Takes per request (1-8)",
        user_jobs_per_minute="Requests per member per minute (1-120)",
        guild_jobs_per_minute="Requests for the whole server per minute (1-1000)",
        reset="Restore every limit to the default",
    )
    @manager()
    async def limits(
        self,
        interaction: discord.Interaction,
        jobs_per_user: int | None = None,
        queue_size: int | None = None,
        max_duration: DurationOption | None = None,
        max_samples: int | None = None,
        user_jobs_per_minute: int | None = None,
        guild_jobs_per_minute: int | None = None,
        reset: bool = False,
    ) -> None:
        store, guild_id = self.store, interaction.guild_id
        changes: dict[str, Any] = {}
        if reset:
            changes = dict.fromkeys(
                ("jobs_per_user", "queue_size", "max_duration", "max_samples", "user_jobs_per_minute",
                 "guild_jobs_per_minute")
            )  # fmt: skip
        given = {
            "jobs_per_user": jobs_per_user,
            "queue_size": queue_size,
            "max_samples": max_samples,
            "user_jobs_per_minute": user_jobs_per_minute,
            "guild_jobs_per_minute": guild_jobs_per_minute,
        }
        changes.update({k: v for k, v in given.items() if v is not None})
        if max_duration is not None:
            changes["max_duration"] = max_duration
        for key, value in changes.items():  # a server can lower the operator's caps, never raise them
            check_override(self.settings, key, value)

        def work() -> dict[str, Any]:
            if changes:
                store.set_guild_settings(guild_id, **changes)
            return guild_limits(store, guild_id, self.settings)

        merged = await asyncio.to_thread(work)
        summary = (
            f"jobs per member **{merged['jobs_per_user']}**, queue **{merged['queue_size']}**, "
            f"max duration **{mmss(merged['max_duration'])}**, takes **{merged['max_samples']}**, "
            f"per member **{per_minute(merged['user_jobs_per_minute'])}/min**, "
            f"server **{per_minute(merged['guild_jobs_per_minute'])}/min**"
        )
        prefix = "Saved. " if changes or max_duration is not None else ""
        await interaction.response.send_message(f"{prefix}Limits: {summary}.", ephemeral=True)

    # ------------------------------------------------------------------------ categories
    @admin.command(name="category-add", description="Add a server-only genre, mood, instrument or keyword")
    @app_commands.describe(
        kind="What it is", name="English name (used in the music prompt)", korean="Korean label"
    )
    @app_commands.choices(kind=KIND_CHOICES)
    @manager()
    async def category_add(
        self, interaction: discord.Interaction, kind: str, name: str, korean: str | None = None
    ) -> None:
        store, guild_id, user_id = self.store, interaction.guild_id, interaction.user.id
        await self._run(
            interaction,
            lambda: store.add_guild_category(guild_id, kind, name, korean, created_by=user_id).label,
            f"Added {kind[:-1]} **{{result}}**; it now shows up in autocomplete on this server.",
        )

    @admin.command(name="category-remove", description="Remove a server-only category")
    @app_commands.describe(kind="What it is", name="Its English or Korean name")
    @app_commands.choices(kind=KIND_CHOICES)
    @manager()
    async def category_remove(self, interaction: discord.Interaction, kind: str, name: str) -> None:
        store, guild_id = self.store, interaction.guild_id

        def work() -> str:
            if not store.remove_guild_category(guild_id, kind, name):
                raise UserInputError(f"This server has no custom {kind[:-1]} called '{name}'.")
            return name

        await self._run(interaction, work, f"Removed {kind[:-1]} **{{result}}**.")

    @category_remove.autocomplete("name")
    async def _category_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        kind = getattr(interaction.namespace, "kind", None) or "genres"
        entries = await asyncio.to_thread(
            self.store.complete_guild_categories, interaction.guild_id, kind, current
        )
        return [app_commands.Choice(name=e.label[:100], value=e.en) for e in entries]

    # --------------------------------------------------------------------------- presets
    @admin.command(name="preset-add", description="Add a preset/theme (e.g. Study, Horror game, Wedding)")
    @app_commands.describe(
        name="Preset name",
        genres="Genres, comma separated",
        moods="Moods, comma separated",
        tempo="Slow / Medium / Fast or a BPM",
        instruments="Instruments, comma separated",
        keywords="Free keywords, comma separated",
        duration="Default duration, e.g. 30 or 1:00",
    )
    @manager()
    async def preset_add(
        self,
        interaction: discord.Interaction,
        name: str,
        genres: Genres | None = None,
        moods: Moods | None = None,
        tempo: TempoOption | None = None,
        instruments: Instruments | None = None,
        keywords: Keywords | None = None,
        duration: DurationOption | None = None,
    ) -> None:
        store, guild_id, user_id = self.store, interaction.guild_id, interaction.user.id

        def work() -> str:
            preset = store.add_guild_preset(
                guild_id,
                name,
                genres=_canonical_names(store, guild_id, "genres", genres or []),
                moods=_canonical_names(store, guild_id, "moods", moods or []),
                tempo=tempo,
                instruments=_canonical_names(store, guild_id, "instruments", instruments or []),
                keywords=keywords or [],
                duration=duration,
                created_by=user_id,
            )
            return _preset_line(preset)

        await self._run(interaction, work, "Saved preset {result}")

    @admin.command(name="preset-remove", description="Remove a preset/theme")
    @app_commands.describe(name="Preset name")
    @manager()
    async def preset_remove(self, interaction: discord.Interaction, name: str) -> None:
        store, guild_id = self.store, interaction.guild_id

        def work() -> str:
            if not store.remove_guild_preset(guild_id, name):
                raise UserInputError(f"This server has no preset called '{name}'.")
            return name

        await self._run(interaction, work, "Removed preset **{result}**.")

    @preset_remove.autocomplete("name")
    async def _preset_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        presets = await asyncio.to_thread(self.store.complete_guild_presets, interaction.guild_id, current)
        return [app_commands.Choice(name=p.name[:100], value=p.name) for p in presets]


def _preset_line(preset) -> str:
    parts = [*preset.genres, *preset.moods, *preset.instruments, *preset.keywords]
    if preset.tempo:
        parts.append(preset.tempo)
    if preset.duration:
        parts.append(mmss(preset.duration))
    return f"**{shown(preset.name)}**: {shown(', '.join(parts))}"


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Admin(bot))
