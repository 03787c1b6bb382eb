"""Every input error: one line naming the key or file, exit status 2, no traceback, no run left RUNNING."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from gnnddm.config import compose
from gnnddm.errors import ConfigError
from gnnddm.testing.runs import TWO_ITERATIONS, run_cli, tiny_run_in
from gnnddm.training import train


def _one_error(out, *words):
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    for w in words:
        assert w in out.stderr, (w, out.stderr[-2000:])


@pytest.mark.slow
def test_unknown_option_of_a_group_exits_2_listing_the_options(tmp_path):
    _one_error(run_cli("train", "model=no_such_model", cwd=tmp_path), "model/no_such_model", "sage")


@pytest.mark.parametrize("key", ["hydra.run.dir", "output_dir"])
@pytest.mark.slow
def test_a_folder_that_cannot_be_created_names_its_key(tmp_path, key):
    _one_error(run_cli("train", *TWO_ITERATIONS, f"{key}=/proc/gnnddm/x", cwd=tmp_path), f"{key}=/proc/gnnddm/x",
               "cannot be created")
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_more_parts_than_nodes_is_an_error_also_for_the_global_baseline(tmp_path):
    out = run_cli("train", *TWO_ITERATIONS, "ddm=global", "partition.num_parts=10000000", "hydra.run.dir=run",
                  cwd=tmp_path)
    _one_error(out, "partition.num_parts=10000000 exceeds the 2048 nodes")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(
        summary["mlflow_run_id"]).info.status == "FAILED"


@pytest.mark.parametrize("override,key", [("optimizer.lr=-1", "optimizer.lr"),
                                          ("ddm=asm ddm.local_solver.lr=0", "ddm.local_solver.lr")])
def test_a_learning_rate_that_is_not_positive_names_the_key(tmp_path, override, key):
    with pytest.raises(ConfigError, match=f"{key}: a learning rate must be > 0"):
        train(compose(tiny_run_in(tmp_path, *override.split())))


@pytest.mark.slow
def test_documented_var_weights_override_works(tmp_path):
    summary = train(compose(tiny_run_in(tmp_path, "task.var_weights={t2m:2.0}", "trainer.max_iterations=1")))
    assert summary["status"] == "finished"


@pytest.mark.slow
def test_resume_after_changing_the_model_names_the_changed_keys(tmp_path):
    train(compose(tiny_run_in(tmp_path, "trainer.max_iterations=2")))
    with pytest.raises(ConfigError, match=r"resume=true: .*model.hidden: 8 -> 16"):
        train(compose(tiny_run_in(tmp_path, "model.hidden=16", "resume=true", "trainer.max_iterations=3")))


@pytest.mark.slow
@pytest.mark.parametrize(("override", "words"), [
    ("task.obs.error={t2m:0,msl:100,u10:1,v10:1}", ["task.obs.error: t2m: must be > 0, got 0"]),
    ("task.obs.count=0", ["task.obs: no observation site"]),
    ("task.background.kind=model task.background.model=/nonexistent", ["/nonexistent", "no such file"]),
])
def test_bad_assimilation_settings_exit_2_naming_the_key(tmp_path, override, words):
    out = run_cli("train", *TWO_ITERATIONS, "task=assimilate", *override.split(), "hydra.run.dir=run", cwd=tmp_path)
    _one_error(out, *words)
    if (tmp_path / "mlflow.db").exists():  # a run opened before the error ends FAILED, none RUNNING
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
        runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
        assert {r.info.status for r in runs} <= {"FAILED"}
