"""Run the documented studies and write ``docs/results.md``.

    python3 scripts/make_results.py [--work DIR] [--studies algorithms,partition,edge_weights]
                                    [--set KEY=VALUE ...] [--report-only] [--docs DIR]

For each study the script runs the Hydra sweep of its experiment (``gnnddm train -m
+experiment=study_<name>``, the exact command is printed on the page) into a fresh MLflow store under
``--work`` (default ``outputs/results``), builds the comparison with :func:`gnnddm.report.build_report`,
and writes ``docs/results.md``: the commands, the machine, one compact table per study, the headline
plots (copied to ``docs/results/``, with each study's full ``comparison.csv``) and the discussion.

The measured part of the page is regenerated on every call. The discussion is written by hand after
looking at the numbers; it sits between the two ``DISCUSSION`` markers and is kept as it is when the
page is regenerated. ``--report-only`` rebuilds the page from the store and the facts (machine, load,
sweep durations) recorded by the last full run, without training.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- DISCUSSION:BEGIN -->", "<!-- DISCUSSION:END -->"
PLACEHOLDER = "_The discussion is written by hand from the tables above; it has not been written yet._"
PLOT_TITLES = {
    "val_loss_vs_rounds.png": "validation loss against communication rounds",
    "val_loss_vs_model_time.png": "validation loss against modelled parallel time",
    "val_loss_vs_grad_evals.png": "validation loss against epochs (gradient evaluations / N)",
    "speedup.png": "speedup against p (modelled and wall time), ideal dashed",
}
#: the algorithms the algorithm study compares, in the order of its tables (a study's choice, not a
#: registry: conf/ddm/*.yaml holds every algorithm)
STUDY_ALGORITHMS = ("global", "sync", "local_avg", "llcg", "asm", "msm", "two_level")
LEGEND = {
    "accept_rate": "`accept_rate`: fraction of accepted trust-region steps.",
    "model_time_total": "`model_time_total`: modelled parallel time of the whole run (s).",
    "edge_cut_fraction": "`edge_cut_fraction`: share of the total edge weight (the run's own weights) that is cut.",
    "halo_ratio": "`halo_ratio`: Σ|H_k| / N, the redundant overlap nodes.",
    "imbalance": "`imbalance`: largest part / mean part.",
}
TIME_COLS = ["rounds_to_target", "epochs_to_target", "model_time_to_target", "wall_time_to_target"]


@dataclass(frozen=True)
class Study:
    """One sweep of the page: its experiment, the overrides that trim it, and how it is reported."""

    title: str
    experiment: str
    question: str
    overrides: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ("algorithm", "num_parts")
    baseline: str | None = None
    identity: tuple[str, ...] = ("algorithm", "p")
    extra: tuple[str, ...] = ()           # run metrics shown as extra columns (see _extra_columns)
    plots: tuple[str, ...] = ("val_loss_vs_rounds.png",)
    scaling: tuple[str, ...] = field(default=("speedup_model_time", "speedup_wall_time"))
    order: tuple[str, ...] = ()           # algorithms in this order in the table (others after them)


STUDIES = {
    "algorithms": Study(
        title="Algorithms x subdomains",
        experiment="study_algorithms",
        question="Which training algorithm reaches the target validation loss with the fewest communication "
                 "rounds and the shortest modelled parallel time, and how does that change with p?",
        extra=("accept_rate", "model_time_total"),
        plots=("val_loss_vs_rounds.png", "val_loss_vs_model_time.png", "speedup.png"),
        order=STUDY_ALGORITHMS,
    ),
    "partition": Study(
        title="Partition quality (reduced: overlap 0 and 2)",
        experiment="study_partition",
        question="How do the partitioner (edge cut, halo) and the overlap depth drive the convergence of "
                 "additive Schwarz at p = 4?",
        overrides=("partition.overlap=0,2",),
        group_by=("partitioner", "overlap"),
        baseline="partitioner=metis,overlap=2",
        identity=("partitioner", "overlap"),
        extra=("edge_cut_fraction", "halo_ratio", "imbalance", "accept_rate"),
        scaling=("speedup_model_time",),
    ),
    "edge_weights": Study(
        title="METIS edge weights",
        experiment="study_edge_weights",
        question="Does weighting the METIS cut by the data correlation across edges, instead of by distance, "
                 "give subdomains on which additive Schwarz (overlap 1) converges faster?",
        group_by=("edge_weights", "num_parts"),
        baseline="edge_weights=distance,p=4",
        identity=("edge_weights", "p"),
        extra=("edge_cut_fraction", "halo_ratio", "accept_rate"),
        scaling=("speedup_model_time",),
    ),
    "real": Study(
        title="Real data: ERA5 1 deg sample",
        experiment="study_real",
        question="Do the conclusions carry over to the real ERA5 sample (65,160 nodes, 4 variables) with "
                 "`global`, `sync` and `asm` on 4 METIS parts?",
        extra=("accept_rate", "model_time_total"),
        plots=("val_loss_vs_rounds.png", "val_loss_vs_model_time.png"),
        order=STUDY_ALGORITHMS,
    ),
}


# ------------------------------------------------------------------------------------------ facts
def machine_facts() -> dict:
    """What the numbers were measured on."""
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
                 .split()[1])
        ram = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    from gnnddm.training.tracking import git_commit

    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": cpu,
        "ram": ram,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "os": f"{platform.system()} {platform.release()}",
        "git_commit": git_commit(),
    }


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


# ------------------------------------------------------------------------------------------ running
def train_command(study: Study, db: Path, sweep_dir: Path, extra: list[str]) -> list[str]:
    """The ``gnnddm train -m`` call of a study (as printed on the page, minus the interpreter)."""
    return ["gnnddm", "train", "-m", f"+experiment={study.experiment}", *study.overrides, *extra,
            f"tracking.uri=sqlite:///{db}", f"hydra.sweep.dir={sweep_dir}"]


def run_sweep(study: Study, work: Path, extra: list[str]) -> dict:
    """Run the study's sweep; return its facts (command, exit status, duration, load before and after)."""
    cmd = train_command(study, work / "mlflow.db", work / "sweeps" / study.experiment, extra)
    print("$ " + shlex.join(cmd), flush=True)
    facts = {"command": shlex.join(cmd), "load_before": load_average()}
    t0 = time.perf_counter()
    with open(work / f"{study.experiment}.log", "w") as log:
        rc = subprocess.call([sys.executable, "-m", "gnnddm", *cmd[1:]], cwd=REPO, stdout=log,
                             stderr=subprocess.STDOUT)
    facts.update(exit_status=rc, seconds=round(time.perf_counter() - t0, 1), load_after=load_average())
    print(f"  exit {rc} after {facts['seconds']} s (log {work / f'{study.experiment}.log'})", flush=True)
    return facts


def report_command(study: Study, work: Path) -> list[str]:
    """The ``gnnddm report`` call equivalent to :func:`build` (for the page)."""
    cmd = ["gnnddm", "report", "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", "--experiment",
           study.experiment, "--group-by", ",".join(study.group_by)]
    if study.baseline:
        cmd += ["--baseline", study.baseline]
    return cmd + ["--output", str(work / "reports" / study.experiment)]


def build(study: Study, work: Path) -> dict:
    """``build_report`` for one study, plus the extra columns read from MLflow."""
    from gnnddm.report import build_report

    uri = f"sqlite:///{work / 'mlflow.db'}"
    result = build_report(uri, experiment=study.experiment, baseline=study.baseline,
                          group_by=list(study.group_by), output=work / "reports" / study.experiment)
    _extra_columns(uri, result["rows"])
    return result


def _extra_columns(uri: str, rows: list[dict]) -> None:
    """Edge weighting, partition quality (logged at step 0), trust-region acceptance rate, total model time
    (the cumulative ``cost/model_time`` at the last step)."""
    from mlflow.tracking import MlflowClient

    from gnnddm.training.tracking import metric_name

    client = MlflowClient(tracking_uri=uri)
    for row in rows:
        run = client.get_run(row["run_id"])
        metrics = run.data.metrics
        row["edge_weights"] = run.data.tags.get("gnnddm.edge_weights", "n/a")
        for key in ("edge_cut_fraction", "halo_ratio", "imbalance"):
            row[key] = metrics.get(f"partition/{key}", "n/a")
        row["model_time_total"] = metrics.get(metric_name("model_time"), "n/a")
        accepted = [m.value for m in client.get_metric_history(row["run_id"], metric_name("accepted"))]
        row["accept_rate"] = sum(accepted) / len(accepted) if accepted else "n/a"


# ------------------------------------------------------------------------------------------ page
def page(studies: dict[str, Study], facts: dict, results: dict, docs: Path, work: Path, discussion: str) -> str:
    from gnnddm.report.tables import markdown_table

    m = facts["machine"]
    total = sum(facts["sweeps"][name]["seconds"] for name in studies)
    lines = [
        "# Results",
        "",
        "Measured by `scripts/make_results.py`; everything above the discussion is regenerated by",
        f"`python3 scripts/make_results.py` (the sweeps took {total / 60:.0f} minutes here), the discussion is",
        "written by hand from these numbers. Definitions (target, speedup, modelled time) are in",
        "[report.md](report.md) and [algorithms.md](algorithms.md); every option in",
        "[configuration.md](configuration.md).",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| date | {m['date']} |",
        f"| CPU | {m['cpu']} |",
        f"| cores available (nproc) | {m['nproc']} |",
        f"| RAM | {m['ram']} |",
        f"| OS, Python, torch | {m['os']}, Python {m['python']}, torch {m['torch']} |",
        f"| gnnddm commit | `{m['git_commit']}` |",
        "",
        "The machine was shared with other jobs while the sweeps ran; the load averages (1 / 5 / 15 min)",
        "before and after each sweep are given with it. Wall times carry that contention; the modelled",
        "parallel time is built from the measured compute time of each subdomain, so it carries it too,",
        "but every run of a sweep saw similar load. All runs use one intra-op thread (`trainer.threads=1`).",
        "",
        "## Commands",
        "",
        "```",
        "python3 scripts/make_results.py            # what produced this page; it runs:",
    ]
    for name in studies:  # paths inside the repository are shown relative to it
        lines.append(facts["sweeps"][name]["command"].replace(f"{REPO}/", ""))
    lines += ["```", "", "and builds each comparison with `gnnddm.report.build_report`, the same as:", "", "```"]
    for study in studies.values():
        lines.append(shlex.join(report_command(study, work)).replace(f"{REPO}/", ""))
    lines += ["```", "",
              "The sweeps of `conf/experiment/study_*.yaml` run without the store and folder options as",
              "`gnnddm train -m +experiment=study_<name>` (the report options are at the top of each file).", ""]
    for name, study in studies.items():
        lines += _study_section(name, study, facts["sweeps"][name], results[name], docs, markdown_table)
    lines += ["## Discussion", "", BEGIN, discussion.strip() or PLACEHOLDER, END, ""]
    return "\n".join(lines)


def _study_section(name, study: Study, sweep: dict, result: dict, docs: Path, markdown_table) -> list[str]:
    rows = result["rows"]
    if study.order:
        rank = {a: i for i, a in enumerate(study.order)}
        rows = sorted(rows, key=lambda r: rank.get(str(r["algorithm"]), len(rank)))  # stable: p order kept
    target = "none" if result["target"] is None else f"val/loss <= {result['target']:.4g}"
    base = next((r for r in rows if r["run_id"] == result["baseline"]), None)
    failed = [r["run_name"] for r in rows if r["status"] != "finished"]
    cols = [*study.identity, "seed", "iterations", *TIME_COLS, *study.scaling, "final_val_loss", "val/rmse/t2m",
            *study.extra]
    lines = [
        f"## {study.title}",
        "",
        study.question,
        "",
        f"- experiment `{study.experiment}`: {len(rows)} runs, {sweep['seconds']:.0f} s for the sweep "
        f"(exit status {sweep['exit_status']}); load average before {sweep['load_before']}, "
        f"after {sweep['load_after']}",
        f"- target: {target} ({result['target_source']})",
        "- baseline: " + (f"`{base['run_name']}` ({', '.join(f'{k} {base[k]}' for k in study.identity)})"
                           if base else "none"),
        f"- failed runs: {len(failed)}" + (f" ({', '.join(failed)})" if failed else ""),
        "",
        markdown_table(rows, cols),
        "",
        f"Full table: [results/{name}_comparison.csv](results/{name}_comparison.csv)."
        + "".join(f" {LEGEND[c]}" for c in study.extra if c in LEGEND),
        "",
    ]
    out = Path(result["output"])
    shutil.copyfile(out / "comparison.csv", docs / "results" / f"{name}_comparison.csv")
    for plot in study.plots:
        src = out / plot
        if src.is_file():
            dest = f"results/{name}_{plot}"
            shutil.copyfile(src, docs / dest)
            lines += [f"![{name}: {PLOT_TITLES.get(plot, plot)}]({dest})", ""]
        else:
            lines += [f"- {plot}: not drawn (see the report's comparison.md)", ""]
    return lines


def read_discussion(path: Path) -> str:
    if not path.is_file():
        return ""
    text = path.read_text()
    if BEGIN in text and END in text:
        body = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
        return "" if body == PLACEHOLDER else body
    return ""


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=REPO / "outputs" / "results",
                   help="folder for the MLflow store, sweeps and reports (default: %(default)s)")
    p.add_argument("--studies", default=",".join(STUDIES), help="comma-separated (default: %(default)s)")
    p.add_argument("--docs", type=Path, default=REPO / "docs", help="where results.md goes (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra override for every sweep, e.g. trainer.max_iterations=2 for a quick check")
    p.add_argument("--report-only", action="store_true",
                   help="rebuild the page from the existing store and recorded facts, without training")
    args = p.parse_args(argv)
    names = [s.strip() for s in args.studies.split(",") if s.strip()]
    unknown = [n for n in names if n not in STUDIES]
    if unknown:
        p.error(f"--studies: unknown {unknown}; valid: {', '.join(STUDIES)}")
    studies = {n: STUDIES[n] for n in names}
    work = args.work.resolve()
    facts_path = work / "facts.json"

    if args.report_only:
        if not facts_path.is_file():
            p.error(f"--report-only: no {facts_path}; run once without it")
        facts = json.loads(facts_path.read_text())
        missing = [n for n in studies if n not in facts["sweeps"]]
        if missing:
            p.error(f"--report-only: the last run did not include {missing}")
    else:
        shutil.rmtree(work, ignore_errors=True)  # a fresh store: the page shows only these runs
        work.mkdir(parents=True)
        facts = {"machine": machine_facts(), "sweeps": {}}
        for name, study in studies.items():
            facts["sweeps"][name] = run_sweep(study, work, args.set)
            facts_path.write_text(json.dumps(facts, indent=2))

    docs = args.docs.resolve()
    (docs / "results").mkdir(parents=True, exist_ok=True)
    results = {name: build(study, work) for name, study in studies.items()}
    target = docs / "results.md"
    target.write_text(page(studies, facts, results, docs, work, read_discussion(target)))
    size = sum(f.stat().st_size for f in (docs / "results").iterdir() if f.is_file())
    print(f"wrote {target} and {len(list((docs / 'results').iterdir()))} files in {docs / 'results'} "
          f"({size / 1e6:.2f} MB)")
    if size > 2e6:
        print("warning: docs/results/ is larger than 2 MB; copy fewer plots", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
