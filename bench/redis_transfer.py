"""Benchmark: what moving a batch of results through Redis costs on this machine, with none of our code.

    .venv/bin/python bench/redis_transfer.py            # 8 results per batch of 3 KB, 156 KB, 625 KB
    .venv/bin/python bench/redis_transfer.py --split    # each result in its own transaction

A writer process does what a worker does with a finished batch (one MULTI of eight XADDs) and a
reader process what the bot does (a blocking XREADGROUP with its acks in the same round trip),
through a redis-server on a free local port. Columns: the writer's round trip, and when the reader
had the whole batch, both from the moment the writer started (``time.time()`` on one host). It
is the floor under ``bench/broker.py``'s "broker added" for the same bytes: that also pays for the
dispatch leg and the wire format.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PER_BATCH = 8


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def reader(url: str, batches: int, out) -> None:
    import redis.asyncio as aioredis

    async def main() -> None:
        r = aioredis.Redis.from_url(url)
        acks: list = []
        complete = []
        for _ in range(batches):
            got = 0
            while got < PER_BATCH:
                async with r.pipeline(transaction=False) as pipe:
                    if acks:
                        pipe.xack("results", "frontend", *acks)
                    pipe.xreadgroup("frontend", "bot", {"results": ">"}, count=32, block=2000)
                    reply = (await pipe.execute())[-1]
                acks = [entry_id for _s, entries in reply or [] for entry_id, _f in entries]
                got += len(acks)
            complete.append(time.time())
        out.put(complete)
        await r.aclose()

    asyncio.run(main())


async def write_batch(r, payload: bytes, split: bool) -> None:
    """One MULTI of eight XADDs, as a worker writes results that are ready together; ``split``: one
    MULTI per result, all sent at once on separate connections."""

    async def write(count: int) -> None:
        async with r.pipeline(transaction=True) as pipe:
            for _ in range(count):
                pipe.xadd("results", {"result": b"{}", "audio:0": payload})
            await pipe.execute()

    if split:
        await asyncio.gather(*(write(1) for _ in range(PER_BATCH)))
    else:
        await write(PER_BATCH)


async def measure(url: str, size: int, batches: int, split: bool = False) -> tuple[list[float], list[float]]:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    await r.delete("results")
    await r.xgroup_create("results", "frontend", id="0", mkstream=True)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=reader, args=(url, batches, out))
    proc.start()
    await asyncio.sleep(2.0)  # the reader is up and blocked
    payload = os.urandom(size)
    starts, writes = [], []
    for _ in range(batches):
        await asyncio.sleep(0.1)
        t0 = time.time()
        await write_batch(r, payload, split)
        starts.append(t0)
        writes.append((time.time() - t0) * 1000)
    complete = out.get(timeout=60)
    proc.join(10)
    await r.aclose()
    read = [(done - t0) * 1000 for t0, done in zip(starts, complete, strict=True)]
    return writes[3:], read[3:]  # the first batches pay connection and first-call costs


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--sizes", default="3000,160000,640000", help="bytes per result")
    parser.add_argument("--split", action="store_true", help="each result in its own transaction")
    args = parser.parse_args()
    from tests.redis_server import RedisServer

    server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-transfer-")))
    print(f"redis-server on {server.url}; {PER_BATCH} results per batch "
          f"({'one transaction each' if args.split else 'one transaction'}), {args.batches} batches; "
          f"{os.cpu_count()} CPUs\n")  # fmt: skip
    head = (
        f"{'per result':>10} {'per batch':>10} {'write p50/p95 ms':>17} {'reader has all p50/p90/p95 ms':>30}"
    )
    print(head)
    print("-" * len(head))
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            writes, read = await measure(server.url, size, args.batches, args.split)
            print(f"{size / 1024:>7.0f} KB {size * PER_BATCH / 1024:>7.0f} KB "
                  f"{statistics.median(writes):>8.1f} / {pct(writes, 95):>6.1f} "
                  f"{statistics.median(read):>12.1f} / {pct(read, 90):>6.1f} / {pct(read, 95):>6.1f}")  # fmt: skip
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
