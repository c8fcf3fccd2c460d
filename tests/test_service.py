"""MusicService end to end: real arranger engine, real sqlite store, real analysis sandbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile

from engine.errors import UserInputError
from engine.jobs import EngineConfig, JobCancelled, JobEngine, JobFailed
from engine.limits import Limits
from engine.prompt import build_spec
from engine.service import (
    Analysed,
    Analysing,
    Cancelled,
    DocumentRequest,
    Done,
    Failed,
    MusicRequest,
    MusicService,
    Progress,
    Queued,
    Requester,
    RetentionPolicy,
    Started,
    new_job_id,
)
from engine.store import Store, spec_to_request
from engine.text.sandbox import AnalysisSandbox, SandboxLimits
from tests.sandbox_inputs import LoopLag, slow_pdf

FIXTURES = Path(__file__).parent / "fixtures"
HAPPY = FIXTURES / "happy_en.txt"
WALL = 2.0
ALICE = Requester("111", guild_id="900", channel_id="901")


def spec(seconds: float = 5, genre: str = "Lofi"):
    return build_spec(genres=(genre,), moods=("Calm",), tempo="Slow", duration=seconds)


@pytest.fixture(scope="module")
def sandbox():
    box = AnalysisSandbox(SandboxLimits(wall_seconds=WALL))
    asyncio.run(box.start())
    yield box
    asyncio.run(box.close())


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "textunes.db") as db:
        yield db


def make_service(store, sandbox=None, limits: Limits | None = None, **kw) -> MusicService:
    limits = limits or Limits()
    engine = JobEngine(EngineConfig(backend="arranger", worker="thread", **limits.engine_caps()))
    return MusicService(store, engine, limits=limits, analysis=sandbox, **kw)


@pytest.fixture
async def service(store, sandbox):
    svc = make_service(store, sandbox)
    await svc.start()
    yield svc
    svc.analysis = None  # the module's sandbox outlives this service
    await svc.close()


async def outputs(handle) -> list:
    return [out async for out in handle]


async def test_a_category_request_streams_outputs_and_stores_its_tracks(service, store) -> None:
    handle = await service.submit(ALICE, MusicRequest(spec=spec(5), samples=2, seed=7, title="Lofi · Calm"))
    seen = await asyncio.wait_for(outputs(handle), 60)
    kinds = [type(o) for o in seen]
    assert kinds[0] in (Queued, Started) and Started in kinds and kinds[-1] is Done
    assert all(o.job_id == handle.job_id for o in seen)
    assert [o.percent for o in seen if isinstance(o, Progress)][-1] == 100
    records = seen[-1].tracks
    assert len(records) == 2 and records == await handle.result()
    for record in records:
        assert record.format == "mp3" and record.path.is_file() and record.seed is not None
        assert abs(record.duration - 5.0) < 0.01
    job = store.get_job(handle.job_id)
    assert job.state == "done" and job.user_id == "111" and job.guild_id == "900"
    assert job.request["title"] == "Lofi · Calm" and job.attempts == 1
    assert [r.id for r in store.tracks_of_job(handle.job_id)] == [r.id for r in records]
    # a late subscriber gets the story replayed (only the latest of a run of progress outputs)
    again = await asyncio.wait_for(outputs(handle), 5)
    collapsed = [k for i, k in enumerate(kinds) if not (k is Progress and kinds[i + 1] is Progress)]
    assert [type(o) for o in again] == collapsed and again[-1].tracks == records
    assert service.handle(handle.job_id) is None  # nothing left in flight


async def test_document_requests_from_text_and_bytes(service, store) -> None:
    pasted = await service.submit(ALICE, DocumentRequest(text=HAPPY.read_text(encoding="utf-8")))
    upload = await service.submit(
        ALICE, DocumentRequest(data=HAPPY.read_bytes(), filename="happy.txt", duration="0:10", tempo="Fast")
    )
    for handle, seconds in ((pasted, 15.0), (upload, 10.0)):
        seen = await asyncio.wait_for(outputs(handle), 90)
        kinds = [type(o) for o in seen]
        assert kinds[:2] == [Analysing, Analysed] and Started in kinds and kinds[-1] is Done, kinds
        analysed = seen[1]
        assert analysed.title == "Music for “A Summer Festival by the Sea”"
        assert analysed.summary["language"] == "en" and analysed.summary["summary"]
        assert analysed.summary["topic"]["name"] and analysed.summary["emotion"]["label"]
        record = seen[-1].tracks[0]
        assert abs(record.duration - seconds) < 0.01
        assert record.analysis["emotion"] == analysed.summary["emotion"]
        job = store.get_job(handle.job_id)
        assert job.kind == "text" and job.state == "done" and job.spec.duration == seconds
        assert job.request["analysis"]["language"] == "en" and job.request["title"] == analysed.title
    assert store.get_job(upload.job_id).spec.tempo == "Fast"


async def test_a_bad_document_fails_with_a_friendly_message_and_nothing_sticks(service, store) -> None:
    handle = await service.submit(
        ALICE, DocumentRequest(data=(FIXTURES / "random_bytes.txt").read_bytes(), filename="notes.txt")
    )
    seen = await asyncio.wait_for(outputs(handle), 30)
    assert [type(o) for o in seen] == [Analysing, Failed]
    failed = seen[-1]
    assert failed.reason == "input" and "text" in failed.message.lower() and "Traceback" not in failed.message
    with pytest.raises(JobFailed):
        await handle.result()
    job = store.get_job(handle.job_id)
    assert job.state == "failed" and job.error == failed.message
    assert service.handle(handle.job_id) is None
    await service.admit(ALICE)  # nothing counted against the user any more
    ok = await service.submit(
        ALICE, DocumentRequest(text="A quiet walk by the lake at dusk. The birds sang.")
    )
    assert isinstance((await asyncio.wait_for(outputs(ok), 60))[-1], Done)


async def test_an_analysis_timeout_fails_that_request_only_and_the_loop_stays_responsive(
    service, store
) -> None:
    async with LoopLag() as lag:
        slow = await service.submit(ALICE, DocumentRequest(data=slow_pdf(), filename="shared.pdf"))
        seen = await asyncio.wait_for(outputs(slow), WALL + 10)
    assert isinstance(seen[-1], Failed) and f"within {WALL:g} s" in seen[-1].message
    assert store.get_job(slow.job_id).state == "failed"
    assert lag.p99() < 0.050, f"event-loop lag p99 {lag.p99() * 1000:.1f} ms over {len(lag.lags)} probes"
    after = await service.submit(ALICE, DocumentRequest(data=HAPPY.read_bytes(), filename="happy.txt"))
    assert isinstance((await asyncio.wait_for(outputs(after), 90))[-1], Done)


async def test_cancel_a_queued_and_a_running_request(service, store) -> None:
    first = await service.submit(ALICE, MusicRequest(spec=spec(120), samples=4))
    second = await service.submit(ALICE, MusicRequest(spec=spec(90, "Jazz")))
    assert not await service.cancel(second.job_id, user_id="someone else")
    assert await second.cancel()
    assert [type(o) for o in await asyncio.wait_for(outputs(second), 10)][-1] is Cancelled
    with pytest.raises(JobCancelled):
        await second.result()
    assert store.get_job(second.job_id).state == "cancelled"
    async for out in first:
        if isinstance(out, Started):
            break
    assert await service.cancel(first.job_id, user_id="111")
    assert isinstance((await asyncio.wait_for(outputs(first), 10))[-1], Cancelled)
    assert store.get_job(first.job_id).state == "cancelled" and store.tracks_of_job(first.job_id) == []
    assert not await service.cancel(first.job_id)  # already over


async def test_a_users_format_setting_decides_the_stored_format(service, store) -> None:
    store.set_user_settings("222", format="ogg")
    ogg = await service.submit(Requester("222", "900"), MusicRequest(spec=spec(5)))
    mp3 = await service.submit(Requester("333", "900"), MusicRequest(spec=spec(5)))
    (ogg_track,), (mp3_track,) = await ogg.result(), await mp3.result()
    assert ogg_track.format == "ogg" and ogg_track.path.suffix == ".ogg"
    assert soundfile.info(str(ogg_track.path)).format == "OGG"
    assert mp3_track.format == "mp3" and mp3_track.path.suffix == ".mp3"


async def test_musicgen_tracks_are_stored_in_every_format_a_user_can_pick(store, tiny_musicgen_dir) -> None:
    # MusicGen makes 32 kHz mono: a shape the arranger's tests never send to the encoders
    # (Vorbis refuses the default 192k for it)
    engine = JobEngine(EngineConfig(backend="musicgen", model=str(tiny_musicgen_dir), device="cpu",
                                    dtype="float32", worker="thread", **Limits().engine_caps()))  # fmt: skip
    svc = MusicService(store, engine, limits=Limits())
    await svc.start()
    try:
        for n, fmt in enumerate(("ogg", "mp3", "wav")):
            store.set_user_settings(f"50{n}", format=fmt)
            handle = await svc.submit(Requester(f"50{n}", "900"), MusicRequest(spec=spec(5)))
            (track,) = await handle.result()
            info = soundfile.info(str(track.path))
            assert track.format == fmt and info.samplerate == 32_000 and info.channels == 1
            assert abs(info.duration - 5.0) < 0.1
    finally:
        await svc.close()


async def test_a_loop_request_gets_its_exact_length_and_no_seam(service, store) -> None:
    store.set_user_settings("444", format="wav")  # an encoder's padding would hide the seam
    handle = await service.submit(Requester("444", "900"), MusicRequest(spec=spec(8), loop=True))
    (record,) = await handle.result()
    audio, rate = soundfile.read(str(record.path), dtype="float32", always_2d=True)
    assert audio.shape[0] == 8 * rate  # the model made the crossfade's second on top
    twice = np.concatenate([audio, audio]).T
    step = np.abs(np.diff(twice, axis=1)).max(axis=0)
    assert step[audio.shape[0] - 1] <= np.percentile(step, 99.5)


async def test_the_service_default_format_applies_when_the_user_chose_none(store) -> None:
    svc = make_service(store, audio_format="ogg")
    await svc.start()
    try:
        (track,) = await (await svc.submit(ALICE, MusicRequest(spec=spec(5)))).result()
        assert track.format == "ogg"
    finally:
        await svc.close()


async def test_start_recovers_unfinished_and_reports_given_up(store) -> None:
    queued = store.create_job(user_id="1", request=spec_to_request(spec(5), title="Old"))
    crashed = store.create_job(user_id="2", request=spec_to_request(spec(5)))
    store.update_job(crashed.id, state="running", attempts=3)
    reading = store.create_job(user_id="3", kind="text", request={"title": "Music for your text"})
    posted = store.create_job(user_id="4", request=spec_to_request(spec(5)))
    store.mark_done(posted.id)  # tracks stored: whatever its front end did with it, never regenerated
    svc = make_service(store)
    recovery = await svc.start()
    try:
        assert [h.job_id for h in recovery.resumed] == [queued.id]
        (record,) = await asyncio.wait_for(recovery.resumed[0].result(), 60)
        assert record.job_id == queued.id and store.get_job(queued.id).state == "done"
        assert {j.id for j in recovery.gave_up} == {crashed.id, reading.id}
        assert (
            store.get_job(crashed.id).state == "failed"
            and "interrupted 3 times" in store.get_job(crashed.id).error
        )
        assert "send it again" in store.get_job(reading.id).error
        assert store.get_job(posted.id).state == "done" and store.tracks_of_job(posted.id) == []
        await svc.close()
        again = await svc.start()  # everything settled: nothing resumed, nothing given up twice
        assert again.resumed == [] and again.gave_up == []
    finally:
        await svc.close()


async def test_submit_takes_the_job_id_its_front_end_made(store) -> None:
    # a front end keys its own records by the id first, so a crash in between loses no job
    svc = make_service(store)
    await svc.start()
    try:
        with pytest.raises(ValueError, match="hex"):
            await svc.submit(ALICE, MusicRequest(spec=spec(5)), job_id="../../etc")
        job_id = new_job_id()
        handle = await svc.submit(ALICE, MusicRequest(spec=spec(5)), job_id=job_id)
        assert handle.job_id == job_id and store.get_job(job_id).user_id == "111"
        await asyncio.wait_for(handle.result(), 60)
        with pytest.raises(ValueError, match="already exists"):  # one id, one job
            await svc.submit(ALICE, MusicRequest(spec=spec(5)), job_id=job_id)
        assert store.get_job(job_id).state == "done"
    finally:
        await svc.close()


async def test_admit_counts_each_servers_own_queue(store) -> None:
    store.set_guild_settings("A", queue_size=1)
    svc = make_service(store)
    await svc.start()
    try:
        busy = await svc.submit(Requester("1", "A"), MusicRequest(spec=spec(120), samples=4))
        async for out in busy:  # the only worker is busy with it for seconds
            if isinstance(out, Started):
                break
        waiting = await svc.submit(Requester("2", "A"), MusicRequest(spec=spec(5)))
        async for out in waiting:
            assert isinstance(out, Queued) and out.position == 1
            break
        assert svc.queue_position(waiting.job_id) == 1
        with pytest.raises(UserInputError, match=r"queue is full \(1 jobs\)"):
            await svc.admit(Requester("3", "A"))
        await svc.admit(Requester("3", "B"))  # another server's queue is its own
        other = await svc.submit(Requester("3", "B"), MusicRequest(spec=spec(5)))
        assert other.job_id in {j.id for j in await svc.jobs_of("3")}
        for handle in (busy, waiting, other):
            await handle.cancel()
    finally:
        await svc.close()


async def test_admit_refuses_duration_samples_and_jobs_over_the_cap_before_anything_is_recorded(
    store,
) -> None:
    store.set_guild_settings("A", max_duration=30, jobs_per_user=1)
    svc = make_service(store, limits=Limits(max_duration=120, max_samples=4, jobs_per_user=2))
    await svc.start()
    try:
        alice_a = Requester("1", "A")
        with pytest.raises(UserInputError, match="at most 0:30"):
            await svc.admit(alice_a, duration=60)
        await svc.admit(Requester("1", "B"), duration=60)  # only server A lowered it
        with pytest.raises(UserInputError, match="at most 2:00"):
            await svc.admit(Requester("1", None), duration=150)  # DMs: the operator's cap
        with pytest.raises(UserInputError, match="between 1 and 4"):
            await svc.admit(alice_a, samples=5)
        with pytest.raises(UserInputError, match="at most 0:30"):
            await svc.submit(alice_a, MusicRequest(spec=spec(60)))
        with pytest.raises(UserInputError, match="at most 0:30"):
            await svc.submit(alice_a, DocumentRequest(text="Some words here.", duration="1:00"))
        with pytest.raises(UserInputError, match=r"big.txt is 2.1 MB; the limit is 2.0 MB"):
            await svc.submit(alice_a, DocumentRequest(data=b"words " * 350_000, filename="big.txt"))
        for seed in (-1, 2**64):  # numpy's generator refuses the one, sqlite's INTEGER the other
            with pytest.raises(UserInputError, match="A seed is a whole number from 0 to"):
                await svc.submit(alice_a, MusicRequest(spec=spec(5), seed=seed))
        assert store.jobs_of("1", states=("queued", "running", "failed", "done", "cancelled")) == []
        first = await svc.submit(alice_a, MusicRequest(spec=spec(30)))
        with pytest.raises(UserInputError, match="the limit is 1"):
            await svc.submit(alice_a, MusicRequest(spec=spec(5)))
        await first.result()
    finally:
        await svc.close()


async def test_retention_runs_at_start_and_keeps_favourites(store) -> None:
    svc = make_service(store)
    await svc.start()
    kept, *others = await (await svc.submit(ALICE, MusicRequest(spec=spec(5), samples=3))).result()
    await svc.close()
    store.set_favorite(ALICE.user_id, kept.id)
    assert store.stored_bytes() > kept.bytes
    svc = make_service(store, retention=RetentionPolicy(max_bytes=1))
    await svc.start()
    try:
        assert store.stored_bytes() == kept.bytes + kept.midi_bytes
        assert store.get_track(kept.id).available
        assert all(not store.get_track(r.id).available for r in others)
    finally:
        await svc.close()


async def test_a_shutdown_leaves_the_job_resumable_and_the_next_start_finishes_it(store) -> None:
    svc = make_service(store)
    await svc.start()
    handle = await svc.submit(ALICE, MusicRequest(spec=spec(120), samples=4, title="Long one"))
    async for out in handle:
        if isinstance(out, Started):
            break
    await svc.close()
    last = (await asyncio.wait_for(outputs(handle), 10))[-1]
    assert isinstance(last, Failed) and last.reason == "shutdown"
    assert store.get_job(handle.job_id).state == "running"  # not failed: it is resumed on start
    svc = make_service(store)
    recovery = await svc.start()
    try:
        assert [h.job_id for h in recovery.resumed] == [handle.job_id]
        assert recovery.resumed[0].title == "Long one"
        records = await asyncio.wait_for(recovery.resumed[0].result(), 120)
        assert len(records) == 4 and store.get_job(handle.job_id).attempts == 2
    finally:
        await svc.close()


async def test_extend_and_variation_continue_a_stored_track(service, store) -> None:
    (original,) = await (await service.submit(ALICE, MusicRequest(spec=spec(9), seed=5))).result()
    extended = await service.submit(
        ALICE,
        MusicRequest(
            spec=spec(14),
            kind="extend",
            continue_from_track_id=original.id,
            extend_seconds=5,
            parent_track_id=original.id,
        ),
    )
    (longer,) = await asyncio.wait_for(extended.result(), 60)
    assert abs(longer.duration - 14.0) < 0.2
    varied = await service.submit(
        ALICE,
        MusicRequest(
            spec=spec(9),
            kind="variation",
            continue_from_track_id=original.id,
            keep_seconds=3.0,
            extend_seconds=6.0,
            parent_track_id=original.id,
        ),
    )
    (variation,) = await asyncio.wait_for(varied.result(), 60)
    assert abs(variation.duration - 9.0) < 0.2  # 3 s kept + 6 s new, not 9 + 6
    job = store.get_job(varied.job_id)
    assert job.kind == "variation" and job.parent_track_id == original.id
    assert job.request["keep_seconds"] == 3.0 and job.request["continue_from_track_id"] == original.id


async def test_a_looped_extension_is_its_exact_length(service, store) -> None:
    (original,) = await (await service.submit(ALICE, MusicRequest(spec=spec(9), seed=5))).result()
    request = MusicRequest(spec=spec(14), kind="extend", continue_from_track_id=original.id,
                           extend_seconds=5, parent_track_id=original.id, loop=True)  # fmt: skip
    (looped,) = await asyncio.wait_for((await service.submit(ALICE, request)).result(), 60)
    assert looped.duration == pytest.approx(original.duration + 5, abs=0.05)  # not 1 s short


async def test_set_limits_validates_against_the_operator_before_saving(store) -> None:
    svc = make_service(store, limits=Limits(max_duration=60, queue_size=20, user_rate=(6, 60.0)))
    with pytest.raises(UserInputError, match="the operator allows at most 60 seconds"):
        await svc.set_limits("A", queue_size=5, max_duration=120)
    assert svc.limits_for("A") == svc.limits  # nothing saved, not even the valid queue_size
    resolved = await svc.set_limits("A", queue_size=5, max_duration=30, user_jobs_per_minute=2)
    assert (resolved.queue_size, resolved.max_duration, resolved.user_rate) == (5, 30.0, (2, 60.0))
    assert svc.limits_for("A") == resolved and svc.limits_for("B") == svc.limits
    back = await svc.set_limits("A", max_duration=None)
    assert back.max_duration == 60.0 and back.queue_size == 5
