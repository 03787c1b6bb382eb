"""The accounting's arithmetic: the modelled time of an iteration and the multi-node network's price of each
kind of collective (gnnddm/distributed/accounting.py). Each algorithm's hand counts of one iteration are in
its tests/ddm/test_<name>.py."""

from __future__ import annotations

import pytest

from gnnddm.distributed.accounting import Accounting


def test_model_time_is_sum_over_phases_of_slowest_rank_plus_collective():
    acc = Accounting(alpha=0.5, beta=0.01)
    acc.add_compute(0, 1.0)
    acc.add_compute(1, 2.0)
    acc.add_compute(0, 0.5)           # rank 0: 1.5, rank 1: 2.0 -> 2.0
    acc.add_work(grad_evals=0.7)
    acc.collective(100)               # + 0.5 + 100 * 0.01
    acc.add_compute(2, 3.0)
    acc.add_common(0.25)              # every rank: + 0.25
    it = acc.end_iteration()          # last phase without collective
    assert it["model_time"] == pytest.approx(2.0 + 0.5 + 1.0 + 3.0 + 0.25)
    assert (it["rounds"], it["comm_bytes"], it["grad_evals"]) == (1, 100, 0.7)
    acc.collective(8)
    acc.end_iteration()
    multinode = 2 * 25e-6 + 108 / 12.5e9  # one party: the ring factor is 1
    assert acc.as_dict() == {"rounds": 2, "comm_bytes": 108, "grad_evals": 0.7, "loss_evals": 0.0,
                             "model_time": pytest.approx(6.75 + 0.5 + 0.08),
                             "model_time_multinode": pytest.approx(5.25 + multinode),
                             "compute_time": pytest.approx(5.25)}
    assert acc.iterations == 2


def test_the_multinode_network_prices_each_kind_of_collective():
    """α = 25 µs; ring all-reduce 2(p−1)/p·b/12.5e9, all-gather (p−1)/p·b/12.5e9, halo and broadcast b/12.5e9."""
    b, p = 1_000_000, 8
    expected = {"all_reduce": 2 * 7 / 8 * b / 12.5e9, "all_gather": 7 / 8 * b / 12.5e9,
                "broadcast": b / 12.5e9, "halo": b / 12.5e9}
    for kind, seconds in expected.items():
        acc = Accounting(alpha=1e-5, beta=1e-9)
        acc.collective(b, kind=kind, parties=p)
        it = acc.end_iteration()
        assert it["model_time_multinode"] == pytest.approx(25e-6 + seconds)
        assert it["model_time"] == pytest.approx(1e-5 + 1e-9 * b)  # the default model ignores the kind
    with pytest.raises(ValueError, match="kind"):
        Accounting().collective(8, kind="scatter")
