"""Your library: ``/history`` (re-post a recent track), ``/favorite`` (+ ⭐ button / reaction), ``/settings``.

Everything here reads and writes ``bot.store`` (engine.store) through ``asyncio.to_thread`` so the
event loop never waits on sqlite or a file. Components are ``DynamicItem``s whose custom ids carry
what they need (user id / track id), so they keep working after the bot restarts.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import channel_refusal, require_owner
from bot.components import STAR, FavoriteButton, RepostSelect
from bot.embeds import mmss
from bot.limits import guild_limits
from bot.replies import FrontCog, shown
from bot.transformers import DurationOption, TempoOption
from engine.errors import UserInputError

if TYPE_CHECKING:
    from engine.store import Store, TrackRecord

log = logging.getLogger("textunes.bot.library")

MAX_SELECT_OPTIONS = 25  # Discord's limit for a select menu


def track_title(record: TrackRecord, limit: int = 90) -> str:
    """A short human name for a track: its genres/moods, else the start of its prompt."""
    params = record.params or {}
    words = [*params.get("genres", []), *params.get("moods", [])]
    return shown(", ".join(words) if words else record.prompt, limit)


def track_embed(record: TrackRecord, *, title: str | None = None, favorite: bool = False) -> discord.Embed:
    embed = discord.Embed(title=title or track_title(record, 250), description=record.prompt[:4000])
    embed.add_field(name="Duration", value=mmss(record.duration))
    embed.add_field(name="Seed", value=str(record.seed))
    embed.add_field(name="Backend", value=f"{record.backend or '?'} ({record.model or '?'})"[:1024])
    embed.set_footer(text=f"track {record.id}" + (f" · {STAR} favorite" if favorite else ""))
    return embed


def history_line(n: int, record: TrackRecord, favorite: bool) -> str:
    star = f"{STAR} " if favorite else ""
    gone = " · *audio expired*" if not record.available else ""
    return (
        f"`{n:>2}.` {star}**{track_title(record, 60)}** · {mmss(record.duration)} · seed {record.seed}"
        f" · <t:{int(record.created_at)}:R>{gone}"
    )


class Library(FrontCog):
    """History, favorites and per-user defaults."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @property
    def store(self) -> Store:
        return self.bot.store  # type: ignore[attr-defined]

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(RepostSelect, FavoriteButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(RepostSelect, FavoriteButton)

    # ------------------------------------------------------------------------------ /history
    async def _track_list(
        self, interaction: discord.Interaction, records: list[TrackRecord], title: str, empty: str
    ) -> None:
        user_id = interaction.user.id
        if not records:
            await interaction.response.send_message(empty, ephemeral=True)
            return
        favorites = await asyncio.to_thread(lambda: {t.id for t in self.store.favorites(user_id)})
        lines = [history_line(n, r, r.id in favorites) for n, r in enumerate(records, 1)]
        embed = discord.Embed(title=title, description="\n".join(lines)[:4000])
        options = [
            discord.SelectOption(
                label=f"{n}. {track_title(r, 90)}"[:100],
                value=r.id,
                description=f"{mmss(r.duration)} · seed {r.seed}"[:100],
                emoji=STAR if r.id in favorites else None,
            )
            for n, r in enumerate(records, 1)
            if r.available
        ][:MAX_SELECT_OPTIONS]
        view = discord.ui.View(timeout=None)
        if options:
            view.add_item(RepostSelect(user_id, options))
        else:
            embed.set_footer(text="The audio of these tracks has expired; regenerate them with /bgm.")
        await interaction.response.send_message(embed=embed, view=view, ephemeral=True)

    @app_commands.command(name="history", description="Your recent tracks; pick one to post it again")
    @app_commands.describe(count="How many tracks to list (1-25, default 10)")
    async def history(
        self, interaction: discord.Interaction, count: app_commands.Range[int, 1, 25] = 10
    ) -> None:
        user_id = interaction.user.id
        records = await asyncio.to_thread(self.store.history, user_id, count)
        await self._track_list(
            interaction, records, "Your recent tracks", "You have no tracks yet. Make one with /bgm."
        )

    async def repost_choice(self, interaction: discord.Interaction, owner_id: int, track_id: str) -> None:
        """A pick in a /history or /favorite list (the list's owner only)."""
        require_owner(
            owner_id, interaction.user.id, "This list belongs to someone else. Use /history to see yours."
        )
        await self.repost(interaction, track_id)

    async def repost(self, interaction: discord.Interaction, track_id: str) -> None:
        """Post a stored track again in the interaction's channel (re-encoded if over the upload limit)."""
        store = self.store
        record = await asyncio.to_thread(store.get_track, track_id)
        if record is None:
            raise UserInputError("That track is not in your library any more.")
        require_owner(record.user_id, interaction.user.id, "That track is not in your library any more.")
        blocked = await channel_refusal(interaction)
        if blocked:
            raise UserInputError(blocked)
        await interaction.response.defer(thinking=True)  # reading/re-encoding may take a moment
        try:
            data, filename = await asyncio.to_thread(_fitting_file, store, record, interaction.filesize_limit)
        except UserInputError as exc:
            raise UserInputError(f"Could not re-post it: {exc}") from None
        favorite = await asyncio.to_thread(store.is_favorite, interaction.user.id, record.id)
        view = discord.ui.View(timeout=None)
        view.add_item(FavoriteButton(record.id))
        await interaction.edit_original_response(
            content=f"Re-posted by {interaction.user.mention}",
            embed=track_embed(record, favorite=favorite),
            attachments=[discord.File(io.BytesIO(data), filename=filename)],
            view=view,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def toggle_favorite(self, interaction: discord.Interaction, track_id: str) -> None:
        """⭐ under a track: in or out of the clicking member's favorites (anyone may click)."""
        store, user_id = self.store, interaction.user.id
        now_on = await asyncio.to_thread(
            lambda: store.set_favorite(user_id, track_id, on=not store.is_favorite(user_id, track_id))
        )
        text = f"{STAR} Added to your favorites." if now_on else "Removed from your favorites."
        await interaction.response.send_message(text + " See them with /favorite.", ephemeral=True)

    # ----------------------------------------------------------------------------- /favorite
    @app_commands.command(
        name="favorite", description="Keep a track (favorites are never cleaned up); no track: list them"
    )
    @app_commands.describe(track="One of your recent tracks", remove="Remove it from your favorites instead")
    async def favorite(
        self, interaction: discord.Interaction, track: str | None = None, remove: bool = False
    ) -> None:
        user_id = interaction.user.id
        store = self.store
        if not track:
            records = await asyncio.to_thread(store.favorites, user_id, MAX_SELECT_OPTIONS)
            await self._track_list(
                interaction,
                records,
                f"{STAR} Your favorites",
                f"No favorites yet. Use /favorite with a track, or press {STAR} under a track.",
            )
            return
        record = await asyncio.to_thread(store.get_track, track.strip())
        if record is None:
            raise UserInputError("I can't find that track. Pick one from the list as you type.")
        on = await asyncio.to_thread(store.set_favorite, user_id, record.id, not remove)
        verb = f"{STAR} Added to" if on else "Removed from"
        await interaction.response.send_message(
            f"{verb} your favorites: **{track_title(record)}**", ephemeral=True
        )

    @favorite.autocomplete("track")
    async def _favorite_track_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        records = await asyncio.to_thread(self.store.history, interaction.user.id, 50)
        needle = current.strip().casefold()
        choices = []
        for record in records:
            name = f"{track_title(record, 70)} · {mmss(record.duration)} · seed {record.seed}"
            if needle and needle not in name.casefold() and not record.id.startswith(needle):
                continue
            choices.append(app_commands.Choice(name=name[:100], value=record.id))
        return choices[:MAX_SELECT_OPTIONS]

    # ⭐ reactions on the bot's track messages (raw events: works on messages from before a restart)
    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self._star_reaction(payload, on=True)

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        await self._star_reaction(payload, on=False)

    async def _star_reaction(self, payload: discord.RawReactionActionEvent, on: bool) -> None:
        if str(payload.emoji) != STAR or (self.bot.user and payload.user_id == self.bot.user.id):
            return
        store = self.store

        def apply() -> int:
            job = self.bot.ledger.job_by_message(payload.message_id)
            if job is None:
                return 0
            changed = 0
            for record in store.tracks_of_job(job.id):
                try:
                    store.set_favorite(payload.user_id, record.id, on)
                    changed += 1
                except UserInputError as exc:  # favorites full: nothing to reply to on a reaction
                    log.info("star reaction ignored: %s", exc)
            return changed

        await asyncio.to_thread(apply)

    # ----------------------------------------------------------------------------- /settings
    @app_commands.command(name="settings", description="Your defaults for /bgm (tempo, duration, format)")
    @app_commands.describe(
        tempo="Default tempo (Slow / Medium / Fast or a BPM)",
        duration="Default duration, e.g. 30 or 0:30",
        format="Default audio format",
        reset="Forget all your defaults",
    )
    @app_commands.choices(format=[app_commands.Choice(name=f, value=f) for f in ("mp3", "ogg", "wav")])
    async def settings(
        self,
        interaction: discord.Interaction,
        tempo: TempoOption | None = None,
        duration: DurationOption | None = None,
        format: str | None = None,  # noqa: A002 - the option name users see
        reset: bool = False,
    ) -> None:
        store = self.store
        user_id = interaction.user.id
        changes: dict[str, Any] = {}
        if reset:
            changes = {"tempo": None, "duration": None, "format": None}
        if tempo:
            changes["tempo"] = tempo
        if duration:
            settings = getattr(self.bot, "settings", None)
            cap = (await asyncio.to_thread(guild_limits, store, interaction.guild_id, settings))[
                "max_duration"
            ]
            if duration > cap:
                raise UserInputError(
                    f"This server allows at most {mmss(cap)} per track; choose {mmss(cap)} or less."
                )
            changes["duration"] = duration
        if format:
            changes["format"] = format
        if changes:
            current = await asyncio.to_thread(lambda: store.set_user_settings(user_id, **changes))
        else:
            current = await asyncio.to_thread(store.user_settings, user_id)
        embed = discord.Embed(
            title="Your /bgm defaults" + (" (saved)" if changes else ""),
            description="Options you type in /bgm always win over these.",
        )
        embed.add_field(name="Tempo", value=current.get("tempo") or "not set")
        embed.add_field(
            name="Duration", value=mmss(current["duration"]) if current.get("duration") else "not set"
        )
        embed.add_field(name="Format", value=current.get("format") or "mp3")
        await interaction.response.send_message(embed=embed, ephemeral=True)


def _fitting_file(store: Store, record: TrackRecord, limit: int) -> tuple[bytes, str]:
    """The stored file if it fits the upload limit, else the track re-encoded smaller."""
    data = store.read_track_bytes(record.id)
    if len(data) <= limit:
        return data, record.filename
    from engine.audio import encode_to_fit

    fmt = "mp3" if record.format == "wav" else record.format
    smaller, _bitrate = encode_to_fit(store.load_track(record.id), fmt, max_bytes=limit)
    return smaller, f"textunes-{record.id}.{fmt}"


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Library(bot))
