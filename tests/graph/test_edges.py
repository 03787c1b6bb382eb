import numpy as np

from gnnddm.graph.edges import add_self_loops, coalesce, is_symmetric, remove_self_loops, symmetrise


def test_symmetrise_is_union_in_canonical_order():
    e = np.array([[1, 2, 2, 0], [0, 0, 0, 2]])  # 1->0, 2->0 (twice), 0->2
    s = symmetrise(e, 3)
    pairs = set(map(tuple, s.T))
    assert pairs == {(1, 0), (0, 1), (2, 0), (0, 2)}
    assert s.shape[1] == 4  # duplicates removed
    keys = s[1] * 3 + s[0]
    assert np.all(np.diff(keys) > 0)  # sorted by target, then source
    assert is_symmetric(s, 3)
    assert not is_symmetric(e, 3)


def test_self_loops_added_once_and_removed():
    e = coalesce(np.array([[0, 1, 1], [1, 0, 1]]), 2)
    with_loops = add_self_loops(e, 2)
    assert set(map(tuple, with_loops.T)) == {(0, 1), (1, 0), (1, 1), (0, 0)}
    assert (remove_self_loops(with_loops)[0] != remove_self_loops(with_loops)[1]).all()


def test_is_symmetric_checks_weights():
    e = np.array([[0, 1], [1, 0]])
    assert is_symmetric(e, 2, np.array([0.5, 0.5]))
    assert not is_symmetric(e, 2, np.array([0.5, 0.7]))
