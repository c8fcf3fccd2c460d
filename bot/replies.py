"""Private replies, the one app-command error handler, and escaping of user-derived text."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from engine.errors import UserInputError

log = logging.getLogger("textunes.bot")

# set once on the bot (commands.Bot(allowed_mentions=...)); every send merges its own over this
NO_MENTIONS = discord.AllowedMentions.none()


def mention_only(user_id: int | str) -> discord.AllowedMentions:
    """For a message that means to ping its owner: that one user, nobody else (no everyone, no roles)."""
    return discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(int(user_id))])


def shown(text: object, limit: int | None = None) -> str:
    """User-derived text (titles, keywords, prompts, names) made safe to show: no pings, no markdown."""
    clean = discord.utils.escape_mentions(str(text))
    # any <@…>, <@&…>, <#…> shape, even with an id too short for escape_mentions to notice
    clean = clean.replace("<@", "<@\u200b").replace("<#", "<#\u200b")
    clean = discord.utils.escape_markdown(clean)
    if limit is not None and len(clean) > limit:
        clean = clean[: limit - 1] + "…"
    return clean


async def reply_private(interaction: discord.Interaction, message: str) -> None:
    """Tell only the user, whatever state the interaction is in.

    Not yet answered: an ephemeral response. Deferred publicly ("thinking…"): that public message
    goes and an ephemeral follow-up says why, so nothing about a failure is left in the channel.
    """
    if not interaction.response.is_done():
        await interaction.response.send_message(message, ephemeral=True)
        return
    if interaction.response.type == discord.InteractionResponseType.deferred_channel_message:
        try:  # our public "thinking…" message: nothing about a failure stays in the channel
            await interaction.delete_original_response()
        except discord.HTTPException:
            pass
    await interaction.followup.send(message, ephemeral=True)


def user_message(error: BaseException) -> str | None:
    """What to tell the user about ``error`` (a UserInputError or a failed check, however wrapped)."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 5:
        if isinstance(current, UserInputError):
            return f"⚠️ {current}"
        if isinstance(current, app_commands.CheckFailure) and str(current):
            return str(current)
        current = getattr(current, "original", None) or current.__cause__
        seen += 1
    return None


async def answer_error(interaction: discord.Interaction, error: BaseException) -> None:
    """The single error handler: user mistakes and refused checks become a private reply; anything
    else is logged and the user gets a short apology instead of a silent "interaction failed"."""
    message = user_message(error)
    if message is None:
        log.error(
            "unexpected error in %s", getattr(interaction.command, "qualified_name", "?"), exc_info=error
        )
        message = "⚠️ Something went wrong on my side; please try again."
    try:
        await reply_private(interaction, message)
    except discord.HTTPException as exc:
        log.info("could not answer an error privately (HTTP %s)", exc.status)


class FrontCog(commands.Cog):
    """Base of every cog: one ``cog_app_command_error`` (``answer_error``) instead of a try in each command."""

    async def cog_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await answer_error(interaction, error)
