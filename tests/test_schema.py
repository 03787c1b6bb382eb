"""The config schema: every shipped config validates, every key has a field, every problem names its key."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from gnnddm.config import compose, config_dir, options
from gnnddm.errors import ConfigError
from gnnddm.schema import GROUPS, problems, schema_of, validate
from gnnddm.schema.fields import REQUIRED, spec
from gnnddm.schema.root import RootConfig
from gnnddm.schema.validate import DECLARED

CONF = config_dir()
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
#: the groups with schemas (``ddm`` joins by following gnnddm/schema/__init__.py)
COVERED = ("data", "graph", "partition", "model", "task", "optimizer")
OPTIONS = [(g, p.stem) for g in COVERED for p in sorted((CONF / g).glob("*.yaml"))]


def messages(*overrides: str) -> list[str]:
    return [str(p) for p in problems(compose(list(overrides)))]


# ------------------------------------------------------------------------------ shipped configs validate
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_shipped_experiment_validates(name):
    assert messages(f"+experiment={name}") == []


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_every_option_of_every_group_validates(group, option):
    expected = ["data.path: required, but not given; set it, e.g. on the command line data.path=..."] \
        if (group, option) == ("data", "era5") else []  # your own file: path: ???
    assert messages(f"{group}={option}") == expected


# ----------------------------------------------------------------------- every YAML key has a schema field
def _keys(section, prefix=""):
    """``(key, value)`` of a YAML section, nested sections flattened (``split.train``)."""
    for key, value in section.items():
        if isinstance(value, dict) and not key.startswith("_"):
            yield from _keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _field(schema, dotted: str):
    """The field type of ``dotted`` in ``schema``; a failed assertion naming what is missing."""
    head, _, rest = dotted.partition(".")
    keys = spec(schema)
    assert head in keys, f"{schema.__name__} has no field {head!r}"
    hint = keys[head][0]
    if rest and not dataclasses.is_dataclass(hint):  # a mapping field (per-variable values) holds any keys
        assert dict in (typing.get_origin(hint), *map(typing.get_origin, typing.get_args(hint))), \
            f"{schema.__name__}.{head} is not a section, but {dotted!r} is nested in it"
        return hint
    return _field(hint, rest) if rest else hint


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_every_key_of_every_option_has_a_schema_field(group, option):
    section = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{option}.yaml"))
    assert "defaults" not in section, "a covered option extends another: check the composed keys instead"
    schema = schema_of(group, section["_target_"])
    assert schema is not None, f"conf/{group}/{option}.yaml: no schema for {section['_target_']}"
    open_keys = getattr(schema, "open", False)
    for key, _ in _keys(section):
        if not open_keys:
            _field(schema, key)


def test_every_root_key_has_a_schema_field_with_the_yaml_default():
    root = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"))
    root.pop("defaults"), root.pop("hydra")
    for key, value in _keys(root):
        _field(RootConfig, key)
        head, _, rest = key.partition(".")
        default = spec(RootConfig)[head][2]
        for part in rest.split(".") if rest else ():
            default = getattr(default, part)
        assert default == value, (key, default, value)


def test_every_group_of_the_root_config_is_covered_or_known():
    groups = {next(iter(d)) for d in OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"))["defaults"]
              if isinstance(d, dict) and not next(iter(d)).startswith("override")}
    assert groups == set(COVERED) | {"ddm"}
    # the groups whose classes declare their schema (ddm, model) register none
    assert set(GROUPS) == set(COVERED) - set(DECLARED)


def test_a_schema_joins_its_group_by_being_defined():
    """No table lists the schemas: a Component subclass with a ``_target_`` registers under its group (its
    module's name in gnnddm.schema, or its base's), a specific one before a prefix whatever their order."""
    from gnnddm.schema import fields
    from gnnddm.schema.graph import GraphConfig

    registry = list(fields._REGISTRY)
    try:
        @dataclasses.dataclass
        class AnyDemoGraph(GraphConfig):
            _target_: str = "demo.graphs.any"
            target_prefix = "demo.graphs."

        @dataclasses.dataclass
        class OneDemoGraph(GraphConfig):
            _target_: str = "demo.graphs.one"

        assert AnyDemoGraph.group == OneDemoGraph.group == "graph"
        assert GROUPS["graph"][-2:] == (OneDemoGraph, AnyDemoGraph)
        assert schema_of("graph", "demo.graphs.one") is OneDemoGraph
        assert schema_of("graph", "demo.graphs.other") is AnyDemoGraph
    finally:
        fields._REGISTRY[:] = registry
    assert schema_of("graph", "demo.graphs.one") is None
    # a base without a _target_ is no option; an algorithm's or a model's Config is found from its class
    assert GraphConfig not in GROUPS["graph"] and "ddm" not in GROUPS and "model" not in GROUPS


def test_the_choices_the_schemas_repeat_are_the_components_own():
    from gnnddm.data.synthetic import VARIABLES
    from gnnddm.graph.grid import STENCILS
    from gnnddm.graph.weights import KERNELS, WEIGHTINGS
    from gnnddm.schema import data, graph

    assert graph.KERNELS == KERNELS and graph.WEIGHTINGS == WEIGHTINGS
    assert set(graph.NEIGHBOURS) == set(STENCILS)
    assert set(data.SYNTHETIC_VARIABLES) == set(VARIABLES)


def test_the_lists_a_lower_layer_reads_are_the_schemas_own():
    """``node_weights`` and ``distributed.backend`` are listed once, in the schema, which the partitioners and
    the process-group set-up import (the schema imports neither torch nor them)."""
    from gnnddm.distributed import world
    from gnnddm.partition import partitioners
    from gnnddm.schema import partition, root

    assert partitioners.NODE_WEIGHTS is partition.NODE_WEIGHTS
    assert world.BACKENDS is root.BACKENDS


def test_every_schema_default_is_valid():
    for schemas in GROUPS.values():
        for schema in schemas:
            values = {k: d for k, (_, _, d) in spec(schema).items() if d != REQUIRED}
            instance = schema(**values)  # __post_init__ accepts the defaults
            assert dataclasses.is_dataclass(instance)


# ---------------------------------------------------------------------------- every problem names its key
@pytest.mark.parametrize(("overrides", "expected"), [
    # wrong type
    (["trainer.max_iterations=abc"], "trainer.max_iterations: expected an integer, got 'abc'"),
    (["resume=yes"], "resume: expected true or false, got 'yes'"),
    (["graph.self_loops=1"], "graph.self_loops: expected true or false, got 1"),
    (["task.var_weights={t2m:heavy}"], "task.var_weights: expected a mapping to numbers or null, got {'t2m': 'heavy'}"),
    # out of range
    (["trainer.batch_size=0"], "trainer.batch_size: must be >= 1, got 0"),
    (["tracking.flush_seconds=-1"], "tracking.flush_seconds: must be >= 0, got -1"),
    (["distributed.timeout=0.5"], "distributed.timeout: must be >= 1, got 0.5"),
    (["optimizer.lr=-1"], "optimizer.lr: a learning rate must be > 0, got -1"),
    (["partition.num_parts=0"], "partition.num_parts: must be >= 1, got 0"),
    (["task=interpolate", "task.hide_fraction=1.0"], "task.hide_fraction: must be in (0, 1), got 1.0"),
    (["data=synthetic", "data.resolution=7"], "data.resolution: 7 must divide 180 degrees"),
    (["data=synthetic", "data.variables=[t2m,nope]"], "data.variables: ['nope'] not generated"),
    # unknown choice
    (["distributed.backend=mpi"], "distributed.backend: unknown backend 'mpi'; valid: none, gloo, nccl"),
    (["graph.kernel=cubic"], "graph.kernel: unknown kernel 'cubic'; valid: gaussian, inverse, uniform"),
    (["partition.node_weights=area"], "partition.node_weights: unknown node weighting 'area'; valid: null, "
                                      "valid_count"),
    (["trainer.device=tpu"], "trainer.device: expected cpu, cuda or cuda:N, got 'tpu'"),
    # unknown key
    (["+model.hiden=8"], "model.hiden: not a key of gnnddm.models.sage.GraphSAGE; valid: hidden, layers, aggr, "
                         "residual"),
    (["+trainer.max_iteration=8"], "trainer.max_iteration: not a key of trainer; valid: max_iterations"),
    (["+sead=1"], "sead: not a key of the root config"),
    # keys that depend on each other
    (["model=gatv2", "model.hidden=30"], "model.hidden: must be divisible by model.heads=4, got 30"),
    (["partition=random", "+partition.imbalance=1.1"], "partition.imbalance: not an option of the random "
                                                      "partitioner"),
    (["data.split.train=0.9"], "data.split: fractions train=0.9, val=0.15, test=0.15 must be >= 0"),
    (["task=interpolate", "task.node_split.val=0.9"], "task.node_split: val + test must be < 1"),
    # groups
    (["~model"], "model: config group has no _target_; choose one of the options in conf/model/"),
    (["model._target_=my.Model"], "model._target_: cannot import 'my.Model'; known: "
                                      "gnnddm.models.encode_process_decode.EncodeProcessDecode, "),
    (["data=era5"], "data.path: required"),
    (["ddm=local_avg", "ddm.local_solver.lr=0"], "ddm.local_solver.lr: a learning rate must be > 0, got 0"),
])
def test_each_kind_of_problem_names_the_key_the_value_and_what_is_valid(overrides, expected):
    found = messages(*overrides)
    assert any(m.startswith(expected) for m in found), found


def test_several_problems_are_one_error_listing_them_all():
    with pytest.raises(ConfigError) as info:
        validate(compose(["trainer.max_iterations=abc", "model.layers=0", "graph.kernel=cubic"]))
    text = str(info.value)
    assert text.startswith("3 problems in the configuration:")
    assert "trainer.max_iterations" in text and "model.layers" in text and "graph.kernel" in text


def test_one_problem_is_raised_as_itself():
    with pytest.raises(ConfigError, match=r"^seed: must be >= 0, got -1$"):
        validate(compose(["seed=-1"]))


def test_a_component_called_from_python_raises_what_the_config_check_reports():
    from gnnddm.models.sage import GraphSAGE

    with pytest.raises(ConfigError) as info:
        GraphSAGE(3, 2, aggr="max")
    assert [str(info.value)] == messages("model.aggr=max")


def test_an_optimizer_beyond_the_shipped_ones_takes_its_own_keywords():
    assert messages("optimizer._target_=torch.optim.RMSprop", "+optimizer.alpha=0.9") == []
    assert messages("optimizer._target_=torch.optim.RMSprop", "optimizer.lr=0")[0].startswith("optimizer.lr")
    assert messages("+optimizer.momentum=0.9")[0].startswith("optimizer.momentum: not a key of torch.optim.Adam")


# --------------------------------------------------------------------------------- gnnddm config validate
def _gnnddm(*args, cwd: Path):
    exe = shutil.which("gnnddm")
    cmd = [exe] if exe else [sys.executable, "-m", "gnnddm"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MPLBACKEND": "Agg"})


def test_config_validate_prints_the_groups_chosen_and_exits_0_leaving_no_files(tmp_path):
    out = _gnnddm("config", "validate", "+experiment=quickstart", "model=gatv2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("config OK: +experiment=quickstart data=era5_sample graph=grid8 partition=metis "
                                  "model=gatv2 task=forecast optimizer=adam ddm=global")
    assert list(tmp_path.iterdir()) == []


def test_config_validate_names_every_bad_key_and_exits_2(tmp_path):
    out = _gnnddm("config", "validate", "trainer.max_iterations=abc", "model.layers=0", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "trainer.max_iterations: expected an integer, got 'abc'" in out.stderr
    assert "model.layers: must be >= 1, got 0" in out.stderr
    assert _gnnddm("config", "validate", "model=nope", cwd=tmp_path).returncode == 2
    assert _gnnddm("config", "frobnicate", cwd=tmp_path).returncode == 2


def test_config_validate_takes_hydra_flags_as_train_does(tmp_path):
    out = _gnnddm("config", "validate", "model=gcn", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "_target_: gnnddm.models.gcn.GCN" in out.stdout


# ------------------------------------------------------------------------------------------------ ddm
@pytest.mark.parametrize("name", options("ddm"))
def test_every_composed_ddm_option_validates_and_each_key_has_a_field_of_its_class_schema(name):
    """The ddm options extend each other through defaults lists: the composed keys are what is checked."""
    from dataclasses import fields

    from hydra.utils import get_class

    cfg = compose([f"ddm={name}"])
    assert problems(cfg) == []
    schema = get_class(cfg.ddm._target_).Config
    assert schema.matches(cfg.ddm._target_)
    assert set(cfg.ddm) <= {f.name for f in fields(schema)}, set(cfg.ddm) - {f.name for f in fields(schema)}


@pytest.mark.parametrize("name", options("ddm"))
def test_a_key_an_algorithm_gives_another_default_keeps_its_parents_bounds(name):
    """One definition of what a key accepts: a schema that changes a key's default (``apts``'s gamma_dec,
    ``msm``'s globalization) takes the key's metadata from the schema it extends."""
    from dataclasses import fields

    from hydra.utils import get_class

    schema = get_class(compose([f"ddm={name}"]).ddm._target_).Config
    for f in fields(schema):
        for base in schema.__mro__[1:]:
            inherited = getattr(base, "__dataclass_fields__", {}).get(f.name)
            if inherited is not None and inherited.metadata:
                assert dict(f.metadata) == dict(inherited.metadata), (schema.__name__, f.name, base.__name__)


@pytest.mark.parametrize(("overrides", "message"), [
    (["ddm=asm", "ddm.eta2=0.1"], "ddm.eta2: must be >= ddm.eta1 = 0.25, got 0.1"),
    (["ddm=asm", "ddm.combine=max"], "ddm.combine: unknown combination 'max'"),
    (["ddm=asm", "+ddm.colour=1"], "ddm.colour: not a key of"),
    (["ddm=asm", "ddm.local_solver.lr=0"], "ddm.local_solver.lr: a learning rate must be > 0"),
    (["ddm=asm", "ddm.global_pass=true", "ddm.globalization=offo"], "ddm.global_pass: needs globalization"),
    (["ddm=two_level", "ddm.coarse=middle"], "ddm.coarse: unknown coarse placement 'middle'"),
    (["ddm=two_level", "ddm.coarse_method=kahip"], "ddm.coarse_method: unknown partitioner 'kahip'"),
    (["ddm=multilevel", "ddm.levels=0"], "ddm.levels: must be >= 1"),
    (["ddm=apts", "ddm.gamma_dec=0"], "ddm.gamma_dec: must be in (0, 1], got 0"),
    (["ddm=apts", "ddm.local_radius=first"], "ddm.local_radius: unknown local radius 'first'"),
    (["ddm=msm", "ddm.globalization=box"], "ddm.globalization: unknown globalization 'box'"),
    (["ddm=asm", "ddm._target_=gnnddm.ddm.asm.Nope"], "ddm._target_: cannot import"),
])
def test_ddm_problems_name_the_key(overrides, message):
    assert any(message in str(p) for p in problems(compose(overrides))), [str(p) for p in problems(compose(overrides))]


def test_a_partition_key_is_a_field_or_an_option_of_the_partitioner_itself():
    """A new partitioner's own options (keyword-only arguments of its function) need no schema field."""
    assert [str(p) for p in problems(compose(["+partition.bogus=1"]))] == [
        "partition.bogus: not a key of the metis partitioner; valid: num_parts, overlap, seed, name, node_weights, "
        "plot_cut_edges, imbalance, weight_scale"]


def test_the_communication_layer_imports_nothing_of_the_algorithms():
    import ast

    root = Path(__file__).resolve().parents[1] / "gnnddm" / "distributed"
    imported = set()
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
    assert len(list(root.glob("*.py"))) >= 4 and not [m for m in imported if m.startswith("gnnddm.ddm")]
