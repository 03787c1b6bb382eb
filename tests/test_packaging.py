"""The config tree resolves from a regular (non-editable) install, not only from the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gnnddm.config import compose, config_dir

ROOT = Path(__file__).resolve().parents[1]


def test_config_dir_is_the_repository_conf_in_a_checkout():
    assert (config_dir() / "config.yaml").is_file()
    assert {p.name for p in (config_dir() / "experiment").glob("*.yaml")} >= {"quickstart.yaml"}


def test_compose_default_config_has_the_contract_keys():
    cfg = compose([])
    for key in ("seed", "data", "graph", "partition", "model", "ddm", "optimizer", "trainer", "tracking",
                "distributed", "resume", "verbose"):
        assert key in cfg, key
    assert cfg.tracking.uri == "sqlite:///mlflow.db"
    assert "num_parts" in cfg.partition and "overlap" in cfg.partition


@pytest.mark.slow
def test_wheel_ships_the_config_tree_and_it_resolves(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "wheel")],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (wheel,) = (tmp_path / "wheel").glob("gnnddm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "gnnddm/conf/config.yaml" in names
    assert "gnnddm/conf/experiment/quickstart.yaml" in names
    for init in (ROOT / "gnnddm").glob("*/__init__.py"):  # every subpackage is shipped
        assert f"gnnddm/{init.parent.name}/__init__.py" in names, init.parent.name
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    # Run from a folder outside the checkout with only the installed copy of gnnddm importable.
    code = (
        "import gnnddm.config as c; from pathlib import Path; d = c.config_dir(); "
        f"assert Path(d).is_relative_to({str(target)!r}), d; "
        "cfg = c.compose(['+experiment=quickstart']); print(cfg.trainer.max_iterations)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().isdigit()


def test_every_package_of_the_source_tree_is_in_the_wheel_list():
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "gnnddm").rglob("__init__.py")}
    assert found - listed == set(), "packages missing from pyproject.toml [tool.setuptools] packages"
