"""GraphCast's hidden mesh: one joint graph over the grid nodes and the nodes of a refined icosahedron.

The mesh is an icosahedron whose triangles are split into 4, ``refinement`` times (new vertices at the
normalised edge midpoints), giving ``M = 10 · 4^r + 2`` nodes: 12, 42, 162, 642, 2562, 10242, 40962 for
``r = 0..6``. The nodes of a coarser level are the first ones of every finer level, so the edges of all
levels are pairs of nodes of the finest one, and their union is GraphCast's *multimesh*: the coarse edges
carry messages far in few steps.

The graph (:func:`icosahedral_graph`) joins ``G`` grid nodes ``[0, G)`` and ``M`` mesh nodes ``[G, G + M)``
with three kinds of directed edges, told apart by a one-hot in ``edge_attr``:

encoder, grid -> mesh
    every grid node to every mesh node within ``radius`` times the longest edge of the finest level
    (great circle; GraphCast's 0.6), plus an edge from the nearest grid node to any mesh node that
    would otherwise receive none;
processor, mesh <-> mesh
    both directions of every mesh edge: the finest level's, or those of all levels (``multimesh``);
decoder, mesh -> grid
    the 3 vertices of the finest triangle that contains each grid node.

One graph instead of three bipartite ones means the partitioners, exact overlaps and subdomain problems
work on it unchanged: a partitioner places grid and mesh nodes together, and a subdomain's overlap holds
whichever nodes of either set its layers read.
Mesh nodes carry no observations: their fields are 0 and masked out, their area is 0, and the static
column ``mesh_node`` marks them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from gnnddm.data.weather_graph import WeatherGraphData, static_position_features, wrap_lon
from gnnddm.errors import ConfigError, DataError
from gnnddm.graph.edges import coalesce, symmetrise
from gnnddm.graph.features import EDGE_ATTR_NAMES, edge_features
from gnnddm.graph.grid import is_periodic
from gnnddm.graph.sphere import arc_to_chord, chord_to_arc, unit_vectors
from gnnddm.schema.fields import check_args
from gnnddm.schema.graph import IcosahedralGraphConfig

ICOSAHEDRAL_EDGE_ATTR_NAMES = (*EDGE_ATTR_NAMES, "is_encoder", "is_processor", "is_decoder")
"""Columns of ``edge_attr``: the geometric features of :func:`~gnnddm.graph.features.edge_features`,
then the edge kind."""

MESH_NODE = "mesh_node"
"""Name of the static column that is 1 on mesh nodes and 0 on grid nodes."""

BYTES_PER_EDGE = 100
"""Memory of one edge while the graph is built: the result's 44 bytes (index 16, features 24, weight 4)
plus the sort keys, the permutation and the copies made when the three edge sets are merged."""

ENCODER, PROCESSOR, DECODER = 0, 1, 2

_PHI = (1.0 + math.sqrt(5.0)) / 2.0
_BASE_VERTICES = np.array([
    [-1, _PHI, 0], [1, _PHI, 0], [-1, -_PHI, 0], [1, -_PHI, 0],
    [0, -1, _PHI], [0, 1, _PHI], [0, -1, -_PHI], [0, 1, -_PHI],
    [_PHI, 0, -1], [_PHI, 0, 1], [-_PHI, 0, -1], [-_PHI, 0, 1],
])
_BASE_FACES = np.array([
    [0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
    [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
    [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
    [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1],
])
MAX_REFINEMENT = 6


# ---------------------------------------------------------------------------------------------- the mesh
def icosahedron(refinement: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The refined icosahedron: nodes, the finest triangles and the edges of every level.

    Returns
    -------
    xyz : float64 [M, 3]
        Unit vectors of the ``M = 10 · 4^r + 2`` nodes; the ``10 · 4^k + 2`` nodes of level ``k`` come first.
    faces : int64 [F, 3]
        The ``F = 20 · 4^r`` triangles of the finest level, counter-clockwise seen from outside (their
        normal ``(b - a) × (c - a)`` points away from the centre).
    level_edges : list of int64 [2, E_k]
        For ``k = 0..r``, each of the ``E_k = 30 · 4^k`` edges of level ``k`` once, lower node id first
        (ids of the finest node set).

    Examples
    --------
    >>> xyz, faces, level_edges = icosahedron(2)
    >>> xyz.shape, faces.shape, [e.shape[1] for e in level_edges]
    ((162, 3), (320, 3), [30, 120, 480])
    """
    if not 0 <= refinement <= MAX_REFINEMENT:
        raise ValueError(f"refinement must be in [0, {MAX_REFINEMENT}], got {refinement}")
    xyz = _BASE_VERTICES / np.linalg.norm(_BASE_VERTICES, axis=1, keepdims=True)
    faces = _outward(xyz, _BASE_FACES.astype(np.int64))
    level_edges = []
    for level in range(refinement + 1):
        edges, corner_edge = _face_edges(faces, len(xyz))
        level_edges.append(edges)
        if level < refinement:
            xyz, faces = _split(xyz, faces, edges, corner_edge)
    return xyz, faces, level_edges


def _outward(xyz: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The faces with the order of any inward-facing one reversed."""
    a, b, c = xyz[faces[:, 0]], xyz[faces[:, 1]], xyz[faces[:, 2]]
    inward = np.einsum("ij,ij->i", np.cross(b - a, c - a), a + b + c) < 0
    faces = faces.copy()
    faces[inward] = faces[inward][:, ::-1]
    return faces


def _face_edges(faces: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct edges ``[2, E]`` (lower id first) and, per face, the ids ``[F, 3]`` of its edges
    ``(a, b), (b, c), (c, a)`` in that list."""
    first, second = faces, np.roll(faces, -1, axis=1)
    keys = np.minimum(first, second) * np.int64(num_nodes) + np.maximum(first, second)
    unique, corner_edge = np.unique(keys.ravel(), return_inverse=True)
    return np.stack(np.divmod(unique, np.int64(num_nodes))), corner_edge.reshape(faces.shape)


def _split(xyz, faces, edges, corner_edge) -> tuple[np.ndarray, np.ndarray]:
    """Every triangle split into 4 at its edge midpoints (one new node per edge, shared by both faces)."""
    mid = xyz[edges[0]] + xyz[edges[1]]
    xyz = np.concatenate([xyz, mid / np.linalg.norm(mid, axis=1, keepdims=True)])
    ab, bc, ca = (corner_edge + (len(xyz) - len(mid))).T
    a, b, c = faces.T
    # each child keeps its parent's counter-clockwise order
    children = np.stack([
        np.stack([a, ab, ca], 1), np.stack([ab, b, bc], 1), np.stack([ca, bc, c], 1), np.stack([ab, bc, ca], 1),
    ], axis=1)
    return xyz, children.reshape(-1, 3)


def mesh_positions(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes in degrees (``lon`` in [-180, 180)) of unit vectors ``[M, 3]``."""
    lat = np.rad2deg(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))
    return lat, wrap_lon(np.rad2deg(np.arctan2(xyz[:, 1], xyz[:, 0])))


def longest_edge(xyz: np.ndarray, edges: np.ndarray) -> float:
    """Great-circle length in radians of the longest of the edges ``[2, E]``."""
    return float(chord_to_arc(np.linalg.norm(xyz[edges[0]] - xyz[edges[1]], axis=1).max()))


# --------------------------------------------------------------------------------------------- the edges
def encoder_edges(grid_xyz: np.ndarray, mesh_xyz: np.ndarray, radius: float) -> np.ndarray:
    """Grid -> mesh pairs ``[2, E]`` (grid id, mesh id) within ``radius`` radians of arc, plus the nearest
    grid node of every mesh node that has none within it; sorted by mesh id, then grid id.

    One ball query per mesh node on a k-d tree of the grid (the grid is the larger set).
    """
    tree = cKDTree(grid_xyz, balanced_tree=False, compact_nodes=False)
    found = tree.query_ball_point(mesh_xyz, float(arc_to_chord(radius)), return_sorted=False)
    counts = np.fromiter((len(f) for f in found), dtype=np.int64, count=len(found))
    grid = np.fromiter((j for f in found for j in f), dtype=np.int64, count=int(counts.sum()))
    mesh = np.repeat(np.arange(len(mesh_xyz), dtype=np.int64), counts)
    lonely = np.flatnonzero(counts == 0)
    if lonely.size:
        _, nearest = tree.query(mesh_xyz[lonely])
        grid, mesh = np.concatenate([grid, nearest.astype(np.int64)]), np.concatenate([mesh, lonely])
    return coalesce(np.stack([grid, mesh]), max(len(grid_xyz), len(mesh_xyz)))


def processor_edges(level_edges: list[np.ndarray], num_mesh: int, multimesh: bool = True) -> np.ndarray:
    """Mesh <-> mesh pairs ``[2, E]`` in canonical order: both directions of the finest level's edges or,
    with ``multimesh``, of every level's (the same node pair is never listed twice)."""
    edges = np.concatenate(level_edges, axis=1) if multimesh else level_edges[-1]
    return symmetrise(edges, num_mesh)


def containing_faces(points: np.ndarray, xyz: np.ndarray, faces: np.ndarray,
                     candidates: int = 16, chunk: int = 1 << 16) -> np.ndarray:
    """Index ``[P]`` of the face containing each unit vector of ``points`` ``[P, 3]``.

    The nearest face centroid is tried first; a point that it does not contain is given, among its
    ``candidates`` nearest centroids, the face whose smallest barycentric coordinate
    (:func:`barycentric`) is largest, which is the containing face (a point on an edge or a vertex has
    several; one is taken).
    """
    centroids = xyz[faces].sum(axis=1)
    tree = cKDTree(centroids / np.linalg.norm(centroids, axis=1, keepdims=True))
    _, face = tree.query(points)
    face = face.astype(np.int64)
    outside = np.flatnonzero(barycentric(points, xyz, faces[face]).min(axis=1) < 0.0)
    for start in range(0, outside.size, chunk):
        rows = outside[start:start + chunk]
        _, near = tree.query(points[rows], k=min(candidates, len(faces)))
        lam = barycentric(np.repeat(points[rows], near.shape[1], axis=0), xyz, faces[near.ravel()])
        best = lam.min(axis=1).reshape(near.shape).argmax(axis=1)
        face[rows] = near[np.arange(len(rows)), best]
    return face


def barycentric(points: np.ndarray, xyz: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Barycentric coordinates ``[P, 3]`` of the points ``[P, 3]`` in the triangles ``[P, 3]`` (node ids).

    Those of the point where the ray from the centre through ``p`` meets the triangle's plane:
    ``λ_a ∝ p · (b × c)``, ``λ_b ∝ p · (c × a)``, ``λ_c ∝ p · (a × b)``, scaled to sum to 1. All three are
    >= 0 exactly when ``p`` lies in the spherical triangle (an outward-oriented one).
    """
    a, b, c = xyz[triangles[:, 0]], xyz[triangles[:, 1]], xyz[triangles[:, 2]]
    lam = np.stack([np.einsum("ij,ij->i", points, np.cross(b, c)),
                    np.einsum("ij,ij->i", points, np.cross(c, a)),
                    np.einsum("ij,ij->i", points, np.cross(a, b))], axis=1)
    return lam / lam.sum(axis=1, keepdims=True)


def decoder_edges(grid_xyz: np.ndarray, mesh_xyz: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Mesh -> grid pairs ``[2, 3 G]`` (mesh id, grid id): the 3 vertices of each grid node's containing
    face, sorted by grid id, then mesh id."""
    face = containing_faces(grid_xyz, mesh_xyz, faces)
    mesh = np.sort(faces[face], axis=1).ravel()
    return np.stack([mesh, np.repeat(np.arange(len(grid_xyz), dtype=np.int64), 3)])


# ------------------------------------------------------------------------------------------- the builder
def icosahedral_graph(
    data: WeatherGraphData,
    train_index=None,
    refinement: int = 4,
    multimesh: bool = True,
    radius: float = 0.6,
) -> WeatherGraphData:
    """The joint graph of a global grid and an icosahedral mesh refined ``refinement`` times.

    Parameters
    ----------
    data : WeatherGraphData
        A global regular grid with its fields in memory.
    train_index
        Unused (every edge weighs 1); accepted like every builder's.
    refinement : int
        Splits of the icosahedron, 0..6 (``M`` = 12 ... 40962 mesh nodes; GraphCast uses 6 at 0.25°).
    multimesh : bool
        Processor edges of every level (True) or of the finest only.
    radius : float
        Encoder radius as a multiple of the longest edge of the finest level.

    Returns
    -------
    WeatherGraphData
        ``G + M`` nodes, grid first (same order), then mesh. ``X`` and ``mask`` get ``M`` rows of 0 and
        False; ``area`` 0 on mesh nodes; ``static`` 0 on mesh nodes except the position features
        (``sin_lat``, ``cos_lat``, ``sin_lon``, ``cos_lon``, those the data has), plus a last column
        ``mesh_node`` (1 on mesh nodes); ``grid_shape`` and ``native_edges`` None. Edges in canonical
        order (sorted by target, then source), directed: grid -> mesh, mesh <-> mesh, mesh -> grid;
        ``edge_attr`` ``(dx, dy, distance, is_encoder, is_processor, is_decoder)``, the first three as
        :func:`~gnnddm.graph.features.edge_features` gives them; ``edge_weight`` 1 on every edge (the
        edge kind and geometry are in the features, and partitioners then count edges cut).

    Raises
    ------
    ConfigError
        An option out of range (``graph.refinement``, ``graph.radius``); a mesh whose edges would not fit
        in the memory available (``graph.refinement``); a radius that leaves grid nodes without a mesh
        node (``graph.radius``, with the smallest radius that covers every one); data read lazily.
    DataError
        Data that is not a global regular grid.
    """
    check_args(IcosahedralGraphConfig, "graph", refinement=refinement, multimesh=multimesh, radius=radius)
    if data.lazy:
        raise ConfigError(
            f"graph=icosahedral appends mesh nodes to the fields, which needs them in memory, but "
            f"{data.source or 'the data'} is read lazily; set data.lazy=false"
        )
    _check_global(data)
    G = data.num_nodes
    xyz, faces, level_edges = icosahedron(int(refinement))
    M = len(xyz)
    longest = longest_edge(xyz, level_edges[-1])
    reach = float(radius) * longest
    _check_memory(data, M, level_edges, reach, refinement, multimesh)

    grid_xyz = unit_vectors(data.lat, data.lon)
    enc = encoder_edges(grid_xyz, xyz, reach)
    _check_coverage(enc[0], grid_xyz, xyz, longest, radius)
    proc = processor_edges(level_edges, M, multimesh)
    dec = decoder_edges(grid_xyz, xyz, faces)

    n = G + M
    src = np.concatenate([enc[0], proc[0] + G, dec[0] + G])
    dst = np.concatenate([enc[1] + G, proc[1] + G, dec[1]])
    kind = np.repeat(np.array([ENCODER, PROCESSOR, DECODER], dtype=np.int8),
                     [enc.shape[1], proc.shape[1], dec.shape[1]])
    del enc, proc, dec
    order = np.argsort(dst * np.int64(n) + src)  # canonical order: by target, then source
    edge_index = np.stack([src[order], dst[order]])
    kind = kind[order]
    del src, dst, order

    mesh_lat, mesh_lon = mesh_positions(xyz)
    lat = np.concatenate([data.lat, mesh_lat])
    lon = np.concatenate([data.lon, mesh_lon])
    attr = np.zeros((edge_index.shape[1], len(ICOSAHEDRAL_EDGE_ATTR_NAMES)), dtype=np.float32)
    attr[:, :3] = edge_features(lat, lon, edge_index)
    attr[np.arange(len(kind)), 3 + kind] = 1.0

    T, _, V = data.X.shape
    joint = data.replace(
        lat=lat, lon=lon,
        area=np.concatenate([data.area, np.zeros(M)]),
        X=np.concatenate([data.X, np.zeros((T, M, V), dtype=data.X.dtype)], axis=1),
        mask=np.concatenate([data.mask, np.zeros((T, M, V), dtype=bool)], axis=1),
        static=_joint_static(data, mesh_lat, mesh_lon),
        static_names=(*data.static_names, MESH_NODE),
        grid_shape=None, native_edges=None,
        edge_index=None, edge_weight=None, edge_attr=None, edge_attr_names=(),
    )
    return joint.with_graph(edge_index, np.ones(edge_index.shape[1], dtype=np.float32), attr,
                            ICOSAHEDRAL_EDGE_ATTR_NAMES)


def _joint_static(data: WeatherGraphData, mesh_lat, mesh_lon) -> np.ndarray:
    G, M, S = data.num_nodes, len(mesh_lat), data.static.shape[1]
    static = np.zeros((G + M, S + 1), dtype=np.float32)
    static[:G, :S] = data.static
    position, names = static_position_features(mesh_lat, mesh_lon)
    for column, name in enumerate(data.static_names):
        if name in names:
            static[G:, column] = position[:, names.index(name)]
    static[G:, S] = 1.0
    return static


# -------------------------------------------------------------------------------------------- the checks
def _check_global(data: WeatherGraphData) -> None:
    """A regular grid whose rows reach within one spacing of both poles and whose columns close the circle:
    a global mesh over regional data would hold mesh nodes with no grid node near them."""
    what = data.source or "the data"
    shape = data.grid_shape
    if data.kind != "grid" or shape is None or shape[0] * shape[1] != data.num_nodes:
        raise DataError(
            f"graph=icosahedral: the icosahedral mesh needs global data on a regular lat-lon grid, but {what} "
            f"is of kind {data.kind!r} with grid_shape={shape}"
        )
    nlat, nlon = shape
    rows = data.lat[::nlon]
    spacing = float(np.abs(np.diff(rows)).max()) if nlat > 1 else 180.0
    tol = 1e-6 * max(spacing, 1.0)
    north, south = 90.0 - float(rows.max()), float(rows.min()) + 90.0
    if north > spacing + tol or south > spacing + tol or not is_periodic(data.lon[:nlon]):
        raise DataError(
            f"graph=icosahedral: the icosahedral mesh needs global data, but {what} covers latitudes "
            f"{rows.min():g} to {rows.max():g} (spacing {spacing:g}) and "
            f"{'all' if is_periodic(data.lon[:nlon]) else 'not all'} longitudes; use a global grid, or "
            "graph=grid8 / graph=knn for regional data"
        )


def _available_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes; None where there is no such file."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def estimate_edges(num_grid: int, num_mesh: int, level_edges: list[np.ndarray], reach: float,
                   multimesh: bool) -> tuple[int, int, int]:
    """Expected ``(encoder, processor, decoder)`` edge counts before building.

    Encoder: each of the ``M`` mesh nodes sees the grid nodes in a cap of ``reach`` radians, which holds
    the fraction ``(1 − cos reach) / 2`` of the sphere, hence of the ``G`` nodes summed over mesh nodes
    spread evenly. Processor and decoder counts are exact.
    """
    encoder = int(math.ceil(num_mesh * num_grid * (1.0 - math.cos(reach)) / 2.0)) + num_mesh
    levels = level_edges if multimesh else level_edges[-1:]
    return encoder, 2 * sum(e.shape[1] for e in levels), 3 * num_grid


def _check_memory(data, num_mesh, level_edges, reach, refinement, multimesh) -> None:
    available = _available_bytes()
    if available is None:
        return
    counts = estimate_edges(data.num_nodes, num_mesh, level_edges, reach, multimesh)
    T, _, V = data.X.shape
    fields = T * (data.num_nodes + num_mesh) * V * (data.X.dtype.itemsize + 1)
    need = sum(counts) * BYTES_PER_EDGE + fields
    if need > available:
        raise ConfigError(
            f"graph.refinement={refinement}: the joint graph needs about {_gb(need)} "
            f"({sum(counts):,} edges: {counts[0]:,} encoder, {counts[1]:,} processor, {counts[2]:,} decoder, "
            f"x {BYTES_PER_EDGE} bytes, plus {_gb(fields)} of fields padded with {num_mesh:,} mesh nodes), "
            f"but {_gb(available)} of memory is available; lower graph.refinement"
        )


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.2f} MB"


def _check_coverage(encoder_sources, grid_xyz, mesh_xyz, longest, radius) -> None:
    """Every grid node must send to a mesh node (GraphCast's encoder reads all of the input)."""
    sends = np.zeros(len(grid_xyz), dtype=bool)
    sends[encoder_sources] = True
    missing = int(np.count_nonzero(~sends))
    if missing:
        nearest, _ = cKDTree(mesh_xyz).query(grid_xyz[~sends])
        # a hair above the exact value, so that round-off cannot leave the farthest node out again
        smallest = math.ceil(float(chord_to_arc(nearest.max())) / longest * 1e4 + 1e-6) / 1e4
        raise ConfigError(
            f"graph.radius={radius}: {missing} of {len(grid_xyz)} grid nodes have no mesh node within "
            f"{radius} x the longest mesh edge, and every grid node must send to the mesh; the smallest "
            f"radius that covers all is {smallest:g}"
        )
