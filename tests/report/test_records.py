"""Seeds, baselines paired by seed, and the default grouping of runs (no MLflow)."""

from __future__ import annotations

from gnnddm.report.records import RunRecord, default_group_keys, override_keys, pair_by_seed, seed
from gnnddm.training.tracking import metric_name

VAL = metric_name("val_loss")


def _run(run_id, start=0, evaluated=True, params=None, **labels):
    tags = {f"gnnddm.{k}": str(v) for k, v in labels.items()}
    hist = {VAL: ([1], [0.5])} if evaluated else {}
    return RunRecord(run_id, run_id, "finished", start, tags=tags, params=params or {}, histories=hist)


def test_seed_is_read_as_an_integer_string():
    assert seed(_run("a", seed="1.0")) == "1" and seed(_run("b", params={"seed": "42"})) == "42"
    assert seed(_run("c")) is None


def test_every_seed_gets_the_oldest_matching_run_of_that_seed_that_evaluated():
    g0 = _run("g0", 1, algorithm="global", seed=0)
    g1_old = _run("g1_old", 2, algorithm="global", seed=1, evaluated=False)  # no val/loss: not a baseline
    g1 = _run("g1", 3, algorithm="global", seed=1)
    g1_late = _run("g1_late", 4, algorithm="global", seed=1)
    sync2 = _run("s2", 5, algorithm="sync", seed=2)
    runs = [sync2, g1_late, g1, g1_old, g0]
    b = pair_by_seed(runs, g0, {"algorithm": "global"})
    assert {s: r.run_id for s, r in b.by_seed.items()} == {"0": "g0", "1": "g1"}
    assert b.of(g1_late).run_id == "g1" and b.of(sync2).run_id == "g0"  # seed 2: the overall baseline
    # a baseline named by run id pairs with its own seed only
    assert {s: r.run_id for s, r in pair_by_seed(runs, g1, None).by_seed.items()} == {"1": "g1"}
    assert pair_by_seed(runs, None, {"algorithm": "global"}).of(g0) is None


def test_default_groups_are_the_labels_that_differ_never_the_seed():
    runs = [_run(f"{a}{s}{b}", algorithm=a, num_parts=p, overlap=1, seed=s, backend=b, ranks=n)
            for a, p in (("global", 1), ("sync", 2)) for s in (0, 1) for b, n in (("none", 1), ("gloo", 2))]
    assert default_group_keys(runs) == ["algorithm", "num_parts", "backend", "ranks"]
    same = [_run("a", algorithm="asm", seed=0), _run("b", algorithm="asm", seed=1)]
    assert default_group_keys(same) == []


def test_overridden_config_keys_that_differ_join_the_groups():
    def run(run_id, steps, s):
        return _run(run_id, params={"ddm.local_steps": str(steps), "seed": str(s), "partition.num_parts": "2"},
                    algorithm="asm", overrides=f"ddm=asm ddm.local_steps={steps} seed={s} partition.num_parts=2")

    runs = [run("a", 1, 0), run("b", 1, 1), run("c", 3, 0)]
    assert override_keys(runs[0]) == ["ddm", "ddm.local_steps", "seed", "partition.num_parts"]
    assert default_group_keys(runs) == ["ddm.local_steps"]
    listed = _run("d", overrides='["+experiment=quickstart", "seed=1"]')
    assert override_keys(listed) == ["experiment", "seed"]
