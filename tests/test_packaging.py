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


def test_code_imported_from_another_checkout_reads_that_checkouts_defaults(tmp_path):
    """A second checkout on PYTHONPATH (a worktree that a benchmark runs from) composes its own conf/, not
    the one an editable install of the first points at: a default changed in one tree must not reach runs
    of the other."""
    import shutil

    shutil.copytree(ROOT / "gnnddm", tmp_path / "gnnddm", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("__pycache__"))
    apts = tmp_path / "conf" / "ddm" / "apts.yaml"
    apts.write_text(apts.read_text().replace("\ngamma_dec: 0.5", "\ngamma_dec: 0.75"))
    code = ("import gnnddm.config as c; print(c.config_dir()); "
            "print(c.compose(['ddm=apts']).ddm.gamma_dec)")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    where, gamma = out.stdout.split()
    assert (Path(where), float(gamma)) == ((tmp_path / "conf").resolve(), 0.75)
    assert compose(["ddm=apts"]).ddm.gamma_dec == 0.5  # this process still reads its own tree


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
