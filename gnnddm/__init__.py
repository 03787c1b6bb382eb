"""gnnddm: domain-decomposition training of graph neural networks on weather and climate graphs."""

# Python's sqlite3 is loaded before anything can load eccodes (the `grib` extra): some eccodes wheels
# bundle an old libsqlite3 (3.26 in some builds), and whichever copy a process loads first serves every later user, so
# loading eccodes first would make MLflow refuse its SQLite store (it needs >= 3.31). Importing gnnddm
# first fixes the order for the whole process, whatever is imported afterwards.
import sqlite3 as _sqlite3  # noqa: F401

__version__ = "0.1.0"
