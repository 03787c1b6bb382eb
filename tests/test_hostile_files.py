"""A planted ``model.pt`` or checkpoint runs no code: ``gnnddm evaluate`` and ``resume=true`` refuse it with one
line naming the file and the key, and no file is created or changed; honest files still evaluate and resume."""

from __future__ import annotations

import builtins
import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from gnnddm.bundle import FORMAT, VERSION, load_model
from gnnddm.cli import main
from gnnddm.config import compose
from gnnddm.errors import ConfigError, DataError
from gnnddm.testing.runs import cli_error, run_cli, tiny_run_in
from gnnddm.training import train

PRECIOUS = "the contents a planted file must not touch"


class _Payload:
    """A pickle that creates ``marker`` when it is unpickled (``open(marker, "w")`` in ``__reduce__``)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def _honest_config(tmp_path: Path) -> dict:
    return OmegaConf.to_container(compose(tiny_run_in(tmp_path, "tracking.enabled=false")), resolve=True)


def _plant_model(folder: Path, config: dict) -> Path:
    """A ``model.pt`` with every field of the bundle (weights of no model) and ``config``."""
    folder.mkdir(exist_ok=True)
    torch.save({"format": FORMAT, "version": VERSION, "model": {"w": torch.zeros(2)}, "iteration": 1,
                "config": config, "variables": ["t2m"], "units": ["K"],
                "normalisation": {"mean": [0.0], "std": [1.0]}, "graph": {}, "task": {}, "architecture": {},
                "versions": {}}, folder / "model.pt")
    return folder / "model.pt"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(capsys, root: Path, argv: list[str], *words: str) -> str:
    """``gnnddm evaluate argv`` exits 2 with one line naming ``words``, and no file under ``root`` changed."""
    before = _files(root)
    err = cli_error(capsys, ["evaluate", *argv], *words)
    assert _files(root) == before
    return err


def _hostile(tmp_path: Path) -> dict[str, tuple[str, object]]:
    """Sections planted in a stored configuration: name -> (dotted key, value); each would create
    ``pwned`` or truncate ``victim.txt`` if it were built."""
    victim, pwned, pickled = tmp_path / "victim.txt", tmp_path / "pwned", tmp_path / "evil.pkl"
    return {
        "open": ("data", {"_target_": "builtins.open", "file": str(victim), "mode": "w"}),
        "system": ("data", {"_target_": "os.system", "command": f"touch {pwned}"}),
        "torch_load": ("data", {"_target_": "torch.load", "f": str(pickled), "weights_only": False}),
        "partial_model": ("model", {"_target_": "os.system", "_partial_": True, "command": f"touch {pwned}"}),
        "args": ("data", {"_target_": "gnnddm.data.synthetic.load_synthetic", "_args_": [f"touch {pwned}"]}),
        "nested": ("data.seed", {"_target_": "builtins.open", "file": str(victim), "mode": "w"}),
        # the optimizer's schema is open (any torch.optim class with its own keyword arguments)
        "in_a_list": ("optimizer.foo", [1, {"_target_": "os.system", "command": f"touch {pwned}"}]),
        "through_a_module": ("optimizer._target_", "torch.optim.adam.torch.load"),
        "solver": ("ddm.local_solver", {"_target_": "os.system", "_partial_": True, "lr": 0.1}),
        "root": ("trainer.hook", {"_target_": "os.system", "command": f"touch {pwned}"}),
        "decoded": ("data.seed", f"${{oc.decode:'{{_target_: builtins.open, file: {victim}, mode: w}}'}}"),
    }


def _set(config: dict, key: str, value) -> dict:
    out = copy.deepcopy(config)
    *parents, last = key.split(".")
    node = out
    for name in parents:
        node = node[name]
    node[last] = value
    return out


@pytest.fixture
def planted(tmp_path):
    (tmp_path / "victim.txt").write_text(PRECIOUS)
    torch.save(_Payload(tmp_path / "pwned"), tmp_path / "evil.pkl")
    config = _honest_config(tmp_path)
    config["ddm"] = {**OmegaConf.to_container(compose(["ddm=asm"]).ddm, resolve=True)}
    return tmp_path, config


#: the key each planted section is named by in the error
NAMED = {"args": "data._args_", "in_a_list": "optimizer.foo[1]._target_", "decoded": "data.seed",
         "through_a_module": "optimizer._target_"}


@pytest.mark.parametrize("case", ["open", "system", "torch_load", "partial_model", "args", "nested", "in_a_list",
                                  "through_a_module", "solver", "root", "decoded"])
def test_a_planted_configuration_is_refused_naming_the_key_and_runs_nothing(planted, capsys, case):
    tmp_path, config = planted
    key, value = _hostile(tmp_path)[case]
    _plant_model(tmp_path / "run", _set(config, key, value))
    named = NAMED.get(case, f"{key}._target_")
    what = {"args": "not a key of a gnnddm configuration", "decoded": "interpolation"}.get(
        case, "is not a gnnddm component")
    _refused(capsys, tmp_path, [f"output_dir={tmp_path / 'run'}"], f"model.pt: {named}", what)
    assert (tmp_path / "victim.txt").read_text() == PRECIOUS and not (tmp_path / "pwned").exists()


def test_load_model_refuses_what_a_caller_would_build(planted):
    """The bundle's configuration is checked when it is read, for any caller of :func:`load_model`."""
    tmp_path, config = planted
    for case in ("nested", "decoded", "in_a_list"):
        key, value = _hostile(tmp_path)[case]
        path = _plant_model(tmp_path / case, _set(config, key, value))
        with pytest.raises(ConfigError, match=f"{path}: {key}"):
            load_model(path)
    assert not (tmp_path / "pwned").exists()


def test_a_component_whose_module_runs_code_on_import_is_not_imported(planted, monkeypatch, capsys):
    """The ``ddm`` schema is found by importing the class its ``_target_`` names: only after that name is
    known to be one of gnnddm's."""
    tmp_path, config = planted
    (tmp_path / "plugin.py").write_text(f"open({str(tmp_path / 'pwned')!r}, 'w')\nclass Algorithm:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _plant_model(tmp_path / "run", _set(config, "ddm._target_", "plugin.Algorithm"))
    _refused(capsys, tmp_path, [f"output_dir={tmp_path / 'run'}"], "ddm._target_ 'plugin.Algorithm' is not a "
             "gnnddm component", "gnnddm.ddm.asm.ASM")
    assert not (tmp_path / "pwned").exists()


def test_an_override_that_names_a_target_is_refused_before_anything_is_built(planted, capsys):
    tmp_path, config = planted
    _plant_model(tmp_path / "run", config)
    victim = tmp_path / "victim.txt"
    _refused(capsys, tmp_path, [f"output_dir={tmp_path / 'run'}",
                                f"+data.extra={{_target_:builtins.open,file:'{victim}',mode:w}}"],
             "model.pt: data.extra._target_ 'builtins.open' is not a gnnddm component")
    assert victim.read_text() == PRECIOUS


def test_a_stored_configuration_that_the_schema_refuses_names_the_key(planted, capsys):
    tmp_path, config = planted
    _plant_model(tmp_path / "run", _set(config, "model.hidden", -3))
    _refused(capsys, tmp_path, [f"output_dir={tmp_path / 'run'}"], "model.pt: model.hidden")


def test_a_pickled_model_file_is_refused_without_unpickling(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    torch.save({"model": {}, "payload": _Payload(tmp_path / "pwned")}, tmp_path / "run" / "model.pt")
    _refused(capsys, tmp_path, [f"output_dir={tmp_path / 'run'}"], "model.pt: not a readable gnnddm model file",
             "Unsupported global: GLOBAL io.open")
    assert not (tmp_path / "pwned").exists()


def _plant_checkpoint(out: Path, state) -> Path:
    path = out / "checkpoints" / "it0000003.rank0.pt"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return path


@pytest.mark.parametrize("state", ["pickle", "not_a_state"])
def test_a_planted_checkpoint_is_refused_on_resume_and_runs_nothing(tmp_path, state):
    out = tmp_path / "out"
    payload = {"iteration": 3, "model": {}, "algorithm": {}, "numpy_rng": _Payload(tmp_path / "pwned"),
               "torch_rng": torch.get_rng_state()} if state == "pickle" else [1, 2, 3]
    path = _plant_checkpoint(out, payload)
    with pytest.raises(DataError) as caught:
        train(compose(tiny_run_in(tmp_path, "resume=true", "tracking.enabled=false", "trainer.checkpoint_every=1")))
    message = str(caught.value)
    assert message.startswith(f"{path}: not a ") and "\n" not in message, message
    assert not (tmp_path / "pwned").exists()


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    """A run of 2 iterations that checkpoints each one: its model.pt and checkpoints."""
    root = tmp_path_factory.mktemp("honest")
    train(compose(tiny_run_in(root, "tracking.enabled=false", "trainer.max_iterations=2",
                              "trainer.checkpoint_every=1")))
    return root / "out"


def test_an_honest_model_file_evaluates(honest, tmp_path):
    out = Path(shutil.copytree(honest, tmp_path / "out"))
    assert main(["evaluate", f"output_dir={out}"]) == 0
    assert json.loads((out / "evaluate_test.json").read_text())["status"] == "finished"


def test_an_honest_checkpoint_resumes(honest, tmp_path):
    out = Path(shutil.copytree(honest, tmp_path / "out"))
    summary = train(compose(tiny_run_in(tmp_path, "tracking.enabled=false", "trainer.max_iterations=3",
                                        "trainer.checkpoint_every=1", "resume=true")))
    assert summary["status"] == "finished" and summary["resumed_from"] == 2
    assert (out / "checkpoints" / "it0000003.rank0.pt").is_file()


@pytest.mark.slow
def test_the_console_script_refuses_a_planted_model_and_checkpoint(planted):
    tmp_path, config = planted
    _plant_model(tmp_path / "run", _set(config, "data", _hostile(tmp_path)["torch_load"][1]))
    out = run_cli("evaluate", f"output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr[-2000:]
    assert "model.pt: data._target_ 'torch.load' is not a gnnddm component" in out.stderr
    _plant_checkpoint(tmp_path / "out", {"iteration": 3, "payload": _Payload(tmp_path / "pwned")})
    out = run_cli("train", *tiny_run_in(tmp_path, "resume=true", "tracking.enabled=false",
                                        "trainer.checkpoint_every=1"), cwd=tmp_path)
    assert out.returncode == 2 and "it0000003.rank0.pt: not a readable gnnddm checkpoint" in out.stderr, \
        out.stderr[-2000:]
    assert not (tmp_path / "pwned").exists() and (tmp_path / "victim.txt").read_text() == PRECIOUS
