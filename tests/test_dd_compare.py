"""The algorithm-comparison experiments and their benchmark: they compose to the documented problem, one
cell of the sweep runs, and the benchmark's command line answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gnnddm.config import compose, options
from gnnddm.training import train

ALGORITHMS = options("ddm")

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("experiment", ["dd_compare", "dd_compare_era5"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_experiment_composes_with_every_algorithm_and_an_exact_overlap(experiment, algorithm):
    cfg = compose([f"+experiment={experiment}", f"ddm={algorithm}", "partition.num_parts=4"])
    assert cfg.ddm.name == algorithm
    assert cfg.partition.name == "metis"
    assert cfg.partition.num_parts == 4
    # overlap = message-passing layers: the subdomain losses sum to the global loss (sync == global)
    assert cfg.partition.overlap == cfg.model.layers == 2
    assert cfg.model._target_.endswith("GraphSAGE") and cfg.model.hidden == 32
    assert cfg.trainer.target_val_loss is None


def test_synthetic_experiment_is_the_documented_problem():
    cfg = compose(["+experiment=dd_compare"])
    assert cfg.data._target_.endswith("load_synthetic")
    assert cfg.data.resolution == 2.8125 and cfg.data.steps >= 200
    assert cfg.trainer.eval_every <= 10
    era5 = compose(["+experiment=dd_compare_era5"])
    assert era5.data.path == "sample:era5_sample_1deg.nc"


@pytest.mark.slow
def test_one_tiny_sweep_cell_runs_and_counts_rounds(tmp_path):
    cfg = compose(["+experiment=dd_compare", "ddm=asm", "partition.num_parts=2", "data.resolution=5.625",
                   "data.steps=40", "model.hidden=8", "trainer.max_iterations=2", "trainer.eval_every=1",
                   "trainer.progress=false", "tracking.enabled=false", f"output_dir={tmp_path}"])
    summary = train(cfg)
    assert summary["status"] == "finished"
    assert summary["accounting"]["iterations"] == 2
    assert summary["accounting"]["rounds"] > 0
    assert summary["partition"]["num_parts"] == 2 and summary["partition"]["exact"]
    assert set(summary["final"]["val_rmse"]) == {"t2m", "msl", "u10", "v10"}


@pytest.mark.slow
def test_benchmark_help_exits_zero():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_dd.py"), "--help"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--quick" in out.stdout and "--output" in out.stdout


@pytest.mark.slow
def test_multilevel_benchmark_quick_run_writes_its_blocks(tmp_path):
    page = tmp_path / "multilevel.md"
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_multilevel.py"), "--quick", "--parts", "0",
                          "--only", "0", "--output", str(page)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    text = page.read_text()
    assert "<!-- bench_multilevel:study:begin\ncommit: " in text and "| global | 1/1 |" in text
    assert "multilevel grid L=3" in text and "goal" in text


@pytest.mark.slow
def test_iteration_benchmark_quick_run_prints_both_times_and_their_ratio(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_iteration.py"), "--resolution", "5.625",
                          "--iterations", "4", "--repeats", "2"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "whole iteration of gnnddm train:" in out.stdout and "bare step of the same network:" in out.stdout
    assert "ratio iteration / bare step:" in out.stdout


@pytest.mark.slow
def test_data_benchmark_quick_run_prints_memory_speed_and_rank_reads(tmp_path):
    env = {**os.environ, "GNNDDM_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_data.py"), "--resolution", "5.625",
                          "--steps", "60", "--iterations", "4", "--rank-iterations", "3", "--partition", "contiguous",
                          "--store", str(tmp_path / "s.zarr")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "written in" in text and "statistics streamed" in text and "lazy / in memory:" in text
    # a latitude band reads its own rows of each step, whole, and no other
    ranks = [line for line in text.splitlines() if line.startswith("rank ")]
    assert len(ranks) == 2 and all("peak" in line and "grid points per step" in line for line in ranks)
    for line in ranks:
        read, total = map(int, re.search(r"reads (\d+) of (\d+) grid points", line).groups())
        held = int(re.search(r"holding (\d+) nodes", line).group(1))
        assert held <= read <= held + 2 * 64 < total  # at most the two partial rows at the band's edges (64 wide)


# ------------------------------------------------------------------------------ the verdicts' noise
def _benchmark(name: str):
    """benchmarks/``name``.py as a module, registered under its name (its dataclasses look their module up;
    bench_multilevel imports bench_dd)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    module = sys.modules[name]
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module


def _bench_dd():
    return _benchmark("bench_dd")


def _runs(bd, times, epochs):
    v = bd.Variant("x", "global")
    return [bd.Run(v, seed, 10, 10, at={"model_time_multinode": t, "grad_evals": e})
            for seed, (t, e) in enumerate(zip(times, epochs, strict=True))]


def test_a_verdict_says_within_noise_when_the_seed_ranges_overlap():
    bd = _bench_dd()
    local_avg = _runs(bd, [4.04, 3.60, 5.02], [110, 99, 121])
    halo = _runs(bd, [4.32, 4.05, 4.60], [99, 99, 99])
    assert bd.noise(local_avg, halo, "model_time_multinode").endswith("within noise")
    apart = _runs(bd, [1.0, 1.1, 1.2], [99, 99, 99])
    assert bd.noise(apart, halo, "model_time_multinode").endswith("outside the seed ranges")
    assert "no noise estimate" in bd.noise(apart[:1], halo[:1], "model_time_multinode")
    # per unit of work: 4.04 / 110 s per epoch against 4.32 / 99
    assert bd.per_epoch_ratio(local_avg, halo) == pytest.approx((4.04 / 110) / (4.32 / 99), rel=1e-3)


def test_a_learning_rate_at_the_edge_of_its_grid_is_named():
    bd = _bench_dd()
    assert bd.sweep_edge({1e-3: 0.059, 3e-3: 0.057}, 3e-3).startswith("at the upper edge")
    assert bd.sweep_edge({1e-3: 0.059, 3e-3: 0.057, 1e-2: 0.058}, 3e-3) == "inside the grid"
    assert bd.sweep_edge({1e-3: 0.05, 3e-3: 0.057}, 1e-3).startswith("at the lower edge")


def test_a_diverged_rate_of_the_multilevel_sweep_is_the_worst_and_the_sweep_goes_on(monkeypatch):
    import types

    from gnnddm.errors import TrainingDivergedError

    bd, bm = _bench_dd(), _benchmark("bench_multilevel")
    losses = {3e-3: 0.070, 1e-2: 0.068}

    def fake_run(variant, base, seed, target, client):
        lr = float(next(o for o in variant.overrides if o.startswith("optimizer.lr=")).split("=")[1])
        if lr not in losses:
            raise TrainingDivergedError("training diverged at iteration 2")
        hist = {"val_loss": ([10, 20, 30, 40, 50], [0.1, 0.09, 0.08, 0.075, losses[lr]])}
        return bd.Run(bd.Variant("x", "global"), seed, 50, None, best_val_loss=losses[lr]), hist

    monkeypatch.setattr(bm, "train_run", fake_run)
    args = types.SimpleNamespace(lrs="3e-3,1e-2,3e-2", schedules="constant", budget=50)
    lr, schedule, _, md = bm.lr_sweep(args, [], 0, None, lambda msg: None)
    assert (lr, schedule) == (1e-2, "constant")
    text = "\n".join(md)
    assert "| 0.03 | constant | diverged |" in text and "the rate is inside the grid" in text


def test_the_deep_parts_comparison_runs_every_seed_and_names_the_noise(monkeypatch):
    import types

    bd, bm = _bench_dd(), _benchmark("bench_multilevel")
    # seed -> (halo_sync's modelled time, multilevel's): the ranges [40, 44] and [27, 30] do not overlap
    times = {0: (41.4, 28.6), 1: (40.0, 27.0), 2: (44.0, 30.0)}
    seen = []

    def fake_run(variant, base, seed, target, client):
        seen.append((variant.label, seed, target))
        t = times[seed][variant.label != "halo_sync"]
        rmse = {"t2m": 1.0 + 0.01 * (variant.label != "halo_sync"), "msl": 2.0}
        return bd.Run(variant, seed, 100, 30, at={"model_time_multinode": t, "rounds": 100, "compute_time": t,
                                                   "grad_evals": 90}, rmse=rmse, best_val_loss=0.05), {}

    monkeypatch.setattr(bm, "train_run", fake_run)
    args = types.SimpleNamespace(parts=8, budget=200)
    variant = bm.Variant("ml", ("ddm=multilevel", "partition.num_parts=1"), 100, None)
    targets = {0: 0.0499, 1: 0.0566, 2: 0.0561}
    text = "\n".join(bm.deep_parts_block(args, [], 1e-3, targets, variant, None, lambda msg: None))
    order = [(lab, s) for s in (0, 1, 2) for lab in ("halo_sync", "ml, p = 8")]
    assert [(label, seed) for label, seed, _ in seen] == order
    assert all(targets[seed] == target for _, seed, target in seen)
    x = sorted(m / h for h, m in times.values())[1]  # the median of the per-seed ratios
    assert f"{x:.2f}x of `halo_sync`" in text and "outside the seed ranges" in text
    assert "| ml, p = 8 | 3/3 | 30 [30, 30] | 100 [100, 100] | 28.6 [27.0, 30.0] | 0.68 |" in text
    assert "t2m +1.0%, msl +0.0%" in text
    times[1] = (40.0, 41.0)  # one seed's multilevel time inside halo_sync's range
    seen.clear()
    assert "within noise" in "\n".join(bm.deep_parts_block(args, [], 1e-3, targets, variant, None, lambda m: None))


def test_a_diverged_rate_of_the_dd_sweep_is_the_worst_and_the_sweep_goes_on(monkeypatch, tmp_path):
    import types

    from gnnddm.errors import TrainingDivergedError

    bd = _bench_dd()
    losses = {1e-3: 0.060, 3e-3: 0.057}

    def fake_train(variant, base, target, client):
        lr = float(next(o for o in base if o.startswith("optimizer.lr=")).split("=")[1])
        if lr not in losses:
            raise TrainingDivergedError("training diverged at iteration 2")
        return {"mlflow_run_id": str(lr)}, bd.Run(variant, 0, 50, None, best_val_loss=losses[lr])

    monkeypatch.setattr(bd, "train_variant", fake_train)
    args = types.SimpleNamespace()
    monkeypatch.setattr(bd, "base_overrides", lambda args, regime, parts, seed, lr, uri, out: [f"optimizer.lr={lr}"])
    lr, sweep, runs = bd.lr_sweep(args, "deep", 1, 0, 50, [1e-3, 3e-3, 1e-2], "", tmp_path, None, lambda msg: None)
    assert lr == 3e-3 and set(runs) == {1e-3, 3e-3} and sweep[1e-2] == float("inf")
    assert bd.sweep_edge(sweep, lr) == "inside the grid" and bd._loss(sweep[1e-2]) == "diverged"
    with pytest.raises(SystemExit, match="every rate of the sweep"):
        bd.lr_sweep(args, "deep", 1, 0, 50, [1e-2, 3e-2], "", tmp_path, None, lambda msg: None)


def test_the_convergence_of_a_reference_is_its_gain_over_the_last_fifth():
    bd = _bench_dd()
    steps = [10, 20, 30, 40, 50]
    assert bd.improvement(steps, [0.1, 0.09, 0.08, 0.080, 0.0799]).endswith("converged (< 0.5 %)")
    text = bd.improvement(steps, [0.1, 0.09, 0.08, 0.080, 0.076])  # 0.080 at step 40 = 4/5 of 50
    assert "(5.00 % better)" in text and text.endswith("not converged (>= 0.5 %)")
    assert bd.improvement(steps[:4], [0.1] * 4) == "too few evaluations to judge convergence"


def test_the_coarse_rate_variants_of_the_deep_study_set_the_coarse_rate_once():
    bm = _benchmark("bench_multilevel")
    chosen = bm.variants(100, 1e-2, 10, deep=True, coarse_scales=(0.3, 0.1))
    assert len(chosen) == 5
    for v, rate in zip(chosen, [1e-2, 1e-2, 1e-2, 3e-3, 1e-3], strict=True):
        keys = [o.split("=")[0] for o in v.overrides]
        assert len(keys) == len(set(keys)), v.label  # one value per key: Hydra refuses a key given twice
        assert float(dict(o.split("=", 1) for o in v.overrides)["ddm.coarse_solver.lr"]) == pytest.approx(rate)
    assert chosen[3].label.endswith("coarse lr 0.3x") and "ddm.schedule=[depth]" not in chosen[3].overrides
    assert bm.variants(100, 1e-2, 10, deep=True) == chosen[:3]


def test_the_trust_region_norm_variants_of_asm_compose_with_their_norm():
    from gnnddm.config import compose

    bd = _bench_dd()
    rows = {v.label: v for v in bd.variants("deep", 40, 3e-3, False, tr_norms=True)}
    assert [k for k in rows if k.startswith("asm")] == ["asm m=10", "asm m=10 tr_norm=adam", "asm m=10 tr_norm=adagrad"]
    for norm in ("adam", "adagrad"):
        v = rows[f"asm m=10 tr_norm={norm}"]
        cfg = compose(["+experiment=dd_deep", f"ddm={v.ddm}", *v.overrides])
        assert (cfg.ddm.tr_norm, cfg.ddm.local_steps, cfg.ddm.local_solver.lr) == (norm, 10, 3e-3)
    apts = {v.label: v for v in bd.variants("deep", 40, 3e-3, False, apts=True)}
    assert "ddm.gamma_dec=0.5" in apts["apts N=2 adam gamma_dec=0.5"].overrides
    for r0 in ("0.01", "1"):  # the radius range again with the halved rejection factor: both keys, once each
        cfg = compose(["+experiment=dd_deep", "ddm=apts", *apts[f"apts N=2 adam gamma_dec=0.5 radius0={r0}"].overrides])
        assert (cfg.ddm.gamma_dec, cfg.ddm.radius0, cfg.ddm.blocks, cfg.ddm.tr_norm) == (0.5, float(r0), 2, "adam")
    # every apts row runs the rejection factor its label names, 0.9 where it names none (the factor those rows
    # were measured with), whatever the default: a Hydra key given twice would be refused here
    for label, v in apts.items():
        if v.ddm != "apts":
            continue
        cfg = compose(["+experiment=dd_deep", "ddm=apts", *v.overrides])
        assert cfg.ddm.gamma_dec == (0.5 if "gamma_dec=0.5" in label else 0.9), label
        assert cfg.ddm.local_steps == (1 if label.endswith("m=1") else 3), label
        assert v.max_iterations == (30 if label.endswith(" its") else 10), label
        assert cfg.ddm.local_radius == ("last" if "local_radius=last" in label else "share"), label
        assert cfg.ddm.gamma_inc == (2.0 if "gamma_inc=2" in label else 1.2), label
    for r0 in ("0.01", "1"):  # the radius range with remembered local radii
        v = apts[f"apts N=2 adam gamma_dec=0.5 local_radius=last radius0={r0}"]
        assert compose(["+experiment=dd_deep", "ddm=apts", *v.overrides]).ddm.radius0 == float(r0)
    assert "apts N=2 adam gamma_dec=0.5 30 its" in apts
