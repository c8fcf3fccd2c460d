"""Rate limits for music-making actions: per member and per server, with a "try again in N s" answer.

The buckets are discord.py's own ``app_commands.Cooldown`` (``rate`` tokens per ``per`` seconds; the
window starts at the first use and refills in full when it ends) rather than hand-written ones:
it is the token bucket ``@app_commands.checks.cooldown`` uses, so it behaves like every other
discord.py bot. We do not use the decorator itself because one limit must span every interaction
that makes music (``/bgm``, ``/bgm-from-text``, the track buttons, the modal and the 🔁 reaction,
which is no interaction at all) and a server's ``/admin limits`` may change the rate at runtime.

A member has one budget wherever they ask (every server and DMs), a server has one for all its
members, and a server whose admin set a stricter per-member rate adds that bucket on top: servers
can lower the operator's rates, never raise them (``stricter``).

Buckets live in memory, so a restart forgives everyone; that is fine for a limit meant to smooth
bursts (the per-member job cap and the queue cap still hold across restarts through the engine).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from discord.app_commands import Cooldown

from engine.limits import parse_rate


@dataclass(frozen=True)
class Rate:
    """``count`` actions per ``per`` seconds; ``count == 0`` means no limit."""

    count: int
    per: float = 60.0

    @property
    def enabled(self) -> bool:
        return self.count > 0 and self.per > 0

    def describe(self) -> str:
        """Human wording: "5 per minute", "1 per 30 s", "100 per hour", "no limit"."""
        if not self.enabled:
            return "no limit"
        for seconds, unit in ((3600.0, "hour"), (60.0, "minute")):
            if self.per == seconds:
                return f"{self.count} per {unit}"
        return f"{self.count} per {_wait_text(self.per)}"

    @classmethod
    def parse(cls, text: str, name: str = "rate") -> Rate:
        """ "5 per 60 seconds", "5 per minute", "5/60", "5/min", "30 per 1 hour"; "0" or "off": no limit."""
        count, per = parse_rate(text, name)  # the one rate grammar (engine.limits)
        return cls(count, per) if count > 0 else cls(0)


def _wait_text(seconds: float) -> str:
    """42 → "42 s", 90 → "1 min 30 s", 120 → "2 min" (rounded up: never tell someone to come back early)."""
    whole = max(1, math.ceil(seconds - 1e-9))
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


@dataclass(frozen=True)
class RateLimited:
    """A refusal: who hit which limit, and how long until a token is back."""

    scope: str  # "user" | "guild"
    retry_after: float
    rate: Rate

    def message(self) -> str:
        wait = _wait_text(self.retry_after)
        if self.scope == "guild":
            return (
                f"This server is making a lot of tracks right now — try again in {wait} "
                f"(server limit {self.rate.describe()})."
            )
        return f"You're making tracks quickly — try again in {wait} (limit {self.rate.describe()})."


def stricter(operator: Rate, server: Rate | None) -> Rate:
    """The lower of two rates (a server may only lower the operator's); 0 (off) is the highest."""
    if server is None or not server.enabled:
        return operator
    if not operator.enabled:
        return server
    return server if server.count / server.per < operator.count / operator.per else operator


class RateLimiter:
    """One budget per member (shared by every server and DMs), one per server, and a stricter
    per-member one on a server whose admin lowered the rate. ``hit`` takes a token from all or none."""

    PRUNE_EVERY = 300.0  # seconds between sweeps of full (idle) buckets, so memory stays bounded

    def __init__(self, user_rate: Rate, guild_rate: Rate, *, clock: Callable[[], float] = time.monotonic):
        self.user_rate = user_rate
        self.guild_rate = guild_rate
        self._clock = clock
        self._buckets: dict[tuple, Cooldown] = {}
        self._told: dict[str, float] = {}  # user id -> until when a private refusal was already sent
        self._last_prune = clock()

    def _bucket(self, key: tuple, rate: Rate) -> Cooldown:
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate.count or bucket.per != rate.per:
            bucket = self._buckets[key] = Cooldown(rate.count, rate.per)  # new or re-configured by /admin
        return bucket

    def hit(
        self,
        user_id: int | str,
        guild_id: int | str | None,
        *,
        user_rate: Rate | None = None,
        guild_rate: Rate | None = None,
        charge: bool = True,
    ) -> RateLimited | None:
        """None when the action may go ahead (and, with ``charge``, count it); else why not.

        ``user_rate``/``guild_rate`` are a server's own rates: they apply only where lower than the
        operator's. ``charge=False`` only looks (an early check before slow work that is charged
        when it really starts).
        """
        # Cooldown reads a falsy time as "use time.time()": keep a test clock that starts at 0 valid
        now = max(self._clock(), 1e-6)
        checks: list[tuple[str, Cooldown, Rate]] = []
        if self.user_rate.enabled:  # keyed by the member alone: other servers and DMs share it
            checks.append(("user", self._bucket(("user", str(user_id)), self.user_rate), self.user_rate))
        member = stricter(self.user_rate, user_rate)
        if member is not self.user_rate and member.enabled and guild_id is not None:
            checks.append(("user", self._bucket(("member", str(guild_id), str(user_id)), member), member))
        guild = stricter(self.guild_rate, guild_rate)
        if guild.enabled and guild_id is not None:  # DMs have no server budget
            checks.append(("guild", self._bucket(("guild", str(guild_id)), guild), guild))
        # the longest wait is the true one; look at every bucket before taking from any
        empty = [
            RateLimited(scope, bucket.get_retry_after(now), rate)
            for scope, bucket, rate in checks
            if bucket.get_tokens(now) <= 0
        ]
        if empty:
            return max(empty, key=lambda refusal: refusal.retry_after)
        if charge:
            for _scope, bucket, _rate in checks:
                bucket.update_rate_limit(now)
        self._prune(now)
        return None

    def first_refusal(self, user_id: int | str, retry_after: float) -> bool:
        """True the first time ``user_id`` is refused within ``retry_after`` s (tell once, not per 🔁)."""
        now = self._clock()
        key = str(user_id)
        if self._told.get(key, float("-inf")) > now:
            return False
        self._told[key] = now + retry_after
        return True

    def _prune(self, now: float) -> None:
        if now - self._last_prune < self.PRUNE_EVERY:
            return
        self._last_prune = now
        for key in [k for k, b in self._buckets.items() if b.get_tokens(now) >= b.rate]:
            del self._buckets[key]
        for key in [k for k, until in self._told.items() if until <= now]:
            del self._told[key]

    def __len__(self) -> int:
        return len(self._buckets)


def limiter_for(bot: Any) -> RateLimiter:
    """The bot's limiter, made from its settings on first use (kept as ``bot.rate_limiter``)."""
    limiter = getattr(bot, "rate_limiter", None)
    if limiter is None:
        settings = bot.settings
        limiter = RateLimiter(
            getattr(settings, "user_rate", Rate(0)), getattr(settings, "guild_rate", Rate(0))
        )
        bot.rate_limiter = limiter
    return limiter
