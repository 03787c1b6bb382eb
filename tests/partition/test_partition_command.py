"""`gnnddm partition`: report, summary.json and map, with the data pipeline replaced by a tiny grid."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from gnnddm.commands.partition import run_partition
from gnnddm.config import compose
from gnnddm.data import pipeline
from gnnddm.errors import ConfigError


def config(name: str = "metis", **values):
    cfg = compose([f"partition={name}"])
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


@pytest.fixture
def tiny_problem(monkeypatch, tiny_data):
    calls = []

    def build_problem(cfg):
        calls.append(cfg)
        return pipeline.Problem(data=tiny_data, split=None)

    monkeypatch.setattr(pipeline, "build_problem", build_problem)
    return calls


def test_writes_summary_and_map_and_prints_report(tiny_problem, tmp_path, capsys):
    cfg = config(**{"partition.num_parts": 3, "partition.overlap": 2, "partition.plot_cut_edges": True,
                    "output_dir": str(tmp_path)})
    summary = run_partition(cfg)
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["status"] == "finished"
    p = summary["partition"]
    assert (p["method"], p["num_parts"], p["overlap"]) == ("metis", 3, 2)
    assert 0 < p["edge_cut_fraction"] < 1 and p["imbalance"] >= 1 and p["halo_ratio"] > 0
    assert sum(p["part_sizes"]) == 32
    assert summary["graph"] == {"num_nodes": 32, "num_edges": 208}
    assert set(summary["timings"]) >= {"build_problem", "partition", "total"}
    assert (tmp_path / "partition_map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp"))
    out = capsys.readouterr().out
    assert "Partition: 3 parts (metis), overlap 2" in out and "halo ratio" in out


def test_defaults_to_the_working_directory(tiny_problem, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_partition(config("geometric"))
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "partition_map.png").is_file()


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"partition._target_": "gnnddm.partition.spectral.partition"}, "partition._target_: "),
        ({"partition.overlap": -1}, "partition.overlap: must be >= 0"),
        ({"partition.num_parts": 0}, "partition.num_parts: must be >= 1"),
    ],
)
def test_bad_settings_fail_before_loading_data(tiny_problem, tmp_path, values, match):
    with pytest.raises(ConfigError, match=match):
        run_partition(config(output_dir=str(tmp_path), **values))
    assert tiny_problem == []
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and match.split(":")[0] in summary["error"]


def test_too_many_parts_for_the_graph_is_reported(tiny_problem, tmp_path):
    with pytest.raises(ConfigError, match=r"partition\.num_parts: must be between 1 and the number of nodes \(32\)"):
        run_partition(config(output_dir=str(tmp_path), **{"partition.num_parts": 40}))
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"
