"""The ddm and optimizer config groups build every algorithm; bad options name their key."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from gnnddm.config import compose, options
from gnnddm.ddm import build_algorithm, build_objective
from gnnddm.errors import ConfigError
from gnnddm.models.sage import GraphSAGE
from gnnddm.testing.gallery import EdgeGNN, comm_for, problem

ALGORITHMS = options("ddm")


def _build(overrides, data=None):
    cfg = compose(overrides)
    _, _, plain, task, batch = problem(data, parts=3, overlap=2)
    objective = build_objective(cfg.ddm, plain.data, plain.partition)  # with the coarse levels it needs
    torch.manual_seed(0)
    if cfg.ddm.name in ("halo_sync", "multilevel", "apts"):  # models that expose their layers
        model = GraphSAGE(task.in_channels, task.out_channels, hidden=6, layers=2).double()
    else:
        model = EdgeGNN(task.in_channels, task.out_channels, edge_dim=3).double()
    comm, acc = comm_for(objective)
    return build_algorithm(cfg.ddm, cfg.optimizer, model, objective, comm), cfg, batch


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "sgd"])
def test_every_config_option_builds_and_steps(name, optimizer):
    overrides = [f"ddm={name}", f"optimizer={optimizer}"]
    if name == "two_level":
        overrides.append("ddm.coarse_clusters=8")
    if name == "multilevel":  # graph coarsening (matching): 32 nodes allow 2 levels
        overrides += ["ddm.coarsening=matching", "ddm.levels=2", "ddm.post_smooth=[1,2]"]
    algo, cfg, batch = _build(overrides)
    assert algo.name == cfg.ddm.name == name
    stats = algo.step(batch)
    assert all(isinstance(v, float) for v in stats.values())
    assert stats["loss"] > 0
    assert algo.accounting.iterations == 1


@pytest.mark.parametrize(
    "override,key",
    [
        ("ddm.globalization=newton", "ddm.globalization"),
        ("ddm.local_steps=0", "ddm.local_steps"),
        ("ddm.combine=max", "ddm.combine"),
        ("ddm.eta1=2.0", "ddm.eta1"),
        ("ddm.local_solver._target_=torch.optim.LBFGSX", "ddm.local_solver._target_"),
        ("+ddm.local_solver.nesterov=true", "ddm.local_solver"),
        ("+ddm.colour=true", "ddm.colour: not a key of"),
    ],
)
def test_bad_option_raises_config_error_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        _build(["ddm=asm", override])


def test_bad_target_names_the_group():
    cfg = compose(["ddm=asm"])
    cfg.ddm._target_ = "gnnddm.ddm.asm.NoSuchThing"
    _, _, objective, task, _ = problem(parts=3, overlap=2)
    comm, acc = comm_for(objective)
    with pytest.raises(ConfigError, match=r"ddm._target_"):
        build_algorithm(cfg.ddm, cfg.optimizer, EdgeGNN(task.in_channels, 2), objective, comm)


def test_ddm_configs_start_with_target_and_are_partial():
    from gnnddm.config import config_dir

    for name in ALGORITHMS:
        raw = OmegaConf.load(config_dir() / "ddm" / f"{name}.yaml")
        assert [k for k in raw if k != "defaults"][0] == "_target_" and raw._partial_ is True and raw.name == name


def test_a_built_algorithm_receives_its_validated_section_and_its_solver_node_whole():
    """build_algorithm hands the class its Config instance (the YAML's and the command line's values, the
    schema's defaults for the rest) and the local solver built from the whole node, options included."""
    from gnnddm.ddm.asm import ASM

    algo, cfg, _ = _build(["ddm=asm", "ddm.local_steps=5", "ddm.local_solver._target_=torch.optim.AdamW",
                           "+ddm.local_solver.weight_decay=0.25"])
    assert type(algo.config) is ASM.Config and algo.config.local_steps == algo.local_steps == 5
    assert algo.config.combine == cfg.ddm.combine and algo.config.name == "asm"
    solver = next(iter(algo.solvers.values()))
    assert type(solver) is torch.optim.AdamW and solver.param_groups[0]["weight_decay"] == 0.25
