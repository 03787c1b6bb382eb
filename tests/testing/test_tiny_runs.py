"""The tiny run composes to the small problem it promises, and a test's overrides replace its own."""

from __future__ import annotations

import doctest
import importlib

from gnnddm.config import compose
from gnnddm.testing.runs import TINY_RUN, TWO_ITERATIONS, tiny_run, tiny_run_in


def test_docstring_examples_run():
    result = doctest.testmod(importlib.import_module("gnnddm.testing.runs"))
    assert result.attempted > 0 and result.failed == 0


def test_the_tiny_run_is_the_small_synthetic_problem():
    cfg = compose(list(TINY_RUN))
    assert cfg.data.resolution == 5.625 and cfg.data.steps == 40
    assert (cfg.model.hidden, cfg.model.layers, cfg.trainer.progress) == (8, 2, False)


def test_an_override_of_a_key_of_the_tiny_run_replaces_it_and_others_follow_it():
    run = tiny_run("model.hidden=16", "partition.num_parts=3")
    assert run == [o for o in TINY_RUN if o != "model.hidden=8"] + ["model.hidden=16", "partition.num_parts=3"]
    assert compose(run).model.hidden == 16


def test_the_variants_compose_to_what_they_name(tmp_path):
    cfg = compose(list(TWO_ITERATIONS))
    assert (cfg.partition.num_parts, cfg.trainer.max_iterations, cfg.trainer.eval_every) == (2, 2, 1)
    cfg = compose(tiny_run_in(tmp_path, "trainer.max_iterations=1", out="here"))
    assert cfg.trainer.max_iterations == 1 and cfg.output_dir == str(tmp_path / "here")
    assert cfg.tracking.uri == f"sqlite:///{tmp_path}/mlflow.db" and cfg.model.hidden == 8
