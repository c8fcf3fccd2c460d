"""Limits in one place: the operator's caps (environment) and a server's overrides, which can only lower them.

``Limits.from_env`` reads the ``TEXTUNES_*`` variables documented in ``.env.example``;
``resolve_limits`` applies a server's stored ``/admin limits`` values (each capped at the operator's);
``check_override`` validates one ``/admin limits`` value before anything is saved and says what the
operator allows when a server asks for more. The engine's admission check (``engine.service``)
enforces the resolved value, so the command that accepted a setting is the one that enforces it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from engine.errors import UserInputError
from engine.prompt import MAX_DURATION, MIN_DURATION

__all__ = [
    "OVERRIDE_KEYS",
    "Limits",
    "LimitsError",
    "check_override",
    "describe_rate",
    "parse_rate",
    "resolve_limits",
]

RateTuple = tuple[int, float]  # (count, per seconds); count 0 = no limit

_UNITS = {
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0, "초": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0, "분": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0, "시간": 3600.0,
}  # fmt: skip
# one pass, no nested quantifiers: linear in the (short, length-capped) input
_RATE = re.compile(r"(\d{1,9})\s*(?:per|/)\s*(\d{1,9}(?:\.\d{1,6})?)?\s*([a-z초분시간]{1,10})?")

# the server settings (store keys, per-minute rates) that /admin limits may set, and their bounds
OVERRIDE_KEYS = (
    "jobs_per_user",
    "queue_size",
    "max_duration",
    "max_samples",
    "user_jobs_per_minute",
    "guild_jobs_per_minute",
)
_INTEGER_KEYS = frozenset(OVERRIDE_KEYS) - {"max_duration"}


class LimitsError(UserInputError):
    """A limit is malformed or above what the operator allows (the message says which and why)."""


def parse_rate(text: str | int, name: str = "rate") -> RateTuple:
    """ "5 per 60 seconds", "5 per minute", "5/60", "5/min", "30 per 1 hour" → (count, seconds);
    "0" or "off" → (0, 0.0), no limit."""
    raw = " ".join(str(text).strip().lower().split())[:60]
    if raw in ("0", "off", "none", "no", "false"):
        return (0, 0.0)
    match = _RATE.fullmatch(raw)
    unit = (match.group(3) if match else None) or "s"
    if match is None or unit not in _UNITS:
        raise LimitsError(
            f"{name} must look like '5 per 60 seconds' (or '5/60', '5 per minute'; 0 turns it off), "
            f"got {str(text)[:60]!r}."
        )
    count = int(match.group(1))
    per = float(match.group(2) or 1) * _UNITS[unit]
    if count > 0 and per <= 0:
        raise LimitsError(f"{name}: the period must be longer than 0 seconds, got {str(text)[:60]!r}.")
    return (count, per) if count > 0 else (0, 0.0)


def _rate_enabled(rate: RateTuple) -> bool:
    return rate[0] > 0 and rate[1] > 0


def _per_second(rate: RateTuple) -> float:
    return rate[0] / rate[1] if _rate_enabled(rate) else math.inf


def describe_rate(rate: RateTuple) -> str:
    """ "6 per minute", "100 per hour", "1 per 30 s", "no limit"."""
    count, per = rate
    if not _rate_enabled(rate):
        return "no limit"
    for seconds, unit in ((3600.0, "hour"), (60.0, "minute")):
        if per == seconds:
            return f"{count} per {unit}"
    return f"{count} per {per:g} s"


def env_text(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value, stripped; None when unset or blank."""
    value = env.get(name)
    return value.strip() if value is not None and value.strip() else None


def env_number(env: Mapping[str, str], name: str, fallback: Any, kind: type = int) -> Any:
    """A positive ``kind`` from the variable (``fallback`` when unset); ``LimitsError`` naming it."""
    raw = env_text(env, name)
    if raw is None:
        return fallback
    try:
        value = kind(raw)
    except ValueError:
        raise LimitsError(f"{name} must be a number, got {raw[:40]!r}.") from None
    if not value > 0:
        raise LimitsError(f"{name} must be positive, got {raw[:40]!r}.")
    return value


@dataclass(frozen=True)
class Limits:
    """The operator's caps (from the environment) or one server's effective limits."""

    max_duration: float = 120.0  # seconds a member may ask for
    max_samples: int = 4  # takes per request
    jobs_per_user: int = 2  # queued + running (+ analysing) requests per member
    queue_size: int = 50  # requests waiting per server (not global)
    user_rate: RateTuple = (6, 60.0)  # music-making actions per member (per server)
    guild_rate: RateTuple = (30, 60.0)  # ... and per server
    max_file_bytes: int = 2_000_000  # documents for text mode
    total_queue: int = 1000  # requests waiting in the whole engine (a memory bound, all servers)

    def __post_init__(self) -> None:
        for name in ("max_samples", "jobs_per_user", "queue_size", "max_file_bytes", "total_queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LimitsError(f"{name} must be a whole number of at least 1, got {value!r}.")
        if not (math.isfinite(self.max_duration) and MIN_DURATION <= self.max_duration <= MAX_DURATION):
            raise LimitsError(
                f"max_duration must be between {MIN_DURATION:g} and {MAX_DURATION:g} seconds, "
                f"got {self.max_duration!r}."
            )
        for name in ("user_rate", "guild_rate"):
            count, per = getattr(self, name)
            if count < 0 or per < 0 or (count > 0 and per <= 0):
                raise LimitsError(f"{name} must be (count, seconds) with both >= 0, got {(count, per)!r}.")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """The operator's caps from ``TEXTUNES_MAX_JOBS_PER_USER``, ``TEXTUNES_MAX_QUEUE``,
        ``TEXTUNES_MAX_DURATION``, ``TEXTUNES_MAX_SAMPLES``, ``TEXTUNES_MAX_FILE_BYTES``,
        ``TEXTUNES_USER_RATE``, ``TEXTUNES_GUILD_RATE`` and ``TEXTUNES_MAX_TOTAL_QUEUE``
        (unset or empty: the defaults above). Raises ``LimitsError`` naming the bad variable."""
        env = os.environ if env is None else env
        default = cls()

        def number(name: str, fallback: Any, kind: type = int) -> Any:
            return env_number(env, name, fallback, kind)

        def rate(name: str, fallback: RateTuple) -> RateTuple:
            raw = env_text(env, name)
            return fallback if raw is None else parse_rate(raw, name)

        duration = number("TEXTUNES_MAX_DURATION", default.max_duration, float)
        if not MIN_DURATION <= duration <= MAX_DURATION:
            raise LimitsError(
                f"TEXTUNES_MAX_DURATION must be between {MIN_DURATION:g} and {MAX_DURATION:g} seconds, "
                f"got {duration:g}."
            )
        return cls(
            max_duration=duration,
            max_samples=number("TEXTUNES_MAX_SAMPLES", default.max_samples),
            jobs_per_user=number("TEXTUNES_MAX_JOBS_PER_USER", default.jobs_per_user),
            queue_size=number("TEXTUNES_MAX_QUEUE", default.queue_size),
            user_rate=rate("TEXTUNES_USER_RATE", default.user_rate),
            guild_rate=rate("TEXTUNES_GUILD_RATE", default.guild_rate),
            max_file_bytes=number("TEXTUNES_MAX_FILE_BYTES", default.max_file_bytes),
            total_queue=number("TEXTUNES_MAX_TOTAL_QUEUE", default.total_queue),
        )

    def engine_caps(self) -> dict[str, int]:
        """``EngineConfig`` fields that must agree with these caps: ``EngineConfig(..., **caps)``.
        The engine's own queue bound is the global one; per-server queues are checked by ``admit``."""
        return {
            "max_queue": self.total_queue,
            "per_user_limit": self.jobs_per_user,
            "max_samples": self.max_samples,
        }

    def as_settings(self) -> dict[str, Any]:
        """These limits in the store's ``/admin limits`` vocabulary (rates as whole per-minute counts,
        None when off), e.g. to show a server what is enforced."""
        return {
            "jobs_per_user": self.jobs_per_user,
            "queue_size": self.queue_size,
            "max_duration": self.max_duration,
            "max_samples": self.max_samples,
            "user_jobs_per_minute": _per_minute(self.user_rate),
            "guild_jobs_per_minute": _per_minute(self.guild_rate),
        }


def _per_minute(rate: RateTuple) -> int | None:
    """The whole per-minute count a server may set at most without raising ``rate`` (None: no cap)."""
    if not _rate_enabled(rate):
        return None
    return math.floor(rate[0] * 60.0 / rate[1] + 1e-9)


def _as_number(key: str, value: Any) -> float | int:
    if isinstance(value, bool):
        raise LimitsError(f"{key} must be a number, got {value!r}.")
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise LimitsError(f"{key} must be a number, got {str(value)[:40]!r}.") from None
    if not math.isfinite(number) or number <= 0:
        raise LimitsError(f"{key} must be a positive number, got {str(value)[:40]!r}.")
    if key in _INTEGER_KEYS:
        if number != int(number):
            raise LimitsError(f"{key} must be a whole number, got {str(value)[:40]!r}.")
        return int(number)
    return number


def check_override(operator: Limits, key: str, value: Any) -> Any:
    """Validate one ``/admin limits`` value against the operator's caps; returns the cleaned value.

    Raises ``LimitsError`` (a ``UserInputError``) before anything is saved: unknown key, not a
    number, or above the operator's cap ("the operator allows at most N"). ``None`` (reset to the
    operator's value) is always allowed.
    """
    if key not in OVERRIDE_KEYS:
        raise LimitsError(f"Unknown limit '{str(key)[:40]}'. Known: {', '.join(OVERRIDE_KEYS)}.")
    if value is None:
        return None
    number = _as_number(key, value)
    if key == "max_duration":
        if number < MIN_DURATION:
            raise LimitsError(f"max_duration must be at least {MIN_DURATION:g} seconds, got {number:g}.")
        if number > operator.max_duration:
            raise LimitsError(
                f"max_duration: the operator allows at most {operator.max_duration:g} seconds "
                f"(asked for {number:g}). A server can only lower it."
            )
        return number
    if key in ("user_jobs_per_minute", "guild_jobs_per_minute"):
        rate = operator.user_rate if key == "user_jobs_per_minute" else operator.guild_rate
        cap = _per_minute(rate)
        if cap is not None and number > cap:
            if cap == 0:
                raise LimitsError(
                    f"{key}: the operator's limit ({describe_rate(rate)}) is already stricter than "
                    "1 per minute, so a server cannot set one."
                )
            raise LimitsError(
                f"{key}: the operator allows at most {cap} per minute"
                + (f" ({describe_rate(rate)})" if rate[1] != 60.0 else "")
                + f"; asked for {number}. A server can only lower it."
            )
        return number
    cap = {
        "jobs_per_user": operator.jobs_per_user,
        "queue_size": operator.queue_size,
        "max_samples": operator.max_samples,
    }[key]
    if number > cap:
        raise LimitsError(
            f"{key}: the operator allows at most {cap} (asked for {number}). A server can only lower it."
        )
    return number


def resolve_limits(operator: Limits, overrides: Mapping[str, Any]) -> Limits:
    """The operator's caps lowered by a server's overrides (store keys as in ``OVERRIDE_KEYS``).

    A value that is missing, None, malformed or higher than the operator's cap (say, saved before
    the operator lowered it) leaves the operator's value: the result is never above ``operator``.
    """
    changes: dict[str, Any] = {}
    for key in ("jobs_per_user", "queue_size", "max_samples", "max_duration"):
        raw = overrides.get(key)
        if raw is None:
            continue
        try:
            number = _as_number(key, raw)
        except LimitsError:
            continue
        if key == "max_duration":
            number = max(float(number), MIN_DURATION)
        changes[key] = min(getattr(operator, key), number)
    for key, field_name in (("user_jobs_per_minute", "user_rate"), ("guild_jobs_per_minute", "guild_rate")):
        raw = overrides.get(key)
        if raw is None:
            continue
        try:
            per_minute = int(_as_number("user_jobs_per_minute", raw))  # a whole count either way
        except LimitsError:
            continue
        mine: RateTuple = (per_minute, 60.0)
        if _per_second(mine) < _per_second(getattr(operator, field_name)):
            changes[field_name] = mine
    return replace(operator, **changes) if changes else operator
