"""A run's parts from a composed config: data, task, graph and split, partition, model, communicator,
objective, algorithm and evaluator (:func:`build_run`), with the facts the summary records about them.

Each component receives its own config section: a task, a model and an algorithm their validated section,
an instance of their class's ``Config`` (:func:`gnnddm.config.build_component`); data loaders, graph
builders and partitioners their section's keys as arguments. This module is the one place that sees the
whole configuration while building, and the root keys come from the validated
:class:`~gnnddm.schema.root.RootConfig` (``settings``), typed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from gnnddm.config import build, build_component
from gnnddm.data.pipeline import build_problem
from gnnddm.ddm import build_algorithm, build_objective
from gnnddm.ddm.base import Algorithm
from gnnddm.ddm.blocked import block_count, row_bytes_of
from gnnddm.distributed import Accounting, LocalComm, TorchComm, World
from gnnddm.errors import ConfigError
from gnnddm.models.execution import set_compile, set_precision
from gnnddm.outputs import output_dir
from gnnddm.tasks.rollout_training import RolloutTraining
from gnnddm.training.checks import check_eval_leads, check_samples, check_valid_targets
from gnnddm.training.labels import algorithm_class, partition_section
from gnnddm.training.tracking import flatten
from gnnddm.training.validate import Evaluator

if TYPE_CHECKING:
    from gnnddm.data.normalise import TimeSplit
    from gnnddm.data.weather_graph import WeatherGraphData
    from gnnddm.ddm.objective import Objective
    from gnnddm.distributed.comm import Communicator
    from gnnddm.schema.root import RootConfig
    from gnnddm.tasks import Task
    from gnnddm.training.runbook import RunBook


@dataclass
class Run:
    """What the loop works with (built by :func:`build_run`)."""

    data: WeatherGraphData  # the graph trained on (an assimilation task's carries observation nodes)
    task: Task
    model: torch.nn.Module
    objective: Objective
    comm: Communicator  # its accounting is the run's
    algorithm: Algorithm
    evaluator: Evaluator
    anchors: dict[str, np.ndarray]  # the samples of each split
    world: World
    split: TimeSplit  # the training split's climatology and the test split's lead times
    training: RolloutTraining | None = None  # rollout training's model and batches (None: one step)
    params: dict[str, str] = field(default_factory=dict)  # the flattened config, kept in checkpoints
    start_metrics: dict[str, float] = field(default_factory=dict)  # logged at step 0 of a new MLflow run


def build_run(cfg: DictConfig, settings: RootConfig, world: World, book: RunBook) -> Run:
    """Build the run's parts; record what the summary says of them in ``book.summary``."""
    trainer = settings.trainer
    device = torch.device(trainer.device)
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    problem = build_problem(cfg)
    task = build_component(cfg.task, "task", problem.data)
    data = task.data  # the graph trained on: assimilation appends observation nodes to the run's graph
    cls = algorithm_class(cfg)
    coarse = cls.coarse_levels.__func__ is not Algorithm.coarse_levels.__func__
    if data is not problem.data and coarse:
        raise ConfigError(f"ddm={cfg.ddm.name} builds coarse graphs of the data, which do not carry task={task.name}'s "
                          "observation nodes; choose a one-level ddm (global, sync, halo_sync, asm, ...)")
    summary = book.summary
    anchors = task.split_anchors(problem.split)
    check_samples(anchors, data, task)
    check_eval_leads(trainer.eval_leads, task, problem.split)
    summary["valid_targets"] = check_valid_targets(task, anchors, data)
    start_metrics = {f"data/valid_targets/{name}/{var}": n for name, counts in summary["valid_targets"].items()
                     for var, n in counts.items()}
    eval_train = anchors["train"][: trainer.eval_train_samples]
    summary["samples"] = {"train": len(anchors["train"]), "train evaluated": len(eval_train),
                          "val": len(anchors["val"]), "test": len(anchors["test"])}
    start_metrics.update({f"data/samples/{k.replace(' ', '_')}": n for k, n in summary["samples"].items()})
    if described := task.summary():
        summary["task"] = described
    summary["units"] = dict(zip(data.variables, data.units, strict=True))
    summary["data"] = {"source": data.source, "reading": data.reading}
    summary["graph"] = {"num_nodes": data.num_nodes, "num_edges": data.num_edges, "kind": data.kind}

    model, training = _model(cfg, settings, task, data, device)
    partition = _partition(cfg, data, _hops(model, training, cls), book, world.rank)
    start_metrics.update({f"partition/{k}": v for k, v in summary["partition"].items()
                          if isinstance(v, int | float)})

    accounting = Accounting(alpha=settings.accounting.alpha, beta=settings.accounting.beta)
    if world.source == "single":
        comm = LocalComm(partition.num_parts, accounting=accounting)
    else:
        comm = TorchComm(partition.num_parts, accounting=accounting, device=device)
    objective = build_objective(cfg.ddm, data, partition, device=device, parts=comm.parts_of_rank,
                                graph_builder=problem.rebuild)
    trained = model if training is None else training.model
    algorithm = build_algorithm(cfg.ddm, cfg.optimizer, trained, objective, comm)
    if cls.whole_graph or trainer.blocks != "auto":  # auto blocks global's whole-graph step only
        blocks = block_count(trainer.blocks, trained, data.num_nodes, row_bytes_of(trained, trainer.batch_size),
                             trainer.block_halo)
        algorithm.run_in_blocks(blocks, trainer.block_halo)
        summary["blocks"] = blocks
    # every rank evaluates its share of the evaluation samples; the sums are reduced over the ranks
    eval_sets = {"train": eval_train, "val": anchors["val"], "test": anchors["test"]}
    # val and test are whole splits, counted above; the training samples evaluated are a subset
    counted = {name: np.array(list(summary["valid_targets"][name].values())) for name in ("val", "test")}
    evaluator = Evaluator(task, objective.full_graph, eval_sets, batch_size=trainer.batch_size,
                          seed=settings.seed, device=device, comm=comm, valid_counts=counted)
    summary["baseline"] = {"name": task.baseline_name, **{f"{split}_rmse": evaluator.baseline(split)
                                                          for split in ("val", "test")}}
    for split in ("val", "test"):
        start_metrics.update({f"{split}_baseline_rmse/{v}": x for v, x in summary["baseline"][f"{split}_rmse"].items()})
    return Run(data, task, model, objective, comm, algorithm, evaluator, anchors, world,
               problem.split, training, flatten(OmegaConf.to_container(cfg, resolve=True)), start_metrics)


def _model(cfg: DictConfig, settings: RootConfig, task: Task, data: WeatherGraphData, device: torch.device):
    """The model, identically initialised on every rank, and rollout training's wrapper (or None)."""
    edge_dim = 0 if data.edge_attr is None else int(data.edge_attr.shape[1])
    torch.manual_seed(settings.seed)  # identical initial weights on every rank
    model = build_component(cfg.model, "model", task.in_channels, task.out_channels, edge_dim).to(device)
    set_precision(model, settings.trainer.precision)
    set_compile(model, settings.trainer.compile)
    # rollout training: the algorithm trains the k-step map, whose parameters are the model's
    training = RolloutTraining(task, model) if getattr(task, "rollout", 1) > 1 else None
    return model, training


def _hops(model, training: RolloutTraining | None, cls: type) -> tuple[int, str]:
    """The message-passing hops an exact subdomain problem needs, and whose they are: the model's layers,
    the receptive field of the longest rollout of a schedule, or one where the algorithm exchanges halos
    before every layer."""
    what = "model" if training is None else "rollout"
    if cls.layerwise_halo:
        return 1, what
    if training is not None:
        return training.model.receptive_field(training.task.rollout), what
    return int(getattr(model, "num_message_passing_layers", 0)), what


def _partition(cfg: DictConfig, data, reach: tuple[int, str], book: RunBook, rank: int):
    """The partition (whole graph for ``global``), its summary and map, and whether its overlap covers the
    ``reach`` (hops, and whose) of :func:`_hops`."""
    hops, what = reach
    parts = cfg.partition.num_parts  # as configured: also an error for global, which uses one part
    if parts > data.num_nodes:
        raise ConfigError(f"partition.num_parts={parts} exceeds the {data.num_nodes} nodes of the graph; valid: "
                          f"1 .. {data.num_nodes}")
    partition = build(partition_section(cfg), "partition")(data)
    summary = book.summary["partition"] = _partition_summary(partition)
    if rank == 0 and partition.num_parts > 1:
        from gnnddm.partition.plot import plot_partition

        title = f"{partition.method}: {partition.num_parts} parts, overlap {partition.overlap}"
        book.artifact(plot_partition(output_dir(cfg) / "partition_map.png", data.lat, data.lon,
                                     partition.parts, title=title))
    summary["exact"] = partition.num_parts == 1 or partition.overlap >= hops
    if not summary["exact"]:
        warnings.warn(
            f"partition.overlap={partition.overlap} is below the {what}'s {hops} message-passing hops: the "
            "subdomain losses drop the cut edges and do not sum to the global loss (sync is then not the "
            f"global method); set partition.overlap={hops} for exact subdomain problems",
            stacklevel=3,
        )
    return partition


def _partition_summary(partition) -> dict:
    m = partition.metrics
    keys = ("edge_cut", "edge_cut_fraction", "imbalance", "halo_ratio", "boundary_fraction")
    return {"num_parts": partition.num_parts, "overlap": partition.overlap, "method": partition.method,
            **{k: m[k] for k in keys if k in m}}
