"""engine.store's async face: calls run on the store's own thread, errors propagate, order is kept."""

from __future__ import annotations

import asyncio
import inspect
import threading
from pathlib import Path

import pytest

from bot.delivery.ledger import DeliveryLedger
from engine.store import AsyncStore, SettingsError, Store, StoreError, spec_to_request
from engine.store.aio import public_methods
from tests.test_store import SPEC, make_track


class ThreadRecordingClock:
    """A strictly increasing clock that notes which thread asked for the time (store writes do)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.threads: set[str] = set()

    def __call__(self) -> float:
        self.threads.add(threading.current_thread().name)
        self.now += 1.0
        return self.now


@pytest.fixture
def clock() -> ThreadRecordingClock:
    return ThreadRecordingClock()


@pytest.fixture
def store(tmp_path: Path, clock: ThreadRecordingClock):
    s = Store.open(tmp_path / "textunes.db", clock=clock)
    clock.threads.clear()  # opening ran on the test's thread
    yield s
    s.close()


def request() -> dict:
    return spec_to_request(SPEC, samples=1, seed=3)


def test_every_public_method_has_an_awaitable_twin_with_its_signature() -> None:
    names = public_methods(Store, skip=("close", "connection", "transaction"))
    assert {"create_job", "get_job", "add_track", "load_track", "mark_done", "enforce_retention",
            "sweep_orphan_files", "set_guild_settings", "add_guild_preset", "complete_guild_presets"} <= set(names)  # fmt: skip
    assert "close" not in names and "open" not in names and "aio" not in names
    assert not hasattr(AsyncStore, "connection")  # a context manager under the lock: sync only
    for name in names:
        twin = getattr(AsyncStore, name)
        assert inspect.iscoroutinefunction(twin), name
        assert twin.__doc__ == getattr(Store, name).__doc__
        assert inspect.signature(twin) == inspect.signature(getattr(Store, name))


async def test_methods_run_on_the_stores_own_thread(store: Store, clock: ThreadRecordingClock) -> None:
    job = await store.aio.create_job(user_id="u1", request=request(), guild_id=7)
    await store.aio.mark_running(job.id)
    assert (await store.aio.get_job(job.id)).state == "running"
    assert len(clock.threads) == 1
    (store_thread,) = clock.threads
    assert store_thread.startswith("textunes-store") and store_thread != threading.current_thread().name
    # not asyncio's default pool, which text analysis shares
    default_pool_thread = await asyncio.to_thread(lambda: threading.current_thread().name)
    assert default_pool_thread != store_thread
    assert store.aio is store.aio  # one face per store


async def test_two_stores_have_two_threads(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a.db") as a, Store.open(tmp_path / "b.db") as b:
        thread_a = await a.aio.call(threading.get_ident)
        thread_b = await b.aio.call(threading.get_ident)  # both threads are alive: ids are distinct
        assert thread_a != thread_b
        assert thread_a == await a.aio.call(threading.get_ident)


async def test_exceptions_propagate_and_the_thread_survives(store: Store) -> None:
    with pytest.raises(KeyError, match="no job 'missing'"):
        await store.aio.update_job("missing", state="done")
    with pytest.raises(SettingsError, match="Unknown audio format"):
        await store.aio.set_user_settings("u1", format="flac")
    assert (await store.aio.set_user_settings("u1", format="ogg"))["format"] == "ogg"


async def test_concurrent_calls_are_serialised_in_order(store: Store, clock: ThreadRecordingClock) -> None:
    jobs = await asyncio.gather(
        *(store.aio.create_job(user_id=f"u{i}", request=request(), job_id=f"job{i:03d}") for i in range(120))
    )
    # one thread, first come first served: creation times follow the order the calls were made
    assert [j.id for j in sorted(jobs, key=lambda j: j.created_at)] == [f"job{i:03d}" for i in range(120)]
    assert len(clock.threads) == 1
    # many tasks racing for one delivery claim (the bot's ledger, on the store's thread): one wins
    target = jobs[0].id
    await store.aio.mark_done(target)
    ledger = await store.aio.call(DeliveryLedger.open, store)
    await store.aio.call(ledger.record, target, user_id="u0", channel_id=6)
    claims = await asyncio.gather(*(store.aio.call(ledger.claim_delivery, target) for _ in range(60)))
    assert claims.count(True) == 1
    # read-modify-write from many tasks at once loses nothing
    record = await store.aio.add_track(target, make_track(seconds=0.2), fmt="wav")
    favs = await asyncio.gather(*(store.aio.set_favorite(f"fan{i}", record.id) for i in range(40)))
    assert all(favs)
    assert sum([await store.aio.is_favorite(f"fan{i}", record.id) for i in range(40)]) == 40


async def test_a_busy_store_thread_blocks_neither_the_loop_nor_the_default_pool(store: Store) -> None:
    release = threading.Event()
    busy = asyncio.ensure_future(store.aio.call(release.wait, 10.0))
    queued = asyncio.ensure_future(store.aio.get_job("x"))
    await asyncio.sleep(0.05)
    assert not busy.done() and not queued.done()  # the store call waits behind the busy one
    assert await asyncio.wait_for(asyncio.to_thread(lambda: 41 + 1), 5.0) == 42  # default pool is free
    release.set()
    assert await asyncio.wait_for(busy, 5.0) is True
    assert await asyncio.wait_for(queued, 5.0) is None


async def test_a_closed_store_refuses_async_calls(store: Store) -> None:
    await store.aio.get_job("x")  # the executor exists
    store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.aio.get_job("x")
