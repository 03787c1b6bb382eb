"""``gnnddm report`` over runs written to a temporary MLflow store: tables, plots, errors, attachment.

One store per module (creating a SQLite store costs seconds), runs logged under the names of
:func:`gnnddm.training.tracking.metric_name`. The "sweep" experiment holds a sweep parent and five runs: global
p=1 (baseline), asm p=4 (reaches the target fastest, per-rank times and a partition map), local_avg p=2
(never reaches it), sync p=2 (FAILED) and msm p=2 (logged no val/loss). The "seeds" experiment is a
two-seed sweep of global p=1, sync p=2 in one process and sync p=2 on two gloo ranks, where seed 1's
global run is 2.25 times slower than seed 0's.
"""

from __future__ import annotations

import csv
import time

import matplotlib.image
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from gnnddm.commands.report import main
from gnnddm.report import build_report
from gnnddm.training.tracking import metric_name

pytestmark = pytest.mark.slow  # two SQLite MLflow stores, seconds each


def _log_run(c, exp, name, per_step, val, parent=None, tags=(), status="FINISHED", extra=None, artifact=None,
             params=None):
    """A run with cost counter m = per_step[m] * step at steps 1..2*len(val), val/loss at even steps."""
    all_tags = dict(tags)
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    run_id = c.create_run(exp, run_name=name, tags=all_tags).info.run_id
    ts, n = int(time.time() * 1000), max(2 * len(val), 2)
    ms = [Metric(metric_name(m), k * s, ts, s) for m, k in per_step.items() for s in range(1, n + 1)]
    ms += [Metric("val/loss", v, ts, 2 * (i + 1)) for i, v in enumerate(val)]
    ms += [Metric("val/rmse/t2m", 10 * v, ts, 2 * (i + 1)) for i, v in enumerate(val)]
    ms += [Metric(k, v, ts, n) for k, v in (extra or {}).items()]
    if params:
        c.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    c.log_batch(run_id, metrics=ms)
    if artifact:
        c.log_artifact(run_id, str(artifact))
    c.set_terminated(run_id, status)
    return run_id


def _tags(algo, p, seed=0, backend="none", ranks=1):
    return {"gnnddm.algorithm": algo, "gnnddm.num_parts": str(p), "gnnddm.partitioner": "metis",
            "gnnddm.overlap": "1", "gnnddm.model": "sage", "gnnddm.seed": str(seed), "gnnddm.backend": backend,
            "gnnddm.ranks": str(ranks)}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import matplotlib.pyplot as plt

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri)
    art = (root / "artifacts").as_uri()
    exp = c.create_experiment("sweep", artifact_location=art)
    parent = c.create_run(exp, run_name="sweep 1", tags={"gnnddm.kind": "sweep"}).info.run_id
    c.set_terminated(parent, "FINISHED")
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.scatter([0, 1, 2], [0, 1, 0], c=[0, 1, 2])
    pmap = root / "partition_map.png"
    fig.savefig(pmap)
    plt.close(fig)
    unit = {"rounds": 1.0, "grad_evals": 1.0, "wall_time": 1.0, "model_time": 1.0, "comm_bytes": 0.0}
    ranks = {f"cost/rank{r}/{ph}": t for r in range(4) for ph, t in (("compute", 2.0), ("communicate", 0.5),
                                                                      ("wait", 0.1 * r))}
    ids = {
        "global": _log_run(c, exp, "global-p1", unit, [1.0, 0.5, 0.3, 0.2], parent, _tags("global", 1),
                           extra={"cost/iterations": 8}),
        "asm": _log_run(c, exp, "asm-p4", {"rounds": 3.0, "grad_evals": 1.25, "wall_time": 0.75, "model_time": 0.5,
                                           "comm_bytes": 1000.0},
                        [0.6, 0.28, 0.1], parent, _tags("asm", 4), extra=ranks, artifact=pmap),
        "local_avg": _log_run(c, exp, "local_avg-p2", unit, [0.9, 0.8, 0.7], parent, _tags("local_avg", 2)),
        "sync": _log_run(c, exp, "sync-p2", unit, [0.9], parent, {**_tags("sync", 2),
                         "gnnddm.error": "training diverged at iteration 2: loss nan"}, status="FAILED"),
        "msm": _log_run(c, exp, "msm-p2", {"rounds": 1.0, "loss": 1.0}, [], parent, _tags("msm", 2)),
    }
    ids["seeds_parent"] = _log_seed_sweep(c, c.create_experiment("seeds", artifact_location=art), unit)
    noeval = c.create_experiment("noeval", artifact_location=art)
    ids["noeval"] = _log_run(c, noeval, "no-eval", {"loss": 1.0}, [], tags=_tags("asm", 2))
    second = c.create_experiment("second", artifact_location=art)
    ids["second_parent"] = c.create_run(second, run_name="sweep 2", tags={"gnnddm.kind": "sweep"}).info.run_id
    ids["second"] = _log_run(c, second, "global-p1", unit, [1.0, 0.5], ids["second_parent"], _tags("global", 1))
    return {"uri": uri, "client": c, "parent": parent, "ids": ids, "root": root}


def _log_seed_sweep(c, exp, unit) -> str:
    """global p=1, sync p=2 (one process) and sync p=2 (gloo, 2 ranks), seeds 0 and 1, all reaching val/loss
    0.3 at step 6 and ending at 0.2 (seed 0) or 0.25 (seed 1); seed 1's global run spends 2.25 s of model time
    per step, the others as listed."""
    parent = c.create_run(exp, run_name="seeds", tags={"gnnddm.kind": "sweep"}).info.run_id
    c.set_terminated(parent, "FINISHED")
    skill = {"val/baseline_rmse/t2m": 4.0, "test/baseline_rmse/t2m": 5.0, "test/rmse/t2m": 2.0,
             "test/skill/t2m": 60.0, "test/loss": 0.25, "cost/iterations": 8}
    model_time = {("global", 0): 1.0, ("global", 1): 2.25, ("sync", 0): 0.5, ("sync", 1): 1.0,
                  ("gloo", 0): 0.4, ("gloo", 1): 0.75}
    for kind, algo, p, backend, ranks in (("global", "global", 1, "none", 1), ("sync", "sync", 2, "none", 1),
                                          ("gloo", "sync", 2, "gloo", 2)):
        for seed in (0, 1):
            per_step = {**unit, "model_time": model_time[kind, seed], "comm_bytes": 100.0 * (p - 1) * (1 + seed)}
            clocks = {f"cost/rank{r}/{ph}": 1.0 for r in range(ranks) for ph in ("compute", "wait")} \
                if ranks > 1 else {}
            val = [1.0, 0.5, 0.3, 0.2 + 0.05 * seed]
            _log_run(c, exp, f"{kind}-s{seed}", per_step, val, parent, _tags(algo, p, seed, backend, ranks),
                     extra={**skill, "val/skill/t2m": 100 * (1 - 2.0 / 4.0) + seed, **clocks},
                     params={"seed": seed, "task.lead": 1})
    return parent


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    code = main(["--tracking-uri", store["uri"], "--parent", store["parent"], "--target-val-loss", "0.3",
                 "--output", str(out)])
    assert code == 0
    with open(out / "comparison.csv") as fh:
        rows = {r["run_name"]: r for r in csv.DictReader(fh)}
    return {"out": out, "rows": rows, "md": (out / "comparison.md").read_text()}


def test_table_has_every_run_with_time_to_target_and_speedup(report):
    rows = report["rows"]
    assert set(rows) == {"global-p1", "asm-p4", "local_avg-p2", "sync-p2", "msm-p2"}
    a = rows["asm-p4"]
    assert (a["algorithm"], a["p"], a["partitioner"], a["overlap"], a["model"], a["iterations"]) \
        == ("asm", "4", "metis", "1", "sage", "6")
    got = {k: float(a[k]) for k in ("rounds_to_target", "epochs_to_target", "wall_time_to_target",
                                    "model_time_to_target", "speedup_model_time", "speedup_wall_time",
                                    "efficiency_model_time", "efficiency_wall_time", "final_val_loss",
                                    "val/rmse/t2m", "comm_bytes_to_target", "comm_bytes")}
    assert got == pytest.approx({"rounds_to_target": 12, "epochs_to_target": 5, "wall_time_to_target": 3,
                                 "model_time_to_target": 2, "speedup_model_time": 3, "speedup_wall_time": 2,
                                 "efficiency_model_time": 0.75, "efficiency_wall_time": 0.5,
                                 "final_val_loss": 0.1, "val/rmse/t2m": 1.0, "comm_bytes_to_target": 4000,
                                 "comm_bytes": 6000})
    assert (a["seed"], a["backend"], a["ranks"]) == ("0", "none", "1")
    g = rows["global-p1"]
    assert (float(g["model_time_to_target"]), float(g["speedup_model_time"]), g["note"]) == (6.0, 1.0, "baseline")
    assert g["iterations"] == "8"
    assert rows["local_avg-p2"]["rounds_to_target"] == "not reached"
    assert rows["local_avg-p2"]["speedup_model_time"] == "not reached"


def test_failed_and_incomplete_runs_are_rows_with_the_reason(report):
    sync, msm = report["rows"]["sync-p2"], report["rows"]["msm-p2"]
    assert sync["status"] == "failed" and "training diverged at iteration 2" in sync["note"]
    assert msm["status"] == "finished" and "missing metric val/loss" in msm["note"]
    assert msm["model_time_to_target"] == "n/a"
    md = report["md"]
    assert "val/loss <= 0.3" in md and "failed runs: 1 (sync-p2)" in md
    assert "| sync-p2 |" in md and "| failed |" in md and "not reached" in md


PLOTS = ("val_loss_vs_rounds", "val_loss_vs_grad_evals", "val_loss_vs_wall_time", "val_loss_vs_model_time",
         "speedup", "efficiency", "comm_bytes", "rank_times")


def test_plots_are_written_as_png_and_pdf_and_linked(report):
    out = report["out"]
    maps = list((out / "partition_maps").glob("asm-p4-*.png"))
    assert len(maps) == 1
    for path in [out / f"{n}.png" for n in PLOTS] + maps:
        assert path.stat().st_size > 1000, path
        assert matplotlib.image.imread(path).ndim == 3
        assert path.relative_to(out).as_posix() in report["md"]
    for name in PLOTS:
        assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF"), name
        assert f"([PDF]({name}.pdf))" in report["md"]


def test_report_is_attached_to_the_sweep_parent(store, report):
    paths = {a.path for a in store["client"].list_artifacts(store["parent"], "report")}
    assert {"report/comparison.md", "report/comparison.csv", "report/groups.csv", "report/skill.csv",
            "report/speedup.png", "report/speedup.pdf"} <= paths


def test_default_target_and_baseline_come_from_the_global_run(store, tmp_path):
    res = build_report(store["uri"], experiment="sweep", output=tmp_path, log=False)
    assert len(res["rows"]) == 5  # the sweep parent is not a training run
    assert res["baseline"] == store["ids"]["global"]
    assert res["target"] == pytest.approx(0.2 * 1.02)
    asm = next(r for r in res["rows"] if r["algorithm"] == "asm")
    assert asm["model_time_to_target"] == 3.0 and asm["speedup_model_time"] == pytest.approx(8 / 3)
    # --target-from, --baseline by key=value and --group-by change what the user asked for, nothing else
    res2 = build_report(store["uri"], experiment="sweep", output=tmp_path, log=False, baseline="algorithm=asm",
                        target_from=store["ids"]["asm"], target_tol=0.0, group_by=["p", "algorithm"])
    assert res2["target"] == pytest.approx(0.1) and res2["baseline"] == store["ids"]["asm"]
    assert [r["p"] for r in res2["rows"]] == [1, 2, 2, 2, 4]


def test_no_log_leaves_the_parent_alone_and_a_shared_parent_is_found(store, tmp_path, capsys):
    c, q = store["client"], store["ids"]["second_parent"]
    assert main(["--tracking-uri", store["uri"], "--experiment", "second", "--output", str(tmp_path),
                 "--no-log"]) == 0
    assert c.list_artifacts(q) == []
    assert main(["--tracking-uri", store["uri"], "--experiment", "second", "--output", str(tmp_path)]) == 0
    assert [a.path for a in c.list_artifacts(q)] == ["report"]
    assert f"attached to MLflow run {q}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--experiment", "nope"], "'nope': no such experiment .*existing: Default, noeval, second, seeds, sweep"),
        (["--experiment", "noeval"], "none of the 1 runs logged the metric val/loss \\(no-eval\\)"),
        (["--parent", "PARENT", "--baseline", "algorithm=foo"],
         "--baseline algorithm=foo: matches none of the 5 selected runs .*algorithm values present: asm, global"),
        (["--parent", "PARENT", "--target-from", "algorithm=msm"],
         "--target-from: run 'msm-p2' .* logged no val/loss metric"),
        (["--runs", "0123abcd"], "--runs: no run with id '0123abcd'"),
        (["--parent", "PARENT", "--group-by", "colour"], "--group-by: unknown key 'colour'"),
    ],
)
def test_user_errors_exit_2_with_one_clear_message(store, tmp_path, capsys, args, message):
    args = [store["parent"] if a == "PARENT" else a for a in args]
    assert main(["--tracking-uri", store["uri"], *args, "--output", str(tmp_path), "--no-log"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gnnddm: error: ") and err.count("\n") == 1
    import re

    assert re.search(message, err), err


def test_missing_store_is_an_error_not_a_new_database(tmp_path, capsys):
    assert main(["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--experiment", "x"]) == 2
    assert "no MLflow store at" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


@pytest.fixture(scope="module")
def seeds(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds")
    res = build_report(store["uri"], parent=store["ids"]["seeds_parent"], target_val_loss=0.3, output=out,
                       log=False)
    return {**res, "by_name": {r["run_name"]: r for r in res["rows"]}}


def test_each_seed_is_compared_with_its_own_baseline(seeds):
    rows = seeds["by_name"]
    assert set(seeds["baselines"]) == {"0", "1"}
    for s in (0, 1):
        base = rows[f"global-s{s}"]
        assert (base["speedup_model_time"], base["efficiency_model_time"], base["note"]) == (1.0, 1.0, "baseline")
        assert rows[f"sync-s{s}"]["baseline_id"] == base["run_id"] == seeds["baselines"][str(s)]
    # seed 1: baseline 2.25 s/step x 6 steps, sync 1.0 s/step: speedup 2.25, efficiency 1.125 (not 2.25 / 2 x 2.25)
    assert rows["sync-s1"]["speedup_model_time"] == pytest.approx(2.25)
    assert rows["sync-s1"]["efficiency_model_time"] == pytest.approx(1.125)
    assert rows["sync-s0"]["efficiency_model_time"] == pytest.approx(1.0)
    assert [r["seed"] for r in seeds["rows"]][:2] == [0, 1]


def test_the_default_target_is_reached_by_every_seeds_baseline(store, tmp_path):
    res = build_report(store["uri"], experiment="seeds", output=tmp_path, log=False)
    assert res["target"] == pytest.approx(0.25 * 1.02)
    assert res["target_source"] == "largest final val/loss of the 2 seed baselines (`global-s1`) x (1 + 0.02)"
    assert all(r["rounds_to_target"] == 8 for r in res["rows"])
    assert [r["speedup_model_time"] for r in res["rows"] if r["algorithm"] == "global"] == [1.0, 1.0]


def test_default_groups_separate_backend_and_ranks_and_summarise_the_seeds(seeds):
    assert seeds["group_by"] == ["algorithm", "num_parts", "backend", "ranks"]
    groups = {(g["algorithm"], g["backend"]): g for g in seeds["groups"]}
    assert set(groups) == {("global", "none"), ("sync", "none"), ("sync", "gloo")}
    gloo = groups["sync", "gloo"]
    assert (gloo["n"], gloo["reached"], gloo["ranks"]) == (2, 2, "2")
    # model time to target 6 x 0.4 and 6 x 0.75; speedups 1.0 / 0.4 and 2.25 / 0.75
    mt, sp = gloo["model_time_to_target"], gloo["speedup_model_time"]
    assert (mt.mean, mt.low, mt.high, mt.n) == pytest.approx((3.45, 2.4, 4.5, 2))
    assert (sp.mean, sp.low, sp.high, sp.n) == pytest.approx((2.75, 2.5, 3.0, 2))
    assert (groups["global", "none"]["speedup_model_time"].low, groups["global", "none"]["speedup_model_time"].high) \
        == (1.0, 1.0)
    with open(seeds["output"] / "groups.csv", newline="") as fh:
        csv_rows = {(r["algorithm"], r["backend"]): r for r in csv.DictReader(fh)}
    assert float(csv_rows["sync", "gloo"]["speedup_model_time_max"]) == pytest.approx(3.0)
    md = (seeds["output"] / "comparison.md").read_text()
    assert "## Groups by algorithm, num_parts, backend, ranks" in md and "[min, max]" in md
    assert "| sync | 2 | gloo | 2 | 2 | 0 | 2 | 6 | 6 | 6 | 3.45 [2.4, 4.5] | 900 [600, 1200] | 2.75 [2.5, 3] |" in md


def test_skill_table_per_group_and_variable(seeds):
    with open(seeds["output"] / "skill.csv", newline="") as fh:
        rows = {(r["algorithm"], r["backend"], r["variable"]): r for r in csv.DictReader(fh)}
    sync = rows["sync", "none", "t2m"]
    assert float(sync["val_skill_pct"]) == pytest.approx(50.5)  # 50 and 51 over the two seeds
    assert (float(sync["val_skill_pct_min"]), float(sync["val_skill_pct_max"]), sync["n"]) == (50.0, 51.0, "2")
    # the last val/rmse/t2m: 10 x the final loss 0.2 (seed 0) and 0.25 (seed 1)
    assert [float(sync[k]) for k in ("val_rmse", "val_rmse_min", "val_rmse_max")] == pytest.approx([2.25, 2.0, 2.5])
    assert float(sync["val_baseline_rmse"]) == 4.0
    assert (float(sync["test_rmse"]), float(sync["test_skill_pct"])) == (2.0, 60.0)
    md = (seeds["output"] / "comparison.md").read_text()
    assert "## Skill against the reference method" in md and "persistence" in md


def test_the_command_prints_what_it_wrote(store, tmp_path, capsys):
    assert main(["--tracking-uri", store["uri"], "--parent", store["ids"]["seeds_parent"], "--output",
                 str(tmp_path), "--no-log"]) == 0
    out = capsys.readouterr().out
    assert "comparison.csv, groups.csv, skill.csv and 8 plots (PNG and PDF) for 6 runs in 3 groups" in out
    assert "by algorithm, num_parts, backend, ranks" in out
