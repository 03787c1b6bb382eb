"""Helpers for tests and docstring examples (in the manner of ``torch_geometric.testing``).

:mod:`gnnddm.testing.gallery`
    Tiny deterministic problems: a 4 x 8 lat-lon grid, scattered stations, small models
    (:class:`~gnnddm.testing.gallery.LinearGNN`, a least-squares problem with a known solution), decomposed
    objectives on the one-process communicator, and the shipped model classes.
:mod:`gnnddm.testing.algorithms`
    What tests of a training algorithm share: seeded models and problems, an algorithm on the one-process
    communicator, a reference run of a torch optimizer, one accounted iteration checked against hand counts.
    Imports ``pytest`` (the ``test`` extra).
:mod:`gnnddm.testing.runs`
    The overrides of a tiny ``gnnddm train`` run, the console script run in a subprocess, and the check
    that a command is refused as an input error.

This package is part of the public API, for people writing tests of their own components (a model, an
algorithm, a partitioner) as well as for gnnddm's own tests. Import from the modules,
``from gnnddm.testing.gallery import grid_data``: this ``__init__`` imports none of them, so that
:mod:`~gnnddm.testing.runs` stays free of torch and :mod:`~gnnddm.testing.gallery` free of pytest.
"""
