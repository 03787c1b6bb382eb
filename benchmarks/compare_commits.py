"""The same training runs at two commits: are the results bitwise equal, and is the time per iteration the same?

For a change meant to leave what an algorithm computes as it was (a refactoring, a new option off by default),
this is the evidence: every run of ``--runs`` is trained at ``--old`` (checked out into a temporary worktree)
and at the working tree, ``--repeats`` times each in alternating order, one process at a time. Printed per
run: the final validation loss at each commit (``bitwise equal`` when every repeat agrees to the last bit, in
every final loss, RMSE and skill and every accounting counter, not only the validation loss) and the training
compute per iteration (``cost/compute_time`` / iterations), medians [min, max] over the repeats, with
``within noise`` when the ranges overlap.

The runs of ``--runs`` are algorithms on ``+experiment=dd_deep``; those of ``--experiments`` are shipped
experiments as they are, cut to ``--iterations`` (rollout training, the mesh model, assimilation).

    python3 benchmarks/compare_commits.py --old 1ad3410
    python3 benchmarks/compare_commits.py --old HEAD~3 --runs global,halo_sync --iterations 20
    python3 benchmarks/compare_commits.py --old HEAD~1 --runs all --experiments all --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "global": ["ddm=global"],
    "halo_sync": ["ddm=halo_sync", "partition.overlap=1"],
    "asm": ["ddm=asm", "partition.overlap=1"],
    "local_avg": ["ddm=local_avg", "partition.overlap=1"],
    "multilevel": ["ddm=multilevel", "partition.num_parts=1", "ddm.levels=3", "ddm.post_smooth=[1,2,2]"],
    "sync": ["ddm=sync", "partition.overlap=1"],
    "msm": ["ddm=msm", "partition.overlap=1"],
    "two_level": ["ddm=two_level", "partition.overlap=1"],
    "llcg": ["ddm=llcg", "partition.overlap=1"],
    "apts": ["ddm=apts", "partition.overlap=1"],
}
#: whole experiments, each cut to --iterations (evaluated at the end only)
EXPERIMENTS = {
    "quickstart": ["+experiment=quickstart"],
    "rollout": ["+experiment=stations_wind_rollout"],
    "mesh_rollout": ["+experiment=mesh_rollout"],
    "assimilate_hybrid": ["+experiment=era5_assimilate_hybrid"],
}
COMMON = ["trainer.progress=false", "tracking.enabled=false", "trainer.threads=1"]


def numbers(summary: dict) -> dict:
    """Every final score and accounting counter of a run (clocks left out), flattened."""
    out = {}
    for key, value in summary.get("final", {}).items():
        if isinstance(value, dict):
            out.update({f"{key}/{k}": v for k, v in value.items()})
        else:
            out[key] = value
    clocks = ("time", "wall_time", "seconds_per_iteration", "data_wait_seconds")
    out.update({f"accounting/{k}": v for k, v in summary.get("accounting", {}).items()
                if not any(c in k for c in clocks)})
    return out


def train(tree: Path, overrides: list[str], out: Path) -> dict:
    """``gnnddm train`` with the code and config tree of ``tree``; its summary."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-m", "gnnddm", "train", *overrides, f"output_dir={out}"], cwd=tree,
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{tree}: gnnddm train {' '.join(overrides)} failed:\n{done.stderr[-2000:]}")
    return json.loads((out / "summary.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the commit to compare the working tree with")
    parser.add_argument("--runs", default="global,halo_sync,asm,local_avg,multilevel",
                        help=f"comma-separated, of {', '.join(RUNS)}, or all")
    parser.add_argument("--experiments", default="", help=f"comma-separated, of {', '.join(EXPERIMENTS)}, or all")
    parser.add_argument("--resolution", type=float, default=2.8125, help="grid of +experiment=dd_deep (deg)")
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    cut = [f"trainer.max_iterations={args.iterations}", f"trainer.eval_every={args.iterations}", *COMMON]
    base = ["+experiment=dd_deep", f"data.resolution={args.resolution}", "data.steps=60", *cut]
    chosen = {}
    for given, table, prefix, flag in ((args.runs, RUNS, base, "--runs"), (args.experiments, EXPERIMENTS, cut,
                                                                             "--experiments")):
        names = list(table) if given == "all" else [n for n in given.split(",") if n]
        unknown = sorted(set(names) - set(table))
        if unknown:
            parser.error(f"{flag}: unknown {unknown}; choose from {list(table)}")
        # an experiment's own keys come first, so that the cut to --iterations overrides them
        chosen.update({n: [*table[n], *prefix] if table is EXPERIMENTS else [*prefix, *table[n]] for n in names})
    names = list(chosen)
    print(f"+experiment=dd_deep data.resolution={args.resolution}, {args.iterations} iterations, "
          f"{args.repeats} repeats per commit, alternating")
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(old), args.old], check=True)
        try:
            (old / "gnnddm" / "conf").symlink_to("../conf")  # its own config tree, not the installed one
            trees = {f"at {args.old}": old, "working tree": ROOT}
            results: dict[str, dict[str, list[dict]]] = {n: {t: [] for t in trees} for n in names}
            for rep in range(args.repeats):
                order = list(trees.items()) if rep % 2 == 0 else list(trees.items())[::-1]
                for label, tree in order:
                    for name in names:
                        out = Path(tmp) / f"{name}-{label.replace(' ', '_')}-{rep}"
                        results[name][label].append(train(tree, chosen[name], out))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)
    print("\n| run | val_loss at each commit | bitwise equal | compute s/iteration, old | new | |")
    print("|---|---|---|---|---|---|")
    for name, per in results.items():
        (old_label, old_runs), (_, new_runs) = per.items()
        losses = [s["final"]["val_loss"] for s in old_runs + new_runs]
        everything = [numbers(s) for s in old_runs + new_runs]
        same = len(set(losses)) == 1 and all(n == everything[0] for n in everything)
        times = [[s["accounting"]["compute_time"] / s["accounting"]["iterations"] for s in runs]
                 for runs in (old_runs, new_runs)]
        overlap = min(times[0]) <= max(times[1]) and min(times[1]) <= max(times[0])
        cells = [f"{statistics.median(t):.3f} [{min(t):.3f}, {max(t):.3f}]" for t in times]
        print(f"| {name} | {losses[0]!r} / {losses[-1]!r} | {'yes' if same else 'no'} | "
              f"{cells[0]} | {cells[1]} | {'within noise' if overlap else 'outside the ranges'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
