"""A server's effective limits, resolved in one place: the operator's caps lowered by /admin overrides.

The operator sets caps in the environment (``bot.settings.Settings``); a server's ``/admin limits``
can only lower them: ``check_override`` refuses a higher value before anything is saved, and
``guild_limits`` takes the lower of the two anyway (an override saved before a cap was lowered).
"""

from __future__ import annotations

from typing import Any

from bot.ratelimit import Rate, stricter
from engine import limits as engine_limits
from engine.errors import UserInputError
from engine.store import GUILD_DEFAULTS

# store key -> Settings attribute holding the operator's cap
CAPS = {
    "jobs_per_user": "per_user_jobs",
    "queue_size": "max_queue",
    "max_duration": "max_duration",
    "max_samples": "max_samples",
}
RATES = {"user_jobs_per_minute": "user_rate", "guild_jobs_per_minute": "guild_rate"}


def operator_caps(settings: Any) -> dict[str, Any]:
    """The operator's caps (from the environment); without settings, the store's defaults."""
    caps = {key: GUILD_DEFAULTS[key] for key in CAPS}
    for key, attr in CAPS.items():
        value = getattr(settings, attr, None)
        if value is not None:
            caps[key] = value
    return caps


def operator_rate(settings: Any, key: str) -> Rate:
    rate = getattr(settings, RATES[key], None)
    if rate is None:  # a host without settings: the store's per-minute default
        return Rate(int(GUILD_DEFAULTS[key]), 60.0)
    return rate


def per_minute(rate: Rate) -> str:
    return f"{rate.count * 60 / rate.per:g}" if rate.enabled else "no limit"


def guild_limits(store: Any, guild_id: int | str | None, settings: Any) -> dict[str, Any]:
    """Every limit as enforced here, plus the server's channel list: the operator's caps lowered by
    the server's overrides, resolved by ``engine.limits.resolve_limits`` (what the service enforces)."""
    own = store.guild_settings(guild_id, defaults=dict.fromkeys([*CAPS, *RATES]))
    limits: dict[str, Any] = {"allowed_channels": list(own.get("allowed_channels") or [])}
    if settings is not None:
        resolved = engine_limits.resolve_limits(operator_limits(settings), own)
        limits.update({key: getattr(resolved, key) for key in CAPS})
        limits["user_jobs_per_minute"] = Rate(*resolved.user_rate) if resolved.user_rate[0] else Rate(0)
        limits["guild_jobs_per_minute"] = Rate(*resolved.guild_rate) if resolved.guild_rate[0] else Rate(0)
        return limits
    # a host without operator settings (a bare cog host): the store's own ranges are the only caps
    for key, default in operator_caps(None).items():
        value = own.get(key)
        limits[key] = default if value is None else type(default)(value)
    for key in RATES:
        server = Rate(int(own[key]), 60.0) if own.get(key) else None
        limits[key] = stricter(operator_rate(None, key), server)
    return limits


def server_rates(store: Any, guild_id: int | str | None) -> tuple[Rate | None, Rate | None]:
    """The per-member and per-server rates a server's admin set (per minute), or None where unset."""
    if guild_id is None:
        return None, None
    own = store.guild_settings(guild_id, defaults=dict.fromkeys(RATES))
    user, guild = own.get("user_jobs_per_minute"), own.get("guild_jobs_per_minute")
    return (Rate(int(user), 60.0) if user else None, Rate(int(guild), 60.0) if guild else None)


def operator_limits(settings: Any) -> engine_limits.Limits:
    """The operator's caps as the engine's ``Limits`` (what ``MusicService`` enforces)."""

    def rate(value: Rate) -> tuple[int, float]:
        return (value.count, value.per) if value.enabled else (0, 0.0)

    return engine_limits.Limits(
        max_duration=float(settings.max_duration),
        max_samples=int(settings.max_samples),
        jobs_per_user=int(settings.per_user_jobs),
        queue_size=int(settings.max_queue),
        user_rate=rate(settings.user_rate),
        guild_rate=rate(settings.guild_rate),
        max_file_bytes=int(settings.max_file_bytes),
        total_queue=int(getattr(settings, "max_total_queue", 1000)),
    )


def check_override(settings: Any, key: str, value: Any) -> None:
    """Refuse (UserInputError) a server override above the operator's cap, before it is saved
    (``engine.limits.check_override``); a host without settings has only the store's ranges."""
    if value is None or settings is None:
        return
    engine_limits.check_override(operator_limits(settings), key, value)


def check_duration(limits: dict, seconds: float) -> None:
    """Refuse a duration over this server's limit (operator cap lowered by /admin)."""
    if seconds > float(limits["max_duration"]):
        raise UserInputError(
            f"This server allows tracks up to {limits['max_duration']:.0f} s; you asked for {seconds:.0f} s."
        )
