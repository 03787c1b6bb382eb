"""The algorithm-test helpers' docstring examples run, and their hand-count set-up is what they say."""

from __future__ import annotations

import doctest
import importlib

from gnnddm.testing.algorithms import counting_setup, seeded_model, seeded_problem
from gnnddm.testing.gallery import problem


def test_docstring_examples_run():
    result = doctest.testmod(importlib.import_module("gnnddm.testing.algorithms"))
    assert result.attempted > 0 and result.failed == 0


def test_the_counting_setup_has_three_parts_and_a_coarse_level():
    objective, _, n_loc, loc, coarse, _ = counting_setup()
    assert objective.num_parts == 3 and n_loc == sum(loc) and coarse > 0


def test_the_same_seed_gives_the_same_weights():
    (_, m1, _), (_, m2, _) = seeded_problem(seed=4), seeded_problem(seed=4)
    _, _, _, task, _ = problem()
    m3, m4 = seeded_model(task, seed=4), seeded_model(task, seed=4)
    for a, b in (*zip(m1.parameters(), m2.parameters(), strict=True),
                 *zip(m3.parameters(), m4.parameters(), strict=True)):
        assert a.equal(b)
