"""The ``graph`` group: one schema per builder of :mod:`gnnddm.graph.build`, all sharing the weight keys.

The builders check their own arguments against the same schemas (:func:`~gnnddm.schema.fields.check_args`);
what depends on the data (``k`` below the number of nodes, a regular grid for ``grid_graph``) stays there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gnnddm.schema.fields import Component, above, at_least, between, one_of

KERNELS = ("gaussian", "inverse", "uniform")  # gnnddm.graph.weights.KERNELS
WEIGHTINGS = ("distance", "correlation", "product")  # gnnddm.graph.weights.WEIGHTINGS
NEIGHBOURS = (4, 8)  # the keys of gnnddm.graph.grid.STENCILS


@dataclass
class GraphConfig(Component):
    """Keys shared by every builder: how edges are weighted, self loops, direction."""

    kernel: str = field(default="gaussian", metadata=one_of(*KERNELS, noun="kernel"))
    length_scale: float | None = field(default=None, metadata=above(0.0, "a length scale in km "))
    weights: str = field(default="distance", metadata=one_of(*WEIGHTINGS, noun="weighting"))
    self_loops: bool = False
    directed: bool = False


@dataclass
class GridGraphConfig(GraphConfig):
    _target_: str = "gnnddm.graph.build.grid_graph"
    neighbours: int = field(default=8, metadata=one_of(*NEIGHBOURS, noun="stencil"))


@dataclass
class KnnGraphConfig(GraphConfig):
    _target_: str = "gnnddm.graph.build.knn_graph"
    k: int = field(default=8, metadata=at_least(1))


@dataclass
class RadiusGraphConfig(GraphConfig):
    _target_: str = "gnnddm.graph.build.radius_graph"
    radius_km: float = field(default=250.0, metadata=above(0.0, "a radius in km "))
    max_neighbours: int = field(default=32, metadata=at_least(1))


@dataclass
class MeshGraphConfig(GraphConfig):
    _target_: str = "gnnddm.graph.build.mesh_graph"


@dataclass
class IcosahedralGraphConfig(Component):
    """The joint grid + icosahedral-mesh graph (:mod:`gnnddm.graph.icosahedral`). Not a
    :class:`GraphConfig`: every edge weighs 1 and the edge directions are fixed by their kind (grid to
    mesh, mesh to mesh, mesh to grid), so the kernel, weighting and direction keys have nothing to set."""

    _target_: str = "gnnddm.graph.icosahedral.icosahedral_graph"
    refinement: int = field(default=4, metadata=between(0, 6, what="a refinement level "))
    multimesh: bool = True
    radius: float = field(default=0.6, metadata=above(0.0, "an encoder radius (x the longest mesh edge) "))
