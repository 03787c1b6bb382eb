"""``gnnddm partition``: build the graph and the partition only, report its quality, draw its map.

    gnnddm partition [+experiment=NAME] partition=metis partition.num_parts=8 partition.overlap=2

prints ``repr(partition)`` and writes into the output directory (``cfg.output_dir`` when set, else Hydra's
run directory, else the working directory):

- ``summary.json``: ``status``, ``partition`` (method, num_parts, overlap,
  edge_cut_fraction, imbalance, halo_ratio, ...), ``graph`` (num_nodes, num_edges), ``timings``, and
  ``error`` when a configuration or data error stopped the command;
- ``partition_map.png``: the nodes coloured by part (cut edges with ``partition.plot_cut_edges=true``).
"""

from __future__ import annotations

import time

from omegaconf import DictConfig, OmegaConf

from gnnddm.config import build
from gnnddm.data import pipeline
from gnnddm.errors import GnnddmError
from gnnddm.outputs import output_dir, write_json
from gnnddm.partition.metrics import color_parts
from gnnddm.partition.plot import plot_partition
from gnnddm.schema import validate

SUMMARY = "summary.json"
MAP = "partition_map.png"


def run_partition(cfg: DictConfig) -> dict:
    """Run ``gnnddm partition`` on a composed config; returns the summary written to ``summary.json``.

    Raises
    ------
    GnnddmError
        Configuration or data errors, after ``summary.json`` recorded ``status: failed`` and the message.
    """
    out = output_dir(cfg)
    t0 = time.perf_counter()
    try:
        validate(cfg)  # before loading any data
        problem = pipeline.build_problem(cfg)
        data = problem.data
        t1 = time.perf_counter()
        make = build(cfg.partition, "partition")
        partition = make(data)
        t2 = time.perf_counter()
    except GnnddmError as err:
        write_json(out / SUMMARY, {"command": "partition", "status": "failed", "error": str(err)})
        raise

    print(repr(partition))
    plot_cut = bool(OmegaConf.select(cfg, "partition.plot_cut_edges", default=False))
    plot_partition(
        out / MAP, data.lat, data.lon, partition.parts,
        edge_index=data.edge_index if plot_cut else None,
        title=f"{partition.method}: {partition.num_parts} parts, overlap {partition.overlap}",
    )
    t3 = time.perf_counter()

    summary = {
        "command": "partition",
        "status": "finished",
        "mlflow_run_id": None,
        "partition": {
            "method": partition.method,
            "num_parts": partition.num_parts,
            "overlap": partition.overlap,
            "seed": OmegaConf.select(cfg, "partition.seed", default=None),
            **partition.metrics,
            "num_colors": int(color_parts(partition).max()) + 1,
        },
        "graph": {"num_nodes": data.num_nodes, "num_edges": data.num_edges},
        "timings": {
            "build_problem": t1 - t0,
            "partition": t2 - t1,
            "plot": t3 - t2,
            "total": t3 - t0,
        },
        "files": {"partition_map": MAP},
    }
    write_json(out / SUMMARY, summary)
    print(f"wrote {out / SUMMARY} and {out / MAP}")
    return summary


def main(argv: list[str]) -> int:
    from gnnddm.commands.hydra_app import run_hydra_command

    return run_hydra_command("partition", run_partition, argv)
