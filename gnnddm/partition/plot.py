"""A map of the parts: nodes at (lon, lat) coloured by part, optionally with the cut edges.

Drawn with matplotlib's object API on an Agg canvas (no pyplot state, no display needed), and written
atomically so a reader never sees a half-written file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gnnddm.outputs import save_figure


def plot_partition(
    path,
    lat: np.ndarray,
    lon: np.ndarray,
    parts: np.ndarray,
    edge_index: np.ndarray | None = None,
    title: str = "",
    max_points: int = 400_000,
) -> Path:
    """Write a PNG map of the parts to ``path``.

    Parameters
    ----------
    path : str or Path
        Output file (``.png``).
    lat, lon : float [N]
        Node positions in degrees.
    parts : int [N]
        Part of each node.
    edge_index : int [2, E] or None
        When given, the edges joining two parts are drawn (edges crossing the date line are skipped).
    title : str
    max_points : int
        Larger graphs are drawn from an evenly strided subset of their nodes, to keep the file small.

    Returns
    -------
    Path
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    lat, lon, parts = np.asarray(lat), np.asarray(lon), np.asarray(parts)
    num_parts = int(parts.max()) + 1 if parts.size else 1
    fig = Figure(figsize=(10, 5.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    step = max(1, lat.size // max_points)
    # a cyclic colour map with shuffled part order, so neighbouring parts rarely look alike
    order = np.random.default_rng(0).permutation(num_parts)
    size = float(np.clip(2.5e5 / max(lat.size / step, 1), 0.05, 30.0))  # fills the map on dense grids
    ax.scatter(lon[::step], lat[::step], c=order[parts[::step]], s=size, cmap="tab20",
                    vmin=0, vmax=max(num_parts - 1, 1), marker="s", linewidths=0, rasterized=True)
    if edge_index is not None and edge_index.shape[1]:
        src, dst = np.asarray(edge_index)
        cut = (parts[src] != parts[dst]) & (src < dst) & (np.abs(lon[src] - lon[dst]) < 180.0)
        a = np.stack([lon[src[cut]], lat[src[cut]]], axis=1)
        b = np.stack([lon[dst[cut]], lat[dst[cut]]], axis=1)
        segs = np.stack([a, b], axis=1)
        ax.add_collection(LineCollection(segs, colors="k", linewidths=0.4))
    ax.set_xlim(min(-180.0, lon.min()), max(180.0, lon.max()))
    ax.set_ylim(-90, 90)
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(title or f"{num_parts} parts")
    fig.tight_layout()

    path = Path(path)
    save_figure(fig, path)
    return path
