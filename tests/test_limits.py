"""One Limits: the operator's caps from the environment; a server's overrides can only lower them."""

from __future__ import annotations

import pytest

from engine.errors import UserInputError
from engine.limits import Limits, LimitsError, check_override, parse_rate, resolve_limits


def test_from_env_reads_the_textunes_variables() -> None:
    limits = Limits.from_env(
        {
            "TEXTUNES_MAX_JOBS_PER_USER": "3",
            "TEXTUNES_MAX_QUEUE": "10",
            "TEXTUNES_MAX_DURATION": "90",
            "TEXTUNES_MAX_SAMPLES": "2",
            "TEXTUNES_MAX_FILE_BYTES": "500000",
            "TEXTUNES_USER_RATE": "5 per minute",
            "TEXTUNES_GUILD_RATE": "off",
            "TEXTUNES_MAX_TOTAL_QUEUE": "",
        }
    )
    assert limits == Limits(
        max_duration=90.0,
        max_samples=2,
        jobs_per_user=3,
        queue_size=10,
        user_rate=(5, 60.0),
        guild_rate=(0, 0.0),
        max_file_bytes=500_000,
    )
    assert Limits.from_env({}) == Limits()  # .env.example's defaults


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TEXTUNES_MAX_QUEUE", "lots", "TEXTUNES_MAX_QUEUE must be a number"),
        ("TEXTUNES_MAX_SAMPLES", "0", "must be positive"),
        ("TEXTUNES_MAX_DURATION", "600", "between 5 and 180"),
        ("TEXTUNES_USER_RATE", "often", "TEXTUNES_USER_RATE must look like"),
    ],
)
def test_from_env_names_the_bad_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(LimitsError, match=message):
        Limits.from_env({name: value})


def test_parse_rate_forms() -> None:
    assert parse_rate("5 per 60 seconds") == (5, 60.0)
    assert parse_rate("5/min") == (5, 60.0)
    assert parse_rate("30 per 1 hour") == (30, 3600.0)
    assert parse_rate("0") == (0, 0.0)
    with pytest.raises(UserInputError):
        parse_rate("5 per fortnight")


def test_a_server_cannot_raise_an_operator_cap() -> None:
    operator = Limits(max_duration=60, max_samples=2, jobs_per_user=2, queue_size=20, user_rate=(6, 60.0))
    with pytest.raises(UserInputError, match="the operator allows at most 60 seconds"):
        check_override(operator, "max_duration", 120)
    with pytest.raises(UserInputError, match="the operator allows at most 2"):
        check_override(operator, "max_samples", "4")
    with pytest.raises(UserInputError, match="the operator allows at most 20"):
        check_override(operator, "queue_size", 50)
    with pytest.raises(UserInputError, match="at most 6 per minute"):
        check_override(operator, "user_jobs_per_minute", 10)
    with pytest.raises(UserInputError, match="whole number"):
        check_override(operator, "jobs_per_user", 1.5)
    with pytest.raises(UserInputError, match="Unknown limit"):
        check_override(operator, "max_everything", 1)
    assert check_override(operator, "max_duration", "30") == 30.0
    assert check_override(operator, "queue_size", 5) == 5
    assert check_override(operator, "user_jobs_per_minute", 6) == 6
    assert check_override(operator, "guild_jobs_per_minute", 30) == 30  # the default 30 per minute
    with pytest.raises(UserInputError, match="at most 30 per minute"):
        check_override(operator, "guild_jobs_per_minute", 500)
    assert check_override(operator, "max_samples", None) is None  # reset to the operator's value


def test_rates_compare_per_second_whatever_the_period() -> None:
    hourly = Limits(user_rate=(90, 3600.0), guild_rate=(0, 0.0))  # 1.5 per minute; no server limit
    assert check_override(hourly, "user_jobs_per_minute", 1) == 1
    with pytest.raises(UserInputError, match="at most 1 per minute"):
        check_override(hourly, "user_jobs_per_minute", 2)
    assert check_override(hourly, "guild_jobs_per_minute", 1000) == 1000  # off: any limit lowers it
    rare = Limits(user_rate=(1, 300.0))
    with pytest.raises(UserInputError, match="already stricter than 1 per minute"):
        check_override(rare, "user_jobs_per_minute", 1)


def test_resolve_limits_only_lowers() -> None:
    operator = Limits(max_duration=60, max_samples=2, jobs_per_user=2, queue_size=20, user_rate=(6, 60.0))
    lowered = resolve_limits(
        operator,
        {"max_duration": 30, "queue_size": 5, "user_jobs_per_minute": 3, "guild_jobs_per_minute": 10},
    )
    assert (lowered.max_duration, lowered.queue_size, lowered.max_samples) == (30.0, 5, 2)
    assert lowered.user_rate == (3, 60.0) and lowered.guild_rate == (10, 60.0)
    # values saved before the operator lowered a cap (or by hand) never raise it
    raised = resolve_limits(
        operator,
        {"max_duration": 180, "max_samples": 8, "jobs_per_user": 20, "user_jobs_per_minute": 100},
    )
    assert raised == operator
    assert resolve_limits(operator, {"queue_size": None, "max_samples": "junk"}) == operator
    assert resolve_limits(operator, {}) is operator


def test_the_bots_engine_bound_is_the_global_queue_not_one_servers(tmp_path):
    """TEXTUNES_MAX_QUEUE is per server (service.admit); the engine's own bound is the total queue,
    so one busy server cannot make the engine refuse every other server."""
    from bot.bot import create_bot
    from bot.settings import Settings

    settings = Settings(
        data_dir=tmp_path,
        backend="arranger",
        worker="thread",
        max_queue=3,
        max_total_queue=40,
        per_user_jobs=2,
        max_samples=4,
    )
    bot = create_bot(settings)
    try:
        assert bot.engine.config.max_queue == 40
        assert bot.engine.config.per_user_limit == 2
        assert bot.service.limits.queue_size == 3
    finally:
        bot.store.close()
