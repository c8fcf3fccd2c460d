"""Tail sharing's cost model and split decision, on made-up clocks (no engine, no sleeping)."""

from __future__ import annotations

import pytest

from engine.sharing import BatchCost, BatchRecord, TailSharing


def test_batch_cost_needs_two_sizes_then_fits_fixed_and_per_track_seconds():
    cost = BatchCost()
    for _ in range(5):
        cost.observe(5.0, 8, 0.9)
    assert cost.estimate(5.0) is None  # one size only: fixed and per-track cost cannot be told apart
    cost.observe(5.0, 1, 0.55)
    fixed, per_track = cost.estimate(5.0)
    assert fixed == pytest.approx(0.5, abs=1e-6) and per_track == pytest.approx(0.05, abs=1e-6)
    assert cost.estimate(30.0) is None and cost.estimate(None) is None


def taught(fixed: float, per_track: float) -> TailSharing:
    sharing = TailSharing()
    for tracks in (1, 8, 8, 8):
        sharing.cost.observe(5.0, tracks, fixed + per_track * tracks)
    return sharing


def running(*starts: float, tracks: int = 8) -> list[BatchRecord]:
    return [BatchRecord(f"w{n}", start, tracks, 5.0) for n, start in enumerate(starts, start=1)]


def test_the_last_eight_tracks_are_split_over_peers_about_to_finish():
    sharing = taught(0.5, 0.05)
    # three peers started their 0.9-s batches with ours, 10-20 ms later: they are free about now
    peers = running(99.11, 99.115, 99.12)
    assert sharing.share("w0", 5.0, 8, 8, peers, now=100.0) == 2
    # a deep queue is not split: every peer's batch is full anyway
    assert sharing.share("w0", 5.0, 64, 8, peers, now=100.0) == 8
    # peers that just started a batch are 0.9 s away: taking all eight finishes sooner
    assert sharing.share("w0", 5.0, 8, 8, running(99.99, 99.99, 99.99), now=100.0) == 8


def test_no_split_without_a_cost_estimate_or_when_size_costs_nothing():
    peers = running(99.1, 99.1, 99.1)
    assert TailSharing().share("w0", 5.0, 8, 8, peers, now=100.0) == 8
    # a GPU-like cost, almost all fixed: smaller batches would not finish meaningfully sooner
    assert taught(0.9, 0.001).share("w0", 5.0, 8, 8, peers, now=100.0) == 8


def test_idle_peers_count_until_handed_work_and_stale_readiness_is_ignored():
    sharing = taught(0.5, 0.05)
    sharing.ended(BatchRecord("w1", 99.0, 8, 5.0), completed=True, now=99.95)
    assert sharing.share("w0", 5.0, 8, 8, [], now=100.0) == 4  # w1 is idle: half each
    sharing.handed("w1", now=100.0)
    assert sharing.share("w0", 5.0, 8, 8, [], now=100.0) == 8
    # a result that arrives after its worker was already handed new work does not make it idle
    sharing.ended(BatchRecord("w1", 99.0, 8, 5.0), completed=True, now=100.01)
    assert sharing.share("w0", 5.0, 8, 8, [], now=100.0) == 8
