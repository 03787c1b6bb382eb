"""A whole ``gnnddm train`` iteration against the bare training step of the same network, in one process.

1. ``gnnddm.training.train`` on synthetic data (``--resolution``, ``--steps`` time steps), GraphSAGE hidden 64 with
   3 layers, one sample per batch, ``ddm=global`` with Adam, ``trainer.threads=2``, evaluations only at the last
   iteration, MLflow into a temporary store, for ``--iterations`` outer iterations. Seconds per iteration: the
   median increment of ``cost/wall_time`` over the iterations without an evaluation (the first excluded);
   the algorithm's own share: the median increment of ``cost/compute_time`` (the timed step).
2. Right after, in the same process, the bare step: the same model (built from the same config) on the same
   graph and a batch of the same size: forward, weighted squared error, backward, Adam step, median of
   ``--repeats`` steps after one warm-up.

Prints both, the ratio iteration / bare step against the 1.2x target, and the overhead outside the step.

Usage::

    python3 benchmarks/bench_iteration.py                     # 0.25 deg (1,038,240 nodes), 24 steps
    python3 benchmarks/bench_iteration.py --resolution 1.0    # a quick run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dd import session  # noqa: E402

TARGET = 1.2


def overrides(res: float, steps: int, iterations: int, folder: Path) -> list[str]:
    return ["data=synthetic", f"data.resolution={res}", f"data.steps={steps}", "graph=grid8", "model=sage",
            "model.hidden=64", "model.layers=3", "ddm=global", "optimizer=adam", "partition.num_parts=1",
            "partition.overlap=0", "trainer.batch_size=1", f"trainer.max_iterations={iterations}",
            f"trainer.eval_every={iterations}", "trainer.eval_train_samples=1", "trainer.threads=2",
            "trainer.progress=false", f"tracking.uri=sqlite:///{folder}/mlflow.db", "tracking.flush_seconds=5",
            f"output_dir={folder}/run"]


def increments(history, skip: set[int]) -> list[float]:
    """Per-iteration increments of a cumulative metric, leaving out the iterations in ``skip``."""
    points = sorted((m.step, m.value) for m in history)
    return [b - a for (s0, a), (s1, b) in zip(points, points[1:], strict=False) if s1 == s0 + 1 and s1 not in skip]


def whole_iteration(cfg, log) -> tuple[float, float, float]:
    """(seconds per iteration, seconds of the algorithm's own step per iteration, mean seconds per iteration
    over all of them: the first one and the evaluation included) of ``gnnddm train``."""
    from mlflow.tracking import MlflowClient

    from gnnddm.training import train

    summary = train(cfg)
    client = MlflowClient(tracking_uri=str(cfg.tracking.uri))
    last = int(summary["accounting"]["iterations"])
    skip = {1, last}  # the first (warm-up) and the evaluated last iteration
    wall = increments(client.get_metric_history(summary["mlflow_run_id"], "cost/wall_time"), skip)
    step = increments(client.get_metric_history(summary["mlflow_run_id"], "cost/compute_time"), skip)
    log(f"gnnddm train: {last} iterations, {summary['accounting']['wall_time']:.1f} s in the loop")
    return statistics.median(wall), statistics.median(step), summary["accounting"]["seconds_per_iteration"]


def bare_step(cfg, repeats: int) -> float:
    """Median seconds of forward + loss + backward + Adam step of the same network on the same graph."""
    import numpy as np
    import torch

    from gnnddm.config import build_component
    from gnnddm.data.pipeline import build_problem
    from gnnddm.models.graph import prepare_graph
    from gnnddm.tasks import weighted_sq_error

    torch.set_num_threads(int(cfg.trainer.threads))
    data = build_problem(cfg).data
    task = build_component(cfg.task, "task", data)
    edge_dim = 0 if data.edge_attr is None else int(data.edge_attr.shape[1])
    torch.manual_seed(0)
    model = build_component(cfg.model, "model", task.in_channels, task.out_channels, edge_dim)
    graph = prepare_graph(data.edge_index, data.num_nodes, data.edge_attr, data.edge_weight)
    rng = np.random.default_rng(0)
    batch = task.batch(task.anchors(np.arange(data.num_times))[:1], rng)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = weighted_sq_error(model(batch.x, graph), batch.y, batch.w)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=24, help="time steps of the synthetic data")
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    command, log, _ = session("bench_iteration.py", argv)
    from gnnddm.config import compose

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(overrides(args.resolution, args.steps, args.iterations, Path(tmp)))
        per_iteration, step_in_loop, mean = whole_iteration(cfg, log)
        bare = bare_step(cfg, args.repeats)
    ratio = per_iteration / bare
    print(f"\n{command}")
    print(f"  whole iteration of gnnddm train:  {per_iteration:.3f} s (median; of which the algorithm's timed step "
          f"{step_in_loop:.3f} s)")
    print(f"  mean over all {args.iterations} iterations:     {mean:.3f} s (the first one and the one evaluation "
          "included)")
    print(f"  bare step of the same network:    {bare:.3f} s (median of {args.repeats})")
    print(f"  ratio iteration / bare step:      {ratio:.2f}x (target <= {TARGET}x: "
          f"{'met' if ratio <= TARGET else 'not met'})")
    print(f"  outside the step per iteration:   {per_iteration - step_in_loop:.3f} s (batch assembly, targets, "
          f"accounting, logging); inside the step beyond the bare one: {step_in_loop - bare:+.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
