"""Reusable checks: server manager, channel allowed, owner — for slash commands, buttons and 🔁 alike."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from discord import app_commands

from bot.replies import reply_private
from engine.errors import UserInputError

log = logging.getLogger("textunes.bot")

NEED_PERMISSION = "You need the **Manage Server** permission to change TexTuneS's server settings."


class Refused(app_commands.CheckFailure):
    """A check said no; its message goes privately to the user (bot.replies.answer_error)."""


class NotOwner(UserInputError):
    """Someone acted on another member's track, job or list."""


def is_owner(owner_id: int | str | None, user_id: int | str) -> bool:
    """The one ownership test (ids arrive as ints from Discord and as strings from the store)."""
    return owner_id is not None and str(owner_id) == str(user_id)


def require_owner(
    owner_id: int | str | None,
    user_id: int | str,
    message: str = "That track belongs to someone else — use `/bgm` to make your own.",
) -> None:
    if not is_owner(owner_id, user_id):
        raise NotOwner(message)


def channel_block_reason(
    store: Any, guild_id: int | None, channel_id: int | None, parent_id: int | None = None
) -> str | None:
    """Why TexTuneS may not be used in this channel (a server admin limited it), or None."""
    if guild_id is None:
        return None
    allowed = store.guild_settings(guild_id).get("allowed_channels") or []
    if not allowed or str(channel_id) in allowed:
        return None
    if parent_id is not None and str(parent_id) in allowed:  # threads inherit their parent's permission
        return None
    mentions = ", ".join(f"<#{c}>" for c in allowed[:10])
    return f"TexTuneS is limited to {mentions} on this server. Try there."


async def channel_refusal(interaction: discord.Interaction) -> str | None:
    """``channel_block_reason`` for an interaction (off the event loop)."""
    store = getattr(interaction.client, "store", None)
    if store is None:
        return None
    parent = getattr(interaction.channel, "parent_id", None)
    return await asyncio.to_thread(
        channel_block_reason, store, interaction.guild_id, interaction.channel_id, parent
    )


def channel_allowed():
    """Slash-command check: refuse (privately) in a channel the server's admin did not allow."""

    async def predicate(interaction: discord.Interaction) -> bool:
        reason = await channel_refusal(interaction)
        if reason:
            raise Refused(reason)
        return True

    return app_commands.check(predicate)


def manager():
    """Slash-command check: inside a server, by a member with Manage Server."""

    async def predicate(interaction: discord.Interaction) -> bool:
        if interaction.guild_id is None:
            raise Refused("Server settings only exist inside a server.")
        if not interaction.permissions.manage_guild:
            log.info("admin: user %s without Manage Server tried /admin", interaction.user.id)
            raise Refused(NEED_PERMISSION)
        return True

    return app_commands.check(predicate)


async def component_allowed(interaction: discord.Interaction) -> bool:
    """A button's/menu's ``interaction_check``: the channel rules hold for components too."""
    reason = await channel_refusal(interaction)
    if reason:
        await reply_private(interaction, reason)
        return False
    return True
