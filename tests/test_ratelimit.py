"""bot/ratelimit.py: discord.py's Cooldown buckets per member and per server, and the wording of a
refusal. A settable clock stands in for time; the buckets themselves are discord.py's real ones."""

from __future__ import annotations

import pytest

from bot.limits import server_rates as guild_rates
from bot.ratelimit import Rate, RateLimited, RateLimiter
from bot.settings import Settings, SettingsError
from engine.errors import UserInputError
from engine.store import Store


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(user: Rate, guild: Rate, clock: Clock) -> RateLimiter:
    return RateLimiter(user, guild, clock=clock)


def test_user_bucket_empties_then_refills_after_its_period() -> None:
    clock = Clock()
    rl = limiter(Rate(2, 60), Rate(0), clock)
    assert rl.hit("alice", 1) is None and rl.hit("alice", 1) is None
    clock.now += 18
    refused = rl.hit("alice", 1)
    assert isinstance(refused, RateLimited) and refused.scope == "user"
    assert refused.retry_after == pytest.approx(42.0)  # the window opened at the first hit
    clock.now += 41.5
    assert rl.hit("alice", 1) is not None  # still half a second early
    clock.now += 1.0
    assert rl.hit("alice", 1) is None  # refilled in full
    assert rl.hit("alice", 1) is None
    assert rl.hit("alice", 1) is not None


def test_members_have_their_own_budget_shared_by_every_server_and_dms() -> None:
    clock = Clock()
    rl = limiter(Rate(1, 60), Rate(0), clock)
    assert rl.hit("alice", 1) is None
    assert rl.hit("alice", 1) is not None
    assert rl.hit("bob", 1) is None  # bob is not slowed down by alice
    # alice cannot go around her budget on another server or in DMs (issue 14)
    assert rl.hit("alice", 2) is not None and rl.hit("alice", None) is not None
    dm_first = limiter(Rate(1, 60), Rate(0), clock)
    assert dm_first.hit("carol", None) is None and dm_first.hit("carol", 1) is not None


def test_a_server_can_only_lower_the_operators_rate() -> None:
    clock = Clock()
    rl = limiter(Rate(2, 60), Rate(0), clock)
    # a server asking for more than the operator allows gets the operator's rate
    assert rl.hit("alice", 1, user_rate=Rate(100, 60)) is None
    assert rl.hit("alice", 1, user_rate=Rate(100, 60)) is None
    refused = rl.hit("alice", 1, user_rate=Rate(100, 60))
    assert refused is not None and "limit 2 per minute" in refused.message()
    # a stricter server rate applies on that server, on top of the member's own budget
    assert rl.hit("bob", 5, user_rate=Rate(1, 60)) is None
    strict = rl.hit("bob", 5, user_rate=Rate(1, 60))
    assert strict is not None and "limit 1 per minute" in strict.message()
    assert rl.hit("bob", 6) is None  # elsewhere bob still has the operator's second token


def test_a_refusal_is_told_once_per_wait() -> None:
    clock = Clock()
    rl = limiter(Rate(1, 60), Rate(0), clock)
    assert rl.first_refusal("alice", 30.0) and not rl.first_refusal("alice", 30.0)
    assert rl.first_refusal("bob", 30.0)
    clock.now += 30.5
    assert rl.first_refusal("alice", 30.0)


def test_server_limit_counts_every_member_together() -> None:
    clock = Clock()
    rl = limiter(Rate(5, 60), Rate(3, 60), clock)
    assert [rl.hit(user, 7) for user in ("alice", "bob", "carol")] == [None, None, None]
    clock.now += 10
    refused = rl.hit("dave", 7)  # dave's own bucket is full, the server's is not
    assert refused is not None and refused.scope == "guild"
    assert refused.retry_after == pytest.approx(50.0)
    assert "server" in refused.message() and "try again in 50 s" in refused.message()
    assert rl.hit("dave", 8) is None  # another server is unaffected
    assert rl.hit("dave", None) is None  # DMs have no server budget


def test_a_refused_request_takes_no_token_from_the_other_bucket() -> None:
    clock = Clock()
    rl = limiter(Rate(1, 60), Rate(2, 60), clock)
    assert rl.hit("alice", 1) is None
    assert rl.hit("alice", 1).scope == "user"  # refused: the server bucket must keep its token
    assert rl.hit("bob", 1) is None
    assert rl.hit("carol", 1).scope == "guild"


def test_the_longest_wait_is_reported() -> None:
    clock = Clock()
    rl = limiter(Rate(1, 30), Rate(1, 60), clock)
    assert rl.hit("alice", 1) is None
    refused = rl.hit("alice", 1)
    assert refused.scope == "guild" and refused.retry_after == pytest.approx(60.0)


def test_looking_without_charging_keeps_the_token() -> None:
    clock = Clock()
    rl = limiter(Rate(1, 60), Rate(0), clock)
    assert rl.hit("alice", 1, charge=False) is None
    assert rl.hit("alice", 1, charge=False) is None
    assert rl.hit("alice", 1) is None
    assert rl.hit("alice", 1, charge=False) is not None


def test_zero_disables_and_overrides_win() -> None:
    clock = Clock()
    rl = limiter(Rate(0), Rate(0), clock)
    assert all(rl.hit("alice", 1) is None for _ in range(100))
    assert rl.hit("bob", 1, user_rate=Rate(1, 60)) is None  # e.g. a server's /admin limits
    refused = rl.hit("bob", 1, user_rate=Rate(1, 60))
    assert refused is not None and "limit 1 per minute" in refused.message()
    # a server admin raising the rate re-creates the bucket with the new size
    assert rl.hit("bob", 1, user_rate=Rate(3, 60)) is None


def test_idle_buckets_are_dropped() -> None:
    clock = Clock()
    rl = limiter(Rate(1, 60), Rate(10, 60), clock)
    for n in range(50):
        rl.hit(f"user{n}", 1)
    assert len(rl) == 51
    clock.now += RateLimiter.PRUNE_EVERY + 1
    rl.hit("late", 2)
    assert len(rl) == 2  # only the two buckets just used are left


@pytest.mark.parametrize(
    ("retry_after", "rate", "expected"),
    [
        (41.2, Rate(5, 60), "You're making tracks quickly — try again in 42 s (limit 5 per minute)."),
        (0.3, Rate(1, 30), "try again in 1 s (limit 1 per 30 s)"),
        (90.0, Rate(10, 3600), "try again in 1 min 30 s (limit 10 per hour)"),
        (120.0, Rate(2, 180), "try again in 2 min (limit 2 per 3 min)"),
    ],
)
def test_retry_after_text(retry_after: float, rate: Rate, expected: str) -> None:
    assert expected in RateLimited("user", retry_after, rate).message()


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("5 per 60 seconds", Rate(5, 60)),
        ("5 per minute", Rate(5, 60)),
        ("5/60", Rate(5, 60)),
        ("5/min", Rate(5, 60)),
        ("100 per 1 hour", Rate(100, 3600)),
        ("3 per 30 s", Rate(3, 30)),
        ("0", Rate(0)),
        ("off", Rate(0)),
        ("0 per 60 seconds", Rate(0)),
    ],
)
def test_rate_parsing(text: str, rate: Rate) -> None:
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["five per minute", "5", "5 per fortnight", "5 per 0 seconds", "-1/60"])
def test_bad_rates_say_what_is_expected(text: str) -> None:
    with pytest.raises(UserInputError):
        Rate.parse(text)


def test_settings_read_rates_from_the_environment() -> None:
    settings = Settings.from_env({"TEXTUNES_USER_RATE": "2 per 10 seconds", "TEXTUNES_GUILD_RATE": "0"})
    assert settings.user_rate == Rate(2, 10) and not settings.guild_rate.enabled
    defaults = Settings.from_env({})
    assert defaults.user_rate.enabled and defaults.guild_rate.enabled
    with pytest.raises(SettingsError, match="TEXTUNES_USER_RATE"):
        Settings.from_env({"TEXTUNES_USER_RATE": "lots"})


def test_only_rates_an_admin_set_override(tmp_path) -> None:
    store = Store.open(tmp_path / "t.db")
    try:
        assert guild_rates(store, 5) == (None, None)  # the store's built-in defaults do not count
        assert guild_rates(store, None) == (None, None)
        store.set_guild_settings(5, user_jobs_per_minute=3)
        assert guild_rates(store, 5) == (Rate(3, 60), None)
        store.set_guild_settings(5, guild_jobs_per_minute=40, user_jobs_per_minute=None)
        assert guild_rates(store, 5) == (None, Rate(40, 60))
    finally:
        store.close()
