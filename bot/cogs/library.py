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

from bot.embeds import mmss
from engine.errors import UserInputError

if TYPE_CHECKING:
    from engine.store import Store, TrackRecord

log = logging.getLogger("textunes.bot.library")

STAR = "\N{WHITE MEDIUM STAR}"
REPOST_PREFIX = "textunes:repost"
FAVORITE_PREFIX = "textunes:fav"
MAX_SELECT_OPTIONS = 25  # Discord's limit for a select menu


def store_of(bot: commands.Bot) -> Store:
    store = getattr(bot, "store", None)
    if store is None:
        raise RuntimeError("the bot has no store (bot.store); the library cog needs one")
    return store


async def reply_error(interaction: discord.Interaction, message: str) -> None:
    """An ephemeral error, whether or not the interaction was already acknowledged."""
    if interaction.response.is_done():
        await interaction.followup.send(message, ephemeral=True)
    else:
        await interaction.response.send_message(message, ephemeral=True)


def track_title(record: TrackRecord, limit: int = 90) -> str:
    """A short human name for a track: its genres/moods, else the start of its prompt."""
    params = record.params or {}
    words = [*params.get("genres", []), *params.get("moods", [])]
    title = ", ".join(words) if words else record.prompt
    return title if len(title) <= limit else title[: limit - 1] + "…"


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


class RepostSelect(
    discord.ui.DynamicItem[discord.ui.Select], template=REPOST_PREFIX + r":(?P<user_id>[0-9]+)"
):
    """Pick one of your tracks to post it again in this channel (history / favorites lists)."""

    def __init__(self, user_id: int, options: list[discord.SelectOption] | None = None) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=f"{REPOST_PREFIX}:{user_id}",
                placeholder="Re-post one of these tracks here…",
                min_values=1,
                max_values=1,
                # after a restart the real options come back from the message itself
                options=options or [discord.SelectOption(label="-", value="-")],
            )
        )
        self.user_id = user_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Select, match: Any
    ) -> RepostSelect:
        return cls(int(match["user_id"]), options=list(item.options))

    async def callback(self, interaction: discord.Interaction) -> None:
        if interaction.user.id != self.user_id:
            await reply_error(interaction, "This list belongs to someone else. Use /history to see yours.")
            return
        cog = interaction.client.get_cog("Library")  # type: ignore[union-attr]
        if cog is None:
            await reply_error(interaction, "The library is not available right now; try again in a minute.")
            return
        await cog.repost(interaction, self.item.values[0])


class FavoriteButton(
    discord.ui.DynamicItem[discord.ui.Button], template=FAVORITE_PREFIX + r":(?P<track_id>[0-9a-f]{6,32})"
):
    """⭐ on a track message: toggles the track in the clicking user's favorites (anyone may click)."""

    def __init__(self, track_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                style=discord.ButtonStyle.secondary, emoji=STAR, custom_id=f"{FAVORITE_PREFIX}:{track_id}"
            )
        )
        self.track_id = track_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: Any
    ) -> FavoriteButton:
        return cls(match["track_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        store = store_of(interaction.client)  # type: ignore[arg-type]
        user_id = interaction.user.id
        try:
            now_on = await asyncio.to_thread(
                lambda: store.set_favorite(
                    user_id, self.track_id, on=not store.is_favorite(user_id, self.track_id)
                )
            )
        except UserInputError as exc:
            await reply_error(interaction, str(exc))
            return
        text = f"{STAR} Added to your favorites." if now_on else "Removed from your favorites."
        await interaction.response.send_message(text + " See them with /favorite.", ephemeral=True)


class Library(commands.Cog):
    """History, favorites and per-user defaults."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @property
    def store(self) -> Store:
        return store_of(self.bot)

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

    async def repost(self, interaction: discord.Interaction, track_id: str) -> None:
        """Post a stored track again in the interaction's channel (re-encoded if over the upload limit)."""
        store = self.store
        record = await asyncio.to_thread(store.get_track, track_id)
        if record is None or str(record.user_id) != str(interaction.user.id):
            await reply_error(interaction, "That track is not in your library any more.")
            return
        blocked = await asyncio.to_thread(channel_block_reason, store, interaction)
        if blocked:
            await reply_error(interaction, blocked)
            return
        await interaction.response.defer(thinking=True)  # reading/re-encoding may take a moment
        try:
            data, filename = await asyncio.to_thread(_fitting_file, store, record, interaction.filesize_limit)
        except UserInputError as exc:
            await interaction.edit_original_response(content=f"Could not re-post it: {exc}")
            return
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
        try:
            record = await asyncio.to_thread(store.get_track, track.strip())
            if record is None:
                raise UserInputError("I can't find that track. Pick one from the list as you type.")
            on = await asyncio.to_thread(store.set_favorite, user_id, record.id, not remove)
        except UserInputError as exc:
            await reply_error(interaction, str(exc))
            return
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
            job = store.job_by_message(payload.message_id)
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
        tempo: str | None = None,
        duration: str | None = None,
        format: str | None = None,  # noqa: A002 - the option name users see
        reset: bool = False,
    ) -> None:
        store = self.store
        user_id = interaction.user.id
        guild_id = interaction.guild_id
        try:
            changes: dict[str, Any] = {}
            if reset:
                changes = {"tempo": None, "duration": None, "format": None}
            if tempo:
                changes["tempo"] = _canonical_tempo(tempo)
            if duration:
                changes["duration"] = await asyncio.to_thread(
                    _checked_duration, store, guild_id, duration, self.bot
                )
            if format:
                changes["format"] = format
            if changes:
                current = await asyncio.to_thread(lambda: store.set_user_settings(user_id, **changes))
            else:
                current = await asyncio.to_thread(store.user_settings, user_id)
        except UserInputError as exc:
            await reply_error(interaction, str(exc))
            return
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

    @settings.autocomplete("tempo")
    async def _tempo_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        from engine.catalogue import default_catalogue

        entries = await asyncio.to_thread(default_catalogue().complete, "tempos", current)
        return [app_commands.Choice(name=f"{e.en} ({e.ko})"[:100], value=e.en) for e in entries][
            :MAX_SELECT_OPTIONS
        ]


# ----------------------------------------------------------------------------------------------
# helpers shared with the admin cog
# ----------------------------------------------------------------------------------------------
def _canonical_tempo(value: str) -> str:
    """'fast' / '빠르게' -> 'Fast'; '92' / '92 bpm' -> '92 bpm' (UserInputError otherwise)."""
    from engine.catalogue import default_catalogue

    info = default_catalogue().tempo(value)
    return f"{info.bpm} bpm" if getattr(info, "explicit", False) else info.label


def _checked_duration(store: Store, guild_id: int | None, value: str, bot: commands.Bot) -> float:
    from engine.prompt import parse_duration

    seconds = parse_duration(value)
    cap = guild_limits(store, guild_id, bot)["max_duration"]
    if seconds > cap:
        raise UserInputError(
            f"This server allows at most {mmss(cap)} per track; choose {mmss(cap)} or less."
        )
    return seconds


def guild_limits(store: Store, guild_id: int | None, bot: commands.Bot) -> dict[str, Any]:
    """Guild settings merged over the bot's configured limits (env/.env) over the store defaults."""
    settings = getattr(bot, "settings", None)
    defaults: dict[str, Any] = {}
    if settings is not None:
        for key, attr in (
            ("jobs_per_user", "per_user_jobs"),
            ("queue_size", "max_queue"),
            ("max_duration", "max_duration"),
            ("max_samples", "max_samples"),
        ):
            if getattr(settings, attr, None) is not None:
                defaults[key] = getattr(settings, attr)
    return store.guild_settings(guild_id, defaults=defaults)


def channel_block_reason(store: Store, interaction: discord.Interaction) -> str | None:
    """Why the bot may not post in this channel (admin restriction), or None when it may."""
    if interaction.guild_id is None:
        return None
    allowed = store.guild_settings(interaction.guild_id).get("allowed_channels") or []
    channel_id = interaction.channel_id
    if not allowed or str(channel_id) in allowed:
        return None
    # threads inherit their parent channel's permission
    parent = getattr(interaction.channel, "parent_id", None)
    if parent is not None and str(parent) in allowed:
        return None
    mentions = ", ".join(f"<#{c}>" for c in allowed[:10])
    return f"TexTuneS is limited to {mentions} on this server. Try there."


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
