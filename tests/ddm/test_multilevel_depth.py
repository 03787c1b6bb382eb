"""ddm=multilevel in depth and in space × depth: every level first-order coherent with the corrected model
above through the cycle itself, the trust-region test on the prolongated step, the fine feasible set kept,
exact on parts, work per level, bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gnnddm.config import compose
from gnnddm.ddm import build_algorithm, build_objective
from gnnddm.ddm.objective import Objective
from gnnddm.errors import ConfigError
from gnnddm.models.sage import GraphSAGE
from gnnddm.partition.overlap import build_partition
from gnnddm.tasks import ForecastTask
from gnnddm.testing.algorithms import record_trust_region
from gnnddm.testing.gallery import comm_for, grid_data, to_dtype

DEPTH = ["ddm=multilevel", "ddm.depth_coarsening=true", "ddm.coarse_solver.lr=0.05", "ddm.radius0=1.0",
         "optimizer.lr=0.01"]


def _algorithm(overrides, parts: int = 1, layers: int = 8, residual: bool = True, seed: int = 0):
    """(algorithm, batch): residual GraphSAGE (``layers`` layers, hidden 8: ``layers`` − 2 residual ones) on
    the 8 x 16 grid, which allows two coarser grids; ``parts`` bands of node ids with a one-hop overlap; the
    batch to step it with."""
    data = grid_data(8, 16, neighbours=8)
    labels = (np.arange(data.num_nodes) * parts // data.num_nodes).astype(np.int64)
    partition = build_partition(data.edge_index, data.num_nodes, labels, 1 if parts > 1 else 0)
    task = ForecastTask(data)
    if "ddm=multilevel" in overrides and not any(o.startswith("ddm.post_smooth=") for o in overrides):
        overrides = [*overrides, "ddm.post_smooth=[1,2]"]
    cfg = compose(overrides)
    objective = build_objective(cfg.ddm, data, partition)
    batch = to_dtype(task.batch(np.arange(2)), torch.float64)
    torch.manual_seed(seed)
    model = GraphSAGE(task.in_channels, task.out_channels, hidden=8, layers=layers, residual=residual).double()
    comm, acc = comm_for(objective)
    return build_algorithm(cfg.ddm, cfg.optimizer, model, objective, comm), batch


def _gradient(net, loss_fn, theta):
    """∇loss_fn(θ) by autograd on the level's network ``net`` (flat); nothing accounted."""
    net.set_flat(theta)
    grads = torch.autograd.grad(loss_fn(net.model), net.params)
    return torch.cat([g.reshape(-1) for g in grads])


def _record_coherence(algo):
    """For every coarse model h_ℓ a cycle builds: ∇h_ℓ at its anchor, and what first-order coherence asks of
    it, Pᵀ∇h_{ℓ−1}(θ) at the point θ of the level above the cycle descended from (P = I on the same network;
    h_0 = f), both by autograd, with ∇f_ℓ(anchor) (the uncorrected coarse loss)."""
    build, descend = algo.coherent_model, algo.descend
    above = {}
    ups, seen = {}, []

    def record_descend(losses, level, theta, g_up, constraint):
        ups[level] = theta.clone()
        return descend(losses, level, theta, g_up, constraint)

    def record(losses, level, anchor, g_up):
        above[0] = algo.level_losses[0].on(losses)
        h, f_anchor = build(losses, level, anchor, g_up)
        net, up = algo.networks[level], algo.networks[level - 1]
        grad_above = _gradient(up, above[level - 1], ups[level])
        transfer = algo.transfers[level]
        wanted = grad_above if transfer is None else transfer.restrict_gradient(grad_above, algo.depth_prolongation)
        seen.append((level, _gradient(net, h, anchor), wanted, _gradient(net, h.loss_fn, anchor)))
        above[level] = h
        up.set_flat(ups[level])
        net.set_flat(anchor)
        return h, f_anchor

    algo.coherent_model, algo.descend = record, record_descend
    return seen


@pytest.mark.parametrize("schedule,pre,prolongation", [
    ("[depth]", "0", "constant"),
    ("[depth,depth]", "[0,1,1]", "linear"),
    ("[both]", "[0,1]", "constant"),
    ("[space,depth]", "[0,1,1]", "constant"),
    ("[depth,both,space]", "[0,1,1,1]", "linear"),
])
def test_every_level_of_a_depth_hierarchy_is_coherent_with_the_corrected_model_above(schedule, pre, prolongation):
    levels = schedule.count(",") + 2
    algo, batch = _algorithm([*DEPTH, f"ddm.levels={levels}", f"ddm.schedule={schedule}", f"ddm.pre_smooth={pre}",
                       f"ddm.depth_prolongation={prolongation}"])
    assert sum(t is not None for t in algo.transfers) == schedule.count("depth") + schedule.count("both")
    seen = _record_coherence(algo)
    for _ in range(2):
        seen.clear()
        algo.step(batch)
        assert [level for level, *_ in seen] == list(range(1, levels))
        for level, grad_h, wanted, grad_f in seen:
            torch.testing.assert_close(grad_h, wanted, rtol=1e-10, atol=1e-12,
                                       msg=lambda m, level=level: f"level {level}: {m}")
            assert not torch.allclose(grad_f, wanted, rtol=1e-3, atol=1e-6)  # the correction does real work


@pytest.mark.parametrize("schedule", ["[depth]", "[both]"])
def test_the_trust_region_test_predicts_with_the_corrected_coarse_network_and_steps_by_prolongation(schedule):
    """ρ's prediction is h_1(Rθ_a) − h_1(θ_c), h_1(z) = f_1(z) + ⟨Pᵀg − ∇f_1(Rθ_a), z − Rθ_a⟩ on the coarse
    network, and the fine step is P(θ_c − Rθ_a)."""
    algo, batch = _algorithm([*DEPTH, "ddm.levels=2", f"ddm.schedule={schedule}", "ddm.post_smooth=[1,3]"])
    tests, cycles = record_trust_region(algo)  # two levels: every cycle is level 1's
    losses = algo.objective.on(batch)
    net, transfer = algo.networks[1], algo.transfers[1]
    f, f1 = algo.level_losses[0].on(losses), algo.level_losses[1].on(losses)
    for _ in range(3):
        tests.clear()
        cycles.clear()
        theta_a = algo.flat()
        stats = algo.step(batch)
        [(actual, predicted)], [(anchor, theta_c)] = tests, cycles
        torch.testing.assert_close(anchor, transfer.restrict(theta_a))
        g = _gradient(algo, f, theta_a)
        corr = transfer.restrict_gradient(g) - _gradient(net, f1, anchor)
        with torch.no_grad():
            net.set_flat(anchor)
            f1_a = float(f1(net.model))
            net.set_flat(theta_c)
            f1_c = float(f1(net.model))
            theta = algo.flat()
            algo.set_flat(theta_a + transfer.prolong(theta_c - anchor))
            f_new = float(f(algo.model))
            algo.set_flat(theta_a)
            f_a = float(f(algo.model))
            algo.set_flat(theta)
        linear = float(torch.dot(corr, theta_c - anchor))
        assert predicted == pytest.approx(f1_a - (f1_c + linear), rel=1e-9, abs=1e-15)
        assert actual == pytest.approx(f_a - f_new, rel=1e-9, abs=1e-15)
        assert abs(linear) > 1e-3 * abs(predicted) and stats["coarse_step_norm"] > 0
        if stats["accepted"]:
            torch.testing.assert_close(algo.flat() if algo.post[0] == 0 else theta_a + transfer.prolong(
                theta_c - anchor), theta_a + transfer.prolong(theta_c - anchor))


@pytest.mark.parametrize("globalization,prolongation", [("trust_region", "constant"), ("trust_region", "linear"),
                                                        ("offo", "constant"), ("offo", "linear")])
def test_the_prolongated_step_stays_in_the_fine_feasible_set(globalization, prolongation):
    algo, batch = _algorithm([*DEPTH, "ddm.levels=3", "ddm.schedule=[depth,both]", f"ddm.globalization={globalization}",
                       f"ddm.depth_prolongation={prolongation}", "ddm.pre_smooth=[0,2,2]", "ddm.post_smooth=[0,4,4]",
                       "ddm.coarse_solver.lr=1.0", "ddm.radius0=0.05"])
    sets, descend = [], algo.descend

    def record(losses, level, theta, g_up, constraint):
        out, decrease = descend(losses, level, theta, g_up, constraint)
        if level == 1:
            sets.append((constraint, out.clone()))
        return out, decrease

    algo.descend = record
    for _ in range(3):
        sets.clear()
        algo.step(batch)
        [(constraint, theta_c)] = sets
        if globalization == "trust_region":
            step = float(torch.linalg.vector_norm(theta_c - constraint.center))
            assert step <= constraint.radius * (1 + 1e-9)
            assert step > 0.5 * constraint.radius  # the set binds: the check is not vacuous
        else:
            assert bool((theta_c >= constraint.lo - 1e-12).all()) and bool((theta_c <= constraint.hi + 1e-12).all())
            assert float((theta_c - constraint.lo).abs().min()) < 1e-9 or float(
                (constraint.hi - theta_c).abs().min()) < 1e-9  # some coordinate on the boundary


@pytest.mark.parametrize("parts,distribution", [(3, "partition"), (8, "replicate")])
def test_depth_levels_on_parts_follow_the_one_process_trajectory(parts, distribution):
    overrides = [*DEPTH, "ddm.levels=3", "ddm.schedule=[depth,both]", "ddm.pre_smooth=[0,1,1]"]
    one, batch = _algorithm(overrides)
    many, _ = _algorithm([*overrides, f"ddm.coarse_distribution={distribution}"], parts=parts)
    assert many.distribution == ["partition", "partition", distribution]
    for _ in range(3):
        a, b = one.step(batch), many.step(batch)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-10) and b["accepted"] == a["accepted"]
    torch.testing.assert_close(many.flat(), one.flat(), rtol=1e-9, atol=1e-11)


def test_a_depth_level_counts_its_share_of_the_layers():
    algo, batch = _algorithm([*DEPTH, "ddm.levels=3", "ddm.schedule=[depth,both]"])
    n = algo.objective.num_nodes
    n1 = algo.objective.coarse[0]["num_clusters"]
    # 8 layers, 6 residual: level 1 has 2 + 3 layers, level 2 has 2 + 2, on the first coarse grid
    assert [net.model.num_layers for net in algo.networks] == [8, 5, 4]
    assert [loss.work for loss in algo.level_losses] == pytest.approx([1.0, 5 / 8, 4 / 8 * n1 / n])
    assert algo.networks[1].model.layer_steps == [1.0, 2.0, 2.0, 2.0, 1.0]
    assert algo.networks[2].model.layer_steps == [1.0, 4.0, 2.0, 1.0]


def test_depth_coarsening_of_a_residual_free_model_and_too_deep_a_schedule_name_their_keys():
    with pytest.raises(ConfigError, match=r"ddm.depth_coarsening: model GraphSAGE with residual=false"):
        _algorithm([*DEPTH, "ddm.levels=2"], residual=False)
    with pytest.raises(ConfigError, match=r"ddm.levels / ddm.schedule: .* 3 times in depth.* 2 residual layers"):
        _algorithm([*DEPTH, "ddm.levels=4", "ddm.schedule=[depth]"], layers=4)
    with pytest.raises(ConfigError, match=r"ddm.schedule: .* needs ddm.depth_coarsening=true"):
        _algorithm(["ddm=multilevel", "ddm.levels=2", "ddm.schedule=[depth]"])
    with pytest.raises(ConfigError, match=r"ddm.schedule: expected a list of 1 to 2 of"):
        _algorithm([*DEPTH, "ddm.levels=3", "ddm.schedule=[depth,sideways]"])
    with pytest.raises(ConfigError, match=r"ddm.depth_restriction"):
        _algorithm([*DEPTH, "ddm.levels=2", "ddm.depth_restriction=median"])


def test_a_space_only_schedule_is_the_space_hierarchy_unchanged():
    space, batch = _algorithm(["ddm=multilevel", "ddm.levels=3", "ddm.post_smooth=[1,2,2]", "ddm.coarse_solver.lr=0.05",
                        "optimizer.lr=0.01"])
    listed, _ = _algorithm(["ddm=multilevel", "ddm.levels=3", "ddm.post_smooth=[1,2,2]", "ddm.coarse_solver.lr=0.05",
                         "optimizer.lr=0.01", "ddm.depth_coarsening=true", "ddm.schedule=[space]"])
    for _ in range(3):
        space.step(batch), listed.step(batch)
    torch.testing.assert_close(listed.flat(), space.flat(), rtol=0, atol=0)
    assert all(net is listed for net in listed.networks)


def test_one_level_stays_the_global_method_with_depth_coarsening_on():
    from gnnddm.ddm.global_ import Global

    algo, batch = _algorithm([*DEPTH, "ddm.levels=1", "ddm.post_smooth=1"])
    glob, _ = _algorithm(["ddm=global", "optimizer.lr=0.01"])
    assert isinstance(glob, Global)
    for _ in range(3):
        algo.step(batch), glob.step(batch)
    torch.testing.assert_close(algo.flat(), glob.flat(), rtol=0, atol=0)


def test_checkpoints_keep_every_level_solver():
    algo, batch = _algorithm([*DEPTH, "ddm.levels=3", "ddm.schedule=[depth,both]"])
    algo.step(batch)
    state = copy.deepcopy(algo.state_dict())  # the optimizers' states are live tensors
    assert sorted(state["solvers"]) == ["level1", "level2"]
    again, _ = _algorithm([*DEPTH, "ddm.levels=3", "ddm.schedule=[depth,both]"])
    again.set_flat(algo.flat())
    again.load_state_dict(state)
    a, b = algo.step(batch), again.step(batch)
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-12)
    torch.testing.assert_close(again.flat(), algo.flat(), rtol=0, atol=0)


def test_objective_has_one_coarse_graph_per_space_level():
    cfg = compose([*DEPTH, "ddm.levels=4", "ddm.schedule=[depth,both,space]"])
    data = grid_data(8, 16, neighbours=8)
    partition = build_partition(data.edge_index, data.num_nodes, np.zeros(data.num_nodes, dtype=np.int64), 0)
    objective = build_objective(cfg.ddm, data, partition)
    assert isinstance(objective, Objective) and objective.num_coarse_levels == 2


def test_the_interaction_network_coarsens_in_depth_with_coherent_levels():
    """Every block of the interaction network is residual (edge and node updates): 4 blocks -> 2 -> 1."""
    from gnnddm.models.interaction import InteractionNetwork

    data = grid_data(8, 16, neighbours=8)
    partition = build_partition(data.edge_index, data.num_nodes, np.zeros(data.num_nodes, dtype=np.int64), 0)
    task = ForecastTask(data)
    cfg = compose([*DEPTH, "ddm.levels=3", "ddm.schedule=[depth,both]", "ddm.pre_smooth=[0,1,1]",
                   "ddm.post_smooth=[1,2]"])
    objective = build_objective(cfg.ddm, data, partition)
    batch = to_dtype(task.batch(np.arange(2)), torch.float64)
    torch.manual_seed(0)
    model = InteractionNetwork(task.in_channels, task.out_channels, edge_dim=3, hidden=8, layers=4).double()
    algo = build_algorithm(cfg.ddm, cfg.optimizer, model, objective, comm_for(objective)[0])
    assert [net.model.num_layers for net in algo.networks] == [4, 2, 1]
    seen = _record_coherence(algo)
    for _ in range(2):
        seen.clear()
        algo.step(batch)
        assert [level for level, *_ in seen] == [1, 2]
        for level, grad_h, wanted, _ in seen:
            torch.testing.assert_close(grad_h, wanted, rtol=1e-10, atol=1e-12,
                                       msg=lambda m, level=level: f"level {level}: {m}")
