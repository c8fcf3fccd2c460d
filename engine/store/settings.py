"""Per-user and per-guild settings in the store, with the validation of every value."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from engine.store.db import StoreBase
from engine.store.records import AUDIO_FORMATS, SettingsError, as_id, from_json, to_json

USER_DEFAULTS: dict[str, Any] = {"tempo": None, "duration": None, "format": "mp3"}
GUILD_DEFAULTS: dict[str, Any] = {
    "allowed_channels": [],  # channel ids (str); empty = every channel
    "jobs_per_user": 2,  # concurrent queued/running jobs per user
    "queue_size": 50,  # jobs waiting in this guild at once
    "max_duration": 120.0,  # seconds a member may ask for
    "max_samples": 4,  # takes per request
    "user_jobs_per_minute": 6,  # rate limit per member
    "guild_jobs_per_minute": 30,  # rate limit for the whole guild
}
# (min, max) for numeric guild settings: wide enough for any real server, tight enough to stop abuse
_GUILD_RANGES: dict[str, tuple[float, float]] = {
    "jobs_per_user": (1, 20),
    "queue_size": (1, 1000),
    "max_duration": (5, 180),
    "max_samples": (1, 8),
    "user_jobs_per_minute": (1, 120),
    "guild_jobs_per_minute": (1, 1000),
}
MAX_NAME_CHARS = 60
MAX_GUILD_CATEGORIES = 300
MAX_GUILD_PRESETS = 50
MAX_PRESET_ITEMS = 8
MAX_ALLOWED_CHANNELS = 50


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------
def clean_name(value: Any, what: str) -> str:
    text = " ".join(str(value or "").split())
    if not text:
        raise SettingsError(f"The {what} is empty; type a name.")
    if len(text) > MAX_NAME_CHARS:
        raise SettingsError(
            f"The {what} '{text[:20]}…' is too long: keep it under {MAX_NAME_CHARS} characters."
        )
    return text


def clean_list(values: Any, what: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        values = [v for v in re.split(r"[,\n]", values)]
    items: list[str] = []
    for value in values:
        if str(value).strip():
            name = clean_name(value, what)
            if name.casefold() not in {i.casefold() for i in items}:
                items.append(name)
    if len(items) > MAX_PRESET_ITEMS:
        raise SettingsError(f"Too many {what}s ({len(items)}): at most {MAX_PRESET_ITEMS}.")
    return tuple(items)


def _number(key: str, value: Any, lo: float, hi: float, integer: bool) -> float | int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{key} must be a number, got {value!r}.") from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise SettingsError(f"{key} must be between {lo:g} and {hi:g}, got {value!r}.")
    if integer:
        if number != int(number):
            raise SettingsError(f"{key} must be a whole number, got {value!r}.")
        return int(number)
    return number


def _validate_user_setting(key: str, value: Any) -> Any:
    if key == "format":
        fmt = str(value).lower().lstrip(".")
        if fmt not in AUDIO_FORMATS:
            raise SettingsError(f"Unknown audio format '{value}'. Choose one of: {', '.join(AUDIO_FORMATS)}.")
        return fmt
    if key == "duration":
        from engine.prompt import parse_duration  # accepts 30, "30", "0:30"; friendly range error

        return parse_duration(value)
    if key == "tempo":  # the bot validates against the catalogue; here: a sane short label
        return clean_name(value, "tempo")
    raise SettingsError(f"Unknown setting '{key}'. You can set: {', '.join(USER_DEFAULTS)}.")


def _validate_guild_setting(key: str, value: Any) -> Any:
    if key == "allowed_channels":
        if isinstance(value, (str, int)):
            value = [value]
        channels = sorted({str(int(v)) for v in value}, key=int) if value else []
        if len(channels) > MAX_ALLOWED_CHANNELS:
            raise SettingsError(f"Too many channels ({len(channels)}): at most {MAX_ALLOWED_CHANNELS}.")
        return channels
    if key in _GUILD_RANGES:
        lo, hi = _GUILD_RANGES[key]
        return _number(key, value, lo, hi, integer=key != "max_duration")
    raise SettingsError(f"Unknown server setting '{key}'. Known: {', '.join(GUILD_DEFAULTS)}.")


class SettingsMixin(StoreBase):
    """Read and change per-user defaults and per-guild settings (validated)."""

    def user_settings(self, user_id: str | int) -> dict[str, Any]:
        """The user's defaults merged over ``USER_DEFAULTS``."""
        rows = self._query("SELECT settings FROM user_settings WHERE user_id = ?", (as_id(user_id),))
        return {**USER_DEFAULTS, **(from_json(rows[0][0], {}) if rows else {})}

    def set_user_settings(self, user_id: str | int, **kw: Any) -> dict[str, Any]:
        """Set per-user defaults (tempo, duration, format); a value of None resets that one."""
        return self._set_settings(
            "user_settings", "user_id", as_id(user_id), kw, _validate_user_setting, USER_DEFAULTS
        )

    def guild_settings(
        self, guild_id: str | int | None, defaults: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The guild's settings merged over ``defaults`` (e.g. from the bot's config) over GUILD_DEFAULTS."""
        base = {**GUILD_DEFAULTS, **(defaults or {})}
        if guild_id is None:  # DMs: no guild overrides
            return {k: list(v) if isinstance(v, list) else v for k, v in base.items()}
        rows = self._query("SELECT settings FROM guild_settings WHERE guild_id = ?", (as_id(guild_id),))
        return {**base, **(from_json(rows[0][0], {}) if rows else {})}

    def set_guild_settings(self, guild_id: str | int, **kw: Any) -> dict[str, Any]:
        """Set guild settings (validated; None resets a key to its default); returns the merged result."""
        return self._set_settings(
            "guild_settings", "guild_id", as_id(guild_id), kw, _validate_guild_setting, GUILD_DEFAULTS
        )

    def _set_settings(
        self,
        table: str,
        key_column: str,
        key: str | None,
        changes: Mapping[str, Any],
        validate: Callable[[str, Any], Any],
        defaults: Mapping[str, Any],
    ) -> dict[str, Any]:
        if key is None:
            raise ValueError(f"{key_column} is required")
        cleaned = {
            name: (None if value is None else validate(name, value)) for name, value in changes.items()
        }
        with self._tx() as conn:
            row = conn.execute(f"SELECT settings FROM {table} WHERE {key_column} = ?", (key,)).fetchone()
            current = from_json(row[0], {}) if row else {}
            for name, value in cleaned.items():
                if value is None:
                    current.pop(name, None)
                else:
                    current[name] = value
            conn.execute(
                f"INSERT INTO {table} ({key_column}, settings, updated_at) VALUES (?, ?, ?) "
                f"ON CONFLICT ({key_column}) DO UPDATE SET settings = excluded.settings, "
                "updated_at = excluded.updated_at",
                (key, to_json(current), self._clock()),
            )
        return {**defaults, **current}
