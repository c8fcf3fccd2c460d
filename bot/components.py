"""The persistent components under a track (and in /history lists): layout and dispatch only.

They are ``DynamicItem``s: the job or track id lives in the custom_id, so they keep working on old
messages after a restart. Each checks the channel rules (``interaction_check``) and hands the click
to the cog that owns the feature, by name, so this module imports no cog and no delivery code.
"""

from __future__ import annotations

from typing import Any

import discord

from bot.checks import component_allowed
from bot.replies import answer_error, reply_private

PREFIX = "textunes"
STAR = "\N{WHITE MEDIUM STAR}"
REPOST_PREFIX = f"{PREFIX}:repost"
FAVORITE_PREFIX = f"{PREFIX}:fav"


async def dispatch(interaction: discord.Interaction, cog_name: str, action: str, *args: Any) -> None:
    """Run ``cog.action(interaction, *args)``; its errors get the same private answer as commands'."""
    cog = interaction.client.get_cog(cog_name)  # type: ignore[attr-defined]
    if cog is None:
        await reply_private(interaction, "That is not available right now; try again in a minute.")
        return
    try:
        await getattr(cog, action)(interaction, *args)
    except Exception as exc:  # noqa: BLE001 - every failure gets a private answer (and a log line)
        await answer_error(interaction, exc)


class ChannelRules:
    """Mixin: a component obeys the server's allowed channels, as the slash commands do."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return await component_allowed(interaction)


def _button(label: str | None, emoji: str, custom_id: str, primary: bool = False) -> discord.ui.Button:
    style = discord.ButtonStyle.primary if primary else discord.ButtonStyle.secondary
    return discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=custom_id)


class RegenerateButton(
    ChannelRules,
    discord.ui.DynamicItem[discord.ui.Button],
    template=PREFIX + r":regen:(?P<job_id>[0-9a-f]{6,32})",
):
    """Another take of the same request with a new seed (same as reacting 🔁)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(_button("Regenerate", "🔁", f"{PREFIX}:regen:{job_id}", primary=True))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: Any) -> RegenerateButton:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await dispatch(interaction, "TrackButtons", "regenerate", self.job_id)


class VariationButton(
    ChannelRules,
    discord.ui.DynamicItem[discord.ui.Button],
    template=PREFIX + r":var:(?P<track_id>[0-9a-f]{6,32})",
):
    """Keep the opening third of this track and let the generator take the rest somewhere new."""

    def __init__(self, track_id: str) -> None:
        super().__init__(_button("Variation", "🎲", f"{PREFIX}:var:{track_id}"))
        self.track_id = track_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: Any) -> VariationButton:
        return cls(match["track_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await dispatch(interaction, "TrackButtons", "variation", self.track_id)


class ExtendButton(
    ChannelRules,
    discord.ui.DynamicItem[discord.ui.Button],
    template=PREFIX + r":ext:(?P<track_id>[0-9a-f]{6,32})",
):
    """Continue this track for another 15 seconds."""

    def __init__(self, track_id: str) -> None:
        super().__init__(_button("Extend +15 s", "⏩", f"{PREFIX}:ext:{track_id}"))
        self.track_id = track_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: Any) -> ExtendButton:
        return cls(match["track_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await dispatch(interaction, "TrackButtons", "extend", self.track_id)


class EditPromptButton(
    ChannelRules,
    discord.ui.DynamicItem[discord.ui.Button],
    template=PREFIX + r":edit:(?P<job_id>[0-9a-f]{6,32})",
):
    """Open a form to change the prompt, then make it."""

    def __init__(self, job_id: str) -> None:
        super().__init__(_button("Edit prompt", "✏️", f"{PREFIX}:edit:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: Any) -> EditPromptButton:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await dispatch(interaction, "TrackButtons", "edit_prompt", self.job_id)


class FavoriteButton(
    ChannelRules,
    discord.ui.DynamicItem[discord.ui.Button],
    template=FAVORITE_PREFIX + r":(?P<track_id>[0-9a-f]{6,32})",
):
    """⭐ on a track message: toggles the track in the clicking user's favorites (anyone may click)."""

    def __init__(self, track_id: str) -> None:
        super().__init__(_button(None, STAR, f"{FAVORITE_PREFIX}:{track_id}"))
        self.track_id = track_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: Any) -> FavoriteButton:
        return cls(match["track_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await dispatch(interaction, "Library", "toggle_favorite", self.track_id)


class RepostSelect(
    ChannelRules, discord.ui.DynamicItem[discord.ui.Select], template=REPOST_PREFIX + r":(?P<user_id>[0-9]+)"
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
    async def from_custom_id(cls, interaction, item: discord.ui.Select, match: Any) -> RepostSelect:
        return cls(int(match["user_id"]), options=list(item.options))

    async def callback(self, interaction: discord.Interaction) -> None:
        await dispatch(interaction, "Library", "repost_choice", self.user_id, self.item.values[0])


TRACK_ITEMS = (RegenerateButton, VariationButton, ExtendButton, EditPromptButton, FavoriteButton)


def track_view(job, records) -> discord.ui.View:
    """The buttons under a posted track (``job``'s first track for the per-track ones)."""
    view = discord.ui.View(timeout=None)
    first = records[0].id
    for item in (
        RegenerateButton(job.id),
        VariationButton(first),
        ExtendButton(first),
        EditPromptButton(job.id),
        FavoriteButton(first),
    ):
        view.add_item(item)
    return view
