"""ddm=multilevel on p parts: the fine level through halo_sync's exchange, coarse levels on the restricted
partition or replicated; the same trajectory as one process, every level's communication accounted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnddm.config import compose
from gnnddm.ddm import build_algorithm, build_objective
from gnnddm.ddm.objective import Objective
from gnnddm.errors import ConfigError
from gnnddm.partition.overlap import build_partition
from gnnddm.tasks import ForecastTask
from gnnddm.testing.gallery import comm_for, grid_data, real_models, to_dtype

MODELS = real_models()
CYCLE = ["ddm=multilevel", "ddm.levels=3", "ddm.pre_smooth=[0,1]", "ddm.post_smooth=[1,2,3]",
         "optimizer.lr=0.01"]


def _objective(parts: int, overlap: int = 1, data=None):
    """The 16 x 32 grid cut into ``parts`` contiguous bands of node ids (overlap 0 with one part): (objective,
    task, a float64 batch)."""
    data = grid_data(16, 32, neighbours=8) if data is None else data
    labels = (np.arange(data.num_nodes) * parts // data.num_nodes).astype(np.int64)
    partition = build_partition(data.edge_index, data.num_nodes, labels, overlap if parts > 1 else 0)
    task = ForecastTask(data)
    objective = Objective(data, partition)
    return objective, task, to_dtype(task.batch(np.arange(2)), torch.float64)


def _multilevel(overrides, parts: int, model: str = "sage", seed: int = 0, overlap: int = 1, data=None):
    """(algorithm, batch): ``overrides``' algorithm on :func:`_objective`'s problem, and its batch."""
    objective, task, batch = _objective(parts, overlap, data)
    cfg = compose(overrides)
    made = build_objective(cfg.ddm, objective.data, objective.partition)
    torch.manual_seed(seed)
    kw = {"residual": True} if model == "sage" else {}
    if model in ("gatv2", "interaction"):
        kw["edge_dim"] = 3
    net = MODELS[model](task.in_channels, task.out_channels, hidden=8, layers=3, **kw).double()
    comm, acc = comm_for(made)
    return build_algorithm(cfg.ddm, cfg.optimizer, net, made, comm), batch


def _run(algo, batch, steps: int = 3) -> list[dict]:
    return [algo.step(batch) for _ in range(steps)]


@pytest.mark.parametrize("parts", [3, 8])
@pytest.mark.parametrize("distribution", ["partition", "replicate"])
def test_p_parts_follow_the_one_process_trajectory(parts, distribution):
    """float64: the same losses, ρ tests and parameters as the whole graph in one process."""
    data = grid_data(32, 32, neighbours=8)  # 8 x 8 nodes on level 2: a band of them for each of 8 parts
    one, batch = _multilevel(CYCLE, parts=1, data=data)
    many, _ = _multilevel([*CYCLE, f"ddm.coarse_distribution={distribution}"], parts=parts, data=data)
    for a, b in zip(_run(one, batch), _run(many, batch), strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-10)
        assert b["accepted"] == a["accepted"] and b["rho"] == pytest.approx(a["rho"], rel=1e-7)
    torch.testing.assert_close(many.flat(), one.flat(), rtol=1e-9, atol=1e-11)
    assert float((one.flat() - _multilevel(CYCLE, parts=1, data=data)[0].flat()).abs().max()) > 1e-4  # it trained


@pytest.mark.parametrize("name", ["gcn", "gatv2", "interaction"])
def test_every_model_with_stages_is_exact_on_parts(name):
    one, batch = _multilevel(CYCLE, parts=1, model=name)
    many, _ = _multilevel(CYCLE, parts=4, model=name)
    _run(one, batch, 2), _run(many, batch, 2)
    torch.testing.assert_close(many.flat(), one.flat(), rtol=1e-9, atol=1e-11)


def test_a_coarse_level_per_distribution_and_the_communication_of_each():
    """Partitioned levels exchange halos and reduce; replicated ones do neither but count p copies of their work."""
    overrides = [*CYCLE, "ddm.globalization=none"]
    part, batch = _multilevel([*overrides, "ddm.coarse_distribution=partition"], parts=4)
    repl, _ = _multilevel([*overrides, "ddm.coarse_distribution=replicate"], parts=4)
    mixed, _ = _multilevel([*overrides, "ddm.coarse_distribution=[partition,replicate]"], parts=4)
    assert mixed.distribution == ["partition", "partition", "replicate"]
    for algo in (part, repl, mixed):
        algo.step(batch)
    # evaluations of one cycle (3 layers: 2 halo exchanges forward, 2 backward; 1 all-reduce each):
    # fine: g at θ_a and one post-smoothing gradient (no ρ test with globalization none); level 1: the
    # coherence gradient, its pre-smoothing step reuses it, the gradient before the recursion, 2 post steps,
    # h-values after the recursion and at its end; level 2: coherence gradient (reused by its pre step), 3
    # post steps, the h-value at its end
    grads, values = [2, 1 + 1 + 2, 1 + 3], [0, 2, 1]
    halo_rounds = {"grad": 2 * 2 + 1, "value": 2 + 1}
    for algo in (part, repl, mixed):
        halo = [level for level, d in enumerate(algo.distribution) if d != "replicate"]
        assert algo.accounting.total["rounds"] == sum(
            grads[lv] * halo_rounds["grad"] + values[lv] * halo_rounds["value"] for lv in halo)
        work = [loss.work for loss in algo.level_losses]
        total = algo.accounting.total
        assert total["grad_evals"] == pytest.approx(sum(g * w for g, w in zip(grads, work, strict=True)))
        assert total["loss_evals"] == pytest.approx(sum(v * w for v, w in zip(values, work, strict=True)))
    n = part.objective.num_nodes
    for level in (1, 2):
        n_c = part.objective.coarse[level - 1]["num_clusters"]
        assert repl.level_losses[level].work == pytest.approx(4 * n_c / n)  # 4 copies of the whole level
        plan = part.level_losses[level]  # owned + halo rows of the 4 parts: every node once, plus the halos
        assert n_c / n < plan.work <= 3 * n_c / n
    torch.testing.assert_close(part.flat(), repl.flat(), rtol=1e-10, atol=1e-12)


def test_the_fine_level_work_and_the_halo_bytes_are_those_of_halo_sync():
    from gnnddm.ddm.halo_sync import HaloSync

    algo, batch = _multilevel(["ddm=multilevel", "ddm.levels=1", "ddm.post_smooth=1"], parts=4)
    objective = algo.objective
    comm, acc = comm_for(objective)
    halo = HaloSync(_multilevel(CYCLE, parts=4)[0].model, objective, comm,
                    lambda params: torch.optim.Adam(params, lr=0.01))
    algo.step(batch), halo.step(batch)
    for key in ("rounds", "comm_bytes", "grad_evals"):
        assert algo.accounting.total[key] == pytest.approx(halo.accounting.total[key], rel=1e-12), key


def test_a_restricted_partition_that_leaves_a_part_empty_names_the_key():
    data = grid_data(8, 16, neighbours=8)  # level 2: 2 x 4 = 8 nodes for 12 parts
    with pytest.raises(ConfigError, match=r"ddm.coarse_distribution: coarse level 2 has 8 nodes.*replicate"):
        _multilevel(CYCLE, parts=12, data=data)
    algo, batch = _multilevel([*CYCLE, "ddm.coarse_distribution=[partition,replicate]"], parts=12, data=data)
    assert np.isfinite(algo.step(batch)["loss"])


@pytest.mark.parametrize("value,match", [("ddm.coarse_distribution=scatter", "expected one of"),
                                         ("ddm.coarse_distribution=[partition,replicate,partition]", "1 to 2")])
def test_bad_distributions_name_the_key(value, match):
    with pytest.raises(ConfigError, match=rf"ddm.coarse_distribution: .*{match}"):
        _multilevel([*CYCLE, value], parts=4)


def test_parts_need_a_one_hop_overlap_and_a_model_with_stages():
    with pytest.raises(ConfigError, match="partition.overlap"):
        _multilevel(CYCLE, parts=4, overlap=0)


def test_work_on_parts_is_timed_per_part_and_not_again_as_every_rank_s():
    """A level on parts times each part between its exchanges; timing it again as common work (every rank
    alike) would count its compute twice and its exchanges as compute."""
    algo, batch = _multilevel([*CYCLE, "ddm.coarse_distribution=[partition,replicate]", "ddm.globalization=none"],
                       parts=4)
    common, per_part = [], []
    algo.accounting.add_common = lambda seconds: common.append(seconds)
    algo.accounting.add_compute = lambda part, seconds: per_part.append(part)
    algo.step(batch)
    # common: the replicated level 2's four timed blocks (coherence gradient, pre-smoothing solve,
    # post-smoothing solve, its value), the restriction of level 1's batch before each of its evaluations
    # (1 + 1 + 2 gradients, 2 values), the fine post-smoothing optimizer step; nothing for the fine level's
    # or level 1's own evaluations
    assert len(common) == 4 + 6 + 1
    assert set(per_part) == {0, 1, 2, 3}
